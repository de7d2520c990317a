//! The fetch configuration file and the password sources (feature
//! `config`).
//!
//! A TOML file: a `[defaults]` table and any number of `[account.NAME]`
//! tables, each taking the same keys (an account's own keys win over the
//! defaults). Unknown keys and bad values are errors naming the file, the
//! line and the key. Paths may start with `~/`.
//!
//! ```toml
//! [defaults]
//! delete = true
//!
//! [account.work]
//! url = "pops://alice@pop.example.com"
//! password_command = "pass show mail/work"
//! maildir = "~/Mail/work"
//!
//! [account.home]
//! url = "pop://bob;AUTH=SCRAM-SHA-256@pop.example.net"
//! starttls = true
//! mbox = "~/mbox"
//! ```
//!
//! | key | value |
//! | --- | --- |
//! | `url` | `pop://user[;AUTH=mech]@host[:port]`, or `pops://` (required) |
//! | `maildir`, `mbox`, `mda`, `lmtp` | where mail goes, exactly one: a Maildir, an mbox file, a command fed each message (`sh -c`), an LMTP server (`unix:/path` or `host:port`) |
//! | `lmtp_recipient` | the LMTP recipient (default: the URL's user) |
//! | `password_command` | a command (`sh -c`) whose first line of output is the password, run for each session |
//! | `password_env` | an environment variable holding the password |
//! | `token_command` | a command (`sh -c`) whose first line of output is an OAuth 2.0 access token, run for each session (with `auth` XOAUTH2 or OAUTHBEARER) |
//! | `oauth2` | a table: the access token from the provider's token endpoint (below) |
//! | `netrc` | the `.netrc` file to look the password up in (default `$NETRC`, else `~/.netrc`) |
//! | `delete` | delete stored messages from the server (default false) |
//! | `delete_after_days` | delete stored messages this many days after this client first saw them (instead of `delete`) |
//! | `max_size` | do not fetch messages over this many octets |
//! | `oversize` | `"skip"` (default: they stay on the server) or `"delete"` (deleted unread) |
//! | `max_messages`, `max_octets` | fetch at most this many messages, octets per session (the first message always) |
//! | `fetch_all` | fetch every message, also those fetched before (an archive into a fresh destination) |
//! | `trace_headers` | prepend `Received:`, `Delivered-To:` and `X-UIDL:` to each stored message (default false) |
//! | `starttls` | upgrade `pop://` with STLS |
//! | `auth` | USER, APOP, PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-256, SCRAM-SHA-256-PLUS, XOAUTH2, OAUTHBEARER or `*` |
//! | `ca_file` | trust this CA (PEM) instead of the bundled roots and the system's trust store |
//! | `insecure` | accept any certificate |
//! | `client_cert`, `client_key` | a client certificate chain (PEM, leaf first) and its private key, shown to a server that asks for one; without `client_key` the key is read from `client_cert`'s file |
//! | `pipelining` | pipeline commands (default true) |
//! | `insecure_cleartext_login` | allow USER/PASS, PLAIN, LOGIN without TLS |
//! | `crlf` | keep CRLF line ends in a Maildir |
//! | `journal_account` | the name the UID journal knows the account by (default `user@host`); what is fetched is journaled under it, so keep it |
//! | `state_dir` | where the journals of mbox, MDA and LMTP delivery live (default `$XDG_STATE_HOME/pop3-fetch`) |
//! | `mda_timeout`, `lock_timeout` | seconds an MDA may run (300), to wait for an mbox's locks (60) |
//! | `import_seen` | before each fetch, take what another tool fetched as seen: `mpop:FILE`, `getmail:FILE` or `fetchmail:FILE` (as `--import-seen`, which wins) |
//!
//! Without `password_command`, `password_env`, `token_command` or
//! `oauth2`, the password comes from `~/.netrc` (or `$NETRC`: a
//! `machine HOST login USER password SECRET` entry), else from a prompt
//! when standard input is a terminal.
//!
//! The `oauth2` table (`[account.NAME.oauth2]`, or `[defaults.oauth2]`)
//! refreshes the access token of XOAUTH2 and OAUTHBEARER itself
//! ([`crate::oauth2`]): `token_url` (the token endpoint, `https://`),
//! `client_id`, `client_secret` or `client_secret_command` (a confidential
//! client), and `refresh_token_file` (the refresh token, its first line; a
//! rotated one replaces it there). The account needs `auth = "XOAUTH2"` or
//! `"OAUTHBEARER"` (or `;AUTH=` in its URL).
//!
//! ```toml
//! [account.gmail]
//! url = "pops://alice%40gmail.com@pop.gmail.com"
//! auth = "XOAUTH2"
//! maildir = "~/Mail/gmail"
//!
//! [account.gmail.oauth2]
//! token_url = "https://oauth2.googleapis.com/token"
//! client_id = "1234.apps.googleusercontent.com"
//! client_secret_command = "pass show mail/gmail-client-secret"
//! refresh_token_file = "~/.config/pop3-fetch/gmail.refresh"
//! ```
//!
//! A `[daemon]` table says how `fetch --daemon` polls: `interval` (the
//! time between two polls of an account: `30s`, `5m`, `1h`, `1h30m`),
//! `concurrency` (sessions at once, default 4) and `max_backoff` (the
//! longest wait after failures, default an hour or the interval); see
//! [`crate::daemon`].

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, IsTerminal};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use pop3_proto::fetch::Oversize;
use pop3_proto::url::{AuthMethod, PopUrl};
use serde::Deserialize;
use toml::Spanned;

use crate::common::FetchSettings;
use crate::deliver::{Delivery, Journaled, Lmtp, LmtpAddress, Mbox, Mda, Traced};
use crate::fetch::ExitKind;
use crate::oauth2::{ClientSecret, OAuth2Error, OAuth2Settings};
use crate::sink::{LineEnds, MaildirSink};
use crate::tls::{ClientIdentity, TlsConfigError, TlsVerification};

/// A configuration that cannot be used: the file, the line and the key
/// where known. Its exit status is 78 ([`ExitKind::Config`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The configuration file (`None` for the command line).
    pub file: Option<PathBuf>,
    /// The line (from 1).
    pub line: Option<usize>,
    /// The key, with its table (`account.work.delete`).
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    fn new(message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: None,
            line: None,
            key: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}", file.display())?;
            if let Some(line) = self.line {
                write!(f, ":{line}")?;
            }
            f.write_str(": ")?;
        }
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// The keys of `[defaults]` and `[account.NAME]` (see the module docs).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    url: Option<Spanned<String>>,
    maildir: Option<Spanned<String>>,
    mbox: Option<Spanned<String>>,
    mda: Option<Spanned<String>>,
    lmtp: Option<Spanned<String>>,
    lmtp_recipient: Option<String>,
    password_command: Option<String>,
    password_env: Option<String>,
    token_command: Option<Spanned<String>>,
    oauth2: Option<Spanned<OAuth2Table>>,
    import_seen: Option<Spanned<String>>,
    netrc: Option<String>,
    delete: Option<bool>,
    starttls: Option<bool>,
    auth: Option<Spanned<String>>,
    ca_file: Option<Spanned<String>>,
    insecure: Option<bool>,
    client_cert: Option<Spanned<String>>,
    client_key: Option<Spanned<String>>,
    pipelining: Option<bool>,
    insecure_cleartext_login: Option<bool>,
    crlf: Option<bool>,
    journal_account: Option<String>,
    state_dir: Option<String>,
    mda_timeout: Option<u64>,
    lock_timeout: Option<u64>,
    delete_after_days: Option<u64>,
    max_size: Option<u64>,
    oversize: Option<Spanned<String>>,
    max_messages: Option<u64>,
    max_octets: Option<u64>,
    fetch_all: Option<bool>,
    trace_headers: Option<bool>,
}

/// The keys of an `oauth2` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OAuth2Table {
    token_url: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    client_secret_command: Option<String>,
    refresh_token_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTables {
    #[serde(default)]
    defaults: Table,
    #[serde(default)]
    account: BTreeMap<String, Spanned<Table>>,
    daemon: Option<DaemonTable>,
}

/// The keys of `[daemon]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DaemonTable {
    interval: Option<Spanned<String>>,
    concurrency: Option<Spanned<usize>>,
    max_backoff: Option<Spanned<String>>,
}

/// The `[daemon]` table: how `fetch --daemon` polls (each key `None` when
/// not set; the command line's `--daemon INTERVAL` and `--concurrency`
/// win).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DaemonOptions {
    /// `interval`: the time between two polls of an account.
    pub interval: Option<Duration>,
    /// `concurrency`: sessions at once.
    pub concurrency: Option<usize>,
    /// `max_backoff`: the longest wait after failures.
    pub max_backoff: Option<Duration>,
}

impl DaemonTable {
    fn options(&self, text: &str) -> Result<DaemonOptions, ConfigError> {
        let duration =
            |key: &str, v: &Option<Spanned<String>>| -> Result<Option<Duration>, ConfigError> {
                let Some(v) = v else { return Ok(None) };
                let at = |message: String| ConfigError {
                    line: Some(line_of(text, v.span().start)),
                    ..keyed(&format!("daemon.{key}"), message)
                };
                match crate::daemon::parse_duration(v.get_ref()) {
                    Ok(d) if d.is_zero() => Err(at("must be more than zero".into())),
                    Ok(d) => Ok(Some(d)),
                    Err(e) => Err(at(e.to_string())),
                }
            };
        let concurrency = match &self.concurrency {
            Some(n) if *n.get_ref() == 0 => {
                return Err(ConfigError {
                    line: Some(line_of(text, n.span().start)),
                    ..keyed("daemon.concurrency", "must be at least 1")
                });
            }
            other => other.as_ref().map(|n| *n.get_ref()),
        };
        Ok(DaemonOptions {
            interval: duration("interval", &self.interval)?,
            concurrency,
            max_backoff: duration("max_backoff", &self.max_backoff)?,
        })
    }
}

macro_rules! merge {
    ($a:ident, $d:ident; $($k:ident),*) => {
        Table { $($k: $a.$k.or($d.$k.clone()),)* }
    };
}

impl Table {
    fn over(self, d: &Table) -> Table {
        merge!(self, d; url, maildir, mbox, mda, lmtp, lmtp_recipient, password_command,
            password_env, token_command, oauth2, import_seen, netrc, delete, starttls, auth, ca_file, insecure, client_cert, client_key,
            pipelining, insecure_cleartext_login, crlf, journal_account, state_dir, mda_timeout, lock_timeout,
            delete_after_days, max_size, oversize, max_messages, max_octets, fetch_all,
            trace_headers)
    }
}

/// Where one account's mail goes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Destination {
    /// A Maildir.
    Maildir(PathBuf),
    /// An mbox file.
    Mbox(PathBuf),
    /// An MDA command (`sh -c`).
    Mda(String),
    /// An LMTP server and the recipient.
    Lmtp(LmtpAddress, String),
}

/// What an error message names: `Maildir PATH`, `mbox PATH`, `MDA `COMMAND``,
/// `LMTP ADDRESS`.
///
/// ```
/// use pop3_blocking::config::Destination;
/// let d = Destination::Maildir("/home/alice/Mail".into());
/// assert_eq!(d.to_string(), "Maildir /home/alice/Mail");
/// ```
impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Maildir(p) => write!(f, "Maildir {}", p.display()),
            Destination::Mbox(p) => write!(f, "mbox {}", p.display()),
            Destination::Mda(command) => write!(f, "MDA `{command}`"),
            Destination::Lmtp(address, _) => write!(f, "LMTP {address}"),
        }
    }
}

/// Where one account's password comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PasswordSource {
    /// A command (`sh -c`), run for each session: its first line of output.
    Command(String),
    /// An environment variable.
    Env(String),
    /// `.netrc`, else a prompt on a terminal.
    NetrcOrPrompt,
    /// A command (`sh -c`) printing an OAuth 2.0 access token (its first
    /// line), run for each session.
    TokenCommand(String),
    /// An access token from the provider's token endpoint.
    OAuth2(OAuth2Settings),
}

/// One account, ready to fetch.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Account {
    /// Its name (`[account.NAME]`, or the URL for the command line's one).
    pub name: String,
    /// The maildrop.
    pub url: PopUrl,
    /// How to connect and what to do.
    pub settings: FetchSettings,
    /// Where the password comes from.
    pub password: PasswordSource,
    /// Where mail goes.
    pub destination: Destination,
    /// The `.netrc` file (default [`netrc_path`]).
    pub netrc: Option<PathBuf>,
    /// How line ends are stored in a Maildir.
    pub line_ends: LineEnds,
    /// The name the journal knows the account by (default
    /// `PopUrl::account_id`).
    pub journal_account: Option<String>,
    /// The directory of the journals of non-Maildir destinations.
    pub state_dir: Option<PathBuf>,
    /// How long an MDA may run.
    pub mda_timeout: Duration,
    /// How long to wait for an mbox's locks.
    pub lock_timeout: Duration,
    /// Prepend trace headers to each stored message.
    pub trace_headers: bool,
    /// Another tool's list of what it fetched, taken as seen before each
    /// fetch (`mpop:FILE`, `getmail:FILE`, `fetchmail:FILE`).
    pub import_seen: Option<String>,
}

/// The settings an account takes, from a file or the command line.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct AccountOptions {
    /// `pop://` URL.
    pub url: Option<String>,
    /// A Maildir.
    pub maildir: Option<String>,
    /// An mbox file.
    pub mbox: Option<String>,
    /// An MDA command.
    pub mda: Option<String>,
    /// An LMTP server.
    pub lmtp: Option<String>,
    /// The LMTP recipient.
    pub lmtp_recipient: Option<String>,
    /// A password command.
    pub password_command: Option<String>,
    /// A password variable.
    pub password_env: Option<String>,
    /// An access-token command.
    pub token_command: Option<String>,
    /// The token endpoint's client.
    pub oauth2: Option<OAuth2Options>,
    /// Another tool's list of what it fetched (`TOOL:FILE`).
    pub import_seen: Option<String>,
    /// The `.netrc` file.
    pub netrc: Option<String>,
    /// Delete stored messages.
    pub delete: bool,
    /// STLS.
    pub starttls: bool,
    /// The mechanism.
    pub auth: Option<String>,
    /// A CA file.
    pub ca_file: Option<String>,
    /// Accept any certificate.
    pub insecure: bool,
    /// A client certificate chain (PEM).
    pub client_cert: Option<String>,
    /// The client certificate's private key (PEM; default: in
    /// `client_cert`'s file).
    pub client_key: Option<String>,
    /// Pipeline commands.
    pub pipelining: bool,
    /// Clear text logins without TLS.
    pub insecure_cleartext_login: bool,
    /// Keep CRLF.
    pub crlf: bool,
    /// The journal's name of the account.
    pub journal_account: Option<String>,
    /// The journals' directory.
    pub state_dir: Option<String>,
    /// Seconds an MDA may run.
    pub mda_timeout: Option<u64>,
    /// Seconds to wait for mbox locks.
    pub lock_timeout: Option<u64>,
    /// Delete messages this many days after they were first seen.
    pub delete_after_days: Option<u64>,
    /// Octets over which a message is not fetched.
    pub max_size: Option<u64>,
    /// `skip` or `delete`: what becomes of a message over `max_size`.
    pub oversize: Option<String>,
    /// Messages per session.
    pub max_messages: Option<u64>,
    /// Octets per session.
    pub max_octets: Option<u64>,
    /// Fetch messages fetched before too.
    pub fetch_all: bool,
    /// Mark everything seen without downloading.
    pub mark_seen: bool,
    /// Prepend trace headers.
    pub trace_headers: bool,
}

/// The `oauth2` table's keys (see the module docs).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct OAuth2Options {
    /// The token endpoint.
    pub token_url: Option<String>,
    /// The client identifier.
    pub client_id: Option<String>,
    /// The client secret.
    pub client_secret: Option<String>,
    /// A command printing the client secret.
    pub client_secret_command: Option<String>,
    /// The refresh token's file.
    pub refresh_token_file: Option<String>,
}

impl OAuth2Options {
    /// Checks the keys (errors keyed `oauth2.KEY`).
    fn settings(self) -> Result<OAuth2Settings, ConfigError> {
        let need = |v: Option<String>, key: &str| {
            v.filter(|v| !v.is_empty())
                .ok_or_else(|| keyed(&format!("oauth2.{key}"), "missing: the table needs it"))
        };
        let token_url = need(self.token_url, "token_url")?;
        if !crate::oauth2::endpoint_allowed(&token_url) {
            return Err(keyed(
                "oauth2.token_url",
                format!(
                    "`{token_url}`: give an https:// URL (plain http:// only on a loopback host)"
                ),
            ));
        }
        let client_id = need(self.client_id, "client_id")?;
        let file = need(self.refresh_token_file, "refresh_token_file")?;
        let mut settings = OAuth2Settings::new(token_url, client_id, expand_tilde(&file));
        match (self.client_secret, self.client_secret_command) {
            (Some(_), Some(_)) => {
                return Err(keyed(
                    "oauth2.client_secret_command",
                    "give only one of client_secret and client_secret_command",
                ));
            }
            (Some(v), None) => settings = settings.with_client_secret(ClientSecret::Value(v)),
            (None, Some(c)) => settings = settings.with_client_secret(ClientSecret::Command(c)),
            (None, None) => {}
        }
        Ok(settings)
    }
}

/// `~` and `~/...` with the home directory.
///
/// ```
/// use pop3_blocking::config::expand_tilde;
/// if let Some(home) = std::env::var_os("HOME") {
///     assert_eq!(expand_tilde("~/Mail"), std::path::Path::new(&home).join("Mail"));
/// }
/// assert_eq!(expand_tilde("/var/mail/u"), std::path::PathBuf::from("/var/mail/u"));
/// ```
pub fn expand_tilde(path: &str) -> PathBuf {
    let home = || std::env::var_os("HOME").filter(|h| !h.is_empty());
    if path == "~" {
        if let Some(h) = home() {
            return PathBuf::from(h);
        }
    }
    if let Some(rest) = path.strip_prefix("~/") {
        if let Some(h) = home() {
            return PathBuf::from(h).join(rest);
        }
    }
    PathBuf::from(path)
}

/// The default configuration file: `$XDG_CONFIG_HOME/pop3-fetch/config.toml`,
/// else `~/.config/pop3-fetch/config.toml`.
pub fn default_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("pop3-fetch/config.toml"));
    }
    let home = std::env::var_os("HOME").filter(|d| !d.is_empty())?;
    Some(PathBuf::from(home).join(".config/pop3-fetch/config.toml"))
}

impl AccountOptions {
    /// Checks the options and makes the account `name`.
    pub fn into_account(self, name: &str) -> Result<Account, ConfigError> {
        let url = self
            .url
            .ok_or_else(|| ConfigError::new("no url: the account needs `url`"))?;
        let url = PopUrl::parse(&url).map_err(|e| keyed("url", e.to_string()))?;
        let auth = match &self.auth {
            Some(a) => Some(AuthMethod::parse(a).map_err(|e| keyed("auth", e.to_string()))?),
            None => None,
        };
        let mut settings = FetchSettings {
            delete: self.delete,
            starttls: self.starttls,
            auth,
            pipelining: self.pipelining,
            insecure_cleartext_login: self.insecure_cleartext_login,
            ..FetchSettings::default()
        };
        if let Some(days) = self.delete_after_days {
            if self.delete {
                return Err(keyed(
                    "delete_after_days",
                    "contradicts delete = true (which deletes at once)",
                ));
            }
            settings.policy.delete_after = Some(Duration::from_secs(days.saturating_mul(86_400)));
        }
        settings.policy.max_size = self.max_size;
        settings.policy.oversize = match self.oversize.as_deref() {
            None | Some("skip") => Oversize::Skip,
            Some("delete") => Oversize::Delete,
            Some(other) => {
                return Err(keyed(
                    "oversize",
                    format!("`{other}`: say \"skip\" or \"delete\""),
                ));
            }
        };
        if self.oversize.is_some() && self.max_size.is_none() {
            return Err(keyed("oversize", "needs max_size"));
        }
        settings.policy.max_messages = self
            .max_messages
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX));
        settings.policy.max_octets = self.max_octets;
        settings.policy.refetch = self.fetch_all;
        settings.policy.mark_seen = self.mark_seen;
        if self.insecure {
            if self.ca_file.is_some() {
                return Err(keyed("insecure", "contradicts ca_file"));
            }
            settings.verification = TlsVerification::DangerouslyAcceptAnyCertificate;
        } else if let Some(path) = &self.ca_file {
            let path = expand_tilde(path);
            settings.verification = TlsVerification::ca_file(&path)
                .map_err(|e| keyed("ca_file", format!("{}: {e}", path.display())))?;
        }
        match (&self.client_cert, &self.client_key) {
            (Some(cert), key) => {
                let cert = expand_tilde(cert);
                let key = key.as_deref().map_or_else(|| cert.clone(), expand_tilde);
                let identity = ClientIdentity::from_pem(&cert, &key).map_err(|e| {
                    let (which, path) = match e {
                        TlsConfigError::Pem {
                            what: "client private key",
                            ..
                        } => ("client_key", &key),
                        _ => ("client_cert", &cert),
                    };
                    let why = match std::error::Error::source(&e) {
                        Some(cause) => format!("{}: {e}: {cause}", path.display()),
                        None => format!("{}: {e}", path.display()),
                    };
                    keyed(which, why)
                })?;
                settings.client_identity = Some(identity);
            }
            (None, Some(_)) => return Err(keyed("client_key", "needs client_cert")),
            (None, None) => {}
        }
        let given = [
            self.maildir.is_some(),
            self.mbox.is_some(),
            self.mda.is_some(),
            self.lmtp.is_some(),
        ];
        let destination = match (self.maildir, self.mbox, self.mda, self.lmtp) {
            _ if given.iter().filter(|g| **g).count() > 1 => {
                return Err(ConfigError::new(
                    "give only one of maildir, mbox, mda and lmtp",
                ));
            }
            (Some(dir), _, _, _) => Destination::Maildir(expand_tilde(&dir)),
            (_, Some(file), _, _) => Destination::Mbox(expand_tilde(&file)),
            (_, _, Some(cmd), _) => Destination::Mda(cmd),
            (_, _, _, Some(addr)) => {
                let addr = LmtpAddress::parse(&addr).map_err(|e| keyed("lmtp", e))?;
                let rcpt = self
                    .lmtp_recipient
                    .or_else(|| url.user.clone())
                    .ok_or_else(|| keyed("lmtp_recipient", "needed: the URL has no user"))?;
                Destination::Lmtp(addr, rcpt)
            }
            _ => {
                return Err(ConfigError::new(
                    "no destination: give one of maildir, mbox, mda and lmtp",
                ));
            }
        };
        let sources = [
            ("password_command", self.password_command.is_some()),
            ("password_env", self.password_env.is_some()),
            ("token_command", self.token_command.is_some()),
            ("oauth2", self.oauth2.is_some()),
        ];
        if let Some((second, _)) = sources.iter().filter(|(_, given)| *given).nth(1) {
            return Err(keyed(
                second,
                "give only one of password_command, password_env, token_command and oauth2",
            ));
        }
        let password = match (
            self.password_command,
            self.password_env,
            self.token_command,
            self.oauth2,
        ) {
            (Some(cmd), ..) => PasswordSource::Command(cmd),
            (_, Some(var), ..) => PasswordSource::Env(var),
            (_, _, Some(cmd), _) => PasswordSource::TokenCommand(cmd),
            (_, _, _, Some(oauth2)) => PasswordSource::OAuth2(oauth2.settings()?),
            (None, None, None, None) => PasswordSource::NetrcOrPrompt,
        };
        if matches!(
            password,
            PasswordSource::TokenCommand(_) | PasswordSource::OAuth2(_)
        ) {
            let mechanism = settings.auth.as_ref().unwrap_or(&url.auth);
            let bearer = match mechanism {
                AuthMethod::Sasl(m) => {
                    m.as_str().eq_ignore_ascii_case("XOAUTH2")
                        || m.as_str().eq_ignore_ascii_case("OAUTHBEARER")
                }
                _ => false,
            };
            if !bearer {
                let key = if settings.auth.is_some() {
                    "auth"
                } else if matches!(password, PasswordSource::TokenCommand(_)) {
                    "token_command"
                } else {
                    "oauth2"
                };
                return Err(keyed(
                    key,
                    "an access token needs auth = \"XOAUTH2\" or \"OAUTHBEARER\" (or ;AUTH= in the url)",
                ));
            }
        }
        if let Some(spec) = &self.import_seen {
            spec.parse::<crate::import::SeenList>()
                .map_err(|e| keyed("import_seen", e.to_string()))?;
        }
        Ok(Account {
            name: name.to_owned(),
            url,
            settings,
            password,
            destination,
            netrc: self.netrc.as_deref().map(expand_tilde),
            line_ends: if self.crlf {
                LineEnds::AsSent
            } else {
                LineEnds::Lf
            },
            journal_account: self.journal_account,
            state_dir: self.state_dir.as_deref().map(expand_tilde),
            mda_timeout: Duration::from_secs(self.mda_timeout.unwrap_or(300)),
            lock_timeout: Duration::from_secs(self.lock_timeout.unwrap_or(60)),
            trace_headers: self.trace_headers,
            import_seen: self.import_seen,
        })
    }
}

fn keyed(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key: Some(key.to_owned()),
        ..ConfigError::new(message)
    }
}

/// A configuration file's accounts, in name order.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The file.
    pub path: PathBuf,
    /// Its accounts.
    pub accounts: Vec<Account>,
    /// Its `[daemon]` table.
    pub daemon: DaemonOptions,
}

impl Config {
    /// Reads and checks the file.
    ///
    /// ```
    /// use pop3_blocking::config::Config;
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("config.toml");
    /// std::fs::write(&path, "[defaults]\ndelete = true\n\n[account.a]\nurl = \"pop://u@h\"\nmaildir = \"/tmp/m\"\npassword_env = \"P\"\n")?;
    /// let config = Config::load(&path)?;
    /// assert!(config.accounts[0].settings.delete);
    /// std::fs::write(&path, "[account.a]\nurl = \"pop://u@h\"\ndelet = true\n")?;
    /// let e = Config::load(&path).unwrap_err();
    /// assert_eq!((e.line, e.key.as_deref()), (Some(3), Some("account.a.delet")));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let in_file = |mut e: ConfigError| {
            e.file = Some(path.to_path_buf());
            e
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| in_file(ConfigError::new(format!("cannot read the file: {e}"))))?;
        Config::parse_all(&text)
            .map(|(accounts, daemon)| Config {
                path: path.to_path_buf(),
                accounts,
                daemon,
            })
            .map_err(in_file)
    }

    /// Checks a configuration's text (errors without the file name).
    pub fn parse(text: &str) -> Result<Vec<Account>, ConfigError> {
        Config::parse_all(text).map(|(accounts, _)| accounts)
    }

    /// The accounts and the `[daemon]` table of a configuration's text.
    fn parse_all(text: &str) -> Result<(Vec<Account>, DaemonOptions), ConfigError> {
        let tables: FileTables = from_toml(text)?;
        let daemon = match &tables.daemon {
            Some(table) => table.options(text)?,
            None => DaemonOptions::default(),
        };
        let mut accounts = Vec::new();
        for (name, table) in tables.account {
            let span = table.span();
            let table = table.into_inner().over(&tables.defaults);
            let spans: Vec<(&str, Range<usize>)> = [
                ("url", table.url.as_ref().map(Spanned::span)),
                ("auth", table.auth.as_ref().map(Spanned::span)),
                ("ca_file", table.ca_file.as_ref().map(Spanned::span)),
                ("client_cert", table.client_cert.as_ref().map(Spanned::span)),
                ("client_key", table.client_key.as_ref().map(Spanned::span)),
                ("lmtp", table.lmtp.as_ref().map(Spanned::span)),
                ("maildir", table.maildir.as_ref().map(Spanned::span)),
                ("mbox", table.mbox.as_ref().map(Spanned::span)),
                ("mda", table.mda.as_ref().map(Spanned::span)),
                ("oversize", table.oversize.as_ref().map(Spanned::span)),
                (
                    "token_command",
                    table.token_command.as_ref().map(Spanned::span),
                ),
                ("oauth2", table.oauth2.as_ref().map(Spanned::span)),
                ("import_seen", table.import_seen.as_ref().map(Spanned::span)),
            ]
            .into_iter()
            .filter_map(|(k, s)| Some((k, s?)))
            .collect();
            let options = AccountOptions {
                url: table.url.map(Spanned::into_inner),
                maildir: table.maildir.map(Spanned::into_inner),
                mbox: table.mbox.map(Spanned::into_inner),
                mda: table.mda.map(Spanned::into_inner),
                lmtp: table.lmtp.map(Spanned::into_inner),
                lmtp_recipient: table.lmtp_recipient,
                password_command: table.password_command,
                password_env: table.password_env,
                token_command: table.token_command.map(Spanned::into_inner),
                oauth2: table.oauth2.map(|t| {
                    let t = t.into_inner();
                    OAuth2Options {
                        token_url: t.token_url,
                        client_id: t.client_id,
                        client_secret: t.client_secret,
                        client_secret_command: t.client_secret_command,
                        refresh_token_file: t.refresh_token_file,
                    }
                }),
                import_seen: table.import_seen.map(Spanned::into_inner),
                netrc: table.netrc,
                delete: table.delete.unwrap_or(false),
                starttls: table.starttls.unwrap_or(false),
                auth: table.auth.map(Spanned::into_inner),
                ca_file: table.ca_file.map(Spanned::into_inner),
                insecure: table.insecure.unwrap_or(false),
                client_cert: table.client_cert.map(Spanned::into_inner),
                client_key: table.client_key.map(Spanned::into_inner),
                pipelining: table.pipelining.unwrap_or(true),
                insecure_cleartext_login: table.insecure_cleartext_login.unwrap_or(false),
                crlf: table.crlf.unwrap_or(false),
                journal_account: table.journal_account,
                state_dir: table.state_dir,
                mda_timeout: table.mda_timeout,
                lock_timeout: table.lock_timeout,
                delete_after_days: table.delete_after_days,
                max_size: table.max_size,
                oversize: table.oversize.map(Spanned::into_inner),
                max_messages: table.max_messages,
                max_octets: table.max_octets,
                fetch_all: table.fetch_all.unwrap_or(false),
                mark_seen: false,
                trace_headers: table.trace_headers.unwrap_or(false),
            };
            let account = options.into_account(&name).map_err(|mut e| {
                let at = e
                    .key
                    .as_deref()
                    .and_then(|k| {
                        // `oauth2.token_url` is found at its table.
                        let head = k.split('.').next().unwrap_or(k);
                        spans
                            .iter()
                            .find(|(n, _)| *n == k)
                            .or_else(|| spans.iter().find(|(n, _)| *n == head))
                    })
                    .map_or(span.start, |(_, s)| s.start);
                e.line = Some(line_of(text, at));
                e.key = Some(match &e.key {
                    Some(k) => format!("account.{name}.{k}"),
                    None => format!("account.{name}"),
                });
                e
            })?;
            accounts.push(account);
        }
        Ok((accounts, daemon))
    }
}

/// A TOML text read into `T`: a syntax error, an unknown key or a bad
/// value names its line and dotted key (without the file: the caller adds it).
pub(crate) fn from_toml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let span = e.span();
        let mut err = ConfigError::new(e.message().trim().to_owned());
        if let Some(span) = span {
            err.line = Some(line_of(text, span.start));
            err.key = key_at(text, span, e.message());
        }
        err
    })
}

/// The line (from 1) of the octet at `offset`.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The dotted key at `span`: the table of the last header before it and
/// the key on its line (or the one the message names).
fn key_at(text: &str, span: Range<usize>, message: &str) -> Option<String> {
    let start = span.start.min(text.len());
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let line = &text[line_start..line_end];
    let table = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|h| h.trim_matches(|c| c == '[' || c == ']').trim().to_owned());
    let named = message
        .split('`')
        .nth(1)
        .filter(|_| message.starts_with("unknown field"));
    let key = match (named, line.split_once('=')) {
        (Some(k), _) => k.to_owned(),
        (None, Some((k, _))) if !line.trim_start().starts_with('[') => k.trim().to_owned(),
        _ => return table,
    };
    Some(match table {
        Some(t) => format!("{t}.{key}"),
        None => key,
    })
}

/// Why no password could be had.
#[derive(Debug)]
#[non_exhaustive]
pub enum PasswordError {
    /// The password command failed (it is named).
    Command(String),
    /// No source gave a password.
    Missing(String),
    /// No OAuth 2.0 access token from the token endpoint (the account is
    /// named; the cause is the source).
    OAuth2(String, OAuth2Error),
}

impl PasswordError {
    /// Its exit status: a failed command 77, nothing configured 78.
    pub fn exit_kind(&self) -> ExitKind {
        match self {
            PasswordError::Command(_) => ExitKind::NoPerm,
            PasswordError::Missing(_) => ExitKind::Config,
            PasswordError::OAuth2(_, e) => e.exit_kind(),
        }
    }
}

impl fmt::Display for PasswordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswordError::Command(m) | PasswordError::Missing(m) => f.write_str(m),
            PasswordError::OAuth2(account, _) => {
                write!(f, "{account}: no OAuth 2.0 access token")
            }
        }
    }
}

impl std::error::Error for PasswordError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PasswordError::OAuth2(_, e) => Some(e),
            _ => None,
        }
    }
}

/// Runs `sh -c command` (its standard input and error the caller's, for a
/// pinentry or an agent) and answers the first line of its output.
///
/// ```
/// use pop3_blocking::config::password_from_command;
/// assert_eq!(password_from_command("printf 'pw\\nrest'").unwrap(), "pw");
/// assert!(password_from_command("exit 3").unwrap_err().to_string().contains("exit 3"));
/// ```
pub fn password_from_command(command: &str) -> Result<String, PasswordError> {
    first_line_of(command, "password command")
}

/// The first line of `sh -c command`'s output; `what` names the command in
/// errors.
fn first_line_of(command: &str, what: &str) -> Result<String, PasswordError> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| PasswordError::Command(format!("cannot run `{command}`: {e}")))?;
    if !out.status.success() {
        let how = match out.status.code() {
            Some(c) => format!("exited with {c}"),
            None => "was killed by a signal".to_owned(),
        };
        return Err(PasswordError::Command(format!(
            "the {what} `{command}` {how}"
        )));
    }
    let text = String::from_utf8(out.stdout)
        .map_err(|_| PasswordError::Command(format!("the {what} `{command}` printed no UTF-8")))?;
    let line = text.lines().next().unwrap_or("");
    Ok(line.strip_suffix('\r').unwrap_or(line).to_owned())
}

/// The `.netrc` file: `$NETRC`, else `~/.netrc`.
pub fn netrc_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("NETRC").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    Some(PathBuf::from(home).join(".netrc"))
}

/// The password of `login` on `host` in a `.netrc` text: the first
/// `machine` entry for the host (case-insensitive) whose `login` is the
/// user or absent, else the `default` entry's. `macdef` bodies are skipped.
///
/// ```
/// use pop3_blocking::config::netrc_lookup;
/// let text = "machine a.example login bob password b1\nmachine a.example login alice password a1\ndefault login alice password d";
/// assert_eq!(netrc_lookup(text, "A.example", "alice").as_deref(), Some("a1"));
/// assert_eq!(netrc_lookup(text, "other", "alice").as_deref(), Some("d"));
/// assert_eq!(netrc_lookup(text, "other", "carol"), None);
/// ```
pub fn netrc_lookup(text: &str, host: &str, login: &str) -> Option<String> {
    #[derive(Default)]
    struct Entry {
        machine: Option<String>,
        default: bool,
        login: Option<String>,
        password: Option<String>,
    }
    let mut entries: Vec<Entry> = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let mut words = line.split_whitespace();
        while let Some(word) = words.next() {
            match word {
                "machine" => entries.push(Entry {
                    machine: words.next().map(str::to_owned),
                    ..Entry::default()
                }),
                "default" => entries.push(Entry {
                    default: true,
                    ..Entry::default()
                }),
                "login" | "password" | "account" => {
                    let value = words.next().map(str::to_owned);
                    if let Some(e) = entries.last_mut() {
                        match word {
                            "login" => e.login = value,
                            "password" => e.password = value,
                            _ => {}
                        }
                    }
                }
                "macdef" => {
                    // The macro runs to the next empty line.
                    for l in lines.by_ref() {
                        if l.trim().is_empty() {
                            break;
                        }
                    }
                    break;
                }
                _ => {}
            }
        }
    }
    let fits = |e: &&Entry| e.login.as_deref().is_none_or(|l| l == login) && e.password.is_some();
    entries
        .iter()
        .filter(|e| {
            e.machine
                .as_deref()
                .is_some_and(|m| m.eq_ignore_ascii_case(host))
        })
        .find(fits)
        .or_else(|| entries.iter().filter(|e| e.default).find(fits))
        .and_then(|e| e.password.clone())
}

impl Account {
    /// The password, from the account's source; see [`PasswordSource`].
    /// `.netrc` is looked up by the URL's host and user; the prompt
    /// appears only when standard input is a terminal.
    pub fn password(&self) -> Result<String, PasswordError> {
        match &self.password {
            PasswordSource::Command(cmd) => password_from_command(cmd),
            PasswordSource::TokenCommand(cmd) => {
                let token = first_line_of(cmd, "token command")?;
                if token.is_empty() {
                    return Err(PasswordError::Command(format!(
                        "the token command `{cmd}` printed no token"
                    )));
                }
                Ok(token)
            }
            PasswordSource::OAuth2(settings) => crate::oauth2::access_token(settings)
                .map_err(|e| PasswordError::OAuth2(self.name.clone(), e)),
            PasswordSource::Env(var) => std::env::var(var).map_err(|_| {
                PasswordError::Missing(format!(
                    "{}: the environment variable {var} is not set",
                    self.name
                ))
            }),
            PasswordSource::NetrcOrPrompt => {
                let host = self.url.host.to_string();
                let user = self.url.user.as_deref().unwrap_or("");
                if let Some(path) = self.netrc.clone().or_else(netrc_path) {
                    if let Ok(text) = std::fs::read_to_string(&path) {
                        if let Some(pw) = netrc_lookup(&text, &host, user) {
                            return Ok(pw);
                        }
                    }
                }
                if io::stdin().is_terminal() {
                    return rpassword::prompt_password(format!("Password for {user}@{host}: "))
                        .map_err(|e| {
                            PasswordError::Missing(format!("cannot read the password: {e}"))
                        });
                }
                Err(PasswordError::Missing(format!(
                    "{}: no password: set password_command or password_env, add {user}@{host} to .netrc, or run on a terminal",
                    self.name
                )))
            }
        }
    }

    /// The journal's name of the account and its former names.
    pub fn journal_names(&self) -> (String, Vec<String>) {
        match &self.journal_account {
            Some(name) => (name.clone(), Vec::new()),
            None => (self.url.account_id(), self.url.former_account_ids()),
        }
    }

    /// Opens the account's sink (the journal's lock taken).
    pub fn open_sink(&self) -> io::Result<Delivery> {
        let (account, former) = self.journal_names();
        let state = || {
            self.state_dir
                .clone()
                .or_else(crate::deliver::default_state_dir)
                .ok_or_else(|| io::Error::other("no state directory: set state_dir or HOME"))
        };
        let delivery = match &self.destination {
            Destination::Maildir(dir) => Delivery::Maildir(
                MaildirSink::open_with_former(dir, &account, &former)
                    .map_err(|e| with_path(e, dir))?
                    .with_line_ends(self.line_ends),
            ),
            Destination::Mbox(file) => Delivery::Mbox(Journaled::open(
                Mbox::new(file).with_lock_timeout(self.lock_timeout),
                &state()?,
                &account,
                &former,
            )?),
            Destination::Mda(cmd) => Delivery::Mda(Journaled::open(
                Mda::new(cmd).with_timeout(self.mda_timeout),
                &state()?,
                &account,
                &former,
            )?),
            Destination::Lmtp(addr, rcpt) => Delivery::Lmtp(Journaled::open(
                Lmtp::new(addr.clone(), rcpt.clone()),
                &state()?,
                &account,
                &former,
            )?),
        };
        Ok(if self.trace_headers {
            let server = self.url.host.to_string();
            Delivery::Traced(Box::new(Traced::new(delivery, &server, &account)))
        } else {
            delivery
        })
    }
}

fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCOUNT: &str =
        "[account.a]\nurl = \"pop://u@h\"\nmaildir = \"/tmp/m\"\npassword_env = \"P\"\n";

    #[test]
    fn the_daemon_table_gives_interval_concurrency_and_cap() {
        let text = format!(
            "[daemon]\ninterval = \"5m\"\nconcurrency = 2\nmax_backoff = \"2h\"\n\n{ACCOUNT}"
        );
        let (accounts, daemon) = Config::parse_all(&text).unwrap();
        assert_eq!(accounts.len(), 1);
        assert_eq!(daemon.interval, Some(Duration::from_secs(300)));
        assert_eq!(daemon.concurrency, Some(2));
        assert_eq!(daemon.max_backoff, Some(Duration::from_secs(7200)));
        let (_, none) = Config::parse_all(ACCOUNT).unwrap();
        assert_eq!(none, DaemonOptions::default());
    }

    #[test]
    fn what_a_run_with_a_journal_account_stores_is_journaled_under_that_name_and_found_by_the_next()
    {
        use pop3_proto::fetch::MessageSink;
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let maildir = dir.path().join("Maildir");
        let uid = pop3_proto::types::Uid::new(bytes::Bytes::from_static(b"u1")).unwrap();
        let journal_of = |top: &Path, name: &str| {
            top.join(format!(".pop3-uidl-{}", crate::journal::account_tag(name)))
        };
        for (destination, top) in [
            (format!("mbox = {:?}", dir.path().join("mbox")), &state),
            (format!("maildir = {maildir:?}"), &maildir),
        ] {
            let text = format!(
                "[account.a]\nurl = \"pop://alice@pop.new.example\"\n{destination}\n\
                 state_dir = {state:?}\njournal_account = \"alice@pop.old.example\"\n\
                 password_env = \"P\"\n"
            );
            let account = Config::parse(&text).unwrap().remove(0);
            let mut sink = account.open_sink().unwrap();
            assert!(!sink.contains(&uid).unwrap());
            sink.begin(&uid).unwrap();
            sink.write(b"Subject: s\r\n\r\nbody\r\n").unwrap();
            sink.commit().unwrap();
            sink.sync().unwrap();
            drop(sink);
            let old = std::fs::read_to_string(journal_of(top, "alice@pop.old.example")).unwrap();
            assert!(old.lines().any(|l| l == "u1"), "{destination}: {old:?}");
            assert!(
                !journal_of(top, "alice@pop.new.example").exists(),
                "{destination}: nothing under the URL's name"
            );
            let mut next = account.open_sink().unwrap();
            assert!(next.contains(&uid).unwrap(), "{destination}");
            drop(next);
            // As documented: the journal stays under that name, so a run
            // without it (the URL's name) does not know the message.
            let unnamed = text.replace("journal_account = \"alice@pop.old.example\"\n", "");
            let mut other = Config::parse(&unnamed)
                .unwrap()
                .remove(0)
                .open_sink()
                .unwrap();
            assert!(!other.contains(&uid).unwrap(), "{destination}");
        }
    }

    #[test]
    fn a_bad_daemon_key_names_its_line_and_key() {
        let e = Config::parse_all(&format!("{ACCOUNT}\n[daemon]\ninterval = \"5 minutes\"\n"))
            .unwrap_err();
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(7), Some("daemon.interval"))
        );
        assert!(e.message.contains("not a duration"), "{e}");
        let e = Config::parse_all("[daemon]\nconcurrency = 0\n").unwrap_err();
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(2), Some("daemon.concurrency"))
        );
        let e = Config::parse_all("[daemon]\nintervl = \"5m\"\n").unwrap_err();
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(2), Some("daemon.intervl"))
        );
    }
}
