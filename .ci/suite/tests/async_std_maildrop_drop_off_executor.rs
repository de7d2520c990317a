//! Releasing a blocking store's maildrop (which may close files and
//! release a lock) happens on the `blocking` pool, never on the thread that
//! polls the session.

#[path = "suite/drop_watch.rs"]
mod drop_watch;

use std::thread;
use std::time::Duration;

use drop_watch::DropWatch;
use futures_lite::future::or;
use pop3_async_std::Unblock;
use pop3_async_std::client::{ConnectOptions, Pop3Client, Security};
use pop3_async_std::server::{Pop3Server, Security as Listening};
use pop3_proto::server::ServerConfig;

/// `serve` is polled by the test's thread, and with it every session.
async fn a_maildrop_released_when_the_client_vanishes_is_dropped_off_the_polling_thread() {
    let (store, dropped) = DropWatch::new();
    let server = Pop3Server::new(
        Unblock::new(store),
        ServerConfig::default().allow_plaintext_auth(true),
    );
    let listener =
        pop3_async_std::server::Async::<std::net::TcpListener>::bind(([127, 0, 0, 1], 0)).unwrap();
    let port = listener.get_ref().local_addr().unwrap().port();
    let session = async {
        let mut options = ConnectOptions::new(Security::Plain);
        options.session.insecure_cleartext_login = true;
        let mut client = Pop3Client::connect("127.0.0.1", port, options)
            .await
            .unwrap();
        client.login("alice", "secret").await.unwrap();
        assert_eq!(client.stat().await.unwrap().count, 1);
        // Gone without QUIT: the session releases the maildrop.
        drop(client);
        blocking::unblock(move || dropped.recv_timeout(Duration::from_secs(20)))
            .await
            .expect("the maildrop was never dropped")
    };
    let serving = async {
        server.serve(listener, Listening::Plain).await.unwrap();
        unreachable!("serve returned before the shutdown");
    };
    let dropped_on = or(session, serving).await;
    assert_ne!(
        dropped_on,
        thread::current().id(),
        "the maildrop was dropped on the polling thread"
    );
}

#[test]
fn a_maildrop_released_when_the_client_vanishes_is_dropped_off_the_polling_thread_on_smol() {
    smol::block_on(
        a_maildrop_released_when_the_client_vanishes_is_dropped_off_the_polling_thread(),
    );
}

#[test]
fn a_maildrop_released_when_the_client_vanishes_is_dropped_off_the_polling_thread_on_async_std() {
    async_std::task::block_on(
        a_maildrop_released_when_the_client_vanishes_is_dropped_off_the_polling_thread(),
    );
}
