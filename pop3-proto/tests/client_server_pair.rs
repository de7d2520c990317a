//! The client machine talking to the server machine through an in-memory
//! byte pipe, backed by a `MemoryStore`.

mod client_support;

use core::future::Future;
use core::pin::pin;
use core::task::{Context, Poll, Waker};
use core::time::Duration;
use std::sync::Arc;

use pop3_proto::client::sasl::{CramMd5, Login, OAuthBearer, Plain, Scram, XOAuth2};
use pop3_proto::client::{Client, ClientEvent, ClientState, RequestId};
use pop3_proto::server::{ConnectionContext, Server, ServerConfig};
use pop3_proto::session::Action;
use pop3_proto::store::{MemoryStore, Store, StoreDriver};
use pop3_proto::time::Instant;
use pop3_proto::types::{MessageNumber, Secret};

use client_support::{body_of, coalesce};

fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..1_000 {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
    panic!("the memory store's futures are always ready");
}

fn n(i: u32) -> MessageNumber {
    MessageNumber::new(i).unwrap()
}

fn store() -> MemoryStore {
    // The password doubles as alice's bearer token.
    let store = MemoryStore::new().with_token_validator(pop3_proto::store::TokenValidator::new(
        |user, token| user == "alice" && token.expose() == b"secret",
    ));
    store.add_user("alice", "secret");
    store.add_message("alice", "Subject: one\r\n\r\nfirst\r\n");
    store.add_message(
        "alice",
        "Subject: two\r\n\r\n.dotted line\r\n..two dots\r\n.\r\nend\r\n",
    );
    store.add_message("alice", "Subject: three\r\n\r\nno final newline");
    let mut big = b"Subject: big\r\n\r\n".to_vec();
    for i in 0..20_000 {
        big.extend_from_slice(format!(".line {i} of a long message\r\n").as_bytes());
    }
    store.add_message("alice", big);
    store
}

struct Pair {
    client: Client,
    server: Server,
    driver: StoreDriver<MemoryStore>,
    store: MemoryStore,
    now: Instant,
    c2s: Vec<u8>,
    s2c: Vec<u8>,
    events: Vec<ClientEvent>,
    client_closed: bool,
    server_closed: bool,
    client_tls: bool,
    server_tls: bool,
    /// The server→client stream is cut at this offset once.
    split_at: Option<usize>,
    delivered: usize,
}

impl Pair {
    fn new(config: ServerConfig, ctx: ConnectionContext) -> Pair {
        let store = store();
        let now = Instant::from_millis(5_000);
        let config = config.credential_forms(store.credential_forms());
        Pair {
            client: Client::new(client_support::plain_link(), now),
            server: Server::new(Arc::new(config), now, ctx),
            driver: StoreDriver::new(Arc::new(store.clone())),
            store,
            now,
            c2s: Vec::new(),
            s2c: Vec::new(),
            events: Vec::new(),
            client_closed: false,
            server_closed: false,
            client_tls: false,
            server_tls: false,
            split_at: None,
            delivered: 0,
        }
    }

    fn plain() -> Pair {
        Pair::new(
            ServerConfig::default().allow_plaintext_auth(true),
            ConnectionContext::new(7, false, true),
        )
    }

    /// Runs both machines until neither can move.
    fn run(&mut self) {
        for _ in 0..1_000_000 {
            let mut progress = false;
            while let Some(a) = self.client.poll_action() {
                progress = true;
                match a {
                    Action::Send(t) => self.c2s.extend_from_slice(&t.bytes),
                    Action::StartTls => self.client_tls = true,
                    Action::Event(ClientEvent::SaslWork { work, .. }) => {
                        // The key derivation, run here as a blocking client would.
                        assert!(self.client.sasl_work_done(self.now, work.run()));
                    }
                    Action::Event(e) => self.events.push(e),
                    Action::Close => self.client_closed = true,
                    _ => {}
                }
            }
            while let Some(a) = self.server.poll_action() {
                progress = true;
                match a {
                    Action::Send(t) => self.s2c.extend_from_slice(&t.bytes),
                    Action::Event(req) => {
                        let reply = block_on(self.driver.execute(req));
                        self.server.handle_store(self.now, reply);
                    }
                    Action::StartTls => self.server_tls = true,
                    Action::Close => self.server_closed = true,
                    _ => {}
                }
            }
            if self.server_tls && self.client_tls && self.s2c.is_empty() && self.c2s.is_empty() {
                // The "handshake".
                self.server_tls = false;
                self.client_tls = false;
                self.server.handle_tls_established(self.now);
                self.client.handle_tls_established(self.now);
                continue;
            }
            if !self.c2s.is_empty() && !self.server_closed && !self.server_tls {
                let used = self.server.handle_input(self.now, &self.c2s);
                self.c2s.drain(..used);
                progress |= used > 0;
            }
            if !self.s2c.is_empty() && !self.client_closed && !self.client_tls {
                let mut len = self.s2c.len();
                if let Some(p) = self
                    .split_at
                    .filter(|&p| self.delivered < p && self.delivered + len > p)
                {
                    len = p - self.delivered;
                }
                let used = self.client.handle_input(self.now, &self.s2c[..len]);
                self.s2c.drain(..used);
                self.delivered += used;
                progress |= used > 0;
            }
            if progress {
                continue;
            }
            // Idle: let a near server timer (the failed-login delay) fire.
            match self.server.poll_timeout() {
                Some(t) if t.saturating_since(self.now) <= Duration::from_secs(5) => {
                    self.now = t;
                    self.server.handle_timeout(t);
                }
                _ => return,
            }
        }
        panic!("no quiescence");
    }

    fn last_of(&self, id: RequestId) -> &ClientEvent {
        self.events
            .iter()
            .rev()
            .find(|e| client_support::event_id(e) == Some(id))
            .unwrap_or_else(|| panic!("no event for {id}"))
    }
}

#[test]
fn full_session_against_the_server_machine() {
    let mut p = Pair::plain();
    let capa = p.client.capa().unwrap();
    p.client.login("alice", Secret::new("secret")).unwrap();
    p.run();
    assert_eq!(p.client.state(), ClientState::Transaction);
    assert!(matches!(p.last_of(capa), ClientEvent::Capabilities { .. }));
    p.client.capa().unwrap();
    let stat = p.client.stat().unwrap();
    let list = p.client.list(None).unwrap();
    let uidl = p.client.uidl(None).unwrap();
    let retrs: Vec<_> = (1..=4).map(|i| p.client.retr(n(i)).unwrap()).collect();
    let top = p.client.top(n(2), 1).unwrap();
    let dele = p.client.dele(n(1)).unwrap();
    let quit = p.client.quit().unwrap();
    p.run();
    assert!(p.client_closed && p.server_closed);
    assert!(matches!(p.last_of(stat), ClientEvent::Stat { reply, .. } if reply.count == 4));
    assert!(matches!(p.last_of(list), ClientEvent::ListingEnd { .. }));
    assert!(matches!(p.last_of(uidl), ClientEvent::ListingEnd { .. }));
    let messages = store().messages("alice");
    let sizes: Vec<u64> = p
        .events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Scan { id, entry } if *id == list => Some(entry.size),
            _ => None,
        })
        .collect();
    for (i, id) in retrs.iter().enumerate() {
        let body = body_of(&p.events, *id);
        let mut want = messages[i].to_vec();
        if !want.ends_with(b"\n") {
            want.extend_from_slice(b"\r\n");
        }
        assert_eq!(body, want, "message {}", i + 1);
        assert_eq!(sizes[i], body.len() as u64, "LIST size of {}", i + 1);
    }
    assert_eq!(
        body_of(&p.events, top),
        b"Subject: two\r\n\r\n.dotted line\r\n".to_vec()
    );
    assert!(matches!(p.last_of(dele), ClientEvent::Ok { .. }));
    assert!(matches!(p.last_of(quit), ClientEvent::Ok { .. }));
    assert!(!p.events.iter().any(|e| matches!(
        e,
        ClientEvent::Error(_) | ClientEvent::Malformed { .. } | ClientEvent::Cancelled { .. }
    )));
    // UPDATE removed message 1.
    assert_eq!(p.store.message_count("alice"), 3);
}

#[test]
fn pipelined_batch_against_the_server_machine() {
    let mut p = Pair::plain();
    p.client.capa().unwrap();
    p.run();
    assert!(p.client.pipelining_active());
    p.client.login("alice", Secret::new("secret")).unwrap();
    p.client.capa().unwrap();
    let stat = p.client.stat().unwrap();
    p.run();
    assert!(matches!(p.last_of(stat), ClientEvent::Stat { .. }));
    assert!(p.client.pipelining_active());
    let mut ids = Vec::new();
    for i in 1..=4 {
        ids.push(p.client.retr(n(i)).unwrap());
        ids.push(p.client.dele(n(i)).unwrap());
    }
    ids.push(p.client.quit().unwrap());
    p.run();
    for id in ids {
        assert!(matches!(
            p.last_of(id),
            ClientEvent::Ok { .. } | ClientEvent::BodyEnd { .. }
        ));
    }
    assert_eq!(p.store.message_count("alice"), 0);
}

#[test]
fn apop_against_the_server_machine() {
    let mut p = Pair::plain();
    p.run();
    assert!(p.client.apop_timestamp().is_some());
    let id = p.client.apop("alice", &Secret::new("secret")).unwrap();
    p.run();
    assert!(
        matches!(p.last_of(id), ClientEvent::Ok { .. }),
        "{:?}",
        p.events
    );
    assert_eq!(p.client.state(), ClientState::Transaction);
}

#[test]
fn sasl_mechanisms_against_the_server_machine() {
    for mech in MECHANISMS {
        let mut p = Pair::plain();
        p.run();
        let m = mechanism(mech, "secret");
        let id = p.client.auth(m).unwrap();
        p.run();
        assert!(
            matches!(p.last_of(id), ClientEvent::Ok { .. }),
            "{mech}: {:?}",
            p.events
        );
        assert_eq!(p.client.state(), ClientState::Transaction, "{mech}");
    }
}

const MECHANISMS: [&str; 7] = [
    "PLAIN",
    "LOGIN",
    "CRAM-MD5",
    "SCRAM-SHA-1",
    "SCRAM-SHA-256",
    "OAUTHBEARER",
    "XOAUTH2",
];

fn mechanism(name: &str, password: &str) -> pop3_proto::client::BoxedMechanism {
    let pw = || Secret::new(password.to_owned());
    match name {
        "PLAIN" => Box::new(Plain::new("alice", pw())),
        "LOGIN" => Box::new(Login::new("alice", pw())),
        "CRAM-MD5" => Box::new(CramMd5::new("alice", pw())),
        "SCRAM-SHA-1" => Box::new(Scram::sha1("alice", pw(), "fyko+d2lbbFgONRv9qkxdawL")),
        "SCRAM-SHA-256" => Box::new(Scram::sha256("alice", pw(), "rOprNGfwEbeRWgbNEkqO")),
        "OAUTHBEARER" => Box::new(OAuthBearer::new("alice", pw())),
        "XOAUTH2" => Box::new(XOAuth2::new("alice", pw())),
        other => panic!("no mechanism {other}"),
    }
}

#[test]
fn every_sasl_mechanism_with_a_wrong_password_is_an_auth_error() {
    use pop3_proto::response::CodeKind;
    for mech in MECHANISMS {
        let mut p = Pair::plain();
        p.run();
        let id = p.client.auth(mechanism(mech, "wrong")).unwrap();
        p.run();
        match p.last_of(id) {
            ClientEvent::Err { error, .. } => {
                assert!(error.kind() == Some(CodeKind::Auth), "{mech}: {error:?}");
            }
            other => panic!("{mech}: {other:?}"),
        }
        assert_eq!(p.client.state(), ClientState::Authorization, "{mech}");
        assert!(!p.store.is_locked("alice"));
    }
}

#[test]
fn wrong_password_then_retry_against_the_server_machine() {
    let mut p = Pair::plain();
    let (_, pass) = p.client.login("alice", Secret::new("wrong")).unwrap();
    let stat = p.client.stat().unwrap();
    p.run();
    assert!(matches!(p.last_of(pass), ClientEvent::Err { .. }));
    assert!(matches!(p.last_of(stat), ClientEvent::Cancelled { .. }));
    p.client.login("alice", Secret::new("secret")).unwrap();
    let stat = p.client.stat().unwrap();
    p.run();
    assert!(matches!(p.last_of(stat), ClientEvent::Stat { .. }));
}

#[test]
fn stls_against_the_server_machine() {
    let mut p = Pair::new(
        ServerConfig::default(),
        ConnectionContext::new(7, false, true),
    );
    let before = p.client.capa().unwrap();
    p.client.stls().unwrap();
    let after = p.client.capa().unwrap();
    p.client.login("alice", Secret::new("secret")).unwrap();
    let stat = p.client.stat().unwrap();
    p.run();
    assert!(p.client.is_tls() && p.server.is_tls_active());
    let caps = |id| match p.last_of(id) {
        ClientEvent::Capabilities { list, .. } => list.clone(),
        other => panic!("{other:?}"),
    };
    use pop3_proto::response::Capability;
    // Plaintext login is offered only once TLS is active.
    assert!(caps(before).contains(&Capability::Stls));
    assert!(!caps(before).contains(&Capability::User));
    assert!(caps(after).contains(&Capability::User));
    assert!(!caps(after).contains(&Capability::Stls));
    assert!(matches!(p.last_of(stat), ClientEvent::Stat { .. }));
}

#[test]
fn server_to_client_stream_split_at_every_position() {
    let script = |p: &mut Pair| {
        p.client.capa().unwrap();
        p.client.login("alice", Secret::new("secret")).unwrap();
        p.client.stat().unwrap();
        p.client.list(None).unwrap();
        p.client.uidl(None).unwrap();
        p.client.retr(n(2)).unwrap();
        p.client.top(n(3), 0).unwrap();
        p.client.dele(n(1)).unwrap();
        p.client.rset().unwrap();
        p.client.noop().unwrap();
        p.client.quit().unwrap();
        p.run();
    };
    let mut whole = Pair::plain();
    script(&mut whole);
    let want = coalesce(&whole.events);
    assert!(want.contains(&ClientEvent::Closed));
    let total = whole.delivered;
    assert!(total < 4096, "{total}");
    for at in 0..=total {
        let mut p = Pair::plain();
        p.split_at = Some(at);
        script(&mut p);
        assert_eq!(coalesce(&p.events), want, "split at {at}");
    }
}

#[derive(Debug, Clone)]
enum Op {
    Stat,
    List(Option<u32>),
    Uidl(Option<u32>),
    Retr(u32),
    Top(u32, u64),
    Dele(u32),
    Rset,
    Noop,
    Capa,
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        Just(Op::Stat),
        proptest::option::of(1u32..=6).prop_map(Op::List),
        proptest::option::of(1u32..=6).prop_map(Op::Uidl),
        (1u32..=6).prop_map(Op::Retr),
        ((1u32..=6), (0u64..4)).prop_map(|(m, l)| Op::Top(m, l)),
        (1u32..=6).prop_map(Op::Dele),
        Just(Op::Rset),
        Just(Op::Noop),
        Just(Op::Capa),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    #[test]
    fn random_command_sequences_against_the_server_machine(
        ops in proptest::collection::vec(op(), 0..30),
        pipelined in proptest::prelude::any::<bool>(),
    ) {
        let mut p = Pair::plain();
        if pipelined {
            p.client.capa().unwrap();
        }
        p.client.login("alice", Secret::new("secret")).unwrap();
        if pipelined {
            p.client.capa().unwrap();
        }
        let mut issued = Vec::new();
        for o in &ops {
            let id = match *o {
                Op::Stat => p.client.stat(),
                Op::List(m) => p.client.list(m.map(n)),
                Op::Uidl(m) => p.client.uidl(m.map(n)),
                Op::Retr(m) => p.client.retr(n(m)),
                Op::Top(m, l) => p.client.top(n(m), l),
                Op::Dele(m) => p.client.dele(n(m)),
                Op::Rset => p.client.rset(),
                Op::Noop => p.client.noop(),
                Op::Capa => p.client.capa(),
            }
            .unwrap();
            issued.push((o.clone(), id));
        }
        p.client.quit().unwrap();
        p.run();
        proptest::prop_assert!(p.client_closed && p.server_closed);
        proptest::prop_assert!(!p.events.iter().any(|e| matches!(
            e,
            ClientEvent::Error(_) | ClientEvent::Malformed { .. } | ClientEvent::Cancelled { .. }
        )), "{:?}", p.events);
        let mut deleted = std::collections::BTreeSet::new();
        for (o, id) in &issued {
            let last = p.last_of(*id);
            match o {
                Op::Dele(m) if matches!(last, ClientEvent::Ok { .. }) => {
                    deleted.insert(*m);
                }
                Op::Rset => deleted.clear(),
                Op::Retr(m) | Op::Top(m, _) if *m <= 4 && !deleted.contains(m) => {
                    let ended = matches!(last, ClientEvent::BodyEnd { .. });
                    proptest::prop_assert!(ended, "{:?}: {:?}", o, last);
                }
                _ => {}
            }
        }
        proptest::prop_assert_eq!(p.store.message_count("alice"), 4 - deleted.len());
    }
}
