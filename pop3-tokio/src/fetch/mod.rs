//! Save-before-delete: fetch new messages into a durable sink, and delete
//! each from the server only once the sink says it is stored.
//!
//! The pieces: a [`MessageSink`] (begin a message, write its chunks, commit
//! durably; say whether a UID is already stored), a Maildir implementation
//! ([`MaildirSink`]), POP URLs ([`PopUrl`]), and the driver:
//! [`fetch_new`] on an open session, or [`run`] from a URL and a password.
//!
//! ```no_run
//! use pop3_tokio::fetch::{self, FetchSettings, MaildirSink, PopUrl};
//!
//! # async fn go() -> Result<(), Box<dyn std::error::Error>> {
//! let url = PopUrl::parse("pops://alice@pop.example.com")?;
//! let mut sink = MaildirSink::open("Mail/inbox", &fetch::account_id(&url))?;
//! let mut settings = FetchSettings::default();
//! settings.delete = true;
//! let report = fetch::run(&url, "secret", &settings, &mut sink, &mut |_| {}).await?;
//! println!("{} new messages", report.saved);
//! # Ok(()) }
//! ```
//!
//! # Why every message ends up stored exactly once, and none is lost
//!
//! The argument rests on four facts:
//!
//! 1. *The server removes nothing without QUIT.* DELE only marks; removal
//!    happens in the UPDATE state, which only an acknowledged QUIT enters
//!    (RFC 1939 §6). A run killed at any point before the server processed
//!    QUIT removes nothing, whatever DELEs it sent.
//! 2. *DELE is sent only for stored messages.* [`fetch_new`] sends `DELE n`
//!    only for a message whose UID the sink reports stored: either
//!    [`MessageSink::contains`] said so, or [`MessageWriter::commit`]
//!    returned `Ok` for it in this run. A sink's `commit` returns only after
//!    the message is durable (the Maildir sink: file fsynced, renamed into
//!    `new/`, directory fsynced). So at the moment any DELE is on the wire,
//!    the message is durably stored; a fortiori when QUIT removes it.
//! 3. *Stored messages are recognised.* A message is identified by its UIDL
//!    unique-id, which the server keeps for the message's lifetime and never
//!    reuses (RFC 1939 §7). Once stored, `contains(uid)` is `true` for good:
//!    the Maildir sink names the file after a hash of account and UID and
//!    looks for it in `new/` and `cur/`, and also keeps the UID in a
//!    journal written after the file (so a message later moved or deleted
//!    locally is still not fetched again while it stays on the server).
//!    Such a message is never written a second time, only DELEd again
//!    (with `delete`).
//! 4. *Storing is atomic.* A message becomes visible in the Maildir by one
//!    rename of a complete, fsynced file; a run killed earlier leaves only a
//!    file in `tmp/`, which is not a delivered message and is cleaned up on
//!    the next open. So a message is either stored whole or not at all.
//!
//! Hence after a kill at any instant and a rerun: a message still on the
//! server is either stored (3: skipped, never stored twice) or not (fetched
//! now, once, 4); a message gone from the server was removed by a QUIT (1)
//! after its DELE, hence after it was stored (2). Every message is in the
//! Maildir exactly once. The residual risks are outside the protocol: a
//! server that breaks UIDL's promises, or a storage device that lies about
//! fsync.
//!
//! # The sink's I/O
//!
//! [`MaildirSink`] writes chunks with ordinary buffered file writes on the
//! calling task (they land in the page cache) and runs the fsyncs and the
//! rename on tokio's blocking pool.

mod maildir;
mod url;

pub use maildir::{LineEnds, MaildirSink, MaildirWriter};
pub use url::{AuthMethod, Host, PopUrl, UrlError};

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::io;

use bytes::Bytes;
use pop3_proto::client::ServerError;
use pop3_proto::client::sasl::{CramMd5, Login, OAuthBearer, Plain, ScramSha256, XOAuth2};
use pop3_proto::response::Capability;
use pop3_proto::types::{MessageNumber, Secret, Uid};

use crate::client::{ConnectOptions, Error, Pop3Client, Security, TlsVerification};

/// Where fetched messages go.
///
/// A sink promises: [`MessageWriter::commit`] returns `Ok` only once the
/// message is durably stored, and from then on [`MessageSink::contains`]
/// answers `true` for its UID, also in a later process. [`fetch_new`] relies
/// on that to delete messages safely.
///
/// A sink that only counts (it stores nothing, so it must never be used
/// with deletion):
///
/// ```
/// use std::io;
/// use bytes::Bytes;
/// use pop3_proto::types::Uid;
/// use pop3_tokio::fetch::{MessageSink, MessageWriter};
///
/// struct Count(u64);
/// struct Counting<'a>(&'a mut u64);
///
/// impl MessageSink for Count {
///     type Writer<'a> = Counting<'a>;
///     fn contains(&mut self, _uid: &Uid) -> io::Result<bool> {
///         Ok(false)
///     }
///     async fn begin(&mut self, _uid: &Uid) -> io::Result<Counting<'_>> {
///         Ok(Counting(&mut self.0))
///     }
/// }
///
/// impl MessageWriter for Counting<'_> {
///     async fn write(&mut self, chunk: Bytes) -> io::Result<()> {
///         *self.0 += chunk.len() as u64;
///         Ok(())
///     }
///     async fn commit(self) -> io::Result<()> {
///         Ok(())
///     }
///     async fn abort(self) {}
/// }
/// ```
pub trait MessageSink {
    /// One message being written.
    type Writer<'a>: MessageWriter
    where
        Self: 'a;

    /// Whether the message with this UID is already durably stored.
    fn contains(&mut self, uid: &Uid) -> io::Result<bool>;

    /// Starts storing a message.
    fn begin(&mut self, uid: &Uid) -> impl Future<Output = io::Result<Self::Writer<'_>>> + Send;

    /// The server lists exactly these UIDs now: the sink may forget others
    /// (they are gone from the server and UIDs are never reused). The
    /// default keeps everything.
    fn retain(&mut self, listed: &HashSet<Uid>) -> io::Result<()> {
        let _ = listed;
        Ok(())
    }
}

/// One message being stored by a [`MessageSink`].
pub trait MessageWriter: Send {
    /// Appends a chunk of the message.
    fn write(&mut self, chunk: Bytes) -> impl Future<Output = io::Result<()>> + Send;

    /// Makes the message durable; `Ok` only when it is.
    fn commit(self) -> impl Future<Output = io::Result<()>> + Send;

    /// Throws the partial message away.
    fn abort(self) -> impl Future<Output = ()> + Send;
}

/// What [`fetch_new`] does.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct FetchOptions {
    /// Delete from the server every message that is stored (already or now).
    pub delete: bool,
}

/// Progress of a fetch, passed to the callback after each chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Progress {
    /// Messages to fetch in this run.
    pub messages_total: usize,
    /// Messages stored so far.
    pub messages_done: usize,
    /// Octets to fetch, as listed by the server (0 if unknown).
    pub bytes_total: u64,
    /// Octets received so far.
    pub bytes_done: u64,
}

/// What a fetch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FetchReport {
    /// Messages the server listed.
    pub listed: usize,
    /// Messages already stored before this run.
    pub already_stored: usize,
    /// Messages stored by this run.
    pub saved: usize,
    /// Octets received for them.
    pub bytes: u64,
    /// Messages deleted from the server (the QUIT was acknowledged).
    pub deleted: usize,
    /// Messages the server refused to send or delete, with its reply.
    pub refused: Vec<(MessageNumber, ServerError)>,
}

/// Why a fetch failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum FetchError {
    /// The POP3 session failed.
    Pop3(Error),
    /// The sink failed to store a message.
    Store(io::Error),
    /// The server has no UIDL: messages cannot be told apart across runs.
    NoUidl(ServerError),
    /// The URL has no user name.
    NoUser,
    /// The chosen authentication cannot be used on this connection.
    Auth(String),
    /// The settings contradict each other or the URL.
    Settings(String),
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Pop3(e) => write!(f, "{e}"),
            FetchError::Store(e) => write!(f, "cannot store a message: {e}"),
            FetchError::NoUidl(e) => write!(f, "the server has no UIDL ({e})"),
            FetchError::NoUser => f.write_str("the URL has no user name"),
            FetchError::Auth(s) => f.write_str(s),
            FetchError::Settings(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for FetchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FetchError::Pop3(e) => Some(e),
            FetchError::Store(e) => Some(e),
            FetchError::NoUidl(e) => Some(e),
            _ => None,
        }
    }
}

impl From<Error> for FetchError {
    fn from(e: Error) -> Self {
        FetchError::Pop3(e)
    }
}

/// Fetches, on a logged-in session, every message whose UID the sink does
/// not hold yet, and with [`FetchOptions::delete`] deletes every message the
/// sink holds; ends with QUIT. See the [module docs](self) for why nothing
/// is lost or duplicated.
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
    let uids = match client.uidl().await {
        Ok(u) => u,
        Err(Error::Server(e)) => return Err(FetchError::NoUidl(e)),
        Err(e) => return Err(e.into()),
    };
    let sizes: HashMap<MessageNumber, u64> = match client.list().await {
        Ok(list) => list.into_iter().map(|s| (s.msg, s.size)).collect(),
        Err(Error::Server(_)) => HashMap::new(),
        Err(e) => return Err(e.into()),
    };
    let listed: HashSet<Uid> = uids.iter().map(|u| u.uid.clone()).collect();
    // Forget UIDs gone from the server, but only when the listings agree
    // (a UIDL line that could not be parsed must not make a stored message
    // look gone).
    if !sizes.is_empty() && sizes.len() == uids.len() {
        sink.retain(&listed).map_err(FetchError::Store)?;
    }

    let mut report = FetchReport {
        listed: uids.len(),
        ..FetchReport::default()
    };
    let mut stored = Vec::new();
    let mut wanted = Vec::new();
    let mut seen = HashSet::new();
    for entry in &uids {
        if !seen.insert(entry.uid.clone()) {
            // Two messages with one UID: only the first can be told apart.
            tracing::warn!(target: "pop3_tokio::fetch", "duplicate UID {} (message {})", entry.uid, entry.msg);
            continue;
        }
        if sink.contains(&entry.uid).map_err(FetchError::Store)? {
            stored.push(entry.msg);
            report.already_stored += 1;
        } else {
            wanted.push((entry.msg, entry.uid.clone()));
        }
    }
    let mut state = Progress {
        messages_total: wanted.len(),
        bytes_total: wanted
            .iter()
            .map(|(m, _)| sizes.get(m).copied().unwrap_or(0))
            .sum(),
        ..Progress::default()
    };
    progress(&state);

    if !wanted.is_empty() {
        let uid_of: HashMap<MessageNumber, Uid> = wanted.iter().cloned().collect();
        let mut batch = client.retr_many(wanted.iter().map(|(m, _)| *m))?;
        while let Some((msg, item)) = batch.next().await {
            let mut body = match item {
                Ok(body) => body,
                Err(Error::Server(e)) => {
                    // This one is not sent (e.g. deleted by another session):
                    // the others go on.
                    report.refused.push((msg, e));
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let uid = &uid_of[&msg];
            let mut writer = sink.begin(uid).await.map_err(FetchError::Store)?;
            let mut size = 0u64;
            loop {
                match body.next_chunk().await {
                    Ok(Some(chunk)) => {
                        size += chunk.len() as u64;
                        state.bytes_done += chunk.len() as u64;
                        if let Err(e) = writer.write(chunk).await {
                            writer.abort().await;
                            return Err(FetchError::Store(e));
                        }
                        progress(&state);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        writer.abort().await;
                        return Err(e.into());
                    }
                }
            }
            writer.commit().await.map_err(FetchError::Store)?;
            stored.push(msg);
            report.saved += 1;
            report.bytes += size;
            state.messages_done += 1;
            progress(&state);
        }
    }

    if options.delete && !stored.is_empty() {
        stored.sort();
        for (msg, result) in client.dele_many(stored.iter().copied()).await? {
            match result {
                Ok(()) => report.deleted += 1,
                Err(e) => report.refused.push((msg, e)),
            }
        }
    }
    client.quit().await?;
    Ok(report)
}

/// How [`run`] connects and what it does.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FetchSettings {
    /// Upgrade a `pop://` connection with STLS.
    pub starttls: bool,
    /// How the certificate is verified.
    pub verification: TlsVerification,
    /// Overrides the URL's `;AUTH=`.
    pub auth: Option<AuthMethod>,
    /// Pipeline when the server allows it (default `true`).
    pub pipelining: bool,
    /// Delete stored messages from the server.
    pub delete: bool,
}

impl Default for FetchSettings {
    fn default() -> Self {
        FetchSettings {
            starttls: false,
            verification: TlsVerification::default(),
            auth: None,
            pipelining: true,
            delete: false,
        }
    }
}

/// A name for the maildrop a URL designates, to key a sink's records:
/// `user@host`, plus `:port` unless the port is its scheme's usual one (110
/// for `pop://`, 995 for `pops://`, which serve the same maildrop).
///
/// Two maildrops must never share a name: a message whose unique-id one
/// of them has already stored would be taken as stored, and deleted with
/// `--delete`, for the other. So any non-standard port is part of the name
/// (two services on one host, or tunnels to several hosts on `localhost`),
/// at the price of fetching again when the same maildrop is reached through
/// another port or host spelling.
///
/// ```
/// use pop3_tokio::fetch::{account_id, PopUrl};
/// let url = PopUrl::parse("pops://alice@[::1]:9950").unwrap();
/// assert_eq!(account_id(&url), "alice@[::1]:9950");
/// let url = PopUrl::parse("pops://alice@mail.example.org").unwrap();
/// assert_eq!(account_id(&url), "alice@mail.example.org");
/// ```
pub fn account_id(url: &PopUrl) -> String {
    let user = url.user.as_deref().unwrap_or("");
    let standard = url.port == url.security.default_port();
    if standard {
        format!("{user}@{}", url.host)
    } else {
        format!("{user}@{}:{}", url.host, url.port)
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
    let options = FetchOptions {
        delete: settings.delete,
    };
    fetch_new(&mut client, sink, &options, progress).await
}

/// Opens the session a URL designates (TLS as the scheme and
/// [`FetchSettings::starttls`] say), without logging in.
///
/// ```no_run
/// use pop3_tokio::fetch::{authenticate, connect, FetchSettings, PopUrl};
/// # async fn go() -> Result<(), Box<dyn std::error::Error>> {
/// let url = PopUrl::parse("pops://alice@pop.example.com")?;
/// let settings = FetchSettings::default();
/// let mut client = connect(&url, &settings).await?;
/// authenticate(&mut client, &url, &settings, "secret").await?;
/// println!("{:?}", client.stat().await?);
/// # Ok(()) }
/// ```
pub async fn connect(url: &PopUrl, settings: &FetchSettings) -> Result<Pop3Client, FetchError> {
    let security = match (url.security, settings.starttls) {
        (Security::ImplicitTls, true) => {
            return Err(FetchError::Settings(
                "STLS makes no sense with pops:// (TLS is already on)".into(),
            ));
        }
        (_, true) => Security::StartTls,
        (s, false) => s,
    };
    let mut options = ConnectOptions::new(security);
    options.verification = settings.verification.clone();
    options.session.pipelining = settings.pipelining;
    // A big window: many RETRs in flight keep the link busy between messages.
    options.session.max_in_flight = 64;
    Ok(Pop3Client::connect(&url.host.connect_name(), url.port, options).await?)
}

/// Logs in as the URL (or [`FetchSettings::auth`]) says; see
/// [`AuthMethod::Any`] for what is chosen when nothing is said.
///
/// ```no_run
/// use pop3_tokio::fetch::{authenticate, connect, AuthMethod, FetchSettings, PopUrl};
/// # async fn go() -> Result<(), Box<dyn std::error::Error>> {
/// let url = PopUrl::parse("pop://alice@localhost")?;
/// let mut settings = FetchSettings::default();
/// settings.auth = Some(AuthMethod::Apop);
/// let mut client = connect(&url, &settings).await?;
/// authenticate(&mut client, &url, &settings, "secret").await?;
/// # Ok(()) }
/// ```
pub async fn authenticate(
    client: &mut Pop3Client,
    url: &PopUrl,
    settings: &FetchSettings,
    password: &str,
) -> Result<(), FetchError> {
    let user = url.user.as_deref().ok_or(FetchError::NoUser)?;
    let method = settings.auth.clone().unwrap_or_else(|| url.auth.clone());
    let secret = || Secret::new(password.as_bytes().to_vec());
    let method = match method {
        AuthMethod::Any => {
            let plain = pop3_proto::types::Mechanism::new("PLAIN").expect("valid name");
            let sasl_plain = client.capabilities().is_some_and(|caps| {
                caps.iter()
                    .any(|c| matches!(c, Capability::Sasl(m) if m.contains(&plain)))
            });
            if client.is_tls() {
                if sasl_plain {
                    AuthMethod::Sasl(plain)
                } else {
                    AuthMethod::User
                }
            } else if client.greeting().is_some_and(|g| g.timestamp.is_some()) {
                AuthMethod::Apop
            } else {
                return Err(FetchError::Auth(
                    "refusing to send the password in clear text: use TLS, or ask for USER explicitly"
                        .into(),
                ));
            }
        }
        m => m,
    };
    match method {
        AuthMethod::User => client.login(user, password).await?,
        AuthMethod::Apop => client.apop(user, password).await?,
        AuthMethod::Sasl(m) => match m.as_str() {
            "PLAIN" => client.auth(Box::new(Plain::new(user, secret()))).await?,
            "LOGIN" => client.auth(Box::new(Login::new(user, secret()))).await?,
            "CRAM-MD5" => client.auth(Box::new(CramMd5::new(user, secret()))).await?,
            "SCRAM-SHA-256" => {
                let nonce = crate::tls::random_token(24)
                    .map_err(|e| FetchError::Auth(format!("no randomness for a nonce: {e}")))?;
                client
                    .auth(Box::new(ScramSha256::new(user, secret(), &nonce)))
                    .await?
            }
            // The password is the bearer token for the OAuth mechanisms.
            "XOAUTH2" => client.auth(Box::new(XOAuth2::new(user, secret()))).await?,
            "OAUTHBEARER" => {
                client
                    .auth(Box::new(OAuthBearer::new(user, secret())))
                    .await?
            }
            other => {
                return Err(FetchError::Auth(format!(
                    "SASL mechanism {other} is not supported \
                     (PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-256, XOAUTH2, OAUTHBEARER are)"
                )));
            }
        },
        AuthMethod::Any => unreachable!("resolved above"),
    }
    Ok(())
}
