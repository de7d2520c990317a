//! The SCRAM key derivation (PBKDF2, tens of milliseconds at the iteration
//! cap) runs on the blocking pool, never on the thread that polls the
//! login: a future polled beside it keeps running meanwhile.

#[macro_use]
mod support;
#[path = "support/watched.rs"]
mod watched;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::Duration;

use pop3_async_std::client::{Error, Pop3Client, Security};
use pop3_async_std::server::ServerOptions;
use pop3_proto::client::sasl::Scram;
use pop3_proto::types::Secret;
use support::{Flag, start, store, within};
use watched::Watched;

on_both_runtimes! {
    /// While the derivation blocks its thread until a future polled beside
    /// the login (on the same thread) releases it, the login completes: the
    /// derivation ran once, on another thread.
    async fn a_scram_key_derivation_does_not_stall_the_polling_thread<R: Runtime>() {
        let r = start::<R>(store("alice", &[b"Subject: x\r\n\r\nx\r\n".to_vec()]), ServerOptions::default());
        let addr = r.addr(Security::Plain);
        let mut client = Pop3Client::connect("127.0.0.1", addr.port(), r.options(Security::Plain))
            .await
            .unwrap();
        let started = Arc::new(Flag::default());
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let release_rx = Mutex::new(release_rx);
        let threads = Arc::new(Mutex::new(Vec::<ThreadId>::new()));
        let hook = {
            let (started, threads) = (started.clone(), threads.clone());
            move || {
                threads.lock().unwrap().push(std::thread::current().id());
                started.raise();
                release_rx
                    .lock()
                    .unwrap()
                    .recv_timeout(Duration::from_secs(20))
                    .expect("the polling thread stalled while the key was derived");
            }
        };
        let polling = std::thread::current().id();
        let mechanism = Watched {
            inner: Scram::sha256("alice", Secret::new("secret"), "fresh-client-nonce-1234"),
            hook: Arc::new(hook),
        };
        let releaser = async {
            started.wait().await;
            release_tx.send(()).unwrap();
        };
        let (result, ()) = within(
            Duration::from_secs(60),
            futures_lite::future::zip(client.auth(Box::new(mechanism)), releaser),
        )
        .await;
        result.unwrap();
        assert_eq!(client.stat().await.unwrap().count, 1);
        let threads = threads.lock().unwrap().clone();
        assert_eq!(threads.len(), 1, "the derivation ran {} times", threads.len());
        assert_ne!(threads[0], polling, "the derivation ran on the polling thread");
        client.quit().await.unwrap();
        r.stop().await;
    }

    /// A derivation that panics fails the login; it does not hang.
    async fn a_panicking_key_derivation_fails_the_login<R: Runtime>() {
        let r = start::<R>(store("alice", &[]), ServerOptions::default());
        let addr = r.addr(Security::Plain);
        let mut client = Pop3Client::connect("127.0.0.1", addr.port(), r.options(Security::Plain))
            .await
            .unwrap();
        let mechanism = Watched {
            inner: Scram::sha256("alice", Secret::new("secret"), "fresh-client-nonce-1234"),
            hook: Arc::new(|| panic!("the derivation failed")),
        };
        let err = within(Duration::from_secs(20), client.auth(Box::new(mechanism)))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::SaslWork(_)), "{err:?}");
        drop(client);
        r.stop().await;
    }
}
