//! What the tests of every runtime's examples need besides the peer support
//! of `pop3-tokio/tests/support` (which they include with `#[path]`): the
//! examples built from their packages, and mutt and neomutt as clients.
//!
//! Include it from an integration test with `mod peer_examples;`, after
//! `mod support;`.

#![allow(dead_code)]

pub mod mutt;

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{require_program, run_with_timeout};

/// An example binary of a workspace package, built next to this test with
/// the examples' command-line feature (cargo skips the work when it is up
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
        // The examples' command lines.
        cmd.args(["--features", "pop3-blocking/cli"]);
        if profile_dir.ends_with("release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "building the {example} example failed");
    }
    assert!(bin.exists(), "{} missing", bin.display());
    bin
}
