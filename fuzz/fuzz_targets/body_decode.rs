#![no_main]
//! The body decoder fed at fuzzer-chosen split points gives exactly what
//! it gives on the whole input.

mod split;

use arbitrary::Arbitrary;
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use pop3_proto::dot::{BodyDecoder, BodyEvent, LineEnds};

#[derive(Debug, Arbitrary)]
struct Input {
    mode: u8,
    cuts: Vec<u16>,
    data: Vec<u8>,
}

#[derive(Debug, PartialEq, Eq)]
struct Decoded {
    body: Vec<u8>,
    ended: bool,
    rest: Vec<u8>,
    eof_ok: bool,
}

fn decode(mode: LineEnds, data: &[u8], cuts: &[u16]) -> Decoded {
    let mut dec = BodyDecoder::with_line_ends(mode);
    let mut buf = BytesMut::new();
    let mut body = Vec::new();
    let mut ended = false;
    for piece in split::pieces(data, cuts) {
        buf.extend_from_slice(piece);
        while let Some(event) = dec.decode(&mut buf) {
            match event {
                BodyEvent::Data(d) => {
                    assert!(!ended && !d.is_empty());
                    body.extend_from_slice(&d);
                }
                BodyEvent::End => {
                    assert!(!ended);
                    ended = true;
                }
            }
        }
        // Nothing is held back in the buffer before the end.
        assert!(ended || buf.is_empty());
    }
    assert_eq!(dec.data_octets(), body.len() as u64);
    // Unstuffing only removes octets.
    assert!(body.len() <= data.len());
    let eof_ok = dec.decode_eof().is_ok();
    Decoded {
        body,
        ended,
        rest: buf.to_vec(),
        eof_ok,
    }
}

fuzz_target!(|input: Input| {
    let mode = match input.mode % 3 {
        0 => LineEnds::Strict,
        1 => LineEnds::Lenient,
        _ => LineEnds::Detect,
    };
    let whole = decode(mode, &input.data, &[]);
    assert_eq!(decode(mode, &input.data, &input.cuts), whole);
    // One octet at a time.
    if input.data.len() < 512 {
        let every: Vec<u16> = (0..input.data.len() as u16).collect();
        assert_eq!(decode(mode, &input.data, &every), whole);
    }
});
