//! The tokio client against scripted misbehaving servers: timeouts (connect,
//! reply, idle), a server that closes mid-body, STLS command injection,
//! unsolicited lines, unreachable addresses; and the protocol log, which must
//! never show a secret.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pop3_proto::client::ProtocolError;
use pop3_tokio::client::{ConnectOptions, Error, Pop3Client, Security, TimeoutKind, msg};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One step of a scripted server: wait for a command line starting with
/// `expect` (case-insensitive; empty: no wait), then send `reply`.
type Step = (&'static str, &'static [u8]);

/// A scripted server: its port, and its task (whose checks count only once
/// joined, with [`Script::done`]).
struct Script {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Script {
    /// Waits for the server to finish (the client must be gone) and fails
    /// the test if one of its checks failed.
    async fn done(self) {
        self.task.await.expect("the scripted server's checks hold");
    }
}

/// Serves one connection with `script`, then holds it open until the client
/// closes (or `hold` ends).
async fn scripted(script: Vec<Step>, hold: Duration) -> Script {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let (r, mut w) = stream.into_split();
        let mut r = BufReader::new(r);
        for (expect, reply) in script {
            if !expect.is_empty() {
                let mut line = String::new();
                if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                assert!(
                    line.to_ascii_uppercase().starts_with(expect),
                    "expected {expect}, got {line:?}"
                );
            }
            if w.write_all(reply).await.is_err() {
                return;
            }
        }
        // Keep the connection open, reading (and ignoring) whatever comes.
        let _ = tokio::time::timeout(hold, async {
            let mut rest = String::new();
            while r.read_line(&mut rest).await.unwrap_or(0) > 0 {}
        })
        .await;
        drop(w);
    });
    Script { port, task }
}

fn quick(security: Security) -> ConnectOptions {
    let mut o = ConnectOptions::new(security);
    o.session.insecure_cleartext_login = true;
    o.connect_timeout = Duration::from_millis(500);
    o.session.reply_timeout = Some(Duration::from_millis(300));
    o
}

#[tokio::test]
async fn no_greeting_is_a_connect_timeout() {
    let server = scripted(vec![], Duration::from_secs(5)).await;
    let port = server.port;
    let err = Pop3Client::connect("127.0.0.1", port, quick(Security::Plain))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Timeout(TimeoutKind::Connect)),
        "{err:?}"
    );
    assert!(err.is_transient());
    server.done().await;
}

#[tokio::test]
async fn a_silent_reply_is_a_reply_timeout() {
    let server = scripted(
        vec![("", b"+OK hi\r\n"), ("CAPA", b"-ERR no\r\n")],
        Duration::from_secs(5),
    )
    .await;
    let port = server.port;
    let mut client = Pop3Client::connect("127.0.0.1", port, quick(Security::Plain))
        .await
        .unwrap();
    // No CAPA: basic function still works (RFC 2449 §5).
    assert!(client.capabilities().is_none());
    let err = client.login("u", "p").await.unwrap_err();
    assert!(matches!(err, Error::Timeout(TimeoutKind::Reply)), "{err:?}");
    assert!(matches!(client.noop().await, Err(Error::Closed)));
    drop(client);
    server.done().await;
}

#[tokio::test]
async fn idle_transport_times_out_independently() {
    let server = scripted(vec![("", b"+OK hi\r\n")], Duration::from_secs(5)).await;
    let port = server.port;
    let mut o = quick(Security::Plain);
    o.read_capabilities = false;
    o.session.reply_timeout = None;
    o.idle_timeout = Some(Duration::from_millis(200));
    let mut client = Pop3Client::connect("127.0.0.1", port, o).await.unwrap();
    // Time spent by the application between calls is not idleness.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let err = client.noop().await.unwrap_err();
    // NOOP is not valid before login: refused locally, nothing waited for.
    assert!(matches!(err, Error::Command(_)), "{err:?}");
    let err = client.capa().await.unwrap_err();
    assert!(matches!(err, Error::Timeout(TimeoutKind::Idle)), "{err:?}");
    assert!(started.elapsed() >= Duration::from_millis(150));
    drop(client);
    server.done().await;
}

#[tokio::test]
async fn a_body_cut_short_is_an_error_not_a_message() {
    let server = scripted(
        vec![
            ("", b"+OK hi\r\n"),
            ("USER", b"+OK\r\n"),
            ("PASS", b"+OK\r\n"),
            ("RETR", b"+OK\r\nSubject: x\r\n\r\nhalf a mess"),
        ],
        Duration::from_millis(0),
    )
    .await;
    let port = server.port;
    let mut o = quick(Security::Plain);
    o.read_capabilities = false;
    let mut client = Pop3Client::connect("127.0.0.1", port, o).await.unwrap();
    client.login("u", "p").await.unwrap();
    let mut body = client.retr(msg(1).unwrap()).await.unwrap();
    let mut got = Vec::new();
    let err = loop {
        match body.next_chunk().await {
            Ok(Some(c)) => got.extend_from_slice(&c),
            Ok(None) => panic!("a truncated body must not end cleanly"),
            Err(e) => break e,
        }
    };
    assert!(!body.is_complete());
    assert!(
        matches!(err, Error::Protocol(ProtocolError::UnexpectedEof)),
        "{err:?}"
    );
    assert!(err.is_transient());
    drop(body);
    drop(client);
    server.done().await;
}

#[tokio::test]
async fn plaintext_after_stls_ok_is_refused_as_injection() {
    let server = scripted(
        vec![
            ("", b"+OK hi\r\n"),
            ("STLS", b"+OK Begin TLS\r\n+OK injected\r\n"),
        ],
        Duration::from_secs(5),
    )
    .await;
    let port = server.port;
    let mut o = quick(Security::Plain);
    o.read_capabilities = false;
    let mut client = Pop3Client::connect("127.0.0.1", port, o).await.unwrap();
    let err = client.stls().await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Protocol(ProtocolError::StlsInjection { .. }) | Error::Tls(_) | Error::Closed
        ),
        "{err:?}"
    );
    assert!(!client.is_tls());
    assert!(client.login("u", "p").await.is_err());
    drop(client);
    server.done().await;
}

#[tokio::test]
async fn unreachable_addresses_fail_within_the_deadline() {
    // A port nobody listens on: refused at once.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let err = Pop3Client::connect("127.0.0.1", port, quick(Security::Plain))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Io(_)), "{err:?}");
    assert!(err.is_transient());
    let err = Pop3Client::connect("not a host name", 110, quick(Security::Plain))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidHost(_) | Error::Io(_) | Error::Timeout(TimeoutKind::Connect)
        ),
        "{err:?}"
    );
}

/// Collects the messages of `tracing` events.
struct Capture(Arc<Mutex<Vec<String>>>);

struct Message<'a>(&'a mut String);

impl tracing::field::Visit for Message<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        let _ = write!(self.0, "{}={value:?} ", field.name());
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut text = String::new();
        event.record(&mut Message(&mut text));
        self.0.lock().unwrap().push(text);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[tokio::test(flavor = "current_thread")]
async fn the_protocol_log_redacts_secrets() {
    let server = scripted(
        vec![
            ("", b"+OK hi <1.2@example.org>\r\n"),
            ("USER", b"+OK\r\n"),
            ("PASS", b"+OK\r\n"),
            ("QUIT", b"+OK bye\r\n"),
        ],
        Duration::from_millis(0),
    )
    .await;
    let port = server.port;
    let lines = Arc::new(Mutex::new(Vec::new()));
    let _guard = tracing::subscriber::set_default(Capture(lines.clone()));
    let mut o = quick(Security::Plain);
    o.read_capabilities = false;
    let mut client = Pop3Client::connect("127.0.0.1", port, o).await.unwrap();
    // USER/PASS as such (login would pick APOP for this greeting).
    client
        .run(pop3_proto::client::task::Login::new(
            "alice",
            "hunter2-secret",
        ))
        .await
        .unwrap();
    client.quit().await.unwrap();
    let log = lines.lock().unwrap().join("\n");
    assert!(log.contains("C: USER alice"), "{log}");
    assert!(log.contains("C: PASS <redacted>"), "{log}");
    assert!(log.contains("C: QUIT"), "{log}");
    assert!(!log.contains("hunter2"), "{log}");
    drop(client);
    server.done().await;
}

#[tokio::test]
async fn every_resolved_address_is_tried() {
    // "localhost" may resolve to ::1 and 127.0.0.1; only the latter listens.
    let server = scripted(
        vec![("", b"+OK hi\r\n"), ("CAPA", b"-ERR no\r\n")],
        Duration::from_secs(5),
    )
    .await;
    let port = server.port;
    let client = Pop3Client::connect("localhost", port, quick(Security::Plain))
        .await
        .expect("one of localhost's addresses answers");
    assert!(client.greeting().is_some());
    drop(client);
    server.done().await;
}

/// A server that offers CRAM-MD5 but cannot check it: `login` falls back
/// to the next way the server offers and logs in.
#[tokio::test]
async fn login_falls_back_when_an_offered_mechanism_fails() {
    let server = scripted(
        vec![
            ("", b"+OK hi\r\n"),
            ("CAPA", b"+OK\r\nUSER\r\nSASL CRAM-MD5 PLAIN\r\n.\r\n"),
            ("AUTH CRAM-MD5", b"+ PDEyMzQ1QGhvc3Q+\r\n"),
            // base64 of "alice ...".
            ("YWXPY2UG", b"-ERR [AUTH] Authentication failed.\r\n"),
            ("AUTH PLAIN", b"+OK Logged in.\r\n"),
            ("CAPA", b"+OK\r\nUSER\r\n.\r\n"),
            ("QUIT", b"+OK bye\r\n"),
        ],
        Duration::from_secs(5),
    )
    .await;
    let mut client = Pop3Client::connect("127.0.0.1", server.port, quick(Security::Plain))
        .await
        .unwrap();
    client.login("alice", "secret").await.unwrap();
    client.quit().await.unwrap();
    server.done().await;
}

/// A server that answers CAPA with -ERR (popa3d): fetch's automatic login
/// uses USER/PASS when clear text is allowed, with no `;AUTH=` and no
/// `--auth` (the `fetch` example's `--insecure-cleartext-login`).
#[tokio::test]
async fn fetch_logs_in_with_user_pass_on_a_server_without_capa_when_cleartext_is_allowed() {
    use pop3_tokio::fetch::{FetchSettings, PopUrl, authenticate, connect};
    let server = scripted(
        vec![
            ("", b"+OK hi\r\n"),
            ("CAPA", b"-ERR unknown command\r\n"),
            ("USER ALICE", b"+OK\r\n"),
            ("PASS SECRET", b"+OK 0 messages\r\n"),
            ("CAPA", b"-ERR unknown command\r\n"),
            ("QUIT", b"+OK bye\r\n"),
        ],
        Duration::from_secs(5),
    )
    .await;
    let url: PopUrl = format!("pop://alice@127.0.0.1:{}", server.port)
        .parse()
        .unwrap();
    let mut settings = FetchSettings::default();
    settings.insecure_cleartext_login = true;
    let mut client = connect(&url, &settings).await.unwrap();
    authenticate(&mut client, &url, &settings, "secret")
        .await
        .unwrap();
    client.quit().await.unwrap();
    server.done().await;
    // Without the allowance, the password is not sent.
    let server = scripted(
        vec![("", b"+OK hi\r\n"), ("CAPA", b"-ERR unknown command\r\n")],
        Duration::from_secs(5),
    )
    .await;
    let url: PopUrl = format!("pop://alice@127.0.0.1:{}", server.port)
        .parse()
        .unwrap();
    let settings = FetchSettings::default();
    let mut client = connect(&url, &settings).await.unwrap();
    let err = authenticate(&mut client, &url, &settings, "secret")
        .await
        .unwrap_err();
    assert!(
        matches!(err, pop3_tokio::fetch::FetchError::Auth(_)),
        "{err:?}"
    );
    drop(client);
    server.done().await;
}
