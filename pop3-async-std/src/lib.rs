//! POP3 on the `futures-io` traits (async-std, smol): a thin adapter binding
//! the `pop3-proto` session machines to any `AsyncRead + AsyncWrite` stream.
//!
//! The client and server faces arrive with a later release; this crate holds
//! its place in the workspace.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
