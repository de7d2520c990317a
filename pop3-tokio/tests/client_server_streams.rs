//! The client and the server over streams that are not TCP: one end each
//! of an in-memory pipe or of a Unix socket pair, plain, upgraded with
//! STLS, or already secured by the caller.

use std::net::SocketAddr;
use std::sync::Arc;

use pop3_proto::client::task;
use pop3_proto::server::ServerConfig;
use pop3_proto::store::MemoryStore;
use pop3_tokio::client::{ConnectOptions, Error, Pop3Client, Security, TlsVerification, msg};
use pop3_tokio::server::{Pop3Server, Security as ServerSecurity, ServerOptions};
use tokio::io::AsyncReadExt;

mod support;

const MESSAGE: &[u8] = b"Subject: hi\r\n\r\nover a pipe\r\n";

fn store() -> Arc<MemoryStore> {
    let store = Arc::new(MemoryStore::new());
    store.add_user("alice", "secret");
    store.add_message("alice", MESSAGE);
    store
}

/// A peer address for streams that have none.
fn no_address() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 0))
}

/// Logs in, reads the message and quits: the session a test runs.
async fn session(client: &mut Pop3Client) -> Result<(), Error> {
    client.login("alice", "secret").await?;
    transaction(client).await
}

/// Reads the message, deletes it and quits.
async fn transaction(client: &mut Pop3Client) -> Result<(), Error> {
    let stat = client.stat().await?;
    assert_eq!((stat.count, stat.size), (1, MESSAGE.len() as u64));
    let mut text = Vec::new();
    let mut body = client.retr(msg(1).unwrap()).await?;
    body.read_to_end(&mut text).await.map_err(Error::io)?;
    assert_eq!(text, MESSAGE);
    client.dele(msg(1).unwrap()).await?;
    client.quit().await
}

#[tokio::test]
async fn a_session_runs_over_an_in_memory_pipe() {
    let store = store();
    let config = ServerConfig::default().allow_plaintext_auth(true);
    let server = Pop3Server::build(store.clone(), config, None, ServerOptions::default());
    let (client_end, server_end) = tokio::io::duplex(4096);
    let serving = {
        let server = server.clone();
        tokio::spawn(async move {
            server
                .serve_connection(server_end, no_address(), ServerSecurity::Plain)
                .await
        })
    };
    let mut options = ConnectOptions::new(Security::Plain);
    options.session.insecure_cleartext_login = true;
    let mut client = Pop3Client::from_stream(client_end, "localhost", options)
        .await
        .unwrap();
    assert!(!client.is_tls());
    session(&mut client).await.unwrap();
    serving.await.unwrap();
    assert_eq!(store.message_count("alice"), 0, "QUIT committed the DELE");
}

#[tokio::test]
async fn a_session_over_a_unix_socket_pair_upgrades_with_stls() {
    let (tls, ca_pem) = support::server::test_tls();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let store = store();
    let server = Pop3Server::build(
        store.clone(),
        ServerConfig::default(),
        Some(tls),
        ServerOptions::default(),
    );
    let (client_end, server_end) = tokio::net::UnixStream::pair().unwrap();
    let serving = {
        let server = server.clone();
        tokio::spawn(async move {
            server
                .serve_connection(server_end, no_address(), ServerSecurity::Plain)
                .await
        })
    };
    let mut options = ConnectOptions::new(Security::StartTls);
    options.verification = TlsVerification::ca_file(&ca).unwrap();
    let mut client = Pop3Client::from_stream(client_end, "localhost", options)
        .await
        .unwrap();
    assert!(client.is_tls(), "STLS upgraded the Unix socket");
    session(&mut client).await.unwrap();
    serving.await.unwrap();
    assert_eq!(store.message_count("alice"), 0);
}

#[tokio::test]
async fn a_stream_secured_by_the_caller_counts_as_protected_on_both_sides() {
    let store = store();
    // Clear-text logins are refused on unprotected sessions, on both sides.
    let server = Pop3Server::build(
        store.clone(),
        ServerConfig::default(),
        None,
        ServerOptions::default(),
    );
    let (client_end, server_end) = tokio::io::duplex(4096);
    let serving = {
        let server = server.clone();
        tokio::spawn(async move {
            server
                .serve_connection(server_end, no_address(), ServerSecurity::Secured)
                .await
        })
    };
    let mut client =
        Pop3Client::from_secured_stream(client_end, ConnectOptions::new(Security::Plain))
            .await
            .unwrap();
    assert!(client.is_tls());
    // USER/PASS: refused by both sides on a session they hold unprotected.
    client
        .run(task::Login::new("alice", "secret"))
        .await
        .unwrap();
    transaction(&mut client).await.unwrap();
    serving.await.unwrap();
    assert_eq!(store.message_count("alice"), 0);
}

#[tokio::test]
async fn a_connection_over_the_cap_is_refused_on_its_own_stream() {
    let mut options = ServerOptions::default();
    options.max_connections = 1;
    let server = Pop3Server::build(store(), ServerConfig::default(), None, options);
    let (mut first_client, first_server) = tokio::io::duplex(4096);
    let first = {
        let server = server.clone();
        tokio::spawn(async move {
            server
                .serve_connection(first_server, no_address(), ServerSecurity::Plain)
                .await
        })
    };
    // The first session holds the only slot once its greeting is out.
    let mut greeting = [0u8; 3];
    first_client.read_exact(&mut greeting).await.unwrap();
    assert_eq!(&greeting, b"+OK");
    let (mut second_client, second_server) = tokio::io::duplex(4096);
    server
        .serve_connection(second_server, no_address(), ServerSecurity::Plain)
        .await;
    let mut refusal = Vec::new();
    second_client.read_to_end(&mut refusal).await.unwrap();
    assert!(refusal.starts_with(b"-ERR [SYS/TEMP]"), "{refusal:?}");
    drop(first_client);
    first.await.unwrap();
}
