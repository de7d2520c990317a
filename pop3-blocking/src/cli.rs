//! The command lines of the `pop3d` and `fetch` examples, shared by every
//! runtime's examples (feature `cli`): arguments (clap), the demo maildrop
//! and its certificate, the banner, logging, and fetch progress (a bar on a
//! terminal, a one-line summary otherwise). Each example is then its
//! runtime's accept loop or fetch call and nothing else.
//!
//! Not part of the API: hidden from the documentation, it holds clap's
//! types and follows the examples, so it may change in any release.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use pop3_proto::fetch::{FetchError, FetchReport, Progress};
use pop3_proto::scram::DeploymentSecret;
use pop3_proto::server::{ServerConfig, ServerOptions};
use pop3_proto::store::MemoryStore;
use pop3_proto::url::{AuthMethod, PopUrl};

use crate::common::FetchSettings;
use crate::config::{
    Account, AccountOptions, Config, ConfigError, DaemonOptions, default_config_path,
};
use crate::deliver::Delivery;
use crate::fetch::ExitKind;
use crate::maildir::MaildirStore;
use crate::metrics::Metrics;
use crate::passwd::{PasswdFile, SharedPasswd};

mod daemon;
mod host;
mod server_file;
use pop3_proto::__tracing as tracing;
use server_file::ServerFile;
pub use server_file::{IpNetwork, Origin};

#[cfg(feature = "postgres")]
mod deliver;
mod trace;
#[cfg(feature = "postgres")]
pub use deliver::{DeliverArgs, EX_DATAERR, EX_NOUSER, EX_OK, EX_SOFTWARE, EX_TEMPFAIL, EX_USAGE};

/// The embedded demo maildrop's messages.
pub const DEMO_MESSAGES: [&str; 5] = [
    include_str!("cli/demo/1-welcome.eml"),
    include_str!("cli/demo/2-dots.eml"),
    include_str!("cli/demo/3-utf8.eml"),
    include_str!("cli/demo/4-attachment.eml"),
    include_str!("cli/demo/5-html.eml"),
];

/// A boxed error for the examples' `main`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An error and its causes on one line, `what failed: why: why`: each
/// error's message says only what failed at its own layer, its
/// [`source`](std::error::Error::source) why.
///
/// ```
/// use pop3_blocking::cli::chain;
/// use pop3_proto::client::Error;
/// let e = Error::io(std::io::ErrorKind::ConnectionRefused.into());
/// assert_eq!(chain(&e), "the connection failed: connection refused");
/// ```
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut line = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        line.push_str(": ");
        line.push_str(&c.to_string());
        cause = c.source();
    }
    line
}

/// Logs to stderr, `RUST_LOG` filtering (default `info`).
///
/// The lines an operator watches, at info:
/// - each failed login: `auth failed: rip=<address> user="<name as sent>"
///   mech=<mechanism>` (`contrib/fail2ban/pop3d.conf` is the fail2ban filter
///   for it);
/// - each session's end, one line whatever the runtime:
///   `session: peer=192.0.2.7:51234 user="alice" messages=3
///   retrieved=2/2048 deleted=1/1024 in=120 out=2300 bad=0 secs=12.345
///   end=quit` — the user as logged in (`user=-` before login, the name
///   escaped as a Rust string), the messages in the maildrop at login,
///   messages sent with RETR/TOP and their octets, messages deleted in
///   UPDATE and their octets, octets read and written, bad commands, the
///   session's length in seconds, and why it ended (`quit`, `peer-closed`,
///   `autologout`, `login-timeout`, `too-many-bad-commands`,
///   `too-many-login-attempts`, `store-failure`, `store-timeout`, or
///   `open` for a connection the shutdown's grace cut short);
/// - each connection refused by a cap: `connection refused: <why>`.
pub fn init_logging() {
    init_logging_to(std::io::stderr);
}

/// [`init_logging`] to another writer (a file, in tests).
pub fn init_logging_to<W>(writer: W)
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_target(false)
        .with_writer(writer)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// `pop3d`: a POP3 server. With no arguments it serves an embedded demo
/// maildrop (user `demo`, password `demo`) on 127.0.0.1:1110, offering STLS
/// with a certificate made at start.
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
pub struct ServerArgs {
    /// A TOML configuration file (the README's configuration reference);
    /// the flags given win over its keys.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Plain POP3 listener (STLS offered); repeatable. Default 127.0.0.1:1110.
    #[arg(long, value_name = "ADDR")]
    pub listen: Vec<SocketAddr>,
    /// Implicit TLS (POP3S) listener; repeatable.
    #[arg(long, value_name = "ADDR")]
    pub tls_listen: Vec<SocketAddr>,
    /// Serve one Maildir per user under DIR (`DIR/<user>/{cur,new,tmp}`);
    /// needs `--users`.
    #[arg(long, value_name = "DIR")]
    pub maildir_root: Option<PathBuf>,
    /// The users, in a Dovecot-style passwd-file (`user:{SCHEME}secret`).
    #[arg(long, value_name = "FILE")]
    pub users: Option<PathBuf>,
    /// The file of the deployment's secret, from which SCRAM salts (and
    /// unknown users' decoy salts) are derived: any secret text of at
    /// least 32 octets. Created with 32 random octets (in hex, mode 0600)
    /// if missing; keep it, or salts change. Default: `.pop3d-secret` in
    /// the Maildir root.
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
    /// Serve the maildrops of a PostgreSQL database (connection string
    /// `host=... user=... dbname=...`, several hosts with
    /// `target_session_attrs=read-write`) instead of Maildirs: any number
    /// of servers can serve one database. Give every server the same
    /// `--secret-file`.
    #[cfg(feature = "postgres")]
    #[arg(long, value_name = "CONNINFO", conflicts_with_all = ["maildir_root", "users"])]
    pub postgres: Option<String>,
    /// The certificate chain (PEM); without it, a demo CA and certificate
    /// are made at start. Repeatable, each with its `--key`: the
    /// certificate is chosen by the name the client asks for (SNI), the
    /// first when none matches.
    #[arg(long, value_name = "PEM", requires = "key")]
    pub cert: Vec<PathBuf>,
    /// The private key (PEM) of the `--cert` of the same rank.
    #[arg(long, value_name = "PEM", requires = "cert")]
    pub key: Vec<PathBuf>,
    /// The oldest TLS version accepted: `1.2` (default) or `1.3`.
    #[arg(long, value_name = "VERSION")]
    pub tls_min_version: Option<crate::tls::MinTlsVersion>,
    /// Accept the PROXY protocol (v1 or v2) from a load balancer in this
    /// network (CIDR; repeatable): the client address it carries is the
    /// one capped and logged; connections from elsewhere are closed. Every
    /// listener expects the header, unless `--proxy-listen` or
    /// `--proxy-tls-listen` name listeners of their own for it.
    #[arg(long, value_name = "CIDR")]
    pub proxy_protocol_trusted: Vec<pop3_proto::proxy::Network>,
    /// A plain POP3 listener whose connections start with a PROXY header
    /// (repeatable; needs `--proxy-protocol-trusted`): then only these and
    /// the `--proxy-tls-listen` ones expect it.
    #[arg(long, value_name = "ADDR")]
    pub proxy_listen: Vec<SocketAddr>,
    /// An implicit TLS listener whose connections start with a PROXY
    /// header (repeatable), as `--proxy-listen`.
    #[arg(long, value_name = "ADDR")]
    pub proxy_tls_listen: Vec<SocketAddr>,
    /// Serve the server's metrics (Prometheus text format) at
    /// `http://ADDR/metrics`; give a loopback address (`127.0.0.1:9110`)
    /// or one only the scraper can reach: the responder has no access
    /// control.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// Allow USER/PASS and plaintext SASL before TLS (always on for the demo).
    #[arg(long)]
    pub allow_plaintext_auth: bool,
    /// Advertise SCRAM-SHA-256-PLUS (the TLS channel binding) in CAPA.
    /// Without it the mechanism is still accepted from clients that ask for
    /// it by name; advertised, clients that pick the strongest mechanism
    /// offered but cannot bind (GNU SASL: mutt, neomutt) fail to log in.
    #[arg(long)]
    pub advertise_channel_binding: bool,
    /// Sessions served at once (default: sized for this host's memory and
    /// descriptor limit, at most 8,192).
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Sessions served at once from one client address (default 32).
    #[arg(long, value_name = "N")]
    pub max_connections_per_address: Option<usize>,
    /// The least time between two logins of a user, enforced (the time of
    /// the last login is kept in each Maildir, or in the database) and
    /// advertised as LOGIN-DELAY.
    #[arg(long, value_name = "SECONDS")]
    pub login_delay: Option<u32>,
    /// Remove messages retrieved (RETR) this many days ago or more, at the
    /// next QUIT of their maildrop, and advertise EXPIRE DAYS (default:
    /// nothing is removed but what clients delete; EXPIRE NEVER). When
    /// each message was first retrieved is kept in each Maildir, or in the
    /// database. 0 removes each message at the QUIT of the session that
    /// retrieved it.
    #[arg(long, value_name = "DAYS")]
    pub expire: Option<u32>,
    /// The `pop3_uidl_format` a previous Dovecot served this Maildir root
    /// with: messages it listed in its `dovecot-uidlist` keep their UIDLs
    /// (Courier's `courierpop3dsizelist` is read too). `none`: serve only
    /// this server's own UIDLs. Default `%08Xu%08Xv`.
    #[arg(long, value_name = "FORMAT")]
    pub previous_uidl_format: Option<String>,
    /// The account to serve as: started as root, the server binds its
    /// listeners and reads its files, then becomes this user (and its
    /// primary group, or `--group`) for good. Files reloaded later
    /// (SIGHUP) must be readable by it.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// The group to serve as with `--user` (default: the user's primary
    /// group); the only group kept.
    #[arg(long, value_name = "NAME")]
    pub group: Option<String>,
    /// Serve as root when started as root without `--user` (refused
    /// otherwise, except for the demo maildrop).
    #[arg(long)]
    pub allow_root: bool,
}

/// Which store the server serves (the PostgreSQL one only with the feature
/// `postgres`, hence a fallback arm in the examples' matches).
#[derive(Debug)]
#[non_exhaustive]
// Made once per process: the size of the larger variant costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum ServerStore {
    /// The embedded demo maildrop.
    Demo(MemoryStore),
    /// Maildirs with a passwd-file (blocking: run it off the reactor).
    Maildir(MaildirStore),
    /// A PostgreSQL database (blocking: run it off the reactor).
    #[cfg(feature = "postgres")]
    Postgres(crate::postgres::PgStore),
}

/// A certificate chain and its private key (PEM files), one of
/// `[[tls.certificate]]` (or `--cert`/`--key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificatePair {
    /// The chain.
    pub cert: PathBuf,
    /// The key.
    pub key: PathBuf,
    /// Where it was configured.
    pub origin: Origin,
}

/// `[proxy_protocol]`: accept the PROXY protocol header from these
/// networks.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProxyProtocolSettings {
    /// The proxies' networks.
    pub trusted: Vec<IpNetwork>,
    /// Whether every listener expects the header (no listeners of its
    /// own are configured); otherwise only its own do.
    pub every_listener: bool,
}

/// `[metrics]`: where metrics are served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsSettings {
    /// The listener's address (bound at start, before root is dropped).
    pub listen: SocketAddr,
}

/// A listener bound at start: its socket, whether it is implicit TLS, and
/// its PROXY protocol policy.
#[derive(Debug)]
#[non_exhaustive]
pub struct BoundListener {
    /// The socket (blocking; an async runtime takes it over).
    pub listener: std::net::TcpListener,
    /// Implicit TLS (POP3S) rather than plain with STLS.
    pub tls: bool,
    /// Its connections start with a PROXY protocol header from these
    /// sources (hand it to the server's `serve_proxied`); `None`: they come
    /// straight from clients.
    pub proxy: Option<pop3_proto::proxy::ProxyPolicy>,
}

/// Everything a `pop3d` example needs besides its runtime.
#[derive(Debug)]
pub struct ServerSetup {
    /// Every listener, bound (taken by [`take_listeners`](Self::take_listeners)).
    pub listeners: Vec<BoundListener>,
    /// The protocol configuration.
    pub config: ServerConfig,
    /// The TLS configuration (STLS and implicit TLS); its certificate is
    /// replaced on a reload.
    pub tls: Arc<rustls::ServerConfig>,
    /// The configured certificates (the first one is served; empty for the
    /// demo's).
    pub certificates: Vec<CertificatePair>,
    /// The connection settings (caps, timeouts).
    pub options: ServerOptions,
    /// The connection caps and the sessions' time limits, which a reload
    /// changes (hand it to the server's `with_gate`).
    pub gate: crate::common::Gate,
    /// The PROXY protocol's trusted networks, when configured.
    pub proxy_protocol: Option<ProxyProtocolSettings>,
    /// The metrics listener, when configured.
    pub metrics: Option<MetricsSettings>,
    /// The demo CA's certificate file, removed on drop.
    pub demo_ca: Option<PathBuf>,
    /// The local addresses of the listeners that expect a PROXY header.
    proxied: Vec<SocketAddr>,
    /// Whether the store is the embedded demo maildrop.
    pub demo: bool,
    /// Whether the listeners are the service manager's (socket
    /// activation) rather than the configured addresses.
    pub socket_activated: bool,
    metrics_listener: std::sync::Mutex<Option<std::net::TcpListener>>,
    reload: Arc<Reloader>,
}

impl Drop for ServerSetup {
    fn drop(&mut self) {
        if let Some(ca) = &self.demo_ca {
            let _ = std::fs::remove_file(ca);
        }
    }
}

/// A configuration error found at start (a missing or unreadable Maildir
/// root, a bad option value, a listener that cannot bind): the examples
/// exit with status 78 (`EX_CONFIG`).
#[derive(Debug)]
pub struct StartupError(pub String);

impl std::fmt::Display for StartupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartupError {}

impl From<ConfigError> for StartupError {
    fn from(e: ConfigError) -> Self {
        StartupError(e.to_string())
    }
}

/// Parses the process's command line with `command` into `T`, as clap's
/// `Parser::parse` does, but with the exit status sysexits gives a usage
/// error (an unknown option, a bad value): 64 (`EX_USAGE`), where clap
/// exits 2. `--help` and `--version` print and exit 0.
fn parse_command_line<T: clap::FromArgMatches>(mut command: clap::Command) -> T {
    let parsed = command
        .try_get_matches_from_mut(std::env::args_os())
        .and_then(|matches| T::from_arg_matches(&matches).map_err(|e| e.format(&mut command)));
    parsed.unwrap_or_else(|e| {
        // Nothing useful is left to do if the terminal is gone.
        let _ = e.print();
        let status = if e.use_stderr() {
            ExitKind::Usage.code()
        } else {
            ExitKind::Ok.code()
        };
        std::process::exit(i32::from(status))
    })
}

/// The exit status for an error from [`ServerArgs::setup`]: 78
/// (`EX_CONFIG`) for a [`StartupError`], 1 otherwise.
pub fn exit_status(e: &BoxError) -> std::process::ExitCode {
    if e.is::<StartupError>() {
        std::process::ExitCode::from(78)
    } else {
        std::process::ExitCode::FAILURE
    }
}

/// A value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sourced<T> {
    value: T,
    origin: Origin,
}

fn flag<T>(value: T, flag: &'static str) -> Sourced<T> {
    Sourced {
        value,
        origin: Origin::Flag(flag),
    }
}

fn startup(origin: &Origin, what: impl std::fmt::Display, why: impl std::fmt::Display) -> BoxError {
    StartupError(format!("{origin} {what}: {why}")).into()
}

/// Where the file's value at `span` is.
fn origin_in<T>(file: Option<&ServerFile>, key: &'static str, span: &toml::Spanned<T>) -> Origin {
    file.map_or(Origin::Flag(key), |f| f.origin(key, span))
}

/// The flags over the file: what the server runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Settings {
    listen: Vec<Sourced<SocketAddr>>,
    tls_listen: Vec<Sourced<SocketAddr>>,
    maildir_root: Option<Sourced<PathBuf>>,
    users: Option<Sourced<PathBuf>>,
    secret_file: Option<Sourced<PathBuf>>,
    postgres: Option<Sourced<String>>,
    certificates: Vec<CertificatePair>,
    allow_plaintext_auth: bool,
    advertise_channel_binding: bool,
    login_delay: Option<u32>,
    expire: Option<u32>,
    previous_uidl_format: Sourced<String>,
    limits: server_file::LimitKeys,
    proxy_protocol: Option<ProxyProtocolSettings>,
    proxy_listen: Vec<Sourced<SocketAddr>>,
    proxy_tls_listen: Vec<Sourced<SocketAddr>>,
    metrics: Option<Sourced<SocketAddr>>,
    user: Option<Sourced<String>>,
    group: Option<Sourced<String>>,
    allow_root: bool,
}

impl Settings {
    /// Reads the file (if any) and lays the flags over it.
    fn resolve(args: &ServerArgs) -> Result<Settings, BoxError> {
        let file = match &args.config {
            Some(path) => Some(ServerFile::load(path).map_err(StartupError::from)?),
            None => None,
        };
        let no_keys = server_file::FileKeys::default();
        let keys = file.as_ref().map_or(&no_keys, |f| &f.keys);
        let file = file.as_ref();
        let addrs = |given: &[SocketAddr],
                     name: &'static str,
                     key: &'static str,
                     from: &Option<toml::Spanned<Vec<SocketAddr>>>| {
            if !given.is_empty() {
                return given.iter().map(|a| flag(*a, name)).collect::<Vec<_>>();
            }
            from.as_ref().map_or_else(Vec::new, |span| {
                let origin = origin_in(file, key, span);
                span.get_ref()
                    .iter()
                    .map(|a| Sourced {
                        value: *a,
                        origin: origin.clone(),
                    })
                    .collect()
            })
        };
        let listen = addrs(&args.listen, "--listen", "listen", &keys.listen);
        let tls_listen = addrs(
            &args.tls_listen,
            "--tls-listen",
            "tls_listen",
            &keys.tls_listen,
        );
        let path = |given: &Option<PathBuf>,
                    name: &'static str,
                    key: &'static str,
                    from: &Option<toml::Spanned<PathBuf>>| {
            match (given, from) {
                (Some(p), _) => Some(flag(p.clone(), name)),
                (None, Some(span)) => Some(Sourced {
                    value: span.get_ref().clone(),
                    origin: origin_in(file, key, span),
                }),
                (None, None) => None,
            }
        };
        let maildir_root = path(
            &args.maildir_root,
            "--maildir-root",
            "maildir_root",
            &keys.maildir_root,
        );
        let users = path(&args.users, "--users", "users", &keys.users);
        let secret_file = path(
            &args.secret_file,
            "--secret-file",
            "secret_file",
            &keys.secret_file,
        );
        #[cfg(feature = "postgres")]
        let postgres_flag = args.postgres.clone();
        #[cfg(not(feature = "postgres"))]
        let postgres_flag: Option<String> = None;
        let postgres = match (postgres_flag, &keys.postgres) {
            (Some(c), _) => Some(flag(c, "--postgres")),
            (None, Some(span)) => Some(Sourced {
                value: span.get_ref().clone(),
                origin: origin_in(file, "postgres", span),
            }),
            (None, None) => None,
        };
        if let Some(pg) = &postgres {
            if !cfg!(feature = "postgres") {
                return Err(startup(
                    &pg.origin,
                    "",
                    "this build has no PostgreSQL store",
                ));
            }
            if maildir_root.is_some() || users.is_some() {
                return Err(startup(
                    &pg.origin,
                    "",
                    "goes with neither maildir_root nor users",
                ));
            }
        }
        match (&maildir_root, &users) {
            (Some(root), None) => {
                return Err(startup(
                    &root.origin,
                    root.value.display(),
                    "needs users (--users) too",
                ));
            }
            (None, Some(users)) => {
                return Err(startup(
                    &users.origin,
                    users.value.display(),
                    "needs maildir_root (--maildir-root) too",
                ));
            }
            _ => {}
        }
        if args.cert.len() != args.key.len() {
            return Err(StartupError("every --cert needs its --key".into()).into());
        }
        let certificates = match &args.cert[..] {
            [_, ..] => args
                .cert
                .iter()
                .zip(&args.key)
                .map(|(cert, key)| CertificatePair {
                    cert: cert.clone(),
                    key: key.clone(),
                    origin: Origin::Flag("--cert"),
                })
                .collect(),
            [] => keys
                .tls
                .as_ref()
                .map(|t| {
                    t.certificate
                        .iter()
                        .map(|c| CertificatePair {
                            cert: c.cert.get_ref().clone(),
                            key: c.key.get_ref().clone(),
                            origin: origin_in(file, "tls.certificate.cert", &c.cert),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        };
        let previous_uidl_format = match (&args.previous_uidl_format, &keys.previous_uidl_format) {
            (Some(f), _) => flag(f.clone(), "--previous-uidl-format"),
            (None, Some(span)) => Sourced {
                value: span.get_ref().clone(),
                origin: origin_in(file, "previous_uidl_format", span),
            },
            (None, None) => flag("%08Xu%08Xv".to_owned(), "--previous-uidl-format"),
        };
        let mut limits = keys.limits.clone().unwrap_or_default();
        if args.max_connections.is_some() {
            limits.max_connections = args.max_connections;
        }
        if args.max_connections_per_address.is_some() {
            limits.max_connections_per_address = args.max_connections_per_address;
        }
        let none = None;
        let (file_proxy_listen, file_proxy_tls_listen) = keys
            .proxy_protocol
            .as_ref()
            .map_or((&none, &none), |p| (&p.listen, &p.tls_listen));
        let proxy_listen = addrs(
            &args.proxy_listen,
            "--proxy-listen",
            "proxy_protocol.listen",
            file_proxy_listen,
        );
        let proxy_tls_listen = addrs(
            &args.proxy_tls_listen,
            "--proxy-tls-listen",
            "proxy_protocol.tls_listen",
            file_proxy_tls_listen,
        );
        let every_listener = proxy_listen.is_empty() && proxy_tls_listen.is_empty();
        let proxy_protocol = match &keys.proxy_protocol {
            // The flags replace the file's networks.
            _ if !args.proxy_protocol_trusted.is_empty() => Some(ProxyProtocolSettings {
                trusted: args
                    .proxy_protocol_trusted
                    .iter()
                    .map(|n| IpNetwork::from_network(*n))
                    .collect(),
                every_listener,
            }),
            None => None,
            Some(p) => {
                let mut trusted = Vec::new();
                for net in &p.trusted {
                    let origin = origin_in(file, "proxy_protocol.trusted", net);
                    trusted.push(
                        net.get_ref()
                            .parse::<IpNetwork>()
                            .map_err(|e| StartupError(format!("{origin}: {e}")))?,
                    );
                }
                Some(ProxyProtocolSettings {
                    trusted,
                    every_listener,
                })
            }
        };
        if let (None, Some(first)) = (
            &proxy_protocol,
            proxy_listen.first().or(proxy_tls_listen.first()),
        ) {
            return Err(startup(
                &first.origin,
                first.value,
                "needs the proxies' networks (proxy_protocol.trusted, --proxy-protocol-trusted)",
            ));
        }
        let metrics = match args.metrics_listen {
            Some(addr) => Some(flag(addr, "--metrics-listen")),
            None => keys.metrics.as_ref().map(|m| Sourced {
                value: *m.listen.get_ref(),
                origin: origin_in(file, "metrics.listen", &m.listen),
            }),
        };
        let name = |given: &Option<String>,
                    name: &'static str,
                    key: &'static str,
                    from: &Option<toml::Spanned<String>>| {
            match (given, from) {
                (Some(v), _) => Some(flag(v.clone(), name)),
                (None, Some(span)) => Some(Sourced {
                    value: span.get_ref().clone(),
                    origin: origin_in(file, key, span),
                }),
                (None, None) => None,
            }
        };
        let user = name(&args.user, "--user", "user", &keys.user);
        let group = name(&args.group, "--group", "group", &keys.group);
        Ok(Settings {
            listen,
            tls_listen,
            maildir_root,
            users,
            secret_file,
            postgres,
            certificates,
            allow_plaintext_auth: args.allow_plaintext_auth
                || keys.allow_plaintext_auth == Some(true),
            advertise_channel_binding: args.advertise_channel_binding
                || keys.advertise_channel_binding == Some(true),
            login_delay: args.login_delay.or(keys.login_delay),
            expire: args.expire.or(keys.expire),
            previous_uidl_format,
            limits,
            proxy_protocol,
            proxy_listen,
            proxy_tls_listen,
            metrics,
            user,
            group,
            allow_root: args.allow_root || keys.allow_root == Some(true),
        })
    }

    /// The connection settings.
    fn options(&self) -> ServerOptions {
        let secs = |s: Option<u64>, default: std::time::Duration| {
            s.map_or(default, std::time::Duration::from_secs)
        };
        let mut options = crate::common::host_server_options();
        let l = &self.limits;
        if let Some(n) = l.max_connections {
            options.max_connections = n.max(1);
        }
        if let Some(n) = l.max_connections_per_address {
            options.max_connections_per_address = n.max(1);
        }
        options.write_stall_timeout = secs(l.write_stall_timeout, options.write_stall_timeout);
        options.tls_handshake_timeout =
            secs(l.tls_handshake_timeout, options.tls_handshake_timeout);
        options.shutdown_grace = secs(l.shutdown_grace, options.shutdown_grace);
        options.store_timeout = secs(l.store_timeout, options.store_timeout);
        if let Some(p) = &self.proxy_protocol {
            let trusted = p.trusted.iter().map(IpNetwork::to_network).collect();
            options.proxy_protocol = Some(pop3_proto::proxy::ProxyPolicy::new(trusted));
        }
        options
    }

    /// The sessions' time limits, every one set (a reload puts them in
    /// force as a whole).
    fn session_limits(&self) -> crate::common::SessionLimits {
        let options = self.options();
        let secs = |s: Option<u64>, default: std::time::Duration| {
            Some(s.map_or(default, std::time::Duration::from_secs))
        };
        let config = ServerConfig::default();
        let mut limits = crate::common::SessionLimits::default();
        limits.login_timeout = secs(
            self.limits.login_timeout,
            pop3_proto::server::DEFAULT_LOGIN_TIMEOUT,
        );
        // Clamped as the configuration clamps it.
        limits.autologout = secs(self.limits.autologout, config.get_autologout())
            .map(|t| t.max(pop3_proto::server::MIN_AUTOLOGOUT));
        limits.write_stall_timeout = Some(options.write_stall_timeout);
        limits.tls_handshake_timeout = Some(options.tls_handshake_timeout);
        limits.shutdown_grace = Some(options.shutdown_grace);
        limits.store_timeout = Some(options.store_timeout);
        limits
    }

    /// The passwd-file, checked: every entry usable (locked ones, warned
    /// about, excepted), at least one user.
    fn load_users(&self, secret: &DeploymentSecret) -> Result<Option<PasswdFile>, BoxError> {
        let Some(users) = &self.users else {
            return Ok(None);
        };
        let path = users.value.display();
        let file =
            PasswdFile::load(&users.value).map_err(|e| startup(&users.origin, &path, chain(&e)))?;
        if let Some((line, user)) = file.unusable().next() {
            return Err(startup(
                &users.origin,
                &path,
                format!(
                    "line {line}: user {user:?} can never log in: its password has no {{SCHEME}} this server can check (a bare password is read as crypt(3); write {{PLAIN}}secret, or a hash)"
                ),
            ));
        }
        for (line, user) in file.disabled() {
            tracing::warn!(
                "{path}:{line}: user {user:?} is locked (empty or !/* password): they cannot log in"
            );
        }
        if file.len() == file.disabled().count() {
            return Err(startup(
                &users.origin,
                &path,
                "no user can log in (no entries, or all locked)",
            ));
        }
        Ok(Some(file.with_deployment_secret(secret.clone())))
    }

    /// The certificates, loaded (none: the demo's is made instead).
    fn load_certificates(&self) -> Result<Vec<Arc<rustls::sign::CertifiedKey>>, BoxError> {
        self.certificates
            .iter()
            .map(|pair| Self::load_certificate(pair))
            .collect()
    }

    /// One certificate and its key, loaded.
    fn load_certificate(
        pair: &CertificatePair,
    ) -> Result<Arc<rustls::sign::CertifiedKey>, BoxError> {
        let chain = crate::tls::certificates_from_pem(&pair.cert, "certificate")
            .map_err(|e| startup(&pair.origin, pair.cert.display(), chain(&e)))?;
        use rustls::pki_types::pem::PemObject as _;
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&pair.key)
            .map_err(|e| startup(&pair.origin, pair.key.display(), e))?;
        let provider = crate::tls::default_provider()
            .ok_or_else(|| StartupError("no TLS crypto provider".into()))?;
        let certified = rustls::sign::CertifiedKey::from_der(chain, key, &provider)
            .map_err(|e| startup(&pair.origin, pair.cert.display(), e))?;
        Ok(Arc::new(certified))
    }
}

/// The served certificates, replaceable while serving (a reload): the TLS
/// configuration asks them for each handshake, choosing by the name the
/// client asks for (SNI), else the first.
#[derive(Debug)]
struct CertSlot(std::sync::RwLock<Vec<Arc<rustls::sign::CertifiedKey>>>);

impl rustls::server::ResolvesServerCert for CertSlot {
    fn resolve(
        &self,
        hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        let keys = match self.0.read() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        crate::tls::pick_by_name(&keys, hello.server_name())
    }
}

impl CertSlot {
    fn replace(&self, key: Vec<Arc<rustls::sign::CertifiedKey>>) {
        match self.0.write() {
            Ok(mut c) => *c = key,
            Err(poisoned) => *poisoned.into_inner() = key,
        }
    }
}

/// What a reload (SIGHUP) re-reads and replaces.
#[derive(Debug)]
struct Reloader {
    args: ServerArgs,
    settings: std::sync::Mutex<Settings>,
    secret: DeploymentSecret,
    certificate: Option<Arc<CertSlot>>,
    users: Option<SharedPasswd>,
    /// The service user root was dropped for.
    serving_as: Option<String>,
    /// The connection caps and session limits in force.
    gate: crate::common::Gate,
}

impl Reloader {
    /// After root was dropped, what a reload refused for want of permission
    /// means.
    fn permission_hint(&self, e: &(dyn std::error::Error + 'static)) -> String {
        match &self.serving_as {
            Some(user) if chain(e).contains("(os error 13)") => format!(
                " (the server now runs as user {user}: the configuration file, certificates, keys and users file must be readable by it)"
            ),
            _ => String::new(),
        }
    }

    /// Re-reads the configuration file, the certificate and the users;
    /// puts them in force only if all of them are good.
    fn reload(&self) -> Result<(), BoxError> {
        let new = Settings::resolve(&self.args)?;
        let certificate = match &self.certificate {
            Some(_) => Some(new.load_certificates()?),
            None => None,
        };
        let users = match &self.users {
            Some(_) => new.load_users(&self.secret)?,
            None => None,
        };
        let mut old = match self.settings.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        // Compared by value: a key that only moved to another line has not
        // changed.
        fn values<T: Clone>(v: &[Sourced<T>]) -> Vec<T> {
            v.iter().map(|s| s.value.clone()).collect()
        }
        fn value<T: Clone>(v: &Option<Sourced<T>>) -> Option<T> {
            v.as_ref().map(|s| s.value.clone())
        }
        let (l, o) = (&new.limits, &old.limits);
        let restart_only: [(&str, bool); 16] = [
            ("listen", values(&new.listen) != values(&old.listen)),
            (
                "tls_listen",
                values(&new.tls_listen) != values(&old.tls_listen),
            ),
            (
                "maildir_root",
                value(&new.maildir_root) != value(&old.maildir_root),
            ),
            ("postgres", value(&new.postgres) != value(&old.postgres)),
            (
                "secret_file",
                value(&new.secret_file) != value(&old.secret_file),
            ),
            (
                "allow_plaintext_auth",
                new.allow_plaintext_auth != old.allow_plaintext_auth,
            ),
            (
                "advertise_channel_binding",
                new.advertise_channel_binding != old.advertise_channel_binding,
            ),
            (
                "previous_uidl_format",
                new.previous_uidl_format.value != old.previous_uidl_format.value,
            ),
            ("login_delay", new.login_delay != old.login_delay),
            ("expire", new.expire != old.expire),
            ("proxy_protocol", new.proxy_protocol != old.proxy_protocol),
            (
                "proxy_protocol.listen",
                values(&new.proxy_listen) != values(&old.proxy_listen),
            ),
            (
                "proxy_protocol.tls_listen",
                values(&new.proxy_tls_listen) != values(&old.proxy_tls_listen),
            ),
            ("metrics", value(&new.metrics) != value(&old.metrics)),
            ("user", value(&new.user) != value(&old.user)),
            ("group", value(&new.group) != value(&old.group)),
        ];
        for (key, changed) in restart_only {
            if changed {
                tracing::warn!("reload: the change to {key} takes effect at the next start");
            }
        }
        if self.certificate.is_none() && !new.certificates.is_empty() {
            tracing::warn!(
                "reload: a certificate where the made-up one was served takes effect at the next start"
            );
        }
        if let (Some(slot), Some(c)) = (&self.certificate, certificate) {
            slot.replace(c);
        }
        if (l.max_connections, l.max_connections_per_address)
            != (o.max_connections, o.max_connections_per_address)
        {
            // Open sessions go on; over a lowered cap, new connections are
            // refused until enough of them have ended.
            let options = new.options();
            self.gate.set_caps(&options);
            tracing::info!(
                "reload: limits.max_connections = {}, limits.max_connections_per_address = {} from now on; open sessions go on",
                options.max_connections,
                options.max_connections_per_address
            );
        }
        let limits = new.session_limits();
        let before = old.session_limits();
        if limits != before {
            // Sessions in progress keep the limits they started with.
            self.gate.set_limits(limits);
            let changed = [
                ("login_timeout", limits.login_timeout, before.login_timeout),
                ("autologout", limits.autologout, before.autologout),
                (
                    "write_stall_timeout",
                    limits.write_stall_timeout,
                    before.write_stall_timeout,
                ),
                (
                    "tls_handshake_timeout",
                    limits.tls_handshake_timeout,
                    before.tls_handshake_timeout,
                ),
                (
                    "shutdown_grace",
                    limits.shutdown_grace,
                    before.shutdown_grace,
                ),
                ("store_timeout", limits.store_timeout, before.store_timeout),
            ]
            .into_iter()
            .filter(|(_, now, was)| now != was)
            .map(|(key, now, _)| format!("limits.{key} = {}s", now.unwrap_or_default().as_secs()))
            .collect::<Vec<_>>();
            tracing::info!(
                "reload: {} from now on; sessions in progress keep their timeouts",
                changed.join(", ")
            );
        }
        if let (Some(shared), Some(u)) = (&self.users, users) {
            if shared.current().credential_forms() != u.credential_forms() {
                tracing::warn!(
                    "reload: the users' password schemes change the mechanisms offered; CAPA changes at the next start"
                );
            }
            shared.replace(u);
        }
        *old = new;
        Ok(())
    }
}

impl ServerArgs {
    /// Parses the command line of `program` (named in `--help` and `-V`
    /// with this version). A usage error is printed and the process exits
    /// 64 (`EX_USAGE`); `--help` and `--version` print and exit 0.
    pub fn parse_for(program: &'static str) -> ServerArgs {
        use clap::CommandFactory;
        parse_command_line(
            ServerArgs::command()
                .name(program)
                .bin_name(program)
                .version(env!("CARGO_PKG_VERSION"))
                .about("A POP3 server for Maildirs (a demo maildrop without --maildir-root)."),
        )
    }

    /// Builds the server's pieces and its store, checking everything first
    /// (the file, every path, every passwd-file entry, that every listener
    /// binds: a [`StartupError`] names the flag or the file's line);
    /// `program` names it in the protocol's IMPLEMENTATION capability.
    pub fn setup(self, program: &str) -> Result<(ServerSetup, ServerStore), BoxError> {
        let mut settings = Settings::resolve(&self)?;
        if settings.listen.is_empty()
            && settings.tls_listen.is_empty()
            && settings.proxy_listen.is_empty()
            && settings.proxy_tls_listen.is_empty()
        {
            settings
                .listen
                .push(flag(SocketAddr::from(([127, 0, 0, 1], 1110)), "--listen"));
        }
        if let Some(root) = &settings.maildir_root {
            if let Err(e) = std::fs::read_dir(&root.value) {
                return Err(startup(&root.origin, root.value.display(), e));
            }
        }
        let demo = settings.maildir_root.is_none() && settings.postgres.is_none();
        let root = host::root_policy(
            settings.user.as_ref(),
            settings.group.as_ref(),
            settings.allow_root,
            demo,
        )?;
        let secret = match (&settings.secret_file, &settings.maildir_root) {
            (Some(file), _) => load_or_create_secret(&file.value)
                .map_err(|e| startup(&file.origin, "", chain(&*e)))?,
            (None, Some(root)) => load_or_create_secret(&root.value.join(SECRET_FILE))
                .map_err(|e| startup(&root.origin, "", chain(&*e)))?,
            // The demo's maildrop lives as long as the process; without a
            // file a database's servers each draw their own.
            (None, None) => DeploymentSecret::new(crate::tls::random_bytes()?),
        };
        let users = settings.load_users(&secret)?;
        let previous = match settings.previous_uidl_format.value.as_str() {
            "none" => None,
            format => Some(
                format
                    .parse()
                    .map_err(|e| startup(&settings.previous_uidl_format.origin, format, e))?,
            ),
        };
        let options = settings.options();
        let every = settings
            .proxy_protocol
            .as_ref()
            .is_some_and(|p| p.every_listener);
        let activated = host::activated_listeners()?;
        let socket_activated = activated.is_some();
        let mut listeners = activated.unwrap_or_default();
        for l in &mut listeners {
            // The service manager's sockets are PROXY listeners when every
            // listener is.
            l.proxy = options.proxy_protocol.clone().filter(|_| every);
        }
        let configured: [(&[Sourced<SocketAddr>], bool, &str, bool); 4] = match socket_activated {
            // The service manager's sockets replace the configured addresses.
            true => [
                (&[], false, "listen", every),
                (&[], true, "tls_listen", every),
                (&[], false, "proxy_protocol.listen", true),
                (&[], true, "proxy_protocol.tls_listen", true),
            ],
            false => [
                (&settings.listen, false, "listen", every),
                (&settings.tls_listen, true, "tls_listen", every),
                (&settings.proxy_listen, false, "proxy_protocol.listen", true),
                (
                    &settings.proxy_tls_listen,
                    true,
                    "proxy_protocol.tls_listen",
                    true,
                ),
            ],
        };
        for (addrs, tls, what, proxy) in configured {
            for addr in addrs {
                let listener =
                    std::net::TcpListener::bind(addr.value).map_err(|e| match &addr.origin {
                        Origin::Flag(_) => StartupError(format!("{what} {}: {e}", addr.value)),
                        o => StartupError(format!("{o} {}: {e}", addr.value)),
                    })?;
                let proxy = options.proxy_protocol.clone().filter(|_| proxy);
                listeners.push(BoundListener {
                    listener,
                    tls,
                    proxy,
                });
            }
        }
        let proxied = listeners
            .iter()
            .filter(|l| l.proxy.is_some())
            .filter_map(|l| l.listener.local_addr().ok())
            .collect();
        let metrics_listener = match &settings.metrics {
            Some(m) => Some(
                std::net::TcpListener::bind(m.value).map_err(|e| startup(&m.origin, m.value, e))?,
            ),
            None => None,
        };
        let keys = settings.load_certificates()?;
        let (tls, demo_ca, certificate) = match keys.is_empty() {
            false => {
                let slot = Arc::new(CertSlot(std::sync::RwLock::new(keys)));
                let provider = crate::tls::default_provider()
                    .ok_or_else(|| StartupError("no TLS crypto provider".into()))?;
                let min = self.tls_min_version.unwrap_or_default();
                let config = rustls::ServerConfig::builder_with_provider(provider)
                    .with_protocol_versions(min.versions())?
                    .with_no_client_auth()
                    .with_cert_resolver(slot.clone());
                (Arc::new(config), None, Some(slot))
            }
            true => {
                let (config, ca) = demo_tls()?;
                (config, Some(ca), None)
            }
        };
        let mut config = ServerConfig::default()
            .deployment_secret(Some(secret.clone()))
            .allow_plaintext_auth(settings.allow_plaintext_auth || demo)
            .advertise_channel_binding(settings.advertise_channel_binding)
            .implementation(Some(format!(
                "pop3-rs {program} {}",
                env!("CARGO_PKG_VERSION")
            )));
        if let Some(s) = settings.limits.login_timeout {
            config = config.login_timeout(std::time::Duration::from_secs(s));
        }
        if let Some(s) = settings.limits.autologout {
            config = config.autologout(std::time::Duration::from_secs(s));
        }
        let mut shared_users = None;
        let store = if let Some(conninfo) = &settings.postgres {
            #[cfg(feature = "postgres")]
            {
                let store = crate::postgres::PgStore::connect(&conninfo.value)?
                    .with_deployment_secret(secret.clone())
                    .with_login_delay(
                        settings
                            .login_delay
                            .map(|s| std::time::Duration::from_secs(u64::from(s))),
                    )
                    .with_expire(settings.expire);
                ServerStore::Postgres(store)
            }
            #[cfg(not(feature = "postgres"))]
            return Err(startup(
                &conninfo.origin,
                "",
                "this build has no PostgreSQL store",
            ));
        } else if let (Some(root), Some(users)) = (&settings.maildir_root, users) {
            let store = MaildirStore::new(&root.value, users)
                .previous_uidls(previous)
                .login_delay(
                    settings
                        .login_delay
                        .map(|s| std::time::Duration::from_secs(u64::from(s))),
                )
                .expire(settings.expire);
            shared_users = Some(store.shared_users());
            ServerStore::Maildir(store)
        } else {
            let store = MemoryStore::new().with_deployment_secret(secret.clone());
            store.add_user("demo", "demo");
            for message in DEMO_MESSAGES {
                store.add_message("demo", message.as_bytes());
            }
            ServerStore::Demo(store)
        };
        // LOGIN-DELAY and EXPIRE are advertised as the store enforces them
        // (EXPIRE 0 the machine enforces itself).
        let (login_delay, expire) = match &store {
            ServerStore::Maildir(m) => (m.login_delay_enforced(), m.expire_enforced()),
            #[cfg(feature = "postgres")]
            ServerStore::Postgres(p) => (p.login_delay_enforced(), p.expire_enforced()),
            ServerStore::Demo(_) => (None, settings.expire.filter(|&d| d == 0)),
        };
        let login_delay = login_delay.map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
        if login_delay != settings.login_delay || expire != settings.expire {
            tracing::warn!(
                "the demo store enforces neither a login delay nor EXPIRE over 0: not advertised"
            );
        }
        config = config.login_delay(login_delay).expire(Some(match expire {
            Some(days) => pop3_proto::response::Expire::Days(days),
            None => pop3_proto::response::Expire::Never,
        }));
        let serving_as = match &root {
            host::RootPolicy::Drop(user) => {
                if let Some(ca) = &demo_ca {
                    user.give(ca)?;
                }
                user.become_it()?;
                Some(user.name.clone())
            }
            host::RootPolicy::Stay => None,
        };
        let gate = crate::common::Gate::new(&options);
        let setup = ServerSetup {
            listeners,
            socket_activated,
            metrics_listener: std::sync::Mutex::new(metrics_listener),
            config,
            tls,
            certificates: settings.certificates.clone(),
            gate: gate.clone(),
            options,
            proxied,
            proxy_protocol: settings.proxy_protocol.clone(),
            metrics: settings
                .metrics
                .as_ref()
                .map(|m| MetricsSettings { listen: m.value }),
            demo_ca,
            demo,
            reload: Arc::new(Reloader {
                gate: gate.clone(),
                args: self,
                settings: std::sync::Mutex::new(settings),
                secret,
                certificate,
                users: shared_users,
                serving_as,
            }),
        };
        Ok((setup, store))
    }
}

impl ServerSetup {
    /// The bound listeners, for the runtime's accept loops (once).
    pub fn take_listeners(&mut self) -> Vec<BoundListener> {
        std::mem::take(&mut self.listeners)
    }

    /// Re-reads the configuration file, the certificate and the users, and
    /// puts them in force if all are good (what SIGHUP does); sessions go
    /// on. On an error the configuration in force stays.
    pub fn reload(&self) -> Result<(), BoxError> {
        self.reload.reload()
    }

    /// Handles the signals from now on, on a thread of their own: SIGTERM
    /// and SIGINT call `shutdown` (once; a second one exits at once, status
    /// 1, after removing the demo CA file), SIGHUP reloads
    /// ([`reload`](Self::reload), logging the outcome). The service
    /// manager (`NOTIFY_SOCKET`) is told `RELOADING=1` then `READY=1`
    /// around a reload, `STOPPING=1` at the shutdown. Where there are no
    /// Unix signals, Ctrl-C calls `shutdown`.
    pub fn handle_signals(&self, shutdown: impl Fn() + Send + 'static) -> Result<(), BoxError> {
        let reload = self.reload.clone();
        let demo_ca = self.demo_ca.clone();
        let stop = move |already: bool| {
            if already {
                tracing::warn!("asked again to stop: exiting now");
                if let Some(ca) = &demo_ca {
                    let _ = std::fs::remove_file(ca);
                }
                std::process::exit(1);
            }
            tracing::info!("shutting down: no new sessions; open ones may finish");
            host::notify("STOPPING=1");
            shutdown();
        };
        #[cfg(unix)]
        {
            use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
            let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
            std::thread::Builder::new()
                .name("signals".into())
                .spawn(move || {
                    let mut stopping = false;
                    for signal in signals.forever() {
                        if signal == SIGHUP {
                            host::notify(&host::reloading_notice());
                            match reload.reload() {
                                Ok(()) => tracing::info!("reloaded the configuration"),
                                Err(e) => tracing::error!(
                                    "reload failed, the configuration in force stays: {}{}",
                                    chain(&*e),
                                    reload.permission_hint(&*e)
                                ),
                            }
                            host::notify("READY=1");
                        } else {
                            stop(stopping);
                            stopping = true;
                        }
                    }
                })?;
        }
        #[cfg(not(unix))]
        {
            let _ = reload;
            let stopping = std::sync::atomic::AtomicBool::new(false);
            ctrlc::set_handler(move || {
                stop(stopping.swap(true, std::sync::atomic::Ordering::SeqCst))
            })?;
        }
        Ok(())
    }

    /// The server's metrics: served on the listener bound at start at
    /// [`ServerSetup::metrics`]'s address by
    /// [`metrics::serve`](crate::metrics::serve) (on a thread of its own,
    /// the first call only) when it is set, else counted for no one. Hand them to the server
    /// with its `with_metrics`.
    pub fn start_metrics(&self, program: &str) -> Result<Arc<Metrics>, BoxError> {
        let metrics = Arc::new(Metrics::new());
        let bound = match self.metrics_listener.lock() {
            Ok(mut l) => l.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(listener) = bound {
            let local = listener.local_addr()?;
            crate::metrics::serve(listener, metrics.clone())?;
            println!("{program}: metrics at http://{local}/metrics");
        }
        Ok(metrics)
    }

    /// Prints where the server listens and, for the demo, how to try it,
    /// and tells the service manager (`NOTIFY_SOCKET`) the server is ready:
    /// call it once every listener is served.
    /// `bound`: each listener's local address and whether it is implicit TLS.
    pub fn print_banner(&self, program: &str, bound: &[(SocketAddr, bool)]) {
        host::notify("READY=1");
        if self.socket_activated {
            println!("{program}: serving the sockets of the service manager (socket activation)");
        }
        for (local, tls) in bound {
            let kind = if *tls {
                "pop3s (implicit TLS)"
            } else {
                "pop3 (STLS offered)"
            };
            let proxy = if self.proxied.contains(local) {
                ", PROXY protocol"
            } else {
                ""
            };
            println!("{program}: listening on {local}, {kind}{proxy}");
        }
        if let (Some(ca), false) = (&self.demo_ca, self.demo) {
            println!(
                "{program}: no certificate configured: serving a made-up one; its CA certificate: {}",
                ca.display()
            );
        }
        let (true, Some(ca), Some((addr, _))) = (self.demo, &self.demo_ca, bound.first()) else {
            return;
        };
        let (host, port) = (addr.ip(), addr.port());
        println!(
            "{program}: demo maildrop: user demo, password demo; CA certificate: {}",
            ca.display()
        );
        println!("  curl:   curl -u demo:demo pop3://{host}:{port}/1");
        println!(
            "  STLS:   curl --ssl-reqd --cacert {} -u demo:demo pop3://localhost:{port}/",
            ca.display()
        );
        println!(
            "  python: python3 -c \"import poplib; p = poplib.POP3('{host}', {port}); p.user('demo'); p.pass_('demo'); print(p.stat()); print(b'\\n'.join(p.retr(1)[1]).decode()); p.quit()\""
        );
    }
}

/// The default name of `pop3d`'s secret file, in the Maildir root (a name
/// starting with `.` is never a user's Maildir).
pub const SECRET_FILE: &str = ".pop3d-secret";

/// Reads the deployment's secret from `path` (any text of at least 32
/// octets; surrounding white space ignored), or creates the file with 32
/// random octets in hex, readable by its owner only, if there is none.
///
/// ```
/// use pop3_blocking::cli::load_or_create_secret;
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("secret");
/// let made = load_or_create_secret(&path)?;
/// assert_eq!(load_or_create_secret(&path)?, made);
/// std::fs::write(&path, "short")?;
/// assert!(load_or_create_secret(&path).is_err());
/// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
/// ```
pub fn load_or_create_secret(path: &std::path::Path) -> Result<DeploymentSecret, BoxError> {
    use std::io::Write as _;
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let bytes: [u8; 32] = crate::tls::random_bytes()?;
            let mut hex = String::with_capacity(2 * bytes.len() + 1);
            crate::hex::push_hex(&mut hex, &bytes);
            hex.push('\n');
            let text = hex.into_bytes();
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options
                .open(path)
                .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
            file.write_all(&text)?;
            file.sync_all()?;
            text
        }
        Err(e) => return Err(format!("cannot read {}: {e}", path.display()).into()),
    };
    let material = text.trim_ascii();
    if material.len() < 32 {
        return Err(format!(
            "{}: a deployment secret needs at least 32 octets",
            path.display()
        )
        .into());
    }
    Ok(DeploymentSecret::from_material(material))
}

/// A CA and a server certificate for localhost made at start, so clients can
/// verify the demo server with the CA file written next to it.
fn demo_tls() -> Result<(Arc<rustls::ServerConfig>, PathBuf), BoxError> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "pop3d demo CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca_params.self_signed(&ca_key)?;
    let key = KeyPair::generate()?;
    let params = CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ])?;
    let cert = params.signed_by(&key, &ca, &ca_key)?;
    let ca_file = std::env::temp_dir().join(format!("pop3d-demo-ca-{}.pem", std::process::id()));
    std::fs::write(&ca_file, ca.pem())?;
    let config = crate::tls::server_config(
        vec![cert.der().clone(), ca.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )?;
    Ok((config, ca_file))
}

/// `fetch`: fetches new messages from POP3 maildrops, deleting them from
/// the server (with `--delete`) only once they are durably stored, into a
/// Maildir, an mbox file, a mail delivery agent or an LMTP server.
///
/// With a URL, fetches that one maildrop as the options say (the password
/// from `POP3_PASSWORD`, `--password-command`, `~/.netrc` or a prompt).
/// Without one, fetches every account of the configuration file
/// (`--config`, default `$XDG_CONFIG_HOME/pop3-fetch/config.toml` or
/// `~/.config/pop3-fetch/config.toml`), or those `--account` names.
///
/// What was fetched is remembered per account in a journal (at the top of
/// a Maildir; in the state directory, `$XDG_STATE_HOME/pop3-fetch`, for
/// the other destinations). The account is `user@host` (the URL's user,
/// and its host in lower case without a trailing dot), whatever the
/// scheme, STLS and port; on a loopback host the port is part of it.
/// `--journal-account` names it instead: give the old name when the server
/// moves, so its journal carries over. The journal stays under that name
/// (what such a run fetches is journaled there too): give it on every run,
/// or set `journal_account` in the configuration file.
///
/// Exit status (sysexits, the worst over all accounts): 0 every message
/// dealt with; 65 messages left on the server that cannot be fetched
/// safely (refused, no usable UID, a UID shared by several) or refused for
/// good by the destination; 69 the server is unusable (no UIDL, TLS
/// failure); 74 local I/O; 75 temporary (network, `[IN-USE]`,
/// `[SYS/TEMP]`, `[LOGIN-DELAY]`, a lock, an MDA's 75, an LMTP 4xx); 76 a
/// protocol violation; 77 authentication; 78 configuration; 64 usage.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct FetchArgs {
    /// `pop://user[;AUTH=mech]@host[:port]` (`pops://` for implicit TLS);
    /// without it, the configuration file's accounts.
    #[arg(value_parser = parse_url)]
    pub url: Option<String>,
    /// The configuration file (default: `$XDG_CONFIG_HOME/pop3-fetch/config.toml`).
    #[arg(long, value_name = "FILE", conflicts_with = "url")]
    pub config: Option<PathBuf>,
    /// Fetch only this account of the configuration file; repeatable.
    /// (With a URL, the former meaning: the journal's name of the account,
    /// now `--journal-account`.)
    #[arg(long, value_name = "NAME")]
    pub account: Vec<String>,
    /// The Maildir to deliver into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub maildir: Option<String>,
    /// The mbox file to append to (mboxrd, locked as mutt and procmail do).
    #[arg(long, value_name = "FILE")]
    pub mbox: Option<String>,
    /// A mail delivery agent, run with `sh -c` for each message on its
    /// standard input (exit 0 delivered, 75 try later).
    #[arg(long, value_name = "COMMAND")]
    pub mda: Option<String>,
    /// An LMTP server: `unix:/path` or `host:port`.
    #[arg(long, value_name = "ADDR")]
    pub lmtp: Option<String>,
    /// The LMTP recipient (default: the URL's user).
    #[arg(long, value_name = "ADDR")]
    pub lmtp_recipient: Option<String>,
    /// A command printing the password (first line), run for each session.
    #[arg(long, value_name = "COMMAND", conflicts_with = "token_command")]
    pub password_command: Option<String>,
    /// A command printing an OAuth 2.0 access token (first line), run for
    /// each session; with `--auth XOAUTH2` or `OAUTHBEARER`.
    #[arg(long, value_name = "COMMAND")]
    pub token_command: Option<String>,
    /// Delete stored messages from the server.
    #[arg(long)]
    pub delete: bool,
    /// Upgrade a pop:// connection with STLS.
    #[arg(long)]
    pub starttls: bool,
    /// Trust this CA (PEM) instead of the bundled roots and the system's
    /// trust store.
    #[arg(long, value_name = "PEM", conflicts_with = "insecure")]
    pub ca_file: Option<String>,
    /// Accept any certificate.
    #[arg(long)]
    pub insecure: bool,
    /// A client certificate chain (PEM, leaf first), shown to a server that
    /// asks for one.
    #[arg(long, value_name = "PEM")]
    pub client_cert: Option<String>,
    /// The client certificate's private key (PEM; default: read from
    /// `--client-cert`'s file).
    #[arg(long, value_name = "PEM", requires = "client_cert")]
    pub client_key: Option<String>,
    /// USER, APOP, PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-256, SCRAM-SHA-256-PLUS,
    /// XOAUTH2, OAUTHBEARER or `*`.
    #[arg(long, value_name = "MECH", value_parser = parse_auth)]
    pub auth: Option<String>,
    /// Never pipeline commands.
    #[arg(long)]
    pub no_pipelining: bool,
    /// Allow USER/PASS, PLAIN and LOGIN on a connection without TLS: the
    /// password crosses the network readable (a trusted link only).
    #[arg(long)]
    pub insecure_cleartext_login: bool,
    /// Keep CRLF line ends in a Maildir (default: LF, the Unix mail convention).
    #[arg(long)]
    pub crlf: bool,
    /// The name the journal knows the account by (default: `user@host`
    /// from the URL, see above).
    #[arg(long, value_name = "NAME")]
    pub journal_account: Option<String>,
    /// Where the journals of mbox, MDA and LMTP delivery live.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<String>,
    /// Delete stored messages this many days after this client first saw
    /// them (instead of `--delete`).
    #[arg(long, value_name = "DAYS", conflicts_with = "delete")]
    pub delete_after_days: Option<u64>,
    /// Do not fetch messages over this many octets.
    #[arg(long, value_name = "OCTETS")]
    pub max_size: Option<u64>,
    /// What becomes of a message over `--max-size`: `skip` (it stays) or
    /// `delete` (deleted unread).
    #[arg(long, value_name = "WHAT", requires = "max_size", value_parser = ["skip", "delete"])]
    pub oversize: Option<String>,
    /// Fetch at most this many messages per session.
    #[arg(long, value_name = "N")]
    pub max_messages: Option<u64>,
    /// Fetch at most this many octets per session (the first message always).
    #[arg(long, value_name = "OCTETS")]
    pub max_octets: Option<u64>,
    /// Prepend `Received:`, `Delivered-To:` and `X-UIDL:` to each message.
    #[arg(long)]
    pub trace_headers: bool,
    /// Fetch every message, also those fetched before (an archive into a
    /// fresh destination).
    #[arg(long)]
    pub all: bool,
    /// Download nothing: remember every message now on the server as
    /// seen, so that later runs fetch only newer mail. Deletes nothing.
    #[arg(long, conflicts_with = "all")]
    pub mark_seen: bool,
    /// Before fetching, take what another tool has fetched as seen:
    /// `mpop:FILE` (its uidls_file), `getmail:FILE` (an oldmail-* file) or
    /// `fetchmail:FILE` (its .fetchids); only the account's entries.
    #[arg(long, value_name = "TOOL:FILE", value_parser = parse_seen_list)]
    pub import_seen: Option<String>,
    /// Print nothing but errors.
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Say more: what the fetch decides (on stderr); twice, the protocol too.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Print one JSON object per account on stdout (account, saved,
    /// deleted, octets, what was left on the server and why, exit status)
    /// instead of the summary on stderr.
    #[arg(long)]
    pub json: bool,
    /// Write the protocol transcript (the client's side of the wire)
    /// to FILE, passwords and authentication exchanges replaced by `***`.
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// Keep running: poll every account each INTERVAL (`30s`, `5m`, `1h`;
    /// left out, the configuration's `[daemon] interval`), backing off
    /// after failures and never sooner than the server's LOGIN-DELAY.
    /// SIGTERM or SIGINT: no new polls, running sessions store the message
    /// in flight and end, then exit 0 (a second signal exits at once);
    /// SIGHUP rereads the configuration file. Without a value, put the URL
    /// before it.
    #[arg(long, value_name = "INTERVAL", num_args = 0..=1, default_missing_value = "", value_parser = parse_interval)]
    pub daemon: Option<String>,
    /// With `--daemon`: sessions at once (default 4, or the
    /// configuration's `[daemon] concurrency`).
    #[arg(long, value_name = "N", requires = "daemon", value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: Option<u16>,
}

fn parse_interval(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Ok(String::new());
    }
    match crate::daemon::parse_duration(s) {
        Ok(d) if d.is_zero() => Err("the interval must be more than zero".into()),
        Ok(_) => Ok(s.to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

fn parse_seen_list(s: &str) -> Result<String, String> {
    s.parse::<crate::import::SeenList>()
        .map(|_| s.to_owned())
        .map_err(|e| e.to_string())
}

fn parse_url(s: &str) -> Result<String, String> {
    PopUrl::parse(s)
        .map(|_| s.to_owned())
        .map_err(|e| e.to_string())
}

fn parse_auth(s: &str) -> Result<String, String> {
    AuthMethod::parse(s)
        .map(|_| s.to_owned())
        .map_err(|e| e.to_string())
}

/// One runtime's fetch of one account: [`crate::fetch::run`] or an
/// adapter's `fetch::run`, the sink handed back. With `--daemon` it is
/// called from several threads at once.
pub type FetchOne<'a> = dyn Fn(
        &PopUrl,
        &str,
        &FetchSettings,
        Delivery,
        &mut (dyn FnMut(&Progress) + Send),
    ) -> (Delivery, Result<FetchReport, FetchError>)
    + Sync
    + 'a;

/// [`FetchOne`] over blocking sockets.
pub fn fetch_blocking(
    url: &PopUrl,
    password: &str,
    settings: &FetchSettings,
    mut sink: Delivery,
    progress: &mut (dyn FnMut(&Progress) + Send),
) -> (Delivery, Result<FetchReport, FetchError>) {
    let result = crate::fetch::run(url, password, settings, &mut sink, progress);
    (sink, result)
}

impl FetchArgs {
    /// Parses the command line of `program` (named in `--help` and
    /// usage errors). A usage error is printed and the process exits 64
    /// (`EX_USAGE`, not clap's 2); `--help` and `--version` print and exit
    /// 0.
    ///
    /// ```no_run
    /// use pop3_blocking::cli::{FetchArgs, fetch_blocking};
    /// let kind = FetchArgs::parse_for("fetch-blocking").run("fetch-blocking", &mut fetch_blocking);
    /// std::process::exit(kind.code().into());
    /// ```
    pub fn parse_for(program: &'static str) -> FetchArgs {
        use clap::CommandFactory;
        parse_command_line(FetchArgs::command().name(program).bin_name(program))
    }

    /// The accounts to fetch: the URL's, or the configuration file's
    /// (those `--account` names, or all).
    pub fn accounts(&self) -> Result<Vec<Account>, ConfigError> {
        self.load().map(|(accounts, _)| accounts)
    }

    /// [`accounts`](Self::accounts) and the configuration file's
    /// `[daemon]` table.
    fn load(&self) -> Result<(Vec<Account>, DaemonOptions), ConfigError> {
        let Some(url) = &self.url else {
            let per_url = [
                ("--maildir", self.maildir.is_some()),
                ("--mbox", self.mbox.is_some()),
                ("--mda", self.mda.is_some()),
                ("--lmtp", self.lmtp.is_some()),
                ("--lmtp-recipient", self.lmtp_recipient.is_some()),
                ("--password-command", self.password_command.is_some()),
                ("--token-command", self.token_command.is_some()),
                ("--delete", self.delete),
                ("--starttls", self.starttls),
                ("--ca-file", self.ca_file.is_some()),
                ("--insecure", self.insecure),
                ("--client-cert", self.client_cert.is_some()),
                ("--client-key", self.client_key.is_some()),
                ("--auth", self.auth.is_some()),
                ("--no-pipelining", self.no_pipelining),
                ("--insecure-cleartext-login", self.insecure_cleartext_login),
                ("--crlf", self.crlf),
                ("--journal-account", self.journal_account.is_some()),
                ("--state-dir", self.state_dir.is_some()),
                ("--delete-after-days", self.delete_after_days.is_some()),
                ("--max-size", self.max_size.is_some()),
                ("--max-messages", self.max_messages.is_some()),
                ("--max-octets", self.max_octets.is_some()),
                ("--trace-headers", self.trace_headers),
            ];
            if let Some((option, _)) = per_url.iter().find(|(_, given)| *given) {
                return Err(ConfigError {
                    file: None,
                    line: None,
                    key: None,
                    message: format!(
                        "{option} goes with a URL; for configured accounts, set it in the file"
                    ),
                });
            }
            let path = match &self.config {
                Some(p) => p.clone(),
                None => default_config_path().ok_or_else(|| ConfigError {
                    file: None,
                    line: None,
                    key: None,
                    message: "no URL, and no configuration file (HOME is not set)".into(),
                })?,
            };
            let mut config = Config::load(&path)?;
            for account in &mut config.accounts {
                account.settings.policy.refetch |= self.all;
                account.settings.policy.mark_seen |= self.mark_seen;
            }
            if self.account.is_empty() {
                return Ok((config.accounts, config.daemon));
            }
            let mut chosen = Vec::new();
            for name in &self.account {
                let account = config
                    .accounts
                    .iter()
                    .find(|a| &a.name == name)
                    .ok_or_else(|| ConfigError {
                        file: Some(path.clone()),
                        line: None,
                        key: Some(format!("account.{name}")),
                        message: "no such account".into(),
                    })?;
                chosen.push(account.clone());
            }
            return Ok((chosen, config.daemon));
        };
        let mut journal_account = self.journal_account.clone();
        if journal_account.is_none() && !self.account.is_empty() {
            // The former meaning of --account, kept for old scripts.
            eprintln!("--account with a URL names the journal's account: say --journal-account");
            journal_account = self.account.last().cloned();
        }
        let options = AccountOptions {
            url: Some(url.clone()),
            maildir: self.maildir.clone(),
            mbox: self.mbox.clone(),
            mda: self.mda.clone(),
            lmtp: self.lmtp.clone(),
            lmtp_recipient: self.lmtp_recipient.clone(),
            password_command: self.password_command.clone(),
            token_command: self.token_command.clone(),
            password_env: (self.password_command.is_none()
                && self.token_command.is_none()
                && std::env::var_os("POP3_PASSWORD").is_some())
            .then(|| "POP3_PASSWORD".to_owned()),
            delete: self.delete,
            starttls: self.starttls,
            auth: self.auth.clone(),
            ca_file: self.ca_file.clone(),
            insecure: self.insecure,
            client_cert: self.client_cert.clone(),
            client_key: self.client_key.clone(),
            pipelining: !self.no_pipelining,
            insecure_cleartext_login: self.insecure_cleartext_login,
            crlf: self.crlf,
            journal_account,
            state_dir: self.state_dir.clone(),
            delete_after_days: self.delete_after_days,
            max_size: self.max_size,
            oversize: self.oversize.clone(),
            max_messages: self.max_messages,
            max_octets: self.max_octets,
            fetch_all: self.all,
            mark_seen: self.mark_seen,
            trace_headers: self.trace_headers,
            ..AccountOptions::default()
        };
        Ok((vec![options.into_account(url)?], DaemonOptions::default()))
    }

    /// Installs the logs of this thread (`-v` on stderr, `--trace` into its
    /// file); a trace file that cannot be opened is said and is a
    /// configuration error.
    fn install_logs(
        &self,
        program: &str,
    ) -> Result<Option<::tracing::subscriber::DefaultGuard>, ExitKind> {
        trace::install(self.verbose, self.trace.as_deref()).map_err(|e| {
            let file = self.trace.as_deref().unwrap_or(std::path::Path::new(""));
            eprintln!("{program}: --trace {}: {}", file.display(), chain(&e));
            ExitKind::Config
        })
    }

    /// Fetches every account with `fetch` (the runtime's), printing each
    /// one's summary and failure on stderr; answers the worst outcome.
    /// With `--daemon`, polls them until stopped ([`crate::daemon`]).
    pub fn run(&self, program: &str, fetch: &mut FetchOne<'_>) -> ExitKind {
        if self.daemon.is_some() {
            return self.run_daemon(program, fetch);
        }
        let accounts = match self.accounts() {
            Ok(a) => a,
            Err(e) => {
                eprintln!("{program}: {}", chain(&e));
                return ExitKind::Config;
            }
        };
        // The logs of this thread, where the fetch runs: -v on stderr,
        // --trace into its file.
        let _logs = match self.install_logs(program) {
            Ok(guard) => guard,
            Err(kind) => return kind,
        };
        let many = accounts.len() > 1;
        let mut worst = ExitKind::Ok;
        for account in &accounts {
            let who = if many {
                format!("{program}: {}: ", account.name)
            } else {
                format!("{program}: ")
            };
            let outcome = self.run_account(&who, account, fetch, false, true);
            if self.json {
                println!("{}", outcome.json(account));
            }
            worst = worst.worst(outcome.kind);
        }
        worst
    }

    /// One account: password, sink, import (when `import`: a daemon
    /// imports at an account's first poll only), fetch, summary (in daemon
    /// mode, the caller prints the outcome).
    fn run_account(
        &self,
        who: &str,
        account: &Account,
        fetch: &FetchOne<'_>,
        daemon: bool,
        import: bool,
    ) -> Outcome {
        let quiet = self.quiet || self.json || daemon;
        let failed = |kind: ExitKind, message: String| {
            if !daemon {
                eprintln!("{who}{message}");
            }
            Outcome {
                kind,
                report: None,
                error: Some(message),
            }
        };
        let password = match account.password() {
            Ok(p) => p,
            Err(e) => return failed(e.exit_kind(), chain(&e)),
        };
        let mut sink = match account.open_sink() {
            Ok(s) => s,
            Err(e) => {
                let message = format!("cannot open the {}: {}", account.destination, chain(&e));
                return failed(ExitKind::of_store(&e), message);
            }
        };
        let import = match (&self.import_seen, &account.import_seen) {
            _ if !import => None,
            (Some(spec), _) => Some(("--import-seen", spec)),
            (None, Some(spec)) => Some(("import_seen", spec)),
            (None, None) => None,
        };
        if let Some((label, spec)) = import {
            let host = account.url.host.to_string();
            let user = account.url.user.as_deref().unwrap_or("");
            let imported = spec
                .parse::<crate::import::SeenList>()
                .and_then(|list| crate::import::import_seen(&mut sink, &list, &host, user));
            match imported {
                Ok(n) if !quiet => eprintln!("{who}{n} UIDs imported from {spec}"),
                Ok(_) => {}
                Err(e) => {
                    let kind = match &e {
                        crate::import::ImportError::Store(io) => ExitKind::of_store(io),
                        _ => ExitKind::DataErr,
                    };
                    return failed(kind, format!("{label} {spec}: {}", chain(&e)));
                }
            }
        }
        let mut progress = FetchProgress::new();
        if quiet {
            progress.bar = None;
        }
        let (_sink, result) = fetch(&account.url, &password, &account.settings, sink, &mut |p| {
            progress.update(p)
        });
        match result {
            Ok(report) => {
                let kind = if daemon {
                    progress.clear();
                    progress.problems(who, &report)
                } else if quiet {
                    progress.clear();
                    ExitKind::of_report(&report)
                } else {
                    progress.summary(who, &report)
                };
                Outcome {
                    kind,
                    report: Some(report),
                    error: None,
                }
            }
            Err(e) => {
                progress.clear();
                let mut message = match &e {
                    FetchError::NoUidl(_) if !account.settings.delete => format!(
                        "{} (keeping messages needs UIDL: only a run with --delete or delete = true works)",
                        chain(&e)
                    ),
                    _ => chain(&e),
                };
                match e {
                    // What failed is the server, or the way to it.
                    FetchError::Pop3(_) | FetchError::NoUidl(_) => {
                        message = format!("{}:{}: {message}", account.url.host, account.url.port);
                    }
                    FetchError::Store(_) => message = format!("{}: {message}", account.destination),
                    _ => {}
                }
                if let Some(so_far) = progress.so_far() {
                    message.push('\n');
                    message.push_str(&so_far);
                }
                if let Some(hint) = certificate_hint(&e) {
                    message.push_str("\nhint: ");
                    message.push_str(&hint);
                }
                failed(ExitKind::of_error(&e), message)
            }
        }
    }
}

/// How to get past a TLS handshake that failed on the server's
/// certificate (an issuer not trusted, a certificate out of its validity, a
/// name it does not hold), for the user; `None` for any other failure.
///
/// ```
/// use pop3_blocking::cli::certificate_hint;
/// use pop3_blocking::tls::rustls::{CertificateError, Error};
/// use pop3_proto::client::Error as ClientError;
/// use pop3_proto::fetch::FetchError;
/// let tls = std::io::Error::new(
///     std::io::ErrorKind::InvalidData,
///     Error::InvalidCertificate(CertificateError::UnknownIssuer),
/// );
/// let e = FetchError::Pop3(ClientError::Tls(std::sync::Arc::new(tls)));
/// assert!(certificate_hint(&e).unwrap().contains("--ca-file FILE"));
/// ```
pub fn certificate_hint(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    use rustls::CertificateError as C;
    let mut cause = Some(error);
    let mut found = None;
    while let Some(e) = cause {
        let tls = e.downcast_ref::<rustls::Error>().or_else(|| {
            e.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        match tls {
            Some(rustls::Error::InvalidCertificate(c)) => {
                found = Some(c);
                break;
            }
            // Alerts about certificates the server sends are about the
            // client's.
            Some(rustls::Error::AlertReceived(alert))
                if crate::tls::is_client_certificate_alert(*alert) =>
            {
                return Some(if *alert == rustls::AlertDescription::CertificateRequired {
                    "the server asks for a client certificate: give one with --client-cert FILE \
                     (and --client-key FILE unless the key is in that file; client_cert and client_key \
                     in the configuration file)."
                        .to_owned()
                } else {
                    format!(
                        "the server refused the client certificate ({alert:?}): check that it is \
                         valid and issued by a CA the server trusts for clients."
                    )
                });
            }
            _ => {}
        }
        cause = e.source();
    }
    Some(match found? {
        C::UnknownIssuer => {
            "the server's certificate is not signed by a CA this client trusts (the bundled Mozilla roots and the system's trust store). \
             If the server uses a private CA, trust its certificate: --ca-file FILE (ca_file = \"FILE\" in the configuration file), or add it to the system's trust store. \
             A self-signed certificate can be given the same way."
                .to_owned()
        }
        C::Expired | C::ExpiredContext { .. } | C::NotValidYet | C::NotValidYetContext { .. } => {
            "the server's certificate is out of its validity period: check this machine's clock and time zone; \
             if the clock is right, the server's administrator must renew the certificate."
                .to_owned()
        }
        C::NotValidForName => "the server's certificate does not hold the name connected to: \
             give the host name its certificate was issued for in the URL (url = \"pops://user@NAME\")."
            .to_owned(),
        C::NotValidForNameContext { expected, presented } => format!(
            "the server's certificate holds {} but not {}: connect to one of the names it holds (url = \"pops://user@NAME\").",
            if presented.is_empty() {
                "no name".to_owned()
            } else {
                // rustls shows them as `DnsName("host")`: the name alone.
                presented
                    .iter()
                    .map(|n| match (n.find('"'), n.rfind('"')) {
                        (Some(a), Some(b)) if a < b => &n[a + 1..b],
                        _ => n.as_str(),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            expected.to_str()
        ),
        _ => return None,
    })
}

/// How one account's run ended.
struct Outcome {
    kind: ExitKind,
    report: Option<FetchReport>,
    error: Option<String>,
}

impl Outcome {
    /// The `--json` line.
    fn json(&self, account: &Account) -> serde_json::Value {
        use serde_json::json;
        let mut left = Vec::new();
        let mut value = json!({
            "account": account.name,
            "exit": format!("{:?}", self.kind),
            "exit_code": self.kind.code(),
        });
        if let Some(r) = &self.report {
            for (msg, e) in &r.refused {
                left.push(json!({"message": msg.get(), "reason": "refused", "detail": chain(e)}));
            }
            for msg in &r.unidentified {
                left.push(json!({"message": msg.get(), "reason": "no usable UID"}));
            }
            for msg in &r.ambiguous {
                left.push(
                    json!({"message": msg.get(), "reason": "UID shared with another message"}),
                );
            }
            if account.settings.policy.oversize != pop3_proto::fetch::Oversize::Delete {
                for (msg, size) in &r.oversized {
                    left.push(
                        json!({"message": msg.get(), "reason": "over max_size", "size": size}),
                    );
                }
            }
            value["listed"] = json!(r.listed);
            value["saved"] = json!(r.saved);
            value["already_stored"] = json!(r.already_stored);
            value["deleted"] = json!(r.deleted);
            value["octets"] = json!(r.bytes);
            value["marked_seen"] = json!(r.marked);
            value["kept"] = json!(r.kept);
            value["deferred"] = json!(r.deferred);
            value["left_on_server"] = json!(left);
        }
        if let Some(e) = &self.error {
            value["error"] = json!(e);
        }
        value
    }
}

/// Shows a fetch's progress: a bar (messages, octets) on a terminal,
/// nothing until the summary otherwise.
#[derive(Debug)]
pub struct FetchProgress {
    bar: Option<indicatif::ProgressBar>,
    started: Instant,
    /// The last progress reported.
    last: Progress,
}

impl Default for FetchProgress {
    fn default() -> Self {
        Self::new()
    }
}

impl FetchProgress {
    /// A bar on stderr when it is a terminal.
    pub fn new() -> FetchProgress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:30} {bytes}/{total_bytes} {msg} ({bytes_per_sec})",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
        FetchProgress {
            bar,
            started: Instant::now(),
            last: Progress::default(),
        }
    }

    /// What a run that failed had done, for the user: the messages stored
    /// before the failure, the one being received, and whether anything
    /// may have been deleted; `None` before the listing.
    ///
    /// ```
    /// use pop3_blocking::cli::FetchProgress;
    /// assert_eq!(FetchProgress::new().so_far(), None);
    /// ```
    pub fn so_far(&self) -> Option<String> {
        let p = &self.last;
        if p.messages_total == 0 && p.messages_done == 0 {
            return None;
        }
        let mut text = format!(
            "{} of {} messages stored before the failure (kept: the next run does not fetch them again)",
            p.messages_done, p.messages_total
        );
        if let Some(msg) = p.receiving {
            text.push_str(&format!(
                "; message {msg} was being received (not stored: the next run fetches it again)"
            ));
        }
        if p.deletes_accepted == 0 {
            text.push_str("; nothing deleted from the server");
        } else {
            text.push_str(&format!(
                "; the server accepted {} DELEs, and deletes those messages (each stored first) only if it got the QUIT",
                p.deletes_accepted
            ));
        }
        Some(text)
    }

    /// The fetch moved on.
    pub fn update(&mut self, p: &Progress) {
        self.last = *p;
        if let Some(bar) = &self.bar {
            bar.set_length(p.bytes_total.max(p.bytes_done));
            bar.set_position(p.bytes_done);
            bar.set_message(format!("{}/{} messages", p.messages_done, p.messages_total));
        }
    }

    /// Ends the bar.
    pub fn clear(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    /// Ends the bar and prints the one-line summary (and every message left
    /// on the server for a reason), each line after `who`; the outcome:
    /// [`ExitKind::of_report`].
    pub fn summary(&self, who: &str, report: &FetchReport) -> ExitKind {
        self.clear();
        eprintln!(
            "{who}{} new ({:.1} MB in {:.1} s), {} already stored, {} deleted",
            report.saved,
            report.bytes as f64 / 1e6,
            self.started.elapsed().as_secs_f64(),
            report.already_stored,
            report.deleted
        );
        self.problems(who, report)
    }

    /// Prints every message left on the server for a reason, each line
    /// after `who`; the outcome: [`ExitKind::of_report`].
    pub fn problems(&self, who: &str, report: &FetchReport) -> ExitKind {
        for (msg, e) in &report.refused {
            eprintln!("{who}message {msg}: {}", chain(e));
        }
        for msg in &report.unidentified {
            eprintln!(
                "{who}message {msg}: no usable UID (UIDL line missing or malformed), left on the server"
            );
        }
        for msg in &report.ambiguous {
            eprintln!(
                "{who}message {msg}: its UID is shared with another message, left on the server"
            );
        }
        let kind = ExitKind::of_report(report);
        if kind != ExitKind::Ok {
            eprintln!("{who}incomplete: messages were left on the server");
        }
        kind
    }
}
