//! Delivery of fetched mail beyond Maildir: an mbox file, a mail delivery
//! agent's standard input, an LMTP server (feature `deliver`).
//!
//! Each is a [`Deliver`]: it takes one whole message and returns `Ok` only
//! once the message is durably stored (the mbox fsynced, the MDA exited 0,
//! the LMTP server answered 250). [`Journaled`] turns a `Deliver` into a
//! [`MessageSink`]: it spools each message as it arrives into a private
//! file (memory stays bounded whatever the message's size), hands the
//! complete message to the deliverer at commit, and records the UID in the
//! account's [`UidJournal`] (kept in a state directory, see
//! [`default_state_dir`]) before the commit returns. The fetch driver
//! deletes a message from the server only after that, so save-before-delete
//! holds for every kind. Into an mbox, a process killed at any instant
//! leaves each message there exactly once, and no part of one, once the
//! next run has opened the sink: each append is recorded before it begins,
//! and the next run settles it (see [`Mbox`]). An MDA or an LMTP server
//! gives no such hold: a process killed after it took a message and
//! before the journal's fsync delivers that one message again on its next
//! run (at least once; the other side cannot be asked whether it has it).
//!
//! A delivery that fails says whether trying again later may help with a
//! [`DeliveryError`] inside the [`io::Error`]: the run stops, the message
//! stays on the server, and the next run tries it again.
//!
//! ```no_run
//! use pop3_blocking::deliver::{Journaled, Mbox};
//! use pop3_blocking::fetch::{self, FetchSettings, PopUrl};
//! # fn go() -> Result<(), Box<dyn std::error::Error>> {
//! let url = PopUrl::parse("pops://alice@pop.example.com")?;
//! let state = pop3_blocking::deliver::default_state_dir().ok_or("no home directory")?;
//! let mut sink = Journaled::open(Mbox::new("/var/mail/alice"), &state, &url.account_id(), &[])?;
//! fetch::run(&url, "secret", &FetchSettings::default(), &mut sink, &mut |_| {})?;
//! # Ok(()) }
//! ```

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use pop3_proto::fetch::MessageSink;
use pop3_proto::types::Uid;

use crate::journal::{UidJournal, hex, private_file};
use pop3_proto::__tracing as tracing;

/// Why a message could not be delivered, carried inside the
/// [`io::Error`] a [`Deliver`] returns: temporary (try again later, the
/// message stays on the server) or permanent (the destination refuses it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryError {
    temporary: bool,
    message: String,
}

impl DeliveryError {
    /// A failure that may go away (a lock held too long, an MDA's exit 75,
    /// an LMTP 4xx, a timeout), as an [`io::Error`].
    pub fn temporary(message: impl Into<String>) -> io::Error {
        io::Error::other(DeliveryError {
            temporary: true,
            message: message.into(),
        })
    }

    /// A refusal (an MDA's other exit statuses, an LMTP 5xx), as an
    /// [`io::Error`].
    pub fn permanent(message: impl Into<String>) -> io::Error {
        io::Error::other(DeliveryError {
            temporary: false,
            message: message.into(),
        })
    }

    /// The delivery error inside an [`io::Error`], if that is what it is.
    ///
    /// ```
    /// use pop3_blocking::deliver::DeliveryError;
    /// let e = DeliveryError::temporary("mailbox locked");
    /// assert!(DeliveryError::of(&e).unwrap().is_temporary());
    /// assert!(DeliveryError::of(&std::io::Error::other("x")).is_none());
    /// ```
    pub fn of(error: &io::Error) -> Option<&DeliveryError> {
        error.get_ref()?.downcast_ref::<DeliveryError>()
    }

    /// Whether trying again later may succeed.
    pub fn is_temporary(&self) -> bool {
        self.temporary
    }
}

impl fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeliveryError {}

/// A destination for whole messages.
pub trait Deliver {
    /// Delivers one message, read from `message` (as the server sent it:
    /// CRLF line ends, dots unstuffed). `Ok` only once it is durably
    /// stored; a failure is best a [`DeliveryError`].
    fn deliver(
        &mut self,
        message: &mut (dyn BufRead + Send),
        uid: &Uid,
        account: &str,
    ) -> io::Result<()>;

    /// Takes `record`, a file of the state directory that belongs to the
    /// journal's account, for a durable record of each delivery in flight,
    /// and settles what a run killed in the middle of one left there.
    /// Answers the UIDs that run delivered whole: the caller journals them,
    /// then calls [`journaled`](Self::journaled). `journaled` tells whether
    /// a UID is in the journal already. [`Journaled::open`] calls it; the
    /// default keeps no record and finds nothing.
    ///
    /// It may be called more than once: first with the record of each
    /// former name of the account that left one (settled the same way,
    /// then gone), last with the account's own, the one to keep.
    fn recover(&mut self, record: &Path, journaled: &dyn Fn(&Uid) -> bool) -> io::Result<Vec<Uid>> {
        let _ = (record, journaled);
        Ok(Vec::new())
    }

    /// Called once the journal durably holds the UIDs of what was
    /// delivered (by [`deliver`](Self::deliver), or found by
    /// [`recover`](Self::recover)): the record of it may go.
    fn journaled(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The directory of the journals of the sinks that are not Maildirs:
/// `$XDG_STATE_HOME/pop3-fetch`, else `~/.local/state/pop3-fetch`; `None`
/// without a home directory.
pub fn default_state_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("pop3-fetch"));
    }
    let home = std::env::var_os("HOME").filter(|d| !d.is_empty())?;
    Some(PathBuf::from(home).join(".local/state/pop3-fetch"))
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A [`Deliver`] with the account's UID journal and a spool: a
/// [`MessageSink`] (see the module docs).
#[derive(Debug)]
pub struct Journaled<D> {
    deliver: D,
    journal: UidJournal,
    account: String,
    dir: PathBuf,
    current: Option<(Uid, PathBuf, BufWriter<File>)>,
}

impl<D: Deliver> Journaled<D> {
    /// Opens the journal of `account` in `state_dir` (see
    /// [`UidJournal::open`]; `former` are names the account had before),
    /// removes spool files a killed run of the account left there, and
    /// settles what a killed run was delivering (see [`Deliver::recover`]),
    /// under the account's name or a former one.
    ///
    /// A former name's leftovers are handled under that name's journal
    /// lock: `WouldBlock` when a fetch under the former name is running.
    pub fn open(
        mut deliver: D,
        state_dir: &Path,
        account: &str,
        former: &[String],
    ) -> io::Result<Journaled<D>> {
        let mut journal = UidJournal::open(state_dir, account, former)?;
        let mut names: Vec<&str> = Vec::new();
        for name in former.iter().map(String::as_str) {
            if name != account && !names.contains(&name) {
                names.push(name);
            }
        }
        for name in names {
            // A run under a name the account had before: what it left is
            // settled as the account's own would be (its record said where
            // the message went; the journal now holds the former UIDs).
            let tag = crate::journal::account_tag(name);
            let record = record_path(state_dir, &tag);
            let spools = spool_files(state_dir, &tag)?;
            if spools.is_empty() && fs::symlink_metadata(&record).is_err() {
                continue;
            }
            // No run under that name may be writing them meanwhile (the
            // journal holds the lock from here on).
            journal.lock_former(name)?;
            for spool in spools {
                let _ = fs::remove_file(spool);
            }
            settle_record(&mut deliver, &mut journal, &record)?;
        }
        for spool in spool_files(state_dir, journal.tag())? {
            let _ = fs::remove_file(spool);
        }
        // What a killed run was delivering: journaled now if it is
        // delivered whole (the record goes only after that). Last: the
        // deliverer keeps this record for the deliveries to come.
        let record = record_path(state_dir, journal.tag());
        settle_record(&mut deliver, &mut journal, &record)?;
        Ok(Journaled {
            deliver,
            journal,
            account: account.to_owned(),
            dir: state_dir.to_path_buf(),
            current: None,
        })
    }

    /// The deliverer.
    pub fn get_ref(&self) -> &D {
        &self.deliver
    }

    /// The journal file.
    pub fn journal_path(&self) -> &Path {
        self.journal.path()
    }
}

/// The record of the deliveries in flight of the account tagged `tag`.
fn record_path(state_dir: &Path, tag: &str) -> PathBuf {
    state_dir.join(format!(".pop3-uidl-{tag}.delivering"))
}

/// The spool files of the account tagged `tag` in `state_dir`.
fn spool_files(state_dir: &Path, tag: &str) -> io::Result<Vec<PathBuf>> {
    let prefix = format!(".spool-{tag}-");
    let mut found = Vec::new();
    for entry in fs::read_dir(state_dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            found.push(entry.path());
        }
    }
    Ok(found)
}

/// Has `deliver` settle `record` and journals what it found delivered
/// whole before the record may go.
fn settle_record<D: Deliver>(
    deliver: &mut D,
    journal: &mut UidJournal,
    record: &Path,
) -> io::Result<()> {
    let whole = deliver.recover(record, &|uid| journal.contains(uid))?;
    if !whole.is_empty() {
        for uid in &whole {
            journal.mark(uid);
        }
        journal.flush()?;
        deliver.journaled()?;
    }
    Ok(())
}

impl<D: Deliver> MessageSink for Journaled<D> {
    fn contains(&mut self, uid: &Uid) -> io::Result<bool> {
        Ok(self.journal.contains(uid))
    }

    fn begin(&mut self, uid: &Uid) -> io::Result<()> {
        self.abort();
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.join(format!(
            ".spool-{}-{}-{seq}",
            self.journal.tag(),
            std::process::id()
        ));
        let file = private_file()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        self.current = Some((
            uid.clone(),
            path,
            BufWriter::with_capacity(256 * 1024, file),
        ));
        Ok(())
    }

    fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        let (_, _, out) = self
            .current
            .as_mut()
            .ok_or_else(|| io::Error::other("no message begun"))?;
        out.write_all(chunk)
    }

    fn commit(&mut self) -> io::Result<()> {
        let (uid, path, out) = self
            .current
            .take()
            .ok_or_else(|| io::Error::other("no message begun"))?;
        let result = (|| {
            let mut file = out.into_inner().map_err(|e| e.into_error())?;
            file.seek(SeekFrom::Start(0))?;
            let mut reader = BufReader::with_capacity(256 * 1024, file);
            self.deliver.deliver(&mut reader, &uid, &self.account)
        })();
        let _ = fs::remove_file(&path);
        result?;
        self.journal.mark(&uid);
        self.journal.flush()?;
        self.deliver.journaled()
    }

    fn sync(&mut self) -> io::Result<()> {
        self.journal.flush()
    }

    fn abort(&mut self) {
        if let Some((_, path, out)) = self.current.take() {
            drop(out);
            let _ = fs::remove_file(path);
        }
    }

    fn retain(&mut self, listed: &HashSet<Uid>) -> io::Result<()> {
        // No mbox lock is held here, nor at any journal flush: a
        // deliverer's locks last only for its `deliver` or `recover` call,
        // and the journal is written after it returned. So the rewrite's
        // fsyncs keep no other program from the mbox.
        self.journal.flush()?;
        self.journal.retain(listed)
    }

    fn ambiguous(&mut self, now: &HashSet<Uid>) -> io::Result<HashSet<Uid>> {
        self.journal.ambiguous(now)
    }

    fn age(&mut self, uid: &Uid) -> io::Result<Option<std::time::Duration>> {
        Ok(self.journal.age(uid))
    }

    fn mark_seen(&mut self, uid: &Uid) -> io::Result<()> {
        self.journal.mark(uid);
        Ok(())
    }
}

impl<D> Drop for Journaled<D> {
    fn drop(&mut self) {
        if let Some((_, path, out)) = self.current.take() {
            drop(out);
            let _ = fs::remove_file(path);
        }
    }
}

/// A piece of a message's line, as [`each_piece`] hands them on.
#[derive(Debug, PartialEq, Eq)]
enum Piece<'a> {
    /// Some of the line's text (never empty, never a line end).
    Text(&'a [u8]),
    /// The line ends: with a line end (CRLF or LF, cut off), or without
    /// one at the message's end.
    End {
        /// Whether it had a line end.
        newline: bool,
    },
}

/// Calls `f` with the pieces of each line of `message`: its text, in as
/// many pieces as the reader's buffer makes of it, then its end. Memory
/// stays bounded however long a line is (a body line has no length limit).
fn each_piece(
    message: &mut dyn BufRead,
    mut f: impl FnMut(Piece<'_>) -> io::Result<()>,
) -> io::Result<()> {
    // A CR at the end of a piece, held back: it may begin a CRLF.
    let mut cr = false;
    // A line has begun and not ended.
    let mut open = false;
    loop {
        let buf = message.fill_buf()?;
        if buf.is_empty() {
            if cr {
                f(Piece::Text(b"\r"))?;
            }
            if open {
                f(Piece::End { newline: false })?;
            }
            return Ok(());
        }
        let used = match buf.iter().position(|&b| b == b'\n') {
            Some(at) => {
                let text = &buf[..at];
                if cr && !text.is_empty() {
                    f(Piece::Text(b"\r"))?;
                }
                let text = text.strip_suffix(b"\r").unwrap_or(text);
                if !text.is_empty() {
                    f(Piece::Text(text))?;
                }
                f(Piece::End { newline: true })?;
                (cr, open) = (false, false);
                at + 1
            }
            None => {
                if cr {
                    f(Piece::Text(b"\r"))?;
                }
                let (text, held) = match buf.strip_suffix(b"\r") {
                    Some(text) => (text, true),
                    None => (buf, false),
                };
                if !text.is_empty() {
                    f(Piece::Text(text))?;
                }
                (cr, open) = (held, true);
                buf.len()
            }
        };
        message.consume(used);
    }
}

// ---------------------------------------------------------------- mbox

/// Appends messages to an mbox file in the mboxrd format, locked as mutt
/// and procmail lock it.
///
/// Each message is preceded by a `From sender date` line (the sender from
/// its `Return-Path:`, else `MAILER-DAEMON`; the date of delivery in UTC, in
/// `asctime` form), its lines end in LF, every line matching `>*From ` gets
/// one more `>` (so a reader removes exactly one), and it is followed by an
/// empty line. The file is locked with a dot-lock (`FILE.lock`, created
/// exclusively, holding `PID HOST`; one older than five minutes, or one of
/// ours whose process on this host is gone, is taken as stale and
/// removed if it is still that same file right before; one that is not
/// ours any more when we let go is left to its owner) and a
/// POSIX record lock (`fcntl`) on the whole file, neither held while
/// waiting for the other (other programs take them in either order); a
/// file another program put in the mbox's place meanwhile is opened and
/// locked anew. The message is written, the file fsynced (and its
/// directory, when the file is new), then both locks released. A lock not
/// had within the lock timeout (default 60 s) is a temporary failure. A write that fails
/// halfway is cut off again, so the file never keeps half a message.
///
/// In a [`Journaled`] sink each append is recorded first, in a file of the
/// state directory next to the journal (see [`Deliver::recover`]): the
/// message exactly as it will be appended (a large one fsynced before the
/// locks are taken), then (written and fsynced under
/// the locks, before the append) the mbox's path, device and inode, its
/// length before the append, and the message's UID. The record goes once
/// the journal holds the UID. The next run of a process killed in between
/// looks at the mbox under the same locks: the whole message there at that
/// offset is journaled as delivered (not appended again); a beginning of
/// it at the end of the file, nothing after it, is cut off again (the file
/// gets its length before the append back) and the message delivered
/// anew; an mbox that another program changed since (shorter than before,
/// another file, other bytes there) is left as it is, with a warning, and
/// the message delivered anew. Only bytes that are the recorded message's
/// own are ever cut off: a kill leaves each message in the mbox exactly
/// once, and never a part of one (unless another program rewrote the mbox
/// in between, when one copy may be there twice).
#[derive(Debug, Clone)]
pub struct Mbox {
    path: PathBuf,
    lock_timeout: Duration,
    /// The record of the append in flight, in a [`Journaled`] sink.
    record: Option<PathBuf>,
    /// A record that says a message may be in the mbox, not yet journaled.
    unsettled: bool,
}

/// A dot-lock older than this is left over from a dead process.
const STALE_DOT_LOCK: Duration = Duration::from_secs(300);

/// A record holding a message longer than this is fsynced before the
/// mbox's locks are taken (see [`Mbox::append_with`]).
const SYNC_AHEAD: u64 = 64 * 1024;

/// The first word of the last line of an append's record.
const RECORD_MAGIC: &str = "pop3-mbox-append-v1";

/// How much of a record's end is read for its last line (it holds the
/// mbox's path, hex-encoded).
const RECORD_TAIL: u64 = 64 * 1024;

impl Mbox {
    /// Delivers into the mbox at `path` (created, mode 0600, if missing).
    pub fn new(path: impl Into<PathBuf>) -> Mbox {
        Mbox {
            path: path.into(),
            lock_timeout: Duration::from_secs(60),
            record: None,
            unsettled: false,
        }
    }

    /// How long to wait for the locks before a temporary failure.
    #[must_use]
    pub fn with_lock_timeout(mut self, timeout: Duration) -> Mbox {
        self.lock_timeout = timeout;
        self
    }

    /// The mbox file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends without a record (an `Mbox` used on its own).
    fn append(&self, file: &mut File, message: &mut dyn BufRead) -> io::Result<()> {
        let start = file.seek(SeekFrom::End(0))?;
        let result = (|| {
            let mut out = BufWriter::with_capacity(256 * 1024, &mut *file);
            if ends_without_newline(out.get_ref(), start)? {
                // A file not ending in a newline (damaged by another
                // writer) would glue our separator to its last line.
                out.write_all(b"\n")?;
            }
            write_mboxrd(&mut out, message, SystemTime::now())?;
            out.flush()?;
            drop(out);
            file.sync_data()
        })();
        if result.is_err() {
            // No half message stays behind.
            let _ = file.set_len(start);
            let _ = file.sync_data();
        }
        result
    }

    /// Appends with the record at `record` (see the type's docs).
    fn append_recorded(
        &mut self,
        record: &Path,
        message: &mut dyn BufRead,
        uid: &Uid,
    ) -> io::Result<()> {
        if self.unsettled {
            return Err(DeliveryError::temporary(format!(
                "an earlier append to {} is not settled yet (the next run settles it)",
                self.path.display()
            )));
        }
        // The message as it will be appended, written before the locks are
        // taken.
        let mut rec = private_file()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(record)?;
        let result = self.append_with(&mut rec, record, message, uid);
        if result.is_err() && !self.unsettled {
            let _ = fs::remove_file(record);
        }
        result
    }

    fn append_with(
        &mut self,
        rec: &mut File,
        record: &Path,
        message: &mut dyn BufRead,
        uid: &Uid,
    ) -> io::Result<()> {
        let len = {
            let mut out = BufWriter::with_capacity(256 * 1024, &mut *rec);
            write_mboxrd(&mut out, message, SystemTime::now())?;
            out.flush()?;
            drop(out);
            rec.stream_position()?
        };
        // Absolute: the next run may start in another directory.
        let mbox = std::path::absolute(&self.path)?;
        // What can be made durable before the locks is, so that other
        // programs wait for them as briefly as may be. A large message is
        // fsynced now: under the locks only the last line is left to write
        // out. (A small one is not: its fsync under the locks costs about
        // what a second one would.) A record without its last line says
        // nothing was appended, so neither step is needed in any order.
        if len > SYNC_AHEAD {
            rec.sync_data()?;
            trace("record body durable");
        }
        // The record's name must survive a power cut too, or a message
        // appended and not journaled would be appended again.
        sync_parent(record)?;
        let lock = MboxLock::take(&self.path, self.lock_timeout, true)?;
        trace("locked");
        let mut file = &lock.file;
        let before = file.seek(SeekFrom::End(0))?;
        let pad = ends_without_newline(file, before)?;
        let (dev, ino) = identity(&file.metadata()?);
        let entry = Record {
            uid: uid.clone(),
            mbox,
            dev,
            ino,
            before,
            pad,
            len,
        };
        // Where the message goes is known only now, under the locks.
        rec.write_all(entry.last_line().as_bytes())?;
        rec.sync_data()?;
        trace("record durable");
        // From here on the record says where the message goes.
        self.unsettled = true;
        let written = (|| {
            file.seek(SeekFrom::Start(before))?;
            let mut out = BufWriter::with_capacity(256 * 1024, file);
            if pad {
                // A file not ending in a newline (damaged by another
                // writer) would glue our separator to its last line.
                out.write_all(b"\n")?;
            }
            rec.seek(SeekFrom::Start(0))?;
            let copied = io::copy(&mut (&*rec).take(len), &mut out)?;
            if copied != len {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the record {} is shorter than written", record.display()),
                ));
            }
            out.flush()?;
            drop(out);
            // Under the locks: if this fails the append is cut off again,
            // which only the locks make safe (after them another program
            // may append behind ours).
            file.sync_data()?;
            trace("appended");
            Ok(())
        })();
        if let Err(e) = written {
            // No half message stays behind: what follows `before` is ours
            // (the locks are still held).
            if file.set_len(before).and_then(|()| file.sync_data()).is_ok() {
                self.unsettled = false;
            }
            return Err(e);
        }
        drop(lock);
        Ok(())
    }
}

/// Fsyncs the directory holding `path` (so that a name created there
/// survives a power cut); nothing where the system cannot.
fn sync_parent(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        crate::journal::sync_dir(dir)?;
        trace("directory fsynced");
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

// The steps of a delivery, in order, for the tests to check.
#[cfg(test)]
thread_local! {
    static TRACE: std::cell::RefCell<Vec<&'static str>> = const { std::cell::RefCell::new(Vec::new()) };
}

#[cfg(test)]
fn trace(step: &'static str) {
    TRACE.with(|t| t.borrow_mut().push(step));
}

#[cfg(not(test))]
fn trace(_step: &'static str) {}

/// Whether the file of length `len` does not end in a newline (an empty
/// one does not need one).
fn ends_without_newline(file: &File, len: u64) -> io::Result<bool> {
    if len == 0 {
        return Ok(false);
    }
    let mut last = [0u8];
    let mut f = file;
    f.seek(SeekFrom::Start(len - 1))?;
    f.read_exact(&mut last)?;
    f.seek(SeekFrom::End(0))?;
    Ok(last[0] != b'\n')
}

/// An mbox held under both locks; dropping it lets go of them.
#[derive(Debug)]
struct MboxLock {
    file: File,
    /// The dot-lock, when the directory let us take one.
    dot: Option<DotLock>,
}

impl MboxLock {
    /// Takes the dot-lock, opens the mbox at `path` (created if `create`)
    /// and takes the record lock, within `timeout`.
    fn take(path: &Path, timeout: Duration, create: bool) -> io::Result<MboxLock> {
        MboxLock::take_with(path, timeout, create, &mut || {})
    }

    /// [`take`](Self::take), calling `opened` between the opening and
    /// the record lock (where another program may replace the file).
    ///
    /// Programs take the two locks in either order (procmail the dot-lock
    /// first, mutt the record lock first), so neither is held while
    /// waiting for the other: when the record lock is busy, the dot-lock
    /// is let go of again, and both are tried anew a moment later. A
    /// program waiting for the dot-lock while holding the record lock
    /// thus gets it and finishes, instead of both waiting out their
    /// timeouts.
    fn take_with(
        path: &Path,
        timeout: Duration,
        create: bool,
        opened: &mut dyn FnMut(),
    ) -> io::Result<MboxLock> {
        /// Why an attempt did not end with both locks.
        enum Missed {
            Busy,
            Replaced,
        }
        let deadline = Instant::now() + timeout;
        loop {
            let dot = dot_lock(path, deadline)?;
            let attempt = (|| {
                let (file, created) = open_mbox(path, create)?;
                if created {
                    // The new file's name must survive a power cut before
                    // any message is journaled as in it.
                    trace("mbox created");
                    sync_parent(path)?;
                }
                opened();
                if !try_record_lock(&file)? {
                    return Ok(Err(Missed::Busy));
                }
                // A program holding the record lock before us may have put
                // another file in the mbox's place (renamed a rewritten
                // mbox over it): a message appended to the old file would
                // be lost with it. So the file locked must still be the
                // one the path names.
                match fs::metadata(path) {
                    Ok(named) if identity(&named) == identity(&file.metadata()?) => {
                        return Ok(Ok(file));
                    }
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
                Ok(Err(Missed::Replaced))
            })();
            let missed = match attempt {
                Ok(Ok(file)) => return Ok(MboxLock { file, dot }),
                Ok(Err(missed)) => Ok(missed),
                Err(e) => Err(e),
            };
            if let Some(dot) = dot {
                dot.release();
            }
            let missed = missed?;
            let why = match missed {
                Missed::Busy => {
                    trace("record lock busy");
                    "is locked by another process"
                }
                Missed::Replaced => {
                    trace("mbox replaced");
                    "keeps being replaced by another program"
                }
            };
            if Instant::now() >= deadline {
                return Err(DeliveryError::temporary(format!(
                    "{} {why}",
                    path.display()
                )));
            }
            if let Missed::Busy = missed {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Opens the mbox at `path` to read and write, created (mode 0600) if
/// `create`; answers whether this created it.
fn open_mbox(path: &Path, create: bool) -> io::Result<(File, bool)> {
    if create {
        match private_file()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
        {
            Ok(file) => return Ok((file, true)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    let mut options = private_file();
    // (A dangling symbolic link's target is created here.)
    let file = options.read(true).write(true).create(create).open(path)?;
    Ok((file, false))
}

impl Drop for MboxLock {
    fn drop(&mut self) {
        // The record lock goes with the file, closed after this.
        if let Some(dot) = self.dot.take() {
            dot.release();
        }
    }
}

/// A dot-lock we took: its path, and which file it is.
#[derive(Debug)]
struct DotLock {
    path: PathBuf,
    /// The device and inode of the file we linked there.
    id: (u64, u64),
}

impl DotLock {
    /// Lets go of the dot-lock: removes it if it is still the file we
    /// linked. Held long enough to look stale to another program, it may
    /// have been broken and taken by that program meanwhile: its lock is
    /// not ours to remove.
    fn release(self) {
        let ours = fs::symlink_metadata(&self.path).is_ok_and(|m| identity(&m) == self.id);
        if ours {
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn dot_lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Takes the dot-lock of the mbox at `path`: `Some` taken, `None` the
/// directory does not let us (then only the record lock guards the file).
fn dot_lock(path: &Path, deadline: Instant) -> io::Result<Option<DotLock>> {
    dot_lock_with(path, deadline, &mut || {})
}

/// [`dot_lock`], calling `judged` after a lock was judged stale and before
/// it is broken (where another process may break it first).
fn dot_lock_with(
    path: &Path,
    deadline: Instant,
    judged: &mut dyn FnMut(),
) -> io::Result<Option<DotLock>> {
    let lock = dot_lock_path(path);
    // The lock appears with its owner written in it: written to a name
    // of our own first, then linked (so a kill never leaves an empty
    // lock whose owner cannot be told).
    let mut own = lock.as_os_str().to_owned();
    own.push(format!(".{}", std::process::id()));
    let own = PathBuf::from(own);
    let taken = (|| {
        let mut f = private_file()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&own)?;
        writeln!(f, "{}", lock_owner(std::process::id()))?;
        // The file the lock will be: only this one is ours to remove.
        Ok::<_, io::Error>(identity(&f.metadata()?))
    })();
    let id = match taken {
        Ok(id) => id,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return Ok(None),
        Err(e) => return Err(e),
    };
    let result = link_lock(path, &own, &lock, deadline, judged);
    let _ = fs::remove_file(&own);
    Ok(result?.then_some(DotLock { path: lock, id }))
}

fn link_lock(
    path: &Path,
    own: &Path,
    lock: &Path,
    deadline: Instant,
    judged: &mut dyn FnMut(),
) -> io::Result<bool> {
    loop {
        match fs::hard_link(own, lock) {
            Ok(()) => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                if let Some(stale) = stale_lock(lock) {
                    judged();
                    break_stale_lock(lock, &stale);
                    continue;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return Ok(false),
            Err(e) => return Err(e),
        }
        if Instant::now() >= deadline {
            return Err(DeliveryError::temporary(format!(
                "{} is locked ({} exists)",
                path.display(),
                lock.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Which file a dot-lock is, and the state it was judged in: its device,
/// inode, length and modification time.
type LockState = ((u64, u64), u64, Option<SystemTime>);

fn lock_state(meta: &fs::Metadata) -> LockState {
    (identity(meta), meta.len(), meta.modified().ok())
}

/// The state of the dot-lock `lock` if it is stale: older than
/// [`STALE_DOT_LOCK`], or one of ours whose process is gone. Its age and
/// its owner are read from one opened file, so both are of the file whose
/// state is answered.
fn stale_lock(lock: &Path) -> Option<LockState> {
    let mut file = File::open(lock).ok()?;
    let meta = file.metadata().ok()?;
    let old = meta
        .modified()
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age > STALE_DOT_LOCK);
    let stale = old || {
        let mut text = String::new();
        // A lock holds one short line.
        (&mut file).take(4096).read_to_string(&mut text).is_ok() && owner_is_gone(&text)
    };
    stale.then(|| lock_state(&meta))
}

/// Removes the stale dot-lock `lock` if it is still the file judged stale,
/// in the state it was judged in. Another process may have broken it since
/// and taken the lock with a file of its own: removing that one would let
/// two processes hold the lock. So it is looked at again right before the
/// removal. What remains is the window between that look and the removal
/// (two system calls), open only to another process that broke the same
/// stale lock and took a new one in just that moment: breaking a lock by
/// its name cannot be made atomic, and every program that breaks stale
/// dot-locks has the same window. (Two fetches into the same mbox are
/// kept apart by the record lock even then.)
fn break_stale_lock(lock: &Path, stale: &LockState) {
    let same = fs::symlink_metadata(lock).is_ok_and(|m| lock_state(&m) == *stale);
    if same {
        let _ = fs::remove_file(lock);
    }
}

/// What an append's record says (its last line): which message goes where.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    uid: Uid,
    mbox: PathBuf,
    /// The mbox's device and inode (0 and 0 where the system has none).
    dev: u64,
    ino: u64,
    /// The mbox's length before the append.
    before: u64,
    /// Whether a newline goes before the message (the mbox did not end in
    /// one).
    pad: bool,
    /// The message's length as appended (the newline not counted): the
    /// record's bytes before its last line.
    len: u64,
}

impl Record {
    fn last_line(&self) -> String {
        format!(
            "{RECORD_MAGIC} {} {} {} {} {} {} {}\n",
            self.before,
            self.len,
            u8::from(self.pad),
            self.dev,
            self.ino,
            hex(self.uid.as_bytes()),
            hex(self.mbox.as_os_str().as_encoded_bytes()),
        )
    }

    /// The record at `path`: `None` if there is none, or its last line is
    /// not whole (the run was killed before it wrote it: nothing was
    /// appended).
    fn read(path: &Path) -> io::Result<Option<Record>> {
        let mut file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let size = file.metadata()?.len();
        let tail_len = size.min(RECORD_TAIL);
        file.seek(SeekFrom::Start(size - tail_len))?;
        let mut tail = Vec::new();
        file.take(tail_len).read_to_end(&mut tail)?;
        Ok(Record::parse(&tail, size))
    }

    /// The record whose last `tail` bytes are these, of `size` in all.
    fn parse(tail: &[u8], size: u64) -> Option<Record> {
        let body = tail.strip_suffix(b"\n")?;
        let start = body.iter().rposition(|&b| b == b'\n')? + 1;
        let line = std::str::from_utf8(&body[start..]).ok()?;
        let line_at = size - (tail.len() - start) as u64;
        let mut words = line.split(' ');
        if words.next()? != RECORD_MAGIC {
            return None;
        }
        let before = words.next()?.parse().ok()?;
        let len = words.next()?.parse().ok()?;
        let pad = match words.next()? {
            "0" => false,
            "1" => true,
            _ => return None,
        };
        let dev = words.next()?.parse().ok()?;
        let ino = words.next()?.parse().ok()?;
        let uid = Uid::new(bytes::Bytes::from(unhex(words.next()?)?)).ok()?;
        let mbox = path_from_bytes(unhex(words.next()?)?)?;
        if words.next().is_some() || len != line_at {
            return None;
        }
        Some(Record {
            uid,
            mbox,
            dev,
            ino,
            before,
            pad,
            len,
        })
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(unix)]
fn path_from_bytes(bytes: Vec<u8>) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    Some(PathBuf::from(std::ffi::OsString::from_vec(bytes)))
}

#[cfg(not(unix))]
fn path_from_bytes(bytes: Vec<u8>) -> Option<PathBuf> {
    String::from_utf8(bytes).ok().map(PathBuf::from)
}

/// A file's device and inode: which file it is.
#[cfg(unix)]
fn identity(meta: &fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

#[cfg(not(unix))]
fn identity(_meta: &fs::Metadata) -> (u64, u64) {
    (0, 0)
}

/// What the mbox holds where a recorded append went.
#[derive(Debug, PartialEq, Eq)]
enum Found {
    /// The whole message.
    Whole,
    /// Its first bytes (maybe none), nothing after them.
    Part(u64),
    /// Something else: another program changed the mbox (why).
    Changed(String),
}

/// Looks at the mbox (locked) where `entry`, recorded at `record`, says
/// the message went.
fn examine(mbox: &File, entry: &Record, record: &Path) -> io::Result<Found> {
    let meta = mbox.metadata()?;
    if identity(&meta) != (entry.dev, entry.ino) {
        return Ok(Found::Changed("it is another file now".into()));
    }
    let size = meta.len();
    if size < entry.before {
        return Ok(Found::Changed(format!(
            "it is shorter than before the append ({size} bytes, {} before)",
            entry.before
        )));
    }
    let expected = entry.len + u64::from(entry.pad);
    let there = (size - entry.before).min(expected);
    let pad: &[u8] = if entry.pad { b"\n" } else { b"" };
    let mut ours = pad.chain(File::open(record)?.take(entry.len)).take(there);
    let mut theirs = mbox;
    theirs.seek(SeekFrom::Start(entry.before))?;
    let mut theirs = theirs.take(there);
    let (mut a, mut b) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    let mut left = there;
    while left > 0 {
        let n = left.min(a.len() as u64) as usize;
        ours.read_exact(&mut a[..n])?;
        theirs.read_exact(&mut b[..n])?;
        if a[..n] != b[..n] {
            return Ok(Found::Changed(format!(
                "other bytes than the message's follow offset {}",
                entry.before
            )));
        }
        left -= n as u64;
    }
    Ok(if there == expected {
        Found::Whole
    } else {
        Found::Part(there)
    })
}

/// Settles the append `entry`, recorded at `record`, of a killed run:
/// `true` if the message is in the mbox whole; else the mbox holds none of
/// it (a part is cut off again), or was changed by another program and is
/// left as it is (with a warning).
fn settle(entry: &Record, record: &Path, timeout: Duration) -> io::Result<bool> {
    let uid = String::from_utf8_lossy(entry.uid.as_bytes());
    let changed = |why: &str| {
        tracing::warn!(
            mbox = %entry.mbox.display(),
            uid = %uid,
            "an interrupted append cannot be checked: {why}; the mbox is left as it is and the message is delivered again"
        );
    };
    let lock = match MboxLock::take(&entry.mbox, timeout, false) {
        Ok(lock) => lock,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            changed("the mbox is gone");
            return Ok(false);
        }
        Err(e) => return Err(e),
    };
    match examine(&lock.file, entry, record)? {
        Found::Whole => Ok(true),
        Found::Part(0) => Ok(false),
        Found::Part(n) => {
            lock.file.set_len(entry.before)?;
            lock.file.sync_data()?;
            tracing::info!(
                mbox = %entry.mbox.display(),
                uid = %uid,
                "the {n} bytes of an interrupted append are cut off; the message is delivered again"
            );
            Ok(false)
        }
        Found::Changed(why) => {
            changed(&why);
            Ok(false)
        }
    }
}

/// Removes a record. Its directory is not fsynced: a power cut may bring
/// the record back, and that is harmless. A record goes only once nothing
/// it says is needed: its UID is durably journaled (a record back then is
/// found journaled and removed unread), or the mbox is durably cut back to
/// its length before the append, or the append never began (a record back
/// then finds none of its message at that offset, or other bytes there,
/// and changes nothing). And the next record's creation, or a rewrite of
/// the journal, fsyncs this same directory, making the removal durable
/// with it: an fsync here would cost one more per message for nothing.
fn remove_record(record: &Path) -> io::Result<()> {
    match fs::remove_file(record) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

impl Deliver for Mbox {
    fn deliver(
        &mut self,
        message: &mut (dyn BufRead + Send),
        uid: &Uid,
        _account: &str,
    ) -> io::Result<()> {
        if let Some(record) = self.record.clone() {
            return self.append_recorded(&record, message, uid);
        }
        let mut lock = MboxLock::take(&self.path, self.lock_timeout, true)?;
        self.append(&mut lock.file, message)
    }

    fn recover(&mut self, record: &Path, journaled: &dyn Fn(&Uid) -> bool) -> io::Result<Vec<Uid>> {
        self.record = Some(record.to_path_buf());
        self.unsettled = false;
        let Some(entry) = Record::read(record)? else {
            // None, or one whose append never began.
            remove_record(record)?;
            return Ok(Vec::new());
        };
        if !journaled(&entry.uid) && settle(&entry, record, self.lock_timeout)? {
            self.unsettled = true;
            return Ok(vec![entry.uid]);
        }
        remove_record(record)?;
        Ok(Vec::new())
    }

    fn journaled(&mut self) -> io::Result<()> {
        self.unsettled = false;
        match &self.record {
            Some(record) => remove_record(record),
            None => Ok(()),
        }
    }
}

/// Tries to take a POSIX record lock (`fcntl`) on the whole file:
/// `false` when another process holds one.
#[cfg(unix)]
fn try_record_lock(file: &File) -> io::Result<bool> {
    use rustix::fs::{FlockOperation, fcntl_lock};
    match fcntl_lock(file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(true),
        Err(e) if e == rustix::io::Errno::AGAIN || e == rustix::io::Errno::ACCESS => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(not(unix))]
fn try_record_lock(_file: &File) -> io::Result<bool> {
    Ok(true)
}

/// What a dot-lock of ours holds: the process ID and, where the system
/// tells it, the host name (`PID HOST`).
fn lock_owner(pid: u32) -> String {
    match host_name() {
        Some(host) => format!("{pid} {host}"),
        None => pid.to_string(),
    }
}

/// The host name, on Linux.
fn host_name() -> Option<String> {
    let name = fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

/// Whether the dot-lock holding `text` is one of ours (`PID HOST`) taken on this
/// host by a process that no longer exists (killed before it could
/// remove it). Another program's lock, or one from another host, is only
/// taken as stale by its age.
#[cfg(unix)]
fn owner_is_gone(text: &str) -> bool {
    let Some(host) = host_name() else {
        return false;
    };
    let mut words = text.split_whitespace();
    let (Some(pid), Some(their_host), None) = (words.next(), words.next(), words.next()) else {
        return false;
    };
    if their_host != host {
        return false;
    }
    let Some(pid) = pid
        .parse::<i32>()
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    rustix::process::test_kill_process(pid) == Err(rustix::io::Errno::SRCH)
}

#[cfg(not(unix))]
fn owner_is_gone(_text: &str) -> bool {
    false
}

/// Writes one message in mboxrd form (separator line, quoted `From `
/// lines, LF line ends, a closing empty line).
///
/// Memory stays bounded whatever the message: lines of any length are
/// streamed, and the sender is looked for in the first 256 KiB of the
/// header only.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// let mut out = Vec::new();
/// let msg = b"Return-Path: <a@example.com>\r\nSubject: x\r\n\r\nFrom here\r\n>From there\r\n";
/// pop3_blocking::deliver::write_mboxrd(&mut out, &mut &msg[..], UNIX_EPOCH + Duration::from_secs(86400))?;
/// assert_eq!(
///     out,
///     b"From a@example.com Fri Jan  2 00:00:00 1970\nReturn-Path: <a@example.com>\nSubject: x\n\n>From here\n>>From there\n\n"
/// );
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn write_mboxrd(
    out: &mut dyn Write,
    message: &mut dyn BufRead,
    when: SystemTime,
) -> io::Result<()> {
    // The sender is in the headers: read them first, keep them (up to
    // HEAD_LIMIT: a message without an end of its header, or with one
    // endless line, must not fill the memory; a `Return-Path:` past that
    // is not looked for).
    let mut head = Vec::new();
    while head.len() < HEAD_LIMIT {
        let room = (HEAD_LIMIT - head.len()) as u64;
        let n = (&mut *message).take(room).read_until(b'\n', &mut head)?;
        let line = &head[head.len() - n..];
        if n == 0 || line == b"\r\n" || line == b"\n" || line.last() != Some(&b'\n') {
            break;
        }
    }
    let sender = return_path(&head).unwrap_or_else(|| "MAILER-DAEMON".to_owned());
    writeln!(out, "From {sender} {}", asctime(when))?;
    let mut quote = FromQuote::Run;
    each_piece(&mut (&head[..]).chain(message), |piece| match piece {
        Piece::Text(text) => quote.text(out, text),
        Piece::End { .. } => {
            quote.end(out)?;
            out.write_all(b"\n")
        }
    })?;
    out.write_all(b"\n")
}

/// How much of a message's header [`write_mboxrd`] keeps to find the
/// sender in.
const HEAD_LIMIT: usize = 256 * 1024;

/// Where a line is in the mboxrd quoting of `>*From ` lines: one more `>`
/// goes before a line of some `>` then `From `. Lines come in pieces of
/// any size (see [`each_piece`]): the `>` at a line's start are written as
/// they come (the one added is like them), the first bytes of `From `
/// after them held until the rest of it comes or does not.
#[derive(Debug, Clone, Copy)]
enum FromQuote {
    /// At the line's start, or only `>` so far.
    Run,
    /// After the `>`, this many bytes of `From ` (held back).
    From(usize),
    /// The line is quoted as it must be: the rest goes as it is.
    Rest,
}

impl FromQuote {
    const FROM: &'static [u8] = b"From ";

    fn text(&mut self, out: &mut dyn Write, mut text: &[u8]) -> io::Result<()> {
        while !text.is_empty() {
            match *self {
                FromQuote::Run => {
                    let run = text.iter().position(|&b| b != b'>').unwrap_or(text.len());
                    out.write_all(&text[..run])?;
                    text = &text[run..];
                    if !text.is_empty() {
                        *self = FromQuote::From(0);
                    }
                }
                FromQuote::From(had) => {
                    let want = &Self::FROM[had..];
                    let n = want.len().min(text.len());
                    if text[..n] != want[..n] {
                        out.write_all(&Self::FROM[..had])?;
                        *self = FromQuote::Rest;
                    } else if had + n == Self::FROM.len() {
                        out.write_all(b">")?;
                        out.write_all(Self::FROM)?;
                        text = &text[n..];
                        *self = FromQuote::Rest;
                    } else {
                        *self = FromQuote::From(had + n);
                        text = &text[n..];
                    }
                }
                FromQuote::Rest => {
                    out.write_all(text)?;
                    text = &[];
                }
            }
        }
        Ok(())
    }

    /// The line ends: what is held goes as it is.
    fn end(&mut self, out: &mut dyn Write) -> io::Result<()> {
        if let FromQuote::From(had) = *self {
            out.write_all(&Self::FROM[..had])?;
        }
        *self = FromQuote::Run;
        Ok(())
    }
}

/// The address of the first `Return-Path:` header (`MAILER-DAEMON` for
/// `<>`), if any.
fn return_path(head: &[u8]) -> Option<String> {
    for line in head.split(|&b| b == b'\n') {
        if line.len() > 12 && line[..12].eq_ignore_ascii_case(b"return-path:") {
            let value = String::from_utf8_lossy(&line[12..]);
            let value = value.trim().trim_start_matches('<').trim_end_matches('>');
            let value: String = value.chars().filter(|c| !c.is_whitespace()).collect();
            return Some(if value.is_empty() {
                "MAILER-DAEMON".to_owned()
            } else {
                value
            });
        }
    }
    None
}

/// `Www Mmm dd hh:mm:ss yyyy` in UTC, the date of an mbox separator line.
fn asctime(when: SystemTime) -> String {
    let c = civil(when);
    format!(
        "{} {} {:2} {:02}:{:02}:{:02} {}",
        c.weekday, c.month, c.day, c.hour, c.minute, c.second, c.year
    )
}

/// `Www, dd Mmm yyyy hh:mm:ss +0000`, an RFC 5322 date in UTC.
fn rfc5322_date(when: SystemTime) -> String {
    let c = civil(when);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} +0000",
        c.weekday, c.day, c.month, c.year, c.hour, c.minute, c.second
    )
}

struct Civil {
    weekday: &'static str,
    month: &'static str,
    day: i64,
    year: i64,
    hour: u64,
    minute: u64,
    second: u64,
}

/// The UTC calendar date and time of `when`.
fn civil(when: SystemTime) -> Civil {
    let secs = when
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    Civil {
        weekday: DAYS[days.rem_euclid(7) as usize],
        month: MONTHS[(month - 1) as usize],
        day,
        year,
        hour: rem / 3600,
        minute: rem % 3600 / 60,
        second: rem % 60,
    }
}

// ---------------------------------------------------------------- MDA

/// Feeds each message to a mail delivery agent: `sh -c COMMAND`, the
/// message on its standard input (LF line ends), `POP3_ACCOUNT` and
/// `POP3_UID` in its environment, its standard output discarded.
///
/// Exit status 0: delivered. 75 (`EX_TEMPFAIL`): a temporary failure. Any
/// other status or a signal: a permanent failure naming the command. An
/// MDA still running after the timeout (default 5 minutes) is killed with
/// its process group, a temporary failure.
#[derive(Debug, Clone)]
pub struct Mda {
    command: String,
    timeout: Duration,
}

impl Mda {
    /// Runs `command` through `sh -c` for each message.
    pub fn new(command: impl Into<String>) -> Mda {
        Mda {
            command: command.into(),
            timeout: Duration::from_secs(300),
        }
    }

    /// How long one delivery may take before the MDA is killed.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Mda {
        self.timeout = timeout;
        self
    }
}

impl Deliver for Mda {
    fn deliver(
        &mut self,
        message: &mut (dyn BufRead + Send),
        uid: &Uid,
        account: &str,
    ) -> io::Result<()> {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(&self.command)
            .env("POP3_ACCOUNT", account)
            .env("POP3_UID", String::from_utf8_lossy(uid.as_bytes()).as_ref())
            .stdin(Stdio::piped())
            .stdout(Stdio::null());
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command.spawn().map_err(|e| {
            DeliveryError::temporary(format!("cannot run the MDA `{}`: {e}", self.command))
        })?;
        let stdin = child.stdin.take();
        let deadline = Instant::now() + self.timeout;
        let status = std::thread::scope(|scope| {
            let feeder = scope.spawn(move || -> io::Result<()> {
                let Some(stdin) = stdin else { return Ok(()) };
                let mut stdin = BufWriter::new(stdin);
                each_piece(message, |piece| match piece {
                    Piece::Text(text) => stdin.write_all(text),
                    Piece::End { newline: true } => stdin.write_all(b"\n"),
                    Piece::End { newline: false } => Ok(()),
                })?;
                stdin.flush()
                // Dropped: the MDA sees the end of its input.
            });
            let status = loop {
                match child.try_wait() {
                    Ok(Some(status)) => break Ok(Some(status)),
                    Ok(None) if Instant::now() >= deadline => {
                        kill_group(&mut child);
                        let _ = child.wait();
                        break Ok(None);
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                    Err(e) => {
                        kill_group(&mut child);
                        let _ = child.wait();
                        break Err(e);
                    }
                }
            };
            // A broken pipe is the MDA's business: its status decides.
            let fed = feeder
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the MDA feeder panicked")));
            if let Err(e) = fed {
                if e.kind() != io::ErrorKind::BrokenPipe {
                    return Err(e);
                }
            }
            status
        })?;
        let Some(status) = status else {
            return Err(DeliveryError::temporary(format!(
                "the MDA `{}` did not finish within {} s and was killed",
                self.command,
                self.timeout.as_secs()
            )));
        };
        match status.code() {
            Some(0) => Ok(()),
            Some(75) => Err(DeliveryError::temporary(format!(
                "the MDA `{}` exited with 75 (try again later)",
                self.command
            ))),
            Some(code) => Err(DeliveryError::permanent(format!(
                "the MDA `{}` exited with {code}",
                self.command
            ))),
            None => Err(DeliveryError::permanent(format!(
                "the MDA `{}` was killed by a signal",
                self.command
            ))),
        }
    }
}

fn kill_group(child: &mut std::process::Child) {
    #[cfg(unix)]
    {
        let pid = rustix::process::Pid::from_child(child);
        if rustix::process::kill_process_group(pid, rustix::process::Signal::KILL).is_ok() {
            return;
        }
    }
    let _ = child.kill();
}

// ---------------------------------------------------------------- LMTP

/// Where an LMTP server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LmtpAddress {
    /// A Unix socket (`unix:/path`).
    Unix(PathBuf),
    /// A TCP address (`host:port`).
    Tcp(String),
}

impl LmtpAddress {
    /// `unix:/path` or `host:port`.
    ///
    /// ```
    /// use pop3_blocking::deliver::LmtpAddress;
    /// assert_eq!(LmtpAddress::parse("unix:/run/lmtp").unwrap(), LmtpAddress::Unix("/run/lmtp".into()));
    /// assert_eq!(LmtpAddress::parse("127.0.0.1:24").unwrap(), LmtpAddress::Tcp("127.0.0.1:24".into()));
    /// assert!(LmtpAddress::parse("localhost").is_err());
    /// ```
    pub fn parse(s: &str) -> Result<LmtpAddress, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a socket path".into());
            }
            return Ok(LmtpAddress::Unix(PathBuf::from(path)));
        }
        match s.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(LmtpAddress::Tcp(s.to_owned()))
            }
            _ => Err(format!("`{s}` is neither unix:/path nor host:port")),
        }
    }
}

impl fmt::Display for LmtpAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LmtpAddress::Unix(p) => write!(f, "unix:{}", p.display()),
            LmtpAddress::Tcp(a) => f.write_str(a),
        }
    }
}

trait Stream: Read + Write + Send + fmt::Debug {}
impl<T: Read + Write + Send + fmt::Debug> Stream for T {}

#[derive(Debug)]
struct LmtpConn {
    reader: BufReader<Box<dyn Stream>>,
    writer: Box<dyn Stream>,
}

/// Hands each message to an LMTP server (RFC 2033): one connection for the
/// run (LHLO once), then per message `MAIL FROM:<>`, `RCPT TO:<recipient>`,
/// `DATA` with the message dot-stuffed. The server's 250 after the data
/// means the message is stored; 4xx is a temporary failure, 5xx a
/// permanent one (either is followed by RSET, the connection kept). A lost
/// connection or a timeout (default 2 minutes per reply) is temporary.
#[derive(Debug)]
pub struct Lmtp {
    address: LmtpAddress,
    recipient: String,
    timeout: Duration,
    conn: Option<LmtpConn>,
}

impl Lmtp {
    /// Delivers to `recipient` through the server at `address`.
    pub fn new(address: LmtpAddress, recipient: impl Into<String>) -> Lmtp {
        Lmtp {
            address,
            recipient: recipient.into(),
            timeout: Duration::from_secs(120),
            conn: None,
        }
    }

    /// How long to wait for each reply.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Lmtp {
        self.timeout = timeout;
        self
    }

    fn connect(&self) -> io::Result<LmtpConn> {
        let (reader, writer): (Box<dyn Stream>, Box<dyn Stream>) = match &self.address {
            #[cfg(unix)]
            LmtpAddress::Unix(path) => {
                let s = std::os::unix::net::UnixStream::connect(path)?;
                s.set_read_timeout(Some(self.timeout))?;
                s.set_write_timeout(Some(self.timeout))?;
                (Box::new(s.try_clone()?), Box::new(s))
            }
            #[cfg(not(unix))]
            LmtpAddress::Unix(_) => {
                return Err(io::Error::other("Unix sockets need a Unix system"));
            }
            LmtpAddress::Tcp(addr) => {
                let s = TcpStream::connect(addr.as_str())?;
                s.set_read_timeout(Some(self.timeout))?;
                s.set_write_timeout(Some(self.timeout))?;
                s.set_nodelay(true)?;
                (Box::new(s.try_clone()?), Box::new(s))
            }
        };
        let mut conn = LmtpConn {
            reader: BufReader::new(reader),
            writer,
        };
        conn.expect(2, "greeting")?;
        conn.writer.write_all(b"LHLO localhost\r\n")?;
        conn.expect(2, "LHLO")?;
        Ok(conn)
    }

    fn transaction(&mut self, message: &mut dyn BufRead) -> io::Result<Result<(), Reply>> {
        if self.conn.is_none() {
            self.conn = Some(self.connect()?);
        }
        let conn = self
            .conn
            .as_mut()
            .ok_or_else(|| io::Error::other("no connection"))?;
        conn.writer.write_all(b"MAIL FROM:<>\r\n")?;
        let r = conn.reply()?;
        if r.code / 100 != 2 {
            return Ok(Err(r));
        }
        conn.writer
            .write_all(format!("RCPT TO:<{}>\r\n", self.recipient).as_bytes())?;
        let r = conn.reply()?;
        if r.code / 100 != 2 {
            return Ok(Err(r));
        }
        conn.writer.write_all(b"DATA\r\n")?;
        let r = conn.reply()?;
        if r.code != 354 {
            return Ok(Err(r));
        }
        {
            let mut out = BufWriter::with_capacity(64 * 1024, &mut conn.writer);
            let mut at_start = true;
            each_piece(message, |piece| match piece {
                Piece::Text(text) => {
                    if at_start && text[0] == b'.' {
                        out.write_all(b".")?;
                    }
                    at_start = false;
                    out.write_all(text)
                }
                Piece::End { .. } => {
                    at_start = true;
                    out.write_all(b"\r\n")
                }
            })?;
            out.write_all(b".\r\n")?;
            out.flush()?;
        }
        // One reply per accepted recipient: there is one.
        let r = conn.reply()?;
        if r.code / 100 != 2 {
            return Ok(Err(r));
        }
        Ok(Ok(()))
    }
}

/// An SMTP-style reply: its code and its text.
#[derive(Debug)]
struct Reply {
    code: u16,
    text: String,
}

impl LmtpConn {
    fn reply(&mut self) -> io::Result<Reply> {
        let mut text = String::new();
        loop {
            let mut line = Vec::new();
            // A reply line is short; a server that sends an endless one is
            // cut off.
            let n = (&mut self.reader).take(4096).read_until(b'\n', &mut line)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the LMTP server closed the connection",
                ));
            }
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end();
            let code = line
                .get(..3)
                .and_then(|c| c.parse::<u16>().ok())
                .filter(|c| (200..600).contains(c))
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("not an LMTP reply: {line:?}"),
                    )
                })?;
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str(line.get(4..).unwrap_or(""));
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(Reply { code, text });
            }
        }
    }

    fn expect(&mut self, class: u16, what: &str) -> io::Result<()> {
        let r = self.reply()?;
        if r.code / 100 == class {
            Ok(())
        } else if r.code / 100 == 4 {
            Err(DeliveryError::temporary(format!(
                "the LMTP server refused {what}: {} {}",
                r.code, r.text
            )))
        } else {
            Err(DeliveryError::permanent(format!(
                "the LMTP server refused {what}: {} {}",
                r.code, r.text
            )))
        }
    }
}

impl Deliver for Lmtp {
    fn deliver(
        &mut self,
        message: &mut (dyn BufRead + Send),
        _uid: &Uid,
        _account: &str,
    ) -> io::Result<()> {
        match self.transaction(message) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reply)) => {
                if let Some(conn) = self.conn.as_mut() {
                    let reset = conn
                        .writer
                        .write_all(b"RSET\r\n")
                        .and_then(|()| conn.reply());
                    if reset.is_err() {
                        self.conn = None;
                    }
                }
                let text = format!(
                    "the LMTP server {} refused the message: {} {}",
                    self.address, reply.code, reply.text
                );
                if reply.code / 100 == 4 {
                    Err(DeliveryError::temporary(text))
                } else {
                    Err(DeliveryError::permanent(text))
                }
            }
            Err(e) => {
                self.conn = None;
                if DeliveryError::of(&e).is_some() {
                    return Err(e);
                }
                Err(DeliveryError::temporary(format!(
                    "LMTP to {}: {e}",
                    self.address
                )))
            }
        }
    }
}

impl Drop for Lmtp {
    fn drop(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            if conn.writer.write_all(b"QUIT\r\n").is_ok() {
                let _ = conn.reply();
            }
        }
    }
}

// ---------------------------------------------------------------- any

/// Any of the sinks a fetch configuration names: one type for a run over
/// accounts with different destinations.
#[derive(Debug)]
#[non_exhaustive]
pub enum Delivery {
    /// A Maildir.
    Maildir(crate::sink::MaildirSink),
    /// An mbox file.
    Mbox(Journaled<Mbox>),
    /// An MDA command.
    Mda(Journaled<Mda>),
    /// An LMTP server.
    Lmtp(Journaled<Lmtp>),
    /// Another delivery, each message with trace headers.
    Traced(Box<Traced<Delivery>>),
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            Delivery::Maildir($s) => $e,
            Delivery::Mbox($s) => $e,
            Delivery::Mda($s) => $e,
            Delivery::Lmtp($s) => $e,
            Delivery::Traced($s) => $e,
        }
    };
}

// ---------------------------------------------------------------- trace headers

/// A sink that prepends trace headers to every message it stores, whatever
/// the destination (CRLF line ends, as the server sends messages; the
/// sink below converts them as it does the message's own):
///
/// ```text
/// Received: from pop.example.com by myhost with POP3 for <alice@pop.example.com>; Tue, 14 Nov 2023 22:13:20 +0000
/// Delivered-To: alice@pop.example.com
/// X-UIDL: whqtswO00WBw418f9t5JxYwZ
/// ```
///
/// The journal, the file names and the sizes the driver counts are the
/// inner sink's, unaffected.
///
/// ```
/// use pop3_blocking::deliver::Traced;
/// use pop3_blocking::sink::MaildirSink;
/// # let dir = tempfile::tempdir()?;
/// let sink = MaildirSink::open(dir.path().join("inbox"), "alice@pop.example.com")?;
/// let sink = Traced::new(sink, "pop.example.com", "alice@pop.example.com");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Traced<S> {
    inner: S,
    server: String,
    account: String,
    host: String,
}

impl<S: MessageSink> Traced<S> {
    /// Wraps `inner`: `server` is the host fetched from, `account` the
    /// mailbox (`user@host`); the local host's name is the system's.
    pub fn new(inner: S, server: &str, account: &str) -> Traced<S> {
        Traced {
            inner,
            server: server.to_owned(),
            account: account.to_owned(),
            host: local_host_name(),
        }
    }

    /// The inner sink.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The headers for a message with `uid`, received at `when`.
    pub fn headers(&self, uid: &Uid, when: SystemTime) -> Vec<u8> {
        // A header value must not break the header: no line ends.
        let clean = |s: &str| s.replace(['\r', '\n'], " ");
        format!(
            "Received: from {} by {} with POP3 for <{}>; {}\r\nDelivered-To: {}\r\nX-UIDL: {}\r\n",
            clean(&self.server),
            clean(&self.host),
            clean(&self.account),
            rfc5322_date(when),
            clean(&self.account),
            String::from_utf8_lossy(uid.as_bytes()),
        )
        .into_bytes()
    }
}

/// This host's name (`/proc/sys/kernel/hostname`, `/etc/hostname`, else
/// `localhost`).
fn local_host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| fs::read_to_string(p).ok())
        .map(|s| s.trim().to_owned())
        .find(|s| !s.is_empty() && !s.contains(char::is_whitespace))
        .unwrap_or_else(|| "localhost".to_owned())
}

impl<S: MessageSink> MessageSink for Traced<S> {
    fn contains(&mut self, uid: &Uid) -> io::Result<bool> {
        self.inner.contains(uid)
    }
    fn contains_many(&mut self, uids: &[Uid]) -> io::Result<Vec<bool>> {
        self.inner.contains_many(uids)
    }
    fn begin(&mut self, uid: &Uid) -> io::Result<()> {
        self.inner.begin(uid)?;
        let headers = self.headers(uid, SystemTime::now());
        self.inner.write(&headers)
    }
    fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.inner.write(chunk)
    }
    fn commit(&mut self) -> io::Result<()> {
        self.inner.commit()
    }
    fn sync(&mut self) -> io::Result<()> {
        self.inner.sync()
    }
    fn abort(&mut self) {
        self.inner.abort()
    }
    fn retain(&mut self, listed: &HashSet<Uid>) -> io::Result<()> {
        self.inner.retain(listed)
    }
    fn ambiguous(&mut self, now: &HashSet<Uid>) -> io::Result<HashSet<Uid>> {
        self.inner.ambiguous(now)
    }
    fn age(&mut self, uid: &Uid) -> io::Result<Option<Duration>> {
        self.inner.age(uid)
    }
    fn mark_seen(&mut self, uid: &Uid) -> io::Result<()> {
        self.inner.mark_seen(uid)
    }
}

impl MessageSink for Delivery {
    fn contains(&mut self, uid: &Uid) -> io::Result<bool> {
        each!(self, s => s.contains(uid))
    }
    fn contains_many(&mut self, uids: &[Uid]) -> io::Result<Vec<bool>> {
        each!(self, s => s.contains_many(uids))
    }
    fn begin(&mut self, uid: &Uid) -> io::Result<()> {
        each!(self, s => s.begin(uid))
    }
    fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        each!(self, s => s.write(chunk))
    }
    fn commit(&mut self) -> io::Result<()> {
        each!(self, s => s.commit())
    }
    fn sync(&mut self) -> io::Result<()> {
        each!(self, s => s.sync())
    }
    fn abort(&mut self) {
        each!(self, s => s.abort())
    }
    fn retain(&mut self, listed: &HashSet<Uid>) -> io::Result<()> {
        each!(self, s => s.retain(listed))
    }
    fn ambiguous(&mut self, now: &HashSet<Uid>) -> io::Result<HashSet<Uid>> {
        each!(self, s => s.ambiguous(now))
    }
    fn age(&mut self, uid: &Uid) -> io::Result<Option<Duration>> {
        each!(self, s => s.age(uid))
    }
    fn mark_seen(&mut self, uid: &Uid) -> io::Result<()> {
        each!(self, s => s.mark_seen(uid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn asctime_matches_known_dates() {
        let at = |s: u64| asctime(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "Thu Jan  1 00:00:00 1970");
        assert_eq!(at(951_782_400), "Tue Feb 29 00:00:00 2000");
        assert_eq!(at(1_700_000_000), "Tue Nov 14 22:13:20 2023");
        let date = rfc5322_date(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        assert_eq!(date, "Tue, 14 Nov 2023 22:13:20 +0000");
    }

    #[test]
    fn mboxrd_quotes_every_from_line_and_ends_with_a_blank_line() {
        let msg: &[u8] =
            b"Subject: s\r\n\r\nFrom a\r\n>From b\r\n>>From c\r\nFrom\r\n From d\r\nlast";
        let mut out = Vec::new();
        write_mboxrd(&mut out, &mut &msg[..], UNIX_EPOCH).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "From MAILER-DAEMON Thu Jan  1 00:00:00 1970\nSubject: s\n\n>From a\n>>From b\n>>>From c\nFrom\n From d\nlast\n\n"
        );
    }

    const ACCOUNT: &str = "alice@pop.example.com";

    fn uid(s: &str) -> Uid {
        Uid::new(bytes::Bytes::copy_from_slice(s.as_bytes())).unwrap()
    }

    /// A message of about 100 kB, its lines numbered.
    fn message(n: usize) -> Vec<u8> {
        let mut m = format!("Subject: message {n}\r\n\r\n").into_bytes();
        for l in 0..3000 {
            m.extend_from_slice(format!("message {n} line {l:05} of some text\r\n").as_bytes());
        }
        m
    }

    /// An mbox with message 1 delivered and journaled, in a state
    /// directory of its own.
    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Fixture {
            Fixture::new_as(ACCOUNT)
        }

        /// With message 1 delivered under the account name `name`.
        fn new_as(name: &str) -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let fixture = Fixture { dir };
            let mut sink = fixture.open_as(name, &[]);
            sink.begin(&uid("u1")).unwrap();
            sink.write(&message(1)).unwrap();
            sink.commit().unwrap();
            fixture
        }

        /// The sink, as a run under the account name `name` opens it.
        fn open_as(&self, name: &str, former: &[&str]) -> Journaled<Mbox> {
            let former: Vec<String> = former.iter().map(|f| (*f).to_owned()).collect();
            Journaled::open(Mbox::new(self.mbox()), &self.state(), name, &former).unwrap()
        }

        /// The record of a run under the account name `name`.
        fn record_of(&self, name: &str) -> PathBuf {
            record_path(&self.state(), &crate::journal::account_tag(name))
        }

        fn mbox(&self) -> PathBuf {
            self.dir.path().join("mbox")
        }

        fn state(&self) -> PathBuf {
            self.dir.path().join("state")
        }

        fn record(&self) -> PathBuf {
            self.state().join(format!(
                ".pop3-uidl-{}.delivering",
                crate::journal::account_tag(ACCOUNT)
            ))
        }

        /// The sink, as a run opens it.
        fn open(&self) -> Journaled<Mbox> {
            Journaled::open(Mbox::new(self.mbox()), &self.state(), ACCOUNT, &[]).unwrap()
        }

        /// Message 2 appended and its record left, as by a run killed
        /// after the append and before the journal's fsync; answers the
        /// mbox's length before the append.
        fn appended_not_journaled(&self) -> u64 {
            self.appended_not_journaled_as(ACCOUNT)
        }

        /// [`appended_not_journaled`](Self::appended_not_journaled), by a
        /// run under the account name `name`.
        fn appended_not_journaled_as(&self, name: &str) -> u64 {
            let before = fs::metadata(self.mbox()).unwrap().len();
            let mut mbox = Mbox::new(self.mbox());
            let record = self.record_of(name);
            assert!(mbox.recover(&record, &|_| false).unwrap().is_empty());
            let m = message(2);
            mbox.deliver(&mut &m[..], &uid("u2"), name).unwrap();
            assert!(record.exists());
            before
        }

        /// How many times each of messages 1 and 2 is in the mbox, whole.
        fn copies(&self) -> [usize; 2] {
            let text = fs::read(self.mbox()).unwrap();
            [1, 2].map(|n| {
                let mut want = Vec::new();
                write_mboxrd(&mut want, &mut &message(n)[..], UNIX_EPOCH).unwrap();
                // Without the separator line, whose date differs.
                let body = &want[want.iter().position(|&b| b == b'\n').unwrap() + 1..];
                text.windows(body.len()).filter(|w| w == &body).count()
            })
        }
    }

    #[test]
    fn a_record_line_reads_back_as_written() {
        let entry = Record {
            uid: uid("whq~tsw"),
            mbox: PathBuf::from("/var/mail/al ice"),
            dev: 2049,
            ino: 1_234_567,
            before: 99,
            pad: true,
            len: 5,
        };
        let mut file = b"From \n".to_vec();
        file.extend_from_slice(entry.last_line().as_bytes());
        assert_eq!(Record::parse(&file, 100 + file.len() as u64 - 6), None);
        let mut entry = entry;
        entry.len = 6;
        let mut file = b"From \n".to_vec();
        file.extend_from_slice(entry.last_line().as_bytes());
        assert_eq!(Record::parse(&file, file.len() as u64), Some(entry));
        // Its last line cut off: no record.
        file.pop();
        assert_eq!(Record::parse(&file, file.len() as u64), None);
    }

    #[test]
    fn a_complete_append_not_yet_journaled_is_journaled_at_the_next_open_not_appended_again() {
        let f = Fixture::new();
        f.appended_not_journaled();
        let length = fs::metadata(f.mbox()).unwrap().len();
        let mut sink = f.open();
        assert!(sink.contains(&uid("u2")).unwrap(), "journaled");
        assert!(!f.record().exists());
        assert_eq!(fs::metadata(f.mbox()).unwrap().len(), length);
        assert_eq!(f.copies(), [1, 1]);
        drop(sink);
        // And it stays journaled.
        assert!(f.open().contains(&uid("u2")).unwrap());
    }

    #[test]
    fn a_partial_append_is_cut_off_at_the_next_open_and_the_message_delivered_once_again() {
        for keep in [0u64, 1, 40_000] {
            let f = Fixture::new();
            let before = f.appended_not_journaled();
            // Killed in the middle of the append: only `keep` bytes of it
            // reached the file.
            let file = fs::OpenOptions::new().write(true).open(f.mbox()).unwrap();
            file.set_len(before + keep).unwrap();
            drop(file);
            let mut sink = f.open();
            assert!(!sink.contains(&uid("u2")).unwrap());
            assert!(!f.record().exists());
            assert_eq!(fs::metadata(f.mbox()).unwrap().len(), before, "{keep}");
            assert_eq!(f.copies(), [1, 0]);
            sink.begin(&uid("u2")).unwrap();
            sink.write(&message(2)).unwrap();
            sink.commit().unwrap();
            assert_eq!(f.copies(), [1, 1], "{keep}");
            assert!(!f.record().exists());
        }
    }

    #[test]
    fn an_mbox_another_program_changed_after_a_partial_append_is_left_as_it_is() {
        // Another writer appended its message after the cut-off one.
        let f = Fixture::new();
        let before = f.appended_not_journaled();
        let file = fs::OpenOptions::new().write(true).open(f.mbox()).unwrap();
        file.set_len(before + 1000).unwrap();
        drop(file);
        let mut file = fs::OpenOptions::new().append(true).open(f.mbox()).unwrap();
        file.write_all(b"\nFrom other Thu Jan  1 00:00:00 1970\nSubject: theirs\n\nx\n\n")
            .unwrap();
        drop(file);
        let text = fs::read(f.mbox()).unwrap();
        let sink = f.open();
        assert_eq!(fs::read(f.mbox()).unwrap(), text, "not cut off");
        assert!(!f.record().exists());
        drop(sink);

        // A mail reader removed messages: the mbox is shorter than before.
        let f = Fixture::new();
        let before = f.appended_not_journaled();
        let file = fs::OpenOptions::new().write(true).open(f.mbox()).unwrap();
        file.set_len(before - 10).unwrap();
        drop(file);
        let text = fs::read(f.mbox()).unwrap();
        let mut sink = f.open();
        assert_eq!(fs::read(f.mbox()).unwrap(), text, "not cut off");
        assert!(!sink.contains(&uid("u2")).unwrap(), "delivered again");

        // A mail reader rewrote it into a new file (the same bytes, its
        // message 2 half there).
        let f = Fixture::new();
        let before = f.appended_not_journaled();
        let text = fs::read(f.mbox()).unwrap();
        let half = &text[..before as usize + 500];
        let tmp = f.dir.path().join("mbox.new");
        fs::write(&tmp, half).unwrap();
        fs::rename(&tmp, f.mbox()).unwrap();
        let mut sink = f.open();
        assert_eq!(fs::read(f.mbox()).unwrap(), half, "not cut off");
        assert!(!sink.contains(&uid("u2")).unwrap(), "delivered again");
    }

    #[test]
    fn a_record_whose_last_line_is_missing_or_whose_uid_is_journaled_changes_nothing() {
        // Killed before the record said where the message goes: nothing
        // was appended.
        let f = Fixture::new();
        let text = fs::read(f.mbox()).unwrap();
        fs::write(
            f.record(),
            b"From MAILER-DAEMON Thu Jan  1 00:00:00 1970\nx\n\n",
        )
        .unwrap();
        let mut sink = f.open();
        assert!(!f.record().exists());
        assert!(!sink.contains(&uid("u2")).unwrap());
        assert_eq!(fs::read(f.mbox()).unwrap(), text);
        drop(sink);

        // Killed after the journal's fsync, before the record went: the
        // mbox is not looked at (its end may be another writer's now).
        let f = Fixture::new();
        let before = f.appended_not_journaled();
        let mut journal = UidJournal::open(&f.state(), ACCOUNT, &[]).unwrap();
        journal.mark(&uid("u2"));
        journal.flush().unwrap();
        drop(journal);
        let file = fs::OpenOptions::new().write(true).open(f.mbox()).unwrap();
        file.set_len(before + 1000).unwrap();
        drop(file);
        let sink = f.open();
        assert!(!f.record().exists());
        assert_eq!(fs::metadata(f.mbox()).unwrap().len(), before + 1000);
        drop(sink);
    }

    #[test]
    fn a_second_append_waits_until_the_first_is_journaled() {
        let f = Fixture::new();
        let mut mbox = Mbox::new(f.mbox());
        mbox.recover(&f.record(), &|_| false).unwrap();
        let m = message(2);
        mbox.deliver(&mut &m[..], &uid("u2"), ACCOUNT).unwrap();
        let e = mbox.deliver(&mut &m[..], &uid("u3"), ACCOUNT).unwrap_err();
        assert!(DeliveryError::of(&e).unwrap().is_temporary(), "{e}");
        assert!(
            Record::read(&f.record())
                .unwrap()
                .is_some_and(|r| r.uid == uid("u2"))
        );
        mbox.journaled().unwrap();
        mbox.deliver(&mut &m[..], &uid("u3"), ACCOUNT).unwrap();
    }

    /// The account's name before a rename.
    const FORMER: &str = "alice@pop.example.com:110";

    #[test]
    fn a_complete_append_recorded_under_a_former_account_name_is_journaled_not_appended_again() {
        let f = Fixture::new_as(FORMER);
        f.appended_not_journaled_as(FORMER);
        let length = fs::metadata(f.mbox()).unwrap().len();
        let mut sink = f.open_as(ACCOUNT, &[FORMER]);
        assert!(sink.contains(&uid("u2")).unwrap(), "journaled");
        assert!(!f.record_of(FORMER).exists());
        assert!(!f.record_of(ACCOUNT).exists());
        assert_eq!(fs::metadata(f.mbox()).unwrap().len(), length);
        assert_eq!(f.copies(), [1, 1]);
        drop(sink);
        // Journaled under the new name, without the former one now.
        assert!(f.open_as(ACCOUNT, &[]).contains(&uid("u2")).unwrap());
    }

    #[test]
    fn a_partial_append_recorded_under_a_former_account_name_is_cut_off_and_delivered_once() {
        let f = Fixture::new_as(FORMER);
        let before = f.appended_not_journaled_as(FORMER);
        let file = fs::OpenOptions::new().write(true).open(f.mbox()).unwrap();
        file.set_len(before + 40_000).unwrap();
        drop(file);
        // A spool file the killed run left, too.
        let spool = f.state().join(format!(
            ".spool-{}-1-1",
            crate::journal::account_tag(FORMER)
        ));
        fs::write(&spool, b"half a message").unwrap();
        let mut sink = f.open_as(ACCOUNT, &[FORMER]);
        assert!(!sink.contains(&uid("u2")).unwrap());
        assert!(!f.record_of(FORMER).exists());
        assert!(!spool.exists());
        assert_eq!(fs::metadata(f.mbox()).unwrap().len(), before);
        assert_eq!(f.copies(), [1, 0]);
        sink.begin(&uid("u2")).unwrap();
        sink.write(&message(2)).unwrap();
        sink.commit().unwrap();
        assert_eq!(f.copies(), [1, 1]);
        assert!(!f.record_of(ACCOUNT).exists());
    }

    #[test]
    fn a_former_account_names_record_is_left_alone_while_a_fetch_under_that_name_runs() {
        let f = Fixture::new_as(FORMER);
        let before = f.appended_not_journaled_as(FORMER);
        let file = fs::OpenOptions::new().write(true).open(f.mbox()).unwrap();
        file.set_len(before + 1000).unwrap();
        drop(file);
        let running = UidJournal::open(&f.state(), FORMER, &[]).unwrap();
        let former = [FORMER.to_owned()];
        let e = Journaled::open(Mbox::new(f.mbox()), &f.state(), ACCOUNT, &former).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{e}");
        assert!(f.record_of(FORMER).exists());
        assert_eq!(fs::metadata(f.mbox()).unwrap().len(), before + 1000);
        drop(running);
        let sink = f.open_as(ACCOUNT, &[FORMER]);
        assert!(!f.record_of(FORMER).exists());
        assert_eq!(fs::metadata(f.mbox()).unwrap().len(), before);
        drop(sink);
    }

    #[test]
    fn a_former_account_names_journal_held_by_a_running_fetch_fails_the_open_with_exit_75() {
        // Nothing left to settle under the former name: only its journal,
        // which a fetch under that name is writing.
        let f = Fixture::new_as(FORMER);
        let running = UidJournal::open(&f.state(), FORMER, &[]).unwrap();
        let former = [FORMER.to_owned()];
        let e = Journaled::open(Mbox::new(f.mbox()), &f.state(), ACCOUNT, &former).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{e}");
        assert_eq!(crate::fetch::ExitKind::of_store(&e).code(), 75);
        drop(running);
        let mut sink = f.open_as(ACCOUNT, &[FORMER]);
        assert!(sink.contains(&uid("u1")).unwrap());
    }

    #[test]
    fn an_appends_record_and_its_name_are_durable_before_the_append_begins() {
        let f = Fixture::new();
        let mut sink = f.open();
        TRACE.with(|t| t.borrow_mut().clear());
        sink.begin(&uid("u2")).unwrap();
        sink.write(&message(2)).unwrap();
        sink.commit().unwrap();
        let steps = TRACE.with(|t| t.take());
        assert_eq!(
            steps,
            [
                "record body durable",
                "directory fsynced",
                "locked",
                "record durable",
                "appended"
            ],
            "the record and its directory are fsynced before the append, \
             the large message in it before the locks are taken"
        );
    }

    #[test]
    fn a_small_messages_record_is_fsynced_once_under_the_locks_before_the_append() {
        let f = Fixture::new();
        let mut sink = f.open();
        TRACE.with(|t| t.borrow_mut().clear());
        sink.begin(&uid("u2")).unwrap();
        sink.write(b"Subject: small\r\n\r\nbody\r\n").unwrap();
        sink.commit().unwrap();
        let steps = TRACE.with(|t| t.take());
        assert_eq!(
            steps,
            ["directory fsynced", "locked", "record durable", "appended"]
        );
    }

    #[test]
    fn a_new_mbox_files_name_is_fsynced_before_a_message_is_appended() {
        let dir = tempfile::tempdir().unwrap();
        let mut mbox = Mbox::new(dir.path().join("new-mbox"));
        TRACE.with(|t| t.borrow_mut().clear());
        let m = message(1);
        mbox.deliver(&mut &m[..], &uid("u1"), ACCOUNT).unwrap();
        let steps = TRACE.with(|t| t.take());
        assert_eq!(steps, ["mbox created", "directory fsynced"]);
        // An mbox there already: no directory fsync.
        mbox.deliver(&mut &m[..], &uid("u2"), ACCOUNT).unwrap();
        assert!(TRACE.with(|t| t.take()).is_empty());
    }

    #[test]
    fn an_mbox_replaced_before_its_record_lock_is_taken_is_opened_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mbox");
        fs::write(&path, b"From a Thu Jan  1 00:00:00 1970\nold\n\n").unwrap();
        let mut replaced = false;
        let mut replace = || {
            if !replaced {
                // Another program renames its rewrite over the mbox.
                let tmp = dir.path().join("mbox.rewrite");
                fs::write(&tmp, b"From a Thu Jan  1 00:00:00 1970\nnew\n\n").unwrap();
                fs::rename(&tmp, &path).unwrap();
                replaced = true;
            }
        };
        TRACE.with(|t| t.borrow_mut().clear());
        let lock = MboxLock::take_with(&path, Duration::from_secs(5), true, &mut replace).unwrap();
        assert_eq!(TRACE.with(|t| t.take()), ["mbox replaced"]);
        assert_eq!(
            identity(&lock.file.metadata().unwrap()),
            identity(&fs::metadata(&path).unwrap()),
            "the file locked is the one the path names"
        );
        let mut text = String::new();
        (&lock.file).read_to_string(&mut text).unwrap();
        assert!(text.contains("new"), "{text}");
    }

    /// The lines of `m` as the line-at-a-time conversions took them: text
    /// (line end cut off) and whether it had a line end.
    fn lines_of(m: &[u8]) -> Vec<(&[u8], bool)> {
        let mut lines = Vec::new();
        let mut rest = m;
        while !rest.is_empty() {
            match rest.iter().position(|&b| b == b'\n') {
                Some(at) => {
                    let text = &rest[..at];
                    lines.push((text.strip_suffix(b"\r").unwrap_or(text), true));
                    rest = &rest[at + 1..];
                }
                None => {
                    lines.push((rest, false));
                    rest = &[];
                }
            }
        }
        lines
    }

    /// A message of `len` bytes of few kinds (`>`, `From `'s letters, CR,
    /// LF, `.`), from a fixed-seed generator.
    fn tricky_message(state: &mut u64, len: usize) -> Vec<u8> {
        const ALPHABET: &[u8] = b">>>From \r\n\n.x";
        (0..len)
            .map(|_| {
                *state ^= *state << 13;
                *state ^= *state >> 7;
                *state ^= *state << 17;
                ALPHABET[(*state % ALPHABET.len() as u64) as usize]
            })
            .collect()
    }

    #[test]
    fn the_streamed_conversions_match_the_line_at_a_time_ones_however_the_input_is_split() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for case in 0..1500 {
            let m = tricky_message(&mut state, case % 97);
            let lines = lines_of(&m);
            // mboxrd: the separator, each line with `>*From ` quoted, LF
            // ends, an empty line.
            let mut mboxrd = b"From MAILER-DAEMON Thu Jan  1 00:00:00 1970\n".to_vec();
            for (text, _) in &lines {
                let run = text.iter().position(|&b| b != b'>').unwrap_or(text.len());
                if text[run..].starts_with(b"From ") {
                    mboxrd.push(b'>');
                }
                mboxrd.extend_from_slice(text);
                mboxrd.push(b'\n');
            }
            mboxrd.push(b'\n');
            // For an MDA: LF ends, none added.
            let mut mda = Vec::new();
            // For LMTP: dot-stuffed, CRLF ends.
            let mut lmtp = Vec::new();
            for (text, ended) in &lines {
                mda.extend_from_slice(text);
                if *ended {
                    mda.push(b'\n');
                }
                if text.first() == Some(&b'.') {
                    lmtp.push(b'.');
                }
                lmtp.extend_from_slice(text);
                lmtp.extend_from_slice(b"\r\n");
            }
            for cap in [1, 2, 3, 5, 8, 64] {
                let mut out = Vec::new();
                let mut input = BufReader::with_capacity(cap, &m[..]);
                write_mboxrd(&mut out, &mut input, UNIX_EPOCH).unwrap();
                assert_eq!(out, mboxrd, "mboxrd of {m:?} read {cap} at a time");
                let (mut got_mda, mut got_lmtp, mut at_start) = (Vec::new(), Vec::new(), true);
                let mut input = BufReader::with_capacity(cap, &m[..]);
                each_piece(&mut input, |piece| {
                    match piece {
                        Piece::Text(text) => {
                            assert!(!text.is_empty() && !text.contains(&b'\n'));
                            got_mda.extend_from_slice(text);
                            if at_start && text[0] == b'.' {
                                got_lmtp.push(b'.');
                            }
                            at_start = false;
                            got_lmtp.extend_from_slice(text);
                        }
                        Piece::End { newline } => {
                            if newline {
                                got_mda.push(b'\n');
                            }
                            got_lmtp.extend_from_slice(b"\r\n");
                            at_start = true;
                        }
                    }
                    Ok(())
                })
                .unwrap();
                assert_eq!(got_mda, mda, "MDA input of {m:?} read {cap} at a time");
                assert_eq!(got_lmtp, lmtp, "LMTP data of {m:?} read {cap} at a time");
            }
        }
    }

    /// `len` bytes of `>` then `From x` and a line end, handed out 8 KiB at
    /// a time; before each piece it checks that all but `slack` bytes of
    /// what was taken so far has reached `written`.
    struct LongLine {
        len: u64,
        taken: u64,
        written: std::rc::Rc<std::cell::Cell<u64>>,
        slack: u64,
        chunk: Vec<u8>,
    }

    impl Read for LongLine {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = {
                let piece = self.fill_buf()?;
                let n = piece.len().min(buf.len());
                buf[..n].copy_from_slice(&piece[..n]);
                n
            };
            self.consume(n);
            Ok(n)
        }
    }

    impl BufRead for LongLine {
        fn fill_buf(&mut self) -> io::Result<&[u8]> {
            assert!(
                self.taken <= self.written.get() + self.slack,
                "{} bytes read, {} written: the line is kept in memory",
                self.taken,
                self.written.get()
            );
            let tail = b"From x\n";
            self.chunk.clear();
            if self.taken < self.len {
                let n = (self.len - self.taken).min(8192) as usize;
                self.chunk.resize(n, b'>');
            } else if self.taken < self.len + tail.len() as u64 {
                self.chunk
                    .extend_from_slice(&tail[(self.taken - self.len) as usize..]);
            }
            Ok(&self.chunk)
        }

        fn consume(&mut self, n: usize) {
            self.taken += n as u64;
        }
    }

    struct Counting(std::rc::Rc<std::cell::Cell<u64>>, u64);

    impl Write for Counting {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.set(self.0.get() + buf.len() as u64);
            self.1 += buf.iter().filter(|&&b| b == b'>').count() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_line_of_many_megabytes_is_converted_in_bounded_memory() {
        let len = 16 << 20;
        let written = std::rc::Rc::new(std::cell::Cell::new(0));
        let mut input = LongLine {
            len,
            taken: 0,
            written: written.clone(),
            // The header kept to find the sender in, the separator line.
            slack: HEAD_LIMIT as u64 + 64,
            chunk: Vec::new(),
        };
        let mut out = Counting(written.clone(), 0);
        write_mboxrd(&mut out, &mut input, UNIX_EPOCH).unwrap();
        assert_eq!(out.1, len + 1, "the `>From ` line gets one more `>`");

        let mut input = LongLine {
            len,
            taken: 0,
            written: written.clone(),
            slack: 1,
            chunk: Vec::new(),
        };
        written.set(0);
        each_piece(&mut input, |piece| {
            if let Piece::Text(text) = piece {
                written.set(written.get() + text.len() as u64);
            } else {
                written.set(written.get() + 1);
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(written.get(), len + 7);
    }

    #[test]
    fn the_dot_lock_is_let_go_while_the_record_lock_is_busy_so_a_mutt_style_locker_finishes() {
        use std::process::{Command, Stdio};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mbox");
        fs::write(&path, b"").unwrap();
        // Like mutt: the record lock first, then (once told to go, while
        // we hold the dot-lock) the dot-lock, waited for; then both let go.
        let script = "import fcntl,os,sys,time\n\
            f=open(sys.argv[1],'r+')\n\
            fcntl.lockf(f,fcntl.LOCK_EX)\n\
            print('locked',flush=True)\n\
            sys.stdin.readline()\n\
            lock=sys.argv[1]+'.lock'\n\
            while True:\n\
            \x20try:\n\
            \x20\x20fd=os.open(lock,os.O_CREAT|os.O_EXCL|os.O_WRONLY,0o600)\n\
            \x20\x20break\n\
            \x20except FileExistsError:\n\
            \x20\x20time.sleep(0.005)\n\
            print('dot',flush=True)\n\
            os.close(fd)\n\
            os.unlink(lock)\n\
            fcntl.lockf(f,fcntl.LOCK_UN)\n";
        let mut other = Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(&path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("this test needs python3 (apt-get install python3)");
        let mut said = BufReader::new(other.stdout.take().unwrap());
        let mut line = String::new();
        said.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "locked");
        let mut go = other.stdin.take();
        let mut tell = || {
            if let Some(mut stdin) = go.take() {
                stdin.write_all(b"go\n").unwrap();
            }
        };
        TRACE.with(|t| t.borrow_mut().clear());
        let taken = MboxLock::take_with(&path, Duration::from_secs(30), false, &mut tell);
        let status = other.wait().unwrap();
        let mut rest = String::new();
        said.read_to_string(&mut rest).unwrap();
        assert!(status.success());
        assert_eq!(rest.trim(), "dot", "the other program had the dot-lock");
        let lock = taken.expect("both locks, once the other program let go of them");
        assert!(TRACE.with(|t| t.take()).contains(&"record lock busy"));
        assert!(dot_lock_path(&path).exists(), "ours now");
        drop(lock);
        assert!(!dot_lock_path(&path).exists());
    }

    /// A dot-lock another program holds, written as `text`, last changed
    /// `age` ago.
    fn foreign_dot_lock(lock: &Path, text: &str, age: Duration) {
        // Written aside and renamed into place: always a new file.
        let aside = lock.with_extension("aside");
        fs::write(&aside, text).unwrap();
        let file = File::options().write(true).open(&aside).unwrap();
        file.set_modified(SystemTime::now() - age).unwrap();
        drop(file);
        fs::rename(&aside, lock).unwrap();
    }

    #[test]
    fn a_stale_dot_lock_broken_and_taken_anew_by_another_process_meanwhile_is_left_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mbox");
        let lock = dot_lock_path(&path);
        foreign_dot_lock(&lock, "dead\n", STALE_DOT_LOCK * 2);
        // Once we judged it stale, another process breaks it first and
        // takes the lock with a file of its own.
        let mut other = || foreign_dot_lock(&lock, "alive\n", Duration::ZERO);
        let deadline = Instant::now() + Duration::from_millis(300);
        let e = dot_lock_with(&path, deadline, &mut other).unwrap_err();
        assert!(DeliveryError::of(&e).unwrap().is_temporary(), "{e}");
        assert_eq!(
            fs::read_to_string(&lock).unwrap(),
            "alive\n",
            "the other process's fresh lock is still there"
        );
    }

    #[test]
    fn a_stale_dot_lock_still_as_judged_is_broken_and_taken() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mbox");
        let lock = dot_lock_path(&path);
        foreign_dot_lock(&lock, "dead\n", STALE_DOT_LOCK * 2);
        let deadline = Instant::now() + Duration::from_secs(5);
        let taken = dot_lock(&path, deadline).unwrap().expect("taken");
        let text = fs::read_to_string(&lock).unwrap();
        assert_eq!(text.trim(), lock_owner(std::process::id()));
        taken.release();
        assert!(!lock.exists());
    }

    #[test]
    fn a_dot_lock_broken_and_taken_by_another_program_while_held_is_not_removed_when_let_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mbox");
        fs::write(&path, b"").unwrap();
        let held = MboxLock::take(&path, Duration::from_secs(5), false).unwrap();
        // Held so long that another program judged it stale, broke it and
        // took the lock itself.
        let lock = dot_lock_path(&path);
        foreign_dot_lock(&lock, "theirs\n", Duration::ZERO);
        drop(held);
        assert_eq!(fs::read_to_string(&lock).unwrap(), "theirs\n");
    }

    #[test]
    fn a_record_names_the_mbox_by_its_absolute_path_when_given_a_relative_one() {
        let f = Fixture::new();
        // The fixture's mbox, named relative to the working directory.
        let cwd = std::env::current_dir().unwrap();
        let mut relative = PathBuf::new();
        for _ in cwd.components().skip(1) {
            relative.push("..");
        }
        relative.push(f.mbox().strip_prefix("/").unwrap());
        assert!(relative.is_relative());
        let mut mbox = Mbox::new(&relative);
        mbox.recover(&f.record(), &|_| false).unwrap();
        let m = message(2);
        mbox.deliver(&mut &m[..], &uid("u2"), ACCOUNT).unwrap();
        let entry = Record::read(&f.record()).unwrap().unwrap();
        assert!(entry.mbox.is_absolute(), "{}", entry.mbox.display());
        assert_eq!(
            identity(&fs::metadata(&entry.mbox).unwrap()),
            identity(&fs::metadata(f.mbox()).unwrap())
        );
    }
}
