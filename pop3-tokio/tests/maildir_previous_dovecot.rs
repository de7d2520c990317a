//! Moving from Dovecot without a second download: a real Dovecot serves a
//! Maildir with a given `pop3_uidl_format` (and leaves its
//! `dovecot-uidlist`), then the Maildir store serves the same Maildir and
//! must give every message the UIDL, and the number, Dovecot gave it.
//! Messages delivered after Dovecot ran get the store's own UIDLs, after
//! the others.

mod support;

use pop3_blocking::maildir::MaildirStore;
use pop3_blocking::maildir::previous::{DOVECOT_UIDLIST, DovecotUidlFormat};
use pop3_blocking::passwd::PasswdFile;
use pop3_proto::store::{BlockingMaildrop, BlockingStore};
use pop3_tokio::client::{ConnectOptions, Pop3Client, Security};
use support::dovecot::Dovecot;

const USER: &str = "alice";
const PASSWORD: &str = "secret";

fn messages() -> Vec<(String, Vec<u8>)> {
    (1..=4)
        .map(|i| {
            (
                format!("m{i}"),
                format!("From: a@example.org\nSubject: message {i}\n\nbody {i}\n").into_bytes(),
            )
        })
        .collect()
}

/// Starts Dovecot with `extra` configuration, lists the UIDLs of alice's
/// messages, logs out, stops Dovecot and returns them with the server's
/// guard (whose directory holds the Maildir).
async fn dovecot_uidls(extra: &str) -> (Dovecot, Vec<String>) {
    let messages = messages();
    let dovecot = Dovecot::start_with_config(&[(USER, PASSWORD, &messages)], extra);
    let addr = dovecot.pop3_addr();
    let mut options = ConnectOptions::new(Security::Plain);
    options.session.insecure_cleartext_login = true;
    let mut client = Pop3Client::connect(&addr.ip().to_string(), addr.port(), options)
        .await
        .expect("connect to Dovecot");
    client.login(USER, PASSWORD).await.expect("login");
    let uidls: Vec<String> = client
        .uidl()
        .await
        .expect("UIDL")
        .iter()
        .map(|u| u.uid.as_str().to_owned())
        .collect();
    client.quit().await.expect("QUIT");
    dovecot.stop();
    assert_eq!(uidls.len(), messages.len(), "{}", dovecot.log());
    (dovecot, uidls)
}

/// The UIDLs the Maildir store serves for alice, after one more message
/// was delivered into `new/`; returns them and that message's base name.
fn store_uidls(dovecot: &Dovecot, format: Option<DovecotUidlFormat>) -> (Vec<String>, String) {
    let late = "1800000000.M9P9.late";
    std::fs::write(
        dovecot.maildir(USER).join("new").join(late),
        "Subject: late\n\nafter the move\n",
    )
    .expect("deliver");
    let users = PasswdFile::parse(&format!("{USER}:{{PLAIN}}{PASSWORD}\n")).expect("passwd");
    let root = dovecot.maildir(USER).parent().expect("root").to_path_buf();
    let store = MaildirStore::new(root, users).previous_uidls(format);
    let drop = store.open(USER).expect("open");
    let uidls = drop
        .messages()
        .iter()
        .map(|m| m.uid.as_str().to_owned())
        .collect();
    (uidls, late.to_owned())
}

async fn same_uidls_as_dovecot_with(format: &str) {
    let (dovecot, theirs) = dovecot_uidls(&format!("pop3_uidl_format = {format}\n")).await;
    assert!(
        dovecot.maildir(USER).join(DOVECOT_UIDLIST).is_file(),
        "Dovecot left no {DOVECOT_UIDLIST}"
    );
    let (ours, late) = store_uidls(&dovecot, Some(format.parse().expect("format")));
    assert_eq!(ours[..theirs.len()], theirs[..], "format {format}");
    assert_eq!(ours[theirs.len()..], [late], "format {format}");
}

#[tokio::test]
async fn serves_dovecots_uidls_with_the_default_format() {
    same_uidls_as_dovecot_with("%08Xu%08Xv").await;
}

#[tokio::test]
async fn serves_dovecots_uidls_with_the_uid_format() {
    same_uidls_as_dovecot_with("%u").await;
}

#[tokio::test]
async fn serves_dovecots_uidls_with_the_cyrus_format() {
    same_uidls_as_dovecot_with("%v.%u").await;
}

#[tokio::test]
async fn serves_dovecots_uidls_with_the_guid_format() {
    same_uidls_as_dovecot_with("%g").await;
}

#[tokio::test]
async fn serves_dovecots_uidls_with_the_uw_format() {
    same_uidls_as_dovecot_with("%08Xv%08Xu").await;
}

#[tokio::test]
async fn saved_uidls_win_over_the_format() {
    // Dovecot saves the UIDLs it served (P fields); the store, told another
    // format, still serves the saved ones.
    let (dovecot, theirs) = dovecot_uidls("pop3_uidl_format = %v.%u\npop3_save_uidl = yes\n").await;
    let list = std::fs::read_to_string(dovecot.maildir(USER).join(DOVECOT_UIDLIST)).unwrap();
    assert!(list.contains(" P"), "no saved UIDLs in:\n{list}");
    let (ours, _) = store_uidls(&dovecot, Some(DovecotUidlFormat::default()));
    assert_eq!(ours[..theirs.len()], theirs[..]);
}

#[tokio::test]
async fn without_import_the_store_serves_its_own() {
    let (dovecot, theirs) = dovecot_uidls("pop3_uidl_format = %08Xu%08Xv\n").await;
    let (ours, _) = store_uidls(&dovecot, None);
    assert!(ours.iter().all(|u| !theirs.contains(u)), "{ours:?}");
}
