//! Commands (client → server): parsing and encoding.
//!
//! A command line is a case-insensitive keyword, SP-separated arguments and
//! CRLF (RFC 1939 §3, RFC 2449 §3). [`Command::parse`] takes one line *without*
//! its line end (the [`crate::line`] framer finds lines); [`Command::encode`]
//! appends the line *with* CRLF, keyword in upper case.
//!
//! Unknown keywords are not an error: they parse as [`Command::Unknown`] so
//! that a server can answer them with `-ERR`. A known keyword with wrong
//! arguments is a [`CommandError`].
//!
//! While an `AUTH` exchange is in progress the client sends SASL response
//! lines instead of commands: see [`SaslResponse`].

use alloc::string::String;
use bytes::{Bytes, BytesMut};
use core::fmt;

use crate::types::{LanguageTag, Mechanism, MessageNumber, Secret};

/// A user name as given to `USER` or `APOP`: 1–255 octets of UTF-8 without
/// space or control characters.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Username(String);

impl Username {
    /// The longest user name accepted, in octets.
    pub const MAX_LEN: usize = 255;

    /// Validates `name`.
    pub fn new(name: &str) -> Result<Self, crate::types::InvalidValue> {
        let b = name.as_bytes();
        if b.is_empty() {
            return Err(crate::types::InvalidValue::Empty);
        }
        if b.len() > Self::MAX_LEN {
            return Err(crate::types::InvalidValue::TooLong { max: Self::MAX_LEN });
        }
        if let Some(at) = b.iter().position(|&c| c <= b' ' || c == 0x7f) {
            return Err(crate::types::InvalidValue::BadOctet { at });
        }
        Ok(Username(String::from(name)))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Username({:?})", self.0)
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The argument of `LANG`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LangRequest {
    /// `LANG` alone: list the languages the server offers.
    List,
    /// `LANG *`: select the server's default language.
    Default,
    /// `LANG tag`: select this language.
    Tag(LanguageTag),
}

/// A POP3 command.
///
/// ```
/// use pop3_proto::command::Command;
/// use pop3_proto::types::MessageNumber;
///
/// let cmd = Command::parse(b"retr 3").unwrap();
/// assert_eq!(cmd, Command::Retr(MessageNumber::new(3).unwrap()));
/// let mut out = bytes::BytesMut::new();
/// cmd.encode(&mut out);
/// assert_eq!(&out[..], b"RETR 3\r\n");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// `USER name` (RFC 1939 §7).
    User(Username),
    /// `PASS string`: the rest of the line, spaces included (RFC 1939 §7).
    Pass(Secret),
    /// `APOP name digest` (RFC 1939 §7); the digest is 32 hex digits.
    Apop {
        /// The user name.
        name: Username,
        /// The digest as sent (32 hex digits, lower case on output).
        digest: Secret,
    },
    /// `AUTH mechanism [initial-response]` (RFC 5034).
    Auth {
        /// The SASL mechanism.
        mechanism: Mechanism,
        /// The decoded initial response, if one was sent (`=` is an empty one).
        initial_response: Option<Secret>,
    },
    /// Bare `AUTH`: the old-style list of mechanisms (SPEC B.15).
    AuthList,
    /// `STAT`.
    Stat,
    /// `LIST` or `LIST n`.
    List(Option<MessageNumber>),
    /// `RETR n`.
    Retr(MessageNumber),
    /// `DELE n`.
    Dele(MessageNumber),
    /// `NOOP`.
    Noop,
    /// `RSET`.
    Rset,
    /// `QUIT`.
    Quit,
    /// `TOP n lines`.
    Top {
        /// The message.
        msg: MessageNumber,
        /// How many body lines to send after the header.
        lines: u64,
    },
    /// `UIDL` or `UIDL n`.
    Uidl(Option<MessageNumber>),
    /// `CAPA` (RFC 2449).
    Capa,
    /// `STLS` (RFC 2595).
    Stls,
    /// `UTF8` (RFC 6856).
    Utf8,
    /// `LANG`, `LANG *` or `LANG tag` (RFC 6856).
    Lang(LangRequest),
    /// A keyword this crate does not know, with the rest of the line.
    Unknown {
        /// The keyword, upper-cased.
        keyword: Bytes,
        /// Everything after the first space (may be empty).
        args: Bytes,
    },
}

/// What was wrong with a command line.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommandError {
    /// The line is empty.
    Empty,
    /// The keyword is not 3–4 ASCII letters (or is followed by something other than SP).
    BadKeyword,
    /// A known command is missing a required argument.
    MissingArgument {
        /// The command's keyword.
        command: &'static str,
    },
    /// A known command has more arguments than it takes; `at` is the offset of the first extra one.
    ExtraArgument {
        /// The command's keyword.
        command: &'static str,
        /// Offset in the line of the unexpected argument.
        at: usize,
    },
    /// An argument is not valid; `at` is its offset in the line.
    InvalidArgument {
        /// The command's keyword.
        command: &'static str,
        /// Offset in the line of the argument.
        at: usize,
        /// What was wrong.
        reason: ArgumentError,
    },
}

/// Why an argument was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ArgumentError {
    /// Not a decimal number (signs, spaces and other characters are refused).
    NotANumber,
    /// A message number of zero.
    Zero,
    /// A number too large for its type.
    Overflow,
    /// Not valid base64 (RFC 4648, strict padding).
    BadBase64,
    /// Not valid UTF-8 where text is required.
    NotUtf8,
    /// The value failed its type's validation.
    Invalid(crate::types::InvalidValue),
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Empty => f.write_str("empty command line"),
            CommandError::BadKeyword => f.write_str("malformed command keyword"),
            CommandError::MissingArgument { command } => write!(f, "{command}: missing argument"),
            CommandError::ExtraArgument { command, at } => {
                write!(f, "{command}: unexpected argument at offset {at}")
            }
            CommandError::InvalidArgument {
                command,
                at,
                reason,
            } => {
                write!(f, "{command}: invalid argument at offset {at}: {reason:?}")
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for CommandError {}

impl Command {
    /// Parses one command line, without its line end.
    pub fn parse(line: &[u8]) -> Result<Command, CommandError> {
        let _ = line;
        todo!()
    }

    /// Appends the command line, CRLF included, to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) {
        let _ = dst;
        todo!()
    }

    /// The command's keyword, upper case (`"RETR"`, ...), or the unknown keyword.
    pub fn keyword(&self) -> &str {
        todo!()
    }

    /// Whether the encoded line carries a secret (PASS, APOP, AUTH with an initial response).
    pub fn is_secret(&self) -> bool {
        matches!(
            self,
            Command::Pass(_)
                | Command::Apop { .. }
                | Command::Auth {
                    initial_response: Some(_),
                    ..
                }
        )
    }
}

/// A client line during an `AUTH` exchange (RFC 5034 §4).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SaslResponse {
    /// Base64-decoded response data (an empty line is an empty response).
    Data(Secret),
    /// `*`: the client cancels the exchange.
    Cancel,
}

impl SaslResponse {
    /// Parses one SASL response line, without its line end.
    pub fn parse(line: &[u8]) -> Result<SaslResponse, CommandError> {
        let _ = line;
        todo!()
    }

    /// Appends the line, CRLF included, to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) {
        let _ = dst;
        todo!()
    }
}
