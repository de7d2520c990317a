//! Hostile and unusual sessions: pipelining floods, garbage, NUL bytes,
//! input split anywhere, the connection ending at awkward moments.

mod server_support;

use core::time::Duration;
use std::sync::Arc;

use pop3_proto::server::{CloseReason, Server, State, StoreReply, StoreRequest};
use pop3_proto::session::Action;
use pop3_proto::store::{Cause, IoKind, MessageInfo, StoreError, Update};
use pop3_proto::time::Instant;
use pop3_proto::types::Uid;
use server_support::*;

/// A machine logged in with `n` messages of `size` octets, answering the
/// store by hand.
fn logged_in(n: usize, size: u64) -> Server {
    let now = Instant::from_millis(0);
    let mut s = Server::new(Arc::new(test_config()), now, plain());
    while s.poll_action().is_some() {}
    assert_eq!(s.handle_input(now, b"USER u\r\nPASS p\r\n"), 16);
    let list: Vec<MessageInfo> = (0..n)
        .map(|i| MessageInfo {
            size,
            uid: Uid::new(format!("u{i}")).unwrap(),
        })
        .collect();
    loop {
        match s.poll_action() {
            Some(Action::Event(StoreRequest::VerifyPassword { .. })) => {
                s.handle_store(now, StoreReply::Verified(Ok(true)))
            }
            Some(Action::Event(StoreRequest::Open { .. })) => {
                s.handle_store(now, StoreReply::Opened(Ok(list.clone())))
            }
            Some(_) => {}
            None => break,
        }
    }
    assert_eq!(s.state(), State::Transaction);
    s
}

#[test]
fn ten_thousand_pipelined_noops_in_bounded_memory() {
    let mut h = Harness::standard();
    h.login("alice", "secret");
    let flood = "NOOP\r\n".repeat(10_000);
    h.send(flood.as_bytes());
    let out = h.take_output();
    assert_eq!(out.len(), 10_000 * 5);
    assert!(
        out.split("\r\n")
            .filter(|l| !l.is_empty())
            .all(|l| l == "+OK")
    );
    assert!(h.max_buffered <= 8 * 1024, "buffered {}", h.max_buffered);
    assert!(h.max_queued <= 1, "queued {}", h.max_queued);
    assert_eq!(h.pending_len(), 0);
}

#[test]
fn an_undrained_machine_stops_taking_input() {
    let mut s = logged_in(1, 10);
    let flood = "NOOP\r\n".repeat(10_000);
    let now = Instant::from_millis(1);
    let mut taken = 0;
    for _ in 0..100 {
        taken += s.handle_input(now, &flood.as_bytes()[taken..]);
    }
    // One reply queued, at most one line limit of input buffered.
    assert!(taken <= 8 * 1024 + 6, "took {taken}");
    assert!(s.buffered_input() <= 8 * 1024);
    assert_eq!(s.queued_actions(), 1);
    assert!(!s.wants_input() || s.buffered_input() + 6 > 8 * 1024);
    // Draining produces the replies one at a time and frees room.
    let mut replies = 0;
    while let Some(a) = s.poll_action() {
        assert!(s.queued_actions() <= 1);
        if matches!(a, Action::Send(_)) {
            replies += 1;
        }
    }
    assert_eq!(replies, taken / 6);
    assert!(s.wants_input());
}

#[test]
fn input_is_bounded_while_a_store_request_is_outstanding() {
    let mut s = logged_in(1, 10);
    let now = Instant::from_millis(1);
    assert_eq!(s.handle_input(now, b"RETR 1\r\n"), 8);
    assert_eq!(
        s.poll_action(),
        Some(Action::Event(StoreRequest::Read { index: 0 }))
    );
    assert_eq!(s.poll_action(), None);
    let flood = "NOOP\r\n".repeat(10_000);
    let mut taken = 0;
    for _ in 0..10 {
        taken += s.handle_input(now, &flood.as_bytes()[taken..]);
    }
    assert!(taken <= 8 * 1024, "took {taken}");
    assert!(!s.wants_input());
    assert_eq!(
        s.poll_action(),
        None,
        "no command runs before the store answers"
    );
}

#[test]
fn nul_bytes_in_commands_get_err() {
    let mut h = Harness::standard();
    h.take_output();
    assert!(h.cmd("NOOP\0").starts_with("-ERR"));
    assert!(h.cmd("USER al\0ice").starts_with("-ERR"));
    assert!(h.cmd("\0\0\0\0").starts_with("-ERR"));
    assert!(h.closed);
}

#[test]
fn nul_bytes_in_pass_never_reach_the_store() {
    let mut h = Harness::standard();
    h.take_output();
    h.cmd("USER alice");
    assert!(h.cmd("PASS sec\0ret").starts_with("-ERR"));
    assert!(h.requests.is_empty());
}

#[test]
fn bare_lf_line_ends_are_accepted() {
    let mut h = Harness::standard();
    h.take_output();
    h.send(b"USER alice\nPASS secret\nSTAT\n");
    assert_eq!(
        h.take_output(),
        "+OK\r\n+OK Logged in; 3 messages (90 octets).\r\n+OK 3 90\r\n"
    );
}

#[test]
fn garbage_sessions_never_panic_and_end() {
    // A deterministic generator: each session is a few hundred octets of
    // noise mixed with command fragments.
    let words: &[&[u8]] = &[
        b"USER alice\r\n",
        b"PASS secret\r\n",
        b"RETR 1\r\n",
        b"TOP 2 1\r\n",
        b"LIST\r\n",
        b"AUTH PLAIN\r\n",
        b"AUTH LOGIN\r\n",
        b"*\r\n",
        b"STLS\r\n",
        b"DELE 1\r\n",
        b"RSET\r\n",
        b"\r\n",
        b"\n",
        b"\0",
        b"\xff\xfe",
        b"UIDL 99999999999999999999\r\n",
        b"CAPA\r\n",
        b"APOP alice 00\r\n",
        b"QUIT\r\n",
        b"LANG *\r\n",
        b"UTF8\r\n",
        b"XXXX\r\n",
    ];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..300 {
        let mut h = Harness::new(test_config(), stls_capable(), standard_store());
        let mut input = Vec::new();
        for _ in 0..(next() % 40) {
            let r = next();
            if r % 5 == 0 {
                input.extend((0..(r % 30)).map(|i| (r >> (i % 56)) as u8));
            } else {
                input.extend_from_slice(words[(r as usize / 7) % words.len()]);
            }
        }
        h.send(&input);
        assert!(h.max_buffered <= 64 * 1024);
        h.eof();
        assert!(h.closed, "the session ends after end of input");
        assert_eq!(h.closes, 1);
        assert!(!h.store.is_locked("alice"));
        if !h
            .requests
            .iter()
            .any(|r| matches!(r, StoreRequest::Commit { .. }))
        {
            assert_eq!(h.store.message_count("alice"), 3);
        }
    }
}

/// A session covering most commands, a few KiB long.
fn scripted_session() -> Vec<u8> {
    let mut s = String::new();
    s.push_str("CAPA\r\nAUTH\r\nUSER alice\r\nPASS secret\r\nSTAT\r\nLIST\r\nUIDL\r\n");
    for _ in 0..12 {
        s.push_str("RETR 2\r\nTOP 2 1\r\nLIST 2\r\nUIDL 3\r\nDELE 1\r\nRETR 1\r\nNOOP\r\n");
        s.push_str("RSET\r\nSTAT\r\nLIST\r\nUIDL\r\nTOP 1 0\r\nRETR 3\r\n");
    }
    s.push_str("BOGUS\r\nDELE 1\r\nDELE 3\r\nCAPA\r\nQUIT\r\n");
    s.into_bytes()
}

fn run_split(input: &[u8], cut: Option<usize>) -> (Vec<u8>, usize) {
    let mut h = Harness::standard();
    match cut {
        Some(i) => {
            h.send(&input[..i]);
            h.send(&input[i..]);
        }
        None => h.send_bytewise(input),
    }
    h.eof();
    (h.take_raw(), h.store.message_count("alice"))
}

#[test]
fn input_split_at_every_byte_gives_identical_output() {
    let input = scripted_session();
    assert!(input.len() > 1200, "{}", input.len());
    let (whole, left) = run_split(&input, Some(input.len()));
    assert!(whole.len() > 4096, "{}", whole.len());
    assert!(whole.ends_with(b"+OK Logging out.\r\n"));
    assert_eq!(left, 1);
    for i in 0..=input.len() {
        assert_eq!(
            run_split(&input, Some(i)),
            (whole.clone(), left),
            "split at {i}"
        );
    }
    assert_eq!(run_split(&input, None), (whole, left), "bytewise");
}

#[test]
fn sasl_session_split_at_every_byte_gives_identical_output() {
    let input = b"AUTH LOGIN\r\nYWxpY2U=\r\nc2VjcmV0\r\nSTAT\r\nQUIT\r\n".to_vec();
    let (whole, _) = run_split(&input, Some(input.len()));
    assert!(String::from_utf8_lossy(&whole).contains("+OK 3 90\r\n"));
    for i in 0..=input.len() {
        assert_eq!(run_split(&input, Some(i)).0, whole, "split at {i}");
    }
}

#[test]
fn eof_during_the_failed_login_delay_closes_at_once() {
    let mut h = Harness::standard();
    h.auto_timer = Duration::ZERO;
    h.take_output();
    h.cmd("USER alice");
    h.cmd("PASS wrong");
    h.eof();
    assert!(h.closed);
    assert_eq!(h.server.poll_timeout(), None);
}

#[test]
fn half_close_during_the_failed_login_delay_still_answers_the_commands_sent() {
    let mut h = Harness::standard();
    h.auto_timer = Duration::ZERO;
    h.take_output();
    // A client that pipelines a retry after a wrong password and
    // half-closes: the end of its input comes while the failure waits.
    h.send(b"USER alice\r\nPASS wrong\r\nUSER alice\r\nPASS secret\r\nDELE 1\r\nQUIT\r\n");
    h.eof();
    assert!(!h.closed, "closed before the delayed answer");
    h.advance(Duration::from_secs(1));
    let out = h.take_output();
    assert!(
        out.starts_with("+OK\r\n-ERR [AUTH] Authentication failed.\r\n+OK\r\n+OK Logged in;"),
        "{out}"
    );
    assert!(
        out.ends_with("+OK Message 1 deleted.\r\n+OK Logging out.\r\n"),
        "{out}"
    );
    assert!(h.closed);
    assert_eq!(h.store.message_count("alice"), 2);
}

#[test]
fn eof_during_sasl_closes() {
    let mut h = Harness::standard();
    h.take_output();
    h.cmd("AUTH LOGIN");
    h.eof();
    assert!(h.closed);
}

#[test]
fn disconnect_while_a_body_is_streaming_releases_without_update() {
    let mut s = logged_in(2, 100);
    let now = Instant::from_millis(1);
    s.handle_input(now, b"DELE 2\r\nRETR 1\r\n");
    let mut closed = false;
    let mut requests = Vec::new();
    let mut eof_sent = false;
    while !closed {
        match s.poll_action() {
            Some(Action::Event(req)) => {
                requests.push(req.clone());
                let reply = match req {
                    StoreRequest::Read { .. } => StoreReply::Reading(Ok(())),
                    StoreRequest::NextChunk => {
                        if !eof_sent {
                            s.handle_disconnect(now);
                            eof_sent = true;
                        }
                        StoreReply::Chunk(Ok(Some(bytes::Bytes::from_static(b"line\r\n"))))
                    }
                    StoreRequest::Release => StoreReply::Released,
                    other => panic!("unexpected {other:?}"),
                };
                s.handle_store(now, reply);
            }
            Some(Action::Close) => closed = true,
            Some(_) => {}
            None => panic!("stuck"),
        }
    }
    assert_eq!(requests.last(), Some(&StoreRequest::Release));
    assert!(
        !requests
            .iter()
            .any(|r| matches!(r, StoreRequest::Commit { .. }))
    );
    assert_eq!(s.summary().close_reason, Some(CloseReason::PeerClosed));
}

/// Answers every store request of `s` until it closes, with `list` as the
/// maildrop and `body` as every message; calls `on_request` first (to end
/// the input at an awkward moment). Returns the requests in order.
fn run_store(
    s: &mut Server,
    list: &[MessageInfo],
    body: &'static [u8],
    mut on_request: impl FnMut(&mut Server, &StoreRequest),
) -> Vec<StoreRequest> {
    let now = Instant::from_millis(1);
    let mut requests = Vec::new();
    let mut chunk_sent = false;
    loop {
        match s.poll_action() {
            Some(Action::Event(req)) => {
                on_request(s, &req);
                let reply = match &req {
                    StoreRequest::VerifyPassword { .. } => StoreReply::Verified(Ok(true)),
                    StoreRequest::Open { .. } => StoreReply::Opened(Ok(list.to_vec())),
                    StoreRequest::Read { .. } => {
                        chunk_sent = false;
                        StoreReply::Reading(Ok(()))
                    }
                    StoreRequest::NextChunk if !chunk_sent => {
                        chunk_sent = true;
                        StoreReply::Chunk(Ok(Some(bytes::Bytes::from_static(body))))
                    }
                    StoreRequest::NextChunk => StoreReply::Chunk(Ok(None)),
                    StoreRequest::Commit { .. } => StoreReply::Committed(Ok(())),
                    StoreRequest::Release => StoreReply::Released,
                    other => panic!("unexpected {other:?}"),
                };
                requests.push(req);
                s.handle_store(now, reply);
            }
            Some(Action::Close) => return requests,
            Some(_) => {}
            None => panic!("stuck: {:?}", s.state()),
        }
    }
}

fn two_messages() -> Vec<MessageInfo> {
    (1..=2)
        .map(|i| MessageInfo {
            size: 6,
            uid: Uid::new(format!("u{i}")).unwrap(),
        })
        .collect()
}

#[test]
fn half_close_during_login_check_still_runs_dele_and_quit() {
    let now = Instant::from_millis(0);
    let mut s = Server::new(Arc::new(test_config()), now, plain());
    while s.poll_action().is_some() {}
    let script = b"USER u\r\nPASS p\r\nDELE 1\r\nQUIT\r\n";
    assert_eq!(s.handle_input(now, script), script.len());
    let mut eof_sent = false;
    let requests = run_store(&mut s, &two_messages(), b"line\r\n", |s, req| {
        // The peer half-closes while the password is being checked.
        if matches!(req, StoreRequest::VerifyPassword { .. }) && !eof_sent {
            eof_sent = true;
            s.handle_eof(now);
        }
    });
    assert!(eof_sent);
    assert!(
        requests.contains(&StoreRequest::Commit(Update::new(vec![0]))),
        "the pipelined DELE and QUIT were processed: {requests:?}"
    );
    assert_eq!(s.summary().close_reason, Some(CloseReason::Quit));
}

#[test]
fn half_close_while_a_body_streams_finishes_the_body_and_the_quit() {
    let mut s = logged_in(2, 6);
    let now = Instant::from_millis(1);
    s.handle_input(now, b"RETR 1\r\nDELE 2\r\nQUIT\r\n");
    let mut out = Vec::new();
    let mut eof_sent = false;
    let mut requests = Vec::new();
    let mut chunk_sent = false;
    loop {
        match s.poll_action() {
            Some(Action::Send(t)) => out.extend_from_slice(&t.bytes),
            Some(Action::Event(req)) => {
                let reply = match &req {
                    StoreRequest::Read { .. } => StoreReply::Reading(Ok(())),
                    StoreRequest::NextChunk if !chunk_sent => {
                        // The peer half-closes with the body under way.
                        s.handle_eof(now);
                        eof_sent = true;
                        chunk_sent = true;
                        StoreReply::Chunk(Ok(Some(bytes::Bytes::from_static(b"line\r\n"))))
                    }
                    StoreRequest::NextChunk => StoreReply::Chunk(Ok(None)),
                    StoreRequest::Commit { .. } => StoreReply::Committed(Ok(())),
                    StoreRequest::Release => StoreReply::Released,
                    other => panic!("unexpected {other:?}"),
                };
                requests.push(req);
                s.handle_store(now, reply);
            }
            Some(Action::Close) => break,
            Some(_) => {}
            None => panic!("stuck"),
        }
    }
    assert!(eof_sent);
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.contains("line\r\n.\r\n"),
        "the whole body went out: {out:?}"
    );
    assert!(out.ends_with("\r\n"), "{out:?}");
    assert!(requests.contains(&StoreRequest::Commit(
        Update::new(vec![1]).with_retrieved(vec![0])
    )));
    assert_eq!(s.summary().close_reason, Some(CloseReason::Quit));
}

#[test]
fn disconnect_during_login_check_drops_the_buffered_commands() {
    let now = Instant::from_millis(0);
    let mut s = Server::new(Arc::new(test_config()), now, plain());
    while s.poll_action().is_some() {}
    let script = b"USER u\r\nPASS p\r\nDELE 1\r\nQUIT\r\n";
    assert_eq!(s.handle_input(now, script), script.len());
    let requests = run_store(&mut s, &two_messages(), b"line\r\n", |s, req| {
        if matches!(req, StoreRequest::VerifyPassword { .. }) {
            s.handle_disconnect(now);
        }
    });
    assert!(
        !requests
            .iter()
            .any(|r| matches!(r, StoreRequest::Commit { .. })),
        "nothing is deleted for a connection that is gone: {requests:?}"
    );
    assert_eq!(s.summary().close_reason, Some(CloseReason::PeerClosed));
}

#[test]
fn store_error_mid_body_closes_the_connection() {
    let mut s = logged_in(1, 100);
    let now = Instant::from_millis(1);
    s.handle_input(now, b"RETR 1\r\nNOOP\r\n");
    let mut chunks = 0;
    let mut sent = Vec::new();
    let mut released = false;
    loop {
        match s.poll_action() {
            Some(Action::Event(StoreRequest::Read { .. })) => {
                s.handle_store(now, StoreReply::Reading(Ok(())))
            }
            Some(Action::Event(StoreRequest::NextChunk)) => {
                chunks += 1;
                let r = if chunks == 1 {
                    Ok(Some(bytes::Bytes::from_static(b"Subject: x\r\n")))
                } else {
                    Err(StoreError::Temporary(Cause::Io {
                        context: "reading message",
                        kind: IoKind::Other,
                    }))
                };
                s.handle_store(now, StoreReply::Chunk(r))
            }
            Some(Action::Event(StoreRequest::Release)) => {
                released = true;
                s.handle_store(now, StoreReply::Released)
            }
            Some(Action::Send(t)) => sent.extend_from_slice(&t.bytes),
            Some(Action::Close) => break,
            Some(other) => panic!("unexpected {other:?}"),
            None => panic!("stuck"),
        }
    }
    assert!(released);
    assert_eq!(sent, b"+OK 100 octets\r\nSubject: x\r\n");
    assert_eq!(s.summary().close_reason, Some(CloseReason::StoreFailure));
}

#[test]
fn store_error_before_the_status_line_is_a_plain_err() {
    let mut s = logged_in(1, 100);
    let now = Instant::from_millis(1);
    s.handle_input(now, b"RETR 1\r\n");
    assert_eq!(
        s.poll_action(),
        Some(Action::Event(StoreRequest::Read { index: 0 }))
    );
    s.handle_store(now, StoreReply::Reading(Err(StoreError::MessageGone)));
    match s.poll_action() {
        Some(Action::Send(t)) => assert!(t.bytes.starts_with(b"-ERR ")),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.state(), State::Transaction);
}

#[test]
fn stray_inputs_are_ignored() {
    let mut s = logged_in(1, 10);
    let now = Instant::from_millis(1);
    s.handle_store(now, StoreReply::Released);
    s.handle_tls_established(now);
    assert!(!s.is_tls_active(), "no handshake was asked for");
    assert_eq!(s.poll_action(), None);
    assert_eq!(s.state(), State::Transaction);
    s.handle_timeout(now);
    assert_eq!(s.poll_action(), None);
}

#[test]
fn nothing_after_close() {
    let mut h = Harness::standard();
    h.take_output();
    h.cmd("QUIT");
    assert!(h.closed);
    assert_eq!(h.server.handle_input(h.now, b"NOOP\r\n"), 0);
    assert!(!h.server.wants_input());
    h.server.handle_eof(h.now);
    h.server.handle_timeout(h.now + Duration::from_secs(3600));
    assert_eq!(h.server.poll_action(), None);
    assert_eq!(h.server.poll_timeout(), None);
}

#[test]
fn autologout_during_a_store_request_closes_after_the_answer() {
    let mut s = logged_in(1, 100);
    let now = Instant::from_millis(1);
    s.handle_input(now, b"RETR 1\r\n");
    assert_eq!(
        s.poll_action(),
        Some(Action::Event(StoreRequest::Read { index: 0 }))
    );
    let later = now + Duration::from_secs(601);
    s.handle_timeout(later);
    s.handle_store(later, StoreReply::Reading(Ok(())));
    assert_eq!(s.poll_action(), Some(Action::Event(StoreRequest::Release)));
    s.handle_store(later, StoreReply::Released);
    assert_eq!(s.poll_action(), Some(Action::Close));
    assert_eq!(s.summary().close_reason, Some(CloseReason::Autologout));
}

#[test]
fn machine_and_driver_can_move_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_send<T: Send>() {}
    assert_send_sync::<Server>();
    assert_send::<pop3_proto::store::StoreDriver<pop3_proto::store::MemoryStore>>();
    assert_send_sync::<pop3_proto::server::ServerConfig>();
}

#[test]
fn sizes_that_overflow_a_u64_sum_saturate_instead_of_panicking() {
    let mut s = logged_in(3, u64::MAX / 2);
    let now = Instant::from_millis(1);
    s.handle_input(now, b"STAT\r\nDELE 1\r\nSTAT\r\nRSET\r\nSTAT\r\n");
    let mut out = Vec::new();
    while let Some(action) = s.poll_action() {
        if let Action::Send(t) = action {
            out.extend_from_slice(&t.bytes);
        }
    }
    let out = String::from_utf8(out).unwrap();
    let stats: Vec<&str> = out
        .split("\r\n")
        .filter(|l| l.starts_with("+OK") && l.split(' ').count() == 3)
        .collect();
    assert_eq!(
        stats,
        [
            format!("+OK 3 {}", u64::MAX),
            format!("+OK 2 {}", u64::MAX - 1),
            format!("+OK 3 {}", u64::MAX),
        ],
        "{out}"
    );
}

#[test]
fn a_store_timeout_mid_body_cuts_the_body_and_asks_nothing_more_of_the_store() {
    let mut s = logged_in(2, 100);
    let now = Instant::from_millis(1);
    s.handle_input(now, b"DELE 2\r\nRETR 1\r\n");
    let mut out = Vec::new();
    let mut timed_out = false;
    loop {
        match s.poll_action() {
            Some(Action::Send(t)) => out.extend_from_slice(&t.bytes),
            Some(Action::Event(StoreRequest::Read { .. })) => {
                s.handle_store(now, StoreReply::Reading(Ok(())))
            }
            Some(Action::Event(StoreRequest::NextChunk)) if !timed_out => {
                // The store never answers: the adapter gives up.
                timed_out = true;
                s.handle_store_timeout(now);
            }
            Some(Action::Event(other)) => panic!("nothing more is asked: {other:?}"),
            Some(Action::Close) => break,
            Some(_) => {}
            None => panic!("stuck"),
        }
    }
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.ends_with("octets\r\n"),
        "the body is cut, not ended: {out:?}"
    );
    assert!(!out.contains("-ERR"), "{out:?}");
    assert_eq!(s.summary().close_reason, Some(CloseReason::StoreTimeout));
    // A late answer is ignored.
    s.handle_store(now, StoreReply::Chunk(Ok(None)));
    assert_eq!(s.poll_action(), None);
}

#[test]
fn a_store_timeout_on_login_answers_sys_temp_and_closes() {
    let now = Instant::from_millis(0);
    let mut s = Server::new(Arc::new(test_config()), now, plain());
    while s.poll_action().is_some() {}
    s.handle_input(now, b"USER u\r\nPASS p\r\n");
    let mut out = Vec::new();
    loop {
        match s.poll_action() {
            Some(Action::Send(t)) => out.extend_from_slice(&t.bytes),
            Some(Action::Event(StoreRequest::VerifyPassword { .. })) => s.handle_store_timeout(now),
            Some(Action::Event(other)) => panic!("nothing more is asked: {other:?}"),
            Some(Action::Close) => break,
            Some(_) => {}
            None => panic!("stuck"),
        }
    }
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.ends_with("-ERR [SYS/TEMP] The mail storage is not responding.\r\n"),
        "{out:?}"
    );
    assert_eq!(s.summary().close_reason, Some(CloseReason::StoreTimeout));
}
