//! Python's poplib as a client: `tests/peers/poplib_fetch.py` (log in, fetch
//! every message with RETR and TOP) and `tests/peers/poplib_session.py` (a
//! scripted list of commands, every answer recorded).
//!
//! poplib gives multi-line answers as lines without line ends, dot-stuffing
//! removed; the scripts join them with CRLF and add a final CRLF, so a RETR
//! here equals the message as the server put it on the wire, before
//! dot-stuffing (see [`super::crlf_lines`] for what Dovecot sends for a
//! stored message). Zero lines give zero bytes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{DEFAULT_TIMEOUT, expect_success, peers_dir, require_program, run_with_timeout};

/// How to reach the server.
#[derive(Clone, Debug)]
pub enum Connect {
    /// Plain TCP.
    Plain,
    /// Plain TCP; a scripted `stls` command of a [`session`] verifies the
    /// server with this CA file and name.
    PlainWithCa {
        /// CA certificates (PEM).
        ca: PathBuf,
        /// The name to verify (and send as SNI), e.g. `localhost`.
        server_name: String,
    },
    /// Plain TCP, then STLS, verifying with the CA file and server name.
    Stls {
        /// CA certificates (PEM).
        ca: PathBuf,
        /// The name to verify (and send as SNI), e.g. `localhost`.
        server_name: String,
    },
    /// TLS from the start (POP3S), verifying with the CA file and server name.
    Implicit {
        /// CA certificates (PEM).
        ca: PathBuf,
        /// The name to verify (and send as SNI).
        server_name: String,
    },
}

impl Connect {
    /// Plain, with `ca` for `localhost` ready for a scripted `stls`.
    pub fn plain_with_ca(ca: &Path) -> Connect {
        Connect::PlainWithCa {
            ca: ca.to_path_buf(),
            server_name: "localhost".into(),
        }
    }

    /// STLS verified against `ca` for `localhost`.
    pub fn stls(ca: &Path) -> Connect {
        Connect::Stls {
            ca: ca.to_path_buf(),
            server_name: "localhost".into(),
        }
    }

    /// Implicit TLS verified against `ca` for `localhost`.
    pub fn implicit(ca: &Path) -> Connect {
        Connect::Implicit {
            ca: ca.to_path_buf(),
            server_name: "localhost".into(),
        }
    }

    fn args(&self, addr: SocketAddr, cmd: &mut Command) {
        cmd.arg("--host")
            .arg(addr.ip().to_string())
            .arg("--port")
            .arg(addr.port().to_string());
        let (mode, tls) = match self {
            Connect::Plain => ("none", None),
            Connect::PlainWithCa { ca, server_name } => ("none", Some((ca, server_name))),
            Connect::Stls { ca, server_name } => ("stls", Some((ca, server_name))),
            Connect::Implicit { ca, server_name } => ("implicit", Some((ca, server_name))),
        };
        cmd.arg("--tls").arg(mode);
        if let Some((ca, name)) = tls {
            cmd.arg("--cafile").arg(ca).arg("--server-name").arg(name);
        }
    }
}

/// How to log in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Login {
    /// USER and PASS.
    UserPass,
    /// APOP (needs a timestamp in the greeting).
    Apop,
}

/// What [`fetch`] got.
#[derive(Clone, Debug, Default)]
pub struct Fetched {
    /// The greeting line (without CRLF).
    pub greeting: Vec<u8>,
    /// The STAT answer line.
    pub stat: Vec<u8>,
    /// The LIST listing lines, each ending in CRLF.
    pub list: Vec<u8>,
    /// The UIDL listing lines, each ending in CRLF.
    pub uidl: Vec<u8>,
    /// RETR of message 1, 2, ... (lines joined with CRLF, final CRLF).
    pub retr: Vec<Vec<u8>>,
    /// TOP of each message with the asked number of lines (same form);
    /// empty when TOP was not asked for.
    pub top: Vec<Vec<u8>>,
}

impl Fetched {
    /// The UIDs from the UIDL listing, in order.
    pub fn uids(&self) -> Vec<String> {
        listing_column(&self.uidl)
    }

    /// The sizes from the LIST listing, in order.
    pub fn sizes(&self) -> Vec<u64> {
        listing_column(&self.list)
            .iter()
            .map(|s| s.parse().expect("LIST size"))
            .collect()
    }
}

fn listing_column(listing: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(listing)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
        .collect()
}

/// Options of [`fetch`].
#[derive(Clone, Debug)]
pub struct FetchOptions {
    /// How to connect.
    pub connect: Connect,
    /// How to log in.
    pub login: Login,
    /// Body lines for TOP; `None`: no TOP.
    pub top: Option<u32>,
    /// Kill the script after this long.
    pub timeout: Duration,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            connect: Connect::Plain,
            login: Login::UserPass,
            top: Some(0),
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

fn python() -> Command {
    require_program("python3", "python3");
    Command::new("python3")
}

/// Logs in to `addr` with poplib and fetches every message (RETR, and TOP
/// when asked), then QUITs. Panics if the script fails (e.g. an -ERR
/// answer), showing its stderr.
pub fn fetch(addr: SocketAddr, user: &str, password: &str, options: &FetchOptions) -> Fetched {
    let mut cmd = python();
    cmd.arg(peers_dir().join("poplib_fetch.py"));
    options.connect.args(addr, &mut cmd);
    cmd.arg("--user").arg(user).arg("--password").arg(password);
    if options.login == Login::Apop {
        cmd.arg("--apop");
    }
    match options.top {
        Some(n) => cmd.arg("--top").arg(n.to_string()),
        None => cmd.arg("--top").arg("-1"),
    };
    let out = run_with_timeout(cmd, options.timeout);
    expect_success("poplib_fetch.py", &out);
    let mut fetched = Fetched::default();
    for (kind, index, data) in parse_records(&out.stdout) {
        match kind.as_str() {
            "greeting" => fetched.greeting = data,
            "stat" => fetched.stat = data,
            "list" => fetched.list = data,
            "uidl" => fetched.uidl = data,
            "retr" => {
                assert_eq!(index, fetched.retr.len() + 1, "RETR records out of order");
                fetched.retr.push(data);
            }
            "top" => fetched.top.push(data),
            _ => {}
        }
    }
    fetched
}

/// One command of a [`session`] and its answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// The command as given.
    pub command: String,
    /// `+OK` (true) or not.
    pub ok: bool,
    /// The first answer line, or for a failure other than `-ERR` the Python
    /// exception text.
    pub response: Vec<u8>,
    /// The lines of a multi-line answer, each ending in CRLF.
    pub lines: Option<Vec<u8>>,
    /// The session ended here (connection closed or a protocol error).
    pub stopped: bool,
}

impl Step {
    /// The first answer line as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.response).into_owned()
    }

    /// The lines of a multi-line answer, without their CRLF.
    pub fn line_list(&self) -> Vec<&[u8]> {
        match &self.lines {
            None => Vec::new(),
            Some(lines) => lines
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
                .collect(),
        }
    }
}

/// What a [`session`] saw.
#[derive(Clone, Debug, Default)]
pub struct Session {
    /// The greeting line.
    pub greeting: Vec<u8>,
    /// One entry per command sent (commands after a stop are not sent).
    pub steps: Vec<Step>,
}

/// Runs `commands` (see `poplib_session.py`: `capa`, `stls`, `user NAME`,
/// `pass PW`, `apop NAME SECRET`, `stat`, `list [n]`, `uidl [n]`,
/// `top n k`, `retr n`, `dele n`, `rset`, `noop`, `quit`, `raw LINE`,
/// `rawlong LINE`) on one poplib connection. `-ERR` answers do not end the
/// session. Uses [`DEFAULT_TIMEOUT`].
pub fn session(addr: SocketAddr, connect: &Connect, commands: &[&str]) -> Session {
    session_with_timeout(addr, connect, commands, DEFAULT_TIMEOUT)
}

/// [`session`] with an explicit timeout.
pub fn session_with_timeout(
    addr: SocketAddr,
    connect: &Connect,
    commands: &[&str],
    timeout: Duration,
) -> Session {
    let mut cmd = python();
    cmd.arg(peers_dir().join("poplib_session.py"));
    connect.args(addr, &mut cmd);
    cmd.arg("--timeout")
        .arg(timeout.as_secs().max(1).to_string());
    cmd.arg("--");
    cmd.args(commands);
    let out = run_with_timeout(cmd, timeout + Duration::from_secs(5));
    expect_success("poplib_session.py", &out);
    let mut session = Session::default();
    for (kind, _index, data) in parse_records(&out.stdout) {
        match kind.as_str() {
            "greeting" => session.greeting = data,
            "cmd" => session.steps.push(Step {
                command: String::from_utf8_lossy(&data).into_owned(),
                ok: false,
                response: Vec::new(),
                lines: None,
                stopped: false,
            }),
            "ok" | "err" => {
                let step = session.steps.last_mut().expect("answer before command");
                step.ok = kind == "ok";
                step.response = data;
            }
            "lines" => {
                session
                    .steps
                    .last_mut()
                    .expect("lines before command")
                    .lines = Some(data)
            }
            "stop" => {
                session
                    .steps
                    .last_mut()
                    .expect("stop before command")
                    .stopped = true
            }
            _ => {}
        }
    }
    session
}

/// Splits the scripts' framed output: `KIND INDEX LENGTH\n` + bytes + `\n`.
pub fn parse_records(mut out: &[u8]) -> Vec<(String, usize, Vec<u8>)> {
    let mut records = Vec::new();
    while !out.is_empty() {
        let eol = out
            .iter()
            .position(|&b| b == b'\n')
            .expect("record header ends with LF");
        let header = std::str::from_utf8(&out[..eol]).expect("ASCII record header");
        let mut words = header.split(' ');
        let (Some(kind), Some(index), Some(len), None) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            panic!("bad record header {header:?}");
        };
        let index: usize = index.parse().expect("record index");
        let len: usize = len.parse().expect("record length");
        let data = &out[eol + 1..];
        assert!(
            data.len() > len && data[len] == b'\n',
            "truncated record {header:?}"
        );
        records.push((kind.to_string(), index, data[..len].to_vec()));
        out = &data[len + 1..];
    }
    records
}
