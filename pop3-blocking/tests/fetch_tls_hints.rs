//! `fetch` against servers whose certificates fail verification: a private
//! CA, a name the certificate does not hold, an expired certificate. The
//! failure exits 69 and says how to get past it; `--ca-file` then works.
#![cfg(feature = "cli")]

use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use clap::Parser;
use pop3_blocking::cli::{FetchArgs, certificate_hint, chain, fetch_blocking};
use pop3_blocking::fetch::ExitKind;
use pop3_blocking::server::{Pop3Server, Security, ServerOptions};
use pop3_proto::server::ServerConfig;
use pop3_proto::store::MemoryStore;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A POP3S server on loopback whose certificate (for `names`, expired when
/// `expired`) comes from a fresh private CA, written to `ca_file`.
struct Server {
    store: Arc<MemoryStore>,
    server: Pop3Server<MemoryStore>,
    port: u16,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn new(names: &[&str], expired: bool, ca_file: &Path) -> Server {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        std::fs::write(ca_file, ca.pem()).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        if expired {
            params.not_before = rcgen::date_time_ymd(2019, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 1, 1);
        }
        let leaf = params.signed_by(&key, &ca, &ca_key).unwrap();
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let tls =
            pop3_blocking::tls::server_config(vec![CertificateDer::from(leaf.der().to_vec())], der)
                .unwrap();
        let store = Arc::new(MemoryStore::new());
        store.add_user("alice", "secret");
        store.add_message("alice", "Subject: over TLS\r\n\r\nx\r\n");
        let server = Pop3Server::build(
            store.clone(),
            ServerConfig::default(),
            Some(tls),
            ServerOptions::default(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let s = server.clone();
        let thread = thread::spawn(move || s.serve(listener, Security::ImplicitTls).unwrap());
        Server {
            store,
            server,
            port,
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.server.shutdown();
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

/// The command line for `server` into `maildir`, with `extra` options.
fn args(server: &Server, maildir: &Path, extra: &[&str]) -> FetchArgs {
    let url = format!("pops://alice@127.0.0.1:{}", server.port);
    let maildir = maildir.display().to_string();
    let base = [
        "fetch",
        url.as_str(),
        "--maildir",
        &maildir,
        "--password-command",
        "echo secret",
        "--delete",
    ];
    FetchArgs::try_parse_from(base.iter().chain(extra)).unwrap()
}

/// The hint the failed fetch of `args` prints.
fn hint(args: &FetchArgs) -> String {
    let account = args.accounts().unwrap().remove(0);
    let sink = account.open_sink().unwrap();
    let (_, result) = fetch_blocking(&account.url, "secret", &account.settings, sink, &mut |_| {});
    let e = result.unwrap_err();
    certificate_hint(&e).unwrap_or_else(|| panic!("no hint for {}", chain(&e)))
}

#[test]
fn a_private_ca_fails_with_a_hint_naming_ca_file_and_then_works_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let server = Server::new(&["127.0.0.1"], false, &ca);
    let md = dir.path().join("m");
    let without = args(&server, &md, &[]);
    assert_eq!(
        without.run("fetch", &mut fetch_blocking),
        ExitKind::Unavailable
    );
    let hint = hint(&without);
    assert!(
        hint.contains("--ca-file FILE") && hint.contains("ca_file") && hint.contains("system"),
        "{hint}"
    );
    assert_eq!(server.store.message_count("alice"), 1);

    let ca = ca.display().to_string();
    let with = args(&server, &md, &["--ca-file", &ca]);
    assert_eq!(with.run("fetch", &mut fetch_blocking), ExitKind::Ok);
    assert_eq!(server.store.message_count("alice"), 0);
}

#[test]
fn a_certificate_for_another_name_fails_with_a_hint_naming_the_names_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let server = Server::new(&["pop.example.test"], false, &ca);
    let ca = ca.display().to_string();
    let args = args(&server, &dir.path().join("m"), &["--ca-file", &ca]);
    assert_eq!(
        args.run("fetch", &mut fetch_blocking),
        ExitKind::Unavailable
    );
    let hint = hint(&args);
    assert!(
        hint.contains("holds pop.example.test but not 127.0.0.1"),
        "{hint}"
    );
    assert_eq!(server.store.message_count("alice"), 1);
}

#[test]
fn an_expired_certificate_fails_with_a_hint_about_the_clock_and_renewal() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let server = Server::new(&["127.0.0.1"], true, &ca);
    let ca = ca.display().to_string();
    let args = args(&server, &dir.path().join("m"), &["--ca-file", &ca]);
    assert_eq!(
        args.run("fetch", &mut fetch_blocking),
        ExitKind::Unavailable
    );
    let hint = hint(&args);
    assert!(hint.contains("clock") && hint.contains("renew"), "{hint}");
    assert_eq!(server.store.message_count("alice"), 1);
}
