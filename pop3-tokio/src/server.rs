//! The server face: accept connections and run one `pop3-proto` server
//! machine per connection against a [`Store`].
//!
//! The adapter only moves bytes, runs one timer, performs TLS and calls the
//! store; every protocol decision is the machine's.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pop3_blocking::common::{
    ACCEPT_BACKOFF, Admitted, Gate, Pass, ProxyPreface, SessionSettings, admit_accepted,
    admit_proxied, connection_context, is_transient_accept_error, send_refusal,
};
use pop3_blocking::metrics::{Metrics, SessionMeter};
use pop3_blocking::tls::secure_random;
use pop3_proto::__tracing as tracing;
use pop3_proto::proxy::ProxyPolicy;
use pop3_proto::server::{
    Connection, Refusal, Server, ServerConfig, StoreDriver, StoreRequest, Want,
};
use pop3_proto::store::Store;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::{Instant as TokioInstant, Sleep};
use tokio_rustls::TlsAcceptor;

use crate::io::{Conn, Stream};

pub use pop3_blocking::common::{ServerOptions, ServerSecurity as Security};

struct Inner<S> {
    store: Arc<S>,
    /// The configuration and options, under the gate's limits per session.
    settings: SessionSettings,
    tls: Option<TlsAcceptor>,
    /// Counts open sessions for `wait_idle` (the caps are the gate's).
    permits: Arc<Semaphore>,
    shutdown: watch::Sender<bool>,
}

/// A POP3 server on tokio: a store, a protocol configuration, optionally a
/// TLS configuration. Cheap to clone; clones share the connection cap and
/// the shutdown signal, so one server can serve several listeners.
///
/// ```
/// use pop3_proto::server::ServerConfig;
/// use pop3_proto::store::MemoryStore;
/// use pop3_tokio::server::{Pop3Server, Security};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let store = MemoryStore::new();
/// let server = Pop3Server::new(store, ServerConfig::default());
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?; // any free port
/// # let port = listener.local_addr()?.port();
/// # let stopper = server.clone();
/// # tokio::spawn(async move {
/// #     use pop3_tokio::client::{ConnectOptions, Pop3Client, Security};
/// #     let outcome = async {
/// #         let client = Pop3Client::connect("127.0.0.1", port, ConnectOptions::new(Security::Plain));
/// #         client.await?.quit().await?;
/// #         Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
/// #     }.await;
/// #     stopper.shutdown();
/// #     outcome.unwrap(); // after the shutdown: a failure fails the test, never hangs it
/// # });
/// server.serve(listener, Security::Plain).await
/// # }
/// ```
pub struct Pop3Server<S> {
    inner: Arc<Inner<S>>,
    gate: Gate,
    metrics: Arc<Metrics>,
}

/// The sessions `wait_idle` can count: more than any cap can let in.
const COUNTED_SESSIONS: u32 = 1 << 28;

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
            .field("open_connections", &self.gate.open())
            .field("tls", &self.inner.tls.is_some())
            .field("stopping", &*self.inner.shutdown.borrow())
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
        let (shutdown, _) = watch::channel(false);
        let gate = Gate::new(&options);
        Pop3Server {
            inner: Arc::new(Inner {
                store,
                settings: SessionSettings::new(config, options),
                tls: tls.map(TlsAcceptor::from),
                permits: Arc::new(Semaphore::new(COUNTED_SESSIONS as usize)),
                shutdown,
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
    /// use pop3_tokio::server::Pop3Server;
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
    /// use pop3_blocking::metrics::Metrics;
    /// use pop3_proto::store::MemoryStore;
    /// use pop3_tokio::server::Pop3Server;
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
        self.inner.shutdown.send_replace(true);
    }

    /// Sessions open now (for metrics, and to wait for a slot to free).
    pub fn open_connections(&self) -> usize {
        self.gate.open()
    }

    /// Waits until every session has ended.
    pub async fn wait_idle(&self) {
        if let Ok(permits) = self.inner.permits.acquire_many(COUNTED_SESSIONS).await {
            drop(permits);
        }
    }

    /// Accepts connections on `listener` until [`shutdown`](Self::shutdown),
    /// serving each on its own task. Every connection starts with a PROXY
    /// protocol header when [`ServerOptions::proxy_protocol`] is set
    /// ([`serve_proxied`](Self::serve_proxied) decides per listener).
    pub async fn serve(&self, listener: TcpListener, security: Security) -> io::Result<()> {
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
        let mut shutdown = self.inner.shutdown.subscribe();
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            // Accept, then admit or refuse at once: a client over a cap
            // gets `-ERR [SYS/TEMP]` instead of waiting in the backlog.
            let (stream, peer) = match accept_or_shutdown(&listener, &mut shutdown).await {
                None => continue,
                Some(Ok(a)) => a,
                Some(Err(e)) if is_transient_accept_error(&e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
                Some(Err(e)) => return Err(e),
            };
            // Admitted before its PROXY header is read: a source holding it
            // back holds a place under the total cap.
            let (pass, reservation) =
                match admit_accepted(&self.gate, proxy.as_ref(), peer, &self.metrics) {
                    Admitted::Session(pass) => (Some(pass), None),
                    Admitted::ReadHeader(reservation) => (None, Some(reservation)),
                    Admitted::Refuse(refusal) => {
                        if let Ok(stream) = stream.into_std() {
                            send_refusal(stream, refusal);
                        }
                        continue;
                    }
                    _ => continue,
                };
            let Ok(permit) = self.inner.permits.clone().try_acquire_owned() else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let server = self.clone();
            let limit = proxy.as_ref().map_or(Duration::ZERO, |p| p.timeout);
            tokio::spawn(async move {
                let _permit = permit;
                let mut stream = stream;
                let mut client = peer;
                let mut pass = pass;
                if let Some(reservation) = reservation {
                    let mut preface = ProxyPreface::new(peer);
                    let read = tokio::time::timeout(limit, async {
                        loop {
                            let n = stream.read(preface.space()).await?;
                            if let Some(client) = preface.filled(n)? {
                                return Ok(client);
                            }
                        }
                    });
                    let read = read
                        .await
                        .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()));
                    drop(preface);
                    match admit_proxied(reservation, read, peer, &server.metrics) {
                        Ok((admitted, from)) => {
                            pass = Some(admitted);
                            client = from;
                        }
                        Err(Some(refusal)) => {
                            if let Ok(stream) = stream.into_std() {
                                send_refusal(stream, refusal);
                            }
                            return;
                        }
                        Err(None) => return,
                    }
                }
                server
                    .connection(Stream::new(stream), client, security)
                    .await;
                drop(pass);
            });
        }
    }

    /// Serves one connection accepted elsewhere to its end, under the same
    /// caps as those `serve` accepts (over one, the client gets
    /// `-ERR [SYS/TEMP]` and the connection is closed at once).
    ///
    /// The stream is any tokio byte stream: a `TcpStream` (set
    /// `TCP_NODELAY` yourself), a `UnixStream`, one end of
    /// [`tokio::io::duplex`] in a test, a connection unwrapped from the
    /// PROXY protocol, or one already secured ([`Security::Secured`]).
    /// `peer` is the client's address, for the per-address cap and the
    /// log; a stream without one (a Unix socket) may pass an unspecified
    /// address, and such connections then share one per-address cap.
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use pop3_proto::store::MemoryStore;
    /// use pop3_tokio::server::{Pop3Server, Security};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// # let server = Pop3Server::new(MemoryStore::new(), Default::default());
    /// # let dir = tempfile::tempdir()?;
    /// # let path = dir.path().join("pop3.sock");
    /// let listener = tokio::net::UnixListener::bind(&path)?; // "/run/pop3.sock"
    /// # let client = tokio::spawn(async move {
    /// #     use pop3_tokio::client::{ConnectOptions, Pop3Client, Security};
    /// #     let unix = tokio::net::UnixStream::connect(&path).await.unwrap();
    /// #     let client = Pop3Client::from_stream(unix, "localhost", ConnectOptions::new(Security::Plain));
    /// #     client.await.unwrap().quit().await.unwrap();
    /// # });
    /// loop {
    ///     let (stream, _) = listener.accept().await?;
    ///     let server = server.clone();
    ///     let peer = SocketAddr::from(([0, 0, 0, 0], 0)); // a Unix socket has no IP address
    ///     tokio::spawn(async move { server.serve_connection(stream, peer, Security::Plain).await });
    /// #   break; // one connection in this test
    /// }
    /// # client.await.unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub async fn serve_connection<T>(&self, stream: T, peer: SocketAddr, security: Security)
    where
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        match self.admit(peer) {
            Ok(_slot) => self.connection(Stream::new(stream), peer, security).await,
            Err(refusal) => {
                tracing::info!(%peer, "connection refused: {refusal}");
                self.metrics.refused(refusal);
                let mut stream = stream;
                let stall = self.inner.settings.start(&self.gate).1.write_stall_timeout;
                let _ = tokio::time::timeout(stall, async {
                    stream.write_all(refusal.reply()).await?;
                    stream.shutdown().await
                })
                .await;
            }
        }
    }

    /// The connection's place under the caps (also counted by
    /// `wait_idle`), or why it was refused.
    fn admit(&self, peer: SocketAddr) -> Result<(Pass, OwnedSemaphorePermit), Refusal> {
        self.gate.admit(peer.ip()).and_then(|pass| {
            match self.inner.permits.clone().try_acquire_owned() {
                Ok(permit) => Ok((pass, permit)),
                Err(_) => Err(Refusal::Full),
            }
        })
    }

    async fn connection(&self, stream: Stream, peer: SocketAddr, security: Security) {
        // The limits in force now, kept for the whole session.
        let (config, options) = self.inner.settings.start(&self.gate);
        let mut io = Conn::Plain(stream);
        let mut tls_info = pop3_proto::server::TlsInfo::default();
        if security == Security::ImplicitTls {
            let accepted = match (self.inner.tls.clone(), io.take_plain()) {
                (Some(acceptor), Ok(tcp)) => {
                    tokio::time::timeout(options.tls_handshake_timeout, acceptor.accept(tcp))
                        .await
                        .map_err(|_| {
                            io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out")
                        })
                        .and_then(|r| r)
                }
                (None, _) => Err(io::Error::other("no TLS configuration")),
                (_, Err(e)) => Err(e),
            };
            self.metrics.tls_handshake(accepted.is_ok());
            match accepted {
                Ok(tls) => {
                    tls_info = pop3_blocking::common::server_tls_info(tls.get_ref().1);
                    io = Conn::ServerTls(Box::new(tls));
                }
                Err(e) => {
                    tracing::info!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
            }
        }
        let secured = security == Security::Secured;
        let tls = self.inner.tls.as_ref();
        let random = secure_random(tls.map(|a| &**a.config().crypto_provider()));
        let ctx = match connection_context(
            random,
            io.is_tls() || secured,
            tls.is_some() && !secured,
        ) {
            Ok(ctx) => ctx.tls_info(tls_info).peer(Some(peer)),
            Err(e) => {
                tracing::error!(%peer, error = %e, "no randomness for the greeting; connection dropped");
                return;
            }
        };
        let epoch = TokioInstant::now();
        let machine = Server::new(config, pop3_proto::time::Instant::ZERO, ctx);
        let mut shutdown = self.inner.shutdown.subscribe();
        let (gate, own_grace) = (
            self.gate.clone(),
            self.inner.settings.built_options().shutdown_grace,
        );
        let mut session = Session {
            conn: Connection::new(machine, &options),
            io,
            acceptor: self.inner.tls.clone(),
            metrics: self.metrics.clone(),
            meter: SessionMeter::start(self.metrics.clone()),
            handshake: None,
            handshake_timeout: options.tls_handshake_timeout,
            epoch,
            timer: Box::pin(tokio::time::sleep_until(epoch)),
            stop: Some(Box::pin(async move {
                let _ = shutdown.wait_for(|stop| *stop).await;
                // The grace in force when the shutdown began.
                gate.shutdown_grace(own_grace)
            })),
        };
        let mut driver = StoreDriver::new(self.inner.store.clone());
        loop {
            match poll_fn(|cx| session.poll_step(cx)).await {
                Step::Store(request) => {
                    let call = driver.execute(request);
                    let started = std::time::Instant::now();
                    let reply = match session.conn.poll_timeout() {
                        Some(deadline) => {
                            let at = epoch + Duration::from_millis(deadline.as_millis());
                            tokio::time::timeout_at(at, call).await.ok()
                        }
                        None => Some(call.await),
                    };
                    self.metrics.store_call(started.elapsed());
                    match reply {
                        Some(reply) => session.conn.store_done(session.now(), reply),
                        None => session.conn.handle_timeout(session.now()),
                    }
                }
                Step::Close { graceful } => {
                    if graceful {
                        let stall = options.write_stall_timeout;
                        let _ = tokio::time::timeout(stall, session.io.shutdown()).await;
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
            tracing::info!(%peer, ?result, "a commit past the store timeout ended");
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

/// One connection's transport, timers and core connection.
struct Session {
    conn: Connection,
    io: Conn,
    acceptor: Option<TlsAcceptor>,
    metrics: Arc<Metrics>,
    /// Counts the session's logins and octets as they happen.
    meter: SessionMeter,
    handshake: Option<(tokio_rustls::Accept<Stream>, Pin<Box<Sleep>>)>,
    handshake_timeout: Duration,
    epoch: TokioInstant,
    timer: Pin<Box<Sleep>>,
    /// Resolves, to the shutdown grace in force then, when the server shuts
    /// down; taken once it has.
    stop: Option<Pin<Box<dyn Future<Output = Duration> + Send>>>,
}

impl Session {
    fn now(&self) -> pop3_proto::time::Instant {
        let ms = self.epoch.elapsed().as_millis();
        pop3_proto::time::Instant::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
    }

    /// Performs the I/O the connection wants until it needs the store or
    /// is over.
    fn poll_step(&mut self, cx: &mut Context<'_>) -> Poll<Step> {
        loop {
            self.meter.update(&self.conn);
            let now = self.now();
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
                Want::Read(buf) => {
                    let mut buf = ReadBuf::new(buf);
                    let read = io.poll_read(cx, &mut buf);
                    let n = buf.filled().len();
                    read.map(|r| conn.received(now, r.map(|()| n)))
                }
                Want::Wait => Poll::Pending,
                Want::Close { graceful } => return Poll::Ready(Step::Close { graceful }),
            };
            if progress.is_ready() {
                continue;
            }
            let Some(deadline) = self.conn.poll_timeout() else {
                return Poll::Pending;
            };
            let at = self.epoch + Duration::from_millis(deadline.as_millis());
            if self.timer.deadline() != at {
                self.timer.as_mut().reset(at);
            }
            ready!(self.timer.as_mut().poll(cx));
            self.conn.handle_timeout(self.now());
        }
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>, now: pop3_proto::time::Instant) -> Poll<()> {
        if self.handshake.is_none() {
            match (self.acceptor.clone(), self.io.take_plain()) {
                (Some(acceptor), Ok(tcp)) => {
                    let limit = Box::pin(tokio::time::sleep(self.handshake_timeout));
                    self.handshake = Some((acceptor.accept(tcp), limit));
                }
                _ => {
                    self.conn.tls_done(now, Err(()));
                    return Poll::Ready(());
                }
            }
        }
        let Some((accept, limit)) = self.handshake.as_mut() else {
            return Poll::Ready(());
        };
        let done = match Pin::new(accept).poll(cx) {
            Poll::Ready(done) => done,
            Poll::Pending => {
                ready!(limit.as_mut().poll(cx));
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "TLS handshake timed out",
                ))
            }
        };
        self.handshake = None;
        self.metrics.tls_handshake(done.is_ok());
        let done = done.map(|tls| {
            self.conn
                .tls_info(pop3_blocking::common::server_tls_info(tls.get_ref().1));
            self.io = Conn::ServerTls(Box::new(tls));
        });
        if let Err(e) = &done {
            tracing::debug!(error = %e, "STLS upgrade failed");
        }
        self.conn.tls_done(self.now(), done);
        Poll::Ready(())
    }
}

/// The next connection of `listener`, or `None` as soon as the shutdown
/// signal changes (the pending accept is dropped).
async fn accept_or_shutdown(
    listener: &TcpListener,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<io::Result<(tokio::net::TcpStream, SocketAddr)>> {
    let mut accept = std::pin::pin!(listener.accept());
    let mut changed = std::pin::pin!(shutdown.changed());
    poll_fn(|cx| {
        if let Poll::Ready(accepted) = accept.as_mut().poll(cx) {
            return Poll::Ready(Some(accepted));
        }
        changed.as_mut().poll(cx).map(|_| None)
    })
    .await
}
