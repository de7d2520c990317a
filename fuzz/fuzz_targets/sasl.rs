#![no_main]
//! SASL on both sides.
//!
//! - `Client`: a client mechanism, run by the client machine, against
//!   arbitrary server octets. Every answer it writes is one valid SASL
//!   response line, flagged secret unless it is the `*` that cancels; each
//!   mechanism answers only with what it must (PLAIN its message, LOGIN the
//!   user then the password, CRAM-MD5 the user and the HMAC of the
//!   challenge, ...); no more answers than challenges; SCRAM never accepts
//!   a `+OK` without the server's proof, and against a server that knows
//!   the password (computed here) it answers with the right client proof
//!   and takes the right server proof, and only that.
//! - `Server`: the server machine's PLAIN, LOGIN and CRAM-MD5 exchanges
//!   against arbitrary client responses (base64 of chosen data, raw lines,
//!   cancels). The session logs in exactly when the responses it took
//!   carry the right credentials.
//! - `Pair`: each client mechanism the server supports against the server,
//!   with arbitrary user names and passwords and an arbitrary limit for
//!   initial responses: the login succeeds exactly when the credentials
//!   are the store's.

mod ready;

use std::sync::Arc;
use std::time::Duration;

use arbitrary::Arbitrary;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use libfuzzer_sys::fuzz_target;
use pop3_proto::client::sasl::{
    ClientMechanism, CramMd5, Login, OAuthBearer, Plain, Scram, XOAuth2,
};
use pop3_proto::client::{Client, ClientConfig, ClientEvent, ClientState};
use pop3_proto::command::SaslResponse;
use pop3_proto::server::{ConnectionContext, Server, ServerConfig, State};
use pop3_proto::session::Action;
use pop3_proto::store::{MemoryStore, StoreDriver};
use pop3_proto::time::Instant;
use pop3_proto::types::Secret;

use ready::ready;

#[derive(Debug, Arbitrary, Clone, Copy, PartialEq, Eq)]
enum Mech {
    Plain,
    Login,
    CramMd5,
    Scram,
    XOAuth2,
    XOAuth2TwoStep,
    OAuthBearer,
}

#[derive(Debug, Arbitrary)]
enum Line {
    /// Base64 of these octets.
    Data(Vec<u8>),
    /// The line as it is.
    Raw(Vec<u8>),
    Cancel,
    /// The right answer to the last challenge, as a client of alice would
    /// give it.
    Right,
}

#[derive(Debug, Arbitrary)]
enum ServerLine {
    /// `+ ` and the base64 of these octets.
    Challenge(Vec<u8>),
    /// Octets as they are (a `+OK`, a `-ERR`, anything).
    Raw(Vec<u8>),
    /// A SCRAM server-first message for the client's nonce, this salt and
    /// 4096 + `extra` iterations.
    ScramFirst {
        suffix: u32,
        salt: Vec<u8>,
        extra: u8,
    },
    /// The SCRAM server-final message proving the password, for the last
    /// server-first message (`tamper`: with one bit wrong).
    ScramFinal { tamper: bool },
}

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

fn hmac256(key: &[u8], data: &[&[u8]]) -> [u8; 32] {
    use hmac::Mac;
    let mut m = <HmacSha256 as Mac>::new_from_slice(key).expect("any key length");
    for d in data {
        m.update(d);
    }
    m.finalize().into_bytes().into()
}

/// The server's side of one SCRAM-SHA-256 exchange (RFC 5802 §3) for the
/// password `secret`.
struct ScramServer {
    first: String,
    /// What the client must answer to `first`.
    client_final: String,
    signature: [u8; 32],
}

fn scram_server(bare: &str, suffix: u32, salt: &[u8], iterations: u32) -> ScramServer {
    use sha2::Digest as _;
    let nonce = format!("{NONCE}{suffix}");
    let first = format!("r={nonce},s={},i={iterations}", STANDARD.encode(salt));
    let mut u = hmac256(b"secret", &[salt, &1u32.to_be_bytes()]);
    let mut salted = u;
    for _ in 1..iterations {
        u = hmac256(b"secret", &[&u]);
        salted.iter_mut().zip(u).for_each(|(s, x)| *s ^= x);
    }
    let client_key = hmac256(&salted, &[b"Client Key"]);
    let stored_key: [u8; 32] = sha2::Sha256::digest(client_key).into();
    let without_proof = format!("c=biws,r={nonce}");
    let auth_message = format!("{bare},{first},{without_proof}");
    let mut proof = hmac256(&stored_key, &[auth_message.as_bytes()]);
    proof.iter_mut().zip(client_key).for_each(|(p, k)| *p ^= k);
    let server_key = hmac256(&salted, &[b"Server Key"]);
    ScramServer {
        client_final: format!("{without_proof},p={}", STANDARD.encode(proof)),
        signature: hmac256(&server_key, &[auth_message.as_bytes()]),
        first,
    }
}

/// What the SCRAM lines of one input make the client do.
#[derive(Default)]
struct ScramPlan {
    /// The client-final messages the server-first messages call for.
    finals: Vec<String>,
    /// An untampered server-final message came after a server-first one.
    provable: bool,
    /// The input begins with a server-first and its untampered
    /// server-final message.
    happy: bool,
}

#[derive(Debug, Arbitrary)]
enum Input {
    Client {
        mech: Mech,
        user: bool,
        server: Vec<ServerLine>,
    },
    Server {
        mech: u8,
        initial: Option<Vec<u8>>,
        lines: Vec<Line>,
    },
    Pair {
        mech: u8,
        /// `None`: alice.
        user: Option<String>,
        /// `None`: her password.
        password: Option<String>,
        ir_limit: Option<u8>,
    },
}

const NONCE: &str = "fyko+d2lbbFgONRv9qkxdawL";

fn mechanism(mech: Mech, user: &str, pw: &str) -> Box<dyn ClientMechanism> {
    let pw = Secret::new(pw.to_owned());
    match mech {
        Mech::Plain => Box::new(Plain::new(user, pw)),
        Mech::Login => Box::new(Login::new(user, pw)),
        Mech::CramMd5 => Box::new(CramMd5::new(user, pw)),
        Mech::Scram => Box::new(Scram::sha256(user, pw, NONCE)),
        Mech::XOAuth2 => Box::new(XOAuth2::new(user, pw)),
        Mech::XOAuth2TwoStep => Box::new(XOAuth2::new(user, pw).two_step()),
        Mech::OAuthBearer => Box::new(OAuthBearer::new(user, pw)),
    }
}

fn crlf_lines(b: &[u8]) -> impl Iterator<Item = &[u8]> {
    b.split_inclusive(|&c| c == b'\n')
}

/// A line the client machine takes for a SASL challenge: `+`, `+ ...`,
/// or `+` followed by anything but `OK`.
fn is_challenge(line: &[u8]) -> bool {
    let l = line.strip_suffix(b"\n").unwrap_or(line);
    let l = l.strip_suffix(b"\r").unwrap_or(l);
    match l {
        [b'+'] | [b'+', b' ', ..] => true,
        [b'+', a, b, ..] => !(a.eq_ignore_ascii_case(&b'O') && b.eq_ignore_ascii_case(&b'K')),
        _ => false,
    }
}

fn user_of(alt_user: bool) -> &'static str {
    if alt_user { "u,s=er" } else { "alice" }
}

fn client_side(mech: Mech, alt_user: bool, server: &[u8], plan: &ScramPlan) {
    let user = user_of(alt_user);
    let now = Instant::ZERO;
    let mut config = ClientConfig::default();
    config.insecure_cleartext_login = true;
    let mut client = Client::new(config, now);
    let auth = client.auth(mechanism(mech, user, "secret")).unwrap();
    let _ = client.stat();
    let mut input = b"+OK ready <1.2@example>\r\n".to_vec();
    input.extend_from_slice(server);
    let mut sent: Vec<(Vec<u8>, bool)> = Vec::new();
    let mut events = Vec::new();
    let mut rest = &input[..];
    let mut closed = false;
    for _ in 0..100_000 {
        while let Some(a) = client.poll_action() {
            match a {
                Action::Send(t) => sent.push((t.bytes.to_vec(), t.secret)),
                Action::Event(ClientEvent::SaslWork { work, .. }) => {
                    // Slow SASL work runs inline, as in a blocking client.
                    assert!(client.sasl_work_done(now, work.run()));
                }
                Action::Event(e) => events.push(e),
                Action::Close => closed = true,
                _ => {}
            }
        }
        if closed || rest.is_empty() {
            break;
        }
        let n = client.handle_input(now, rest);
        rest = &rest[n..];
    }
    if !closed {
        client.handle_eof(now);
        while let Some(a) = client.poll_action() {
            match a {
                Action::Send(t) => sent.push((t.bytes.to_vec(), t.secret)),
                Action::Event(ClientEvent::SaslWork { work, .. }) => {
                    // Slow SASL work runs inline, as in a blocking client.
                    assert!(client.sasl_work_done(now, work.run()));
                }
                Action::Event(e) => events.push(e),
                _ => {}
            }
        }
    }
    assert_eq!(client.state(), ClientState::Closed);
    let auth_line = &sent[0].0;
    assert!(auth_line.starts_with(b"AUTH "), "{auth_line:?}");
    // The answers: every line written after AUTH and before the reply.
    let answers: Vec<&(Vec<u8>, bool)> = sent[1..]
        .iter()
        .take_while(|(l, _)| !l.starts_with(b"STAT"))
        .collect();
    let challenges = crlf_lines(server).filter(|l| is_challenge(l)).count();
    assert!(
        answers.len() <= challenges,
        "{} answers to {challenges} challenges",
        answers.len()
    );
    let mut datas = Vec::new();
    for (line, secret) in &answers {
        assert!(line.ends_with(b"\r\n"), "{line:?}");
        let body = &line[..line.len() - 2];
        match SaslResponse::parse(body) {
            Ok(SaslResponse::Cancel) => assert!(!secret, "a cancel flagged secret"),
            Ok(SaslResponse::Data(d)) => {
                assert!(secret, "SASL data not flagged secret");
                datas.push(d.expose().to_vec());
            }
            other => panic!("an invalid SASL response {line:?}: {other:?}"),
        }
    }
    if std::env::var_os("POP3_FUZZ_SHOW").is_some() {
        eprintln!("client {mech:?}: answers {datas:?}");
    }
    let ir = auth_line.split(|&b| b == b' ').nth(2).map(|b| {
        let b = b.strip_suffix(b"\r\n").unwrap_or(b);
        if b == b"=" {
            Vec::new()
        } else {
            STANDARD.decode(b).expect("initial response in base64")
        }
    });
    match mech {
        Mech::Plain => {
            let msg = [b"\0", user.as_bytes(), b"\0secret"].concat();
            assert_eq!(ir.as_deref(), Some(&msg[..]));
            assert!(datas.iter().all(|d| *d == msg), "PLAIN answered {datas:?}");
        }
        Mech::Login => {
            assert_eq!(ir, None);
            let want = [user.as_bytes().to_vec(), b"secret".to_vec()];
            assert!(
                datas.len() <= 2 && datas[..] == want[..datas.len()],
                "LOGIN answered {datas:?}"
            );
        }
        Mech::CramMd5 => {
            assert!(datas.len() <= 1);
            for d in &datas {
                let (u, hex) = d.split_at(d.len() - 33);
                assert_eq!(u, user.as_bytes());
                assert_eq!(hex[0], b' ');
                assert!(
                    hex[1..]
                        .iter()
                        .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
                );
            }
        }
        Mech::Scram => {
            let ok = events
                .iter()
                .any(|e| matches!(e, ClientEvent::Ok { id, .. } if *id == auth));
            assert!(
                !ok || plan.provable,
                "SCRAM accepted a +OK without the server's proof"
            );
            assert!(datas.len() <= 2);
            for d in &datas {
                assert!(
                    d.is_empty() || plan.finals.iter().any(|f| f.as_bytes() == &d[..]),
                    "SCRAM answered {:?}",
                    String::from_utf8_lossy(d)
                );
            }
            if datas.iter().any(|d| d.is_empty()) {
                assert!(plan.provable, "SCRAM took a forged server proof");
            }
            if plan.happy {
                assert_eq!(datas.len(), 2, "SCRAM refused a good exchange: {datas:?}");
                assert!(datas[1].is_empty());
            }
        }
        Mech::XOAuth2 | Mech::XOAuth2TwoStep | Mech::OAuthBearer => {
            assert!(datas.len() <= challenges);
        }
    }
}

fn server_config(store: &MemoryStore) -> ServerConfig {
    ServerConfig::for_store(store)
        .allow_plaintext_auth(true)
        .auth_failure_delay(Duration::ZERO)
        .max_bad_commands(0, 0)
}

/// Runs the server on `input`; returns its output and whether it reached
/// TRANSACTION (and as whom).
fn serve(input: &[u8], store: &MemoryStore) -> (Vec<u8>, Option<String>) {
    let now = Instant::from_millis(5_000);
    let mut server = Server::new(
        Arc::new(server_config(store)),
        now,
        ConnectionContext::new(17, false, false),
    );
    let mut driver = StoreDriver::new(Arc::new(store.clone()));
    let mut out = Vec::new();
    let mut user = None;
    let mut rest = input;
    let mut eof = false;
    loop {
        while let Some(a) = server.poll_action() {
            match a {
                Action::Send(t) => out.extend_from_slice(&t.bytes),
                Action::Event(req) => {
                    let reply = ready(driver.execute(req));
                    server.handle_store(now, reply);
                    if server.state() == State::Transaction && user.is_none() {
                        user = server.user().map(|u| u.as_str().to_owned());
                    }
                }
                _ => {}
            }
        }
        if server.is_closed() {
            break;
        }
        if !rest.is_empty() && server.wants_input() {
            let n = server.handle_input(now, rest);
            rest = &rest[n..];
            if n > 0 {
                continue;
            }
        }
        if eof {
            break;
        }
        eof = true;
        server.handle_eof(now);
    }
    (out, user)
}

fn server_side(mech: u8, initial: Option<Vec<u8>>, lines: &[Line]) {
    let store = MemoryStore::new();
    store.add_user("alice", "secret");
    store.add_message("alice", "Subject: x\r\n\r\nbody\r\n");
    let name = ["PLAIN", "LOGIN", "CRAM-MD5"][usize::from(mech % 3)];
    // The client octets: AUTH, then one line per answer. `Right` lines
    // need the server's challenge, so the input is built in rounds.
    let mut input = format!("AUTH {name}").into_bytes();
    if let Some(ir) = &initial {
        input.push(b' ');
        if ir.is_empty() {
            input.push(b'=');
        } else {
            input.extend_from_slice(STANDARD.encode(ir).as_bytes());
        }
    }
    input.extend_from_slice(b"\r\n");
    let mut sent_lines: Vec<Vec<u8>> = Vec::new();
    for line in lines.iter().take(8) {
        let (out, _) = serve(&input, &store);
        let last_challenge = crlf_lines(&out)
            .filter(|l| l.starts_with(b"+ "))
            .last()
            .map(|l| {
                STANDARD
                    .decode(l[2..].strip_suffix(b"\r\n").unwrap())
                    .unwrap()
            })
            .unwrap_or_default();
        let raw = match line {
            Line::Data(d) => {
                if d.is_empty() {
                    b"=".to_vec()
                } else {
                    STANDARD.encode(d).into_bytes()
                }
            }
            Line::Raw(r) => r.iter().copied().filter(|&b| b != b'\n').collect(),
            Line::Cancel => b"*".to_vec(),
            Line::Right => {
                let answer = match name {
                    "PLAIN" => b"\0alice\0secret".to_vec(),
                    "LOGIN" if last_challenge == b"Username:" => b"alice".to_vec(),
                    "LOGIN" => b"secret".to_vec(),
                    _ => CramMd5::new("alice", Secret::new("secret"))
                        .step(&last_challenge)
                        .map(|s| s.expose().to_vec())
                        .unwrap_or_default(),
                };
                STANDARD.encode(answer).into_bytes()
            }
        };
        input.extend_from_slice(&raw);
        input.extend_from_slice(b"\r\n");
        sent_lines.push(raw);
    }
    input.extend_from_slice(b"QUIT\r\n");
    let (out, user) = serve(&input, &store);
    // The exchange as the server's replies tell it: the first line answers
    // AUTH; each "+ " challenge took the next client line.
    let mut taken: Vec<Vec<u8>> = Vec::new();
    let mut challenges: Vec<Vec<u8>> = Vec::new();
    let mut result: Option<&[u8]> = None;
    let mut next = 0;
    for l in crlf_lines(&out).skip(1) {
        if let Some(c) = l.strip_prefix(b"+ ") {
            challenges.push(
                STANDARD
                    .decode(c.strip_suffix(b"\r\n").unwrap())
                    .expect("a base64 challenge"),
            );
            let Some(line) = sent_lines.get(next) else {
                break;
            };
            taken.push(line.clone());
            next += 1;
        } else {
            result = Some(l);
            break;
        }
    }
    let decode = |l: &[u8]| -> Option<Vec<u8>> {
        if l == b"=" {
            Some(Vec::new())
        } else {
            STANDARD.decode(l).ok()
        }
    };
    let right = match name {
        "PLAIN" => {
            let data = match (&initial, taken.first()) {
                (Some(ir), _) => Some(ir.clone()),
                (None, Some(l)) => decode(l),
                (None, None) => None,
            };
            data.is_some_and(|d| {
                let parts: Vec<&[u8]> = d.split(|&b| b == 0).collect();
                parts.len() == 3
                    && (parts[0].is_empty() || parts[0] == parts[1])
                    && parts[1] == b"alice"
                    && parts[2] == b"secret"
            })
        }
        "LOGIN" => {
            let mut answers: Vec<Option<Vec<u8>>> = Vec::new();
            if let Some(ir) = &initial {
                answers.push(Some(ir.clone()));
            }
            answers.extend(taken.iter().map(|l| decode(l)));
            answers.len() == 2
                && answers[0].as_deref() == Some(b"alice")
                && answers[1].as_deref() == Some(b"secret")
        }
        _ => {
            initial.is_none()
                && challenges.len() == 1
                && taken.len() == 1
                && decode(&taken[0]).is_some_and(|d| {
                    let want = CramMd5::new("alice", Secret::new("secret"))
                        .step(&challenges[0])
                        .unwrap();
                    let want = want.expose();
                    d.len() == want.len()
                        && d[..d.len() - 32] == want[..want.len() - 32]
                        && d[d.len() - 32..].eq_ignore_ascii_case(&want[want.len() - 32..])
                })
        }
    };
    let result = result.unwrap_or_default();
    if std::env::var_os("POP3_FUZZ_SHOW").is_some() {
        eprintln!("server {name}: logged in {user:?}");
    }
    assert_eq!(
        user.is_some(),
        right,
        "{name}: logged in {user:?}, the credentials right: {right}; reply {:?}",
        String::from_utf8_lossy(result)
    );
    if right {
        assert!(result.starts_with(b"+OK Logged in"));
    }
}

fn pair(mech: u8, user: &str, password: &str, ir_limit: Option<u8>) {
    let store = MemoryStore::new();
    store.add_user("alice", "secret");
    let mech = [Mech::Plain, Mech::Login, Mech::CramMd5][usize::from(mech % 3)];
    let mut config = ClientConfig::default();
    // An in-memory link: PLAIN and LOGIN are allowed without TLS.
    config.insecure_cleartext_login = true;
    if let Some(l) = ir_limit {
        config.initial_response_limit = usize::from(l);
    }
    let now = Instant::from_millis(1_000);
    let mut client = Client::new(config, now);
    let Ok(auth) = client.auth(mechanism(mech, user, password)) else {
        return;
    };
    let mut server = Server::new(
        Arc::new(server_config(&store)),
        now,
        ConnectionContext::new(3, false, false),
    );
    let mut driver = StoreDriver::new(Arc::new(store.clone()));
    let (mut c2s, mut s2c) = (Vec::new(), Vec::new());
    let mut events = Vec::new();
    let mut closed = (false, false);
    for _ in 0..10_000 {
        let mut moved = false;
        while let Some(a) = client.poll_action() {
            moved = true;
            match a {
                Action::Send(t) => c2s.extend_from_slice(&t.bytes),
                Action::Event(ClientEvent::SaslWork { work, .. }) => {
                    // Slow SASL work runs inline, as in a blocking client.
                    assert!(client.sasl_work_done(now, work.run()));
                }
                Action::Event(e) => events.push(e),
                Action::Close => closed.0 = true,
                _ => {}
            }
        }
        while let Some(a) = server.poll_action() {
            moved = true;
            match a {
                Action::Send(t) => s2c.extend_from_slice(&t.bytes),
                Action::Event(req) => {
                    let reply = ready(driver.execute(req));
                    server.handle_store(now, reply);
                }
                Action::Close => closed.1 = true,
                _ => {}
            }
        }
        if !c2s.is_empty() && server.wants_input() {
            let n = server.handle_input(now, &c2s);
            c2s.drain(..n);
            moved |= n > 0;
        }
        if !s2c.is_empty() && !closed.0 {
            let n = client.handle_input(now, &s2c);
            s2c.drain(..n);
            moved |= n > 0;
        }
        if !moved {
            break;
        }
    }
    let answer = events.iter().find(|e| e.request_id() == Some(auth));
    if std::env::var_os("POP3_FUZZ_SHOW").is_some() {
        eprintln!("pair {mech:?} {user:?}: {answer:?}");
    }
    // Only the store's user with its password gets in.
    let right = user == "alice" && password == "secret";
    let ok = matches!(answer, Some(ClientEvent::Ok { .. }));
    if ok {
        assert!(right, "{mech:?} logged in {user:?} with {password:?}");
        assert_eq!(server.user().map(|u| u.as_str()), Some(user));
    } else if right {
        panic!("{mech:?}: {user:?} with the right password got {answer:?}");
    }
    assert!(answer.is_some(), "AUTH got no answer");
}

fuzz_target!(|input: Input| {
    match input {
        Input::Client { mech, user, server } => {
            let mut bare = String::from("n=");
            for c in user_of(user).chars() {
                match c {
                    ',' => bare.push_str("=2C"),
                    '=' => bare.push_str("=3D"),
                    c => bare.push(c),
                }
            }
            bare.push_str(",r=");
            bare.push_str(NONCE);
            let mut plan = ScramPlan::default();
            let mut last: Option<ScramServer> = None;
            let mut octets = Vec::new();
            for (i, line) in server.iter().take(16).enumerate() {
                match line {
                    ServerLine::ScramFirst {
                        suffix,
                        salt,
                        extra,
                    } => {
                        let sv = scram_server(&bare, *suffix, salt, 4096 + u32::from(*extra));
                        octets.extend_from_slice(b"+ ");
                        octets.extend_from_slice(STANDARD.encode(&sv.first).as_bytes());
                        octets.extend_from_slice(b"\r\n");
                        plan.finals.push(sv.client_final.clone());
                        last = Some(sv);
                    }
                    ServerLine::ScramFinal { tamper } => {
                        let mut sig = last.as_ref().map_or([0; 32], |sv| sv.signature);
                        if *tamper || last.is_none() {
                            sig[0] ^= 1;
                        } else {
                            plan.provable = true;
                            plan.happy |=
                                i == 1 && matches!(server[0], ServerLine::ScramFirst { .. });
                        }
                        let v = format!("v={}", STANDARD.encode(sig));
                        octets.extend_from_slice(b"+ ");
                        octets.extend_from_slice(STANDARD.encode(v).as_bytes());
                        octets.extend_from_slice(b"\r\n");
                    }
                    ServerLine::Challenge(c) => {
                        octets.extend_from_slice(b"+ ");
                        octets.extend_from_slice(STANDARD.encode(c).as_bytes());
                        octets.extend_from_slice(b"\r\n");
                    }
                    ServerLine::Raw(r) => octets.extend_from_slice(r),
                }
            }
            plan.happy &= mech == Mech::Scram;
            if octets.len() <= 8192 {
                client_side(mech, user, &octets, &plan);
            }
        }
        Input::Server {
            mech,
            initial,
            lines,
        } => server_side(mech, initial, &lines),
        Input::Pair {
            mech,
            user,
            password,
            ir_limit,
        } => {
            let user = user.unwrap_or_else(|| String::from("alice"));
            let password = password.unwrap_or_else(|| String::from("secret"));
            if user.len() <= 300 && password.len() <= 300 {
                pair(mech, &user, &password, ir_limit);
            }
        }
    }
});
