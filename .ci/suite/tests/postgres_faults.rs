//! Faults around the PostgreSQL store: a frontend process killed in the
//! middle of a session (its lease expires, nothing it marked is deleted),
//! and PostgreSQL restarted in the middle of a session served by an
//! adapter (the session goes on and commits).

#[path = "suite/blocking_rt.rs"]
mod blocking_rt;
#[path = "support/pg_cluster.rs"]
mod pg_cluster;
#[path = "suite/mod.rs"]
mod suite;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use blocking_rt::Blocking;
use pg_cluster::Cluster;
use pop3_blocking::postgres::{PgOptions, PgStore};
use pop3_blocking::server::{Pop3Server, Security as Listener};
use pop3_proto::client::Security;
use pop3_proto::server::{ServerConfig, ServerOptions};
use pop3_proto::store::{BlockingMaildrop, BlockingStore, Inline, OffloadStore, StoreError};
use suite::{Client, Runtime, msg};

/// Where the frontend process finds its database.
const FRONTEND_CONNINFO: &str = "POP3_TEST_FRONTEND_CONNINFO";
/// The frontend process's lease time.
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
    options.lease = FRONTEND_LEASE;
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
    let mut frontend = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "frontend_process", "--nocapture"])
        .env(FRONTEND_CONNINFO, cluster.conninfo())
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
    let deadline = Instant::now() + FRONTEND_LEASE + Duration::from_secs(30);
    let maildrop = loop {
        match store.open("alice") {
            Ok(m) => break m,
            Err(StoreError::InUse) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100))
            }
            Err(e) => panic!("the dead frontend's lease never expired: {e}"),
        }
    };
    assert_eq!(maildrop.messages().len(), 3);
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
