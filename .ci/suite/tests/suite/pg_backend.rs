//! The behavioural suite's PostgreSQL backend: each scenario gets a
//! database of its own (so scenarios stay independent), made in a
//! PostgreSQL cluster the test binary's scenarios share while any of them
//! runs (starting one costs more than a database), and served through
//! `pop3_blocking::postgres::PgStore` the way each runtime serves a
//! blocking store.
//!
//! Include it from a test binary beside `support/pg_cluster.rs` (as
//! `mod pg_cluster;`) and `suite/mod.rs`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use pop3_blocking::postgres::PgStore;
use pop3_proto::server::{ServerConfig, ServerOptions};
use pop3_proto::store::BlockingStore;

use crate::pg_cluster::Cluster;
use crate::suite::{Account, Backend, Mailstore, Runtime, World, pki};

/// The PostgreSQL store.
pub struct Pg;

/// The cluster of the scenarios running now: started by the first, stopped
/// when the last one of a run ends (so that the server never outlives the
/// test binary).
fn cluster() -> Arc<Cluster> {
    static SHARED: Mutex<Weak<Cluster>> = Mutex::new(Weak::new());
    let mut shared = SHARED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(cluster) = shared.upgrade() {
        return cluster;
    }
    let cluster = Arc::new(Cluster::start());
    *shared = Arc::downgrade(&cluster);
    cluster
}

fn admin(cluster: &Cluster) -> postgres::Client {
    postgres::Client::connect(&cluster.conninfo(), postgres::NoTls)
        .unwrap_or_else(|e| panic!("connecting to the test cluster: {e}"))
}

/// A scenario's database, dropped with it.
struct Database {
    cluster: Arc<Cluster>,
    name: String,
    client: Mutex<postgres::Client>,
}

impl Database {
    fn create() -> Database {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let cluster = cluster();
        let name = format!("scenario{}", NEXT.fetch_add(1, Ordering::Relaxed));
        admin(&cluster)
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let client = postgres::Client::connect(&conninfo(&cluster, &name), postgres::NoTls)
            .unwrap_or_else(|e| panic!("connecting to {name}: {e}"));
        Database {
            cluster,
            name,
            client: Mutex::new(client),
        }
    }

    fn conninfo(&self) -> String {
        conninfo(&self.cluster, &self.name)
    }

    fn query(&self, sql: &str, user: &str) -> Vec<postgres::Row> {
        self.client
            .lock()
            .unwrap()
            .query(sql, &[&user])
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

fn conninfo(cluster: &Cluster, database: &str) -> String {
    cluster
        .conninfo()
        .replace("dbname=postgres", &format!("dbname={database}"))
}

impl Drop for Database {
    fn drop(&mut self) {
        // Closes the store's pooled connections too: the server may still
        // be letting go of them.
        let _ = admin(&self.cluster).batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

/// What a scenario sees of a PostgreSQL store: its tables, read with SQL
/// on a connection of its own.
struct PgMail {
    db: Database,
    store: PgStore,
}

impl Mailstore for PgMail {
    fn message_count(&self, user: &str) -> usize {
        let rows = self.db.query(
            "SELECT count(*) FROM messages m JOIN accounts a ON a.id = m.account
             WHERE a.name = $1",
            user,
        );
        rows[0].get::<_, i64>(0) as usize
    }

    fn messages(&self, user: &str) -> Vec<Vec<u8>> {
        let rows = self.db.query(
            "SELECT m.id, c.data FROM messages m
             JOIN accounts a ON a.id = m.account
             LEFT JOIN chunks c ON c.message = m.id
             WHERE a.name = $1 ORDER BY m.id, c.seq",
            user,
        );
        let mut out: Vec<(i64, Vec<u8>)> = Vec::new();
        for row in rows {
            let id: i64 = row.get(0);
            let data: Option<&[u8]> = row.get(1);
            if out.last().is_none_or(|(last, _)| *last != id) {
                out.push((id, Vec::new()));
            }
            if let Some(data) = data {
                out.last_mut().unwrap().1.extend_from_slice(data);
            }
        }
        out.into_iter().map(|(_, m)| m).collect()
    }

    fn deliver(&self, user: &str, message: &[u8]) {
        self.store.deliver(user, &mut &message[..]).unwrap();
    }

    fn is_released(&self, user: &str) -> bool {
        // The async runtimes drop a maildrop on their blocking pool, after
        // the session has ended: its lease goes a moment later.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let held = self.db.query(
                "SELECT 1 FROM leases l JOIN accounts a ON a.id = l.account
                 WHERE a.name = $1",
                user,
            );
            if held.is_empty() {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Backend for Pg {
    fn world<R: Runtime>(
        accounts: &[Account<'_>],
        config: impl FnOnce(ServerConfig) -> ServerConfig,
        options: ServerOptions,
    ) -> World {
        let db = Database::create();
        let connect = || PgStore::connect(&db.conninfo()).unwrap();
        let store = connect();
        for a in accounts {
            store
                .add_user(a.name, &format!("{{PLAIN}}{}", a.password))
                .unwrap();
            for m in a.messages {
                store.deliver(a.name, &mut &m[..]).unwrap();
            }
        }
        let pki = pki();
        let config = config(
            ServerConfig::default()
                .credential_forms(BlockingStore::credential_forms(&store))
                .allow_plaintext_auth(true),
        );
        let served = R::serve_blocking(store, config, pki.server.clone(), options);
        // Another store on the same database, for deliveries from outside.
        let store = connect();
        World {
            served,
            store: Box::new(PgMail { db, store }),
            pki,
        }
    }
}
