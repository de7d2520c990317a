//! The `fetch` command line end to end against the blocking server on
//! loopback: the configuration file (its errors, several accounts,
//! `--account`), the password sources, every destination (Maildir, mbox,
//! MDA, LMTP) and the sysexits status of each outcome.
#![cfg(feature = "cli")]

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use pop3_blocking::config::Config;
use pop3_blocking::fetch::ExitKind;
use pop3_proto::store::MemoryStore;
use support::{Server, run, stored};

impl Server {
    /// Alice (password `secret-a`) and bob (`secret-b`), their maildrops
    /// empty, on plain TCP.
    fn new() -> Server {
        let store = Arc::new(MemoryStore::new());
        store.add_user("alice", "secret-a");
        store.add_user("bob", "secret-b");
        Server::start(store, None)
    }

    /// [`run`], then waits until this server's sessions have ended: a run
    /// that stopped without QUIT leaves its session closing on the server,
    /// and the next run would find the maildrop still in use.
    fn run(&self, args: &[&str]) -> ExitKind {
        let kind = run(args);
        self.server.wait_idle();
        kind
    }

    fn url(&self, user: &str) -> String {
        format!("pop://{user}@127.0.0.1:{}", self.port)
    }
}

/// Writes a configuration whose accounts keep their journals in the temp
/// dir, log in with USER on the plain loopback connection, and delete.
fn config(dir: &Path, accounts: &str) -> PathBuf {
    support::config(dir, "auth = \"USER\"\n", accounts)
}

#[test]
fn config_errors_name_the_file_the_line_and_the_key_and_exit_78() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    let cases: [(&str, usize, &str, &str); 7] = [
        (
            "[account.a]\nurl = \"pop://u@h\"\nmaildir = \"/m\"\nfolder = \"x\"\n",
            4,
            "account.a.folder",
            "unknown field",
        ),
        (
            "[defaults]\ndelete = \"yes\"\n",
            2,
            "defaults.delete",
            "invalid type",
        ),
        (
            "[account.a]\n\nurl = \"imap://u@h\"\nmaildir = \"/m\"\n",
            3,
            "account.a.url",
            "",
        ),
        (
            "[account.a]\nurl = \"pop://u@h\"\nmaildir = \"/m\"\nmbox = \"/x\"\n",
            1,
            "account.a",
            "only one of",
        ),
        (
            "[account.a]\nurl = \"pop://u@h\"\nmaildir = \"/m\"\nlmtp = \"nowhere\"\n",
            1,
            "account.a",
            "only one of",
        ),
        (
            "[account.a]\nurl = \"pop://u@h\"\nlmtp = \"nowhere\"\n",
            3,
            "account.a.lmtp",
            "neither",
        ),
        (
            "[acount.a]\nurl = \"pop://u@h\"\n",
            1,
            "acount",
            "unknown field",
        ),
    ];
    for (text, line, key, words) in cases {
        std::fs::write(&path, text).unwrap();
        let e = Config::load(&path).unwrap_err();
        assert_eq!(e.file.as_deref(), Some(path.as_path()), "{text}");
        assert_eq!(e.line, Some(line), "{text}: {e}");
        assert_eq!(e.key.as_deref(), Some(key), "{text}: {e}");
        assert!(e.message.contains(words), "{text}: {e}");
        let shown = e.to_string();
        assert!(
            shown.starts_with(&format!("{}:{line}: {key}", path.display())),
            "{shown}"
        );
        assert_eq!(run(&["--config", path.to_str().unwrap()]), ExitKind::Config);
    }
    // A missing file is named too.
    let missing = dir.path().join("none.toml");
    let e = Config::load(&missing).unwrap_err();
    assert!(e.to_string().starts_with(&missing.display().to_string()));
    assert_eq!(
        run(&["--config", missing.to_str().unwrap()]),
        ExitKind::Config
    );
    // An --account the file does not have.
    std::fs::write(
        &path,
        "[account.a]\nurl = \"pop://u@h\"\nmaildir = \"/m\"\n",
    )
    .unwrap();
    assert_eq!(
        run(&["--config", path.to_str().unwrap(), "--account", "b"]),
        ExitKind::Config
    );
    // A URL's option without a URL is not silently ignored.
    assert_eq!(
        run(&["--config", path.to_str().unwrap(), "--mbox", "/x"]),
        ExitKind::Config
    );
    assert_eq!(ExitKind::Config.code(), 78);
}

#[test]
fn every_account_runs_and_account_selects_with_command_and_netrc_passwords() {
    let server = Server::new();
    let dir = tempfile::tempdir().unwrap();
    let netrc = dir.path().join("netrc");
    std::fs::write(
        &netrc,
        "machine 127.0.0.1 login someone password wrong\nmachine 127.0.0.1 login bob password secret-b\n",
    )
    .unwrap();
    let (ma, mb) = (dir.path().join("a"), dir.path().join("b"));
    let path = config(
        dir.path(),
        &format!(
            "[account.a]\nurl = \"{}\"\npassword_command = \"echo secret-a; echo ignored\"\nmaildir = \"{}\"\n\n[account.b]\nurl = \"{}\"\nnetrc = \"{}\"\nmaildir = \"{}\"\n",
            server.url("alice"),
            ma.display(),
            server.url("bob"),
            netrc.display(),
            mb.display()
        ),
    );
    let config = path.to_str().unwrap();
    server
        .store
        .add_message("alice", &b"Subject: a1\r\n\r\none\r\n"[..]);
    server
        .store
        .add_message("bob", &b"Subject: b1\r\n\r\ntwo\r\n"[..]);
    assert_eq!(server.run(&["--config", config]), ExitKind::Ok);
    assert_eq!(stored(&ma), ["Subject: a1\n\none\n"]);
    assert_eq!(stored(&mb), ["Subject: b1\n\ntwo\n"]);
    assert_eq!(server.store.message_count("alice"), 0);
    assert_eq!(server.store.message_count("bob"), 0);

    // --account picks one: bob's new message stays.
    server
        .store
        .add_message("alice", &b"Subject: a2\r\n\r\n"[..]);
    server.store.add_message("bob", &b"Subject: b2\r\n\r\n"[..]);
    assert_eq!(
        server.run(&["--config", config, "--account", "a"]),
        ExitKind::Ok
    );
    assert_eq!(stored(&ma).len(), 2);
    assert_eq!(stored(&mb).len(), 1);
    assert_eq!(server.store.message_count("bob"), 1);
}

#[test]
fn password_failures_exit_77_and_an_unreachable_server_75_the_worst_wins() {
    let server = Server::new();
    let dir = tempfile::tempdir().unwrap();
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let m = dir.path().join("m");
    let one = |url: String, password: &str| {
        let path = config(
            dir.path(),
            &format!(
                "[account.x]\nurl = \"{url}\"\n{password}\nmaildir = \"{}\"\n",
                m.display()
            ),
        );
        server.run(&["--config", path.to_str().unwrap()])
    };
    // A refused login.
    assert_eq!(
        one(server.url("alice"), "password_command = \"echo wrong\""),
        ExitKind::NoPerm
    );
    // A password command that fails.
    assert_eq!(
        one(server.url("alice"), "password_command = \"exit 9\""),
        ExitKind::NoPerm
    );
    // No password from anywhere (standard input is no terminal in tests).
    assert_eq!(
        one(
            server.url("alice"),
            &format!("netrc = \"{}\"", dir.path().join("none").display())
        ),
        ExitKind::Config
    );
    // Nobody listens: try later.
    assert_eq!(
        one(
            format!("pop://alice@127.0.0.1:{closed_port}"),
            "password_command = \"echo x\""
        ),
        ExitKind::TempFail
    );
    // Two accounts: the worse status is the run's.
    let path = config(
        dir.path(),
        &format!(
            "[account.down]\nurl = \"pop://alice@127.0.0.1:{closed_port}\"\npassword_command = \"echo x\"\nmaildir = \"{0}\"\n\n[account.refused]\nurl = \"{1}\"\npassword_command = \"echo wrong\"\nmaildir = \"{0}2\"\n",
            m.display(),
            server.url("alice"),
        ),
    );
    assert_eq!(
        server.run(&["--config", path.to_str().unwrap()]),
        ExitKind::NoPerm
    );
    assert_eq!(
        (ExitKind::TempFail.code(), ExitKind::NoPerm.code()),
        (75, 77)
    );
}

/// Alice's account delivering to `destination` (a TOML line).
fn deliver_config(server: &Server, dir: &Path, destination: &str) -> String {
    config(
        dir,
        &format!(
            "[account.a]\nurl = \"{}\"\npassword_command = \"echo secret-a\"\n{destination}\n",
            server.url("alice")
        ),
    )
    .to_str()
    .unwrap()
    .to_owned()
}

#[test]
fn mbox_gets_exact_mboxrd_and_a_rerun_fetches_nothing_twice() {
    let server = Server::new();
    let dir = tempfile::tempdir().unwrap();
    let mbox = dir.path().join("mbox");
    let config = deliver_config(
        &server,
        dir.path(),
        &format!("mbox = \"{}\"", mbox.display()),
    );
    server.store.add_message(
        "alice",
        &b"Return-Path: <sender@example.com>\r\nSubject: one\r\n\r\nFrom the start\r\n>From quoted\r\n>>From twice\r\n.dot\r\n"[..],
    );
    server
        .store
        .add_message("alice", &b"Subject: two\r\n\r\nno end"[..]);
    assert_eq!(server.run(&["--config", &config]), ExitKind::Ok);
    let text = String::from_utf8(std::fs::read(&mbox).unwrap()).unwrap();
    let lines: Vec<&str> = text.split('\n').collect();
    // The separator lines carry the delivery time: check their form.
    let separator = |line: &str, sender: &str| {
        let date = line
            .strip_prefix(&format!("From {sender} "))
            .unwrap_or_else(|| panic!("{line:?}"));
        assert_eq!(date.len(), "Thu Jan  1 00:00:00 1970".len(), "{line:?}");
    };
    separator(lines[0], "sender@example.com");
    separator(lines[9], "MAILER-DAEMON");
    let mut rest = lines.clone();
    rest[0] = "SEP";
    rest[9] = "SEP";
    assert_eq!(
        rest.join("\n"),
        "SEP\nReturn-Path: <sender@example.com>\nSubject: one\n\n>From the start\n>>From quoted\n>>>From twice\n.dot\n\nSEP\nSubject: two\n\nno end\n\n"
    );
    assert_eq!(server.store.message_count("alice"), 0);
    // The journal is in the state dir; nothing is appended twice.
    server
        .store
        .add_message("alice", &b"Subject: three\r\n\r\n"[..]);
    assert_eq!(server.run(&["--config", &config]), ExitKind::Ok);
    let again = std::fs::read_to_string(&mbox).unwrap();
    assert!(again.starts_with(&text));
    assert_eq!(again.matches("\nFrom ").count() + 1, 3);
}

#[test]
fn a_held_dot_lock_fails_the_mbox_delivery_temporarily_and_keeps_the_mail() {
    let server = Server::new();
    let dir = tempfile::tempdir().unwrap();
    let mbox = dir.path().join("mbox");
    let config = deliver_config(
        &server,
        dir.path(),
        &format!("mbox = \"{}\"\nlock_timeout = 0", mbox.display()),
    );
    server
        .store
        .add_message("alice", &b"Subject: one\r\n\r\n"[..]);
    let lock = dir.path().join("mbox.lock");
    std::fs::write(&lock, b"4242\n").unwrap();
    assert_eq!(server.run(&["--config", &config]), ExitKind::TempFail);
    assert_eq!(server.store.message_count("alice"), 1);
    assert_eq!(std::fs::read(&mbox).unwrap_or_default(), b"");
    // The lock is the other process's: still there.
    assert!(lock.exists());
    std::fs::remove_file(&lock).unwrap();
    assert_eq!(server.run(&["--config", &config]), ExitKind::Ok);
    assert_eq!(server.store.message_count("alice"), 0);
    assert!(!lock.exists());
}

#[test]
fn an_fcntl_lock_held_by_another_process_fails_the_mbox_delivery_temporarily() {
    let server = Server::new();
    let dir = tempfile::tempdir().unwrap();
    let mbox = dir.path().join("mbox");
    std::fs::write(&mbox, b"").unwrap();
    // python3's lockf is a POSIX record lock, as mutt takes.
    let mut holder = Command::new("python3")
        .arg("-c")
        .arg("import fcntl,sys\nf=open(sys.argv[1],'r+')\nfcntl.lockf(f,fcntl.LOCK_EX)\nprint('locked',flush=True)\nsys.stdin.read()")
        .arg(&mbox)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("this test needs python3 (apt-get install python3)");
    let mut line = String::new();
    BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "locked");
    let config = deliver_config(
        &server,
        dir.path(),
        &format!("mbox = \"{}\"\nlock_timeout = 0", mbox.display()),
    );
    server
        .store
        .add_message("alice", &b"Subject: one\r\n\r\n"[..]);
    let locked = server.run(&["--config", &config]);
    drop(holder.stdin.take());
    let status = holder.wait().unwrap();
    assert!(status.success());
    assert_eq!(locked, ExitKind::TempFail);
    assert_eq!(server.store.message_count("alice"), 1);
    // The dot-lock taken meanwhile is gone again.
    assert!(!dir.path().join("mbox.lock").exists());
    assert_eq!(server.run(&["--config", &config]), ExitKind::Ok);
    assert_eq!(server.store.message_count("alice"), 0);
}

#[test]
fn mda_exit_0_delivers_75_retries_later_other_fails_and_a_hung_one_is_killed() {
    let server = Server::new();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("delivered");
    std::fs::create_dir(&out).unwrap();
    let mda = |command: &str, extra: &str| {
        deliver_config(&server, dir.path(), &format!("mda = '{command}'\n{extra}"))
    };
    server
        .store
        .add_message("alice", &b"Subject: one\r\n\r\nbody\r\n"[..]);
    // 75: the message stays, the run says try later.
    assert_eq!(
        server.run(&["--config", &mda("cat >/dev/null; exit 75", "")]),
        ExitKind::TempFail
    );
    assert_eq!(server.store.message_count("alice"), 1);
    // Another status: refused for good.
    assert_eq!(
        server.run(&["--config", &mda("exit 3", "")]),
        ExitKind::DataErr
    );
    assert_eq!(server.store.message_count("alice"), 1);
    // Hung: killed at the timeout, with what it started.
    assert_eq!(
        server.run(&["--config", &mda("sleep 60 & sleep 60", "mda_timeout = 1")]),
        ExitKind::TempFail
    );
    assert_eq!(server.store.message_count("alice"), 1);
    // 0: delivered (LF line ends, the UID in the environment), deleted.
    let command = format!("cat > {}/\"$POP3_UID\"", out.display());
    assert_eq!(server.run(&["--config", &mda(&command, "")]), ExitKind::Ok);
    assert_eq!(server.store.message_count("alice"), 0);
    let files: Vec<_> = std::fs::read_dir(&out).unwrap().collect();
    assert_eq!(files.len(), 1);
    let file = files.into_iter().next().unwrap().unwrap().path();
    assert_eq!(std::fs::read(file).unwrap(), b"Subject: one\n\nbody\n");
}

/// A one-connection LMTP server answering the end of DATA with each of
/// `finals` in turn; the messages it received (dot-stuffed, as sent).
fn lmtp_server(finals: Vec<&'static str>) -> (u16, JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let thread = thread::spawn(move || {
        let mut got = Vec::new();
        // One connection per run.
        for first in finals {
            let (stream, _) = listener.accept().unwrap();
            let mut w = stream.try_clone().unwrap();
            let mut r = BufReader::new(stream);
            let mut line = String::new();
            let mut send = |s: &str| w.write_all(s.as_bytes()).unwrap();
            send("220 lmtp ready\r\n");
            let mut next_final = Some(first);
            loop {
                line.clear();
                if r.read_line(&mut line).unwrap() == 0 {
                    break;
                }
                let upper = line.to_ascii_uppercase();
                if upper.starts_with("LHLO") {
                    send("250-test\r\n250 PIPELINING\r\n");
                } else if upper.starts_with("MAIL FROM:<>") || upper.starts_with("RCPT TO:<ALICE>")
                {
                    send("250 ok\r\n");
                } else if upper.starts_with("DATA") {
                    send("354 go\r\n");
                    let mut data = String::new();
                    loop {
                        let mut l = String::new();
                        r.read_line(&mut l).unwrap();
                        if l == ".\r\n" {
                            break;
                        }
                        data.push_str(&l);
                    }
                    got.push(data);
                    let reply = next_final.take().unwrap_or("250 2.0.0 ok");
                    send(&format!("{reply}\r\n"));
                    if reply.starts_with('2') {
                        continue;
                    }
                } else if upper.starts_with("RSET") {
                    send("250 reset\r\n");
                } else if upper.starts_with("QUIT") {
                    send("221 bye\r\n");
                    break;
                } else {
                    send("500 what\r\n");
                }
            }
        }
        got
    });
    (port, thread)
}

#[test]
fn lmtp_250_stores_452_retries_later_550_refuses_and_data_is_dot_stuffed() {
    let server = Server::new();
    let dir = tempfile::tempdir().unwrap();
    let (port, lmtp) = lmtp_server(vec![
        "452 4.2.2 over quota",
        "550 5.1.1 no such user",
        "250 2.0.0 stored",
    ]);
    let config = deliver_config(&server, dir.path(), &format!("lmtp = \"127.0.0.1:{port}\""));
    server.store.add_message(
        "alice",
        &b"Subject: one\r\n\r\n.leading dot\r\n..two\r\nend\r\n"[..],
    );
    assert_eq!(server.run(&["--config", &config]), ExitKind::TempFail);
    assert_eq!(server.store.message_count("alice"), 1);
    assert_eq!(server.run(&["--config", &config]), ExitKind::DataErr);
    assert_eq!(server.store.message_count("alice"), 1);
    assert_eq!(server.run(&["--config", &config]), ExitKind::Ok);
    assert_eq!(server.store.message_count("alice"), 0);
    let got = lmtp.join().unwrap();
    let want = "Subject: one\r\n\r\n..leading dot\r\n...two\r\nend\r\n";
    assert_eq!(got, [want, want, want]);
    assert_eq!(ExitKind::DataErr.code(), 65);
}

#[test]
fn the_single_url_form_still_fetches_into_a_maildir() {
    let server = Server::new();
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m");
    server
        .store
        .add_message("alice", &b"Subject: one\r\n\r\n"[..]);
    let url = server.url("alice");
    let kind = server.run(&[
        &url,
        "--maildir",
        m.to_str().unwrap(),
        "--password-command",
        "echo secret-a",
        "--auth",
        "USER",
        "--insecure-cleartext-login",
        "--delete",
    ]);
    assert_eq!(kind, ExitKind::Ok);
    assert_eq!(stored(&m), ["Subject: one\n\n"]);
    assert_eq!(server.store.message_count("alice"), 0);
    // No destination: a configuration error.
    assert_eq!(
        server.run(&[&url, "--password-command", "echo secret-a"]),
        ExitKind::Config
    );
}
