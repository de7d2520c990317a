//! The tokio client against a private Dovecot on loopback: every way in
//! (plain, STLS, implicit TLS, APOP, SASL), the awkward maildrop compared
//! byte for byte with what Python's poplib gets, pipelined batches, and
//! deletion semantics.

mod support;

use std::net::SocketAddr;

use pop3_proto::client::sasl::{BoxedMechanism, CramMd5, Login, Plain, Scram};
use pop3_proto::response::{Capability, CodeKind};
use pop3_proto::types::{MessageNumber, Secret};
use pop3_tokio::client::{ConnectOptions, Error, Pop3Client, Security, TlsVerification, msg};
use support::dovecot::{Dovecot, list_size, retr_form};
use support::poplib::{self, FetchOptions};
use support::{assert_bytes_eq, awkward, top_of};
use tokio::io::AsyncReadExt;

const USER: &str = "alice";
const PASSWORD: &str = "secret";

fn options(security: Security, dovecot: &Dovecot) -> ConnectOptions {
    let mut o = ConnectOptions::new(security);
    // Loopback Dovecot: the plain tests log in without TLS.
    o.session.insecure_cleartext_login = true;
    o.verification = TlsVerification::ca_file(dovecot.ca_pem_path()).expect("CA file");
    o
}

async fn connect(addr: SocketAddr, security: Security, dovecot: &Dovecot) -> Pop3Client {
    Pop3Client::connect(
        &addr.ip().to_string(),
        addr.port(),
        options(security, dovecot),
    )
    .await
    .expect("connect")
}

fn all(n: usize) -> Vec<MessageNumber> {
    (1..=n as u32).filter_map(msg).collect()
}

async fn read_body(mut body: pop3_tokio::client::Body<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    body.read_to_end(&mut out).await.expect("read body");
    assert!(body.is_complete());
    out
}

#[tokio::test]
async fn plain_login_greeting_and_capabilities_before_and_after() {
    let messages = awkward::small();
    let dovecot = Dovecot::start(&[(USER, PASSWORD, &messages)]);
    let mut client = connect(dovecot.pop3_addr(), Security::Plain, &dovecot).await;

    let greeting = client.greeting().expect("greeting").clone();
    assert!(
        greeting.line.text.as_bytes().starts_with(b"Dovecot"),
        "{greeting:?}"
    );
    let stamp = greeting.timestamp.expect("APOP timestamp");
    assert!(stamp.as_str().contains('@'));
    assert!(!client.is_tls());

    let before = client.capabilities().expect("CAPA before login").to_vec();
    for cap in [
        Capability::Top,
        Capability::Uidl,
        Capability::RespCodes,
        Capability::Pipelining,
        Capability::AuthRespCode,
        Capability::Stls,
        Capability::User,
    ] {
        assert!(before.contains(&cap), "{cap:?} missing in {before:?}");
    }
    assert!(
        before
            .iter()
            .any(|c| matches!(c, Capability::Sasl(m) if !m.is_empty()))
    );
    assert!(client.is_pipelining());

    client.login(USER, PASSWORD).await.expect("login");
    let after = client.capabilities().expect("CAPA after login").to_vec();
    assert!(after.contains(&Capability::Pipelining) && after.contains(&Capability::Uidl));
    assert!(!after.contains(&Capability::User), "{after:?}");
    assert!(!after.contains(&Capability::Stls), "{after:?}");
    assert!(!after.iter().any(|c| matches!(c, Capability::Sasl(_))));
    // The explicit command gives the same list.
    assert_eq!(client.capa().await.unwrap(), after);

    let stat = client.stat().await.unwrap();
    assert_eq!(stat.count as usize, messages.len());
    let sizes: Vec<u64> = client
        .list()
        .await
        .unwrap()
        .iter()
        .map(|s| s.size)
        .collect();
    let want: Vec<u64> = messages.iter().map(|(_, m)| list_size(m)).collect();
    assert_eq!(sizes, want);
    assert_eq!(stat.size, want.iter().sum::<u64>());
    let uids: Vec<String> = client
        .uidl()
        .await
        .unwrap()
        .iter()
        .map(|u| u.uid.as_str().to_owned())
        .collect();
    assert_eq!(uids, dovecot.uidls(USER));
    let one = client.uidl_one(msg(2).unwrap()).await.unwrap();
    assert_eq!(one.uid.as_str(), uids[1]);
    let one = client.list_one(msg(3).unwrap()).await.unwrap();
    assert_eq!(one.size, want[2]);
    client.noop().await.unwrap();
    client.rset().await.unwrap();

    // A message that does not exist: -ERR, and the session goes on.
    let err = client.list_one(msg(999).unwrap()).await.unwrap_err();
    assert!(matches!(err, Error::Server(_)), "{err:?}");
    assert!(!err.is_transient());
    client.noop().await.unwrap();
    client.quit().await.unwrap();
    assert!(matches!(client.noop().await, Err(Error::Closed)));
}

#[tokio::test]
async fn stls_upgrades_in_place_and_verifies_ip_and_name() {
    let messages = awkward::small();
    let dovecot = Dovecot::start(&[(USER, PASSWORD, &messages)]);

    // By IP address: checked against the certificate's IP SANs.
    let mut client = connect(dovecot.pop3_addr(), Security::StartTls, &dovecot).await;
    assert!(client.is_tls());
    let caps = client.capabilities().expect("CAPA after STLS");
    assert!(!caps.contains(&Capability::Stls), "{caps:?}");
    assert!(caps.contains(&Capability::User));
    client.login(USER, PASSWORD).await.unwrap();
    assert_eq!(client.stat().await.unwrap().count as usize, messages.len());
    client.quit().await.unwrap();

    // By DNS name, with the STLS issued by hand.
    let mut o = options(Security::Plain, &dovecot);
    o.tls_name = Some("localhost".into());
    let addr = dovecot.pop3_addr();
    let mut client = Pop3Client::connect("127.0.0.1", addr.port(), o)
        .await
        .unwrap();
    assert!(!client.is_tls());
    client.stls().await.unwrap();
    assert!(client.is_tls());
    let err = client.stls().await.unwrap_err();
    assert!(matches!(err, Error::Command(_)), "{err:?}");
    client.login(USER, PASSWORD).await.unwrap();
    client.quit().await.unwrap();

    // A name the certificate does not carry is refused.
    let mut o = options(Security::StartTls, &dovecot);
    o.tls_name = Some("pop.example.org".into());
    let err = Pop3Client::connect("127.0.0.1", addr.port(), o)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Tls(_)), "{err:?}");
}

#[tokio::test]
async fn implicit_tls_verified_against_the_private_ca() {
    let messages = awkward::small();
    let dovecot = Dovecot::start(&[(USER, PASSWORD, &messages)]);
    let addr = dovecot.pop3s_addr();

    let mut client = connect(addr, Security::ImplicitTls, &dovecot).await;
    assert!(client.is_tls());
    let caps = client.capabilities().unwrap();
    assert!(!caps.contains(&Capability::Stls));
    client.login(USER, PASSWORD).await.unwrap();
    let body = read_body(client.retr(msg(1).unwrap()).await.unwrap()).await;
    assert_bytes_eq("RETR 1 over POP3S", &body, &retr_form(&messages[0].1));
    client.quit().await.unwrap();

    // "localhost" resolves and verifies by name.
    let client = Pop3Client::connect(
        "localhost",
        addr.port(),
        options(Security::ImplicitTls, &dovecot),
    )
    .await;
    // localhost may resolve to ::1 only where Dovecot also listens there.
    if let Err(e) = &client {
        assert!(!matches!(e, Error::Tls(_)), "{e:?}");
    }

    // The bundled roots do not know the private CA.
    let o = ConnectOptions::new(Security::ImplicitTls);
    let err = Pop3Client::connect("127.0.0.1", addr.port(), o)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Tls(_)), "{err:?}");
    assert!(!err.is_transient());

    // Unless verification is turned off, explicitly.
    let mut o = ConnectOptions::new(Security::ImplicitTls);
    o.verification = TlsVerification::DangerouslyAcceptAnyCertificate;
    let mut client = Pop3Client::connect("127.0.0.1", addr.port(), o)
        .await
        .unwrap();
    client.login(USER, PASSWORD).await.unwrap();
    client.quit().await.unwrap();
}

#[tokio::test]
async fn apop_and_sasl_logins() {
    let messages = awkward::small();
    let dovecot = Dovecot::start(&[(USER, PASSWORD, &messages)]);

    let mut client = connect(dovecot.pop3_addr(), Security::Plain, &dovecot).await;
    client.apop(USER, PASSWORD).await.expect("APOP");
    assert_eq!(client.stat().await.unwrap().count as usize, messages.len());
    client.quit().await.unwrap();

    let mut client = connect(dovecot.pop3_addr(), Security::StartTls, &dovecot).await;
    client
        .auth(Box::new(Plain::new(USER, Secret::new(PASSWORD))))
        .await
        .expect("AUTH PLAIN");
    client.stat().await.unwrap();
    client.quit().await.unwrap();

    let mut client = connect(dovecot.pop3s_addr(), Security::ImplicitTls, &dovecot).await;
    client
        .auth(Box::new(Login::new(USER, Secret::new(PASSWORD))))
        .await
        .expect("AUTH LOGIN");
    client.stat().await.unwrap();
    client.quit().await.unwrap();
}

fn mechanism(name: &str, password: &str) -> BoxedMechanism {
    let pw = || Secret::new(password.to_owned());
    let nonce = pop3_blocking::tls::random_token(24).expect("randomness");
    match name {
        "PLAIN" => Box::new(Plain::new(USER, pw())),
        "LOGIN" => Box::new(Login::new(USER, pw())),
        "CRAM-MD5" => Box::new(CramMd5::new(USER, pw())),
        "SCRAM-SHA-1" => Box::new(Scram::sha1(USER, pw(), &nonce)),
        "SCRAM-SHA-256" => Box::new(Scram::sha256(USER, pw(), &nonce)),
        other => panic!("no mechanism {other}"),
    }
}

#[tokio::test]
async fn every_sasl_mechanism_over_stls_and_implicit_tls() {
    let messages = awkward::small();
    let dovecot = Dovecot::start(&[(USER, PASSWORD, &messages)]);
    for name in ["PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256"] {
        for (addr, security) in [
            (dovecot.pop3_addr(), Security::StartTls),
            (dovecot.pop3s_addr(), Security::ImplicitTls),
        ] {
            let mut client = connect(addr, security, &dovecot).await;
            client
                .auth(mechanism(name, PASSWORD))
                .await
                .unwrap_or_else(|e| panic!("AUTH {name} over {security:?}: {e}"));
            assert_eq!(client.stat().await.unwrap().count as usize, messages.len());
            client.quit().await.unwrap();
        }
    }
    let log = dovecot.log();
    for name in ["PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256"] {
        assert!(log.contains(&format!("method={name},")), "{name}:\n{log}");
    }
}

#[tokio::test]
async fn login_picks_scram_sha_256_and_a_wrong_scram_password_is_an_auth_error() {
    let messages = awkward::small();
    let dovecot = Dovecot::start(&[(USER, PASSWORD, &messages)]);
    // Without TLS: the strongest mechanism Dovecot offers.
    let mut client = connect(dovecot.pop3_addr(), Security::Plain, &dovecot).await;
    client.login(USER, PASSWORD).await.expect("login");
    client.quit().await.unwrap();
    assert!(
        dovecot.log().contains("method=SCRAM-SHA-256,"),
        "{}",
        dovecot.log()
    );
    for name in ["SCRAM-SHA-1", "SCRAM-SHA-256"] {
        let mut client = connect(dovecot.pop3s_addr(), Security::ImplicitTls, &dovecot).await;
        let err = client.auth(mechanism(name, "wrong")).await.unwrap_err();
        let server = err.server_error().expect("a -ERR");
        assert_eq!(server.kind(), Some(CodeKind::Auth), "{name}: {server}");
        client.quit().await.unwrap();
    }
}

#[tokio::test]
async fn wrong_password_is_a_permanent_server_error() {
    let dovecot = Dovecot::start(&[(USER, PASSWORD, &[])]);
    let mut client = connect(dovecot.pop3_addr(), Security::Plain, &dovecot).await;
    let err = client.login(USER, "wrong").await.unwrap_err();
    let server = err.server_error().expect("a -ERR");
    assert_eq!(server.kind(), Some(CodeKind::Auth), "{server}");
    assert!(!err.is_transient());
    // Still in AUTHORIZATION: a command of TRANSACTION is refused locally.
    assert!(matches!(client.stat().await, Err(Error::Command(_))));
    client.quit().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awkward_maildrop_by_retr_and_top_equals_poplib() {
    const TOP: usize = 3;
    let messages = awkward::maildrop();
    let dovecot = Dovecot::start(&[(USER, PASSWORD, &messages)]);
    let addr = dovecot.pop3_addr();
    let reference = support::blocking(move || {
        poplib::fetch(
            addr,
            USER,
            PASSWORD,
            &FetchOptions {
                top: Some(TOP as u32),
                ..FetchOptions::default()
            },
        )
    })
    .await;
    assert_eq!(reference.retr.len(), messages.len());

    for pipelining in [true, false] {
        let mut o = options(Security::Plain, &dovecot);
        o.session.pipelining = pipelining;
        let mut client = Pop3Client::connect("127.0.0.1", addr.port(), o)
            .await
            .unwrap();
        client.login(USER, PASSWORD).await.unwrap();
        assert_eq!(client.is_pipelining(), pipelining);

        // RETR, pipelined in one batch.
        let mut got = Vec::new();
        let mut batch = client.retr_many(all(messages.len())).unwrap();
        while let Some((n, body)) = batch.next().await {
            assert_eq!(n.index(), got.len());
            got.push(read_body(body.unwrap()).await);
        }
        drop(batch);
        for (i, (name, stored)) in messages.iter().enumerate() {
            assert_bytes_eq(&format!("RETR of {name}"), &got[i], &reference.retr[i]);
            assert_bytes_eq(
                &format!("RETR of {name} (stored)"),
                &got[i],
                &retr_form(stored),
            );
        }

        // TOP n, one at a time, read chunk by chunk.
        for (i, (name, _)) in messages.iter().enumerate() {
            let mut body = client
                .top(msg(i as u32 + 1).unwrap(), TOP as u64)
                .await
                .unwrap();
            let mut top = Vec::new();
            while let Some(chunk) = body.next_chunk().await.unwrap() {
                top.extend_from_slice(&chunk);
            }
            assert_bytes_eq(&format!("TOP {TOP} of {name}"), &top, &reference.top[i]);
            assert_bytes_eq(
                &format!("TOP {TOP} of {name} (stored)"),
                &top,
                &top_of(&reference.retr[i], TOP),
            );
        }
        client.quit().await.unwrap();
    }
}

#[tokio::test]
async fn dele_then_quit_removes_dele_then_drop_does_not() {
    let messages = awkward::small();
    let dovecot = Dovecot::start(&[(USER, PASSWORD, &messages)]);
    let names = dovecot.uidls(USER);
    let before = dovecot.stored(USER);
    assert_eq!(before.len(), messages.len());

    // DELE, then the connection drops: nothing is removed.
    let mut client = connect(dovecot.pop3_addr(), Security::Plain, &dovecot).await;
    client.login(USER, PASSWORD).await.unwrap();
    let results = client.dele_many(all(3)).await.unwrap();
    assert!(results.iter().all(|(_, r)| r.is_ok()), "{results:?}");
    // Marked messages are gone for this session.
    assert!(matches!(
        client.list_one(msg(1).unwrap()).await,
        Err(Error::Server(_))
    ));
    let ended = || dovecot.log().matches("Disconnected").count();
    let ended_before = ended();
    drop(client);
    // Dovecot notices the disconnect asynchronously: wait until its log
    // says the session ended, so that a late expunge would be seen.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while ended() == ended_before {
        assert!(
            std::time::Instant::now() < deadline,
            "Dovecot never logged the end of the session:\n{}",
            dovecot.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(dovecot.stored(USER), before);

    // DELE and RSET: nothing either.
    let mut client = connect(dovecot.pop3_addr(), Security::Plain, &dovecot).await;
    client.login(USER, PASSWORD).await.unwrap();
    client.dele(msg(4).unwrap()).await.unwrap();
    client.rset().await.unwrap();
    client.quit().await.unwrap();
    assert_eq!(dovecot.stored(USER), before);

    // Pipelined DELE of 1..3 and of a missing message, then QUIT: removed.
    let mut client = connect(dovecot.pop3_addr(), Security::Plain, &dovecot).await;
    client.login(USER, PASSWORD).await.unwrap();
    let mut wanted = all(3);
    wanted.push(msg(999).unwrap());
    let results = client.dele_many(wanted).await.unwrap();
    assert!(results[..3].iter().all(|(_, r)| r.is_ok()));
    assert!(results[3].1.is_err());
    client.quit().await.unwrap();
    let after = dovecot.stored(USER);
    assert_eq!(after.len(), messages.len() - 3);
    for name in &names[..3] {
        assert!(
            !after.iter().any(|f| f.starts_with(name.as_str())),
            "{name} kept"
        );
    }
    for name in &names[3..] {
        assert!(
            after.iter().any(|f| f.starts_with(name.as_str())),
            "{name} lost"
        );
    }
}

#[tokio::test]
async fn a_dropped_body_reader_is_drained_by_the_next_call() {
    let messages = awkward::maildrop();
    let dovecot = Dovecot::start(&[(USER, PASSWORD, &messages)]);
    let big = messages
        .iter()
        .position(|(n, _)| n == "big-attachment")
        .unwrap();
    let mut client = connect(dovecot.pop3_addr(), Security::Plain, &dovecot).await;
    client.login(USER, PASSWORD).await.unwrap();

    let mut body = client.retr(msg(big as u32 + 1).unwrap()).await.unwrap();
    let first = body.next_chunk().await.unwrap().unwrap();
    assert!(!first.is_empty());
    drop(body);
    client.noop().await.expect("session still usable");
    let body = read_body(client.retr(msg(1).unwrap()).await.unwrap()).await;
    assert_bytes_eq(
        "RETR 1 after a dropped reader",
        &body,
        &retr_form(&messages[0].1),
    );

    // A batch dropped after its first message: the rest is skipped too.
    let mut batch = client.retr_many(all(messages.len())).unwrap();
    let (_, first) = batch.next().await.unwrap();
    drop(first.unwrap());
    drop(batch);
    let stat = client.stat().await.unwrap();
    assert_eq!(stat.count as usize, messages.len());
    let body = read_body(client.retr(msg(2).unwrap()).await.unwrap()).await;
    assert_bytes_eq(
        "RETR 2 after a dropped batch",
        &body,
        &retr_form(&messages[1].1),
    );
    client.quit().await.unwrap();
}

#[tokio::test]
async fn ipv6_loopback() {
    let dovecot = Dovecot::start(&[(USER, PASSWORD, &awkward::small())]);
    let addr = dovecot
        .pop3s_addr_v6()
        .expect("this test needs IPv6 on the loopback interface (::1)");
    let mut client = Pop3Client::connect(
        "[::1]",
        addr.port(),
        options(Security::ImplicitTls, &dovecot),
    )
    .await
    .expect("connect over IPv6, certificate checked against the ::1 SAN");
    client.login(USER, PASSWORD).await.unwrap();
    client.quit().await.unwrap();
}
