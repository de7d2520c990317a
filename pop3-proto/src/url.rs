//! POP URLs (RFC 2384): `pop://user;AUTH=mech@host:port`.
//!
//! Needs the `std` feature (international host names are converted with
//! IDNA).
//!
//! ```
//! use pop3_proto::client::Security;
//! use pop3_proto::url::PopUrl;
//!
//! let url: PopUrl = "pops://alice@pop.example.com".parse()?;
//! assert_eq!(url.security, Security::ImplicitTls);
//! assert_eq!(url.port, 995);
//! assert_eq!(url.account_id(), "alice@pop.example.com");
//! # Ok::<(), pop3_proto::url::UrlError>(())
//! ```

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::client::Security;
use crate::types::Mechanism;

/// How to authenticate, from the URL's `;AUTH=` or the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthMethod {
    /// `;AUTH=*` (and no `;AUTH=` at all): the client picks the strongest
    /// way offered and falls back to the next when the server refuses one
    /// ([`login_task`](crate::fetch::login_task)); without TLS, nothing that
    /// reveals the password unless the client allows clear text.
    Any,
    /// USER and PASS (RFC 1939).
    User,
    /// `;AUTH=+APOP`.
    Apop,
    /// A SASL mechanism (RFC 5034).
    Sasl(Mechanism),
}

impl AuthMethod {
    /// Parses a `;AUTH=` value or a command-line name: `*`, `+APOP`/`APOP`,
    /// `USER`, or a SASL mechanism name (case-insensitive).
    ///
    /// ```
    /// use pop3_proto::url::AuthMethod;
    /// assert_eq!(AuthMethod::parse("+apop").unwrap(), AuthMethod::Apop);
    /// assert!(matches!(AuthMethod::parse("PLAIN").unwrap(), AuthMethod::Sasl(_)));
    /// ```
    pub fn parse(s: &str) -> Result<AuthMethod, UrlError> {
        let upper = s.to_ascii_uppercase();
        match upper.as_str() {
            "*" => Ok(AuthMethod::Any),
            "+APOP" | "APOP" => Ok(AuthMethod::Apop),
            "USER" | "+USER" => Ok(AuthMethod::User),
            name => Mechanism::new(name)
                .map(AuthMethod::Sasl)
                .map_err(|_| UrlError::BadAuth(s.to_owned())),
        }
    }
}

/// The host part of a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Host {
    /// A DNS name, in ASCII (international names are converted with IDNA).
    Domain(String),
    /// An IPv4 address.
    Ipv4(Ipv4Addr),
    /// An IPv6 address (written `[...]` in the URL).
    Ipv6(Ipv6Addr),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Domain(d) => f.write_str(d),
            Host::Ipv4(a) => write!(f, "{a}"),
            Host::Ipv6(a) => write!(f, "[{a}]"),
        }
    }
}

impl Host {
    /// The form to resolve or connect to and to check the certificate
    /// against (an IPv6 address without brackets).
    pub fn connect_name(&self) -> String {
        match self {
            Host::Domain(d) => d.clone(),
            Host::Ipv4(a) => a.to_string(),
            Host::Ipv6(a) => a.to_string(),
        }
    }
}

/// A parsed POP URL.
///
/// ```
/// use pop3_proto::client::Security;
/// use pop3_proto::url::{AuthMethod, Host, PopUrl};
///
/// let url = PopUrl::parse("pop://rg;AUTH=+APOP@mail.eudora.com:8110").unwrap();
/// assert_eq!(url.user.as_deref(), Some("rg"));
/// assert_eq!(url.auth, AuthMethod::Apop);
/// assert_eq!(url.host, Host::Domain("mail.eudora.com".into()));
/// assert_eq!(url.port, 8110);
///
/// let url = PopUrl::parse("pops://j%40example.org@[::1]").unwrap();
/// assert_eq!(url.user.as_deref(), Some("j@example.org"));
/// assert_eq!(url.security, Security::ImplicitTls);
/// assert_eq!(url.port, 995);
///
/// let url = PopUrl::parse("pop3://u@bücher.example").unwrap();
/// assert_eq!(url.host, Host::Domain("xn--bcher-kva.example".into()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PopUrl {
    /// [`Security::Plain`] for `pop:`/`pop3:`, [`Security::ImplicitTls`] for
    /// `pops:`/`pop3s:`.
    pub security: Security,
    /// The user name, percent-decoded.
    pub user: Option<String>,
    /// The authentication method ([`AuthMethod::Any`] when not given).
    pub auth: AuthMethod,
    /// The host.
    pub host: Host,
    /// The port (110 or 995 when not given).
    pub port: u16,
}

/// Why a URL was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UrlError {
    /// Not `pop://`, `pop3://`, `pops://` or `pop3s://`.
    Scheme,
    /// No host.
    NoHost,
    /// The host is not a valid name or address.
    BadHost(String),
    /// The port is not a number from 1 to 65535.
    BadPort(String),
    /// A bad `%` escape, or the decoded octets are not UTF-8.
    BadEscape,
    /// The `;AUTH=` value is not usable.
    BadAuth(String),
    /// The URL holds a password (`user:password@`); it belongs elsewhere.
    Password,
    /// Something after the port (a path, a query) that POP URLs do not have.
    Trailing(String),
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlError::Scheme => {
                f.write_str("the URL must start with pop://, pops://, pop3:// or pop3s://")
            }
            UrlError::NoHost => f.write_str("the URL has no host"),
            UrlError::BadHost(h) => write!(f, "invalid host {h:?}"),
            UrlError::BadPort(p) => write!(f, "invalid port {p:?}"),
            UrlError::BadEscape => f.write_str("invalid %-escape in the URL"),
            UrlError::BadAuth(a) => write!(f, "invalid authentication mechanism {a:?}"),
            UrlError::Password => f.write_str("the URL must not contain a password"),
            UrlError::Trailing(t) => write!(f, "unexpected {t:?} after the host"),
        }
    }
}

impl std::error::Error for UrlError {}

fn percent_decode(s: &str) -> Result<String, UrlError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3).ok_or(UrlError::BadEscape)?;
            let hex = std::str::from_utf8(hex).map_err(|_| UrlError::BadEscape)?;
            let v = u8::from_str_radix(hex, 16).map_err(|_| UrlError::BadEscape)?;
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| UrlError::BadEscape)
}

impl PopUrl {
    /// Parses a POP URL (see the type's example).
    pub fn parse(input: &str) -> Result<PopUrl, UrlError> {
        let (scheme, rest) = input.split_once("://").ok_or(UrlError::Scheme)?;
        let security = match scheme.to_ascii_lowercase().as_str() {
            "pop" | "pop3" => Security::Plain,
            "pops" | "pop3s" => Security::ImplicitTls,
            _ => return Err(UrlError::Scheme),
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if !tail.is_empty() && tail != "/" {
            return Err(UrlError::Trailing(tail.to_owned()));
        }
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
            None => (None, authority),
        };
        let mut user = None;
        let mut auth = AuthMethod::Any;
        if let Some(info) = userinfo {
            let (name, params) = match info.find(';') {
                Some(i) => (&info[..i], Some(&info[i + 1..])),
                None => (info, None),
            };
            if name.contains(':') {
                return Err(UrlError::Password);
            }
            if !name.is_empty() {
                user = Some(percent_decode(name)?);
            }
            if let Some(params) = params {
                let (key, value) = params
                    .split_once('=')
                    .ok_or_else(|| UrlError::BadAuth(params.to_owned()))?;
                if !key.eq_ignore_ascii_case("auth") {
                    return Err(UrlError::BadAuth(params.to_owned()));
                }
                auth = AuthMethod::parse(&percent_decode(value)?)?;
            }
        }
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let close = v6
                .find(']')
                .ok_or_else(|| UrlError::BadHost(hostport.to_owned()))?;
            let addr: Ipv6Addr = v6[..close]
                .parse()
                .map_err(|_| UrlError::BadHost(hostport.to_owned()))?;
            let after = &v6[close + 1..];
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| UrlError::BadHost(hostport.to_owned()))?,
                ),
            };
            (Host::Ipv6(addr), port)
        } else {
            let (h, p) = match hostport.rfind(':') {
                Some(i) => (&hostport[..i], Some(&hostport[i + 1..])),
                None => (hostport, None),
            };
            if h.is_empty() {
                return Err(UrlError::NoHost);
            }
            let host = if let Ok(v4) = h.parse::<Ipv4Addr>() {
                Host::Ipv4(v4)
            } else {
                let decoded = percent_decode(h)?;
                let ascii =
                    idna::domain_to_ascii(&decoded).map_err(|_| UrlError::BadHost(h.to_owned()))?;
                if ascii.is_empty() || ascii.parse::<Ipv4Addr>().is_ok() {
                    return Err(UrlError::BadHost(h.to_owned()));
                }
                Host::Domain(ascii)
            };
            (host, p)
        };
        let port = match port {
            None | Some("") => security.default_port(),
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => return Err(UrlError::BadPort(p.to_owned())),
            },
        };
        Ok(PopUrl {
            security,
            user,
            auth,
            host,
            port,
        })
    }

    /// A name for the maildrop the URL designates, to key a client's
    /// records of what it has fetched (the Maildir sink's journal and file
    /// names): `user@host`.
    ///
    /// What identifies an account is the user and the server's host name,
    /// nothing of how it is reached: the scheme, STLS or not, and the port
    /// are left out (`pop://alice@host` with STLS on port 110 and
    /// `pops://alice@host` on 995 are one maildrop, and moving to implicit
    /// TLS, as RFC 8314 recommends, must not fetch everything again); the
    /// host is compared without case (IDNA maps it to lower case) and
    /// without a trailing dot. One exception: on a loopback host
    /// (`localhost`, `127.0.0.0/8`, `::1`) the port stays in the name,
    /// since each local port there is usually a tunnel to another server,
    /// and two maildrops must never share a name (a message whose UID one
    /// of them has stored would be taken as stored, and perhaps deleted,
    /// for the other).
    ///
    /// When a server moves to another name, or a tunnel to another port,
    /// keep the old name: the `fetch` examples take it with `--account`
    /// (that is the whole identity, so the journal carries over as it is).
    ///
    /// ```
    /// use pop3_proto::url::PopUrl;
    /// let id = |s: &str| PopUrl::parse(s).unwrap().account_id();
    /// assert_eq!(id("pops://alice@mail.example.org"), "alice@mail.example.org");
    /// assert_eq!(id("pop://alice@Mail.Example.ORG.:110"), "alice@mail.example.org");
    /// assert_eq!(id("pops://alice@mail.example.org:9950"), "alice@mail.example.org");
    /// assert_eq!(id("pops://alice@[::1]:9950"), "alice@[::1]:9950");
    /// assert_eq!(id("pop://alice@localhost:1110"), "alice@localhost:1110");
    /// ```
    pub fn account_id(&self) -> String {
        let user = self.user.as_deref().unwrap_or("");
        let host = match &self.host {
            Host::Domain(d) => d.trim_end_matches('.').to_ascii_lowercase(),
            other => other.to_string(),
        };
        if self.is_loopback() {
            format!("{user}@{host}:{}", self.port)
        } else {
            format!("{user}@{host}")
        }
    }

    /// The names [`PopUrl::account_id`] gave this maildrop in earlier
    /// versions, when they differ from today's (`user@host` as written,
    /// plus `:port` unless it was the scheme's usual one): a client reads
    /// the records it kept under them too, so that an upgrade fetches
    /// nothing again.
    ///
    /// ```
    /// use pop3_proto::url::PopUrl;
    /// let url = PopUrl::parse("pops://alice@mail.example.org:9950").unwrap();
    /// assert_eq!(url.former_account_ids(), ["alice@mail.example.org:9950"]);
    /// let url = PopUrl::parse("pops://alice@mail.example.org").unwrap();
    /// assert!(url.former_account_ids().is_empty());
    /// ```
    pub fn former_account_ids(&self) -> Vec<String> {
        let user = self.user.as_deref().unwrap_or("");
        let former = if self.port == self.security.default_port() {
            format!("{user}@{}", self.host)
        } else {
            format!("{user}@{}:{}", self.host, self.port)
        };
        if former == self.account_id() {
            Vec::new()
        } else {
            vec![former]
        }
    }

    fn is_loopback(&self) -> bool {
        match &self.host {
            Host::Domain(d) => {
                let d = d.trim_end_matches('.');
                d.eq_ignore_ascii_case("localhost")
                    || d.to_ascii_lowercase().ends_with(".localhost")
            }
            Host::Ipv4(a) => a.is_loopback(),
            Host::Ipv6(a) => a.is_loopback(),
        }
    }
}

impl std::str::FromStr for PopUrl {
    type Err = UrlError;
    fn from_str(s: &str) -> Result<PopUrl, UrlError> {
        PopUrl::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_account_whatever_the_scheme_port_or_host_spelling() {
        let id = |s: &str| PopUrl::parse(s).unwrap().account_id();
        let want = "alice@pop.example.com";
        for url in [
            "pop://alice@pop.example.com",
            "pop://alice@pop.example.com:110",
            "pops://alice@pop.example.com",
            "pop3s://alice@POP.Example.Com.:995",
            "pop://alice@pop.example.com.:8110",
            "pops://alice;AUTH=PLAIN@pop.example.com:1995",
        ] {
            assert_eq!(id(url), want, "{url}");
        }
        // Other users and hosts are other accounts; so are loopback ports
        // (tunnels to different servers).
        assert_ne!(id("pops://bob@pop.example.com"), want);
        assert_ne!(id("pops://alice@pop2.example.com"), want);
        assert_ne!(
            id("pop://alice@127.0.0.1:1110"),
            id("pop://alice@127.0.0.1:1111")
        );
        assert_ne!(
            id("pop://alice@localhost.:1110"),
            id("pop://alice@LOCALHOST:1111")
        );
        // The earlier names are still known, to read their records.
        let url = PopUrl::parse("pop://alice@POP.example.com.:8110").unwrap();
        assert_eq!(url.former_account_ids(), ["alice@pop.example.com.:8110"]);
    }

    #[test]
    fn rfc_examples_and_edges() {
        let u = PopUrl::parse("pop://rg@mailsrv.qualcomm.com").unwrap();
        assert_eq!(u.port, 110);
        assert_eq!(u.auth, AuthMethod::Any);
        let u = PopUrl::parse("pop://baz;AUTH=SCRAM-MD5@foo.bar").unwrap();
        assert_eq!(
            u.auth,
            AuthMethod::Sasl(Mechanism::new("SCRAM-MD5").unwrap())
        );
        let u = PopUrl::parse("POP3S://a%3Bb;auth=*@127.0.0.1:9950/").unwrap();
        assert_eq!(u.user.as_deref(), Some("a;b"));
        assert_eq!(u.host, Host::Ipv4(Ipv4Addr::LOCALHOST));
        assert_eq!(u.port, 9950);
        let u = PopUrl::parse("pop://[::1]:1110").unwrap();
        assert_eq!(u.host, Host::Ipv6(Ipv6Addr::LOCALHOST));
        assert_eq!(u.user, None);
        assert_eq!(PopUrl::parse("imap://x@y"), Err(UrlError::Scheme));
        assert_eq!(PopUrl::parse("pop://u:p@h"), Err(UrlError::Password));
        assert!(matches!(
            PopUrl::parse("pop://u@h:0"),
            Err(UrlError::BadPort(_))
        ));
        assert!(matches!(
            PopUrl::parse("pop://u@h:99999"),
            Err(UrlError::BadPort(_))
        ));
        assert!(matches!(
            PopUrl::parse("pop://u@h/INBOX"),
            Err(UrlError::Trailing(_))
        ));
        assert!(matches!(
            PopUrl::parse("pop://u@[::1"),
            Err(UrlError::BadHost(_))
        ));
        assert_eq!(PopUrl::parse("pop://u@"), Err(UrlError::NoHost));
        assert_eq!(PopUrl::parse("pop://u%zz@h"), Err(UrlError::BadEscape));
        let u = PopUrl::parse("pop://u@B%C3%BCcher.Example").unwrap();
        assert_eq!(u.host, Host::Domain("xn--bcher-kva.example".into()));
    }
}
