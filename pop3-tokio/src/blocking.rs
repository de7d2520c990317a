//! Running a [`BlockingStore`] on tokio's blocking thread pool.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use pop3_proto::store::{
    BlockingMaildrop, BlockingMessageReader, BlockingStore, CredentialForms, Maildrop, MessageInfo,
    MessageReader, Store, StoreError,
};
use pop3_proto::types::Secret;

/// A [`Store`] that runs each call of a [`BlockingStore`] with
/// [`tokio::task::spawn_blocking`], so file I/O never blocks the reactor.
///
/// ```
/// use pop3_proto::store::Store;
/// use pop3_tokio::SpawnBlocking;
/// # fn demo<S: pop3_proto::store::BlockingStore>(store: S) {
/// let store = SpawnBlocking::new(store);
/// let forms = store.credential_forms();
/// # let _ = forms; }
/// ```
#[derive(Debug)]
pub struct SpawnBlocking<S> {
    inner: Arc<S>,
}

impl<S> Clone for SpawnBlocking<S> {
    fn clone(&self) -> Self {
        SpawnBlocking {
            inner: self.inner.clone(),
        }
    }
}

impl<S: BlockingStore> SpawnBlocking<S> {
    /// Wraps `store`.
    pub fn new(store: S) -> Self {
        SpawnBlocking {
            inner: Arc::new(store),
        }
    }

    /// Wraps a store that is already shared.
    pub fn from_arc(store: Arc<S>) -> Self {
        SpawnBlocking { inner: store }
    }

    /// The wrapped store.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

async fn run<T, F>(f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(e) => Err(StoreError::Temporary(format!("store task failed: {e}"))),
    }
}

fn poisoned() -> StoreError {
    StoreError::Temporary("store state poisoned by an earlier panic".into())
}

impl<S: BlockingStore> Store for SpawnBlocking<S> {
    type Maildrop = SpawnBlockingMaildrop<S::Maildrop>;

    fn credential_forms(&self) -> CredentialForms {
        self.inner.credential_forms()
    }

    async fn verify_password(&self, user: &str, password: &Secret) -> Result<bool, StoreError> {
        let (store, user, password) = (self.inner.clone(), user.to_owned(), password.clone());
        run(move || store.verify_password(&user, &password)).await
    }

    async fn shared_secret(&self, user: &str) -> Result<Option<Secret>, StoreError> {
        let (store, user) = (self.inner.clone(), user.to_owned());
        run(move || store.shared_secret(&user)).await
    }

    async fn open(&self, user: &str) -> Result<Self::Maildrop, StoreError> {
        let (store, user) = (self.inner.clone(), user.to_owned());
        let maildrop = run(move || store.open(&user)).await?;
        Ok(SpawnBlockingMaildrop {
            messages: maildrop.messages().to_vec(),
            inner: Arc::new(Mutex::new(Some(maildrop))),
        })
    }
}

/// The [`Maildrop`] of a [`SpawnBlocking`] store.
#[derive(Debug)]
pub struct SpawnBlockingMaildrop<M> {
    messages: Vec<MessageInfo>,
    inner: Arc<Mutex<Option<M>>>,
}

impl<M: BlockingMaildrop> Maildrop for SpawnBlockingMaildrop<M> {
    type Reader = SpawnBlockingReader<M::Reader>;

    fn messages(&self) -> &[MessageInfo] {
        &self.messages
    }

    async fn read(&mut self, index: usize) -> Result<Self::Reader, StoreError> {
        let inner = self.inner.clone();
        let reader = run(move || {
            let mut guard = inner.lock().map_err(|_| poisoned())?;
            guard.as_mut().ok_or_else(poisoned)?.read(index)
        })
        .await?;
        Ok(SpawnBlockingReader {
            inner: Arc::new(Mutex::new(reader)),
        })
    }

    async fn commit(self, deleted: Vec<usize>) -> Result<(), StoreError> {
        let inner = self.inner;
        run(move || {
            let maildrop = inner.lock().map_err(|_| poisoned())?.take();
            maildrop.ok_or_else(poisoned)?.commit(deleted)
        })
        .await
    }
}

/// The [`MessageReader`] of a [`SpawnBlocking`] store.
#[derive(Debug)]
pub struct SpawnBlockingReader<R> {
    inner: Arc<Mutex<R>>,
}

impl<R: BlockingMessageReader> MessageReader for SpawnBlockingReader<R> {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, StoreError> {
        let inner = self.inner.clone();
        run(move || inner.lock().map_err(|_| poisoned())?.next_chunk()).await
    }
}
