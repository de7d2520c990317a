//! Save-before-delete, as a pure driver: fetch the messages a sink does
//! not hold yet, and delete each from the server only once the sink says it
//! is stored.
//!
//! [`Fetch`] runs on a [`client::Connection`](crate::client::Connection)
//! and asks the application for what it cannot do itself, the way the
//! server machine asks its store: [`FetchStep::Sink`] requests (is this UID
//! stored, begin a message, write a chunk, commit it durably, forget UIDs
//! gone from the server), answered with [`Fetch::sink_done`]. An adapter's
//! fetch loop is a few lines:
//!
//! ```text
//! loop {
//!     match fetch.poll(now, &mut conn) {
//!         FetchStep::Io => pump the connection's I/O once,
//!         FetchStep::Sink(request) => fetch.sink_done(fetch::execute(&mut sink, request)),
//!         FetchStep::Progress(p) => progress(&p),
//!         FetchStep::Done(result) => return result,
//!     }
//! }
//! ```
//!
//! or, with the sink's calls on the calling thread, [`Fetch::drive`]:
//! `loop { if let Some(r) = fetch.drive(&mut clock, &mut conn, &mut sink, progress) { return r } pump I/O }`.
//!
//! # Why every message ends up stored exactly once, and none is lost
//!
//! The argument rests on five facts:
//!
//! 1. *The server removes nothing without QUIT.* DELE only marks; removal
//!    happens in the UPDATE state, which only an acknowledged QUIT enters
//!    (RFC 1939 §6). A run killed at any point before the server processed
//!    QUIT removes nothing, whatever DELEs it sent.
//! 2. *DELE is sent only for messages this client stored.* The driver
//!    sends `DELE n` only for a message whose UID the sink reports stored
//!    ([`MessageSink::contains`] said so, or [`MessageSink::commit`]
//!    returned `Ok` for it in this run) and whose UID is not ambiguous
//!    (below); and only after [`MessageSink::sync`] returned `Ok`, which
//!    makes every one of them durable (the Maildir sink: each file fsynced
//!    before its rename into `new/`; at the sync, the directory fsynced,
//!    then the journal). So at the moment any DELE is on the wire, the
//!    message is durably stored; a fortiori when QUIT removes it.
//! 3. *Stored messages are recognised.* A message is identified by its UIDL
//!    unique-id within its account (the Maildir sink keys its records by
//!    the account, see `PopUrl::account_id`). Once stored, `contains(uid)`
//!    is `true` for good: the Maildir sink names the file after a hash of
//!    account and UID and looks for it in `new/` and `cur/`, and also keeps
//!    the UID in a journal written after the file (so a message later moved
//!    or deleted locally is still not fetched again while it stays on the
//!    server). Such a message is never written a second time, only DELEd
//!    again (with `delete`).
//! 4. *Storing is atomic.* A message becomes visible in the Maildir by one
//!    rename of a complete, fsynced file; a run killed earlier leaves only a
//!    file in `tmp/`, which is not a delivered message and is cleaned up on
//!    the next open. So a message is either stored whole or not at all.
//! 5. *A failing run journals what it stored.* When the session, the
//!    server or the sink fails after messages were stored, the driver asks
//!    the sink for one more [`MessageSink::sync`] (best effort) before it
//!    returns the error: the journal then names them, and a message the
//!    user files away or deletes before the next run is not fetched again.
//!    (Without that sync, 3 still holds for files left in `new/` and
//!    `cur/`, but not for files moved elsewhere.)
//!
//! Hence after a kill or a failure at any instant and a rerun: a message
//! still on the server is either stored (3: skipped, never stored twice)
//! or not (fetched now, once, 4); a message gone from the server was removed
//! by a QUIT (1) after its DELE, hence after it was stored (2). Every
//! message is in the Maildir exactly once.
//!
//! # UIDs that do not identify a message
//!
//! RFC 1939 §7 promises that a unique-id names one message, but some
//! servers derive it from a digest or the Message-ID and give two messages
//! the same one. The driver then stores at most the first message listed
//! with that UID, and never deletes any message with it: what the sink
//! holds under the UID may be the other one. The UID stays ambiguous for
//! as long as the sink remembers it ([`MessageSink::ambiguous`]: the
//! Maildir sink journals it until the server no longer lists it), so a
//! message is not deleted unread in a later run when its twin is gone.
//! A message whose UIDL line is missing or does not parse (LIST names it,
//! UIDL does not) is neither fetched nor deleted. Both are reported
//! ([`FetchReport::ambiguous`], [`FetchReport::unidentified`]), and the run
//! is then not [complete](FetchReport::is_complete). The residual risks
//! are outside the protocol: a server that reuses a UID for a new message
//! after the stored one is gone, or a storage device that lies about fsync.
//!

use crate::__tracing as tracing;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io;
use std::string::String;
use std::time::Duration;
use std::vec::Vec;

use bytes::Bytes;

use crate::client::sasl::{
    CramMd5, External, Login as SaslLogin, OAuthBearer, Plain, Scram, XOAuth2,
};
use crate::client::task::{self, BodyState, Task, TaskContext};
use crate::client::{
    Client, ClientError, ClientEvent, Connection, Error, RetrBatchState, Running, ServerError,
};
use crate::command::Command;
use crate::response::{Capability, UidLine};
use crate::time::Instant;
use crate::types::{Mechanism, MessageNumber, Secret, Uid};
use crate::url::AuthMethod;

/// Where fetched messages go: one message at a time, blocking calls.
///
/// A sink promises: [`MessageSink::commit`] returns `Ok` only once the
/// message is durably stored, and from then on [`MessageSink::contains`]
/// answers `true` for its UID, also in a later process. The driver relies
/// on that to delete messages safely.
///
/// A sink that only counts (it stores nothing, so it must never be used
/// with deletion):
///
/// ```
/// use std::io;
/// use pop3_proto::fetch::MessageSink;
/// use pop3_proto::types::Uid;
///
/// #[derive(Default)]
/// struct Count(u64);
///
/// impl MessageSink for Count {
///     fn contains(&mut self, _uid: &Uid) -> io::Result<bool> {
///         Ok(false)
///     }
///     fn begin(&mut self, _uid: &Uid) -> io::Result<()> {
///         Ok(())
///     }
///     fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
///         self.0 += chunk.len() as u64;
///         Ok(())
///     }
///     fn commit(&mut self) -> io::Result<()> {
///         Ok(())
///     }
///     fn abort(&mut self) {}
/// }
/// ```
pub trait MessageSink {
    /// Whether the message with this UID is already durably stored.
    fn contains(&mut self, uid: &Uid) -> io::Result<bool>;

    /// Whether each of these UIDs is already durably stored, in their
    /// order: what [`contains`](MessageSink::contains) answers for each
    /// (the default asks it once per UID). The driver asks about every UID
    /// listed in one call, before the first retrieval: a sink that can
    /// answer them together more cheaply overrides it (the Maildir sink
    /// reads its `new/` directory once instead of looking up one file per
    /// UID).
    fn contains_many(&mut self, uids: &[Uid]) -> io::Result<Vec<bool>> {
        uids.iter().map(|u| self.contains(u)).collect()
    }

    /// Starts storing a message (the previous one was committed or aborted).
    fn begin(&mut self, uid: &Uid) -> io::Result<()>;

    /// Appends a chunk of the message begun last.
    fn write(&mut self, chunk: &[u8]) -> io::Result<()>;

    /// Completes the message begun last: from `Ok` on, `contains` is
    /// `true` for it. It must be durable once the next [`sync`] returns
    /// `Ok` (a sink may make it durable here already). After an `Err` the
    /// message is not stored; [`abort`](MessageSink::abort) follows.
    ///
    /// [`sync`]: MessageSink::sync
    fn commit(&mut self) -> io::Result<()>;

    /// Makes every message committed (or found by `contains`) since the
    /// last call durable; `Ok` only when they are. The driver calls it
    /// once, after the last message and before the first DELE: a sink can
    /// then pay for the durability of a directory entry or a journal once
    /// per run instead of once per message. The default does nothing (for
    /// a sink whose `commit` is durable by itself).
    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }

    /// Throws the partial message away.
    fn abort(&mut self);

    /// The server lists exactly these UIDs now: the sink may forget others
    /// (they are gone from the server and UIDs are never reused). The
    /// default keeps everything.
    fn retain(&mut self, listed: &HashSet<Uid>) -> io::Result<()> {
        let _ = listed;
        Ok(())
    }

    /// The server listed each UID of `now` for two messages or more (a
    /// server whose UIDs are digests or Message-IDs): the sink remembers
    /// them as ambiguous, durably, until [`retain`](MessageSink::retain)
    /// sees them gone from the server, and answers with every UID it
    /// remembers as ambiguous (`now` included). The driver never deletes
    /// a message whose UID is in the answer: what the sink holds under
    /// that UID may be the other message.
    ///
    /// The default remembers nothing and answers `now`: a sink used with
    /// deletion should override it, or a message that shared its UID with
    /// one stored in an earlier run is deleted unread once its twin is gone.
    fn ambiguous(&mut self, now: &HashSet<Uid>) -> io::Result<HashSet<Uid>> {
        Ok(now.clone())
    }

    /// How long ago this sink first saw the message with this UID (it
    /// stored it, or was told it is [seen](MessageSink::mark_seen)), for
    /// [`FetchOptions::delete_after`]. Asked only of UIDs
    /// [`contains`](MessageSink::contains) answered `true` for. The default
    /// knows no times (`None`): such a message is never deleted by age.
    fn age(&mut self, uid: &Uid) -> io::Result<Option<Duration>> {
        let _ = uid;
        Ok(None)
    }

    /// Remembers the UID as stored without any message
    /// ([`FetchOptions::mark_seen`]): from `Ok` on, `contains` is `true`
    /// for it, durably once the next [`sync`](MessageSink::sync) returns.
    /// The default refuses (`Unsupported`).
    fn mark_seen(&mut self, uid: &Uid) -> io::Result<()> {
        let _ = uid;
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this sink cannot mark messages seen",
        ))
    }
}

/// What the driver asks of the sink.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SinkRequest {
    /// [`MessageSink::retain`]; answer [`SinkReply::Done`].
    Retain(HashSet<Uid>),
    /// [`MessageSink::contains`]; answer [`SinkReply::Contains`].
    Contains(Uid),
    /// [`MessageSink::contains`] for each UID, in order; answer
    /// [`SinkReply::ContainsMany`] (the driver asks for every UID listed at
    /// once).
    ContainsMany(Vec<Uid>),
    /// [`MessageSink::begin`]; answer [`SinkReply::Done`].
    Begin(Uid),
    /// [`MessageSink::write`]; answer [`SinkReply::Done`].
    Write(Bytes),
    /// [`MessageSink::commit`]; answer [`SinkReply::Done`].
    Commit,
    /// [`MessageSink::abort`]; answer [`SinkReply::Done`].
    Abort,
    /// [`MessageSink::sync`]; answer [`SinkReply::Done`].
    Sync,
    /// [`MessageSink::ambiguous`]; answer [`SinkReply::Ambiguous`].
    Ambiguous(HashSet<Uid>),
    /// [`MessageSink::age`]; answer [`SinkReply::Age`].
    Age(Uid),
    /// [`MessageSink::mark_seen`]; answer [`SinkReply::Done`].
    MarkSeen(Uid),
    /// Several calls in one request: [`MessageSink::begin`] with `begin`
    /// when it is `Some`, [`MessageSink::write`] with each of `chunks`,
    /// then [`MessageSink::commit`] when `commit`; answer
    /// [`SinkReply::Done`]. When `begin` or `write` fails the message is
    /// aborted ([`MessageSink::abort`]) before the error is answered.
    ///
    /// The driver asks this for the pieces of a message that arrived
    /// together (a small message is one request, not three), so that an
    /// adapter that runs the sink on another thread hands over once per
    /// message or per [`STORE_CHUNK`] octets, not per network read.
    Store {
        /// The UID of the message to begin, if not begun yet.
        begin: Option<Uid>,
        /// Octets of the message to append, in the pieces they came in.
        chunks: Vec<Bytes>,
        /// Whether this completes the message.
        commit: bool,
    },
    /// Whole messages, each stored as [`MessageSink::begin`] with its UID,
    /// [`MessageSink::write`] with each of its pieces and
    /// [`MessageSink::commit`], in order; answer [`SinkReply::Stored`].
    /// The first that fails ends the request: a message whose `begin`,
    /// `write` or `commit` failed is aborted, and the ones after it are not
    /// begun.
    ///
    /// The driver gathers messages received whole (at most [`STORE_CHUNK`]
    /// octets of them) into one request, so that an adapter that runs the
    /// sink on another thread hands over once per batch of small messages.
    /// It asks before it would wait for the network once the oldest has
    /// waited [`STORE_WAIT`], and before it syncs, begins a larger message
    /// or fails.
    StoreMessages(Vec<(Uid, Vec<Bytes>)>),
}

/// How long a message received whole may wait in the driver for others to
/// join its [`SinkRequest::StoreMessages`]: the driver asks the connection
/// to wake it then ([`Connection::wake_at`]) while it waits for the
/// network.
pub const STORE_WAIT: Duration = Duration::from_millis(50);

/// The most messages received whole that one
/// [`SinkRequest::StoreMessages`] carries.
pub const STORE_MESSAGES: usize = 64;

/// The most octets of one message the driver gathers before it hands them
/// to the sink ([`SinkRequest::Store`]), and the most octets of messages
/// received whole it holds for one [`SinkRequest::StoreMessages`]: it keeps
/// no more than about twice this in memory.
pub const STORE_CHUNK: usize = 256 * 1024;

/// The sink's answer to a [`SinkRequest`].
#[derive(Debug)]
#[non_exhaustive]
pub enum SinkReply {
    /// To [`SinkRequest::Contains`].
    Contains(io::Result<bool>),
    /// To [`SinkRequest::ContainsMany`]: one answer per UID, in order.
    ContainsMany(io::Result<Vec<bool>>),
    /// To [`SinkRequest::Ambiguous`].
    Ambiguous(io::Result<HashSet<Uid>>),
    /// To [`SinkRequest::Age`].
    Age(io::Result<Option<Duration>>),
    /// To every other request.
    Done(io::Result<()>),
    /// To [`SinkRequest::StoreMessages`]: how many of its messages were
    /// committed (the first ones), and the error that stopped the rest.
    Stored {
        /// Messages committed, from the first.
        committed: usize,
        /// `Err` when a message failed; the ones after it were not begun.
        result: io::Result<()>,
    },
}

/// Performs one request on a sink (what every adapter does with a
/// [`FetchStep::Sink`], on a thread where blocking is allowed).
pub fn execute<S: MessageSink + ?Sized>(sink: &mut S, request: SinkRequest) -> SinkReply {
    match request {
        SinkRequest::Retain(listed) => SinkReply::Done(sink.retain(&listed)),
        SinkRequest::Contains(uid) => SinkReply::Contains(sink.contains(&uid)),
        SinkRequest::ContainsMany(uids) => SinkReply::ContainsMany(sink.contains_many(&uids)),
        SinkRequest::Begin(uid) => SinkReply::Done(sink.begin(&uid)),
        SinkRequest::Write(chunk) => SinkReply::Done(sink.write(&chunk)),
        SinkRequest::Commit => SinkReply::Done(sink.commit()),
        SinkRequest::Sync => SinkReply::Done(sink.sync()),
        SinkRequest::Ambiguous(now) => SinkReply::Ambiguous(sink.ambiguous(&now)),
        SinkRequest::Age(uid) => SinkReply::Age(sink.age(&uid)),
        SinkRequest::MarkSeen(uid) => SinkReply::Done(sink.mark_seen(&uid)),
        SinkRequest::Store {
            begin,
            chunks,
            commit,
        } => SinkReply::Done(store_message(sink, begin.as_ref(), &chunks, commit)),
        SinkRequest::Abort => {
            sink.abort();
            SinkReply::Done(Ok(()))
        }
        SinkRequest::StoreMessages(messages) => {
            for (committed, (uid, chunks)) in messages.iter().enumerate() {
                if let Err(e) = store_message(sink, Some(uid), chunks, true) {
                    return SinkReply::Stored {
                        committed,
                        result: Err(e),
                    };
                }
            }
            SinkReply::Stored {
                committed: messages.len(),
                result: Ok(()),
            }
        }
    }
}

/// Begins a message with `begin` (when it is not begun yet), writes
/// `chunks` and commits it when `commit`; a message left half done by a
/// failure is aborted, so that none stays open.
fn store_message<S: MessageSink + ?Sized>(
    sink: &mut S,
    begin: Option<&Uid>,
    chunks: &[Bytes],
    commit: bool,
) -> io::Result<()> {
    let open = begin.map_or(Ok(()), |uid| sink.begin(uid));
    let done = open
        .and_then(|()| chunks.iter().try_for_each(|c| sink.write(c)))
        .and_then(|()| if commit { sink.commit() } else { Ok(()) });
    if done.is_err() {
        sink.abort();
    }
    done
}

/// What a fetch does.
///
/// The default fetches every message the sink does not hold yet and
/// deletes nothing. Which messages are deleted: with
/// [`delete`](FetchOptions::delete), every message stored (already or
/// now); else with [`delete_after`](FetchOptions::delete_after), those the
/// sink first saw at least that long ago; and with
/// [`Oversize::Delete`], those over [`max_size`](FetchOptions::max_size),
/// unread. A message whose UID is ambiguous is never deleted, and
/// [`mark_seen`](FetchOptions::mark_seen) deletes nothing.
///
/// ```
/// use std::time::Duration;
/// use pop3_proto::fetch::{FetchOptions, Oversize};
///
/// let mut options = FetchOptions::default();
/// options.delete_after = Some(Duration::from_secs(7 * 86_400));
/// options.max_size = Some(10_000_000);
/// options.oversize = Oversize::Skip;
/// options.max_messages = Some(500);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
#[must_use = "a configuration does nothing until it is used"]
pub struct FetchOptions {
    /// Delete from the server every message that is stored (already or now).
    pub delete: bool,
    /// Delete from the server the stored messages the sink first saw at
    /// least this long ago ([`MessageSink::age`]); the younger ones stay.
    /// `Duration::ZERO` is [`delete`](FetchOptions::delete).
    pub delete_after: Option<Duration>,
    /// Messages larger than this (in octets, as LIST gives them) are not
    /// fetched; [`oversize`](FetchOptions::oversize) says whether they stay
    /// on the server. Reported in [`FetchReport::oversized`].
    pub max_size: Option<u64>,
    /// What becomes of a message over [`max_size`](FetchOptions::max_size).
    pub oversize: Oversize,
    /// Fetch at most this many messages in one session; the others wait
    /// for a later run ([`FetchReport::deferred`]).
    pub max_messages: Option<usize>,
    /// Fetch at most this many octets (as LIST gives them) in one session;
    /// the first message is fetched whatever its size, so that a large one
    /// cannot hold the others back for good.
    pub max_octets: Option<u64>,
    /// Fetch every message, also those the sink holds already (an archive
    /// job into a fresh destination); they are stored again.
    pub refetch: bool,
    /// Download nothing: tell the sink every message listed is seen
    /// ([`MessageSink::mark_seen`]), so that later runs fetch only what
    /// arrives after. Deletes nothing.
    pub mark_seen: bool,
    /// With a server without UIDL: a token unique to this run (a random
    /// one), from which each message gets a UID no other run uses. Only a
    /// run with [`delete`](FetchOptions::delete) then works: every
    /// message is fetched and deleted once stored (a run broken off before
    /// its QUIT fetches them again next time: duplicates, never a loss).
    /// `None`, or another policy: such a server fails the run with
    /// [`FetchError::NoUidl`].
    pub uidless_run_id: Option<String>,
    /// Asks a running fetch to end early (a daemon's shutdown): once
    /// [`StopSignal::stop`] is called, the message being received is still
    /// stored, no further one is begun, the sink syncs, and the session
    /// ends. When no retrieval is outstanding, the stored messages are
    /// deleted as the policy says and the session ends with QUIT; when
    /// pipelined retrievals are still on their way, the connection is left
    /// without QUIT, so the server deletes nothing (the next run deletes
    /// what is stored). [`FetchReport::interrupted`] tells.
    pub stop: Option<StopSignal>,
}

/// A flag shared with running fetches ([`FetchOptions::stop`]): clones
/// share it; two signals are equal when they are the same flag.
///
/// ```
/// use pop3_proto::fetch::StopSignal;
/// let signal = StopSignal::new();
/// let seen_by_the_fetch = signal.clone();
/// assert!(!seen_by_the_fetch.is_stopped());
/// signal.stop();
/// assert!(seen_by_the_fetch.is_stopped());
/// ```
#[derive(Debug, Clone, Default)]
pub struct StopSignal(std::sync::Arc<core::sync::atomic::AtomicBool>);

impl StopSignal {
    /// A signal not given yet.
    pub fn new() -> StopSignal {
        StopSignal::default()
    }

    /// Asks every fetch holding this signal to stop.
    pub fn stop(&self) {
        self.0.store(true, core::sync::atomic::Ordering::SeqCst);
    }

    /// Whether [`stop`](StopSignal::stop) was called.
    pub fn is_stopped(&self) -> bool {
        self.0.load(core::sync::atomic::Ordering::SeqCst)
    }
}

impl PartialEq for StopSignal {
    fn eq(&self, other: &StopSignal) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for StopSignal {}

/// What becomes of a message over [`FetchOptions::max_size`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Oversize {
    /// It stays on the server, unread.
    #[default]
    Skip,
    /// It is deleted from the server unread.
    Delete,
}

/// Progress of a fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Progress {
    /// Messages to fetch in this run.
    pub messages_total: usize,
    /// Messages stored so far.
    pub messages_done: usize,
    /// Octets to fetch, as listed by the server (0 if unknown).
    pub bytes_total: u64,
    /// Octets received so far.
    pub bytes_done: u64,
    /// The message whose octets are arriving (its number in the server's
    /// listing), until it is received whole.
    pub receiving: Option<MessageNumber>,
    /// DELE commands the server accepted. It removes those messages when
    /// it answers the QUIT that follows (RFC 1939 §6): a run that fails
    /// before that answer may have deleted them or not, and a run that
    /// fails with none deleted nothing.
    pub deletes_accepted: usize,
}

/// What a fetch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FetchReport {
    /// Messages the server listed.
    pub listed: usize,
    /// Messages already stored before this run.
    pub already_stored: usize,
    /// Messages stored by this run.
    pub saved: usize,
    /// Octets received for them.
    pub bytes: u64,
    /// Messages deleted from the server (the QUIT was acknowledged).
    pub deleted: usize,
    /// Messages the server refused to send or delete, with its reply.
    pub refused: Vec<(MessageNumber, ServerError)>,
    /// Messages without a usable UID (their UIDL line was missing or did
    /// not parse, though LIST names them): neither fetched nor deleted.
    pub unidentified: Vec<MessageNumber>,
    /// Messages whose UID is ambiguous (listed for another message too, now
    /// or in a run the sink remembers): never deleted, and fetched only as
    /// the first message listed with that UID when the sink does not hold
    /// it yet.
    pub ambiguous: Vec<MessageNumber>,
    /// Messages over [`FetchOptions::max_size`], with their size: not
    /// fetched; deleted with [`Oversize::Delete`] (counted in `deleted`).
    pub oversized: Vec<(MessageNumber, u64)>,
    /// Messages not fetched because of [`FetchOptions::max_messages`] or
    /// [`FetchOptions::max_octets`]: a later run fetches them.
    pub deferred: usize,
    /// Stored messages left on the server by the policy (no
    /// [`delete`](FetchOptions::delete), or younger than
    /// [`delete_after`](FetchOptions::delete_after)).
    pub kept: usize,
    /// Messages marked seen without downloading ([`FetchOptions::mark_seen`]).
    pub marked: usize,
    /// The fetch was asked to stop ([`FetchOptions::stop`]) and ended
    /// early; the messages it did not get to are counted in
    /// [`deferred`](FetchReport::deferred).
    pub interrupted: bool,
    /// The least time between two logins the server announced (its
    /// `LOGIN-DELAY` capability, in seconds) as the session last read
    /// its capabilities: the next session should not start sooner.
    pub login_delay: Option<u32>,
}

impl FetchReport {
    /// Whether the run dealt with every message the server listed: none
    /// refused, none without a usable UID, none with an ambiguous one. An
    /// incomplete run left messages on the server (and perhaps undelivered)
    /// that a rerun will not change by itself.
    ///
    /// ```
    /// use pop3_proto::fetch::FetchReport;
    /// use pop3_proto::types::MessageNumber;
    ///
    /// let mut report = FetchReport::default();
    /// assert!(report.is_complete());
    /// report.unidentified.push(MessageNumber::new(3).unwrap());
    /// assert!(!report.is_complete());
    /// ```
    pub fn is_complete(&self) -> bool {
        self.refused.is_empty() && self.unidentified.is_empty() && self.ambiguous.is_empty()
    }
}

/// Why a fetch failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum FetchError {
    /// The POP3 session failed.
    Pop3(Error),
    /// The sink failed to store a message.
    Store(io::Error),
    /// The server has no UIDL: messages cannot be told apart across runs,
    /// so only a run that deletes every message it stores can work (see
    /// [`FetchOptions::uidless_run_id`]).
    NoUidl(ServerError),
    /// The URL has no user name.
    NoUser,
    /// The chosen authentication cannot be used on this connection.
    Auth(AuthError),
    /// The settings contradict each other or the URL.
    Settings(SettingsError),
}

impl FetchError {
    /// Whether running the fetch again later may succeed (see
    /// [`Error::is_transient`]); a failing sink is not.
    pub fn is_transient(&self) -> bool {
        match self {
            FetchError::Pop3(e) => e.is_transient(),
            _ => false,
        }
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Pop3(e) => write!(f, "{e}"),
            FetchError::Store(_) => f.write_str("cannot store a message"),
            FetchError::NoUidl(e) => write!(
                f,
                "the server has no UIDL ({e}): messages cannot be told apart across runs; only a run that deletes what it stores can work"
            ),
            FetchError::NoUser => f.write_str("the URL has no user name"),
            FetchError::Auth(e) => write!(f, "{e}"),
            FetchError::Settings(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for FetchError {
    /// The sink's error behind [`FetchError::Store`]. The session's errors
    /// ([`FetchError::Pop3`]), authentication's and the settings' are shown
    /// as they are: their [`Display`](fmt::Display) is this one's, and
    /// their source this one's.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FetchError::Pop3(e) => std::error::Error::source(e),
            FetchError::Store(e) => Some(e),
            FetchError::Auth(e) => std::error::Error::source(e),
            FetchError::Settings(e) => std::error::Error::source(e),
            FetchError::NoUidl(_) | FetchError::NoUser => None,
        }
    }
}

impl From<Error> for FetchError {
    fn from(e: Error) -> Self {
        FetchError::Pop3(e)
    }
}

/// Why the chosen authentication cannot be used.
///
/// ```
/// use pop3_proto::types::Mechanism;
/// use pop3_proto::fetch::{AuthError, FetchError};
///
/// let e = FetchError::Auth(AuthError::UnsupportedMechanism(Mechanism::new("GSSAPI").unwrap()));
/// assert!(e.to_string().starts_with("SASL mechanism GSSAPI is not supported"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthError {
    /// With [`AuthMethod::Any`] on a connection without TLS and a server
    /// without APOP, only the password in clear text is left: refused.
    CleartextRefused,
    /// The SASL mechanism is not one the library speaks.
    UnsupportedMechanism(Mechanism),
    /// The secure random generator failed (the SCRAM nonce).
    NoRandomness,
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::CleartextRefused => f.write_str(
                "refusing to send the password in clear text: use TLS, or ask for USER explicitly",
            ),
            AuthError::UnsupportedMechanism(m) => write!(
                f,
                "SASL mechanism {m} is not supported \
                 (PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-1, SCRAM-SHA-256, XOAUTH2, OAUTHBEARER, \
                 EXTERNAL are)"
            ),
            AuthError::NoRandomness => {
                f.write_str("no randomness for a nonce: failed to get random bytes")
            }
        }
    }
}

impl std::error::Error for AuthError {}

/// Why fetch settings cannot be used with a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SettingsError {
    /// STLS asked for with a `pops://` URL, where TLS is already on.
    StartTlsWithImplicitTls,
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SettingsError::StartTlsWithImplicitTls => {
                f.write_str("STLS makes no sense with pops:// (TLS is already on)")
            }
        }
    }
}

impl std::error::Error for SettingsError {}

/// A login chosen by [`login_task`]: a [`Task`] whatever the method.
#[derive(Debug)]
#[non_exhaustive]
pub enum LoginTask {
    /// USER and PASS.
    User(task::Login),
    /// APOP.
    Apop(task::Apop),
    /// AUTH with a SASL mechanism.
    Sasl(task::Auth),
    /// The strongest way the session offers, falling back to the next
    /// when the server refuses one ([`task::AutoLogin`]).
    Auto(task::AutoLogin),
}

impl Task for LoginTask {
    type Output = ();

    fn start(&mut self, client: &mut Client) -> Result<(), ClientError> {
        match self {
            LoginTask::User(t) => t.start(client),
            LoginTask::Apop(t) => t.start(client),
            LoginTask::Sasl(t) => t.start(client),
            LoginTask::Auto(t) => t.start(client),
        }
    }

    fn event(&mut self, event: ClientEvent, cx: &mut TaskContext<'_>) -> Option<Result<(), Error>> {
        match self {
            LoginTask::User(t) => t.event(event, cx),
            LoginTask::Apop(t) => t.event(event, cx),
            LoginTask::Sasl(t) => t.event(event, cx),
            LoginTask::Auto(t) => t.event(event, cx),
        }
    }

    fn ready(&mut self, cx: &mut TaskContext<'_>) -> Option<Result<(), Error>> {
        match self {
            LoginTask::User(t) => t.ready(cx),
            LoginTask::Apop(t) => t.ready(cx),
            LoginTask::Sasl(t) => t.ready(cx),
            LoginTask::Auto(t) => t.ready(cx),
        }
    }
}

/// Chooses how to log in as `user` with `password` (the bearer token for
/// the OAuth mechanisms): `method` as given, or for [`AuthMethod::Any`],
/// [`task::AutoLogin`]: the strongest the session offers
/// ([`login_choices`](crate::client::sasl::login_choices)):
/// SCRAM-SHA-256, SCRAM-SHA-1, CRAM-MD5, APOP, then PLAIN, LOGIN,
/// USER/PASS over TLS, or without TLS when the client's
/// [`insecure_cleartext_login`](crate::client::ClientConfig::insecure_cleartext_login)
/// allows them (else refused rather than sending the password in clear
/// text), falling back to the next when the server refuses one. `nonce` is
/// only used by SCRAM: a fresh random token from a secure generator.
///
/// ```
/// use pop3_proto::client::{Client, ClientConfig};
/// use pop3_proto::fetch::{login_task, AuthError, LoginTask};
/// use pop3_proto::time::Instant;
/// use pop3_proto::url::AuthMethod;
///
/// // No capabilities, no APOP timestamp: only USER/PASS is left.
/// let client = Client::new(ClientConfig::default(), Instant::ZERO);
/// let refused = login_task(&client, AuthMethod::Any, "alice", "secret", "nonce");
/// assert_eq!(refused.unwrap_err(), AuthError::CleartextRefused);
/// let mut config = ClientConfig::default();
/// config.insecure_cleartext_login = true;
/// let client = Client::new(config, Instant::ZERO);
/// let login = login_task(&client, AuthMethod::Any, "alice", "secret", "nonce");
/// assert!(matches!(login, Ok(LoginTask::Auto(_))));
/// ```
pub fn login_task(
    client: &Client,
    method: AuthMethod,
    user: &str,
    password: &str,
    nonce: &str,
) -> Result<LoginTask, AuthError> {
    let secret = || Secret::new(password.as_bytes().to_vec());
    if method == AuthMethod::Any {
        let allow = client.config().insecure_cleartext_login;
        if crate::client::sasl::choose_login(client, allow).is_none() {
            return Err(AuthError::CleartextRefused);
        }
        return Ok(LoginTask::Auto(
            task::AutoLogin::new(user, password, nonce).allow_cleartext(allow),
        ));
    }
    let sasl = |m: crate::client::BoxedMechanism| Ok(LoginTask::Sasl(task::Auth::new(m)));
    match method {
        AuthMethod::User => Ok(LoginTask::User(task::Login::new(user, password))),
        AuthMethod::Apop => Ok(LoginTask::Apop(task::Apop::new(user, password))),
        AuthMethod::Sasl(m) => match m.as_str() {
            "PLAIN" => sasl(Box::new(Plain::new(user, secret()))),
            "LOGIN" => sasl(Box::new(SaslLogin::new(user, secret()))),
            "CRAM-MD5" => sasl(Box::new(CramMd5::new(user, secret()))),
            "SCRAM-SHA-256-PLUS" => match client.tls_exporter() {
                Some(cb) => sasl(Box::new(
                    Scram::sha256(user, secret(), nonce).with_tls_exporter(*cb),
                )),
                None => Err(AuthError::UnsupportedMechanism(m)),
            },
            "SCRAM-SHA-256" => sasl(Box::new(Scram::sha256(user, secret(), nonce))),
            "SCRAM-SHA-1" => sasl(Box::new(Scram::sha1(user, secret(), nonce))),
            "XOAUTH2" => sasl(Box::new(XOAuth2::new(user, secret()))),
            "OAUTHBEARER" => sasl(Box::new(OAuthBearer::new(user, secret()))),
            "EXTERNAL" => sasl(Box::new(External::new())),
            _ => Err(AuthError::UnsupportedMechanism(m)),
        },
        _ => Err(AuthError::UnsupportedMechanism(
            Mechanism::new("UNKNOWN").expect("valid name"),
        )),
    }
}

/// `UTF8` (RFC 6856), when the session offers it and has not enabled it
/// yet: the task to run before the login. A fetch stores messages as raw
/// octets, so it asks for UTF-8 mode wherever it can: a server may
/// otherwise replace a message with raw UTF-8 headers by a placeholder, or
/// hold it back. A `-ERR` to it leaves the session as it was.
///
/// ```
/// use pop3_proto::client::{Client, ClientConfig};
/// use pop3_proto::fetch::utf8_task;
/// use pop3_proto::time::Instant;
///
/// // No CAPA read yet: nothing to ask.
/// let client = Client::new(ClientConfig::default(), Instant::ZERO);
/// assert!(utf8_task(&client).is_none());
/// ```
pub fn utf8_task(client: &Client) -> Option<EnableUtf8> {
    let offered = client
        .capabilities()?
        .iter()
        .any(|c| matches!(c, crate::response::Capability::Utf8 { .. }));
    (offered && !client.is_utf8()).then(|| EnableUtf8(task::Simple::new(Command::Utf8)))
}

/// The task [`utf8_task`] chooses: `UTF8`, whose output says whether the
/// server accepted it (a `-ERR` is `Ok(false)`, not an error).
#[derive(Debug)]
pub struct EnableUtf8(task::Simple);

impl Task for EnableUtf8 {
    type Output = bool;

    fn start(&mut self, client: &mut Client) -> Result<(), ClientError> {
        self.0.start(client)
    }

    fn event(
        &mut self,
        event: ClientEvent,
        cx: &mut TaskContext<'_>,
    ) -> Option<Result<bool, Error>> {
        match self.0.event(event, cx)? {
            Ok(_) => Some(Ok(true)),
            Err(Error::Server(e)) => {
                tracing::warn!(target: "pop3_proto::fetch", "the server offers UTF8 but refused it: {e}");
                Some(Ok(false))
            }
            Err(e) => Some(Err(e)),
        }
    }
}

/// What [`Fetch::poll`] wants next.
#[derive(Debug)]
#[non_exhaustive]
pub enum FetchStep {
    /// Perform the connection's I/O once ([`Connection::want`]), then poll
    /// again.
    Io,
    /// Perform this on the sink ([`execute`]), then [`Fetch::sink_done`].
    Sink(SinkRequest),
    /// How far the fetch is (after the listing, each message that begins
    /// to arrive, and each request that stored a piece or messages).
    Progress(Progress),
    /// The fetch is over; the session ended with QUIT if it succeeded.
    Done(Result<FetchReport, FetchError>),
}

#[derive(Debug)]
enum Phase {
    Start,
    /// UIDL and LIST, pipelined.
    Listing(Running<task::UidlAndList>),
    /// LIST's result, to check against UIDL's.
    Listed(Option<Result<Vec<crate::response::ScanLine>, Error>>),
    /// Telling the sink which UIDs are listed twice, asking which it
    /// remembers as ambiguous.
    Ambiguous,
    /// Asking the sink about `uids[next]`.
    Check,
    Retrieve(RetrBatchState),
    Body(RetrBatchState, BodyState, MessageNumber),
    /// Every message is in; the sink makes them durable before any DELE.
    Sync,
    /// The sink said they are.
    Synced,
    Dele(Running<task::DeleMany>),
    Quit(Running<task::Simple>),
    Over,
}

/// The sink request whose answer is awaited, and what follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaiting {
    Retain,
    Ambiguous,
    ContainsMany,
    /// A [`SinkRequest::Store`] that does not complete the message.
    Store,
    /// A [`SinkRequest::Store`] that completes it.
    Commit,
    /// A [`SinkRequest::StoreMessages`] of `handed`.
    StoreMessages,
    Abort,
    Sync,
    /// The sync of a failing run, before its error is returned.
    FinalSync,
    /// The age of a stored message (`FetchOptions::delete_after`).
    Age(MessageNumber),
    MarkSeen,
}

/// A message received whole, waiting for (or in) a
/// [`SinkRequest::StoreMessages`].
#[derive(Debug)]
struct Received {
    msg: MessageNumber,
    uid: Uid,
    chunks: Vec<Bytes>,
    size: u64,
    /// Whether it may be deleted once stored.
    deletable: bool,
}

/// The save-before-delete driver, on a logged-in session. See the
/// [module docs](self) for why nothing is lost or duplicated.
#[derive(Debug)]
pub struct Fetch {
    options: FetchOptions,
    phase: Phase,
    awaiting: Option<Awaiting>,
    /// Why the fetch fails once the sink has cleaned up.
    failure: Option<FetchError>,
    uids: Vec<UidLine>,
    sizes: HashMap<MessageNumber, u64>,
    next: usize,
    seen: HashSet<Uid>,
    /// Whether the sink holds each of `uids`, once asked.
    found: Option<Vec<bool>>,
    /// UIDs listed for two messages, now or in a run the sink remembers.
    ambiguous: HashSet<Uid>,
    /// Messages to delete: stored (with an unambiguous UID) and old
    /// enough, or oversized with `Oversize::Delete`.
    stored: Vec<MessageNumber>,
    /// A sink request the listing's check owes: the age of a stored
    /// message, or marking one seen.
    owed: Option<(Awaiting, SinkRequest)>,
    /// The server has no UIDL; the run deletes all it stores.
    uidless: Option<ServerError>,
    /// Whether the message being received may be deleted once stored.
    deletable: bool,
    /// The sink found or stored messages since its last sync.
    sync_due: bool,
    wanted: Vec<(MessageNumber, Uid)>,
    report: FetchReport,
    progress: Progress,
    /// Octets of the message being received.
    size: u64,
    /// The UID of the message being received, until the sink began it.
    unbegun: Option<Uid>,
    /// Pieces of the message received and not yet given to the sink (at
    /// most [`STORE_CHUNK`] octets and one piece).
    gathered: Vec<Bytes>,
    /// Their octets.
    gathered_len: usize,
    /// Messages received whole and not yet given to the sink.
    ready: Vec<Received>,
    /// Their octets (handed over once they reach [`STORE_CHUNK`]).
    ready_len: usize,
    /// When the first of them was received.
    ready_since: Option<Instant>,
    /// The messages of the [`SinkRequest::StoreMessages`] asked for.
    handed: Vec<Received>,
    /// The sink answered since the last poll: the time it took is not the
    /// server's.
    sink_returned: bool,
    /// A progress report is due.
    report_progress: bool,
    /// Asked to stop with retrievals outstanding: the session ends after
    /// the sync, without DELE or QUIT.
    abandon: bool,
}

impl Fetch {
    /// A fetch with these options.
    pub fn new(options: FetchOptions) -> Fetch {
        Fetch {
            options,
            phase: Phase::Start,
            awaiting: None,
            failure: None,
            uids: Vec::new(),
            sizes: HashMap::new(),
            next: 0,
            seen: HashSet::new(),
            ambiguous: HashSet::new(),
            stored: Vec::new(),
            owed: None,
            uidless: None,
            deletable: false,
            sync_due: false,
            wanted: Vec::new(),
            report: FetchReport::default(),
            progress: Progress::default(),
            size: 0,
            unbegun: None,
            found: None,
            gathered: Vec::new(),
            gathered_len: 0,
            ready: Vec::new(),
            ready_len: 0,
            ready_since: None,
            handed: Vec::new(),
            sink_returned: false,
            report_progress: false,
            abandon: false,
        }
    }

    /// Whether the fetch was asked to stop.
    fn stopping(&self) -> bool {
        self.options
            .stop
            .as_ref()
            .is_some_and(StopSignal::is_stopped)
    }

    /// Whether every stored message is deleted.
    fn deletes_stored(&self) -> bool {
        (self.options.delete || self.options.delete_after == Some(Duration::ZERO))
            && !self.options.mark_seen
    }

    /// Whether a message stored by this run is deleted.
    fn deletes_new(&self) -> bool {
        self.deletes_stored() || self.uidless.is_some()
    }

    /// Whether a server without UIDL can be fetched from with the options.
    fn uidless_allowed(&self) -> bool {
        self.options.uidless_run_id.is_some()
            && self.options.delete
            && !self.options.mark_seen
            && !self.options.refetch
    }

    /// The listed message is over `max_size`: reported, and with
    /// `Oversize::Delete` (and an unambiguous UID) marked for deletion.
    fn oversized(&mut self, msg: MessageNumber, uid: &Uid) -> bool {
        let Some(size) = self.sizes.get(&msg).copied() else {
            return false;
        };
        if self.options.max_size.is_none_or(|max| size <= max) {
            return false;
        }
        tracing::info!(target: "pop3_proto::fetch", "message {msg} has {size} octets, over the limit: not fetched");
        self.report.oversized.push((msg, size));
        if self.options.oversize == Oversize::Delete
            && !self.options.mark_seen
            && !self.ambiguous.contains(uid)
        {
            self.stored.push(msg);
        }
        true
    }

    /// Cuts the messages to fetch down to `max_messages` and `max_octets`.
    fn apply_limits(&mut self) {
        let mut octets = 0u64;
        let mut keep = 0;
        for (i, (msg, _)) in self.wanted.iter().enumerate() {
            if self.options.max_messages.is_some_and(|max| i >= max) {
                break;
            }
            let size = self.sizes.get(msg).copied().unwrap_or(0);
            octets = octets.saturating_add(size);
            if i > 0 && self.options.max_octets.is_some_and(|max| octets > max) {
                break;
            }
            keep = i + 1;
        }
        self.report.deferred = self.wanted.len() - keep;
        for (msg, uid) in &self.wanted[keep..] {
            tracing::info!(target: "pop3_proto::fetch", "message {msg} (UID {uid}): over the session's limits, left for a later run");
        }
        self.wanted.truncate(keep);
    }

    fn done(&mut self, result: Result<FetchReport, FetchError>) -> FetchStep {
        self.phase = Phase::Over;
        FetchStep::Done(result)
    }

    /// The fetch fails. What the sink found or stored is made durable first
    /// (best effort: the sink's own failure is only logged), so that a
    /// failing run's messages are journaled like a successful run's; then
    /// the error is returned.
    fn fail(&mut self, error: FetchError) -> FetchStep {
        if !self.ready.is_empty() {
            // Received whole before the failure: stored like the others.
            self.failure = Some(error);
            return self.store_ready();
        }
        if core::mem::take(&mut self.sync_due) {
            self.failure = Some(error);
            return self.ask(Awaiting::FinalSync, SinkRequest::Sync);
        }
        self.done(Err(error))
    }

    fn ask(&mut self, awaiting: Awaiting, request: SinkRequest) -> FetchStep {
        self.awaiting = Some(awaiting);
        FetchStep::Sink(request)
    }

    /// The sink's answer for `uids[next]`: whether it holds that message.
    fn checked(&mut self, stored: bool) {
        if stored {
            let entry = &self.uids[self.next];
            tracing::info!(target: "pop3_proto::fetch", "message {} (UID {}): already stored", entry.msg, entry.uid);
            self.sync_due = true;
            self.report.already_stored += 1;
            if self.options.refetch && !self.options.mark_seen {
                self.wanted.push((entry.msg, entry.uid.clone()));
            } else if self.ambiguous.contains(&entry.uid) || self.options.mark_seen {
            } else if self.deletes_stored() {
                self.stored.push(entry.msg);
            } else if self.options.delete_after.is_some() {
                self.owed = Some((
                    Awaiting::Age(entry.msg),
                    SinkRequest::Age(entry.uid.clone()),
                ));
            } else {
                self.report.kept += 1;
            }
            self.next += 1;
        } else {
            let entry = &self.uids[self.next];
            if self.options.mark_seen {
                if !self.ambiguous.contains(&entry.uid) {
                    tracing::info!(target: "pop3_proto::fetch", "message {} (UID {}): marked as seen, not downloaded", entry.msg, entry.uid);
                    self.owed =
                        Some((Awaiting::MarkSeen, SinkRequest::MarkSeen(entry.uid.clone())));
                }
            } else {
                self.wanted.push((entry.msg, entry.uid.clone()));
            }
            self.next += 1;
        }
    }

    /// Hands the message's gathered octets to the sink, beginning it with
    /// them if not begun yet, and completing it with `commit`: one request
    /// for all the pieces that came while the sink was not asked.
    fn store(&mut self, commit: bool) -> FetchStep {
        self.gathered_len = 0;
        let request = SinkRequest::Store {
            begin: self.unbegun.take(),
            chunks: core::mem::take(&mut self.gathered),
            commit,
        };
        let awaiting = if commit {
            Awaiting::Commit
        } else {
            Awaiting::Store
        };
        self.ask(awaiting, request)
    }

    /// Hands the messages received whole to the sink, in one request.
    fn store_ready(&mut self) -> FetchStep {
        self.ready_len = 0;
        self.ready_since = None;
        self.handed = core::mem::take(&mut self.ready);
        let messages = self
            .handed
            .iter_mut()
            .map(|r| (r.uid.clone(), core::mem::take(&mut r.chunks)))
            .collect();
        self.ask(
            Awaiting::StoreMessages,
            SinkRequest::StoreMessages(messages),
        )
    }

    /// The network is to be waited for: the messages received whole go to
    /// the sink first once the oldest has waited [`STORE_WAIT`], and until
    /// then the connection wakes the caller when it has.
    fn wait(&mut self, now: Instant, conn: &mut Connection) -> FetchStep {
        match self.ready_since {
            Some(since) if !self.ready.is_empty() => {
                let due = since + STORE_WAIT;
                if now >= due {
                    conn.wake_at(None);
                    return self.store_ready();
                }
                conn.wake_at(Some(due));
            }
            _ => conn.wake_at(None),
        }
        FetchStep::Io
    }

    /// The sink committed message `msg` of `size` octets.
    fn committed(&mut self, msg: MessageNumber, size: u64, deletable: bool) {
        self.sync_due = true;
        tracing::info!(target: "pop3_proto::fetch", "message {msg} ({size} octets): stored");
        if deletable && self.deletes_new() {
            self.stored.push(msg);
        } else {
            self.report.kept += 1;
        }
        self.report.saved += 1;
        self.report.bytes += size;
        self.progress.messages_done += 1;
        self.report_progress = true;
    }

    /// The store failed or the session did while a message was open:
    /// abort it first, then fail.
    fn abort(&mut self, error: FetchError) -> FetchStep {
        self.failure = Some(error);
        self.ask(Awaiting::Abort, SinkRequest::Abort)
    }

    /// The sink's answer to the last [`FetchStep::Sink`].
    pub fn sink_done(&mut self, reply: SinkReply) {
        let Some(awaiting) = self.awaiting.take() else {
            return;
        };
        self.sink_returned = true;
        let failed = |e: io::Error| Some(FetchError::Store(e));
        match (awaiting, reply) {
            (Awaiting::ContainsMany, SinkReply::ContainsMany(Ok(stored))) => {
                if stored.len() == self.uids.len() {
                    self.found = Some(stored);
                } else {
                    self.failure = failed(io::Error::other(
                        "the sink answered for another number of UIDs than asked",
                    ));
                }
            }
            (Awaiting::Age(msg), SinkReply::Age(Ok(age))) => {
                let after = self.options.delete_after.unwrap_or(Duration::MAX);
                if age.is_some_and(|a| a >= after) {
                    self.stored.push(msg);
                } else {
                    self.report.kept += 1;
                }
            }
            (Awaiting::MarkSeen, SinkReply::Done(Ok(()))) => {
                self.sync_due = true;
                self.report.marked += 1;
            }
            (Awaiting::Abort, _) => {}
            (Awaiting::Ambiguous, SinkReply::Ambiguous(Ok(remembered))) => {
                self.ambiguous.extend(remembered);
            }
            (Awaiting::FinalSync, SinkReply::Done(Err(e))) => {
                tracing::warn!(target: "pop3_proto::fetch", "cannot make the messages stored so far durable: {e}");
            }
            (Awaiting::Commit, SinkReply::Done(Ok(()))) => {
                self.phase = match core::mem::replace(&mut self.phase, Phase::Over) {
                    Phase::Body(batch, _, msg) => {
                        self.committed(msg, self.size, self.deletable);
                        Phase::Retrieve(batch)
                    }
                    other => other,
                };
                self.progress.receiving = None;
            }
            (Awaiting::StoreMessages, SinkReply::Stored { committed, result })
                if committed <= self.handed.len() =>
            {
                let handed = core::mem::take(&mut self.handed);
                for r in handed.iter().take(committed) {
                    self.committed(r.msg, r.size, r.deletable);
                }
                if let Err(e) = result {
                    if self.failure.is_none() {
                        self.failure = failed(e);
                    } else {
                        tracing::warn!(target: "pop3_proto::fetch", "cannot store the messages received before the failure: {e}");
                    }
                }
            }
            (Awaiting::StoreMessages, _) => {
                // Not an answer to this request: what the sink did is
                // unknown, so none of them counts as stored.
                self.handed.clear();
                self.failure = failed(io::Error::other(
                    "the sink did not answer the StoreMessages request with Stored",
                ));
            }
            (Awaiting::Store, SinkReply::Done(Ok(()))) => self.report_progress = true,
            (Awaiting::Sync, SinkReply::Done(Ok(()))) => self.phase = Phase::Synced,
            (
                _,
                SinkReply::Done(Err(e))
                | SinkReply::Contains(Err(e))
                | SinkReply::ContainsMany(Err(e))
                | SinkReply::Ambiguous(Err(e))
                | SinkReply::Age(Err(e)),
            ) => self.failure = failed(e),
            (
                _,
                SinkReply::Contains(Ok(_))
                | SinkReply::ContainsMany(Ok(_))
                | SinkReply::Done(Ok(()))
                | SinkReply::Ambiguous(Ok(_))
                | SinkReply::Age(Ok(_))
                | SinkReply::Stored { .. },
            ) => {}
        }
    }

    /// Drives the fetch as far as it can go without I/O or the sink.
    pub fn poll(&mut self, now: Instant, conn: &mut Connection) -> FetchStep {
        if core::mem::take(&mut self.sink_returned) {
            conn.local_work_done(now);
        }
        loop {
            if self.awaiting == Some(Awaiting::Abort) {
                return FetchStep::Sink(SinkRequest::Abort);
            }
            if self.awaiting.is_some() {
                // The answer to the last request is not in yet.
                return FetchStep::Io;
            }
            // What was stored before a failure is reported before it.
            if core::mem::take(&mut self.report_progress) {
                return FetchStep::Progress(self.progress);
            }
            if let Some(e) = self.failure.take() {
                return self.fail(e);
            }
            if let Some((awaiting, request)) = self.owed.take() {
                return self.ask(awaiting, request);
            }
            let stopping = self.stopping();
            match &mut self.phase {
                Phase::Start => {
                    self.report.login_delay = conn.machine().capabilities().and_then(|caps| {
                        caps.iter().find_map(|c| match c {
                            Capability::LoginDelay { seconds, .. } => Some(*seconds),
                            _ => None,
                        })
                    });
                    if stopping {
                        self.report.interrupted = true;
                        self.quit(conn);
                        continue;
                    }
                    match conn.start(task::UidlAndList::new()) {
                        Ok(r) => self.phase = Phase::Listing(r),
                        Err(e) => return self.fail(e.into()),
                    }
                }
                Phase::Listing(running) => match conn.poll_task(now, running) {
                    None => return FetchStep::Io,
                    Some(Err(e)) => return self.fail(e.into()),
                    Some(Ok((uids, sizes))) => {
                        match uids {
                            Err(Error::Server(e)) => {
                                if !self.uidless_allowed() {
                                    return self.fail(FetchError::NoUidl(e));
                                }
                                // Every message is fetched and deleted once
                                // stored, under a UID no other run uses.
                                tracing::info!(target: "pop3_proto::fetch", "the server has no UIDL ({e}): fetching every message and deleting each once stored");
                                self.uidless = Some(e);
                            }
                            Err(e) => return self.fail(e.into()),
                            Ok(uids) => self.uids = uids,
                        }
                        self.phase = Phase::Listed(Some(sizes));
                    }
                },
                Phase::Listed(sizes) => {
                    match sizes.take() {
                        // Taken already: not reached (the phase moves on).
                        None => {}
                        Some(Ok(list)) => {
                            self.sizes = list.into_iter().map(|s| (s.msg, s.size)).collect()
                        }
                        Some(Err(Error::Server(e))) => {
                            if let Some(no_uidl) = self.uidless.take() {
                                let _ = e;
                                return self.fail(FetchError::NoUidl(no_uidl));
                            }
                        }
                        Some(Err(e)) => return self.fail(e.into()),
                    }
                    if self.uidless.is_some() {
                        let run = self.options.uidless_run_id.clone().unwrap_or_default();
                        let mut listed: Vec<MessageNumber> = self.sizes.keys().copied().collect();
                        listed.sort();
                        self.uids = Vec::with_capacity(listed.len());
                        for msg in listed {
                            let text = std::format!("{run}-{msg}");
                            match Uid::new(Bytes::from(text.into_bytes())) {
                                Ok(uid) => self.uids.push(UidLine { msg, uid }),
                                Err(_) => self.report.unidentified.push(msg),
                            }
                        }
                        self.report.listed = self.sizes.len();
                        self.phase = Phase::Check;
                        continue;
                    }
                    // A message LIST names but UIDL does not (its line was
                    // missing or did not parse) cannot be told apart from
                    // the others: it is left alone, and the report says so.
                    let identified: HashSet<MessageNumber> =
                        self.uids.iter().map(|u| u.msg).collect();
                    let mut unidentified: Vec<MessageNumber> = self
                        .sizes
                        .keys()
                        .filter(|m| !identified.contains(m))
                        .copied()
                        .collect();
                    unidentified.sort();
                    for msg in &unidentified {
                        tracing::warn!(target: "pop3_proto::fetch", "message {msg} has no usable UID (its UIDL line is missing or did not parse): left on the server");
                    }
                    self.report.listed = self.uids.len() + unidentified.len();
                    self.report.unidentified = unidentified;
                    self.phase = Phase::Ambiguous;
                    // Forget UIDs gone from the server, but only when the
                    // listings agree (a UIDL line that could not be parsed
                    // must not make a stored message look gone).
                    if !self.sizes.is_empty()
                        && self.sizes.len() == self.uids.len()
                        && self.report.unidentified.is_empty()
                    {
                        let listed = self.uids.iter().map(|u| u.uid.clone()).collect();
                        return self.ask(Awaiting::Retain, SinkRequest::Retain(listed));
                    }
                }
                Phase::Ambiguous => {
                    let mut once = HashSet::new();
                    let twice: HashSet<Uid> = self
                        .uids
                        .iter()
                        .filter(|u| !once.insert(&u.uid))
                        .map(|u| u.uid.clone())
                        .collect();
                    self.ambiguous.extend(twice.iter().cloned());
                    self.phase = Phase::Check;
                    return self.ask(Awaiting::Ambiguous, SinkRequest::Ambiguous(twice));
                }
                Phase::Check => {
                    // One request for every UID listed (not one per
                    // message: a call of the blocking pool each in the
                    // async clients), before the first is looked at.
                    if self.found.is_none() && self.uidless.is_none() && self.next < self.uids.len()
                    {
                        let all = self.uids.iter().map(|u| u.uid.clone()).collect();
                        return self.ask(Awaiting::ContainsMany, SinkRequest::ContainsMany(all));
                    }
                    if let Some(entry) = self.uids.get(self.next) {
                        let first = self.seen.insert(entry.uid.clone());
                        if self.ambiguous.contains(&entry.uid) {
                            // What the sink holds under this UID may be
                            // another message: never deleted.
                            tracing::warn!(target: "pop3_proto::fetch", "UID {} is shared by several messages (message {}): left on the server", entry.uid, entry.msg);
                            self.report.ambiguous.push(entry.msg);
                        }
                        if !first {
                            // Two messages with one UID: only the first can
                            // be stored under it.
                            self.next += 1;
                            continue;
                        }
                        let (msg, uid) = (entry.msg, entry.uid.clone());
                        if self.oversized(msg, &uid) {
                            self.next += 1;
                            continue;
                        }
                        if self.uidless.is_some() {
                            // Its UID is new: nothing to ask the sink.
                            self.wanted.push((msg, uid));
                            self.next += 1;
                            continue;
                        }
                        let stored = self.found.as_ref().is_some_and(|f| f[self.next]);
                        self.checked(stored);
                        continue;
                    }
                    self.apply_limits();
                    self.progress = Progress {
                        messages_total: self.wanted.len(),
                        bytes_total: self
                            .wanted
                            .iter()
                            .map(|(m, _)| self.sizes.get(m).copied().unwrap_or(0))
                            // The server's sizes: a hostile one must not
                            // make the sum panic.
                            .fold(0u64, u64::saturating_add),
                        ..Progress::default()
                    };
                    match conn.retr_many(self.wanted.iter().map(|(m, _)| *m)) {
                        Ok(batch) => self.phase = Phase::Retrieve(batch),
                        Err(e) => return self.fail(e.into()),
                    }
                    return FetchStep::Progress(self.progress);
                }
                Phase::Retrieve(batch) if stopping => {
                    // Between two messages: the one received last is
                    // stored; no further one is begun.
                    let left = batch.remaining();
                    tracing::info!(target: "pop3_proto::fetch", "asked to stop: {left} messages left for a later run");
                    self.report.interrupted = true;
                    self.report.deferred += left;
                    self.abandon = left > 0;
                    self.phase = Phase::Sync;
                }
                Phase::Retrieve(batch) => match conn.poll_batch(now, batch) {
                    None => return self.wait(now, conn),
                    Some(None) => self.phase = Phase::Sync,
                    Some(Some((msg, Err(Error::Server(e))))) => {
                        // This one is not sent (e.g. deleted by another
                        // session): the others go on.
                        self.report.refused.push((msg, e));
                    }
                    Some(Some((_, Err(e)))) => return self.fail(e.into()),
                    Some(Some((msg, Ok(body)))) => {
                        let Some(uid) = self
                            .wanted
                            .iter()
                            .find(|(m, _)| *m == msg)
                            .map(|(_, u)| u.clone())
                        else {
                            continue;
                        };
                        let Phase::Retrieve(batch) =
                            core::mem::replace(&mut self.phase, Phase::Over)
                        else {
                            unreachable!("in the retrieve phase");
                        };
                        self.phase = Phase::Body(batch, body, msg);
                        self.progress.receiving = Some(msg);
                        self.report_progress = true;
                        self.deletable = !self.ambiguous.contains(&uid);
                        self.size = 0;
                        // Begun with its first octets (see `store`).
                        self.unbegun = Some(uid);
                        self.gathered.clear();
                        self.gathered_len = 0;
                    }
                },
                Phase::Body(..) if self.gathered_len >= STORE_CHUNK => {
                    // Too large to hold whole: the messages received before
                    // it go to the sink first, then it is begun.
                    if !self.ready.is_empty() {
                        return self.store_ready();
                    }
                    return self.store(false);
                }
                Phase::Body(_, body, _) => match conn.poll_body(now, body) {
                    None => return self.wait(now, conn),
                    Some(Ok(Some(chunk))) => {
                        self.size += chunk.len() as u64;
                        self.progress.bytes_done += chunk.len() as u64;
                        self.gathered_len += chunk.len();
                        self.gathered.push(chunk);
                    }
                    Some(Ok(None)) if self.unbegun.is_some() => {
                        // Received whole: it waits for others to join it
                        // in one request to the sink.
                        let Phase::Body(batch, _, msg) =
                            core::mem::replace(&mut self.phase, Phase::Over)
                        else {
                            unreachable!("in the body phase");
                        };
                        self.phase = Phase::Retrieve(batch);
                        self.progress.receiving = None;
                        let Some(uid) = self.unbegun.take() else {
                            unreachable!("checked by the guard");
                        };
                        self.ready_len += core::mem::take(&mut self.gathered_len);
                        self.ready.push(Received {
                            msg,
                            uid,
                            chunks: core::mem::take(&mut self.gathered),
                            size: self.size,
                            deletable: self.deletable,
                        });
                        self.ready_since.get_or_insert(now);
                        if self.ready_len >= STORE_CHUNK || self.ready.len() >= STORE_MESSAGES {
                            return self.store_ready();
                        }
                    }
                    Some(Ok(None)) => return self.store(true),
                    Some(Err(e)) => {
                        self.gathered.clear();
                        self.gathered_len = 0;
                        // Nothing open in the sink yet: nothing to abort.
                        if self.unbegun.take().is_some() {
                            return self.fail(e.into());
                        }
                        return self.abort(e.into());
                    }
                },
                Phase::Sync if !self.ready.is_empty() => return self.store_ready(),
                Phase::Sync => {
                    self.sync_due = false;
                    return self.ask(Awaiting::Sync, SinkRequest::Sync);
                }
                Phase::Synced if self.abandon => {
                    // Replies to the retrievals are still on their way: the
                    // connection is left without QUIT, so the server
                    // deletes nothing; what was stored is synced and the
                    // next run deletes it.
                    let report = core::mem::take(&mut self.report);
                    return self.done(Ok(report));
                }
                Phase::Synced => self.finish_retrieval(conn),
                Phase::Dele(running) => match conn.poll_task(now, running) {
                    None => return FetchStep::Io,
                    Some(Err(e)) => return self.fail(e.into()),
                    Some(Ok(results)) => {
                        for (msg, result) in results {
                            match result {
                                Ok(()) => {
                                    tracing::info!(target: "pop3_proto::fetch", "message {msg}: deleted");
                                    self.report.deleted += 1;
                                }
                                Err(e) => self.report.refused.push((msg, e)),
                            }
                        }
                        self.progress.deletes_accepted = self.report.deleted;
                        self.report_progress = true;
                        self.quit(conn);
                    }
                },
                Phase::Quit(running) => match conn.poll_task(now, running) {
                    None => return FetchStep::Io,
                    Some(Err(e)) => return self.fail(e.into()),
                    Some(Ok(_)) => {
                        let report = core::mem::take(&mut self.report);
                        return self.done(Ok(report));
                    }
                },
                Phase::Over => return FetchStep::Done(Err(FetchError::Pop3(Error::Closed))),
            }
        }
    }

    /// Runs the fetch as far as it goes without I/O, performing its sink
    /// requests on `sink` on the calling thread and reporting progress:
    /// `Some` with the result, or `None` when it needs the connection's I/O.
    /// An adapter's whole fetch is a loop over this and its I/O step.
    /// `clock` gives the time at each step (a sink call may take long).
    pub fn drive<S: MessageSink + ?Sized>(
        &mut self,
        clock: &mut dyn FnMut() -> Instant,
        conn: &mut Connection,
        sink: &mut S,
        progress: &mut dyn FnMut(&Progress),
    ) -> Option<Result<FetchReport, FetchError>> {
        loop {
            match self.poll(clock(), conn) {
                FetchStep::Io => return None,
                FetchStep::Sink(request) => self.sink_done(execute(sink, request)),
                FetchStep::Progress(p) => progress(&p),
                FetchStep::Done(result) => return Some(result),
            }
        }
    }

    fn finish_retrieval(&mut self, conn: &mut Connection) {
        if !self.stored.is_empty() {
            self.stored.sort();
            match conn.start(task::DeleMany::new(self.stored.iter().copied())) {
                Ok(r) => self.phase = Phase::Dele(r),
                Err(e) => self.failure = Some(e.into()),
            }
        } else {
            self.quit(conn);
        }
    }

    fn quit(&mut self, conn: &mut Connection) {
        match conn.start(task::Simple::new(Command::Quit)) {
            Ok(r) => self.phase = Phase::Quit(r),
            Err(e) => self.failure = Some(e.into()),
        }
    }
}
