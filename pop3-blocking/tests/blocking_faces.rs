//! The blocking client against scripted servers that misbehave: no
//! greeting, a refused port and a name to resolve, a body cut short; and a
//! SCRAM exchange checked octet for octet. (Its
//! behaviour against real servers is the shared suite's, in the
//! repository's `.ci/suite`.)

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use pop3_blocking::client::{ConnectOptions, Error, Pop3Client, Security, TimeoutKind, msg};
use pop3_proto::client::ProtocolError;

/// One step of a scripted server: wait for a command line starting with
/// `expect` (empty: no wait), then send `reply`.
type Step = (&'static str, &'static [u8]);

/// Serves one connection with `script`, then closes it (`hold`: reads until
/// the client closes). The port and the thread.
fn scripted(script: Vec<Step>, hold: bool) -> (u16, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let thread = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut w = stream.try_clone().unwrap();
        let mut r = BufReader::new(stream);
        for (expect, reply) in script {
            if !expect.is_empty() {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                assert!(
                    line.to_ascii_uppercase().starts_with(expect),
                    "expected {expect}, got {line:?}"
                );
            }
            if w.write_all(reply).is_err() {
                return;
            }
        }
        if hold {
            let _ = io::copy(&mut r, &mut io::sink());
        }
    });
    (port, thread)
}

fn quick() -> ConnectOptions {
    let mut o = ConnectOptions::new(Security::Plain);
    o.session.insecure_cleartext_login = true;
    o.connect_timeout = Duration::from_millis(500);
    o.session.reply_timeout = Some(Duration::from_millis(300));
    o
}

#[test]
fn no_greeting_is_a_connect_timeout() {
    let (port, server) = scripted(vec![], true);
    let err = Pop3Client::connect("127.0.0.1", port, quick()).unwrap_err();
    assert!(
        matches!(err, Error::Timeout(TimeoutKind::Connect)),
        "{err:?}"
    );
    server.join().unwrap();
}

#[test]
fn a_name_is_resolved_and_a_refused_port_is_an_io_error() {
    let (port, server) = scripted(
        vec![
            ("", b"+OK hi\r\n"),
            ("CAPA", b"-ERR no\r\n"),
            ("QUIT", b"+OK bye\r\n"),
        ],
        true,
    );
    let mut client = Pop3Client::connect("localhost", port, quick()).unwrap();
    client.quit().unwrap();
    drop(client);
    server.join().unwrap();
    // Nobody listens there now.
    let err = Pop3Client::connect("127.0.0.1", port, quick()).unwrap_err();
    assert!(matches!(err, Error::Io(_)), "{err:?}");
    let err = Pop3Client::connect("not a host name", 110, quick()).unwrap_err();
    assert!(matches!(err, Error::InvalidHost(_)), "{err:?}");
}

#[test]
fn a_body_cut_short_is_an_error_not_a_message() {
    let (port, server) = scripted(
        vec![
            ("", b"+OK hi\r\n"),
            ("USER", b"+OK\r\n"),
            ("PASS", b"+OK\r\n"),
            ("RETR", b"+OK\r\nSubject: x\r\n\r\nhalf a mess"),
        ],
        false,
    );
    let mut o = quick();
    o.read_capabilities = false;
    let mut client = Pop3Client::connect("127.0.0.1", port, o).unwrap();
    client.login("u", "p").unwrap();
    let mut body = client.retr(msg(1).unwrap()).unwrap();
    // The script closes once it has sent its part.
    let mut got = Vec::new();
    let err = body.read_to_end(&mut got).unwrap_err();
    assert!(!body.is_complete());
    assert!(got.starts_with(b"Subject: x"), "{got:?}");
    // The failure sticks.
    assert!(body.next_chunk().is_err());
    drop(body);
    let err = err.into_inner().unwrap().downcast::<Error>().unwrap();
    assert!(
        matches!(*err, Error::Protocol(ProtocolError::UnexpectedEof)),
        "{err:?}"
    );
    drop(client);
    server.join().unwrap();
}

#[test]
fn a_scram_login_derives_the_key_inline_and_answers_with_the_rfc_7677_proof() {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let first = b64(
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
    );
    let last = b64(
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                    p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
    );
    let server_final = b64("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    let (port, server) = scripted(
        vec![
            ("", b"+OK hi\r\n"),
            (
                "AUTH SCRAM-SHA-256",
                leak(format!("+ {first}\r\n")).as_bytes(),
            ),
            // The scripted server compares upper-cased lines.
            (
                leak(format!("{}\r", last.to_ascii_uppercase())),
                leak(format!("+ {server_final}\r\n")).as_bytes(),
            ),
            // The empty answer to the server's proof.
            ("\r", b"+OK in\r\n"),
            ("QUIT", b"+OK bye\r\n"),
        ],
        false,
    );
    let mut o = quick();
    o.read_capabilities = false;
    let mut client = Pop3Client::connect("127.0.0.1", port, o).unwrap();
    let scram = pop3_proto::client::sasl::Scram::sha256(
        "user",
        pop3_proto::types::Secret::new("pencil"),
        "rOprNGfwEbeRWgbNEkqO",
    );
    client.auth(Box::new(scram)).unwrap();
    client.quit().unwrap();
    drop(client);
    server.join().unwrap();
}
