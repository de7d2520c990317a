//! Parses arbitrary octets as a command line. Oracle: whatever parses
//! re-encodes to one CRLF-terminated line that parses to the same command,
//! and encoding is stable.
#![no_main]

use bytes::BytesMut;
use pop3_proto::command::Command;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(cmd) = Command::parse(data) else {
        return;
    };
    let mut out = BytesMut::new();
    cmd.encode(&mut out);
    assert!(out.ends_with(b"\r\n"));
    let body = &out[..out.len() - 2];
    assert!(!body.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0));
    assert!(body.starts_with(cmd.keyword().as_bytes()));
    let again = Command::parse(body).expect("an encoded command parses");
    assert_eq!(again, cmd);
    let mut out2 = BytesMut::new();
    again.encode(&mut out2);
    assert_eq!(out, out2);
});
