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

/// A secret of the deployment from which SCRAM salts are derived, for the
/// users whose keys a store derives from a plaintext password and for the
/// decoy keys of users it does not know.
///
/// SCRAM shows the salt before the client proves anything, so salts must
/// not tell which users exist: an unknown user is answered with the same
/// kind of salt, the same iteration count and the same work as a real one,
/// and the same salt on every connection. Both come from this secret,
/// never from the user name alone: a salt anyone can compute from the name
/// (the same in every deployment) would let an attacker tell a real
/// user's salt from a decoy, and precompute SaltedPasswords for every
/// deployment at once.
///
/// Keep it across restarts (a file of random octets, or derived from
/// another secret the deployment keeps, see [`DeploymentSecret::from_material`]):
/// a new secret changes the salts of derived keys (clients that cache
/// SaltedPassword derive it again) and of decoys.
///
/// ```
/// use pop3_proto::scram::{DeploymentSecret, ScramHash, MIN_ITERATIONS};
/// let secret = DeploymentSecret::new([7; 32]);
/// let alice = secret.derive_keys(ScramHash::Sha256, "alice", "pencil", MIN_ITERATIONS)?;
/// let nobody = secret.decoy_keys_derived(ScramHash::Sha256, "nobody", MIN_ITERATIONS);
/// // Both look alike: salts of one length and kind, one iteration count.
/// assert_eq!(alice.salt(), &secret.salt("alice")[..]);
/// assert_eq!(nobody.salt(), &secret.salt("nobody")[..]);
/// assert_eq!(alice.iterations(), nobody.iterations());
/// // Another deployment, other salts.
/// assert_ne!(DeploymentSecret::new([8; 32]).salt("alice"), secret.salt("alice"));
/// # Ok::<(), pop3_proto::scram::ScramKeysError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct DeploymentSecret([u8; 32]);

impl fmt::Debug for DeploymentSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DeploymentSecret(..)")
    }
}

/// The octets of a derived salt.
pub const DERIVED_SALT_LEN: usize = 16;

impl DeploymentSecret {
    /// The secret of these 32 octets (from a secure generator).
    pub const fn new(bytes: [u8; 32]) -> Self {
        DeploymentSecret(bytes)
    }

    /// A secret derived from other secret material the deployment keeps (a
    /// key file, a configured passphrase): its SHA-256, under a label so
    /// that it differs from any other use of the material.
    pub fn from_material(material: &[u8]) -> Self {
        let mut h = sha2::Sha256::new();
        h.update(b"pop3-rs deployment secret\0");
        h.update(material);
        DeploymentSecret(h.finalize().into())
    }

    /// A secret drawn now from the standard library's randomly keyed
    /// hasher (seeded by the operating system): good for one process,
    /// lost at exit. What stores use when none is configured.
    #[cfg(feature = "std")]
    pub fn ephemeral() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut out = [0u8; 32];
        for (i, chunk) in out.chunks_mut(8).enumerate() {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_usize(i);
            chunk.copy_from_slice(&h.finish().to_le_bytes());
        }
        // Mix the four outputs so that no octet is a bare hasher output.
        DeploymentSecret::from_material(&out)
    }

    fn mac(&self, label: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        let mut all: Vec<&[u8]> = Vec::with_capacity(parts.len() + 1);
        all.push(label);
        all.extend_from_slice(parts);
        ScramHash::Sha256.hmac(&self.0, &all)
    }

    /// `user`'s salt ([`DERIVED_SALT_LEN`] octets), the same for every
    /// hash: for keys derived from a plaintext password and for decoys.
    pub fn salt(&self, user: &str) -> Vec<u8> {
        self.salt_of_len(user, DERIVED_SALT_LEN)
    }

    /// `len` octets of salt for `user`; the first [`DERIVED_SALT_LEN`] are
    /// [`DeploymentSecret::salt`].
    fn salt_of_len(&self, user: &str, len: usize) -> Vec<u8> {
        let mut salt = self.mac(b"salt\0", &[user.as_bytes()]);
        let mut block = 1u32;
        while salt.len() < len {
            let more = self.mac(b"salt\0", &[user.as_bytes(), b"\0", &block.to_be_bytes()]);
            salt.extend_from_slice(&more);
            block += 1;
        }
        salt.truncate(len.max(1));
        salt
    }

    /// Keys derived from `user`'s plaintext password with `user`'s salt
    /// ([`ScramKeys::from_password`]: SASLprep, then `iterations` rounds of
    /// PBKDF2; call it where such work is allowed).
    pub fn derive_keys(
        &self,
        hash: ScramHash,
        user: &str,
        password: &str,
        iterations: u32,
    ) -> Result<ScramKeys, ScramKeysError> {
        ScramKeys::from_password(hash, password, &self.salt(user), iterations)
    }

    /// Decoy keys for an unknown `user` of a store that derives keys from
    /// passwords: `user`'s salt, `iterations`, and keys from a PBKDF2 run
    /// over a password only the secret gives, so that the answer costs
    /// what a real user's costs and no password anyone knows matches.
    pub fn decoy_keys_derived(&self, hash: ScramHash, user: &str, iterations: u32) -> ScramKeys {
        let password = crate::types::hex_lower(&self.mac(b"password\0", &[user.as_bytes()]));
        let salt = self.salt(user);
        let iterations = iterations.max(MIN_ITERATIONS);
        let salted = hash.hi(password.as_bytes(), &salt, iterations);
        let client_key = hash.hmac(&salted, &[b"Client Key"]);
        ScramKeys {
            hash,
            salt,
            iterations,
            stored_key: hash.hash(&client_key),
            server_key: hash.hmac(&salted, &[b"Server Key"]),
        }
    }

    /// Decoy keys for an unknown `user` shaped like `like`, stored keys of a
    /// real user (the same hash, iteration count and salt length): for a
    /// store that keeps keys as they are, whose answer costs no derivation.
    pub fn decoy_keys_like(&self, user: &str, like: &ScramKeys) -> ScramKeys {
        let mut keys = self.decoy_keys(like.hash, user, like.iterations);
        keys.salt = self.salt_of_len(user, like.salt.len());
        keys
    }

    /// Decoy keys for an unknown `user` of a store that keeps keys as they
    /// are (no derivation on request): `user`'s salt, `iterations`, keys
    /// no password matches, at the cost of a few HMACs. Also what the
    /// session machine uses when a store answers an unknown user with no
    /// keys ([`ServerConfig::deployment_secret`](crate::server::ServerConfig::deployment_secret)).
    pub fn decoy_keys(&self, hash: ScramHash, user: &str, iterations: u32) -> ScramKeys {
        let tag = [hash as u8];
        let mut stored = self.mac(b"stored\0", &[&tag, user.as_bytes()]);
        let mut server = self.mac(b"server\0", &[&tag, user.as_bytes()]);
        stored.truncate(hash.output_len());
        server.truncate(hash.output_len());
        ScramKeys {
            hash,
            salt: self.salt(user),
            iterations: iterations.max(MIN_ITERATIONS),
            stored_key: stored,
            server_key: server,
        }
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
