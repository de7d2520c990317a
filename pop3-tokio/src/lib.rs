//! POP3 on tokio: thin adapters that bind the sans-IO `pop3-proto` session
//! machines to tokio sockets, with TLS (STLS and implicit) through
//! tokio-rustls. Every protocol decision is the machines'; this crate moves
//! bytes, runs one timer per connection, performs TLS and calls the store.
//!
//! | face | start from |
//! | --- | --- |
//! | client | [`client::Pop3Client`]: `connect` (or [`from_stream`](client::Pop3Client::from_stream) over any stream), `login`/`apop`/`auth`, `stat`, `list`, `uidl`, `retr`/`top` (bodies stream as [`client::Body`]), `dele`, `quit`, pipelined [`retr_many`](client::Pop3Client::retr_many) and [`dele_many`](client::Pop3Client::dele_many) |
//! | fetching | [`fetch`]: pop URLs (RFC 2384), save-before-delete into a [`fetch::MessageSink`] such as [`fetch::MaildirSink`] |
//! | server | [`server::Pop3Server`] over any [`pop3_proto::store::Store`], on a listener or one given stream ([`serve_connection`](server::Pop3Server::serve_connection)); [`SpawnBlocking`] runs a blocking store (such as `pop3-blocking`'s Maildir store) off the reactor |
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
//! | `server` | yes | the server ([`server`], [`SpawnBlocking`]) |
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
//! pop3-tokio = { version = "0.1", default-features = false, features = ["client", "ring", "webpki-roots"] }
//! ```
//!
//! # A client
//!
//! ```
//! use pop3_tokio::client::{ConnectOptions, Pop3Client, Security};
//! use pop3_proto::types::MessageNumber;
//! use tokio::io::AsyncReadExt;
//!
//! # use std::sync::Arc;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # // A server on loopback with a certificate of its own CA, for the test.
//! # let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
//! # let key = rustls::pki_types::PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der());
//! # let tls = pop3_tokio::tls::server_config(vec![cert.cert.der().clone()], key.into())?;
//! # let store = pop3_proto::store::MemoryStore::new();
//! # store.add_user("alice", "secret");
//! # store.add_message("alice", &b"Subject: hi\r\n\r\nHello.\r\n"[..]);
//! # let server = pop3_tokio::server::Pop3Server::build(Arc::new(store), Default::default(), Some(tls), Default::default());
//! # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! # let port = listener.local_addr()?.port();
//! # tokio::spawn(async move { server.serve(listener, pop3_tokio::server::Security::ImplicitTls).await });
//! # let mut roots = rustls::RootCertStore::empty();
//! # roots.add(cert.cert.der().clone())?;
//! # let test_ca = pop3_tokio::client::TlsVerification::Roots(Arc::new(roots));
//! let options = ConnectOptions::new(Security::ImplicitTls);
//! # let mut options = options;
//! # options.verification = test_ca;
//! let mut client = Pop3Client::connect("localhost", port, options).await?;
//! client.login("alice", "secret").await?;
//! let stat = client.stat().await?;
//! println!("{} messages, {} octets", stat.count, stat.size);
//! if let Some(first) = MessageNumber::new(1).filter(|_| stat.count > 0) {
//!     let mut body = client.retr(first).await?; // streams; never a whole Vec
//!     let mut head = [0u8; 512];
//!     let n = body.read(&mut head).await?;
//!     println!("{}", String::from_utf8_lossy(&head[..n]));
//! }
//! client.quit().await?;
//! # Ok(()) }
//! ```
//!
//! # A server
//!
//! ```
//! use pop3_proto::server::ServerConfig;
//! use pop3_proto::store::MemoryStore;
//! use pop3_tokio::server::{Pop3Server, Security};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let store = MemoryStore::new();
//! store.add_user("demo", "demo");
//! store.add_message("demo", &b"Subject: hello\r\n\r\nHi.\r\n"[..]);
//! let server = Pop3Server::new(store, ServerConfig::default().allow_plaintext_auth(true));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?; // any free port
//! # let port = listener.local_addr()?.port();
//! # let stopper = server.clone();
//! # tokio::spawn(async move {
//! #     use pop3_tokio::client::{ConnectOptions, Pop3Client, Security};
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
//! # });
//! server.serve(listener, Security::Plain).await
//! # }
//! ```
//!
//! The `pop3d` example serves a Maildir tree with a passwd-file, STLS and
//! implicit TLS; the `fetch` example is a save-before-delete fetcher. The
//! `custom-store` example implements a store of its own (`.eml` files, a
//! one-session lock), and `client-certificate` connects with a private CA
//! as the only root and a client certificate
//! ([`ConnectOptions::tls_config`](client::ConnectOptions::tls_config)).
//!
//! # The run loop
//!
//! Each connection is a core [`Connection`](pop3_proto::client::Connection)
//! (client) or [`Connection`](pop3_proto::server::Connection) (server) that
//! says what I/O it wants next; this crate's pump performs it on the tokio
//! stream and reports back: `Want::Write` → `poll_write`, then `wrote`;
//! `Want::Flush` → `poll_flush`, then `flushed`; `Want::Read` →
//! `poll_read`, then `received`; `Want::StartTls` → the tokio-rustls
//! handshake on the same socket, then `tls_done`; `Want::Compute` (client:
//! SCRAM's key derivation) → `spawn_blocking`, never the polling worker,
//! then `computed` (a panic in it fails the session); `Want::Store` (server) →
//! the store call, awaited to its end, then `store_done`. While the I/O is
//! pending one `tokio::time::Sleep` is armed for the core's `poll_timeout`.
//! A client operation is a typed [`Task`](pop3_proto::client::task::Task)
//! that [`client::Pop3Client::run`] drives; each public method is one line
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
pub use blocking::{SpawnBlocking, TokioBlockingPool};

// The examples of this crate's README (the page crates.io shows) are
// compiled with the doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
