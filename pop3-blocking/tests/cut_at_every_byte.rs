//! Nothing is lost whatever octet the connection dies at: a scripted
//! session (login, DELE, RETR, QUIT) against a Maildir, through the core's
//! connection layer, cut after every octet of the client's stream (as a
//! half-close and as a reset) and after every octet of the server's. After
//! each cut the Maildir holds every message, unless the server had taken
//! the complete QUIT in TRANSACTION: then exactly the undeleted ones.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use pop3_blocking::maildir::MaildirStore;
use pop3_blocking::passwd::PasswdFile;
use pop3_proto::server::{
    CloseReason, Connection, ConnectionContext, Server, ServerConfig, ServerOptions, StoreDriver,
    Want,
};
use pop3_proto::store::{Inline, OffloadStore};
use pop3_proto::time::Instant;

const SCRIPT: &[u8] = b"USER alice\r\nPASS wonderland\r\nDELE 1\r\nRETR 2\r\nDELE 3\r\nQUIT\r\n";
/// Where the script's QUIT line ends: the server has it whole from here on.
const QUIT_COMPLETE: usize = SCRIPT.len();
const MESSAGES: [&[u8]; 3] = [
    b"Subject: one\n\nfirst\n",
    b"Subject: two\n\n.dot line\nsecond\n",
    b"Subject: three\n\nthird\n",
];

/// How the connection ends.
#[derive(Debug, Clone, Copy)]
enum Cut {
    /// The client's stream ends after this many octets (a half-close: the
    /// client still reads).
    ClientHalfClose(usize),
    /// The client's stream breaks after this many octets (a reset).
    ClientReset(usize),
    /// The server's writes fail after this many octets.
    ServerWrites(usize),
}

fn ready<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => unreachable!("an inline store never waits"),
    }
}

fn maildir(root: &Path) -> MaildirStore {
    for sub in ["cur", "new", "tmp"] {
        fs::create_dir_all(root.join("alice").join(sub)).unwrap();
    }
    for (i, m) in MESSAGES.iter().enumerate() {
        let name = format!("170000000{i}.M{i}P1.host:2,");
        fs::write(root.join("alice/cur").join(name), m).unwrap();
    }
    let users = PasswdFile::parse("alice:{PLAIN}wonderland\n").unwrap();
    MaildirStore::new(root, users)
}

fn stored(root: &Path) -> Vec<Vec<u8>> {
    let mut all: Vec<Vec<u8>> = ["cur", "new"]
        .iter()
        .flat_map(|sub| fs::read_dir(root.join("alice").join(sub)).unwrap())
        .map(|e| fs::read(e.unwrap().path()).unwrap())
        .collect();
    all.sort();
    all
}

/// Runs the script with `cut`; returns what the server wrote and why the
/// session ended.
fn run(root: &Path, cut: Cut) -> (Vec<u8>, Option<CloseReason>) {
    let store = Arc::new(OffloadStore::<_, Inline>::new(maildir(root)));
    let config = Arc::new(ServerConfig::for_store(store.as_ref()).allow_plaintext_auth(true));
    let now = Instant::ZERO;
    let machine = Server::new(config, now, ConnectionContext::new(7, false, false));
    let mut conn = Connection::new(machine, &ServerOptions::default());
    let mut driver = StoreDriver::new(store);
    let (input_end, reset) = match cut {
        Cut::ClientHalfClose(n) => (n, false),
        Cut::ClientReset(n) => (n, true),
        Cut::ServerWrites(_) => (SCRIPT.len(), false),
    };
    let write_limit = match cut {
        Cut::ServerWrites(n) => n,
        _ => usize::MAX,
    };
    let mut sent = 0;
    let mut wire = Vec::new();
    loop {
        match conn.want(now) {
            Want::Write(octets) => {
                let room = write_limit - wire.len().min(write_limit);
                if room == 0 {
                    conn.wrote(now, Err(()));
                    continue;
                }
                let n = octets.len().min(room);
                wire.extend_from_slice(&octets[..n]);
                conn.wrote(now, Ok::<_, ()>(n));
            }
            Want::Flush => conn.flushed(now, Ok::<_, ()>(())),
            Want::Store(request) => {
                let reply = ready(driver.execute(request));
                conn.store_done(now, reply);
            }
            Want::Read(buf) => {
                if sent == input_end {
                    if reset {
                        conn.received(now, Err(()));
                    } else {
                        conn.received(now, Ok::<_, ()>(0));
                    }
                    continue;
                }
                // Seven octets at a time: commands arrive split.
                let n = (input_end - sent).min(buf.len()).min(7);
                buf[..n].copy_from_slice(&SCRIPT[sent..sent + n]);
                sent += n;
                conn.received(now, Ok::<_, ()>(n));
            }
            Want::StartTls => unreachable!("no STLS in the script"),
            Want::Wait => {
                // Only the failed-login delay waits here; nothing fails.
                let at = conn.poll_timeout().expect("a deadline to wait for");
                conn.handle_timeout(at);
            }
            Want::Close { .. } => break,
        }
    }
    (wire, conn.machine().summary().close_reason)
}

fn check(cut: Cut) {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        maildir(dir.path());
        stored(dir.path())
    };
    let (wire, reason) = run(dir.path(), cut);
    let after = stored(dir.path());
    let quit_taken = match cut {
        Cut::ClientHalfClose(n) | Cut::ClientReset(n) => n >= QUIT_COMPLETE,
        Cut::ServerWrites(_) => true,
    };
    if reason == Some(CloseReason::Quit) {
        assert!(quit_taken, "{cut:?}: an UPDATE without the whole QUIT");
        let kept: Vec<Vec<u8>> = vec![MESSAGES[1].to_vec()];
        assert_eq!(after, kept, "{cut:?}: exactly the undeleted message stays");
    } else {
        assert_eq!(
            after, before,
            "{cut:?}: mail lost without UPDATE ({reason:?})"
        );
    }
    // A client that sent everything and kept reading gets its UPDATE.
    if matches!(cut, Cut::ClientHalfClose(n) if n >= QUIT_COMPLETE) {
        assert_eq!(reason, Some(CloseReason::Quit), "{cut:?}");
        assert!(wire.ends_with(b"\r\n"), "{cut:?}");
    }
}

#[test]
fn a_client_stream_cut_at_every_octet_loses_no_mail() {
    for n in 0..=SCRIPT.len() {
        check(Cut::ClientHalfClose(n));
        check(Cut::ClientReset(n));
    }
}

#[test]
fn a_server_stream_cut_at_every_octet_loses_no_mail() {
    let dir = tempfile::tempdir().unwrap();
    let (whole, reason) = run(dir.path(), Cut::ServerWrites(usize::MAX));
    assert_eq!(reason, Some(CloseReason::Quit));
    for n in 0..=whole.len() {
        check(Cut::ServerWrites(n));
    }
}
