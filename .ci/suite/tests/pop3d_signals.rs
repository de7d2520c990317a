//! Every runtime's `pop3d` example under signals: SIGTERM lets a logged-in
//! session's QUIT commit, tells a session not logged in and closes it,
//! exits 0 and removes the demo CA file; SIGHUP reloads the users without
//! dropping a session, and a reload that fails keeps the users in force.
#![cfg(unix)]

mod peer_examples;
#[path = "../../../pop3-tokio/tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, ChildStderr, Command, Stdio};
use std::time::{Duration, Instant};

use peer_examples::example_binary;

const EXAMPLES: [(&str, &str); 3] = [
    ("pop3-blocking", "pop3d-blocking"),
    ("pop3-tokio", "pop3d"),
    ("pop3-async-std", "pop3d-smol"),
];

/// A started server: its process, port, demo CA file and stderr lines.
struct Server {
    child: Child,
    port: u16,
    ca: Option<PathBuf>,
    stderr: BufReader<ChildStderr>,
    /// Kept open: the server may still print.
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(package: &str, example: &str, args: &[&str]) -> Server {
    let bin = example_binary(package, example);
    let mut child = Command::new(bin)
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the example");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let (mut port, mut ca) = (None, None);
    let mut line = String::new();
    while port.is_none() || (ca.is_none() && args.is_empty()) {
        line.clear();
        assert!(out.read_line(&mut line).expect("banner") > 0, "no banner");
        if let Some(rest) = line.split("listening on 127.0.0.1:").nth(1) {
            port = rest.split(',').next().and_then(|p| p.parse().ok());
        }
        if let Some(path) = line.trim_end().split("CA certificate: ").nth(1) {
            ca = Some(PathBuf::from(path));
        }
    }
    Server {
        child,
        port: port.expect("port"),
        ca,
        stderr,
        _stdout: out,
    }
}

fn signal(server: &Server, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &server.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

/// Waits for a stderr line containing `text`.
fn log_line(server: &mut Server, text: &str) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            server.stderr.read_line(&mut line).expect("stderr") > 0,
            "the server ended without logging {text:?}"
        );
        if line.contains(text) {
            return line;
        }
    }
}

struct Session(BufReader<TcpStream>);

impl Session {
    fn open(port: u16) -> Session {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        let mut s = Session(BufReader::new(stream));
        assert!(s.line().starts_with("+OK"));
        s
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.0.read_line(&mut line).expect("read a reply");
        line
    }

    fn cmd(&mut self, command: &str) -> String {
        self.0
            .get_mut()
            .write_all(format!("{command}\r\n").as_bytes())
            .expect("send");
        self.line()
    }

    fn login(&mut self, user: &str, password: &str) -> String {
        assert!(self.cmd(&format!("USER {user}")).starts_with("+OK"));
        self.cmd(&format!("PASS {password}"))
    }

    fn at_end(&mut self) -> bool {
        let mut rest = Vec::new();
        matches!(self.0.read_to_end(&mut rest), Ok(0))
    }
}

fn wait_exit(server: &mut Server) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = server.child.try_wait().expect("wait") {
            return status.code().unwrap_or(-1);
        }
        assert!(Instant::now() < deadline, "the server did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_honours_a_logged_in_quit_tells_the_others_and_exits_0_without_the_ca_file() {
    for (package, example) in EXAMPLES {
        let mut server = start(package, example, &[]);
        let ca = server.ca.clone().expect("the demo's CA file");
        assert!(ca.exists());
        let mut logged_in = Session::open(server.port);
        assert!(logged_in.login("demo", "demo").starts_with("+OK"));
        assert!(logged_in.cmd("DELE 1").starts_with("+OK"));
        let mut waiting = Session::open(server.port);
        signal(&server, "TERM");
        let told = waiting.line();
        assert!(told.starts_with("-ERR [SYS/TEMP]"), "{example}: {told:?}");
        assert!(waiting.at_end(), "{example}");
        let quit = logged_in.cmd("QUIT");
        assert!(quit.starts_with("+OK"), "{example}: {quit:?}");
        assert!(logged_in.at_end(), "{example}");
        log_line(&mut server, "end=quit");
        assert_eq!(wait_exit(&mut server), 0, "{example}");
        assert!(!ca.exists(), "{example}: {} left behind", ca.display());
    }
}

#[test]
fn sighup_reloads_the_users_keeping_sessions_and_a_bad_reload_keeps_the_old_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("mail");
    std::fs::create_dir(&root).expect("root");
    let users = dir.path().join("passwd");
    std::fs::write(&users, "alice:{PLAIN}one\n").expect("passwd");
    let config = dir.path().join("pop3d.toml");
    std::fs::write(
        &config,
        format!(
            "maildir_root = {:?}\nusers = {:?}\nallow_plaintext_auth = true\nallow_root = true\n",
            root, users
        ),
    )
    .expect("config");
    for (package, example) in EXAMPLES {
        std::fs::write(&users, "alice:{PLAIN}one\n").expect("passwd");
        let mut server = start(
            package,
            example,
            &["--config", config.to_str().expect("utf-8")],
        );
        let mut kept = Session::open(server.port);
        assert!(kept.login("alice", "one").starts_with("+OK"), "{example}");
        std::fs::write(&users, "alice:{PLAIN}two\n").expect("passwd");
        signal(&server, "HUP");
        log_line(&mut server, "reloaded the configuration");
        assert!(kept.cmd("STAT").starts_with("+OK"), "{example}");
        assert!(kept.cmd("QUIT").starts_with("+OK"), "{example}");
        let mut new = Session::open(server.port);
        assert!(new.login("alice", "two").starts_with("+OK"), "{example}");
        assert!(new.cmd("QUIT").starts_with("+OK"));
        // A passwd-file that cannot be used: the reload fails, two stays.
        std::fs::write(&users, "alice:two\n").expect("passwd");
        signal(&server, "HUP");
        let why = log_line(&mut server, "reload failed");
        assert!(why.contains("line 1"), "{example}: {why}");
        let mut again = Session::open(server.port);
        assert!(again.login("alice", "two").starts_with("+OK"), "{example}");
        assert!(again.cmd("QUIT").starts_with("+OK"));
        signal(&server, "TERM");
        assert_eq!(wait_exit(&mut server), 0, "{example}");
    }
}
