//! The save-before-delete driver against a scripted maildrop that keeps its
//! state across runs, with a sink in memory that tells what it made durable:
//! what is deleted, what is journaled when a run fails, and what a run that
//! could not tell messages apart reports.

use std::collections::{HashMap, HashSet};
use std::io;
use std::time::Duration;

use bytes::Bytes;
use pop3_proto::client::task::{self, Task};
use pop3_proto::client::{Connection, ConnectionConfig, Want};
use pop3_proto::fetch::{
    Fetch, FetchError, FetchOptions, FetchReport, FetchStep, MessageSink, Oversize, Progress,
    STORE_CHUNK, SinkRequest, StopSignal, execute,
};
use pop3_proto::time::Instant;
use pop3_proto::types::{MessageNumber, Uid};
use proptest::prelude::*;

/// A maildrop: each message's UIDL text (as the server sends it) and body.
#[derive(Clone, Default)]
struct Maildrop {
    messages: Vec<(String, Vec<u8>)>,
    /// The server answers UIDL with -ERR.
    no_uidl: bool,
}

/// One session's server: answers each command line as a POP3 server would,
/// and closes the connection in the middle of `RETR cut` if asked to.
struct Server {
    drop: Maildrop,
    deleted: HashSet<usize>,
    input: Vec<u8>,
    output: Vec<u8>,
    closed: bool,
    cut: Option<usize>,
    /// The connection drops when QUIT comes, unanswered and with nothing
    /// deleted.
    drop_at_quit: bool,
    /// Every write the client made, as it came.
    writes: Vec<Vec<u8>>,
    /// RETRs of this message number and later go unanswered (a server
    /// that stalls).
    hold_from: Option<usize>,
}

impl Server {
    fn new(drop: Maildrop, cut: Option<usize>) -> Server {
        Server {
            drop,
            deleted: HashSet::new(),
            input: Vec::new(),
            output: b"+OK ready\r\n".to_vec(),
            closed: false,
            cut,
            drop_at_quit: false,
            writes: Vec::new(),
            hold_from: None,
        }
    }

    fn receive(&mut self, bytes: &[u8]) {
        self.writes.push(bytes.to_vec());
        self.input.extend_from_slice(bytes);
        while let Some(i) = self.input.windows(2).position(|w| w == b"\r\n") {
            let line = String::from_utf8(self.input.drain(..i + 2).collect()).unwrap();
            if !self.closed {
                self.answer(line.trim_end());
            }
        }
    }

    fn answer(&mut self, line: &str) {
        let (verb, arg) = line.split_once(' ').unwrap_or((line, ""));
        let n = arg.parse::<usize>().ok();
        let out = &mut self.output;
        match verb {
            "USER" | "PASS" => out.extend_from_slice(b"+OK\r\n"),
            "CAPA" => out.extend_from_slice(b"+OK\r\nUSER\r\nUIDL\r\nPIPELINING\r\n.\r\n"),
            "UIDL" if self.drop.no_uidl => out.extend_from_slice(b"-ERR no UIDL here\r\n"),
            "UIDL" => {
                out.extend_from_slice(b"+OK\r\n");
                for (i, (uid, _)) in self.drop.messages.iter().enumerate() {
                    out.extend_from_slice(format!("{} {uid}\r\n", i + 1).as_bytes());
                }
                out.extend_from_slice(b".\r\n");
            }
            "LIST" => {
                out.extend_from_slice(b"+OK\r\n");
                for (i, (_, body)) in self.drop.messages.iter().enumerate() {
                    out.extend_from_slice(format!("{} {}\r\n", i + 1, body.len()).as_bytes());
                }
                out.extend_from_slice(b".\r\n");
            }
            "RETR" => {
                let n = n.unwrap();
                if self.hold_from.is_some_and(|h| n >= h) {
                    return;
                }
                let body = &self.drop.messages[n - 1].1;
                out.extend_from_slice(b"+OK\r\n");
                if self.cut == Some(n) {
                    out.extend_from_slice(&body[..body.len() / 2]);
                    self.closed = true;
                    return;
                }
                out.extend_from_slice(body);
                out.extend_from_slice(b".\r\n");
            }
            "DELE" => {
                self.deleted.insert(n.unwrap());
                out.extend_from_slice(b"+OK\r\n");
            }
            "QUIT" if self.drop_at_quit => self.closed = true,
            "QUIT" => {
                out.extend_from_slice(b"+OK bye\r\n");
                let mut i = 0;
                self.drop.messages.retain(|_| {
                    i += 1;
                    !self.deleted.contains(&i)
                });
                self.closed = true;
            }
            _ => out.extend_from_slice(b"-ERR unknown\r\n"),
        }
    }
}

/// A sink in memory: `durable` holds what a sync made durable (what a
/// journal would hold after the run).
#[derive(Default)]
struct Memory {
    stored: HashMap<Uid, Vec<u8>>,
    durable: HashSet<Uid>,
    ambiguous: HashSet<Uid>,
    current: Option<(Uid, Vec<u8>)>,
    /// A write fails once this many messages were committed.
    fail_after: Option<usize>,
    /// How long ago the sink first saw each UID (absent: unknown).
    ages: HashMap<Uid, Duration>,
    /// UIDs marked seen without a message.
    marked: HashSet<Uid>,
    /// How many messages were committed, counting those stored again.
    commits: usize,
    /// Given once this many messages were committed (a daemon's SIGTERM).
    stop_after: Option<(usize, StopSignal)>,
}

impl MessageSink for Memory {
    fn contains(&mut self, uid: &Uid) -> io::Result<bool> {
        Ok(self.stored.contains_key(uid) || self.marked.contains(uid))
    }
    fn age(&mut self, uid: &Uid) -> io::Result<Option<Duration>> {
        Ok(self.ages.get(uid).copied())
    }
    fn mark_seen(&mut self, uid: &Uid) -> io::Result<()> {
        self.marked.insert(uid.clone());
        Ok(())
    }
    fn begin(&mut self, uid: &Uid) -> io::Result<()> {
        self.current = Some((uid.clone(), Vec::new()));
        Ok(())
    }
    fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        if self.fail_after == Some(self.stored.len()) {
            return Err(io::Error::other("disk full"));
        }
        self.current.as_mut().unwrap().1.extend_from_slice(chunk);
        Ok(())
    }
    fn commit(&mut self) -> io::Result<()> {
        let (uid, body) = self.current.take().unwrap();
        self.stored.insert(uid, body);
        self.commits += 1;
        if let Some((n, signal)) = &self.stop_after {
            if *n == self.commits {
                signal.stop();
            }
        }
        Ok(())
    }
    fn sync(&mut self) -> io::Result<()> {
        self.durable = self.stored.keys().cloned().collect();
        Ok(())
    }
    fn abort(&mut self) {
        self.current = None;
    }
    fn ambiguous(&mut self, now: &HashSet<Uid>) -> io::Result<HashSet<Uid>> {
        self.ambiguous.extend(now.iter().cloned());
        Ok(self.ambiguous.clone())
    }
}

fn uid(s: &str) -> Uid {
    Uid::new(Bytes::copy_from_slice(s.as_bytes())).unwrap()
}

fn msg(n: u32) -> MessageNumber {
    MessageNumber::new(n).unwrap()
}

/// Performs the connection's I/O once against `server`.
fn pump(conn: &mut Connection, server: &mut Server) {
    pump_at(conn, server, Instant::ZERO);
}

/// [`pump`] at `now`.
fn pump_at(conn: &mut Connection, server: &mut Server, now: Instant) {
    match conn.want(now) {
        Want::Write(bytes) => {
            let n = bytes.len();
            server.receive(bytes);
            conn.wrote(now, Ok(n));
        }
        Want::Flush => conn.flushed(now, Ok(())),
        Want::Read(buf) => {
            let n = server.output.len().min(buf.len());
            if n == 0 {
                assert!(
                    server.closed,
                    "the client waits for a reply that never comes"
                );
            }
            buf[..n].copy_from_slice(&server.output[..n]);
            server.output.drain(..n);
            conn.received(now, Ok(n));
        }
        Want::Done => {}
        _ => unreachable!("no TLS, no SASL here"),
    }
}

fn run_task<T: Task>(conn: &mut Connection, server: &mut Server, task: T) -> T::Output {
    let mut running = conn.start(task).unwrap();
    loop {
        if let Some(result) = conn.poll_task(Instant::ZERO, &mut running) {
            return result.unwrap();
        }
        pump(conn, server);
    }
}

/// A session logged in to a server of `drop` (which closes the connection
/// in the middle of `RETR cut` if asked to).
fn logged_in(drop: &Maildrop, cut: Option<usize>) -> (Connection, Server) {
    let mut config = ConnectionConfig::default();
    config.read_capabilities = false;
    config.session.insecure_cleartext_login = true;
    let mut conn = Connection::new(config, Instant::ZERO, None);
    let mut server = Server::new(drop.clone(), cut);
    run_task(&mut conn, &mut server, task::Connect::new(false));
    run_task(&mut conn, &mut server, task::Login::new("alice", "secret"));
    (conn, server)
}

/// One fetch run: a session on `drop` (which keeps what the run's QUIT
/// left), the driver, `sink`.
fn fetch(
    drop: &mut Maildrop,
    sink: &mut Memory,
    delete: bool,
    cut: Option<usize>,
) -> Result<FetchReport, FetchError> {
    let mut options = FetchOptions::default();
    options.delete = delete;
    fetch_with(drop, sink, options, cut)
}

/// [`fetch`] with any options.
fn fetch_with(
    drop: &mut Maildrop,
    sink: &mut Memory,
    options: FetchOptions,
    cut: Option<usize>,
) -> Result<FetchReport, FetchError> {
    fetch_paced(drop, sink, options, cut, Duration::ZERO)
}

/// [`fetch_with`] with `tick` passing at every I/O.
fn fetch_paced(
    drop: &mut Maildrop,
    sink: &mut Memory,
    options: FetchOptions,
    cut: Option<usize>,
    tick: Duration,
) -> Result<FetchReport, FetchError> {
    let (mut conn, mut server) = logged_in(drop, cut);
    let mut fetch = Fetch::new(options);
    let mut now = Instant::ZERO;
    let result = loop {
        match fetch.poll(now, &mut conn) {
            FetchStep::Io => {
                pump(&mut conn, &mut server);
                now = now + tick;
            }
            FetchStep::Sink(request) => fetch.sink_done(execute(sink, request)),
            FetchStep::Done(result) => break result,
            _ => {}
        }
    };
    *drop = server.drop;
    result
}

/// A deleting run on `drop` that fails (cut inside RETR `cut`, or at QUIT
/// when `cut` is `None`): the last progress it reported.
fn failing_run_progress(drop: &mut Maildrop, cut: Option<usize>) -> Progress {
    let (mut conn, mut server) = logged_in(drop, cut);
    server.drop_at_quit = cut.is_none();
    let mut options = FetchOptions::default();
    options.delete = true;
    let mut fetch = Fetch::new(options);
    let mut sink = Memory::default();
    let mut last = Progress::default();
    loop {
        match fetch.poll(Instant::ZERO, &mut conn) {
            FetchStep::Io => pump(&mut conn, &mut server),
            FetchStep::Sink(request) => fetch.sink_done(execute(&mut sink, request)),
            FetchStep::Progress(p) => last = p,
            FetchStep::Done(result) => {
                assert!(result.is_err(), "the run was to fail");
                break;
            }
            _ => {}
        }
    }
    *drop = server.drop;
    last
}

fn maildrop(messages: &[(&str, &str)]) -> Maildrop {
    padded_maildrop(messages, "")
}

/// [`maildrop`] with each body over [`STORE_CHUNK`] octets (lines of
/// `x` before its word): each message is handed to the sink in pieces as
/// it comes, not held whole.
fn large_maildrop(messages: &[(&str, &str)]) -> Maildrop {
    let filler = "x".repeat(76) + "\r\n";
    padded_maildrop(messages, &filler.repeat(STORE_CHUNK / 78 + 1))
}

/// Messages of `(UID, word)`: the word as subject and last line, `filler`
/// before it.
fn padded_maildrop(messages: &[(&str, &str)], filler: &str) -> Maildrop {
    Maildrop {
        messages: messages
            .iter()
            .map(|(u, b)| {
                (
                    u.to_string(),
                    format!("Subject: {b}\r\n\r\n{filler}{b}\r\n").into_bytes(),
                )
            })
            .collect(),
        no_uidl: false,
    }
}

fn bodies(drop: &Maildrop) -> Vec<String> {
    drop.messages
        .iter()
        .map(|(_, b)| {
            String::from_utf8_lossy(b)
                .lines()
                .last()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[test]
fn a_uid_shared_by_two_messages_is_never_deleted_even_once_its_twin_is_gone() {
    let mut drop = maildrop(&[("same", "first"), ("same", "second"), ("other", "third")]);
    let mut sink = Memory::default();
    let report = fetch(&mut drop, &mut sink, true, None).unwrap();
    // The first message with the shared UID is stored, the second cannot
    // be stored under it; neither is deleted.
    assert_eq!(report.saved, 2);
    assert_eq!(report.deleted, 1);
    assert_eq!(report.ambiguous, [msg(1), msg(2)]);
    assert!(!report.is_complete());
    assert_eq!(bodies(&drop), ["first", "second"]);

    // Another client removes the first one: the second is alone with the
    // UID, but it is not the message this client stored.
    drop.messages.remove(0);
    let report = fetch(&mut drop, &mut sink, true, None).unwrap();
    assert_eq!(report.deleted, 0);
    assert_eq!(report.ambiguous, [msg(1)]);
    assert_eq!(bodies(&drop), ["second"]);
}

#[test]
fn a_run_cut_inside_a_message_makes_what_it_stored_durable_before_failing() {
    let mut drop = maildrop(&[("a", "one"), ("b", "two"), ("c", "three"), ("d", "four")]);
    let mut sink = Memory::default();
    let err = fetch(&mut drop, &mut sink, true, Some(3)).unwrap_err();
    assert!(matches!(err, FetchError::Pop3(_)), "{err:?}");
    let durable: HashSet<Uid> = [uid("a"), uid("b")].into_iter().collect();
    assert_eq!(sink.durable, durable);
    // Nothing was deleted, and the rerun fetches only the rest.
    assert_eq!(drop.messages.len(), 4);
    let report = fetch(&mut drop, &mut sink, true, None).unwrap();
    assert_eq!(
        (report.saved, report.already_stored, report.deleted),
        (2, 2, 4)
    );
    assert!(drop.messages.is_empty());
}

#[test]
fn the_progress_of_a_failed_run_names_the_message_being_received_and_the_deletes_accepted() {
    // Cut inside the third message: two stored, the third arriving, no
    // DELE sent.
    let mut drop = maildrop(&[("a", "one"), ("b", "two"), ("c", "three"), ("d", "four")]);
    let p = failing_run_progress(&mut drop, Some(3));
    assert_eq!((p.messages_done, p.messages_total), (2, 4));
    assert_eq!(p.receiving, Some(msg(3)));
    assert_eq!(p.deletes_accepted, 0);
    assert_eq!(drop.messages.len(), 4);

    // Everything stored, the DELEs accepted, then the connection drops at
    // QUIT: the server may or may not have removed them (this one did not).
    let p = failing_run_progress(&mut drop, None);
    assert_eq!((p.messages_done, p.messages_total), (4, 4));
    assert_eq!(p.receiving, None);
    assert_eq!(p.deletes_accepted, 4);
    assert_eq!(drop.messages.len(), 4);
}

#[test]
fn a_run_whose_sink_fails_makes_what_it_stored_before_durable() {
    let mut drop = maildrop(&[("a", "one"), ("b", "two"), ("c", "three")]);
    let mut sink = Memory {
        fail_after: Some(2),
        ..Memory::default()
    };
    let err = fetch(&mut drop, &mut sink, true, None).unwrap_err();
    assert!(matches!(err, FetchError::Store(_)), "{err:?}");
    let durable: HashSet<Uid> = [uid("a"), uid("b")].into_iter().collect();
    assert_eq!(sink.durable, durable);
    assert_eq!(drop.messages.len(), 3);
}

#[test]
fn a_uidl_line_that_does_not_parse_is_reported_and_the_run_is_incomplete() {
    // A UID longer than 70 octets is not a UID (RFC 1939 §7).
    let long = "x".repeat(71);
    let mut drop = maildrop(&[("a", "one"), (&long, "two"), ("c", "three")]);
    let mut sink = Memory::default();
    let report = fetch(&mut drop, &mut sink, true, None).unwrap();
    assert_eq!(report.listed, 3);
    assert_eq!(report.unidentified, [msg(2)]);
    assert!(!report.is_complete());
    assert_eq!((report.saved, report.deleted), (2, 2));
    assert_eq!(bodies(&drop), ["two"]);
    // Alone on the server, it is still reported, not silently skipped.
    let report = fetch(&mut drop, &mut sink, true, None).unwrap();
    assert_eq!((report.listed, report.saved), (1, 0));
    assert_eq!(report.unidentified, [msg(1)]);
}

#[test]
fn a_clean_run_is_complete() {
    let mut drop = maildrop(&[("a", "one"), ("b", "two")]);
    let mut sink = Memory::default();
    let report = fetch(&mut drop, &mut sink, true, None).unwrap();
    assert!(report.is_complete(), "{report:?}");
    assert_eq!((report.saved, report.deleted), (2, 2));
}

const DAY: Duration = Duration::from_secs(86_400);

#[test]
fn delete_after_deletes_only_messages_first_seen_long_enough_ago() {
    let mut drop = maildrop(&[
        ("old", "one"),
        ("young", "two"),
        ("unknown", "three"),
        ("new", "four"),
    ]);
    let mut sink = Memory::default();
    for (u, b) in [("old", "one"), ("young", "two"), ("unknown", "three")] {
        sink.stored.insert(uid(u), b.as_bytes().to_vec());
    }
    sink.ages.insert(uid("old"), 8 * DAY);
    sink.ages.insert(uid("young"), DAY);
    let mut options = FetchOptions::default();
    options.delete_after = Some(7 * DAY);
    let report = fetch_with(&mut drop, &mut sink, options, None).unwrap();
    // The old one goes; the young one, one of unknown age and the one
    // stored just now stay.
    assert_eq!((report.saved, report.deleted, report.kept), (1, 1, 3));
    assert_eq!(bodies(&drop), ["two", "three", "four"]);
    assert!(report.is_complete());
}

#[test]
fn oversized_messages_are_skipped_or_deleted_unread_as_configured() {
    let big = "x".repeat(200);
    let mut drop = maildrop(&[("a", "one"), ("big", &big), ("c", "three")]);
    let mut sink = Memory::default();
    let mut options = FetchOptions::default();
    options.max_size = Some(100);
    let report = fetch_with(&mut drop, &mut sink, options.clone(), None).unwrap();
    assert_eq!((report.saved, report.deleted), (2, 0));
    assert_eq!(report.oversized.len(), 1);
    assert_eq!(report.oversized[0].0, msg(2));
    assert!(!sink.stored.contains_key(&uid("big")));
    assert_eq!(drop.messages.len(), 3);

    options.oversize = Oversize::Delete;
    let report = fetch_with(&mut drop, &mut sink, options, None).unwrap();
    assert_eq!((report.saved, report.deleted), (0, 1));
    assert!(!sink.stored.contains_key(&uid("big")));
    assert_eq!(bodies(&drop), ["one", "three"]);
}

#[test]
fn per_session_limits_defer_the_rest_to_the_next_run() {
    let mut drop = maildrop(&[("a", "1"), ("b", "2"), ("c", "3"), ("d", "4"), ("e", "5")]);
    let mut sink = Memory::default();
    let mut options = FetchOptions::default();
    options.delete = true;
    options.max_messages = Some(2);
    let report = fetch_with(&mut drop, &mut sink, options.clone(), None).unwrap();
    assert_eq!((report.saved, report.deleted, report.deferred), (2, 2, 3));
    assert!(report.is_complete());
    assert_eq!(bodies(&drop), ["3", "4", "5"]);

    // Each message is 16 octets: 40 allows two, and the first always goes.
    options.max_messages = None;
    options.max_octets = Some(40);
    let report = fetch_with(&mut drop, &mut sink, options.clone(), None).unwrap();
    assert_eq!((report.saved, report.deferred), (2, 1));
    options.max_octets = Some(1);
    let report = fetch_with(&mut drop, &mut sink, options, None).unwrap();
    assert_eq!((report.saved, report.deferred), (1, 0));
    assert!(drop.messages.is_empty());
    assert_eq!(sink.stored.len(), 5);
}

#[test]
fn refetch_stores_again_what_the_sink_already_holds() {
    let mut drop = maildrop(&[("a", "one"), ("b", "two")]);
    let mut sink = Memory::default();
    fetch(&mut drop, &mut sink, false, None).unwrap();
    let mut options = FetchOptions::default();
    options.refetch = true;
    let report = fetch_with(&mut drop, &mut sink, options, None).unwrap();
    assert_eq!((report.saved, report.already_stored), (2, 2));
    assert_eq!(sink.commits, 4);
    assert_eq!(drop.messages.len(), 2);
}

#[test]
fn mark_seen_downloads_and_deletes_nothing_and_later_runs_fetch_only_newer_mail() {
    let mut drop = maildrop(&[("a", "one"), ("b", "two")]);
    let mut sink = Memory::default();
    let mut options = FetchOptions::default();
    options.mark_seen = true;
    options.delete = true;
    let report = fetch_with(&mut drop, &mut sink, options, None).unwrap();
    assert_eq!((report.saved, report.marked, report.deleted), (0, 2, 0));
    assert_eq!(sink.commits, 0);
    assert_eq!(drop.messages.len(), 2);

    drop.messages
        .push(("c".into(), b"Subject: c\r\n\r\nthree\r\n".to_vec()));
    let report = fetch(&mut drop, &mut sink, false, None).unwrap();
    assert_eq!((report.saved, report.already_stored), (1, 2));
    assert!(sink.stored.contains_key(&uid("c")));
}

#[test]
fn a_server_without_uidl_is_fetched_and_emptied_when_deleting_and_refused_when_keeping() {
    let mut drop = maildrop(&[("a", "one"), ("b", "two")]);
    drop.no_uidl = true;
    let mut sink = Memory::default();

    // Keeping: messages could not be told apart in the next run.
    let err = fetch(&mut drop, &mut sink, false, None).unwrap_err();
    assert!(matches!(err, FetchError::NoUidl(_)), "{err:?}");
    let mut options = FetchOptions::default();
    options.uidless_run_id = Some("run1".into());
    let err = fetch_with(&mut drop, &mut sink, options.clone(), None).unwrap_err();
    assert!(matches!(err, FetchError::NoUidl(_)), "{err:?}");
    // Deleting without a run token: refused as well.
    let err = fetch(&mut drop, &mut sink, true, None).unwrap_err();
    assert!(matches!(err, FetchError::NoUidl(_)), "{err:?}");
    assert_eq!(drop.messages.len(), 2);

    options.delete = true;
    let report = fetch_with(&mut drop, &mut sink, options.clone(), None).unwrap();
    assert_eq!((report.listed, report.saved, report.deleted), (2, 2, 2));
    assert!(drop.messages.is_empty());

    // A new message with the same number in a later run is a new message.
    drop.messages
        .push(("-".into(), b"Subject: x\r\n\r\nthree\r\n".to_vec()));
    options.uidless_run_id = Some("run2".into());
    let report = fetch_with(&mut drop, &mut sink, options, None).unwrap();
    assert_eq!((report.saved, report.deleted), (1, 1));
    assert_eq!(sink.stored.len(), 3);
}

/// A run told to stop while the first of three messages comes in: it
/// stores that one durably, begins no other, and leaves without QUIT (the
/// other retrievals are still on their way), so nothing is deleted; the
/// next run deletes what was stored and fetches the rest.
#[test]
fn a_stopped_run_stores_the_message_in_flight_and_deletes_nothing_unsynced() {
    let mut drop = large_maildrop(&[("a", "first"), ("b", "second"), ("c", "third")]);
    let signal = StopSignal::new();
    let mut sink = Memory {
        stop_after: Some((1, signal.clone())),
        ..Memory::default()
    };
    let mut options = FetchOptions::default();
    options.delete = true;
    options.stop = Some(signal);
    let report = fetch_with(&mut drop, &mut sink, options, None).unwrap();
    assert!(report.interrupted);
    assert_eq!((report.saved, report.deferred, report.deleted), (1, 2, 0));
    assert_eq!(sink.durable, HashSet::from([uid("a")]));
    assert_eq!(bodies(&drop), ["first", "second", "third"]);

    sink.stop_after = None;
    let report = fetch(&mut drop, &mut sink, true, None).unwrap();
    assert!(!report.interrupted);
    assert_eq!(
        (report.saved, report.already_stored, report.deleted),
        (2, 1, 3)
    );
    assert!(drop.messages.is_empty());
}

/// Stopped during the last message: nothing is left to retrieve, so the
/// run deletes what it stored and synced, and QUITs.
#[test]
fn a_run_stopped_in_its_last_message_deletes_what_it_synced_and_quits() {
    let mut drop = large_maildrop(&[("a", "first"), ("b", "second")]);
    let signal = StopSignal::new();
    let mut sink = Memory {
        stop_after: Some((2, signal.clone())),
        ..Memory::default()
    };
    let mut options = FetchOptions::default();
    options.delete = true;
    options.stop = Some(signal);
    let report = fetch_with(&mut drop, &mut sink, options, None).unwrap();
    assert!(report.interrupted);
    assert_eq!((report.saved, report.deferred, report.deleted), (2, 0, 2));
    assert!(drop.messages.is_empty());
}

/// Stopped before it began: the session ends with QUIT, nothing fetched.
#[test]
fn a_run_stopped_before_it_began_fetches_nothing() {
    let mut drop = maildrop(&[("a", "first")]);
    let signal = StopSignal::new();
    signal.stop();
    let mut options = FetchOptions::default();
    options.delete = true;
    options.stop = Some(signal);
    let mut sink = Memory::default();
    let report = fetch_with(&mut drop, &mut sink, options, None).unwrap();
    assert!(report.interrupted);
    assert_eq!((report.listed, report.saved, report.deleted), (0, 0, 0));
    assert_eq!(bodies(&drop), ["first"]);
}

/// One `Store` request: (begun with it, octets, completes it); a
/// `ContainsMany` is (false, UIDs asked, false); a `StoreMessages` is
/// (true, octets, true) for each of its messages, then (false, messages,
/// false).
type StoreCall = (bool, usize, bool);

/// Runs a keeping fetch of `drop` into `sink` the way [`fetch_with`] does,
/// recording every `Store` request.
fn fetch_recording_stores(
    drop: &mut Maildrop,
    sink: &mut Memory,
    cut: Option<usize>,
) -> (Result<FetchReport, FetchError>, Vec<StoreCall>) {
    fetch_recording_stores_at(drop, sink, cut, Duration::ZERO)
}

/// [`fetch_recording_stores`] with `tick` passing at every I/O.
fn fetch_recording_stores_at(
    drop: &mut Maildrop,
    sink: &mut Memory,
    cut: Option<usize>,
    tick: Duration,
) -> (Result<FetchReport, FetchError>, Vec<StoreCall>) {
    let (mut conn, mut server) = logged_in(drop, cut);
    let mut fetch = Fetch::new(FetchOptions::default());
    let mut stores = Vec::new();
    let mut now = Instant::ZERO;
    let result = loop {
        match fetch.poll(now, &mut conn) {
            FetchStep::Io => {
                pump(&mut conn, &mut server);
                now = now + tick;
            }
            FetchStep::Sink(request) => {
                if let SinkRequest::Store {
                    begin,
                    chunks,
                    commit,
                } = &request
                {
                    let octets = chunks.iter().map(|c| c.len()).sum();
                    stores.push((begin.is_some(), octets, *commit));
                }
                if let SinkRequest::ContainsMany(uids) = &request {
                    // Recorded as a store of nothing: (false, UIDs, false).
                    stores.push((false, uids.len(), false));
                }
                if let SinkRequest::StoreMessages(messages) = &request {
                    for (_, chunks) in messages {
                        stores.push((true, chunks.iter().map(|c| c.len()).sum(), true));
                    }
                    stores.push((false, messages.len(), false));
                }
                fetch.sink_done(execute(sink, request));
            }
            FetchStep::Done(result) => break result,
            _ => {}
        }
    };
    (result, stores)
}

/// A message of about `size` octets in 76-column lines (CRLF, as on the
/// wire).
fn long_body(size: usize) -> Vec<u8> {
    let mut body = b"Subject: long\r\n\r\n".to_vec();
    while body.len() < size {
        body.extend_from_slice(&[b'x'; 76]);
        body.extend_from_slice(b"\r\n");
    }
    body
}

#[test]
fn one_lookup_for_all_uids_then_one_request_per_small_message_and_bounded_pieces() {
    let large = long_body(3 * STORE_CHUNK + 1000);
    let mut drop = maildrop(&[("small", "hello")]);
    drop.messages.push(("large".into(), large.clone()));
    let mut sink = Memory::default();
    let (result, stores) = fetch_recording_stores(&mut drop, &mut sink, None);
    assert_eq!(result.unwrap().saved, 2);
    // First, one question for both UIDs.
    assert_eq!(stores[0], (false, 2, false));
    let stores = &stores[1..];
    // The small one: begun, written and committed in one request, before
    // the large one is begun.
    assert!(stores[0].0 && stores[0].2, "{stores:?}");
    assert_eq!(stores[1], (false, 1, false), "{stores:?}");
    // The large one: begun with its first piece, handed over in pieces of
    // at most STORE_CHUNK octets and the read that crossed it, committed
    // with its last.
    let pieces = &stores[2..];
    assert!(
        (3..=large.len() / STORE_CHUNK + 1).contains(&pieces.len()),
        "{} pieces: {pieces:?}",
        pieces.len()
    );
    assert!(pieces[0].0);
    assert!(pieces[1..].iter().all(|p| !p.0));
    assert!(pieces[..pieces.len() - 1].iter().all(|p| !p.2));
    assert!(pieces[pieces.len() - 1].2);
    assert!(pieces.iter().all(|p| p.1 <= 2 * STORE_CHUNK), "{pieces:?}");
    assert_eq!(sink.stored[&uid("large")], large);
}

#[test]
fn a_cut_before_or_after_the_first_piece_leaves_no_message_open_and_the_rerun_fetches_the_rest() {
    for cut in [1, 2] {
        // Message 2 is cut after half of it: more than STORE_CHUNK (a
        // piece was handed over, the message is open) ; message 1 is cut
        // inside its only piece (nothing reached the sink).
        let mut drop = maildrop(&[("small", "hello")]);
        drop.messages
            .push(("large".into(), long_body(3 * STORE_CHUNK)));
        let mut sink = Memory::default();
        let (result, stores) = fetch_recording_stores(&mut drop, &mut sink, Some(cut));
        assert_eq!(stores[0], (false, 2, false));
        let stores = &stores[1..];
        assert!(matches!(result, Err(FetchError::Pop3(_))), "{result:?}");
        assert!(sink.current.is_none(), "a message was left open");
        assert_eq!(sink.stored.len(), cut - 1);
        if cut == 2 {
            assert!(stores.iter().any(|s| s.0 && !s.2), "{stores:?}");
        } else {
            assert!(stores.is_empty(), "{stores:?}");
        }
        let (rerun, _) = fetch_recording_stores(&mut drop, &mut sink, None);
        let rerun = rerun.unwrap();
        assert_eq!((rerun.saved, rerun.already_stored), (3 - cut, cut - 1));
    }
}

#[test]
fn uidl_and_list_go_in_one_write_to_a_server_that_pipelines() {
    let drop = maildrop(&[("a", "one"), ("b", "two")]);
    let mut config = ConnectionConfig::default();
    config.session.insecure_cleartext_login = true;
    let mut conn = Connection::new(config, Instant::ZERO, None);
    let mut server = Server::new(drop, None);
    run_task(&mut conn, &mut server, task::Connect::new(false));
    run_task(&mut conn, &mut server, task::Login::new("alice", "secret"));
    let mut fetch = Fetch::new(FetchOptions::default());
    let mut sink = Memory::default();
    let report = loop {
        match fetch.poll(Instant::ZERO, &mut conn) {
            FetchStep::Io => pump(&mut conn, &mut server),
            FetchStep::Sink(request) => fetch.sink_done(execute(&mut sink, request)),
            FetchStep::Done(result) => break result.unwrap(),
            _ => {}
        }
    };
    assert_eq!(report.saved, 2);
    assert!(
        server.writes.iter().any(|w| w == b"UIDL\r\nLIST\r\n"),
        "{:?}",
        server
            .writes
            .iter()
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect::<Vec<_>>()
    );
}

#[test]
fn small_messages_received_together_go_to_the_sink_in_batches_of_store_messages() {
    let mut drop = small_maildrop(100);
    let mut sink = Memory::default();
    let (result, stores) = fetch_recording_stores(&mut drop, &mut sink, None);
    assert_eq!(result.unwrap().saved, 100);
    // The lookup, then the hundred messages in two requests.
    let requests: Vec<_> = stores.iter().filter(|s| !s.0).collect();
    let cap = pop3_proto::fetch::STORE_MESSAGES;
    assert_eq!(
        requests,
        [
            &(false, 100, false),
            &(false, cap, false),
            &(false, 100 - cap, false)
        ]
    );
    for i in 0..100 {
        assert_eq!(
            sink.stored[&uid(&format!("u{i}"))],
            format!("Subject: body{i}\r\n\r\nbody{i}\r\n").into_bytes()
        );
    }
}

#[test]
fn a_message_received_whole_waits_for_others_at_most_store_wait() {
    // Each I/O takes as long as a message may wait: every message received
    // whole is handed over before the driver waits for the network again,
    // so the sink is asked many times, each message once.
    let mut drop = small_maildrop(100);
    let mut sink = Memory::default();
    let (result, stores) =
        fetch_recording_stores_at(&mut drop, &mut sink, None, pop3_proto::fetch::STORE_WAIT);
    assert_eq!(result.unwrap().saved, 100);
    let batches: Vec<usize> = stores[1..].iter().filter(|s| !s.0).map(|s| s.1).collect();
    assert!(batches.len() > 1, "one request for all: {batches:?}");
    assert_eq!(batches.iter().sum::<usize>(), 100);
    assert_eq!(sink.commits, 100);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever the sizes (small ones held whole and handed over together,
    /// large ones in pieces), the pace of the network, a cut inside any
    /// RETR and a sink that fails after any message: the first run deletes
    /// only what the sink made durable, and a rerun stores each message
    /// exactly once.
    #[test]
    fn any_cut_failure_or_pace_then_a_rerun_stores_each_message_once_and_deletes_only_the_durable(
        sizes in prop::collection::vec(
            prop_oneof![9 => 20usize..3000, 1 => Just(STORE_CHUNK + 100)],
            1..24,
        ),
        cut in prop::option::of(1usize..30),
        fail_after in prop::option::of(0usize..30),
        paced in any::<bool>(),
    ) {
        let line = format!("{}\r\n", "x".repeat(76));
        let messages: Vec<(String, Vec<u8>)> = sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| {
                let mut body = format!("Subject: m{i}\r\n\r\n").into_bytes();
                while body.len() < size {
                    body.extend_from_slice(line.as_bytes());
                }
                (format!("u{i}"), body)
            })
            .collect();
        let mut drop = Maildrop { messages: messages.clone(), no_uidl: false };
        let mut sink = Memory { fail_after, ..Memory::default() };
        let mut options = FetchOptions::default();
        options.delete = true;
        let tick = if paced { pop3_proto::fetch::STORE_WAIT } else { Duration::ZERO };
        let first = fetch_paced(&mut drop, &mut sink, options.clone(), cut, tick);
        let faulty = cut.is_some_and(|c| c <= messages.len())
            || fail_after.is_some_and(|f| f < messages.len());
        prop_assert_eq!(first.is_err(), faulty, "{:?}", first);
        if !faulty {
            // A run without faults stores and deletes everything.
            prop_assert!(drop.messages.is_empty(), "left on the server: {}", drop.messages.len());
        }
        let left: HashSet<&str> = drop.messages.iter().map(|(u, _)| &**u).collect();
        for (u, body) in &messages {
            if !left.contains(&**u) {
                prop_assert!(sink.durable.contains(&uid(u)), "{} deleted, not durable", u);
                prop_assert_eq!(&sink.stored[&uid(u)], body);
            }
        }

        sink.fail_after = None;
        let report = fetch_paced(&mut drop, &mut sink, options, None, tick).unwrap();
        prop_assert!(report.is_complete());
        prop_assert!(drop.messages.is_empty());
        prop_assert_eq!(sink.commits, messages.len(), "a message stored twice or never");
        for (u, body) in &messages {
            prop_assert_eq!(&sink.stored[&uid(u)], body);
        }
    }
}

/// A deleting fetch driven as the adapters drive it, on a clock: a sink
/// request takes `sink_time`; a deadline of the connection that has passed
/// is handled before any I/O; when the server has nothing to send, the
/// clock moves to the connection's next deadline. Returns the result and,
/// for each `StoreMessages` request, when it was asked and how many
/// messages it carried.
fn fetch_clocked(
    drop: &mut Maildrop,
    sink: &mut Memory,
    sink_time: Duration,
    hold_from: Option<usize>,
) -> (Result<FetchReport, FetchError>, Vec<(Instant, usize)>) {
    let (mut conn, mut server) = logged_in(drop, None);
    server.hold_from = hold_from;
    let mut options = FetchOptions::default();
    options.delete = true;
    let mut fetch = Fetch::new(options);
    let mut now = Instant::ZERO;
    let mut batches = Vec::new();
    let result = loop {
        match fetch.poll(now, &mut conn) {
            FetchStep::Io => {
                if conn.poll_timeout(now).is_some_and(|d| d <= now) {
                    conn.handle_timeout(now);
                    continue;
                }
                let starved = matches!(conn.want(now), Want::Read(_)) && server.output.is_empty();
                if starved {
                    let deadline = conn.poll_timeout(now).expect("a deadline while stalled");
                    now = deadline;
                    conn.handle_timeout(now);
                } else {
                    pump_at(&mut conn, &mut server, now);
                }
            }
            FetchStep::Sink(request) => {
                if let SinkRequest::StoreMessages(messages) = &request {
                    batches.push((now, messages.len()));
                }
                fetch.sink_done(execute(sink, request));
                now = now + sink_time;
            }
            FetchStep::Done(result) => break result,
            _ => {}
        }
    };
    *drop = server.drop;
    (result, batches)
}

/// `count` small messages `u0`, `u1`, ...
fn small_maildrop(count: usize) -> Maildrop {
    let names: Vec<(String, String)> = (0..count)
        .map(|i| (format!("u{i}"), format!("body{i}")))
        .collect();
    let pairs: Vec<(&str, &str)> = names.iter().map(|(u, b)| (&**u, &**b)).collect();
    maildrop(&pairs)
}

#[test]
fn time_spent_in_the_sink_does_not_count_against_the_reply_timeout() {
    // A batch of STORE_MESSAGES takes longer than the reply timeout (120
    // s) while the RETRs after it are in flight: their replies are not
    // late, the sink was.
    let mut drop = small_maildrop(2 * pop3_proto::fetch::STORE_MESSAGES + 10);
    let mut sink = Memory::default();
    let (result, batches) = fetch_clocked(&mut drop, &mut sink, Duration::from_secs(200), None);
    let report = result.unwrap();
    assert_eq!((report.saved, report.deleted), (138, 138));
    assert!(batches.len() >= 2, "{batches:?}");
    assert!(drop.messages.is_empty());
}

#[test]
fn messages_held_for_the_sink_are_stored_store_wait_after_the_server_stalls() {
    // The server answers the first three RETRs, then nothing: the three
    // go to the sink STORE_WAIT after they came, not at the reply timeout.
    let mut drop = small_maildrop(10);
    let mut sink = Memory::default();
    let (result, batches) = fetch_clocked(&mut drop, &mut sink, Duration::ZERO, Some(4));
    assert!(
        matches!(
            result,
            Err(FetchError::Pop3(pop3_proto::client::Error::Timeout(_)))
        ),
        "{result:?}"
    );
    assert_eq!(batches.len(), 1, "{batches:?}");
    let (at, count) = batches[0];
    assert_eq!(count, 3);
    assert_eq!(at, Instant::ZERO + pop3_proto::fetch::STORE_WAIT);
    let durable: HashSet<Uid> = [uid("u0"), uid("u1"), uid("u2")].into_iter().collect();
    assert_eq!(sink.durable, durable);
    assert_eq!(drop.messages.len(), 10, "nothing deleted");
}
