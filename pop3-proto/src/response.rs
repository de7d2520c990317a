//! Responses (server → client): parsing and encoding.
//!
//! A response cannot be parsed without knowing what it answers: `+OK` to
//! `LIST` opens a listing, `+OK` to `LIST 1` does not. [`Response::parse`]
//! therefore takes an [`Expected`] kind. Line-level parsers
//! ([`StatusLine::parse`], [`ScanLine::parse`], [`Capability::parse`], ...)
//! let a session machine decode listings entry by entry without buffering
//! them whole.
//!
//! Input is accepted in any case (`+ok`, `-err`, `[in-use]`); output is
//! always upper case (`+OK`, `-ERR`) with CRLF line ends.

use alloc::string::String;
use alloc::vec::Vec;
use bytes::{Bytes, BytesMut};
use core::fmt;

use crate::line::Limits;
use crate::types::{ApopTimestamp, LanguageTag, Mechanism, MessageNumber, Uid};

/// `+OK` or `-ERR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// `+OK`: success.
    Ok,
    /// `-ERR`: failure.
    Err,
}

/// A response code: `[IN-USE]`, `[SYS/TEMP]`, ... (RFC 2449 §8, RFC 3206,
/// RFC 6856). Hierarchical: levels separated by `/`. Stored upper-cased;
/// unknown codes are kept as they are.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ResponseCode {
    levels: Vec<String>,
}

/// The response codes this crate knows, by their first level(s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CodeKind {
    /// `[IN-USE]`: the maildrop is locked by another session (transient).
    InUse,
    /// `[LOGIN-DELAY]`: logged in too recently (transient).
    LoginDelay,
    /// `[SYS/TEMP]`: a temporary system problem (transient).
    SysTemp,
    /// `[SYS/PERM]`: a permanent system problem.
    SysPerm,
    /// `[AUTH]`: the credentials were wrong.
    Auth,
    /// `[UTF8]`: the command needs UTF-8 mode.
    Utf8,
    /// Any other code.
    Other,
}

impl ResponseCode {
    /// Builds a code from its levels. Each level is 1+ printable ASCII octets
    /// other than `/`, `[`, `]` and space.
    pub fn new<I, S>(levels: I) -> Result<Self, crate::types::InvalidValue>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut out = Vec::new();
        for level in levels {
            let level = level.as_ref();
            let b = level.as_bytes();
            if b.is_empty() {
                return Err(crate::types::InvalidValue::Empty);
            }
            if let Some(at) = b
                .iter()
                .position(|&c| !(0x21..=0x7e).contains(&c) || matches!(c, b'/' | b'[' | b']'))
            {
                return Err(crate::types::InvalidValue::BadOctet { at });
            }
            out.push(level.to_ascii_uppercase());
        }
        if out.is_empty() {
            return Err(crate::types::InvalidValue::Empty);
        }
        Ok(ResponseCode { levels: out })
    }

    /// A code of a known kind (`CodeKind::Other` gives `None`).
    pub fn known(kind: CodeKind) -> Option<Self> {
        let levels: &[&str] = match kind {
            CodeKind::InUse => &["IN-USE"],
            CodeKind::LoginDelay => &["LOGIN-DELAY"],
            CodeKind::SysTemp => &["SYS", "TEMP"],
            CodeKind::SysPerm => &["SYS", "PERM"],
            CodeKind::Auth => &["AUTH"],
            CodeKind::Utf8 => &["UTF8"],
            CodeKind::Other => return None,
        };
        Self::new(levels.iter().copied()).ok()
    }

    /// The levels, upper case.
    pub fn levels(&self) -> &[String] {
        &self.levels
    }

    /// Which known code this is. Unknown detail below a known level is
    /// ignored (`[SYS/TEMP/FOO]` is `SysTemp`), as RFC 2449 §8 requires.
    pub fn kind(&self) -> CodeKind {
        let first = self.levels[0].as_str();
        let second = self.levels.get(1).map(String::as_str);
        match (first, second) {
            ("IN-USE", _) => CodeKind::InUse,
            ("LOGIN-DELAY", _) => CodeKind::LoginDelay,
            ("SYS", Some("TEMP")) => CodeKind::SysTemp,
            ("SYS", Some("PERM")) => CodeKind::SysPerm,
            ("AUTH", _) => CodeKind::Auth,
            ("UTF8", _) => CodeKind::Utf8,
            _ => CodeKind::Other,
        }
    }

    /// Whether retrying later may help (`[IN-USE]`, `[LOGIN-DELAY]`, `[SYS/TEMP]`).
    pub fn is_transient(&self) -> bool {
        matches!(
            self.kind(),
            CodeKind::InUse | CodeKind::LoginDelay | CodeKind::SysTemp
        )
    }
}

impl fmt::Debug for ResponseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}]", self.levels.join("/"))
    }
}

impl fmt::Display for ResponseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}]", self.levels.join("/"))
    }
}

/// A single-line response: status, optional response code, text.
///
/// ```
/// use pop3_proto::response::{CodeKind, Status, StatusLine};
/// let line = StatusLine::parse(b"-ERR [IN-USE] Mailbox is locked by another POP3 session.").unwrap();
/// assert_eq!(line.status, Status::Err);
/// assert_eq!(line.code.as_ref().unwrap().kind(), CodeKind::InUse);
/// assert_eq!(&line.text[..], b"Mailbox is locked by another POP3 session.");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusLine {
    /// `+OK` or `-ERR`.
    pub status: Status,
    /// The response code, if the text started with one.
    pub code: Option<ResponseCode>,
    /// The text after the status (and code), without the separating space.
    pub text: Bytes,
}

/// The greeting: a status line and, when present and valid, the APOP timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    /// The greeting line.
    pub line: StatusLine,
    /// The APOP timestamp found in the text, if it is a valid `<local@domain>`.
    pub timestamp: Option<ApopTimestamp>,
}

/// A SASL server challenge: `+ base64` (RFC 5034 §4), decoded. A bare `+`
/// (no space) is accepted as an empty challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Continuation {
    /// The decoded challenge.
    pub data: Bytes,
}

/// The reply to `STAT`: `+OK count size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatReply {
    /// Messages in the maildrop (not counting deleted ones).
    pub count: u32,
    /// Their total size in octets.
    pub size: u64,
}

/// One scan listing entry: `n size` (LIST).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanLine {
    /// The message.
    pub msg: MessageNumber,
    /// Its size in octets (RFC 1939 §11).
    pub size: u64,
}

/// One unique-id listing entry: `n uid` (UIDL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UidLine {
    /// The message.
    pub msg: MessageNumber,
    /// Its unique-id.
    pub uid: Uid,
}

/// One LANG listing entry: `tag description` (RFC 6856 §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LangLine {
    /// The language tag.
    pub tag: LanguageTag,
    /// Its description (may be empty).
    pub description: String,
}

/// `EXPIRE` policy (RFC 2449 §6.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expire {
    /// `NEVER`: messages are never deleted by the server.
    Never,
    /// Messages may be deleted this many days after retrieval (`0`: at once).
    Days(u32),
}

/// A capability from a CAPA listing (RFC 2449 §6, RFC 2595, RFC 5034, RFC 6856).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Capability {
    /// `TOP`.
    Top,
    /// `USER`.
    User,
    /// `SASL mech...`.
    Sasl(Vec<Mechanism>),
    /// `RESP-CODES`.
    RespCodes,
    /// `LOGIN-DELAY seconds [USER]`.
    LoginDelay {
        /// Minimum seconds between logins.
        seconds: u32,
        /// `USER`: the value applies to this user only (after login).
        per_user: bool,
    },
    /// `PIPELINING`.
    Pipelining,
    /// `EXPIRE policy [USER]`.
    Expire {
        /// The policy.
        policy: Expire,
        /// `USER`: the value applies to this user only (after login).
        per_user: bool,
    },
    /// `UIDL`.
    Uidl,
    /// `IMPLEMENTATION text`.
    Implementation(String),
    /// `STLS`.
    Stls,
    /// `UTF8` or `UTF8 USER`.
    Utf8 {
        /// Whether `USER` was given (UTF-8 user names and passwords accepted).
        user: bool,
    },
    /// `LANG`.
    Lang,
    /// `AUTH-RESP-CODE` (RFC 3206).
    AuthRespCode,
    /// Any other capability, kept as it is.
    Other {
        /// The tag, upper-cased.
        tag: String,
        /// Its parameters.
        params: Vec<String>,
    },
}

/// A multi-line listing: the status line and the entries, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing<T> {
    /// The `+OK` line that opened the listing.
    pub status: StatusLine,
    /// The entries.
    pub items: Vec<T>,
}

/// What a response is expected to be: decides how `+OK` is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Expected {
    /// The server greeting.
    Greeting,
    /// A single status line (USER, PASS, DELE, NOOP, RSET, QUIT, STLS, UTF8, LANG tag, ...).
    Status,
    /// The reply to STAT.
    Stat,
    /// The reply to `LIST n`.
    Scan,
    /// The reply to `UIDL n`.
    Uid,
    /// The reply to `LIST`: a scan listing.
    ScanListing,
    /// The reply to `UIDL`: a unique-id listing.
    UidListing,
    /// The reply to `CAPA`.
    Capabilities,
    /// The reply to bare `LANG`.
    Languages,
    /// The reply to bare `AUTH`: a mechanism listing.
    Mechanisms,
    /// During AUTH: a `+` continuation or the final status line.
    Continuation,
    /// The reply to RETR/TOP: only the status line is parsed; the body
    /// follows and is decoded with [`crate::dot::BodyDecoder`].
    Message,
}

/// A parsed response.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Response {
    /// The greeting.
    Greeting(Greeting),
    /// A single status line; also any `-ERR`, whatever was expected.
    Status(StatusLine),
    /// A successful STAT.
    Stat(StatReply),
    /// A successful `LIST n`.
    Scan(ScanLine),
    /// A successful `UIDL n`.
    Uid(UidLine),
    /// A successful LIST.
    ScanListing(Listing<ScanLine>),
    /// A successful UIDL.
    UidListing(Listing<UidLine>),
    /// A successful CAPA.
    Capabilities(Listing<Capability>),
    /// A successful bare LANG.
    Languages(Listing<LangLine>),
    /// A successful bare AUTH.
    Mechanisms(Listing<Mechanism>),
    /// A SASL challenge.
    Continuation(Continuation),
}

/// The result of parsing from a buffer that may hold only part of a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<T> {
    /// A complete value, and how many input octets it used.
    Complete {
        /// The value.
        value: T,
        /// Octets consumed from the start of the input.
        consumed: usize,
    },
    /// More input is needed; incomplete input is not invalid.
    Incomplete,
}

/// What was wrong with a response.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResponseError {
    /// A line is longer than the configured limit (octets, line end included).
    LineTooLong {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// The line does not start with `+OK` or `-ERR` (or `+` where a continuation may come).
    BadStatus,
    /// A `[` response code is not closed or has an empty or invalid level.
    BadCode {
        /// Offset in the line.
        at: usize,
    },
    /// A field is missing (e.g. the size in `+OK 2`).
    MissingField {
        /// Which field.
        field: &'static str,
    },
    /// A number is not a plain decimal that fits its type.
    BadNumber {
        /// Which field.
        field: &'static str,
        /// Offset in the line.
        at: usize,
    },
    /// A field failed validation (a UID with a space, a mechanism with `*`...).
    BadField {
        /// Which field.
        field: &'static str,
        /// Offset in the line.
        at: usize,
    },
    /// The challenge of a continuation is not valid base64.
    BadBase64,
    /// A listing line of text that must be UTF-8 is not.
    NotUtf8 {
        /// Which field.
        field: &'static str,
    },
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseError::LineTooLong { limit } => {
                write!(f, "response line longer than {limit} octets")
            }
            ResponseError::BadStatus => f.write_str("response does not start with +OK or -ERR"),
            ResponseError::BadCode { at } => write!(f, "malformed response code at offset {at}"),
            ResponseError::MissingField { field } => write!(f, "missing {field}"),
            ResponseError::BadNumber { field, at } => {
                write!(f, "{field} at offset {at} is not a valid number")
            }
            ResponseError::BadField { field, at } => write!(f, "invalid {field} at offset {at}"),
            ResponseError::BadBase64 => f.write_str("continuation is not valid base64"),
            ResponseError::NotUtf8 { field } => write!(f, "{field} is not UTF-8"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ResponseError {}

impl Response {
    /// Parses one whole response of the `expected` kind from the start of
    /// `input`. Listings are collected whole (a session machine uses the
    /// line-level parsers instead, to stream them).
    pub fn parse(
        expected: Expected,
        input: &[u8],
        limits: &Limits,
    ) -> Result<Parsed<Response>, ResponseError> {
        let _ = (expected, input, limits);
        todo!()
    }

    /// Appends the whole response, CRLF line ends, listings dot-stuffed and
    /// terminated, to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) {
        let _ = dst;
        todo!()
    }
}
