#![no_main]
//! The server machine against the in-memory store, fed arbitrary client
//! octets at arbitrary split points, with arbitrary clock steps (see
//! `script.rs` for the input format). Oracles:
//!
//! - the same input cut two ways (with the clock steps at the same input
//!   offsets) gives the same output, the same store requests and the same
//!   store afterwards;
//! - the store loses messages only through a commit after a QUIT line in
//!   TRANSACTION, and then exactly those the server confirmed with a
//!   DELE reply and did not bring back with RSET (with `EXPIRE 0`, also
//!   every message sent whole in answer to RETR);
//! - every line written outside a RETR/TOP body ends with CRLF, holds no
//!   other CR or LF, and is at most 512 octets with its CRLF;
//! - on a UTF-8 maildrop, a client that did not send `UTF8` gets no
//!   non-ASCII octet in the header section of a RETR/TOP body (RFC 6856),
//!   the header section ending at the first empty line on the wire (a line
//!   of CRs is not empty);
//! - output is bounded by the number of input lines times the largest
//!   reply; the machine holds at most one line of input and a handful of
//!   queued actions;
//! - every session ends (at the latest by autologout) and leaves every
//!   maildrop unlocked;
//! - the connection layer (`server::Connection`, its reads and writes
//!   always succeeding at once) gives the same session as the bare machine.

mod ready;
mod script;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use pop3_proto::command::Command;
use pop3_proto::line::Limits;
use pop3_proto::response::Expire;
use pop3_proto::server::{
    CloseReason, Connection, ConnectionContext, Server, ServerConfig, ServerOptions, State,
    StoreReply, StoreRequest, Want,
};
use pop3_proto::session::Action;
use pop3_proto::store::{MemoryStore, StoreDriver};
use pop3_proto::time::Instant;

use ready::ready;
use script::{Script, Step};

const USERS: [(&str, &str); 3] = [
    ("alice", "secret"),
    ("mrose", "tanstaaf"),
    ("empty", "nothing"),
];

fn long_line_message() -> Vec<u8> {
    let mut m = b"Subject: long\r\n\r\n".to_vec();
    m.extend(std::iter::repeat_n(b'x', 700));
    m.extend_from_slice(b"\r\n.\r\n");
    m
}

fn messages(user: &str) -> Vec<Vec<u8>> {
    match user {
        "alice" => vec![
            b"Subject: a\r\n\r\nfirst\r\n".to_vec(),
            b"Subject: b\r\n\r\n.dotted\r\n..two\r\n.\r\nend\r\n".to_vec(),
            b"Subject: c\r\n\r\nno final newline".to_vec(),
            b"Subject: d\nbare\nLF\n\n.\n".to_vec(),
            Vec::new(),
            long_line_message(),
            b"Subject: caf\xc3\xa9\r\n\r\nbody\r\n".to_vec(),
            // A header line of CRs, then a non-ASCII header.
            b"Subject: x\r\n\r\r\nX-Caf\xc3\xa9: y\r\n\r\nbody\r\n".to_vec(),
            b"Subject: x\r\n\r\r\r\n\r\n\xc3\xa9\r\n".to_vec(),
        ],
        "mrose" => vec![
            b"From: a\r\n\r\none\r\n".to_vec(),
            b"From: b\r\n\r\ntwo\r\ntwo\r\n".to_vec(),
        ],
        _ => Vec::new(),
    }
}

fn store(chunk: u8) -> MemoryStore {
    let size = match chunk {
        0 => 4096,
        c => usize::from(c),
    };
    let store = MemoryStore::new().with_chunk_size(size);
    for (user, password) in USERS {
        store.add_user(user, password);
        for m in messages(user) {
            store.add_message(user, m);
        }
    }
    store
}

struct Setup {
    config: ServerConfig,
    ctx: ConnectionContext,
    eof: bool,
    line_limit: usize,
}

fn setup(s: &Script) -> Setup {
    let f = s.flags;
    let mut limits = match (f >> 1) & 3 {
        0 | 1 => Limits::lenient(),
        2 => Limits::strict(),
        _ => {
            let mut l = Limits::strict();
            l.command_line = 24;
            l.sasl_line = 40;
            l
        }
    };
    if f & 0x80 != 0 {
        limits.sasl_line = 300;
    }
    // An AUTH line with its initial response may take a SASL line and the
    // command before it.
    let line_limit = limits.command_line.max(limits.sasl_line + 32);
    let delay = [0, 1, 1000, 5000][usize::from((s.more >> 1) & 3)];
    let (before, after) = [(3, 20), (0, 0), (1, 1), (10, 100)][usize::from((s.more >> 3) & 3)];
    let config = ServerConfig::for_store(&MemoryStore::new())
        .allow_plaintext_auth(f & 0x08 == 0)
        .utf8(f & 0x10 != 0)
        .lang(f & 0x10 != 0)
        .pipelining(f & 0x20 == 0)
        .apop(f & 0x40 == 0)
        .expire(if s.more & 0x40 != 0 {
            Some(Expire::Days(0))
        } else {
            Some(Expire::Never)
        })
        .auth_failure_delay(Duration::from_millis(delay))
        .max_bad_commands(before, after)
        .limits(limits);
    let ctx = ConnectionContext::new(0x0123_4567_89ab_cdef, s.more & 0x20 != 0, f & 1 != 0);
    Setup {
        config,
        ctx,
        eof: s.more & 1 == 0,
        line_limit,
    }
}

#[derive(Debug)]
struct Outcome {
    out: Vec<u8>,
    /// Where a RETR/TOP status line starts in `out`, and the message's index.
    bodies: Vec<(usize, usize)>,
    requests: Vec<String>,
    /// (state when asked, deleted indexes, user, offset in `out`).
    commits: Vec<(State, Vec<usize>, Option<String>, usize)>,
    store: Vec<Vec<Vec<u8>>>,
    locked: Vec<bool>,
    close_reason: Option<CloseReason>,
    closed: bool,
    max_queued: usize,
    max_buffered: usize,
}

struct Run<'a> {
    data: &'a [u8],
    server: Server,
    driver: StoreDriver<MemoryStore>,
    store: MemoryStore,
    now: Instant,
    pending: Vec<u8>,
    /// After STLS the rest of the input is never fed (it would have been
    /// sent in plaintext before the handshake, whatever the cuts).
    dropped: bool,
    eof_told: bool,
    o: Outcome,
}

impl Run<'_> {
    fn drain(&mut self) {
        loop {
            self.o.max_queued = self.o.max_queued.max(self.server.queued_actions());
            self.o.max_buffered = self.o.max_buffered.max(self.server.buffered_input());
            let Some(action) = self.server.poll_action() else {
                break;
            };
            match action {
                Action::Send(t) => {
                    assert!(!self.o.closed, "a Send after Close");
                    self.o.out.extend_from_slice(&t.bytes);
                }
                Action::Event(req) => {
                    assert!(!self.o.closed, "a store request after Close");
                    self.o.requests.push(format!("{req:?}"));
                    if let StoreRequest::Commit(update) = &req {
                        self.o.commits.push((
                            self.server.state(),
                            update.deleted.clone(),
                            self.server.user().map(|u| u.as_str().to_owned()),
                            self.o.out.len(),
                        ));
                    }
                    let read = match req {
                        StoreRequest::Read { index } => Some(index),
                        _ => None,
                    };
                    let reply = ready(self.driver.execute(req));
                    if let (Some(index), StoreReply::Reading(Ok(()))) = (read, &reply) {
                        self.o.bodies.push((self.o.out.len(), index));
                    }
                    self.server.handle_store(self.now, reply);
                }
                Action::StartTls => {
                    assert!(!self.o.closed, "StartTls after Close");
                    self.pending.clear();
                    self.dropped = true;
                    self.server.handle_tls_established(self.now);
                }
                Action::Close => {
                    assert!(!self.o.closed, "Close twice");
                    self.o.closed = true;
                }
                _ => {}
            }
        }
    }

    fn pump(&mut self) {
        while !self.o.closed && !self.pending.is_empty() && self.server.wants_input() {
            let n = self.server.handle_input(self.now, &self.pending);
            assert!(n <= self.pending.len());
            self.pending.drain(..n);
            self.drain();
            if n == 0 {
                break;
            }
        }
    }

    fn tick(&mut self, ms: u64) {
        self.now = self.now + Duration::from_millis(ms);
        if let Some(t) = self.server.poll_timeout()
            && self.now >= t
        {
            self.server.handle_timeout(self.now);
            self.drain();
        }
        self.pump();
    }

    /// Lets the next timer fire.
    fn run_clock(&mut self) -> bool {
        match self.server.poll_timeout() {
            Some(t) => {
                self.now = self.now.max(t);
                self.server.handle_timeout(self.now);
                self.drain();
                self.pump();
                true
            }
            None => false,
        }
    }
}

fn run(s: &Script, cuts: &[u16]) -> Outcome {
    let Setup {
        config, ctx, eof, ..
    } = setup(s);
    let store = store(s.chunk);
    let now = Instant::from_millis(1_000_000);
    let server = Server::new(Arc::new(config), now, ctx);
    let mut r = Run {
        data: s.data,
        server,
        driver: StoreDriver::new(Arc::new(store.clone())),
        store,
        now,
        pending: Vec::new(),
        dropped: false,
        eof_told: false,
        o: Outcome {
            out: Vec::new(),
            bodies: Vec::new(),
            requests: Vec::new(),
            commits: Vec::new(),
            store: Vec::new(),
            locked: Vec::new(),
            close_reason: None,
            closed: false,
            max_queued: 0,
            max_buffered: 0,
        },
    };
    r.drain();
    for step in s.steps(cuts) {
        match step {
            Step::Feed(a, b) => {
                if !r.dropped && !r.o.closed {
                    r.pending.extend_from_slice(&r.data[a..b]);
                    r.pump();
                }
            }
            Step::Clock(ms) => r.tick(ms),
        }
    }
    // The end: the client half-closes (once the machine took all it was
    // sent) or goes silent; either way the clock runs until the session
    // is over.
    for _ in 0..s.data.len() + 64 {
        if r.o.closed {
            break;
        }
        if eof && !r.eof_told && (r.pending.is_empty() || r.dropped) {
            r.eof_told = true;
            r.server.handle_eof(r.now);
            r.drain();
            continue;
        }
        if !r.run_clock() {
            break;
        }
    }
    assert!(r.o.closed, "the session did not end");
    assert!(r.server.is_closed());
    drop(r.driver);
    r.o.store = USERS
        .iter()
        .map(|(u, _)| r.store.messages(u).iter().map(|m| m.to_vec()).collect())
        .collect();
    r.o.locked = USERS.iter().map(|(u, _)| r.store.is_locked(u)).collect();
    r.o.close_reason = r.server.summary().close_reason;
    r.o
}

/// The same session through the connection layer: reads of what was
/// offered so far, writes that always succeed.
fn run_connection(s: &Script, cuts: &[u16]) -> Outcome {
    let Setup {
        config, ctx, eof, ..
    } = setup(s);
    let store = store(s.chunk);
    let mut now = Instant::from_millis(1_000_000);
    let server = Server::new(Arc::new(config), now, ctx);
    let mut conn = Connection::new(server, &ServerOptions::default());
    let mut driver = StoreDriver::new(Arc::new(store.clone()));
    let mut o = Outcome {
        out: Vec::new(),
        bodies: Vec::new(),
        requests: Vec::new(),
        commits: Vec::new(),
        store: Vec::new(),
        locked: Vec::new(),
        close_reason: None,
        closed: false,
        max_queued: 0,
        max_buffered: 0,
    };
    let mut pending: Vec<u8> = Vec::new();
    let mut dropped = false;
    // Drives the connection until it waits; `end`: the client has closed
    // its side once everything offered was read.
    let drive = |conn: &mut Connection,
                 driver: &mut StoreDriver<MemoryStore>,
                 o: &mut Outcome,
                 pending: &mut Vec<u8>,
                 dropped: &mut bool,
                 now: Instant,
                 end: bool| {
        for _ in 0..100_000 {
            match conn.want(now) {
                Want::Write(octets) => {
                    let n = octets.len();
                    o.out.extend_from_slice(octets);
                    conn.wrote(now, Ok::<_, ()>(n));
                }
                Want::Flush => conn.flushed(now, Ok::<_, ()>(())),
                Want::Store(req) => {
                    o.requests.push(format!("{req:?}"));
                    if let StoreRequest::Commit(update) = &req {
                        let m = conn.machine();
                        o.commits.push((
                            m.state(),
                            update.deleted.clone(),
                            m.user().map(|u| u.as_str().to_owned()),
                            o.out.len(),
                        ));
                    }
                    let read = match req {
                        StoreRequest::Read { index } => Some(index),
                        _ => None,
                    };
                    let reply = ready(driver.execute(req));
                    if let (Some(index), StoreReply::Reading(Ok(()))) = (read, &reply) {
                        o.bodies.push((o.out.len(), index));
                    }
                    conn.store_done(now, reply);
                }
                Want::StartTls => {
                    pending.clear();
                    *dropped = true;
                    conn.tls_done(now, Ok::<_, ()>(()));
                }
                Want::Read(buf) => {
                    if pending.is_empty() {
                        if end {
                            conn.received(now, Ok::<_, ()>(0));
                            continue;
                        }
                        return;
                    }
                    let n = pending.len().min(buf.len());
                    buf[..n].copy_from_slice(&pending[..n]);
                    pending.drain(..n);
                    conn.received(now, Ok::<_, ()>(n));
                }
                Want::Wait => return,
                Want::Close { .. } => {
                    o.closed = true;
                    return;
                }
            }
        }
        panic!("the connection never waited");
    };
    drive(
        &mut conn,
        &mut driver,
        &mut o,
        &mut pending,
        &mut dropped,
        now,
        false,
    );
    for step in s.steps(cuts) {
        if o.closed {
            break;
        }
        match step {
            Step::Feed(a, b) => {
                if !dropped {
                    pending.extend_from_slice(&s.data[a..b]);
                }
            }
            Step::Clock(ms) => {
                now = now + Duration::from_millis(ms);
                if conn.poll_timeout().is_some_and(|t| now >= t) {
                    conn.handle_timeout(now);
                }
            }
        }
        drive(
            &mut conn,
            &mut driver,
            &mut o,
            &mut pending,
            &mut dropped,
            now,
            false,
        );
    }
    for _ in 0..s.data.len() + 64 {
        if o.closed {
            break;
        }
        drive(
            &mut conn,
            &mut driver,
            &mut o,
            &mut pending,
            &mut dropped,
            now,
            eof,
        );
        if o.closed {
            break;
        }
        let Some(t) = conn.poll_timeout() else {
            break;
        };
        now = now.max(t);
        conn.handle_timeout(now);
    }
    assert!(o.closed, "the connection did not close");
    drop(driver);
    o.store = USERS
        .iter()
        .map(|(u, _)| store.messages(u).iter().map(|m| m.to_vec()).collect())
        .collect();
    o.locked = USERS.iter().map(|(u, _)| store.is_locked(u)).collect();
    o.close_reason = conn.machine().summary().close_reason;
    o
}

/// A RETR or TOP reply in the output.
struct Body {
    at: usize,
    index: usize,
    retr: bool,
    /// Its terminating dot line was sent.
    complete: bool,
    /// Its header section (the lines before the first empty line, or all
    /// of them) is ASCII.
    ascii_header: bool,
}

/// The lines of `out` outside bodies, with their offsets, and the bodies.
fn lines_outside_bodies(o: &Outcome) -> (Vec<(usize, &[u8])>, Vec<Body>) {
    let out = &o.out[..];
    let mut lines = Vec::new();
    let mut pos = 0;
    let mut bodies = o.bodies.iter().copied().peekable();
    let mut found = Vec::new();
    while pos < out.len() {
        let end = match memchr(b'\n', &out[pos..]) {
            Some(i) => pos + i + 1,
            None => out.len(),
        };
        let line = &out[pos..end];
        lines.push((pos, line));
        // A RETR/TOP that the store could open but that was refused
        // (`-ERR [UTF8]`) has no body.
        let mark = bodies.peek().filter(|b| b.0 == pos).copied();
        if mark.is_some() {
            bodies.next();
        }
        if let Some((_, index)) = mark.filter(|_| line.starts_with(b"+OK")) {
            // A status line, then the body up to its terminating dot line.
            let mut body = Body {
                at: pos,
                index,
                retr: line.ends_with(b" octets\r\n"),
                complete: false,
                ascii_header: true,
            };
            let mut in_header = true;
            let mut p = end;
            while p < out.len() {
                let e = match memchr(b'\n', &out[p..]) {
                    Some(i) => p + i + 1,
                    None => out.len(),
                };
                let body_line = &out[p..e];
                p = e;
                if body_line == b".\r\n" {
                    body.complete = true;
                    break;
                }
                in_header &= body_line != b"\r\n";
                body.ascii_header &= !in_header || body_line.is_ascii();
            }
            found.push(body);
            pos = p;
        } else {
            pos = end;
        }
    }
    assert!(bodies.next().is_none(), "a body mark inside another body");
    (lines, found)
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

fn check(s: &Script, o: &Outcome) {
    let line_limit = setup(s).line_limit;
    let (lines, bodies) = lines_outside_bodies(o);
    for &(at, line) in &lines {
        assert!(
            line.ends_with(b"\r\n"),
            "a line without CRLF at {at}: {line:?}"
        );
        let inner = &line[..line.len() - 2];
        assert!(
            !inner.iter().any(|&b| b == b'\r' || b == b'\n'),
            "a stray line end at {at}: {line:?}"
        );
        assert!(line.len() <= 512, "a line of {} octets at {at}", line.len());
    }

    // RFC 6856: no non-ASCII header before the client enabled UTF-8 mode,
    // on a maildrop the server declares UTF-8.
    if s.flags & 0x10 != 0 {
        let enabled = lines
            .iter()
            .find(|(_, l)| *l == b"+OK UTF8 enabled.\r\n")
            .map(|&(at, _)| at);
        for b in &bodies {
            if enabled.is_none_or(|at| b.at < at) {
                assert!(
                    b.ascii_header,
                    "a non-ASCII header without UTF8 at {}: {:?}",
                    b.at,
                    String::from_utf8_lossy(&o.out[b.at..])
                );
            }
        }
    }

    // The maildrop, as the server's own replies describe it. With EXPIRE 0
    // a message retrieved whole with RETR goes at QUIT too, RSET or not.
    let mut deleted: BTreeSet<usize> = BTreeSet::new();
    let expire_now = s.more & 0x40 != 0;
    let retrieved: BTreeSet<usize> = bodies
        .iter()
        .filter(|b| expire_now && b.retr && b.complete)
        .filter(|b| o.commits.first().is_none_or(|c| b.at < c.3))
        .map(|b| b.index)
        .collect();
    let mut li = lines.iter().peekable();
    assert!(o.commits.len() <= 1, "more than one commit");
    let commit_at = o.commits.first().map(|c| c.3);
    while let Some(&&(at, line)) = li.peek() {
        if commit_at.is_some_and(|c| at >= c) {
            break;
        }
        li.next();
        if line.starts_with(b"+OK Logged in;") {
            deleted.clear();
        } else if let Some(rest) = line.strip_prefix(b"+OK Message ") {
            let n = rest.strip_suffix(b" deleted.\r\n").expect("a DELE reply");
            let n: usize = std::str::from_utf8(n).unwrap().parse().unwrap();
            assert!(deleted.insert(n - 1), "message {n} deleted twice");
        } else if line.starts_with(b"+OK Maildrop has ") {
            deleted.clear();
        }
    }
    let original: Vec<Vec<Vec<u8>>> = USERS.iter().map(|(u, _)| messages(u)).collect();
    match o.commits.first() {
        None => assert_eq!(o.store, original, "messages removed without a commit"),
        Some((state, indexes, user, _)) => {
            assert_eq!(*state, State::Update, "a commit outside UPDATE");
            let quit_line = s.data.split(|&b| b == b'\n').any(|l| {
                let l = l.strip_suffix(b"\r").unwrap_or(l);
                Command::parse(l) == Ok(Command::Quit)
            });
            assert!(quit_line, "a commit without a QUIT line in the input");
            let got: BTreeSet<usize> = indexes.iter().copied().collect();
            let deleted: BTreeSet<usize> = deleted.union(&retrieved).copied().collect();
            assert_eq!(got, deleted, "the commit is not what DELE/RSET/RETR said");
            let user = user.as_deref().expect("a commit without a user");
            for (i, (u, _)) in USERS.iter().enumerate() {
                let expected: Vec<Vec<u8>> = if *u == user {
                    original[i]
                        .iter()
                        .enumerate()
                        .filter(|(k, _)| !deleted.contains(k))
                        .map(|(_, m)| m.clone())
                        .collect()
                } else {
                    original[i].clone()
                };
                assert_eq!(o.store[i], expected, "the store after the commit of {user}");
            }
            let after = &o.out[o.commits[0].3..];
            assert!(
                after.starts_with(b"+OK Logging out.\r\n"),
                "no +OK after the commit"
            );
        }
    }
    assert!(o.locked.iter().all(|l| !l), "a maildrop left locked");

    // Bounds.
    let input_lines = s.data.iter().filter(|&&b| b == b'\n').count() + 1;
    let largest = long_line_message().len();
    let per_line = 2 * largest + 2048;
    assert!(
        o.out.len() <= 1024 + input_lines * per_line,
        "{} octets out for {} lines in",
        o.out.len(),
        input_lines
    );
    assert!(
        o.max_buffered <= line_limit,
        "{} octets buffered",
        o.max_buffered
    );
    assert!(o.max_queued <= 16, "{} actions queued", o.max_queued);
}

/// The two runs agree on everything observable (the high-water marks
/// of the machine's buffers may differ: they are checked on their own).
fn same(a: &Outcome, b: &Outcome, what: &str) {
    assert_eq!(
        String::from_utf8_lossy(&a.out),
        String::from_utf8_lossy(&b.out),
        "{what} changed the output"
    );
    assert_eq!(a.requests, b.requests, "{what} changed the store requests");
    assert_eq!(a.bodies, b.bodies);
    assert_eq!(a.commits, b.commits);
    assert_eq!(a.store, b.store, "{what} changed the store");
    assert_eq!(a.close_reason, b.close_reason);
}

fuzz_target!(|input: &[u8]| {
    let s = Script::parse(input);
    if s.data.len() > 16 * 1024 {
        return;
    }
    let whole = run(&s, &[]);
    if std::env::var_os("POP3_FUZZ_SHOW").is_some() {
        eprintln!("{}", String::from_utf8_lossy(&whole.out));
        eprintln!("commits {:?} close {:?}", whole.commits, whole.close_reason);
    }
    check(&s, &whole);
    let cut = run(&s, &s.cuts);
    check(&s, &cut);
    same(&cut, &whole, "the cuts");
    let conn = run_connection(&s, &s.cuts);
    check(&s, &conn);
    same(&conn, &whole, "the connection layer");
});
