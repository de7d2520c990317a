//! `pop3d --config FILE` through the library's setup (`ServerArgs::setup`),
//! not the binary: a full file read into the setup, the flags winning over
//! it, and each startup check (unknown key, a passwd entry that can never
//! log in, a listener address in use, a missing Maildir root) failing with
//! an error that names the place to fix and maps to exit status 78.
#![cfg(feature = "cli")]

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use pop3_blocking::cli::{
    BoxError, IpNetwork, Origin, ServerArgs, ServerSetup, ServerStore, exit_status,
};

/// A temporary deployment: a Maildir root with one user's Maildir, a
/// passwd-file, a certificate and its key.
struct Deployment {
    dir: tempfile::TempDir,
}

impl Deployment {
    fn new() -> Deployment {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("mail");
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(root.join("alice").join(sub)).unwrap();
        }
        std::fs::write(dir.path().join("passwd"), "alice:{PLAIN}secret\n").unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        std::fs::write(dir.path().join("cert.pem"), cert.cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), cert.key_pair.serialize_pem()).unwrap();
        Deployment { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes the configuration file `text` (`@DIR@` replaced by the
    /// deployment's directory) and answers its path.
    fn config(&self, text: &str) -> PathBuf {
        let path = self.path("pop3d.toml");
        let dir = self.dir.path().display().to_string();
        std::fs::write(&path, text.replace("@DIR@", &dir)).unwrap();
        path
    }
}

/// The setup of `args`, allowed to serve as root (tests run as root on CI;
/// dropping root in the test process would end the other tests).
fn setup(args: &[&str]) -> Result<(ServerSetup, ServerStore), BoxError> {
    let args = ServerArgs::try_parse_from(
        ["pop3d", "--allow-root"]
            .into_iter()
            .chain(args.iter().copied()),
    )
    .expect("the command line parses");
    args.setup("pop3d")
}

fn setup_error(args: &[&str]) -> BoxError {
    match setup(args) {
        Ok(_) => panic!("setup with {args:?} should have failed"),
        Err(e) => e,
    }
}

fn assert_config_exit(e: &BoxError) {
    assert_eq!(
        exit_status(e),
        ExitCode::from(78),
        "not a configuration error: {e}"
    );
}

fn config_arg(path: &Path) -> String {
    path.display().to_string()
}

const FULL: &str = r#"
listen = ["127.0.0.1:0"]
tls_listen = ["127.0.0.1:0", "127.0.0.1:0"]
maildir_root = "@DIR@/mail"
users = "@DIR@/passwd"
allow_plaintext_auth = true
login_delay = 300

[[tls.certificate]]
cert = "@DIR@/cert.pem"
key = "@DIR@/key.pem"

[proxy_protocol]
trusted = ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"]

[metrics]
listen = "127.0.0.1:0"

[limits]
max_connections = 77
max_connections_per_address = 5
login_timeout = 40
autologout = 900
write_stall_timeout = 21
tls_handshake_timeout = 12
shutdown_grace = 7
store_timeout = 33
"#;

#[test]
fn a_full_configuration_file_is_read_into_the_setup() {
    let d = Deployment::new();
    let file = d.config(FULL);
    let (mut setup, store) = setup(&["--config", &config_arg(&file)]).expect("the file is valid");

    let listeners = setup.take_listeners();
    let kinds: Vec<bool> = listeners.iter().map(|l| l.tls).collect();
    assert_eq!(
        kinds,
        [false, true, true],
        "one plain and two TLS listeners"
    );
    assert!(
        listeners.iter().all(|l| l.proxy.is_some()),
        "[proxy_protocol] without listeners of its own: every listener expects the header"
    );
    for l in &listeners {
        let local = l.listener.local_addr().unwrap();
        assert_eq!(local.ip(), IpAddr::from([127, 0, 0, 1]));
        assert_ne!(local.port(), 0, "bound");
    }

    match &store {
        ServerStore::Maildir(m) => {
            assert_eq!(m.root(), d.path("mail"));
            let users = m.shared_users().current();
            assert_eq!(users.users().collect::<Vec<_>>(), ["alice"]);
        }
        other => panic!("expected the Maildir store, got {other:?}"),
    }
    assert!(!setup.demo);
    assert!(
        setup.demo_ca.is_none(),
        "the configured certificate is served"
    );

    assert_eq!(setup.certificates.len(), 1);
    let pair = &setup.certificates[0];
    assert_eq!(pair.cert, d.path("cert.pem"));
    assert_eq!(pair.key, d.path("key.pem"));
    assert_eq!(
        pair.origin,
        Origin::File {
            path: file.clone(),
            line: 10,
            key: "tls.certificate.cert".into(),
        }
    );

    let trusted = &setup
        .proxy_protocol
        .as_ref()
        .expect("[proxy_protocol]")
        .trusted;
    let expected: Vec<IpNetwork> = ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7/32"]
        .iter()
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(trusted, &expected);

    let metrics = setup.metrics.as_ref().expect("[metrics]");
    assert_eq!(metrics.listen, SocketAddr::from(([127, 0, 0, 1], 0)));

    let o = &setup.options;
    assert_eq!(o.max_connections, 77);
    assert_eq!(o.max_connections_per_address, 5);
    assert_eq!(o.write_stall_timeout, Duration::from_secs(21));
    assert_eq!(o.tls_handshake_timeout, Duration::from_secs(12));
    assert_eq!(o.shutdown_grace, Duration::from_secs(7));
    assert_eq!(o.store_timeout, Duration::from_secs(33));
    assert_eq!(setup.config.get_autologout(), Duration::from_secs(900));
}

#[test]
fn proxy_protocol_listeners_of_their_own_expect_the_header_and_the_others_do_not() {
    let d = Deployment::new();
    let file = d.config(
        r#"
listen = ["127.0.0.1:0"]
tls_listen = ["127.0.0.1:0"]
maildir_root = "@DIR@/mail"
users = "@DIR@/passwd"

[proxy_protocol]
trusted = ["10.0.0.0/8"]
listen = ["127.0.0.1:0"]
tls_listen = ["127.0.0.1:0"]
"#,
    );
    let (mut first, _store) = setup(&["--config", &config_arg(&file)]).expect("the file is valid");
    let listeners = first.take_listeners();
    let kinds: Vec<(bool, bool)> = listeners
        .iter()
        .map(|l| (l.tls, l.proxy.is_some()))
        .collect();
    assert_eq!(
        kinds,
        [(false, false), (true, false), (false, true), (true, true)],
        "(implicit TLS, PROXY) of each listener"
    );
    let policy = listeners[2].proxy.as_ref().unwrap();
    assert!(policy.trusts("10.1.2.3".parse().unwrap()));

    // The flags alike: `--proxy-listen` replaces the file's
    // `proxy_protocol.listen` (as `--listen` does `listen`).
    let (mut second, _store) = setup(&[
        "--config",
        &config_arg(&file),
        "--proxy-listen",
        "127.0.0.1:0",
        "--proxy-listen",
        "127.0.0.1:0",
    ])
    .expect("valid");
    let kinds: Vec<(bool, bool)> = second
        .take_listeners()
        .iter()
        .map(|l| (l.tls, l.proxy.is_some()))
        .collect();
    assert_eq!(
        kinds,
        [
            (false, false),
            (true, false),
            (false, true),
            (false, true),
            (true, true)
        ]
    );
}

#[test]
fn a_proxy_listener_without_trusted_networks_is_refused() {
    let e = setup_error(&["--proxy-listen", "127.0.0.1:0"]);
    assert_config_exit(&e);
    let text = e.to_string();
    assert!(
        text.contains("--proxy-listen") && text.contains("proxy_protocol.trusted"),
        "{text}"
    );
}

#[test]
fn flags_win_over_the_file() {
    let d = Deployment::new();
    // The file's Maildir root does not exist: only the flag's makes the
    // setup succeed.
    std::fs::create_dir_all(d.path("other/bob/new")).unwrap();
    std::fs::write(d.path("passwd2"), "bob:{PLAIN}pw\n").unwrap();
    let file = d.config(
        r#"
listen = ["127.0.0.1:0", "127.0.0.1:0"]
maildir_root = "@DIR@/missing"
users = "@DIR@/passwd"

[limits]
max_connections = 77
shutdown_grace = 7
"#,
    );
    let other = d.path("other").display().to_string();
    let passwd2 = d.path("passwd2").display().to_string();
    let (mut setup, store) = setup(&[
        "--config",
        &config_arg(&file),
        "--listen",
        "127.0.0.1:0",
        "--maildir-root",
        &other,
        "--users",
        &passwd2,
        "--max-connections",
        "9",
    ])
    .expect("the flags replace the file's bad root");
    assert_eq!(setup.take_listeners().len(), 1, "--listen replaces listen");
    match &store {
        ServerStore::Maildir(m) => {
            assert_eq!(m.root(), d.path("other"));
            let users = m.shared_users().current();
            assert_eq!(users.users().collect::<Vec<_>>(), ["bob"]);
        }
        other => panic!("expected the Maildir store, got {other:?}"),
    }
    assert_eq!(setup.options.max_connections, 9, "--max-connections wins");
    assert_eq!(
        setup.options.shutdown_grace,
        Duration::from_secs(7),
        "a limit without a flag keeps the file's value"
    );
}

#[test]
fn an_unknown_key_names_the_file_line_and_key() {
    let d = Deployment::new();
    let file = d
        .config("listen = [\"127.0.0.1:0\"]\n\n[limits]\nshutdown_grace = 3\nmax_conections = 4\n");
    let e = setup_error(&["--config", &config_arg(&file)]);
    let text = e.to_string();
    assert!(
        text.contains(&format!("{}:5: limits.max_conections", file.display())),
        "{text}"
    );
    assert_config_exit(&e);
}

/// The error for `passwd` holding `entries`, with the file naming it.
fn passwd_error(entries: &str) -> (String, String, BoxError) {
    let d = Deployment::new();
    std::fs::write(d.path("passwd"), entries).unwrap();
    let file = d.config(
        "listen = [\"127.0.0.1:0\"]\nmaildir_root = \"@DIR@/mail\"\nusers = \"@DIR@/passwd\"\n",
    );
    let e = setup_error(&["--config", &config_arg(&file)]);
    (
        d.path("passwd").display().to_string(),
        file.display().to_string(),
        e,
    )
}

#[test]
fn a_passwd_entry_that_can_never_log_in_names_the_file_and_line() {
    for (entries, line) in [
        ("bob:{PLAIN}pw\nalice:secret\n", 2),
        ("alice:{MD5}5ebe2294ecd0e0f08eab7690d2a6ee69\n", 1),
        ("bob:{PLAIN}pw\ncarol:{PLAIN}x\nalice:{NOSUCH}abc\n", 3),
    ] {
        let (passwd, config, e) = passwd_error(entries);
        let text = e.to_string();
        assert!(text.contains(&passwd), "{entries:?}: {text}");
        assert!(
            text.contains(&format!("line {line}")),
            "{entries:?}: {text}"
        );
        assert!(text.contains("\"alice\""), "{entries:?}: {text}");
        assert!(
            text.starts_with(&format!("{config}:3: users")),
            "{entries:?}: the configuration's line too: {text}"
        );
        assert_config_exit(&e);
    }
}

#[test]
fn an_empty_passwd_file_is_refused() {
    let (passwd, _, e) = passwd_error("");
    let text = e.to_string();
    assert!(text.contains(&passwd), "{text}");
    assert!(text.contains("no user can log in"), "{text}");
    assert_config_exit(&e);
}

#[test]
fn a_listen_address_in_use_is_named() {
    let d = Deployment::new();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let file = d.config(&format!(
        "listen = [\"127.0.0.1:0\"]\ntls_listen = [\"{addr}\"]\n\n[[tls.certificate]]\ncert = \"@DIR@/cert.pem\"\nkey = \"@DIR@/key.pem\"\n"
    ));
    let e = setup_error(&["--config", &config_arg(&file)]);
    let text = e.to_string();
    assert!(text.contains(&addr.to_string()), "{text}");
    assert!(
        text.starts_with(&format!("{}:2: tls_listen", file.display())),
        "{text}"
    );
    assert_config_exit(&e);

    // The same from a flag.
    let e = setup_error(&["--listen", &addr.to_string()]);
    assert!(e.to_string().contains(&addr.to_string()), "{e}");
    assert_config_exit(&e);
}

#[test]
fn a_missing_maildir_root_is_named() {
    let d = Deployment::new();
    let file = d.config(
        "listen = [\"127.0.0.1:0\"]\nmaildir_root = \"@DIR@/nowhere\"\nusers = \"@DIR@/passwd\"\n",
    );
    let e = setup_error(&["--config", &config_arg(&file)]);
    let text = e.to_string();
    assert!(
        text.contains(&d.path("nowhere").display().to_string()),
        "{text}"
    );
    assert!(
        text.starts_with(&format!("{}:2: maildir_root", file.display())),
        "{text}"
    );
    assert_config_exit(&e);
}

#[test]
fn a_missing_configuration_file_is_a_configuration_error() {
    let d = Deployment::new();
    let e = setup_error(&["--config", &config_arg(&d.path("absent.toml"))]);
    assert!(e.to_string().contains("absent.toml"), "{e}");
    assert_config_exit(&e);
}

#[test]
fn ip_network_parses_cidr_and_bare_addresses() {
    let net: IpNetwork = "10.0.0.0/8".parse().unwrap();
    assert_eq!(net.addr(), IpAddr::from([10, 0, 0, 0]));
    assert_eq!(net.prefix(), 8);
    assert_eq!(net.to_string(), "10.0.0.0/8");
    let host: IpNetwork = "192.0.2.7".parse().unwrap();
    assert_eq!(host.prefix(), 32);
    let v6: IpNetwork = "2001:db8::/32".parse().unwrap();
    assert_eq!(v6.prefix(), 32);
    assert_eq!("::1".parse::<IpNetwork>().unwrap().prefix(), 128);
    assert_eq!("0.0.0.0/0".parse::<IpNetwork>().unwrap().prefix(), 0);
    assert_eq!("::/0".parse::<IpNetwork>().unwrap().prefix(), 0);
    for bad in [
        "10.0.0.0/33",
        "::/129",
        "10.0.0.0/",
        "10.0.0/8",
        "host/8",
        "10.0.0.0/-1",
    ] {
        assert!(bad.parse::<IpNetwork>().is_err(), "{bad} accepted");
    }
}

#[test]
fn ip_network_refuses_host_bits_past_the_prefix() {
    for bad in [
        "10.0.0.1/8",
        "192.168.1.0/23",
        "2001:db8::1/64",
        "::1/0",
        "1.0.0.0/0",
    ] {
        let e = bad.parse::<IpNetwork>().unwrap_err();
        assert!(e.contains("past the prefix"), "{bad}: {e}");
    }
    assert!("192.168.0.0/23".parse::<IpNetwork>().is_ok());
    assert!("2001:db8::/64".parse::<IpNetwork>().is_ok());
}

#[test]
fn ip_network_contains_v4() {
    let net: IpNetwork = "10.0.0.0/8".parse().unwrap();
    assert!(net.contains("10.0.0.0".parse().unwrap()));
    assert!(net.contains("10.255.255.255".parse().unwrap()));
    assert!(!net.contains("11.0.0.0".parse().unwrap()));
    assert!(!net.contains("9.255.255.255".parse().unwrap()));
    assert!(
        net.contains("::ffff:10.1.2.3".parse().unwrap()),
        "an IPv4-mapped address counts as IPv4"
    );
    assert!(!net.contains("::a01:203".parse().unwrap()), "not mapped");
    let host: IpNetwork = "192.0.2.7".parse().unwrap();
    assert!(host.contains("192.0.2.7".parse().unwrap()));
    assert!(!host.contains("192.0.2.8".parse().unwrap()));
    let all: IpNetwork = "0.0.0.0/0".parse().unwrap();
    assert!(all.contains("203.0.113.1".parse().unwrap()));
    assert!(
        !all.contains("2001:db8::1".parse().unwrap()),
        "v4 net, v6 address"
    );
}

#[test]
fn ip_network_contains_v6() {
    let net: IpNetwork = "2001:db8::/32".parse().unwrap();
    assert!(net.contains("2001:db8::1".parse().unwrap()));
    assert!(net.contains("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap()));
    assert!(!net.contains("2001:db9::".parse().unwrap()));
    assert!(
        !net.contains("10.0.0.1".parse().unwrap()),
        "v6 net, v4 address"
    );
    let all: IpNetwork = "::/0".parse().unwrap();
    assert!(all.contains("fe80::1".parse().unwrap()));
    let odd: IpNetwork = "2001:db8:8000::/33".parse().unwrap();
    assert!(odd.contains("2001:db8:8000::5".parse().unwrap()));
    assert!(!odd.contains("2001:db8:7fff::5".parse().unwrap()));
}

/// The setup of `args` as given (no `--allow-root` added).
fn setup_as_given(args: &[&str]) -> Result<(ServerSetup, ServerStore), BoxError> {
    ServerArgs::try_parse_from(std::iter::once("pop3d").chain(args.iter().copied()))
        .expect("the command line parses")
        .setup("pop3d")
}

#[test]
fn an_unknown_service_user_or_a_group_without_a_user_is_a_configuration_error() {
    let d = Deployment::new();
    let file = d.config(
        "listen = [\"127.0.0.1:0\"]\nmaildir_root = \"@DIR@/mail\"\nusers = \"@DIR@/passwd\"\nuser = \"no-such-user-here\"\n",
    );
    let Err(e) = setup_as_given(&["--config", &config_arg(&file)]) else {
        panic!("an unknown user was accepted");
    };
    let text = pop3_blocking::cli::chain(&*e);
    assert!(
        text.contains(&format!(
            "{}:4: user no-such-user-here: no such user",
            file.display()
        )),
        "{text}"
    );
    assert_config_exit(&e);
    let Err(e) = setup_as_given(&["--listen", "127.0.0.1:0", "--group", "root"]) else {
        panic!("a group without a user was accepted");
    };
    assert!(
        e.to_string().contains("--group root: needs user too"),
        "{e}"
    );
    assert_config_exit(&e);
}

#[test]
#[cfg(unix)]
fn as_root_without_a_user_maildirs_are_refused_unless_allowed_and_the_demo_serves() {
    let euid = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .expect("this test reads /proc/self (Linux)");
    assert_eq!(
        euid, 0,
        "this test needs root: run it as root (as CI does), e.g. sudo -E cargo test"
    );
    let d = Deployment::new();
    let store = [
        "--listen",
        "127.0.0.1:0",
        "--maildir-root",
        &config_arg(&d.path("mail")),
        "--users",
        &config_arg(&d.path("passwd")),
    ];
    let Err(e) = setup_as_given(&store) else {
        panic!("served Maildirs as root without being told");
    };
    let text = e.to_string();
    assert!(text.contains("refusing to serve as root"), "{text}");
    assert!(
        text.contains("--user")
            && text.contains("--allow-root")
            && text.contains("allow_root = true"),
        "{text}"
    );
    assert_config_exit(&e);
    let file = d.config(
        "listen = [\"127.0.0.1:0\"]\nmaildir_root = \"@DIR@/mail\"\nusers = \"@DIR@/passwd\"\nallow_root = true\n",
    );
    assert!(setup_as_given(&["--config", &config_arg(&file)]).is_ok());
    assert!(setup_as_given(&[store.as_slice(), &["--allow-root"]].concat()).is_ok());
    let (setup, _) = setup_as_given(&["--listen", "127.0.0.1:0"]).expect("the demo serves as root");
    assert!(setup.demo);
}

#[test]
fn expire_and_login_delay_are_advertised_as_the_store_enforces_them() {
    use pop3_proto::response::Expire;
    let d = Deployment::new();
    let file = d.config(
        "listen = [\"127.0.0.1:0\"]\nmaildir_root = \"@DIR@/mail\"\nusers = \"@DIR@/passwd\"\nexpire = 14\nlogin_delay = 60\n",
    );
    let (setup_, store) = setup(&["--config", &config_arg(&file)]).expect("the file is valid");
    match &store {
        ServerStore::Maildir(m) => {
            assert_eq!(m.expire_enforced(), Some(14));
            assert_eq!(m.login_delay_enforced(), Some(Duration::from_secs(60)));
        }
        other => panic!("expected the Maildir store, got {other:?}"),
    }
    assert_eq!(setup_.config.get_expire(), Some(Expire::Days(14)));
    assert_eq!(setup_.config.get_login_delay(), Some(60));
    // The flag wins over the file.
    let (setup_, store) = setup(&["--config", &config_arg(&file), "--expire", "3"]).expect("valid");
    assert!(matches!(&store, ServerStore::Maildir(m) if m.expire_enforced() == Some(3)));
    assert_eq!(setup_.config.get_expire(), Some(Expire::Days(3)));
    // Without the settings: EXPIRE NEVER, no LOGIN-DELAY, nothing enforced.
    let file = d.config(
        "listen = [\"127.0.0.1:0\"]\nmaildir_root = \"@DIR@/mail\"\nusers = \"@DIR@/passwd\"\n",
    );
    let (setup_, store) = setup(&["--config", &config_arg(&file)]).expect("valid");
    assert!(matches!(&store, ServerStore::Maildir(m) if m.expire_enforced().is_none()));
    assert_eq!(setup_.config.get_expire(), Some(Expire::Never));
    assert_eq!(setup_.config.get_login_delay(), None);
    // The demo store enforces neither: EXPIRE 7 is not advertised, EXPIRE 0
    // is (the server enforces it itself).
    let (setup_, _) = setup(&["--listen", "127.0.0.1:0", "--expire", "7"]).expect("valid");
    assert_eq!(setup_.config.get_expire(), Some(Expire::Never));
    let (setup_, _) = setup(&["--listen", "127.0.0.1:0", "--expire", "0"]).expect("valid");
    assert_eq!(setup_.config.get_expire(), Some(Expire::Days(0)));
}
