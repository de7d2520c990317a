//! Sans-IO POP3: the protocol, exact and streaming, for any runtime.
//!
//! This crate is the whole of POP3 (RFC 1939, with CAPA and response codes
//! from RFC 2449, STLS from RFC 2595, AUTH from RFC 5034, UTF8 and LANG from
//! RFC 6856) as values and state machines. It never touches a socket, a
//! file, a clock or a runtime: bytes, time and a store's answers come in as
//! values, and everything it wants done leaves as an [`Action`](session::Action).
//! It is `no_std` + `alloc` (the default `std` feature adds
//! `std::error::Error` impls, the in-memory store and the POP URL parser,
//! `url`).
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
#![warn(missing_docs)]

extern crate alloc;

pub mod client;
pub mod command;
pub mod dot;
#[cfg(feature = "std")]
pub mod fetch;
pub mod line;
pub mod response;
pub mod scram;
pub mod server;
pub mod session;
pub mod store;
pub mod time;
pub mod types;
#[cfg(feature = "std")]
pub mod url;

#[cfg(feature = "arbitrary")]
mod arbitrary_impls;
mod parse;

// The examples of this crate's README (the page crates.io shows) are
// compiled with the doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
