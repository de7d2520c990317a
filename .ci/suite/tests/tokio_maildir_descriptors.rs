//! A session's descriptors stay few: a `RETR` on a Maildir of many small
//! messages, served through [`SpawnBlocking`] with its read-ahead, leaves
//! no message file open that was read to its end.

use pop3_proto::server::ServerConfig;
use pop3_tokio::SpawnBlocking;
use pop3_tokio::server::{Pop3Server, Security};

#[path = "suite/descriptors.rs"]
mod descriptors;

#[test]
fn a_retr_on_a_maildir_of_small_messages_leaves_no_file_open_on_tokio() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (_root, store) = descriptors::small_messages();
    let server = Pop3Server::new(
        SpawnBlocking::new(store),
        ServerConfig::default().allow_plaintext_auth(true),
    );
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = {
        let server = server.clone();
        runtime.spawn(async move { server.serve(listener, Security::Plain).await })
    };
    let (before, after) = descriptors::around_retr(addr);
    assert!(
        after <= before + descriptors::MOST_HELD_AFTER_RETR,
        "{before} descriptors before RETR 1, {after} after"
    );
    server.shutdown();
    runtime.block_on(serving).unwrap().unwrap();
}
