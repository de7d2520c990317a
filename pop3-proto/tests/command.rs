//! Known-answer tests for the command codec.

use bytes::BytesMut;
use pop3_proto::command::Command;

fn encode(cmd: &Command) -> Vec<u8> {
    let mut out = BytesMut::new();
    cmd.encode(&mut out);
    out.to_vec()
}

#[test]
fn rfc1939_basic_round_trip() {
    for line in [
        &b"STAT"[..],
        b"LIST 1",
        b"RETR 1",
        b"DELE 1",
        b"TOP 1 10",
        b"UIDL 2",
        b"QUIT",
    ] {
        let cmd = Command::parse(line).unwrap();
        let mut expected = line.to_vec();
        expected.extend_from_slice(b"\r\n");
        assert_eq!(encode(&cmd), expected);
    }
}
