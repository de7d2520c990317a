//! Client-side SASL mechanisms (RFC 4422, RFC 5034).
//!
//! A mechanism is a small step machine: [`ClientMechanism::initial_response`]
//! gives what goes on the `AUTH` line (if anything), and
//! [`ClientMechanism::step`] answers each server challenge. The session
//! machine does the framing: base64, the `+` continuation lines, cancelling
//! with `*` when a step fails, and the 255-octet rule for initial responses.
//!
//! A step that needs slow local work (SCRAM's PBKDF2, up to
//! [`DEFAULT_MAX_SCRAM_ITERATIONS`] rounds) says so with
//! [`ClientMechanism::step_work`]: the session machine hands the
//! [`SaslWork`] out ([`ClientEvent::SaslWork`](super::ClientEvent::SaslWork))
//! instead of running it inside [`Client::handle_input`](super::Client::handle_input),
//! the application runs it where blocking is fine, and
//! [`ClientMechanism::finish_step`] turns its [`SaslWorkDone`] into the
//! answer. [`ClientMechanism::step`] still answers the same challenge in one
//! call, for callers that drive a mechanism by hand.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;

use crate::scram::ScramHash;
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
    /// The SCRAM server asked for fewer PBKDF2 iterations than the
    /// mechanism accepts (a weakly stored password, or an attacker hoping
    /// for a cheap dictionary attack).
    TooFewIterations {
        /// What the server asked for.
        iterations: u32,
        /// The minimum in force.
        minimum: u32,
    },
    /// The SCRAM server asked for more PBKDF2 iterations than the mechanism
    /// accepts; nothing was computed.
    TooManyIterations {
        /// What the server asked for.
        iterations: u32,
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
            SaslError::TooFewIterations {
                iterations,
                minimum,
            } => write!(
                f,
                "the server asked for {iterations} SCRAM iterations, fewer than {minimum}"
            ),
            SaslError::TooManyIterations { iterations, limit } => write!(
                f,
                "the server asked for {iterations} SCRAM iterations, more than {limit}"
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for SaslError {}

/// Slow local work a mechanism needs done before it can answer a challenge
/// (SCRAM's PBKDF2): an owned job, [`Send`], to run where blocking is fine
/// (a blocking thread pool, a worker thread, or inline in a blocking
/// client), never on an event loop.
///
/// Clones share the job (it may run more than once; it computes the same
/// result each time). Its output goes back as [`SaslWorkDone`]: to the
/// mechanism's [`ClientMechanism::finish_step`] when driving a mechanism by
/// hand, or to [`Client::sasl_work_done`](super::Client::sasl_work_done).
///
/// ```
/// use pop3_proto::client::sasl::SaslWork;
/// use pop3_proto::types::Secret;
/// let work = SaslWork::new(|| Secret::new("derived key"));
/// let done = std::thread::spawn(move || work.run()).join().unwrap();
/// assert_eq!(done.output().expose(), b"derived key");
/// ```
#[derive(Clone)]
pub struct SaslWork {
    job: Arc<dyn Fn() -> Secret + Send + Sync>,
    /// Set by the session machine, to match the result to the exchange.
    tag: u64,
}

impl SaslWork {
    /// A job computing `job` (e.g. a key derivation from the password and
    /// the server's salt); its output is secret material.
    pub fn new(job: impl Fn() -> Secret + Send + Sync + 'static) -> Self {
        SaslWork {
            job: Arc::new(job),
            tag: 0,
        }
    }

    /// Runs the job (slow: call it where blocking is fine).
    pub fn run(self) -> SaslWorkDone {
        SaslWorkDone {
            output: (self.job)(),
            tag: self.tag,
        }
    }

    pub(crate) fn with_tag(mut self, tag: u64) -> Self {
        self.tag = tag;
        self
    }
}

impl fmt::Debug for SaslWork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SaslWork({})", self.tag)
    }
}

impl PartialEq for SaslWork {
    /// The same job: clones of one work are equal.
    fn eq(&self, other: &Self) -> bool {
        self.tag == other.tag && Arc::ptr_eq(&self.job, &other.job)
    }
}

impl Eq for SaslWork {}

/// The output of a [`SaslWork`], from [`SaslWork::run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslWorkDone {
    output: Secret,
    tag: u64,
}

impl SaslWorkDone {
    /// What the job computed.
    pub fn output(&self) -> &Secret {
        &self.output
    }

    /// What the job computed, by value.
    pub fn into_output(self) -> Secret {
        self.output
    }

    pub(crate) fn tag(&self) -> u64 {
        self.tag
    }
}

/// The client side of a SASL mechanism, driven by the session machine.
///
/// Implement it for mechanisms this crate does not provide (the machine only
/// moves the octets; it never looks inside them). A mechanism is `Send` and
/// `Sync`, so that the session machine holding it is too.
pub trait ClientMechanism: Send + Sync {
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

    /// Whether answering `challenge` needs slow local work, asked by the
    /// session machine before [`ClientMechanism::step`]: `Ok(None)` (the
    /// default) and the machine calls `step`; `Ok(Some(work))` and the
    /// answer is [`ClientMechanism::finish_step`] of the work's output,
    /// once it was run off the event loop; `Err` cancels the exchange as a
    /// failed `step` does. A mechanism that returns work checks everything
    /// it can here, so that its errors are the same as `step`'s.
    fn step_work(&mut self, challenge: &[u8]) -> Result<Option<SaslWork>, SaslError> {
        let _ = challenge;
        Ok(None)
    }

    /// Answers the challenge given to [`ClientMechanism::step_work`] from
    /// the output of its work. The default refuses (a mechanism that never
    /// returns work is never asked).
    fn finish_step(&mut self, done: SaslWorkDone) -> Result<Secret, SaslError> {
        let _ = done;
        Err(SaslError::UnexpectedChallenge)
    }

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
    #[must_use]
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
    #[must_use]
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

/// `SCRAM-SHA-1` (RFC 5802) and `SCRAM-SHA-256` (RFC 7677), without
/// channel binding: proves the password without sending it, and checks the
/// server's proof of the same (a `+OK` before that proof is refused).
///
/// The client nonce comes from the caller (this crate has no randomness):
/// at least 18 random octets, e.g. base64 of 24 bytes from the OS RNG, never
/// reused. The password goes through SASLprep (RFC 4013) when it is text
/// that SASLprep accepts, and is used as given otherwise.
///
/// The server chooses the PBKDF2 iteration count: fewer than
/// [`Scram::min_iterations`] (4096) or more than [`Scram::max_iterations`]
/// (100,000, so that a server cannot make the client burn its CPU) fail the
/// exchange with [`SaslError::TooFewIterations`] or
/// [`SaslError::TooManyIterations`] before any key is derived.
///
/// The key derivation (PBKDF2) is the one slow step: the session machine
/// gets it as a [`SaslWork`] from [`ClientMechanism::step_work`] and hands
/// it to the application to run off the event loop. [`ClientMechanism::step`]
/// runs it inline, for callers driving the mechanism by hand:
///
/// ```
/// use pop3_proto::client::sasl::{ClientMechanism, Scram};
/// use pop3_proto::types::Secret;
/// // RFC 7677 §3.
/// let mut m = Scram::sha256("user", Secret::new("pencil"), "rOprNGfwEbeRWgbNEkqO");
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
pub struct Scram {
    hash: ScramHash,
    binding: ClientBinding,
    user: String,
    password: Secret,
    nonce: String,
    min_iterations: u32,
    max_iterations: u32,
    state: ScramState,
}

/// The channel binding of a client SCRAM exchange.
#[derive(Clone, Copy)]
enum ClientBinding {
    /// `n`: the client cannot bind.
    None,
    /// `y`: the client could bind, and the server does not offer -PLUS.
    Unused,
    /// `p=tls-exporter` (the -PLUS mechanism).
    TlsExporter([u8; 32]),
}

#[derive(Clone)]
enum ScramState {
    Start,
    SentFirst {
        bare: String,
    },
    /// The server-first message was checked; the salted password is being
    /// derived ([`SaslWork`]).
    Deriving {
        bare: String,
        server_first: String,
        nonce: String,
    },
    SentFinal {
        server_signature: Vec<u8>,
    },
    Done,
}

/// A checked server-first message.
struct ServerFirst {
    text: String,
    nonce: String,
    salt: Vec<u8>,
    iterations: u32,
}

/// The default cap on the server's iteration count ([`Scram::max_iterations`]).
pub const DEFAULT_MAX_SCRAM_ITERATIONS: u32 = 100_000;

impl Scram {
    /// `hash`'s mechanism, with the credentials of `user` and a fresh random
    /// `client_nonce` (printable ASCII without `,`).
    pub fn new(hash: ScramHash, user: &str, password: Secret, client_nonce: &str) -> Self {
        Scram {
            hash,
            binding: ClientBinding::None,
            user: String::from(user),
            password,
            nonce: String::from(client_nonce),
            min_iterations: crate::scram::MIN_ITERATIONS,
            max_iterations: DEFAULT_MAX_SCRAM_ITERATIONS,
            state: ScramState::Start,
        }
    }

    /// `SCRAM-SHA-1`.
    ///
    /// ```
    /// use pop3_proto::client::sasl::{ClientMechanism, Scram};
    /// use pop3_proto::types::Secret;
    /// // RFC 5802 §5.
    /// let mut m = Scram::sha1("user", Secret::new("pencil"), "fyko+d2lbbFgONRv9qkxdawL");
    /// assert_eq!(m.initial_response().unwrap().expose(), b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL");
    /// let last = m
    ///     .step(b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096")
    ///     .unwrap();
    /// assert_eq!(
    ///     last.expose(),
    ///     &b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="[..]
    /// );
    /// assert!(m.step(b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=").unwrap().is_empty());
    /// assert!(m.is_complete());
    /// ```
    pub fn sha1(user: &str, password: Secret, client_nonce: &str) -> Self {
        Scram::new(ScramHash::Sha1, user, password, client_nonce)
    }

    /// `SCRAM-SHA-256`.
    pub fn sha256(user: &str, password: Secret, client_nonce: &str) -> Self {
        Scram::new(ScramHash::Sha256, user, password, client_nonce)
    }

    /// The -PLUS mechanism (`SCRAM-SHA-256-PLUS`), bound to the TLS
    /// connection by its `tls-exporter` value (RFC 9266, TLS 1.3): a
    /// server on the far side of a man in the middle computes another value,
    /// and the proofs fail.
    ///
    /// ```
    /// use pop3_proto::client::sasl::{ClientMechanism, Scram};
    /// use pop3_proto::types::Secret;
    /// let mut m = Scram::sha256("user", Secret::new("pencil"), "abc").with_tls_exporter([1; 32]);
    /// assert_eq!(m.name().as_str(), "SCRAM-SHA-256-PLUS");
    /// assert_eq!(m.initial_response().unwrap().expose(), b"p=tls-exporter,,n=user,r=abc");
    /// ```
    #[must_use]
    pub fn with_tls_exporter(mut self, value: [u8; 32]) -> Self {
        self.binding = ClientBinding::TlsExporter(value);
        self
    }

    /// Says (with the GS2 flag `y`) that the client could bind to the
    /// channel but the server does not offer -PLUS, so that a server which
    /// does, behind a downgrade, refuses the exchange (RFC 5802 §6).
    #[must_use]
    pub fn could_bind(mut self) -> Self {
        if matches!(self.binding, ClientBinding::None) {
            self.binding = ClientBinding::Unused;
        }
        self
    }

    fn gs2_header(&self) -> &'static str {
        match self.binding {
            ClientBinding::None => "n,,",
            ClientBinding::Unused => "y,,",
            ClientBinding::TlsExporter(_) => "p=tls-exporter,,",
        }
    }

    /// Refuse servers asking for fewer PBKDF2 iterations than `n` (default
    /// 4096, RFC 7677 §4).
    #[must_use]
    pub fn min_iterations(mut self, n: u32) -> Self {
        self.min_iterations = n;
        self
    }

    /// Refuse servers asking for more PBKDF2 iterations than `n` (default
    /// [`DEFAULT_MAX_SCRAM_ITERATIONS`]).
    ///
    /// ```
    /// use pop3_proto::client::sasl::{ClientMechanism, SaslError, Scram};
    /// use pop3_proto::types::Secret;
    /// let mut m = Scram::sha256("user", Secret::new("pencil"), "abc").max_iterations(10_000);
    /// m.initial_response();
    /// assert_eq!(
    ///     m.step(b"r=abcdef,s=QSXCR+Q6sek8bf92,i=4000000000").unwrap_err(),
    ///     SaslError::TooManyIterations { iterations: 4_000_000_000, limit: 10_000 }
    /// );
    /// ```
    #[must_use]
    pub fn max_iterations(mut self, n: u32) -> Self {
        self.max_iterations = n;
        self
    }

    /// Checks the server-first message: everything that can fail, before
    /// any key is derived.
    fn check_server_first(&self, server_first: &[u8]) -> Result<ServerFirst, SaslError> {
        use base64::Engine as _;
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
        if !nonce.starts_with(self.nonce.as_str()) || nonce.len() == self.nonce.len() {
            return Err(SaslError::BadChallenge);
        }
        if iterations < self.min_iterations.max(1) {
            return Err(SaslError::TooFewIterations {
                iterations,
                minimum: self.min_iterations.max(1),
            });
        }
        if iterations > self.max_iterations {
            return Err(SaslError::TooManyIterations {
                iterations,
                limit: self.max_iterations,
            });
        }
        let salt = base64::engine::general_purpose::STANDARD
            .decode(salt)
            .map_err(|_| SaslError::BadChallenge)?;
        Ok(ServerFirst {
            text: String::from(text),
            nonce: String::from(nonce),
            salt,
            iterations,
        })
    }

    /// The key derivation of a checked server-first message: the salted
    /// password, Hi(SASLprep(password), salt, i).
    fn derivation(&self, first: &ServerFirst) -> SaslWork {
        let h = self.hash;
        let raw = self.password.clone();
        let salt = first.salt.clone();
        let iterations = first.iterations;
        SaslWork::new(move || {
            let prepared = core::str::from_utf8(raw.expose())
                .ok()
                .and_then(|p| crate::scram::saslprep(p).ok());
            let pw = prepared.as_deref().map_or(raw.expose(), str::as_bytes);
            Secret::new(h.hi(pw, &salt, iterations))
        })
    }

    /// Client-final from the salted password; the server's signature is
    /// kept to check its final message.
    fn client_final_with(
        &mut self,
        bare: &str,
        server_first: &str,
        nonce: &str,
        salted: &[u8],
    ) -> Secret {
        use base64::Engine as _;
        let h = self.hash;
        let client_key = h.hmac(salted, &[b"Client Key"]);
        let stored_key = h.hash(&client_key);
        let mut cbind_input = Vec::from(self.gs2_header().as_bytes());
        if let ClientBinding::TlsExporter(value) = &self.binding {
            cbind_input.extend_from_slice(value);
        }
        let c = base64::engine::general_purpose::STANDARD.encode(&cbind_input);
        let without_proof = alloc::format!("c={c},r={nonce}");
        let auth_message = alloc::format!("{bare},{server_first},{without_proof}");
        let client_signature = h.hmac(&stored_key, &[auth_message.as_bytes()]);
        let proof = crate::scram::xor(&client_key, &client_signature);
        let server_key = h.hmac(salted, &[b"Server Key"]);
        let server_signature = h.hmac(&server_key, &[auth_message.as_bytes()]);
        self.state = ScramState::SentFinal { server_signature };
        let proof = base64::engine::general_purpose::STANDARD.encode(proof);
        Secret::new(alloc::format!("{without_proof},p={proof}"))
    }

    /// Client-final in one call, the key derived inline.
    fn client_final(&mut self, server_first: &[u8]) -> Result<Secret, SaslError> {
        let ScramState::SentFirst { bare } = &self.state else {
            return Err(SaslError::UnexpectedChallenge);
        };
        let bare = bare.clone();
        let first = self.check_server_first(server_first)?;
        let salted = self.derivation(&first).run().into_output();
        Ok(self.client_final_with(&bare, &first.text, &first.nonce, salted.expose()))
    }
}

impl fmt::Debug for Scram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scram")
            .field("hash", &self.hash)
            .field("user", &self.user)
            .field("password", &self.password)
            .finish()
    }
}

impl ClientMechanism for Scram {
    fn name(&self) -> Mechanism {
        let name = match self.binding {
            ClientBinding::TlsExporter(_) => alloc::format!("{}-PLUS", self.hash.mechanism()),
            _ => String::from(self.hash.mechanism()),
        };
        Mechanism::new(&name).expect("valid mechanism name")
    }

    fn initial_response(&mut self) -> Option<Secret> {
        let mut bare = String::from("n=");
        bare.push_str(&crate::scram::escape_name(&self.user));
        bare.push_str(",r=");
        bare.push_str(&self.nonce);
        let first = alloc::format!("{}{bare}", self.gs2_header());
        self.state = ScramState::SentFirst { bare };
        Some(Secret::new(first))
    }

    fn step(&mut self, challenge: &[u8]) -> Result<Secret, SaslError> {
        use base64::Engine as _;
        match &self.state {
            // The initial response did not fit on the AUTH line: the
            // server asks for it with an empty challenge.
            ScramState::Start if challenge.is_empty() => self
                .initial_response()
                .ok_or(SaslError::UnexpectedChallenge),
            ScramState::SentFirst { .. } => self.client_final(challenge),
            // The key is being derived: no challenge belongs here.
            ScramState::Deriving { .. } => Err(SaslError::UnexpectedChallenge),
            ScramState::SentFinal { server_signature } => {
                let v = challenge
                    .strip_prefix(b"v=")
                    .ok_or(SaslError::BadChallenge)?;
                let v = base64::engine::general_purpose::STANDARD
                    .decode(v)
                    .map_err(|_| SaslError::BadChallenge)?;
                if !crate::scram::constant_time_eq(&v, server_signature) {
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

    /// The server-first message (checked here, errors as
    /// [`ClientMechanism::step`] gives them) needs the PBKDF2 key
    /// derivation: that is the work. Other challenges need none.
    ///
    /// ```
    /// use pop3_proto::client::sasl::{ClientMechanism, Scram};
    /// use pop3_proto::types::Secret;
    /// // RFC 7677 §3, the key derived on another thread.
    /// let mut m = Scram::sha256("user", Secret::new("pencil"), "rOprNGfwEbeRWgbNEkqO");
    /// m.initial_response();
    /// let work = m
    ///     .step_work(b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
    ///     .unwrap()
    ///     .expect("PBKDF2 to run");
    /// let done = std::thread::spawn(move || work.run()).join().unwrap();
    /// assert_eq!(
    ///     m.finish_step(done).unwrap().expose(),
    ///     &b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
    ///        p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="[..]
    /// );
    /// assert_eq!(m.step_work(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=").unwrap(), None);
    /// assert!(m.step(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=").unwrap().is_empty());
    /// assert!(m.is_complete());
    /// ```
    fn step_work(&mut self, challenge: &[u8]) -> Result<Option<SaslWork>, SaslError> {
        let ScramState::SentFirst { bare } = &self.state else {
            return Ok(None);
        };
        let bare = bare.clone();
        let first = self.check_server_first(challenge)?;
        let work = self.derivation(&first);
        self.state = ScramState::Deriving {
            bare,
            server_first: first.text,
            nonce: first.nonce,
        };
        Ok(Some(work))
    }

    fn finish_step(&mut self, done: SaslWorkDone) -> Result<Secret, SaslError> {
        let ScramState::Deriving {
            bare,
            server_first,
            nonce,
        } = &self.state
        else {
            // Nothing was asked.
            return Err(SaslError::UnexpectedChallenge);
        };
        let (bare, server_first, nonce) = (bare.clone(), server_first.clone(), nonce.clone());
        Ok(self.client_final_with(&bare, &server_first, &nonce, done.output().expose()))
    }

    fn is_complete(&self) -> bool {
        matches!(self.state, ScramState::Done)
    }
}

/// `EXTERNAL` (RFC 4422 Appendix A): the credentials are outside SASL (a
/// TLS client certificate); the message is the identity to act as, empty
/// to act as the one the server derives from the certificate.
///
/// ```
/// use pop3_proto::client::sasl::{ClientMechanism, External};
/// let mut m = External::new();
/// assert!(m.initial_response().unwrap().is_empty()); // sent as `=`
/// let mut m = External::with_authzid("alice");
/// assert_eq!(m.initial_response().unwrap().expose(), b"alice");
/// ```
#[derive(Debug, Clone, Default)]
pub struct External {
    authzid: String,
    sent: bool,
}

impl External {
    /// Acts as the identity of the client certificate.
    pub fn new() -> Self {
        External::default()
    }

    /// Asks to act as `authzid`.
    pub fn with_authzid(authzid: &str) -> Self {
        External {
            authzid: String::from(authzid),
            sent: false,
        }
    }
}

impl ClientMechanism for External {
    fn name(&self) -> Mechanism {
        Mechanism::new("EXTERNAL").expect("valid mechanism name")
    }

    fn initial_response(&mut self) -> Option<Secret> {
        self.sent = true;
        Some(Secret::new(Vec::from(self.authzid.as_bytes())))
    }

    fn step(&mut self, challenge: &[u8]) -> Result<Secret, SaslError> {
        // The two-step form: the server asks with an empty challenge.
        if !challenge.is_empty() || self.sent {
            return Err(SaslError::UnexpectedChallenge);
        }
        self.sent = true;
        Ok(Secret::new(Vec::from(self.authzid.as_bytes())))
    }
}

/// A way to log in, as [`choose_login`] picks it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoginChoice {
    /// AUTH with this SASL mechanism.
    Sasl(Mechanism),
    /// APOP with the greeting's timestamp.
    Apop,
    /// USER and PASS.
    User,
}

/// The SASL mechanisms [`choose_login`] considers, strongest first. The
/// password-revealing ones come last and only over TLS (or when allowed).
const PROVING: [&str; 3] = ["SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5"];
const BOUND: [&str; 1] = ["SCRAM-SHA-256-PLUS"];
const CLEARTEXT: [&str; 2] = ["PLAIN", "LOGIN"];

/// Picks the strongest login the session allows: SCRAM-SHA-256-PLUS (when
/// the channel binding is known, [`Client::set_tls_exporter`](super::Client::set_tls_exporter)), SCRAM-SHA-256,
/// SCRAM-SHA-1, CRAM-MD5 (when CAPA's SASL line offers them), APOP (when
/// the greeting has a valid timestamp), then PLAIN, LOGIN and USER/PASS,
/// which reveal the password, only over TLS or when `allow_cleartext`.
/// `None`: nothing is left but clear text, and it is not allowed. Without
/// capabilities (CAPA refused or not read) only APOP and USER/PASS remain.
///
/// ```
/// use pop3_proto::client::sasl::{choose_login, LoginChoice};
/// use pop3_proto::client::{Client, ClientConfig};
/// use pop3_proto::time::Instant;
///
/// let mut client = Client::new(ClientConfig::default(), Instant::ZERO);
/// client.handle_input(Instant::ZERO, b"+OK ready\r\n");
/// client.capa().unwrap();
/// client.handle_input(Instant::ZERO, b"+OK\r\nUSER\r\nSASL PLAIN CRAM-MD5 SCRAM-SHA-1\r\n.\r\n");
/// while client.poll_action().is_some() {}
/// let scram = pop3_proto::types::Mechanism::new("SCRAM-SHA-1").unwrap();
/// assert_eq!(choose_login(&client, false), Some(LoginChoice::Sasl(scram)));
/// ```
pub fn choose_login(client: &super::Client, allow_cleartext: bool) -> Option<LoginChoice> {
    login_choices(client, allow_cleartext).into_iter().next()
}

/// Every login the session allows, strongest first, in the order of
/// [`choose_login`] (which takes the first): the ways
/// [`AutoLogin`](super::task::AutoLogin) falls back through when one fails.
/// Empty: nothing is left but clear text, and it is not allowed.
///
/// ```
/// use pop3_proto::client::sasl::{login_choices, LoginChoice};
/// use pop3_proto::client::{Client, ClientConfig};
/// use pop3_proto::time::Instant;
///
/// let mut client = Client::new(ClientConfig::default(), Instant::ZERO);
/// client.handle_input(Instant::ZERO, b"+OK ready <1.2@host>\r\n");
/// client.capa().unwrap();
/// client.handle_input(Instant::ZERO, b"+OK\r\nUSER\r\nSASL PLAIN CRAM-MD5 SCRAM-SHA-1\r\n.\r\n");
/// while client.poll_action().is_some() {}
/// let sasl = |m| LoginChoice::Sasl(pop3_proto::types::Mechanism::new(m).unwrap());
/// // Without TLS, nothing that reveals the password.
/// assert_eq!(
///     login_choices(&client, false),
///     [sasl("SCRAM-SHA-1"), sasl("CRAM-MD5"), LoginChoice::Apop]
/// );
/// ```
pub fn login_choices(client: &super::Client, allow_cleartext: bool) -> Vec<LoginChoice> {
    let offered: Vec<&Mechanism> = client
        .capabilities()
        .into_iter()
        .flatten()
        .filter_map(|c| match c {
            crate::response::Capability::Sasl(list) => Some(list.iter()),
            _ => None,
        })
        .flatten()
        .collect();
    let mut choices = Vec::new();
    let add = |choices: &mut Vec<LoginChoice>, names: &[&str]| {
        for name in names {
            if let Some(m) = offered
                .iter()
                .find(|m| m.as_str().eq_ignore_ascii_case(name))
            {
                choices.push(LoginChoice::Sasl((*m).clone()));
            }
        }
    };
    if client.tls_exporter().is_some() {
        add(&mut choices, &BOUND);
    }
    add(&mut choices, &PROVING);
    if client.apop_timestamp().is_some() {
        choices.push(LoginChoice::Apop);
    }
    if client.is_tls() || allow_cleartext {
        add(&mut choices, &CLEARTEXT);
        choices.push(LoginChoice::User);
    }
    choices
}

/// A boxed mechanism, as [`super::Client::auth`] takes it.
pub type BoxedMechanism = Box<dyn ClientMechanism>;
