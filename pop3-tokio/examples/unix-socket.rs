//! A server and a client over a Unix socket: the server serves each
//! connection of a `UnixListener` with `serve_connection`, the client runs
//! its session over a `UnixStream` with `from_stream`. Neither needs TCP:
//! both faces run over any stream they are given.
//!
//! ```text
//! cargo run -p pop3-tokio --example unix-socket
//! ```
//!
//! The socket is made in a fresh directory under the system's temporary
//! directory and removed at the end.

use std::net::SocketAddr;

use pop3_proto::server::ServerConfig;
use pop3_proto::store::MemoryStore;
use pop3_tokio::client::{ConnectOptions, Pop3Client, Security, msg};
use pop3_tokio::server::{Pop3Server, Security as ServerSecurity};
use tokio::io::AsyncReadExt;
use tokio::net::{UnixListener, UnixStream};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("pop3-unix-socket-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("pop3.sock");
    let _ = std::fs::remove_file(&path);

    let store = MemoryStore::new();
    store.add_user("demo", "demo");
    store.add_message(
        "demo",
        &b"Subject: hello\r\n\r\nSent over a Unix socket.\r\n"[..],
    );
    // Only this user can reach the socket: a channel trusted as much as TLS
    // (`Secured`), so the password may go in clear text.
    let server = Pop3Server::new(store, ServerConfig::default());
    let listener = UnixListener::bind(&path)?;
    let serving = {
        let server = server.clone();
        tokio::spawn(async move {
            // A Unix socket's peer has no IP address.
            let peer = SocketAddr::from(([0, 0, 0, 0], 0));
            let (stream, _) = listener.accept().await?;
            server
                .serve_connection(stream, peer, ServerSecurity::Secured)
                .await;
            Ok::<_, std::io::Error>(())
        })
    };

    let stream = UnixStream::connect(&path).await?;
    let mut client =
        Pop3Client::from_secured_stream(stream, ConnectOptions::new(Security::Plain)).await?;
    client.login("demo", "demo").await?;
    let stat = client.stat().await?;
    println!("{} message(s), {} octets", stat.count, stat.size);
    let mut text = String::new();
    client
        .retr(msg(1).ok_or("no message 1")?)
        .await?
        .read_to_string(&mut text)
        .await?;
    print!("{text}");
    client.quit().await?;

    serving.await??;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
