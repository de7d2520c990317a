//! Every error's message says what failed at its own layer and leaves the
//! cause to `source()`: walking a chain never shows the same text twice.

use std::error::Error as StdError;
use std::io;
use std::sync::Arc;

use pop3_proto::client::{Error, ProtocolError, TimeoutKind};
use pop3_proto::fetch::{AuthError, FetchError, SettingsError};

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

fn io_error(kind: io::ErrorKind, what: &str) -> Arc<io::Error> {
    Arc::new(io::Error::new(kind, what.to_owned()))
}

fn client_errors() -> Vec<Error> {
    vec![
        Error::Io(io_error(
            io::ErrorKind::ConnectionRefused,
            "refused by the peer",
        )),
        Error::Tls(io_error(io::ErrorKind::InvalidData, "unknown issuer")),
        Error::TlsConfig(Arc::new(io::Error::other("no trust roots"))),
        Error::SaslWork(io_error(io::ErrorKind::Other, "the pool is gone")),
        Error::InvalidHost("bad name".into()),
        Error::NoAddress("nowhere.example".into()),
        Error::Timeout(TimeoutKind::Reply),
        Error::Protocol(ProtocolError::UnexpectedEof),
        Error::ListingTooLong { limit: 3 },
        Error::Cancelled,
        Error::Closed,
    ]
}

#[test]
fn client_errors_leave_their_cause_to_source() {
    for e in client_errors() {
        assert_no_message_repeats_its_source(&e);
        // The same error as an `io::Error` (a body reader's failure).
        assert_no_message_repeats_its_source(&io::Error::from(e));
    }
    let e = Error::Io(io_error(
        io::ErrorKind::ConnectionRefused,
        "refused by the peer",
    ));
    assert_eq!(e.source().unwrap().to_string(), "refused by the peer");
}

#[test]
fn fetch_errors_leave_their_cause_to_source() {
    let mut errors: Vec<FetchError> = client_errors().into_iter().map(FetchError::Pop3).collect();
    errors.extend([
        FetchError::Store(io::Error::new(io::ErrorKind::StorageFull, "disk full")),
        FetchError::NoUser,
        FetchError::Auth(AuthError::NoRandomness),
        FetchError::Auth(AuthError::CleartextRefused),
        FetchError::Settings(SettingsError::StartTlsWithImplicitTls),
    ]);
    for e in &errors {
        assert_no_message_repeats_its_source(e);
    }
    let store = FetchError::Store(io::Error::new(io::ErrorKind::StorageFull, "disk full"));
    assert_eq!(store.source().unwrap().to_string(), "disk full");
    // A session's error shows as itself, with its own cause.
    let pop3 = FetchError::Pop3(Error::Tls(io_error(
        io::ErrorKind::InvalidData,
        "unknown issuer",
    )));
    assert_eq!(pop3.to_string(), "TLS handshake failed");
    assert_eq!(pop3.source().unwrap().to_string(), "unknown issuer");
}
