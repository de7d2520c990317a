//! The blocking client and server over streams that are not TCP: the two
//! ends of a Unix socket pair, plain, upgraded with STLS, or already
//! secured by the caller.
#![cfg(unix)]

use std::io::Read;
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::thread;

use pop3_blocking::client::{ConnectOptions, Error, Pop3Client, Security, TlsVerification, msg};
use pop3_blocking::server::{Pop3Server, Security as ServerSecurity, ServerOptions};
use pop3_proto::client::task;
use pop3_proto::server::ServerConfig;
use pop3_proto::store::MemoryStore;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

const MESSAGE: &[u8] = b"Subject: hi\r\n\r\nover a Unix socket\r\n";

fn store() -> Arc<MemoryStore> {
    let store = Arc::new(MemoryStore::new());
    store.add_user("alice", "secret");
    store.add_message("alice", MESSAGE);
    store
}

/// A server TLS configuration for `localhost`, and the roots that trust it.
fn pki() -> (Arc<rustls::ServerConfig>, Arc<RootCertStore>) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let config =
        pop3_blocking::tls::server_config(vec![CertificateDer::from(leaf.der().to_vec())], der)
            .unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(ca.der().to_vec())).unwrap();
    (config, Arc::new(roots))
}

/// Serves the server end of a fresh Unix socket pair on a thread: the
/// client end and the thread.
fn serve(
    server: &Pop3Server<MemoryStore>,
    security: ServerSecurity,
) -> (UnixStream, thread::JoinHandle<()>) {
    let (client_end, server_end) = UnixStream::pair().unwrap();
    let server = server.clone();
    // A Unix socket's peer has no IP address.
    let peer = SocketAddr::from(([0, 0, 0, 0], 0));
    let serving = thread::spawn(move || server.serve_connection(server_end, peer, security));
    (client_end, serving)
}

/// Reads the message, deletes it and quits.
fn transaction(client: &mut Pop3Client) -> Result<(), Error> {
    let stat = client.stat()?;
    assert_eq!((stat.count, stat.size), (1, MESSAGE.len() as u64));
    let mut text = Vec::new();
    client
        .retr(msg(1).unwrap())?
        .read_to_end(&mut text)
        .map_err(Error::io)?;
    assert_eq!(text, MESSAGE);
    client.dele(msg(1).unwrap())?;
    client.quit()
}

#[test]
fn a_session_runs_over_a_unix_socket_pair() {
    let store = store();
    let config = ServerConfig::default().allow_plaintext_auth(true);
    let server = Pop3Server::build(store.clone(), config, None, ServerOptions::default());
    let (stream, serving) = serve(&server, ServerSecurity::Plain);
    let mut options = ConnectOptions::new(Security::Plain);
    options.session.insecure_cleartext_login = true;
    let mut client = Pop3Client::from_stream(stream, "localhost", options).unwrap();
    assert!(!client.is_tls());
    client.login("alice", "secret").unwrap();
    transaction(&mut client).unwrap();
    serving.join().unwrap();
    assert_eq!(store.message_count("alice"), 0, "QUIT committed the DELE");
}

#[test]
fn a_session_over_a_unix_socket_pair_upgrades_with_stls() {
    let (tls, roots) = pki();
    let store = store();
    let server = Pop3Server::build(
        store.clone(),
        ServerConfig::default(),
        Some(tls),
        ServerOptions::default(),
    );
    let (stream, serving) = serve(&server, ServerSecurity::Plain);
    let mut options = ConnectOptions::new(Security::StartTls);
    options.verification = TlsVerification::Roots(roots);
    let mut client = Pop3Client::from_stream(stream, "localhost", options).unwrap();
    assert!(client.is_tls(), "STLS upgraded the Unix socket");
    client.login("alice", "secret").unwrap();
    transaction(&mut client).unwrap();
    serving.join().unwrap();
    assert_eq!(store.message_count("alice"), 0);
}

#[test]
fn a_stream_secured_by_the_caller_counts_as_protected_on_both_sides() {
    let store = store();
    // Clear-text logins are refused on unprotected sessions, on both sides.
    let server = Pop3Server::build(
        store.clone(),
        ServerConfig::default(),
        None,
        ServerOptions::default(),
    );
    let (stream, serving) = serve(&server, ServerSecurity::Secured);
    let mut client =
        Pop3Client::from_secured_stream(stream, ConnectOptions::new(Security::Plain)).unwrap();
    assert!(client.is_tls());
    client.run(task::Login::new("alice", "secret")).unwrap();
    transaction(&mut client).unwrap();
    serving.join().unwrap();
    assert_eq!(store.message_count("alice"), 0);
}
