//! Our own server, started in-process for a test: a plain listener (STLS
//! offered) and an implicit-TLS listener, both on random loopback ports,
//! serving Maildirs in a temporary directory through [`MaildirStore`] and a
//! passwd-file, run on tokio's blocking pool with [`SpawnBlocking`].
//!
//! A private CA signs the server certificate (for `localhost`, `127.0.0.1`
//! and `::1`); its PEM file is written next to the Maildirs for clients.
//! Dropping the [`TestServer`] asks the server to shut down and stops its
//! listeners; sessions still open end with the test's runtime.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pop3_blocking::maildir::MaildirStore;
use pop3_blocking::passwd::PasswdFile;
use pop3_proto::server::ServerConfig;
use pop3_proto::store::MemoryStore;
use pop3_tokio::SpawnBlocking;
use pop3_tokio::server::{Pop3Server, Security, ServerOptions};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Serves `store` in plaintext, plaintext logins allowed, on a random
/// loopback port: the port and the server (to shut it down).
pub async fn serve_memory(store: Arc<MemoryStore>) -> (u16, Pop3Server<MemoryStore>) {
    let config = ServerConfig::default().allow_plaintext_auth(true);
    let server = Pop3Server::build(store, config, None, ServerOptions::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let serving = server.clone();
    tokio::spawn(async move { serving.serve(listener, Security::Plain).await });
    (port, server)
}

/// The server type under test.
pub type Server = Pop3Server<SpawnBlocking<MaildirStore>>;

/// A user of the test server: name, password and stored messages.
#[derive(Clone, Debug)]
struct User {
    name: String,
    passwd_line: String,
    messages: Vec<(String, Vec<u8>)>,
}

/// Builds a [`TestServer`].
#[derive(Clone, Debug, Default)]
pub struct TestServerBuilder {
    users: Vec<User>,
    config: ServerConfig,
    options: ServerOptions,
    tokens: Option<pop3_proto::store::TokenValidator>,
}

impl TestServerBuilder {
    /// No users, the default protocol configuration (plaintext login only
    /// after TLS) and the default adapter options.
    pub fn new() -> Self {
        Self::default()
    }

    /// A user with a `{PLAIN}` password (so APOP and CRAM-MD5 work) and
    /// these messages, stored in this order.
    pub fn user(mut self, name: &str, password: &str, messages: &[(String, Vec<u8>)]) -> Self {
        self.users.push(User {
            name: name.into(),
            passwd_line: format!("{name}:{{PLAIN}}{password}"),
            messages: messages.to_vec(),
        });
        self
    }

    /// A user given by its whole passwd-file line (e.g. a hashed password).
    pub fn user_line(mut self, name: &str, line: &str, messages: &[(String, Vec<u8>)]) -> Self {
        self.users.push(User {
            name: name.into(),
            passwd_line: line.into(),
            messages: messages.to_vec(),
        });
        self
    }

    /// Checks OAuth bearer tokens with `validator` (OAUTHBEARER, XOAUTH2).
    pub fn token_validator(mut self, validator: pop3_proto::store::TokenValidator) -> Self {
        self.tokens = Some(validator);
        self
    }

    /// The protocol configuration.
    pub fn config(mut self, config: ServerConfig) -> Self {
        self.config = config;
        self
    }

    /// Changes the protocol configuration.
    pub fn with_config(mut self, f: impl FnOnce(ServerConfig) -> ServerConfig) -> Self {
        self.config = f(self.config);
        self
    }

    /// Changes the adapter options.
    pub fn with_options(mut self, f: impl FnOnce(&mut ServerOptions)) -> Self {
        f(&mut self.options);
        self
    }

    /// Writes the Maildirs, the passwd-file and the CA, binds both
    /// listeners and starts serving on the current tokio runtime.
    pub async fn start(self) -> TestServer {
        let dir = tempfile::tempdir().expect("temporary directory");
        let root = dir.path().join("mail");
        std::fs::create_dir(&root).expect("create the Maildir root");
        let mut passwd = String::new();
        for user in &self.users {
            passwd.push_str(&user.passwd_line);
            passwd.push('\n');
            write_maildir(&root.join(&user.name), &user.messages);
        }
        let passwd_path = dir.path().join("passwd");
        std::fs::write(&passwd_path, passwd).expect("write the passwd-file");
        let users = PasswdFile::load(&passwd_path).expect("parse the passwd-file");

        let (tls, ca_pem) = test_tls();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, ca_pem).expect("write the CA file");

        let mut maildirs = MaildirStore::new(&root, users);
        if let Some(tokens) = self.tokens {
            maildirs = maildirs.with_token_validator(tokens);
        }
        let store = SpawnBlocking::new(maildirs);
        let server = Pop3Server::build(Arc::new(store), self.config, Some(tls), self.options);

        let plain = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let implicit = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let plain_addr = plain.local_addr().expect("local address");
        let tls_addr = implicit.local_addr().expect("local address");
        let mut listeners = Vec::new();
        for (listener, security) in [(plain, Security::Plain), (implicit, Security::ImplicitTls)] {
            let server = server.clone();
            listeners.push(tokio::spawn(async move {
                server.serve(listener, security).await
            }));
        }
        TestServer {
            server,
            plain_addr,
            tls_addr,
            ca,
            root,
            listeners,
            _dir: dir,
        }
    }
}

/// A running test server; see the module documentation.
pub struct TestServer {
    server: Server,
    plain_addr: SocketAddr,
    tls_addr: SocketAddr,
    ca: PathBuf,
    root: PathBuf,
    listeners: Vec<JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    /// A server with one user holding `messages`, default configuration.
    pub async fn start(user: &str, password: &str, messages: &[(String, Vec<u8>)]) -> TestServer {
        TestServerBuilder::new()
            .user(user, password, messages)
            .start()
            .await
    }

    /// The plain listener (STLS offered).
    pub fn plain_addr(&self) -> SocketAddr {
        self.plain_addr
    }

    /// The implicit-TLS listener.
    pub fn tls_addr(&self) -> SocketAddr {
        self.tls_addr
    }

    /// The CA certificate (PEM) that signed the server certificate.
    pub fn ca(&self) -> PathBuf {
        self.ca.clone()
    }

    /// The server itself (for shutdown and `wait_idle`).
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// The Maildir of `user`.
    pub fn maildir(&self, user: &str) -> PathBuf {
        self.root.join(user)
    }

    /// The base names (unique-ids) of the messages stored for `user`, in
    /// `new/` and `cur/`, sorted.
    pub fn stored(&self, user: &str) -> Vec<String> {
        let mut names = Vec::new();
        for sub in ["new", "cur"] {
            let Ok(entries) = std::fs::read_dir(self.maildir(user).join(sub)) else {
                continue;
            };
            for entry in entries.filter_map(|e| e.ok()) {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue;
                }
                let base = name.split(':').next().unwrap_or(&name).to_string();
                names.push(base);
            }
        }
        names.sort();
        names
    }

    /// Asks the server to shut down (see [`Pop3Server::shutdown`]).
    pub fn shutdown(&self) {
        self.server.shutdown();
    }

    /// Waits until both listeners have stopped accepting (after
    /// [`shutdown`](Self::shutdown)), and checks that they stopped cleanly.
    pub async fn listeners_stopped(&mut self) {
        for handle in self.listeners.drain(..) {
            handle
                .await
                .expect("listener task")
                .expect("listener ended with an error");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.server.shutdown();
        for handle in &self.listeners {
            handle.abort();
        }
    }
}

/// The base name (and unique-id) of message `index` of a test maildrop: the
/// leading time field orders the messages, the name keeps it readable.
pub fn base_name(index: usize, name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{}.M{index}P1.{clean}", 1_700_000_000 + index)
}

/// The unique-ids of `messages` as the test server stores them.
pub fn uids_of(messages: &[(String, Vec<u8>)]) -> Vec<String> {
    messages
        .iter()
        .enumerate()
        .map(|(i, (name, _))| base_name(i, name))
        .collect()
}

/// Delivers `messages` into a new Maildir at `maildir` (`new/`).
fn write_maildir(maildir: &Path, messages: &[(String, Vec<u8>)]) {
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).expect("create Maildir");
    }
    for (index, (name, bytes)) in messages.iter().enumerate() {
        let base = base_name(index, name);
        let tmp = maildir.join("tmp").join(&base);
        std::fs::write(&tmp, bytes).expect("write message");
        std::fs::rename(&tmp, maildir.join("new").join(&base)).expect("deliver message");
    }
}

/// A server TLS configuration whose certificate a fresh CA signed, and the
/// CA certificate as PEM.
pub fn test_tls() -> (Arc<rustls::ServerConfig>, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "pop3-rs test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");

    let key = KeyPair::generate().expect("server key");
    let params = CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ])
    .expect("server certificate parameters");
    let cert = params
        .signed_by(&key, &ca, &ca_key)
        .expect("server certificate");
    let config = pop3_tokio::tls::server_config(
        vec![cert.der().clone(), ca.der().clone()],
        rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .expect("server TLS configuration");
    (config, ca.pem())
}
