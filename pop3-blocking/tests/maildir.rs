//! The Maildir store.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use pop3_blocking::maildir::{CHUNK_SIZE, LOCK_FILE, MaildirStore, SIZE_CACHE_FILE};
use pop3_blocking::passwd::PasswdFile;
use pop3_proto::store::{BlockingMaildrop, BlockingMessageReader, BlockingStore, StoreError};
use pop3_proto::types::{Secret, Uid};
use tempfile::TempDir;

struct Fixture {
    root: TempDir,
    store: MaildirStore,
}

impl Fixture {
    fn new() -> Self {
        Self::with(|s| s)
    }

    fn with(configure: impl FnOnce(MaildirStore) -> MaildirStore) -> Self {
        let root = tempfile::tempdir().unwrap();
        let users = PasswdFile::parse("alice:{PLAIN}wonderland\nbob:{PLAIN}builder\n").unwrap();
        let store = configure(MaildirStore::new(root.path(), users));
        for user in ["alice", "bob"] {
            for sub in ["cur", "new", "tmp"] {
                fs::create_dir_all(root.path().join(user).join(sub)).unwrap();
            }
        }
        Fixture { root, store }
    }

    fn maildir(&self) -> PathBuf {
        self.root.path().join("alice")
    }

    /// Writes a message file at `sub/name` in alice's Maildir.
    fn deliver(&self, sub: &str, name: &str, content: &[u8]) -> PathBuf {
        let path = self.maildir().join(sub).join(name);
        fs::write(&path, content).unwrap();
        path
    }

    /// Opens alice's maildrop. A lock released a moment ago can linger while
    /// another test of this binary spawns a process (the child holds a copy
    /// of every descriptor until its exec closes them), so a brief `InUse`
    /// is waited out here; tests that expect `InUse` call the store directly.
    fn open(&self) -> pop3_blocking::maildir::MaildirMaildrop {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match self.store.open("alice") {
                Err(StoreError::InUse) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                other => return other.unwrap(),
            }
        }
    }

    fn uids(&self) -> Vec<String> {
        uids(&self.open())
    }

    fn sizes(&self) -> Vec<u64> {
        self.open().messages().iter().map(|m| m.size).collect()
    }

    /// The names of the files in `sub`.
    fn names(&self, sub: &str) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.maildir().join(sub))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }
}

fn uids(drop: &impl BlockingMaildrop) -> Vec<String> {
    drop.messages()
        .iter()
        .map(|m| m.uid.as_str().to_owned())
        .collect()
}

fn read_all(drop: &mut impl BlockingMaildrop, index: usize) -> Result<Vec<u8>, StoreError> {
    let mut reader = drop.read(index)?;
    let mut out = Vec::new();
    while let Some(chunk) = reader.next_chunk()? {
        assert!(!chunk.is_empty() && chunk.len() <= CHUNK_SIZE);
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// RFC 1939 §11 size of `content`, computed the slow obvious way.
fn rfc_size(content: &[u8]) -> u64 {
    let mut crlf = Vec::new();
    let mut prev = 0u8;
    for &b in content {
        if b == b'\n' && prev != b'\r' {
            crlf.push(b'\r');
        }
        crlf.push(b);
        prev = b;
    }
    if !crlf.is_empty() && !crlf.ends_with(b"\n") {
        crlf.extend_from_slice(b"\r\n");
    }
    crlf.len() as u64
}

fn is_valid_uid(uid: &str) -> bool {
    (1..=70).contains(&uid.len()) && uid.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

#[test]
fn lists_new_and_cur_in_delivery_order() {
    let f = Fixture::with(|s| s.move_new_to_cur(false));
    f.deliver("new", "1700000300.M3P1.host", b"three\n");
    f.deliver("cur", "1700000100.M1P1.host:2,S", b"one\n");
    f.deliver("new", "1700000200.M2P1.host", b"two\n");
    f.deliver("cur", "99.M0P1.host:2,", b"zero\n");
    f.deliver("cur", "no-time-b:2,", b"b\n");
    f.deliver("cur", "no-time-a", b"a\n");
    // Not messages: dot files, directories, tmp/, files beside cur/new.
    f.deliver("cur", ".hidden", b"x\n");
    f.deliver("tmp", "1700000400.M4P1.host", b"in delivery\n");
    fs::create_dir(f.maildir().join("cur/1700000500.dir")).unwrap();
    fs::write(f.maildir().join("1700000600.top"), b"x\n").unwrap();

    let mut drop = f.open();
    assert_eq!(
        uids(&drop),
        [
            "99.M0P1.host",
            "1700000100.M1P1.host",
            "1700000200.M2P1.host",
            "1700000300.M3P1.host",
            "no-time-a",
            "no-time-b",
        ]
    );
    assert_eq!(read_all(&mut drop, 1).unwrap(), b"one\n");
    assert_eq!(read_all(&mut drop, 3).unwrap(), b"three\n");
    assert_eq!(read_all(&mut drop, 5).unwrap(), b"b\n");
}

#[test]
fn empty_maildir_lists_nothing() {
    let f = Fixture::new();
    let drop = f.open();
    assert!(drop.messages().is_empty());
    assert_eq!(drop.dir(), f.maildir());
    drop.commit(vec![].into()).unwrap();
}

#[test]
fn sizes_count_line_ends_as_crlf() {
    let f = Fixture::new();
    let cases: [(&str, &[u8]); 7] = [
        ("1.crlf.h", b"Subject: a\r\n\r\nbody\r\n"),
        ("2.lf.h", b"Subject: a\n\nbody\n"),
        ("3.mixed.h", b"A: b\r\nC: d\n\nx\r\ny\n"),
        ("4.nofinal.h", b"Subject: a\n\nno final line end"),
        ("5.nofinalcrlf.h", b"Subject: a\r\n\r\nlast"),
        ("6.empty.h", b""),
        ("7.cr.h", b"a\n\nb\r"),
    ];
    for (name, content) in cases {
        f.deliver("new", name, content);
    }
    let drop = f.open();
    let sizes: Vec<u64> = drop.messages().iter().map(|m| m.size).collect();
    let expected: Vec<u64> = cases.iter().map(|(_, c)| rfc_size(c)).collect();
    assert_eq!(sizes, expected);
    assert_eq!(sizes, [20, 20, 20, 33, 20, 0, 9]);
}

#[test]
fn sizes_across_chunk_boundaries() {
    let f = Fixture::new();
    // A CR at the end of one 64 KiB read and its LF at the start of the next.
    let mut content = vec![b'x'; CHUNK_SIZE - 1];
    content.extend_from_slice(b"\r\n");
    content.extend(std::iter::repeat_n(b"line\n".as_slice(), 30_000).flatten());
    f.deliver("cur", "1.big.h:2,", &content);
    assert_eq!(f.sizes(), [rfc_size(&content)]);
    assert_eq!(rfc_size(&content), content.len() as u64 + 30_000);
}

#[test]
fn a_possible_w_is_trusted_and_s_alone_is_not() {
    let f = Fixture::new();
    // A W= within what the file's length allows is used without reading:
    // make it disagree with the content (but stay possible) to see that.
    f.deliver("cur", "1.a.h,S=3,W=5:2,S", b"ab\n");
    // S= is the raw size; the bare LF means the RFC 1939 size is larger.
    f.deliver("cur", "2.b.h,S=3:2,", b"ab\n");
    // W= before S=, and W= without S=.
    f.deliver("cur", "3.c.h,W=4,S=3:2,", b"ab\n");
    f.deliver("cur", "4.d.h,W=4", b"ab\n");
    // Not a W= field: it must follow a comma.
    f.deliver("cur", "5.eW=9", b"ab\n");
    assert_eq!(f.sizes(), [5, 4, 4, 4, 4]);
}

#[test]
fn a_w_size_that_cannot_be_right_is_counted_from_the_file() {
    let f = Fixture::new();
    // Too large for 3 octets, too small, and past u64 arithmetic.
    f.deliver("cur", "1.a.h,S=3,W=1234:2,S", b"ab\n");
    f.deliver("cur", "2.b.h,W=1:2,S", b"ab\n");
    f.deliver("cur", "3.c.h,W=18446744073709551615:2,S", b"ab\n");
    assert_eq!(f.sizes(), [4, 4, 4]);
}

#[test]
fn uids_stable_across_opens_moves_and_flag_changes() {
    let f = Fixture::new();
    f.deliver("new", "1700000001.M1P1.host", b"one\n");
    f.deliver("new", "1700000002.M2P1.host,S=4,W=5", b"two\n");
    f.deliver("cur", "1700000003.M3P1.host:2,S", b"three\n");
    let first = f.uids();
    assert_eq!(
        first,
        [
            "1700000001.M1P1.host",
            "1700000002.M2P1.host,S=4,W=5",
            "1700000003.M3P1.host"
        ]
    );
    // Opening moved new/ to cur/ with empty flags.
    assert!(f.names("new").is_empty());
    assert_eq!(
        f.names("cur"),
        [
            "1700000001.M1P1.host:2,",
            "1700000002.M2P1.host,S=4,W=5:2,",
            "1700000003.M3P1.host:2,S"
        ]
    );
    assert_eq!(f.uids(), first);
    // Another program sets flags.
    let cur = f.maildir().join("cur");
    fs::rename(
        cur.join("1700000001.M1P1.host:2,"),
        cur.join("1700000001.M1P1.host:2,RS"),
    )
    .unwrap();
    fs::rename(
        cur.join("1700000003.M3P1.host:2,S"),
        cur.join("1700000003.M3P1.host:2,"),
    )
    .unwrap();
    assert_eq!(f.uids(), first);
    // A new delivery gets a new uid; the old ones stay.
    f.deliver("new", "1700000004.M4P1.host", b"four\n");
    let mut expected = first.clone();
    expected.push("1700000004.M4P1.host".into());
    assert_eq!(f.uids(), expected);
}

#[test]
fn uid_unchanged_when_moved_by_hand() {
    let f = Fixture::with(|s| s.move_new_to_cur(false));
    f.deliver("new", "1700000001.M1P1.host", b"one\n");
    let before = f.uids();
    assert_eq!(f.names("new"), ["1700000001.M1P1.host"]);
    fs::rename(
        f.maildir().join("new/1700000001.M1P1.host"),
        f.maildir().join("cur/1700000001.M1P1.host:2,S"),
    )
    .unwrap();
    assert_eq!(f.uids(), before);
}

#[test]
fn same_base_in_new_and_cur_is_one_message() {
    let f = Fixture::with(|s| s.move_new_to_cur(false));
    f.deliver("new", "1.dup.h", b"new\n");
    f.deliver("cur", "1.dup.h:2,S", b"cur\n");
    let mut drop = f.open();
    assert_eq!(uids(&drop), ["1.dup.h"]);
    assert_eq!(read_all(&mut drop, 0).unwrap(), b"cur\n");
    // Deleting the message removes both copies.
    drop.commit(vec![0].into()).unwrap();
    assert!(f.names("new").is_empty() && f.names("cur").is_empty());
}

#[test]
fn move_never_replaces_a_file() {
    let f = Fixture::new();
    f.deliver("new", "1.same.h", b"in new\n");
    f.deliver("cur", "1.same.h:2,", b"in cur\n");
    let mut drop = f.open();
    assert_eq!(uids(&drop), ["1.same.h"]);
    assert_eq!(read_all(&mut drop, 0).unwrap(), b"in cur\n");
    drop_it(drop);
    // The file in new/ could not be moved and is still there.
    assert_eq!(
        fs::read(f.maildir().join("new/1.same.h")).unwrap(),
        b"in new\n"
    );
}

fn drop_it<T>(value: T) {
    drop(value);
}

#[test]
fn odd_names_get_digest_uids_within_the_rules() {
    let f = Fixture::new();
    let long = format!("1700000001.{}.host", "x".repeat(80));
    let exactly_70 = format!("1700000002.{}", "y".repeat(59));
    assert_eq!(exactly_70.len(), 70);
    let names = [
        long.as_str(),
        exactly_70.as_str(),
        "1700000003.with space.host",
        "1700000004.tab\there",
        "1700000005.caf\u{e9}.host",
        "~1700000006.tilde",
        "1700000007.M7P1.host",
    ];
    for name in names {
        f.deliver("new", name, b"x\n");
    }
    let got = f.uids();
    assert_eq!(got.len(), names.len());
    for uid in &got {
        assert!(is_valid_uid(uid), "{uid:?}");
        assert!(Uid::new(uid.clone()).is_ok());
    }
    use sha2::Digest;
    let digest = |base: &str| {
        let hex: String = sha2::Sha256::digest(base.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("~{hex}")
    };
    let expected = [
        digest(&long),
        exactly_70.clone(),
        digest("1700000003.with space.host"),
        digest("1700000004.tab\there"),
        digest("1700000005.caf\u{e9}.host"),
        "1700000007.M7P1.host".to_owned(),
        // No delivery time at the start: last.
        digest("~1700000006.tilde"),
    ];
    assert_eq!(got, expected);
    assert_eq!(got[0].len(), 65);
    let mut unique = got.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), got.len());
    // Stable across sessions and the move to cur/.
    assert_eq!(f.uids(), got);
}

#[test]
fn two_opens_conflict_in_one_process() {
    let f = Fixture::new();
    let first = f.open();
    assert_eq!(f.store.open("alice").unwrap_err(), StoreError::InUse);
    // Another user's maildrop is independent.
    let bob = f.store.open("bob").unwrap();
    drop(first);
    let again = f.open();
    assert_eq!(f.store.open("alice").unwrap_err(), StoreError::InUse);
    again.commit(vec![].into()).unwrap();
    f.open();
    drop(bob);
    assert!(f.maildir().join(LOCK_FILE).is_file());
}

#[test]
fn lock_conflicts_across_threads() {
    let f = Fixture::new();
    let held = f.open();
    std::thread::scope(|s| {
        s.spawn(|| assert_eq!(f.store.open("alice").unwrap_err(), StoreError::InUse));
    });
    drop(held);
    std::thread::scope(|s| {
        s.spawn(|| drop(f.open()));
    });
}

#[test]
fn lock_held_by_another_process_is_honoured() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let flock = Command::new("flock").arg("--version").output();
    assert!(
        flock.is_ok_and(|o| o.status.success()),
        "this test needs flock(1), from util-linux: apt-get install -y util-linux"
    );
    let f = Fixture::new();
    let lock = f.maildir().join(LOCK_FILE);
    // -o: the command does not inherit the lock, so it goes with flock itself.
    let mut child = Command::new("flock")
        .arg("-o")
        .arg("-n")
        .arg(&lock)
        .args(["-c", "echo locked; read line"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "locked\n");
    assert_eq!(f.store.open("alice").unwrap_err(), StoreError::InUse);
    // The process dies: the system releases its lock.
    child.kill().unwrap();
    child.wait().unwrap();
    drop(child.stdin.take());
    let drop = f.open();
    assert!(drop.messages().is_empty());
}

#[test]
fn commit_deletes_only_the_listed_messages() {
    let f = Fixture::new();
    for i in 1..=5 {
        f.deliver("new", &format!("170000000{i}.M{i}P1.host"), b"m\n");
    }
    let drop = f.open();
    // Duplicates and out-of-range indexes are ignored.
    drop.commit(vec![3, 1, 3, 99].into()).unwrap();
    assert_eq!(
        f.uids(),
        [
            "1700000001.M1P1.host",
            "1700000003.M3P1.host",
            "1700000005.M5P1.host"
        ]
    );
    f.open().commit(vec![0, 1, 2].into()).unwrap();
    assert!(f.uids().is_empty());
    assert!(f.names("cur").is_empty() && f.names("new").is_empty());
}

#[test]
fn drop_without_commit_deletes_nothing() {
    let f = Fixture::new();
    f.deliver("new", "1.a.h", b"a\n");
    f.deliver("cur", "2.b.h:2,S", b"b\n");
    let mut drop = f.open();
    read_all(&mut drop, 0).unwrap();
    drop_it(drop);
    assert_eq!(f.uids(), ["1.a.h", "2.b.h"]);
    assert_eq!(f.names("cur"), ["1.a.h:2,", "2.b.h:2,S"]);
}

#[test]
fn message_removed_behind_our_back() {
    let f = Fixture::new();
    f.deliver("new", "1.a.h", b"a\n");
    f.deliver("new", "2.b.h", b"b\n");
    let mut drop = f.open();
    fs::remove_file(f.maildir().join("cur/1.a.h:2,")).unwrap();
    assert_eq!(read_all(&mut drop, 0).unwrap_err(), StoreError::MessageGone);
    assert_eq!(read_all(&mut drop, 1).unwrap(), b"b\n");
    assert!(matches!(drop.read(2), Err(StoreError::Permanent(_))));
    // Deleting a message that is already gone is fine.
    drop.commit(vec![0].into()).unwrap();
    assert_eq!(f.uids(), ["2.b.h"]);
}

#[test]
fn message_removed_while_being_read_reads_to_the_end() {
    let f = Fixture::new();
    let content: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    f.deliver("cur", "1.a.h:2,", &content);
    let mut drop = f.open();
    let mut reader = drop.read(0).unwrap();
    let first = reader.next_chunk().unwrap().unwrap();
    fs::remove_file(f.maildir().join("cur/1.a.h:2,")).unwrap();
    let mut out = first.to_vec();
    while let Some(chunk) = reader.next_chunk().unwrap() {
        out.extend_from_slice(&chunk);
    }
    assert_eq!(out, content);
}

#[test]
fn message_moved_or_reflagged_behind_our_back() {
    let f = Fixture::with(|s| s.move_new_to_cur(false));
    f.deliver("new", "1.a.h", b"a\n");
    f.deliver("new", "2.b.h", b"b\n");
    f.deliver("cur", "3.c.h:2,", b"c\n");
    let mut drop = f.open();
    // Another program moves and flags them while we hold the lock.
    fs::rename(
        f.maildir().join("new/1.a.h"),
        f.maildir().join("cur/1.a.h:2,S"),
    )
    .unwrap();
    fs::rename(
        f.maildir().join("new/2.b.h"),
        f.maildir().join("cur/2.b.h:2,S"),
    )
    .unwrap();
    fs::rename(
        f.maildir().join("cur/3.c.h:2,"),
        f.maildir().join("cur/3.c.h:2,T"),
    )
    .unwrap();
    assert_eq!(read_all(&mut drop, 0).unwrap(), b"a\n");
    drop.commit(vec![0, 2].into()).unwrap();
    assert_eq!(f.names("cur"), ["2.b.h:2,S"]);
}

#[test]
fn reading_in_chunks_equals_the_file() {
    let f = Fixture::new();
    let mut content = Vec::new();
    let mut x = 12345u32;
    while content.len() < 3 * CHUNK_SIZE + 1000 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        content.push((x >> 16) as u8);
    }
    f.deliver("new", "1.big.h", &content);
    f.deliver("new", "2.small.h", b"small\r\n");
    let mut drop = f.open();
    let mut reader = drop.read(0).unwrap();
    let mut chunks = 0;
    let mut out = Vec::new();
    while let Some(chunk) = reader.next_chunk().unwrap() {
        assert!(chunk.len() <= CHUNK_SIZE);
        chunks += 1;
        out.extend_from_slice(&chunk);
    }
    assert_eq!(out, content);
    assert!(chunks >= 4, "{chunks} chunks");
    // The end is sticky.
    assert_eq!(reader.next_chunk().unwrap(), None);
    assert_eq!(read_all(&mut drop, 1).unwrap(), b"small\r\n");
    assert_eq!(drop.messages()[0].size, rfc_size(&content));
}

fn cache(f: &Fixture) -> String {
    fs::read_to_string(f.maildir().join(SIZE_CACHE_FILE)).unwrap()
}

fn set_mtime(path: &Path, secs: u64) {
    let file = fs::File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap();
}

#[test]
fn size_cache_is_used_and_invalidated() {
    let f = Fixture::with(|s| s.move_new_to_cur(false));
    let a = f.deliver("cur", "1.a.h:2,", b"a\nb\n");
    let b = f.deliver("cur", "2.b.h:2,S", b"ccc\n");
    f.deliver("cur", "3.w.h,W=4:2,", b"w\n");
    set_mtime(&a, 1_000_000);
    set_mtime(&b, 1_000_000);
    assert_eq!(f.sizes(), [6, 5, 4]);
    let text = cache(&f);
    assert!(text.starts_with("pop3-rs sizes 1\n"), "{text}");
    assert!(
        text.contains(" 1.a.h\n") && text.contains(" 2.b.h\n"),
        "{text}"
    );
    assert!(!text.contains("3.w.h"), "W= sizes need no cache: {text}");

    // The cache is believed while the file's length and mtime match: forge
    // an entry to see that the file is not read again.
    let forged = text.replace("6 4 1000000000000000 1.a.h", "66 4 1000000000000000 1.a.h");
    assert_ne!(forged, text, "{text}");
    fs::write(f.maildir().join(SIZE_CACHE_FILE), &forged).unwrap();
    assert_eq!(f.sizes(), [66, 5, 4]);

    // Same length, new content and mtime: counted again.
    fs::write(&a, b"ab\r\n").unwrap();
    set_mtime(&a, 1_000_001);
    assert_eq!(f.sizes(), [4, 5, 4]);
    // New length, same mtime: counted again.
    fs::write(&b, b"c\nc\nc\n").unwrap();
    set_mtime(&b, 1_000_000);
    assert_eq!(f.sizes(), [4, 9, 4]);
    assert!(cache(&f).contains("9 6 1000000000000000 2.b.h\n"));

    // Entries of deleted messages are dropped, and the cache survives moves.
    f.open().commit(vec![0].into()).unwrap();
    fs::rename(&b, f.maildir().join("cur/2.b.h:2,ST")).unwrap();
    assert_eq!(f.sizes(), [9, 4]);
    let text = cache(&f);
    assert!(!text.contains("1.a.h"), "{text}");
    assert!(text.contains("2.b.h"), "{text}");
}

#[test]
fn damaged_cache_is_ignored() {
    let f = Fixture::new();
    f.deliver("new", "1.a.h", b"a\nb\n");
    let cache_path = f.maildir().join(SIZE_CACHE_FILE);
    for junk in [
        &b"garbage"[..],
        b"pop3-rs sizes 1\nnot numbers here 1.a.h\n9",
        b"pop3-rs sizes 2\n99 4 0 1.a.h\n",
        b"\xff\xfe",
    ] {
        fs::write(&cache_path, junk).unwrap();
        assert_eq!(f.sizes(), [6]);
    }
    assert!(cache(&f).starts_with("pop3-rs sizes 1\n"));
}

#[test]
fn hostile_user_names_are_refused() {
    let f = Fixture::new();
    for user in [
        "",
        ".",
        "..",
        "../alice",
        "alice/../bob",
        "alice/",
        "/etc",
        ".alice",
        "a\0b",
        "a\\b",
        "alice\n",
        "carol",
    ] {
        match f.store.open(user) {
            Err(StoreError::Permanent(_)) => {}
            other => panic!("{user:?}: {other:?}"),
        }
        assert!(!f.store.verify_password(user, &Secret::new("x")).unwrap());
        assert!(f.store.shared_secret(user).unwrap().is_none());
    }
    // Nothing was created, inside the root or out of it.
    let mut entries: Vec<_> = fs::read_dir(f.root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    entries.sort();
    assert_eq!(entries, ["alice", "bob"]);
}

#[test]
fn credentials_come_from_the_passwd_file() {
    let f = Fixture::new();
    assert!(
        f.store
            .verify_password("alice", &Secret::new("wonderland"))
            .unwrap()
    );
    assert!(
        !f.store
            .verify_password("alice", &Secret::new("builder"))
            .unwrap()
    );
    assert_eq!(
        f.store.shared_secret("bob").unwrap().unwrap().expose(),
        b"builder"
    );
    let forms = f.store.credential_forms();
    assert!(forms.password && forms.shared_secret);
    assert_eq!(f.store.users().len(), 2);
    assert_eq!(f.store.root(), f.root.path());
}

#[test]
fn missing_maildir_is_created() {
    let root = tempfile::tempdir().unwrap();
    let store = MaildirStore::new(root.path(), PasswdFile::parse("carol:{PLAIN}c\n").unwrap());
    let drop = store.open("carol").unwrap();
    assert!(drop.messages().is_empty());
    for sub in ["cur", "new", "tmp"] {
        assert!(root.path().join("carol").join(sub).is_dir(), "{sub}");
    }
    drop.commit(vec![].into()).unwrap();

    // Missing subdirectories of an existing Maildir are created too.
    fs::remove_dir(root.path().join("carol/tmp")).unwrap();
    store.open("carol").unwrap();
    assert!(root.path().join("carol/tmp").is_dir());
}

#[test]
fn missing_maildir_without_create() {
    let root = tempfile::tempdir().unwrap();
    let users = PasswdFile::parse("carol:{PLAIN}c\n").unwrap();
    let store = MaildirStore::new(root.path(), users).create_missing(false);
    assert!(matches!(store.open("carol"), Err(StoreError::Permanent(_))));
    assert!(!root.path().join("carol").exists());
    // A Maildir with only cur/: new/ reads as empty.
    fs::create_dir_all(root.path().join("carol/cur")).unwrap();
    fs::write(root.path().join("carol/cur/1.a.h:2,"), b"a\n").unwrap();
    let drop = store.open("carol").unwrap();
    assert_eq!(uids(&drop), ["1.a.h"]);
    assert!(!root.path().join("carol/new").exists());
}

#[test]
fn missing_root_is_temporary() {
    let root = tempfile::tempdir().unwrap();
    let gone = root.path().join("not-mounted");
    let store = MaildirStore::new(&gone, PasswdFile::parse("carol:{PLAIN}c\n").unwrap());
    assert!(matches!(store.open("carol"), Err(StoreError::Temporary(_))));
    assert!(!gone.exists());
}

#[test]
fn lock_and_cache_files_are_not_messages() {
    let f = Fixture::new();
    f.deliver("new", "1.a.h", b"a\n");
    assert_eq!(f.uids(), ["1.a.h"]);
    assert_eq!(f.uids(), ["1.a.h"]);
    assert!(f.maildir().join(LOCK_FILE).is_file());
    assert!(f.maildir().join(SIZE_CACHE_FILE).is_file());
    // No temporary file is left behind.
    let mut top: Vec<_> = fs::read_dir(f.maildir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    top.sort();
    assert_eq!(top, ["cur", "new", LOCK_FILE, SIZE_CACHE_FILE, "tmp"]);
}

#[cfg(unix)]
#[test]
fn symbolic_links_are_not_followed() {
    use std::os::unix::fs::symlink;
    let f = Fixture::new();
    let outside = f.root.path().join("outside");
    fs::write(&outside, b"not yours\n").unwrap();
    symlink(&outside, f.maildir().join("cur/1.link.h:2,")).unwrap();
    symlink(&outside, f.maildir().join("new/2.link.h")).unwrap();
    f.deliver("new", "3.real.h", b"real\n");
    // A link planted where the cache is written is replaced, not written
    // through.
    symlink(&outside, f.maildir().join(format!("{SIZE_CACHE_FILE}.tmp"))).unwrap();
    let mut drop = f.open();
    assert_eq!(uids(&drop), ["3.real.h"]);
    assert_eq!(fs::read(&outside).unwrap(), b"not yours\n");
    assert!(cache(&f).contains("3.real.h"));

    // A message swapped for a link after the listing is not read through it.
    let real = f.maildir().join("cur/3.real.h:2,");
    fs::remove_file(&real).unwrap();
    symlink(&outside, &real).unwrap();
    assert!(matches!(drop.read(0), Err(StoreError::Temporary(_))));
    drop.commit(vec![0].into()).unwrap();
    assert_eq!(fs::read(&outside).unwrap(), b"not yours\n");
    assert!(!real.exists() && fs::symlink_metadata(&real).is_err());
}

#[test]
fn a_file_longer_than_at_open_is_read_to_its_end() {
    let f = Fixture::new();
    f.deliver("cur", "1.grow.h:2,S", b"first\n");
    let mut drop = f.open();
    let mut reader = drop.read(0).unwrap();
    // Appended after the reader sized itself from the file's length.
    let more = vec![b'y'; 3 * CHUNK_SIZE];
    let path = f.maildir().join("cur/1.grow.h:2,S");
    let mut file = fs::OpenOptions::new().append(true).open(&path).unwrap();
    std::io::Write::write_all(&mut file, &more).unwrap();
    let mut out = Vec::new();
    while let Some(chunk) = reader.next_chunk().unwrap() {
        assert!(!chunk.is_empty() && chunk.len() <= CHUNK_SIZE);
        out.extend_from_slice(&chunk);
    }
    let mut want = b"first\n".to_vec();
    want.extend_from_slice(&more);
    assert_eq!(out, want);
}

#[test]
fn bearer_token_owner_names_only_listed_users() {
    use pop3_proto::store::TokenValidator;
    let root = tempfile::tempdir().unwrap();
    let users = PasswdFile::parse("alice:{PLAIN}x\n").unwrap();
    let validator = TokenValidator::new(|_, _| true).with_owner(|token| match token.expose() {
        b"alice's" => Some("alice".to_owned()),
        b"ghost's" => Some("ghost".to_owned()),
        _ => None,
    });
    let store = MaildirStore::new(root.path(), users).with_token_validator(validator);
    let owner = |t: &str| {
        store
            .bearer_token_owner(&Secret::new(t.to_owned()))
            .unwrap()
    };
    assert_eq!(owner("alice's").as_deref(), Some("alice"));
    assert_eq!(owner("ghost's"), None);
    assert_eq!(owner("nobody's"), None);
    // Without a validator, no token names anyone.
    let plain = MaildirStore::new(root.path(), PasswdFile::parse("alice:{PLAIN}x\n").unwrap());
    assert_eq!(
        plain
            .bearer_token_owner(&Secret::new("alice's".to_owned()))
            .unwrap(),
        None
    );
}

#[test]
fn login_delay_refuses_a_login_too_soon_per_user_with_a_fake_clock() {
    use pop3_blocking::maildir::{Clock, LAST_LOGIN_FILE};
    use std::sync::{Arc, Mutex};
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let now = Arc::new(Mutex::new(start));
    let clock = {
        let now = now.clone();
        Clock::new(move || *now.lock().unwrap())
    };
    let f = Fixture::with(|s| {
        s.login_delay(Some(Duration::from_secs(600)))
            .with_clock(clock)
    });
    let set = |secs: u64| *now.lock().unwrap() = start + Duration::from_secs(secs);
    drop(f.open());
    assert_eq!(
        fs::read_to_string(f.maildir().join(LAST_LOGIN_FILE)).unwrap(),
        "1700000000\n"
    );
    // Another user is not held back by alice's login.
    drop(f.store.open("bob").unwrap());
    set(599);
    assert_eq!(f.store.open("alice").unwrap_err(), StoreError::LoginDelay);
    // A refused login does not restart the delay.
    set(600);
    drop(f.open());
    set(1199);
    assert_eq!(f.store.open("alice").unwrap_err(), StoreError::LoginDelay);
    // The clock set back: a last login in the future counts as now.
    set(100);
    assert_eq!(f.store.open("alice").unwrap_err(), StoreError::LoginDelay);
    set(1200);
    drop(f.open());
    // Without a delay nothing is kept or checked.
    let g = Fixture::new();
    drop(g.open());
    drop(g.open());
    assert!(!g.maildir().join(LAST_LOGIN_FILE).exists());
}
