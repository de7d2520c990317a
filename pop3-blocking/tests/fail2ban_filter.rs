//! The failed-login log line and the fail2ban filter shipped in
//! `contrib/fail2ban/pop3d.conf`: a real server logs failed logins (USER/PASS
//! with a hostile name, APOP, SASL PLAIN) as `pop3d` logs them, and
//! `fail2ban-regex` (from the `fail2ban` package) finds every one of them,
//! with the client's address, and nothing else.
#![cfg(feature = "cli")]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pop3_blocking::server::{Pop3Server, Security, ServerOptions};
use pop3_proto::server::ServerConfig;
use pop3_proto::store::MemoryStore;

#[test]
fn fail2ban_regex_finds_every_failed_login_and_its_address() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("pop3d.log");
    let log = Arc::new(Mutex::new(std::fs::File::create(&log_path).unwrap()));
    pop3_blocking::cli::init_logging_to(move || LockedWriter(log.clone()));

    let store = Arc::new(MemoryStore::new());
    store.add_user("alice", "secret");
    let config = ServerConfig::default()
        .allow_plaintext_auth(true)
        .auth_failure_delay(Duration::ZERO)
        .max_bad_commands(10, 10);
    let server = Pop3Server::build(store, config, None, ServerOptions::default());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = {
        let server = server.clone();
        std::thread::spawn(move || {
            let (stream, peer) = listener.accept().unwrap();
            server.serve_connection(stream, peer, Security::Plain);
        })
    };
    let mut client = TcpStream::connect(addr).unwrap();
    // A hostile name with a quote and a fake address, a plain wrong
    // password, a wrong SASL PLAIN (base64 of "\0bob\0bad"), then a good
    // login, which is not logged as a failure.
    client
        .write_all(
            b"USER x\"rip=10.9.9.9\r\nPASS wrong\r\nUSER alice\r\nPASS nope\r\n\
AUTH PLAIN AGJvYgBiYWQ=\r\nUSER alice\r\nPASS secret\r\nQUIT\r\n",
        )
        .unwrap();
    let mut lines = Vec::new();
    for line in BufReader::new(&client).lines() {
        lines.push(line.unwrap());
    }
    serving.join().unwrap();
    assert!(lines.last().unwrap().starts_with("+OK"), "{lines:?}");
    server.wait_idle();

    let text = std::fs::read_to_string(&log_path).unwrap();
    let failures: Vec<&str> = text.lines().filter(|l| l.contains("auth failed")).collect();
    assert_eq!(failures.len(), 3, "{text}");
    assert!(
        failures[0].ends_with(r#"auth failed: rip=127.0.0.1 user="x\"rip=10.9.9.9" mech=USER"#),
        "{text}"
    );
    assert!(failures[1].ends_with(r#"auth failed: rip=127.0.0.1 user="alice" mech=USER"#));
    assert!(failures[2].ends_with(r#"auth failed: rip=127.0.0.1 user="bob" mech=PLAIN"#));

    let filter = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/fail2ban/pop3d.conf");
    let out = Command::new("fail2ban-regex")
        .arg("--print-all-matched")
        .arg(&log_path)
        .arg(&filter)
        .output()
        .unwrap_or_else(|e| panic!("fail2ban-regex not found ({e}): apt-get install -y fail2ban"));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let total = text.lines().count();
    assert!(
        report.contains(&format!(
            "Lines: {total} lines, 0 ignored, 3 matched, {} missed",
            total - 3
        )),
        "{report}"
    );
    assert!(report.contains("127.0.0.1"), "{report}");
    assert!(
        !report.contains("10.9.9.9 "),
        "the forged address was taken: {report}"
    );
}

struct LockedWriter(Arc<Mutex<std::fs::File>>);

impl Write for LockedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.lock().unwrap().flush()
    }
}
