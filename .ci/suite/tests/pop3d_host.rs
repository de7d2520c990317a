//! Every runtime's `pop3d` example and its host: started as root it binds a
//! port below 1024, then serves a Maildir as `nobody` (every uid and gid of
//! every thread nobody's, root's files read at start, a reload of a file only
//! root can read refused saying why); as root without a user it refuses to
//! serve Maildirs (status 78, saying how to fix it); it serves the sockets a
//! service manager hands over (systemd's socket activation, plain and
//! pop3s) instead of its configured addresses; and it tells `NOTIFY_SOCKET`
//! (a path or an abstract name) READY, RELOADING and STOPPING.
#![cfg(target_os = "linux")]

mod peer_examples;
#[path = "../../../pop3-tokio/tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use peer_examples::example_binary;
use pop3_blocking::client::{ConnectOptions, Pop3Client, Security, TlsVerification};

const EXAMPLES: [(&str, &str); 3] = [
    ("pop3-blocking", "pop3d-blocking"),
    ("pop3-tokio", "pop3d"),
    ("pop3-async-std", "pop3d-smol"),
];

/// A started server: its process and output.
struct Server {
    child: Child,
    stdout: BufReader<ChildStdout>,
    stderr: BufReader<ChildStderr>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn spawn(mut command: Command) -> Server {
        let mut child = command
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the server");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let stderr = BufReader::new(child.stderr.take().expect("stderr"));
        Server {
            child,
            stdout,
            stderr,
        }
    }

    /// Waits for a stdout line containing `text`.
    fn out_line(&mut self, text: &str) -> String {
        let mut line = String::new();
        loop {
            line.clear();
            assert!(
                self.stdout.read_line(&mut line).expect("stdout") > 0,
                "the server ended without printing {text:?}"
            );
            if line.contains(text) {
                return line.trim_end().to_owned();
            }
        }
    }

    /// Waits for a stderr line containing `text`.
    fn log_line(&mut self, text: &str) -> String {
        let mut line = String::new();
        loop {
            line.clear();
            assert!(
                self.stderr.read_line(&mut line).expect("stderr") > 0,
                "the server ended without logging {text:?}"
            );
            if line.contains(text) {
                return line;
            }
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    fn wait_exit(&mut self) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "the server did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A plain POP3 session, line by line.
struct Session(BufReader<TcpStream>);

impl Session {
    fn open(port: u16) -> Session {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        let mut s = Session(BufReader::new(stream));
        let greeting = s.line();
        assert!(greeting.starts_with("+OK"), "{greeting:?}");
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

    fn login(&mut self, user: &str, password: &str) {
        assert!(self.cmd(&format!("USER {user}")).starts_with("+OK"));
        let reply = self.cmd(&format!("PASS {password}"));
        assert!(reply.starts_with("+OK"), "{reply:?}");
    }

    /// A multi-line reply's lines, without the final dot.
    fn multi(&mut self, command: &str) -> Vec<String> {
        let first = self.cmd(command);
        assert!(first.starts_with("+OK"), "{command}: {first:?}");
        let mut lines = Vec::new();
        loop {
            let line = self.line();
            if line == ".\r\n" {
                return lines;
            }
            lines.push(line.trim_end().to_owned());
        }
    }
}

fn require_root(what: &str) {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let uid = status_ids(&status, "Uid:");
    assert_eq!(
        uid[1], 0,
        "{what} needs root (it binds a port below 1024 and becomes nobody): run it as root, as CI does (sudo -E cargo test -p pop3-suite --test pop3d_host)"
    );
}

/// The numbers of a `/proc/PID/status` line.
fn status_ids(status: &str, key: &str) -> Vec<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} line"))
        .split_whitespace()
        .map(|n| n.parse().expect("a number"))
        .collect()
}

/// `id` of nobody: its uid and its primary gid.
fn nobody() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "nobody"])
            .output()
            .expect("run id");
        assert!(out.status.success(), "this host has no user nobody");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("a number")
    };
    (id("-u"), id("-g"))
}

/// A free port below 1024 on loopback, from 600 up.
fn free_privileged_port() -> u16 {
    (600..1024)
        .find(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port between 600 and 1023 on 127.0.0.1")
}

fn chown_tree(path: &Path, (uid, gid): (u32, u32)) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown");
    if path.is_dir() {
        for entry in std::fs::read_dir(path).expect("read_dir") {
            chown_tree(&entry.expect("entry").path(), (uid, gid));
        }
    }
}

#[test]
fn as_root_pop3d_binds_a_port_below_1024_then_serves_a_maildir_as_nobody() {
    require_root("this test");
    let nobody = nobody();
    for (package, example) in EXAMPLES {
        let bin = example_binary(package, example);
        let dir = tempfile::tempdir().expect("tempdir");
        // nobody walks into the deployment's directory, not further.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711))
            .expect("chmod");
        let root = dir.path().join("mail");
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(root.join("alice").join(sub)).expect("maildir");
        }
        std::fs::write(
            root.join("alice/new/1.host"),
            "Subject: as nobody\r\n\r\nserved by nobody\r\n",
        )
        .expect("message");
        chown_tree(&root, nobody);
        // Root's own file, readable by root alone: read at start.
        let users = dir.path().join("passwd");
        std::fs::write(&users, "alice:{PLAIN}secret\n").expect("passwd");
        std::fs::set_permissions(&users, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let port = free_privileged_port();
        let mut command = Command::new(&bin);
        command
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--maildir-root")
            .arg(&root)
            .arg("--users")
            .arg(&users)
            .args(["--user", "nobody", "--allow-plaintext-auth"]);
        let mut server = Server::spawn(command);
        server.out_line(&format!("listening on 127.0.0.1:{port}"));
        server.log_line("serving as user nobody");
        // Every thread (a runtime's workers too) is nobody's.
        let tasks = std::fs::read_dir(format!("/proc/{}/task", server.child.id()))
            .expect("the server's threads");
        for task in tasks {
            let status = std::fs::read_to_string(task.expect("a thread").path().join("status"))
                .expect("a thread's status");
            assert_eq!(status_ids(&status, "Uid:"), [nobody.0; 4], "{example}");
            assert_eq!(status_ids(&status, "Gid:"), [nobody.1; 4], "{example}");
            assert_eq!(status_ids(&status, "Groups:"), [nobody.1], "{example}");
        }
        let mut session = Session::open(port);
        session.login("alice", "secret");
        let message = session.multi("RETR 1");
        assert_eq!(message.last().map(String::as_str), Some("served by nobody"));
        assert!(session.cmd("DELE 1").starts_with("+OK"));
        assert!(session.cmd("QUIT").starts_with("+OK"), "{example}");
        let left = ["new", "cur"]
            .iter()
            .flat_map(|sub| std::fs::read_dir(root.join("alice").join(sub)).expect("read"))
            .count();
        assert_eq!(left, 0, "{example}: nobody could not delete the message");
        // A reload reads the files as nobody: root's passwd-file is refused,
        // saying so; readable, it is reloaded.
        server.signal("HUP");
        let why = server.log_line("reload failed");
        assert!(
            why.contains("runs as user nobody") && why.contains("must be readable by it"),
            "{example}: {why}"
        );
        std::fs::set_permissions(&users, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        server.signal("HUP");
        server.log_line("reloaded the configuration");
        server.signal("TERM");
        assert_eq!(server.wait_exit(), 0, "{example}");
    }
}

#[test]
fn as_root_without_a_user_pop3d_refuses_maildirs_with_status_78_saying_how() {
    require_root("this test");
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("mail");
    std::fs::create_dir(&root).expect("root");
    let users = dir.path().join("passwd");
    std::fs::write(&users, "alice:{PLAIN}secret\n").expect("passwd");
    for (package, example) in EXAMPLES {
        let out = Command::new(example_binary(package, example))
            .args(["--listen", "127.0.0.1:0", "--maildir-root"])
            .arg(&root)
            .arg("--users")
            .arg(&users)
            .stdin(Stdio::null())
            .output()
            .expect("run the server");
        assert_eq!(out.status.code(), Some(78), "{example}");
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            said.contains("refusing to serve as root"),
            "{example}: {said}"
        );
        assert!(
            said.contains("set user (--user)") && said.contains("--allow-root"),
            "{example}: {said}"
        );
    }
}

/// Binds one loopback listener per name, prints their ports, puts them at
/// fd 3 on as systemd does and executes the rest of its arguments.
const ACTIVATE: &str = r#"
import os, socket, sys
names = sys.argv[1]
socks = []
for _ in names.split(":"):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    socks.append(s)
print("ports", " ".join(str(s.getsockname()[1]) for s in socks), flush=True)
fds = [s.detach() for s in socks]
high = []
for i, fd in enumerate(fds):
    high.append(os.dup2(fd, 50 + i))
    os.close(fd)
for i, fd in enumerate(high):
    os.dup2(fd, 3 + i)
    os.close(fd)
os.environ["LISTEN_FDS"] = str(len(fds))
os.environ["LISTEN_PID"] = str(os.getpid())
os.environ["LISTEN_FDNAMES"] = names
os.execv(sys.argv[2], sys.argv[2:])
"#;

/// The server under `ACTIVATE` with sockets named `names`, and the ports.
fn activated(dir: &Path, bin: &Path, names: &str, args: &[&str]) -> (Server, Vec<u16>) {
    support::require_program("python3", "apt-get install -y python3");
    let script = dir.join("activate.py");
    std::fs::write(&script, ACTIVATE).expect("script");
    let mut command = Command::new("python3");
    command.arg(&script).arg(names).arg(bin).args(args);
    let mut server = Server::spawn(command);
    let ports = server.out_line("ports ");
    let ports = ports
        .split_whitespace()
        .skip(1)
        .map(|p| p.parse().expect("a port"))
        .collect();
    (server, ports)
}

#[test]
fn socket_activated_pop3d_serves_the_handed_over_plain_and_pop3s_sockets_not_its_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (package, example) in EXAMPLES {
        let bin = example_binary(package, example);
        // Held here: binding the configured address would fail (status 78).
        let held = TcpListener::bind("127.0.0.1:0").expect("bind");
        let configured = held.local_addr().expect("addr").to_string();
        let (mut server, ports) = activated(
            dir.path(),
            &bin,
            "pop3:pop3s",
            &["--listen", &configured, "--tls-listen", &configured],
        );
        server.out_line("serving the sockets of the service manager");
        let ca = server.out_line("CA certificate: ");
        let ca = PathBuf::from(ca.split("CA certificate: ").nth(1).expect("path"));
        let mut plain = Session::open(ports[0]);
        let capa = plain.multi("CAPA");
        assert!(capa.iter().any(|c| c == "STLS"), "{example}: {capa:?}");
        plain.login("demo", "demo");
        assert!(plain.cmd("STAT").starts_with("+OK 5 "), "{example}");
        assert!(plain.cmd("QUIT").starts_with("+OK"));
        let mut options = ConnectOptions::new(Security::ImplicitTls);
        options.verification = TlsVerification::ca_file(&ca).expect("the demo CA");
        let mut tls = Pop3Client::connect("127.0.0.1", ports[1], options).expect("pop3s");
        tls.login("demo", "demo").expect("login over pop3s");
        assert_eq!(tls.stat().expect("STAT").count, 5, "{example}");
        tls.quit().expect("QUIT");
        server.signal("TERM");
        assert_eq!(server.wait_exit(), 0, "{example}");
        drop(held);
    }
}

#[test]
fn socket_activation_with_an_unknown_socket_name_is_a_configuration_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (package, example) in EXAMPLES {
        let bin = example_binary(package, example);
        let (mut server, _) = activated(dir.path(), &bin, "pop3:imaps", &[]);
        let mut said = String::new();
        server.stderr.read_to_string(&mut said).expect("stderr");
        assert_eq!(server.wait_exit(), 78, "{example}: {said}");
        assert!(
            said.contains("socket 1 is named \"imaps\"") && said.contains("FileDescriptorName="),
            "{example}: {said}"
        );
    }
}

/// The next notice on `socket` (waiting up to a minute).
fn notice(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).expect("a notice within a minute");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn pop3d_tells_notify_socket_ready_reloading_and_stopping() {
    use std::os::linux::net::SocketAddrExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    for (n, (package, example)) in EXAMPLES.into_iter().enumerate() {
        let bin = example_binary(package, example);
        // A path for some runtimes, an abstract name for the others.
        let (socket, address) = if n % 2 == 0 {
            let path = dir.path().join(format!("notify-{n}"));
            let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
            (socket, path.display().to_string())
        } else {
            let name = format!("pop3d-notify-test-{}-{n}", std::process::id());
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                .expect("abstract name");
            let socket = UnixDatagram::bind_addr(&addr).expect("bind the abstract socket");
            (socket, format!("@{name}"))
        };
        socket
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        let mut command = Command::new(&bin);
        command
            .args(["--listen", "127.0.0.1:0"])
            .env("NOTIFY_SOCKET", &address);
        let mut server = Server::spawn(command);
        assert_eq!(notice(&socket), "READY=1", "{example}");
        // Ready means listening: a session opens now.
        let line = server.out_line("listening on 127.0.0.1:");
        let port: u16 = line
            .split("127.0.0.1:")
            .nth(1)
            .and_then(|p| p.split(',').next())
            .and_then(|p| p.parse().ok())
            .expect("port");
        let mut session = Session::open(port);
        server.signal("HUP");
        let reloading = notice(&socket);
        let usec: u64 = reloading
            .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
            .unwrap_or_else(|| panic!("{example}: {reloading:?}"))
            .parse()
            .expect("microseconds");
        assert!(usec > 0, "{example}");
        assert_eq!(notice(&socket), "READY=1", "{example}");
        server.signal("TERM");
        assert_eq!(notice(&socket), "STOPPING=1", "{example}");
        assert!(session.line().starts_with("-ERR"), "{example}");
        assert_eq!(server.wait_exit(), 0, "{example}");
    }
}
