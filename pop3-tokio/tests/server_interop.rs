//! Our tokio server against real clients on loopback: Python's poplib, curl
//! and mpop, over plain POP3, STLS and implicit TLS, serving a Maildir of
//! awkward messages; and the mail-safety, shutdown and connection-cap
//! behaviour seen from raw sockets.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::curl::Curl;
use support::poplib::{self, Connect, FetchOptions, Login};
use support::server::{TestServer, TestServerBuilder, uids_of};
use support::{assert_bytes_eq, awkward, blocking, crlf_lines, expect_success, mpop, top_of};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const USER: &str = "alice";
const PASSWORD: &str = "secret";

/// How long a raw client waits for a line before the test fails.
const LINE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the server sends for a stored message (before dot-stuffing).
fn wire(stored: &[u8]) -> Vec<u8> {
    crlf_lines(stored)
}

fn wires(messages: &[(String, Vec<u8>)]) -> Vec<Vec<u8>> {
    messages.iter().map(|(_, m)| wire(m)).collect()
}

/// The LIST listing the server must give for `messages`.
fn listing(messages: &[(String, Vec<u8>)]) -> String {
    messages
        .iter()
        .enumerate()
        .map(|(i, (_, m))| format!("{} {}\r\n", i + 1, wire(m).len()))
        .collect()
}

/// The UIDL listing the test server must give for `messages`.
fn uid_listing(messages: &[(String, Vec<u8>)]) -> String {
    uids_of(messages)
        .iter()
        .enumerate()
        .map(|(i, u)| format!("{} {u}\r\n", i + 1))
        .collect()
}

fn total_size(messages: &[(String, Vec<u8>)]) -> usize {
    messages.iter().map(|(_, m)| wire(m).len()).sum()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// The capabilities of a CAPA step, one string per line.
fn caps(step: &poplib::Step) -> Vec<String> {
    assert!(step.ok, "CAPA failed: {step:?}");
    step.line_list()
        .iter()
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect()
}

fn has_cap(caps: &[String], name: &str) -> bool {
    caps.iter().any(|c| {
        c.split(' ')
            .next()
            .is_some_and(|w| w.eq_ignore_ascii_case(name))
    })
}

/// The mechanisms of the SASL capability (empty when absent).
fn sasl(caps: &[String]) -> Vec<String> {
    caps.iter()
        .find(|c| c.to_ascii_uppercase().starts_with("SASL "))
        .map(|c| c.split(' ').skip(1).map(str::to_string).collect())
        .unwrap_or_default()
}

/// The `<...@...>` timestamp of a greeting, if any.
fn timestamp(greeting: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(greeting);
    let start = text.find('<')?;
    let end = start + text[start..].find('>')?;
    let stamp = &text[start..=end];
    stamp.contains('@').then(|| stamp.to_string())
}

/// Checks a poplib fetch against the stored messages.
fn check_fetch(label: &str, got: &poplib::Fetched, messages: &[(String, Vec<u8>)], top: usize) {
    assert!(got.greeting.starts_with(b"+OK"), "{label}: greeting");
    assert_eq!(got.retr.len(), messages.len(), "{label}: message count");
    for ((name, stored), retr) in messages.iter().zip(&got.retr) {
        assert_bytes_eq(&format!("{label}: RETR of {name}"), retr, &wire(stored));
    }
    assert_eq!(got.top.len(), messages.len(), "{label}: TOP count");
    for ((name, stored), top_got) in messages.iter().zip(&got.top) {
        let want = top_of(&wire(stored), top);
        assert_bytes_eq(&format!("{label}: TOP {top} of {name}"), top_got, &want);
    }
    // The LIST size is exactly what RETR sent (before dot-stuffing).
    let sent: Vec<u64> = got.retr.iter().map(|r| r.len() as u64).collect();
    assert_eq!(got.sizes(), sent, "{label}: LIST sizes");
    assert_eq!(got.uids(), uids_of(messages), "{label}: UIDL");
    assert_eq!(
        String::from_utf8_lossy(&got.stat),
        format!("+OK {} {}", messages.len(), total_size(messages)),
        "{label}: STAT"
    );
}

/// A client on a raw socket: one line at a time, with a timeout.
struct Raw {
    stream: BufReader<TcpStream>,
}

impl Raw {
    fn new(stream: TcpStream) -> Raw {
        Raw {
            stream: BufReader::new(stream),
        }
    }

    /// Connects; does not read the greeting.
    async fn connect(addr: SocketAddr) -> Raw {
        Raw::new(TcpStream::connect(addr).await.expect("connect"))
    }

    /// Connects and reads the greeting, which must be `+OK`.
    async fn greeted(addr: SocketAddr) -> Raw {
        let mut raw = Raw::connect(addr).await;
        let greeting = raw.line().await.expect("greeting");
        assert!(greeting.starts_with("+OK"), "{greeting:?}");
        raw
    }

    /// The next line without CRLF; `None` at end of input.
    async fn line(&mut self) -> Option<String> {
        self.line_within(LINE_TIMEOUT)
            .await
            .expect("no line from the server in time")
    }

    /// The next line, `Ok(None)` at end of input, `Err(())` on timeout.
    async fn line_within(&mut self, timeout: Duration) -> Result<Option<String>, ()> {
        let mut buf = Vec::new();
        match tokio::time::timeout(timeout, self.stream.read_until(b'\n', &mut buf)).await {
            Err(_) => Err(()),
            Ok(Ok(0)) | Ok(Err(_)) => Ok(None),
            Ok(Ok(_)) => {
                let text = String::from_utf8_lossy(&buf);
                Ok(Some(text.trim_end_matches(['\r', '\n']).to_string()))
            }
        }
    }

    async fn send(&mut self, command: &str) {
        let stream = self.stream.get_mut();
        stream
            .write_all(format!("{command}\r\n").as_bytes())
            .await
            .expect("send");
    }

    /// Sends a command with a one-line answer and returns the answer.
    async fn cmd(&mut self, command: &str) -> String {
        self.send(command).await;
        self.line().await.expect("answer")
    }

    /// Sends a command with a multi-line answer: the status line and the
    /// lines up to the terminating `.`.
    async fn multi(&mut self, command: &str) -> (String, Vec<String>) {
        let status = self.cmd(command).await;
        let mut lines = Vec::new();
        if status.starts_with("+OK") {
            loop {
                let line = self.line().await.expect("listing line");
                if line == "." {
                    break;
                }
                lines.push(line);
            }
        }
        (status, lines)
    }

    /// USER and PASS (the server must allow plaintext logins); the PASS answer.
    async fn login(&mut self, user: &str, password: &str) -> String {
        let answer = self.cmd(&format!("USER {user}")).await;
        assert!(answer.starts_with("+OK"), "USER: {answer:?}");
        self.cmd(&format!("PASS {password}")).await
    }
}

/// Connects with a 4 KiB receive buffer, so that a client that stops
/// reading soon stalls the server's writes.
async fn small_window_connect(addr: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(addr).await.expect("connect")
}

/// A raw client with a 4 KiB receive buffer, logged in as the test user.
async fn small_window_login(addr: SocketAddr) -> Raw {
    let mut raw = Raw::new(small_window_connect(addr).await);
    assert!(raw.line().await.expect("greeting").starts_with("+OK"));
    assert!(raw.login(USER, PASSWORD).await.starts_with("+OK"));
    raw
}

/// The message number of the named message of a maildrop.
fn number_of(messages: &[(String, Vec<u8>)], wanted: &str) -> usize {
    1 + messages
        .iter()
        .position(|(name, _)| name == wanted)
        .expect("the message is in the maildrop")
}

/// poplib fetches the test user's maildrop (off the async runtime).
async fn poplib_fetch(
    addr: SocketAddr,
    connect: Connect,
    login: Login,
    top: Option<u32>,
) -> poplib::Fetched {
    let options = FetchOptions {
        connect,
        login,
        top,
        ..FetchOptions::default()
    };
    blocking(move || poplib::fetch(addr, USER, PASSWORD, &options)).await
}

/// A server allowing plaintext logins without TLS (for raw-socket tests).
fn plaintext_server(messages: &[(String, Vec<u8>)]) -> TestServerBuilder {
    TestServerBuilder::new()
        .user(USER, PASSWORD, messages)
        .with_config(|c| c.allow_plaintext_auth(true))
}

/// Logs in on a fresh raw connection, retrying while the maildrop is still
/// held by a session that is ending; returns the logged-in client.
/// Waits until `server` has no session open (a closed connection's slot is
/// given back when its session task ends, just after the close).
async fn until_no_session(server: &TestServer) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.server().open_connections() > 0 {
        assert!(Instant::now() < deadline, "a session stayed open");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Logs in as soon as the maildrop is free. A refusal by the connection
/// cap is waited out too: connections a test dropped may still sit in the
/// listener's backlog, and each takes a slot for a moment once accepted.
async fn login_when_free(addr: SocketAddr) -> Raw {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut raw = Raw::connect(addr).await;
        let greeting = raw.line().await.expect("greeting");
        if greeting.starts_with("-ERR [SYS/TEMP]") {
            assert!(
                Instant::now() < deadline,
                "the cap stayed full: {greeting:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        assert!(greeting.starts_with("+OK"), "{greeting:?}");
        let answer = raw.login(USER, PASSWORD).await;
        if answer.starts_with("+OK") {
            return raw;
        }
        assert!(answer.starts_with("-ERR [IN-USE]"), "{answer:?}");
        assert!(Instant::now() < deadline, "the maildrop stayed locked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------- poplib

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poplib_capa_hides_user_and_plaintext_sasl_until_stls() {
    let messages = awkward::small();
    let server = TestServer::start(USER, PASSWORD, &messages).await;
    let (addr, ca) = (server.plain_addr(), server.ca());
    let session = blocking(move || {
        poplib::session(
            addr,
            &Connect::plain_with_ca(&ca),
            &[
                "capa",
                "user alice",
                "pass secret",
                "stls",
                "capa",
                "user alice",
                "pass secret",
                "capa",
                "raw STLS",
                "quit",
            ],
        )
    })
    .await;
    // RFC 2449 §4: the greeting fits in 512 octets with its CRLF.
    assert!(session.greeting.len() + 2 <= 512, "{:?}", session.greeting);
    assert!(timestamp(&session.greeting).is_some(), "no APOP timestamp");
    let steps = &session.steps;
    assert_eq!(steps.len(), 10, "{steps:?}");
    let by = |i: usize| &steps[i - 1];

    // Before TLS: STLS offered, USER and the plaintext mechanisms not;
    // CRAM-MD5 and SCRAM (the secret never crosses the wire) are.
    let before = caps(by(1));
    for cap in ["TOP", "UIDL", "PIPELINING", "RESP-CODES", "STLS"] {
        assert!(
            has_cap(&before, cap),
            "{cap} missing before TLS: {before:?}"
        );
    }
    assert!(!has_cap(&before, "USER"), "USER before TLS: {before:?}");
    assert_eq!(
        sasl(&before),
        ["CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256"],
        "{before:?}"
    );
    for i in [2, 3] {
        assert!(!by(i).ok, "plaintext login before TLS: {:?}", by(i));
        assert!(by(i).text().starts_with("-ERR [AUTH]"), "{:?}", by(i));
        assert!(!by(i).stopped);
    }

    assert!(by(4).ok, "STLS: {:?}", by(4));
    let after_tls = caps(by(5));
    for cap in ["TOP", "UIDL", "PIPELINING", "RESP-CODES", "USER"] {
        assert!(
            has_cap(&after_tls, cap),
            "{cap} missing after STLS: {after_tls:?}"
        );
    }
    assert!(!has_cap(&after_tls, "STLS"), "{after_tls:?}");
    // poplib negotiates TLS 1.3, but the channel-bound SCRAM is not
    // advertised by default (accepted when asked for by name).
    assert_eq!(
        sasl(&after_tls),
        ["PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256"]
    );
    assert!(by(6).ok && by(7).ok, "{:?} {:?}", by(6), by(7));

    let logged_in = caps(by(8));
    for cap in ["TOP", "UIDL", "PIPELINING", "RESP-CODES"] {
        assert!(has_cap(&logged_in, cap), "{cap} missing: {logged_in:?}");
    }
    assert!(!has_cap(&logged_in, "STLS"), "{logged_in:?}");
    assert!(!by(9).ok, "a second STLS: {:?}", by(9));
    assert!(by(10).ok);
    assert_eq!(server.stored(USER), sorted(uids_of(&messages)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poplib_capa_offers_user_before_tls_when_plaintext_is_allowed_and_no_stls_on_pop3s() {
    let messages = awkward::small();
    let server = plaintext_server(&messages).start().await;
    let (addr, tls_addr, ca) = (server.plain_addr(), server.tls_addr(), server.ca());
    let ca2 = ca.clone();
    let plain = blocking(move || {
        poplib::session(
            addr,
            &Connect::plain_with_ca(&ca),
            &["capa", "user alice", "pass secret", "stat", "quit"],
        )
    })
    .await;
    let before = caps(&plain.steps[0]);
    assert!(has_cap(&before, "USER"), "{before:?}");
    assert!(has_cap(&before, "STLS"), "{before:?}");
    assert_eq!(
        sasl(&before),
        ["PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256"]
    );
    assert!(plain.steps[1..].iter().all(|s| s.ok), "{:?}", plain.steps);

    let pop3s = blocking(move || {
        poplib::session(
            tls_addr,
            &Connect::implicit(&ca2),
            &["capa", "raw STLS", "quit"],
        )
    })
    .await;
    let on_tls = caps(&pop3s.steps[0]);
    assert!(has_cap(&on_tls, "USER"), "{on_tls:?}");
    assert!(!has_cap(&on_tls, "STLS"), "{on_tls:?}");
    assert!(!pop3s.steps[1].ok, "STLS on POP3S: {:?}", pop3s.steps[1]);
    assert!(pop3s.steps[2].ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_shared_secrets_there_is_no_apop_timestamp_and_no_cram_md5() {
    // bob's password ("secret") is stored hashed: the store cannot give a
    // shared secret, so neither APOP nor CRAM-MD5 can work.
    let hashed = "bob:{SHA512-CRYPT}$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1";
    let messages = awkward::small();
    let server = TestServerBuilder::new()
        .user_line("bob", hashed, &messages)
        .start()
        .await;
    let (addr, ca) = (server.plain_addr(), server.ca());
    let session = blocking(move || {
        poplib::session(
            addr,
            &Connect::plain_with_ca(&ca),
            &[
                "capa",
                "stls",
                "capa",
                "user bob",
                "pass secret",
                "stat",
                "quit",
            ],
        )
    })
    .await;
    assert_eq!(timestamp(&session.greeting), None, "{:?}", session.greeting);
    let before = caps(&session.steps[0]);
    assert!(sasl(&before).is_empty(), "{before:?}");
    assert!(!has_cap(&before, "USER"), "{before:?}");
    let after = caps(&session.steps[2]);
    assert_eq!(sasl(&after), ["PLAIN", "LOGIN"], "{after:?}");
    assert!(has_cap(&after, "USER"), "{after:?}");
    assert!(
        session.steps[3..].iter().all(|s| s.ok),
        "{:?}",
        session.steps
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poplib_apop_logs_in_with_the_greeting_timestamp() {
    let messages = awkward::small();
    let server = TestServerBuilder::new()
        .user(USER, PASSWORD, &messages)
        .with_config(|c| c.auth_failure_delay(Duration::from_millis(100)))
        .start()
        .await;
    let addr = server.plain_addr();
    let fetched = poplib_fetch(addr, Connect::Plain, Login::Apop, Some(0)).await;
    check_fetch("APOP", &fetched, &messages, 0);
    let first = timestamp(&fetched.greeting).expect("a timestamp in the greeting");

    let wrong = blocking(move || {
        poplib::session(
            addr,
            &Connect::Plain,
            &["apop alice wrong", "apop alice secret", "quit"],
        )
    })
    .await;
    let second = timestamp(&wrong.greeting).expect("a timestamp in the greeting");
    assert_ne!(first, second, "the timestamp must differ every time");
    assert!(!wrong.steps[0].ok);
    assert!(
        wrong.steps[0].text().starts_with("-ERR [AUTH]"),
        "{wrong:?}"
    );
    assert!(wrong.steps[1].ok && wrong.steps[2].ok, "{wrong:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poplib_fetches_the_awkward_maildrop_over_stls_unchanged() {
    let messages = awkward::maildrop();
    let server = TestServer::start(USER, PASSWORD, &messages).await;
    let (addr, ca) = (server.plain_addr(), server.ca());
    let fetched = poplib_fetch(addr, Connect::stls(&ca), Login::UserPass, Some(2)).await;
    check_fetch("STLS", &fetched, &messages, 2);
    let big = fetched.retr.iter().map(Vec::len).max().expect("messages");
    assert!(big > 20 * 1024 * 1024, "the big message: {big} octets");
    assert_eq!(server.stored(USER), sorted(uids_of(&messages)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poplib_pop3_ssl_fetches_with_the_ca() {
    let messages = awkward::small();
    let server = TestServer::start(USER, PASSWORD, &messages).await;
    let (addr, ca) = (server.tls_addr(), server.ca());
    let fetched = poplib_fetch(addr, Connect::implicit(&ca), Login::UserPass, Some(0)).await;
    check_fetch("POP3S", &fetched, &messages, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poplib_commands_stat_list_uidl_top_retr_dele_rset_noop_quit() {
    let messages = awkward::small();
    let server = TestServer::start(USER, PASSWORD, &messages).await;
    let (addr, ca) = (server.plain_addr(), server.ca());
    let uids = uids_of(&messages);
    let session = blocking(move || {
        poplib::session(
            addr,
            &Connect::stls(&ca),
            &[
                "user alice",  // 1
                "pass secret", // 2
                "stat",        // 3
                "list",        // 4
                "list 2",      // 5
                "uidl",        // 6
                "uidl 3",      // 7
                "top 2 1",     // 8
                "top 1 100000",
                "retr 2",  // 10
                "retr 99", // 11
                "dele 1",  // 12
                "stat",    // 13
                "list 1",  // 14
                "retr 1",  // 15
                "dele 1",  // 16
                "rset",    // 17
                "stat",    // 18
                "retr 1",  // 19
                "dele 1",  // 20
                "dele 3",  // 21
                "uidl",    // 22
                "noop",    // 23
                "quit",    // 24
            ],
        )
    })
    .await;
    let steps = &session.steps;
    assert_eq!(steps.len(), 24, "{steps:?}");
    let by = |i: usize| &steps[i - 1];
    let wires = wires(&messages);
    let n = messages.len();
    let total = total_size(&messages);

    assert!(by(1).ok && by(2).ok, "{:?} {:?}", by(1), by(2));
    assert_eq!(by(3).text(), format!("+OK {n} {total}"));
    assert_eq!(
        String::from_utf8_lossy(by(4).lines.as_ref().unwrap()),
        listing(&messages)
    );
    assert_eq!(by(5).text(), format!("+OK 2 {}", wires[1].len()));
    assert_eq!(
        String::from_utf8_lossy(by(6).lines.as_ref().unwrap()),
        uid_listing(&messages)
    );
    assert_eq!(by(7).text(), format!("+OK 3 {}", uids[2]));
    assert_bytes_eq(
        "TOP 2 1",
        by(8).lines.as_ref().unwrap(),
        &top_of(&wires[1], 1),
    );
    assert_bytes_eq("TOP 1 100000", by(9).lines.as_ref().unwrap(), &wires[0]);
    assert_bytes_eq("RETR 2", by(10).lines.as_ref().unwrap(), &wires[1]);
    assert!(!by(11).ok && !by(11).stopped, "RETR 99: {:?}", by(11));

    // DELE marks: the message is hidden, not counted, not retrievable.
    assert!(by(12).ok);
    assert_eq!(
        by(13).text(),
        format!("+OK {} {}", n - 1, total - wires[0].len())
    );
    assert!(!by(14).ok, "LIST of a deleted message: {:?}", by(14));
    assert!(!by(15).ok, "RETR of a deleted message: {:?}", by(15));
    assert!(!by(16).ok, "DELE of a deleted message: {:?}", by(16));
    // RSET brings it back.
    assert!(by(17).ok);
    assert_eq!(by(18).text(), format!("+OK {n} {total}"));
    assert_bytes_eq(
        "RETR 1 after RSET",
        by(19).lines.as_ref().unwrap(),
        &wires[0],
    );

    assert!(by(20).ok && by(21).ok);
    let listed = String::from_utf8_lossy(by(22).lines.as_ref().unwrap()).into_owned();
    assert_eq!(listed.lines().count(), n - 2, "{listed}");
    assert!(!listed.contains(&format!(" {}\r", uids[0])), "{listed}");
    assert!(!listed.contains(&format!(" {}\r", uids[2])), "{listed}");
    assert!(by(23).ok && by(24).ok, "{:?} {:?}", by(23), by(24));

    // QUIT removed exactly messages 1 and 3.
    let mut kept = uids.clone();
    kept.remove(2);
    kept.remove(0);
    assert_eq!(server.stored(USER), sorted(kept));
}

// ------------------------------------------------------------------ curl

/// What curl prints for RETR of a stored message: the message as sent, but
/// for an empty message (`+OK` then `.` at once) curl prints the CRLF that
/// ended the status line, as it takes it for the start of the terminator.
fn curl_form(stored: &[u8]) -> Vec<u8> {
    let sent = wire(stored);
    if sent.is_empty() {
        return b"\r\n".to_vec();
    }
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_lists_and_retrieves_over_plain_pop3() {
    let messages = awkward::small();
    let server = TestServer::start(USER, PASSWORD, &messages).await;
    let addr = server.plain_addr();
    let want = messages.clone();
    blocking(move || {
        // Without TLS the only mechanism offered is CRAM-MD5, which curl uses.
        let curl = Curl::plain(addr, USER, PASSWORD);
        let list = curl.list();
        expect_success("curl LIST", &list);
        assert_eq!(String::from_utf8_lossy(&list.stdout), listing(&want));
        for (i, (name, stored)) in want.iter().enumerate() {
            let out = curl.retr(i as u32 + 1);
            expect_success(&format!("curl RETR {}", i + 1), &out);
            assert_bytes_eq(
                &format!("curl RETR of {name}"),
                &out.stdout,
                &curl_form(stored),
            );
        }
    })
    .await;
    assert_eq!(server.stored(USER), sorted(uids_of(&messages)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_uidl_and_top_over_stls_with_ssl_reqd() {
    let messages = awkward::small();
    let server = TestServer::start(USER, PASSWORD, &messages).await;
    let (addr, ca) = (server.plain_addr(), server.ca());
    let want = messages.clone();
    blocking(move || {
        let curl = Curl::stls(addr, &ca, USER, PASSWORD);
        let uidl = curl.uidl();
        expect_success("curl UIDL over STLS", &uidl);
        assert_eq!(String::from_utf8_lossy(&uidl.stdout), uid_listing(&want));
        let top = curl.top(2, 3);
        expect_success("curl TOP 2 3 over STLS", &top);
        assert_bytes_eq("curl TOP 2 3", &top.stdout, &top_of(&wire(&want[1].1), 3));
        let list = curl.list();
        expect_success("curl LIST over STLS", &list);
        assert_eq!(String::from_utf8_lossy(&list.stdout), listing(&want));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_retrieves_the_awkward_maildrop_over_pop3s() {
    let messages = awkward::maildrop();
    let server = TestServer::start(USER, PASSWORD, &messages).await;
    let (addr, ca) = (server.tls_addr(), server.ca());
    let want = messages.clone();
    blocking(move || {
        let curl = Curl::pop3s(addr, &ca, USER, PASSWORD);
        // TLS 1.2 is accepted as well as 1.3 (RFC 8314).
        let list = curl.clone().arg("--tls-max").arg("1.2").arg("-v").list();
        expect_success("curl LIST over POP3S with TLS 1.2", &list);
        assert_eq!(String::from_utf8_lossy(&list.stdout), listing(&want));
        let log = String::from_utf8_lossy(&list.stderr);
        assert!(log.contains("TLSv1.2"), "{log}");
        for (i, (name, stored)) in want.iter().enumerate() {
            let out = curl.retr(i as u32 + 1);
            expect_success(&format!("curl RETR {} over POP3S", i + 1), &out);
            assert_bytes_eq(
                &format!("curl RETR of {name}"),
                &out.stdout,
                &curl_form(stored),
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_dele_removes_the_message_only_when_curl_quits() {
    let messages = awkward::small();
    let server = plaintext_server(&messages).start().await;
    let (addr, ca) = (server.plain_addr(), server.ca());
    let uids = uids_of(&messages);
    // Without -I, curl waits for a multi-line answer to DELE that never
    // comes; when its time is up it drops the connection without QUIT.
    let timed_out = blocking(move || {
        Curl::plain(addr, USER, PASSWORD)
            .arg("-v")
            .arg("--max-time")
            .arg("1")
            .run("", Some("DELE 2"), false)
    })
    .await;
    assert_eq!(timed_out.status.code(), Some(28), "curl did not time out");
    let log = String::from_utf8_lossy(&timed_out.stderr);
    assert!(log.contains("> DELE 2"), "{log}");
    assert!(!log.contains("> QUIT"), "{log}");
    let mut check = login_when_free(addr).await;
    assert!(check.cmd("QUIT").await.starts_with("+OK"));
    assert_eq!(
        server.stored(USER),
        sorted(uids.clone()),
        "deleted without QUIT"
    );

    // With -I, curl ends the session with QUIT when it closes the
    // connection at exit (its verbose log no longer shows that): only then
    // is the message gone.
    let dele = blocking(move || Curl::plain(addr, USER, PASSWORD).arg("-v").dele(2)).await;
    expect_success("curl DELE 2", &dele);
    let log = String::from_utf8_lossy(&dele.stderr);
    let dele_at = log.find("> DELE 2").expect("curl sent DELE 2");
    assert!(log[dele_at..].contains("< +OK"), "{log}");
    let mut kept = uids.clone();
    kept.remove(1);
    assert_eq!(server.stored(USER), sorted(kept.clone()));
    // A new session sees the rest, renumbered.
    let session = blocking(move || {
        poplib::session(
            addr,
            &Connect::stls(&ca),
            &["user alice", "pass secret", "uidl", "quit"],
        )
    })
    .await;
    let listed: Vec<String> = session.steps[2]
        .line_list()
        .iter()
        .map(|l| {
            String::from_utf8_lossy(l)
                .split(' ')
                .nth(1)
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(listed, kept);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_auth_plain_login_cram_md5_and_apop() {
    let messages = awkward::small();
    let server = TestServer::start(USER, PASSWORD, &messages).await;
    let (addr, tls_addr, ca) = (server.plain_addr(), server.tls_addr(), server.ca());
    let want = listing(&messages);
    blocking(move || {
        let runs = [
            (
                "AUTH=PLAIN over STLS",
                Curl::stls(addr, &ca, USER, PASSWORD),
                "AUTH=PLAIN",
            ),
            (
                "AUTH=PLAIN with an initial response over POP3S",
                Curl::pop3s(tls_addr, &ca, USER, PASSWORD).arg("--sasl-ir"),
                "AUTH=PLAIN",
            ),
            (
                "AUTH=LOGIN over POP3S",
                Curl::pop3s(tls_addr, &ca, USER, PASSWORD),
                "AUTH=LOGIN",
            ),
            (
                "AUTH=CRAM-MD5 plain",
                Curl::plain(addr, USER, PASSWORD),
                "AUTH=CRAM-MD5",
            ),
            (
                "AUTH=+APOP plain",
                Curl::plain(addr, USER, PASSWORD),
                "AUTH=+APOP",
            ),
        ];
        for (label, curl, options) in runs {
            let out = curl.login_options(options).arg("-v").list();
            expect_success(&format!("curl {label}"), &out);
            assert_eq!(String::from_utf8_lossy(&out.stdout), want, "curl {label}");
            let log = String::from_utf8_lossy(&out.stderr);
            let sent = if options == "AUTH=+APOP" {
                "> APOP alice ".to_string()
            } else {
                format!("> AUTH {}", &options[5..])
            };
            assert!(
                log.contains(&sent),
                "curl {label} did not send {sent:?}:\n{log}"
            );
        }
        // PLAIN is not offered before TLS: curl finds no mechanism to use.
        let refused = Curl::plain(addr, USER, PASSWORD)
            .login_options("AUTH=PLAIN")
            .list();
        assert!(!refused.status.success(), "AUTH=PLAIN without TLS worked");
    })
    .await;
    assert_eq!(server.stored(USER), sorted(uids_of(&messages)));
}

// ------------------------------------------------------------------ mpop

/// What mpop stores for a message (`received_header off`): the message as
/// sent, with LF line ends.
fn mpop_expected(stored: &[u8]) -> Vec<u8> {
    support::crlf_to_lf(&wire(stored))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mpop_stls_pipelined_fetch_with_keep_off_deletes_after_quit() {
    let messages = awkward::maildrop();
    let server = TestServer::start(USER, PASSWORD, &messages).await;
    let (addr, ca) = (server.plain_addr(), server.ca());
    let work = tempfile::tempdir().unwrap();
    let account = mpop::Mpop::new(work.path(), addr, mpop::Security::Stls(ca), USER, PASSWORD)
        .pipelining(mpop::Pipelining::On)
        .keep(false);
    let (out, delivered) = blocking(move || {
        // --debug prints the dialogue: commands as `--> `, answers as `<-- `.
        let mut cmd = account.command();
        cmd.arg("--debug");
        let out = support::run_with_timeout(cmd, account.timeout);
        (out, account.delivered())
    })
    .await;
    expect_success("mpop over STLS", &out);
    assert_eq!(delivered.len(), messages.len(), "mpop: count");
    for ((name, stored), got) in messages.iter().zip(&delivered) {
        assert_bytes_eq(&format!("mpop: {name}"), got, &mpop_expected(stored));
    }
    // mpop pipelined its RETRs and DELEs, and QUIT came after the DELEs.
    let dialogue = mpop_dialogue(&out.stdout);
    assert!(pipelined(&dialogue, "RETR"), "RETR not pipelined");
    assert!(pipelined(&dialogue, "DELE"), "DELE not pipelined");
    let last_dele = dialogue.iter().rposition(|l| l.starts_with("--> DELE "));
    let quit = dialogue.iter().position(|l| l == "--> QUIT");
    assert!(last_dele < quit && last_dele.is_some(), "QUIT before DELE");
    // QUIT committed every deletion.
    assert_eq!(server.stored(USER), Vec::<String>::new());
}

/// The lines of mpop's `--debug` dialogue: `--> ` command, `<-- ` answer.
fn mpop_dialogue(stdout: &[u8]) -> Vec<String> {
    stdout
        .split(|&b| b == b'\n')
        .filter(|l| l.starts_with(b"--> ") || l.starts_with(b"<-- "))
        .map(|l| String::from_utf8_lossy(l).trim_end().to_string())
        .collect()
}

/// Whether two `verb` commands went out with no answer between them.
fn pipelined(dialogue: &[String], verb: &str) -> bool {
    let command = format!("--> {verb} ");
    dialogue
        .windows(2)
        .any(|w| w[0].starts_with(&command) && w[1].starts_with(&command))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mpop_pop3s_keeps_messages_and_fetches_only_new_ones() {
    let messages = awkward::small();
    let server = TestServer::start(USER, PASSWORD, &messages).await;
    let (addr, ca) = (server.tls_addr(), server.ca());
    let work = tempfile::tempdir().unwrap();
    let account = mpop::Mpop::new(
        work.path(),
        addr,
        mpop::Security::Implicit(ca),
        USER,
        PASSWORD,
    )
    .auth("plain");
    let (first, second, delivered) = blocking(move || {
        let first = account.run();
        let second = account.run();
        (first, second, account.delivered())
    })
    .await;
    expect_success("mpop over POP3S", &first);
    expect_success("mpop over POP3S, again", &second);
    assert_eq!(delivered.len(), messages.len(), "mpop: count");
    for ((name, stored), got) in messages.iter().zip(&delivered) {
        assert_bytes_eq(&format!("mpop: {name}"), got, &mpop_expected(stored));
    }
    assert_eq!(server.stored(USER), sorted(uids_of(&messages)));
}

/// `doveadm pw -s SCRAM-SHA-256 -p secret` and `-s SCRAM-SHA-1`.
const DOVEADM_SCRAM_SHA256: &str = "{SCRAM-SHA-256}4096,BXlOE1p6JoeiFnkD9ogyoQ==,4i7fUBleYPKXBGlKwEq/8UEelRgTtAF20dvvSHHWQfk=,pYdAJYpbN39FVfVX/EH3dfIMQj4zePc0sFZ2KAT5zrE=";
const DOVEADM_SCRAM_SHA1: &str = "{SCRAM-SHA-1}4096,dyCLsjRAN0ezboeM1ngZFw==,x9soDW0Oi/a+VoLj4WGbcyFuH4k=,+On8n0oTFvBo/0z1/g712RIzhj8=";

/// Runs mpop once with `auth` and checks the dialogue used that mechanism
/// and every message arrived.
async fn mpop_auth_run(
    label: &str,
    addr: SocketAddr,
    security: mpop::Security,
    auth: &str,
    password: &str,
    messages: &[(String, Vec<u8>)],
) -> std::process::Output {
    let work = tempfile::tempdir().unwrap();
    let account = mpop::Mpop::new(work.path(), addr, security, USER, password).auth(auth);
    let (out, delivered) = blocking(move || {
        let mut cmd = account.command();
        cmd.arg("--debug");
        let out = support::run_with_timeout(cmd, account.timeout);
        (out, account.delivered())
    })
    .await;
    if !label.contains("wrong") {
        expect_success(label, &out);
        assert_eq!(delivered.len(), messages.len(), "{label}: count");
        let dialogue = mpop_dialogue(&out.stdout);
        let sent = format!("--> AUTH {}", auth.to_ascii_uppercase());
        assert!(
            dialogue.iter().any(|l| l.starts_with(&sent)),
            "{label}: no {sent:?} in {dialogue:#?}"
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mpop_auth_scram_sha256_scram_sha1_cram_md5_and_plain() {
    let messages = awkward::small();
    // A {PLAIN} user: every mechanism, SCRAM keys derived by the store.
    let server = TestServer::start(USER, PASSWORD, &messages).await;
    let (addr, tls_addr, ca) = (server.plain_addr(), server.tls_addr(), server.ca());
    for auth in ["scram-sha-256", "scram-sha-1", "cram-md5"] {
        // None of these reveals the password: no TLS needed.
        let label = format!("mpop auth {auth} without TLS");
        mpop_auth_run(
            &label,
            addr,
            mpop::Security::Plain,
            auth,
            PASSWORD,
            &messages,
        )
        .await;
    }
    for auth in ["plain", "scram-sha-256"] {
        let label = format!("mpop auth {auth} over STLS");
        let security = mpop::Security::Stls(ca.clone());
        mpop_auth_run(&label, addr, security, auth, PASSWORD, &messages).await;
        let label = format!("mpop auth {auth} over POP3S");
        let security = mpop::Security::Implicit(ca.clone());
        mpop_auth_run(&label, tls_addr, security, auth, PASSWORD, &messages).await;
    }
    // A wrong password fails with the [AUTH] code.
    let out = mpop_auth_run(
        "mpop auth scram-sha-256, wrong password",
        addr,
        mpop::Security::Plain,
        "scram-sha-256",
        "wrong",
        &messages,
    )
    .await;
    assert!(!out.status.success(), "a wrong SCRAM password worked");
    let dialogue = mpop_dialogue(&out.stdout);
    assert!(
        dialogue.iter().any(|l| l.starts_with("<-- -ERR [AUTH]")),
        "{dialogue:#?}"
    );
    assert_eq!(server.stored(USER), sorted(uids_of(&messages)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mpop_auth_scram_with_dovecot_scram_passwd_entries() {
    let messages = awkward::small();
    for (entry, auth) in [
        (DOVEADM_SCRAM_SHA256, "scram-sha-256"),
        (DOVEADM_SCRAM_SHA1, "scram-sha-1"),
    ] {
        let server = TestServerBuilder::new()
            .user_line(USER, &format!("{USER}:{entry}"), &messages)
            .start()
            .await;
        let (addr, ca) = (server.plain_addr(), server.ca());
        let label = format!("mpop auth {auth} against a {auth} passwd entry");
        mpop_auth_run(
            &label,
            addr,
            mpop::Security::Stls(ca.clone()),
            auth,
            PASSWORD,
            &messages,
        )
        .await;
        // The keys verify USER/PASS over TLS too.
        let label = format!("mpop auth user against a {auth} passwd entry");
        let work = tempfile::tempdir().unwrap();
        let account = mpop::Mpop::new(work.path(), addr, mpop::Security::Stls(ca), USER, PASSWORD);
        let out = blocking(move || account.run()).await;
        expect_success(&label, &out);
    }
}

/// alice's OAuth bearer token, longer than an AUTH line of 255 octets
/// allows with it as the initial response (real tokens are).
fn long_token() -> String {
    let mut t = String::from("ya29.");
    while t.len() < 300 {
        t.push_str("a0Aa1b2C3d4E5f6G7h8I9j-_");
    }
    t
}

async fn oauth_server(
    messages: &[(String, Vec<u8>)],
    mechanisms: Vec<pop3_proto::server::SaslMechanism>,
) -> TestServer {
    let token = long_token();
    TestServerBuilder::new()
        .with_config(|c| c.sasl_mechanisms(mechanisms))
        .user(USER, PASSWORD, messages)
        .token_validator(pop3_proto::store::TokenValidator::new(move |user, t| {
            user == USER && t.expose() == token.as_bytes()
        }))
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_oauth2_bearer_with_oauthbearer_and_xoauth2() {
    let messages = awkward::small();
    use pop3_proto::server::SaslMechanism;
    let server = oauth_server(&messages, vec![SaslMechanism::OAuthBearer]).await;
    let (addr, tls_addr, ca) = (server.plain_addr(), server.tls_addr(), server.ca());
    // curl prefers OAUTHBEARER: a server offering only XOAUTH2 for that.
    let xoauth2 = oauth_server(&messages, vec![SaslMechanism::XOAuth2]).await;
    let (xoauth2_addr, xoauth2_ca) = (xoauth2.tls_addr(), xoauth2.ca());
    let want = listing(&messages);
    blocking(move || {
        for (label, curl, options, sent) in [
            (
                "OAUTHBEARER over POP3S",
                Curl::pop3s(tls_addr, &ca, USER, ""),
                None,
                "> AUTH OAUTHBEARER",
            ),
            (
                // curl keeps AUTH lines to 255 octets: the long token goes
                // in two steps even with --sasl-ir.
                "OAUTHBEARER, --sasl-ir, over STLS",
                Curl::stls(addr, &ca, USER, "").arg("--sasl-ir"),
                None,
                "> AUTH OAUTHBEARER",
            ),
            (
                "XOAUTH2 over POP3S",
                Curl::pop3s(xoauth2_addr, &xoauth2_ca, USER, ""),
                Some("AUTH=XOAUTH2"),
                "> AUTH XOAUTH2",
            ),
        ] {
            let mut curl = curl.arg("--oauth2-bearer").arg(long_token()).arg("-v");
            if let Some(options) = options {
                curl = curl.login_options(options);
            }
            let out = curl.list();
            expect_success(&format!("curl {label}"), &out);
            assert_eq!(String::from_utf8_lossy(&out.stdout), want, "curl {label}");
            let log = String::from_utf8_lossy(&out.stderr);
            assert!(
                log.contains(sent),
                "curl {label} did not send {sent:?}:\n{log}"
            );
        }
        // A wrong token: the error challenge, then -ERR [AUTH].
        let out = Curl::pop3s(tls_addr, &ca, USER, "")
            .arg("--oauth2-bearer")
            .arg("expired")
            .arg("-v")
            .list();
        assert!(!out.status.success(), "a wrong token worked");
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(log.contains("< -ERR [AUTH]"), "{log}");
    })
    .await;
    assert_eq!(server.stored(USER), sorted(uids_of(&messages)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mpop_auth_oauthbearer_and_xoauth2_with_a_long_initial_response() {
    let messages = awkward::small();
    use pop3_proto::server::SaslMechanism;
    let both = vec![SaslMechanism::OAuthBearer, SaslMechanism::XOAuth2];
    let server = oauth_server(&messages, both).await;
    let (addr, tls_addr, ca) = (server.plain_addr(), server.tls_addr(), server.ca());
    for auth in ["oauthbearer", "xoauth2"] {
        // mpop takes the token as its password.
        let label = format!("mpop auth {auth} over STLS");
        let out = mpop_auth_run(
            &label,
            addr,
            mpop::Security::Stls(ca.clone()),
            auth,
            &long_token(),
            &messages,
        )
        .await;
        expect_success(&label, &out);
        let dialogue = mpop_dialogue(&out.stdout);
        let line = dialogue
            .iter()
            .find(|l| l.starts_with(&format!("--> AUTH {}", auth.to_ascii_uppercase())))
            .unwrap_or_else(|| panic!("{label}: {dialogue:#?}"));
        if auth == "oauthbearer" {
            // OAUTHBEARER goes as an initial response, past 255 octets;
            // mpop sends XOAUTH2 in two steps.
            assert!(line.len() > 255, "{label}: {line}");
        }
        let label = format!("mpop auth {auth} over POP3S");
        let out = mpop_auth_run(
            &label,
            tls_addr,
            mpop::Security::Implicit(ca.clone()),
            auth,
            &long_token(),
            &messages,
        )
        .await;
        expect_success(&label, &out);
    }
    // A wrong token fails with [AUTH].
    let out = mpop_auth_run(
        "mpop auth oauthbearer, wrong token",
        tls_addr,
        mpop::Security::Implicit(ca),
        "oauthbearer",
        "expired",
        &messages,
    )
    .await;
    assert!(!out.status.success());
    let dialogue = mpop_dialogue(&out.stdout);
    assert!(
        dialogue.iter().any(|l| l.starts_with("<-- -ERR [AUTH]")),
        "{dialogue:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poplib_curl_and_mpop_at_once_on_three_maildrops() {
    let messages = awkward::small();
    let server = TestServerBuilder::new()
        .user("alice", "a-secret", &messages)
        .user("bob", "b-secret", &messages)
        .user("carol", "c-secret", &messages)
        .start()
        .await;
    let (addr, tls_addr, ca) = (server.plain_addr(), server.tls_addr(), server.ca());
    let work = tempfile::tempdir().unwrap();

    let poplib_ca = ca.clone();
    let by_poplib = blocking(move || {
        poplib::fetch(
            addr,
            "alice",
            "a-secret",
            &FetchOptions {
                connect: Connect::stls(&poplib_ca),
                ..FetchOptions::default()
            },
        )
    });
    let curl_ca = ca.clone();
    let count = messages.len() as u32;
    let by_curl = blocking(move || {
        let curl = Curl::pop3s(tls_addr, &curl_ca, "bob", "b-secret");
        (1..=count).map(|n| curl.retr(n)).collect::<Vec<_>>()
    });
    let account = mpop::Mpop::new(
        work.path(),
        addr,
        mpop::Security::Stls(ca),
        "carol",
        "c-secret",
    )
    .keep(false);
    let by_mpop = blocking(move || (account.run(), account.delivered()));
    let (fetched, curled, (mpop_out, delivered)) = tokio::join!(by_poplib, by_curl, by_mpop);

    check_fetch("poplib, alice", &fetched, &messages, 0);
    assert_eq!(curled.len(), messages.len());
    for ((name, stored), out) in messages.iter().zip(&curled) {
        expect_success("curl, bob", out);
        assert_bytes_eq(
            &format!("curl, bob: {name}"),
            &out.stdout,
            &curl_form(stored),
        );
    }
    expect_success("mpop, carol", &mpop_out);
    assert_eq!(delivered.len(), messages.len());
    for ((name, stored), got) in messages.iter().zip(&delivered) {
        assert_bytes_eq(&format!("mpop, carol: {name}"), got, &mpop_expected(stored));
    }
    let all = sorted(uids_of(&messages));
    assert_eq!(server.stored("alice"), all);
    assert_eq!(server.stored("bob"), all);
    assert!(server.stored("carol").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mpop_without_tls_logs_in_with_cram_md5_and_is_refused_user_pass() {
    let messages = awkward::small();
    let server = TestServer::start(USER, PASSWORD, &messages).await;
    let addr = server.plain_addr();
    let work = tempfile::tempdir().unwrap();
    let refused = mpop::Mpop::new(
        &work.path().join("user"),
        addr,
        mpop::Security::Plain,
        USER,
        PASSWORD,
    )
    .keep(false);
    let cram = mpop::Mpop::new(
        &work.path().join("cram"),
        addr,
        mpop::Security::Plain,
        USER,
        PASSWORD,
    )
    .auth("cram-md5");
    let (refused_out, refused_got, cram_out, cram_got) = blocking(move || {
        let refused_out = refused.run();
        let cram_out = cram.run();
        (refused_out, refused.delivered(), cram_out, cram.delivered())
    })
    .await;
    assert!(
        !refused_out.status.success(),
        "USER/PASS without TLS worked"
    );
    let why = String::from_utf8_lossy(&refused_out.stderr);
    assert!(
        why.contains("-ERR [AUTH]"),
        "refused by mpop, not the server: {why}"
    );
    assert!(refused_got.is_empty());
    expect_success("mpop with CRAM-MD5", &cram_out);
    assert_eq!(cram_got.len(), messages.len());
    for ((name, stored), got) in messages.iter().zip(&cram_got) {
        assert_bytes_eq(&format!("mpop: {name}"), got, &mpop_expected(stored));
    }
    assert_eq!(server.stored(USER), sorted(uids_of(&messages)));
}

// ----------------------------------------------------------- mail safety

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_after_dele_deletes_nothing() {
    let messages = awkward::small();
    let server = plaintext_server(&messages).start().await;
    let addr = server.plain_addr();
    let all = sorted(uids_of(&messages));

    // Raw socket: DELE everything, then close without QUIT.
    let mut raw = login_when_free(addr).await;
    for n in 1..=messages.len() {
        let answer = raw.cmd(&format!("DELE {n}")).await;
        assert!(answer.starts_with("+OK"), "DELE {n}: {answer:?}");
    }
    drop(raw);
    let mut check = login_when_free(addr).await;
    assert_eq!(server.stored(USER), all);
    let stat = check.cmd("STAT").await;
    assert_eq!(
        stat,
        format!("+OK {} {}", messages.len(), total_size(&messages))
    );
    // Half-close after DELE: end of input is not QUIT either.
    check.cmd("DELE 1").await;
    check.stream.get_mut().shutdown().await.unwrap();
    assert_eq!(check.line().await, None, "the server closes");
    drop(check);

    // A reset (as when a client is killed) after DELE.
    let mut reset = login_when_free(addr).await;
    assert!(reset.cmd("DELE 2").await.starts_with("+OK"));
    reset.stream.get_ref().set_zero_linger().unwrap();
    drop(reset);
    drop(login_when_free(addr).await);
    assert_eq!(server.stored(USER), all);

    // poplib: DELE, then close without QUIT.
    let session = blocking(move || {
        poplib::session(
            addr,
            &Connect::Plain,
            &["user alice", "pass secret", "dele 1", "dele 2", "stat"],
        )
    })
    .await;
    assert!(session.steps.iter().all(|s| s.ok), "{:?}", session.steps);
    let mut after = login_when_free(addr).await;
    assert_eq!(server.stored(USER), all);
    let (_, uidl) = after.multi("UIDL").await;
    assert_eq!(uidl.len(), messages.len());
    assert!(after.cmd("QUIT").await.starts_with("+OK"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_reset_in_the_middle_of_a_big_retr_deletes_nothing() {
    let messages = awkward::maildrop();
    let big = number_of(&messages, "big-attachment");
    let server = plaintext_server(&messages).start().await;
    let addr = server.plain_addr();
    let mut raw = login_when_free(addr).await;
    assert!(raw.cmd("DELE 1").await.starts_with("+OK"));
    let status = raw.cmd(&format!("RETR {big}")).await;
    assert!(status.starts_with("+OK"), "{status:?}");
    for _ in 0..100 {
        raw.line().await.expect("a line of the message");
    }
    raw.stream.get_ref().set_zero_linger().unwrap();
    drop(raw);
    let mut check = login_when_free(addr).await;
    assert_eq!(server.stored(USER), sorted(uids_of(&messages)));
    assert!(check.cmd("QUIT").await.starts_with("+OK"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_dropped_after_the_write_stall_timeout_without_update() {
    let messages = awkward::maildrop();
    let big = number_of(&messages, "big-attachment");
    let stall = Duration::from_secs(1);
    let server = plaintext_server(&messages)
        .with_options(|o| o.write_stall_timeout = stall)
        .start()
        .await;
    let addr = server.plain_addr();
    let mut raw = small_window_login(addr).await;
    assert!(raw.cmd("DELE 1").await.starts_with("+OK"));
    let started = Instant::now();
    raw.send(&format!("RETR {big}\r\nQUIT")).await;
    // Read nothing more: the server stalls on the 20 MiB body, gives up,
    // and releases the maildrop without UPDATE.
    let mut check = login_when_free(addr).await;
    assert!(
        started.elapsed() >= stall / 2,
        "released after {:?}",
        started.elapsed()
    );
    assert_eq!(server.stored(USER), sorted(uids_of(&messages)));
    assert!(check.cmd("QUIT").await.starts_with("+OK"));
    drop(raw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_is_logged_out_without_update() {
    let messages = awkward::small();
    let idle = Duration::from_millis(500);
    let server = plaintext_server(&messages)
        .with_config(|c| c.allow_plaintext_auth(true).autologout_unchecked(idle))
        .start()
        .await;
    let addr = server.plain_addr();
    let mut raw = login_when_free(addr).await;
    assert!(raw.cmd("DELE 1").await.starts_with("+OK"));
    let started = Instant::now();
    let last = raw.line().await.expect("the autologout answer");
    assert!(last.starts_with("-ERR"), "{last:?}");
    assert_eq!(raw.line().await, None, "closed after autologout");
    assert!(
        started.elapsed() >= idle / 2,
        "after {:?}",
        started.elapsed()
    );
    drop(login_when_free(addr).await);
    assert_eq!(server.stored(USER), sorted(uids_of(&messages)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_on_the_pop3s_port_is_dropped_after_the_handshake_timeout() {
    let timeout = Duration::from_millis(500);
    let server = TestServerBuilder::new()
        .user(USER, PASSWORD, &awkward::small())
        .with_options(|o| {
            o.tls_handshake_timeout = timeout;
            o.max_connections = 1;
        })
        .start()
        .await;
    let started = Instant::now();
    let mut silent = Raw::connect(server.tls_addr()).await;
    assert_eq!(silent.line().await, None, "the server closes");
    assert!(
        started.elapsed() >= timeout / 2,
        "after {:?}",
        started.elapsed()
    );
    // Its connection slot is free again.
    until_no_session(&server).await;
    let (addr, ca) = (server.tls_addr(), server.ca());
    let session = blocking(move || poplib::session(addr, &Connect::implicit(&ca), &["quit"])).await;
    assert!(session.steps[0].ok, "{session:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_that_stops_reading_is_dropped_after_the_write_stall_timeout() {
    let messages = awkward::maildrop();
    let big = number_of(&messages, "big-attachment");
    let stall = Duration::from_secs(1);
    let server = plaintext_server(&messages)
        .with_options(|o| o.write_stall_timeout = stall)
        .start()
        .await;
    let tcp = small_window_connect(server.tls_addr()).await;
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tls_connector(&server.ca())
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    let mut tls = BufReader::new(tls);
    let mut line = String::new();
    tls.read_line(&mut line).await.unwrap();
    assert!(line.starts_with("+OK"), "{line:?}");
    tls.get_mut()
        .write_all(format!("USER {USER}\r\nPASS {PASSWORD}\r\nDELE 1\r\n").as_bytes())
        .await
        .unwrap();
    for _ in 0..3 {
        line.clear();
        tls.read_line(&mut line).await.unwrap();
        assert!(line.starts_with("+OK"), "{line:?}");
    }
    let started = Instant::now();
    tls.get_mut()
        .write_all(format!("RETR {big}\r\nQUIT\r\n").as_bytes())
        .await
        .unwrap();
    // Read nothing more. The session must end: maildrop released, no
    // UPDATE, and its task gone (the server becomes idle).
    let mut check = login_when_free(server.plain_addr()).await;
    drop(check.cmd("QUIT").await);
    assert!(
        started.elapsed() >= stall / 2,
        "after {:?}",
        started.elapsed()
    );
    assert_eq!(server.stored(USER), sorted(uids_of(&messages)));
    server.shutdown();
    let idle = tokio::time::timeout(Duration::from_secs(8), server.server().wait_idle()).await;
    assert!(
        idle.is_ok(),
        "a session still runs {:?} after its write stalled",
        started.elapsed()
    );
    drop(tls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quit_followed_by_a_half_close_still_commits() {
    let messages = awkward::small();
    let server = plaintext_server(&messages).start().await;
    let addr = server.plain_addr();
    let mut raw = login_when_free(addr).await;
    raw.send("DELE 1\r\nDELE 2\r\nQUIT").await;
    raw.stream.get_mut().shutdown().await.unwrap();
    for _ in 0..3 {
        let answer = raw.line().await.expect("an answer");
        assert!(answer.starts_with("+OK"), "{answer:?}");
    }
    assert_eq!(raw.line().await, None);
    let mut kept = uids_of(&messages);
    kept.drain(..2);
    assert_eq!(server.stored(USER), sorted(kept));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_poplib_client_deletes_nothing() {
    use std::io::BufRead;
    let messages = awkward::small();
    let server = plaintext_server(&messages).start().await;
    let addr = server.plain_addr();
    blocking(move || {
        support::require_program("python3", "python3");
        let mut cmd = std::process::Command::new("python3");
        cmd.arg(support::peers_dir().join("poplib_session.py"))
            .args(["--host", "127.0.0.1", "--port", &addr.port().to_string()])
            .args(["--timeout", "30", "--"])
            // The last command waits for a multi-line answer that never
            // comes, so the client is still connected when it is killed.
            .args([
                "user alice",
                "pass secret",
                "dele 1",
                "dele 2",
                "rawlong NOOP",
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped());
        let mut client = support::spawn_grouped(cmd).expect("run poplib_session.py");
        let stdout = client.child().stdout.take().unwrap();
        let mut records = std::io::BufReader::new(stdout);
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = records.read_until(b'\n', &mut line).unwrap();
            assert!(n > 0, "the client ended early");
            if line.starts_with(b"ok 4 ") {
                break;
            }
            assert!(
                !line.starts_with(b"err "),
                "{}",
                String::from_utf8_lossy(&line)
            );
        }
        client.kill();
    })
    .await;
    let mut check = login_when_free(addr).await;
    assert!(check.cmd("QUIT").await.starts_with("+OK"));
    assert_eq!(server.stored(USER), sorted(uids_of(&messages)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletions_land_only_at_quit() {
    let messages = awkward::small();
    let server = plaintext_server(&messages).start().await;
    let addr = server.plain_addr();
    let uids = uids_of(&messages);

    // QUIT in AUTHORIZATION enters no UPDATE.
    let mut early = Raw::greeted(addr).await;
    assert!(early.cmd("QUIT").await.starts_with("+OK"));

    let mut raw = login_when_free(addr).await;
    for n in [1, 2] {
        assert!(raw.cmd(&format!("DELE {n}")).await.starts_with("+OK"));
    }
    assert!(raw.cmd("NOOP").await.starts_with("+OK"));
    assert_eq!(server.stored(USER), sorted(uids.clone()), "before QUIT");
    assert!(raw.cmd("QUIT").await.starts_with("+OK"), "QUIT");
    assert_eq!(raw.line().await, None, "closed after QUIT");
    let mut kept = uids.clone();
    kept.drain(..2);
    assert_eq!(server.stored(USER), sorted(kept));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_session_on_the_same_maildrop_gets_in_use() {
    let messages = awkward::small();
    let server = plaintext_server(&messages).start().await;
    let addr = server.plain_addr();

    let mut first = login_when_free(addr).await;
    let mut second = Raw::greeted(addr).await;
    let answer = second.login(USER, PASSWORD).await;
    assert!(answer.starts_with("-ERR [IN-USE]"), "{answer:?}");
    // poplib is refused the same way.
    let session =
        blocking(move || poplib::session(addr, &Connect::Plain, &["user alice", "pass secret"]))
            .await;
    assert!(!session.steps[1].ok);
    assert!(
        session.steps[1].text().starts_with("-ERR [IN-USE]"),
        "{:?}",
        session.steps[1]
    );
    // Once the first session ends, the maildrop is free again.
    assert!(first.cmd("QUIT").await.starts_with("+OK"));
    let mut third = login_when_free(addr).await;
    assert!(third.cmd("QUIT").await.starts_with("+OK"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_gets_auth_after_the_failure_delay_without_busy_words() {
    let messages = awkward::small();
    let server = plaintext_server(&messages)
        .with_config(|c| {
            c.allow_plaintext_auth(true)
                .auth_failure_delay(Duration::from_secs(1))
        })
        .start()
        .await;
    let addr = server.plain_addr();

    let mut raw = Raw::greeted(addr).await;
    assert!(raw.cmd("USER alice").await.starts_with("+OK"));
    let started = Instant::now();
    let answer = raw.cmd("PASS wrong").await;
    let waited = started.elapsed();
    assert!(answer.starts_with("-ERR [AUTH]"), "{answer:?}");
    let lower = answer.to_ascii_lowercase();
    for word in ["lock", "wait", "in use", "in-use", "delay", "busy"] {
        assert!(!lower.contains(word), "{word:?} in {answer:?}");
    }
    assert!(
        waited >= Duration::from_millis(500),
        "answered after {waited:?}"
    );
    // An unknown user is refused the same way.
    assert!(raw.cmd("USER nobody").await.starts_with("+OK"));
    let started = Instant::now();
    let unknown = raw.cmd("PASS wrong").await;
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert_eq!(unknown, answer);
    // The right password still works afterwards.
    let ok = raw.login(USER, PASSWORD).await;
    assert!(ok.starts_with("+OK"), "{ok:?}");
    assert!(raw.cmd("QUIT").await.starts_with("+OK"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_message_is_sent_as_no_lines_and_sized_zero() {
    let messages = awkward::small();
    let empty = 1 + messages
        .iter()
        .position(|(_, m)| m.is_empty())
        .expect("an empty message");
    let server = plaintext_server(&messages).start().await;
    let mut raw = login_when_free(server.plain_addr()).await;
    assert_eq!(
        raw.cmd(&format!("LIST {empty}")).await,
        format!("+OK {empty} 0")
    );
    for command in [format!("RETR {empty}"), format!("TOP {empty} 5")] {
        let (status, lines) = raw.multi(&command).await;
        assert!(status.starts_with("+OK"), "{command}: {status:?}");
        assert!(lines.is_empty(), "{command}: {lines:?}");
    }
    assert!(raw.cmd("QUIT").await.starts_with("+OK"));
}

/// A TLS client configuration trusting only `ca`.
fn tls_connector(ca: &std::path::Path) -> tokio_rustls::TlsConnector {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("read the CA") {
        roots
            .add(cert.expect("CA certificate"))
            .expect("add the CA");
    }
    let config = rustls::ClientConfig::builder_with_provider(pop3_tokio::tls::crypto_provider())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_sent_in_plaintext_behind_stls_are_never_executed() {
    let messages = awkward::small();
    let server = plaintext_server(&messages).start().await;
    let addr = server.plain_addr();
    let mut raw = Raw::greeted(addr).await;
    // One write: STLS and, behind it, a whole session an attacker injected.
    raw.send("STLS\r\nUSER alice\r\nPASS secret\r\nDELE 1\r\nQUIT")
        .await;
    assert!(raw.line().await.expect("STLS answer").starts_with("+OK"));
    let Raw { stream } = raw;
    assert!(
        stream.buffer().is_empty(),
        "plaintext after the STLS answer"
    );
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    // The server either discards the injected lines and completes the
    // handshake, or reads them as a broken handshake and closes.
    if let Ok(tls) = tls_connector(&server.ca())
        .connect(name, stream.into_inner())
        .await
    {
        let mut tls = BufReader::new(tls);
        tls.get_mut().write_all(b"STAT\r\n").await.unwrap();
        let mut line = String::new();
        tls.read_line(&mut line).await.unwrap();
        assert!(
            line.starts_with("-ERR"),
            "logged in by injected lines: {line:?}"
        );
        tls.get_mut().write_all(b"QUIT\r\n").await.unwrap();
        line.clear();
        tls.read_line(&mut line).await.unwrap();
        assert!(line.starts_with("+OK"), "{line:?}");
    }
    let mut check = login_when_free(addr).await;
    assert!(check.cmd("QUIT").await.starts_with("+OK"));
    assert_eq!(server.stored(USER), sorted(uids_of(&messages)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_removed_by_another_program_gets_err_and_the_session_goes_on() {
    let messages = awkward::small();
    let server = plaintext_server(&messages).start().await;
    let uids = uids_of(&messages);
    let mut raw = login_when_free(server.plain_addr()).await;
    // Another program removes message 2 while the session is open.
    let cur = server.maildir(USER).join("cur");
    for entry in std::fs::read_dir(&cur).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(&uids[1])
        {
            std::fs::remove_file(path).unwrap();
        }
    }
    let gone = raw.cmd("RETR 2").await;
    assert!(gone.starts_with("-ERR"), "{gone:?}");
    let (status, lines) = raw.multi("RETR 3").await;
    assert!(status.starts_with("+OK"), "{status:?}");
    // Undo the dot-stuffing: every line starting with a dot got one more.
    let got: Vec<u8> = lines
        .iter()
        .flat_map(|l| [l.strip_prefix('.').unwrap_or(l).as_bytes(), b"\r\n"].concat())
        .collect();
    assert_bytes_eq("RETR 3", &got, &wire(&messages[2].1));
    assert!(raw.cmd("DELE 2").await.starts_with("+OK"));
    assert!(raw.cmd("DELE 3").await.starts_with("+OK"));
    assert!(raw.cmd("QUIT").await.starts_with("+OK"));
    let mut kept = uids.clone();
    kept.drain(1..3);
    assert_eq!(server.stored(USER), sorted(kept));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_megabyte_line_is_refused_and_the_session_goes_on() {
    let messages = awkward::small();
    let server = plaintext_server(&messages).start().await;
    let addr = server.plain_addr();
    let mut raw = login_when_free(addr).await;
    let long = "A".repeat(1 << 20);
    let answer = raw.cmd(&long).await;
    assert!(answer.starts_with("-ERR"), "{answer:?}");
    // The rest of the line was discarded: the session goes on.
    assert!(raw.cmd("NOOP").await.starts_with("+OK"));
    assert!(raw.cmd("QUIT").await.starts_with("+OK"));
    assert_eq!(raw.line().await, None);
    assert_eq!(server.stored(USER), sorted(uids_of(&messages)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_pipelined_commands_are_answered_in_order() {
    use tokio::io::AsyncReadExt;
    let messages = awkward::small();
    let server = plaintext_server(&messages).start().await;
    let raw = login_when_free(server.plain_addr()).await;
    let stream = raw.stream.into_inner();
    let (reader, mut writer) = stream.into_split();
    const ROUNDS: usize = 2000;
    // One big write while the answers are read at the same time.
    let commands: String = (0..ROUNDS)
        .map(|i| format!("NOOP\r\nUIDL {}\r\nLIST {}\r\n", i % 13 + 1, i % 13 + 1))
        .chain(std::iter::once("QUIT\r\n".to_string()))
        .collect();
    let send = tokio::spawn(async move {
        writer.write_all(commands.as_bytes()).await.unwrap();
        writer
    });
    let mut answers = String::new();
    tokio::time::timeout(
        Duration::from_secs(20),
        BufReader::new(reader).read_to_string(&mut answers),
    )
    .await
    .expect("all answers in time")
    .unwrap();
    drop(send.await.unwrap());
    let uids = uids_of(&messages);
    let sizes: Vec<usize> = wires(&messages).iter().map(Vec::len).collect();
    let mut lines = answers.split("\r\n");
    for i in 0..ROUNDS {
        let n = i % 13 + 1;
        assert!(lines.next().unwrap().starts_with("+OK"), "NOOP {i}");
        assert_eq!(lines.next().unwrap(), format!("+OK {n} {}", uids[n - 1]));
        assert_eq!(lines.next().unwrap(), format!("+OK {n} {}", sizes[n - 1]));
    }
    assert!(lines.next().unwrap().starts_with("+OK"), "QUIT");
    assert_eq!(lines.next(), Some(""));
    assert_eq!(lines.next(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_connect_and_leave_at_once_do_not_disturb_the_server() {
    let messages = awkward::small();
    let server = plaintext_server(&messages)
        .with_options(|o| o.max_connections = 4)
        .start()
        .await;
    for i in 0..200 {
        let addr = if i % 2 == 0 {
            server.plain_addr()
        } else {
            server.tls_addr()
        };
        let stream = TcpStream::connect(addr).await.expect("connect");
        if i % 3 == 0 {
            stream.set_zero_linger().unwrap();
        }
        drop(stream);
    }
    until_no_session(&server).await;
    let mut raw = login_when_free(server.plain_addr()).await;
    assert!(raw.cmd("QUIT").await.starts_with("+OK"));
    server.shutdown();
    tokio::time::timeout(Duration::from_secs(10), server.server().wait_idle())
        .await
        .expect("sessions still running");
}

// ------------------------------------------------- shutdown and the cap

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_accepting_and_ends_open_sessions_after_the_grace_without_update() {
    let messages = awkward::small();
    let grace = Duration::from_secs(2);
    let mut server = plaintext_server(&messages)
        .with_options(|o| o.shutdown_grace = grace)
        .start()
        .await;
    let addr = server.plain_addr();
    let tls_addr = server.tls_addr();

    let mut raw = login_when_free(addr).await;
    assert!(raw.cmd("DELE 1").await.starts_with("+OK"));
    let started = Instant::now();
    server.shutdown();
    server.listeners_stopped().await;
    for a in [addr, tls_addr] {
        match TcpStream::connect(a).await {
            Err(_) => {}
            Ok(stream) => {
                // Accepted by the kernel before the listener closed: the
                // connection must end without a greeting.
                let mut late = Raw::new(stream);
                assert_eq!(late.line().await, None, "a greeting after shutdown");
            }
        }
    }
    // Within the grace the open session still works ...
    assert!(raw.cmd("NOOP").await.starts_with("+OK"));
    // ... and after it, it is closed without UPDATE.
    assert_eq!(raw.line().await, None, "the session was not closed");
    assert!(
        started.elapsed() >= grace / 2,
        "closed after {:?}",
        started.elapsed()
    );
    tokio::time::timeout(Duration::from_secs(10), server.server().wait_idle())
        .await
        .expect("sessions still running");
    assert_eq!(server.stored(USER), sorted(uids_of(&messages)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_a_session_busy_sending_to_a_slow_reader_after_the_grace() {
    use tokio::io::AsyncReadExt;
    let messages = awkward::maildrop();
    let big = number_of(&messages, "big-attachment");
    let grace = Duration::from_secs(1);
    let server = plaintext_server(&messages)
        .with_options(|o| o.shutdown_grace = grace)
        .start()
        .await;
    let addr = server.plain_addr();
    let mut raw = small_window_login(addr).await;
    assert!(raw.cmd("DELE 1").await.starts_with("+OK"));
    assert!(raw.cmd(&format!("RETR {big}")).await.starts_with("+OK"));
    let started = Instant::now();
    server.shutdown();
    // Read the body slowly (about 200 KB/s: the whole would take 100 s).
    // What the server wrote before it stopped can fill the socket buffers
    // for a long time, so the end of the session is seen from the server.
    let reader = tokio::spawn(async move {
        let mut buf = vec![0; 4096];
        loop {
            match raw.stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    });
    let idle = tokio::time::timeout(grace + Duration::from_secs(8), server.server().wait_idle());
    assert!(
        idle.await.is_ok(),
        "still sending {:?} after shutdown with a grace of {grace:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() >= grace / 2,
        "after {:?}",
        started.elapsed()
    );
    reader.abort();
    assert_eq!(server.stored(USER), sorted(uids_of(&messages)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_connections_allowed_a_third_client_is_refused_at_once() {
    let messages = awkward::small();
    let server = plaintext_server(&messages)
        .with_options(|o| o.max_connections = 2)
        .start()
        .await;
    let addr = server.plain_addr();

    let mut first = Raw::greeted(addr).await;
    let _second = Raw::greeted(server.plain_addr()).await;
    let mut third = Raw::connect(addr).await;
    let refusal = third.line().await.expect("an answer, not silence");
    assert!(refusal.starts_with("-ERR [SYS/TEMP] "), "{refusal:?}");
    assert_eq!(third.line().await, None, "closed after the refusal");
    assert!(first.cmd("QUIT").await.starts_with("+OK"));
    assert_eq!(first.line().await, None);
    // The slot is given back with the first session.
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.server().open_connections() > 1 {
        assert!(Instant::now() < deadline, "the first session stayed open");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut fourth = Raw::greeted(addr).await;
    assert!(fourth.cmd("QUIT").await.starts_with("+OK"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_over_its_cap_is_refused_while_another_is_served() {
    let messages = awkward::small();
    let server = plaintext_server(&messages)
        .with_options(|o| o.max_connections_per_address = 3)
        .start()
        .await;
    let port = server.plain_addr().port();
    // Three idle connections from 127.0.0.2 fill its share.
    let from = |last: u8| async move {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket
            .bind(SocketAddr::from(([127, 0, 0, last], 0)))
            .unwrap();
        Raw::new(
            socket
                .connect(SocketAddr::from(([127, 0, 0, 1], port)))
                .await
                .unwrap(),
        )
    };
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut raw = from(2).await;
        assert!(raw.line().await.unwrap().starts_with("+OK"));
        held.push(raw);
    }
    let mut fourth = from(2).await;
    let refusal = fourth.line().await.expect("an answer, not silence");
    assert!(
        refusal.starts_with("-ERR [SYS/TEMP] Too many connections from your address"),
        "{refusal:?}"
    );
    assert_eq!(fourth.line().await, None);
    // Another address is served as usual.
    let mut other = from(3).await;
    assert!(other.line().await.unwrap().starts_with("+OK"));
    assert!(other.cmd("QUIT").await.starts_with("+OK"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_connection_allowed_each_listener_still_serves_in_turn() {
    let messages = awkward::small();
    let server = plaintext_server(&messages)
        .with_options(|o| o.max_connections = 1)
        .start()
        .await;
    let (addr, tls_addr, ca) = (server.plain_addr(), server.tls_addr(), server.ca());
    for round in 0..2 {
        for _ in 0..2 {
            until_no_session(&server).await;
            let mut raw = Raw::greeted(addr).await;
            assert!(raw.cmd("QUIT").await.starts_with("+OK"), "round {round}");
            assert_eq!(raw.line().await, None);
        }
        until_no_session(&server).await;
        let ca = ca.clone();
        let pop3s = blocking(move || {
            poplib::session_with_timeout(
                tls_addr,
                &Connect::implicit(&ca),
                &["quit"],
                Duration::from_secs(10),
            )
        })
        .await;
        assert!(pop3s.greeting.starts_with(b"+OK"), "round {round}");
        assert!(pop3s.steps[0].ok, "round {round}: {pop3s:?}");
    }
}
