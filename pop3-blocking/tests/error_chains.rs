//! The errors this crate returns say what failed at their own layer and
//! leave the cause to `source()`: walking a chain never shows the same
//! text twice.

use std::error::Error as StdError;
use std::net::TcpListener;

use pop3_blocking::client::{ConnectOptions, Error, Pop3Client, Security, TlsVerification};
use pop3_blocking::passwd::{PasswdError, PasswdFile};
use pop3_blocking::tls::{TlsConfigError, certificates_from_pem};

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

#[test]
fn file_and_tls_configuration_errors_leave_their_cause_to_source() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");

    let e = PasswdFile::load(&missing).unwrap_err();
    assert!(matches!(e, PasswdError::Io(_)));
    assert!(e.source().is_some());
    assert_no_message_repeats_its_source(&e);

    let e = certificates_from_pem(&missing, "CA certificate").unwrap_err();
    assert!(matches!(e, TlsConfigError::Pem { .. }));
    assert!(e.source().is_some());
    assert_no_message_repeats_its_source(&e);

    let e = TlsVerification::ca_file(&missing).unwrap_err();
    assert_no_message_repeats_its_source(&e);
}

#[test]
fn connection_errors_leave_their_cause_to_source() {
    // A refused port: the transport's error is the source.
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let e =
        Pop3Client::connect("127.0.0.1", port, ConnectOptions::new(Security::Plain)).unwrap_err();
    assert!(matches!(e, Error::Io(_)), "{e:?}");
    assert!(e.source().is_some());
    assert_no_message_repeats_its_source(&e);

    // Implicit TLS to a peer that answers in plain text: the handshake's
    // error is the source.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let peer = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut stream, _) = listener.accept().unwrap();
        let _ = stream.write_all(b"+OK plain text, not TLS\r\n");
        let _ = stream.read(&mut [0u8; 512]);
    });
    let e = Pop3Client::connect(
        "127.0.0.1",
        port,
        ConnectOptions::new(Security::ImplicitTls),
    )
    .unwrap_err();
    assert!(matches!(e, Error::Tls(_)), "{e:?}");
    assert!(e.source().is_some());
    assert_no_message_repeats_its_source(&e);
    peer.join().unwrap();
}
