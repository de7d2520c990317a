//! Sans-IO POP3: the protocol, exact and streaming, for any runtime.
//!
//! This crate is the whole of POP3 (RFC 1939, with CAPA and response codes
//! from RFC 2449, STLS from RFC 2595, AUTH from RFC 5034, UTF8 and LANG from
//! RFC 6856) as values and state machines. It never touches a socket, a
//! file, a clock or a runtime: bytes, time and a store's answers come in as
//! values, and everything it wants done leaves as an [`Action`](session::Action).
//! It is `no_std` + `alloc` (the default `std` feature adds
//! `std::error::Error` impls, the in-memory store, SASLprep and the
//! connection layers).
//!
//! # Features
//!
//! | feature | default | what it adds |
//! | --- | --- | --- |
//! | `std` | yes | `std::error::Error` impls, the in-memory store, SASLprep of non-ASCII SCRAM passwords, the client's and server's connection layers; `std` in dependencies |
//! | `client` | yes | the client session machine ([`client`]) |
//! | `server` | yes | the server session machine and the store contract ([`server`], [`store`]) |
//! | `fetch` | yes | the save-before-delete driver and the POP URL parser with IDNA host names ([`fetch`], [`url`]); turns on `std` and `client` |
//! | `tracing` | yes | diagnostics through `tracing` (the client's wire log at TRACE, skipped listing lines, duplicate UIDs); without it those calls compile to nothing; turns on `std` |
//! | `arbitrary` | no | `arbitrary::Arbitrary` for the command and response types (fuzzing) |
//!
//! With no feature at all the crate is the codec ([`command`], [`response`],
//! [`line`](mod@line), [`dot`]) and SCRAM's shared pieces ([`scram`]), `no_std`; the
//! machines build without `std` too (`client`, `server` without `std`).
//!
//! # Where to start
//!
//! | you are writing | start from |
//! | --- | --- |
//! | a client | [`client::Client`] (events: [`client::ClientEvent`]) |
//! | a server | [`server::Server`], configured by [`server::ServerConfig`], with a [`store::StoreDriver`] over your [`store::Store`] |
//! | a mailstore for a server | [`store::Store`], or [`store::BlockingStore`] for blocking I/O; [`store::MemoryStore`] is the reference |
//! | a codec-level tool | [`command::Command`], [`response::Response`], [`line::LineFramer`], [`dot::BodyDecoder`] / [`dot::BodyEncoder`] |
//!
//! # The run loop
//!
//! Both machines speak one vocabulary, after quinn-proto and str0m:
//!
//! ```text
//! let used = machine.handle_input(now, &bytes);   // may take fewer than offered:
//!                                                 // keep the rest, read more only
//!                                                 // when it wants input
//! machine.handle_eof(now);                        // the peer closed
//! machine.handle_timeout(now);                    // poll_timeout() has passed
//! while let Some(action) = machine.poll_action() { // after EVERY handle_* call
//!     match action {
//!         Action::Send(t) => write(&t.bytes),     // in order; t.secret: redact in logs
//!         Action::StartTls => {                   // flush, drop unread plaintext,
//!             handshake();                        // then tell the machine
//!             machine.handle_tls_established(now);
//!         }
//!         Action::Event(e) => ...,                // client: typed replies, and slow
//!                                                 // SASL work (SCRAM's PBKDF2) to run off
//!                                                 // the event loop, answered with
//!                                                 // client.sasl_work_done(now, done);
//!                                                 // server: a store request, answered
//!                                                 // with server.handle_store(now, reply)
//!         Action::Close => { flush(); close(); }
//!         _ => {}
//!     }
//! }
//! let deadline = machine.poll_timeout();          // arm one timer for it
//! ```
//!
//! Time is a [`time::Instant`] the caller passes in: milliseconds since an
//! epoch of its choosing, so tests run on a simulated clock. The [`client`]
//! and [`server`] module docs state each side's rules in full, with
//! runnable examples.
//!
//! # Guarantees
//!
//! * Parsing is total: every input gives a value, "incomplete", or a typed
//!   error, under explicit [`line::Limits`]; splitting the input anywhere
//!   never changes the result.
//! * Bodies stream: a message passes through either machine in chunks
//!   ([`bytes::Bytes`] slices of the input on the client side), with
//!   dot-stuffing done on the fly, in memory that does not grow with its size.
//! * Mail is never lost by the server machine: deletions are committed only
//!   in UPDATE, after QUIT; the end of the stream, a timeout or an error
//!   releases the maildrop and deletes nothing.
//! * Secrets (passwords, SASL data, APOP digests) never show in `Debug`, and
//!   bytes that carry them are flagged ([`session::Transmit::secret`]).
#![cfg_attr(not(feature = "std"), no_std)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    clippy::return_self_not_must_use
)]

extern crate alloc;

#[cfg(feature = "client")]
#[cfg_attr(docsrs, doc(cfg(feature = "client")))]
pub mod client;
pub mod command;
pub mod dot;
#[cfg(feature = "fetch")]
#[cfg_attr(docsrs, doc(cfg(feature = "fetch")))]
pub mod fetch;
pub mod line;
pub mod proxy;
pub mod response;
pub mod scram;
#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod server;
pub mod session;
#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod store;
pub mod time;
pub mod types;
#[cfg(feature = "fetch")]
#[cfg_attr(docsrs, doc(cfg(feature = "fetch")))]
pub mod url;

#[cfg(feature = "arbitrary")]
mod arbitrary_impls;
mod parse;

// The examples of this crate's README (the page crates.io shows) are
// compiled with the doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
/// The diagnostics of this crate and of the adapters built on it: the
/// `tracing` macros with the feature `tracing`, else macros of the same
/// syntax that compile to nothing (their arguments still count as used).
/// Not part of the API.
#[doc(hidden)]
pub mod __tracing {
    #[cfg(feature = "tracing")]
    pub use ::tracing::{Level, debug, enabled, error, info, trace, warn};

    #[cfg(not(feature = "tracing"))]
    pub use crate::{
        __tracing_enabled as enabled, __tracing_skip as debug, __tracing_skip as error,
        __tracing_skip as info, __tracing_skip as trace, __tracing_skip as warn,
    };

    /// Without `tracing`, no level is ever enabled.
    #[cfg(not(feature = "tracing"))]
    #[derive(Debug, Clone, Copy)]
    pub struct Level;

    #[cfg(not(feature = "tracing"))]
    #[allow(missing_docs)]
    impl Level {
        pub const TRACE: Level = Level;
        pub const DEBUG: Level = Level;
        pub const INFO: Level = Level;
        pub const WARN: Level = Level;
        pub const ERROR: Level = Level;
    }
}

/// An event macro without `tracing`: nothing runs, the arguments are
/// type-checked and count as used.
#[cfg(not(feature = "tracing"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __tracing_skip {
    ($($event:tt)*) => {
        if false {
            $crate::__tracing_args!($($event)*);
        }
    };
}

/// `enabled!` without `tracing`: never.
#[cfg(not(feature = "tracing"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __tracing_enabled {
    ($($event:tt)*) => {
        false
    };
}

/// Walks an event's `target:`, fields (`name = %value`, `?name`, ...) and
/// message, touching each value.
#[cfg(not(feature = "tracing"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __tracing_args {
    () => {};
    (target: $target:expr $(, $($rest:tt)*)?) => {
        let _ = $target;
        $($crate::__tracing_args!($($rest)*);)?
    };
    ($field:ident = % $value:expr $(, $($rest:tt)*)?) => {
        let _ = &$value;
        $($crate::__tracing_args!($($rest)*);)?
    };
    ($field:ident = ? $value:expr $(, $($rest:tt)*)?) => {
        let _ = &$value;
        $($crate::__tracing_args!($($rest)*);)?
    };
    ($field:ident = $value:expr $(, $($rest:tt)*)?) => {
        let _ = &$value;
        $($crate::__tracing_args!($($rest)*);)?
    };
    (% $field:ident $(, $($rest:tt)*)?) => {
        let _ = &$field;
        $($crate::__tracing_args!($($rest)*);)?
    };
    (? $field:ident $(, $($rest:tt)*)?) => {
        let _ = &$field;
        $($crate::__tracing_args!($($rest)*);)?
    };
    ($field:ident $(, $($rest:tt)*)?) => {
        let _ = &$field;
        $($crate::__tracing_args!($($rest)*);)?
    };
    ($message:literal $(, $arg:expr)* $(,)?) => {
        let _ = ::core::format_args!($message $(, $arg)*);
    };
}
