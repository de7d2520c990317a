//! mutt and neomutt as clients: each runs unattended inside a private tmux
//! server (they need a terminal), fetches a POP3 maildrop into an mbox with
//! `<fetch-mail>` (their `G` key) and quits, all pushed on the command line
//! with `-e 'push <fetch-mail><quit>'`; nothing is typed.
//!
//! The end of the run is an event, not a guess: the tmux session runs the
//! client and then `tmux wait-for -S done`, which the test waits for. The
//! tmux server (its own socket in the work directory) is killed by its PID
//! when the [`Tmux`] guard drops.
//!
//! Facts worth knowing: both use GNU SASL and, with no `pop_authenticators`
//! set, take the strongest SASL mechanism offered; if it fails they try
//! APOP, then USER/PASS. Their GnuTLS build checks the certificate against
//! `ssl_ca_certificates_file` and the host name. A `-d` debug log (mutt:
//! `~/.muttdebug0` under the work directory, neomutt: `-l FILE`) shows the
//! protocol dialogue; it is returned with the result.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{require_program, run_with_timeout};

/// Which client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Program {
    /// mutt (Debian package `mutt`).
    Mutt,
    /// neomutt (Debian package `neomutt`).
    NeoMutt,
}

impl Program {
    fn command(self) -> &'static str {
        match self {
            Program::Mutt => "mutt",
            Program::NeoMutt => "neomutt",
        }
    }
}

/// Transport security; both verify the server with the CA file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Security {
    /// `pop://` with STLS required (`ssl_starttls`, `ssl_force_tls`).
    Stls,
    /// `pops://`.
    Implicit,
}

/// What a run left behind.
#[derive(Debug)]
pub struct Fetched {
    /// The mbox the messages were fetched into.
    pub mbox: Vec<u8>,
    /// The client's debug log (the POP3 dialogue), for failure messages.
    pub log: String,
    /// The screen when the client had quit.
    pub screen: String,
}

/// A private tmux server, killed by PID on drop.
struct Tmux {
    socket: PathBuf,
    pid: Option<u32>,
}

impl Tmux {
    fn command(&self) -> Command {
        let mut cmd = Command::new("tmux");
        cmd.arg("-S").arg(&self.socket);
        cmd
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        if let Some(pid) = self.pid {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    }
}

fn quote(path: &Path) -> String {
    let s = path.to_str().expect("a UTF-8 path");
    assert!(!s.contains('\''), "no quotes in {s}");
    format!("'{s}'")
}

/// Runs `program` in `workdir` (which must exist) against the server at
/// `addr`, verified with `ca` as `localhost`: fetches `user`'s mail into an
/// mbox (messages stay on the server) and quits.
pub fn fetch(
    program: Program,
    workdir: &Path,
    addr: SocketAddr,
    security: Security,
    ca: &Path,
    user: &str,
    password: &str,
) -> Fetched {
    require_program("tmux", "tmux");
    require_program(program.command(), program.command());
    let mbox = workdir.join("inbox");
    std::fs::write(&mbox, b"").unwrap();
    let (scheme, tls) = match security {
        Security::Stls => ("pop", "set ssl_starttls=yes\nset ssl_force_tls=yes\n"),
        Security::Implicit => ("pops", "set ssl_force_tls=yes\n"),
    };
    let rc = workdir.join("muttrc");
    std::fs::write(
        &rc,
        format!(
            "set pop_host=\"{scheme}://{user}@localhost:{port}\"\n\
             set pop_pass=\"{password}\"\n\
             set pop_delete=no\n\
             set folder=\"{dir}\"\n\
             set spoolfile=\"{mbox}\"\n\
             set mbox_type=mbox\n\
             set record=\"\"\n\
             set ssl_ca_certificates_file=\"{ca}\"\n\
             set certificate_file=\"{certs}\"\n\
             set quit=yes\n\
             set move=no\n\
             {tls}",
            port = addr.port(),
            dir = workdir.display(),
            mbox = mbox.display(),
            ca = ca.display(),
            certs = workdir.join("certificates").display(),
        ),
    )
    .unwrap();
    let log = workdir.join("debug.log");
    let client = match program {
        Program::Mutt => format!("{} -n -F {} -d 2", program.command(), quote(&rc)),
        Program::NeoMutt => format!(
            "{} -n -F {} -d 2 -l {}",
            program.command(),
            quote(&rc),
            quote(&log)
        ),
    };
    let mut tmux = Tmux {
        socket: workdir.join("tmux.sock"),
        pid: None,
    };
    let sock = quote(&tmux.socket);
    // The session outlives the client until the test has read the screen:
    // it signals `done`, then waits for `end`.
    let script = format!(
        "env HOME={home} TERM=screen {client} -e 'push <fetch-mail><quit>'; \
         tmux -S {sock} wait-for -S done; tmux -S {sock} wait-for end",
        home = quote(workdir),
    );
    let started = tmux
        .command()
        .args([
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-x",
            "160",
            "-y",
            "40",
        ])
        .arg(&script)
        .status()
        .expect("run tmux");
    assert!(started.success(), "tmux new-session failed");
    let pid = tmux
        .command()
        .args(["display-message", "-p", "#{pid}"])
        .output()
        .expect("run tmux");
    tmux.pid = String::from_utf8_lossy(&pid.stdout).trim().parse().ok();
    assert!(tmux.pid.is_some(), "no tmux server PID: {pid:?}");

    let mut wait = tmux.command();
    wait.args(["wait-for", "done"]);
    let waited = run_with_timeout(wait, Duration::from_secs(60));
    assert!(
        waited.status.success(),
        "{program:?} did not finish: {waited:?}"
    );
    let screen = tmux
        .command()
        .args(["capture-pane", "-p"])
        .output()
        .expect("run tmux");
    let _ = tmux.command().args(["wait-for", "-S", "end"]).status();
    // Both number their log files: `.muttdebug0`, `debug.log0`.
    let log = match program {
        Program::Mutt => workdir.join(".muttdebug0"),
        Program::NeoMutt => workdir.join("debug.log0"),
    };
    Fetched {
        mbox: std::fs::read(&mbox).unwrap(),
        log: String::from_utf8_lossy(&std::fs::read(log).unwrap_or_default()).into_owned(),
        screen: String::from_utf8_lossy(&screen.stdout).into_owned(),
    }
}
