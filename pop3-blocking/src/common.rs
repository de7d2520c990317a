//! The plumbing the runtime adapters share around the core connection: how
//! a client connects and the order addresses are raced in, the name a
//! certificate must carry, how a server admits, refuses and sizes its
//! connections, which accept errors pass, and the session context of a TLS
//! handshake.
//!
//! Not part of the API: this module is hidden from the documentation
//! because it exists for `pop3-tokio` and `pop3-async-std` of the same
//! version, which are built against it; its items may change or go in any
//! release, patch releases included. The items meant for applications have
//! their documented home and are stable there:
//! `client::ConnectOptions`, `fetch::FetchSettings`, `server::ServerOptions`
//! and `server::Security` (they can still be named through this module, for
//! code written before they had a home).

#[cfg(feature = "client")]
use std::collections::VecDeque;
#[cfg(any(feature = "client", feature = "server"))]
use std::io;
#[cfg(feature = "server")]
use std::io::Write as _;
#[cfg(any(feature = "client", feature = "server"))]
use std::net::SocketAddr;
#[cfg(feature = "server")]
use std::net::{IpAddr, Shutdown, TcpStream};
#[cfg(any(feature = "client", feature = "server"))]
use std::sync::Arc;
#[cfg(feature = "server")]
use std::sync::{Mutex, PoisonError};
#[cfg(any(feature = "client", feature = "server"))]
use std::time::Duration;

#[cfg(feature = "fetch")]
use pop3_proto::client::Client;
#[cfg(feature = "client")]
use pop3_proto::client::{ClientConfig, ConnectionConfig, Error, Security};
#[cfg(feature = "fetch")]
use pop3_proto::fetch::{
    AuthError, FetchError, FetchOptions, LoginTask, SettingsError, login_task,
};
#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub use pop3_proto::server::ServerOptions;
#[cfg(feature = "server")]
use pop3_proto::server::{AddressKey, Admission, ConnectionContext, Refusal, ServerConfig};
#[cfg(feature = "fetch")]
use pop3_proto::url::{AuthMethod, PopUrl};
#[cfg(feature = "client")]
use rustls::pki_types::ServerName;

#[cfg(feature = "server")]
use crate::metrics::Metrics;
#[cfg(feature = "client")]
use crate::tls::{ClientIdentity, TlsVerification};
#[cfg(feature = "server")]
use pop3_proto::__tracing as tracing;

#[cfg(feature = "client")]
#[cfg_attr(docsrs, doc(cfg(feature = "client")))]
/// How a client connects. Start from [`ConnectOptions::new`].
#[derive(Debug, Clone)]
#[non_exhaustive]
#[must_use = "a configuration does nothing until it is used"]
pub struct ConnectOptions {
    /// Plain, STLS or implicit TLS.
    pub security: Security,
    /// How the certificate is verified, when [`ConnectOptions::tls_config`]
    /// is not given.
    pub verification: TlsVerification,
    /// A client certificate to show a server that asks for one, when
    /// [`ConnectOptions::tls_config`] is not given (default none).
    pub client_identity: Option<ClientIdentity>,
    /// A complete rustls configuration to use instead of one built from
    /// [`ConnectOptions::verification`] and
    /// [`ConnectOptions::client_identity`].
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
    /// The most entries a listing collected whole (LIST, UIDL, LANG) may
    /// have (default 200,000): a server that lists without end cannot
    /// exhaust memory.
    pub max_listing_entries: usize,
    /// The session machine's settings (pipelining, reply timeout, limits).
    /// Among them [`ClientConfig::insecure_cleartext_login`]: without TLS,
    /// `login` (USER/PASS) and the PLAIN and LOGIN mechanisms are refused
    /// unless it is set.
    pub session: ClientConfig,
}

#[cfg(feature = "client")]
impl ConnectOptions {
    /// Defaults with the given security.
    ///
    /// ```
    /// use pop3_blocking::client::{ConnectOptions, Security};
    /// let mut options = ConnectOptions::new(Security::StartTls);
    /// options.session.pipelining = false;
    /// ```
    pub fn new(security: Security) -> Self {
        let defaults = ConnectionConfig::default();
        ConnectOptions {
            security,
            verification: TlsVerification::default(),
            client_identity: None,
            tls_config: None,
            tls_name: None,
            connect_timeout: Duration::from_secs(30),
            idle_timeout: defaults.idle_timeout,
            read_capabilities: defaults.read_capabilities,
            max_listing_entries: defaults.max_listing_entries,
            session: defaults.session,
        }
    }

    /// The core connection's settings.
    pub fn connection_config(&self) -> ConnectionConfig {
        let mut config = ConnectionConfig::default();
        config.session = self.session.clone();
        config.session.tls_active = self.security == Security::ImplicitTls;
        config.idle_timeout = self.idle_timeout;
        config.read_capabilities = self.read_capabilities;
        config.max_listing_entries = self.max_listing_entries;
        config
    }

    /// The rustls configuration: [`ConnectOptions::tls_config`], or one
    /// built from [`ConnectOptions::verification`] and
    /// [`ConnectOptions::client_identity`].
    pub fn tls_client_config(&self) -> Result<Arc<rustls::ClientConfig>, Error> {
        match &self.tls_config {
            Some(c) => Ok(c.clone()),
            None => self
                .verification
                .client_config_with_identity(self.client_identity.as_ref())
                .map_err(|e| Error::TlsConfig(Arc::new(e))),
        }
    }

    /// The name the certificate must carry: [`ConnectOptions::tls_name`],
    /// else `host`.
    pub fn server_name(&self, host: &str) -> Result<ServerName<'static>, Error> {
        server_name(self.tls_name.as_deref().unwrap_or(host))
    }

    /// The generator of the client's nonces: that of the crypto provider of
    /// [`ConnectOptions::tls_config`] when given, else the default one
    /// ([`secure_random`](crate::tls::secure_random)).
    pub fn secure_random(&self) -> &'static dyn rustls::crypto::SecureRandom {
        crate::tls::secure_random(self.tls_config.as_ref().map(|c| &**c.crypto_provider()))
    }
}

#[cfg(feature = "client")]
#[cfg_attr(docsrs, doc(cfg(feature = "client")))]
/// The task behind every adapter's `login`: the strongest login the
/// session offers ([`AutoLogin`](pop3_proto::client::task::AutoLogin)),
/// with a fresh SCRAM nonce from the secure generator of `options`
/// ([`ConnectOptions::secure_random`]).
///
/// ```
/// use pop3_blocking::common::{ConnectOptions, auto_login};
/// use pop3_proto::client::Security;
/// let task = auto_login(&ConnectOptions::new(Security::ImplicitTls), "alice", "secret")?;
/// # let _ = task;
/// # Ok::<(), pop3_proto::client::Error>(())
/// ```
pub fn auto_login(
    options: &ConnectOptions,
    user: &str,
    password: &str,
) -> Result<pop3_proto::client::task::AutoLogin, Error> {
    let nonce = crate::tls::random_token_from(options.secure_random(), 24)
        .map_err(|e| Error::Io(Arc::new(io::Error::other(e))))?;
    Ok(pop3_proto::client::task::AutoLogin::new(
        user, password, &nonce,
    ))
}

#[cfg(any(feature = "client", feature = "server"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "client", feature = "server"))))]
/// The `tls-exporter` channel binding of a TLS connection (RFC 9266: the
/// exporter with label "EXPORTER-Channel-Binding", an empty context, 32
/// octets), on TLS 1.3 only.
pub fn tls_exporter<D>(conn: &rustls::ConnectionCommon<D>) -> Option<[u8; 32]> {
    if conn.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_3) {
        return None;
    }
    conn.export_keying_material([0u8; 32], b"EXPORTER-Channel-Binding", Some(b""))
        .ok()
}

#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
/// What a server-side handshake established, for the session machine: the
/// verified client certificate and the channel binding. Every adapter
/// hands it over after its handshake.
pub fn server_tls_info(conn: &rustls::ServerConnection) -> pop3_proto::server::TlsInfo {
    let mut info = pop3_proto::server::TlsInfo::default();
    if let Some(cert) = conn.peer_certificates().and_then(|c| c.first()) {
        info = info.with_client_certificate(cert.as_ref().to_vec());
    }
    if let Some(value) = tls_exporter(conn) {
        info = info.with_tls_exporter(value);
    }
    info
}

#[cfg(feature = "client")]
#[cfg_attr(docsrs, doc(cfg(feature = "client")))]
/// `host` without the brackets of an IPv6 literal (`[::1]` → `::1`).
pub fn bare_host(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

#[cfg(feature = "client")]
#[cfg_attr(docsrs, doc(cfg(feature = "client")))]
/// Turns `host` (a DNS name, an IP literal, possibly in brackets) into the
/// name a certificate must carry.
///
/// ```
/// assert!(pop3_blocking::common::server_name("[::1]").is_ok());
/// assert!(pop3_blocking::common::server_name("bad name").is_err());
/// ```
pub fn server_name(host: &str) -> Result<ServerName<'static>, Error> {
    ServerName::try_from(bare_host(host).to_owned())
        .map_err(|_| Error::InvalidHost(host.to_owned()))
}

#[cfg(feature = "client")]
#[cfg_attr(docsrs, doc(cfg(feature = "client")))]
/// How long a connection attempt has before the next address is tried
/// alongside it (RFC 8305's "connection attempt delay").
pub const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

#[cfg(feature = "client")]
#[cfg_attr(docsrs, doc(cfg(feature = "client")))]
/// The order addresses are tried in: families alternating, starting with
/// the first one's (RFC 8305).
///
/// ```
/// use std::net::SocketAddr;
/// let a: SocketAddr = "[::1]:110".parse().unwrap();
/// let b: SocketAddr = "[::2]:110".parse().unwrap();
/// let c: SocketAddr = "127.0.0.1:110".parse().unwrap();
/// assert_eq!(pop3_blocking::common::connect_order(vec![a, b, c]), vec![a, c, b]);
/// ```
pub fn connect_order(addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
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

#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
/// How a listener's connections start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerSecurity {
    /// Plain POP3 (port 110); STLS is offered when the server has a TLS
    /// configuration.
    Plain,
    /// Implicit TLS (POP3S, port 995): the TLS handshake comes first (RFC 8314).
    ImplicitTls,
    /// The connection is already secured by the caller (TLS terminated
    /// around the stream, or a channel trusted as much, such as a Unix
    /// socket of a trusted peer): no handshake, no STLS offered, and the
    /// session counts as protected (logins that reveal the password are
    /// allowed).
    Secured,
}

#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
/// Whether a failed `accept` is pressure that passes (back off and accept
/// again) rather than a broken listener.
///
/// ```
/// use std::io;
/// use pop3_blocking::common::is_transient_accept_error;
/// assert!(is_transient_accept_error(&io::ErrorKind::ConnectionAborted.into()));
/// assert!(is_transient_accept_error(&io::Error::from_raw_os_error(24))); // EMFILE
/// ```
pub fn is_transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::OutOfMemory
    ) || matches!(
        e.raw_os_error(),
        // EMFILE, ENFILE (descriptor limits), ENOBUFS, ENOMEM.
        Some(24 | 23 | 105 | 12)
    )
}

#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
/// How long to wait before accepting again after a transient failure.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
/// The memory an idle session is planned with when the connection cap is
/// sized for a host (measured: about 10 KB on tokio, 18 on smol, 30 with a
/// thread per session).
pub const PLANNED_SESSION_MEMORY: u64 = 32 * 1024;

#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
/// The descriptors a session is planned with when the connection cap is
/// sized for a host: its socket, and what the Maildir store holds for it
/// (served through an [`OffloadStore`](pop3_proto::store::OffloadStore)):
/// the lock file, the message being read (a message read to its end holds
/// none, whether asked for or fetched ahead), the message before it while
/// it is being closed, and a directory or the size cache, open for a
/// moment while a call scans or writes it.
pub const PLANNED_SESSION_DESCRIPTORS: u64 = 5;

#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
/// The descriptors kept out of the sessions' budget when the connection
/// cap is sized for a host: the listeners, the runtime's own, logs.
pub const RESERVED_DESCRIPTORS: u64 = 64;

#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
/// Server options with the connection cap sized for this host: at most a
/// quarter of the available memory at [`PLANNED_SESSION_MEMORY`] per
/// session, and at most the descriptors the process may open, less
/// [`RESERVED_DESCRIPTORS`], at [`PLANNED_SESSION_DESCRIPTORS`] per session;
/// never above the default. Where the host cannot tell (no `/proc`), the
/// defaults.
///
/// ```
/// let options = pop3_blocking::common::host_server_options();
/// assert!(options.max_connections >= 1);
/// ```
pub fn host_server_options() -> ServerOptions {
    let mut options = ServerOptions::default();
    let read = |path: &str, key: &str| -> Option<u64> {
        let text = std::fs::read_to_string(path).ok()?;
        let line = text.lines().find(|l| l.starts_with(key))?;
        line[key.len()..].split_whitespace().next()?.parse().ok()
    };
    let by_memory = read("/proc/meminfo", "MemAvailable:")
        .map(|kib| kib.saturating_mul(1024) / 4 / PLANNED_SESSION_MEMORY);
    let by_descriptors = read("/proc/self/limits", "Max open files").map(descriptor_cap);
    for cap in [by_memory, by_descriptors].into_iter().flatten() {
        let cap = usize::try_from(cap).unwrap_or(usize::MAX).max(1);
        options.max_connections = options.max_connections.min(cap);
    }
    options
}

#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
/// The sessions a process allowed `limit` open descriptors can serve.
///
/// ```
/// use pop3_blocking::common::{PLANNED_SESSION_DESCRIPTORS, descriptor_cap};
/// // The usual soft limit: 1,024 descriptors.
/// assert_eq!(descriptor_cap(1024), (1024 - 64) / PLANNED_SESSION_DESCRIPTORS);
/// assert_eq!(descriptor_cap(10), 0);
/// ```
pub fn descriptor_cap(limit: u64) -> u64 {
    limit.saturating_sub(RESERVED_DESCRIPTORS) / PLANNED_SESSION_DESCRIPTORS
}

#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
/// A new session's context: TLS as given, and its randomness (the APOP and
/// CRAM-MD5 challenges' number, the SCRAM nonces' secret seed) drawn from
/// `random`: the generator of the crypto provider of the server's TLS
/// configuration, [`secure_random`](crate::tls::secure_random) of it. An
/// error means no randomness could be had: the connection must be dropped
/// rather than served with guessable nonces.
///
/// ```
/// use pop3_blocking::{common::connection_context, tls::secure_random};
/// let ctx = connection_context(secure_random(None), false, true).unwrap();
/// assert!(ctx.seed.is_some() && ctx.tls_available);
/// ```
pub fn connection_context(
    random: &dyn rustls::crypto::SecureRandom,
    tls_active: bool,
    tls_available: bool,
) -> Result<ConnectionContext, rustls::Error> {
    let bytes = crate::tls::random_bytes_from::<40>(random)?;
    let (random, seed) = bytes.split_at(8);
    let random = u64::from_le_bytes(random.try_into().expect("8 octets"));
    let seed: [u8; 32] = seed.try_into().expect("32 octets");
    Ok(ConnectionContext::new(random, tls_active, tls_available).seed(seed))
}

#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
/// A server's connection caps (the core's [`Admission`]), shared by its
/// listeners and sessions on any runtime.
///
/// ```
/// use pop3_blocking::common::{Gate, ServerOptions};
/// use pop3_proto::server::Refusal;
///
/// let mut options = ServerOptions::default();
/// options.max_connections_per_address = 1;
/// let gate = Gate::new(&options);
/// let pass = gate.admit("127.0.0.2".parse().unwrap()).unwrap();
/// assert_eq!(gate.admit("127.0.0.2".parse().unwrap()).unwrap_err(), Refusal::AddressFull);
/// drop(pass); // the session ended
/// assert!(gate.admit("127.0.0.2".parse().unwrap()).is_ok());
/// ```
///
/// It also holds the [`SessionLimits`] the sessions to come start with
/// ([`Gate::set_limits`]): a server given the gate (its `with_gate`) reads
/// them as it starts each session.
#[derive(Debug, Clone)]
pub struct Gate {
    admission: Arc<Mutex<Admission>>,
    limits: Arc<Mutex<SessionLimits>>,
}

#[cfg(feature = "server")]
impl Gate {
    /// The caps of `options`; no [`SessionLimits`] (each server's own
    /// options and configuration apply).
    pub fn new(options: &ServerOptions) -> Gate {
        Gate {
            admission: Arc::new(Mutex::new(Admission::new(options))),
            limits: Arc::default(),
        }
    }

    /// Puts `limits` in force for the sessions that start from now on (a
    /// reload): sessions in progress keep the limits they started with,
    /// but for the shutdown grace, which the next shutdown gives them all.
    ///
    /// ```
    /// use std::time::Duration;
    /// use pop3_blocking::common::{Gate, ServerOptions, SessionLimits};
    ///
    /// let gate = Gate::new(&ServerOptions::default());
    /// let mut limits = SessionLimits::default();
    /// limits.login_timeout = Some(Duration::from_secs(30));
    /// gate.set_limits(limits);
    /// assert_eq!(gate.limits(), limits);
    /// ```
    pub fn set_limits(&self, limits: SessionLimits) {
        *self.limits.lock().unwrap_or_else(PoisonError::into_inner) = limits;
    }

    /// The session limits in force.
    pub fn limits(&self) -> SessionLimits {
        *self.limits.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The shutdown grace in force: that of the [`SessionLimits`], else
    /// `own` (the server's).
    pub fn shutdown_grace(&self, own: Duration) -> Duration {
        self.limits().shutdown_grace.unwrap_or(own)
    }

    /// Counts a connection from `peer` until the [`Pass`] is dropped, or
    /// says why it is refused.
    pub fn admit(&self, peer: IpAddr) -> Result<Pass, Refusal> {
        let key = self.lock().admit(peer)?;
        Ok(Pass {
            gate: self.admission.clone(),
            key,
        })
    }

    /// Sessions admitted and not yet ended.
    pub fn open(&self) -> usize {
        self.lock().open()
    }

    /// Puts the caps of `options` in force for the connections to come
    /// (a reload): open sessions go on, also over a lowered cap.
    ///
    /// ```
    /// use pop3_blocking::common::{Gate, ServerOptions};
    ///
    /// let gate = Gate::new(&ServerOptions::default());
    /// let pass = gate.admit("127.0.0.2".parse().unwrap()).unwrap();
    /// let mut lowered = ServerOptions::default();
    /// lowered.max_connections = 1;
    /// gate.set_caps(&lowered);
    /// assert!(gate.admit("127.0.0.3".parse().unwrap()).is_err());
    /// drop(pass);
    /// assert!(gate.admit("127.0.0.3".parse().unwrap()).is_ok());
    /// ```
    pub fn set_caps(&self, options: &ServerOptions) {
        self.lock().set_caps(options);
    }

    /// The caps in force: sessions in all, and from one address.
    pub fn caps(&self) -> (usize, usize) {
        self.lock().caps()
    }

    /// Counts a connection under the total cap before its client's address
    /// is known (its PROXY header is still to be read), or says why it is
    /// refused: see [`Reservation::client`].
    pub fn reserve(&self) -> Result<Reservation, Refusal> {
        self.lock().admit_unaddressed()?;
        Ok(Reservation {
            gate: Some(self.admission.clone()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Admission> {
        self.admission
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
/// The time limits a session starts with, as a reload changes them
/// ([`Gate::set_limits`]): each one set replaces the server's own (from
/// its [`ServerOptions`] or its protocol configuration) for the sessions
/// that start afterwards; `None` leaves the server's own.
///
/// ```
/// use std::time::Duration;
/// use pop3_blocking::common::{ServerOptions, SessionLimits};
///
/// let mut limits = SessionLimits::default();
/// limits.store_timeout = Some(Duration::from_secs(10));
/// let options = limits.options(&ServerOptions::default());
/// assert_eq!(options.store_timeout, Duration::from_secs(10));
/// assert_eq!(options.write_stall_timeout, ServerOptions::default().write_stall_timeout);
/// ```
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionLimits {
    /// The protocol configuration's
    /// [`login_timeout`](pop3_proto::server::ServerConfig::login_timeout).
    pub login_timeout: Option<Duration>,
    /// The protocol configuration's
    /// [`autologout`](pop3_proto::server::ServerConfig::autologout)
    /// (at least 10 minutes, as there).
    pub autologout: Option<Duration>,
    /// [`ServerOptions::write_stall_timeout`].
    pub write_stall_timeout: Option<Duration>,
    /// [`ServerOptions::tls_handshake_timeout`].
    pub tls_handshake_timeout: Option<Duration>,
    /// [`ServerOptions::shutdown_grace`]: the one in force when a shutdown
    /// begins applies to every session, whenever it started.
    pub shutdown_grace: Option<Duration>,
    /// [`ServerOptions::store_timeout`].
    pub store_timeout: Option<Duration>,
}

#[cfg(feature = "server")]
impl SessionLimits {
    /// `base` with the limits set here.
    pub fn options(&self, base: &ServerOptions) -> ServerOptions {
        let mut options = base.clone();
        let set = |value: &mut Duration, limit: Option<Duration>| {
            if let Some(limit) = limit {
                *value = limit;
            }
        };
        set(&mut options.write_stall_timeout, self.write_stall_timeout);
        set(
            &mut options.tls_handshake_timeout,
            self.tls_handshake_timeout,
        );
        set(&mut options.shutdown_grace, self.shutdown_grace);
        set(&mut options.store_timeout, self.store_timeout);
        options
    }

    /// `base` with the limits set here.
    pub fn config(&self, base: &ServerConfig) -> ServerConfig {
        let mut config = base.clone();
        if let Some(timeout) = self.login_timeout {
            config = config.login_timeout(timeout);
        }
        if let Some(timeout) = self.autologout {
            config = config.autologout(timeout);
        }
        config
    }
}

#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
/// A server's protocol configuration and connection options as its
/// sessions start with them: those it was built with, under the
/// [`SessionLimits`] of its [`Gate`] in force when each session starts.
/// Every adapter asks it for each new session ([`SessionSettings::start`]);
/// the settings made for the last limits seen are kept, so sessions share
/// them until the limits change again.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use pop3_blocking::common::{Gate, ServerOptions, SessionLimits, SessionSettings};
/// use pop3_proto::server::ServerConfig;
///
/// let options = ServerOptions::default();
/// let (gate, settings) = (Gate::new(&options), SessionSettings::new(Arc::new(ServerConfig::default()), options));
/// let (_, before) = settings.start(&gate);
/// let mut limits = SessionLimits::default();
/// limits.write_stall_timeout = Some(Duration::from_secs(5));
/// gate.set_limits(limits);
/// let (_, after) = settings.start(&gate);
/// assert_eq!(after.write_stall_timeout, Duration::from_secs(5));
/// assert_eq!(before.write_stall_timeout, ServerOptions::default().write_stall_timeout);
/// ```
#[derive(Debug)]
pub struct SessionSettings {
    config: Arc<ServerConfig>,
    options: ServerOptions,
    /// The last limits seen and the settings made of them.
    made: Mutex<Option<Made>>,
}

#[cfg(feature = "server")]
type Made = (SessionLimits, Arc<ServerConfig>, Arc<ServerOptions>);

#[cfg(feature = "server")]
impl SessionSettings {
    /// The settings a server was built with.
    pub fn new(config: Arc<ServerConfig>, options: ServerOptions) -> SessionSettings {
        SessionSettings {
            config,
            options,
            made: Mutex::new(None),
        }
    }

    /// The connection options the server was built with (its PROXY
    /// protocol policy).
    pub fn built_options(&self) -> &ServerOptions {
        &self.options
    }

    /// The shutdown grace in force now: `gate`'s, else the server's own.
    /// A shutdown gives every session this grace, whenever it started.
    pub fn shutdown_grace(&self, gate: &Gate) -> Duration {
        gate.shutdown_grace(self.options.shutdown_grace)
    }

    /// The protocol configuration and connection options a session
    /// starting now runs with: the server's, under `gate`'s limits.
    pub fn start(&self, gate: &Gate) -> (Arc<ServerConfig>, Arc<ServerOptions>) {
        let limits = gate.limits();
        let mut made = self.made.lock().unwrap_or_else(PoisonError::into_inner);
        match &*made {
            Some((seen, config, options)) if *seen == limits => (config.clone(), options.clone()),
            _ => {
                let config = match (limits.login_timeout, limits.autologout) {
                    (None, None) => self.config.clone(),
                    _ => Arc::new(limits.config(&self.config)),
                };
                let options = Arc::new(limits.options(&self.options));
                *made = Some((limits, config.clone(), options.clone()));
                (config, options)
            }
        }
    }
}

#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
/// An admitted connection's place under the caps of a [`Gate`], given back
/// when dropped.
#[derive(Debug)]
pub struct Pass {
    gate: Arc<Mutex<Admission>>,
    key: AddressKey,
}

#[cfg(feature = "server")]
impl Drop for Pass {
    fn drop(&mut self) {
        self.gate
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .release(self.key);
    }
}

#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
/// A connection's place under the total cap of a [`Gate`] while its
/// client's address is not known yet; given back when dropped, unless it
/// became a [`Pass`].
#[derive(Debug)]
pub struct Reservation {
    gate: Option<Arc<Mutex<Admission>>>,
}

#[cfg(feature = "server")]
impl Reservation {
    /// Counts the connection under the per-address cap of its client
    /// `peer` too, or says why it is refused (its place is then given
    /// back).
    ///
    /// ```
    /// use pop3_blocking::common::{Gate, ServerOptions};
    /// use pop3_proto::server::Refusal;
    ///
    /// let mut options = ServerOptions::default();
    /// options.max_connections = 2;
    /// options.max_connections_per_address = 1;
    /// let gate = Gate::new(&options);
    /// let first = gate.reserve()?;
    /// let second = gate.reserve()?;
    /// assert_eq!(gate.reserve().unwrap_err(), Refusal::Full); // headers unread count
    /// let pass = first.client("192.0.2.7".parse().unwrap())?;
    /// assert_eq!(second.client("192.0.2.7".parse().unwrap()).unwrap_err(), Refusal::AddressFull);
    /// assert_eq!(gate.open(), 1);
    /// # drop(pass);
    /// # Ok::<(), Refusal>(())
    /// ```
    pub fn client(mut self, peer: IpAddr) -> Result<Pass, Refusal> {
        let gate = self.gate.take().expect("a reservation is used once");
        let mut admission = gate.lock().unwrap_or_else(PoisonError::into_inner);
        match admission.address(peer) {
            Ok(key) => {
                drop(admission);
                Ok(Pass { gate, key })
            }
            Err(refusal) => {
                admission.release_unaddressed();
                Err(refusal)
            }
        }
    }
}

#[cfg(feature = "server")]
impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(gate) = &self.gate {
            gate.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .release_unaddressed();
        }
    }
}

#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
/// What to do with a connection just accepted, from
/// [`admit_accepted`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Admitted {
    /// Serve it: it is counted under the caps by its peer address.
    Session(Pass),
    /// Read its PROXY header first (within the policy's timeout), then
    /// hand the outcome to [`admit_proxied`]: it is counted under the
    /// total cap meanwhile.
    ReadHeader(Reservation),
    /// Refuse it with this reply ([`refuse`]).
    Refuse(Refusal),
    /// Close it without a word (a PROXY listener's connection from an
    /// untrusted source; logged and counted).
    Drop,
}

#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
/// The admission of a connection accepted from `peer` on a listener with
/// the PROXY protocol `policy` (or none), the same on every runtime:
/// without a policy, the caps by `peer`; with one, an untrusted `peer` is
/// dropped, and a trusted one counts under the total cap at once, so a
/// source holding its header back holds a place like any connection; the
/// per-address cap applies to the client its header names
/// ([`admit_proxied`]). Refusals are counted in `metrics`.
///
/// ```
/// use pop3_blocking::common::{Admitted, Gate, ServerOptions, admit_accepted};
/// use pop3_blocking::metrics::Metrics;
/// use pop3_proto::proxy::{Network, ProxyPolicy};
///
/// let mut options = ServerOptions::default();
/// options.max_connections = 1;
/// let (gate, metrics) = (Gate::new(&options), Metrics::new());
/// let policy = ProxyPolicy::new(vec!["10.0.0.0/8".parse::<Network>().unwrap()]);
/// let proxy = "10.0.0.2:5000".parse().unwrap();
/// let waiting = admit_accepted(&gate, Some(&policy), proxy, &metrics);
/// assert!(matches!(waiting, Admitted::ReadHeader(_)));
/// // The header is not read yet, and the cap is already taken:
/// assert!(matches!(admit_accepted(&gate, None, proxy, &metrics), Admitted::Refuse(_)));
/// let stranger = "192.0.2.1:5000".parse().unwrap();
/// assert!(matches!(admit_accepted(&gate, Some(&policy), stranger, &metrics), Admitted::Drop));
/// ```
pub fn admit_accepted(
    gate: &Gate,
    policy: Option<&pop3_proto::proxy::ProxyPolicy>,
    peer: SocketAddr,
    metrics: &Metrics,
) -> Admitted {
    let admitted = match policy {
        None => gate.admit(peer.ip()).map(Admitted::Session),
        Some(_) if !proxy_admits(policy, peer, metrics) => return Admitted::Drop,
        Some(_) => gate.reserve().map(Admitted::ReadHeader),
    };
    admitted.unwrap_or_else(|refusal| {
        tracing::info!(%peer, "connection refused: {refusal}");
        metrics.refused(refusal);
        Admitted::Refuse(refusal)
    })
}

#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
/// The second step of [`Admitted::ReadHeader`]: the outcome of reading the
/// header of the connection from `peer`. `Ok`: serve the client of that
/// address; `Err(Some(refusal))`: refuse it ([`refuse`]) over its
/// per-address cap; `Err(None)`: close it (no valid header in time).
/// Logged and counted in `metrics`.
pub fn admit_proxied(
    reservation: Reservation,
    read: io::Result<SocketAddr>,
    peer: SocketAddr,
    metrics: &Metrics,
) -> Result<(Pass, SocketAddr), Option<Refusal>> {
    let client = proxy_result(read, peer, metrics).ok_or(None)?;
    match reservation.client(client.ip()) {
        Ok(pass) => Ok((pass, client)),
        Err(refusal) => {
            tracing::info!(peer = %client, "connection refused: {refusal}");
            metrics.refused(refusal);
            Err(Some(refusal))
        }
    }
}

#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
/// Tells a refused client why, and closes: the line is written without
/// waiting (a fresh connection's send buffer takes it whole; a client that
/// does not read loses nothing but the explanation), then the connection
/// is shut down. Counted in `metrics`.
pub fn refuse(stream: TcpStream, peer: SocketAddr, refusal: Refusal, metrics: &Metrics) {
    tracing::info!(%peer, "connection refused: {refusal}");
    metrics.refused(refusal);
    send_refusal(stream, refusal);
}

#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
/// Writes `refusal`'s line without waiting and closes, as [`refuse`] does,
/// for a refusal already logged and counted ([`admit_accepted`],
/// [`admit_proxied`]).
pub fn send_refusal(stream: TcpStream, refusal: Refusal) {
    let _ = stream.set_nonblocking(true);
    let _ = (&stream).write(refusal.reply());
    let _ = stream.shutdown(Shutdown::Both);
}

#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
/// The PROXY protocol header at the start of a connection from a trusted
/// proxy ([`ProxyPolicy`](pop3_proto::proxy::ProxyPolicy)), read in steps
/// that never take an octet of the session behind it: read into
/// [`ProxyPreface::space`], report with [`ProxyPreface::filled`] until it
/// gives the client's address. [`read_proxy_preface`] is the loop for a
/// blocking reader; an asynchronous adapter writes the same two lines
/// with its own `read`.
///
/// ```
/// use pop3_blocking::common::ProxyPreface;
/// # fn main() -> std::io::Result<()> {
/// let proxy = "10.0.0.2:5000".parse().unwrap();
/// let mut wire: &[u8] = b"PROXY TCP4 192.0.2.7 10.0.0.1 40000 110\r\nCAPA\r\n";
/// let mut preface = ProxyPreface::new(proxy);
/// let client = loop {
///     let n = std::io::Read::read(&mut wire, preface.space())?;
///     if let Some(client) = preface.filled(n)? {
///         break client;
///     }
/// };
/// assert_eq!(client.to_string(), "192.0.2.7:40000");
/// assert_eq!(wire, b"CAPA\r\n");
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ProxyPreface {
    reader: pop3_proto::proxy::Reader,
    peer: SocketAddr,
}

#[cfg(feature = "server")]
impl ProxyPreface {
    /// The header of a connection from the proxy at `peer`.
    pub fn new(peer: SocketAddr) -> ProxyPreface {
        ProxyPreface {
            reader: pop3_proto::proxy::Reader::new(),
            peer,
        }
    }

    /// Where the next read goes (never past the header).
    pub fn space(&mut self) -> &mut [u8] {
        self.reader.space()
    }

    /// `n` octets were read (0: end of stream). `Some`: the header is
    /// whole, and this is the client's address (the proxy's own for a
    /// `LOCAL` or `UNKNOWN` header); `None`: read again. A malformed header
    /// is an [`io::ErrorKind::InvalidData`] error whose source is the
    /// [`ProxyError`](pop3_proto::proxy::ProxyError).
    pub fn filled(&mut self, n: usize) -> io::Result<Option<SocketAddr>> {
        use pop3_proto::proxy::{Parsed, ProxyError};
        match self.reader.filled(n) {
            Ok(Parsed::Proxied { source, .. }) => Ok(Some(source)),
            Ok(Parsed::Local { .. }) => Ok(Some(self.peer)),
            Ok(_) => Ok(None),
            Err(ProxyError::Truncated) => Err(io::ErrorKind::UnexpectedEof.into()),
            Err(e) => Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        }
    }
}

#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
/// Reads a connection's PROXY header with `read` (a blocking read that
/// returns at its own timeout) and returns the client's address: see
/// [`ProxyPreface`].
///
/// ```
/// let proxy = "10.0.0.2:5000".parse().unwrap();
/// let mut wire: &[u8] = &pop3_proto::proxy::v2_header(None); // a health check
/// let client = pop3_blocking::common::read_proxy_preface(proxy, |buf| std::io::Read::read(&mut wire, buf))?;
/// assert_eq!(client, proxy);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn read_proxy_preface(
    peer: SocketAddr,
    mut read: impl FnMut(&mut [u8]) -> io::Result<usize>,
) -> io::Result<SocketAddr> {
    let mut preface = ProxyPreface::new(peer);
    loop {
        let n = match read(preface.space()) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            read => read?,
        };
        if let Some(client) = preface.filled(n)? {
            return Ok(client);
        }
    }
}

#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
/// Whether a connection from `peer` may be served under `policy` (a
/// listener without one serves everyone); one refused is logged, and is to
/// be closed without a word (it is no proxy of ours), and counted in
/// `metrics`.
pub fn proxy_admits(
    policy: Option<&pop3_proto::proxy::ProxyPolicy>,
    peer: SocketAddr,
    metrics: &Metrics,
) -> bool {
    let trusted = policy.is_none_or(|p| p.trusts(peer.ip()));
    if !trusted {
        metrics.proxy_refused(true);
        tracing::info!(%peer, "connection refused: not a trusted PROXY protocol source");
    }
    trusted
}

#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
/// Reads the PROXY header of a connection accepted on a blocking socket,
/// within `timeout` in all, and returns the client's address (logged and
/// `None` when the header is missing, malformed or late: the connection
/// is to be closed; counted in `metrics`).
pub fn read_proxy_preface_from(
    stream: &TcpStream,
    peer: SocketAddr,
    timeout: Duration,
    metrics: &Metrics,
) -> Option<SocketAddr> {
    proxy_result(read_proxy_header(stream, peer, timeout), peer, metrics)
}

#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
/// Reads the PROXY header of a connection accepted on a blocking socket,
/// within `timeout` in all, and returns the client's address (see
/// [`ProxyPreface`]); the outcome goes to [`admit_proxied`].
pub fn read_proxy_header(
    stream: &TcpStream,
    peer: SocketAddr,
    timeout: Duration,
) -> io::Result<SocketAddr> {
    let until = std::time::Instant::now() + timeout;
    let read = read_proxy_preface(peer, |buf| {
        let left = until.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        stream.set_read_timeout(Some(left))?;
        io::Read::read(&mut &*stream, buf)
    });
    let _ = stream.set_read_timeout(None);
    read
}

#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
/// The client's address from a PROXY header read, or the failure logged
/// (`None`: close the connection), counted in `metrics`.
pub fn proxy_result(
    read: io::Result<SocketAddr>,
    peer: SocketAddr,
    metrics: &Metrics,
) -> Option<SocketAddr> {
    match read {
        Ok(client) => Some(client),
        Err(e) => {
            metrics.proxy_refused(false);
            tracing::info!(%peer, error = %e, "connection refused: no valid PROXY protocol header");
            None
        }
    }
}

#[cfg(feature = "fetch")]
#[cfg_attr(docsrs, doc(cfg(feature = "fetch")))]
/// How a fetch connects and what it does: the settings behind every
/// adapter's `fetch::connect` and `fetch::run`.
#[derive(Debug, Clone)]
#[non_exhaustive]
#[must_use = "a configuration does nothing until it is used"]
pub struct FetchSettings {
    /// Upgrade a `pop://` connection with STLS.
    pub starttls: bool,
    /// How the certificate is verified, when [`FetchSettings::tls_config`]
    /// is not given.
    pub verification: TlsVerification,
    /// A client certificate to show a server that asks for one, when
    /// [`FetchSettings::tls_config`] is not given. Becomes
    /// [`ConnectOptions::client_identity`].
    pub client_identity: Option<ClientIdentity>,
    /// A complete rustls configuration to use instead of one built from
    /// [`FetchSettings::verification`]: the application's own roots or
    /// verifier, a client certificate, its crypto provider (which then also
    /// draws the login's nonces). Becomes
    /// [`ConnectOptions::tls_config`].
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use pop3_blocking::fetch::FetchSettings;
    /// use pop3_blocking::tls::{crypto_provider, rustls};
    ///
    /// # fn go(roots: rustls::RootCertStore) -> Result<(), rustls::Error> {
    /// let config = rustls::ClientConfig::builder_with_provider(crypto_provider())
    ///     .with_safe_default_protocol_versions()?
    ///     .with_root_certificates(roots)
    ///     .with_no_client_auth();
    /// let mut settings = FetchSettings::default();
    /// settings.tls_config = Some(Arc::new(config));
    /// # Ok(()) }
    /// ```
    pub tls_config: Option<Arc<rustls::ClientConfig>>,
    /// Overrides the URL's `;AUTH=`.
    pub auth: Option<AuthMethod>,
    /// Pipeline when the server allows it (default `true`).
    pub pipelining: bool,
    /// Delete stored messages from the server.
    pub delete: bool,
    /// Log in with USER/PASS, PLAIN or LOGIN on a connection without TLS,
    /// the password readable by anyone on the path (default `false`: such a
    /// login is refused). For a trusted link only (loopback, a test).
    pub insecure_cleartext_login: bool,
    /// The rest of the policy: deleting after an age, size and per-session
    /// limits, refetching, marking seen (see [`FetchOptions`]; its `delete`
    /// adds to [`FetchSettings::delete`]).
    pub policy: FetchOptions,
}

#[cfg(feature = "fetch")]
impl Default for FetchSettings {
    fn default() -> Self {
        FetchSettings {
            starttls: false,
            verification: TlsVerification::default(),
            client_identity: None,
            tls_config: None,
            auth: None,
            pipelining: true,
            delete: false,
            insecure_cleartext_login: false,
            policy: FetchOptions::default(),
        }
    }
}

#[cfg(feature = "fetch")]
impl FetchSettings {
    /// How to connect to the maildrop `url` designates (TLS as its scheme
    /// and [`FetchSettings::starttls`] say).
    ///
    /// ```
    /// use pop3_blocking::fetch::FetchSettings;
    /// use pop3_proto::client::Security;
    /// use pop3_proto::url::PopUrl;
    ///
    /// let mut settings = FetchSettings::default();
    /// settings.starttls = true;
    /// let url = PopUrl::parse("pop://alice@localhost").unwrap();
    /// assert_eq!(settings.connect_options(&url).unwrap().security, Security::StartTls);
    /// let url = PopUrl::parse("pops://alice@localhost").unwrap();
    /// assert!(settings.connect_options(&url).is_err());
    /// ```
    pub fn connect_options(&self, url: &PopUrl) -> Result<ConnectOptions, FetchError> {
        let security = match (url.security, self.starttls) {
            (Security::ImplicitTls, true) => {
                return Err(FetchError::Settings(SettingsError::StartTlsWithImplicitTls));
            }
            (_, true) => Security::StartTls,
            (s, false) => s,
        };
        let mut options = ConnectOptions::new(security);
        options.verification = self.verification.clone();
        options.client_identity = self.client_identity.clone();
        options.tls_config = self.tls_config.clone();
        options.session.pipelining = self.pipelining;
        options.session.insecure_cleartext_login = self.insecure_cleartext_login;
        // A big window: many RETRs in flight keep the link busy between
        // messages (refilled once half is answered: 64 to 128).
        options.session.max_in_flight = 128;
        Ok(options)
    }

    /// The fetch driver's options: [`FetchSettings::policy`] with
    /// [`FetchSettings::delete`], and when deleting, a random
    /// [`FetchOptions::uidless_run_id`] (a server without UIDL can then be
    /// emptied).
    pub fn fetch_options(&self) -> FetchOptions {
        let mut options = self.policy.clone();
        options.delete |= self.delete;
        if options.delete && options.uidless_run_id.is_none() {
            options.uidless_run_id = crate::tls::random_token_from(
                crate::tls::secure_random(self.tls_config.as_ref().map(|c| &**c.crypto_provider())),
                16,
            )
            .ok()
            .map(|token| format!("nouidl-{token}"));
        }
        options
    }

    /// The login for `url`'s user (the method from
    /// [`FetchSettings::auth`], else the URL's), as a task to run on the
    /// session; see [`login_task`] for the choice.
    pub fn login_task(
        &self,
        client: &Client,
        url: &PopUrl,
        password: &str,
    ) -> Result<LoginTask, FetchError> {
        let user = url.user.as_deref().ok_or(FetchError::NoUser)?;
        let method = self.auth.clone().unwrap_or_else(|| url.auth.clone());
        let random =
            crate::tls::secure_random(self.tls_config.as_ref().map(|c| &**c.crypto_provider()));
        let nonce = crate::tls::random_token_from(random, 24)
            .map_err(|_| FetchError::Auth(AuthError::NoRandomness))?;
        login_task(client, method, user, password, &nonce).map_err(FetchError::Auth)
    }
}
