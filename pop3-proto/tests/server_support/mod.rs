//! Shared test support for the server machine: a harness that drives a
//! `Server` against a `MemoryStore` with a simulated clock, a transcript
//! runner for `C:`/`S:` traces, and a waker-free `block_on`.
#![allow(dead_code)]

use core::future::Future;
use core::pin::pin;
use core::task::{Context, Poll, Waker};
use core::time::Duration;
use std::sync::Arc;

use pop3_proto::server::{ConnectionContext, Server, ServerConfig, StoreRequest};
use pop3_proto::session::Action;
use pop3_proto::store::{MemoryStore, Store, StoreDriver};
use pop3_proto::time::Instant;

/// Polls a future that is ready without waking (the MemoryStore's are).
pub fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..1_000 {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
    panic!("future not ready");
}

/// The deterministic random input of test connections.
pub const RANDOM: u64 = 0x0123_4567_89ab_cdef;
/// The clock at connection start.
pub const START: u64 = 1_000_000;
/// The greeting's APOP timestamp with `RANDOM` and `START`.
pub const TIMESTAMP: &str = "<0123456789abcdef.1000000@localhost>";

/// A message of exactly `size` octets (CRLF line ends), with a header.
pub fn message_of_size(size: usize, tag: &str) -> Vec<u8> {
    let mut m = format!("Subject: {tag}\r\n\r\n").into_bytes();
    assert!(size >= m.len() + 3);
    while m.len() + 2 < size {
        let line_room = (size - m.len() - 2).min(60);
        if line_room >= 3 {
            m.extend(std::iter::repeat_n(b'x', line_room - 2));
            m.extend_from_slice(b"\r\n");
        } else {
            m.extend(std::iter::repeat_n(b'y', line_room));
        }
    }
    while m.len() + 2 > size {
        m.pop();
    }
    m.extend_from_slice(b"\r\n");
    assert_eq!(m.len(), size);
    m
}

/// The store most tests use: `mrose`/`tanstaaf` with two messages of 120
/// and 200 octets (RFC 1939 §10), `alice`/`secret` with three small ones,
/// `empty`/`nothing` with none.
pub fn standard_store() -> MemoryStore {
    let store = MemoryStore::new();
    store.add_user("mrose", "tanstaaf");
    store.add_message("mrose", message_of_size(120, "one"));
    store.add_message("mrose", message_of_size(200, "two"));
    store.add_user("alice", "secret");
    store.add_message("alice", "Subject: a\r\n\r\nfirst\r\n");
    store.add_message(
        "alice",
        "Subject: b\r\nFrom: x\r\n\r\nline 1\r\n.dotted\r\nline 3\r\n",
    );
    store.add_message("alice", "Subject: c\r\n\r\nthird\r\n");
    store.add_user("empty", "nothing");
    store
}

/// A configuration for tests: plaintext allowed (most tests are about
/// something else), APOP offered, the store's credential forms.
pub fn test_config() -> ServerConfig {
    ServerConfig::default()
        .allow_plaintext_auth(true)
        .credential_forms(MemoryStore::new().credential_forms())
}

/// Drives one connection.
pub struct Harness {
    pub server: Server,
    pub driver: StoreDriver<MemoryStore>,
    pub store: MemoryStore,
    pub now: Instant,
    out: Vec<u8>,
    pub closed: bool,
    pub tls_handshakes: usize,
    pub auto_tls: bool,
    /// Timers up to this far ahead fire by themselves (failed-login delay).
    pub auto_timer: Duration,
    pending: Vec<u8>,
    pub requests: Vec<StoreRequest>,
    pub max_queued: usize,
    pub max_buffered: usize,
    pub closes: usize,
}

impl Harness {
    pub fn new(config: ServerConfig, ctx: ConnectionContext, store: MemoryStore) -> Self {
        let now = Instant::from_millis(START);
        let server = Server::new(Arc::new(config), now, ctx);
        let driver = StoreDriver::new(Arc::new(store.clone()));
        let mut h = Harness {
            server,
            driver,
            store,
            now,
            out: Vec::new(),
            closed: false,
            tls_handshakes: 0,
            auto_tls: true,
            auto_timer: Duration::from_secs(5),
            pending: Vec::new(),
            requests: Vec::new(),
            max_queued: 0,
            max_buffered: 0,
            closes: 0,
        };
        h.drain();
        h
    }

    /// The usual plaintext connection with the standard store.
    pub fn standard() -> Self {
        Self::new(test_config(), plain(), standard_store())
    }

    /// Performs every queued action; fires near timers.
    pub fn drain(&mut self) {
        loop {
            while let Some(action) = self.server.poll_action() {
                self.max_queued = self.max_queued.max(self.server.queued_actions());
                self.max_buffered = self.max_buffered.max(self.server.buffered_input());
                match action {
                    Action::Send(t) => {
                        assert!(!self.closed, "Send after Close");
                        self.out.extend_from_slice(&t.bytes);
                    }
                    Action::Event(req) => {
                        self.requests.push(req.clone());
                        let reply = block_on(self.driver.execute(req));
                        self.server.handle_store(self.now, reply);
                    }
                    Action::StartTls => {
                        self.tls_handshakes += 1;
                        // Rule: discard whatever was read and not consumed.
                        self.pending.clear();
                        if self.auto_tls {
                            self.server.handle_tls_established(self.now);
                        }
                    }
                    Action::Close => {
                        self.closed = true;
                        self.closes += 1;
                    }
                    _ => {}
                }
            }
            match self.server.poll_timeout() {
                Some(t) if t > self.now && t - self.now <= self.auto_timer => {
                    self.now = t;
                    self.server.handle_timeout(self.now);
                }
                _ => break,
            }
        }
    }

    /// Client bytes, offered as an adapter would: what the machine does
    /// not take is kept and offered again when it wants input.
    pub fn send(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        self.pump();
    }

    pub fn pump(&mut self) {
        let mut stalls = 0;
        while !self.pending.is_empty() && !self.closed {
            let n = self.server.handle_input(self.now, &self.pending);
            self.max_buffered = self.max_buffered.max(self.server.buffered_input());
            self.pending.drain(..n);
            self.drain();
            if n == 0 {
                stalls += 1;
                if stalls > 1 || !self.server.wants_input() {
                    break;
                }
            } else {
                stalls = 0;
            }
        }
    }

    /// Client bytes one octet at a time.
    pub fn send_bytewise(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.send(std::slice::from_ref(b));
        }
    }

    pub fn send_line(&mut self, line: &str) {
        self.send(format!("{line}\r\n").as_bytes());
    }

    /// Everything sent since the last call.
    pub fn take_output(&mut self) -> String {
        String::from_utf8_lossy(&std::mem::take(&mut self.out)).into_owned()
    }

    pub fn take_raw(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Sends a line and returns the reply.
    pub fn cmd(&mut self, line: &str) -> String {
        self.send_line(line);
        self.take_output()
    }

    pub fn eof(&mut self) {
        self.server.handle_eof(self.now);
        self.drain();
    }

    /// Moves the clock and fires the timer if it is due.
    pub fn advance(&mut self, d: Duration) {
        self.now = self.now + d;
        if self.server.poll_timeout().is_some_and(|t| t <= self.now) {
            self.server.handle_timeout(self.now);
        }
        self.drain();
    }

    /// Logs in with USER/PASS and checks the `+OK`.
    pub fn login(&mut self, user: &str, pass: &str) {
        self.take_output();
        let r = self.cmd(&format!("USER {user}"));
        assert!(r.starts_with("+OK"), "USER: {r:?}");
        let r = self.cmd(&format!("PASS {pass}"));
        assert!(r.starts_with("+OK"), "PASS: {r:?}");
    }

    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }
}

/// Runs a `C:`/`S:` trace: consecutive `C:` lines are sent together
/// (pipelined), then everything the server sent is compared with the `S:`
/// lines that follow. Leading spaces before `C:`/`S:` are ignored; text
/// after `C: ` / `S: ` is exact.
pub fn transcript(h: &mut Harness, script: &str) {
    let mut client = String::new();
    let mut expected = String::new();
    for raw in script.lines() {
        let line = raw.trim_start();
        if let Some(c) = line.strip_prefix("C: ") {
            if !expected.is_empty() {
                assert_eq!(h.take_output(), expected, "before C: {c}");
                expected.clear();
            }
            client.push_str(c);
            client.push_str("\r\n");
        } else if let Some(s) = line.strip_prefix("S: ").or((line == "S:").then_some("")) {
            if !client.is_empty() {
                h.send(client.as_bytes());
                client.clear();
            }
            expected.push_str(s);
            expected.push_str("\r\n");
        }
    }
    if !client.is_empty() {
        h.send(client.as_bytes());
    }
    assert_eq!(h.take_output(), expected, "at the end");
}

/// Whether an `-ERR` text contains words clients read as "busy".
pub fn has_busy_words(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    ["lock", "wait", "in use", "delay"]
        .iter()
        .any(|w| t.contains(w))
}

/// A plaintext connection without STLS.
pub fn plain() -> ConnectionContext {
    ConnectionContext::new(RANDOM, false, false)
}

/// A plaintext connection that can offer STLS.
pub fn stls_capable() -> ConnectionContext {
    ConnectionContext::new(RANDOM, false, true)
}

/// An implicit-TLS connection.
pub fn implicit_tls() -> ConnectionContext {
    ConnectionContext::new(RANDOM, true, true)
}
