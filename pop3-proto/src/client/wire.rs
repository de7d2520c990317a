//! The client's use of the codec, in one place: first lines through
//! [`Response::parse`], listing entries through the line-level parsers.

use bytes::Bytes;

use crate::line::Limits;
use crate::response::{
    Capability, Expected, LangLine, Parsed, Response, ResponseError, ScanLine, StatusLine, UidLine,
};
use crate::types::Mechanism;

/// Parses a complete first line (`line` includes its line end) as `expected`.
pub(super) fn first_line(
    expected: Expected,
    line: &[u8],
    limits: &Limits,
) -> Result<Response, ResponseError> {
    match Response::parse(expected, line, limits)? {
        Parsed::Complete { value, .. } => Ok(value),
        // A whole line was given: single-line kinds never need more.
        Parsed::Incomplete => Err(ResponseError::MissingField { field: "line end" }),
    }
}

/// The status line of a first line, whatever follows it.
pub(super) fn status(line: &[u8]) -> Result<StatusLine, ResponseError> {
    StatusLine::parse(line)
}

pub(super) fn scan_entry(line: &[u8]) -> Result<ScanLine, ResponseError> {
    ScanLine::parse(line)
}

pub(super) fn uid_entry(line: &[u8]) -> Result<UidLine, ResponseError> {
    UidLine::parse(line)
}

pub(super) fn capability(line: &[u8]) -> Result<Capability, ResponseError> {
    Capability::parse(line)
}

pub(super) fn language(line: &[u8]) -> Result<LangLine, ResponseError> {
    LangLine::parse(line)
}

pub(super) fn mechanism(line: &[u8]) -> Result<Mechanism, ResponseError> {
    core::str::from_utf8(line)
        .ok()
        .and_then(|s| Mechanism::new(s.trim_end()).ok())
        .ok_or(ResponseError::BadField {
            field: "mechanism",
            at: 0,
        })
}

/// A listing line with its stuffing dot removed (RFC 1939 §3).
pub(super) fn unstuff(line: Bytes) -> Bytes {
    if line.len() > 1 && line[0] == b'.' {
        line.slice(1..)
    } else {
        line
    }
}
