//! Slow SASL work (SCRAM's PBKDF2) is handed out by the client machine,
//! never run inside `handle_input`: nothing is written until its result
//! comes back, and the exchange then goes on as before.

mod client_support;

use core::time::Duration;
use std::collections::VecDeque;

use base64::Engine as _;
use pop3_proto::client::sasl::{SaslError, SaslWork, Scram};
use pop3_proto::client::task::{Auth, Connect};
use pop3_proto::client::{
    ClientConfig, ClientEvent, ClientState, Connection, ConnectionConfig, Error, ProtocolError,
    Want,
};
use pop3_proto::time::Instant;
use pop3_proto::types::Secret;

use client_support::*;

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A greeted session whose SASL work waits for the test.
fn holding(config: ClientConfig) -> Driver {
    let mut d = Driver::new(config);
    d.run_sasl_work = false;
    d.feed(b"+OK ready\r\n");
    d
}

/// The SASL work handed out so far.
fn works(d: &Driver) -> Vec<SaslWork> {
    d.events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::SaslWork { work, .. } => Some(work.clone()),
            _ => None,
        })
        .collect()
}

/// RFC 7677 §3.
const SHA256_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
const SHA256_FIRST: &str =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const SHA256_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                            p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const SHA256_SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

/// RFC 5802 §5.
const SHA1_NONCE: &str = "fyko+d2lbbFgONRv9qkxdawL";
const SHA1_FIRST: &str = "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096";
const SHA1_FINAL: &str =
    "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=";
const SHA1_SERVER_FINAL: &str = "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=";

#[test]
fn scram_key_derivation_is_handed_out_and_the_exchange_completes_with_the_rfc_vectors() {
    let cases = [
        (
            Scram::sha256("user", Secret::new("pencil"), SHA256_NONCE),
            SHA256_FIRST,
            SHA256_FINAL,
            SHA256_SERVER_FINAL,
        ),
        (
            Scram::sha1("user", Secret::new("pencil"), SHA1_NONCE),
            SHA1_FIRST,
            SHA1_FINAL,
            SHA1_SERVER_FINAL,
        ),
    ];
    for (mechanism, first, last, server_final) in cases {
        let mut d = holding(plain_link());
        let id = d.client.auth(Box::new(mechanism)).unwrap();
        d.drain();
        assert_eq!(d.sent_lines().len(), 1, "the AUTH line");
        d.feed(format!("+ {}\r\n", b64(first)).as_bytes());
        // The derivation is handed out, not run: nothing more is written.
        let handed = works(&d);
        assert_eq!(handed.len(), 1, "{:?}", d.events);
        assert!(matches!(
            d.events.last(),
            Some(ClientEvent::SaslWork { id: i, .. }) if *i == id
        ));
        assert_eq!(
            d.sent_lines().len(),
            1,
            "an answer before the work was done"
        );
        assert!(d.client.sasl_work_pending());
        assert_eq!(d.client.state(), ClientState::Authenticating);
        // Run where blocking is fine, as an adapter does.
        let work = handed[0].clone();
        let done = std::thread::spawn(move || work.run()).join().unwrap();
        assert!(d.client.sasl_work_done(d.now, done));
        d.drain();
        assert!(!d.client.sasl_work_pending());
        assert_eq!(d.sent_lines()[1], b64(last));
        assert!(d.transmits.last().unwrap().secret);
        d.feed(format!("+ {}\r\n", b64(server_final)).as_bytes());
        assert!(d.wire.ends_with(b"\r\n\r\n"), "the empty final response");
        d.feed(b"+OK Logged in.\r\n");
        assert_eq!(d.client.state(), ClientState::Transaction);
        assert_eq!(works(&d).len(), 1, "only the derivation is slow");
    }
}

#[test]
fn input_waits_while_the_sasl_work_is_out() {
    let mut d = holding(plain_link());
    d.client
        .auth(Box::new(Scram::sha256(
            "user",
            Secret::new("pencil"),
            SHA256_NONCE,
        )))
        .unwrap();
    d.drain();
    // The challenge and, in the same read, the server's next line.
    let input = format!("+ {}\r\n-ERR early\r\n", b64(SHA256_FIRST));
    let taken = d.client.handle_input(d.now, input.as_bytes());
    d.drain();
    assert_eq!(works(&d).len(), 1);
    // The line after the challenge is not read before the answer.
    assert!(
        !d.events
            .iter()
            .any(|e| matches!(e, ClientEvent::Err { .. }))
    );
    assert_eq!(d.client.handle_input(d.now, b"+OK\r\n"), 0);
    let done = works(&d)[0].clone().run();
    assert!(d.client.sasl_work_done(d.now, done));
    d.drain();
    assert_eq!(d.sent_lines()[1], b64(SHA256_FINAL));
    // What was taken is read now.
    let rest = &input.as_bytes()[taken..];
    d.feed(rest);
    assert!(
        d.events
            .iter()
            .any(|e| matches!(e, ClientEvent::Err { .. }))
    );
}

#[test]
fn scram_refuses_a_bad_server_first_message_without_handing_out_work() {
    let bad = [
        (
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4000000000",
            SaslError::TooManyIterations {
                iterations: 4_000_000_000,
                limit: 100_000,
            },
        ),
        (
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1024",
            SaslError::TooFewIterations {
                iterations: 1024,
                minimum: 4096,
            },
        ),
        // Not the client's nonce.
        (
            "r=someoneelse,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            SaslError::BadChallenge,
        ),
        // The salt is not base64.
        (
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=*,i=4096",
            SaslError::BadChallenge,
        ),
    ];
    for (first, error) in bad {
        let mut d = holding(plain_link());
        let id = d.client.auth(Box::new(Scram::sha256(
            "user",
            Secret::new("pencil"),
            SHA256_NONCE,
        )));
        let id = id.unwrap();
        d.drain();
        d.feed(format!("+ {}\r\n", b64(first)).as_bytes());
        assert!(
            works(&d).is_empty(),
            "{first}: work for a refused challenge"
        );
        assert!(d.events.contains(&ClientEvent::SaslCancelled { id, error }));
        assert_eq!(d.sent_lines().last().unwrap(), "*");
        assert!(!d.client.sasl_work_pending());
    }
}

#[test]
fn sasl_work_done_after_the_session_closed_is_ignored() {
    let mut d = holding(plain_link());
    let id = d
        .client
        .auth(Box::new(Scram::sha256(
            "user",
            Secret::new("pencil"),
            SHA256_NONCE,
        )))
        .unwrap();
    d.drain();
    d.feed(format!("+ {}\r\n", b64(SHA256_FIRST)).as_bytes());
    let work = works(&d).remove(0);
    // The server hangs up while the key is derived.
    d.client.handle_eof(d.now);
    d.drain();
    assert!(d.closed);
    assert!(d.events.contains(&ClientEvent::Cancelled {
        id,
        reason: pop3_proto::client::CancelReason::ConnectionClosed { sent: true },
    }));
    let written = d.wire.len();
    assert!(!d.client.sasl_work_done(d.now, work.run()));
    assert_eq!(d.client.poll_action(), None);
    assert_eq!(d.wire.len(), written);
}

#[test]
fn sasl_work_done_answers_once_and_only_with_the_work_handed_out() {
    let mut d = holding(plain_link());
    d.client
        .auth(Box::new(Scram::sha256(
            "user",
            Secret::new("pencil"),
            SHA256_NONCE,
        )))
        .unwrap();
    d.drain();
    d.feed(format!("+ {}\r\n", b64(SHA256_FIRST)).as_bytes());
    // Work the machine did not hand out is not taken for it.
    let stray = SaslWork::new(|| Secret::new("key")).run();
    assert!(!d.client.sasl_work_done(d.now, stray));
    assert!(d.client.sasl_work_pending());
    assert_eq!(d.client.poll_action(), None);
    let done = works(&d).remove(0).run();
    assert!(d.client.sasl_work_done(d.now, done.clone()));
    assert!(!d.client.sasl_work_done(d.now, done));
    d.drain();
    assert_eq!(d.sent_lines().len(), 2);
    // Work of no mechanism of this session is ignored too.
    let stray = SaslWork::new(|| Secret::new("key")).run();
    assert!(!d.client.sasl_work_done(d.now, stray));
    assert_eq!(d.client.poll_action(), None);
}

#[test]
fn the_reply_timer_stops_while_the_sasl_work_is_out_and_restarts_with_the_answer() {
    let mut config = plain_link();
    config.reply_timeout = Some(Duration::from_secs(10));
    let mut d = holding(config);
    d.client
        .auth(Box::new(Scram::sha256(
            "user",
            Secret::new("pencil"),
            SHA256_NONCE,
        )))
        .unwrap();
    d.drain();
    d.feed(format!("+ {}\r\n", b64(SHA256_FIRST)).as_bytes());
    assert_eq!(d.client.poll_timeout(), None, "a deadline while computing");
    // The work takes longer than the reply timeout: no timeout fires.
    d.advance(60_000);
    d.client.handle_timeout(d.now);
    d.drain();
    assert!(!d.closed);
    assert!(!d.events.iter().any(|e| matches!(e, ClientEvent::Error(_))));
    let done = works(&d).remove(0).run();
    assert!(d.client.sasl_work_done(d.now, done));
    d.drain();
    assert_eq!(
        d.client.poll_timeout(),
        Some(d.now + Duration::from_secs(10)),
        "the timer restarts when the answer is written"
    );
    // And it still fires when the server is silent after the answer.
    d.advance(10_000);
    d.client.handle_timeout(d.now);
    d.drain();
    assert!(
        d.events
            .iter()
            .any(|e| matches!(e, ClientEvent::Error(ProtocolError::Timeout)))
    );
}

/// A scripted server for a [`Connection`].
fn connection_until_compute(replies: &[&[u8]]) -> (Connection, VecDeque<Vec<u8>>) {
    let mut config = ConnectionConfig::default();
    config.read_capabilities = false;
    config.session.insecure_cleartext_login = true;
    config.session.reply_timeout = Some(Duration::from_secs(10));
    let conn = Connection::new(config, Instant::ZERO, None);
    (conn, replies.iter().map(|r| r.to_vec()).collect())
}

#[test]
fn the_connection_wants_the_key_derivation_computed_and_sends_the_answer_after() {
    let challenge = format!("+ {}\r\n", b64(SHA256_FIRST));
    let server_final = format!("+ {}\r\n", b64(SHA256_SERVER_FINAL));
    let (mut conn, mut server) = connection_until_compute(&[
        b"+OK hi\r\n",
        challenge.as_bytes(),
        server_final.as_bytes(),
        b"+OK in\r\n",
    ]);
    let mut wire = Vec::new();
    let now = Instant::ZERO;
    let mut connect = conn.start(Connect::new(false)).unwrap();
    let mut auth = None;
    let mut computes = 0;
    loop {
        if let Some(task) = auth.as_mut() {
            if let Some(result) = conn.poll_task(now, task) {
                result.unwrap();
                break;
            }
        } else if let Some(result) = conn.poll_task(now, &mut connect) {
            result.unwrap();
            let mechanism = Scram::sha256("user", Secret::new("pencil"), SHA256_NONCE);
            auth = Some(conn.start(Auth::new(Box::new(mechanism))).unwrap());
            continue;
        }
        match conn.want(now) {
            Want::Write(octets) => {
                let n = octets.len();
                wire.extend_from_slice(octets);
                conn.wrote(now, Ok(n));
            }
            Want::Flush => conn.flushed(now, Ok(())),
            Want::Read(buf) => {
                let reply = server.pop_front().expect("the script ran out");
                buf[..reply.len()].copy_from_slice(&reply);
                conn.received(now, Ok(reply.len()));
            }
            Want::Compute(work) => {
                computes += 1;
                // Asked again until computed, the same work; no deadline.
                assert!(matches!(conn.want(now), Want::Compute(w) if w == work));
                assert_eq!(conn.poll_timeout(now), None);
                let lines = wire.split(|&b| b == b'\n').count();
                assert_eq!(lines, 2, "the answer went before the work was done");
                // The result of other work leaves this one wanted.
                conn.computed(now, Ok(SaslWork::new(|| Secret::new("x")).run()));
                assert!(matches!(conn.want(now), Want::Compute(w) if w == work));
                conn.computed(now, Ok(work.run()));
                // A second result is ignored.
                conn.computed(now, Ok(SaslWork::new(|| Secret::new("x")).run()));
            }
            Want::StartTls => unreachable!("no STLS here"),
            Want::Done => panic!("the session ended"),
        }
    }
    assert_eq!(computes, 1);
    let text = String::from_utf8(wire).unwrap();
    let lines: Vec<&str> = text.split("\r\n").collect();
    assert_eq!(lines[1], b64(SHA256_FINAL));
    assert_eq!(lines[2], "");
    assert_eq!(conn.machine().state(), ClientState::Transaction);
}

#[test]
fn a_failed_key_derivation_ends_the_session_with_a_sasl_work_error() {
    let challenge = format!("+ {}\r\n", b64(SHA256_FIRST));
    let (mut conn, mut server) = connection_until_compute(&[b"+OK hi\r\n", challenge.as_bytes()]);
    let now = Instant::ZERO;
    let mut connect = conn.start(Connect::new(false)).unwrap();
    let mut auth = None;
    let result = loop {
        if let Some(task) = auth.as_mut() {
            if let Some(result) = conn.poll_task(now, task) {
                break result;
            }
        } else if let Some(result) = conn.poll_task(now, &mut connect) {
            result.unwrap();
            let mechanism = Scram::sha256("user", Secret::new("pencil"), SHA256_NONCE);
            auth = Some(conn.start(Auth::new(Box::new(mechanism))).unwrap());
            continue;
        }
        match conn.want(now) {
            Want::Write(octets) => {
                let n = octets.len();
                conn.wrote(now, Ok(n));
            }
            Want::Flush => conn.flushed(now, Ok(())),
            Want::Read(buf) => {
                let reply = server.pop_front().expect("the script ran out");
                buf[..reply.len()].copy_from_slice(&reply);
                conn.received(now, Ok(reply.len()));
            }
            Want::Compute(_) => conn.computed(now, Err(std::io::Error::other("job panicked"))),
            Want::StartTls => unreachable!("no STLS here"),
            Want::Done => panic!("done before the task saw the failure"),
        }
    };
    assert!(matches!(result, Err(Error::SaslWork(_))), "{result:?}");
    assert!(conn.is_done());
}
