//! The server connection layer: the machine plus its read and write
//! buffers, saying what I/O (or store call) it wants next, with no I/O of
//! its own.

use alloc::boxed::Box;
use alloc::vec;
use bytes::{Buf, BytesMut};
use core::time::Duration;

use super::{CloseReason, Server, StoreReply, StoreRequest};
use crate::session::Action;
use crate::time::Instant;

/// Socket-level settings of a server: limits and timeouts that concern
/// connections, not the protocol. The connection layer applies the write
/// stall timeout and the shutdown grace; the adapters apply the rest.
#[derive(Debug, Clone)]
#[non_exhaustive]
#[must_use = "a configuration does nothing until it is used"]
pub struct ServerOptions {
    /// Connections served at once (default 8,192: an idle session costs
    /// some 11 KB, so about 90 MB at the cap). Further ones are accepted,
    /// answered [`Refusal::Full`](super::Refusal::Full)'s `-ERR [SYS/TEMP]`
    /// and closed at once (see [`Admission`](super::Admission)).
    pub max_connections: usize,
    /// Connections served at once from one client address, an IPv6 /64
    /// counting as one (default 32): one client holding idle connections
    /// cannot take the slots of everyone else. Further ones get
    /// [`Refusal::AddressFull`](super::Refusal::AddressFull)'s
    /// `-ERR [SYS/TEMP]` and are closed.
    pub max_connections_per_address: usize,
    /// A write that makes no progress for this long ends the session
    /// without UPDATE (a client that never reads its replies). A client
    /// that reads a little now and then is bound by the session's own
    /// deadlines meanwhile (login timeout, silence before login,
    /// autologout: see [`Connection`]).
    pub write_stall_timeout: Duration,
    /// Time allowed for a TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// After shutdown is requested, sessions still open this long are closed
    /// as if the connection dropped (no UPDATE).
    pub shutdown_grace: Duration,
    /// A store request not answered in this long is abandoned
    /// ([`Server::handle_store_timeout`]): the client gets
    /// `-ERR [SYS/TEMP]` and the session ends without UPDATE, so a hung
    /// store cannot hold a connection slot for ever. The adapter enforces
    /// it by racing the store call against [`Connection::poll_timeout`].
    /// A commit is waited for no longer either, but runs to its end
    /// ([commits](crate::store#commits)).
    pub store_timeout: Duration,
    /// Every connection opens with a PROXY protocol header from a trusted
    /// load balancer, whose client address then stands for the
    /// connection's; a connection from elsewhere is closed (default
    /// `None`: no header is read). The adapters read the header before the
    /// greeting (and before an implicit TLS handshake), admit the client
    /// it names, and give its address to the session.
    pub proxy_protocol: Option<crate::proxy::ProxyPolicy>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_connections: 8192,
            max_connections_per_address: 32,
            write_stall_timeout: Duration::from_secs(60),
            tls_handshake_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
            store_timeout: Duration::from_secs(120),
            proxy_protocol: None,
        }
    }
}

/// Replies are written once this many octets are waiting, even while the
/// machine has more to say (a streamed message goes out as it is encoded).
const WRITE_CHUNK: usize = 64 * 1024;

/// How much is read at once (commands are short: the machine keeps the
/// partial lines).
const READ_CHUNK: usize = 4 * 1024;

/// An idle connection gives back a write buffer larger than this (one that
/// grew while a message was streamed): idle sessions stay small.
const IDLE_WRITE_BUFFER: usize = 16 * 1024;

/// The I/O (or store call) a server [`Connection`] wants next.
///
/// Exhaustive on purpose: an adapter must perform every case, and a case it
/// did not know would leave the connection waiting for I/O that never
/// happens. A new case is therefore a breaking change, made only in a
/// breaking release, so that every adapter's match stops compiling instead.
#[derive(Debug)]
#[must_use = "the connection waits for this"]
pub enum Want<'a> {
    /// Write (some of) these octets, then [`Connection::wrote`].
    Write(&'a [u8]),
    /// Flush the transport, then [`Connection::flushed`].
    Flush,
    /// Perform this request against the store (with a
    /// [`StoreDriver`](crate::store::StoreDriver)), then
    /// [`Connection::store_done`]. Wait for it until
    /// [`Connection::poll_timeout`] at most, then call
    /// [`Connection::handle_timeout`] instead (the store timeout: the
    /// request is abandoned, the session ends).
    Store(StoreRequest),
    /// Run the server side of the TLS handshake now (what was read in clear
    /// text has been discarded), then [`Connection::tls_done`]. Asked again
    /// until it is called.
    StartTls,
    /// Read into this buffer, then [`Connection::received`] (0 for the end
    /// of the stream).
    Read(&'a mut [u8]),
    /// Nothing until [`Connection::poll_timeout`] (or a shutdown request).
    Wait,
    /// The session is over: close the transport, with a TLS close_notify
    /// when `graceful` (not when the connection was cut: a peer that reads
    /// nothing must not hold it).
    Close {
        /// Whether to shut the transport down politely.
        graceful: bool,
    },
}

/// What the machine asked for that must wait until the writes are out.
#[derive(Debug)]
enum Slot {
    Store(StoreRequest),
    StartTls,
    Close,
}

/// A server session with its buffers: the [`Server`] machine, replies
/// coalesced into one write buffer, the octets read and not yet taken, and
/// the per-connection rules:
///
/// - replies are written before the store is asked for more (which paces a
///   streamed message by the client's reading);
/// - a store request is performed even after the connection failed (a
///   commit that QUIT started runs to completion, a release releases);
/// - plaintext that arrived after STLS is discarded, never executed;
/// - input is read only while the machine wants it (backpressure);
/// - a write that makes no progress for
///   [`ServerOptions::write_stall_timeout`], and a session still open
///   [`ServerOptions::shutdown_grace`] after [`Connection::shutdown`], are
///   cut: the session ends without UPDATE and without a TLS close_notify;
/// - the session's deadlines (the time to log in, the silence before login,
///   the autologout) run while replies are being written too: one that
///   passes before they are out cuts the session the same way, so a client
///   that reads slowly cannot outlive them.
///
/// Driving it:
///
/// ```
/// use std::sync::Arc;
/// use pop3_proto::server::{Connection, ConnectionContext, Server, ServerConfig, ServerOptions, Want};
/// use pop3_proto::store::{MemoryStore, StoreDriver};
/// use pop3_proto::time::Instant;
/// # fn ready<F: Future>(f: F) -> F::Output {
/// #     let mut f = std::pin::pin!(f);
/// #     match f.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
/// #         std::task::Poll::Ready(v) => v,
/// #         std::task::Poll::Pending => unreachable!("MemoryStore never waits"),
/// #     }
/// # }
///
/// let store = Arc::new(MemoryStore::new());
/// store.add_user("demo", "demo");
/// let config = Arc::new(ServerConfig::default().allow_plaintext_auth(true));
/// let now = Instant::ZERO;
/// let machine = Server::new(config, now, ConnectionContext::new(7, false, false));
/// let mut conn = Connection::new(machine, &ServerOptions::default());
/// let mut driver = StoreDriver::new(store);
/// let mut client: &[u8] = b"USER demo\r\nPASS demo\r\nSTAT\r\nQUIT\r\n";
/// let mut wire = Vec::new();
/// loop {
///     match conn.want(now) {
///         Want::Write(octets) => {
///             let n = octets.len();
///             wire.extend_from_slice(octets);
///             conn.wrote(now, Ok::<_, ()>(n));
///         }
///         Want::Flush => conn.flushed(now, Ok::<_, ()>(())),
///         Want::Store(request) => {
///             // An adapter awaits this on its runtime.
///             let reply = ready(driver.execute(request));
///             conn.store_done(now, reply);
///         }
///         Want::Read(buf) => {
///             let n = client.len().min(buf.len());
///             buf[..n].copy_from_slice(&client[..n]);
///             client = &client[n..];
///             conn.received(now, Ok::<_, ()>(n));
///         }
///         Want::StartTls | Want::Wait => unreachable!(),
///         Want::Close { .. } => break,
///     }
/// }
/// assert!(String::from_utf8(wire).unwrap().contains("+OK 0 0\r\n"));
/// ```
#[derive(Debug)]
pub struct Connection {
    machine: Server,
    write_stall: Duration,
    grace: Duration,
    wbuf: BytesMut,
    unflushed: bool,
    rbuf: Box<[u8]>,
    rstart: usize,
    rend: usize,
    slot: Option<Slot>,
    /// Nothing more is read: the peer closed its side (it may still read
    /// the replies), or the connection is gone.
    read_closed: bool,
    /// The machine was told of the end of the input (after every octet
    /// read was fed to it).
    eof_told: bool,
    /// We cut the connection (a failed or stalled write, the grace over).
    cut: bool,
    handshaking: bool,
    /// When the current write began to wait, or last made progress.
    write_since: Option<Instant>,
    /// When the outstanding store request was handed out.
    store_since: Option<Instant>,
    store_timeout: Duration,
    shutdown_at: Option<Instant>,
    /// [`Connection::shutdown`] was called (stays true after the cut).
    shutting_down: bool,
}

impl Connection {
    /// A connection for `machine` (its greeting is the first write).
    pub fn new(machine: Server, options: &ServerOptions) -> Connection {
        Connection {
            machine,
            write_stall: options.write_stall_timeout,
            grace: options.shutdown_grace,
            wbuf: BytesMut::new(),
            unflushed: false,
            rbuf: vec![0; READ_CHUNK].into_boxed_slice(),
            rstart: 0,
            rend: 0,
            slot: None,
            read_closed: false,
            eof_told: false,
            cut: false,
            handshaking: false,
            write_since: None,
            store_since: None,
            store_timeout: options.store_timeout,
            shutdown_at: None,
            shutting_down: false,
        }
    }

    /// The session machine (state, user, summary for the log line).
    pub fn machine(&self) -> &Server {
        &self.machine
    }

    /// What to do next. Call again after reporting how it went.
    pub fn want(&mut self, now: Instant) -> Want<'_> {
        loop {
            // Everything the machine said so far goes out first.
            if !self.cut && (!self.wbuf.is_empty() || self.unflushed) {
                self.pull();
                self.write_since.get_or_insert(now);
                return if self.wbuf.is_empty() {
                    Want::Flush
                } else {
                    Want::Write(&self.wbuf)
                };
            }
            self.write_since = None;
            match self.slot.take() {
                Some(Slot::Store(request)) => {
                    self.store_since = Some(now);
                    return Want::Store(request);
                }
                Some(Slot::StartTls) if !self.cut && !self.read_closed => {
                    self.handshaking = true;
                    self.slot = Some(Slot::StartTls);
                    return Want::StartTls;
                }
                // The peer closed its side (or the connection is gone): no
                // handshake can happen, which ends the session as a failed
                // one does.
                Some(Slot::StartTls) => {
                    if !self.cut {
                        self.cut(now);
                    }
                    continue;
                }
                Some(Slot::Close) => {
                    self.slot = Some(Slot::Close);
                    return Want::Close {
                        graceful: !self.cut,
                    };
                }
                None => {}
            }
            if self.pull() {
                continue;
            }
            // Input already read, as far as the machine wants it.
            if self.rstart < self.rend && self.machine.wants_input() {
                let used = self
                    .machine
                    .handle_input(now, &self.rbuf[self.rstart..self.rend]);
                self.rstart += used;
                if used > 0 {
                    continue;
                }
            }
            if self.read_closed {
                // A half-closed peer still gets every reply: the machine
                // hears of the end only once it has taken all that was read.
                if !self.eof_told && (self.rstart >= self.rend || self.cut) {
                    self.eof_told = true;
                    self.machine.handle_eof(now);
                    continue;
                }
                return Want::Wait;
            }
            if !self.machine.wants_input() {
                return Want::Wait;
            }
            if self.wbuf.capacity() > IDLE_WRITE_BUFFER {
                self.wbuf = BytesMut::new();
            }
            if self.rstart >= self.rend {
                self.rstart = 0;
                self.rend = 0;
            } else if self.rstart > 0 {
                self.rbuf.copy_within(self.rstart..self.rend, 0);
                self.rend -= self.rstart;
                self.rstart = 0;
            }
            return Want::Read(&mut self.rbuf[self.rend..]);
        }
    }

    /// Takes the machine's actions into the write buffer until one must wait
    /// for the writes (a store request, STLS, close) or the buffer is full.
    /// `true` if anything was taken.
    fn pull(&mut self) -> bool {
        let mut took = false;
        while self.slot.is_none() && self.wbuf.len() < WRITE_CHUNK {
            let Some(action) = self.machine.poll_action() else {
                break;
            };
            took = true;
            match action {
                Action::Send(t) => {
                    if !self.cut {
                        self.wbuf.extend_from_slice(&t.bytes);
                    }
                }
                Action::StartTls => {
                    // Plaintext that arrived after STLS is never executed.
                    self.rstart = 0;
                    self.rend = 0;
                    self.slot = Some(Slot::StartTls);
                }
                Action::Event(request) => self.slot = Some(Slot::Store(request)),
                Action::Close => self.slot = Some(Slot::Close),
            }
        }
        took
    }

    /// How the write of [`Want::Write`] went: octets written (0 is a
    /// failure), or an error (the adapter logs it; the session is cut).
    pub fn wrote<E>(&mut self, now: Instant, result: Result<usize, E>) {
        match result {
            Ok(n) if n > 0 => {
                self.wbuf.advance(n.min(self.wbuf.len()));
                self.unflushed = true;
                self.write_since = Some(now);
            }
            _ => self.cut(now),
        }
    }

    /// How the flush of [`Want::Flush`] went.
    pub fn flushed<E>(&mut self, now: Instant, result: Result<(), E>) {
        match result {
            Ok(()) => self.unflushed = false,
            Err(_) => self.cut(now),
        }
    }

    /// How the read into the buffer of [`Want::Read`] went: octets read, or
    /// 0 for the end of the stream (the peer closed its sending side: the
    /// commands it sent are still answered); an error means the connection
    /// is gone (the session ends without UPDATE).
    pub fn received<E>(&mut self, now: Instant, result: Result<usize, E>) {
        let n = match result {
            Ok(0) => {
                self.read_closed = true;
                return;
            }
            Ok(n) => n,
            Err(_) => {
                self.cut(now);
                return;
            }
        };
        self.rend = (self.rend + n).min(self.rbuf.len());
        let used = self
            .machine
            .handle_input(now, &self.rbuf[self.rstart..self.rend]);
        self.rstart += used;
    }

    /// The store's answer to [`Want::Store`].
    pub fn store_done(&mut self, now: Instant, reply: StoreReply) {
        if self.store_since.take().is_some() {
            self.machine.handle_store(now, reply);
        }
    }

    /// What the handshake of [`Want::StartTls`] established (client
    /// certificate, channel binding), before [`Connection::tls_done`].
    pub fn tls_info(&mut self, info: super::TlsInfo) {
        self.machine.handle_tls_info(info);
    }

    /// How the handshake of [`Want::StartTls`] went; a failure cuts the
    /// session.
    pub fn tls_done<E>(&mut self, now: Instant, result: Result<(), E>) {
        self.handshaking = false;
        self.slot = None;
        match result {
            Ok(()) => self.machine.handle_tls_established(now),
            Err(_) => self.cut(now),
        }
    }

    /// Asks the session to end: one not logged in is told so and closed
    /// ([`Server::handle_shutdown`]); a logged-in one goes on for the
    /// shutdown grace (its QUIT commits as usual), then is cut without
    /// UPDATE.
    pub fn shutdown(&mut self, now: Instant) {
        self.shutdown_within(now, self.grace);
    }

    /// [`Connection::shutdown`] with this grace instead of the
    /// [`ServerOptions::shutdown_grace`] the connection was made with (the
    /// one in force when the shutdown began, a reload having changed it).
    pub fn shutdown_within(&mut self, now: Instant, grace: Duration) {
        if !self.shutting_down {
            self.shutting_down = true;
            self.shutdown_at = Some(now + grace);
            self.machine.handle_shutdown(now);
        }
    }

    /// Whether [`Connection::shutdown`] was called.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }

    fn cut(&mut self, now: Instant) {
        self.cut = true;
        self.read_closed = true;
        self.eof_told = true;
        self.wbuf.clear();
        self.unflushed = false;
        self.write_since = None;
        if self.handshaking {
            self.handshaking = false;
            if matches!(self.slot, Some(Slot::StartTls)) {
                self.slot = None;
            }
        }
        self.machine.handle_disconnect(now);
    }

    /// When [`Connection::handle_timeout`] is due while the wanted I/O is
    /// pending: the store timeout while a store request is outstanding;
    /// else the end of the shutdown grace, and while writing the write
    /// stall deadline and the deadlines that end the session (time to log
    /// in, silence before login, autologout: they hold whatever waits
    /// behind the replies), the machine's timers otherwise.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if let Some(since) = self.store_since {
            // Only the store's answer or its timeout moves the session on.
            return Some(since + self.store_timeout);
        }
        let own = match self.write_since {
            Some(since) => {
                let stall = since + self.write_stall;
                Some(match self.machine.session_deadline() {
                    Some((at, _)) => stall.min(at),
                    None => stall,
                })
            }
            // (A failed login's delay, due while writing, only queues its
            // reply behind those being written: it waits for them.)
            None => self.machine.poll_timeout(),
        };
        [own, self.shutdown_at].into_iter().flatten().min()
    }

    /// Time passed: a deadline of [`Connection::poll_timeout`] may be due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(since) = self.store_since {
            if now >= since + self.store_timeout {
                self.store_since = None;
                self.machine.handle_store_timeout(now);
            }
            return;
        }
        if self.shutdown_at.is_some_and(|at| now >= at) {
            self.shutdown_at = None;
            if !self.cut {
                self.machine.set_close_reason(CloseReason::Shutdown);
                self.cut(now);
            }
        } else if let Some(since) = self.write_since {
            if now >= since + self.write_stall {
                self.cut(now);
            } else if let Some((_, reason)) =
                self.machine.session_deadline().filter(|&(at, _)| now >= at)
            {
                // The session's own deadline passed with replies still
                // unwritten: a peer that reads slowly cannot hold it open.
                self.machine.set_close_reason(reason);
                self.cut(now);
            }
        } else {
            self.machine.handle_timeout(now);
        }
    }
}
