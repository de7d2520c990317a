//! One test per client requirement (SPEC sections C, D and E, and the
//! machine's own contract), named after it.

mod client_support;

use core::time::Duration;

use pop3_proto::client::sasl::{ClientMechanism, Plain, SaslError};
use pop3_proto::client::{
    CancelReason, ClientConfig, ClientError, ClientEvent, ClientState, ProtocolError, RequestId,
};
use pop3_proto::response::{Capability, CodeKind};
use pop3_proto::session::Action;
use pop3_proto::time::Instant;
use pop3_proto::types::{Mechanism, MessageNumber, Secret};

use client_support::*;

fn n(i: u32) -> MessageNumber {
    MessageNumber::new(i).unwrap()
}

fn greeted(config: ClientConfig, greeting: &str) -> Driver {
    let mut d = Driver::new(config);
    d.feed(format!("{greeting}\r\n").as_bytes());
    d.take_events();
    d
}

/// Greeted, CAPA answered with `caps` (one per line), logged in.
fn logged_in(config: ClientConfig, caps: &[&str]) -> Driver {
    let mut d = greeted(config, "+OK ready <1.2@host>");
    d.client.login("u", Secret::new("p")).unwrap();
    d.drain();
    d.feed(b"+OK\r\n+OK logged in\r\n");
    if !caps.is_empty() {
        d.client.capa().unwrap();
        d.drain();
        let mut reply = String::from("+OK\r\n");
        for c in caps {
            reply.push_str(c);
            reply.push_str("\r\n");
        }
        reply.push_str(".\r\n");
        d.feed(reply.as_bytes());
    }
    d.wire.clear();
    d.transmits.clear();
    d.take_events();
    d
}

fn errors(d: &Driver) -> Vec<ProtocolError> {
    d.events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Error(p) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

// ----- greeting -----

#[test]
fn greeting_enters_authorization() {
    let d = greeted(plain_link(), "+OK POP3 ready");
    assert_eq!(d.client.state(), ClientState::Authorization);
    assert!(d.client.greeting().is_some());
}

#[test]
fn err_greeting_is_a_typed_error_and_closes() {
    let mut d = Driver::new(plain_link());
    d.feed(b"-ERR [SYS/TEMP] too busy\r\n");
    match &errors(&d)[..] {
        [ProtocolError::GreetingRejected(e)] => {
            assert!(e.is_transient());
            assert_eq!(e.text(), b"too busy");
        }
        other => panic!("{other:?}"),
    }
    assert!(d.closed);
    assert_eq!(d.client.state(), ClientState::Closed);
    assert_eq!(d.client.capa(), Err(ClientError::Closed));
}

#[test]
fn commands_wait_for_the_greeting() {
    let mut d = Driver::new(plain_link());
    d.client.capa().unwrap();
    d.drain();
    assert!(d.wire.is_empty());
    d.feed(b"+OK hi\r\n");
    assert_eq!(d.sent_lines(), ["CAPA"]);
}

// ----- C.4 APOP timestamp -----

#[test]
fn apop_timestamp_exposed_only_when_valid() {
    let d = greeted(plain_link(), "+OK ready <1896.697170952@dbc.mtview.ca.us>");
    assert_eq!(
        d.client.apop_timestamp().unwrap().as_str(),
        "<1896.697170952@dbc.mtview.ca.us>"
    );
    for bad in [
        "+OK ready <no-at-sign>",
        "+OK ready <a@b@c>",
        "+OK ready <@host>",
        "+OK ready <unterminated@host",
    ] {
        let d = greeted(plain_link(), bad);
        assert!(d.client.apop_timestamp().is_none(), "{bad}");
    }
}

#[test]
fn apop_refused_for_malformed_timestamp() {
    let mut d = greeted(plain_link(), "+OK ready <no-at-sign>");
    assert_eq!(
        d.client.apop("mrose", &Secret::new("tanstaaf")),
        Err(ClientError::NoApopTimestamp)
    );
    d.drain();
    assert!(d.wire.is_empty());
}

#[test]
fn apop_refused_without_timestamp() {
    let mut d = greeted(plain_link(), "+OK ready");
    assert_eq!(
        d.client.apop("mrose", &Secret::new("tanstaaf")),
        Err(ClientError::NoApopTimestamp)
    );
}

#[test]
fn apop_refused_before_the_greeting() {
    let mut d = Driver::new(plain_link());
    assert_eq!(
        d.client.apop("mrose", &Secret::new("tanstaaf")),
        Err(ClientError::NoApopTimestamp)
    );
}

// ----- C.1 probing -----

#[test]
fn capa_err_is_tolerated_and_basic_commands_still_work() {
    let mut d = greeted(plain_link(), "+OK ready");
    let capa = d.client.capa().unwrap();
    d.client.login("u", Secret::new("p")).unwrap();
    let stat = d.client.stat().unwrap();
    d.drain();
    d.feed(b"-ERR unknown command\r\n+OK\r\n+OK\r\n+OK 1 10\r\n");
    assert!(
        d.events
            .iter()
            .any(|e| matches!(e, ClientEvent::Err { id, .. } if *id == capa))
    );
    assert!(
        d.events
            .iter()
            .any(|e| matches!(e, ClientEvent::Stat { id, .. } if *id == stat))
    );
    assert!(d.client.capabilities().is_none());
    assert!(errors(&d).is_empty());
    assert_eq!(d.sent_lines(), ["CAPA", "USER u", "PASS p", "STAT"]);
}

// ----- C.2 pipelining -----

#[test]
fn pipelined_replies_matched_in_order() {
    let mut d = logged_in(plain_link(), &["PIPELINING"]);
    assert!(d.client.pipelining_active());
    let a = d.client.list(Some(n(1))).unwrap();
    let b = d.client.uidl(Some(n(1))).unwrap();
    let c = d.client.retr(n(1)).unwrap();
    let e = d.client.dele(n(1)).unwrap();
    d.drain();
    assert_eq!(d.sent_lines(), ["LIST 1", "UIDL 1", "RETR 1", "DELE 1"]);
    d.feed(b"+OK 1 5\r\n+OK 1 abc\r\n+OK\r\nhello\r\n.\r\n-ERR [SYS/TEMP] busy\r\n");
    let ids: Vec<RequestId> = d.events.iter().filter_map(event_id).collect();
    assert_eq!(ids, [a, b, c, c, c, e]);
    assert!(matches!(&d.events[0], ClientEvent::Scan { entry, .. } if entry.size == 5));
    assert!(matches!(&d.events[1], ClientEvent::Uid { entry, .. } if entry.uid.as_str() == "abc"));
    assert!(matches!(&d.events[5], ClientEvent::Err { error, .. } if error.is_transient()));
}

#[test]
fn without_pipelining_one_command_at_a_time() {
    let mut d = logged_in(plain_link(), &["TOP"]);
    assert!(!d.client.pipelining_active());
    d.client.noop().unwrap();
    d.client.noop().unwrap();
    d.drain();
    assert_eq!(d.sent_lines(), ["NOOP"]);
    d.feed(b"+OK\r\n");
    assert_eq!(d.sent_lines(), ["NOOP", "NOOP"]);
}

#[test]
fn pipelining_switch_off_in_config() {
    let mut config = plain_link();
    config.pipelining = false;
    let mut d = logged_in(config, &["PIPELINING"]);
    assert!(!d.client.pipelining_active());
    d.client.noop().unwrap();
    d.client.noop().unwrap();
    d.drain();
    assert_eq!(d.sent_lines(), ["NOOP"]);
}

#[test]
fn pipelining_window_is_bounded() {
    let mut config = plain_link();
    config.max_in_flight = 3;
    let mut d = logged_in(config, &["PIPELINING"]);
    for _ in 0..10 {
        d.client.noop().unwrap();
    }
    d.drain();
    assert_eq!(d.sent_lines().len(), 3);
    assert_eq!(d.client.outstanding(), 10);
}

#[test]
fn a_full_window_is_refilled_in_one_batch_once_half_is_answered() {
    let mut config = plain_link();
    config.max_in_flight = 4;
    let mut d = logged_in(config, &["PIPELINING"]);
    for i in 1..=10 {
        d.client.retr(n(i)).unwrap();
    }
    d.drain();
    assert_eq!(d.sent_lines().len(), 4);
    // One reply of four: three in flight is more than half the window.
    d.feed(b"+OK\r\nbody\r\n.\r\n");
    assert_eq!(d.sent_lines().len(), 4);
    // The second reply leaves two: the window fills again at once.
    d.feed(b"+OK\r\nbody\r\n.\r\n");
    assert_eq!(d.sent_lines().len(), 6);
    assert_eq!(
        d.sent_lines()[4..],
        ["RETR 5", "RETR 6"],
        "the next commands in order"
    );
    // Every command is written in the end, in order.
    for _ in 0..8 {
        d.feed(b"+OK\r\nbody\r\n.\r\n");
    }
    let sent = d.sent_lines();
    let expected: Vec<String> = (1..=10).map(|i| format!("RETR {i}")).collect();
    assert_eq!(sent, expected);
    assert_eq!(d.client.outstanding(), 0);
}

#[test]
fn pipelining_window_is_bounded_in_octets() {
    let mut config = plain_link();
    config.max_in_flight_bytes = 20;
    let mut d = logged_in(config, &["PIPELINING"]);
    for i in 1..=10 {
        d.client.retr(n(i)).unwrap();
    }
    d.drain();
    // "RETR n\r\n" is 8 octets: two fit in 20.
    assert_eq!(d.sent_lines().len(), 2);
}

#[test]
fn stls_auth_and_quit_are_barriers() {
    let mut d = greeted(plain_link(), "+OK ready");
    d.client.capa().unwrap();
    d.drain();
    d.feed(b"+OK\r\nPIPELINING\r\nSTLS\r\nSASL PLAIN\r\n.\r\n");
    d.wire.clear();
    d.client.stls().unwrap();
    d.client.capa().unwrap();
    d.drain();
    assert_eq!(d.sent_lines(), ["STLS"]);
    d.feed(b"+OK go\r\n");
    // Nothing is written until the handshake is over.
    assert_eq!(d.sent_lines(), ["STLS"]);
    d.client.handle_tls_established(d.now);
    d.drain();
    assert_eq!(d.sent_lines(), ["STLS", "CAPA"]);
    d.feed(b"+OK\r\nPIPELINING\r\nSASL PLAIN\r\n.\r\n");
    d.client
        .auth(Box::new(Plain::new("u", Secret::new("p"))))
        .unwrap();
    d.client.stat().unwrap();
    d.drain();
    assert_eq!(d.sent_lines().len(), 3, "{:?}", d.sent_lines());
    d.feed(b"+OK welcome\r\n");
    assert_eq!(d.sent_lines()[3], "STAT");
    d.client.quit().unwrap();
    assert_eq!(d.client.noop(), Err(ClientError::Closed));
}

// ----- C.3 capabilities -----

#[test]
fn capabilities_dropped_after_stls() {
    let mut d = greeted(plain_link(), "+OK ready");
    d.client.capa().unwrap();
    d.drain();
    d.feed(b"+OK\r\nSTLS\r\nUSER\r\n.\r\n");
    assert_eq!(
        d.client.capabilities(),
        Some(&[Capability::Stls, Capability::User][..])
    );
    d.client.stls().unwrap();
    d.drain();
    d.feed(b"+OK Begin TLS\r\n");
    assert_eq!(d.client.capabilities(), None);
    assert_eq!(d.client.state(), ClientState::TlsHandshake);
    d.client.handle_tls_established(d.now);
    assert_eq!(d.client.state(), ClientState::Authorization);
    assert_eq!(d.client.capabilities(), None);
}

#[test]
fn capabilities_dropped_after_login() {
    let mut d = greeted(plain_link(), "+OK ready");
    d.client.capa().unwrap();
    d.drain();
    d.feed(b"+OK\r\nPIPELINING\r\nSASL PLAIN\r\n.\r\n");
    assert!(d.client.pipelining_active());
    d.client.login("u", Secret::new("p")).unwrap();
    d.drain();
    d.feed(b"+OK\r\n+OK\r\n");
    assert_eq!(d.client.state(), ClientState::Transaction);
    assert_eq!(d.client.capabilities(), None);
    assert!(!d.client.pipelining_active());
}

#[test]
fn implementation_capability_is_kept_verbatim() {
    let d = logged_in(
        plain_link(),
        &["IMPLEMENTATION Shlemazle-Plotz-v302", "TOP"],
    );
    match &d.client.capabilities().unwrap()[0] {
        Capability::Implementation(text) => assert_eq!(&text[..], "Shlemazle-Plotz-v302"),
        other => panic!("expected IMPLEMENTATION, got {other:?}"),
    }
}

// ----- D.1 STLS -----

#[test]
fn stls_injected_bytes_after_ok_are_an_error() {
    let mut d = greeted(plain_link(), "+OK ready");
    d.client.stls().unwrap();
    d.drain();
    d.feed(b"+OK Begin TLS\r\n+OK injected\r\n");
    assert_eq!(d.tls_requested, 0, "no handshake over a tampered stream");
    assert!(matches!(
        errors(&d)[..],
        [ProtocolError::StlsInjection { octets: 14 }]
    ));
    assert!(d.closed);
}

#[test]
fn stls_injected_bytes_in_a_later_read_are_an_error() {
    let mut d = greeted(plain_link(), "+OK ready");
    d.client.stls().unwrap();
    d.drain();
    d.feed(b"+OK Begin TLS\r\n");
    assert_eq!(d.tls_requested, 1);
    let used = d.client.handle_input(d.now, b"-ERR x\r\n");
    d.drain();
    assert_eq!(used, 8);
    assert!(matches!(
        errors(&d)[..],
        [ProtocolError::StlsInjection { .. }]
    ));
    assert!(d.closed);
}

#[test]
fn starttls_comes_after_the_stls_ok_event() {
    let mut d = greeted(plain_link(), "+OK ready");
    let id = d.client.stls().unwrap();
    d.drain();
    d.log.clear();
    d.feed(b"+OK Begin TLS\r\n");
    assert_eq!(d.log, ["event", "starttls"]);
    assert!(matches!(&d.events[..], [ClientEvent::Ok { id: i, .. }] if *i == id));
}

#[test]
fn stls_refused_when_tls_active() {
    let mut config = plain_link();
    config.tls_active = true;
    let mut d = greeted(config, "+OK ready");
    assert_eq!(d.client.stls(), Err(ClientError::TlsActive));
    let mut d = greeted(plain_link(), "+OK ready");
    d.client.stls().unwrap();
    assert_eq!(d.client.stls(), Err(ClientError::TlsActive));
}

#[test]
fn stls_refused_in_transaction() {
    let mut d = logged_in(plain_link(), &[]);
    assert!(matches!(
        d.client.stls(),
        Err(ClientError::WrongState {
            command: "STLS",
            ..
        })
    ));
}

#[test]
fn stls_err_cancels_what_was_queued_after_it() {
    let mut d = greeted(plain_link(), "+OK ready");
    let stls = d.client.stls().unwrap();
    let capa = d.client.capa().unwrap();
    d.drain();
    d.feed(b"-ERR not now\r\n");
    assert!(d.events.contains(&ClientEvent::Cancelled {
        id: capa,
        reason: CancelReason::PrecedingFailed { by: stls }
    }));
    assert!(!d.client.is_tls());
    // STLS may be tried again.
    assert!(d.client.stls().is_ok());
}

// ----- D.2 clear-text -----

#[test]
fn cleartext_login_refused_without_tls_by_default() {
    let mut config = ClientConfig::default();
    let mut d = greeted(config.clone(), "+OK ready");
    assert_eq!(d.client.user("u"), Err(ClientError::CleartextRefused));
    assert_eq!(
        d.client.auth(Box::new(Plain::new("u", Secret::new("p")))),
        Err(ClientError::CleartextRefused)
    );
    // Once STLS is queued, a login may be queued after it.
    d.client.stls().unwrap();
    assert!(d.client.login("u", Secret::new("p")).is_ok());
    // Implicit TLS.
    config.tls_active = true;
    let mut d = greeted(config, "+OK ready");
    assert!(d.client.user("u").is_ok());
}

#[test]
fn cleartext_login_without_tls_only_when_explicitly_insecure() {
    let mut config = ClientConfig::default();
    config.insecure_cleartext_login = true;
    let mut d = greeted(config.clone(), "+OK ready");
    assert!(d.client.user("u").is_ok());
    let mut d = greeted(config, "+OK ready");
    assert!(
        d.client
            .auth(Box::new(Plain::new("u", Secret::new("p"))))
            .is_ok()
    );
}

// ----- D.4 AUTH -----

#[test]
fn auth_plain_initial_response_on_the_auth_line() {
    let mut d = greeted(plain_link(), "+OK ready");
    d.client
        .auth(Box::new(Plain::new("alice", Secret::new("secret"))))
        .unwrap();
    d.drain();
    assert_eq!(d.sent_lines(), ["AUTH PLAIN AGFsaWNlAHNlY3JldA=="]);
    assert!(d.transmits[0].secret);
    assert_eq!(d.client.state(), ClientState::Authenticating);
    d.feed(b"+OK Logged in.\r\n");
    assert_eq!(d.client.state(), ClientState::Transaction);
}

#[test]
fn auth_initial_response_too_long_goes_after_the_challenge() {
    let mut d = greeted(plain_link(), "+OK ready");
    let long = "x".repeat(300);
    d.client
        .auth(Box::new(Plain::new("alice", Secret::new(long.clone()))))
        .unwrap();
    d.drain();
    assert_eq!(d.sent_lines(), ["AUTH PLAIN"]);
    assert!(!d.transmits[0].secret);
    d.feed(b"+ \r\n");
    assert_eq!(d.sent_lines().len(), 2);
    assert!(d.transmits[1].secret);
    assert!(d.sent_lines()[1].len() > 255);
}

struct Refuses;
impl ClientMechanism for Refuses {
    fn name(&self) -> Mechanism {
        Mechanism::new("X-REFUSES").unwrap()
    }
    fn initial_response(&mut self) -> Option<Secret> {
        None
    }
    fn step(&mut self, _: &[u8]) -> Result<Secret, SaslError> {
        Err(SaslError::BadChallenge)
    }
}

#[test]
fn sasl_step_failure_cancels_the_exchange_with_star() {
    let mut d = greeted(plain_link(), "+OK ready");
    let id = d.client.auth(Box::new(Refuses)).unwrap();
    d.drain();
    d.feed(b"+ Zm9v\r\n");
    assert_eq!(d.sent_lines(), ["AUTH X-REFUSES", "*"]);
    assert!(d.events.contains(&ClientEvent::SaslCancelled {
        id,
        error: SaslError::BadChallenge
    }));
    d.feed(b"-ERR Authentication aborted\r\n");
    assert_eq!(d.client.state(), ClientState::Authorization);
}

#[test]
fn auth_refused_in_transaction() {
    let mut d = logged_in(plain_link(), &[]);
    assert!(matches!(
        d.client.auth(Box::new(Plain::new("u", Secret::new("p")))),
        Err(ClientError::WrongState { .. })
    ));
}

// ----- state checks on queued commands -----

#[test]
fn retr_before_login_is_refused() {
    let mut d = greeted(plain_link(), "+OK ready");
    assert_eq!(
        d.client.retr(n(1)),
        Err(ClientError::WrongState {
            command: "RETR",
            state: ClientState::Authorization
        })
    );
}

#[test]
fn stat_queued_after_user_pass_is_accepted() {
    let mut d = greeted(plain_link(), "+OK ready");
    d.client.user("u").unwrap();
    d.client.pass(Secret::new("p")).unwrap();
    assert!(d.client.stat().is_ok());
    assert!(matches!(
        d.client.user("x"),
        Err(ClientError::WrongState { .. })
    ));
}

#[test]
fn pass_without_user_is_refused() {
    let mut d = greeted(plain_link(), "+OK ready");
    assert!(matches!(
        d.client.pass(Secret::new("p")),
        Err(ClientError::WrongState {
            command: "PASS",
            ..
        })
    ));
}

#[test]
fn failed_pass_cancels_queued_commands() {
    let mut d = greeted(plain_link(), "+OK ready");
    let (_, pass) = d.client.login("u", Secret::new("bad")).unwrap();
    let stat = d.client.stat().unwrap();
    let list = d.client.list(None).unwrap();
    d.drain();
    d.feed(b"+OK\r\n-ERR [AUTH] Authentication failed.\r\n");
    for id in [stat, list] {
        assert!(d.events.contains(&ClientEvent::Cancelled {
            id,
            reason: CancelReason::PrecedingFailed { by: pass }
        }));
    }
    assert_eq!(d.sent_lines(), ["USER u", "PASS bad"]);
    assert_eq!(d.client.state(), ClientState::Authorization);
    // The session is usable again: USER must come first.
    assert!(matches!(
        d.client.pass(Secret::new("p")),
        Err(ClientError::WrongState { .. })
    ));
    assert!(d.client.login("u", Secret::new("good")).is_ok());
}

#[test]
fn failed_pass_with_pipelined_stat_gets_the_servers_answer() {
    // mpop writes USER, PASS and STAT at once: STAT is already on the wire
    // when PASS fails, and gets the server's own -ERR.
    let mut d = greeted(plain_link(), "+OK ready");
    d.client.capa().unwrap();
    d.drain();
    d.feed(b"+OK\r\nPIPELINING\r\nUSER\r\n.\r\n");
    d.client.login("u", Secret::new("bad")).unwrap();
    let stat = d.client.stat().unwrap();
    d.drain();
    assert_eq!(d.sent_lines()[1..], ["USER u", "PASS bad", "STAT"]);
    d.feed(b"+OK\r\n-ERR [AUTH] no\r\n-ERR Unknown command.\r\n");
    assert!(
        d.events
            .iter()
            .any(|e| matches!(e, ClientEvent::Err { id, .. } if *id == stat))
    );
    assert!(errors(&d).is_empty());
}

#[test]
fn nothing_can_be_queued_after_quit() {
    let mut d = greeted(plain_link(), "+OK ready");
    d.client.quit().unwrap();
    assert_eq!(d.client.capa(), Err(ClientError::Closed));
    d.drain();
    d.feed(b"+OK bye\r\n");
    assert!(d.closed);
    assert_eq!(d.events.last(), Some(&ClientEvent::Closed));
}

#[test]
fn utf8_only_in_authorization() {
    let mut d = greeted(plain_link(), "+OK ready");
    assert!(d.client.utf8().is_ok());
    let mut d = logged_in(plain_link(), &[]);
    assert!(matches!(
        d.client.utf8(),
        Err(ClientError::WrongState { .. })
    ));
}

#[test]
fn password_with_a_line_end_is_refused() {
    let mut d = greeted(plain_link(), "+OK ready");
    d.client.user("u").unwrap();
    assert!(matches!(
        d.client.pass(Secret::new("p\r\nDELE 1")),
        Err(ClientError::InvalidArgument(_))
    ));
    assert!(matches!(
        d.client.user("a b"),
        Err(ClientError::InvalidArgument(_))
    ));
}

// ----- secrets -----

#[test]
fn secrets_are_flagged_for_redaction() {
    let mut d = greeted(plain_link(), "+OK ready <1.2@h>");
    d.client.user("u").unwrap();
    d.client.pass(Secret::new("p")).unwrap();
    d.drain();
    d.feed(b"+OK\r\n");
    assert_eq!(
        d.transmits.iter().map(|t| t.secret).collect::<Vec<_>>(),
        [false, true]
    );
    assert!(!format!("{:?}", d.transmits[1]).contains("PASS"));
    d.feed(b"-ERR\r\n");
    d.client.apop("u", &Secret::new("p")).unwrap();
    d.drain();
    assert!(d.transmits[2].secret);
}

// ----- errors and response codes -----

#[test]
fn transient_response_codes_are_told_apart() {
    let mut d = greeted(plain_link(), "+OK ready");
    for (line, transient, kind) in [
        ("-ERR [IN-USE] locked", true, Some(CodeKind::InUse)),
        ("-ERR [LOGIN-DELAY] wait", true, Some(CodeKind::LoginDelay)),
        ("-ERR [SYS/TEMP] try later", true, Some(CodeKind::SysTemp)),
        ("-ERR [SYS/PERM] gone", false, Some(CodeKind::SysPerm)),
        ("-ERR [AUTH] bad password", false, Some(CodeKind::Auth)),
        ("-ERR", false, None),
    ] {
        d.take_events();
        d.client.user("u").unwrap();
        d.drain();
        d.feed(format!("{line}\r\n").as_bytes());
        match &d.events[..] {
            [ClientEvent::Err { error, .. }] => {
                assert_eq!(error.is_transient(), transient, "{line}");
                assert_eq!(error.kind(), kind, "{line}");
            }
            other => panic!("{line}: {other:?}"),
        }
    }
}

#[test]
fn malformed_stat_is_reported_and_the_session_continues() {
    let mut d = logged_in(plain_link(), &[]);
    let bad = d.client.stat().unwrap();
    let good = d.client.stat().unwrap();
    d.drain();
    d.feed(b"+OK seven 100\r\n+OK 7 100\r\n");
    assert!(matches!(&d.events[0], ClientEvent::Malformed { id, .. } if *id == bad));
    assert!(
        matches!(&d.events[1], ClientEvent::Stat { id, reply } if *id == good && reply.count == 7)
    );
}

#[test]
fn listing_entry_beyond_stat_count_is_malformed() {
    let mut d = logged_in(plain_link(), &[]);
    d.client.stat().unwrap();
    let list = d.client.list(None).unwrap();
    d.drain();
    d.feed(b"+OK 2 20\r\n+OK\r\n1 10\r\n3 10\r\n.\r\n");
    assert_eq!(d.client.message_count(), Some(2));
    let kinds: Vec<_> = d
        .events
        .iter()
        .filter(|e| event_id(e) == Some(list))
        .map(|e| match e {
            ClientEvent::ListingStart { .. } => "start",
            ClientEvent::Scan { .. } => "scan",
            ClientEvent::Malformed { .. } => "bad",
            ClientEvent::ListingEnd { .. } => "end",
            _ => "?",
        })
        .collect();
    assert_eq!(kinds, ["start", "scan", "bad", "end"]);
}

#[test]
fn list_n_reply_for_another_message_is_malformed() {
    let mut d = logged_in(plain_link(), &[]);
    d.client.list(Some(n(1))).unwrap();
    d.drain();
    d.feed(b"+OK 99 1024\r\n");
    assert!(matches!(&d.events[..], [ClientEvent::Malformed { .. }]));
}

#[test]
fn unsolicited_line_is_an_error() {
    let mut d = greeted(plain_link(), "+OK ready");
    d.feed(b"-ERR Disconnected for inactivity.\r\n");
    assert!(matches!(
        errors(&d)[..],
        [ProtocolError::Unsolicited { .. }]
    ));
    assert!(d.closed);
}

#[test]
fn status_line_that_is_not_ok_or_err_is_an_error() {
    let mut d = logged_in(plain_link(), &[]);
    let id = d.client.noop().unwrap();
    d.drain();
    d.feed(b"* what\r\n");
    assert!(matches!(
        errors(&d)[..],
        [ProtocolError::BadResponse { .. }]
    ));
    assert!(d.events.contains(&ClientEvent::Cancelled {
        id,
        reason: CancelReason::ConnectionClosed { sent: true }
    }));
}

#[test]
fn over_long_line_is_an_error() {
    let mut d = logged_in(plain_link(), &[]);
    d.client.noop().unwrap();
    d.drain();
    d.feed(&vec![b'x'; 20_000]);
    assert!(matches!(
        errors(&d)[..],
        [ProtocolError::LineTooLong { .. }]
    ));
}

// ----- timeouts -----

#[test]
fn reply_timeout_is_an_error_and_closes() {
    let mut config = plain_link();
    config.reply_timeout = Some(Duration::from_secs(30));
    let mut d = logged_in(config, &[]);
    assert_eq!(d.client.poll_timeout(), None, "idle: no timer");
    let id = d.client.noop().unwrap();
    d.drain();
    let deadline = d.client.poll_timeout().unwrap();
    assert_eq!(deadline, d.now + Duration::from_secs(30));
    d.client
        .handle_timeout(Instant::from_millis(deadline.as_millis() - 1));
    d.drain();
    assert!(errors(&d).is_empty());
    d.client.handle_timeout(deadline);
    d.drain();
    assert!(matches!(errors(&d)[..], [ProtocolError::Timeout]));
    assert!(d.events.contains(&ClientEvent::Cancelled {
        id,
        reason: CancelReason::ConnectionClosed { sent: true }
    }));
    assert!(d.closed);
    assert_eq!(d.client.poll_timeout(), None);
}

#[test]
fn greeting_timeout() {
    let mut d = Driver::new(plain_link());
    let deadline = d.client.poll_timeout().unwrap();
    d.client.handle_timeout(deadline);
    d.drain();
    assert!(matches!(errors(&d)[..], [ProtocolError::Timeout]));
}

#[test]
fn reply_timeout_restarts_while_a_body_streams() {
    let mut config = plain_link();
    config.reply_timeout = Some(Duration::from_secs(10));
    let mut d = logged_in(config, &[]);
    d.client.retr(n(1)).unwrap();
    d.drain();
    d.feed(b"+OK\r\n");
    for _ in 0..5 {
        d.advance(9_000);
        d.feed(b"a line of the body\r\n");
        d.client.handle_timeout(d.now);
        d.drain();
    }
    assert!(errors(&d).is_empty());
    d.feed(b".\r\n");
    assert_eq!(d.client.poll_timeout(), None);
}

// ----- end of stream -----

#[test]
fn eof_mid_body_cancels_the_command() {
    let mut d = logged_in(plain_link(), &[]);
    let id = d.client.retr(n(1)).unwrap();
    d.drain();
    d.feed(b"+OK\r\npart of a mess");
    d.client.handle_eof(d.now);
    d.drain();
    assert!(matches!(errors(&d)[..], [ProtocolError::UnexpectedEof]));
    assert!(!d.events.contains(&ClientEvent::BodyEnd { id }));
    assert!(d.events.contains(&ClientEvent::Cancelled {
        id,
        reason: CancelReason::ConnectionClosed { sent: true }
    }));
    assert!(d.closed);
}

#[test]
fn eof_when_idle_closes_without_error() {
    let mut d = logged_in(plain_link(), &[]);
    d.client.handle_eof(d.now);
    d.drain();
    assert!(errors(&d).is_empty());
    assert_eq!(d.events, [ClientEvent::Closed]);
    assert!(d.closed);
}

// ----- lenient parsing (SPEC E) -----

#[test]
fn bare_lf_line_ends_and_lowercase_status() {
    let mut d = Driver::new(plain_link());
    d.feed(b"+ok hello\n");
    d.client.capa().unwrap();
    d.client.login("u", Secret::new("p")).unwrap();
    d.drain();
    d.feed(b"+OK\nTOP\n.\n+ok\n+Ok fine\n");
    d.client.list(None).unwrap();
    d.client.retr(n(1)).unwrap();
    d.drain();
    d.feed(b"+OK 20 Messages\n1 10\n.\n+OK\nline\n..dot\n.\n");
    assert!(errors(&d).is_empty(), "{:?}", d.events);
    let retr = d
        .events
        .iter()
        .rev()
        .find_map(|e| match e {
            ClientEvent::BodyEnd { id } => Some(*id),
            _ => None,
        })
        .unwrap();
    assert_eq!(body_of(&d.events, retr), b"line\n.dot\n");
}

#[test]
fn bare_ok_replies() {
    let mut d = greeted(plain_link(), "+OK");
    d.client.user("u").unwrap();
    d.drain();
    d.feed(b"+OK\r\n");
    assert!(matches!(&d.events[..], [ClientEvent::Ok { line, .. }] if line.text.is_empty()));
}

// ----- streaming and backpressure -----

#[test]
fn backpressure_takes_less_when_events_are_not_drained() {
    let mut config = plain_link();
    config.max_queued_actions = 8;
    let mut d = logged_in(config, &[]);
    d.client.list(None).unwrap();
    d.drain();
    let mut listing = b"+OK\r\n".to_vec();
    for i in 1..=1000 {
        listing.extend_from_slice(format!("{i} 100\r\n").as_bytes());
    }
    listing.extend_from_slice(b".\r\n");
    let mut offset = 0;
    let mut zero = false;
    for _ in 0..100 {
        let used = d.client.handle_input(d.now, &listing[offset..]);
        offset += used;
        if used == 0 {
            zero = true;
            break;
        }
    }
    assert!(zero, "never pushed back");
    // Draining lets it go on, and nothing is lost.
    d.drain();
    d.feed(&listing[offset..]);
    let scans = d
        .events
        .iter()
        .filter(|e| matches!(e, ClientEvent::Scan { .. }))
        .count();
    assert_eq!(scans, 1000);
}

#[test]
fn large_listing_streams_entry_by_entry_in_bounded_memory() {
    let mut config = plain_link();
    config.max_queued_actions = 64;
    let mut d = logged_in(config, &[]);
    d.client.uidl(None).unwrap();
    d.drain();
    d.feed(b"+OK\r\n");
    let mut count = 0usize;
    let mut max_batch = 0usize;
    let mut block = Vec::new();
    for i in 1..=100_000u32 {
        block.extend_from_slice(format!("{i} uid-{i:08}\r\n").as_bytes());
        if block.len() > 60_000 || i == 100_000 {
            if i == 100_000 {
                block.extend_from_slice(b".\r\n");
            }
            let mut rest = &block[..];
            while !rest.is_empty() {
                let used = d.client.handle_input(d.now, rest);
                rest = &rest[used..];
                let mut batch = 0;
                while let Some(a) = d.client.poll_action() {
                    batch += 1;
                    if let Action::Event(ClientEvent::Uid { .. }) = a {
                        count += 1;
                    }
                }
                max_batch = max_batch.max(batch);
            }
            block.clear();
        }
    }
    assert_eq!(count, 100_000);
    assert_eq!(d.client.outstanding(), 0);
    // Draining parses more as room frees up, so one drain may see many
    // entries, but the queue itself never held more than its bound.
    assert!(max_batch > 0);
}

#[test]
fn large_body_streams_in_zero_copy_chunks() {
    let mut d = logged_in(plain_link(), &[]);
    let id = d.client.retr(n(1)).unwrap();
    d.drain();
    d.feed(b"+OK\r\n");
    let line = b"0123456789012345678901234567890123456789012345678901234567890123456789\r\n";
    let mut total = 0usize;
    let mut block = Vec::new();
    for _ in 0..1000 {
        block.extend_from_slice(line);
    }
    for _ in 0..150 {
        // ~10 MiB in 72 KiB reads; the driver keeps no copy of events.
        let mut rest = &block[..];
        while !rest.is_empty() {
            let used = d.client.handle_input(d.now, rest);
            assert!(used <= 64 * 1024 + 8 * 1024 + 1);
            rest = &rest[used..];
            while let Some(a) = d.client.poll_action() {
                if let Action::Event(ClientEvent::BodyChunk { data, .. }) = a {
                    total += data.len();
                }
            }
        }
    }
    d.feed(b".\r\n");
    assert_eq!(total, 150 * block.len());
    assert!(d.events.contains(&ClientEvent::BodyEnd { id }));
}

#[test]
fn every_split_of_a_small_session_gives_the_same_events() {
    let greeting = b"+OK ready <1.2@h>\r\n".to_vec();
    let replies: &[u8] = b"+OK\r\nPIPELINING\r\nTOP\r\n.\r\n+OK\r\n+OK in\r\n+OK 2 30\r\n+OK\r\n1 10\r\n2 20\r\n.\r\n+OK\r\n..x\r\ny\r\n.\r\n-ERR [IN-USE] no\r\n+OK bye\r\n";
    let run = |split: Option<usize>| {
        let mut d = Driver::new(plain_link());
        d.split_at = split;
        d.feed(&greeting);
        d.client.capa().unwrap();
        d.drain();
        d.feed(&replies[..26]);
        d.client.login("u", Secret::new("p")).unwrap();
        d.client.stat().unwrap();
        d.client.list(None).unwrap();
        d.client.retr(n(1)).unwrap();
        d.client.dele(n(2)).unwrap();
        d.client.quit().unwrap();
        d.drain();
        d.feed(&replies[26..]);
        (coalesce(&d.events), d.wire.clone())
    };
    let want = run(None);
    assert!(want.0.contains(&ClientEvent::Closed), "{:?}", want.0);
    for p in 0..=greeting.len() + replies.len() {
        assert_eq!(run(Some(p)), want, "split at {p}");
    }
}

#[test]
fn body_ending_in_dot_cr_without_lf_completes_at_eof() {
    let mut d = logged_in(plain_link(), &[]);
    let id = d.client.retr(n(1)).unwrap();
    d.drain();
    d.feed(b"+OK\r\nhello\r\n.\r");
    assert!(!d.events.contains(&ClientEvent::BodyEnd { id }));
    d.client.handle_eof(d.now);
    d.drain();
    assert!(d.events.contains(&ClientEvent::BodyEnd { id }));
    assert_eq!(body_of(&d.events, id), b"hello\r\n");
    assert!(errors(&d).is_empty());
    assert!(d.closed);
}

#[test]
fn body_ending_in_dot_cr_without_lf_completes_at_the_timeout() {
    let mut d = logged_in(plain_link(), &[]);
    let id = d.client.retr(n(1)).unwrap();
    let noop = d.client.noop().unwrap();
    d.drain();
    d.feed(b"+OK\r\nhello\r\n.\r");
    let deadline = d.client.poll_timeout().unwrap();
    d.client.handle_timeout(deadline);
    d.drain();
    assert!(d.events.contains(&ClientEvent::BodyEnd { id }));
    assert!(errors(&d).is_empty());
    // The session goes on.
    assert_eq!(d.sent_lines().last().unwrap(), "NOOP");
    d.feed(b"+OK\r\n");
    assert!(matches!(d.events.last(), Some(ClientEvent::Ok { id, .. }) if *id == noop));
}

#[test]
fn quit_err_still_ends_the_session() {
    let mut d = logged_in(plain_link(), &[]);
    let id = d.client.quit().unwrap();
    d.drain();
    d.feed(b"-ERR some deleted messages not removed\r\n");
    assert!(matches!(&d.events[0], ClientEvent::Err { id: i, .. } if *i == id));
    assert_eq!(d.events.last(), Some(&ClientEvent::Closed));
    assert!(d.closed);
}

#[test]
fn client_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<pop3_proto::client::Client>();
}

#[test]
fn xoauth2_two_step_and_error_challenge() {
    use pop3_proto::client::sasl::XOAuth2;
    let mut d = greeted(plain_link(), "+OK ready");
    let id = d
        .client
        .auth(Box::new(
            XOAuth2::new("u@example.com", Secret::new("tok")).two_step(),
        ))
        .unwrap();
    d.drain();
    assert_eq!(d.sent_lines(), ["AUTH XOAUTH2"]);
    d.feed(b"+ \r\n");
    // base64("user=u@example.com\x01auth=Bearer tok\x01\x01")
    assert_eq!(
        d.sent_lines()[1],
        "dXNlcj11QGV4YW1wbGUuY29tAWF1dGg9QmVhcmVyIHRvawEB"
    );
    d.feed(b"+ eyJzdGF0dXMiOiI0MDEifQ==\r\n");
    assert_eq!(d.sent_lines().len(), 2, "an empty line was sent");
    assert!(d.wire.ends_with(b"\r\n\r\n"));
    d.feed(b"-ERR [AUTH] invalid token\r\n");
    assert!(matches!(d.events.last(), Some(ClientEvent::Err { id: i, .. }) if *i == id));
    assert_eq!(d.client.state(), ClientState::Authorization);
}

#[test]
fn oauthbearer_sends_the_initial_response_and_aq_after_an_error() {
    use pop3_proto::client::sasl::OAuthBearer;
    let mut d = greeted(plain_link(), "+OK ready");
    d.client
        .auth(Box::new(OAuthBearer::new("u", Secret::new("t"))))
        .unwrap();
    d.drain();
    assert!(d.sent_lines()[0].starts_with("AUTH OAUTHBEARER "));
    d.feed(b"+ eyJzdGF0dXMiOiI0MDEifQ==\r\n");
    assert_eq!(d.sent_lines()[1], "AQ==");
}

#[test]
fn scram_sha256_through_the_machine_with_rfc7677_vector() {
    use pop3_proto::client::sasl::Scram;
    let mut d = greeted(plain_link(), "+OK ready");
    let mech = Scram::sha256("user", Secret::new("pencil"), "rOprNGfwEbeRWgbNEkqO");
    let id = d.client.auth(Box::new(mech)).unwrap();
    d.drain();
    // base64("n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
    assert_eq!(
        d.sent_lines(),
        ["AUTH SCRAM-SHA-256 biwsbj11c2VyLHI9ck9wck5HZndFYmVSV2diTkVrcU8="]
    );
    // base64 of the RFC's server-first message.
    d.feed(b"+ cj1yT3ByTkdmd0ViZVJXZ2JORWtxTyVodllEcFdVYTJSYVRDQWZ1eEZJbGopaE5sRiRrMCxzPVcyMlphSjBTTlk3c29Fc1VFamI2Z1E9PSxpPTQwOTY=\r\n");
    assert_eq!(d.sent_lines().len(), 2);
    // base64 of the RFC's server-final message.
    d.feed(b"+ dj02cnJpVFJCaTIzV3BSUi93dHVwK21NaFVaVW4vZEI1bkxUSlJzamw5NUc0PQ==\r\n");
    assert!(d.wire.ends_with(b"\r\n\r\n"), "the empty final response");
    d.feed(b"+OK Logged in.\r\n");
    assert!(matches!(d.events.last(), Some(ClientEvent::Ok { id: i, .. }) if *i == id));
    assert_eq!(d.client.state(), ClientState::Transaction);
}

#[test]
fn scram_ok_before_the_server_proof_is_an_error() {
    use pop3_proto::client::sasl::Scram;
    let mut d = greeted(plain_link(), "+OK ready");
    let mech = Scram::sha256("user", Secret::new("pencil"), "rOprNGfwEbeRWgbNEkqO");
    d.client.auth(Box::new(mech)).unwrap();
    d.drain();
    d.feed(b"+ cj1yT3ByTkdmd0ViZVJXZ2JORWtxTyVodllEcFdVYTJSYVRDQWZ1eEZJbGopaE5sRiRrMCxzPVcyMlphSjBTTlk3c29Fc1VFamI2Z1E9PSxpPTQwOTY=\r\n");
    d.feed(b"+OK Logged in.\r\n");
    assert!(matches!(
        errors(&d)[..],
        [ProtocolError::AuthIncomplete { .. }]
    ));
    assert!(d.closed);
}

#[test]
fn scram_wrong_server_proof_cancels_the_exchange() {
    use pop3_proto::client::sasl::Scram;
    let mut d = greeted(plain_link(), "+OK ready");
    let mech = Scram::sha256("user", Secret::new("pencil"), "rOprNGfwEbeRWgbNEkqO");
    let id = d.client.auth(Box::new(mech)).unwrap();
    d.drain();
    d.feed(b"+ cj1yT3ByTkdmd0ViZVJXZ2JORWtxTyVodllEcFdVYTJSYVRDQWZ1eEZJbGopaE5sRiRrMCxzPVcyMlphSjBTTlk3c29Fc1VFamI2Z1E9PSxpPTQwOTY=\r\n");
    // v= with a wrong signature (base64 of "v=AAAA").
    d.feed(b"+ dj1BQUFB\r\n");
    assert_eq!(d.sent_lines().last().unwrap(), "*");
    assert!(d.events.contains(&ClientEvent::SaslCancelled {
        id,
        error: SaslError::BadChallenge
    }));
}

#[test]
fn scram_refuses_an_iteration_count_that_would_keep_the_client_busy() {
    use pop3_proto::client::sasl::Scram;
    use std::sync::mpsc;
    // A server-first message asking for 2^32 - 1 PBKDF2 iterations: hours
    // of hashing on whatever thread derives the key, where no timer fires.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut m = Scram::sha256("user", Secret::new("pencil"), "rOprNGfwEbeRWgbNEkqO");
        m.initial_response();
        let r = m.step(
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
              s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4294967295",
        );
        let _ = tx.send(r);
    });
    let r = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the mechanism was still hashing after 10 s");
    assert!(
        matches!(
            r.unwrap_err(),
            SaslError::TooManyIterations {
                iterations: 4_294_967_295,
                ..
            }
        ),
        "refused before any hashing"
    );
}

#[test]
fn reply_timer_restarts_after_a_slow_application_drains_a_backlog() {
    let mut config = plain_link();
    config.reply_timeout = Some(Duration::from_secs(10));
    config.max_queued_actions = 4;
    let mut d = logged_in(config, &[]);
    d.client.list(None).unwrap();
    d.drain();
    let mut listing = b"+OK\r\n".to_vec();
    for i in 1..=50 {
        listing.extend_from_slice(format!("{i} 100\r\n").as_bytes());
    }
    // Taken, but mostly left unparsed: the queue is full.
    let used = d.client.handle_input(d.now, &listing);
    assert_eq!(used, listing.len());
    // The application takes a minute to handle the entries...
    d.advance(60_000);
    d.drain();
    // ...which is no reason to give up on the server.
    d.client.handle_timeout(d.now);
    d.drain();
    assert!(errors(&d).is_empty());
    let deadline = d.client.poll_timeout().unwrap();
    assert_eq!(deadline, d.now + Duration::from_secs(10));
    d.client.handle_timeout(deadline);
    d.drain();
    assert!(matches!(errors(&d)[..], [ProtocolError::Timeout]));
}

#[test]
fn debug_output_never_shows_a_queued_password() {
    let mut d = Driver::new(plain_link());
    d.client.login("u", Secret::new("hunter2")).unwrap();
    d.client
        .auth(Box::new(Plain::new("u", Secret::new("hunter2"))))
        .unwrap_err();
    let dump = format!("{:?}", d.client);
    assert!(dump.contains("USER u"), "{dump}");
    assert!(!dump.contains("hunter2"), "{dump}");
}

#[test]
fn auto_capa_rereads_capabilities_after_greeting_tls_and_login() {
    let mut config = plain_link();
    config.auto_capa = true;
    let mut d = Driver::new(config);
    d.client.stls().unwrap();
    d.client.login("u", Secret::new("p")).unwrap();
    let stat = d.client.stat().unwrap();
    d.drain();
    d.feed(b"+OK ready\r\n");
    assert_eq!(d.sent_lines(), ["CAPA"]);
    d.feed(b"+OK\r\nSTLS\r\nPIPELINING\r\n.\r\n");
    assert_eq!(d.sent_lines(), ["CAPA", "STLS"]);
    d.feed(b"+OK go\r\n");
    assert_eq!(d.client.capabilities(), None);
    d.client.handle_tls_established(d.now);
    d.drain();
    assert_eq!(d.sent_lines()[2], "CAPA", "{:?}", d.sent_lines());
    d.feed(b"+OK\r\nPIPELINING\r\nUSER\r\n.\r\n");
    // Pipelining again: USER, PASS and STAT in one go, and the CAPA after
    // login right behind the PASS, ahead of STAT.
    assert_eq!(d.sent_lines()[3..], ["USER u", "PASS p", "CAPA", "STAT"]);
    d.feed(b"+OK\r\n+OK in\r\n+OK\r\nPIPELINING\r\nTOP\r\n.\r\n+OK 1 10\r\n");
    assert!(
        d.events
            .iter()
            .any(|e| matches!(e, ClientEvent::Stat { id, .. } if *id == stat))
    );
    // No second CAPA after the login's +OK.
    assert_eq!(d.sent_lines().len(), 7, "{:?}", d.sent_lines());
    assert_eq!(
        d.client.capabilities(),
        Some(&[Capability::Pipelining, Capability::Top][..])
    );
    let capas = d
        .events
        .iter()
        .filter(|e| matches!(e, ClientEvent::Capabilities { .. }))
        .count();
    assert_eq!(capas, 3);
}

#[test]
fn auto_capa_after_a_refused_pipelined_pass_rereads_the_capabilities_in_authorization() {
    let mut config = plain_link();
    config.auto_capa = true;
    let mut d = Driver::new(config);
    d.drain();
    d.feed(b"+OK ready\r\n");
    d.feed(b"+OK\r\nPIPELINING\r\nUSER\r\n.\r\n");
    let (_, pass) = d.client.login("u", Secret::new("p")).unwrap();
    let stat = d.client.stat().unwrap();
    d.drain();
    // Everything written before any reply is read.
    assert_eq!(d.sent_lines(), ["CAPA", "USER u", "PASS p", "CAPA", "STAT"]);
    d.take_events();
    d.feed(
        b"+OK\r\n-ERR [AUTH] no\r\n+OK\r\nPIPELINING\r\nUSER\r\nTOP\r\n.\r\n-ERR not logged in\r\n",
    );
    let events = d.take_events();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ClientEvent::Err { id, .. } if *id == pass)),
        "{events:?}"
    );
    // STAT was written already: it gets the server's own answer.
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ClientEvent::Err { id, .. } if *id == stat)),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ClientEvent::Capabilities { .. })),
        "{events:?}"
    );
    assert!(errors(&d).is_empty(), "{:?}", d.events);
    assert_eq!(d.client.state(), ClientState::Authorization);
    assert!(!d.client.capa_pending());
    assert_eq!(
        d.client.capabilities(),
        Some(&[Capability::Pipelining, Capability::User, Capability::Top][..])
    );
    // Nothing more was written, and a new USER is allowed.
    assert_eq!(d.sent_lines().len(), 5);
    d.client.user("u").unwrap();
}

// ----- line ends come from the server, not the message -----

#[test]
fn crlf_server_body_whose_first_line_ends_in_a_bare_lf_is_not_cut_by_lf_dot_crlf() {
    let mut d = logged_in(plain_link(), &[]);
    let id = d.client.retr(n(1)).unwrap();
    let next = d.client.noop().unwrap();
    d.drain();
    // A stored message with bare LFs, passed through by a CRLF server that
    // stuffs only after CRLF: "\n.\r\n" inside it is not a terminator.
    d.feed(b"+OK 40 octets\r\nSubject: x\nbody\n.\r\n+OK injected\r\n.\r\n+OK\r\n");
    assert!(errors(&d).is_empty(), "{:?}", d.events);
    assert_eq!(
        body_of(&d.events, id),
        b"Subject: x\nbody\n.\r\n+OK injected\r\n"
    );
    let ends: Vec<_> = d
        .events
        .iter()
        .filter(|e| matches!(e, ClientEvent::BodyEnd { .. }))
        .collect();
    assert_eq!(ends, [&ClientEvent::BodyEnd { id }]);
    assert!(
        d.events
            .iter()
            .any(|e| matches!(e, ClientEvent::Ok { id, .. } if *id == next))
    );
}

#[test]
fn lf_only_server_body_ends_at_lf_dot_lf() {
    let mut d = logged_in(plain_link(), &[]);
    let id = d.client.retr(n(1)).unwrap();
    d.drain();
    d.feed(b"+OK\nline one\n..dot\n.\n");
    assert!(errors(&d).is_empty(), "{:?}", d.events);
    assert!(d.events.contains(&ClientEvent::BodyEnd { id }));
    assert_eq!(body_of(&d.events, id), b"line one\n.dot\n");
}

// ----- end of stream: nothing written after it -----

#[test]
fn after_eof_nothing_is_written_and_queued_commands_end_unsent() {
    let mut config = plain_link();
    config.pipelining = false;
    let mut d = logged_in(config, &[]);
    let retr = d.client.retr(n(1)).unwrap();
    let stat = d.client.stat().unwrap();
    d.drain();
    assert_eq!(d.sent_lines(), ["RETR 1"]);
    // The body's `.` CR is completed by the end of the stream (a server
    // bug that is tolerated); the STAT behind it must not be written.
    d.feed(b"+OK\r\nhello\r\n.\r");
    d.client.handle_eof(d.now);
    d.drain();
    assert!(d.events.contains(&ClientEvent::BodyEnd { id: retr }));
    assert_eq!(d.sent_lines(), ["RETR 1"], "nothing is sent after EOF");
    assert!(errors(&d).is_empty(), "{:?}", d.events);
    assert!(d.events.contains(&ClientEvent::Cancelled {
        id: stat,
        reason: CancelReason::ConnectionClosed { sent: false }
    }));
    assert!(d.closed);
}

// ----- bounded SASL exchanges -----

/// A mechanism that answers every challenge (as XOAUTH2 would).
struct AnswersForever;

impl ClientMechanism for AnswersForever {
    fn name(&self) -> Mechanism {
        Mechanism::new("X-FOREVER").unwrap()
    }
    fn initial_response(&mut self) -> Option<Secret> {
        None
    }
    fn step(&mut self, _: &[u8]) -> Result<Secret, SaslError> {
        Ok(Secret::new("x"))
    }
}

#[test]
fn a_server_that_challenges_forever_gets_the_exchange_cancelled() {
    let mut config = plain_link();
    config.max_sasl_challenges = 3;
    let mut d = greeted(config, "+OK ready");
    let id = d.client.auth(Box::new(AnswersForever)).unwrap();
    d.drain();
    for _ in 0..4 {
        d.feed(b"+ Zm9v\r\n");
    }
    assert_eq!(
        d.sent_lines(),
        ["AUTH X-FOREVER", "eA==", "eA==", "eA==", "*"]
    );
    assert!(d.events.contains(&ClientEvent::SaslCancelled {
        id,
        error: SaslError::TooManyChallenges { limit: 3 }
    }));
}

#[test]
fn sasl_challenges_are_capped_by_default() {
    assert_eq!(ClientConfig::default().max_sasl_challenges, 8);
}

// ----- RFC 6856 -----

#[test]
fn stls_is_refused_after_utf8() {
    let mut d = greeted(plain_link(), "+OK ready");
    d.client.utf8().unwrap();
    assert_eq!(d.client.stls(), Err(ClientError::StlsAfterUtf8));
    d.drain();
    d.feed(b"+OK UTF8 enabled\r\n");
    assert_eq!(d.client.stls(), Err(ClientError::StlsAfterUtf8));
}

// ----- the automatic choice of a login -----

fn with_caps(greeting: &str, caps: Option<&str>, tls: bool) -> Driver {
    let mut config = ClientConfig::default();
    config.tls_active = tls;
    let mut d = greeted(config, greeting);
    if let Some(caps) = caps {
        d.client.capa().unwrap();
        d.drain();
        d.feed(format!("+OK\r\n{caps}.\r\n").as_bytes());
    }
    d
}

#[test]
fn login_choice_is_the_strongest_offered() {
    use pop3_proto::client::sasl::{LoginChoice, choose_login};
    let sasl = |m: &str| {
        Some(LoginChoice::Sasl(
            pop3_proto::types::Mechanism::new(m).unwrap(),
        ))
    };
    let stamp = "+OK ready <1896.697170952@dbc.mtview.ca.us>";
    let all = "USER\r\nSASL PLAIN LOGIN CRAM-MD5 SCRAM-SHA-1 SCRAM-SHA-256\r\n";
    for (greeting, caps, tls, allow, want) in [
        // SCRAM-SHA-256 over everything, with or without TLS.
        (stamp, Some(all), false, false, sasl("SCRAM-SHA-256")),
        (stamp, Some(all), true, false, sasl("SCRAM-SHA-256")),
        (
            "+OK ready",
            Some("SASL PLAIN SCRAM-SHA-1 CRAM-MD5\r\n"),
            false,
            false,
            sasl("SCRAM-SHA-1"),
        ),
        (
            "+OK ready",
            Some("SASL PLAIN cram-md5\r\n"),
            false,
            false,
            sasl("cram-md5"),
        ),
        // APOP when nothing better is offered.
        (
            stamp,
            Some("USER\r\nSASL PLAIN\r\n"),
            false,
            false,
            Some(LoginChoice::Apop),
        ),
        (
            stamp,
            Some("USER\r\nSASL PLAIN\r\n"),
            true,
            false,
            Some(LoginChoice::Apop),
        ),
        (stamp, None, false, false, Some(LoginChoice::Apop)),
        // Passwords in clear only over TLS, or when allowed.
        (
            "+OK ready",
            Some("USER\r\nSASL PLAIN LOGIN\r\n"),
            false,
            false,
            None,
        ),
        (
            "+OK ready",
            Some("USER\r\nSASL PLAIN LOGIN\r\n"),
            true,
            false,
            sasl("PLAIN"),
        ),
        (
            "+OK ready",
            Some("USER\r\nSASL LOGIN\r\n"),
            true,
            false,
            sasl("LOGIN"),
        ),
        (
            "+OK ready",
            Some("USER\r\nSASL PLAIN\r\n"),
            false,
            true,
            sasl("PLAIN"),
        ),
        (
            "+OK ready",
            Some("USER\r\n"),
            true,
            false,
            Some(LoginChoice::User),
        ),
        ("+OK ready", None, true, false, Some(LoginChoice::User)),
        ("+OK ready", None, false, true, Some(LoginChoice::User)),
        ("+OK ready", None, false, false, None),
        // A malformed timestamp is no APOP.
        ("+OK ready <nope>", None, false, false, None),
        // Mechanisms this crate does not speak are passed over.
        (
            "+OK ready",
            Some("SASL GSSAPI NTLM\r\n"),
            true,
            false,
            Some(LoginChoice::User),
        ),
    ] {
        let d = with_caps(greeting, caps, tls);
        assert_eq!(
            choose_login(&d.client, allow),
            want,
            "{greeting} {caps:?} tls={tls} allow={allow}"
        );
    }
}

#[test]
fn scram_iteration_cap_cancels_before_deriving_keys() {
    use pop3_proto::client::sasl::Scram;
    let mut d = greeted(ClientConfig::default(), "+OK ready");
    let mech = Scram::sha256("user", Secret::new("pencil"), "rOprNGfwEbeRWgbNEkqO");
    let id = d.client.auth(Box::new(mech)).unwrap();
    d.drain();
    // r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4000000000:
    // four billion iterations would take hours; the cap answers at once.
    use base64::Engine as _;
    let first = base64::engine::general_purpose::STANDARD.encode(
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4000000000",
    );
    let started = std::time::Instant::now();
    d.feed(format!("+ {first}\r\n").as_bytes());
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    assert_eq!(d.sent_lines().last().map(String::as_str), Some("*"));
    assert!(d.events.iter().any(|e| matches!(
        e,
        ClientEvent::SaslCancelled {
            id: i,
            error: SaslError::TooManyIterations { iterations: 4_000_000_000, limit: 100_000 },
        } if *i == id
    )));
    // And too few.
    let mut d = greeted(ClientConfig::default(), "+OK ready");
    d.client
        .auth(Box::new(Scram::sha1("user", Secret::new("pencil"), "abc")))
        .unwrap();
    d.drain();
    let first =
        base64::engine::general_purpose::STANDARD.encode("r=abcdef,s=QSXCR+Q6sek8bf92,i=1024");
    d.feed(format!("+ {first}\r\n").as_bytes());
    assert!(d.events.iter().any(|e| matches!(
        e,
        ClientEvent::SaslCancelled {
            error: SaslError::TooFewIterations {
                iterations: 1024,
                ..
            },
            ..
        }
    )));
}

#[test]
fn initial_response_limit_zero_forces_the_two_step_form() {
    let mut config = plain_link();
    config.initial_response_limit = 0;
    let mut d = greeted(config, "+OK ready");
    d.client
        .auth(Box::new(Plain::new("u", Secret::new("p"))))
        .unwrap();
    d.drain();
    assert_eq!(d.sent_lines(), ["AUTH PLAIN"]);
    d.feed(b"+ \r\n");
    assert_eq!(d.sent_lines()[1], "AHUAcA==");
}

#[test]
fn external_sends_an_empty_or_given_authorization_identity() {
    use pop3_proto::client::sasl::External;
    let mut d = greeted(ClientConfig::default(), "+OK ready");
    d.client.auth(Box::new(External::new())).unwrap();
    d.drain();
    assert_eq!(d.sent_lines(), ["AUTH EXTERNAL ="]);
    let mut config = ClientConfig::default();
    config.initial_response_limit = 0;
    let mut d = greeted(config, "+OK ready");
    d.client
        .auth(Box::new(External::with_authzid("alice")))
        .unwrap();
    d.drain();
    assert_eq!(d.sent_lines(), ["AUTH EXTERNAL"]);
    d.feed(b"+ \r\n");
    assert_eq!(d.sent_lines()[1], "YWxpY2U=");
}

#[test]
fn login_choice_takes_scram_plus_only_with_a_channel_binding() {
    use pop3_proto::client::sasl::{LoginChoice, choose_login};
    let sasl = |m: &str| Some(LoginChoice::Sasl(Mechanism::new(m).unwrap()));
    let caps = "SASL SCRAM-SHA-256 SCRAM-SHA-256-PLUS\r\n";
    let mut d = with_caps("+OK ready", Some(caps), true);
    assert_eq!(choose_login(&d.client, false), sasl("SCRAM-SHA-256"));
    d.client.set_tls_exporter(Some([3; 32]));
    assert_eq!(choose_login(&d.client, false), sasl("SCRAM-SHA-256-PLUS"));
}
