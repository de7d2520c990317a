//! Real clients against `pop3d --postgres`: the blocking, tokio and smol
//! `pop3d` examples serve a maildrop delivered into a private PostgreSQL
//! cluster, and Python's poplib (STLS), curl (POP3S and plain POP3) and
//! mpop (STLS, pipelined) retrieve every message byte-exact; curl deletes
//! one and mpop the rest, which the database then no longer holds.

// The peer support of pop3-tokio's own peer tests.
mod peer_examples;
#[path = "support/pg_cluster.rs"]
mod pg_cluster;
#[path = "../../../pop3-tokio/tests/support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::process::Command;

use peer_examples::{certificates, example_binary, spawn_pop3d};
use pg_cluster::Cluster;
use pop3_blocking::postgres::PgStore;
use support::poplib::{self, Connect, FetchOptions, Login};
use support::{assert_bytes_eq, awkward, crlf_lines, crlf_to_lf, expect_success, mpop};

const USER: &str = "alice";
const PASSWORD: &str = "secret";

/// The awkward maildrop (8-bit octets, NUL, dot lines, a 100 KiB line, CRLF
/// and LF line ends...) and a message of several of the store's chunks.
fn messages() -> Vec<(String, Vec<u8>)> {
    let mut all = awkward::small();
    let mut big = b"From: sender@example.org\nSubject: several chunks\n\n".to_vec();
    let mut i = 0;
    while big.len() < 3 * pop3_blocking::postgres::CHUNK_SIZE + 1000 {
        if i % 5 == 0 {
            big.push(b'.');
        }
        big.extend_from_slice(format!("line {i:08} of a message of several chunks\n").as_bytes());
        i += 1;
    }
    all.push(("several-chunks".into(), big));
    all
}

/// How many messages `USER` has in the database.
fn stored(cluster: &Cluster) -> i64 {
    let mut sql = postgres::Client::connect(&cluster.conninfo(), postgres::NoTls).unwrap();
    sql.query_one(
        "SELECT count(*) FROM messages m JOIN accounts a ON a.id = m.account
         WHERE a.name = $1",
        &[&USER],
    )
    .unwrap()
    .get(0)
}

fn pop3d_over_postgres_serves_poplib_curl_and_mpop(bin: PathBuf) {
    let cluster = Cluster::start();
    let messages = messages();
    {
        let store = PgStore::connect(&cluster.conninfo()).unwrap();
        store
            .add_user(USER, &format!("{{PLAIN}}{PASSWORD}"))
            .unwrap();
        for (_, m) in &messages {
            store.deliver(USER, &mut &m[..]).unwrap();
        }
    }
    let work = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(work.path());
    let mut cmd = Command::new(&bin);
    cmd.arg("--postgres").arg(cluster.conninfo());
    let (_server, plain, tls) = spawn_pop3d(cmd, &cert, &key);

    let options = FetchOptions {
        connect: Connect::stls(&ca),
        login: Login::UserPass,
        ..FetchOptions::default()
    };
    let fetched = poplib::fetch(plain, USER, PASSWORD, &options);
    assert_eq!(fetched.retr.len(), messages.len(), "poplib: count");
    for ((name, sent), got) in messages.iter().zip(&fetched.retr) {
        assert_bytes_eq(&format!("poplib: {name}"), got, &crlf_lines(sent));
    }

    // curl over POP3S, and over plain POP3 (CRAM-MD5: every account is
    // {PLAIN}, and nothing else is offered without TLS).
    let pop3s = support::curl::Curl::pop3s(tls, &ca, USER, PASSWORD);
    for (kind, curl) in [
        ("pop3s", pop3s.clone()),
        ("pop3", support::curl::Curl::plain(plain, USER, PASSWORD)),
    ] {
        for (i, (name, sent)) in messages.iter().enumerate() {
            let out = curl.retr(i as u32 + 1);
            expect_success(&format!("curl {kind} RETR {}", i + 1), &out);
            let want = match crlf_lines(sent) {
                // curl prints the status line's CRLF for an empty message.
                sent if sent.is_empty() => b"\r\n".to_vec(),
                sent => sent,
            };
            assert_bytes_eq(&format!("curl {kind}: {name}"), &out.stdout, &want);
        }
    }
    expect_success("curl DELE 1", &pop3s.dele(1));
    assert_eq!(
        stored(&cluster),
        messages.len() as i64 - 1,
        "after curl's DELE"
    );

    // mpop takes the rest and deletes it.
    let account = mpop::Mpop::new(work.path(), plain, mpop::Security::Stls(ca), USER, PASSWORD)
        .pipelining(mpop::Pipelining::On)
        .keep(false);
    let out = support::run_with_timeout(account.command(), account.timeout);
    expect_success("mpop over STLS", &out);
    let delivered = account.delivered();
    assert_eq!(delivered.len(), messages.len() - 1, "mpop: count");
    for ((name, sent), got) in messages[1..].iter().zip(&delivered) {
        assert_bytes_eq(
            &format!("mpop: {name}"),
            got,
            &crlf_to_lf(&crlf_lines(sent)),
        );
    }
    assert_eq!(stored(&cluster), 0, "mpop deleted what it fetched");
}

#[test]
fn blocking_pop3d_over_postgres_serves_poplib_curl_and_mpop_exactly() {
    pop3d_over_postgres_serves_poplib_curl_and_mpop(example_binary(
        "pop3-blocking",
        "pop3d-blocking",
    ));
}

#[test]
fn tokio_pop3d_over_postgres_serves_poplib_curl_and_mpop_exactly() {
    pop3d_over_postgres_serves_poplib_curl_and_mpop(example_binary("pop3-tokio", "pop3d"));
}

#[test]
fn smol_pop3d_over_postgres_serves_poplib_curl_and_mpop_exactly() {
    pop3d_over_postgres_serves_poplib_curl_and_mpop(example_binary("pop3-async-std", "pop3d-smol"));
}
