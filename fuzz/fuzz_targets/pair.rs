#![no_main]
//! A client machine and a server machine wired together in memory, over a
//! maildrop of arbitrary messages, driven by an arbitrary sequence of
//! commands, exchanges (each moving octets in pieces of a chosen size) and
//! clock steps. Oracle: a model of the maildrop.
//!
//! - STAT, LIST, UIDL (whole or for one message), RETR and TOP give what
//!   the model says (sizes counted with CRLF line ends, bodies with their
//!   line ends normalised to CRLF, TOP the header, the blank line and the
//!   asked-for number of lines), or `-ERR` for a deleted or missing
//!   message; DELE and RSET change the model;
//! - the session never sees a malformed reply or a protocol error, unless
//!   enough time passed for a timer to end it;
//! - once both sides closed, the store holds exactly the undeleted
//!   messages if QUIT got `+OK` in TRANSACTION, and everything otherwise.

mod ready;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use pop3_proto::client::sasl::{CramMd5, Login, Plain};
use pop3_proto::client::{Client, ClientConfig, ClientEvent, RequestId};
use pop3_proto::server::{ConnectionContext, Server, ServerConfig};
use pop3_proto::session::Action;
use pop3_proto::store::{MemoryStore, StoreDriver};
use pop3_proto::time::Instant;
use pop3_proto::types::{MessageNumber, Secret, Uid};

use ready::ready;

#[derive(Debug, Arbitrary, Clone, Copy)]
enum Auth {
    UserPass,
    Apop,
    Plain,
    Login,
    CramMd5,
}

#[derive(Debug, Arbitrary)]
enum Op {
    Capa,
    /// Log in as alice (with the messages) or bob (none), right or wrong.
    Login {
        how: Auth,
        bob: bool,
        good: bool,
    },
    Stat,
    List(Option<u8>),
    Uidl(Option<u8>),
    Retr(u8),
    Top(u8, u8),
    Dele(u8),
    Rset,
    Noop,
    Quit,
    /// Move octets both ways until neither side moves, in pieces of at
    /// most this many octets (0: all at once).
    Run(u8),
    /// Let time pass (seconds).
    Clock(u8),
}

#[derive(Debug, Arbitrary)]
struct Input {
    messages: Vec<Vec<u8>>,
    chunk: u8,
    pipelining: bool,
    ops: Vec<Op>,
}

/// RFC 1939 octet counting: every line end is CRLF, and a last line
/// without one gets it.
fn normalise(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 2);
    for (i, &b) in body.iter().enumerate() {
        if b == b'\n' && (i == 0 || body[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The header, the blank line after it and `n` body lines.
fn top(norm: &[u8], n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut in_header = true;
    let mut left = n;
    for line in norm.split_inclusive(|&b| b == b'\n') {
        if !in_header {
            if left == 0 {
                break;
            }
            left -= 1;
        }
        out.extend_from_slice(line);
        if in_header && (line == b"\r\n") {
            in_header = false;
        }
    }
    out
}

#[derive(Debug, Clone)]
struct Msg {
    norm: Vec<u8>,
    uid: Uid,
    deleted: bool,
}

/// What a queued command must get.
#[derive(Debug, Clone)]
enum Expect {
    Login { good: bool, bob: bool },
    Stat,
    List(Option<u32>),
    Uidl(Option<u32>),
    Retr(u32),
    Top(u32, u64),
    Dele(u32),
    Rset,
    Noop,
    Quit,
    Capa,
}

struct Pair {
    client: Client,
    server: Server,
    driver: StoreDriver<MemoryStore>,
    now: Instant,
    c2s: Vec<u8>,
    s2c: Vec<u8>,
    client_closed: bool,
    server_closed: bool,
    eof_to_server: bool,
    eof_to_client: bool,
    events: Vec<ClientEvent>,
}

impl Pair {
    fn poll(&mut self) -> bool {
        let mut moved = false;
        while let Some(a) = self.client.poll_action() {
            moved = true;
            match a {
                Action::Send(t) => self.c2s.extend_from_slice(&t.bytes),
                Action::Event(ClientEvent::SaslWork { work, .. }) => {
                    // Slow SASL work runs inline, as in a blocking client.
                    assert!(self.client.sasl_work_done(self.now, work.run()));
                }
                Action::Event(e) => self.events.push(e),
                Action::Close => self.client_closed = true,
                other => panic!("unexpected client action {other:?}"),
            }
        }
        while let Some(a) = self.server.poll_action() {
            moved = true;
            match a {
                Action::Send(t) => self.s2c.extend_from_slice(&t.bytes),
                Action::Event(req) => {
                    let reply = ready(self.driver.execute(req));
                    self.server.handle_store(self.now, reply);
                }
                Action::Close => self.server_closed = true,
                other => panic!("unexpected server action {other:?}"),
            }
        }
        moved
    }

    fn run(&mut self, piece: usize) {
        let piece = if piece == 0 { usize::MAX } else { piece };
        for _ in 0..100_000 {
            let mut moved = self.poll();
            if !self.c2s.is_empty() && !self.server_closed && self.server.wants_input() {
                let k = self.c2s.len().min(piece);
                let n = self.server.handle_input(self.now, &self.c2s[..k]);
                self.c2s.drain(..n);
                moved |= n > 0;
            }
            moved |= self.poll();
            if !self.s2c.is_empty() && !self.client_closed {
                let k = self.s2c.len().min(piece);
                let n = self.client.handle_input(self.now, &self.s2c[..k]);
                self.s2c.drain(..n);
                moved |= n > 0;
            }
            moved |= self.poll();
            // A side that closed has closed its end of the connection.
            if self.client_closed && !self.eof_to_server {
                self.eof_to_server = true;
                self.c2s.clear();
                self.server.handle_eof(self.now);
                moved = true;
            }
            if self.server_closed && self.s2c.is_empty() && !self.eof_to_client {
                self.eof_to_client = true;
                self.client.handle_eof(self.now);
                moved = true;
            }
            if !moved {
                return;
            }
        }
        panic!("the pair never settled");
    }

    fn tick(&mut self, secs: u64) {
        self.now = self.now + Duration::from_secs(secs);
        if let Some(t) = self.client.poll_timeout()
            && self.now >= t
        {
            self.client.handle_timeout(self.now);
        }
        if let Some(t) = self.server.poll_timeout()
            && self.now >= t
        {
            self.server.handle_timeout(self.now);
        }
        self.poll();
    }
}

fn msg(n: u8) -> MessageNumber {
    MessageNumber::new(u32::from(n % 8).max(1)).unwrap()
}

fuzz_target!(|input: Input| {
    let store = MemoryStore::new().with_chunk_size(usize::from(input.chunk).max(1));
    store.add_user("alice", "secret");
    store.add_user("bob", "hunter2");
    let mut alice = Vec::new();
    for m in input.messages.iter().take(6) {
        let m = &m[..m.len().min(400)];
        let uid = store.add_message("alice", m.to_vec());
        alice.push(Msg {
            norm: normalise(m),
            uid,
            deleted: false,
        });
    }
    let original: Vec<Vec<u8>> = store.messages("alice").iter().map(|m| m.to_vec()).collect();
    let config = ServerConfig::for_store(&store)
        .allow_plaintext_auth(true)
        .auth_failure_delay(Duration::ZERO)
        .pipelining(input.pipelining)
        // The oracle models every reply of a session that goes on; the caps
        // that end one (bad commands, login attempts) have tests of their own.
        .max_bad_commands(0, 0)
        .max_login_attempts(0);
    let now = Instant::from_millis(7_000);
    let mut p = Pair {
        client: Client::new(plain_link(), now),
        server: Server::new(
            Arc::new(config),
            now,
            ConnectionContext::new(99, false, false),
        ),
        driver: StoreDriver::new(Arc::new(store.clone())),
        now,
        c2s: Vec::new(),
        s2c: Vec::new(),
        client_closed: false,
        server_closed: false,
        eof_to_server: false,
        eof_to_client: false,
        events: Vec::new(),
    };
    let mut expect: BTreeMap<RequestId, Expect> = BTreeMap::new();
    let mut elapsed = 0u64;
    let mut ops: Vec<&Op> = input.ops.iter().take(64).collect();
    let tail = [Op::Run(0), Op::Quit, Op::Run(0)];
    ops.extend(tail.iter());
    for op in ops {
        let c = &mut p.client;
        let queued = match op {
            Op::Capa => c.capa().map(|id| (id, Expect::Capa)),
            Op::Login { how, bob, good } => {
                let user = if *bob { "bob" } else { "alice" };
                let right = if *bob { "hunter2" } else { "secret" };
                let pw = Secret::new(if *good { right } else { "wrong" });
                let r = match how {
                    Auth::UserPass => c.login(user, pw).map(|(_, p)| p),
                    Auth::Apop => c.apop(user, &pw),
                    Auth::Plain => c.auth(Box::new(Plain::new(user, pw))),
                    Auth::Login => c.auth(Box::new(Login::new(user, pw))),
                    Auth::CramMd5 => c.auth(Box::new(CramMd5::new(user, pw))),
                };
                r.map(|id| {
                    (
                        id,
                        Expect::Login {
                            good: *good,
                            bob: *bob,
                        },
                    )
                })
            }
            Op::Stat => c.stat().map(|id| (id, Expect::Stat)),
            Op::List(n) => c
                .list(n.map(msg))
                .map(|id| (id, Expect::List(n.map(|n| msg(n).get())))),
            Op::Uidl(n) => c
                .uidl(n.map(msg))
                .map(|id| (id, Expect::Uidl(n.map(|n| msg(n).get())))),
            Op::Retr(n) => c.retr(msg(*n)).map(|id| (id, Expect::Retr(msg(*n).get()))),
            Op::Top(n, k) => c
                .top(msg(*n), u64::from(*k % 8))
                .map(|id| (id, Expect::Top(msg(*n).get(), u64::from(*k % 8)))),
            Op::Dele(n) => c.dele(msg(*n)).map(|id| (id, Expect::Dele(msg(*n).get()))),
            Op::Rset => c.rset().map(|id| (id, Expect::Rset)),
            Op::Noop => c.noop().map(|id| (id, Expect::Noop)),
            Op::Quit => c.quit().map(|id| (id, Expect::Quit)),
            Op::Run(piece) => {
                p.run(usize::from(*piece));
                continue;
            }
            Op::Clock(s) => {
                let s = u64::from(*s);
                elapsed += s;
                p.tick(s);
                continue;
            }
        };
        if let Ok((id, e)) = queued {
            expect.insert(id, e);
        }
    }
    p.run(0);
    if !p.client_closed {
        // The client machine waits (a timer, or nothing left to say).
        p.client.handle_eof(p.now);
        p.run(0);
    }
    assert!(p.client_closed, "the client never closed");
    assert!(p.server_closed, "the server never closed");
    drop(p.driver);

    if std::env::var_os("POP3_FUZZ_SHOW").is_some() {
        for e in &p.events {
            eprintln!("{e:?}");
        }
    }
    // The client's view against the model, in the order the replies came.
    // The first timer that can end a session: the idle timeout before login.
    let timers = elapsed >= 60;
    let mut session: Option<(bool, Vec<Msg>)> = None; // (bob, messages)
    let mut listing: Vec<(u32, Vec<u8>)> = Vec::new();
    let mut body: Vec<u8> = Vec::new();
    let mut committed = false;
    let live = |s: &Option<(bool, Vec<Msg>)>, n: u32| -> Option<Msg> {
        let (_, m) = s.as_ref()?;
        m.get(n as usize - 1).filter(|m| !m.deleted).cloned()
    };
    for e in &p.events {
        let Some(id) = e.request_id() else {
            match e {
                ClientEvent::Greeting(_) | ClientEvent::Closed => continue,
                ClientEvent::Error(err) => {
                    assert!(timers, "a protocol error between our own machines: {err:?}");
                    break;
                }
                _ => continue,
            }
        };
        if let ClientEvent::Err { error, .. } = e
            && (error.text().starts_with(b"Disconnected: no login")
                || error.text().starts_with(b"Disconnected for inactivity")
                || error.text().starts_with(b"Autologout"))
        {
            assert!(timers, "a timer fired too early: {e:?}");
            break;
        }
        let Some(ex) = expect.get(&id) else {
            // USER of a login: its answer is +OK.
            assert!(
                matches!(e, ClientEvent::Ok { .. } | ClientEvent::Cancelled { .. }),
                "{e:?}"
            );
            continue;
        };
        if let ClientEvent::Cancelled { .. } = e {
            continue;
        }
        assert!(
            !matches!(e, ClientEvent::Malformed { .. }),
            "a malformed reply from our own server: {e:?}"
        );
        match (ex, e) {
            (Expect::Login { good, bob }, ClientEvent::Ok { .. }) => {
                assert!(
                    *good && session.is_none(),
                    "a login that should have failed"
                );
                session = Some((*bob, if *bob { Vec::new() } else { alice.clone() }));
            }
            (Expect::Login { good, .. }, err @ ClientEvent::Err { .. }) => {
                assert!(!*good || session.is_some(), "a good login refused: {err:?}");
            }
            (Expect::Stat, ClientEvent::Stat { reply, .. }) => {
                let (_, m) = session.as_ref().expect("STAT outside TRANSACTION");
                let l: Vec<&Msg> = m.iter().filter(|m| !m.deleted).collect();
                assert_eq!(reply.count as usize, l.len(), "STAT count");
                let size: u64 = l.iter().map(|m| m.norm.len() as u64).sum();
                assert_eq!(reply.size, size, "STAT size");
            }
            (Expect::List(None) | Expect::Uidl(None), ClientEvent::ListingStart { .. }) => {
                assert!(session.is_some());
                listing.clear();
            }
            (Expect::List(None), ClientEvent::Scan { entry, .. }) => {
                listing.push((entry.msg.get(), entry.size.to_string().into_bytes()));
            }
            (Expect::Uidl(None), ClientEvent::Uid { entry, .. }) => {
                listing.push((entry.msg.get(), entry.uid.as_bytes().to_vec()));
            }
            (Expect::List(None) | Expect::Uidl(None), ClientEvent::ListingEnd { .. }) => {
                let (_, m) = session.as_ref().unwrap();
                let want: Vec<(u32, Vec<u8>)> = m
                    .iter()
                    .enumerate()
                    .filter(|(_, m)| !m.deleted)
                    .map(|(i, m)| {
                        let v = match ex {
                            Expect::List(_) => m.norm.len().to_string().into_bytes(),
                            _ => m.uid.as_bytes().to_vec(),
                        };
                        (i as u32 + 1, v)
                    })
                    .collect();
                assert_eq!(listing, want, "the listing");
            }
            (Expect::List(Some(n)), ClientEvent::Scan { entry, .. }) => {
                let m = live(&session, *n).expect("LIST n of a message not there");
                assert_eq!(entry.size, m.norm.len() as u64);
            }
            (Expect::Uidl(Some(n)), ClientEvent::Uid { entry, .. }) => {
                let m = live(&session, *n).expect("UIDL n of a message not there");
                assert_eq!(entry.uid, m.uid);
            }
            (Expect::Retr(_) | Expect::Top(..), ClientEvent::BodyStart { .. }) => body.clear(),
            (Expect::Retr(_) | Expect::Top(..), ClientEvent::BodyChunk { data, .. }) => {
                body.extend_from_slice(data)
            }
            (Expect::Retr(n), ClientEvent::BodyEnd { .. }) => {
                let m = live(&session, *n).expect("RETR of a message not there");
                assert_eq!(body, m.norm, "RETR {n}");
            }
            (Expect::Top(n, k), ClientEvent::BodyEnd { .. }) => {
                let m = live(&session, *n).expect("TOP of a message not there");
                assert_eq!(body, top(&m.norm, *k), "TOP {n} {k}");
            }
            (Expect::Dele(n), ClientEvent::Ok { .. }) => {
                assert!(live(&session, *n).is_some(), "DELE of a message not there");
                session.as_mut().unwrap().1[*n as usize - 1].deleted = true;
            }
            (Expect::Rset, ClientEvent::Ok { .. }) => {
                for m in &mut session.as_mut().expect("RSET outside TRANSACTION").1 {
                    m.deleted = false;
                }
            }
            (Expect::Noop, ClientEvent::Ok { .. }) => assert!(session.is_some()),
            (Expect::Quit, ClientEvent::Ok { .. }) => {
                if let Some((false, m)) = &session {
                    committed = true;
                    alice = m.clone();
                }
            }
            (Expect::Capa, ClientEvent::Capabilities { .. }) => {}
            (
                Expect::List(Some(n))
                | Expect::Uidl(Some(n))
                | Expect::Retr(n)
                | Expect::Top(n, _)
                | Expect::Dele(n),
                ClientEvent::Err { .. },
            ) => assert!(
                live(&session, *n).is_none(),
                "-ERR for message {n}, which is there"
            ),
            (_, ClientEvent::Err { .. }) => {
                assert!(session.is_none(), "an unexpected -ERR: {e:?} to {ex:?}")
            }
            (ex, e) => panic!("{e:?} in answer to {ex:?}"),
        }
    }
    let stored: Vec<Vec<u8>> = store.messages("alice").iter().map(|m| m.to_vec()).collect();
    if committed {
        let kept: Vec<Vec<u8>> = original
            .iter()
            .zip(&alice)
            .filter(|(_, m)| !m.deleted)
            .map(|(o, _)| o.clone())
            .collect();
        assert_eq!(stored, kept, "the store after QUIT");
    } else if !timers {
        assert_eq!(stored, original, "messages lost without QUIT");
    }
    assert!(!store.is_locked("alice") && !store.is_locked("bob"));
});

/// The client's settings on the in-memory link: clear-text logins allowed.
fn plain_link() -> ClientConfig {
    let mut config = ClientConfig::default();
    config.insecure_cleartext_login = true;
    config
}
