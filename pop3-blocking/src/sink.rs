//! A [`MessageSink`] delivering fetched mail into a Maildir, with a durable
//! UID journal.
//!
//! # Layout
//!
//! - Each message is stored as `new/<name>`, where `<name>` is derived from
//!   the account and the message's UID: `<first 32 hex digits of
//!   SHA-256(account NUL uid)>.pop3`. Any mail reader may later move it to
//!   `cur/<name>:2,<flags>`.
//! - The journal, `.pop3-uidl-<16 hex digits of SHA-256(account)>` at the
//!   Maildir's top, lists (one per line) the UIDs of every message durably
//!   stored and not yet seen gone from the server, and as `ambiguous <uid>`
//!   every UID the server listed for two messages (no deletion is ever
//!   based on it) while the server still lists it.
//! - The account is any string naming the maildrop; the fetch examples use
//!   `PopUrl::account_id` (`user@host`, see there for why neither scheme
//!   nor port is part of it). [`MaildirSink::open_with_former`] also reads
//!   the journals and files of names the account had before (an earlier
//!   version's `user@host:port`, a server that moved), and copies their
//!   UIDs into this account's journal at the next sync.
//!
//! # Commit order
//!
//! For each message, in [`MessageSink::commit`]:
//!
//! 1. the message is written to `tmp/<name>.<account>.<pid>.<n>.part` and
//!    fsynced;
//! 2. it is renamed to `new/<name>`.
//!
//! Then once per run, in [`MessageSink::sync`] (which the fetch driver
//! calls before its first DELE):
//!
//! 3. the `new/` directory is fsynced, making every rename durable;
//! 4. the UIDs of the messages stored since are appended to the journal,
//!    which is fsynced.
//!
//! A message counts as stored from step 2 on: [`MessageSink::contains`]
//! answers `true` for it because its file is in `new/` (or, moved by a
//! reader, in `cur/`), or its UID is in the journal (which also covers a
//! message the user has since deleted or moved away locally while it stays
//! on the server). A journal entry is written only after the directory
//! holding the file was synced, so the journal never names a message whose
//! file could still vanish in a crash. A crash before step 3 may lose
//! renames, but no DELE was sent yet: those messages are still on the
//! server and are fetched again. The fetch driver syncs on its failure
//! path too, so a run that breaks off after storing messages journals them
//! like a successful one. An interruption before step 2 leaves at
//! most a stale file in `tmp/`, removed when the Maildir is next opened for
//! the same account.
//!
//! # One fetch per account at a time
//!
//! A sink holds an exclusive lock (`.pop3-uidl-<account>.lock`, released by
//! the OS if the process dies) for as long as it is open: a second fetch of
//! the same account into the same Maildir fails at once instead of racing
//! the first one's journal and temporary files. Fetches of different
//! accounts into one Maildir do not touch each other's files.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use pop3_proto::fetch::MessageSink;
use pop3_proto::types::Uid;
use sha2::{Digest, Sha256};

use crate::hex::push_hex;
use crate::journal::{UidJournal, private_dir, private_file, sync_dir};

const PART: &str = ".part";

/// How line ends are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LineEnds {
    /// CRLF becomes LF, the Unix mail convention (a lone CR is kept).
    #[default]
    Lf,
    /// Stored as the server sent them (CRLF).
    AsSent,
}

/// A Maildir, with a journal for one POP3 account.
///
/// ```
/// use pop3_blocking::sink::MaildirSink;
/// # let dir = tempfile::tempdir()?;
/// # let inbox = dir.path().join("inbox");
/// let sink = MaildirSink::open(&inbox, "alice@pop.example.com:995")?; // "Mail/inbox"
/// # assert!(inbox.join("new").is_dir());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct MaildirSink {
    root: PathBuf,
    /// `root`'s `new/` and `tmp/`, joined once.
    new_dir: PathBuf,
    tmp_dir: PathBuf,
    account: String,
    /// The account's journal (and lock), at the Maildir's top.
    journal: UidJournal,
    /// Names the account had before (see [`MaildirSink::open_with_former`]):
    /// their files count as stored.
    former: Vec<String>,
    /// The directories whose entries the next sync makes durable.
    sync_new: bool,
    sync_cur: bool,
    /// Names found in `cur/` (without their `:2,` info), read once.
    cur: Option<HashSet<String>>,
    line_ends: LineEnds,
    /// The message being written.
    current: Option<Current>,
    /// What was written of it and not yet handed to its file: one buffer
    /// for every message (a fetch stores thousands of a few kB each).
    buf: Vec<u8>,
    /// This process's id, for the names of files in `tmp/`.
    pid: u32,
}

/// The most octets a [`MaildirSink`] holds before writing them to the file.
const WRITE_BUFFER: usize = 256 * 1024;

static SEQ: AtomicU64 = AtomicU64::new(0);

impl MaildirSink {
    /// Opens (creating if needed) the Maildir at `root` for `account` (any
    /// string naming the POP3 maildrop, e.g. `PopUrl::account_id`'s
    /// `user@host`: UIDs are unique only within one maildrop). Reads the journal, drops a partly
    /// written last entry, removes files this sink left in `tmp/`, and
    /// reads the names in `cur/`: a fetch's lookups then touch no
    /// directory listing, as they may run on an async runtime's thread.
    pub fn open(root: impl AsRef<Path>, account: &str) -> io::Result<MaildirSink> {
        MaildirSink::open_with_former(root, account, &[])
    }

    /// [`MaildirSink::open`], also reading what was stored under names the
    /// account had before (e.g. [`PopUrl::former_account_ids`]): their
    /// journals' UIDs and their files count as stored, and go into this
    /// account's journal at the next sync.
    ///
    /// [`PopUrl::former_account_ids`]: pop3_proto::url::PopUrl::former_account_ids
    pub fn open_with_former(
        root: impl AsRef<Path>,
        account: &str,
        former: &[String],
    ) -> io::Result<MaildirSink> {
        let root = root.as_ref().to_path_buf();
        // Mail is private: new folders are 0700 and files 0600, as Maildir
        // deliverers make them (existing folders keep their modes).
        for sub in ["tmp", "new", "cur"] {
            private_dir().create(root.join(sub))?;
        }
        let journal = UidJournal::open(&root, account, former).map_err(|e| {
            if e.kind() == io::ErrorKind::WouldBlock {
                io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!("another fetch of {account} into this Maildir is running"),
                )
            } else {
                e
            }
        })?;
        let former: Vec<String> = former.iter().filter(|f| *f != account).cloned().collect();
        let mut sink = MaildirSink {
            new_dir: root.join("new"),
            tmp_dir: root.join("tmp"),
            root,
            account: account.to_owned(),
            journal,
            former,
            sync_new: false,
            sync_cur: false,
            cur: None,
            line_ends: LineEnds::default(),
            current: None,
            buf: Vec::new(),
            pid: std::process::id(),
        };
        sink.clean_tmp()?;
        // Read now, not at the first unknown UID: during a fetch the sink's
        // lookups may run on an async runtime's own thread.
        sink.load_cur()?;
        Ok(sink)
    }

    /// Chooses how line ends are stored (default [`LineEnds::Lf`]).
    #[must_use]
    pub fn with_line_ends(mut self, line_ends: LineEnds) -> Self {
        self.line_ends = line_ends;
        self
    }

    /// The Maildir's top directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The journal file.
    pub fn journal_path(&self) -> &Path {
        self.journal.path()
    }

    /// The file name a message with `uid` gets in `new/`.
    pub fn file_name(&self, uid: &Uid) -> String {
        file_name(&self.account, uid)
    }

    fn clean_tmp(&self) -> io::Result<()> {
        for entry in fs::read_dir(&self.tmp_dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            // Only this account's leftovers: another account's fetch may be
            // writing into tmp/ right now.
            if name.ends_with(PART) && name.contains(&format!(".pop3.{}.", self.journal.tag())) {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    /// Reads the names in `cur/` (without their info), once.
    fn load_cur(&mut self) -> io::Result<()> {
        if self.cur.is_none() {
            let mut set = HashSet::new();
            for entry in fs::read_dir(self.root.join("cur"))? {
                let entry = entry?;
                let n = entry.file_name().to_string_lossy().into_owned();
                let base = n.split([':', '!']).next().unwrap_or("").to_owned();
                set.insert(base);
            }
            self.cur = Some(set);
        }
        Ok(())
    }

    fn in_cur(&mut self, name: &str) -> io::Result<bool> {
        self.load_cur()?;
        Ok(self.cur.as_ref().is_some_and(|s| s.contains(name)))
    }

    /// Counts `uid` as stored now; it goes into the journal at the next
    /// sync.
    fn stored(&mut self, uid: &Uid) {
        self.journal.mark(uid);
    }

    /// The names in `new/` this sink could have written (`*.pop3`), read
    /// in one listing.
    fn list_new(&self) -> io::Result<HashSet<String>> {
        let mut set = HashSet::new();
        for entry in fs::read_dir(&self.new_dir)? {
            let name = entry?.file_name();
            if let Some(name) = name.to_str().filter(|n| n.ends_with(".pop3")) {
                set.insert(name.to_owned());
            }
        }
        Ok(set)
    }

    /// [`MessageSink::contains`], with `new/`'s names from one listing when
    /// given (else one lookup of the file).
    fn contains_in(&mut self, uid: &Uid, new: Option<&HashSet<String>>) -> io::Result<bool> {
        if self.journal.contains(uid) {
            return Ok(true);
        }
        let mut found = false;
        // The account's own name first, then the former ones.
        for i in 0..=self.former.len() {
            let account = if i == 0 {
                &self.account
            } else {
                &self.former[i - 1]
            };
            let name = file_name(account, uid);
            let listed = match new {
                Some(names) => names.contains(&name),
                None => self.new_dir.join(&name).exists(),
            };
            if listed {
                // Stored by a run that stopped before its journal entry,
                // maybe before its data or its rename reached the disk: the
                // data now, the directory at the sync, before any DELE.
                File::open(self.new_dir.join(&name))?.sync_all()?;
                self.sync_new = true;
                found = true;
                break;
            } else if self.in_cur(&name)? {
                self.sync_cur = true;
                found = true;
                break;
            }
        }
        if found {
            self.stored(uid);
        }
        Ok(found)
    }
}

impl MessageSink for MaildirSink {
    fn contains(&mut self, uid: &Uid) -> io::Result<bool> {
        self.contains_in(uid, None)
    }

    fn contains_many(&mut self, uids: &[Uid]) -> io::Result<Vec<bool>> {
        // A listing costs about as much as a few lookups: worth it from a
        // few UIDs on (one lookup each is a path walk and a system call).
        let new = if uids.len() > 8 {
            Some(self.list_new()?)
        } else {
            None
        };
        uids.iter()
            .map(|uid| self.contains_in(uid, new.as_ref()))
            .collect()
    }

    fn begin(&mut self, uid: &Uid) -> io::Result<()> {
        self.abort();
        let name = self.file_name(uid);
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let tmp = self.tmp_dir.join(format!(
            "{name}.{}.{}.{seq}{PART}",
            self.journal.tag(),
            self.pid
        ));
        let file = private_file().write(true).create_new(true).open(&tmp)?;
        self.buf.clear();
        // Its whole size at once: it never holds more.
        self.buf.reserve_exact(WRITE_BUFFER);
        self.current = Some(Current {
            uid: uid.clone(),
            name,
            tmp,
            file,
            pending_cr: false,
        });
        Ok(())
    }

    fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        let line_ends = self.line_ends;
        let current = self.current.as_mut().ok_or_else(not_begun)?;
        current.put(line_ends, chunk, &mut self.buf)
    }

    fn commit(&mut self) -> io::Result<()> {
        let mut current = self.current.take().ok_or_else(not_begun)?;
        let written = current.finish(&mut self.buf);
        if let Err(e) = written {
            let _ = fs::remove_file(&current.tmp);
            return Err(e);
        }
        drop(current.file);
        fs::rename(&current.tmp, self.new_dir.join(&current.name))?;
        self.sync_new = true;
        self.stored(&current.uid);
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        // The directories first: a journal entry must never name a file
        // whose rename could still be lost.
        if self.sync_new {
            sync_dir(&self.new_dir)?;
            self.sync_new = false;
        }
        if self.sync_cur {
            sync_dir(&self.root.join("cur"))?;
            self.sync_cur = false;
        }
        self.journal.flush()
    }

    fn abort(&mut self) {
        self.buf.clear();
        if let Some(current) = self.current.take() {
            drop(current.file);
            let _ = fs::remove_file(&current.tmp);
        }
    }

    fn retain(&mut self, listed: &HashSet<Uid>) -> io::Result<()> {
        // The rewrite writes every UID counted as stored: the ones not
        // synced yet must be durable first.
        if self.journal.has_pending() || self.sync_new || self.sync_cur {
            self.sync()?;
        }
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

fn file_name(account: &str, uid: &Uid) -> String {
    let mut h = Sha256::new();
    h.update(account.as_bytes());
    h.update([0]);
    h.update(uid.as_bytes());
    // 32 hex digits (the first 16 octets of the digest), then ".pop3".
    let mut name = String::with_capacity(37);
    push_hex(&mut name, &h.finalize()[..16]);
    name.push_str(".pop3");
    name
}

impl Drop for MaildirSink {
    fn drop(&mut self) {
        self.abort();
    }
}

fn not_begun() -> io::Error {
    io::Error::other("no message begun")
}

/// The message being written into a [`MaildirSink`].
#[derive(Debug)]
struct Current {
    uid: Uid,
    name: String,
    tmp: PathBuf,
    file: File,
    /// A CR ended the last chunk: whether it is dropped depends on the next.
    pending_cr: bool,
}

/// The file of the message being written, behind the sink's buffer.
struct Out<'a> {
    file: &'a mut File,
    buf: &'a mut Vec<u8>,
}

impl Out<'_> {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.buf.len() + bytes.len() > WRITE_BUFFER {
            self.flush()?;
            if bytes.len() >= WRITE_BUFFER {
                return self.file.write_all(bytes);
            }
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        let written = self.file.write_all(self.buf);
        self.buf.clear();
        written
    }
}

impl Current {
    /// Writes what is buffered (and a CR held back at the end) and syncs
    /// the file.
    fn finish(&mut self, buf: &mut Vec<u8>) -> io::Result<()> {
        let mut out = Out {
            file: &mut self.file,
            buf,
        };
        if self.pending_cr {
            out.write_all(b"\r")?;
        }
        out.flush()?;
        self.file.sync_all()
    }

    fn put(&mut self, line_ends: LineEnds, chunk: &[u8], buf: &mut Vec<u8>) -> io::Result<()> {
        let out = &mut Out {
            file: &mut self.file,
            buf,
        };
        if line_ends == LineEnds::AsSent {
            return out.write_all(chunk);
        }
        let mut rest = chunk;
        if self.pending_cr {
            self.pending_cr = false;
            if rest.first() != Some(&b'\n') {
                out.write_all(b"\r")?;
            }
        }
        while let Some(i) = memchr::memchr(b'\r', rest) {
            out.write_all(&rest[..i])?;
            match rest.get(i + 1) {
                Some(b'\n') => {}
                Some(_) => out.write_all(b"\r")?,
                None => {
                    self.pending_cr = true;
                    return Ok(());
                }
            }
            rest = &rest[i + 1..];
        }
        out.write_all(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::hex;
    use bytes::Bytes;
    use std::fs::OpenOptions;

    /// The journal's UID lines (without its first-seen times).
    fn uid_lines(journal: &Path) -> String {
        fs::read_to_string(journal)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with("seen "))
            .map(|l| format!("{l}\n"))
            .collect()
    }

    fn uid(s: &str) -> Uid {
        Uid::new(Bytes::copy_from_slice(s.as_bytes())).unwrap()
    }

    fn store(sink: &mut MaildirSink, id: &str, chunks: &[&[u8]]) {
        sink.begin(&uid(id)).unwrap();
        for c in chunks {
            sink.write(c).unwrap();
        }
        sink.commit().unwrap();
    }

    #[test]
    fn file_names_and_journal_tag_stay_those_earlier_versions_wrote() {
        // A rerun finds the files of an earlier run by these names: they
        // must never change (SHA-256 of account NUL UID, first 16 octets
        // in lower-case hex; the tag: SHA-256 of the account, 8 octets).
        let dir = tempfile::tempdir().unwrap();
        let sink = MaildirSink::open(dir.path(), "alice@pop.example.com").unwrap();
        assert_eq!(
            sink.file_name(&uid("UID-0001")),
            "8bde2f16a5880c9faa63aa30934668c3.pop3"
        );
        assert_eq!(sink.journal.tag(), "2b79d7ee5a1fb9fd");
    }

    #[test]
    fn crlf_becomes_lf_across_chunk_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = MaildirSink::open(dir.path(), "a@h").unwrap();
        let text: &[u8] = b"a\r\nb\rc\r\r\nd\r\n\r\n.\r";
        let want: &[u8] = b"a\nb\rc\r\nd\n\n.\r";
        // Every split into two chunks gives the same file.
        for cut in 0..=text.len() {
            let id = format!("u{cut}");
            store(&mut sink, &id, &[&text[..cut], &text[cut..]]);
            let name = sink.file_name(&uid(&id));
            let got = fs::read(dir.path().join("new").join(name)).unwrap();
            assert_eq!(got, want, "cut at {cut}");
        }
    }

    #[test]
    fn journal_survives_reopen_a_torn_tail_and_local_moves() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = MaildirSink::open(dir.path(), "a@h").unwrap();
        store(&mut sink, "one", &[b"1\r\n"]);
        store(&mut sink, "two", &[b"2\r\n"]);
        sink.sync().unwrap();
        let journal = sink.journal_path().to_path_buf();
        drop(sink);
        // A kill in the middle of an append leaves a partial line.
        let mut f = OpenOptions::new().append(true).open(&journal).unwrap();
        f.write_all(b"thr").unwrap();
        drop(f);
        // A stale temporary file from a killed run.
        let tag = &hex(&Sha256::digest(b"a@h"))[..16];
        fs::write(
            dir.path()
                .join("tmp")
                .join(format!("x.pop3.{tag}.1.2.part")),
            b"junk",
        )
        .unwrap();
        // Another account's file in flight is left alone.
        let other = dir
            .path()
            .join("tmp")
            .join("y.pop3.0123456789abcdef.1.2.part");
        fs::write(&other, b"theirs").unwrap();

        let mut sink = MaildirSink::open(dir.path(), "a@h").unwrap();
        assert!(other.exists());
        fs::remove_file(&other).unwrap();
        // A second sink for the same account is refused while this one is open.
        assert_eq!(
            MaildirSink::open(dir.path(), "a@h").unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        assert!(sink.contains(&uid("one")).unwrap());
        assert!(sink.contains(&uid("two")).unwrap());
        assert!(!sink.contains(&uid("thr")).unwrap());
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        store(&mut sink, "three", &[b"3\r\n"]);
        // Stored from the commit on; journaled at the sync, once its
        // directory entry is durable.
        assert!(sink.contains(&uid("three")).unwrap());
        assert_eq!(uid_lines(&journal), "one\ntwo\n");
        sink.sync().unwrap();
        assert_eq!(uid_lines(&journal), "one\ntwo\nthree\n");
        // Each UID stored has its first-seen time.
        let text = fs::read_to_string(&journal).unwrap();
        assert!(
            text.lines()
                .any(|l| l.starts_with("seen ") && l.ends_with(" three"))
        );

        // A reader moved "one" to cur/ and deleted "two": both stay known.
        let one = sink.file_name(&uid("one"));
        fs::rename(
            dir.path().join("new").join(&one),
            dir.path().join("cur").join(format!("{one}:2,S")),
        )
        .unwrap();
        fs::remove_file(dir.path().join("new").join(sink.file_name(&uid("two")))).unwrap();
        drop(sink);
        let mut sink = MaildirSink::open(dir.path(), "a@h").unwrap();
        assert!(sink.contains(&uid("one")).unwrap());
        assert!(sink.contains(&uid("two")).unwrap());

        // Stored but not journaled (killed between the rename and the
        // sync): found in cur/ and journaled at the next sync.
        drop(sink);
        fs::write(&journal, b"").unwrap();
        let mut sink = MaildirSink::open(dir.path(), "a@h").unwrap();
        assert!(sink.contains(&uid("one")).unwrap());
        assert!(!sink.contains(&uid("two")).unwrap());
        sink.sync().unwrap();
        assert_eq!(uid_lines(&journal), "one\n");

        // Another account's UIDs are other messages.
        let mut other = MaildirSink::open(dir.path(), "b@h").unwrap();
        assert!(!other.contains(&uid("one")).unwrap());

        // UIDs the server no longer lists are forgotten.
        store(&mut sink, "four", &[b"4\r\n"]);
        let listed: HashSet<Uid> = [uid("four")].into_iter().collect();
        sink.retain(&listed).unwrap();
        assert_eq!(uid_lines(&journal), "four\n");
        store(&mut sink, "five", &[b"5\r\n"]);
        sink.sync().unwrap();
        assert_eq!(uid_lines(&journal), "four\nfive\n");
    }

    #[test]
    fn ambiguous_uids_are_remembered_until_the_server_lists_them_no_more() {
        let dir = tempfile::tempdir().unwrap();
        let set = |ids: &[&str]| ids.iter().map(|i| uid(i)).collect::<HashSet<Uid>>();
        let mut sink = MaildirSink::open(dir.path(), "a@h").unwrap();
        store(&mut sink, "twin", &[b"1\r\n"]);
        sink.sync().unwrap();
        assert_eq!(sink.ambiguous(&set(&["twin"])).unwrap(), set(&["twin"]));
        drop(sink);
        // A later run, the twin gone: the UID is still ambiguous, and the
        // message still stored.
        let mut sink = MaildirSink::open(dir.path(), "a@h").unwrap();
        assert_eq!(sink.ambiguous(&set(&[])).unwrap(), set(&["twin"]));
        assert!(sink.contains(&uid("twin")).unwrap());
        sink.retain(&set(&["twin", "other"])).unwrap();
        assert_eq!(sink.ambiguous(&set(&[])).unwrap(), set(&["twin"]));
        // Gone from the server: forgotten, in the journal too.
        sink.retain(&set(&["other"])).unwrap();
        drop(sink);
        let mut sink = MaildirSink::open(dir.path(), "a@h").unwrap();
        assert_eq!(sink.ambiguous(&set(&[])).unwrap(), set(&[]));
    }

    #[test]
    fn what_was_stored_under_a_former_account_name_counts_as_stored() {
        let dir = tempfile::tempdir().unwrap();
        let former = ["a@h:8110".to_owned()];
        let mut sink = MaildirSink::open(dir.path(), &former[0]).unwrap();
        store(&mut sink, "journaled", &[b"1\r\n"]);
        sink.sync().unwrap();
        // Killed after the rename, before the sync: only the file tells.
        store(&mut sink, "renamed", &[b"2\r\n"]);
        drop(sink);
        let mut sink = MaildirSink::open_with_former(dir.path(), "a@h", &former).unwrap();
        assert!(sink.contains(&uid("journaled")).unwrap());
        assert!(sink.contains(&uid("renamed")).unwrap());
        assert!(!sink.contains(&uid("new")).unwrap());
        sink.sync().unwrap();
        drop(sink);
        // Journaled under the new name: known without the former one.
        let mut sink = MaildirSink::open(dir.path(), "a@h").unwrap();
        assert!(sink.contains(&uid("journaled")).unwrap());
        assert!(sink.contains(&uid("renamed")).unwrap());
    }

    #[test]
    fn contains_many_from_one_listing_answers_as_contains_does_one_by_one() {
        let dir = tempfile::tempdir().unwrap();
        let former = ["a@h:8110".to_owned()];
        let mut sink = MaildirSink::open(dir.path(), &former[0]).unwrap();
        store(&mut sink, "journaled", &[b"1\r\n"]);
        sink.sync().unwrap();
        // Killed after the renames, before the sync: only the files tell.
        store(&mut sink, "in-new", &[b"2\r\n"]);
        store(&mut sink, "read", &[b"3\r\n"]);
        drop(sink);
        // A reader moved one into cur/ with its info.
        let name = file_name(&former[0], &uid("read"));
        fs::rename(
            dir.path().join("new").join(&name),
            dir.path().join("cur").join(format!("{name}:2,S")),
        )
        .unwrap();
        fs::write(dir.path().join("new").join("1.other.host"), b"x").unwrap();
        // More than a few UIDs: answered from one listing of new/.
        let mut uids: Vec<Uid> = (0..20).map(|i| uid(&format!("absent-{i}"))).collect();
        uids.insert(3, uid("journaled"));
        uids.insert(7, uid("in-new"));
        uids.insert(11, uid("read"));
        let open = || MaildirSink::open_with_former(dir.path(), "a@h", &former).unwrap();
        let one_by_one: Vec<bool> = {
            let mut sink = open();
            uids.iter().map(|u| sink.contains(u).unwrap()).collect()
        };
        let mut sink = open();
        let many = sink.contains_many(&uids).unwrap();
        assert_eq!(many, one_by_one);
        let found: Vec<usize> = (0..uids.len()).filter(|&i| many[i]).collect();
        assert_eq!(found, [3, 7, 11]);
        // What was found is journaled at the sync, as with `contains`.
        sink.sync().unwrap();
        drop(sink);
        fs::remove_file(
            dir.path()
                .join("new")
                .join(file_name(&former[0], &uid("in-new"))),
        )
        .unwrap();
        let mut sink = MaildirSink::open(dir.path(), "a@h").unwrap();
        assert!(sink.contains(&uid("in-new")).unwrap());
    }
}
