//! curl as a POP3 client (`pop3://`, `pop3s://`, STLS with `--ssl-reqd`).
//!
//! The URL always names `localhost` and `--resolve` pins it to the server's
//! loopback address, so the certificate is checked for `localhost` with the
//! given CA. Every run has a timeout (default 30 s) after which curl is
//! killed and the test fails.
//!
//! What curl prints: for LIST and UIDL (and other multi-line `-X` commands)
//! the listing lines with their CRLF, without the terminating `.`; for RETR
//! the message with dot-stuffing removed, lines ending in CRLF. A command with
//! a one-line answer (DELE, NOOP, STAT ...) must be sent with `-I` (curl
//! would otherwise wait for a multi-line answer); it prints nothing.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use super::{DEFAULT_TIMEOUT, require_program, run_with_timeout};

/// Transport security.
#[derive(Clone, Debug)]
pub enum Security {
    /// `pop3://`, no TLS.
    Plain,
    /// `pop3://` with `--ssl-reqd`: STLS, verified with the CA file.
    Stls(PathBuf),
    /// `pop3s://`: TLS from the start, verified with the CA file.
    Implicit(PathBuf),
}

/// A curl invocation against one server and account.
#[derive(Clone, Debug)]
pub struct Curl {
    addr: SocketAddr,
    security: Security,
    user: String,
    password: String,
    login_options: Option<String>,
    extra: Vec<OsString>,
    timeout: Duration,
}

impl Curl {
    /// curl against `addr` with `security`, as `user`/`password`.
    pub fn new(addr: SocketAddr, security: Security, user: &str, password: &str) -> Curl {
        Curl {
            addr,
            security,
            user: user.into(),
            password: password.into(),
            login_options: None,
            extra: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Plain POP3.
    pub fn plain(addr: SocketAddr, user: &str, password: &str) -> Curl {
        Curl::new(addr, Security::Plain, user, password)
    }

    /// POP3 upgraded with STLS (required), verified with `ca`.
    pub fn stls(addr: SocketAddr, ca: &Path, user: &str, password: &str) -> Curl {
        Curl::new(addr, Security::Stls(ca.to_path_buf()), user, password)
    }

    /// POP3S, verified with `ca`.
    pub fn pop3s(addr: SocketAddr, ca: &Path, user: &str, password: &str) -> Curl {
        Curl::new(addr, Security::Implicit(ca.to_path_buf()), user, password)
    }

    /// `--login-options`, e.g. `AUTH=CRAM-MD5`, `AUTH=+APOP`, `AUTH=PLAIN`.
    pub fn login_options(mut self, options: &str) -> Curl {
        self.login_options = Some(options.into());
        self
    }

    /// One more command-line argument (e.g. `-v`).
    pub fn arg(mut self, arg: impl Into<OsString>) -> Curl {
        self.extra.push(arg.into());
        self
    }

    /// Kill curl after `timeout` (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Curl {
        self.timeout = timeout;
        self
    }

    /// The curl command for URL path `path` (`""` = LIST, `"3"` = RETR 3),
    /// with `-X request` when given, and `-I` when `head`.
    pub fn command(&self, path: &str, request: Option<&str>, head: bool) -> Command {
        require_program("curl", "curl");
        let (scheme, ca, reqd) = match &self.security {
            Security::Plain => ("pop3", None, false),
            Security::Stls(ca) => ("pop3", Some(ca), true),
            Security::Implicit(ca) => ("pop3s", Some(ca), false),
        };
        let port = self.addr.port();
        let ip = match self.addr {
            SocketAddr::V4(a) => a.ip().to_string(),
            SocketAddr::V6(a) => format!("[{}]", a.ip()),
        };
        let mut cmd = Command::new("curl");
        cmd.arg("--silent")
            .arg("--show-error")
            .arg("--resolve")
            .arg(format!("localhost:{port}:{ip}"))
            .arg("--user")
            .arg(format!("{}:{}", self.user, self.password))
            .arg("--connect-timeout")
            .arg("10");
        if let Some(ca) = ca {
            cmd.arg("--cacert").arg(ca);
        }
        if reqd {
            cmd.arg("--ssl-reqd");
        }
        if let Some(options) = &self.login_options {
            cmd.arg("--login-options").arg(options);
        }
        if let Some(request) = request {
            cmd.arg("--request").arg(request);
        }
        if head {
            cmd.arg("--head");
        }
        cmd.args(&self.extra);
        cmd.arg(format!("{scheme}://localhost:{port}/{path}"));
        cmd
    }

    /// Runs [`Curl::command`] with the timeout.
    pub fn run(&self, path: &str, request: Option<&str>, head: bool) -> Output {
        run_with_timeout(self.command(path, request, head), self.timeout)
    }

    /// LIST: the listing lines.
    pub fn list(&self) -> Output {
        self.run("", None, false)
    }

    /// RETR n: the message.
    pub fn retr(&self, n: u32) -> Output {
        self.run(&n.to_string(), None, false)
    }

    /// UIDL: the listing lines.
    pub fn uidl(&self) -> Output {
        self.run("", Some("UIDL"), false)
    }

    /// TOP n lines (multi-line answer).
    pub fn top(&self, n: u32, lines: u32) -> Output {
        self.run("", Some(&format!("TOP {n} {lines}")), false)
    }

    /// DELE n (one-line answer, hence `-I`), then QUIT.
    pub fn dele(&self, n: u32) -> Output {
        self.run("", Some(&format!("DELE {n}")), true)
    }

    /// Any command with a one-line answer (NOOP, STAT, ...), with `-I`.
    pub fn single_line(&self, request: &str) -> Output {
        self.run("", Some(request), true)
    }
}
