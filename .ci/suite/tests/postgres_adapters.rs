//! The PostgreSQL store served by every runtime adapter (blocking, tokio,
//! smol, async-std), to real clients: every command, the maildrop lock across two
//! frontends on different runtimes (`-ERR [IN-USE]`), and `-ERR [SYS/TEMP]`
//! while the database is down.

#[path = "suite/async_rt.rs"]
mod async_rt;
#[path = "suite/blocking_rt.rs"]
mod blocking_rt;
#[path = "support/pg_cluster.rs"]
mod pg_cluster;
#[path = "suite/mod.rs"]
mod suite;
#[path = "suite/tokio_rt.rs"]
mod tokio_rt;

use std::sync::Arc;

use async_rt::{AsyncStd, OnAsync, Smol};
use blocking_rt::Blocking;
use pg_cluster::Cluster;
use pop3_async_std::Unblock;
use pop3_blocking::postgres::PgStore;
use pop3_proto::client::{Error, Security};
use pop3_proto::response::CodeKind;
use pop3_proto::server::{ServerConfig, ServerOptions};
use pop3_proto::store::{BlockingStore, Inline, OffloadStore, Store};
use pop3_tokio::SpawnBlocking;
use suite::{Client, Runtime, Served, msg};
use tokio_rt::Tokio;

fn serve<R: Runtime, S: Store + 'static>(store: S, pki: &suite::Pki) -> Served
where
    S::Maildrop: 'static,
{
    let config = ServerConfig::for_store(&store).allow_plaintext_auth(true);
    R::serve(
        Arc::new(store),
        config,
        pki.server.clone(),
        ServerOptions::default(),
    )
}

fn connect<R: Runtime>(served: &Served, pki: &suite::Pki) -> R::Client {
    R::connect(served.plain, suite::options(Security::Plain, &pki.roots)).unwrap()
}

fn code(e: &Error) -> Option<CodeKind> {
    e.server_error().and_then(|s| s.code()).map(|c| c.kind())
}

/// alice with the suite's messages, delivered through the store.
fn filled(cluster: &Cluster) -> (PgStore, Vec<Vec<u8>>) {
    let store = PgStore::connect(&cluster.conninfo()).unwrap();
    store.add_user("alice", "{PLAIN}secret").unwrap();
    let msgs = suite::messages();
    for m in &msgs {
        store.deliver("alice", &mut &m[..]).unwrap();
    }
    (store, msgs)
}

/// Every command against `R`'s server over `wrap(store)`, then a second
/// session that sees the deletion.
fn every_command<R: Runtime, S: Store + 'static>(wrap: impl Fn(PgStore) -> S)
where
    S::Maildrop: 'static,
{
    let cluster = Cluster::start();
    let (store, msgs) = filled(&cluster);
    let pki = suite::pki();
    let served = serve::<R, _>(wrap(store), &pki);
    let mut client = connect::<R>(&served, &pki);
    client.login("alice", "secret").unwrap();
    let stat = client.stat().unwrap();
    assert_eq!(stat.count as usize, msgs.len());
    assert_eq!(stat.size, msgs.iter().map(|m| m.len() as u64).sum::<u64>());
    let list = client.list().unwrap();
    let uidl = client.uidl().unwrap();
    assert_eq!(uidl.len(), msgs.len());
    for (i, m) in msgs.iter().enumerate() {
        let mut got = Vec::new();
        let n = client.retr(msg(i as u32 + 1), &mut got).unwrap();
        assert_eq!(&got, m, "RETR {}", i + 1);
        assert_eq!(n, list[i].size);
    }
    assert_eq!(
        client.top(msg(2), 1).unwrap(),
        b"Subject: dots\r\n\r\n.\r\n"
    );
    client.dele(msg(1)).unwrap();
    client.quit().unwrap();
    let mut next = connect::<R>(&served, &pki);
    next.login("alice", "secret").unwrap();
    let after = next.uidl().unwrap();
    assert_eq!(
        after.iter().map(|u| u.uid.clone()).collect::<Vec<_>>(),
        uidl[1..].iter().map(|u| u.uid.clone()).collect::<Vec<_>>()
    );
    next.quit().unwrap();
}

#[test]
fn every_command_on_the_blocking_server() {
    every_command::<Blocking, _>(OffloadStore::<_, Inline>::new);
}

#[test]
fn every_command_on_the_tokio_server() {
    every_command::<Tokio, _>(SpawnBlocking::new);
}

#[test]
fn every_command_on_the_smol_server() {
    every_command::<OnAsync<Smol>, _>(Unblock::new);
}

#[test]
fn every_command_on_the_async_std_server() {
    every_command::<OnAsync<AsyncStd>, _>(Unblock::new);
}

#[test]
fn a_second_frontend_answers_in_use_while_the_first_holds_the_maildrop() {
    let cluster = Cluster::start();
    let (first, _) = filled(&cluster);
    let second = PgStore::connect(&cluster.conninfo()).unwrap();
    let pki = suite::pki();
    let on_tokio = serve::<Tokio, _>(SpawnBlocking::new(first), &pki);
    let on_blocking = serve::<Blocking, _>(OffloadStore::<_, Inline>::new(second), &pki);
    let mut holder = connect::<Tokio>(&on_tokio, &pki);
    holder.login("alice", "secret").unwrap();
    let mut other = connect::<Blocking>(&on_blocking, &pki);
    let err = other.login("alice", "secret").unwrap_err();
    assert_eq!(code(&err), Some(CodeKind::InUse), "{err:?}");
    holder.dele(msg(1)).unwrap();
    holder.quit().unwrap();
    let mut after = connect::<Blocking>(&on_blocking, &pki);
    after.login("alice", "secret").unwrap();
    assert_eq!(after.stat().unwrap().count, 3);
    after.quit().unwrap();
}

#[test]
fn logins_get_sys_temp_while_the_database_is_down() {
    let mut cluster = Cluster::start();
    let mut options = pop3_blocking::postgres::PgOptions::default();
    options.connect_timeout = std::time::Duration::from_secs(1);
    let store = PgStore::connect_with(&cluster.conninfo(), options).unwrap();
    store.add_user("alice", "{PLAIN}secret").unwrap();
    store
        .deliver("alice", &mut &b"Subject: kept\r\n\r\n"[..])
        .unwrap();
    assert!(store.credential_forms().password);
    let pki = suite::pki();
    let served = serve::<Tokio, _>(SpawnBlocking::new(store), &pki);
    cluster.stop_server();
    let mut client = connect::<Tokio>(&served, &pki);
    let err = client.login("alice", "secret").unwrap_err();
    assert_eq!(code(&err), Some(CodeKind::SysTemp), "{err:?}");
    drop(client);
    cluster.start_server();
    let mut client = connect::<Tokio>(&served, &pki);
    client.login("alice", "secret").unwrap();
    assert_eq!(client.stat().unwrap().count, 1);
    client.quit().unwrap();
}
