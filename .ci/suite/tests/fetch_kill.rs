//! Every runtime's `fetch` example killed with SIGKILL at seeded points and
//! rerun: after every kill, nothing is missing from both the server and the
//! Maildir, and nothing is in the Maildir twice; after a final complete run,
//! every message is in the Maildir exactly once and the server is empty.
//!
//! The same for every runtime's `fetch --daemon`, killed at seeded
//! instants across its polls.
//!
//! The same for `fetch` into an mbox on every runtime: every message
//! there exactly once, byte for byte, never a part of one, except that a
//! killed run may leave the one it was appending cut off at the end of the
//! mbox until the next run (which cuts it off again and delivers it
//! whole).
//!
//! The same for `fetch` into an MDA and an LMTP server on every runtime,
//! with what holds there: every message delivered, nothing deleted on the
//! server before it is delivered, and per kill at most one extra copy: the
//! message delivered but not yet in the journal when the run died,
//! delivered again, or, into an MDA that takes the end of its input as the
//! end of the message, the one being written then, cut off.
//!
//! And every runtime's `fetch` cut off by the network in the middle of a
//! message, its messages then filed away from `new/` and `cur/` as a mail
//! reader would, and rerun: every message exactly once.

// The peer support of pop3-tokio's own peer tests.
mod peer_examples;
#[path = "../../../pop3-tokio/tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use std::sync::Arc;

use peer_examples::example_binary;
use pop3_proto::store::MemoryStore;
use support::dovecot::Dovecot;
use support::server::serve_memory;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const USER: &str = "alice";
const PASSWORD: &str = "secret";

/// xorshift64*: a small deterministic generator for the kill schedule.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Messages `range` with LF line ends, some large, some with dot lines.
fn maildrop(range: std::ops::Range<usize>) -> Vec<(String, Vec<u8>)> {
    let mut rng = Rng(0x00dd_ba11_5eed + range.start as u64);
    range
        .map(|i| {
            let mut m = format!(
                "From: s{i}@example.org\nTo: r@example.org\nSubject: message {i}\n\
                 Message-ID: <kill-{i}@example.org>\n\n"
            )
            .into_bytes();
            let lines = match i % 7 {
                0 => 20_000, // ~1.4 MB
                3 => 4_000,
                _ => 1 + rng.below(60) as usize,
            };
            for l in 0..lines {
                if l % 50 == 7 {
                    m.extend_from_slice(b".a line starting with a dot\n");
                }
                m.extend_from_slice(format!("{i:03} line {l:06} {:016x}\n", rng.next()).as_bytes());
            }
            (format!("kill-{i}"), m)
        })
        .collect()
}

/// Every delivered message of the Maildir (new/ and cur/), by content.
fn delivered(maildir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        let Ok(entries) = std::fs::read_dir(maildir.join(sub)) else {
            continue;
        };
        for e in entries {
            let path = e.unwrap().path();
            out.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    out
}

/// Every file of `dir`, by content (none if it does not exist).
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .map(|e| e.unwrap().path())
        // The LMTP server's files being written.
        .filter(|path| !path.file_name().unwrap().to_string_lossy().starts_with('.'))
        .map(|path| {
            let content = std::fs::read(&path).unwrap();
            (path, content)
        })
        .collect()
}

/// The messages of an mboxrd file: split at its `From ` lines, each
/// without its separator line and the empty line after it (the test's
/// messages hold no line starting with `From `, so none is quoted).
fn mbox_messages(path: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(text) = std::fs::read(path) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut current: Option<Vec<u8>> = None;
    for line in text.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b"From ") {
            out.extend(current.take());
            current = Some(Vec::new());
        } else {
            current
                .as_mut()
                .expect("the mbox starts with a From line")
                .extend_from_slice(line);
        }
    }
    out.extend(current);
    out.into_iter()
        .enumerate()
        .map(|(i, mut m)| {
            // A message cut off by a kill in the middle of its append
            // lacks the empty line: it stays as it is (and counts as cut).
            if m.ends_with(b"\n\n") {
                m.pop();
            }
            (path.join(format!("#{i}")), m)
        })
        .collect()
}

/// The last line of the record of an mbox append in `state` (the state
/// directory) and its file's modification time, if there is a record whose
/// last line is whole (one of an append begun and not yet journaled).
fn recorded_append(state: &Path) -> Option<(std::time::SystemTime, Vec<u8>)> {
    for e in std::fs::read_dir(state).ok()? {
        let path = e.ok()?.path();
        if !path.to_string_lossy().ends_with(".delivering") {
            continue;
        }
        let modified = std::fs::metadata(&path).ok()?.modified().ok()?;
        let text = std::fs::read(&path).ok()?;
        let body = text.strip_suffix(b"\n")?;
        let line = &body[body.iter().rposition(|&b| b == b'\n')? + 1..];
        return line
            .starts_with(b"pop3-mbox-append-v1 ")
            .then(|| (modified, line.to_vec()));
    }
    None
}

/// Where `fetch` delivers in a kill test.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Dest {
    /// `--maildir`: exactly once.
    Maildir,
    /// `--mbox`.
    Mbox,
    /// `--mda` with a script that stores each message in a file of its own
    /// (written to a temporary name, fsynced, renamed).
    Mda,
    /// `--lmtp` to [`lmtp_server`], which stores each message durably
    /// before its 250.
    Lmtp,
}

/// A destination of a kill test, set up in a directory of its own.
struct Destination {
    kind: Dest,
    dir: PathBuf,
    /// The LMTP server's socket path.
    socket: Option<PathBuf>,
}

impl Destination {
    fn new(kind: Dest, dir: &Path) -> Destination {
        std::fs::create_dir_all(dir).unwrap();
        let socket = (kind == Dest::Lmtp).then(|| {
            let socket = dir.join("lmtp.sock");
            std::fs::create_dir_all(dir.join("lmtp-store")).unwrap();
            lmtp_server(&socket, dir.join("lmtp-store"));
            socket
        });
        if kind == Dest::Mda {
            std::fs::create_dir_all(dir.join("mda-tmp")).unwrap();
            std::fs::create_dir_all(dir.join("mda-store")).unwrap();
        }
        Destination {
            kind,
            dir: dir.to_path_buf(),
            socket,
        }
    }

    /// The arguments that make `fetch` deliver here.
    fn args(&self) -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> = Vec::new();
        match self.kind {
            Dest::Maildir => {
                args.push("--maildir".into());
                args.push(self.dir.join("Maildir").into());
                return args;
            }
            Dest::Mbox => {
                args.push("--mbox".into());
                args.push(self.dir.join("mbox").into());
            }
            Dest::Mda => {
                let (tmp, store) = (self.dir.join("mda-tmp"), self.dir.join("mda-store"));
                args.push("--mda".into());
                args.push(
                    format!(
                        "f=$(mktemp '{}/m.XXXXXXXX') && cat > \"$f\" && sync \"$f\" \\
                         && mv \"$f\" '{}/' && sync '{}'",
                        tmp.display(),
                        store.display(),
                        store.display()
                    )
                    .into(),
                );
            }
            Dest::Lmtp => {
                args.push("--lmtp".into());
                args.push(format!("unix:{}", self.socket.as_ref().unwrap().display()).into());
            }
        }
        args.push("--state-dir".into());
        args.push(self.dir.join("state").into());
        args
    }

    /// Every message delivered here, by content.
    fn delivered(&self) -> Vec<(PathBuf, Vec<u8>)> {
        match self.kind {
            Dest::Maildir => delivered(&self.dir.join("Maildir")),
            Dest::Mbox => mbox_messages(&self.dir.join("mbox")),
            Dest::Mda => files(&self.dir.join("mda-store")),
            Dest::Lmtp => files(&self.dir.join("lmtp-store")),
        }
    }
}

/// A small LMTP server on the Unix socket `path`, a thread per
/// connection: each message, dots unstuffed and LF line ends, is written
/// to a temporary file in `store`, fsynced and renamed (the directory
/// fsynced too) before its 250. A connection that ends before the final
/// dot stores nothing.
fn lmtp_server(path: &Path, store: PathBuf) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        for (prefix, conn) in listener.incoming().enumerate() {
            let Ok(conn) = conn else { return };
            let store = store.clone();
            std::thread::spawn(move || {
                let mut out = conn.try_clone().unwrap();
                let mut input = BufReader::new(conn);
                let mut n = 0u64;
                let _ = (|| -> std::io::Result<()> {
                    out.write_all(b"220 test LMTP\r\n")?;
                    let mut line = Vec::new();
                    loop {
                        line.clear();
                        if input.read_until(b'\n', &mut line)? == 0 {
                            return Ok(());
                        }
                        let verb = String::from_utf8_lossy(&line).to_ascii_uppercase();
                        if verb.starts_with("LHLO") {
                            out.write_all(b"250-test\r\n250 PIPELINING\r\n")?;
                        } else if verb.starts_with("DATA") {
                            out.write_all(b"354 go on\r\n")?;
                            let mut message = Vec::new();
                            loop {
                                line.clear();
                                if input.read_until(b'\n', &mut line)? == 0 {
                                    return Ok(()); // cut off: nothing stored
                                }
                                if line == b".\r\n" {
                                    break;
                                }
                                let text = line.strip_prefix(b".").unwrap_or(&line);
                                let text = text.strip_suffix(b"\r\n").unwrap_or(text);
                                message.extend_from_slice(text);
                                message.push(b'\n');
                            }
                            n += 1;
                            let name = format!("{prefix}.{n}");
                            let tmp = store.join(format!(".tmp-{name}"));
                            let mut f = std::fs::File::create(&tmp)?;
                            f.write_all(&message)?;
                            f.sync_all()?;
                            std::fs::rename(&tmp, store.join(&name))?;
                            std::fs::File::open(&store)?.sync_all()?;
                            out.write_all(b"250 stored\r\n")?;
                        } else if verb.starts_with("QUIT") {
                            out.write_all(b"221 bye\r\n")?;
                            return Ok(());
                        } else {
                            out.write_all(b"250 ok\r\n")?;
                        }
                    }
                })();
            });
        }
    });
}

/// The base names of the messages in the server's Maildir (`cur/` and `new/`).
fn on_server(dovecot: &Dovecot) -> Vec<String> {
    let mut names = Vec::new();
    for sub in ["cur", "new"] {
        for e in std::fs::read_dir(dovecot.maildir(USER).join(sub)).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            names.push(name.split(':').next().unwrap_or("").to_owned());
        }
    }
    names
}

/// `messages`: (UID on the server, content). Returns how many are stored;
/// none may be in the Maildir twice, none cut off.
fn check(label: &str, dovecot: &Dovecot, maildir: &Path, messages: &[(String, Vec<u8>)]) -> usize {
    let (copies, cut) = copies_at(label, dovecot, &delivered(maildir), messages);
    assert_eq!(cut, 0, "{label}: a message cut off in the Maildir");
    for (i, n) in copies.iter().enumerate() {
        assert!(*n <= 1, "{label}: message {i} delivered {n} times");
    }
    copies.iter().sum()
}

/// How many copies of each of `messages` (UID on the server, content)
/// `found` holds, and how many messages cut off by a kill (the start of one
/// of them): everything found is one or the other, and every message
/// deleted on the server is there whole.
fn copies_at(
    label: &str,
    dovecot: &Dovecot,
    found: &[(PathBuf, Vec<u8>)],
    messages: &[(String, Vec<u8>)],
) -> (Vec<usize>, usize) {
    let index: HashMap<&[u8], usize> = messages
        .iter()
        .enumerate()
        .map(|(i, (_, m))| (m.as_slice(), i))
        .collect();
    let mut copies = vec![0usize; messages.len()];
    let mut cut = 0;
    for (path, content) in found {
        match index.get(content.as_slice()) {
            Some(&i) => copies[i] += 1,
            // Cut off in the middle of a line, ended by the next append.
            None if messages.iter().any(|(_, m)| {
                m.starts_with(content)
                    || m.starts_with(content.strip_suffix(b"\n").unwrap_or(content))
            }) =>
            {
                cut += 1
            }
            None => panic!("{label}: {} is no message of the maildrop", path.display()),
        }
    }
    let on_server = on_server(dovecot);
    for (i, n) in copies.iter().enumerate() {
        let uid = messages[i].0.as_str();
        let present = on_server.iter().any(|f| f == uid);
        assert!(
            present || *n >= 1,
            "{label}: message {i} deleted from the server but not delivered"
        );
    }
    (copies, cut)
}

/// Puts messages into the running server's Maildir (`new/`), as a delivery
/// would; returns them with their UIDs.
fn deliver(dovecot: &Dovecot, messages: &[(String, Vec<u8>)]) -> Vec<(String, Vec<u8>)> {
    let dir = dovecot.maildir(USER);
    messages
        .iter()
        .enumerate()
        .map(|(i, (name, m))| {
            let base = format!("{}.M{i}P2.{name}", 1_800_000_000 + i);
            let tmp = dir.join("tmp").join(&base);
            std::fs::write(&tmp, m).unwrap();
            std::fs::rename(&tmp, dir.join("new").join(&base)).unwrap();
            (base, m.clone())
        })
        .collect()
}

#[test]
fn tokio_fetch_killed_at_random_points_then_rerun_stores_every_message_exactly_once() {
    killed_and_rerun(example_binary("pop3-tokio", "fetch"), Dest::Maildir, KILLS);
}

/// Runs killed in flight per fetch binary (timing decides how many others
/// end by themselves first).
const KILLS: u32 = 100;

/// Runs killed in flight per fetch binary and destination beyond Maildir.
const DEST_KILLS: u32 = 40;

/// `fetch` into `dest`, killed `kills` times at seeded instants and rerun,
/// then run to the end with `--delete`. After every run: every message
/// deleted on the server is at the destination. Into a Maildir: no message
/// ever twice. Into an mbox: no message ever twice either; a killed run may
/// leave one message cut off, at the very end of the mbox, and the next
/// run that opens the mbox cuts it off again (a run that ends by itself
/// leaves none). Into an MDA or an LMTP server, a run killed between the
/// destination's durable acceptance and the journal's fsync leaves one
/// message delivered but not journaled, and a later run delivers it again;
/// a run killed while it feeds a message to an MDA that takes the end of
/// its input as the end of the message leaves that message cut off there
/// (a later run delivers it whole). After every run, duplicates and
/// cut-off copies together number at most the kills so far; none is cut
/// off at the LMTP server, which stores nothing before the final dot.
fn killed_and_rerun(bin: PathBuf, dest: Dest, kill_target: u32) {
    let started = Instant::now();
    let first = maildrop(0..40);
    let dovecot = Dovecot::start(&[(USER, PASSWORD, &first)]);
    let mut messages: Vec<(String, Vec<u8>)> = dovecot
        .uidls(USER)
        .into_iter()
        .zip(first.iter().map(|(_, m)| m.clone()))
        .collect();
    let work = tempfile::tempdir().unwrap();
    let target = Destination::new(dest, &work.path().join("dest"));
    let url = format!("pop://{USER}@127.0.0.1:{}", dovecot.pop3_addr().port());
    let command = |to: &Destination, delete: bool| {
        let mut cmd = Command::new(&bin);
        cmd.arg(&url)
            .args(to.args())
            .args(["--auth", "USER", "--insecure-cleartext-login"])
            .env("POP3_PASSWORD", PASSWORD)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if delete {
            cmd.arg("--delete");
        }
        cmd
    };
    let timed = |to: &Destination| {
        let started = Instant::now();
        let out = command(to, false).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        started.elapsed().as_millis().max(5) as u64
    };

    // How long runs take here, measured on a throw-away destination without
    // --delete: a complete fetch, and a run with nothing new.
    let probe_dir = tempfile::tempdir().unwrap();
    let probe = Destination::new(dest, probe_dir.path());
    let mut full = timed(&probe);
    assert_eq!(probe.delivered().len(), messages.len());
    let mut idle = timed(&probe);
    assert_eq!(probe.delivered().len(), messages.len());

    // The copies of each message at the destination after a run, and the
    // messages cut off, after `kills` kills (the last run `killed` or not):
    // one kill has one message in flight, which it may leave delivered but
    // not journaled (delivered again by a later run) or cut off, not both;
    // into an mbox, neither stays past the next run.
    let checked = |label: &str, messages: &[(String, Vec<u8>)], kills: u32, killed: bool| {
        let found = target.delivered();
        let (copies, cut) = copies_at(label, &dovecot, &found, messages);
        let twice: Vec<usize> = (0..messages.len()).filter(|&i| copies[i] > 1).collect();
        let duplicates: usize = copies.iter().map(|&n| n.saturating_sub(1)).sum();
        if dest == Dest::Mbox {
            assert_eq!(
                duplicates, 0,
                "{label}: messages {twice:?} twice in the mbox"
            );
            assert!(
                cut == 0 || (cut == 1 && killed),
                "{label}: {cut} messages cut off in the mbox"
            );
            // The one cut off is the last: every message before it whole.
            let whole: Vec<&[u8]> = messages.iter().map(|(_, m)| m.as_slice()).collect();
            let before_last = &found[..found.len().saturating_sub(cut)];
            for (path, content) in before_last {
                assert!(
                    whole.contains(&content.as_slice()),
                    "{label}: {} is no whole message",
                    path.display()
                );
            }
        }
        let allowed = match dest {
            Dest::Maildir => 0,
            Dest::Mbox => 1,
            Dest::Mda | Dest::Lmtp => kills,
        };
        assert!(
            (duplicates + cut) as u32 <= allowed,
            "{label}: {duplicates} duplicates (of messages {twice:?}) and {cut} cut off, \
             at most {allowed} in all"
        );
        (copies, cut)
    };

    let mut rng = Rng(0x06b1_11ed_f00d);
    let mut kills = 0;
    let mut completed_deletes = 0;
    let mut round = 0;
    let mut copies: Vec<usize> = Vec::new();
    let state = work.path().join("dest/state");
    // Kills that left an mbox append recorded and not settled, and those
    // that left a message cut off at a destination.
    // (Nothing of it in the mbox, a part, all of it.)
    let (mut unsettled, mut cut_at_kill) = ([0u32; 3], 0);
    while kills < kill_target {
        round += 1;
        assert!(
            round <= 4 * kill_target,
            "only {kills} of {round} runs were killed in flight"
        );
        if round % 40 == 39 {
            // More mail arrives while runs keep being killed.
            let start = messages.len();
            messages.extend(deliver(&dovecot, &maildrop(start..start + 15)));
        } else if dest == Dest::Mbox {
            // Into an mbox, new mail every round: every run has appends
            // to be killed in.
            let start = messages.len();
            messages.extend(deliver(&dovecot, &maildrop(start..start + 2)));
        }
        let delete = rng.below(3) != 0;
        // A run lasts about as long as the messages it still has to fetch
        // take, plus the fixed cost of a session: spread the kill over that
        // and a little beyond, so that some runs end (and QUIT) by themselves.
        let stored = copies.iter().filter(|&&n| n > 0).count();
        let left = (messages.len() - stored) as u64;
        let span = full * left / messages.len() as u64 + idle + idle / 2;
        let delay = rng.below(span);
        // Every other run into an mbox dies the moment it has recorded an
        // append: about to append, appending, or appended and not yet
        // journaled. The others die at the seeded instant.
        let at_append = dest == Dest::Mbox && round % 2 == 0;
        let stale = recorded_append(&state);
        let mut child = command(&target, delete).spawn().expect("start fetch");
        let killed = if at_append {
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                if child.try_wait().unwrap().is_some() {
                    break false;
                }
                let now = recorded_append(&state);
                if now.is_some() && now != stale {
                    // A seeded moment later: before, during or after the
                    // append's write and fsync.
                    std::thread::sleep(Duration::from_micros(rng.below(1500)));
                    break child.try_wait().unwrap().is_none();
                }
                assert!(Instant::now() < deadline, "round {round}: no append");
                std::thread::sleep(Duration::from_millis(1));
            }
        } else {
            std::thread::sleep(Duration::from_millis(delay));
            child.try_wait().unwrap().is_none()
        };
        if killed {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
            // The estimate follows the machine's load both ways: a little
            // longer after each kill, shorter after each run that ended
            // by itself, so that most runs die in flight and some finish.
            full += full / 16;
            idle += idle / 16;
        } else {
            if delete {
                completed_deletes += 1;
            }
            full = (full * 3 / 4).max(5);
            idle = (idle * 3 / 4).max(5);
        }
        let status = child.wait().unwrap();
        if killed {
            if let Some((_, line)) = recorded_append(&state) {
                // What the mbox holds of that append: nothing, a part, all.
                let words: Vec<u64> = String::from_utf8_lossy(&line)
                    .split(' ')
                    .skip(1)
                    .take(3)
                    .map(|w| w.parse().unwrap())
                    .collect();
                let (before, len, pad) = (words[0], words[1], words[2]);
                let size = std::fs::metadata(work.path().join("dest/mbox"))
                    .unwrap()
                    .len();
                let at = match size.saturating_sub(before) {
                    0 => 0,
                    n if n < len + pad => 1,
                    _ => 2,
                };
                unsettled[at] += 1;
            }
        }
        let when = if at_append {
            "at an append".to_owned()
        } else {
            format!("{delay} ms")
        };
        let label = format!("round {round} (delete {delete}, {when}, {status})");
        // A killed run's MDA may still be running, the LMTP server still
        // storing what it had: such a copy appears later.
        let (now, cut) = checked(&label, &messages, kills, killed);
        copies = now;
        cut_at_kill += cut;
        eprintln!(
            "{label}: {} stored, {} on the server",
            copies.iter().filter(|&&n| n > 0).count(),
            on_server(&dovecot).len()
        );
    }

    // A clean run with --delete finishes the job.
    let out = command(&target, true).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (copies, cut) = checked("final", &messages, kills, false);
    assert!(
        copies.iter().all(|&n| n >= 1),
        "every message delivered: {copies:?}"
    );
    let duplicates: usize = copies.iter().map(|&n| n.saturating_sub(1)).sum();
    if dest == Dest::Lmtp {
        // The server stores nothing before the final dot.
        assert_eq!(cut, 0, "a message cut off at the LMTP server");
    }
    if dest == Dest::Mbox {
        assert_eq!(
            copies,
            vec![1; messages.len()],
            "every message in the mbox exactly once"
        );
        // The record of the last append went once it was journaled.
        let records: Vec<_> = std::fs::read_dir(work.path().join("dest/state"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".delivering"))
            .collect();
        assert!(records.is_empty(), "records left: {records:?}");
        assert!(
            unsettled.iter().sum::<u32>() > 0,
            "no run was killed while an append was unsettled"
        );
        eprintln!(
            "kills that left an append unsettled: {} before it, {} in it, {} after it; \
             {cut_at_kill} times a message cut off (each settled by the next run)",
            unsettled[0], unsettled[1], unsettled[2]
        );
    }
    assert!(on_server(&dovecot).is_empty(), "{:?}", on_server(&dovecot));
    if dest == Dest::Maildir {
        let leftovers: Vec<_> = std::fs::read_dir(work.path().join("dest/Maildir/tmp"))
            .unwrap()
            .collect();
        assert!(leftovers.is_empty(), "tmp/ not cleaned: {leftovers:?}");
    }
    eprintln!(
        "{dest:?}: {kills} kills, {completed_deletes} complete runs with --delete, \
         {duplicates} duplicates, {cut} cut off, {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn smol_fetch_killed_at_random_points_then_rerun_stores_every_message_exactly_once() {
    killed_and_rerun(
        example_binary("pop3-async-std", "fetch-smol"),
        Dest::Maildir,
        KILLS,
    );
}

#[test]
fn blocking_fetch_killed_at_random_points_then_rerun_stores_every_message_exactly_once() {
    killed_and_rerun(
        example_binary("pop3-blocking", "fetch-blocking"),
        Dest::Maildir,
        KILLS,
    );
}

#[test]
fn blocking_fetch_into_mbox_killed_then_rerun_delivers_every_message_exactly_once() {
    killed_and_rerun(
        example_binary("pop3-blocking", "fetch-blocking"),
        Dest::Mbox,
        DEST_KILLS,
    );
}

#[test]
fn tokio_fetch_into_mbox_killed_then_rerun_delivers_every_message_exactly_once() {
    killed_and_rerun(
        example_binary("pop3-tokio", "fetch"),
        Dest::Mbox,
        DEST_KILLS,
    );
}

#[test]
fn blocking_fetch_to_mda_killed_then_rerun_delivers_all_with_at_most_one_extra_or_cut_copy_per_kill()
 {
    killed_and_rerun(
        example_binary("pop3-blocking", "fetch-blocking"),
        Dest::Mda,
        DEST_KILLS,
    );
}

#[test]
fn tokio_fetch_to_mda_killed_then_rerun_delivers_all_with_at_most_one_extra_or_cut_copy_per_kill() {
    killed_and_rerun(example_binary("pop3-tokio", "fetch"), Dest::Mda, DEST_KILLS);
}

#[test]
fn blocking_fetch_to_lmtp_killed_then_rerun_delivers_all_with_at_most_one_duplicate_per_kill() {
    killed_and_rerun(
        example_binary("pop3-blocking", "fetch-blocking"),
        Dest::Lmtp,
        DEST_KILLS,
    );
}

#[test]
fn tokio_fetch_to_lmtp_killed_then_rerun_delivers_all_with_at_most_one_duplicate_per_kill() {
    killed_and_rerun(
        example_binary("pop3-tokio", "fetch"),
        Dest::Lmtp,
        DEST_KILLS,
    );
}

/// Daemons killed in flight per fetch binary.
const DAEMON_KILLS: u32 = 40;

/// `fetch --daemon` (polling every 20 ms, with `--delete`) killed with
/// SIGKILL at seeded instants spread over several polls, more mail arriving
/// meanwhile: after every kill nothing is lost or stored twice; after a
/// final run every message is in the Maildir exactly once.
fn daemon_killed_across_polls_then_rerun(bin: PathBuf) {
    let first = maildrop(0..30);
    let dovecot = Dovecot::start(&[(USER, PASSWORD, &first)]);
    let mut messages: Vec<(String, Vec<u8>)> = dovecot
        .uidls(USER)
        .into_iter()
        .zip(first.iter().map(|(_, m)| m.clone()))
        .collect();
    let work = tempfile::tempdir().unwrap();
    let maildir = work.path().join("Maildir");
    let url = format!("pop://{USER}@127.0.0.1:{}", dovecot.pop3_addr().port());
    let command = |daemon: bool| {
        let mut cmd = Command::new(&bin);
        cmd.arg(&url)
            .arg("--maildir")
            .arg(&maildir)
            .args(["--auth", "USER", "--insecure-cleartext-login", "--delete"])
            .env("POP3_PASSWORD", PASSWORD)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if daemon {
            cmd.args(["--daemon", "20ms"]);
        }
        cmd
    };
    let mut rng = Rng(0x00da_e30f_5eed);
    for round in 1..=DAEMON_KILLS {
        let mut child = command(true).spawn().expect("start fetch --daemon");
        // Mail arrives while the daemon runs, between or during its polls;
        // the kill comes at a seeded instant after that.
        let before = rng.below(150);
        std::thread::sleep(Duration::from_millis(before));
        let start = messages.len();
        messages.extend(deliver(&dovecot, &maildrop(start..start + 4)));
        let after = rng.below(250);
        std::thread::sleep(Duration::from_millis(after));
        assert!(
            child.try_wait().unwrap().is_none(),
            "round {round}: the daemon exited by itself"
        );
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        let label = format!("daemon round {round} ({before}+{after} ms, {status})");
        let stored = check(&label, &dovecot, &maildir, &messages);
        eprintln!(
            "{label}: {stored} stored, {} on the server",
            on_server(&dovecot).len()
        );
    }
    let out = command(false).output().unwrap();
    assert!(out.status.success(), "the final run failed");
    let total = check("final", &dovecot, &maildir, &messages);
    assert_eq!(total, messages.len(), "every message exactly once");
    assert!(on_server(&dovecot).is_empty(), "{:?}", on_server(&dovecot));
}

#[test]
fn blocking_fetch_daemon_killed_across_polls_then_rerun_stores_every_message_exactly_once() {
    daemon_killed_across_polls_then_rerun(example_binary("pop3-blocking", "fetch-blocking"));
}

#[test]
fn tokio_fetch_daemon_killed_across_polls_then_rerun_stores_every_message_exactly_once() {
    daemon_killed_across_polls_then_rerun(example_binary("pop3-tokio", "fetch"));
}

#[test]
fn smol_fetch_daemon_killed_across_polls_then_rerun_stores_every_message_exactly_once() {
    daemon_killed_across_polls_then_rerun(example_binary("pop3-async-std", "fetch-smol"));
}

/// In the middle of the third message: the proxy below cuts the connection
/// where the server sends this.
const CUT: &[u8] = b"the connection is cut here";

/// A loopback proxy to `127.0.0.1:to` that passes everything until the
/// server sends [`CUT`], and then closes both connections.
async fn cutting_proxy(to: u16) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (client, _) = listener.accept().await.unwrap();
            let server = tokio::net::TcpStream::connect(("127.0.0.1", to))
                .await
                .unwrap();
            tokio::spawn(async move {
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let up = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                });
                let (mut seen, mut sent) = (Vec::new(), 0);
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    let n = server_read.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    let end = seen.windows(CUT.len()).position(|w| w == CUT);
                    let upto = end.unwrap_or(seen.len());
                    if client_write.write_all(&seen[sent..upto]).await.is_err() {
                        break;
                    }
                    sent = upto;
                    if end.is_some() {
                        break;
                    }
                }
                // Both connections end here, the server's without QUIT.
                up.abort();
                let _ = client_write.shutdown().await;
            });
        }
    });
    port
}

/// Five messages of about 30 kB; the third holds [`CUT`] in its middle.
fn cut_maildrop() -> Vec<Vec<u8>> {
    (0..5)
        .map(|i| {
            let mut m =
                format!("Subject: message {i}\r\nMessage-ID: <cut-{i}@example.org>\r\n\r\n")
                    .into_bytes();
            for l in 0..800 {
                if i == 2 && l == 400 {
                    m.extend_from_slice(CUT);
                    m.extend_from_slice(b"\r\n");
                }
                m.extend_from_slice(format!("message {i} line {l:04} of some text\r\n").as_bytes());
            }
            m
        })
        .collect()
}

fn cut_by_the_network_filed_away_and_rerun(bin: PathBuf) {
    let messages = cut_maildrop();
    let store = Arc::new(MemoryStore::new());
    store.add_user(USER, PASSWORD);
    for m in &messages {
        store.add_message(USER, m.clone());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (port, server) = runtime.block_on(serve_memory(store.clone()));
    let proxy = runtime.block_on(cutting_proxy(port));
    let work = tempfile::tempdir().unwrap();
    let maildir = work.path().join("Maildir");
    let filed = work.path().join("filed");
    std::fs::create_dir(&filed).unwrap();
    let run = |port: u16| {
        Command::new(&bin)
            .arg(format!("pop://{USER}@127.0.0.1:{port}"))
            .arg("--maildir")
            .arg(&maildir)
            // One account, whichever port reaches it.
            .args(["--journal-account", "alice@pop.example.org"])
            .args(["--auth", "USER", "--insecure-cleartext-login", "--delete"])
            .env("POP3_PASSWORD", PASSWORD)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .unwrap()
    };
    let lf = |m: &[u8]| {
        String::from_utf8_lossy(m)
            .replace("\r\n", "\n")
            .into_bytes()
    };
    // How many copies of each message `found` holds (all of them known).
    let copies = |found: &[Vec<u8>]| -> Vec<usize> {
        let want: Vec<Vec<u8>> = messages.iter().map(|m| lf(m)).collect();
        assert!(
            found.iter().all(|f| want.contains(f)),
            "a file is no message"
        );
        want.iter()
            .map(|w| found.iter().filter(|f| *f == w).count())
            .collect()
    };

    // Cut inside the third message: the run fails (75, try again later),
    // the first two are stored, nothing is deleted.
    let out = run(proxy);
    assert_eq!(
        out.status.code(),
        Some(75),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stored: Vec<Vec<u8>> = delivered(&maildir).into_iter().map(|(_, c)| c).collect();
    assert_eq!(copies(&stored), [1, 1, 0, 0, 0]);
    assert_eq!(store.message_count(USER), messages.len());

    // A mail reader files them away.
    for (path, _) in delivered(&maildir) {
        std::fs::rename(&path, filed.join(path.file_name().unwrap())).unwrap();
    }

    // The rerun fetches the other three only, and deletes all five.
    let out = run(port);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut all: Vec<Vec<u8>> = delivered(&maildir).into_iter().map(|(_, c)| c).collect();
    for e in std::fs::read_dir(&filed).unwrap() {
        all.push(std::fs::read(e.unwrap().path()).unwrap());
    }
    assert_eq!(copies(&all), [1; 5], "every message exactly once");
    assert_eq!(store.message_count(USER), 0);
    server.shutdown();
}

#[test]
fn tokio_fetch_cut_by_the_network_then_filed_away_and_rerun_stores_every_message_once() {
    cut_by_the_network_filed_away_and_rerun(example_binary("pop3-tokio", "fetch"));
}

#[test]
fn smol_fetch_cut_by_the_network_then_filed_away_and_rerun_stores_every_message_once() {
    cut_by_the_network_filed_away_and_rerun(example_binary("pop3-async-std", "fetch-smol"));
}

#[test]
fn blocking_fetch_cut_by_the_network_then_filed_away_and_rerun_stores_every_message_once() {
    cut_by_the_network_filed_away_and_rerun(example_binary("pop3-blocking", "fetch-blocking"));
}

#[test]
fn smol_fetch_into_mbox_killed_then_rerun_delivers_every_message_exactly_once() {
    killed_and_rerun(
        example_binary("pop3-async-std", "fetch-smol"),
        Dest::Mbox,
        DEST_KILLS,
    );
}

#[test]
fn smol_fetch_to_mda_killed_then_rerun_delivers_all_with_at_most_one_extra_or_cut_copy_per_kill() {
    killed_and_rerun(
        example_binary("pop3-async-std", "fetch-smol"),
        Dest::Mda,
        DEST_KILLS,
    );
}

#[test]
fn smol_fetch_to_lmtp_killed_then_rerun_delivers_all_with_at_most_one_duplicate_per_kill() {
    killed_and_rerun(
        example_binary("pop3-async-std", "fetch-smol"),
        Dest::Lmtp,
        DEST_KILLS,
    );
}
