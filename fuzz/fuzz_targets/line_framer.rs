#![no_main]
//! The line framer against a simple reference splitter, fed whole and in
//! fuzzer-chosen pieces.

mod split;

use arbitrary::Arbitrary;
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use pop3_proto::line::{LineError, LineFramer};

#[derive(Debug, Arbitrary)]
struct Input {
    max_len: u8,
    cuts: Vec<u16>,
    data: Vec<u8>,
}

type Item = Result<Vec<u8>, LineError>;

fn frame(max_len: usize, data: &[u8], cuts: &[u16]) -> Vec<Item> {
    let mut framer = LineFramer::new(max_len);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in split::pieces(data, cuts) {
        buf.extend_from_slice(piece);
        loop {
            match framer.next_line(&mut buf) {
                Ok(Some(line)) => out.push(Ok(line.to_vec())),
                Ok(None) => break,
                Err(e) => out.push(Err(e)),
            }
            assert!(buf.len() <= data.len());
        }
        // Memory stays bounded: never more than a line's worth is kept.
        assert!(buf.len() < max_len.max(1) || buf.contains(&b'\n'));
    }
    out
}

fn reference(max_len: usize, data: &[u8]) -> Vec<Item> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some(lf) = rest.iter().position(|&b| b == b'\n') {
        if lf + 1 > max_len {
            out.push(Err(LineError::TooLong { limit: max_len }));
        } else {
            let line = &rest[..lf];
            out.push(Ok(line.strip_suffix(b"\r").unwrap_or(line).to_vec()));
        }
        rest = &rest[lf + 1..];
    }
    if !rest.is_empty() && rest.len() >= max_len {
        out.push(Err(LineError::TooLong { limit: max_len }));
    }
    out
}

fuzz_target!(|input: Input| {
    let max_len = usize::from(input.max_len);
    let whole = frame(max_len, &input.data, &[]);
    assert_eq!(whole, reference(max_len, &input.data));
    assert_eq!(frame(max_len, &input.data, &input.cuts), whole);
});
