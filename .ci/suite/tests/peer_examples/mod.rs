//! What the tests of every runtime's examples need besides the peer support
//! of `pop3-tokio/tests/support` (which they include with `#[path]`): the
//! examples built from their packages, and mutt and neomutt as clients.
//!
//! Include it from an integration test with `mod peer_examples;`, after
//! `mod support;`.

#![allow(dead_code)]

pub mod mutt;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support::{ChildGuard, require_program, run_with_timeout, spawn_grouped};

/// An example binary of a workspace package, built next to this test with
/// the examples' command-line and PostgreSQL features (cargo skips the work when it is up
/// to date).
pub fn example_binary(package: &str, example: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let bin = profile_dir.join("examples").join(example);
    // Built every time (a no-op when up to date): a stale binary would
    // test old code.
    {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", package, "--example", example]);
        // The examples' command lines, and the PostgreSQL store (every
        // runtime's package calls that feature `postgres`), always both:
        // one build serves every test.
        cmd.args(["--features", "pop3-blocking/cli,postgres"]);
        if profile_dir.ends_with("release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "building the {example} example failed");
    }
    assert!(bin.exists(), "{} missing", bin.display());
    bin
}

/// A CA and a certificate for localhost, written as PEM files in `dir`:
/// (ca, cert, key).
pub fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "pop3-rs test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

/// Starts `pop3d` (`cmd`, its store's options given) on loopback ports of
/// its choosing with the certificate `cert` and key `key`: (process, plain
/// address, implicit TLS address).
pub fn spawn_pop3d(
    mut cmd: Command,
    cert: &Path,
    key: &Path,
) -> (ChildGuard, SocketAddr, SocketAddr) {
    cmd.args(["--listen", "127.0.0.1:0", "--tls-listen", "127.0.0.1:0"])
        .arg("--cert")
        .arg(cert)
        .arg("--key")
        .arg(key)
        // CI runs as root.
        .arg("--allow-root")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = spawn_grouped(cmd).expect("start pop3d");
    let stdout = child.child().stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let (mut plain, mut tls) = (None, None);
    while plain.is_none() || tls.is_none() {
        let line = lines
            .next()
            .expect("pop3d ended before it listened")
            .unwrap();
        let Some(rest) = line.split("listening on ").nth(1) else {
            continue;
        };
        let (addr, kind) = rest.split_once(", ").expect("address, kind");
        let addr: SocketAddr = addr.parse().unwrap();
        if kind.starts_with("pop3s") {
            tls = Some(addr);
        } else {
            plain = Some(addr);
        }
    }
    (child, plain.unwrap(), tls.unwrap())
}
