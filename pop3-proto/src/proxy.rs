//! The PROXY protocol (versions 1 and 2) that a load balancer puts before a
//! connection's first byte to tell the server who the client is, with no
//! I/O of its own.
//!
//! [`parse`] looks at the octets received so far and says how many more
//! the header certainly needs ([`Parsed::Incomplete`]), what it carried
//! ([`Parsed::Proxied`], [`Parsed::Local`]), or why it is not a header
//! ([`ProxyError`]). It never asks for an octet past the header's end, so
//! an adapter that reads exactly [`Parsed::Incomplete::needed`] octets at a
//! time leaves the POP3 (or TLS) stream behind it untouched. [`Reader`]
//! does that bookkeeping.
//!
//! Bounds: a version 1 header is at most [`V1_MAX`] octets, a version 2
//! header at most [`V2_MAX`] (its type-length-value extensions are skipped
//! unread).
//!
//! Whom to believe is [`ProxyPolicy`]'s part: a header is trusted only on
//! a connection from one of its [`Network`]s.
//!
//! ```
//! use pop3_proto::proxy::{Parsed, parse};
//!
//! let header = b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 110\r\n";
//! match parse(header)? {
//!     Parsed::Proxied { source, consumed, .. } => {
//!         assert_eq!(source.to_string(), "192.0.2.7:40000");
//!         assert_eq!(consumed, header.len());
//!     }
//!     other => panic!("{other:?}"),
//! }
//! assert_eq!(parse(b"PROXY TCP4")?, Parsed::Incomplete { needed: 5 });
//! assert!(parse(b"USER alice\r\n").is_err());
//! # Ok::<(), pop3_proto::proxy::ProxyError>(())
//! ```

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use core::str::FromStr;
use core::time::Duration;

/// The longest version 1 header, its CRLF included.
pub const V1_MAX: usize = 107;

/// The first twelve octets of every version 2 header.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The most octets a version 2 header may carry after its fixed sixteen
/// (addresses and extensions).
pub const V2_MAX_PAYLOAD: usize = 4096;

/// The longest version 2 header accepted.
pub const V2_MAX: usize = 16 + V2_MAX_PAYLOAD;

/// The shortest header of either version (`PROXY UNKNOWN\r\n`).
const MIN_HEADER: usize = 15;

/// What the octets received so far amount to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Parsed {
    /// Not a whole header yet: at least `needed` more octets belong to it.
    Incomplete {
        /// Octets that can be read without reading past the header.
        needed: usize,
    },
    /// A proxied connection: the client is `source`, and it connected to
    /// `destination`.
    Proxied {
        /// The client's address.
        source: SocketAddr,
        /// The address the client connected to (the proxy's).
        destination: SocketAddr,
        /// The header's length: the session's own octets follow.
        consumed: usize,
    },
    /// The proxy speaks for itself (a version 2 `LOCAL` header, as health
    /// checks send), or gives no usable address (version 1 `UNKNOWN`, a
    /// version 2 unspecified or Unix family): the connection's own
    /// addresses stand.
    Local {
        /// The header's length: the session's own octets follow.
        consumed: usize,
    },
}

/// Why the octets are not a PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyError {
    /// Neither signature: the client did not send a header.
    NotProxy,
    /// A version 1 header that does not parse (bad protocol word, address,
    /// port, spacing or character).
    V1Malformed,
    /// No CRLF within [`V1_MAX`] octets.
    V1TooLong,
    /// A version 2 header of a version other than 2.
    V2Version(u8),
    /// A version 2 command other than `LOCAL` and `PROXY`.
    V2Command(u8),
    /// A version 2 family or transport that is not known, or datagrams.
    V2Family(u8),
    /// A version 2 header whose length cannot hold its addresses.
    V2Short,
    /// A version 2 header longer than [`V2_MAX`].
    V2TooLong(usize),
    /// The connection ended before the header did.
    Truncated,
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyError::NotProxy => f.write_str("no PROXY protocol header"),
            ProxyError::V1Malformed => f.write_str("malformed PROXY v1 header"),
            ProxyError::V1TooLong => write!(f, "PROXY v1 header longer than {V1_MAX} octets"),
            ProxyError::V2Version(v) => write!(f, "PROXY v2 header of version {v}"),
            ProxyError::V2Command(c) => write!(f, "PROXY v2 header with command {c}"),
            ProxyError::V2Family(x) => {
                write!(f, "PROXY v2 header with family/transport {x:#04x}")
            }
            ProxyError::V2Short => f.write_str("PROXY v2 header too short for its addresses"),
            ProxyError::V2TooLong(n) => {
                write!(f, "PROXY v2 header of {n} octets (at most {V2_MAX})")
            }
            ProxyError::Truncated => f.write_str("connection closed within the PROXY header"),
        }
    }
}

impl core::error::Error for ProxyError {}

/// Reads the header at the start of `input` (the octets received so far).
///
/// ```
/// use pop3_proto::proxy::{Parsed, parse, v2_header};
///
/// let health_check = v2_header(None);
/// assert_eq!(parse(&health_check)?, Parsed::Local { consumed: 16 });
/// assert_eq!(parse(&health_check[..3])?, Parsed::Incomplete { needed: 13 });
/// # Ok::<(), pop3_proto::proxy::ProxyError>(())
/// ```
pub fn parse(input: &[u8]) -> Result<Parsed, ProxyError> {
    match input.first() {
        None => Ok(Parsed::Incomplete { needed: MIN_HEADER }),
        Some(b'P') => parse_v1(input),
        Some(b'\r') => parse_v2(input),
        Some(_) => Err(ProxyError::NotProxy),
    }
}

fn parse_v1(input: &[u8]) -> Result<Parsed, ProxyError> {
    const START: &[u8] = b"PROXY ";
    let head = input.len().min(START.len());
    if input[..head] != START[..head] {
        return Err(ProxyError::NotProxy);
    }
    let end = input.windows(2).position(|w| w == b"\r\n");
    let seen = end.unwrap_or(input.len());
    // Printable ASCII only before the CRLF (a lone CR is refused too).
    let printable =
        |(i, &b): (usize, &u8)| (0x20..0x7f).contains(&b) || (b == b'\r' && i + 1 == input.len());
    if !input[..seen].iter().enumerate().all(printable) {
        return Err(ProxyError::V1Malformed);
    }
    let Some(end) = end else {
        if input.len() >= V1_MAX {
            return Err(ProxyError::V1TooLong);
        }
        let needed = if input.len() < MIN_HEADER {
            MIN_HEADER - input.len()
        } else if input.last() == Some(&b'\r') {
            1
        } else {
            2
        };
        return Ok(Parsed::Incomplete {
            needed: needed.min(V1_MAX - input.len()),
        });
    };
    let consumed = end + 2;
    let line =
        core::str::from_utf8(&input[START.len()..end]).map_err(|_| ProxyError::V1Malformed)?;
    let mut fields = line.split(' ');
    let proto = fields.next().ok_or(ProxyError::V1Malformed)?;
    if proto == "UNKNOWN" {
        // Whatever follows is to be ignored.
        return Ok(Parsed::Local { consumed });
    }
    let v6 = match proto {
        "TCP4" => false,
        "TCP6" => true,
        _ => return Err(ProxyError::V1Malformed),
    };
    let mut next = || fields.next().ok_or(ProxyError::V1Malformed);
    let (src, dst, sport, dport) = (next()?, next()?, next()?, next()?);
    if fields.next().is_some() {
        return Err(ProxyError::V1Malformed);
    }
    let address = |text: &str| -> Result<IpAddr, ProxyError> {
        if v6 {
            Ipv6Addr::from_str(text).map(IpAddr::V6)
        } else {
            Ipv4Addr::from_str(text).map(IpAddr::V4)
        }
        .map_err(|_| ProxyError::V1Malformed)
    };
    Ok(Parsed::Proxied {
        source: SocketAddr::new(address(src)?, port(sport)?),
        destination: SocketAddr::new(address(dst)?, port(dport)?),
        consumed,
    })
}

/// A decimal port without sign or leading zero.
fn port(text: &str) -> Result<u16, ProxyError> {
    let digits = text.bytes().all(|b| b.is_ascii_digit());
    if !digits || text.is_empty() || text.len() > 5 || (text.len() > 1 && text.starts_with('0')) {
        return Err(ProxyError::V1Malformed);
    }
    text.parse().map_err(|_| ProxyError::V1Malformed)
}

fn parse_v2(input: &[u8]) -> Result<Parsed, ProxyError> {
    let head = input.len().min(V2_SIGNATURE.len());
    if input[..head] != V2_SIGNATURE[..head] {
        return Err(ProxyError::NotProxy);
    }
    if let Some(&ver_cmd) = input.get(12) {
        if ver_cmd >> 4 != 2 {
            return Err(ProxyError::V2Version(ver_cmd >> 4));
        }
        if ver_cmd & 0xf > 1 {
            return Err(ProxyError::V2Command(ver_cmd & 0xf));
        }
    }
    if let Some(&family) = input.get(13) {
        // Families 0-3 (unspecified, IPv4, IPv6, Unix); transports
        // unspecified and stream (datagrams have no place here).
        if family >> 4 > 3 || family & 0xf > 1 {
            return Err(ProxyError::V2Family(family));
        }
    }
    if input.len() < 16 {
        return Ok(Parsed::Incomplete {
            needed: 16 - input.len(),
        });
    }
    let payload = usize::from(u16::from_be_bytes([input[14], input[15]]));
    if payload > V2_MAX_PAYLOAD {
        return Err(ProxyError::V2TooLong(16 + payload));
    }
    let consumed = 16 + payload;
    if input.len() < consumed {
        return Ok(Parsed::Incomplete {
            needed: consumed - input.len(),
        });
    }
    let local = input[12] & 0xf == 0;
    let body = &input[16..consumed];
    let family = input[13];
    // The address block's size by family; a LOCAL header's is skipped.
    let needs = match family >> 4 {
        1 => 12,
        2 => 36,
        3 => 216,
        _ => 0,
    };
    if !local && body.len() < needs {
        return Err(ProxyError::V2Short);
    }
    if local || family & 0xf == 0 {
        return Ok(Parsed::Local { consumed });
    }
    let port = |at: usize| u16::from_be_bytes([body[at], body[at + 1]]);
    let (source, destination) = match family >> 4 {
        1 => {
            let ip = |at: usize| IpAddr::from(<[u8; 4]>::try_from(&body[at..at + 4]).expect("4"));
            (
                SocketAddr::new(ip(0), port(8)),
                SocketAddr::new(ip(4), port(10)),
            )
        }
        2 => {
            let ip =
                |at: usize| IpAddr::from(<[u8; 16]>::try_from(&body[at..at + 16]).expect("16"));
            (
                SocketAddr::new(ip(0), port(32)),
                SocketAddr::new(ip(16), port(34)),
            )
        }
        // Unspecified or Unix: no IP address to use.
        _ => return Ok(Parsed::Local { consumed }),
    };
    Ok(Parsed::Proxied {
        source,
        destination,
        consumed,
    })
}

/// The version 1 header a proxy would send for a TCP connection from
/// `source` to `destination`, CRLF included (IPv4 with IPv6: both written
/// as IPv6).
///
/// ```
/// use pop3_proto::proxy::v1_header;
/// let header = v1_header("192.0.2.7:40000".parse().unwrap(), "198.51.100.1:110".parse().unwrap());
/// assert_eq!(header, "PROXY TCP4 192.0.2.7 198.51.100.1 40000 110\r\n");
/// ```
pub fn v1_header(source: SocketAddr, destination: SocketAddr) -> String {
    use core::fmt::Write as _;
    let (src, dst) = same_family(source.ip(), destination.ip());
    let proto = if src.is_ipv4() { "TCP4" } else { "TCP6" };
    let mut out = String::new();
    let _ = write!(
        out,
        "PROXY {proto} {src} {dst} {} {}\r\n",
        source.port(),
        destination.port()
    );
    out
}

/// The version 2 header a proxy would send: `PROXY` for a TCP connection
/// from the first address to the second, `LOCAL` for `None` (IPv4 with
/// IPv6: both written as IPv6).
///
/// ```
/// use pop3_proto::proxy::{Parsed, parse, v2_header};
/// let (source, destination) = ("[2001:db8::7]:40000".parse().unwrap(), "[2001:db8::1]:110".parse().unwrap());
/// let header = v2_header(Some((source, destination)));
/// assert_eq!(parse(&header)?, Parsed::Proxied { source, destination, consumed: header.len() });
/// # Ok::<(), pop3_proto::proxy::ProxyError>(())
/// ```
pub fn v2_header(addresses: Option<(SocketAddr, SocketAddr)>) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + 36);
    out.extend_from_slice(&V2_SIGNATURE);
    let Some((source, destination)) = addresses else {
        out.extend_from_slice(&[0x20, 0x00, 0, 0]);
        return out;
    };
    out.push(0x21);
    match same_family(source.ip(), destination.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.extend_from_slice(&[0x11, 0, 12]);
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        (s, d) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            out.extend_from_slice(&[0x21, 0, 36]);
            out.extend_from_slice(&v6(s).octets());
            out.extend_from_slice(&v6(d).octets());
        }
    }
    out.extend_from_slice(&source.port().to_be_bytes());
    out.extend_from_slice(&destination.port().to_be_bytes());
    out
}

/// Both addresses of one family: IPv4 with IPv6 become IPv6 (mapped).
fn same_family(a: IpAddr, b: IpAddr) -> (IpAddr, IpAddr) {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V6(b)) => (IpAddr::V6(a.to_ipv6_mapped()), IpAddr::V6(b)),
        (IpAddr::V6(a), IpAddr::V4(b)) => (IpAddr::V6(a), IpAddr::V6(b.to_ipv6_mapped())),
        pair => pair,
    }
}

/// Collects a header from reads that never go past it: ask
/// [`Reader::space`] for where the next read goes (exactly the octets the
/// header still certainly needs), then report how many came with
/// [`Reader::filled`].
///
/// ```
/// use pop3_proto::proxy::{Parsed, Reader};
///
/// let mut wire: &[u8] = b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 110\r\nUSER alice\r\n";
/// let mut reader = Reader::new();
/// let parsed = loop {
///     let space = reader.space();
///     let n = space.len(); // a read of at most this much
///     space.copy_from_slice(&wire[..n]);
///     wire = &wire[n..];
///     match reader.filled(n)? {
///         Parsed::Incomplete { .. } => continue,
///         done => break done,
///     }
/// };
/// assert!(matches!(parsed, Parsed::Proxied { .. }));
/// assert_eq!(wire, b"USER alice\r\n"); // untouched
/// # Ok::<(), pop3_proto::proxy::ProxyError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Reader {
    buf: Vec<u8>,
    len: usize,
}

impl Reader {
    /// A reader at the connection's first octet.
    pub fn new() -> Reader {
        Reader::default()
    }

    /// Where the next read goes: as many octets as the header still
    /// certainly needs (never zero).
    pub fn space(&mut self) -> &mut [u8] {
        let needed = match parse(&self.buf[..self.len]) {
            Ok(Parsed::Incomplete { needed }) => needed,
            // Already done or failed: one more octet shows it again.
            _ => 1,
        };
        if self.buf.len() < self.len + needed {
            self.buf.resize(self.len + needed, 0);
        }
        &mut self.buf[self.len..self.len + needed]
    }

    /// `n` octets were read into [`Reader::space`] (0: the connection
    /// ended). [`Parsed::Incomplete`] asks for another read.
    pub fn filled(&mut self, n: usize) -> Result<Parsed, ProxyError> {
        if n == 0 {
            return Err(ProxyError::Truncated);
        }
        self.len = (self.len + n).min(self.buf.len());
        parse(&self.buf[..self.len])
    }
}

/// A network in CIDR notation (`192.0.2.0/24`, `2001:db8::/32`; a bare
/// address is the network of that address alone).
///
/// ```
/// use pop3_proto::proxy::Network;
/// let net: Network = "10.1.0.0/16".parse()?;
/// assert!(net.contains("10.1.2.3".parse().unwrap()));
/// assert!(net.contains("::ffff:10.1.2.3".parse().unwrap())); // IPv4-mapped
/// assert!(!net.contains("10.2.0.1".parse().unwrap()));
/// assert!("10.1.0.1/16".parse::<Network>().is_err()); // host bits set
/// # Ok::<(), pop3_proto::proxy::NetworkError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Network {
    address: IpAddr,
    prefix: u8,
}

impl Network {
    /// The network of `address` with a `prefix`-bit mask, or why not.
    pub fn new(address: IpAddr, prefix: u8) -> Result<Network, NetworkError> {
        let bits = if address.is_ipv4() { 32 } else { 128 };
        if prefix > bits {
            return Err(NetworkError::Prefix);
        }
        let net = Network { address, prefix };
        if net.masked(address) != Some(address_bits(address)) {
            return Err(NetworkError::HostBits);
        }
        Ok(net)
    }

    /// The network's first address.
    pub fn address(&self) -> IpAddr {
        self.address
    }

    /// The mask's length in bits.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is in the network (an IPv4-mapped IPv6 address counts
    /// as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.masked(ip.to_canonical()) == Some(address_bits(self.address))
    }

    /// `ip`'s bits under the mask, if of the network's family.
    fn masked(&self, ip: IpAddr) -> Option<u128> {
        let (bits, width) = match (self.address, ip) {
            (IpAddr::V4(_), IpAddr::V4(v4)) => (u128::from(u32::from(v4)), 32),
            (IpAddr::V6(_), IpAddr::V6(v6)) => (u128::from(v6), 128),
            _ => return None,
        };
        let host = u32::from(width - self.prefix);
        let mask = u128::MAX.checked_shl(host).unwrap_or(0);
        Some(bits & mask)
    }
}

fn address_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

impl FromStr for Network {
    type Err = NetworkError;

    fn from_str(s: &str) -> Result<Network, NetworkError> {
        let (address, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let address = IpAddr::from_str(address).map_err(|_| NetworkError::Address)?;
        let prefix = match prefix {
            None if address.is_ipv4() => 32,
            None => 128,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse().map_err(|_| NetworkError::Prefix)?
            }
            Some(_) => return Err(NetworkError::Prefix),
        };
        Network::new(address, prefix)
    }
}

/// Why a text is not a [`Network`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NetworkError {
    /// The part before `/` is not an IP address.
    Address,
    /// The prefix length is not a number within the address's bits.
    Prefix,
    /// The address has bits set past the prefix (`10.0.0.1/8`: write
    /// `10.0.0.0/8`).
    HostBits,
}

impl fmt::Display for NetworkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NetworkError::Address => "not an IP address",
            NetworkError::Prefix => "not a prefix length of the address's family",
            NetworkError::HostBits => "address bits set past the prefix length",
        })
    }
}

impl core::error::Error for NetworkError {}

/// Whom a PROXY listener believes: connections from the `trusted`
/// networks must open with a header, whose client address then stands for
/// the connection's (for the per-address cap, the failed-login delay and
/// the logs); connections from anywhere else are refused, since their
/// header would be the client's own word.
///
/// ```
/// use pop3_proto::proxy::ProxyPolicy;
/// let policy = ProxyPolicy::new(vec!["10.0.0.0/8".parse()?, "::1".parse()?]);
/// assert!(policy.trusts("10.9.8.7".parse().unwrap()));
/// assert!(!policy.trusts("192.0.2.1".parse().unwrap()));
/// # Ok::<(), pop3_proto::proxy::NetworkError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
#[must_use = "a configuration does nothing until it is used"]
pub struct ProxyPolicy {
    /// The proxies' networks.
    pub trusted: Vec<Network>,
    /// How long a trusted connection has to send its whole header
    /// (default 10 s).
    pub timeout: Duration,
}

impl ProxyPolicy {
    /// Trusts the proxies in `trusted`, with the default timeout.
    pub fn new(trusted: Vec<Network>) -> ProxyPolicy {
        ProxyPolicy {
            trusted,
            timeout: Duration::from_secs(10),
        }
    }

    /// Whether a connection from `ip` may carry a header.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(ip))
    }
}

impl Default for ProxyPolicy {
    fn default() -> Self {
        ProxyPolicy::new(vec![])
    }
}
