//! The tokio client against this crate's own tokio server (memory store):
//! plain, STLS and implicit TLS under a private CA made here, every
//! command, pipelined batches, large bodies with dot lines, deletion, and the
//! fetch library into a Maildir.

use std::net::SocketAddr;
use std::sync::Arc;

use pop3_proto::client::sasl::Plain;
use pop3_proto::command::LangRequest;
use pop3_proto::response::Capability;
use pop3_proto::server::ServerConfig;
use pop3_proto::store::MemoryStore;
use pop3_proto::types::{MessageNumber, Secret};
use pop3_tokio::client::{ConnectOptions, Error, Pop3Client, Security, TlsVerification, msg};
use pop3_tokio::fetch::{self, FetchOptions, MaildirSink};
use pop3_tokio::server::{Pop3Server, ServerOptions};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

struct Pki {
    server: Arc<rustls::ServerConfig>,
    roots: Arc<RootCertStore>,
}

/// A private CA and a leaf for localhost and 127.0.0.1 signed by it.
fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf_params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let chain = vec![CertificateDer::from(leaf.der().to_vec())];
    let server = pop3_tokio::tls::server_config(chain, key).unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(ca.der().to_vec())).unwrap();
    Pki {
        server,
        roots: Arc::new(roots),
    }
}

struct Running {
    store: Arc<MemoryStore>,
    plain: SocketAddr,
    tls: SocketAddr,
    roots: Arc<RootCertStore>,
    server: Pop3Server<MemoryStore>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.server.shutdown();
    }
}

async fn start(messages: &[Vec<u8>]) -> Running {
    let store = Arc::new(MemoryStore::new());
    store.add_user("alice", "secret");
    for m in messages {
        store.add_message("alice", m.clone());
    }
    let pki = pki();
    let config = ServerConfig::for_store(store.as_ref()).allow_plaintext_auth(true);
    let server = Pop3Server::build(
        store.clone(),
        config,
        Some(pki.server),
        ServerOptions::default(),
    );
    let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tls = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (plain_addr, tls_addr) = (plain.local_addr().unwrap(), tls.local_addr().unwrap());
    let s = server.clone();
    tokio::spawn(async move { s.serve(plain, pop3_tokio::server::Security::Plain).await });
    let s = server.clone();
    tokio::spawn(async move {
        s.serve(tls, pop3_tokio::server::Security::ImplicitTls)
            .await
    });
    Running {
        store,
        plain: plain_addr,
        tls: tls_addr,
        roots: pki.roots,
        server,
    }
}

fn options(security: Security, r: &Running) -> ConnectOptions {
    let mut o = ConnectOptions::new(security);
    o.verification = TlsVerification::Roots(r.roots.clone());
    o
}

/// Messages with dot lines, a long line, no final line end, and a big one.
fn messages() -> Vec<Vec<u8>> {
    let mut big = b"Subject: big\r\n\r\n".to_vec();
    for i in 0..60_000 {
        if i % 10 == 0 {
            big.extend_from_slice(b".");
        }
        big.extend_from_slice(format!("line {i:08} of the big message\r\n").as_bytes());
    }
    vec![
        b"Subject: one\r\n\r\nHello\r\n".to_vec(),
        b"Subject: dots\r\n\r\n.\r\n..\r\n.x\r\nend\r\n".to_vec(),
        big,
        format!("Subject: long\r\n\r\n{}\r\n", "y".repeat(100_000)).into_bytes(),
    ]
}

fn numbers(n: usize) -> Vec<MessageNumber> {
    (1..=n as u32).filter_map(msg).collect()
}

#[tokio::test]
async fn every_command_over_plain_stls_and_implicit_tls() {
    let msgs = messages();
    let r = start(&msgs).await;
    for security in [Security::Plain, Security::StartTls, Security::ImplicitTls] {
        let addr = if security == Security::ImplicitTls {
            r.tls
        } else {
            r.plain
        };
        let mut client = Pop3Client::connect("127.0.0.1", addr.port(), options(security, &r))
            .await
            .unwrap_or_else(|e| panic!("{security:?}: {e}"));
        assert_eq!(client.is_tls(), security != Security::Plain);
        assert!(client.greeting().unwrap().timestamp.is_some());
        let caps = client.capabilities().expect("CAPA").to_vec();
        assert!(caps.contains(&Capability::Pipelining), "{caps:?}");
        assert_eq!(
            caps.contains(&Capability::Stls),
            security == Security::Plain,
            "{caps:?}"
        );
        match security {
            Security::Plain => client.login("alice", "secret").await.unwrap(),
            Security::StartTls => client.apop("alice", "secret").await.unwrap(),
            _ => client
                .auth(Box::new(Plain::new("alice", Secret::new("secret"))))
                .await
                .unwrap(),
        }
        assert!(client.is_pipelining());
        let stat = client.stat().await.unwrap();
        assert_eq!(stat.count as usize, msgs.len());
        let list = client.list().await.unwrap();
        assert_eq!(list.len(), msgs.len());
        let uidl = client.uidl().await.unwrap();
        assert_eq!(uidl.len(), msgs.len());
        assert_eq!(
            client.uidl_one(msg(2).unwrap()).await.unwrap().uid,
            uidl[1].uid
        );
        assert_eq!(client.list_one(msg(3).unwrap()).await.unwrap(), list[2]);

        let mut batch = client.retr_many(numbers(msgs.len())).unwrap();
        let mut i = 0;
        while let Some((n, body)) = batch.next().await {
            let mut got = Vec::new();
            body.unwrap().read_to_end(&mut got).await.unwrap();
            assert_eq!(n.index(), i);
            assert_eq!(got, msgs[i], "{security:?}: RETR {n}");
            assert_eq!(got.len() as u64, list[i].size);
            i += 1;
        }
        drop(batch);
        let mut top = Vec::new();
        client
            .top(msg(2).unwrap(), 1)
            .await
            .unwrap()
            .read_to_end(&mut top)
            .await
            .unwrap();
        assert_eq!(top, b"Subject: dots\r\n\r\n.\r\n");
        client.noop().await.unwrap();
        let results = client.dele_many(numbers(2)).await.unwrap();
        assert!(results.iter().all(|(_, r)| r.is_ok()));
        assert!(matches!(
            client.retr(msg(1).unwrap()).await,
            Err(Error::Server(_))
        ));
        client.rset().await.unwrap();
        client.quit().await.unwrap();
        assert_eq!(r.store.message_count("alice"), msgs.len());
    }
}

#[tokio::test]
async fn utf8_lang_and_errors() {
    let r = start(&messages()).await;
    let mut client = Pop3Client::connect("127.0.0.1", r.plain.port(), options(Security::Plain, &r))
        .await
        .unwrap();
    // Whatever the server's answer, the session stays in step.
    let utf8 = client.utf8().await;
    assert!(matches!(utf8, Ok(()) | Err(Error::Server(_))), "{utf8:?}");
    let lang = client.lang().await;
    assert!(matches!(lang, Ok(_) | Err(Error::Server(_))), "{lang:?}");
    client.quit().await.unwrap();

    let mut client = Pop3Client::connect("127.0.0.1", r.plain.port(), options(Security::Plain, &r))
        .await
        .unwrap();
    let set = client.set_lang(LangRequest::Default).await;
    assert!(matches!(set, Ok(_) | Err(Error::Server(_))), "{set:?}");
    // Wrong password: -ERR, still in AUTHORIZATION.
    let err = client.login("alice", "wrong").await.unwrap_err();
    assert!(matches!(err, Error::Server(_)), "{err:?}");
    client.login("alice", "secret").await.unwrap();
    client.quit().await.unwrap();
}

#[tokio::test]
async fn dele_quit_removes_and_drop_keeps() {
    let msgs = messages();
    let r = start(&msgs).await;
    let mut client = Pop3Client::connect("127.0.0.1", r.plain.port(), options(Security::Plain, &r))
        .await
        .unwrap();
    client.login("alice", "secret").await.unwrap();
    client.dele(msg(1).unwrap()).await.unwrap();
    drop(client);
    // The server sees the connection close and releases the maildrop.
    for _ in 0..100 {
        if !r.store.is_locked("alice") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(r.store.message_count("alice"), msgs.len());

    let mut client = Pop3Client::connect("127.0.0.1", r.plain.port(), options(Security::Plain, &r))
        .await
        .unwrap();
    client.login("alice", "secret").await.unwrap();
    client.dele_many(numbers(3)).await.unwrap();
    client.quit().await.unwrap();
    assert_eq!(r.store.message_count("alice"), msgs.len() - 3);
}

#[tokio::test]
async fn fetch_into_a_maildir_then_delete() {
    let msgs = messages();
    let r = start(&msgs).await;
    let dir = tempfile::tempdir().unwrap();
    let connect = || async {
        let mut c = Pop3Client::connect(
            "127.0.0.1",
            r.tls.port(),
            options(Security::ImplicitTls, &r),
        )
        .await
        .unwrap();
        c.login("alice", "secret").await.unwrap();
        c
    };
    let mut sink = MaildirSink::open(dir.path(), "alice@127.0.0.1").unwrap();
    let mut calls = 0;
    let mut client = connect().await;
    let report = fetch::fetch_new(
        &mut client,
        &mut sink,
        &FetchOptions::default(),
        &mut |_| calls += 1,
    )
    .await
    .unwrap();
    assert_eq!(report.saved, msgs.len());
    assert!(calls > msgs.len());
    let mut stored: Vec<Vec<u8>> = std::fs::read_dir(dir.path().join("new"))
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    let mut want: Vec<Vec<u8>> = msgs
        .iter()
        .map(|m| {
            String::from_utf8_lossy(m)
                .replace("\r\n", "\n")
                .into_bytes()
        })
        .collect();
    stored.sort();
    want.sort();
    assert_eq!(stored, want);

    // Again with deletion: nothing new, everything deleted.
    let mut delete = FetchOptions::default();
    delete.delete = true;
    let mut client = connect().await;
    let report = fetch::fetch_new(&mut client, &mut sink, &delete, &mut |_| {})
        .await
        .unwrap();
    assert_eq!((report.saved, report.already_stored), (0, msgs.len()));
    assert_eq!(report.deleted, msgs.len());
    assert_eq!(r.store.message_count("alice"), 0);
}

#[tokio::test]
async fn a_tiny_action_queue_only_slows_parsing_down() {
    // Many small messages: one read holds many listing lines and bodies, more
    // than the machine queues at once; the rest is offered again.
    let msgs: Vec<Vec<u8>> = (0..300)
        .map(|i| format!("Subject: {i}\r\n\r\n.dot {i}\r\nbody\r\n").into_bytes())
        .collect();
    let r = start(&msgs).await;
    let mut o = options(Security::Plain, &r);
    o.session.max_queued_actions = 4;
    o.session.max_in_flight = 100;
    let mut client = Pop3Client::connect("127.0.0.1", r.plain.port(), o)
        .await
        .unwrap();
    client.login("alice", "secret").await.unwrap();
    assert_eq!(client.list().await.unwrap().len(), msgs.len());
    assert_eq!(client.uidl().await.unwrap().len(), msgs.len());
    let mut batch = client.retr_many(numbers(msgs.len())).unwrap();
    let mut i = 0;
    while let Some((_, body)) = batch.next().await {
        let mut got = Vec::new();
        body.unwrap().read_to_end(&mut got).await.unwrap();
        assert_eq!(got, msgs[i]);
        i += 1;
    }
    assert_eq!(i, msgs.len());
    drop(batch);
    client.quit().await.unwrap();
}
