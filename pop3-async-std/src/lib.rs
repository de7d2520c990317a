//! POP3 on the `futures-io` traits: thin adapters that bind the sans-IO
//! `pop3-proto` session machines to `futures::io::{AsyncRead, AsyncWrite}`
//! streams, with TLS (STLS and implicit) through futures-rustls. Every
//! protocol decision is the machines'; this crate moves bytes, runs one timer
//! per connection, performs TLS and calls the store.
//!
//! # Runtimes
//!
//! The crate depends on no runtime, only on the pieces smol is made of and
//! async-std 1.13 runs on: sockets are `async-io`'s
//! [`Async<TcpStream>`](async_io::Async) and `Async<TcpListener>`, timers
//! are `async_io::Timer`, name resolution and blocking store calls go to the
//! `blocking` thread pool ([`Unblock`]), and the sessions of
//! [`server::Pop3Server::serve`] are tasks of an executor inside that future
//! (see [where sessions run](server#where-sessions-run)). So the same code
//! runs unchanged under `smol::block_on`, `smol::spawn`,
//! `async_std::task::block_on` or `async_std::task::spawn`. smol comes
//! first: async-std is deprecated in its favour.
//!
//! | face | start from |
//! | --- | --- |
//! | client | [`client::Pop3Client`]: `connect`, `login`/`apop`/`auth`, `stat`, `list`, `uidl`, `retr`/`top` (bodies stream as [`client::Body`]), `dele`, `quit`, pipelined [`retr_many`](client::Pop3Client::retr_many) and [`dele_many`](client::Pop3Client::dele_many) |
//! | fetching | [`fetch`]: pop URLs (RFC 2384), save-before-delete into a [`fetch::MessageSink`] such as [`fetch::MaildirSink`] |
//! | server | [`server::Pop3Server`] over any [`pop3_proto::store::Store`]; [`Unblock`] runs a blocking store (such as `pop3-blocking`'s Maildir store) off the executor |
//! | TLS | [`tls`] (server configurations; shared with the other adapters, from `pop3-blocking`); [`client::TlsVerification`] (client side) |
//!
//! No process-wide crypto provider is installed: TLS configurations come
//! from the caller or are built with an explicit provider (aws-lc-rs or
//! ring, by feature; see [Features](#features)).
//!
//! # Features
//!
//! Each part is a feature, so that a program pays only for the parts it
//! uses; the defaults are the whole crate on ring with the bundled roots.
//!
//! | feature | default | what it adds |
//! | --- | --- | --- |
//! | `client` | yes | the client ([`client`]) |
//! | `server` | yes | the server ([`server`], [`Unblock`]) |
//! | `fetch` | yes | fetching from pop URLs, save-before-delete ([`fetch`]); turns on `client` |
//! | `maildir` | yes | the Maildir fetch sink (with `fetch`), and `pop3-blocking`'s Maildir store and passwd-file (with `server`); brings the password hashes (SHA-crypt, Argon2) |
//! | `ring` | yes | TLS with rustls's ring provider |
//! | `aws-lc-rs` | no | TLS with rustls's aws-lc-rs provider (preferred when both are on) |
//! | `webpki-roots` | yes | trust the Mozilla roots bundled in `webpki-roots` (the default [`TlsVerification`](tls::TlsVerification)) |
//! | `native-roots` | no | trust the platform's roots, loaded with `rustls-native-certs` (`TlsVerification::PlatformRoots`; with `webpki-roots`, both: `BundledAndPlatformRoots`) |
//! | `tracing` | yes | diagnostics through `tracing` (accept errors, failed handshakes, session summaries, the client's wire log) and rustls's own through `log`; without it they compile to nothing |
//!
//! TLS needs `ring` or `aws-lc-rs`; with neither the crate is built for
//! plain TCP, and TLS works only with a provider the application brings
//! (installed process-wide, or inside a configuration it builds). Nonces
//! are drawn from the generator of the provider in use
//! ([`tls::secure_random`]). Without a roots feature the default
//! verification trusts no root: give a CA file
//! ([`TlsVerification::ca_file`](tls::TlsVerification::ca_file)) or a whole
//! configuration. A client-only program, for example:
//!
//! ```toml
//! pop3-async-std = { version = "0.1", default-features = false, features = ["client", "ring", "webpki-roots"] }
//! ```
//!
//! # A client
//!
//! ```
//! use futures_lite::AsyncReadExt;
//! use pop3_async_std::client::{ConnectOptions, Pop3Client, Security, msg};
//!
//! # use std::sync::Arc;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # // A server on loopback with a certificate of its own CA, for the test.
//! # let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
//! # let key = rustls::pki_types::PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der());
//! # let tls = pop3_async_std::tls::server_config(vec![cert.cert.der().clone()], key.into())?;
//! # let mut roots = rustls::RootCertStore::empty();
//! # roots.add(cert.cert.der().clone())?;
//! # let test_ca = pop3_async_std::client::TlsVerification::Roots(Arc::new(roots));
//! # let store = pop3_proto::store::MemoryStore::new();
//! # store.add_user("alice", "secret");
//! # for n in 1..=3 { store.add_message("alice", format!("Subject: {n}\r\n\r\nHello.\r\n")); }
//! # let config = pop3_proto::server::ServerConfig::default().allow_plaintext_auth(true);
//! # let server = pop3_async_std::server::Pop3Server::build(Arc::new(store), config, Some(tls), Default::default());
//! # let listener = pop3_async_std::server::Async::<std::net::TcpListener>::bind(([127, 0, 0, 1], 0))?;
//! # let port = listener.get_ref().local_addr()?.port();
//! # let serving = {
//! #     let server = server.clone();
//! #     std::thread::spawn(move || smol::block_on(server.serve(listener, pop3_async_std::server::Security::ImplicitTls)))
//! # };
//! # let outcome: Result<(), Box<dyn std::error::Error>> =
//! smol::block_on(async {
//!     let options = ConnectOptions::new(Security::ImplicitTls);
//! #   let mut options = options;
//! #   options.verification = test_ca;
//!     let mut client = Pop3Client::connect("localhost", port, options).await?;
//!     client.login("alice", "secret").await?;
//!     let stat = client.stat().await?;
//!     println!("{} messages, {} octets", stat.count, stat.size);
//!     if let Some(first) = msg(1).filter(|_| stat.count > 0) {
//!         let mut body = client.retr(first).await?; // streams; never a whole Vec
//!         let mut head = [0u8; 512];
//!         let n = body.read(&mut head).await?;
//!         println!("{}", String::from_utf8_lossy(&head[..n]));
//!     }
//!     client.quit().await?;
//!     Ok(())
//! })
//! # ;
//! # server.shutdown();
//! # serving.join().unwrap()?;
//! # outcome
//! # }
//! ```
//!
//! # A server
//!
//! ```
//! use std::net::TcpListener;
//! use pop3_proto::server::ServerConfig;
//! use pop3_proto::store::MemoryStore;
//! use pop3_async_std::server::{Async, Pop3Server, Security};
//!
//! # fn main() -> std::io::Result<()> {
//! let store = MemoryStore::new();
//! store.add_user("demo", "demo");
//! store.add_message("demo", &b"Subject: hello\r\n\r\nHi.\r\n"[..]);
//! let server = Pop3Server::new(store, ServerConfig::default().allow_plaintext_auth(true));
//! let listener = Async::<TcpListener>::bind(([127, 0, 0, 1], 0))?; // any free port
//! # let port = listener.get_ref().local_addr()?.port();
//! # let stopper = server.clone();
//! # let client = std::thread::spawn(move || smol::block_on(async {
//! #     use pop3_async_std::client::{ConnectOptions, Pop3Client, Security};
//! #     let outcome = async {
//! #         let mut options = ConnectOptions::new(Security::Plain);
//! #         options.session.insecure_cleartext_login = true; // loopback, a test
//! #         let mut client = Pop3Client::connect("127.0.0.1", port, options).await?;
//! #         client.login("demo", "demo").await?;
//! #         assert_eq!(client.stat().await?.count, 1);
//! #         client.quit().await?;
//! #         Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
//! #     }.await;
//! #     stopper.shutdown();
//! #     outcome.unwrap(); // after the shutdown: a failure fails the test, never hangs it
//! # }));
//! # let served =
//! // On async-std: async_std::task::block_on(server.serve(listener, Security::Plain))
//! smol::block_on(server.serve(listener, Security::Plain))
//! # ;
//! # client.join().unwrap();
//! # served
//! # }
//! ```
//!
//! # The run loop
//!
//! Each connection is a core [`Connection`](pop3_proto::client::Connection)
//! (client) or [`Connection`](pop3_proto::server::Connection) (server) that
//! says what I/O it wants next; the adapter's pump performs it on the stream
//! and reports back:
//!
//! - `Want::Write(octets)` → `poll_write`, then `wrote`; `Want::Flush` →
//!   `poll_flush`, then `flushed`; `Want::Read(buf)` → `poll_read`, then
//!   `received`;
//! - `Want::StartTls` → the TLS handshake on the same stream, then
//!   `tls_done`;
//! - `Want::Compute(work)` (client: SCRAM's key derivation) →
//!   `blocking::unblock`, never the polling thread, then `computed` (a
//!   panic in it fails the session);
//! - `Want::Store(request)` (server) → the store call, awaited to its end
//!   (a commit is never cancelled), then `store_done`;
//! - while the I/O is pending, one timer is set to the core's
//!   `poll_timeout` and `handle_timeout` is called when it fires.
//!
//! A client operation is a typed [`Task`](pop3_proto::client::task::Task):
//! [`client::Pop3Client::run`] starts it and alternates `poll_task` with
//! one pump step until its result is in; each public method is one line
//! over it.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    clippy::return_self_not_must_use
)]

#[cfg(feature = "server")]
mod blocking;
#[cfg(feature = "client")]
#[cfg_attr(docsrs, doc(cfg(feature = "client")))]
pub mod client;
#[cfg(feature = "fetch")]
#[cfg_attr(docsrs, doc(cfg(feature = "fetch")))]
pub mod fetch;
#[cfg(any(feature = "client", feature = "server"))]
mod io;
#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod server;
#[doc(inline)]
pub use pop3_blocking::tls;

#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub use blocking::{Unblock, UnblockPool};

// The examples of this crate's README (the page crates.io shows) are
// compiled with the doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
