//! A private PostgreSQL cluster for a test: `initdb` into a temporary
//! directory, then `postgres` as a child process on a free loopback port
//! (its socket in the same directory), stopped by its PID when dropped
//! (also when the test panics).
//!
//! The server binaries are looked up in `$PG_BIN`, then in the newest
//! `/usr/lib/postgresql/<version>/bin`, then on `PATH`; without them the
//! test fails saying to `apt-get install postgresql`.
//!
//! PostgreSQL refuses to run as root. When the tests run as root (CI
//! does), the cluster's directory is given to `nobody` and `initdb` and
//! `postgres` run as that user through `setpriv`, which execs the program
//! (so the child's PID is the server's own).
#![allow(dead_code)]

use std::fs::File;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running cluster; dropping it stops the server.
pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    child: Option<Child>,
    as_nobody: bool,
    /// `-c name=value` settings of the server beyond the defaults.
    settings: Vec<String>,
}

fn find_bin() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        if dir.join("initdb").exists() && dir.join("postgres").exists() {
            return dir;
        }
    }
    panic!(
        "the PostgreSQL server binaries (initdb, postgres) are not installed: \
         apt-get install postgresql (or set PG_BIN to their directory)"
    );
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Cluster {
    /// Creates and starts a cluster; returns once it accepts connections.
    pub fn start() -> Cluster {
        Self::start_in(&std::env::temp_dir(), &[])
    }

    /// Creates a cluster in a new directory under `parent` and starts it
    /// with `settings` (`name=value`) beyond the defaults.
    pub fn start_in(parent: &Path, settings: &[&str]) -> Cluster {
        let bin = find_bin();
        let dir = tempfile::Builder::new()
            .prefix("pop3-pg")
            .tempdir_in(parent)
            .unwrap();
        let as_nobody = is_root();
        if as_nobody {
            let status = Command::new("chown")
                .arg("nobody:")
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success(), "chown of the cluster directory failed");
        }
        let mut cluster = Cluster {
            dir,
            bin,
            port: free_port(),
            child: None,
            as_nobody,
            settings: settings.iter().map(|s| (*s).to_owned()).collect(),
        };
        let log = cluster.dir.path().join("initdb.log");
        let mut initdb = cluster.command("initdb");
        initdb
            .arg("-D")
            .arg(cluster.data())
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C"])
            .args(["--no-sync", "--no-instructions"]);
        let status = initdb
            .stdout(Stdio::from(File::create(&log).unwrap()))
            .stderr(Stdio::from(
                File::create(log.with_extension("err")).unwrap(),
            ))
            .status()
            .unwrap();
        assert!(
            status.success(),
            "initdb failed: {}",
            std::fs::read_to_string(log.with_extension("err")).unwrap_or_default()
        );
        cluster.start_server();
        cluster
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A command running `program` of the server binaries, as `nobody`
    /// when we are root.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_nobody {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
                .arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    /// Starts the server on the cluster's port and waits until it accepts
    /// connections.
    pub fn start_server(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = File::create(self.dir.path().join("server.log")).unwrap();
        if self.as_nobody {
            let _ = Command::new("chown")
                .arg("nobody:")
                .arg(self.dir.path().join("server.log"))
                .status();
        }
        let mut command = self.command("postgres");
        let child = command
            .arg("-D")
            .arg(self.data())
            .args(["-k"])
            .arg(self.dir.path())
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-F"])
            .args(["-c", "shared_buffers=16MB", "-c", "max_connections=100"])
            .args(self.settings.iter().flat_map(|s| ["-c", s.as_str()]))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start postgres");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if postgres::Client::connect(&self.conninfo(), postgres::NoTls).is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("postgres exited ({status}): {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "postgres did not accept connections in 60 s: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server (fast shutdown: sessions are cut, nothing
    /// committed is lost) and waits for it to exit.
    pub fn stop_server(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The connection string of the cluster's `postgres` database.
    pub fn conninfo(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres connect_timeout=5",
            self.port
        )
    }

    /// The server's (postmaster's) process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The server's TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_server();
    }
}
