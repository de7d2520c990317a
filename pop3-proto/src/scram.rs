//! SCRAM (RFC 5802) shared by both sides: the hash functions, the salted
//! keys a server keeps, and SASLprep (RFC 4013) of passwords.
//!
//! The client mechanism is [`client::sasl::Scram`](crate::client::sasl::Scram);
//! the server mechanisms are
//! [`SaslMechanism::ScramSha1`](crate::server::SaslMechanism::ScramSha1) and
//! [`SaslMechanism::ScramSha256`](crate::server::SaslMechanism::ScramSha256),
//! served from [`ScramKeys`] that a [`Store`](crate::store::Store) hands out.
//!
//! ```
//! use pop3_proto::scram::{ScramHash, ScramKeys};
//! use base64::Engine as _;
//! // RFC 7677 §3: user "user", password "pencil".
//! let salt = base64::engine::general_purpose::STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
//! let keys = ScramKeys::from_password(ScramHash::Sha256, "pencil", &salt, 4096).unwrap();
//! assert_eq!(keys.iterations(), 4096);
//! assert_eq!(keys.stored_key().len(), 32);
//! ```

use alloc::borrow::Cow;
#[cfg(any(feature = "client", feature = "server"))]
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use sha2::Digest as _;

/// The fewest PBKDF2 iterations either side accepts (RFC 7677 §4: at
/// least 4096).
pub const MIN_ITERATIONS: u32 = 4096;

/// The hash function of a SCRAM mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ScramHash {
    /// SHA-1: `SCRAM-SHA-1` (RFC 5802).
    Sha1,
    /// SHA-256: `SCRAM-SHA-256` (RFC 7677).
    Sha256,
}

impl ScramHash {
    /// The mechanism name without channel binding.
    ///
    /// ```
    /// use pop3_proto::scram::ScramHash;
    /// assert_eq!(ScramHash::Sha1.mechanism(), "SCRAM-SHA-1");
    /// ```
    pub fn mechanism(self) -> &'static str {
        match self {
            ScramHash::Sha1 => "SCRAM-SHA-1",
            ScramHash::Sha256 => "SCRAM-SHA-256",
        }
    }

    /// The length of the hash output (and of every key) in octets.
    pub fn output_len(self) -> usize {
        match self {
            ScramHash::Sha1 => 20,
            ScramHash::Sha256 => 32,
        }
    }

    /// HMAC(key, concatenation of `parts`).
    pub(crate) fn hmac(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        fn run<M: hmac::Mac + hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
            // HMAC accepts keys of any length.
            let mut mac = <M as hmac::Mac>::new_from_slice(key).expect("any key length");
            for p in parts {
                mac.update(p);
            }
            mac.finalize().into_bytes().to_vec()
        }
        match self {
            ScramHash::Sha1 => run::<hmac::Hmac<sha1::Sha1>>(key, parts),
            ScramHash::Sha256 => run::<hmac::Hmac<sha2::Sha256>>(key, parts),
        }
    }

    /// H(data).
    pub(crate) fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha1 => sha1::Sha1::digest(data).to_vec(),
            ScramHash::Sha256 => sha2::Sha256::digest(data).to_vec(),
        }
    }

    /// Hi(password, salt, i) of RFC 5802 §2.2: PBKDF2 with this HMAC, one
    /// block. Costs `iterations` HMACs: never called by a session machine
    /// on a server (stores derive keys in their own calls).
    pub(crate) fn hi(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        fn run<M>(password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8>
        where
            M: hmac::Mac + hmac::digest::KeyInit + Clone,
        {
            let prf = <M as hmac::Mac>::new_from_slice(password).expect("any key length");
            let mut mac = prf.clone();
            mac.update(salt);
            mac.update(&1u32.to_be_bytes());
            let mut u = mac.finalize().into_bytes();
            let mut out = u.to_vec();
            for _ in 1..iterations {
                let mut mac = prf.clone();
                mac.update(&u);
                u = mac.finalize().into_bytes();
                for (o, x) in out.iter_mut().zip(u.iter()) {
                    *o ^= x;
                }
            }
            out
        }
        match self {
            ScramHash::Sha1 => run::<hmac::Hmac<sha1::Sha1>>(password, salt, iterations),
            ScramHash::Sha256 => run::<hmac::Hmac<sha2::Sha256>>(password, salt, iterations),
        }
    }
}

/// What a server keeps to verify SCRAM logins without the password
/// (RFC 5802 §3): the salt, the iteration count, StoredKey and ServerKey.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramKeys {
    hash: ScramHash,
    salt: Vec<u8>,
    iterations: u32,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

impl fmt::Debug for ScramKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramKeys")
            .field("hash", &self.hash)
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// Why SCRAM keys could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScramKeysError {
    /// The password is not allowed by SASLprep (RFC 4013).
    SaslPrep(SaslPrepError),
    /// Fewer iterations than [`MIN_ITERATIONS`].
    TooFewIterations(u32),
    /// StoredKey or ServerKey do not have the hash's output length.
    KeyLength,
    /// The salt is empty.
    EmptySalt,
}

impl fmt::Display for ScramKeysError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScramKeysError::SaslPrep(e) => write!(f, "password refused by SASLprep: {e}"),
            ScramKeysError::TooFewIterations(n) => {
                write!(f, "{n} iterations, fewer than {MIN_ITERATIONS}")
            }
            ScramKeysError::KeyLength => f.write_str("key length does not match the hash"),
            ScramKeysError::EmptySalt => f.write_str("empty salt"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ScramKeysError {}

impl ScramKeys {
    /// Keys as stored (e.g. read from a password file).
    ///
    /// ```
    /// use pop3_proto::scram::{ScramHash, ScramKeys, ScramKeysError};
    /// let keys = ScramKeys::new(ScramHash::Sha1, b"salt".to_vec(), 4096, vec![0; 20], vec![1; 20]);
    /// assert!(keys.is_ok());
    /// let short = ScramKeys::new(ScramHash::Sha1, b"salt".to_vec(), 4096, vec![0; 32], vec![1; 20]);
    /// assert_eq!(short.unwrap_err(), ScramKeysError::KeyLength);
    /// ```
    pub fn new(
        hash: ScramHash,
        salt: Vec<u8>,
        iterations: u32,
        stored_key: Vec<u8>,
        server_key: Vec<u8>,
    ) -> Result<Self, ScramKeysError> {
        if iterations < MIN_ITERATIONS {
            return Err(ScramKeysError::TooFewIterations(iterations));
        }
        if salt.is_empty() {
            return Err(ScramKeysError::EmptySalt);
        }
        if stored_key.len() != hash.output_len() || server_key.len() != hash.output_len() {
            return Err(ScramKeysError::KeyLength);
        }
        Ok(ScramKeys {
            hash,
            salt,
            iterations,
            stored_key,
            server_key,
        })
    }

    /// Derives the keys from a plaintext password, after SASLprep. Runs
    /// `iterations` rounds of PBKDF2: a store does it in its own call (or
    /// once, when the password is set), never the session machine.
    ///
    /// ```
    /// use pop3_proto::scram::{ScramHash, ScramKeys};
    /// let a = ScramKeys::from_password(ScramHash::Sha256, "pencil", b"salt", 4096).unwrap();
    /// let b = ScramKeys::from_password(ScramHash::Sha256, "pencil", b"salt", 4096).unwrap();
    /// assert_eq!(a, b);
    /// ```
    pub fn from_password(
        hash: ScramHash,
        password: &str,
        salt: &[u8],
        iterations: u32,
    ) -> Result<Self, ScramKeysError> {
        let prepared = saslprep(password).map_err(ScramKeysError::SaslPrep)?;
        if iterations < MIN_ITERATIONS {
            return Err(ScramKeysError::TooFewIterations(iterations));
        }
        if salt.is_empty() {
            return Err(ScramKeysError::EmptySalt);
        }
        let salted = hash.hi(prepared.as_bytes(), salt, iterations);
        let client_key = hash.hmac(&salted, &[b"Client Key"]);
        Ok(ScramKeys {
            hash,
            salt: salt.to_vec(),
            iterations,
            stored_key: hash.hash(&client_key),
            server_key: hash.hmac(&salted, &[b"Server Key"]),
        })
    }

    /// The hash function.
    pub fn hash(&self) -> ScramHash {
        self.hash
    }

    /// The salt (raw octets; base64 on the wire).
    pub fn salt(&self) -> &[u8] {
        &self.salt
    }

    /// The PBKDF2 iteration count.
    pub fn iterations(&self) -> u32 {
        self.iterations
    }

    /// StoredKey = H(ClientKey).
    pub fn stored_key(&self) -> &[u8] {
        &self.stored_key
    }

    /// ServerKey = HMAC(SaltedPassword, "Server Key").
    pub fn server_key(&self) -> &[u8] {
        &self.server_key
    }
}

/// Why SASLprep (RFC 4013) refused a string.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SaslPrepError {
    /// A prohibited character (control characters, private use, ...).
    Prohibited,
    /// Mixed right-to-left and left-to-right text (RFC 3454 §6).
    Bidi,
    /// Non-ASCII text, which needs the crate's `std` feature (the Unicode
    /// tables come from a `std` dependency).
    NeedsUnicodeTables,
}

impl fmt::Display for SaslPrepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SaslPrepError::Prohibited => "prohibited character",
            SaslPrepError::Bidi => "mixed bidirectional text",
            SaslPrepError::NeedsUnicodeTables => {
                "non-ASCII text needs the std feature for SASLprep"
            }
        })
    }
}

#[cfg(feature = "std")]
impl std::error::Error for SaslPrepError {}

/// SASLprep (RFC 4013) of a password or user name, with unassigned code
/// points refused (stored strings). Printable ASCII is returned unchanged
/// and needs no tables; other text needs the `std` feature.
///
/// ```
/// use pop3_proto::scram::{saslprep, SaslPrepError};
/// assert_eq!(saslprep("pencil").unwrap(), "pencil");
/// assert_eq!(saslprep("I\u{ad}X").unwrap(), "IX"); // RFC 4013 §3, soft hyphen mapped to nothing
/// assert_eq!(saslprep("\u{aa}").unwrap(), "a");
/// assert_eq!(saslprep("\u{7}").unwrap_err(), SaslPrepError::Prohibited);
/// ```
pub fn saslprep(s: &str) -> Result<Cow<'_, str>, SaslPrepError> {
    if s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Ok(Cow::Borrowed(s));
    }
    if s.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(SaslPrepError::Prohibited);
    }
    unicode_saslprep(s)
}

#[cfg(feature = "std")]
fn unicode_saslprep(s: &str) -> Result<Cow<'_, str>, SaslPrepError> {
    stringprep::saslprep(s).map_err(|e| {
        // The crate's error type tells the kind only through its text.
        let text = alloc::format!("{e}");
        if text.contains("bidi") || text.contains("bidirectional") {
            SaslPrepError::Bidi
        } else {
            SaslPrepError::Prohibited
        }
    })
}

#[cfg(not(feature = "std"))]
fn unicode_saslprep(_s: &str) -> Result<Cow<'_, str>, SaslPrepError> {
    Err(SaslPrepError::NeedsUnicodeTables)
}

#[cfg(feature = "client")]
/// Escapes a SCRAM `saslname` (RFC 5802 §5.1): `=` as `=3D`, `,` as `=2C`.
pub(crate) fn escape_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            ',' => out.push_str("=2C"),
            '=' => out.push_str("=3D"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(feature = "server")]
/// Undoes the client's `escape_name`; `None` for a lone `=` or any other escape.
pub(crate) fn unescape_name(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(i) = rest.find(['=', ',']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("=2C") {
            out.push(',');
        } else if tail.starts_with("=3D") {
            out.push('=');
        } else {
            return None;
        }
        rest = &tail[3..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(any(feature = "client", feature = "server"))]
/// XOR of two equal-length octet strings.
pub(crate) fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

#[cfg(any(feature = "client", feature = "server"))]
/// Compares two octet strings in time independent of where they differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    core::hint::black_box(diff) == 0
}
