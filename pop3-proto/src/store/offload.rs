//! A [`BlockingStore`] served as a [`Store`]: each call runs where blocking
//! is allowed, as an adapter's [`Offload`] says (a blocking thread pool, or
//! the calling thread in a blocking server).

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::vec::Vec;

use bytes::Bytes;
use core::future::Future;

use super::{
    BlockingMaildrop, BlockingMessageReader, BlockingStore, Cause, CredentialForms, Maildrop,
    MessageInfo, MessageReader, Store, StoreError,
};
use crate::types::Secret;

/// Where a blocking call runs: each runtime adapter names one (tokio's
/// `spawn_blocking`, `blocking::unblock`, or the calling thread).
pub trait Offload: Send + Sync + 'static {
    /// How many octets of a message a reader fetches per call of
    /// [`Offload::run`] (at least one chunk, and the whole message when it
    /// is smaller; opening a message fetches the first batch in the same
    /// call). Each call is a hop to another thread and back, which costs
    /// more than the copies it moves: batching them keeps the hops few.
    /// The octets wait in the reader, so this is also what a session
    /// sending a message holds beyond the store's own chunk.
    const READ_AHEAD: usize = 256 * 1024;

    /// Runs `f` where blocking is allowed; `Err(())` if it panicked or was
    /// cancelled.
    fn run<T, F>(f: F) -> impl Future<Output = Result<T, ()>> + Send
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static;
}

/// Runs blocking calls on the calling thread: for a server whose sessions
/// each have a thread of their own.
///
/// ```
/// use pop3_proto::store::{BlockingStore, Inline, OffloadStore, Store};
/// fn serve<S: BlockingStore>(store: S) {
///     let store: OffloadStore<S, Inline> = OffloadStore::new(store);
///     let _forms = store.credential_forms();
/// }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Inline;

impl Offload for Inline {
    /// One chunk per call: a call costs nothing here.
    const READ_AHEAD: usize = 0;

    fn run<T, F>(f: F) -> impl Future<Output = Result<T, ()>> + Send
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        core::future::ready(Ok(f()))
    }
}

async fn run<O: Offload, T, F>(f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    O::run(f)
        .await
        .unwrap_or(Err(StoreError::Temporary(Cause::TaskFailed)))
}

fn poisoned() -> StoreError {
    StoreError::Temporary(Cause::Poisoned)
}

/// A [`Store`] that runs each call of a [`BlockingStore`] through `O`, so
/// file I/O never blocks a reactor.
pub struct OffloadStore<S, O> {
    inner: Arc<S>,
    offload: PhantomData<fn() -> O>,
}

impl<S, O> core::fmt::Debug for OffloadStore<S, O> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OffloadStore").finish_non_exhaustive()
    }
}

impl<S, O> Clone for OffloadStore<S, O> {
    fn clone(&self) -> Self {
        OffloadStore {
            inner: self.inner.clone(),
            offload: PhantomData,
        }
    }
}

impl<S: BlockingStore, O: Offload> OffloadStore<S, O> {
    /// Wraps `store`.
    pub fn new(store: S) -> Self {
        Self::from_arc(Arc::new(store))
    }

    /// Wraps a store that is already shared.
    pub fn from_arc(store: Arc<S>) -> Self {
        OffloadStore {
            inner: store,
            offload: PhantomData,
        }
    }

    /// The wrapped store.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: BlockingStore, O: Offload> Store for OffloadStore<S, O> {
    type Maildrop = OffloadMaildrop<S::Maildrop, O>;

    fn credential_forms(&self) -> CredentialForms {
        self.inner.credential_forms()
    }

    async fn verify_password(&self, user: &str, password: &Secret) -> Result<bool, StoreError> {
        let (store, user, password) = (self.inner.clone(), user.to_owned(), password.clone());
        run::<O, _, _>(move || store.verify_password(&user, &password)).await
    }

    async fn shared_secret(&self, user: &str) -> Result<Option<Secret>, StoreError> {
        let (store, user) = (self.inner.clone(), user.to_owned());
        run::<O, _, _>(move || store.shared_secret(&user)).await
    }

    async fn verify_bearer_token(&self, user: &str, token: &Secret) -> Result<bool, StoreError> {
        let (store, user, token) = (self.inner.clone(), user.to_owned(), token.clone());
        run::<O, _, _>(move || store.verify_bearer_token(&user, &token)).await
    }

    async fn scram_keys(
        &self,
        user: &str,
        hash: crate::scram::ScramHash,
    ) -> Result<Option<crate::scram::ScramKeys>, StoreError> {
        let (store, user) = (self.inner.clone(), user.to_owned());
        run::<O, _, _>(move || store.scram_keys(&user, hash)).await
    }

    async fn open(&self, user: &str) -> Result<Self::Maildrop, StoreError> {
        let (store, user) = (self.inner.clone(), user.to_owned());
        let maildrop = run::<O, _, _>(move || store.open(&user)).await?;
        Ok(OffloadMaildrop {
            messages: maildrop.messages().to_vec(),
            inner: Arc::new(Mutex::new(Some(maildrop))),
            offload: PhantomData,
        })
    }
}

/// The [`Maildrop`] of an [`OffloadStore`].
pub struct OffloadMaildrop<M, O> {
    messages: Vec<MessageInfo>,
    inner: Arc<Mutex<Option<M>>>,
    offload: PhantomData<fn() -> O>,
}

impl<M, O> core::fmt::Debug for OffloadMaildrop<M, O> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OffloadMaildrop")
            .field("messages", &self.messages.len())
            .finish_non_exhaustive()
    }
}

impl<M: BlockingMaildrop, O: Offload> Maildrop for OffloadMaildrop<M, O> {
    type Reader = OffloadReader<M::Reader, O>;

    fn messages(&self) -> &[MessageInfo] {
        &self.messages
    }

    async fn read(&mut self, index: usize) -> Result<Self::Reader, StoreError> {
        let inner = self.inner.clone();
        let (reader, ready, ended) = run::<O, _, _>(move || {
            let mut guard = inner.lock().map_err(|_| poisoned())?;
            let mut reader = guard.as_mut().ok_or_else(poisoned)?.read(index)?;
            let (ready, ended) = fill(&mut reader, O::READ_AHEAD)?;
            Ok((reader, ready, ended))
        })
        .await?;
        Ok(OffloadReader {
            inner: Arc::new(Mutex::new(reader)),
            ready,
            ended,
            offload: PhantomData,
        })
    }

    async fn commit(self, deleted: Vec<usize>) -> Result<(), StoreError> {
        let inner = self.inner;
        run::<O, _, _>(move || {
            let maildrop = inner.lock().map_err(|_| poisoned())?.take();
            maildrop.ok_or_else(poisoned)?.commit(deleted)
        })
        .await
    }
}

/// Reads chunks from `reader` until they add up to `budget` octets (at
/// least one chunk) or the message ends: the chunks, and whether it ended.
fn fill<R: BlockingMessageReader>(
    reader: &mut R,
    budget: usize,
) -> Result<(VecDeque<Bytes>, bool), StoreError> {
    let mut ready = VecDeque::new();
    let mut got = 0usize;
    loop {
        match reader.next_chunk()? {
            None => return Ok((ready, true)),
            Some(chunk) => {
                got = got.saturating_add(chunk.len());
                ready.push_back(chunk);
                if got >= budget {
                    return Ok((ready, false));
                }
            }
        }
    }
}

/// The [`MessageReader`] of an [`OffloadStore`]: it fetches
/// [`Offload::READ_AHEAD`] octets per call and hands them out one chunk at
/// a time.
pub struct OffloadReader<R, O> {
    inner: Arc<Mutex<R>>,
    /// Chunks fetched and not yet handed out.
    ready: VecDeque<Bytes>,
    /// The reader said the message ended.
    ended: bool,
    offload: PhantomData<fn() -> O>,
}

impl<R, O> core::fmt::Debug for OffloadReader<R, O> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OffloadReader").finish_non_exhaustive()
    }
}

impl<R: BlockingMessageReader, O: Offload> MessageReader for OffloadReader<R, O> {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, StoreError> {
        if let Some(chunk) = self.ready.pop_front() {
            return Ok(Some(chunk));
        }
        if self.ended {
            return Ok(None);
        }
        let inner = self.inner.clone();
        let (ready, ended) = run::<O, _, _>(move || {
            let mut reader = inner.lock().map_err(|_| poisoned())?;
            fill(&mut *reader, O::READ_AHEAD)
        })
        .await?;
        self.ready = ready;
        self.ended = ended;
        Ok(self.ready.pop_front())
    }
}
