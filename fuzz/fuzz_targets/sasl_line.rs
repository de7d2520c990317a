//! SASL lines in both directions: client responses (`base64`, `=`, `*`)
//! and server continuations (`+ base64`). Arbitrary octets that parse must
//! re-encode to a line that parses to the same value; arbitrary values must
//! survive encode → parse.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use bytes::BytesMut;
use pop3_proto::command::SaslResponse;
use pop3_proto::response::Continuation;

fn strip_crlf(out: &[u8]) -> &[u8] {
    assert!(out.ends_with(b"\r\n"));
    &out[..out.len() - 2]
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(r) = SaslResponse::parse(data) {
        let mut out = BytesMut::new();
        r.encode(&mut out);
        assert_eq!(SaslResponse::parse(strip_crlf(&out)), Ok(r));
    }
    if let Ok(c) = Continuation::parse(data) {
        let mut out = BytesMut::new();
        c.encode(&mut out);
        assert_eq!(Continuation::parse(strip_crlf(&out)), Ok(c));
    }
    let mut u = Unstructured::new(data);
    if let Ok(r) = SaslResponse::arbitrary(&mut u) {
        let mut out = BytesMut::new();
        r.encode(&mut out);
        assert_eq!(SaslResponse::parse(strip_crlf(&out)), Ok(r));
    }
    if let Ok(c) = Continuation::arbitrary(&mut u) {
        let mut out = BytesMut::new();
        c.encode(&mut out);
        assert_eq!(Continuation::parse(strip_crlf(&out)), Ok(c));
    }
});
