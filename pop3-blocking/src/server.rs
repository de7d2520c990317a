//! The server face: accept connections on a `std::net` listener and run one
//! core server [`Connection`] per connection, each on a thread of its own,
//! against a [`Store`].
//!
//! The adapter only moves bytes, sets socket timeouts, performs TLS and calls
//! the store; every protocol decision is the machine's.
//!
//! # Stores
//!
//! Store calls run on the session's thread: [`StoreDriver::execute`] is
//! driven to completion there (the thread sleeps while the future is
//! pending). A [`BlockingStore`](pop3_proto::store::BlockingStore), such as
//! [`MaildirStore`](crate::maildir::MaildirStore), is served as an
//! [`OffloadStore<S, Inline>`](pop3_proto::store::OffloadStore), which makes each call on the
//! calling thread; a store whose futures need an async runtime's reactor
//! does not belong here.
//!
//! ```
//! use pop3_blocking::maildir::MaildirStore;
//! use pop3_blocking::passwd::PasswdFile;
//! use pop3_blocking::server::{Pop3Server, Security};
//! use pop3_proto::server::ServerConfig;
//! use pop3_proto::store::{Inline, OffloadStore};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let (passwd, mail) = (dir.path().join("passwd"), dir.path().join("mail"));
//! # std::fs::write(&passwd, "alice:{PLAIN}secret\n")?;
//! # for sub in ["cur", "new", "tmp"] { std::fs::create_dir_all(mail.join("alice").join(sub))?; }
//! let users = PasswdFile::load(&passwd)?; // "/etc/pop3/passwd"
//! let store: OffloadStore<_, Inline> = OffloadStore::new(MaildirStore::new(&mail, users)); // "/var/mail"
//! let server = Pop3Server::new(store, ServerConfig::default());
//! let listener = std::net::TcpListener::bind("127.0.0.1:0")?; // "0.0.0.0:110"
//! # let port = listener.local_addr()?.port();
//! # let stopper = server.clone();
//! # let client = std::thread::spawn(move || {
//! #     use pop3_blocking::client::{ConnectOptions, Pop3Client, Security};
//! #     let outcome = (|| {
//! #         let mut client = Pop3Client::connect("127.0.0.1", port, ConnectOptions::new(Security::Plain))?;
//! #         client.login("alice", "secret")?; // CRAM-MD5: a {PLAIN} password is at hand
//! #         assert_eq!(client.stat()?.count, 0);
//! #         client.quit()?;
//! #         Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
//! #     })();
//! #     stopper.shutdown();
//! #     outcome.unwrap(); // after the shutdown: a failure fails the test, never hangs it
//! # });
//! server.serve(listener, Security::Plain)?;
//! # client.join().unwrap();
//! # Ok(()) }
//! ```
//!
//! # Shutdown
//!
//! [`Pop3Server::shutdown`] stops every [`serve`](Pop3Server::serve) loop
//! (each is woken by a connection to its own listener) and gives every
//! session [`ServerOptions::shutdown_grace`] to end; a session still open
//! then is cut, without UPDATE. A session waiting on a quiet client wakes
//! once per grace (no more often than every 100 ms) to notice a shutdown in
//! time. A store call or a TLS handshake under way is not interrupted.

use std::future::Future;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::pin::pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use pop3_proto::proxy::ProxyPolicy;
use pop3_proto::server::{Connection, Refusal, Server, ServerConfig, StoreDriver, Want};
use pop3_proto::store::Store;

use crate::common::{
    ACCEPT_BACKOFF, Admitted, Gate, Pass, SessionSettings, admit_accepted, admit_proxied,
    connection_context, is_transient_accept_error, read_proxy_header, send_refusal,
};
use crate::io::{Clock, Socket, Stream, Transport};
use crate::metrics::{Metrics, SessionMeter};
use crate::tls::secure_random;
use pop3_proto::__tracing as tracing;

pub use crate::common::{ServerOptions, ServerSecurity as Security};

/// The shortest a waiting session sleeps between looks at the shutdown
/// signal, whatever the grace.
const LEAST_WAKE: Duration = Duration::from_millis(100);

/// Sessions running and listeners serving, under [`Inner::state`].
#[derive(Debug, Default)]
struct State {
    active: usize,
    listeners: Vec<SocketAddr>,
}

struct Inner<S> {
    store: Arc<S>,
    /// The configuration and options, under the gate's limits per session.
    settings: SessionSettings,
    tls: Option<Arc<rustls::ServerConfig>>,
    state: Mutex<State>,
    /// Signalled when a session ends and at shutdown.
    changed: Condvar,
    /// When shutdown was asked for.
    stop: OnceLock<Instant>,
}

impl<S> Inner<S> {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A connection slot, given back when dropped.
/// An open session's place under the caps (and in `wait_idle`'s count).
struct Slot<'a, S> {
    inner: &'a Inner<S>,
    /// None while the connection's PROXY header is read (it holds a
    /// reservation then).
    pass: Option<Pass>,
}

impl<S> Drop for Slot<'_, S> {
    fn drop(&mut self) {
        // The place under the caps first: once `wait_idle` returns, a new
        // connection finds it free.
        drop(self.pass.take());
        self.inner.state().active -= 1;
        self.inner.changed.notify_all();
    }
}

/// A blocking POP3 server: a store, a protocol configuration, optionally a
/// TLS configuration. Cheap to clone; clones share the connection cap and
/// the shutdown signal, so one server can serve several listeners (one
/// thread calling [`serve`](Pop3Server::serve) each).
///
/// ```
/// use pop3_blocking::server::{Pop3Server, Security};
/// use pop3_proto::server::ServerConfig;
/// use pop3_proto::store::MemoryStore;
///
/// # fn main() -> std::io::Result<()> {
/// let store = MemoryStore::new();
/// let server = Pop3Server::new(store, ServerConfig::default());
/// let listener = std::net::TcpListener::bind("127.0.0.1:0")?; // any free port
/// # let port = listener.local_addr()?.port();
/// # let stopper = server.clone();
/// # let client = std::thread::spawn(move || {
/// #     use pop3_blocking::client::{ConnectOptions, Pop3Client, Security};
/// #     let outcome = (|| {
/// #         let client = Pop3Client::connect("127.0.0.1", port, ConnectOptions::new(Security::Plain));
/// #         client?.quit()?;
/// #         Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
/// #     })();
/// #     stopper.shutdown();
/// #     outcome.unwrap(); // after the shutdown: a failure fails the test, never hangs it
/// # });
/// # let served =
/// server.serve(listener, Security::Plain)
/// # ;
/// # client.join().unwrap();
/// # served
/// # }
/// ```
pub struct Pop3Server<S> {
    inner: Arc<Inner<S>>,
    gate: Gate,
    metrics: Arc<Metrics>,
}

impl<S> Clone for Pop3Server<S> {
    fn clone(&self) -> Self {
        Pop3Server {
            inner: self.inner.clone(),
            gate: self.gate.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

impl<S> std::fmt::Debug for Pop3Server<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pop3Server")
            .field("state", &*self.inner.state())
            .field("stopping", &self.inner.stop.get().is_some())
            .finish_non_exhaustive()
    }
}

impl<S: Store> Pop3Server<S>
where
    S::Maildrop: 'static,
{
    /// A server without TLS and with default [`ServerOptions`].
    pub fn new(store: S, config: ServerConfig) -> Self {
        Self::build(Arc::new(store), config, None, ServerOptions::default())
    }

    /// The full constructor: a shared store, the protocol configuration, an
    /// optional TLS configuration (needed for STLS and implicit TLS) and the
    /// adapter options. The configuration's credential forms are taken from
    /// the store, so CAPA offers only mechanisms the store can check.
    pub fn build(
        store: Arc<S>,
        config: ServerConfig,
        tls: Option<Arc<rustls::ServerConfig>>,
        options: ServerOptions,
    ) -> Self {
        let config = Arc::new(config.credential_forms(store.credential_forms()));
        let gate = Gate::new(&options);
        Pop3Server {
            inner: Arc::new(Inner {
                store,
                settings: SessionSettings::new(config, options),
                tls,
                state: Mutex::default(),
                changed: Condvar::new(),
                stop: OnceLock::new(),
            }),
            gate,
            metrics: Arc::default(),
        }
    }

    /// Counts this server's connections under `gate`'s caps instead of
    /// caps of its own (those of [`ServerOptions`]), and starts each
    /// session with the time limits `gate` holds then
    /// ([`Gate::set_limits`], over the server's own): caps and limits that
    /// can be changed while serving (what a reload does), or shared with
    /// other servers. Clones made afterwards share it.
    ///
    /// ```
    /// use pop3_blocking::common::{Gate, ServerOptions};
    /// use pop3_blocking::server::Pop3Server;
    /// use pop3_proto::store::MemoryStore;
    ///
    /// let gate = Gate::new(&ServerOptions::default());
    /// let server = Pop3Server::new(MemoryStore::new(), Default::default()).with_gate(gate.clone());
    /// let mut lowered = ServerOptions::default();
    /// lowered.max_connections = 10;
    /// gate.set_caps(&lowered); // new connections over 10 are refused from now on
    /// # drop(server);
    /// ```
    #[must_use]
    pub fn with_gate(mut self, gate: Gate) -> Self {
        self.gate = gate;
        self
    }

    /// Counts this server's sessions, logins, store calls, refusals and
    /// handshakes in `metrics` (serve them with
    /// [`metrics::serve`](crate::metrics::serve)). Clones made afterwards
    /// share it.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use pop3_blocking::metrics::Metrics;
    /// use pop3_blocking::server::Pop3Server;
    /// use pop3_proto::store::MemoryStore;
    ///
    /// let metrics = Arc::new(Metrics::new());
    /// let server = Pop3Server::new(MemoryStore::new(), Default::default())
    ///     .with_metrics(metrics.clone());
    /// # drop(server);
    /// ```
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Asks every `serve` loop to stop accepting and every session to end
    /// (after [`ServerOptions::shutdown_grace`], without UPDATE). Returns at
    /// once.
    pub fn shutdown(&self) {
        let _ = self.inner.stop.set(Instant::now());
        let listeners = self.inner.state().listeners.clone();
        self.inner.changed.notify_all();
        // Wake the loops waiting in `accept`.
        for mut addr in listeners {
            if addr.ip().is_unspecified() {
                addr.set_ip(match addr {
                    SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                    SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
                });
            }
            let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
        }
    }

    /// Sessions open now (for metrics, and to wait for a slot to free).
    pub fn open_connections(&self) -> usize {
        self.inner.state().active
    }

    /// Waits until every session has ended.
    pub fn wait_idle(&self) {
        let state = self.inner.state();
        let _idle = self
            .inner
            .changed
            .wait_while(state, |s| s.active > 0)
            .unwrap_or_else(PoisonError::into_inner);
    }

    /// Accepts connections on `listener` until [`shutdown`](Self::shutdown),
    /// serving each on a thread of its own once a connection slot is free;
    /// returns when the sessions it started have ended too. Every
    /// connection starts with a PROXY protocol header when
    /// [`ServerOptions::proxy_protocol`] is set
    /// ([`serve_proxied`](Self::serve_proxied) decides per listener).
    pub fn serve(&self, listener: TcpListener, security: Security) -> io::Result<()> {
        let policy = self.inner.settings.built_options().proxy_protocol.clone();
        self.serve_proxied(listener, security, policy)
    }

    /// [`serve`](Self::serve) with this listener's own PROXY protocol
    /// policy (`None`: its connections come straight from clients),
    /// whatever [`ServerOptions::proxy_protocol`] says: one server can
    /// serve a listener behind a load balancer and one for direct clients.
    ///
    /// A connection from a trusted proxy counts under the total cap as soon
    /// as it is accepted, while its header is read; the per-address cap
    /// applies to the client the header names.
    pub fn serve_proxied(
        &self,
        listener: TcpListener,
        security: Security,
        proxy: Option<ProxyPolicy>,
    ) -> io::Result<()> {
        if security == Security::ImplicitTls && self.inner.tls.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "implicit TLS needs a TLS configuration",
            ));
        }
        let addr = listener.local_addr()?;
        self.inner.state().listeners.push(addr);
        let served = thread::scope(|scope| {
            loop {
                if self.inner.stop.get().is_some() {
                    return Ok(());
                }
                // Accept, then admit or refuse at once: a client over a cap
                // gets `-ERR [SYS/TEMP]` instead of waiting in the backlog.
                let (stream, peer) = match listener.accept() {
                    Ok(accepted) => accepted,
                    Err(e) if is_transient_accept_error(&e) => {
                        tracing::warn!(error = %e, "accept failed");
                        thread::sleep(ACCEPT_BACKOFF);
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                if self.inner.stop.get().is_some() {
                    return Ok(());
                }
                // Admitted before its PROXY header is read: a source
                // holding it back holds a place under the total cap.
                let (pass, reservation) =
                    match admit_accepted(&self.gate, proxy.as_ref(), peer, &self.metrics) {
                        Admitted::Session(pass) => (Some(pass), None),
                        Admitted::ReadHeader(reservation) => (None, Some(reservation)),
                        Admitted::Refuse(refusal) => {
                            send_refusal(stream, refusal);
                            continue;
                        }
                        _ => continue,
                    };
                let _ = stream.set_nodelay(true);
                let slot = self.slot_of(pass);
                let timeout = proxy.as_ref().map_or(Duration::ZERO, |p| p.timeout);
                scope.spawn(move || {
                    let mut slot = slot;
                    let mut client = peer;
                    if let Some(reservation) = reservation {
                        let read = read_proxy_header(&stream, peer, timeout);
                        match admit_proxied(reservation, read, peer, &self.metrics) {
                            Ok((pass, from)) => {
                                slot.pass = Some(pass);
                                client = from;
                            }
                            Err(Some(refusal)) => return send_refusal(stream, refusal),
                            Err(None) => return,
                        }
                    }
                    self.session(Socket::new(stream), client, security);
                    drop(slot);
                });
            }
        });
        let mut state = self.inner.state();
        if let Some(i) = state.listeners.iter().position(|a| *a == addr) {
            state.listeners.swap_remove(i);
        }
        served
    }

    /// Serves one connection accepted elsewhere to its end, under the same
    /// caps as those `serve` accepts (over one, the client gets
    /// `-ERR [SYS/TEMP]` and the connection is closed at once).
    ///
    /// The stream is any [`Transport`]: a `TcpStream` (set `TCP_NODELAY`
    /// yourself), a `UnixStream`, a connection unwrapped from the PROXY
    /// protocol, or one already secured ([`Security::Secured`]). `peer` is
    /// the client's address, for the per-address cap and the log; a stream
    /// without one (a Unix socket) may pass an unspecified address, and
    /// such connections then share one per-address cap.
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use std::os::unix::net::UnixListener;
    /// use pop3_blocking::server::{Pop3Server, Security};
    /// use pop3_proto::store::MemoryStore;
    ///
    /// # fn main() -> std::io::Result<()> {
    /// # let server = Pop3Server::new(MemoryStore::new(), Default::default());
    /// # let dir = tempfile::tempdir()?;
    /// # let path = dir.path().join("pop3.sock");
    /// let listener = UnixListener::bind(&path)?; // "/run/pop3.sock"
    /// # let client = std::thread::spawn(move || {
    /// #     use pop3_blocking::client::{ConnectOptions, Pop3Client, Security};
    /// #     let unix = std::os::unix::net::UnixStream::connect(&path).unwrap();
    /// #     let client = Pop3Client::from_stream(unix, "localhost", ConnectOptions::new(Security::Plain));
    /// #     client.unwrap().quit().unwrap();
    /// # });
    /// # let served =
    /// std::thread::scope(|scope| {
    ///     for stream in listener.incoming() {
    ///         let (stream, server) = (stream?, &server);
    ///         let peer = SocketAddr::from(([0, 0, 0, 0], 0)); // a Unix socket has no IP address
    ///         scope.spawn(move || server.serve_connection(stream, peer, Security::Plain));
    /// #       break; // one connection in this test
    ///     }
    ///     Ok(())
    /// })
    /// # ;
    /// # client.join().unwrap();
    /// # served
    /// # }
    /// ```
    pub fn serve_connection<T: Transport + 'static>(
        &self,
        stream: T,
        peer: SocketAddr,
        security: Security,
    ) {
        // The connection counts against the caps and is waited for by
        // `wait_idle`, as one accepted by `serve` is.
        match self.slot(peer) {
            Ok(_slot) => self.session(Socket::new(stream), peer, security),
            Err(refusal) => {
                tracing::info!(%peer, "connection refused: {refusal}");
                self.metrics.refused(refusal);
                let mut stream = stream;
                let (_, options) = self.inner.settings.start(&self.gate);
                let _ = stream.set_timeout(Some(options.write_stall_timeout));
                let _ = stream.write_all(refusal.reply());
                let _ = stream.shutdown_write();
            }
        }
    }

    /// The connection's place under the caps, or why it is refused.
    fn slot(&self, peer: SocketAddr) -> Result<Slot<'_, S>, Refusal> {
        let pass = self.gate.admit(peer.ip())?;
        Ok(self.slot_of(Some(pass)))
    }

    /// An admitted connection, counted as open (for `wait_idle`).
    fn slot_of(&self, pass: Option<Pass>) -> Slot<'_, S> {
        self.inner.state().active += 1;
        Slot {
            inner: &self.inner,
            pass,
        }
    }

    fn session(&self, stream: Socket, peer: SocketAddr, security: Security) {
        let inner = &*self.inner;
        // The limits in force now, kept for the whole session.
        let (config, options) = inner.settings.start(&self.gate);
        let options = &*options;
        let mut io = Stream::Plain(stream);
        if security == Security::ImplicitTls {
            let accepted = accept_tls(&mut io, inner.tls.as_ref(), options.tls_handshake_timeout);
            self.metrics.tls_handshake(accepted.is_ok());
            if let Err(e) = accepted {
                tracing::info!(%peer, error = %e, "TLS handshake failed");
                return;
            }
        }
        let secured = security == Security::Secured;
        let random = secure_random(inner.tls.as_deref().map(|c| &**c.crypto_provider()));
        let ctx = match connection_context(
            random,
            io.is_tls() || secured,
            inner.tls.is_some() && !secured,
        ) {
            Ok(ctx) => ctx.tls_info(io.server_tls_info()).peer(Some(peer)),
            Err(e) => {
                tracing::error!(%peer, error = %e, "no randomness for the greeting; connection dropped");
                return;
            }
        };
        let clock = Clock::start();
        let machine = Server::new(config, clock.now(), ctx);
        let mut conn = Connection::new(machine, options);
        let mut meter = SessionMeter::start(self.metrics.clone());
        let mut driver = StoreDriver::new(inner.store.clone());
        let waker = Waker::from(Arc::new(Unpark(thread::current())));
        // Told of the shutdown (once: the core forgets it when the grace ends).
        let mut told = false;
        loop {
            // Logins and octets sent are counted as they happen.
            meter.update(&conn);
            // The grace in force now (a reload may have changed it since
            // the session started).
            let grace = inner.settings.shutdown_grace(&self.gate);
            if let Some(&at) = inner.stop.get().filter(|_| !told) {
                conn.shutdown_within(clock.at(at), grace);
                told = true;
            }
            let now = clock.now();
            // Never longer than the grace, so that a shutdown is seen in time.
            // A quarter of the grace: a session not logged in is told in time.
            let mut wait = (grace / 4).max(LEAST_WAKE);
            if let Some(deadline) = conn.poll_timeout() {
                wait = wait.min(clock.left(deadline));
            }
            if wait.is_zero() {
                conn.handle_timeout(clock.now());
                continue;
            }
            let stall = wait.min(options.write_stall_timeout);
            let done = match conn.want(now) {
                Want::Write(octets) => io.timed(Some(stall), |s| s.write(octets)).map(|r| {
                    conn.wrote(clock.now(), r);
                }),
                Want::Flush => io.timed(Some(stall), |s| s.flush()).map(|r| {
                    conn.flushed(clock.now(), r);
                }),
                Want::Read(buf) => io.timed(Some(wait), |s| s.read(buf)).map(|r| {
                    conn.received(clock.now(), r);
                }),
                Want::Store(request) => {
                    // A blocking store runs here, on the session's thread,
                    // and cannot be interrupted; an asynchronous one (an
                    // offloaded store) is waited for until the store
                    // timeout.
                    let deadline = conn.poll_timeout().map(|at| clock.left(at));
                    let started = Instant::now();
                    let reply = block_on(&waker, driver.execute(request), deadline);
                    self.metrics.store_call(started.elapsed());
                    match reply {
                        Some(reply) => conn.store_done(clock.now(), reply),
                        None => conn.handle_timeout(clock.now()),
                    }
                    Some(())
                }
                Want::StartTls => {
                    let tls = inner.tls.as_ref();
                    let upgraded = accept_tls(&mut io, tls, options.tls_handshake_timeout);
                    self.metrics.tls_handshake(upgraded.is_ok());
                    if let Err(e) = &upgraded {
                        tracing::debug!(%peer, error = %e, "STLS upgrade failed");
                    } else {
                        conn.tls_info(io.server_tls_info());
                    }
                    conn.tls_done(clock.now(), upgraded);
                    Some(())
                }
                Want::Wait => {
                    thread::sleep(wait);
                    None
                }
                Want::Close { graceful } => {
                    if graceful {
                        io.close(options.write_stall_timeout);
                    }
                    break;
                }
            };
            if done.is_none() {
                conn.handle_timeout(clock.now());
            }
        }
        drop(io);
        // A commit the store timeout stopped waiting for runs to its end.
        if let Some(result) = block_on(&waker, driver.finish(), None).flatten() {
            tracing::info!(%peer, ?result, "a commit past the store timeout ended");
        }
        conn.machine().log_summary();
        meter.end(&conn);
    }
}

/// The server side of a TLS handshake on the connection's socket.
fn accept_tls(
    io: &mut Stream,
    config: Option<&Arc<rustls::ServerConfig>>,
    timeout: Duration,
) -> io::Result<()> {
    let config = config.ok_or_else(|| io::Error::other("no TLS configuration"))?;
    io.start_server_tls(config.clone())?;
    io.handshake_by(Instant::now() + timeout)
}

/// Wakes a thread parked in [`block_on`].
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `future` to completion on this thread, parking while it is pending
/// (`waker` unparks this thread).
fn block_on<F: Future>(waker: &Waker, future: F, limit: Option<Duration>) -> Option<F::Output> {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(waker);
    let until = limit.map(|limit| Instant::now() + limit);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return Some(output);
        }
        match until {
            Some(until) => {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return None;
                }
                thread::park_timeout(left);
            }
            None => thread::park(),
        }
    }
}
