//! The client face: a POP3 client on tokio, driving the sans-IO
//! [`pop3_proto::client::Client`] machine over TCP or TLS.
//!
//! [`Pop3Client::connect`] opens a session (plain, STLS upgraded in place, or
//! implicit TLS), and each POP3 command is an `async fn`. Message bodies are
//! streamed ([`Body`]), never collected whole; [`Pop3Client::retr_many`] and
//! [`Pop3Client::dele_many`] pipeline when the server allows it.
//!
//! ```
//! use pop3_tokio::client::{ConnectOptions, Pop3Client, Security};
//! use tokio::io::AsyncReadExt;
//!
//! # use std::sync::Arc;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # // A server on loopback with a certificate of its own CA, for the test.
//! # let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
//! # let key = rustls::pki_types::PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der());
//! # let tls = pop3_tokio::tls::server_config(vec![cert.cert.der().clone()], key.into())?;
//! # let store = pop3_proto::store::MemoryStore::new();
//! # store.add_user("alice", "secret");
//! # store.add_message("alice", &b"Subject: hi\r\n\r\nHello.\r\n"[..]);
//! # let server = pop3_tokio::server::Pop3Server::build(Arc::new(store), Default::default(), Some(tls), Default::default());
//! # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! # let port = listener.local_addr()?.port();
//! # tokio::spawn(async move { server.serve(listener, pop3_tokio::server::Security::ImplicitTls).await });
//! # let mut roots = rustls::RootCertStore::empty();
//! # roots.add(cert.cert.der().clone())?;
//! # let test_ca = pop3_tokio::client::TlsVerification::Roots(Arc::new(roots));
//! let options = ConnectOptions::new(Security::ImplicitTls);
//! # let mut options = options;
//! # options.verification = test_ca;
//! let mut client = Pop3Client::connect("localhost", port, options).await?;
//! client.login("alice", "secret").await?;
//! let stat = client.stat().await?;
//! for n in 1..=stat.count {
//!     let msg = pop3_tokio::client::msg(n).unwrap();
//!     let mut body = client.retr(msg).await?;
//!     let mut text = Vec::new();
//!     body.read_to_end(&mut text).await?;
//! }
//! client.quit().await?;
//! # Ok(()) }
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

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
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
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsConnector;

use crate::io::{Conn, Stream};

/// A POP3 session on tokio.
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
    handshake: Option<tokio_rustls::Connect<Stream>>,
    /// The SASL work of [`Want::Compute`], on the blocking pool.
    computing: Option<tokio::task::JoinHandle<SaslWorkDone>>,
    /// The name the certificate must carry; none on a stream secured by
    /// the caller.
    tls_name: Option<ServerName<'static>>,
    options: ConnectOptions,
    epoch: Instant,
    timer: Pin<Box<Sleep>>,
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

/// Resolves and connects to the first address that answers: the addresses
/// are tried in [`connect_order`], a new attempt starting every
/// [`ATTEMPT_DELAY`] or as soon as one fails, all racing until one succeeds
/// or the deadline passes (happy eyeballs, RFC 8305).
async fn connect_tcp(host: &str, port: u16, deadline: Instant) -> Result<TcpStream, Error> {
    let resolved: Vec<SocketAddr> =
        match tokio::time::timeout_at(deadline, tokio::net::lookup_host((bare_host(host), port)))
            .await
        {
            Err(_) => return Err(Error::Timeout(TimeoutKind::Connect)),
            Ok(Err(e)) => return Err(Error::io(e)),
            Ok(Ok(it)) => it.collect(),
        };
    let addrs = connect_order(resolved);
    if addrs.is_empty() {
        return Err(Error::NoAddress(host.to_owned()));
    }
    let mut attempts = tokio::task::JoinSet::new();
    let mut next = addrs.iter().copied();
    let mut last = None;
    let mut start_next = true;
    loop {
        if let Some(addr) = start_next.then(|| next.next()).flatten() {
            attempts.spawn(async move { (addr, TcpStream::connect(addr).await) });
        }
        if attempts.is_empty() {
            return Err(last.unwrap_or(Error::Timeout(TimeoutKind::Connect)));
        }
        // The next attempt starts when one fails, or after the stagger.
        let staggered = tokio::time::timeout(ATTEMPT_DELAY, attempts.join_next());
        match tokio::time::timeout_at(deadline, staggered).await {
            Err(_) => {
                attempts.abort_all();
                return Err(Error::Timeout(TimeoutKind::Connect));
            }
            Ok(Err(_)) => start_next = true,
            Ok(Ok(Some(Ok((_, Ok(stream)))))) => {
                attempts.abort_all();
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Ok(Some(Ok((_, Err(e)))))) => {
                last = Some(Error::io(e));
                start_next = true;
            }
            Ok(Ok(Some(Err(e)))) => {
                last = Some(Error::io(io::Error::other(e)));
                start_next = true;
            }
            Ok(Ok(None)) => start_next = true,
        }
    }
}

impl Pop3Client {
    /// Connects to `host` (a DNS name or an IP literal, `[::1]` accepted) on
    /// `port`, waits for the greeting, upgrades with STLS if asked, and reads
    /// the capabilities (unless [`ConnectOptions::read_capabilities`] is off).
    ///
    /// ```
    /// use pop3_tokio::client::{ConnectOptions, Pop3Client, Security, TlsVerification};
    /// # use std::sync::Arc;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # // A server on loopback with a certificate of its own CA, for the test.
    /// # let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
    /// # let key = rustls::pki_types::PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der());
    /// # let tls = pop3_tokio::tls::server_config(vec![cert.cert.der().clone()], key.into())?;
    /// # let store = pop3_proto::store::MemoryStore::new();
    /// # store.add_user("alice", "secret");
    /// # store.add_message("alice", &b"Subject: hi\r\n\r\nHello.\r\n"[..]);
    /// # let server = pop3_tokio::server::Pop3Server::build(Arc::new(store), Default::default(), Some(tls), Default::default());
    /// # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// # let port = listener.local_addr()?.port();
    /// # tokio::spawn(async move { server.serve(listener, pop3_tokio::server::Security::Plain).await });
    /// # let mut roots = rustls::RootCertStore::empty();
    /// # roots.add(cert.cert.der().clone())?;
    /// # let test_ca = pop3_tokio::client::TlsVerification::Roots(Arc::new(roots));
    /// # let dir = tempfile::tempdir()?;
    /// # std::fs::write(dir.path().join("ca.pem"), cert.cert.pem())?;
    /// # let ca_pem = dir.path().join("ca.pem");
    /// let mut options = ConnectOptions::new(Security::StartTls);
    /// options.verification = TlsVerification::ca_file(ca_pem)?; // "ca.pem"
    /// let client = Pop3Client::connect("localhost", port, options).await?;
    /// println!("{:?}", client.greeting());
    /// # Ok(()) }
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
        Pop3Client::connect_stream(Stream::new(tcp), Some(name), epoch, options).await
    }

    /// Runs a session over an already connected stream; `tls_name` is the
    /// name the server certificate must carry (a DNS name or IP address),
    /// for STLS or implicit TLS as [`ConnectOptions::security`] says.
    ///
    /// The stream is any tokio byte stream: a `TcpStream`, a `UnixStream`,
    /// one end of [`tokio::io::duplex`] in a test, a connection through a
    /// SOCKS or PROXY-protocol wrapper. (Boxed inside, so that one client
    /// type serves them all; set `TCP_NODELAY` on a TCP stream yourself, as
    /// [`Pop3Client::connect`] does.) The connect timeout counts from this
    /// call.
    ///
    /// ```
    /// use pop3_tokio::client::{ConnectOptions, Pop3Client, Security};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use pop3_tokio::server::{Pop3Server, Security as Serve};
    /// # let server = Pop3Server::new(pop3_proto::store::MemoryStore::new(), Default::default());
    /// # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// # let port = listener.local_addr()?.port();
    /// # let dir = tempfile::tempdir()?;
    /// # let socket = dir.path().join("pop3.sock");
    /// # let unix_listener = tokio::net::UnixListener::bind(&socket)?;
    /// # let tcp_server = server.clone();
    /// # tokio::spawn(async move { tcp_server.serve(listener, Serve::Plain).await });
    /// # tokio::spawn(async move {
    /// #     let (stream, _) = unix_listener.accept().await.unwrap();
    /// #     server.serve_connection(stream, ([0, 0, 0, 0], 0).into(), Serve::Plain).await
    /// # });
    /// let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    /// let client = Pop3Client::from_stream(tcp, "127.0.0.1", ConnectOptions::new(Security::Plain)).await?;
    /// let unix = tokio::net::UnixStream::connect(&socket).await?; // "/run/pop3.sock"
    /// let client = Pop3Client::from_stream(unix, "localhost", ConnectOptions::new(Security::Plain)).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropped before it finished, the stream is dropped; nothing else is
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
        Pop3Client::connect_stream(Stream::new(stream), Some(name), Instant::now(), options).await
    }

    /// Runs a session over a stream the caller already secured (TLS
    /// terminated around it, e.g. a `tokio_rustls` stream of its own, or a
    /// channel it trusts as much): no handshake here, no STLS, whatever
    /// [`ConnectOptions::security`] says; the session counts as protected,
    /// so logins that reveal the password are allowed on it. Without the
    /// TLS session at hand, SCRAM's `-PLUS` channel binding is not offered.
    ///
    /// ```
    /// use pop3_tokio::client::{ConnectOptions, Pop3Client, Security};
    /// # use std::sync::Arc;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # // A server on loopback with a certificate of its own CA, for the test.
    /// # let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
    /// # let key = rustls::pki_types::PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der());
    /// # let tls = pop3_tokio::tls::server_config(vec![cert.cert.der().clone()], key.into())?;
    /// # let store = pop3_proto::store::MemoryStore::new();
    /// # store.add_user("alice", "secret");
    /// # store.add_message("alice", &b"Subject: hi\r\n\r\nHello.\r\n"[..]);
    /// # let server = pop3_tokio::server::Pop3Server::build(Arc::new(store), Default::default(), Some(tls), Default::default());
    /// # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// # let port = listener.local_addr()?.port();
    /// # tokio::spawn(async move { server.serve(listener, pop3_tokio::server::Security::ImplicitTls).await });
    /// # let mut roots = rustls::RootCertStore::empty();
    /// # roots.add(cert.cert.der().clone())?;
    /// # let test_ca = pop3_tokio::client::TlsVerification::Roots(Arc::new(roots));
    /// # let config = test_ca.client_config()?;
    /// # let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    /// # let name = rustls::pki_types::ServerName::try_from("localhost")?;
    /// # let tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await?;
    /// // `tls`: a stream the caller secured (here with tokio-rustls).
    /// let mut client = Pop3Client::from_secured_stream(tls, ConnectOptions::new(Security::Plain)).await?;
    /// assert!(client.is_tls());
    /// client.login("alice", "secret").await?;
    /// # Ok(()) }
    /// ```
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
        let epoch = Instant::now();
        let mut client =
            Pop3Client::session(Conn::Plain(Stream::new(stream)), None, epoch, options);
        client.run(task::Connect::new(false)).await?;
        Ok(client)
    }

    async fn connect_stream(
        stream: Stream,
        name: Option<ServerName<'static>>,
        epoch: Instant,
        options: ConnectOptions,
    ) -> Result<Pop3Client, Error> {
        let deadline = epoch + options.connect_timeout;
        let io = match (options.security, name.clone()) {
            (Security::ImplicitTls, Some(name)) => {
                let connector = TlsConnector::from(options.tls_client_config()?);
                match tokio::time::timeout_at(deadline, connector.connect(name, stream)).await {
                    Err(_) => return Err(Error::Timeout(TimeoutKind::Connect)),
                    Ok(Err(e)) => return Err(Error::Tls(e.into())),
                    Ok(Ok(s)) => Conn::ClientTls(Box::new(s)),
                }
            }
            _ => Conn::Plain(stream),
        };
        let starttls = options.security == Security::StartTls;
        let mut client = Pop3Client::session(io, name, epoch, options);
        client.run(task::Connect::new(starttls)).await?;
        Ok(client)
    }

    /// The client over `io`, before the greeting; the session counts as
    /// protected when `options.security` is implicit TLS.
    fn session(
        io: Conn,
        name: Option<ServerName<'static>>,
        epoch: Instant,
        options: ConnectOptions,
    ) -> Pop3Client {
        let deadline = epoch + options.connect_timeout;
        let now = proto_time(epoch, Instant::now());
        let mut conn = Connection::new(
            options.connection_config(),
            now,
            Some(proto_time(epoch, deadline)),
        );
        if let Conn::ClientTls(s) = &io {
            conn.set_tls_exporter(pop3_blocking::common::tls_exporter(s.get_ref().1));
        }
        Pop3Client {
            conn,
            io,
            handshake: None,
            computing: None,
            tls_name: name,
            options,
            epoch,
            timer: Box::pin(tokio::time::sleep_until(epoch)),
        }
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
                if let Some(result) = self.conn.poll_task(self.now(), &mut task) {
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
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let store = pop3_proto::store::MemoryStore::new();
    /// # store.add_user("alice", "secret");
    /// # for n in 1..=3 { store.add_message("alice", format!("Subject: {n}\r\n\r\nHello.\r\n")); }
    /// # let config = pop3_proto::server::ServerConfig::default().allow_plaintext_auth(true);
    /// # let server = pop3_tokio::server::Pop3Server::new(store, config);
    /// # let (near, far) = tokio::io::duplex(64 * 1024);
    /// # let peer = ([127, 0, 0, 1], 0).into();
    /// # tokio::spawn(async move { server.serve_connection(far, peer, pop3_tokio::server::Security::Plain).await });
    /// # let mut options = pop3_tokio::client::ConnectOptions::new(pop3_tokio::client::Security::Plain);
    /// # options.session.insecure_cleartext_login = true; // a pipe in a test
    /// # let client = &mut pop3_tokio::client::Pop3Client::from_stream(near, "localhost", options).await?;
    /// client.login("alice", "secret").await?;
    /// # Ok(()) }
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
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let store = pop3_proto::store::MemoryStore::new();
    /// # store.add_user("alice", "secret");
    /// # for n in 1..=3 { store.add_message("alice", format!("Subject: {n}\r\n\r\nHello.\r\n")); }
    /// # let config = pop3_proto::server::ServerConfig::default().allow_plaintext_auth(true);
    /// # let server = pop3_tokio::server::Pop3Server::new(store, config);
    /// # let (near, far) = tokio::io::duplex(64 * 1024);
    /// # let peer = ([127, 0, 0, 1], 0).into();
    /// # tokio::spawn(async move { server.serve_connection(far, peer, pop3_tokio::server::Security::Plain).await });
    /// # let mut options = pop3_tokio::client::ConnectOptions::new(pop3_tokio::client::Security::Plain);
    /// # options.session.insecure_cleartext_login = true; // a pipe in a test
    /// # let client = &mut pop3_tokio::client::Pop3Client::from_stream(near, "localhost", options).await?;
    /// client.auth(Box::new(Plain::new("alice", Secret::new("secret")))).await?;
    /// # Ok(()) }
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
    /// use tokio::io::AsyncReadExt;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let store = pop3_proto::store::MemoryStore::new();
    /// # store.add_user("alice", "secret");
    /// # for n in 1..=3 { store.add_message("alice", format!("Subject: {n}\r\n\r\nHello.\r\n")); }
    /// # let config = pop3_proto::server::ServerConfig::default().allow_plaintext_auth(true);
    /// # let server = pop3_tokio::server::Pop3Server::new(store, config);
    /// # let (near, far) = tokio::io::duplex(64 * 1024);
    /// # let peer = ([127, 0, 0, 1], 0).into();
    /// # tokio::spawn(async move { server.serve_connection(far, peer, pop3_tokio::server::Security::Plain).await });
    /// # let mut options = pop3_tokio::client::ConnectOptions::new(pop3_tokio::client::Security::Plain);
    /// # options.session.insecure_cleartext_login = true; // a pipe in a test
    /// # let client = &mut pop3_tokio::client::Pop3Client::from_stream(near, "localhost", options).await?;
    /// # client.login("alice", "secret").await?;
    /// let mut body = client.retr(pop3_tokio::client::msg(1).unwrap()).await?;
    /// let mut message = Vec::new();
    /// body.read_to_end(&mut message).await?;
    /// # Ok(()) }
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
        let _ = tokio::time::timeout(Duration::from_secs(2), self.io.shutdown()).await;
        Ok(())
    }

    /// `RETR` of many messages, pipelined when the server allows it. Take
    /// the messages in order with [`RetrBatch::next`].
    ///
    /// ```
    /// use tokio::io::AsyncReadExt;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let store = pop3_proto::store::MemoryStore::new();
    /// # store.add_user("alice", "secret");
    /// # for n in 1..=3 { store.add_message("alice", format!("Subject: {n}\r\n\r\nHello.\r\n")); }
    /// # let config = pop3_proto::server::ServerConfig::default().allow_plaintext_auth(true);
    /// # let server = pop3_tokio::server::Pop3Server::new(store, config);
    /// # let (near, far) = tokio::io::duplex(64 * 1024);
    /// # let peer = ([127, 0, 0, 1], 0).into();
    /// # tokio::spawn(async move { server.serve_connection(far, peer, pop3_tokio::server::Security::Plain).await });
    /// # let mut options = pop3_tokio::client::ConnectOptions::new(pop3_tokio::client::Security::Plain);
    /// # options.session.insecure_cleartext_login = true; // a pipe in a test
    /// # let client = &mut pop3_tokio::client::Pop3Client::from_stream(near, "localhost", options).await?;
    /// # client.login("alice", "secret").await?;
    /// let msgs: Vec<_> = (1..=3).filter_map(pop3_tokio::client::msg).collect();
    /// let mut batch = client.retr_many(msgs)?;
    /// while let Some((msg, body)) = batch.next().await {
    ///     let mut body = body?;
    ///     let mut text = Vec::new();
    ///     body.read_to_end(&mut text).await?;
    /// }
    /// # Ok(()) }
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

    pub(crate) fn now(&self) -> pop3_proto::time::Instant {
        proto_time(self.epoch, Instant::now())
    }

    /// One step of the I/O the connection wants; `Ready` when something
    /// happened (the caller polls its operation again).
    pub(crate) fn poll_io(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let now = self.now();
        let conn = &mut self.conn;
        let io = Pin::new(&mut self.io);
        let step = match conn.want(now) {
            Want::Write(octets) => io.poll_write(cx, octets).map(|r| conn.wrote(now, r)),
            Want::Flush => io.poll_flush(cx).map(|r| conn.flushed(now, r)),
            Want::StartTls => self.poll_handshake(cx, now),
            Want::Compute(work) => self.poll_compute(cx, work),
            Want::Read(buf) => {
                let mut buf = ReadBuf::new(buf);
                let read = io.poll_read(cx, &mut buf);
                let n = buf.filled().len();
                read.map(|r| conn.received(now, r.map(|()| n)))
            }
            Want::Done => Poll::Ready(()),
        };
        if step.is_ready() {
            return step;
        }
        // The I/O is pending: wake at the connection's deadline.
        let Some(deadline) = self.conn.poll_timeout(now) else {
            return Poll::Pending;
        };
        if deadline <= now {
            self.conn.handle_timeout(now);
            return Poll::Ready(());
        }
        let at = self.epoch + Duration::from_millis(deadline.as_millis());
        if self.timer.deadline() != at {
            self.timer.as_mut().reset(at);
        }
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.conn.handle_timeout(self.now());
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// The SASL work (SCRAM's key derivation) on the blocking pool, never
    /// on the polling thread; a panic in it fails the session.
    fn poll_compute(&mut self, cx: &mut Context<'_>, work: SaslWork) -> Poll<()> {
        let job = self
            .computing
            .get_or_insert_with(|| tokio::task::spawn_blocking(move || work.run()));
        let done = ready!(Pin::new(job).poll(cx));
        self.computing = None;
        self.conn
            .computed(self.now(), done.map_err(io::Error::other));
        Poll::Ready(())
    }

    /// The STLS handshake, on the same socket.
    fn poll_handshake(&mut self, cx: &mut Context<'_>, now: pop3_proto::time::Instant) -> Poll<()> {
        if self.handshake.is_none() {
            let started = self.options.tls_client_config().and_then(|config| {
                let name = self.tls_name.clone().ok_or_else(|| {
                    Error::Tls(io::Error::other("the stream was secured by the caller").into())
                })?;
                let stream = self.io.take_plain().map_err(|e| Error::Tls(e.into()))?;
                Ok(TlsConnector::from(config).connect(name, stream))
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
            self.io = Conn::ClientTls(Box::new(stream));
        });
        self.conn.tls_done(self.now(), done);
        Poll::Ready(())
    }
}

/// Milliseconds since `epoch`, as the core's time.
fn proto_time(epoch: Instant, at: Instant) -> pop3_proto::time::Instant {
    let ms = at.saturating_duration_since(epoch).as_millis();
    pop3_proto::time::Instant::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
}

/// A message body being received: an [`AsyncRead`], or chunk by chunk with
/// [`Body::next_chunk`] (zero-copy `Bytes`; for a `Stream`, wrap the reader
/// in `tokio_util::io::ReaderStream`). Dropped before the end, the rest is
/// discarded by the client's next call (see the [module docs](self)).
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
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let store = pop3_proto::store::MemoryStore::new();
    /// # store.add_user("alice", "secret");
    /// # for n in 1..=3 { store.add_message("alice", format!("Subject: {n}\r\n\r\nHello.\r\n")); }
    /// # let config = pop3_proto::server::ServerConfig::default().allow_plaintext_auth(true);
    /// # let server = pop3_tokio::server::Pop3Server::new(store, config);
    /// # let (near, far) = tokio::io::duplex(64 * 1024);
    /// # let peer = ([127, 0, 0, 1], 0).into();
    /// # tokio::spawn(async move { server.serve_connection(far, peer, pop3_tokio::server::Security::Plain).await });
    /// # let mut options = pop3_tokio::client::ConnectOptions::new(pop3_tokio::client::Security::Plain);
    /// # options.session.insecure_cleartext_login = true; // a pipe in a test
    /// # let client = &mut pop3_tokio::client::Pop3Client::from_stream(near, "localhost", options).await?;
    /// # client.login("alice", "secret").await?;
    /// let mut body = client.retr(pop3_tokio::client::msg(1).unwrap()).await?;
    /// let mut size = 0;
    /// while let Some(chunk) = body.next_chunk().await? {
    ///     size += chunk.len();
    /// }
    /// # Ok(()) }
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

    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, Error>> {
        if !self.chunk.is_empty() {
            return Poll::Ready(Ok(Some(std::mem::take(&mut self.chunk))));
        }
        loop {
            let now = self.client.now();
            if let Some(result) = self.client.conn.poll_body(now, &mut self.state) {
                return Poll::Ready(result);
            }
            ready!(self.client.poll_io(cx));
        }
    }
}

impl AsyncRead for Body<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.chunk.is_empty() {
            match ready!(this.poll_chunk(cx)) {
                Ok(Some(chunk)) => this.chunk = chunk,
                Ok(None) => return Poll::Ready(Ok(())),
                Err(e) => return Poll::Ready(Err(e.into())),
            }
        }
        let n = this.chunk.len().min(buf.remaining());
        buf.put_slice(&this.chunk[..n]);
        this.chunk.advance(n);
        Poll::Ready(Ok(()))
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
                if let Some(item) = client.conn.poll_batch(client.now(), state) {
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
