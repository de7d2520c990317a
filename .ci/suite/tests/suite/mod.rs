//! The behavioural suite every runtime adapter runs: written once against a
//! small blocking facade ([`Runtime`], [`Client`]) that each runtime's test
//! file implements, and instantiated with [`runtime_suite!`] for a client
//! runtime and a server runtime (its own, and one other).
//!
//! Scenarios: every command over plain, STLS and implicit TLS; a pipelined
//! batch; a 200 MB message streamed through client and server in bounded
//! memory; the reply timeout; the peer vanishing mid-RETR (nothing
//! deleted); 100 concurrent clients under a connection cap; a graceful
//! shutdown mid-session (no commit); fetch into a Maildir, then deletion;
//! metrics scraped during a session and after it; caps lowered while
//! serving; a PROXY listener beside a plain one, and PROXY connections
//! counted under the cap before their header is read.
//!
//! The scenarios that concern the store get theirs from a [`Backend`]:
//! [`Memory`] here, PostgreSQL in `pg_backend.rs`; a scenario sees the
//! store only through its [`World`] (the server, and [`Mailstore`] to
//! look at the mail and deliver more).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pop3_blocking::common::{ConnectOptions, FetchSettings, Gate as Caps, SessionLimits};
use pop3_blocking::metrics::Metrics;
use pop3_blocking::sink::MaildirSink;
use pop3_blocking::tls::TlsVerification;
use pop3_proto::client::{Error, ProtocolError, Security};
use pop3_proto::fetch::{FetchError, FetchOptions, FetchReport};
use pop3_proto::proxy::ProxyPolicy;
use pop3_proto::response::{Capability, ScanLine, StatReply, UidLine};
use pop3_proto::server::{ServerConfig, ServerOptions};
use pop3_proto::store::{
    BlockingStore, CredentialForms, Maildrop, MemoryStore, MessageInfo, MessageReader, Store,
    StoreError, Update,
};
use pop3_proto::types::{MessageNumber, Secret, Uid};
use pop3_proto::url::PopUrl;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};

/// A running server: its listeners and how to stop it.
pub struct Served {
    /// Plain POP3 (STLS offered).
    pub plain: SocketAddr,
    /// Implicit TLS.
    pub tls: SocketAddr,
    /// Asks the server to shut down (stop accepting, cut sessions after
    /// the grace).
    pub shutdown: Box<dyn Fn() + Send + Sync>,
    /// Blocks until every session has ended.
    pub wait_idle: Box<dyn Fn() + Send + Sync>,
    /// A third listener (plain) with the PROXY policy of
    /// [`Extras::proxy_listener`], when asked for.
    pub proxied: Option<SocketAddr>,
}

/// What a scenario asks of a server besides its store and options.
#[derive(Default)]
pub struct Extras {
    /// Count in these metrics.
    pub metrics: Option<Arc<Metrics>>,
    /// Admit under these caps (which the scenario may change).
    pub gate: Option<Caps>,
    /// Serve a third listener, plain, whose connections start with a PROXY
    /// header from these sources (the other two follow
    /// `ServerOptions::proxy_protocol`).
    pub proxy_listener: Option<ProxyPolicy>,
}

impl Drop for Served {
    fn drop(&mut self) {
        (self.shutdown)();
    }
}

/// A runtime's server and client, behind blocking calls.
pub trait Runtime: 'static {
    /// Its client.
    type Client: Client;
    /// Serves `store` on two loopback listeners (plain, implicit TLS).
    fn serve<S: Store + 'static>(
        store: Arc<S>,
        config: ServerConfig,
        tls: Arc<rustls::ServerConfig>,
        options: ServerOptions,
    ) -> Served
    where
        S::Maildrop: 'static,
    {
        Self::serve_with(store, config, tls, options, Extras::default())
    }
    /// [`Runtime::serve`] with `extras`.
    fn serve_with<S: Store + 'static>(
        store: Arc<S>,
        config: ServerConfig,
        tls: Arc<rustls::ServerConfig>,
        options: ServerOptions,
        extras: Extras,
    ) -> Served
    where
        S::Maildrop: 'static;
    /// Serves a blocking store (such as the PostgreSQL one) the way this
    /// runtime's servers do: its calls off the reactor, or on the session's
    /// own thread.
    fn serve_blocking<S: BlockingStore>(
        store: S,
        config: ServerConfig,
        tls: Arc<rustls::ServerConfig>,
        options: ServerOptions,
    ) -> Served;
    /// Connects to 127.0.0.1 at `addr`.
    fn connect(addr: SocketAddr, options: ConnectOptions) -> Result<Self::Client, Error>;
}

/// A runtime's client, behind blocking calls.
pub trait Client: Send + Sized + 'static {
    /// `CAPA`.
    fn capa(&mut self) -> Result<Vec<Capability>, Error>;
    /// The cached capabilities.
    fn capabilities(&self) -> Option<Vec<Capability>>;
    /// Whether TLS is on.
    fn is_tls(&self) -> bool;
    /// Whether commands are pipelined.
    fn is_pipelining(&self) -> bool;
    /// Whether the greeting had an APOP timestamp.
    fn has_timestamp(&self) -> bool;
    /// `USER`/`PASS`.
    fn login(&mut self, user: &str, password: &str) -> Result<(), Error>;
    /// `APOP`.
    fn apop(&mut self, user: &str, password: &str) -> Result<(), Error>;
    /// `AUTH PLAIN`.
    fn auth_plain(&mut self, user: &str, password: &str) -> Result<(), Error>;
    /// `STAT`.
    fn stat(&mut self) -> Result<StatReply, Error>;
    /// `LIST`.
    fn list(&mut self) -> Result<Vec<ScanLine>, Error>;
    /// `LIST n`.
    fn list_one(&mut self, msg: MessageNumber) -> Result<ScanLine, Error>;
    /// `UIDL`.
    fn uidl(&mut self) -> Result<Vec<UidLine>, Error>;
    /// `UIDL n`.
    fn uidl_one(&mut self, msg: MessageNumber) -> Result<UidLine, Error>;
    /// `RETR n`, streamed chunk by chunk into `out`.
    fn retr(&mut self, msg: MessageNumber, out: &mut dyn Write) -> Result<u64, Error>;
    /// `RETR n`: reads `n` octets of the body, then drops the reader.
    fn retr_partly(&mut self, msg: MessageNumber, n: usize) -> Result<Vec<u8>, Error>;
    /// `TOP n lines`.
    fn top(&mut self, msg: MessageNumber, lines: u64) -> Result<Vec<u8>, Error>;
    /// Pipelined `RETR` of `msgs`: each body, or the error for it.
    fn retr_many(&mut self, msgs: Vec<MessageNumber>)
    -> Result<Vec<Result<Vec<u8>, Error>>, Error>;
    /// `DELE n`.
    fn dele(&mut self, msg: MessageNumber) -> Result<(), Error>;
    /// Pipelined `DELE`; how many were accepted.
    fn dele_many(&mut self, msgs: Vec<MessageNumber>) -> Result<usize, Error>;
    /// `RSET`.
    fn rset(&mut self) -> Result<(), Error>;
    /// `NOOP`.
    fn noop(&mut self) -> Result<(), Error>;
    /// `QUIT`.
    fn quit(&mut self) -> Result<(), Error>;
    /// `UTF8`.
    fn utf8(&mut self) -> Result<(), Error>;
    /// Bare `LANG`: how many languages.
    fn lang(&mut self) -> Result<usize, Error>;
    /// `LANG *`.
    fn set_default_lang(&mut self) -> Result<(), Error>;
    /// The fetch driver on this logged-in session; the sink comes back
    /// (the smol/async-std driver takes it by value to run its disk work on
    /// the thread pool).
    fn fetch(
        &mut self,
        sink: MaildirSink,
        options: &FetchOptions,
    ) -> (MaildirSink, Result<FetchReport, FetchError>);
}

/// The whole fetch of a runtime: connect, log in, fetch.
pub trait FetchUrl {
    /// `fetch::run` from a URL; the sink comes back.
    fn fetch_url(
        url: &PopUrl,
        password: &str,
        settings: &FetchSettings,
        sink: MaildirSink,
    ) -> (MaildirSink, Result<FetchReport, FetchError>);
}

/// A private CA and a leaf for localhost and 127.0.0.1 signed by it.
pub struct Pki {
    /// The server's configuration.
    pub server: Arc<rustls::ServerConfig>,
    /// The CA, for clients.
    pub roots: Arc<RootCertStore>,
}

pub fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf_params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let chain = vec![CertificateDer::from(leaf.der().to_vec())];
    let server = pop3_blocking::tls::server_config(chain, key).unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(ca.der().to_vec())).unwrap();
    Pki {
        server,
        roots: Arc::new(roots),
    }
}

pub fn msg(n: u32) -> MessageNumber {
    MessageNumber::new(n).unwrap()
}

pub fn numbers(n: usize) -> Vec<MessageNumber> {
    (1..=n as u32).map(msg).collect()
}

/// Messages with dot lines, a long line and a big one.
pub fn messages() -> Vec<Vec<u8>> {
    let mut big = b"Subject: big\r\n\r\n".to_vec();
    for i in 0..60_000 {
        if i % 10 == 0 {
            big.extend_from_slice(b".");
        }
        big.extend_from_slice(format!("line {i:08} of the big message\r\n").as_bytes());
    }
    vec![
        b"Subject: one\r\n\r\nHello\r\n".to_vec(),
        b"Subject: dots\r\n\r\n.\r\n..\r\n.x\r\nend\r\n".to_vec(),
        big,
        format!("Subject: long\r\n\r\n{}\r\n", "y".repeat(100_000)).into_bytes(),
    ]
}

/// One account of a scenario's store: its name, password and messages.
pub struct Account<'a> {
    pub name: &'a str,
    pub password: &'a str,
    pub messages: &'a [Vec<u8>],
}

/// What a scenario sees of the store behind the server: its mail, from
/// outside the sessions.
pub trait Mailstore: Send + Sync {
    /// How many messages `user` has.
    fn message_count(&self, user: &str) -> usize;
    /// The contents of `user`'s messages, in delivery order.
    fn messages(&self, user: &str) -> Vec<Vec<u8>>;
    /// Delivers `message` to `user`, outside any session.
    fn deliver(&self, user: &str, message: &[u8]);
    /// Whether `user`'s maildrop is free once the sessions that ended have
    /// let go of it (a store that lets go in the background gets up to
    /// 20 s).
    fn is_released(&self, user: &str) -> bool;
}

/// A kind of store the scenarios run over: it makes a fresh store holding
/// the given accounts, and serves it on a runtime.
pub trait Backend: 'static {
    /// A new store with `accounts`, served by `R` with the configuration
    /// `config` makes from the store's and with `options`.
    fn world<R: Runtime>(
        accounts: &[Account<'_>],
        config: impl FnOnce(ServerConfig) -> ServerConfig,
        options: ServerOptions,
    ) -> World;
}

/// A scenario's store and server.
pub struct World {
    /// Declared first: the server is told to stop before the store goes.
    pub served: Served,
    pub store: Box<dyn Mailstore>,
    pub pki: Pki,
}

/// The memory store (`pop3_proto::store::MemoryStore`), served natively.
pub struct Memory;

impl Mailstore for Arc<MemoryStore> {
    fn message_count(&self, user: &str) -> usize {
        MemoryStore::message_count(self, user)
    }
    fn messages(&self, user: &str) -> Vec<Vec<u8>> {
        MemoryStore::messages(self, user)
            .iter()
            .map(|m| m.to_vec())
            .collect()
    }
    fn deliver(&self, user: &str, message: &[u8]) {
        self.add_message(user, message.to_vec());
    }
    fn is_released(&self, user: &str) -> bool {
        !self.is_locked(user)
    }
}

impl Backend for Memory {
    fn world<R: Runtime>(
        accounts: &[Account<'_>],
        config: impl FnOnce(ServerConfig) -> ServerConfig,
        options: ServerOptions,
    ) -> World {
        let store = Arc::new(MemoryStore::new());
        for a in accounts {
            store.add_user(a.name, a.password);
            for m in a.messages {
                store.add_message(a.name, m.clone());
            }
        }
        let pki = pki();
        let config = config(ServerConfig::for_store(store.as_ref()).allow_plaintext_auth(true));
        let served = R::serve(store.clone(), config, pki.server.clone(), options);
        World {
            served,
            store: Box::new(store),
            pki,
        }
    }
}

/// A store of backend `B` for `alice` (password `secret`) holding `msgs`,
/// served by `R` with `options`.
pub fn world<B: Backend, R: Runtime>(msgs: &[Vec<u8>], options: ServerOptions) -> World {
    B::world::<R>(&alice(msgs), |c| c, options)
}

/// `alice` (password `secret`) holding `msgs`.
pub fn alice(msgs: &[Vec<u8>]) -> [Account<'_>; 1] {
    [Account {
        name: "alice",
        password: "secret",
        messages: msgs,
    }]
}

/// [`world`] over the memory store, with `extras`.
pub fn world_with<R: Runtime>(msgs: &[Vec<u8>], options: ServerOptions, extras: Extras) -> World {
    let store = Arc::new(MemoryStore::new());
    store.add_user("alice", "secret");
    for m in msgs {
        store.add_message("alice", m.clone());
    }
    let pki = pki();
    let config = ServerConfig::for_store(store.as_ref())
        .allow_plaintext_auth(true)
        .auth_failure_delay(Duration::ZERO);
    let served = R::serve_with(store.clone(), config, pki.server.clone(), options, extras);
    World {
        served,
        store: Box::new(store),
        pki,
    }
}

pub fn options(security: Security, roots: &Arc<RootCertStore>) -> ConnectOptions {
    let mut o = ConnectOptions::new(security);
    // Loopback: clear-text logins are allowed for the plain scenarios.
    o.session.insecure_cleartext_login = true;
    o.verification = TlsVerification::Roots(roots.clone());
    o
}

fn connect<C: Runtime>(w: &World, security: Security) -> C::Client {
    let addr = if security == Security::ImplicitTls {
        w.served.tls
    } else {
        w.served.plain
    };
    C::connect(addr, options(security, &w.pki.roots))
        .unwrap_or_else(|e| panic!("{security:?}: {e}"))
}

fn logged_in<C: Runtime>(w: &World) -> C::Client {
    let mut c = connect::<C>(w, Security::Plain);
    c.login("alice", "secret").unwrap();
    c
}

/// Every command, with exact results, over `security`.
pub fn every_command<B: Backend, C: Runtime, S: Runtime>(security: Security) {
    let msgs = messages();
    let w = world::<B, S>(&msgs, ServerOptions::default());
    let mut client = connect::<C>(&w, security);
    assert_eq!(client.is_tls(), security != Security::Plain);
    assert!(client.has_timestamp());
    let caps = client.capabilities().expect("CAPA");
    assert!(caps.contains(&Capability::Pipelining), "{caps:?}");
    assert_eq!(
        caps.contains(&Capability::Stls),
        security == Security::Plain
    );
    assert_eq!(client.capa().unwrap(), caps);
    match security {
        Security::Plain => client.login("alice", "secret").unwrap(),
        Security::StartTls => client.apop("alice", "secret").unwrap(),
        _ => client.auth_plain("alice", "secret").unwrap(),
    }
    assert!(client.is_pipelining());
    let stat = client.stat().unwrap();
    assert_eq!(stat.count as usize, msgs.len());
    assert_eq!(stat.size, msgs.iter().map(|m| m.len() as u64).sum::<u64>());
    let list = client.list().unwrap();
    assert_eq!(list.len(), msgs.len());
    let uidl = client.uidl().unwrap();
    assert_eq!(uidl.len(), msgs.len());
    assert_eq!(client.uidl_one(msg(2)).unwrap().uid, uidl[1].uid);
    assert_eq!(client.list_one(msg(3)).unwrap(), list[2]);
    for (i, m) in msgs.iter().enumerate() {
        let mut got = Vec::new();
        let n = client.retr(msg(i as u32 + 1), &mut got).unwrap();
        assert_eq!(&got, m, "RETR {}", i + 1);
        assert_eq!(n, list[i].size);
    }
    assert_eq!(
        client.top(msg(2), 1).unwrap(),
        b"Subject: dots\r\n\r\n.\r\n"
    );
    client.noop().unwrap();
    client.dele(msg(1)).unwrap();
    assert!(matches!(
        client.retr(msg(1), &mut Vec::new()),
        Err(Error::Server(_))
    ));
    client.rset().unwrap();
    assert_eq!(client.dele_many(numbers(2)).unwrap(), 2);
    client.rset().unwrap();
    let err = client.login("alice", "secret").unwrap_err();
    assert!(matches!(err, Error::Command(_)), "{err:?}");
    client.quit().unwrap();
    assert_eq!(w.store.message_count("alice"), msgs.len());
}

/// A pipelined batch: every body in order, the window kept full.
pub fn pipelined_batch<B: Backend, C: Runtime, S: Runtime>() {
    let msgs: Vec<Vec<u8>> = (0..200)
        .map(|i| format!("Subject: {i}\r\n\r\n.dot {i}\r\nbody\r\n").into_bytes())
        .collect();
    let w = world::<B, S>(&msgs, ServerOptions::default());
    let mut client = logged_in::<C>(&w);
    assert!(client.is_pipelining());
    let bodies = client.retr_many(numbers(msgs.len())).unwrap();
    assert_eq!(bodies.len(), msgs.len());
    for (got, want) in bodies.into_iter().zip(&msgs) {
        assert_eq!(&got.unwrap(), want);
    }
    // A body abandoned half-read: the next command still gets its own reply.
    let part = client.retr_partly(msg(3), 4).unwrap();
    assert_eq!(part, &msgs[2][..4]);
    assert_eq!(client.stat().unwrap().count as usize, msgs.len());
    assert_eq!(client.dele_many(numbers(msgs.len())).unwrap(), msgs.len());
    client.quit().unwrap();
    assert_eq!(w.store.message_count("alice"), 0);
}

/// One user with one message of `size` octets made as it is read: the
/// message never exists whole in memory.
pub struct GeneratedStore {
    size: u64,
}

/// The generated message's line `i` (80 octets, every 7th starting with a dot).
fn generated_line(i: u64) -> [u8; 80] {
    let mut line = [b'a' + (i % 26) as u8; 80];
    if i % 7 == 0 {
        line[0] = b'.';
    }
    let n = format!("{i:016}");
    line[1..17].copy_from_slice(n.as_bytes());
    line[78] = b'\r';
    line[79] = b'\n';
    line
}

pub struct GeneratedDrop {
    messages: Vec<MessageInfo>,
}

pub struct GeneratedReader {
    next: u64,
    lines: u64,
}

impl Store for GeneratedStore {
    type Maildrop = GeneratedDrop;

    fn credential_forms(&self) -> CredentialForms {
        CredentialForms::new(true, false)
    }

    async fn verify_password(&self, user: &str, password: &Secret) -> Result<bool, StoreError> {
        Ok(user == "big" && password.expose() == b"big")
    }

    async fn shared_secret(&self, _user: &str) -> Result<Option<Secret>, StoreError> {
        Ok(None)
    }

    async fn open(&self, _user: &str) -> Result<GeneratedDrop, StoreError> {
        Ok(GeneratedDrop {
            messages: vec![MessageInfo {
                size: self.size / 80 * 80,
                uid: Uid::new(Bytes::from_static(b"generated")).unwrap(),
            }],
        })
    }
}

impl Maildrop for GeneratedDrop {
    type Reader = GeneratedReader;

    fn messages(&self) -> &[MessageInfo] {
        &self.messages
    }

    async fn read(&mut self, _index: usize) -> Result<GeneratedReader, StoreError> {
        Ok(GeneratedReader {
            next: 0,
            lines: self.messages[0].size / 80,
        })
    }

    async fn commit(self, _update: Update) -> Result<(), StoreError> {
        Ok(())
    }
}

impl MessageReader for GeneratedReader {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, StoreError> {
        if self.next >= self.lines {
            return Ok(None);
        }
        let end = (self.next + 800).min(self.lines);
        let mut chunk = Vec::with_capacity(((end - self.next) * 80) as usize);
        for i in self.next..end {
            chunk.extend_from_slice(&generated_line(i));
        }
        self.next = end;
        Ok(Some(chunk.into()))
    }
}

/// The process's peak resident set (VmHWM), in KiB.
fn peak_rss_kib() -> u64 {
    status_kib("VmHWM:")
}

/// A memory figure of this process from `/proc/self/status`, in KiB.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/self/status"))
}

/// A hashing writer: what was received, without keeping it.
struct Hashing(Sha256, u64);

impl Write for Hashing {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        self.1 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// 200 MB through server and client: byte-exact, and the process's peak
/// memory grows far less than the message.
pub fn large_message_streams<C: Runtime, S: Runtime>() {
    const SIZE: u64 = 200_000_000;
    let store = Arc::new(GeneratedStore { size: SIZE });
    let pki = pki();
    let config = ServerConfig::default().allow_plaintext_auth(true);
    let served = S::serve(store, config, pki.server.clone(), ServerOptions::default());
    let mut client = C::connect(served.plain, options(Security::Plain, &pki.roots)).unwrap();
    client.login("big", "big").unwrap();
    let mut want = Sha256::new();
    for i in 0..SIZE / 80 {
        want.update(generated_line(i));
    }
    let _alone = measuring_memory();
    // The peak so far is forgotten (Linux: "5" resets VmHWM), so that an
    // earlier, larger peak cannot hide this one.
    std::fs::write("/proc/self/clear_refs", "5").expect("reset the peak RSS");
    let before = peak_rss_kib();
    let mut got = Hashing(Sha256::new(), 0);
    let n = client.retr(msg(1), &mut got).unwrap();
    let grown = peak_rss_kib().saturating_sub(before);
    assert_eq!(n, SIZE / 80 * 80);
    assert_eq!(got.1, n);
    assert_eq!(got.0.finalize(), want.finalize());
    assert!(
        grown < 48 * 1024,
        "peak RSS grew by {grown} KiB for a 200 MB message"
    );
    client.quit().unwrap();
}

/// A server that greets, then never answers: the reply timeout fires.
pub fn reply_timeout<C: Runtime>() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.write_all(b"+OK hi\r\n").unwrap();
        // Read until the client gives up and closes.
        let mut sink = [0u8; 512];
        while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
    });
    let mut o = ConnectOptions::new(Security::Plain);
    o.read_capabilities = false;
    o.session.reply_timeout = Some(Duration::from_millis(300));
    let mut client = C::connect(addr, o).unwrap();
    let err = client.capa().unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");
    drop(client);
    server.join().unwrap();
}

/// The client vanishes in the middle of a RETR after a DELE: nothing is
/// deleted.
pub fn peer_vanishing_mid_retr_deletes_nothing<B: Backend, C: Runtime, S: Runtime>() {
    let msgs = messages();
    let w = world::<B, S>(&msgs, ServerOptions::default());
    let mut client = logged_in::<C>(&w);
    client.dele(msg(1)).unwrap();
    let part = client.retr_partly(msg(3), 100).unwrap();
    assert_eq!(part, &msgs[2][..100]);
    drop(client);
    (w.served.shutdown)();
    (w.served.wait_idle)();
    assert_eq!(w.store.message_count("alice"), msgs.len());
    assert!(w.store.is_released("alice"));
}

/// Held by the scenarios that measure this process's memory or use much
/// of it (and descriptors), so that they never overlap in one test process.
fn measuring_memory() -> std::sync::MutexGuard<'static, ()> {
    static MEASURING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    MEASURING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The resident memory of this process, in KiB.
fn rss_kib() -> u64 {
    status_kib("VmRSS:")
}

/// A TCP connection to `to` from the loopback address `127.0.0.<from>`
/// (standing for another client).
fn connect_from(from: [u8; 3], to: SocketAddr) -> std::net::TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::from(([127, from[0], from[1], from[2]], 0)).into())
        .unwrap();
    socket
        .connect_timeout(&to.into(), Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("connect from 127.{}.{}.{}: {e}", from[0], from[1], from[2]));
    socket.into()
}

/// A whole session of client `C` (login, STAT, QUIT) while the idle
/// connections are held.
fn fresh_session<C: Runtime>(w: &World) {
    let mut o = options(Security::Plain, &w.pki.roots);
    o.connect_timeout = Duration::from_secs(10);
    o.session.reply_timeout = Some(Duration::from_secs(10));
    let mut c = C::connect(w.served.plain, o).expect("a fresh client is greeted");
    c.login("alice", "secret").unwrap();
    assert_eq!(c.stat().unwrap().count, 4);
    c.quit().unwrap();
}

/// Idle connections do not starve other clients: 2,000 from one other
/// address (its 32 admitted, the rest refused with `[SYS/TEMP]` at once),
/// then 2,000 from 200 addresses holding 10 each (all admitted); a fresh
/// session from 127.0.0.1 completes meanwhile, and the idle sessions cost
/// bounded memory.
pub fn idle_floods_do_not_starve_a_fresh_session<B: Backend, C: Runtime, S: Runtime>() {
    // Both ends' descriptors count against one limit, and the memory is
    // measured.
    let _alone = measuring_memory();
    let started = std::time::Instant::now();
    let msgs = messages();
    let w = world::<B, S>(&msgs, ServerOptions::default());
    let to = w.served.plain;

    let one: Vec<_> = (0..2000).map(|_| connect_from([0, 0, 2], to)).collect();
    eprintln!(
        "2,000 connections from one address after {:?}",
        started.elapsed()
    );
    fresh_session::<C>(&w);
    eprintln!("fresh session done after {:?}", started.elapsed());
    // Those beyond the per-address cap were told why and closed.
    let mut refused = 0;
    for mut s in one.into_iter().rev().take(100) {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut text = Vec::new();
        let _ = s.read_to_end(&mut text);
        if text.starts_with(b"-ERR [SYS/TEMP] Too many connections from your address") {
            refused += 1;
        }
    }
    assert_eq!(
        refused, 100,
        "the last connections of one address are refused"
    );

    let before = rss_kib();
    let many: Vec<_> = (0..2000u32)
        .map(|i| {
            let host = 1 + i / 10;
            connect_from([1, (host >> 8) as u8, host as u8], to)
        })
        .collect();
    // Each is greeted: the server holds them all.
    for s in &many {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut greeting = [0u8; 3];
        (&*s).read_exact(&mut greeting).unwrap();
        assert_eq!(&greeting, b"+OK");
    }
    let per_connection = rss_kib().saturating_sub(before) * 1024 / 2000;
    eprintln!(
        "2,000 from 200 addresses greeted after {:?}",
        started.elapsed()
    );
    fresh_session::<C>(&w);
    eprintln!("fresh session done after {:?}", started.elapsed());
    eprintln!("idle sessions: {per_connection} octets of resident memory each");
    assert!(
        per_connection <= 64 * 1024,
        "{per_connection} octets per idle connection"
    );
    drop(many);
}

/// A raw client: lines in, lines out, no protocol of its own.
struct Raw {
    reader: std::io::BufReader<std::net::TcpStream>,
    writer: std::net::TcpStream,
}

impl Raw {
    fn connect(addr: SocketAddr) -> Raw {
        let stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut raw = Raw {
            reader: std::io::BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        };
        assert!(raw.line().unwrap().starts_with("+OK"), "greeting");
        raw
    }

    /// The next line without CRLF; `None` once the server closed.
    fn line(&mut self) -> Option<String> {
        use std::io::BufRead;
        let mut line = Vec::new();
        match self.reader.read_until(b'\n', &mut line) {
            Ok(0) => None,
            Ok(_) => Some(String::from_utf8_lossy(&line).trim_end().to_owned()),
            Err(e) => panic!("no line from the server: {e}"),
        }
    }

    fn send(&mut self, octets: &[u8]) {
        self.writer.write_all(octets).unwrap();
    }

    fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.line().expect("a reply")
    }

    fn login(&mut self) {
        assert!(self.cmd("USER alice").starts_with("+OK"));
        assert!(self.cmd("PASS secret").starts_with("+OK"));
    }
}

/// Bad input of every kind gets a clear `-ERR` (or a close at a documented
/// limit), other clients are served meanwhile, and nothing is deleted.
pub fn hostile_input_gets_clear_errors_and_deletes_nothing<B: Backend, S: Runtime>() {
    let msgs = messages();
    let w = world::<B, S>(&msgs, ServerOptions::default());
    let addr = w.served.plain;

    // Over-long lines, NUL and 8-bit octets, numbers out of range: each a
    // plain -ERR, and the session goes on (20 bad commands allowed after
    // login).
    let mut raw = Raw::connect(addr);
    raw.login();
    let long = format!("NOOP {}", "x".repeat(100_000));
    assert_eq!(raw.cmd(&long), "-ERR Command line too long.");
    raw.send(b"NO\0OP\r\n");
    assert!(raw.line().unwrap().starts_with("-ERR"), "NUL");
    raw.send(b"RETR \xff\xfe\r\n");
    assert!(raw.line().unwrap().starts_with("-ERR"), "8-bit");
    for n in ["0", "-1", "18446744073709551616", "1x", "+1", " 1", "99"] {
        let reply = raw.cmd(&format!("RETR {n}"));
        assert!(reply.starts_with("-ERR"), "RETR {n:?}: {reply}");
    }
    // Commands of the other state.
    for c in [
        "USER bob",
        "PASS x",
        "APOP alice 0123456789abcdef0123456789abcdef",
        "AUTH PLAIN",
        "STLS",
        "UTF8",
    ] {
        let reply = raw.cmd(c);
        assert!(reply.starts_with("-ERR"), "{c} in TRANSACTION: {reply}");
    }
    assert!(raw.cmd("DELE 1").starts_with("+OK"));
    // The session is still good: STAT answers, and the DELE is forgotten
    // when the connection just drops.
    assert!(raw.cmd("STAT").starts_with("+OK 3 "));
    drop(raw);

    // Before login: commands of TRANSACTION, then the bad-command limit.
    let mut raw = Raw::connect(addr);
    for c in ["STAT", "LIST", "RETR 1"] {
        let reply = raw.cmd(c);
        assert!(reply.starts_with("-ERR"), "{c} in AUTHORIZATION: {reply}");
    }
    assert_eq!(raw.line().as_deref(), Some("-ERR Too many bad commands."));
    assert_eq!(raw.line(), None, "closed at the limit");

    // SASL: invalid base64, and a 1 MB response line.
    let mut raw = Raw::connect(addr);
    assert!(raw.cmd("AUTH PLAIN").starts_with("+"));
    assert!(raw.cmd("not base64!").starts_with("-ERR"), "invalid base64");
    assert!(raw.cmd("AUTH PLAIN").starts_with("+"));
    let huge = "A".repeat(1 << 20);
    assert!(raw.cmd(&huge).starts_with("-ERR"), "a 1 MB SASL line");
    drop(raw);

    // STLS with plaintext behind it in the same write: the plaintext is
    // never executed (the server waits for a handshake that never comes).
    let mut raw = Raw::connect(addr);
    raw.send(b"STLS\r\nUSER alice\r\nPASS secret\r\nDELE 1\r\nQUIT\r\n");
    assert!(raw.line().unwrap().starts_with("+OK"), "STLS accepted");
    raw.writer.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(raw.line(), None, "nothing answered in plaintext after STLS");

    // Meanwhile (and after), other clients are served.
    let mut other = Raw::connect(addr);
    other.login();
    assert!(other.cmd("STAT").starts_with("+OK 4 "));
    assert!(other.cmd("QUIT").starts_with("+OK"));
    assert_eq!(w.store.message_count("alice"), msgs.len());
}

/// Every command in every state where it does not belong gets the exact
/// state `-ERR`, and the session goes on as if it had not been sent: the
/// login still works, and only the DELE'd message is removed at QUIT.
pub fn every_command_in_every_wrong_state_is_refused<B: Backend, S: Runtime>() {
    const WRONG: &str = "-ERR Command not valid in this state.";
    const TRANSACTION_ONLY: [&str; 11] = [
        "STAT", "LIST", "LIST 1", "RETR 1", "DELE 1", "NOOP", "RSET", "TOP 1 1", "UIDL", "UIDL 1",
        "LAST",
    ];
    let msgs = messages();
    let w = world::<B, S>(&msgs, ServerOptions::default());
    let addr = w.served.plain;
    for c in TRANSACTION_ONLY {
        // Right after the greeting, then after a successful USER (which the
        // wrong command voids: PASS must follow USER directly).
        let mut raw = Raw::connect(addr);
        let reply = raw.cmd(c);
        if c == "LAST" {
            // Not a command of this server at all (RFC 1725 only).
            assert!(reply.starts_with("-ERR"), "{c} in AUTHORIZATION: {reply}");
        } else {
            assert_eq!(reply, WRONG, "{c} in AUTHORIZATION");
        }
        raw.login();
        let all = format!("+OK {} ", msgs.len());
        assert!(raw.cmd("STAT").starts_with(&all), "logged in after {c}");
        assert!(raw.cmd("QUIT").starts_with("+OK"));
        // A new session (two bad commands stay under the limit of three
        // before login).
        let mut raw = Raw::connect(addr);
        assert!(raw.cmd("USER alice").starts_with("+OK"));
        assert!(raw.cmd(c).starts_with("-ERR"), "{c} after USER");
        assert_eq!(
            raw.cmd("PASS secret"),
            "-ERR PASS must follow a successful USER.",
            "PASS after USER and {c}"
        );
        raw.login();
        assert!(
            raw.cmd("STAT").starts_with(&all),
            "logged in after USER and {c}"
        );
        assert!(raw.cmd("QUIT").starts_with("+OK"));
    }
    // PASS before any USER.
    let mut raw = Raw::connect(addr);
    assert_eq!(
        raw.cmd("PASS secret"),
        "-ERR PASS must follow a successful USER."
    );
    raw.login();
    // In TRANSACTION: the commands of AUTHORIZATION, one at a time.
    for c in [
        "USER alice",
        "USER bob",
        "PASS secret",
        "APOP alice 0123456789abcdef0123456789abcdef",
        "AUTH PLAIN",
        "AUTH PLAIN AGFsaWNlAHNlY3JldA==",
        "AUTH",
        "STLS",
        "UTF8",
    ] {
        assert_eq!(raw.cmd(c), WRONG, "{c} in TRANSACTION");
    }
    assert!(raw.cmd("DELE 2").starts_with("+OK"));
    assert!(raw.cmd("USER alice").starts_with("-ERR"));
    let fewer = format!("+OK {} ", msgs.len() - 1);
    assert!(raw.cmd("STAT").starts_with(&fewer));
    assert!(raw.cmd("QUIT").starts_with("+OK"));
    assert_eq!(raw.line(), None, "closed after QUIT");
    let mut left = w.store.messages("alice");
    left.sort();
    let mut want = msgs.clone();
    want.remove(1);
    want.sort();
    assert_eq!(left, want, "exactly the DELE'd message is gone");
}

/// A client that sends one octet at a time, slowly, never finishing a
/// login (slowloris): the login timeout ends it, whatever it sends, while
/// another client is served.
pub fn a_slow_sender_is_closed_at_the_login_timeout<B: Backend, S: Runtime>() {
    let msgs = messages();
    let w = B::world::<S>(
        &alice(&msgs),
        |c| c.login_timeout(Duration::from_secs(1)),
        ServerOptions::default(),
    );
    let served = &w.served;
    let mut slow = Raw::connect(served.plain);
    let started = std::time::Instant::now();
    let mut sent = 0;
    // An octet every 50 ms: each one restarts the idle timer, not the
    // login timeout.
    let closed = loop {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "still open after {sent} octets"
        );
        let octet = b"NOOP NOOP NOOP NOOP "[sent % 20];
        if slow.writer.write_all(&[octet]).is_err() {
            break None;
        }
        sent += 1;
        slow.writer
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let mut buf = [0u8; 128];
        match (&slow.writer).read(&mut buf) {
            Ok(0) => break None,
            Ok(n) => break Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break None,
        }
        // Meanwhile another client is served.
        if sent == 5 {
            let mut other = Raw::connect(served.plain);
            other.login();
            assert!(other.cmd("QUIT").starts_with("+OK"));
        }
    };
    assert_eq!(
        closed.as_deref(),
        Some("-ERR Disconnected: no login in time.\r\n"),
        "after {sent} octets"
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
}

/// A client that pipelines thousands of commands and reads the replies a
/// few octets at a time: the writes keep making progress (the write stall
/// timeout never fires), and the login timeout cuts the connection all the
/// same, replies unwritten or not.
pub fn a_slow_reader_is_cut_at_the_login_timeout<B: Backend, S: Runtime>() {
    let w = B::world::<S>(
        &alice(&[]),
        |c| c.login_timeout(Duration::from_secs(1)),
        ServerOptions::default(),
    );
    let served = &w.served;
    let mut reader = std::net::TcpStream::connect(served.plain).unwrap();
    let mut writer = reader.try_clone().unwrap();
    // A server that never cuts stops reading: the pipeline then blocks,
    // until this.
    writer
        .set_write_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let started = std::time::Instant::now();
    // CAPA after CAPA until the connection fails: once cut, the server's
    // unread input makes it a reset.
    let sender = std::thread::spawn(move || {
        let chunk = b"CAPA\r\n".repeat(1000);
        let mut sent = 0usize;
        loop {
            if let Err(e) = writer.write_all(&chunk) {
                return (started.elapsed(), e.kind(), sent);
            }
            sent += chunk.len();
        }
    });
    // 64 octets every 50 ms.
    reader
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut read = 0usize;
    let mut buf = [0u8; 64];
    while !sender.is_finished() && started.elapsed() < Duration::from_secs(40) {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (cut_after, kind, sent) = sender.join().unwrap();
    eprintln!("{sent} octets of CAPA sent, {read} octets of replies read, cut after {cut_after:?}");
    assert!(
        !matches!(
            kind,
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "still open after {cut_after:?} ({read} octets read)"
    );
    assert!(
        cut_after >= Duration::from_millis(900),
        "cut after {cut_after:?} ({kind:?})"
    );
    assert!(
        cut_after < Duration::from_secs(15),
        "cut only after {cut_after:?}"
    );
    (served.wait_idle)();
}

/// A client that pipelines without reading its replies: the server stops
/// reading once its replies back up (TCP backpressure), its memory stays
/// bounded, and every reply arrives once the client reads.
pub fn a_pipelining_client_that_never_reads_is_held_by_backpressure<B: Backend, S: Runtime>() {
    let msgs = messages();
    let w = world::<B, S>(&msgs, ServerOptions::default());
    let _alone = measuring_memory();
    let mut raw = Raw::connect(w.served.plain);
    raw.login();
    let before = rss_kib();
    // Write NOOPs until the socket takes no more: both directions' buffers
    // are full and the server has stopped reading.
    raw.writer.set_nonblocking(true).unwrap();
    let chunk = b"NOOP\r\n".repeat(10_000);
    let mut sent = 0usize;
    let mut pending: &[u8] = &chunk;
    loop {
        match raw.writer.write(pending) {
            Ok(n) => {
                sent += n;
                pending = &pending[n..];
                if pending.is_empty() {
                    pending = &chunk;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
        assert!(sent < 1_000_000_000, "the server never stopped reading");
    }
    let grown = rss_kib().saturating_sub(before);
    eprintln!("{sent} octets of NOOPs written before backpressure; server grew {grown} KiB");
    assert!(grown < 32 * 1024, "{grown} KiB buffered for one client");
    // Now read every reply, then end the session.
    raw.writer.set_nonblocking(false).unwrap();
    let commands = sent / 6;
    let partial = sent % 6;
    if partial > 0 {
        raw.send(&b"NOOP\r\n"[partial..]);
    }
    raw.send(b"QUIT\r\n");
    let mut oks = 0;
    while let Some(line) = raw.line() {
        assert!(line.starts_with("+OK"), "{line}");
        oks += 1;
    }
    let noops = commands + usize::from(partial > 0);
    assert_eq!(oks, noops + 1, "every NOOP and the QUIT answered");
    assert_eq!(w.store.message_count("alice"), msgs.len());
}

/// A store whose maildrops never open: the call hangs for ever.
pub struct HangingStore;

impl Store for HangingStore {
    type Maildrop = GeneratedDrop;

    fn credential_forms(&self) -> CredentialForms {
        CredentialForms::new(true, false)
    }

    async fn verify_password(&self, _user: &str, _password: &Secret) -> Result<bool, StoreError> {
        Ok(true)
    }

    async fn shared_secret(&self, _user: &str) -> Result<Option<Secret>, StoreError> {
        Ok(None)
    }

    async fn open(&self, _user: &str) -> Result<GeneratedDrop, StoreError> {
        std::future::pending().await
    }
}

/// A store call that never returns is abandoned at the store timeout: the
/// client gets `-ERR [SYS/TEMP]` and the connection is closed, so a hung
/// store cannot hold connection slots.
pub fn a_hung_store_is_abandoned_at_the_store_timeout<S: Runtime>() {
    let pki = pki();
    let mut options = ServerOptions::default();
    options.store_timeout = Duration::from_millis(300);
    let config = ServerConfig::for_store(&HangingStore).allow_plaintext_auth(true);
    let served = S::serve(Arc::new(HangingStore), config, pki.server.clone(), options);
    let mut raw = std::net::TcpStream::connect(served.plain).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    raw.write_all(b"USER u\r\nPASS p\r\n").unwrap();
    let mut out = Vec::new();
    raw.read_to_end(&mut out)
        .expect("the server closes the connection");
    let out = String::from_utf8_lossy(&out);
    assert!(
        out.ends_with("-ERR [SYS/TEMP] The mail storage is not responding.\r\n"),
        "{out}"
    );
    (served.wait_idle)();
}

/// A gate futures wait at until it is opened, on any runtime (its waker
/// is the only thing that wakes them).
#[derive(Default)]
pub struct Gate {
    state: std::sync::Mutex<(bool, Vec<std::task::Waker>)>,
}

impl Gate {
    /// Lets every waiter through, now and later.
    pub fn open(&self) {
        let mut state = self.state.lock().unwrap();
        state.0 = true;
        for waker in state.1.drain(..) {
            waker.wake();
        }
    }

    /// Resolves once the gate is open.
    pub async fn passed(&self) {
        std::future::poll_fn(|cx| {
            let mut state = self.state.lock().unwrap();
            if state.0 {
                std::task::Poll::Ready(())
            } else {
                state.1.push(cx.waker().clone());
                std::task::Poll::Pending
            }
        })
        .await
    }
}

/// A memory store whose commits wait at a gate before they remove
/// anything, and say when they start and when they are done.
pub struct SlowCommitStore {
    pub inner: Arc<MemoryStore>,
    pub gate: Arc<Gate>,
    pub started: std::sync::Mutex<std::sync::mpsc::Sender<()>>,
    pub done: std::sync::Mutex<std::sync::mpsc::Sender<Result<(), StoreError>>>,
}

/// A maildrop of a [`SlowCommitStore`].
pub struct SlowCommitDrop {
    inner: <MemoryStore as Store>::Maildrop,
    gate: Arc<Gate>,
    started: std::sync::mpsc::Sender<()>,
    done: std::sync::mpsc::Sender<Result<(), StoreError>>,
}

impl Store for SlowCommitStore {
    type Maildrop = SlowCommitDrop;

    fn credential_forms(&self) -> CredentialForms {
        self.inner.credential_forms()
    }

    async fn verify_password(&self, user: &str, password: &Secret) -> Result<bool, StoreError> {
        self.inner.verify_password(user, password).await
    }

    async fn shared_secret(&self, user: &str) -> Result<Option<Secret>, StoreError> {
        self.inner.shared_secret(user).await
    }

    async fn open(&self, user: &str) -> Result<SlowCommitDrop, StoreError> {
        Ok(SlowCommitDrop {
            inner: self.inner.open(user).await?,
            gate: self.gate.clone(),
            started: self.started.lock().unwrap().clone(),
            done: self.done.lock().unwrap().clone(),
        })
    }
}

impl Maildrop for SlowCommitDrop {
    type Reader = <<MemoryStore as Store>::Maildrop as Maildrop>::Reader;

    fn messages(&self) -> &[MessageInfo] {
        self.inner.messages()
    }

    async fn read(&mut self, index: usize) -> Result<Self::Reader, StoreError> {
        self.inner.read(index).await
    }

    async fn commit(self, update: Update) -> Result<(), StoreError> {
        let _ = self.started.send(());
        self.gate.passed().await;
        let result = self.inner.commit(update).await;
        let _ = self.done.send(result.clone());
        result
    }
}

/// A commit is never cancelled: when the store timeout passes while a
/// QUIT's commit is under way, the client gets `-ERR [SYS/TEMP]` and the
/// connection is closed, and the commit still runs to its end (and removes
/// exactly the messages marked).
pub fn a_slow_commit_runs_to_its_end_past_the_store_timeout<S: Runtime>() {
    let msgs = messages();
    let memory = Arc::new(MemoryStore::new());
    memory.add_user("alice", "secret");
    for m in &msgs {
        memory.add_message("alice", m.clone());
    }
    let (started_tx, started) = std::sync::mpsc::channel();
    let (done_tx, done) = std::sync::mpsc::channel();
    let store = SlowCommitStore {
        inner: memory.clone(),
        gate: Arc::default(),
        started: std::sync::Mutex::new(started_tx),
        done: std::sync::Mutex::new(done_tx),
    };
    let gate = store.gate.clone();
    let mut options = ServerOptions::default();
    options.store_timeout = Duration::from_millis(300);
    let config = ServerConfig::for_store(&store).allow_plaintext_auth(true);
    let served = S::serve(Arc::new(store), config, pki().server, options);
    let mut raw = std::net::TcpStream::connect(served.plain).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    raw.write_all(b"USER alice\r\nPASS secret\r\nDELE 2\r\nQUIT\r\n")
        .unwrap();
    let mut out = Vec::new();
    raw.read_to_end(&mut out)
        .expect("the server closes the connection at the store timeout");
    let out = String::from_utf8_lossy(&out);
    assert!(
        out.ends_with("-ERR [SYS/TEMP] The mail storage is not responding.\r\n"),
        "{out}"
    );
    started
        .recv_timeout(Duration::from_secs(20))
        .expect("the commit started");
    assert_eq!(
        memory.message_count("alice"),
        msgs.len(),
        "nothing removed yet"
    );
    gate.open();
    let result = done
        .recv_timeout(Duration::from_secs(20))
        .expect("the commit was dropped before its end");
    assert_eq!(result, Ok(()));
    (served.wait_idle)();
    let mut kept = msgs.clone();
    kept.remove(1);
    assert_eq!(memory.messages("alice"), kept, "exactly message 2 removed");
    assert!(!memory.is_locked("alice"));
}

/// A client that writes its whole session at once and closes its sending
/// side (`shutdown(Write)`) still gets every reply, the RETR body, and the
/// UPDATE its QUIT asked for: the end of the input is a half-close, not a
/// vanished peer.
pub fn half_close_after_a_pipelined_script_still_updates<B: Backend, S: Runtime>() {
    let msgs = messages();
    let w = world::<B, S>(&msgs, ServerOptions::default());
    let mut raw = std::net::TcpStream::connect(w.served.plain).unwrap();
    raw.write_all(b"USER alice\r\nPASS secret\r\nDELE 1\r\nRETR 3\r\nQUIT\r\n")
        .unwrap();
    raw.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = Vec::new();
    raw.read_to_end(&mut out).unwrap();
    let out = String::from_utf8_lossy(&out);
    let statuses: Vec<&str> = out
        .split("\r\n")
        .filter(|l| l.starts_with("+OK") || l.starts_with("-ERR"))
        .collect();
    assert_eq!(statuses.len(), 6, "greeting and five replies: {out}");
    assert!(statuses.iter().all(|l| l.starts_with("+OK")), "{out}");
    (w.served.wait_idle)();
    assert_eq!(w.store.message_count("alice"), msgs.len() - 1, "{out}");
    assert!(w.store.is_released("alice"));
}

/// 100 clients at once on a server that serves 16 at a time: every one is
/// served, those beyond the cap after a `[SYS/TEMP]` refusal and a retry.
pub fn hundred_concurrent_clients<B: Backend, C: Runtime, S: Runtime>() {
    let names: Vec<String> = (0..100).map(|i| format!("u{i}")).collect();
    let mail: Vec<[Vec<u8>; 1]> = names
        .iter()
        .enumerate()
        .map(|(i, user)| [format!("Subject: {i}\r\n\r\nfor {user}\r\n").into_bytes()])
        .collect();
    let accounts: Vec<Account<'_>> = names
        .iter()
        .zip(&mail)
        .map(|(name, messages)| Account {
            name,
            password: "pw",
            messages,
        })
        .collect();
    let mut server_options = ServerOptions::default();
    server_options.max_connections = 16;
    let w = B::world::<S>(&accounts, |c| c, server_options);
    let (served, pki, store) = (&w.served, &w.pki, &w.store);
    let clients: Vec<_> = (0..100)
        .map(|i| {
            let (addr, roots) = (served.plain, pki.roots.clone());
            std::thread::spawn(move || {
                // Beyond the cap a client is refused with [SYS/TEMP] at
                // once, and tries again, as a real client would.
                let deadline = std::time::Instant::now() + Duration::from_secs(60);
                let mut c = loop {
                    match C::connect(addr, options(Security::Plain, &roots)) {
                        Ok(c) => break c,
                        Err(Error::Protocol(ProtocolError::GreetingRejected(e)))
                            if e.is_transient() && std::time::Instant::now() < deadline =>
                        {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        Err(e) => panic!("u{i}: {e}"),
                    }
                };
                c.login(&format!("u{i}"), "pw").unwrap();
                let mut body = Vec::new();
                c.retr(msg(1), &mut body).unwrap();
                assert!(body.ends_with(format!("for u{i}\r\n").as_bytes()));
                c.dele(msg(1)).unwrap();
                c.quit().unwrap();
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    for i in 0..100 {
        assert_eq!(store.message_count(&format!("u{i}")), 0);
    }
}

/// Shutdown while a session is open: after the grace the session is cut,
/// and its DELE is not committed.
pub fn graceful_shutdown_commits_nothing<B: Backend, C: Runtime, S: Runtime>() {
    let msgs = messages();
    let mut server_options = ServerOptions::default();
    server_options.shutdown_grace = Duration::from_millis(200);
    let w = world::<B, S>(&msgs, server_options);
    let mut client = logged_in::<C>(&w);
    client.dele(msg(1)).unwrap();
    (w.served.shutdown)();
    (w.served.wait_idle)();
    assert_eq!(w.store.message_count("alice"), msgs.len());
    // The session was cut: the client can only fail now.
    assert!(client.noop().is_err());
}

/// UTF8 and LANG keep the session in step whatever the answer; a wrong
/// password is `-ERR` (the last of the ways login tried).
pub fn utf8_lang_and_a_wrong_password<B: Backend, C: Runtime, S: Runtime>() {
    let w = world::<B, S>(&messages(), ServerOptions::default());
    let mut client = connect::<C>(&w, Security::Plain);
    let utf8 = client.utf8();
    assert!(matches!(utf8, Ok(()) | Err(Error::Server(_))), "{utf8:?}");
    let lang = client.lang();
    assert!(matches!(lang, Ok(_) | Err(Error::Server(_))), "{lang:?}");
    client.quit().unwrap();
    // (A third refused command would reach the server's limit of bad
    // commands before login.)
    let mut client = connect::<C>(&w, Security::Plain);
    let set = client.set_default_lang();
    assert!(matches!(set, Ok(_) | Err(Error::Server(_))), "{set:?}");
    client.login("alice", "secret").unwrap();
    client.quit().unwrap();
    // A wrong password: login tries up to three ways (each refused), which
    // is the server's limit of bad commands before login: the last
    // refusal is the error.
    let mut client = connect::<C>(&w, Security::Plain);
    let err = client.login("alice", "wrong").unwrap_err();
    assert!(matches!(err, Error::Server(_)), "{err:?}");
}

/// A client whose machine queues only 4 actions reads many small replies
/// per read: the rest is offered again, nothing is lost.
pub fn a_tiny_action_queue_only_slows_parsing_down<B: Backend, C: Runtime, S: Runtime>() {
    let msgs: Vec<Vec<u8>> = (0..300)
        .map(|i| format!("Subject: {i}\r\n\r\n.dot {i}\r\nbody\r\n").into_bytes())
        .collect();
    let w = world::<B, S>(&msgs, ServerOptions::default());
    let mut o = options(Security::Plain, &w.pki.roots);
    o.session.max_queued_actions = 4;
    o.session.max_in_flight = 100;
    let mut client = C::connect(w.served.plain, o).unwrap();
    client.login("alice", "secret").unwrap();
    assert_eq!(client.list().unwrap().len(), msgs.len());
    assert_eq!(client.uidl().unwrap().len(), msgs.len());
    let bodies = client.retr_many(numbers(msgs.len())).unwrap();
    assert_eq!(bodies.len(), msgs.len(), "one answer per RETR");
    for (got, want) in bodies.into_iter().zip(&msgs) {
        assert_eq!(&got.unwrap(), want);
    }
    client.quit().unwrap();
}

/// A message delivered while a session is open: the session's listing and
/// numbers stay as they were at login, its QUIT removes exactly what it
/// marked, and the next session has the new message last.
pub fn a_delivery_during_a_session_appears_in_the_next<B: Backend, C: Runtime, S: Runtime>() {
    let msgs = messages();
    let late = b"Subject: late\r\n\r\n.delivered during a session\r\n".to_vec();
    let w = world::<B, S>(&msgs, ServerOptions::default());
    let mut client = logged_in::<C>(&w);
    let before = client.uidl().unwrap();
    w.store.deliver("alice", &late);
    assert_eq!(w.store.message_count("alice"), msgs.len() + 1);
    assert_eq!(client.uidl().unwrap(), before, "the session's listing");
    assert_eq!(client.stat().unwrap().count as usize, msgs.len());
    assert!(matches!(
        client.retr(msg(msgs.len() as u32 + 1), &mut Vec::new()),
        Err(Error::Server(_))
    ));
    client.dele(msg(1)).unwrap();
    client.quit().unwrap();
    let mut next = logged_in::<C>(&w);
    let after = next.uidl().unwrap();
    assert_eq!(after.len(), msgs.len());
    let uids = |lines: &[UidLine]| lines.iter().map(|l| l.uid.clone()).collect::<Vec<_>>();
    assert_eq!(
        uids(&after[..msgs.len() - 1]),
        uids(&before[1..]),
        "the kept messages, renumbered"
    );
    let mut got = Vec::new();
    next.retr(msg(msgs.len() as u32), &mut got).unwrap();
    assert_eq!(got, late, "the late message, last");
    next.quit().unwrap();
    let mut want = msgs[1..].to_vec();
    want.push(late);
    assert_eq!(w.store.messages("alice"), want);
}

/// Fetch every message into a Maildir, then again with deletion.
pub fn fetch_then_delete<B: Backend, C: Runtime, S: Runtime>() {
    let msgs = messages();
    let w = world::<B, S>(&msgs, ServerOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let sink = MaildirSink::open(dir.path(), "alice@127.0.0.1").unwrap();
    let mut client = logged_in::<C>(&w);
    let (sink, report) = client.fetch(sink, &FetchOptions::default());
    let report = report.unwrap();
    assert_eq!(report.saved, msgs.len());
    let mut stored: Vec<Vec<u8>> = std::fs::read_dir(dir.path().join("new"))
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    let mut want: Vec<Vec<u8>> = msgs
        .iter()
        .map(|m| {
            String::from_utf8_lossy(m)
                .replace("\r\n", "\n")
                .into_bytes()
        })
        .collect();
    stored.sort();
    want.sort();
    assert_eq!(stored, want);
    let mut delete = FetchOptions::default();
    delete.delete = true;
    let mut client = logged_in::<C>(&w);
    let (_sink, report) = client.fetch(sink, &delete);
    let report = report.unwrap();
    assert_eq!((report.saved, report.already_stored), (0, msgs.len()));
    assert_eq!(report.deleted, msgs.len());
    assert_eq!(w.store.message_count("alice"), 0);
}

/// A server that keeps raw UTF-8 headers from clients not in UTF-8 mode
/// (RFC 6856): the fetch asks for UTF-8 mode, and stores the message as
/// sent.
pub fn fetch_enables_utf8_mode_and_stores_raw_utf8_headers<
    B: Backend,
    C: Runtime + FetchUrl,
    S: Runtime,
>() {
    let message = "Subject: Grüße aus Köln\r\nFrom: jörg@example.org\r\n\r\nHallo\r\n";
    let msgs = [message.as_bytes().to_vec()];
    let w = B::world::<S>(&alice(&msgs), |c| c.utf8(true), ServerOptions::default());
    let (served, store) = (&w.served, &w.store);
    let url = PopUrl::parse(&format!(
        "pop://alice;AUTH=USER@127.0.0.1:{}",
        served.plain.port()
    ))
    .unwrap();
    let mut settings = FetchSettings::default();
    settings.delete = true;
    settings.insecure_cleartext_login = true;
    let dir = tempfile::tempdir().unwrap();
    let sink = MaildirSink::open(dir.path(), &url.account_id()).unwrap();
    let (_sink, result) = C::fetch_url(&url, "secret", &settings, sink);
    let report = result.unwrap();
    assert!(report.is_complete(), "{report:?}");
    assert_eq!((report.saved, report.deleted), (1, 1));
    let stored: Vec<Vec<u8>> = std::fs::read_dir(dir.path().join("new"))
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert_eq!(stored, [message.replace("\r\n", "\n").into_bytes()]);
    assert_eq!(store.message_count("alice"), 0);
}

/// A connection to `to` from 127.0.0.1 that opens with `header`.
fn proxied(to: SocketAddr, header: &[u8]) -> std::net::TcpStream {
    let mut stream = std::net::TcpStream::connect(to).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(header).unwrap();
    stream
}

/// What the server says, up to its close (a refused connection: nothing,
/// or its one refusal line).
fn all_of(mut stream: std::net::TcpStream) -> String {
    let mut text = Vec::new();
    let _ = stream.read_to_end(&mut text);
    String::from_utf8_lossy(&text).into_owned()
}

/// The first line of what the server says.
fn first_line(stream: &mut std::net::TcpStream) -> String {
    let mut line = Vec::new();
    let mut octet = [0u8; 1];
    while stream.read(&mut octet).unwrap_or(0) == 1 {
        line.push(octet[0]);
        if octet[0] == b'\n' {
            break;
        }
    }
    String::from_utf8_lossy(&line).into_owned()
}

/// On listeners that expect the PROXY protocol from 127.0.0.1: a version 1
/// and a version 2 header are read before the greeting (and before the
/// implicit TLS handshake), and the client they name is the one the
/// per-address cap counts; a `LOCAL` health check is served as the proxy
/// itself; a connection from an untrusted address, one without a header
/// and one with a malformed header are closed without a greeting.
pub fn proxy_protocol_names_the_client_and_refuses_the_rest<B: Backend, S: Runtime>() {
    use pop3_proto::proxy::{ProxyPolicy, v1_header, v2_header};
    let msgs = messages();
    let mut o = ServerOptions::default();
    o.proxy_protocol = Some(ProxyPolicy::new(vec!["127.0.0.1/32".parse().unwrap()]));
    o.max_connections_per_address = 1;
    let w = world::<B, S>(&msgs, o);
    let (plain, tls) = (w.served.plain, w.served.tls);
    let client: SocketAddr = "192.0.2.7:40000".parse().unwrap();
    let other: SocketAddr = "[2001:db8::8]:40000".parse().unwrap();

    // Version 1, then a whole session.
    let mut first = proxied(plain, v1_header(client, plain).as_bytes());
    assert!(first_line(&mut first).starts_with("+OK"), "greeted");
    first.write_all(b"USER alice\r\n").unwrap();
    assert!(first_line(&mut first).starts_with("+OK"));
    first.write_all(b"PASS secret\r\n").unwrap();
    assert!(first_line(&mut first).starts_with("+OK"), "logged in");
    first.write_all(b"STAT\r\n").unwrap();
    assert!(first_line(&mut first).starts_with("+OK 4 "));

    // The same client through version 2: over its cap of one, although
    // the TCP connections all come from 127.0.0.1.
    let again = proxied(plain, &v2_header(Some((client, plain))));
    assert!(
        all_of(again).starts_with("-ERR [SYS/TEMP] Too many connections from your address"),
        "the carried address is capped"
    );
    // Another client through version 2 is served.
    let mut second = proxied(plain, &v2_header(Some((other, plain))));
    assert!(first_line(&mut second).starts_with("+OK"), "another client");
    // A health check speaks for the proxy (127.0.0.1, not yet counted).
    let mut check = proxied(plain, &v2_header(None));
    assert!(first_line(&mut check).starts_with("+OK"), "LOCAL is served");
    check.write_all(b"QUIT\r\n").unwrap();
    assert!(first_line(&mut check).starts_with("+OK"));

    // Implicit TLS: the header, then the handshake.
    let third: SocketAddr = "192.0.2.9:1".parse().unwrap();
    let stream = proxied(tls, &v2_header(Some((third, tls))));
    let mut c = pop3_blocking::client::Pop3Client::from_stream(
        stream,
        "localhost",
        options(Security::ImplicitTls, &w.pki.roots),
    )
    .expect("TLS after the header");
    assert!(c.is_tls());
    c.quit().unwrap();

    // Untrusted, missing, malformed: closed without a word.
    let mut untrusted = connect_from([0, 0, 9], plain);
    untrusted
        .write_all(v1_header(third, plain).as_bytes())
        .unwrap();
    untrusted
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    assert_eq!(all_of(untrusted), "", "an untrusted source is refused");
    assert_eq!(all_of(proxied(plain, b"USER alice\r\n")), "", "no header");
    let bad = b"PROXY TCP4 192.0.2.7 not-an-address 1 2\r\n";
    assert_eq!(all_of(proxied(plain, bad)), "", "a malformed v1 header");
    let mut bad = v2_header(Some((client, plain)));
    bad[12] = 0x31; // version 3
    assert_eq!(all_of(proxied(plain, &bad)), "", "a malformed v2 header");

    first.write_all(b"QUIT\r\n").unwrap();
    assert!(first_line(&mut first).starts_with("+OK"));
    drop(second);
    (w.served.wait_idle)();
    assert_eq!(w.store.message_count("alice"), 4);
}

/// `GET /metrics` from `addr`: the body, after checking the status line
/// and the content type.
fn scrape(addr: SocketAddr) -> String {
    let mut http = std::net::TcpStream::connect(addr).unwrap();
    http.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut answer = String::new();
    http.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    body.to_owned()
}

/// The value of `series` in an exposition.
fn sample(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .parse()
        .unwrap()
}

/// A raw session's reader and writer, counting the octets received.
struct Wire {
    reader: std::io::BufReader<std::net::TcpStream>,
    writer: std::net::TcpStream,
    received: u64,
}

impl Wire {
    fn new(stream: std::net::TcpStream) -> Wire {
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        Wire {
            reader: std::io::BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
            received: 0,
        }
    }

    fn line(&mut self) -> String {
        use std::io::BufRead as _;
        let mut l = String::new();
        self.reader.read_line(&mut l).unwrap();
        self.received += l.len() as u64;
        l
    }

    /// Sends `command`; its reply's first line.
    fn send(&mut self, command: &str) -> String {
        self.writer
            .write_all(format!("{command}\r\n").as_bytes())
            .unwrap();
        self.line()
    }
}

/// The server's metrics, scraped over HTTP during a session and after it:
/// a login (and a failed one) is counted as soon as its reply is out, and
/// the octets sent as they are written, not only when the session ends;
/// after it, how it ended, the refusal of a connection over the
/// per-address cap, the store calls.
pub fn metrics_scraped_mid_session_see_the_login_and_the_octets<S: Runtime>() {
    let metrics = Arc::new(Metrics::new());
    let http = TcpListener::bind("127.0.0.1:0").unwrap();
    let http_addr = http.local_addr().unwrap();
    pop3_blocking::metrics::serve(http, metrics.clone()).unwrap();
    let mut o = ServerOptions::default();
    o.max_connections_per_address = 1;
    let extras = Extras {
        metrics: Some(metrics),
        ..Extras::default()
    };
    let w = world_with::<S>(&[b"Subject: hi\r\n\r\nhello\r\n".to_vec()], o, extras);
    let mut wire = Wire::new(std::net::TcpStream::connect(w.served.plain).unwrap());
    assert!(wire.line().starts_with("+OK"));
    // Over the per-address cap of 1: refused at once.
    let refused = all_of(std::net::TcpStream::connect(w.served.plain).unwrap());
    assert!(refused.starts_with("-ERR [SYS/TEMP]"), "{refused}");
    for (command, reply) in [
        ("USER alice", "+OK"),
        ("PASS wrong", "-ERR"),
        ("USER alice", "+OK"),
        ("PASS secret", "+OK"),
        ("RETR 1", "+OK"),
    ] {
        let got = wire.send(command);
        assert!(got.starts_with(reply), "{command}: {got}");
    }
    while wire.line() != ".\r\n" {}
    // The server counts what it wrote before it reads the next command:
    // once NOOP is answered, everything up to the message is counted (the
    // NOOP's own reply may be too).
    let before_noop = wire.received;
    assert!(wire.send("NOOP").starts_with("+OK"));
    let text = scrape(http_addr);
    let logins = |text: &str, result: &str| {
        sample(
            text,
            &format!("pop3_logins_total{{mechanism=\"USER\",result=\"{result}\"}}"),
        )
    };
    assert_eq!(sample(&text, "pop3_sessions_open"), 1, "mid-session");
    assert_eq!(logins(&text, "ok"), 1, "the login, mid-session");
    assert_eq!(logins(&text, "failed"), 1, "the failed login, mid-session");
    let octets = sample(&text, "pop3_octets_sent_total");
    assert!(
        octets == before_noop || octets == wire.received,
        "octets sent mid-session: {octets}, received {before_noop} then {}",
        wire.received
    );
    assert_eq!(sample(&text, "pop3_sessions_total{outcome=\"quit\"}"), 0);

    assert!(wire.send("QUIT").starts_with("+OK"));
    let mut rest = Vec::new();
    wire.reader.read_to_end(&mut rest).unwrap();
    let received = wire.received + rest.len() as u64;
    (w.served.wait_idle)();
    let text = scrape(http_addr);
    assert_eq!(sample(&text, "pop3_sessions_open"), 0);
    assert_eq!(sample(&text, "pop3_sessions_total{outcome=\"quit\"}"), 1);
    assert_eq!(
        sample(&text, "pop3_sessions_total{outcome=\"peer_closed\"}"),
        0
    );
    assert_eq!(logins(&text, "ok"), 1, "counted once");
    assert_eq!(logins(&text, "failed"), 1, "counted once");
    assert_eq!(sample(&text, "pop3_octets_sent_total"), received);
    assert_eq!(
        sample(&text, "pop3_refusals_total{reason=\"address_full\"}"),
        1
    );
    let h = "pop3_store_call_duration_seconds";
    let count = sample(&text, &format!("{h}_count"));
    // Two password checks, the open, the message's read, the release.
    assert!(count >= 5, "{count} store calls");
    assert_eq!(sample(&text, &format!("{h}_bucket{{le=\"+Inf\"}}")), count);
    assert_eq!(sample(&text, "pop3_tls_handshakes_total{result=\"ok\"}"), 0);
}

/// Caps lowered while serving (what a reload does): the sessions already
/// open go on, new connections over the new cap are refused, and once
/// enough sessions have ended new ones are admitted again.
pub fn a_lowered_cap_refuses_new_connections_and_keeps_open_sessions<S: Runtime>() {
    let options = ServerOptions::default();
    let gate = Caps::new(&options);
    let extras = Extras {
        gate: Some(gate.clone()),
        ..Extras::default()
    };
    let w = world_with::<S>(&messages(), options, extras);
    let mut first = Wire::new(std::net::TcpStream::connect(w.served.plain).unwrap());
    assert!(first.line().starts_with("+OK"));
    let mut second = Wire::new(std::net::TcpStream::connect(w.served.plain).unwrap());
    assert!(second.line().starts_with("+OK"));
    let mut lowered = ServerOptions::default();
    lowered.max_connections = 1;
    gate.set_caps(&lowered);
    let refused = all_of(std::net::TcpStream::connect(w.served.plain).unwrap());
    assert!(
        refused.starts_with("-ERR [SYS/TEMP] Too many connections;"),
        "{refused}"
    );
    // Both sessions go on, over the cap.
    for wire in [&mut first, &mut second] {
        assert!(wire.send("USER alice").starts_with("+OK"));
        assert!(wire.send("QUIT").starts_with("+OK"));
    }
    drop((first, second));
    (w.served.wait_idle)();
    let mut again = Wire::new(std::net::TcpStream::connect(w.served.plain).unwrap());
    assert!(again.line().starts_with("+OK"), "under the cap again");
    assert!(again.send("QUIT").starts_with("+OK"));
    drop(again);
    (w.served.wait_idle)();
}

/// Session limits changed while serving (what a reload does, through the
/// gate the server was given): the next session starts with them, and the
/// session already open keeps the limits it started with.
pub fn changed_limits_apply_to_the_next_session_not_the_current_one<S: Runtime>() {
    let options = ServerOptions::default();
    let gate = Caps::new(&options);
    let extras = Extras {
        gate: Some(gate.clone()),
        ..Extras::default()
    };
    // The configuration's login timeout: 3 minutes.
    let w = world_with::<S>(&messages(), options, extras);
    let mut before = Wire::new(std::net::TcpStream::connect(w.served.plain).unwrap());
    assert!(before.line().starts_with("+OK"));
    let mut limits = SessionLimits::default();
    limits.login_timeout = Some(Duration::from_secs(1));
    gate.set_limits(limits);
    let mut after = Wire::new(std::net::TcpStream::connect(w.served.plain).unwrap());
    assert!(after.line().starts_with("+OK"));
    assert_eq!(after.line(), "-ERR Disconnected: no login in time.\r\n");
    assert_eq!(after.line(), "", "closed at the new login timeout");
    // Past the new timeout since it started, the first session goes on.
    assert!(before.send("USER alice").starts_with("+OK"));
    assert!(before.send("PASS secret").starts_with("+OK"));
    assert!(before.send("QUIT").starts_with("+OK"));
    drop((before, after));
    (w.served.wait_idle)();
}

/// A shutdown grace changed while serving (what a reload does) is the one
/// the next shutdown gives every session, one that started before the
/// change included: a logged-in session is cut after the new, short grace,
/// not the long one it started with.
pub fn a_changed_shutdown_grace_applies_to_the_next_shutdown<S: Runtime>() {
    let mut options = ServerOptions::default();
    options.shutdown_grace = Duration::from_secs(600);
    let gate = Caps::new(&options);
    let extras = Extras {
        gate: Some(gate.clone()),
        ..Extras::default()
    };
    let w = world_with::<S>(&messages(), options, extras);
    let mut before = Wire::new(std::net::TcpStream::connect(w.served.plain).unwrap());
    assert!(before.line().starts_with("+OK"));
    let mut limits = SessionLimits::default();
    limits.shutdown_grace = Some(Duration::from_secs(1));
    gate.set_limits(limits);
    assert!(before.send("USER alice").starts_with("+OK"));
    assert!(before.send("PASS secret").starts_with("+OK"));
    (w.served.shutdown)();
    // Cut without a word at the end of the new grace (the Wire's read
    // timeout, 30 s, is far below the grace the session started with).
    assert_eq!(before.line(), "", "cut at the end of the new grace");
    (w.served.wait_idle)();
}

/// One server, two kinds of listener: the plain one greets a client at
/// once, the one that expects the PROXY protocol closes a connection
/// without a header unanswered and serves one with a header.
pub fn a_proxy_listener_beside_a_plain_one<S: Runtime>() {
    use pop3_proto::proxy::v1_header;
    let extras = Extras {
        proxy_listener: Some(ProxyPolicy::new(vec!["127.0.0.1/32".parse().unwrap()])),
        ..Extras::default()
    };
    let w = world_with::<S>(&messages(), ServerOptions::default(), extras);
    let proxy = w.served.proxied.expect("the PROXY listener");
    let mut direct = Wire::new(std::net::TcpStream::connect(w.served.plain).unwrap());
    assert!(
        direct.line().starts_with("+OK"),
        "a direct client is greeted"
    );
    assert!(direct.send("USER alice").starts_with("+OK"));
    assert_eq!(
        all_of(proxied(proxy, b"USER alice\r\n")),
        "",
        "no header on the PROXY listener"
    );
    let client: SocketAddr = "192.0.2.7:40000".parse().unwrap();
    let mut behind = Wire::new(proxied(proxy, v1_header(client, proxy).as_bytes()));
    assert!(
        behind.line().starts_with("+OK"),
        "a header, then the greeting"
    );
    assert!(behind.send("QUIT").starts_with("+OK"));
    // A header on the plain listener is a bad command, not an address.
    let header = v1_header(client, w.served.plain);
    assert!(direct.send(header.trim_end()).starts_with("-ERR"));
    assert!(direct.send("QUIT").starts_with("+OK"));
    drop((direct, behind));
    (w.served.wait_idle)();
}

/// A connection from a trusted proxy holds a place under the total cap
/// from the moment it is accepted, while its header is still unread: with
/// a cap of one, a source holding its header back keeps every other
/// connection out (on its listener and on the others), until it is served
/// and has ended.
pub fn a_source_holding_its_proxy_header_back_counts_against_the_cap<S: Runtime>() {
    use pop3_proto::proxy::v1_header;
    let mut o = ServerOptions::default();
    o.max_connections = 1;
    let extras = Extras {
        proxy_listener: Some(ProxyPolicy::new(vec!["127.0.0.1/32".parse().unwrap()])),
        ..Extras::default()
    };
    let w = world_with::<S>(&messages(), o, extras);
    let proxy = w.served.proxied.expect("the PROXY listener");
    let client: SocketAddr = "192.0.2.7:40000".parse().unwrap();
    let other: SocketAddr = "192.0.2.8:40000".parse().unwrap();
    // Connected, no header yet.
    let mut holding = std::net::TcpStream::connect(proxy).unwrap();
    // The next connection on the same listener is accepted after it: the
    // cap is taken, whatever its header says.
    let refused = all_of(proxied(proxy, v1_header(other, proxy).as_bytes()));
    assert!(
        refused.starts_with("-ERR [SYS/TEMP] Too many connections;"),
        "{refused}"
    );
    let refused = all_of(std::net::TcpStream::connect(w.served.plain).unwrap());
    assert!(
        refused.starts_with("-ERR [SYS/TEMP] Too many connections;"),
        "the other listener too: {refused}"
    );
    holding
        .write_all(v1_header(client, proxy).as_bytes())
        .unwrap();
    let mut holding = Wire::new(holding);
    assert!(
        holding.line().starts_with("+OK"),
        "served once the header is in"
    );
    assert!(holding.send("QUIT").starts_with("+OK"));
    drop(holding);
    (w.served.wait_idle)();
    let mut next = Wire::new(proxied(proxy, v1_header(other, proxy).as_bytes()));
    assert!(next.line().starts_with("+OK"), "the place is free again");
    assert!(next.send("QUIT").starts_with("+OK"));
    drop(next);
    (w.served.wait_idle)();
}

/// The suite for client runtime `$c` against server runtime `$s`, as tests
/// in a module named `$name`: over the memory store, or with `store = B`
/// over backend `B`'s store.
///
/// Over another store than the memory one, these scenarios are not run, as
/// they are not about the store behind the server:
/// - `a_200_mb_message_streams_in_bounded_memory`: its store makes the
///   message as it is read, so that none holds it whole (the PostgreSQL
///   store's chunked reads have their own test in `postgres_store.rs`);
/// - `a_silent_server_is_a_reply_timeout`: its server is a socket that
///   never answers;
/// - `a_hung_store_is_abandoned_at_the_store_timeout`: its store never
///   answers;
/// - `a_slow_commit_runs_to_its_end_past_the_store_timeout`: its store is
///   the memory store with a gate in its commit, to hold the commit past
///   the timeout at a point of the test's choosing (the PostgreSQL store's
///   commits cut short are in `postgres_faults.rs`);
/// - the metrics, the caps lowered while serving and the PROXY listeners:
///   they are about the server in front of the store.
#[macro_export]
macro_rules! runtime_suite {
    ($name:ident, client = $c:ty, server = $s:ty) => {
        $crate::runtime_suite!(@scenarios $name, $c, $s, suite::Memory, {
            #[test]
            fn a_200_mb_message_streams_in_bounded_memory() {
                suite::large_message_streams::<$c, $s>();
            }
            #[test]
            fn a_silent_server_is_a_reply_timeout() {
                suite::reply_timeout::<$c>();
            }
            #[test]
            fn a_slow_commit_runs_to_its_end_past_the_store_timeout() {
                suite::a_slow_commit_runs_to_its_end_past_the_store_timeout::<$s>();
            }
            #[test]
            fn a_hung_store_is_abandoned_at_the_store_timeout() {
                suite::a_hung_store_is_abandoned_at_the_store_timeout::<$s>();
            }
            #[test]
            fn metrics_scraped_mid_session_see_the_login_and_the_octets() {
                suite::metrics_scraped_mid_session_see_the_login_and_the_octets::<$s>();
            }
            #[test]
            fn a_lowered_cap_refuses_new_connections_and_keeps_open_sessions() {
                suite::a_lowered_cap_refuses_new_connections_and_keeps_open_sessions::<$s>();
            }
            #[test]
            fn changed_limits_apply_to_the_next_session_not_the_current_one() {
                suite::changed_limits_apply_to_the_next_session_not_the_current_one::<$s>();
            }
            #[test]
            fn a_changed_shutdown_grace_applies_to_the_next_shutdown() {
                suite::a_changed_shutdown_grace_applies_to_the_next_shutdown::<$s>();
            }
            #[test]
            fn a_proxy_listener_beside_a_plain_one() {
                suite::a_proxy_listener_beside_a_plain_one::<$s>();
            }
            #[test]
            fn a_source_holding_its_proxy_header_back_counts_against_the_cap() {
                suite::a_source_holding_its_proxy_header_back_counts_against_the_cap::<$s>();
            }
        });
    };
    ($name:ident, client = $c:ty, server = $s:ty, store = $b:ty) => {
        $crate::runtime_suite!(@scenarios $name, $c, $s, $b, {});
    };
    (@scenarios $name:ident, $c:ty, $s:ty, $b:ty, { $($only:tt)* }) => {
        mod $name {
            use super::*;
            use pop3_proto::client::Security;

            $($only)*

            #[test]
            fn fetch_enables_utf8_mode_and_stores_raw_utf8_headers() {
                suite::fetch_enables_utf8_mode_and_stores_raw_utf8_headers::<$b, $c, $s>();
            }
            #[test]
            fn every_command_over_plain() {
                suite::every_command::<$b, $c, $s>(Security::Plain);
            }
            #[test]
            fn every_command_over_stls() {
                suite::every_command::<$b, $c, $s>(Security::StartTls);
            }
            #[test]
            fn every_command_over_implicit_tls() {
                suite::every_command::<$b, $c, $s>(Security::ImplicitTls);
            }
            #[test]
            fn a_pipelined_batch_keeps_order() {
                suite::pipelined_batch::<$b, $c, $s>();
            }
            #[test]
            fn a_peer_vanishing_mid_retr_deletes_nothing() {
                suite::peer_vanishing_mid_retr_deletes_nothing::<$b, $c, $s>();
            }
            #[test]
            fn a_hundred_concurrent_clients_are_served_under_the_cap() {
                suite::hundred_concurrent_clients::<$b, $c, $s>();
            }
            #[test]
            fn shutdown_mid_session_commits_nothing() {
                suite::graceful_shutdown_commits_nothing::<$b, $c, $s>();
            }
            #[test]
            fn utf8_and_lang_keep_the_session_and_a_wrong_password_is_refused() {
                suite::utf8_lang_and_a_wrong_password::<$b, $c, $s>();
            }
            #[test]
            fn a_tiny_action_queue_only_slows_parsing_down() {
                suite::a_tiny_action_queue_only_slows_parsing_down::<$b, $c, $s>();
            }
            #[test]
            fn half_close_after_a_pipelined_script_still_updates() {
                suite::half_close_after_a_pipelined_script_still_updates::<$b, $s>();
            }
            #[test]
            fn idle_floods_do_not_starve_a_fresh_session() {
                suite::idle_floods_do_not_starve_a_fresh_session::<$b, $c, $s>();
            }
            #[test]
            fn proxy_protocol_names_the_client_and_refuses_the_rest() {
                suite::proxy_protocol_names_the_client_and_refuses_the_rest::<$b, $s>();
            }

            #[test]
            fn hostile_input_gets_clear_errors_and_deletes_nothing() {
                suite::hostile_input_gets_clear_errors_and_deletes_nothing::<$b, $s>();
            }
            #[test]
            fn every_command_in_every_wrong_state_is_refused() {
                suite::every_command_in_every_wrong_state_is_refused::<$b, $s>();
            }
            #[test]
            fn a_pipelining_client_that_never_reads_is_held_by_backpressure() {
                suite::a_pipelining_client_that_never_reads_is_held_by_backpressure::<$b, $s>();
            }
            #[test]
            fn a_slow_sender_is_closed_at_the_login_timeout() {
                suite::a_slow_sender_is_closed_at_the_login_timeout::<$b, $s>();
            }
            #[test]
            fn a_slow_reader_is_cut_at_the_login_timeout() {
                suite::a_slow_reader_is_cut_at_the_login_timeout::<$b, $s>();
            }
            #[test]
            fn a_delivery_during_a_session_appears_in_the_next() {
                suite::a_delivery_during_a_session_appears_in_the_next::<$b, $c, $s>();
            }
            #[test]
            fn fetch_stores_every_message_then_deletes() {
                suite::fetch_then_delete::<$b, $c, $s>();
            }
        }
    };
}
