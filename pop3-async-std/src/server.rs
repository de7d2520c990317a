//! The server face: accept connections and run one `pop3-proto` server
//! machine per connection against a [`Store`].
//!
//! The adapter only moves bytes, runs one timer, performs TLS and calls the
//! store; every protocol decision is the machine's.
//!
//! # Where sessions run
//!
//! [`Pop3Server::serve`] needs no spawner and no particular runtime: the
//! sessions it accepts are tasks of an executor ([`async_executor`]) that
//! lives inside the `serve` future, so they run wherever that future is
//! polled (`smol::block_on`, `smol::spawn`, `async_std::task::spawn`, ...),
//! and `serve` returns only once its listener is closed and every session it
//! accepted has ended: no task outlives it. Store calls of an [`Unblock`]
//! store run on the `blocking` thread pool, whichever runtime polls.
//!
//! Every session of one `serve` call is polled by the task polling `serve`.
//! To spread sessions over a multi-threaded runtime's threads instead,
//! accept yourself and spawn [`Pop3Server::serve_connection`] on it; the
//! connection cap, [`Pop3Server::shutdown`] and [`Pop3Server::wait_idle`]
//! apply to those sessions alike.
//!
//! [`Unblock`]: crate::Unblock

use std::future::{Future, poll_fn};
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use async_executor::{Executor, Task};
use async_io::Timer;
use event_listener::Event;
use futures_io::{AsyncRead, AsyncWrite};
use futures_lite::AsyncReadExt;
use futures_lite::future::or;
use futures_rustls::TlsAcceptor;
use futures_rustls::server::TlsStream;
use pop3_blocking::common::{
    ACCEPT_BACKOFF, Admitted, Gate, Pass, ProxyPreface, SessionSettings, admit_accepted,
    admit_proxied, connection_context, is_transient_accept_error, send_refusal,
};
use pop3_proto::proxy::ProxyPolicy;
use pop3_proto::server::{Connection, Server, ServerConfig, StoreDriver, StoreRequest, Want};
use pop3_proto::store::Store;

use crate::io::{Clock, Conn, Stream, timeout};
use pop3_blocking::metrics::{Metrics, SessionMeter};
use pop3_blocking::tls::secure_random;
use pop3_proto::__tracing as tracing;
use rustls::crypto::SecureRandom;

/// The listener type of [`Pop3Server::serve`], re-exported from `async-io`
/// (smol has it as `smol::Async`).
pub use async_io::Async;
pub use pop3_blocking::common::{ServerOptions, ServerSecurity as Security};

/// The shutdown signal and the count of open sessions, shared by every
/// clone of a server (the caps are its [`Gate`]'s).
struct Lifecycle {
    stopping: AtomicBool,
    stop: Event,
    active: AtomicUsize,
    idle: Event,
}

impl Lifecycle {
    /// Resolves once `done` holds, woken by `event`.
    async fn until(&self, event: &Event, done: impl Fn(&Self) -> bool) {
        while !done(self) {
            let listener = event.listen();
            if done(self) {
                break;
            }
            listener.await;
        }
    }

    async fn stopped(&self) {
        self.until(&self.stop, |l| l.stopping.load(SeqCst)).await;
    }

    /// `future`'s output, or `None` if the server stops first.
    async fn unless_stopped<T>(&self, future: impl Future<Output = T>) -> Option<T> {
        let stop = async {
            self.stopped().await;
            None
        };
        or(stop, async { Some(future.await) }).await
    }

    /// An admitted connection, counted as open (for `wait_idle`) with
    /// its place under the caps (`None` while its PROXY header is read).
    fn slot(self: &Arc<Self>, pass: Option<Pass>) -> Slot {
        self.active.fetch_add(1, SeqCst);
        Slot {
            pass,
            life: self.clone(),
        }
    }
}

/// One open session's place; given back when the session ends.
struct Slot {
    pass: Option<Pass>,
    life: Arc<Lifecycle>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        // The place under the caps first: once `wait_idle` returns, a new
        // connection finds it free.
        drop(self.pass.take());
        if self.life.active.fetch_sub(1, SeqCst) == 1 {
            self.life.idle.notify(usize::MAX);
        }
    }
}

struct Inner<S> {
    store: Arc<S>,
    /// The configuration and options, under the gate's limits per session.
    settings: SessionSettings,
    tls: Option<TlsAcceptor>,
    /// The generator of the sessions' randomness: the TLS configuration's.
    random: &'static dyn SecureRandom,
    life: Arc<Lifecycle>,
}

/// A POP3 server on any `futures-io` runtime (smol, async-std): a store, a
/// protocol configuration, optionally a TLS configuration. Cheap to clone;
/// clones share the connection cap and the shutdown signal, so one server
/// can serve several listeners.
///
/// ```
/// use std::net::TcpListener;
/// use pop3_proto::server::ServerConfig;
/// use pop3_proto::store::MemoryStore;
/// use pop3_async_std::server::{Async, Pop3Server, Security};
///
/// # fn main() -> std::io::Result<()> {
/// let store = MemoryStore::new();
/// # store.add_user("demo", "demo");
/// let server = Pop3Server::new(store, ServerConfig::default().allow_plaintext_auth(true));
/// let listener = Async::<TcpListener>::bind(([127, 0, 0, 1], 0))?; // any free port
/// # let port = listener.get_ref().local_addr()?.port();
/// # let stopper = server.clone();
/// # let client = std::thread::spawn(move || smol::block_on(async {
/// #     use pop3_async_std::client::{ConnectOptions, Pop3Client, Security};
/// #     let outcome = async {
/// #         let mut options = ConnectOptions::new(Security::Plain);
/// #         options.session.insecure_cleartext_login = true; // loopback, a test
/// #         let mut client = Pop3Client::connect("127.0.0.1", port, options).await?;
/// #         client.login("demo", "demo").await?;
/// #         assert_eq!(client.stat().await?.count, 0);
/// #         client.quit().await?;
/// #         Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
/// #     }.await;
/// #     stopper.shutdown();
/// #     outcome.unwrap(); // after the shutdown: a failure fails the test, never hangs it
/// # }));
/// # let served =
/// smol::block_on(server.serve(listener, Security::Plain))
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
            .field("open_connections", &self.inner.life.active.load(SeqCst))
            .field("tls", &self.inner.tls.is_some())
            .field("stopping", &self.inner.life.stopping.load(SeqCst))
            .finish_non_exhaustive()
    }
}

impl<S: Store + 'static> Pop3Server<S>
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
        let life = Arc::new(Lifecycle {
            stopping: AtomicBool::new(false),
            stop: Event::new(),
            active: AtomicUsize::new(0),
            idle: Event::new(),
        });
        Pop3Server {
            inner: Arc::new(Inner {
                store,
                settings: SessionSettings::new(config, options),
                random: secure_random(tls.as_deref().map(|c| &**c.crypto_provider())),
                tls: tls.map(TlsAcceptor::from),
                life,
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
    /// use pop3_proto::store::MemoryStore;
    /// use pop3_async_std::server::Pop3Server;
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
    /// [`metrics::serve`](pop3_blocking::metrics::serve), on a thread of its
    /// own). Clones made afterwards share it.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use pop3_async_std::server::Pop3Server;
    /// use pop3_blocking::metrics::Metrics;
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
    /// (after [`ServerOptions::shutdown_grace`], without UPDATE).
    pub fn shutdown(&self) {
        self.inner.life.stopping.store(true, SeqCst);
        self.inner.life.stop.notify(usize::MAX);
    }

    /// Sessions open now (for metrics, and to wait for a slot to free).
    pub fn open_connections(&self) -> usize {
        self.inner.life.active.load(SeqCst)
    }

    /// Waits until every session has ended (those of `serve` make progress
    /// only while their `serve` future is polled).
    pub async fn wait_idle(&self) {
        let life = &self.inner.life;
        life.until(&life.idle, |l| l.active.load(SeqCst) == 0).await;
    }

    /// Accepts connections on `listener` until [`shutdown`](Self::shutdown),
    /// serving each as a task of an executor inside this future (see
    /// [where sessions run](self#where-sessions-run)). Returns once the
    /// listener is closed (at shutdown, or on an accept error that does not
    /// pass) and every session it accepted has ended.
    ///
    /// Every connection starts with a PROXY protocol header when
    /// [`ServerOptions::proxy_protocol`] is set
    /// ([`serve_proxied`](Self::serve_proxied) decides per listener).
    pub async fn serve(&self, listener: Async<TcpListener>, security: Security) -> io::Result<()> {
        let policy = self.inner.settings.built_options().proxy_protocol.clone();
        self.serve_proxied(listener, security, policy).await
    }

    /// [`serve`](Self::serve) with this listener's own PROXY protocol
    /// policy (`None`: its connections come straight from clients),
    /// whatever [`ServerOptions::proxy_protocol`] says: one server can
    /// serve a listener behind a load balancer and one for direct clients.
    ///
    /// A connection from a trusted proxy counts under the total cap as soon
    /// as it is accepted, while its header is read; the per-address cap
    /// applies to the client the header names.
    pub async fn serve_proxied(
        &self,
        listener: Async<TcpListener>,
        security: Security,
        proxy: Option<ProxyPolicy>,
    ) -> io::Result<()> {
        if security == Security::ImplicitTls && self.inner.tls.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "implicit TLS needs a TLS configuration",
            ));
        }
        let sessions = Executor::new();
        sessions
            .run(self.accept(listener, security, proxy, &sessions))
            .await
    }

    async fn accept(
        &self,
        listener: Async<TcpListener>,
        security: Security,
        proxy: Option<ProxyPolicy>,
        sessions: &Executor<'_>,
    ) -> io::Result<()> {
        let life = &self.inner.life;
        let mut running: Vec<Task<()>> = Vec::new();
        let result = loop {
            // Accept, then admit or refuse at once: a client over a cap
            // gets `-ERR [SYS/TEMP]` instead of waiting in the backlog.
            let (stream, peer) = match life.unless_stopped(listener.accept()).await {
                None => break Ok(()),
                Some(Ok(accepted)) => accepted,
                Some(Err(e)) if is_transient_accept_error(&e) => {
                    tracing::warn!(error = %e, "accept failed");
                    Timer::after(ACCEPT_BACKOFF).await;
                    continue;
                }
                Some(Err(e)) => break Err(e),
            };
            running.retain(|task| !task.is_finished());
            // Admitted before its PROXY header is read: a source holding it
            // back holds a place under the total cap.
            let (pass, reservation) =
                match admit_accepted(&self.gate, proxy.as_ref(), peer, &self.metrics) {
                    Admitted::Session(pass) => (Some(pass), None),
                    Admitted::ReadHeader(reservation) => (None, Some(reservation)),
                    Admitted::Refuse(refusal) => {
                        if let Ok(stream) = stream.into_inner() {
                            send_refusal(stream, refusal);
                        }
                        continue;
                    }
                    _ => continue,
                };
            let _ = stream.get_ref().set_nodelay(true);
            let mut slot = life.slot(pass);
            let server = self.clone();
            let limit = proxy.as_ref().map_or(Duration::ZERO, |p| p.timeout);
            running.push(sessions.spawn(async move {
                let mut stream = stream;
                let mut client = peer;
                if let Some(reservation) = reservation {
                    let mut preface = ProxyPreface::new(peer);
                    let read = timeout(limit, async {
                        loop {
                            let n = AsyncReadExt::read(&mut stream, preface.space()).await?;
                            if let Some(client) = preface.filled(n)? {
                                return Ok(client);
                            }
                        }
                    })
                    .await;
                    drop(preface);
                    match admit_proxied(reservation, read, peer, &server.metrics) {
                        Ok((pass, from)) => {
                            slot.pass = Some(pass);
                            client = from;
                        }
                        Err(Some(refusal)) => {
                            if let Ok(stream) = stream.into_inner() {
                                send_refusal(stream, refusal);
                            }
                            return;
                        }
                        Err(None) => return,
                    }
                }
                server
                    .connection(Stream::new(stream), Some(client), security)
                    .await;
                drop(slot);
            }));
        };
        drop(listener);
        for task in running {
            task.await;
        }
        result
    }

    /// Serves one connection accepted elsewhere to its end, once a
    /// connection slot is free: any `futures-io` stream (`Async<TcpStream>`,
    /// `smol::net::TcpStream`, `async_std::net::TcpStream`, a `UnixStream`,
    /// a connection unwrapped from the PROXY protocol, or one already
    /// secured: [`Security::Secured`]; set `TCP_NODELAY` on a TCP stream
    /// yourself, as `serve` does).
    ///
    /// `peer` is the client's address, for the per-address cap (over it,
    /// the client gets `-ERR [SYS/TEMP]` and the connection is closed at
    /// once) and the log; a stream without one (a Unix socket) may pass an
    /// unspecified address, and such connections then share one
    /// per-address cap.
    ///
    /// ```
    /// use std::net::TcpListener;
    /// use pop3_proto::store::MemoryStore;
    /// use pop3_async_std::server::{Async, Pop3Server, Security};
    ///
    /// # fn main() -> std::io::Result<()> {
    /// # let server = Pop3Server::new(MemoryStore::new(), Default::default());
    /// # smol::block_on(async {
    /// // Sessions on smol's multi-threaded executor instead of in `serve`.
    /// let listener = Async::<TcpListener>::bind(([127, 0, 0, 1], 0))?; // any free port
    /// # let port = listener.get_ref().local_addr()?.port();
    /// # let client = smol::spawn(async move {
    /// #     use pop3_async_std::client::{ConnectOptions, Pop3Client, Security};
    /// #     let client = Pop3Client::connect("127.0.0.1", port, ConnectOptions::new(Security::Plain));
    /// #     client.await.unwrap().quit().await.unwrap();
    /// # });
    /// loop {
    ///     let (stream, peer) = listener.accept().await?;
    ///     stream.get_ref().set_nodelay(true)?;
    ///     let server = server.clone();
    ///     smol::spawn(async move { server.serve_connection(stream, peer, Security::Plain).await })
    ///         .detach();
    /// #   break; // one connection in this test
    /// }
    /// # client.await;
    /// # Ok(())
    /// # })
    /// # }
    /// ```
    pub async fn serve_connection<T>(&self, stream: T, peer: SocketAddr, security: Security)
    where
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let pass = match self.gate.admit(peer.ip()) {
            Ok(pass) => pass,
            Err(refusal) => {
                tracing::info!(%peer, "connection refused: {refusal}");
                self.metrics.refused(refusal);
                let mut stream = stream;
                let stall = self.inner.settings.start(&self.gate).1.write_stall_timeout;
                let _ = timeout(stall, async {
                    futures_lite::AsyncWriteExt::write_all(&mut stream, refusal.reply()).await?;
                    futures_lite::AsyncWriteExt::close(&mut stream).await
                })
                .await;
                return;
            }
        };
        // The connection counts against the cap and is waited for by
        // `wait_idle`, as one accepted by `serve` is.
        let _slot = self.inner.life.slot(Some(pass));
        self.connection(Stream::new(stream), Some(peer), security)
            .await;
    }

    async fn connection(&self, stream: Stream, peer: Option<SocketAddr>, security: Security) {
        // The limits in force now, kept for the whole session.
        let (config, options) = self.inner.settings.start(&self.gate);
        let options = &*options;
        let mut tls_info = pop3_proto::server::TlsInfo::default();
        let io = if security == Security::ImplicitTls {
            let accepted = match self.inner.tls.clone() {
                Some(acceptor) => {
                    timeout(options.tls_handshake_timeout, acceptor.accept(stream)).await
                }
                None => Err(io::Error::other("no TLS configuration")),
            };
            self.metrics.tls_handshake(accepted.is_ok());
            match accepted {
                Ok(tls) => {
                    tls_info = pop3_blocking::common::server_tls_info(tls.get_ref().1);
                    Conn::tls(tls)
                }
                Err(e) => {
                    tracing::info!(?peer, error = %e, "TLS handshake failed");
                    return;
                }
            }
        } else {
            Conn::plain(stream)
        };
        let secured = security == Security::Secured;
        let ctx = match connection_context(
            self.inner.random,
            io.is_tls() || secured,
            self.inner.tls.is_some() && !secured,
        ) {
            Ok(ctx) => ctx.tls_info(tls_info).peer(peer),
            Err(e) => {
                tracing::error!(?peer, error = %e, "no randomness for the greeting; connection dropped");
                return;
            }
        };
        let clock = Clock::new(Instant::now());
        let machine = Server::new(config, clock.now(), ctx);
        let life = self.inner.life.clone();
        let (gate, own_grace) = (
            self.gate.clone(),
            self.inner.settings.built_options().shutdown_grace,
        );
        let mut session = Session {
            conn: Connection::new(machine, options),
            io,
            acceptor: self.inner.tls.clone(),
            metrics: self.metrics.clone(),
            meter: SessionMeter::start(self.metrics.clone()),
            handshake: None,
            handshake_timeout: options.tls_handshake_timeout,
            clock,
            stop: Some(Box::pin(async move {
                life.stopped().await;
                // The grace in force when the shutdown began.
                gate.shutdown_grace(own_grace)
            })),
        };
        let mut driver = StoreDriver::new(self.inner.store.clone());
        loop {
            match poll_fn(|cx| session.poll_step(cx)).await {
                Step::Store(request) => {
                    let call = driver.execute(request);
                    let started = Instant::now();
                    let reply = match session.conn.poll_timeout() {
                        Some(deadline) => {
                            let clock = &mut session.clock;
                            let expired = async {
                                poll_fn(|cx| clock.poll_until(cx, deadline)).await;
                                None
                            };
                            or(async { Some(call.await) }, expired).await
                        }
                        None => Some(call.await),
                    };
                    self.metrics.store_call(started.elapsed());
                    let now = session.clock.now();
                    match reply {
                        Some(reply) => session.conn.store_done(now, reply),
                        None => session.conn.handle_timeout(now),
                    }
                }
                Step::Close { graceful } => {
                    if graceful {
                        let close = poll_fn(|cx| Pin::new(&mut session.io).poll_close(cx));
                        let _ = timeout(options.write_stall_timeout, close).await;
                    }
                    break;
                }
            }
        }
        let Session {
            conn, io, meter, ..
        } = session;
        drop(io);
        // A commit the store timeout stopped waiting for runs to its end.
        if let Some(result) = driver.finish().await {
            tracing::info!(?peer, ?result, "a commit past the store timeout ended");
        }
        conn.machine().log_summary();
        meter.end(&conn);
    }
}

/// What a session's pump stops for: a store call (awaited by the caller,
/// never cancelled) or the end.
enum Step {
    Store(StoreRequest),
    Close { graceful: bool },
}

type Handshake = Pin<Box<dyn Future<Output = io::Result<TlsStream<Stream>>> + Send>>;

/// One connection's transport, timer and core connection.
struct Session {
    conn: Connection,
    io: Conn,
    acceptor: Option<TlsAcceptor>,
    metrics: Arc<Metrics>,
    /// Counts the session's logins and octets as they happen.
    meter: SessionMeter,
    handshake: Option<Handshake>,
    handshake_timeout: Duration,
    clock: Clock,
    /// Resolves, to the shutdown grace in force then, when the server shuts
    /// down; taken once it has.
    stop: Option<Pin<Box<dyn Future<Output = Duration> + Send>>>,
}

impl Session {
    /// Performs the I/O the connection wants until it needs the store or
    /// is over.
    fn poll_step(&mut self, cx: &mut Context<'_>) -> Poll<Step> {
        loop {
            self.meter.update(&self.conn);
            let now = self.clock.now();
            if let Some(Poll::Ready(grace)) = self.stop.as_mut().map(|stop| stop.as_mut().poll(cx))
            {
                self.stop = None;
                self.conn.shutdown_within(now, grace);
            }
            let conn = &mut self.conn;
            let io = Pin::new(&mut self.io);
            let progress = match conn.want(now) {
                Want::Write(octets) => io.poll_write(cx, octets).map(|r| conn.wrote(now, r)),
                Want::Flush => io.poll_flush(cx).map(|r| conn.flushed(now, r)),
                Want::Store(request) => return Poll::Ready(Step::Store(request)),
                Want::StartTls => self.poll_handshake(cx, now),
                Want::Read(buf) => io.poll_read(cx, buf).map(|r| conn.received(now, r)),
                Want::Wait => Poll::Pending,
                Want::Close { graceful } => return Poll::Ready(Step::Close { graceful }),
            };
            if progress.is_ready() {
                continue;
            }
            let Some(deadline) = self.conn.poll_timeout() else {
                return Poll::Pending;
            };
            ready!(self.clock.poll_until(cx, deadline));
            self.conn.handle_timeout(self.clock.now());
        }
    }

    /// The server side of the STLS handshake, on the same stream, within the
    /// handshake timeout.
    fn poll_handshake(&mut self, cx: &mut Context<'_>, now: pop3_proto::time::Instant) -> Poll<()> {
        if self.handshake.is_none() {
            match (self.acceptor.clone(), self.io.take_plain()) {
                (Some(acceptor), Ok(plain)) => {
                    let limit = self.handshake_timeout;
                    self.handshake = Some(Box::pin(timeout(limit, acceptor.accept(plain))));
                }
                _ => {
                    self.conn.tls_done(now, Err(()));
                    return Poll::Ready(());
                }
            }
        }
        let Some(handshake) = self.handshake.as_mut() else {
            return Poll::Ready(());
        };
        let done = ready!(handshake.as_mut().poll(cx));
        self.handshake = None;
        self.metrics.tls_handshake(done.is_ok());
        let done = done.map(|tls| {
            self.conn
                .tls_info(pop3_blocking::common::server_tls_info(tls.get_ref().1));
            self.io = Conn::tls(tls);
        });
        if let Err(e) = &done {
            tracing::debug!(error = %e, "STLS upgrade failed");
        }
        self.conn.tls_done(self.clock.now(), done);
        Poll::Ready(())
    }
}
