//! Releasing a blocking store's maildrop (which may close files and
//! release a lock) happens on the blocking pool, never on the thread that
//! polls the session.

use std::thread;
use std::time::Duration;

use drop_watch::DropWatch;
use pop3_proto::server::ServerConfig;
use pop3_tokio::SpawnBlocking;
use pop3_tokio::client::{ConnectOptions, Pop3Client, Security};
use pop3_tokio::server::{Pop3Server, Security as Listening};

#[path = "suite/drop_watch.rs"]
mod drop_watch;

/// A current-thread runtime: the test's thread polls every session.
#[tokio::test]
async fn a_maildrop_released_when_the_client_vanishes_is_dropped_off_the_polling_thread() {
    let (store, dropped) = DropWatch::new();
    let server = Pop3Server::new(
        SpawnBlocking::new(store),
        ServerConfig::default().allow_plaintext_auth(true),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let serving = {
        let server = server.clone();
        tokio::spawn(async move { server.serve(listener, Listening::Plain).await })
    };
    let mut options = ConnectOptions::new(Security::Plain);
    options.session.insecure_cleartext_login = true;
    let mut client = Pop3Client::connect("127.0.0.1", port, options)
        .await
        .unwrap();
    client.login("alice", "secret").await.unwrap();
    assert_eq!(client.stat().await.unwrap().count, 1);
    // Gone without QUIT: the session releases the maildrop.
    drop(client);
    let dropped_on =
        tokio::task::spawn_blocking(move || dropped.recv_timeout(Duration::from_secs(20)))
            .await
            .unwrap()
            .expect("the maildrop was never dropped");
    assert_ne!(
        dropped_on,
        thread::current().id(),
        "the maildrop was dropped on the polling thread"
    );
    server.shutdown();
    serving.await.unwrap().unwrap();
}
