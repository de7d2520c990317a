//! POP3 over blocking `std::net`, and the std pieces every POP3 runtime
//! adapter shares: thin faces that bind the sans-IO `pop3-proto` connection
//! layers to blocking sockets, with TLS (STLS and implicit) through rustls;
//! the Maildir store, the passwd-file user database and the TLS
//! configuration helpers. Every protocol decision is the core's; the faces
//! move bytes, set socket timeouts from the core's deadlines, perform TLS
//! and call the store.
//!
//! | piece | start from |
//! | --- | --- |
//! | client | [`client::Pop3Client`]: `connect`, `login`/`apop`/`auth`, `stat`, `list`, `uidl`, `retr`/`top` (bodies stream as [`client::Body`], a `Read` and a `BufRead`), `dele`, `quit`, pipelined [`retr_many`](client::Pop3Client::retr_many) and [`dele_many`](client::Pop3Client::dele_many) |
//! | server | [`server::Pop3Server`] over any [`pop3_proto::store::Store`], a thread per connection; a blocking store such as [`maildir::MaildirStore`] is served as an [`OffloadStore<S, Inline>`](pop3_proto::store::OffloadStore) |
//! | fetching | [`fetch`]: pop URLs (RFC 2384), save-before-delete into a [`fetch::MessageSink`] such as the Maildir [`sink::MaildirSink`] |
//! | stores | [`maildir::MaildirStore`], [`passwd::PasswdFile`] |
//! | TLS | [`tls`] (server configurations, the client's [`tls::TlsVerification`], secure random octets) |
//! | shared with the async adapters | [`client::ConnectOptions`], [`fetch::FetchSettings`], [`server::ServerOptions`], [`server::Security`], [`sink`] (the Maildir fetch sink), [`tls`] |
//!
//! [`maildir::MaildirStore`] is a [`BlockingStore`](pop3_proto::store::BlockingStore)
//! over one Maildir per user (`<root>/<user>/{cur,new,tmp}`): an exclusive
//! lock per maildrop, unique-ids that survive sessions, moves and flag
//! changes, RFC 1939 sizes taken from `,W=` or counted once and cached, and
//! deletions only at commit. Its users come from a [`passwd::PasswdFile`], a
//! Dovecot-compatible passwd-file with `{PLAIN}`, `{SHA512-CRYPT}`,
//! `{SHA256-CRYPT}`, `{CRYPT}` and `{ARGON2ID}` passwords. Both are plain
//! blocking file I/O; the async adapters run them where blocking is allowed.
//!
//! [`tls`] builds rustls configurations with an explicit crypto provider
//! (aws-lc-rs or ring, by feature), never installing a process-wide one: a
//! server configuration from a
//! certificate chain and key in DER or PEM ([`tls::server_config`],
//! [`tls::server_config_from_pem`]), a client configuration from the way
//! the server certificate is verified ([`tls::TlsVerification`]: the bundled
//! web PKI roots, a private CA file, or, for tests, none), and secure random
//! octets and tokens for nonces ([`tls::random_bytes`],
//! [`tls::random_token`]).
//!
//! # Features
//!
//! Each part is a feature, so that a program pays only for the parts it
//! uses; the defaults are the whole crate on ring with the bundled roots.
//!
//! | feature | default | what it adds |
//! | --- | --- | --- |
//! | `client` | yes | the client ([`client`]) |
//! | `server` | yes | the server ([`server`]) |
//! | `fetch` | yes | fetching from pop URLs, save-before-delete ([`fetch`], [`fetch::FetchSettings`]); turns on `client` |
//! | `maildir` | yes | the Maildir store and the passwd-file (with `server`), the Maildir fetch sink (with `fetch`); brings the password hashes (SHA-crypt, Argon2) |
//! | `ring` | yes | TLS with rustls's ring provider |
//! | `aws-lc-rs` | no | TLS with rustls's aws-lc-rs provider (preferred when both are on) |
//! | `webpki-roots` | yes | trust the Mozilla roots bundled in `webpki-roots` (the default [`TlsVerification`](tls::TlsVerification)) |
//! | `native-roots` | no | trust the platform's roots, loaded with `rustls-native-certs` (`TlsVerification::PlatformRoots`; with `webpki-roots`, both: `BundledAndPlatformRoots`) |
//! | `tracing` | yes | diagnostics through `tracing` (accept errors, failed handshakes, session summaries, the client's wire log) and rustls's own through `log`; without it they compile to nothing |
//! | `config` | no | the fetch configuration file and password sources (`config`), OAuth 2.0 access tokens from a token endpoint (`oauth2`, over `ureq`); turns on `deliver` |
//! | `cli` | no | the command lines of every runtime's `pop3d` and `fetch` examples (not part of the API); turns on `client`, `server`, `fetch`, `maildir`, `config`, `native-roots`, `tracing` |
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
//! pop3-blocking = { version = "0.1", default-features = false, features = ["client", "ring", "webpki-roots"] }
//! ```
//!
//! # A client
//!
//! ```
//! use std::io::Read;
//! use pop3_blocking::client::{ConnectOptions, Pop3Client, Security, msg};
//!
//! # use std::sync::Arc;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # // A server on loopback with a certificate of its own CA, for the test.
//! # let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
//! # let key = rustls::pki_types::PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der());
//! # let tls = pop3_blocking::tls::server_config(vec![cert.cert.der().clone()], key.into())?;
//! # let mut roots = rustls::RootCertStore::empty();
//! # roots.add(cert.cert.der().clone())?;
//! # let test_ca = pop3_blocking::client::TlsVerification::Roots(Arc::new(roots));
//! # let store = pop3_proto::store::MemoryStore::new();
//! # store.add_user("alice", "secret");
//! # for n in 1..=3 { store.add_message("alice", format!("Subject: {n}\r\n\r\nHello.\r\n")); }
//! # let config = pop3_proto::server::ServerConfig::default().allow_plaintext_auth(true);
//! # let server = pop3_blocking::server::Pop3Server::build(Arc::new(store), config, Some(tls), Default::default());
//! # let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
//! # let port = listener.local_addr()?.port();
//! # let serving = {
//! #     let server = server.clone();
//! #     std::thread::spawn(move || server.serve(listener, pop3_blocking::server::Security::ImplicitTls))
//! # };
//! let options = ConnectOptions::new(Security::ImplicitTls);
//! # let mut options = options;
//! # options.verification = test_ca;
//! let mut client = Pop3Client::connect("localhost", port, options)?;
//! client.login("alice", "secret")?;
//! let stat = client.stat()?;
//! println!("{} messages, {} octets", stat.count, stat.size);
//! if let Some(first) = msg(1).filter(|_| stat.count > 0) {
//!     let mut body = client.retr(first)?; // streams; never a whole Vec
//!     let mut head = [0u8; 512];
//!     let n = body.read(&mut head)?;
//!     println!("{}", String::from_utf8_lossy(&head[..n]));
//! }
//! client.quit()?;
//! # server.shutdown();
//! # serving.join().unwrap()?;
//! # Ok(())
//! # }
//! ```
//!
//! # A server
//!
//! ```
//! use pop3_blocking::server::{Pop3Server, Security};
//! use pop3_proto::server::ServerConfig;
//! use pop3_proto::store::MemoryStore;
//!
//! # fn main() -> std::io::Result<()> {
//! let store = MemoryStore::new();
//! store.add_user("demo", "demo");
//! store.add_message("demo", &b"Subject: hello\r\n\r\nHi.\r\n"[..]);
//! let server = Pop3Server::new(store, ServerConfig::default().allow_plaintext_auth(true));
//! let listener = std::net::TcpListener::bind("127.0.0.1:0")?; // any free port
//! # let port = listener.local_addr()?.port();
//! # let stopper = server.clone();
//! # let client = std::thread::spawn(move || {
//! #     use pop3_blocking::client::{ConnectOptions, Pop3Client, Security};
//! #     let outcome = (|| {
//! #         let mut options = ConnectOptions::new(Security::Plain);
//! #         options.session.insecure_cleartext_login = true; // loopback, a test
//! #         let mut client = Pop3Client::connect("127.0.0.1", port, options)?;
//! #         client.login("demo", "demo")?;
//! #         assert_eq!(client.stat()?.count, 1);
//! #         client.quit()?;
//! #         Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
//! #     })();
//! #     stopper.shutdown();
//! #     outcome.unwrap(); // after the shutdown: a failure fails the test, never hangs it
//! # });
//! # let served =
//! server.serve(listener, Security::Plain) // until server.shutdown(), from another thread
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
//! says what I/O it wants next; this crate's pump performs it on the blocking
//! socket and reports back: `Want::Write` → `write`, then `wrote`;
//! `Want::Flush` → `flush`, then `flushed`; `Want::Read` →
//! `read`, then `received`; `Want::StartTls` → the rustls
//! handshake on the same socket, then `tls_done`; `Want::Compute` (client:
//! SCRAM's key derivation) → run inline, then `computed`; `Want::Store` (server) →
//! the store call, run to its end, then `store_done`. Before each
//! blocking call the socket's timeout is set to what is left until the
//! core's `poll_timeout`.
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

// The command lines of the examples (`pop3d`, `fetch` and their twins on
// every runtime), with clap's types in their signatures: public so that the
// examples of the three adapter crates share them, hidden because they are
// no library's API and change with the examples, in any release.
#[cfg(feature = "cli")]
#[doc(hidden)]
pub mod cli;
#[cfg(feature = "client")]
#[cfg_attr(docsrs, doc(cfg(feature = "client")))]
pub mod client;
// Plumbing shared with the sibling adapter crates of the same version, not
// part of the API (see its module doc); its user-facing items are
// re-exported where they are documented (`client`, `fetch`, `server`).
#[doc(hidden)]
pub mod common;
#[cfg(feature = "config")]
#[cfg_attr(docsrs, doc(cfg(feature = "config")))]
pub mod config;
#[cfg(feature = "config")]
#[cfg_attr(docsrs, doc(cfg(feature = "config")))]
pub mod daemon;
#[cfg(feature = "deliver")]
#[cfg_attr(docsrs, doc(cfg(feature = "deliver")))]
pub mod deliver;
#[cfg(feature = "fetch")]
#[cfg_attr(docsrs, doc(cfg(feature = "fetch")))]
pub mod fetch;
mod hex;
#[cfg(feature = "config")]
#[cfg_attr(docsrs, doc(cfg(feature = "config")))]
pub mod import;
#[cfg(any(feature = "client", feature = "server"))]
mod io;
#[cfg(all(feature = "maildir", feature = "fetch"))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "maildir", feature = "fetch"))))]
pub mod journal;
#[cfg(any(feature = "client", feature = "server"))]
pub use io::Transport;
#[cfg(all(feature = "maildir", feature = "server"))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "maildir", feature = "server"))))]
pub mod maildir;
#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod metrics;
#[cfg(feature = "config")]
#[cfg_attr(docsrs, doc(cfg(feature = "config")))]
pub mod oauth2;
#[cfg(all(feature = "maildir", feature = "server"))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "maildir", feature = "server"))))]
pub mod passwd;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;
#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod server;
#[cfg(all(feature = "maildir", feature = "fetch"))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "maildir", feature = "fetch"))))]
pub mod sink;
pub mod tls;

// The examples of this crate's README (the page crates.io shows) are
// compiled with the doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
