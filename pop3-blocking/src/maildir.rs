//! A [`BlockingStore`] over Maildirs: one Maildir per user, at
//! `<root>/<user>/{cur,new,tmp}`, users and passwords from a [`PasswdFile`].
//!
//! # Layout and policy
//!
//! - **Users.** Only users listed in the passwd-file are opened, and only if
//!   the name is a safe path component (no `/`, `\`, NUL, control
//!   characters or white space, no leading `.`): the name comes from the
//!   network. Anything else is [`StoreError::Permanent`].
//! - **Missing Maildir.** By default a user's Maildir (and any of `cur`,
//!   `new`, `tmp` that is missing) is created at open, as for a user who has
//!   simply never received mail. The root itself is never created: a missing
//!   root is a configuration or mount problem and is
//!   [`StoreError::Temporary`]. With [`MaildirStore::create_missing`] off, a
//!   missing Maildir is [`StoreError::Permanent`] and missing subdirectories
//!   read as empty.
//! - **Messages** are the plain files of `new/` and `cur/` whose names do
//!   not start with `.`, ordered by the delivery time at the start of their
//!   names (names without one last), then by name. Symbolic links are not
//!   messages, and message, lock and cache files are opened without
//!   following a link planted in their place (`O_NOFOLLOW`). The Maildir's
//!   own directories are trusted: where users can write to their Maildirs,
//!   run the server as a user who gains nothing from their tricks, not as
//!   root. A file's *base name* is its name up to the first `:` (where
//!   the Maildir flags `:2,...` start).
//! - **new → cur.** By default, messages in `new/` are moved to `cur/` (with
//!   empty flags, `:2,`) at open, under the lock, as IMAP servers do once a
//!   client has seen the mailbox: they are no longer new. The move links the file under
//!   its new name and then unlinks the old one, so it never replaces another
//!   file; where that fails the message is simply left in `new/`. Turn this
//!   off with [`MaildirStore::move_new_to_cur`]. Flags are never changed.
//! - **Unique-ids** are the base name when it is a valid unique-id (1–70
//!   octets in `0x21..=0x7E`) and does not start with `~`; otherwise `~`
//!   followed by the lower-case hex SHA-256 of the base name (65 octets). The
//!   base name does not change when a message moves from `new/` to `cur/` or
//!   when its flags change, and Maildir base names are unique by
//!   construction, so unique-ids are stable and never reused.
//! - **Moving from another server.** Where a previous POP3 server left its
//!   index in the Maildir (Dovecot's `dovecot-uidlist`, Courier's
//!   `courierpop3dsizelist`), the messages it listed keep the UIDLs it
//!   served and the order it numbered them in, so its clients do not fetch
//!   again what they left on it; messages delivered since get this store's
//!   own unique-ids, after them. See [`previous`] and
//!   [`MaildirStore::previous_uidls`]. The index is only read, never
//!   written: keep it as long as clients of the old server may come.
//! - **Sizes** are RFC 1939 §11 sizes: every line end counted as CRLF, plus
//!   the CRLF the server appends to a message that does not end with a line
//!   end, so that the LIST size equals what RETR sends before dot-stuffing.
//!   When the base name carries `,W=<n>` (the size with CRLF line ends, as
//!   Dovecot writes it), `n` is used without reading the file, once checked
//!   against the file's length (a size below it, or above twice it plus 2,
//!   cannot be right: the file is then counted, with a warning): mail
//!   delivered over SMTP or LMTP always ends with a line end, so `W=` is
//!   exact for it. `,S=<n>` alone is the raw file size: it says nothing about
//!   how many bare LFs the file holds, so it is not used. Other messages are
//!   read once and their size recorded in a cache file in the Maildir,
//!   [`SIZE_CACHE_FILE`], keyed by base name and checked against the file's
//!   length and modification time, so that later sessions read only new or
//!   changed files. The cache is replaced atomically (write, fsync, rename);
//!   a damaged cache is ignored and rebuilt.
//! - **Locking.** Each open maildrop holds an exclusive, non-blocking lock
//!   (`flock` on Unix, `LockFileEx` on Windows) on [`LOCK_FILE`] in the Maildir, so a second
//!   session, in this process or another, gets [`StoreError::InUse`]. The
//!   lock goes when the maildrop is dropped or committed, and the operating
//!   system drops it when the process dies. Other programs' Maildir locks
//!   are neither taken nor honoured; a Maildir needs none for delivery.
//!   The file names of the lock and
//!   the cache do not start with `.`, so Maildir++ readers do not take them
//!   for folders, and they are outside `cur/` and `new/`.
//! - **Deletion** happens only in [`BlockingMaildrop::commit`]: each listed
//!   message is unlinked, and so is any file in `cur/` or `new/` with the
//!   same base name (the message moved or reflagged by another program
//!   meanwhile, or a copy left by a crash in the middle of a move); one
//!   already gone is not an error. Indexes out of range are ignored. Then `cur/` and `new/` are fsynced and the lock released.
//!   Dropping a maildrop without committing deletes nothing.
//! - **EXPIRE and LOGIN-DELAY** are off by default. With
//!   [`MaildirStore::expire`], a commit also removes the messages first
//!   retrieved with RETR that many days ago or more, as recorded in
//!   [`RETRIEVED_FILE`]; with [`MaildirStore::login_delay`], an open too
//!   soon after the last one (in [`LAST_LOGIN_FILE`]) is refused. Both take
//!   the time from a [`Clock`].
//! - **Commits are not atomic**, each unlink is (the store contract's
//!   [commits](pop3_proto::store#commits)). A commit that fails part way,
//!   or a crash during it, leaves a subset of the marked messages removed
//!   and every other message in place; a crash before the fsyncs may also
//!   bring back some of the unlinked ones, and still nothing else is
//!   removed. What remains is listed by the next session under the same
//!   unique-ids. An error is reported as [`Cause::NotDeleted`], and the
//!   client's QUIT gets `-ERR [SYS/TEMP]`.
//!
//! # Example
//!
//! ```
//! use pop3_blocking::maildir::MaildirStore;
//! use pop3_blocking::passwd::PasswdFile;
//! use pop3_proto::store::{BlockingMaildrop, BlockingMessageReader, BlockingStore};
//! use pop3_proto::types::Secret;
//!
//! let root = tempfile::tempdir()?;
//! let users = PasswdFile::parse("alice:{PLAIN}wonderland\n")?;
//! let store = MaildirStore::new(root.path(), users);
//! assert!(store.verify_password("alice", &Secret::new("wonderland"))?);
//!
//! // Deliver one message the Maildir way: write in tmp/, rename into new/.
//! let maildir = root.path().join("alice");
//! for sub in ["tmp", "new", "cur"] {
//!     std::fs::create_dir_all(maildir.join(sub))?;
//! }
//! std::fs::write(maildir.join("tmp/1700000000.M1P2.host"), "Subject: hi\n\nHello\n")?;
//! std::fs::rename(maildir.join("tmp/1700000000.M1P2.host"), maildir.join("new/1700000000.M1P2.host"))?;
//!
//! let mut drop = store.open("alice")?;
//! assert_eq!(drop.messages().len(), 1);
//! assert_eq!(drop.messages()[0].uid.as_str(), "1700000000.M1P2.host");
//! assert_eq!(drop.messages()[0].size, 22); // 19 octets, 3 bare LFs
//! let mut reader = drop.read(0)?;
//! let mut body = Vec::new();
//! while let Some(chunk) = reader.next_chunk()? {
//!     body.extend_from_slice(&chunk);
//! }
//! assert_eq!(body, b"Subject: hi\n\nHello\n");
//! drop.commit(vec![0].into())?; // QUIT: delete message 1
//! assert!(store.open("alice")?.messages().is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use pop3_proto::store::{
    BlockingMaildrop, BlockingMessageReader, BlockingStore, Cause, CredentialForms, IoKind,
    MessageInfo, StoreError, TokenValidator, Update,
};
use pop3_proto::types::{Secret, Uid};
use sha2::{Digest, Sha256};

use crate::passwd::{PasswdFile, SharedPasswd, is_safe_user};
use pop3_proto::__tracing as tracing;

pub mod previous;

use previous::DovecotUidlFormat;

/// The lock file each open maildrop holds, in the user's Maildir.
pub const LOCK_FILE: &str = "pop3-rs.lock";

/// The time of the user's last login (Unix seconds), in the user's
/// Maildir, kept when a [`MaildirStore::login_delay`] is set.
pub const LAST_LOGIN_FILE: &str = "pop3-rs.last-login";

/// When messages were first retrieved with RETR, in the user's Maildir,
/// kept when a [`MaildirStore::expire`] is set: a first line
/// `pop3-rs retrieved 1`, then one line per message: the time in Unix
/// seconds, a space, the base name.
pub const RETRIEVED_FILE: &str = "pop3-rs.retrieved";

/// The first line of the retrieval record; a file with another first line
/// is ignored (its messages count as never retrieved).
const RETRIEVED_HEADER: &[u8] = b"pop3-rs retrieved 1";

/// Seconds in a day, as EXPIRE counts them.
const DAY_SECS: u64 = 24 * 60 * 60;

/// Where a [`MaildirStore`] takes the time from: the system clock unless
/// a test sets another.
#[derive(Clone)]
pub struct Clock(std::sync::Arc<dyn Fn() -> std::time::SystemTime + Send + Sync>);

impl Clock {
    /// A clock that reads `now`.
    ///
    /// ```
    /// use pop3_blocking::maildir::Clock;
    /// use std::time::{Duration, SystemTime};
    /// let fixed = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    /// let clock = Clock::new(move || fixed);
    /// assert_eq!(clock.now(), fixed);
    /// ```
    pub fn new(now: impl Fn() -> std::time::SystemTime + Send + Sync + 'static) -> Clock {
        Clock(std::sync::Arc::new(now))
    }

    /// The system clock.
    pub fn system() -> Clock {
        Clock::new(std::time::SystemTime::now)
    }

    /// The time now.
    pub fn now(&self) -> std::time::SystemTime {
        (self.0)()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

/// The size cache, in the user's Maildir.
pub const SIZE_CACHE_FILE: &str = "pop3-rs.sizes";

/// The first line of the size cache; a file with another first line is
/// ignored.
const CACHE_HEADER: &[u8] = b"pop3-rs sizes 1";

/// The largest chunk a [`MaildirReader`] yields.
pub const CHUNK_SIZE: usize = 64 * 1024;

/// The first octet of a digest unique-id. Base names that start with it are
/// digested too, so a digest can never equal a real base name.
const DIGEST_MARK: u8 = b'~';

/// Maildirs under one root, with users from a passwd-file.
///
/// See the [module documentation](self) for the layout and policies.
#[derive(Debug, Clone)]
pub struct MaildirStore {
    root: PathBuf,
    users: SharedPasswd,
    create_missing: bool,
    move_new: bool,
    tokens: Option<TokenValidator>,
    previous: Option<Box<DovecotUidlFormat>>,
    login_delay: Option<std::time::Duration>,
    expire: Option<u32>,
    clock: Clock,
}

impl MaildirStore {
    /// A store whose users' Maildirs are `<root>/<user>`, with default
    /// policies: create missing Maildirs, move `new/` to `cur/` at open.
    ///
    /// ```
    /// use pop3_blocking::maildir::MaildirStore;
    /// use pop3_blocking::passwd::PasswdFile;
    /// use pop3_proto::store::{BlockingMaildrop, BlockingStore, StoreError};
    ///
    /// let root = tempfile::tempdir()?;
    /// let store = MaildirStore::new(root.path(), PasswdFile::parse("bob:{PLAIN}builder\n")?);
    /// let drop = store.open("bob")?; // creates <root>/bob/{cur,new,tmp}
    /// assert!(drop.messages().is_empty());
    /// assert!(root.path().join("bob/new").is_dir());
    /// // A second session cannot open the same maildrop.
    /// assert_eq!(store.open("bob").unwrap_err(), StoreError::InUse);
    /// // Names from the network never escape the root.
    /// assert!(matches!(store.open("../etc"), Err(StoreError::Permanent(_))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(root: impl Into<PathBuf>, users: PasswdFile) -> Self {
        MaildirStore {
            root: root.into(),
            users: SharedPasswd::new(users),
            create_missing: true,
            move_new: true,
            tokens: None,
            previous: Some(Box::default()),
            login_delay: None,
            expire: None,
            clock: Clock::system(),
        }
    }

    /// Enforces a minimum time between two logins of a user (RFC 2449
    /// `LOGIN-DELAY`): the time of each successful open is kept in
    /// [`LAST_LOGIN_FILE`] in the user's Maildir, and an open sooner than
    /// `delay` after the last one is [`StoreError::LoginDelay`] (the client
    /// gets `-ERR [LOGIN-DELAY]`). Advertise the same delay with
    /// `ServerConfig::login_delay`. Off by default. A last login in the
    /// future (the clock was set back) does not lock the user out longer
    /// than `delay` from now.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use std::time::{Duration, SystemTime};
    /// use pop3_blocking::maildir::{Clock, MaildirStore};
    /// use pop3_blocking::passwd::PasswdFile;
    /// use pop3_proto::store::{BlockingStore, StoreError};
    ///
    /// let root = tempfile::tempdir()?;
    /// let now = Arc::new(Mutex::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)));
    /// let clock = { let now = now.clone(); Clock::new(move || *now.lock().unwrap()) };
    /// let store = MaildirStore::new(root.path(), PasswdFile::parse("bob:{PLAIN}b\n")?)
    ///     .login_delay(Some(Duration::from_secs(900)))
    ///     .with_clock(clock);
    /// drop(store.open("bob")?);
    /// *now.lock().unwrap() += Duration::from_secs(899);
    /// assert_eq!(store.open("bob").unwrap_err(), StoreError::LoginDelay);
    /// *now.lock().unwrap() += Duration::from_secs(1);
    /// drop(store.open("bob")?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn login_delay(mut self, delay: Option<std::time::Duration>) -> Self {
        self.login_delay = delay;
        self
    }

    /// The minimum time between two logins of a user, if enforced.
    pub fn login_delay_enforced(&self) -> Option<std::time::Duration> {
        self.login_delay
    }

    /// Enforces RFC 2449 `EXPIRE days`: a message retrieved in full with
    /// RETR `days` days ago or more is removed at the next UPDATE (a QUIT)
    /// of its maildrop, besides the messages the client deleted. Advertise
    /// the same value with `ServerConfig::expire`. Off by default (and
    /// then nothing is recorded); `Some(0)` removes every retrieved message
    /// at the QUIT of the session that retrieved it, as the server's own
    /// `EXPIRE 0` does.
    ///
    /// When each message was first retrieved is kept in
    /// [`RETRIEVED_FILE`] in the user's Maildir, by base name, and written
    /// at each commit (under the maildrop's lock, after the removals,
    /// atomically: a new file, fsynced, renamed over the old one). TOP is
    /// not retrieval, and a session that ends without QUIT records
    /// nothing. What can go wrong only ever keeps mail longer, never
    /// removes it early: a crash before the record is written loses that
    /// session's retrievals (those messages count from their next
    /// retrieval); a record with an unknown first line is ignored, with a
    /// warning, and malformed lines are skipped; a record that cannot be
    /// read expires nothing and is left as it is; a retrieval time in the
    /// future (the clock was set back) counts as now.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use std::time::{Duration, SystemTime};
    /// use pop3_blocking::maildir::{Clock, MaildirStore};
    /// use pop3_blocking::passwd::PasswdFile;
    /// use pop3_proto::store::{BlockingMaildrop, BlockingStore, Update};
    ///
    /// let root = tempfile::tempdir()?;
    /// let now = Arc::new(Mutex::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)));
    /// let clock = { let now = now.clone(); Clock::new(move || *now.lock().unwrap()) };
    /// let store = MaildirStore::new(root.path(), PasswdFile::parse("bob:{PLAIN}b\n")?)
    ///     .expire(Some(7))
    ///     .with_clock(clock);
    /// drop(store.open("bob")?); // creates the Maildir
    /// std::fs::write(root.path().join("bob/cur/1.a.host:2,"), "x\n")?;
    /// // A session retrieves message 1 and quits: it is kept, its time noted.
    /// store.open("bob")?.commit(Update::new(vec![]).with_retrieved(vec![0]))?;
    /// *now.lock().unwrap() += Duration::from_secs(7 * 86_400 - 1);
    /// store.open("bob")?.commit(Update::default())?;
    /// assert_eq!(store.open("bob")?.messages().len(), 1);
    /// // Seven days after the retrieval, the next UPDATE removes it.
    /// *now.lock().unwrap() += Duration::from_secs(1);
    /// store.open("bob")?.commit(Update::default())?;
    /// assert!(store.open("bob")?.messages().is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn expire(mut self, days: Option<u32>) -> Self {
        self.expire = days;
        self
    }

    /// The days after which retrieved messages are removed, if enforced.
    pub fn expire_enforced(&self) -> Option<u32> {
        self.expire
    }

    /// Takes the time from `clock` (the system clock by default).
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Whether to serve the UIDLs a previous server (Dovecot, Courier) left
    /// in its index in the Maildir, and the `pop3_uidl_format` Dovecot
    /// formed them with (see [`previous`]); `None` serves only this store's
    /// own. On by default, with Dovecot's default format `%08Xu%08Xv`.
    ///
    /// ```
    /// use pop3_blocking::maildir::MaildirStore;
    /// use pop3_blocking::passwd::PasswdFile;
    /// use pop3_proto::store::{BlockingMaildrop, BlockingStore};
    ///
    /// let root = tempfile::tempdir()?;
    /// let maildir = root.path().join("bob");
    /// for sub in ["cur", "new", "tmp"] {
    ///     std::fs::create_dir_all(maildir.join(sub))?;
    /// }
    /// std::fs::write(maildir.join("cur/1700000000.M1P2.host:2,S"), "Subject: hi\n\nHi\n")?;
    /// // What Dovecot left: UIDVALIDITY 1700000000, UID 7.
    /// std::fs::write(
    ///     maildir.join("dovecot-uidlist"),
    ///     "3 V1700000000 N8 G0123\n7 :1700000000.M1P2.host:2,S\n",
    /// )?;
    /// let users = PasswdFile::parse("bob:{PLAIN}b\n")?;
    /// let store = MaildirStore::new(root.path(), users.clone());
    /// assert_eq!(store.open("bob")?.messages()[0].uid.as_str(), "000000076553f100");
    /// let store = MaildirStore::new(root.path(), users.clone())
    ///     .previous_uidls(Some("%v.%u".parse()?));
    /// assert_eq!(store.open("bob")?.messages()[0].uid.as_str(), "1700000000.7");
    /// let store = MaildirStore::new(root.path(), users).previous_uidls(None);
    /// assert_eq!(store.open("bob")?.messages()[0].uid.as_str(), "1700000000.M1P2.host");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn previous_uidls(mut self, dovecot_format: Option<DovecotUidlFormat>) -> Self {
        self.previous = dovecot_format.map(Box::new);
        self
    }

    /// Checks OAuth 2.0 bearer tokens of the listed users with `validator`
    /// (OAUTHBEARER, XOAUTH2), which are then offered (over TLS, like
    /// passwords).
    ///
    /// ```
    /// use pop3_blocking::maildir::MaildirStore;
    /// use pop3_blocking::passwd::PasswdFile;
    /// use pop3_proto::store::{BlockingStore, TokenValidator};
    /// use pop3_proto::types::Secret;
    ///
    /// let store = MaildirStore::new("/srv/mail", PasswdFile::parse("bob:{PLAIN}builder\n")?)
    ///     .with_token_validator(TokenValidator::new(|_, t| t.expose() == b"bobs-token"));
    /// assert!(store.credential_forms().oauth_bearer);
    /// assert!(store.verify_bearer_token("bob", &Secret::new("bobs-token"))?);
    /// assert!(!store.verify_bearer_token("carol", &Secret::new("bobs-token"))?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn with_token_validator(mut self, validator: TokenValidator) -> Self {
        self.tokens = Some(validator);
        self
    }

    /// Whether to create a user's missing Maildir (and missing `cur`, `new`,
    /// `tmp`) at open. On by default.
    ///
    /// ```
    /// use pop3_blocking::maildir::MaildirStore;
    /// use pop3_blocking::passwd::PasswdFile;
    /// use pop3_proto::store::{BlockingStore, StoreError};
    ///
    /// let root = tempfile::tempdir()?;
    /// let store = MaildirStore::new(root.path(), PasswdFile::parse("bob:{PLAIN}b\n")?)
    ///     .create_missing(false);
    /// assert!(matches!(store.open("bob"), Err(StoreError::Permanent(_))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn create_missing(mut self, create: bool) -> Self {
        self.create_missing = create;
        self
    }

    /// Whether to move messages from `new/` to `cur/` at open. On by default.
    ///
    /// ```
    /// use pop3_blocking::maildir::MaildirStore;
    /// use pop3_blocking::passwd::PasswdFile;
    /// use pop3_proto::store::BlockingStore;
    ///
    /// let root = tempfile::tempdir()?;
    /// let store = MaildirStore::new(root.path(), PasswdFile::parse("bob:{PLAIN}b\n")?)
    ///     .move_new_to_cur(false);
    /// drop(store.open("bob")?);
    /// std::fs::write(root.path().join("bob/new/1.a.host"), "x\n")?;
    /// drop(store.open("bob")?);
    /// assert!(root.path().join("bob/new/1.a.host").exists());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn move_new_to_cur(mut self, enabled: bool) -> Self {
        self.move_new = enabled;
        self
    }

    /// The directory holding the users' Maildirs.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The user database in force.
    pub fn users(&self) -> std::sync::Arc<PasswdFile> {
        self.users.current()
    }

    /// The user database, replaceable while the store serves (a reload):
    /// sessions already logged in go on, logins from then on use the new
    /// file. The store's clones share it.
    pub fn shared_users(&self) -> SharedPasswd {
        self.users.clone()
    }

    /// The Maildir of `user`, if the name is a listed user and a safe path
    /// component.
    ///
    /// ```
    /// use pop3_blocking::maildir::MaildirStore;
    /// use pop3_blocking::passwd::PasswdFile;
    ///
    /// let store = MaildirStore::new("/srv/mail", PasswdFile::parse("bob:{PLAIN}b\n")?);
    /// assert_eq!(store.maildir_of("bob").unwrap(), std::path::Path::new("/srv/mail/bob"));
    /// assert!(store.maildir_of("..").is_err());
    /// assert!(store.maildir_of("carol").is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn maildir_of(&self, user: &str) -> Result<PathBuf, StoreError> {
        if !is_safe_user(user) {
            return Err(StoreError::Permanent(Cause::BadUserName));
        }
        if !self.users.current().contains(user) {
            return Err(StoreError::Permanent(Cause::NoSuchUser));
        }
        Ok(self.root.join(user))
    }

    fn prepare(&self, dir: &Path) -> Result<(), StoreError> {
        match fs::metadata(&self.root) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(StoreError::Temporary(Cause::Io {
                    context: "maildir root",
                    kind: IoKind::NotADirectory,
                }));
            }
            Err(e) => return Err(temporary("maildir root", &e)),
        }
        match fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(StoreError::Permanent(Cause::Io {
                    context: "maildir",
                    kind: IoKind::NotADirectory,
                }));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && !self.create_missing => {
                return Err(StoreError::Permanent(Cause::MaildropNotFound));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(temporary("maildir", &e)),
        }
        if self.create_missing {
            for sub in ["cur", "new", "tmp"] {
                fs::create_dir_all(dir.join(sub)).map_err(|e| temporary("creating maildir", &e))?;
            }
        }
        Ok(())
    }

    fn open_maildrop(&self, user: &str) -> Result<MaildirMaildrop, StoreError> {
        let dir = self.maildir_of(user)?;
        self.prepare(&dir)?;
        let lock = no_follow(OpenOptions::new().read(true).write(true).create(true))
            .truncate(false)
            .open(dir.join(LOCK_FILE))
            .map_err(|e| temporary("lock file", &e))?;
        // fs4's lock, named in full: from Rust 1.89 on, `File` has a
        // `try_lock` of its own.
        match fs4::FileExt::try_lock(&lock) {
            Ok(()) => {}
            Err(fs4::TryLockError::WouldBlock) => return Err(StoreError::InUse),
            Err(fs4::TryLockError::Error(e)) => return Err(temporary("locking", &e)),
        }
        if let Some(delay) = self.login_delay {
            check_login_delay(&dir, delay, self.clock.now())?;
        }
        let mut files = scan(&dir).map_err(|e| temporary("reading maildir", &e))?;
        if self.move_new {
            for f in &mut files {
                move_to_cur(&dir, f);
            }
        }
        files.retain(|f| f.path.is_some());
        dedup_by_base(&mut files);
        let mut known = match &self.previous {
            Some(format) => previous::read(&dir, format),
            None => HashMap::new(),
        };
        let mut found: Vec<(Found, Option<previous::Previous>)> = files
            .into_iter()
            .map(|f| {
                let p = known.remove(&f.base);
                (f, p)
            })
            .collect();
        drop(known);
        // Messages the previous server numbered itself first, in its
        // order; then the others by delivery time, names without one last.
        found.sort_by(|(a, pa), (b, pb)| {
            let key = |f: &Found, p: &Option<previous::Previous>| {
                (
                    p.as_ref().and_then(|p| p.order).is_none(),
                    p.as_ref().and_then(|p| p.order),
                    f.time.is_none(),
                    f.time,
                )
            };
            key(a, pa)
                .cmp(&key(b, pb))
                .then_with(|| a.base.cmp(&b.base))
        });
        let (mut files, mut former): (Vec<Found>, Vec<Option<Uid>>) = found
            .into_iter()
            .map(|(f, p)| (f, p.map(|p| p.uid)))
            .unzip();
        let sizes = size_all_keeping(&dir, &mut files, &mut former)?;
        let messages = unique_uids(&files, former)
            .into_iter()
            .zip(sizes)
            .map(|(uid, size)| MessageInfo { size, uid })
            .collect();
        Ok(MaildirMaildrop {
            dir,
            files: files
                .into_iter()
                .filter_map(|f| {
                    Some(MessageFile {
                        base: f.base,
                        path: f.path?,
                    })
                })
                .collect(),
            messages,
            expire: self.expire.map(|days| (days, self.clock.clone())),
            _lock: lock,
        })
    }
}

impl BlockingStore for MaildirStore {
    type Maildrop = MaildirMaildrop;

    fn credential_forms(&self) -> CredentialForms {
        self.users
            .current()
            .credential_forms()
            .with_oauth_bearer(self.tokens.is_some())
    }

    fn verify_bearer_token(&self, user: &str, token: &Secret) -> Result<bool, StoreError> {
        Ok(self.users.current().contains(user)
            && self.tokens.as_ref().is_some_and(|v| v.check(user, token)))
    }

    fn bearer_token_owner(&self, token: &Secret) -> Result<Option<String>, StoreError> {
        let owner = self.tokens.as_ref().and_then(|v| v.owner(token));
        Ok(owner.filter(|u| self.users.current().contains(u)))
    }

    fn verify_password(&self, user: &str, password: &Secret) -> Result<bool, StoreError> {
        Ok(self.users.current().verify(user, password))
    }

    fn shared_secret(&self, user: &str) -> Result<Option<Secret>, StoreError> {
        Ok(self.users.current().shared_secret(user))
    }

    fn scram_keys(
        &self,
        user: &str,
        hash: pop3_proto::scram::ScramHash,
    ) -> Result<Option<pop3_proto::scram::ScramKeys>, StoreError> {
        Ok(self.users.current().scram_keys(user, hash))
    }

    fn open(&self, user: &str) -> Result<MaildirMaildrop, StoreError> {
        self.open_maildrop(user)
    }
}

/// Refuses a login sooner than `delay` after the last one recorded in the
/// Maildir `dir`, else records this one. Called under the maildrop's lock.
fn check_login_delay(
    dir: &Path,
    delay: std::time::Duration,
    now: std::time::SystemTime,
) -> Result<(), StoreError> {
    let now_secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let path = dir.join(LAST_LOGIN_FILE);
    let last = match fs::read(&path) {
        Ok(text) => std::str::from_utf8(&text)
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(temporary("last login file", &e)),
    };
    if let Some(last) = last {
        // A last login in the future counts as now.
        let last = last.min(now_secs);
        if now_secs < last.saturating_add(delay.as_secs()) {
            return Err(StoreError::LoginDelay);
        }
    }
    let tmp = dir.join(format!("{LAST_LOGIN_FILE}.tmp"));
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(temporary("last login file", &e));
        }
        _ => {}
    }
    let write = || -> io::Result<()> {
        let mut file = no_follow(OpenOptions::new().write(true).create_new(true)).open(&tmp)?;
        writeln!(file, "{now_secs}")?;
        file.sync_all()?;
        fs::rename(&tmp, &path)
    };
    write().map_err(|e| temporary("last login file", &e))
}

/// The retrieval times recorded in the Maildir `dir`, by base name; empty
/// when there is no record or it is not one this code wrote (with a
/// warning). `None` when the file cannot be read: nothing is expired then.
fn read_retrieved(dir: &Path) -> Option<HashMap<Vec<u8>, u64>> {
    let path = dir.join(RETRIEVED_FILE);
    let mut map = HashMap::new();
    let bytes = match no_follow(OpenOptions::new().read(true))
        .open(&path)
        .and_then(|mut f| {
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes).map(|_| bytes)
        }) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Some(map),
        Err(e) => {
            tracing::warn!(
                file = %path.display(),
                error = %e,
                "the retrieval record cannot be read; nothing expires in this session"
            );
            return None;
        }
    };
    let mut lines = bytes.split(|&b| b == b'\n');
    if lines.next() != Some(RETRIEVED_HEADER) {
        tracing::warn!(
            file = %path.display(),
            "not a retrieval record this server wrote; ignored (its messages count as never retrieved)"
        );
        return Some(map);
    }
    let mut bad = 0usize;
    for line in lines.filter(|l| !l.is_empty()) {
        let mut parts = line.splitn(2, |&b| b == b' ');
        let (Some(secs), Some(base)) = (parts.next(), parts.next()) else {
            bad += 1;
            continue;
        };
        let secs = std::str::from_utf8(secs)
            .ok()
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok());
        match secs {
            Some(secs) if !base.is_empty() => {
                let at = map.entry(base.to_vec()).or_insert(secs);
                *at = (*at).min(secs);
            }
            _ => bad += 1,
        }
    }
    if bad > 0 {
        tracing::warn!(
            file = %path.display(),
            lines = bad,
            "malformed lines in the retrieval record skipped"
        );
    }
    Some(map)
}

/// Replaces the retrieval record atomically (a new file, fsynced, renamed
/// over the old one).
fn write_retrieved(dir: &Path, times: &HashMap<&[u8], u64>) -> io::Result<()> {
    let mut entries: Vec<_> = times.iter().filter(|(b, _)| !b.contains(&b'\n')).collect();
    entries.sort();
    let mut text = Vec::with_capacity(48 * (entries.len() + 1));
    text.extend_from_slice(RETRIEVED_HEADER);
    text.push(b'\n');
    for (base, at) in entries {
        write!(text, "{at} ")?;
        text.extend_from_slice(base);
        text.push(b'\n');
    }
    replace_file(dir, RETRIEVED_FILE, &text)?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Adds `O_NOFOLLOW` where there is one: a symbolic link planted in a
/// Maildir must not lead the server to read or write another file.
fn no_follow(options: &mut OpenOptions) -> &mut OpenOptions {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW);
    }
    options
}

/// Opens a message file for reading, refusing a symbolic link (`ELOOP`,
/// which is not [`io::ErrorKind::NotFound`], so does not pass for a gone
/// message, and reads as [`IoKind::FilesystemLoop`]).
pub(crate) fn open_message(path: &Path) -> io::Result<File> {
    no_follow(OpenOptions::new().read(true)).open(path)
}

/// The store's kind for an I/O error; a symbolic link refused by
/// `O_NOFOLLOW` is [`IoKind::FilesystemLoop`].
fn io_kind(e: &io::Error) -> IoKind {
    #[cfg(unix)]
    if e.raw_os_error() == Some(libc::ELOOP) {
        return IoKind::FilesystemLoop;
    }
    IoKind::from(e.kind())
}

fn temporary(context: &'static str, e: &io::Error) -> StoreError {
    StoreError::Temporary(Cause::Io {
        context,
        kind: io_kind(e),
    })
}

/// A message file seen while scanning.
struct Found {
    /// The name up to the first `:`, as the platform encodes it.
    base: Vec<u8>,
    /// The delivery time at the start of the name, if any.
    time: Option<u64>,
    /// Where it is; `None` once it turned out to be gone.
    path: Option<PathBuf>,
    /// Whether it is in `new/`.
    in_new: bool,
}

/// The base name of a Maildir file name: up to the first `:`, or the whole
/// name when that would leave nothing.
pub(crate) fn base_of(name: &[u8]) -> &[u8] {
    match name.iter().position(|&b| b == b':') {
        Some(0) | None => name,
        Some(i) => &name[..i],
    }
}

fn delivery_time(base: &[u8]) -> Option<u64> {
    let digits = base.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&base[..digits]).ok()?.parse().ok()
}

/// The message files of `cur/` then `new/`.
fn scan(dir: &Path) -> io::Result<Vec<Found>> {
    let mut found = Vec::new();
    for (sub, in_new) in [("cur", false), ("new", true)] {
        let entries = match fs::read_dir(dir.join(sub)) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let bytes = name.as_encoded_bytes();
            if bytes.first() == Some(&b'.') {
                continue;
            }
            // Symbolic links and anything else that is not a plain file
            // are not messages.
            if !entry.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            let path = entry.path();
            let base = base_of(bytes).to_vec();
            found.push(Found {
                time: delivery_time(&base),
                base,
                path: Some(path),
                in_new,
            });
        }
    }
    Ok(found)
}

/// Moves a message from `new/` to `cur/` (adding empty flags) without ever
/// replacing a file: link under the new name, then unlink the old one.
fn move_to_cur(dir: &Path, f: &mut Found) {
    let Some(from) = f.path.as_ref().filter(|_| f.in_new) else {
        return;
    };
    let Some(name) = from.file_name() else {
        return;
    };
    let mut to_name = name.to_os_string();
    if !name.as_encoded_bytes().contains(&b':') {
        to_name.push(":2,");
    }
    let to = dir.join("cur").join(to_name);
    match fs::hard_link(from, &to) {
        Ok(()) => {
            let _ = fs::remove_file(from);
            f.path = Some(to);
            f.in_new = false;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => f.path = None,
        // Leave it in new/: it is listed from there just the same.
        Err(_) => {}
    }
}

/// Keeps one file per base name (the one in `cur/` if both exist).
fn dedup_by_base(files: &mut Vec<Found>) {
    files.sort_by(|a, b| (&a.base, a.in_new).cmp(&(&b.base, b.in_new)));
    files.dedup_by(|later, earlier| later.base == earlier.base);
}

/// Whether `w` can be the RFC 1939 size of a file of `len` octets: at
/// least every octet, at most every octet a bare LF (counted twice) plus
/// the CRLF appended to a last line without a line end.
fn w_is_possible(w: u64, len: u64) -> bool {
    len <= w && w <= len.saturating_mul(2).saturating_add(2)
}

/// The `,W=<n>` value in a base name.
fn w_size(base: &[u8]) -> Option<u64> {
    base.split(|&b| b == b',')
        .skip(1)
        .find_map(|field| field.strip_prefix(b"W="))
        .and_then(|digits| std::str::from_utf8(digits).ok()?.parse().ok())
}

/// [`size_all`], keeping `former` (one entry per file) in step with the
/// files it keeps.
fn size_all_keeping(
    dir: &Path,
    files: &mut Vec<Found>,
    former: &mut Vec<Option<Uid>>,
) -> Result<Vec<u64>, StoreError> {
    let before: Vec<Vec<u8>> = files.iter().map(|f| f.base.clone()).collect();
    let sizes = size_all(dir, files)?;
    if files.len() != before.len() {
        let mut kept = files.iter().map(|f| &f.base).peekable();
        let mut old = std::mem::take(former).into_iter();
        for base in &before {
            let uid = old.next().flatten();
            if kept.peek() == Some(&base) {
                kept.next();
                former.push(uid);
            }
        }
    }
    Ok(sizes)
}

/// Each file's unique-id: the previous server's where known, else this
/// store's own; where two would be equal, the later message gets this
/// store's own (and should that be taken too, its digest form).
fn unique_uids(files: &[Found], former: Vec<Option<Uid>>) -> Vec<Uid> {
    let mut seen = HashSet::with_capacity(files.len());
    let mut out = Vec::with_capacity(files.len());
    for (f, former) in files.iter().zip(former) {
        let mut uid = former.unwrap_or_else(|| uid_for(&f.base));
        if seen.contains(uid.as_str()) {
            uid = uid_for(&f.base);
            if seen.contains(uid.as_str()) {
                let mut marked = vec![DIGEST_MARK];
                marked.extend_from_slice(&f.base);
                uid = uid_for(&marked);
            }
        }
        seen.insert(uid.as_str().to_owned());
        out.push(uid);
    }
    out
}

/// What the cache knows about one message.
#[derive(Clone, Copy, PartialEq, Eq)]
struct CacheEntry {
    size: u64,
    len: u64,
    mtime_ns: u128,
}

fn read_cache(path: &Path) -> HashMap<Vec<u8>, CacheEntry> {
    let mut map = HashMap::new();
    let Ok(bytes) = fs::read(path) else {
        return map;
    };
    let mut lines = bytes.split(|&b| b == b'\n');
    if lines.next() != Some(CACHE_HEADER) {
        return map;
    }
    for line in lines {
        let mut parts = line.splitn(4, |&b| b == b' ');
        let (Some(size), Some(len), Some(mtime), Some(base)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let num = |b: &[u8]| std::str::from_utf8(b).ok()?.parse::<u128>().ok();
        let (Some(size), Some(len), Some(mtime_ns)) = (num(size), num(len), num(mtime)) else {
            continue;
        };
        let (Ok(size), Ok(len)) = (u64::try_from(size), u64::try_from(len)) else {
            continue;
        };
        if !base.is_empty() {
            map.insert(
                base.to_vec(),
                CacheEntry {
                    size,
                    len,
                    mtime_ns,
                },
            );
        }
    }
    map
}

/// Replaces the cache file atomically. Failure only costs a re-read later.
fn write_cache(dir: &Path, map: &HashMap<Vec<u8>, CacheEntry>) -> io::Result<()> {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    let mut text = Vec::with_capacity(64 * (entries.len() + 1));
    text.extend_from_slice(CACHE_HEADER);
    text.push(b'\n');
    for (base, e) in entries {
        write!(text, "{} {} {} ", e.size, e.len, e.mtime_ns)?;
        text.extend_from_slice(base);
        text.push(b'\n');
    }
    replace_file(dir, SIZE_CACHE_FILE, &text)
}

/// Replaces `dir/name` with `text` whole: written to `name.tmp`, synced,
/// then renamed over it. Never writes through a planted link: whatever is
/// at the temporary name is removed and the file created anew.
fn replace_file(dir: &Path, name: &str, text: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut file = no_follow(OpenOptions::new().write(true).create_new(true)).open(&tmp)?;
    file.write_all(text)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, dir.join(name))
}

/// The RFC 1939 size of every file; files found gone are dropped from
/// `files`. Reads only files that neither carry `,W=` nor have a valid cache
/// entry, and rewrites the cache when it changed.
fn size_all(dir: &Path, files: &mut Vec<Found>) -> Result<Vec<u64>, StoreError> {
    let cache_path = dir.join(SIZE_CACHE_FILE);
    let old = read_cache(&cache_path);
    let mut new = HashMap::with_capacity(old.len());
    let mut sizes = Vec::with_capacity(files.len());
    for f in files.iter_mut() {
        let Some(path) = &f.path else {
            sizes.push(None);
            continue;
        };
        let meta = match fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                sizes.push(None);
                continue;
            }
            Err(e) => return Err(temporary("message file", &e)),
        };
        if let Some(w) = w_size(&f.base) {
            if w_is_possible(w, meta.len()) {
                sizes.push(Some(w));
                continue;
            }
            tracing::warn!(
                file = %path.display(),
                w,
                len = meta.len(),
                "the W= size in a Maildir file name cannot be right; counting the file"
            );
        }
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let len = meta.len();
        let entry = match old.get(&f.base) {
            Some(e) if e.len == len && e.mtime_ns == mtime_ns => *e,
            _ => match count_file(path) {
                Ok(size) => CacheEntry {
                    size,
                    len,
                    mtime_ns,
                },
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    sizes.push(None);
                    continue;
                }
                Err(e) => return Err(temporary("message file", &e)),
            },
        };
        sizes.push(Some(entry.size));
        if !f.base.contains(&b'\n') {
            new.insert(f.base.clone(), entry);
        }
    }
    if new != old {
        let _ = write_cache(dir, &new);
    }
    let mut sizes = sizes.into_iter();
    let mut kept = Vec::with_capacity(files.len());
    files.retain(|_| match sizes.next().flatten() {
        Some(size) => {
            kept.push(size);
            true
        }
        None => false,
    });
    Ok(kept)
}

/// Counts a message's octets as RFC 1939 §11 does: each bare LF counts as
/// CRLF, and a message that does not end with a line end gets the CRLF the
/// server appends.
#[derive(Debug, Default)]
pub(crate) struct OctetCounter {
    octets: u64,
    bare_lfs: u64,
    last: Option<u8>,
}

impl OctetCounter {
    pub(crate) fn update(&mut self, chunk: &[u8]) {
        for at in memchr::memchr_iter(b'\n', chunk) {
            let before = if at == 0 {
                self.last
            } else {
                Some(chunk[at - 1])
            };
            if before != Some(b'\r') {
                self.bare_lfs += 1;
            }
        }
        self.octets += chunk.len() as u64;
        if let Some(&b) = chunk.last() {
            self.last = Some(b);
        }
    }

    pub(crate) fn finish(&self) -> u64 {
        let missing_end = match self.last {
            None | Some(b'\n') => 0,
            Some(_) => 2,
        };
        self.octets + self.bare_lfs + missing_end
    }
}

fn count_file(path: &Path) -> io::Result<u64> {
    let mut file = open_message(path)?;
    let mut counter = OctetCounter::default();
    let mut buf = vec![0; CHUNK_SIZE];
    loop {
        match file.read(&mut buf) {
            Ok(0) => return Ok(counter.finish()),
            Ok(n) => counter.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The unique-id of a base name: itself when valid and not starting with
/// `~`, else `~` and the hex SHA-256 of it.
fn uid_for(base: &[u8]) -> Uid {
    let plain = (1..=Uid::MAX_LEN).contains(&base.len())
        && base[0] != DIGEST_MARK
        && base.iter().all(|b| (0x21..=0x7e).contains(b));
    if plain {
        if let Ok(uid) = Uid::new(Bytes::copy_from_slice(base)) {
            return uid;
        }
    }
    let mut id = String::with_capacity(65);
    id.push(char::from(DIGEST_MARK));
    crate::hex::push_hex(&mut id, &Sha256::digest(base));
    Uid::new(id.into_bytes()).expect("a 65-octet printable digest is a valid unique-id")
}

/// A message of an open maildrop: its base name and where it was last seen.
#[derive(Debug)]
struct MessageFile {
    base: Vec<u8>,
    path: PathBuf,
}

/// An open, locked Maildir. Dropping it releases the lock and deletes
/// nothing; [`BlockingMaildrop::commit`] deletes, then releases.
#[derive(Debug)]
pub struct MaildirMaildrop {
    dir: PathBuf,
    files: Vec<MessageFile>,
    messages: Vec<MessageInfo>,
    /// The EXPIRE days in force and the clock, if enforced.
    expire: Option<(u32, Clock)>,
    /// Held for the lock; closing it releases the lock.
    _lock: File,
}

impl MaildirMaildrop {
    /// The Maildir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Finds every message file by base name, wherever it is now.
    fn locate_all(&self) -> HashMap<Vec<u8>, PathBuf> {
        let mut map = HashMap::new();
        if let Ok(found) = scan(&self.dir) {
            for f in found {
                if let Some(path) = f.path {
                    map.entry(f.base).or_insert(path);
                }
            }
        }
        map
    }
}

impl BlockingMaildrop for MaildirMaildrop {
    type Reader = MaildirReader;

    /// Reading a message opens its file and changes nothing.
    const READ_AHEAD_MESSAGES: bool = true;

    fn messages(&self) -> &[MessageInfo] {
        &self.messages
    }

    fn read(&mut self, index: usize) -> Result<MaildirReader, StoreError> {
        let Some(path) = self.files.get(index).map(|f| f.path.clone()) else {
            return Err(StoreError::Permanent(Cause::NoSuchMessage));
        };
        let file = match open_message(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Moved or reflagged by another program? Look again.
                let base = &self.files[index].base;
                let Some(moved) = self.locate_all().remove(base) else {
                    return Err(StoreError::MessageGone);
                };
                let file = match open_message(&moved) {
                    Ok(file) => file,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        return Err(StoreError::MessageGone);
                    }
                    Err(e) => return Err(temporary("message file", &e)),
                };
                self.files[index].path = moved;
                file
            }
            Err(e) => return Err(temporary("message file", &e)),
        };
        // The length at open sizes the reads; a file that is longer after
        // all is read on to its end.
        let left = file.metadata().map_or(CHUNK_SIZE as u64, |m| m.len());
        Ok(MaildirReader {
            file,
            left,
            buffered: Bytes::new(),
        })
    }

    fn commit(self, update: Update) -> Result<(), StoreError> {
        let mut targets: HashSet<&[u8]> = update
            .deleted
            .iter()
            .filter_map(|&i| self.files.get(i))
            .map(|f| f.base.as_slice())
            .collect();
        // EXPIRE n: the retrieval times, this session's included, and the
        // messages they make due.
        let expiring = self.expire.as_ref().and_then(|(days, clock)| {
            let now = clock
                .now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let mut times = read_retrieved(&self.dir)?;
            for &i in &update.retrieved {
                if let Some(f) = self.files.get(i) {
                    times.entry(f.base.clone()).or_insert(now);
                }
            }
            let retention = u64::from(*days).saturating_mul(DAY_SECS);
            Some((times, now, retention))
        });
        let mut kept_times: HashMap<&[u8], u64> = HashMap::new();
        if let Some((times, now, retention)) = &expiring {
            for f in &self.files {
                let Some(&at) = times.get(&f.base) else {
                    continue;
                };
                // A time in the future (the clock was set back) is now.
                if now.saturating_sub(at.min(*now)) >= *retention {
                    targets.insert(f.base.as_slice());
                } else if !targets.contains(f.base.as_slice()) {
                    kept_times.insert(f.base.as_slice(), at);
                }
            }
        }
        let mut failed = 0usize;
        let mut first_error = None;
        let mut note = |result: io::Result<()>| match result {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                failed += 1;
                first_error.get_or_insert(e);
            }
            _ => {}
        };
        if !targets.is_empty() {
            for f in self
                .files
                .iter()
                .filter(|f| targets.contains(f.base.as_slice()))
            {
                note(fs::remove_file(&f.path));
            }
            // Another program may have moved or reflagged a message since it
            // was listed, and a crash may have left a copy under the same base
            // name in new/ and cur/: remove whatever still carries a deleted
            // base name.
            match scan(&self.dir) {
                Ok(found) => {
                    for f in found {
                        if let (true, Some(path)) = (targets.contains(f.base.as_slice()), f.path) {
                            note(fs::remove_file(path));
                        }
                    }
                }
                Err(e) => note(Err(e)),
            }
            for sub in ["cur", "new"] {
                if let Ok(d) = File::open(self.dir.join(sub)) {
                    // The unlinks are done; a failed sync is no reason to
                    // report them as not done.
                    let _ = d.sync_all();
                }
            }
        }
        if let Some((times, ..)) = &expiring {
            // Written after the removals: a crash before it keeps the old
            // record, which makes no message due early.
            if times.len() != kept_times.len() || !update.retrieved.is_empty() {
                if let Err(e) = write_retrieved(&self.dir, &kept_times) {
                    tracing::warn!(
                        maildir = %self.dir.display(),
                        error = %e,
                        "retrieval times not recorded; those messages are kept longer"
                    );
                }
            }
        }
        drop(kept_times);
        drop(targets);
        drop(self);
        match first_error {
            None => Ok(()),
            Some(e) => Err(StoreError::Temporary(Cause::NotDeleted {
                failed,
                kind: io_kind(&e),
            })),
        }
    }
}

/// A message being read, in chunks of at most [`CHUNK_SIZE`] octets, line
/// ends as stored.
///
/// The file is read 256 KiB at a time into one buffer that the
/// chunks share: a read and an allocation per 256 KiB, not per chunk (an
/// allocation that large is reused by the allocator rather than mapped and
/// faulted in afresh), and a small message is one buffer of its own size.
#[derive(Debug)]
pub struct MaildirReader {
    file: File,
    /// Octets expected before the end, as the file's length at open said.
    left: u64,
    /// Read from the file and not yet handed out.
    buffered: Bytes,
}

/// What a [`MaildirReader`] reads from the file at once.
const READ_SIZE: usize = 4 * CHUNK_SIZE;

/// The read that finds the end of a file (or more of a file that grew).
const END_PROBE: usize = 4096;

impl BlockingMessageReader for MaildirReader {
    fn next_chunk(&mut self) -> Result<Option<Bytes>, StoreError> {
        if self.buffered.is_empty() {
            let want = match self.left {
                0 => END_PROBE,
                left => left.min(READ_SIZE as u64) as usize,
            };
            let mut buf = vec![0; want];
            let n = loop {
                match self.file.read(&mut buf) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(temporary("reading message", &e)),
                }
            };
            if n == 0 {
                return Ok(None);
            }
            buf.truncate(n);
            self.left = match self.left {
                // Longer than at open: read on in whole batches.
                0 => READ_SIZE as u64,
                left => left.saturating_sub(n as u64),
            };
            self.buffered = Bytes::from(buf);
        }
        let n = self.buffered.len().min(CHUNK_SIZE);
        Ok(Some(self.buffered.split_to(n)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(parts: &[&[u8]]) -> u64 {
        let mut c = OctetCounter::default();
        for p in parts {
            c.update(p);
        }
        c.finish()
    }

    #[test]
    fn octet_counts() {
        assert_eq!(count(&[]), 0);
        assert_eq!(count(&[b"a\r\n"]), 3);
        assert_eq!(count(&[b"a\n"]), 3);
        assert_eq!(count(&[b"a"]), 3);
        assert_eq!(count(&[b"a\r"]), 4);
        assert_eq!(count(&[b"a\r", b"\nb\n"]), 6);
        assert_eq!(count(&[b"a", b"\n", b"\n"]), 5);
        assert_eq!(count(&[b"\n\n"]), 4);
    }

    #[test]
    fn base_names_and_w() {
        assert_eq!(base_of(b"1.2.h,S=5,W=7:2,S"), b"1.2.h,S=5,W=7");
        assert_eq!(base_of(b":2,S"), b":2,S");
        assert_eq!(w_size(b"1.2.h,S=5,W=7"), Some(7));
        assert_eq!(w_size(b"1.2.h,S=5"), None);
        assert_eq!(w_size(b"W=5"), None);
        assert_eq!(delivery_time(b"1700000000.x"), Some(1_700_000_000));
        assert_eq!(delivery_time(b"x.1"), None);
    }
}
