//! A client that trusts only a private CA and proves who it is with a
//! client certificate, against a server that requires one.
//!
//! ```text
//! cargo run -p pop3-tokio --example client-certificate
//! ```
//!
//! Everything is made here: a private CA, a server certificate for
//! `localhost` and a client certificate, all signed by that CA (with rcgen;
//! a real deployment loads them from PEM files). The server's rustls
//! configuration requires a client certificate from the CA
//! (`WebPkiClientVerifier`); the client's configuration trusts that CA and
//! no web PKI root, and carries the client certificate. It is handed to the
//! client whole through `ConnectOptions::tls_config`. A client without the
//! certificate is refused.

use std::sync::Arc;

use pop3_proto::server::ServerConfig;
use pop3_proto::store::MemoryStore;
use pop3_tokio::client::{ConnectOptions, Pop3Client, Security};
use pop3_tokio::server::{Pop3Server, Security as ServerSecurity, ServerOptions};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A certificate signed by the CA, and its key.
fn issue(
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
    ca: &rcgen::Certificate,
    ca_key: &KeyPair,
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), BoxError> {
    let key = KeyPair::generate()?;
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, ca, ca_key)?;
    let key = PrivateKeyDer::from(PrivatePkcs8KeyDer::from(key.serialize_der()));
    Ok((cert.der().clone(), key))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    // The private CA.
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Example private CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca_params.self_signed(&ca_key)?;
    let mut roots = RootCertStore::empty();
    roots.add(ca.der().clone())?;
    let roots = Arc::new(roots);

    let (server_cert, server_key) = issue(
        &["localhost"],
        ExtendedKeyUsagePurpose::ServerAuth,
        &ca,
        &ca_key,
    )?;
    let (client_cert, client_key) = issue(
        &["alice-laptop"],
        ExtendedKeyUsagePurpose::ClientAuth,
        &ca,
        &ca_key,
    )?;

    // The server: a client certificate from the CA is required.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone()).build()?;
    let server_tls = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![server_cert], server_key)?;
    let store = MemoryStore::new();
    store.add_user("alice", "secret");
    store.add_message(
        "alice",
        &b"Subject: for certified eyes\r\n\r\nHello.\r\n"[..],
    );
    let server = Pop3Server::build(
        Arc::new(store),
        ServerConfig::default(),
        Some(Arc::new(server_tls)),
        ServerOptions::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let serving = tokio::spawn({
        let server = server.clone();
        async move { server.serve(listener, ServerSecurity::ImplicitTls).await }
    });

    // The client: the private CA as its only root, and its certificate.
    let client_tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots.clone())
        .with_client_auth_cert(vec![client_cert], client_key)?;
    let mut options = ConnectOptions::new(Security::ImplicitTls);
    options.tls_config = Some(Arc::new(client_tls));
    let mut client = Pop3Client::connect("localhost", port, options).await?;
    client.login("alice", "secret").await?;
    let stat = client.stat().await?;
    println!(
        "with the client certificate: logged in over TLS, {} message(s), {} octets",
        stat.count, stat.size
    );
    client.quit().await?;

    // The same CA trusted, no certificate: the server ends the handshake.
    let anonymous = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut options = ConnectOptions::new(Security::ImplicitTls);
    options.tls_config = Some(Arc::new(anonymous));
    match Pop3Client::connect("localhost", port, options).await {
        Err(e) => println!("without it: refused ({e})"),
        Ok(_) => return Err("a client without a certificate was let in".into()),
    }

    server.shutdown();
    serving.await??;
    Ok(())
}
