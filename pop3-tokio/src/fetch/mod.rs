//! Save-before-delete: fetch new messages into a durable sink, and delete
//! each from the server only once the sink says it is stored.
//!
//! The algorithm is the core's ([`pop3_proto::fetch`], with the argument for
//! why every message ends up stored exactly once and none is lost); this
//! module runs it on tokio: [`fetch_new`] on an open session, or [`run`]
//! from a URL and a password, into a [`MessageSink`] such as the Maildir
//! [`MaildirSink`]. The sink's calls are blocking file I/O: writes into
//! the page cache, one fsync and rename per message, and one sync of the
//! directory and the journal per run. They run on the session's task;
//! those that may wait for the disk ([`SinkRequest::may_block`]) hand the
//! worker's other tasks to another thread meanwhile (`block_in_place`, on
//! a multi-threaded runtime).
//!
//! [`SinkRequest::may_block`]: pop3_proto::fetch::SinkRequest::may_block
//!
//! ```no_run
//! use pop3_tokio::fetch::{self, FetchSettings, MaildirSink, PopUrl};
//!
//! # async fn go() -> Result<(), Box<dyn std::error::Error>> {
//! let url = PopUrl::parse("pops://alice@pop.example.com")?;
//! let mut sink = MaildirSink::open("Mail/inbox", &url.account_id())?;
//! let mut settings = FetchSettings::default();
//! settings.delete = true;
//! let report = fetch::run(&url, "secret", &settings, &mut sink, &mut |_| {}).await?;
//! println!("{} new messages", report.saved);
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

use pop3_proto::fetch::{Fetch, FetchStep, execute};

use crate::client::Pop3Client;

/// Fetches, on a logged-in session, every message whose UID the sink does
/// not hold yet, and with [`FetchOptions::delete`] deletes every message the
/// sink holds; ends with QUIT.
///
/// ```no_run
/// use pop3_tokio::client::{ConnectOptions, Pop3Client, Security};
/// use pop3_tokio::fetch::{fetch_new, FetchOptions, MaildirSink};
/// # async fn go() -> Result<(), Box<dyn std::error::Error>> {
/// let mut client = Pop3Client::connect("localhost", 110, ConnectOptions::new(Security::StartTls)).await?;
/// client.login("alice", "secret").await?;
/// let mut sink = MaildirSink::open("Maildir", "alice@localhost:110")?;
/// let report = fetch_new(&mut client, &mut sink, &FetchOptions::default(), &mut |_| {}).await?;
/// # Ok(()) }
/// ```
pub async fn fetch_new<S: MessageSink>(
    client: &mut Pop3Client,
    sink: &mut S,
    options: &FetchOptions,
    progress: &mut (dyn FnMut(&Progress) + Send),
) -> Result<FetchReport, FetchError> {
    let mut fetch = Fetch::new(options.clone());
    poll_fn(|cx| {
        loop {
            let (now, conn) = (client.now(), client.connection());
            match fetch.poll(now, conn) {
                FetchStep::Io => std::task::ready!(client.poll_io(cx)),
                FetchStep::Sink(request) => {
                    let reply = if request.may_block() {
                        in_place(|| execute(sink, request))
                    } else {
                        execute(sink, request)
                    };
                    fetch.sink_done(reply);
                }
                FetchStep::Progress(p) => progress(&p),
                FetchStep::Done(result) => return Poll::Ready(result),
                // A step of a later version: wait for I/O as for `Io`.
                _ => std::task::ready!(client.poll_io(cx)),
            }
        }
    })
    .await
}

/// Runs sink work that may wait for the disk (creating, syncing and
/// renaming files) without stalling the other tasks of a multi-threaded
/// runtime: their worker is handed to another thread meanwhile. On a
/// current-thread runtime it runs as it is.
fn in_place<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Connects as the URL says, logs in with `password`, and runs
/// [`fetch_new`].
///
/// ```no_run
/// use pop3_tokio::fetch::{run, FetchSettings, MaildirSink, PopUrl};
/// # async fn go() -> Result<(), Box<dyn std::error::Error>> {
/// let url: PopUrl = "pop://bob;AUTH=PLAIN@localhost".parse()?;
/// let mut settings = FetchSettings::default();
/// settings.starttls = true;
/// let mut sink = MaildirSink::open("Maildir", "bob@localhost:110")?;
/// run(&url, "secret", &settings, &mut sink, &mut |p| eprintln!("{p:?}")).await?;
/// # Ok(()) }
/// ```
pub async fn run<S: MessageSink>(
    url: &PopUrl,
    password: &str,
    settings: &FetchSettings,
    sink: &mut S,
    progress: &mut (dyn FnMut(&Progress) + Send),
) -> Result<FetchReport, FetchError> {
    let mut client = connect(url, settings).await?;
    authenticate(&mut client, url, settings, password).await?;
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
pub async fn authenticate(
    client: &mut Pop3Client,
    url: &PopUrl,
    settings: &FetchSettings,
    password: &str,
) -> Result<(), FetchError> {
    let task = settings.login_task(client.connection_ref().machine(), url, password)?;
    Ok(client.run(task).await?)
}
