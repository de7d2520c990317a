//! Save-before-delete: fetch new messages into a durable sink, and delete
//! each from the server only once the sink says it is stored.
//!
//! The algorithm is the core's ([`pop3_proto::fetch`], with the argument for
//! why every message ends up stored exactly once and none is lost); this
//! module runs it over blocking sockets: [`fetch_new`] on an open session, or [`run`]
//! from a URL and a password, into a [`MessageSink`] such as the Maildir
//! [`MaildirSink`]. The sink's calls are blocking file I/O and run on the
//! calling thread: they are writes into the page cache, one fsync and
//! rename per message, and one sync of the directory and the journal per
//! run.
//!
//! ```
//! use pop3_blocking::fetch::{self, FetchSettings, MaildirSink, PopUrl};
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
//! # let dir = tempfile::tempdir()?;
//! # let inbox = dir.path().join("inbox");
//! let url = PopUrl::parse(&format!("pops://alice@localhost:{port}"))?;
//! let mut sink = MaildirSink::open(&inbox, &url.account_id())?; // "Mail/inbox"
//! let mut settings = FetchSettings::default();
//! # settings.verification = test_ca;
//! settings.delete = true;
//! let report = fetch::run(&url, "secret", &settings, &mut sink, &mut |_| {})?;
//! println!("{} new messages", report.saved);
//! # assert_eq!(report.saved, 3);
//! # server.shutdown();
//! # serving.join().unwrap()?;
//! # Ok(())
//! # }
//! ```
//!
pub use crate::common::FetchSettings;
#[cfg(feature = "maildir")]
#[cfg_attr(docsrs, doc(cfg(feature = "maildir")))]
pub use crate::sink::{LineEnds, MaildirSink};
pub use pop3_proto::fetch::{
    AuthError, FetchError, FetchOptions, FetchReport, MessageSink, Progress, SettingsError,
};
pub use pop3_proto::url::{AuthMethod, Host, PopUrl, UrlError};

use pop3_proto::fetch::Fetch;

use crate::client::Pop3Client;

/// Fetches, on a logged-in session, every message whose UID the sink does
/// not hold yet, and with [`FetchOptions::delete`] deletes every message the
/// sink holds; ends with QUIT.
///
/// ```
/// use pop3_blocking::client::{ConnectOptions, Pop3Client, Security};
/// use pop3_blocking::fetch::{fetch_new, FetchOptions, MaildirSink};
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
/// # let maildir = dir.path().join("Maildir");
/// let options = ConnectOptions::new(Security::StartTls);
/// # let mut options = options;
/// # options.verification = test_ca;
/// let mut client = Pop3Client::connect("localhost", port, options)?;
/// client.login("alice", "secret")?;
/// let mut sink = MaildirSink::open(&maildir, &format!("alice@localhost:{port}"))?;
/// let report = fetch_new(&mut client, &mut sink, &FetchOptions::default(), &mut |_| {})?;
/// # assert_eq!(report.saved, 3);
/// # drop(client);
/// # server.shutdown();
/// # serving.join().unwrap()?;
/// # Ok(())
/// # }
/// ```
pub fn fetch_new<S: MessageSink>(
    client: &mut Pop3Client,
    sink: &mut S,
    options: &FetchOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<FetchReport, FetchError> {
    let mut fetch = Fetch::new(options.clone());
    loop {
        let clock = client.clock();
        let conn = client.connection();
        if let Some(result) = fetch.drive(&mut || clock.now(), conn, sink, progress) {
            return result;
        }
        client.step();
    }
}

/// Connects as the URL says, logs in with `password`, and runs
/// [`fetch_new`].
///
/// ```
/// use pop3_blocking::fetch::{run, FetchSettings, MaildirSink, PopUrl};
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
/// # store.add_user("bob", "secret");
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
/// # let maildir = dir.path().join("Maildir");
/// let url: PopUrl = format!("pop://bob;AUTH=PLAIN@localhost:{port}").parse()?;
/// let mut settings = FetchSettings::default();
/// settings.starttls = true;
/// # settings.verification = test_ca;
/// let mut sink = MaildirSink::open(&maildir, &url.account_id())?;
/// run(&url, "secret", &settings, &mut sink, &mut |p| eprintln!("{p:?}"))?;
/// # server.shutdown();
/// # serving.join().unwrap()?;
/// # Ok(())
/// # }
/// ```
pub fn run<S: MessageSink>(
    url: &PopUrl,
    password: &str,
    settings: &FetchSettings,
    sink: &mut S,
    progress: &mut dyn FnMut(&Progress),
) -> Result<FetchReport, FetchError> {
    let mut client = connect(url, settings)?;
    authenticate(&mut client, url, settings, password)?;
    fetch_new(&mut client, sink, &settings.fetch_options(), progress)
}

/// Opens the session a URL designates (TLS as the scheme and
/// [`FetchSettings::starttls`] say), without logging in.
pub fn connect(url: &PopUrl, settings: &FetchSettings) -> Result<Pop3Client, FetchError> {
    let options = settings.connect_options(url)?;
    Ok(Pop3Client::connect(
        &url.host.connect_name(),
        url.port,
        options,
    )?)
}

/// Logs in as the URL (or [`FetchSettings::auth`]) says; see
/// [`pop3_proto::fetch::login_task`] for what is chosen when nothing is said.
/// Before that, enables UTF-8 mode when the server offers it
/// ([`pop3_proto::fetch::utf8_task`]): fetched messages are stored as
/// sent, raw UTF-8 headers included.
pub fn authenticate(
    client: &mut Pop3Client,
    url: &PopUrl,
    settings: &FetchSettings,
    password: &str,
) -> Result<(), FetchError> {
    if let Some(utf8) = pop3_proto::fetch::utf8_task(client.connection_ref().machine()) {
        client.run(utf8)?;
    }
    let task = settings.login_task(client.connection_ref().machine(), url, password)?;
    Ok(client.run(task)?)
}

/// How a fetch ended, as a process exit status from `sysexits.h`: what
/// the `fetch` examples exit with, the worst over all accounts
/// ([`ExitKind::worst`]). Variants are ordered from best to worst.
///
/// ```
/// use pop3_blocking::fetch::{ExitKind, FetchReport};
/// assert_eq!(ExitKind::of_report(&FetchReport::default()).code(), 0);
/// assert_eq!(ExitKind::TempFail.worst(ExitKind::Config), ExitKind::Config);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[non_exhaustive]
pub enum ExitKind {
    /// 0: every message was dealt with.
    #[default]
    Ok,
    /// 75 (`EX_TEMPFAIL`): try again later: the network, DNS, a timeout,
    /// `[SYS/TEMP]`, `[IN-USE]`, `[LOGIN-DELAY]`, a lock held by another
    /// process, a delivery that failed temporarily (an MDA's 75, an LMTP
    /// 4xx). The messages not fetched stay on the server.
    TempFail,
    /// 65 (`EX_DATAERR`): messages were left on the server because they
    /// cannot be fetched safely (refused by the server, without a usable
    /// UID, or with a UID shared by several messages), or a destination
    /// refused a message for good (an MDA's other exit statuses, an LMTP
    /// 5xx). Formerly exit status 3.
    DataErr,
    /// 69 (`EX_UNAVAILABLE`): the server cannot be used: no UIDL,
    /// `[SYS/PERM]`, a TLS handshake that failed (an untrusted
    /// certificate, a client certificate missing or refused), a listing
    /// beyond the limit.
    Unavailable,
    /// 76 (`EX_PROTOCOL`): the server broke the protocol.
    Protocol,
    /// 74 (`EX_IOERR`): storing locally failed (disk full, permissions).
    IoErr,
    /// 77 (`EX_NOPERM`): authentication failed: `[AUTH]`, a refused login,
    /// a password command that failed.
    NoPerm,
    /// 78 (`EX_CONFIG`): the configuration file, the command line or the
    /// settings are wrong (also an authentication that cannot be used on
    /// the connection, or no password from any source).
    Config,
    /// 64 (`EX_USAGE`): the command line could not be parsed (an unknown
    /// option, a bad value); nothing was fetched.
    Usage,
}

/// Whether `e` is a TLS alert the server sent about this client's
/// certificate or parameters. TLS 1.3 delivers a refused or missing client
/// certificate on the first read after the handshake, so it arrives as an
/// I/O error; trying again later would fail the same way.
fn refused_by_tls(e: &std::io::Error) -> bool {
    use rustls::AlertDescription as A;
    let Some(rustls::Error::AlertReceived(alert)) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return false;
    };
    crate::tls::is_client_certificate_alert(*alert)
        || matches!(
            alert,
            A::AccessDenied | A::HandshakeFailure | A::InsufficientSecurity | A::ProtocolVersion
        )
}

impl ExitKind {
    /// The exit status.
    pub fn code(self) -> u8 {
        match self {
            ExitKind::Ok => 0,
            ExitKind::TempFail => 75,
            ExitKind::DataErr => 65,
            ExitKind::Unavailable => 69,
            ExitKind::Protocol => 76,
            ExitKind::IoErr => 74,
            ExitKind::NoPerm => 77,
            ExitKind::Config => 78,
            ExitKind::Usage => 64,
        }
    }

    /// The worse of two.
    #[must_use]
    pub fn worst(self, other: ExitKind) -> ExitKind {
        self.max(other)
    }

    /// A finished run: [`ExitKind::DataErr`] when it was not
    /// [complete](FetchReport::is_complete), else [`ExitKind::Ok`].
    pub fn of_report(report: &FetchReport) -> ExitKind {
        if report.is_complete() {
            ExitKind::Ok
        } else {
            ExitKind::DataErr
        }
    }

    /// A failed run.
    ///
    /// ```
    /// use pop3_blocking::fetch::{ExitKind, FetchError};
    /// use pop3_proto::client::{Error, TimeoutKind};
    /// let e = FetchError::Pop3(Error::Timeout(TimeoutKind::Connect));
    /// assert_eq!(ExitKind::of_error(&e), ExitKind::TempFail);
    /// assert_eq!(ExitKind::of_error(&FetchError::NoUser), ExitKind::Config);
    /// ```
    pub fn of_error(error: &FetchError) -> ExitKind {
        use pop3_proto::client::Error;
        use pop3_proto::response::CodeKind;
        match error {
            FetchError::Pop3(Error::Io(e)) if refused_by_tls(e) => ExitKind::Unavailable,
            FetchError::Pop3(e) if e.is_transient() => ExitKind::TempFail,
            FetchError::Pop3(Error::Server(e)) => match e.kind() {
                Some(CodeKind::SysPerm) => ExitKind::Unavailable,
                // [AUTH], or a plain -ERR: the login is where a server
                // refuses a session.
                _ => ExitKind::NoPerm,
            },
            FetchError::Pop3(Error::Sasl(_)) => ExitKind::NoPerm,
            FetchError::Pop3(Error::Tls(_) | Error::ListingTooLong { .. }) => ExitKind::Unavailable,
            FetchError::Pop3(Error::Protocol(_) | Error::Malformed { .. }) => ExitKind::Protocol,
            FetchError::Pop3(Error::TlsConfig(_) | Error::InvalidHost(_) | Error::Command(_)) => {
                ExitKind::Config
            }
            FetchError::Pop3(_) => ExitKind::TempFail,
            FetchError::Store(e) => ExitKind::of_store(e),
            FetchError::NoUidl(_) => ExitKind::Unavailable,
            FetchError::NoUser | FetchError::Auth(_) | FetchError::Settings(_) => ExitKind::Config,
            _ => ExitKind::IoErr,
        }
    }

    /// A sink's failure: a delivery's own verdict (feature `deliver`), a
    /// lock another fetch holds (temporary), else local I/O.
    pub fn of_store(error: &std::io::Error) -> ExitKind {
        #[cfg(feature = "deliver")]
        if let Some(d) = crate::deliver::DeliveryError::of(error) {
            return if d.is_temporary() {
                ExitKind::TempFail
            } else {
                ExitKind::DataErr
            };
        }
        if error.kind() == std::io::ErrorKind::WouldBlock {
            ExitKind::TempFail
        } else {
            ExitKind::IoErr
        }
    }
}
