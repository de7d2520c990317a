//! A [`BlockingStore`] in PostgreSQL: accounts, messages and the maildrop
//! lock in one database, so that any number of servers, each holding no
//! state of its own, serve the same maildrops.
//!
//! # Schema
//!
//! The store owns its schema: [`PgStore::connect`] applies the migrations
//! it knows and the database lacks, in one transaction under an advisory
//! lock (so that servers starting together migrate once), and records each
//! in `schema_version`. A database whose schema is newer than the code is
//! refused ([`PgError::SchemaTooNew`]).
//!
//! | table | columns | what |
//! | --- | --- | --- |
//! | `accounts` | `id`, `name` (unique), `credential`, `last_login` | users; the credential in the passwd-file's `{SCHEME}secret` forms ([`passwd`](crate::passwd)); the last login, kept while a [login delay](PgStore::with_login_delay) is enforced |
//! | `messages` | `id`, `account`, `uidl`, `size`, `chunks`, `delivered_at`, `retrieved_at` | one row per message: its unique-id (unique per account), its RFC 1939 size counted at delivery, its number of chunks, when it was first retrieved (kept while [EXPIRE](PgStore::with_expire) is enforced) |
//! | `chunks` | `message`, `seq`, `data` | the content, in rows of at most [`CHUNK_SIZE`] octets |
//! | `leases` | `account`, `token`, `expires_at` | the maildrop lock: who holds it, until when |
//!
//! Messages are written a chunk at a time (the chunks of a message stream
//! in one `COPY`), and read a few chunks per query, so a message of any
//! size is delivered and retrieved with at most a few chunks in memory. A
//! read of a message that fits in one chunk fetches the first chunks of
//! the messages after it too, up to [`CHUNK_SIZE`] octets, ready for the
//! next reads: a client retrieving in order costs a query per
//! [`CHUNK_SIZE`] octets rather than per message. Chunks are stored
//! uncompressed (schema version 2; rows written before it keep their
//! compression). A delivered
//! message's unique-id is `P` and its row id (ids come from a sequence and
//! are never reused); an imported one keeps the unique-id the Maildir store
//! gave it ([`PgStore::import_maildir`]).
//!
//! # The maildrop lock
//!
//! Opening a maildrop takes its lease in one statement (one round trip,
//! the account looked up in it): a new row, or the row of an expired lease
//! taken over, with a fresh *fencing token* from the `lease_tokens`
//! sequence and an expiry [`PgOptions::lease`] ahead (30 s by default) on
//! the database's clock. A lease that has not expired makes the open
//! [`StoreError::InUse`] (`-ERR [IN-USE]`). The snapshot of the maildrop
//! (its messages, in delivery order) is read by the next statement, once
//! the lease is committed, so it never shows what the previous holder
//! deleted: messages delivered later appear in the next session, and
//! message numbers never shift.
//!
//! No session holds a database connection between its calls: each call
//! takes one from the pool and gives it back. Each [`PgStore`] runs a
//! thread that renews the leases of the maildrops it has open, every third
//! of the lease time, so an idle session keeps its maildrop; a server that
//! dies stops renewing, and its leases expire within the lease time.
//!
//! The commit (QUIT) is one transaction: it locks the lease row, checks
//! that it still holds this session's token, deletes exactly the marked
//! messages (their chunks go with them) and removes the lease. A session
//! whose lease was taken over (it expired, and another session opened the
//! maildrop) deletes nothing: its QUIT gets `-ERR [SYS/TEMP]`
//! ([`Cause::NotDeleted`]). Dropping a maildrop without a commit removes
//! the lease and deletes nothing.
//!
//! # LOGIN-DELAY and EXPIRE
//!
//! Both are enforced on the database's clock (`now()`), so that frontends
//! whose clocks differ agree. With [`PgStore::with_login_delay`], the open
//! that wins the lease also sets the account's `last_login`, in the same
//! transaction, unless the last login is more recent than the delay (or
//! in the future): then nothing changes and the open is
//! [`StoreError::LoginDelay`] (`-ERR [LOGIN-DELAY]`). With
//! [`PgStore::with_expire`], the commit, in its transaction and after the
//! token check, sets `retrieved_at` of the messages the session retrieved
//! in full (where not already set) and deletes, besides the marked ones,
//! the account's messages retrieved `n` days ago or more. A commit that
//! does not happen records nothing and deletes nothing.
//!
//! # Failures
//!
//! A database that cannot be reached, or fails a statement, is
//! [`StoreError::Temporary`] (`-ERR [SYS/TEMP]`); a transaction that did
//! not commit changed nothing, so no mail is lost. Connection strings are
//! the client's (`host=... user=... dbname=...` or a `postgresql://` URL),
//! several hosts with `target_session_attrs=read-write` included. The
//! connections are not encrypted: run the database on the servers' own
//! network, or on the same host.
//!
//! # Example
//!
//! ```no_run
//! use pop3_blocking::postgres::PgStore;
//! use pop3_proto::store::{BlockingMaildrop, BlockingStore};
//!
//! let store = PgStore::connect("host=127.0.0.1 user=mail dbname=mail")?;
//! store.add_user("alice", "{PLAIN}wonderland")?;
//! store.deliver("alice", &mut &b"Subject: hi\n\nHello\n"[..])?;
//! let drop = store.open("alice")?;
//! assert_eq!(drop.messages()[0].size, 22); // 19 octets, 3 bare LFs
//! drop.commit(vec![0].into())?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io::{self, Read};
use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use pop3_proto::scram::{DeploymentSecret, MIN_ITERATIONS, ScramHash, ScramKeys};
use pop3_proto::store::{
    BlockingMaildrop, BlockingMessageReader, BlockingStore, Cause, CredentialForms, IoKind,
    MessageInfo, StoreError, TokenValidator, Update,
};
use pop3_proto::types::{Secret, Uid};
use postgres::NoTls;
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::Type;
use r2d2_postgres::PostgresConnectionManager;

use crate::maildir::{MaildirStore, OctetCounter};
use crate::passwd::{LineProblem, PasswdError, PasswdFile, StoredCredential, is_safe_user};
use pop3_proto::__tracing as tracing;

/// The largest chunk of a message, in a row and in memory.
pub const CHUNK_SIZE: usize = 256 * 1024;

/// The most chunks a reader fetches with one query.
const WINDOW: i64 = 4;

/// The most octets of the messages after the one read that a read of a
/// one-chunk message fetches with it.
const READ_AHEAD: usize = CHUNK_SIZE;

/// The longest EXPIRE counted, in days (a million days back stays within
/// PostgreSQL's timestamps).
const MAX_EXPIRE_DAYS: u32 = 1_000_000;

/// The most messages fetched ahead by one read.
const MAX_AHEAD: usize = 64;

/// The schema's migrations, in order: migration `n` (from 1) is
/// `MIGRATIONS[n - 1]`. Never edit one that was released; add another.
const MIGRATIONS: &[&str] = &[
    "
CREATE TABLE accounts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL UNIQUE,
    credential text NOT NULL
);
CREATE TABLE messages (
    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    account bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    uidl text NOT NULL,
    size bigint NOT NULL,
    chunks integer NOT NULL,
    delivered_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (account, uidl)
);
CREATE INDEX messages_by_account ON messages (account, id);
CREATE TABLE chunks (
    message bigint NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    seq integer NOT NULL,
    data bytea NOT NULL,
    PRIMARY KEY (message, seq)
);
CREATE TABLE leases (
    account bigint PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    token bigint NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE SEQUENCE lease_tokens;
",
    // Chunks are stored uncompressed: mail is mostly base64 or already
    // compressed, so compressing it costs CPU at delivery and at every read
    // for little space. Applies to rows written from now on.
    "ALTER TABLE chunks ALTER COLUMN data SET STORAGE EXTERNAL;",
    // LOGIN-DELAY and EXPIRE n: each account's last login, and when each
    // message was first retrieved with RETR (set only while EXPIRE is
    // enforced).
    "
ALTER TABLE accounts ADD COLUMN last_login timestamptz;
ALTER TABLE messages ADD COLUMN retrieved_at timestamptz;
",
];

/// The schema version this code writes: the number of its migrations.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// The advisory lock key under which migrations run ("pop3" in ASCII).
const MIGRATION_LOCK: i64 = 0x706f_7033;

type Pool = r2d2::Pool<PostgresConnectionManager<NoTls>>;

/// Why setting up, delivering to or managing the store failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum PgError {
    /// The connection string is malformed.
    Config(postgres::Error),
    /// No connection could be had (the database is unreachable, or the
    /// pool's wait ran out): try again later.
    Unavailable(r2d2::Error),
    /// A statement failed.
    Database(postgres::Error),
    /// The database's schema is newer than this code knows.
    SchemaTooNew {
        /// The version in the database.
        found: i32,
        /// The newest version this code knows.
        known: i32,
    },
    /// The user has no account.
    NoSuchUser,
    /// The user name is not allowed (empty, over 255 octets, white space,
    /// control characters, `/`, `\`, `:` or a leading `.`).
    BadUserName,
    /// The credential is not in a form the passwd-file accepts.
    BadCredential(LineProblem),
    /// Reading the message (or a Maildir) failed.
    Io(io::Error),
    /// The passwd-file could not be read.
    Passwd(PasswdError),
    /// A Maildir could not be read for import.
    Maildir(StoreError),
    /// A stored unique-id is not a valid one.
    Corrupt,
}

impl PgError {
    /// Whether trying again later may help: the database could not be
    /// reached or a statement failed on the connection (sysexits'
    /// `EX_TEMPFAIL`).
    ///
    /// ```
    /// use pop3_blocking::postgres::PgError;
    /// assert!(!PgError::NoSuchUser.is_temporary());
    /// ```
    pub fn is_temporary(&self) -> bool {
        match self {
            PgError::Unavailable(_) => true,
            // No server error (the connection failed), or a server error
            // of the classes that pass: connection exceptions (08),
            // rolled-back transactions (40), insufficient resources (53),
            // operator intervention such as a shutdown (57), system
            // errors (58).
            PgError::Database(e) => {
                e.is_closed()
                    || e.code().is_none_or(|c| {
                        matches!(c.code().get(..2), Some("08" | "40" | "53" | "57" | "58"))
                    })
            }
            PgError::Maildir(e) => e.is_transient(),
            _ => false,
        }
    }
}

impl fmt::Display for PgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PgError::Config(e) => write!(f, "bad connection string: {e}"),
            PgError::Unavailable(e) => write!(f, "database unavailable: {e}"),
            PgError::Database(e) => write!(f, "database error: {e}"),
            PgError::SchemaTooNew { found, known } => write!(
                f,
                "the database's schema is version {found}, newer than this code's {known}"
            ),
            PgError::NoSuchUser => f.write_str("no such user"),
            PgError::BadUserName => f.write_str("user name not allowed"),
            PgError::BadCredential(p) => write!(f, "bad credential: {p}"),
            PgError::Io(e) => write!(f, "reading the message: {e}"),
            PgError::Passwd(e) => e.fmt(f),
            PgError::Maildir(e) => write!(f, "reading a Maildir: {e}"),
            PgError::Corrupt => f.write_str("a stored unique-id is not valid"),
        }
    }
}

impl std::error::Error for PgError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PgError::Config(e) | PgError::Database(e) => Some(e),
            PgError::Unavailable(e) => Some(e),
            PgError::Io(e) => Some(e),
            PgError::Passwd(e) => Some(e),
            PgError::Maildir(e) => Some(e),
            _ => None,
        }
    }
}

impl From<postgres::Error> for PgError {
    fn from(e: postgres::Error) -> Self {
        PgError::Database(e)
    }
}

impl From<r2d2::Error> for PgError {
    fn from(e: r2d2::Error) -> Self {
        PgError::Unavailable(e)
    }
}

/// The store's settings.
///
/// ```
/// use std::time::Duration;
/// use pop3_blocking::postgres::PgOptions;
/// let mut options = PgOptions::default();
/// options.lease = Duration::from_secs(10);
/// assert_eq!(options.pool_size, 16);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PgOptions {
    /// How long a maildrop's lease lasts without renewal: how soon the
    /// maildrops of a server that died can be opened again. Default 30 s.
    pub lease: Duration,
    /// The most connections the pool holds. Default 16.
    pub pool_size: u32,
    /// How long a call waits for a connection before it fails as
    /// temporary (and connecting, unless the connection string says).
    /// Default 5 s.
    pub connect_timeout: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            lease: Duration::from_secs(30),
            pool_size: 16,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// The leases of the maildrops a store has open: token → account.
type Held = Arc<Mutex<HashMap<i64, i64>>>;

/// Maildrops in PostgreSQL. See the [module documentation](self).
pub struct PgStore {
    pool: Pool,
    lease: Duration,
    login_delay: Option<Duration>,
    expire: Option<u32>,
    secret: DeploymentSecret,
    tokens: Option<TokenValidator>,
    forms: Mutex<CredentialForms>,
    held: Held,
    /// Dropped with the store: the renewing thread then ends.
    _renewing: mpsc::Sender<()>,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

fn temporary(context: &'static str, kind: IoKind) -> StoreError {
    StoreError::Temporary(Cause::Io { context, kind })
}

/// A failed statement or connection, as the store contract reports it.
fn db(e: postgres::Error) -> StoreError {
    tracing::warn!(error = %e, "database call failed");
    temporary("database", io_kind(&e))
}

fn io_kind(e: &postgres::Error) -> IoKind {
    if e.is_closed() {
        IoKind::ConnectionReset
    } else {
        IoKind::Other
    }
}

fn unavailable(e: r2d2::Error) -> StoreError {
    tracing::warn!(error = %e, "no database connection");
    temporary("database connection", IoKind::TimedOut)
}

/// Runs `call` on a connection from the pool, and again on another if the
/// connection turns out closed (the database restarted, or the network cut
/// it), as many times as the pool may hold such connections plus one. The
/// pool does not check a connection before handing it out, which would
/// cost a round trip per call; a closed one is dropped when it comes back.
/// `call` must be safe to make again after its connection failed.
fn with_conn<T>(
    pool: &Pool,
    mut call: impl FnMut(&mut postgres::Client) -> Result<T, postgres::Error>,
) -> Result<T, StoreError> {
    let mut attempts = pool.max_size();
    loop {
        let mut conn = pool.get().map_err(unavailable)?;
        match call(&mut conn) {
            Err(e) if connection_lost(&e) && attempts > 0 => {
                tracing::debug!(error = %e, "database connection closed: trying another");
                attempts -= 1;
            }
            result => return result.map_err(db),
        }
    }
}

/// Whether `e` says the connection is gone: closed, broken under the
/// client (an I/O error such as a reset: a cut connection reads as a clean
/// close or as a reset depending on what was in flight), or ended by the
/// server (a shutdown or restart: `57P01`–`57P03`).
fn connection_lost(e: &postgres::Error) -> bool {
    use std::error::Error as _;
    e.is_closed()
        || e.source().is_some_and(|s| s.is::<std::io::Error>())
        || e.code().is_some_and(|c| {
            matches!(c.code(), "57P01" | "57P02" | "57P03") || c.code().starts_with("08")
        })
}

/// Runs `body` in a transaction on a connection from the pool, and
/// commits. A connection found closed at `BEGIN` is dropped and another
/// taken (see [`with_conn`]); once `body` has begun, a failure is returned.
fn in_transaction<T>(
    pool: &Pool,
    body: impl FnOnce(&mut postgres::Transaction<'_>) -> Result<T, PgError>,
) -> Result<T, PgError> {
    let mut attempts = pool.max_size();
    loop {
        let mut conn = pool.get()?;
        let mut tx = match conn.transaction() {
            Ok(tx) => tx,
            Err(e) if connection_lost(&e) && attempts > 0 => {
                attempts -= 1;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let done = body(&mut tx)?;
        tx.commit()?;
        return Ok(done);
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

impl PgStore {
    /// Connects with the default [`PgOptions`] and brings the schema up to
    /// date.
    pub fn connect(conninfo: &str) -> Result<Self, PgError> {
        Self::connect_with(conninfo, PgOptions::default())
    }

    /// Connects with `options` and brings the schema up to date.
    pub fn connect_with(conninfo: &str, options: PgOptions) -> Result<Self, PgError> {
        let mut config: postgres::Config = conninfo.parse().map_err(PgError::Config)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.connect_timeout);
        }
        let manager = PostgresConnectionManager::new(config, NoTls);
        let pool = r2d2::Pool::builder()
            .max_size(options.pool_size.max(1))
            .min_idle(Some(0))
            // No validity query on every checkout (a round trip per call):
            // a connection found closed is dropped and the call made again
            // on another ([`with_conn`]).
            .test_on_check_out(false)
            .connection_timeout(options.connect_timeout)
            .build_unchecked(manager);
        migrate(&mut *pool.get()?)?;
        let held: Held = Arc::default();
        let (stop, stopped) = mpsc::channel();
        let lease = options.lease.max(Duration::from_millis(100));
        let (renew_pool, renew_held) = (pool.clone(), held.clone());
        std::thread::Builder::new()
            .name("pop3-lease-renewal".into())
            .spawn(move || renew(&renew_pool, &renew_held, lease, &stopped))
            .map_err(PgError::Io)?;
        let store = PgStore {
            pool,
            lease,
            login_delay: None,
            expire: None,
            secret: DeploymentSecret::ephemeral(),
            tokens: None,
            forms: Mutex::new(CredentialForms::new(true, false)),
            held,
            _renewing: stop,
        };
        let _ = store.refresh_credential_forms()?;
        Ok(store)
    }

    /// Derives `{PLAIN}` users' SCRAM salts and unknown users' decoy keys
    /// from `secret` (keep it across restarts, and the same on every
    /// server) instead of one drawn at connect.
    #[must_use]
    pub fn with_deployment_secret(mut self, secret: DeploymentSecret) -> Self {
        self.secret = secret;
        self
    }

    /// Enforces a minimum time between two logins of a user (RFC 2449
    /// `LOGIN-DELAY`) on the database's clock: an open sooner than `delay`
    /// after the account's last successful one is
    /// [`StoreError::LoginDelay`] and does not count as a login. Advertise
    /// the same delay with `ServerConfig::login_delay`. Off by default.
    /// Whole seconds count.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use pop3_blocking::postgres::PgStore;
    /// let store = PgStore::connect("host=127.0.0.1 user=mail dbname=mail")?
    ///     .with_login_delay(Some(Duration::from_secs(900)));
    /// assert_eq!(store.login_delay_enforced(), Some(Duration::from_secs(900)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn with_login_delay(mut self, delay: Option<Duration>) -> Self {
        self.login_delay = delay.map(|d| Duration::from_secs(d.as_secs()));
        self
    }

    /// The minimum time between two logins of a user, if enforced.
    pub fn login_delay_enforced(&self) -> Option<Duration> {
        self.login_delay
    }

    /// Enforces RFC 2449 `EXPIRE days` on the database's clock: a message
    /// retrieved in full with RETR `days` days ago or more is deleted at
    /// the next commit (QUIT) of its maildrop. Advertise the same value
    /// with `ServerConfig::expire`. Off by default (and then no retrieval
    /// is recorded). Values over a million days count as a million.
    ///
    /// ```no_run
    /// use pop3_blocking::postgres::PgStore;
    /// let store = PgStore::connect("host=127.0.0.1 user=mail dbname=mail")?.with_expire(Some(30));
    /// assert_eq!(store.expire_enforced(), Some(30));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn with_expire(mut self, days: Option<u32>) -> Self {
        self.expire = days;
        self
    }

    /// The days after which retrieved messages are deleted, if enforced.
    pub fn expire_enforced(&self) -> Option<u32> {
        self.expire
    }

    /// Checks OAuth 2.0 bearer tokens (OAUTHBEARER, XOAUTH2) with
    /// `validator`.
    #[must_use]
    pub fn with_token_validator(mut self, validator: TokenValidator) -> Self {
        self.tokens = Some(validator);
        self
    }

    /// Reads again which credential checks every account allows (done at
    /// connect and after [`add_user`](Self::add_user)): CAPA offers APOP
    /// and CRAM-MD5 only when every account is `{PLAIN}`, a SCRAM when
    /// every account can do it, as for a passwd-file.
    pub fn refresh_credential_forms(&self) -> Result<CredentialForms, PgError> {
        let row = self.pool.get()?.query_one(
            "SELECT count(*) > 0,
                coalesce(bool_and(upper(credential) LIKE '{PLAIN}_%'
                    OR upper(credential) LIKE '{CLEARTEXT}_%'), false),
                coalesce(bool_and(upper(credential) LIKE '{PLAIN}_%'
                    OR upper(credential) LIKE '{CLEARTEXT}_%'
                    OR upper(credential) LIKE '{SCRAM-SHA-1}%'), false),
                coalesce(bool_and(upper(credential) LIKE '{PLAIN}_%'
                    OR upper(credential) LIKE '{CLEARTEXT}_%'
                    OR upper(credential) LIKE '{SCRAM-SHA-256}%'), false)
             FROM accounts",
            &[],
        )?;
        let any: bool = row.get(0);
        let forms = CredentialForms::new(true, any && row.get::<_, bool>(1))
            .with_scram(any && row.get::<_, bool>(2), any && row.get::<_, bool>(3))
            .with_oauth_bearer(self.tokens.is_some());
        if let Ok(mut f) = self.forms.lock() {
            *f = forms;
        }
        Ok(forms)
    }

    /// Adds an account, or replaces its credential: `credential` in the
    /// passwd-file's forms (`{PLAIN}secret`, `{SHA512-CRYPT}$6$...`,
    /// `{ARGON2ID}...`, `{SCRAM-SHA-256}iterations,salt,StoredKey,ServerKey`).
    pub fn add_user(&self, user: &str, credential: &str) -> Result<(), PgError> {
        if !is_safe_user(user) || user.contains(':') {
            return Err(PgError::BadUserName);
        }
        StoredCredential::parse(credential).map_err(PgError::BadCredential)?;
        self.pool.get()?.execute(
            "INSERT INTO accounts (name, credential) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET credential = EXCLUDED.credential",
            &[&user, &credential],
        )?;
        let _ = self.refresh_credential_forms()?;
        Ok(())
    }

    /// Delivers a message to `user`, read from `message` a chunk at a time
    /// (bare LFs and CRLFs both taken as line ends, as for RETR). It is
    /// durable when this returns `Ok`: its transaction committed. On
    /// error nothing was delivered.
    pub fn deliver(&self, user: &str, message: &mut dyn Read) -> Result<Delivered, PgError> {
        in_transaction(&self.pool, |tx| {
            let account: i64 = tx
                .query_opt("SELECT id FROM accounts WHERE name = $1", &[&user])?
                .ok_or(PgError::NoSuchUser)?
                .get(0);
            insert_message(tx, account, None, message)
        })
    }

    /// Imports the users of `users` (their credentials as they are) and
    /// their Maildirs under `root` (`root/<user>/{cur,new}`), giving each
    /// message the unique-id the [Maildir store](crate::maildir) gives it,
    /// so clients that kept unique-ids download nothing again. A message
    /// whose unique-id the account already has is skipped: running it
    /// again imports only what is new. Each message is its own
    /// transaction; the Maildirs are left as they are.
    pub fn import_maildir(
        &self,
        root: impl AsRef<Path>,
        users: &PasswdFile,
    ) -> Result<Imported, PgError> {
        let maildirs = MaildirStore::new(root.as_ref(), users.clone())
            .create_missing(false)
            .move_new_to_cur(false);
        let mut imported = Imported::default();
        let mut names: Vec<&str> = users.users().collect();
        names.sort_unstable();
        for user in names {
            let credential = users.credential_field(user).unwrap_or_default();
            let mut conn = self.pool.get()?;
            let account: i64 = conn
                .query_one(
                    "INSERT INTO accounts (name, credential) VALUES ($1, $2)
                     ON CONFLICT (name) DO UPDATE SET credential = EXCLUDED.credential
                     RETURNING id",
                    &[&user, &credential],
                )?
                .get(0);
            imported.users += 1;
            let mut maildrop = match maildirs.open(user) {
                Ok(m) => m,
                Err(StoreError::Permanent(Cause::MaildropNotFound)) => continue,
                Err(e) => return Err(PgError::Maildir(e)),
            };
            for index in 0..maildrop.messages().len() {
                let uid = maildrop.messages()[index].uid.clone();
                let known = conn
                    .query_opt(
                        "SELECT 1 FROM messages WHERE account = $1 AND uidl = $2",
                        &[&account, &uid.as_str()],
                    )?
                    .is_some();
                if known {
                    imported.skipped += 1;
                    continue;
                }
                let mut reader = match maildrop.read(index) {
                    Ok(r) => r,
                    Err(StoreError::MessageGone) => continue,
                    Err(e) => return Err(PgError::Maildir(e)),
                };
                let mut source = ChunkRead {
                    reader: &mut reader,
                    pending: Bytes::new(),
                };
                let mut tx = conn.transaction()?;
                insert_message(&mut tx, account, Some(uid.as_str()), &mut source)?;
                tx.commit()?;
                imported.messages += 1;
            }
        }
        let _ = self.refresh_credential_forms()?;
        Ok(imported)
    }

    fn credential(&self, user: &str) -> Result<Option<StoredCredential>, StoreError> {
        let row = with_conn(&self.pool, |conn| {
            conn.query_typed_opt(
                "SELECT credential FROM accounts WHERE name = $1",
                &[(&user, Type::TEXT)],
            )
        })?;
        Ok(row.map(|r| {
            let field: &str = r.get(0);
            // A credential the passwd-file would refuse never matches.
            StoredCredential::parse(field)
                .unwrap_or_else(|_| StoredCredential::parse("").expect("empty is unusable"))
        }))
    }

    fn open_maildrop(&self, user: &str) -> Result<PgMaildrop, StoreError> {
        // The lease in one statement (one round trip, its own transaction):
        // a row for the account if it exists, with the token won or NULL.
        // Run again on a connection found closed: a lease won by a
        // statement whose reply was lost with the connection makes this
        // open `InUse` until it expires, and loses nothing.
        // With a login delay, a login too soon after the last one takes no
        // lease, and a lease won records the login, in the same statement.
        let delay = self.login_delay.map(secs);
        let won = with_conn(&self.pool, |conn| {
            conn.query_typed_opt(
                "WITH account AS (SELECT id, last_login FROM accounts WHERE name = $1),
                 allowed AS (
                    SELECT id FROM account
                    WHERE $3::float8 IS NULL OR last_login IS NULL
                       OR last_login <= now() - make_interval(secs => $3))
                 , won AS (
                    INSERT INTO leases (account, token, expires_at)
                    SELECT id, nextval('lease_tokens'), now() + make_interval(secs => $2)
                    FROM allowed
                    ON CONFLICT (account) DO UPDATE
                       SET token = EXCLUDED.token, expires_at = EXCLUDED.expires_at
                       WHERE leases.expires_at <= now()
                    RETURNING account, token)
                 , login AS (
                    UPDATE accounts SET last_login = now()
                    FROM won WHERE accounts.id = won.account AND $3::float8 IS NOT NULL)
                 SELECT id, (SELECT token FROM won), EXISTS (SELECT 1 FROM allowed)
                 FROM account",
                &[
                    (&user, Type::TEXT),
                    (&secs(self.lease), Type::FLOAT8),
                    (&delay, Type::FLOAT8),
                ],
            )
        })?
        .ok_or(StoreError::Permanent(Cause::NoSuchUser))?;
        let account: i64 = won.get(0);
        if !won.get::<_, bool>(2) {
            return Err(StoreError::LoginDelay);
        }
        let Some(token) = won.get::<_, Option<i64>>(1) else {
            return Err(StoreError::InUse);
        };
        // The snapshot, read after the lease committed: whatever the
        // previous holder's commit deleted (it committed before its lease
        // went, or its lease was taken over and it deletes nothing) is gone
        // from it. (Read in the lease's statement, it would be the
        // statement's snapshot, which may predate that commit.)
        let rows = with_conn(&self.pool, |conn| {
            conn.query_typed(
                "SELECT id, uidl, size, chunks FROM messages
                 WHERE account = $1 ORDER BY id",
                &[(&account, Type::INT8)],
            )
        });
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) => {
                // Best effort: a lease that cannot be removed now expires.
                let _ = with_conn(&self.pool, |conn| {
                    conn.execute(
                        "DELETE FROM leases WHERE account = $1 AND token = $2",
                        &[&account, &token],
                    )
                });
                return Err(e);
            }
        };
        let mut messages = Vec::with_capacity(rows.len());
        let mut stored = Vec::with_capacity(rows.len());
        for row in rows {
            let uid: String = row.get(1);
            let size: i64 = row.get(2);
            let uid =
                Uid::new(Bytes::from(uid)).map_err(|_| StoreError::Permanent(Cause::Corrupt))?;
            messages.push(MessageInfo {
                size: u64::try_from(size).map_err(|_| StoreError::Permanent(Cause::Corrupt))?,
                uid,
            });
            stored.push((row.get::<_, i64>(0), row.get::<_, i32>(3)));
        }
        if let Ok(mut held) = self.held.lock() {
            held.insert(token, account);
        }
        Ok(PgMaildrop {
            expire: self.expire.map(|d| d.min(MAX_EXPIRE_DAYS) as i32),
            pool: self.pool.clone(),
            held: self.held.clone(),
            account,
            token,
            stored,
            messages,
            ahead: VecDeque::new(),
            released: false,
        })
    }
}

/// What [`PgStore::deliver`] stored.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Delivered {
    /// The message's unique-id.
    pub uid: Uid,
    /// Its RFC 1939 size (line ends as CRLF, no dot-stuffing).
    pub size: u64,
}

/// What [`PgStore::import_maildir`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Imported {
    /// Accounts added or updated.
    pub users: usize,
    /// Messages imported.
    pub messages: usize,
    /// Messages skipped: the account already had their unique-ids.
    pub skipped: usize,
}

/// Applies the migrations the database lacks.
fn migrate(conn: &mut postgres::Client) -> Result<(), PgError> {
    let mut tx = conn.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_version (
            version integer PRIMARY KEY,
            applied_at timestamptz NOT NULL DEFAULT now()
        )",
    )?;
    let found: i32 = tx
        .query_one("SELECT coalesce(max(version), 0) FROM schema_version", &[])?
        .get(0);
    if found > SCHEMA_VERSION {
        return Err(PgError::SchemaTooNew {
            found,
            known: SCHEMA_VERSION,
        });
    }
    for (version, sql) in (1..).zip(MIGRATIONS).skip(found as usize) {
        tx.batch_execute(sql)?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES ($1)",
            &[&version],
        )?;
        tracing::info!(version, "schema migrated");
    }
    tx.commit()?;
    Ok(())
}

/// Renews the leases in `held` every third of `lease` until `stop` goes.
fn renew(pool: &Pool, held: &Held, lease: Duration, stop: &mpsc::Receiver<()>) {
    loop {
        match stop.recv_timeout(lease / 3) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        let tokens: Vec<i64> = match held.lock() {
            Ok(held) => held.keys().copied().collect(),
            Err(_) => return,
        };
        if tokens.is_empty() {
            continue;
        }
        let renewed = with_conn(pool, |conn| {
            conn.execute(
                "UPDATE leases SET expires_at = now() + make_interval(secs => $2)
                 WHERE token = ANY($1)",
                &[&tokens, &secs(lease)],
            )
        });
        if let Err(e) = renewed {
            tracing::warn!(error = %e, "leases not renewed");
        }
    }
}

/// Inserts a message read from `message` in `tx`: its row, then its chunks,
/// then its size. Its unique-id is `uid`, or `P` and its id.
fn insert_message(
    tx: &mut postgres::Transaction<'_>,
    account: i64,
    uid: Option<&str>,
    message: &mut dyn Read,
) -> Result<Delivered, PgError> {
    let id: i64 = tx
        .query_one(
            "SELECT nextval(pg_get_serial_sequence('messages', 'id'))",
            &[],
        )?
        .get(0);
    let uid = match uid {
        Some(uid) => uid.to_owned(),
        None => format!("P{id}"),
    };
    let uid = Uid::new(Bytes::from(uid)).map_err(|_| PgError::Corrupt)?;
    tx.execute(
        "INSERT INTO messages (id, account, uidl, size, chunks) VALUES ($1, $2, $3, 0, 0)",
        &[&id, &account, &uid.as_str()],
    )?;
    // The chunks go in one COPY: the rows stream to the database without
    // a round trip each, a chunk in memory at a time.
    let mut counter = OctetCounter::default();
    let mut buf = vec![0; CHUNK_SIZE];
    let mut seq: i32 = 0;
    let copy = tx.copy_in("COPY chunks (message, seq, data) FROM STDIN (FORMAT binary)")?;
    let mut rows = BinaryCopyInWriter::new(copy, &[Type::INT8, Type::INT4, Type::BYTEA]);
    loop {
        let n = fill(message, &mut buf).map_err(PgError::Io)?;
        if n == 0 {
            break;
        }
        counter.update(&buf[..n]);
        rows.write(&[&id, &seq, &&buf[..n]])?;
        seq += 1;
        if n < buf.len() {
            break;
        }
    }
    rows.finish()?;
    let size = counter.finish();
    tx.execute(
        "UPDATE messages SET size = $2, chunks = $3 WHERE id = $1",
        &[&id, &(size as i64), &seq],
    )?;
    Ok(Delivered { uid, size })
}

/// Reads into `buf` until it is full or the input ends.
fn fill(input: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// A [`BlockingMessageReader`] as a [`Read`].
struct ChunkRead<'a, R> {
    reader: &'a mut R,
    pending: Bytes,
}

impl<R: BlockingMessageReader> Read for ChunkRead<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pending.is_empty() {
            match self.reader.next_chunk() {
                Ok(Some(chunk)) => self.pending = chunk,
                Ok(None) => return Ok(0),
                Err(e) => return Err(io::Error::other(e)),
            }
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending.split_to(n));
        Ok(n)
    }
}

impl BlockingStore for PgStore {
    type Maildrop = PgMaildrop;

    fn credential_forms(&self) -> CredentialForms {
        self.forms
            .lock()
            .map(|f| *f)
            .unwrap_or(CredentialForms::new(true, false))
    }

    fn verify_password(&self, user: &str, password: &Secret) -> Result<bool, StoreError> {
        match self.credential(user)? {
            Some(credential) => Ok(credential.verify(password)),
            None => {
                StoredCredential::verify_nobody(password);
                Ok(false)
            }
        }
    }

    fn shared_secret(&self, user: &str) -> Result<Option<Secret>, StoreError> {
        Ok(self.credential(user)?.and_then(|c| c.shared_secret()))
    }

    fn scram_keys(&self, user: &str, hash: ScramHash) -> Result<Option<ScramKeys>, StoreError> {
        Ok(match self.credential(user)? {
            Some(credential) => credential.scram_keys(user, hash, &self.secret),
            None if self.credential_forms().scram(hash) => {
                Some(self.secret.decoy_keys_derived(hash, user, MIN_ITERATIONS))
            }
            None => None,
        })
    }

    fn verify_bearer_token(&self, user: &str, token: &Secret) -> Result<bool, StoreError> {
        Ok(self.tokens.as_ref().is_some_and(|v| v.check(user, token)))
    }

    fn bearer_token_owner(&self, token: &Secret) -> Result<Option<String>, StoreError> {
        Ok(self.tokens.as_ref().and_then(|v| v.owner(token)))
    }

    fn open(&self, user: &str) -> Result<PgMaildrop, StoreError> {
        self.open_maildrop(user)
    }
}

/// An open maildrop: the snapshot taken at open and the lease's token.
/// Dropping it removes the lease and deletes nothing;
/// [`BlockingMaildrop::commit`] deletes, then removes it.
pub struct PgMaildrop {
    /// The EXPIRE days in force, if enforced.
    expire: Option<i32>,
    pool: Pool,
    held: Held,
    account: i64,
    token: i64,
    /// Each message's row id and number of chunks.
    stored: Vec<(i64, i32)>,
    messages: Vec<MessageInfo>,
    /// The first chunks of the messages after the last one read, fetched
    /// with it, in order: (index, chunk). At most [`READ_AHEAD`] octets.
    ahead: VecDeque<(usize, Bytes)>,
    released: bool,
}

impl fmt::Debug for PgMaildrop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgMaildrop")
            .field("account", &self.account)
            .field("token", &self.token)
            .field("messages", &self.messages.len())
            .finish_non_exhaustive()
    }
}

impl PgMaildrop {
    /// The lease's fencing token.
    pub fn token(&self) -> i64 {
        self.token
    }

    fn forget_lease(&mut self) {
        self.released = true;
        if let Ok(mut held) = self.held.lock() {
            held.remove(&self.token);
        }
    }
}

impl BlockingMaildrop for PgMaildrop {
    type Reader = PgReader;

    /// Reading changes nothing.
    const READ_AHEAD_MESSAGES: bool = true;

    fn messages(&self) -> &[MessageInfo] {
        &self.messages
    }

    fn read(&mut self, index: usize) -> Result<PgReader, StoreError> {
        let &(id, chunks) = self
            .stored
            .get(index)
            .ok_or(StoreError::Permanent(Cause::NoSuchMessage))?;
        let mut reader = PgReader {
            pool: self.pool.clone(),
            id,
            next: 0,
            chunks,
            window: VecDeque::new(),
        };
        while self.ahead.front().is_some_and(|(i, _)| *i < index) {
            self.ahead.pop_front();
        }
        if let Some((_, chunk)) = self.ahead.front().filter(|(i, _)| *i == index) {
            reader.window.push_back(chunk.clone());
            reader.next = 1;
            self.ahead.pop_front();
            return Ok(reader);
        }
        self.ahead.clear();
        // A message that fits in one chunk is fetched with the first
        // chunks of the ones after it, while they fit in READ_AHEAD: a
        // client retrieving messages in order then costs one query per
        // READ_AHEAD octets, not one per message.
        let single = |i: usize| {
            self.stored.get(i).is_some_and(|s| s.1 == 1)
                && self.messages[i].size <= READ_AHEAD as u64
        };
        if !single(index) {
            return Ok(reader);
        }
        let mut ids = vec![id];
        let mut octets = self.messages[index].size;
        let mut next = index + 1;
        while next < self.stored.len() && ids.len() < MAX_AHEAD && single(next) {
            octets += self.messages[next].size;
            if octets > READ_AHEAD as u64 {
                break;
            }
            ids.push(self.stored[next].0);
            next += 1;
        }
        if ids.len() == 1 {
            return Ok(reader);
        }
        let rows = with_conn(&self.pool, |conn| {
            conn.query_typed(
                "SELECT message, data FROM chunks WHERE message = ANY($1) AND seq = 0",
                &[(&ids, Type::INT8_ARRAY)],
            )
        })?;
        let mut found: HashMap<i64, Bytes> = rows
            .into_iter()
            .map(|row| (row.get(0), Bytes::copy_from_slice(row.get::<_, &[u8]>(1))))
            .collect();
        if let Some(chunk) = found.remove(&id) {
            reader.window.push_back(chunk);
            reader.next = 1;
        }
        // One not found (it is gone) ends what is fetched ahead; its own
        // read reports it.
        for (i, message) in (index + 1..).zip(&ids[1..]) {
            match found.remove(message) {
                Some(chunk) => self.ahead.push_back((i, chunk)),
                None => break,
            }
        }
        Ok(reader)
    }

    fn commit(mut self, update: Update) -> Result<(), StoreError> {
        let ids: Vec<i64> = update
            .deleted
            .iter()
            .filter_map(|&i| self.stored.get(i).map(|s| s.0))
            .collect();
        let retrieved: Vec<i64> = update
            .retrieved
            .iter()
            .filter_map(|&i| self.stored.get(i).map(|s| s.0))
            .collect();
        let failed = ids.len();
        let not_deleted = |kind| StoreError::Temporary(Cause::NotDeleted { failed, kind });
        let (account, token, expire) = (self.account, self.token, self.expire);
        let result = in_transaction(&self.pool, |tx| {
            let owner: Option<i64> = tx
                .query_opt(
                    "SELECT token FROM leases WHERE account = $1 FOR UPDATE",
                    &[&account],
                )?
                .map(|r| r.get(0));
            if owner != Some(token) {
                return Ok(false);
            }
            match expire {
                None => {
                    tx.execute(
                        "DELETE FROM messages WHERE account = $1 AND id = ANY($2)",
                        &[&account, &ids],
                    )?;
                }
                Some(days) => {
                    // The first retrieval counts; then whatever is due goes
                    // with the marked ones (now() is the transaction's).
                    tx.execute(
                        "UPDATE messages SET retrieved_at = now()
                         WHERE account = $1 AND id = ANY($2) AND retrieved_at IS NULL",
                        &[&account, &retrieved],
                    )?;
                    tx.execute(
                        "DELETE FROM messages WHERE account = $1 AND (id = ANY($2)
                            OR retrieved_at <= now() - make_interval(days => $3))",
                        &[&account, &ids, &days],
                    )?;
                }
            }
            tx.execute(
                "DELETE FROM leases WHERE account = $1 AND token = $2",
                &[&account, &token],
            )?;
            Ok(true)
        })
        .map_err(|e| match e {
            PgError::Database(e) => {
                tracing::warn!(error = %e, "database call failed");
                not_deleted(io_kind(&e))
            }
            e => {
                tracing::warn!(error = %e, "no database connection");
                not_deleted(IoKind::TimedOut)
            }
        })
        .and_then(|held| {
            if held {
                Ok(())
            } else {
                tracing::warn!(
                    token,
                    "maildrop lease lost before the commit: nothing deleted"
                );
                Err(not_deleted(IoKind::WouldBlock))
            }
        });
        if result.is_ok() {
            self.forget_lease();
        }
        result
    }
}

impl Drop for PgMaildrop {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        self.forget_lease();
        // Best effort: a lease that cannot be removed now expires.
        let _ = with_conn(&self.pool, |conn| {
            conn.execute(
                "DELETE FROM leases WHERE account = $1 AND token = $2",
                &[&self.account, &self.token],
            )
        });
    }
}

/// A message being read: up to `WINDOW` chunks (rows) per query, handed
/// out a chunk per call. It holds no connection between calls.
#[derive(Debug)]
pub struct PgReader {
    pool: Pool,
    id: i64,
    /// The sequence number of the next chunk to fetch.
    next: i32,
    chunks: i32,
    /// Chunks fetched and not yet handed out.
    window: VecDeque<Bytes>,
}

impl BlockingMessageReader for PgReader {
    fn next_chunk(&mut self) -> Result<Option<Bytes>, StoreError> {
        if let Some(chunk) = self.window.pop_front() {
            return Ok(Some(chunk));
        }
        if self.next >= self.chunks && self.chunks != 0 {
            return Ok(None);
        }
        if self.chunks == 0 {
            // An empty message: it is there or gone.
            let there = with_conn(&self.pool, |conn| {
                conn.query_typed_opt(
                    "SELECT 1 FROM messages WHERE id = $1",
                    &[(&self.id, Type::INT8)],
                )
            })?;
            there.ok_or(StoreError::MessageGone)?;
            self.chunks = -1;
            return Ok(None);
        }
        let (id, from) = (self.id, self.next);
        let rows = with_conn(&self.pool, |conn| {
            conn.query_typed(
                "SELECT seq, data FROM chunks WHERE message = $1 AND seq >= $2
                 ORDER BY seq LIMIT $3",
                &[
                    (&id, Type::INT8),
                    (&from, Type::INT4),
                    (&WINDOW, Type::INT8),
                ],
            )
        })?;
        for row in rows {
            if row.get::<_, i32>(0) != self.next {
                break;
            }
            self.window
                .push_back(Bytes::copy_from_slice(row.get::<_, &[u8]>(1)));
            self.next += 1;
        }
        // No row: the message was deleted.
        self.window
            .pop_front()
            .map(Some)
            .ok_or(StoreError::MessageGone)
    }
}
