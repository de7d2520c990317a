//! A blocking store (pop3-blocking's Maildir store) served through
//! [`Unblock`], each scenario on smol and on async-std.

#[macro_use]
mod support;

use std::fs;
use std::path::Path;

use pop3_async_std::Unblock;
use pop3_async_std::client::{ConnectOptions, Pop3Client, Security, msg};
use pop3_async_std::server::{Pop3Server, Security as Listening};
use pop3_blocking::maildir::MaildirStore;
use pop3_blocking::passwd::PasswdFile;
use pop3_proto::server::ServerConfig;
use support::listener;

fn files(maildir: &Path) -> usize {
    ["cur", "new"]
        .iter()
        .map(|sub| fs::read_dir(maildir.join(sub)).unwrap().count())
        .sum()
}

on_both_runtimes! {
    /// Every store call runs on the blocking pool: login, listing, RETR of
    /// the files' octets, and the DELE committed to disk at QUIT.
    async fn a_maildir_store_through_unblock_serves_and_commits_at_quit<R: Runtime>() {
        let root = tempfile::tempdir().unwrap();
        let maildir = root.path().join("alice");
        for sub in ["cur", "new", "tmp"] {
            fs::create_dir_all(maildir.join(sub)).unwrap();
        }
        let msgs = [&b"Subject: a\r\n\r\nfirst\r\n"[..], b"Subject: b\r\n\r\n.second\r\n"];
        for (i, m) in msgs.iter().enumerate() {
            fs::write(maildir.join("new").join(format!("100{i}.M1P1.test")), m).unwrap();
        }
        let users = PasswdFile::parse("alice:{PLAIN}secret\n").unwrap();
        let store = Unblock::new(MaildirStore::new(root.path(), users));
        let server = Pop3Server::new(store, ServerConfig::default().allow_plaintext_auth(true));
        let listener = listener();
        let port = listener.get_ref().local_addr().unwrap().port();
        let serving = {
            let server = server.clone();
            R::spawn(async move { server.serve(listener, Listening::Plain).await })
        };

        let mut options = ConnectOptions::new(Security::Plain);
        options.session.insecure_cleartext_login = true;
        let mut client = Pop3Client::connect("127.0.0.1", port, options).await.unwrap();
        client.login("alice", "secret").await.unwrap();
        let list = client.list().await.unwrap();
        let mut sizes: Vec<u64> = list.iter().map(|l| l.size).collect();
        sizes.sort();
        assert_eq!(sizes, [msgs[0].len() as u64, msgs[1].len() as u64]);
        let mut got = Vec::new();
        for n in 1..=2 {
            let mut body = client.retr(msg(n).unwrap()).await.unwrap();
            let mut text = Vec::new();
            while let Some(chunk) = body.next_chunk().await.unwrap() {
                text.extend_from_slice(&chunk);
            }
            got.push(text);
        }
        got.sort();
        assert_eq!(got, msgs);
        client.dele(msg(1).unwrap()).await.unwrap();
        assert_eq!(files(&maildir), 2, "deleted before QUIT");
        client.quit().await.unwrap();
        assert_eq!(files(&maildir), 1);

        server.shutdown();
        serving.await.unwrap();
    }
}
