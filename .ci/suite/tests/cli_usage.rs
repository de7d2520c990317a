//! Every program's command line, run as a program: `fetch`, `pop3d` and
//! `deliver` on every runtime exit 64 (`EX_USAGE`, from sysexits) on an
//! unknown option or a bad value, naming it on standard error; `--help`
//! and `--version` print on standard output and exit 0.

// The peer support of pop3-tokio's own peer tests.
mod peer_examples;
#[path = "../../../pop3-tokio/tests/support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use peer_examples::example_binary;
use support::run_with_timeout;

/// (package, example) of every program with a command line.
const PROGRAMS: [(&str, &str); 7] = [
    ("pop3-blocking", "fetch-blocking"),
    ("pop3-tokio", "fetch"),
    ("pop3-async-std", "fetch-smol"),
    ("pop3-blocking", "pop3d-blocking"),
    ("pop3-tokio", "pop3d"),
    ("pop3-async-std", "pop3d-smol"),
    ("pop3-blocking", "deliver"),
];

fn programs() -> Vec<(&'static str, PathBuf)> {
    PROGRAMS
        .iter()
        .map(|&(package, example)| (example, example_binary(package, example)))
        .collect()
}

fn run(bin: &PathBuf, args: &[&str]) -> Output {
    let mut cmd = Command::new(bin);
    cmd.args(args);
    run_with_timeout(cmd, Duration::from_secs(30))
}

#[test]
fn an_unknown_option_exits_64_and_names_the_option_on_every_program() {
    for (name, bin) in programs() {
        let out = run(&bin, &["--no-such-option"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{name}: {stderr}");
        assert!(
            stderr.contains("--no-such-option"),
            "{name} does not name the option: {stderr}"
        );
        assert!(
            stderr.contains(name),
            "{name}'s usage line does not name the program: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{name} wrote to stdout");
    }
}

#[test]
fn a_bad_value_exits_64_and_names_the_value() {
    let cases: [(&str, &[&str], &str); 3] = [
        ("fetch-blocking", &["--max-size", "lots"], "lots"),
        ("pop3d", &["--listen", "nowhere"], "nowhere"),
        ("fetch-smol", &["imap://alice@127.0.0.1"], "imap://"),
    ];
    let programs = programs();
    for (name, args, named) in cases {
        let bin = &programs.iter().find(|(n, _)| *n == name).unwrap().1;
        let out = run(bin, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{name} {args:?}: {stderr}");
        assert!(stderr.contains(named), "{name} {args:?}: {stderr}");
    }
}

#[test]
fn help_and_version_print_on_stdout_and_exit_0_on_every_program() {
    for (name, bin) in programs() {
        let help = run(&bin, &["--help"]);
        let text = String::from_utf8_lossy(&help.stdout);
        assert_eq!(help.status.code(), Some(0), "{name} --help: {text}");
        assert!(
            text.contains(&format!("Usage: {name}")),
            "{name} --help: {text}"
        );
        let version = run(&bin, &["--version"]);
        let text = String::from_utf8_lossy(&version.stdout);
        assert_eq!(version.status.code(), Some(0), "{name} --version: {text}");
        assert!(
            text.contains(env!("CARGO_PKG_VERSION")),
            "{name} --version: {text}"
        );
    }
}
