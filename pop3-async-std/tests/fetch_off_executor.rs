//! The fetch driver's disk work (creating, syncing and renaming files) runs
//! on the thread pool, never on the thread that polls the fetch: a sink
//! whose commit blocks its thread must not stall the futures that thread
//! also polls.

#[macro_use]
mod support;

use std::sync::Arc;
use std::thread::ThreadId;
use std::time::Duration;

use pop3_async_std::client::{Pop3Client, Security};
use pop3_async_std::fetch::{self, FetchOptions, MessageSink};
use pop3_async_std::server::ServerOptions;
use pop3_proto::types::Uid;
use support::{Flag, start, store, within};

/// A sink whose commit blocks its thread until another future of the
/// polling thread answers, as a commit waiting for the disk would; it
/// records the thread of every call.
struct SlowCommit {
    started: Arc<Flag>,
    release: std::sync::mpsc::Receiver<()>,
    messages: Vec<Vec<u8>>,
    current: Vec<u8>,
    /// (call, thread) for every call.
    calls: Vec<(&'static str, ThreadId)>,
}

impl SlowCommit {
    fn record(&mut self, call: &'static str) {
        self.calls.push((call, std::thread::current().id()));
    }
}

impl MessageSink for SlowCommit {
    fn contains(&mut self, _uid: &Uid) -> std::io::Result<bool> {
        self.record("contains");
        Ok(false)
    }
    fn begin(&mut self, _uid: &Uid) -> std::io::Result<()> {
        self.record("begin");
        self.current.clear();
        Ok(())
    }
    fn write(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        self.record("write");
        self.current.extend_from_slice(chunk);
        Ok(())
    }
    fn commit(&mut self) -> std::io::Result<()> {
        self.record("commit");
        self.started.raise();
        self.release
            .recv_timeout(Duration::from_secs(20))
            .map_err(|_| {
                std::io::Error::other("the polling thread stalled while the sink committed")
            })?;
        self.messages.push(std::mem::take(&mut self.current));
        Ok(())
    }
    fn abort(&mut self) {
        self.record("abort");
    }
}

on_both_runtimes! {
    /// While the sink's commit blocks, the thread that polls the fetch
    /// still polls the future beside it (which releases the commit); the
    /// disk calls ran on other threads, the chunk appends on the polling
    /// thread, and both messages were stored before they were deleted.
    async fn a_blocking_commit_does_not_stall_the_polling_thread<R: Runtime>() {
        let msgs = vec![
            b"Subject: one\r\n\r\nHello\r\n".to_vec(),
            b"Subject: two\r\n\r\nWorld\r\n".to_vec(),
        ];
        let r = start::<R>(store("alice", &msgs), ServerOptions::default());
        let addr = r.addr(Security::Plain);
        let mut client = Pop3Client::connect("127.0.0.1", addr.port(), r.options(Security::Plain))
            .await
            .unwrap();
        client.login("alice", "secret").await.unwrap();
        let started = Arc::new(Flag::default());
        let (release_tx, release_rx) = std::sync::mpsc::channel();
        let sink = SlowCommit {
            started: started.clone(),
            release: release_rx,
            messages: Vec::new(),
            current: Vec::new(),
            calls: Vec::new(),
        };
        let polling = std::thread::current().id();
        let mut options = FetchOptions::default();
        options.delete = true;
        let releaser = async {
            // One release per message, each only once its commit started.
            for _ in 0..msgs.len() {
                started.wait().await;
                started.lower();
                release_tx.send(()).unwrap();
            }
        };
        let mut progress = |_: &fetch::Progress| {};
        let fetching = fetch::fetch_new(&mut client, sink, &options, &mut progress);
        let ((sink, result), ()) =
            within(Duration::from_secs(60), futures_lite::future::zip(fetching, releaser)).await;
        let report = result.unwrap();
        assert_eq!((report.saved, report.deleted), (2, 2));
        let mut stored = sink.messages.clone();
        stored.sort();
        assert_eq!(stored, msgs);
        for (call, thread) in &sink.calls {
            match *call {
                "begin" | "commit" => assert_ne!(*thread, polling, "{call} ran on the polling thread"),
                _ => assert_eq!(*thread, polling, "{call} left the polling thread"),
            }
        }
        assert_eq!(sink.calls.iter().filter(|(c, _)| *c == "commit").count(), 2);
        assert_eq!(r.store.message_count("alice"), 0);
        r.stop().await;
    }
}
