//! The connection layers' own rules, on a scripted peer and a simulated
//! clock: what every adapter relies on without writing it.
// An operation dropped before it finished is what some tests are about:
// `drop` says so, though `Running` has no destructor of its own.
#![allow(clippy::drop_non_drop)]

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use pop3_proto::client::task::{self, Task};
use pop3_proto::client::{Connection, ConnectionConfig, Error, ProtocolError, TimeoutKind, Want};
use pop3_proto::server::{self, ConnectionContext, Server, ServerConfig, ServerOptions};
use pop3_proto::store::{MemoryStore, StoreDriver};
use pop3_proto::time::Instant;
use pop3_proto::types::MessageNumber;

fn at(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

/// A client connection and a scripted server: what it was sent, and the
/// replies still to give (one per read).
struct Scripted {
    conn: Connection,
    sent: Vec<u8>,
    replies: VecDeque<&'static [u8]>,
}

impl Scripted {
    fn new(replies: &[&'static [u8]], capabilities: bool) -> Scripted {
        let mut config = ConnectionConfig::default();
        config.session.insecure_cleartext_login = true;
        config.read_capabilities = capabilities;
        config.idle_timeout = None;
        Scripted {
            conn: Connection::new(config, at(0), None),
            sent: Vec::new(),
            replies: replies.iter().copied().collect(),
        }
    }

    /// One I/O step; `false` when the script has nothing more to give.
    fn step(&mut self, now: Instant) -> bool {
        match self.conn.want(now) {
            Want::Write(octets) => {
                let n = octets.len();
                self.sent.extend_from_slice(octets);
                self.conn.wrote(now, Ok(n));
            }
            Want::Flush => self.conn.flushed(now, Ok(())),
            Want::Read(buf) => {
                let Some(reply) = self.replies.pop_front() else {
                    return false;
                };
                buf[..reply.len()].copy_from_slice(reply);
                self.conn.received(now, Ok(reply.len()));
            }
            Want::StartTls => self.conn.tls_done(now, Ok(())),
            Want::Compute(work) => self.conn.computed(now, Ok(work.run())),
            Want::Done => return false,
        }
        true
    }

    fn run<T: Task>(&mut self, task: T) -> Result<T::Output, Error> {
        let mut task = self.conn.start(task)?;
        loop {
            if let Some(result) = self.conn.poll_task(at(0), &mut task) {
                return result;
            }
            assert!(self.step(at(0)), "the script ran out");
        }
    }
}

fn msg(n: u32) -> MessageNumber {
    MessageNumber::new(n).unwrap()
}

#[test]
fn an_abandoned_body_is_read_and_discarded_before_the_next_reply() {
    let mut s = Scripted::new(
        &[
            b"+OK hi\r\n",
            b"+OK\r\n",
            b"+OK in\r\n",
            b"+OK\r\nfirst part\r\n",
            b"second part\r\n.\r\n+OK 1 30\r\n",
        ],
        false,
    );
    s.run(task::Connect::new(false)).unwrap();
    s.run(task::Login::new("a", "b")).unwrap();
    let mut body = s.run(task::Retrieve::retr(msg(1))).unwrap();
    let chunk = loop {
        if let Some(chunk) = s.conn.poll_body(at(0), &mut body) {
            break chunk.unwrap().unwrap();
        }
        assert!(s.step(at(0)));
    };
    assert_eq!(&chunk[..], b"first part\r\n");
    drop(body);
    let stat = s.run(task::Stat::new()).unwrap();
    assert_eq!((stat.count, stat.size), (1, 30));
}

#[test]
fn a_body_cut_short_keeps_failing_and_never_reads_as_complete() {
    let mut s = Scripted::new(
        &[b"+OK hi\r\n", b"+OK\r\n", b"+OK in\r\n", b"+OK\r\nhalf a "],
        false,
    );
    s.run(task::Connect::new(false)).unwrap();
    s.run(task::Login::new("a", "b")).unwrap();
    let mut body = s.run(task::Retrieve::retr(msg(1))).unwrap();
    let mut results = Vec::new();
    while results.len() < 3 {
        match s.conn.poll_body(at(0), &mut body) {
            Some(Ok(Some(_))) => {}
            Some(r) => results.push(r),
            None => {
                if !s.step(at(0)) {
                    // The server closes.
                    s.conn.received(at(0), Ok(0));
                }
            }
        }
    }
    for r in results {
        assert!(
            matches!(r, Err(Error::Protocol(ProtocolError::UnexpectedEof))),
            "{r:?}"
        );
    }
    assert!(!body.is_ended());
}

#[test]
fn plaintext_behind_the_stls_ok_is_an_injection_and_ends_the_session() {
    let mut s = Scripted::new(&[b"+OK hi\r\n", b"+OK go\r\n+OK injected\r\n"], false);
    s.run(task::Connect::new(false)).unwrap();
    let err = s.run(task::Stls::new()).unwrap_err();
    assert!(
        matches!(err, Error::Protocol(ProtocolError::StlsInjection { .. })),
        "{err:?}"
    );
    assert!(matches!(s.conn.want(at(0)), Want::Done));
    assert!(!s.conn.machine().is_tls());
}

#[test]
fn the_connect_deadline_counts_until_the_greeting_only() {
    let mut config = ConnectionConfig::default();
    config.session.insecure_cleartext_login = true;
    config.session.reply_timeout = None;
    config.idle_timeout = None;
    let mut conn = Connection::new(config, at(0), Some(at(5_000)));
    let mut connect = conn.start(task::Connect::new(false)).unwrap();
    assert!(conn.poll_task(at(0), &mut connect).is_none());
    assert!(matches!(conn.want(at(0)), Want::Read(_)));
    assert_eq!(conn.poll_timeout(at(0)), Some(at(5_000)));
    conn.handle_timeout(at(4_999));
    assert!(conn.poll_task(at(4_999), &mut connect).is_none());
    conn.handle_timeout(at(5_000));
    let err = conn
        .poll_task(at(5_000), &mut connect)
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(err, Error::Timeout(TimeoutKind::Connect)),
        "{err:?}"
    );
}

#[test]
fn the_idle_timeout_counts_from_the_start_of_the_wait_not_from_the_last_octet() {
    let mut config = ConnectionConfig::default();
    config.session.insecure_cleartext_login = true;
    config.session.reply_timeout = None;
    config.read_capabilities = false;
    config.idle_timeout = Some(Duration::from_secs(10));
    let mut conn = Connection::new(config, at(0), None);
    let mut connect = conn.start(task::Connect::new(false)).unwrap();
    assert!(conn.poll_task(at(0), &mut connect).is_none());
    let Want::Read(buf) = conn.want(at(0)) else {
        panic!("the greeting is read first")
    };
    buf[..8].copy_from_slice(b"+OK hi\r\n");
    conn.received(at(0), Ok(8));
    conn.poll_task(at(0), &mut connect).unwrap().unwrap();
    // The application does other things for a minute, then asks.
    let mut noop = conn
        .start(task::Simple::new(pop3_proto::command::Command::Capa))
        .unwrap();
    assert!(conn.poll_task(at(60_000), &mut noop).is_none());
    assert!(matches!(conn.want(at(60_000)), Want::Write(_)));
    conn.wrote(at(60_000), Ok(6));
    assert!(matches!(conn.want(at(60_000)), Want::Flush));
    conn.flushed(at(60_000), Ok(()));
    assert!(matches!(conn.want(at(60_000)), Want::Read(_)));
    assert_eq!(conn.poll_timeout(at(60_000)), Some(at(70_000)));
    conn.handle_timeout(at(70_000));
    let err = conn.poll_task(at(70_000), &mut noop).unwrap().unwrap_err();
    assert!(matches!(err, Error::Timeout(TimeoutKind::Idle)), "{err:?}");
}

#[test]
fn a_pipelined_batch_goes_out_in_one_write() {
    let mut s = Scripted::new(
        &[
            b"+OK hi\r\n",
            b"+OK\r\nPIPELINING\r\n.\r\n",
            b"+OK\r\n",
            b"+OK in\r\n",
            b"+OK\r\nPIPELINING\r\n.\r\n",
        ],
        true,
    );
    s.run(task::Connect::new(false)).unwrap();
    s.run(task::Login::new("a", "b")).unwrap();
    s.sent.clear();
    let _batch = s.conn.retr_many([msg(1), msg(2), msg(3)]).unwrap();
    let mut task = s.conn.start(task::Stat::new()).unwrap();
    assert!(s.conn.poll_task(at(0), &mut task).is_none());
    let Want::Write(octets) = s.conn.want(at(0)) else {
        panic!("commands to write")
    };
    assert_eq!(octets, b"RETR 1\r\nRETR 2\r\nRETR 3\r\nSTAT\r\n");
}

/// Polls `task` and performs the connection's I/O until it waits for the
/// server with nothing left to write.
fn until_read<T: Task>(s: &mut Scripted, task: &mut pop3_proto::client::Running<T>) {
    loop {
        assert!(
            s.conn.poll_task(at(0), task).is_none(),
            "the task ended early"
        );
        if matches!(s.conn.want(at(0)), Want::Read(_)) {
            return;
        }
        s.step(at(0));
    }
}

#[test]
fn login_sends_pass_only_once_the_server_accepted_the_user() {
    let mut s = Scripted::new(
        &[b"+OK hi\r\n", b"+OK\r\nPIPELINING\r\nUSER\r\n.\r\n"],
        true,
    );
    s.run(task::Connect::new(false)).unwrap();
    s.sent.clear();
    let mut login = s.conn.start(task::Login::new("a", "b")).unwrap();
    until_read(&mut s, &mut login);
    assert_eq!(s.sent, b"USER a\r\n", "PASS waits for USER's reply");
    s.replies.push_back(b"+OK\r\n");
    s.step(at(0));
    until_read(&mut s, &mut login);
    assert_eq!(s.sent, b"USER a\r\nPASS b\r\n");
    s.replies.push_back(b"+OK in\r\n");
    s.replies.push_back(b"+OK\r\nPIPELINING\r\n.\r\n");
    loop {
        if let Some(result) = s.conn.poll_task(at(0), &mut login) {
            result.unwrap();
            break;
        }
        assert!(s.step(at(0)), "the script ran out");
    }
}

#[test]
fn a_refused_user_name_never_gets_the_password() {
    let mut s = Scripted::new(
        &[
            b"+OK hi\r\n",
            b"+OK\r\nPIPELINING\r\nUSER\r\n.\r\n",
            b"-ERR no such user\r\n",
        ],
        true,
    );
    s.run(task::Connect::new(false)).unwrap();
    s.sent.clear();
    let err = s.run(task::Login::new("a", "secret")).unwrap_err();
    assert!(matches!(err, Error::Server(_)), "{err:?}");
    assert_eq!(s.sent, b"USER a\r\n");
}

// ----- operations dropped before they finished -----

/// A logged-in session on a scripted server (no capabilities read).
fn logged_in(replies: &[&'static [u8]]) -> Scripted {
    let mut all: Vec<&'static [u8]> = vec![b"+OK hi\r\n", b"+OK\r\n", b"+OK in\r\n"];
    all.extend_from_slice(replies);
    let mut s = Scripted::new(&all, false);
    s.run(task::Connect::new(false)).unwrap();
    s.run(task::Login::new("a", "b")).unwrap();
    s.sent.clear();
    s
}

#[test]
fn a_query_dropped_midway_is_drained_and_the_next_call_gets_its_own_answer() {
    let mut s = logged_in(&[b"+OK 2 320\r\n", b"+OK 1 120\r\n"]);
    let mut stat = s.conn.start(task::Stat::new()).unwrap();
    until_read(&mut s, &mut stat);
    drop(stat);
    let one = s.run(task::ListOne::new(msg(1))).unwrap();
    assert_eq!(
        (one.msg, one.size),
        (msg(1), 120),
        "STAT's reply is not LIST's"
    );
    assert_eq!(s.sent, b"STAT\r\nLIST 1\r\n");
    assert!(!s.conn.is_done());
}

#[test]
fn a_listing_dropped_halfway_is_drained_and_the_session_stays_usable() {
    let mut s = logged_in(&[b"+OK\r\n1 a\r\n", b"2 b\r\n.\r\n+OK\r\n"]);
    let mut uidl = s.conn.start(task::Uidl::new()).unwrap();
    until_read(&mut s, &mut uidl);
    s.step(at(0));
    assert!(s.conn.poll_task(at(0), &mut uidl).is_none());
    drop(uidl);
    s.run(task::Simple::new(pop3_proto::command::Command::Noop))
        .unwrap();
}

#[test]
fn a_login_dropped_midway_closes_the_session_with_cancelled_not_a_refused_retry() {
    let mut s = Scripted::new(&[b"+OK hi\r\n", b"+OK\r\n"], false);
    s.run(task::Connect::new(false)).unwrap();
    let mut login = s.conn.start(task::Login::new("a", "b")).unwrap();
    until_read(&mut s, &mut login);
    // USER was accepted; PASS is queued when the task is polled next.
    s.step(at(0));
    drop(login);
    let err = s.run(task::Login::new("a", "b")).unwrap_err();
    assert!(matches!(err, Error::Cancelled), "{err:?}");
    assert!(s.conn.is_done(), "the connection is closed");
    assert!(matches!(s.conn.want(at(0)), Want::Done));
    let err = s.run(task::Stat::new()).unwrap_err();
    assert!(matches!(err, Error::Closed), "{err:?}");
}

#[test]
fn a_quit_dropped_before_its_reply_closes_the_session_with_cancelled() {
    let mut s = logged_in(&[b"+OK bye\r\n"]);
    let mut quit = s
        .conn
        .start(task::Simple::new(pop3_proto::command::Command::Quit))
        .unwrap();
    until_read(&mut s, &mut quit);
    drop(quit);
    let err = s.run(task::Stat::new()).unwrap_err();
    assert!(matches!(err, Error::Cancelled), "{err:?}");
}

#[test]
fn a_dele_batch_dropped_midway_closes_the_session_so_nothing_is_committed() {
    let mut s = logged_in(&[b"+OK\r\n"]);
    let mut dele = s.conn.start(task::DeleMany::new([msg(1), msg(2)])).unwrap();
    until_read(&mut s, &mut dele);
    drop(dele);
    let err = s
        .run(task::Simple::new(pop3_proto::command::Command::Quit))
        .unwrap_err();
    assert!(matches!(err, Error::Cancelled), "{err:?}");
    assert!(
        !String::from_utf8_lossy(&s.sent).contains("QUIT"),
        "no QUIT after a cancelled batch: {:?}",
        String::from_utf8_lossy(&s.sent)
    );
}

#[test]
fn a_finished_operation_is_never_taken_for_a_dropped_one() {
    let mut s = logged_in(&[b"+OK bye\r\n"]);
    assert!(!s.conn.is_unfinished());
    s.run(task::Simple::new(pop3_proto::command::Command::Quit))
        .unwrap();
    assert!(!s.conn.is_unfinished());
    let err = s.run(task::Stat::new()).unwrap_err();
    assert!(matches!(err, Error::Closed), "{err:?}");
}

// ----- the server side -----

/// Runs a store future that is ready at once (MemoryStore's are).
fn ready<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => unreachable!("MemoryStore never waits"),
    }
}

fn serve(
    tls: bool,
) -> (
    server::Connection,
    StoreDriver<MemoryStore>,
    Arc<MemoryStore>,
) {
    let store = Arc::new(MemoryStore::new());
    store.add_user("demo", "demo");
    store.add_message("demo", &b"Subject: one\r\n\r\n1\r\n"[..]);
    store.add_message("demo", &b"Subject: two\r\n\r\n2\r\n"[..]);
    let config = Arc::new(ServerConfig::for_store(store.as_ref()).allow_plaintext_auth(true));
    let machine = Server::new(config, at(0), ConnectionContext::new(7, false, tls));
    let mut options = ServerOptions::default();
    options.shutdown_grace = Duration::from_secs(1);
    let conn = server::Connection::new(machine, &options);
    (conn, StoreDriver::new(store.clone()), store)
}

/// What the server side does next, performed against the store, with
/// `input` as what the client sends (all at the first read).
#[derive(Debug, PartialEq)]
enum Did {
    Wrote(Vec<u8>),
    Asked(String),
    StartedTls,
    Waits,
    Closed { graceful: bool },
}

fn next(
    conn: &mut server::Connection,
    driver: &mut StoreDriver<MemoryStore>,
    input: &mut Vec<u8>,
    fail_writes: bool,
) -> Did {
    match conn.want(at(0)) {
        server::Want::Write(octets) => {
            let out = octets.to_vec();
            let result = if fail_writes { Err(()) } else { Ok(out.len()) };
            conn.wrote(at(0), result);
            Did::Wrote(out)
        }
        server::Want::Flush => {
            conn.flushed(at(0), Ok::<(), ()>(()));
            next(conn, driver, input, fail_writes)
        }
        server::Want::Store(request) => {
            let name = format!("{request:?}");
            let reply = ready(driver.execute(request));
            conn.store_done(at(0), reply);
            Did::Asked(name.split([' ', '{']).next().unwrap_or("").to_owned())
        }
        server::Want::StartTls => {
            conn.tls_done(at(0), Ok::<(), ()>(()));
            Did::StartedTls
        }
        server::Want::Read(buf) => {
            if input.is_empty() {
                return Did::Waits;
            }
            let n = input.len().min(buf.len());
            buf[..n].copy_from_slice(&input[..n]);
            input.drain(..n);
            conn.received(at(0), Ok::<usize, ()>(n));
            next(conn, driver, input, fail_writes)
        }
        server::Want::Wait => Did::Waits,
        server::Want::Close { graceful } => Did::Closed { graceful },
    }
}

#[test]
fn replies_are_written_before_the_store_is_asked() {
    let (mut conn, mut driver, _) = serve(false);
    let mut input = b"USER demo\r\nPASS demo\r\nSTAT\r\n".to_vec();
    let mut did = Vec::new();
    loop {
        match next(&mut conn, &mut driver, &mut input, false) {
            Did::Waits => break,
            d => did.push(d),
        }
    }
    let asked = did
        .iter()
        .position(|d| *d == Did::Asked("VerifyPassword".into()));
    let user_ok = did
        .iter()
        .position(|d| matches!(d, Did::Wrote(w) if w.ends_with(b"+OK\r\n") || w.windows(4).any(|x| x == b"+OK ")));
    assert!(
        user_ok.is_some() && asked.is_some() && user_ok < asked,
        "{did:?}"
    );
    assert!(
        matches!(did.last(), Some(Did::Wrote(w)) if w.ends_with(b"+OK 2 38\r\n")),
        "{did:?}"
    );
}

#[test]
fn a_commit_quit_started_completes_even_when_the_write_fails() {
    let (mut conn, mut driver, store) = serve(false);
    let mut input = b"USER demo\r\nPASS demo\r\n".to_vec();
    while next(&mut conn, &mut driver, &mut input, false) != Did::Waits {}
    let mut input = b"DELE 1\r\nQUIT\r\n".to_vec();
    let mut did = Vec::new();
    loop {
        // Every write fails from now on: the client is gone.
        match next(&mut conn, &mut driver, &mut input, true) {
            d @ Did::Closed { .. } => {
                did.push(d);
                break;
            }
            d => did.push(d),
        }
    }
    assert!(did.contains(&Did::Asked("Commit".into())), "{did:?}");
    assert_eq!(did.last(), Some(&Did::Closed { graceful: false }));
    assert_eq!(store.message_count("demo"), 1);
}

#[test]
fn plaintext_behind_stls_is_discarded_never_executed() {
    let (mut conn, mut driver, _) = serve(true);
    let mut input = b"STLS\r\nUSER demo\r\n".to_vec();
    let mut did = Vec::new();
    loop {
        match next(&mut conn, &mut driver, &mut input, false) {
            Did::Waits => break,
            d => did.push(d),
        }
    }
    assert!(did.contains(&Did::StartedTls), "{did:?}");
    // Nothing answered USER: the last write is STLS's +OK.
    let last_write = did.iter().rev().find_map(|d| match d {
        Did::Wrote(w) => Some(w.clone()),
        _ => None,
    });
    assert!(
        last_write.is_some_and(|w| w.starts_with(b"+OK") && !w.starts_with(b"+OK hi")),
        "{did:?}"
    );
    let mut input = b"NOOP\r\n".to_vec();
    // After TLS, in AUTHORIZATION, NOOP is refused: the USER never ran.
    match next(&mut conn, &mut driver, &mut input, false) {
        Did::Wrote(w) => assert!(w.starts_with(b"-ERR"), "{:?}", String::from_utf8_lossy(&w)),
        d => panic!("{d:?}"),
    }
}

#[test]
fn a_session_still_open_after_the_shutdown_grace_is_cut_without_commit() {
    let (mut conn, mut driver, store) = serve(false);
    let mut input = b"USER demo\r\nPASS demo\r\nDELE 1\r\n".to_vec();
    while next(&mut conn, &mut driver, &mut input, false) != Did::Waits {}
    conn.shutdown(at(0));
    assert_eq!(conn.poll_timeout(), Some(at(1_000)));
    conn.handle_timeout(at(1_000));
    // Asked again (the signal seen twice), the grace does not start over.
    assert!(conn.is_shutting_down());
    conn.shutdown(at(1_000));
    let mut did = Vec::new();
    loop {
        match next(&mut conn, &mut driver, &mut Vec::new(), false) {
            d @ Did::Closed { .. } => {
                did.push(d);
                break;
            }
            Did::Waits => panic!("still open: {did:?}"),
            d => did.push(d),
        }
    }
    assert!(!did.contains(&Did::Asked("Commit".into())), "{did:?}");
    assert_eq!(did.last(), Some(&Did::Closed { graceful: false }));
    assert_eq!(store.message_count("demo"), 2);
}

#[test]
fn stls_answered_after_the_peer_half_closed_ends_the_session_at_once() {
    let (mut conn, mut driver, _) = serve(true);
    // STLS pipelined behind a wrong password, then the end of the input:
    // STLS is answered once the failure's delay is over, when no
    // handshake can happen any more.
    let mut input = b"USER demo\r\nPASS wrong\r\nSTLS\r\n".to_vec();
    let mut now = at(0);
    let mut out = Vec::new();
    let mut closed = false;
    for _ in 0..100 {
        match conn.want(now) {
            server::Want::Write(octets) => {
                let n = octets.len();
                out.extend_from_slice(octets);
                conn.wrote(now, Ok::<usize, ()>(n));
            }
            server::Want::Flush => conn.flushed(now, Ok::<(), ()>(())),
            server::Want::Store(request) => {
                let reply = ready(driver.execute(request));
                conn.store_done(now, reply);
            }
            server::Want::StartTls => panic!("a handshake with a peer that closed its side"),
            server::Want::Read(buf) => {
                let n = input.len().min(buf.len());
                buf[..n].copy_from_slice(&input[..n]);
                input.drain(..n);
                conn.received(now, Ok::<usize, ()>(n));
            }
            server::Want::Wait => {
                let t = conn.poll_timeout().expect("a timer");
                assert!(t <= at(5_000), "waiting until {t:?} for nothing");
                now = t;
                conn.handle_timeout(now);
            }
            server::Want::Close { .. } => {
                closed = true;
                break;
            }
        }
    }
    assert!(closed);
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.ends_with("-ERR [AUTH] Authentication failed.\r\n+OK Begin TLS negotiation.\r\n"),
        "{out}"
    );
    assert_eq!(
        conn.machine().summary().close_reason,
        Some(server::CloseReason::PeerClosed)
    );
}
