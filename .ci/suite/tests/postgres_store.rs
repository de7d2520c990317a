//! The PostgreSQL store on a private cluster (tests/support/pg_cluster.rs):
//! schema, credentials, the maildrop lease across frontends, snapshots,
//! chunked delivery and retrieval, the database going away, the `deliver`
//! command's exit codes and the Maildir import.

#[path = "support/pg_cluster.rs"]
mod pg_cluster;

use std::io::Read;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use clap::Parser;
use pg_cluster::Cluster;
use pop3_blocking::cli::{DeliverArgs, EX_NOUSER, EX_OK, EX_TEMPFAIL};
use pop3_blocking::maildir::MaildirStore;
use pop3_blocking::passwd::PasswdFile;
use pop3_blocking::postgres::{CHUNK_SIZE, PgError, PgOptions, PgStore, SCHEMA_VERSION};
use pop3_proto::scram::ScramHash;
use pop3_proto::store::{
    BlockingMaildrop, BlockingMessageReader, BlockingStore, Cause, IoKind, StoreError, Update,
};
use pop3_proto::types::Secret;
use sha2::{Digest, Sha256};

fn store(cluster: &Cluster) -> PgStore {
    PgStore::connect(&cluster.conninfo()).unwrap()
}

fn store_with_lease(cluster: &Cluster, lease: Duration) -> PgStore {
    let mut options = PgOptions::default();
    options.lease = lease;
    PgStore::connect_with(&cluster.conninfo(), options).unwrap()
}

fn sql(cluster: &Cluster) -> postgres::Client {
    postgres::Client::connect(&cluster.conninfo(), postgres::NoTls).unwrap()
}

fn read_all(drop: &mut impl BlockingMaildrop, index: usize) -> Result<Vec<u8>, StoreError> {
    let mut reader = drop.read(index)?;
    let mut out = Vec::new();
    while let Some(chunk) = reader.next_chunk()? {
        assert!(chunk.len() <= CHUNK_SIZE);
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

fn uids(drop: &impl BlockingMaildrop) -> Vec<String> {
    drop.messages()
        .iter()
        .map(|m| m.uid.as_str().to_owned())
        .collect()
}

fn alice(store: &PgStore) {
    store.add_user("alice", "{PLAIN}wonderland").unwrap();
}

#[test]
fn migrations_are_recorded_once_and_a_newer_schema_is_refused() {
    let cluster = Cluster::start();
    drop(store(&cluster));
    drop(store(&cluster));
    let mut db = sql(&cluster);
    let versions: Vec<i32> = db
        .query("SELECT version FROM schema_version ORDER BY version", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, (1..=SCHEMA_VERSION).collect::<Vec<_>>());
    db.execute("INSERT INTO schema_version (version) VALUES (999)", &[])
        .unwrap();
    let err = PgStore::connect(&cluster.conninfo()).unwrap_err();
    assert!(
        matches!(err, PgError::SchemaTooNew { found: 999, .. }),
        "{err}"
    );
}

#[test]
fn accounts_check_the_passwd_file_credential_forms() {
    let cluster = Cluster::start();
    let store = store(&cluster);
    alice(&store);
    // The hash of "secret" (SHA-crypt), and SCRAM-SHA-256 keys of "secret".
    store
        .add_user(
            "bob",
            "{SHA512-CRYPT}$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1",
        )
        .unwrap();
    store
        .add_user(
            "carol",
            "{SCRAM-SHA-256}4096,BXlOE1p6JoeiFnkD9ogyoQ==,4i7fUBleYPKXBGlKwEq/8UEelRgTtAF20dvvSHHWQfk=,pYdAJYpbN39FVfVX/EH3dfIMQj4zePc0sFZ2KAT5zrE=",
        )
        .unwrap();
    assert!(
        store
            .verify_password("alice", &Secret::new("wonderland"))
            .unwrap()
    );
    assert!(
        !store
            .verify_password("alice", &Secret::new("secret"))
            .unwrap()
    );
    assert!(
        store
            .verify_password("bob", &Secret::new("secret"))
            .unwrap()
    );
    assert!(
        store
            .verify_password("carol", &Secret::new("secret"))
            .unwrap()
    );
    assert!(
        !store
            .verify_password("dave", &Secret::new("secret"))
            .unwrap()
    );
    assert!(store.shared_secret("alice").unwrap().is_some());
    assert!(store.shared_secret("bob").unwrap().is_none());
    // Stored keys are handed out as they are: no derivation per login.
    let keys = store
        .scram_keys("carol", ScramHash::Sha256)
        .unwrap()
        .unwrap();
    assert_eq!(keys.iterations(), 4096);
    assert!(
        store
            .scram_keys("bob", ScramHash::Sha256)
            .unwrap()
            .is_none()
    );
    // bob's hash rules out APOP and SCRAM for everyone.
    let forms = store.credential_forms();
    assert!(forms.password && !forms.shared_secret && !forms.scram_sha256);
    assert!(matches!(
        store.add_user("eve", "{SHA512-CRYPT}not-a-hash"),
        Err(PgError::BadCredential(_))
    ));
    assert!(matches!(
        store.add_user("../eve", "{PLAIN}x"),
        Err(PgError::BadUserName)
    ));
    assert_eq!(
        store.open("dave").unwrap_err(),
        StoreError::Permanent(Cause::NoSuchUser)
    );
}

#[test]
fn sizes_uids_and_bodies_as_delivered() {
    let cluster = Cluster::start();
    let store = store(&cluster);
    alice(&store);
    let bodies: [&[u8]; 3] = [
        b"Subject: a\n\nbare LFs\n",
        b"Subject: b\r\n\r\n.dot\r\n",
        b"",
    ];
    let mut delivered = Vec::new();
    for body in bodies {
        delivered.push(store.deliver("alice", &mut &body[..]).unwrap());
    }
    assert_eq!(
        delivered.iter().map(|d| d.size).collect::<Vec<_>>(),
        [24, 20, 0]
    );
    let mut drop = store.open("alice").unwrap();
    assert_eq!(
        uids(&drop),
        delivered
            .iter()
            .map(|d| d.uid.as_str().to_owned())
            .collect::<Vec<_>>()
    );
    for (i, body) in bodies.iter().enumerate() {
        assert_eq!(drop.messages()[i].size, delivered[i].size);
        assert_eq!(read_all(&mut drop, i).unwrap(), *body);
    }
    drop.commit(vec![1].into()).unwrap();
    let drop = store.open("alice").unwrap();
    assert_eq!(
        uids(&drop),
        [delivered[0].uid.as_str(), delivered[2].uid.as_str()]
    );
}

/// Two frontends (two stores, each with its own pool) race 50 logins each
/// for one maildrop at once, 200 rounds: each round exactly one of the 100
/// logins owns it, the others are `InUse`, and each owner's fencing token
/// is above the last one's. Each owner deletes the first message and
/// commits before the next round: each owner's snapshot lacks exactly the
/// messages its predecessors deleted.
#[test]
fn two_frontends_racing_for_one_maildrop_never_both_own_it() {
    const PER_FRONTEND: usize = 50;
    const ROUNDS: usize = 200;
    let cluster = Cluster::start();
    let frontends = [Arc::new(store(&cluster)), Arc::new(store(&cluster))];
    alice(&frontends[0]);
    let _ = frontends[1].refresh_credential_forms().unwrap();
    for i in 0..ROUNDS {
        let m = format!("Subject: {i}\r\n\r\n{i}\r\n");
        frontends[0].deliver("alice", &mut m.as_bytes()).unwrap();
    }
    let started = Instant::now();
    let barrier = Arc::new(Barrier::new(2 * PER_FRONTEND));
    let threads: Vec<_> = frontends
        .iter()
        .flat_map(|store| std::iter::repeat_n(store, PER_FRONTEND))
        .map(|store| {
            let (store, barrier) = (store.clone(), barrier.clone());
            std::thread::spawn(move || {
                // Per round: the token owned and the number of messages
                // seen, None when refused, or the unexpected error (a panic
                // here would leave the others waiting at the barrier).
                let mut rounds: Vec<Result<Option<(i64, usize)>, String>> = Vec::new();
                for _ in 0..ROUNDS {
                    barrier.wait();
                    let login = store
                        .verify_password("alice", &Secret::new("wonderland"))
                        .and_then(|ok| {
                            assert!(ok, "the password is right");
                            store.open("alice")
                        });
                    let owned = match &login {
                        Ok(drop) => Ok(Some((drop.token(), drop.messages().len()))),
                        Err(StoreError::InUse) => Ok(None),
                        Err(e) => Err(e.to_string()),
                    };
                    // Every login has been tried before the owner lets go.
                    barrier.wait();
                    if let Ok(drop) = login {
                        if let Err(e) = drop.commit(vec![0].into()) {
                            rounds.push(Err(format!("commit: {e}")));
                            barrier.wait();
                            continue;
                        }
                    }
                    rounds.push(owned);
                    barrier.wait();
                }
                rounds
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    eprintln!(
        "{ROUNDS} rounds of {} logins in {:?}",
        2 * PER_FRONTEND,
        started.elapsed()
    );
    let mut last_token = 0;
    for round in 0..ROUNDS {
        let mut owners = Vec::new();
        for (login, rounds) in results.iter().enumerate() {
            match &rounds[round] {
                Ok(Some((token, seen))) => owners.push((login / PER_FRONTEND, *token, *seen)),
                Ok(None) => {}
                Err(e) => panic!("round {round}, login {login}: {e}"),
            }
        }
        assert_eq!(owners.len(), 1, "round {round}: owners {owners:?}");
        let (_, token, seen) = owners[0];
        assert_eq!(
            seen,
            ROUNDS - round,
            "round {round}: messages in the snapshot"
        );
        assert!(
            token > last_token,
            "round {round}: token {token} after {last_token}"
        );
        last_token = token;
    }
    // Both frontends won some rounds.
    for frontend in 0..2 {
        let won = (0..ROUNDS)
            .filter(|&round| {
                results[frontend * PER_FRONTEND..(frontend + 1) * PER_FRONTEND]
                    .iter()
                    .any(|r| matches!(r[round], Ok(Some(_))))
            })
            .count();
        eprintln!("frontend {frontend} owned the maildrop in {won} rounds");
    }
}

#[test]
fn a_dropped_maildrop_frees_the_lease_at_once() {
    let cluster = Cluster::start();
    let (a, b) = (store(&cluster), store(&cluster));
    alice(&a);
    let held = a.open("alice").unwrap();
    assert_eq!(b.open("alice").unwrap_err(), StoreError::InUse);
    drop(held);
    b.open("alice").unwrap();
}

#[test]
fn a_dead_frontends_lease_expires_and_frees_the_maildrop() {
    let cluster = Cluster::start();
    let lease = Duration::from_secs(2);
    let dead = store_with_lease(&cluster, lease);
    alice(&dead);
    // The frontend dies: its session never releases the lease, and its
    // renewals stop with it.
    std::mem::forget(dead.open("alice").unwrap());
    drop(dead);
    let other = store(&cluster);
    assert_eq!(other.open("alice").unwrap_err(), StoreError::InUse);
    let deadline = Instant::now() + lease + Duration::from_secs(30);
    loop {
        match other.open("alice") {
            Ok(_) => break,
            Err(StoreError::InUse) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100))
            }
            Err(e) => panic!("the lease never expired: {e}"),
        }
    }
}

#[test]
fn a_live_idle_session_keeps_its_lease_past_the_lease_time() {
    let cluster = Cluster::start();
    let lease = Duration::from_millis(600);
    let live = store_with_lease(&cluster, lease);
    alice(&live);
    let _held = live.open("alice").unwrap();
    let mut db = sql(&cluster);
    let expiry = |db: &mut postgres::Client| -> String {
        db.query_one("SELECT expires_at::text FROM leases", &[])
            .unwrap()
            .get(0)
    };
    let first = expiry(&mut db);
    // Wait for two renewals, seen in the row, then for the lease time.
    for _ in 0..2 {
        let before = expiry(&mut db);
        let deadline = Instant::now() + Duration::from_secs(30);
        while expiry(&mut db) == before {
            assert!(Instant::now() < deadline, "the lease is not renewed");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    assert_ne!(expiry(&mut db), first);
    std::thread::sleep(lease);
    assert_eq!(
        store(&cluster).open("alice").unwrap_err(),
        StoreError::InUse
    );
}

#[test]
fn a_commit_after_the_lease_was_taken_over_deletes_nothing() {
    let cluster = Cluster::start();
    let (a, b) = (store(&cluster), store(&cluster));
    alice(&a);
    for i in 0..3 {
        a.deliver(
            "alice",
            &mut format!("Subject: {i}\r\n\r\nx\r\n").as_bytes(),
        )
        .unwrap();
    }
    let stale = a.open("alice").unwrap();
    // Its lease expires (as if the frontend had stalled) and b takes over.
    sql(&cluster)
        .execute(
            "UPDATE leases SET expires_at = now() - interval '1 second'",
            &[],
        )
        .unwrap();
    let owner = b.open("alice").unwrap();
    assert!(owner.token() > stale.token());
    let err = stale.commit(vec![0, 1, 2].into()).unwrap_err();
    assert_eq!(
        err,
        StoreError::Temporary(Cause::NotDeleted {
            failed: 3,
            kind: IoKind::WouldBlock
        })
    );
    assert_eq!(owner.messages().len(), 3);
    owner.commit(vec![].into()).unwrap();
    assert_eq!(b.open("alice").unwrap().messages().len(), 3);
}

#[test]
fn a_message_delivered_during_a_session_appears_in_the_next() {
    let cluster = Cluster::start();
    let store = store(&cluster);
    alice(&store);
    store
        .deliver("alice", &mut &b"Subject: 1\r\n\r\n"[..])
        .unwrap();
    let mut session = store.open("alice").unwrap();
    let before = uids(&session);
    let late = store
        .deliver("alice", &mut &b"Subject: 2\r\n\r\n"[..])
        .unwrap();
    assert_eq!(uids(&session), before);
    assert_eq!(read_all(&mut session, 0).unwrap(), b"Subject: 1\r\n\r\n");
    session.commit(vec![0].into()).unwrap();
    let next = store.open("alice").unwrap();
    assert_eq!(uids(&next), [late.uid.as_str()]);
}

/// A message of `lines` generated lines, reporting the largest read.
struct Generated {
    left: u64,
    line: u64,
    pending: Vec<u8>,
    hash: Sha256,
    largest_read: usize,
}

impl Read for Generated {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.largest_read = self.largest_read.max(buf.len());
        if self.pending.is_empty() {
            if self.left == 0 {
                return Ok(0);
            }
            self.left -= 1;
            self.line += 1;
            self.pending = format!("{:0>1023}\n", self.line).into_bytes();
            self.hash.update(&self.pending);
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending.drain(..n);
        Ok(n)
    }
}

#[test]
fn a_64_mib_message_is_delivered_and_read_a_chunk_at_a_time() {
    let cluster = Cluster::start();
    let store = store(&cluster);
    alice(&store);
    const LINES: u64 = 64 * 1024; // 1 KiB lines: 64 MiB
    let mut message = Generated {
        left: LINES,
        line: 0,
        pending: Vec::new(),
        hash: Sha256::new(),
        largest_read: 0,
    };
    let delivered = store.deliver("alice", &mut message).unwrap();
    // Bare LFs count as CRLFs.
    assert_eq!(delivered.size, LINES * 1025);
    // Delivery read into one chunk-sized buffer.
    assert!(
        message.largest_read <= CHUNK_SIZE,
        "{}",
        message.largest_read
    );
    let expected = message.hash.finalize();
    let rows: i64 = sql(&cluster)
        .query_one("SELECT count(*) FROM chunks", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows as u64, (LINES * 1024).div_ceil(CHUNK_SIZE as u64));
    let mut drop = store.open("alice").unwrap();
    assert_eq!(drop.messages()[0].size, delivered.size);
    let mut reader = drop.read(0).unwrap();
    let (mut hash, mut total, mut largest) = (Sha256::new(), 0u64, 0usize);
    while let Some(chunk) = reader.next_chunk().unwrap() {
        largest = largest.max(chunk.len());
        total += chunk.len() as u64;
        hash.update(&chunk);
    }
    assert_eq!(total, LINES * 1024);
    assert!(largest <= CHUNK_SIZE, "{largest}");
    assert_eq!(hash.finalize(), expected);
}

#[test]
fn while_the_database_is_down_calls_fail_as_temporary_and_nothing_is_lost() {
    let mut cluster = Cluster::start();
    let mut options = PgOptions::default();
    options.connect_timeout = Duration::from_secs(1);
    let store = PgStore::connect_with(&cluster.conninfo(), options).unwrap();
    alice(&store);
    for i in 0..2 {
        store
            .deliver("alice", &mut format!("Subject: {i}\r\n\r\n").as_bytes())
            .unwrap();
    }
    // A session that began before the database went away. (It reads the
    // last message first: nothing after it is fetched ahead.)
    let mut session = store.open("alice").unwrap();
    assert_eq!(read_all(&mut session, 1).unwrap(), b"Subject: 1\r\n\r\n");
    cluster.stop_server();
    let temporary = |r: Result<(), StoreError>| match r {
        Err(StoreError::Temporary(_)) => {}
        Err(e) => panic!("not temporary: {e}"),
        Ok(_) => panic!("succeeded with the database down"),
    };
    temporary(
        store
            .verify_password("alice", &Secret::new("wonderland"))
            .map(|_| ()),
    );
    temporary(store.open("alice").map(|_| ()));
    temporary(read_all(&mut session, 0).map(|_| ()));
    let err = store
        .deliver("alice", &mut &b"Subject: lost?\r\n\r\n"[..])
        .unwrap_err();
    assert!(err.is_temporary(), "{err}");
    cluster.start_server();
    // The same session goes on, on new connections, and commits.
    assert_eq!(read_all(&mut session, 0).unwrap(), b"Subject: 0\r\n\r\n");
    session.commit(vec![0].into()).unwrap();
    let after = store.open("alice").unwrap();
    assert_eq!(after.messages().len(), 1);
}

#[test]
fn deliver_exits_0_when_durable_67_for_an_unknown_user_75_when_unreachable() {
    let cluster = Cluster::start();
    let store = store(&cluster);
    alice(&store);
    let run = |conninfo: &str, user: &str| {
        DeliverArgs::parse_from(["deliver", "--postgres", conninfo, user])
            .run(&mut &b"Subject: via deliver\r\n\r\nhi\r\n"[..])
    };
    assert_eq!(run(&cluster.conninfo(), "alice"), EX_OK);
    assert_eq!(run(&cluster.conninfo(), "nobody-here"), EX_NOUSER);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let unreachable = format!("host=127.0.0.1 port={port} user=postgres connect_timeout=1");
    assert_eq!(run(&unreachable, "alice"), EX_TEMPFAIL);
    let mut drop = store.open("alice").unwrap();
    assert_eq!(drop.messages().len(), 1);
    assert_eq!(
        read_all(&mut drop, 0).unwrap(),
        b"Subject: via deliver\r\n\r\nhi\r\n"
    );
    drop.commit(vec![].into()).unwrap();
    let added = DeliverArgs::parse_from([
        "deliver",
        "--postgres",
        &cluster.conninfo(),
        "--add-user",
        "--credential",
        "{PLAIN}builder",
        "bob",
    ])
    .run(&mut std::io::empty());
    assert_eq!(added, EX_OK);
    assert!(
        store
            .verify_password("bob", &Secret::new("builder"))
            .unwrap()
    );
}

#[test]
fn a_maildir_import_keeps_every_uidl_and_credential() {
    let cluster = Cluster::start();
    let root = tempfile::tempdir().unwrap();
    let passwd = root.path().join("passwd");
    std::fs::write(
        &passwd,
        "alice:{PLAIN}wonderland\n\
         bob:{SHA512-CRYPT}$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1\n\
         carol:{PLAIN}nomail\n",
    )
    .unwrap();
    let files: [(&str, &str, &[u8]); 4] = [
        ("cur", "1700000000.M1P1.host:2,S", b"Subject: seen\n\nold\n"),
        (
            "new",
            "1700000001.M2P2.host",
            b"Subject: new\r\n\r\nnew\r\n",
        ),
        ("new", "~tilde name", b"odd name"),
        ("cur", "1700000002.M3P3.host,W=30:2,", b"Subject: w\r\n\r\n"),
    ];
    for (sub, name, body) in files {
        for s in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(root.path().join("alice").join(s)).unwrap();
        }
        std::fs::write(root.path().join("alice").join(sub).join(name), body).unwrap();
    }
    std::fs::create_dir_all(root.path().join("bob/cur")).unwrap();
    std::fs::write(root.path().join("bob/cur/1.x:2,"), b"for bob\n").unwrap();
    let users = PasswdFile::load(&passwd).unwrap();
    let maildirs = MaildirStore::new(root.path(), users.clone()).move_new_to_cur(false);
    let mut before = Vec::new();
    for user in ["alice", "bob"] {
        let mut drop = maildirs.open(user).unwrap();
        let bodies: Vec<Vec<u8>> = (0..drop.messages().len())
            .map(|i| read_all(&mut drop, i).unwrap())
            .collect();
        before.push((uids(&drop), bodies));
    }
    let args: [std::ffi::OsString; 7] = [
        "deliver".into(),
        "--postgres".into(),
        cluster.conninfo().into(),
        "--import-maildir".into(),
        root.path().into(),
        "--users".into(),
        passwd.clone().into(),
    ];
    let code = DeliverArgs::parse_from(args).run(&mut std::io::empty());
    assert_eq!(code, EX_OK);
    let store = store(&cluster);
    for (user, (uids_before, bodies)) in ["alice", "bob"].iter().zip(&before) {
        let mut drop = store.open(user).unwrap();
        assert_eq!(&uids(&drop), uids_before, "{user}");
        for (i, body) in bodies.iter().enumerate() {
            assert_eq!(&read_all(&mut drop, i).unwrap(), body, "{user} {i}");
        }
    }
    assert_eq!(before[0].0.len(), 4);
    assert!(
        store
            .verify_password("alice", &Secret::new("wonderland"))
            .unwrap()
    );
    assert!(
        store
            .verify_password("bob", &Secret::new("secret"))
            .unwrap()
    );
    assert!(store.open("carol").unwrap().messages().is_empty());
    // Again: nothing new to import.
    let again = store.import_maildir(root.path(), &users).unwrap();
    assert_eq!((again.users, again.messages, again.skipped), (3, 0, 5));
}

/// A random message: CRLF and bare LF lines, dot lines, sometimes no final
/// line end, sometimes longer than a chunk.
fn random_message(rng: &mut fastrand::Rng) -> Vec<u8> {
    let mut m = Vec::new();
    let lines = if rng.u8(..20) == 0 {
        rng.usize(3000..6000)
    } else {
        rng.usize(0..20)
    };
    for _ in 0..lines {
        if rng.bool() {
            m.push(b'.');
        }
        m.extend(std::iter::repeat_n(b'a' + rng.u8(..26), rng.usize(0..120)));
        m.extend_from_slice(if rng.bool() { b"\r\n" } else { b"\n" });
    }
    if rng.bool() {
        m.extend_from_slice(b"no line end");
    }
    m
}

/// A seeded random run of deliveries, sessions, reads, second opens,
/// commits and abandoned sessions against the PostgreSQL store and the
/// core's MemoryStore (the contract's reference): the same listings,
/// sizes, bodies, locks and deletions at every step, and unique-ids that
/// stay the same for the same message.
#[test]
fn behaves_like_the_memory_store_over_a_random_run() {
    use futures_lite::future::block_on;
    use pop3_proto::store::{Maildrop, MemoryStore, MessageReader, Store};
    use std::collections::HashMap;

    let cluster = Cluster::start();
    let pg = store(&cluster);
    alice(&pg);
    let memory = MemoryStore::new();
    memory.add_user("alice", "wonderland");
    let mut rng = fastrand::Rng::with_seed(1939);
    // Memory unique-id → PostgreSQL unique-id, for every message seen.
    let mut same: HashMap<String, String> = HashMap::new();
    let mut session: Option<(pop3_blocking::postgres::PgMaildrop, _)> = None;
    let (mut delivered, mut reads) = (0, 0);
    for step in 0..1000 {
        match rng.u8(..6) {
            0 | 1 => {
                let m = random_message(&mut rng);
                pg.deliver("alice", &mut &m[..]).unwrap();
                memory.add_message("alice", m);
                delivered += 1;
            }
            2 => match session.take() {
                None => {
                    let p = pg.open("alice").unwrap();
                    let m = block_on(memory.open("alice")).unwrap();
                    assert_eq!(p.messages().len(), m.messages().len(), "step {step}");
                    for (a, b) in p.messages().iter().zip(m.messages()) {
                        assert_eq!(a.size, b.size, "step {step}");
                        let known = same
                            .entry(b.uid.as_str().to_owned())
                            .or_insert_with(|| a.uid.as_str().to_owned());
                        assert_eq!(known, a.uid.as_str(), "step {step}");
                    }
                    session = Some((p, m));
                }
                Some(open) => {
                    assert_eq!(pg.open("alice").unwrap_err(), StoreError::InUse);
                    assert_eq!(
                        block_on(memory.open("alice")).unwrap_err(),
                        StoreError::InUse
                    );
                    session = Some(open);
                }
            },
            3 => {
                if let Some((p, m)) = session.as_mut() {
                    if !p.messages().is_empty() {
                        let i = rng.usize(..p.messages().len());
                        let mut expected = Vec::new();
                        let mut reader = block_on(m.read(i)).unwrap();
                        while let Some(chunk) = block_on(reader.next_chunk()).unwrap() {
                            expected.extend_from_slice(&chunk);
                        }
                        assert_eq!(read_all(p, i).unwrap(), expected, "step {step}");
                        reads += 1;
                    }
                }
            }
            4 => {
                if let Some((p, m)) = session.take() {
                    let n = p.messages().len();
                    let marked: Vec<usize> = (0..n).filter(|_| rng.u8(..3) == 0).collect();
                    p.commit(marked.clone().into()).unwrap();
                    block_on(m.commit(marked.into())).unwrap();
                }
            }
            _ => drop(session.take()),
        }
    }
    drop(session);
    let p = pg.open("alice").unwrap();
    assert_eq!(p.messages().len(), memory.message_count("alice"));
    // The run did what it is for.
    assert!(reads > 30, "{reads} reads");
    assert!(p.messages().len() < delivered, "nothing deleted");
    assert!(same.len() > 20, "{} messages seen", same.len());
}

#[test]
fn pop3d_takes_postgres_instead_of_maildirs() {
    use pop3_blocking::cli::{ServerArgs, ServerStore};
    let cluster = Cluster::start();
    let (_setup, store) = ServerArgs::parse_from([
        "pop3d",
        "--listen",
        "127.0.0.1:0",
        "--postgres",
        &cluster.conninfo(),
        "--allow-root",
    ])
    .setup("pop3d-test")
    .unwrap();
    let ServerStore::Postgres(store) = store else {
        panic!("not the PostgreSQL store: {store:?}");
    };
    alice(&store);
    assert!(
        store
            .verify_password("alice", &Secret::new("wonderland"))
            .unwrap()
    );
    assert!(
        ServerArgs::try_parse_from([
            "pop3d",
            "--postgres",
            "host=x",
            "--maildir-root",
            "/x",
            "--users",
            "/y"
        ])
        .is_err()
    );
}

#[test]
fn chunks_are_stored_uncompressed() {
    let cluster = Cluster::start();
    drop(store(&cluster));
    let storage: i8 = sql(&cluster)
        .query_one(
            "SELECT attstorage FROM pg_attribute
             WHERE attrelid = 'chunks'::regclass AND attname = 'data'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(storage as u8, b'e', "data's storage is EXTERNAL");
}

#[test]
fn reading_in_order_fetches_ahead_and_still_sees_a_message_deleted_meanwhile() {
    let cluster = Cluster::start();
    let store = store(&cluster);
    alice(&store);
    let bodies: Vec<Vec<u8>> = (0..6)
        .map(|i| format!("Subject: {i}\r\n\r\nbody {i}\r\n").into_bytes())
        .collect();
    for b in &bodies {
        store.deliver("alice", &mut &b[..]).unwrap();
    }
    let mut drop = store.open("alice").unwrap();
    assert_eq!(read_all(&mut drop, 0).unwrap(), bodies[0]);
    // Messages 2 to 6 were fetched with the first: deleted behind the
    // session's back, the next reads (skipping forward included) still
    // give what was fetched, and a read back asks the database again.
    let mut db = sql(&cluster);
    db.execute("DELETE FROM chunks", &[]).unwrap();
    assert_eq!(read_all(&mut drop, 1).unwrap(), bodies[1]);
    assert_eq!(read_all(&mut drop, 3).unwrap(), bodies[3]);
    assert_eq!(read_all(&mut drop, 2), Err(StoreError::MessageGone));
    assert_eq!(read_all(&mut drop, 4), Err(StoreError::MessageGone));
}

fn retrieved_at_is_set(db: &mut postgres::Client, uid: &str) -> bool {
    db.query_one(
        "SELECT retrieved_at IS NOT NULL FROM messages WHERE uidl = $1",
        &[&uid],
    )
    .unwrap()
    .get(0)
}

#[test]
fn login_delay_is_enforced_on_the_database_clock_across_frontends() {
    let cluster = Cluster::start();
    let delay = Some(Duration::from_secs(600));
    let a = store(&cluster).with_login_delay(delay);
    let b = store(&cluster).with_login_delay(delay);
    alice(&a);
    drop(a.open("alice").unwrap());
    assert_eq!(a.open("alice").unwrap_err(), StoreError::LoginDelay);
    assert_eq!(
        b.open("alice").unwrap_err(),
        StoreError::LoginDelay,
        "another frontend sees the same last login"
    );
    let mut db = sql(&cluster);
    let last = |db: &mut postgres::Client| -> f64 {
        db.query_one(
            "SELECT extract(epoch FROM now() - last_login)::float8 FROM accounts WHERE name = 'alice'",
            &[],
        )
        .unwrap()
        .get(0)
    };
    // A refused login neither counts as one nor leaves a lease behind.
    db.execute(
        "UPDATE accounts SET last_login = now() - interval '599 seconds'",
        &[],
    )
    .unwrap();
    assert_eq!(b.open("alice").unwrap_err(), StoreError::LoginDelay);
    assert!(last(&mut db) >= 599.0);
    let leases: i64 = db
        .query_one("SELECT count(*) FROM leases", &[])
        .unwrap()
        .get(0);
    assert_eq!(leases, 0);
    db.execute(
        "UPDATE accounts SET last_login = now() - interval '601 seconds'",
        &[],
    )
    .unwrap();
    drop(b.open("alice").unwrap());
    assert!(last(&mut db) < 60.0, "the login was recorded");
    // A last login in the future (the clock set back) refuses too.
    db.execute(
        "UPDATE accounts SET last_login = now() + interval '1 day'",
        &[],
    )
    .unwrap();
    assert_eq!(a.open("alice").unwrap_err(), StoreError::LoginDelay);
    // Without a delay, nothing is checked or recorded.
    let plain = store(&cluster);
    drop(plain.open("alice").unwrap());
    drop(plain.open("alice").unwrap());
}

#[test]
fn login_delay_answers_err_login_delay_over_the_wire() {
    use pop3_blocking::server::{Pop3Server, Security};
    use pop3_proto::server::ServerConfig;
    use pop3_proto::store::{Inline, OffloadStore};
    use std::io::{BufRead, BufReader, Write};
    let cluster = Cluster::start();
    let pg = store(&cluster).with_login_delay(Some(Duration::from_secs(600)));
    alice(&pg);
    drop(pg.open("alice").unwrap());
    let store: OffloadStore<_, Inline> = OffloadStore::new(pg);
    let config = ServerConfig::default()
        .allow_plaintext_auth(true)
        .login_delay(Some(600));
    let server = Pop3Server::new(store, config);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let lines = std::thread::scope(|s| {
        let stopper = server.clone();
        let client = s.spawn(move || {
            let outcome = std::panic::catch_unwind(|| {
                let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                conn.write_all(b"CAPA\r\nUSER alice\r\nPASS wonderland\r\nQUIT\r\n")
                    .unwrap();
                let reader = BufReader::new(conn);
                reader
                    .lines()
                    .map(|l| l.unwrap())
                    .take_while(|l| !l.starts_with("+OK Logging out") && !l.contains("Bye"))
                    .collect::<Vec<_>>()
            });
            stopper.shutdown();
            outcome
        });
        server.serve(listener, Security::Plain).unwrap();
        client.join().unwrap()
    })
    .unwrap();
    assert!(lines.iter().any(|l| l == "LOGIN-DELAY 600"), "{lines:?}");
    assert!(
        lines.iter().any(|l| l.starts_with("-ERR [LOGIN-DELAY] ")),
        "{lines:?}"
    );
}

#[test]
fn expire_deletes_messages_retrieved_n_days_ago_at_the_next_commit_on_the_database_clock() {
    let cluster = Cluster::start();
    let store = store(&cluster).with_expire(Some(3));
    alice(&store);
    let uid: Vec<String> = (0..4)
        .map(|i| {
            store
                .deliver("alice", &mut format!("Subject: {i}\n\nbody\n").as_bytes())
                .unwrap()
                .uid
                .as_str()
                .to_owned()
        })
        .collect();
    let mut db = sql(&cluster);
    // A session retrieves messages 1 and 2 (message 3 only with TOP, which
    // the server does not report) and quits.
    store
        .open("alice")
        .unwrap()
        .commit(Update::default().with_retrieved(vec![0, 1]))
        .unwrap();
    assert!(retrieved_at_is_set(&mut db, &uid[0]));
    assert!(retrieved_at_is_set(&mut db, &uid[1]));
    assert!(!retrieved_at_is_set(&mut db, &uid[2]));
    // A session that retrieves message 4 and is dropped records nothing.
    let mut session = store.open("alice").unwrap();
    read_all(&mut session, 3).unwrap();
    drop(session);
    assert!(!retrieved_at_is_set(&mut db, &uid[3]));
    // Message 1 was retrieved four days ago, message 2 two days ago.
    db.execute(
        "UPDATE messages SET retrieved_at = now() - interval '4 days' WHERE uidl = $1",
        &[&uid[0]],
    )
    .unwrap();
    db.execute(
        "UPDATE messages SET retrieved_at = now() - interval '2 days' WHERE uidl = $1",
        &[&uid[1]],
    )
    .unwrap();
    let open = store.open("alice").unwrap();
    assert_eq!(uids(&open).len(), 4, "nothing goes before UPDATE");
    drop(open);
    store
        .open("alice")
        .unwrap()
        .commit(Update::default())
        .unwrap();
    assert_eq!(uids(&store.open("alice").unwrap()), uid[1..].to_vec());
    // Retrieving again does not restart the count.
    db.execute(
        "UPDATE messages SET retrieved_at = now() - interval '3 days' WHERE uidl = $1",
        &[&uid[1]],
    )
    .unwrap();
    store
        .open("alice")
        .unwrap()
        .commit(Update::default().with_retrieved(vec![0]))
        .unwrap();
    assert_eq!(uids(&store.open("alice").unwrap()), uid[2..].to_vec());
    // A store without EXPIRE records no retrieval and deletes only what is
    // marked.
    let plain = self::store(&cluster);
    plain
        .open("alice")
        .unwrap()
        .commit(Update::default().with_retrieved(vec![0]))
        .unwrap();
    assert!(!retrieved_at_is_set(&mut db, &uid[2]));
    // EXPIRE 0: what the session retrieved goes at its own commit.
    let zero = self::store(&cluster).with_expire(Some(0));
    zero.open("alice")
        .unwrap()
        .commit(Update::default().with_retrieved(vec![1]))
        .unwrap();
    assert_eq!(uids(&zero.open("alice").unwrap()), [uid[2].clone()]);
}

#[test]
fn pop3d_postgres_takes_expire_and_login_delay_and_advertises_them() {
    use pop3_blocking::cli::{ServerArgs, ServerStore};
    use pop3_proto::response::Expire;
    let cluster = Cluster::start();
    let conninfo = cluster.conninfo();
    let args = [
        "pop3d",
        "--listen",
        "127.0.0.1:0",
        "--postgres",
        &conninfo,
        "--expire",
        "5",
        "--login-delay",
        "60",
        // CI runs as root.
        "--allow-root",
    ];
    let (setup, store) = ServerArgs::parse_from(args).setup("pop3d-test").unwrap();
    let ServerStore::Postgres(store) = store else {
        panic!("not the PostgreSQL store: {store:?}");
    };
    assert_eq!(store.expire_enforced(), Some(5));
    assert_eq!(store.login_delay_enforced(), Some(Duration::from_secs(60)));
    assert_eq!(setup.config.get_expire(), Some(Expire::Days(5)));
    assert_eq!(setup.config.get_login_delay(), Some(60));
    let (setup, _) = ServerArgs::parse_from([
        "pop3d",
        "--listen",
        "127.0.0.1:0",
        "--postgres",
        &conninfo,
        "--allow-root",
    ])
    .setup("pop3d-test")
    .unwrap();
    assert_eq!(setup.config.get_expire(), Some(Expire::Never));
    assert_eq!(setup.config.get_login_delay(), None);
}
