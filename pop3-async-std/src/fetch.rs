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
//! ```no_run
//! use pop3_async_std::fetch::{self, FetchSettings, MaildirSink, PopUrl};
//!
//! # async fn go() -> Result<(), Box<dyn std::error::Error>> {
//! let url = PopUrl::parse("pops://alice@pop.example.com")?;
//! let sink = MaildirSink::open("Mail/inbox", &url.account_id())?;
//! let mut settings = FetchSettings::default();
//! settings.delete = true;
//! let (_sink, result) = fetch::run(&url, "secret", &settings, sink, &mut |_| {}).await;
//! println!("{} new messages", result?.saved);
//! # Ok(()) }
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
/// ```no_run
/// use pop3_async_std::client::{ConnectOptions, Pop3Client, Security};
/// use pop3_async_std::fetch::{fetch_new, FetchOptions, MaildirSink};
/// # async fn go() -> Result<(), Box<dyn std::error::Error>> {
/// let mut client = Pop3Client::connect("localhost", 110, ConnectOptions::new(Security::StartTls)).await?;
/// client.login("alice", "secret").await?;
/// let sink = MaildirSink::open("Maildir", "alice@localhost:110")?;
/// let (sink, result) = fetch_new(&mut client, sink, &FetchOptions::default(), &mut |_| {}).await;
/// println!("{} saved into {}", result?.saved, sink.root().display());
/// # Ok(()) }
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
/// ```no_run
/// use pop3_async_std::fetch::{run, FetchSettings, MaildirSink, PopUrl};
/// # async fn go() -> Result<(), Box<dyn std::error::Error>> {
/// let url: PopUrl = "pop://bob;AUTH=PLAIN@localhost".parse()?;
/// let mut settings = FetchSettings::default();
/// settings.starttls = true;
/// let sink = MaildirSink::open("Maildir", "bob@localhost:110")?;
/// let (_sink, result) = run(&url, "secret", &settings, sink, &mut |p| eprintln!("{p:?}")).await;
/// result?;
/// # Ok(()) }
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
