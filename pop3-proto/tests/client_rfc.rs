//! RFC example sessions as `C:`/`S:` transcripts, checked line by line:
//! every `C:` line must have been written by the time it appears, and
//! nothing more.

mod client_support;

use pop3_proto::client::{Client, ClientConfig, ClientError, ClientEvent, ClientState};
use pop3_proto::types::{MessageNumber, Secret};

use client_support::*;

enum Step {
    /// The client writes this line.
    C(&'static str),
    /// The server sends this line (CRLF added).
    S(&'static str),
    /// The application calls the machine.
    Call(fn(&mut Client)),
    /// The TLS handshake completes.
    Tls,
}
use Step::*;

fn n(i: u32) -> MessageNumber {
    MessageNumber::new(i).unwrap()
}

/// Runs a transcript; returns the driver for further checks.
fn transcript(config: ClientConfig, steps: &[Step]) -> Driver {
    let mut d = Driver::new(config);
    let mut matched = 0;
    for (i, step) in steps.iter().enumerate() {
        match step {
            C(line) => {
                let sent = d.sent_lines();
                assert!(
                    sent.len() > matched,
                    "step {i}: expected the client to have written {line:?} already"
                );
                assert_eq!(sent[matched], *line, "step {i}");
                matched += 1;
            }
            S(line) => {
                let sent = d.sent_lines();
                assert_eq!(
                    sent.len(),
                    matched,
                    "step {i}: unexpected client lines {:?}",
                    &sent[matched..]
                );
                d.feed(format!("{line}\r\n").as_bytes());
            }
            Call(f) => {
                f(&mut d.client);
                d.drain();
            }
            Tls => {
                assert_eq!(d.tls_requested, 1, "step {i}: StartTls expected");
                d.tls_requested = 0;
                d.client.handle_tls_established(d.now);
                d.drain();
            }
        }
    }
    assert_eq!(d.sent_lines().len(), matched, "trailing client lines");
    d
}

#[test]
fn rfc1939_example_pop3_session() {
    // RFC 1939 §10, with the messages' contents filled in.
    let d = transcript(
        plain_link(),
        &[
            S("+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>"),
            Call(|c| {
                c.apop("mrose", &Secret::new("tanstaaf")).unwrap();
                c.stat().unwrap();
                c.list(None).unwrap();
                c.retr(n(1)).unwrap();
                c.dele(n(1)).unwrap();
                c.retr(n(2)).unwrap();
                c.dele(n(2)).unwrap();
                c.quit().unwrap();
            }),
            C("APOP mrose c4c9334bac560ecc979e58001b3e22fb"),
            S("+OK mrose's maildrop has 2 messages (320 octets)"),
            C("STAT"),
            S("+OK 2 320"),
            C("LIST"),
            S("+OK 2 messages (320 octets)"),
            S("1 120"),
            S("2 200"),
            S("."),
            C("RETR 1"),
            S("+OK 120 octets"),
            S("Subject: one"),
            S(""),
            S("..a stuffed line"),
            S("."),
            C("DELE 1"),
            S("+OK message 1 deleted"),
            C("RETR 2"),
            S("+OK 200 octets"),
            S("Subject: two"),
            S("."),
            C("DELE 2"),
            S("+OK message 2 deleted"),
            C("QUIT"),
            S("+OK dewey POP3 server signing off (maildrop empty)"),
        ],
    );
    assert!(d.closed);
    assert_eq!(d.client.state(), ClientState::Closed);
    let ev = &d.events;
    assert!(matches!(&ev[0], ClientEvent::Greeting(g) if g.timestamp.is_some()));
    assert!(matches!(&ev[1], ClientEvent::Ok { .. }));
    assert!(
        matches!(&ev[2], ClientEvent::Stat { reply, .. } if reply.count == 2 && reply.size == 320)
    );
    assert!(matches!(&ev[3], ClientEvent::ListingStart { .. }));
    assert!(
        matches!(&ev[4], ClientEvent::Scan { entry, .. } if entry.msg == n(1) && entry.size == 120)
    );
    assert!(
        matches!(&ev[5], ClientEvent::Scan { entry, .. } if entry.msg == n(2) && entry.size == 200)
    );
    assert!(matches!(&ev[6], ClientEvent::ListingEnd { .. }));
    let retr1 = match &ev[7] {
        ClientEvent::BodyStart { id, .. } => *id,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        body_of(ev, retr1),
        b"Subject: one\r\n\r\n.a stuffed line\r\n".to_vec()
    );
    assert_eq!(ev.last(), Some(&ClientEvent::Closed));
}

#[test]
fn rfc1939_user_pass_example() {
    // RFC 1939 §7, USER and PASS.
    transcript(
        plain_link(),
        &[
            S("+OK POP3 server ready"),
            Call(|c| {
                c.user("frated").unwrap();
            }),
            C("USER frated"),
            S("-ERR sorry, no mailbox for frated here"),
            Call(|c| {
                c.user("mrose").unwrap();
                c.pass(Secret::new("secret")).unwrap();
            }),
            C("USER mrose"),
            S("+OK mrose is a real hoopy frood"),
            C("PASS secret"),
            S("+OK mrose's maildrop has 2 messages (320 octets)"),
        ],
    );
}

#[test]
fn rfc2449_pipelining_batches_user_pass_and_retr_dele() {
    // RFC 2449 §6.6 names the batches: USER and PASS together, several RETR
    // and DELE as a group; replies are matched in order.
    let d = transcript(
        plain_link(),
        &[
            S("+OK POP3 server ready"),
            Call(|c| {
                c.capa().unwrap();
            }),
            C("CAPA"),
            S("+OK Capability list follows"),
            S("TOP"),
            S("USER"),
            S("PIPELINING"),
            S("UIDL"),
            S("."),
            Call(|c| {
                c.login("mrose", Secret::new("tanstaaf")).unwrap();
                c.stat().unwrap();
            }),
            C("USER mrose"),
            C("PASS tanstaaf"),
            C("STAT"),
            S("+OK mrose is a real hoopy frood"),
            S("+OK mrose's maildrop has 2 messages (320 octets)"),
            S("+OK 2 320"),
            // Capabilities are dropped at login: read them again.
            Call(|c| {
                assert!(!c.pipelining_active());
                c.capa().unwrap();
            }),
            C("CAPA"),
            S("+OK"),
            S("PIPELINING"),
            S("."),
            Call(|c| {
                c.retr(n(1)).unwrap();
                c.retr(n(2)).unwrap();
                c.dele(n(1)).unwrap();
                c.dele(n(2)).unwrap();
                c.quit().unwrap();
            }),
            C("RETR 1"),
            C("RETR 2"),
            C("DELE 1"),
            C("DELE 2"),
            C("QUIT"),
            S("+OK"),
            S("one"),
            S("."),
            S("+OK"),
            S("two"),
            S("."),
            S("+OK message 1 deleted"),
            S("+OK message 2 deleted"),
            S("+OK bye"),
        ],
    );
    assert!(d.closed);
    let ids: Vec<_> = d
        .events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::BodyEnd { id } => Some(id.get()),
            ClientEvent::Ok { id, .. } => Some(id.get()),
            _ => None,
        })
        .collect();
    // USER, PASS, then RETR 1, RETR 2, DELE 1, DELE 2, QUIT in order.
    assert_eq!(ids, [1, 2, 5, 6, 7, 8, 9]);
}

#[test]
fn rfc2595_stls_example() {
    // RFC 2595 §4: STLS, +OK, the handshake, then STLS is not permitted.
    let d = transcript(
        plain_link(),
        &[
            S("+OK POP3 server ready"),
            Call(|c| {
                c.stls().unwrap();
                c.capa().unwrap();
            }),
            C("STLS"),
            S("+OK Begin TLS negotiation"),
            Tls,
            C("CAPA"),
            S("+OK"),
            S("USER"),
            S("."),
            Call(|c| assert_eq!(c.stls(), Err(ClientError::TlsActive))),
        ],
    );
    assert!(d.client.is_tls());
    assert_eq!(
        d.log.iter().filter(|a| **a == "starttls").count(),
        1,
        "{:?}",
        d.log
    );
}
