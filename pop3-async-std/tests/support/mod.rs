//! What the tests share: the two runtimes every scenario runs on, a private
//! CA, and this crate's server on loopback over a memory store.
#![allow(dead_code)]

use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncWrite};
use pop3_async_std::client::{ConnectOptions, Security, TlsVerification};
use pop3_async_std::server::{Async, Pop3Server, ServerOptions};
use pop3_proto::server::ServerConfig;
use pop3_proto::store::MemoryStore;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A spawned task, to be awaited.
pub type Joined<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What a scenario needs of a runtime: to run it, to spawn tasks, and its
/// own TCP streams.
pub trait Runtime: 'static {
    type Tcp: AsyncRead + AsyncWrite + Send + Unpin + 'static;
    fn block_on<T>(future: impl Future<Output = T>) -> T;
    fn spawn<T: Send + 'static>(future: impl Future<Output = T> + Send + 'static) -> Joined<T>;
    /// Both ends of a loopback TCP connection, as the runtime's own streams.
    fn tcp_pair() -> Joined<(Self::Tcp, Self::Tcp)>;
    type Unix: AsyncRead + AsyncWrite + Send + Unpin + 'static;
    /// Both ends of a Unix socket pair, as the runtime's own streams.
    fn unix_pair() -> (Self::Unix, Self::Unix);
}

macro_rules! tcp_pair {
    ($net:path) => {
        Box::pin(async {
            use $net as net;
            let listener = net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (client, accepted) =
                futures_lite::future::zip(net::TcpStream::connect(addr), listener.accept()).await;
            (client.unwrap(), accepted.unwrap().0)
        })
    };
}

pub struct Smol;

impl Runtime for Smol {
    type Tcp = smol::net::TcpStream;
    fn tcp_pair() -> Joined<(Self::Tcp, Self::Tcp)> {
        tcp_pair!(smol::net)
    }
    type Unix = smol::net::unix::UnixStream;
    fn unix_pair() -> (Self::Unix, Self::Unix) {
        smol::net::unix::UnixStream::pair().unwrap()
    }
    fn block_on<T>(future: impl Future<Output = T>) -> T {
        smol::block_on(future)
    }
    fn spawn<T: Send + 'static>(future: impl Future<Output = T> + Send + 'static) -> Joined<T> {
        Box::pin(smol::spawn(future))
    }
}

pub struct AsyncStd;

impl Runtime for AsyncStd {
    type Tcp = async_std::net::TcpStream;
    fn tcp_pair() -> Joined<(Self::Tcp, Self::Tcp)> {
        tcp_pair!(async_std::net)
    }
    type Unix = async_std::os::unix::net::UnixStream;
    fn unix_pair() -> (Self::Unix, Self::Unix) {
        async_std::os::unix::net::UnixStream::pair().unwrap()
    }
    fn block_on<T>(future: impl Future<Output = T>) -> T {
        async_std::task::block_on(future)
    }
    fn spawn<T: Send + 'static>(future: impl Future<Output = T> + Send + 'static) -> Joined<T> {
        Box::pin(async_std::task::spawn(future))
    }
}

/// Each scenario, written once as `async fn name<R: Runtime>() { ... }`,
/// becomes the tests `name::on_smol` and `name::on_async_std`.
macro_rules! on_both_runtimes {
    ($($(#[$meta:meta])* async fn $name:ident<$rt:ident: Runtime>() $body:block)*) => {$(
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn scenario<$rt: crate::support::Runtime>() $body

            #[test]
            fn on_smol() {
                <crate::support::Smol as crate::support::Runtime>::block_on(scenario::<crate::support::Smol>())
            }

            #[test]
            fn on_async_std() {
                <crate::support::AsyncStd as crate::support::Runtime>::block_on(
                    scenario::<crate::support::AsyncStd>(),
                )
            }
        }
    )*};
}

pub struct Pki {
    pub server: Arc<rustls::ServerConfig>,
    pub roots: Arc<RootCertStore>,
}

/// A private CA and a leaf for localhost and 127.0.0.1 signed by it.
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
    let server = pop3_async_std::tls::server_config(chain, key).unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(ca.der().to_vec())).unwrap();
    Pki {
        server,
        roots: Arc::new(roots),
    }
}

/// This crate's server on two loopback listeners (plain with STLS, and
/// implicit TLS), each `serve` on a task of the runtime.
pub struct Running {
    pub store: Arc<MemoryStore>,
    pub server: Pop3Server<MemoryStore>,
    pub plain: SocketAddr,
    pub tls: SocketAddr,
    pub roots: Arc<RootCertStore>,
    serving: Vec<Joined<io::Result<()>>>,
}

pub fn listener() -> Async<TcpListener> {
    Async::<TcpListener>::bind(([127, 0, 0, 1], 0)).unwrap()
}

pub fn start<R: Runtime>(store: Arc<MemoryStore>, options: ServerOptions) -> Running {
    let pki = pki();
    let config = ServerConfig::default().allow_plaintext_auth(true);
    let server = Pop3Server::build(store.clone(), config, Some(pki.server), options);
    let (plain, tls) = (listener(), listener());
    let (plain_addr, tls_addr) = (
        plain.get_ref().local_addr().unwrap(),
        tls.get_ref().local_addr().unwrap(),
    );
    let mut serving = Vec::new();
    for (listener, security) in [
        (plain, pop3_async_std::server::Security::Plain),
        (tls, pop3_async_std::server::Security::ImplicitTls),
    ] {
        let server = server.clone();
        serving.push(R::spawn(
            async move { server.serve(listener, security).await },
        ));
    }
    Running {
        store,
        server,
        plain: plain_addr,
        tls: tls_addr,
        roots: pki.roots,
        serving,
    }
}

impl Running {
    /// Where a client of `security` connects.
    pub fn addr(&self, security: Security) -> SocketAddr {
        match security {
            Security::ImplicitTls => self.tls,
            _ => self.plain,
        }
    }

    /// Client options trusting the CA.
    pub fn options(&self, security: Security) -> ConnectOptions {
        let mut o = ConnectOptions::new(security);
        // Loopback: clear-text logins are allowed for the plain tests.
        o.session.insecure_cleartext_login = true;
        o.verification = TlsVerification::Roots(self.roots.clone());
        o
    }

    /// Shuts the server down and waits for both `serve` loops to return
    /// (after every session ended).
    pub async fn stop(self) {
        self.server.shutdown();
        for serving in self.serving {
            serving.await.unwrap();
        }
        self.server.wait_idle().await;
    }
}

/// `future`'s output; a panic if it takes longer than `limit` (a bound on
/// a test that would otherwise hang, never a wait for something to happen).
pub async fn within<T>(limit: Duration, future: impl Future<Output = T>) -> T {
    let late = async {
        async_io::Timer::after(limit).await;
        panic!("not done within {limit:?}")
    };
    futures_lite::future::or(future, late).await
}

/// A memory store with `user` (password "secret") holding `messages`.
pub fn store(user: &str, messages: &[Vec<u8>]) -> Arc<MemoryStore> {
    let store = Arc::new(MemoryStore::new());
    store.add_user(user, "secret");
    for m in messages {
        store.add_message(user, m.clone());
    }
    store
}

/// A flag raised by one thread and awaited by futures (lowered again to
/// wait for the next raise).
#[derive(Default)]
pub struct Flag {
    set: std::sync::atomic::AtomicBool,
    event: event_listener::Event,
}

impl Flag {
    pub fn raise(&self) {
        self.set.store(true, std::sync::atomic::Ordering::SeqCst);
        self.event.notify(usize::MAX);
    }

    pub fn lower(&self) {
        self.set.store(false, std::sync::atomic::Ordering::SeqCst);
    }

    pub async fn wait(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        loop {
            if self.set.load(SeqCst) {
                return;
            }
            let listener = self.event.listen();
            if self.set.load(SeqCst) {
                return;
            }
            listener.await;
        }
    }
}
