//! mpop as a client: writes an mpoprc (mode 0600, which mpop insists on) for
//! one account and runs `mpop -C RC ACCOUNT` with a timeout, delivering into
//! a Maildir of its own.
//!
//! mpop facts worth knowing: it pipelines (USER and PASS in one write,
//! batched RETR and DELE) unless `pipelining off`; it prepends a `Received:`
//! header unless `received_header off` (the default here); it stores each
//! message as received with every CRLF turned into LF (a lone CR stays, an
//! empty line stays an empty line); it remembers the
//! UIDs it fetched in the `uidls_file` and skips them next time; with
//! `keep off` it deletes what it fetched.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use super::{DEFAULT_TIMEOUT, require_program, run_with_timeout};

/// Transport security.
#[derive(Clone, Debug)]
pub enum Security {
    /// No TLS (`tls off`).
    Plain,
    /// STLS (`tls on`, `tls_starttls on`), verified with the CA file.
    Stls(PathBuf),
    /// POP3S (`tls on`, `tls_starttls off`), verified with the CA file.
    Implicit(PathBuf),
}

/// mpop's `pipelining` setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pipelining {
    /// Pipeline when the server announces PIPELINING.
    Auto,
    /// Always pipeline.
    On,
    /// Never pipeline.
    Off,
}

/// One mpop account and its working directory.
#[derive(Clone, Debug)]
pub struct Mpop {
    workdir: PathBuf,
    addr: SocketAddr,
    security: Security,
    user: String,
    password: String,
    /// `auth` method: `user`, `apop`, `plain`, `cram-md5`, `scram-sha-256`, ...
    pub auth: String,
    /// `keep on` (true) or `keep off`.
    pub keep: bool,
    /// `pipelining`.
    pub pipelining: Pipelining,
    /// `received_header on` (true) or `off` (default).
    pub received_header: bool,
    /// More mpoprc lines for the account.
    pub extra: Vec<String>,
    /// Kill mpop after this long.
    pub timeout: Duration,
}

impl Mpop {
    /// An account on `addr`; rc file, Maildir (`workdir/maildir`) and UIDLs
    /// file live in `workdir` (created if needed). Defaults: `auth user`,
    /// `keep on`, `pipelining auto`, `received_header off`, 30 s timeout.
    pub fn new(
        workdir: &Path,
        addr: SocketAddr,
        security: Security,
        user: &str,
        password: &str,
    ) -> Mpop {
        Mpop {
            workdir: workdir.to_path_buf(),
            addr,
            security,
            user: user.into(),
            password: password.into(),
            auth: "user".into(),
            keep: true,
            pipelining: Pipelining::Auto,
            received_header: false,
            extra: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Sets the `auth` method.
    pub fn auth(mut self, method: &str) -> Mpop {
        self.auth = method.into();
        self
    }

    /// Sets `keep`.
    pub fn keep(mut self, keep: bool) -> Mpop {
        self.keep = keep;
        self
    }

    /// Sets `pipelining`.
    pub fn pipelining(mut self, pipelining: Pipelining) -> Mpop {
        self.pipelining = pipelining;
        self
    }

    /// The Maildir mpop delivers into.
    pub fn maildir(&self) -> PathBuf {
        self.workdir.join("maildir")
    }

    /// The file where mpop keeps the UIDs it has seen.
    pub fn uidls_file(&self) -> PathBuf {
        self.workdir.join("uidls")
    }

    /// The rc file path.
    pub fn rc_path(&self) -> PathBuf {
        self.workdir.join("mpoprc")
    }

    /// The mpoprc text (one account, named `test`).
    pub fn rc_text(&self) -> String {
        let on_off = |b: bool| if b { "on" } else { "off" };
        let mut rc = String::new();
        rc.push_str("account test\n");
        rc.push_str(&format!("host {}\n", self.addr.ip()));
        rc.push_str(&format!("port {}\n", self.addr.port()));
        rc.push_str(&format!("user {}\n", self.user));
        rc.push_str(&format!("password {}\n", self.password));
        rc.push_str(&format!("auth {}\n", self.auth));
        match &self.security {
            Security::Plain => rc.push_str("tls off\n"),
            Security::Stls(ca) | Security::Implicit(ca) => {
                let starttls = matches!(self.security, Security::Stls(_));
                rc.push_str("tls on\n");
                rc.push_str(&format!("tls_starttls {}\n", on_off(starttls)));
                rc.push_str(&format!("tls_trust_file {}\n", ca.display()));
                rc.push_str("tls_host_override localhost\n");
            }
        }
        rc.push_str(&format!("delivery maildir {}\n", self.maildir().display()));
        rc.push_str(&format!("uidls_file {}\n", self.uidls_file().display()));
        rc.push_str(&format!(
            "received_header {}\n",
            on_off(self.received_header)
        ));
        rc.push_str(&format!("keep {}\n", on_off(self.keep)));
        let pipelining = match self.pipelining {
            Pipelining::Auto => "auto",
            Pipelining::On => "on",
            Pipelining::Off => "off",
        };
        rc.push_str(&format!("pipelining {pipelining}\n"));
        rc.push_str("timeout 20\n");
        for line in &self.extra {
            rc.push_str(line);
            rc.push('\n');
        }
        rc
    }

    /// Writes the rc file (0600) and the Maildir, and returns the command.
    pub fn command(&self) -> Command {
        require_program("mpop", "mpop");
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(self.maildir().join(sub)).expect("create Maildir");
        }
        let _ = std::fs::remove_file(self.rc_path());
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(self.rc_path())
            .expect("create mpoprc");
        file.write_all(self.rc_text().as_bytes())
            .expect("write mpoprc");
        drop(file);
        let mut cmd = Command::new("mpop");
        cmd.arg("-C").arg(self.rc_path()).arg("test");
        cmd
    }

    /// Runs mpop once (status not checked).
    pub fn run(&self) -> Output {
        run_with_timeout(self.command(), self.timeout)
    }

    /// The messages delivered so far (`new/` and `cur/`), in delivery order.
    pub fn delivered(&self) -> Vec<Vec<u8>> {
        delivered_in(&self.maildir())
    }
}

/// The messages in a Maildir's `new/` and `cur/`, ordered by the delivery
/// time and then by the sequence number in the file name (mpop names files
/// `SECONDS.M<microseconds>P<pid>Q<n>.HOST`; the numbers are compared as
/// numbers, so the order is the order of delivery).
pub fn delivered_in(maildir: &Path) -> Vec<Vec<u8>> {
    let mut files = Vec::new();
    for sub in ["new", "cur"] {
        if let Ok(entries) = std::fs::read_dir(maildir.join(sub)) {
            for e in entries.filter_map(|e| e.ok()) {
                files.push(e.path());
            }
        }
    }
    files.sort_by_key(|p| natural_key(&p.file_name().unwrap_or_default().to_string_lossy()));
    files
        .iter()
        .map(|p| std::fs::read(p).expect("read delivered message"))
        .collect()
}

/// A sort key comparing runs of digits as numbers.
fn natural_key(name: &str) -> Vec<(u8, u128, String)> {
    let mut key = Vec::new();
    let mut rest = name;
    while !rest.is_empty() {
        let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
        if digits > 0 {
            let value = rest[..digits].parse().unwrap_or(u128::MAX);
            key.push((0, value, String::new()));
            rest = &rest[digits..];
        } else {
            let text = rest.chars().take_while(|c| !c.is_ascii_digit()).count();
            let end = rest
                .char_indices()
                .nth(text)
                .map(|(i, _)| i)
                .unwrap_or(rest.len());
            key.push((1, 0, rest[..end].to_string()));
            rest = &rest[end..];
        }
    }
    key
}
