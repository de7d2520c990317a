//! pop3d's operator flags: PROXY protocol sources, several certificates
//! and the minimum TLS version reach the server's setup.

use clap::Parser;
use pop3_blocking::cli::ServerArgs;

fn pem_pair(dir: &std::path::Path, name: &str) -> (String, String) {
    let cert = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
    let (c, k) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&c, cert.cert.pem()).unwrap();
    std::fs::write(&k, cert.key_pair.serialize_pem()).unwrap();
    (c.display().to_string(), k.display().to_string())
}

#[test]
fn proxy_sources_certificates_and_tls_minimum_reach_the_setup() {
    let dir = tempfile::tempdir().unwrap();
    let (a, a_key) = pem_pair(dir.path(), "pop.example.org");
    let (b, b_key) = pem_pair(dir.path(), "pop.example.net");
    let args = ServerArgs::try_parse_from([
        "pop3d",
        "--listen",
        "127.0.0.1:0",
        "--proxy-protocol-trusted",
        "10.0.0.0/8",
        "--proxy-protocol-trusted",
        "::1",
        "--tls-min-version",
        "1.3",
        "--cert",
        &a,
        "--key",
        &a_key,
        "--cert",
        &b,
        "--key",
        &b_key,
    ])
    .unwrap();
    let (setup, _store) = args.setup("pop3d").unwrap();
    let policy = setup
        .options
        .proxy_protocol
        .as_ref()
        .expect("a PROXY policy");
    assert!(policy.trusts("10.1.2.3".parse().unwrap()));
    assert!(policy.trusts("::1".parse().unwrap()));
    assert!(!policy.trusts("192.0.2.1".parse().unwrap()));
    assert!(setup.demo_ca.is_none(), "the certificates given are served");
}

#[test]
fn without_the_flags_no_header_is_expected() {
    let (setup, _store) = ServerArgs::try_parse_from(["pop3d", "--listen", "127.0.0.1:0"])
        .unwrap()
        .setup("pop3d")
        .unwrap();
    assert!(setup.options.proxy_protocol.is_none());
}

#[test]
fn bad_values_are_refused_with_their_reason() {
    let bad_cidr = ServerArgs::try_parse_from(["pop3d", "--proxy-protocol-trusted", "10.0.0.1/8"])
        .unwrap_err()
        .to_string();
    assert!(
        bad_cidr.contains("address bits set past the prefix length"),
        "{bad_cidr}"
    );
    let bad_version = ServerArgs::try_parse_from(["pop3d", "--tls-min-version", "1.1"])
        .unwrap_err()
        .to_string();
    assert!(bad_version.contains("1.2 or 1.3"), "{bad_version}");
    let dir = tempfile::tempdir().unwrap();
    let (a, a_key) = pem_pair(dir.path(), "pop.example.org");
    let (b, _) = pem_pair(dir.path(), "pop.example.net");
    let unpaired = ServerArgs::try_parse_from([
        "pop3d",
        "--listen",
        "127.0.0.1:0",
        "--cert",
        &a,
        "--key",
        &a_key,
        "--cert",
        &b,
    ])
    .unwrap()
    .setup("pop3d")
    .unwrap_err()
    .to_string();
    assert!(unpaired.contains("--key"), "{unpaired}");
}
