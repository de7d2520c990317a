//! The client face: a POP3 client on the `futures-io` traits, driving the
//! sans-IO [`pop3_proto::client::Client`] machine over TCP or TLS.
//!
//! [`Pop3Client::connect`] opens a session (plain, STLS upgraded in place, or
//! implicit TLS), and each POP3 command is an `async fn`. Message bodies are
//! streamed ([`Body`]), never collected whole; [`Pop3Client::retr_many`] and
//! [`Pop3Client::dele_many`] pipeline when the server allows it.
//!
//! ```
//! use futures_lite::AsyncReadExt;
//! use pop3_async_std::client::{ConnectOptions, Pop3Client, Security};
//!
//! # use std::sync::Arc;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # // A server on loopback with a certificate of its own CA, for the test.
//! # let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
//! # let key = rustls::pki_types::PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der());
//! # let tls = pop3_async_std::tls::server_config(vec![cert.cert.der().clone()], key.into())?;
//! # let mut roots = rustls::RootCertStore::empty();
//! # roots.add(cert.cert.der().clone())?;
//! # let test_ca = pop3_async_std::client::TlsVerification::Roots(Arc::new(roots));
//! # let store = pop3_proto::store::MemoryStore::new();
//! # store.add_user("alice", "secret");
//! # for n in 1..=3 { store.add_message("alice", format!("Subject: {n}\r\n\r\nHello.\r\n")); }
//! # let config = pop3_proto::server::ServerConfig::default().allow_plaintext_auth(true);
//! # let server = pop3_async_std::server::Pop3Server::build(Arc::new(store), config, Some(tls), Default::default());
//! # let listener = pop3_async_std::server::Async::<std::net::TcpListener>::bind(([127, 0, 0, 1], 0))?;
//! # let port = listener.get_ref().local_addr()?.port();
//! # let ex = smol::LocalExecutor::new();
//! # let _serving = ex.spawn(async move { server.serve(listener, pop3_async_std::server::Security::ImplicitTls).await });
//! # smol::block_on(ex.run(async {
//! let options = ConnectOptions::new(Security::ImplicitTls);
//! # let mut options = options;
//! # options.verification = test_ca;
//! let mut client = Pop3Client::connect("localhost", port, options).await?;
//! client.login("alice", "secret").await?;
//! let stat = client.stat().await?;
//! for n in 1..=stat.count {
//!     let msg = pop3_async_std::client::msg(n).unwrap();
//!     let mut body = client.retr(msg).await?;
//!     let mut text = Vec::new();
//!     body.read_to_end(&mut text).await?;
//! }
//! client.quit().await?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }))
//! # }
//! ```
//!
//! # The protocol log
//!
//! With a `tracing` subscriber at `TRACE` for the target `pop3_proto::client`,
//! every command line (`C:`) and every reply event (`S:`) is logged. Lines
//! that carry a secret (PASS, APOP, AUTH data) are logged as their keyword
//! followed by `<redacted>`; message bodies only by their length.
//!
//! # Timeouts
//!
//! - [`ConnectOptions::connect_timeout`]: name resolution, the TCP connection
//!   (every resolved address is tried within it), the implicit TLS handshake
//!   and the greeting.
//! - the reply timeout ([`pop3_proto::client::ClientConfig::reply_timeout`],
//!   in [`ConnectOptions::session`]): the longest wait for the next octet of
//!   an awaited reply, and for the STLS handshake.
//! - [`ConnectOptions::idle_timeout`]: the longest the transport may make no
//!   progress at all (nothing read, nothing written) while the client waits
//!   on it, whatever the machine expects.
//!
//! # Cancel safety
//!
//! Every `async fn` says in its own `# Cancel safety` section what dropping
//! its future (by a timeout or `select!`) means. In short: a query (STAT,
//! LIST, UIDL, RETR, NOOP, ...) dropped before it finished is settled by the
//! next call on the client, which reads and discards its reply first and
//! then gets its own answer. An operation that changes the session's state
//! over several steps (a login, STLS, [`Pop3Client::dele_many`], QUIT)
//! cannot be resumed by anyone: dropped, the next call fails with
//! [`Error::Cancelled`] and the connection is closed without QUIT, so the
//! server commits no deletion. Never a wrong answer, a refused retry, or
//! [`Error::Closed`] on a live connection.
//!
//! # A body reader dropped half-read
//!
//! A [`Body`] borrows the client, so nothing else can be sent while it lives.
//! When it is dropped before the end of the message, the session stays
//! usable: the rest of that reply is read and discarded by the next call on
//! the client, before that call's own reply. The same holds for a
//! [`RetrBatch`] dropped before its last message. To abandon a large transfer
//! instead, drop the client: the connection closes without QUIT, so the
//! server removes nothing.

pub use pop3_blocking::common::ConnectOptions;
pub use pop3_blocking::tls::TlsVerification;
pub use pop3_proto::client::{Error, Security, TimeoutKind, msg};

use std::future::{Future, poll_fn};
use std::io;
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use async_io::{Async, Timer};
use bytes::{Buf, Bytes};
use futures_io::{AsyncBufRead, AsyncRead, AsyncWrite};
use futures_rustls::TlsConnector;
use pop3_blocking::common::{ATTEMPT_DELAY, bare_host, connect_order};
use pop3_proto::client::task::{self, BodyState, Task};
use pop3_proto::client::{
    BoxedMechanism, ClientState, Connection, RetrBatchState, SaslWork, SaslWorkDone, ServerError,
    Want,
};
use pop3_proto::command::{Command, LangRequest};
use pop3_proto::response::{
    Capability, Greeting, LangLine, ScanLine, StatReply, StatusLine, UidLine,
};
use pop3_proto::types::MessageNumber;
use rustls::pki_types::ServerName;

use crate::io::{Clock, Conn, Stream, core_time};

/// A POP3 session on any `futures-io` runtime (smol, async-std).
///
/// Every method waits for the server's reply to its command; a method that
/// fails with [`Error::Server`], [`Error::Malformed`] or [`Error::Command`]
/// leaves the session usable, other errors end it.
///
/// Dropping the client closes the connection without QUIT: the server then
/// removes nothing, whatever was marked with DELE (RFC 1939 §6). Only an
/// `Ok` from [`Pop3Client::quit`] means deletions were committed.
///
/// TLS: certificates are verified against the host connected to (or
/// [`ConnectOptions::tls_name`]); a DNS name is sent as SNI, an IP address
/// is not sent and must appear in the certificate's IP SANs.
pub struct Pop3Client {
    conn: Connection,
    io: Conn,
    handshake: Option<futures_rustls::Connect<Stream>>,
    /// The SASL work of [`Want::Compute`], on the blocking pool.
    computing: Option<blocking::Task<std::thread::Result<SaslWorkDone>>>,
    tls_name: ServerName<'static>,
    options: ConnectOptions,
    clock: Clock,
}

impl std::fmt::Debug for Pop3Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pop3Client")
            .field("state", &self.state())
            .field("tls", &self.is_tls())
            .field("server", &self.tls_name)
            .finish_non_exhaustive()
    }
}

/// A TCP connection attempt to one address.
type Attempt = Pin<Box<dyn Future<Output = io::Result<Async<TcpStream>>> + Send>>;

/// Resolves `host` (on the `blocking` thread pool, unless it is an IP
/// literal) before `deadline`.
async fn resolve(host: &str, port: u16, deadline: Instant) -> Result<Vec<SocketAddr>, Error> {
    let bare = bare_host(host);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let name = bare.to_owned();
    let lookup = blocking::unblock(move || (name, port).to_socket_addrs());
    let timeout = async {
        Timer::at(deadline).await;
        Err(io::ErrorKind::TimedOut.into())
    };
    match futures_lite::future::or(lookup, timeout).await {
        Ok(it) => Ok(it.collect()),
        Err(e) if e.kind() == io::ErrorKind::TimedOut => Err(Error::Timeout(TimeoutKind::Connect)),
        Err(e) => Err(Error::io(e)),
    }
}

/// Resolves and connects to the first address that answers: the addresses
/// are tried in [`connect_order`], a new attempt starting every
/// [`ATTEMPT_DELAY`] or as soon as one fails, all racing until one succeeds
/// or the deadline passes (happy eyeballs, RFC 8305).
async fn connect_tcp(host: &str, port: u16, deadline: Instant) -> Result<Async<TcpStream>, Error> {
    let addrs = connect_order(resolve(host, port, deadline).await?);
    if addrs.is_empty() {
        return Err(Error::NoAddress(host.to_owned()));
    }
    let mut next = addrs.into_iter();
    let mut attempts: Vec<Attempt> = Vec::new();
    let (mut stagger, mut limit) = (Timer::never(), Timer::at(deadline));
    let (mut start_next, mut last) = (true, None);
    poll_fn(|cx| {
        loop {
            if std::mem::take(&mut start_next) {
                match next.next() {
                    Some(addr) => {
                        attempts.push(Box::pin(Async::<TcpStream>::connect(addr)));
                        stagger.set_after(ATTEMPT_DELAY);
                    }
                    None if attempts.is_empty() => {
                        let last = last.take().map(Error::io);
                        return Poll::Ready(Err(
                            last.unwrap_or(Error::Timeout(TimeoutKind::Connect))
                        ));
                    }
                    None => {}
                }
            }
            let mut i = 0;
            while i < attempts.len() {
                match attempts[i].as_mut().poll(cx) {
                    Poll::Ready(Ok(stream)) => return Poll::Ready(Ok(stream)),
                    Poll::Ready(Err(e)) => {
                        drop(attempts.swap_remove(i));
                        (last, start_next) = (Some(e), true);
                    }
                    Poll::Pending => i += 1,
                }
            }
            if Pin::new(&mut limit).poll(cx).is_ready() {
                return Poll::Ready(Err(Error::Timeout(TimeoutKind::Connect)));
            }
            if !start_next && Pin::new(&mut stagger).poll(cx).is_pending() {
                return Poll::Pending;
            }
            start_next = true;
        }
    })
    .await
    .inspect(|stream| drop(stream.get_ref().set_nodelay(true)))
}

impl Pop3Client {
    /// Connects to `host` (a DNS name or an IP literal, `[::1]` accepted) on
    /// `port`, waits for the greeting, upgrades with STLS if asked, and reads
    /// the capabilities (unless [`ConnectOptions::read_capabilities`] is off).
    ///
    /// ```
    /// use pop3_async_std::client::{ConnectOptions, Pop3Client, Security, TlsVerification};
    /// # use std::sync::Arc;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # // A server on loopback with a certificate of its own CA, for the test.
    /// # let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
    /// # let key = rustls::pki_types::PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der());
    /// # let tls = pop3_async_std::tls::server_config(vec![cert.cert.der().clone()], key.into())?;
    /// # let mut roots = rustls::RootCertStore::empty();
    /// # roots.add(cert.cert.der().clone())?;
    /// # let test_ca = pop3_async_std::client::TlsVerification::Roots(Arc::new(roots));
    /// # let store = pop3_proto::store::MemoryStore::new();
    /// # store.add_user("alice", "secret");
    /// # for n in 1..=3 { store.add_message("alice", format!("Subject: {n}\r\n\r\nHello.\r\n")); }
    /// # let config = pop3_proto::server::ServerConfig::default().allow_plaintext_auth(true);
    /// # let server = pop3_async_std::server::Pop3Server::build(Arc::new(store), config, Some(tls), Default::default());
    /// # let listener = pop3_async_std::server::Async::<std::net::TcpListener>::bind(([127, 0, 0, 1], 0))?;
    /// # let port = listener.get_ref().local_addr()?.port();
    /// # let ex = smol::LocalExecutor::new();
    /// # let _serving = ex.spawn(async move { server.serve(listener, pop3_async_std::server::Security::Plain).await });
    /// # smol::block_on(ex.run(async {
    /// # let dir = tempfile::tempdir()?;
    /// # std::fs::write(dir.path().join("ca.pem"), cert.cert.pem())?;
    /// # let ca_pem = dir.path().join("ca.pem");
    /// let mut options = ConnectOptions::new(Security::StartTls);
    /// options.verification = TlsVerification::ca_file(ca_pem)?; // "ca.pem"
    /// let client = Pop3Client::connect("localhost", port, options).await?;
    /// println!("{:?}", client.greeting());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }))
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropped before it finished, the connection is closed; nothing else is
    /// left behind.
    pub async fn connect(
        host: &str,
        port: u16,
        options: ConnectOptions,
    ) -> Result<Pop3Client, Error> {
        let name = options.server_name(host)?;
        let epoch = Instant::now();
        let tcp = connect_tcp(host, port, epoch + options.connect_timeout).await?;
        Pop3Client::connect_stream(Stream::new(tcp), name, epoch, options, false).await
    }

    /// Runs a session over an already connected stream; `tls_name` is the
    /// name the server certificate must carry (a DNS name or IP address).
    ///
    /// The stream is any `futures-io` byte stream: `async_io::Async<TcpStream>`
    /// and `smol::net::TcpStream` (smol), `async_std::net::TcpStream`, or a
    /// test double. (Boxed inside, so that one client type serves them all;
    /// set `TCP_NODELAY` on a TCP stream yourself, as
    /// [`Pop3Client::connect`] does.)
    ///
    /// ```
    /// use pop3_async_std::client::{ConnectOptions, Pop3Client, Security};
    /// # use std::sync::Arc;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let store = pop3_proto::store::MemoryStore::new();
    /// # store.add_user("alice", "secret");
    /// # for n in 1..=3 { store.add_message("alice", format!("Subject: {n}\r\n\r\nHello.\r\n")); }
    /// # let config = pop3_proto::server::ServerConfig::default().allow_plaintext_auth(true);
    /// # let server = pop3_async_std::server::Pop3Server::new(store, config);
    /// # let listener = pop3_async_std::server::Async::<std::net::TcpListener>::bind(([127, 0, 0, 1], 0))?;
    /// # let port = listener.get_ref().local_addr()?.port();
    /// # let ex = smol::LocalExecutor::new();
    /// # let _serving = ex.spawn(async move { server.serve(listener, pop3_async_std::server::Security::Plain).await });
    /// # smol::block_on(ex.run(async {
    /// let tcp = smol::net::TcpStream::connect(("127.0.0.1", port)).await?;
    /// let client = Pop3Client::from_stream(tcp, "127.0.0.1", ConnectOptions::new(Security::Plain)).await?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }))
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropped before it finished, the connection is closed; nothing else is
    /// left behind.
    pub async fn from_stream<S>(
        stream: S,
        tls_name: &str,
        options: ConnectOptions,
    ) -> Result<Pop3Client, Error>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let name = options.server_name(tls_name)?;
        Pop3Client::connect_stream(Stream::new(stream), name, Instant::now(), options, false).await
    }

    /// Runs a session over a stream the caller already secured (TLS
    /// terminated around it, e.g. a `futures_rustls` stream of its own, or
    /// a channel it trusts as much): no handshake here, no STLS, whatever
    /// [`ConnectOptions::security`] says; the session counts as protected,
    /// so logins that reveal the password are allowed on it. Without the
    /// TLS session at hand, SCRAM's `-PLUS` channel binding is not offered.
    ///
    /// # Cancel safety
    ///
    /// Dropped before it finished, the stream is dropped; nothing else is
    /// left behind.
    pub async fn from_secured_stream<S>(
        stream: S,
        mut options: ConnectOptions,
    ) -> Result<Pop3Client, Error>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        options.security = Security::ImplicitTls;
        let name = options.server_name("localhost")?;
        Pop3Client::connect_stream(Stream::new(stream), name, Instant::now(), options, true).await
    }

    async fn connect_stream(
        stream: Stream,
        name: ServerName<'static>,
        epoch: Instant,
        options: ConnectOptions,
        secured: bool,
    ) -> Result<Pop3Client, Error> {
        let deadline = epoch + options.connect_timeout;
        let mut exporter = None;
        let io = if options.security == Security::ImplicitTls && !secured {
            let connector = TlsConnector::from(options.tls_client_config()?);
            let limit = deadline.saturating_duration_since(Instant::now());
            match crate::io::timeout(limit, connector.connect(name.clone(), stream)).await {
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    return Err(Error::Timeout(TimeoutKind::Connect));
                }
                Err(e) => return Err(Error::Tls(e.into())),
                Ok(s) => {
                    exporter = pop3_blocking::common::tls_exporter(s.get_ref().1);
                    Conn::tls(s)
                }
            }
        } else {
            Conn::plain(stream)
        };
        let mut conn = Connection::new(
            options.connection_config(),
            core_time(epoch, Instant::now()),
            Some(core_time(epoch, deadline)),
        );
        conn.set_tls_exporter(exporter);
        let starttls = options.security == Security::StartTls;
        let mut client = Pop3Client {
            conn,
            io,
            handshake: None,
            computing: None,
            tls_name: name,
            options,
            clock: Clock::new(epoch),
        };
        client.run(task::Connect::new(starttls)).await?;
        Ok(client)
    }

    // ----- inspection -----

    /// The server's greeting.
    pub fn greeting(&self) -> Option<&Greeting> {
        self.conn.machine().greeting()
    }

    /// The capabilities last read (after the greeting, STLS or login), if
    /// the server answered CAPA.
    pub fn capabilities(&self) -> Option<&[Capability]> {
        self.conn.machine().capabilities()
    }

    /// Whether the server advertised `cap` in the last CAPA reply.
    pub fn has_capability(&self, cap: &Capability) -> bool {
        self.capabilities().is_some_and(|c| c.contains(cap))
    }

    /// Whether TLS protects the connection.
    pub fn is_tls(&self) -> bool {
        self.conn.machine().is_tls()
    }

    /// Whether commands are currently pipelined.
    pub fn is_pipelining(&self) -> bool {
        self.conn.machine().pipelining_active()
    }

    /// The session machine's state.
    pub fn state(&self) -> ClientState {
        self.conn.machine().state()
    }

    // ----- commands -----

    /// Runs any [`Task`] (each method below is one): queues its commands and
    /// drives the connection until its result is in.
    ///
    /// # Cancel safety
    ///
    /// As the task's [`Task::on_drop`] says: dropped before it finished, a
    /// query's replies are read and discarded by the next call; any other task
    /// makes the next call fail with [`Error::Cancelled`], the connection
    /// closed without QUIT.
    pub async fn run<T: Task>(&mut self, task: T) -> Result<T::Output, Error> {
        let mut task = self.conn.start(task)?;
        poll_fn(|cx| {
            loop {
                if let Some(result) = self.conn.poll_task(self.clock.now(), &mut task) {
                    return Poll::Ready(result);
                }
                ready!(self.poll_io(cx));
            }
        })
        .await
    }

    /// `CAPA`: the capabilities (also kept for [`Pop3Client::capabilities`]).
    /// A server without CAPA answers [`Error::Server`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe. Dropped before it finished (by a timeout or `select!`), the
    /// reply is read and discarded by the next call on the client, which then
    /// gets its own answer; the session goes on.
    pub async fn capa(&mut self) -> Result<Vec<Capability>, Error> {
        self.run(task::Capa::new()).await
    }

    /// `STLS`: upgrades the connection to TLS in place, then re-reads the
    /// capabilities (RFC 2595 §4).
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: it changes the transport in several steps. Dropped
    /// before it finished (by a timeout or `select!`), its outcome is unknown,
    /// so the next call on the client fails with [`Error::Cancelled`] and the
    /// connection is closed without QUIT (the server commits no deletion).
    pub async fn stls(&mut self) -> Result<(), Error> {
        self.run(task::Stls::new()).await
    }

    /// Logs in the strongest way the session offers, then re-reads the
    /// capabilities: SCRAM-SHA-256, SCRAM-SHA-1, CRAM-MD5, APOP, then
    /// PLAIN, LOGIN or USER/PASS, which reveal the password and without TLS
    /// are used only when the configuration does not refuse clear text (see
    /// [`AutoLogin`](pop3_proto::client::task::AutoLogin); run
    /// [`task::Login`] for USER/PASS as such).
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let store = pop3_proto::store::MemoryStore::new();
    /// # store.add_user("alice", "secret");
    /// # for n in 1..=3 { store.add_message("alice", format!("Subject: {n}\r\n\r\nHello.\r\n")); }
    /// # let config = pop3_proto::server::ServerConfig::default().allow_plaintext_auth(true);
    /// # let server = pop3_async_std::server::Pop3Server::new(store, config);
    /// # let listener = pop3_async_std::server::Async::<std::net::TcpListener>::bind(([127, 0, 0, 1], 0))?;
    /// # let port = listener.get_ref().local_addr()?.port();
    /// # let ex = smol::LocalExecutor::new();
    /// # let _serving = ex.spawn(async move { server.serve(listener, pop3_async_std::server::Security::Plain).await });
    /// # smol::block_on(ex.run(async {
    /// # let mut options = pop3_async_std::client::ConnectOptions::new(pop3_async_std::client::Security::Plain);
    /// # options.session.insecure_cleartext_login = true; // loopback, a test
    /// # let client = &mut pop3_async_std::client::Pop3Client::connect("127.0.0.1", port, options).await?;
    /// client.login("alice", "secret").await?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }))
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: a login changes the session's state in several steps.
    /// Dropped before it finished (by a timeout or `select!`), its outcome is
    /// unknown, so the next call on the client fails with [`Error::Cancelled`]
    /// and the connection is closed without QUIT (the server commits no
    /// deletion).
    pub async fn login(&mut self, user: &str, password: &str) -> Result<(), Error> {
        self.run(pop3_blocking::common::auto_login(
            &self.options,
            user,
            password,
        )?)
        .await
    }

    /// `APOP` with the digest of the greeting's timestamp and `secret`; fails
    /// with [`Error::Command`] when the greeting has no valid timestamp.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: a login changes the session's state. Dropped before it
    /// finished (by a timeout or `select!`), its outcome is unknown, so the
    /// next call on the client fails with [`Error::Cancelled`] and the
    /// connection is closed without QUIT (the server commits no deletion).
    pub async fn apop(&mut self, user: &str, secret: &str) -> Result<(), Error> {
        self.run(task::Apop::new(user, secret)).await
    }

    /// `AUTH` with a SASL mechanism (see [`pop3_proto::client::sasl`]).
    ///
    /// ```
    /// use pop3_proto::client::sasl::Plain;
    /// use pop3_proto::types::Secret;
    /// # use std::sync::Arc;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let store = pop3_proto::store::MemoryStore::new();
    /// # store.add_user("alice", "secret");
    /// # for n in 1..=3 { store.add_message("alice", format!("Subject: {n}\r\n\r\nHello.\r\n")); }
    /// # let config = pop3_proto::server::ServerConfig::default().allow_plaintext_auth(true);
    /// # let server = pop3_async_std::server::Pop3Server::new(store, config);
    /// # let listener = pop3_async_std::server::Async::<std::net::TcpListener>::bind(([127, 0, 0, 1], 0))?;
    /// # let port = listener.get_ref().local_addr()?.port();
    /// # let ex = smol::LocalExecutor::new();
    /// # let _serving = ex.spawn(async move { server.serve(listener, pop3_async_std::server::Security::Plain).await });
    /// # smol::block_on(ex.run(async {
    /// # let mut options = pop3_async_std::client::ConnectOptions::new(pop3_async_std::client::Security::Plain);
    /// # options.session.insecure_cleartext_login = true; // loopback, a test
    /// # let client = &mut pop3_async_std::client::Pop3Client::connect("127.0.0.1", port, options).await?;
    /// client.auth(Box::new(Plain::new("alice", Secret::new("secret")))).await?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }))
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: a SASL exchange changes the session's state in several
    /// steps. Dropped before it finished (by a timeout or `select!`), its
    /// outcome is unknown, so the next call on the client fails with
    /// [`Error::Cancelled`] and the connection is closed without QUIT (the
    /// server commits no deletion).
    pub async fn auth(&mut self, mechanism: BoxedMechanism) -> Result<(), Error> {
        self.run(task::Auth::new(mechanism)).await
    }

    /// `STAT`: message count and total size.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe. Dropped before it finished (by a timeout or `select!`), the
    /// reply is read and discarded by the next call on the client, which then
    /// gets its own answer; the session goes on.
    pub async fn stat(&mut self) -> Result<StatReply, Error> {
        self.run(task::Stat::new()).await
    }

    /// `LIST`: every message's number and size.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe. Dropped before it finished (by a timeout or `select!`), the
    /// listing is read and discarded by the next call on the client, which then
    /// gets its own answer; the session goes on.
    pub async fn list(&mut self) -> Result<Vec<ScanLine>, Error> {
        self.run(task::List::new()).await
    }

    /// `LIST n`: one message's size.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe. Dropped before it finished (by a timeout or `select!`), the
    /// reply is read and discarded by the next call on the client, which then
    /// gets its own answer; the session goes on.
    pub async fn list_one(&mut self, msg: MessageNumber) -> Result<ScanLine, Error> {
        self.run(task::ListOne::new(msg)).await
    }

    /// `UIDL`: every message's unique id.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe. Dropped before it finished (by a timeout or `select!`), the
    /// listing is read and discarded by the next call on the client, which then
    /// gets its own answer; the session goes on.
    pub async fn uidl(&mut self) -> Result<Vec<UidLine>, Error> {
        self.run(task::Uidl::new()).await
    }

    /// `UIDL n`: one message's unique id.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe. Dropped before it finished (by a timeout or `select!`), the
    /// reply is read and discarded by the next call on the client, which then
    /// gets its own answer; the session goes on.
    pub async fn uidl_one(&mut self, msg: MessageNumber) -> Result<UidLine, Error> {
        self.run(task::UidlOne::new(msg)).await
    }

    /// `RETR n`: the message, as a reader over its body (dot-unstuffed,
    /// line ends as the server sent them).
    ///
    /// ```
    /// use futures_lite::AsyncReadExt;
    /// # use std::sync::Arc;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let store = pop3_proto::store::MemoryStore::new();
    /// # store.add_user("alice", "secret");
    /// # for n in 1..=3 { store.add_message("alice", format!("Subject: {n}\r\n\r\nHello.\r\n")); }
    /// # let config = pop3_proto::server::ServerConfig::default().allow_plaintext_auth(true);
    /// # let server = pop3_async_std::server::Pop3Server::new(store, config);
    /// # let listener = pop3_async_std::server::Async::<std::net::TcpListener>::bind(([127, 0, 0, 1], 0))?;
    /// # let port = listener.get_ref().local_addr()?.port();
    /// # let ex = smol::LocalExecutor::new();
    /// # let _serving = ex.spawn(async move { server.serve(listener, pop3_async_std::server::Security::Plain).await });
    /// # smol::block_on(ex.run(async {
    /// # let mut options = pop3_async_std::client::ConnectOptions::new(pop3_async_std::client::Security::Plain);
    /// # options.session.insecure_cleartext_login = true; // loopback, a test
    /// # let client = &mut pop3_async_std::client::Pop3Client::connect("127.0.0.1", port, options).await?;
    /// # client.login("alice", "secret").await?;
    /// let mut body = client.retr(pop3_async_std::client::msg(1).unwrap()).await?;
    /// let mut message = Vec::new();
    /// body.read_to_end(&mut message).await?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }))
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel safe. Dropped before it finished (by a timeout or `select!`), the
    /// message is read and discarded by the next call on the client, which then
    /// gets its own answer; the session goes on.
    pub async fn retr(&mut self, msg: MessageNumber) -> Result<Body<'_>, Error> {
        let state = self.run(task::Retrieve::retr(msg)).await?;
        Ok(Body::new(self, state))
    }

    /// `TOP n lines`: the header and the first `lines` lines of the body.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe. Dropped before it finished (by a timeout or `select!`), the
    /// reply is read and discarded by the next call on the client, which then
    /// gets its own answer; the session goes on.
    pub async fn top(&mut self, msg: MessageNumber, lines: u64) -> Result<Body<'_>, Error> {
        let state = self.run(task::Retrieve::top(msg, lines)).await?;
        Ok(Body::new(self, state))
    }

    /// `DELE n`: marks the message; the server removes it only after a
    /// successful [`Pop3Client::quit`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe. Dropped before it finished (by a timeout or `select!`), the
    /// reply is read and discarded by the next call on the client, which then
    /// gets its own answer; the session goes on. The message may have been
    /// marked (STAT tells; RSET unmarks).
    pub async fn dele(&mut self, msg: MessageNumber) -> Result<(), Error> {
        self.run(task::Simple::new(Command::Dele(msg)))
            .await
            .map(drop)
    }

    /// `RSET`: unmarks every deletion.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe. Dropped before it finished (by a timeout or `select!`), the
    /// reply is read and discarded by the next call on the client, which then
    /// gets its own answer; the session goes on; RSET may have been done (it
    /// can be sent again).
    pub async fn rset(&mut self) -> Result<(), Error> {
        self.run(task::Simple::new(Command::Rset)).await.map(drop)
    }

    /// `NOOP`.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe. Dropped before it finished (by a timeout or `select!`), the
    /// reply is read and discarded by the next call on the client, which then
    /// gets its own answer; the session goes on.
    pub async fn noop(&mut self) -> Result<(), Error> {
        self.run(task::Simple::new(Command::Noop)).await.map(drop)
    }

    /// `UTF8` (RFC 6856), in AUTHORIZATION.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe. Dropped before it finished (by a timeout or `select!`), the
    /// reply is read and discarded by the next call on the client, which then
    /// gets its own answer; the session goes on.
    pub async fn utf8(&mut self) -> Result<(), Error> {
        self.run(task::Simple::new(Command::Utf8)).await.map(drop)
    }

    /// Bare `LANG`: the languages the server offers (RFC 6856).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe. Dropped before it finished (by a timeout or `select!`), the
    /// listing is read and discarded by the next call on the client, which then
    /// gets its own answer; the session goes on.
    pub async fn lang(&mut self) -> Result<Vec<LangLine>, Error> {
        self.run(task::Lang::new()).await
    }

    /// `LANG tag` or `LANG *`: selects a language; the reply's status line.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe. Dropped before it finished (by a timeout or `select!`), the
    /// reply is read and discarded by the next call on the client, which then
    /// gets its own answer; the session goes on.
    pub async fn set_lang(&mut self, request: LangRequest) -> Result<StatusLine, Error> {
        self.run(task::Simple::new(Command::Lang(request))).await
    }

    /// `QUIT`: ends the session; in TRANSACTION, the server removes the
    /// messages marked deleted. Only an `Ok` here means they were removed.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: whether the server committed would be unknown. Dropped
    /// before it finished (by a timeout or `select!`), its outcome is unknown,
    /// so the next call on the client fails with [`Error::Cancelled`] and the
    /// connection is closed without QUIT (the server commits no deletion).
    pub async fn quit(&mut self) -> Result<(), Error> {
        self.run(task::Simple::new(Command::Quit)).await?;
        let close = poll_fn(|cx| Pin::new(&mut self.io).poll_close(cx));
        let _ = crate::io::timeout(Duration::from_secs(2), close).await;
        Ok(())
    }

    /// `RETR` of many messages, pipelined when the server allows it. Take
    /// the messages in order with [`RetrBatch::next`].
    ///
    /// ```
    /// use futures_lite::AsyncReadExt;
    /// # use std::sync::Arc;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let store = pop3_proto::store::MemoryStore::new();
    /// # store.add_user("alice", "secret");
    /// # for n in 1..=3 { store.add_message("alice", format!("Subject: {n}\r\n\r\nHello.\r\n")); }
    /// # let config = pop3_proto::server::ServerConfig::default().allow_plaintext_auth(true);
    /// # let server = pop3_async_std::server::Pop3Server::new(store, config);
    /// # let listener = pop3_async_std::server::Async::<std::net::TcpListener>::bind(([127, 0, 0, 1], 0))?;
    /// # let port = listener.get_ref().local_addr()?.port();
    /// # let ex = smol::LocalExecutor::new();
    /// # let _serving = ex.spawn(async move { server.serve(listener, pop3_async_std::server::Security::Plain).await });
    /// # smol::block_on(ex.run(async {
    /// # let mut options = pop3_async_std::client::ConnectOptions::new(pop3_async_std::client::Security::Plain);
    /// # options.session.insecure_cleartext_login = true; // loopback, a test
    /// # let client = &mut pop3_async_std::client::Pop3Client::connect("127.0.0.1", port, options).await?;
    /// # client.login("alice", "secret").await?;
    /// let msgs: Vec<_> = (1..=3).filter_map(pop3_async_std::client::msg).collect();
    /// let mut batch = client.retr_many(msgs)?;
    /// while let Some((msg, body)) = batch.next().await {
    ///     let mut body = body?;
    ///     let mut text = Vec::new();
    ///     body.read_to_end(&mut text).await?;
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }))
    /// # }
    /// ```
    pub fn retr_many(
        &mut self,
        msgs: impl IntoIterator<Item = MessageNumber>,
    ) -> Result<RetrBatch<'_>, Error> {
        let state = self.conn.retr_many(msgs)?;
        Ok(RetrBatch {
            client: self,
            state,
        })
    }

    /// `DELE` of many messages, pipelined when the server allows it. One
    /// result per message, in order; `Err` only when the session failed.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: which messages were marked would be unknown. Dropped
    /// before it finished (by a timeout or `select!`), its outcome is unknown,
    /// so the next call on the client fails with [`Error::Cancelled`] and the
    /// connection is closed without QUIT (the server commits no deletion).
    pub async fn dele_many(
        &mut self,
        msgs: impl IntoIterator<Item = MessageNumber>,
    ) -> Result<Vec<(MessageNumber, Result<(), ServerError>)>, Error> {
        self.run(task::DeleMany::new(msgs)).await
    }

    // ----- the pump -----

    /// One step of the I/O the connection wants; `Ready` when something
    /// happened (the caller polls its operation again).
    /// The core connection (for drivers that run on it, such as fetch).
    #[cfg(feature = "fetch")]
    pub(crate) fn connection(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// The core connection, to inspect.
    #[cfg(feature = "fetch")]
    pub(crate) fn connection_ref(&self) -> &Connection {
        &self.conn
    }

    /// The current time, for the core.
    #[cfg(feature = "fetch")]
    pub(crate) fn now(&self) -> pop3_proto::time::Instant {
        self.clock.now()
    }

    pub(crate) fn poll_io(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let now = self.clock.now();
        let conn = &mut self.conn;
        let io = Pin::new(&mut self.io);
        let step = match conn.want(now) {
            Want::Write(octets) => io.poll_write(cx, octets).map(|r| conn.wrote(now, r)),
            Want::Flush => io.poll_flush(cx).map(|r| conn.flushed(now, r)),
            Want::StartTls => self.poll_handshake(cx, now),
            Want::Compute(work) => self.poll_compute(cx, work),
            Want::Read(buf) => io.poll_read(cx, buf).map(|r| conn.received(now, r)),
            Want::Done => Poll::Ready(()),
        };
        if step.is_ready() {
            return step;
        }
        // The I/O is pending: wake at the connection's deadline.
        let Some(deadline) = self.conn.poll_timeout(now) else {
            return Poll::Pending;
        };
        ready!(self.clock.poll_until(cx, deadline));
        self.conn.handle_timeout(self.clock.now());
        Poll::Ready(())
    }

    /// The SASL work (SCRAM's key derivation) on the blocking pool, never
    /// on the polling thread; a panic in it fails the session.
    fn poll_compute(&mut self, cx: &mut Context<'_>, work: SaslWork) -> Poll<()> {
        let job = self.computing.get_or_insert_with(|| {
            blocking::unblock(move || {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work.run()))
            })
        });
        let done = ready!(Pin::new(job).poll(cx));
        self.computing = None;
        let done = done.map_err(|_| io::Error::other("the SASL work panicked"));
        self.conn.computed(self.clock.now(), done);
        Poll::Ready(())
    }

    /// The STLS handshake, on the same stream.
    fn poll_handshake(&mut self, cx: &mut Context<'_>, now: pop3_proto::time::Instant) -> Poll<()> {
        if self.handshake.is_none() {
            let started = self.options.tls_client_config().and_then(|config| {
                let plain = self.io.take_plain().map_err(|e| Error::Tls(e.into()))?;
                Ok(TlsConnector::from(config).connect(self.tls_name.clone(), plain))
            });
            match started {
                Ok(hs) => self.handshake = Some(hs),
                Err(e) => {
                    self.conn.tls_done(now, Err(io::Error::other(e)));
                    return Poll::Ready(());
                }
            }
        }
        let Some(hs) = self.handshake.as_mut() else {
            return Poll::Ready(());
        };
        let done = ready!(Pin::new(hs).poll(cx));
        self.handshake = None;
        let done = done.map(|stream| {
            let exporter = pop3_blocking::common::tls_exporter(stream.get_ref().1);
            self.conn.set_tls_exporter(exporter);
            self.io = Conn::tls(stream);
        });
        self.conn.tls_done(self.clock.now(), done);
        Poll::Ready(())
    }
}

/// A message body being received: an [`AsyncRead`] and an
/// [`AsyncBufRead`] (its buffer is the chunk at hand, no copy), or chunk by
/// chunk with [`Body::next_chunk`] (zero-copy `Bytes`). Dropped before the
/// end, the rest is discarded by the client's next call (see the
/// [module docs](self)).
///
/// The body is complete only when the reader reports its end; a connection
/// lost before that is an error, never a short message.
pub struct Body<'a> {
    client: &'a mut Pop3Client,
    state: BodyState,
    chunk: Bytes,
}

impl std::fmt::Debug for Body<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Body")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl<'a> Body<'a> {
    fn new(client: &'a mut Pop3Client, state: BodyState) -> Body<'a> {
        Body {
            client,
            state,
            chunk: Bytes::new(),
        }
    }

    /// The `+OK` line that opened the body (some servers give the size).
    pub fn status(&self) -> &StatusLine {
        self.state.status()
    }

    /// Whether the whole body was received.
    pub fn is_complete(&self) -> bool {
        self.state.is_ended() && self.chunk.is_empty()
    }

    /// The next chunk of the body (zero-copy), `None` at its end.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let store = pop3_proto::store::MemoryStore::new();
    /// # store.add_user("alice", "secret");
    /// # for n in 1..=3 { store.add_message("alice", format!("Subject: {n}\r\n\r\nHello.\r\n")); }
    /// # let config = pop3_proto::server::ServerConfig::default().allow_plaintext_auth(true);
    /// # let server = pop3_async_std::server::Pop3Server::new(store, config);
    /// # let listener = pop3_async_std::server::Async::<std::net::TcpListener>::bind(([127, 0, 0, 1], 0))?;
    /// # let port = listener.get_ref().local_addr()?.port();
    /// # let ex = smol::LocalExecutor::new();
    /// # let _serving = ex.spawn(async move { server.serve(listener, pop3_async_std::server::Security::Plain).await });
    /// # smol::block_on(ex.run(async {
    /// # let mut options = pop3_async_std::client::ConnectOptions::new(pop3_async_std::client::Security::Plain);
    /// # options.session.insecure_cleartext_login = true; // loopback, a test
    /// # let client = &mut pop3_async_std::client::Pop3Client::connect("127.0.0.1", port, options).await?;
    /// # client.login("alice", "secret").await?;
    /// let mut body = client.retr(pop3_async_std::client::msg(1).unwrap()).await?;
    /// let mut size = 0;
    /// while let Some(chunk) = body.next_chunk().await? {
    ///     size += chunk.len();
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }))
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: no octet is lost; the next call gives the chunk this one
    /// would have. The body dropped, its rest is read and discarded by the
    /// next call on the client.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, Error> {
        poll_fn(|cx| self.poll_chunk(cx)).await
    }

    /// The chunk at hand, else the next non-empty one.
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, Error>> {
        if !self.chunk.is_empty() {
            return Poll::Ready(Ok(Some(std::mem::take(&mut self.chunk))));
        }
        loop {
            let now = self.client.clock.now();
            match self.client.conn.poll_body(now, &mut self.state) {
                Some(Ok(Some(chunk))) if chunk.is_empty() => {}
                Some(result) => return Poll::Ready(result),
                None => ready!(self.client.poll_io(cx)),
            }
        }
    }
}

impl AsyncBufRead for Body<'_> {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        if this.chunk.is_empty() {
            match ready!(this.poll_chunk(cx)) {
                Ok(Some(chunk)) => this.chunk = chunk,
                Ok(None) => {}
                Err(e) => return Poll::Ready(Err(e.into())),
            }
        }
        Poll::Ready(Ok(&this.chunk))
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        let chunk = &mut self.get_mut().chunk;
        chunk.advance(amt.min(chunk.len()));
    }
}

impl AsyncRead for Body<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let chunk = ready!(self.as_mut().poll_fill_buf(cx))?;
        let n = chunk.len().min(buf.len());
        buf[..n].copy_from_slice(&chunk[..n]);
        self.consume(n);
        Poll::Ready(Ok(n))
    }
}

/// Pipelined retrievals from [`Pop3Client::retr_many`]. Dropped before the
/// last message, the remaining replies are discarded by the client's next
/// call.
#[derive(Debug)]
pub struct RetrBatch<'a> {
    client: &'a mut Pop3Client,
    state: RetrBatchState,
}

impl RetrBatch<'_> {
    /// The next message's number and a reader over its body; `None` after
    /// the last. A `-ERR` for one message is an `Err` item and the batch
    /// goes on; a failed session ends it.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: no message is lost; the next call gives the message this
    /// one would have. The batch dropped, its rest is read and discarded by
    /// the next call on the client.
    pub async fn next(&mut self) -> Option<(MessageNumber, Result<Body<'_>, Error>)> {
        let client = &mut *self.client;
        let state = &mut self.state;
        let item = poll_fn(|cx| {
            loop {
                if let Some(item) = client.conn.poll_batch(client.clock.now(), state) {
                    return Poll::Ready(item);
                }
                ready!(client.poll_io(cx));
            }
        })
        .await?;
        let (msg, result) = item;
        Some((msg, result.map(|state| Body::new(client, state))))
    }

    /// How many messages are still to come.
    pub fn remaining(&self) -> usize {
        self.state.remaining()
    }
}
