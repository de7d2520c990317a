//! The client face: a POP3 client on tokio, driving the sans-IO
//! [`pop3_proto::client::Client`] machine over TCP or TLS.
//!
//! [`Pop3Client::connect`] opens a session (plain, STLS upgraded in place, or
//! implicit TLS), and each POP3 command is an `async fn`. Message bodies are
//! streamed ([`Body`]), never collected whole; [`Pop3Client::retr_many`] and
//! [`Pop3Client::dele_many`] pipeline when the server allows it.
//!
//! ```no_run
//! use pop3_tokio::client::{ConnectOptions, Pop3Client, Security};
//! use tokio::io::AsyncReadExt;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let options = ConnectOptions::new(Security::ImplicitTls);
//! let mut client = Pop3Client::connect("pop.example.com", 995, options).await?;
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
//! With a `tracing` subscriber at `TRACE` for the target `pop3_tokio::client`,
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
//! # A body reader dropped half-read
//!
//! A [`Body`] borrows the client, so nothing else can be sent while it lives.
//! When it is dropped before the end of the message, the session stays
//! usable: the rest of that reply is read and discarded by the next call on
//! the client, before that call's own reply. The same holds for a
//! [`RetrBatch`] dropped before its last message. To abandon a large transfer
//! instead, drop the client: the connection closes without QUIT, so the
//! server removes nothing.

mod tls;

pub use tls::TlsVerification;

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use pop3_proto::client::{
    BoxedMechanism, CancelReason, Client, ClientConfig, ClientError, ClientEvent, ProtocolError,
    RequestId, SaslError, ServerError,
};
use pop3_proto::command::LangRequest;
use pop3_proto::response::{
    Capability, Greeting, LangLine, ResponseError, ScanLine, StatReply, StatusLine, UidLine,
};
use pop3_proto::session::{Action, Transmit};
use pop3_proto::types::{MessageNumber, Secret};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsConnector;

use crate::io::Conn;
use crate::tls::TlsConfigError;

const LOG: &str = "pop3_tokio::client";
const READ_CHUNK: usize = 64 * 1024;

/// A message number from a `u32` (`None` for 0): a shorthand for
/// [`MessageNumber::new`].
///
/// ```
/// assert_eq!(pop3_tokio::client::msg(3).unwrap().get(), 3);
/// assert!(pop3_tokio::client::msg(0).is_none());
/// ```
pub fn msg(n: u32) -> Option<MessageNumber> {
    MessageNumber::new(n)
}

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Security {
    /// No TLS (port 110). Passwords travel in clear text.
    Plain,
    /// Plain connection upgraded with STLS right after the greeting
    /// (RFC 2595); fails if the server refuses.
    StartTls,
    /// TLS from the first octet (POP3S, port 995; RFC 8314).
    ImplicitTls,
}

impl Security {
    /// The usual port: 995 for implicit TLS, 110 otherwise.
    ///
    /// ```
    /// use pop3_tokio::client::Security;
    /// assert_eq!(Security::ImplicitTls.default_port(), 995);
    /// ```
    pub fn default_port(self) -> u16 {
        match self {
            Security::ImplicitTls => 995,
            _ => 110,
        }
    }
}

/// How [`Pop3Client::connect`] connects. Start from [`ConnectOptions::new`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectOptions {
    /// Plain, STLS or implicit TLS.
    pub security: Security,
    /// How the certificate is verified, when [`ConnectOptions::tls_config`]
    /// is not given.
    pub verification: TlsVerification,
    /// A complete rustls configuration to use instead of one built from
    /// [`ConnectOptions::verification`].
    pub tls_config: Option<Arc<rustls::ClientConfig>>,
    /// The name to verify the certificate against (and to send as SNI when it
    /// is a DNS name), when it differs from the host connected to.
    pub tls_name: Option<String>,
    /// Resolution, TCP connect, implicit TLS handshake and greeting (default
    /// 30 s).
    pub connect_timeout: Duration,
    /// The longest the transport may make no progress while the client waits
    /// on it (default 5 min). `None`: no limit besides the reply timeout.
    pub idle_timeout: Option<Duration>,
    /// Read the capabilities after the greeting, after STLS and after login
    /// (default `true`): pipelining is used only when they allow it.
    pub read_capabilities: bool,
    /// The most entries a listing collected by [`Pop3Client::list`],
    /// [`Pop3Client::uidl`] or [`Pop3Client::lang`] may have (default
    /// 1,000,000): a server that lists without end cannot exhaust memory.
    pub max_listing_entries: usize,
    /// The session machine's settings (pipelining, reply timeout, limits).
    pub session: ClientConfig,
}

impl ConnectOptions {
    /// Defaults with the given security.
    ///
    /// ```
    /// use pop3_tokio::client::{ConnectOptions, Security};
    /// let mut options = ConnectOptions::new(Security::StartTls);
    /// options.session.pipelining = false;
    /// ```
    pub fn new(security: Security) -> Self {
        ConnectOptions {
            security,
            verification: TlsVerification::default(),
            tls_config: None,
            tls_name: None,
            connect_timeout: Duration::from_secs(30),
            idle_timeout: Some(Duration::from_secs(300)),
            read_capabilities: true,
            max_listing_entries: 1_000_000,
            session: ClientConfig::default(),
        }
    }
}

/// Which timeout expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimeoutKind {
    /// Connecting (resolution, TCP, implicit TLS, greeting).
    Connect,
    /// Waiting for a reply (or the STLS handshake).
    Reply,
    /// The transport made no progress.
    Idle,
}

/// What went wrong.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Error {
    /// Reading, writing or connecting failed.
    Io(Arc<io::Error>),
    /// The TLS handshake failed (e.g. the certificate was not trusted).
    Tls(Arc<io::Error>),
    /// The TLS configuration could not be built.
    TlsConfig(Arc<TlsConfigError>),
    /// The host is not a valid name or address.
    InvalidHost(String),
    /// The name resolved to no address.
    NoAddress(String),
    /// A timeout expired.
    Timeout(TimeoutKind),
    /// The server answered `-ERR`.
    Server(ServerError),
    /// The server broke the protocol; the session is over.
    Protocol(ProtocolError),
    /// A reply could not be parsed (the session stays in step).
    Malformed {
        /// The line.
        line: Bytes,
        /// What was wrong with it.
        error: ResponseError,
    },
    /// The command was refused before reaching the wire (wrong state, bad
    /// argument, clear text refused, ...).
    Command(ClientError),
    /// The SASL mechanism could not answer the server; the exchange was
    /// cancelled.
    Sasl(SaslError),
    /// A listing (LIST, UIDL, LANG) had more entries than
    /// [`ConnectOptions::max_listing_entries`]; the connection was dropped
    /// (without QUIT, so nothing is deleted).
    ListingTooLong {
        /// The limit in force.
        limit: usize,
    },
    /// The session is over (after QUIT, or the server closed cleanly).
    Closed,
}

impl Error {
    /// Whether trying again later, on a new connection, may succeed: network
    /// failures and timeouts, and `-ERR` replies with `[IN-USE]`,
    /// `[LOGIN-DELAY]` or `[SYS/TEMP]`.
    ///
    /// ```
    /// use pop3_tokio::client::{Error, TimeoutKind};
    /// assert!(Error::Timeout(TimeoutKind::Connect).is_transient());
    /// assert!(!Error::Closed.is_transient());
    /// ```
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Io(_) | Error::Timeout(_) | Error::NoAddress(_) => true,
            Error::Server(e) => e.is_transient(),
            Error::Protocol(ProtocolError::UnexpectedEof | ProtocolError::Timeout) => true,
            _ => false,
        }
    }

    /// The server's `-ERR`, if that is what this is.
    pub fn server_error(&self) -> Option<&ServerError> {
        match self {
            Error::Server(e) => Some(e),
            _ => None,
        }
    }

    fn io(e: io::Error) -> Error {
        Error::Io(Arc::new(e))
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Io(e) => write!(f, "I/O error: {e}"),
            Error::Tls(e) => write!(f, "TLS handshake failed: {e}"),
            Error::TlsConfig(e) => write!(f, "{e}"),
            Error::InvalidHost(h) => write!(f, "invalid host name {h:?}"),
            Error::NoAddress(h) => write!(f, "{h} has no address"),
            Error::Timeout(TimeoutKind::Connect) => f.write_str("timed out connecting"),
            Error::Timeout(TimeoutKind::Reply) => f.write_str("timed out waiting for a reply"),
            Error::Timeout(TimeoutKind::Idle) => f.write_str("connection stalled"),
            Error::Server(e) => write!(f, "server said {e}"),
            Error::Protocol(e) => write!(f, "protocol error: {e}"),
            Error::Malformed { error, .. } => write!(f, "malformed reply: {error}"),
            Error::Command(e) => write!(f, "command refused: {e}"),
            Error::Sasl(e) => write!(f, "authentication aborted: {e}"),
            Error::ListingTooLong { limit } => {
                write!(f, "the server listed more than {limit} entries")
            }
            Error::Closed => f.write_str("the session is closed"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) | Error::Tls(e) => Some(e.as_ref()),
            Error::TlsConfig(e) => Some(e.as_ref()),
            Error::Server(e) => Some(e),
            Error::Protocol(e) => Some(e),
            Error::Command(e) => Some(e),
            Error::Sasl(e) => Some(e),
            _ => None,
        }
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        match e {
            Error::Io(inner) => io::Error::new(inner.kind(), Error::Io(inner)),
            Error::Timeout(_) => io::Error::new(io::ErrorKind::TimedOut, e),
            other => io::Error::other(other),
        }
    }
}

impl From<ClientError> for Error {
    fn from(e: ClientError) -> Error {
        match e {
            ClientError::Closed => Error::Closed,
            other => Error::Command(other),
        }
    }
}

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
    machine: Client,
    conn: Conn,
    epoch: Instant,
    events: VecDeque<ClientEvent>,
    /// Commands written by the machine, not yet on the wire.
    /// Command octets not yet written (coalesced: a pipelined batch goes
    /// out in one write, one TLS record).
    wbuf: BytesMut,
    /// Written, not yet flushed.
    unflushed: bool,
    rbuf: Box<[u8]>,
    rstart: usize,
    rend: usize,
    /// Events of requests up to this one are dropped (abandoned readers).
    discard_upto: Option<RequestId>,
    /// The first failure of the transport or the protocol.
    fault: Option<Error>,
    /// The transport is finished (closed, failed, or the machine asked to close).
    dead: bool,
    /// The machine reported `Closed`.
    closed: bool,
    start_tls: bool,
    handshake: Option<tokio_rustls::Connect<TcpStream>>,
    tls_connector: Option<TlsConnector>,
    tls_name: ServerName<'static>,
    options: ConnectOptions,
    timer: Pin<Box<Sleep>>,
    last_progress: Instant,
    /// When the current wait began (time the application spent elsewhere
    /// is not idleness of the transport).
    waiting_since: Option<Instant>,
}

impl std::fmt::Debug for Pop3Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pop3Client")
            .field("state", &self.machine.state())
            .field("tls", &self.machine.is_tls())
            .field("server", &self.tls_name)
            .finish_non_exhaustive()
    }
}

/// Turns `host` (a DNS name, an IP literal, possibly in brackets) into the
/// name a certificate must carry.
fn server_name(host: &str) -> Result<ServerName<'static>, Error> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    ServerName::try_from(bare.to_owned()).map_err(|_| Error::InvalidHost(host.to_owned()))
}

/// How long an attempt has before the next address is tried alongside it
/// (RFC 8305's "connection attempt delay").
const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// Resolves and connects to the first address that answers: the addresses
/// (IPv6 and IPv4 alternating) are tried in order, a new attempt starting
/// every [`ATTEMPT_DELAY`] or as soon as one fails, all racing until one
/// succeeds or the deadline passes (happy eyeballs, RFC 8305).
async fn connect_tcp(host: &str, port: u16, deadline: Instant) -> Result<TcpStream, Error> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let resolved: Vec<SocketAddr> =
        match tokio::time::timeout_at(deadline, tokio::net::lookup_host((bare, port))).await {
            Err(_) => return Err(Error::Timeout(TimeoutKind::Connect)),
            Ok(Err(e)) => return Err(Error::io(e)),
            Ok(Ok(it)) => it.collect(),
        };
    let addrs = interleave(resolved);
    if addrs.is_empty() {
        return Err(Error::NoAddress(host.to_owned()));
    }
    let mut attempts = tokio::task::JoinSet::new();
    let mut next = addrs.iter().copied();
    let mut last = None;
    let mut start_next = true;
    loop {
        if start_next && let Some(addr) = next.next() {
            tracing::debug!(target: LOG, %addr, "connecting");
            attempts.spawn(async move { (addr, TcpStream::connect(addr).await) });
        }
        if attempts.is_empty() {
            return Err(last.unwrap_or(Error::Timeout(TimeoutKind::Connect)));
        }
        let stagger = tokio::time::sleep(ATTEMPT_DELAY);
        tokio::select! {
            joined = attempts.join_next() => match joined {
                Some(Ok((_, Ok(stream)))) => {
                    attempts.abort_all();
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Some(Ok((addr, Err(e)))) => {
                    tracing::debug!(target: LOG, %addr, error = %e, "connect failed");
                    last = Some(Error::io(e));
                    start_next = true;
                }
                Some(Err(e)) => {
                    last = Some(Error::io(io::Error::other(e)));
                    start_next = true;
                }
                None => start_next = true,
            },
            () = stagger => start_next = true,
            () = tokio::time::sleep_until(deadline) => {
                attempts.abort_all();
                return Err(Error::Timeout(TimeoutKind::Connect));
            }
        }
    }
}

/// Orders addresses by alternating families, starting with the first one's.
fn interleave(addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let Some(first) = addrs.first() else {
        return addrs;
    };
    let first_v6 = first.is_ipv6();
    let (mut a, mut b): (VecDeque<_>, VecDeque<_>) =
        addrs.into_iter().partition(|x| x.is_ipv6() == first_v6);
    let mut out = Vec::with_capacity(a.len() + b.len());
    while !a.is_empty() || !b.is_empty() {
        out.extend(a.pop_front());
        out.extend(b.pop_front());
    }
    out
}

fn event_id(e: &ClientEvent) -> Option<RequestId> {
    e.request_id()
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

impl Pop3Client {
    /// Connects to `host` (a DNS name or an IP literal, `[::1]` accepted) on
    /// `port`, waits for the greeting, upgrades with STLS if asked, and reads
    /// the capabilities (unless [`ConnectOptions::read_capabilities`] is off).
    ///
    /// ```no_run
    /// use pop3_tokio::client::{ConnectOptions, Pop3Client, Security, TlsVerification};
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut options = ConnectOptions::new(Security::StartTls);
    /// options.verification = TlsVerification::ca_file("ca.pem")?;
    /// let client = Pop3Client::connect("localhost", 110, options).await?;
    /// println!("{:?}", client.greeting());
    /// # Ok(()) }
    /// ```
    pub async fn connect(
        host: &str,
        port: u16,
        options: ConnectOptions,
    ) -> Result<Pop3Client, Error> {
        let name = match &options.tls_name {
            Some(n) => server_name(n)?,
            None => server_name(host)?,
        };
        let deadline = Instant::now() + options.connect_timeout;
        let tcp = connect_tcp(host, port, deadline).await?;
        Pop3Client::connect_stream(tcp, name, deadline, options).await
    }

    /// Runs a session over an already connected TCP stream; `tls_name` is the
    /// name the server certificate must carry (a DNS name or IP address).
    ///
    /// ```no_run
    /// use pop3_tokio::client::{ConnectOptions, Pop3Client, Security};
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let tcp = tokio::net::TcpStream::connect("127.0.0.1:110").await?;
    /// let client = Pop3Client::from_stream(tcp, "127.0.0.1", ConnectOptions::new(Security::Plain)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn from_stream(
        tcp: TcpStream,
        tls_name: &str,
        options: ConnectOptions,
    ) -> Result<Pop3Client, Error> {
        let name = server_name(tls_name)?;
        let deadline = Instant::now() + options.connect_timeout;
        Pop3Client::connect_stream(tcp, name, deadline, options).await
    }

    async fn connect_stream(
        tcp: TcpStream,
        name: ServerName<'static>,
        deadline: Instant,
        options: ConnectOptions,
    ) -> Result<Pop3Client, Error> {
        let security = options.security;
        let mut session = options.session.clone();
        let mut connector = None;
        let conn = if security == Security::ImplicitTls {
            let c = tls_connector(&options)?;
            session.tls_active = true;
            let stream = match tokio::time::timeout_at(deadline, c.connect(name.clone(), tcp)).await
            {
                Err(_) => return Err(Error::Timeout(TimeoutKind::Connect)),
                Ok(Err(e)) => return Err(Error::Tls(Arc::new(e))),
                Ok(Ok(s)) => s,
            };
            connector = Some(c);
            Conn::ClientTls(Box::new(stream))
        } else {
            Conn::Plain(tcp)
        };
        let epoch = Instant::now();
        let mut client = Pop3Client {
            machine: Client::new(session, pop3_proto::time::Instant::ZERO),
            conn,
            epoch,
            events: VecDeque::new(),
            wbuf: BytesMut::new(),
            unflushed: false,
            rbuf: vec![0; READ_CHUNK].into_boxed_slice(),
            rstart: 0,
            rend: 0,
            discard_upto: None,
            fault: None,
            dead: false,
            closed: false,
            start_tls: false,
            handshake: None,
            tls_connector: connector,
            tls_name: name,
            timer: Box::pin(tokio::time::sleep_until(epoch)),
            last_progress: epoch,
            waiting_since: None,
            options,
        };
        match tokio::time::timeout_at(deadline, client.next_event()).await {
            Err(_) | Ok(Err(Error::Timeout(_))) => {
                return Err(Error::Timeout(TimeoutKind::Connect));
            }
            Ok(Err(e)) => return Err(e),
            Ok(Ok(ClientEvent::Greeting(_))) => {}
            Ok(Ok(other)) => {
                tracing::debug!(target: LOG, "no greeting: {other:?}");
                return Err(match client.fault.clone() {
                    Some(Error::Timeout(_)) => Error::Timeout(TimeoutKind::Connect),
                    Some(e) => e,
                    None => Error::Closed,
                });
            }
        }
        if security == Security::StartTls {
            client.stls().await?;
        } else if client.options.read_capabilities {
            client.refresh_capabilities().await?;
        }
        Ok(client)
    }

    // ----- inspection -----

    /// The server's greeting.
    pub fn greeting(&self) -> Option<&Greeting> {
        self.machine.greeting()
    }

    /// The capabilities last read (after the greeting, STLS or login), if
    /// the server answered CAPA.
    pub fn capabilities(&self) -> Option<&[Capability]> {
        self.machine.capabilities()
    }

    /// Whether the server advertised `cap` in the last CAPA reply.
    pub fn has_capability(&self, cap: &Capability) -> bool {
        self.capabilities().is_some_and(|c| c.contains(cap))
    }

    /// Whether TLS protects the connection.
    pub fn is_tls(&self) -> bool {
        self.machine.is_tls()
    }

    /// Whether commands are currently pipelined.
    pub fn is_pipelining(&self) -> bool {
        self.machine.pipelining_active()
    }

    /// The session machine's state.
    pub fn state(&self) -> pop3_proto::client::ClientState {
        self.machine.state()
    }

    // ----- commands -----

    /// `CAPA`: the capabilities (also kept for [`Pop3Client::capabilities`]).
    /// A server without CAPA answers [`Error::Server`].
    ///
    /// ```no_run
    /// # async fn run(client: &mut pop3_tokio::client::Pop3Client) -> Result<(), pop3_tokio::client::Error> {
    /// for cap in client.capa().await? {
    ///     println!("{cap:?}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn capa(&mut self) -> Result<Vec<Capability>, Error> {
        let id = self.machine.capa()?;
        loop {
            match self.event_for(id).await? {
                ClientEvent::Capabilities { list, .. } => return Ok(list),
                ClientEvent::Malformed { line, .. } => {
                    tracing::debug!(target: LOG, "ignored capability line {line:?}");
                }
                other => return Err(self.unexpected(other)),
            }
        }
    }

    async fn refresh_capabilities(&mut self) -> Result<(), Error> {
        match self.capa().await {
            Ok(_) => Ok(()),
            // No CAPA: basic POP3 still works (RFC 2449 §5).
            Err(Error::Server(e)) => {
                tracing::debug!(target: LOG, "CAPA refused: {e}");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// `STLS`: upgrades the connection to TLS in place, then re-reads the
    /// capabilities (RFC 2595 §4).
    ///
    /// ```no_run
    /// # async fn run(client: &mut pop3_tokio::client::Pop3Client) -> Result<(), pop3_tokio::client::Error> {
    /// client.stls().await?;
    /// assert!(client.is_tls());
    /// # Ok(()) }
    /// ```
    pub async fn stls(&mut self) -> Result<(), Error> {
        if self.tls_connector.is_none() {
            self.tls_connector = Some(tls_connector(&self.options)?);
        }
        let id = self.machine.stls()?;
        self.simple(id).await?;
        // The handshake runs inside the event pump; reading the
        // capabilities waits for it (CAPA goes out only over TLS).
        if self.options.read_capabilities {
            self.refresh_capabilities().await?;
        } else {
            let done = poll_fn(|cx| self.poll_handshake_done(cx)).await;
            self.waiting_since = None;
            done?;
        }
        Ok(())
    }

    /// `USER` and `PASS` (in one write when pipelining), then re-reads the
    /// capabilities.
    ///
    /// ```no_run
    /// # async fn run(client: &mut pop3_tokio::client::Pop3Client) -> Result<(), pop3_tokio::client::Error> {
    /// client.login("alice", "secret").await?;
    /// # Ok(()) }
    /// ```
    pub async fn login(&mut self, user: &str, password: &str) -> Result<(), Error> {
        let (u, p) = self
            .machine
            .login(user, Secret::new(password.as_bytes().to_vec()))?;
        let user_reply = self.simple(u).await;
        let pass_reply = self.simple(p).await;
        user_reply?;
        pass_reply?;
        self.after_login().await
    }

    /// `APOP` with the digest of the greeting's timestamp and `secret`; fails
    /// with [`Error::Command`] when the greeting has no valid timestamp.
    ///
    /// ```no_run
    /// # async fn run(client: &mut pop3_tokio::client::Pop3Client) -> Result<(), pop3_tokio::client::Error> {
    /// client.apop("alice", "secret").await?;
    /// # Ok(()) }
    /// ```
    pub async fn apop(&mut self, user: &str, secret: &str) -> Result<(), Error> {
        let id = self
            .machine
            .apop(user, &Secret::new(secret.as_bytes().to_vec()))?;
        self.simple(id).await?;
        self.after_login().await
    }

    /// `AUTH` with a SASL mechanism (see [`pop3_proto::client::sasl`]).
    ///
    /// ```no_run
    /// use pop3_proto::client::sasl::Plain;
    /// use pop3_proto::types::Secret;
    /// # async fn run(client: &mut pop3_tokio::client::Pop3Client) -> Result<(), pop3_tokio::client::Error> {
    /// client.auth(Box::new(Plain::new("alice", Secret::new("secret")))).await?;
    /// # Ok(()) }
    /// ```
    pub async fn auth(&mut self, mechanism: BoxedMechanism) -> Result<(), Error> {
        let id = self.machine.auth(mechanism)?;
        let mut sasl = None;
        loop {
            match self.event_for(id).await? {
                ClientEvent::Ok { .. } => break,
                ClientEvent::SaslCancelled { error, .. } => sasl = Some(error),
                ClientEvent::Err { error, .. } => {
                    return Err(match sasl {
                        Some(e) => Error::Sasl(e),
                        None => Error::Server(error),
                    });
                }
                other => return Err(self.unexpected(other)),
            }
        }
        self.after_login().await
    }

    async fn after_login(&mut self) -> Result<(), Error> {
        if self.options.read_capabilities {
            self.refresh_capabilities().await?;
        }
        Ok(())
    }

    /// `STAT`: message count and total size.
    ///
    /// ```no_run
    /// # async fn run(client: &mut pop3_tokio::client::Pop3Client) -> Result<(), pop3_tokio::client::Error> {
    /// let stat = client.stat().await?;
    /// println!("{} messages, {} octets", stat.count, stat.size);
    /// # Ok(()) }
    /// ```
    pub async fn stat(&mut self) -> Result<StatReply, Error> {
        let id = self.machine.stat()?;
        match self.event_for(id).await? {
            ClientEvent::Stat { reply, .. } => Ok(reply),
            other => Err(self.unexpected(other)),
        }
    }

    /// `LIST`: every message's number and size.
    ///
    /// ```no_run
    /// # async fn run(client: &mut pop3_tokio::client::Pop3Client) -> Result<(), pop3_tokio::client::Error> {
    /// for entry in client.list().await? {
    ///     println!("{} {}", entry.msg, entry.size);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn list(&mut self) -> Result<Vec<ScanLine>, Error> {
        let id = self.machine.list(None)?;
        self.listing(id, |e| match e {
            ClientEvent::Scan { entry, .. } => Ok(entry),
            other => Err(other),
        })
        .await
    }

    /// `LIST n`: one message's size.
    ///
    /// ```no_run
    /// # async fn run(client: &mut pop3_tokio::client::Pop3Client) -> Result<(), pop3_tokio::client::Error> {
    /// let entry = client.list_one(pop3_tokio::client::msg(1).unwrap()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn list_one(&mut self, msg: MessageNumber) -> Result<ScanLine, Error> {
        let id = self.machine.list(Some(msg))?;
        match self.event_for(id).await? {
            ClientEvent::Scan { entry, .. } => Ok(entry),
            other => Err(self.unexpected(other)),
        }
    }

    /// `UIDL`: every message's unique id.
    ///
    /// ```no_run
    /// # async fn run(client: &mut pop3_tokio::client::Pop3Client) -> Result<(), pop3_tokio::client::Error> {
    /// for entry in client.uidl().await? {
    ///     println!("{} {}", entry.msg, entry.uid);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn uidl(&mut self) -> Result<Vec<UidLine>, Error> {
        let id = self.machine.uidl(None)?;
        self.listing(id, |e| match e {
            ClientEvent::Uid { entry, .. } => Ok(entry),
            other => Err(other),
        })
        .await
    }

    /// `UIDL n`: one message's unique id.
    ///
    /// ```no_run
    /// # async fn run(client: &mut pop3_tokio::client::Pop3Client) -> Result<(), pop3_tokio::client::Error> {
    /// let entry = client.uidl_one(pop3_tokio::client::msg(1).unwrap()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn uidl_one(&mut self, msg: MessageNumber) -> Result<UidLine, Error> {
        let id = self.machine.uidl(Some(msg))?;
        match self.event_for(id).await? {
            ClientEvent::Uid { entry, .. } => Ok(entry),
            other => Err(self.unexpected(other)),
        }
    }

    /// `RETR n`: the message, as a reader over its body (dot-unstuffed,
    /// line ends as the server sent them).
    ///
    /// ```no_run
    /// use tokio::io::AsyncReadExt;
    /// # async fn run(client: &mut pop3_tokio::client::Pop3Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut body = client.retr(pop3_tokio::client::msg(1).unwrap()).await?;
    /// let mut message = Vec::new();
    /// body.read_to_end(&mut message).await?;
    /// # Ok(()) }
    /// ```
    pub async fn retr(&mut self, msg: MessageNumber) -> Result<Body<'_>, Error> {
        let id = self.machine.retr(msg)?;
        self.body(id).await
    }

    /// `TOP n lines`: the header and the first `lines` lines of the body.
    ///
    /// ```no_run
    /// # async fn run(client: &mut pop3_tokio::client::Pop3Client) -> Result<(), pop3_tokio::client::Error> {
    /// let mut body = client.top(pop3_tokio::client::msg(1).unwrap(), 0).await?;
    /// while let Some(chunk) = body.next_chunk().await? {
    ///     print!("{}", String::from_utf8_lossy(&chunk));
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn top(&mut self, msg: MessageNumber, lines: u64) -> Result<Body<'_>, Error> {
        let id = self.machine.top(msg, lines)?;
        self.body(id).await
    }

    /// `DELE n`: marks the message; the server removes it only after a
    /// successful [`Pop3Client::quit`].
    ///
    /// ```no_run
    /// # async fn run(client: &mut pop3_tokio::client::Pop3Client) -> Result<(), pop3_tokio::client::Error> {
    /// client.dele(pop3_tokio::client::msg(1).unwrap()).await?;
    /// client.quit().await?;
    /// # Ok(()) }
    /// ```
    pub async fn dele(&mut self, msg: MessageNumber) -> Result<(), Error> {
        let id = self.machine.dele(msg)?;
        self.simple(id).await.map(drop)
    }

    /// `RSET`: unmarks every deletion.
    ///
    /// ```no_run
    /// # async fn run(client: &mut pop3_tokio::client::Pop3Client) -> Result<(), pop3_tokio::client::Error> {
    /// client.rset().await?;
    /// # Ok(()) }
    /// ```
    pub async fn rset(&mut self) -> Result<(), Error> {
        let id = self.machine.rset()?;
        self.simple(id).await.map(drop)
    }

    /// `NOOP`.
    ///
    /// ```no_run
    /// # async fn run(client: &mut pop3_tokio::client::Pop3Client) -> Result<(), pop3_tokio::client::Error> {
    /// client.noop().await?;
    /// # Ok(()) }
    /// ```
    pub async fn noop(&mut self) -> Result<(), Error> {
        let id = self.machine.noop()?;
        self.simple(id).await.map(drop)
    }

    /// `UTF8` (RFC 6856), in AUTHORIZATION.
    ///
    /// ```no_run
    /// # async fn run(client: &mut pop3_tokio::client::Pop3Client) -> Result<(), pop3_tokio::client::Error> {
    /// client.utf8().await?;
    /// # Ok(()) }
    /// ```
    pub async fn utf8(&mut self) -> Result<(), Error> {
        let id = self.machine.utf8()?;
        self.simple(id).await.map(drop)
    }

    /// Bare `LANG`: the languages the server offers (RFC 6856).
    ///
    /// ```no_run
    /// # async fn run(client: &mut pop3_tokio::client::Pop3Client) -> Result<(), pop3_tokio::client::Error> {
    /// for lang in client.lang().await? {
    ///     println!("{} {}", lang.tag, lang.description);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn lang(&mut self) -> Result<Vec<LangLine>, Error> {
        let id = self.machine.lang(LangRequest::List)?;
        self.listing(id, |e| match e {
            ClientEvent::Language { entry, .. } => Ok(entry),
            other => Err(other),
        })
        .await
    }

    /// `LANG tag` or `LANG *`: selects a language; the reply's status line.
    ///
    /// ```no_run
    /// use pop3_proto::command::LangRequest;
    /// # async fn run(client: &mut pop3_tokio::client::Pop3Client) -> Result<(), pop3_tokio::client::Error> {
    /// let line = client.set_lang(LangRequest::Default).await?;
    /// # Ok(()) }
    /// ```
    pub async fn set_lang(&mut self, request: LangRequest) -> Result<StatusLine, Error> {
        let id = self.machine.lang(request)?;
        self.simple(id).await
    }

    /// `QUIT`: ends the session; in TRANSACTION, the server removes the
    /// messages marked deleted. Only an `Ok` here means they were removed.
    ///
    /// ```no_run
    /// # async fn run(client: pop3_tokio::client::Pop3Client) -> Result<(), pop3_tokio::client::Error> {
    /// let mut client = client;
    /// client.quit().await?;
    /// # Ok(()) }
    /// ```
    pub async fn quit(&mut self) -> Result<(), Error> {
        let id = self.machine.quit()?;
        self.simple(id).await?;
        // Drain the Close action and shut the transport down politely.
        self.drain_actions();
        self.dead = true;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.conn.shutdown()).await;
        Ok(())
    }

    /// `RETR` of many messages, pipelined when the server allows it. Take
    /// the messages in order with [`RetrBatch::next`].
    ///
    /// ```no_run
    /// use tokio::io::AsyncReadExt;
    /// # async fn run(client: &mut pop3_tokio::client::Pop3Client) -> Result<(), Box<dyn std::error::Error>> {
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
        let mut queued = VecDeque::new();
        for msg in msgs {
            let id = self.machine.retr(msg)?;
            queued.push_back((msg, id));
        }
        Ok(RetrBatch {
            client: self,
            queued,
        })
    }

    /// `DELE` of many messages, pipelined when the server allows it. One
    /// result per message, in order; `Err` only when the session failed.
    ///
    /// ```no_run
    /// # async fn run(client: &mut pop3_tokio::client::Pop3Client) -> Result<(), pop3_tokio::client::Error> {
    /// let msgs: Vec<_> = (1..=3).filter_map(pop3_tokio::client::msg).collect();
    /// for (msg, result) in client.dele_many(msgs).await? {
    ///     if let Err(e) = result { eprintln!("{msg}: {e}"); }
    /// }
    /// client.quit().await?;
    /// # Ok(()) }
    /// ```
    pub async fn dele_many(
        &mut self,
        msgs: impl IntoIterator<Item = MessageNumber>,
    ) -> Result<Vec<(MessageNumber, Result<(), ServerError>)>, Error> {
        let mut ids = Vec::new();
        for msg in msgs {
            ids.push((msg, self.machine.dele(msg)?));
        }
        let last = ids.last().map(|x| x.1);
        let mut out = Vec::with_capacity(ids.len());
        for (msg, id) in ids {
            match self.simple(id).await {
                Ok(_) => out.push((msg, Ok(()))),
                Err(Error::Server(e)) => out.push((msg, Err(e))),
                Err(e) => {
                    self.abandon(last);
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    // ----- reply collection -----

    async fn simple(&mut self, id: RequestId) -> Result<StatusLine, Error> {
        match self.event_for(id).await? {
            ClientEvent::Ok { line, .. } => Ok(line),
            other => Err(self.unexpected(other)),
        }
    }

    async fn listing<T>(
        &mut self,
        id: RequestId,
        entry: impl Fn(ClientEvent) -> Result<T, ClientEvent>,
    ) -> Result<Vec<T>, Error> {
        match self.event_for(id).await? {
            ClientEvent::ListingStart { .. } => {}
            other => return Err(self.unexpected(other)),
        }
        let mut out = Vec::new();
        loop {
            match self.event_for(id).await? {
                ClientEvent::ListingEnd { .. } => return Ok(out),
                ClientEvent::Malformed { line, error, .. } => {
                    tracing::warn!(target: LOG, "skipped malformed listing line {line:?}: {error}");
                }
                other => match entry(other) {
                    Ok(_) if out.len() >= self.options.max_listing_entries => {
                        let e = Error::ListingTooLong {
                            limit: self.options.max_listing_entries,
                        };
                        self.fail(e.clone());
                        return Err(e);
                    }
                    Ok(v) => out.push(v),
                    Err(other) => return Err(self.unexpected(other)),
                },
            }
        }
    }

    async fn body(&mut self, id: RequestId) -> Result<Body<'_>, Error> {
        match self.event_for(id).await? {
            ClientEvent::BodyStart { line, .. } => Ok(Body {
                client: self,
                id,
                line,
                chunk: Bytes::new(),
                done: false,
                ended: false,
                failure: None,
            }),
            other => Err(self.unexpected(other)),
        }
    }

    /// The error an event that ends a command stands for.
    fn unexpected(&mut self, e: ClientEvent) -> Error {
        match e {
            ClientEvent::Err { error, .. } => Error::Server(error),
            ClientEvent::Malformed { line, error, .. } => Error::Malformed { line, error },
            ClientEvent::Cancelled {
                reason: CancelReason::PrecedingFailed { .. },
                ..
            } => Error::Closed,
            ClientEvent::Cancelled { .. } => self.fault.clone().unwrap_or(Error::Closed),
            other => {
                tracing::debug!(target: LOG, "unexpected event {other:?}");
                Error::Protocol(ProtocolError::Unsolicited { line: Bytes::new() })
            }
        }
    }

    /// Forgets the replies of requests up to `last` (a dropped reader).
    fn abandon(&mut self, last: Option<RequestId>) {
        if let Some(last) = last {
            self.discard_upto = Some(self.discard_upto.map_or(last, |d| d.max(last)));
        }
    }

    /// The next event about `id`; events of abandoned requests are skipped.
    async fn event_for(&mut self, id: RequestId) -> Result<ClientEvent, Error> {
        loop {
            let e = self.next_event().await?;
            match event_id(&e) {
                Some(x) if x == id => return Ok(e),
                _ => tracing::debug!(target: LOG, "dropped event {e:?} while waiting for {id}"),
            }
        }
    }

    async fn next_event(&mut self) -> Result<ClientEvent, Error> {
        poll_fn(|cx| self.poll_event(cx)).await
    }

    // ----- the pump -----

    fn now(&self) -> pop3_proto::time::Instant {
        let ms = Instant::now()
            .saturating_duration_since(self.epoch)
            .as_millis();
        pop3_proto::time::Instant::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
    }

    /// Takes everything the machine has to say; `true` if events arrived.
    fn drain_actions(&mut self) -> bool {
        let mut got = false;
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
                    match &e {
                        ClientEvent::Error(p) => {
                            let err = match p {
                                ProtocolError::Timeout => Error::Timeout(TimeoutKind::Reply),
                                other => Error::Protocol(other.clone()),
                            };
                            self.fault.get_or_insert(err);
                        }
                        ClientEvent::Closed => self.closed = true,
                        _ => {}
                    }
                    let discard = matches!(
                        (event_id(&e), self.discard_upto),
                        (Some(id), Some(upto)) if id <= upto
                    ) && !matches!(e, ClientEvent::Cancelled { .. });
                    if !discard {
                        self.events.push_back(e);
                        got = true;
                    }
                }
                Action::Close => {
                    self.dead = true;
                    self.wbuf.clear();
                }
                _ => {}
            }
        }
        got
    }

    /// The transport failed: remember why and let the machine wind down.
    fn fail(&mut self, e: Error) {
        tracing::debug!(target: LOG, "transport failed: {e}");
        self.fault.get_or_insert(e);
        self.dead = true;
        self.wbuf.clear();
        self.handshake = None;
        let now = self.now();
        self.machine.handle_eof(now);
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Result<ClientEvent, Error>> {
        let result = self.poll_event_inner(cx);
        if result.is_ready() {
            self.waiting_since = None;
        }
        result
    }

    fn poll_event_inner(&mut self, cx: &mut Context<'_>) -> Poll<Result<ClientEvent, Error>> {
        loop {
            if let Some(e) = self.events.pop_front() {
                return Poll::Ready(Ok(e));
            }
            if self.drain_actions() {
                continue;
            }
            if self.dead {
                if self.closed {
                    return Poll::Ready(Err(self.fault.clone().unwrap_or(Error::Closed)));
                }
                // The transport is gone but the machine has not closed yet.
                let now = self.now();
                self.machine.handle_eof(now);
                if self.drain_actions() || self.closed {
                    continue;
                }
                return Poll::Ready(Err(self.fault.clone().unwrap_or(Error::Closed)));
            }
            match self.poll_io(cx) {
                Poll::Ready(()) => continue,
                Poll::Pending => {
                    if self.arm_timer(cx) {
                        continue;
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    /// Waits until the STLS handshake is over (or the session failed).
    fn poll_handshake_done(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        loop {
            if self.is_tls() {
                return Poll::Ready(Ok(()));
            }
            if self.dead {
                return Poll::Ready(Err(self.fault.clone().unwrap_or(Error::Closed)));
            }
            self.drain_actions();
            if self.is_tls() || self.dead {
                continue;
            }
            match self.poll_io(cx) {
                Poll::Ready(()) => continue,
                Poll::Pending => {
                    if self.arm_timer(cx) {
                        continue;
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    /// Makes one step of I/O progress: write, handshake, or read. `Ready`
    /// when something happened (the caller drains the machine again).
    fn poll_io(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        // 1. Everything the machine wrote goes out first.
        while !self.wbuf.is_empty() {
            match Pin::new(&mut self.conn).poll_write(cx, &self.wbuf) {
                Poll::Ready(Ok(0)) => {
                    self.fail(Error::io(io::ErrorKind::WriteZero.into()));
                    return Poll::Ready(());
                }
                Poll::Ready(Ok(n)) => {
                    self.last_progress = Instant::now();
                    self.unflushed = true;
                    self.wbuf.advance(n);
                }
                Poll::Ready(Err(e)) => {
                    self.fail(Error::io(e));
                    return Poll::Ready(());
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        if self.unflushed {
            match Pin::new(&mut self.conn).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.unflushed = false,
                Poll::Ready(Err(e)) => {
                    self.fail(Error::io(e));
                    return Poll::Ready(());
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        // 2. STLS: the handshake, on the same socket.
        if self.start_tls {
            self.start_tls = false;
            // Octets read but not taken came in clear text after `+OK`: an
            // injection attempt, never data (the machine fails the session
            // itself when it sees them; this holds even if it has not).
            if self.rstart < self.rend {
                let octets = self.rend - self.rstart;
                self.fail(Error::Protocol(ProtocolError::StlsInjection { octets }));
                return Poll::Ready(());
            }
            self.rstart = 0;
            self.rend = 0;
            let tcp = match self.conn.take_plain() {
                Ok(tcp) => tcp,
                Err(e) => {
                    self.fail(Error::Tls(Arc::new(e)));
                    return Poll::Ready(());
                }
            };
            let Some(connector) = self.tls_connector.clone() else {
                self.fail(Error::Closed);
                return Poll::Ready(());
            };
            self.handshake = Some(connector.connect(self.tls_name.clone(), tcp));
        }
        if let Some(hs) = self.handshake.as_mut() {
            return match Pin::new(hs).poll(cx) {
                Poll::Ready(Ok(stream)) => {
                    self.handshake = None;
                    self.last_progress = Instant::now();
                    self.conn = Conn::ClientTls(Box::new(stream));
                    let now = self.now();
                    self.machine.handle_tls_established(now);
                    Poll::Ready(())
                }
                Poll::Ready(Err(e)) => {
                    self.handshake = None;
                    self.fail(Error::Tls(Arc::new(e)));
                    Poll::Ready(())
                }
                Poll::Pending => Poll::Pending,
            };
        }
        // 3. Input left over from backpressure goes first.
        if self.rstart < self.rend {
            let now = self.now();
            let used = self
                .machine
                .handle_input(now, &self.rbuf[self.rstart..self.rend]);
            self.rstart += used;
            if used > 0 {
                return Poll::Ready(());
            }
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
            self.fail(Error::Protocol(ProtocolError::LineTooLong {
                limit: self.rbuf.len(),
            }));
            return Poll::Ready(());
        }
        // 4. Read.
        let mut buf = ReadBuf::new(&mut self.rbuf[self.rend..]);
        match Pin::new(&mut self.conn).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len();
                let now = self.now();
                if n == 0 {
                    self.dead = true;
                    self.machine.handle_eof(now);
                } else {
                    self.last_progress = Instant::now();
                    self.rend += n;
                    let used = self
                        .machine
                        .handle_input(now, &self.rbuf[self.rstart..self.rend]);
                    self.rstart += used;
                }
                Poll::Ready(())
            }
            Poll::Ready(Err(e)) => {
                self.fail(Error::io(e));
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// Arms the timer for the nearest deadline; `true` if one already passed
    /// (and was handled: the caller loops).
    fn arm_timer(&mut self, cx: &mut Context<'_>) -> bool {
        let reply = self
            .machine
            .poll_timeout()
            .map(|t| self.epoch + Duration::from_millis(t.as_millis()));
        let since = *self.waiting_since.get_or_insert_with(Instant::now);
        let idle = self
            .options
            .idle_timeout
            .map(|d| self.last_progress.max(since) + d);
        let deadline = match (reply, idle) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => match a.or(b) {
                Some(d) => d,
                None => return false,
            },
        };
        let now = Instant::now();
        if now >= deadline {
            if reply.is_some_and(|r| now >= r) {
                let t = self.now();
                self.machine.handle_timeout(t);
            } else {
                self.fail(Error::Timeout(TimeoutKind::Idle));
            }
            return true;
        }
        if self.timer.deadline() != deadline {
            self.timer.as_mut().reset(deadline);
        }
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) => true,
            Poll::Pending => false,
        }
    }
}

fn tls_connector(options: &ConnectOptions) -> Result<TlsConnector, Error> {
    let config = match &options.tls_config {
        Some(c) => c.clone(),
        None => options
            .verification
            .client_config()
            .map_err(|e| Error::TlsConfig(Arc::new(e)))?,
    };
    Ok(TlsConnector::from(config))
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
    id: RequestId,
    line: StatusLine,
    chunk: Bytes,
    /// No more events for this body will be taken (ended or failed).
    done: bool,
    /// The terminating `.` line was read.
    ended: bool,
    /// Why the body failed: returned again by every later read, so a short
    /// body can never pass for a complete one.
    failure: Option<Error>,
}

impl std::fmt::Debug for Body<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Body")
            .field("id", &self.id)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl Body<'_> {
    /// The `+OK` line that opened the body (some servers give the size).
    pub fn status(&self) -> &StatusLine {
        &self.line
    }

    /// Whether the whole body was received.
    pub fn is_complete(&self) -> bool {
        self.ended && self.chunk.is_empty()
    }

    /// The next chunk of the body (zero-copy), `None` at its end.
    ///
    /// ```no_run
    /// # async fn run(client: &mut pop3_tokio::client::Pop3Client) -> Result<(), pop3_tokio::client::Error> {
    /// let mut body = client.retr(pop3_tokio::client::msg(1).unwrap()).await?;
    /// let mut size = 0;
    /// while let Some(chunk) = body.next_chunk().await? {
    ///     size += chunk.len();
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, Error> {
        poll_fn(|cx| self.poll_chunk(cx)).await
    }

    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, Error>> {
        if !self.chunk.is_empty() {
            return Poll::Ready(Ok(Some(std::mem::take(&mut self.chunk))));
        }
        loop {
            if self.done {
                return Poll::Ready(match &self.failure {
                    Some(e) => Err(e.clone()),
                    None => Ok(None),
                });
            }
            let e = match ready!(self.client.poll_event(cx)) {
                Ok(e) => e,
                Err(e) => {
                    self.done = true;
                    self.failure = Some(e.clone());
                    return Poll::Ready(Err(e));
                }
            };
            match event_id(&e) {
                Some(id) if id == self.id => {}
                _ => continue,
            }
            match e {
                ClientEvent::BodyChunk { data, .. } => return Poll::Ready(Ok(Some(data))),
                ClientEvent::BodyEnd { .. } => {
                    self.done = true;
                    self.ended = true;
                }
                other => {
                    self.done = true;
                    let e = self.client.unexpected(other);
                    self.failure = Some(e.clone());
                    return Poll::Ready(Err(e));
                }
            }
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

impl Drop for Body<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.client.abandon(Some(self.id));
        }
    }
}

/// Pipelined retrievals from [`Pop3Client::retr_many`]. Dropped before the
/// last message, the remaining replies are discarded by the client's next
/// call.
#[derive(Debug)]
pub struct RetrBatch<'a> {
    client: &'a mut Pop3Client,
    queued: VecDeque<(MessageNumber, RequestId)>,
}

impl RetrBatch<'_> {
    /// The next message's number and a reader over its body; `None` after
    /// the last.
    /// A `-ERR` for one message is an `Err` item and the batch goes on; a
    /// failed session ends it.
    pub async fn next(&mut self) -> Option<(MessageNumber, Result<Body<'_>, Error>)> {
        let (msg, id) = self.queued.pop_front()?;
        let result = match self.client.event_for(id).await {
            Ok(ClientEvent::BodyStart { line, .. }) => {
                return Some((
                    msg,
                    Ok(Body {
                        client: &mut *self.client,
                        id,
                        line,
                        chunk: Bytes::new(),
                        done: false,
                        ended: false,
                        failure: None,
                    }),
                ));
            }
            Ok(other) => self.client.unexpected(other),
            Err(e) => e,
        };
        if !matches!(result, Error::Server(_) | Error::Malformed { .. }) {
            let last = self.queued.back().map(|x| x.1);
            self.queued.clear();
            self.client.abandon(last);
        }
        Some((msg, Err(result)))
    }

    /// How many messages are still to come.
    pub fn remaining(&self) -> usize {
        self.queued.len()
    }
}

impl Drop for RetrBatch<'_> {
    fn drop(&mut self) {
        let last = self.queued.back().map(|x| x.1);
        self.client.abandon(last);
    }
}
