//! The blocking server's metrics, scraped over HTTP after a session:
//! sessions by outcome, logins by mechanism and result, octets sent, store
//! calls, refusals.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use pop3_blocking::metrics::{Metrics, serve};
use pop3_blocking::server::{Pop3Server, Security, ServerOptions};
use pop3_proto::server::ServerConfig;
use pop3_proto::store::MemoryStore;

#[test]
fn scrape_after_a_session_counts_logins_octets_store_calls_and_refusals() {
    let store = MemoryStore::new();
    store.add_user("alice", "secret");
    store.add_message("alice", MESSAGE);
    let metrics = Arc::new(Metrics::new());
    let server =
        Pop3Server::build(Arc::new(store), config(), None, options()).with_metrics(metrics.clone());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let pop3 = listener.local_addr().unwrap();
    let http = TcpListener::bind("127.0.0.1:0").unwrap();
    let http_addr = http.local_addr().unwrap();
    serve(http, metrics).unwrap();
    let serving = std::thread::spawn({
        let server = server.clone();
        move || server.serve(listener, Security::Plain)
    });

    let received = std::thread::spawn(move || run_session(pop3)).join();
    // The session's counters are in once it has ended.
    server.wait_idle();
    let text = scrape(http_addr);
    server.shutdown();
    serving.join().unwrap().unwrap();
    check(&text, received.unwrap());
}

/// One session against the server at `pop3` (a failed login, a login, a
/// RETR, QUIT) while a second connection from the same address is
/// refused; returns the octets the client received in that session.
fn run_session(pop3: SocketAddr) -> u64 {
    let stream = TcpStream::connect(pop3).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut received = 0u64;
    let mut line = |reader: &mut BufReader<TcpStream>| {
        let mut l = String::new();
        reader.read_line(&mut l).unwrap();
        received += l.len() as u64;
        l
    };
    assert!(line(&mut reader).starts_with("+OK"));
    // Over the per-address cap of 1: refused at once.
    let mut second = TcpStream::connect(pop3).unwrap();
    second
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut refusal = String::new();
    second.read_to_string(&mut refusal).unwrap();
    assert!(refusal.starts_with("-ERR [SYS/TEMP]"), "{refusal}");
    for (command, reply) in [
        ("USER alice", "+OK"),
        ("PASS wrong", "-ERR"),
        ("USER alice", "+OK"),
        ("PASS secret", "+OK"),
        ("RETR 1", "+OK"),
    ] {
        writer
            .write_all(format!("{command}\r\n").as_bytes())
            .unwrap();
        let got = line(&mut reader);
        assert!(got.starts_with(reply), "{command}: {got}");
    }
    while line(&mut reader) != ".\r\n" {}
    writer.write_all(b"QUIT\r\n").unwrap();
    assert!(line(&mut reader).starts_with("+OK"));
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    received + rest.len() as u64
}

/// `GET /metrics` from `addr`: the body, after checking the status line
/// and the content type.
fn scrape(addr: SocketAddr) -> String {
    let mut http = TcpStream::connect(addr).unwrap();
    http.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut answer = String::new();
    http.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    body.to_owned()
}

/// The value of `series` in an exposition.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .parse()
        .unwrap()
}

/// The counters one `run_session` leaves.
fn check(text: &str, received: u64) {
    assert_eq!(value(text, "pop3_sessions_open"), 0.0);
    assert_eq!(value(text, "pop3_sessions_total{outcome=\"quit\"}"), 1.0);
    assert_eq!(
        value(text, "pop3_sessions_total{outcome=\"peer_closed\"}"),
        0.0
    );
    let logins = |result: &str| {
        value(
            text,
            &format!("pop3_logins_total{{mechanism=\"USER\",result=\"{result}\"}}"),
        )
    };
    assert_eq!(logins("ok"), 1.0);
    assert_eq!(logins("failed"), 1.0);
    assert_eq!(value(text, "pop3_octets_sent_total"), received as f64);
    assert_eq!(
        value(text, "pop3_refusals_total{reason=\"address_full\"}"),
        1.0
    );
    let h = "pop3_store_call_duration_seconds";
    let count = value(text, &format!("{h}_count"));
    // Two password checks, the open, the message's read and chunks, the
    // release at QUIT.
    assert!(count >= 5.0, "{count} store calls");
    assert_eq!(value(text, &format!("{h}_bucket{{le=\"+Inf\"}}")), count);
    assert_eq!(value(text, "pop3_tls_handshakes_total{result=\"ok\"}"), 0.0);
}

const MESSAGE: &str = "Subject: hi\r\n\r\nhello\r\n";

fn config() -> ServerConfig {
    ServerConfig::default()
        .allow_plaintext_auth(true)
        .auth_failure_delay(Duration::ZERO)
}

fn options() -> ServerOptions {
    let mut options = ServerOptions::default();
    options.max_connections_per_address = 1;
    options
}
