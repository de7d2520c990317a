//! A fetch over TLS with the application's own rustls configuration
//! (`FetchSettings::tls_config`): the server's CA is in that configuration
//! only, so the fetch succeeds with it and fails without it.

use std::net::TcpListener;
use std::sync::Arc;
use std::thread;

use pop3_blocking::client::Error;
use pop3_blocking::fetch::{self, FetchError, FetchSettings, MaildirSink, PopUrl};
use pop3_blocking::server::{Pop3Server, Security, ServerOptions};
use pop3_blocking::tls::{crypto_provider, rustls};
use pop3_proto::server::ServerConfig;
use pop3_proto::store::MemoryStore;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

const MESSAGE: &[u8] = b"Subject: private CA\r\n\r\nfetched over TLS\r\n";

/// A server configuration for `127.0.0.1` under a fresh private CA, and a
/// client configuration trusting that CA and nothing else.
fn private_pki() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let server =
        pop3_blocking::tls::server_config(vec![CertificateDer::from(leaf.der().to_vec())], der)
            .unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(ca.der().to_vec())).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (server, Arc::new(client))
}

#[test]
fn a_fetch_trusts_the_ca_of_its_own_tls_configuration_only() {
    let (server_tls, client_tls) = private_pki();
    let store = Arc::new(MemoryStore::new());
    store.add_user("alice", "secret");
    store.add_message("alice", MESSAGE);
    let server = Pop3Server::build(
        store.clone(),
        ServerConfig::default(),
        Some(server_tls),
        ServerOptions::default(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let serving = {
        let server = server.clone();
        thread::spawn(move || server.serve(listener, Security::ImplicitTls))
    };
    let url = PopUrl::parse(&format!("pops://alice@127.0.0.1:{port}")).unwrap();
    let dir = tempfile::tempdir().unwrap();

    // Without the configuration, the default roots do not know the CA.
    let mut sink = MaildirSink::open(dir.path(), &url.account_id()).unwrap();
    let refused = fetch::run(
        &url,
        "secret",
        &FetchSettings::default(),
        &mut sink,
        &mut |_| {},
    );
    match refused {
        Err(FetchError::Pop3(Error::Tls(e))) => {
            assert!(e.to_string().contains("UnknownIssuer"), "{e}")
        }
        other => panic!("expected an untrusted certificate, got {other:?}"),
    }

    let mut settings = FetchSettings::default();
    settings.tls_config = Some(client_tls);
    settings.delete = true;
    let report = fetch::run(&url, "secret", &settings, &mut sink, &mut |_| {}).unwrap();
    assert_eq!(report.saved, 1);
    assert_eq!(store.message_count("alice"), 0, "deleted once stored");
    let new: Vec<_> = std::fs::read_dir(dir.path().join("new"))
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    // The Maildir holds the message with the local line ends.
    let expected = String::from_utf8(MESSAGE.to_vec())
        .unwrap()
        .replace("\r\n", "\n");
    assert_eq!(new, vec![expected.into_bytes()]);

    server.shutdown();
    serving.join().unwrap().unwrap();
}
