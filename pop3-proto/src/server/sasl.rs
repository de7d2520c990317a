//! SASL mechanisms on the server side, as small step machines.
//!
//! Each exchange turns client responses into either another challenge or a
//! credential check that the store performs (a password to verify, a shared
//! secret to fetch). Adding a mechanism means a [`SaslMechanism`] variant, a
//! state in `SaslExchange` and, when it needs a new kind of credential check
//! (an OAuth token, SCRAM keys), a new `StoreRequest` variant.

use bytes::Bytes;

use crate::command::Username;
use crate::types::Secret;

/// A SASL mechanism the server can offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SaslMechanism {
    /// PLAIN (RFC 4616): the password in clear; needs TLS unless plaintext
    /// authentication is allowed.
    Plain,
    /// LOGIN (draft-murchison-sasl-login): user name and password in clear;
    /// needs TLS unless plaintext authentication is allowed.
    Login,
    /// CRAM-MD5 (RFC 2195): a challenge keyed with the shared secret; needs a
    /// store that hands out shared secrets.
    CramMd5,
}

impl SaslMechanism {
    /// The registered name, upper case.
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::Login => "LOGIN",
            SaslMechanism::CramMd5 => "CRAM-MD5",
        }
    }

    /// The mechanism of this name (any case).
    pub fn from_name(name: &str) -> Option<Self> {
        [
            SaslMechanism::Plain,
            SaslMechanism::Login,
            SaslMechanism::CramMd5,
        ]
        .into_iter()
        .find(|m| m.name().eq_ignore_ascii_case(name))
    }

    /// Whether the mechanism reveals the password to an eavesdropper.
    pub fn is_plaintext(self) -> bool {
        matches!(self, SaslMechanism::Plain | SaslMechanism::Login)
    }
}

/// An exchange in progress: what the next client response is.
#[derive(Debug)]
pub(crate) enum SaslExchange {
    Plain,
    LoginUser,
    LoginPassword { user: Username },
    CramMd5 { challenge: Bytes },
    Done,
}

/// What the machine does next.
#[derive(Debug)]
pub(crate) enum SaslOutcome {
    /// Send this challenge (raw; base64-encoded on the wire) and wait.
    Challenge(Bytes),
    /// Ask the store to verify this password.
    VerifyPassword { user: Username, password: Secret },
    /// Ask the store for the shared secret and check the CRAM-MD5 digest.
    CramMd5 {
        user: Username,
        challenge: Bytes,
        digest: Secret,
    },
    /// The credentials cannot be right (malformed or refused): a failed
    /// authentication.
    Failed,
    /// The response breaks the protocol (e.g. an initial response where the
    /// mechanism takes none).
    Malformed,
}

impl SaslExchange {
    /// Starts `mech`, with the initial response if one was sent; `challenge`
    /// is a fresh challenge for server-first mechanisms.
    pub(crate) fn start(
        mech: SaslMechanism,
        initial: Option<Secret>,
        challenge: Bytes,
    ) -> (Self, SaslOutcome) {
        match mech {
            SaslMechanism::Plain => {
                let mut ex = SaslExchange::Plain;
                let out = match initial {
                    Some(data) => ex.step(data),
                    None => SaslOutcome::Challenge(Bytes::new()),
                };
                (ex, out)
            }
            SaslMechanism::Login => {
                let mut ex = SaslExchange::LoginUser;
                let out = match initial {
                    Some(data) => ex.step(data),
                    None => SaslOutcome::Challenge(Bytes::from_static(b"Username:")),
                };
                (ex, out)
            }
            SaslMechanism::CramMd5 => match initial {
                Some(_) => (SaslExchange::Done, SaslOutcome::Malformed),
                None => (
                    SaslExchange::CramMd5 {
                        challenge: challenge.clone(),
                    },
                    SaslOutcome::Challenge(challenge),
                ),
            },
        }
    }

    /// The client's next response.
    pub(crate) fn step(&mut self, data: Secret) -> SaslOutcome {
        match core::mem::replace(self, SaslExchange::Done) {
            SaslExchange::Plain => plain(&data),
            SaslExchange::LoginUser => match username(data.expose()) {
                Some(user) => {
                    *self = SaslExchange::LoginPassword { user };
                    SaslOutcome::Challenge(Bytes::from_static(b"Password:"))
                }
                None => SaslOutcome::Failed,
            },
            SaslExchange::LoginPassword { user } => SaslOutcome::VerifyPassword {
                user,
                password: data,
            },
            SaslExchange::CramMd5 { challenge } => {
                let d = data.expose();
                let Some(sp) = memchr::memrchr(b' ', d) else {
                    return SaslOutcome::Failed;
                };
                let digest = &d[sp + 1..];
                match username(&d[..sp]) {
                    Some(user)
                        if digest.len() == 32 && digest.iter().all(u8::is_ascii_hexdigit) =>
                    {
                        SaslOutcome::CramMd5 {
                            user,
                            challenge,
                            digest: Secret::new(data.expose_bytes().slice(sp + 1..)),
                        }
                    }
                    _ => SaslOutcome::Failed,
                }
            }
            SaslExchange::Done => SaslOutcome::Malformed,
        }
    }
}

fn username(raw: &[u8]) -> Option<Username> {
    core::str::from_utf8(raw)
        .ok()
        .and_then(|s| Username::new(s).ok())
}

/// PLAIN: `authzid NUL authcid NUL passwd` (RFC 4616 §2). Acting as another
/// user (an authzid other than the authcid) is not supported.
fn plain(data: &Secret) -> SaslOutcome {
    let d = data.expose();
    let Some(first) = memchr::memchr(0, d) else {
        return SaslOutcome::Failed;
    };
    let Some(second) = memchr::memchr(0, &d[first + 1..]).map(|i| i + first + 1) else {
        return SaslOutcome::Failed;
    };
    let authzid = &d[..first];
    let authcid = &d[first + 1..second];
    let passwd = &d[second + 1..];
    if memchr::memchr(0, passwd).is_some()
        || authcid.len() > 255
        || authzid.len() > 255
        || passwd.len() > 255
        || (!authzid.is_empty() && authzid != authcid)
    {
        return SaslOutcome::Failed;
    }
    match username(authcid) {
        Some(user) => SaslOutcome::VerifyPassword {
            user,
            password: Secret::new(data.expose_bytes().slice(second + 1..)),
        },
        None => SaslOutcome::Failed,
    }
}

/// Whether `digest` (hex, any case) is HMAC-MD5(secret, challenge) (RFC 2195).
pub(crate) fn cram_md5_matches(secret: &[u8], challenge: &[u8], digest: &[u8]) -> bool {
    use hmac::{Hmac, Mac};
    let Ok(mut mac) = <Hmac<md5::Md5> as Mac>::new_from_slice(secret) else {
        return false;
    };
    mac.update(challenge);
    let expected = crate::types::hex_lower(&mac.finalize().into_bytes());
    super::constant_time_eq(expected.as_bytes(), &digest.to_ascii_lowercase())
}
