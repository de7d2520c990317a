//! Encodes an arbitrary valid command and parses it back: the same command.
//! Also checks that secrets stay out of `Debug`.
#![no_main]

use bytes::BytesMut;
use pop3_proto::command::Command;

libfuzzer_sys::fuzz_target!(|cmd: Command| {
    let mut out = BytesMut::new();
    cmd.encode(&mut out);
    assert!(out.ends_with(b"\r\n"));
    let body = &out[..out.len() - 2];
    assert!(!body.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0));
    assert_eq!(Command::parse(body), Ok(cmd.clone()));
    match &cmd {
        Command::Pass(pw) => assert_eq!(
            format!("{cmd:?}"),
            format!("Pass(Password(<{} octets redacted>))", pw.expose().len())
        ),
        Command::Apop { name, .. } => assert_eq!(
            format!("{cmd:?}"),
            format!("Apop {{ name: {name:?}, digest: ApopDigest(<redacted>) }}")
        ),
        _ => {}
    }
});
