//! A user database read from a Dovecot-compatible passwd-file.
//!
//! Each line is `user:{SCHEME}secret`, optionally followed by
//! `:uid:gid:gecos:home:shell:extra` fields, which are accepted and ignored.
//! Blank lines and lines whose first non-blank character is `#` are comments.
//!
//! Schemes (names are case-insensitive):
//!
//! | scheme | stored as | verified by |
//! | --- | --- | --- |
//! | `{PLAIN}`, `{CLEARTEXT}` | the password itself | constant-time comparison |
//! | `{SHA512-CRYPT}`, `{SHA256-CRYPT}` | `$6$...`, `$5$...` | SHA-crypt |
//! | `{CRYPT}` or no prefix | a crypt(3) string | SHA-crypt when it is `$6$`/`$5$`; other crypt forms never match |
//! | `{ARGON2ID}`, `{ARGON2I}` | `$argon2id$...`, `$argon2i$...` | Argon2 |
//! | `{SCRAM-SHA-1}`, `{SCRAM-SHA-256}` | `iterations,salt,StoredKey,ServerKey` (base64, as `doveadm pw` writes them) | SCRAM of that hash; other mechanisms by deriving the keys from the password given |
//!
//! Which mechanisms a user can use follows from the scheme: a `{PLAIN}`
//! user every one (USER/PASS, APOP, PLAIN, LOGIN, CRAM-MD5 and both SCRAMs,
//! whose keys are derived in the store call, with SASLprep, and a salt
//! derived from the deployment's secret); a
//! `{SCRAM-SHA-256}` user SCRAM-SHA-256 and the password mechanisms; a
//! hashed user the password mechanisms only. [`PasswdFile::credential_forms`]
//! offers a mechanism only when every listed user can use it.
//!
//! A password with no `{SCHEME}` prefix is taken as `{CRYPT}`, as Dovecot
//! does for passwd-files: it is **never** read as plaintext. Any other scheme
//! is accepted when parsing but never matches; [`PasswdFile::unusable`] lists
//! such users so that an operator can spot them. An empty password never
//! matches either.
//!
//! # Unknown users
//!
//! Nothing a client sees tells an unknown user from a listed one. A
//! password check of an unknown user costs what checking the first listed
//! user's credential costs. SCRAM shows a salt and an iteration count
//! before any proof, so an unknown user gets decoy keys shaped like those
//! of the first user who can do that SCRAM: for a `{PLAIN}` user, the salt
//! a `{PLAIN}` user would get and a key derivation of the same cost; for
//! stored keys, their iteration count and a salt of the same length. Salts
//! of `{PLAIN}` users and of decoys come from a [`DeploymentSecret`] (set
//! it with [`PasswdFile::with_deployment_secret`] and keep it across
//! restarts; without it one is drawn when the file is read), so they are the
//! same on every connection, differ between deployments, and cannot be
//! computed from the user name.
//!
//! A malformed hash under a known scheme, a malformed line, a duplicate user
//! or a user name that is not a safe path component (it names the user's
//! Maildir) is a [`PasswdError`] carrying the line number.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::Path;

use argon2::password_hash::PasswordVerifier as _;
use pop3_proto::scram::{DeploymentSecret, MIN_ITERATIONS, ScramHash, ScramKeys};
use pop3_proto::store::CredentialForms;
use pop3_proto::types::Secret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A well-formed SHA512-CRYPT string checked for unknown users when the file
/// lists nobody whose credential could stand in: it costs what checking a
/// real hash of the default rounds costs. Its digest was not computed from
/// any password (it is a real digest with its first octets overwritten), so
/// no known password matches it; and [`PasswdFile::verify`] refuses an
/// unknown user whatever the check says.
const DUMMY_HASH: &str = "$6$pop3rsdummysalt$AAAAAAAAAAAAAAAAZybpuSbFZ2QkoDPMVKoyRQfXfN5byy019JxeOKhqk3UoOX37Gvs0y8brOjiaUR/4aBDd/";

/// How one user's password is kept.
#[derive(Clone)]
enum Credential {
    /// `{PLAIN}` / `{CLEARTEXT}`, non-empty.
    Plain(Secret),
    /// A `$5$` or `$6$` SHA-crypt string.
    ShaCrypt(String),
    /// An `$argon2id$` or `$argon2i$` PHC string.
    Argon2(String),
    /// `{SCRAM-SHA-1}` or `{SCRAM-SHA-256}` keys.
    Scram(ScramKeys),
    /// A scheme this crate cannot check, or an empty password: never matches.
    Unusable,
}

impl Credential {
    fn verify(&self, password: &[u8]) -> bool {
        match self {
            Credential::Plain(secret) => plain_eq(secret.expose(), password),
            Credential::ShaCrypt(hash) => sha_crypt::ShaCrypt::default()
                .verify_password(password, hash.as_str())
                .is_ok(),
            Credential::Argon2(hash) => argon2::Argon2::default()
                .verify_password(password, hash.as_str())
                .is_ok(),
            Credential::Scram(keys) => std::str::from_utf8(password)
                .ok()
                .and_then(|p| {
                    ScramKeys::from_password(keys.hash(), p, keys.salt(), keys.iterations()).ok()
                })
                .is_some_and(|derived| bool::from(derived.stored_key().ct_eq(keys.stored_key()))),
            Credential::Unusable => false,
        }
    }
}

impl Credential {
    /// Whether SCRAM of `hash` can succeed for this user.
    fn serves_scram(&self, hash: ScramHash) -> bool {
        match self {
            Credential::Plain(_) => true,
            Credential::Scram(keys) => keys.hash() == hash,
            _ => false,
        }
    }
}

/// Compares two passwords in time independent of their contents and lengths:
/// the SHA-256 digests of both are compared in constant time.
fn plain_eq(stored: &[u8], given: &[u8]) -> bool {
    let a = Sha256::digest(stored);
    let b = Sha256::digest(given);
    bool::from(a.as_slice().ct_eq(b.as_slice()))
}

/// Why a passwd-file line was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LineProblem {
    /// The line has no `:` after the user name.
    MissingPassword,
    /// The user name is empty.
    EmptyUser,
    /// The user name is not a safe path component: it contains `/`, `\`,
    /// NUL or another control character or white space, starts with `.`, or
    /// is longer than 255 octets.
    BadUser,
    /// The user already appeared on an earlier line.
    DuplicateUser,
    /// A `{` opens a scheme name that is never closed by `}`.
    UnterminatedScheme,
    /// The secret does not have the form its scheme requires.
    MalformedHash,
    /// The line is not valid UTF-8.
    NotUtf8,
}

impl fmt::Display for LineProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LineProblem::MissingPassword => "no password field",
            LineProblem::EmptyUser => "empty user name",
            LineProblem::BadUser => "user name is not a safe path component",
            LineProblem::DuplicateUser => "user listed twice",
            LineProblem::UnterminatedScheme => "scheme name not closed by '}'",
            LineProblem::MalformedHash => "malformed password hash",
            LineProblem::NotUtf8 => "not valid UTF-8",
        })
    }
}

/// Why a passwd-file could not be read.
#[derive(Debug)]
#[non_exhaustive]
pub enum PasswdError {
    /// The file could not be read.
    Io(io::Error),
    /// A line is malformed.
    Line {
        /// The line's number, counting from 1.
        line: usize,
        /// What is wrong with it.
        problem: LineProblem,
    },
}

impl PasswdError {
    /// The number (from 1) of the offending line, if a line is to blame.
    pub fn line(&self) -> Option<usize> {
        match self {
            PasswdError::Line { line, .. } => Some(*line),
            PasswdError::Io(_) => None,
        }
    }
}

impl fmt::Display for PasswdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswdError::Io(_) => f.write_str("cannot read the passwd-file"),
            PasswdError::Line { line, problem } => write!(f, "passwd-file line {line}: {problem}"),
        }
    }
}

impl std::error::Error for PasswdError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PasswdError::Io(e) => Some(e),
            PasswdError::Line { .. } => None,
        }
    }
}

impl From<io::Error> for PasswdError {
    fn from(e: io::Error) -> Self {
        PasswdError::Io(e)
    }
}

/// Whether `user` may name a directory under a store's root: non-empty, at
/// most 255 octets, no `/`, `\`, NUL, other control characters or white
/// space, and not starting with `.` (which also rules out `.` and `..`).
pub(crate) fn is_safe_user(user: &str) -> bool {
    !user.is_empty()
        && user.len() <= 255
        && !user.starts_with('.')
        && !user
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control() || c.is_whitespace())
}

/// A parsed passwd-file: users and their credentials.
///
/// ```
/// use pop3_blocking::passwd::PasswdFile;
/// use pop3_proto::types::Secret;
///
/// let users = PasswdFile::parse(
///     "# name:{SCHEME}secret\n\
///      alice:{PLAIN}wonderland\n\
///      bob:{SHA512-CRYPT}$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1::::::\n",
/// )?;
/// assert!(users.verify("alice", &Secret::new("wonderland")));
/// assert!(users.verify("bob", &Secret::new("secret")));
/// assert!(!users.verify("bob", &Secret::new("wonderland")));
/// assert!(!users.verify("carol", &Secret::new("anything")));
/// // bob's password is only kept hashed: no APOP or CRAM-MD5 for anyone.
/// assert!(!users.credential_forms().shared_secret);
/// # Ok::<(), pop3_blocking::passwd::PasswdError>(())
/// ```
#[derive(Clone)]
pub struct PasswdFile {
    users: HashMap<String, Credential>,
    /// Users whose scheme cannot be checked, with their line numbers.
    unusable: Vec<(usize, String)>,
    /// Users locked on purpose (an empty password field, or a bare crypt
    /// field starting with `!` or `*`), with their line numbers.
    disabled: Vec<(usize, String)>,
    /// Whether every user has a usable plaintext password (and there is one).
    all_plain: bool,
    /// Whether every user can do SCRAM-SHA-1 (plaintext or its keys).
    all_scram_sha1: bool,
    /// Whether every user can do SCRAM-SHA-256.
    all_scram_sha256: bool,
    /// The credential checked (and its answer ignored) for unknown users, so
    /// that they take as long to refuse as a listed one: the first listed
    /// user's usable credential.
    stand_in: Option<Credential>,
    /// For each SCRAM hash (SHA-1, SHA-256), the first listed user's
    /// credential that serves it: the shape of an unknown user's decoy keys.
    scram_stand_in: Box<[Option<Credential>; 2]>,
    /// Where derived salts and decoys come from.
    secret: DeploymentSecret,
}

impl Default for PasswdFile {
    /// No users, and a secret drawn now.
    fn default() -> Self {
        PasswdFile {
            users: HashMap::new(),
            unusable: Vec::new(),
            disabled: Vec::new(),
            all_plain: false,
            all_scram_sha1: false,
            all_scram_sha256: false,
            stand_in: None,
            scram_stand_in: Box::new([None, None]),
            secret: DeploymentSecret::ephemeral(),
        }
    }
}

fn hash_index(hash: ScramHash) -> usize {
    match hash {
        ScramHash::Sha1 => 0,
        _ => 1,
    }
}

impl fmt::Debug for PasswdFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut users: Vec<&str> = self.users.keys().map(String::as_str).collect();
        users.sort_unstable();
        f.debug_struct("PasswdFile").field("users", &users).finish()
    }
}

impl PasswdFile {
    /// Parses the text of a passwd-file.
    ///
    /// ```
    /// use pop3_blocking::passwd::{LineProblem, PasswdFile};
    ///
    /// let err = PasswdFile::parse("alice:{PLAIN}x\n\n# comment\nbob\n").unwrap_err();
    /// assert_eq!(err.line(), Some(4));
    /// assert!(matches!(
    ///     err,
    ///     pop3_blocking::passwd::PasswdError::Line { problem: LineProblem::MissingPassword, .. }
    /// ));
    /// ```
    pub fn parse(text: &str) -> Result<Self, PasswdError> {
        Self::parse_bytes(text.as_bytes())
    }

    /// Reads and parses the passwd-file at `path`.
    ///
    /// ```
    /// use pop3_blocking::passwd::PasswdFile;
    /// use pop3_proto::types::Secret;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("passwd");
    /// std::fs::write(&path, "alice:{CLEARTEXT}wonderland:1000:1000::/home/alice::\n")?;
    /// let users = PasswdFile::load(&path)?;
    /// assert!(users.verify("alice", &Secret::new("wonderland")));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn load(path: impl AsRef<Path>) -> Result<Self, PasswdError> {
        let bytes = std::fs::read(path)?;
        Self::parse_bytes(&bytes)
    }

    /// A database of one user with a plaintext password, for a demo or a
    /// test. The password may hold any octets (`:` and line ends included);
    /// an empty one never matches. A user name that is not a safe path
    /// component is refused as if it were on line 1.
    ///
    /// ```
    /// use pop3_blocking::passwd::PasswdFile;
    /// use pop3_proto::types::Secret;
    ///
    /// let users = PasswdFile::single_plain("demo", Secret::new("pass:word"))?;
    /// assert!(users.verify("demo", &Secret::new("pass:word")));
    /// assert!(users.credential_forms().shared_secret);
    /// assert!(PasswdFile::single_plain("../demo", Secret::new("x")).is_err());
    /// # Ok::<(), pop3_blocking::passwd::PasswdError>(())
    /// ```
    pub fn single_plain(user: &str, password: Secret) -> Result<Self, PasswdError> {
        let err = |problem| PasswdError::Line { line: 1, problem };
        if user.is_empty() {
            return Err(err(LineProblem::EmptyUser));
        }
        if !is_safe_user(user) || user.contains(':') {
            return Err(err(LineProblem::BadUser));
        }
        let credential = if password.is_empty() {
            Credential::Unusable
        } else {
            Credential::Plain(password)
        };
        let usable = !matches!(credential, Credential::Unusable);
        let mut users = HashMap::new();
        users.insert(user.to_owned(), credential.clone());
        Ok(PasswdFile {
            users,
            unusable: Vec::new(),
            disabled: Vec::new(),
            all_plain: usable,
            all_scram_sha1: usable,
            all_scram_sha256: usable,
            scram_stand_in: Box::new([
                usable.then(|| credential.clone()),
                usable.then(|| credential.clone()),
            ]),
            stand_in: usable.then_some(credential),
            secret: DeploymentSecret::ephemeral(),
        })
    }

    fn parse_bytes(bytes: &[u8]) -> Result<Self, PasswdError> {
        let mut file = PasswdFile::default();
        let mut stand_in = None;
        for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
            let line = i + 1;
            let err = |problem| PasswdError::Line { line, problem };
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            let text = std::str::from_utf8(raw).map_err(|_| err(LineProblem::NotUtf8))?;
            let trimmed = text.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let (user, rest) = text
                .split_once(':')
                .ok_or(err(LineProblem::MissingPassword))?;
            if user.is_empty() {
                return Err(err(LineProblem::EmptyUser));
            }
            if !is_safe_user(user) {
                return Err(err(LineProblem::BadUser));
            }
            let password = rest.split(':').next().unwrap_or_default();
            let credential = parse_credential(password).map_err(err)?;
            if matches!(credential, Credential::Unusable) {
                if password.is_empty() || password.starts_with(['!', '*']) {
                    file.disabled.push((line, user.to_owned()));
                } else {
                    file.unusable.push((line, user.to_owned()));
                }
            } else if stand_in.is_none() {
                stand_in = Some(credential.clone());
            }
            for hash in [ScramHash::Sha1, ScramHash::Sha256] {
                let slot = &mut file.scram_stand_in[hash_index(hash)];
                if slot.is_none() && credential.serves_scram(hash) {
                    *slot = Some(credential.clone());
                }
            }
            if file.users.insert(user.to_owned(), credential).is_some() {
                return Err(err(LineProblem::DuplicateUser));
            }
        }
        file.stand_in = stand_in;
        let all =
            |f: &dyn Fn(&Credential) -> bool| !file.users.is_empty() && file.users.values().all(f);
        file.all_plain = all(&|c| matches!(c, Credential::Plain(_)));
        file.all_scram_sha1 = all(&|c| c.serves_scram(ScramHash::Sha1));
        file.all_scram_sha256 = all(&|c| c.serves_scram(ScramHash::Sha256));
        Ok(file)
    }

    /// Whether `password` is `user`'s password. An unknown user is `false`,
    /// after as much work as checking the first listed user's password (whose
    /// answer is thrown away), so that timing does not tell which users
    /// exist in a file of one scheme.
    pub fn verify(&self, user: &str, password: &Secret) -> bool {
        match self.users.get(user) {
            Some(credential) => credential.verify(password.expose()),
            None => {
                let answer = match &self.stand_in {
                    Some(credential) => credential.verify(password.expose()),
                    None => Credential::ShaCrypt(DUMMY_HASH.to_owned()).verify(password.expose()),
                };
                // Keep the work from being optimised away.
                std::hint::black_box(answer);
                false
            }
        }
    }

    /// `user`'s password in clear, for APOP and CRAM-MD5: only for a
    /// `{PLAIN}` (or `{CLEARTEXT}`) user; `None` for a hashed one or an
    /// unknown one.
    pub fn shared_secret(&self, user: &str) -> Option<Secret> {
        match self.users.get(user) {
            Some(Credential::Plain(secret)) => Some(secret.clone()),
            _ => None,
        }
    }

    /// Derives `{PLAIN}` users' SCRAM salts and unknown users' decoy keys
    /// from `secret` (see [Unknown users](self#unknown-users)) instead of
    /// a secret drawn when the file was read.
    #[must_use]
    pub fn with_deployment_secret(mut self, secret: DeploymentSecret) -> Self {
        self.secret = secret;
        self
    }

    /// `user`'s SCRAM keys for `hash`: those stored under that scheme, or
    /// for a `{PLAIN}` user keys derived now from the password (SASLprep,
    /// 4096 iterations, a salt derived from the deployment's secret). An
    /// unknown user gets decoy keys shaped like the first listed user's who
    /// can do SCRAM of `hash` (see [Unknown users](self#unknown-users)),
    /// which no password matches; `None` for a listed user who cannot do
    /// it, or when nobody can. The derivation costs 4096 HMACs: call it
    /// where blocking is allowed.
    ///
    /// ```
    /// use pop3_blocking::passwd::PasswdFile;
    /// use pop3_proto::scram::ScramHash;
    ///
    /// let users = PasswdFile::parse(
    ///     "alice:{PLAIN}secret\n\
    ///      bob:{SCRAM-SHA-256}4096,BXlOE1p6JoeiFnkD9ogyoQ==,4i7fUBleYPKXBGlKwEq/8UEelRgTtAF20dvvSHHWQfk=,pYdAJYpbN39FVfVX/EH3dfIMQj4zePc0sFZ2KAT5zrE=\n",
    /// )?;
    /// assert!(users.scram_keys("alice", ScramHash::Sha1).is_some());
    /// assert_eq!(users.scram_keys("bob", ScramHash::Sha256).unwrap().iterations(), 4096);
    /// assert!(users.scram_keys("bob", ScramHash::Sha1).is_none());
    /// // bob's keys verify his password for USER/PASS and PLAIN too.
    /// assert!(users.verify("bob", &pop3_proto::types::Secret::new("secret")));
    /// let forms = users.credential_forms();
    /// assert!(forms.scram_sha256 && !forms.scram_sha1 && !forms.shared_secret);
    /// # Ok::<(), pop3_blocking::passwd::PasswdError>(())
    /// ```
    pub fn scram_keys(&self, user: &str, hash: ScramHash) -> Option<ScramKeys> {
        let Some(credential) = self.users.get(user) else {
            return match &self.scram_stand_in[hash_index(hash)] {
                Some(Credential::Plain(_)) => {
                    Some(self.secret.decoy_keys_derived(hash, user, MIN_ITERATIONS))
                }
                Some(Credential::Scram(keys)) => Some(self.secret.decoy_keys_like(user, keys)),
                _ => None,
            };
        };
        match credential {
            Credential::Scram(keys) if keys.hash() == hash => Some(keys.clone()),
            Credential::Plain(secret) => {
                let password = std::str::from_utf8(secret.expose()).ok()?;
                self.secret
                    .derive_keys(hash, user, password, MIN_ITERATIONS)
                    .ok()
            }
            _ => None,
        }
    }

    /// The credential checks these users allow: a password always; the
    /// shared secret (APOP, CRAM-MD5) only when the file has at least one
    /// user and every user's password is kept in clear; SCRAM-SHA-1 and
    /// SCRAM-SHA-256 when every user is `{PLAIN}` or has keys of that
    /// hash. CAPA is announced before the user is known, so offering a
    /// mechanism some user could not use would send that user down a path
    /// that cannot succeed.
    pub fn credential_forms(&self) -> CredentialForms {
        CredentialForms::new(true, self.all_plain)
            .with_scram(self.all_scram_sha1, self.all_scram_sha256)
    }

    /// Whether `user` is listed (whatever their credential).
    pub fn contains(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    /// The number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether the file lists no user.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The listed users, in no particular order.
    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.users.keys().map(String::as_str)
    }

    /// Users whose password uses a scheme this crate cannot check (so they
    /// can never log in), with the line number of each.
    ///
    /// ```
    /// use pop3_blocking::passwd::PasswdFile;
    ///
    /// let users = PasswdFile::parse("old:{SSHA}c2FsdGVkaGFzaA==\nnew:{PLAIN}x\n")?;
    /// assert_eq!(users.unusable().collect::<Vec<_>>(), [(1, "old")]);
    /// # Ok::<(), pop3_blocking::passwd::PasswdError>(())
    /// ```
    pub fn unusable(&self) -> impl Iterator<Item = (usize, &str)> {
        self.unusable.iter().map(|(l, u)| (*l, u.as_str()))
    }

    /// Users locked on purpose, who can never log in either: an empty
    /// password field (`bob:`), or a bare crypt field starting with `!` or
    /// `*` (the shadow file's way of locking an account), with the line
    /// number of each. [`unusable`](Self::unusable) does not list them.
    ///
    /// ```
    /// use pop3_blocking::passwd::PasswdFile;
    ///
    /// let users = PasswdFile::parse("gone:\nlocked:!$6$x$y\nnew:{PLAIN}x\n")?;
    /// assert_eq!(users.disabled().collect::<Vec<_>>(), [(1, "gone"), (2, "locked")]);
    /// assert_eq!(users.unusable().count(), 0);
    /// # Ok::<(), pop3_blocking::passwd::PasswdError>(())
    /// ```
    pub fn disabled(&self) -> impl Iterator<Item = (usize, &str)> {
        self.disabled.iter().map(|(l, u)| (*l, u.as_str()))
    }
}

/// A [`PasswdFile`] that can be replaced while it is in use (a reload):
/// each look-up sees the old file or the new one, whole. Clones share it.
///
/// ```
/// use pop3_blocking::passwd::{PasswdFile, SharedPasswd};
/// use pop3_proto::types::Secret;
///
/// let users = SharedPasswd::new(PasswdFile::parse("alice:{PLAIN}one\n")?);
/// let seen_by_the_store = users.clone();
/// users.replace(PasswdFile::parse("alice:{PLAIN}two\n")?);
/// assert!(seen_by_the_store.current().verify("alice", &Secret::new("two")));
/// # Ok::<(), pop3_blocking::passwd::PasswdError>(())
/// ```
#[derive(Clone, Debug)]
pub struct SharedPasswd(std::sync::Arc<std::sync::RwLock<std::sync::Arc<PasswdFile>>>);

impl SharedPasswd {
    /// Shares `file`.
    pub fn new(file: PasswdFile) -> SharedPasswd {
        SharedPasswd(std::sync::Arc::new(std::sync::RwLock::new(
            std::sync::Arc::new(file),
        )))
    }

    /// The file in force.
    pub fn current(&self) -> std::sync::Arc<PasswdFile> {
        // A panic while the lock was held cannot leave the Arc half-written.
        match self.0.read() {
            Ok(file) => file.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Puts `file` in force for every look-up from now on.
    pub fn replace(&self, file: PasswdFile) {
        let file = std::sync::Arc::new(file);
        match self.0.write() {
            Ok(mut slot) => *slot = file,
            Err(poisoned) => *poisoned.into_inner() = file,
        }
    }
}

/// One user's credential in the passwd-file's `{SCHEME}secret` form, on
/// its own: what a store keeping users elsewhere (the PostgreSQL store)
/// checks, with the same schemes and the same rules as a passwd-file.
#[cfg(feature = "postgres")]
#[derive(Clone)]
pub(crate) struct StoredCredential(Credential);

#[cfg(feature = "postgres")]
impl StoredCredential {
    /// Reads a password field (`{SCHEME}secret`, or a bare crypt string).
    pub(crate) fn parse(field: &str) -> Result<Self, LineProblem> {
        parse_credential(field).map(StoredCredential)
    }

    /// Whether `password` matches.
    pub(crate) fn verify(&self, password: &Secret) -> bool {
        self.0.verify(password.expose())
    }

    /// Checks `password` against a hash of the default cost and forgets the
    /// answer: what refusing an unknown user costs.
    pub(crate) fn verify_nobody(password: &Secret) {
        let answer = Credential::ShaCrypt(DUMMY_HASH.to_owned()).verify(password.expose());
        std::hint::black_box(answer);
    }

    /// The password in clear, for a `{PLAIN}` credential.
    pub(crate) fn shared_secret(&self) -> Option<Secret> {
        match &self.0 {
            Credential::Plain(secret) => Some(secret.clone()),
            _ => None,
        }
    }

    /// The SCRAM keys of `hash`: stored, or derived from a `{PLAIN}`
    /// password with a salt from `secret` (as [`PasswdFile::scram_keys`]).
    pub(crate) fn scram_keys(
        &self,
        user: &str,
        hash: ScramHash,
        secret: &DeploymentSecret,
    ) -> Option<ScramKeys> {
        match &self.0 {
            Credential::Scram(keys) if keys.hash() == hash => Some(keys.clone()),
            Credential::Plain(password) => {
                let password = std::str::from_utf8(password.expose()).ok()?;
                secret
                    .derive_keys(hash, user, password, MIN_ITERATIONS)
                    .ok()
            }
            _ => None,
        }
    }
}

#[cfg(feature = "postgres")]
impl PasswdFile {
    /// `user`'s credential written back in the `{SCHEME}secret` form (an
    /// unusable one as the empty field, which never matches either).
    pub(crate) fn credential_field(&self, user: &str) -> Option<String> {
        use base64::Engine as _;
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        Some(match self.users.get(user)? {
            Credential::Plain(secret) => {
                format!("{{PLAIN}}{}", String::from_utf8_lossy(secret.expose()))
            }
            Credential::ShaCrypt(hash) => format!("{{CRYPT}}{hash}"),
            Credential::Argon2(hash) if hash.starts_with("$argon2id$") => {
                format!("{{ARGON2ID}}{hash}")
            }
            Credential::Argon2(hash) => format!("{{ARGON2I}}{hash}"),
            Credential::Scram(keys) => format!(
                "{{{}}}{},{},{},{}",
                keys.hash().mechanism(),
                keys.iterations(),
                b64(keys.salt()),
                b64(keys.stored_key()),
                b64(keys.server_key())
            ),
            Credential::Unusable => String::new(),
        })
    }
}

/// Reads the password field: `{SCHEME}secret` or a bare crypt string.
fn parse_credential(field: &str) -> Result<Credential, LineProblem> {
    if field.is_empty() {
        return Ok(Credential::Unusable);
    }
    let (scheme, secret) = match field.strip_prefix('{') {
        Some(rest) => rest
            .split_once('}')
            .ok_or(LineProblem::UnterminatedScheme)?,
        None => ("CRYPT", field),
    };
    let scheme = scheme.to_ascii_uppercase();
    match scheme.as_str() {
        "PLAIN" | "CLEARTEXT" if secret.is_empty() => Ok(Credential::Unusable),
        "PLAIN" | "CLEARTEXT" => Ok(Credential::Plain(Secret::new(secret.to_owned()))),
        "SHA512-CRYPT" if secret.starts_with("$6$") => sha_crypt(secret),
        "SHA256-CRYPT" if secret.starts_with("$5$") => sha_crypt(secret),
        "SHA512-CRYPT" | "SHA256-CRYPT" => Err(LineProblem::MalformedHash),
        "CRYPT" if secret.starts_with("$6$") || secret.starts_with("$5$") => sha_crypt(secret),
        "ARGON2ID" if secret.starts_with("$argon2id$") => argon2(secret),
        "ARGON2I" if secret.starts_with("$argon2i$") => argon2(secret),
        "ARGON2ID" | "ARGON2I" => Err(LineProblem::MalformedHash),
        "SCRAM-SHA-1" => scram(ScramHash::Sha1, secret),
        "SCRAM-SHA-256" => scram(ScramHash::Sha256, secret),
        _ => Ok(Credential::Unusable),
    }
}

fn sha_crypt(hash: &str) -> Result<Credential, LineProblem> {
    // Check the shape now so that a typo shows at load time, not as a
    // user who can never log in.
    let parsed = sha_crypt::PasswordHashRef::new(hash).map_err(|_| LineProblem::MalformedHash)?;
    let mut fields = parsed.fields();
    let mut next = fields.next();
    if let Some(f) = next.filter(|f| f.as_str().starts_with("rounds=")) {
        f.as_str()
            .parse::<sha_crypt::Params>()
            .map_err(|_| LineProblem::MalformedHash)?;
        next = fields.next();
    }
    let (Some(_salt), Some(_hash), None) = (next, fields.next(), fields.next()) else {
        return Err(LineProblem::MalformedHash);
    };
    Ok(Credential::ShaCrypt(hash.to_owned()))
}

/// Dovecot's SCRAM form: `iterations,salt,StoredKey,ServerKey`, the last
/// three in base64.
fn scram(hash: ScramHash, field: &str) -> Result<Credential, LineProblem> {
    use base64::Engine as _;
    let b64 = |s: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(|_| LineProblem::MalformedHash)
    };
    let mut parts = field.split(',');
    let (Some(iterations), Some(salt), Some(stored), Some(server), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(LineProblem::MalformedHash);
    };
    let iterations = iterations
        .parse::<u32>()
        .map_err(|_| LineProblem::MalformedHash)?;
    ScramKeys::new(hash, b64(salt)?, iterations, b64(stored)?, b64(server)?)
        .map(Credential::Scram)
        .map_err(|_| LineProblem::MalformedHash)
}

fn argon2(hash: &str) -> Result<Credential, LineProblem> {
    let parsed = argon2::password_hash::phc::PasswordHash::new(hash)
        .map_err(|_| LineProblem::MalformedHash)?;
    if parsed.salt.is_none() || parsed.hash.is_none() {
        return Err(LineProblem::MalformedHash);
    }
    argon2::Params::try_from(&parsed).map_err(|_| LineProblem::MalformedHash)?;
    Ok(Credential::Argon2(hash.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dummy_hash_is_well_formed_and_matches_no_password() {
        assert!(matches!(sha_crypt(DUMMY_HASH), Ok(Credential::ShaCrypt(_))));
        // The password whose digest it was made from no longer matches.
        let dummy = Credential::ShaCrypt(DUMMY_HASH.to_owned());
        for password in [&b"no user here"[..], b"", b"password", b"pop3rsdummysalt"] {
            assert!(!dummy.verify(password), "{password:?}");
        }
    }

    #[test]
    fn no_password_logs_in_an_unknown_user() {
        // A file with no usable credential: the dummy hash is checked.
        let file = PasswdFile::parse("a:{SSHA}x\n").unwrap();
        assert!(file.stand_in.is_none());
        for password in ["no user here", "", "x", "password"] {
            assert!(!file.verify("nobody", &Secret::new(password)), "{password}");
        }
        // With a stand-in: not even its own password.
        let file = PasswdFile::parse("b:{PLAIN}p\n").unwrap();
        assert!(!file.verify("nobody", &Secret::new("p")));
    }

    #[test]
    fn stand_in_is_the_first_usable_credential() {
        let file = PasswdFile::parse("a:{SSHA}x\nb:{PLAIN}p\nc:{PLAIN}q\n").unwrap();
        assert!(matches!(&file.stand_in, Some(Credential::Plain(s)) if s.expose() == b"p"));
        assert!(!file.verify("d", &Secret::new("p")));
        let empty = PasswdFile::parse("a:{SSHA}x\n").unwrap();
        assert!(empty.stand_in.is_none());
        assert!(!empty.verify("d", &Secret::new("no user here")));
    }
}
