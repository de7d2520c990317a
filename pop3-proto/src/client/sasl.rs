//! Client-side SASL mechanisms (RFC 4422, RFC 5034).
//!
//! A mechanism is a small step machine: [`ClientMechanism::initial_response`]
//! gives what goes on the `AUTH` line (if anything), and
//! [`ClientMechanism::step`] answers each server challenge. The session
//! machine does the framing: base64, the `+` continuation lines, cancelling
//! with `*` when a step fails, and the 255-octet rule for initial responses.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::types::{Mechanism, Secret};

/// Why a mechanism could not answer a challenge. The session machine then
/// cancels the exchange (`*`), and the server answers `-ERR`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SaslError {
    /// The server sent a challenge the mechanism did not expect (too many
    /// steps, or data where none belongs).
    UnexpectedChallenge,
    /// The challenge could not be understood.
    BadChallenge,
}

impl fmt::Display for SaslError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SaslError::UnexpectedChallenge => f.write_str("unexpected SASL challenge"),
            SaslError::BadChallenge => f.write_str("malformed SASL challenge"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for SaslError {}

/// The client side of a SASL mechanism, driven by the session machine.
///
/// Implement it for mechanisms this crate does not provide (the machine only
/// moves the octets; it never looks inside them).
pub trait ClientMechanism: Send {
    /// The mechanism's name, as sent after `AUTH`.
    fn name(&self) -> Mechanism;

    /// Whether the mechanism sends the password in a recoverable form (PLAIN,
    /// LOGIN): refused on a connection without TLS when the configuration
    /// asks for it (RFC 2595 §2.3).
    fn is_cleartext(&self) -> bool {
        false
    }

    /// The initial response, if the mechanism starts with one (client-first
    /// mechanisms). Called once, before anything is sent. `Some` of an empty
    /// secret is sent as `=`.
    fn initial_response(&mut self) -> Option<Secret>;

    /// Answers one server challenge (already base64-decoded).
    fn step(&mut self, challenge: &[u8]) -> Result<Secret, SaslError>;
}

impl fmt::Debug for dyn ClientMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientMechanism({})", self.name())
    }
}

/// `PLAIN` (RFC 4616): `authzid NUL authcid NUL password`, sent as the initial
/// response.
///
/// ```
/// use pop3_proto::client::sasl::{ClientMechanism, Plain};
/// use pop3_proto::types::Secret;
/// let mut m = Plain::new("alice", Secret::new("secret"));
/// assert_eq!(m.initial_response().unwrap().expose(), b"\0alice\0secret");
/// ```
#[derive(Clone)]
pub struct Plain {
    authzid: String,
    authcid: String,
    password: Secret,
    sent: bool,
}

impl Plain {
    /// Credentials of `user`, acting as itself.
    pub fn new(user: &str, password: Secret) -> Self {
        Plain {
            authzid: String::new(),
            authcid: String::from(user),
            password,
            sent: false,
        }
    }

    /// Credentials of `user` acting as `authzid` (an administrator reading
    /// another user's maildrop, where the server allows it).
    pub fn with_authzid(authzid: &str, user: &str, password: Secret) -> Self {
        Plain {
            authzid: String::from(authzid),
            ..Plain::new(user, password)
        }
    }

    fn message(&self) -> Secret {
        let mut v =
            Vec::with_capacity(self.authzid.len() + self.authcid.len() + self.password.len() + 2);
        v.extend_from_slice(self.authzid.as_bytes());
        v.push(0);
        v.extend_from_slice(self.authcid.as_bytes());
        v.push(0);
        v.extend_from_slice(self.password.expose());
        Secret::new(v)
    }
}

impl fmt::Debug for Plain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plain")
            .field("authzid", &self.authzid)
            .field("authcid", &self.authcid)
            .field("password", &self.password)
            .finish()
    }
}

impl ClientMechanism for Plain {
    fn name(&self) -> Mechanism {
        Mechanism::new("PLAIN").expect("valid mechanism name")
    }

    fn is_cleartext(&self) -> bool {
        true
    }

    fn initial_response(&mut self) -> Option<Secret> {
        self.sent = true;
        Some(self.message())
    }

    fn step(&mut self, challenge: &[u8]) -> Result<Secret, SaslError> {
        // Only reached when the initial response could not go on the AUTH
        // line: the server then asks with an empty challenge (RFC 4616 §2).
        if !challenge.is_empty() {
            return Err(SaslError::UnexpectedChallenge);
        }
        if self.sent {
            return Err(SaslError::UnexpectedChallenge);
        }
        self.sent = true;
        Ok(self.message())
    }
}

/// `LOGIN` (draft-murchison-sasl-login): the user name, then the password,
/// each in answer to a challenge whose text is ignored (servers send
/// `Username:`, `User Name`, or nothing at all).
#[derive(Clone)]
pub struct Login {
    user: String,
    password: Secret,
    step: u8,
}

impl Login {
    /// Credentials of `user`.
    pub fn new(user: &str, password: Secret) -> Self {
        Login {
            user: String::from(user),
            password,
            step: 0,
        }
    }
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login")
            .field("user", &self.user)
            .field("password", &self.password)
            .finish()
    }
}

impl ClientMechanism for Login {
    fn name(&self) -> Mechanism {
        Mechanism::new("LOGIN").expect("valid mechanism name")
    }

    fn is_cleartext(&self) -> bool {
        true
    }

    fn initial_response(&mut self) -> Option<Secret> {
        None
    }

    fn step(&mut self, _challenge: &[u8]) -> Result<Secret, SaslError> {
        self.step += 1;
        match self.step {
            1 => Ok(Secret::new(Vec::from(self.user.as_bytes()))),
            2 => Ok(self.password.clone()),
            _ => Err(SaslError::UnexpectedChallenge),
        }
    }
}

/// `CRAM-MD5` (RFC 2195): answers the server's challenge with
/// `user SP hex(HMAC-MD5(secret, challenge))`.
///
/// ```
/// use pop3_proto::client::sasl::{ClientMechanism, CramMd5};
/// use pop3_proto::types::Secret;
/// let mut m = CramMd5::new("tim", Secret::new("tanstaaftanstaaf"));
/// let answer = m.step(b"<1896.697170952@postoffice.reston.mci.net>").unwrap();
/// assert_eq!(answer.expose(), b"tim b913a602c7eda7a495b4e6e7334d3890");
/// ```
#[derive(Clone)]
pub struct CramMd5 {
    user: String,
    secret: Secret,
    done: bool,
}

impl CramMd5 {
    /// Credentials of `user`.
    pub fn new(user: &str, secret: Secret) -> Self {
        CramMd5 {
            user: String::from(user),
            secret,
            done: false,
        }
    }
}

impl fmt::Debug for CramMd5 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CramMd5")
            .field("user", &self.user)
            .field("secret", &self.secret)
            .finish()
    }
}

impl ClientMechanism for CramMd5 {
    fn name(&self) -> Mechanism {
        Mechanism::new("CRAM-MD5").expect("valid mechanism name")
    }

    fn initial_response(&mut self) -> Option<Secret> {
        None
    }

    fn step(&mut self, challenge: &[u8]) -> Result<Secret, SaslError> {
        use hmac::{Hmac, Mac};
        if self.done || challenge.is_empty() {
            return Err(SaslError::UnexpectedChallenge);
        }
        self.done = true;
        let mut mac = Hmac::<md5::Md5>::new_from_slice(self.secret.expose())
            .map_err(|_| SaslError::BadChallenge)?;
        mac.update(challenge);
        let digest = mac.finalize().into_bytes();
        let mut out = Vec::with_capacity(self.user.len() + 33);
        out.extend_from_slice(self.user.as_bytes());
        out.push(b' ');
        out.extend_from_slice(crate::types::hex_lower(&digest).as_bytes());
        Ok(Secret::new(out))
    }
}

/// `XOAUTH2` (Google, Microsoft): `user=U ^A auth=Bearer T ^A ^A`.
///
/// By default the message goes as the initial response; Office 365 needs
/// the two-step form ([`XOAuth2::two_step`]): `AUTH XOAUTH2` alone, then the
/// message in answer to the empty challenge. After a failure the server
/// sends an error challenge (JSON); it is answered with an empty response,
/// and the server's `-ERR` follows.
#[derive(Clone)]
pub struct XOAuth2 {
    user: String,
    token: Secret,
    two_step: bool,
    sent: bool,
}

impl XOAuth2 {
    /// `user` with the OAuth 2.0 access `token`.
    pub fn new(user: &str, token: Secret) -> Self {
        XOAuth2 {
            user: String::from(user),
            token,
            two_step: false,
            sent: false,
        }
    }

    /// Sends the message after the first challenge instead of as the
    /// initial response.
    pub fn two_step(mut self) -> Self {
        self.two_step = true;
        self
    }

    fn message(&self) -> Secret {
        let mut v = Vec::new();
        v.extend_from_slice(b"user=");
        v.extend_from_slice(self.user.as_bytes());
        v.extend_from_slice(b"\x01auth=Bearer ");
        v.extend_from_slice(self.token.expose());
        v.extend_from_slice(b"\x01\x01");
        Secret::new(v)
    }
}

impl fmt::Debug for XOAuth2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XOAuth2")
            .field("user", &self.user)
            .field("token", &self.token)
            .field("two_step", &self.two_step)
            .finish()
    }
}

impl ClientMechanism for XOAuth2 {
    fn name(&self) -> Mechanism {
        Mechanism::new("XOAUTH2").expect("valid mechanism name")
    }

    fn is_cleartext(&self) -> bool {
        true
    }

    fn initial_response(&mut self) -> Option<Secret> {
        if self.two_step {
            return None;
        }
        self.sent = true;
        Some(self.message())
    }

    fn step(&mut self, _challenge: &[u8]) -> Result<Secret, SaslError> {
        if self.sent {
            // The error challenge: acknowledge it so the server ends the
            // exchange with -ERR.
            return Ok(Secret::default());
        }
        self.sent = true;
        Ok(self.message())
    }
}

/// `OAUTHBEARER` (RFC 7628): `n,a=user,^Ahost=H^Aport=P^Aauth=Bearer T^A^A`
/// as the initial response. After an error challenge the client answers
/// `^A` (base64 `AQ==`) and the server's `-ERR` follows (RFC 7628 §3.2.3).
///
/// ```
/// use pop3_proto::client::sasl::{ClientMechanism, OAuthBearer};
/// use pop3_proto::types::Secret;
/// let mut m = OAuthBearer::new("user@example.com", Secret::new("vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg=="))
///     .with_host("server.example.com", 143);
/// assert_eq!(
///     m.initial_response().unwrap().expose(),
///     &b"n,a=user@example.com,\x01host=server.example.com\x01port=143\x01\
///        auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01"[..]
/// );
/// assert_eq!(m.step(b"{\"status\":\"invalid_token\"}").unwrap().expose(), b"\x01");
/// ```
#[derive(Clone)]
pub struct OAuthBearer {
    user: String,
    host: Option<(String, u16)>,
    token: Secret,
}

impl OAuthBearer {
    /// `user` with the OAuth 2.0 bearer `token`.
    pub fn new(user: &str, token: Secret) -> Self {
        OAuthBearer {
            user: String::from(user),
            host: None,
            token,
        }
    }

    /// Adds the server's host name and port (some servers require them).
    pub fn with_host(mut self, host: &str, port: u16) -> Self {
        self.host = Some((String::from(host), port));
        self
    }
}

impl fmt::Debug for OAuthBearer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthBearer")
            .field("user", &self.user)
            .field("host", &self.host)
            .field("token", &self.token)
            .finish()
    }
}

impl ClientMechanism for OAuthBearer {
    fn name(&self) -> Mechanism {
        Mechanism::new("OAUTHBEARER").expect("valid mechanism name")
    }

    fn is_cleartext(&self) -> bool {
        true
    }

    fn initial_response(&mut self) -> Option<Secret> {
        let mut v = Vec::new();
        v.extend_from_slice(b"n,a=");
        // RFC 5801 saslname: ',' and '=' are escaped.
        for &b in self.user.as_bytes() {
            match b {
                b',' => v.extend_from_slice(b"=2C"),
                b'=' => v.extend_from_slice(b"=3D"),
                _ => v.push(b),
            }
        }
        v.extend_from_slice(b",\x01");
        if let Some((host, port)) = &self.host {
            v.extend_from_slice(b"host=");
            v.extend_from_slice(host.as_bytes());
            v.extend_from_slice(b"\x01port=");
            v.extend_from_slice(alloc::format!("{port}").as_bytes());
            v.push(1);
        }
        v.extend_from_slice(b"auth=Bearer ");
        v.extend_from_slice(self.token.expose());
        v.extend_from_slice(b"\x01\x01");
        Some(Secret::new(v))
    }

    fn step(&mut self, _challenge: &[u8]) -> Result<Secret, SaslError> {
        Ok(Secret::new(&b"\x01"[..]))
    }
}

/// A boxed mechanism, as [`super::Client::auth`] takes it.
pub type BoxedMechanism = Box<dyn ClientMechanism>;
