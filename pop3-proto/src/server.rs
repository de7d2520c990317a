//! The server session machine.
//!
//! [`Server`] implements the POP3 server side of one connection: the
//! AUTHORIZATION, TRANSACTION and UPDATE states of RFC 1939, CAPA, PIPELINING
//! and the response codes of RFC 2449, STLS (RFC 2595), AUTH with SASL
//! (RFC 5034), UTF8 and LANG (RFC 6856). It does no I/O: bytes, time and the
//! store's answers come in through `handle_*` calls, and everything it wants
//! done leaves as an [`Action`], drained with [`Server::poll_action`].
//!
//! What the machine cannot know itself it asks the application for, as
//! [`StoreRequest`]s inside [`Action::Event`]: check these credentials, open
//! and lock this maildrop, give me this message chunk by chunk, commit these
//! deletions, release the lock. Each request gets exactly one
//! [`StoreReply`], passed back with [`Server::handle_store`].
//! [`StoreDriver`] executes requests against any
//! [`Store`](crate::store::Store), so adapters need not repeat that dispatch.
//!
//! # The run loop
//!
//! ```text
//! let config = Arc::new(ServerConfig::for_store(&*store));   // once, shared
//! let ctx = ConnectionContext::new(random_u64(), implicit_tls, tls_config.is_some());
//! let mut server = Server::new(config, now(), ctx);    // queues the greeting
//! let mut driver = StoreDriver::new(store.clone());
//! loop {
//!     while let Some(action) = server.poll_action() {   // drain after every handle_*
//!         match action {
//!             Action::Send(t) => write_all(&t.bytes),   // in order
//!             Action::Event(req) => {                    // one request at a time
//!                 let reply = driver.execute(req).await;
//!                 server.handle_store(now(), reply);
//!             }
//!             Action::StartTls => { flush(); discard_unread_input(); handshake();
//!                                   server.handle_tls_established(now()); }
//!             Action::Close => { flush(); return; }
//!             _ => {}
//!         }
//!     }
//!     // wait for input (only if server.wants_input()) or for server.poll_timeout()
//!     match wait_for(input_or_deadline) {
//!         Input(bytes) => { let n = server.handle_input(now(), &bytes); keep(&bytes[n..]); }
//!         Eof => server.handle_eof(now()),           // half-closed: still replies
//!         ReadError | WriteError => server.handle_disconnect(now()),
//!         Deadline => server.handle_timeout(now()),
//!     }
//! }
//! ```
//!
//! A whole session against the in-memory store, with a simulated clock and
//! a store whose futures are ready at once (a real adapter awaits them):
//!
//! ```
//! # #[cfg(feature = "std")] {
//! use std::sync::Arc;
//! use std::task::{Context, Poll, Waker};
//! use pop3_proto::server::{ConnectionContext, Server, ServerConfig};
//! use pop3_proto::session::Action;
//! use pop3_proto::store::{MemoryStore, StoreDriver};
//! use pop3_proto::time::Instant;
//!
//! fn ready<F: std::future::Future>(f: F) -> F::Output {
//!     let mut f = std::pin::pin!(f);
//!     match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
//!         Poll::Ready(v) => v,
//!         Poll::Pending => unreachable!("MemoryStore answers at once"),
//!     }
//! }
//!
//! let store = MemoryStore::new();
//! store.add_user("alice", "secret");
//! store.add_message("alice", "Subject: hi\r\n\r\n.dot\r\n");
//! let config = Arc::new(ServerConfig::for_store(&store).allow_plaintext_auth(true));
//! let now = Instant::ZERO;
//! let mut server = Server::new(config, now, ConnectionContext::new(42, false, false));
//! let mut driver = StoreDriver::new(Arc::new(store.clone()));
//!
//! let mut input: &[u8] = b"USER alice\r\nPASS secret\r\nRETR 1\r\nDELE 1\r\nQUIT\r\n";
//! let mut output = Vec::new();
//! let mut closed = false;
//! while !closed {
//!     while let Some(action) = server.poll_action() {
//!         match action {
//!             Action::Send(t) => output.extend_from_slice(&t.bytes),
//!             Action::Event(request) => {
//!                 let reply = ready(driver.execute(request));
//!                 server.handle_store(now, reply);
//!             }
//!             Action::Close => closed = true,
//!             _ => {}
//!         }
//!     }
//!     if !closed && server.wants_input() {
//!         let used = server.handle_input(now, input);
//!         input = &input[used..];
//!     }
//! }
//! let output = String::from_utf8(output).unwrap();
//! assert!(output.ends_with(
//!     "+OK 21 octets\r\nSubject: hi\r\n\r\n..dot\r\n.\r\n\
//!      +OK Message 1 deleted.\r\n+OK Logging out.\r\n"
//! ));
//! assert_eq!(store.message_count("alice"), 0);
//! # }
//! ```
//!
//! The caller's rules:
//!
//! 1. Drain [`Server::poll_action`] until it returns `None` after *every*
//!    `handle_*` call, and perform the actions in the order they come.
//!    The machine produces replies lazily while it is drained (one command
//!    at a time), so draining is also what moves pipelined commands along.
//! 2. Answer each [`StoreRequest`] with exactly one [`Server::handle_store`]
//!    call before draining further. Requests come only after the `Send`s
//!    queued before them, so a caller that writes as it drains writes each
//!    body chunk before it reads the next one from the store.
//! 3. [`Server::handle_input`] returns how many octets it took; keep the rest
//!    and offer it again later. Read from the peer only while
//!    [`Server::wants_input`] is true: while a reply or a store request is
//!    outstanding the machine takes at most one line's worth of pipelined
//!    input (the current line limit), so memory stays bounded.
//! 4. On [`Action::StartTls`]: flush what was sent, discard every octet read
//!    from the peer but not consumed by the machine (it was sent in
//!    plaintext before the handshake and must never be executed), run the
//!    handshake, then call [`Server::handle_tls_established`]. If the
//!    handshake fails, drop the connection.
//! 5. Call [`Server::handle_timeout`] when [`Server::poll_timeout`] passes
//!    (ask again after every `handle_*`: the deadline moves), also while
//!    writes are pending. A session deadline that passes while replies are
//!    still unwritten ends the session only once they are out; a loop of
//!    its own should cut the connection then ([`Connection`] does).
//! 6. On [`Action::Close`], flush and close. If the connection fails, simply
//!    dropping the machine and the store driver is enough: dropping an open
//!    maildrop releases its lock and deletes nothing.
//!
//! # Choices
//!
//! * USER/PASS and the SASL mechanisms PLAIN and LOGIN send the password in
//!   clear (OAUTHBEARER and XOAUTH2 a bearer token). They are refused, and
//!   neither `USER` nor those mechanisms are advertised, until TLS is
//!   active, unless [`ServerConfig::allow_plaintext_auth`] says otherwise
//!   (RFC 2595 §2.3, RFC 5034 §4). APOP and CRAM-MD5 do not reveal the
//!   secret and are available whenever the store can hand out shared
//!   secrets; SCRAM-SHA-1 and SCRAM-SHA-256 whenever it can hand out SCRAM
//!   keys ([`StoreRequest::ScramKeys`]: the PBKDF2, if any, runs in the
//!   store, never on the machine); SCRAM-SHA-256-PLUS only over TLS 1.3
//!   with the channel binding ([`TlsInfo`]), and advertised only when
//!   [`ServerConfig::advertise_channel_binding`] says so (clients that
//!   can bind ask for it by name); EXTERNAL only with a verified
//!   client certificate that [`ServerConfig::external_identity`] maps to a
//!   user. The SASL capability stays advertised after login.
//! * RFC 1939 §13 advises against allowing both PASS and APOP for one user:
//!   which form a user may use is the store's decision (a store answers
//!   [`StoreRequest::SharedSecret`] with `None` for a user who must use a
//!   password, and refuses passwords of a user restricted to APOP). The
//!   machine offers what the store's [`CredentialForms`] say it can check.
//! * `USER` always answers `+OK`, so that user names cannot be probed.
//! * A failed authentication is answered after
//!   [`ServerConfig::auth_failure_delay`], using the machine's own timer, and
//!   counts as a bad command; failure texts never contain the words some
//!   clients read as "busy" (lock, wait, in use, delay).
//! * Once the store has been asked about the credentials (a password or
//!   a token checked, SCRAM keys fetched), the exchange can only end as a
//!   login or a failed login: a SASL cancel (`*`) or a malformed answer
//!   after that point is a failed authentication, delayed and counted like
//!   a wrong password, so that a client cannot learn a verdict and walk
//!   away for free.
//! * Login attempts (each `PASS` after `USER`, each `APOP`, each `AUTH`
//!   that starts a mechanism, whatever becomes of it) are counted per
//!   connection; past [`ServerConfig::max_login_attempts`] the machine
//!   answers `-ERR Too many login attempts.` and closes.
//! * Bad commands (unknown, malformed, wrong state, over-long, failed
//!   authentication) are counted; at the configured limit (3 before login,
//!   20 after) the machine answers, adds `-ERR Too many bad commands.` and
//!   closes. A reference to a missing or deleted message is not a bad command.
//! * The autologout timer is at least 10 minutes (RFC 1939 §3); it restarts on
//!   every input and every store answer. On expiry the machine sends
//!   `-ERR Autologout; idle for too long.` (unless a body is being sent),
//!   releases the maildrop and closes: no UPDATE.
//! * The timers that end a session (time to log in, silence before login,
//!   autologout) hold whatever is pending: [`Connection`] keeps them running
//!   while replies wait to be written, and a deadline that passes before
//!   they are out cuts the connection (no last line, no UPDATE), so a client
//!   that pipelines many commands and reads the replies slowly cannot hold
//!   its session open by the slow progress of the writes.
//! * `EXPIRE 0` (see [`ServerConfig::expire`]): messages retrieved whole with
//!   RETR are removed at QUIT as if deleted (RSET does not bring them back).
//!   Other EXPIRE values are only advertised: enforcing them is the store's
//!   policy, for which the commit tells it which messages the session
//!   retrieved in full ([`Update::retrieved`]; TOP does not count). `LOGIN-DELAY` is enforced by the store answering
//!   [`StoreRequest::Open`] with [`StoreError::LoginDelay`].
//! * RETR first asks the store for the message and sends `+OK` only once the
//!   store could open it; a store failure before the status line is an
//!   ordinary `-ERR`, a failure in the middle of a body closes the
//!   connection (the body cannot be retracted).
//! * End of input is processed after the commands already received: a client
//!   that writes `QUIT` and closes its side still gets its UPDATE.
//!
//! # Limits and defaults
//!
//! Every bound a client can run into, where it is set, and what happens at
//! it. The machine's are in [`ServerConfig`], the connection's in
//! [`ServerOptions`] (applied by [`Connection`] and the adapters).
//!
//! | limit | default | set with | at the limit |
//! |---|---|---|---|
//! | command line | 8 KiB (255 strict) | [`ServerConfig::limits`] | `-ERR Command line too long.`, a bad command; the rest of the line is discarded |
//! | SASL response line | 64 KiB | [`ServerConfig::limits`] | `-ERR Command line too long.`: the exchange ends, a bad command |
//! | pipelined input held while a reply is pending | one command line | (the line limit) | the machine stops taking input: TCP backpressure |
//! | bad commands | 3 before login, 20 after | [`ServerConfig::max_bad_commands`] | `-ERR Too many bad commands.`, closed, no UPDATE |
//! | failed login | answered after 1 s | [`ServerConfig::auth_failure_delay`] | counts as a bad command |
//! | login attempts (PASS, APOP, AUTH of any mechanism, cancelled or not) | 5 per connection | [`ServerConfig::max_login_attempts`] | the next one gets `-ERR Too many login attempts.`, closed |
//! | silence before login | 60 s | [`ServerConfig::login_idle_timeout`] | `-ERR Disconnected for inactivity before login.`, closed; cut if replies are still unwritten |
//! | time to log in | 3 min from the greeting, whatever is pending | [`ServerConfig::login_timeout`] | `-ERR Disconnected: no login in time.`, closed; cut if replies are still unwritten |
//! | silence after login (autologout) | 10 min (the RFC 1939 minimum) | [`ServerConfig::autologout`] | `-ERR Autologout; idle for too long.`, closed, no UPDATE; cut if replies are still unwritten |
//! | sessions at once | 8,192 | [`ServerOptions::max_connections`] | `-ERR [SYS/TEMP] Too many connections; try again later.`, closed at once |
//! | sessions from one address (IPv6: one /64) | 32 | [`ServerOptions::max_connections_per_address`] | `-ERR [SYS/TEMP] Too many connections from your address; try again later.`, closed at once |
//! | a write making no progress | 60 s | [`ServerOptions::write_stall_timeout`] | cut, no UPDATE (a write that does progress is still bound by the three timers above) |
//! | TLS handshake | 30 s | [`ServerOptions::tls_handshake_timeout`] | cut |
//! | a store request | 2 min | [`ServerOptions::store_timeout`] | `-ERR [SYS/TEMP]` (or a body cut short), closed, no UPDATE; a commit under way still runs to its end ([commits](crate::store#commits)) |
//! | after a shutdown request | 30 s | [`ServerOptions::shutdown_grace`] | cut, no UPDATE (a commit under way completes) |
//! | greeting and capability lines | 512 octets with CRLF | (fixed, RFC 2449 §4) | configured texts are clipped at a character boundary |
//! | message octets read ahead of the wire | 256 KiB per session sending a message, with a blocking store run through an [`OffloadStore`](crate::store::OffloadStore) | [`Offload::READ_AHEAD`](crate::store::Offload::READ_AHEAD) | no more is read until they are sent |
//! | descriptors a session holds | its socket, and the store's: with a blocking store run through an [`OffloadStore`](crate::store::OffloadStore), the maildrop's own (the Maildir store: its lock file) and at most one message reader (a message read to its end holds none, whether asked for or [read ahead](crate::store::OffloadMaildrop)), two for a moment while the one before is closed; a directory or cache file while a call scans or writes it. The `pop3d` examples plan 5 per session | the connection cap, which the examples size from the descriptor limit | sessions over the cap are refused, so the process does not run out of descriptors |

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use bytes::{Buf, Bytes, BytesMut};
use core::fmt::Write as _;
use core::time::Duration;

use crate::command::{ApopDigest, Command, CommandError, LangRequest, SaslResponse, Username};
use crate::dot::{BodyEncoder, HeaderLine};
use crate::line::{Limits, LineError, find_line};
use crate::response::Expire;
use crate::scram::{DeploymentSecret, ScramHash, ScramKeys};
use crate::session::{Action, Transmit};
pub use crate::store::StoreDriver;
use crate::store::{CredentialForms, MessageInfo, StoreError, Update};
use crate::time::Instant;

use crate::__tracing as tracing;
use crate::types::{ApopTimestamp, MessageNumber, Secret};

mod admission;
mod connection;
mod sasl;

pub use admission::{AddressKey, Admission, Refusal};
pub use connection::{Connection, ServerOptions, Want};
pub use sasl::SaslMechanism;
use sasl::{SaslExchange, SaslOutcome};

/// The default [`ServerConfig::login_timeout`].
pub const DEFAULT_LOGIN_TIMEOUT: Duration = Duration::from_secs(180);
/// The default [`ServerConfig::login_idle_timeout`].
pub const DEFAULT_LOGIN_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The default [`ServerConfig::max_login_attempts`].
pub const DEFAULT_MAX_LOGIN_ATTEMPTS: u32 = 5;

/// The shortest autologout RFC 1939 §3 allows.
pub const MIN_AUTOLOGOUT: Duration = Duration::from_secs(10 * 60);

/// How the server behaves: what it advertises and allows, its limits and timers.
///
/// Built with [`ServerConfig::default`] and the builder-style setters; shared
/// between connections in an `Arc`.
///
/// ```
/// use pop3_proto::server::ServerConfig;
/// use pop3_proto::store::CredentialForms;
///
/// let config = ServerConfig::default()
///     .hostname("mail.example.org")
///     .credential_forms(CredentialForms::new(true, false))
///     .max_bad_commands(3, 20);
/// assert_eq!(config.get_hostname(), "mail.example.org");
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
#[must_use = "a configuration does nothing until it is used"]
pub struct ServerConfig {
    hostname: String,
    greeting: String,
    implementation: Option<String>,
    credential_forms: CredentialForms,
    allow_plaintext_auth: bool,
    advertise_channel_binding: bool,
    apop: bool,
    sasl: Vec<SaslMechanism>,
    max_bad_before_login: u32,
    max_bad_after_login: u32,
    max_login_attempts: u32,
    auth_failure_delay: Duration,
    external_identity: Option<ExternalIdentity>,
    deployment_secret: Option<DeploymentSecret>,
    autologout: Duration,
    login_timeout: Duration,
    login_idle_timeout: Duration,
    login_delay: Option<u32>,
    expire: Option<Expire>,
    pipelining: bool,
    utf8: bool,
    lang: bool,
    limits: Limits,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            hostname: String::from("localhost"),
            greeting: String::from("POP3 server ready."),
            implementation: None,
            credential_forms: CredentialForms::new(true, false),
            allow_plaintext_auth: false,
            advertise_channel_binding: false,
            apop: true,
            sasl: alloc::vec![
                SaslMechanism::Plain,
                SaslMechanism::Login,
                SaslMechanism::CramMd5,
                SaslMechanism::ScramSha1,
                SaslMechanism::ScramSha256,
                SaslMechanism::ScramSha256Plus,
                SaslMechanism::OAuthBearer,
                SaslMechanism::XOAuth2,
                SaslMechanism::External,
            ],
            max_bad_before_login: 3,
            max_bad_after_login: 20,
            max_login_attempts: DEFAULT_MAX_LOGIN_ATTEMPTS,
            auth_failure_delay: Duration::from_secs(1),
            external_identity: None,
            deployment_secret: None,
            autologout: MIN_AUTOLOGOUT,
            login_timeout: DEFAULT_LOGIN_TIMEOUT,
            login_idle_timeout: DEFAULT_LOGIN_IDLE_TIMEOUT,
            login_delay: None,
            expire: Some(Expire::Never),
            pipelining: true,
            utf8: false,
            lang: false,
            limits: Limits::lenient(),
        }
    }
}

impl ServerConfig {
    /// The default configuration with `store`'s credential forms (so that
    /// USER, APOP and SASL are offered exactly when the store can check them).
    pub fn for_store<S: crate::store::Store>(store: &S) -> Self {
        ServerConfig::default().credential_forms(store.credential_forms())
    }

    /// The host name used in the APOP timestamp and CRAM-MD5 challenges
    /// (default `localhost`).
    pub fn hostname(mut self, hostname: impl Into<String>) -> Self {
        self.hostname = hostname.into();
        self
    }

    /// The greeting text after `+OK` (default `POP3 server ready.`); keep it
    /// short: the greeting line, timestamp included, must fit in 512 octets.
    pub fn greeting(mut self, text: impl Into<String>) -> Self {
        self.greeting = text.into();
        self
    }

    /// The `IMPLEMENTATION` capability text (default: not advertised).
    pub fn implementation(mut self, text: Option<String>) -> Self {
        self.implementation = text;
        self
    }

    /// What the store can check (set it from
    /// [`Store::credential_forms`](crate::store::Store::credential_forms)):
    /// decides whether USER, APOP and each SASL mechanism are offered.
    /// Default: passwords only.
    pub fn credential_forms(mut self, forms: CredentialForms) -> Self {
        self.credential_forms = forms;
        self
    }

    /// Whether USER/PASS and the plaintext SASL mechanisms (PLAIN, LOGIN)
    /// are allowed before TLS is active. Default `false` (RFC 5034 §4).
    pub fn allow_plaintext_auth(mut self, allow: bool) -> Self {
        self.allow_plaintext_auth = allow;
        self
    }

    /// Whether SCRAM-SHA-256-PLUS is advertised in CAPA and the AUTH list
    /// (default `false`).
    ///
    /// The mechanism is accepted either way, over TLS 1.3 with the
    /// channel binding ([`TlsInfo::tls_exporter`]): a client that can bind
    /// asks for it by name (`AUTH SCRAM-SHA-256-PLUS`; in a POP URL,
    /// `;AUTH=SCRAM-SHA-256-PLUS`). Advertising it makes clients that pick
    /// the strongest mechanism offered choose it, and some cannot carry it
    /// out: GNU SASL (mutt, neomutt) takes -PLUS, finds no `tls-exporter`
    /// binding, cancels and gives up. Set it where every client handles
    /// -PLUS. While it is not advertised, a client that could bind says `y`
    /// in its SCRAM-SHA-256 exchange and is accepted (RFC 5802 §6: `y` is a
    /// downgrade only when the server advertised -PLUS).
    pub fn advertise_channel_binding(mut self, advertise: bool) -> Self {
        self.advertise_channel_binding = advertise;
        self
    }

    /// Whether APOP is offered (a timestamp in the greeting) when the store
    /// has shared secrets. Default `true`.
    pub fn apop(mut self, enabled: bool) -> Self {
        self.apop = enabled;
        self
    }

    /// The SASL mechanisms to offer, in order of preference, each only when
    /// the store can check it (default PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-1,
    /// SCRAM-SHA-256, SCRAM-SHA-256-PLUS, OAUTHBEARER, XOAUTH2, EXTERNAL).
    pub fn sasl_mechanisms(mut self, mechanisms: Vec<SaslMechanism>) -> Self {
        self.sasl = mechanisms;
        self
    }

    /// How many bad commands close the connection, before and after login
    /// (default 3 and 20). Zero means no limit.
    pub fn max_bad_commands(mut self, before_login: u32, after_login: u32) -> Self {
        self.max_bad_before_login = before_login;
        self.max_bad_after_login = after_login;
        self
    }

    /// How many login attempts one connection may make (default
    /// [`DEFAULT_MAX_LOGIN_ATTEMPTS`], 5): each `PASS` after `USER`, each
    /// `APOP` and each `AUTH` that starts a mechanism counts, whether it
    /// succeeds, fails or is cancelled. The attempt after the last allowed
    /// one is answered `-ERR Too many login attempts.` and the connection
    /// closes. Zero means no limit (the bad-command limit still applies to
    /// failed logins).
    pub fn max_login_attempts(mut self, attempts: u32) -> Self {
        self.max_login_attempts = attempts;
        self
    }

    /// How verified TLS client certificates map to users, for EXTERNAL
    /// (default none: EXTERNAL is never offered).
    pub fn external_identity(mut self, map: Option<ExternalIdentity>) -> Self {
        self.external_identity = map;
        self
    }

    /// The deployment's secret (default none), from which the machine makes
    /// SCRAM decoy keys when a store answers [`StoreRequest::ScramKeys`]
    /// for an unknown user with `None`: the salt is then the same on every
    /// connection and shaped like a derived one (see [`DeploymentSecret`]).
    /// Without it such decoys change with every connection, which tells an
    /// attacker the user does not exist. The stores of this crate and of
    /// `pop3-blocking` answer unknown users with decoys of their own; give
    /// them and the configuration the same secret.
    pub fn deployment_secret(mut self, secret: Option<DeploymentSecret>) -> Self {
        self.deployment_secret = secret;
        self
    }

    /// How long a failed authentication waits before its `-ERR` (default 1 s).
    pub fn auth_failure_delay(mut self, delay: Duration) -> Self {
        self.auth_failure_delay = delay;
        self
    }

    /// The autologout timer, clamped to at least [`MIN_AUTOLOGOUT`]
    /// (10 minutes, RFC 1939 §3). Default 10 minutes.
    pub fn autologout(mut self, timeout: Duration) -> Self {
        self.autologout = timeout.max(MIN_AUTOLOGOUT);
        self
    }

    /// How long a connection may stay in AUTHORIZATION, counted from the
    /// greeting whatever the client sends meanwhile (default 3 minutes).
    /// Without it, clients that never log in but send a command now and
    /// then could hold every connection slot. Expiry closes the
    /// connection with `-ERR`; a login the store is checking at that moment
    /// is let finish.
    pub fn login_timeout(mut self, timeout: Duration) -> Self {
        self.login_timeout = timeout;
        self
    }

    /// How long a connection may stay silent in AUTHORIZATION (default 60
    /// seconds; any octet received restarts it). Idle connections that
    /// never log in are the cheapest way to fill a server's connection
    /// slots, so they are closed well before the 10-minute autologout,
    /// which RFC 1939 sets for a session's inactivity and which applies in
    /// full once logged in (Dovecot's login processes make the same
    /// choice). Expiry closes with `-ERR`.
    pub fn login_idle_timeout(mut self, timeout: Duration) -> Self {
        self.login_idle_timeout = timeout;
        self
    }

    /// Sets the autologout timer without the RFC 1939 minimum: for tests and
    /// for deployments that knowingly break the RFC (a server under attack).
    pub fn autologout_unchecked(mut self, timeout: Duration) -> Self {
        self.autologout = timeout;
        self
    }

    /// Advertises `LOGIN-DELAY seconds` (default: not advertised). The store
    /// enforces it by answering `Open` with [`StoreError::LoginDelay`].
    pub fn login_delay(mut self, seconds: Option<u32>) -> Self {
        self.login_delay = seconds;
        self
    }

    /// The `EXPIRE` policy to advertise (default `EXPIRE NEVER`; `None`
    /// advertises nothing). With `Expire::Days(0)` the machine removes
    /// messages retrieved with RETR at QUIT. `Expire::Days(n)` with `n > 0`
    /// is the store's to enforce (see
    /// [retention policies](crate::store#retention-policies-expire-and-login-delay)):
    /// advertise it only with a store that does.
    pub fn expire(mut self, policy: Option<Expire>) -> Self {
        self.expire = policy;
        self
    }

    /// Whether `PIPELINING` is advertised (default `true`). Pipelined
    /// commands are processed in order either way.
    pub fn pipelining(mut self, advertise: bool) -> Self {
        self.pipelining = advertise;
        self
    }

    /// Whether `UTF8 USER` is advertised and the UTF8 command accepted
    /// (default `false`). The machine sends messages as the store has them
    /// in either mode; it makes no surrogate messages.
    pub fn utf8(mut self, enabled: bool) -> Self {
        self.utf8 = enabled;
        self
    }

    /// Whether `LANG` is advertised and accepted (default `false`); the only
    /// language is `en`.
    pub fn lang(mut self, enabled: bool) -> Self {
        self.lang = enabled;
        self
    }

    /// The line limits (default [`Limits::lenient`]): `command_line` applies
    /// to commands, `sasl_line` to SASL responses. Also the bound on pipelined
    /// input buffered while the machine is busy.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The host name.
    pub fn get_hostname(&self) -> &str {
        &self.hostname
    }

    /// The autologout timer.
    pub fn get_autologout(&self) -> Duration {
        self.autologout
    }

    /// The line limits.
    pub fn get_limits(&self) -> &Limits {
        &self.limits
    }

    /// The `LOGIN-DELAY` advertised, in seconds.
    pub fn get_login_delay(&self) -> Option<u32> {
        self.login_delay
    }

    /// The `EXPIRE` policy advertised.
    ///
    /// ```
    /// use pop3_proto::response::Expire;
    /// use pop3_proto::server::ServerConfig;
    /// assert_eq!(ServerConfig::default().get_expire(), Some(Expire::Never));
    /// ```
    pub fn get_expire(&self) -> Option<Expire> {
        self.expire
    }
}

/// What the TLS layer established, handed to the machine by the adapter
/// after a handshake ([`ConnectionContext::tls_info`] for implicit TLS,
/// [`Server::handle_tls_info`] after STLS).
///
/// ```
/// use pop3_proto::server::TlsInfo;
/// let info = TlsInfo::default().with_client_certificate(vec![0x30, 0x82]);
/// assert!(info.client_certificate.is_some() && info.tls_exporter.is_none());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
#[must_use = "a configuration does nothing until it is used"]
pub struct TlsInfo {
    /// The client's certificate (DER of the end-entity certificate), when
    /// the TLS layer verified one: EXTERNAL.
    pub client_certificate: Option<Bytes>,
    /// The `tls-exporter` channel binding (RFC 9266: the exporter with
    /// label "EXPORTER-Channel-Binding", an empty context, 32 octets), on
    /// TLS 1.3 only: SCRAM-SHA-256-PLUS.
    pub tls_exporter: Option<[u8; 32]>,
}

impl TlsInfo {
    /// With the verified client certificate's DER.
    pub fn with_client_certificate(mut self, der: impl Into<Bytes>) -> Self {
        self.client_certificate = Some(der.into());
        self
    }

    /// With the `tls-exporter` channel binding.
    pub fn with_tls_exporter(mut self, value: [u8; 32]) -> Self {
        self.tls_exporter = Some(value);
        self
    }
}

/// Maps a verified client certificate (DER) to the user it stands for, for
/// EXTERNAL ([`ServerConfig::external_identity`]). It runs on the machine:
/// keep it a lookup.
///
/// ```
/// use pop3_proto::server::ExternalIdentity;
/// let map = ExternalIdentity::new(|der| (der == b"alice's cert").then(|| "alice".to_string()));
/// assert_eq!(map.identify(b"alice's cert").as_deref(), Some("alice"));
/// ```
#[derive(Clone)]
pub struct ExternalIdentity(Arc<IdentityFn>);

type IdentityFn = dyn Fn(&[u8]) -> Option<String> + Send + Sync;

impl ExternalIdentity {
    /// A mapping calling `f(der)`.
    pub fn new(f: impl Fn(&[u8]) -> Option<String> + Send + Sync + 'static) -> Self {
        ExternalIdentity(Arc::new(f))
    }

    /// The user `der` stands for, if any.
    pub fn identify(&self, der: &[u8]) -> Option<String> {
        (self.0)(der)
    }
}

impl core::fmt::Debug for ExternalIdentity {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("ExternalIdentity")
    }
}

/// What the adapter knows about one connection when it starts.
#[derive(Debug, Clone)]
#[non_exhaustive]
#[must_use = "a configuration does nothing until it is used"]
pub struct ConnectionContext {
    /// TLS is already active (implicit TLS, port 995).
    pub tls_active: bool,
    /// STLS can be offered (the adapter has a TLS configuration).
    pub tls_available: bool,
    /// A fresh random number for this connection (APOP timestamp, CRAM-MD5
    /// challenges). The machine has no source of randomness of its own.
    pub random: u64,
    /// Secret random octets for this connection, from a secure generator:
    /// the SCRAM server nonces are derived from them (see
    /// [`ConnectionContext::seed`]). Without it they come from `random`
    /// alone, 64 bits of entropy.
    pub seed: Option<[u8; 32]>,
    /// What implicit TLS established (client certificate, channel binding).
    pub tls: TlsInfo,
    /// The client's address, named in the log line of each failed login.
    pub peer: Option<core::net::SocketAddr>,
}

impl ConnectionContext {
    /// A connection with this random number, TLS already active or not
    /// (implicit TLS), and STLS available or not (the adapter has a TLS
    /// configuration).
    pub fn new(random: u64, tls_active: bool, tls_available: bool) -> Self {
        ConnectionContext {
            tls_active,
            tls_available,
            random,
            seed: None,
            tls: TlsInfo::default(),
            peer: None,
        }
    }

    /// Sets the client's address (see [`ConnectionContext::peer`]).
    pub fn peer(mut self, peer: Option<core::net::SocketAddr>) -> Self {
        self.peer = peer;
        self
    }

    /// Sets the secret seed of the SCRAM server nonces: 32 octets from a
    /// secure generator (the adapters draw them for every connection).
    pub fn seed(mut self, seed: [u8; 32]) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Sets what implicit TLS established.
    pub fn tls_info(mut self, info: TlsInfo) -> Self {
        self.tls = info;
        self
    }

    /// Sets whether TLS is already active (implicit TLS).
    pub fn tls_active(mut self, active: bool) -> Self {
        self.tls_active = active;
        self
    }

    /// Sets whether STLS can be offered.
    pub fn tls_available(mut self, available: bool) -> Self {
        self.tls_available = available;
        self
    }
}

/// A request to the store, inside [`Action::Event`]. Answer each with one
/// [`StoreReply`] of the matching kind.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreRequest {
    /// Is this the user's password? Answer [`StoreReply::Verified`].
    VerifyPassword {
        /// The user name.
        user: Username,
        /// The password.
        password: Secret,
    },
    /// The user's shared secret (APOP, CRAM-MD5). Answer [`StoreReply::SharedSecret`].
    SharedSecret {
        /// The user name.
        user: Username,
    },
    /// Is this OAuth 2.0 bearer token good for the user (OAUTHBEARER,
    /// XOAUTH2)? Answer [`StoreReply::TokenVerified`].
    VerifyToken {
        /// The user name.
        user: Username,
        /// The bearer token.
        token: Secret,
    },
    /// Whom does this OAuth 2.0 bearer token let in? Sent for an
    /// OAUTHBEARER message without an authorization identity (RFC 7628
    /// §3.1). Answer [`StoreReply::TokenOwner`].
    TokenOwner {
        /// The bearer token.
        token: Secret,
    },
    /// The user's SCRAM keys for this hash (SCRAM-SHA-1, SCRAM-SHA-256).
    /// Answer [`StoreReply::ScramKeys`]. A store that derives them from a
    /// plaintext password runs the PBKDF2 here, in its own call.
    ScramKeys {
        /// The user name.
        user: Username,
        /// The mechanism's hash.
        hash: ScramHash,
    },
    /// Open and lock the authenticated user's maildrop. Answer [`StoreReply::Opened`].
    Open {
        /// The user name.
        user: Username,
    },
    /// Start reading the message at this zero-based index. Answer [`StoreReply::Reading`].
    Read {
        /// Zero-based index in the listing.
        index: usize,
    },
    /// The next chunk of the message being read. Answer [`StoreReply::Chunk`].
    NextChunk,
    /// UPDATE: remove the messages of [`Update::deleted`] (zero-based
    /// indexes), take note of those of [`Update::retrieved`] (retrieved in
    /// full with RETR, for a store enforcing `EXPIRE n`) and release the
    /// lock. Runs to its end, never cancelled, and removes no message that
    /// is not listed, but those the store's own retention policy makes due
    /// ([commits](crate::store#commits)). Answer [`StoreReply::Committed`].
    Commit(Update),
    /// Release the maildrop without removing anything. Answer [`StoreReply::Released`].
    Release,
}

/// The store's answer to a [`StoreRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreReply {
    /// To `VerifyPassword`.
    Verified(Result<bool, StoreError>),
    /// To `SharedSecret`: `None` for an unknown user or one without a shared secret.
    SharedSecret(Result<Option<Secret>, StoreError>),
    /// To `VerifyToken`.
    TokenVerified(Result<bool, StoreError>),
    /// To `TokenOwner`: the user the token lets in, `None` if nobody.
    TokenOwner(Result<Option<Username>, StoreError>),
    /// To `ScramKeys`: `None` for an unknown user or one without keys for
    /// that hash.
    ScramKeys(Result<Option<ScramKeys>, StoreError>),
    /// To `Open`: the maildrop's listing.
    Opened(Result<Vec<MessageInfo>, StoreError>),
    /// To `Read`: the message can be read.
    Reading(Result<(), StoreError>),
    /// To `NextChunk`: a chunk, or `None` at the end of the message.
    Chunk(Result<Option<Bytes>, StoreError>),
    /// To `Commit`.
    Committed(Result<(), StoreError>),
    /// To `Release`.
    Released,
}

/// The session state (RFC 1939 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum State {
    /// Before authentication.
    Authorization,
    /// Authenticated, maildrop open.
    Transaction,
    /// After QUIT in TRANSACTION: deletions are being committed.
    Update,
    /// The connection is to be closed; no more actions follow.
    Closed,
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// The client sent QUIT.
    Quit,
    /// The client closed the connection (or it failed) without QUIT.
    PeerClosed,
    /// The autologout timer expired.
    Autologout,
    /// No login within [`ServerConfig::login_timeout`].
    LoginTimeout,
    /// Too many bad commands.
    TooManyBadCommands,
    /// Too many login attempts ([`ServerConfig::max_login_attempts`]).
    TooManyLoginAttempts,
    /// The store failed where the session could not go on.
    StoreFailure,
    /// The store did not answer a request in time (see
    /// [`Server::handle_store_timeout`]).
    StoreTimeout,
    /// The server shut down ([`Server::handle_shutdown`]; or the
    /// shutdown's grace ended before the client's QUIT).
    Shutdown,
}

/// Counters for the one log line per session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionSummary {
    /// The authenticated user, once logged in.
    pub user: Option<String>,
    /// Messages in the maildrop at login.
    pub messages: usize,
    /// Messages sent with RETR or TOP (each time).
    pub retrieved: u32,
    /// Octets of message bodies sent (stuffing included).
    pub retrieved_octets: u64,
    /// Messages removed in UPDATE.
    pub deleted: u32,
    /// Their size.
    pub deleted_octets: u64,
    /// Octets taken from the peer.
    pub bytes_in: u64,
    /// Octets queued for the peer.
    pub bytes_out: u64,
    /// Bad commands counted.
    pub bad_commands: u32,
    /// Login attempts made (PASS, APOP, AUTH).
    pub login_attempts: u32,
    /// The mechanism of the login that opened the maildrop (`USER` for
    /// USER/PASS, `APOP`, or the SASL mechanism's name).
    pub login_mechanism: Option<&'static str>,
    /// Logins refused (credentials that did not check out), counted by
    /// mechanism (`-` when none was under way), one entry per mechanism.
    pub failed_logins: Vec<(&'static str, u32)>,
    /// Why the session ended, once it has.
    pub close_reason: Option<CloseReason>,
    /// From the greeting to the last event the machine was told of (its
    /// end, once it has ended), to the millisecond.
    pub duration: Duration,
}

impl core::fmt::Display for SessionSummary {
    /// One log line: `user="alice" messages=3 retrieved=2/2048
    /// deleted=1/1024 in=120 out=2300 bad=0 secs=12.345 end=quit`.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match &self.user {
            Some(u) => write!(f, "user={u:?}")?,
            None => f.write_str("user=-")?,
        }
        write!(
            f,
            " messages={} retrieved={}/{} deleted={}/{} in={} out={} bad={} secs={}.{:03} end=",
            self.messages,
            self.retrieved,
            self.retrieved_octets,
            self.deleted,
            self.deleted_octets,
            self.bytes_in,
            self.bytes_out,
            self.bad_commands,
            self.duration.as_secs(),
            self.duration.subsec_millis(),
        )?;
        f.write_str(match self.close_reason {
            None => "open",
            Some(CloseReason::Quit) => "quit",
            Some(CloseReason::PeerClosed) => "peer-closed",
            Some(CloseReason::Autologout) => "autologout",
            Some(CloseReason::LoginTimeout) => "login-timeout",
            Some(CloseReason::TooManyBadCommands) => "too-many-bad-commands",
            Some(CloseReason::TooManyLoginAttempts) => "too-many-login-attempts",
            Some(CloseReason::StoreFailure) => "store-failure",
            Some(CloseReason::StoreTimeout) => "store-timeout",
            Some(CloseReason::Shutdown) => "shutdown",
        })
    }
}

/// What the machine is waiting for.
#[derive(Debug)]
enum Wait {
    /// The next command line.
    Command,
    /// The next SASL response line.
    Sasl(SaslExchange),
    /// A multi-line listing is being produced, `next` is the next index.
    Listing { kind: ListingKind, next: usize },
    /// A body whose first chunks were held (see [`Held`]) goes out, a
    /// chunk each time the output is drained.
    Backlog(Stream),
    /// A store answer.
    Store(Pending),
    /// A failed authentication's delay.
    Delay { until: Instant },
    /// The TLS handshake.
    Tls,
    /// Nothing any more.
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListingKind {
    Scan,
    Uid,
}

/// The store request outstanding.
#[derive(Debug)]
enum Pending {
    Verify {
        user: Username,
    },
    Secret {
        user: Username,
        check: SecretCheck,
    },
    Scram {
        user: Username,
        start: sasl::ScramStart,
    },
    Token {
        user: Username,
        mech: SaslMechanism,
    },
    TokenOwner {
        mech: SaslMechanism,
    },
    Open {
        user: Username,
    },
    Read {
        index: usize,
        top: Option<u64>,
    },
    Chunk(Stream),
    Commit {
        deleted: Vec<usize>,
    },
    Release,
}

/// How a shared secret is checked once the store has handed it out.
#[derive(Debug)]
enum SecretCheck {
    Apop {
        timestamp: ApopTimestamp,
        digest: ApopDigest,
    },
    CramMd5 {
        challenge: Bytes,
        digest: Secret,
    },
}

/// A body being sent.
#[derive(Debug)]
struct Stream {
    index: usize,
    encoder: BodyEncoder,
    top: bool,
    /// The status line and the first chunks, held until the header section
    /// is known to be ASCII (UTF-8 mode off on a UTF-8 maildrop).
    held: Option<Held>,
    /// Held chunks not sent yet.
    backlog: VecDeque<Bytes>,
    /// The store has no more chunks (its end came while holding).
    store_done: bool,
}

/// What RETR or TOP holds back while it reads the header section.
#[derive(Debug)]
struct Held {
    status: String,
    chunks: Vec<Bytes>,
    octets: usize,
    /// The header line being read (where the header section ends is
    /// TOP's rule too).
    line: HeaderLine,
}

/// The most a message's header section is held while it is checked for
/// non-ASCII octets; a longer one is sent as it is.
const HEADER_HOLD_LIMIT: usize = 256 * 1024;

/// How a held header section looks so far.
enum HeaderVerdict {
    /// Needs more octets.
    Open,
    /// Ended (or passed the hold limit) with ASCII only.
    Ascii,
    /// Has a non-ASCII octet.
    NonAscii,
}

impl Held {
    fn new(status: String) -> Held {
        Held {
            status,
            chunks: Vec::new(),
            octets: 0,
            line: HeaderLine::default(),
        }
    }

    /// Takes the next chunk of the message and says what is known.
    fn take(&mut self, chunk: Bytes) -> HeaderVerdict {
        let mut verdict = HeaderVerdict::Open;
        let mut rest = &chunk[..];
        loop {
            let lf = memchr::memchr(b'\n', rest);
            let part = &rest[..lf.unwrap_or(rest.len())];
            if !part.is_ascii() {
                verdict = HeaderVerdict::NonAscii;
                break;
            }
            self.line.extend(part);
            let Some(lf) = lf else {
                break;
            };
            if self.line.end() {
                verdict = HeaderVerdict::Ascii;
                break;
            }
            rest = &rest[lf + 1..];
        }
        self.octets += chunk.len();
        self.chunks.push(chunk);
        match verdict {
            HeaderVerdict::Open if self.octets >= HEADER_HOLD_LIMIT => HeaderVerdict::Ascii,
            v => v,
        }
    }
}

/// The POP3 server machine for one connection. See the [module docs](self).
#[derive(Debug)]
pub struct Server {
    config: Arc<ServerConfig>,
    tls_active: bool,
    tls_available: bool,
    random: u64,
    seed: Option<[u8; 32]>,
    challenges: u32,
    /// The user a verified client certificate stands for (EXTERNAL).
    external: Option<Username>,
    /// The `tls-exporter` channel binding (SCRAM-SHA-256-PLUS).
    channel_binding: Option<[u8; 32]>,
    state: State,
    wait: Wait,
    actions: VecDeque<Action<StoreRequest>>,
    input: BytesMut,
    discarding: bool,
    eof: bool,
    closing: bool,
    close_after: Option<CloseReason>,
    now: Instant,
    last_activity: Instant,
    login_deadline: Instant,
    timestamp: Option<ApopTimestamp>,
    bad_commands: u32,
    login_attempts: u32,
    pending_user: Option<Username>,
    user: Option<Username>,
    utf8: bool,
    maildrop_open: bool,
    messages: Vec<MessageInfo>,
    deleted: Vec<bool>,
    retrieved: Vec<bool>,
    live_count: usize,
    /// The octets of the messages not marked deleted; wide enough that no
    /// store's sizes can overflow it (shown saturated at `u64::MAX`).
    live_size: u128,
    summary: SessionSummary,
    /// When the session began (for the summary's duration).
    started: Instant,
    /// The pieces of an encoded message chunk (kept to reuse its memory).
    pieces: Vec<Bytes>,
    /// The client's address, for the log line of a failed login.
    peer: Option<core::net::SocketAddr>,
    /// The login under way: its mechanism (`USER`, `APOP`, a SASL name)
    /// and the user name as sent, once known.
    attempt: Option<(&'static str, Option<String>)>,
}

impl Server {
    /// A machine for a new connection; the greeting is queued at once.
    pub fn new(config: Arc<ServerConfig>, now: Instant, ctx: ConnectionContext) -> Server {
        let mut server = Server {
            tls_active: ctx.tls_active,
            tls_available: ctx.tls_available,
            random: ctx.random,
            seed: ctx.seed,
            challenges: 0,
            external: None,
            channel_binding: None,
            state: State::Authorization,
            wait: Wait::Command,
            actions: VecDeque::new(),
            input: BytesMut::new(),
            discarding: false,
            eof: false,
            closing: false,
            close_after: None,
            now,
            last_activity: now,
            login_deadline: now + config.login_timeout,
            timestamp: None,
            bad_commands: 0,
            login_attempts: 0,
            pending_user: None,
            user: None,
            utf8: false,
            maildrop_open: false,
            messages: Vec::new(),
            deleted: Vec::new(),
            retrieved: Vec::new(),
            live_count: 0,
            live_size: 0,
            summary: SessionSummary::default(),
            started: now,
            pieces: Vec::new(),
            peer: ctx.peer,
            attempt: None,
            config,
        };
        if ctx.tls_active {
            server.handle_tls_info(ctx.tls);
        }
        if server.config.apop && server.config.credential_forms.shared_secret {
            let ts = server.fresh_msg_id(now);
            server.timestamp = ApopTimestamp::new(&ts).ok();
        }
        // The greeting line fits in 512 octets with its CRLF (RFC 2449 §4)
        // and holds no control characters, whatever the configuration says.
        let room = 510
            - 4
            - server
                .timestamp
                .as_ref()
                .map_or(0, |t| t.as_str().len() + 1);
        let mut line = String::from("+OK ");
        push_clipped(&mut line, &server.config.greeting, room);
        if let Some(ts) = &server.timestamp {
            line.push(' ');
            line.push_str(ts.as_str());
        }
        server.send_line(&line);
        server
    }

    // ------------------------------------------------------------------
    // Inputs

    /// Bytes from the peer. Returns how many it took (possibly fewer than
    /// offered, possibly none): keep the rest and offer it again once
    /// [`Server::wants_input`] is true after draining.
    pub fn handle_input(&mut self, now: Instant, input: &[u8]) -> usize {
        self.set_now(now);
        if !self.accepts_input() {
            return 0;
        }
        if !input.is_empty() {
            self.last_activity = now;
        }
        let mut used = 0;
        if self.discarding {
            match memchr::memchr(b'\n', input) {
                Some(lf) => {
                    used = lf + 1;
                    self.discarding = false;
                }
                None => {
                    self.summary.bytes_in += input.len() as u64;
                    return input.len();
                }
            }
        }
        let room = self.line_limit().saturating_sub(self.input.len());
        let take = room.min(input.len() - used);
        self.input.extend_from_slice(&input[used..used + take]);
        used += take;
        self.summary.bytes_in += used as u64;
        self.advance();
        used
    }

    /// The peer closed its sending side (a read returned end of stream).
    ///
    /// The peer may still be reading, so this is not the end of the
    /// session: every command it sent before closing is processed in order,
    /// including while a store request is outstanding, and a client that
    /// writes `USER`, `PASS`, `DELE 1`, `QUIT` and half-closes gets its
    /// UPDATE and every reply. The session ends when the input runs out
    /// (without UPDATE, unless a `QUIT` was among the commands). Feed every
    /// octet read before calling this.
    ///
    /// A connection that is gone (a write failed, a reset, a cut by a
    /// timeout) is reported with [`Server::handle_disconnect`] instead.
    pub fn handle_eof(&mut self, now: Instant) {
        self.set_now(now);
        if self.eof || self.state == State::Closed {
            return;
        }
        self.eof = true;
        match self.wait {
            // Commands sent after the failed login are answered once its
            // delay is over (then the end of the input closes).
            Wait::Delay { .. } if !self.input.is_empty() => {}
            // Waiting for time or the handshake: no command can follow.
            Wait::Delay { .. } | Wait::Tls => {
                self.wait = Wait::Command;
                self.input.clear();
                self.close(CloseReason::PeerClosed, None);
            }
            // The store's answer resumes the processing of what is buffered.
            Wait::Store(_) => {}
            _ => self.advance(),
        }
    }

    /// The connection is gone: a write failed, it was reset, or the adapter
    /// cut it (a stalled write, the shutdown grace over).
    ///
    /// Nothing more can be delivered, so buffered commands are dropped and
    /// the session ends without UPDATE. When a store request is
    /// outstanding, the session ends as soon as the store has answered (a
    /// body is not streamed to a dead connection); a commit already started
    /// always completes, and then counts as the QUIT it answers.
    pub fn handle_disconnect(&mut self, now: Instant) {
        self.set_now(now);
        if self.state == State::Closed {
            return;
        }
        self.eof = true;
        self.input.clear();
        self.discarding = false;
        match self.wait {
            Wait::Store(Pending::Commit { .. }) | Wait::Store(Pending::Release) => {}
            Wait::Store(_) => {
                if self.close_after.is_none() {
                    self.close_after = Some(CloseReason::PeerClosed);
                }
            }
            _ => {
                self.wait = Wait::Command;
                self.close(CloseReason::PeerClosed, None);
            }
        }
    }

    /// The server is shutting down. A session not logged in is told
    /// `-ERR [SYS/TEMP] Server shutting down.` and closed at once (a login
    /// being checked by the store finishes first, and the session then goes
    /// on as a logged-in one); a logged-in session goes on, so that the
    /// client's QUIT still commits its deletions, until the adapter cuts it
    /// (the shutdown grace: see `ServerOptions::shutdown_grace`).
    pub fn handle_shutdown(&mut self, now: Instant) {
        self.set_now(now);
        if self.state != State::Authorization || self.closing {
            return;
        }
        match self.wait {
            Wait::Store(_) => {}
            Wait::Listing { .. } | Wait::Backlog(_) | Wait::Tls => {
                self.close(CloseReason::Shutdown, None)
            }
            _ => self.close(
                CloseReason::Shutdown,
                Some("-ERR [SYS/TEMP] Server shutting down."),
            ),
        }
    }

    /// Time passed: call when [`Server::poll_timeout`] is reached.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.set_now(now);
        if self.state == State::Closed || self.closing {
            return;
        }
        if matches!(self.wait, Wait::Delay { until } if now >= until) {
            self.wait = Wait::Command;
            self.auth_failed_now();
            self.advance();
        }
        if self.state == State::Closed || self.closing {
            return;
        }
        if self.state == State::Authorization && now >= self.login_deadline {
            match self.wait {
                // A login being checked finishes; the session goes on if it succeeds.
                Wait::Store(_) => {}
                Wait::Listing { .. } | Wait::Backlog(_) | Wait::Tls => {
                    self.close(CloseReason::LoginTimeout, None)
                }
                _ => self.close(
                    CloseReason::LoginTimeout,
                    Some("-ERR Disconnected: no login in time."),
                ),
            }
            if self.state == State::Closed || self.closing {
                return;
            }
        }
        if self.state == State::Authorization
            && !matches!(self.wait, Wait::Store(_))
            && now >= self.last_activity + self.config.login_idle_timeout
        {
            match self.wait {
                Wait::Listing { .. } | Wait::Backlog(_) | Wait::Tls => {
                    self.close(CloseReason::LoginTimeout, None)
                }
                _ => self.close(
                    CloseReason::LoginTimeout,
                    Some("-ERR Disconnected for inactivity before login."),
                ),
            }
            return;
        }
        if now >= self.last_activity + self.config.autologout {
            match self.wait {
                Wait::Store(Pending::Commit { .. }) | Wait::Store(Pending::Release) => {}
                Wait::Store(_) => {
                    if self.close_after.is_none() {
                        self.close_after = Some(CloseReason::Autologout);
                    }
                }
                Wait::Listing { .. } | Wait::Backlog(_) | Wait::Tls => {
                    self.close(CloseReason::Autologout, None)
                }
                _ => self.close(
                    CloseReason::Autologout,
                    Some("-ERR Autologout; idle for too long."),
                ),
            }
        }
    }

    /// The store's answer to the last [`StoreRequest`].
    pub fn handle_store(&mut self, now: Instant, reply: StoreReply) {
        self.set_now(now);
        self.last_activity = now;
        let pending = match core::mem::replace(&mut self.wait, Wait::Command) {
            Wait::Store(p) => p,
            other => {
                // No request outstanding: ignore the stray answer.
                self.wait = other;
                return;
            }
        };
        if let Some(reason) = self.close_after.take() {
            match (&pending, &reply) {
                (Pending::Open { .. }, StoreReply::Opened(Ok(_))) => self.maildrop_open = true,
                (Pending::Commit { deleted }, StoreReply::Committed(Ok(()))) => {
                    self.record_commit(deleted)
                }
                _ => {}
            }
            if let Pending::Release = pending {
                self.finish_close();
            } else if matches!(pending, Pending::Commit { .. }) {
                self.summary.close_reason = Some(CloseReason::Quit);
                self.finish_close();
            } else {
                self.close(reason, None);
            }
            return;
        }
        self.on_store_reply(pending, reply);
        self.advance();
    }

    /// The outstanding store request will not be answered: the adapter gave
    /// up waiting for it (a hung store must not hold the connection).
    ///
    /// The request is abandoned, and with it the maildrop (the adapter drops
    /// its store driver, which releases it; no `Release` is asked for). A
    /// command waiting for the answer gets `-ERR [SYS/TEMP]`; a body being
    /// streamed is cut short without its terminator, so the client sees it
    /// fail. The session then ends without UPDATE. When the request was
    /// the commit of a QUIT, only the waiting is abandoned: the commit
    /// itself runs to its end (the adapter's [`StoreDriver`] keeps it and
    /// finishes it after the connection is closed). The client, told `-ERR [SYS/TEMP]`,
    /// cannot know how far it got: some of the messages it marked may be
    /// removed, never any other ([commits](crate::store#commits)).
    pub fn handle_store_timeout(&mut self, now: Instant) {
        self.set_now(now);
        let Wait::Store(pending) = core::mem::replace(&mut self.wait, Wait::Command) else {
            return;
        };
        self.maildrop_open = false;
        self.close_after = None;
        self.summary.close_reason = Some(CloseReason::StoreTimeout);
        match pending {
            // The session was ending already.
            Pending::Release => self.finish_close(),
            Pending::Chunk(_) => self.close(CloseReason::StoreTimeout, None),
            _ => self.close(
                CloseReason::StoreTimeout,
                Some("-ERR [SYS/TEMP] The mail storage is not responding."),
            ),
        }
    }

    /// What the TLS handshake established (a verified client certificate,
    /// the channel binding): call after the STLS handshake, before
    /// [`Server::handle_tls_established`]. Implicit TLS passes it in
    /// [`ConnectionContext::tls_info`].
    pub fn handle_tls_info(&mut self, info: TlsInfo) {
        self.external = match (&info.client_certificate, &self.config.external_identity) {
            (Some(der), Some(map)) => map.identify(der).and_then(|u| Username::new(&u).ok()),
            _ => None,
        };
        self.channel_binding = info.tls_exporter;
    }

    /// The TLS handshake that followed [`Action::StartTls`] succeeded.
    pub fn handle_tls_established(&mut self, now: Instant) {
        self.set_now(now);
        self.last_activity = now;
        if matches!(self.wait, Wait::Tls) {
            self.tls_active = true;
            self.wait = Wait::Command;
            self.input.clear();
            self.discarding = false;
            self.advance();
        }
    }

    // ------------------------------------------------------------------
    // Outputs

    /// The next action to perform, or `None` when the machine waits for
    /// something (input, a store answer, time, the handshake).
    pub fn poll_action(&mut self) -> Option<Action<StoreRequest>> {
        if self.actions.is_empty() {
            self.advance();
        }
        self.actions.pop_front()
    }

    /// When to call [`Server::handle_timeout`], if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state == State::Closed || self.closing {
            return None;
        }
        let mut logout = self.last_activity + self.config.autologout;
        if self.state == State::Authorization && !matches!(self.wait, Wait::Store(_)) {
            logout = logout
                .min(self.login_deadline)
                .min(self.last_activity + self.config.login_idle_timeout);
        }
        match self.wait {
            Wait::Delay { until } => Some(until.min(logout)),
            _ => Some(logout),
        }
    }

    /// The earliest deadline that ends the session, whatever the machine
    /// waits for: the time to log in and the silence before login (in
    /// AUTHORIZATION), the autologout; with the reason it ends for.
    /// `None` once the session is ending.
    ///
    /// [`Server::poll_timeout`] leaves the login deadlines out while a store
    /// request is outstanding (a login being checked finishes);
    /// [`Connection`] holds all of them while replies wait to be written,
    /// and a store request queued behind those replies is not outstanding
    /// yet.
    fn session_deadline(&self) -> Option<(Instant, CloseReason)> {
        if self.state == State::Closed || self.closing || self.close_after.is_some() {
            return None;
        }
        let logout = self.last_activity + self.config.autologout;
        if self.state == State::Authorization {
            let login = self
                .login_deadline
                .min(self.last_activity + self.config.login_idle_timeout);
            if login <= logout {
                return Some((login, CloseReason::LoginTimeout));
            }
        }
        Some((logout, CloseReason::Autologout))
    }

    /// Why the session ends, for its log line, when the connection is cut
    /// at a deadline of [`Server::session_deadline`] (the cut itself is
    /// reported with [`Server::handle_disconnect`]). A commit that QUIT
    /// started still completes, and then the session ended with QUIT.
    fn set_close_reason(&mut self, reason: CloseReason) {
        if self.summary.close_reason.is_none() {
            self.summary.close_reason = Some(reason);
        }
    }

    /// Whether the machine takes input now. False while its pipelining
    /// buffer is full, during the TLS handshake, and once it is closing.
    pub fn wants_input(&self) -> bool {
        self.accepts_input() && (self.discarding || self.input.len() < self.line_limit())
    }

    /// The session state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The authenticated user, once logged in.
    pub fn user(&self) -> Option<&Username> {
        self.user.as_ref()
    }

    /// Whether the machine has emitted [`Action::Close`] (or is about to,
    /// once the actions are drained).
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Whether TLS is active on the connection.
    pub fn is_tls_active(&self) -> bool {
        self.tls_active
    }

    /// The APOP timestamp of the greeting, when APOP is offered.
    pub fn apop_timestamp(&self) -> Option<&ApopTimestamp> {
        self.timestamp.as_ref()
    }

    /// The session's counters, for its log line.
    pub fn summary(&self) -> &SessionSummary {
        &self.summary
    }

    /// Logs the session's line at info (with the `tracing` feature; without
    /// it, does nothing): `session: peer=<address:port> ` and the
    /// [summary](SessionSummary), `peer=-` when the address is unknown.
    /// Every adapter calls it once, when the session has ended.
    pub fn log_summary(&self) {
        #[cfg(feature = "tracing")]
        match self.peer {
            Some(peer) => tracing::info!("session: peer={peer} {}", self.summary),
            None => tracing::info!("session: peer=- {}", self.summary),
        }
    }

    /// Notes the time of an event.
    fn set_now(&mut self, now: Instant) {
        self.now = now;
        self.summary.duration = now.saturating_since(self.started);
    }

    /// Octets of peer input held by the machine (bounded by the current
    /// line limit).
    pub fn buffered_input(&self) -> usize {
        self.input.len()
    }

    /// Actions queued and not yet polled.
    pub fn queued_actions(&self) -> usize {
        self.actions.len()
    }

    // ------------------------------------------------------------------
    // The engine

    fn accepts_input(&self) -> bool {
        !(self.state == State::Closed
            || self.closing
            || self.eof
            || matches!(self.wait, Wait::Tls | Wait::Closed))
    }

    fn line_limit(&self) -> usize {
        match self.wait {
            Wait::Sasl(_) => self.config.limits.sasl_line,
            // An AUTH line with its initial response may be as long as a
            // SASL line (OAuth tokens pass 255 octets; RFC 5034 lets a
            // server accept them).
            _ if self.state == State::Authorization && starts_with_auth(&self.input) => self
                .config
                .limits
                .command_line
                .max(self.config.limits.sasl_line.saturating_add(32)),
            _ => self.config.limits.command_line,
        }
        .max(8)
    }

    /// Processes what can be processed while no action is queued: one
    /// command (or one listing chunk) at a time.
    fn advance(&mut self) {
        while self.actions.is_empty() && self.state != State::Closed && !self.closing {
            match self.wait {
                Wait::Listing { .. } => self.listing_chunk(),
                Wait::Backlog(_) => self.backlog_chunk(),
                Wait::Command | Wait::Sasl(_) => match self.take_line() {
                    Some(Ok(line)) => {
                        if matches!(self.wait, Wait::Sasl(_)) {
                            self.on_sasl_line(&line);
                        } else {
                            self.on_command_line(&line);
                        }
                    }
                    Some(Err(LineError::TooLong { .. })) => {
                        self.pending_user = None;
                        match core::mem::replace(&mut self.wait, Wait::Command) {
                            // Past the store's verdict: a failed login.
                            Wait::Sasl(ex) if ex.store_consulted() => self.auth_failed(),
                            Wait::Sasl(_) => self.bad_command("-ERR Command line too long."),
                            other => {
                                self.wait = other;
                                self.bad_command("-ERR Command line too long.");
                            }
                        }
                    }
                    #[allow(unreachable_patterns)]
                    Some(Err(_)) => self.bad_command("-ERR Invalid command line."),
                    None => {
                        if self.eof {
                            self.input.clear();
                            self.close(CloseReason::PeerClosed, None);
                        }
                        return;
                    }
                },
                _ => return,
            }
        }
    }

    /// The next line from the input buffer, resynchronising after an
    /// over-long one.
    fn take_line(&mut self) -> Option<Result<Bytes, LineError>> {
        let limit = self.line_limit();
        match find_line(&self.input, limit) {
            Ok(Some((len, consumed))) => {
                let mut line = self.input.split_to(consumed);
                line.truncate(len);
                Some(Ok(line.freeze()))
            }
            Ok(None) => None,
            Err(e) => {
                match memchr::memchr(b'\n', &self.input) {
                    Some(lf) => self.input.advance(lf + 1),
                    None => {
                        self.input.clear();
                        self.discarding = !self.eof;
                    }
                }
                Some(Err(e))
            }
        }
    }

    fn push(&mut self, action: Action<StoreRequest>) {
        self.actions.push_back(action);
    }

    fn send(&mut self, bytes: Bytes) {
        self.summary.bytes_out += bytes.len() as u64;
        self.push(Action::Send(Transmit {
            bytes,
            secret: false,
        }));
    }

    fn send_line(&mut self, line: &str) {
        let mut b = BytesMut::with_capacity(line.len() + 2);
        b.extend_from_slice(line.as_bytes());
        b.extend_from_slice(b"\r\n");
        self.send(b.freeze());
    }

    fn request(&mut self, req: StoreRequest, pending: Pending) {
        self.push(Action::Event(req));
        self.wait = Wait::Store(pending);
    }

    /// A fresh `<random.time@host>` message id.
    fn fresh_msg_id(&mut self, now: Instant) -> String {
        let k = self.challenges;
        let mixed = self.random.rotate_left(k.wrapping_mul(23) % 64) ^ u64::from(k);
        self.challenges = self.challenges.wrapping_add(1);
        let mut s = String::new();
        let _ = write!(
            s,
            "<{:016x}.{}@{}>",
            mixed,
            now.as_millis(),
            self.config.hostname
        );
        s
    }

    /// A fresh SCRAM server nonce: 24 printable characters from the
    /// connection's secret seed (or its random number), the challenge
    /// counter and the time.
    fn fresh_nonce(&mut self) -> String {
        use base64::Engine as _;
        use sha2::Digest as _;
        let k = self.challenges;
        self.challenges = self.challenges.wrapping_add(1);
        let mut h = sha2::Sha256::new();
        match &self.seed {
            Some(seed) => h.update(seed),
            None => h.update(self.random.to_le_bytes()),
        }
        h.update(k.to_le_bytes());
        h.update(self.now.as_millis().to_le_bytes());
        let digest = h.finalize();
        base64::engine::general_purpose::STANDARD.encode(&digest[..18])
    }

    fn plaintext_allowed(&self) -> bool {
        self.tls_active || self.config.allow_plaintext_auth
    }

    /// Whether the store can check what `m` sends.
    fn store_serves(&self, m: SaslMechanism) -> bool {
        let forms = &self.config.credential_forms;
        if m.is_oauth() {
            forms.oauth_bearer
        } else if m.is_plaintext() {
            forms.password
        } else if let Some(hash) = m.scram_hash() {
            forms.scram(hash)
        } else {
            forms.shared_secret
        }
    }

    /// Whether `m` is advertised (CAPA, the AUTH list): accepted, and for
    /// SCRAM-SHA-256-PLUS, [`ServerConfig::advertise_channel_binding`].
    fn mechanism_advertised(&self, m: SaslMechanism) -> bool {
        self.mechanism_accepted(m)
            && (m != SaslMechanism::ScramSha256Plus || self.config.advertise_channel_binding)
    }

    /// Whether `AUTH m` is carried out on this connection now.
    fn mechanism_accepted(&self, m: SaslMechanism) -> bool {
        if m == SaslMechanism::External {
            return self.config.sasl.contains(&m) && self.tls_active && self.external.is_some();
        }
        if m == SaslMechanism::ScramSha256Plus
            && !(self.tls_active && self.channel_binding.is_some())
        {
            return false;
        }
        self.config.sasl.contains(&m)
            && self.store_serves(m)
            && (!m.is_plaintext() || self.plaintext_allowed())
    }

    fn offered_mechanisms(&self) -> Vec<SaslMechanism> {
        self.config
            .sasl
            .iter()
            .copied()
            .filter(|&m| self.mechanism_advertised(m))
            .collect()
    }

    /// Counts a bad command and answers it; closes at the limit.
    fn bad_command(&mut self, reply: &str) {
        self.send_line(reply);
        self.count_bad();
    }

    fn count_bad(&mut self) {
        self.bad_commands = self.bad_commands.saturating_add(1);
        self.summary.bad_commands = self.bad_commands;
        let limit = if self.state == State::Authorization {
            self.config.max_bad_before_login
        } else {
            self.config.max_bad_after_login
        };
        if limit != 0 && self.bad_commands >= limit {
            self.close(
                CloseReason::TooManyBadCommands,
                Some("-ERR Too many bad commands."),
            );
        }
    }

    /// Ends the session: optional last line, Release if a maildrop is
    /// open, then Close.
    fn close(&mut self, reason: CloseReason, line: Option<&str>) {
        if self.closing || self.state == State::Closed {
            return;
        }
        self.closing = true;
        if self.summary.close_reason.is_none() {
            self.summary.close_reason = Some(reason);
        }
        if let Some(line) = line {
            self.send_line(line);
        }
        self.input.clear();
        if self.maildrop_open {
            self.maildrop_open = false;
            self.request(StoreRequest::Release, Pending::Release);
        } else {
            self.finish_close();
        }
    }

    /// The octets of the live messages as STAT shows them.
    fn live_octets(&self) -> u64 {
        u64::try_from(self.live_size).unwrap_or(u64::MAX)
    }

    fn finish_close(&mut self) {
        self.closing = true;
        self.state = State::Closed;
        self.wait = Wait::Closed;
        self.input.clear();
        self.push(Action::Close);
    }

    // ------------------------------------------------------------------
    // Commands

    fn on_command_line(&mut self, line: &[u8]) {
        let pending_user = self.pending_user.take();
        let cmd = match Command::parse(line) {
            Ok(cmd) => cmd,
            Err(e) => {
                let text = match e {
                    CommandError::Empty => String::from("-ERR Empty command line."),
                    CommandError::BadKeyword => String::from("-ERR Unknown command."),
                    CommandError::BadOctet { .. } => {
                        String::from("-ERR Invalid octet in command line.")
                    }
                    CommandError::MissingArgument { command } => {
                        alloc::format!("-ERR {command}: missing argument.")
                    }
                    CommandError::ExtraArgument { command, .. } => {
                        alloc::format!("-ERR {command}: too many arguments.")
                    }
                    CommandError::InvalidArgument { command, .. } => {
                        alloc::format!("-ERR {command}: invalid argument.")
                    }
                    #[allow(unreachable_patterns)]
                    _ => String::from("-ERR Invalid command."),
                };
                self.bad_command(&text);
                return;
            }
        };
        match self.state {
            State::Authorization => self.authorization(cmd, pending_user),
            State::Transaction => self.transaction(cmd),
            _ => {}
        }
    }

    fn unknown(&mut self, keyword: &[u8]) {
        let printable = !keyword.is_empty()
            && keyword.len() <= 16
            && keyword.iter().all(|b| b.is_ascii_graphic());
        if printable {
            let mut text = String::from("-ERR Unknown command: ");
            text.push_str(core::str::from_utf8(keyword).unwrap_or_default());
            self.bad_command(&text);
        } else {
            self.bad_command("-ERR Unknown command.");
        }
    }

    fn wrong_state(&mut self) {
        self.bad_command("-ERR Command not valid in this state.");
    }

    fn authorization(&mut self, cmd: Command, pending_user: Option<Username>) {
        match cmd {
            Command::Capa => self.capa(),
            Command::User(name) => {
                if !self.config.credential_forms.password {
                    self.bad_command("-ERR USER is not supported; use APOP or AUTH.");
                } else if !self.plaintext_allowed() {
                    self.send_line(PLAINTEXT_REFUSED);
                } else {
                    self.pending_user = Some(name);
                    self.send_line("+OK");
                }
            }
            Command::Pass(password) => {
                if !self.config.credential_forms.password {
                    self.bad_command("-ERR PASS is not supported; use APOP or AUTH.");
                } else if !self.plaintext_allowed() {
                    self.send_line(PLAINTEXT_REFUSED);
                } else if let Some(user) = pending_user {
                    if !self.login_attempt("USER", Some(&user)) {
                        return;
                    }
                    self.request(
                        StoreRequest::VerifyPassword {
                            user: user.clone(),
                            password: password.to_secret(),
                        },
                        Pending::Verify { user },
                    );
                } else {
                    self.bad_command("-ERR PASS must follow a successful USER.");
                }
            }
            Command::Apop { name, digest } => {
                if let Some(timestamp) = self.timestamp.clone() {
                    if !self.login_attempt("APOP", Some(&name)) {
                        return;
                    }
                    self.request(
                        StoreRequest::SharedSecret { user: name.clone() },
                        Pending::Secret {
                            user: name,
                            check: SecretCheck::Apop { timestamp, digest },
                        },
                    );
                } else {
                    self.bad_command("-ERR APOP is not available.");
                }
            }
            Command::AuthList => self.auth_list(),
            Command::Auth {
                mechanism,
                initial_response,
            } => self.auth(mechanism.as_str(), initial_response),
            Command::Stls => self.stls(),
            Command::Utf8 => {
                if !self.config.utf8 {
                    self.bad_command("-ERR UTF8 is not supported.");
                } else {
                    self.utf8 = true;
                    self.send_line("+OK UTF8 enabled.");
                }
            }
            Command::Lang(req) => self.lang(req),
            Command::Quit => {
                self.send_line("+OK Logging out.");
                self.summary.close_reason = Some(CloseReason::Quit);
                self.finish_close();
            }
            Command::Stat
            | Command::List(_)
            | Command::Retr(_)
            | Command::Dele(_)
            | Command::Noop
            | Command::Rset
            | Command::Top { .. }
            | Command::Uidl(_) => self.wrong_state(),
            Command::Unknown(u) => self.unknown(u.keyword().as_bytes()),
            #[allow(unreachable_patterns)]
            _ => self.unknown(b""),
        }
    }

    fn transaction(&mut self, cmd: Command) {
        match cmd {
            Command::Capa => self.capa(),
            Command::Stat => {
                let mut s = String::new();
                let _ = write!(s, "+OK {} {}", self.live_count, self.live_octets());
                self.send_line(&s);
            }
            Command::List(None) => {
                let mut s = String::new();
                let _ = write!(
                    s,
                    "+OK {} messages ({} octets)",
                    self.live_count,
                    self.live_octets()
                );
                self.send_line(&s);
                self.wait = Wait::Listing {
                    kind: ListingKind::Scan,
                    next: 0,
                };
            }
            Command::List(Some(n)) => {
                if let Some(i) = self.live_message(n) {
                    let mut s = String::new();
                    let _ = write!(s, "+OK {} {}", n, self.messages[i].size);
                    self.send_line(&s);
                }
            }
            Command::Uidl(None) => {
                self.send_line("+OK Unique-ID listing follows.");
                self.wait = Wait::Listing {
                    kind: ListingKind::Uid,
                    next: 0,
                };
            }
            Command::Uidl(Some(n)) => {
                if let Some(i) = self.live_message(n) {
                    let mut s = String::new();
                    let _ = write!(s, "+OK {} {}", n, self.messages[i].uid);
                    self.send_line(&s);
                }
            }
            Command::Retr(n) => {
                if let Some(index) = self.live_message(n) {
                    self.request(
                        StoreRequest::Read { index },
                        Pending::Read { index, top: None },
                    );
                }
            }
            Command::Top { msg, lines } => {
                if let Some(index) = self.live_message(msg) {
                    self.request(
                        StoreRequest::Read { index },
                        Pending::Read {
                            index,
                            top: Some(lines),
                        },
                    );
                }
            }
            Command::Dele(n) => {
                if let Some(i) = self.live_message(n) {
                    self.deleted[i] = true;
                    self.live_count -= 1;
                    self.live_size -= u128::from(self.messages[i].size);
                    let mut s = String::new();
                    let _ = write!(s, "+OK Message {n} deleted.");
                    self.send_line(&s);
                }
            }
            Command::Noop => self.send_line("+OK"),
            Command::Rset => {
                for d in &mut self.deleted {
                    *d = false;
                }
                self.live_count = self.messages.len();
                self.live_size = total_size(&self.messages);
                let mut s = String::new();
                let _ = write!(
                    s,
                    "+OK Maildrop has {} messages ({} octets).",
                    self.live_count,
                    self.live_octets()
                );
                self.send_line(&s);
            }
            Command::Quit => {
                self.state = State::Update;
                let expire_now = self.config.expire == Some(Expire::Days(0));
                let deleted: Vec<usize> = (0..self.messages.len())
                    .filter(|&i| self.deleted[i] || (expire_now && self.retrieved[i]))
                    .collect();
                let retrieved: Vec<usize> = (0..self.messages.len())
                    .filter(|&i| self.retrieved[i])
                    .collect();
                self.maildrop_open = false;
                self.request(
                    StoreRequest::Commit(Update::new(deleted.clone()).with_retrieved(retrieved)),
                    Pending::Commit { deleted },
                );
            }
            Command::Lang(req) => self.lang(req),
            Command::User(_)
            | Command::Pass(_)
            | Command::Apop { .. }
            | Command::Auth { .. }
            | Command::AuthList
            | Command::Stls
            | Command::Utf8 => self.wrong_state(),
            Command::Unknown(u) => self.unknown(u.keyword().as_bytes()),
            #[allow(unreachable_patterns)]
            _ => self.unknown(b""),
        }
    }

    /// The index of message `n` if it exists and is not deleted; otherwise
    /// answers `-ERR` (not counted as a bad command) and returns `None`.
    fn live_message(&mut self, n: MessageNumber) -> Option<usize> {
        let i = n.index();
        if i >= self.messages.len() {
            let mut s = String::new();
            let _ = write!(s, "-ERR No message {n}.");
            self.send_line(&s);
            None
        } else if self.deleted[i] {
            let mut s = String::new();
            let _ = write!(s, "-ERR Message {n} is deleted.");
            self.send_line(&s);
            None
        } else {
            Some(i)
        }
    }

    /// One chunk of a LIST or UIDL listing (at most about 4 KiB).
    fn listing_chunk(&mut self) {
        let (kind, mut next) = match self.wait {
            Wait::Listing { kind, next } => (kind, next),
            _ => return,
        };
        let mut out = BytesMut::with_capacity(4200);
        while next < self.messages.len() && out.len() < 4096 {
            if !self.deleted[next] {
                let m = &self.messages[next];
                let _ = match kind {
                    ListingKind::Scan => write!(out, "{} {}\r\n", next + 1, m.size),
                    ListingKind::Uid => write!(out, "{} {}\r\n", next + 1, m.uid),
                };
            }
            next += 1;
        }
        if next >= self.messages.len() {
            out.extend_from_slice(b".\r\n");
            self.wait = Wait::Command;
        } else {
            self.wait = Wait::Listing { kind, next };
        }
        self.send(out.freeze());
    }

    fn capabilities(&self) -> Vec<String> {
        let mut caps: Vec<String> = Vec::new();
        let mut add = |s: &str| caps.push(String::from(s));
        add("TOP");
        add("UIDL");
        add("RESP-CODES");
        add("AUTH-RESP-CODE");
        if self.config.pipelining {
            add("PIPELINING");
        }
        if self.config.credential_forms.password && self.plaintext_allowed() {
            add("USER");
        }
        let mechs = self.offered_mechanisms();
        if !mechs.is_empty() {
            let mut s = String::from("SASL");
            for m in mechs {
                s.push(' ');
                s.push_str(m.name());
            }
            caps.push(s);
        }
        if self.tls_available && !self.tls_active && self.state == State::Authorization {
            caps.push(String::from("STLS"));
        }
        if let Some(seconds) = self.config.login_delay {
            let mut s = String::new();
            let _ = write!(s, "LOGIN-DELAY {seconds}");
            caps.push(s);
        }
        match self.config.expire {
            Some(Expire::Never) => caps.push(String::from("EXPIRE NEVER")),
            Some(Expire::Days(d)) => {
                let mut s = String::new();
                let _ = write!(s, "EXPIRE {d}");
                caps.push(s);
            }
            None => {}
        }
        if self.config.utf8 {
            caps.push(String::from("UTF8 USER"));
        }
        if self.config.lang {
            caps.push(String::from("LANG"));
        }
        if let Some(imp) = &self.config.implementation {
            // A capability line fits in 512 octets with its CRLF (RFC 2449
            // §4), whatever the text's script.
            let mut s = String::from("IMPLEMENTATION ");
            let room = 510 - s.len();
            push_clipped(&mut s, imp, room);
            caps.push(s);
        }
        caps
    }

    fn capa(&mut self) {
        let mut out = BytesMut::new();
        out.extend_from_slice(b"+OK Capability list follows\r\n");
        for cap in self.capabilities() {
            out.extend_from_slice(cap.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
        self.send(out.freeze());
    }

    fn stls(&mut self) {
        if self.tls_active {
            self.bad_command("-ERR TLS is already active.");
        } else if !self.tls_available {
            self.bad_command("-ERR STLS is not available.");
        } else if self.utf8 {
            self.bad_command("-ERR STLS is not allowed after UTF8.");
        } else {
            self.send_line("+OK Begin TLS negotiation.");
            self.push(Action::StartTls);
            self.wait = Wait::Tls;
            // Whatever came after STLS was sent in plaintext before the
            // handshake: never execute it.
            self.input.clear();
            self.discarding = false;
            self.pending_user = None;
        }
    }

    fn lang(&mut self, req: LangRequest) {
        if !self.config.lang {
            self.bad_command("-ERR LANG is not supported.");
            return;
        }
        match req {
            LangRequest::List => {
                self.send(Bytes::from_static(
                    b"+OK Language listing follows:\r\nen English\r\n.\r\n",
                ));
            }
            LangRequest::Default => self.send_line("+OK en Language set to English."),
            LangRequest::Tag(tag) => {
                let t = tag.as_str();
                if t.eq_ignore_ascii_case("en")
                    || (t.len() > 3 && t[..3].eq_ignore_ascii_case("en-"))
                {
                    self.send_line("+OK en Language set to English.");
                } else {
                    self.send_line("-ERR Language not supported.");
                }
            }
            #[allow(unreachable_patterns)]
            _ => self.send_line("-ERR Language not supported."),
        }
    }

    fn auth_list(&mut self) {
        let mut out = BytesMut::new();
        out.extend_from_slice(b"+OK Supported mechanisms follow.\r\n");
        for m in self.offered_mechanisms() {
            out.extend_from_slice(m.name().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
        self.send(out.freeze());
    }

    fn auth(&mut self, name: &str, initial: Option<Secret>) {
        let Some(mech) = SaslMechanism::from_name(name) else {
            self.bad_command("-ERR Unsupported authentication mechanism.");
            return;
        };
        if !self.config.sasl.contains(&mech) {
            self.bad_command("-ERR Unsupported authentication mechanism.");
            return;
        }
        if mech.is_plaintext() && self.store_serves(mech) && !self.plaintext_allowed() {
            self.send_line(PLAINTEXT_REFUSED);
            return;
        }
        if !self.mechanism_accepted(mech) {
            self.bad_command("-ERR Unsupported authentication mechanism.");
            return;
        }
        if !self.login_attempt(mech.name(), None) {
            return;
        }
        let challenge = if mech == SaslMechanism::CramMd5 {
            let now = self.now;
            Bytes::from(self.fresh_msg_id(now).into_bytes())
        } else {
            Bytes::new()
        };
        let (exchange, outcome) = match (mech, self.external.clone()) {
            (SaslMechanism::External, Some(identity)) => {
                SaslExchange::start_external(identity, initial)
            }
            (m, _) if m.scram_hash().is_some() => {
                let binding = match (m, self.channel_binding) {
                    (SaslMechanism::ScramSha256Plus, Some(cb)) => sasl::Binding::TlsExporter(cb),
                    _ => sasl::Binding::None {
                        plus_offered: self.mechanism_advertised(SaslMechanism::ScramSha256Plus),
                    },
                };
                SaslExchange::start_scram(m, initial, binding)
            }
            _ => SaslExchange::start(mech, initial, challenge),
        };
        self.sasl_outcome(exchange, outcome);
    }

    /// Counts a login attempt; at the limit, refuses it and closes.
    /// Returns whether the attempt may go on.
    fn login_attempt(&mut self, mech: &'static str, user: Option<&Username>) -> bool {
        use alloc::string::ToString as _;
        self.attempt = Some((mech, user.map(|u| u.to_string())));
        let limit = self.config.max_login_attempts;
        if limit != 0 && self.login_attempts >= limit {
            self.close(
                CloseReason::TooManyLoginAttempts,
                Some("-ERR Too many login attempts."),
            );
            return false;
        }
        self.login_attempts += 1;
        self.summary.login_attempts = self.login_attempts;
        true
    }

    fn on_sasl_line(&mut self, line: &[u8]) {
        let Wait::Sasl(mut exchange) = core::mem::replace(&mut self.wait, Wait::Command) else {
            return;
        };
        // Past the store's verdict (or its keys), walking away is a failed
        // login: otherwise each cancel would be a free guess.
        let consulted = exchange.store_consulted();
        match SaslResponse::parse(line) {
            Ok(SaslResponse::Cancel) if consulted => self.auth_failed(),
            Ok(SaslResponse::Cancel) => {
                self.send_line("-ERR Authentication cancelled.");
            }
            Ok(SaslResponse::Data(data)) => {
                let outcome = exchange.step(data);
                match outcome {
                    SaslOutcome::Malformed if consulted => self.auth_failed(),
                    outcome => self.sasl_outcome(exchange, outcome),
                }
            }
            #[allow(unreachable_patterns)]
            Ok(_) | Err(_) if consulted => self.auth_failed(),
            #[allow(unreachable_patterns)]
            Ok(_) | Err(_) => {
                self.bad_command("-ERR Invalid SASL response.");
            }
        }
    }

    fn sasl_outcome(&mut self, exchange: SaslExchange, outcome: SaslOutcome) {
        match outcome {
            SaslOutcome::Challenge(data) => {
                use base64::Engine as _;
                let mut line = String::from("+ ");
                base64::engine::general_purpose::STANDARD.encode_string(&data, &mut line);
                self.send_line(&line);
                self.wait = Wait::Sasl(exchange);
            }
            SaslOutcome::VerifyPassword { user, password } => self.request(
                StoreRequest::VerifyPassword {
                    user: user.clone(),
                    password,
                },
                Pending::Verify { user },
            ),
            SaslOutcome::CramMd5 {
                user,
                challenge,
                digest,
            } => self.request(
                StoreRequest::SharedSecret { user: user.clone() },
                Pending::Secret {
                    user,
                    check: SecretCheck::CramMd5 { challenge, digest },
                },
            ),
            SaslOutcome::ScramKeys { user, start } => self.request(
                StoreRequest::ScramKeys {
                    user: user.clone(),
                    hash: start.hash,
                },
                Pending::Scram { user, start },
            ),
            SaslOutcome::VerifyToken {
                user: Some(user),
                token,
                mech,
            } => self.request(
                StoreRequest::VerifyToken {
                    user: user.clone(),
                    token,
                },
                Pending::Token { user, mech },
            ),
            // No authorization identity: the token says who it is for.
            SaslOutcome::VerifyToken {
                user: None,
                token,
                mech,
            } => self.request(
                StoreRequest::TokenOwner { token },
                Pending::TokenOwner { mech },
            ),
            SaslOutcome::Authenticated { user } => self.request(
                StoreRequest::Open { user: user.clone() },
                Pending::Open { user },
            ),
            SaslOutcome::Failed => self.auth_failed(),
            SaslOutcome::Malformed => self.bad_command("-ERR Invalid SASL response."),
        }
    }

    /// A failed authentication: answer after the configured delay.
    ///
    /// Each one is logged (with the `tracing` feature) at info as
    /// `auth failed: rip=<address> user="<name as sent>" mech=<mechanism>`
    /// (`rip=-`, `user=-` when unknown; the name escaped as a Rust string),
    /// the line a fail2ban filter matches.
    fn auth_failed(&mut self) {
        let (mech, user) = self.attempt.take().unwrap_or(("-", None));
        match self
            .summary
            .failed_logins
            .iter_mut()
            .find(|(m, _)| *m == mech)
        {
            Some((_, n)) => *n = n.saturating_add(1),
            None => self.summary.failed_logins.push((mech, 1)),
        }
        match (self.peer, user) {
            (Some(peer), Some(user)) => {
                tracing::info!("auth failed: rip={} user={user:?} mech={mech}", peer.ip())
            }
            (Some(peer), None) => {
                tracing::info!("auth failed: rip={} user=- mech={mech}", peer.ip())
            }
            (None, Some(user)) => tracing::info!("auth failed: rip=- user={user:?} mech={mech}"),
            (None, None) => tracing::info!("auth failed: rip=- user=- mech={mech}"),
        }
        let delay = self.config.auth_failure_delay;
        if delay.is_zero() {
            self.auth_failed_now();
        } else {
            self.wait = Wait::Delay {
                until: self.now + delay,
            };
        }
    }

    fn auth_failed_now(&mut self) {
        self.bad_command("-ERR [AUTH] Authentication failed.");
    }

    fn store_error_line(err: &StoreError) -> &'static str {
        match err {
            StoreError::InUse => "-ERR [IN-USE] Maildrop is already open in another session.",
            StoreError::LoginDelay => "-ERR [LOGIN-DELAY] Logged in too recently; try again later.",
            StoreError::Permanent(_) => "-ERR [SYS/PERM] The maildrop cannot be used.",
            StoreError::MessageGone => "-ERR That message is no longer in the maildrop.",
            _ => "-ERR [SYS/TEMP] Temporary server failure; try again later.",
        }
    }

    fn on_store_reply(&mut self, pending: Pending, reply: StoreReply) {
        if let Some((_, user @ None)) = &mut self.attempt {
            use alloc::string::ToString as _;
            match &pending {
                Pending::Verify { user: u }
                | Pending::Secret { user: u, .. }
                | Pending::Scram { user: u, .. }
                | Pending::Token { user: u, .. } => *user = Some(u.to_string()),
                _ => {}
            }
        }
        match (pending, reply) {
            (Pending::Verify { user }, StoreReply::Verified(r)) => match r {
                Ok(true) => self.request(
                    StoreRequest::Open { user: user.clone() },
                    Pending::Open { user },
                ),
                Ok(false) => self.auth_failed(),
                Err(e) => self.send_line(Self::auth_store_error(&e)),
            },
            (Pending::Secret { user, check }, StoreReply::SharedSecret(r)) => match r {
                Ok(Some(secret)) => {
                    if check.matches(&secret) {
                        self.request(
                            StoreRequest::Open { user: user.clone() },
                            Pending::Open { user },
                        );
                    } else {
                        self.auth_failed();
                    }
                }
                Ok(None) => self.auth_failed(),
                Err(e) => self.send_line(Self::auth_store_error(&e)),
            },
            (Pending::Scram { user, start }, StoreReply::ScramKeys(r)) => match r {
                Ok(keys) => {
                    let nonce = self.fresh_nonce();
                    let (exchange, outcome) = SaslExchange::scram_server_first(
                        user,
                        start,
                        keys,
                        &nonce,
                        self.random,
                        self.config.deployment_secret.as_ref(),
                    );
                    self.sasl_outcome(exchange, outcome);
                }
                Err(e) => self.send_line(Self::auth_store_error(&e)),
            },
            (Pending::Token { user, mech }, StoreReply::TokenVerified(r)) => match r {
                Ok(true) => self.request(
                    StoreRequest::Open { user: user.clone() },
                    Pending::Open { user },
                ),
                Ok(false) => {
                    let (exchange, outcome) = SaslExchange::oauth_error(mech);
                    self.sasl_outcome(exchange, outcome);
                }
                Err(e) => self.send_line(Self::auth_store_error(&e)),
            },
            (Pending::TokenOwner { mech }, StoreReply::TokenOwner(r)) => match r {
                Ok(Some(user)) => self.request(
                    StoreRequest::Open { user: user.clone() },
                    Pending::Open { user },
                ),
                Ok(None) => {
                    let (exchange, outcome) = SaslExchange::oauth_error(mech);
                    self.sasl_outcome(exchange, outcome);
                }
                Err(e) => self.send_line(Self::auth_store_error(&e)),
            },
            (Pending::Open { user }, StoreReply::Opened(r)) => match r {
                Ok(messages) => {
                    self.maildrop_open = true;
                    self.state = State::Transaction;
                    self.bad_commands = 0;
                    self.live_count = messages.len();
                    self.live_size = total_size(&messages);
                    self.deleted = alloc::vec![false; messages.len()];
                    self.retrieved = alloc::vec![false; messages.len()];
                    self.summary.messages = messages.len();
                    self.summary.user = Some(String::from(user.as_str()));
                    self.summary.login_mechanism = self.attempt.take().map(|(mech, _)| mech);
                    self.messages = messages;
                    self.user = Some(user);
                    let mut s = String::new();
                    let _ = write!(
                        s,
                        "+OK Logged in; {} messages ({} octets).",
                        self.live_count,
                        self.live_octets()
                    );
                    self.send_line(&s);
                }
                Err(e) => self.send_line(Self::store_error_line(&e)),
            },
            (Pending::Read { index, top }, StoreReply::Reading(r)) => match r {
                Ok(()) => {
                    let mut s = String::new();
                    match top {
                        None => {
                            let _ = write!(s, "+OK {} octets", self.messages[index].size);
                        }
                        Some(_) => s.push_str("+OK Top of message follows."),
                    }
                    // RFC 6856 §2.1: on a UTF-8 maildrop, a client that did
                    // not enable UTF-8 mode must not get non-ASCII headers,
                    // so the status waits for the header section.
                    let held = if self.config.utf8 && !self.utf8 {
                        Some(Held::new(s))
                    } else {
                        self.send_line(&s);
                        None
                    };
                    self.request(
                        StoreRequest::NextChunk,
                        Pending::Chunk(Stream {
                            index,
                            encoder: match top {
                                Some(lines) => BodyEncoder::top(lines),
                                None => BodyEncoder::new(),
                            },
                            top: top.is_some(),
                            held,
                            backlog: VecDeque::new(),
                            store_done: false,
                        }),
                    );
                }
                Err(e) => self.send_line(Self::store_error_line(&e)),
            },
            (Pending::Chunk(mut stream), StoreReply::Chunk(r)) if stream.held.is_some() => {
                let held = stream.held.as_mut().expect("held");
                let ended = matches!(r, Ok(None));
                let verdict = match r {
                    Ok(Some(chunk)) => held.take(chunk),
                    // The whole message was its header section.
                    Ok(None) => HeaderVerdict::Ascii,
                    Err(e) => {
                        // Nothing is out yet: an ordinary -ERR.
                        self.send_line(Self::store_error_line(&e));
                        return;
                    }
                };
                match verdict {
                    HeaderVerdict::Open => {
                        self.request(StoreRequest::NextChunk, Pending::Chunk(stream));
                    }
                    HeaderVerdict::NonAscii => {
                        self.send_line(
                            "-ERR [UTF8] This message needs UTF-8 mode: send UTF8 first.",
                        );
                    }
                    HeaderVerdict::Ascii => {
                        let held = stream.held.take().expect("held");
                        self.send_line(&held.status);
                        // The held chunks go out one per drain, as the
                        // store's would.
                        stream.backlog = held.chunks.into();
                        stream.store_done = ended;
                        self.wait = Wait::Backlog(stream);
                    }
                }
            }
            (Pending::Chunk(mut stream), StoreReply::Chunk(r)) => match r {
                Ok(Some(chunk)) => {
                    // Long clean runs of the message go out as slices of
                    // the store's chunk, not copies.
                    self.send_encoded(&mut stream, &chunk);
                    if stream.encoder.is_complete() {
                        // TOP has its lines: stop reading the message.
                        self.end_body(stream, BytesMut::new());
                    } else {
                        self.request(StoreRequest::NextChunk, Pending::Chunk(stream));
                    }
                }
                Ok(None) => self.end_body(stream, BytesMut::new()),
                Err(_) => {
                    // The status line and part of the body are out: the
                    // body cannot be retracted.
                    self.close(CloseReason::StoreFailure, None);
                }
            },
            (Pending::Commit { deleted }, StoreReply::Committed(r)) => {
                match r {
                    Ok(()) => {
                        self.record_commit(&deleted);
                        self.send_line("+OK Logging out.");
                    }
                    Err(_) => self
                        .send_line("-ERR [SYS/TEMP] Some deleted messages could not be removed."),
                }
                self.summary.close_reason = Some(CloseReason::Quit);
                self.finish_close();
            }
            (Pending::Release, _) => self.finish_close(),
            (Pending::Commit { .. }, _) => {
                self.send_line("-ERR [SYS/TEMP] Some deleted messages could not be removed.");
                self.summary.close_reason = Some(CloseReason::Quit);
                self.finish_close();
            }
            (Pending::Open { .. }, _) => {
                // An answer of the wrong kind: the maildrop may be open.
                self.maildrop_open = true;
                self.close(CloseReason::StoreFailure, None);
            }
            (_, _) => self.close(CloseReason::StoreFailure, None),
        }
    }

    fn auth_store_error(err: &StoreError) -> &'static str {
        match err {
            StoreError::Permanent(_) => "-ERR [SYS/PERM] Authentication is not possible.",
            _ => "-ERR [SYS/TEMP] Authentication is temporarily not possible.",
        }
    }

    /// Sends the next chunk of a held body; then the store's.
    fn backlog_chunk(&mut self) {
        let Wait::Backlog(mut stream) = core::mem::replace(&mut self.wait, Wait::Command) else {
            return;
        };
        if let Some(chunk) = stream.backlog.pop_front() {
            if !stream.encoder.is_complete() {
                self.send_encoded(&mut stream, &chunk);
            }
        }
        if !stream.backlog.is_empty() && !stream.encoder.is_complete() {
            self.wait = Wait::Backlog(stream);
        } else if stream.store_done || stream.encoder.is_complete() {
            self.end_body(stream, BytesMut::new());
        } else {
            self.request(StoreRequest::NextChunk, Pending::Chunk(stream));
        }
    }

    /// Encodes one chunk of a body and queues it (long clean runs as
    /// slices of the chunk).
    fn send_encoded(&mut self, stream: &mut Stream, chunk: &Bytes) {
        let mut pieces = core::mem::take(&mut self.pieces);
        stream.encoder.encode_pieces(chunk, &mut pieces);
        for piece in pieces.drain(..) {
            self.summary.retrieved_octets += piece.len() as u64;
            self.send(piece);
        }
        self.pieces = pieces;
    }

    fn end_body(&mut self, mut stream: Stream, mut out: BytesMut) {
        stream.encoder.finish(&mut out);
        self.summary.retrieved_octets += out.len() as u64;
        self.summary.retrieved += 1;
        if !stream.top {
            if let Some(r) = self.retrieved.get_mut(stream.index) {
                *r = true;
            }
        }
        self.send(out.freeze());
        self.wait = Wait::Command;
    }

    fn record_commit(&mut self, deleted: &[usize]) {
        self.summary.deleted = deleted.len() as u32;
        self.summary.deleted_octets = deleted
            .iter()
            .filter_map(|&i| self.messages.get(i))
            .fold(0u64, |sum, m| sum.saturating_add(m.size));
    }
}

/// Whether buffered input starts with an `AUTH ` command (any case).
fn starts_with_auth(input: &[u8]) -> bool {
    input.len() >= 5 && input[..5].eq_ignore_ascii_case(b"AUTH ")
}

const PLAINTEXT_REFUSED: &str = "-ERR [AUTH] Plaintext authentication is not allowed without TLS.";

impl SecretCheck {
    fn matches(&self, secret: &Secret) -> bool {
        match self {
            SecretCheck::Apop { timestamp, digest } => {
                ApopDigest::compute(timestamp, secret.expose()).matches(digest)
            }
            SecretCheck::CramMd5 { challenge, digest } => {
                sasl::cram_md5_matches(secret.expose(), challenge, digest.expose())
            }
        }
    }
}

pub(crate) use crate::scram::constant_time_eq;

/// The sum of the sizes, in a type no store's sizes can overflow.
fn total_size(messages: &[MessageInfo]) -> u128 {
    messages.iter().map(|m| u128::from(m.size)).sum()
}

/// Appends `text` to `line` without control characters, cut at a character
/// boundary so that at most `max_octets` octets are added.
fn push_clipped(line: &mut String, text: &str, max_octets: usize) {
    let mut room = max_octets;
    for c in text.chars().filter(|c| !c.is_control()) {
        let Some(left) = room.checked_sub(c.len_utf8()) else {
            break;
        };
        room = left;
        line.push(c);
    }
}
