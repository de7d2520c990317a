//! Test support for interoperability tests against real POP3 peers on
//! loopback: a private Dovecot server, our own server started in-process
//! ([`server`]), Python's poplib, curl and mpop as clients, and a maildrop of
//! awkward messages.
//!
//! Include it from an integration test with `mod support;` (pop3-suite's
//! peer tests include it with `#[path]`). Every external
//! process started here is killed and reaped when its guard is dropped or its
//! time runs out, also when the test panics. The functions that run a client
//! block the calling thread: from an async test, wrap them in
//! [`blocking`] so the runtime (and a server under test on it) keeps running.

#![allow(dead_code)]

pub mod awkward;
pub mod curl;
pub mod dovecot;
pub mod mpop;
pub mod poplib;
pub mod server;

use std::io::Read;
use std::net::{Ipv6Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// How long a client run may take by default before it is killed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The directory holding the peer scripts (`tests/peers`).
pub fn peers_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("peers")
}

/// A TCP port that is free on 127.0.0.1 (and on ::1 when the host has IPv6
/// loopback) at the time of the call. The port is released before returning,
/// so a caller that then fails to bind it must pick another and retry.
pub fn free_port() -> u16 {
    for _ in 0..100 {
        let v4 = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = v4.local_addr().expect("local address").port();
        match TcpListener::bind((Ipv6Addr::LOCALHOST, port)) {
            Ok(_) => return port,
            // No IPv6 on loopback: the IPv4 port is all that matters.
            Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => return port,
            Err(_) => continue,
        }
    }
    panic!("no free loopback port found in 100 attempts")
}

/// `127.0.0.1:port`.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Panics with an install hint when `program` is not on the `PATH`.
pub fn require_program(program: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false);
    if !found {
        panic!("{program} not found: install {package}: apt-get install -y {package}");
    }
}

/// A child process that is killed and reaped when dropped. When the child
/// leads its own process group (see [`spawn_grouped`]), the whole group is
/// killed, so processes it started cannot outlive it.
pub struct ChildGuard {
    child: Option<Child>,
    pid: u32,
    grouped: bool,
}

impl ChildGuard {
    /// Takes ownership of `child`; `grouped`: it leads its own process group.
    pub fn new(child: Child, grouped: bool) -> ChildGuard {
        ChildGuard {
            pid: child.id(),
            child: Some(child),
            grouped,
        }
    }

    /// The process.
    pub fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("child already reaped")
    }

    /// Kills the process (and its group) if still running, and reaps it.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        // The leader is not reaped yet, so its id still names our group.
        self.kill_group();
        let _ = child.kill();
        child.wait().ok()
    }

    /// Sends SIGKILL to the process group (when grouped). After the leader
    /// has been reaped this is only safe while other members still live.
    pub fn kill_group(&self) {
        if self.grouped {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg("--")
                .arg(format!("-{}", self.pid))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }

    /// Returns the exit status if the process has exited (and reaps it).
    pub fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        let status = self.child().try_wait()?;
        if status.is_some() {
            self.child = None;
        }
        Ok(status)
    }

    /// Waits for the process to exit by itself.
    pub fn wait(&mut self) -> std::io::Result<ExitStatus> {
        let status = self.child().wait()?;
        self.child = None;
        Ok(status)
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Spawns `cmd` as the leader of a new process group, guarded.
pub fn spawn_grouped(mut cmd: Command) -> std::io::Result<ChildGuard> {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
    Ok(ChildGuard::new(cmd.spawn()?, true))
}

/// Runs `cmd` to completion with stdin closed and stdout/stderr captured.
///
/// The command runs in a process group of its own. If it has not exited, or
/// its output is still open, after `timeout`, the group is killed and the
/// leader reaped, and this panics with what was printed so far: a hanging
/// peer fails the test instead of blocking the run. The exit status is
/// returned, not checked.
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let what = format!("{cmd:?}");
    let mut guard = spawn_grouped(cmd).unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let stdout = guard.child().stdout.take().expect("piped stdout");
    let stderr = guard.child().stderr.take().expect("piped stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    for (index, mut pipe) in [
        (0, Box::new(stdout) as Box<dyn Read + Send>),
        (1, Box::new(stderr)),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            let _ = tx.send((index, buf));
        });
    }
    drop(tx);
    let deadline = Instant::now() + timeout;
    let mut status = None;
    while Instant::now() < deadline {
        match guard.try_wait() {
            Ok(Some(s)) => {
                status = Some(s);
                break;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("waiting for {what}: {e}"),
        }
    }
    let mut outputs = [Vec::new(), Vec::new()];
    let mut open = 2;
    if status.is_some() {
        while open > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok((index, buf)) => {
                    outputs[index] = buf;
                    open -= 1;
                }
                Err(_) => break,
            }
        }
    }
    let timed_out = status.is_none() || open > 0;
    if timed_out {
        if status.is_some() {
            // The leader exited but something it started holds the output.
            guard.kill_group();
        }
        guard.kill();
        while let Ok((index, buf)) = rx.recv_timeout(Duration::from_secs(5)) {
            outputs[index] = buf;
        }
    }
    let [stdout, stderr] = outputs;
    match status {
        Some(status) if !timed_out => Output {
            status,
            stdout,
            stderr,
        },
        _ => panic!(
            "{what} did not finish within {timeout:?} and was killed\n--- stdout\n{}\n--- stderr\n{}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        ),
    }
}

/// Panics with the captured output unless the run exited with status 0.
pub fn expect_success(what: &str, output: &Output) {
    if !output.status.success() {
        panic!(
            "{what} failed with {}\n--- stdout\n{}\n--- stderr\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// Runs a blocking function (a client run) on tokio's blocking pool, so that an
/// async test's runtime keeps serving meanwhile. A panic inside `f` is
/// re-raised here.
pub async fn blocking<F, R>(f: F) -> R
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(value) => value,
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("blocking task failed: {e}"),
        },
    }
}

/// A message as a POP3 server sends it (before dot-stuffing): every line
/// ends with CRLF. A bare LF becomes CRLF, an existing CRLF is kept, and a
/// non-empty message without a final line end gets CRLF appended. A CR not
/// followed by LF is left alone. The empty message stays empty.
pub fn crlf_lines(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 32 + 2);
    for (i, &b) in message.iter().enumerate() {
        if b == b'\n' && (i == 0 || message[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Every CRLF replaced by LF (what a Unix mail store usually keeps).
pub fn crlf_to_lf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// The answer to `TOP n lines` for a message already in [`crlf_lines`]
/// form: the header block up to and including the empty line that ends it,
/// then the first `lines` lines of the body. A message without an empty line
/// is all header.
pub fn top_of(wire: &[u8], lines: usize) -> Vec<u8> {
    let mut end = 0;
    let mut in_header = true;
    let mut body_lines = 0;
    while end < wire.len() {
        let next = match wire[end..].iter().position(|&b| b == b'\n') {
            Some(p) => end + p + 1,
            None => wire.len(),
        };
        let line = &wire[end..next];
        if in_header {
            if line == b"\r\n" {
                in_header = false;
            }
        } else {
            if body_lines == lines {
                break;
            }
            body_lines += 1;
        }
        end = next;
    }
    wire[..end].to_vec()
}

/// A short, readable description of where two byte strings differ.
pub fn first_difference(a: &[u8], b: &[u8]) -> String {
    let at = a
        .iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    let from = at.saturating_sub(20);
    let show = |s: &[u8]| {
        let to = (at + 20).min(s.len());
        format!("{:?}", String::from_utf8_lossy(&s[from.min(s.len())..to]))
    };
    format!(
        "lengths {} and {}, first difference at byte {at}: {} vs {}",
        a.len(),
        b.len(),
        show(a),
        show(b)
    )
}

/// Asserts two byte strings are equal, with a compact message when not
/// (no 20 MB dumps).
#[track_caller]
pub fn assert_bytes_eq(what: &str, got: &[u8], want: &[u8]) {
    if got != want {
        panic!("{what}: {}", first_difference(got, want));
    }
}
