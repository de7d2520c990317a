//! `pop3d`: a POP3 server on tokio.
//!
//! With no arguments it serves an embedded demo maildrop (user `demo`,
//! password `demo`) on 127.0.0.1:1110, offering STLS with a certificate made
//! at start, and allows plaintext login so the demo works with any client.
//!
//! ```text
//! pop3d [--listen ADDR]... [--tls-listen ADDR]... [--maildir-root DIR --users FILE]
//!       [--cert PEM --key PEM] [--allow-plaintext-auth]
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use pop3_blocking::maildir::MaildirStore;
use pop3_blocking::passwd::PasswdFile;
use pop3_proto::server::ServerConfig;
use pop3_proto::store::{MemoryStore, Store};
use pop3_tokio::SpawnBlocking;
use pop3_tokio::server::{Pop3Server, Security, ServerOptions};

const DEMO_MESSAGES: [&str; 5] = [
    include_str!("demo/1-welcome.eml"),
    include_str!("demo/2-dots.eml"),
    include_str!("demo/3-utf8.eml"),
    include_str!("demo/4-attachment.eml"),
    include_str!("demo/5-html.eml"),
];

const USAGE: &str = "usage: pop3d [--listen ADDR]... [--tls-listen ADDR]... \
[--maildir-root DIR --users FILE] [--cert PEM --key PEM] [--allow-plaintext-auth]";

#[derive(Debug, Default)]
struct Args {
    listen: Vec<SocketAddr>,
    tls_listen: Vec<SocketAddr>,
    maildir_root: Option<PathBuf>,
    users: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    allow_plaintext_auth: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args::default();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        let addr = |s: String| {
            s.parse::<SocketAddr>()
                .map_err(|e| format!("bad address {s:?}: {e}"))
        };
        match flag.as_str() {
            "--listen" => args.listen.push(addr(value("--listen")?)?),
            "--tls-listen" => args.tls_listen.push(addr(value("--tls-listen")?)?),
            "--maildir-root" => args.maildir_root = Some(value("--maildir-root")?.into()),
            "--users" => args.users = Some(value("--users")?.into()),
            "--cert" => args.cert = Some(value("--cert")?.into()),
            "--key" => args.key = Some(value("--key")?.into()),
            "--allow-plaintext-auth" => args.allow_plaintext_auth = true,
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if args.maildir_root.is_some() != args.users.is_some() {
        return Err("--maildir-root and --users go together".into());
    }
    if args.cert.is_some() != args.key.is_some() {
        return Err("--cert and --key go together".into());
    }
    if args.listen.is_empty() && args.tls_listen.is_empty() {
        args.listen.push(SocketAddr::from(([127, 0, 0, 1], 1110)));
    }
    Ok(args)
}

/// A CA and a server certificate for localhost made at start, so clients can
/// verify the demo server with the CA file written next to it.
fn demo_tls() -> Result<(Arc<rustls::ServerConfig>, PathBuf), Box<dyn std::error::Error>> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "pop3d demo CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca_params.self_signed(&ca_key)?;

    let key = KeyPair::generate()?;
    let params = CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ])?;
    let cert = params.signed_by(&key, &ca, &ca_key)?;

    let ca_file = std::env::temp_dir().join(format!("pop3d-demo-ca-{}.pem", std::process::id()));
    std::fs::write(&ca_file, ca.pem())?;
    let config = pop3_tokio::tls::server_config(
        vec![cert.der().clone(), ca.der().clone()],
        rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )?;
    Ok((config, ca_file))
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("pop3d: {e}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pop3d: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let (tls, ca_file) = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => (pop3_tokio::tls::server_config_from_pem(cert, key)?, None),
        _ => {
            let (config, ca) = demo_tls()?;
            (config, Some(ca))
        }
    };
    let demo = args.maildir_root.is_none();
    let config = ServerConfig::default()
        .allow_plaintext_auth(args.allow_plaintext_auth || demo)
        .implementation(Some(format!("pop3-rs pop3d {}", env!("CARGO_PKG_VERSION"))));

    if let (Some(root), Some(users)) = (&args.maildir_root, &args.users) {
        let users = PasswdFile::load(users)?;
        let store = SpawnBlocking::new(MaildirStore::new(root, users));
        serve(store, config, tls, &args, None).await
    } else {
        let store = MemoryStore::new();
        store.add_user("demo", "demo");
        for message in DEMO_MESSAGES {
            store.add_message("demo", message.as_bytes());
        }
        serve(store, config, tls, &args, ca_file).await
    }
}

async fn serve<S>(
    store: S,
    config: ServerConfig,
    tls: Arc<rustls::ServerConfig>,
    args: &Args,
    demo_ca: Option<PathBuf>,
) -> Result<(), Box<dyn std::error::Error>>
where
    S: Store + 'static,
    S::Maildrop: 'static,
{
    let server = Pop3Server::build(Arc::new(store), config, Some(tls), ServerOptions::default());
    let mut tasks = tokio::task::JoinSet::new();
    for (addrs, security) in [
        (&args.listen, Security::Plain),
        (&args.tls_listen, Security::ImplicitTls),
    ] {
        for addr in addrs {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            let local = listener.local_addr()?;
            let kind = if security == Security::Plain {
                "pop3 (STLS offered)"
            } else {
                "pop3s (implicit TLS)"
            };
            println!("pop3d: listening on {local}, {kind}");
            let server = server.clone();
            tasks.spawn(async move { server.serve(listener, security).await });
        }
    }
    if let Some(ca) = &demo_ca {
        let addr = args
            .listen
            .first()
            .copied()
            .unwrap_or_else(|| args.tls_listen[0]);
        let (host, port) = (addr.ip(), addr.port());
        println!(
            "pop3d: demo maildrop: user demo, password demo; CA certificate: {}",
            ca.display()
        );
        println!("  curl:   curl -u demo:demo pop3://{host}:{port}/1");
        println!(
            "  STLS:   curl --ssl-reqd --cacert {} -u demo:demo pop3://localhost:{port}/",
            ca.display()
        );
        println!(
            "  python: python3 -c \"import poplib; p = poplib.POP3('{host}', {port}); p.user('demo'); p.pass_('demo'); print(p.stat()); print(b'\\n'.join(p.retr(1)[1]).decode()); p.quit()\""
        );
    }
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {
            println!("pop3d: shutting down");
            server.shutdown();
        }
        Some(res) = tasks.join_next() => {
            server.shutdown();
            res??;
        }
    }
    server.wait_idle().await;
    if let Some(ca) = demo_ca {
        let _ = std::fs::remove_file(ca);
    }
    Ok(())
}
