//! Several server certificates chosen by the name the client asks for, and
//! the minimum TLS version, through in-memory handshakes.

use std::sync::Arc;

use pop3_blocking::tls::{MinTlsVersion, server_config_for_certificates};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConnection};

type Pair = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn certificate(name: &str) -> Pair {
    let cert = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der()));
    (vec![CertificateDer::from(cert.cert.der().to_vec())], key)
}

/// Runs a handshake between the two ends in memory; the certificate the
/// server presented, or the failure.
fn handshake(
    server: Arc<rustls::ServerConfig>,
    client: Arc<ClientConfig>,
    name: &str,
) -> Result<CertificateDer<'static>, rustls::Error> {
    let name = ServerName::try_from(name.to_string()).unwrap();
    let mut c = ClientConnection::new(client, name).unwrap();
    let mut s = ServerConnection::new(server).unwrap();
    for _ in 0..10 {
        let mut wire = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut wire).unwrap();
        }
        let mut read = &wire[..];
        while !read.is_empty() {
            s.read_tls(&mut read).unwrap();
        }
        s.process_new_packets()?;
        let mut wire = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut wire).unwrap();
        }
        let mut read = &wire[..];
        while !read.is_empty() {
            c.read_tls(&mut read).unwrap();
        }
        c.process_new_packets()?;
        if !c.is_handshaking() && !s.is_handshaking() {
            return Ok(c.peer_certificates().unwrap()[0].clone());
        }
    }
    panic!("the handshake did not end");
}

fn client_trusting(
    certs: &[&Pair],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for (chain, _) in certs {
        roots.add(chain[0].clone()).unwrap();
    }
    let provider = pop3_blocking::tls::default_provider().unwrap();
    Arc::new(
        ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

#[test]
fn each_name_gets_its_own_certificate_and_an_unknown_name_the_first() {
    let (org, net) = (
        certificate("pop.example.org"),
        certificate("pop.example.net"),
    );
    let server = server_config_for_certificates(
        vec![
            (org.0.clone(), org.1.clone_key()),
            (net.0.clone(), net.1.clone_key()),
        ],
        MinTlsVersion::Tls12,
    )
    .unwrap();
    let client = client_trusting(&[&org, &net], rustls::DEFAULT_VERSIONS);
    let got = handshake(server.clone(), client.clone(), "pop.example.org").unwrap();
    assert_eq!(got, org.0[0]);
    let got = handshake(server.clone(), client.clone(), "pop.example.net").unwrap();
    assert_eq!(got, net.0[0]);
    // Another name: the first certificate is offered (and fails to verify).
    assert!(handshake(server, client, "pop.example.com").is_err());
}

#[test]
fn a_tls13_minimum_refuses_a_tls12_client() {
    let org = certificate("pop.example.org");
    let server = server_config_for_certificates(
        vec![(org.0.clone(), org.1.clone_key())],
        MinTlsVersion::Tls13,
    )
    .unwrap();
    let tls12 = client_trusting(&[&org], &[&rustls::version::TLS12]);
    assert!(handshake(server.clone(), tls12, "pop.example.org").is_err());
    let tls13 = client_trusting(&[&org], &[&rustls::version::TLS13]);
    assert!(handshake(server, tls13, "pop.example.org").is_ok());
    // 1.2 minimum: a 1.2 client is served.
    let server = server_config_for_certificates(
        vec![(org.0.clone(), org.1.clone_key())],
        MinTlsVersion::Tls12,
    )
    .unwrap();
    let tls12 = client_trusting(&[&org], &[&rustls::version::TLS12]);
    assert!(handshake(server, tls12, "pop.example.org").is_ok());
}
