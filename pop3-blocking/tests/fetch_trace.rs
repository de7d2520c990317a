//! Trace headers and the `--trace` transcript of the `fetch` command line
//! against the blocking server on loopback. Alone in its process: tracing's
//! per-thread subscribers miss events while other threads of the process
//! register the same callsites.
#![cfg(feature = "cli")]

mod support;

use pop3_blocking::fetch::ExitKind;
use support::{Server, fetch, stored};

#[test]
fn trace_headers_are_prepended_and_the_transcript_hides_the_password() {
    let server = Server::with(&["hello"]);
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().join("md");
    let trace = dir.path().join("trace.log");
    let trace_arg = trace.display().to_string();
    let kind = fetch(&server, &md, &["--trace-headers", "--trace", &trace_arg]);
    assert_eq!(kind, ExitKind::Ok);
    let message = &stored(&md)[0];
    let lines: Vec<&str> = message.lines().collect();
    assert!(
        lines[0].starts_with("Received: from 127.0.0.1 by "),
        "{message}"
    );
    assert!(
        lines[0].contains("with POP3 for <alice@127.0.0.1:"),
        "{message}"
    );
    assert!(
        lines[1].starts_with("Delivered-To: alice@127.0.0.1:"),
        "{message}"
    );
    assert!(lines[2].starts_with("X-UIDL: "), "{message}");
    assert_eq!(lines[3], "Subject: hello");
    let transcript = std::fs::read_to_string(&trace).unwrap();
    assert!(transcript.contains("C: USER alice"), "{transcript}");
    assert!(transcript.contains("C: PASS ***"), "{transcript}");
    assert!(transcript.contains("C: UIDL"), "{transcript}");
    assert!(!transcript.contains("secret-a"), "{transcript}");
}
