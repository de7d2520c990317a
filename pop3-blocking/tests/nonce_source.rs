//! Where the randomness of nonces comes from: the crypto provider of the
//! TLS configuration in use (so an application that configures aws-lc-rs,
//! or a provider of its own, gets its generator), not always ring.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use base64::Engine as _;
use pop3_blocking::client::{ConnectOptions, Pop3Client, Security};
use pop3_blocking::server::{Pop3Server, Security as ServerSecurity, ServerOptions};
use pop3_proto::server::ServerConfig;
use pop3_proto::store::MemoryStore;
use rustls::crypto::{CryptoProvider, GetRandomFailed, SecureRandom};

/// A generator that fills every buffer with one octet and counts its calls.
#[derive(Debug)]
struct Marked {
    octet: u8,
    calls: AtomicUsize,
}

impl SecureRandom for Marked {
    fn fill(&self, buf: &mut [u8]) -> Result<(), GetRandomFailed> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        buf.fill(self.octet);
        Ok(())
    }
}

/// ring's provider with `random` as its generator.
fn provider_with(random: &'static Marked) -> Arc<CryptoProvider> {
    Arc::new(CryptoProvider {
        secure_random: random,
        ..rustls::crypto::ring::default_provider()
    })
}

#[test]
fn a_client_draws_its_scram_nonce_from_the_provider_of_its_tls_config() {
    static RANDOM: Marked = Marked {
        octet: 0xab,
        calls: AtomicUsize::new(0),
    };
    let config = rustls::ClientConfig::builder_with_provider(provider_with(&RANDOM))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();

    // A server that offers SCRAM-SHA-256 and hands back the client-first
    // message it is sent.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = thread::spawn(move || -> String {
        let (stream, _) = listener.accept().unwrap();
        let mut w = stream.try_clone().unwrap();
        let mut r = BufReader::new(stream);
        w.write_all(b"+OK hi\r\n").unwrap();
        loop {
            let mut line = String::new();
            assert!(r.read_line(&mut line).unwrap() > 0, "closed before AUTH");
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.first().map(|w| w.to_ascii_uppercase()).as_deref() {
                Some("CAPA") => w.write_all(b"+OK\r\nSASL SCRAM-SHA-256\r\n.\r\n").unwrap(),
                Some("AUTH") => {
                    let first = match words.get(2) {
                        Some(initial) => initial.to_string(),
                        None => {
                            w.write_all(b"+ \r\n").unwrap();
                            let mut next = String::new();
                            r.read_line(&mut next).unwrap();
                            next.trim_end().to_owned()
                        }
                    };
                    w.write_all(b"-ERR no\r\n").unwrap();
                    let first = base64::engine::general_purpose::STANDARD
                        .decode(first)
                        .unwrap();
                    return String::from_utf8(first).unwrap();
                }
                _ => w.write_all(b"-ERR what\r\n").unwrap(),
            }
        }
    });

    let mut options = ConnectOptions::new(Security::Plain);
    options.tls_config = Some(Arc::new(config));
    let mut client = Pop3Client::connect("127.0.0.1", port, options).unwrap();
    assert!(
        client.login("alice", "secret").is_err(),
        "the server refuses"
    );
    let client_first = server.join().unwrap();
    let nonce = client_first
        .split(',')
        .find_map(|part| part.strip_prefix("r="))
        .unwrap_or_else(|| panic!("no nonce in {client_first:?}"));
    assert_eq!(nonce, "ab".repeat(12), "the nonce of {client_first:?}");
    assert!(RANDOM.calls.load(Ordering::SeqCst) > 0);
}

#[test]
fn a_server_draws_each_connections_randomness_from_the_provider_of_its_tls_config() {
    static RANDOM: Marked = Marked {
        octet: 0x5a,
        calls: AtomicUsize::new(0),
    };
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let tls = rustls::ServerConfig::builder_with_provider(provider_with(&RANDOM))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    let store = MemoryStore::new();
    store.add_user("demo", "demo");
    let server = Pop3Server::build(
        Arc::new(store),
        ServerConfig::default(),
        Some(Arc::new(tls)),
        ServerOptions::default(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = {
        let server = server.clone();
        thread::spawn(move || server.serve(listener, ServerSecurity::Plain))
    };

    let before = RANDOM.calls.load(Ordering::SeqCst);
    let stream = TcpStream::connect(addr).unwrap();
    let mut greeting = String::new();
    BufReader::new(&stream).read_line(&mut greeting).unwrap();
    assert!(greeting.starts_with("+OK"), "{greeting:?}");
    assert_eq!(
        RANDOM.calls.load(Ordering::SeqCst),
        before + 1,
        "the greeting's connection drew its randomness from the configured provider"
    );
    (&stream).write_all(b"QUIT\r\n").unwrap();
    drop(stream);
    server.shutdown();
    serving.join().unwrap().unwrap();
}
