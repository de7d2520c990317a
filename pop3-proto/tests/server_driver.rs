//! The store driver against MemoryStore and against a store that generates
//! a 2 GiB message lazily, polled without a runtime.

mod server_support;

use core::future::{Future, ready};
use std::sync::Arc;

use bytes::Bytes;
use pop3_proto::command::Username;
use pop3_proto::server::{Server, ServerConfig, StoreReply, StoreRequest};
use pop3_proto::session::Action;
use pop3_proto::store::{
    CredentialForms, Maildrop, MemoryStore, MessageInfo, MessageReader, Store, StoreDriver,
    StoreError, Update,
};
use pop3_proto::time::Instant;
use pop3_proto::types::{Secret, Uid};
use server_support::*;

fn user(name: &str) -> Username {
    Username::new(name).unwrap()
}

fn exec(d: &mut StoreDriver<MemoryStore>, req: StoreRequest) -> StoreReply {
    block_on(d.execute(req))
}

fn verify(d: &mut StoreDriver<MemoryStore>, name: &str, password: &'static str) -> StoreReply {
    exec(
        d,
        StoreRequest::VerifyPassword {
            user: user(name),
            password: Secret::new(password),
        },
    )
}

#[test]
fn driver_executes_every_request_against_memory_store() {
    let store = standard_store().with_chunk_size(8);
    let mut d = StoreDriver::new(Arc::new(store.clone()));
    assert_eq!(
        verify(&mut d, "alice", "secret"),
        StoreReply::Verified(Ok(true))
    );
    assert_eq!(
        verify(&mut d, "alice", "nope"),
        StoreReply::Verified(Ok(false))
    );
    assert_eq!(verify(&mut d, "ghost", ""), StoreReply::Verified(Ok(false)));
    assert_eq!(
        exec(
            &mut d,
            StoreRequest::SharedSecret {
                user: user("alice")
            }
        ),
        StoreReply::SharedSecret(Ok(Some(Secret::new("secret"))))
    );
    assert_eq!(
        exec(
            &mut d,
            StoreRequest::SharedSecret {
                user: user("ghost")
            }
        ),
        StoreReply::SharedSecret(Ok(None))
    );
    let StoreReply::Opened(Ok(list)) = exec(
        &mut d,
        StoreRequest::Open {
            user: user("alice"),
        },
    ) else {
        panic!()
    };
    assert_eq!(list.len(), 3);
    assert_eq!(list[0].size, 21);
    assert!(d.has_maildrop());
    assert!(store.is_locked("alice"));

    // A second driver cannot open the same maildrop.
    let mut other = StoreDriver::new(Arc::new(store.clone()));
    assert_eq!(
        exec(
            &mut other,
            StoreRequest::Open {
                user: user("alice")
            }
        ),
        StoreReply::Opened(Err(StoreError::InUse))
    );

    assert_eq!(
        exec(&mut d, StoreRequest::Read { index: 0 }),
        StoreReply::Reading(Ok(()))
    );
    let mut body = Vec::new();
    loop {
        match exec(&mut d, StoreRequest::NextChunk) {
            StoreReply::Chunk(Ok(Some(c))) => {
                assert!(c.len() <= 8);
                body.extend_from_slice(&c);
            }
            StoreReply::Chunk(Ok(None)) => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(body, b"Subject: a\r\n\r\nfirst\r\n");
    assert!(matches!(
        exec(&mut d, StoreRequest::NextChunk),
        StoreReply::Chunk(Err(_))
    ));
    assert_eq!(
        exec(&mut d, StoreRequest::Read { index: 7 }),
        StoreReply::Reading(Err(StoreError::MessageGone))
    );

    assert_eq!(
        exec(&mut d, StoreRequest::Commit(Update::new(vec![0, 2]))),
        StoreReply::Committed(Ok(()))
    );
    assert!(!d.has_maildrop());
    assert!(!store.is_locked("alice"));
    assert_eq!(store.message_count("alice"), 1);
    assert!(matches!(
        exec(&mut d, StoreRequest::Commit(Update::default())),
        StoreReply::Committed(Err(_))
    ));
}

#[test]
fn driver_release_unlocks_and_deletes_nothing() {
    let store = standard_store();
    let mut d = StoreDriver::new(Arc::new(store.clone()));
    exec(
        &mut d,
        StoreRequest::Open {
            user: user("alice"),
        },
    );
    exec(&mut d, StoreRequest::Read { index: 1 });
    assert_eq!(exec(&mut d, StoreRequest::Release), StoreReply::Released);
    assert!(!store.is_locked("alice"));
    assert_eq!(store.message_count("alice"), 3);
}

#[test]
fn dropping_the_driver_releases_the_lock() {
    let store = standard_store();
    let mut d = StoreDriver::new(Arc::new(store.clone()));
    exec(
        &mut d,
        StoreRequest::Open {
            user: user("alice"),
        },
    );
    assert!(store.is_locked("alice"));
    drop(d);
    assert!(!store.is_locked("alice"));
}

/// A memory store whose commits wait once (return `Pending` at their
/// first poll) before they remove anything.
struct YieldingStore(MemoryStore);

struct YieldingDrop(<MemoryStore as Store>::Maildrop);

impl Store for YieldingStore {
    type Maildrop = YieldingDrop;

    fn credential_forms(&self) -> CredentialForms {
        self.0.credential_forms()
    }

    async fn verify_password(&self, user: &str, password: &Secret) -> Result<bool, StoreError> {
        self.0.verify_password(user, password).await
    }

    async fn shared_secret(&self, user: &str) -> Result<Option<Secret>, StoreError> {
        self.0.shared_secret(user).await
    }

    async fn open(&self, user: &str) -> Result<YieldingDrop, StoreError> {
        Ok(YieldingDrop(self.0.open(user).await?))
    }
}

impl Maildrop for YieldingDrop {
    type Reader = <<MemoryStore as Store>::Maildrop as Maildrop>::Reader;

    fn messages(&self) -> &[MessageInfo] {
        self.0.messages()
    }

    async fn read(&mut self, index: usize) -> Result<Self::Reader, StoreError> {
        self.0.read(index).await
    }

    async fn commit(self, update: Update) -> Result<(), StoreError> {
        let mut waited = false;
        core::future::poll_fn(|cx| {
            if waited {
                core::task::Poll::Ready(())
            } else {
                waited = true;
                cx.waker().wake_by_ref();
                core::task::Poll::Pending
            }
        })
        .await;
        self.0.commit(update).await
    }
}

#[test]
fn a_commit_whose_call_is_dropped_stays_in_the_driver_and_finish_runs_it_to_its_end() {
    let store = standard_store();
    let mut d = StoreDriver::new(Arc::new(YieldingStore(store.clone())));
    let opened = block_on(d.execute(StoreRequest::Open {
        user: user("alice"),
    }));
    assert!(matches!(opened, StoreReply::Opened(Ok(_))), "{opened:?}");
    {
        // The adapter stops waiting (the store timeout) after one poll.
        let call = core::pin::pin!(d.execute(StoreRequest::Commit(Update::new(vec![0]))));
        let mut cx = core::task::Context::from_waker(core::task::Waker::noop());
        assert!(call.poll(&mut cx).is_pending());
    }
    assert!(d.is_committing());
    assert_eq!(store.message_count("alice"), 3, "nothing removed yet");
    assert!(store.is_locked("alice"));
    assert_eq!(block_on(d.finish()), Some(Ok(())));
    assert!(!d.is_committing());
    assert_eq!(
        store.message_count("alice"),
        2,
        "the marked message removed"
    );
    assert!(!store.is_locked("alice"));
    assert_eq!(block_on(d.finish()), None, "nothing left to finish");
}

#[test]
fn driver_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let mut d = StoreDriver::new(Arc::new(MemoryStore::new()));
    let f = d.execute(StoreRequest::Release);
    assert_send(&f);
    let mut lazy = StoreDriver::new(Arc::new(LazyStore));
    assert_send(&lazy.execute(StoreRequest::NextChunk));
}

#[test]
fn memory_store_sizes_match_what_retr_sends() {
    let store = MemoryStore::new().with_chunk_size(3);
    store.add_user("u", "p");
    for m in [
        &b"a\nb\n"[..],
        b"no final newline",
        b".leading dot\r\n..two\n",
        b"\r\n",
        b"",
    ] {
        store.add_message("u", Bytes::copy_from_slice(m));
    }
    let mut h = Harness::new(test_config(), plain(), store);
    h.login("u", "p");
    let list = h.cmd("LIST");
    for (i, line) in list.lines().skip(1).filter(|l| *l != ".").enumerate() {
        let size: usize = line.split(' ').nth(1).unwrap().parse().unwrap();
        let retr = h.cmd(&format!("RETR {}", i + 1));
        let body = retr.split_once("\r\n").unwrap().1;
        let body = body.strip_suffix(".\r\n").unwrap();
        // Unstuff: a line starting with ".." loses one dot.
        let unstuffed: usize = body
            .split_inclusive("\r\n")
            .map(|l| {
                if l.starts_with("..") {
                    l.len() - 1
                } else {
                    l.len()
                }
            })
            .sum();
        assert_eq!(unstuffed, size, "message {}: {body:?}", i + 1);
    }
}

#[test]
fn whole_session_through_the_driver() {
    let mut h = Harness::standard();
    h.login("mrose", "tanstaaf");
    let r = h.cmd("RETR 1");
    assert!(r.starts_with("+OK 120 octets\r\nSubject: one\r\n"));
    h.cmd("DELE 2");
    h.cmd("QUIT");
    assert_eq!(h.store.message_count("mrose"), 1);
    assert_eq!(h.store.messages("mrose")[0], message_of_size(120, "one"));
}

// ------------------------------------------------------------------------
// A store that makes up a huge message as it is read.

const CHUNK_LINES: usize = 16;
const HEADER: &[u8] = b"Subject: huge message, lazily generated, 2 GiB in total\r\n\r\n";

/// A body line of 4 KiB, CRLF included.
fn line() -> Vec<u8> {
    let mut l: Vec<u8> = (0..4094).map(|i| b"0123456789abcdef"[i % 16]).collect();
    l.extend_from_slice(b"\r\n");
    l
}
const GIB2: u64 = 2 * 1024 * 1024 * 1024;

struct LazyStore;
struct LazyMaildrop(Vec<MessageInfo>);
struct LazyReader {
    left: u64,
    chunk: Bytes,
    header: bool,
}

impl Store for LazyStore {
    type Maildrop = LazyMaildrop;
    fn credential_forms(&self) -> CredentialForms {
        CredentialForms::new(true, false)
    }
    fn verify_password(
        &self,
        _: &str,
        _: &Secret,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        ready(Ok(true))
    }
    fn shared_secret(
        &self,
        _: &str,
    ) -> impl Future<Output = Result<Option<Secret>, StoreError>> + Send {
        ready(Ok(None))
    }
    fn open(&self, _: &str) -> impl Future<Output = Result<LazyMaildrop, StoreError>> + Send {
        ready(Ok(LazyMaildrop(vec![MessageInfo {
            size: GIB2,
            uid: Uid::new("huge").unwrap(),
        }])))
    }
}

impl Maildrop for LazyMaildrop {
    type Reader = LazyReader;
    fn messages(&self) -> &[MessageInfo] {
        &self.0
    }
    fn read(&mut self, _: usize) -> impl Future<Output = Result<LazyReader, StoreError>> + Send {
        ready(Ok(LazyReader {
            left: GIB2,
            chunk: Bytes::from(line().repeat(CHUNK_LINES)),
            header: true,
        }))
    }
    fn commit(self, _: Update) -> impl Future<Output = Result<(), StoreError>> + Send {
        ready(Ok(()))
    }
}

impl MessageReader for LazyReader {
    fn next_chunk(&mut self) -> impl Future<Output = Result<Option<Bytes>, StoreError>> + Send {
        if self.header {
            self.header = false;
            self.left -= HEADER.len() as u64;
            return ready(Ok(Some(Bytes::from_static(HEADER))));
        }
        if self.left == 0 {
            return ready(Ok(None));
        }
        let n = (self.chunk.len() as u64).min(self.left) as usize;
        self.left -= n as u64;
        ready(Ok(Some(self.chunk.slice(..n))))
    }
}

#[test]
fn a_2_gib_message_streams_in_bounded_memory() {
    let now = Instant::from_millis(0);
    let config = ServerConfig::for_store(&LazyStore).allow_plaintext_auth(true);
    let mut s = Server::new(Arc::new(config), now, plain());
    let mut d = StoreDriver::new(Arc::new(LazyStore));
    s.handle_input(now, b"USER u\r\nPASS p\r\nRETR 1\r\nTOP 1 3\r\nQUIT\r\n");
    let mut sent: u64 = 0;
    let mut largest_send = 0;
    let mut tail: Vec<u8> = Vec::new();
    let mut max_queued = 0;
    loop {
        let Some(action) = s.poll_action() else {
            panic!("stuck")
        };
        max_queued = max_queued.max(s.queued_actions());
        match action {
            Action::Send(t) => {
                sent += t.bytes.len() as u64;
                largest_send = largest_send.max(t.bytes.len());
                tail.extend_from_slice(&t.bytes);
                if tail.len() > 64 * 1024 {
                    tail.drain(..tail.len() - 64 * 1024);
                }
            }
            Action::Event(req) => {
                let reply = block_on(d.execute(req));
                s.handle_store(now, reply);
            }
            Action::Close => break,
            _ => {}
        }
    }
    assert!(max_queued <= 2, "queued {max_queued}");
    assert!(
        largest_send <= 2 * 4096 * CHUNK_LINES,
        "send of {largest_send}"
    );
    assert_eq!(s.buffered_input(), 0);
    assert_eq!(s.summary().retrieved, 2);
    let tail = String::from_utf8(tail).unwrap();
    let l = String::from_utf8(line()).unwrap();
    let top = format!(
        "{}{l}{l}{l}.\r\n+OK Logging out.\r\n",
        std::str::from_utf8(HEADER).unwrap()
    );
    assert!(tail.ends_with(&top), "{tail}");
    // Greeting, +OK, login, status line, the message, the terminator, TOP,
    // (three 4 KiB lines) and QUIT: the body alone is 2 GiB.
    assert!(sent > GIB2 && sent < GIB2 + 3 * 4096 + 1024, "{sent}");
}
