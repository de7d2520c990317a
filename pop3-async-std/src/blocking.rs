//! Running a [`BlockingStore`](pop3_proto::store::BlockingStore) on the
//! `blocking` crate's thread pool (the one smol and async-std use).

use pop3_proto::__tracing as tracing;
use std::panic::{AssertUnwindSafe, catch_unwind};

use pop3_proto::store::{Offload, OffloadStore};

/// Runs blocking store calls with [`blocking::unblock`]: the [`Offload`] of
/// [`Unblock`], to name its maildrop and reader types
/// ([`OffloadMaildrop<M, UnblockPool>`](pop3_proto::store::OffloadMaildrop),
/// [`OffloadReader<R, UnblockPool>`](pop3_proto::store::OffloadReader)). A call that panics
/// is reported as a failed task (the store's mutex is then poisoned, so
/// later calls fail too), never as a panic of the session.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnblockPool;

impl Offload for UnblockPool {
    async fn run<T, F>(f: F) -> Result<T, ()>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        blocking::unblock(move || catch_unwind(AssertUnwindSafe(f)))
            .await
            .map_err(drop)
    }

    fn detach<F>(f: F)
    where
        F: FnOnce() + Send + 'static,
    {
        blocking::unblock(move || {
            if catch_unwind(AssertUnwindSafe(f)).is_err() {
                tracing::error!("a detached store call panicked");
            }
        })
        .detach();
    }
}

/// A [`Store`](pop3_proto::store::Store) that runs each call of a blocking
/// store with [`blocking::unblock`], and drops its maildrops and message
/// readers there too, so file I/O never blocks an executor thread.
///
/// ```
/// use pop3_proto::store::{BlockingStore, Store};
/// use pop3_async_std::Unblock;
/// fn serve<S: BlockingStore>(store: S) {
///     let store = Unblock::new(store);
///     let _forms = store.credential_forms();
/// }
/// ```
pub type Unblock<S> = OffloadStore<S, UnblockPool>;
