//! The systemd units shipped in `pop3-blocking/contrib/systemd`: systemd
//! itself reads them without a complaint (`systemd-analyze verify`, with
//! ExecStart pointing at the built tokio `pop3d`), the service starts
//! `pop3d` with options it accepts and reloads it with SIGHUP, and the
//! sockets carry the names `pop3d` tells plain from implicit TLS by.
#![cfg(target_os = "linux")]

mod peer_examples;
#[path = "../../../pop3-tokio/tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Parser;
use pop3_blocking::cli::ServerArgs;

const UNITS: [&str; 3] = ["pop3d.service", "pop3d.socket", "pop3d-tls.socket"];

fn units_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pop3-blocking/contrib/systemd")
}

fn unit(name: &str) -> String {
    std::fs::read_to_string(units_dir().join(name)).expect("the unit file")
}

/// The values of `key=` in `text`, in order.
fn values<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    text.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

#[test]
fn systemd_analyze_verifies_the_units_without_a_warning() {
    support::require_program("systemd-analyze", "apt-get install -y systemd");
    let pop3d = peer_examples::example_binary("pop3-tokio", "pop3d");
    let dir = tempfile::tempdir().expect("tempdir");
    for name in UNITS {
        let text = unit(name).replace(
            "/usr/local/bin/pop3d",
            pop3d.to_str().expect("a UTF-8 path"),
        );
        std::fs::write(dir.path().join(name), text).expect("write the unit");
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(UNITS.map(|n| dir.path().join(n)))
        .output()
        .expect("run systemd-analyze");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed: {said}"
    );
    assert!(
        said.trim().is_empty(),
        "systemd-analyze verify warned: {said}"
    );
}

#[test]
fn the_service_starts_pop3d_with_options_it_accepts_and_reloads_it_with_sighup() {
    let service = unit("pop3d.service");
    let [exec_start] = values(&service, "ExecStart")[..] else {
        panic!("not one ExecStart");
    };
    let words: Vec<&str> = exec_start.split_whitespace().collect();
    assert_eq!(words[0], "/usr/local/bin/pop3d");
    let args = ServerArgs::try_parse_from(&words)
        .unwrap_or_else(|e| panic!("pop3d refuses {exec_start:?}: {e}"));
    assert!(args.config.is_some(), "the service names its configuration");
    assert_eq!(values(&service, "Type"), ["notify"]);
    assert_eq!(values(&service, "ExecReload"), ["/bin/kill -HUP $MAINPID"]);
    assert_eq!(values(&service, "RestartPreventExitStatus"), ["64 78"]);
    for (socket, name) in [("pop3d.socket", "pop3"), ("pop3d-tls.socket", "pop3s")] {
        let text = unit(socket);
        assert_eq!(values(&text, "FileDescriptorName"), [name], "{socket}");
        assert_eq!(values(&text, "Service"), ["pop3d.service"], "{socket}");
    }
}
