//! Every call the fetch makes on its sink, the real Maildir sink, runs on
//! the `blocking` thread pool and never on the thread that polls the fetch:
//! the Maildir sink may fsync in any of its calls (even a lookup, for a
//! file a killed run left in `new/`), and that thread also polls other
//! futures.

#[macro_use]
mod support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::Duration;

use pop3_async_std::client::{Pop3Client, Security};
use pop3_async_std::fetch::{self, FetchOptions, MaildirSink, MessageSink};
use pop3_async_std::server::ServerOptions;
use pop3_proto::types::Uid;
use support::{start, store, within};

type Calls = Arc<Mutex<Vec<(&'static str, ThreadId)>>>;

/// The Maildir sink, noting the thread of every call.
struct Placed {
    inner: MaildirSink,
    calls: Calls,
}

impl Placed {
    fn note(&self, call: &'static str) {
        let thread = std::thread::current().id();
        self.calls.lock().unwrap().push((call, thread));
    }
}

impl MessageSink for Placed {
    fn contains(&mut self, uid: &Uid) -> std::io::Result<bool> {
        self.note("contains");
        self.inner.contains(uid)
    }
    fn begin(&mut self, uid: &Uid) -> std::io::Result<()> {
        self.note("begin");
        self.inner.begin(uid)
    }
    fn write(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        self.note("write");
        self.inner.write(chunk)
    }
    fn commit(&mut self) -> std::io::Result<()> {
        self.note("commit");
        self.inner.commit()
    }
    fn sync(&mut self) -> std::io::Result<()> {
        self.note("sync");
        self.inner.sync()
    }
    fn abort(&mut self) {
        self.note("abort");
        self.inner.abort()
    }
    fn retain(&mut self, listed: &HashSet<Uid>) -> std::io::Result<()> {
        self.note("retain");
        self.inner.retain(listed)
    }
    fn ambiguous(&mut self, now: &HashSet<Uid>) -> std::io::Result<HashSet<Uid>> {
        self.note("ambiguous");
        self.inner.ambiguous(now)
    }
}

on_both_runtimes! {
    /// Two fetches into a Maildir (the second finds every message and
    /// deletes it): no sink call ran on the polling thread, and every
    /// message is in the Maildir once and gone from the server.
    async fn no_sink_call_runs_on_the_polling_thread<R: Runtime>() {
        let msgs = vec![
            b"Subject: one\r\n\r\nHello\r\n".to_vec(),
            b"Subject: two\r\n\r\nWorld\r\n".to_vec(),
        ];
        let r = start::<R>(store("alice", &msgs), ServerOptions::default());
        let addr = r.addr(Security::Plain);
        let dir = tempfile::tempdir().unwrap();
        let calls = Calls::default();
        let mut sink = Placed {
            inner: MaildirSink::open(dir.path(), "alice@127.0.0.1").unwrap(),
            calls: calls.clone(),
        };
        let polling = std::thread::current().id();
        for delete in [false, true] {
            let mut client =
                Pop3Client::connect("127.0.0.1", addr.port(), r.options(Security::Plain))
                    .await
                    .unwrap();
            client.login("alice", "secret").await.unwrap();
            let mut options = FetchOptions::default();
            options.delete = delete;
            let mut progress = |_: &fetch::Progress| {};
            let fetching = fetch::fetch_new(&mut client, sink, &options, &mut progress);
            let (back, result) = within(Duration::from_secs(60), fetching).await;
            sink = back;
            assert!(result.unwrap().is_complete());
        }
        assert_eq!(std::fs::read_dir(dir.path().join("new")).unwrap().count(), 2);
        assert_eq!(r.store.message_count("alice"), 0);
        r.stop().await;
        let calls = calls.lock().unwrap();
        for (call, thread) in calls.iter() {
            assert_ne!(*thread, polling, "{call} ran on the polling thread");
        }
        let kinds: HashSet<&str> = calls.iter().map(|(c, _)| *c).collect();
        for kind in ["contains", "begin", "write", "commit", "sync", "retain"] {
            assert!(kinds.contains(kind), "no {kind} call: {kinds:?}");
        }
    }
}
