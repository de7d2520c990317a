//! The client connection layer: the machine plus its read and write
//! buffers, saying what I/O it wants next, with no I/O of its own.

use crate::__tracing as tracing;
use std::collections::VecDeque;
use std::io;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};

use super::task::{BodyState, OnDrop, Task, TaskContext, unexpected};
use super::{
    Client, ClientConfig, ClientEvent, Error, ProtocolError, SaslWork, SaslWorkDone, TimeoutKind,
};
use crate::session::{Action, Transmit};
use crate::time::Instant;
use crate::types::MessageNumber;

pub(super) const LOG: &str = "pop3_proto::client";

/// How a [`Connection`] behaves, besides its machine's settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
#[must_use = "a configuration does nothing until it is used"]
pub struct ConnectionConfig {
    /// The session machine's settings (pipelining, reply timeout, limits).
    pub session: ClientConfig,
    /// The longest the transport may make no progress (nothing read,
    /// nothing written) while an operation waits on it, whatever the machine
    /// expects (default 5 min). `None`: no limit besides the reply timeout.
    pub idle_timeout: Option<Duration>,
    /// Read the capabilities after the greeting, after STLS and after login
    /// (default `true`): pipelining is used only when they allow it. The
    /// operations that change them finish once they are read again.
    pub read_capabilities: bool,
    /// The most entries a listing collected whole may have (default
    /// 200,000, some 20 MB of UIDs at most): a server that lists without end
    /// cannot exhaust memory.
    pub max_listing_entries: usize,
    /// The size of the read buffer (default 64 KiB).
    pub read_chunk: usize,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            session: ClientConfig::default(),
            idle_timeout: Some(Duration::from_secs(300)),
            read_capabilities: true,
            max_listing_entries: 200_000,
            read_chunk: 64 * 1024,
        }
    }
}

/// The I/O a [`Connection`] wants next. Perform it, report how it went, and
/// poll the operation again.
///
/// Exhaustive on purpose: an adapter must perform every case, and a case it
/// did not know would leave the connection waiting for I/O that never
/// happens. A new case is therefore a breaking change, made only in a
/// breaking release, so that every adapter's match stops compiling instead.
#[derive(Debug)]
#[must_use = "the connection waits for this I/O"]
pub enum Want<'a> {
    /// Write (some of) these octets, then [`Connection::wrote`].
    Write(&'a [u8]),
    /// Flush the transport (a TLS record, a buffered writer), then
    /// [`Connection::flushed`].
    Flush,
    /// Run the TLS handshake on the same stream now (the buffers are empty),
    /// then [`Connection::tls_done`]. Asked again until it is called.
    StartTls,
    /// Run this slow local work (SCRAM's key derivation, tens of
    /// milliseconds) where blocking is fine: a blocking thread pool, never
    /// the event loop; inline in a blocking client. Then
    /// [`Connection::computed`] with its result. Asked again (the same work)
    /// until it is called: start it once. No deadline runs meanwhile
    /// ([`Connection::poll_timeout`] is `None`).
    Compute(SaslWork),
    /// Read into this buffer, then [`Connection::received`] (0 for the end
    /// of the stream).
    Read(&'a mut [u8]),
    /// The connection is over: poll the operation for its result; shut the
    /// transport down.
    Done,
}

/// A client session with its buffers: the [`Client`] machine, the octets to
/// write (commands coalesced, so a pipelined batch is one write and one TLS
/// record), the octets read and not yet taken, and the rules that keep an
/// adapter to moving bytes:
///
/// - operations ([`Task`]s) run one at a time; replies to an operation the
///   application abandoned (a body reader dropped half-read) are read and
///   discarded before the next operation's own;
/// - an operation started and dropped before it finished (an adapter's
///   future dropped by a timeout or `select!`) is settled when the next one
///   starts, as its [`Task::on_drop`] says: a query's replies are drained
///   and the session goes on; an operation that changes the session's state
///   over several steps (login, STLS, a DELE batch, QUIT) closes the
///   connection without QUIT and the next operation fails with
///   [`Error::Cancelled`] (never a refused retry, a wrong answer or
///   [`Error::Closed`] on a live connection);
/// - a session that failed between operations (a malformed reply to a
///   CAPA the machine queued itself) gives the failure to the next
///   operation started, and [`Error::Closed`] to those after it;
/// - a failed body keeps failing on every later read;
/// - octets that came in clear text after `+OK` to STLS fail the session
///   ([`ProtocolError::StlsInjection`]);
/// - input the machine left unparsed (backpressure) is offered again first;
/// - the connect deadline, the reply timeout and the idle timeout are merged
///   into one deadline ([`Connection::poll_timeout`]);
/// - every command written and every reply event is logged with `tracing`
///   (target `pop3_proto::client`, level `TRACE`), secrets redacted.
///
/// Driving it: every adapter's loop is this one, with its runtime's reads,
/// writes, handshake and timer (here a scripted server stands for the
/// socket):
///
/// ```
/// use std::collections::VecDeque;
/// use pop3_proto::client::task::{Connect, Login, Stat, Task};
/// use pop3_proto::client::{Connection, ConnectionConfig, Error, Want};
/// use pop3_proto::time::Instant;
///
/// fn run<T: Task>(
///     conn: &mut Connection,
///     server: &mut VecDeque<&[u8]>, // one reply per read
///     wire: &mut Vec<u8>,
///     task: T,
/// ) -> Result<T::Output, Error> {
///     let now = Instant::ZERO; // a real adapter reads its clock
///     let mut task = conn.start(task)?;
///     loop {
///         if let Some(result) = conn.poll_task(now, &mut task) {
///             return result;
///         }
///         match conn.want(now) {
///             Want::Write(octets) => {
///                 let n = octets.len();
///                 wire.extend_from_slice(octets);
///                 conn.wrote(now, Ok(n));
///             }
///             Want::Flush => conn.flushed(now, Ok(())),
///             Want::Read(buf) => {
///                 let reply = server.pop_front().unwrap_or_default();
///                 buf[..reply.len()].copy_from_slice(reply);
///                 conn.received(now, Ok(reply.len()));
///             }
///             Want::StartTls => unreachable!("no STLS here"),
///             Want::Compute(work) => conn.computed(now, Ok(work.run())),
///             Want::Done => {}
///         }
///         // A real adapter arms a timer for conn.poll_timeout(now) while the
///         // I/O is pending, and calls conn.handle_timeout(now) when it fires.
///     }
/// }
///
/// let mut config = ConnectionConfig::default();
/// config.read_capabilities = false;
/// // A loopback test server without TLS: clear-text logins must be allowed
/// // explicitly.
/// config.session.insecure_cleartext_login = true;
/// let mut conn = Connection::new(config, Instant::ZERO, None);
/// let mut server: VecDeque<&[u8]> =
///     [&b"+OK hi\r\n"[..], b"+OK\r\n", b"+OK in\r\n", b"+OK 2 320\r\n"].into();
/// let mut wire = Vec::new();
/// run(&mut conn, &mut server, &mut wire, Connect::new(false))?;
/// run(&mut conn, &mut server, &mut wire, Login::new("alice", "secret"))?;
/// let stat = run(&mut conn, &mut server, &mut wire, Stat::new())?;
/// assert_eq!((stat.count, stat.size), (2, 320));
/// assert_eq!(wire, b"USER alice\r\nPASS secret\r\nSTAT\r\n");
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug)]
pub struct Connection {
    machine: Client,
    config: ConnectionConfig,
    /// Command octets not yet written.
    wbuf: BytesMut,
    /// Written, not yet flushed.
    unflushed: bool,
    rbuf: Box<[u8]>,
    rstart: usize,
    rend: usize,
    /// Events of requests below this one belong to abandoned operations.
    floor: u64,
    /// The operation last started and not finished, by what dropping it
    /// means: set by `start`, cleared when `poll_task` returns its result.
    unfinished: Option<OnDrop>,
    /// The first failure of the transport or the protocol.
    fault: Option<Error>,
    /// An operation's result told of the session's end (the fault, if any).
    fault_told: bool,
    /// The transport is finished (closed, failed, or the machine closed it).
    dead: bool,
    /// The machine was told of the end of the stream.
    eof_given: bool,
    /// The machine reported `Closed`.
    closed: bool,
    /// The machine asked for TLS; not yet handed to the adapter.
    start_tls: bool,
    /// The adapter runs the handshake.
    handshaking: bool,
    /// SASL work the machine handed out, until its result comes back.
    compute: Option<SaslWork>,
    connect_deadline: Option<Instant>,
    last_progress: Instant,
    /// When the current wait began: time the application spends elsewhere
    /// is not idleness of the transport.
    waiting_since: Option<Instant>,
    /// When the application asked to be woken ([`Connection::wake_at`]).
    wake: Option<Instant>,
}

/// What the next machine event is, or why there is none.
enum Next {
    Event(ClientEvent),
    /// Nothing until I/O happens.
    Io,
    /// The session is over.
    Over(Error),
}

/// An operation running on a [`Connection`]: returned by
/// [`Connection::start`], polled with [`Connection::poll_task`].
#[derive(Debug)]
pub struct Running<T> {
    task: T,
    done: bool,
}

/// Pipelined retrievals ([`Connection::retr_many`]); take the messages in
/// order with [`Connection::poll_batch`].
#[derive(Debug, Default)]
pub struct RetrBatchState {
    queued: VecDeque<(MessageNumber, super::RequestId)>,
}

impl RetrBatchState {
    /// How many messages are still to come.
    pub fn remaining(&self) -> usize {
        self.queued.len()
    }
}

/// The error a protocol failure of the machine ends the session with.
fn session_error(p: &ProtocolError) -> Error {
    match p {
        ProtocolError::Timeout => Error::Timeout(TimeoutKind::Reply),
        other => Error::Protocol(other.clone()),
    }
}

fn log_send(t: &Transmit) {
    if !tracing::enabled!(target: LOG, tracing::Level::TRACE) {
        return;
    }
    let line = t.bytes.strip_suffix(b"\r\n").unwrap_or(&t.bytes);
    if t.secret {
        let keyword: &[u8] = match line.iter().position(|&b| b == b' ') {
            Some(sp) if sp <= 4 && line[..sp].iter().all(u8::is_ascii_alphabetic) => &line[..sp],
            _ => b"",
        };
        tracing::trace!(target: LOG, "C: {} <redacted>", String::from_utf8_lossy(keyword));
    } else {
        tracing::trace!(target: LOG, "C: {}", String::from_utf8_lossy(line));
    }
}

fn log_event(e: &ClientEvent) {
    match e {
        ClientEvent::BodyChunk { id, data } => {
            tracing::trace!(target: LOG, "S: {id} {} body octets", data.len())
        }
        other => tracing::trace!(target: LOG, "S: {other:?}"),
    }
}

impl Connection {
    /// A connection whose transport is (being) set up: the greeting comes
    /// next. `connect_deadline`: when connecting must be over, greeting
    /// included (the adapter counts name resolution, TCP and an implicit
    /// TLS handshake against it before this call). For implicit TLS, set
    /// [`ClientConfig::tls_active`] in `config.session`.
    pub fn new(config: ConnectionConfig, now: Instant, connect_deadline: Option<Instant>) -> Self {
        let mut session = config.session.clone();
        session.auto_capa = config.read_capabilities;
        let chunk = config.read_chunk.max(1024);
        Connection {
            machine: Client::new(session, now),
            config,
            wbuf: BytesMut::new(),
            unflushed: false,
            rbuf: vec![0; chunk].into_boxed_slice(),
            rstart: 0,
            rend: 0,
            floor: 0,
            unfinished: None,
            fault: None,
            fault_told: false,
            dead: false,
            eof_given: false,
            closed: false,
            start_tls: false,
            handshaking: false,
            compute: None,
            connect_deadline,
            last_progress: now,
            waiting_since: None,
            wake: None,
        }
    }

    /// The session machine (state, greeting, capabilities, TLS).
    pub fn machine(&self) -> &Client {
        &self.machine
    }

    /// The settings.
    pub fn config(&self) -> &ConnectionConfig {
        &self.config
    }

    /// Whether the transport is finished.
    pub fn is_done(&self) -> bool {
        self.dead || self.machine.state() == super::ClientState::Closed
    }

    /// Starts an operation: its commands are queued (nothing is written
    /// until the next [`Connection::want`]). Replies to earlier operations
    /// still on their way are discarded.
    ///
    /// When the previous operation was started and dropped before its
    /// result came ([`Running`] dropped), it is settled first, as its
    /// [`Task::on_drop`] says: drained, or the connection is closed and this
    /// fails with [`Error::Cancelled`].
    pub fn start<T: Task>(&mut self, mut task: T) -> Result<Running<T>, Error> {
        self.settle_dropped()?;
        // The session is over: why was told to the operation it ended,
        // or, when it ended between operations (a malformed reply to the
        // CAPA queued after the greeting, which nothing awaits), to this
        // one, once.
        if self.is_done() {
            return Err(self.session_over());
        }
        self.floor = self.machine.next_request_id().get();
        let on_drop = task.on_drop();
        task.start(&mut self.machine)?;
        self.unfinished = Some(on_drop);
        Ok(Running { task, done: false })
    }

    /// Whether an operation was started and has not returned its result
    /// (it is running, or it was dropped and the next start settles it).
    pub fn is_unfinished(&self) -> bool {
        self.unfinished.is_some()
    }

    /// What an operation started on a finished session gets: the failure
    /// that ended it when no operation was told of it yet, else
    /// [`Error::Closed`].
    fn session_over(&mut self) -> Error {
        self.settle_closed();
        match self.fault.clone() {
            Some(fault) if !self.fault_told => {
                self.fault_told = true;
                fault
            }
            _ => Error::Closed,
        }
    }

    /// Takes the actions a closed machine still holds: the session can end
    /// behind the reply that completed the last operation (a stray line in
    /// the same read), and the error that ended it is then still queued.
    fn settle_closed(&mut self) {
        while let Some(action) = self.machine.poll_action() {
            match action {
                Action::Event(ClientEvent::Error(p)) => {
                    self.fault.get_or_insert(session_error(&p));
                }
                Action::Event(ClientEvent::Closed) => self.closed = true,
                Action::Close => {
                    self.dead = true;
                    self.wbuf.clear();
                }
                _ => {}
            }
        }
    }

    /// Notes an operation's result: a failure that ends the session, on a
    /// finished session, told it why the session ended.
    fn told(&mut self, failed: bool) {
        if failed && self.is_done() {
            self.fault_told = true;
        }
    }

    /// Settles an operation dropped before it finished: a query's replies
    /// are left to the floor (read and discarded); anything else closes the
    /// connection with [`Error::Cancelled`].
    fn settle_dropped(&mut self) -> Result<(), Error> {
        match self.unfinished.take() {
            None | Some(OnDrop::Drain) => Ok(()),
            Some(_) => {
                tracing::debug!(target: LOG, "an operation was dropped midway: closing");
                let now = self.last_progress;
                self.fail(now, Error::Cancelled);
                self.fault_told = true;
                Err(Error::Cancelled)
            }
        }
    }

    /// Runs the operation as far as the octets already read allow: `Some`
    /// with its result, or `None` when it needs I/O ([`Connection::want`]).
    pub fn poll_task<T: Task>(
        &mut self,
        now: Instant,
        running: &mut Running<T>,
    ) -> Option<Result<T::Output, Error>> {
        if running.done {
            return Some(Err(Error::Closed));
        }
        let result = loop {
            match self.next_event(now, None) {
                Next::Event(event) => {
                    let mut cx = TaskContext {
                        client: &mut self.machine,
                        fault: self.fault.as_ref(),
                        config: &self.config,
                    };
                    if let Some(r) = running.task.event(event, &mut cx) {
                        break r;
                    }
                }
                Next::Io => {
                    let mut cx = TaskContext {
                        client: &mut self.machine,
                        fault: self.fault.as_ref(),
                        config: &self.config,
                    };
                    match running.task.ready(&mut cx) {
                        Some(r) => break r,
                        None => return None,
                    }
                }
                Next::Over(e) => break Err(running.task.failed(e)),
            }
        };
        running.done = true;
        self.unfinished = None;
        self.waiting_since = None;
        self.told(result.as_ref().is_err_and(|e| !e.keeps_session()));
        if let Err(e @ Error::ListingTooLong { .. }) = &result {
            self.fail(now, e.clone());
            // This operation is told: the next gets `Closed`.
            self.fault_told = true;
        }
        Some(result)
    }

    /// The next chunk of a body: `Some(Ok(Some(chunk)))` (zero-copy),
    /// `Some(Ok(None))` at its end, `Some(Err(_))` when it failed (and on
    /// every later call), `None` when it needs I/O.
    pub fn poll_body(
        &mut self,
        now: Instant,
        body: &mut BodyState,
    ) -> Option<Result<Option<Bytes>, Error>> {
        if body.done {
            return Some(match &body.failure {
                Some(e) => Err(e.clone()),
                None => Ok(None),
            });
        }
        let result = match self.next_event(now, Some(body.id)) {
            Next::Event(ClientEvent::BodyChunk { data, .. }) => Ok(Some(data)),
            Next::Event(ClientEvent::BodyEnd { .. }) => {
                body.done = true;
                body.ended = true;
                Ok(None)
            }
            Next::Event(other) => Err(unexpected(other, self.fault.as_ref())),
            Next::Io => return None,
            Next::Over(e) => Err(e),
        };
        self.waiting_since = None;
        self.told(result.as_ref().is_err_and(|e| !e.keeps_session()));
        if let Err(e) = &result {
            body.done = true;
            body.failure = Some(e.clone());
        }
        Some(result)
    }

    /// Queues `RETR` for every message, pipelined when the server allows it.
    pub fn retr_many(
        &mut self,
        msgs: impl IntoIterator<Item = MessageNumber>,
    ) -> Result<RetrBatchState, Error> {
        self.settle_dropped()?;
        // The session is over (see `start`).
        if self.is_done() {
            return Err(self.session_over());
        }
        let mut batch = RetrBatchState::default();
        for msg in msgs {
            let id = self.machine.retr(msg)?;
            if batch.queued.is_empty() {
                self.floor = id.get();
            }
            batch.queued.push_back((msg, id));
        }
        Ok(batch)
    }

    /// The next message of a batch: `Some(None)` after the last, `None` when
    /// it needs I/O. A `-ERR` for one message is an `Err` item and the batch
    /// goes on; a failed session ends it.
    #[allow(clippy::type_complexity)]
    pub fn poll_batch(
        &mut self,
        now: Instant,
        batch: &mut RetrBatchState,
    ) -> Option<Option<(MessageNumber, Result<BodyState, Error>)>> {
        let Some(&(msg, id)) = batch.queued.front() else {
            return Some(None);
        };
        // The bodies before this one were read or abandoned.
        self.floor = self.floor.max(id.get());
        let result = match self.next_event(now, Some(id)) {
            Next::Event(ClientEvent::BodyStart { id, line }) => Ok(BodyState::new(id, line)),
            Next::Event(other) => Err(unexpected(other, self.fault.as_ref())),
            Next::Io => return None,
            Next::Over(e) => Err(e),
        };
        self.waiting_since = None;
        self.told(result.as_ref().is_err_and(|e| !e.keeps_session()));
        batch.queued.pop_front();
        if result.as_ref().is_err_and(|e| !e.keeps_session()) {
            batch.queued.clear();
        }
        Some(Some((msg, result)))
    }

    /// The next event for the running operation (`only`: for that request
    /// alone), performing the machine's other actions on the way.
    fn next_event(&mut self, now: Instant, only: Option<super::RequestId>) -> Next {
        loop {
            while let Some(action) = self.machine.poll_action() {
                match action {
                    Action::Send(t) => {
                        log_send(&t);
                        if !self.dead {
                            self.wbuf.extend_from_slice(&t.bytes);
                        }
                    }
                    Action::StartTls => self.start_tls = true,
                    Action::Event(e) => {
                        log_event(&e);
                        match (&e, e.request_id()) {
                            (ClientEvent::Error(p), _) => {
                                self.fault.get_or_insert(session_error(p));
                            }
                            (ClientEvent::Closed, _) => self.closed = true,
                            (ClientEvent::SaslWork { work, .. }, _) => {
                                self.compute = Some(work.clone());
                            }
                            (ClientEvent::Greeting(_), _) if only.is_none() => {
                                return Next::Event(e);
                            }
                            (_, Some(id)) if id.get() >= self.floor => match only {
                                Some(want) if want != id => {
                                    tracing::debug!(target: LOG, "dropped event {e:?} while reading {want}");
                                }
                                _ => return Next::Event(e),
                            },
                            _ => {
                                tracing::debug!(target: LOG, "dropped event {e:?} of an abandoned request");
                            }
                        }
                    }
                    Action::Close => {
                        self.dead = true;
                        self.wbuf.clear();
                    }
                }
            }
            if self.dead {
                if self.closed || self.eof_given {
                    return Next::Over(self.fault.clone().unwrap_or(Error::Closed));
                }
                // The transport is gone but the machine has not closed yet.
                self.eof_given = true;
                self.machine.handle_eof(now);
                continue;
            }
            // Input left over from backpressure goes first.
            if self.rstart < self.rend && !self.start_tls && !self.handshaking {
                let used = self
                    .machine
                    .handle_input(now, &self.rbuf[self.rstart..self.rend]);
                self.rstart += used;
                if used > 0 {
                    continue;
                }
            }
            return Next::Io;
        }
    }

    /// The I/O wanted next. Call after an operation's poll returned `None`.
    pub fn want(&mut self, now: Instant) -> Want<'_> {
        // A closed machine has nothing left to send or to read (its Close
        // may still wait behind the event that ended an operation).
        if self.dead || self.machine.state() == super::ClientState::Closed {
            return Want::Done;
        }
        if !self.wbuf.is_empty() {
            return Want::Write(&self.wbuf);
        }
        if self.unflushed {
            return Want::Flush;
        }
        if self.start_tls {
            self.start_tls = false;
            // Octets read but not taken came in clear text after `+OK`: an
            // injection attempt, never data (the machine fails the session
            // itself when it sees them; this holds even if it has not).
            if self.rstart < self.rend {
                let octets = self.rend - self.rstart;
                self.fail(
                    now,
                    Error::Protocol(ProtocolError::StlsInjection { octets }),
                );
                return Want::Done;
            }
            self.rstart = 0;
            self.rend = 0;
            self.handshaking = true;
        }
        if self.handshaking {
            return Want::StartTls;
        }
        if let Some(work) = &self.compute {
            return Want::Compute(work.clone());
        }
        if self.rstart >= self.rend {
            self.rstart = 0;
            self.rend = 0;
        } else if self.rstart > 0 {
            self.rbuf.copy_within(self.rstart..self.rend, 0);
            self.rend -= self.rstart;
            self.rstart = 0;
        }
        if self.rend == self.rbuf.len() {
            // The machine takes no more and has nothing to say: it cannot
            // make progress on this input.
            let limit = self.rbuf.len();
            self.fail(now, Error::Protocol(ProtocolError::LineTooLong { limit }));
            return Want::Done;
        }
        Want::Read(&mut self.rbuf[self.rend..])
    }

    /// How the write of [`Want::Write`] went: octets written (0: the
    /// transport takes no more, a failure), or the error.
    pub fn wrote(&mut self, now: Instant, result: io::Result<usize>) {
        match result {
            Ok(0) => self.fail(now, Error::io(io::ErrorKind::WriteZero.into())),
            Ok(n) => {
                self.last_progress = now;
                self.unflushed = true;
                self.wbuf.advance(n.min(self.wbuf.len()));
            }
            Err(e) => self.fail(now, Error::io(e)),
        }
    }

    /// How the flush of [`Want::Flush`] went.
    pub fn flushed(&mut self, now: Instant, result: io::Result<()>) {
        match result {
            Ok(()) => self.unflushed = false,
            Err(e) => self.fail(now, Error::io(e)),
        }
    }

    /// How the read into the buffer of [`Want::Read`] went: octets read (0
    /// is the end of the stream), or the error.
    pub fn received(&mut self, now: Instant, result: io::Result<usize>) {
        let n = match result {
            Ok(0) => {
                self.dead = true;
                self.eof_given = true;
                self.machine.handle_eof(now);
                return;
            }
            Ok(n) => n,
            Err(e) => return self.fail(now, Error::io(e)),
        };
        self.last_progress = now;
        self.rend = (self.rend + n).min(self.rbuf.len());
        let used = self
            .machine
            .handle_input(now, &self.rbuf[self.rstart..self.rend]);
        self.rstart += used;
    }

    /// The `tls-exporter` channel binding of the TLS connection (implicit
    /// TLS, or after the handshake of [`Want::StartTls`]), for
    /// SCRAM-SHA-256-PLUS; see [`Client::set_tls_exporter`].
    pub fn set_tls_exporter(&mut self, value: Option<[u8; 32]>) {
        self.machine.set_tls_exporter(value);
    }

    /// How the handshake of [`Want::StartTls`] went; a failure ends the
    /// session.
    pub fn tls_done(&mut self, now: Instant, result: io::Result<()>) {
        self.handshaking = false;
        match result {
            Ok(()) => {
                self.last_progress = now;
                self.machine.handle_tls_established(now);
            }
            Err(e) => self.fail(now, Error::Tls(std::sync::Arc::new(e))),
        }
    }

    /// How the work of [`Want::Compute`] went: its result, or why it did not
    /// finish (it panicked, or the thread pool was shut down), which ends
    /// the session with [`Error::SaslWork`]. A result given when no work is
    /// wanted (again, or after the session ended) is ignored; so is the
    /// result of other work, and the wanted one is still asked for.
    pub fn computed(&mut self, now: Instant, result: io::Result<SaslWorkDone>) {
        if self.compute.is_none() {
            return;
        }
        match result {
            Ok(done) => {
                if !self.machine.sasl_work_done(now, done) && self.machine.sasl_work_pending() {
                    return;
                }
                self.compute = None;
                // The time spent computing is not idleness of the transport.
                self.waiting_since = None;
            }
            Err(e) => {
                self.compute = None;
                self.fail(now, Error::SaslWork(std::sync::Arc::new(e)));
            }
        }
    }

    /// The transport failed: remember why and let the machine wind down.
    fn fail(&mut self, now: Instant, error: Error) {
        tracing::debug!(target: LOG, "transport failed: {error}");
        self.fault.get_or_insert(error);
        self.dead = true;
        self.wbuf.clear();
        self.handshaking = false;
        self.compute = None;
        if !self.eof_given {
            self.eof_given = true;
            self.machine.handle_eof(now);
        }
    }

    /// When [`Connection::handle_timeout`] is due while the wanted I/O is
    /// pending: the nearest of the connect deadline, the machine's reply
    /// timeout, the idle timeout (counted from the later of the last
    /// progress and the start of this wait, `now` if it starts now) and the
    /// time given to [`Connection::wake_at`]. None while [`Want::Compute`]
    /// runs: the work is local.
    pub fn poll_timeout(&mut self, now: Instant) -> Option<Instant> {
        if self.compute.is_some() {
            return None;
        }
        let since = *self.waiting_since.get_or_insert(now);
        let idle = self
            .config
            .idle_timeout
            .map(|d| self.last_progress.max(since) + d);
        [
            self.connect_deadline(),
            self.machine.poll_timeout(),
            idle,
            self.wake,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Asks to be woken at `at` (`None`: not at all) while the I/O waits:
    /// [`Connection::poll_timeout`] returns it when it is the nearest
    /// deadline, and [`Connection::handle_timeout`] at or after it only
    /// forgets it, so that the caller's loop runs its operation again. A
    /// driver on the connection uses it for a deadline of its own (the
    /// fetch driver: messages held for the sink).
    pub fn wake_at(&mut self, at: Option<Instant>) {
        self.wake = at;
    }

    /// The application did local work (stored what arrived, say) since
    /// the last reply: the time it took is not the server's. The reply
    /// timeout and the idle timeout count from `now`.
    pub fn local_work_done(&mut self, now: Instant) {
        self.machine.restart_reply_timer(now);
        self.waiting_since = None;
        self.last_progress = self.last_progress.max(now);
    }

    /// The connect deadline, until the greeting arrives.
    fn connect_deadline(&self) -> Option<Instant> {
        self.connect_deadline
            .filter(|_| self.machine.greeting().is_none())
    }

    /// Time passed: a deadline of [`Connection::poll_timeout`] may be due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.compute.is_some() {
            return;
        }
        if self.wake.is_some_and(|at| now >= at) {
            self.wake = None;
        }
        if self.connect_deadline().is_some_and(|d| now >= d) {
            self.fail(now, Error::Timeout(TimeoutKind::Connect));
        } else if self.machine.poll_timeout().is_some_and(|d| now >= d) {
            self.machine.handle_timeout(now);
        } else if self.config.idle_timeout.is_some_and(|idle| {
            now >= self.last_progress.max(self.waiting_since.unwrap_or(now)) + idle
        }) {
            self.fail(now, Error::Timeout(TimeoutKind::Idle));
        }
    }
}
