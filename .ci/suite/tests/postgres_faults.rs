//! Faults around the PostgreSQL store: a frontend process killed in the
//! middle of a session (its lease expires, nothing it marked is deleted)
//! or during its QUIT (the QUIT was confirmed and exactly the undeleted
//! messages remain, or it was not and every message is there), PostgreSQL
//! restarted in the middle of a session served by an adapter (the session
//! goes on and commits), and the database connections cut by a proxy
//! between the frontend and PostgreSQL (the session goes on after a
//! reconnect or gets `-ERR [SYS/TEMP]`, nothing is lost, and the maildrop
//! is free again within the lease time).

#[path = "suite/blocking_rt.rs"]
mod blocking_rt;
#[path = "support/pg_cluster.rs"]
mod pg_cluster;
#[path = "suite/mod.rs"]
mod suite;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use blocking_rt::Blocking;
use pg_cluster::Cluster;
use pop3_blocking::postgres::{PgOptions, PgStore};
use pop3_blocking::server::{Pop3Server, Security as Listener};
use pop3_proto::client::{Error, Security};
use pop3_proto::response::CodeKind;
use pop3_proto::server::{ServerConfig, ServerOptions};
use pop3_proto::store::{BlockingMaildrop, BlockingStore, Inline, OffloadStore, StoreError};
use suite::{Client, Runtime, msg};

/// Where the frontend process finds its database.
const FRONTEND_CONNINFO: &str = "POP3_TEST_FRONTEND_CONNINFO";
/// The frontend process's lease time, in milliseconds.
const FRONTEND_LEASE_MS: &str = "POP3_TEST_FRONTEND_LEASE_MS";
/// The frontend process's lease time unless the test says.
const FRONTEND_LEASE: Duration = Duration::from_secs(5);

/// Not a test: the frontend process of
/// [`a_killed_frontend_loses_its_lease_and_deletes_nothing`], which runs
/// this test binary again with only this function. It serves the database
/// named in the environment with the blocking server and prints its port.
#[test]
#[ignore = "run by a_killed_frontend_loses_its_lease_and_deletes_nothing as its frontend process"]
fn frontend_process() {
    let conninfo = std::env::var(FRONTEND_CONNINFO)
        .expect("run by a_killed_frontend_loses_its_lease_and_deletes_nothing");
    let mut options = PgOptions::default();
    options.lease = std::env::var(FRONTEND_LEASE_MS)
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map_or(FRONTEND_LEASE, Duration::from_millis);
    let store = PgStore::connect_with(&conninfo, options).unwrap();
    let config = ServerConfig::default().allow_plaintext_auth(true);
    let server = Pop3Server::build(
        Arc::new(OffloadStore::<_, Inline>::new(store)),
        config,
        None,
        ServerOptions::default(),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    println!("PORT {}", listener.local_addr().unwrap().port());
    server.serve(listener, Listener::Plain).unwrap();
}

#[test]
fn a_killed_frontend_loses_its_lease_and_deletes_nothing() {
    let cluster = Cluster::start();
    let store = PgStore::connect(&cluster.conninfo()).unwrap();
    store.add_user("alice", "{PLAIN}secret").unwrap();
    for i in 0..3 {
        store
            .deliver("alice", &mut format!("Subject: {i}\r\n\r\n").as_bytes())
            .unwrap();
    }
    let (mut frontend, port) = spawn_frontend(&cluster.conninfo(), FRONTEND_LEASE);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let pki = suite::pki();
    let mut client = Blocking::connect(addr, suite::options(Security::Plain, &pki.roots)).unwrap();
    client.login("alice", "secret").unwrap();
    client.dele(msg(1)).unwrap();
    client.dele(msg(2)).unwrap();
    // The frontend dies in the middle of the session.
    frontend.kill().unwrap();
    frontend.wait().unwrap();
    drop(client);
    assert_eq!(store.open("alice").unwrap_err(), StoreError::InUse);
    let maildrop = open_within(&store, FRONTEND_LEASE);
    assert_eq!(maildrop.messages().len(), 3);
}

/// Runs [`frontend_process`] over `conninfo` with `lease`; its port.
fn spawn_frontend(conninfo: &str, lease: Duration) -> (Child, u16) {
    let mut frontend = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "frontend_process", "--nocapture"])
        .env(FRONTEND_CONNINFO, conninfo)
        .env(FRONTEND_LEASE_MS, lease.as_millis().to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(frontend.stdout.take().unwrap()).lines();
    let port: u16 = loop {
        let line = lines
            .next()
            .expect("the frontend ended before it listened")
            .unwrap();
        if let Some(port) = line.strip_prefix("PORT ") {
            break port.parse().unwrap();
        }
    };
    (frontend, port)
}

/// Opens alice's maildrop as soon as no lease holds it, which must be
/// within `lease` (and a margin for a loaded machine) from now.
fn open_within(store: &PgStore, lease: Duration) -> <PgStore as BlockingStore>::Maildrop {
    let deadline = Instant::now() + lease + Duration::from_secs(30);
    loop {
        match store.open("alice") {
            Ok(m) => return m,
            Err(StoreError::InUse) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) => panic!("the maildrop was not free again within the lease time: {e}"),
        }
    }
}

/// A POP3 session spoken by hand, so that a test knows exactly which
/// octets were sent.
struct Raw {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Raw {
    fn connect(port: u16) -> Raw {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut raw = Raw {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        };
        assert!(raw.line().unwrap().starts_with("+OK"), "greeting");
        raw
    }

    /// The next line, or `None` at the end of the stream (or a reset).
    fn line(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line),
        }
    }

    fn send(&mut self, command: &str) {
        self.writer
            .write_all(format!("{command}\r\n").as_bytes())
            .unwrap();
    }

    fn ok(&mut self, command: &str) {
        self.send(command);
        let reply = self.line().expect("connection closed");
        assert!(reply.starts_with("+OK"), "{command}: {reply}");
    }
}

/// How a kill during QUIT is timed.
#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// While the commit waits for the lease row, which the test holds.
    CommitWaiting,
    /// This long after QUIT was sent.
    After(Duration),
}

/// alice with three messages; a frontend process; a session that marked
/// 1 and 2 and sent QUIT; the frontend killed at `at`. Afterwards either
/// the QUIT was confirmed and exactly message 3 remains, or it was not and
/// all three remain once the lease expired. Whether it was confirmed.
fn kill_during_quit(at: KillAt) -> bool {
    let lease = Duration::from_secs(2);
    let cluster = Cluster::start();
    let store = PgStore::connect(&cluster.conninfo()).unwrap();
    store.add_user("alice", "{PLAIN}secret").unwrap();
    let mut uids = Vec::new();
    for i in 0..3 {
        let d = store
            .deliver("alice", &mut format!("Subject: {i}\r\n\r\n").as_bytes())
            .unwrap();
        uids.push(d.uid);
    }
    let (mut frontend, port) = spawn_frontend(&cluster.conninfo(), lease);
    let mut raw = Raw::connect(port);
    raw.ok("USER alice");
    raw.ok("PASS secret");
    raw.ok("DELE 1");
    raw.ok("DELE 2");
    let mut blocker = postgres::Client::connect(&cluster.conninfo(), postgres::NoTls).unwrap();
    let mut holding = None;
    if let KillAt::CommitWaiting = at {
        let mut tx = blocker.transaction().unwrap();
        tx.execute(
            "SELECT 1 FROM leases JOIN accounts ON accounts.id = leases.account
             WHERE accounts.name = 'alice' FOR UPDATE OF leases",
            &[],
        )
        .unwrap();
        holding = Some(tx);
    }
    raw.send("QUIT");
    match at {
        KillAt::CommitWaiting => {
            // The frontend's commit is waiting for the lease row.
            let mut watch =
                postgres::Client::connect(&cluster.conninfo(), postgres::NoTls).unwrap();
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let waiting: i64 = watch
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity
                         WHERE wait_event_type = 'Lock' AND query LIKE '%FOR UPDATE%'",
                        &[],
                    )
                    .unwrap()
                    .get(0);
                if waiting > 0 {
                    break;
                }
                assert!(Instant::now() < deadline, "the commit never waited");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        KillAt::After(d) => std::thread::sleep(d),
    }
    frontend.kill().unwrap();
    frontend.wait().unwrap();
    if let Some(tx) = holding {
        tx.rollback().unwrap();
    }
    let confirmed = raw.line().is_some_and(|l| l.starts_with("+OK"));
    let maildrop = open_within(&store, lease);
    let left: Vec<_> = maildrop.messages().iter().map(|m| m.uid.clone()).collect();
    if confirmed {
        assert_eq!(
            left,
            uids[2..],
            "QUIT confirmed: exactly the undeleted message"
        );
    } else if matches!(at, KillAt::CommitWaiting) {
        // Killed before its transaction could commit: the database rolls
        // it back with the dead connection.
        assert_eq!(left, uids, "QUIT not confirmed: every message");
    } else {
        // Killed after the commit but before its +OK left the process: no
        // server can make a commit and its reply one step. What it must
        // never do is delete part of what was marked, or anything else.
        assert!(
            left == uids || left == uids[2..],
            "QUIT not confirmed: all or exactly the undeleted message, not {left:?}"
        );
    }
    confirmed
}

#[test]
fn a_frontend_killed_while_its_quit_waits_for_the_database_deletes_nothing() {
    assert!(!kill_during_quit(KillAt::CommitWaiting));
}

#[test]
fn a_frontend_killed_just_after_quit_was_sent_deletes_all_or_nothing() {
    for ms in [0, 1, 3, 10, 30] {
        let confirmed = kill_during_quit(KillAt::After(Duration::from_millis(ms)));
        eprintln!("killed {ms} ms after QUIT: confirmed {confirmed}");
    }
}

#[test]
fn postgres_restarted_mid_session_the_session_goes_on_and_commits() {
    let mut cluster = Cluster::start();
    let store = PgStore::connect(&cluster.conninfo()).unwrap();
    store.add_user("alice", "{PLAIN}secret").unwrap();
    let msgs = suite::messages();
    for m in &msgs {
        store.deliver("alice", &mut &m[..]).unwrap();
    }
    let check = PgStore::connect(&cluster.conninfo()).unwrap();
    let pki = suite::pki();
    let store = OffloadStore::<_, Inline>::new(store);
    let config = ServerConfig::for_store(&store).allow_plaintext_auth(true);
    let served = Blocking::serve(
        Arc::new(store),
        config,
        pki.server.clone(),
        ServerOptions::default(),
    );
    let mut client =
        Blocking::connect(served.plain, suite::options(Security::Plain, &pki.roots)).unwrap();
    client.login("alice", "secret").unwrap();
    let mut got = Vec::new();
    client.retr(msg(1), &mut got).unwrap();
    assert_eq!(got, msgs[0]);
    client.dele(msg(1)).unwrap();
    cluster.stop_server();
    cluster.start_server();
    let mut got = Vec::new();
    client.retr(msg(3), &mut got).unwrap();
    assert_eq!(got, msgs[2]);
    client.dele(msg(2)).unwrap();
    client.quit().unwrap();
    let after = check.open("alice").unwrap();
    assert_eq!(after.messages().len(), msgs.len() - 2);
}

/// A loopback TCP proxy to PostgreSQL that can cut every connection it
/// carries and refuse new ones.
struct Proxy {
    addr: SocketAddr,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    open: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let proxy = Proxy {
            addr: listener.local_addr().unwrap(),
            conns: Arc::default(),
            open: Arc::new(AtomicBool::new(true)),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (conns, open, stop) = (proxy.conns.clone(), proxy.open.clone(), proxy.stop.clone());
        std::thread::spawn(move || {
            for down in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(down) = down else { continue };
                if !open.load(Ordering::SeqCst) {
                    continue;
                }
                let Ok(up) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let mut list = conns.lock().unwrap();
                list.push(down.try_clone().unwrap());
                list.push(up.try_clone().unwrap());
                drop(list);
                pipe(down.try_clone().unwrap(), up.try_clone().unwrap());
                pipe(up, down);
            }
        });
        proxy
    }

    /// `host=... port=...` of the proxy.
    fn conninfo(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres connect_timeout=10",
            self.addr.port()
        )
    }

    /// Cuts every connection carried so far.
    fn sever(&self) {
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    /// Whether new connections are carried (or closed at once).
    fn set_open(&self, open: bool) {
        self.open.store(open, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        self.sever();
    }
}

/// Copies `from` to `to` on a thread until either side ends.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

fn code(e: &Error) -> Option<CodeKind> {
    e.server_error().and_then(|s| s.code()).map(|c| c.kind())
}

/// How long the store waits for a database connection where the test
/// expects one to be made again: generous, as a loaded machine (the whole
/// suite runs at once) may take over a second to start a backend.
const RECONNECT_WAIT: Duration = Duration::from_secs(15);

/// alice with the suite's messages; a store reaching the cluster through
/// `proxy` with `lease`, waiting `connect_wait` for a connection, served by
/// the blocking server.
fn behind_proxy(
    cluster: &Cluster,
    proxy: &Proxy,
    lease: Duration,
    connect_wait: Duration,
) -> (PgStore, Vec<Vec<u8>>, suite::Pki, suite::Served) {
    let direct = PgStore::connect(&cluster.conninfo()).unwrap();
    direct.add_user("alice", "{PLAIN}secret").unwrap();
    let msgs = suite::messages();
    for m in &msgs {
        direct.deliver("alice", &mut &m[..]).unwrap();
    }
    let mut options = PgOptions::default();
    options.lease = lease;
    options.connect_timeout = connect_wait;
    let store =
        OffloadStore::<_, Inline>::new(PgStore::connect_with(&proxy.conninfo(), options).unwrap());
    let pki = suite::pki();
    let config = ServerConfig::for_store(&store).allow_plaintext_auth(true);
    let served = Blocking::serve(
        Arc::new(store),
        config,
        pki.server.clone(),
        ServerOptions::default(),
    );
    (direct, msgs, pki, served)
}

#[test]
fn a_cut_database_connection_is_made_again_and_the_session_commits() {
    let cluster = Cluster::start();
    let proxy = Proxy::start(cluster.port());
    let (direct, msgs, pki, served) =
        behind_proxy(&cluster, &proxy, FRONTEND_LEASE, RECONNECT_WAIT);
    let mut client =
        Blocking::connect(served.plain, suite::options(Security::Plain, &pki.roots)).unwrap();
    client.login("alice", "secret").unwrap();
    client.dele(msg(1)).unwrap();
    proxy.sever();
    // The next call finds its pooled connection dead and makes another;
    // should it fail instead, it is temporary and the session goes on.
    let mut got = Vec::new();
    match client.retr(msg(3), &mut got) {
        Ok(_) => {}
        Err(e) => {
            assert_eq!(code(&e), Some(CodeKind::SysTemp), "{e:?}");
            got.clear();
            client.retr(msg(3), &mut got).unwrap();
        }
    }
    assert_eq!(got, msgs[2]);
    client.dele(msg(2)).unwrap();
    proxy.sever();
    client.quit().unwrap();
    // The commit removed the lease: free at once, exactly 3 left.
    let after = direct.open("alice").unwrap();
    assert_eq!(after.messages().len(), msgs.len() - 2);
}

#[test]
fn a_database_cut_off_gives_sys_temp_loses_nothing_and_frees_the_maildrop() {
    let lease = Duration::from_secs(10);
    let cluster = Cluster::start();
    let proxy = Proxy::start(cluster.port());
    // The proxy refuses at once while closed: a short wait keeps the
    // test short.
    let (direct, msgs, pki, served) = behind_proxy(&cluster, &proxy, lease, Duration::from_secs(1));
    let mut client =
        Blocking::connect(served.plain, suite::options(Security::Plain, &pki.roots)).unwrap();
    client.login("alice", "secret").unwrap();
    client.dele(msg(1)).unwrap();
    proxy.set_open(false);
    proxy.sever();
    let err = client.retr(msg(2), &mut Vec::new()).unwrap_err();
    assert_eq!(code(&err), Some(CodeKind::SysTemp), "{err:?}");
    let err = client.quit().unwrap_err();
    assert_eq!(code(&err), Some(CodeKind::SysTemp), "{err:?}");
    // The frontend could neither commit nor remove its lease: the
    // maildrop is held until the lease expires, then every message is
    // there.
    assert_eq!(direct.open("alice").unwrap_err(), StoreError::InUse);
    let maildrop = open_within(&direct, lease);
    assert_eq!(maildrop.messages().len(), msgs.len());
    drop(maildrop);
    // The database reachable again: the same frontend serves alice.
    proxy.set_open(true);
    let mut client =
        Blocking::connect(served.plain, suite::options(Security::Plain, &pki.roots)).unwrap();
    client.login("alice", "secret").unwrap();
    assert_eq!(client.stat().unwrap().count as usize, msgs.len());
    client.quit().unwrap();
}

#[test]
fn a_database_connection_cut_during_quit_deletes_nothing_and_frees_the_maildrop() {
    let cluster = Cluster::start();
    let proxy = Proxy::start(cluster.port());
    let (direct, msgs, pki, served) =
        behind_proxy(&cluster, &proxy, FRONTEND_LEASE, RECONNECT_WAIT);
    let mut client =
        Blocking::connect(served.plain, suite::options(Security::Plain, &pki.roots)).unwrap();
    client.login("alice", "secret").unwrap();
    client.dele(msg(1)).unwrap();
    let mut blocker = postgres::Client::connect(&cluster.conninfo(), postgres::NoTls).unwrap();
    let mut tx = blocker.transaction().unwrap();
    tx.execute("SELECT 1 FROM leases FOR UPDATE", &[]).unwrap();
    let quit = std::thread::spawn(move || client.quit());
    let mut watch = postgres::Client::connect(&cluster.conninfo(), postgres::NoTls).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while watch
        .query_one(
            "SELECT count(*) FROM pg_stat_activity
             WHERE wait_event_type = 'Lock' AND query LIKE '%FOR UPDATE%'",
            &[],
        )
        .unwrap()
        .get::<_, i64>(0)
        == 0
    {
        assert!(Instant::now() < deadline, "the commit never waited");
        std::thread::sleep(Duration::from_millis(10));
    }
    proxy.sever();
    tx.rollback().unwrap();
    let err = quit.join().unwrap().unwrap_err();
    assert_eq!(code(&err), Some(CodeKind::SysTemp), "{err:?}");
    let maildrop = open_within(&direct, FRONTEND_LEASE);
    assert_eq!(maildrop.messages().len(), msgs.len());
}
