//! What a client operation can end with, for every runtime.

use std::io;
use std::string::String;
use std::sync::Arc;

use bytes::Bytes;

use super::{ClientError, ProtocolError, SaslError, ServerError};
use crate::response::ResponseError;

/// Which timeout expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimeoutKind {
    /// Connecting (resolution, TCP, implicit TLS, greeting).
    Connect,
    /// Waiting for a reply (or the STLS handshake).
    Reply,
    /// The transport made no progress.
    Idle,
}

/// Why a client operation failed.
///
/// [`Error::Server`], [`Error::Malformed`] and [`Error::Command`] leave the
/// session usable; every other error ends it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Error {
    /// Reading, writing or connecting failed.
    Io(Arc<io::Error>),
    /// The TLS handshake failed (e.g. the certificate was not trusted).
    Tls(Arc<io::Error>),
    /// The TLS configuration could not be built.
    TlsConfig(Arc<dyn std::error::Error + Send + Sync>),
    /// The host is not a valid name or address.
    InvalidHost(String),
    /// The name resolved to no address.
    NoAddress(String),
    /// A timeout expired.
    Timeout(TimeoutKind),
    /// The server answered `-ERR`.
    Server(ServerError),
    /// The server broke the protocol; the session is over.
    Protocol(ProtocolError),
    /// A reply could not be parsed (the session stays in step).
    Malformed {
        /// The line.
        line: Bytes,
        /// What was wrong with it.
        error: ResponseError,
    },
    /// The command was refused before reaching the wire (wrong state, bad
    /// argument, clear text refused, ...).
    Command(ClientError),
    /// The SASL mechanism could not answer the server; the exchange was
    /// cancelled.
    Sasl(SaslError),
    /// The SASL mechanism's local work ([`Want::Compute`](super::Want::Compute):
    /// SCRAM's key derivation) did not finish: it panicked, or its thread
    /// pool was shut down. The session is over.
    SaslWork(Arc<io::Error>),
    /// A listing (LIST, UIDL, LANG) had more entries than
    /// [`ConnectionConfig::max_listing_entries`](super::ConnectionConfig::max_listing_entries);
    /// the connection was dropped (without QUIT, so nothing is deleted).
    ListingTooLong {
        /// The limit in force.
        limit: usize,
    },
    /// An operation that changes the session's state over several steps
    /// (a login, STLS, a batch of DELE, QUIT: see
    /// [`OnDrop::Poison`](super::task::OnDrop::Poison)) was started and
    /// dropped before it finished (its future dropped by a timeout or
    /// `select!`). Its outcome is unknown, so the connection was closed
    /// without QUIT (the server commits no deletion); the session is over.
    Cancelled,
    /// The session is over (after QUIT, or the server closed cleanly).
    Closed,
}

impl Error {
    /// Whether trying again later, on a new connection, may succeed: network
    /// failures and timeouts, and `-ERR` replies with `[IN-USE]`,
    /// `[LOGIN-DELAY]` or `[SYS/TEMP]`.
    ///
    /// ```
    /// use pop3_proto::client::{Error, TimeoutKind};
    /// assert!(Error::Timeout(TimeoutKind::Connect).is_transient());
    /// assert!(!Error::Closed.is_transient());
    /// ```
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Io(_) | Error::Timeout(_) | Error::NoAddress(_) => true,
            Error::Server(e) => e.is_transient(),
            Error::Protocol(ProtocolError::UnexpectedEof | ProtocolError::Timeout) => true,
            _ => false,
        }
    }

    /// Whether the session stays usable after this error: `-ERR`, an
    /// unparsable reply, or a command refused before the wire.
    pub fn keeps_session(&self) -> bool {
        matches!(
            self,
            Error::Server(_) | Error::Malformed { .. } | Error::Command(_)
        )
    }

    /// The server's `-ERR`, if that is what this is.
    pub fn server_error(&self) -> Option<&ServerError> {
        match self {
            Error::Server(e) => Some(e),
            _ => None,
        }
    }

    /// A transport failure.
    pub fn io(e: io::Error) -> Error {
        Error::Io(Arc::new(e))
    }
}

impl core::fmt::Display for Error {
    /// What failed at this layer; the cause of a failed transport, TLS
    /// handshake, TLS configuration or SASL work is the
    /// [`source`](std::error::Error::source), not repeated here. A `-ERR`
    /// reply and the core's own errors are told in full.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Io(_) => f.write_str("the connection failed"),
            Error::Tls(_) => f.write_str("TLS handshake failed"),
            Error::TlsConfig(_) => f.write_str("cannot build the TLS configuration"),
            Error::InvalidHost(h) => write!(f, "invalid host name {h:?}"),
            Error::NoAddress(h) => write!(f, "{h} has no address"),
            Error::Timeout(TimeoutKind::Connect) => f.write_str("timed out connecting"),
            Error::Timeout(TimeoutKind::Reply) => f.write_str("timed out waiting for a reply"),
            Error::Timeout(TimeoutKind::Idle) => f.write_str("connection stalled"),
            Error::Server(e) => write!(f, "server said {e}"),
            Error::Protocol(e) => write!(f, "protocol error: {e}"),
            Error::Malformed { error, .. } => write!(f, "malformed reply: {error}"),
            Error::Command(e) => write!(f, "command refused: {e}"),
            Error::Sasl(e) => write!(f, "authentication aborted: {e}"),
            Error::SaslWork(_) => f.write_str("authentication work failed"),
            Error::ListingTooLong { limit } => {
                write!(f, "the server listed more than {limit} entries")
            }
            Error::Cancelled => {
                f.write_str("an operation was cancelled before it finished; the session was closed")
            }
            Error::Closed => f.write_str("the session is closed"),
        }
    }
}

impl std::error::Error for Error {
    /// The lower layer's error behind a failed transport, TLS handshake,
    /// TLS configuration or SASL work; `None` for the rest, which
    /// [`Display`](core::fmt::Display) tells in full.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) | Error::Tls(e) | Error::SaslWork(e) => Some(e.as_ref()),
            Error::TlsConfig(e) => Some(e.as_ref()),
            _ => None,
        }
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        match e {
            Error::Io(inner) => io::Error::new(inner.kind(), Error::Io(inner)),
            Error::Timeout(_) => io::Error::new(io::ErrorKind::TimedOut, e),
            other => io::Error::other(other),
        }
    }
}

impl From<ClientError> for Error {
    fn from(e: ClientError) -> Error {
        match e {
            ClientError::Closed => Error::Closed,
            other => Error::Command(other),
        }
    }
}
