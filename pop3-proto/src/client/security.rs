//! How a client connection is protected.

/// How the connection is protected, for a runtime adapter to act on: TLS
/// before the first octet, STLS right after the greeting, or neither. The
/// session machine is the same in every case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Security {
    /// No TLS (port 110). Passwords travel in clear text.
    Plain,
    /// Plain connection upgraded with STLS right after the greeting
    /// (RFC 2595); fails if the server refuses.
    StartTls,
    /// TLS from the first octet (POP3S, port 995; RFC 8314).
    ImplicitTls,
}

impl Security {
    /// The usual port: 995 for implicit TLS, 110 otherwise.
    ///
    /// ```
    /// use pop3_proto::client::Security;
    /// assert_eq!(Security::ImplicitTls.default_port(), 995);
    /// assert_eq!(Security::StartTls.default_port(), 110);
    /// ```
    pub fn default_port(self) -> u16 {
        match self {
            Security::ImplicitTls => 995,
            _ => 110,
        }
    }
}
