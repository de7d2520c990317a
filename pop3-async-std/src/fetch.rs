//! Save-before-delete: fetch new messages into a durable sink, and delete
//! each from the server only once the sink says it is stored.
//!
//! The algorithm is the core's ([`pop3_proto::fetch`], with the argument for
//! why every message ends up stored exactly once and none is lost); this
//! module runs it on smol and async-std: [`fetch_new`] on an open session, or [`run`]
//! from a URL and a password, into a [`MessageSink`] such as the Maildir
//! [`MaildirSink`].
//!
//! The sink is handed over by value and comes back with the result: every
//! call on it (looking a UID up, which may fsync a file a killed run left
//! behind; creating, writing, syncing and renaming files) runs on the
//! `blocking` crate's thread pool, the one smol and async-std use, so the
//! executor thread never stalls on the disk.
//!
//! ```
//! use pop3_async_std::fetch::{self, FetchSettings, MaildirSink, PopUrl};
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
//! # let ex = smol::LocalExecutor::new();
//! # let _serving = ex.spawn(async move { server.serve(listener, pop3_async_std::server::Security::ImplicitTls).await });
//! # smol::block_on(ex.run(async {
//! # let dir = tempfile::tempdir()?;
//! # let inbox = dir.path().join("inbox");
//! let url = PopUrl::parse(&format!("pops://alice@localhost:{port}"))?;
//! let sink = MaildirSink::open(&inbox, &url.account_id())?; // "Mail/inbox"
//! let mut settings = FetchSettings::default();
//! # settings.verification = test_ca;
//! settings.delete = true;
//! let (_sink, result) = fetch::run(&url, "secret", &settings, sink, &mut |_| {}).await;
//! println!("{} new messages", result?.saved);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }))
//! # }
//! ```
//!
pub use pop3_blocking::common::FetchSettings;
#[cfg(feature = "maildir")]
#[cfg_attr(docsrs, doc(cfg(feature = "maildir")))]
pub use pop3_blocking::sink::{LineEnds, MaildirSink};
pub use pop3_proto::fetch::{
    AuthError, FetchError, FetchOptions, FetchReport, MessageSink, Progress, SettingsError,
};
pub use pop3_proto::url::{AuthMethod, Host, PopUrl, UrlError};

use std::future::poll_fn;
use std::task::Poll;

use pop3_proto::fetch::{Fetch, FetchStep, SinkRequest, execute};

use crate::client::Pop3Client;

/// Fetches, on a logged-in session, every message whose UID the sink does
/// not hold yet, and with [`FetchOptions::delete`] deletes every message the
/// sink holds; ends with QUIT. Gives the sink back with the result.
///
/// Every sink call runs on the `blocking` thread pool; a panic there resumes on this task, as it
/// would have inline. If this future is dropped during such a call, the
/// call still completes on the pool and the sink is dropped there.
///
/// ```
/// use pop3_async_std::client::{ConnectOptions, Pop3Client, Security};
/// use pop3_async_std::fetch::{fetch_new, FetchOptions, MaildirSink};
/// # use std::sync::Arc;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # // A server on loopback with a certificate of its own CA, for the test.
/// # let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
/// # let key = rustls::pki_types::PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der());
/// # let tls = pop3_async_std::tls::server_config(vec![cert.cert.der().clone()], key.into())?;
/// # let mut roots = rustls::RootCertStore::empty();
/// # roots.add(cert.cert.der().clone())?;
/// # let test_ca = pop3_async_std::client::TlsVerification::Roots(Arc::new(roots));
/// # let store = pop3_proto::store::MemoryStore::new();
/// # store.add_user("alice", "secret");
/// # store.add_user("bob", "secret");
/// # for n in 1..=3 { store.add_message("alice", format!("Subject: {n}\r\n\r\nHello.\r\n")); }
/// # let config = pop3_proto::server::ServerConfig::default().allow_plaintext_auth(true);
/// # let server = pop3_async_std::server::Pop3Server::build(Arc::new(store), config, Some(tls), Default::default());
/// # let listener = pop3_async_std::server::Async::<std::net::TcpListener>::bind(([127, 0, 0, 1], 0))?;
/// # let port = listener.get_ref().local_addr()?.port();
/// # let ex = smol::LocalExecutor::new();
/// # let _serving = ex.spawn(async move { server.serve(listener, pop3_async_std::server::Security::Plain).await });
/// # smol::block_on(ex.run(async {
/// # let dir = tempfile::tempdir()?;
/// # let maildir = dir.path().join("Maildir");
/// let options = ConnectOptions::new(Security::StartTls);
/// # let mut options = options;
/// # options.verification = test_ca;
/// let mut client = Pop3Client::connect("localhost", port, options).await?;
/// client.login("alice", "secret").await?;
/// let sink = MaildirSink::open(&maildir, &format!("alice@localhost:{port}"))?;
/// let (sink, result) = fetch_new(&mut client, sink, &FetchOptions::default(), &mut |_| {}).await;
/// println!("{} saved into {}", result?.saved, sink.root().display());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }))
/// # }
/// ```
pub async fn fetch_new<S: MessageSink + Send + 'static>(
    client: &mut Pop3Client,
    mut sink: S,
    options: &FetchOptions,
    progress: &mut (dyn FnMut(&Progress) + Send),
) -> (S, Result<FetchReport, FetchError>) {
    let mut fetch = Fetch::new(options.clone());
    loop {
        // Everything up to the next sink call or the end runs in one poll.
        let step = poll_fn(|cx| {
            loop {
                let (now, conn) = (client.now(), client.connection());
                match fetch.poll(now, conn) {
                    FetchStep::Io => std::task::ready!(client.poll_io(cx)),
                    FetchStep::Progress(p) => progress(&p),
                    step => return Poll::Ready(step),
                }
            }
        })
        .await;
        match step {
            FetchStep::Sink(request) => {
                let (back, reply) = off_the_executor(sink, request).await;
                sink = back;
                fetch.sink_done(reply);
            }
            FetchStep::Done(result) => return (sink, result),
            // Unreachable today (the poll above answers the rest); a step
            // of a later version is polled again.
            _ => {}
        }
    }
}

/// Performs a sink request on the `blocking` pool, moving the sink there
/// and back.
async fn off_the_executor<S: MessageSink + Send + 'static>(
    mut sink: S,
    request: SinkRequest,
) -> (S, pop3_proto::fetch::SinkReply) {
    blocking::unblock(move || {
        let reply = execute(&mut sink, request);
        (sink, reply)
    })
    .await
}

/// Connects as the URL says, logs in with `password`, and runs
/// [`fetch_new`]; gives the sink back with the result.
///
/// ```
/// use pop3_async_std::fetch::{run, FetchSettings, MaildirSink, PopUrl};
/// # use std::sync::Arc;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # // A server on loopback with a certificate of its own CA, for the test.
/// # let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
/// # let key = rustls::pki_types::PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der());
/// # let tls = pop3_async_std::tls::server_config(vec![cert.cert.der().clone()], key.into())?;
/// # let mut roots = rustls::RootCertStore::empty();
/// # roots.add(cert.cert.der().clone())?;
/// # let test_ca = pop3_async_std::client::TlsVerification::Roots(Arc::new(roots));
/// # let store = pop3_proto::store::MemoryStore::new();
/// # store.add_user("alice", "secret");
/// # store.add_user("bob", "secret");
/// # for n in 1..=3 { store.add_message("alice", format!("Subject: {n}\r\n\r\nHello.\r\n")); }
/// # let config = pop3_proto::server::ServerConfig::default().allow_plaintext_auth(true);
/// # let server = pop3_async_std::server::Pop3Server::build(Arc::new(store), config, Some(tls), Default::default());
/// # let listener = pop3_async_std::server::Async::<std::net::TcpListener>::bind(([127, 0, 0, 1], 0))?;
/// # let port = listener.get_ref().local_addr()?.port();
/// # let ex = smol::LocalExecutor::new();
/// # let _serving = ex.spawn(async move { server.serve(listener, pop3_async_std::server::Security::Plain).await });
/// # smol::block_on(ex.run(async {
/// # let dir = tempfile::tempdir()?;
/// # let maildir = dir.path().join("Maildir");
/// let url: PopUrl = format!("pop://bob;AUTH=PLAIN@localhost:{port}").parse()?;
/// let mut settings = FetchSettings::default();
/// settings.starttls = true;
/// # settings.verification = test_ca;
/// let sink = MaildirSink::open(&maildir, &url.account_id())?;
/// let (_sink, result) = run(&url, "secret", &settings, sink, &mut |p| eprintln!("{p:?}")).await;
/// result?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }))
/// # }
/// ```
pub async fn run<S: MessageSink + Send + 'static>(
    url: &PopUrl,
    password: &str,
    settings: &FetchSettings,
    sink: S,
    progress: &mut (dyn FnMut(&Progress) + Send),
) -> (S, Result<FetchReport, FetchError>) {
    let mut client = match connect(url, settings).await {
        Ok(client) => client,
        Err(e) => return (sink, Err(e)),
    };
    if let Err(e) = authenticate(&mut client, url, settings, password).await {
        return (sink, Err(e));
    }
    fetch_new(&mut client, sink, &settings.fetch_options(), progress).await
}

/// Opens the session a URL designates (TLS as the scheme and
/// [`FetchSettings::starttls`] say), without logging in.
pub async fn connect(url: &PopUrl, settings: &FetchSettings) -> Result<Pop3Client, FetchError> {
    let options = settings.connect_options(url)?;
    Ok(Pop3Client::connect(&url.host.connect_name(), url.port, options).await?)
}

/// Logs in as the URL (or [`FetchSettings::auth`]) says; see
/// [`pop3_proto::fetch::login_task`] for what is chosen when nothing is said.
/// Before that, enables UTF-8 mode when the server offers it
/// ([`pop3_proto::fetch::utf8_task`]): fetched messages are stored as
/// sent, raw UTF-8 headers included.
pub async fn authenticate(
    client: &mut Pop3Client,
    url: &PopUrl,
    settings: &FetchSettings,
    password: &str,
) -> Result<(), FetchError> {
    if let Some(utf8) = pop3_proto::fetch::utf8_task(client.connection_ref().machine()) {
        client.run(utf8).await?;
    }
    let task = settings.login_task(client.connection_ref().machine(), url, password)?;
    Ok(client.run(task).await?)
}
