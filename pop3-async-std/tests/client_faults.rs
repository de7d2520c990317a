//! This crate's client against a scripted server on loopback that never
//! greets, on smol and on async-std (a silent reply is the shared suite's).

#[macro_use]
mod support;

use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use pop3_async_std::client::{ConnectOptions, Error, Pop3Client, Security, TimeoutKind};
use support::{Runtime, listener};

/// A server that sends `greeting` and then only reads, answering nothing,
/// until the client closes; its task returns what it read.
fn silent<R: Runtime>(greeting: &'static [u8]) -> (u16, support::Joined<Vec<u8>>) {
    let listener = listener();
    let port = listener.get_ref().local_addr().unwrap().port();
    let task = R::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        stream.write_all(greeting).await.unwrap();
        let (mut got, mut buf) = (Vec::new(), [0; 1024]);
        while let Ok(n @ 1..) = stream.read(&mut buf).await {
            got.extend_from_slice(&buf[..n]);
        }
        got
    });
    (port, task)
}

fn quick() -> ConnectOptions {
    let mut o = ConnectOptions::new(Security::Plain);
    o.session.insecure_cleartext_login = true;
    o.connect_timeout = Duration::from_millis(400);
    o.read_capabilities = false;
    o.session.reply_timeout = Some(Duration::from_millis(300));
    o
}

on_both_runtimes! {
    /// A server that accepts but never greets is a connect timeout.
    async fn a_server_that_never_greets_is_a_connect_timeout<R: Runtime>() {
        let (port, server) = silent::<R>(b"");
        let started = Instant::now();
        let err = Pop3Client::connect("127.0.0.1", port, quick()).await.unwrap_err();
        assert!(matches!(err, Error::Timeout(TimeoutKind::Connect)), "{err:?}");
        // The greeting is awaited like a reply: the nearer deadline counts.
        assert!(started.elapsed() >= Duration::from_millis(250), "{:?}", started.elapsed());
        assert_eq!(server.await, b"");
    }
}
