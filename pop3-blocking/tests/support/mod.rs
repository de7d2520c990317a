//! What the `fetch` tests share: the blocking server over a memory store on
//! a loopback port, the ways to run the `fetch` command line against it,
//! and what a Maildir holds afterwards.
//!
//! Each test file takes `mod support;` and uses part of it; the items some
//! of them leave unused are marked `#[allow(dead_code)]`. A file adds the
//! constructors and methods only its tests need in its own `impl Server`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use clap::Parser;
use pop3_blocking::cli::{FetchArgs, certificate_hint, chain, fetch_blocking};
use pop3_blocking::fetch::ExitKind;
use pop3_blocking::server::{Pop3Server, Security, ServerOptions};
use pop3_blocking::tls::rustls;
use pop3_proto::server::ServerConfig;
use pop3_proto::store::MemoryStore;

/// The blocking server over a memory store, on a loopback port; stopped
/// and joined on drop.
pub struct Server {
    #[allow(dead_code)]
    pub store: Arc<MemoryStore>,
    pub server: Pop3Server<MemoryStore>,
    pub port: u16,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Serves `store` on a loopback port: over implicit TLS (POP3S) with
    /// `tls`, or else on plain TCP, where logins in clear text are allowed.
    pub fn start(store: Arc<MemoryStore>, tls: Option<Arc<rustls::ServerConfig>>) -> Server {
        let (config, security) = match tls {
            Some(_) => (ServerConfig::default(), Security::ImplicitTls),
            None => (
                ServerConfig::default().allow_plaintext_auth(true),
                Security::Plain,
            ),
        };
        let server = Pop3Server::build(store.clone(), config, tls, ServerOptions::default());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let s = server.clone();
        let thread = thread::spawn(move || s.serve(listener, security).unwrap());
        Server {
            store,
            server,
            port,
            thread: Some(thread),
        }
    }

    /// Plain TCP; alice's maildrop (password `secret-a`) holds `bodies`,
    /// one message each.
    #[allow(dead_code)]
    pub fn with(bodies: &[&str]) -> Server {
        let store = Arc::new(MemoryStore::new());
        store.add_user("alice", "secret-a");
        for b in bodies {
            store.add_message("alice", format!("Subject: {b}\r\n\r\n{b}\r\n"));
        }
        Server::start(store, None)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.server.shutdown();
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

/// `fetch` with `args` (the program's name is put first).
#[allow(dead_code)]
pub fn run(args: &[&str]) -> ExitKind {
    let args = std::iter::once("fetch").chain(args.iter().copied());
    FetchArgs::try_parse_from(args)
        .unwrap()
        .run("fetch", &mut fetch_blocking)
}

/// `fetch URL --maildir DIR` for alice of [`Server::with`], with a USER
/// login and `extra` options.
#[allow(dead_code)]
pub fn fetch(server: &Server, maildir: &Path, extra: &[&str]) -> ExitKind {
    let url = format!("pop://alice@127.0.0.1:{}", server.port);
    let maildir = maildir.display().to_string();
    let mut args = vec![
        url.as_str(),
        "--maildir",
        &maildir,
        "--auth",
        "USER",
        "--insecure-cleartext-login",
        "--password-command",
        "echo secret-a",
        "-q",
    ];
    args.extend_from_slice(extra);
    run(&args)
}

/// The command line fetching alice's mail (password `secret`) from a POP3S
/// `server` into `maildir`, deleting it, with `extra` options.
#[allow(dead_code)]
pub fn pops_args(server: &Server, maildir: &Path, extra: &[&str]) -> FetchArgs {
    let url = format!("pops://alice@127.0.0.1:{}", server.port);
    let maildir = maildir.display().to_string();
    let base = [
        "fetch",
        url.as_str(),
        "--maildir",
        &maildir,
        "--password-command",
        "echo secret",
        "--delete",
    ];
    FetchArgs::try_parse_from(base.iter().chain(extra)).unwrap()
}

/// The certificate hint for the failure of the first account of `args`
/// (password `secret`), as `fetch` prints it.
#[allow(dead_code)]
pub fn hint(args: &FetchArgs) -> String {
    let account = args.accounts().unwrap().remove(0);
    let sink = account.open_sink().unwrap();
    let (_, result) = fetch_blocking(&account.url, "secret", &account.settings, sink, &mut |_| {});
    let e = result.unwrap_err();
    certificate_hint(&e).unwrap_or_else(|| panic!("no hint for {}", chain(&e)))
}

/// Writes `config.toml` in `dir`: `[defaults]` with `defaults` (TOML
/// lines), logins in clear text allowed (plain loopback), deleting, and the
/// journals kept in `dir`; then `accounts`.
#[allow(dead_code)]
pub fn config(dir: &Path, defaults: &str, accounts: &str) -> PathBuf {
    let path = dir.join("config.toml");
    let text = format!(
        "[defaults]\n{defaults}insecure_cleartext_login = true\ndelete = true\nstate_dir = \"{}\"\n\n{accounts}",
        dir.join("state").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// The messages in the Maildir's new/, sorted; none if there is no new/.
#[allow(dead_code)]
pub fn stored(maildir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(maildir.join("new"))
        .map(|d| {
            d.map(|e| String::from_utf8(std::fs::read(e.unwrap().path()).unwrap()).unwrap())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// How many messages the Maildir's new/ holds.
#[allow(dead_code)]
pub fn stored_count(maildir: &Path) -> usize {
    std::fs::read_dir(maildir.join("new")).map_or(0, Iterator::count)
}
