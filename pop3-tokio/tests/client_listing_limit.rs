//! A listing longer than the client's limit ends the session instead of
//! growing without bound; nothing is deleted.

use std::sync::Arc;

use pop3_proto::store::MemoryStore;
use pop3_tokio::client::{ConnectOptions, Error, Pop3Client, Security as ClientSecurity, msg};
use support::server::serve_memory;

mod support;

#[tokio::test]
async fn a_listing_past_the_limit_is_an_error_and_ends_the_session() {
    let store = Arc::new(MemoryStore::new());
    store.add_user("alice", "pw");
    for i in 0..20 {
        store.add_message("alice", format!("Subject: {i}\r\n\r\nbody\r\n"));
    }
    let (port, server) = serve_memory(store.clone()).await;

    let mut options = ConnectOptions::new(ClientSecurity::Plain);
    options.session.insecure_cleartext_login = true;
    options.max_listing_entries = 5;
    let mut client = Pop3Client::connect("127.0.0.1", port, options)
        .await
        .unwrap();
    client.login("alice", "pw").await.unwrap();
    client.dele(msg(1).unwrap()).await.unwrap();
    match client.uidl().await {
        Err(Error::ListingTooLong { limit: 5 }) => {}
        other => panic!("expected ListingTooLong, got {other:?}"),
    }
    assert!(client.stat().await.is_err(), "the session is over");
    drop(client);
    server.shutdown();
    server.wait_idle().await;
    // The DELE was never committed: no QUIT reached the server.
    assert_eq!(store.message_count("alice"), 20);
}
