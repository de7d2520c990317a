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

/// A boxed mechanism, as [`super::Client::auth`] takes it.
pub type BoxedMechanism = Box<dyn ClientMechanism>;
