//! `fetch` with OAuth 2.0 access tokens, end to end on loopback: the
//! configuration's `oauth2` table refreshes the token at a token endpoint
//! (a small HTTP server here) and stores the rotated refresh token; a
//! `token_command`'s output is the token; XOAUTH2 and OAUTHBEARER log in to
//! the blocking server, whose store checks the tokens. Failures exit with
//! their sysexits status; the configuration's `import_seen` key is here too.
#![cfg(feature = "cli")]

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use pop3_blocking::cli::chain;
use pop3_blocking::config::Config;
use pop3_blocking::fetch::ExitKind;
use pop3_proto::store::{MemoryStore, TokenValidator};
use support::{Server, run, stored, stored_count};

/// The access tokens the server takes, and whose they are.
const TOKENS: [(&str, &str); 3] = [
    ("alice", "access-alice"),
    ("bob", "access-bob"),
    ("alice", "from-command"),
];

impl Server {
    /// Alice and bob, one message each, on plain TCP (bearer tokens
    /// without TLS are allowed on both sides); the store checks [`TOKENS`].
    fn new() -> Server {
        let validator = TokenValidator::new(|user, token| {
            TOKENS
                .iter()
                .any(|(u, t)| *u == user && t.as_bytes() == token.expose())
        })
        .with_owner(|token| {
            TOKENS
                .iter()
                .find(|(_, t)| t.as_bytes() == token.expose())
                .map(|(u, _)| (*u).to_owned())
        });
        let store = Arc::new(MemoryStore::new().with_token_validator(validator));
        store.add_user("alice", "unused-a");
        store.add_user("bob", "unused-b");
        store.add_message("alice", "Subject: for alice\r\n\r\na\r\n");
        store.add_message("bob", "Subject: for bob\r\n\r\nb\r\n");
        Server::start(store, None)
    }
}

/// One request the token endpoint got.
#[derive(Debug, Clone)]
struct Request {
    /// The request line.
    line: String,
    /// The header lines, names in lower case.
    headers: Vec<(String, String)>,
    /// The form's fields, in order.
    form: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `%XX` and `+` of a form value.
fn form_decode(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() + 1 => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

/// A token endpoint on a loopback port, plain HTTP: each request is
/// answered by `answer` (status, JSON body) until one for `/stop`; the
/// thread hands back every other request.
struct Endpoint {
    port: u16,
    thread: JoinHandle<Vec<Request>>,
}

impl Endpoint {
    fn start(answer: impl Fn(&Request) -> (u16, String) + Send + 'static) -> Endpoint {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let thread = thread::spawn(move || {
            let mut seen = Vec::new();
            for conn in listener.incoming() {
                let mut conn = conn.unwrap();
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let line = line.trim_end().to_owned();
                let mut headers = Vec::new();
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).unwrap();
                    let h = h.trim_end();
                    if h.is_empty() {
                        break;
                    }
                    let (n, v) = h.split_once(':').unwrap();
                    headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
                }
                if line.starts_with("GET /stop") {
                    break;
                }
                let length: usize = headers
                    .iter()
                    .find(|(n, _)| n == "content-length")
                    .map_or(0, |(_, v)| v.parse().unwrap());
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let form = String::from_utf8(body)
                    .unwrap()
                    .split('&')
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        let (k, v) = p.split_once('=').unwrap_or((p, ""));
                        (form_decode(k), form_decode(v))
                    })
                    .collect();
                let request = Request {
                    line,
                    headers,
                    form,
                };
                let (status, json) = answer(&request);
                write!(
                    conn,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nCache-Control: no-store\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
                    json.len()
                )
                .unwrap();
                seen.push(request);
            }
            seen
        });
        Endpoint { port, thread }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    /// Stops the endpoint: the requests it answered.
    fn stop(self) -> Vec<Request> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.write_all(b"GET /stop HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        self.thread.join().unwrap()
    }
}

/// The endpoint's answer for the refresh tokens `r-alice` and `r-bob`:
/// their access tokens and rotated refresh tokens; `invalid_grant` for any
/// other.
fn rotating(request: &Request) -> (u16, String) {
    assert_eq!(request.line, "POST /token HTTP/1.1");
    assert_eq!(request.field("grant_type"), Some("refresh_token"));
    match request.field("refresh_token") {
        Some("r-alice") => (
            200,
            r#"{"access_token":"access-alice","token_type":"Bearer","expires_in":3600,"refresh_token":"r-alice-2"}"#.into(),
        ),
        // Some providers send expires_in as a string.
        Some("r-bob") => (
            200,
            r#"{"access_token":"access-bob","token_type":"bearer","expires_in":"3600","refresh_token":"r-bob-2","scope":"pop"}"#.into(),
        ),
        _ => (
            400,
            r#"{"error":"invalid_grant","error_description":"Token has been expired or revoked."}"#.into(),
        ),
    }
}

/// A configuration whose accounts keep state in `dir`, allow bearer
/// tokens on the plain loopback connection, and delete.
fn config(dir: &Path, accounts: &str) -> PathBuf {
    support::config(dir, "", accounts)
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn refreshed_tokens_log_in_with_xoauth2_and_oauthbearer_and_rotated_refresh_tokens_are_stored_0600()
{
    let server = Server::new();
    let endpoint = Endpoint::start(rotating);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("alice.refresh"), "r-alice\n").unwrap();
    std::fs::write(d.join("bob.refresh"), "r-bob").unwrap();
    let path = config(
        d,
        &format!(
            "[account.a]\nurl = \"pop://alice@127.0.0.1:{port}\"\nauth = \"XOAUTH2\"\nmaildir = \"{d}/a\"\n\n\
             [account.a.oauth2]\ntoken_url = \"{url}\"\nclient_id = \"client a\"\nclient_secret_command = \"printf 's3cret:x\\\\n'\"\nrefresh_token_file = \"{d}/alice.refresh\"\n\n\
             [account.b]\nurl = \"pop://bob;AUTH=OAUTHBEARER@127.0.0.1:{port}\"\nmaildir = \"{d}/b\"\n\n\
             [account.b.oauth2]\ntoken_url = \"{url}\"\nclient_id = \"public-b\"\nrefresh_token_file = \"{d}/bob.refresh\"\n",
            port = server.port,
            url = endpoint.url(),
            d = d.display(),
        ),
    );
    let path = path.display().to_string();
    assert_eq!(run(&["--config", &path]), ExitKind::Ok);
    assert_eq!(
        (stored_count(&d.join("a")), stored_count(&d.join("b"))),
        (1, 1)
    );
    assert_eq!(server.store.message_count("alice"), 0);
    assert_eq!(server.store.message_count("bob"), 0);

    // The rotated refresh tokens replaced the old ones, readable by the
    // owner only.
    for (file, token) in [
        ("alice.refresh", "r-alice-2\n"),
        ("bob.refresh", "r-bob-2\n"),
    ] {
        let file = d.join(file);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), token);
        #[cfg(unix)]
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }

    let requests = endpoint.stop();
    assert_eq!(requests.len(), 2, "{requests:?}");
    let (a, b) = (&requests[0], &requests[1]);
    // The confidential client authenticates with HTTP Basic, its id and
    // secret form-encoded first (RFC 6749 §2.3.1); the public one names
    // itself in the form.
    assert_eq!(
        a.header("authorization"),
        Some("Basic Y2xpZW50K2E6czNjcmV0JTNBeA==")
    );
    assert_eq!(a.field("client_id"), None);
    assert_eq!(
        a.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(b.header("authorization"), None);
    assert_eq!(b.field("client_id"), Some("public-b"));
    assert_eq!(b.field("refresh_token"), Some("r-bob"));
}

#[test]
fn an_access_token_is_reused_in_memory_until_shortly_before_it_expires() {
    let endpoint = Endpoint::start(|r| {
        let expires = if r.field("refresh_token") == Some("short") {
            30
        } else {
            3600
        };
        (
            200,
            format!(r#"{{"access_token":"t","token_type":"Bearer","expires_in":{expires}}}"#),
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("long"), "long\n").unwrap();
    std::fs::write(d.join("short"), "short\n").unwrap();
    let mut accounts = String::new();
    for name in ["long", "short"] {
        accounts.push_str(&format!(
            "[account.{name}]\nurl = \"pop://u;AUTH=XOAUTH2@127.0.0.1:1\"\nmaildir = \"{d}/m\"\n[account.{name}.oauth2]\ntoken_url = \"{url}\"\nclient_id = \"c\"\nrefresh_token_file = \"{d}/{name}\"\n\n",
            d = d.display(),
            url = endpoint.url()
        ));
    }
    let config = Config::load(&config(d, &accounts)).unwrap();
    for account in &config.accounts {
        for _ in 0..2 {
            assert_eq!(account.password().unwrap(), "t");
        }
    }
    let requests = endpoint.stop();
    let asked: Vec<_> = requests
        .iter()
        .map(|r| r.field("refresh_token").unwrap().to_owned())
        .collect();
    // The long-lived token once; the one expiring within the margin each
    // time. No rotation: the files are untouched.
    assert_eq!(asked, ["long", "short", "short"]);
    assert_eq!(std::fs::read_to_string(d.join("long")).unwrap(), "long\n");
}

#[test]
fn each_refresh_sends_the_refresh_token_the_one_before_rotated_in() {
    // r1 → r2 → r3; an access token that expires within the margin, so
    // that every call refreshes.
    let endpoint = Endpoint::start(|r| {
        let next = match r.field("refresh_token") {
            Some("r1") => "r2",
            Some("r2") => "r3",
            _ => return (400, r#"{"error":"invalid_grant"}"#.into()),
        };
        (
            200,
            format!(
                r#"{{"access_token":"t","token_type":"Bearer","expires_in":30,"refresh_token":"{next}"}}"#
            ),
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("token"), "r1\n").unwrap();
    let text = format!(
        "[account.a]\nurl = \"pop://u;AUTH=OAUTHBEARER@127.0.0.1:1\"\nmaildir = \"{d}/m\"\n[account.a.oauth2]\ntoken_url = \"{url}\"\nclient_id = \"c\"\nrefresh_token_file = \"{d}/token\"\n",
        d = d.display(),
        url = endpoint.url()
    );
    let account = Config::load(&config(d, &text)).unwrap().accounts.remove(0);
    assert_eq!(account.password().unwrap(), "t");
    assert_eq!(account.password().unwrap(), "t");
    let asked: Vec<_> = endpoint
        .stop()
        .iter()
        .map(|r| r.field("refresh_token").unwrap().to_owned())
        .collect();
    assert_eq!(asked, ["r1", "r2"]);
    assert_eq!(std::fs::read_to_string(d.join("token")).unwrap(), "r3\n");
}

#[test]
fn a_revoked_refresh_token_exits_77_asking_to_authorise_again_and_an_endpoint_failure_75() {
    let server = Server::new();
    let endpoint = Endpoint::start(|r| match r.field("refresh_token") {
        Some("down") => (503, "{}".into()),
        _ => rotating(r),
    });
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("revoked"), "r-revoked\n").unwrap();
    std::fs::write(d.join("down"), "down\n").unwrap();
    let account = |name: &str| {
        format!(
            "[account.{name}]\nurl = \"pop://alice;AUTH=XOAUTH2@127.0.0.1:{port}\"\nmaildir = \"{d}/m\"\n[account.{name}.oauth2]\ntoken_url = \"{url}\"\nclient_id = \"c\"\nrefresh_token_file = \"{d}/{name}\"\n\n",
            port = server.port,
            d = d.display(),
            url = endpoint.url()
        )
    };
    let path = config(d, &(account("revoked") + &account("down")));
    let path_text = path.display().to_string();
    assert_eq!(
        run(&["--config", &path_text, "--account", "revoked"]),
        ExitKind::NoPerm
    );
    assert_eq!(
        run(&["--config", &path_text, "--account", "down"]),
        ExitKind::TempFail
    );
    let config = Config::load(&path).unwrap();
    let e = config.accounts[1].password().unwrap_err();
    let message = chain(&e);
    assert!(
        message.contains("invalid_grant: Token has been expired or revoked.")
            && message.contains("authorise the account again")
            && message.contains(&d.join("revoked").display().to_string()),
        "{message}"
    );
    // Nothing was fetched, and the refresh token stays as it was.
    assert_eq!(server.store.message_count("alice"), 1);
    assert_eq!(
        std::fs::read_to_string(d.join("revoked")).unwrap(),
        "r-revoked\n"
    );
    assert_eq!(endpoint.stop().len(), 3);
}

#[test]
fn a_token_commands_output_is_the_token_and_a_failing_one_exits_77_naming_it() {
    let server = Server::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let url = format!("pop://alice;AUTH=OAUTHBEARER@127.0.0.1:{}", server.port);
    let path = config(
        d,
        &format!(
            "[account.good]\nurl = \"{url}\"\nmaildir = \"{d}/m\"\ntoken_command = \"printf 'from-command\\\\nignored'\"\n\n\
             [account.bad]\nurl = \"{url}\"\nmaildir = \"{d}/m\"\ntoken_command = \"exit 3\"\n",
            d = d.display(),
        ),
    );
    let path_text = path.display().to_string();
    assert_eq!(
        run(&["--config", &path_text, "--account", "bad"]),
        ExitKind::NoPerm
    );
    assert_eq!(server.store.message_count("alice"), 1);
    let bad = Config::load(&path).unwrap().accounts.remove(0);
    assert_eq!(bad.name, "bad");
    assert_eq!(
        chain(&bad.password().unwrap_err()),
        "the token command `exit 3` exited with 3"
    );
    assert_eq!(
        run(&["--config", &path_text, "--account", "good"]),
        ExitKind::Ok
    );
    assert_eq!(stored_count(&d.join("m")), 1);
    assert_eq!(server.store.message_count("alice"), 0);

    // The command line's --token-command, for one URL.
    server
        .store
        .add_message("alice", "Subject: second\r\n\r\n2\r\n");
    let md = d.join("m").display().to_string();
    assert_eq!(
        run(&[
            &url,
            "--maildir",
            &md,
            "--delete",
            "--insecure-cleartext-login",
            "--token-command",
            "echo from-command",
        ]),
        ExitKind::Ok
    );
    assert_eq!(stored_count(&d.join("m")), 2);
}

#[test]
fn oauth2_settings_are_checked_with_the_file_line_and_key_and_exit_78() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    let head = "[account.a]\nurl = \"pop://u;AUTH=XOAUTH2@h\"\nmaildir = \"/m\"\n";
    let table = "[account.a.oauth2]\ntoken_url = \"https://id.example/token\"\nclient_id = \"c\"\nrefresh_token_file = \"/r\"\n";
    let cases: Vec<(String, usize, &str, &str)> = vec![
        (
            format!("{head}{table}scope = \"x\"\n"),
            8,
            "account.a.oauth2.scope",
            "unknown field",
        ),
        (
            format!("{head}{}", table.replace("https://id", "http://id")),
            4,
            "account.a.oauth2.token_url",
            "https://",
        ),
        (
            format!("{head}{}", table.replace("client_id = \"c\"\n", "")),
            4,
            "account.a.oauth2.client_id",
            "missing",
        ),
        (
            format!("{head}{table}client_secret = \"s\"\nclient_secret_command = \"c\"\n"),
            4,
            "account.a.oauth2.client_secret_command",
            "only one",
        ),
        (
            format!(
                "{}{table}",
                head.replace(";AUTH=XOAUTH2", "")
                    .replace("/m\"\n", "/m\"\nauth = \"PLAIN\"\n")
            ),
            4,
            "account.a.auth",
            "XOAUTH2",
        ),
        (
            format!(
                "{}token_command = \"t\"\n",
                head.replace(";AUTH=XOAUTH2", "")
            ),
            4,
            "account.a.token_command",
            "OAUTHBEARER",
        ),
        (
            format!("{head}password_command = \"p\"\ntoken_command = \"t\"\n"),
            5,
            "account.a.token_command",
            "only one",
        ),
        (
            format!("{head}import_seen = \"kmail:/x\"\n"),
            4,
            "account.a.import_seen",
            "mpop:FILE",
        ),
    ];
    for (text, line, key, message) in cases {
        std::fs::write(&path, &text).unwrap();
        let e = Config::load(&path).unwrap_err();
        assert_eq!(e.file.as_deref(), Some(path.as_path()), "{text}");
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(line), Some(key)),
            "{text}\n{e}"
        );
        assert!(e.message.contains(message), "{text}\n{e}");
        let p = path.display().to_string();
        assert_eq!(run(&["--config", &p]), ExitKind::Config, "{text}");
    }
}

#[test]
fn the_import_seen_key_takes_another_tools_list_before_each_fetch() {
    let server = Server::new();
    let seen = server
        .store
        .add_message("alice", "Subject: fetched by mpop\r\n\r\nold\r\n");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // mpop's uidls_file: the one message it fetched (and kept).
    let uidls = d.join("mpop_uidls");
    std::fs::write(
        &uidls,
        format!("# mpop\n 1 127.0.0.1 alice\n{}\n", seen.as_str()),
    )
    .unwrap();
    let path = config(
        d,
        &format!(
            "[account.a]\nurl = \"pop://alice;AUTH=XOAUTH2@127.0.0.1:{}\"\nmaildir = \"{}/m\"\ntoken_command = \"echo access-alice\"\ndelete = false\nimport_seen = \"mpop:{}\"\n",
            server.port,
            d.display(),
            uidls.display()
        ),
    );
    assert_eq!(
        run(&["--config", &path.display().to_string()]),
        ExitKind::Ok
    );
    // Only the message mpop had not fetched came down.
    assert_eq!(stored(&d.join("m")), ["Subject: for alice\n\na\n"]);
    assert_eq!(server.store.message_count("alice"), 2);
}
