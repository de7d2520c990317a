//! Every runtime's examples against real peers: its `pop3d` serves a
//! Maildir tree to poplib (STLS), curl (POP3S) and mpop (STLS, pipelined)
//! exactly, and to mutt and neomutt (STLS and POP3S, default login choice); its `fetch` retrieves the awkward maildrop from Dovecot with
//! SASL PLAIN, CRAM-MD5 and SCRAM-SHA-256, byte-identical to what poplib
//! retrieves. (curl runs over POP3S and plain POP3.)

// The peer support of pop3-tokio's own peer tests.
mod peer_examples;
#[path = "../../../pop3-tokio/tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use peer_examples::{certificates, example_binary, mutt, spawn_pop3d};
use support::dovecot::{Dovecot, write_maildir};
use support::poplib::{self, Connect, FetchOptions, Login};
use support::{ChildGuard, assert_bytes_eq, awkward, crlf_lines, crlf_to_lf, expect_success, mpop};

const USER: &str = "alice";
const PASSWORD: &str = "secret";

/// A `pop3d` example serving `messages` for alice from a Maildir tree, on
/// ports of its choosing: (process, plain address, implicit TLS address).
fn start_pop3d(
    bin: &Path,
    work: &Path,
    messages: &[(String, Vec<u8>)],
) -> (ChildGuard, SocketAddr, SocketAddr, PathBuf) {
    let root = work.join("mail");
    write_maildir(&root.join(USER), messages);
    let users = work.join("users");
    std::fs::write(&users, format!("{USER}:{{PLAIN}}{PASSWORD}\n")).unwrap();
    let (ca, cert, key) = certificates(work);
    let mut cmd = Command::new(bin);
    cmd.arg("--maildir-root")
        .arg(&root)
        .arg("--users")
        .arg(&users);
    let (child, plain, tls) = spawn_pop3d(cmd, &cert, &key);
    (child, plain, tls, ca)
}

fn pop3d_serves_poplib_curl_and_mpop(bin: PathBuf) {
    let messages = awkward::small();
    let work = tempfile::tempdir().unwrap();
    let (_server, plain, tls, ca) = start_pop3d(&bin, work.path(), &messages);

    let options = FetchOptions {
        connect: Connect::stls(&ca),
        login: Login::UserPass,
        ..FetchOptions::default()
    };
    let fetched = poplib::fetch(plain, USER, PASSWORD, &options);
    assert_eq!(fetched.retr.len(), messages.len());
    for ((name, stored), got) in messages.iter().zip(&fetched.retr) {
        assert_bytes_eq(&format!("poplib: {name}"), got, &crlf_lines(stored));
    }

    // curl over POP3S, and over plain POP3 (where it logs in with CRAM-MD5,
    // the only mechanism offered without TLS).
    for (kind, curl) in [
        (
            "pop3s",
            support::curl::Curl::pop3s(tls, &ca, USER, PASSWORD),
        ),
        ("pop3", support::curl::Curl::plain(plain, USER, PASSWORD)),
    ] {
        for (i, (name, stored)) in messages.iter().enumerate() {
            let out = curl.retr(i as u32 + 1);
            expect_success(&format!("curl {kind} RETR {}", i + 1), &out);
            let want = match crlf_lines(stored) {
                // curl prints the status line's CRLF for an empty message.
                sent if sent.is_empty() => b"\r\n".to_vec(),
                sent => sent,
            };
            assert_bytes_eq(&format!("curl {kind}: {name}"), &out.stdout, &want);
        }
    }

    let account = mpop::Mpop::new(work.path(), plain, mpop::Security::Stls(ca), USER, PASSWORD)
        .pipelining(mpop::Pipelining::On)
        .keep(true);
    let out = support::run_with_timeout(account.command(), account.timeout);
    expect_success("mpop over STLS", &out);
    let delivered = account.delivered();
    assert_eq!(delivered.len(), messages.len(), "mpop: count");
    for ((name, stored), got) in messages.iter().zip(&delivered) {
        assert_bytes_eq(
            &format!("mpop: {name}"),
            got,
            &crlf_to_lf(&crlf_lines(stored)),
        );
    }
}

/// mutt and neomutt (GNU SASL over GnuTLS), with their default login
/// choice, fetch every message from `pop3d` over STLS and over POP3S.
/// (Were SCRAM-SHA-256-PLUS advertised, GNU SASL would take it, fail for
/// want of the channel binding, and fetch nothing.)
fn pop3d_serves_mutt_and_neomutt(bin: PathBuf) {
    let messages: Vec<(String, Vec<u8>)> = (1..=3)
        .map(|i| {
            let m = format!(
                "From: sender@example.org\r\nSubject: note {i} for mutt\r\n\
                 Message-ID: <{i}.mutt@example.org>\r\n\r\nbody line {i}\r\n"
            );
            (format!("m{i}"), m.into_bytes())
        })
        .collect();
    let work = tempfile::tempdir().unwrap();
    let (_server, plain, tls, ca) = start_pop3d(&bin, work.path(), &messages);
    for program in [mutt::Program::Mutt, mutt::Program::NeoMutt] {
        for (security, addr) in [
            (mutt::Security::Stls, plain),
            (mutt::Security::Implicit, tls),
        ] {
            let label = format!("{program:?} over {security:?}");
            let dir = work.path().join(format!("{program:?}-{security:?}"));
            std::fs::create_dir(&dir).unwrap();
            let got = mutt::fetch(program, &dir, addr, security, &ca, USER, PASSWORD);
            let mbox = String::from_utf8_lossy(&got.mbox);
            let separators = mbox.lines().filter(|l| l.starts_with("From ")).count();
            let explain = || {
                format!(
                    "{label}\n--- screen:\n{}\n--- log:\n{}",
                    got.screen, got.log
                )
            };
            assert_eq!(separators, messages.len(), "{}", explain());
            for i in 1..=messages.len() {
                assert!(
                    mbox.contains(&format!("Subject: note {i} for mutt\n")),
                    "{}",
                    explain()
                );
                assert!(
                    mbox.contains(&format!("\nbody line {i}\n")),
                    "{}",
                    explain()
                );
            }
        }
    }
}

/// The Maildir's messages (new/ and cur/), sorted.
fn contents(maildir: &Path) -> Vec<Vec<u8>> {
    let mut out = mpop::delivered_in(maildir);
    out.sort();
    out
}

fn fetch_matches_poplib_with_every_mechanism(bin: PathBuf) {
    let messages = awkward::maildrop();
    let dovecot = Dovecot::start(&[(USER, PASSWORD, &messages)]);
    let fetched = poplib::fetch(
        dovecot.pop3_addr(),
        USER,
        PASSWORD,
        &FetchOptions::default(),
    );
    let mut want: Vec<Vec<u8>> = fetched.retr.iter().map(|m| crlf_to_lf(m)).collect();
    want.sort();
    let work = tempfile::tempdir().unwrap();
    let url = format!("pop://{USER}@127.0.0.1:{}", dovecot.pop3_addr().port());
    for mechanism in ["PLAIN", "CRAM-MD5", "SCRAM-SHA-256"] {
        let maildir = work.path().join(mechanism);
        let out = Command::new(&bin)
            .arg(&url)
            .arg("--maildir")
            .arg(&maildir)
            .arg("--starttls")
            .arg("--ca-file")
            .arg(dovecot.ca_pem_path())
            .args(["--auth", mechanism])
            .env("POP3_PASSWORD", PASSWORD)
            .stdin(Stdio::null())
            .output()
            .expect("run fetch");
        expect_success(&format!("fetch with {mechanism}"), &out);
        let got = contents(&maildir);
        assert_eq!(got.len(), want.len(), "{mechanism}: count");
        for (g, w) in got.iter().zip(&want) {
            assert_bytes_eq(&format!("fetch with {mechanism}"), g, w);
        }
    }
    // Nothing was deleted.
    assert_eq!(dovecot.uidls(USER).len(), messages.len());
}

#[test]
fn tokio_pop3d_serves_poplib_curl_and_mpop_exactly() {
    pop3d_serves_poplib_curl_and_mpop(example_binary("pop3-tokio", "pop3d"));
}

#[test]
fn tokio_fetch_matches_poplib_with_plain_cram_md5_and_scram_sha_256() {
    fetch_matches_poplib_with_every_mechanism(example_binary("pop3-tokio", "fetch"));
}

#[test]
fn smol_pop3d_serves_poplib_curl_and_mpop_exactly() {
    pop3d_serves_poplib_curl_and_mpop(example_binary("pop3-async-std", "pop3d-smol"));
}

#[test]
fn smol_fetch_matches_poplib_with_plain_cram_md5_and_scram_sha_256() {
    fetch_matches_poplib_with_every_mechanism(example_binary("pop3-async-std", "fetch-smol"));
}

#[test]
fn blocking_pop3d_serves_poplib_curl_and_mpop_exactly() {
    pop3d_serves_poplib_curl_and_mpop(example_binary("pop3-blocking", "pop3d-blocking"));
}

#[test]
fn blocking_fetch_matches_poplib_with_plain_cram_md5_and_scram_sha_256() {
    fetch_matches_poplib_with_every_mechanism(example_binary("pop3-blocking", "fetch-blocking"));
}

#[test]
fn tokio_pop3d_serves_mutt_and_neomutt_over_stls_and_pop3s() {
    pop3d_serves_mutt_and_neomutt(example_binary("pop3-tokio", "pop3d"));
}

#[test]
fn smol_pop3d_serves_mutt_and_neomutt_over_stls_and_pop3s() {
    pop3d_serves_mutt_and_neomutt(example_binary("pop3-async-std", "pop3d-smol"));
}

#[test]
fn blocking_pop3d_serves_mutt_and_neomutt_over_stls_and_pop3s() {
    pop3d_serves_mutt_and_neomutt(example_binary("pop3-blocking", "pop3d-blocking"));
}
