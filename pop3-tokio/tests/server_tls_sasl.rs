//! SASL bound to TLS, over real TLS on loopback: EXTERNAL with a verified
//! client certificate, and SCRAM-SHA-256-PLUS with the tls-exporter channel
//! binding (TLS 1.3), our tokio server against a rustls client.

use std::sync::Arc;

use pop3_proto::server::{ExternalIdentity, ServerConfig};
use pop3_proto::store::MemoryStore;
use pop3_tokio::server::{Pop3Server, Security, ServerOptions};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

struct Pki {
    ca: rcgen::Certificate,
    ca_key: KeyPair,
}

impl Pki {
    fn new() -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "pop3-rs test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = params.self_signed(&ca_key).unwrap();
        Pki { ca, ca_key }
    }

    fn leaf(&self, names: &[&str]) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.ca, &self.ca_key)
            .unwrap();
        (
            cert.der().clone(),
            PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
    }

    fn roots(&self) -> Arc<rustls::RootCertStore> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        Arc::new(roots)
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server TLS configuration that asks for (but does not require) a client
/// certificate signed by the test CA.
fn server_tls(
    pki: &Pki,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ServerConfig> {
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(pki.roots(), provider())
            .allow_unauthenticated()
            .build()
            .unwrap();
    let (cert, key) = pki.leaf(&["localhost"]);
    Arc::new(
        rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![cert, pki.ca.der().clone()], key)
            .unwrap(),
    )
}

fn client_tls(
    pki: &Pki,
    client_cert: Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>,
) -> Arc<rustls::ClientConfig> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(pki.roots());
    Arc::new(match client_cert {
        Some((cert, key)) => builder.with_client_auth_cert(vec![cert], key).unwrap(),
        None => builder.with_no_client_auth(),
    })
}

/// Starts the server on implicit TLS; returns its port.
async fn start(
    config: ServerConfig,
    tls: Arc<rustls::ServerConfig>,
) -> (u16, Pop3Server<MemoryStore>) {
    let store = MemoryStore::new();
    store.add_user("alice", "secret");
    store.add_message("alice", "Subject: hi\r\n\r\nHello.\r\n");
    let server = Pop3Server::build(Arc::new(store), config, Some(tls), ServerOptions::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let serving = server.clone();
    tokio::spawn(async move { serving.serve(listener, Security::ImplicitTls).await });
    (port, server)
}

type Tls = BufReader<tokio_rustls::client::TlsStream<TcpStream>>;

async fn connect(port: u16, config: Arc<rustls::ClientConfig>) -> Tls {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .unwrap();
    let mut io = BufReader::new(tls);
    let greeting = line(&mut io).await;
    assert!(greeting.starts_with("+OK"), "{greeting}");
    io
}

async fn line(io: &mut Tls) -> String {
    let mut l = String::new();
    io.read_line(&mut l).await.unwrap();
    l
}

async fn cmd(io: &mut Tls, command: &str) -> String {
    io.get_mut()
        .write_all(format!("{command}\r\n").as_bytes())
        .await
        .unwrap();
    line(io).await
}

/// The lines of a multi-line answer, terminator excluded.
async fn listing(io: &mut Tls, command: &str) -> Vec<String> {
    let first = cmd(io, command).await;
    assert!(first.starts_with("+OK"), "{first}");
    let mut out = Vec::new();
    loop {
        let l = line(io).await;
        if l == ".\r\n" {
            return out;
        }
        out.push(l.trim_end().to_string());
    }
}

fn external_config(alice: CertificateDer<'static>) -> ServerConfig {
    ServerConfig::default().external_identity(Some(ExternalIdentity::new(move |der| {
        (der == alice.as_ref()).then(|| "alice".to_string())
    })))
}

#[tokio::test]
async fn external_with_a_verified_client_certificate() {
    let pki = Pki::new();
    let alice = pki.leaf(&["alice.example"]);
    let (port, _server) = start(
        external_config(alice.0.clone()),
        server_tls(&pki, &[&rustls::version::TLS13]),
    )
    .await;

    // With alice's certificate: EXTERNAL offered and it logs her in.
    let mut io = connect(port, client_tls(&pki, Some(alice))).await;
    let caps = listing(&mut io, "CAPA").await;
    let sasl = caps.iter().find(|c| c.starts_with("SASL ")).unwrap();
    assert!(sasl.split(' ').any(|m| m == "EXTERNAL"), "{caps:?}");
    let r = cmd(&mut io, "AUTH EXTERNAL =").await;
    assert!(r.starts_with("+OK Logged in"), "{r}");
    assert_eq!(cmd(&mut io, "STAT").await, "+OK 1 23\r\n");
    cmd(&mut io, "QUIT").await;

    // A certificate of the same CA that maps to nobody, and none at all:
    // no EXTERNAL.
    let other = pki.leaf(&["mallory.example"]);
    for client in [client_tls(&pki, Some(other)), client_tls(&pki, None)] {
        let mut io = connect(port, client).await;
        let caps = listing(&mut io, "CAPA").await;
        assert!(!caps.iter().any(|c| c.contains("EXTERNAL")), "{caps:?}");
        let r = cmd(&mut io, "AUTH EXTERNAL =").await;
        assert!(r.starts_with("-ERR"), "{r}");
        cmd(&mut io, "QUIT").await;
    }
}
