//! Two maildrops on one host must never share fetch records: a unique-id
//! stored from one must not count as stored for the other, or `--delete`
//! would remove mail that was never saved.

use std::sync::Arc;

use pop3_proto::store::MemoryStore;
use pop3_tokio::fetch::{self, FetchSettings, MaildirSink, PopUrl};
use pop3_tokio::server::Pop3Server;
use support::server::serve_memory;

mod support;

/// A server on a random loopback port whose maildrop holds one message.
/// Every such store numbers its unique-ids from the same start, so the
/// two maildrops below have the same unique-id for different mail.
async fn serve_one(body: &'static [u8]) -> (Arc<MemoryStore>, u16, Pop3Server<MemoryStore>) {
    let store = Arc::new(MemoryStore::new());
    store.add_user("alice", "pw");
    store.add_message("alice", body);
    let (port, server) = serve_memory(store.clone()).await;
    (store, port, server)
}

#[tokio::test]
async fn two_maildrops_on_one_host_are_fetched_and_deleted_separately() {
    let (a, port_a, server_a) = serve_one(b"Subject: from A\r\n\r\nA\r\n").await;
    let (b, port_b, server_b) = serve_one(b"Subject: from B\r\n\r\nB\r\n").await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = FetchSettings::default();
    settings.delete = true;
    // Loopback: the plain USER login is allowed explicitly.
    settings.insecure_cleartext_login = true;
    for port in [port_a, port_b] {
        let url = PopUrl::parse(&format!("pop://alice;AUTH=USER@127.0.0.1:{port}")).unwrap();
        let sink = MaildirSink::open(dir.path(), &url.account_id()).unwrap();
        let (_sink, result) = fetch::run(&url, "pw", &settings, sink, &mut |_| {}).await;
        let report = result.unwrap();
        assert_eq!(
            (report.saved, report.deleted),
            (1, 1),
            "port {port}: {report:?}"
        );
    }
    let mut stored: Vec<Vec<u8>> = std::fs::read_dir(dir.path().join("new"))
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    stored.sort();
    assert_eq!(
        stored,
        vec![
            b"Subject: from A\n\nA\n".to_vec(),
            b"Subject: from B\n\nB\n".to_vec()
        ]
    );
    assert_eq!((a.message_count("alice"), b.message_count("alice")), (0, 0));
    server_a.shutdown();
    server_b.shutdown();
}

#[tokio::test]
async fn a_cleartext_login_without_tls_is_refused_unless_allowed() {
    let (store, port, server) = serve_one(b"Subject: x\r\n\r\nx\r\n").await;
    let dir = tempfile::tempdir().unwrap();
    let url = PopUrl::parse(&format!("pop://alice;AUTH=USER@127.0.0.1:{port}")).unwrap();
    let sink = MaildirSink::open(dir.path(), &url.account_id()).unwrap();
    let (_sink, result) =
        fetch::run(&url, "pw", &FetchSettings::default(), sink, &mut |_| {}).await;
    let err = result.unwrap_err();
    assert!(
        matches!(
            err,
            fetch::FetchError::Pop3(pop3_proto::client::Error::Command(
                pop3_proto::client::ClientError::CleartextRefused
            ))
        ),
        "{err:?}"
    );
    assert_eq!(store.message_count("alice"), 1);
    server.shutdown();
}

/// A sink in memory whose sync fails: what it was asked, in order.
#[derive(Default)]
struct SyncFails {
    calls: Vec<&'static str>,
}

impl fetch::MessageSink for SyncFails {
    fn contains(&mut self, _uid: &pop3_proto::types::Uid) -> std::io::Result<bool> {
        self.calls.push("contains");
        Ok(false)
    }
    fn begin(&mut self, _uid: &pop3_proto::types::Uid) -> std::io::Result<()> {
        self.calls.push("begin");
        Ok(())
    }
    fn write(&mut self, _chunk: &[u8]) -> std::io::Result<()> {
        Ok(())
    }
    fn commit(&mut self) -> std::io::Result<()> {
        self.calls.push("commit");
        Ok(())
    }
    fn abort(&mut self) {
        self.calls.push("abort");
    }
    fn sync(&mut self) -> std::io::Result<()> {
        self.calls.push("sync");
        Err(std::io::Error::other("the disk is gone"))
    }
}

#[tokio::test]
async fn nothing_is_deleted_until_the_sink_synced_every_message() {
    let (store, port, server) = serve_one(b"Subject: x\r\n\r\nx\r\n").await;
    store.add_message("alice", &b"Subject: y\r\n\r\ny\r\n"[..]);
    let url = PopUrl::parse(&format!("pop://alice;AUTH=USER@127.0.0.1:{port}")).unwrap();
    let mut settings = FetchSettings::default();
    settings.delete = true;
    settings.insecure_cleartext_login = true;
    let (sink, result) = fetch::run(&url, "pw", &settings, SyncFails::default(), &mut |_| {}).await;
    let err = result.unwrap_err();
    assert!(matches!(err, fetch::FetchError::Store(_)), "{err:?}");
    // One sync, after the last commit; no DELE went out.
    assert_eq!(
        sink.calls,
        [
            "contains", "contains", "begin", "commit", "begin", "commit", "sync"
        ]
    );
    assert_eq!(store.message_count("alice"), 2);
    server.shutdown();
}
