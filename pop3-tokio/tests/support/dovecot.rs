//! A private Dovecot POP3 server per test, on random loopback ports, with
//! STLS and implicit TLS (POP3S) under a private CA. Started by
//! `tests/peers/dovecot.sh`; stopped (process group killed, waited for) when
//! the [`Dovecot`] guard is dropped, also while a test panics. If the test
//! process dies without unwinding, a watcher started with the server kills
//! it within a second and deletes its temporary directory.
//!
//! Configuration worth knowing: passwords are stored `{PLAIN}` (so USER/PASS,
//! APOP, SASL PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-1 and SCRAM-SHA-256 all
//! work), `auth_failure_delay = 0`, `pop3_uidl_format = %f` (the UIDL is the
//! Maildir file name without the `:2,` info), `pop3_no_flag_updates = yes`
//! (files are never renamed by a session), plaintext login allowed.
//!
//! Dovecot behaviour worth knowing (2.3):
//! - RETR sends a stored message with every bare LF turned into CRLF, lone
//!   CRs and NUL bytes untouched, and CRLF appended when the file does not
//!   end with a line end, even for an empty file ([`retr_form`]); LIST and
//!   STAT count the CRLFs but not that appended one ([`list_size`]).
//! - A connection whose remote address equals its local address counts as
//!   secure: on 127.0.0.1 plaintext login works even with
//!   `disable_plaintext_auth = yes`. A client bound to 127.0.0.2 is not
//!   trusted that way.
//! - After a failed login, the next login from the same address is delayed
//!   by a few seconds (the auth penalty); keep wrong-password cases on a
//!   server of their own, or last.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{free_port, loopback, peers_dir, run_with_timeout};

/// A user of the server: name, password and messages (name, bytes as stored).
pub type UserSpec<'a> = (&'a str, &'a str, &'a [(String, Vec<u8>)]);

/// A running private Dovecot; stopped on drop.
pub struct Dovecot {
    dir: tempfile::TempDir,
    pop3_port: u16,
    pop3s_port: u16,
    pid: u32,
    ipv6: bool,
    users: Vec<(String, Vec<String>)>,
}

impl Dovecot {
    /// Writes one Maildir per user (messages in `cur/`, in the given order,
    /// which is also the order Dovecot numbers them) and starts the server
    /// on two free loopback ports (POP3 and POP3S), retrying with other ports
    /// if one was taken meanwhile.
    ///
    /// User names must be plain (no `/`, `:`, leading `.`), passwords must
    /// not contain `:` or line ends (passwd-file format).
    ///
    /// Panics with an install hint when Dovecot is missing.
    pub fn start(users: &[UserSpec<'_>]) -> Dovecot {
        Dovecot::start_with_config(users, "")
    }

    /// [`Dovecot::start`] with more configuration appended to the generated
    /// one (later settings win), e.g. `"disable_plaintext_auth = yes\n"`.
    pub fn start_with_config(users: &[UserSpec<'_>], extra_config: &str) -> Dovecot {
        let dir = tempfile::Builder::new()
            .prefix("pop3-dovecot-")
            .tempdir()
            .expect("temporary directory");
        let mut passwords = String::new();
        let mut names = Vec::new();
        for (user, password, messages) in users {
            assert!(
                !user.is_empty()
                    && !user.starts_with('.')
                    && !user.contains(['/', ':', '\n', '\r', ' ']),
                "unusable user name {user:?}"
            );
            assert!(
                !password.contains([':', '\n', '\r']),
                "unusable password {password:?}"
            );
            let files = write_maildir(&dir.path().join("mail").join(user), messages);
            passwords.push_str(&format!("{user}:{password}\n"));
            names.push((user.to_string(), files));
        }
        std::fs::write(dir.path().join("passwords"), passwords).expect("write passwords");
        if !extra_config.is_empty() {
            std::fs::write(dir.path().join("extra.conf"), extra_config).expect("write extra.conf");
        }

        for _attempt in 0..10 {
            let pop3_port = free_port();
            let pop3s_port = loop {
                let p = free_port();
                if p != pop3_port {
                    break p;
                }
            };
            let mut cmd = Command::new("bash");
            cmd.arg(peers_dir().join("dovecot.sh"))
                .arg("start")
                .arg(dir.path())
                .env("POP3_PORT", pop3_port.to_string())
                .env("POP3S_PORT", pop3s_port.to_string())
                .env("OWNER_PID", std::process::id().to_string())
                .env("REMOVE_ON_OWNER_EXIT", "1");
            let out = run_with_timeout(cmd, Duration::from_secs(60));
            match out.status.code() {
                Some(0) => {
                    let text = String::from_utf8_lossy(&out.stdout);
                    let pid = text
                        .lines()
                        .find_map(|l| l.strip_prefix("DOVECOT_PID="))
                        .and_then(|p| p.trim().parse().ok())
                        .unwrap_or_else(|| panic!("dovecot.sh printed no pid:\n{text}"));
                    let ipv6 = text
                        .lines()
                        .any(|l| l.starts_with("LISTEN=") && l.contains("::1"));
                    return Dovecot {
                        dir,
                        pop3_port,
                        pop3s_port,
                        pid,
                        ipv6,
                        users: names,
                    };
                }
                // A port was taken between our check and Dovecot's bind.
                Some(75) => continue,
                Some(3) => panic!(
                    "Dovecot is not installed: apt-get install -y dovecot-core dovecot-pop3d\n{}",
                    String::from_utf8_lossy(&out.stderr)
                ),
                _ => panic!(
                    "dovecot.sh start failed ({})\n--- stdout\n{}\n--- stderr\n{}",
                    out.status,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            }
        }
        panic!("could not start Dovecot: ports kept being taken");
    }

    /// The plain POP3 listener (STLS available), `127.0.0.1:port`.
    pub fn pop3_addr(&self) -> SocketAddr {
        loopback(self.pop3_port)
    }

    /// The implicit-TLS (POP3S) listener, `127.0.0.1:port`.
    pub fn pop3s_addr(&self) -> SocketAddr {
        loopback(self.pop3s_port)
    }

    /// The plain POP3 listener on `[::1]`, when the host has IPv6 loopback.
    pub fn pop3_addr_v6(&self) -> Option<SocketAddr> {
        self.ipv6
            .then(|| SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, self.pop3_port)))
    }

    /// The POP3S listener on `[::1]`, when the host has IPv6 loopback.
    pub fn pop3s_addr_v6(&self) -> Option<SocketAddr> {
        self.ipv6
            .then(|| SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, self.pop3s_port)))
    }

    /// The PEM file of the CA that signed the server certificate (valid for
    /// `localhost`, `127.0.0.1` and `::1`).
    pub fn ca_pem_path(&self) -> PathBuf {
        self.dir.path().join("tls").join("ca.pem")
    }

    /// The server certificate (PEM).
    pub fn cert_pem_path(&self) -> PathBuf {
        self.dir.path().join("tls").join("server.pem")
    }

    /// The Maildir of `user` (with `cur/`, `new/`, `tmp/`; Dovecot keeps its
    /// index files at its top).
    pub fn maildir(&self, user: &str) -> PathBuf {
        self.dir.path().join("mail").join(user)
    }

    /// The UIDLs Dovecot gives the messages of `user`, in order (the Maildir
    /// base names written by [`Dovecot::start`]).
    pub fn uidls(&self, user: &str) -> Vec<String> {
        self.users
            .iter()
            .find(|(u, _)| u == user)
            .map(|(_, files)| files.clone())
            .unwrap_or_default()
    }

    /// The names of the messages still in `user`'s `cur/` (sorted), e.g. to
    /// see what a DELE and QUIT removed.
    pub fn stored(&self, user: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.maildir(user).join("cur"))
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// The master process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The instance directory (config, log, mail, TLS files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Dovecot's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    /// Whether any process of this instance is still alive (zombies waiting
    /// to be reaped by init do not count).
    pub fn is_running(&self) -> bool {
        group_alive(self.pid)
    }

    /// Stops the server now (also done on drop).
    pub fn stop(&self) {
        let mut cmd = Command::new("bash");
        cmd.arg(peers_dir().join("dovecot.sh"))
            .arg("stop")
            .arg(self.dir.path());
        let out = run_with_timeout(cmd, Duration::from_secs(30));
        if !out.status.success() {
            eprintln!(
                "dovecot.sh stop failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        // Never panic here (a second panic while unwinding aborts the run).
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.stop()));
        let comm = std::fs::read_to_string(format!("/proc/{}/comm", self.pid)).unwrap_or_default();
        if comm.trim() == "dovecot" && group_alive(self.pid) {
            // The script failed: end the process group ourselves.
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg("--")
                .arg(format!("-{}", self.pid))
                .status();
        }
    }
}

/// What Dovecot sends for RETR of a message stored as `stored` (before
/// dot-stuffing): line ends as in [`super::crlf_lines`], except that even an
/// empty file is sent as one empty line (`+OK 0 octets`, CRLF, `.`).
pub fn retr_form(stored: &[u8]) -> Vec<u8> {
    if stored.is_empty() {
        return b"\r\n".to_vec();
    }
    super::crlf_lines(stored)
}

/// The size Dovecot gives a message stored as `stored` in LIST and STAT:
/// bare LFs counted as CRLF, but without the CRLF it appends to a last line
/// that has no line end (so it can be 2 less than the bytes RETR sends).
pub fn list_size(stored: &[u8]) -> u64 {
    let bare_lf = stored
        .iter()
        .enumerate()
        .filter(|&(i, &b)| b == b'\n' && (i == 0 || stored[i - 1] != b'\r'))
        .count();
    (stored.len() + bare_lf) as u64
}

/// Writes `messages` into the Maildir `maildir` (created with `cur/`, `new/`
/// and `tmp/`), in `cur/` as `BASE:2,`, and returns the base names in order.
/// The base names sort in message order (by their time field), so a server
/// that orders by delivery time numbers them as given; Dovecot (with
/// `pop3_uidl_format = %f`) uses them as UIDLs.
pub fn write_maildir(maildir: &Path, messages: &[(String, Vec<u8>)]) -> Vec<String> {
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).expect("create Maildir");
    }
    let mut names = Vec::new();
    for (i, (name, bytes)) in messages.iter().enumerate() {
        let base = super::server::base_name(i, name);
        std::fs::write(maildir.join("cur").join(format!("{base}:2,")), bytes)
            .expect("write message");
        names.push(base);
    }
    names
}

/// Whether a live (non-zombie) process is in process group `pgid`.
pub fn group_alive(pgid: u32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.filter_map(|e| e.ok()).any(|e| {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            return false;
        };
        // After "pid (comm) ": state ppid pgrp ...
        let Some(rest) = stat.rfind(") ").map(|i| &stat[i + 2..]) else {
            return false;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string()
    })
}
