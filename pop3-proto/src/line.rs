//! The line framer: finds lines in a byte stream under explicit limits.
//!
//! Lines end with LF; a CR right before it is part of the line end. Each kind
//! of line has its own limit ([`Limits`]); an over-long line is reported once
//! as [`LineError::TooLong`] as soon as the limit is passed (memory stays
//! bounded), and the framer then discards input up to the next LF and carries
//! on with the line after it.

use bytes::{Buf, Bytes, BytesMut};
use core::fmt;

/// The line-length limits, in octets including the line end.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
#[must_use = "a configuration does nothing until it is used"]
pub struct Limits {
    /// A command line (RFC 2449 §4: 255 in the strict profile).
    pub command_line: usize,
    /// A SASL line in either direction (RFC 5034 §4: "may be of arbitrary length").
    pub sasl_line: usize,
    /// A first response line or greeting (RFC 2449 §4: 512 in the strict profile).
    pub response_line: usize,
    /// A line inside a listing (CAPA, LIST, UIDL, LANG).
    pub listing_line: usize,
}

impl Limits {
    /// The RFC limits: 255-octet commands, 512-octet response lines, 64 KiB SASL lines.
    pub const fn strict() -> Self {
        Limits {
            command_line: 255,
            sasl_line: 64 * 1024,
            response_line: 512,
            listing_line: 512,
        }
    }

    /// Limits that real peers need: 8 KiB commands and response lines, 64 KiB SASL lines.
    pub const fn lenient() -> Self {
        Limits {
            command_line: 8 * 1024,
            sasl_line: 64 * 1024,
            response_line: 8 * 1024,
            listing_line: 8 * 1024,
        }
    }
}

impl Default for Limits {
    /// The lenient profile.
    fn default() -> Self {
        Limits::lenient()
    }
}

/// An error from the framer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LineError {
    /// The line exceeded `limit` octets. The rest of it is discarded.
    TooLong {
        /// The limit in force.
        limit: usize,
    },
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineError::TooLong { limit } => write!(f, "line longer than {limit} octets"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for LineError {}

/// Finds the first line in `input` without consuming anything.
///
/// Returns `(line_len, consumed)`: the line is `input[..line_len]` (line end
/// excluded) and `consumed` octets include its line end. `Ok(None)` when no LF
/// has arrived yet and the limit is not yet passed; [`LineError::TooLong`] as
/// soon as the line cannot fit in `max_len` octets, line end included.
///
/// ```
/// use pop3_proto::line::find_line;
/// assert_eq!(find_line(b"+OK\r\nrest", 512), Ok(Some((3, 5))));
/// assert_eq!(find_line(b"+OK", 512), Ok(None));
/// assert!(find_line(b"+OK too long", 4).is_err());
/// ```
pub fn find_line(input: &[u8], max_len: usize) -> Result<Option<(usize, usize)>, LineError> {
    match memchr::memchr(b'\n', input) {
        Some(lf) if lf < max_len => {
            let end = if lf > 0 && input[lf - 1] == b'\r' {
                lf - 1
            } else {
                lf
            };
            Ok(Some((end, lf + 1)))
        }
        Some(_) => Err(LineError::TooLong { limit: max_len }),
        None if input.len() >= max_len => Err(LineError::TooLong { limit: max_len }),
        None => Ok(None),
    }
}

/// A stateful line framer over a `BytesMut` input buffer.
///
/// Each call to [`next_line`](LineFramer::next_line) removes at most one line
/// from the front of the buffer and hands it out zero-copy (the buffer is
/// split and frozen), without its line end: the LF and a CR right before it
/// are dropped, a CR anywhere else stays in the line.
///
/// The framer remembers how far it has already looked for an LF, so feeding
/// a line one octet at a time costs linear, not quadratic, time. An
/// over-long line is reported once, as soon as the buffered part of it passes
/// the limit; what was buffered of it is dropped at once (memory stays
/// bounded), and the rest of it is dropped as it arrives, up to and including
/// the next LF. The octets after that LF form the next line. Splitting the
/// input anywhere never changes the sequence of lines and errors returned.
///
/// ```
/// use bytes::BytesMut;
/// use pop3_proto::line::{LineError, LineFramer};
///
/// let mut framer = LineFramer::new(8);
/// let mut buf = BytesMut::from(&b"+OK\r\nthis is too long\r\n-ERR"[..]);
/// assert_eq!(framer.next_line(&mut buf).unwrap().unwrap(), &b"+OK"[..]);
/// assert_eq!(framer.next_line(&mut buf), Err(LineError::TooLong { limit: 8 }));
/// assert_eq!(framer.next_line(&mut buf), Ok(None));
/// buf.extend_from_slice(b"\r\n");
/// assert_eq!(framer.next_line(&mut buf).unwrap().unwrap(), &b"-ERR"[..]);
/// ```
#[derive(Debug, Clone)]
pub struct LineFramer {
    max_len: usize,
    /// The front `scanned` octets of the buffer hold no LF.
    scanned: usize,
    /// Dropping the rest of an over-long line, up to the next LF.
    discarding: bool,
}

impl LineFramer {
    /// A framer for lines of at most `max_len` octets, line end included.
    pub fn new(max_len: usize) -> Self {
        LineFramer {
            max_len,
            scanned: 0,
            discarding: false,
        }
    }

    /// Changes the limit for the lines to come (and for the line being
    /// buffered, if it is not complete yet).
    pub fn set_max_len(&mut self, max_len: usize) {
        self.max_len = max_len;
    }

    /// The limit in force, in octets including the line end.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Whether the framer is dropping the rest of an over-long line.
    pub fn is_discarding(&self) -> bool {
        self.discarding
    }

    /// Forgets any partial scan and any over-long line being dropped, for a
    /// buffer that starts afresh (after a TLS upgrade, for instance).
    pub fn reset(&mut self) {
        self.scanned = 0;
        self.discarding = false;
    }

    /// Removes the next complete line from the front of `buf` and returns it
    /// without its line end; `Ok(None)` when no complete line is buffered yet.
    ///
    /// [`LineError::TooLong`] is returned once per over-long line; the framer
    /// has then already dropped the buffered part of that line and goes on
    /// with the line after it on the next call.
    ///
    /// The framer assumes that `buf` only grows at its end between calls (and
    /// shrinks only through this method); call [`reset`](LineFramer::reset)
    /// when the buffer is replaced.
    pub fn next_line(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, LineError> {
        if self.discarding {
            match memchr::memchr(b'\n', buf) {
                Some(lf) => {
                    buf.advance(lf + 1);
                    self.discarding = false;
                    self.scanned = 0;
                }
                None => {
                    buf.clear();
                    return Ok(None);
                }
            }
        }
        if buf.is_empty() {
            self.scanned = 0;
            return Ok(None);
        }
        // A line with its LF at index `lf` is `lf + 1` octets long; it fits
        // when `lf < max_len`, so only that window needs to be searched.
        let window = buf.len().min(self.max_len);
        let from = self.scanned.min(window);
        match memchr::memchr(b'\n', &buf[from..window]) {
            Some(i) => {
                let lf = from + i;
                self.scanned = 0;
                let mut line = buf.split_to(lf + 1);
                let end = if lf > 0 && line[lf - 1] == b'\r' {
                    lf - 1
                } else {
                    lf
                };
                line.truncate(end);
                Ok(Some(line.freeze()))
            }
            None if buf.len() >= self.max_len => {
                // Over-long: drop the part buffered so far, and, if its LF is
                // already there, the rest of it too.
                self.scanned = 0;
                match memchr::memchr(b'\n', &buf[window..]) {
                    Some(i) => {
                        buf.advance(window + i + 1);
                    }
                    None => {
                        buf.clear();
                        self.discarding = true;
                    }
                }
                Err(LineError::TooLong {
                    limit: self.max_len,
                })
            }
            None => {
                self.scanned = window;
                Ok(None)
            }
        }
    }
}
