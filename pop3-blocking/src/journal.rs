//! The UID journal every fetch sink keeps: which messages of one POP3
//! account are durably stored, and which UIDs the server gave two messages.
//!
//! One journal is two files in a directory (the Maildir's top for the
//! Maildir sink, the state directory for the others):
//!
//! - `.pop3-uidl-<16 hex digits of SHA-256(account)>`: one UID per line,
//!   `seen <unix seconds> <uid>` for when this client first saw it (stored
//!   it, or marked it seen), and `ambiguous <uid>` for every UID the server
//!   listed for two messages, while the server still lists it. (A UID has
//!   no space: a version without `seen` lines reads one as a UID no server
//!   lists, and drops it at its next rewrite; the UID line itself is there
//!   too, so it still knows the message.) A UID without a `seen` line (from
//!   such a version) gets one the first time its age is asked;
//! - `.pop3-uidl-<same>.lock`: an exclusive lock held while the journal is
//!   open (released by the OS if the process dies), so two fetches of one
//!   account never race. A journal opened with former names of its
//!   account holds their locks too, and reads their journals under them.
//!
//! A UID is [marked](UidJournal::mark) stored in memory first and written
//! by the next [`UidJournal::flush`], which appends and fsyncs: a sink
//! flushes only once what it stored is itself durable.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use pop3_proto::types::Uid;
use sha2::{Digest, Sha256};

/// How long a held journal lock is tried again before it counts as
/// another fetch's.
const LOCK_PATIENCE: Duration = Duration::from_secs(1);

/// The journal's mark of an ambiguous UID (a UID has no space: older
/// versions read such a line as a UID no server lists).
const AMBIGUOUS: &[u8] = b"ambiguous ";

/// The journal's mark of a first-seen time.
const SEEN: &[u8] = b"seen ";

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The durable list of one account's stored UIDs (see the module docs).
///
/// ```
/// use bytes::Bytes;
/// use pop3_blocking::journal::UidJournal;
/// use pop3_proto::types::Uid;
/// let dir = tempfile::tempdir()?;
/// let uid = Uid::new(Bytes::from_static(b"u1")).unwrap();
/// let mut journal = UidJournal::open(dir.path(), "alice@pop.example.com", &[])?;
/// journal.mark(&uid);
/// journal.flush()?;
/// drop(journal);
/// let journal = UidJournal::open(dir.path(), "alice@pop.example.com", &[])?;
/// assert!(journal.contains(&uid));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct UidJournal {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    /// Held while the journal is open.
    _lock: File,
    /// The locks of the former names' journals read (see
    /// [`UidJournal::open`]), held while this one is open.
    _former_locks: Vec<(String, File)>,
    tag: String,
    saved: HashSet<Vec<u8>>,
    ambiguous: HashSet<Vec<u8>>,
    /// When each UID was first seen (unix seconds), where known.
    seen: HashMap<Vec<u8>, u64>,
    /// Marked, not written yet (they are in `saved`).
    pending: Vec<Uid>,
    /// First-seen times not written yet.
    pending_seen: Vec<(Vec<u8>, u64)>,
}

/// The first 16 hex digits of SHA-256 of an account name: its tag in the
/// journal's file names.
pub fn account_tag(account: &str) -> String {
    hex(&Sha256::digest(account.as_bytes()))[..16].to_owned()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(2 * bytes.len());
    crate::hex::push_hex(&mut s, bytes);
    s
}

pub(crate) fn sync_dir(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

/// Takes the lock of the journal of `account` in `dir` (see
/// [`UidJournal::open`]), held until the file answered is closed:
/// `WouldBlock` when another process still holds it after about a second.
pub(crate) fn lock_account(dir: &Path, account: &str) -> io::Result<File> {
    let tag = account_tag(account);
    let lock = private_file()
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(format!(".pop3-uidl-{tag}.lock")))?;
    // A lock just let go of can look held for a moment: a process
    // forked elsewhere in this program holds a copy of the descriptor
    // until its exec closes it. So a held lock is tried again for a
    // short while before it counts as another fetch's.
    let mut pause = Duration::from_millis(1);
    let mut waited = Duration::ZERO;
    loop {
        // fs4's lock, named in full: from Rust 1.89 on, `File` has a
        // `try_lock` of its own.
        match fs4::FileExt::try_lock(&lock) {
            Ok(()) => break,
            Err(fs4::TryLockError::WouldBlock) if waited < LOCK_PATIENCE => {
                std::thread::sleep(pause);
                waited += pause;
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            Err(fs4::TryLockError::WouldBlock) => {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!("another fetch of {account} is running"),
                ));
            }
            Err(fs4::TryLockError::Error(e)) => return Err(e),
        }
    }
    Ok(lock)
}

impl UidJournal {
    /// Opens (creating) the journal of `account` in `dir` (created if
    /// missing, mode 0700), taking its lock: `WouldBlock` when another
    /// process still has it open after about a second. A partly written last line (a kill in the
    /// middle of an append) is dropped. The UIDs of the journals of the
    /// names in `former` (names the account had before) count as stored and
    /// are copied into this journal at the next flush.
    ///
    /// A former name's journal is read under its own lock, held as long as
    /// this journal is open: a fetch still running under that name could
    /// be writing it, and would fetch the same maildrop. `WouldBlock` when
    /// one holds it (the former name's journal is left as it is).
    pub fn open(dir: &Path, account: &str, former: &[String]) -> io::Result<UidJournal> {
        private_dir().create(dir)?;
        let tag = account_tag(account);
        let lock = lock_account(dir, account)?;
        let path = dir.join(format!(".pop3-uidl-{tag}"));
        let mut file = private_file()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)?;
        let mut text = Vec::new();
        file.read_to_end(&mut text)?;
        let complete = complete_lines(&text);
        if complete < text.len() {
            // Killed in the middle of an append: that entry was never
            // acknowledged; drop it so the next append starts a clean line.
            file.set_len(complete as u64)?;
            file.sync_data()?;
            file.seek(SeekFrom::End(0))?;
        }
        let (mut saved, ambiguous, mut seen) = parse(&text[..complete]);
        let mut pending = Vec::new();
        let mut pending_seen = Vec::new();
        let mut former_locks: Vec<(String, File)> = Vec::new();
        for name in former.iter().filter(|f| *f != account) {
            if former_locks.iter().any(|(n, _)| n == name) {
                continue;
            }
            let former_tag = account_tag(name);
            let journal = dir.join(format!(".pop3-uidl-{former_tag}"));
            let lock = dir.join(format!(".pop3-uidl-{former_tag}.lock"));
            if fs::symlink_metadata(&journal).is_err() && fs::symlink_metadata(&lock).is_err() {
                // No fetch under that name ever opened its journal here
                // (one running has made its lock file first).
                continue;
            }
            let held = lock_account(dir, name).map_err(|e| former_held(e, account, name))?;
            former_locks.push((name.clone(), held));
            let text = match fs::read(&journal) {
                Ok(text) => text,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let (uids, _, times) = parse(&text[..complete_lines(&text)]);
            for uid in uids {
                if let Ok(u) = Uid::new(Bytes::copy_from_slice(&uid)) {
                    if saved.insert(uid.clone()) {
                        pending.push(u);
                        if let Some(t) = times.get(&uid) {
                            seen.insert(uid.clone(), *t);
                            pending_seen.push((uid, *t));
                        }
                    }
                }
            }
        }
        Ok(UidJournal {
            dir: dir.to_path_buf(),
            path,
            file,
            _lock: lock,
            _former_locks: former_locks,
            tag,
            saved,
            ambiguous,
            seen,
            pending,
            pending_seen,
        })
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the lock of the journal of `name`, a former name of the
    /// account, if this journal does not hold it yet, and holds it as long
    /// as this one is open: `WouldBlock` when a fetch under that name
    /// holds it.
    #[cfg(feature = "deliver")]
    pub(crate) fn lock_former(&mut self, name: &str) -> io::Result<()> {
        if !self._former_locks.iter().any(|(n, _)| n == name) {
            let lock = lock_account(&self.dir, name).map_err(|e| former_held(e, "it", name))?;
            self._former_locks.push((name.to_owned(), lock));
        }
        Ok(())
    }

    /// The account's tag (see [`account_tag`]).
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// Whether the UID is marked stored (written or not).
    pub fn contains(&self, uid: &Uid) -> bool {
        self.saved.contains(uid.as_bytes())
    }

    /// Marks `uid` stored (first seen now, if it was not known); written
    /// at the next [`flush`](Self::flush).
    pub fn mark(&mut self, uid: &Uid) {
        if self.saved.insert(uid.as_bytes().to_vec()) {
            self.pending.push(uid.clone());
            self.first_seen(uid);
        }
    }

    /// When the UID was first seen: the time journaled with it, or for a
    /// UID known without one, now (journaled at the next flush). `None`
    /// for a UID not marked stored.
    pub fn first_seen(&mut self, uid: &Uid) -> Option<SystemTime> {
        if !self.saved.contains(uid.as_bytes()) {
            return None;
        }
        let secs = *self.seen.entry(uid.as_bytes().to_vec()).or_insert_with(|| {
            let now = unix_now();
            self.pending_seen.push((uid.as_bytes().to_vec(), now));
            now
        });
        Some(UNIX_EPOCH + Duration::from_secs(secs))
    }

    /// How long ago the UID was first seen (see [`first_seen`](Self::first_seen)).
    pub fn age(&mut self, uid: &Uid) -> Option<Duration> {
        let at = self.first_seen(uid)?;
        Some(SystemTime::now().duration_since(at).unwrap_or_default())
    }

    /// Whether UIDs are marked and not written yet.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty() || !self.pending_seen.is_empty()
    }

    /// Appends the marked UIDs and fsyncs the journal.
    pub fn flush(&mut self) -> io::Result<()> {
        if !self.has_pending() {
            return Ok(());
        }
        let mut lines = Vec::new();
        for uid in &self.pending {
            lines.extend_from_slice(uid.as_bytes());
            lines.push(b'\n');
        }
        for (uid, secs) in &self.pending_seen {
            seen_line(&mut lines, uid, *secs);
        }
        self.file.write_all(&lines)?;
        self.file.sync_data()?;
        self.pending.clear();
        self.pending_seen.clear();
        Ok(())
    }

    /// Forgets the UIDs not in `listed` (gone from the server), rewriting
    /// the journal atomically when any is. Flush first: the rewrite writes
    /// every UID marked.
    pub fn retain(&mut self, listed: &HashSet<Uid>) -> io::Result<()> {
        let is_listed = |u: &&Vec<u8>| {
            Uid::new(Bytes::copy_from_slice(u)).is_ok_and(|uid| listed.contains(&uid))
        };
        let keep: Vec<Vec<u8>> = self.saved.iter().filter(is_listed).cloned().collect();
        let keep_ambiguous: HashSet<Vec<u8>> =
            self.ambiguous.iter().filter(is_listed).cloned().collect();
        if keep.len() == self.saved.len() && keep_ambiguous.len() == self.ambiguous.len() {
            return Ok(());
        }
        let tmp = self.path.with_extension("rewrite");
        {
            let mut f = private_file()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            let mut text = Vec::new();
            for u in &keep {
                text.extend_from_slice(u);
                text.push(b'\n');
                if let Some(secs) = self.seen.get(u) {
                    seen_line(&mut text, u, *secs);
                }
            }
            for u in &keep_ambiguous {
                text.extend_from_slice(AMBIGUOUS);
                text.extend_from_slice(u);
                text.push(b'\n');
            }
            f.write_all(&text)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &self.path)?;
        sync_dir(&self.dir)?;
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        self.saved = keep.into_iter().collect();
        self.seen.retain(|u, _| self.saved.contains(u));
        self.ambiguous = keep_ambiguous;
        self.pending.clear();
        self.pending_seen.clear();
        Ok(())
    }

    /// Remembers the UIDs of `now` as ambiguous, durably, and answers every
    /// UID remembered as ambiguous (see `MessageSink::ambiguous`).
    pub fn ambiguous(&mut self, now: &HashSet<Uid>) -> io::Result<HashSet<Uid>> {
        let mut lines = Vec::new();
        for uid in now {
            if self.ambiguous.insert(uid.as_bytes().to_vec()) {
                lines.extend_from_slice(AMBIGUOUS);
                lines.extend_from_slice(uid.as_bytes());
                lines.push(b'\n');
            }
        }
        if !lines.is_empty() {
            self.file.write_all(&lines)?;
            self.file.sync_data()?;
        }
        Ok(self
            .ambiguous
            .iter()
            .filter_map(|u| Uid::new(Bytes::copy_from_slice(u)).ok())
            .collect())
    }
}

/// The error of a former name's journal lock: `WouldBlock` says which
/// name a fetch is running under.
fn former_held(e: io::Error, account: &str, name: &str) -> io::Error {
    if e.kind() == io::ErrorKind::WouldBlock {
        io::Error::new(
            io::ErrorKind::WouldBlock,
            format!("another fetch of {account} is running, under its former name {name}"),
        )
    } else {
        e
    }
}

fn complete_lines(text: &[u8]) -> usize {
    text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)
}

fn seen_line(out: &mut Vec<u8>, uid: &[u8], secs: u64) {
    out.extend_from_slice(SEEN);
    out.extend_from_slice(secs.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(uid);
    out.push(b'\n');
}

/// The stored UIDs, the ambiguous ones and the first-seen times of a
/// journal's complete lines.
type Parsed = (HashSet<Vec<u8>>, HashSet<Vec<u8>>, HashMap<Vec<u8>, u64>);

fn parse(text: &[u8]) -> Parsed {
    let (mut saved, mut ambiguous, mut seen) = (HashSet::new(), HashSet::new(), HashMap::new());
    for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        if let Some(uid) = line.strip_prefix(AMBIGUOUS) {
            ambiguous.insert(uid.to_vec());
        } else if let Some(rest) = line.strip_prefix(SEEN) {
            let mut parts = rest.splitn(2, |&b| b == b' ');
            let secs = parts
                .next()
                .and_then(|s| std::str::from_utf8(s).ok())
                .and_then(|s| s.parse::<u64>().ok());
            if let (Some(secs), Some(uid)) = (secs, parts.next()) {
                // The first time journaled wins.
                seen.entry(uid.to_vec()).or_insert(secs);
            }
        } else {
            saved.insert(line.to_vec());
        }
    }
    (saved, ambiguous, seen)
}

/// Options for a file only its owner may read (0600 on Unix).
pub(crate) fn private_file() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

/// A recursive folder builder for folders only their owner may enter (0700 on Unix).
pub(crate) fn private_dir() -> fs::DirBuilder {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
}

#[cfg(test)]
mod tests {
    use super::UidJournal;
    use std::io;

    #[test]
    fn a_journal_held_by_another_open_is_refused_as_another_fetch() {
        let dir = tempfile::tempdir().unwrap();
        let _held = UidJournal::open(dir.path(), "alice@host", &[]).unwrap();
        let e = UidJournal::open(dir.path(), "alice@host", &[]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert!(e.to_string().contains("another fetch of alice@host"), "{e}");
    }

    fn uid(s: &str) -> pop3_proto::types::Uid {
        pop3_proto::types::Uid::new(bytes::Bytes::copy_from_slice(s.as_bytes())).unwrap()
    }

    #[test]
    fn a_former_names_journal_held_by_a_running_fetch_is_not_read_and_the_open_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut running = UidJournal::open(dir.path(), "alice@old", &[]).unwrap();
        running.mark(&uid("u1"));
        running.flush().unwrap();
        let former = ["alice@old".to_owned()];
        let e = UidJournal::open(dir.path(), "alice@new", &former).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert!(
            e.to_string()
                .contains("another fetch of alice@new is running, under its former name alice@old"),
            "{e}"
        );
        drop(running);
        let journal = UidJournal::open(dir.path(), "alice@new", &former).unwrap();
        assert!(journal.contains(&uid("u1")));
    }

    #[test]
    fn a_former_names_journal_stays_locked_while_the_journal_that_read_it_is_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut old = UidJournal::open(dir.path(), "alice@old", &[]).unwrap();
        old.mark(&uid("u1"));
        old.flush().unwrap();
        drop(old);
        let former = ["alice@old".to_owned()];
        let journal = UidJournal::open(dir.path(), "alice@new", &former).unwrap();
        let e = UidJournal::open(dir.path(), "alice@old", &[]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        drop(journal);
        assert!(UidJournal::open(dir.path(), "alice@old", &[]).is_ok());
    }

    #[test]
    fn a_former_name_that_never_had_a_journal_here_gets_no_lock_file() {
        let dir = tempfile::tempdir().unwrap();
        let former = ["alice@old".to_owned()];
        let _journal = UidJournal::open(dir.path(), "alice@new", &former).unwrap();
        let lock = dir.path().join(format!(
            ".pop3-uidl-{}.lock",
            super::account_tag("alice@old")
        ));
        assert!(!lock.exists());
    }

    #[test]
    fn a_journal_let_go_while_the_next_open_waits_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let held = UidJournal::open(dir.path(), "alice@host", &[]).unwrap();
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            wait.recv().unwrap();
            drop(held);
        });
        // The lock is let go of just after this open began: it waits for
        // it, as it does for a forked process's copy of the descriptor.
        go.send(()).unwrap();
        let opened = UidJournal::open(dir.path(), "alice@host", &[]);
        holder.join().unwrap();
        assert!(opened.is_ok(), "{:?}", opened.err());
    }
}
