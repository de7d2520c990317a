//! `fetch` against servers whose certificates fail verification: a private
//! CA, a name the certificate does not hold, an expired certificate. The
//! failure exits 69 and says how to get past it; `--ca-file` then works.
#![cfg(feature = "cli")]

mod support;

use std::path::Path;
use std::sync::Arc;

use pop3_blocking::cli::fetch_blocking;
use pop3_blocking::fetch::ExitKind;
use pop3_proto::store::MemoryStore;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use support::{Server, hint, pops_args};

impl Server {
    /// A POP3S server whose certificate (for `names`, expired when
    /// `expired`) comes from a fresh private CA, written to `ca_file`; one
    /// message for alice (password `secret`).
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
        Server::start(store, Some(tls))
    }
}

#[test]
fn a_private_ca_fails_with_a_hint_naming_ca_file_and_then_works_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let server = Server::new(&["127.0.0.1"], false, &ca);
    let md = dir.path().join("m");
    let without = pops_args(&server, &md, &[]);
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
    let with = pops_args(&server, &md, &["--ca-file", &ca]);
    assert_eq!(with.run("fetch", &mut fetch_blocking), ExitKind::Ok);
    assert_eq!(server.store.message_count("alice"), 0);
}

/// Fetches with `--ca-file` from a server whose certificate is for `names`
/// (expired when `expired`): that fails with 69 and leaves the mail on the
/// server. The hint it prints.
fn hint_trusting_the_ca(names: &[&str], expired: bool) -> String {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let server = Server::new(names, expired, &ca);
    let ca = ca.display().to_string();
    let args = pops_args(&server, &dir.path().join("m"), &["--ca-file", &ca]);
    assert_eq!(
        args.run("fetch", &mut fetch_blocking),
        ExitKind::Unavailable
    );
    let hint = hint(&args);
    assert_eq!(server.store.message_count("alice"), 1);
    hint
}

#[test]
fn a_certificate_for_another_name_fails_with_a_hint_naming_the_names_it_holds() {
    let hint = hint_trusting_the_ca(&["pop.example.test"], false);
    assert!(
        hint.contains("holds pop.example.test but not 127.0.0.1"),
        "{hint}"
    );
}

#[test]
fn an_expired_certificate_fails_with_a_hint_about_the_clock_and_renewal() {
    let hint = hint_trusting_the_ca(&["127.0.0.1"], true);
    assert!(hint.contains("clock") && hint.contains("renew"), "{hint}");
}
