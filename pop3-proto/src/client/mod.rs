//! The client session machine.
//!
//! [`Client`] speaks POP3 for an application without doing any I/O: the
//! application queues commands ([`Client::stat`], [`Client::retr`], or the
//! generic [`Client::send`]), feeds the bytes it reads from the server to
//! [`Client::handle_input`], and performs what [`Client::poll_action`] asks
//! for: write bytes, start TLS, close, and deliver typed [`ClientEvent`]s.
//!
//! ```
//! use pop3_proto::client::{Client, ClientConfig, ClientEvent};
//! use pop3_proto::session::Action;
//! use pop3_proto::time::Instant;
//! use pop3_proto::types::{MessageNumber, Secret};
//!
//! // The connection is protected by implicit TLS (port 995): without TLS,
//! // USER and PASS are refused unless `insecure_cleartext_login` is set.
//! let mut config = ClientConfig::default();
//! config.tls_active = true;
//! let mut client = Client::new(config, Instant::ZERO);
//! // Commands may be queued before the greeting: they are checked against
//! // the state the session will be in, and written when their turn comes.
//! client.login("alice", Secret::new("secret")).unwrap();
//! let retr = client.retr(MessageNumber::new(1).unwrap()).unwrap();
//! client.quit().unwrap();
//!
//! // Stands for the socket: what the server sends back.
//! let mut from_server: &[u8] = b"+OK ready\r\n+OK\r\n+OK Logged in.\r\n\
//!     +OK 25 octets\r\nSubject: hi\r\n\r\n..dot\r\n.\r\n+OK Bye\r\n";
//! let mut to_server = Vec::new();
//! let mut body = Vec::new();
//! let mut closed = false;
//! while !closed {
//!     while let Some(action) = client.poll_action() {
//!         match action {
//!             Action::Send(transmit) => to_server.extend_from_slice(&transmit.bytes),
//!             Action::StartTls => unreachable!("no STLS here"),
//!             Action::Event(ClientEvent::BodyChunk { id, data }) if id == retr => {
//!                 body.extend_from_slice(&data)
//!             }
//!             Action::Event(_) => {}
//!             Action::Close => closed = true,
//!             _ => {}
//!         }
//!     }
//!     if !closed {
//!         let used = client.handle_input(Instant::ZERO, from_server);
//!         from_server = &from_server[used..];
//!     }
//! }
//! assert_eq!(to_server, b"USER alice\r\nPASS secret\r\nRETR 1\r\nQUIT\r\n");
//! assert_eq!(body, b"Subject: hi\r\n\r\n.dot\r\n");
//! ```
//!
//! # Driving it
//!
//! After *every* `handle_*` call and every command call, drain
//! [`Client::poll_action`] until it returns `None`, performing each action in
//! order, then arm a timer for [`Client::poll_timeout`] and call
//! [`Client::handle_timeout`] when it fires.
//!
//! # Commands and the state they need
//!
//! Each command is checked, before anything reaches the wire, against the
//! state the session will be in *if every command already queued succeeds*:
//! `user`, `pass` and `stat` may be queued at once (they go out in one
//! write when the server pipelines), but `retr` before any login is refused
//! with [`ClientError::WrongState`]. When a command that later ones rely on
//! fails (USER, PASS, APOP, AUTH, STLS), every command queued after it that
//! has not been written yet is dropped with [`ClientEvent::Cancelled`]
//! ([`CancelReason::PrecedingFailed`]); commands already written get the
//! server's own answer (usually `-ERR`).
//!
//! # Pipelining
//!
//! When the cached capabilities (from the last CAPA) list `PIPELINING` and
//! [`ClientConfig::pipelining`] allows it, up to
//! [`ClientConfig::max_in_flight`] commands (and at most
//! [`ClientConfig::max_in_flight_bytes`] octets of them) are written without
//! waiting; replies are matched to commands in order (RFC 2449 §6.6). A
//! full window is refilled once half of it is answered, so a long run of
//! commands goes out in batches rather than one command per reply.
//! STLS, AUTH and QUIT are barriers: nothing is written after them until they
//! are answered. Otherwise one command is written at a time and the rest wait
//! in the queue.
//!
//! # Capabilities
//!
//! The capabilities are read only when the application asks ([`Client::capa`]).
//! A `-ERR` to CAPA is an ordinary [`ClientEvent::Err`]: nothing in the
//! machine requires an extension. The cached list is dropped after STLS
//! (RFC 2595 §4) and after a successful login (servers advertise different
//! sets before and after): call [`Client::capa`] again to re-read it (until
//! then pipelining is off), or set [`ClientConfig::auto_capa`]. With
//! `auto_capa` and a server that pipelines, the CAPA after a PASS or APOP
//! is written together with it, so reading the new capabilities costs no
//! round trip of its own.
//!
//! # Streaming and backpressure
//!
//! Listings are delivered entry by entry ([`ClientEvent::Scan`],
//! [`ClientEvent::Uid`], ...) between [`ClientEvent::ListingStart`] and
//! [`ClientEvent::ListingEnd`]; message bodies as zero-copy
//! [`ClientEvent::BodyChunk`]s between [`ClientEvent::BodyStart`] and
//! [`ClientEvent::BodyEnd`]. Nothing is buffered whole. A body is complete
//! only when `BodyEnd` arrives: if the session ends first, the command gets
//! [`ClientEvent::Cancelled`] and the chunks seen so far must be discarded.
//! POP3 has no way to stop a reply midway short of closing the connection:
//! an application that loses interest in a body lets its chunks go (they are
//! slices of the input buffer; dropping them costs nothing).
//!
//! The action queue is bounded ([`ClientConfig::max_queued_actions`]): while
//! it is full, input is left unparsed and [`Client::handle_input`] takes
//! fewer octets than offered (possibly none); draining with `poll_action`
//! parses what was already taken. Offer the rest again afterwards.
//!
//! # Errors, at three levels
//!
//! * [`ClientError`]: a command refused when queued; nothing was written.
//! * Per command: [`ClientEvent::Err`] for `-ERR` (with its response code;
//!   [`ServerError::is_transient`] tells `[IN-USE]`, `[LOGIN-DELAY]` and
//!   `[SYS/TEMP]` from the rest), [`ClientEvent::Malformed`] for a reply or
//!   listing entry that cannot be parsed but leaves the session in step.
//! * [`ClientEvent::Error`] with a [`ProtocolError`]: the session is over
//!   (out of step, timed out, attacked, or the greeting was `-ERR`); every
//!   unanswered command gets [`ClientEvent::Cancelled`], then
//!   [`ClientEvent::Closed`] and [`Action::Close`] follow.
//!
//! # Authentication
//!
//! [`Client::login`] (USER and PASS), [`Client::apop`] (the digest is
//! computed from the greeting's timestamp, only when it is a valid
//! `<local@domain>`), or [`Client::auth`] with a [`ClientMechanism`]
//! ([`sasl::Plain`], [`sasl::Login`], [`sasl::CramMd5`],
//! [`sasl::Scram`], [`sasl::XOAuth2`], [`sasl::OAuthBearer`], or the
//! application's own): the machine routes each `+` challenge to the
//! mechanism and writes its answers. Every write that carries a secret (PASS,
//! APOP, SASL data) has [`Transmit::secret`] set, so that a protocol log can
//! redact it.
//!
//! A step that needs slow local work (SCRAM's PBKDF2 key derivation, some
//! 20 ms at the default iteration cap) is not run inside
//! [`Client::handle_input`]: the machine hands it out as
//! [`ClientEvent::SaslWork`] and reads no more input until its result comes
//! back through [`Client::sasl_work_done`]; run it where blocking is fine (a
//! blocking thread pool, or inline in a blocking client). The reply timer
//! is stopped meanwhile and restarts when the answer is written.
//!
//! # Timeouts
//!
//! While a reply, the greeting or the TLS handshake is awaited,
//! [`Client::poll_timeout`] gives a deadline [`ClientConfig::reply_timeout`]
//! after the last octet received (or the command written). A reply that keeps
//! flowing never times out, however long it is.
//!
//! Commands this crate does not know ([`Command::Unknown`]) are expected to
//! have a single-line reply.
//!
//! # STLS
//!
//! After `+OK` to STLS the machine emits [`Action::StartTls`] and accepts no
//! more input until [`Client::handle_tls_established`]. Any octet that came
//! after that `+OK` in plaintext is a command-injection attempt (the
//! CVE-2011-0411 class): the session fails with
//! [`ProtocolError::StlsInjection`] and closes, and the octets are never
//! interpreted.

pub mod sasl;
mod wire;

mod security;
pub use security::Security;

#[cfg(feature = "std")]
mod connection;
#[cfg(feature = "std")]
mod error;
#[cfg(feature = "std")]
pub mod task;
#[cfg(feature = "std")]
pub use connection::{Connection, ConnectionConfig, RetrBatchState, Running, Want};
#[cfg(feature = "std")]
pub use error::{Error, TimeoutKind};

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use bytes::{Bytes, BytesMut};
use core::fmt;
use core::time::Duration;

use crate::command::{ApopDigest, Command, LangRequest, Password, SaslResponse, Username};
use crate::dot::{BodyDecoder, BodyEvent, LineEnds};
use crate::line::{Limits, LineError, find_line};
use crate::response::Response;
use crate::response::{
    Capability, CodeKind, Expected, Greeting, LangLine, ResponseCode, ResponseError, ScanLine,
    StatReply, Status, StatusLine, UidLine,
};
use crate::session::{Action, Transmit};
use crate::time::Instant;
use crate::types::{ApopTimestamp, InvalidValue, Mechanism, MessageNumber, Secret};

pub use sasl::{BoxedMechanism, ClientMechanism, SaslError, SaslWork, SaslWorkDone};

/// A message number from a `u32` (`None` for 0): a shorthand for
/// [`MessageNumber::new`].
///
/// ```
/// assert_eq!(pop3_proto::client::msg(3).unwrap().get(), 3);
/// assert!(pop3_proto::client::msg(0).is_none());
/// ```
pub fn msg(n: u32) -> Option<MessageNumber> {
    MessageNumber::new(n)
}

/// Identifies one queued command; every event about its reply carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(u64);

impl RequestId {
    /// The number, increasing from 0 in the order commands were queued.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// How a [`Client`] behaves. Start from `ClientConfig::default()` and change
/// fields.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
#[must_use = "a configuration does nothing until it is used"]
pub struct ClientConfig {
    /// Pipeline commands when the server advertises `PIPELINING` (default
    /// `true`). Turn off for servers that advertise it and mishandle it.
    pub pipelining: bool,
    /// The most commands written and not yet answered, when pipelining
    /// (default 64). Once the window is full, the next commands wait until
    /// half of it is answered, and then go out together.
    pub max_in_flight: usize,
    /// The most octets of commands written and not yet answered, when
    /// pipelining (default 4096): stays far below any transport window, so
    /// writes never block while the server's replies go unread.
    pub max_in_flight_bytes: usize,
    /// How long to wait for the greeting, for the next octet of a reply, and
    /// for the TLS handshake after STLS (default 120 s). `None`: forever.
    pub reply_timeout: Option<Duration>,
    /// Line-length limits for the server's lines (default: lenient).
    pub limits: Limits,
    /// When this many actions are waiting to be polled, input is no longer
    /// parsed (default 64).
    pub max_queued_actions: usize,
    /// The most input octets held unparsed (default 64 KiB; raised to fit the
    /// longest line the limits allow).
    pub read_buffer: usize,
    /// The connection is already protected by TLS (implicit TLS, port 995):
    /// STLS is refused and clear-text logins are allowed.
    pub tls_active: bool,
    /// Send USER, PASS and clear-text SASL mechanisms (PLAIN, LOGIN) over a
    /// connection without TLS. Default `false`: they are refused with
    /// [`ClientError::CleartextRefused`] unless TLS is active or STLS is
    /// queued before them (RFC 2595 §2.3, RFC 8314), so a password never
    /// crosses the network readable by accident. Set it only for a server
    /// on a trusted link (loopback, a test).
    pub insecure_cleartext_login: bool,
    /// An AUTH line with its initial response longer than this (CRLF
    /// included) is sent without it, and the response goes in answer to the
    /// first challenge instead (RFC 5034 §4: 255).
    pub initial_response_limit: usize,
    /// The most capabilities kept from one CAPA listing (default 128); the
    /// rest are ignored.
    pub max_capabilities: usize,
    /// Read the capabilities without being asked: the machine queues CAPA
    /// itself after the greeting, after the TLS handshake and after a
    /// successful login, ahead of any command not yet written (when the
    /// server pipelines, the one after a PASS or APOP goes out in the same
    /// write as that command, without waiting for its `+OK`) (default
    /// `false`). Its reply comes as [`ClientEvent::Capabilities`] (or
    /// [`ClientEvent::Err`]) with a [`RequestId`] the application did not
    /// get from a call.
    pub auto_capa: bool,
    /// The most server challenges answered in one AUTH exchange (default
    /// 8; the mechanisms here need at most 2). A server that goes on
    /// challenging gets the exchange cancelled with `*` and
    /// [`SaslError::TooManyChallenges`], so it cannot keep the client busy
    /// forever.
    pub max_sasl_challenges: u32,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            pipelining: true,
            max_in_flight: 64,
            max_in_flight_bytes: 4096,
            reply_timeout: Some(Duration::from_secs(120)),
            limits: Limits::lenient(),
            max_queued_actions: 64,
            read_buffer: 64 * 1024,
            tls_active: false,
            insecure_cleartext_login: false,
            initial_response_limit: 255,
            max_capabilities: 128,
            auto_capa: false,
            max_sasl_challenges: 8,
        }
    }
}

/// Where the session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ClientState {
    /// Waiting for the server greeting.
    Greeting,
    /// AUTHORIZATION: not logged in.
    Authorization,
    /// An AUTH exchange is in progress.
    Authenticating,
    /// `+OK` to STLS arrived: waiting for the TLS handshake.
    TlsHandshake,
    /// TRANSACTION: logged in.
    Transaction,
    /// The session is over (after QUIT, end of stream or an error).
    Closed,
}

/// A `-ERR` reply: the status line, its response code, and whether retrying
/// later can help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    line: StatusLine,
}

impl ServerError {
    /// The whole status line.
    pub fn line(&self) -> &StatusLine {
        &self.line
    }

    /// The response code (`[IN-USE]`, `[AUTH]`, ...), if the server sent one.
    pub fn code(&self) -> Option<&ResponseCode> {
        self.line.code.as_ref()
    }

    /// Which known code this is, if any.
    pub fn kind(&self) -> Option<CodeKind> {
        self.code().map(ResponseCode::kind)
    }

    /// The text after the status and code (may be empty).
    pub fn text(&self) -> &[u8] {
        &self.line.text
    }

    /// Whether retrying later may succeed: `[IN-USE]`, `[LOGIN-DELAY]`,
    /// `[SYS/TEMP]`. Everything else (including errors without a code) is
    /// treated as permanent.
    pub fn is_transient(&self) -> bool {
        self.code().is_some_and(ResponseCode::is_transient)
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("-ERR")?;
        if let Some(code) = self.code() {
            write!(f, " {code}")?;
        }
        if !self.text().is_empty() {
            write!(f, " {}", String::from_utf8_lossy(self.text()))?;
        }
        Ok(())
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ServerError {}

/// Why the session failed. Always followed by [`ClientEvent::Cancelled`] for
/// every unanswered command, [`ClientEvent::Closed`] and [`Action::Close`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The greeting was `-ERR`.
    GreetingRejected(ServerError),
    /// A reply line that must start with `+OK` or `-ERR` (or `+` during AUTH)
    /// does not: the session is out of step.
    BadResponse {
        /// What was wrong.
        error: ResponseError,
        /// The line, without its line end.
        line: Bytes,
    },
    /// A line was longer than the configured limit.
    LineTooLong {
        /// The limit in force.
        limit: usize,
    },
    /// Octets arrived after `+OK` to STLS, before the TLS handshake: a
    /// command-injection attempt. They were not interpreted.
    StlsInjection {
        /// How many octets were seen (at least).
        octets: usize,
    },
    /// The server sent a line while no command was outstanding.
    Unsolicited {
        /// The line, without its line end.
        line: Bytes,
    },
    /// `+OK` ended an AUTH exchange before the mechanism was done (e.g.
    /// before SCRAM could check the server's proof): the server is not
    /// trusted.
    AuthIncomplete {
        /// The `+OK` line.
        line: StatusLine,
    },
    /// The server closed the connection while a reply (or the greeting) was
    /// awaited.
    UnexpectedEof,
    /// No reply octet arrived within [`ClientConfig::reply_timeout`].
    Timeout,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::GreetingRejected(e) => write!(f, "server rejected the session: {e}"),
            ProtocolError::BadResponse { error, .. } => write!(f, "malformed reply: {error}"),
            ProtocolError::LineTooLong { limit } => {
                write!(f, "reply line longer than {limit} octets")
            }
            ProtocolError::StlsInjection { octets } => write!(
                f,
                "{octets} plaintext octets after +OK to STLS (possible command injection)"
            ),
            ProtocolError::Unsolicited { .. } => f.write_str("reply without a command"),
            ProtocolError::AuthIncomplete { .. } => {
                f.write_str("authentication ended before the server proved its identity")
            }
            ProtocolError::UnexpectedEof => f.write_str("server closed the connection"),
            ProtocolError::Timeout => f.write_str("timed out waiting for the server"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ProtocolError {}

/// Why a command will get no reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CancelReason {
    /// A command queued before it, which it relied on, failed (e.g. PASS
    /// before STAT); it was never written.
    PrecedingFailed {
        /// The command that failed.
        by: RequestId,
    },
    /// The session ended first. `sent`: the command was written, so the server
    /// may have acted on it (a DELE may be marked; still, nothing is removed
    /// without a QUIT that got its `+OK`).
    ConnectionClosed {
        /// Whether the command reached the wire.
        sent: bool,
    },
}

/// What happened, for the application.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// The server greeted with `+OK`; the session is in AUTHORIZATION.
    Greeting(Greeting),
    /// A single-line `+OK` (USER, PASS, APOP, AUTH, DELE, RSET, NOOP, QUIT,
    /// STLS, UTF8, `LANG tag`, unknown commands).
    Ok {
        /// The command.
        id: RequestId,
        /// The status line.
        line: StatusLine,
    },
    /// A `-ERR` reply.
    Err {
        /// The command.
        id: RequestId,
        /// The status line and its code.
        error: ServerError,
    },
    /// The reply to STAT.
    Stat {
        /// The command.
        id: RequestId,
        /// Count and size.
        reply: StatReply,
    },
    /// A listing (LIST, UIDL, bare LANG, bare AUTH) begins; entries follow.
    ListingStart {
        /// The command.
        id: RequestId,
        /// The `+OK` line.
        line: StatusLine,
    },
    /// A scan entry: one line of a LIST listing, or the reply to `LIST n`
    /// (then without `ListingStart`/`ListingEnd`).
    Scan {
        /// The command.
        id: RequestId,
        /// Message number and size.
        entry: ScanLine,
    },
    /// A unique-id entry: one line of a UIDL listing, or the reply to `UIDL n`.
    Uid {
        /// The command.
        id: RequestId,
        /// Message number and unique-id.
        entry: UidLine,
    },
    /// One language of a bare LANG listing.
    Language {
        /// The command.
        id: RequestId,
        /// Tag and description.
        entry: LangLine,
    },
    /// One mechanism of a bare AUTH listing.
    Mechanism {
        /// The command.
        id: RequestId,
        /// The mechanism.
        mechanism: Mechanism,
    },
    /// The listing is complete.
    ListingEnd {
        /// The command.
        id: RequestId,
    },
    /// The reply to CAPA, complete (also cached: [`Client::capabilities`]).
    Capabilities {
        /// The command.
        id: RequestId,
        /// The capabilities, in the server's order.
        list: Vec<Capability>,
    },
    /// `+OK` to RETR or TOP: the message follows in chunks.
    BodyStart {
        /// The command.
        id: RequestId,
        /// The `+OK` line (some servers give the size in octets).
        line: StatusLine,
    },
    /// Message octets, unstuffed, line ends as sent. A zero-copy slice of the
    /// input.
    BodyChunk {
        /// The command.
        id: RequestId,
        /// The octets.
        data: Bytes,
    },
    /// The message is complete (the terminating `.` line was read).
    BodyEnd {
        /// The command.
        id: RequestId,
    },
    /// A reply or a listing entry could not be parsed; the session stays in
    /// step (for a listing, the other entries still come). E.g. `+OK 7` to
    /// STAT, a LIST entry without size, a message number that does not
    /// exist or is not the one asked for.
    Malformed {
        /// The command.
        id: RequestId,
        /// The line, without its line end.
        line: Bytes,
        /// What was wrong.
        error: ResponseError,
    },
    /// Answering the server's SASL challenge needs slow local work (SCRAM's
    /// key derivation): run `work` where blocking is fine
    /// ([`SaslWork::run`], off the event loop), then give its result to
    /// [`Client::sasl_work_done`]. Until then the machine takes no input,
    /// writes nothing more and its reply timer is stopped.
    ///
    /// ```
    /// use pop3_proto::client::sasl::Scram;
    /// use pop3_proto::client::{Client, ClientConfig, ClientEvent};
    /// use pop3_proto::session::Action;
    /// use pop3_proto::time::Instant;
    /// use pop3_proto::types::Secret;
    ///
    /// let mut client = Client::new(ClientConfig::default(), Instant::ZERO);
    /// let _ = client.handle_input(Instant::ZERO, b"+OK ready\r\n");
    /// client
    ///     .auth(Box::new(Scram::sha256("user", Secret::new("pencil"), "rOprNGfwEbeRWgbNEkqO")))
    ///     .unwrap();
    /// while client.poll_action().is_some() {}
    /// // The RFC 7677 server-first message, base64.
    /// let _ = client.handle_input(Instant::ZERO, b"+ cj1yT3ByTkdmd0ViZVJXZ2JORWtxTyVodllEcFdVYTJSYVRDQWZ1eEZJbGopaE5sRiRrMCxzPVcyMlphSjBTTlk3c29Fc1VFamI2Z1E9PSxpPTQwOTY=\r\n");
    /// let Some(Action::Event(ClientEvent::SaslWork { work, .. })) = client.poll_action() else {
    ///     panic!("the key derivation is handed out");
    /// };
    /// assert_eq!(client.poll_action(), None); // nothing sent yet
    /// let done = std::thread::spawn(move || work.run()).join().unwrap();
    /// assert!(client.sasl_work_done(Instant::ZERO, done));
    /// assert!(matches!(client.poll_action(), Some(Action::Send(t)) if t.secret));
    /// ```
    SaslWork {
        /// The AUTH command.
        id: RequestId,
        /// The job.
        work: SaslWork,
    },
    /// The SASL mechanism could not answer a challenge: the exchange was
    /// cancelled (`*`); the server's `-ERR` follows as [`ClientEvent::Err`].
    SaslCancelled {
        /// The AUTH command.
        id: RequestId,
        /// Why.
        error: SaslError,
    },
    /// The command will get no reply.
    Cancelled {
        /// The command.
        id: RequestId,
        /// Why.
        reason: CancelReason,
    },
    /// The session failed (see [`ProtocolError`]); cancellations, `Closed` and
    /// [`Action::Close`] follow.
    Error(ProtocolError),
    /// The session is over: after `+OK` to QUIT, the end of the stream or an
    /// error. [`Action::Close`] follows.
    Closed,
}

impl ClientEvent {
    /// The command this event answers, or `None` for events about the whole
    /// session (greeting, protocol errors, close).
    ///
    /// ```
    /// use pop3_proto::client::ClientEvent;
    /// assert_eq!(ClientEvent::Closed.request_id(), None);
    /// ```
    pub fn request_id(&self) -> Option<RequestId> {
        match self {
            ClientEvent::Ok { id, .. }
            | ClientEvent::Err { id, .. }
            | ClientEvent::Stat { id, .. }
            | ClientEvent::ListingStart { id, .. }
            | ClientEvent::Scan { id, .. }
            | ClientEvent::Uid { id, .. }
            | ClientEvent::Language { id, .. }
            | ClientEvent::Mechanism { id, .. }
            | ClientEvent::ListingEnd { id }
            | ClientEvent::Capabilities { id, .. }
            | ClientEvent::BodyStart { id, .. }
            | ClientEvent::BodyChunk { id, .. }
            | ClientEvent::BodyEnd { id }
            | ClientEvent::Malformed { id, .. }
            | ClientEvent::SaslWork { id, .. }
            | ClientEvent::SaslCancelled { id, .. }
            | ClientEvent::Cancelled { id, .. } => Some(*id),
            ClientEvent::Greeting(_) | ClientEvent::Error(_) | ClientEvent::Closed => None,
        }
    }
}

/// Why a command was refused before reaching the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientError {
    /// The command is not valid in the state the session will be in when it
    /// is sent (assuming the commands already queued succeed).
    WrongState {
        /// The command's keyword.
        command: &'static str,
        /// That state.
        state: ClientState,
    },
    /// APOP needs the greeting's timestamp, and there is none (not received
    /// yet, absent, or malformed: no digest is ever computed over a
    /// malformed one).
    NoApopTimestamp,
    /// STLS on a connection already protected by TLS (or with STLS queued).
    TlsActive,
    /// A clear-text login without TLS (see
    /// [`ClientConfig::insecure_cleartext_login`]).
    CleartextRefused,
    /// STLS after UTF8 was issued (RFC 6856 §3 forbids it: negotiate TLS
    /// first).
    StlsAfterUtf8,
    /// The session is closed, or QUIT is queued.
    Closed,
    /// An argument is not valid (a user name with a space, a password with a
    /// line end, ...).
    InvalidArgument(InvalidValue),
    /// This command cannot be sent this way (AUTH goes through
    /// [`Client::auth`]).
    Unsupported {
        /// The command's keyword.
        command: &'static str,
    },
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::WrongState { command, state } => {
                write!(f, "{command} is not valid in state {state:?}")
            }
            ClientError::NoApopTimestamp => f.write_str("the greeting has no valid APOP timestamp"),
            ClientError::TlsActive => f.write_str("TLS is already active"),
            ClientError::StlsAfterUtf8 => f.write_str("STLS is not allowed after UTF8"),
            ClientError::CleartextRefused => {
                f.write_str("clear-text login refused on a connection without TLS")
            }
            ClientError::Closed => f.write_str("the session is closed or closing"),
            ClientError::InvalidArgument(e) => write!(f, "invalid argument: {e}"),
            ClientError::Unsupported { command } => {
                write!(f, "{command} cannot be sent with Client::send")
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ClientError {}

/// What a command is, for the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Capa,
    Stls,
    User,
    Pass,
    Apop,
    Auth,
    AuthList,
    Stat,
    List(Option<MessageNumber>),
    Uidl(Option<MessageNumber>),
    Retr,
    Top,
    Dele,
    Rset,
    Noop,
    Quit,
    Utf8,
    LangList,
    LangSet,
    Other,
}

impl Op {
    fn of(cmd: &Command) -> Op {
        match cmd {
            Command::User(_) => Op::User,
            Command::Pass(_) => Op::Pass,
            Command::Apop { .. } => Op::Apop,
            Command::Auth { .. } => Op::Auth,
            Command::AuthList => Op::AuthList,
            Command::Stat => Op::Stat,
            Command::List(n) => Op::List(*n),
            Command::Retr(_) => Op::Retr,
            Command::Dele(_) => Op::Dele,
            Command::Noop => Op::Noop,
            Command::Rset => Op::Rset,
            Command::Quit => Op::Quit,
            Command::Top { .. } => Op::Top,
            Command::Uidl(n) => Op::Uidl(*n),
            Command::Capa => Op::Capa,
            Command::Stls => Op::Stls,
            Command::Utf8 => Op::Utf8,
            Command::Lang(LangRequest::List) => Op::LangList,
            Command::Lang(_) => Op::LangSet,
            _ => Op::Other,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Op::Capa => "CAPA",
            Op::Stls => "STLS",
            Op::User => "USER",
            Op::Pass => "PASS",
            Op::Apop => "APOP",
            Op::Auth | Op::AuthList => "AUTH",
            Op::Stat => "STAT",
            Op::List(_) => "LIST",
            Op::Uidl(_) => "UIDL",
            Op::Retr => "RETR",
            Op::Top => "TOP",
            Op::Dele => "DELE",
            Op::Rset => "RSET",
            Op::Noop => "NOOP",
            Op::Quit => "QUIT",
            Op::Utf8 => "UTF8",
            Op::LangList | Op::LangSet => "LANG",
            Op::Other => "(unknown)",
        }
    }

    /// Nothing is written after it until it is answered.
    fn is_barrier(self) -> bool {
        matches!(self, Op::Stls | Op::Auth | Op::Quit)
    }

    /// Its failure cancels the commands queued after it.
    fn gates_queue(self) -> bool {
        matches!(self, Op::User | Op::Pass | Op::Apop | Op::Auth | Op::Stls)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Authorization,
    Transaction,
    Closing,
}

/// The state the session reaches if every queued command succeeds.
#[derive(Debug, Clone, Copy)]
struct Projection {
    phase: Phase,
    /// A USER is (or will have been) accepted, so PASS may follow.
    user: bool,
    tls: bool,
}

impl Projection {
    fn apply(&mut self, op: Op) {
        match op {
            Op::User => self.user = true,
            Op::Pass | Op::Apop | Op::Auth => {
                self.phase = Phase::Transaction;
                self.user = false;
            }
            Op::Stls => {
                self.tls = true;
                self.user = false;
            }
            Op::Quit => self.phase = Phase::Closing,
            _ => {}
        }
    }

    fn state(&self) -> ClientState {
        match self.phase {
            Phase::Authorization => ClientState::Authorization,
            Phase::Transaction => ClientState::Transaction,
            Phase::Closing => ClientState::Closed,
        }
    }
}

struct Queued {
    id: RequestId,
    op: Op,
    line: Bytes,
    secret: bool,
    mechanism: Option<BoxedMechanism>,
    deferred_ir: Option<Secret>,
}

impl fmt::Debug for Queued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The line of a PASS or APOP must not show in logs.
        let line = Transmit {
            bytes: self.line.clone(),
            secret: self.secret,
        };
        f.debug_struct("Queued")
            .field("id", &self.id)
            .field("op", &self.op)
            .field("line", &line)
            .field("mechanism", &self.mechanism)
            .finish()
    }
}

#[derive(Debug)]
struct InFlight {
    id: RequestId,
    op: Op,
    len: usize,
    mechanism: Option<BoxedMechanism>,
    deferred_ir: Option<Secret>,
    /// Server challenges answered so far (AUTH).
    challenges: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListKind {
    Scan,
    Uid,
    Lang,
    Mechanism,
}

/// Where the reply to the front in-flight command is.
#[derive(Debug)]
enum Rx {
    /// Its first line.
    First,
    /// Inside a listing.
    Listing(ListKind),
    /// Inside a CAPA listing.
    Capa(Vec<Capability>),
    /// Inside a message body.
    Body(Box<BodyDecoder>),
}

/// The octets the input buffer grows by when it is full (at most
/// [`ClientConfig::read_buffer`]): a body is handed out in parts of these
/// blocks, so each read must not need a fresh allocation.
const RX_BLOCK: usize = 32 * 1024;

/// The sans-IO POP3 client session. See the [module docs](self).
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    state: ClientState,
    tls: bool,
    /// The `tls-exporter` channel binding, when the adapter passed it.
    tls_exporter: Option<[u8; 32]>,
    user_accepted: bool,
    utf8: bool,
    greeting: Option<Greeting>,
    capabilities: Option<Vec<Capability>>,
    message_count: Option<u32>,
    deleted: u32,
    next_id: u64,
    pending: VecDeque<Queued>,
    in_flight: VecDeque<InFlight>,
    in_flight_bytes: usize,
    /// The window filled up: no command is written until half of it is
    /// answered.
    window_full: bool,
    projection: Projection,
    /// Input not parsed yet. Multi-line bodies are split off it without a
    /// copy, so the events hold parts of its blocks.
    rx: BytesMut,
    rx_state: Rx,
    actions: VecDeque<Action<ClientEvent>>,
    now: Instant,
    timer_base: Instant,
    /// Buffered input was parsed while the application drained actions,
    /// after the last `now` it gave: the reply timer restarts at the next
    /// `handle_*` call (the server was not silent, the application was busy).
    parsed_since_clock: bool,
    /// The server closed the stream: nothing more is written.
    eof: bool,
    /// The SASL work handed out and not yet done (its tag): input waits.
    sasl_work: Option<u64>,
    /// The tag of the next SASL work (0 is work the machine did not hand
    /// out, never taken).
    next_sasl_work: u64,
}

impl Client {
    /// A session on a fresh connection; the first thing expected is the
    /// server greeting (after the TLS handshake, for implicit TLS).
    pub fn new(mut config: ClientConfig, now: Instant) -> Client {
        let l = &config.limits;
        let longest = l
            .response_line
            .max(l.listing_line)
            .max(l.sasl_line)
            .saturating_add(1);
        config.read_buffer = config.read_buffer.max(longest);
        config.max_queued_actions = config.max_queued_actions.max(4);
        config.max_in_flight = config.max_in_flight.max(1);
        let tls = config.tls_active;
        Client {
            config,
            state: ClientState::Greeting,
            tls,
            tls_exporter: None,
            user_accepted: false,
            utf8: false,
            greeting: None,
            capabilities: None,
            message_count: None,
            deleted: 0,
            next_id: 0,
            pending: VecDeque::new(),
            in_flight: VecDeque::new(),
            in_flight_bytes: 0,
            window_full: false,
            eof: false,
            projection: Projection {
                phase: Phase::Authorization,
                user: false,
                tls,
            },
            rx: BytesMut::new(),
            rx_state: Rx::First,
            actions: VecDeque::new(),
            now,
            timer_base: now,
            parsed_since_clock: false,
            sasl_work: None,
            next_sasl_work: 1,
        }
    }

    // ----- driving -----

    fn clock(&mut self, now: Instant) {
        self.now = now;
        if self.parsed_since_clock {
            self.parsed_since_clock = false;
            self.timer_base = now;
        }
    }

    /// Bytes read from the server. Returns how many were taken: fewer than
    /// offered when the action queue is full (drain it, then offer the rest
    /// again), none while SASL work is out ([`ClientEvent::SaslWork`]).
    /// After the session closed, everything is taken and ignored.
    #[must_use = "octets not taken must be offered again"]
    pub fn handle_input(&mut self, now: Instant, input: &[u8]) -> usize {
        self.clock(now);
        if self.sasl_work.is_some() && self.state != ClientState::Closed {
            return 0;
        }
        match self.state {
            ClientState::Closed => return input.len(),
            ClientState::TlsHandshake => {
                if !input.is_empty() {
                    self.fatal(ProtocolError::StlsInjection {
                        octets: input.len(),
                    });
                }
                return input.len();
            }
            _ => {}
        }
        self.process();
        if self.actions.len() >= self.config.max_queued_actions {
            return 0;
        }
        let room = self.config.read_buffer.saturating_sub(self.rx.len());
        let take = room.min(input.len());
        if take == 0 {
            return 0;
        }
        if self.rx.capacity() - self.rx.len() < take {
            // Body chunks handed out still share the old block: a fresh one
            // of RX_BLOCK octets takes many reads, not one allocation each.
            self.rx
                .reserve(take.max(RX_BLOCK.min(self.config.read_buffer)));
        }
        self.rx.extend_from_slice(&input[..take]);
        self.timer_base = now;
        self.process();
        match self.state {
            ClientState::Closed => input.len(),
            ClientState::TlsHandshake if take < input.len() => {
                self.fatal(ProtocolError::StlsInjection {
                    octets: input.len() - take,
                });
                input.len()
            }
            _ => take,
        }
    }

    /// The server closed its side of the connection.
    pub fn handle_eof(&mut self, now: Instant) {
        self.clock(now);
        if self.state == ClientState::Closed {
            return;
        }
        // Nothing is written after the end of the stream: replies still
        // buffered complete their commands, queued ones end unsent.
        self.eof = true;
        // A reply may be complete in the buffer but unparsed (backpressure):
        // its events come first.
        self.process_unbounded();
        if self.state == ClientState::Closed {
            return;
        }
        // A body cut short right after `.` CR (a known server bug) is
        // complete; anything else unfinished is lost.
        if let (Rx::Body(decoder), true) = (&mut self.rx_state, self.rx.is_empty()) {
            if decoder.decode_eof().is_ok() {
                let (id, _) = self.front();
                self.emit(ClientEvent::BodyEnd { id });
                self.finish();
            }
        }
        if self.state == ClientState::Greeting
            || self.state == ClientState::TlsHandshake
            || !self.in_flight.is_empty()
            || !self.rx.is_empty()
        {
            self.fatal(ProtocolError::UnexpectedEof);
        } else {
            self.close();
        }
    }

    /// Time passed; call when [`Client::poll_timeout`] is reached.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.clock(now);
        if self.poll_timeout().is_some_and(|deadline| now >= deadline) {
            // A body whose last line is `.` CR with no LF after it: the
            // server is not going to send the LF (a known server bug).
            if matches!(&self.rx_state, Rx::Body(decoder) if decoder.is_terminator_pending())
                && self.rx.is_empty()
            {
                let (id, _) = self.front();
                self.emit(ClientEvent::BodyEnd { id });
                self.finish();
                return;
            }
            self.fatal(ProtocolError::Timeout);
        }
    }

    /// The TLS handshake requested by [`Action::StartTls`] completed; the
    /// session resumes in AUTHORIZATION over TLS.
    pub fn handle_tls_established(&mut self, now: Instant) {
        self.clock(now);
        if self.state == ClientState::TlsHandshake {
            self.state = ClientState::Authorization;
            self.tls = true;
            self.timer_base = now;
            self.auto_capa();
            self.flush();
        }
    }

    /// The result of the work of [`ClientEvent::SaslWork`]: the mechanism
    /// answers the challenge with it, the answer is written (the reply timer
    /// restarts now), and input is taken again. Returns whether the result
    /// was used: a result of work this session is no longer waiting for
    /// (the session closed, or it was already given) is ignored.
    ///
    /// ```
    /// use pop3_proto::client::sasl::SaslWork;
    /// use pop3_proto::client::{Client, ClientConfig};
    /// use pop3_proto::time::Instant;
    /// use pop3_proto::types::Secret;
    /// let mut client = Client::new(ClientConfig::default(), Instant::ZERO);
    /// let stray = SaslWork::new(|| Secret::new("key")).run();
    /// assert!(!client.sasl_work_done(Instant::ZERO, stray));
    /// ```
    pub fn sasl_work_done(&mut self, now: Instant, done: SaslWorkDone) -> bool {
        self.clock(now);
        if self.state == ClientState::Closed || self.sasl_work != Some(done.tag()) {
            return false;
        }
        self.sasl_work = None;
        let Some(f) = self.in_flight.front_mut() else {
            return false;
        };
        let id = f.id;
        let answer = match f.mechanism.as_mut() {
            Some(m) => m.finish_step(done),
            None => Err(SaslError::UnexpectedChallenge),
        };
        self.sasl_respond(id, answer);
        self.process();
        true
    }

    /// Whether SASL work was handed out ([`ClientEvent::SaslWork`]) and its
    /// result not yet given to [`Client::sasl_work_done`].
    pub fn sasl_work_pending(&self) -> bool {
        self.sasl_work.is_some()
    }

    /// The next thing to do. Drain after every `handle_*` and command call.
    #[must_use = "every action must be performed"]
    pub fn poll_action(&mut self) -> Option<Action<ClientEvent>> {
        let action = self.actions.pop_front();
        if !self.rx.is_empty() && self.actions.len() < self.config.max_queued_actions {
            let before = self.rx.len();
            self.process();
            self.parsed_since_clock |= self.rx.len() != before;
        }
        action
    }

    /// The application spent the time since the last reply on work of its
    /// own: the reply timeout of the commands in flight counts from `now`
    /// (an octet the server sent meanwhile may be waiting unread).
    pub fn restart_reply_timer(&mut self, now: Instant) {
        self.clock(now);
        if !self.in_flight.is_empty() {
            self.timer_base = now;
        }
    }

    /// When [`Client::handle_timeout`] must be called next, if a reply (or
    /// the greeting, or the TLS handshake) is awaited. None while SASL work
    /// is out: the server waits for us then.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let timeout = self.config.reply_timeout?;
        if self.sasl_work.is_some() {
            return None;
        }
        let waiting = match self.state {
            ClientState::Greeting | ClientState::TlsHandshake => true,
            ClientState::Closed => false,
            _ => !self.in_flight.is_empty(),
        };
        waiting.then(|| self.timer_base + timeout)
    }

    // ----- inspection -----

    /// The current state (as confirmed by the server's replies so far).
    pub fn state(&self) -> ClientState {
        match self.in_flight.front() {
            Some(f) if f.op == Op::Auth && self.state == ClientState::Authorization => {
                ClientState::Authenticating
            }
            _ => self.state,
        }
    }

    /// The cached capabilities from the last successful CAPA, if still valid.
    pub fn capabilities(&self) -> Option<&[Capability]> {
        self.capabilities.as_deref()
    }

    /// The greeting, once received.
    pub fn greeting(&self) -> Option<&Greeting> {
        self.greeting.as_ref()
    }

    /// The greeting's APOP timestamp, only if present and valid.
    pub fn apop_timestamp(&self) -> Option<&ApopTimestamp> {
        self.greeting.as_ref()?.timestamp.as_ref()
    }

    /// Whether commands are currently pipelined.
    pub fn pipelining_active(&self) -> bool {
        self.config.pipelining
            && self
                .capabilities
                .as_ref()
                .is_some_and(|c| c.contains(&Capability::Pipelining))
    }

    /// The `tls-exporter` channel binding of the TLS connection (RFC 9266:
    /// the exporter with label "EXPORTER-Channel-Binding", an empty context,
    /// 32 octets), which the adapter passes after a TLS 1.3 handshake:
    /// SCRAM-SHA-256-PLUS binds to it.
    ///
    /// ```
    /// use pop3_proto::client::{Client, ClientConfig};
    /// use pop3_proto::time::Instant;
    /// let mut client = Client::new(ClientConfig::default(), Instant::ZERO);
    /// client.set_tls_exporter(Some([7; 32]));
    /// assert_eq!(client.tls_exporter(), Some(&[7; 32]));
    /// ```
    pub fn set_tls_exporter(&mut self, value: Option<[u8; 32]>) {
        self.tls_exporter = value;
    }

    /// The channel binding set by [`Client::set_tls_exporter`].
    pub fn tls_exporter(&self) -> Option<&[u8; 32]> {
        self.tls_exporter.as_ref()
    }

    /// Whether TLS protects the connection (implicit, or after STLS).
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Whether the server accepted UTF8 (RFC 6856).
    pub fn is_utf8(&self) -> bool {
        self.utf8
    }

    /// The highest message number of the maildrop, as learned from the last
    /// STAT reply (its count plus the messages marked deleted by then, which
    /// keep their numbers), used to check listing entries.
    pub fn message_count(&self) -> Option<u32> {
        self.message_count
    }

    /// Commands queued or written and not yet answered.
    pub fn outstanding(&self) -> usize {
        self.pending.len() + self.in_flight.len()
    }

    /// The id the next queued command will get.
    pub fn next_request_id(&self) -> RequestId {
        RequestId(self.next_id)
    }

    /// Whether a CAPA (asked for, or queued by [`ClientConfig::auto_capa`])
    /// is queued or awaiting its reply: the capabilities are about to change.
    pub fn capa_pending(&self) -> bool {
        self.pending.iter().any(|q| q.op == Op::Capa)
            || self.in_flight.iter().any(|f| f.op == Op::Capa)
    }

    /// The configuration in force (with its minimums applied).
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    // ----- commands -----

    /// `CAPA` (RFC 2449): answered by [`ClientEvent::Capabilities`] or, when
    /// the server has no CAPA, [`ClientEvent::Err`].
    pub fn capa(&mut self) -> Result<RequestId, ClientError> {
        self.send(Command::Capa)
    }

    /// `STLS` (RFC 2595): on `+OK`, [`Action::StartTls`] follows.
    pub fn stls(&mut self) -> Result<RequestId, ClientError> {
        self.send(Command::Stls)
    }

    /// `USER name`.
    pub fn user(&mut self, name: &str) -> Result<RequestId, ClientError> {
        let name = Username::new(name).map_err(ClientError::InvalidArgument)?;
        self.send(Command::User(name))
    }

    /// `PASS password` (written with [`Transmit::secret`] set).
    pub fn pass(&mut self, password: Secret) -> Result<RequestId, ClientError> {
        let password =
            Password::new(password.expose_bytes()).map_err(ClientError::InvalidArgument)?;
        self.send(Command::Pass(password))
    }

    /// `USER` then `PASS`, in one write when pipelining. Returns both ids.
    ///
    /// (The connection layer's [`task::Login`] sends PASS only after
    /// USER's `+OK`; see there why.)
    pub fn login(
        &mut self,
        user: &str,
        password: Secret,
    ) -> Result<(RequestId, RequestId), ClientError> {
        let (name, password) = self.check_login(user, &password)?;
        let u = self.send(Command::User(name))?;
        let p = self.send(Command::Pass(password))?;
        Ok((u, p))
    }

    /// Whether `USER user` and then `PASS password` may be sent now (the
    /// state, the clear-text policy, the arguments), without sending them:
    /// the validated arguments.
    pub(crate) fn check_login(
        &self,
        user: &str,
        password: &Secret,
    ) -> Result<(Username, Password), ClientError> {
        let name = Username::new(user).map_err(ClientError::InvalidArgument)?;
        let password =
            Password::new(password.expose_bytes()).map_err(ClientError::InvalidArgument)?;
        self.check(Op::User, false)?;
        let mut after = self.projection;
        after.apply(Op::User);
        self.check_with(&after, Op::Pass, false)?;
        Ok((name, password))
    }

    /// `APOP name digest`, the digest computed from the greeting's validated
    /// timestamp and `secret`.
    pub fn apop(&mut self, user: &str, secret: &Secret) -> Result<RequestId, ClientError> {
        let name = Username::new(user).map_err(ClientError::InvalidArgument)?;
        let timestamp = self.apop_timestamp().ok_or(ClientError::NoApopTimestamp)?;
        let digest = ApopDigest::compute(timestamp, secret.expose());
        self.send(Command::Apop { name, digest })
    }

    /// `AUTH mechanism` (RFC 5034), run by `mechanism`. The initial response
    /// goes on the AUTH line when it fits
    /// [`ClientConfig::initial_response_limit`].
    pub fn auth(&mut self, mut mechanism: BoxedMechanism) -> Result<RequestId, ClientError> {
        self.check(Op::Auth, mechanism.is_cleartext())?;
        let name = mechanism.name();
        let ir = mechanism.initial_response();
        let has_ir = ir.is_some();
        let mut line = encode(&Command::Auth {
            mechanism: name.clone(),
            initial_response: ir.clone(),
        });
        let mut deferred_ir = None;
        if ir.is_some() && line.len() > self.config.initial_response_limit {
            deferred_ir = ir;
            line = encode(&Command::Auth {
                mechanism: name,
                initial_response: None,
            });
        }
        check_line(&line)?;
        let secret = has_ir && deferred_ir.is_none();
        Ok(self.enqueue(Op::Auth, line, secret, Some(mechanism), deferred_ir))
    }

    /// `STAT`.
    pub fn stat(&mut self) -> Result<RequestId, ClientError> {
        self.send(Command::Stat)
    }

    /// `LIST` (a listing of [`ClientEvent::Scan`]) or `LIST n` (one
    /// [`ClientEvent::Scan`]).
    pub fn list(&mut self, msg: Option<MessageNumber>) -> Result<RequestId, ClientError> {
        self.send(Command::List(msg))
    }

    /// `UIDL` (a listing of [`ClientEvent::Uid`]) or `UIDL n` (one
    /// [`ClientEvent::Uid`]).
    pub fn uidl(&mut self, msg: Option<MessageNumber>) -> Result<RequestId, ClientError> {
        self.send(Command::Uidl(msg))
    }

    /// `RETR n`: the message as body events.
    pub fn retr(&mut self, msg: MessageNumber) -> Result<RequestId, ClientError> {
        self.send(Command::Retr(msg))
    }

    /// `TOP n lines`: the header and `lines` body lines as body events.
    pub fn top(&mut self, msg: MessageNumber, lines: u64) -> Result<RequestId, ClientError> {
        self.send(Command::Top { msg, lines })
    }

    /// `DELE n`.
    pub fn dele(&mut self, msg: MessageNumber) -> Result<RequestId, ClientError> {
        self.send(Command::Dele(msg))
    }

    /// `RSET`.
    pub fn rset(&mut self) -> Result<RequestId, ClientError> {
        self.send(Command::Rset)
    }

    /// `NOOP`.
    pub fn noop(&mut self) -> Result<RequestId, ClientError> {
        self.send(Command::Noop)
    }

    /// `QUIT`. After `+OK` the session closes; nothing may be queued after it.
    pub fn quit(&mut self) -> Result<RequestId, ClientError> {
        self.send(Command::Quit)
    }

    /// `UTF8` (RFC 6856).
    pub fn utf8(&mut self) -> Result<RequestId, ClientError> {
        self.send(Command::Utf8)
    }

    /// `LANG`, `LANG *` or `LANG tag` (RFC 6856).
    pub fn lang(&mut self, request: LangRequest) -> Result<RequestId, ClientError> {
        self.send(Command::Lang(request))
    }

    /// Any command but AUTH (see [`Client::auth`]). Commands this crate does
    /// not know are allowed in both states and expected to have a single-line
    /// reply.
    pub fn send(&mut self, cmd: Command) -> Result<RequestId, ClientError> {
        let op = Op::of(&cmd);
        if op == Op::Auth {
            return Err(ClientError::Unsupported { command: "AUTH" });
        }
        self.check(op, false)?;
        let line = encode(&cmd);
        check_line(&line)?;
        Ok(self.enqueue(op, line, cmd.is_secret(), None, None))
    }

    // ----- internals: queueing and writing -----

    fn check(&self, op: Op, cleartext_mechanism: bool) -> Result<(), ClientError> {
        self.check_with(&self.projection, op, cleartext_mechanism)
    }

    /// [`Client::check`] against the projected state `p` (the state once
    /// the queued commands are answered).
    fn check_with(
        &self,
        p: &Projection,
        op: Op,
        cleartext_mechanism: bool,
    ) -> Result<(), ClientError> {
        if self.state == ClientState::Closed || p.phase == Phase::Closing {
            return Err(ClientError::Closed);
        }
        let p = *p;
        let ok = match op {
            Op::Capa | Op::LangList | Op::LangSet | Op::Other | Op::Quit => true,
            Op::User | Op::Apop | Op::Auth | Op::AuthList | Op::Utf8 => {
                p.phase == Phase::Authorization
            }
            Op::Pass => p.phase == Phase::Authorization && p.user,
            Op::Stls => {
                if p.tls {
                    return Err(ClientError::TlsActive);
                }
                // RFC 6856 §3: no STLS once UTF8 was issued.
                if self.utf8
                    || self.pending.iter().any(|q| q.op == Op::Utf8)
                    || self.in_flight.iter().any(|f| f.op == Op::Utf8)
                {
                    return Err(ClientError::StlsAfterUtf8);
                }
                p.phase == Phase::Authorization
            }
            Op::Stat
            | Op::List(_)
            | Op::Uidl(_)
            | Op::Retr
            | Op::Top
            | Op::Dele
            | Op::Rset
            | Op::Noop => p.phase == Phase::Transaction,
        };
        if !ok {
            return Err(ClientError::WrongState {
                command: op.name(),
                state: p.state(),
            });
        }
        let cleartext = cleartext_mechanism || matches!(op, Op::User | Op::Pass);
        if cleartext && !self.config.insecure_cleartext_login && !p.tls {
            return Err(ClientError::CleartextRefused);
        }
        Ok(())
    }

    fn enqueue(
        &mut self,
        op: Op,
        line: Bytes,
        secret: bool,
        mechanism: Option<BoxedMechanism>,
        deferred_ir: Option<Secret>,
    ) -> RequestId {
        let id = RequestId(self.next_id);
        self.next_id += 1;
        self.projection.apply(op);
        self.pending.push_back(Queued {
            id,
            op,
            line,
            secret,
            mechanism,
            deferred_ir,
        });
        self.flush();
        id
    }

    /// With [`ClientConfig::auto_capa`] and a server that pipelines: the
    /// CAPA that re-reads the capabilities after the login goes in the same
    /// write as the PASS or APOP being written, instead of one round trip
    /// after its `+OK`. CAPA is valid in every state (RFC 2449 §5): when
    /// the login succeeds, the server answers it in TRANSACTION with the
    /// capabilities after login; when the login fails, in AUTHORIZATION
    /// with those before it (and the cached list is then simply read
    /// again). Replies are matched in order either way, and the login's
    /// `+OK` queues no second CAPA while this one is outstanding. AUTH is a
    /// barrier (its exchange may take several lines), so after AUTH the
    /// CAPA still waits for the `+OK`.
    fn capa_behind_login(&mut self) {
        self.capa_first();
    }

    /// With [`ClientConfig::auto_capa`]: CAPA ahead of everything not yet
    /// written.
    fn auto_capa(&mut self) {
        if !self.config.auto_capa || self.projection.phase == Phase::Closing {
            return;
        }
        self.capa_first();
    }

    /// Queues a CAPA ahead of everything not yet written.
    fn capa_first(&mut self) {
        let id = RequestId(self.next_id);
        self.next_id += 1;
        self.pending.push_front(Queued {
            id,
            op: Op::Capa,
            line: encode(&Command::Capa),
            secret: false,
            mechanism: None,
            deferred_ir: None,
        });
    }

    /// Writes what the window allows.
    fn flush(&mut self) {
        if self.eof
            || !matches!(
                self.state,
                ClientState::Authorization | ClientState::Transaction
            )
        {
            return;
        }
        let pipelining = self.pipelining_active();
        let window = if pipelining {
            self.config.max_in_flight
        } else {
            1
        };
        if self.window_full {
            // A full window is refilled once half of it is answered, not
            // one command per reply: a stream of RETRs then goes out a
            // batch per write (one system call and one wake-up of the
            // server each), while the server still has half a window of
            // commands to work on.
            if self.in_flight.len() > window / 2
                || self.in_flight_bytes > self.config.max_in_flight_bytes / 2
            {
                return;
            }
            self.window_full = false;
        }
        while let Some(next) = self.pending.front() {
            if let Some(last) = self.in_flight.back() {
                if last.op.is_barrier() {
                    break;
                }
                if self.in_flight.len() >= window
                    || self.in_flight_bytes + next.line.len() > self.config.max_in_flight_bytes
                {
                    self.window_full = true;
                    break;
                }
            }
            let Some(q) = self.pending.pop_front() else {
                break;
            };
            if matches!(q.op, Op::Pass | Op::Apop) && self.config.auto_capa && pipelining {
                // Next in line, right behind the login command.
                self.capa_behind_login();
            }
            if self.in_flight.is_empty() {
                self.timer_base = self.now;
            }
            self.in_flight_bytes += q.line.len();
            self.in_flight.push_back(InFlight {
                id: q.id,
                op: q.op,
                len: q.line.len(),
                mechanism: q.mechanism,
                deferred_ir: q.deferred_ir,
                challenges: 0,
            });
            self.actions.push_back(Action::Send(Transmit {
                bytes: q.line,
                secret: q.secret,
            }));
        }
    }

    fn emit(&mut self, event: ClientEvent) {
        self.actions.push_back(Action::Event(event));
    }

    /// The front command's reply is complete.
    fn finish(&mut self) {
        if let Some(f) = self.in_flight.pop_front() {
            self.in_flight_bytes = self.in_flight_bytes.saturating_sub(f.len);
        }
        self.rx_state = Rx::First;
        self.timer_base = self.now;
        self.flush();
    }

    /// Drops every unsent command after `by` failed, and recomputes the
    /// projection from what the server confirmed and what is in flight.
    fn cancel_pending(&mut self, by: RequestId) {
        while let Some(q) = self.pending.pop_front() {
            self.emit(ClientEvent::Cancelled {
                id: q.id,
                reason: CancelReason::PrecedingFailed { by },
            });
        }
        let mut p = Projection {
            phase: match self.state {
                ClientState::Transaction => Phase::Transaction,
                ClientState::Closed => Phase::Closing,
                _ => Phase::Authorization,
            },
            user: self.user_accepted,
            tls: self.tls || self.state == ClientState::TlsHandshake,
        };
        for f in &self.in_flight {
            p.apply(f.op);
        }
        self.projection = p;
    }

    fn fatal(&mut self, error: ProtocolError) {
        if self.state == ClientState::Closed {
            return;
        }
        self.emit(ClientEvent::Error(error));
        self.close();
    }

    /// Ends the session: cancels what is left, `Closed`, `Close`.
    fn close(&mut self) {
        while let Some(f) = self.in_flight.pop_front() {
            self.emit(ClientEvent::Cancelled {
                id: f.id,
                reason: CancelReason::ConnectionClosed { sent: true },
            });
        }
        while let Some(q) = self.pending.pop_front() {
            self.emit(ClientEvent::Cancelled {
                id: q.id,
                reason: CancelReason::ConnectionClosed { sent: false },
            });
        }
        self.in_flight_bytes = 0;
        self.window_full = false;
        self.sasl_work = None;
        self.state = ClientState::Closed;
        self.projection.phase = Phase::Closing;
        self.rx.clear();
        self.rx_state = Rx::First;
        self.emit(ClientEvent::Closed);
        self.actions.push_back(Action::Close);
    }

    // ----- internals: reading -----

    fn active(&self) -> bool {
        !matches!(self.state, ClientState::Closed | ClientState::TlsHandshake)
            && self.sasl_work.is_none()
    }

    /// Parses buffered input while the action queue has room.
    fn process(&mut self) {
        while self.active()
            && !self.rx.is_empty()
            && self.actions.len() < self.config.max_queued_actions
        {
            if !self.step() {
                break;
            }
        }
    }

    fn process_unbounded(&mut self) {
        while self.active() && !self.rx.is_empty() {
            if !self.step() {
                break;
            }
        }
    }

    /// Takes the next complete line (with its line end) and the length of
    /// its content; `None` when incomplete (or the session failed).
    fn take_line(&mut self, limit: usize) -> Option<(Bytes, usize)> {
        match find_line(&self.rx, limit) {
            Ok(Some((len, consumed))) => Some((self.rx.split_to(consumed).freeze(), len)),
            Ok(None) => None,
            Err(LineError::TooLong { limit }) => {
                self.fatal(ProtocolError::LineTooLong { limit });
                None
            }
        }
    }

    /// One parsing step; `false` when more input is needed.
    fn step(&mut self) -> bool {
        if self.state == ClientState::Greeting {
            return self.read_greeting();
        }
        if self.in_flight.is_empty() {
            if let Some((full, len)) = self.take_line(self.config.limits.response_line) {
                self.fatal(ProtocolError::Unsolicited {
                    line: full.slice(..len),
                });
            }
            return false;
        }
        match &self.rx_state {
            Rx::First => self.read_first(),
            Rx::Listing(kind) => {
                let kind = *kind;
                self.read_listing(kind)
            }
            Rx::Capa(_) => self.read_capa(),
            Rx::Body(_) => self.read_body(),
        }
    }

    fn read_greeting(&mut self) -> bool {
        let Some((full, len)) = self.take_line(self.config.limits.response_line) else {
            return false;
        };
        match wire::first_line(Expected::Greeting, &full, &self.config.limits) {
            Ok(Response::Greeting(g)) => {
                self.state = ClientState::Authorization;
                self.greeting = Some(g.clone());
                self.emit(ClientEvent::Greeting(g));
                self.timer_base = self.now;
                self.auto_capa();
                self.flush();
            }
            Ok(Response::Status(line)) if line.status == Status::Err => {
                self.fatal(ProtocolError::GreetingRejected(ServerError { line }));
            }
            Ok(_) => self.fatal(ProtocolError::BadResponse {
                error: ResponseError::BadStatus,
                line: full.slice(..len),
            }),
            Err(error) => self.fatal(ProtocolError::BadResponse {
                error,
                line: full.slice(..len),
            }),
        }
        true
    }

    fn front(&self) -> (RequestId, Op) {
        let f = self.in_flight.front().expect("a command is in flight");
        (f.id, f.op)
    }

    fn read_first(&mut self) -> bool {
        let (id, op) = self.front();
        let limit = if op == Op::Auth {
            self.config.limits.sasl_line
        } else {
            self.config.limits.response_line
        };
        let Some((full, len)) = self.take_line(limit) else {
            return false;
        };
        if op == Op::Auth && is_continuation(&full[..len]) {
            self.sasl_challenge(id, full, len);
            return true;
        }
        let line = match wire::status(&full[..len]) {
            Ok(line) => line,
            Err(error) => {
                self.fatal(ProtocolError::BadResponse {
                    error,
                    line: full.slice(..len),
                });
                return true;
            }
        };
        if line.status == Status::Err {
            self.reply_err(id, op, line);
            return true;
        }
        match op {
            Op::Stat => {
                match wire::first_line(Expected::Stat, &full, &self.config.limits) {
                    Ok(Response::Stat(reply)) => {
                        // STAT does not count messages marked deleted, but
                        // they keep their numbers.
                        self.message_count = Some(reply.count.saturating_add(self.deleted));
                        self.emit(ClientEvent::Stat { id, reply });
                    }
                    other => self.malformed(id, full.slice(..len), other.err()),
                }
                self.finish();
            }
            Op::List(Some(n)) => {
                match wire::first_line(Expected::Scan, &full, &self.config.limits) {
                    Ok(Response::Scan(entry)) if entry.msg == n => {
                        self.emit(ClientEvent::Scan { id, entry });
                    }
                    other => self.malformed(id, full.slice(..len), other.err()),
                }
                self.finish();
            }
            Op::Uidl(Some(n)) => {
                match wire::first_line(Expected::Uid, &full, &self.config.limits) {
                    Ok(Response::Uid(entry)) if entry.msg == n => {
                        self.emit(ClientEvent::Uid { id, entry });
                    }
                    other => self.malformed(id, full.slice(..len), other.err()),
                }
                self.finish();
            }
            Op::List(None) | Op::Uidl(None) | Op::LangList | Op::AuthList => {
                let kind = match op {
                    Op::List(_) => ListKind::Scan,
                    Op::Uidl(_) => ListKind::Uid,
                    Op::LangList => ListKind::Lang,
                    _ => ListKind::Mechanism,
                };
                self.emit(ClientEvent::ListingStart { id, line });
                self.rx_state = Rx::Listing(kind);
            }
            Op::Capa => self.rx_state = Rx::Capa(Vec::new()),
            Op::Retr | Op::Top => {
                self.emit(ClientEvent::BodyStart { id, line });
                // The server's own line end, not the message's, says whether
                // a bare LF can end a body line (see `LineEnds`).
                let line_ends = LineEnds::of_status_line(&full);
                self.rx_state = Rx::Body(Box::new(BodyDecoder::with_line_ends(line_ends)));
            }
            Op::Stls => {
                if !self.rx.is_empty() {
                    let octets = self.rx.len();
                    self.fatal(ProtocolError::StlsInjection { octets });
                    return true;
                }
                self.emit(ClientEvent::Ok { id, line });
                // Nothing more may be written before the handshake.
                self.state = ClientState::TlsHandshake;
                self.finish();
                self.capabilities = None;
                self.user_accepted = false;
                self.actions.push_back(Action::StartTls);
            }
            Op::Auth
                if self
                    .in_flight
                    .front()
                    .and_then(|f| f.mechanism.as_ref())
                    .is_some_and(|m| !m.is_complete()) =>
            {
                // The server said yes before proving who it is.
                self.fatal(ProtocolError::AuthIncomplete { line });
            }
            Op::Pass | Op::Apop | Op::Auth => {
                self.state = ClientState::Transaction;
                self.capabilities = None;
                self.user_accepted = false;
                self.emit(ClientEvent::Ok { id, line });
                // A CAPA written or queued behind the login (see
                // `capa_behind_login`) reads the capabilities after it.
                if !self.capa_pending() {
                    self.auto_capa();
                }
                self.finish();
            }
            Op::User => {
                self.user_accepted = true;
                self.emit(ClientEvent::Ok { id, line });
                self.finish();
            }
            Op::Quit => {
                self.emit(ClientEvent::Ok { id, line });
                self.finish();
                self.close();
            }
            Op::Utf8 => {
                self.utf8 = true;
                self.emit(ClientEvent::Ok { id, line });
                self.finish();
            }
            Op::Dele | Op::Rset | Op::Noop | Op::LangSet | Op::Other => {
                match op {
                    Op::Dele => self.deleted = self.deleted.saturating_add(1),
                    Op::Rset => self.deleted = 0,
                    _ => {}
                }
                self.emit(ClientEvent::Ok { id, line });
                self.finish();
            }
        }
        true
    }

    fn malformed(&mut self, id: RequestId, line: Bytes, error: Option<ResponseError>) {
        let error = error.unwrap_or(ResponseError::BadField {
            field: "message number",
            at: 0,
        });
        self.emit(ClientEvent::Malformed { id, line, error });
    }

    fn reply_err(&mut self, id: RequestId, op: Op, line: StatusLine) {
        self.emit(ClientEvent::Err {
            id,
            error: ServerError { line },
        });
        if matches!(op, Op::User | Op::Pass | Op::Apop | Op::Auth | Op::Stls) {
            self.user_accepted = false;
        }
        // Remove the failed command before recomputing the projection.
        if let Some(f) = self.in_flight.pop_front() {
            self.in_flight_bytes = self.in_flight_bytes.saturating_sub(f.len);
        }
        self.rx_state = Rx::First;
        self.timer_base = self.now;
        if op.gates_queue() {
            self.cancel_pending(id);
        }
        if op == Op::Quit {
            // "-ERR some deleted messages not removed": the server still
            // ends the session.
            self.close();
            return;
        }
        self.flush();
    }

    fn sasl_challenge(&mut self, id: RequestId, full: Bytes, len: usize) {
        let parsed = wire::first_line(Expected::Continuation, &full, &self.config.limits);
        let Some(f) = self.in_flight.front_mut() else {
            return;
        };
        let limit = self.config.max_sasl_challenges;
        f.challenges = f.challenges.saturating_add(1);
        let answer = match parsed {
            Ok(Response::Continuation(_)) if f.challenges > limit => {
                Err(SaslError::TooManyChallenges { limit })
            }
            Ok(Response::Continuation(c)) => {
                if let Some(ir) = f.deferred_ir.take() {
                    Ok(ir)
                } else if let Some(m) = f.mechanism.as_mut() {
                    match m.step_work(&c.data) {
                        Ok(Some(work)) => {
                            // Slow: handed out, answered in `sasl_work_done`.
                            let tag = self.next_sasl_work;
                            self.next_sasl_work = tag.checked_add(1).unwrap_or(1);
                            self.sasl_work = Some(tag);
                            let work = work.with_tag(tag);
                            self.emit(ClientEvent::SaslWork { id, work });
                            return;
                        }
                        Ok(None) => m.step(&c.data),
                        Err(error) => Err(error),
                    }
                } else {
                    Err(SaslError::UnexpectedChallenge)
                }
            }
            Ok(_) => Err(SaslError::BadChallenge),
            Err(error) => {
                self.emit(ClientEvent::Malformed {
                    id,
                    line: full.slice(..len),
                    error,
                });
                Err(SaslError::BadChallenge)
            }
        };
        self.sasl_respond(id, answer);
    }

    /// Writes the answer to a challenge, or `*` when there is none.
    fn sasl_respond(&mut self, id: RequestId, answer: Result<Secret, SaslError>) {
        let (response, secret) = match answer {
            Ok(data) => (SaslResponse::Data(data), true),
            Err(error) => {
                self.emit(ClientEvent::SaslCancelled { id, error });
                (SaslResponse::Cancel, false)
            }
        };
        let mut out = BytesMut::new();
        response.encode(&mut out);
        self.timer_base = self.now;
        self.actions.push_back(Action::Send(Transmit {
            bytes: out.freeze(),
            secret,
        }));
    }

    fn read_listing(&mut self, kind: ListKind) -> bool {
        let (id, _) = self.front();
        let Some((full, len)) = self.take_line(self.config.limits.listing_line) else {
            return false;
        };
        let raw = full.slice(..len);
        if &raw[..] == b"." {
            self.emit(ClientEvent::ListingEnd { id });
            self.finish();
            return true;
        }
        let line = wire::unstuff(raw.clone());
        let event = match kind {
            ListKind::Scan => wire::scan_entry(&line).and_then(|entry| {
                self.check_msg(entry.msg)?;
                Ok(ClientEvent::Scan { id, entry })
            }),
            ListKind::Uid => wire::uid_entry(&line).and_then(|entry| {
                self.check_msg(entry.msg)?;
                Ok(ClientEvent::Uid { id, entry })
            }),
            ListKind::Lang => {
                wire::language(&line).map(|entry| ClientEvent::Language { id, entry })
            }
            ListKind::Mechanism => {
                wire::mechanism(&line).map(|mechanism| ClientEvent::Mechanism { id, mechanism })
            }
        };
        match event {
            Ok(e) => self.emit(e),
            Err(error) => self.emit(ClientEvent::Malformed {
                id,
                line: raw,
                error,
            }),
        }
        true
    }

    /// A listed message number must exist (as far as STAT told).
    fn check_msg(&self, msg: MessageNumber) -> Result<(), ResponseError> {
        match self.message_count {
            Some(count) if msg.get() > count => Err(ResponseError::BadField {
                field: "message number",
                at: 0,
            }),
            _ => Ok(()),
        }
    }

    fn read_capa(&mut self) -> bool {
        let (id, _) = self.front();
        let Some((full, len)) = self.take_line(self.config.limits.listing_line) else {
            return false;
        };
        let raw = full.slice(..len);
        if &raw[..] == b"." {
            let list = match core::mem::replace(&mut self.rx_state, Rx::First) {
                Rx::Capa(list) => list,
                _ => Vec::new(),
            };
            self.capabilities = Some(list.clone());
            self.emit(ClientEvent::Capabilities { id, list });
            self.finish();
            return true;
        }
        match wire::capability(&wire::unstuff(raw.clone())) {
            Ok(cap) => {
                let max = self.config.max_capabilities;
                if let Rx::Capa(list) = &mut self.rx_state {
                    if list.len() < max {
                        list.push(cap);
                    }
                }
            }
            Err(error) => self.emit(ClientEvent::Malformed {
                id,
                line: raw,
                error,
            }),
        }
        true
    }

    fn read_body(&mut self) -> bool {
        let (id, _) = self.front();
        let before = self.rx.len();
        let Rx::Body(decoder) = &mut self.rx_state else {
            return false;
        };
        match decoder.decode(&mut self.rx) {
            None => false,
            Some(BodyEvent::Data(data)) => {
                if !data.is_empty() {
                    self.emit(ClientEvent::BodyChunk { id, data });
                }
                self.rx.len() != before
            }
            Some(BodyEvent::End) => {
                self.emit(ClientEvent::BodyEnd { id });
                self.finish();
                true
            }
        }
    }
}

/// `+` alone or `+ ...`, as opposed to `+OK` (in any case).
fn is_continuation(line: &[u8]) -> bool {
    match line {
        [b'+'] => true,
        [b'+', b' ', ..] => true,
        [b'+', a, b, ..] => !(a.eq_ignore_ascii_case(&b'O') && b.eq_ignore_ascii_case(&b'K')),
        _ => false,
    }
}

fn encode(cmd: &Command) -> Bytes {
    let mut out = BytesMut::new();
    cmd.encode(&mut out);
    out.freeze()
}

/// A command line must hold no line end but its last CRLF (an argument with
/// CR or LF would smuggle a second command).
fn check_line(line: &[u8]) -> Result<(), ClientError> {
    let body = line.strip_suffix(b"\r\n").unwrap_or(line);
    match body
        .iter()
        .position(|&b| b == b'\r' || b == b'\n' || b == 0)
    {
        Some(at) => Err(ClientError::InvalidArgument(InvalidValue::BadOctet { at })),
        None => Ok(()),
    }
}
