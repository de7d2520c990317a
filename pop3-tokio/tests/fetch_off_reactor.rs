//! Every call the fetch makes on its sink, the real Maildir sink, runs on
//! tokio's blocking pool and never on a thread that polls the fetch, on a
//! current-thread runtime as on a multi-threaded one: the Maildir sink may
//! fsync in any of its calls (even a lookup, for a file a killed run left
//! in `new/`), and a runtime thread must not wait for the disk.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::thread::ThreadId;

use pop3_proto::store::MemoryStore;
use pop3_proto::types::Uid;
use pop3_tokio::fetch::{self, FetchSettings, MaildirSink, MessageSink, PopUrl};
use support::server::serve_memory;

mod support;

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

/// A future noting every thread it is polled on.
struct Watched<F> {
    inner: Pin<Box<F>>,
    threads: Arc<Mutex<HashSet<ThreadId>>>,
}

impl<F: Future> Future for Watched<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let thread = std::thread::current().id();
        self.threads.lock().unwrap().insert(thread);
        self.inner.as_mut().poll(cx)
    }
}

/// Fetches three messages, then fetches again with deletion (every lookup
/// finds its message); gives back the Maildir's messages and the server's
/// count.
async fn fetch_twice(maildir: std::path::PathBuf, calls: Calls) -> (usize, usize) {
    let store = Arc::new(MemoryStore::new());
    store.add_user("alice", "pw");
    for i in 0..3 {
        store.add_message(
            "alice",
            format!("Subject: {i}\r\n\r\nbody {i}\r\n").into_bytes(),
        );
    }
    let (port, server) = serve_memory(store.clone()).await;
    let url = PopUrl::parse(&format!("pop://alice;AUTH=USER@127.0.0.1:{port}")).unwrap();
    let mut settings = FetchSettings::default();
    settings.insecure_cleartext_login = true;
    let mut sink = Placed {
        inner: MaildirSink::open(&maildir, &url.account_id()).unwrap(),
        calls,
    };
    for delete in [false, true] {
        settings.delete = delete;
        let (back, result) = fetch::run(&url, "pw", &settings, sink, &mut |_| {}).await;
        sink = back;
        let report = result.unwrap();
        assert!(report.is_complete(), "{report:?}");
    }
    server.shutdown();
    let stored = std::fs::read_dir(maildir.join("new")).unwrap().count();
    (stored, store.message_count("alice"))
}

/// Runs the two fetches on `runtime` (as a spawned task when `spawned`),
/// and checks where every sink call ran.
fn check(runtime: tokio::runtime::Runtime, spawned: bool) {
    let dir = tempfile::tempdir().unwrap();
    let calls = Calls::default();
    let threads = Arc::new(Mutex::new(HashSet::new()));
    let fetching = Watched {
        inner: Box::pin(fetch_twice(dir.path().to_path_buf(), calls.clone())),
        threads: threads.clone(),
    };
    let (stored, left) = if spawned {
        runtime.block_on(runtime.spawn(fetching)).unwrap()
    } else {
        runtime.block_on(fetching)
    };
    assert_eq!((stored, left), (3, 0));
    let polling = threads.lock().unwrap().clone();
    let calls = calls.lock().unwrap();
    for (call, thread) in calls.iter() {
        assert!(
            !polling.contains(thread),
            "{call} ran on a thread that polls the fetch"
        );
    }
    let kinds: HashSet<&str> = calls.iter().map(|(c, _)| *c).collect();
    for kind in ["contains", "begin", "write", "commit", "sync", "retain"] {
        assert!(kinds.contains(kind), "no {kind} call: {kinds:?}");
    }
}

#[test]
fn on_a_current_thread_runtime_no_sink_call_runs_on_the_runtime_thread() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    check(runtime, false);
}

#[test]
fn on_a_multi_threaded_runtime_no_sink_call_runs_on_a_worker() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    check(runtime, true);
}
