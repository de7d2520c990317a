//! The client face: a blocking POP3 client over `std::net`, driving the
//! core's [`Connection`] over TCP or TLS.
//!
//! [`Pop3Client::connect`] opens a session (plain, STLS upgraded in place, or
//! implicit TLS), and each POP3 command is a method that returns once the
//! reply is in. Message bodies are streamed ([`Body`], a [`Read`] and a
//! [`BufRead`]), never collected whole; [`Pop3Client::retr_many`] and
//! [`Pop3Client::dele_many`] pipeline when the server allows it.
//!
//! ```
//! use std::io::Read;
//! use pop3_blocking::client::{ConnectOptions, Pop3Client, Security};
//!
//! # use std::sync::Arc;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # // A server on loopback with a certificate of its own CA, for the test.
//! # let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
//! # let key = rustls::pki_types::PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der());
//! # let tls = pop3_blocking::tls::server_config(vec![cert.cert.der().clone()], key.into())?;
//! # let mut roots = rustls::RootCertStore::empty();
//! # roots.add(cert.cert.der().clone())?;
//! # let test_ca = pop3_blocking::client::TlsVerification::Roots(Arc::new(roots));
//! # let store = pop3_proto::store::MemoryStore::new();
//! # store.add_user("alice", "secret");
//! # for n in 1..=3 { store.add_message("alice", format!("Subject: {n}\r\n\r\nHello.\r\n")); }
//! # let config = pop3_proto::server::ServerConfig::default().allow_plaintext_auth(true);
//! # let server = pop3_blocking::server::Pop3Server::build(Arc::new(store), config, Some(tls), Default::default());
//! # let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
//! # let port = listener.local_addr()?.port();
//! # let serving = {
//! #     let server = server.clone();
//! #     std::thread::spawn(move || server.serve(listener, pop3_blocking::server::Security::ImplicitTls))
//! # };
//! let options = ConnectOptions::new(Security::ImplicitTls);
//! # let mut options = options;
//! # options.verification = test_ca;
//! let mut client = Pop3Client::connect("localhost", port, options)?;
//! client.login("alice", "secret")?;
//! let stat = client.stat()?;
//! for n in 1..=stat.count {
//!     let msg = pop3_blocking::client::msg(n).unwrap();
//!     let mut body = client.retr(msg)?;
//!     let mut text = Vec::new();
//!     body.read_to_end(&mut text)?;
//! }
//! client.quit()?;
//! # server.shutdown();
//! # serving.join().unwrap()?;
//! # Ok(())
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
//! Each blocking read or write is given the socket timeout left until the
//! nearest of these deadlines.
//!
//! # Cancel safety
//!
//! The methods here block until their result is in: there is no future to
//! drop, so nothing is left half-done unless the thread unwinds (a panic in
//! the application's own code, e.g. a [`Body`] reader's consumer). The
//! rule of the async faces applies then as well: the next call on the
//! client reads and discards a query's replies first; after a login, STLS,
//! [`Pop3Client::dele_many`] or QUIT cut short, it fails with
//! [`Error::Cancelled`] and the connection is closed without QUIT.
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

pub use crate::common::ConnectOptions;
pub use crate::tls::TlsVerification;
pub use pop3_proto::client::{Error, Security, TimeoutKind, msg};

use std::io::{self, BufRead, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use pop3_proto::client::task::{self, BodyState, Task};
use pop3_proto::client::{
    BoxedMechanism, ClientState, Connection, RetrBatchState, ServerError, Want,
};
use pop3_proto::command::{Command, LangRequest};
use pop3_proto::response::{
    Capability, Greeting, LangLine, ScanLine, StatReply, StatusLine, UidLine,
};
use pop3_proto::types::MessageNumber;
use rustls::pki_types::ServerName;

use crate::common::{ATTEMPT_DELAY, bare_host, connect_order};
use crate::io::{Clock, Socket, Stream, Transport};

/// A blocking POP3 session.
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
    io: Stream,
    /// The name the certificate must carry; none on a stream secured by
    /// the caller.
    tls_name: Option<ServerName<'static>>,
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

/// Resolves `host` before `deadline`: an IP literal at once, a name on a
/// thread of its own (the system resolver cannot be given a deadline; one
/// that answers late finishes alone).
fn resolve(host: &str, port: u16, deadline: Instant) -> Result<Vec<SocketAddr>, Error> {
    let host = bare_host(host);
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let (tx, rx) = mpsc::channel();
    let name = host.to_owned();
    let resolver = std::thread::spawn(move || {
        let _ = tx.send((name.as_str(), port).to_socket_addrs().map(Vec::from_iter));
    });
    let resolved = rx.recv_timeout(deadline.saturating_duration_since(Instant::now()));
    let resolved = resolved.map_err(|_| Error::Timeout(TimeoutKind::Connect))?;
    let _ = resolver.join(); // it has answered
    resolved.map_err(Error::io)
}

/// Resolves and connects to the first address that answers.
fn connect_tcp(host: &str, port: u16, deadline: Instant) -> Result<TcpStream, Error> {
    let addrs = connect_order(resolve(host, port, deadline)?);
    if addrs.is_empty() {
        return Err(Error::NoAddress(host.to_owned()));
    }
    race(addrs, deadline)
}

/// Connects to the first of `addrs` that answers: they are tried in order,
/// a new attempt (on a thread of its own) starting every [`ATTEMPT_DELAY`]
/// or as soon as one fails, all racing until one succeeds or the deadline
/// passes (happy eyeballs, RFC 8305). Attempts that lose end by the
/// deadline and close what they connected.
fn race(addrs: Vec<SocketAddr>, deadline: Instant) -> Result<TcpStream, Error> {
    let timed_out = || Error::Timeout(TimeoutKind::Connect);
    let left = || Some(deadline.saturating_duration_since(Instant::now())).filter(|d| !d.is_zero());
    let failed = |e: io::Error| match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => timed_out(),
        _ => Error::io(e),
    };
    if let [one] = addrs.as_slice() {
        let left = left().ok_or_else(timed_out)?;
        return TcpStream::connect_timeout(one, left).map_err(failed);
    }
    let (tx, rx) = mpsc::channel();
    let mut next = addrs.into_iter();
    let (mut running, mut last) = (0, None);
    loop {
        let remaining = next.len();
        if let Some(addr) = next.next() {
            if let Some(left) = left() {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    let _ = tx.send(TcpStream::connect_timeout(&addr, left));
                });
                running += 1;
            }
        }
        if running == 0 {
            return Err(last.unwrap_or_else(timed_out));
        }
        let left = left().ok_or_else(timed_out)?;
        let wait = if remaining > 1 {
            left.min(ATTEMPT_DELAY)
        } else {
            left
        };
        match rx.recv_timeout(wait) {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => {
                running -= 1;
                last = Some(failed(e));
            }
            // The stagger passed (or the deadline: then `left` says so).
            Err(_) => {}
        }
    }
}

impl Pop3Client {
    /// Connects to `host` (a DNS name or an IP literal, `[::1]` accepted) on
    /// `port`, waits for the greeting, upgrades with STLS if asked, and reads
    /// the capabilities (unless [`ConnectOptions::read_capabilities`] is off).
    ///
    /// ```
    /// use pop3_blocking::client::{ConnectOptions, Pop3Client, Security, TlsVerification};
    /// # use std::sync::Arc;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # // A server on loopback with a certificate of its own CA, for the test.
    /// # let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
    /// # let key = rustls::pki_types::PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der());
    /// # let tls = pop3_blocking::tls::server_config(vec![cert.cert.der().clone()], key.into())?;
    /// # let mut roots = rustls::RootCertStore::empty();
    /// # roots.add(cert.cert.der().clone())?;
    /// # let test_ca = pop3_blocking::client::TlsVerification::Roots(Arc::new(roots));
    /// # let store = pop3_proto::store::MemoryStore::new();
    /// # store.add_user("alice", "secret");
    /// # for n in 1..=3 { store.add_message("alice", format!("Subject: {n}\r\n\r\nHello.\r\n")); }
    /// # let config = pop3_proto::server::ServerConfig::default().allow_plaintext_auth(true);
    /// # let server = pop3_blocking::server::Pop3Server::build(Arc::new(store), config, Some(tls), Default::default());
    /// # let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// # let port = listener.local_addr()?.port();
    /// # let serving = {
    /// #     let server = server.clone();
    /// #     std::thread::spawn(move || server.serve(listener, pop3_blocking::server::Security::Plain))
    /// # };
    /// # let dir = tempfile::tempdir()?;
    /// # std::fs::write(dir.path().join("ca.pem"), cert.cert.pem())?;
    /// # let ca_pem = dir.path().join("ca.pem");
    /// let mut options = ConnectOptions::new(Security::StartTls);
    /// options.verification = TlsVerification::ca_file(ca_pem)?; // "ca.pem"
    /// let client = Pop3Client::connect("localhost", port, options)?;
    /// println!("{:?}", client.greeting());
    /// # drop(client);
    /// # server.shutdown();
    /// # serving.join().unwrap()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn connect(host: &str, port: u16, options: ConnectOptions) -> Result<Pop3Client, Error> {
        let name = options.server_name(host)?;
        let start = Instant::now();
        let tcp = connect_tcp(host, port, start + options.connect_timeout)?;
        let _ = tcp.set_nodelay(true);
        Pop3Client::connect_stream(Socket::new(tcp), Some(name), start, options)
    }

    /// Runs a session over an already connected stream; `tls_name` is the
    /// name the server certificate must carry (a DNS name or IP address),
    /// for STLS or implicit TLS as [`ConnectOptions::security`] says.
    ///
    /// The stream is any [`Transport`]: a `TcpStream` (set `TCP_NODELAY`
    /// yourself, as [`Pop3Client::connect`] does), a `UnixStream`, or a
    /// stream of your own (a SOCKS or PROXY-protocol wrapper). The connect
    /// timeout counts from this call.
    ///
    /// ```
    /// use pop3_blocking::client::{ConnectOptions, Pop3Client, Security};
    /// # use std::sync::Arc;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let store = pop3_proto::store::MemoryStore::new();
    /// # store.add_user("alice", "secret");
    /// # for n in 1..=3 { store.add_message("alice", format!("Subject: {n}\r\n\r\nHello.\r\n")); }
    /// # let config = pop3_proto::server::ServerConfig::default().allow_plaintext_auth(true);
    /// # let server = pop3_blocking::server::Pop3Server::new(store, config);
    /// # let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// # let port = listener.local_addr()?.port();
    /// # let serving = {
    /// #     let server = server.clone();
    /// #     std::thread::spawn(move || server.serve(listener, pop3_blocking::server::Security::Plain))
    /// # };
    /// # let dir = tempfile::tempdir()?;
    /// # let socket = dir.path().join("pop3.sock");
    /// # let unix_listener = std::os::unix::net::UnixListener::bind(&socket)?;
    /// # let unix_server = server.clone();
    /// # let unix_serving = std::thread::spawn(move || {
    /// #     let (stream, _) = unix_listener.accept().unwrap();
    /// #     unix_server.serve_connection(stream, ([0, 0, 0, 0], 0).into(), pop3_blocking::server::Security::Plain)
    /// # });
    /// let tcp = std::net::TcpStream::connect(("127.0.0.1", port))?;
    /// let client = Pop3Client::from_stream(tcp, "127.0.0.1", ConnectOptions::new(Security::Plain))?;
    /// # drop(client);
    /// let unix = std::os::unix::net::UnixStream::connect(&socket)?; // "/run/pop3.sock"
    /// let client = Pop3Client::from_stream(unix, "localhost", ConnectOptions::new(Security::Plain))?;
    /// # drop(client);
    /// # unix_serving.join().unwrap();
    /// # server.shutdown();
    /// # serving.join().unwrap()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_stream<S: Transport + 'static>(
        stream: S,
        tls_name: &str,
        options: ConnectOptions,
    ) -> Result<Pop3Client, Error> {
        let name = options.server_name(tls_name)?;
        Pop3Client::connect_stream(Socket::new(stream), Some(name), Instant::now(), options)
    }

    /// Runs a session over a stream the caller already secured (TLS
    /// terminated around it, e.g. a `rustls::StreamOwned` of its own, or a
    /// channel it trusts as much): no handshake here, no STLS, whatever
    /// [`ConnectOptions::security`] says; the session counts as protected,
    /// so logins that reveal the password are allowed on it. Without the
    /// TLS session at hand, SCRAM's `-PLUS` channel binding is not offered.
    pub fn from_secured_stream<S: Transport + 'static>(
        stream: S,
        mut options: ConnectOptions,
    ) -> Result<Pop3Client, Error> {
        options.security = Security::ImplicitTls;
        Pop3Client::session(
            Stream::Plain(Socket::new(stream)),
            None,
            Instant::now(),
            options,
        )
    }

    fn connect_stream(
        stream: Socket,
        name: Option<ServerName<'static>>,
        start: Instant,
        options: ConnectOptions,
    ) -> Result<Pop3Client, Error> {
        let deadline = start + options.connect_timeout;
        let mut io = Stream::Plain(stream);
        if let (Security::ImplicitTls, Some(name)) = (options.security, name.clone()) {
            let config = options.tls_client_config()?;
            io.start_client_tls(config, name)
                .and_then(|()| io.handshake_by(deadline))
                .map_err(|e| match e.kind() {
                    io::ErrorKind::TimedOut => Error::Timeout(TimeoutKind::Connect),
                    _ => Error::Tls(e.into()),
                })?;
        }
        Pop3Client::session(io, name, start, options)
    }

    /// The session over `io`: waits for the greeting, upgrades with STLS
    /// when asked; protected when `options.security` is implicit TLS.
    fn session(
        io: Stream,
        name: Option<ServerName<'static>>,
        start: Instant,
        options: ConnectOptions,
    ) -> Result<Pop3Client, Error> {
        let deadline = start + options.connect_timeout;
        let clock = Clock::start();
        let mut conn = Connection::new(
            options.connection_config(),
            clock.now(),
            Some(clock.at(deadline)),
        );
        conn.set_tls_exporter(io.client_tls_exporter());
        let starttls = options.security == Security::StartTls;
        let mut client = Pop3Client {
            conn,
            io,
            tls_name: name,
            options,
            clock,
        };
        client.run(task::Connect::new(starttls))?;
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
    pub fn run<T: Task>(&mut self, task: T) -> Result<T::Output, Error> {
        let mut task = self.conn.start(task)?;
        loop {
            if let Some(result) = self.conn.poll_task(self.clock.now(), &mut task) {
                return result;
            }
            self.step();
        }
    }

    /// `CAPA`: the capabilities (also kept for [`Pop3Client::capabilities`]).
    /// A server without CAPA answers [`Error::Server`].
    pub fn capa(&mut self) -> Result<Vec<Capability>, Error> {
        self.run(task::Capa::new())
    }

    /// `STLS`: upgrades the connection to TLS in place, then re-reads the
    /// capabilities (RFC 2595 §4).
    pub fn stls(&mut self) -> Result<(), Error> {
        self.run(task::Stls::new())
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
    /// # let server = pop3_blocking::server::Pop3Server::new(store, config);
    /// # let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// # let port = listener.local_addr()?.port();
    /// # let serving = {
    /// #     let server = server.clone();
    /// #     std::thread::spawn(move || server.serve(listener, pop3_blocking::server::Security::Plain))
    /// # };
    /// # let mut options = pop3_blocking::client::ConnectOptions::new(pop3_blocking::client::Security::Plain);
    /// # options.session.insecure_cleartext_login = true; // loopback, a test
    /// # let mut session = pop3_blocking::client::Pop3Client::connect("127.0.0.1", port, options)?;
    /// # let client = &mut session;
    /// client.login("alice", "secret")?;
    /// # drop(session);
    /// # server.shutdown();
    /// # serving.join().unwrap()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn login(&mut self, user: &str, password: &str) -> Result<(), Error> {
        self.run(crate::common::auto_login(&self.options, user, password)?)
    }

    /// `APOP` with the digest of the greeting's timestamp and `secret`; fails
    /// with [`Error::Command`] when the greeting has no valid timestamp.
    pub fn apop(&mut self, user: &str, secret: &str) -> Result<(), Error> {
        self.run(task::Apop::new(user, secret))
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
    /// # let server = pop3_blocking::server::Pop3Server::new(store, config);
    /// # let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// # let port = listener.local_addr()?.port();
    /// # let serving = {
    /// #     let server = server.clone();
    /// #     std::thread::spawn(move || server.serve(listener, pop3_blocking::server::Security::Plain))
    /// # };
    /// # let mut options = pop3_blocking::client::ConnectOptions::new(pop3_blocking::client::Security::Plain);
    /// # options.session.insecure_cleartext_login = true; // loopback, a test
    /// # let mut session = pop3_blocking::client::Pop3Client::connect("127.0.0.1", port, options)?;
    /// # let client = &mut session;
    /// client.auth(Box::new(Plain::new("alice", Secret::new("secret"))))?;
    /// # drop(session);
    /// # server.shutdown();
    /// # serving.join().unwrap()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn auth(&mut self, mechanism: BoxedMechanism) -> Result<(), Error> {
        self.run(task::Auth::new(mechanism))
    }

    /// `STAT`: message count and total size.
    pub fn stat(&mut self) -> Result<StatReply, Error> {
        self.run(task::Stat::new())
    }

    /// `LIST`: every message's number and size.
    pub fn list(&mut self) -> Result<Vec<ScanLine>, Error> {
        self.run(task::List::new())
    }

    /// `LIST n`: one message's size.
    pub fn list_one(&mut self, msg: MessageNumber) -> Result<ScanLine, Error> {
        self.run(task::ListOne::new(msg))
    }

    /// `UIDL`: every message's unique id.
    pub fn uidl(&mut self) -> Result<Vec<UidLine>, Error> {
        self.run(task::Uidl::new())
    }

    /// `UIDL n`: one message's unique id.
    pub fn uidl_one(&mut self, msg: MessageNumber) -> Result<UidLine, Error> {
        self.run(task::UidlOne::new(msg))
    }

    /// `RETR n`: the message, as a reader over its body (dot-unstuffed,
    /// line ends as the server sent them).
    ///
    /// ```
    /// use std::io::Read;
    /// # use std::sync::Arc;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let store = pop3_proto::store::MemoryStore::new();
    /// # store.add_user("alice", "secret");
    /// # for n in 1..=3 { store.add_message("alice", format!("Subject: {n}\r\n\r\nHello.\r\n")); }
    /// # let config = pop3_proto::server::ServerConfig::default().allow_plaintext_auth(true);
    /// # let server = pop3_blocking::server::Pop3Server::new(store, config);
    /// # let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// # let port = listener.local_addr()?.port();
    /// # let serving = {
    /// #     let server = server.clone();
    /// #     std::thread::spawn(move || server.serve(listener, pop3_blocking::server::Security::Plain))
    /// # };
    /// # let mut options = pop3_blocking::client::ConnectOptions::new(pop3_blocking::client::Security::Plain);
    /// # options.session.insecure_cleartext_login = true; // loopback, a test
    /// # let mut session = pop3_blocking::client::Pop3Client::connect("127.0.0.1", port, options)?;
    /// # let client = &mut session;
    /// # client.login("alice", "secret")?;
    /// let mut body = client.retr(pop3_blocking::client::msg(1).unwrap())?;
    /// let mut message = Vec::new();
    /// body.read_to_end(&mut message)?;
    /// # drop(body);
    /// # drop(session);
    /// # server.shutdown();
    /// # serving.join().unwrap()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn retr(&mut self, msg: MessageNumber) -> Result<Body<'_>, Error> {
        let state = self.run(task::Retrieve::retr(msg))?;
        Ok(Body::new(self, state))
    }

    /// `TOP n lines`: the header and the first `lines` lines of the body.
    pub fn top(&mut self, msg: MessageNumber, lines: u64) -> Result<Body<'_>, Error> {
        let state = self.run(task::Retrieve::top(msg, lines))?;
        Ok(Body::new(self, state))
    }

    /// `DELE n`: marks the message; the server removes it only after a
    /// successful [`Pop3Client::quit`].
    pub fn dele(&mut self, msg: MessageNumber) -> Result<(), Error> {
        self.run(task::Simple::new(Command::Dele(msg))).map(drop)
    }

    /// `RSET`: unmarks every deletion.
    pub fn rset(&mut self) -> Result<(), Error> {
        self.run(task::Simple::new(Command::Rset)).map(drop)
    }

    /// `NOOP`.
    pub fn noop(&mut self) -> Result<(), Error> {
        self.run(task::Simple::new(Command::Noop)).map(drop)
    }

    /// `UTF8` (RFC 6856), in AUTHORIZATION.
    pub fn utf8(&mut self) -> Result<(), Error> {
        self.run(task::Simple::new(Command::Utf8)).map(drop)
    }

    /// Bare `LANG`: the languages the server offers (RFC 6856).
    pub fn lang(&mut self) -> Result<Vec<LangLine>, Error> {
        self.run(task::Lang::new())
    }

    /// `LANG tag` or `LANG *`: selects a language; the reply's status line.
    pub fn set_lang(&mut self, request: LangRequest) -> Result<StatusLine, Error> {
        self.run(task::Simple::new(Command::Lang(request)))
    }

    /// `QUIT`: ends the session; in TRANSACTION, the server removes the
    /// messages marked deleted. Only an `Ok` here means they were removed.
    pub fn quit(&mut self) -> Result<(), Error> {
        self.run(task::Simple::new(Command::Quit))?;
        self.io.close(Duration::from_secs(2));
        Ok(())
    }

    /// `RETR` of many messages, pipelined when the server allows it. Take
    /// the messages in order with [`RetrBatch::next`].
    ///
    /// ```
    /// use std::io::Read;
    /// # use std::sync::Arc;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let store = pop3_proto::store::MemoryStore::new();
    /// # store.add_user("alice", "secret");
    /// # for n in 1..=3 { store.add_message("alice", format!("Subject: {n}\r\n\r\nHello.\r\n")); }
    /// # let config = pop3_proto::server::ServerConfig::default().allow_plaintext_auth(true);
    /// # let server = pop3_blocking::server::Pop3Server::new(store, config);
    /// # let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// # let port = listener.local_addr()?.port();
    /// # let serving = {
    /// #     let server = server.clone();
    /// #     std::thread::spawn(move || server.serve(listener, pop3_blocking::server::Security::Plain))
    /// # };
    /// # let mut options = pop3_blocking::client::ConnectOptions::new(pop3_blocking::client::Security::Plain);
    /// # options.session.insecure_cleartext_login = true; // loopback, a test
    /// # let mut session = pop3_blocking::client::Pop3Client::connect("127.0.0.1", port, options)?;
    /// # let client = &mut session;
    /// # client.login("alice", "secret")?;
    /// let msgs: Vec<_> = (1..=3).filter_map(pop3_blocking::client::msg).collect();
    /// let mut batch = client.retr_many(msgs)?;
    /// while let Some((msg, body)) = batch.next() {
    ///     let mut body = body?;
    ///     let mut text = Vec::new();
    ///     body.read_to_end(&mut text)?;
    /// }
    /// # drop(batch);
    /// # drop(session);
    /// # server.shutdown();
    /// # serving.join().unwrap()?;
    /// # Ok(())
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
    #[allow(clippy::type_complexity)]
    pub fn dele_many(
        &mut self,
        msgs: impl IntoIterator<Item = MessageNumber>,
    ) -> Result<Vec<(MessageNumber, Result<(), ServerError>)>, Error> {
        self.run(task::DeleMany::new(msgs))
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

    /// The session's clock, for drivers that take the time at each step.
    #[cfg(feature = "fetch")]
    pub(crate) fn clock(&self) -> Clock {
        self.clock
    }

    /// Performs the I/O the connection wants once, within the time left
    /// until its deadline; the caller polls its operation again.
    pub(crate) fn step(&mut self) {
        let clock = self.clock;
        let now = clock.now();
        let wait = self.conn.poll_timeout(now).map(|d| clock.left(d));
        if wait.is_some_and(|w| w.is_zero()) {
            return self.conn.handle_timeout(clock.now());
        }
        let (conn, io) = (&mut self.conn, &mut self.io);
        let done = match conn.want(now) {
            Want::Write(octets) => io.timed(wait, |s| s.write(octets)).map(|r| {
                conn.wrote(clock.now(), r);
            }),
            Want::Flush => io.timed(wait, |s| s.flush()).map(|r| {
                conn.flushed(clock.now(), r);
            }),
            Want::Read(buf) => io.timed(wait, |s| s.read(buf)).map(|r| {
                conn.received(clock.now(), r);
            }),
            Want::StartTls => {
                let started = if io.is_tls() {
                    Ok(()) // a handshake under way
                } else {
                    (self.options.tls_client_config())
                        .map_err(io::Error::other)
                        .and_then(|config| {
                            let name = self.tls_name.clone().ok_or_else(|| {
                                io::Error::other("the stream was secured by the caller")
                            })?;
                            io.start_client_tls(config, name)
                        })
                };
                match started {
                    Ok(()) => io.timed(wait, Stream::handshake).map(|r| {
                        if r.is_ok() {
                            conn.set_tls_exporter(io.client_tls_exporter());
                        }
                        conn.tls_done(clock.now(), r);
                    }),
                    Err(e) => {
                        conn.tls_done(now, Err(e));
                        Some(())
                    }
                }
            }
            // A blocking client may block: the work runs here.
            Want::Compute(work) => {
                conn.computed(clock.now(), Ok(work.run()));
                Some(())
            }
            Want::Done => Some(()),
        };
        if done.is_none() {
            self.conn.handle_timeout(clock.now());
        }
    }
}

/// A message body being received: a [`Read`] and a [`BufRead`], or chunk by
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
    /// # let server = pop3_blocking::server::Pop3Server::new(store, config);
    /// # let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// # let port = listener.local_addr()?.port();
    /// # let serving = {
    /// #     let server = server.clone();
    /// #     std::thread::spawn(move || server.serve(listener, pop3_blocking::server::Security::Plain))
    /// # };
    /// # let mut options = pop3_blocking::client::ConnectOptions::new(pop3_blocking::client::Security::Plain);
    /// # options.session.insecure_cleartext_login = true; // loopback, a test
    /// # let mut session = pop3_blocking::client::Pop3Client::connect("127.0.0.1", port, options)?;
    /// # let client = &mut session;
    /// # client.login("alice", "secret")?;
    /// let mut body = client.retr(pop3_blocking::client::msg(1).unwrap())?;
    /// let mut size = 0;
    /// while let Some(chunk) = body.next_chunk()? {
    ///     size += chunk.len();
    /// }
    /// # drop(body);
    /// # drop(session);
    /// # server.shutdown();
    /// # serving.join().unwrap()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn next_chunk(&mut self) -> Result<Option<Bytes>, Error> {
        if !self.chunk.is_empty() {
            return Ok(Some(std::mem::take(&mut self.chunk)));
        }
        loop {
            let now = self.client.clock.now();
            if let Some(result) = self.client.conn.poll_body(now, &mut self.state) {
                return result;
            }
            self.client.step();
        }
    }
}

impl Read for Body<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = {
            let chunk = self.fill_buf()?;
            let n = chunk.len().min(buf.len());
            buf[..n].copy_from_slice(&chunk[..n]);
            n
        };
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Body<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.chunk.is_empty() {
            if let Some(chunk) = self.next_chunk()? {
                self.chunk = chunk;
            }
        }
        Ok(&self.chunk)
    }

    fn consume(&mut self, amt: usize) {
        self.chunk.advance(amt.min(self.chunk.len()));
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
    /// goes on; a failed session ends it. (Not an [`Iterator`]: each body
    /// borrows the batch.)
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<(MessageNumber, Result<Body<'_>, Error>)> {
        let client = &mut *self.client;
        let (msg, result) = loop {
            if let Some(item) = client.conn.poll_batch(client.clock.now(), &mut self.state) {
                break item?;
            }
            client.step();
        };
        Some((msg, result.map(|state| Body::new(client, state))))
    }

    /// How many messages are still to come.
    pub fn remaining(&self) -> usize {
        self.state.remaining()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loopback address nobody listens on.
    fn refused() -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    }

    #[test]
    fn the_race_moves_on_from_refused_addresses_to_one_that_answers() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let good = listener.local_addr().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let started = Instant::now();
        let stream = race(vec![refused(), refused(), good], deadline).unwrap();
        assert_eq!(stream.peer_addr().unwrap(), good);
        // Each refusal starts the next attempt at once, without the stagger.
        assert!(started.elapsed() < ATTEMPT_DELAY * 2);
        let err = race(vec![refused(), refused()], deadline).unwrap_err();
        assert!(matches!(err, Error::Io(_)), "{err:?}");
        let err = race(vec![good, good], Instant::now()).unwrap_err();
        assert!(
            matches!(err, Error::Timeout(TimeoutKind::Connect)),
            "{err:?}"
        );
    }
}
