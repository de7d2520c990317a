//! Trace headers and the `--trace` transcript of the `fetch` command line
//! against the blocking server on loopback. Alone in its process: tracing's
//! per-thread subscribers miss events while other threads of the process
//! register the same callsites.
#![cfg(feature = "cli")]

use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use clap::Parser;
use pop3_blocking::cli::{FetchArgs, fetch_blocking};
use pop3_blocking::fetch::ExitKind;
use pop3_blocking::server::{Pop3Server, Security, ServerOptions};
use pop3_proto::server::ServerConfig;
use pop3_proto::store::MemoryStore;

/// The blocking server over a memory store, on a loopback port; stopped
/// and joined on drop.
struct Server {
    server: Pop3Server<MemoryStore>,
    port: u16,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Alice's maildrop holds `bodies`, one message each.
    fn with(bodies: &[&str]) -> Server {
        let store = Arc::new(MemoryStore::new());
        store.add_user("alice", "secret-a");
        for b in bodies {
            store.add_message("alice", format!("Subject: {b}\r\n\r\n{b}\r\n"));
        }
        let config = ServerConfig::default().allow_plaintext_auth(true);
        let server = Pop3Server::build(store, config, None, ServerOptions::default());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let s = server.clone();
        let thread = thread::spawn(move || s.serve(listener, Security::Plain).unwrap());
        Server {
            server,
            port,
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.server.shutdown();
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

/// `fetch URL --maildir DIR` with a USER login and `extra` options.
fn fetch(server: &Server, maildir: &Path, extra: &[&str]) -> ExitKind {
    let url = format!("pop://alice@127.0.0.1:{}", server.port);
    let maildir = maildir.display().to_string();
    let mut args = vec![
        "fetch",
        &url,
        "--maildir",
        &maildir,
        "--auth",
        "USER",
        "--insecure-cleartext-login",
        "--password-command",
        "echo secret-a",
        "-q",
    ];
    args.extend_from_slice(extra);
    FetchArgs::try_parse_from(args)
        .unwrap()
        .run("fetch", &mut fetch_blocking)
}

fn stored(maildir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(maildir.join("new"))
        .map(|d| {
            d.map(|e| String::from_utf8(std::fs::read(e.unwrap().path()).unwrap()).unwrap())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

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
