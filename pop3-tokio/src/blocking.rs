//! Running a [`BlockingStore`](pop3_proto::store::BlockingStore) on tokio's
//! blocking thread pool.

use pop3_proto::store::{Offload, OffloadStore};

/// Runs blocking store calls with [`tokio::task::spawn_blocking`]: the
/// [`Offload`] of [`SpawnBlocking`], to name its maildrop and reader types
/// ([`OffloadMaildrop<M, TokioBlockingPool>`](pop3_proto::store::OffloadMaildrop),
/// [`OffloadReader<R, TokioBlockingPool>`](pop3_proto::store::OffloadReader)).
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioBlockingPool;

impl Offload for TokioBlockingPool {
    async fn run<T, F>(f: F) -> Result<T, ()>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        tokio::task::spawn_blocking(f).await.map_err(drop)
    }

    fn detach<F>(f: F)
    where
        F: FnOnce() + Send + 'static,
    {
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(f)),
            // Outside any runtime (dropped after it was shut down).
            Err(_) => f(),
        }
    }
}

/// A [`Store`](pop3_proto::store::Store) that runs each call of a blocking
/// store with [`tokio::task::spawn_blocking`], and drops its maildrops and
/// message readers there too, so file I/O never blocks the reactor.
///
/// ```
/// use pop3_proto::store::{BlockingStore, Store};
/// use pop3_tokio::SpawnBlocking;
/// fn serve<S: BlockingStore>(store: S) {
///     let store = SpawnBlocking::new(store);
///     let _forms = store.credential_forms();
/// }
/// ```
pub type SpawnBlocking<S> = OffloadStore<S, TokioBlockingPool>;
