//! `fetch` against a POP3S server that requires a client certificate from
//! its CA: `--client-cert` and `--client-key` (or `client_cert` and
//! `client_key` in the configuration file, the key also in the
//! certificate's file) get the mail; without them the handshake fails and
//! nothing is deleted; a key that cannot be read is a configuration error
//! naming it.
#![cfg(feature = "cli")]

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Parser;
use pop3_blocking::cli::{FetchArgs, fetch_blocking};
use pop3_blocking::fetch::ExitKind;
use pop3_blocking::tls::crypto_provider;
use pop3_blocking::tls::rustls;
use pop3_proto::store::MemoryStore;
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use support::{Server, hint, pops_args, stored_count};

/// The PEM files of a test: the CA both sides trust, and the client's
/// certificate and key.
struct Files {
    ca: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

impl Server {
    /// A POP3S server that asks for a client certificate and accepts only
    /// those its private CA signed; one message for alice (password
    /// `secret`). The CA's and the client's PEM files are written in `dir`.
    fn new(dir: &Path) -> (Server, Files) {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issue = |names: &[&str], usage: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate().unwrap();
            let mut params =
                CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                    .unwrap();
            params.extended_key_usages = vec![usage];
            let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
            (cert, key)
        };
        let (server_cert, server_key) = issue(&["127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth);
        let (client_cert, client_key) = issue(&["alice"], ExtendedKeyUsagePurpose::ClientAuth);

        let files = Files {
            ca: dir.join("ca.pem"),
            client_cert: dir.join("alice.pem"),
            client_key: dir.join("alice.key"),
        };
        std::fs::write(&files.ca, ca.pem()).unwrap();
        std::fs::write(&files.client_cert, client_cert.pem()).unwrap();
        std::fs::write(&files.client_key, client_key.serialize_pem()).unwrap();

        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone()).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            crypto_provider(),
        )
        .build()
        .unwrap();
        let tls = rustls::ServerConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![CertificateDer::from(server_cert.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
            )
            .unwrap();

        let store = Arc::new(MemoryStore::new());
        store.add_user("alice", "secret");
        store.add_message("alice", "Subject: for a certified client\r\n\r\nx\r\n");
        (Server::start(store, Some(Arc::new(tls))), files)
    }
}

/// The command line for `server` into `maildir`, trusting `files.ca`,
/// with `extra` options.
fn args(server: &Server, files: &Files, maildir: &Path, extra: &[&str]) -> FetchArgs {
    let ca = files.ca.display().to_string();
    let mut all = vec!["--ca-file", ca.as_str()];
    all.extend_from_slice(extra);
    pops_args(server, maildir, &all)
}

#[test]
fn the_client_certificate_given_by_flags_gets_the_mail_and_without_it_nothing_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let (server, files) = Server::new(dir.path());
    let md = dir.path().join("m");

    let without = args(&server, &files, &md, &[]);
    assert_eq!(
        without.run("fetch", &mut fetch_blocking),
        ExitKind::Unavailable
    );
    let hint = hint(&without);
    assert!(hint.contains("--client-cert FILE"), "{hint}");
    assert_eq!(server.store.message_count("alice"), 1);
    assert_eq!(stored_count(&md), 0);

    let cert = files.client_cert.display().to_string();
    let key = files.client_key.display().to_string();
    let with = args(
        &server,
        &files,
        &md,
        &["--client-cert", &cert, "--client-key", &key],
    );
    assert_eq!(with.run("fetch", &mut fetch_blocking), ExitKind::Ok);
    assert_eq!(server.store.message_count("alice"), 0);
    assert_eq!(stored_count(&md), 1);
}

#[test]
fn a_configuration_file_client_cert_holding_the_key_too_gets_the_mail() {
    let dir = tempfile::tempdir().unwrap();
    let (server, files) = Server::new(dir.path());
    let both = dir.path().join("alice-both.pem");
    let mut pem = std::fs::read(&files.client_cert).unwrap();
    pem.extend(std::fs::read(&files.client_key).unwrap());
    std::fs::write(&both, pem).unwrap();
    let md = dir.path().join("m");
    let config = dir.path().join("fetch.toml");
    std::fs::write(
        &config,
        format!(
            "[account.work]\nurl = \"pops://alice@127.0.0.1:{}\"\nmaildir = {:?}\n\
             password_command = \"echo secret\"\nca_file = {:?}\nclient_cert = {:?}\n\
             delete = true\n",
            server.port,
            md.display().to_string(),
            files.ca.display().to_string(),
            both.display().to_string(),
        ),
    )
    .unwrap();
    let args =
        FetchArgs::try_parse_from(["fetch", "--config", &config.display().to_string()]).unwrap();
    assert_eq!(args.run("fetch", &mut fetch_blocking), ExitKind::Ok);
    assert_eq!(server.store.message_count("alice"), 0);
    assert_eq!(stored_count(&md), 1);
}

#[test]
fn an_unreadable_client_key_or_a_key_without_a_certificate_is_a_configuration_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (server, files) = Server::new(dir.path());
    let config = dir.path().join("fetch.toml");
    let missing = dir.path().join("no-such.key").display().to_string();
    let cert = files.client_cert.display().to_string();
    let cases = [
        (
            format!("client_cert = {cert:?}\nclient_key = {missing:?}\n"),
            "client_key",
            "no-such.key",
        ),
        (
            format!("client_key = {missing:?}\n"),
            "client_key",
            "needs client_cert",
        ),
        // The certificate's file holds no key.
        (
            format!("client_cert = {cert:?}\n"),
            "client_key",
            "alice.pem",
        ),
    ];
    for (extra, key, says) in cases {
        std::fs::write(
            &config,
            format!(
                "[account.work]\nurl = \"pops://alice@127.0.0.1:{}\"\nmaildir = \"m\"\n\
                 password_command = \"echo secret\"\n{extra}",
                server.port
            ),
        )
        .unwrap();
        let args = FetchArgs::try_parse_from(["fetch", "--config", &config.display().to_string()])
            .unwrap();
        let e = args.accounts().unwrap_err();
        let text = e.to_string();
        assert!(text.contains(key) && text.contains(says), "{extra}: {text}");
        assert!(text.contains("fetch.toml"), "{extra}: {text}");
        assert_eq!(
            args.run("fetch", &mut fetch_blocking),
            ExitKind::Config,
            "{extra}"
        );
    }
    assert_eq!(server.store.message_count("alice"), 1);
}
