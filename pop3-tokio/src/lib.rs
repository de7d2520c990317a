//! POP3 on tokio: a thin adapter binding the `pop3-proto` session machines to
//! tokio sockets, with TLS (STLS and implicit) through tokio-rustls.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod blocking;
pub mod tls;

pub use blocking::{SpawnBlocking, SpawnBlockingMaildrop, SpawnBlockingReader};
mod io;
pub mod server;
