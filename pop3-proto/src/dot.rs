//! Multi-line bodies: the streaming dot-unstuffer (client side) and
//! dot-stuffer (server side), and the RFC 1939 §11 octet count.

use bytes::{Bytes, BytesMut};

/// What the body decoder produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyEvent {
    /// Unstuffed body octets, a zero-copy slice of the input.
    Data(Bytes),
    /// The terminating `.` line was consumed; the body is complete.
    End,
}

/// Streaming decoder of a multi-line body (RETR/TOP).
#[derive(Debug, Clone, Default)]
pub struct BodyDecoder {}

impl BodyDecoder {
    /// A decoder positioned at the start of a body.
    pub fn new() -> Self {
        BodyDecoder {}
    }

    /// Takes what it can from the front of `src`. `None`: more input needed.
    pub fn decode(&mut self, src: &mut BytesMut) -> Option<BodyEvent> {
        let _ = src;
        todo!()
    }
}

/// Streaming encoder of a multi-line body: dot-stuffing, bare LF → CRLF, a
/// final CRLF added when missing, and the terminator.
#[derive(Debug, Clone, Default)]
pub struct BodyEncoder {}

impl BodyEncoder {
    /// An encoder for a whole message (RETR).
    pub fn new() -> Self {
        BodyEncoder {}
    }

    /// Appends the encoding of `chunk` to `dst`.
    pub fn encode(&mut self, chunk: &[u8], dst: &mut BytesMut) {
        let _ = (chunk, dst);
        todo!()
    }

    /// Ends the body: a CRLF if the last line lacked one, then `.` CRLF.
    pub fn finish(&mut self, dst: &mut BytesMut) {
        let _ = dst;
        todo!()
    }
}
