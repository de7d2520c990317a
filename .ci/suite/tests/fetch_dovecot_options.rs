//! Every runtime's `fetch` example, run as a program, against Dovecot and
//! against this project's server (the Maildir store, the same code as
//! `pop3d`) on loopback, option by option: keep and `--delete`,
//! `--delete-after-days`, `--max-size` with `--oversize skip|delete`,
//! `--max-messages` and `--max-octets`, only new mail and `--all`,
//! `--mark-seen`, `--trace-headers`, the mbox, MDA and LMTP destinations,
//! the password sources (`password_command`, `password_env`, `.netrc`,
//! `POP3_PASSWORD`), `--account` in a configuration with several accounts,
//! `--no-pipelining` (checked on the `--trace` transcript), `--crlf`,
//! `--journal-account`, the configuration's `mda_timeout` and
//! `lock_timeout` (a dot-lock and a record lock held by another program),
//! the exit statuses (0, 65, 74, 75, 77, 78, and the worst of several
//! accounts), `--trace FILE`, `--json`, `-q` and `-v`. Against Dovecot
//! only (our server here speaks no TLS): `--insecure` over POP3S and STLS,
//! and exit 69 with a hint naming `--ca-file` without it. Exit 76 comes
//! from a fake server that answers CAPA with no status, as no real server
//! breaks the protocol on purpose.
//!
//! One Dovecot and one server of ours serve the whole file; every test
//! seeds the maildrops of users of its own (one per runtime and server) and
//! checks what arrived, byte for byte, against what the server still holds
//! afterwards. A wrong password gets a Dovecot of its own, as Dovecot delays
//! every later login from the same address after a failed one; the
//! transcript and Dovecot's log count the logins it cost.

// The peer support of pop3-tokio's own peer tests.
mod peer_examples;
#[path = "../../../pop3-tokio/tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::thread;
use std::time::Duration;

use peer_examples::example_binary;
use pop3_blocking::maildir::MaildirStore;
use pop3_blocking::passwd::PasswdFile;
use pop3_blocking::server::{Pop3Server, Security, ServerOptions};
use pop3_proto::server::ServerConfig;
use pop3_proto::store::{Inline, OffloadStore};
use support::dovecot::Dovecot;
use support::{crlf_lines, run_with_timeout};

const PASSWORD: &str = "secret";

/// The runtimes: (label, package, example).
const RUNTIMES: [(&str, &str, &str); 3] = [
    ("blocking", "pop3-blocking", "fetch-blocking"),
    ("tokio", "pop3-tokio", "fetch"),
    ("smol", "pop3-async-std", "fetch-smol"),
];

/// The scenarios; each has a user per runtime on each server
/// (`SCENARIO-RUNTIME`).
const SCENARIOS: [&str; 23] = [
    "keep", "age", "size", "limits", "new", "seen", "headers", "mbox", "mda", "lmtp", "pass",
    "acct1", "acct2", "codes", "trace", "json", "output", "tls", "pipe", "crlf", "jacct",
    "mdatime", "locktime",
];

fn user(scenario: &str, runtime: &str) -> String {
    format!("{scenario}-{runtime}")
}

fn all_users() -> Vec<String> {
    let mut users = Vec::new();
    for s in SCENARIOS {
        for (rt, _, _) in RUNTIMES {
            users.push(user(s, rt));
        }
    }
    users
}

/// The examples, built once.
static BINARIES: LazyLock<Vec<(&'static str, PathBuf)>> = LazyLock::new(|| {
    RUNTIMES
        .iter()
        .map(|(rt, package, example)| (*rt, example_binary(package, example)))
        .collect()
});

/// One Dovecot for the file, with every user's Maildir empty: the tests
/// seed them. Never dropped: the watcher `dovecot.sh` starts with it stops
/// it and removes its directory once this process has exited.
static DOVECOT: LazyLock<Dovecot> = LazyLock::new(|| {
    let users = all_users();
    let none: Vec<(String, Vec<u8>)> = Vec::new();
    let specs: Vec<_> = users
        .iter()
        .map(|u| (u.as_str(), PASSWORD, none.as_slice()))
        .collect();
    Dovecot::start(&specs)
});

/// Our server for the file, over a Maildir tree inside Dovecot's instance
/// directory (removed with it), on a thread of this process.
static OURS: LazyLock<SocketAddr> = LazyLock::new(|| {
    let root = ours_root();
    let mut passwd = String::new();
    for u in all_users() {
        passwd.push_str(&format!("{u}:{{PLAIN}}{PASSWORD}\n"));
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(root.join(&u).join(sub)).unwrap();
        }
    }
    let store = MaildirStore::new(&root, PasswdFile::parse(&passwd).unwrap());
    let config = ServerConfig::default()
        .allow_plaintext_auth(true)
        .auth_failure_delay(Duration::ZERO);
    let server = Pop3Server::build(
        Arc::new(OffloadStore::<_, Inline>::new(store)),
        config,
        None,
        ServerOptions::default(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || server.serve(listener, Security::Plain));
    addr
});

fn ours_root() -> PathBuf {
    DOVECOT.dir().join("ours")
}

/// A server under test.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Peer {
    Dovecot,
    Ours,
}

impl Peer {
    fn addr(self) -> SocketAddr {
        match self {
            Peer::Dovecot => DOVECOT.pop3_addr(),
            Peer::Ours => *OURS,
        }
    }

    fn url(self, user: &str) -> String {
        format!("pop://{user}@127.0.0.1:{}", self.addr().port())
    }

    fn maildrop(self, user: &str) -> PathBuf {
        match self {
            Peer::Dovecot => DOVECOT.maildir(user),
            Peer::Ours => {
                // The server makes the Maildirs when it starts.
                LazyLock::force(&OURS);
                ours_root().join(user)
            }
        }
    }

    /// Puts `messages` into `user`'s maildrop (in `cur/`, owned as the
    /// Maildir is: Dovecot reads them as another user when the tests run as
    /// root) and answers their UIDLs, in order. Names sort in delivery
    /// order, also after earlier deliveries.
    fn deliver(self, user: &str, messages: &[&[u8]]) -> Vec<String> {
        static NEXT: AtomicUsize = AtomicUsize::new(1);
        let dir = self.maildrop(user);
        let owner = std::fs::metadata(&dir).unwrap();
        let mut uids = Vec::new();
        for m in messages {
            let i = NEXT.fetch_add(1, Ordering::SeqCst);
            let uid = format!("{}.M{i}P1.test", 1_700_000_000 + i);
            let path = dir.join("cur").join(format!("{uid}:2,"));
            std::fs::write(&path, m).unwrap();
            std::os::unix::fs::chown(&path, Some(owner.uid()), Some(owner.gid())).unwrap();
            uids.push(uid);
        }
        uids
    }

    /// The UIDLs of the messages `user`'s maildrop still holds, sorted.
    fn held(self, user: &str) -> Vec<String> {
        let mut uids = Vec::new();
        for sub in ["cur", "new"] {
            for e in std::fs::read_dir(self.maildrop(user).join(sub)).unwrap() {
                let name = e.unwrap().file_name().to_string_lossy().into_owned();
                uids.push(name.split(':').next().unwrap().to_owned());
            }
        }
        uids.sort();
        uids
    }
}

/// Runs `check(peer, runtime, binary, user)` for each server and runtime.
fn each(scenario: &str, check: impl Fn(Peer, &str, &Path, &str)) {
    for peer in [Peer::Dovecot, Peer::Ours] {
        for (rt, bin) in BINARIES.iter() {
            check(peer, rt, bin, &user(scenario, rt));
        }
    }
}

/// What a run of `fetch` did.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// A `fetch` command whose home, configuration and state are in `home`
/// (nothing of the machine's is read), with `POP3_PASSWORD` set.
fn command(bin: &Path, home: &Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_STATE_HOME", home.join("state"))
        .env("POP3_PASSWORD", PASSWORD)
        .env_remove("NETRC")
        .env_remove("RUST_LOG");
    cmd
}

fn run(cmd: Command) -> Run {
    let out = run_with_timeout(cmd, Duration::from_secs(60));
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `fetch URL` for `user` on `peer` with `args`, its home in `home`.
fn fetch(peer: Peer, bin: &Path, home: &Path, user: &str, args: &[&str]) -> Run {
    let mut cmd = command(bin, home);
    cmd.arg(peer.url(user)).args(args);
    run(cmd)
}

/// Asserts the exit status, showing the run when it differs.
fn expect(what: &str, run: &Run, code: i32) {
    assert_eq!(run.code, code, "{what}: {run:#?}");
}

/// The messages of a Maildir (`new/` and `cur/`), sorted.
fn maildir(dir: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        if let Ok(entries) = std::fs::read_dir(dir.join(sub)) {
            for e in entries {
                out.push(std::fs::read(e.unwrap().path()).unwrap());
            }
        }
    }
    out.sort();
    out
}

fn sorted(messages: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = messages.iter().map(|m| m.to_vec()).collect();
    out.sort();
    out
}

/// A message with LF line ends, as a Maildir holds it: `fetch` stores what
/// the server sends with CRLF turned back into LF, so it arrives unchanged.
fn message(label: &str, user: &str, body_lines: usize) -> Vec<u8> {
    let mut m = format!(
        "From: sender@example.org\nTo: {user}@example.org\nSubject: {label}\n\
         Message-ID: <{label}.{user}@example.org>\n\n"
    );
    for i in 0..body_lines {
        m.push_str(&format!("{label} line {i}\n"));
    }
    // Dot-stuffing and an mbox "From " line on the way.
    m.push_str(".dot first\nFrom the body\n>From quoted\nend\n");
    m.into_bytes()
}

fn temp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("fetch-options-")
        .tempdir()
        .unwrap()
}

fn tag(peer: Peer, rt: &str) -> String {
    format!("{peer:?} / {rt}")
}

// ------------------------------------------------------------- policies

#[test]
fn keeps_by_default_then_delete_removes_what_is_stored_without_fetching_twice() {
    each("keep", |peer, rt, bin, user| {
        let t = tag(peer, rt);
        let home = temp();
        let md = home.path().join("md");
        let md_arg = md.to_str().unwrap();
        let m = [message("k1", user, 3), message("k2", user, 40)];
        let uids = peer.deliver(user, &[&m[0], &m[1]]);
        expect(
            &t,
            &fetch(peer, bin, home.path(), user, &["--maildir", md_arg, "-q"]),
            0,
        );
        assert_eq!(maildir(&md), sorted(&[&m[0], &m[1]]), "{t}: kept run");
        assert_eq!(peer.held(user), uids, "{t}: nothing deleted by default");
        let again = fetch(
            peer,
            bin,
            home.path(),
            user,
            &["--maildir", md_arg, "--delete", "-q"],
        );
        expect(&t, &again, 0);
        assert_eq!(maildir(&md), sorted(&[&m[0], &m[1]]), "{t}: no duplicate");
        assert!(
            peer.held(user).is_empty(),
            "{t}: --delete empties the maildrop"
        );
    });
}

/// The journal's `seen` time of `uid` moved `days` into the past (the
/// journal keeps the first `seen` line it reads for a UID).
fn backdate(journal_dir: &Path, uid: &str, days: u64) {
    let journal = std::fs::read_dir(journal_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with(".pop3-uidl-") && !name.ends_with(".lock")
        })
        .expect("the journal");
    let text = std::fs::read_to_string(&journal).unwrap();
    let seen = text
        .lines()
        .find(|l| l.starts_with("seen ") && l.ends_with(&format!(" {uid}")))
        .unwrap_or_else(|| panic!("no seen line for {uid} in\n{text}"));
    let secs: u64 = seen.split(' ').nth(1).unwrap().parse().unwrap();
    let old = format!("seen {} {uid}\n", secs - days * 86_400);
    std::fs::write(&journal, format!("{old}{text}")).unwrap();
}

#[test]
fn delete_after_days_deletes_only_what_was_first_seen_long_enough_ago() {
    each("age", |peer, rt, bin, user| {
        let t = tag(peer, rt);
        let home = temp();
        let md = home.path().join("md");
        let args = [
            "--maildir",
            md.to_str().unwrap(),
            "--delete-after-days",
            "3",
            "-q",
        ];
        let m = [message("a1", user, 1), message("a2", user, 1)];
        let uids = peer.deliver(user, &[&m[0], &m[1]]);
        expect(&t, &fetch(peer, bin, home.path(), user, &args), 0);
        assert_eq!(maildir(&md), sorted(&[&m[0], &m[1]]), "{t}");
        assert_eq!(peer.held(user), uids, "{t}: both younger than 3 days");
        backdate(&md, &uids[0], 10);
        expect(&t, &fetch(peer, bin, home.path(), user, &args), 0);
        assert_eq!(peer.held(user), uids[1..], "{t}: the old one is deleted");
        assert_eq!(
            maildir(&md),
            sorted(&[&m[0], &m[1]]),
            "{t}: nothing fetched twice"
        );
    });
}

#[test]
fn max_size_skips_big_messages_and_oversize_delete_deletes_them_unread() {
    each("size", |peer, rt, bin, user| {
        let t = tag(peer, rt);
        let home = temp();
        let md = home.path().join("md");
        let md_arg = md.to_str().unwrap();
        let small = message("s1", user, 1);
        let big = message("s2", user, 200);
        let uids = peer.deliver(user, &[&small, &big]);
        let skip = ["--maildir", md_arg, "--delete", "--max-size", "1000", "-q"];
        expect(&t, &fetch(peer, bin, home.path(), user, &skip), 0);
        assert_eq!(
            maildir(&md),
            sorted(&[&small]),
            "{t}: the big one is not fetched"
        );
        assert_eq!(peer.held(user), uids[1..], "{t}: --oversize skip keeps it");
        let delete = [&skip[..], &["--oversize", "delete"]].concat();
        expect(&t, &fetch(peer, bin, home.path(), user, &delete), 0);
        assert_eq!(maildir(&md), sorted(&[&small]), "{t}: deleted unread");
        assert!(
            peer.held(user).is_empty(),
            "{t}: --oversize delete deletes it"
        );
    });
}

#[test]
fn max_messages_and_max_octets_leave_the_rest_for_the_next_session() {
    each("limits", |peer, rt, bin, user| {
        let t = tag(peer, rt);
        let home = temp();
        let md = home.path().join("md");
        let md_arg = md.to_str().unwrap();
        let m: Vec<Vec<u8>> = (1..=5)
            .map(|i| message(&format!("l{i}"), user, i))
            .collect();
        let all: Vec<&[u8]> = m.iter().map(|v| v.as_slice()).collect();
        let uids = peer.deliver(user, &all);
        let base = ["--maildir", md_arg, "--delete", "-q"];
        let two = [&base[..], &["--max-messages", "2"]].concat();
        expect(&t, &fetch(peer, bin, home.path(), user, &two), 0);
        assert_eq!(maildir(&md), sorted(&all[..2]), "{t}: the first two");
        assert_eq!(peer.held(user), uids[2..], "{t}");
        // The first message of a session always goes, whatever its size.
        let one = [&base[..], &["--max-octets", "1"]].concat();
        expect(&t, &fetch(peer, bin, home.path(), user, &one), 0);
        assert_eq!(maildir(&md), sorted(&all[..3]), "{t}: one more");
        assert_eq!(peer.held(user), uids[3..], "{t}");
        expect(&t, &fetch(peer, bin, home.path(), user, &base), 0);
        assert_eq!(maildir(&md), sorted(&all), "{t}: the rest");
        assert!(peer.held(user).is_empty(), "{t}");
    });
}

#[test]
fn only_new_mail_is_fetched_and_all_fetches_everything_again() {
    each("new", |peer, rt, bin, user| {
        let t = tag(peer, rt);
        let home = temp();
        let md = home.path().join("md");
        let args = ["--maildir", md.to_str().unwrap(), "-q"];
        let old = [message("n1", user, 1), message("n2", user, 2)];
        peer.deliver(user, &[&old[0], &old[1]]);
        expect(&t, &fetch(peer, bin, home.path(), user, &args), 0);
        let new = message("n3", user, 3);
        let uids_new = peer.deliver(user, &[&new]);
        expect(&t, &fetch(peer, bin, home.path(), user, &args), 0);
        assert_eq!(
            maildir(&md),
            sorted(&[&old[0], &old[1], &new]),
            "{t}: only new"
        );
        assert_eq!(peer.held(user).len(), 3, "{t}: kept");
        assert!(peer.held(user).contains(&uids_new[0]));
        // The Maildir's files gone, a plain run still fetches nothing
        // again; --all fetches every message on the server once more.
        for e in std::fs::read_dir(md.join("new")).unwrap() {
            std::fs::remove_file(e.unwrap().path()).unwrap();
        }
        expect(&t, &fetch(peer, bin, home.path(), user, &args), 0);
        assert!(maildir(&md).is_empty(), "{t}: the journal remembers them");
        let all = ["--maildir", md.to_str().unwrap(), "--all", "--json"];
        let r = fetch(peer, bin, home.path(), user, &all);
        expect(&t, &r, 0);
        let report: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
        assert_eq!(report["saved"], 3, "{t}: {report}");
        assert_eq!(report["already_stored"], 3, "{t}: {report}");
        assert_eq!(
            maildir(&md),
            sorted(&[&old[0], &old[1], &new]),
            "{t}: --all fetches each again"
        );
        // Into a Maildir holding them, --all replaces each: no duplicates.
        expect(&t, &fetch(peer, bin, home.path(), user, &all), 0);
        assert_eq!(
            maildir(&md),
            sorted(&[&old[0], &old[1], &new]),
            "{t}: each once"
        );
    });
}

#[test]
fn mark_seen_downloads_nothing_and_later_runs_fetch_only_newer_mail() {
    each("seen", |peer, rt, bin, user| {
        let t = tag(peer, rt);
        let home = temp();
        let md = home.path().join("md");
        let md_arg = md.to_str().unwrap();
        let old = [message("o1", user, 1), message("o2", user, 1)];
        let uids = peer.deliver(user, &[&old[0], &old[1]]);
        let seen = fetch(
            peer,
            bin,
            home.path(),
            user,
            &["--maildir", md_arg, "--mark-seen", "--json"],
        );
        expect(&t, &seen, 0);
        let report: serde_json::Value = serde_json::from_str(seen.stdout.trim()).unwrap();
        assert_eq!(report["marked_seen"], 2, "{t}: {report}");
        assert_eq!(report["saved"], 0, "{t}: {report}");
        assert!(maildir(&md).is_empty(), "{t}: nothing downloaded");
        assert_eq!(peer.held(user), uids, "{t}: nothing deleted");
        let new = message("o3", user, 2);
        peer.deliver(user, &[&new]);
        expect(
            &t,
            &fetch(
                peer,
                bin,
                home.path(),
                user,
                &["--maildir", md_arg, "--delete", "-q"],
            ),
            0,
        );
        assert_eq!(maildir(&md), sorted(&[&new]), "{t}: only the newer message");
        // --delete deletes what the journal holds, the marked ones too.
        assert!(peer.held(user).is_empty(), "{t}");
    });
}

#[test]
fn trace_headers_name_the_server_the_account_and_the_servers_uidl() {
    each("headers", |peer, rt, bin, user| {
        let t = tag(peer, rt);
        let home = temp();
        let md = home.path().join("md");
        let m = message("h1", user, 2);
        let uids = peer.deliver(user, &[&m]);
        let args = ["--maildir", md.to_str().unwrap(), "--trace-headers", "-q"];
        expect(&t, &fetch(peer, bin, home.path(), user, &args), 0);
        let got = maildir(&md);
        assert_eq!(got.len(), 1, "{t}");
        let text = String::from_utf8(got[0].clone()).unwrap();
        let account = format!("{user}@127.0.0.1:{}", peer.addr().port());
        let mut lines = text.splitn(4, '\n');
        let received = lines.next().unwrap();
        assert!(
            received.starts_with("Received: from 127.0.0.1 by "),
            "{t}: {text}"
        );
        assert!(
            received.contains(&format!(" with POP3 for <{account}>; ")),
            "{t}: {text}"
        );
        assert_eq!(
            lines.next().unwrap(),
            format!("Delivered-To: {account}"),
            "{t}"
        );
        assert_eq!(lines.next().unwrap(), format!("X-UIDL: {}", uids[0]), "{t}");
        assert_eq!(
            lines.next().unwrap().as_bytes(),
            &m[..],
            "{t}: the message follows unchanged"
        );
    });
}

// ---------------------------------------------------------- destinations

/// The mboxrd form of `m` as `fetch` appends it, but for the date of its
/// `From ` line.
fn mboxrd(m: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in m.split_inclusive(|&b| b == b'\n') {
        let unquoted = line.iter().take_while(|&&b| b == b'>').count();
        if line[unquoted..].starts_with(b"From ") {
            out.push(b'>');
        }
        out.extend_from_slice(line);
    }
    out.push(b'\n');
    out
}

#[test]
fn mbox_gets_each_message_once_in_mboxrd_form_and_the_server_keeps_nothing_unstored() {
    each("mbox", |peer, rt, bin, user| {
        let t = tag(peer, rt);
        let home = temp();
        let mbox = home.path().join("inbox.mbox");
        let state = home.path().join("journals");
        let args = [
            "--mbox",
            mbox.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
            "--delete",
            "-q",
        ];
        let m = [message("b1", user, 1), message("b2", user, 5)];
        peer.deliver(user, &[&m[0]]);
        expect(&t, &fetch(peer, bin, home.path(), user, &args), 0);
        peer.deliver(user, &[&m[1]]);
        expect(&t, &fetch(peer, bin, home.path(), user, &args), 0);
        assert!(peer.held(user).is_empty(), "{t}");
        let text = std::fs::read(&mbox).unwrap();
        // Split at the separators: a "From " line after an empty line.
        let mut want = Vec::new();
        let mut got_rest = Vec::new();
        let mut rest: &[u8] = &text;
        for msg in &m {
            assert!(
                rest.starts_with(b"From MAILER-DAEMON "),
                "{t}: {}",
                String::from_utf8_lossy(&text)
            );
            let eol = rest.iter().position(|&b| b == b'\n').unwrap();
            let body = mboxrd(msg);
            got_rest.push(rest[eol + 1..eol + 1 + body.len().min(rest.len() - eol - 1)].to_vec());
            rest = &rest[(eol + 1 + body.len()).min(rest.len())..];
            want.push(body);
        }
        assert_eq!(got_rest, want, "{t}");
        assert!(rest.is_empty(), "{t}: nothing more");
    });
}

#[test]
fn mda_gets_each_message_on_stdin_and_its_exit_status_decides_65_or_75() {
    each("mda", |peer, rt, bin, user| {
        let t = tag(peer, rt);
        let home = temp();
        let out = home.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let state = home.path().join("journals");
        let state_arg = state.to_str().unwrap();
        let m = [message("d1", user, 1), message("d2", user, 2)];
        let uids = peer.deliver(user, &[&m[0], &m[1]]);
        let deliver = format!("cat > '{}'/\"$POP3_UID\"", out.display());
        let args = [
            "--mda",
            &deliver,
            "--state-dir",
            state_arg,
            "--delete",
            "-q",
        ];
        expect(&t, &fetch(peer, bin, home.path(), user, &args), 0);
        for (uid, msg) in uids.iter().zip(&m) {
            assert_eq!(&std::fs::read(out.join(uid)).unwrap(), msg, "{t}: {uid}");
        }
        assert!(peer.held(user).is_empty(), "{t}");

        let later = message("d3", user, 1);
        let uid = peer.deliver(user, &[&later]);
        let tempfail = [
            "--mda",
            "exit 75",
            "--state-dir",
            state_arg,
            "--delete",
            "-q",
        ];
        expect(
            &format!("{t}: MDA 75"),
            &fetch(peer, bin, home.path(), user, &tempfail),
            75,
        );
        assert_eq!(peer.held(user), uid, "{t}: kept after a temporary failure");
        let refuse = [
            "--mda",
            "exit 1",
            "--state-dir",
            state_arg,
            "--delete",
            "-q",
        ];
        expect(
            &format!("{t}: MDA 1"),
            &fetch(peer, bin, home.path(), user, &refuse),
            65,
        );
        assert_eq!(peer.held(user), uid, "{t}: kept when refused");
    });
}

/// What the LMTP server of [`lmtp_once`] received: recipients, messages.
type LmtpReceived = (Vec<String>, Vec<Vec<u8>>);

/// An LMTP server for one connection: answers everything with success and
/// gives back (recipients, messages as sent before the final dot).
fn lmtp_once() -> (u16, thread::JoinHandle<LmtpReceived>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut w = stream.try_clone().unwrap();
        let mut r = BufReader::new(stream);
        let (mut rcpts, mut messages) = (Vec::new(), Vec::new());
        w.write_all(b"220 test LMTP\r\n").unwrap();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap() == 0 {
                break;
            }
            let upper = line.to_ascii_uppercase();
            let reply: &[u8] = if upper.starts_with("LHLO") {
                b"250-test\r\n250 PIPELINING\r\n"
            } else if upper.starts_with("RCPT TO:") {
                rcpts.push(line.trim_end().to_owned());
                b"250 2.1.5 ok\r\n"
            } else if upper.starts_with("DATA") {
                w.write_all(b"354 go\r\n").unwrap();
                let mut data = Vec::new();
                loop {
                    let mut l = Vec::new();
                    r.read_until(b'\n', &mut l).unwrap();
                    if l == b".\r\n" || l.is_empty() {
                        break;
                    }
                    data.extend_from_slice(&l);
                }
                messages.push(data);
                b"250 2.0.0 stored\r\n"
            } else if upper.starts_with("QUIT") {
                w.write_all(b"221 bye\r\n").unwrap();
                break;
            } else {
                b"250 ok\r\n"
            };
            w.write_all(reply).unwrap();
        }
        (rcpts, messages)
    });
    (port, handle)
}

/// `m` dot-stuffed with CRLF line ends, as SMTP and LMTP carry it.
fn dot_stuffed(m: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in crlf_lines(m).split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b".") {
            out.push(b'.');
        }
        out.extend_from_slice(line);
    }
    out
}

#[test]
fn lmtp_gets_each_message_dot_stuffed_for_the_urls_user() {
    each("lmtp", |peer, rt, bin, user| {
        let t = tag(peer, rt);
        let home = temp();
        let (port, server) = lmtp_once();
        let lmtp = format!("127.0.0.1:{port}");
        let state = home.path().join("journals");
        let m = [message("t1", user, 1), message("t2", user, 3)];
        peer.deliver(user, &[&m[0], &m[1]]);
        let args = [
            "--lmtp",
            &lmtp,
            "--state-dir",
            state.to_str().unwrap(),
            "--delete",
            "-q",
        ];
        expect(&t, &fetch(peer, bin, home.path(), user, &args), 0);
        let (rcpts, got) = server.join().unwrap();
        assert_eq!(rcpts, vec![format!("RCPT TO:<{user}>"); 2], "{t}");
        assert_eq!(got, [dot_stuffed(&m[0]), dot_stuffed(&m[1])], "{t}");
        assert!(peer.held(user).is_empty(), "{t}");
    });
}

// ---------------------------------------------------- passwords, accounts

fn private_file(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn the_password_comes_from_a_command_a_variable_netrc_or_pop3_password() {
    each("pass", |peer, rt, bin, user| {
        let t = tag(peer, rt);
        let home = temp();
        let port = peer.addr().port();
        let url = peer.url(user);
        let config = home.path().join("fetch.toml");
        let sources = [
            (
                "password_command",
                format!("password_command = \"printf '%s\\\\n' {PASSWORD}\""),
            ),
            (
                "password_env",
                "password_env = \"MY_POP_SECRET\"".to_owned(),
            ),
            ("netrc", String::new()),
        ];
        let netrc = home.path().join("netrc");
        private_file(
            &netrc,
            &format!("machine 127.0.0.1 login {user} password {PASSWORD}\n"),
        );
        for (i, (source, key)) in sources.iter().enumerate() {
            let m = message(&format!("p{i}"), user, 1);
            peer.deliver(user, &[&m]);
            let md = home.path().join(format!("md-{source}"));
            private_file(
                &config,
                &format!(
                    "[account.a]\nurl = \"{url}\"\nmaildir = \"{}\"\ndelete = true\n{key}\n",
                    md.display()
                ),
            );
            let mut cmd = command(bin, home.path());
            cmd.env_remove("POP3_PASSWORD")
                .env("MY_POP_SECRET", PASSWORD)
                .env("NETRC", &netrc)
                .arg("--config")
                .arg(&config)
                .arg("-q");
            if *source != "netrc" {
                // Only the key's source may answer.
                cmd.env("NETRC", home.path().join("no-netrc"));
            }
            expect(&format!("{t}: {source}"), &run(cmd), 0);
            assert_eq!(maildir(&md), sorted(&[&m]), "{t}: {source}");
        }
        // The URL form reads POP3_PASSWORD.
        let m = message("p9", user, 1);
        peer.deliver(user, &[&m]);
        let md = home.path().join("md-env");
        let args = ["--maildir", md.to_str().unwrap(), "--delete", "-q"];
        expect(
            &format!("{t}: POP3_PASSWORD"),
            &fetch(peer, bin, home.path(), user, &args),
            0,
        );
        assert_eq!(maildir(&md), sorted(&[&m]), "{t}");
        assert!(peer.held(user).is_empty(), "{t}");

        // No source at all (standard input is no terminal): status 78.
        let mut cmd = command(bin, home.path());
        cmd.env_remove("POP3_PASSWORD")
            .arg(format!("pop://{user}@127.0.0.1:{port}"))
            .arg("--maildir")
            .arg(home.path().join("md-none"));
        expect(&format!("{t}: no password"), &run(cmd), 78);
    });
}

#[test]
fn account_picks_accounts_of_a_configuration_and_without_it_every_one_runs() {
    for peer in [Peer::Dovecot, Peer::Ours] {
        for (rt, bin) in BINARIES.iter() {
            let t = tag(peer, rt);
            let (one, two) = (user("acct1", rt), user("acct2", rt));
            let home = temp();
            let md1 = home.path().join("md1");
            let md2 = home.path().join("md2");
            let m1 = message("c1", &one, 1);
            let m2 = message("c2", &two, 2);
            peer.deliver(&one, &[&m1]);
            let uids2 = peer.deliver(&two, &[&m2]);
            let config = home.path().join("fetch.toml");
            private_file(
                &config,
                &format!(
                    "[defaults]\ndelete = true\npassword_env = \"POP3_PASSWORD\"\n\n\
                     [account.one]\nurl = \"{}\"\nmaildir = \"{}\"\n\n\
                     [account.two]\nurl = \"{}\"\nmaildir = \"{}\"\ndelete = false\n",
                    peer.url(&one),
                    md1.display(),
                    peer.url(&two),
                    md2.display()
                ),
            );
            let mut cmd = command(bin, home.path());
            cmd.arg("--config")
                .arg(&config)
                .args(["--account", "one", "-q"]);
            expect(&t, &run(cmd), 0);
            assert_eq!(maildir(&md1), sorted(&[&m1]), "{t}");
            assert!(!md2.exists(), "{t}: account two did not run");
            assert!(peer.held(&one).is_empty(), "{t}: delete from [defaults]");
            assert_eq!(peer.held(&two), uids2, "{t}");
            let mut cmd = command(bin, home.path());
            cmd.arg("--config").arg(&config).arg("-q");
            expect(&t, &run(cmd), 0);
            assert_eq!(maildir(&md1), sorted(&[&m1]), "{t}: nothing twice");
            assert_eq!(maildir(&md2), sorted(&[&m2]), "{t}");
            assert_eq!(peer.held(&two), uids2, "{t}: its own delete = false wins");
        }
    }
}

// ---------------------------------------------------------- exit statuses

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn exit_statuses_75_refused_74_local_io_78_configuration_and_the_worst_account_wins() {
    each("codes", |peer, rt, bin, user| {
        let t = tag(peer, rt);
        let home = temp();
        let m = message("x1", user, 1);
        let uids = peer.deliver(user, &[&m]);
        // A refused connection: temporary.
        let refused = format!("pop://{user}@127.0.0.1:{}", closed_port());
        let mut cmd = command(bin, home.path());
        cmd.arg(&refused)
            .arg("--maildir")
            .arg(home.path().join("md0"));
        let r = run(cmd);
        expect(&format!("{t}: refused"), &r, 75);
        assert!(r.stderr.to_lowercase().contains("refused"), "{t}: {r:#?}");
        // A Maildir that cannot be made (under a plain file): local I/O.
        let file = home.path().join("plain-file");
        std::fs::write(&file, b"").unwrap();
        let r = fetch(
            peer,
            bin,
            home.path(),
            user,
            &["--maildir", file.join("md").to_str().unwrap()],
        );
        expect(&format!("{t}: local I/O"), &r, 74);
        // A bad key: configuration, naming the file, the line and the key.
        let config = home.path().join("bad.toml");
        private_file(
            &config,
            "[account.a]\nurl = \"pop://a@127.0.0.1\"\nmaildir = \"/tmp/x\"\ndelet = true\n",
        );
        let mut cmd = command(bin, home.path());
        cmd.arg("--config").arg(&config);
        let r = run(cmd);
        expect(&format!("{t}: configuration"), &r, 78);
        assert!(r.stderr.contains("bad.toml:4"), "{t}: {r:#?}");
        assert!(peer.held(user) == uids, "{t}: nothing deleted");

        // Several accounts: the worst status wins (75 < 65 < 74).
        let md = home.path().join("md");
        let out = home.path().join("mda-out");
        let write = |accounts: &[&str]| {
            let mut text =
                String::from("[defaults]\ndelete = true\npassword_env = \"POP3_PASSWORD\"\n");
            for a in accounts {
                text.push_str(&match *a {
                    "ok" => format!("[account.ok]\nurl = \"{}\"\nmaildir = \"{}\"\n", peer.url(user), md.display()),
                    "refused" => format!("[account.refused]\nurl = \"{refused}\"\nmaildir = \"{}\"\n", md.display()),
                    "mda_refuses" => format!(
                        "[account.mda_refuses]\nurl = \"{}\"\nmda = \"exit 1\"\nstate_dir = \"{}\"\n",
                        peer.url(user),
                        out.display()
                    ),
                    "io" => format!("[account.io]\nurl = \"{}\"\nmaildir = \"{}\"\n", peer.url(user), file.join("md").display()),
                    _ => unreachable!(),
                });
                text.push('\n');
            }
            private_file(&config, &text);
            let mut cmd = command(bin, home.path());
            cmd.arg("--config").arg(&config).arg("--json");
            run(cmd)
        };
        let r = write(&["mda_refuses", "refused"]);
        expect(&format!("{t}: 65 and 75"), &r, 65);
        assert_eq!(peer.held(user), uids, "{t}: refused by the MDA: kept");
        let r = write(&["io", "mda_refuses", "refused"]);
        expect(&format!("{t}: 74, 65 and 75"), &r, 74);
        let codes: Vec<i64> = r
            .stdout
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["exit_code"]
                    .as_i64()
                    .unwrap()
            })
            .collect();
        assert_eq!(
            codes,
            [74, 65, 75],
            "{t}: one report per account, in name order"
        );
        let r = write(&["ok", "refused"]);
        expect(&format!("{t}: 0 and 75"), &r, 75);
        assert_eq!(
            maildir(&md),
            sorted(&[&m]),
            "{t}: the good account still ran"
        );
        assert!(peer.held(user).is_empty(), "{t}");
    });
}

#[test]
fn a_wrong_password_exits_77_and_is_the_worst_next_to_a_refused_connection() {
    // Against our server only: against Dovecot, whose penalty after a
    // failed login grows with each failure from an address, these runs
    // take over three minutes. A single wrong login against Dovecot:
    // `a_wrong_password_against_dovecot_exits_77_and_the_login_ends_at_the_refused_password`.
    let m = message("w1", "wrong", 1);
    let messages = vec![("w1".to_owned(), m.clone())];
    for (name, _) in [("Ours", ())] {
        for (rt, bin) in BINARIES.iter() {
            let t = format!("{name} / {rt}");
            let wrong = format!("wrong-{rt}");
            let dovecot = (name == "Dovecot")
                .then(|| Dovecot::start(&[(wrong.as_str(), PASSWORD, messages.as_slice())]));
            let (u, addr) = match &dovecot {
                Some(d) => (wrong.clone(), d.pop3_addr()),
                None => (user("codes", rt), *OURS),
            };
            let home = temp();
            let url = format!("pop://{u}@127.0.0.1:{}", addr.port());
            let md = home.path().join("md");
            let mut cmd = command(bin, home.path());
            cmd.env("POP3_PASSWORD", "not-the-password")
                .arg(&url)
                .arg("--maildir")
                .arg(&md);
            let r = run(cmd);
            expect(&format!("{t}: wrong password"), &r, 77);
            assert!(maildir(&md).is_empty(), "{t}");
            let config = home.path().join("fetch.toml");
            private_file(
                &config,
                &format!(
                    "[account.a]\nurl = \"{url}\"\nmaildir = \"{}\"\npassword_command = \"echo wrong\"\n\n\
                     [account.b]\nurl = \"pop://x@127.0.0.1:{}\"\nmaildir = \"{}\"\npassword_env = \"POP3_PASSWORD\"\n",
                    md.display(),
                    closed_port(),
                    md.display()
                ),
            );
            let mut cmd = command(bin, home.path());
            cmd.arg("--config").arg(&config).arg("-q");
            let r = run(cmd);
            expect(&format!("{t}: 77 and 75"), &r, 77);
            if let Some(d) = &dovecot {
                assert_eq!(d.stored(&wrong).len(), 1, "{t}: nothing deleted");
            }
        }
    }
}

// -------------------------------------------------------------- output

#[test]
fn trace_file_holds_the_clients_side_and_never_the_password() {
    each("trace", |peer, rt, bin, user| {
        let t = tag(peer, rt);
        let home = temp();
        let m = message("r1", user, 1);
        peer.deliver(user, &[&m]);
        for auth in ["USER", "PLAIN", "SCRAM-SHA-256"] {
            let trace = home.path().join(format!("trace-{auth}"));
            let md = home.path().join(format!("md-{auth}"));
            let args = [
                "--maildir",
                md.to_str().unwrap(),
                "--auth",
                auth,
                "--insecure-cleartext-login",
                "--trace",
                trace.to_str().unwrap(),
                "-q",
            ];
            expect(
                &format!("{t}: {auth}"),
                &fetch(peer, bin, home.path(), user, &args),
                0,
            );
            assert_eq!(maildir(&md), sorted(&[&m]), "{t}: {auth}");
            let mode = std::fs::metadata(&trace).unwrap().permissions().mode();
            assert_eq!(
                mode & 0o777,
                0o600,
                "{t}: {auth}: readable by its owner only"
            );
            let text = std::fs::read_to_string(&trace).unwrap();
            assert!(
                !text.contains(PASSWORD),
                "{t}: {auth}: the password leaked:\n{text}"
            );
            assert!(text.contains("C: UIDL"), "{t}: {auth}:\n{text}");
            assert!(text.contains("C: QUIT"), "{t}: {auth}:\n{text}");
            assert!(
                text.lines().any(|l| l.starts_with("S: ")),
                "{t}: {auth}:\n{text}"
            );
            let secret_line = match auth {
                "USER" => "C: PASS ***".to_owned(),
                // The whole AUTH line and every exchange after it.
                _ => "C: AUTH ***".to_owned(),
            };
            assert!(text.contains(&secret_line), "{t}: {auth}:\n{text}");
            assert!(
                text.lines().any(|l| l.ends_with("***")),
                "{t}: {auth}:\n{text}"
            );
        }
    });
}

/// The octets `fetch` counts for a message: as sent, with CRLF line ends.
fn wire_len(m: &[u8]) -> u64 {
    crlf_lines(m).len() as u64
}

#[test]
fn json_prints_one_report_per_account_with_its_counts_and_what_was_left() {
    each("json", |peer, rt, bin, user| {
        let t = tag(peer, rt);
        let home = temp();
        let md = home.path().join("md");
        let small = [message("j1", user, 1), message("j2", user, 2)];
        let big = message("j3", user, 300);
        let uids = peer.deliver(user, &[&small[0], &small[1], &big]);
        let config = home.path().join("fetch.toml");
        let refused = closed_port();
        private_file(
            &config,
            &format!(
                "[account.good]\nurl = \"{}\"\nmaildir = \"{}\"\npassword_env = \"POP3_PASSWORD\"\n\
                 delete = true\nmax_size = 2000\n\n\
                 [account.gone]\nurl = \"pop://{user}@127.0.0.1:{refused}\"\nmaildir = \"{}\"\n\
                 password_env = \"POP3_PASSWORD\"\n",
                peer.url(user),
                md.display(),
                md.display()
            ),
        );
        let mut cmd = command(bin, home.path());
        cmd.arg("--config").arg(&config).arg("--json");
        let r = run(cmd);
        expect(&t, &r, 75);
        assert!(
            !r.stderr.contains(" new ("),
            "{t}: no summary with --json: {r:#?}"
        );
        let reports: Vec<serde_json::Value> = r
            .stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{t}: {e}: {l}")))
            .collect();
        assert_eq!(reports.len(), 2, "{t}: {r:#?}");
        let good = &reports[1];
        assert_eq!(good["account"], "good", "{t}: {good}");
        assert_eq!(good["exit"], "Ok", "{t}: {good}");
        assert_eq!(good["exit_code"], 0, "{t}: {good}");
        assert_eq!(good["listed"], 3, "{t}: {good}");
        assert_eq!(good["saved"], 2, "{t}: {good}");
        assert_eq!(good["already_stored"], 0, "{t}: {good}");
        assert_eq!(good["deleted"], 2, "{t}: {good}");
        assert_eq!(
            good["octets"],
            wire_len(&small[0]) + wire_len(&small[1]),
            "{t}: {good}"
        );
        assert_eq!(good["marked_seen"], 0, "{t}: {good}");
        assert_eq!(good["kept"], 0, "{t}: {good}");
        assert_eq!(good["deferred"], 0, "{t}: {good}");
        let left = good["left_on_server"].as_array().unwrap();
        assert_eq!(left.len(), 1, "{t}: {good}");
        assert_eq!(left[0]["message"], 3, "{t}: {good}");
        assert_eq!(left[0]["reason"], "over max_size", "{t}: {good}");
        assert!(left[0]["size"].as_u64().unwrap() > 2000, "{t}: {good}");
        assert!(good.get("error").is_none(), "{t}: {good}");
        assert_eq!(peer.held(user), uids[2..], "{t}");
        assert_eq!(maildir(&md), sorted(&[&small[0], &small[1]]), "{t}");

        let gone = &reports[0];
        assert_eq!(gone["account"], "gone", "{t}: {gone}");
        assert_eq!(gone["exit_code"], 75, "{t}: {gone}");
        assert!(
            gone["error"]
                .as_str()
                .unwrap()
                .to_lowercase()
                .contains("refused"),
            "{t}: {gone}"
        );
    });
}

#[test]
fn quiet_prints_nothing_on_success_and_verbose_a_line_per_message() {
    each("output", |peer, rt, bin, user| {
        let t = tag(peer, rt);
        let home = temp();
        let m = [message("q1", user, 1), message("q2", user, 2)];
        peer.deliver(user, &[&m[0], &m[1]]);
        let md = |n: &str| home.path().join(n).to_str().unwrap().to_owned();

        let quiet = fetch(
            peer,
            bin,
            home.path(),
            user,
            &["--maildir", &md("quiet"), "-q"],
        );
        expect(&t, &quiet, 0);
        assert_eq!(
            (quiet.stdout.as_str(), quiet.stderr.as_str()),
            ("", ""),
            "{t}: -q"
        );
        assert_eq!(maildir(Path::new(&md("quiet"))).len(), 2, "{t}");

        let plain = fetch(peer, bin, home.path(), user, &["--maildir", &md("plain")]);
        expect(&t, &plain, 0);
        assert_eq!(plain.stdout, "", "{t}");
        let lines: Vec<&str> = plain.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{t}: one summary line: {plain:#?}");
        assert!(lines[0].contains("2 new ("), "{t}: {plain:#?}");
        assert!(
            lines[0].contains("0 already stored, 0 deleted"),
            "{t}: {plain:#?}"
        );

        let verbose = fetch(
            peer,
            bin,
            home.path(),
            user,
            &["--maildir", &md("verbose"), "--delete", "-v"],
        );
        expect(&t, &verbose, 0);
        let stored: Vec<&str> = verbose
            .stderr
            .lines()
            .filter(|l| l.contains("): stored"))
            .collect();
        assert_eq!(
            stored.len(),
            2,
            "{t}: a line per stored message: {verbose:#?}"
        );
        for (i, msg) in m.iter().enumerate() {
            let line = format!("message {} ({} octets): stored", i + 1, wire_len(msg));
            assert!(
                verbose.stderr.contains(&line),
                "{t}: {line:?} in {verbose:#?}"
            );
            let deleted = format!("message {}: deleted", i + 1);
            assert!(
                verbose.stderr.contains(&deleted),
                "{t}: {deleted:?} in {verbose:#?}"
            );
        }
        assert!(
            verbose.stderr.contains("2 new ("),
            "{t}: and the summary: {verbose:#?}"
        );
        assert!(
            !verbose.stderr.contains("C: "),
            "{t}: -v alone shows no protocol: {verbose:#?}"
        );
        assert!(
            !verbose.stderr.contains('\x1b'),
            "{t}: no colours into a pipe: {verbose:#?}"
        );
        assert!(peer.held(user).is_empty(), "{t}");

        // -q still prints errors.
        let mut cmd = command(bin, home.path());
        cmd.arg(format!("pop://{user}@127.0.0.1:{}", closed_port()))
            .args(["--maildir", &md("err"), "-q"]);
        let err = run(cmd);
        expect(&t, &err, 75);
        assert!(!err.stderr.is_empty(), "{t}: -q prints the error");
    });
}

// ------------------------------------------------------- TLS, the wire

#[test]
fn insecure_fetches_over_pop3s_and_stls_from_a_private_ca_and_without_it_or_ca_file_exits_69() {
    // Dovecot only: our server of this file speaks no TLS. Dovecot's
    // certificate is issued by a CA of its own, which no trust store holds.
    for (rt, bin) in BINARIES.iter() {
        let u = user("tls", rt);
        let home = temp();
        let m = [message("i1", &u, 1), message("i2", &u, 2)];
        let uids = Peer::Dovecot.deliver(&u, &[&m[0], &m[1]]);
        let pops = format!("pops://{u}@127.0.0.1:{}", DOVECOT.pop3s_addr().port());
        let stls = Peer::Dovecot.url(&u);
        for (how, url, extra) in [
            ("POP3S", pops, &[][..]),
            ("STLS", stls, &["--starttls"][..]),
        ] {
            let t = format!("Dovecot / {rt} / {how}");
            let refused = home.path().join(format!("md-{how}-refused"));
            let mut cmd = command(bin, home.path());
            cmd.arg(&url).args(extra).arg("--maildir").arg(&refused);
            let r = run(cmd);
            expect(&format!("{t}: an untrusted certificate"), &r, 69);
            let hint = r
                .stderr
                .lines()
                .find(|l| l.starts_with("hint: "))
                .unwrap_or_else(|| panic!("{t}: no hint: {r:#?}"));
            assert!(hint.contains("--ca-file"), "{t}: {r:#?}");
            assert!(maildir(&refused).is_empty(), "{t}: nothing fetched");

            let md = home.path().join(format!("md-{how}"));
            let mut cmd = command(bin, home.path());
            cmd.arg(&url)
                .args(extra)
                .arg("--insecure")
                .arg("--maildir")
                .arg(&md)
                .arg("-q");
            expect(&format!("{t}: --insecure"), &run(cmd), 0);
            assert_eq!(maildir(&md), sorted(&[&m[0], &m[1]]), "{t}: --insecure");
            assert_eq!(Peer::Dovecot.held(&u), uids, "{t}: nothing deleted");
        }
    }
}

/// The client's commands of a transcript, each with whether a complete
/// reply (its last event) came between it and the command before.
fn commands_after_replies(transcript: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    // The greeting is the first reply.
    let mut replied = false;
    for line in transcript.lines() {
        if let Some(command) = line.strip_prefix("C: ") {
            out.push((command.to_owned(), replied));
            replied = false;
        } else if let Some(event) = line.strip_prefix("S: ") {
            // A reply ends with the greeting, a status line, a listing's
            // or a body's end, a capability list or a SASL challenge.
            let ends = [
                "Greeting",
                "Ok",
                "Err",
                "Stat",
                "ListingEnd",
                "BodyEnd",
                "Capabilities",
                "SaslWork",
            ]
            .iter()
            .any(|e| event.starts_with(e));
            replied |= ends;
        }
    }
    out
}

#[test]
fn no_pipelining_stores_every_message_and_writes_no_command_before_the_last_reply() {
    each("pipe", |peer, rt, bin, user| {
        let t = tag(peer, rt);
        let home = temp();
        let m: Vec<Vec<u8>> = (1..=3)
            .map(|i| message(&format!("w{i}"), user, i * 7))
            .collect();
        let all: Vec<&[u8]> = m.iter().map(|v| v.as_slice()).collect();
        // Pipelined (the default) first: the check below sees it.
        peer.deliver(user, &all);
        let trace = home.path().join("trace-pipelined");
        let md = home.path().join("md-pipelined");
        let args = [
            "--maildir",
            md.to_str().unwrap(),
            "--trace",
            trace.to_str().unwrap(),
            // USER and PASS: every exchange of the login is in the
            // transcript (SCRAM's last one is not).
            "--auth",
            "USER",
            "--insecure-cleartext-login",
            "-q",
        ];
        expect(&t, &fetch(peer, bin, home.path(), user, &args), 0);
        assert_eq!(maildir(&md), sorted(&all), "{t}: pipelined");
        let text = std::fs::read_to_string(&trace).unwrap();
        assert!(
            commands_after_replies(&text).iter().any(|(_, r)| !r),
            "{t}: by default some command goes before the last reply:\n{text}"
        );

        let trace = home.path().join("trace");
        let md = home.path().join("md");
        let args = [
            "--maildir",
            md.to_str().unwrap(),
            "--no-pipelining",
            "--delete",
            "--trace",
            trace.to_str().unwrap(),
            // USER and PASS: every exchange of the login is in the
            // transcript (SCRAM's last one is not).
            "--auth",
            "USER",
            "--insecure-cleartext-login",
            "-q",
        ];
        expect(&t, &fetch(peer, bin, home.path(), user, &args), 0);
        assert_eq!(maildir(&md), sorted(&all), "{t}: every message");
        assert!(peer.held(user).is_empty(), "{t}: and deleted");
        let text = std::fs::read_to_string(&trace).unwrap();
        let commands = commands_after_replies(&text);
        for (command, replied) in &commands {
            assert!(
                replied,
                "{t}: {command:?} written before the reply before it:\n{text}"
            );
        }
        for verb in ["RETR", "DELE"] {
            let n = commands.iter().filter(|(c, _)| c.starts_with(verb)).count();
            assert_eq!(n, 3, "{t}: {verb}:\n{text}");
        }
    });
}

#[test]
fn crlf_keeps_the_wires_line_ends_in_the_maildir_and_the_default_is_lf() {
    each("crlf", |peer, rt, bin, user| {
        let t = tag(peer, rt);
        let home = temp();
        let m = [message("f1", user, 1), message("f2", user, 30)];
        peer.deliver(user, &[&m[0], &m[1]]);
        let crlf = home.path().join("md-crlf");
        let lf = home.path().join("md-lf");
        expect(
            &t,
            &fetch(
                peer,
                bin,
                home.path(),
                user,
                &["--maildir", crlf.to_str().unwrap(), "--crlf", "-q"],
            ),
            0,
        );
        let want: Vec<Vec<u8>> = m.iter().map(|x| crlf_lines(x)).collect();
        assert_eq!(
            maildir(&crlf),
            sorted(&[&want[0], &want[1]]),
            "{t}: --crlf stores them as sent"
        );
        expect(
            &t,
            &fetch(
                peer,
                bin,
                home.path(),
                user,
                &["--maildir", lf.to_str().unwrap(), "-q"],
            ),
            0,
        );
        assert_eq!(maildir(&lf), sorted(&[&m[0], &m[1]]), "{t}: LF by default");
    });
}

/// The one JSON report of a run.
fn report(t: &str, r: &Run) -> serde_json::Value {
    serde_json::from_str(r.stdout.trim()).unwrap_or_else(|e| panic!("{t}: {e}: {r:#?}"))
}

#[test]
fn journal_account_carries_the_journal_over_to_another_url_so_nothing_comes_twice() {
    each("jacct", |peer, rt, bin, user| {
        let t = tag(peer, rt);
        let home = temp();
        let md = home.path().join("md");
        let md_arg = md.to_str().unwrap();
        let port = peer.addr().port();
        let old = [message("j1", user, 1), message("j2", user, 2)];
        peer.deliver(user, &[&old[0], &old[1]]);
        let r = fetch(
            peer,
            bin,
            home.path(),
            user,
            &["--maildir", md_arg, "--json"],
        );
        expect(&t, &r, 0);
        assert_eq!(report(&t, &r)["saved"], 2, "{t}: {r:#?}");
        let new = message("j3", user, 3);
        peer.deliver(user, &[&new]);
        // The same maildrop by another name: another account to the
        // journal, but for --journal-account naming the first.
        let moved = format!("pop://{user}@localhost:{port}");
        let first = format!("{user}@127.0.0.1:{port}");
        let mut cmd = command(bin, home.path());
        cmd.arg(&moved)
            .args(["--maildir", md_arg, "--journal-account", &first, "--json"]);
        let r = run(cmd);
        expect(&t, &r, 0);
        let got = report(&t, &r);
        assert_eq!(got["saved"], 1, "{t}: only the new one: {got}");
        assert_eq!(got["listed"], 3, "{t}: {got}");
        assert_eq!(
            maildir(&md),
            sorted(&[&old[0], &old[1], &new]),
            "{t}: each once"
        );
        // Without it the new name has a journal of its own, empty.
        let mut cmd = command(bin, home.path());
        cmd.arg(&moved).args(["--maildir", md_arg, "--json"]);
        let r = run(cmd);
        expect(&t, &r, 0);
        let got = report(&t, &r);
        assert_eq!(got["saved"], 3, "{t}: the control fetches all: {got}");
    });
}

// ------------------------------------------------------ timeouts, locks

/// Whether process `pid` is gone (or a zombie nobody reaped yet).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // "PID (COMM) STATE ...": COMM may hold spaces and parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

#[test]
fn mda_timeout_kills_a_hanging_mda_with_its_children_and_exits_75_deleting_nothing() {
    each("mdatime", |peer, rt, bin, user| {
        let t = tag(peer, rt);
        let home = temp();
        let m = message("z1", user, 1);
        let uids = peer.deliver(user, &[&m]);
        let pids = home.path().join("pids");
        // The MDA and a child of its own, both waiting far longer than the
        // timeout; their PIDs written before they wait.
        let mda = format!(
            "echo $$ > '{p}.tmp'; sleep 600 & echo $! >> '{p}.tmp'; mv '{p}.tmp' '{p}'; wait",
            p = pids.display()
        );
        let config = home.path().join("fetch.toml");
        private_file(
            &config,
            &format!(
                "[account.a]\nurl = \"{}\"\nmda = \"{}\"\nmda_timeout = 1\nstate_dir = \"{}\"\n\
                 delete = true\npassword_env = \"POP3_PASSWORD\"\n",
                peer.url(user),
                mda.replace('\\', "\\\\").replace('"', "\\\""),
                home.path().join("state").display()
            ),
        );
        let mut cmd = command(bin, home.path());
        cmd.arg("--config").arg(&config);
        let r = run(cmd);
        expect(&t, &r, 75);
        assert!(
            r.stderr.contains("did not finish within 1 s"),
            "{t}: {r:#?}"
        );
        assert_eq!(peer.held(user), uids, "{t}: nothing deleted");
        let pids: Vec<u32> = std::fs::read_to_string(&pids)
            .unwrap_or_else(|e| panic!("{t}: the MDA never ran: {e}: {r:#?}"))
            .lines()
            .map(|l| l.parse().unwrap())
            .collect();
        assert_eq!(pids.len(), 2, "{t}");
        // SIGKILL is sent before `fetch` exits; the processes end a moment
        // later.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !pids.iter().all(|&p| gone(p)) {
            assert!(
                std::time::Instant::now() < deadline,
                "{t}: the MDA lingers: {pids:?}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    });
}

/// A process holding a POSIX record lock (`fcntl`, as mutt takes it) on
/// `path` until dropped; returned once the lock is held.
struct RecordLockHolder(support::ChildGuard);

impl RecordLockHolder {
    fn hold(path: &Path) -> RecordLockHolder {
        support::require_program("python3", "python3");
        let mut cmd = Command::new("python3");
        cmd.arg("-c")
            .arg(
                "import fcntl, sys\n\
                 f = open(sys.argv[1], 'a')\n\
                 fcntl.lockf(f, fcntl.LOCK_EX)\n\
                 print('locked', flush=True)\n\
                 sys.stdin.read()\n",
            )
            .arg(path)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped());
        let mut guard = support::spawn_grouped(cmd).unwrap();
        let stdout = guard.child().stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        assert_eq!(line, "locked\n", "the lock holder failed");
        RecordLockHolder(guard)
    }

    /// Lets go of the lock: the holder reads the end of its input and
    /// exits.
    fn release(mut self) {
        drop(self.0.child().stdin.take());
        let status = self.0.wait().unwrap();
        assert!(status.success(), "the lock holder failed: {status}");
    }
}

#[test]
fn lock_timeout_gives_up_on_a_held_mbox_with_75_deleting_nothing_then_delivers_once_free() {
    each("locktime", |peer, rt, bin, user| {
        let t = tag(peer, rt);
        let home = temp();
        let m = message("y1", user, 2);
        let uids = peer.deliver(user, &[&m]);
        let mbox = home.path().join("inbox.mbox");
        let config = home.path().join("fetch.toml");
        private_file(
            &config,
            &format!(
                "[account.a]\nurl = \"{}\"\nmbox = \"{}\"\nlock_timeout = 1\nstate_dir = \"{}\"\n\
                 delete = true\npassword_env = \"POP3_PASSWORD\"\n",
                peer.url(user),
                mbox.display(),
                home.path().join("state").display()
            ),
        );
        let fetch_config = || {
            let mut cmd = command(bin, home.path());
            cmd.arg("--config").arg(&config);
            run(cmd)
        };
        // Another program's dot-lock, fresh.
        let dot = home.path().join("inbox.mbox.lock");
        std::fs::write(&dot, b"another program\n").unwrap();
        let r = fetch_config();
        expect(&format!("{t}: dot-lock"), &r, 75);
        assert!(r.stderr.contains("is locked"), "{t}: {r:#?}");
        assert_eq!(peer.held(user), uids, "{t}: nothing deleted");
        assert!(!mbox.exists(), "{t}: nothing written");
        assert!(dot.exists(), "{t}: the other program's lock stays");
        std::fs::remove_file(&dot).unwrap();

        // Another program's record lock.
        let holder = RecordLockHolder::hold(&mbox);
        let r = fetch_config();
        expect(&format!("{t}: record lock"), &r, 75);
        assert!(r.stderr.contains("is locked"), "{t}: {r:#?}");
        assert_eq!(peer.held(user), uids, "{t}: nothing deleted");
        assert_eq!(std::fs::read(&mbox).unwrap(), b"", "{t}: nothing written");
        holder.release();

        expect(&format!("{t}: free"), &fetch_config(), 0);
        let text = std::fs::read(&mbox).unwrap();
        let eol = text.iter().position(|&b| b == b'\n').unwrap();
        assert!(text.starts_with(b"From "), "{t}");
        assert_eq!(text[eol + 1..], mboxrd(&m)[..], "{t}: delivered once");
        assert!(peer.held(user).is_empty(), "{t}: then deleted");
    });
}

// ------------------------------------------------ failures of the server

#[test]
fn a_wrong_password_against_dovecot_exits_77_and_the_login_ends_at_the_refused_password() {
    // A Dovecot per runtime: it delays every login from an address after a
    // failed one. Every way is allowed: the automatic login tries
    // SCRAM-SHA-256 first; its [AUTH] refusal may mean a store that cannot
    // serve SCRAM, so PLAIN follows, whose [AUTH] refusal ends the login.
    for (rt, bin) in BINARIES.iter() {
        let u = format!("wrong-{rt}");
        let m = message("w1", &u, 1);
        let messages = vec![("w1".to_owned(), m)];
        let dovecot = Dovecot::start(&[(u.as_str(), PASSWORD, messages.as_slice())]);
        let home = temp();
        let md = home.path().join("md");
        let trace = home.path().join("trace");
        let mut cmd = command(bin, home.path());
        cmd.env("POP3_PASSWORD", "not-the-password")
            .arg(format!(
                "pop://{u}@127.0.0.1:{}",
                dovecot.pop3_addr().port()
            ))
            .arg("--maildir")
            .arg(&md)
            .arg("--insecure-cleartext-login")
            .arg("--trace")
            .arg(&trace);
        let r = run(cmd);
        expect(&format!("{rt}: wrong password"), &r, 77);
        assert!(r.stderr.contains("[AUTH]"), "{rt}: {r:#?}");
        assert!(maildir(&md).is_empty(), "{rt}");
        assert_eq!(dovecot.stored(&u).len(), 1, "{rt}: nothing deleted");
        let text = std::fs::read_to_string(&trace).unwrap();
        let logins: Vec<&str> = text
            .lines()
            .filter(|l| {
                ["C: AUTH ", "C: PASS ", "C: APOP ", "C: USER "]
                    .iter()
                    .any(|c| l.starts_with(c))
            })
            .collect();
        assert_eq!(logins, ["C: AUTH ***", "C: AUTH ***"], "{rt}:\n{text}");
        // Nothing but QUIT after the second refusal.
        let last_refusal = text.rfind("[AUTH]").unwrap();
        let after: Vec<&str> = text[last_refusal..]
            .lines()
            .filter(|l| l.starts_with("C: ") && *l != "C: QUIT")
            .collect();
        assert!(
            after.is_empty(),
            "{rt}: {after:?} after the refusal:\n{text}"
        );
        assert!(
            !text[last_refusal..].contains("trying the next way"),
            "{rt}: the log says the login goes on:\n{text}"
        );
        let log = dovecot.log();
        assert!(
            log.contains("auth failed, 2 attempts")
                && log.contains(&format!("user=<{u}>, method=PLAIN")),
            "{rt}: Dovecot counted other attempts:\n{log}"
        );
        assert!(!log.contains("3 attempts"), "{rt}:\n{log}");
    }
}

/// A server that greets, then answers every line with `reply` until the
/// client hangs up; gives back the lines it read.
fn broken_server(reply: &'static [u8]) -> (u16, thread::JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut w = stream.try_clone().unwrap();
        let mut r = BufReader::new(stream);
        let mut lines = Vec::new();
        w.write_all(b"+OK ready\r\n").unwrap();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            lines.push(line.trim_end().to_owned());
            if w.write_all(reply).is_err() {
                break;
            }
        }
        lines
    });
    (port, handle)
}

#[test]
fn a_server_answering_capa_with_no_status_exits_76_before_any_login() {
    // Dovecot never breaks the protocol: a fake server answers every
    // command with a line that is neither +OK nor -ERR.
    for (rt, bin) in BINARIES.iter() {
        let home = temp();
        let (port, server) = broken_server(b"HELLO THERE\r\n");
        let md = home.path().join("md");
        let mut cmd = command(bin, home.path());
        cmd.arg(format!("pop://someone@127.0.0.1:{port}"))
            .arg("--insecure-cleartext-login")
            .arg("--maildir")
            .arg(&md);
        let r = run(cmd);
        let lines = server.join().unwrap();
        expect(&format!("{rt}: protocol"), &r, 76);
        assert!(r.stderr.contains("malformed reply"), "{rt}: {r:#?}");
        assert_eq!(lines, ["CAPA"], "{rt}: no login after the broken reply");
        assert!(maildir(&md).is_empty(), "{rt}");
    }
}
