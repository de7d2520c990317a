//! Every runtime's `pop3d` example under signals: SIGTERM lets a logged-in
//! session's QUIT commit, tells a session not logged in and closes it,
//! exits 0 and removes the demo CA file; SIGHUP reloads the users without
//! dropping a session, and a reload that fails keeps the users in force;
//! SIGHUP lowers the connection cap (new connections refused, open sessions
//! go on) and a failed reload keeps it; SIGHUP lowers the login timeout
//! for the sessions that start afterwards, not for those already open; a
//! PROXY protocol listener beside a plain one in the same server.
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
    /// The first listener that expects a PROXY header, if any.
    proxy_port: Option<u16>,
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
    let (mut port, mut proxy_port, mut ca) = (None, None, None);
    let proxied = args.contains(&"--proxy-listen");
    let mut line = String::new();
    while port.is_none() || (ca.is_none() && args.is_empty()) || (proxied && proxy_port.is_none()) {
        line.clear();
        assert!(out.read_line(&mut line).expect("banner") > 0, "no banner");
        if let Some(rest) = line.split("listening on 127.0.0.1:").nth(1) {
            let found = rest.split(',').next().and_then(|p| p.parse().ok());
            if line.contains("PROXY protocol") {
                proxy_port = proxy_port.or(found);
            } else {
                port = port.or(found);
            }
        }
        if let Some(path) = line.trim_end().split("CA certificate: ").nth(1) {
            ca = Some(PathBuf::from(path));
        }
    }
    Server {
        child,
        port: port.expect("port"),
        proxy_port,
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

/// Everything the server says on a connection to `port`, up to its close.
fn all_from(port: u16) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    text
}

#[test]
fn sighup_lowers_the_connection_cap_keeping_open_sessions_and_a_bad_reload_keeps_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("mail");
    std::fs::create_dir(&root).expect("root");
    let users = dir.path().join("passwd");
    std::fs::write(&users, "alice:{PLAIN}one\n").expect("passwd");
    let config = dir.path().join("pop3d.toml");
    let with_limits = |limits: &str| {
        let text = format!(
            "maildir_root = {root:?}\nusers = {users:?}\nallow_plaintext_auth = true\nallow_root = true\n\n[limits]\n{limits}\n"
        );
        std::fs::write(&config, text).expect("config");
    };
    let full = "-ERR [SYS/TEMP] Too many connections;";
    for (package, example) in EXAMPLES {
        with_limits("max_connections = 10\nlogin_timeout = 60");
        let mut server = start(
            package,
            example,
            &["--config", config.to_str().expect("utf-8")],
        );
        let mut kept = Session::open(server.port);
        assert!(kept.login("alice", "one").starts_with("+OK"), "{example}");
        let mut second = Session::open(server.port);

        // Two sessions open, the cap lowered to one.
        with_limits("max_connections = 1\nlogin_timeout = 40");
        signal(&server, "HUP");
        log_line(&mut server, "limits.max_connections = 1,");
        log_line(&mut server, "limits.login_timeout = 40s");
        log_line(&mut server, "reloaded the configuration");
        let refused = all_from(server.port);
        assert!(refused.starts_with(full), "{example}: {refused:?}");
        assert!(kept.cmd("STAT").starts_with("+OK"), "{example}: goes on");
        assert!(second.cmd("USER alice").starts_with("+OK"), "{example}");

        // A file that cannot be read: the reload fails, the cap stays.
        with_limits("max_connections = \"many\"");
        signal(&server, "HUP");
        let why = log_line(&mut server, "reload failed");
        assert!(why.contains("max_connections"), "{example}: {why}");
        assert!(second.cmd("QUIT").starts_with("+OK"), "{example}");
        // One session open: a cap of 10 would admit the next one.
        let refused = all_from(server.port);
        assert!(
            refused.starts_with(full),
            "{example}: the cap of 1 stays: {refused:?}"
        );

        // Raised again: admitted.
        with_limits("max_connections = 3\nlogin_timeout = 40");
        signal(&server, "HUP");
        log_line(&mut server, "limits.max_connections = 3,");
        let mut admitted = Session::open(server.port);
        assert!(admitted.cmd("QUIT").starts_with("+OK"), "{example}");
        assert!(kept.cmd("QUIT").starts_with("+OK"), "{example}");
        signal(&server, "TERM");
        assert_eq!(wait_exit(&mut server), 0, "{example}");
    }
}

#[test]
fn sighup_lowers_the_login_timeout_for_new_sessions_and_open_ones_keep_theirs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("mail");
    std::fs::create_dir(&root).expect("root");
    let users = dir.path().join("passwd");
    std::fs::write(&users, "alice:{PLAIN}one\n").expect("passwd");
    let config = dir.path().join("pop3d.toml");
    let with_limits = |limits: &str| {
        let text = format!(
            "maildir_root = {root:?}\nusers = {users:?}\nallow_plaintext_auth = true\nallow_root = true\n\n[limits]\n{limits}\n"
        );
        std::fs::write(&config, text).expect("config");
    };
    for (package, example) in EXAMPLES {
        with_limits("login_timeout = 120");
        let mut server = start(
            package,
            example,
            &["--config", config.to_str().expect("utf-8")],
        );
        // Opened before the reload, never logged in.
        let mut before = Session::open(server.port);
        with_limits("login_timeout = 2");
        signal(&server, "HUP");
        let changed = log_line(&mut server, "limits.login_timeout = 2s");
        assert!(
            !changed.contains("write_stall_timeout"),
            "{example}: only what changed is named: {changed}"
        );
        log_line(&mut server, "reloaded the configuration");
        let mut after = Session::open(server.port);
        let told = after.line();
        assert_eq!(
            told, "-ERR Disconnected: no login in time.\r\n",
            "{example}"
        );
        assert!(after.at_end(), "{example}");
        // Older than the new timeout by now, and still served.
        assert!(before.login("alice", "one").starts_with("+OK"), "{example}");
        assert!(before.cmd("QUIT").starts_with("+OK"), "{example}");
        signal(&server, "TERM");
        assert_eq!(wait_exit(&mut server), 0, "{example}");
    }
}

#[test]
fn a_proxy_protocol_listener_beside_a_plain_one_in_one_server() {
    for (package, example) in EXAMPLES {
        let mut server = start(
            package,
            example,
            &[
                "--proxy-protocol-trusted",
                "127.0.0.1",
                "--proxy-listen",
                "127.0.0.1:0",
            ],
        );
        let proxy_port = server.proxy_port.expect("the PROXY listener's port");
        // The plain listener greets a client at once.
        let mut direct = Session::open(server.port);
        assert!(direct.login("demo", "demo").starts_with("+OK"), "{example}");
        // The PROXY listener: a client without the header is closed unanswered...
        assert_eq!(all_from(proxy_port), "", "{example}");
        log_line(&mut server, "no valid PROXY protocol header");
        // ... and one behind a proxy is greeted after it.
        let mut stream = TcpStream::connect(("127.0.0.1", proxy_port)).expect("connect");
        stream
            .write_all(b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 110\r\n")
            .expect("header");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        let mut behind = Session(BufReader::new(stream));
        assert!(behind.line().starts_with("+OK"), "{example}");
        assert!(behind.cmd("QUIT").starts_with("+OK"), "{example}");
        log_line(&mut server, "192.0.2.7");
        assert!(direct.cmd("QUIT").starts_with("+OK"), "{example}");
        signal(&server, "TERM");
        assert_eq!(wait_exit(&mut server), 0, "{example}");
    }
}
