//! The contenders: generated maildrops, a private Dovecot, every runtime's
//! `pop3d`, and the clients (every runtime's `fetch`, mpop, curl, poplib).

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::Error;
use crate::sys;

/// The password of every generated user.
pub const PASSWORD: &str = "secret";

/// A port nothing listens on now.
pub fn free_port() -> Result<u16, Error> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// A message of about `size` octets as a Maildir stores it (LF line ends):
/// headers, then 76-column base64-looking lines, with a line starting
/// with a dot now and then (stuffed on the wire).
pub fn message(i: usize, size: usize, rng_seed: u64) -> Vec<u8> {
    let mut rng =
        fastrand::Rng::with_seed(rng_seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut m = format!(
        "From: bench@example.org\nTo: alice@example.org\nSubject: bench {i}\n\
         Message-ID: <bench-{i}@example.org>\nMIME-Version: 1.0\n\
         Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n"
    )
    .into_bytes();
    let mut line = 0u64;
    while m.len() < size {
        line += 1;
        if line % 500 == 0 {
            m.extend_from_slice(b".dotted line\n");
            continue;
        }
        let mut bits = rng.u64(..);
        for k in 0..76u32 {
            if k % 10 == 0 {
                bits = rng.u64(..);
            }
            m.push(B64[(bits & 63) as usize]);
            bits >>= 6;
        }
        m.push(b'\n');
    }
    m
}

/// The RFC 1939 size of a stored message: every line end as CRLF.
fn wire_size(m: &[u8]) -> usize {
    m.len() + memchr::memchr_iter(b'\n', m).count()
}

/// Writes `m` into `maildir/cur` under a Dovecot-style name carrying its
/// sizes (`,S=` raw, `,W=` on the wire), as a delivery agent does.
pub fn deliver(maildir: &Path, i: usize, m: &[u8]) -> Result<PathBuf, Error> {
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub))?;
    }
    let name = format!(
        "{}.M{i}P1.bench,S={},W={}:2,",
        1_700_000_000 + i,
        m.len(),
        wire_size(m)
    );
    let path = maildir.join("cur").join(name);
    std::fs::write(&path, m)?;
    Ok(path)
}

/// Writes one message of exactly `bytes` octets (76-column lines) into
/// `maildir/cur`, in pieces: its path and its size on the wire.
pub fn deliver_large(maildir: &Path, bytes: u64) -> Result<(PathBuf, u64), Error> {
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub))?;
    }
    let head = b"From: bench@example.org\nTo: big@example.org\nSubject: large\n\n";
    let block = {
        let body = message(0, 1 << 20, 99);
        let start = memchr::memmem::find(&body, b"\n\n").map_or(0, |at| at + 2);
        body[start..].to_vec()
    };
    let tmp = maildir.join("tmp").join("large");
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp)?);
    f.write_all(head)?;
    let mut written = head.len() as u64;
    let mut lfs = memchr::memchr_iter(b'\n', head).count() as u64;
    while written < bytes {
        let left = (bytes - written) as usize;
        if left >= block.len() {
            f.write_all(&block)?;
            written += block.len() as u64;
            lfs += memchr::memchr_iter(b'\n', &block).count() as u64;
        } else {
            // The last line, cut to fit and ended.
            let mut tail = vec![b'x'; left];
            tail[left - 1] = b'\n';
            f.write_all(&tail)?;
            written += left as u64;
            lfs += 1;
        }
    }
    f.flush()?;
    drop(f);
    let wire = bytes + lfs;
    let path = maildir
        .join("cur")
        .join(format!("1700000000.Mlarge.bench,S={bytes},W={wire}:2,"));
    std::fs::rename(&tmp, &path)?;
    Ok((path, wire))
}

/// The message sizes of a maildrop of about `mb` MB: mostly 70 kB, every
/// tenth a 2 kB note, every twentieth 1 MB.
pub fn maildrop_sizes(mb: u64) -> Vec<usize> {
    let goal = (mb * 1_000_000) as usize;
    let (mut total, mut sizes) = (0usize, Vec::new());
    while total < goal {
        let i = sizes.len();
        let size = match (i % 10, i % 20) {
            (3, _) => 2_000,
            (_, 7) => 1_000_000,
            _ => 70_000,
        };
        let size = size.min(goal - total).max(200);
        sizes.push(size);
        total += size;
    }
    sizes
}

/// The median size of the log-normal maildrop's messages, in octets.
pub const LOGNORMAL_MEDIAN: f64 = 4_000.0;
/// The spread (σ of the size's natural logarithm) of the log-normal
/// maildrop: two messages in three between 1.5 and 11 kB.
pub const LOGNORMAL_SIGMA: f64 = 1.0;
/// Every this many messages (the 18th, the 118th, ...) one of 1 to 5 MB
/// (uniform), as attachments come.
pub const LOGNORMAL_LARGE_EVERY: usize = 100;
/// The generator's fixed seed.
const LOGNORMAL_SEED: u64 = 0x4c6f_674e_6f72_6d31;

/// `count` message sizes shaped like real mail: log-normal with a median of
/// [`LOGNORMAL_MEDIAN`] and σ = [`LOGNORMAL_SIGMA`], bounded to 300 octets
/// .. 1 MB, and (with `large`) one of 1 to 5 MB every
/// [`LOGNORMAL_LARGE_EVERY`]. The same sizes every run (a fixed seed).
pub fn lognormal_sizes(count: usize, large: bool) -> Vec<usize> {
    let mut rng = fastrand::Rng::with_seed(LOGNORMAL_SEED);
    (0..count)
        .map(|i| {
            // Box–Muller: one standard normal draw from two uniform ones.
            let (u1, u2) = (1.0 - rng.f64(), rng.f64());
            let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
            let mb = rng.usize(1_000_000..=5_000_000);
            if large && i % LOGNORMAL_LARGE_EVERY == 17 {
                mb
            } else {
                ((LOGNORMAL_MEDIAN * (LOGNORMAL_SIGMA * z).exp()) as usize).clamp(300, 1_000_000)
            }
        })
        .collect()
}

/// A maildrop written into a Maildir: its files in order, and its octets
/// on the wire.
#[derive(Debug, Clone)]
pub struct Maildrop {
    pub files: Vec<PathBuf>,
    /// As stored (LF line ends): what the sendfile limit sends.
    pub stored_octets: u64,
    pub wire_octets: u64,
}

/// Writes the maildrop of `sizes` into `maildir`.
pub fn write_maildrop(maildir: &Path, sizes: &[usize]) -> Result<Maildrop, Error> {
    let (mut files, mut wire, mut stored) = (Vec::new(), 0u64, 0u64);
    for (i, &size) in sizes.iter().enumerate() {
        let m = message(i, size, 2384);
        wire += wire_size(&m) as u64;
        stored += m.len() as u64;
        files.push(deliver(maildir, i, &m)?);
    }
    Ok(Maildrop {
        files,
        stored_octets: stored,
        wire_octets: wire,
    })
}

/// A private Dovecot on loopback (the project's `dovecot.sh`), stopped on
/// drop.
pub struct Dovecot {
    dir: PathBuf,
    script: PathBuf,
    pub plain: SocketAddr,
    pub tls: SocketAddr,
    pub ca: PathBuf,
    pub master: u32,
}

impl Dovecot {
    /// Starts Dovecot on `dir` (which holds `mail/<user>/` and
    /// `passwords`), in its high-performance login mode.
    pub fn start(dir: &Path) -> Result<Dovecot, Error> {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pop3-tokio/tests/peers/dovecot.sh");
        // Dovecot's documented high-performance mode: login processes
        // serve many connections each, one kept ready per core; no
        // per-login verbose logging.
        std::fs::write(
            dir.join("extra.conf"),
            "auth_verbose = no\n\
             service pop3-login {\n  service_count = 0\n  process_min_avail = 2\n}\n\
             service pop3 {\n  process_limit = 2048\n}\n\
             default_client_limit = 20000\n",
        )?;
        for _attempt in 0..5 {
            let (p, s) = (free_port()?, free_port()?);
            let out = Command::new("bash")
                .arg(&script)
                .arg("start")
                .arg(dir)
                .env("POP3_PORT", p.to_string())
                .env("POP3S_PORT", s.to_string())
                .env("LISTEN", "127.0.0.1")
                .env("OWNER_PID", std::process::id().to_string())
                .stderr(Stdio::piped())
                .output()?;
            match out.status.code() {
                Some(0) => {
                    let env: BTreeMap<String, String> = String::from_utf8_lossy(&out.stdout)
                        .lines()
                        .filter_map(|l| {
                            l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned()))
                        })
                        .collect();
                    let get = |k: &str| {
                        env.get(k)
                            .cloned()
                            .ok_or(format!("dovecot.sh printed no {k}"))
                    };
                    return Ok(Dovecot {
                        dir: dir.to_owned(),
                        script,
                        plain: SocketAddr::from(([127, 0, 0, 1], p)),
                        tls: SocketAddr::from(([127, 0, 0, 1], s)),
                        ca: PathBuf::from(get("CA")?),
                        master: get("DOVECOT_PID")?.parse()?,
                    });
                }
                Some(75) => continue,
                Some(3) => {
                    return Err(
                        "Dovecot is not installed: apt-get install -y dovecot-core dovecot-pop3d"
                            .into(),
                    );
                }
                _ => {
                    return Err(format!(
                        "dovecot.sh start failed: {}",
                        String::from_utf8_lossy(&out.stderr)
                    )
                    .into());
                }
            }
        }
        Err("no free ports for Dovecot after 5 attempts".into())
    }

    /// CPU seconds of the whole instance so far.
    pub fn cpu(&self) -> f64 {
        sys::group_cpu(self.master)
    }

    /// The instance's configuration file (for `dovecot-lda -c`).
    pub fn conf(&self) -> PathBuf {
        self.dir.join("dovecot.conf")
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(&self.script)
            .arg("stop")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The runtimes, as their examples are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    Tokio,
    Smol,
    Blocking,
}

impl Runtime {
    pub const ALL: [Runtime; 3] = [Runtime::Tokio, Runtime::Smol, Runtime::Blocking];

    pub fn name(self) -> &'static str {
        match self {
            Runtime::Tokio => "tokio",
            Runtime::Smol => "smol",
            Runtime::Blocking => "blocking",
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Runtime::Tokio => "",
            Runtime::Smol => "-smol",
            Runtime::Blocking => "-blocking",
        }
    }

    pub fn pop3d(self) -> Result<PathBuf, Error> {
        Ok(sys::examples_dir()?.join(format!("pop3d{}", self.suffix())))
    }

    pub fn fetch(self) -> Result<PathBuf, Error> {
        Ok(sys::examples_dir()?.join(format!("fetch{}", self.suffix())))
    }
}

/// One of this project's `pop3d` examples serving a Maildir root, killed
/// on drop.
pub struct Pop3d {
    child: Child,
    pub plain: SocketAddr,
    pub tls: SocketAddr,
    pub pid: u32,
}

impl Pop3d {
    /// Serves `mail_root` (one Maildir per user) to the users of `users`
    /// (a passwd-file), with the certificate `cert`/`key`; `extra` goes on
    /// the command line.
    pub fn start(
        runtime: Runtime,
        mail_root: &Path,
        users: &Path,
        (cert, key): (&Path, &Path),
        log: &Path,
        extra: &[&str],
    ) -> Result<Pop3d, Error> {
        let store = [
            "--maildir-root".as_ref(),
            mail_root.as_os_str(),
            "--users".as_ref(),
            users.as_os_str(),
        ];
        Self::spawn(runtime, &store, (cert, key), log, extra)
    }

    /// Serves the PostgreSQL database `conninfo` (the tokio `pop3d`, built
    /// with `postgres`), every frontend with the same `secret` file.
    pub fn start_postgres(
        conninfo: &str,
        secret: &Path,
        (cert, key): (&Path, &Path),
        log: &Path,
        extra: &[&str],
    ) -> Result<Pop3d, Error> {
        let store = [
            "--postgres".as_ref(),
            conninfo.as_ref(),
            "--secret-file".as_ref(),
            secret.as_os_str(),
        ];
        Self::spawn(Runtime::Tokio, &store, (cert, key), log, extra)
    }

    fn spawn(
        runtime: Runtime,
        store: &[&std::ffi::OsStr],
        (cert, key): (&Path, &Path),
        log: &Path,
        extra: &[&str],
    ) -> Result<Pop3d, Error> {
        let (p, s) = (free_port()?, free_port()?);
        let plain = SocketAddr::from(([127, 0, 0, 1], p));
        let tls = SocketAddr::from(([127, 0, 0, 1], s));
        let out = std::fs::File::create(log)?;
        let mut command = Command::new(runtime.pop3d()?);
        command
            .arg("--listen")
            .arg(plain.to_string())
            .arg("--tls-listen")
            .arg(tls.to_string())
            .args(store)
            .arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(key)
            .arg("--allow-plaintext-auth")
            // Benchmarks run as whoever runs them, root on CI machines.
            .arg("--allow-root")
            .args(extra)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .process_group(0);
        let mut child = command.spawn().map_err(|e| {
            format!(
                "starting {}: {e}",
                runtime.pop3d().unwrap_or_default().display()
            )
        })?;
        let pid = child.id();
        let up = sys::wait_until(Duration::from_secs(20), || {
            TcpStream::connect(plain).is_ok() && TcpStream::connect(tls).is_ok()
        });
        if !up {
            sys::kill_group(&mut child);
            return Err(format!(
                "pop3d ({}) did not listen within 20 s: {}",
                runtime.name(),
                sys::tail(log)
            )
            .into());
        }
        Ok(Pop3d {
            child,
            plain,
            tls,
            pid,
        })
    }

    /// CPU seconds of the server so far.
    pub fn cpu(&self) -> f64 {
        sys::group_cpu(self.pid)
    }
}

impl Drop for Pop3d {
    fn drop(&mut self) {
        sys::kill_group(&mut self.child);
    }
}

/// Writes a passwd-file (`user:{PLAIN}secret`) for `users`.
pub fn passwd_file(path: &Path, users: &[String]) -> Result<(), Error> {
    let mut f = std::fs::File::create(path)?;
    for u in users {
        writeln!(f, "{u}:{{PLAIN}}{PASSWORD}")?;
    }
    Ok(())
}

/// How a client reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Plain,
    Stls,
}

impl Link {
    pub fn name(self) -> &'static str {
        match self {
            Link::Plain => "plain",
            Link::Stls => "STLS",
        }
    }
}

/// A client fetching a whole maildrop (keeping it on the server).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    Fetch(Runtime),
    Mpop,
    Curl,
    Poplib,
    Fetchmail,
    /// getmail6: it has no STLS for POP3, so it takes implicit TLS.
    Getmail,
}

impl Client {
    pub fn name(self) -> String {
        match self {
            Client::Fetch(r) => format!("fetch ({})", r.name()),
            Client::Mpop => "mpop".into(),
            Client::Curl => "curl".into(),
            Client::Poplib => "poplib".into(),
            Client::Fetchmail => "fetchmail".into(),
            Client::Getmail => "getmail6".into(),
        }
    }

    pub fn available(self) -> bool {
        match self {
            Client::Fetch(_) => true,
            Client::Mpop => sys::have("mpop"),
            Client::Curl => sys::have("curl"),
            Client::Poplib => sys::have("python3"),
            Client::Fetchmail => sys::have("fetchmail"),
            Client::Getmail => sys::have("getmail"),
        }
    }
}

/// The poplib contender: every message into a Maildir, each written to
/// `tmp/`, fsynced and renamed into `new/` (the durability of `fetch`).
const POPLIB_FETCH: &str = r#"
import os, poplib, ssl, sys
host, port, user, password, link, ca, maildir = sys.argv[1:8]
pop = poplib.POP3(host, int(port))
if link == "stls":
    pop.stls(ssl.create_default_context(cafile=ca))
pop.user(user)
pop.pass_(password)
count = int(pop.stat()[0])
for sub in ("tmp", "new", "cur"):
    os.makedirs(os.path.join(maildir, sub), exist_ok=True)
for n in range(1, count + 1):
    _, lines, _ = pop.retr(n)
    name = "%d.poplib" % n
    tmp = os.path.join(maildir, "tmp", name)
    with open(tmp, "wb") as f:
        f.write(b"\n".join(lines) + b"\n")
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, os.path.join(maildir, "new", name))
d = os.open(os.path.join(maildir, "new"), os.O_RDONLY)
os.fsync(d)
os.close(d)
pop.quit()
"#;

/// What one client run needs to know.
pub struct Fetching<'a> {
    /// The plain port (STLS upgrades it).
    pub server: SocketAddr,
    /// The implicit-TLS port (for getmail6).
    pub tls_server: SocketAddr,
    pub link: Link,
    pub ca: &'a Path,
    pub user: &'a str,
    pub count: usize,
    /// A fresh directory for this run's output.
    pub out: &'a Path,
    /// Where the client's own output and errors go.
    pub log: &'a Path,
    /// Scratch space (configuration files).
    pub scratch: &'a Path,
    /// Whether to start from no client state (mpop's UID file, getmail6's
    /// and fetchmail's seen lists): false to rerun after a cut.
    pub fresh: bool,
}

/// What one client run did.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub wall: f64,
    pub cpu: f64,
    /// Messages in the output after the run.
    pub stored: usize,
    /// Whether the client exited with success.
    pub ok: bool,
}

/// Runs `client` once: wall seconds and CPU seconds (of every process it
/// took, `sync` included for curl). Checks that every message was stored.
pub fn fetch_once(client: Client, f: &Fetching<'_>) -> Result<(f64, f64), Error> {
    let run = fetch_run(client, f, true)?;
    Ok((run.wall, run.cpu))
}

/// Runs `client` once; with `check`, a failed run or a missing message is
/// an error, else they are told in the result.
pub fn fetch_run(client: Client, f: &Fetching<'_>, check: bool) -> Result<Run, Error> {
    let run_measured = |c: Command, what: &str, log: &Path| {
        if check {
            sys::run_measured(c, what, log)
        } else {
            sys::run_unchecked(c, what, log)
        }
    };
    let port = f.server.port().to_string();
    // The certificate names localhost; the plain runs use the address.
    let host = match f.link {
        Link::Plain => "127.0.0.1",
        Link::Stls => "localhost",
    };
    let (wall, usage, stored_dir) = match client {
        Client::Fetch(runtime) => {
            let mut c = Command::new(runtime.fetch()?);
            c.arg(format!("pop://{}@{host}:{port}", f.user))
                .arg("--maildir")
                .arg(f.out)
                .env("POP3_PASSWORD", PASSWORD);
            match f.link {
                Link::Plain => c.args(["--auth", "USER", "--insecure-cleartext-login"]),
                Link::Stls => c
                    .arg("--starttls")
                    .arg("--ca-file")
                    .arg(f.ca)
                    .args(["--auth", "USER"]),
            };
            let (wall, usage) = run_measured(c, &client.name(), f.log)?;
            (wall, usage, f.out.join("new"))
        }
        Client::Mpop => {
            for sub in ["cur", "new", "tmp"] {
                std::fs::create_dir_all(f.out.join(sub))?;
            }
            let rc = f.scratch.join("mpoprc");
            let uidls = f.scratch.join("mpop.uidls");
            if f.fresh {
                let _ = std::fs::remove_file(&uidls);
            }
            let mut text = format!("account bench\nhost {host}\nport {port}\n");
            match f.link {
                Link::Plain => text.push_str("tls off\n"),
                Link::Stls => text.push_str(&format!(
                    "tls on\ntls_starttls on\ntls_trust_file {}\n",
                    f.ca.display()
                )),
            }
            text.push_str(&format!(
                "user {}\npassword {PASSWORD}\nauth user\ndelivery maildir {}\nuidls_file {}\n\
                 received_header off\nkeep on\npipelining auto\n",
                f.user,
                f.out.display(),
                uidls.display()
            ));
            std::fs::write(&rc, text)?;
            std::fs::set_permissions(&rc, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
            let mut c = Command::new("mpop");
            c.arg("-q").arg("-C").arg(&rc).arg("bench");
            let (wall, usage) = run_measured(c, "mpop", f.log)?;
            (wall, usage, f.out.join("new"))
        }
        Client::Curl => {
            std::fs::create_dir_all(f.out)?;
            let mut c = Command::new("curl");
            c.args(["--silent", "--show-error", "--fail", "--user"])
                .arg(format!("{}:{PASSWORD}", f.user));
            if f.link == Link::Stls {
                c.arg("--ssl-reqd").arg("--cacert").arg(f.ca);
            }
            // One process, one connection: curl reuses it for every URL.
            let mut files = Vec::new();
            for n in 1..=f.count {
                let file = f.out.join(format!("{n}.eml"));
                c.arg(format!("pop3://{host}:{port}/{n}"))
                    .arg("-o")
                    .arg(&file);
                files.push(file);
            }
            let (wall, usage) = run_measured(c, "curl", f.log)?;
            // The same durability as the others: every file synced.
            let mut sync = Command::new("sync");
            sync.args(&files);
            let (sync_wall, sync_usage) = sys::run_measured(sync, "sync", f.log)?;
            let mut usage = usage;
            usage.cpu += sync_usage.cpu;
            (wall + sync_wall, usage, f.out.to_owned())
        }
        Client::Poplib => {
            let script = f.scratch.join("poplib_fetch.py");
            std::fs::write(&script, POPLIB_FETCH)?;
            let mut c = Command::new("python3");
            c.arg(&script)
                .arg(host)
                .arg(&port)
                .arg(f.user)
                .arg(PASSWORD)
                .arg(match f.link {
                    Link::Plain => "plain",
                    Link::Stls => "stls",
                })
                .arg(f.ca)
                .arg(f.out);
            let (wall, usage) = run_measured(c, "poplib", f.log)?;
            (wall, usage, f.out.join("new"))
        }
        Client::Fetchmail => {
            // fetchmail has no Maildir delivery: one BSMTP file (not
            // synced), the cheapest of its ways to store.
            std::fs::create_dir_all(f.out)?;
            let home = f.scratch.join("fetchmail");
            if f.fresh {
                let _ = std::fs::remove_dir_all(&home);
            }
            std::fs::create_dir_all(&home)?;
            let rc = home.join("fetchmailrc");
            let tls = match f.link {
                Link::Plain => "sslproto ''".to_owned(),
                Link::Stls => format!(
                    "sslproto 'tls1.2+' sslcertck sslcertfile {} sslcommonname localhost",
                    f.ca.display()
                ),
            };
            std::fs::write(
                &rc,
                format!(
                    "set no syslog\n\
                     poll 127.0.0.1 port {port} protocol pop3 auth password uidl\n  \
                     user \"{}\" there with password \"{PASSWORD}\" is \"root\" here \
                     options keep {tls} bsmtp \"{}\"\n",
                    f.user,
                    f.out.join("mail.bsmtp").display()
                ),
            )?;
            std::fs::set_permissions(&rc, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
            let mut c = Command::new("fetchmail");
            c.args(["-N", "--nosyslog", "-f"])
                .arg(&rc)
                .env("FETCHMAILHOME", &home);
            let (wall, usage) = sys::run_unchecked(c, "fetchmail", f.log)?;
            // 1: no mail; anything else but 0 is a failure.
            if check && !usage.status.success() {
                return Err(
                    format!("fetchmail failed ({}): {}", usage.status, sys::tail(f.log)).into(),
                );
            }
            (wall, usage, f.out.to_owned())
        }
        Client::Getmail => {
            for sub in ["cur", "new", "tmp"] {
                std::fs::create_dir_all(f.out.join(sub))?;
            }
            let dir = f.scratch.join("getmail");
            if f.fresh {
                let _ = std::fs::remove_dir_all(&dir);
            }
            std::fs::create_dir_all(&dir)?;
            // As root, getmail6 delivers as `nobody`: the output must let it.
            let root = is_root();
            if root {
                for sub in ["", "cur", "new", "tmp"] {
                    std::fs::set_permissions(
                        f.out.join(sub),
                        std::os::unix::fs::PermissionsExt::from_mode(0o777),
                    )?;
                }
            }
            let rc = dir.join("getmailrc");
            std::fs::write(
                &rc,
                format!(
                    "[retriever]\ntype = SimplePOP3SSLRetriever\nserver = 127.0.0.1\n\
                     port = {}\nusername = {}\npassword = {PASSWORD}\nca_certs = {}\n\
                     ssl_cert_hostname = localhost\n\n\
                     [destination]\ntype = Maildir\npath = {}/\n{}\n\
                     [options]\nread_all = false\ndelete = false\nverbose = 0\n\
                     delivered_to = false\nreceived = false\n",
                    f.tls_server.port(),
                    f.user,
                    f.ca.display(),
                    f.out.display(),
                    if root { "user = nobody\n" } else { "" },
                ),
            )?;
            let mut c = Command::new("getmail");
            c.arg("--rcfile").arg(&rc).arg("--getmaildir").arg(&dir);
            let (wall, usage) = run_measured(c, "getmail6", f.log)?;
            (wall, usage, f.out.join("new"))
        }
    };
    let stored = if client == Client::Fetchmail {
        let text = std::fs::read(stored_dir.join("mail.bsmtp")).unwrap_or_default();
        memchr::memmem::find_iter(&text, b"MAIL FROM:").count()
    } else {
        std::fs::read_dir(&stored_dir)
            .map_err(|e| {
                format!(
                    "{}: no output in {}: {e}",
                    client.name(),
                    stored_dir.display()
                )
            })?
            .count()
    };
    if check && stored != f.count {
        return Err(format!("{} stored {stored} of {} messages", client.name(), f.count).into());
    }
    Ok(Run {
        wall,
        cpu: usage.cpu,
        stored,
        ok: usage.status.success(),
    })
}

/// Whether this process runs as root.
fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
