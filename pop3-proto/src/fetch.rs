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
//! `loop { if let Some(r) = fetch.drive(now, &mut conn, &mut sink, progress) { return r } pump I/O }`.
//!
//! # Why every message ends up stored exactly once, and none is lost
//!
//! The argument rests on four facts:
//!
//! 1. *The server removes nothing without QUIT.* DELE only marks; removal
//!    happens in the UPDATE state, which only an acknowledged QUIT enters
//!    (RFC 1939 §6). A run killed at any point before the server processed
//!    QUIT removes nothing, whatever DELEs it sent.
//! 2. *DELE is sent only for stored messages.* the driver sends `DELE n`
//!    only for a message whose UID the sink reports stored: either
//!    [`MessageSink::contains`] said so, or [`MessageSink::commit`]
//!    returned `Ok` for it in this run; and only after
//!    [`MessageSink::sync`] returned `Ok`, which makes every one of them
//!    durable (the Maildir sink: each file fsynced before its rename into
//!    `new/`; at the sync, the directory fsynced, then the journal). So at
//!    the moment any DELE is on the wire, the message is durably stored; a
//!    fortiori when QUIT removes it.
//! 3. *Stored messages are recognised.* A message is identified by its UIDL
//!    unique-id, which the server keeps for the message's lifetime and never
//!    reuses (RFC 1939 §7). Once stored, `contains(uid)` is `true` for good:
//!    the Maildir sink names the file after a hash of account and UID and
//!    looks for it in `new/` and `cur/`, and also keeps the UID in a
//!    journal written after the file (so a message later moved or deleted
//!    locally is still not fetched again while it stays on the server).
//!    Such a message is never written a second time, only DELEd again
//!    (with `delete`).
//! 4. *Storing is atomic.* A message becomes visible in the Maildir by one
//!    rename of a complete, fsynced file; a run killed earlier leaves only a
//!    file in `tmp/`, which is not a delivered message and is cleaned up on
//!    the next open. So a message is either stored whole or not at all.
//!
//! Hence after a kill at any instant and a rerun: a message still on the
//! server is either stored (3: skipped, never stored twice) or not (fetched
//! now, once, 4); a message gone from the server was removed by a QUIT (1)
//! after its DELE, hence after it was stored (2). Every message is in the
//! Maildir exactly once. The residual risks are outside the protocol: a
//! server that breaks UIDL's promises, or a storage device that lies about
//! fsync.
//!

use crate::__tracing as tracing;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io;
use std::vec::Vec;

use bytes::Bytes;

use crate::client::sasl::{
    CramMd5, External, Login as SaslLogin, LoginChoice, OAuthBearer, Plain, Scram, XOAuth2,
};
use crate::client::task::{self, BodyState, Task, TaskContext};
use crate::client::{
    Client, ClientError, ClientEvent, Connection, Error, RetrBatchState, Running, ServerError,
};
use crate::command::Command;
use crate::response::UidLine;
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

    /// Starts storing a message (the previous one was committed or aborted).
    fn begin(&mut self, uid: &Uid) -> io::Result<()>;

    /// Appends a chunk of the message begun last.
    fn write(&mut self, chunk: &[u8]) -> io::Result<()>;

    /// Completes the message begun last: from `Ok` on, `contains` is
    /// `true` for it. It must be durable once the next [`sync`] returns
    /// `Ok` (a sink may make it durable here already).
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
}

/// What the driver asks of the sink.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SinkRequest {
    /// [`MessageSink::retain`]; answer [`SinkReply::Done`].
    Retain(HashSet<Uid>),
    /// [`MessageSink::contains`]; answer [`SinkReply::Contains`].
    Contains(Uid),
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
}

impl SinkRequest {
    /// Whether the request may wait for the disk (a sink creates, syncs or
    /// renames files for it): an adapter on an async runtime runs these off
    /// its reactor. Appending a chunk ([`SinkRequest::Write`]) and looking a
    /// UID up are expected to be quick.
    pub fn may_block(&self) -> bool {
        matches!(
            self,
            SinkRequest::Begin(_)
                | SinkRequest::Commit
                | SinkRequest::Abort
                | SinkRequest::Retain(_)
                | SinkRequest::Sync
        )
    }
}

/// The sink's answer to a [`SinkRequest`].
#[derive(Debug)]
#[non_exhaustive]
pub enum SinkReply {
    /// To [`SinkRequest::Contains`].
    Contains(io::Result<bool>),
    /// To every other request.
    Done(io::Result<()>),
}

/// Performs one request on a sink (what every adapter does with a
/// [`FetchStep::Sink`], on a thread where blocking is allowed).
pub fn execute<S: MessageSink + ?Sized>(sink: &mut S, request: SinkRequest) -> SinkReply {
    match request {
        SinkRequest::Retain(listed) => SinkReply::Done(sink.retain(&listed)),
        SinkRequest::Contains(uid) => SinkReply::Contains(sink.contains(&uid)),
        SinkRequest::Begin(uid) => SinkReply::Done(sink.begin(&uid)),
        SinkRequest::Write(chunk) => SinkReply::Done(sink.write(&chunk)),
        SinkRequest::Commit => SinkReply::Done(sink.commit()),
        SinkRequest::Sync => SinkReply::Done(sink.sync()),
        SinkRequest::Abort => {
            sink.abort();
            SinkReply::Done(Ok(()))
        }
    }
}

/// What a fetch does.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct FetchOptions {
    /// Delete from the server every message that is stored (already or now).
    pub delete: bool,
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
}

/// Why a fetch failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum FetchError {
    /// The POP3 session failed.
    Pop3(Error),
    /// The sink failed to store a message.
    Store(io::Error),
    /// The server has no UIDL: messages cannot be told apart across runs.
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
            FetchError::Store(e) => write!(f, "cannot store a message: {e}"),
            FetchError::NoUidl(e) => write!(f, "the server has no UIDL ({e})"),
            FetchError::NoUser => f.write_str("the URL has no user name"),
            FetchError::Auth(e) => write!(f, "{e}"),
            FetchError::Settings(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for FetchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FetchError::Pop3(e) => Some(e),
            FetchError::Store(e) => Some(e),
            FetchError::NoUidl(e) => Some(e),
            FetchError::Auth(e) => Some(e),
            FetchError::Settings(e) => Some(e),
            FetchError::NoUser => None,
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
}

impl Task for LoginTask {
    type Output = ();

    fn start(&mut self, client: &mut Client) -> Result<(), ClientError> {
        match self {
            LoginTask::User(t) => t.start(client),
            LoginTask::Apop(t) => t.start(client),
            LoginTask::Sasl(t) => t.start(client),
        }
    }

    fn event(&mut self, event: ClientEvent, cx: &mut TaskContext<'_>) -> Option<Result<(), Error>> {
        match self {
            LoginTask::User(t) => t.event(event, cx),
            LoginTask::Apop(t) => t.event(event, cx),
            LoginTask::Sasl(t) => t.event(event, cx),
        }
    }

    fn ready(&mut self, cx: &mut TaskContext<'_>) -> Option<Result<(), Error>> {
        match self {
            LoginTask::User(t) => t.ready(cx),
            LoginTask::Apop(t) => t.ready(cx),
            LoginTask::Sasl(t) => t.ready(cx),
        }
    }
}

/// Chooses how to log in as `user` with `password` (the bearer token for
/// the OAuth mechanisms): `method` as given, or for [`AuthMethod::Any`],
/// the strongest the session offers
/// ([`choose_login`](crate::client::sasl::choose_login)): SCRAM-SHA-256,
/// SCRAM-SHA-1, CRAM-MD5, APOP, and over TLS only PLAIN, LOGIN, USER/PASS;
/// without TLS, refused rather than sending the password in clear text. `nonce` is only used by SCRAM: a
/// fresh random token from a secure generator.
///
/// ```
/// use pop3_proto::client::{Client, ClientConfig};
/// use pop3_proto::fetch::{login_task, AuthError};
/// use pop3_proto::time::Instant;
/// use pop3_proto::url::AuthMethod;
///
/// let client = Client::new(ClientConfig::default(), Instant::ZERO);
/// let refused = login_task(&client, AuthMethod::Any, "alice", "secret", "nonce");
/// assert_eq!(refused.unwrap_err(), AuthError::CleartextRefused);
/// ```
pub fn login_task(
    client: &Client,
    method: AuthMethod,
    user: &str,
    password: &str,
    nonce: &str,
) -> Result<LoginTask, AuthError> {
    let secret = || Secret::new(password.as_bytes().to_vec());
    let method = match method {
        AuthMethod::Any => match crate::client::sasl::choose_login(client, false) {
            Some(LoginChoice::Sasl(m)) => AuthMethod::Sasl(m),
            Some(LoginChoice::Apop) => AuthMethod::Apop,
            Some(_) => AuthMethod::User,
            None => return Err(AuthError::CleartextRefused),
        },
        m => m,
    };
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

/// What [`Fetch::poll`] wants next.
#[derive(Debug)]
#[non_exhaustive]
pub enum FetchStep {
    /// Perform the connection's I/O once ([`Connection::want`]), then poll
    /// again.
    Io,
    /// Perform this on the sink ([`execute`]), then [`Fetch::sink_done`].
    Sink(SinkRequest),
    /// How far the fetch is (after the listing, each chunk and each message).
    Progress(Progress),
    /// The fetch is over; the session ended with QUIT if it succeeded.
    Done(Result<FetchReport, FetchError>),
}

#[derive(Debug)]
enum Phase {
    Start,
    Uidl(Running<task::Uidl>),
    List(Running<task::List>),
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
    Contains,
    Begin,
    Write,
    Commit,
    Abort,
    Sync,
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
    stored: Vec<MessageNumber>,
    wanted: Vec<(MessageNumber, Uid)>,
    report: FetchReport,
    progress: Progress,
    /// Octets of the message being received.
    size: u64,
    /// A progress report is due.
    report_progress: bool,
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
            stored: Vec::new(),
            wanted: Vec::new(),
            report: FetchReport::default(),
            progress: Progress::default(),
            size: 0,
            report_progress: false,
        }
    }

    fn done(&mut self, result: Result<FetchReport, FetchError>) -> FetchStep {
        self.phase = Phase::Over;
        FetchStep::Done(result)
    }

    fn ask(&mut self, awaiting: Awaiting, request: SinkRequest) -> FetchStep {
        self.awaiting = Some(awaiting);
        FetchStep::Sink(request)
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
        let failed = |e: io::Error| Some(FetchError::Store(e));
        match (awaiting, reply) {
            (Awaiting::Contains, SinkReply::Contains(Ok(true))) => {
                let entry = &self.uids[self.next];
                self.stored.push(entry.msg);
                self.report.already_stored += 1;
                self.next += 1;
            }
            (Awaiting::Contains, SinkReply::Contains(Ok(false))) => {
                let entry = &self.uids[self.next];
                self.wanted.push((entry.msg, entry.uid.clone()));
                self.next += 1;
            }
            (Awaiting::Contains, SinkReply::Contains(Err(e))) => self.failure = failed(e),
            (Awaiting::Abort, _) => {}
            (Awaiting::Commit, SinkReply::Done(Ok(()))) => {
                if let Phase::Body(_, _, msg) = &self.phase {
                    self.stored.push(*msg);
                }
                self.report.saved += 1;
                self.report.bytes += self.size;
                self.progress.messages_done += 1;
                self.report_progress = true;
                self.phase = match core::mem::replace(&mut self.phase, Phase::Over) {
                    Phase::Body(batch, _, _) => Phase::Retrieve(batch),
                    other => other,
                };
            }
            (Awaiting::Write, SinkReply::Done(Ok(()))) => self.report_progress = true,
            (Awaiting::Sync, SinkReply::Done(Ok(()))) => self.phase = Phase::Synced,
            (Awaiting::Begin | Awaiting::Write, SinkReply::Done(Err(e))) => {
                // The message is open: abort it, then fail.
                self.failure = failed(e);
                self.awaiting = Some(Awaiting::Abort);
            }
            (_, SinkReply::Done(Err(e)) | SinkReply::Contains(Err(e))) => self.failure = failed(e),
            (_, SinkReply::Contains(Ok(_)) | SinkReply::Done(Ok(()))) => {}
        }
    }

    /// Drives the fetch as far as it can go without I/O or the sink.
    pub fn poll(&mut self, now: Instant, conn: &mut Connection) -> FetchStep {
        loop {
            if self.awaiting == Some(Awaiting::Abort) {
                return FetchStep::Sink(SinkRequest::Abort);
            }
            if self.awaiting.is_some() {
                // The answer to the last request is not in yet.
                return FetchStep::Io;
            }
            if let Some(e) = self.failure.take() {
                return self.done(Err(e));
            }
            if core::mem::take(&mut self.report_progress) {
                return FetchStep::Progress(self.progress);
            }
            match &mut self.phase {
                Phase::Start => match conn.start(task::Uidl::new()) {
                    Ok(r) => self.phase = Phase::Uidl(r),
                    Err(e) => return self.done(Err(e.into())),
                },
                Phase::Uidl(running) => match conn.poll_task(now, running) {
                    None => return FetchStep::Io,
                    Some(Err(Error::Server(e))) => return self.done(Err(FetchError::NoUidl(e))),
                    Some(Err(e)) => return self.done(Err(e.into())),
                    Some(Ok(uids)) => {
                        self.report.listed = uids.len();
                        self.uids = uids;
                        match conn.start(task::List::new()) {
                            Ok(r) => self.phase = Phase::List(r),
                            Err(e) => return self.done(Err(e.into())),
                        }
                    }
                },
                Phase::List(running) => {
                    match conn.poll_task(now, running) {
                        None => return FetchStep::Io,
                        Some(Ok(list)) => {
                            self.sizes = list.into_iter().map(|s| (s.msg, s.size)).collect()
                        }
                        Some(Err(Error::Server(_))) => {}
                        Some(Err(e)) => return self.done(Err(e.into())),
                    }
                    self.phase = Phase::Check;
                    // Forget UIDs gone from the server, but only when the
                    // listings agree (a UIDL line that could not be parsed
                    // must not make a stored message look gone).
                    if !self.sizes.is_empty() && self.sizes.len() == self.uids.len() {
                        let listed = self.uids.iter().map(|u| u.uid.clone()).collect();
                        return self.ask(Awaiting::Retain, SinkRequest::Retain(listed));
                    }
                }
                Phase::Check => {
                    if let Some(entry) = self.uids.get(self.next) {
                        if !self.seen.insert(entry.uid.clone()) {
                            // Two messages with one UID: only the first can
                            // be told apart.
                            tracing::warn!(target: "pop3_proto::fetch", "duplicate UID {} (message {})", entry.uid, entry.msg);
                            self.next += 1;
                            continue;
                        }
                        let uid = entry.uid.clone();
                        return self.ask(Awaiting::Contains, SinkRequest::Contains(uid));
                    }
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
                        Err(e) => return self.done(Err(e.into())),
                    }
                    return FetchStep::Progress(self.progress);
                }
                Phase::Retrieve(batch) => match conn.poll_batch(now, batch) {
                    None => return FetchStep::Io,
                    Some(None) => self.phase = Phase::Sync,
                    Some(Some((msg, Err(Error::Server(e))))) => {
                        // This one is not sent (e.g. deleted by another
                        // session): the others go on.
                        self.report.refused.push((msg, e));
                    }
                    Some(Some((_, Err(e)))) => return self.done(Err(e.into())),
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
                        self.size = 0;
                        return self.ask(Awaiting::Begin, SinkRequest::Begin(uid));
                    }
                },
                Phase::Body(_, body, _) => match conn.poll_body(now, body) {
                    None => return FetchStep::Io,
                    Some(Ok(Some(chunk))) => {
                        self.size += chunk.len() as u64;
                        self.progress.bytes_done += chunk.len() as u64;
                        return self.ask(Awaiting::Write, SinkRequest::Write(chunk));
                    }
                    Some(Ok(None)) => return self.ask(Awaiting::Commit, SinkRequest::Commit),
                    Some(Err(e)) => return self.abort(e.into()),
                },
                Phase::Sync => return self.ask(Awaiting::Sync, SinkRequest::Sync),
                Phase::Synced => self.finish_retrieval(conn),
                Phase::Dele(running) => match conn.poll_task(now, running) {
                    None => return FetchStep::Io,
                    Some(Err(e)) => return self.done(Err(e.into())),
                    Some(Ok(results)) => {
                        for (msg, result) in results {
                            match result {
                                Ok(()) => self.report.deleted += 1,
                                Err(e) => self.report.refused.push((msg, e)),
                            }
                        }
                        self.quit(conn);
                    }
                },
                Phase::Quit(running) => match conn.poll_task(now, running) {
                    None => return FetchStep::Io,
                    Some(Err(e)) => return self.done(Err(e.into())),
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
    pub fn drive<S: MessageSink + ?Sized>(
        &mut self,
        now: Instant,
        conn: &mut Connection,
        sink: &mut S,
        progress: &mut dyn FnMut(&Progress),
    ) -> Option<Result<FetchReport, FetchError>> {
        loop {
            match self.poll(now, conn) {
                FetchStep::Io => return None,
                FetchStep::Sink(request) => self.sink_done(execute(sink, request)),
                FetchStep::Progress(p) => progress(&p),
                FetchStep::Done(result) => return Some(result),
            }
        }
    }

    fn finish_retrieval(&mut self, conn: &mut Connection) {
        if self.options.delete && !self.stored.is_empty() {
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
