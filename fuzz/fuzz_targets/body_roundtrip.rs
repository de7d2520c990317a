#![no_main]
//! Stuff then unstuff: the body comes back CRLF-normalised, whatever the
//! chunking on either side; the octet count is what was sent; TOP sends a
//! prefix of the message; the shared pieces are the same octets as the
//! copied encoding.

mod split;

use arbitrary::Arbitrary;
use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use pop3_proto::dot::{BodyDecoder, BodyEncoder, BodyEvent, LineEnds, OctetCounter, octet_count};

#[derive(Debug, Arbitrary)]
struct Input {
    top: Option<u8>,
    enc_cuts: Vec<u16>,
    dec_cuts: Vec<u16>,
    body: Vec<u8>,
}

fn normalise(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 2);
    for (i, &b) in body.iter().enumerate() {
        if b == b'\n' && (i == 0 || body[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn decode(mode: LineEnds, wire: &[u8], cuts: &[u16]) -> Vec<u8> {
    let mut dec = BodyDecoder::with_line_ends(mode);
    let mut buf = BytesMut::new();
    let mut body = Vec::new();
    for piece in split::pieces(wire, cuts) {
        buf.extend_from_slice(piece);
        while let Some(event) = dec.decode(&mut buf) {
            match event {
                BodyEvent::Data(d) => body.extend_from_slice(&d),
                BodyEvent::End => {}
            }
        }
    }
    assert!(dec.is_done(), "the terminator was not found");
    assert!(buf.is_empty(), "octets left after the terminator");
    body
}

fuzz_target!(|input: Input| {
    let mut enc = match input.top {
        Some(n) => BodyEncoder::top(u64::from(n)),
        None => BodyEncoder::new(),
    };
    let mut shared_enc = enc.clone();
    let mut wire = BytesMut::new();
    let mut counter = OctetCounter::new();
    let body = Bytes::copy_from_slice(&input.body);
    let mut shared_wire = Vec::new();
    let mut out = Vec::new();
    for piece in split::pieces(&body, &input.enc_cuts) {
        counter.feed(piece);
        enc.encode(piece, &mut wire);
        shared_enc.encode_pieces(&body.slice_ref(piece), &mut out);
        for p in out.drain(..) {
            assert!(!p.is_empty(), "an empty piece");
            shared_wire.extend_from_slice(&p);
        }
    }
    enc.finish(&mut wire);
    let mut end = BytesMut::new();
    shared_enc.finish(&mut end);
    shared_wire.extend_from_slice(&end);
    assert_eq!(shared_wire, &wire[..], "pieces and copy differ");
    let norm = normalise(&input.body);
    for mode in [LineEnds::Strict, LineEnds::Lenient, LineEnds::Detect] {
        let body = decode(mode, &wire, &input.dec_cuts);
        match input.top {
            None => assert_eq!(body, norm),
            Some(_) => {
                assert!(norm.starts_with(&body));
                assert!(body.is_empty() || body.ends_with(b"\n"));
            }
        }
        assert_eq!(enc.octets(), body.len() as u64);
    }
    if input.top.is_none() {
        assert_eq!(counter.finish(), norm.len() as u64);
        assert_eq!(octet_count(&input.body), norm.len() as u64);
    }
});
