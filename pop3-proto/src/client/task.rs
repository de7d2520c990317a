//! Typed operations: a command (or a few) plus the code that turns the
//! machine's events about them into one typed result.
//!
//! A [`Task`] is started on a [`Connection`](super::Connection) with
//! [`Connection::start`](super::Connection::start) and driven with
//! [`Connection::poll_task`](super::Connection::poll_task) between I/O
//! steps, so that an adapter's public method is one line over a generic
//! `run(task)`. The tasks here cover every command; an application may write
//! its own for commands this crate does not know.

use crate::__tracing as tracing;
use std::string::String;
use std::vec::Vec;

use super::connection::ConnectionConfig;
use super::{BoxedMechanism, CancelReason, Client, ClientError, ClientEvent, Error, RequestId};
use super::{ProtocolError, SaslError, ServerError, TimeoutKind};
use crate::command::{Command, LangRequest};
use crate::response::{Capability, LangLine, ScanLine, StatReply, StatusLine, UidLine};
use crate::types::{MessageNumber, Secret};

/// What a task sees of the connection while it runs.
pub struct TaskContext<'a> {
    pub(super) client: &'a mut Client,
    pub(super) fault: Option<&'a Error>,
    pub(super) config: &'a ConnectionConfig,
}

impl core::fmt::Debug for TaskContext<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TaskContext")
            .field("state", &self.client.state())
            .field("fault", &self.fault)
            .finish_non_exhaustive()
    }
}

impl TaskContext<'_> {
    /// The session machine, to queue a follow-up command or read its state.
    pub fn client(&mut self) -> &mut Client {
        self.client
    }

    /// The connection's settings.
    pub fn config(&self) -> &ConnectionConfig {
        self.config
    }

    /// The error an event that ends a command early stands for: `-ERR`, an
    /// unparsable reply, a cancellation (the session's failure, if any).
    pub fn unexpected(&self, event: ClientEvent) -> Error {
        unexpected(event, self.fault)
    }
}

pub(super) fn unexpected(event: ClientEvent, fault: Option<&Error>) -> Error {
    match event {
        ClientEvent::Err { error, .. } => Error::Server(error),
        ClientEvent::Malformed { line, error, .. } => Error::Malformed { line, error },
        ClientEvent::Cancelled {
            reason: CancelReason::PrecedingFailed { .. },
            ..
        } => Error::Closed,
        ClientEvent::Cancelled { .. } => fault.cloned().unwrap_or(Error::Closed),
        other => {
            tracing::debug!(target: super::connection::LOG, "unexpected event {other:?}");
            Error::Protocol(ProtocolError::Unsolicited {
                line: bytes::Bytes::new(),
            })
        }
    }
}

/// One operation: the commands it queues and the result its events make.
///
/// The connection passes a task every event about the commands queued since
/// [`Task::start`] (and the greeting), in order, until one call returns
/// `Some`. Events of earlier, abandoned operations never reach it.
///
/// ```
/// use pop3_proto::client::task::{Task, TaskContext};
/// use pop3_proto::client::{Client, ClientError, ClientEvent, Error, RequestId};
///
/// /// `NOOP`, answered by whether the server said `+OK`.
/// #[derive(Default)]
/// struct Ping(Option<RequestId>);
///
/// impl Task for Ping {
///     type Output = bool;
///     fn start(&mut self, client: &mut Client) -> Result<(), ClientError> {
///         self.0 = Some(client.noop()?);
///         Ok(())
///     }
///     fn event(&mut self, event: ClientEvent, cx: &mut TaskContext<'_>) -> Option<Result<bool, Error>> {
///         match event {
///             ClientEvent::Ok { .. } => Some(Ok(true)),
///             ClientEvent::Err { .. } => Some(Ok(false)),
///             other => Some(Err(cx.unexpected(other))),
///         }
///     }
/// }
/// ```
pub trait Task {
    /// The typed result.
    type Output;

    /// Queues the task's command(s) on the machine.
    fn start(&mut self, client: &mut Client) -> Result<(), ClientError>;

    /// One event about the task's commands; `Some` when the task is done.
    fn event(
        &mut self,
        event: ClientEvent,
        cx: &mut TaskContext<'_>,
    ) -> Option<Result<Self::Output, Error>>;

    /// Called when no event is waiting, before the connection does I/O: a
    /// task that waits for a state rather than an event (TLS established,
    /// capabilities read again) finishes here.
    fn ready(&mut self, cx: &mut TaskContext<'_>) -> Option<Result<Self::Output, Error>> {
        let _ = cx;
        None
    }

    /// The session ended before the task was done; the error to report.
    fn failed(&mut self, error: Error) -> Error {
        error
    }

    /// What the connection does when the task was started and dropped
    /// before it finished (its future dropped by a timeout or `select!`):
    /// see [`OnDrop`]. The default, [`OnDrop::Poison`], is right for any
    /// task; a task whose replies change nothing the application must know
    /// may say [`OnDrop::Drain`].
    fn on_drop(&self) -> OnDrop {
        OnDrop::Poison
    }
}

/// What a task dropped before it finished leaves behind, settled by the
/// connection when the next operation starts
/// ([`Connection::start`](super::Connection::start)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnDrop {
    /// Its replies are read and discarded before the next operation's own;
    /// the session goes on, in the state the machine saw those replies
    /// leave (a query: STAT, LIST, UIDL, NOOP, CAPA, ...).
    Drain,
    /// It changes the session's state over several steps (a login, STLS,
    /// a batch of DELE, QUIT): the connection is closed without QUIT, so
    /// the server commits nothing, and the next operation fails with
    /// [`Error::Cancelled`].
    Poison,
}

/// Whether the capabilities are settled: no CAPA is outstanding.
fn capabilities_settled(cx: &TaskContext<'_>) -> bool {
    !cx.client.capa_pending()
}

/// Opens the session: waits for the greeting, upgrades with STLS when asked
/// and lets the capabilities be read (with
/// [`ConnectionConfig::read_capabilities`]).
#[derive(Debug, Default)]
pub struct Connect {
    starttls: bool,
    stls: Option<RequestId>,
    greeted: bool,
    upgraded: bool,
}

impl Connect {
    /// A plain (or implicit TLS) session; `starttls`: upgrade with STLS.
    pub fn new(starttls: bool) -> Connect {
        Connect {
            starttls,
            ..Connect::default()
        }
    }
}

impl Task for Connect {
    type Output = ();

    fn start(&mut self, client: &mut Client) -> Result<(), ClientError> {
        if self.starttls {
            self.stls = Some(client.stls()?);
        }
        Ok(())
    }

    fn event(&mut self, event: ClientEvent, cx: &mut TaskContext<'_>) -> Option<Result<(), Error>> {
        match event {
            ClientEvent::Greeting(_) => self.greeted = true,
            ClientEvent::Ok { id, .. } if Some(id) == self.stls => self.upgraded = true,
            e if e.request_id().is_some() && e.request_id() == self.stls => {
                return Some(Err(cx.unexpected(e)));
            }
            // The capabilities (or the server's refusal of CAPA: basic POP3
            // still works, RFC 2449 §5).
            _ => {}
        }
        self.ready(cx)
    }

    fn ready(&mut self, cx: &mut TaskContext<'_>) -> Option<Result<(), Error>> {
        let tls_done = self.stls.is_none() || (self.upgraded && cx.client.is_tls());
        (self.greeted && tls_done && capabilities_settled(cx)).then_some(Ok(()))
    }

    fn failed(&mut self, error: Error) -> Error {
        match error {
            Error::Timeout(_) | Error::Protocol(ProtocolError::Timeout) if !self.greeted => {
                Error::Timeout(TimeoutKind::Connect)
            }
            e => e,
        }
    }
}

/// `CAPA`: the capabilities (also cached by the machine).
#[derive(Debug, Default)]
pub struct Capa(Option<RequestId>);

impl Capa {
    /// The task.
    pub fn new() -> Capa {
        Capa(None)
    }
}

impl Task for Capa {
    type Output = Vec<Capability>;

    fn on_drop(&self) -> OnDrop {
        OnDrop::Drain
    }

    fn start(&mut self, client: &mut Client) -> Result<(), ClientError> {
        self.0 = Some(client.capa()?);
        Ok(())
    }

    fn event(
        &mut self,
        event: ClientEvent,
        cx: &mut TaskContext<'_>,
    ) -> Option<Result<Vec<Capability>, Error>> {
        if event.request_id() != self.0 {
            return None;
        }
        match event {
            ClientEvent::Capabilities { list, .. } => Some(Ok(list)),
            // One capability line the parser did not take: the others count.
            ClientEvent::Malformed { .. } => None,
            other => Some(Err(cx.unexpected(other))),
        }
    }
}

/// `STLS`, then the TLS handshake, then the capabilities again.
#[derive(Debug, Default)]
pub struct Stls {
    id: Option<RequestId>,
    ok: bool,
}

impl Stls {
    /// The task.
    pub fn new() -> Stls {
        Stls::default()
    }
}

impl Task for Stls {
    type Output = ();

    fn start(&mut self, client: &mut Client) -> Result<(), ClientError> {
        self.id = Some(client.stls()?);
        Ok(())
    }

    fn event(&mut self, event: ClientEvent, cx: &mut TaskContext<'_>) -> Option<Result<(), Error>> {
        match event {
            ClientEvent::Ok { id, .. } if Some(id) == self.id => self.ok = true,
            e if e.request_id() == self.id => return Some(Err(cx.unexpected(e))),
            _ => {}
        }
        self.ready(cx)
    }

    fn ready(&mut self, cx: &mut TaskContext<'_>) -> Option<Result<(), Error>> {
        (self.ok && cx.client.is_tls() && capabilities_settled(cx)).then_some(Ok(()))
    }
}

/// What a login waits for after its commands.
#[derive(Debug, Default)]
struct LoginEnd {
    /// The command whose `+OK` means logged in.
    last: Option<RequestId>,
    ok: bool,
}

impl LoginEnd {
    fn ready(&self, cx: &TaskContext<'_>) -> Option<Result<(), Error>> {
        (self.ok && capabilities_settled(cx)).then_some(Ok(()))
    }
}

/// `USER`, then `PASS` once the server accepted the user, then the
/// capabilities again.
///
/// PASS waits for USER's `+OK` even when the server pipelines (what
/// [`Client::login`] does not): the password never goes to a server that
/// refused the user name, and a server that hands the session to another
/// process after the login (Dovecot) does not hold its `+OK` behind a
/// delayed acknowledgement of the USER reply. That hold is Nagle's algorithm
/// meeting delayed ACKs, about 40 ms on Linux, against one round trip.
/// Pipelining USER and PASS would save that round trip on a slow link, but
/// a refused USER (an unknown name, `[IN-USE]`, `[LOGIN-DELAY]`) would
/// then still carry the password to the server, answered by a second
/// `-ERR` that says nothing more; the round trip is kept on purpose.
///
/// The CAPA after the login costs no round trip of its own when the server
/// pipelines: it goes in the same write as PASS (see
/// [`ClientConfig::auto_capa`](super::ClientConfig::auto_capa)).
#[derive(Debug)]
pub struct Login {
    user: String,
    password: Option<Secret>,
    first: Option<RequestId>,
    end: LoginEnd,
}

impl Login {
    /// The task.
    pub fn new(user: &str, password: &str) -> Login {
        Login {
            user: user.into(),
            password: Some(Secret::new(password.as_bytes().to_vec())),
            first: None,
            end: LoginEnd::default(),
        }
    }
}

impl Task for Login {
    type Output = ();

    fn start(&mut self, client: &mut Client) -> Result<(), ClientError> {
        // Both commands are checked now (state, clear-text policy, the
        // password's octets), so that PASS cannot fail to go out later.
        let empty = Secret::new("");
        client.check_login(&self.user, self.password.as_ref().unwrap_or(&empty))?;
        self.first = Some(client.user(&self.user)?);
        Ok(())
    }

    fn event(&mut self, event: ClientEvent, cx: &mut TaskContext<'_>) -> Option<Result<(), Error>> {
        let id = event.request_id();
        if id == self.first {
            if !matches!(event, ClientEvent::Ok { .. }) {
                return Some(Err(cx.unexpected(event)));
            }
            let password = self.password.take().unwrap_or_else(|| Secret::new(""));
            match cx.client().pass(password) {
                Ok(p) => self.end.last = Some(p),
                Err(e) => return Some(Err(e.into())),
            }
        } else if id == self.end.last {
            match event {
                ClientEvent::Ok { .. } => self.end.ok = true,
                other => return Some(Err(cx.unexpected(other))),
            }
        }
        self.end.ready(cx)
    }

    fn ready(&mut self, cx: &mut TaskContext<'_>) -> Option<Result<(), Error>> {
        self.end.ready(cx)
    }
}

/// `APOP` with the digest of the greeting's timestamp, then the
/// capabilities again.
#[derive(Debug)]
pub struct Apop {
    user: String,
    secret: Secret,
    end: LoginEnd,
}

impl Apop {
    /// The task.
    pub fn new(user: &str, secret: &str) -> Apop {
        Apop {
            user: user.into(),
            secret: Secret::new(secret.as_bytes().to_vec()),
            end: LoginEnd::default(),
        }
    }
}

impl Task for Apop {
    type Output = ();

    fn start(&mut self, client: &mut Client) -> Result<(), ClientError> {
        self.end.last = Some(client.apop(&self.user, &self.secret)?);
        Ok(())
    }

    fn event(&mut self, event: ClientEvent, cx: &mut TaskContext<'_>) -> Option<Result<(), Error>> {
        if event.request_id() == self.end.last {
            match event {
                ClientEvent::Ok { .. } => self.end.ok = true,
                other => return Some(Err(cx.unexpected(other))),
            }
        }
        self.end.ready(cx)
    }

    fn ready(&mut self, cx: &mut TaskContext<'_>) -> Option<Result<(), Error>> {
        self.end.ready(cx)
    }
}

/// `AUTH` with a SASL mechanism, then the capabilities again.
#[derive(Debug)]
pub struct Auth {
    mechanism: Option<BoxedMechanism>,
    sasl: Option<SaslError>,
    end: LoginEnd,
}

impl Auth {
    /// The task.
    pub fn new(mechanism: BoxedMechanism) -> Auth {
        Auth {
            mechanism: Some(mechanism),
            sasl: None,
            end: LoginEnd::default(),
        }
    }
}

impl Task for Auth {
    type Output = ();

    fn start(&mut self, client: &mut Client) -> Result<(), ClientError> {
        let mechanism = self.mechanism.take().ok_or(ClientError::Closed)?;
        self.end.last = Some(client.auth(mechanism)?);
        Ok(())
    }

    fn event(&mut self, event: ClientEvent, cx: &mut TaskContext<'_>) -> Option<Result<(), Error>> {
        if event.request_id() == self.end.last {
            match event {
                ClientEvent::Ok { .. } => self.end.ok = true,
                ClientEvent::SaslCancelled { error, .. } => self.sasl = Some(error),
                ClientEvent::Err { error, .. } => {
                    return Some(Err(match self.sasl.take() {
                        Some(e) => Error::Sasl(e),
                        None => Error::Server(error),
                    }));
                }
                other => return Some(Err(cx.unexpected(other))),
            }
        }
        self.end.ready(cx)
    }

    fn ready(&mut self, cx: &mut TaskContext<'_>) -> Option<Result<(), Error>> {
        self.end.ready(cx)
    }
}

/// The strongest login the session allows, chosen when the task starts
/// by [`login_choices`](super::sasl::login_choices) from the capabilities
/// and the greeting: SCRAM-SHA-256-PLUS (with a channel binding),
/// SCRAM-SHA-256, SCRAM-SHA-1, CRAM-MD5, APOP, then PLAIN, LOGIN and
/// USER/PASS. The last three reveal the password: without TLS they are
/// used only when allowed ([`AutoLogin::allow_cleartext`]; by default,
/// when [`ClientConfig::insecure_cleartext_login`](super::ClientConfig::insecure_cleartext_login)
/// is set). Nothing left to use is [`ClientError::CleartextRefused`].
///
/// # Falling back
///
/// Servers offer mechanisms they cannot carry out (a store without the
/// secret CRAM-MD5 needs, a channel binding computed wrongly). When the
/// server answers a login with `-ERR`, the task tries the next way in the
/// list, on the same connection:
///
/// * each way at most once, and at most [`MAX_LOGIN_ATTEMPTS`] in all;
///   SCRAM-SHA-1 is skipped once SCRAM-SHA-256 (unbound) was refused, as
///   both check the same secret the same way;
/// * `-ERR [AUTH]` (RFC 3206: the credentials were wrong) after a way that
///   hands the server the password itself (PLAIN, LOGIN, USER/PASS) ends
///   the login: the server checked the password and refused it, and every
///   further try only adds to the server's count of failures (penalty
///   delays, lockouts);
/// * `-ERR [AUTH]` after a challenge-response way (SCRAM, CRAM-MD5, APOP)
///   may also mean that the server's password store cannot serve that way
///   (Dovecot with hashed passwords answers exactly so), so one more try
///   follows, but only with a way that hands over the password (if one is
///   allowed on the connection), or with unbound SCRAM-SHA-256 after
///   SCRAM-SHA-256-PLUS (the binding may be what failed); the other
///   challenge-response ways fail the same way and are skipped. A wrong
///   password thus costs at most two failures (three when SCRAM-SHA-256-PLUS
///   came first), and one without TLS unless clear text is allowed;
/// * after a plain `-ERR` (no code: a mechanism the server offers but
///   cannot carry out), the next way in the list;
/// * never a way the list does not hold, so never a clear-text one without
///   TLS unless allowed;
/// * not after `-ERR [IN-USE]`, `[LOGIN-DELAY]` or `[SYS/TEMP]` (trying
///   again now cannot help), not when the connection closed or broke, and
///   not when the client itself gave up an exchange (a SCRAM server
///   signature that does not verify, too many iterations: a server that
///   fails to prove itself gets no weaker mechanism);
/// * after SCRAM-SHA-256-PLUS failed, SCRAM says `n` (no binding) rather
///   than `y`: the server advertised -PLUS, so `y` would be refused as a
///   downgrade (RFC 5802 §6). The certificate check still guards the
///   connection.
///
/// The error returned is the last attempt's.
///
/// ```
/// use pop3_proto::client::task::AutoLogin;
/// use pop3_proto::client::{Connection, ConnectionConfig};
/// use pop3_proto::time::Instant;
///
/// let mut conn = Connection::new(ConnectionConfig::default(), Instant::ZERO, None);
/// // A fresh random nonce for SCRAM, from the OS generator.
/// let login = AutoLogin::new("alice", "secret", "8f3ce1b0a2d94e7b9c61f0aa").max_scram_iterations(50_000);
/// # let _ = (&mut conn, login);
/// ```
#[derive(Debug)]
pub struct AutoLogin {
    user: String,
    password: Secret,
    nonce: String,
    allow_cleartext: Option<bool>,
    max_iterations: u32,
    /// The ways not tried yet, strongest first.
    choices: std::collections::VecDeque<super::sasl::LoginChoice>,
    attempts: usize,
    /// SCRAM-SHA-256-PLUS was tried and failed.
    bound_failed: bool,
    current: Option<super::sasl::LoginChoice>,
    inner: Option<AutoInner>,
}

/// The most logins [`AutoLogin`] tries on one connection before it gives
/// up: the first choice and two fallbacks. Three is also where servers
/// commonly start closing the session or delaying the address.
pub const MAX_LOGIN_ATTEMPTS: usize = 3;

#[derive(Debug)]
enum AutoInner {
    User(Login),
    Apop(Apop),
    Sasl(Auth),
}

impl AutoInner {
    fn start(&mut self, client: &mut Client) -> Result<(), ClientError> {
        match self {
            AutoInner::User(t) => t.start(client),
            AutoInner::Apop(t) => t.start(client),
            AutoInner::Sasl(t) => t.start(client),
        }
    }
}

impl AutoLogin {
    /// The task for `user` with `password`; `nonce` is a fresh random token
    /// (printable, no `,`) used if SCRAM is chosen.
    pub fn new(user: &str, password: &str, nonce: &str) -> AutoLogin {
        AutoLogin {
            user: user.into(),
            password: Secret::new(password.as_bytes().to_vec()),
            nonce: nonce.into(),
            allow_cleartext: None,
            max_iterations: super::sasl::DEFAULT_MAX_SCRAM_ITERATIONS,
            choices: Default::default(),
            attempts: 0,
            bound_failed: false,
            current: None,
            inner: None,
        }
    }

    /// Whether PLAIN, LOGIN and USER/PASS may be used without TLS.
    #[must_use]
    pub fn allow_cleartext(mut self, allow: bool) -> AutoLogin {
        self.allow_cleartext = Some(allow);
        self
    }

    /// The most PBKDF2 iterations a SCRAM server may ask for (default
    /// 100,000); more fails with [`SaslError::TooManyIterations`].
    #[must_use]
    pub fn max_scram_iterations(mut self, n: u32) -> AutoLogin {
        self.max_iterations = n;
        self
    }

    /// The inner task for `choice`, on a connection with this channel
    /// binding.
    fn task_for(&self, choice: &super::sasl::LoginChoice, cb: Option<[u8; 32]>) -> AutoInner {
        use super::sasl::{self, LoginChoice, Scram};
        let password = || self.password.clone();
        let text = String::from_utf8_lossy(self.password.expose()).into_owned();
        // `y` only while the bound variant has not failed (see the type's
        // documentation).
        let could_bind = cb.is_some() && !self.bound_failed;
        match choice {
            LoginChoice::Sasl(m) => {
                let scram = |s: Scram| {
                    let s = s.max_iterations(self.max_iterations);
                    if could_bind { s.could_bind() } else { s }
                };
                let mechanism: BoxedMechanism = match m.as_str().to_ascii_uppercase().as_str() {
                    "SCRAM-SHA-256-PLUS" => match cb {
                        Some(cb) => Box::new(
                            Scram::sha256(&self.user, password(), &self.nonce)
                                .max_iterations(self.max_iterations)
                                .with_tls_exporter(cb),
                        ),
                        None => Box::new(scram(Scram::sha256(&self.user, password(), &self.nonce))),
                    },
                    "SCRAM-SHA-256" => {
                        Box::new(scram(Scram::sha256(&self.user, password(), &self.nonce)))
                    }
                    "SCRAM-SHA-1" => {
                        Box::new(scram(Scram::sha1(&self.user, password(), &self.nonce)))
                    }
                    "CRAM-MD5" => Box::new(sasl::CramMd5::new(&self.user, password())),
                    "LOGIN" => Box::new(sasl::Login::new(&self.user, password())),
                    _ => Box::new(sasl::Plain::new(&self.user, password())),
                };
                AutoInner::Sasl(Auth::new(mechanism))
            }
            LoginChoice::Apop => AutoInner::Apop(Apop::new(&self.user, &text)),
            _ => AutoInner::User(Login::new(&self.user, &text)),
        }
    }

    /// Starts the next way in the list.
    fn start_next(&mut self, client: &mut Client) -> Result<(), ClientError> {
        let choice = self
            .choices
            .pop_front()
            .ok_or(ClientError::CleartextRefused)?;
        tracing::debug!(target: super::connection::LOG, "login with {choice:?}");
        let mut inner = self.task_for(&choice, client.tls_exporter().copied());
        self.attempts += 1;
        self.current = Some(choice);
        inner.start(client)?;
        self.inner = Some(inner);
        Ok(())
    }

    /// Whether `error`, ending the current attempt, lets the next one run.
    fn may_fall_back(&self, error: &Error, client: &Client) -> bool {
        let refused = matches!(error, Error::Server(e) if !e.is_transient());
        refused
            && !self.choices.is_empty()
            && self.attempts < MAX_LOGIN_ATTEMPTS
            && client.state() == super::ClientState::Authorization
    }
}

impl Task for AutoLogin {
    type Output = ();

    fn start(&mut self, client: &mut Client) -> Result<(), ClientError> {
        let allow = self
            .allow_cleartext
            .unwrap_or(client.config().insecure_cleartext_login);
        self.choices = super::sasl::login_choices(client, allow).into();
        self.start_next(client)
    }

    fn event(&mut self, event: ClientEvent, cx: &mut TaskContext<'_>) -> Option<Result<(), Error>> {
        let result = match self.inner.as_mut()? {
            AutoInner::User(t) => t.event(event, cx),
            AutoInner::Apop(t) => t.event(event, cx),
            AutoInner::Sasl(t) => t.event(event, cx),
        };
        match result {
            Some(Err(e)) if self.may_fall_back(&e, cx.client()) => {
                if is_auth_rejection(&e) {
                    let current = self.current.as_ref();
                    if current.is_some_and(hands_over_password) {
                        tracing::debug!(
                            target: super::connection::LOG,
                            "login with {:?} failed ({e}): the password is wrong, no other way is tried",
                            self.current
                        );
                        return Some(Err(e));
                    }
                    let after_bound = current.is_some_and(|c| is_sasl(c, "SCRAM-SHA-256-PLUS"));
                    self.choices.retain(|c| {
                        hands_over_password(c) || (after_bound && is_sasl(c, "SCRAM-SHA-256"))
                    });
                    if self.choices.is_empty() {
                        return Some(Err(e));
                    }
                }
                if let Some(super::sasl::LoginChoice::Sasl(m)) = &self.current {
                    if m.as_str().eq_ignore_ascii_case("SCRAM-SHA-256-PLUS") {
                        self.bound_failed = true;
                    } else if m.as_str().eq_ignore_ascii_case("SCRAM-SHA-256") {
                        self.choices.retain(|c| {
                            !matches!(c, super::sasl::LoginChoice::Sasl(m)
                                if m.as_str().eq_ignore_ascii_case("SCRAM-SHA-1"))
                        });
                    }
                }
                tracing::debug!(
                    target: super::connection::LOG,
                    "login with {:?} failed ({e}); trying the next way",
                    self.current
                );
                match self.start_next(cx.client()) {
                    Ok(()) => None,
                    Err(_) => Some(Err(e)),
                }
            }
            other => other,
        }
    }

    fn ready(&mut self, cx: &mut TaskContext<'_>) -> Option<Result<(), Error>> {
        match self.inner.as_mut()? {
            AutoInner::User(t) => t.ready(cx),
            AutoInner::Apop(t) => t.ready(cx),
            AutoInner::Sasl(t) => t.ready(cx),
        }
    }
}

/// Whether `error` is `-ERR [AUTH]`: the server says the credentials were
/// wrong (RFC 3206).
fn is_auth_rejection(error: &Error) -> bool {
    matches!(error, Error::Server(e) if e.kind() == Some(crate::response::CodeKind::Auth))
}

/// Whether `choice` is the SASL mechanism `name`.
fn is_sasl(choice: &super::sasl::LoginChoice, name: &str) -> bool {
    matches!(choice, super::sasl::LoginChoice::Sasl(m) if m.as_str().eq_ignore_ascii_case(name))
}

/// Whether `choice` sends the password itself, for the server to check
/// against whatever form it stores (USER/PASS, PLAIN, LOGIN).
fn hands_over_password(choice: &super::sasl::LoginChoice) -> bool {
    match choice {
        super::sasl::LoginChoice::User => true,
        super::sasl::LoginChoice::Apop => false,
        _ => is_sasl(choice, "PLAIN") || is_sasl(choice, "LOGIN"),
    }
}

/// A command answered by one status line: `DELE`, `RSET`, `NOOP`, `UTF8`,
/// `LANG tag`, `QUIT`, or a command this crate does not know.
#[derive(Debug)]
pub struct Simple {
    command: Option<Command>,
    id: Option<RequestId>,
    /// What dropping the task leaves: see [`Simple::on_drop`](Task::on_drop).
    on_drop: OnDrop,
}

impl Simple {
    /// The task for `command` (any command but AUTH, see [`Client::send`]).
    pub fn new(command: Command) -> Simple {
        Simple {
            on_drop: match command {
                Command::Noop
                | Command::Dele(_)
                | Command::Rset
                | Command::Utf8
                | Command::Lang(_)
                | Command::Stat
                | Command::List(_)
                | Command::Uidl(_)
                | Command::Capa => OnDrop::Drain,
                _ => OnDrop::Poison,
            },
            command: Some(command),
            id: None,
        }
    }
}

impl Task for Simple {
    type Output = StatusLine;

    /// A command whose reply the machine alone acts on (NOOP, DELE, RSET,
    /// UTF8, LANG, STAT, ...) is drained: its reply is read and discarded,
    /// and the machine's state follows it. QUIT (whether the server
    /// committed is then unknown) and any other command poison the
    /// connection.
    fn on_drop(&self) -> OnDrop {
        self.on_drop
    }

    fn start(&mut self, client: &mut Client) -> Result<(), ClientError> {
        let command = self.command.take().ok_or(ClientError::Closed)?;
        self.id = Some(client.send(command)?);
        Ok(())
    }

    fn event(
        &mut self,
        event: ClientEvent,
        cx: &mut TaskContext<'_>,
    ) -> Option<Result<StatusLine, Error>> {
        if event.request_id() != self.id {
            return None;
        }
        Some(match event {
            ClientEvent::Ok { line, .. } => Ok(line),
            other => Err(cx.unexpected(other)),
        })
    }
}

/// `STAT`: message count and total size.
#[derive(Debug, Default)]
pub struct Stat(Option<RequestId>);

impl Stat {
    /// The task.
    pub fn new() -> Stat {
        Stat(None)
    }
}

impl Task for Stat {
    type Output = StatReply;

    fn on_drop(&self) -> OnDrop {
        OnDrop::Drain
    }

    fn start(&mut self, client: &mut Client) -> Result<(), ClientError> {
        self.0 = Some(client.stat()?);
        Ok(())
    }

    fn event(
        &mut self,
        event: ClientEvent,
        cx: &mut TaskContext<'_>,
    ) -> Option<Result<StatReply, Error>> {
        if event.request_id() != self.0 {
            return None;
        }
        Some(match event {
            ClientEvent::Stat { reply, .. } => Ok(reply),
            other => Err(cx.unexpected(other)),
        })
    }
}

/// The kinds of entries a listing can carry, and the command for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListingKind {
    Scan,
    Uid,
    Lang,
}

/// An entry of a listing, taken from its event.
trait Entry: Sized {
    const KIND: ListingKind;
    fn from_event(event: ClientEvent) -> Result<Self, ClientEvent>;
}

impl Entry for ScanLine {
    const KIND: ListingKind = ListingKind::Scan;
    fn from_event(event: ClientEvent) -> Result<Self, ClientEvent> {
        match event {
            ClientEvent::Scan { entry, .. } => Ok(entry),
            other => Err(other),
        }
    }
}

impl Entry for UidLine {
    const KIND: ListingKind = ListingKind::Uid;
    fn from_event(event: ClientEvent) -> Result<Self, ClientEvent> {
        match event {
            ClientEvent::Uid { entry, .. } => Ok(entry),
            other => Err(other),
        }
    }
}

impl Entry for LangLine {
    const KIND: ListingKind = ListingKind::Lang;
    fn from_event(event: ClientEvent) -> Result<Self, ClientEvent> {
        match event {
            ClientEvent::Language { entry, .. } => Ok(entry),
            other => Err(other),
        }
    }
}

/// A listing collected whole, under
/// [`ConnectionConfig::max_listing_entries`].
#[derive(Debug)]
struct Listing<T> {
    id: Option<RequestId>,
    started: bool,
    entries: Vec<T>,
}

impl<T> Default for Listing<T> {
    fn default() -> Self {
        Listing {
            id: None,
            started: false,
            entries: Vec::new(),
        }
    }
}

impl<T: Entry> Listing<T> {
    fn start(&mut self, client: &mut Client) -> Result<(), ClientError> {
        self.id = Some(match T::KIND {
            ListingKind::Scan => client.list(None)?,
            ListingKind::Uid => client.uidl(None)?,
            ListingKind::Lang => client.lang(LangRequest::List)?,
        });
        Ok(())
    }

    fn event(&mut self, event: ClientEvent, cx: &TaskContext<'_>) -> Option<Result<Vec<T>, Error>> {
        if event.request_id() != self.id {
            return None;
        }
        match event {
            ClientEvent::ListingStart { .. } if !self.started => self.started = true,
            ClientEvent::ListingEnd { .. } if self.started => {
                return Some(Ok(core::mem::take(&mut self.entries)));
            }
            ClientEvent::Malformed { line, error, .. } if self.started => {
                tracing::warn!(target: super::connection::LOG, "skipped malformed listing line {line:?}: {error}");
            }
            other if self.started => match T::from_event(other) {
                Ok(_) if self.entries.len() >= cx.config.max_listing_entries => {
                    return Some(Err(Error::ListingTooLong {
                        limit: cx.config.max_listing_entries,
                    }));
                }
                Ok(entry) => self.entries.push(entry),
                Err(other) => return Some(Err(cx.unexpected(other))),
            },
            other => return Some(Err(cx.unexpected(other))),
        }
        None
    }
}

macro_rules! listing_task {
    ($(#[$doc:meta])* $name:ident, $entry:ty) => {
        $(#[$doc])*
        #[derive(Debug, Default)]
        pub struct $name(Listing<$entry>);

        impl $name {
            /// The task.
            pub fn new() -> $name {
                $name(Listing::default())
            }
        }

        impl Task for $name {
            type Output = Vec<$entry>;

            fn on_drop(&self) -> OnDrop {
                OnDrop::Drain
            }

            fn start(&mut self, client: &mut Client) -> Result<(), ClientError> {
                self.0.start(client)
            }

            fn event(
                &mut self,
                event: ClientEvent,
                cx: &mut TaskContext<'_>,
            ) -> Option<Result<Vec<$entry>, Error>> {
                self.0.event(event, cx)
            }
        }
    };
}

listing_task!(
    /// `LIST`: every message's number and size.
    List,
    ScanLine
);
listing_task!(
    /// `UIDL`: every message's unique-id.
    Uidl,
    UidLine
);
listing_task!(
    /// Bare `LANG`: the languages the server offers (RFC 6856).
    Lang,
    LangLine
);

/// What [`UidlAndList`] gives: each listing's own result.
pub type UidlAndListOutput = (Result<Vec<UidLine>, Error>, Result<Vec<ScanLine>, Error>);

/// `UIDL` and `LIST` together, in one write when the server pipelines
/// (one round trip instead of two): each listing with its own result, so
/// that a server without UIDL (`-ERR`) still lists its messages.
#[derive(Debug, Default)]
pub struct UidlAndList {
    uidl: Listing<UidLine>,
    list: Listing<ScanLine>,
    uids: Option<Result<Vec<UidLine>, Error>>,
    sizes: Option<Result<Vec<ScanLine>, Error>>,
}

impl UidlAndList {
    /// The task.
    pub fn new() -> UidlAndList {
        UidlAndList::default()
    }
}

impl Task for UidlAndList {
    type Output = UidlAndListOutput;

    fn on_drop(&self) -> OnDrop {
        OnDrop::Drain
    }

    fn start(&mut self, client: &mut Client) -> Result<(), ClientError> {
        self.uidl.start(client)?;
        self.list.start(client)
    }

    fn event(
        &mut self,
        event: ClientEvent,
        cx: &mut TaskContext<'_>,
    ) -> Option<Result<UidlAndListOutput, Error>> {
        let id = event.request_id();
        if self.uids.is_none() && id == self.uidl.id {
            self.uids = self.uidl.event(event, cx);
        } else if self.sizes.is_none() && id == self.list.id {
            self.sizes = self.list.event(event, cx);
        } else {
            return None;
        }
        if self.uids.is_some() && self.sizes.is_some() {
            let (uids, sizes) = (self.uids.take()?, self.sizes.take()?);
            return Some(Ok((uids, sizes)));
        }
        None
    }
}

/// `LIST n`: one message's size.
#[derive(Debug)]
pub struct ListOne {
    msg: MessageNumber,
    id: Option<RequestId>,
}

impl ListOne {
    /// The task.
    pub fn new(msg: MessageNumber) -> ListOne {
        ListOne { msg, id: None }
    }
}

impl Task for ListOne {
    type Output = ScanLine;

    fn on_drop(&self) -> OnDrop {
        OnDrop::Drain
    }

    fn start(&mut self, client: &mut Client) -> Result<(), ClientError> {
        self.id = Some(client.list(Some(self.msg))?);
        Ok(())
    }

    fn event(
        &mut self,
        event: ClientEvent,
        cx: &mut TaskContext<'_>,
    ) -> Option<Result<ScanLine, Error>> {
        if event.request_id() != self.id {
            return None;
        }
        Some(ScanLine::from_event(event).map_err(|e| cx.unexpected(e)))
    }
}

/// `UIDL n`: one message's unique-id.
#[derive(Debug)]
pub struct UidlOne {
    msg: MessageNumber,
    id: Option<RequestId>,
}

impl UidlOne {
    /// The task.
    pub fn new(msg: MessageNumber) -> UidlOne {
        UidlOne { msg, id: None }
    }
}

impl Task for UidlOne {
    type Output = UidLine;

    fn on_drop(&self) -> OnDrop {
        OnDrop::Drain
    }

    fn start(&mut self, client: &mut Client) -> Result<(), ClientError> {
        self.id = Some(client.uidl(Some(self.msg))?);
        Ok(())
    }

    fn event(
        &mut self,
        event: ClientEvent,
        cx: &mut TaskContext<'_>,
    ) -> Option<Result<UidLine, Error>> {
        if event.request_id() != self.id {
            return None;
        }
        Some(UidLine::from_event(event).map_err(|e| cx.unexpected(e)))
    }
}

/// A message body being received: which command it answers, its `+OK` line,
/// and whether it ended or failed. Read it with
/// [`Connection::poll_body`](super::Connection::poll_body); an adapter's
/// body reader wraps one.
#[derive(Debug)]
pub struct BodyState {
    pub(super) id: RequestId,
    pub(super) line: StatusLine,
    /// No more events for this body will be taken (ended or failed).
    pub(super) done: bool,
    /// The terminating `.` line was read.
    pub(super) ended: bool,
    /// Why the body failed: returned again by every later read, so a short
    /// body can never pass for a complete one.
    pub(super) failure: Option<Error>,
}

impl BodyState {
    pub(super) fn new(id: RequestId, line: StatusLine) -> BodyState {
        BodyState {
            id,
            line,
            done: false,
            ended: false,
            failure: None,
        }
    }

    /// The `+OK` line that opened the body (some servers give the size).
    pub fn status(&self) -> &StatusLine {
        &self.line
    }

    /// The command the body answers.
    pub fn id(&self) -> RequestId {
        self.id
    }

    /// Whether the terminating `.` line was read: the body is complete.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Whether the body will produce no more octets (ended or failed).
    pub fn is_done(&self) -> bool {
        self.done
    }
}

/// `RETR n` or `TOP n lines`: done when the body starts; read the body with
/// [`Connection::poll_body`](super::Connection::poll_body).
#[derive(Debug)]
pub struct Retrieve {
    msg: MessageNumber,
    top: Option<u64>,
    id: Option<RequestId>,
}

impl Retrieve {
    /// `RETR msg`.
    pub fn retr(msg: MessageNumber) -> Retrieve {
        Retrieve {
            msg,
            top: None,
            id: None,
        }
    }

    /// `TOP msg lines`.
    pub fn top(msg: MessageNumber, lines: u64) -> Retrieve {
        Retrieve {
            msg,
            top: Some(lines),
            id: None,
        }
    }
}

impl Task for Retrieve {
    type Output = BodyState;

    fn on_drop(&self) -> OnDrop {
        OnDrop::Drain
    }

    fn start(&mut self, client: &mut Client) -> Result<(), ClientError> {
        self.id = Some(match self.top {
            None => client.retr(self.msg)?,
            Some(lines) => client.top(self.msg, lines)?,
        });
        Ok(())
    }

    fn event(
        &mut self,
        event: ClientEvent,
        cx: &mut TaskContext<'_>,
    ) -> Option<Result<BodyState, Error>> {
        if event.request_id() != self.id {
            return None;
        }
        Some(match event {
            ClientEvent::BodyStart { id, line } => Ok(BodyState::new(id, line)),
            other => Err(cx.unexpected(other)),
        })
    }
}

/// `DELE` of many messages, pipelined when the server allows it: one result
/// per message, in order; `Err` only when the session failed.
#[derive(Debug)]
pub struct DeleMany {
    queued: Vec<(MessageNumber, Option<RequestId>)>,
    results: Vec<(MessageNumber, Result<(), ServerError>)>,
}

impl DeleMany {
    /// The task.
    pub fn new(msgs: impl IntoIterator<Item = MessageNumber>) -> DeleMany {
        DeleMany {
            queued: msgs.into_iter().map(|m| (m, None)).collect(),
            results: Vec::new(),
        }
    }
}

impl Task for DeleMany {
    type Output = Vec<(MessageNumber, Result<(), ServerError>)>;

    fn start(&mut self, client: &mut Client) -> Result<(), ClientError> {
        for (msg, id) in &mut self.queued {
            *id = Some(client.dele(*msg)?);
        }
        Ok(())
    }

    fn event(
        &mut self,
        event: ClientEvent,
        cx: &mut TaskContext<'_>,
    ) -> Option<Result<Self::Output, Error>> {
        let (msg, id) = *self.queued.get(self.results.len())?;
        if event.request_id() != id {
            return None;
        }
        match event {
            ClientEvent::Ok { .. } => self.results.push((msg, Ok(()))),
            ClientEvent::Err { error, .. } => self.results.push((msg, Err(error))),
            other => return Some(Err(cx.unexpected(other))),
        }
        self.ready(cx)
    }

    fn ready(&mut self, _cx: &mut TaskContext<'_>) -> Option<Result<Self::Output, Error>> {
        (self.results.len() == self.queued.len()).then(|| Ok(core::mem::take(&mut self.results)))
    }
}
