//! The tokio fetch's failed certificate check gets the same hint as the
//! blocking one: the hint reads the TLS error through tokio-rustls's
//! wrapping, and `--ca-file` then works.

use std::net::TcpListener;
use std::sync::Arc;

use clap::Parser;
use pop3_blocking::cli::{FetchArgs, certificate_hint, chain};
use pop3_blocking::fetch::ExitKind;
use pop3_blocking::server::{Pop3Server, Security, ServerOptions};
use pop3_proto::server::ServerConfig;
use pop3_proto::store::MemoryStore;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

#[test]
fn a_private_ca_fails_over_tokio_with_the_ca_file_hint_and_works_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let tls =
        pop3_blocking::tls::server_config(vec![CertificateDer::from(leaf.der().to_vec())], der)
            .unwrap();
    let store = Arc::new(MemoryStore::new());
    store.add_user("alice", "secret");
    store.add_message("alice", "Subject: x\r\n\r\nx\r\n");
    let server = Pop3Server::build(
        store.clone(),
        ServerConfig::default(),
        Some(tls),
        ServerOptions::default(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let serving = {
        let server = server.clone();
        std::thread::spawn(move || server.serve(listener, Security::ImplicitTls))
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = format!("pops://alice@127.0.0.1:{port}");
    let md = dir.path().join("m").display().to_string();
    let args = |extra: &[&str]| {
        let base = [
            "fetch",
            url.as_str(),
            "--maildir",
            &md,
            "--password-command",
            "echo secret",
            "--delete",
        ];
        FetchArgs::try_parse_from(base.iter().chain(extra)).unwrap()
    };

    let without = args(&[]);
    let account = without.accounts().unwrap().remove(0);
    let (_, result) = runtime.block_on(pop3_tokio::fetch::run(
        &account.url,
        "secret",
        &account.settings,
        account.open_sink().unwrap(),
        &mut |_| {},
    ));
    let e = result.unwrap_err();
    let hint = certificate_hint(&e).unwrap_or_else(|| panic!("no hint for {}", chain(&e)));
    assert!(hint.contains("--ca-file FILE"), "{hint}");

    let ca = ca_file.display().to_string();
    let kind = args(&["--ca-file", &ca]).run("fetch", &mut |url, password, settings, sink, p| {
        runtime.block_on(pop3_tokio::fetch::run(url, password, settings, sink, p))
    });
    assert_eq!(kind, ExitKind::Ok);
    assert_eq!(store.message_count("alice"), 0);
    server.shutdown();
    serving.join().unwrap().unwrap();
}
