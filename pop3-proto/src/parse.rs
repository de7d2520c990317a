//! Small parsing helpers shared by the command and response codecs.
//!
//! They work on whole lines the framer has already found, so the nom parsers
//! here are all `complete` ones and never see partial input. No nom type
//! leaves this module.

use alloc::vec::Vec;
use base64::Engine as _;
use nom::IResult;
use nom::Parser as _;
use nom::bytes::complete::tag_no_case;
use nom::character::complete::digit1;

/// Why a decimal field was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NumberError {
    /// Empty, or holds something other than the digits `0`–`9`.
    NotANumber,
    /// Too large for a `u64`.
    Overflow,
}

fn digits(input: &[u8]) -> IResult<&[u8], &[u8]> {
    digit1(input)
}

/// Parses `field` as a plain base-10 number: digits only (leading zeros are
/// allowed), no sign, no spaces.
pub(crate) fn decimal(field: &[u8]) -> Result<u64, NumberError> {
    let digits = match digits(field) {
        Ok(([], d)) => d,
        _ => return Err(NumberError::NotANumber),
    };
    let mut n: u64 = 0;
    for &d in digits {
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(d - b'0')))
            .ok_or(NumberError::Overflow)?;
    }
    Ok(n)
}

/// Whether `line` starts with `prefix`, ignoring ASCII case.
pub(crate) fn starts_with_ci(line: &[u8], prefix: &'static str) -> bool {
    let r: IResult<&[u8], &[u8]> = tag_no_case(prefix.as_bytes()).parse(line);
    r.is_ok()
}

/// Strict base64 (RFC 4648 §4 alphabet, canonical padding, no whitespace,
/// no stray bits), as RFC 5034 requires for SASL data.
pub(crate) fn base64_decode(data: &[u8]) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(data).ok()
}

/// Appends the base64 encoding of `data` to `dst`.
pub(crate) fn base64_encode(data: &[u8], dst: &mut bytes::BytesMut) {
    let start = dst.len();
    let n = base64::encoded_len(data.len(), true).unwrap_or(0);
    dst.resize(start + n, 0);
    let written = base64::engine::general_purpose::STANDARD
        .encode_slice(data, &mut dst[start..])
        .unwrap_or(0);
    dst.truncate(start + written);
}

/// Appends the decimal form of `n` to `dst`.
pub(crate) fn put_decimal(n: u64, dst: &mut bytes::BytesMut) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    dst.extend_from_slice(&buf[i..]);
}

/// Appends `field` to `dst` with CR, LF and NUL written as `?`: a safety net
/// for values whose type cannot rule them out (plain `String` fields), so that
/// an encoded line can never be split in two.
pub(crate) fn put_line_octets(field: &[u8], dst: &mut bytes::BytesMut) {
    let mut rest = field;
    while let Some(i) = find_forbidden(rest) {
        dst.extend_from_slice(&rest[..i]);
        dst.extend_from_slice(b"?");
        rest = &rest[i + 1..];
    }
    dst.extend_from_slice(rest);
}

/// The first offset in `field` holding CR, LF or NUL, octets no line may carry.
pub(crate) fn find_forbidden(field: &[u8]) -> Option<usize> {
    memchr::memchr3(b'\r', b'\n', 0, field)
}

/// Splits `line` at runs of SP: yields `(offset, token)` for each non-empty
/// token.
pub(crate) fn tokens(line: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let mut pos = 0;
    core::iter::from_fn(move || {
        while pos < line.len() && line[pos] == b' ' {
            pos += 1;
        }
        if pos >= line.len() {
            return None;
        }
        let start = pos;
        let end = memchr::memchr(b' ', &line[start..]).map_or(line.len(), |i| start + i);
        pos = end;
        Some((start, &line[start..end]))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals() {
        assert_eq!(decimal(b"0"), Ok(0));
        assert_eq!(decimal(b"007"), Ok(7));
        assert_eq!(decimal(b"18446744073709551615"), Ok(u64::MAX));
        assert_eq!(decimal(b"18446744073709551616"), Err(NumberError::Overflow));
        assert_eq!(decimal(b""), Err(NumberError::NotANumber));
        assert_eq!(decimal(b"+1"), Err(NumberError::NotANumber));
        assert_eq!(decimal(b"1 "), Err(NumberError::NotANumber));
    }

    #[test]
    fn base64_strict() {
        assert_eq!(base64_decode(b"AGFsaWNl").as_deref(), Some(&b"\0alice"[..]));
        assert!(base64_decode(b"AGFsaWNl=").is_none());
        assert!(base64_decode(b"YQ").is_none());
        assert!(base64_decode(b"YR==").is_none());
        assert!(base64_decode(b"Y Q==").is_none());
        let mut out = bytes::BytesMut::new();
        base64_encode(b"\0alice", &mut out);
        assert_eq!(&out[..], b"AGFsaWNl");
        let mut out = bytes::BytesMut::new();
        put_decimal(0, &mut out);
        put_decimal(u64::MAX, &mut out);
        assert_eq!(&out[..], b"018446744073709551615");
    }
}
