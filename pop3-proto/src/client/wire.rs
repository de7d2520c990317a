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
pub(super) fn status(line: &[u8], limits: &Limits) -> Result<StatusLine, ResponseError> {
    match first_line(Expected::Status, line, limits)? {
        Response::Status(s) => Ok(s),
        _ => Err(ResponseError::BadStatus),
    }
}

/// Parses one listing entry by framing it as a one-entry listing. (Used
/// until the codec's line-level parsers are available.)
fn one_entry(expected: Expected, line: &[u8]) -> Result<Response, ResponseError> {
    let mut buf = alloc::vec::Vec::with_capacity(line.len() + 12);
    buf.extend_from_slice(b"+OK\r\n");
    if line.first() == Some(&b'.') {
        buf.push(b'.');
    }
    buf.extend_from_slice(line);
    buf.extend_from_slice(b"\r\n.\r\n");
    match Response::parse(expected, &buf, &Limits::lenient())? {
        Parsed::Complete { value, .. } => Ok(value),
        Parsed::Incomplete => Err(ResponseError::MissingField { field: "line end" }),
    }
}

fn single<T>(items: alloc::vec::Vec<T>) -> Result<T, ResponseError> {
    items
        .into_iter()
        .next()
        .ok_or(ResponseError::MissingField { field: "entry" })
}

pub(super) fn scan_entry(line: &[u8]) -> Result<ScanLine, ResponseError> {
    match one_entry(Expected::ScanListing, line)? {
        Response::ScanListing(l) => single(l.items),
        _ => Err(ResponseError::BadStatus),
    }
}

pub(super) fn uid_entry(line: &[u8]) -> Result<UidLine, ResponseError> {
    match one_entry(Expected::UidListing, line)? {
        Response::UidListing(l) => single(l.items),
        _ => Err(ResponseError::BadStatus),
    }
}

pub(super) fn capability(line: &[u8]) -> Result<Capability, ResponseError> {
    match one_entry(Expected::Capabilities, line)? {
        Response::Capabilities(l) => single(l.items),
        _ => Err(ResponseError::BadStatus),
    }
}

pub(super) fn language(line: &[u8]) -> Result<LangLine, ResponseError> {
    match one_entry(Expected::Languages, line)? {
        Response::Languages(l) => single(l.items),
        _ => Err(ResponseError::BadStatus),
    }
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
