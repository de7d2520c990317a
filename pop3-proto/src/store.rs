//! The mailstore contract: what an application implements to back a server.
//!
//! The server machine never sees a file. It asks, through
//! `StoreRequest` actions, for what it cannot know itself, and the adapter
//! answers by calling a [`Store`]. One store serves every runtime: the
//! methods return `Send` futures and do no I/O of their own in this crate. A
//! blocking store wraps its calls (e.g. with `spawn_blocking`) instead of
//! being rewritten.
//!
//! A store answers each request once. Dropping a [`Maildrop`] without
//! committing releases its lock and deletes nothing.
//!
//! # Commits
//!
//! The commit of a QUIT ([`Maildrop::commit`]) is never cancelled: once
//! the machine asks for it, it runs to its end, even when the store timeout
//! passes first, the client is gone or the server is shutting down. The
//! [`StoreDriver`] keeps it when the adapter stops waiting, and every adapter
//! finishes it ([`StoreDriver::finish`]) after closing the connection. A
//! client the store timeout cut off got `-ERR [SYS/TEMP]` to its QUIT.
//!
//! A commit is not atomic as a whole; each message's removal is. A commit
//! removes every marked message it can; one that fails, or is interrupted
//! by a crash, has removed some of the marked messages (any subset: all,
//! none, or some) and never a message that was not marked. For a client
//! this means that after `-ERR` to its QUIT, or no answer, each message it
//! deleted may be gone or still there, and the others are all there:
//! listed again in the next session under the same unique-id, so a client
//! that keeps track of unique-ids (UIDL) deletes them again rather than
//! fetching them twice. (RFC 1939 asks no more: a server that cannot
//! remove every marked message answers `-ERR`.)
//!
//! # Retention policies: EXPIRE and LOGIN-DELAY
//!
//! A commit hands the store an [`Update`]: the messages to remove, and the
//! messages the session retrieved in full with RETR (never TOP). That is
//! what a store needs to enforce `EXPIRE n` (RFC 2449 §6.7) with `n > 0`:
//! it records when each message was first retrieved, and at a later
//! UPDATE removes those retrieved `n` days ago or more, besides the marked
//! ones. The rules:
//!
//! - Only at UPDATE. A session that ends without QUIT (a dropped
//!   connection, an autologout, a shutdown) commits nothing: nothing is
//!   removed and no retrieval is recorded.
//! - Nothing that is not due. A message never retrieved, or retrieved less
//!   than `n` days ago, is kept; a crash, or a retrieval record the store
//!   cannot read, may keep a due message longer, never remove one early.
//! - Advertised only when enforced. The server advertises what its
//!   [`ServerConfig::expire`](crate::server::ServerConfig::expire) says
//!   (`EXPIRE NEVER` by default); whoever sets up a store that enforces
//!   `EXPIRE n` sets the same `n` there. `EXPIRE 0` needs no store support:
//!   the machine itself adds every message retrieved with RETR to the
//!   deleted ones.
//!
//! `LOGIN-DELAY` (RFC 2449 §6.5) is the store's too: it records each
//! user's last login at [`Store::open`] and answers an open that comes too
//! soon with [`StoreError::LoginDelay`] (the client gets
//! `-ERR [LOGIN-DELAY]`); the server advertises it with
//! [`ServerConfig::login_delay`](crate::server::ServerConfig::login_delay).

use alloc::string::String;
use alloc::vec::Vec;
use bytes::Bytes;
use core::fmt;
use core::future::Future;

use crate::scram::{ScramHash, ScramKeys};
use crate::types::{Secret, Uid};

/// Which credential checks a store can perform, so that CAPA offers only
/// mechanisms that can succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
#[must_use = "a configuration does nothing until it is used"]
pub struct CredentialForms {
    /// The store can verify a password ([`Store::verify_password`]):
    /// USER/PASS, SASL PLAIN and LOGIN.
    pub password: bool,
    /// The store can hand out the shared secret in clear
    /// ([`Store::shared_secret`]): APOP and CRAM-MD5.
    pub shared_secret: bool,
    /// The store can hand out SCRAM-SHA-1 keys ([`Store::scram_keys`]).
    pub scram_sha1: bool,
    /// The store can hand out SCRAM-SHA-256 keys ([`Store::scram_keys`]).
    pub scram_sha256: bool,
    /// The store can check OAuth 2.0 bearer tokens
    /// ([`Store::verify_bearer_token`]): OAUTHBEARER and XOAUTH2.
    pub oauth_bearer: bool,
}

impl CredentialForms {
    /// Forms with the given flags, and no SCRAM keys.
    pub const fn new(password: bool, shared_secret: bool) -> Self {
        CredentialForms {
            password,
            shared_secret,
            scram_sha1: false,
            scram_sha256: false,
            oauth_bearer: false,
        }
    }

    /// These forms, with bearer tokens checked or not.
    ///
    /// ```
    /// use pop3_proto::store::CredentialForms;
    /// assert!(CredentialForms::new(false, false).with_oauth_bearer(true).oauth_bearer);
    /// ```
    pub const fn with_oauth_bearer(mut self, enabled: bool) -> Self {
        self.oauth_bearer = enabled;
        self
    }

    /// These forms, with SCRAM-SHA-1 and SCRAM-SHA-256 keys or not.
    ///
    /// ```
    /// use pop3_proto::scram::ScramHash;
    /// use pop3_proto::store::CredentialForms;
    /// let forms = CredentialForms::new(true, false).with_scram(false, true);
    /// assert!(forms.scram(ScramHash::Sha256) && !forms.scram(ScramHash::Sha1));
    /// ```
    pub const fn with_scram(mut self, sha1: bool, sha256: bool) -> Self {
        self.scram_sha1 = sha1;
        self.scram_sha256 = sha256;
        self
    }

    /// Whether the store can hand out SCRAM keys for `hash`.
    pub const fn scram(&self, hash: ScramHash) -> bool {
        match hash {
            ScramHash::Sha1 => self.scram_sha1,
            ScramHash::Sha256 => self.scram_sha256,
        }
    }
}

/// A pluggable check of OAuth 2.0 bearer tokens, for stores to offer
/// OAUTHBEARER and XOAUTH2: a function from the user name and the token to
/// whether the token lets that user in and, optionally, one from the token
/// to the user it was issued to (for OAUTHBEARER messages without an
/// authorization identity, RFC 7628 §3.1). They run in the store call (off
/// the session machine): a blocking store may call an authorization server
/// from them.
///
/// ```
/// use pop3_proto::store::TokenValidator;
/// use pop3_proto::types::Secret;
/// let v = TokenValidator::new(|user, token| user == "alice" && token.expose() == b"ya29.token")
///     .with_owner(|token| (token.expose() == b"ya29.token").then(|| "alice".to_string()));
/// assert!(v.check("alice", &Secret::new("ya29.token")));
/// assert!(!v.check("bob", &Secret::new("ya29.token")));
/// assert_eq!(v.owner(&Secret::new("ya29.token")).as_deref(), Some("alice"));
/// ```
#[derive(Clone)]
pub struct TokenValidator {
    check: alloc::sync::Arc<TokenCheck>,
    owner: Option<alloc::sync::Arc<TokenOwner>>,
}

/// The function inside a [`TokenValidator`].
type TokenCheck = dyn Fn(&str, &Secret) -> bool + Send + Sync;

/// The token's user, inside a [`TokenValidator`].
type TokenOwner = dyn Fn(&Secret) -> Option<String> + Send + Sync;

impl TokenValidator {
    /// A validator calling `f(user, token)`; it names no token's user.
    pub fn new(f: impl Fn(&str, &Secret) -> bool + Send + Sync + 'static) -> Self {
        TokenValidator {
            check: alloc::sync::Arc::new(f),
            owner: None,
        }
    }

    /// With `f(token)` naming the user a token was issued to (`None` for a
    /// token that lets nobody in), for OAUTHBEARER without an authorization
    /// identity. Without it such messages fail.
    #[must_use]
    pub fn with_owner(
        mut self,
        f: impl Fn(&Secret) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.owner = Some(alloc::sync::Arc::new(f));
        self
    }

    /// Whether `token` lets `user` in.
    pub fn check(&self, user: &str, token: &Secret) -> bool {
        (self.check)(user, token)
    }

    /// The user `token` lets in, if the validator can tell.
    pub fn owner(&self, token: &Secret) -> Option<String> {
        self.owner.as_ref().and_then(|f| f(token))
    }
}

impl fmt::Debug for TokenValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenValidator")
    }
}

/// One message of an opened maildrop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageInfo {
    /// Its size as RFC 1939 §11 counts it (every line end as CRLF, no
    /// stuffing), which is what LIST and STAT report.
    pub size: u64,
    /// Its unique-id: stable across sessions, never reused.
    pub uid: Uid,
}

/// What a session leaves at UPDATE (its QUIT): the messages to remove and
/// the messages it retrieved, handed to [`Maildrop::commit`].
///
/// Both lists hold zero-based indexes into the listing of
/// [`Maildrop::messages`], in ascending order, without duplicates, when
/// the server machine builds them; a store ignores an index out of range.
/// A message may be in both (retrieved, then deleted).
///
/// * `deleted`: the messages marked with DELE and not brought back by RSET,
///   and, under `EXPIRE 0` advertised by the machine
///   ([`ServerConfig::expire`](crate::server::ServerConfig::expire)), every
///   message retrieved with RETR. The store removes these, and only these
///   unless it enforces a retention policy of its own.
/// * `retrieved`: the messages this session sent in full with RETR (the
///   whole body went out; RSET does not take a message off this list).
///   TOP never counts, even of every line: it is how clients look at a
///   message without downloading it. A store that enforces `EXPIRE n`
///   (messages retrieved `n` days ago or more are removed) records when
///   these were first retrieved, and at a later UPDATE also removes those
///   whose time has come. A store without such a policy ignores the list.
///
/// A store may remove, beside `deleted`, only messages its own advertised
/// policy makes due; a dropped connection or an autologout never reaches
/// UPDATE, so nothing is committed (nor recorded as retrieved).
///
/// ```
/// use pop3_proto::store::Update;
/// let update = Update::new(vec![0, 3]).with_retrieved(vec![1, 3]);
/// assert_eq!(update.deleted, [0, 3]);
/// assert_eq!(update.retrieved, [1, 3]);
/// assert_eq!(Update::from(vec![2]), Update::new(vec![2]));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Update {
    /// The messages to remove (zero-based indexes).
    pub deleted: Vec<usize>,
    /// The messages this session retrieved in full with RETR (zero-based
    /// indexes).
    pub retrieved: Vec<usize>,
}

impl Update {
    /// An update removing `deleted`, with nothing retrieved.
    pub fn new(deleted: Vec<usize>) -> Self {
        Update {
            deleted,
            retrieved: Vec::new(),
        }
    }

    /// This update, with `retrieved` as the messages retrieved in full.
    #[must_use]
    pub fn with_retrieved(mut self, retrieved: Vec<usize>) -> Self {
        self.retrieved = retrieved;
        self
    }
}

impl From<Vec<usize>> for Update {
    /// An update removing these messages ([`Update::new`]).
    fn from(deleted: Vec<usize>) -> Self {
        Update::new(deleted)
    }
}

/// Why a store could not do what was asked.
///
/// The server machine answers with a response code chosen by the variant
/// alone; the [`Cause`] of a failure is never sent to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// The maildrop is locked by another session (`[IN-USE]`).
    InUse,
    /// The user logged in too recently (`[LOGIN-DELAY]`).
    LoginDelay,
    /// A temporary failure; trying again later may help (`[SYS/TEMP]`).
    Temporary(Cause),
    /// A permanent failure (`[SYS/PERM]`).
    Permanent(Cause),
    /// The message is gone from the store (removed behind the server's back).
    MessageGone,
}

impl StoreError {
    /// Whether trying again later may succeed: [`InUse`](StoreError::InUse),
    /// [`LoginDelay`](StoreError::LoginDelay) and
    /// [`Temporary`](StoreError::Temporary).
    ///
    /// ```
    /// use pop3_proto::store::{Cause, StoreError};
    ///
    /// assert!(StoreError::InUse.is_transient());
    /// assert!(StoreError::Temporary(Cause::TaskFailed).is_transient());
    /// assert!(!StoreError::Permanent(Cause::NoSuchUser).is_transient());
    /// assert!(!StoreError::MessageGone.is_transient());
    /// ```
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::InUse | StoreError::LoginDelay | StoreError::Temporary(_)
        )
    }

    /// The cause of a [`Temporary`](StoreError::Temporary) or
    /// [`Permanent`](StoreError::Permanent) failure.
    pub fn cause(&self) -> Option<&Cause> {
        match self {
            StoreError::Temporary(c) | StoreError::Permanent(c) => Some(c),
            _ => None,
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::InUse => f.write_str("maildrop in use"),
            StoreError::LoginDelay => f.write_str("login delay not yet passed"),
            StoreError::Temporary(c) => write!(f, "temporary store failure: {c}"),
            StoreError::Permanent(c) => write!(f, "permanent store failure: {c}"),
            StoreError::MessageGone => f.write_str("message no longer in the store"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for StoreError {}

/// A source of users and maildrops.
pub trait Store: Send + Sync {
    /// An opened, locked maildrop.
    type Maildrop: Maildrop;

    /// The credential checks this store can perform.
    fn credential_forms(&self) -> CredentialForms;

    /// Whether `password` is `user`'s password. An unknown user is `Ok(false)`.
    fn verify_password(
        &self,
        user: &str,
        password: &Secret,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// `user`'s shared secret in clear, for APOP and CRAM-MD5; `None` when
    /// the user is unknown or the store keeps only a hash.
    fn shared_secret(
        &self,
        user: &str,
    ) -> impl Future<Output = Result<Option<Secret>, StoreError>> + Send;

    /// `user`'s SCRAM keys for `hash` (SCRAM-SHA-1, SCRAM-SHA-256); `None`
    /// when the user has none for that hash. A store that keeps plaintext
    /// passwords derives them here, with salts from the deployment's secret
    /// ([`DeploymentSecret::derive_keys`](crate::scram::DeploymentSecret::derive_keys),
    /// which applies SASLprep), never from the user name alone.
    ///
    /// For a user it does not know, a store answers decoy keys shaped like
    /// its real users' (the same salt on every request, the same iteration
    /// count, the same work: [`DeploymentSecret::decoy_keys_derived`](crate::scram::DeploymentSecret::decoy_keys_derived)
    /// or [`DeploymentSecret::decoy_keys`](crate::scram::DeploymentSecret::decoy_keys)):
    /// the exchange then fails at the proof like a wrong password. `None`
    /// for an unknown user lets the machine make decoys itself, which cost
    /// nothing (and, without
    /// [`ServerConfig::deployment_secret`](crate::server::ServerConfig::deployment_secret),
    /// change on every connection). The default has none.
    fn scram_keys(
        &self,
        user: &str,
        hash: ScramHash,
    ) -> impl Future<Output = Result<Option<ScramKeys>, StoreError>> + Send {
        let _ = (user, hash);
        core::future::ready(Ok(None))
    }

    /// Whether `token` is an OAuth 2.0 bearer token that lets `user` in
    /// (OAUTHBEARER, XOAUTH2): the store's token validator (a lookup, an
    /// introspection request to the authorization server, a JWT check).
    /// The default accepts none.
    fn verify_bearer_token(
        &self,
        user: &str,
        token: &Secret,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        let _ = (user, token);
        core::future::ready(Ok(false))
    }

    /// The user `token` (an OAuth 2.0 bearer token) was issued to, if it
    /// lets anyone in: OAUTHBEARER without an authorization identity
    /// (RFC 7628 §3.1), where only the token says who the client is. The
    /// default knows none (such logins fail).
    fn bearer_token_owner(
        &self,
        token: &Secret,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send {
        let _ = token;
        core::future::ready(Ok(None))
    }

    /// Opens and exclusively locks `user`'s maildrop (an authenticated user).
    /// A maildrop locked elsewhere is [`StoreError::InUse`].
    fn open(&self, user: &str) -> impl Future<Output = Result<Self::Maildrop, StoreError>> + Send;
}

/// An opened, exclusively locked maildrop. Dropping it releases the lock and
/// deletes nothing. Adapters drop it on the thread that polls the session,
/// so its drop must not block: a store whose drop blocks (closes files,
/// releases a lock file) hands that work to a thread where blocking is
/// allowed, as an [`OffloadStore`] does with [`Offload::detach`].
pub trait Maildrop: Send {
    /// A message being read.
    type Reader: MessageReader;

    /// The messages, in order: message number `n` is `messages()[n - 1]`.
    fn messages(&self) -> &[MessageInfo];

    /// Starts reading the message at zero-based `index`.
    fn read(
        &mut self,
        index: usize,
    ) -> impl Future<Output = Result<Self::Reader, StoreError>> + Send;

    /// UPDATE state: removes the messages of `update.deleted` (zero-based
    /// indexes), records or acts on `update.retrieved` if the store has a
    /// retention policy (see [`Update`]), then releases the lock. It runs
    /// to its end once started: the [`StoreDriver`] never drops it (see
    /// [commits](crate::store#commits)). Each message is removed atomically
    /// or not at all, and nothing else is removed but what the store's own
    /// advertised policy makes due; `Err` says that some marked messages
    /// may still be there (those removed stay removed).
    fn commit(self, update: Update) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// A message's content, pulled as chunks of any size.
pub trait MessageReader: Send {
    /// The next chunk of the raw message (line ends as stored), or `None` at the end.
    fn next_chunk(&mut self) -> impl Future<Output = Result<Option<Bytes>, StoreError>> + Send;
}

/// The blocking form of [`Store`], for stores built on blocking I/O (files,
/// a synchronous database client). An adapter turns it into a [`Store`] by
/// running each call where blocking is allowed (a blocking thread pool, or
/// the calling thread in a blocking server), so a store is written once for
/// every runtime.
pub trait BlockingStore: Send + Sync + 'static {
    /// An opened, locked maildrop.
    type Maildrop: BlockingMaildrop;

    /// The credential checks this store can perform.
    fn credential_forms(&self) -> CredentialForms;

    /// As [`Store::verify_password`].
    fn verify_password(&self, user: &str, password: &Secret) -> Result<bool, StoreError>;

    /// As [`Store::shared_secret`].
    fn shared_secret(&self, user: &str) -> Result<Option<Secret>, StoreError>;

    /// As [`Store::verify_bearer_token`]; the default accepts none.
    fn verify_bearer_token(&self, user: &str, token: &Secret) -> Result<bool, StoreError> {
        let _ = (user, token);
        Ok(false)
    }

    /// As [`Store::bearer_token_owner`]; the default knows none.
    fn bearer_token_owner(&self, token: &Secret) -> Result<Option<String>, StoreError> {
        let _ = token;
        Ok(None)
    }

    /// As [`Store::scram_keys`]; the default has none.
    fn scram_keys(&self, user: &str, hash: ScramHash) -> Result<Option<ScramKeys>, StoreError> {
        let _ = (user, hash);
        Ok(None)
    }

    /// As [`Store::open`].
    fn open(&self, user: &str) -> Result<Self::Maildrop, StoreError>;
}

/// The blocking form of [`Maildrop`]. It may block when dropped (an
/// [`OffloadStore`] drops it where blocking is allowed).
pub trait BlockingMaildrop: Send + 'static {
    /// A message being read.
    type Reader: BlockingMessageReader;

    /// Whether [`read`](BlockingMaildrop::read) may be called for messages
    /// the client has not asked for yet: an [`OffloadStore`] then reads the
    /// messages after the one asked for in the same call of its pool
    /// (see [`OffloadMaildrop`]). Only for stores whose `read` has no
    /// effect beyond reading (it marks nothing as seen); default `false`.
    const READ_AHEAD_MESSAGES: bool = false;

    /// As [`Maildrop::messages`].
    fn messages(&self) -> &[MessageInfo];

    /// As [`Maildrop::read`].
    fn read(&mut self, index: usize) -> Result<Self::Reader, StoreError>;

    /// As [`Maildrop::commit`].
    fn commit(self, update: Update) -> Result<(), StoreError>;
}

/// The blocking form of [`MessageReader`]. An [`OffloadStore`] drops it in
/// the call where it returned `None` (the end of the message), so that a
/// message read to its end holds nothing open.
pub trait BlockingMessageReader: Send + 'static {
    /// As [`MessageReader::next_chunk`].
    fn next_chunk(&mut self) -> Result<Option<Bytes>, StoreError>;
}

mod cause;
pub use cause::{Cause, IoKind};

mod driver;
pub use driver::StoreDriver;

#[cfg(feature = "std")]
mod offload;
#[cfg(feature = "std")]
pub use offload::{Inline, Offload, OffloadMaildrop, OffloadReader, OffloadStore};

#[cfg(feature = "std")]
mod memory;
#[cfg(feature = "std")]
pub use memory::{MemoryMaildrop, MemoryReader, MemoryStore};
