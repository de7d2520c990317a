//! The client machine driven through every recorded server session
//! (`tests/fixtures/pop3-servers/<profile>/session*.txt`).

mod client_support;

use bytes::Bytes;
use pop3_proto::client::sasl::{CramMd5, Login, Plain};
use pop3_proto::client::{Client, ClientError, ClientEvent, ProtocolError, RequestId};
use pop3_proto::command::{Command, LangRequest, UnknownCommand};
use pop3_proto::types::{LanguageTag, MessageNumber, Secret};

use client_support::*;

fn creds(profile: &str) -> (&'static str, &'static str) {
    if profile == "dovecot" {
        ("alice", "secret")
    } else {
        ("username", "password")
    }
}

fn msg(s: &str) -> Option<MessageNumber> {
    let n: u32 = s.parse().ok()?;
    MessageNumber::new(n)
}

/// The application call that produces `command`; `None` when the command
/// cannot be expressed through the API at all (`RETR abc`).
fn issue(
    client: &mut Client,
    command: &str,
    profile: &str,
) -> Option<Result<RequestId, ClientError>> {
    let (user, password) = creds(profile);
    let words: Vec<&str> = command.split(' ').collect();
    let kw = words[0].to_ascii_uppercase();
    let arg = |i: usize| words.get(i).copied();
    Some(match (kw.as_str(), words.len()) {
        ("CAPA", 1) => client.capa(),
        ("STLS", 1) => client.stls(),
        ("USER", 2) => client.user(words[1]),
        ("PASS", 2) => client.pass(Secret::new(words[1].to_string())),
        ("APOP", 3) => client.apop(words[1], &Secret::new(password)),
        ("AUTH", _) => match arg(1).unwrap() {
            "PLAIN" => client.auth(Box::new(Plain::new(user, Secret::new(password)))),
            "LOGIN" => client.auth(Box::new(Login::new(user, Secret::new(password)))),
            "CRAM-MD5" => client.auth(Box::new(CramMd5::new(user, Secret::new(password)))),
            other => panic!("mechanism {other}"),
        },
        ("STAT", 1) => client.stat(),
        ("LIST", 1) => client.list(None),
        ("LIST", 2) => client.list(Some(msg(words[1])?)),
        ("UIDL", 1) => client.uidl(None),
        ("UIDL", 2) => client.uidl(Some(msg(words[1])?)),
        ("RETR", 2) => client.retr(msg(words[1])?),
        ("TOP", 3) => client.top(msg(words[1])?, words[2].parse().ok()?),
        ("DELE", 2) => client.dele(msg(words[1])?),
        ("NOOP", 1) => client.noop(),
        ("RSET", 1) => client.rset(),
        ("QUIT", 1) => client.quit(),
        ("UTF8", 1) => client.utf8(),
        ("LANG", 1) => client.lang(LangRequest::List),
        ("LANG", 2) if words[1] == "*" => client.lang(LangRequest::Default),
        ("LANG", 2) => client.lang(LangRequest::Tag(LanguageTag::new(words[1]).ok()?)),
        ("TOP" | "RETR" | "LIST" | "UIDL" | "DELE", _) => return None,
        _ => client.send(Command::Unknown(
            UnknownCommand::new(words[0], Bytes::new()).ok()?,
        )),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The application waits for each reply before the next command.
    Stepwise,
    /// The application queues every command right after the greeting.
    QueueAll,
}

struct Run {
    driver: Driver,
    server: ReplayServer,
    ids: Vec<(usize, RequestId)>,
    refused: Vec<String>,
}

fn pump(d: &mut Driver, server: &mut ReplayServer, delivered: &mut usize) {
    loop {
        if d.wire.len() > *delivered {
            let new = d.wire[*delivered..].to_vec();
            *delivered = d.wire.len();
            server.receive(&new);
        }
        if !server.out.is_empty() {
            let out = std::mem::take(&mut server.out);
            d.feed(&out);
            continue;
        }
        if d.tls_requested > 0 {
            d.tls_requested -= 1;
            d.client.handle_tls_established(d.now);
            d.drain();
            continue;
        }
        break;
    }
}

fn run(session: &Session, mode: Mode, chunk: usize, split_at: Option<usize>) -> Run {
    let mut config = plain_link();
    if session.entries.iter().any(|e| e.command == "AUTH PLAIN") {
        // The recording has no initial response: it goes after the challenge.
        config.initial_response_limit = 0;
    }
    let mut d = Driver::new(config);
    d.chunk = chunk;
    d.split_at = split_at;
    let mut server = ReplayServer::new(session.entries.clone());
    let mut delivered = 0;
    d.feed(&session.greeting);
    let mut ids = Vec::new();
    let mut refused = Vec::new();
    for (i, e) in session.entries.iter().enumerate() {
        if e.sasl_data {
            continue;
        }
        match issue(&mut d.client, &e.command, &session.profile) {
            Some(Ok(id)) => ids.push((i, id)),
            Some(Err(_)) | None => {
                refused.push(e.command.clone());
                server.skipped[i] = true;
            }
        }
        d.drain();
        if mode == Mode::Stepwise {
            pump(&mut d, &mut server, &mut delivered);
        }
    }
    pump(&mut d, &mut server, &mut delivered);
    Run {
        driver: d,
        server,
        ids,
        refused,
    }
}

struct Expect {
    errs: usize,
    malformed: usize,
    refused: &'static [&'static str],
    fatal: bool,
    queue_all: bool,
}

fn expect(profile: &str, file: &str) -> Expect {
    let mut e = Expect {
        errs: 0,
        malformed: 0,
        refused: &[],
        fatal: false,
        queue_all: true,
    };
    match (profile, file) {
        ("comcast", "session-auth-retry.txt") => {
            e.errs = 1;
            e.queue_all = false;
        }
        ("comcast", "session-bad-list-1.txt" | "session-bad-list.txt" | "session-bad-stat.txt") => {
            e.malformed = 3
        }
        ("comcast-nocapa", "session.txt") => e.errs = 4,
        ("comcast-nocapa", "session-mailkit.txt") => e.errs = 3,
        ("dovecot", "session-errors.txt") => {
            e.errs = 5;
            e.refused = &["STAT", "PASS secret", "RETR 0", "RETR abc", "TOP 1"];
            e.queue_all = false;
        }
        ("gmail", "session-bad-uidl-1.txt" | "session-bad-uidl.txt") => e.malformed = 2,
        ("greeting-err", _) => e.fatal = true,
        _ => {}
    }
    e
}

fn check(session: &Session, run: &Run, mode: Mode) {
    let name = format!("{}/{} {mode:?}", session.profile, session.file);
    let ex = expect(&session.profile, &session.file);
    let events = &run.driver.events;
    let count = |f: &dyn Fn(&ClientEvent) -> bool| events.iter().filter(|e| f(e)).count();
    let errors: Vec<_> = events
        .iter()
        .filter(|e| matches!(e, ClientEvent::Error(_)))
        .collect();
    if ex.fatal {
        assert!(
            matches!(
                errors[..],
                [ClientEvent::Error(ProtocolError::GreetingRejected(_))]
            ),
            "{name}: {errors:?}"
        );
        assert!(run.driver.closed, "{name}: not closed");
        return;
    }
    assert!(errors.is_empty(), "{name}: {errors:?}");
    assert!(
        run.server.done(),
        "{name}: script not finished at {}",
        run.server.pos
    );
    assert_eq!(
        count(&|e| matches!(e, ClientEvent::Err { .. })),
        ex.errs,
        "{name}: -ERR replies"
    );
    assert_eq!(
        count(&|e| matches!(e, ClientEvent::Malformed { .. })),
        ex.malformed,
        "{name}: malformed replies: {:?}",
        events
            .iter()
            .filter(|e| matches!(e, ClientEvent::Malformed { .. }))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        count(&|e| matches!(e, ClientEvent::Cancelled { .. })),
        0,
        "{name}: cancelled"
    );
    assert_eq!(run.refused, ex.refused, "{name}: refused commands");
    assert!(
        matches!(events.first(), Some(ClientEvent::Greeting(_))),
        "{name}: greeting first"
    );
    let quits = session.entries.iter().any(|e| e.command == "QUIT");
    assert_eq!(run.driver.closed, quits, "{name}: closed after QUIT");
    if quits {
        assert_eq!(events.last(), Some(&ClientEvent::Closed), "{name}");
    }
    // Every issued command got an answer, and bodies and listings are whole.
    for &(i, id) in &run.ids {
        let entry = &session.entries[i];
        let mine: Vec<_> = events.iter().filter(|e| event_id(e) == Some(id)).collect();
        assert!(!mine.is_empty(), "{name}: no answer to {}", entry.command);
        let ok = entry.response.starts_with(b"+OK");
        let kw = entry.command.split(' ').next().unwrap();
        let args = entry.command.split(' ').count();
        if ok && (kw == "RETR" || kw == "TOP") {
            assert_eq!(
                body_of(events, id),
                reference_body(&entry.response),
                "{name}: body of {}",
                entry.command
            );
            assert!(matches!(mine.last(), Some(ClientEvent::BodyEnd { .. })));
        }
        if ok && (kw == "LIST" || kw == "UIDL") && args == 1 {
            assert!(matches!(mine.last(), Some(ClientEvent::ListingEnd { .. })));
            let lines = reference_body(&entry.response)
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .count();
            let bad = mine
                .iter()
                .filter(|e| matches!(e, ClientEvent::Malformed { .. }))
                .count();
            let entries = mine
                .iter()
                .filter(|e| matches!(e, ClientEvent::Scan { .. } | ClientEvent::Uid { .. }))
                .count();
            assert_eq!(entries + bad, lines, "{name}: entries of {}", entry.command);
        }
        if ok && kw == "CAPA" {
            assert!(matches!(
                mine.last(),
                Some(ClientEvent::Capabilities { .. })
            ));
        }
    }
}

#[test]
fn every_recorded_session_replays_stepwise() {
    let sessions = all_sessions();
    assert!(sessions.len() >= 25, "{sessions:?}");
    for (profile, file) in sessions {
        let session = load_session(&profile, &file);
        let run = run(&session, Mode::Stepwise, usize::MAX, None);
        check(&session, &run, Mode::Stepwise);
    }
}

#[test]
fn every_recorded_session_replays_with_all_commands_queued_up_front() {
    for (profile, file) in all_sessions() {
        if !expect(&profile, &file).queue_all {
            continue;
        }
        let session = load_session(&profile, &file);
        let run = run(&session, Mode::QueueAll, usize::MAX, None);
        check(&session, &run, Mode::QueueAll);
    }
}

#[test]
fn replay_events_do_not_depend_on_how_input_is_split() {
    for (profile, file) in all_sessions() {
        let session = load_session(&profile, &file);
        let whole = run(&session, Mode::Stepwise, usize::MAX, None);
        let want = coalesce(&whole.driver.events);
        let small = whole.driver.fed < 64 * 1024;
        let chunks: &[usize] = if small {
            &[1, 2, 7, 512]
        } else {
            &[7, 512, 4093]
        };
        for &chunk in chunks {
            let r = run(&session, Mode::Stepwise, chunk, None);
            assert_eq!(
                coalesce(&r.driver.events),
                want,
                "{profile}/{file} in {chunk}-octet pieces"
            );
            assert_eq!(r.driver.wire, whole.driver.wire, "{profile}/{file}");
        }
    }
}

#[test]
fn dovecot_session_split_at_every_position() {
    for file in ["session.txt", "session-errors.txt", "session-stls.txt"] {
        let session = load_session("dovecot", file);
        let whole = run(&session, Mode::Stepwise, usize::MAX, None);
        let want = coalesce(&whole.driver.events);
        let total = whole.driver.fed;
        assert!(total < 8 * 1024, "{total}");
        for p in 0..=total {
            let r = run(&session, Mode::Stepwise, usize::MAX, Some(p));
            assert_eq!(
                coalesce(&r.driver.events),
                want,
                "dovecot/{file} split at {p}"
            );
        }
    }
}

#[test]
fn gmail_pipelines_after_capa_lists_pipelining() {
    let session = load_session("gmail", "session-mailkit.txt");
    let run = run(&session, Mode::QueueAll, usize::MAX, None);
    assert!(run.driver.client.state() == pop3_proto::client::ClientState::Closed);
    // Before the second CAPA (after login) one command at a time; after it,
    // several transmits went out before the first of their replies arrived:
    // the log shows consecutive sends.
    let mut max_run = 0;
    let mut cur = 0;
    for a in &run.driver.log {
        if *a == "send" {
            cur += 1;
            max_run = max_run.max(cur);
        } else {
            cur = 0;
        }
    }
    assert!(max_run > 5, "longest run of consecutive sends: {max_run}");
}

#[test]
fn exchange_bare_plus_continuation_drives_auth_login() {
    let session = load_session("exchange", "session.txt");
    let run = run(&session, Mode::Stepwise, usize::MAX, None);
    let sent = run.driver.sent_lines();
    assert_eq!(sent[1..4], ["AUTH LOGIN", "dXNlcm5hbWU=", "cGFzc3dvcmQ="]);
    // The SASL lines are flagged secret, the AUTH line (no data) is not.
    let flags: Vec<bool> = run.driver.transmits.iter().map(|t| t.secret).collect();
    assert_eq!(flags[1..4], [false, true, true]);
}

#[test]
fn lang_apop_digest_matches_the_recorded_one() {
    let session = load_session("lang-apop", "session.txt");
    let run = run(&session, Mode::Stepwise, usize::MAX, None);
    assert!(
        run.driver
            .sent_lines()
            .contains(&"APOP username d99894e8445daf54c4ce781ef21331b7".to_string())
    );
    let langs = run
        .driver
        .events
        .iter()
        .filter(|e| matches!(e, ClientEvent::Language { .. }))
        .count();
    assert_eq!(langs, 6);
    assert!(run.driver.client.is_utf8());
}

#[test]
fn dovecot_stls_session_drops_and_rereads_capabilities() {
    let session = load_session("dovecot", "session-stls.txt");
    let run = run(&session, Mode::Stepwise, usize::MAX, None);
    let caps: Vec<_> = run
        .driver
        .events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Capabilities { list, .. } => Some(list.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(caps.len(), 2);
    use pop3_proto::response::Capability;
    assert!(caps[0].contains(&Capability::Stls));
    assert!(!caps[1].contains(&Capability::Stls));
    assert!(run.driver.client.is_tls());
}

/// The same bytes with every CRLF turned into a bare LF, as some old UNIX
/// servers send them.
fn lf_only(session: &Session) -> Session {
    let conv = |b: &[u8]| -> Vec<u8> {
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'\r' && b.get(i + 1) == Some(&b'\n') {
                i += 1;
                continue;
            }
            out.push(b[i]);
            i += 1;
        }
        out
    };
    let mut s = session.clone();
    s.greeting = conv(&s.greeting);
    for e in &mut s.entries {
        e.response = conv(&e.response);
    }
    s
}

#[test]
fn every_recorded_session_replays_with_bare_lf_line_ends() {
    for (profile, file) in all_sessions() {
        let session = lf_only(&load_session(&profile, &file));
        let whole = run(&session, Mode::Stepwise, usize::MAX, None);
        check(&session, &whole, Mode::Stepwise);
        let split = run(&session, Mode::Stepwise, 7, None);
        assert_eq!(
            coalesce(&split.driver.events),
            coalesce(&whole.driver.events),
            "{profile}/{file} LF only, 7-octet pieces"
        );
    }
}
