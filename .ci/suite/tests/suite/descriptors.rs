//! What every adapter's descriptor test shares: a Maildir of many small
//! messages and a plain-TCP session that counts the descriptors this
//! process holds before and after a `RETR 1` (the server runs in the same
//! process). Each adapter's test is the only test of its binary, so no
//! other test opens or closes descriptors meanwhile.
#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};

use pop3_blocking::maildir::MaildirStore;
use pop3_blocking::passwd::PasswdFile;

/// How many small messages the Maildir holds: more than a read fetches
/// ahead.
pub const MESSAGES: usize = 200;

/// The descriptors this process has open now.
pub fn open_descriptors() -> usize {
    fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd (Linux) lists the open descriptors")
        .count()
}

/// `alice`'s Maildir of [`MESSAGES`] small messages, in a temporary root.
pub fn small_messages() -> (tempfile::TempDir, MaildirStore) {
    let root = tempfile::tempdir().unwrap();
    let cur = root.path().join("alice/cur");
    for sub in ["cur", "new", "tmp"] {
        fs::create_dir_all(root.path().join("alice").join(sub)).unwrap();
    }
    for i in 0..MESSAGES {
        let name = format!("{}.M{i}P1.test:2,", 1_700_000_000 + i);
        let body = format!("Subject: {i}\r\n\r\nsmall message {i}\r\n");
        fs::write(cur.join(name), body).unwrap();
    }
    let users = PasswdFile::parse("alice:{PLAIN}secret\n").unwrap();
    let store = MaildirStore::new(root.path(), users);
    (root, store)
}

/// One session at `addr`: log in, count the descriptors, `RETR 1` and a
/// `NOOP` (so the server is done with the RETR), count again, `QUIT`. The
/// two counts.
pub fn around_retr(addr: SocketAddr) -> (usize, usize) {
    let stream = TcpStream::connect(addr).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut line = String::new();
    let mut expect_ok = |reader: &mut BufReader<TcpStream>, what: &str| {
        line.clear();
        reader.read_line(&mut line).unwrap();
        assert!(line.starts_with("+OK"), "{what}: {line:?}");
    };
    expect_ok(&mut reader, "greeting");
    writer.write_all(b"USER alice\r\nPASS secret\r\n").unwrap();
    expect_ok(&mut reader, "USER");
    expect_ok(&mut reader, "PASS");
    let before = open_descriptors();
    writer.write_all(b"RETR 1\r\n").unwrap();
    expect_ok(&mut reader, "RETR");
    let mut body = String::new();
    loop {
        body.clear();
        reader.read_line(&mut body).unwrap();
        assert!(!body.is_empty(), "the body ended early");
        if body == ".\r\n" {
            break;
        }
    }
    writer.write_all(b"NOOP\r\n").unwrap();
    expect_ok(&mut reader, "NOOP");
    let after = open_descriptors();
    writer.write_all(b"QUIT\r\n").unwrap();
    expect_ok(&mut reader, "QUIT");
    (before, after)
}

/// What a session may hold beyond its socket and lock after a RETR: a
/// message read to its end holds nothing, and the read-ahead at most one
/// message read in part.
pub const MOST_HELD_AFTER_RETR: usize = 1;
