//! Multi-line bodies: the streaming dot-unstuffer (client side) and
//! dot-stuffer (server side), and the RFC 1939 §11 octet count.
//!
//! A multi-line response is a sequence of CRLF-terminated lines ended by a
//! line holding a single `.`; a line of the body that starts with `.` is sent
//! with one more `.` in front (RFC 1939 §3). Both directions work on chunks
//! of any size, carry their state across chunk boundaries, never limit the
//! length of a body line, and keep memory bounded whatever the message size.
//!
//! * [`BodyDecoder`] (client): stuffed wire octets in, unstuffed body out as
//!   zero-copy [`Bytes`] slices of the input, then [`BodyEvent::End`].
//! * [`BodyEncoder`] (server): body octets in, wire octets out: dot-stuffing,
//!   bare LF → CRLF, a missing final CRLF added, then `.` CRLF; with
//!   [`BodyEncoder::top`] only the header and the first `n` body lines.
//! * [`OctetCounter`] / [`octet_count`]: the size LIST and STAT report.
//!
//! ```
//! use bytes::BytesMut;
//! use pop3_proto::dot::{BodyDecoder, BodyEncoder, BodyEvent};
//!
//! let mut wire = BytesMut::new();
//! let mut enc = BodyEncoder::new();
//! enc.encode(b"Subject: hi\n\n.signature", &mut wire);
//! enc.finish(&mut wire);
//! assert_eq!(&wire[..], b"Subject: hi\r\n\r\n..signature\r\n.\r\n");
//!
//! let mut dec = BodyDecoder::new();
//! let mut body = Vec::new();
//! while let Some(event) = dec.decode(&mut wire) {
//!     match event {
//!         BodyEvent::Data(chunk) => body.extend_from_slice(&chunk),
//!         BodyEvent::End => break,
//!     }
//! }
//! assert_eq!(body, b"Subject: hi\r\n\r\n.signature\r\n");
//! assert!(dec.is_done());
//! ```

use bytes::{Buf, BufMut, Bytes, BytesMut};
use core::fmt;
use memchr::memmem::Finder;

/// What the body decoder produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyEvent {
    /// Unstuffed body octets, a zero-copy slice of the input.
    Data(Bytes),
    /// The terminating `.` line was consumed; the body is complete.
    End,
}

/// Which line ends the [`BodyDecoder`] recognises when it looks for the
/// start of a line (where a stuffing `.` is removed and the terminator can
/// appear).
///
/// Line ends inside the body are always passed through unchanged; this only
/// decides where a line starts. The RFC says CRLF. Some old UNIX servers end
/// every line with a bare LF, terminator included (`.` LF), and Python's
/// poplib and MailKit accept that. Accepting it unconditionally is not safe,
/// though: a server that passes a stored bare LF through unchanged and stuffs
/// only after CRLF would let a message containing LF `.` CRLF end the body
/// early, and the client would read the rest of that message as the next
/// responses. [`LineEnds::Detect`], the default, therefore decides per body
/// from its first line end, which the server (not the message's author)
/// writes in practice: a bare LF there means an LF server, anything else
/// means CRLF only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LineEnds {
    /// Only CRLF ends a line; `.` CRLF is the only terminator.
    Strict,
    /// A bare LF ends a line too; `.` LF also terminates.
    Lenient,
    /// [`Strict`](LineEnds::Strict) unless the body's first line end is a
    /// bare LF, then [`Lenient`](LineEnds::Lenient).
    #[default]
    Detect,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DecState {
    /// At the start of a line.
    LineStart,
    /// Inside a line; `cr`: the last octet was a CR.
    Mid { cr: bool },
    /// Took a `.` at the start of a line.
    Dot,
    /// Took `.` CR at the start of a line.
    DotCr,
    /// The terminator was consumed.
    Done,
}

/// Streaming decoder of a multi-line body (RETR/TOP, and listings).
///
/// Feed it the octets after the `+OK` status line, in chunks of any size:
/// [`decode`](BodyDecoder::decode) returns unstuffed body octets as slices
/// split off the front of the input buffer (no copy), and
/// [`BodyEvent::End`] once the terminating `.` line has been consumed. The
/// octets after the terminator are left in the buffer for whoever reads the
/// next response. The decoder never holds back more than the `.` or `.` CR
/// that may start the terminator; body lines have no length limit.
///
/// Unstuffing follows RFC 1939 §3: a `.` at the start of a line followed by
/// anything other than the line end is removed. Which line ends count is set
/// by [`LineEnds`] (by default detected per body).
///
/// A `.` CR at the start of a line followed by something other than LF is not
/// a terminator: the `.` is removed and the CR is passed on as data. When the
/// connection closes right after such a `.` CR (a server that sent `.` CR and
/// no LF), [`decode_eof`](BodyDecoder::decode_eof) accepts it as the end; a
/// caller that times out waiting for more can ask
/// [`is_terminator_pending`](BodyDecoder::is_terminator_pending) and decide
/// the same.
#[derive(Debug, Clone)]
pub struct BodyDecoder {
    state: DecState,
    line_ends: LineEnds,
    finder: Finder<'static>,
    data_octets: u64,
}

impl Default for BodyDecoder {
    fn default() -> Self {
        BodyDecoder::new()
    }
}

impl BodyDecoder {
    /// A decoder positioned at the start of a body, detecting the line ends.
    pub fn new() -> Self {
        BodyDecoder::with_line_ends(LineEnds::Detect)
    }

    /// A decoder positioned at the start of a body, with the given line ends.
    pub fn with_line_ends(line_ends: LineEnds) -> Self {
        BodyDecoder {
            state: DecState::LineStart,
            line_ends,
            finder: Finder::new(b"\n."),
            data_octets: 0,
        }
    }

    /// The line ends in force: [`LineEnds::Detect`] until the first line end
    /// has been seen, then what it decided.
    pub fn line_ends(&self) -> LineEnds {
        self.line_ends
    }

    /// Whether the terminator has been consumed.
    pub fn is_done(&self) -> bool {
        self.state == DecState::Done
    }

    /// Whether the decoder holds a `.` CR at the start of a line and waits
    /// for the LF that would make it the terminator.
    pub fn is_terminator_pending(&self) -> bool {
        self.state == DecState::DotCr
    }

    /// The number of body octets handed out so far (stuffing and terminator
    /// excluded): for a conforming server, the size LIST reported once the
    /// body is done.
    pub fn data_octets(&self) -> u64 {
        self.data_octets
    }

    fn set_line_ends(&mut self, line_ends: LineEnds) {
        self.line_ends = line_ends;
    }

    fn emit(&mut self, src: &mut BytesMut, n: usize) -> Option<BodyEvent> {
        self.data_octets += n as u64;
        Some(BodyEvent::Data(src.split_to(n).freeze()))
    }

    /// Takes what it can from the front of `src`. `None`: more input needed
    /// (or the body is already done; see [`is_done`](BodyDecoder::is_done)).
    ///
    /// Call it until it returns `None` before reading more input: one call
    /// returns at most one event.
    pub fn decode(&mut self, src: &mut BytesMut) -> Option<BodyEvent> {
        loop {
            match self.state {
                DecState::Done => return None,
                DecState::LineStart => {
                    if *src.first()? == b'.' {
                        src.advance(1);
                        self.state = DecState::Dot;
                    } else {
                        self.state = DecState::Mid { cr: false };
                    }
                }
                DecState::Dot => match *src.first()? {
                    b'\r' => {
                        src.advance(1);
                        self.state = DecState::DotCr;
                    }
                    b'\n' if self.line_ends != LineEnds::Strict => {
                        src.advance(1);
                        if self.line_ends == LineEnds::Detect {
                            self.set_line_ends(LineEnds::Lenient);
                        }
                        self.state = DecState::Done;
                        return Some(BodyEvent::End);
                    }
                    // A stuffed line: the dot is gone, the rest is data.
                    _ => self.state = DecState::Mid { cr: false },
                },
                DecState::DotCr => {
                    if *src.first()? == b'\n' {
                        src.advance(1);
                        self.state = DecState::Done;
                        return Some(BodyEvent::End);
                    }
                    // `.` CR then something else: a line starting with a
                    // CR, stuffed. The CR we took is data.
                    self.state = DecState::Mid { cr: true };
                    self.data_octets += 1;
                    return Some(BodyEvent::Data(Bytes::from_static(b"\r")));
                }
                DecState::Mid { cr } => return self.scan(src, cr),
            }
        }
    }

    /// Inside a line: hands out everything up to the next line-start `.`.
    fn scan(&mut self, src: &mut BytesMut, cr: bool) -> Option<BodyEvent> {
        if src.is_empty() {
            return None;
        }
        if self.line_ends == LineEnds::Detect {
            match memchr::memchr(b'\n', src) {
                Some(lf) => {
                    let bare = if lf == 0 { !cr } else { src[lf - 1] != b'\r' };
                    self.set_line_ends(if bare {
                        LineEnds::Lenient
                    } else {
                        LineEnds::Strict
                    });
                }
                None => {
                    self.state = DecState::Mid {
                        cr: src[src.len() - 1] == b'\r',
                    };
                    let n = src.len();
                    return self.emit(src, n);
                }
            }
        }
        let lenient = self.line_ends == LineEnds::Lenient;
        // LF `.` is rare in mail and found fast; whether the LF ends a line
        // (strict mode wants a CR before it) is checked afterwards.
        let mut from = 0;
        while let Some(i) = self.finder.find(&src[from..]) {
            let lf = from + i;
            let line_end = lenient || if lf == 0 { cr } else { src[lf - 1] == b'\r' };
            if line_end {
                // Up to and including the line end; the dot goes with it
                // and is cut off (one split instead of a split and an advance).
                let mut data = src.split_to(lf + 2);
                data.truncate(lf + 1);
                self.data_octets += data.len() as u64;
                self.state = DecState::Dot;
                return Some(BodyEvent::Data(data.freeze()));
            }
            from = lf + 1;
        }
        let n = src.len();
        let last = src[n - 1];
        let line_end = last == b'\n' && (lenient || if n == 1 { cr } else { src[n - 2] == b'\r' });
        self.state = if line_end {
            DecState::LineStart
        } else {
            DecState::Mid { cr: last == b'\r' }
        };
        self.emit(src, n)
    }

    /// Tells the decoder the input ended (the connection closed). `Ok` when
    /// the body is complete: the terminator was consumed, or the input ended
    /// right after a `.` CR at the start of a line (a terminator cut short
    /// by a broken server; a stuffed data line cannot look like that).
    /// Anything else is [`BodyError::Truncated`].
    pub fn decode_eof(&mut self) -> Result<(), BodyError> {
        match self.state {
            DecState::Done => Ok(()),
            DecState::DotCr => {
                self.state = DecState::Done;
                Ok(())
            }
            _ => Err(BodyError::Truncated),
        }
    }
}

/// An error while decoding a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BodyError {
    /// The input ended before the terminating `.` line.
    Truncated,
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::Truncated => f.write_str("multi-line body ended before its terminator"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for BodyError {}

/// The block the encoder's fast path checks at once.
const BLOCK: usize = 128;

/// How many clean octets the encoder checks before copying them out, so
/// that the copy reads them from the L1 cache.
const FLUSH: usize = 8 * 1024;

/// Whether an octet of `cur` is an LF without a CR before it or with a `.`
/// after it; `prev` and `next` are `cur` shifted by one octet either way.
/// Written so that the compiler vectorises it: no early exit, no bounds
/// checks.
#[inline]
fn needs_work(prev: &[u8; BLOCK], cur: &[u8; BLOCK], next: &[u8; BLOCK]) -> bool {
    let mut acc = 0u8;
    for i in 0..BLOCK {
        let (p, c, n) = (prev[i], cur[i], next[i]);
        acc |= u8::from(c == b'\n') & (u8::from(p != b'\r') | u8::from(n == b'.'));
    }
    acc != 0
}

/// Whether an octet of `cur` is an LF without a CR before it; `prev` is
/// `cur` shifted back by one octet.
#[inline]
fn has_bare_lf(prev: &[u8; BLOCK], cur: &[u8; BLOCK]) -> bool {
    let mut acc = 0u8;
    for i in 0..BLOCK {
        acc |= u8::from(cur[i] == b'\n') & u8::from(prev[i] != b'\r');
    }
    acc != 0
}

/// The three views of the block at `pos` that [`needs_work`] takes, when
/// the octets before and after it are in `chunk`.
#[inline]
#[allow(clippy::type_complexity)]
fn block_at(chunk: &[u8], pos: usize) -> Option<(&[u8; BLOCK], &[u8; BLOCK], &[u8; BLOCK])> {
    let from = pos.checked_sub(1)?;
    let window = chunk.get(from..pos + BLOCK + 1)?;
    Some((
        window[..BLOCK].try_into().ok()?,
        window[1..BLOCK + 1].try_into().ok()?,
        window[2..].try_into().ok()?,
    ))
}

/// TOP: where we are in the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Top {
    /// Still in the header (before the first empty line).
    in_header: bool,
    /// Body lines still to pass.
    remaining: u64,
    /// The header line being read so far: 0 empty, 1 a lone CR, 2 other.
    line: u8,
}

impl Top {
    fn extend_line(&mut self, part: &[u8]) {
        if !part.is_empty() {
            self.line = if self.line == 0 && part == b"\r" {
                1
            } else {
                2
            };
        }
    }
}

/// Streaming encoder of a multi-line body: dot-stuffing, bare LF → CRLF, a
/// final CRLF added when missing, and the terminator.
///
/// Chunks of any size go in; a CRLF split across two chunks stays one line
/// end, a CR not followed by LF is passed on as is, 8-bit octets and NUL
/// are passed on unchanged. The output is written into a `BytesMut`; runs
/// of octets between line ends that need no change are copied wholesale.
///
/// ```
/// use bytes::BytesMut;
/// use pop3_proto::dot::BodyEncoder;
///
/// let mut out = BytesMut::new();
/// let mut enc = BodyEncoder::new();
/// enc.encode(b"a\r", &mut out);
/// enc.encode(b"\n.b\nc", &mut out);
/// enc.finish(&mut out);
/// assert_eq!(&out[..], b"a\r\n..b\r\nc\r\n.\r\n");
/// assert_eq!(enc.octets(), 10); // what LIST reports: no stuffing, no terminator
/// ```
#[derive(Debug, Clone)]
pub struct BodyEncoder {
    /// The next octet starts a line.
    at_line_start: bool,
    /// The last octet taken was a CR.
    prev_cr: bool,
    top: Option<Top>,
    complete: bool,
    finished: bool,
    octets: u64,
}

impl Default for BodyEncoder {
    fn default() -> Self {
        BodyEncoder::new()
    }
}

impl BodyEncoder {
    /// An encoder for a whole message (RETR).
    pub fn new() -> Self {
        BodyEncoder {
            at_line_start: true,
            prev_cr: false,
            top: None,
            complete: false,
            finished: false,
            octets: 0,
        }
    }

    /// An encoder for `TOP msg n`: the header, the empty line after it, and
    /// the first `lines` lines of the body; the whole message when it has no
    /// more lines than that (or no empty line at all).
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use pop3_proto::dot::BodyEncoder;
    ///
    /// let mut out = BytesMut::new();
    /// let mut enc = BodyEncoder::top(1);
    /// enc.encode(b"From: a\r\n\r\none\r\ntwo\r\n", &mut out);
    /// assert!(enc.is_complete()); // stop reading the message
    /// enc.finish(&mut out);
    /// assert_eq!(&out[..], b"From: a\r\n\r\none\r\n.\r\n");
    /// ```
    pub fn top(lines: u64) -> Self {
        BodyEncoder {
            top: Some(Top {
                in_header: true,
                remaining: lines,
                line: 0,
            }),
            ..BodyEncoder::new()
        }
    }

    /// Whether no more input is wanted: a TOP encoder has passed its last
    /// line (further input is ignored), or [`finish`](BodyEncoder::finish)
    /// was called. The caller can stop reading the message and call
    /// `finish`.
    pub fn is_complete(&self) -> bool {
        self.complete || self.finished
    }

    /// The octets of the message sent so far, counted as RFC 1939 §11 does:
    /// line ends as CRLF, stuffing dots and the terminator excluded. After
    /// [`finish`](BodyEncoder::finish) on a whole message this equals
    /// [`octet_count`] of the message.
    pub fn octets(&self) -> u64 {
        self.octets
    }

    /// Appends the encoding of `chunk` to `dst`.
    pub fn encode(&mut self, chunk: &[u8], dst: &mut BytesMut) {
        if self.is_complete() || chunk.is_empty() {
            return;
        }
        let take = match self.top {
            Some(_) => self.top_cut(chunk),
            None => chunk.len(),
        };
        self.stuff(&chunk[..take], dst);
    }

    /// For TOP: how much of `chunk` to pass; marks the encoder complete when
    /// the last wanted line ends inside it.
    fn top_cut(&mut self, chunk: &[u8]) -> usize {
        let Some(top) = self.top.as_mut() else {
            return chunk.len();
        };
        let mut pos = 0;
        while let Some(i) = memchr::memchr(b'\n', &chunk[pos..]) {
            let lf = pos + i;
            if top.in_header {
                top.extend_line(&chunk[pos..lf]);
                if top.line < 2 {
                    top.in_header = false;
                }
                top.line = 0;
            } else {
                top.remaining = top.remaining.saturating_sub(1);
            }
            pos = lf + 1;
            if !top.in_header && top.remaining == 0 {
                self.complete = true;
                return pos;
            }
        }
        if top.in_header {
            top.extend_line(&chunk[pos..]);
        }
        chunk.len()
    }

    /// Dot-stuffing and bare LF → CRLF.
    fn stuff(&mut self, chunk: &[u8], dst: &mut BytesMut) {
        let Some(&last) = chunk.last() else {
            return;
        };
        dst.reserve(chunk.len() + chunk.len() / 32 + 2);
        if self.at_line_start && chunk[0] == b'.' {
            dst.put_u8(b'.');
        }
        let mut added = 0u64;
        // `run`: the start of the octets not yet copied; every LF before
        // `pos` has been dealt with.
        let mut run = 0;
        let mut pos = 0;
        // Bare-LF mode: the last LF seen was bare, so the next ones likely
        // are too (an LF-only message): go from LF to LF over the whole
        // chunk instead of checking blocks, until an LF with a CR.
        let mut bare_mode = false;
        while pos < chunk.len() {
            if !bare_mode {
                // Fast path: skip blocks without an LF that needs work.
                while let Some((prev, cur, next)) = block_at(chunk, pos) {
                    if needs_work(prev, cur, next) {
                        break;
                    }
                    pos += BLOCK;
                    if pos - run >= FLUSH {
                        dst.extend_from_slice(&chunk[run..pos]);
                        run = pos;
                    }
                }
            }
            let start = pos;
            let end = if bare_mode {
                chunk.len()
            } else {
                chunk.len().min(pos + BLOCK)
            };
            pos = end;
            for i in memchr::memchr_iter(b'\n', &chunk[start..end]) {
                let lf = start + i;
                let cr = if lf == 0 {
                    self.prev_cr
                } else {
                    chunk[lf - 1] == b'\r'
                };
                if !cr {
                    dst.extend_from_slice(&chunk[run..lf]);
                    dst.put_u8(b'\r');
                    added += 1;
                    run = lf;
                }
                if chunk.get(lf + 1) == Some(&b'.') {
                    dst.extend_from_slice(&chunk[run..lf + 1]);
                    dst.put_u8(b'.');
                    run = lf + 1;
                }
                if bare_mode == cr {
                    // Switch: back to the blocks after a CRLF, or on from
                    // LF to LF after a bare LF.
                    bare_mode = !cr;
                    pos = lf + 1;
                    break;
                }
            }
        }
        dst.extend_from_slice(&chunk[run..]);
        self.prev_cr = last == b'\r';
        self.at_line_start = last == b'\n';
        self.octets += chunk.len() as u64 + added;
    }

    /// Ends the body: a CRLF if the last line lacked one, then `.` CRLF.
    /// Calling it again does nothing.
    pub fn finish(&mut self, dst: &mut BytesMut) {
        if self.finished {
            return;
        }
        self.finished = true;
        if !self.at_line_start {
            dst.extend_from_slice(b"\r\n.\r\n");
            self.octets += 2;
        } else {
            dst.extend_from_slice(b".\r\n");
        }
    }
}

/// Streaming RFC 1939 §11 message size: what LIST and STAT report.
///
/// Every line end counts as CRLF (a bare LF counts two), a CR not followed
/// by LF counts one, stuffing dots and the terminator are not counted, and a
/// last line without a line end counts two more for the CRLF that RETR adds.
/// The result therefore equals what [`BodyEncoder`] sends for the message
/// minus its stuffing dots and the terminator, as RFC 6856 §2.1 asks (some
/// servers leave out the CRLF they add to an unterminated last line; we
/// count it, since it is sent).
///
/// ```
/// use pop3_proto::dot::OctetCounter;
///
/// let mut counter = OctetCounter::new();
/// counter.feed(b"Subject: x\n");
/// counter.feed(b"\n.body");
/// assert_eq!(counter.finish(), 12 + 2 + 7);
/// ```
#[derive(Debug, Clone, Default)]
pub struct OctetCounter {
    count: u64,
    prev_cr: bool,
    /// Some octets were fed and the last one was not an LF.
    open_line: bool,
}

impl OctetCounter {
    /// A counter at the start of a message.
    pub fn new() -> Self {
        OctetCounter::default()
    }

    /// Counts the next chunk of the message.
    pub fn feed(&mut self, chunk: &[u8]) {
        let Some(&last) = chunk.last() else {
            return;
        };
        let mut count = chunk.len() as u64;
        let mut pos = 0;
        while pos < chunk.len() {
            // Fast path: skip blocks where every LF has a CR before it.
            while let Some((prev, cur, _)) = block_at(chunk, pos) {
                if has_bare_lf(prev, cur) {
                    break;
                }
                pos += BLOCK;
            }
            let end = chunk.len().min(pos + BLOCK);
            for lf in memchr::memchr_iter(b'\n', &chunk[pos..end]) {
                let lf = pos + lf;
                let cr = if lf == 0 {
                    self.prev_cr
                } else {
                    chunk[lf - 1] == b'\r'
                };
                count += u64::from(!cr);
            }
            pos = end;
        }
        self.count += count;
        self.prev_cr = last == b'\r';
        self.open_line = last != b'\n';
    }

    /// The size of the message fed so far.
    pub fn finish(&self) -> u64 {
        self.count + if self.open_line { 2 } else { 0 }
    }
}

/// The RFC 1939 §11 size of a whole message; see [`OctetCounter`].
///
/// ```
/// use pop3_proto::dot::octet_count;
///
/// assert_eq!(octet_count(b""), 0);
/// assert_eq!(octet_count(b"a\nb\r\n"), 6);
/// assert_eq!(octet_count(b"no line end"), 13);
/// ```
pub fn octet_count(message: &[u8]) -> u64 {
    let mut counter = OctetCounter::new();
    counter.feed(message);
    counter.finish()
}
