//! An in-memory store: the reference implementation of the store contract,
//! for tests and examples.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use bytes::Bytes;
use core::future::{Future, ready};
use std::sync::{Mutex, MutexGuard};

use super::{
    Cause, CredentialForms, Maildrop, MessageInfo, MessageReader, Store, StoreError, Update,
};
use crate::scram::{DeploymentSecret, MIN_ITERATIONS};
use crate::types::{Secret, Uid};

#[derive(Debug, Default)]
struct Inner {
    users: BTreeMap<String, UserData>,
    next_uid: u64,
}

#[derive(Debug, Default)]
struct UserData {
    password: Secret,
    messages: Vec<Stored>,
    locked: bool,
    fail_open: Option<StoreError>,
}

#[derive(Debug, Clone)]
struct Stored {
    info: MessageInfo,
    content: Bytes,
    /// Whether a committed session retrieved it in full.
    retrieved: bool,
}

/// Users with plaintext passwords and their maildrops, in memory.
///
/// Opening a maildrop locks it (a second open while it is locked is
/// [`StoreError::InUse`]); dropping the [`MemoryMaildrop`] unlocks it;
/// committing removes the deleted messages. Unique-ids are never reused.
/// The password doubles as the shared secret (APOP, CRAM-MD5); SCRAM keys
/// are derived from it on each request (4096 iterations, a salt derived
/// from the store's [`DeploymentSecret`] and the user name), as a store
/// keeping plaintext passwords does. A user it does not know gets decoy
/// keys made the same way ([`DeploymentSecret::decoy_keys_derived`]): the
/// same salt on every request, the same work, and a failed proof. The
/// secret is drawn when the store is made unless
/// [`MemoryStore::with_deployment_secret`] sets one.
///
/// ```
/// use pop3_proto::store::MemoryStore;
/// let store = MemoryStore::new();
/// store.add_user("alice", "secret");
/// store.add_message("alice", "Subject: hi\r\n\r\nHello\r\n");
/// assert_eq!(store.message_count("alice"), 1);
/// ```
#[derive(Debug, Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
    chunk_size: usize,
    forms: CredentialForms,
    tokens: Option<super::TokenValidator>,
    secret: DeploymentSecret,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

fn lock(inner: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    inner.lock().unwrap_or_else(|e| e.into_inner())
}

impl MemoryStore {
    /// An empty store handing out bodies in 4 KiB chunks.
    pub fn new() -> Self {
        MemoryStore {
            inner: Arc::default(),
            chunk_size: 4096,
            forms: CredentialForms::new(true, true).with_scram(true, true),
            tokens: None,
            secret: DeploymentSecret::ephemeral(),
        }
    }

    /// Derives SCRAM salts (and unknown users' decoy keys) from `secret`
    /// instead of one drawn when the store was made.
    #[must_use]
    pub fn with_deployment_secret(mut self, secret: DeploymentSecret) -> Self {
        self.secret = secret;
        self
    }

    /// Hands out message bodies in chunks of `size` octets (at least 1).
    #[must_use]
    pub fn with_chunk_size(mut self, size: usize) -> Self {
        self.chunk_size = size.max(1);
        self
    }

    /// Reports these credential forms (default: all of them).
    #[must_use]
    pub fn with_credential_forms(mut self, forms: CredentialForms) -> Self {
        self.forms = forms;
        self
    }

    /// Checks OAuth 2.0 bearer tokens with `validator` (OAUTHBEARER,
    /// XOAUTH2), which the credential forms then include.
    ///
    /// ```
    /// use pop3_proto::store::{MemoryStore, Store, TokenValidator};
    /// let store = MemoryStore::new()
    ///     .with_token_validator(TokenValidator::new(|u, t| u == "alice" && t.expose() == b"tok"));
    /// assert!(store.credential_forms().oauth_bearer);
    /// ```
    #[must_use]
    pub fn with_token_validator(mut self, validator: super::TokenValidator) -> Self {
        self.tokens = Some(validator);
        self.forms.oauth_bearer = true;
        self
    }

    /// Adds (or replaces the password of) a user.
    pub fn add_user(&self, user: &str, password: &str) {
        let mut inner = lock(&self.inner);
        inner.users.entry(String::from(user)).or_default().password =
            Secret::new(Bytes::copy_from_slice(password.as_bytes()));
    }

    /// Appends a message to `user`'s maildrop (creating the user without a
    /// password if needed) and returns its unique-id.
    pub fn add_message(&self, user: &str, content: impl Into<Bytes>) -> Uid {
        let content = content.into();
        let mut inner = lock(&self.inner);
        inner.next_uid += 1;
        let uid = Uid::new(alloc::format!("mem{:010}", inner.next_uid))
            .unwrap_or_else(|_| unreachable!("a valid unique-id"));
        let info = MessageInfo {
            size: crate::dot::octet_count(&content),
            uid: uid.clone(),
        };
        inner
            .users
            .entry(String::from(user))
            .or_default()
            .messages
            .push(Stored {
                info,
                content,
                retrieved: false,
            });
        uid
    }

    /// The number of messages in `user`'s maildrop.
    pub fn message_count(&self, user: &str) -> usize {
        lock(&self.inner)
            .users
            .get(user)
            .map_or(0, |u| u.messages.len())
    }

    /// The contents of `user`'s messages, in order.
    pub fn messages(&self, user: &str) -> Vec<Bytes> {
        lock(&self.inner)
            .users
            .get(user)
            .map_or_else(Vec::new, |u| {
                u.messages.iter().map(|m| m.content.clone()).collect()
            })
    }

    /// The unique-ids of `user`'s messages that a session retrieved in full
    /// with RETR and then committed (QUIT), in order. The store keeps no
    /// retention policy; this is what a store enforcing `EXPIRE n` would
    /// record ([`Update::retrieved`]).
    ///
    /// ```
    /// use pop3_proto::store::{Maildrop, MemoryStore, Store, Update};
    /// # fn ready<F: Future>(f: F) -> F::Output {
    /// #     let mut f = std::pin::pin!(f);
    /// #     match f.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
    /// #         std::task::Poll::Ready(v) => v,
    /// #         std::task::Poll::Pending => unreachable!("MemoryStore never waits"),
    /// #     }
    /// # }
    /// let store = MemoryStore::new();
    /// let first = store.add_message("bob", "a\r\n");
    /// store.add_message("bob", "b\r\n");
    /// let drop = ready(store.open("bob")).unwrap();
    /// ready(drop.commit(Update::new(vec![]).with_retrieved(vec![0]))).unwrap();
    /// assert_eq!(store.retrieved_uids("bob"), [first]);
    /// ```
    pub fn retrieved_uids(&self, user: &str) -> Vec<Uid> {
        lock(&self.inner)
            .users
            .get(user)
            .map_or_else(Vec::new, |u| {
                u.messages
                    .iter()
                    .filter(|m| m.retrieved)
                    .map(|m| m.info.uid.clone())
                    .collect()
            })
    }

    /// Whether `user`'s maildrop is locked by an open session.
    pub fn is_locked(&self, user: &str) -> bool {
        lock(&self.inner).users.get(user).is_some_and(|u| u.locked)
    }

    /// Makes the next open of `user`'s maildrop fail with `err` (to test
    /// `[LOGIN-DELAY]`, `[SYS/TEMP]` and the like).
    pub fn fail_next_open(&self, user: &str, err: StoreError) {
        lock(&self.inner)
            .users
            .entry(String::from(user))
            .or_default()
            .fail_open = Some(err);
    }
}

impl Store for MemoryStore {
    type Maildrop = MemoryMaildrop;

    fn credential_forms(&self) -> CredentialForms {
        self.forms
    }

    fn verify_password(
        &self,
        user: &str,
        password: &Secret,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        let inner = lock(&self.inner);
        let ok = inner.users.get(user).is_some_and(|u| {
            !u.password.is_empty()
                && crate::server::constant_time_eq(u.password.expose(), password.expose())
        });
        ready(Ok(ok))
    }

    fn shared_secret(
        &self,
        user: &str,
    ) -> impl Future<Output = Result<Option<Secret>, StoreError>> + Send {
        let inner = lock(&self.inner);
        let secret = inner
            .users
            .get(user)
            .filter(|u| !u.password.is_empty())
            .map(|u| u.password.clone());
        ready(Ok(secret))
    }

    fn verify_bearer_token(
        &self,
        user: &str,
        token: &Secret,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        let known = lock(&self.inner).users.contains_key(user);
        let ok = known && self.tokens.as_ref().is_some_and(|v| v.check(user, token));
        ready(Ok(ok))
    }

    fn bearer_token_owner(
        &self,
        token: &Secret,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send {
        let owner = self.tokens.as_ref().and_then(|v| v.owner(token));
        let owner = owner.filter(|u| lock(&self.inner).users.contains_key(u));
        ready(Ok(owner))
    }

    fn scram_keys(
        &self,
        user: &str,
        hash: crate::scram::ScramHash,
    ) -> impl Future<Output = Result<Option<crate::scram::ScramKeys>, StoreError>> + Send {
        let password = lock(&self.inner)
            .users
            .get(user)
            .filter(|u| !u.password.is_empty())
            .map(|u| u.password.clone());
        let keys = match password {
            Some(p) => core::str::from_utf8(p.expose())
                .ok()
                .and_then(|p| self.secret.derive_keys(hash, user, p, MIN_ITERATIONS).ok()),
            // Unknown (or without a password): keys that look the same.
            None => Some(self.secret.decoy_keys_derived(hash, user, MIN_ITERATIONS)),
        };
        ready(Ok(keys))
    }

    fn open(&self, user: &str) -> impl Future<Output = Result<MemoryMaildrop, StoreError>> + Send {
        let mut inner = lock(&self.inner);
        let result = match inner.users.get_mut(user) {
            None => Err(StoreError::Permanent(Cause::NoSuchUser)),
            Some(u) => {
                if let Some(err) = u.fail_open.take() {
                    Err(err)
                } else if u.locked {
                    Err(StoreError::InUse)
                } else {
                    u.locked = true;
                    Ok(MemoryMaildrop {
                        inner: Arc::clone(&self.inner),
                        user: String::from(user),
                        list: u.messages.iter().map(|m| m.info.clone()).collect(),
                        contents: u.messages.iter().map(|m| m.content.clone()).collect(),
                        chunk_size: self.chunk_size,
                    })
                }
            }
        };
        ready(result)
    }
}

/// An open, locked maildrop of a [`MemoryStore`].
#[derive(Debug)]
pub struct MemoryMaildrop {
    inner: Arc<Mutex<Inner>>,
    user: String,
    list: Vec<MessageInfo>,
    contents: Vec<Bytes>,
    chunk_size: usize,
}

impl Drop for MemoryMaildrop {
    fn drop(&mut self) {
        if let Some(u) = lock(&self.inner).users.get_mut(&self.user) {
            u.locked = false;
        }
    }
}

impl Maildrop for MemoryMaildrop {
    type Reader = MemoryReader;

    fn messages(&self) -> &[MessageInfo] {
        &self.list
    }

    fn read(
        &mut self,
        index: usize,
    ) -> impl Future<Output = Result<MemoryReader, StoreError>> + Send {
        ready(match self.contents.get(index) {
            Some(content) => Ok(MemoryReader {
                content: content.clone(),
                chunk_size: self.chunk_size,
            }),
            None => Err(StoreError::MessageGone),
        })
    }

    fn commit(self, update: Update) -> impl Future<Output = Result<(), StoreError>> + Send {
        {
            let mut inner = lock(&self.inner);
            if let Some(u) = inner.users.get_mut(&self.user) {
                let uids = |indexes: &[usize]| -> Vec<Uid> {
                    indexes
                        .iter()
                        .filter_map(|&i| self.list.get(i))
                        .map(|m| m.uid.clone())
                        .collect()
                };
                let (gone, seen) = (uids(&update.deleted), uids(&update.retrieved));
                u.messages.retain(|m| !gone.contains(&m.info.uid));
                for m in &mut u.messages {
                    if seen.contains(&m.info.uid) {
                        m.retrieved = true;
                    }
                }
            }
        }
        drop(self);
        ready(Ok(()))
    }
}

/// A message of a [`MemoryStore`] being read.
#[derive(Debug)]
pub struct MemoryReader {
    content: Bytes,
    chunk_size: usize,
}

impl MessageReader for MemoryReader {
    fn next_chunk(&mut self) -> impl Future<Output = Result<Option<Bytes>, StoreError>> + Send {
        let n = self.chunk_size.min(self.content.len());
        ready(Ok(if n == 0 {
            None
        } else {
            Some(self.content.split_to(n))
        }))
    }
}
