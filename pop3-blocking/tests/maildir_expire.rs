//! EXPIRE n in the Maildir store: messages retrieved n days ago or more
//! are removed at the next UPDATE, on an injected clock.

use std::fs;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use pop3_blocking::client::{ConnectOptions, Pop3Client, Security as ClientSecurity};
use pop3_blocking::maildir::{Clock, MaildirStore, RETRIEVED_FILE};
use pop3_blocking::passwd::PasswdFile;
use pop3_blocking::server::{Pop3Server, Security};
use pop3_proto::response::{Capability, Expire};
use pop3_proto::server::ServerConfig;
use pop3_proto::store::{BlockingMaildrop, BlockingStore, Inline, OffloadStore, Update};
use pop3_proto::types::MessageNumber;
use tempfile::TempDir;

const DAY: u64 = 86_400;
const START: u64 = 1_700_000_000;

struct Fixture {
    root: TempDir,
    now: Arc<Mutex<SystemTime>>,
    store: MaildirStore,
}

impl Fixture {
    /// alice's Maildir with messages `1.a.host`, `2.b.host`, `3.c.host`,
    /// a store enforcing EXPIRE `days`, and the clock at START.
    fn new(days: Option<u32>) -> Self {
        let root = tempfile::tempdir().unwrap();
        let now = Arc::new(Mutex::new(
            SystemTime::UNIX_EPOCH + Duration::from_secs(START),
        ));
        let clock = {
            let now = now.clone();
            Clock::new(move || *now.lock().unwrap())
        };
        let users = PasswdFile::parse("alice:{PLAIN}wonderland\n").unwrap();
        let store = MaildirStore::new(root.path(), users)
            .expire(days)
            .with_clock(clock);
        for sub in ["cur", "new", "tmp"] {
            fs::create_dir_all(root.path().join("alice").join(sub)).unwrap();
        }
        for (i, name) in ["1.a.host", "2.b.host", "3.c.host"].iter().enumerate() {
            let path = root.path().join("alice/cur").join(format!("{name}:2,"));
            fs::write(path, format!("Subject: {i}\n\nbody {i}\n")).unwrap();
        }
        Fixture { root, now, store }
    }

    fn record(&self) -> PathBuf {
        self.root.path().join("alice").join(RETRIEVED_FILE)
    }

    fn at(&self, secs: u64) {
        *self.now.lock().unwrap() = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
    }

    fn commit(&self, update: Update) {
        self.store.open("alice").unwrap().commit(update).unwrap();
    }

    fn uids(&self) -> Vec<String> {
        self.store
            .open("alice")
            .unwrap()
            .messages()
            .iter()
            .map(|m| m.uid.as_str().to_owned())
            .collect()
    }
}

fn retrieved(indexes: &[usize]) -> Update {
    Update::default().with_retrieved(indexes.to_vec())
}

#[test]
fn a_message_retrieved_n_plus_one_days_ago_goes_at_the_next_update_one_retrieved_less_than_n_days_ago_stays()
 {
    let f = Fixture::new(Some(3));
    f.commit(retrieved(&[0]));
    f.at(START + 2 * DAY);
    f.commit(retrieved(&[1]));
    assert_eq!(f.uids(), ["1.a.host", "2.b.host", "3.c.host"]);
    // Four days after message 1, two after message 2.
    f.at(START + 4 * DAY);
    assert_eq!(
        f.uids(),
        ["1.a.host", "2.b.host", "3.c.host"],
        "an open is no UPDATE"
    );
    f.commit(Update::default());
    assert_eq!(f.uids(), ["2.b.host", "3.c.host"]);
    let record = fs::read_to_string(f.record()).unwrap();
    assert_eq!(
        record,
        format!("pop3-rs retrieved 1\n{} 2.b.host\n", START + 2 * DAY)
    );
}

#[test]
fn the_first_retrieval_counts_not_the_last() {
    let f = Fixture::new(Some(3));
    f.commit(retrieved(&[0]));
    f.at(START + 2 * DAY);
    f.commit(retrieved(&[0]));
    f.at(START + 3 * DAY);
    f.commit(Update::default());
    assert_eq!(f.uids(), ["2.b.host", "3.c.host"]);
}

#[test]
fn a_record_written_by_hand_expires_what_it_says_and_keeps_the_rest() {
    let f = Fixture::new(Some(30));
    fs::write(
        f.record(),
        format!(
            "pop3-rs retrieved 1\n{} 1.a.host\n{} 2.b.host\n{} gone.host\n",
            START - 31 * DAY,
            START - 29 * DAY,
            START - 99 * DAY
        ),
    )
    .unwrap();
    f.commit(Update::default());
    assert_eq!(f.uids(), ["2.b.host", "3.c.host"]);
    assert_eq!(
        fs::read_to_string(f.record()).unwrap(),
        format!("pop3-rs retrieved 1\n{} 2.b.host\n", START - 29 * DAY),
        "removed and vanished messages leave the record"
    );
}

#[test]
fn a_malformed_record_removes_nothing_but_what_was_deleted() {
    let f = Fixture::new(Some(1));
    // Not our header: ignored whole.
    fs::write(f.record(), "0 1.a.host\n0 2.b.host\n").unwrap();
    f.commit(Update::new(vec![2]));
    assert_eq!(f.uids(), ["1.a.host", "2.b.host"]);
    // Our header, bad lines: those are skipped, good ones kept.
    fs::write(
        f.record(),
        "pop3-rs retrieved 1\n-5 1.a.host\nx 2.b.host\n12\n 1.a.host\n+0 2.b.host\n",
    )
    .unwrap();
    f.commit(Update::default());
    assert_eq!(f.uids(), ["1.a.host", "2.b.host"]);
    // A time in the future (the clock set back) counts as now.
    fs::write(
        f.record(),
        format!("pop3-rs retrieved 1\n{} 1.a.host\n", START + 10 * DAY),
    )
    .unwrap();
    f.commit(Update::default());
    assert_eq!(f.uids(), ["1.a.host", "2.b.host"]);
}

#[test]
fn a_maildrop_dropped_without_commit_records_and_removes_nothing() {
    let f = Fixture::new(Some(0));
    drop(f.store.open("alice").unwrap());
    assert!(!f.record().exists());
    f.at(START + 100 * DAY);
    f.commit(Update::default());
    assert_eq!(f.uids().len(), 3);
}

#[test]
fn without_expire_nothing_is_recorded_and_nothing_expires() {
    let f = Fixture::new(None);
    f.commit(retrieved(&[0, 1, 2]));
    assert!(!f.record().exists());
    fs::write(
        f.record(),
        format!("pop3-rs retrieved 1\n{} 1.a.host\n", START - 99 * DAY),
    )
    .unwrap();
    f.commit(Update::default());
    assert_eq!(f.uids().len(), 3);
}

#[test]
fn expire_zero_in_the_store_removes_what_the_session_retrieved() {
    let f = Fixture::new(Some(0));
    f.commit(retrieved(&[1]));
    assert_eq!(f.uids(), ["1.a.host", "3.c.host"]);
}

/// Runs `session` as a client of a server over `f`'s store, advertising
/// EXPIRE `days`.
fn serve(f: &Fixture, advertise: Expire, session: impl FnOnce(&mut Pop3Client) + Send) {
    let store: OffloadStore<_, Inline> = OffloadStore::new(f.store.clone());
    let config = ServerConfig::default()
        .allow_plaintext_auth(true)
        .expire(Some(advertise));
    let server = Pop3Server::new(store, config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::scope(|s| {
        let stopper = server.clone();
        let client = s.spawn(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let mut c = Pop3Client::connect(
                    "127.0.0.1",
                    port,
                    ConnectOptions::new(ClientSecurity::Plain),
                )
                .unwrap();
                c.login("alice", "wonderland").unwrap();
                session(&mut c);
            }));
            stopper.wait_idle();
            stopper.shutdown();
            outcome
        });
        server.serve(listener, Security::Plain).unwrap();
        if let Err(p) = client.join().unwrap() {
            std::panic::resume_unwind(p);
        }
    });
}

fn n(i: u32) -> MessageNumber {
    MessageNumber::new(i).unwrap()
}

fn drain(mut body: pop3_blocking::client::Body<'_>) {
    while body.next_chunk().unwrap().is_some() {}
}

#[test]
fn over_the_wire_retr_counts_top_does_not_and_a_dropped_connection_records_nothing() {
    let f = Fixture::new(Some(2));
    serve(&f, Expire::Days(2), |c| {
        let caps = c.capa().unwrap();
        assert!(
            caps.iter().any(|cap| matches!(
                cap,
                Capability::Expire {
                    policy: Expire::Days(2),
                    ..
                }
            )),
            "{caps:?}"
        );
        drain(c.retr(n(1)).unwrap());
        drain(c.top(n(2), 1000).unwrap());
        c.quit().unwrap();
    });
    // A session that retrieves message 3 and is cut off.
    serve(&f, Expire::Days(2), |c| {
        drain(c.retr(n(3)).unwrap());
    });
    f.at(START + 2 * DAY);
    serve(&f, Expire::Days(2), |c| {
        assert_eq!(c.stat().unwrap().count, 3, "nothing goes before UPDATE");
        c.quit().unwrap();
    });
    assert_eq!(f.uids(), ["2.b.host", "3.c.host"]);
}
