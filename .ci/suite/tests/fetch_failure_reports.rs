//! What every runtime's `fetch` says when a run fails, run as a program: a
//! network failure names the server's host and port, and a run cut in the
//! middle of the maildrop says how many messages it stored before, which
//! one was arriving, and that nothing was deleted; a destination that
//! cannot be opened is named.

// The peer support of pop3-tokio's own peer tests.
mod peer_examples;
#[path = "../../../pop3-tokio/tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::thread;
use std::time::Duration;

use peer_examples::example_binary;
use support::run_with_timeout;

/// The runtimes' programs: (package, example).
const FETCHES: [(&str, &str); 3] = [
    ("pop3-blocking", "fetch-blocking"),
    ("pop3-tokio", "fetch"),
    ("pop3-async-std", "fetch-smol"),
];

fn fetch(bin: &Path, port: u16, maildir: &Path) -> Output {
    let mut cmd = Command::new(bin);
    cmd.arg(format!("pop://alice@127.0.0.1:{port}"))
        .arg("--maildir")
        .arg(maildir)
        .args(["--insecure-cleartext-login", "--delete"])
        .env("POP3_PASSWORD", "secret");
    run_with_timeout(cmd, Duration::from_secs(60))
}

/// The four messages of the scripted maildrop.
fn body(n: usize) -> String {
    format!("Subject: message {n}\r\n\r\n{}\r\n", "x".repeat(200))
}

/// One session of a server that lists four messages and drops the
/// connection halfway through the third one's RETR; it answers every other
/// command as a server would, and never sees a QUIT. Answers the commands
/// it was sent.
fn serve_and_cut(stream: TcpStream) -> Vec<String> {
    let mut out = stream.try_clone().unwrap();
    let mut lines = BufReader::new(stream);
    out.write_all(b"+OK ready\r\n").unwrap();
    let mut seen = Vec::new();
    let mut line = String::new();
    while lines.read_line(&mut line).unwrap() > 0 {
        let command = line.trim_end().to_owned();
        line.clear();
        seen.push(command.clone());
        let (verb, arg) = command.split_once(' ').unwrap_or((&command, ""));
        let reply = match verb.to_ascii_uppercase().as_str() {
            "CAPA" => "+OK\r\nUSER\r\nUIDL\r\nPIPELINING\r\n.\r\n".to_owned(),
            "USER" | "PASS" | "NOOP" => "+OK\r\n".to_owned(),
            "UIDL" => {
                let mut r = "+OK\r\n".to_owned();
                for n in 1..=4 {
                    r.push_str(&format!("{n} uid-{n}\r\n"));
                }
                r + ".\r\n"
            }
            "LIST" => {
                let mut r = "+OK\r\n".to_owned();
                for n in 1..=4 {
                    r.push_str(&format!("{n} {}\r\n", body(n).len()));
                }
                r + ".\r\n"
            }
            "RETR" => {
                let n: usize = arg.parse().unwrap();
                let body = body(n);
                if n == 3 {
                    let half = format!("+OK\r\n{}", &body[..body.len() / 2]);
                    out.write_all(half.as_bytes()).unwrap();
                    return seen;
                }
                format!("+OK\r\n{body}.\r\n")
            }
            _ => "-ERR not here\r\n".to_owned(),
        };
        out.write_all(reply.as_bytes()).unwrap();
    }
    seen
}

fn binaries() -> Vec<(&'static str, PathBuf)> {
    FETCHES
        .iter()
        .map(|&(package, example)| (example, example_binary(package, example)))
        .collect()
}

#[test]
fn a_refused_connection_names_the_host_and_port_and_exits_75() {
    // A port nothing listens on: bound, then closed.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    for (name, bin) in binaries() {
        let out = fetch(&bin, port, &dir.path().join(name));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(75), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("127.0.0.1:{port}: the connection failed")),
            "{name}: {stderr}"
        );
    }
}

#[test]
fn a_run_cut_mid_maildrop_says_what_it_stored_which_message_was_arriving_and_that_nothing_was_deleted()
 {
    let dir = tempfile::tempdir().unwrap();
    for (name, bin) in binaries() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = thread::spawn(move || serve_and_cut(listener.accept().unwrap().0));
        let maildir = dir.path().join(name);
        let out = fetch(&bin, port, &maildir);
        let seen = server.join().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(75), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("127.0.0.1:{port}: ")),
            "{name}: {stderr}"
        );
        assert!(
            stderr.contains("2 of 4 messages stored before the failure")
                && stderr.contains("message 3 was being received")
                && stderr.contains("nothing deleted from the server"),
            "{name}: {stderr}"
        );
        // What it says is what happened: two messages stored, no DELE sent.
        let stored = std::fs::read_dir(maildir.join("new")).unwrap().count();
        assert_eq!(stored, 2, "{name}");
        assert!(
            !seen.iter().any(|c| c.starts_with("DELE")),
            "{name} sent {seen:?}"
        );
    }
}

#[test]
fn a_destination_that_cannot_be_opened_is_named_and_exits_74() {
    let dir = tempfile::tempdir().unwrap();
    // A Maildir under a regular file.
    let file = dir.path().join("not-a-directory");
    std::fs::write(&file, "x").unwrap();
    let maildir = file.join("Mail");
    for (name, bin) in binaries() {
        // The destination is opened before any connection.
        let out = fetch(&bin, 1, &maildir);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(74), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("cannot open the Maildir {}", maildir.display())),
            "{name}: {stderr}"
        );
    }
}
