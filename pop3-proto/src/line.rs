//! The line framer: finds lines in a byte stream under explicit limits.
//!
//! Lines end with LF; a CR right before it is part of the line end. Each kind
//! of line has its own limit ([`Limits`]); an over-long line is reported once
//! as [`LineError::TooLong`] as soon as the limit is passed (memory stays
//! bounded), and the framer then discards input up to the next LF and carries
//! on with the line after it.

use bytes::{Bytes, BytesMut};
use core::fmt;

/// The line-length limits, in octets including the line end.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
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
#[derive(Debug, Clone)]
pub struct LineFramer {
    max_len: usize,
}

impl LineFramer {
    /// A framer for lines of at most `max_len` octets, line end included.
    pub fn new(max_len: usize) -> Self {
        LineFramer { max_len }
    }

    /// Changes the limit for the lines to come.
    pub fn set_max_len(&mut self, max_len: usize) {
        self.max_len = max_len;
    }

    /// Removes the next complete line from the front of `buf` and returns it
    /// without its line end; `Ok(None)` when no complete line is buffered yet.
    pub fn next_line(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, LineError> {
        let _ = buf;
        todo!()
    }
}
