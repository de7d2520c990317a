//! `pop3d --config FILE`: the server's TOML configuration file, read into
//! values that remember their line (the command line's flags win over it,
//! in [`super::ServerArgs::setup`]).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;
use toml::Spanned;

use crate::config::{ConfigError, from_toml, line_of};

/// The keys of the file (see the README's configuration reference).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileKeys {
    pub listen: Option<Spanned<Vec<SocketAddr>>>,
    pub tls_listen: Option<Spanned<Vec<SocketAddr>>>,
    pub maildir_root: Option<Spanned<PathBuf>>,
    pub users: Option<Spanned<PathBuf>>,
    pub secret_file: Option<Spanned<PathBuf>>,
    pub postgres: Option<Spanned<String>>,
    pub allow_plaintext_auth: Option<bool>,
    pub advertise_channel_binding: Option<bool>,
    pub login_delay: Option<u32>,
    pub expire: Option<u32>,
    pub previous_uidl_format: Option<Spanned<String>>,
    pub tls: Option<TlsKeys>,
    pub limits: Option<LimitKeys>,
    pub proxy_protocol: Option<ProxyKeys>,
    pub metrics: Option<MetricsKeys>,
    pub user: Option<Spanned<String>>,
    pub group: Option<Spanned<String>>,
    pub allow_root: Option<bool>,
}

/// `[tls]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TlsKeys {
    #[serde(default)]
    pub certificate: Vec<CertificateKeys>,
}

/// `[[tls.certificate]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CertificateKeys {
    pub cert: Spanned<PathBuf>,
    pub key: Spanned<PathBuf>,
}

/// `[limits]`: counts, and times in seconds.
#[derive(Debug, Default, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitKeys {
    pub max_connections: Option<usize>,
    pub max_connections_per_address: Option<usize>,
    pub login_timeout: Option<u64>,
    pub autologout: Option<u64>,
    pub write_stall_timeout: Option<u64>,
    pub tls_handshake_timeout: Option<u64>,
    pub shutdown_grace: Option<u64>,
    pub store_timeout: Option<u64>,
}

/// `[proxy_protocol]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProxyKeys {
    pub trusted: Vec<Spanned<String>>,
    /// Plain listeners of their own that expect the header (then those
    /// of the top-level `listen` and `tls_listen` do not).
    pub listen: Option<Spanned<Vec<SocketAddr>>>,
    /// Implicit TLS listeners of their own that expect the header.
    pub tls_listen: Option<Spanned<Vec<SocketAddr>>>,
}

/// `[metrics]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MetricsKeys {
    pub listen: Spanned<SocketAddr>,
}

/// A read file: its keys and what locates them.
#[derive(Debug)]
pub(crate) struct ServerFile {
    pub path: PathBuf,
    text: String,
    pub keys: FileKeys,
}

impl ServerFile {
    /// Reads and parses `path` (syntax, unknown keys, value types).
    pub fn load(path: &Path) -> Result<ServerFile, ConfigError> {
        let in_file = |mut e: ConfigError| {
            e.file = Some(path.to_path_buf());
            e
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            in_file(ConfigError {
                file: None,
                line: None,
                key: None,
                message: format!("cannot read the file: {e}"),
            })
        })?;
        let keys: FileKeys = from_toml(&text).map_err(in_file)?;
        Ok(ServerFile {
            path: path.to_path_buf(),
            text,
            keys,
        })
    }

    /// Where the value at `span` is: `FILE:LINE: key`.
    pub fn origin<T>(&self, key: &str, value: &Spanned<T>) -> Origin {
        Origin::File {
            path: self.path.clone(),
            line: line_of(&self.text, value.span().start),
            key: key.to_owned(),
        }
    }
}

/// Where a setting came from, to name it in an error: a flag (`--users`)
/// or a file's line and key (`/etc/pop3d.toml:4: users`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// A command-line flag.
    Flag(&'static str),
    /// A configuration file's key.
    File {
        /// The file.
        path: PathBuf,
        /// The line (from 1; 0 when unknown).
        line: usize,
        /// The dotted key.
        key: String,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag(flag) => f.write_str(flag),
            Origin::File { path, line: 0, key } => write!(f, "{}: {key}", path.display()),
            Origin::File { path, line, key } => write!(f, "{}:{line}: {key}", path.display()),
        }
    }
}

/// An IP network in CIDR form (`10.0.0.0/8`, `2001:db8::/32`; a bare
/// address is the network of that address alone).
///
/// ```
/// use pop3_blocking::cli::IpNetwork;
/// let net: IpNetwork = "10.0.0.0/8".parse().unwrap();
/// assert!(net.contains("10.1.2.3".parse().unwrap()));
/// assert!(!net.contains("11.0.0.1".parse().unwrap()));
/// assert!("10.0.0.1/8".parse::<IpNetwork>().is_err()); // host bits set
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNetwork {
    addr: IpAddr,
    prefix: u8,
}

impl IpNetwork {
    /// The same network as the PROXY protocol policy's type.
    pub fn to_network(&self) -> pop3_proto::proxy::Network {
        // Both types refuse host bits past the prefix: this cannot fail.
        pop3_proto::proxy::Network::new(self.addr, self.prefix)
            .expect("an IpNetwork has no host bits past its prefix")
    }

    /// From the PROXY protocol policy's type.
    pub fn from_network(net: pop3_proto::proxy::Network) -> IpNetwork {
        IpNetwork {
            addr: net.address(),
            prefix: net.prefix(),
        }
    }

    /// The network's first address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is in the network (an IPv4 address given as IPv6,
    /// `::ffff:a.b.c.d`, counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                mask(u128::from(u32::from(ip)), self.prefix, 32) == u128::from(u32::from(net))
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                mask(u128::from(ip), self.prefix, 128) == u128::from(net)
            }
            _ => false,
        }
    }
}

/// `bits` (of a `width`-bit address) with all but the first `prefix` cleared.
fn mask(bits: u128, prefix: u8, width: u8) -> u128 {
    let host = u32::from(width - prefix);
    if host >= 128 { 0 } else { bits >> host << host }
}

impl FromStr for IpNetwork {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s}: not an IP address"))?;
        let width = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => width,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= width)
                .ok_or_else(|| format!("{s}: the prefix length must be 0 to {width}"))?,
        };
        let bits = match addr {
            IpAddr::V4(a) => u128::from(u32::from(a)),
            IpAddr::V6(a) => u128::from(a),
        };
        if mask(bits, prefix, width) != bits {
            return Err(format!(
                "{s}: the address has bits set past the prefix length"
            ));
        }
        Ok(IpNetwork { addr, prefix })
    }
}

impl fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}
