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
    MessageInfo, MessageReader, Store, StoreError, Update,
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

    /// Whether a reader fetches its next batch while the session sends
    /// the one it has: the next call is started through
    /// [`Offload::detach`] as soon as a batch arrives, so the store's
    /// latency (a database's round trip, a disk's seek) overlaps the
    /// session's writing instead of adding to it. A session then holds up
    /// to two batches, and up to two message readers, at a time.
    ///
    /// Worth it where [`Offload::detach`] runs its call beside the caller
    /// (a thread pool); [`Inline`] says no.
    const PREFETCH: bool = true;

    /// Runs `f` where blocking is allowed; `Err(())` if it panicked or was
    /// cancelled.
    fn run<T, F>(f: F) -> impl Future<Output = Result<T, ()>> + Send
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static;

    /// Runs `f` where blocking is allowed, without waiting for it: `f`
    /// runs even though nothing awaits it. An [`OffloadStore`] drops its
    /// maildrops and readers this way (dropping them may close files and
    /// release a lock), so that dropping one on a polling thread never
    /// blocks it. Where nothing can run it (no runtime any more), `f` runs
    /// on the calling thread.
    fn detach<F>(f: F)
    where
        F: FnOnce() + Send + 'static;
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

    /// A call fetched ahead would run at once on the session's own
    /// thread: nothing would overlap.
    const PREFETCH: bool = false;

    fn run<T, F>(f: F) -> impl Future<Output = Result<T, ()>> + Send
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        core::future::ready(Ok(f()))
    }

    fn detach<F>(f: F)
    where
        F: FnOnce() + Send + 'static,
    {
        f();
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

/// A call started through [`Offload::detach`] and not awaited yet: a
/// fetch ahead. Awaiting it gives the call's result, or
/// [`Cause::TaskFailed`] if the call panicked or never ran. Dropped
/// before it is awaited, it drops the result where blocking is allowed.
struct Pending<T: Send + 'static, O: Offload> {
    slot: Arc<Mutex<Slot<T>>>,
    offload: PhantomData<fn() -> O>,
}

enum Slot<T> {
    /// The call runs; the waker of whoever awaits it.
    Running(Option<core::task::Waker>),
    /// The call ended: its result, or `None` if it unwound.
    Ended(Option<Result<T, StoreError>>),
}

/// The call's end of a [`Pending`]: it fills the slot, or, dropped
/// without filling it (the call panicked, or the runtime dropped it
/// unrun), marks it failed, so that nothing awaits forever.
struct Filler<T>(Arc<Mutex<Slot<T>>>);

impl<T> Filler<T> {
    fn end(&self, result: Option<Result<T, StoreError>>) {
        let Ok(mut slot) = self.0.lock() else { return };
        if let Slot::Running(waker) = &mut *slot {
            let waker = waker.take();
            *slot = Slot::Ended(result);
            drop(slot);
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }
}

impl<T> Drop for Filler<T> {
    fn drop(&mut self) {
        self.end(None);
    }
}

impl<T: Send + 'static, O: Offload> Pending<T, O> {
    /// Starts `f` through [`Offload::detach`].
    fn start<F>(f: F) -> Self
    where
        F: FnOnce() -> Result<T, StoreError> + Send + 'static,
    {
        let slot = Arc::new(Mutex::new(Slot::Running(None)));
        let filler = Filler(slot.clone());
        O::detach(move || filler.end(Some(f())));
        Pending {
            slot,
            offload: PhantomData,
        }
    }
}

impl<T: Send + 'static, O: Offload> Future for Pending<T, O> {
    type Output = Result<T, StoreError>;

    fn poll(
        self: core::pin::Pin<&mut Self>,
        cx: &mut core::task::Context<'_>,
    ) -> core::task::Poll<Self::Output> {
        let Ok(mut slot) = self.slot.lock() else {
            return core::task::Poll::Ready(Err(poisoned()));
        };
        match &mut *slot {
            Slot::Running(waker) => {
                *waker = Some(cx.waker().clone());
                core::task::Poll::Pending
            }
            Slot::Ended(result) => core::task::Poll::Ready(
                result
                    .take()
                    .unwrap_or(Err(StoreError::Temporary(Cause::TaskFailed))),
            ),
        }
    }
}

impl<T: Send + 'static, O: Offload> Drop for Pending<T, O> {
    fn drop(&mut self) {
        // A result not taken may hold readers (files, a lock): it is
        // dropped where blocking is allowed. One still being made is
        // dropped by the call's thread, with the slot.
        let result = match self.slot.lock() {
            Ok(mut slot) => match &mut *slot {
                Slot::Ended(result) => result.take(),
                Slot::Running(_) => None,
            },
            Err(_) => None,
        };
        if let Some(result) = result {
            O::detach(move || drop(result));
        }
    }
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

    async fn bearer_token_owner(&self, token: &Secret) -> Result<Option<String>, StoreError> {
        let (store, token) = (self.inner.clone(), token.clone());
        run::<O, _, _>(move || store.bearer_token_owner(&token)).await
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
            inner: Some(Arc::new(Mutex::new(Some(maildrop)))),
            ahead: VecDeque::new(),
            prefetch: None,
            offload: PhantomData,
        })
    }
}

/// The most messages one read fetches ahead of the one asked for.
const MAX_AHEAD: usize = 64;

/// A message read in a call of the pool: its reader while the message has
/// more to read, the chunks read, and whether they are all of it.
struct Fetched<R> {
    /// `None` once the message ended: a message read to its end holds
    /// nothing open (a Maildir reader, a file descriptor).
    reader: Option<R>,
    ready: VecDeque<Bytes>,
    ended: bool,
}

impl<R: BlockingMessageReader> Fetched<R> {
    /// Opens message `index` and reads up to `budget` octets of it; the
    /// reader is dropped here when the message ended.
    fn read<M: BlockingMaildrop<Reader = R>>(
        maildrop: &mut M,
        index: usize,
        budget: usize,
    ) -> Result<Fetched<R>, StoreError> {
        let mut reader = maildrop.read(index)?;
        let (ready, ended) = fill(&mut reader, budget)?;
        Ok(Fetched {
            reader: (!ended).then_some(reader),
            ready,
            ended,
        })
    }

    fn octets(&self) -> usize {
        self.ready.iter().map(Bytes::len).sum()
    }
}

/// The [`Maildrop`] of an [`OffloadStore`].
///
/// A read opens the message and fetches its first
/// [`Offload::READ_AHEAD`] octets in one call of the pool. When the store
/// allows it ([`BlockingMaildrop::READ_AHEAD_MESSAGES`]) and the message
/// ended within that budget, the same call goes on with the whole messages
/// after it whose listed sizes fit what is left of the budget: a client
/// retrieving messages in order (what fetchers do, pipelined or not) then
/// costs a call per 256 KiB instead of one or more per message. A read of
/// any other message drops what was fetched ahead.
///
/// Where the offload runs calls beside the session
/// ([`Offload::PREFETCH`]), a batch that ended on a message boundary
/// starts the call for the next batch at once: the store's latency
/// overlaps the session's sending, and a session reading in order waits
/// for the store only at its first read.
///
/// What it holds open is bounded: a message read to its end, whether asked
/// for or fetched ahead, has its reader dropped in the call that found the
/// end, and a message is read ahead only whole (one longer than its listed
/// size stops at the budget, its reader kept for its own read). A session
/// reading in order therefore holds at most one message reader at a time
/// besides the maildrop, and two batches: the one it sends and the one
/// being fetched.
///
/// Dropping it (the session released the maildrop, or ended) drops the
/// blocking maildrop and what was fetched ahead through
/// [`Offload::detach`], never on the calling thread of an async runtime.
pub struct OffloadMaildrop<M: BlockingMaildrop, O: Offload> {
    messages: Vec<MessageInfo>,
    /// `None` only once committed.
    inner: Option<Arc<Mutex<Option<M>>>>,
    /// Messages fetched ahead, in order: (index, what was read).
    ahead: VecDeque<(usize, Fetched<M::Reader>)>,
    /// The next batch, being fetched while the session sends this one
    /// ([`Offload::PREFETCH`]): the index it starts at, and the call.
    prefetch: Option<(usize, PendingBatch<M::Reader, O>)>,
    offload: PhantomData<fn() -> O>,
}

/// What one call of a maildrop read: the message asked for, and the
/// messages after it fetched ahead.
type Batch<R> = (Fetched<R>, VecDeque<(usize, Fetched<R>)>);

/// A [`Batch`] being fetched ahead.
type PendingBatch<R, O> = Pending<Batch<R>, O>;

/// Opens message `index` of `inner` and reads its first `O::READ_AHEAD`
/// octets; when the maildrop allows it and the message ended within that
/// budget, goes on with the messages after it while the budget lasts.
fn fetch_batch<M: BlockingMaildrop, O: Offload>(
    inner: &Mutex<Option<M>>,
    index: usize,
    count: usize,
) -> Result<Batch<M::Reader>, StoreError> {
    let mut guard = inner.lock().map_err(|_| poisoned())?;
    let maildrop = guard.as_mut().ok_or_else(poisoned)?;
    let budget = O::READ_AHEAD;
    let first = Fetched::read(maildrop, index, budget)?;
    let mut ahead = VecDeque::new();
    if M::READ_AHEAD_MESSAGES && first.ended {
        let mut used = first.octets();
        let mut next = index + 1;
        // Only whole messages are read ahead: those whose listed size
        // fits what is left of the budget. A batch then ends on a message
        // boundary, holds no reader, and the next batch starts with the
        // message after it.
        while next < count && ahead.len() < MAX_AHEAD {
            let size = maildrop.messages().get(next).map_or(u64::MAX, |m| m.size);
            let left = budget.saturating_sub(used);
            if size >= left as u64 {
                break;
            }
            // A message that cannot be read ahead is left to its own
            // read, which reports why. One longer than its listed size
            // stops at the budget, its reader kept: its own read goes on.
            let Ok(f) = Fetched::read(maildrop, next, left) else {
                break;
            };
            let ended = f.ended;
            used += f.octets();
            ahead.push_back((next, f));
            next += 1;
            if !ended {
                break;
            }
        }
    }
    Ok((first, ahead))
}

impl<M: BlockingMaildrop, O: Offload> core::fmt::Debug for OffloadMaildrop<M, O> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OffloadMaildrop")
            .field("messages", &self.messages.len())
            .field("ahead", &self.ahead.len())
            .finish_non_exhaustive()
    }
}

impl<M: BlockingMaildrop, O: Offload> Maildrop for OffloadMaildrop<M, O> {
    type Reader = OffloadReader<M::Reader, O>;

    fn messages(&self) -> &[MessageInfo] {
        &self.messages
    }

    async fn read(&mut self, index: usize) -> Result<Self::Reader, StoreError> {
        if self.ahead.front().is_some_and(|(i, _)| *i == index) {
            let (_, fetched) = self.ahead.pop_front().expect("a front entry");
            return Ok(OffloadReader::from(fetched));
        }
        let count = self.messages.len();
        let batch = match self.prefetch.take() {
            Some((start, pending)) if start == index => {
                // What was fetched ahead is what the session asks for.
                // An error of the call fetched ahead is this read's.
                pending.await?
            }
            other => {
                // A read of another message: what was fetched ahead is
                // dropped (a call still running holds the maildrop, and
                // this read waits for it in the pool), and so is what
                // waits in `ahead`, in the call: a message fetched in
                // part holds its reader.
                drop(other);
                let stale = core::mem::take(&mut self.ahead);
                let inner = self.inner.clone().ok_or_else(poisoned)?;
                run::<O, _, _>(move || {
                    drop(stale);
                    fetch_batch::<M, O>(&inner, index, count)
                })
                .await?
            }
        };
        let (fetched, ahead) = batch;
        self.ahead = ahead;
        // The batch ended with a whole message: the next one starts where
        // it stopped. (A message that ran past the budget fetches its own
        // rest, ahead too: see `OffloadReader`.)
        let last_ended = self.ahead.back().map_or(fetched.ended, |(_, f)| f.ended);
        if last_ended {
            let next = self.ahead.back().map_or(index, |(i, _)| *i) + 1;
            self.start_prefetch(next);
        }
        Ok(OffloadReader::from(fetched))
    }

    async fn commit(mut self, update: Update) -> Result<(), StoreError> {
        let inner = self.inner.take().ok_or_else(poisoned)?;
        let stale = core::mem::take(&mut self.ahead);
        // A call fetching ahead holds the maildrop: the commit waits for
        // it in the pool, then its result is dropped there.
        drop(self.prefetch.take());
        run::<O, _, _>(move || {
            drop(stale);
            let maildrop = inner.lock().map_err(|_| poisoned())?.take();
            maildrop.ok_or_else(poisoned)?.commit(update)
        })
        .await
    }
}

impl<M: BlockingMaildrop, O: Offload> OffloadMaildrop<M, O> {
    /// Starts fetching the batch from message `next` on, when the offload
    /// and the maildrop allow it and there is such a message.
    fn start_prefetch(&mut self, next: usize) {
        if !(O::PREFETCH && M::READ_AHEAD_MESSAGES) || next >= self.messages.len() {
            return;
        }
        let Some(inner) = self.inner.clone() else {
            return;
        };
        let count = self.messages.len();
        let pending = Pending::start(move || fetch_batch::<M, O>(&inner, next, count));
        self.prefetch = Some((next, pending));
    }
}

impl<M: BlockingMaildrop, O: Offload> Drop for OffloadMaildrop<M, O> {
    fn drop(&mut self) {
        drop(self.prefetch.take());
        let inner = self.inner.take();
        let ahead = core::mem::take(&mut self.ahead);
        if inner.is_some() || ahead.iter().any(|(_, f)| f.reader.is_some()) {
            O::detach(move || drop((inner, ahead)));
        }
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

impl<R: BlockingMessageReader, O: Offload> From<Fetched<R>> for OffloadReader<R, O> {
    fn from(f: Fetched<R>) -> Self {
        OffloadReader {
            inner: f.reader.map(|r| Arc::new(Mutex::new(Some(r)))),
            ready: f.ready,
            ended: f.ended,
            next: None,
            handed_out: false,
            offload: PhantomData,
        }
    }
}

/// Reads up to `O::READ_AHEAD` octets from the reader in `inner`, and
/// drops the reader there when the message ended.
fn fill_shared<R: BlockingMessageReader, O: Offload>(
    inner: &Mutex<Option<R>>,
) -> Result<(VecDeque<Bytes>, bool), StoreError> {
    let mut guard = inner.lock().map_err(|_| poisoned())?;
    let reader = guard.as_mut().ok_or_else(poisoned)?;
    let (ready, ended) = fill(reader, O::READ_AHEAD)?;
    if ended {
        // Closed here, where blocking is allowed.
        *guard = None;
    }
    Ok((ready, ended))
}

/// The [`MessageReader`] of an [`OffloadStore`]: it fetches
/// [`Offload::READ_AHEAD`] octets per call and hands them out one chunk at
/// a time; where the offload allows it ([`Offload::PREFETCH`]), the next
/// batch is fetched while this one is handed out, from the second chunk on
/// (a TOP whose lines are in the first chunk fetches nothing it would
/// drop). The blocking reader is
/// dropped in the call that finds the end of the message, so a message
/// read to its end holds nothing open; one dropped before (TOP, a read cut
/// short) is dropped through [`Offload::detach`], with any batch fetched
/// ahead.
pub struct OffloadReader<R: BlockingMessageReader, O: Offload> {
    /// The blocking reader, until the message ended (then `None`, and the
    /// reader inside is dropped by the call that found the end).
    inner: Option<Arc<Mutex<Option<R>>>>,
    /// Chunks fetched and not yet handed out.
    ready: VecDeque<Bytes>,
    /// The reader said the message ended.
    ended: bool,
    /// The next batch, being fetched while the session sends this one
    /// ([`Offload::PREFETCH`]).
    next: Option<Pending<(VecDeque<Bytes>, bool), O>>,
    /// A chunk was handed out: the session reads on past the first.
    handed_out: bool,
    offload: PhantomData<fn() -> O>,
}

impl<R: BlockingMessageReader, O: Offload> core::fmt::Debug for OffloadReader<R, O> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OffloadReader").finish_non_exhaustive()
    }
}

impl<R: BlockingMessageReader, O: Offload> MessageReader for OffloadReader<R, O> {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, StoreError> {
        if let Some(chunk) = self.ready.pop_front() {
            // Not at the first chunk: a TOP often needs no other.
            if core::mem::replace(&mut self.handed_out, true) {
                self.start_prefetch();
            }
            return Ok(Some(chunk));
        }
        self.handed_out = true;
        let Some(inner) = self.inner.clone().filter(|_| !self.ended) else {
            return Ok(None);
        };
        let (ready, ended) = match self.next.take() {
            Some(pending) => pending.await?,
            None => run::<O, _, _>(move || fill_shared::<R, O>(&inner)).await?,
        };
        self.ready = ready;
        self.ended = ended;
        if ended {
            self.inner = None;
        }
        self.start_prefetch();
        Ok(self.ready.pop_front())
    }
}

impl<R: BlockingMessageReader, O: Offload> OffloadReader<R, O> {
    /// Starts fetching the next batch of a message that has more, when
    /// the offload allows it.
    fn start_prefetch(&mut self) {
        if !O::PREFETCH || self.ended || self.next.is_some() {
            return;
        }
        if let Some(inner) = self.inner.clone() {
            self.next = Some(Pending::start(move || fill_shared::<R, O>(&inner)));
        }
    }
}

impl<R: BlockingMessageReader, O: Offload> Drop for OffloadReader<R, O> {
    fn drop(&mut self) {
        drop(self.next.take());
        if let Some(inner) = self.inner.take() {
            O::detach(move || drop(inner));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Uid;
    use core::cell::Cell;
    use core::task::{Context, Poll, Waker};
    use std::format;
    use std::vec;

    /// The output of a future that is ready at once (every call here runs
    /// inline).
    fn now<F: Future>(f: F) -> F::Output {
        let mut f = core::pin::pin!(f);
        match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(v) => v,
            Poll::Pending => panic!("an inline call waited"),
        }
    }

    std::thread_local! {
        static CALLS: Cell<usize> = const { Cell::new(0) };
        /// Readers of [`Mem`] not yet dropped, and the most at once.
        static OPEN: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
    }

    /// Message readers open now.
    fn open_readers() -> usize {
        OPEN.with(Cell::get).0
    }

    /// The most message readers open at once since the last call.
    fn most_open_readers() -> usize {
        OPEN.with(|o| {
            let (now, most) = o.get();
            o.set((now, now));
            most
        })
    }

    /// Runs calls inline and counts them, with the default read-ahead and
    /// nothing fetched ahead in the background.
    struct Counting;

    impl Offload for Counting {
        const PREFETCH: bool = false;

        fn run<T, F>(f: F) -> impl Future<Output = Result<T, ()>> + Send
        where
            T: Send + 'static,
            F: FnOnce() -> T + Send + 'static,
        {
            CALLS.with(|c| c.set(c.get() + 1));
            core::future::ready(Ok(f()))
        }

        fn detach<F>(f: F)
        where
            F: FnOnce() + Send + 'static,
        {
            f();
        }
    }

    fn calls() -> usize {
        CALLS.with(Cell::get)
    }

    /// Messages in memory, read in chunks of at most 64 KiB; `AHEAD` says
    /// whether reads may go ahead. Counts its reads.
    struct Mem<const AHEAD: bool> {
        info: Vec<MessageInfo>,
        bodies: Vec<Vec<u8>>,
        reads: Arc<Mutex<Vec<usize>>>,
    }

    struct MemReader(Vec<u8>, usize);

    impl MemReader {
        fn open(body: Vec<u8>) -> MemReader {
            OPEN.with(|o| {
                let (now, most) = o.get();
                o.set((now + 1, most.max(now + 1)));
            });
            MemReader(body, 0)
        }
    }

    impl Drop for MemReader {
        fn drop(&mut self) {
            OPEN.with(|o| {
                let (now, most) = o.get();
                o.set((now - 1, most));
            });
        }
    }

    impl BlockingMessageReader for MemReader {
        fn next_chunk(&mut self) -> Result<Option<Bytes>, StoreError> {
            if self.1 >= self.0.len() {
                return Ok(None);
            }
            let end = (self.1 + 64 * 1024).min(self.0.len());
            let chunk = Bytes::copy_from_slice(&self.0[self.1..end]);
            self.1 = end;
            Ok(Some(chunk))
        }
    }

    impl<const AHEAD: bool> BlockingMaildrop for Mem<AHEAD> {
        type Reader = MemReader;
        const READ_AHEAD_MESSAGES: bool = AHEAD;

        fn messages(&self) -> &[MessageInfo] {
            &self.info
        }

        fn read(&mut self, index: usize) -> Result<MemReader, StoreError> {
            self.reads.lock().unwrap().push(index);
            let body = self
                .bodies
                .get(index)
                .ok_or(StoreError::Permanent(Cause::NoSuchMessage))?;
            Ok(MemReader::open(body.clone()))
        }

        fn commit(self, _update: Update) -> Result<(), StoreError> {
            Ok(())
        }
    }

    /// The indexes a maildrop was asked to read, in order.
    type Reads = Arc<Mutex<Vec<usize>>>;

    /// A maildrop of `sizes`, each message a distinct pattern.
    fn maildrop<const AHEAD: bool>(
        sizes: &[usize],
    ) -> (OffloadMaildrop<Mem<AHEAD>, Counting>, Vec<Vec<u8>>, Reads) {
        maildrop_in::<AHEAD, Counting>(sizes)
    }

    /// A maildrop of `sizes` whose calls run through `O`.
    fn maildrop_in<const AHEAD: bool, O: Offload>(
        sizes: &[usize],
    ) -> (OffloadMaildrop<Mem<AHEAD>, O>, Vec<Vec<u8>>, Reads) {
        let bodies: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| (0..n).map(|k| (k * 7 + i) as u8).collect())
            .collect();
        let info = (0..sizes.len())
            .map(|i| MessageInfo {
                size: sizes[i] as u64,
                uid: Uid::new(format!("m{i}")).unwrap(),
            })
            .collect();
        let reads = Arc::new(Mutex::new(Vec::new()));
        let mem = Mem::<AHEAD> {
            info,
            bodies: bodies.clone(),
            reads: reads.clone(),
        };
        let drop = OffloadMaildrop {
            messages: mem.info.clone(),
            inner: Some(Arc::new(Mutex::new(Some(mem)))),
            ahead: VecDeque::new(),
            prefetch: None,
            offload: PhantomData,
        };
        (drop, bodies, reads)
    }

    fn read_whole<M: BlockingMaildrop, O: Offload>(
        drop: &mut OffloadMaildrop<M, O>,
        index: usize,
    ) -> Vec<u8> {
        let mut reader = now(drop.read(index)).unwrap();
        let mut out = Vec::new();
        while let Some(chunk) = now(reader.next_chunk()).unwrap() {
            out.extend_from_slice(&chunk);
        }
        out
    }

    #[test]
    fn small_messages_read_in_order_cost_one_call_per_batch() {
        let (mut drop, bodies, _) = maildrop::<true>(&[2_000; 20]);
        let before = calls();
        for (i, body) in bodies.iter().enumerate() {
            assert_eq!(&read_whole(&mut drop, i), body, "message {i}");
        }
        assert_eq!(calls() - before, 1, "40 KB of messages in one call");
    }

    #[test]
    fn without_leave_to_read_ahead_each_message_is_its_own_call() {
        let (mut drop, bodies, reads) = maildrop::<false>(&[2_000; 5]);
        let before = calls();
        for (i, body) in bodies.iter().enumerate() {
            assert_eq!(&read_whole(&mut drop, i), body);
        }
        assert_eq!(calls() - before, 5);
        assert_eq!(
            *reads.lock().unwrap(),
            vec![0, 1, 2, 3, 4],
            "nothing read unasked"
        );
    }

    #[test]
    fn a_large_message_costs_a_call_per_read_ahead_batch() {
        let (mut drop, bodies, _) = maildrop::<true>(&[1 << 20, 100]);
        let before = calls();
        assert_eq!(read_whole(&mut drop, 0), bodies[0]);
        // 1 MiB in 256 KiB batches: the open with the first, three more,
        // and a fifth that finds the end.
        assert_eq!(calls() - before, 5);
        assert_eq!(read_whole(&mut drop, 1), bodies[1]);
        assert_eq!(
            calls() - before,
            6,
            "the message after a large one is not read ahead"
        );
    }

    #[test]
    fn a_read_out_of_order_drops_what_was_read_ahead_and_reads_the_right_message() {
        let (mut drop, bodies, _) = maildrop::<true>(&[100; 10]);
        assert_eq!(read_whole(&mut drop, 0), bodies[0]);
        assert_eq!(read_whole(&mut drop, 5), bodies[5]);
        assert_eq!(read_whole(&mut drop, 6), bodies[6]);
        assert_eq!(read_whole(&mut drop, 2), bodies[2]);
        // The same message again, from the start.
        assert_eq!(read_whole(&mut drop, 2), bodies[2]);
        let before = calls();
        assert_eq!(read_whole(&mut drop, 3), bodies[3]);
        assert_eq!(calls(), before, "3 came with the second read of 2");
    }

    #[test]
    fn messages_read_to_their_end_hold_no_reader_even_when_fetched_ahead() {
        // 200 small messages: the first read fetches 64 more, all whole.
        let (mut drop, bodies, _) = maildrop::<true>(&[100; 200]);
        let reader = now(drop.read(0)).unwrap();
        assert_eq!(
            open_readers(),
            0,
            "message 1 and the 64 fetched after it ended: nothing stays open"
        );
        core::mem::drop(reader);
        most_open_readers();
        for (i, body) in bodies.iter().enumerate() {
            assert_eq!(&read_whole(&mut drop, i), body, "message {i}");
        }
        assert_eq!(
            most_open_readers(),
            1,
            "one reader at a time, in the call reading a message"
        );
        assert_eq!(open_readers(), 0);
    }

    #[test]
    fn read_ahead_takes_only_whole_messages_and_holds_no_reader() {
        // 100 KB each: 0 and 1 fit 256 KiB whole; 2 would not.
        let (mut drop, bodies, reads) = maildrop::<true>(&[100_000; 4]);
        let reader = now(drop.read(0)).unwrap();
        assert_eq!(open_readers(), 0, "0 and 1 whole, 2 not begun");
        assert_eq!(*reads.lock().unwrap(), vec![0, 1]);
        core::mem::drop(reader);
        assert_eq!(read_whole(&mut drop, 1), bodies[1]);
        assert_eq!(read_whole(&mut drop, 2), bodies[2]);
        assert_eq!(open_readers(), 0);
    }

    #[test]
    fn read_ahead_stops_before_a_message_that_does_not_fit_the_budget() {
        // 100 KB each: one call for 0 and 1, one for 2 and 3.
        let (mut drop, bodies, _) = maildrop::<true>(&[100_000; 4]);
        let before = calls();
        for (i, body) in bodies.iter().enumerate() {
            assert_eq!(&read_whole(&mut drop, i), body, "message {i}");
        }
        assert_eq!(calls() - before, 2);
    }

    #[test]
    fn a_message_longer_than_its_listed_size_is_read_ahead_only_up_to_the_budget() {
        // Message 1 is listed at 100 octets and holds 1 MiB.
        let (mut drop, bodies, _) = maildrop::<true>(&[100, 1 << 20, 100]);
        drop.messages[1].size = 100;
        if let Some(inner) = &drop.inner {
            let mut guard = inner.lock().unwrap();
            guard.as_mut().unwrap().info[1].size = 100;
        }
        let reader = now(drop.read(0)).unwrap();
        let held: usize = drop.ahead.iter().map(|(_, f)| f.octets()).sum();
        assert!(
            held <= Counting::READ_AHEAD,
            "{held} octets held ahead, over the budget"
        );
        assert_eq!(open_readers(), 1, "message 1's reader, kept to go on");
        core::mem::drop(reader);
        assert_eq!(read_whole(&mut drop, 1), bodies[1]);
        assert_eq!(read_whole(&mut drop, 2), bodies[2]);
        assert_eq!(open_readers(), 0);
    }

    std::thread_local! {
        /// Calls given to [`Queued::detach`], not run yet.
        static DETACHED: core::cell::RefCell<VecDeque<std::boxed::Box<dyn FnOnce() + Send>>> =
            core::cell::RefCell::new(VecDeque::new());
    }

    /// Runs calls inline and counts them, like [`Counting`], but keeps
    /// detached calls (what is fetched ahead) in a queue until the test
    /// runs them: a fetch ahead is "in flight" until then.
    struct Queued;

    impl Offload for Queued {
        fn run<T, F>(f: F) -> impl Future<Output = Result<T, ()>> + Send
        where
            T: Send + 'static,
            F: FnOnce() -> T + Send + 'static,
        {
            Counting::run(f)
        }

        fn detach<F>(f: F)
        where
            F: FnOnce() + Send + 'static,
        {
            DETACHED.with(|q| q.borrow_mut().push_back(std::boxed::Box::new(f)));
        }
    }

    /// Runs the detached calls queued so far (and those they queue):
    /// how many.
    fn run_detached() -> usize {
        let mut ran = 0;
        while let Some(f) = DETACHED.with(|q| q.borrow_mut().pop_front()) {
            f();
            ran += 1;
        }
        ran
    }

    /// Drops the detached calls queued so far without running them, as a
    /// runtime shutting down does.
    fn drop_detached() {
        let queued = DETACHED.with(|q| core::mem::take(&mut *q.borrow_mut()));
        core::mem::drop(queued);
    }

    fn queued<const AHEAD: bool>(
        sizes: &[usize],
    ) -> (OffloadMaildrop<Mem<AHEAD>, Queued>, Vec<Vec<u8>>, Reads) {
        maildrop_in::<AHEAD, Queued>(sizes)
    }

    #[test]
    fn the_next_batch_is_fetched_while_the_session_sends_this_one() {
        // 64,000 octets each: four to a 256 KiB batch, all whole.
        let (mut drop, bodies, reads) = queued::<true>(&[64_000; 12]);
        let before = calls();
        for (i, body) in bodies.iter().enumerate() {
            assert_eq!(&read_whole(&mut drop, i), body, "message {i}");
            // What the session sends overlaps what the pool fetches.
            run_detached();
        }
        assert_eq!(
            calls() - before,
            1,
            "only the first batch was waited for: those after it came ahead"
        );
        assert_eq!(
            *reads.lock().unwrap(),
            (0..12).collect::<Vec<_>>(),
            "each message read once, in order"
        );
        core::mem::drop(drop);
        run_detached();
        assert_eq!(open_readers(), 0);
    }

    #[test]
    fn a_read_waits_for_the_batch_still_being_fetched_ahead_and_is_woken() {
        struct Wake(core::sync::atomic::AtomicUsize);
        impl std::task::Wake for Wake {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, core::sync::atomic::Ordering::SeqCst);
            }
        }
        let (mut drop, bodies, _) = queued::<true>(&[64_000; 10]);
        for (i, body) in bodies.iter().enumerate().take(4) {
            assert_eq!(&read_whole(&mut drop, i), body);
        }
        let before = calls();
        let woken = Arc::new(Wake(core::sync::atomic::AtomicUsize::new(0)));
        let waker = Waker::from(woken.clone());
        let mut cx = Context::from_waker(&waker);
        let mut read = core::pin::pin!(drop.read(4));
        assert!(
            read.as_mut().poll(&mut cx).is_pending(),
            "message 4 comes with the batch being fetched ahead"
        );
        assert_eq!(run_detached(), 1);
        assert_eq!(woken.0.load(core::sync::atomic::Ordering::SeqCst), 1);
        let Poll::Ready(reader) = read.as_mut().poll(&mut cx) else {
            panic!("the batch arrived, and the read did not end");
        };
        let mut reader = reader.unwrap();
        let mut out = Vec::new();
        while let Some(chunk) = now(reader.next_chunk()).unwrap() {
            out.extend_from_slice(&chunk);
        }
        assert_eq!(out, bodies[4]);
        assert_eq!(calls(), before, "no call of its own");
    }

    #[test]
    fn a_batch_fetched_ahead_that_never_ran_fails_its_read_and_the_next_read_works() {
        let (mut drop, bodies, _) = queued::<true>(&[64_000; 10]);
        for (i, body) in bodies.iter().enumerate().take(4) {
            assert_eq!(&read_whole(&mut drop, i), body);
        }
        // The runtime drops the call fetching 4..8 without running it.
        drop_detached();
        assert!(matches!(
            now(drop.read(4)),
            Err(StoreError::Temporary(Cause::TaskFailed))
        ));
        assert_eq!(read_whole(&mut drop, 4), bodies[4], "read again, in a call");
    }

    #[test]
    fn a_large_message_fetches_its_next_batch_while_this_one_is_sent() {
        let (mut drop, bodies, _) = queued::<true>(&[1 << 20]);
        let before = calls();
        let mut reader = now(drop.read(0)).unwrap();
        let mut out = Vec::new();
        let mut ahead = 0;
        loop {
            ahead += run_detached();
            match now(reader.next_chunk()).unwrap() {
                Some(chunk) => out.extend_from_slice(&chunk),
                None => break,
            }
        }
        assert_eq!(out, bodies[0]);
        assert_eq!(
            calls() - before,
            1,
            "the open; every batch after it came ahead"
        );
        assert_eq!(
            ahead, 4,
            "three batches of 256 KiB and the one finding the end"
        );
        assert_eq!(open_readers(), 0, "closed in the call that found the end");
    }

    #[test]
    fn a_read_that_stops_in_its_first_chunk_fetches_nothing_ahead() {
        // A TOP: the header and a few lines are in the first chunk.
        let (mut drop, bodies, _) = queued::<true>(&[1 << 20]);
        let mut reader = now(drop.read(0)).unwrap();
        let first = now(reader.next_chunk()).unwrap().unwrap();
        assert_eq!(&first[..], &bodies[0][..first.len()]);
        assert_eq!(run_detached(), 0, "nothing fetched ahead for one chunk");
        // The second chunk shows the session reads on: the next batch is
        // fetched while it sends.
        assert!(now(reader.next_chunk()).unwrap().is_some());
        assert_eq!(run_detached(), 1, "the next batch");
        core::mem::drop(reader);
        run_detached();
        assert_eq!(open_readers(), 0);
    }

    #[test]
    fn dropping_a_reader_and_its_maildrop_with_batches_fetched_ahead_closes_every_reader() {
        let (mut drop, _, _) = queued::<true>(&[1 << 20, 1 << 20]);
        let mut reader = now(drop.read(0)).unwrap();
        run_detached();
        assert!(now(reader.next_chunk()).unwrap().is_some());
        // A batch of message 0 ended ahead and waits, not taken.
        run_detached();
        assert_eq!(open_readers(), 1);
        core::mem::drop(reader);
        core::mem::drop(drop);
        run_detached();
        assert_eq!(open_readers(), 0);
    }

    #[test]
    fn a_commit_with_a_batch_fetched_ahead_still_commits() {
        let (mut drop, bodies, _) = queued::<true>(&[64_000; 10]);
        assert_eq!(read_whole(&mut drop, 0), bodies[0]);
        // The batch from 4 on is being fetched as the session commits.
        let mut commit = core::pin::pin!(drop.commit(Update::default()));
        assert!(matches!(
            commit
                .as_mut()
                .poll(&mut Context::from_waker(Waker::noop())),
            Poll::Ready(Ok(()))
        ));
        run_detached();
        assert_eq!(open_readers(), 0);
    }
}
