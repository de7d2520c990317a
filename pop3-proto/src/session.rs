//! The vocabulary both session machines share: what leaves a machine.
//!
//! A machine is driven by `handle_*` calls (bytes in, end of stream, time,
//! and on the server side store answers) and emits an ordered queue of
//! [`Action`]s that the caller drains with `poll_action` after *every*
//! `handle_*` call, performing each in order.

use bytes::Bytes;

/// Bytes to write to the peer, in order.
#[derive(Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The octets to write.
    pub bytes: Bytes,
    /// Whether the octets carry a secret (a password, SASL data, an APOP
    /// digest): a protocol log must redact them.
    pub secret: bool,
}

impl core::fmt::Debug for Transmit {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.secret {
            write!(f, "Transmit(<{} octets redacted>)", self.bytes.len())
        } else {
            write!(f, "Transmit({:?})", self.bytes)
        }
    }
}

/// Something the caller must do for a session machine.
///
/// `E` is the side's own payload: typed responses for a client, store
/// requests for a server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action<E> {
    /// Write these octets to the peer (after everything sent before).
    Send(Transmit),
    /// Flush what was sent, then run the TLS handshake on the same stream.
    /// Bytes already read but not yet consumed by the machine must be
    /// discarded by the caller: they were sent in plaintext before the
    /// handshake (see the machine's docs for how each side treats them).
    StartTls,
    /// The side's own event.
    Event(E),
    /// Flush what was sent and close the connection. No more actions follow.
    Close,
}
