//! Moving from Courier without a second download: Courier's real POP3
//! daemon (`courierpop3d`, found installed or fetched with `apt-get
//! download` by `tests/peers/courier.sh`) serves a Maildir in a
//! pre-authenticated session on a pipe and leaves its
//! `courierpop3dsizelist`; then the Maildir store serves the same Maildir
//! and must give every message the UIDL, and the number, Courier gave it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use pop3_blocking::maildir::MaildirStore;
use pop3_blocking::maildir::previous::COURIER_SIZELIST;
use pop3_blocking::passwd::PasswdFile;
use pop3_proto::store::{BlockingMaildrop, BlockingStore};

struct Courier {
    binary: PathBuf,
    libraries: String,
}

fn courier() -> Courier {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/courier.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .expect("run tests/peers/courier.sh");
    assert!(
        out.status.success(),
        "Courier's POP3 daemon is needed: install courier-pop, or allow \
         tests/peers/courier.sh to run apt-get download\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_default()
            .to_owned()
    };
    Courier {
        binary: PathBuf::from(value("COURIERPOP3D=")),
        libraries: value("LD_LIBRARY_PATH="),
    }
}

/// Runs one Courier session on `maildir` with `commands`; its answers.
fn courier_session(courier: &Courier, maildir: &Path, commands: &str) -> String {
    let mut child = Command::new(&courier.binary)
        .arg(maildir)
        .env_clear()
        .env("LD_LIBRARY_PATH", &courier.libraries)
        .env("MAILDIR", maildir)
        .env("AUTHENTICATED", "alice")
        .env("TCPREMOTEIP", "127.0.0.1")
        .env("TCPREMOTEPORT", "0")
        .current_dir(maildir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start courierpop3d");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(commands.as_bytes())
        .unwrap();
    let out = child.wait_with_output().expect("courierpop3d ran");
    assert!(
        out.status.success(),
        "courierpop3d failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("ASCII answers")
}

fn deliver(maildir: &Path, sub: &str, name: &str, body: &str) {
    std::fs::write(maildir.join(sub).join(name), body).unwrap();
}

#[test]
fn serves_couriers_uidls_and_order_after_a_real_courier_session() {
    let courier = courier();
    let root = tempfile::tempdir().unwrap();
    let maildir = root.path().join("alice");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).unwrap();
    }
    deliver(
        &maildir,
        "new",
        "1700000003.M3P1.host",
        "Subject: 3\n\nthree\n",
    );
    deliver(
        &maildir,
        "cur",
        "1700000001.M1P1.host:2,S",
        "Subject: 1\n\none\n",
    );
    deliver(
        &maildir,
        "new",
        "1700000002.M2P1.host",
        "Subject: 2\n\ntwo\n",
    );
    deliver(
        &maildir,
        "cur",
        "1700000004.M4P1.host,S=20:2,RS",
        "Subject: 4\n\nfour\n",
    );

    let answers = courier_session(&courier, &maildir, "UIDL\r\nQUIT\r\n");
    let theirs: Vec<String> = answers
        .lines()
        .skip_while(|l| !l.starts_with("+OK") || l.starts_with("+OK logged"))
        .skip(1)
        .take_while(|l| *l != ".")
        .map(|l| l.split(' ').nth(1).expect("UIDL line").to_owned())
        .collect();
    assert_eq!(theirs.len(), 4, "{answers}");
    assert!(theirs.iter().all(|u| u.starts_with("UID")), "{theirs:?}");
    assert!(maildir.join(COURIER_SIZELIST).is_file());

    // Mail keeps coming after the move.
    deliver(
        &maildir,
        "new",
        "1800000000.M9P9.late",
        "Subject: late\n\nnew\n",
    );
    let users = PasswdFile::parse("alice:{PLAIN}secret\n").unwrap();
    let store = MaildirStore::new(root.path(), users);
    let ours: Vec<String> = store
        .open("alice")
        .unwrap()
        .messages()
        .iter()
        .map(|m| m.uid.as_str().to_owned())
        .collect();
    assert_eq!(ours[..4], theirs[..]);
    assert_eq!(ours[4], "1800000000.M9P9.late");

    // And Courier, run again, still agrees (nothing was changed under it).
    let again = courier_session(&courier, &maildir, "UIDL 1\r\nQUIT\r\n");
    assert!(again.contains(&format!("+OK 1 {}", theirs[0])), "{again}");
}
