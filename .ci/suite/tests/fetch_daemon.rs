//! `fetch --daemon` on every runtime, against this project's `pop3d`
//! (Maildir store) started here: two polls pick up mail delivered between
//! them; the server's LOGIN-DELAY spaces the polls; a server refusing with
//! `[SYS/TEMP]` is retried at growing gaps; SIGTERM in the middle of a
//! large message stores it, deletes nothing unstored and exits 0; SIGHUP
//! adds an account that is then polled, and a bad file on SIGHUP keeps the
//! daemon running on the configuration in force; a second SIGTERM exits
//! at once, deleting nothing.
//!
//! Every wait is for an event (a line on the daemon's stderr, a file
//! appearing), with a generous limit that only a failing test reaches.
#![cfg(unix)]

mod peer_examples;
#[path = "../../../pop3-tokio/tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use peer_examples::example_binary;

const PASSWORD: &str = "secret";
/// The limit of every wait: reached only when the test fails.
const LIMIT: Duration = Duration::from_secs(60);

const FETCHES: [(&str, &str); 3] = [
    ("pop3-blocking", "fetch-blocking"),
    ("pop3-tokio", "fetch"),
    ("pop3-async-std", "fetch-smol"),
];

/// A child process's stderr, line by line.
struct Lines {
    rx: mpsc::Receiver<String>,
    /// Every line read so far (for failure messages).
    seen: Vec<String>,
}

impl Lines {
    fn of(stream: impl Read + Send + 'static) -> Lines {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines {
            rx,
            seen: Vec::new(),
        }
    }

    /// The next line for which `want` holds (the others are kept in `seen`).
    fn until(&mut self, what: &str, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    eprintln!("| {line}");
                    self.seen.push(line.clone());
                    if want(&line) {
                        return line;
                    }
                }
                Err(_) => panic!("no line {what}; lines:\n{}", self.seen.join("\n")),
            }
        }
    }
}

/// This project's `pop3d` on a Maildir root, users `alice`, `bob`.
struct Pop3d {
    child: Child,
    port: u16,
    root: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Pop3d {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Pop3d {
    fn start(extra: &[&str]) -> Pop3d {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        for user in ["alice", "bob"] {
            for sub in ["new", "cur", "tmp"] {
                std::fs::create_dir_all(root.join(user).join(sub)).unwrap();
            }
        }
        let users = dir.path().join("users");
        std::fs::write(
            &users,
            format!("alice:{{PLAIN}}{PASSWORD}\nbob:{{PLAIN}}{PASSWORD}\n"),
        )
        .unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert_file, cert.cert.pem()).unwrap();
        std::fs::write(&key_file, cert.key_pair.serialize_pem()).unwrap();
        let mut child = Command::new(example_binary("pop3-blocking", "pop3d-blocking"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--allow-plaintext-auth",
                "--allow-root",
            ])
            .arg("--maildir-root")
            .arg(&root)
            .arg("--users")
            .arg(&users)
            .arg("--cert")
            .arg(&cert_file)
            .arg("--key")
            .arg(&key_file)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pop3d-blocking");
        let mut out = Lines::of(child.stdout.take().unwrap());
        let line = out.until("with the port", |l| l.contains("listening on 127.0.0.1:"));
        let port = line
            .split("listening on 127.0.0.1:")
            .nth(1)
            .and_then(|r| r.split(',').next())
            .and_then(|p| p.parse().ok())
            .expect("port");
        Pop3d {
            child,
            port,
            root,
            _dir: dir,
        }
    }

    /// Delivers a message into `user`'s Maildir, as an MDA would.
    fn deliver(&self, user: &str, name: &str, message: &[u8]) {
        let dir = self.root.join(user);
        std::fs::write(dir.join("tmp").join(name), message).unwrap();
        std::fs::rename(dir.join("tmp").join(name), dir.join("new").join(name)).unwrap();
    }

    /// The messages on the server (file names up to the flags).
    fn on_server(&self, user: &str) -> Vec<String> {
        files(&self.root.join(user))
            .into_iter()
            .map(|(p, _)| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                name.split(':').next().unwrap_or("").to_owned()
            })
            .collect()
    }

    fn url(&self, user: &str) -> String {
        format!("pop://{user}@127.0.0.1:{}", self.port)
    }
}

/// The messages of a Maildir (`new/` and `cur/`) with their contents.
fn files(maildir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        let Ok(entries) = std::fs::read_dir(maildir.join(sub)) else {
            continue;
        };
        for e in entries {
            let path = e.unwrap().path();
            out.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    out
}

fn message(n: usize, lines: usize) -> Vec<u8> {
    let mut m =
        format!("Subject: message {n}\nMessage-ID: <daemon-{n}@example.org>\n\n").into_bytes();
    for l in 0..lines {
        m.extend_from_slice(format!("message {n} line {l:07} of some text\n").as_bytes());
    }
    m
}

/// A running `fetch --daemon`.
struct Daemon {
    child: Child,
    err: Lines,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    fn start(bin: &Path, args: &[&str]) -> Daemon {
        let mut child = Command::new(bin)
            .args(args)
            .env("POP3_PASSWORD", PASSWORD)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start fetch");
        let err = Lines::of(child.stderr.take().unwrap());
        Daemon { child, err }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// SIGTERM, then the exit status.
    fn stop(mut self) -> Option<i32> {
        self.signal("TERM");
        self.err
            .until("saying it stopped", |l| l.ends_with(": stopped"));
        self.child.wait().unwrap().code()
    }
}

/// `next poll in 1.234 s`, in seconds.
fn next_poll(line: &str) -> f64 {
    line.split("next poll in ")
        .nth(1)
        .and_then(|r| r.strip_suffix(" s"))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no next poll time in {line:?}"))
}

fn url_args<'a>(url: &'a str, maildir: &'a str) -> Vec<&'a str> {
    vec![
        url,
        "--maildir",
        maildir,
        "--auth",
        "USER",
        "--insecure-cleartext-login",
        "--delete",
    ]
}

fn two_polls_pick_up_mail_delivered_between_them(package: &str, example: &str) {
    let server = Pop3d::start(&[]);
    server.deliver("alice", "1.a", &message(1, 3));
    server.deliver("alice", "2.a", &message(2, 3));
    let work = tempfile::tempdir().unwrap();
    let maildir = work.path().join("Maildir");
    let (url, md) = (server.url("alice"), maildir.to_string_lossy().into_owned());
    let mut args = url_args(&url, &md);
    args.extend(["--daemon", "100ms"]);
    let mut daemon = Daemon::start(&example_binary(package, example), &args);
    daemon
        .err
        .until("for the first poll", |l| l.contains(": ok (0): 2 new"));
    assert_eq!(files(&maildir).len(), 2);
    server.deliver("alice", "3.a", &message(3, 3));
    daemon.err.until("for the mail delivered since", |l| {
        l.contains(": ok (0): 1 new")
    });
    assert_eq!(files(&maildir).len(), 3);
    assert!(server.on_server("alice").is_empty());
    assert_eq!(daemon.stop(), Some(0));
}

#[test]
fn blocking_daemon_two_polls_pick_up_mail_delivered_between_them() {
    two_polls_pick_up_mail_delivered_between_them(FETCHES[0].0, FETCHES[0].1);
}

#[test]
fn tokio_daemon_two_polls_pick_up_mail_delivered_between_them() {
    two_polls_pick_up_mail_delivered_between_them(FETCHES[1].0, FETCHES[1].1);
}

#[test]
fn smol_daemon_two_polls_pick_up_mail_delivered_between_them() {
    two_polls_pick_up_mail_delivered_between_them(FETCHES[2].0, FETCHES[2].1);
}

/// The server enforces a LOGIN-DELAY of one second; the daemon polls
/// every 100 ms: it schedules each next poll no sooner than the delay, so
/// the server never refuses a login with `[LOGIN-DELAY]`.
fn the_servers_login_delay_spaces_the_polls(package: &str, example: &str) {
    let server = Pop3d::start(&["--login-delay", "1"]);
    server.deliver("alice", "1.a", &message(1, 3));
    let work = tempfile::tempdir().unwrap();
    let md = work.path().join("Maildir").to_string_lossy().into_owned();
    let url = server.url("alice");
    let mut args = url_args(&url, &md);
    args.extend(["--daemon", "100ms"]);
    let mut daemon = Daemon::start(&example_binary(package, example), &args);
    for poll in 0..3 {
        let line = daemon
            .err
            .until("for a poll", |l| l.contains("next poll in"));
        assert!(
            line.contains(": ok (0): ") && line.contains("server LOGIN-DELAY 1 s"),
            "poll {poll} was refused or did not see the delay: {line}"
        );
        assert!(next_poll(&line) >= 1.0, "poll {poll}: {line}");
    }
    assert!(
        !daemon.err.seen.iter().any(|l| l.contains("LOGIN-DELAY]")),
        "a login was refused for the delay:\n{}",
        daemon.err.seen.join("\n")
    );
    assert_eq!(daemon.stop(), Some(0));
}

#[test]
fn blocking_daemon_respects_the_servers_login_delay() {
    the_servers_login_delay_spaces_the_polls(FETCHES[0].0, FETCHES[0].1);
}

#[test]
fn tokio_daemon_respects_the_servers_login_delay() {
    the_servers_login_delay_spaces_the_polls(FETCHES[1].0, FETCHES[1].1);
}

#[test]
fn smol_daemon_respects_the_servers_login_delay() {
    the_servers_login_delay_spaces_the_polls(FETCHES[2].0, FETCHES[2].1);
}

/// A server that greets and then refuses every command with
/// `-ERR [SYS/TEMP]` (QUIT excepted); counts the connections.
fn busy_server() -> (u16, mpsc::Receiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let _ = tx.send(());
            std::thread::spawn(move || {
                let _ = stream.write_all(b"+OK busy server\r\n");
                let reader = BufReader::new(stream.try_clone().unwrap());
                for line in reader.lines() {
                    let Ok(line) = line else { break };
                    if line.eq_ignore_ascii_case("QUIT") {
                        let _ = stream.write_all(b"+OK bye\r\n");
                        break;
                    }
                    let _ = stream.write_all(b"-ERR [SYS/TEMP] too busy, try later\r\n");
                }
            });
        }
    });
    (port, rx)
}

/// Each temporary failure in a row is followed by a longer wait (the
/// logged next times grow), the first shorter than the interval.
fn sys_temp_backs_off_with_growing_gaps(package: &str, example: &str) {
    let (port, _connections) = busy_server();
    let work = tempfile::tempdir().unwrap();
    let md = work.path().join("Maildir").to_string_lossy().into_owned();
    let url = format!("pop://alice@127.0.0.1:{port}");
    let mut args = url_args(&url, &md);
    args.extend(["--daemon", "400ms"]);
    let mut daemon = Daemon::start(&example_binary(package, example), &args);
    let mut gaps = Vec::new();
    for _ in 0..4 {
        let line = daemon
            .err
            .until("for a failed poll", |l| l.contains("next poll in"));
        assert!(
            line.contains("temporary failure, backing off (75)") && line.contains("SYS/TEMP"),
            "{line}"
        );
        gaps.push(next_poll(&line));
    }
    assert!(
        gaps[0] < 0.4,
        "the first retry comes before the interval: {gaps:?}"
    );
    assert!(
        gaps.windows(2).all(|w| w[0] < w[1]),
        "the gaps grow: {gaps:?}"
    );
    assert_eq!(daemon.stop(), Some(0));
}

#[test]
fn blocking_daemon_backs_off_after_sys_temp() {
    sys_temp_backs_off_with_growing_gaps(FETCHES[0].0, FETCHES[0].1);
}

#[test]
fn tokio_daemon_backs_off_after_sys_temp() {
    sys_temp_backs_off_with_growing_gaps(FETCHES[1].0, FETCHES[1].1);
}

#[test]
fn smol_daemon_backs_off_after_sys_temp() {
    sys_temp_backs_off_with_growing_gaps(FETCHES[2].0, FETCHES[2].1);
}

/// SIGTERM while a large message is coming in (its file has appeared in
/// `tmp/`): the daemon stores it, deletes nothing it has not stored, and
/// exits 0; every message is then either in the Maildir once or still on
/// the server, and the large one is stored.
fn sigterm_during_a_large_retr_stores_it_and_exits_0(package: &str, example: &str) {
    let server = Pop3d::start(&[]);
    let big = message(0, 800_000); // ~30 MB
    server.deliver("alice", "1.big", &big);
    let small: Vec<Vec<u8>> = (1..4).map(|n| message(n, 5)).collect();
    for (n, m) in small.iter().enumerate() {
        server.deliver("alice", &format!("{}.small", n + 2), m);
    }
    let work = tempfile::tempdir().unwrap();
    let maildir = work.path().join("Maildir");
    let (url, md) = (server.url("alice"), maildir.to_string_lossy().into_owned());
    let mut args = url_args(&url, &md);
    args.extend(["--daemon", "1h"]);
    let mut daemon = Daemon::start(&example_binary(package, example), &args);
    receiving(&maildir);
    daemon.signal("TERM");
    let poll = daemon
        .err
        .until("for the interrupted poll", |l| l.contains("(0): "));
    assert!(
        poll.contains("stopped (0): 1 new") && poll.contains("3 left for a later poll"),
        "the session ends after the message in flight: {poll}"
    );
    daemon
        .err
        .until("saying it stopped", |l| l.ends_with(": stopped"));
    assert_eq!(daemon.child.wait().unwrap().code(), Some(0));
    let stored: Vec<Vec<u8>> = files(&maildir).into_iter().map(|(_, c)| c).collect();
    assert_eq!(
        stored.iter().filter(|c| **c == big).count(),
        1,
        "the message in flight is stored once"
    );
    let on_server = server.on_server("alice");
    for (n, m) in small.iter().enumerate() {
        let copies = stored.iter().filter(|c| *c == m).count();
        let kept = on_server.contains(&format!("{}.small", n + 2));
        assert!(copies <= 1, "message {n} stored {copies} times");
        assert!(kept || copies == 1, "message {n} deleted but not stored");
    }
    assert!(
        on_server.contains(&"1.big".to_string()) || stored.contains(&big),
        "the large message is lost"
    );
}

#[test]
fn blocking_daemon_sigterm_during_a_large_retr_stores_it_and_exits_0() {
    sigterm_during_a_large_retr_stores_it_and_exits_0(FETCHES[0].0, FETCHES[0].1);
}

#[test]
fn tokio_daemon_sigterm_during_a_large_retr_stores_it_and_exits_0() {
    sigterm_during_a_large_retr_stores_it_and_exits_0(FETCHES[1].0, FETCHES[1].1);
}

#[test]
fn smol_daemon_sigterm_during_a_large_retr_stores_it_and_exits_0() {
    sigterm_during_a_large_retr_stores_it_and_exits_0(FETCHES[2].0, FETCHES[2].1);
}

/// Returns once a message is being written into the Maildir (the event:
/// its file in `tmp/`).
fn receiving(maildir: &Path) {
    let deadline = Instant::now() + LIMIT;
    loop {
        let begun = std::fs::read_dir(maildir.join("tmp"))
            .map(|d| d.count() > 0)
            .unwrap_or(false);
        if begun {
            return;
        }
        assert!(Instant::now() < deadline, "no message was ever begun");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A second SIGTERM while the first waits for the message in flight: the
/// daemon exits at once with status 1, and the server deletes nothing.
fn a_second_sigterm_exits_at_once_and_nothing_is_deleted(package: &str, example: &str) {
    let server = Pop3d::start(&[]);
    server.deliver("alice", "1.big", &message(0, 800_000));
    server.deliver("alice", "2.small", &message(1, 5));
    let work = tempfile::tempdir().unwrap();
    let maildir = work.path().join("Maildir");
    let (url, md) = (server.url("alice"), maildir.to_string_lossy().into_owned());
    let mut args = url_args(&url, &md);
    args.extend(["--daemon", "1h"]);
    let mut daemon = Daemon::start(&example_binary(package, example), &args);
    receiving(&maildir);
    daemon.signal("TERM");
    daemon
        .err
        .until("for the first stop", |l| l.contains(": stopping: "));
    daemon.signal("TERM");
    daemon
        .err
        .until("for the second stop", |l| l.contains("asked again to stop"));
    assert_eq!(daemon.child.wait().unwrap().code(), Some(1));
    let mut on_server = server.on_server("alice");
    on_server.sort();
    assert_eq!(on_server, ["1.big", "2.small"], "nothing is deleted");
}

#[test]
fn blocking_daemon_second_sigterm_exits_at_once_and_nothing_is_deleted() {
    a_second_sigterm_exits_at_once_and_nothing_is_deleted(FETCHES[0].0, FETCHES[0].1);
}

#[test]
fn tokio_daemon_second_sigterm_exits_at_once_and_nothing_is_deleted() {
    a_second_sigterm_exits_at_once_and_nothing_is_deleted(FETCHES[1].0, FETCHES[1].1);
}

fn account(name: &str, url: &str, maildir: &Path) -> String {
    format!(
        "[account.{name}]\nurl = \"{url}\"\nmaildir = \"{}\"\nauth = \"USER\"\n\
         insecure_cleartext_login = true\npassword_env = \"POP3_PASSWORD\"\ndelete = true\n",
        maildir.display()
    )
}

/// SIGHUP rereads the file: an account added is polled; a file that does
/// not parse is refused with its line and key, and the accounts in force
/// go on being polled.
fn sighup_adds_an_account_and_a_bad_file_keeps_the_one_in_force(package: &str, example: &str) {
    let server = Pop3d::start(&[]);
    server.deliver("alice", "1.a", &message(1, 3));
    server.deliver("bob", "1.b", &message(2, 3));
    let work = tempfile::tempdir().unwrap();
    let (alice_md, bob_md) = (work.path().join("alice"), work.path().join("bob"));
    let config = work.path().join("config.toml");
    let daemon_table = "[daemon]\ninterval = \"100ms\"\nconcurrency = 2\n\n";
    std::fs::write(
        &config,
        format!(
            "{daemon_table}{}",
            account("a", &server.url("alice"), &alice_md)
        ),
    )
    .unwrap();
    let config_arg = config.to_string_lossy().into_owned();
    let mut daemon = Daemon::start(
        &example_binary(package, example),
        &["--config", &config_arg, "--daemon"],
    );
    daemon
        .err
        .until("for alice's poll", |l| l.contains(": a: ok (0): 1 new"));

    std::fs::write(
        &config,
        format!(
            "{daemon_table}{}\n{}",
            account("a", &server.url("alice"), &alice_md),
            account("b", &server.url("bob"), &bob_md)
        ),
    )
    .unwrap();
    daemon.signal("HUP");
    daemon
        .err
        .until("for the reload", |l| l.contains("added: b;"));
    daemon
        .err
        .until("for bob's poll", |l| l.contains(": b: ok (0): 1 new"));
    assert_eq!(files(&bob_md).len(), 1);

    std::fs::write(
        &config,
        format!(
            "{daemon_table}{}\ndelet = true\n",
            account("a", &server.url("alice"), &alice_md)
        ),
    )
    .unwrap();
    daemon.signal("HUP");
    let refused = daemon
        .err
        .until("for the refused reload", |l| l.contains("reload failed"));
    assert!(
        refused.contains(&format!("{config_arg}:13:")) && refused.contains("account.a.delet"),
        "the file, line and key are named: {refused}"
    );
    // Still running, on both accounts.
    server.deliver("bob", "2.b", &message(3, 3));
    daemon
        .err
        .until("for bob's next mail", |l| l.contains(": b: ok (0): 1 new"));
    assert_eq!(files(&bob_md).len(), 2);
    assert_eq!(daemon.stop(), Some(0));
}

#[test]
fn blocking_daemon_sighup_adds_an_account_and_a_bad_file_keeps_the_one_in_force() {
    sighup_adds_an_account_and_a_bad_file_keeps_the_one_in_force(FETCHES[0].0, FETCHES[0].1);
}

#[test]
fn tokio_daemon_sighup_adds_an_account_and_a_bad_file_keeps_the_one_in_force() {
    sighup_adds_an_account_and_a_bad_file_keeps_the_one_in_force(FETCHES[1].0, FETCHES[1].1);
}

#[test]
fn smol_daemon_sighup_adds_an_account_and_a_bad_file_keeps_the_one_in_force() {
    sighup_adds_an_account_and_a_bad_file_keeps_the_one_in_force(FETCHES[2].0, FETCHES[2].1);
}
