//! The SCRAM key derivation (PBKDF2, tens of milliseconds at the iteration
//! cap) runs on the blocking pool, never on the worker that polls the
//! login: the other tasks of the runtime keep running meanwhile.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::Duration;

use pop3_proto::client::sasl::Scram;
use pop3_proto::store::MemoryStore;
use pop3_proto::types::Secret;
use pop3_tokio::client::{ConnectOptions, Pop3Client, Security};
use support::server::serve_memory;
use tokio::sync::Notify;
use watched::Watched;

mod support;
#[path = "support/watched.rs"]
mod watched;

#[test]
fn a_scram_key_derivation_does_not_stall_the_other_tasks_of_the_runtime() {
    // One worker: if the derivation blocked it, no other task could run.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let login = runtime.spawn(async {
        let store = Arc::new(MemoryStore::new());
        store.add_user("alice", "secret");
        store.add_message("alice", &b"Subject: x\r\n\r\nx\r\n"[..]);
        let (port, server) = serve_memory(store.clone()).await;
        let started = Arc::new(Notify::new());
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let release_rx = Mutex::new(release_rx);
        let threads = Arc::new(Mutex::new(Vec::<ThreadId>::new()));
        let hook = {
            let (started, threads) = (started.clone(), threads.clone());
            move || {
                threads.lock().unwrap().push(std::thread::current().id());
                started.notify_one();
                // Released by a task of the runtime: only if it still runs.
                release_rx
                    .lock()
                    .unwrap()
                    .recv_timeout(Duration::from_secs(20))
                    .expect("the runtime stalled while the key was derived");
            }
        };
        let helper = tokio::spawn(async move {
            started.notified().await;
            release_tx.send(()).unwrap();
        });
        let mut client =
            Pop3Client::connect("127.0.0.1", port, ConnectOptions::new(Security::Plain))
                .await
                .unwrap();
        let polling = std::thread::current().id();
        let mechanism = Watched {
            inner: Scram::sha256("alice", Secret::new("secret"), "fresh-client-nonce-1234"),
            hook: Arc::new(hook),
        };
        client.auth(Box::new(mechanism)).await.unwrap();
        assert_eq!(client.stat().await.unwrap().count, 1);
        helper.await.unwrap();
        let threads = threads.lock().unwrap().clone();
        assert_eq!(
            threads.len(),
            1,
            "the derivation ran {} times",
            threads.len()
        );
        assert_ne!(
            threads[0], polling,
            "the derivation ran on the polling thread"
        );
        client.quit().await.unwrap();
        server.shutdown();
    });
    runtime.block_on(login).unwrap();
}

#[tokio::test]
async fn a_panicking_key_derivation_fails_the_login() {
    let store = Arc::new(MemoryStore::new());
    store.add_user("alice", "secret");
    let (port, server) = serve_memory(store).await;
    let mut client = Pop3Client::connect("127.0.0.1", port, ConnectOptions::new(Security::Plain))
        .await
        .unwrap();
    let mechanism = Watched {
        inner: Scram::sha256("alice", Secret::new("secret"), "fresh-client-nonce-1234"),
        hook: Arc::new(|| panic!("the derivation failed")),
    };
    let err = tokio::time::timeout(Duration::from_secs(20), client.auth(Box::new(mechanism)))
        .await
        .expect("the login hung")
        .unwrap_err();
    assert!(
        matches!(err, pop3_tokio::client::Error::SaslWork(_)),
        "{err:?}"
    );
    server.shutdown();
}
