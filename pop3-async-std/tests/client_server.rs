//! This crate's client and server over each runtime's own TCP and Unix
//! streams (`from_stream`, `from_secured_stream`, `serve_connection`), on
//! smol and on async-std. The rest of their behaviour is the shared suite's
//! (the repository's `.ci/suite`).

#[macro_use]
mod support;

use futures_lite::AsyncReadExt;
use pop3_async_std::client::{ConnectOptions, Pop3Client, Security, msg};
use pop3_async_std::server::ServerOptions;
use pop3_proto::client::task;
use support::{start, store};

fn messages() -> Vec<Vec<u8>> {
    vec![
        b"Subject: one\r\n\r\nHello\r\n".to_vec(),
        b"Subject: dots\r\n\r\n.\r\n..\r\n.x\r\nend\r\n".to_vec(),
        b"Subject: three\r\nFrom: a@example.org\r\n\r\nline 1\r\nline 2\r\nline 3\r\n".to_vec(),
    ]
}

async fn read_all(mut body: impl futures_lite::AsyncRead + Unpin) -> Vec<u8> {
    let mut got = Vec::new();
    body.read_to_end(&mut got).await.unwrap();
    got
}

on_both_runtimes! {
    /// The runtime's own TCP streams (smol's, async-std's) carry a session
    /// from `from_stream` to `serve_connection`, upgraded with STLS in place.
    async fn the_runtimes_own_streams_carry_a_session_with_stls<R: Runtime>() {
        let msgs = messages();
        let r = start::<R>(store("alice", &msgs), ServerOptions::default());
        let (client_end, server_end) = R::tcp_pair().await;
        let serving = {
            let server = r.server.clone();
            R::spawn(async move {
                server.serve_connection(server_end, ([127, 0, 0, 1], 0).into(), pop3_async_std::server::Security::Plain).await
            })
        };
        let options = r.options(Security::StartTls);
        let mut client = Pop3Client::from_stream(client_end, "localhost", options).await.unwrap();
        assert!(client.is_tls());
        client.login("alice", "secret").await.unwrap();
        assert_eq!(read_all(client.retr(msg(2).unwrap()).await.unwrap()).await, msgs[1]);
        client.quit().await.unwrap();
        serving.await;
        r.stop().await;
    }

    /// A Unix socket pair carries a session, upgraded with STLS in place.
    async fn a_unix_socket_pair_carries_a_session_with_stls<R: Runtime>() {
        let msgs = messages();
        let r = start::<R>(store("alice", &msgs), ServerOptions::default());
        let (client_end, server_end) = R::unix_pair();
        let serving = {
            let server = r.server.clone();
            let peer = ([0, 0, 0, 0], 0).into();
            R::spawn(async move {
                server.serve_connection(server_end, peer, pop3_async_std::server::Security::Plain).await
            })
        };
        let options = r.options(Security::StartTls);
        let mut client = Pop3Client::from_stream(client_end, "localhost", options).await.unwrap();
        assert!(client.is_tls(), "STLS upgraded the Unix socket");
        client.login("alice", "secret").await.unwrap();
        assert_eq!(read_all(client.retr(msg(1).unwrap()).await.unwrap()).await, msgs[0]);
        client.quit().await.unwrap();
        serving.await;
        r.stop().await;
    }

    /// A stream the caller secured counts as protected on both sides:
    /// USER/PASS, which both refuse on an unprotected session, goes through.
    async fn a_stream_secured_by_the_caller_counts_as_protected<R: Runtime>() {
        let msgs = messages();
        let store = store("alice", &msgs);
        let server = pop3_async_std::server::Pop3Server::build(
            store,
            pop3_proto::server::ServerConfig::default(),
            None,
            ServerOptions::default(),
        );
        let (client_end, server_end) = R::unix_pair();
        let serving = {
            let server = server.clone();
            let peer = ([0, 0, 0, 0], 0).into();
            R::spawn(async move {
                server.serve_connection(server_end, peer, pop3_async_std::server::Security::Secured).await
            })
        };
        let options = ConnectOptions::new(Security::Plain);
        let mut client = Pop3Client::from_secured_stream(client_end, options).await.unwrap();
        assert!(client.is_tls());
        client.run(task::Login::new("alice", "secret")).await.unwrap();
        assert_eq!(read_all(client.retr(msg(3).unwrap()).await.unwrap()).await, msgs[2]);
        client.quit().await.unwrap();
        serving.await;
    }
}
