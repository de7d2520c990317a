//! Responses (server → client): parsing and encoding.
//!
//! A response cannot be parsed without knowing what it answers: `+OK` to
//! `LIST` opens a listing, `+OK` to `LIST 1` does not. [`Response::parse`]
//! therefore takes an [`Expected`] kind. Line-level parsers
//! ([`StatusLine::parse`], [`ScanLine::parse`], [`Capability::parse`], ...)
//! let a session machine decode listings entry by entry without buffering
//! them whole:
//!
//! ```
//! use pop3_proto::line::find_line;
//! use pop3_proto::response::{ListingLine, ScanLine, StatusLine};
//!
//! let mut input: &[u8] = b"+OK 2 messages\r\n1 120\r\n2 200\r\n.\r\n";
//! let (len, used) = find_line(input, 512).unwrap().unwrap();
//! let status = StatusLine::parse(&input[..len]).unwrap();
//! input = &input[used..];
//! let mut sizes = Vec::new();
//! while let Some((len, used)) = find_line(input, 512).unwrap() {
//!     let ListingLine::Item(line) = ListingLine::parse(&input[..len]) else {
//!         break; // ListingLine::End
//!     };
//!     sizes.push(ScanLine::parse(line).unwrap().size);
//!     input = &input[used..];
//! }
//! assert_eq!(&status.text[..], b"2 messages");
//! assert_eq!(sizes, [120, 200]);
//! ```
//!
//! # What is accepted
//!
//! - `+OK`, `-ERR` and response codes in any case; output is upper case.
//! - CRLF or a bare LF as line end (some UNIX servers send LF alone); output
//!   is always CRLF.
//! - A `[` that does not open a well-formed response code is plain text.
//! - Fields separated by one or more spaces; leading zeros in numbers.
//! - Text after the size of a scan line or STAT reply (RFC 1939 §5, §7);
//!   nothing but spaces after a unique-id.
//! - A bare `+` as an empty SASL challenge.
//! - Capabilities: known tags whose parameters do not fit are kept as
//!   [`Capability::Other`].
//! - A malformed APOP timestamp in the greeting is no timestamp, not an error.
//!
//! Refused, with a typed [`ResponseError`]: lines over the limits, a status
//! other than `+OK`/`-ERR`, CR or NUL inside a line, numbers with signs or
//! that do not fit, message number 0, non-base64 challenges, and
//! non-UTF-8 capability or language lines. Octets in status text are kept as
//! they are (8-bit included).

use alloc::string::String;
use alloc::vec::Vec;
use bytes::{BufMut, Bytes, BytesMut};
use core::fmt;

use crate::line::{Limits, find_line};
use crate::parse;
use crate::types::{ApopTimestamp, LanguageTag, Mechanism, MessageNumber, Uid};

/// `+OK` or `-ERR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
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

/// Response text: the octets after the status (and response code) of a
/// status line. Any octet but CR, LF and NUL; 8-bit octets are kept as they
/// are (servers send them, RFC 6856).
///
/// ```
/// use pop3_proto::response::Text;
/// let t = Text::new(&b"Logged in."[..]).unwrap();
/// assert_eq!(&t[..], b"Logged in.");
/// assert!(Text::new(&b"x\r\n-ERR"[..]).is_err());
/// assert_eq!(Text::from_static("Farewell.").as_bytes(), b"Farewell.");
/// ```
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Text(Bytes);

impl Text {
    /// Validates `value`.
    pub fn new(value: impl Into<Bytes>) -> Result<Self, crate::types::InvalidValue> {
        let value = value.into();
        match parse::find_forbidden(&value) {
            Some(at) => Err(crate::types::InvalidValue::BadOctet { at }),
            None => Ok(Text(value)),
        }
    }

    /// A text from a literal.
    ///
    /// # Panics
    ///
    /// If `value` holds CR, LF or NUL (a bug in the literal).
    pub fn from_static(value: &'static str) -> Self {
        match Self::new(Bytes::from_static(value.as_bytes())) {
            Ok(t) => t,
            Err(_) => panic!("response text must not hold CR, LF or NUL"),
        }
    }

    /// An empty text.
    pub const fn empty() -> Self {
        Text(Bytes::new())
    }

    /// The octets.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The octets, as a cheap clone of the buffer.
    pub fn to_bytes(&self) -> Bytes {
        self.0.clone()
    }
}

impl core::ops::Deref for Text {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Text({:?})", self.0)
    }
}

/// A single-line response: status, optional response code, text.
///
/// On input the status is accepted in any case and a response code is
/// recognised when the text starts with a well-formed `[level/level...]`;
/// a `[` that does not open a well-formed code is ordinary text (servers
/// that do not announce RESP-CODES may write anything). On output the status
/// is upper case and the code, if any, is followed by one space. A text that
/// itself starts with a well-formed code would be read back as a code, so
/// build such lines with `code` set.
///
/// ```
/// use pop3_proto::response::{CodeKind, Status, StatusLine};
/// let line = StatusLine::parse(b"-ERR [IN-USE] Mailbox is locked by another POP3 session.").unwrap();
/// assert_eq!(line.status, Status::Err);
/// assert_eq!(line.code.as_ref().unwrap().kind(), CodeKind::InUse);
/// assert_eq!(&line.text[..], b"Mailbox is locked by another POP3 session.");
///
/// let mut out = bytes::BytesMut::new();
/// StatusLine::parse(b"+ok Logged in.").unwrap().encode(&mut out);
/// assert_eq!(&out[..], b"+OK Logged in.\r\n");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusLine {
    /// `+OK` or `-ERR`.
    pub status: Status,
    /// The response code, if the text started with one.
    pub code: Option<ResponseCode>,
    /// The text after the status (and code), without the separating space.
    pub text: Text,
}

impl StatusLine {
    /// A `+OK` line with `text` and no code.
    pub fn ok(text: Text) -> Self {
        StatusLine {
            status: Status::Ok,
            code: None,
            text,
        }
    }

    /// A `-ERR` line.
    pub fn err(code: Option<ResponseCode>, text: Text) -> Self {
        StatusLine {
            status: Status::Err,
            code,
            text,
        }
    }

    /// Parses a status line, without its line end.
    pub fn parse(line: &[u8]) -> Result<StatusLine, ResponseError> {
        parse_status(line).map(|(s, _)| s)
    }

    /// Appends the line, CRLF included, to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) {
        self.encode_head(dst);
        dst.put_slice(b"\r\n");
    }

    /// Status, code and text without the line end.
    fn encode_head(&self, dst: &mut BytesMut) {
        dst.put_slice(match self.status {
            Status::Ok => b"+OK",
            Status::Err => b"-ERR",
        });
        if let Some(code) = &self.code {
            dst.put_slice(b" [");
            for (i, level) in code.levels().iter().enumerate() {
                if i > 0 {
                    dst.put_u8(b'/');
                }
                dst.put_slice(level.as_bytes());
            }
            dst.put_u8(b']');
        }
        if !self.text.is_empty() {
            dst.put_u8(b' ');
            dst.put_slice(&self.text);
        }
    }

    fn is_ok(&self) -> bool {
        self.status == Status::Ok
    }
}

/// Parses a status line; also returns the offset of the text in the line.
fn parse_status(line: &[u8]) -> Result<(StatusLine, usize), ResponseError> {
    let (status, mut pos) = if parse::starts_with_ci(line, "+OK") {
        (Status::Ok, 3)
    } else if parse::starts_with_ci(line, "-ERR") {
        (Status::Err, 4)
    } else {
        return Err(ResponseError::BadStatus);
    };
    if pos < line.len() {
        if line[pos] != b' ' {
            return Err(ResponseError::BadStatus);
        }
        pos += 1;
    }
    if let Some(at) = parse::find_forbidden(&line[pos..]) {
        return Err(ResponseError::BadField {
            field: "text",
            at: pos + at,
        });
    }
    let mut code = None;
    if let Some((c, len)) = line
        .get(pos)
        .filter(|&&b| b == b'[')
        .and_then(|_| parse_code(&line[pos..]))
    {
        code = Some(c);
        pos += len;
        if line.get(pos) == Some(&b' ') {
            pos += 1;
        }
    }
    let text = Text(Bytes::copy_from_slice(&line[pos..]));
    Ok((StatusLine { status, code, text }, pos))
}

/// A well-formed `[level/...]` at the start of `s`, and its length.
fn parse_code(s: &[u8]) -> Option<(ResponseCode, usize)> {
    let close = memchr::memchr(b']', s)?;
    let inner = core::str::from_utf8(&s[1..close]).ok()?;
    let code = ResponseCode::new(inner.split('/')).ok()?;
    Some((code, close + 1))
}

/// The greeting: a status line and, when present and valid, the APOP timestamp.
///
/// ```
/// use pop3_proto::response::Greeting;
/// let g = Greeting::parse(b"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>").unwrap();
/// assert_eq!(g.timestamp.unwrap().as_str(), "<1896.697170952@dbc.mtview.ca.us>");
/// // A malformed timestamp is no timestamp, not an error.
/// assert_eq!(Greeting::parse(b"+OK ready <no-at-sign>").unwrap().timestamp, None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    /// The greeting line.
    pub line: StatusLine,
    /// The APOP timestamp found in the text, if it is a valid `<local@domain>`.
    pub timestamp: Option<ApopTimestamp>,
}

impl Greeting {
    /// The greeting of `line`, with the timestamp taken from its text.
    pub fn new(line: StatusLine) -> Self {
        let timestamp = if line.is_ok() {
            find_timestamp(&line.text)
        } else {
            None
        };
        Greeting { line, timestamp }
    }

    /// Parses a greeting line, without its line end. A `-ERR` greeting (the
    /// server refuses service) parses too, without a timestamp. The
    /// timestamp is the first `<`…`>` of the text; when it is not a valid
    /// `<local@domain>` msg-id it is ignored (the CVE-2007-1558 class): no APOP digest is
    /// ever computed over it.
    pub fn parse(line: &[u8]) -> Result<Greeting, ResponseError> {
        StatusLine::parse(line).map(Greeting::new)
    }

    /// Appends the greeting line, CRLF included, to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) {
        self.line.encode(dst);
    }
}

fn find_timestamp(text: &[u8]) -> Option<ApopTimestamp> {
    let lt = memchr::memchr(b'<', text)?;
    let gt = lt + memchr::memchr(b'>', &text[lt..])?;
    let candidate = core::str::from_utf8(&text[lt..=gt]).ok()?;
    ApopTimestamp::new(candidate).ok()
}

/// A SASL server challenge: `+ base64` (RFC 5034 §4), decoded. A bare `+`
/// (no space) is accepted as an empty challenge.
///
/// ```
/// use pop3_proto::response::Continuation;
/// let c = Continuation::parse(b"+ VXNlcm5hbWU6").unwrap();
/// assert_eq!(&c.data[..], b"Username:");
/// assert!(Continuation::parse(b"+").unwrap().data.is_empty());
/// let mut out = bytes::BytesMut::new();
/// c.encode(&mut out);
/// assert_eq!(&out[..], b"+ VXNlcm5hbWU6\r\n");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Continuation {
    /// The decoded challenge.
    pub data: Bytes,
}

impl Continuation {
    /// Parses a continuation line, without its line end. The challenge is
    /// strict base64; `+OK` and `-ERR` are not continuations
    /// ([`ResponseError::BadStatus`]).
    pub fn parse(line: &[u8]) -> Result<Continuation, ResponseError> {
        match line {
            [b'+'] | [b'+', b' '] => Ok(Continuation { data: Bytes::new() }),
            [b'+', b' ', data @ ..] => parse::base64_decode(data)
                .map(|d| Continuation { data: d.into() })
                .ok_or(ResponseError::BadBase64),
            _ => Err(ResponseError::BadStatus),
        }
    }

    /// Appends `+ base64` and CRLF to `dst` (`+ ` alone for an empty challenge).
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.put_slice(b"+ ");
        parse::base64_encode(&self.data, dst);
        dst.put_slice(b"\r\n");
    }
}

/// The reply to `STAT`: `+OK count size`.
///
/// ```
/// use pop3_proto::response::StatReply;
/// let r = StatReply::parse_text(b"2 320").unwrap();
/// assert_eq!(r, StatReply { count: 2, size: 320 });
/// let mut out = bytes::BytesMut::new();
/// r.encode(&mut out);
/// assert_eq!(&out[..], b"+OK 2 320\r\n");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatReply {
    /// Messages in the maildrop (not counting deleted ones).
    pub count: u32,
    /// Their total size in octets.
    pub size: u64,
}

impl StatReply {
    /// Parses the text of a `+OK` reply to STAT: `count SP size`, then
    /// optionally SP and anything (tolerated, ignored). Offsets in errors
    /// are relative to `text`.
    pub fn parse_text(text: &[u8]) -> Result<StatReply, ResponseError> {
        let mut t = parse::tokens(text);
        let count = number_field(t.next(), "count")?;
        let count = u32::try_from(count.0).map_err(|_| ResponseError::BadNumber {
            field: "count",
            at: count.1,
        })?;
        let size = number_field(t.next(), "size")?.0;
        Ok(StatReply { count, size })
    }

    /// Appends `+OK count size` and CRLF to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.put_slice(b"+OK ");
        parse::put_decimal(u64::from(self.count), dst);
        dst.put_u8(b' ');
        parse::put_decimal(self.size, dst);
        dst.put_slice(b"\r\n");
    }
}

/// A required decimal field: the value and its offset.
fn number_field(
    token: Option<(usize, &[u8])>,
    field: &'static str,
) -> Result<(u64, usize), ResponseError> {
    let (at, tok) = token.ok_or(ResponseError::MissingField { field })?;
    parse::decimal(tok)
        .map(|n| (n, at))
        .map_err(|_| ResponseError::BadNumber { field, at })
}

/// A required message-number field.
fn message_field(token: Option<(usize, &[u8])>) -> Result<MessageNumber, ResponseError> {
    let (n, at) = number_field(token, "msg")?;
    u32::try_from(n)
        .ok()
        .and_then(MessageNumber::new)
        .ok_or(ResponseError::BadNumber { field: "msg", at })
}

/// One scan listing entry: `n size` (LIST).
///
/// Text after the size is tolerated and dropped (RFC 1939 §7 "strongly
/// discourages" it but allows it). Fields may be separated by more than one
/// space. The same parser reads the text of a `+OK n size` reply to `LIST n`.
///
/// ```
/// use pop3_proto::response::ScanLine;
/// use pop3_proto::types::MessageNumber;
/// let l = ScanLine::parse(b"2 200 (flagged)").unwrap();
/// assert_eq!(l, ScanLine { msg: MessageNumber::new(2).unwrap(), size: 200 });
/// let mut out = bytes::BytesMut::new();
/// l.encode(&mut out);
/// assert_eq!(&out[..], b"2 200\r\n");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanLine {
    /// The message.
    pub msg: MessageNumber,
    /// Its size in octets (RFC 1939 §11).
    pub size: u64,
}

impl ScanLine {
    /// Parses one scan listing line (already dot-unstuffed), without its line end.
    pub fn parse(line: &[u8]) -> Result<ScanLine, ResponseError> {
        let mut t = parse::tokens(line);
        let msg = message_field(t.next())?;
        let size = number_field(t.next(), "size")?.0;
        Ok(ScanLine { msg, size })
    }

    /// Appends `n size` and CRLF to `dst`: the listing line.
    pub fn encode(&self, dst: &mut BytesMut) {
        self.encode_head(dst);
        dst.put_slice(b"\r\n");
    }

    fn encode_head(&self, dst: &mut BytesMut) {
        parse::put_decimal(u64::from(self.msg.get()), dst);
        dst.put_u8(b' ');
        parse::put_decimal(self.size, dst);
    }
}

/// One unique-id listing entry: `n uid` (UIDL).
///
/// Nothing may follow the unique-id but spaces. The same parser reads the
/// text of a `+OK n uid` reply to `UIDL n`.
///
/// ```
/// use pop3_proto::response::UidLine;
/// let l = UidLine::parse(b"1 whqtswO00WBw418f9t5JxYwZ").unwrap();
/// assert_eq!(l.msg.get(), 1);
/// assert_eq!(l.uid.as_str(), "whqtswO00WBw418f9t5JxYwZ");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UidLine {
    /// The message.
    pub msg: MessageNumber,
    /// Its unique-id.
    pub uid: Uid,
}

impl UidLine {
    /// Parses one unique-id listing line (already dot-unstuffed), without its line end.
    pub fn parse(line: &[u8]) -> Result<UidLine, ResponseError> {
        let mut t = parse::tokens(line);
        let msg = message_field(t.next())?;
        let (at, uid) = t
            .next()
            .ok_or(ResponseError::MissingField { field: "uid" })?;
        let uid = Uid::new(Bytes::copy_from_slice(uid)).map_err(|e| ResponseError::BadField {
            field: "uid",
            at: at + bad_at(e),
        })?;
        if let Some((at, _)) = t.next() {
            return Err(ResponseError::BadField { field: "uid", at });
        }
        Ok(UidLine { msg, uid })
    }

    /// Appends `n uid` and CRLF to `dst`: the listing line.
    pub fn encode(&self, dst: &mut BytesMut) {
        self.encode_head(dst);
        dst.put_slice(b"\r\n");
    }

    fn encode_head(&self, dst: &mut BytesMut) {
        parse::put_decimal(u64::from(self.msg.get()), dst);
        dst.put_u8(b' ');
        dst.put_slice(self.uid.as_bytes());
    }
}

fn bad_at(e: crate::types::InvalidValue) -> usize {
    match e {
        crate::types::InvalidValue::BadOctet { at } => at,
        _ => 0,
    }
}

/// One LANG listing entry: `tag description` (RFC 6856 §3).
///
/// ```
/// use pop3_proto::response::LangLine;
/// let l = LangLine::parse(b"en-boont English Boontling dialect").unwrap();
/// assert_eq!(l.tag.as_str(), "en-boont");
/// assert_eq!(l.description, "English Boontling dialect");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LangLine {
    /// The language tag.
    pub tag: LanguageTag,
    /// Its description (may be empty): UTF-8 without CR, LF or NUL, not
    /// starting with a space.
    pub description: String,
}

impl LangLine {
    /// Parses one LANG listing line (already dot-unstuffed), without its line end.
    pub fn parse(line: &[u8]) -> Result<LangLine, ResponseError> {
        if let Some(at) = parse::find_forbidden(line) {
            return Err(ResponseError::BadField {
                field: "description",
                at,
            });
        }
        let mut t = parse::tokens(line);
        let (at, tag) = t
            .next()
            .ok_or(ResponseError::MissingField { field: "tag" })?;
        let tag = core::str::from_utf8(tag)
            .ok()
            .and_then(|s| LanguageTag::new(s).ok())
            .ok_or(ResponseError::BadField { field: "tag", at })?;
        let description = match t.next() {
            Some((at, _)) => core::str::from_utf8(&line[at..])
                .map_err(|_| ResponseError::NotUtf8 {
                    field: "description",
                })?
                .into(),
            None => String::new(),
        };
        Ok(LangLine { tag, description })
    }

    /// Appends `tag [SP description]` and CRLF to `dst`. CR, LF and NUL in a
    /// hand-built description are written as `?`, so the line cannot split.
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.put_slice(self.tag.as_str().as_bytes());
        if !self.description.is_empty() {
            dst.put_u8(b' ');
            parse::put_line_octets(self.description.as_bytes(), dst);
        }
        dst.put_slice(b"\r\n");
    }
}

/// `EXPIRE` policy (RFC 2449 §6.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Expire {
    /// `NEVER`: messages are never deleted by the server.
    Never,
    /// Messages may be deleted this many days after retrieval (`0`: at once).
    Days(u32),
}

/// A capability from a CAPA listing (RFC 2449 §6, RFC 2595, RFC 5034, RFC 6856).
///
/// A line whose tag is known but whose parameters do not fit the known form
/// (`TOP now`, `LOGIN-DELAY soon`, `SASL BAD*MECH`) is kept as
/// [`Capability::Other`], as are unknown tags: nothing a server says is lost.
///
/// ```
/// use pop3_proto::response::{Capability, Expire};
/// assert_eq!(
///     Capability::parse(b"EXPIRE 31 USER").unwrap(),
///     Capability::Expire { policy: Expire::Days(31), per_user: true }
/// );
/// let mut out = bytes::BytesMut::new();
/// Capability::parse(b"sasl plain xoauth2").unwrap().encode(&mut out);
/// assert_eq!(&out[..], b"SASL PLAIN XOAUTH2\r\n");
/// ```
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
    /// `IMPLEMENTATION text`: the rest of the line after the tag and its
    /// spaces (UTF-8 without CR, LF or NUL, not starting with a space).
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
        /// The tag, upper-cased (no space, CR, LF or NUL).
        tag: String,
        /// Its parameters (each non-empty, no space, CR, LF or NUL).
        params: Vec<String>,
    },
}

impl Capability {
    /// Parses one CAPA listing line (already dot-unstuffed), without its line end.
    pub fn parse(line: &[u8]) -> Result<Capability, ResponseError> {
        if let Some(at) = parse::find_forbidden(line) {
            return Err(ResponseError::BadField {
                field: "capability",
                at,
            });
        }
        let line = core::str::from_utf8(line).map_err(|_| ResponseError::NotUtf8 {
            field: "capability",
        })?;
        let mut toks = parse::tokens(line.as_bytes()).map(|(at, t)| (at, str_of(line, at, t)));
        let Some((_, tag)) = toks.next() else {
            return Err(ResponseError::MissingField {
                field: "capability",
            });
        };
        let tag = tag.to_ascii_uppercase();
        let rest: Vec<(usize, &str)> = toks.collect();
        let params: Vec<&str> = rest.iter().map(|(_, p)| *p).collect();
        let is_user = |p: &str| p.eq_ignore_ascii_case("USER");
        let per_user = |ps: &[&str]| match ps {
            [] => Some(false),
            [u] if is_user(u) => Some(true),
            _ => None,
        };
        let days = |p: &str| {
            parse::decimal(p.as_bytes())
                .ok()
                .and_then(|n| u32::try_from(n).ok())
        };
        let known = match (tag.as_str(), params.as_slice()) {
            ("TOP", []) => Some(Capability::Top),
            ("USER", []) => Some(Capability::User),
            ("RESP-CODES", []) => Some(Capability::RespCodes),
            ("PIPELINING", []) => Some(Capability::Pipelining),
            ("UIDL", []) => Some(Capability::Uidl),
            ("STLS", []) => Some(Capability::Stls),
            ("LANG", []) => Some(Capability::Lang),
            ("AUTH-RESP-CODE", []) => Some(Capability::AuthRespCode),
            ("UTF8", ps) => per_user(ps).map(|user| Capability::Utf8 { user }),
            ("SASL", ps) => ps
                .iter()
                .map(|m| Mechanism::new(m).ok())
                .collect::<Option<Vec<_>>>()
                .map(Capability::Sasl),
            ("LOGIN-DELAY", [n, ps @ ..]) => days(n).and_then(|seconds| {
                per_user(ps).map(|per_user| Capability::LoginDelay { seconds, per_user })
            }),
            ("EXPIRE", [p, ps @ ..]) => {
                let policy = if p.eq_ignore_ascii_case("NEVER") {
                    Some(Expire::Never)
                } else {
                    days(p).map(Expire::Days)
                };
                policy.and_then(|policy| {
                    per_user(ps).map(|per_user| Capability::Expire { policy, per_user })
                })
            }
            ("IMPLEMENTATION", _) => Some(Capability::Implementation(match rest.first() {
                Some((at, _)) => String::from(&line[*at..]),
                None => String::new(),
            })),
            _ => None,
        };
        Ok(known.unwrap_or_else(|| Capability::Other {
            tag,
            params: params.into_iter().map(String::from).collect(),
        }))
    }

    /// Appends the capability line and CRLF to `dst` (dot-stuffed if it
    /// would start with `.`). CR, LF and NUL in hand-built text are written
    /// as `?`, so the line cannot split.
    pub fn encode(&self, dst: &mut BytesMut) {
        fn user(dst: &mut BytesMut, per_user: bool) {
            if per_user {
                dst.put_slice(b" USER");
            }
        }
        match self {
            Capability::Top => dst.put_slice(b"TOP"),
            Capability::User => dst.put_slice(b"USER"),
            Capability::RespCodes => dst.put_slice(b"RESP-CODES"),
            Capability::Pipelining => dst.put_slice(b"PIPELINING"),
            Capability::Uidl => dst.put_slice(b"UIDL"),
            Capability::Stls => dst.put_slice(b"STLS"),
            Capability::Lang => dst.put_slice(b"LANG"),
            Capability::AuthRespCode => dst.put_slice(b"AUTH-RESP-CODE"),
            Capability::Utf8 { user: u } => {
                dst.put_slice(b"UTF8");
                user(dst, *u);
            }
            Capability::Sasl(mechs) => {
                dst.put_slice(b"SASL");
                for m in mechs {
                    dst.put_u8(b' ');
                    dst.put_slice(m.as_str().as_bytes());
                }
            }
            Capability::LoginDelay { seconds, per_user } => {
                dst.put_slice(b"LOGIN-DELAY ");
                parse::put_decimal(u64::from(*seconds), dst);
                user(dst, *per_user);
            }
            Capability::Expire { policy, per_user } => {
                dst.put_slice(b"EXPIRE ");
                match policy {
                    Expire::Never => dst.put_slice(b"NEVER"),
                    Expire::Days(d) => parse::put_decimal(u64::from(*d), dst),
                }
                user(dst, *per_user);
            }
            Capability::Implementation(text) => {
                dst.put_slice(b"IMPLEMENTATION");
                if !text.is_empty() {
                    dst.put_u8(b' ');
                    parse::put_line_octets(text.as_bytes(), dst);
                }
            }
            Capability::Other { tag, params } => {
                if tag.starts_with('.') {
                    dst.put_u8(b'.');
                }
                parse::put_line_octets(tag.as_bytes(), dst);
                for p in params {
                    dst.put_u8(b' ');
                    parse::put_line_octets(p.as_bytes(), dst);
                }
            }
        }
        dst.put_slice(b"\r\n");
    }
}

/// The token of `line` at `at` as a `str` (tokens split at ASCII spaces, so
/// they are on character boundaries).
fn str_of<'a>(line: &'a str, at: usize, tok: &[u8]) -> &'a str {
    line.get(at..at + tok.len()).unwrap_or_default()
}

/// Parses one line of a bare-`AUTH` mechanism listing.
fn mechanism_line(line: &[u8]) -> Result<Mechanism, ResponseError> {
    let name =
        core::str::from_utf8(line).map_err(|_| ResponseError::NotUtf8 { field: "mechanism" })?;
    Mechanism::new(name).map_err(|e| ResponseError::BadField {
        field: "mechanism",
        at: bad_at(e),
    })
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

impl Expected {
    /// Every kind, for tests and fuzzing.
    pub const ALL: [Expected; 12] = [
        Expected::Greeting,
        Expected::Status,
        Expected::Stat,
        Expected::Scan,
        Expected::Uid,
        Expected::ScanListing,
        Expected::UidListing,
        Expected::Capabilities,
        Expected::Languages,
        Expected::Mechanisms,
        Expected::Continuation,
        Expected::Message,
    ];

    /// Whether a `+OK` to this opens a multi-line listing.
    pub fn is_listing(self) -> bool {
        matches!(
            self,
            Expected::ScanListing
                | Expected::UidListing
                | Expected::Capabilities
                | Expected::Languages
                | Expected::Mechanisms
        )
    }
}

/// A parsed response.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Response {
    /// The greeting (`+OK`; a `-ERR` greeting is [`Response::Status`]).
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
#[non_exhaustive]
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

impl<T> Parsed<T> {
    /// The value and the octets consumed, if complete.
    pub fn complete(self) -> Option<(T, usize)> {
        match self {
            Parsed::Complete { value, consumed } => Some((value, consumed)),
            Parsed::Incomplete => None,
        }
    }

    /// Whether more input is needed.
    pub fn is_incomplete(&self) -> bool {
        matches!(self, Parsed::Incomplete)
    }
}

/// One line of a multi-line listing (CAPA, LIST, UIDL, LANG, bare AUTH), as
/// the framer found it: the `.` terminator or an entry, dot-unstuffed.
///
/// ```
/// use pop3_proto::response::ListingLine;
/// assert_eq!(ListingLine::parse(b"."), ListingLine::End);
/// assert_eq!(ListingLine::parse(b"..x"), ListingLine::Item(b".x"));
/// assert_eq!(ListingLine::parse(b"1 120"), ListingLine::Item(b"1 120"));
/// let mut out = bytes::BytesMut::new();
/// ListingLine::Item(b".x").encode(&mut out);
/// ListingLine::End.encode(&mut out);
/// assert_eq!(&out[..], b"..x\r\n.\r\n");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ListingLine<'a> {
    /// An entry, with the stuffing dot removed.
    Item(&'a [u8]),
    /// `.` alone: the listing is complete.
    End,
}

impl<'a> ListingLine<'a> {
    /// Classifies one listing line, without its line end.
    pub fn parse(line: &'a [u8]) -> Self {
        match line {
            b"." => ListingLine::End,
            [b'.', rest @ ..] => ListingLine::Item(rest),
            _ => ListingLine::Item(line),
        }
    }

    /// Appends the line, dot-stuffed, and CRLF to `dst`. CR, LF and NUL in
    /// an item are written as `?`: an item is one line.
    pub fn encode(&self, dst: &mut BytesMut) {
        match self {
            ListingLine::End => dst.put_u8(b'.'),
            ListingLine::Item(line) => {
                if line.first() == Some(&b'.') {
                    dst.put_u8(b'.');
                }
                parse::put_line_octets(line, dst);
            }
        }
        dst.put_slice(b"\r\n");
    }
}

/// What was wrong with a response.
///
/// Offsets are relative to the line the error is in (for a listing entry,
/// the entry line after dot-unstuffing).
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
    /// A field failed validation (a UID with a space, a mechanism with `*`,
    /// CR or NUL in a text...).
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

impl ResponseError {
    /// The same error with offsets moved by `base`.
    fn shifted(self, base: usize) -> Self {
        match self {
            ResponseError::BadNumber { field, at } => ResponseError::BadNumber {
                field,
                at: at + base,
            },
            ResponseError::BadField { field, at } => ResponseError::BadField {
                field,
                at: at + base,
            },
            e => e,
        }
    }
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseError::LineTooLong { limit } => {
                write!(f, "response line longer than {limit} octets")
            }
            ResponseError::BadStatus => f.write_str("response does not start with +OK or -ERR"),
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

/// Collects listing entries after the status line, up to and including
/// the `.` terminator.
fn parse_listing<T>(
    input: &[u8],
    mut pos: usize,
    limits: &Limits,
    status: StatusLine,
    item: fn(&[u8]) -> Result<T, ResponseError>,
) -> Result<Option<(Listing<T>, usize)>, ResponseError> {
    let mut items = Vec::new();
    loop {
        let rest = &input[pos..];
        let (len, used) = match find_line(rest, limits.listing_line) {
            Ok(Some(found)) => found,
            Ok(None) => return Ok(None),
            Err(_) => {
                return Err(ResponseError::LineTooLong {
                    limit: limits.listing_line,
                });
            }
        };
        pos += used;
        match ListingLine::parse(&rest[..len]) {
            ListingLine::End => return Ok(Some((Listing { status, items }, pos))),
            ListingLine::Item(line) => items.push(item(line)?),
        }
    }
}

impl Response {
    /// Parses one whole response of the `expected` kind from the start of
    /// `input`. Listings are collected whole (a session machine uses the
    /// line-level parsers instead, to stream them).
    ///
    /// A `-ERR` is [`Response::Status`] whatever was expected. Line ends may
    /// be CRLF or a bare LF. The first line may be at most
    /// `limits.response_line` octets (`limits.sasl_line` for a `+`
    /// continuation), each listing line `limits.listing_line`.
    ///
    /// ```
    /// use pop3_proto::line::Limits;
    /// use pop3_proto::response::{Expected, Parsed, Response};
    /// let input = b"+OK 2 messages\r\n1 120\r\n2 200\r\n.\r\n+OK";
    /// let Ok(Parsed::Complete { value: Response::ScanListing(l), consumed }) =
    ///     Response::parse(Expected::ScanListing, input, &Limits::strict())
    /// else {
    ///     panic!()
    /// };
    /// assert_eq!((l.items.len(), consumed), (2, 33));
    /// assert_eq!(
    ///     Response::parse(Expected::ScanListing, &input[..20], &Limits::strict()),
    ///     Ok(Parsed::Incomplete)
    /// );
    /// ```
    pub fn parse(
        expected: Expected,
        input: &[u8],
        limits: &Limits,
    ) -> Result<Parsed<Response>, ResponseError> {
        // A continuation may be as long as a SASL line; anything else is a
        // first response line. The second octet tells them apart.
        let limit = match (expected, input) {
            (Expected::Continuation, [b'+', c, ..]) if !c.eq_ignore_ascii_case(&b'o') => {
                limits.sasl_line
            }
            _ => limits.response_line,
        };
        let (len, consumed) = match find_line(input, limit) {
            Ok(Some(found)) => found,
            Ok(None) => return Ok(Parsed::Incomplete),
            Err(_) => return Err(ResponseError::LineTooLong { limit }),
        };
        let line = &input[..len];
        let complete = |value, consumed| Ok(Parsed::Complete { value, consumed });
        if expected == Expected::Continuation
            && line.first() == Some(&b'+')
            && !parse::starts_with_ci(line, "+OK")
        {
            return complete(Response::Continuation(Continuation::parse(line)?), consumed);
        }
        let (status, text_at) = parse_status(line)?;
        if !status.is_ok() {
            return complete(Response::Status(status), consumed);
        }
        let text = &line[text_at..];
        macro_rules! listing {
            ($variant:ident, $item:expr) => {
                match parse_listing(input, consumed, limits, status, $item)? {
                    Some((l, used)) => complete(Response::$variant(l), used),
                    None => Ok(Parsed::Incomplete),
                }
            };
        }
        match expected {
            Expected::Greeting => complete(Response::Greeting(Greeting::new(status)), consumed),
            Expected::Stat => complete(
                Response::Stat(StatReply::parse_text(text).map_err(|e| e.shifted(text_at))?),
                consumed,
            ),
            Expected::Scan => complete(
                Response::Scan(ScanLine::parse(text).map_err(|e| e.shifted(text_at))?),
                consumed,
            ),
            Expected::Uid => complete(
                Response::Uid(UidLine::parse(text).map_err(|e| e.shifted(text_at))?),
                consumed,
            ),
            Expected::ScanListing => listing!(ScanListing, ScanLine::parse),
            Expected::UidListing => listing!(UidListing, UidLine::parse),
            Expected::Capabilities => listing!(Capabilities, Capability::parse),
            Expected::Languages => listing!(Languages, LangLine::parse),
            Expected::Mechanisms => listing!(Mechanisms, mechanism_line),
            Expected::Status | Expected::Message | Expected::Continuation => {
                complete(Response::Status(status), consumed)
            }
        }
    }

    /// Appends the whole response, CRLF line ends, listings dot-stuffed and
    /// terminated, to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) {
        fn listing<T>(l: &Listing<T>, dst: &mut BytesMut, item: impl Fn(&T, &mut BytesMut)) {
            l.status.encode(dst);
            for i in &l.items {
                item(i, dst);
            }
            dst.put_slice(b".\r\n");
        }
        match self {
            Response::Greeting(g) => g.encode(dst),
            Response::Status(s) => s.encode(dst),
            Response::Stat(s) => s.encode(dst),
            Response::Scan(s) => {
                dst.put_slice(b"+OK ");
                s.encode(dst);
            }
            Response::Uid(u) => {
                dst.put_slice(b"+OK ");
                u.encode(dst);
            }
            Response::ScanListing(l) => listing(l, dst, ScanLine::encode),
            Response::UidListing(l) => listing(l, dst, UidLine::encode),
            Response::Capabilities(l) => listing(l, dst, Capability::encode),
            Response::Languages(l) => listing(l, dst, LangLine::encode),
            Response::Mechanisms(l) => listing(l, dst, |m, dst| {
                dst.put_slice(m.as_str().as_bytes());
                dst.put_slice(b"\r\n");
            }),
            Response::Continuation(c) => c.encode(dst),
        }
    }
}
