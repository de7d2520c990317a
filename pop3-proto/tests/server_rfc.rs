//! RFC example sessions (RFC 1939 §7 and §10, RFC 2449, RFC 2595, RFC 5034)
//! run as `C:`/`S:` traces against the server machine. Texts after `+OK` and
//! `-ERR` are this server's own; commands, states and structure are the RFCs'.

mod server_support;

use pop3_proto::response::Expire;
use pop3_proto::server::ServerConfig;
use pop3_proto::types::ApopTimestamp;
use server_support::*;

fn mrose_digest() -> String {
    ApopTimestamp::new(TIMESTAMP)
        .unwrap()
        .digest_hex(b"tanstaaf")
}

#[test]
fn rfc1939_apop_test_vector() {
    let ts = ApopTimestamp::new("<1896.697170952@dbc.mtview.ca.us>").unwrap();
    assert_eq!(
        ts.digest_hex(b"tanstaaf"),
        "c4c9334bac560ecc979e58001b3e22fb"
    );
}

#[test]
fn rfc1939_section10_example_session() {
    let mut h = Harness::standard();
    let m1 = String::from_utf8(message_of_size(120, "one")).unwrap();
    let m2 = String::from_utf8(message_of_size(200, "two")).unwrap();
    let script = format!(
        "S: +OK POP3 server ready. {TIMESTAMP}
         C: APOP mrose {digest}
         S: +OK Logged in; 2 messages (320 octets).
         C: STAT
         S: +OK 2 320
         C: LIST
         S: +OK 2 messages (320 octets)
         S: 1 120
         S: 2 200
         S: .
         C: RETR 1
         S: +OK 120 octets
         {body1}S: .
         C: DELE 1
         S: +OK Message 1 deleted.
         C: RETR 2
         S: +OK 200 octets
         {body2}S: .
         C: DELE 2
         S: +OK Message 2 deleted.
         C: QUIT
         S: +OK Logging out.",
        digest = mrose_digest(),
        body1 = m1.lines().map(|l| format!("S: {l}\n")).collect::<String>(),
        body2 = m2.lines().map(|l| format!("S: {l}\n")).collect::<String>(),
    );
    transcript(&mut h, &script);
    assert!(h.closed);
    assert_eq!(h.store.message_count("mrose"), 0);
}

#[test]
fn rfc1939_user_pass_examples() {
    let mut h = Harness::standard();
    h.take_output();
    transcript(
        &mut h,
        "C: USER frated
         S: +OK
         C: PASS secret
         S: -ERR [AUTH] Authentication failed.
         C: USER mrose
         S: +OK
         C: PASS tanstaaf
         S: +OK Logged in; 2 messages (320 octets).",
    );
}

#[test]
fn rfc1939_transaction_examples() {
    let mut h = Harness::standard();
    h.login("mrose", "tanstaaf");
    transcript(
        &mut h,
        "C: STAT
         S: +OK 2 320
         C: LIST 2
         S: +OK 2 200
         C: LIST 3
         S: -ERR No message 3.
         C: DELE 1
         S: +OK Message 1 deleted.
         C: DELE 1
         S: -ERR Message 1 is deleted.
         C: LIST
         S: +OK 1 messages (200 octets)
         S: 2 200
         S: .
         C: NOOP
         S: +OK
         C: RSET
         S: +OK Maildrop has 2 messages (320 octets).
         C: UIDL
         S: +OK Unique-ID listing follows.
         S: 1 mem0000000001
         S: 2 mem0000000002
         S: .
         C: UIDL 2
         S: +OK 2 mem0000000002
         C: UIDL 3
         S: -ERR No message 3.
         C: TOP 100 3
         S: -ERR No message 100.",
    );
}

#[test]
fn rfc1939_top_example() {
    let mut h = Harness::standard();
    h.login("alice", "secret");
    transcript(
        &mut h,
        "C: TOP 2 1
         S: +OK Top of message follows.
         S: Subject: b
         S: From: x
         S:
         S: line 1
         S: .
         C: TOP 2 0
         S: +OK Top of message follows.
         S: Subject: b
         S: From: x
         S:
         S: .
         C: TOP 2 10
         S: +OK Top of message follows.
         S: Subject: b
         S: From: x
         S:
         S: line 1
         S: ..dotted
         S: line 3
         S: .",
    );
}

#[test]
fn rfc1939_quit_in_authorization() {
    let mut h = Harness::standard();
    h.take_output();
    transcript(
        &mut h,
        "C: QUIT
         S: +OK Logging out.",
    );
    assert!(h.closed);
}

#[test]
fn rfc2449_capa_example() {
    let config = test_config()
        .login_delay(Some(900))
        .expire(Some(Expire::Days(60)))
        .implementation(Some("Shlemazle-Plotz-v302".into()));
    let mut h = Harness::new(config, plain(), standard_store());
    h.take_output();
    transcript(
        &mut h,
        "C: CAPA
         S: +OK Capability list follows
         S: TOP
         S: UIDL
         S: RESP-CODES
         S: AUTH-RESP-CODE
         S: PIPELINING
         S: USER
         S: SASL PLAIN LOGIN CRAM-MD5 SCRAM-SHA-1 SCRAM-SHA-256
         S: LOGIN-DELAY 900
         S: EXPIRE 60
         S: IMPLEMENTATION Shlemazle-Plotz-v302
         S: .",
    );
}

#[test]
fn rfc2449_pipelined_session() {
    let mut h = Harness::standard();
    h.take_output();
    transcript(
        &mut h,
        "C: USER alice
         C: PASS secret
         C: STAT
         C: LIST 1
         C: RETR 1
         C: DELE 1
         C: QUIT
         S: +OK
         S: +OK Logged in; 3 messages (90 octets).
         S: +OK 3 90
         S: +OK 1 21
         S: +OK 21 octets
         S: Subject: a
         S:
         S: first
         S: .
         S: +OK Message 1 deleted.
         S: +OK Logging out.",
    );
    assert_eq!(h.store.message_count("alice"), 2);
}

#[test]
fn rfc2449_in_use_response_code() {
    let store = standard_store();
    let mut a = Harness::new(test_config(), plain(), store.clone());
    a.login("mrose", "tanstaaf");
    let mut b = Harness::new(test_config(), plain(), store);
    b.take_output();
    transcript(
        &mut b,
        "C: USER mrose
         S: +OK
         C: PASS tanstaaf
         S: -ERR [IN-USE] Maildrop is already open in another session.",
    );
}

#[test]
fn rfc2595_stls_example() {
    let ctx = stls_capable();
    let mut h = Harness::new(ServerConfig::default(), ctx, standard_store());
    h.take_output();
    transcript(
        &mut h,
        "C: STLS
         S: +OK Begin TLS negotiation.
         C: CAPA
         S: +OK Capability list follows
         S: TOP
         S: UIDL
         S: RESP-CODES
         S: AUTH-RESP-CODE
         S: PIPELINING
         S: USER
         S: SASL PLAIN LOGIN
         S: EXPIRE NEVER
         S: .",
    );
    assert_eq!(h.tls_handshakes, 1);
}

#[test]
fn rfc5034_auth_plain_example() {
    let store = standard_store();
    store.add_user("test", "test");
    let mut h = Harness::new(test_config(), plain(), store);
    h.take_output();
    assert_eq!(h.cmd("AUTH PLAIN"), "+ \r\n");
    assert_eq!(
        h.cmd("dGVzdAB0ZXN0AHRlc3Q="),
        "+OK Logged in; 0 messages (0 octets).\r\n"
    );
}

#[test]
fn rfc5034_auth_plain_initial_response_and_cancel() {
    let mut h = Harness::standard();
    h.take_output();
    transcript(
        &mut h,
        "C: AUTH PLAIN
         S: + 
         C: *
         S: -ERR Authentication cancelled.
         C: AUTH PLAIN AGFsaWNlAHNlY3JldA==
         S: +OK Logged in; 3 messages (90 octets).
         C: AUTH PLAIN AGFsaWNlAHNlY3JldA==
         S: -ERR Command not valid in this state.",
    );
}
