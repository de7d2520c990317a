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
//!   [`BodyEncoder::top`] only the header and the first `n` body lines. The
//!   output is either copied into a `BytesMut` or handed out as pieces that
//!   share the long unchanged runs of the input
//!   ([`encode_pieces`](BodyEncoder::encode_pieces)).
//! * [`OctetCounter`] / [`octet_count`]: the size LIST and STAT report.
//!
//! The scans over the octets are written so that the compiler vectorises
//! them with the vector instructions the build targets: SSE2 on x86-64 by
//! default, AVX2 in a build for `x86-64-v3` or a newer CPU (`RUSTFLAGS="-C
//! target-cpu=x86-64-v3"`, or `native`), where they run faster. All of it is
//! safe code.
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

use alloc::vec::Vec;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use core::fmt;
use core::ops::Range;

/// What the body decoder produced.
///
/// Exhaustive on purpose: a dot-stuffed body is octets and then its end,
/// and a caller's match must stay total over them; a new case would change
/// what every caller has to do, so it could only come with a breaking
/// release.
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
/// responses.
///
/// The choice must therefore come from what the server itself writes, never
/// from the message: [`LineEnds::of_status_line`] takes it from the line end
/// of the `+OK` line that precedes the body, which is how the
/// [`Client`](crate::client::Client) decodes every body. [`LineEnds::Detect`]
/// (the default of [`BodyDecoder::new`], for callers that have no status
/// line) decides from the body's first line end instead, which the message's
/// author controls: a message whose first line ends in a bare LF switches it
/// to [`LineEnds::Lenient`].
///
/// ```
/// use pop3_proto::dot::LineEnds;
/// assert_eq!(LineEnds::of_status_line(b"+OK 120 octets\r\n"), LineEnds::Strict);
/// assert_eq!(LineEnds::of_status_line(b"+OK 120 octets\n"), LineEnds::Lenient);
/// ```
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

impl LineEnds {
    /// The line ends of a server, from one of its status lines as received
    /// (line end included): [`Lenient`](LineEnds::Lenient) when it ends in a
    /// bare LF (an LF-only server), [`Strict`](LineEnds::Strict) otherwise.
    pub fn of_status_line(line: &[u8]) -> LineEnds {
        match line {
            [.., b'\r', b'\n'] => LineEnds::Strict,
            [.., b'\n'] => LineEnds::Lenient,
            _ => LineEnds::Strict,
        }
    }
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
        while let Some(i) = find_lf_dot(&src[from..]) {
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

// The scans below look at blocks of octets with loops written so that the
// compiler vectorises them: no early exit, no bounds checks, and a minimum
// over positions where a search would stop early. They are compiled for
// the target's baseline (SSE2 on x86-64): choosing wider instructions at
// run time needs code that calls `#[target_feature]` functions, which only
// `unsafe` can do, and the crate has none; a build for a wider target gets
// wider instructions from the same loops. Mail has few places that need
// work (a line starting with `.`, a bare LF), so nearly all octets pass
// through a block check and then a bulk copy, or no copy at all.

/// The octets a block check looks at.
const BLOCK: usize = 128;

// Positions in a block and counts of a block's octets fit in a `u8`.
const _: () = assert!(BLOCK <= u8::MAX as usize);

/// The most octets the encoder copies at once. Small copies take the vector
/// loop of the C library's `memcpy`; large ones can take the string
/// instructions, which run many times slower on some CPUs when the output
/// is shifted against the input, as every stuffing dot and added CR shifts
/// it (measured: 4 KiB pieces shifted by one octet copied 18 times slower
/// than unshifted ones on an AMD Zen 3 with glibc 2.36).
const PIECE: usize = 1024;

/// Appends `octets` to `dst`, at most `PIECE` octets at a time.
#[inline(always)]
fn put(dst: &mut BytesMut, octets: &[u8]) {
    for piece in octets.chunks(PIECE) {
        dst.extend_from_slice(piece);
    }
}

/// The `N` octets of `hay` from `from` on, when it has them: a block and the
/// octets just before or after it that its check looks at.
#[inline(always)]
fn window<const N: usize>(hay: &[u8], from: usize) -> Option<&[u8; N]> {
    hay.get(from..)?.first_chunk()
}

/// The block at offset `k` of a window: the window seen shifted by `k`
/// octets. Separate views of one window make the compiler load each shift
/// from memory instead of shuffling vectors.
#[inline(always)]
fn view<const N: usize>(w: &[u8; N], k: usize) -> &[u8; BLOCK] {
    w[k..]
        .first_chunk()
        .expect("a window holds its block and the neighbours its check needs")
}

/// The decoder's mark: an LF (`c`) followed by a `.` (`n`).
#[inline(always)]
fn lf_dot(c: u8, n: u8) -> bool {
    (c == b'\n') & (n == b'.')
}

/// The encoder's mark: an LF (`c`) without a CR before it (`p`) or with a
/// `.` after it (`n`).
#[inline(always)]
fn lf_needing_work(p: u8, c: u8, n: u8) -> bool {
    (c == b'\n') & ((p != b'\r') | (n == b'.'))
}

/// Whether the block `w[..BLOCK]` has an LF followed by a `.`.
#[inline(always)]
fn has_lf_dot(w: &[u8; BLOCK + 1]) -> bool {
    let (cur, next) = (view(w, 0), view(w, 1));
    let mut acc = 0u8;
    for i in 0..BLOCK {
        acc |= u8::from(lf_dot(cur[i], next[i]));
    }
    acc != 0
}

/// Where in the block `w[..BLOCK]` its first LF followed by a `.` is
/// (`BLOCK` if it has none): a minimum over the positions, which vectorises
/// where a search with an early exit would not.
#[inline(always)]
fn first_lf_dot(w: &[u8; BLOCK + 1]) -> usize {
    let (cur, next) = (view(w, 0), view(w, 1));
    let mut first = u8::MAX;
    for i in 0..BLOCK {
        let hit = lf_dot(cur[i], next[i]);
        first = first.min(if hit { i as u8 } else { u8::MAX });
    }
    usize::from(first).min(BLOCK)
}

/// Where in `w` its first LF is (`BLOCK` if it has none).
#[inline(always)]
fn first_lf(w: &[u8; BLOCK]) -> usize {
    let mut first = u8::MAX;
    for (i, &c) in w.iter().enumerate() {
        first = first.min(if c == b'\n' { i as u8 } else { u8::MAX });
    }
    usize::from(first).min(BLOCK)
}

/// Where in the block `w[1..=BLOCK]` its first LF is that [`needs_work`]
/// (`BLOCK` if it has none).
#[inline(always)]
fn first_work(w: &[u8; BLOCK + 2]) -> usize {
    let (prev, cur, next) = (view(w, 0), view(w, 1), view(w, 2));
    let mut first = u8::MAX;
    for i in 0..BLOCK {
        let hit = lf_needing_work(prev[i], cur[i], next[i]);
        first = first.min(if hit { i as u8 } else { u8::MAX });
    }
    usize::from(first).min(BLOCK)
}

/// Whether the block `w[1..=BLOCK]` has an LF without a CR before it or with
/// a `.` after it.
#[inline(always)]
fn needs_work(w: &[u8; BLOCK + 2]) -> bool {
    let (prev, cur, next) = (view(w, 0), view(w, 1), view(w, 2));
    let mut acc = 0u8;
    for i in 0..BLOCK {
        acc |= u8::from(lf_needing_work(prev[i], cur[i], next[i]));
    }
    acc != 0
}

/// How many LFs without a CR before them the block `w[1..]` has.
#[inline(always)]
fn count_bare_lf(w: &[u8; BLOCK + 1]) -> u8 {
    let (prev, cur) = (view(w, 0), view(w, 1));
    let mut n = 0u8;
    for i in 0..BLOCK {
        n += u8::from(cur[i] == b'\n') & u8::from(prev[i] != b'\r');
    }
    n
}

/// Where the first LF at or after `pos` in `chunk` is that needs work from
/// the encoder: one without a CR before it (`prev_cr`: the octet before the
/// chunk was a CR) or with a `.` after it.
#[inline(always)]
fn next_work(chunk: &[u8], mut pos: usize, prev_cr: bool) -> Option<usize> {
    loop {
        if let Some(w) = pos.checked_sub(1).and_then(|from| window(chunk, from)) {
            if needs_work(w) {
                return Some(pos + first_work(w));
            }
            pos += BLOCK;
            continue;
        }
        // No whole window here: the chunk's first block or its last octets.
        let end = chunk.len().min(pos + BLOCK);
        let found = memchr::memchr_iter(b'\n', &chunk[pos..end])
            .map(|i| pos + i)
            .find(|&lf| {
                let cr = if lf == 0 {
                    prev_cr
                } else {
                    chunk[lf - 1] == b'\r'
                };
                !cr || chunk.get(lf + 1) == Some(&b'.')
            });
        if found.is_some() || end == chunk.len() {
            return found;
        }
        pos = end;
    }
}

/// Where the first LF at or after `pos` in `chunk` is.
#[inline(always)]
fn next_lf(chunk: &[u8], mut pos: usize) -> Option<usize> {
    while let Some(w) = window::<BLOCK>(chunk, pos) {
        let k = first_lf(w);
        if k < BLOCK {
            return Some(pos + k);
        }
        pos += BLOCK;
    }
    memchr::memchr(b'\n', &chunk[pos..]).map(|i| pos + i)
}

/// Where the first LF followed by a `.` is in `hay` (the decoder's search).
fn find_lf_dot(hay: &[u8]) -> Option<usize> {
    let mut pos = 0;
    while let Some(w) = window(hay, pos) {
        if has_lf_dot(w) {
            return Some(pos + first_lf_dot(w));
        }
        pos += BLOCK;
    }
    let rest = hay.get(pos..)?;
    memchr::memchr_iter(b'\n', rest)
        .find(|&lf| rest.get(lf + 1) == Some(&b'.'))
        .map(|lf| pos + lf)
}

/// Where a message's header section ends, found line by line across
/// chunks: at the first empty line, one with nothing before its line end
/// (RFC 5322 §2.1): a CRLF, or a bare LF (a lone CR before the LF, or
/// nothing). A line of several CRs is not empty: it is a header line.
///
/// The one rule for both readers of the header section: TOP counts body
/// lines from there, and the server holds a RETR or TOP reply until the
/// header section is known to be ASCII (RFC 6856), so the two can never
/// disagree on what is header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct HeaderLine {
    /// The line so far: 0 nothing, 1 a lone CR, 2 anything else.
    seen: u8,
}

impl HeaderLine {
    /// Takes octets of the current line (no LF among them; any length,
    /// including none).
    pub(crate) fn extend(&mut self, part: &[u8]) {
        if !part.is_empty() {
            self.seen = if self.seen == 0 && part == b"\r" {
                1
            } else {
                2
            };
        }
    }

    /// The current line ends (an LF was read): whether it was empty, which
    /// ends the header section. The next line starts empty.
    pub(crate) fn end(&mut self) -> bool {
        let empty = self.seen < 2;
        self.seen = 0;
        empty
    }
}

/// TOP: where we are in the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Top {
    /// Still in the header (before the first empty line).
    in_header: bool,
    /// Body lines still to pass.
    remaining: u64,
    /// The header line being read.
    line: HeaderLine,
}

/// Streaming encoder of a multi-line body: dot-stuffing, bare LF → CRLF, a
/// final CRLF added when missing, and the terminator.
///
/// Chunks of any size go in; a CRLF split across two chunks stays one line
/// end, a CR not followed by LF is passed on as is, 8-bit octets and NUL
/// are passed on unchanged. [`encode`](BodyEncoder::encode) writes the
/// output into a `BytesMut`, copying runs of octets that need no change
/// wholesale; [`encode_pieces`](BodyEncoder::encode_pieces) hands long runs
/// out as slices of the input instead. Both can be mixed on one body.
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
    /// Where [`encode_pieces`](BodyEncoder::encode_pieces) gathers what it
    /// copies (kept to reuse its memory).
    stage: BytesMut,
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
            stage: BytesMut::new(),
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
                line: HeaderLine::default(),
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
        let take = self.take(chunk);
        self.stuff(&chunk[..take], dst);
    }

    /// Appends the encoding of `chunk` to `out` as pieces, sharing the
    /// octets of `chunk` instead of copying them where it can: a run of at
    /// least [`SHARE_MIN`] octets that needs no change goes out as a slice
    /// of `chunk`; what lies between such runs (short runs and the octets the
    /// encoder adds) is copied into a piece of its own. Together the pieces
    /// hold exactly what [`encode`](BodyEncoder::encode) would append.
    ///
    /// A server whose store hands out message octets as `Bytes` copies
    /// little of a message this way: mail is mostly long clean runs (a
    /// base64 attachment has no line that starts with `.`).
    ///
    /// ```
    /// use bytes::Bytes;
    /// use pop3_proto::dot::{BodyEncoder, SHARE_MIN};
    ///
    /// let mut message = b"Subject: hi\r\n\r\n".to_vec();
    /// message.extend(b"0123456789abcdef".repeat(SHARE_MIN / 16 * 2));
    /// message.extend(b"\r\n.signature\r\n");
    /// let message = Bytes::from(message);
    ///
    /// let mut pieces = Vec::new();
    /// let mut enc = BodyEncoder::new();
    /// enc.encode_pieces(&message, &mut pieces);
    /// let wire: Vec<u8> = pieces.concat();
    /// assert!(wire.ends_with(b"\r\n..signature\r\n"));
    /// // The long run is a slice of `message`, not a copy.
    /// assert!(pieces.iter().any(|p| p.len() >= SHARE_MIN
    ///     && message.as_ptr_range().contains(&p.as_ptr())));
    /// ```
    pub fn encode_pieces(&mut self, chunk: &Bytes, out: &mut Vec<Bytes>) {
        let take = self.take(chunk);
        let mut stage = core::mem::take(&mut self.stage);
        let mut sink = Pieces {
            chunk,
            out,
            stage: &mut stage,
        };
        self.stuff(&chunk[..take], &mut sink);
        sink.flush();
        self.stage = stage;
    }

    /// How much of `chunk` the encoder passes on: none once it is complete,
    /// and for TOP up to the end of the last wanted line.
    fn take(&mut self, chunk: &[u8]) -> usize {
        if self.is_complete() {
            return 0;
        }
        match self.top {
            Some(_) => self.top_cut(chunk),
            None => chunk.len(),
        }
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
                top.line.extend(&chunk[pos..lf]);
                if top.line.end() {
                    top.in_header = false;
                }
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
            top.line.extend(&chunk[pos..]);
        }
        chunk.len()
    }

    /// Dot-stuffing and bare LF → CRLF.
    fn stuff<K: Sink>(&mut self, chunk: &[u8], dst: &mut K) {
        let Some(&last) = chunk.last() else {
            return;
        };
        dst.reserve(chunk.len() + chunk.len() / 32 + 2);
        if self.at_line_start && chunk[0] == b'.' {
            dst.add(b'.');
        }
        let mut added = 0u64;
        // `run`: the start of the octets not yet copied; every LF before
        // `pos` has been dealt with.
        let mut run = 0;
        let mut pos = 0;
        // Bare-LF mode: the last LF was bare, so the next ones likely are
        // too (an LF-only message), and every LF needs work: go from LF to
        // LF. After a CRLF, go back to skipping blocks that need none.
        let mut bare_mode = false;
        while let Some(lf) = if bare_mode {
            next_lf(chunk, pos)
        } else {
            next_work(chunk, pos, self.prev_cr)
        } {
            let cr = if lf == 0 {
                self.prev_cr
            } else {
                chunk[lf - 1] == b'\r'
            };
            if !cr {
                dst.run(chunk, run..lf);
                dst.add(b'\r');
                added += 1;
                run = lf;
            }
            if chunk.get(lf + 1) == Some(&b'.') {
                dst.run(chunk, run..lf + 1);
                dst.add(b'.');
                run = lf + 1;
            }
            bare_mode = !cr;
            pos = lf + 1;
        }
        dst.run(chunk, run..chunk.len());
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

/// The shortest run of unchanged octets that
/// [`encode_pieces`](BodyEncoder::encode_pieces) hands out as a slice of its
/// input rather than a copy. Below it, copying costs less than another
/// piece: its reference count, and one more write for whoever sends it.
pub const SHARE_MIN: usize = 1024;

/// Where the encoder's output goes.
trait Sink {
    /// Makes room for about `additional` more octets.
    fn reserve(&mut self, additional: usize);
    /// `chunk[range]`, unchanged.
    fn run(&mut self, chunk: &[u8], range: Range<usize>);
    /// An octet the encoder adds.
    fn add(&mut self, octet: u8);
}

impl Sink for BytesMut {
    #[inline(always)]
    fn reserve(&mut self, additional: usize) {
        BytesMut::reserve(self, additional);
    }

    #[inline(always)]
    fn run(&mut self, chunk: &[u8], range: Range<usize>) {
        put(self, &chunk[range]);
    }

    #[inline(always)]
    fn add(&mut self, octet: u8) {
        self.put_u8(octet);
    }
}

/// The output of [`BodyEncoder::encode_pieces`]: long runs as slices of the
/// input, everything else gathered in `stage`.
struct Pieces<'a> {
    chunk: &'a Bytes,
    out: &'a mut Vec<Bytes>,
    stage: &'a mut BytesMut,
}

impl Pieces<'_> {
    /// Hands out what the stage holds as a piece.
    fn flush(&mut self) {
        if !self.stage.is_empty() {
            self.out.push(self.stage.split().freeze());
        }
    }
}

impl Sink for Pieces<'_> {
    #[inline(always)]
    fn reserve(&mut self, additional: usize) {
        self.stage.reserve(additional);
    }

    #[inline(always)]
    fn run(&mut self, chunk: &[u8], range: Range<usize>) {
        if range.len() >= SHARE_MIN {
            self.flush();
            self.out.push(self.chunk.slice(range));
        } else {
            put(self.stage, &chunk[range]);
        }
    }

    #[inline(always)]
    fn add(&mut self, octet: u8) {
        self.stage.put_u8(octet);
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
        // Every octet counts one, and every bare LF one more for its CR.
        let mut count = chunk.len() as u64;
        count += u64::from(chunk[0] == b'\n' && !self.prev_cr);
        let mut pos = 1;
        while let Some(w) = window(chunk, pos - 1) {
            count += u64::from(count_bare_lf(w));
            pos += BLOCK;
        }
        for lf in memchr::memchr_iter(b'\n', &chunk[pos..]) {
            count += u64::from(chunk[pos + lf - 1] != b'\r');
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

#[cfg(test)]
mod tests {
    //! The integration tests check the scans against reference
    //! implementations; these check the encoder's two outputs, the counter
    //! and the decoder against each other on random bodies in random
    //! chunks.

    use super::*;
    use alloc::vec::Vec;

    /// A deterministic pseudo-random generator (xorshift64*).
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
        }
    }

    /// Mostly long clean lines, with everything that needs work sprinkled
    /// in: lines starting with `.`, bare LFs, lone CRs, `.` CR, 8-bit octets.
    fn body(rng: &mut Rng) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..rng.below(40) {
            match rng.below(10) {
                0 => out.push(b'.'),
                1 => out.push(b'\r'),
                2 => out.push(b'\n'),
                3 => out.extend_from_slice(b"\r\n.\r\n"),
                4 => out.push(rng.below(256) as u8),
                _ => {
                    let n = rng.below(400);
                    out.extend((0..n).map(|i| b'a' + (i % 26) as u8));
                    out.extend_from_slice(if rng.below(3) == 0 { b"\n" } else { b"\r\n" });
                }
            }
        }
        out
    }

    /// `input` cut into chunks at random points.
    fn chunks<'a>(rng: &mut Rng, input: &'a [u8]) -> Vec<&'a [u8]> {
        let mut out = Vec::new();
        let mut rest = input;
        while !rest.is_empty() {
            let n = 1 + rng.below(rest.len().min(3000));
            let (head, tail) = rest.split_at(n);
            out.push(head);
            rest = tail;
        }
        out
    }

    fn encode(top: Option<u64>, chunks: &[&[u8]]) -> (Vec<u8>, Vec<u8>, u64) {
        let new = || top.map_or_else(BodyEncoder::new, BodyEncoder::top);
        let (mut copying, mut sharing) = (new(), new());
        let mut copied = BytesMut::new();
        let mut shared = Vec::new();
        let mut pieces = Vec::new();
        for chunk in chunks {
            copying.encode(chunk, &mut copied);
            sharing.encode_pieces(&Bytes::copy_from_slice(chunk), &mut pieces);
            for piece in pieces.drain(..) {
                shared.extend_from_slice(&piece);
            }
        }
        copying.finish(&mut copied);
        let mut end = BytesMut::new();
        sharing.finish(&mut end);
        shared.extend_from_slice(&end);
        (copied.to_vec(), shared, copying.octets())
    }

    fn decode(line_ends: LineEnds, chunks: &[&[u8]]) -> (Vec<BodyEvent>, usize) {
        let mut dec = BodyDecoder::with_line_ends(line_ends);
        let mut buf = BytesMut::new();
        let mut events = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            while let Some(event) = dec.decode(&mut buf) {
                events.push(event);
            }
        }
        (events, buf.len())
    }

    fn count(chunks: &[&[u8]]) -> u64 {
        let mut counter = OctetCounter::new();
        for chunk in chunks {
            counter.feed(chunk);
        }
        counter.finish()
    }

    #[test]
    fn in_chunks_the_copy_and_the_pieces_agree_the_count_is_the_size_and_decoding_restores_the_body()
     {
        let mut rng = Rng(0x5eed_0fb0_d1e5);
        for _ in 0..2000 {
            let body = body(&mut rng);
            let pieces = chunks(&mut rng, &body);
            let top = (rng.below(4) == 0).then(|| rng.below(20) as u64);
            let (copied, shared, octets) = encode(top, &pieces);
            assert_eq!(copied, shared, "pieces differ from the copy");
            if top.is_none() {
                assert_eq!(count(&pieces), octets, "the counter and the encoder differ");
                assert_eq!(octet_count(&body), octets);
            }

            // The encoded body decodes to what was sent (CRLF line ends,
            // no stuffing), whatever the chunks and the line-end mode.
            let cut = chunks(&mut rng, &copied);
            let whole = decode(LineEnds::Strict, &[&copied]);
            assert_eq!(whole.1, 0, "octets left after the terminator");
            assert_eq!(whole.0.last(), Some(&BodyEvent::End));
            let data = |events: &[BodyEvent]| {
                let mut out = Vec::new();
                for event in events {
                    if let BodyEvent::Data(chunk) = event {
                        out.extend_from_slice(chunk);
                    }
                }
                out
            };
            let unstuffed = data(&whole.0);
            for line_ends in [LineEnds::Strict, LineEnds::Lenient, LineEnds::Detect] {
                assert_eq!(data(&decode(line_ends, &cut).0), unstuffed, "{line_ends:?}");
            }
            if top.is_none() {
                assert_eq!(unstuffed.len() as u64, octets);
            }
        }
    }
}
