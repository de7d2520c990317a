//! SASL bound to TLS, over real TLS on loopback: EXTERNAL with a verified
//! client certificate, and SCRAM-SHA-256-PLUS with the tls-exporter channel
//! binding (TLS 1.3), our tokio server against a rustls client; and mpop's
//! `auth external` with a client certificate.

use std::sync::Arc;

use pop3_proto::server::{ExternalIdentity, ServerConfig};
use pop3_proto::store::MemoryStore;
use pop3_tokio::server::{Pop3Server, Security, ServerOptions};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

mod support;

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

    /// A leaf as PEM files in `dir`: (certificate, key), and its DER.
    fn leaf_files(
        &self,
        dir: &std::path::Path,
        name: &str,
    ) -> (
        std::path::PathBuf,
        std::path::PathBuf,
        CertificateDer<'static>,
    ) {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .signed_by(&key, &self.ca, &self.ca_key)
            .unwrap();
        let cert_path = dir.join(format!("{name}.crt"));
        let key_path = dir.join(format!("{name}.key"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path, cert.der().clone())
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

/// A server offering (and advertising) SCRAM-SHA-256-PLUS alone, with a store that can do
/// nothing else: a login that succeeds went through the bound mechanism.
async fn plus_only(
    pki: &Pki,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> (u16, u16, Pop3Server<MemoryStore>) {
    use pop3_proto::server::SaslMechanism;
    use pop3_proto::store::CredentialForms;
    let store = MemoryStore::new()
        .with_credential_forms(CredentialForms::new(false, false).with_scram(false, true));
    store.add_user("alice", "secret");
    store.add_message("alice", "Subject: hi\r\n\r\nHello.\r\n");
    let config = ServerConfig::default()
        .sasl_mechanisms(vec![SaslMechanism::ScramSha256Plus])
        .advertise_channel_binding(true);
    let server = Pop3Server::build(
        Arc::new(store),
        config,
        Some(server_tls(pki, versions)),
        ServerOptions::default(),
    );
    let implicit = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (p1, p2) = (
        implicit.local_addr().unwrap().port(),
        plain.local_addr().unwrap().port(),
    );
    let s = server.clone();
    tokio::spawn(async move { s.serve(implicit, Security::ImplicitTls).await });
    let s = server.clone();
    tokio::spawn(async move { s.serve(plain, Security::Plain).await });
    (p1, p2, server)
}

fn client_options(
    pki: &Pki,
    dir: &std::path::Path,
    security: pop3_tokio::client::Security,
) -> pop3_tokio::client::ConnectOptions {
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, pki.ca.pem()).unwrap();
    let mut o = pop3_tokio::client::ConnectOptions::new(security);
    o.verification = pop3_tokio::client::TlsVerification::ca_file(&ca).unwrap();
    o.tls_name = Some("localhost".into());
    o
}

#[tokio::test]
async fn scram_sha256_plus_with_tls_exporter_over_tls13_both_sides() {
    use pop3_tokio::client::{Pop3Client, Security as S};
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let (implicit, plain, _server) = plus_only(&pki, &[&rustls::version::TLS13]).await;
    for (port, security) in [(implicit, S::ImplicitTls), (plain, S::StartTls)] {
        let mut client = Pop3Client::connect(
            "127.0.0.1",
            port,
            client_options(&pki, dir.path(), security),
        )
        .await
        .unwrap();
        let caps = client.capabilities().unwrap().to_vec();
        assert!(
            format!("{caps:?}").contains("SCRAM-SHA-256-PLUS"),
            "{caps:?}"
        );
        // login picks the bound mechanism (nothing else would work here).
        client
            .login("alice", "secret")
            .await
            .unwrap_or_else(|e| panic!("{security:?}: {e}"));
        assert_eq!(client.stat().await.unwrap().count, 1);
        client.quit().await.unwrap();
    }
    // A client bound to another channel (a man in the middle would be):
    // the proofs fail.
    use pop3_proto::client::sasl::Scram;
    use pop3_proto::types::Secret;
    let mut client = Pop3Client::connect(
        "127.0.0.1",
        implicit,
        client_options(&pki, dir.path(), S::ImplicitTls),
    )
    .await
    .unwrap();
    let wrong = Scram::sha256("alice", Secret::new("secret"), "0123456789abcdef01234567")
        .with_tls_exporter([0; 32]);
    let err = client.auth(Box::new(wrong)).await.unwrap_err();
    let server = err.server_error().expect("a -ERR");
    assert_eq!(
        server.kind(),
        Some(pop3_proto::response::CodeKind::Auth),
        "{server}"
    );
}

#[tokio::test]
async fn scram_sha256_plus_is_not_offered_over_tls12() {
    use pop3_tokio::client::{Error, Pop3Client, Security as S};
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let (implicit, _plain, _server) = plus_only(&pki, &[&rustls::version::TLS12]).await;
    let mut client = Pop3Client::connect(
        "127.0.0.1",
        implicit,
        client_options(&pki, dir.path(), S::ImplicitTls),
    )
    .await
    .unwrap();
    let caps = client
        .capabilities()
        .map(|c| format!("{c:?}"))
        .unwrap_or_default();
    assert!(!caps.contains("SCRAM-SHA-256-PLUS"), "{caps}");
    // Nothing left but USER/PASS, which this store cannot check.
    let err = client.login("alice", "secret").await.unwrap_err();
    assert!(matches!(err, Error::Server(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mpop_auth_external_with_a_client_certificate() {
    let pki = Pki::new();
    let work = tempfile::tempdir().unwrap();
    let (cert, key, der) = pki.leaf_files(work.path(), "alice.example");
    let ca = work.path().join("ca.pem");
    std::fs::write(&ca, pki.ca.pem()).unwrap();
    let (port, _server) = start(
        external_config(der),
        server_tls(&pki, &[&rustls::version::TLS13, &rustls::version::TLS12]),
    )
    .await;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut account = support::mpop::Mpop::new(
        &work.path().join("mpop"),
        addr,
        support::mpop::Security::Implicit(ca),
        "alice",
        "not used",
    )
    .auth("external");
    account.extra = vec![
        format!("tls_cert_file {}", cert.display()),
        format!("tls_key_file {}", key.display()),
    ];
    let (out, delivered) = support::blocking(move || {
        let mut cmd = account.command();
        cmd.arg("--debug");
        let out = support::run_with_timeout(cmd, account.timeout);
        (out, account.delivered())
    })
    .await;
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{log}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(log.contains("--> AUTH EXTERNAL"), "{log}");
    assert_eq!(delivered.len(), 1, "{log}");
    assert!(String::from_utf8_lossy(&delivered[0]).contains("Hello."));
}
