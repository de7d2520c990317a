//! One test per applicable requirement of SPEC sections B (server session)
//! and D (security and limits), named after it.

mod server_support;

use core::time::Duration;

use pop3_proto::response::Expire;
use pop3_proto::server::{CloseReason, SaslMechanism, ServerConfig, State, StoreRequest};
use pop3_proto::store::{Cause, CredentialForms, IoKind, MemoryStore, StoreError};
use pop3_proto::types::ApopTimestamp;
use server_support::*;

fn b64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn capa(h: &mut Harness) -> Vec<String> {
    let r = h.cmd("CAPA");
    assert!(r.starts_with("+OK"), "{r}");
    assert!(r.ends_with("\r\n.\r\n"), "{r}");
    r.lines()
        .skip(1)
        .filter(|l| *l != ".")
        .map(String::from)
        .collect()
}

// ---------------------------------------------------------------- B.1

#[test]
fn greeting_is_ok_and_session_enters_authorization() {
    let mut h = Harness::standard();
    let g = h.take_output();
    assert!(g.starts_with("+OK "), "{g}");
    assert!(g.ends_with("\r\n") && g.len() <= 512);
    assert_eq!(h.server.state(), State::Authorization);
}

// ---------------------------------------------------------------- B.2

#[test]
fn unknown_command_gets_err() {
    let mut h = Harness::standard();
    h.take_output();
    assert_eq!(h.cmd("XYZZY plugh"), "-ERR Unknown command: XYZZY\r\n");
}

#[test]
fn malformed_commands_get_err() {
    let mut h = Harness::standard();
    h.login("alice", "secret");
    for bad in [
        "RETR", "RETR x", "RETR 0", "DELE 1 2", "TOP 1", "LIST -1", "",
    ] {
        let r = h.cmd(bad);
        assert!(r.starts_with("-ERR "), "{bad:?}: {r}");
        assert_eq!(r.matches("\r\n").count(), 1, "{bad:?}: {r}");
    }
    assert_eq!(h.server.state(), State::Transaction);
}

#[test]
fn transaction_commands_in_authorization_get_err() {
    for cmd in [
        "STAT", "LIST", "RETR 1", "DELE 1", "NOOP", "RSET", "TOP 1 1", "UIDL",
    ] {
        let mut h = Harness::standard();
        h.take_output();
        assert_eq!(
            h.cmd(cmd),
            "-ERR Command not valid in this state.\r\n",
            "{cmd}"
        );
    }
}

#[test]
fn authorization_commands_in_transaction_get_err() {
    let mut h = Harness::standard();
    h.login("alice", "secret");
    for cmd in [
        "USER alice",
        "PASS secret",
        "APOP alice 0123456789abcdef0123456789abcdef",
        "AUTH PLAIN",
        "AUTH",
        "STLS",
        "UTF8",
    ] {
        assert_eq!(
            h.cmd(cmd),
            "-ERR Command not valid in this state.\r\n",
            "{cmd}"
        );
    }
}

// ---------------------------------------------------------------- B.3

#[test]
fn second_session_on_a_locked_maildrop_gets_in_use() {
    let store = standard_store();
    let mut a = Harness::new(test_config(), plain(), store.clone());
    a.login("alice", "secret");
    assert!(store.is_locked("alice"));
    let mut b = Harness::new(test_config(), plain(), store.clone());
    b.take_output();
    b.cmd("USER alice");
    let r = b.cmd("PASS secret");
    assert!(r.starts_with("-ERR [IN-USE] "), "{r}");
    assert_eq!(b.server.state(), State::Authorization);
    a.cmd("QUIT");
    assert!(!store.is_locked("alice"));
    b.cmd("USER alice");
    assert!(b.cmd("PASS secret").starts_with("+OK"));
}

// ---------------------------------------------------------------- B.4

fn deleted_first() -> Harness {
    let mut h = Harness::standard();
    h.login("alice", "secret");
    assert_eq!(h.cmd("DELE 1"), "+OK Message 1 deleted.\r\n");
    h
}

#[test]
fn deleted_messages_are_not_counted_by_stat() {
    let mut h = deleted_first();
    assert_eq!(h.cmd("STAT"), "+OK 2 69\r\n");
}

#[test]
fn deleted_messages_are_invisible_to_list() {
    let mut h = deleted_first();
    assert_eq!(
        h.cmd("LIST"),
        "+OK 2 messages (69 octets)\r\n2 48\r\n3 21\r\n.\r\n"
    );
    assert_eq!(h.cmd("LIST 1"), "-ERR Message 1 is deleted.\r\n");
}

#[test]
fn deleted_messages_are_invisible_to_uidl() {
    let mut h = deleted_first();
    assert_eq!(
        h.cmd("UIDL"),
        "+OK Unique-ID listing follows.\r\n2 mem0000000004\r\n3 mem0000000005\r\n.\r\n"
    );
    assert_eq!(h.cmd("UIDL 1"), "-ERR Message 1 is deleted.\r\n");
}

#[test]
fn deleted_messages_are_invisible_to_retr_top_and_dele() {
    let mut h = deleted_first();
    assert_eq!(h.cmd("RETR 1"), "-ERR Message 1 is deleted.\r\n");
    assert_eq!(h.cmd("TOP 1 0"), "-ERR Message 1 is deleted.\r\n");
    assert_eq!(h.cmd("DELE 1"), "-ERR Message 1 is deleted.\r\n");
    // Not bad commands: the session goes on.
    assert_eq!(h.server.summary().bad_commands, 0);
}

#[test]
fn list_on_an_empty_maildrop_is_ok_then_terminator() {
    let mut h = Harness::standard();
    h.login("empty", "nothing");
    assert_eq!(h.cmd("LIST"), "+OK 0 messages (0 octets)\r\n.\r\n");
    assert_eq!(h.cmd("UIDL"), "+OK Unique-ID listing follows.\r\n.\r\n");
    assert_eq!(h.cmd("STAT"), "+OK 0 0\r\n");
}

#[test]
fn messages_beyond_the_maildrop_are_refused() {
    let mut h = Harness::standard();
    h.login("alice", "secret");
    assert_eq!(h.cmd("RETR 4"), "-ERR No message 4.\r\n");
    assert_eq!(h.cmd("LIST 99999999"), "-ERR No message 99999999.\r\n");
}

#[test]
fn large_listings_are_produced_in_bounded_chunks() {
    let store = MemoryStore::new();
    store.add_user("big", "pw");
    for i in 0..5000 {
        store.add_message("big", format!("Subject: {i}\r\n\r\nbody\r\n"));
    }
    let mut h = Harness::new(test_config(), plain(), store);
    h.login("big", "pw");
    h.send_line("LIST");
    h.send_line("UIDL");
    let out = h.take_output();
    assert_eq!(out.lines().count(), 2 * (5000 + 2));
    assert!(h.max_queued <= 2, "queued {}", h.max_queued);
}

// ---------------------------------------------------------------- B.5

#[test]
fn dele_only_marks_and_quit_commits() {
    let mut h = deleted_first();
    assert_eq!(h.store.message_count("alice"), 3);
    assert_eq!(h.cmd("QUIT"), "+OK Logging out.\r\n");
    assert!(h.closed);
    assert_eq!(h.store.message_count("alice"), 2);
    assert!(matches!(
        h.requests.last(),
        Some(StoreRequest::Commit(update)) if update.deleted == [0]
    ));
    assert_eq!(h.server.summary().deleted, 1);
    assert_eq!(h.server.summary().close_reason, Some(CloseReason::Quit));
}

#[test]
fn quit_in_authorization_does_not_enter_update() {
    let mut h = Harness::standard();
    h.take_output();
    h.cmd("USER alice");
    assert_eq!(h.cmd("QUIT"), "+OK Logging out.\r\n");
    assert!(h.closed);
    assert!(
        !h.requests
            .iter()
            .any(|r| matches!(r, StoreRequest::Commit { .. } | StoreRequest::Open { .. }))
    );
}

#[test]
fn end_of_stream_without_quit_removes_nothing() {
    let mut h = deleted_first();
    h.eof();
    assert!(h.closed);
    assert_eq!(h.store.message_count("alice"), 3);
    assert!(!h.store.is_locked("alice"));
    assert_eq!(h.requests.last(), Some(&StoreRequest::Release));
    assert_eq!(
        h.server.summary().close_reason,
        Some(CloseReason::PeerClosed)
    );
}

#[test]
fn quit_received_before_end_of_stream_still_commits() {
    let mut h = Harness::standard();
    h.login("alice", "secret");
    h.send(b"DELE 1\r\nQUIT\r\n");
    h.eof();
    assert!(h.closed);
    assert_eq!(h.store.message_count("alice"), 2);
}

#[test]
fn commit_failure_answers_sys_temp() {
    use pop3_proto::server::{Server, StoreReply};
    use pop3_proto::session::Action;
    use pop3_proto::store::MessageInfo;
    use pop3_proto::time::Instant;
    use pop3_proto::types::Uid;
    let now = Instant::from_millis(0);
    let mut s = Server::new(std::sync::Arc::new(test_config()), now, plain());
    while s.poll_action().is_some() {}
    s.handle_input(now, b"USER u\r\nPASS p\r\n");
    let mut saw = Vec::new();
    loop {
        match s.poll_action() {
            Some(Action::Event(StoreRequest::VerifyPassword { .. })) => {
                s.handle_store(now, StoreReply::Verified(Ok(true)))
            }
            Some(Action::Event(StoreRequest::Open { .. })) => s.handle_store(
                now,
                StoreReply::Opened(Ok(vec![MessageInfo {
                    size: 10,
                    uid: Uid::new("a").unwrap(),
                }])),
            ),
            Some(Action::Event(StoreRequest::Commit(update))) => {
                assert_eq!(update.deleted, vec![0]);
                s.handle_store(
                    now,
                    StoreReply::Committed(Err(StoreError::Temporary(Cause::Io {
                        context: "deleting messages",
                        kind: IoKind::StorageFull,
                    }))),
                )
            }
            Some(Action::Send(t)) => saw.push(String::from_utf8(t.bytes.to_vec()).unwrap()),
            Some(Action::Close) => break,
            Some(_) => {}
            None => {
                s.handle_input(now, b"DELE 1\r\nQUIT\r\n");
            }
        }
    }
    let last = saw.last().unwrap();
    assert!(last.starts_with("-ERR [SYS/TEMP] "), "{last}");
    assert!(!last.contains("disk full"));
}

// ---------------------------------------------------------------- B.6

#[test]
fn autologout_after_ten_minutes_releases_without_update() {
    let mut h = deleted_first();
    h.auto_timer = Duration::ZERO;
    h.advance(Duration::from_secs(9 * 60 + 59));
    assert!(!h.closed);
    h.cmd("NOOP");
    h.advance(Duration::from_secs(9 * 60 + 59));
    assert!(!h.closed);
    h.advance(Duration::from_secs(1));
    assert!(h.closed);
    assert_eq!(h.take_output(), "-ERR Autologout; idle for too long.\r\n");
    assert_eq!(h.store.message_count("alice"), 3);
    assert!(!h.store.is_locked("alice"));
    assert_eq!(
        h.server.summary().close_reason,
        Some(CloseReason::Autologout)
    );
}

#[test]
fn autologout_in_authorization() {
    // The login timeouts set far beyond the autologout, so that only the
    // autologout can end this session.
    let config = test_config()
        .login_timeout(Duration::from_secs(24 * 3600))
        .login_idle_timeout(Duration::from_secs(24 * 3600));
    let mut h = Harness::new(config, plain(), standard_store());
    h.auto_timer = Duration::ZERO;
    h.take_output();
    h.advance(Duration::from_secs(599));
    assert!(!h.closed, "not before the autologout");
    h.advance(Duration::from_secs(1));
    assert!(h.closed);
    assert_eq!(
        h.server.summary().close_reason,
        Some(CloseReason::Autologout)
    );
}

#[test]
fn a_client_that_never_logs_in_is_closed_at_the_login_timeout_despite_activity() {
    let config = test_config().login_timeout(Duration::from_secs(60));
    let mut h = Harness::new(config, plain(), standard_store());
    h.auto_timer = Duration::ZERO;
    h.take_output();
    // CAPA is legal before login and no bad command: activity alone must
    // not keep a connection that never logs in.
    for _ in 0..5 {
        h.advance(Duration::from_secs(11));
        let r = h.cmd("CAPA");
        assert!(r.starts_with("+OK"), "{r:?}");
    }
    assert!(!h.closed);
    h.take_output();
    h.advance(Duration::from_secs(6));
    assert!(h.closed);
    assert_eq!(h.take_output(), "-ERR Disconnected: no login in time.\r\n");
    assert_eq!(
        h.server.summary().close_reason,
        Some(CloseReason::LoginTimeout)
    );
}

#[test]
fn a_login_before_the_login_timeout_keeps_the_session() {
    let config = test_config().login_timeout(Duration::from_secs(60));
    let mut h = Harness::new(config, plain(), standard_store());
    h.advance(Duration::from_secs(50));
    h.login("alice", "secret");
    h.advance(Duration::from_secs(120));
    assert!(!h.closed);
    assert!(h.cmd("STAT").starts_with("+OK 3 "));
}

#[test]
fn autologout_is_at_least_ten_minutes() {
    let c = ServerConfig::default().autologout(Duration::from_secs(30));
    assert_eq!(c.get_autologout(), Duration::from_secs(600));
    let c = ServerConfig::default().autologout(Duration::from_secs(3600));
    assert_eq!(c.get_autologout(), Duration::from_secs(3600));
    let c = ServerConfig::default().autologout_unchecked(Duration::from_secs(30));
    assert_eq!(c.get_autologout(), Duration::from_secs(30));
}

// ---------------------------------------------------------------- B.7

#[test]
fn rset_unmarks_all_deletions() {
    let mut h = deleted_first();
    h.cmd("DELE 2");
    assert_eq!(
        h.cmd("RSET"),
        "+OK Maildrop has 3 messages (90 octets).\r\n"
    );
    assert_eq!(h.cmd("STAT"), "+OK 3 90\r\n");
    h.cmd("QUIT");
    assert_eq!(h.store.message_count("alice"), 3);
}

#[test]
fn top_sends_header_blank_line_and_n_body_lines() {
    let mut h = Harness::standard();
    h.login("alice", "secret");
    assert_eq!(
        h.cmd("TOP 2 2"),
        "+OK Top of message follows.\r\nSubject: b\r\nFrom: x\r\n\r\nline 1\r\n..dotted\r\n.\r\n"
    );
}

#[test]
fn top_with_more_lines_than_the_body_sends_the_whole_message() {
    let mut h = Harness::standard();
    h.login("alice", "secret");
    let top = h.cmd("TOP 2 99999999");
    let retr = h.cmd("RETR 2");
    assert_eq!(
        top.split_once("\r\n").unwrap().1,
        retr.split_once("\r\n").unwrap().1
    );
}

#[test]
fn top_stops_reading_the_store_after_its_lines() {
    let store = MemoryStore::new().with_chunk_size(16);
    store.add_user("u", "p");
    let mut m = String::from("Subject: long\r\n\r\n");
    for i in 0..1000 {
        m.push_str(&format!("line {i}\r\n"));
    }
    store.add_message("u", m);
    let mut h = Harness::new(test_config(), plain(), store);
    h.login("u", "p");
    h.requests.clear();
    let r = h.cmd("TOP 1 2");
    assert!(r.ends_with("line 0\r\nline 1\r\n.\r\n"), "{r}");
    let chunks = h
        .requests
        .iter()
        .filter(|r| **r == StoreRequest::NextChunk)
        .count();
    assert!(chunks <= 4, "{chunks} chunks read");
}

// ---------------------------------------------------------------- B.8

#[test]
fn uidl_ids_persist_across_sessions() {
    let store = standard_store();
    let mut a = Harness::new(test_config(), plain(), store.clone());
    a.login("alice", "secret");
    let first = a.cmd("UIDL");
    a.eof();
    let mut b = Harness::new(test_config(), plain(), store.clone());
    b.login("alice", "secret");
    assert_eq!(b.cmd("UIDL"), first);
    b.cmd("DELE 1");
    b.cmd("QUIT");
    store.add_message("alice", "Subject: new\r\n\r\nx\r\n");
    let mut c = Harness::new(test_config(), plain(), store);
    c.login("alice", "secret");
    let after = c.cmd("UIDL");
    let ids: Vec<&str> = after
        .lines()
        .skip(1)
        .filter_map(|l| l.split(' ').nth(1))
        .collect();
    assert_eq!(ids, ["mem0000000004", "mem0000000005", "mem0000000006"]);
    assert!(!after.contains("mem0000000003"), "never reused");
}

// ---------------------------------------------------------------- B.9

#[test]
fn pass_only_right_after_a_successful_user() {
    let mut h = Harness::standard();
    h.take_output();
    assert_eq!(
        h.cmd("PASS secret"),
        "-ERR PASS must follow a successful USER.\r\n"
    );
    h.cmd("USER alice");
    h.cmd("CAPA");
    assert_eq!(
        h.cmd("PASS secret"),
        "-ERR PASS must follow a successful USER.\r\n"
    );
    assert_eq!(h.server.summary().bad_commands, 2);
}

#[test]
fn spaces_in_pass_belong_to_the_password() {
    let store = standard_store();
    store.add_user("spacey", " two  words ");
    let mut h = Harness::new(test_config(), plain(), store);
    h.take_output();
    h.cmd("USER spacey");
    assert!(h.cmd("PASS  two  words ").starts_with("+OK Logged in"));
}

// ---------------------------------------------------------------- B.10

#[test]
fn apop_with_the_right_digest_logs_in() {
    let mut h = Harness::standard();
    let greeting = h.take_output();
    assert!(greeting.contains(TIMESTAMP), "{greeting}");
    let digest = ApopTimestamp::new(TIMESTAMP).unwrap().digest_hex(b"secret");
    assert!(
        h.cmd(&format!("APOP alice {digest}"))
            .starts_with("+OK Logged in")
    );
    let mut h = Harness::standard();
    h.take_output();
    let upper = digest.to_ascii_uppercase();
    assert!(
        h.cmd(&format!("APOP alice {upper}"))
            .starts_with("+OK Logged in")
    );
}

#[test]
fn apop_with_a_wrong_digest_fails_after_the_delay() {
    let mut h = Harness::standard();
    h.take_output();
    let digest = ApopTimestamp::new(TIMESTAMP).unwrap().digest_hex(b"wrong");
    assert_eq!(
        h.cmd(&format!("APOP alice {digest}")),
        "-ERR [AUTH] Authentication failed.\r\n"
    );
    // Unknown user: the same answer.
    assert_eq!(
        h.cmd(&format!("APOP nobody {digest}")),
        "-ERR [AUTH] Authentication failed.\r\n"
    );
}

#[test]
fn apop_timestamp_differs_per_connection() {
    let config = std::sync::Arc::new(test_config());
    let t = pop3_proto::time::Instant::from_millis(5);
    let a = pop3_proto::server::Server::new(
        config.clone(),
        t,
        pop3_proto::server::ConnectionContext::new(1, false, false),
    );
    let b = pop3_proto::server::Server::new(
        config.clone(),
        t,
        pop3_proto::server::ConnectionContext::new(2, false, false),
    );
    let c = pop3_proto::server::Server::new(
        config,
        t + Duration::from_millis(1),
        pop3_proto::server::ConnectionContext::new(1, false, false),
    );
    let (a, b, c) = (
        a.apop_timestamp().unwrap(),
        b.apop_timestamp().unwrap(),
        c.apop_timestamp().unwrap(),
    );
    assert_ne!(a, b);
    assert_ne!(a, c);
}

#[test]
fn no_apop_timestamp_when_the_store_has_no_shared_secrets() {
    let config = test_config().credential_forms(CredentialForms::new(true, false));
    let mut h = Harness::new(config, plain(), standard_store());
    let g = h.take_output();
    assert!(!g.contains('<'), "{g}");
    assert!(h.server.apop_timestamp().is_none());
    let r = h.cmd("APOP alice 0123456789abcdef0123456789abcdef");
    assert_eq!(r, "-ERR APOP is not available.\r\n");
}

// ---------------------------------------------------------------- B.11

#[test]
fn capa_lists_authorization_capabilities_in_both_states() {
    let mut h = Harness::standard();
    h.take_output();
    let before = capa(&mut h);
    h.login("alice", "secret");
    let after = capa(&mut h);
    for cap in &before {
        assert!(after.contains(cap), "{cap} missing after login: {after:?}");
    }
    assert!(!before.iter().any(|c| c.starts_with("APOP")));
    for cap in [
        "TOP",
        "UIDL",
        "RESP-CODES",
        "AUTH-RESP-CODE",
        "PIPELINING",
        "USER",
        "EXPIRE NEVER",
    ] {
        assert!(before.iter().any(|c| c == cap), "{cap}: {before:?}");
    }
}

// ---------------------------------------------------------------- B.12

#[test]
fn pipelined_commands_are_processed_in_turn() {
    let mut h = Harness::standard();
    h.take_output();
    h.send(b"USER alice\r\nPASS secret\r\nRETR 2\r\nNOOP\r\nTOP 1 0\r\nSTAT\r\n");
    let out = h.take_output();
    let noop_at = out.find("+OK\r\n+OK Top").expect(&out);
    let body_end = out.find("line 3\r\n.\r\n").unwrap();
    assert!(body_end < noop_at);
    assert!(out.ends_with("+OK 3 90\r\n"), "{out}");
}

// ---------------------------------------------------------------- B.13

#[test]
fn login_delay_from_the_store_gives_the_response_code() {
    let store = standard_store();
    store.fail_next_open("alice", StoreError::LoginDelay);
    let config = test_config().login_delay(Some(900));
    let mut h = Harness::new(config, plain(), store);
    h.take_output();
    assert!(capa(&mut h).contains(&"LOGIN-DELAY 900".to_string()));
    h.cmd("USER alice");
    let r = h.cmd("PASS secret");
    assert!(r.starts_with("-ERR [LOGIN-DELAY] "), "{r}");
}

#[test]
fn temporary_store_failure_at_open_is_sys_temp() {
    let store = standard_store();
    store.fail_next_open(
        "alice",
        StoreError::Temporary(Cause::Io {
            context: "nfs",
            kind: IoKind::StaleNetworkFileHandle,
        }),
    );
    let mut h = Harness::new(test_config(), plain(), store);
    h.take_output();
    h.cmd("USER alice");
    let r = h.cmd("PASS secret");
    assert!(r.starts_with("-ERR [SYS/TEMP] "), "{r}");
    assert!(!r.contains("nfs"));
}

#[test]
fn expire_zero_removes_retrieved_messages_at_quit() {
    let config = test_config().expire(Some(Expire::Days(0)));
    let mut h = Harness::new(config, plain(), standard_store());
    h.login("alice", "secret");
    assert!(capa(&mut h).contains(&"EXPIRE 0".to_string()));
    h.cmd("RETR 2");
    h.cmd("TOP 3 0");
    h.cmd("RSET");
    h.cmd("QUIT");
    let left = h.store.messages("alice");
    assert_eq!(left.len(), 2);
    assert!(left.iter().all(|m| !m.starts_with(b"Subject: b")));
}

#[test]
fn expire_never_keeps_retrieved_messages() {
    let mut h = Harness::standard();
    h.login("alice", "secret");
    h.cmd("RETR 1");
    h.cmd("QUIT");
    assert_eq!(h.store.message_count("alice"), 3);
}

// ---------------------------------------------------------------- B.14

#[test]
fn utf8_only_in_authorization() {
    let config = test_config().utf8(true);
    let mut h = Harness::new(config, plain(), standard_store());
    h.take_output();
    assert!(capa(&mut h).contains(&"UTF8 USER".to_string()));
    assert_eq!(h.cmd("UTF8"), "+OK UTF8 enabled.\r\n");
    h.login("alice", "secret");
    assert_eq!(h.cmd("UTF8"), "-ERR Command not valid in this state.\r\n");
}

#[test]
fn utf8_is_refused_when_not_configured() {
    let mut h = Harness::standard();
    h.take_output();
    assert!(h.cmd("UTF8").starts_with("-ERR"));
}

#[test]
fn stls_after_utf8_is_refused() {
    let mut h = Harness::new(test_config().utf8(true), stls_capable(), standard_store());
    h.take_output();
    h.cmd("UTF8");
    assert!(h.cmd("STLS").starts_with("-ERR"));
    assert_eq!(h.tls_handshakes, 0);
}

#[test]
fn lang_lists_and_selects() {
    let config = test_config().lang(true);
    let mut h = Harness::new(config, plain(), standard_store());
    h.take_output();
    assert!(capa(&mut h).contains(&"LANG".to_string()));
    assert_eq!(
        h.cmd("LANG"),
        "+OK Language listing follows:\r\nen English\r\n.\r\n"
    );
    assert_eq!(h.cmd("LANG *"), "+OK en Language set to English.\r\n");
    assert_eq!(h.cmd("LANG en-GB"), "+OK en Language set to English.\r\n");
    assert_eq!(h.cmd("LANG MUL"), "-ERR Language not supported.\r\n");
    h.login("alice", "secret");
    assert_eq!(h.cmd("LANG EN"), "+OK en Language set to English.\r\n");
}

// ---------------------------------------------------------------- B.15

#[test]
fn bare_auth_lists_mechanisms() {
    let mut h = Harness::standard();
    h.take_output();
    assert_eq!(
        h.cmd("AUTH"),
        "+OK Supported mechanisms follow.\r\nPLAIN\r\nLOGIN\r\nCRAM-MD5\r\nSCRAM-SHA-1\r\nSCRAM-SHA-256\r\n.\r\n"
    );
}

// ---------------------------------------------------------------- D.1

#[test]
fn stls_discards_pipelined_plaintext() {
    let ctx = stls_capable();
    let mut h = Harness::new(test_config(), ctx, standard_store());
    h.take_output();
    h.send(b"STLS\r\nUSER alice\r\nPASS secret\r\n");
    assert_eq!(h.take_output(), "+OK Begin TLS negotiation.\r\n");
    assert_eq!(h.tls_handshakes, 1);
    assert_eq!(h.server.state(), State::Authorization);
    assert!(h.requests.is_empty(), "{:?}", h.requests);
    // After the handshake the session starts clean: no USER remembered.
    assert_eq!(
        h.cmd("PASS secret"),
        "-ERR PASS must follow a successful USER.\r\n"
    );
}

#[test]
fn stls_discards_plaintext_sent_before_the_handshake_ends() {
    let mut h = Harness::new(test_config(), stls_capable(), standard_store());
    h.auto_tls = false;
    h.take_output();
    h.send(b"STLS\r\n");
    assert!(!h.server.wants_input());
    assert_eq!(h.server.handle_input(h.now, b"USER evil\r\n"), 0);
    h.server.handle_tls_established(h.now);
    h.drain();
    assert!(h.server.is_tls_active());
    assert_eq!(h.take_output(), "+OK Begin TLS negotiation.\r\n");
    assert!(h.requests.is_empty());
}

#[test]
fn stls_twice_gets_err() {
    let mut h = Harness::new(test_config(), stls_capable(), standard_store());
    h.take_output();
    h.cmd("STLS");
    assert_eq!(h.cmd("STLS"), "-ERR TLS is already active.\r\n");
    assert_eq!(h.tls_handshakes, 1);
}

#[test]
fn stls_with_implicit_tls_gets_err() {
    let mut h = Harness::new(test_config(), implicit_tls(), standard_store());
    h.take_output();
    assert!(!capa(&mut h).contains(&"STLS".to_string()));
    assert_eq!(h.cmd("STLS"), "-ERR TLS is already active.\r\n");
}

#[test]
fn stls_after_login_gets_err() {
    let mut h = Harness::new(test_config(), stls_capable(), standard_store());
    h.login("alice", "secret");
    assert_eq!(h.cmd("STLS"), "-ERR Command not valid in this state.\r\n");
    assert_eq!(h.tls_handshakes, 0);
}

#[test]
fn stls_not_offered_without_a_tls_configuration() {
    let mut h = Harness::standard();
    h.take_output();
    assert!(!capa(&mut h).contains(&"STLS".to_string()));
    assert_eq!(h.cmd("STLS"), "-ERR STLS is not available.\r\n");
}

// ---------------------------------------------------------------- D.2

#[test]
fn plaintext_login_refused_before_tls_by_default() {
    let mut h = Harness::new(
        ServerConfig::for_store(&MemoryStore::new()),
        stls_capable(),
        standard_store(),
    );
    h.take_output();
    let caps = capa(&mut h);
    assert!(!caps.contains(&"USER".to_string()), "{caps:?}");
    assert!(
        caps.contains(&"SASL CRAM-MD5 SCRAM-SHA-1 SCRAM-SHA-256".to_string()),
        "{caps:?}"
    );
    assert!(caps.contains(&"STLS".to_string()));
    let refusal = "-ERR [AUTH] Plaintext authentication is not allowed without TLS.\r\n";
    assert_eq!(h.cmd("USER alice"), refusal);
    assert_eq!(h.cmd("PASS secret"), refusal);
    assert_eq!(
        h.cmd(&format!("AUTH PLAIN {}", b64(b"\0alice\0secret"))),
        refusal
    );
    assert_eq!(h.cmd("AUTH LOGIN"), refusal);
    assert!(h.requests.is_empty(), "no password reached the store");
    assert!(!h.closed);
    // After STLS: USER is advertised and works.
    h.cmd("STLS");
    let caps = capa(&mut h);
    assert!(caps.contains(&"USER".to_string()));
    assert!(caps.contains(&"SASL PLAIN LOGIN CRAM-MD5 SCRAM-SHA-1 SCRAM-SHA-256".to_string()));
    assert!(!caps.contains(&"STLS".to_string()));
    h.login("alice", "secret");
}

#[test]
fn implicit_tls_allows_plaintext_login() {
    let config = ServerConfig::for_store(&MemoryStore::new());
    let mut h = Harness::new(config, implicit_tls(), standard_store());
    h.login("alice", "secret");
}

// ---------------------------------------------------------------- D.4 / D.5

#[test]
fn auth_plain_with_initial_response() {
    let mut h = Harness::standard();
    h.take_output();
    let r = h.cmd(&format!("AUTH PLAIN {}", b64(b"alice\0alice\0secret")));
    assert!(r.starts_with("+OK Logged in"), "{r}");
}

#[test]
fn auth_plain_wrong_password_fails() {
    let mut h = Harness::standard();
    h.take_output();
    let r = h.cmd(&format!("AUTH PLAIN {}", b64(b"\0alice\0wrong")));
    assert_eq!(r, "-ERR [AUTH] Authentication failed.\r\n");
    let r = h.cmd(&format!("AUTH PLAIN {}", b64(b"bob\0alice\0secret")));
    assert_eq!(
        r, "-ERR [AUTH] Authentication failed.\r\n",
        "no proxy authorization"
    );
}

#[test]
fn auth_login_two_steps() {
    let mut h = Harness::standard();
    h.take_output();
    assert_eq!(h.cmd("AUTH LOGIN"), format!("+ {}\r\n", b64(b"Username:")));
    assert_eq!(
        h.cmd(&b64(b"alice")),
        format!("+ {}\r\n", b64(b"Password:"))
    );
    assert!(h.cmd(&b64(b"secret")).starts_with("+OK Logged in"));
}

#[test]
fn auth_cram_md5() {
    use hmac::{Hmac, Mac};
    let mut h = Harness::standard();
    h.take_output();
    let r = h.cmd("AUTH CRAM-MD5");
    let challenge = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(r.trim_end().strip_prefix("+ ").unwrap())
            .unwrap()
    };
    assert!(challenge.starts_with(b"<") && challenge.ends_with(b">"));
    assert_ne!(challenge, TIMESTAMP.as_bytes(), "a fresh challenge");
    let mut mac = <Hmac<md5::Md5> as Mac>::new_from_slice(b"secret").unwrap();
    mac.update(&challenge);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let r = h.cmd(&b64(format!("alice {hex}").as_bytes()));
    assert!(r.starts_with("+OK Logged in"), "{r}");
}

#[test]
fn auth_cancel_before_the_store_is_asked_gets_err_at_once_uncounted() {
    let mut h = Harness::standard();
    h.take_output();
    h.auto_timer = Duration::ZERO;
    assert_eq!(h.cmd("AUTH LOGIN"), "+ VXNlcm5hbWU6\r\n");
    assert_eq!(h.cmd(&b64(b"alice")), "+ UGFzc3dvcmQ6\r\n");
    assert_eq!(h.cmd("*"), "-ERR Authentication cancelled.\r\n");
    // Nothing was checked: no delay, no bad command, one attempt.
    assert_eq!(h.server.summary().bad_commands, 0);
    assert_eq!(h.server.summary().login_attempts, 1);
    assert!(h.requests.is_empty());
    assert_eq!(h.server.state(), State::Authorization);
    h.login("alice", "secret");
}

#[test]
fn auth_with_bad_base64_gets_err() {
    let mut h = Harness::standard();
    h.take_output();
    h.cmd("AUTH PLAIN");
    assert!(h.cmd("not base64!").starts_with("-ERR"));
    assert!(h.cmd("AUTH PLAIN =x=").starts_with("-ERR"));
}

#[test]
fn auth_with_an_unknown_mechanism_gets_err() {
    let mut h = Harness::standard();
    h.take_output();
    assert_eq!(
        h.cmd("AUTH GSSAPI"),
        "-ERR Unsupported authentication mechanism.\r\n"
    );
    let config = test_config().sasl_mechanisms(vec![SaslMechanism::Plain]);
    let mut h = Harness::new(config, plain(), standard_store());
    h.take_output();
    assert_eq!(
        h.cmd("AUTH LOGIN"),
        "-ERR Unsupported authentication mechanism.\r\n"
    );
}

#[test]
fn sasl_stays_advertised_after_auth() {
    let mut h = Harness::standard();
    h.take_output();
    h.cmd(&format!("AUTH PLAIN {}", b64(b"\0alice\0secret")));
    assert!(capa(&mut h).iter().any(|c| c.starts_with("SASL ")));
}

fn unb64(line: &str) -> Vec<u8> {
    use base64::Engine as _;
    let data = line
        .trim_end()
        .strip_prefix("+ ")
        .unwrap_or_else(|| panic!("{line}"));
    base64::engine::general_purpose::STANDARD
        .decode(data)
        .unwrap()
}

#[test]
fn rfc4616_plain_examples() {
    let store = standard_store();
    store.add_user("tim", "tanstaaftanstaaf");
    store.add_user("Kurt", "xipj3plmq");
    let mut h = Harness::new(test_config(), plain(), store.clone());
    h.take_output();
    // RFC 4616 §4: "\0tim\0tanstaaftanstaaf" logs tim in.
    let r = h.cmd(&format!("AUTH PLAIN {}", b64(b"\0tim\0tanstaaftanstaaf")));
    assert!(r.starts_with("+OK Logged in"), "{r}");
    // "Ursel\0Kurt\0xipj3plmq": Kurt acting as Ursel, which this server
    // does not allow.
    let mut h = Harness::new(test_config(), plain(), store);
    h.take_output();
    let r = h.cmd(&format!("AUTH PLAIN {}", b64(b"Ursel\0Kurt\0xipj3plmq")));
    assert_eq!(r, "-ERR [AUTH] Authentication failed.\r\n");
}

#[test]
fn auth_equals_sign_is_an_empty_initial_response() {
    let mut h = Harness::standard();
    h.take_output();
    // Without an initial response PLAIN asks with an empty challenge ...
    assert_eq!(h.cmd("AUTH PLAIN"), "+ \r\n");
    assert_eq!(h.cmd("*"), "-ERR Authentication cancelled.\r\n");
    // ... with `=` it has an empty one, which cannot be a PLAIN message.
    assert_eq!(
        h.cmd("AUTH PLAIN ="),
        "-ERR [AUTH] Authentication failed.\r\n"
    );
}

#[test]
fn auth_strict_base64_refuses_bad_characters_and_misplaced_padding() {
    for bad in ["AGFsaWNl!", "AGFsa=WNl", "AGFsaWN", "A===", "AGFs aWNl"] {
        let mut h = Harness::standard();
        h.take_output();
        h.cmd("AUTH PLAIN");
        let r = h.cmd(bad);
        assert!(r.starts_with("-ERR"), "{bad}: {r}");
        assert!(
            !r.contains("[AUTH]"),
            "{bad}: a protocol error, not a failed login"
        );
        assert_eq!(h.server.state(), State::Authorization);
        assert!(h.requests.is_empty(), "{bad}");
    }
}

#[test]
fn second_auth_after_success_is_refused() {
    let mut h = Harness::standard();
    h.take_output();
    let r = h.cmd(&format!("AUTH PLAIN {}", b64(b"\0alice\0secret")));
    assert!(r.starts_with("+OK Logged in"), "{r}");
    let r = h.cmd(&format!("AUTH PLAIN {}", b64(b"\0alice\0secret")));
    assert!(r.starts_with("-ERR"), "{r}");
    assert_eq!(h.server.state(), State::Transaction);
}

/// Runs SCRAM against the harness with the client mechanism; returns the
/// server's answer to the empty line that acknowledges its final message.
fn scram_login(h: &mut Harness, mech: &str, password: &str, initial: bool) -> String {
    use pop3_proto::client::sasl::{ClientMechanism, Scram};
    use pop3_proto::types::Secret;
    let mut m = match mech {
        "SCRAM-SHA-1" => Scram::sha1(
            "alice",
            Secret::new(password.to_owned()),
            "Zm9vYmFyYmF6cXV4",
        ),
        _ => Scram::sha256(
            "alice",
            Secret::new(password.to_owned()),
            "Zm9vYmFyYmF6cXV4",
        ),
    };
    let first = m.initial_response().unwrap();
    let r = if initial {
        h.cmd(&format!("AUTH {mech} {}", b64(first.expose())))
    } else {
        assert_eq!(h.cmd(&format!("AUTH {mech}")), "+ \r\n");
        h.cmd(&b64(first.expose()))
    };
    let server_first = unb64(&r);
    let text = String::from_utf8(server_first.clone()).unwrap();
    assert!(text.starts_with("r=Zm9vYmFyYmF6cXV4"), "{text}");
    assert!(text.ends_with(",i=4096"), "{text}");
    let last = m.step(&server_first).unwrap();
    let r = h.cmd(&b64(last.expose()));
    if !r.starts_with("+ ") {
        return r;
    }
    // The server's final message is a challenge (RFC 5034: +OK has no data).
    let v = unb64(&r);
    assert!(v.starts_with(b"v="), "{r}");
    assert!(m.step(&v).unwrap().is_empty());
    assert!(m.is_complete());
    h.cmd("")
}

#[test]
fn auth_scram_server_final_is_a_challenge_answered_by_an_empty_line() {
    for mech in ["SCRAM-SHA-1", "SCRAM-SHA-256"] {
        for initial in [true, false] {
            let mut h = Harness::standard();
            h.take_output();
            let r = scram_login(&mut h, mech, "secret", initial);
            assert!(r.starts_with("+OK Logged in"), "{mech}: {r}");
            assert_eq!(h.server.state(), State::Transaction);
            assert!(
                h.requests
                    .iter()
                    .any(|q| matches!(q, StoreRequest::ScramKeys { .. }))
            );
            // SASL stays advertised after AUTH.
            assert!(
                capa(&mut h)
                    .iter()
                    .any(|c| c.starts_with("SASL ") && c.contains(mech))
            );
        }
    }
}

#[test]
fn auth_scram_wrong_password_fails_at_the_proof() {
    let mut h = Harness::standard();
    h.take_output();
    let r = scram_login(&mut h, "SCRAM-SHA-256", "wrong", true);
    assert_eq!(r, "-ERR [AUTH] Authentication failed.\r\n");
    assert_eq!(h.server.state(), State::Authorization);
}

#[test]
fn auth_scram_cancel_after_server_first_is_a_failed_login() {
    let mut h = Harness::standard();
    h.take_output();
    let r = h.cmd(&format!(
        "AUTH SCRAM-SHA-256 {}",
        b64(b"n,,n=alice,r=abcdefgh")
    ));
    assert!(r.starts_with("+ "), "{r}");
    // The keys were fetched: a cancel now is a failed login, delayed and
    // counted.
    h.auto_timer = Duration::ZERO;
    assert_eq!(h.cmd("*"), "");
    h.advance(Duration::from_secs(1));
    assert_eq!(h.take_output(), "-ERR [AUTH] Authentication failed.\r\n");
    assert_eq!(h.server.summary().bad_commands, 1);
    assert_eq!(h.server.state(), State::Authorization);
}

#[test]
fn scram_offered_only_when_the_store_serves_it_and_without_tls() {
    // A store without SCRAM keys: not in CAPA, not in the bare AUTH list,
    // refused by AUTH.
    let config = ServerConfig::default().credential_forms(CredentialForms::new(true, true));
    let mut h = Harness::new(config, stls_capable(), standard_store());
    h.take_output();
    let caps = capa(&mut h);
    assert!(caps.contains(&"SASL CRAM-MD5".to_string()), "{caps:?}");
    assert!(!h.cmd("AUTH").contains("SCRAM"));
    assert_eq!(
        h.cmd("AUTH SCRAM-SHA-256"),
        "-ERR Unsupported authentication mechanism.\r\n"
    );
    // SHA-256 keys only.
    let forms = CredentialForms::new(false, false).with_scram(false, true);
    let config = ServerConfig::default().credential_forms(forms);
    let mut h = Harness::new(config, stls_capable(), standard_store());
    h.take_output();
    let caps = capa(&mut h);
    // SCRAM reveals no password: offered before TLS.
    assert!(caps.contains(&"SASL SCRAM-SHA-256".to_string()), "{caps:?}");
    assert!(!caps.contains(&"USER".to_string()), "{caps:?}");
    assert_eq!(
        h.cmd("AUTH"),
        "+OK Supported mechanisms follow.\r\nSCRAM-SHA-256\r\n.\r\n"
    );
    let r = scram_login(&mut h, "SCRAM-SHA-256", "secret", true);
    assert!(r.starts_with("+OK Logged in"), "{r}");
}

fn oauth_harness(ctx: pop3_proto::server::ConnectionContext, allow_plaintext: bool) -> Harness {
    use pop3_proto::store::TokenValidator;
    let store = standard_store();
    store.add_user("user@example.com", "unused");
    // RFC 7628 §4.1's token for its user.
    let store = store.with_token_validator(TokenValidator::new(|user, token| {
        user == "user@example.com"
            && token.expose() == b"vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg=="
    }));
    let config = ServerConfig::for_store(&store).allow_plaintext_auth(allow_plaintext);
    let mut h = Harness::new(config, ctx, store);
    h.take_output();
    h
}

const RFC7628_MESSAGE: &[u8] = b"n,a=user@example.com,\x01host=server.example.com\x01port=143\x01\
auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01";

#[test]
fn oauthbearer_rfc7628_example_logs_in() {
    let mut h = oauth_harness(implicit_tls(), false);
    assert!(
        capa(&mut h)
            .iter()
            .any(|c| c.starts_with("SASL ") && c.contains("OAUTHBEARER"))
    );
    let r = h.cmd(&format!("AUTH OAUTHBEARER {}", b64(RFC7628_MESSAGE)));
    assert!(r.starts_with("+OK Logged in"), "{r}");
    assert!(h.requests.iter().any(|q| matches!(
        q,
        StoreRequest::VerifyToken { user, token }
            if user.as_str() == "user@example.com"
                && token.expose() == b"vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg=="
    )));
}

#[test]
fn oauthbearer_two_step_and_an_initial_response_longer_than_255_octets() {
    use pop3_proto::line::Limits;
    // The two-step form: an empty challenge asks for the message.
    let mut h = oauth_harness(implicit_tls(), false);
    assert_eq!(h.cmd("AUTH OAUTHBEARER"), "+ \r\n");
    assert!(h.cmd(&b64(RFC7628_MESSAGE)).starts_with("+OK Logged in"));
    // A long token on the AUTH line, under the strict 255-octet command
    // limit: AUTH lines may be as long as SASL lines.
    let store = standard_store().with_token_validator(pop3_proto::store::TokenValidator::new(
        |user, token| user == "alice" && token.len() == 2000,
    ));
    let config = ServerConfig::for_store(&store)
        .allow_plaintext_auth(true)
        .limits(Limits::strict());
    let mut h = Harness::new(config, plain(), store);
    h.take_output();
    let message = format!("n,a=alice,\x01auth=Bearer {}\x01\x01", "t".repeat(2000));
    let line = format!("AUTH OAUTHBEARER {}", b64(message.as_bytes()));
    assert!(line.len() > 255);
    assert!(h.cmd(&line).starts_with("+OK Logged in"));
    // Other commands keep the strict limit.
    let mut h = Harness::new(
        test_config().limits(Limits::strict()),
        plain(),
        standard_store(),
    );
    h.take_output();
    assert_eq!(
        h.cmd(&format!("USER {}", "u".repeat(300))),
        "-ERR Command line too long.\r\n"
    );
}

#[test]
fn oauthbearer_error_flow_json_challenge_then_aq_then_err() {
    let mut h = oauth_harness(implicit_tls(), false);
    let bad = b"n,a=user@example.com,\x01auth=Bearer expired\x01\x01";
    let r = h.cmd(&format!("AUTH OAUTHBEARER {}", b64(bad)));
    assert_eq!(unb64(&r), br#"{"status":"invalid_token"}"#);
    // The client's %x01 (RFC 7628 §3.2.3), then -ERR.
    assert_eq!(h.cmd("AQ=="), "-ERR [AUTH] Authentication failed.\r\n");
    assert_eq!(h.server.state(), State::Authorization);
}

#[test]
fn xoauth2_logs_in_and_its_error_flow_ends_with_err() {
    let mut h = oauth_harness(implicit_tls(), false);
    let good =
        b"user=user@example.com\x01auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01";
    let bad = b"user=user@example.com\x01auth=Bearer nope\x01\x01";
    let r = h.cmd(&format!("AUTH XOAUTH2 {}", b64(bad)));
    assert_eq!(unb64(&r), br#"{"status":"401","schemes":"bearer"}"#);
    assert_eq!(h.cmd(""), "-ERR [AUTH] Authentication failed.\r\n");
    // The two-step form (Office 365's).
    assert_eq!(h.cmd("AUTH XOAUTH2"), "+ \r\n");
    assert!(h.cmd(&b64(good)).starts_with("+OK Logged in"));
}

#[test]
fn oauth_malformed_messages_fail() {
    for bad in [
        &b"n,a=user@example.com,\x01auth=Basic dXNlcjpwYXNz\x01\x01"[..],
        b"n,a=user@example.com,\x01auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==",
        b"p=tls-unique,a=user@example.com,\x01auth=Bearer x\x01\x01",
    ] {
        let mut h = oauth_harness(implicit_tls(), false);
        let r = h.cmd(&format!("AUTH OAUTHBEARER {}", b64(bad)));
        assert_eq!(r, "-ERR [AUTH] Authentication failed.\r\n", "{bad:?}");
        assert!(h.requests.is_empty(), "{bad:?}");
    }
}

#[test]
fn oauth_offered_only_with_a_token_validator_and_tls() {
    // No validator: not offered even over TLS.
    let mut h = Harness::new(
        ServerConfig::for_store(&MemoryStore::new()),
        implicit_tls(),
        standard_store(),
    );
    h.take_output();
    assert!(!capa(&mut h).iter().any(|c| c.contains("OAUTH")));
    assert_eq!(
        h.cmd("AUTH XOAUTH2"),
        "-ERR Unsupported authentication mechanism.\r\n"
    );
    // A validator, no TLS: a token is as good as a password.
    let mut h = oauth_harness(stls_capable(), false);
    assert!(!capa(&mut h).iter().any(|c| c.contains("OAUTH")));
    assert_eq!(
        h.cmd(&format!("AUTH OAUTHBEARER {}", b64(RFC7628_MESSAGE))),
        "-ERR [AUTH] Plaintext authentication is not allowed without TLS.\r\n"
    );
    assert!(h.requests.is_empty());
    h.cmd("STLS");
    let caps = capa(&mut h);
    assert!(
        caps.iter().any(|c| c.ends_with("OAUTHBEARER XOAUTH2")),
        "{caps:?}"
    );
}

fn external_config() -> ServerConfig {
    use pop3_proto::server::ExternalIdentity;
    test_config().external_identity(Some(ExternalIdentity::new(|der| {
        (der == b"alice's certificate").then(|| "alice".to_string())
    })))
}

#[test]
fn external_with_a_verified_client_certificate() {
    use pop3_proto::server::TlsInfo;
    let cert = TlsInfo::default().with_client_certificate(&b"alice's certificate"[..]);
    // An empty authorization identity, then the certificate's own.
    for initial in ["=", "YWxpY2U="] {
        let mut h = Harness::new(
            external_config(),
            implicit_tls().tls_info(cert.clone()),
            standard_store(),
        );
        h.take_output();
        assert!(
            capa(&mut h)
                .iter()
                .any(|c| c.starts_with("SASL ") && c.ends_with(" EXTERNAL"))
        );
        let r = h.cmd(&format!("AUTH EXTERNAL {initial}"));
        assert!(r.starts_with("+OK Logged in"), "{initial}: {r}");
        assert_eq!(h.server.user().map(|u| u.as_str()), Some("alice"));
    }
    // The two-step form.
    let mut h = Harness::new(
        external_config(),
        implicit_tls().tls_info(cert.clone()),
        standard_store(),
    );
    h.take_output();
    assert_eq!(h.cmd("AUTH EXTERNAL"), "+ \r\n");
    assert!(h.cmd("").starts_with("+OK Logged in"));
    // Acting as someone else: refused.
    let mut h = Harness::new(
        external_config(),
        implicit_tls().tls_info(cert.clone()),
        standard_store(),
    );
    h.take_output();
    assert_eq!(
        h.cmd(&format!("AUTH EXTERNAL {}", b64(b"mrose"))),
        "-ERR [AUTH] Authentication failed.\r\n"
    );
    // After STLS, with the certificate the handshake verified.
    let mut h = Harness::new(external_config(), stls_capable(), standard_store());
    h.take_output();
    assert!(!h.cmd("AUTH").contains("EXTERNAL"));
    h.auto_tls = false;
    h.cmd("STLS");
    h.server.handle_tls_info(cert);
    h.server.handle_tls_established(h.now);
    assert!(h.cmd("AUTH").contains("\r\nEXTERNAL\r\n"));
    assert!(h.cmd("AUTH EXTERNAL =").starts_with("+OK Logged in"));
}

#[test]
fn external_not_offered_without_a_mapped_certificate() {
    use pop3_proto::server::TlsInfo;
    for (config, ctx) in [
        // TLS, no client certificate.
        (external_config(), implicit_tls()),
        // A certificate nobody maps.
        (
            external_config(),
            implicit_tls().tls_info(TlsInfo::default().with_client_certificate(&b"mallory"[..])),
        ),
        // A certificate, but no mapping configured.
        (
            test_config(),
            implicit_tls()
                .tls_info(TlsInfo::default().with_client_certificate(&b"alice's certificate"[..])),
        ),
    ] {
        let mut h = Harness::new(config, ctx, standard_store());
        h.take_output();
        assert!(!capa(&mut h).iter().any(|c| c.contains("EXTERNAL")));
        assert_eq!(
            h.cmd("AUTH EXTERNAL ="),
            "-ERR Unsupported authentication mechanism.\r\n"
        );
    }
}

/// Runs SCRAM-SHA-256 with the client mechanism `m`; the server's answer
/// to the proof (or to the empty line after its final message).
fn scram_run(h: &mut Harness, mut m: pop3_proto::client::sasl::Scram) -> String {
    use pop3_proto::client::sasl::ClientMechanism;
    let name = m.name();
    let first = m.initial_response().unwrap();
    let r = h.cmd(&format!("AUTH {name} {}", b64(first.expose())));
    if !r.starts_with("+ ") {
        return r;
    }
    let last = m.step(&unb64(&r)).unwrap();
    let r = h.cmd(&b64(last.expose()));
    if !r.starts_with("+ ") {
        return r;
    }
    assert!(m.step(&unb64(&r)).unwrap().is_empty());
    h.cmd("")
}

#[test]
fn scram_sha256_plus_binds_to_the_tls_exporter() {
    use pop3_proto::client::sasl::Scram;
    use pop3_proto::server::TlsInfo;
    use pop3_proto::types::Secret;
    let scram = || Scram::sha256("alice", Secret::new("secret"), "Zm9vYmFyYmF6cXV4");
    let bound = || implicit_tls().tls_info(TlsInfo::default().with_tls_exporter([9; 32]));
    let advertising = || test_config().advertise_channel_binding(true);
    let harness = |config, ctx| {
        let mut h = Harness::new(config, ctx, standard_store());
        h.take_output();
        h
    };
    // Advertised when configured, with an exporter value, and the same
    // value logs in.
    let mut h = harness(advertising(), bound());
    assert!(
        capa(&mut h)
            .iter()
            .any(|c| c.contains(" SCRAM-SHA-256-PLUS"))
    );
    let r = scram_run(&mut h, scram().with_tls_exporter([9; 32]));
    assert!(r.starts_with("+OK Logged in"), "{r}");
    // Another value (the client is on another channel): refused.
    let mut h = harness(advertising(), bound());
    let r = scram_run(&mut h, scram().with_tls_exporter([8; 32]));
    assert_eq!(r, "-ERR [AUTH] Authentication failed.\r\n");
    // Plain SCRAM-SHA-256 still works beside it with `n`; with `y` the
    // server sees a downgrade and refuses (RFC 5802 §6).
    let mut h = harness(advertising(), bound());
    assert!(scram_run(&mut h, scram()).starts_with("+OK Logged in"));
    let mut h = harness(advertising(), bound());
    let r = scram_run(&mut h, scram().could_bind());
    assert_eq!(r, "-ERR [AUTH] Authentication failed.\r\n");
    // Without an exporter value (TLS 1.2, or no TLS): not offered, not
    // accepted; `y` is then fine.
    let mut h = harness(advertising(), implicit_tls());
    assert!(!capa(&mut h).iter().any(|c| c.contains("PLUS")));
    assert_eq!(
        h.cmd(&format!(
            "AUTH SCRAM-SHA-256-PLUS {}",
            b64(b"p=tls-exporter,,n=alice,r=abc")
        )),
        "-ERR Unsupported authentication mechanism.\r\n"
    );
    let mut h = harness(advertising(), implicit_tls());
    assert!(scram_run(&mut h, scram().could_bind()).starts_with("+OK Logged in"));
}

/// By default -PLUS is not advertised (clients that take the strongest
/// mechanism offered but cannot bind, like GNU SASL, would fail), yet a
/// client that asks for it by name binds, and a client that could bind
/// says `y` and is accepted (RFC 5802 §6: no -PLUS advertised, no
/// downgrade).
#[test]
fn scram_sha256_plus_is_accepted_but_not_advertised_by_default() {
    use pop3_proto::client::sasl::Scram;
    use pop3_proto::server::TlsInfo;
    use pop3_proto::types::Secret;
    let scram = || Scram::sha256("alice", Secret::new("secret"), "Zm9vYmFyYmF6cXV4");
    let harness = || {
        let ctx = implicit_tls().tls_info(TlsInfo::default().with_tls_exporter([9; 32]));
        let mut h = Harness::new(test_config(), ctx, standard_store());
        h.take_output();
        h
    };
    let mut h = harness();
    let caps = capa(&mut h);
    let sasl = caps.iter().find(|c| c.starts_with("SASL ")).expect("SASL");
    assert!(sasl.contains(" SCRAM-SHA-256"), "{caps:?}");
    assert!(!sasl.contains("PLUS"), "{caps:?}");
    let list = h.cmd("AUTH");
    assert!(list.contains("SCRAM-SHA-256\r\n"), "{list}");
    assert!(!list.contains("PLUS"), "{list}");
    let mut h = harness();
    let r = scram_run(&mut h, scram().with_tls_exporter([9; 32]));
    assert!(r.starts_with("+OK Logged in"), "{r}");
    let mut h = harness();
    let r = scram_run(&mut h, scram().with_tls_exporter([8; 32]));
    assert_eq!(r, "-ERR [AUTH] Authentication failed.\r\n");
    let mut h = harness();
    let r = scram_run(&mut h, scram().could_bind());
    assert!(r.starts_with("+OK Logged in"), "{r}");
}

// ---------------------------------------------------------------- D.6

#[test]
fn user_does_not_reveal_whether_a_user_exists() {
    let mut h = Harness::standard();
    h.take_output();
    assert_eq!(h.cmd("USER nosuchuser"), h.cmd("USER alice"));
    assert!(h.requests.is_empty());
}

#[test]
fn failure_texts_avoid_busy_words() {
    let mut h = Harness::standard();
    h.take_output();
    h.cmd("USER alice");
    let r = h.cmd("PASS wrong");
    assert!(r.starts_with("-ERR [AUTH]"));
    assert!(!has_busy_words(&r), "{r}");
    let mut h = Harness::new(ServerConfig::default(), plain(), standard_store());
    h.take_output();
    let r = h.cmd("USER alice");
    assert!(!has_busy_words(&r), "{r}");
}

// ---------------------------------------------------------------- D.7

#[test]
fn three_bad_commands_before_login_disconnect() {
    let mut h = Harness::standard();
    h.take_output();
    h.cmd("FOO");
    h.cmd("BAR");
    assert!(!h.closed);
    assert_eq!(
        h.cmd("BAZ"),
        "-ERR Unknown command: BAZ\r\n-ERR Too many bad commands.\r\n"
    );
    assert!(h.closed);
    assert_eq!(
        h.server.summary().close_reason,
        Some(CloseReason::TooManyBadCommands)
    );
}

#[test]
fn twenty_bad_commands_after_login_disconnect_and_release() {
    let mut h = Harness::standard();
    h.take_output();
    h.cmd("FOO");
    h.cmd("BAR");
    h.login("alice", "secret");
    h.cmd("DELE 1");
    for _ in 0..19 {
        h.cmd("FOO");
    }
    assert!(!h.closed);
    h.cmd("FOO");
    assert!(h.closed);
    assert_eq!(h.requests.last(), Some(&StoreRequest::Release));
    assert_eq!(h.store.message_count("alice"), 3);
}

#[test]
fn failed_logins_count_as_bad_commands() {
    let mut h = Harness::standard();
    h.take_output();
    for _ in 0..3 {
        h.cmd("USER alice");
        h.cmd("PASS wrong");
    }
    assert!(h.closed);
}

#[test]
fn failed_login_answer_waits_for_the_delay() {
    let mut h = Harness::standard();
    h.auto_timer = Duration::ZERO;
    h.take_output();
    h.cmd("USER alice");
    assert_eq!(h.cmd("PASS wrong"), "");
    let due = h.server.poll_timeout().unwrap();
    assert_eq!(due, h.now + Duration::from_secs(1));
    // Pipelined commands wait behind the delay.
    h.send(b"NOOP\r\n");
    assert_eq!(h.take_output(), "");
    h.advance(Duration::from_millis(999));
    assert_eq!(h.take_output(), "");
    h.advance(Duration::from_millis(1));
    assert_eq!(
        h.take_output(),
        "-ERR [AUTH] Authentication failed.\r\n-ERR Command not valid in this state.\r\n"
    );
}

#[test]
fn failed_login_delay_is_configurable() {
    let config = test_config().auth_failure_delay(Duration::from_secs(3));
    let mut h = Harness::new(config, plain(), standard_store());
    h.auto_timer = Duration::ZERO;
    h.take_output();
    h.cmd("USER alice");
    h.cmd("PASS wrong");
    assert_eq!(
        h.server.poll_timeout(),
        Some(h.now + Duration::from_secs(3))
    );
}

#[test]
fn over_long_line_gets_err_and_resynchronises() {
    let mut h = Harness::standard();
    h.login("alice", "secret");
    let long = "X".repeat(20_000);
    h.send(format!("NOOP {long}\r\nSTAT\r\n").as_bytes());
    assert_eq!(
        h.take_output(),
        "-ERR Command line too long.\r\n+OK 3 90\r\n"
    );
    assert_eq!(h.server.summary().bad_commands, 1);
    assert!(h.max_buffered <= 8 * 1024);
}

#[test]
fn over_long_line_sent_bytewise_gets_err_and_resynchronises() {
    let mut h = Harness::standard();
    h.login("alice", "secret");
    let long = "X".repeat(9_000);
    h.send_bytewise(format!("NOOP {long}\r\nSTAT\r\n").as_bytes());
    assert_eq!(
        h.take_output(),
        "-ERR Command line too long.\r\n+OK 3 90\r\n"
    );
}

#[test]
fn session_summary_counts() {
    let mut h = Harness::standard();
    h.login("alice", "secret");
    h.cmd("RETR 1");
    h.cmd("DELE 1");
    h.now = h.now + Duration::from_millis(12_345);
    h.cmd("QUIT");
    let s = h.server.summary();
    assert_eq!(s.user.as_deref(), Some("alice"));
    assert_eq!((s.retrieved, s.deleted, s.deleted_octets), (1, 1, 21));
    let line = s.to_string();
    assert!(
        line.starts_with("user=\"alice\" messages=3 retrieved=1/"),
        "{line}"
    );
    assert!(line.ends_with(" secs=12.345 end=quit"), "{line}");
    assert_eq!(s.duration, Duration::from_millis(12_345));
}

// ---------------------------------------------------------------- A.3 (server side)

#[test]
fn greeting_fits_in_512_octets_without_control_characters() {
    let config = test_config().greeting(format!("evil\r\n-ERR injected {}", "x".repeat(2000)));
    let mut h = Harness::new(config, plain(), standard_store());
    let g = h.take_output();
    assert!(g.len() <= 512, "{}", g.len());
    assert_eq!(g.matches("\r\n").count(), 1);
    assert!(g.ends_with(&format!(" {TIMESTAMP}\r\n")));
}

#[test]
fn malformed_command_texts_name_the_command_only() {
    let mut h = Harness::standard();
    h.login("alice", "secret");
    assert_eq!(h.cmd("RETR"), "-ERR RETR: missing argument.\r\n");
    assert_eq!(h.cmd("RETR x"), "-ERR RETR: invalid argument.\r\n");
    assert_eq!(h.cmd("DELE 1 2"), "-ERR DELE: too many arguments.\r\n");
}

#[test]
fn implementation_capability_fits_the_line_limit_in_octets_whatever_the_script() {
    // 300 two-octet characters: 600 octets, well within a cap counted in
    // characters, beyond the 512-octet line limit.
    let text: String = "é".repeat(300);
    let config = test_config().implementation(Some(text));
    let mut h = Harness::new(config, plain(), standard_store());
    h.take_output();
    h.send_line("CAPA");
    let raw = String::from_utf8(h.take_raw()).expect("UTF-8 kept whole");
    let line = raw
        .split("\r\n")
        .find(|l| l.starts_with("IMPLEMENTATION "))
        .expect("IMPLEMENTATION advertised");
    assert!(line.len() + 2 <= 512, "{} octets", line.len() + 2);
    assert!(line.len() + 2 > 500, "clipped no more than needed");
    assert!(line["IMPLEMENTATION ".len()..].chars().all(|c| c == 'é'));
}

#[test]
fn a_silent_connection_is_closed_a_minute_after_its_last_octet_before_login() {
    let mut h = Harness::standard();
    h.auto_timer = Duration::ZERO;
    h.take_output();
    h.advance(Duration::from_secs(50));
    // Any octet restarts the timer, even half a command.
    h.send(b"NO");
    h.advance(Duration::from_secs(59));
    assert!(!h.closed);
    h.advance(Duration::from_secs(1));
    assert!(h.closed);
    assert_eq!(
        h.take_output(),
        "-ERR Disconnected for inactivity before login.\r\n"
    );
    assert_eq!(
        h.server.summary().close_reason,
        Some(CloseReason::LoginTimeout)
    );
}

#[test]
fn after_login_only_the_autologout_ends_a_silent_session() {
    let mut h = Harness::standard();
    h.auto_timer = Duration::ZERO;
    h.login("alice", "secret");
    h.take_output();
    h.advance(Duration::from_secs(599));
    assert!(
        !h.closed,
        "the login idle timeout does not apply after login"
    );
    h.advance(Duration::from_secs(1));
    assert!(h.closed);
    assert_eq!(
        h.server.summary().close_reason,
        Some(CloseReason::Autologout)
    );
}

// ----- RFC 6856: no non-ASCII headers without UTF-8 mode -----

fn utf8_maildrop(chunk: usize) -> Harness {
    let store = MemoryStore::new().with_chunk_size(chunk);
    store.add_user("alice", "secret");
    store.add_message("alice", "Subject: caf\u{e9}\r\n\r\nbody\r\n");
    store.add_message("alice", "Subject: plain\r\n\r\nbody caf\u{e9}\r\n");
    let mut long_header = String::from("Subject: long\r\n");
    for i in 0..300 {
        long_header.push_str(&format!("X-Filler-{i}: ascii only\r\n"));
    }
    long_header.push_str("X-Late: \u{fc}ber\r\n\r\nbody\r\n");
    store.add_message("alice", long_header);
    Harness::new(test_config().utf8(true), plain(), store)
}

#[test]
fn a_utf8_header_without_utf8_mode_is_refused_with_the_utf8_code() {
    for chunk in [1, 7, 4096] {
        let mut h = utf8_maildrop(chunk);
        h.login("alice", "secret");
        for cmd in ["RETR 1", "TOP 1 0", "RETR 3"] {
            assert_eq!(
                h.cmd(cmd),
                "-ERR [UTF8] This message needs UTF-8 mode: send UTF8 first.\r\n",
                "{cmd}, chunks of {chunk}"
            );
        }
        // An ASCII header section with 8-bit content (8BITMIME) is fine.
        let body = h.cmd("RETR 2");
        assert!(body.starts_with("+OK "), "{body:?}");
        assert!(body.ends_with("body caf\u{e9}\r\n.\r\n"), "{body:?}");
        // The session goes on, and nothing counted as retrieved.
        assert!(h.cmd("STAT").starts_with("+OK 3 "));
    }
}

#[test]
fn a_header_line_of_several_crs_does_not_end_the_header_section() {
    // `\r\r\n` is a header line, not the empty line that ends the header
    // section (RFC 5322 §2.1): the non-ASCII header after it is still a
    // header, which TOP agrees with (it sends it as header, before the
    // empty line and its one body line).
    let messages = [
        "Subject: x\r\r\nX-Caf\u{e9}: y\r\n\r\nbody\r\n",
        "Subject: x\r\n\r\r\nX-Caf\u{e9}: y\r\n\r\nbody\r\n",
        "Subject: x\r\n\r\r\r\n\u{fc}\r\n\r\nbody\r\n",
    ];
    for chunk in [1, 2, 3, 4096] {
        let store = MemoryStore::new().with_chunk_size(chunk);
        store.add_user("alice", "secret");
        for m in messages {
            store.add_message("alice", m);
        }
        // An ASCII message with a CR CR line in its header: sent whole.
        store.add_message("alice", "Subject: x\r\n\r\r\nX-Plain: y\r\n\r\nbody\r\n");
        let mut h = Harness::new(test_config().utf8(true), plain(), store);
        h.login("alice", "secret");
        for n in 1..=messages.len() {
            for cmd in [
                format!("RETR {n}"),
                format!("TOP {n} 0"),
                format!("TOP {n} 1"),
            ] {
                assert_eq!(
                    h.cmd(&cmd),
                    "-ERR [UTF8] This message needs UTF-8 mode: send UTF8 first.\r\n",
                    "{cmd}, chunks of {chunk}"
                );
            }
        }
        assert_eq!(
            h.cmd("TOP 4 0"),
            "+OK Top of message follows.\r\n\
             Subject: x\r\n\r\r\nX-Plain: y\r\n\r\n.\r\n",
            "chunks of {chunk}"
        );
    }
}

#[test]
fn with_utf8_mode_the_message_is_sent_as_is() {
    for chunk in [1, 4096] {
        let mut h = utf8_maildrop(chunk);
        h.take_output();
        assert!(h.cmd("UTF8").starts_with("+OK"));
        h.login("alice", "secret");
        let body = h.cmd("RETR 1");
        assert!(body.starts_with("+OK "), "{body:?}");
        assert!(
            body.ends_with("Subject: caf\u{e9}\r\n\r\nbody\r\n.\r\n"),
            "{body:?}"
        );
    }
}

#[test]
fn without_a_utf8_maildrop_messages_are_sent_as_stored() {
    // UTF8 not advertised: the maildrop is not declared UTF-8, and legacy
    // 8-bit headers go out as they always did.
    let store = MemoryStore::new();
    store.add_user("alice", "secret");
    store.add_message("alice", &b"Subject: caf\xe9\r\n\r\nbody\r\n"[..]);
    let mut h = Harness::new(test_config(), plain(), store);
    h.login("alice", "secret");
    assert!(h.cmd("RETR 1").starts_with("+OK "));
}

#[test]
fn scram_server_nonces_come_from_the_connection_seed() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    // One store (one deployment secret, so one salt) for every connection.
    let store = standard_store();
    let first = |ctx| {
        let mut h = Harness::new(test_config(), ctx, store.clone());
        h.take_output();
        let reply = h.cmd(&format!(
            "AUTH SCRAM-SHA-256 {}",
            b64.encode("n,,n=alice,r=clientnonce")
        ));
        let data = reply.strip_prefix("+ ").expect("a challenge").trim_end();
        String::from_utf8(b64.decode(data).unwrap()).unwrap()
    };
    let a = first(plain().seed([1; 32]));
    let b = first(plain().seed([2; 32]));
    assert!(a.starts_with("r=clientnonce"), "{a}");
    // The same number with another seed: another nonce; the same seed: the
    // same one (the machine adds nothing random of its own).
    assert_ne!(a, b);
    assert_eq!(a, first(plain().seed([1; 32])));
}
