//! The fetch library against a private Dovecot: every URL form (plain with
//! APOP or USER, STLS with SASL PLAIN, POP3S, IPv6 literals), reruns that
//! store nothing twice, deletion, and the delivered messages compared with
//! what mpop delivers from the same maildrop.

mod support;

use std::path::Path;

use pop3_tokio::client::TlsVerification;
use pop3_tokio::fetch::{
    self, AuthError, AuthMethod, FetchError, FetchSettings, MaildirSink, PopUrl, SettingsError,
};
use support::dovecot::{Dovecot, retr_form};
use support::{awkward, crlf_to_lf, mpop};

const USER: &str = "alice";
const PASSWORD: &str = "secret";

fn settings(dovecot: &Dovecot) -> FetchSettings {
    let mut s = FetchSettings::default();
    s.verification = TlsVerification::ca_file(dovecot.ca_pem_path()).unwrap();
    s
}

/// The Maildir's messages (new/ and cur/), sorted.
fn contents(maildir: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        if let Ok(entries) = std::fs::read_dir(maildir.join(sub)) {
            for e in entries {
                out.push(std::fs::read(e.unwrap().path()).unwrap());
            }
        }
    }
    out.sort();
    out
}

async fn run(url: &str, settings: &FetchSettings, maildir: &Path) -> fetch::FetchReport {
    let url = PopUrl::parse(url).unwrap();
    let sink = MaildirSink::open(maildir, &url.account_id()).unwrap();
    let (_sink, result) = fetch::run(&url, PASSWORD, settings, sink, &mut |_| {}).await;
    result.unwrap_or_else(|e| panic!("{url:?}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_url_form_fetches_once_and_matches_mpop() {
    let messages = awkward::small();
    let dovecot = Dovecot::start(&[(USER, PASSWORD, &messages)]);
    let (port, tls_port) = (dovecot.pop3_addr().port(), dovecot.pop3s_addr().port());
    let work = tempfile::tempdir().unwrap();
    let n = messages.len();

    // What the server sends, with LF line ends: what the Maildir must hold.
    let mut want: Vec<Vec<u8>> = messages
        .iter()
        .map(|(_, m)| crlf_to_lf(&retr_form(m)))
        .collect();
    want.sort();

    let s = settings(&dovecot);
    let mut stls = settings(&dovecot);
    stls.starttls = true;
    let mut cleartext = settings(&dovecot);
    cleartext.insecure_cleartext_login = true;
    let cases: Vec<(String, &FetchSettings)> = vec![
        // No ;AUTH= on a plain connection: APOP (no clear-text password).
        (format!("pop://{USER}@127.0.0.1:{port}"), &s),
        // USER without TLS only when allowed explicitly.
        (
            format!("pop3://{USER};AUTH=USER@127.0.0.1:{port}/"),
            &cleartext,
        ),
        (format!("pop://{USER};AUTH=PLAIN@localhost:{port}"), &stls),
        (format!("pop://{USER};AUTH=LOGIN@127.0.0.1:{port}"), &stls),
        (format!("pops://{USER}@localhost:{tls_port}"), &s),
        (format!("POP3S://%61lice;auth=*@127.0.0.1:{tls_port}"), &s),
        (format!("pops://{USER}@[::1]:{tls_port}"), &s),
    ];
    for (i, (url, settings)) in cases.iter().enumerate() {
        assert!(
            !url.contains("[::1]") || dovecot.pop3s_addr_v6().is_some(),
            "this test needs IPv6 on the loopback interface (::1)"
        );
        let dir = work.path().join(format!("case{i}"));
        let first = run(url, settings, &dir).await;
        assert_eq!((first.listed, first.saved), (n, n), "{url}");
        assert_eq!(contents(&dir), want, "{url}");
        let again = run(url, settings, &dir).await;
        assert_eq!((again.saved, again.already_stored), (0, n), "{url}");
        assert_eq!(contents(&dir).len(), n, "{url}");
    }

    // mpop delivers the same messages.
    let m = mpop::Mpop::new(
        &work.path().join("mpop"),
        dovecot.pop3_addr(),
        mpop::Security::Plain,
        USER,
        PASSWORD,
    );
    let out = support::blocking(move || {
        let out = m.run();
        (out, m.maildir())
    })
    .await;
    support::expect_success("mpop", &out.0);
    let theirs: Vec<Vec<u8>> = {
        let mut v: Vec<Vec<u8>> = contents(&out.1).iter().map(|m| crlf_to_lf(m)).collect();
        v.sort();
        v
    };
    let ours: Vec<Vec<u8>> = {
        let mut v: Vec<Vec<u8>> = contents(&work.path().join("case0"))
            .iter()
            .map(|m| crlf_to_lf(m))
            .collect();
        v.sort();
        v
    };
    assert_eq!(ours.len(), theirs.len());
    for (a, b) in ours.iter().zip(&theirs) {
        support::assert_bytes_eq("fetch vs mpop", a, b);
    }

    // With deletion: everything is removed from the server, nothing stored twice.
    let mut delete = settings(&dovecot);
    delete.delete = true;
    let dir = work.path().join("case0");
    let report = run(&format!("pop://{USER}@127.0.0.1:{port}"), &delete, &dir).await;
    assert_eq!((report.saved, report.deleted), (0, n));
    assert!(dovecot.stored(USER).is_empty());
    assert_eq!(contents(&dir), want);
}

#[tokio::test]
async fn refusals_are_explained() {
    let dovecot = Dovecot::start(&[(USER, PASSWORD, &awkward::small())]);
    let port = dovecot.pop3_addr().port();
    let work = tempfile::tempdir().unwrap();
    let mut sink = MaildirSink::open(work.path(), "x").unwrap();
    let s = settings(&dovecot);

    // STLS with pops:// is contradictory.
    let url = PopUrl::parse(&format!("pops://{USER}@127.0.0.1:{port}")).unwrap();
    let mut stls = s.clone();
    stls.starttls = true;
    let (back, result) = fetch::run(&url, PASSWORD, &stls, sink, &mut |_| {}).await;
    sink = back;
    let err = result.unwrap_err();
    assert!(
        matches!(
            err,
            FetchError::Settings(SettingsError::StartTlsWithImplicitTls)
        ),
        "{err}"
    );

    // No user name.
    let url = PopUrl::parse(&format!("pop://127.0.0.1:{port}")).unwrap();
    let (back, result) = fetch::run(&url, PASSWORD, &s, sink, &mut |_| {}).await;
    sink = back;
    let err = result.unwrap_err();
    assert!(matches!(err, FetchError::NoUser), "{err}");

    // A SASL mechanism the library does not speak.
    let url = PopUrl::parse(&format!("pop://{USER};AUTH=GSSAPI@127.0.0.1:{port}")).unwrap();
    let (back, result) = fetch::run(&url, PASSWORD, &s, sink, &mut |_| {}).await;
    sink = back;
    let err = result.unwrap_err();
    assert!(
        matches!(err, FetchError::Auth(AuthError::UnsupportedMechanism(ref m)) if m.as_str() == "GSSAPI"),
        "{err}"
    );

    // The wrong password: the server's -ERR, in one line.
    let url = PopUrl::parse(&format!("pop://{USER}@127.0.0.1:{port}")).unwrap();
    let mut user = s.clone();
    user.auth = Some(AuthMethod::User);
    let (_sink, result) = fetch::run(&url, "wrong", &user, sink, &mut |_| {}).await;
    let err = result.unwrap_err();
    assert!(matches!(err, FetchError::Pop3(_)), "{err}");
    assert!(!err.to_string().contains('\n'));
}
