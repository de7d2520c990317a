//! The server face: accept connections and run one `pop3-proto` server
//! machine per connection against a [`Store`].
//!
//! The adapter only moves bytes, runs one timer, performs TLS and calls the
//! store; every protocol decision is the machine's.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use pop3_proto::server::{ConnectionContext, Server, ServerConfig, StoreDriver};
use pop3_proto::session::Action;
use pop3_proto::store::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant as TokioInstant;
use tokio_rustls::TlsAcceptor;

use crate::io::Conn;

/// How a listener's connections start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Security {
    /// Plain POP3 (port 110); STLS is offered when the server has a TLS configuration.
    Plain,
    /// Implicit TLS (POP3S, port 995): the TLS handshake comes first (RFC 8314).
    ImplicitTls,
}

/// Adapter-level settings: limits and timeouts that concern sockets, not the protocol.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerOptions {
    /// Connections served at once; further ones get no greeting until one
    /// ends (each listener holds at most one of them accepted, the rest
    /// wait in the listen backlog).
    pub max_connections: usize,
    /// A write that makes no progress for this long ends the session
    /// without UPDATE (a client that never reads its replies).
    pub write_stall_timeout: Duration,
    /// Time allowed for a TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// After shutdown is requested, sessions still open this long are closed
    /// as if the connection dropped (no UPDATE).
    pub shutdown_grace: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_connections: 1024,
            write_stall_timeout: Duration::from_secs(60),
            tls_handshake_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

struct Inner<S> {
    store: Arc<S>,
    config: Arc<ServerConfig>,
    tls: Option<TlsAcceptor>,
    options: ServerOptions,
    permits: Arc<Semaphore>,
    shutdown: watch::Sender<bool>,
    /// When sessions still open after shutdown must end: set by `shutdown`.
    stop_at: std::sync::OnceLock<TokioInstant>,
    epoch: TokioInstant,
}

/// A POP3 server on tokio: a store, a protocol configuration, optionally a
/// TLS configuration. Cheap to clone; clones share the connection cap and
/// the shutdown signal, so one server can serve several listeners.
///
/// ```no_run
/// use pop3_proto::server::ServerConfig;
/// use pop3_proto::store::MemoryStore;
/// use pop3_tokio::server::{Pop3Server, Security};
///
/// # async fn run() -> std::io::Result<()> {
/// let store = MemoryStore::new();
/// let server = Pop3Server::new(store, ServerConfig::default());
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:1110").await?;
/// server.serve(listener, Security::Plain).await
/// # }
/// ```
pub struct Pop3Server<S> {
    inner: Arc<Inner<S>>,
}

impl<S> Clone for Pop3Server<S> {
    fn clone(&self) -> Self {
        Pop3Server {
            inner: self.inner.clone(),
        }
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
        Pop3Server {
            inner: Arc::new(Inner {
                store,
                config,
                tls: tls.map(TlsAcceptor::from),
                permits: Arc::new(Semaphore::new(options.max_connections.max(1))),
                options,
                shutdown,
                stop_at: std::sync::OnceLock::new(),
                epoch: TokioInstant::now(),
            }),
        }
    }

    /// Asks every `serve` loop to stop accepting and every session to end
    /// (after [`ServerOptions::shutdown_grace`], without UPDATE).
    pub fn shutdown(&self) {
        let _ = self
            .inner
            .stop_at
            .set(TokioInstant::now() + self.inner.options.shutdown_grace);
        self.inner.shutdown.send_replace(true);
    }

    /// Resolves when the grace after [`shutdown`](Self::shutdown) is over.
    async fn grace_over(&self) {
        let mut shutdown = self.inner.shutdown.subscribe();
        if shutdown.wait_for(|stop| *stop).await.is_ok()
            && let Some(at) = self.inner.stop_at.get()
        {
            tokio::time::sleep_until(*at).await;
        } else {
            std::future::pending::<()>().await;
        }
    }

    /// Waits until every session has ended.
    pub async fn wait_idle(&self) {
        let all = u32::try_from(self.inner.options.max_connections.max(1)).unwrap_or(u32::MAX);
        if let Ok(permits) = self.inner.permits.acquire_many(all).await {
            drop(permits);
        }
    }

    /// Accepts connections on `listener` until [`shutdown`](Self::shutdown),
    /// serving each on its own task.
    pub async fn serve(&self, listener: TcpListener, security: Security) -> io::Result<()> {
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
            // Accept first, then wait for a permit: a listener waiting in
            // accept must not hold a permit, or every other listener of this
            // server loses one (with the cap at or below the number of
            // listeners, some would never serve anyone). The accepted
            // connection gets its greeting only once a permit is free.
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) if is_transient_accept_error(&e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                    Err(e) => return Err(e),
                },
                _ = shutdown.changed() => continue,
            };
            let permit = tokio::select! {
                permit = self.inner.permits.clone().acquire_owned() => match permit {
                    Ok(p) => p,
                    Err(_) => return Ok(()),
                },
                _ = shutdown.changed() => continue,
            };
            let server = self.clone();
            tokio::spawn(async move {
                let _permit = permit;
                server.connection(stream, peer, security).await;
            });
        }
    }

    /// Serves one connection accepted elsewhere to its end, once a
    /// connection slot is free.
    pub async fn serve_connection(&self, stream: TcpStream, security: Security) {
        let peer = stream
            .peer_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        // The connection counts against the cap and is waited for by
        // `wait_idle`, as one accepted by `serve` is.
        let Ok(_permit) = self.inner.permits.clone().acquire_owned().await else {
            return;
        };
        self.connection(stream, peer, security).await;
    }

    fn now(&self) -> pop3_proto::time::Instant {
        let ms = self.inner.epoch.elapsed().as_millis();
        pop3_proto::time::Instant::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
    }

    fn to_tokio(&self, at: pop3_proto::time::Instant) -> TokioInstant {
        self.inner.epoch + Duration::from_millis(at.as_millis())
    }

    async fn connection(&self, stream: TcpStream, peer: SocketAddr, security: Security) {
        let _ = stream.set_nodelay(true);
        let mut conn = Conn::Plain(stream);
        if security == Security::ImplicitTls {
            match self.handshake(&mut conn).await {
                Ok(()) => {}
                Err(e) => {
                    tracing::info!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
            }
        }
        let random = match random_u64() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(%peer, error = %e, "no randomness for the greeting; connection dropped");
                return;
            }
        };
        let ctx = ConnectionContext::new(random, conn.is_tls(), self.inner.tls.is_some());
        let machine = Server::new(self.inner.config.clone(), self.now(), ctx);
        let driver = StoreDriver::new(self.inner.store.clone());
        let summary = self.run(conn, machine, driver).await;
        tracing::info!(%peer, "{summary}");
    }

    async fn handshake(&self, conn: &mut Conn) -> io::Result<()> {
        let acceptor = self
            .inner
            .tls
            .clone()
            .ok_or_else(|| io::Error::other("no TLS configuration"))?;
        let plain = conn.take_plain()?;
        let tls = tokio::time::timeout(
            self.inner.options.tls_handshake_timeout,
            acceptor.accept(plain),
        )
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
        *conn = Conn::ServerTls(Box::new(tls));
        Ok(())
    }

    /// Writes and flushes `out`; fails when a write makes no progress for
    /// the write-stall timeout, or when the shutdown grace is over (a
    /// session busy sending to a slow reader must end then too).
    async fn write(&self, conn: &mut Conn, out: &mut BytesMut) -> io::Result<()> {
        tokio::select! {
            written = self.write_until_stalled(conn, out) => written,
            () = self.grace_over() => Err(io::Error::new(io::ErrorKind::TimedOut, "shut down")),
        }
    }

    async fn write_until_stalled(&self, conn: &mut Conn, out: &mut BytesMut) -> io::Result<()> {
        if out.is_empty() {
            return Ok(());
        }
        let stall = self.inner.options.write_stall_timeout;
        while !out.is_empty() {
            let n = tokio::time::timeout(stall, conn.write(out))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "write stalled"))??;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            out.advance(n);
        }
        tokio::time::timeout(stall, conn.flush())
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "write stalled"))?
    }

    async fn run(&self, mut conn: Conn, mut machine: Server, mut driver: StoreDriver<S>) -> String {
        let mut input = BytesMut::with_capacity(4096);
        let mut out = BytesMut::with_capacity(16 * 1024);
        let mut shutdown = self.inner.shutdown.subscribe();
        let mut shutdown_deadline: Option<TokioInstant> = None;
        let mut eof = false;
        // The peer ended its side (as opposed to a connection we cut).
        let mut peer_eof = false;
        loop {
            // Perform every queued action, in order.
            while let Some(action) = machine.poll_action() {
                match action {
                    Action::Send(t) => {
                        if eof {
                            continue;
                        }
                        out.extend_from_slice(&t.bytes);
                        if out.len() >= 64 * 1024
                            && let Err(e) = self.write(&mut conn, &mut out).await
                        {
                            tracing::debug!(error = %e, "write failed");
                            eof = true;
                            out.clear();
                            machine.handle_eof(self.now());
                        }
                    }
                    Action::StartTls => {
                        // Plaintext that arrived after STLS is never executed.
                        input.clear();
                        let upgraded = match self.write(&mut conn, &mut out).await {
                            Ok(()) => self.handshake(&mut conn).await,
                            Err(e) => Err(e),
                        };
                        match upgraded {
                            Ok(()) => machine.handle_tls_established(self.now()),
                            Err(e) => {
                                tracing::debug!(error = %e, "STLS upgrade failed");
                                eof = true;
                                out.clear();
                                machine.handle_eof(self.now());
                            }
                        }
                    }
                    Action::Event(request) => {
                        // Replies go out before the store is asked for more,
                        // which paces a streamed message by the client's reading.
                        let written = if eof {
                            Ok(())
                        } else {
                            self.write(&mut conn, &mut out).await
                        };
                        // A request is always answered, even when the
                        // connection just failed: a commit that QUIT started
                        // runs to completion, a release releases.
                        let reply = driver.execute(request).await;
                        machine.handle_store(self.now(), reply);
                        if let Err(e) = written {
                            tracing::debug!(error = %e, "write failed");
                            eof = true;
                            out.clear();
                            machine.handle_eof(self.now());
                        }
                    }
                    Action::Close => {
                        let _ = self.write(&mut conn, &mut out).await;
                        // A TLS close_notify is a write too: a peer that
                        // reads nothing must not keep the task forever, and
                        // a connection cut (failed write, grace over) gets none.
                        let stall = self.inner.options.write_stall_timeout;
                        if !eof || peer_eof {
                            let _ = tokio::time::timeout(stall, conn.shutdown()).await;
                        }
                        return machine.summary().to_string();
                    }
                    _ => {}
                }
            }
            if !eof && let Err(e) = self.write(&mut conn, &mut out).await {
                tracing::debug!(error = %e, "write failed");
                eof = true;
                out.clear();
                machine.handle_eof(self.now());
                continue;
            }

            // Feed what is buffered, as far as the machine wants it.
            if !input.is_empty() && machine.wants_input() {
                let used = machine.handle_input(self.now(), &input);
                input.advance(used);
                if used > 0 {
                    continue;
                }
            }

            let deadline = machine.poll_timeout().map(|t| self.to_tokio(t));
            let read_wanted = !eof && machine.wants_input();
            tokio::select! {
                read = conn.read_buf(&mut input), if read_wanted => {
                    match read {
                        Ok(0) | Err(_) => {
                            eof = true;
                            peer_eof = true;
                            machine.handle_eof(self.now());
                        }
                        Ok(_) => {}
                    }
                }
                _ = sleep_until_opt(deadline) => machine.handle_timeout(self.now()),
                _ = shutdown.changed(), if shutdown_deadline.is_none() => {
                    shutdown_deadline = Some(TokioInstant::now() + self.inner.options.shutdown_grace);
                }
                _ = sleep_until_opt(shutdown_deadline) => {
                    eof = true;
                    shutdown_deadline = None;
                    machine.handle_eof(self.now());
                }
            }
        }
    }
}

async fn sleep_until_opt(at: Option<TokioInstant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn is_transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::OutOfMemory
    ) || matches!(
        e.raw_os_error(),
        // EMFILE, ENFILE (descriptor limits), ENOBUFS, ENOMEM: pressure
        // that passes; back off and accept again.
        Some(24 | 23 | 105 | 12)
    )
}

/// Randomness for the APOP timestamp, from the crypto provider's secure
/// generator: each greeting's timestamp must be unpredictable.
fn random_u64() -> Result<u64, rustls::Error> {
    crate::tls::random_bytes::<8>().map(u64::from_le_bytes)
}
