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
use pop3_proto::client::{
    ClientState, Connection, ConnectionConfig, Error, ProtocolError, TimeoutKind, Want,
};
use pop3_proto::response::{Capability, CodeKind};
use pop3_proto::server::{
    self, CloseReason, ConnectionContext, Server, ServerConfig, ServerOptions,
};
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
            assert!(
                self.step(at(0)),
                "the script ran out; sent {:?}",
                String::from_utf8_lossy(&self.sent)
            );
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
    assert_eq!(s.sent, b"USER a\r\nPASS b\r\nCAPA\r\n");
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
fn pass_and_the_capa_after_login_go_out_in_one_write_before_any_reply() {
    let mut s = Scripted::new(
        &[
            b"+OK hi\r\n",
            b"+OK\r\nPIPELINING\r\nUSER\r\n.\r\n",
            b"+OK\r\n",
        ],
        true,
    );
    s.run(task::Connect::new(false)).unwrap();
    let mut login = s.conn.start(task::Login::new("a", "b")).unwrap();
    until_read(&mut s, &mut login);
    // USER's reply read: the next write holds PASS and CAPA together,
    // before either is answered.
    s.step(at(0));
    assert!(s.conn.poll_task(at(0), &mut login).is_none());
    let Want::Write(octets) = s.conn.want(at(0)) else {
        panic!("PASS to write")
    };
    assert_eq!(octets, b"PASS b\r\nCAPA\r\n");
    while !matches!(s.conn.want(at(0)), Want::Read(_)) {
        s.step(at(0));
    }
    s.sent.clear();
    // Both replies in one read: logged in, with the capabilities after
    // the login (no PIPELINING now), and no second CAPA.
    s.replies
        .push_back(b"+OK in\r\n+OK\r\nTOP\r\nUIDL\r\n.\r\n");
    loop {
        if let Some(result) = s.conn.poll_task(at(0), &mut login) {
            result.unwrap();
            break;
        }
        assert!(s.step(at(0)), "the script ran out");
    }
    assert_eq!(s.sent, b"");
    let machine = s.conn.machine();
    assert_eq!(machine.state(), ClientState::Transaction);
    assert!(!machine.pipelining_active());
    assert_eq!(
        machine.capabilities(),
        Some(&[Capability::Top, Capability::Uidl][..])
    );
}

#[test]
fn a_refused_password_with_the_pipelined_capa_fails_the_login_and_stays_in_authorization() {
    let mut s = Scripted::new(
        &[
            b"+OK hi\r\n",
            b"+OK\r\nPIPELINING\r\nUSER\r\n.\r\n",
            b"+OK\r\n",
            // PASS refused; the CAPA written behind it is answered in
            // AUTHORIZATION.
            b"-ERR [AUTH] wrong\r\n+OK\r\nPIPELINING\r\nUSER\r\nSASL PLAIN\r\n.\r\n",
        ],
        true,
    );
    s.run(task::Connect::new(false)).unwrap();
    s.sent.clear();
    let err = s.run(task::Login::new("a", "b")).unwrap_err();
    let Error::Server(e) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(e.kind(), Some(CodeKind::Auth));
    assert_eq!(s.sent, b"USER a\r\nPASS b\r\nCAPA\r\n");
    // The CAPA's reply is read, matched to the CAPA, not to anything else.
    while s.step(at(0)) {}
    let machine = s.conn.machine();
    assert_eq!(machine.state(), ClientState::Authorization);
    assert!(!machine.capa_pending());
    assert!(
        machine
            .capabilities()
            .is_some_and(|c| c.contains(&Capability::User) && c.len() == 3),
        "{:?}",
        machine.capabilities()
    );
    // The session can try again: USER is accepted in this state.
    s.sent.clear();
    s.replies.push_back(b"+OK\r\n");
    s.replies.push_back(b"+OK in\r\n+OK\r\nUIDL\r\n.\r\n");
    s.run(task::Login::new("a", "c")).unwrap();
    assert_eq!(s.sent, b"USER a\r\nPASS c\r\nCAPA\r\n");
    assert_eq!(s.conn.machine().state(), ClientState::Transaction);
}

#[test]
fn without_pipelining_the_capa_after_login_waits_for_the_pass_reply() {
    let mut s = Scripted::new(
        &[
            b"+OK hi\r\n",
            b"+OK\r\nUSER\r\n.\r\n",
            b"+OK\r\n",
            b"+OK in\r\n",
            b"+OK\r\nUIDL\r\n.\r\n",
        ],
        true,
    );
    s.run(task::Connect::new(false)).unwrap();
    s.sent.clear();
    let mut login = s.conn.start(task::Login::new("a", "b")).unwrap();
    until_read(&mut s, &mut login);
    s.step(at(0));
    until_read(&mut s, &mut login);
    assert_eq!(s.sent, b"USER a\r\nPASS b\r\n");
    s.step(at(0));
    until_read(&mut s, &mut login);
    assert_eq!(s.sent, b"USER a\r\nPASS b\r\nCAPA\r\n");
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
            Did::Asked(name.split([' ', '{', '(']).next().unwrap_or("").to_owned())
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
fn a_session_not_logged_in_is_told_of_the_shutdown_and_closed() {
    let (mut conn, mut driver, _) = serve(false);
    while next(&mut conn, &mut driver, &mut Vec::new(), false) != Did::Waits {}
    conn.shutdown(at(0));
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
    assert_eq!(
        did[0],
        Did::Wrote(b"-ERR [SYS/TEMP] Server shutting down.\r\n".to_vec())
    );
    assert_eq!(did.last(), Some(&Did::Closed { graceful: true }));
    assert_eq!(
        conn.machine().summary().close_reason,
        Some(CloseReason::Shutdown)
    );
}

#[test]
fn a_logged_in_session_quitting_within_the_shutdown_grace_commits() {
    let (mut conn, mut driver, store) = serve(false);
    let mut input = b"USER demo\r\nPASS demo\r\nDELE 1\r\n".to_vec();
    while next(&mut conn, &mut driver, &mut input, false) != Did::Waits {}
    conn.shutdown(at(0));
    let mut input = b"QUIT\r\n".to_vec();
    let mut did = Vec::new();
    loop {
        match next(&mut conn, &mut driver, &mut input, false) {
            d @ Did::Closed { .. } => {
                did.push(d);
                break;
            }
            Did::Waits => panic!("still open: {did:?}"),
            d => did.push(d),
        }
    }
    assert!(did.contains(&Did::Asked("Commit".into())), "{did:?}");
    assert_eq!(store.message_count("demo"), 1);
    assert_eq!(
        conn.machine().summary().close_reason,
        Some(CloseReason::Quit)
    );
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

/// How a session with a client that reads slowly ended.
struct SlowEnd {
    /// When the connection was closed.
    at: Instant,
    graceful: bool,
    /// What the client read.
    read: Vec<u8>,
    conn: server::Connection,
}

/// A session whose client sends `fast` and reads every reply at once, then
/// sends `slow` (all at the first read) and from then on reads `per_read`
/// octets every `pause`: the writes make progress well within the write
/// stall timeout, never fast enough to finish. `None` if the connection is
/// still open after two simulated hours.
fn slow_reader(
    config: ServerConfig,
    fast: &[u8],
    slow: &[u8],
    per_read: usize,
    pause: Duration,
) -> (Option<SlowEnd>, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::new());
    store.add_user("demo", "demo");
    store.add_message("demo", &b"Subject: one\r\n\r\n1\r\n"[..]);
    let config = Arc::new(config);
    let machine = Server::new(config, at(0), ConnectionContext::new(7, false, false));
    let mut conn = server::Connection::new(machine, &ServerOptions::default());
    let mut driver = StoreDriver::new(store.clone());
    let mut input = fast.to_vec();
    let mut slow = Some(slow.to_vec());
    let mut read = Vec::new();
    let mut now = at(0);
    let give_up = at(2 * 3600 * 1000);
    while now < give_up {
        let reading_slowly = slow.is_none();
        match conn.want(now) {
            server::Want::Write(octets) => {
                if !reading_slowly {
                    read.extend_from_slice(octets);
                    let n = octets.len();
                    conn.wrote(now, Ok::<usize, ()>(n));
                    continue;
                }
                // The peer's window opens again after `pause`, unless a
                // deadline comes first.
                let n = octets.len().min(per_read);
                let taken = octets[..n].to_vec();
                let progress = now + pause;
                match conn.poll_timeout() {
                    Some(t) if t <= progress => {
                        now = t;
                        conn.handle_timeout(now);
                    }
                    _ => {
                        now = progress;
                        read.extend_from_slice(&taken);
                        conn.wrote(now, Ok::<usize, ()>(n));
                    }
                }
            }
            server::Want::Flush => conn.flushed(now, Ok::<(), ()>(())),
            server::Want::Store(request) => {
                let reply = ready(driver.execute(request));
                conn.store_done(now, reply);
            }
            server::Want::StartTls => panic!("no STLS here"),
            server::Want::Read(buf) => {
                if input.is_empty() {
                    if let Some(more) = slow.take() {
                        input = more;
                    }
                }
                if input.is_empty() {
                    let t = conn.poll_timeout().expect("a timer");
                    now = now.max(t);
                    conn.handle_timeout(now);
                    continue;
                }
                let n = input.len().min(buf.len());
                buf[..n].copy_from_slice(&input[..n]);
                input.drain(..n);
                conn.received(now, Ok::<usize, ()>(n));
            }
            server::Want::Wait => {
                let t = conn.poll_timeout().expect("a timer");
                now = now.max(t);
                conn.handle_timeout(now);
            }
            server::Want::Close { graceful } => {
                let end = SlowEnd {
                    at: now,
                    graceful,
                    read,
                    conn,
                };
                return (Some(end), store);
            }
        }
    }
    (None, store)
}

#[test]
fn a_slow_reader_of_pipelined_replies_is_cut_at_the_login_deadline() {
    // A hundred CAPA and a login behind them, the replies read 64 octets
    // every 10 s: the login waits behind the replies, and neither it nor
    // the slow progress of the writes stretches the time to log in.
    let config = ServerConfig::default()
        .allow_plaintext_auth(true)
        .login_idle_timeout(Duration::from_secs(3600));
    let mut pipeline = b"CAPA\r\n".repeat(100);
    pipeline.extend_from_slice(b"USER demo\r\nPASS demo\r\n");
    let (end, _) = slow_reader(config, b"", &pipeline, 64, Duration::from_secs(10));
    let end = end.expect("still open after two hours");
    assert_eq!(end.at, at(180_000), "closed at the login deadline");
    assert!(!end.graceful, "cut, not closed politely");
    let machine = end.conn.machine();
    assert_ne!(machine.state(), server::State::Transaction);
    assert_eq!(
        machine.summary().close_reason,
        Some(server::CloseReason::LoginTimeout)
    );
    assert!(end.read.len() < 18 * 64, "{} octets read", end.read.len());
}

#[test]
fn a_slow_reader_of_pipelined_replies_is_cut_at_the_silence_before_login() {
    // A few thousand CAPA: the machine takes no more input while the
    // replies back up, so the client has been silent since.
    let config = ServerConfig::default().allow_plaintext_auth(true);
    let pipeline = b"CAPA\r\n".repeat(3000);
    let (end, _) = slow_reader(config, b"", &pipeline, 64, Duration::from_secs(10));
    let end = end.expect("still open after two hours");
    assert!(end.at <= at(70_000), "closed at {:?}", end.at);
    assert!(!end.graceful);
    assert_eq!(
        end.conn.machine().summary().close_reason,
        Some(server::CloseReason::LoginTimeout)
    );
}

#[test]
fn a_slow_reader_of_pipelined_replies_is_cut_at_the_autologout_without_update() {
    let config = ServerConfig::default().allow_plaintext_auth(true);
    let mut pipeline = b"DELE 1\r\n".to_vec();
    pipeline.extend_from_slice(&b"LIST\r\nUIDL\r\n".repeat(3000));
    pipeline.extend_from_slice(b"QUIT\r\n");
    let (end, store) = slow_reader(
        config,
        b"USER demo\r\nPASS demo\r\n",
        &pipeline,
        64,
        Duration::from_secs(10),
    );
    let end = end.expect("still open after two hours");
    // Logged in at once; the pipeline was taken then, and the client was
    // silent from then on.
    assert!(end.at <= at(610_000), "closed at {:?}", end.at);
    assert!(end.at >= at(600_000), "closed at {:?}", end.at);
    assert!(!end.graceful);
    assert_eq!(
        end.conn.machine().summary().close_reason,
        Some(server::CloseReason::Autologout)
    );
    assert_eq!(store.message_count("demo"), 1, "no UPDATE");
    assert!(!store.is_locked("demo"));
}

// ----- the automatic login's fallback -----

/// The commands the client sent, one per line.
fn sent_lines(s: &Scripted) -> Vec<String> {
    String::from_utf8_lossy(&s.sent)
        .lines()
        .map(str::to_string)
        .collect()
}

/// The AUTH (and APOP, USER) commands the client sent, with their names only.
fn logins(s: &Scripted) -> Vec<String> {
    sent_lines(s)
        .iter()
        .filter_map(|l| {
            let mut words = l.split(' ');
            match words.next()? {
                "AUTH" => Some(format!("AUTH {}", words.next()?)),
                w @ ("APOP" | "USER") => Some(w.to_string()),
                _ => None,
            }
        })
        .collect()
}

fn connected(capa: &'static [u8]) -> Scripted {
    let mut s = Scripted::new(&[b"+OK hi <1.2@host>\r\n", capa], true);
    s.run(task::Connect::new(false)).unwrap();
    s.sent.clear();
    s
}

#[test]
fn auto_login_falls_back_to_the_next_mechanism_when_the_server_refuses_one() {
    // CRAM-MD5 is offered but the server cannot carry it out and says so
    // without a code: the login goes on with the next way offered.
    let mut s = connected(b"+OK\r\nUSER\r\nSASL CRAM-MD5 PLAIN\r\n.\r\n");
    s.replies.extend([
        &b"-ERR Mechanism not available.\r\n"[..],
        b"-ERR Authentication failed.\r\n",
        b"+OK Logged in.\r\n",
        b"+OK\r\nUSER\r\n.\r\n",
    ]);
    s.run(task::AutoLogin::new("alice", "secret", "nonce"))
        .unwrap();
    assert_eq!(logins(&s), ["AUTH CRAM-MD5", "APOP", "AUTH PLAIN"]);
}

#[test]
fn auto_login_after_an_auth_refusal_of_a_challenge_tries_only_a_way_handing_over_the_password() {
    // CRAM-MD5 refused with [AUTH]: the store may hold only a hash (Courier
    // without the secret, Dovecot with hashed passwords answer so). APOP
    // would fail the same way: skipped; PLAIN lets the server check the
    // password itself.
    let mut s = connected(b"+OK\r\nUSER\r\nSASL CRAM-MD5 PLAIN\r\n.\r\n");
    s.replies.extend([
        &b"+ PDEyMzQ1QGhvc3Q+\r\n"[..],
        b"-ERR [AUTH] Authentication failed.\r\n",
        b"+OK Logged in.\r\n",
        b"+OK\r\nUSER\r\n.\r\n",
    ]);
    s.run(task::AutoLogin::new("alice", "secret", "nonce"))
        .unwrap();
    assert_eq!(logins(&s), ["AUTH CRAM-MD5", "AUTH PLAIN"]);
}

#[test]
fn auto_login_stops_at_an_auth_refusal_of_a_way_handing_over_the_password() {
    // The server checked the password itself and said it is wrong
    // (RFC 3206 [AUTH]): no other way can do better, and each try counts
    // as a failure on the server (penalty delays, lockouts).
    for (capa, first) in [
        (
            &b"+OK\r\nUSER\r\nSASL PLAIN LOGIN\r\n.\r\n"[..],
            "AUTH PLAIN",
        ),
        (b"+OK\r\nUSER\r\nSASL LOGIN\r\n.\r\n", "AUTH LOGIN"),
    ] {
        let mut s = Scripted::new(&[b"+OK hi\r\n", capa], true);
        s.run(task::Connect::new(false)).unwrap();
        s.sent.clear();
        if first == "AUTH LOGIN" {
            s.replies
                .extend([&b"+ VXNlcm5hbWU6\r\n"[..], b"+ UGFzc3dvcmQ6\r\n"]);
        }
        s.replies
            .push_back(b"-ERR [AUTH] Authentication failed.\r\n");
        let err = s
            .run(task::AutoLogin::new("alice", "wrong", "nonce"))
            .unwrap_err();
        assert!(matches!(err, Error::Server(_)), "{err:?}");
        assert_eq!(logins(&s), [first], "{first}");
    }
}

#[test]
fn auto_login_tries_each_way_once_and_three_at_most() {
    // Mechanisms the server cannot carry out (a plain -ERR each time):
    // three attempts, each a different way (SCRAM-SHA-1 checks what
    // SCRAM-SHA-256 did: skipped), then the last refusal is the result.
    let mut s =
        connected(b"+OK\r\nUSER\r\nSASL SCRAM-SHA-256 SCRAM-SHA-1 CRAM-MD5 PLAIN LOGIN\r\n.\r\n");
    for _ in 0..3 {
        s.replies.push_back(b"-ERR Not available.\r\n");
    }
    let err = s
        .run(task::AutoLogin::new("alice", "wrong", "nonce"))
        .unwrap_err();
    assert!(matches!(err, Error::Server(_)), "{err:?}");
    assert_eq!(logins(&s), ["AUTH SCRAM-SHA-256", "AUTH CRAM-MD5", "APOP"]);
    assert_eq!(pop3_proto::client::task::MAX_LOGIN_ATTEMPTS, 3);
}

#[test]
fn auto_login_with_a_wrong_password_costs_two_failures_at_most() {
    // Every way answered [AUTH]: the first choice, then one way handing
    // over the password, and the refusal is the result.
    let mut s =
        connected(b"+OK\r\nUSER\r\nSASL SCRAM-SHA-256 SCRAM-SHA-1 CRAM-MD5 PLAIN LOGIN\r\n.\r\n");
    for _ in 0..3 {
        s.replies
            .push_back(b"-ERR [AUTH] Authentication failed.\r\n");
    }
    let err = s
        .run(task::AutoLogin::new("alice", "wrong", "nonce"))
        .unwrap_err();
    assert!(matches!(err, Error::Server(_)), "{err:?}");
    assert_eq!(logins(&s), ["AUTH SCRAM-SHA-256", "AUTH PLAIN"]);
}

#[test]
fn auto_login_stops_at_a_transient_refusal() {
    for code in ["IN-USE", "LOGIN-DELAY", "SYS/TEMP"] {
        let mut s = connected(b"+OK\r\nUSER\r\nSASL SCRAM-SHA-256 CRAM-MD5\r\n.\r\n");
        let line: &'static [u8] = Box::leak(
            format!("-ERR [{code}] try later\r\n")
                .into_bytes()
                .into_boxed_slice(),
        );
        s.replies.push_back(line);
        let err = s
            .run(task::AutoLogin::new("alice", "secret", "nonce"))
            .unwrap_err();
        assert!(err.is_transient(), "{code}: {err:?}");
        assert_eq!(logins(&s), ["AUTH SCRAM-SHA-256"], "{code}");
    }
}

#[test]
fn auto_login_never_falls_back_to_clear_text_without_tls() {
    let mut s = connected(b"+OK\r\nUSER\r\nSASL CRAM-MD5 PLAIN LOGIN\r\n.\r\n");
    s.replies.extend([
        &b"+ PDEyMzQ1QGhvc3Q+\r\n"[..],
        b"-ERR [AUTH] Authentication failed.\r\n",
    ]);
    let err = s
        .run(task::AutoLogin::new("alice", "secret", "nonce").allow_cleartext(false))
        .unwrap_err();
    assert!(matches!(err, Error::Server(_)), "{err:?}");
    // [AUTH] after CRAM-MD5: only a clear-text way could follow, and none
    // is allowed; one failure on the server's count.
    assert_eq!(logins(&s), ["AUTH CRAM-MD5"]);
    let mut s = connected(b"+OK\r\nUSER\r\nSASL CRAM-MD5 PLAIN LOGIN\r\n.\r\n");
    s.replies
        .extend([&b"-ERR Not available.\r\n"[..], b"-ERR Not available.\r\n"]);
    let err = s
        .run(task::AutoLogin::new("alice", "secret", "nonce").allow_cleartext(false))
        .unwrap_err();
    assert!(matches!(err, Error::Server(_)), "{err:?}");
    assert_eq!(logins(&s), ["AUTH CRAM-MD5", "APOP"]);
}

#[test]
fn auto_login_stops_when_the_server_closes() {
    // The server refuses and closes: the next attempt meets the end of the
    // stream, and nothing more is tried.
    let mut s = connected(b"+OK\r\nUSER\r\nSASL SCRAM-SHA-256 CRAM-MD5\r\n.\r\n");
    s.replies.push_back(b"-ERR Too many bad commands.\r\n");
    s.replies.push_back(b"");
    let err = s
        .run(task::AutoLogin::new("alice", "secret", "nonce"))
        .unwrap_err();
    assert!(!err.keeps_session(), "{err:?}");
    assert_eq!(logins(&s), ["AUTH SCRAM-SHA-256", "AUTH CRAM-MD5"]);
}

#[test]
fn after_scram_plus_fails_the_unbound_scram_says_n_not_y() {
    // A server that advertises -PLUS but computes the binding wrongly: the
    // fallback to SCRAM-SHA-256 must not claim `y` (the server advertised
    // -PLUS and would refuse it as a downgrade).
    use base64::Engine as _;
    let mut s = connected(b"+OK\r\nSASL SCRAM-SHA-256 SCRAM-SHA-256-PLUS\r\n.\r\n");
    s.conn.set_tls_exporter(Some([7; 32]));
    s.replies.extend([
        &b"-ERR [AUTH] Authentication failed.\r\n"[..],
        b"-ERR [AUTH] Authentication failed.\r\n",
        b"-ERR [AUTH] Authentication failed.\r\n",
    ]);
    let err = s
        .run(task::AutoLogin::new("alice", "secret", "nonce"))
        .unwrap_err();
    assert!(matches!(err, Error::Server(_)), "{err:?}");
    // Unbound SCRAM after -PLUS ([AUTH] may be the binding's fault), then
    // only a way handing over the password ([AUTH] to SCRAM may be a store
    // that cannot serve it), which the server checks for itself: its
    // [AUTH] ends the login.
    assert_eq!(
        logins(&s),
        ["AUTH SCRAM-SHA-256-PLUS", "AUTH SCRAM-SHA-256", "USER"]
    );
    let gs2 = |line: &str| {
        let b64 = line.split(' ').nth(2).expect("an initial response");
        let first = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        String::from_utf8(first).unwrap()
    };
    let lines = sent_lines(&s);
    assert!(gs2(&lines[0]).starts_with("p=tls-exporter,"), "{lines:?}");
    assert!(gs2(&lines[1]).starts_with("n,"), "{lines:?}");
}

#[test]
fn a_malformed_reply_to_the_capa_after_the_greeting_is_told_to_the_next_operation_once() {
    // The CAPA the machine queues after the greeting has no operation
    // waiting for it: the login started next learns why the session ended
    // (a protocol violation, not a closed session), later ones that it is
    // closed.
    let mut s = Scripted::new(&[b"+OK hi\r\n", b"HELLO THERE\r\n"], true);
    let err = match s.run(task::Connect::new(false)) {
        Err(e) => e,
        Ok(_) => s.run(task::Login::new("a", "b")).unwrap_err(),
    };
    assert!(
        matches!(err, Error::Protocol(ProtocolError::BadResponse { .. })),
        "{err:?}"
    );
    let again = s.run(task::Login::new("a", "b")).unwrap_err();
    assert!(matches!(again, Error::Closed), "{again:?}");
    assert!(
        !String::from_utf8_lossy(&s.sent).contains("USER"),
        "{:?}",
        s.sent
    );
}

#[test]
fn a_listing_over_the_limit_is_told_once_and_the_next_operation_gets_closed() {
    let mut s = Scripted::new(
        &[
            b"+OK hi\r\n",
            b"+OK\r\n",
            b"+OK\r\n",
            b"+OK\r\n1 a\r\n2 b\r\n3 c\r\n4 d\r\n.\r\n",
        ],
        false,
    );
    let mut config = ConnectionConfig::default();
    config.session.insecure_cleartext_login = true;
    config.read_capabilities = false;
    config.idle_timeout = None;
    config.max_listing_entries = 2;
    s.conn = Connection::new(config, at(0), None);
    s.run(task::Connect::new(false)).unwrap();
    s.run(task::Login::new("a", "b")).unwrap();
    let err = s.run(task::Uidl::new()).unwrap_err();
    assert!(matches!(err, Error::ListingTooLong { limit: 2 }), "{err:?}");
    let again = s.run(task::Uidl::new()).unwrap_err();
    assert!(matches!(again, Error::Closed), "{again:?}");
}

#[test]
fn a_wake_time_is_the_nearest_deadline_and_passes_without_failing_the_session() {
    let mut s = Scripted::new(&[b"+OK hi\r\n"], false);
    s.run(task::Connect::new(false)).unwrap();
    // Nothing in flight: no deadline but the one asked for.
    assert_eq!(s.conn.poll_timeout(at(0)), None);
    s.conn.wake_at(Some(at(50)));
    assert_eq!(s.conn.poll_timeout(at(0)), Some(at(50)));
    s.conn.handle_timeout(at(50));
    assert_eq!(s.conn.poll_timeout(at(50)), None, "forgotten once passed");
    assert!(!s.conn.is_done(), "the session goes on");
}

#[test]
fn local_work_restarts_the_reply_timer_of_the_commands_in_flight() {
    let mut s = Scripted::new(&[b"+OK hi\r\n"], false);
    s.run(task::Connect::new(false)).unwrap();
    let mut capa = s.conn.start(task::Capa::new()).unwrap();
    assert!(s.conn.poll_task(at(0), &mut capa).is_none());
    assert!(s.step(at(0)), "CAPA written");
    let first = s.conn.poll_timeout(at(0)).expect("a reply timer");
    s.conn.local_work_done(at(100_000));
    let after = s.conn.poll_timeout(at(100_000)).expect("a reply timer");
    assert_eq!(after.as_millis() - first.as_millis(), 100_000);
}

#[test]
fn a_stray_line_behind_a_completed_reply_is_told_to_the_next_operation() {
    // The session ends behind the reply that completed the login (a line
    // nothing asked for, in the same read): the login succeeded, the next
    // operation learns the protocol violation, the one after that the
    // session is closed.
    let mut s = Scripted::new(&[b"+OK hi\r\n", b"+OK\r\n", b"+OK\r\nGARBAGE\r\n"], false);
    s.run(task::Connect::new(false)).unwrap();
    s.run(task::Login::new("a", "b")).unwrap();
    let err = s.run(task::Stat::new()).unwrap_err();
    assert!(matches!(err, Error::Protocol(_)), "{err:?}");
    let again = s.run(task::Stat::new()).unwrap_err();
    assert!(matches!(again, Error::Closed), "{again:?}");
}
