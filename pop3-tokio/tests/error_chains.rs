//! The errors this adapter returns say what failed at their own layer and
//! leave the cause to `source()`: walking a chain never shows the same
//! text twice.

use std::error::Error as StdError;

use pop3_tokio::client::{ConnectOptions, Error, Pop3Client, Security};
use pop3_tokio::fetch::{self, FetchError, FetchSettings, PopUrl};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Walks `e`'s chain: no message contains the message of its source.
fn assert_no_message_repeats_its_source(e: &(dyn StdError + 'static)) {
    let mut current = e;
    while let Some(source) = current.source() {
        let (outer, inner) = (current.to_string(), source.to_string());
        assert!(
            inner.is_empty() || !outer.contains(&inner),
            "{outer:?} repeats its source {inner:?}"
        );
        current = source;
    }
}

/// A port nothing listens on any more.
async fn refused_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn a_refused_connection_and_a_failed_handshake_leave_their_cause_to_source() {
    let port = refused_port().await;
    let e = Pop3Client::connect("127.0.0.1", port, ConnectOptions::new(Security::Plain))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Io(_)), "{e:?}");
    assert!(e.source().is_some());
    assert_no_message_repeats_its_source(&e);

    // Implicit TLS to a peer that answers in plain text.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let peer = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let _ = stream.write_all(b"+OK plain text, not TLS\r\n").await;
        let _ = stream.read(&mut [0u8; 512]).await;
    });
    let e = Pop3Client::connect(
        "127.0.0.1",
        port,
        ConnectOptions::new(Security::ImplicitTls),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, Error::Tls(_)), "{e:?}");
    assert!(e.source().is_some());
    assert_no_message_repeats_its_source(&e);
    peer.await.unwrap();
}

#[tokio::test]
async fn a_failed_fetch_leaves_its_cause_to_source() {
    let port = refused_port().await;
    let url = PopUrl::parse(&format!("pop://alice@127.0.0.1:{port}")).unwrap();
    let e = fetch::connect(&url, &FetchSettings::default())
        .await
        .unwrap_err();
    assert!(matches!(e, FetchError::Pop3(Error::Io(_))), "{e:?}");
    assert!(e.source().is_some());
    assert_no_message_repeats_its_source(&e);
}
