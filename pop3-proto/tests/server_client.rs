//! The client machine and the server machine talking through an in-memory
//! byte pipe, with every transfer cut into pieces of each size: the events
//! the application sees do not depend on how the bytes travel.

mod server_support;

use std::sync::Arc;

use bytes::Bytes;
use pop3_proto::client::{Client, ClientConfig, ClientEvent, sasl};
use pop3_proto::server::{Server, ServerConfig};
use pop3_proto::session::Action;
use pop3_proto::store::{MemoryStore, StoreDriver};
use pop3_proto::time::Instant;
use pop3_proto::types::{MessageNumber, Secret};
use server_support::*;

/// What the application saw, comparable across runs.
#[derive(Debug, Default, PartialEq)]
struct Seen {
    events: Vec<String>,
    bodies: Vec<Vec<u8>>,
    client_closed: bool,
    server_closed: bool,
    handshakes: usize,
}

/// Runs both machines until both are closed, moving at most `piece` octets
/// per transfer.
fn run(
    client: &mut Client,
    server: &mut Server,
    driver: &mut StoreDriver<MemoryStore>,
    piece: usize,
) -> Seen {
    let now = Instant::from_millis(START);
    let mut seen = Seen::default();
    let mut to_server: Vec<u8> = Vec::new();
    let mut to_client: Vec<u8> = Vec::new();
    let mut body = Vec::new();
    let mut client_tls_pending = false;
    let mut server_tls_pending = false;
    for _round in 0..1_000_000 {
        let mut progress = false;
        while let Some(a) = server.poll_action() {
            progress = true;
            match a {
                Action::Send(t) => to_client.extend_from_slice(&t.bytes),
                Action::Event(req) => {
                    let reply = block_on(driver.execute(req));
                    server.handle_store(now, reply);
                }
                Action::StartTls => server_tls_pending = true,
                Action::Close => seen.server_closed = true,
                _ => {}
            }
        }
        while let Some(a) = client.poll_action() {
            progress = true;
            match a {
                Action::Send(t) => to_server.extend_from_slice(&t.bytes),
                Action::StartTls => client_tls_pending = true,
                Action::Close => seen.client_closed = true,
                Action::Event(ClientEvent::BodyChunk { data, .. }) => body.extend_from_slice(&data),
                Action::Event(ClientEvent::BodyEnd { .. }) => {
                    seen.bodies.push(std::mem::take(&mut body));
                    seen.events.push("BodyEnd".into());
                }
                Action::Event(ClientEvent::SaslWork { work, .. }) => {
                    // The key derivation, run here as a blocking client would.
                    assert!(client.sasl_work_done(now, work.run()));
                    seen.events.push("SaslWork".into());
                }
                Action::Event(e) => seen.events.push(format!("{e:?}")),
                _ => {}
            }
        }
        // The "handshake": once both sides asked for it and the plaintext
        // in flight is delivered.
        if client_tls_pending && server_tls_pending && to_client.is_empty() {
            assert!(to_server.is_empty(), "client wrote after STLS");
            client_tls_pending = false;
            server_tls_pending = false;
            seen.handshakes += 1;
            server.handle_tls_established(now);
            client.handle_tls_established(now);
            continue;
        }
        if !to_server.is_empty() && !server_tls_pending && server.wants_input() {
            let n = to_server.len().min(piece);
            let used = server.handle_input(now, &to_server[..n]);
            to_server.drain(..used);
            progress |= used > 0;
        }
        if !to_client.is_empty() && !client_tls_pending {
            let n = to_client.len().min(piece);
            let used = client.handle_input(now, &to_client[..n]);
            to_client.drain(..used);
            progress |= used > 0;
        }
        if seen.server_closed && to_client.is_empty() && !seen.client_closed {
            client.handle_eof(now);
            progress = true;
        }
        if seen.client_closed && seen.server_closed {
            return seen;
        }
        if !progress {
            panic!("stuck: to_server {to_server:?} to_client {to_client:?}");
        }
    }
    panic!("no end");
}

fn server_for(
    store: &MemoryStore,
    ctx: pop3_proto::server::ConnectionContext,
) -> (Server, StoreDriver<MemoryStore>) {
    let config = Arc::new(ServerConfig::for_store(store).allow_plaintext_auth(true));
    let server = Server::new(config, Instant::from_millis(START), ctx);
    (server, StoreDriver::new(Arc::new(store.clone())))
}

fn n(i: u32) -> MessageNumber {
    MessageNumber::new(i).unwrap()
}

#[test]
fn pipelined_session_is_independent_of_how_bytes_travel() {
    let mut reference = None;
    for piece in [usize::MAX, 1, 2, 3, 5, 7, 13, 64] {
        let store = standard_store();
        let (mut server, mut driver) = server_for(&store, plain());
        let mut client = Client::new(plain_link(), Instant::from_millis(START));
        client.capa().unwrap();
        client.login("alice", Secret::new("secret")).unwrap();
        client.capa().unwrap();
        client.stat().unwrap();
        client.list(None).unwrap();
        client.uidl(None).unwrap();
        client.retr(n(2)).unwrap();
        client.top(n(2), 1).unwrap();
        client.dele(n(1)).unwrap();
        client.retr(n(1)).unwrap();
        client.quit().unwrap();
        let seen = run(&mut client, &mut server, &mut driver, piece);
        assert_eq!(
            seen.bodies[0],
            b"Subject: b\r\nFrom: x\r\n\r\nline 1\r\n.dotted\r\nline 3\r\n"
        );
        assert_eq!(seen.bodies[1], b"Subject: b\r\nFrom: x\r\n\r\nline 1\r\n");
        assert!(
            seen.events
                .iter()
                .any(|e| e.contains("Message 1 is deleted")),
            "{:?}",
            seen.events
        );
        assert_eq!(store.message_count("alice"), 2);
        assert!(!store.is_locked("alice"));
        match &reference {
            None => reference = Some(seen),
            Some(r) => assert_eq!(&seen, r, "piece {piece}"),
        }
    }
}

#[test]
fn stls_apop_and_sasl_between_the_machines() {
    for piece in [usize::MAX, 1, 4] {
        let store = standard_store();
        // APOP over STLS.
        let (mut server, mut driver) = server_for(&store, stls_capable());
        let mut client = Client::new(plain_link(), Instant::from_millis(START));
        client.stls().unwrap();
        client.capa().unwrap();
        client.quit().unwrap();
        let seen = run(&mut client, &mut server, &mut driver, piece);
        assert_eq!(seen.handshakes, 1);
        assert!(server.is_tls_active());

        // APOP: the client reads the timestamp from the greeting.
        let (mut server, mut driver) = server_for(&store, plain());
        let mut client = Client::new(plain_link(), Instant::from_millis(START));
        let mut greeted = false;
        // Deliver the greeting first so that the timestamp is known.
        while let Some(a) = server.poll_action() {
            if let Action::Send(t) = a {
                let used = client.handle_input(Instant::from_millis(START), &t.bytes);
                assert_eq!(used, t.bytes.len());
                greeted = true;
            }
        }
        assert!(greeted);
        while client.poll_action().is_some() {}
        client.apop("mrose", &Secret::new("tanstaaf")).unwrap();
        client.stat().unwrap();
        client.quit().unwrap();
        let seen = run(&mut client, &mut server, &mut driver, piece);
        assert!(
            seen.events
                .iter()
                .any(|e| e.contains("count: 2, size: 320")),
            "{:?}",
            seen.events
        );

        // SASL PLAIN, LOGIN and CRAM-MD5.
        for mech in 0..3 {
            let (mut server, mut driver) = server_for(&store, plain());
            let mut client = Client::new(plain_link(), Instant::from_millis(START));
            let m: sasl::BoxedMechanism = match mech {
                0 => Box::new(sasl::Plain::new("alice", Secret::new("secret"))),
                1 => Box::new(sasl::Login::new("alice", Secret::new("secret"))),
                _ => Box::new(sasl::CramMd5::new("alice", Secret::new("secret"))),
            };
            client.auth(m).unwrap();
            client.stat().unwrap();
            client.quit().unwrap();
            let seen = run(&mut client, &mut server, &mut driver, piece);
            assert!(
                seen.events.iter().any(|e| e.contains("count: 3, size: 90")),
                "mechanism {mech}: {:?}",
                seen.events
            );
        }
    }
}

#[test]
fn a_large_message_crosses_in_small_pieces() {
    let store = MemoryStore::new().with_chunk_size(1000);
    store.add_user("u", "p");
    let mut m = Vec::new();
    m.extend_from_slice(b"Subject: big\n\n");
    for i in 0..5000 {
        if i % 7 == 0 {
            m.extend_from_slice(b".starts with a dot\n");
        }
        m.extend_from_slice(format!("line {i} with bare LF\n").as_bytes());
    }
    store.add_message("u", Bytes::from(m.clone()));
    let (mut server, mut driver) = server_for(&store, plain());
    let mut client = Client::new(plain_link(), Instant::from_millis(START));
    client.login("u", Secret::new("p")).unwrap();
    client.retr(n(1)).unwrap();
    client.quit().unwrap();
    let seen = run(&mut client, &mut server, &mut driver, 777);
    // Bare LF became CRLF on the wire; the client sees the message with CRLF.
    let expected: Vec<u8> = String::from_utf8(m)
        .unwrap()
        .replace('\n', "\r\n")
        .into_bytes();
    assert_eq!(seen.bodies, vec![expected]);
}

/// Clear-text logins allowed: the machines talk over memory.
fn plain_link() -> ClientConfig {
    let mut config = ClientConfig::default();
    config.insecure_cleartext_login = true;
    config
}

/// Every mechanism both machines speak, by name, for `alice`/`secret`.
fn mechanism(name: &str, password: &str) -> sasl::BoxedMechanism {
    let pw = || Secret::new(password.to_owned());
    match name {
        "PLAIN" => Box::new(sasl::Plain::new("alice", pw())),
        "LOGIN" => Box::new(sasl::Login::new("alice", pw())),
        "CRAM-MD5" => Box::new(sasl::CramMd5::new("alice", pw())),
        "SCRAM-SHA-1" => Box::new(sasl::Scram::sha1("alice", pw(), "clientnonce123456789")),
        "SCRAM-SHA-256" => Box::new(sasl::Scram::sha256("alice", pw(), "clientnonce123456789")),
        "OAUTHBEARER" => {
            Box::new(sasl::OAuthBearer::new("alice", pw()).with_host("localhost", 110))
        }
        "XOAUTH2" => Box::new(sasl::XOAuth2::new("alice", pw())),
        "XOAUTH2-TWO-STEP" => Box::new(sasl::XOAuth2::new("alice", pw()).two_step()),
        other => panic!("no mechanism {other}"),
    }
}

const MECHANISMS: [&str; 8] = [
    "PLAIN",
    "LOGIN",
    "CRAM-MD5",
    "SCRAM-SHA-1",
    "SCRAM-SHA-256",
    "OAUTHBEARER",
    "XOAUTH2",
    "XOAUTH2-TWO-STEP",
];

#[test]
fn every_sasl_mechanism_between_the_machines_split_at_every_byte() {
    // The password doubles as alice's bearer token.
    let store = standard_store().with_token_validator(pop3_proto::store::TokenValidator::new(
        |user, token| user == "alice" && token.expose() == b"secret",
    ));
    for name in MECHANISMS {
        // With the initial response on the AUTH line, and in two steps.
        for limit in [255, 0] {
            let mut reference = None;
            for piece in [usize::MAX, 1, 2, 3, 7] {
                let (mut server, mut driver) = server_for(&store, plain());
                let mut config = plain_link();
                config.initial_response_limit = limit;
                let mut client = Client::new(config, Instant::from_millis(START));
                client.auth(mechanism(name, "secret")).unwrap();
                client.stat().unwrap();
                client.quit().unwrap();
                let seen = run(&mut client, &mut server, &mut driver, piece);
                assert!(
                    seen.events.iter().any(|e| e.contains("count: 3, size: 90")),
                    "{name}, limit {limit}, piece {piece}: {:?}",
                    seen.events
                );
                assert!(
                    !seen.events.iter().any(|e| e.contains("Cancelled")),
                    "{name}: {:?}",
                    seen.events
                );
                assert!(seen.client_closed && seen.server_closed);
                assert!(!store.is_locked("alice"));
                match &reference {
                    None => reference = Some(seen),
                    Some(r) => assert_eq!(&seen, r, "{name}, piece {piece}"),
                }
            }
        }
    }
}

#[test]
fn external_between_the_machines_split_at_every_byte() {
    use pop3_proto::server::{ExternalIdentity, TlsInfo};
    let store = standard_store();
    let mut reference = None;
    for piece in [usize::MAX, 1, 2, 3] {
        for limit in [255, 0] {
            let config = ServerConfig::for_store(&store).external_identity(Some(
                ExternalIdentity::new(|der| (der == b"alice-cert").then(|| "alice".to_string())),
            ));
            let ctx = implicit_tls()
                .tls_info(TlsInfo::default().with_client_certificate(&b"alice-cert"[..]));
            let mut server = Server::new(Arc::new(config), Instant::from_millis(START), ctx);
            let mut driver = StoreDriver::new(Arc::new(store.clone()));
            let mut config = ClientConfig::default();
            config.tls_active = true;
            config.initial_response_limit = limit;
            let mut client = Client::new(config, Instant::from_millis(START));
            client.auth(Box::new(sasl::External::new())).unwrap();
            client.stat().unwrap();
            client.quit().unwrap();
            let seen = run(&mut client, &mut server, &mut driver, piece);
            assert!(
                seen.events.iter().any(|e| e.contains("count: 3, size: 90")),
                "piece {piece}: {:?}",
                seen.events
            );
            if limit == 255 {
                match &reference {
                    None => reference = Some(seen),
                    Some(r) => assert_eq!(&seen, r, "piece {piece}"),
                }
            }
        }
    }
}

#[test]
fn scram_sha256_plus_between_the_machines_split_at_every_byte() {
    use pop3_proto::server::TlsInfo;
    let store = standard_store();
    for piece in [usize::MAX, 1, 2, 5] {
        let ctx = implicit_tls().tls_info(TlsInfo::default().with_tls_exporter([42; 32]));
        let config = ServerConfig::for_store(&store);
        let mut server = Server::new(Arc::new(config), Instant::from_millis(START), ctx);
        let mut driver = StoreDriver::new(Arc::new(store.clone()));
        let mut config = ClientConfig::default();
        config.tls_active = true;
        let mut client = Client::new(config, Instant::from_millis(START));
        let m = sasl::Scram::sha256("alice", Secret::new("secret"), "clientnonce123456789")
            .with_tls_exporter([42; 32]);
        client.auth(Box::new(m)).unwrap();
        client.stat().unwrap();
        client.quit().unwrap();
        let seen = run(&mut client, &mut server, &mut driver, piece);
        assert!(
            seen.events.iter().any(|e| e.contains("count: 3, size: 90")),
            "piece {piece}: {:?}",
            seen.events
        );
    }
}
