//! Save-before-delete: fetch new messages into a durable sink, and delete
//! each from the server only once the sink says it is stored.
//!
//! The algorithm is the core's ([`pop3_proto::fetch`], with the argument for
//! why every message ends up stored exactly once and none is lost); this
//! module runs it over blocking sockets: [`fetch_new`] on an open session, or [`run`]
//! from a URL and a password, into a [`MessageSink`] such as the Maildir
//! [`MaildirSink`]. The sink's calls are blocking file I/O and run on the
//! calling thread: they are writes into the page cache, one fsync and
//! rename per message, and one sync of the directory and the journal per
//! run.
//!
//! ```no_run
//! use pop3_blocking::fetch::{self, FetchSettings, MaildirSink, PopUrl};
//!
//! # fn go() -> Result<(), Box<dyn std::error::Error>> {
//! let url = PopUrl::parse("pops://alice@pop.example.com")?;
//! let mut sink = MaildirSink::open("Mail/inbox", &url.account_id())?;
//! let mut settings = FetchSettings::default();
//! settings.delete = true;
//! let report = fetch::run(&url, "secret", &settings, &mut sink, &mut |_| {})?;
//! println!("{} new messages", report.saved);
//! # Ok(()) }
//! ```
//!
pub use crate::common::FetchSettings;
#[cfg(feature = "maildir")]
#[cfg_attr(docsrs, doc(cfg(feature = "maildir")))]
pub use crate::sink::{LineEnds, MaildirSink};
pub use pop3_proto::fetch::{
    AuthError, FetchError, FetchOptions, FetchReport, MessageSink, Progress, SettingsError,
};
pub use pop3_proto::url::{AuthMethod, Host, PopUrl, UrlError};

use pop3_proto::fetch::Fetch;

use crate::client::Pop3Client;

/// Fetches, on a logged-in session, every message whose UID the sink does
/// not hold yet, and with [`FetchOptions::delete`] deletes every message the
/// sink holds; ends with QUIT.
///
/// ```no_run
/// use pop3_blocking::client::{ConnectOptions, Pop3Client, Security};
/// use pop3_blocking::fetch::{fetch_new, FetchOptions, MaildirSink};
/// # fn go() -> Result<(), Box<dyn std::error::Error>> {
/// let mut client = Pop3Client::connect("localhost", 110, ConnectOptions::new(Security::StartTls))?;
/// client.login("alice", "secret")?;
/// let mut sink = MaildirSink::open("Maildir", "alice@localhost:110")?;
/// let report = fetch_new(&mut client, &mut sink, &FetchOptions::default(), &mut |_| {})?;
/// # Ok(()) }
/// ```
pub fn fetch_new<S: MessageSink>(
    client: &mut Pop3Client,
    sink: &mut S,
    options: &FetchOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<FetchReport, FetchError> {
    let mut fetch = Fetch::new(options.clone());
    loop {
        let (now, conn) = (client.now(), client.connection());
        if let Some(result) = fetch.drive(now, conn, sink, progress) {
            return result;
        }
        client.step();
    }
}

/// Connects as the URL says, logs in with `password`, and runs
/// [`fetch_new`].
///
/// ```no_run
/// use pop3_blocking::fetch::{run, FetchSettings, MaildirSink, PopUrl};
/// # fn go() -> Result<(), Box<dyn std::error::Error>> {
/// let url: PopUrl = "pop://bob;AUTH=PLAIN@localhost".parse()?;
/// let mut settings = FetchSettings::default();
/// settings.starttls = true;
/// let mut sink = MaildirSink::open("Maildir", "bob@localhost:110")?;
/// run(&url, "secret", &settings, &mut sink, &mut |p| eprintln!("{p:?}"))?;
/// # Ok(()) }
/// ```
pub fn run<S: MessageSink>(
    url: &PopUrl,
    password: &str,
    settings: &FetchSettings,
    sink: &mut S,
    progress: &mut dyn FnMut(&Progress),
) -> Result<FetchReport, FetchError> {
    let mut client = connect(url, settings)?;
    authenticate(&mut client, url, settings, password)?;
    fetch_new(&mut client, sink, &settings.fetch_options(), progress)
}

/// Opens the session a URL designates (TLS as the scheme and
/// [`FetchSettings::starttls`] say), without logging in.
pub fn connect(url: &PopUrl, settings: &FetchSettings) -> Result<Pop3Client, FetchError> {
    let options = settings.connect_options(url)?;
    Ok(Pop3Client::connect(
        &url.host.connect_name(),
        url.port,
        options,
    )?)
}

/// Logs in as the URL (or [`FetchSettings::auth`]) says; see
/// [`pop3_proto::fetch::login_task`] for what is chosen when nothing is said.
/// Before that, enables UTF-8 mode when the server offers it
/// ([`pop3_proto::fetch::utf8_task`]): fetched messages are stored as
/// sent, raw UTF-8 headers included.
pub fn authenticate(
    client: &mut Pop3Client,
    url: &PopUrl,
    settings: &FetchSettings,
    password: &str,
) -> Result<(), FetchError> {
    if let Some(utf8) = pop3_proto::fetch::utf8_task(client.connection_ref().machine()) {
        client.run(utf8)?;
    }
    let task = settings.login_task(client.connection_ref().machine(), url, password)?;
    Ok(client.run(task)?)
}
