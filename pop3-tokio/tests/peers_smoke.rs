//! The peer test support, proven against a real server: a private Dovecot
//! holding the awkward maildrop, fetched with Python's poplib, curl and mpop.

mod support;

use support::curl::Curl;
use support::dovecot::{Dovecot, group_alive, list_size, retr_form};
use support::poplib::{self, Connect, FetchOptions, Login};
use support::{assert_bytes_eq, awkward, expect_success, mpop, top_of};

const USER: &str = "alice";
const PASSWORD: &str = "secret";

fn expected_wire(messages: &[(String, Vec<u8>)]) -> Vec<Vec<u8>> {
    messages.iter().map(|(_, m)| retr_form(m)).collect()
}

fn expected_sizes(messages: &[(String, Vec<u8>)]) -> Vec<u64> {
    messages.iter().map(|(_, m)| list_size(m)).collect()
}

/// `top`: the line count every message was fetched with TOP, or `None`
/// when the fetch sent no TOP (then no TOP answer may have been seen).
fn check_fetch(
    label: &str,
    got: &poplib::Fetched,
    messages: &[(String, Vec<u8>)],
    top: Option<usize>,
) {
    assert_eq!(got.retr.len(), messages.len(), "{label}: message count");
    for ((name, stored), retr) in messages.iter().zip(&got.retr) {
        let wire = retr_form(stored);
        assert_bytes_eq(&format!("{label}: RETR of {name}"), retr, &wire);
    }
    let Some(top) = top else {
        assert!(got.top.is_empty(), "{label}: TOP answers without TOP");
        assert_eq!(got.sizes(), expected_sizes(messages), "{label}: LIST sizes");
        return;
    };
    assert_eq!(got.top.len(), messages.len(), "{label}: TOP count");
    for ((name, stored), top_got) in messages.iter().zip(&got.top) {
        let want = top_of(&retr_form(stored), top);
        assert_bytes_eq(&format!("{label}: TOP {top} of {name}"), top_got, &want);
    }
    assert_eq!(got.sizes(), expected_sizes(messages), "{label}: LIST sizes");
}

#[test]
fn poplib_fetches_the_awkward_maildrop_plain_stls_and_pop3s() {
    let messages = awkward::maildrop();
    let dovecot = Dovecot::start(&[(USER, PASSWORD, &messages), ("bob", "pw", &[])]);
    let ca = dovecot.ca_pem_path();

    let plain = poplib::fetch(
        dovecot.pop3_addr(),
        USER,
        PASSWORD,
        &FetchOptions {
            top: Some(2),
            ..FetchOptions::default()
        },
    );
    assert!(plain.greeting.starts_with(b"+OK"), "{:?}", plain.greeting);
    check_fetch("plain", &plain, &messages, Some(2));
    assert_eq!(plain.uids(), dovecot.uidls(USER));

    let stls = poplib::fetch(
        dovecot.pop3_addr(),
        USER,
        PASSWORD,
        &FetchOptions {
            connect: Connect::stls(&ca),
            top: None,
            ..FetchOptions::default()
        },
    );
    check_fetch("STLS", &stls, &messages, None);

    let pop3s = poplib::fetch(
        dovecot.pop3s_addr(),
        USER,
        PASSWORD,
        &FetchOptions {
            connect: Connect::implicit(&ca),
            login: Login::Apop,
            top: Some(0),
            ..FetchOptions::default()
        },
    );
    check_fetch("POP3S with APOP", &pop3s, &messages, Some(0));

    let bob = poplib::fetch(dovecot.pop3_addr(), "bob", "pw", &FetchOptions::default());
    assert!(bob.retr.is_empty());
    assert_eq!(bob.stat, b"+OK 0 0");
}

#[test]
fn poplib_session_records_every_answer() {
    let messages = awkward::small();
    let dovecot = Dovecot::start(&[(USER, PASSWORD, &messages)]);
    let session = poplib::session(
        dovecot.pop3_addr(),
        &Connect::plain_with_ca(&dovecot.ca_pem_path()),
        &[
            "capa",
            "stls",
            "capa",
            "user alice",
            "pass secret",
            "stat",
            "list",
            "uidl 2",
            "top 1 0",
            "retr 2",
            "retr 99",
            "dele 1",
            "retr 1",
            "rset",
            "noop",
            "dele 1",
            "quit",
        ],
    );
    let steps = &session.steps;
    assert_eq!(steps.len(), 17);
    let by = |i: usize| &steps[i - 1];
    assert!(session.greeting.starts_with(b"+OK"));
    assert!(by(1).line_list().contains(&&b"STLS"[..]), "{:?}", by(1));
    assert!(by(2).ok, "STLS: {:?}", by(2));
    assert!(!by(3).line_list().contains(&&b"STLS"[..]), "{:?}", by(3));
    assert!(by(4).ok && by(5).ok, "{:?} {:?}", by(4), by(5));
    let total: u64 = expected_sizes(&messages).iter().sum();
    assert_eq!(by(6).text(), format!("+OK {} {total}", messages.len()));
    assert_eq!(by(7).line_list().len(), messages.len());
    assert_eq!(by(8).text(), format!("+OK 2 {}", dovecot.uidls(USER)[1]));
    assert_bytes_eq(
        "TOP 1 0",
        by(9).lines.as_ref().unwrap(),
        &top_of(&retr_form(&messages[0].1), 0),
    );
    assert_bytes_eq(
        "RETR 2",
        by(10).lines.as_ref().unwrap(),
        &retr_form(&messages[1].1),
    );
    assert!(
        !by(11).ok && by(11).response.starts_with(b"-ERR"),
        "{:?}",
        by(11)
    );
    assert!(!by(11).stopped);
    assert!(by(12).ok);
    assert!(!by(13).ok, "RETR of a deleted message: {:?}", by(13));
    assert!(by(14).ok && by(15).ok);
    assert!(by(16).ok && by(17).ok);
    // QUIT committed the deletion of message 1.
    let stored = dovecot.stored(USER);
    assert_eq!(stored.len(), messages.len() - 1);
    assert!(
        !stored
            .iter()
            .any(|s| s.starts_with(&dovecot.uidls(USER)[0]))
    );
}

#[test]
fn curl_lists_retrieves_and_deletes() {
    let messages = awkward::maildrop();
    let dovecot = Dovecot::start(&[(USER, PASSWORD, &messages)]);
    let ca = dovecot.ca_pem_path();
    let wire = expected_wire(&messages);

    let plain = Curl::plain(dovecot.pop3_addr(), USER, PASSWORD);
    let list = plain.list();
    expect_success("curl LIST", &list);
    let want_list: String = expected_sizes(&messages)
        .iter()
        .enumerate()
        .map(|(i, size)| format!("{} {size}\r\n", i + 1))
        .collect();
    assert_eq!(String::from_utf8_lossy(&list.stdout), want_list);

    let uidl = Curl::stls(dovecot.pop3_addr(), &ca, USER, PASSWORD)
        .login_options("AUTH=CRAM-MD5")
        .uidl();
    expect_success("curl UIDL over STLS", &uidl);
    let want_uidl: String = dovecot
        .uidls(USER)
        .iter()
        .enumerate()
        .map(|(i, u)| format!("{} {u}\r\n", i + 1))
        .collect();
    assert_eq!(String::from_utf8_lossy(&uidl.stdout), want_uidl);

    let pop3s = Curl::pop3s(dovecot.pop3s_addr(), &ca, USER, PASSWORD);
    for (i, ((name, _), want)) in messages.iter().zip(&wire).enumerate() {
        let out = pop3s.retr(i as u32 + 1);
        expect_success("curl RETR", &out);
        assert_bytes_eq(&format!("curl RETR of {name}"), &out.stdout, want);
    }

    let apop = Curl::plain(dovecot.pop3_addr(), USER, PASSWORD)
        .login_options("AUTH=+APOP")
        .top(1, 0);
    expect_success("curl TOP with APOP", &apop);
    assert_bytes_eq("curl TOP 1 0", &apop.stdout, &top_of(&wire[0], 0));

    let dele = plain.dele(1);
    expect_success("curl DELE 1", &dele);
    assert_eq!(dovecot.stored(USER).len(), messages.len() - 1);
}

#[test]
fn mpop_delivers_the_awkward_maildrop_unchanged() {
    let messages = awkward::maildrop();
    let dovecot = Dovecot::start(&[(USER, PASSWORD, &messages)]);
    let ca = dovecot.ca_pem_path();
    let work = tempfile::tempdir().unwrap();
    let runs = [
        (
            "plain",
            mpop::Security::Plain,
            dovecot.pop3_addr(),
            "user",
            mpop::Pipelining::Auto,
        ),
        (
            "stls",
            mpop::Security::Stls(ca.clone()),
            dovecot.pop3_addr(),
            "scram-sha-256",
            mpop::Pipelining::Off,
        ),
        (
            "pop3s",
            mpop::Security::Implicit(ca.clone()),
            dovecot.pop3s_addr(),
            "cram-md5",
            mpop::Pipelining::On,
        ),
    ];
    for (label, security, addr, auth, pipelining) in runs {
        let account = mpop::Mpop::new(&work.path().join(label), addr, security, USER, PASSWORD)
            .auth(auth)
            .pipelining(pipelining);
        let out = account.run();
        expect_success(&format!("mpop {label}"), &out);
        let delivered = account.delivered();
        assert_eq!(delivered.len(), messages.len(), "mpop {label}: count");
        for ((name, stored), got) in messages.iter().zip(&delivered) {
            assert_bytes_eq(
                &format!("mpop {label}: {name}"),
                got,
                &mpop_expected(stored),
            );
        }
        // A second run fetches nothing new (UIDLs remembered).
        let again = account.run();
        expect_success(&format!("mpop {label} again"), &again);
        assert_eq!(account.delivered().len(), messages.len());
    }
    // keep off: mpop deletes what it fetched.
    let deleting = mpop::Mpop::new(
        &work.path().join("delete"),
        dovecot.pop3_addr(),
        mpop::Security::Plain,
        USER,
        PASSWORD,
    )
    .keep(false);
    expect_success("mpop keep off", &deleting.run());
    assert_eq!(deleting.delivered().len(), messages.len());
    assert!(dovecot.stored(USER).is_empty());
}

/// What mpop stores for a message Dovecot holds as `stored`.
fn mpop_expected(stored: &[u8]) -> Vec<u8> {
    support::crlf_to_lf(&retr_form(stored))
}

#[test]
fn dovecot_is_stopped_when_a_test_panics() {
    let pid = std::panic::catch_unwind(|| {
        let dovecot = Dovecot::start(&[(USER, PASSWORD, &[])]);
        assert!(dovecot.is_running());
        let pid = dovecot.pid();
        std::panic::panic_any(pid);
    })
    .unwrap_err();
    let pid = *pid.downcast::<u32>().unwrap();
    assert!(!group_alive(pid), "Dovecot process group {pid} survived");
}

#[test]
fn a_hanging_process_is_killed_with_its_children() {
    let mut cmd = std::process::Command::new("bash");
    cmd.arg("-c").arg("sleep 300 & echo $!; wait");
    let started = std::time::Instant::now();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        support::run_with_timeout(cmd, std::time::Duration::from_millis(300))
    }));
    let message = *result.unwrap_err().downcast::<String>().unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(message.contains("was killed"), "{message}");
    let grandchild = message
        .lines()
        .find_map(|l| l.trim().parse::<u32>().ok())
        .expect("the child printed its child's pid");
    std::thread::sleep(std::time::Duration::from_millis(100));
    let state = std::fs::read_to_string(format!("/proc/{grandchild}/stat")).unwrap_or_default();
    assert!(
        state.is_empty() || state.contains(") Z "),
        "sleep survived: {state}"
    );
}

/// Extra configuration, IPv6 loopback, and use from an async test. Dovecot
/// counts a connection whose remote and local addresses are equal as
/// secure, so plaintext logins stay allowed on 127.0.0.1 even with
/// `disable_plaintext_auth = yes`; a client bound to 127.0.0.2 is not.
#[tokio::test]
async fn extra_config_ipv6_and_async_use() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    let messages = awkward::small();
    let dovecot = Dovecot::start_with_config(
        &[(USER, PASSWORD, &messages)],
        "disable_plaintext_auth = yes\nlogin_greeting = pop3-rs test ready\n",
    );

    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let stream = socket.connect(dovecot.pop3_addr()).await.unwrap();
    let mut stream = BufReader::new(stream);
    let mut line = String::new();
    stream.read_line(&mut line).await.unwrap();
    assert!(line.starts_with("+OK pop3-rs test ready"), "{line:?}");
    stream.get_mut().write_all(b"USER alice\r\n").await.unwrap();
    line.clear();
    stream.read_line(&mut line).await.unwrap();
    assert!(
        line.starts_with("-ERR [AUTH] Plaintext authentication disallowed"),
        "{line:?}"
    );

    // Same server through curl from a blocking task, over ::1 when present.
    let addr = dovecot.pop3_addr_v6().unwrap_or(dovecot.pop3_addr());
    let list = support::blocking(move || Curl::plain(addr, USER, PASSWORD).list()).await;
    expect_success("curl LIST", &list);
    assert_eq!(
        String::from_utf8_lossy(&list.stdout).lines().count(),
        messages.len()
    );
}
