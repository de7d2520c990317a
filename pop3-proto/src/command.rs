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
//!
//! # What is accepted
//!
//! - Keywords in any case; a keyword is 1–16 printable ASCII octets (the RFC
//!   says 3–4; longer and shorter ones parse as [`Command::Unknown`] so that
//!   the server can name them in its `-ERR`).
//! - Exactly one SP before each argument. Two spaces in a row, or a trailing
//!   space, are errors: no real client sends them, and for `PASS` a space is
//!   part of the password, so the rule must be the same everywhere.
//! - `PASS` takes the whole rest of the line after its one SP, spaces
//!   included (a password may start or end with a space).
//! - Numbers are plain base-10 digits. Leading zeros are accepted (`RETR 01`
//!   is message 1: the value is not ambiguous); signs, spaces, other digits,
//!   zero message numbers and values that do not fit are typed errors.
//! - No line may carry CR, LF or NUL ([`CommandError::BadOctet`]).
//! - SASL data is strict base64 (RFC 4648 alphabet, canonical padding).
//! - RFC 1939's 40-octet argument limit is not enforced: user names that are
//!   e-mail addresses and OAuth initial responses exceed it. Each type has
//!   its own bound ([`Username::MAX_LEN`], [`Password::MAX_LEN`]); the line
//!   framer bounds the whole line.

use alloc::string::String;
use bytes::{BufMut, Bytes, BytesMut};
use core::fmt;

use crate::parse::{self, NumberError};
use crate::types::{ApopTimestamp, InvalidValue, LanguageTag, Mechanism, MessageNumber, Secret};

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

/// The argument of `PASS`: 1–1024 octets other than CR, LF and NUL. Spaces
/// and 8-bit octets are allowed. `Debug` never shows the value.
///
/// ```
/// use pop3_proto::command::Password;
/// let p = Password::new(" two words ").unwrap();
/// assert_eq!(p.expose(), b" two words ");
/// assert_eq!(format!("{p:?}"), "Password(<11 octets redacted>)");
/// assert!(Password::new("a\r\nDELE 1").is_err());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Password(Bytes);

impl Password {
    /// The longest password accepted, in octets.
    pub const MAX_LEN: usize = 1024;

    /// Validates `value`.
    pub fn new(value: impl Into<Bytes>) -> Result<Self, InvalidValue> {
        let value = value.into();
        if value.is_empty() {
            return Err(InvalidValue::Empty);
        }
        if value.len() > Self::MAX_LEN {
            return Err(InvalidValue::TooLong { max: Self::MAX_LEN });
        }
        if let Some(at) = parse::find_forbidden(&value) {
            return Err(InvalidValue::BadOctet { at });
        }
        Ok(Password(value))
    }

    /// The password's octets.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The password as a [`Secret`].
    pub fn to_secret(&self) -> Secret {
        Secret::new(self.0.clone())
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Password(<{} octets redacted>)", self.0.len())
    }
}

/// An APOP digest: 16 octets, sent as 32 lower-case hex digits (RFC 1939 §7).
/// Upper-case hex is accepted on input. `Debug` never shows the value.
///
/// ```
/// use pop3_proto::command::ApopDigest;
/// use pop3_proto::types::ApopTimestamp;
/// let ts = ApopTimestamp::new("<1896.697170952@dbc.mtview.ca.us>").unwrap();
/// let d = ApopDigest::compute(&ts, b"tanstaaf");
/// assert_eq!(d.to_hex(), "c4c9334bac560ecc979e58001b3e22fb");
/// assert_eq!(ApopDigest::from_hex("C4C9334BAC560ECC979E58001B3E22FB").unwrap(), d);
/// assert_eq!(format!("{d:?}"), "ApopDigest(<redacted>)");
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ApopDigest([u8; 16]);

impl ApopDigest {
    /// The digest over `timestamp` and `secret`.
    pub fn compute(timestamp: &ApopTimestamp, secret: &[u8]) -> Self {
        use md5::{Digest, Md5};
        let mut h = Md5::new();
        h.update(timestamp.as_str().as_bytes());
        h.update(secret);
        ApopDigest(h.finalize().into())
    }

    /// The digest from its 16 octets.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        ApopDigest(bytes)
    }

    /// Parses 32 hex digits (either case).
    pub fn from_hex(hex: &str) -> Result<Self, InvalidValue> {
        Self::from_hex_bytes(hex.as_bytes())
    }

    fn from_hex_bytes(hex: &[u8]) -> Result<Self, InvalidValue> {
        if hex.is_empty() {
            return Err(InvalidValue::Empty);
        }
        if let Some(at) = hex.iter().position(|c| !c.is_ascii_hexdigit()) {
            return Err(InvalidValue::BadOctet { at });
        }
        if hex.len() != 32 {
            return Err(InvalidValue::Malformed);
        }
        let mut out = [0u8; 16];
        for (i, pair) in hex.chunks_exact(2).enumerate() {
            out[i] = (hex_val(pair[0]) << 4) | hex_val(pair[1]);
        }
        Ok(ApopDigest(out))
    }

    /// The 16 octets.
    pub fn expose(&self) -> &[u8; 16] {
        &self.0
    }

    /// The 32 lower-case hex digits.
    pub fn to_hex(&self) -> String {
        crate::types::hex_lower(&self.0)
    }

    /// Compares with `other` in time independent of where they differ.
    pub fn matches(&self, other: &ApopDigest) -> bool {
        self.0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

/// The value of a hex digit already checked with `is_ascii_hexdigit`.
fn hex_val(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        _ => (c | 0x20) - b'a' + 10,
    }
}

impl fmt::Debug for ApopDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApopDigest(<redacted>)")
    }
}

/// A command this crate does not know: its keyword (1–16 printable ASCII
/// octets, upper-cased, not one of the known keywords) and the rest of the
/// line (no CR, LF or NUL).
///
/// ```
/// use pop3_proto::command::{Command, UnknownCommand};
/// let cmd = Command::parse(b"xyzzy plugh").unwrap();
/// let expected = UnknownCommand::new("XYZZY", &b"plugh"[..]).unwrap();
/// assert_eq!(cmd, Command::Unknown(expected));
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct UnknownCommand {
    keyword: String,
    args: Bytes,
}

impl UnknownCommand {
    /// The longest keyword accepted, in octets.
    pub const MAX_KEYWORD_LEN: usize = 16;

    /// Validates the parts; the keyword is upper-cased. A known keyword is
    /// refused ([`InvalidValue::Malformed`]): it has its own [`Command`].
    pub fn new(keyword: &str, args: impl Into<Bytes>) -> Result<Self, InvalidValue> {
        let kw = keyword.as_bytes();
        check_keyword(kw)?;
        if Keyword::from_bytes(kw).is_some() {
            return Err(InvalidValue::Malformed);
        }
        let args = args.into();
        if let Some(at) = parse::find_forbidden(&args) {
            return Err(InvalidValue::BadOctet { at });
        }
        Ok(UnknownCommand {
            keyword: keyword.to_ascii_uppercase(),
            args,
        })
    }

    /// The keyword, upper case.
    pub fn keyword(&self) -> &str {
        &self.keyword
    }

    /// Everything after the first space (may be empty).
    pub fn args(&self) -> &[u8] {
        &self.args
    }
}

impl fmt::Debug for UnknownCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The arguments of an unknown command may hold anything; show only their length.
        write!(
            f,
            "UnknownCommand({:?}, <{} octets>)",
            self.keyword,
            self.args.len()
        )
    }
}

fn check_keyword(kw: &[u8]) -> Result<(), InvalidValue> {
    if kw.is_empty() {
        return Err(InvalidValue::Empty);
    }
    if kw.len() > UnknownCommand::MAX_KEYWORD_LEN {
        return Err(InvalidValue::TooLong {
            max: UnknownCommand::MAX_KEYWORD_LEN,
        });
    }
    match kw.iter().position(|c| !(0x21..=0x7e).contains(c)) {
        Some(at) => Err(InvalidValue::BadOctet { at }),
        None => Ok(()),
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
    Pass(Password),
    /// `APOP name digest` (RFC 1939 §7).
    Apop {
        /// The user name.
        name: Username,
        /// The digest (32 hex digits on the wire, lower case on output).
        digest: ApopDigest,
    },
    /// `AUTH mechanism [initial-response]` (RFC 5034).
    Auth {
        /// The SASL mechanism.
        mechanism: Mechanism,
        /// The decoded initial response, if one was sent (`=` is an empty one).
        initial_response: Option<Secret>,
    },
    /// Bare `AUTH`: the old-style list of mechanisms (Dovecot answers it; some
    /// clients send it when CAPA fails).
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
    Unknown(UnknownCommand),
}

/// What was wrong with a command line.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommandError {
    /// The line is empty.
    Empty,
    /// The keyword is empty (the line starts with a space), longer than 16
    /// octets, or holds a non-printable or non-ASCII octet.
    BadKeyword,
    /// The line holds CR, LF or NUL at `at`.
    BadOctet {
        /// Offset in the line.
        at: usize,
    },
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
    /// An empty argument: two spaces in a row.
    Empty,
    /// The value failed its type's validation.
    Invalid(crate::types::InvalidValue),
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Empty => f.write_str("empty command line"),
            CommandError::BadKeyword => f.write_str("malformed command keyword"),
            CommandError::BadOctet { at } => {
                write!(f, "CR, LF or NUL in command line at offset {at}")
            }
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

/// The known keywords.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Keyword {
    User,
    Pass,
    Apop,
    Auth,
    Stat,
    List,
    Retr,
    Dele,
    Noop,
    Rset,
    Quit,
    Top,
    Uidl,
    Capa,
    Stls,
    Utf8,
    Lang,
}

impl Keyword {
    const ALL: [(&'static str, Keyword); 17] = [
        ("USER", Keyword::User),
        ("PASS", Keyword::Pass),
        ("APOP", Keyword::Apop),
        ("AUTH", Keyword::Auth),
        ("STAT", Keyword::Stat),
        ("LIST", Keyword::List),
        ("RETR", Keyword::Retr),
        ("DELE", Keyword::Dele),
        ("NOOP", Keyword::Noop),
        ("RSET", Keyword::Rset),
        ("QUIT", Keyword::Quit),
        ("TOP", Keyword::Top),
        ("UIDL", Keyword::Uidl),
        ("CAPA", Keyword::Capa),
        ("STLS", Keyword::Stls),
        ("UTF8", Keyword::Utf8),
        ("LANG", Keyword::Lang),
    ];

    fn from_bytes(kw: &[u8]) -> Option<(&'static str, Keyword)> {
        Self::ALL
            .iter()
            .copied()
            .find(|(name, _)| name.as_bytes().eq_ignore_ascii_case(kw))
    }
}

/// Walks the SP-separated arguments of a command line.
struct Args<'a> {
    line: &'a [u8],
    /// Offset of the SP before the next argument, or `line.len()`.
    pos: usize,
    command: &'static str,
}

impl<'a> Args<'a> {
    fn invalid(&self, at: usize, reason: ArgumentError) -> CommandError {
        CommandError::InvalidArgument {
            command: self.command,
            at,
            reason,
        }
    }

    /// The next argument and its offset; `None` at the end of the line.
    fn next(&mut self) -> Result<Option<(usize, &'a [u8])>, CommandError> {
        if self.pos >= self.line.len() {
            return Ok(None);
        }
        let start = self.pos + 1;
        let end = memchr::memchr(b' ', &self.line[start..]).map_or(self.line.len(), |i| start + i);
        if end == start {
            if start == self.line.len() {
                // A trailing space: nothing follows it.
                return Err(CommandError::ExtraArgument {
                    command: self.command,
                    at: self.pos,
                });
            }
            return Err(self.invalid(start, ArgumentError::Empty));
        }
        self.pos = end;
        Ok(Some((start, &self.line[start..end])))
    }

    fn required(&mut self) -> Result<(usize, &'a [u8]), CommandError> {
        if self.pos + 1 == self.line.len() {
            // `RETR ` : the argument is missing, not extra.
            return Err(CommandError::MissingArgument {
                command: self.command,
            });
        }
        self.next()?.ok_or(CommandError::MissingArgument {
            command: self.command,
        })
    }

    fn end(&self) -> Result<(), CommandError> {
        if self.pos < self.line.len() {
            let at = if self.pos + 1 < self.line.len() {
                self.pos + 1
            } else {
                self.pos
            };
            return Err(CommandError::ExtraArgument {
                command: self.command,
                at,
            });
        }
        Ok(())
    }

    fn number(&self, (at, field): (usize, &[u8])) -> Result<u64, CommandError> {
        parse::decimal(field).map_err(|e| {
            self.invalid(
                at,
                match e {
                    NumberError::NotANumber => ArgumentError::NotANumber,
                    NumberError::Overflow => ArgumentError::Overflow,
                },
            )
        })
    }

    fn message(&self, arg: (usize, &[u8])) -> Result<MessageNumber, CommandError> {
        let n = self.number(arg)?;
        let n = u32::try_from(n).map_err(|_| self.invalid(arg.0, ArgumentError::Overflow))?;
        MessageNumber::new(n).ok_or(self.invalid(arg.0, ArgumentError::Zero))
    }

    fn text(&self, (at, field): (usize, &'a [u8])) -> Result<&'a str, CommandError> {
        core::str::from_utf8(field).map_err(|_| self.invalid(at, ArgumentError::NotUtf8))
    }

    fn validated<T>(&self, at: usize, r: Result<T, InvalidValue>) -> Result<T, CommandError> {
        r.map_err(|e| self.invalid(at, ArgumentError::Invalid(e)))
    }

    fn username(&self, arg: (usize, &'a [u8])) -> Result<Username, CommandError> {
        let s = self.text(arg)?;
        self.validated(arg.0, Username::new(s))
    }
}

impl Command {
    /// Parses one command line, without its line end.
    ///
    /// ```
    /// use pop3_proto::command::{ArgumentError, Command, CommandError};
    /// assert_eq!(Command::parse(b"STAT"), Ok(Command::Stat));
    /// assert_eq!(
    ///     Command::parse(b"DELE 0"),
    ///     Err(CommandError::InvalidArgument { command: "DELE", at: 5, reason: ArgumentError::Zero })
    /// );
    /// ```
    pub fn parse(line: &[u8]) -> Result<Command, CommandError> {
        if line.is_empty() {
            return Err(CommandError::Empty);
        }
        if let Some(at) = parse::find_forbidden(line) {
            return Err(CommandError::BadOctet { at });
        }
        let kw_end = memchr::memchr(b' ', line).unwrap_or(line.len());
        let kw = &line[..kw_end];
        check_keyword(kw).map_err(|_| CommandError::BadKeyword)?;
        let Some((name, keyword)) = Keyword::from_bytes(kw) else {
            let args = if kw_end < line.len() {
                &line[kw_end + 1..]
            } else {
                &[][..]
            };
            // The keyword is printable ASCII, so it is UTF-8.
            let kw = core::str::from_utf8(kw).map_err(|_| CommandError::BadKeyword)?;
            return Ok(Command::Unknown(UnknownCommand {
                keyword: kw.to_ascii_uppercase(),
                args: Bytes::copy_from_slice(args),
            }));
        };
        let mut args = Args {
            line,
            pos: kw_end,
            command: name,
        };
        let cmd = match keyword {
            Keyword::User => {
                let arg = args.required()?;
                Command::User(args.username(arg)?)
            }
            Keyword::Pass => {
                // The rest of the line after exactly one SP, spaces included.
                if kw_end + 1 >= line.len() {
                    return Err(CommandError::MissingArgument { command: name });
                }
                let at = kw_end + 1;
                let pw = args.validated(at, Password::new(Bytes::copy_from_slice(&line[at..])))?;
                return Ok(Command::Pass(pw));
            }
            Keyword::Apop => {
                let arg = args.required()?;
                let name = args.username(arg)?;
                let (at, hex) = args.required()?;
                let digest = args.validated(at, ApopDigest::from_hex_bytes(hex))?;
                Command::Apop { name, digest }
            }
            Keyword::Auth => match args.next()? {
                None => Command::AuthList,
                Some(arg) => {
                    let s = args.text(arg)?;
                    let mechanism = args.validated(arg.0, Mechanism::new(s))?;
                    let initial_response = match args.next()? {
                        None => None,
                        Some((at, ir)) => {
                            Some(sasl_data(ir).ok_or(args.invalid(at, ArgumentError::BadBase64))?)
                        }
                    };
                    Command::Auth {
                        mechanism,
                        initial_response,
                    }
                }
            },
            Keyword::Stat => Command::Stat,
            Keyword::Noop => Command::Noop,
            Keyword::Rset => Command::Rset,
            Keyword::Quit => Command::Quit,
            Keyword::Capa => Command::Capa,
            Keyword::Stls => Command::Stls,
            Keyword::Utf8 => Command::Utf8,
            Keyword::List => Command::List(match args.next()? {
                Some(arg) => Some(args.message(arg)?),
                None => None,
            }),
            Keyword::Uidl => Command::Uidl(match args.next()? {
                Some(arg) => Some(args.message(arg)?),
                None => None,
            }),
            Keyword::Retr => {
                let arg = args.required()?;
                Command::Retr(args.message(arg)?)
            }
            Keyword::Dele => {
                let arg = args.required()?;
                Command::Dele(args.message(arg)?)
            }
            Keyword::Top => {
                let arg = args.required()?;
                let msg = args.message(arg)?;
                let arg = args.required()?;
                let lines = args.number(arg)?;
                Command::Top { msg, lines }
            }
            Keyword::Lang => Command::Lang(match args.next()? {
                None => LangRequest::List,
                Some((_, b"*")) => LangRequest::Default,
                Some(arg) => {
                    let s = args.text(arg)?;
                    LangRequest::Tag(args.validated(arg.0, LanguageTag::new(s))?)
                }
            }),
        };
        args.end()?;
        Ok(cmd)
    }

    /// Appends the command line, CRLF included, to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.put_slice(self.keyword().as_bytes());
        match self {
            Command::User(name) => {
                dst.put_u8(b' ');
                dst.put_slice(name.as_str().as_bytes());
            }
            Command::Pass(pw) => {
                dst.put_u8(b' ');
                dst.put_slice(pw.expose());
            }
            Command::Apop { name, digest } => {
                dst.put_u8(b' ');
                dst.put_slice(name.as_str().as_bytes());
                dst.put_u8(b' ');
                dst.put_slice(digest.to_hex().as_bytes());
            }
            Command::Auth {
                mechanism,
                initial_response,
            } => {
                dst.put_u8(b' ');
                dst.put_slice(mechanism.as_str().as_bytes());
                if let Some(ir) = initial_response {
                    dst.put_u8(b' ');
                    if ir.is_empty() {
                        dst.put_u8(b'=');
                    } else {
                        parse::base64_encode(ir.expose(), dst);
                    }
                }
            }
            Command::List(Some(n))
            | Command::Uidl(Some(n))
            | Command::Retr(n)
            | Command::Dele(n) => {
                dst.put_u8(b' ');
                parse::put_decimal(u64::from(n.get()), dst);
            }
            Command::Top { msg, lines } => {
                dst.put_u8(b' ');
                parse::put_decimal(u64::from(msg.get()), dst);
                dst.put_u8(b' ');
                parse::put_decimal(*lines, dst);
            }
            Command::Lang(LangRequest::Default) => dst.put_slice(b" *"),
            Command::Lang(LangRequest::Tag(tag)) => {
                dst.put_u8(b' ');
                dst.put_slice(tag.as_str().as_bytes());
            }
            Command::Unknown(u) => {
                if !u.args.is_empty() {
                    dst.put_u8(b' ');
                    dst.put_slice(&u.args);
                }
            }
            Command::AuthList
            | Command::Stat
            | Command::List(None)
            | Command::Uidl(None)
            | Command::Noop
            | Command::Rset
            | Command::Quit
            | Command::Capa
            | Command::Stls
            | Command::Utf8
            | Command::Lang(LangRequest::List) => {}
        }
        dst.put_slice(b"\r\n");
    }

    /// The command's keyword, upper case (`"RETR"`, ...), or the unknown keyword.
    pub fn keyword(&self) -> &str {
        match self {
            Command::User(_) => "USER",
            Command::Pass(_) => "PASS",
            Command::Apop { .. } => "APOP",
            Command::Auth { .. } | Command::AuthList => "AUTH",
            Command::Stat => "STAT",
            Command::List(_) => "LIST",
            Command::Retr(_) => "RETR",
            Command::Dele(_) => "DELE",
            Command::Noop => "NOOP",
            Command::Rset => "RSET",
            Command::Quit => "QUIT",
            Command::Top { .. } => "TOP",
            Command::Uidl(_) => "UIDL",
            Command::Capa => "CAPA",
            Command::Stls => "STLS",
            Command::Utf8 => "UTF8",
            Command::Lang(_) => "LANG",
            Command::Unknown(u) => &u.keyword,
        }
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

/// Decodes SASL data: `=` is the empty response, anything else strict base64.
fn sasl_data(field: &[u8]) -> Option<Secret> {
    if field == b"=" {
        return Some(Secret::default());
    }
    parse::base64_decode(field).map(Secret::new)
}

/// A client line during an `AUTH` exchange (RFC 5034 §4).
///
/// An empty line is an empty response. `=` alone is accepted as an empty
/// response too: it is what the initial response uses for "empty", some
/// clients send it in answers as well, and it cannot be mistaken for
/// anything else (it is not valid base64). On output an empty response is
/// always an empty line, as RFC 5034 specifies.
///
/// ```
/// use pop3_proto::command::SaslResponse;
/// use pop3_proto::types::Secret;
/// assert_eq!(SaslResponse::parse(b"*"), Ok(SaslResponse::Cancel));
/// assert_eq!(SaslResponse::parse(b"AQ=="), Ok(SaslResponse::Data(Secret::new(&b"\x01"[..]))));
/// assert_eq!(SaslResponse::parse(b"="), SaslResponse::parse(b""));
/// assert!(SaslResponse::parse(b"AQ=").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SaslResponse {
    /// Base64-decoded response data (an empty line is an empty response).
    Data(Secret),
    /// `*`: the client cancels the exchange.
    Cancel,
}

impl SaslResponse {
    /// Parses one SASL response line, without its line end. Bad data is
    /// [`CommandError::InvalidArgument`] with `command: "AUTH"` and
    /// [`ArgumentError::BadBase64`].
    pub fn parse(line: &[u8]) -> Result<SaslResponse, CommandError> {
        if line == b"*" {
            return Ok(SaslResponse::Cancel);
        }
        if line.is_empty() {
            return Ok(SaslResponse::Data(Secret::default()));
        }
        sasl_data(line)
            .map(SaslResponse::Data)
            .ok_or(CommandError::InvalidArgument {
                command: "AUTH",
                at: 0,
                reason: ArgumentError::BadBase64,
            })
    }

    /// Appends the line, CRLF included, to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) {
        match self {
            SaslResponse::Cancel => dst.put_u8(b'*'),
            SaslResponse::Data(d) => parse::base64_encode(d.expose(), dst),
        }
        dst.put_slice(b"\r\n");
    }
}
