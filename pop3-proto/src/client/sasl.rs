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
    /// The server sent more challenges than
    /// [`ClientConfig::max_sasl_challenges`](super::ClientConfig::max_sasl_challenges)
    /// allows in one exchange.
    TooManyChallenges {
        /// The limit in force.
        limit: u32,
    },
}

impl fmt::Display for SaslError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SaslError::UnexpectedChallenge => f.write_str("unexpected SASL challenge"),
            SaslError::BadChallenge => f.write_str("malformed SASL challenge"),
            SaslError::TooManyChallenges { limit } => {
                write!(f, "more than {limit} SASL challenges in one exchange")
            }
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

    /// Whether the exchange reached its end from the mechanism's side. A
    /// mechanism that authenticates the server too (SCRAM) says `false`
    /// until it has checked the server's proof: a `+OK` before that is not
    /// trusted, and the session fails.
    fn is_complete(&self) -> bool {
        true
    }
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

/// `SCRAM-SHA-256` (RFC 7677, RFC 5802), without channel binding: proves
/// the password without sending it, and checks the server's proof of the
/// same (a `+OK` before that proof is refused).
///
/// The client nonce comes from the caller (this crate has no randomness):
/// at least 18 random octets, e.g. base64 of 24 bytes from the OS RNG, never
/// reused. The user name and password are used as given (no SASLprep).
///
/// ```
/// use pop3_proto::client::sasl::{ClientMechanism, ScramSha256};
/// use pop3_proto::types::Secret;
/// // RFC 7677 §3.
/// let mut m = ScramSha256::new("user", Secret::new("pencil"), "rOprNGfwEbeRWgbNEkqO");
/// assert_eq!(m.initial_response().unwrap().expose(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
/// let last = m
///     .step(b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
///     .unwrap();
/// assert_eq!(
///     last.expose(),
///     &b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
///        p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="[..]
/// );
/// assert!(!m.is_complete());
/// assert!(m.step(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=").unwrap().is_empty());
/// assert!(m.is_complete());
/// ```
#[derive(Clone)]
pub struct ScramSha256 {
    user: String,
    password: Secret,
    nonce: String,
    min_iterations: u32,
    state: ScramState,
}

#[derive(Clone)]
enum ScramState {
    Start,
    SentFirst { bare: String },
    SentFinal { server_signature: [u8; 32] },
    Done,
}

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The most PBKDF2 iterations a server may ask for (250 times RFC 7677's
/// 4096, well above what servers use): the hashing runs inside the
/// machine's input call, where no timer can stop it, so a hostile server
/// could otherwise keep the client busy for hours.
const MAX_ITERATIONS: u32 = 1_024_000;

fn hmac256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    use hmac::Mac;
    // HMAC accepts keys of any length.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).expect("any key length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

impl ScramSha256 {
    /// Credentials of `user`, with a fresh random `client_nonce` (printable
    /// ASCII without `,`).
    pub fn new(user: &str, password: Secret, client_nonce: &str) -> Self {
        ScramSha256 {
            user: String::from(user),
            password,
            nonce: String::from(client_nonce),
            min_iterations: 4096,
            state: ScramState::Start,
        }
    }

    /// Refuse servers asking for fewer PBKDF2 iterations than `n` (default
    /// 4096, RFC 7677 §4). More than 1,024,000 are always refused
    /// (hashing that many takes about a second; a hostile server could
    /// otherwise ask for hours of it).
    pub fn min_iterations(mut self, n: u32) -> Self {
        self.min_iterations = n;
        self
    }

    fn client_final(&mut self, server_first: &[u8]) -> Result<Secret, SaslError> {
        use base64::Engine as _;
        use sha2::Digest as _;
        let ScramState::SentFirst { bare } = &self.state else {
            return Err(SaslError::UnexpectedChallenge);
        };
        let text = core::str::from_utf8(server_first).map_err(|_| SaslError::BadChallenge)?;
        let (mut nonce, mut salt, mut iterations) = (None, None, None);
        for attr in text.split(',') {
            match attr.split_once('=') {
                Some(("r", v)) => nonce = Some(v),
                Some(("s", v)) => salt = Some(v),
                Some(("i", v)) => iterations = v.parse::<u32>().ok(),
                Some(("m", _)) => return Err(SaslError::BadChallenge),
                _ => {}
            }
        }
        let (Some(nonce), Some(salt), Some(iterations)) = (nonce, salt, iterations) else {
            return Err(SaslError::BadChallenge);
        };
        if !nonce.starts_with(self.nonce.as_str())
            || nonce.len() == self.nonce.len()
            || iterations < self.min_iterations.max(1)
            || iterations > MAX_ITERATIONS
        {
            return Err(SaslError::BadChallenge);
        }
        let salt = base64::engine::general_purpose::STANDARD
            .decode(salt)
            .map_err(|_| SaslError::BadChallenge)?;
        // Hi(password, salt, i): PBKDF2 with HMAC-SHA-256, one block.
        let pw = self.password.expose();
        let mut u = hmac256(pw, &[&salt, &1u32.to_be_bytes()]);
        let mut salted = u;
        for _ in 1..iterations {
            u = hmac256(pw, &[&u]);
            for (s, x) in salted.iter_mut().zip(u.iter()) {
                *s ^= x;
            }
        }
        let client_key = hmac256(&salted, &[b"Client Key"]);
        let stored_key: [u8; 32] = sha2::Sha256::digest(client_key).into();
        let without_proof = alloc::format!("c=biws,r={nonce}");
        let auth_message = alloc::format!("{bare},{text},{without_proof}");
        let client_signature = hmac256(&stored_key, &[auth_message.as_bytes()]);
        let mut proof = client_key;
        for (p, s) in proof.iter_mut().zip(client_signature.iter()) {
            *p ^= s;
        }
        let server_key = hmac256(&salted, &[b"Server Key"]);
        let server_signature = hmac256(&server_key, &[auth_message.as_bytes()]);
        self.state = ScramState::SentFinal { server_signature };
        let proof = base64::engine::general_purpose::STANDARD.encode(proof);
        Ok(Secret::new(alloc::format!("{without_proof},p={proof}")))
    }
}

impl fmt::Debug for ScramSha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramSha256")
            .field("user", &self.user)
            .field("password", &self.password)
            .finish()
    }
}

impl ClientMechanism for ScramSha256 {
    fn name(&self) -> Mechanism {
        Mechanism::new("SCRAM-SHA-256").expect("valid mechanism name")
    }

    fn initial_response(&mut self) -> Option<Secret> {
        let mut bare = String::from("n=");
        for c in self.user.chars() {
            match c {
                ',' => bare.push_str("=2C"),
                '=' => bare.push_str("=3D"),
                c => bare.push(c),
            }
        }
        bare.push_str(",r=");
        bare.push_str(&self.nonce);
        let first = alloc::format!("n,,{bare}");
        self.state = ScramState::SentFirst { bare };
        Some(Secret::new(first))
    }

    fn step(&mut self, challenge: &[u8]) -> Result<Secret, SaslError> {
        use base64::Engine as _;
        match &self.state {
            ScramState::SentFirst { .. } => self.client_final(challenge),
            ScramState::SentFinal { server_signature } => {
                let v = challenge
                    .strip_prefix(b"v=")
                    .ok_or(SaslError::BadChallenge)?;
                let v = base64::engine::general_purpose::STANDARD
                    .decode(v)
                    .map_err(|_| SaslError::BadChallenge)?;
                if v.as_slice() != server_signature.as_slice() {
                    return Err(SaslError::BadChallenge);
                }
                self.state = ScramState::Done;
                // POP3 carries no data with +OK: the server's final message
                // came as a challenge, answered by an empty line.
                Ok(Secret::default())
            }
            ScramState::Start | ScramState::Done => Err(SaslError::UnexpectedChallenge),
        }
    }

    fn is_complete(&self) -> bool {
        matches!(self.state, ScramState::Done)
    }
}

/// A boxed mechanism, as [`super::Client::auth`] takes it.
pub type BoxedMechanism = Box<dyn ClientMechanism>;
