//! The `fetch` command line's policies end to end against the blocking
//! server on loopback: size limits, per-session limits, `--all`,
//! `--mark-seen`, deleting after an age; and importing the seen-lists of mpop, getmail and fetchmail
//! after running each of them for real against the same server.
#![cfg(feature = "cli")]

mod support;

use std::path::Path;
use std::process::Command;

use pop3_blocking::fetch::ExitKind;
use support::{Server, fetch, stored};

impl Server {
    /// The messages left in alice's maildrop.
    fn left(&self) -> usize {
        self.store.message_count("alice")
    }
}

#[test]
fn oversized_messages_stay_or_go_unread_as_the_flags_say() {
    let big = "x".repeat(500);
    let server = Server::with(&["small", &big]);
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().join("md");
    assert_eq!(
        fetch(&server, &md, &["--delete", "--max-size", "100"]),
        ExitKind::Ok
    );
    assert_eq!(stored(&md).len(), 1);
    assert_eq!(server.left(), 1, "the big one stays");
    let kind = fetch(
        &server,
        &md,
        &["--delete", "--max-size", "100", "--oversize", "delete"],
    );
    assert_eq!(kind, ExitKind::Ok);
    assert_eq!(server.left(), 0);
    assert_eq!(stored(&md).len(), 1, "deleted unread");
}

#[test]
fn per_session_limits_leave_the_rest_for_the_next_run() {
    let server = Server::with(&["1", "2", "3", "4", "5"]);
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().join("md");
    assert_eq!(
        fetch(&server, &md, &["--delete", "--max-messages", "2"]),
        ExitKind::Ok
    );
    assert_eq!((stored(&md).len(), server.left()), (2, 3));
    assert_eq!(
        fetch(&server, &md, &["--delete", "--max-octets", "1"]),
        ExitKind::Ok
    );
    assert_eq!((stored(&md).len(), server.left()), (3, 2));
}

#[test]
fn mark_seen_then_fetch_downloads_only_newer_mail_and_all_downloads_everything() {
    let server = Server::with(&["old1", "old2"]);
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().join("md");
    assert_eq!(fetch(&server, &md, &["--mark-seen"]), ExitKind::Ok);
    assert!(stored(&md).is_empty());
    assert_eq!(server.left(), 2);
    server
        .store
        .add_message("alice", "Subject: new\r\n\r\nnew\r\n");
    assert_eq!(fetch(&server, &md, &[]), ExitKind::Ok);
    assert_eq!(stored(&md).len(), 1);
    assert!(stored(&md)[0].contains("new"));

    let archive = dir.path().join("archive");
    // A fresh Maildir with the journal of the first: --all fetches it all.
    std::fs::create_dir_all(&archive).unwrap();
    for entry in std::fs::read_dir(&md).unwrap() {
        let entry = entry.unwrap();
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(".pop3-uidl-")
        {
            std::fs::copy(entry.path(), archive.join(entry.file_name())).unwrap();
        }
    }
    assert_eq!(fetch(&server, &archive, &[]), ExitKind::Ok);
    assert!(stored(&archive).is_empty(), "the journal knows them all");
    assert_eq!(fetch(&server, &archive, &["--all"]), ExitKind::Ok);
    assert_eq!(stored(&archive).len(), 3);
}

#[test]
fn delete_after_days_deletes_what_was_first_seen_long_enough_ago() {
    let server = Server::with(&["a", "b"]);
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().join("md");
    assert_eq!(
        fetch(&server, &md, &["--delete-after-days", "3"]),
        ExitKind::Ok
    );
    assert_eq!(
        (stored(&md).len(), server.left()),
        (2, 2),
        "all are younger than 3 days"
    );
    // Backdate the first message's first-seen time in the journal by ten
    // days (the journal keeps the first time it lists).
    let journal = std::fs::read_dir(&md)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with(".pop3-uidl-") && !name.ends_with(".lock")
        })
        .unwrap();
    let text = std::fs::read_to_string(&journal).unwrap();
    let first = text.lines().next().unwrap().to_owned();
    let seen = text
        .lines()
        .find(|l| l.starts_with("seen ") && l.ends_with(&format!(" {first}")))
        .unwrap();
    let secs: u64 = seen.split(' ').nth(1).unwrap().parse().unwrap();
    let old = format!("seen {} {first}\n", secs - 10 * 86_400);
    std::fs::write(&journal, format!("{old}{text}")).unwrap();
    assert_eq!(
        fetch(&server, &md, &["--delete-after-days", "3"]),
        ExitKind::Ok
    );
    assert_eq!(server.left(), 1);
    assert_eq!(stored(&md).len(), 2);
}

// ------------------------------------------------------------ real tools

/// Runs a program that must be installed; fails saying how to get it.
fn run_tool(program: &str, args: &[&str], package: &str) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} ({e}): install it with `apt-get install -y {package}`")
        });
    assert!(
        out.status.success(),
        "{program} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

/// After `tool` fetched (and kept) every message, `fetch --import-seen`
/// downloads none of them, and fetches the one that came after.
fn check_import(server: &Server, dir: &Path, spec: &str) {
    // The tool has exited, but the server may still be ending its session
    // (and holding the maildrop): wait for that, as a later run would.
    server.server.wait_idle();
    let md = dir.join("ours");
    let kind = fetch(server, &md, &["--import-seen", spec]);
    assert_eq!(kind, ExitKind::Ok);
    assert!(stored(&md).is_empty(), "{spec}: fetched again");
    server
        .store
        .add_message("alice", "Subject: later\r\n\r\nlater\r\n");
    assert_eq!(fetch(server, &md, &[]), ExitKind::Ok);
    assert_eq!(stored(&md).len(), 1);
}

#[test]
fn mpop_uidls_import_makes_the_switch_download_nothing_twice() {
    let server = Server::with(&["one", "two", "three"]);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let theirs = d.join("theirs");
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(theirs.join(sub)).unwrap();
    }
    let uidls = d.join("mpop_uidls");
    let rc = d.join("mpoprc");
    private(
        &rc,
        &format!(
            "account a\nhost 127.0.0.1\nport {}\ntls off\nauth user\nuser alice\npassword secret-a\nkeep on\nuidls_file {}\ndelivery maildir {}\n",
            server.port,
            uidls.display(),
            theirs.display()
        ),
    );
    run_tool(
        "mpop",
        &["-q", "-C", &rc.display().to_string(), "a"],
        "mpop",
    );
    assert_eq!(stored(&theirs).len(), 3);
    check_import(&server, d, &format!("mpop:{}", uidls.display()));
}

#[test]
fn getmail_oldmail_import_makes_the_switch_download_nothing_twice() {
    let server = Server::with(&["one", "two", "three"]);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let gm = d.join("getmail");
    std::fs::create_dir_all(&gm).unwrap();
    let out = d.join("getmail.out");
    // getmail refuses to deliver into a Maildir as root: an external MDA.
    private(
        &gm.join("getmailrc"),
        &format!(
            "[retriever]\ntype = SimplePOP3Retriever\nserver = 127.0.0.1\nport = {}\nusername = alice\npassword = secret-a\n\n[destination]\ntype = MDA_external\npath = /bin/sh\narguments = (\"-c\", \"cat >> {}\")\nallow_root_commands = true\n\n[options]\nread_all = false\ndelete = false\n",
            server.port,
            out.display()
        ),
    );
    run_tool(
        "getmail",
        &[
            "--quiet",
            "--getmaildir",
            &gm.display().to_string(),
            "--rcfile",
            "getmailrc",
        ],
        "getmail6",
    );
    assert_eq!(
        std::fs::read_to_string(&out)
            .unwrap()
            .matches("Subject: ")
            .count(),
        3
    );
    let oldmail = gm.join(format!("oldmail-127.0.0.1-{}-alice", server.port));
    assert!(oldmail.exists(), "getmail wrote no {}", oldmail.display());
    check_import(&server, d, &format!("getmail:{}", oldmail.display()));
}

#[test]
fn fetchmail_fetchids_import_makes_the_switch_download_nothing_twice() {
    let server = Server::with(&["one", "two", "three"]);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = d.join("fetchmail.out");
    let ids = d.join("fetchids");
    let rc = d.join("fetchmailrc");
    let me = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap();
    private(
        &rc,
        &format!(
            "poll 127.0.0.1 protocol pop3 port {} uidl\n  user \"alice\" there with password \"secret-a\" is \"{}\" here keep sslproto '' mda \"/bin/sh -c 'cat >> {}'\"\n",
            server.port,
            me.trim(),
            out.display()
        ),
    );
    run_tool(
        "fetchmail",
        &[
            "--nosyslog",
            "--silent",
            "-f",
            &rc.display().to_string(),
            "--idfile",
            &ids.display().to_string(),
            "--pidfile",
            &d.join("fetchmail.pid").display().to_string(),
        ],
        "fetchmail",
    );
    assert_eq!(
        std::fs::read_to_string(&out)
            .unwrap()
            .matches("Subject: ")
            .count(),
        3
    );
    check_import(&server, d, &format!("fetchmail:{}", ids.display()));
}

#[test]
fn a_seen_list_of_another_account_is_refused() {
    let server = Server::with(&["one"]);
    let dir = tempfile::tempdir().unwrap();
    let ids = dir.path().join("fetchids");
    std::fs::write(&ids, "bob@127.0.0.1 x1\n").unwrap();
    let md = dir.path().join("md");
    let spec = format!("fetchmail:{}", ids.display());
    assert_eq!(
        fetch(&server, &md, &["--import-seen", &spec]),
        ExitKind::DataErr
    );
    assert!(stored(&md).is_empty());
}
