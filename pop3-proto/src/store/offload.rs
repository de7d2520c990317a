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
/// ended within that budget, the same call goes on with the messages after
/// it, while the budget lasts: a client retrieving messages in order (what
/// fetchers do, pipelined or not) then costs a call per 256 KiB instead of
/// one or more per message. A read of any other message drops what was
/// fetched ahead.
///
/// What it holds open is bounded: a message read to its end, whether asked
/// for or fetched ahead, has its reader dropped in the call that found the
/// end, so the messages fetched ahead hold at most one reader (the last
/// one, when the budget ran out in its middle), and only when the message
/// asked for ended. A session reading in order therefore holds at most one
/// message reader at a time besides the maildrop.
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
    offload: PhantomData<fn() -> O>,
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
        // Dropped in the call: a message fetched in part holds its reader.
        let stale = core::mem::take(&mut self.ahead);
        let inner = self.inner.clone().ok_or_else(poisoned)?;
        let count = self.messages.len();
        let (fetched, ahead) = run::<O, _, _>(move || {
            drop(stale);
            let mut guard = inner.lock().map_err(|_| poisoned())?;
            let maildrop = guard.as_mut().ok_or_else(poisoned)?;
            let budget = O::READ_AHEAD;
            let first = Fetched::read(maildrop, index, budget)?;
            let mut ahead = VecDeque::new();
            if M::READ_AHEAD_MESSAGES {
                let (mut used, mut ended) = (first.octets(), first.ended);
                let mut next = index + 1;
                while ended && used < budget && next < count && ahead.len() < MAX_AHEAD {
                    // A message that cannot be read ahead is left to its
                    // own read, which reports why.
                    let Ok(f) = Fetched::read(maildrop, next, budget - used) else {
                        break;
                    };
                    (used, ended) = (used + f.octets(), f.ended);
                    ahead.push_back((next, f));
                    next += 1;
                }
            }
            Ok((first, ahead))
        })
        .await?;
        self.ahead = ahead;
        Ok(OffloadReader::from(fetched))
    }

    async fn commit(mut self, update: Update) -> Result<(), StoreError> {
        let inner = self.inner.take().ok_or_else(poisoned)?;
        let stale = core::mem::take(&mut self.ahead);
        run::<O, _, _>(move || {
            drop(stale);
            let maildrop = inner.lock().map_err(|_| poisoned())?.take();
            maildrop.ok_or_else(poisoned)?.commit(update)
        })
        .await
    }
}

impl<M: BlockingMaildrop, O: Offload> Drop for OffloadMaildrop<M, O> {
    fn drop(&mut self) {
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
            offload: PhantomData,
        }
    }
}

/// The [`MessageReader`] of an [`OffloadStore`]: it fetches
/// [`Offload::READ_AHEAD`] octets per call and hands them out one chunk at
/// a time. The blocking reader is dropped in the call that finds the end
/// of the message, so a message read to its end holds nothing open; one
/// dropped before (TOP, a read cut short) is dropped through
/// [`Offload::detach`].
pub struct OffloadReader<R: BlockingMessageReader, O: Offload> {
    /// The blocking reader, until the message ended (then `None`, and the
    /// reader inside is dropped by the call that found the end).
    inner: Option<Arc<Mutex<Option<R>>>>,
    /// Chunks fetched and not yet handed out.
    ready: VecDeque<Bytes>,
    /// The reader said the message ended.
    ended: bool,
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
            return Ok(Some(chunk));
        }
        let Some(inner) = self.inner.clone().filter(|_| !self.ended) else {
            return Ok(None);
        };
        let (ready, ended) = run::<O, _, _>(move || {
            let mut guard = inner.lock().map_err(|_| poisoned())?;
            let reader = guard.as_mut().ok_or_else(poisoned)?;
            let (ready, ended) = fill(reader, O::READ_AHEAD)?;
            if ended {
                // Closed here, where blocking is allowed.
                *guard = None;
            }
            Ok((ready, ended))
        })
        .await?;
        self.ready = ready;
        self.ended = ended;
        if ended {
            self.inner = None;
        }
        Ok(self.ready.pop_front())
    }
}

impl<R: BlockingMessageReader, O: Offload> Drop for OffloadReader<R, O> {
    fn drop(&mut self) {
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

    /// Runs calls inline and counts them, with the default read-ahead.
    struct Counting;

    impl Offload for Counting {
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
    fn read_ahead_holds_only_the_reader_of_the_message_the_budget_ran_out_in() {
        // 100 KB each: 0 and 1 whole, 2 in part (its reader stays open).
        let (mut drop, bodies, _) = maildrop::<true>(&[100_000; 4]);
        let reader = now(drop.read(0)).unwrap();
        assert_eq!(open_readers(), 1, "message 3's, read in part");
        core::mem::drop(reader);
        assert_eq!(read_whole(&mut drop, 1), bodies[1]);
        assert_eq!(read_whole(&mut drop, 2), bodies[2]);
        assert_eq!(open_readers(), 0, "message 3 was read to its end");
    }

    #[test]
    fn read_ahead_stops_at_the_budget_and_the_rest_is_read_on_demand() {
        // 100 KB each: the first two fit 256 KiB, the third only in part.
        let (mut drop, bodies, _) = maildrop::<true>(&[100_000; 4]);
        let before = calls();
        for (i, body) in bodies.iter().enumerate() {
            assert_eq!(&read_whole(&mut drop, i), body, "message {i}");
        }
        // One call for 0, 1 and the start of 2; one for the rest of 2;
        // one for 3.
        assert_eq!(calls() - before, 3);
    }
}
