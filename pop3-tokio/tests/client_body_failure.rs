//! A body cut short stays an error on every later read: it can never pass
//! for a complete (shorter) message.

use pop3_tokio::client::{ConnectOptions, Pop3Client, Security, msg};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

#[tokio::test]
async fn a_truncated_body_fails_on_every_read() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // A server that hangs up in the middle of the message.
    let server = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let (read, mut write) = socket.into_split();
        let mut read = BufReader::new(read);
        write.write_all(b"+OK hi\r\n").await.unwrap();
        let mut line = String::new();
        loop {
            line.clear();
            if read.read_line(&mut line).await.unwrap() == 0 {
                return;
            }
            let command = line.trim_end().to_ascii_uppercase();
            if command.starts_with("CAPA") {
                write.write_all(b"-ERR no\r\n").await.unwrap();
            } else if command.starts_with("RETR") {
                write
                    .write_all(b"+OK\r\nSubject: x\r\n\r\nfirst half")
                    .await
                    .unwrap();
                return;
            } else {
                write.write_all(b"+OK\r\n").await.unwrap();
            }
        }
    });
    let mut options = ConnectOptions::new(Security::Plain);
    options.session.insecure_cleartext_login = true;
    let mut client = Pop3Client::connect("127.0.0.1", port, options)
        .await
        .unwrap();
    client.login("u", "p").await.unwrap();
    let mut body = client.retr(msg(1).unwrap()).await.unwrap();
    let mut got = Vec::new();
    assert!(body.read_to_end(&mut got).await.is_err());
    let mut more = Vec::new();
    assert!(body.read_to_end(&mut more).await.is_err(), "second read");
    assert!(more.is_empty());
    assert!(body.next_chunk().await.is_err(), "next_chunk after failure");
    assert!(!body.is_complete());
    server.await.unwrap();
}
