//! Scenario 6: two `pop3d` frontends (tokio, separate processes) over one
//! private PostgreSQL cluster, against Dovecot on Maildir: the bulk
//! maildrop's throughput, the session rate of 64 clients, CPU per GB of
//! the frontends and PostgreSQL together, the cost of delivering a message
//! (`deliver` against `dovecot-lda`), and one large message delivered and
//! retrieved in bounded memory.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pop3_blocking::postgres::PgStore;

use crate::peers::{self, Pop3d};
use crate::pg_cluster::Cluster;
use crate::report::{Samples, Table, mark, ratio};
use crate::scenarios::{SESSION_CLIENTS, World, session_loop, session_users};
use crate::{Error, Plan, sys};

/// Where Dovecot's delivery agent is installed (Debian's `dovecot-core`).
const DOVECOT_LDA: &str = "/usr/lib/dovecot/dovecot-lda";

/// The cluster and the two frontends over it.
struct Deployment {
    cluster: Cluster,
    conninfo: String,
    fronts: [Pop3d; 2],
}

impl Deployment {
    /// CPU seconds so far of both frontends and of PostgreSQL (the
    /// postmaster and its backends).
    fn cpu(&self) -> f64 {
        let db = self.cluster.pid().map_or(0.0, sys::tree_cpu);
        self.fronts.iter().map(Pop3d::cpu).sum::<f64>() + db
    }
}

fn frontend(world: &World, conninfo: &str, n: usize) -> Result<Pop3d, Error> {
    let secret = world.dirs.tmp().join("pg-secret");
    if !secret.exists() {
        std::fs::write(
            &secret,
            "e2e deployment secret, the same on every frontend\n",
        )?;
    }
    let log = world.dirs.tmp().join(format!("pop3d-pg-{n}.log"));
    Pop3d::start_postgres(
        conninfo,
        &secret,
        (&world.cert, &world.key),
        &log,
        &[
            "--max-connections",
            "20000",
            "--max-connections-per-address",
            "20000",
        ],
    )
}

/// Runs the scenario.
pub fn run(plan: &Plan, world: &World) -> Result<Vec<Table>, Error> {
    if !Path::new(DOVECOT_LDA).exists() {
        return Err(format!("{DOVECOT_LDA} is missing: apt-get install -y dovecot-core").into());
    }
    eprintln!("e2e: postgres: starting a private cluster on tmpfs");
    // On tmpfs like the Maildirs; the test cluster's settings (fsync off,
    // which tmpfs makes moot) with a cache for the maildrop.
    let cluster = Cluster::start_in(world.dirs.tmp(), &["shared_buffers=256MB"]);
    let conninfo = cluster.conninfo();
    let store = PgStore::connect(&conninfo)?;
    let password = format!("{{PLAIN}}{}", peers::PASSWORD);
    let mut users = vec!["alice".to_owned(), "big".to_owned()];
    users.extend(session_users());
    for u in &users {
        store.add_user(u, &password)?;
    }
    eprintln!("e2e: postgres: delivering the maildrop");
    for f in &world.maildrop.files {
        store.deliver("alice", &mut File::open(f)?)?;
    }
    let note = peers::message(0, 2_000, 7);
    for u in session_users() {
        store.deliver(&u, &mut &note[..])?;
    }
    drop(store);
    let fronts = [
        frontend(world, &conninfo, 0)?,
        frontend(world, &conninfo, 1)?,
    ];
    let deployment = Deployment {
        cluster,
        conninfo,
        fronts,
    };
    let mut tables = vec![
        throughput(plan, world, &deployment)?,
        sessions(plan, world, &deployment)?,
    ];
    tables.push(large(plan, world, &deployment)?);
    tables.push(delivery(plan, world, &deployment)?);
    Ok(tables)
}

/// The bulk maildrop, plain, from Dovecot and from the frontends in turn.
fn throughput(plan: &Plan, world: &World, d: &Deployment) -> Result<Table, Error> {
    eprintln!("e2e: postgres: throughput");
    let count = world.maildrop.files.len();
    let octets = world.maildrop.wire_octets;
    let gb = octets as f64 / 1e9;
    let (mut wall, mut cpu) = ([Samples::default(), Samples::default()], [0.0f64; 2]);
    for round in 0..=plan.runs {
        for side in 0..2 {
            let (addr, cpu0) = if side == 0 {
                (world.dovecot.plain, world.dovecot.cpu())
            } else {
                (d.fronts[round % 2].plain, d.cpu())
            };
            let t0 = Instant::now();
            crate::wire::retrieve_all(addr, None, "alice", count, octets)
                .map_err(|e| format!("postgres throughput, side {side}: {e}"))?;
            let t = t0.elapsed().as_secs_f64();
            std::thread::sleep(Duration::from_millis(50));
            let used = if side == 0 {
                world.dovecot.cpu()
            } else {
                d.cpu()
            } - cpu0;
            if round > 0 {
                wall[side].push(t);
                cpu[side] += used;
            }
        }
    }
    let mut t = Table::new(
        "PostgreSQL store: server throughput, plain POP3",
        &[
            "server",
            "wall s, median (min–max)",
            "GB/s",
            "CPU s/GB (all runs)",
            "throughput ×Dovecot",
            "CPU/GB ×Dovecot",
        ],
    );
    t.note = format!(
        "The bulk maildrop ({count} messages, {:.1} MB) as in the server scenario: from Dovecot \
         on Maildir, and from two tokio `pop3d --postgres` frontends (separate processes, taking \
         turns) over one private PostgreSQL cluster (data on tmpfs like the Maildirs). CPU is \
         the frontends' and PostgreSQL's together. Target: throughput ≥ Dovecot's.",
        octets as f64 / 1e6
    );
    let runs = wall[0].0.len() as f64;
    let (dw, dc) = (wall[0].median(), cpu[0] / (gb * runs));
    for (side, name) in [(0, "Dovecot (Maildir)"), (1, "2 × pop3d + PostgreSQL")] {
        let (w, c) = (wall[side].median(), cpu[side] / (gb * runs));
        let vs = if side == 0 {
            ratio(dw, w)
        } else {
            format!("{} {}", ratio(dw, w), mark(dw / w >= 1.0))
        };
        t.row(vec![
            name.into(),
            wall[side].spread(3),
            format!("{:.2}", gb / w),
            format!("{c:.2}"),
            vs,
            ratio(c, dc),
        ]);
    }
    Ok(t)
}

/// 64 clients looping short sessions: against Dovecot, and spread over
/// both frontends.
fn sessions(plan: &Plan, world: &World, d: &Deployment) -> Result<Table, Error> {
    eprintln!("e2e: postgres: session rate");
    let mut rate = [Samples::default(), Samples::default()];
    let mut totals = [(0.0f64, 0u64, 0u64); 2];
    let ours = [d.fronts[0].plain, d.fronts[1].plain];
    for round in 0..=plan.runs {
        for side in 0..2 {
            let seconds = if round == 0 {
                plan.session_seconds.min(0.5)
            } else {
                plan.session_seconds
            };
            let cpu = || {
                if side == 0 {
                    world.dovecot.cpu()
                } else {
                    d.cpu()
                }
            };
            let cpu0 = cpu();
            let (done, failed, elapsed) = if side == 0 {
                session_loop(&[world.dovecot.plain], seconds)
            } else {
                session_loop(&ours, seconds)
            };
            std::thread::sleep(Duration::from_millis(50));
            let used = cpu() - cpu0;
            if round > 0 {
                rate[side].push(done as f64 / elapsed);
                totals[side].0 += used;
                totals[side].1 += done;
                totals[side].2 += failed;
            }
        }
    }
    let mut t = Table::new(
        "PostgreSQL store: session rate",
        &[
            "server",
            "sessions/s, median (min–max)",
            "CPU s per 1000 sessions",
            "failed sessions",
            "×Dovecot",
        ],
    );
    t.note = format!(
        "{SESSION_CLIENTS} clients, each with its own maildrop (one 2 kB message), loop connect, \
         USER, PASS, STAT, QUIT for {} s per run; against ours, half the clients use each \
         frontend. CPU: Dovecot's, or the frontends' and PostgreSQL's together. Target: ≥ 3× \
         Dovecot's sessions per second.",
        plan.session_seconds
    );
    let dr = rate[0].median();
    for (side, name) in [(0, "Dovecot (Maildir)"), (1, "2 × pop3d + PostgreSQL")] {
        let r = rate[side].median();
        t.row(vec![
            name.into(),
            rate[side].spread(0),
            format!(
                "{:.3}",
                totals[side].0 / totals[side].1.max(1) as f64 * 1000.0
            ),
            totals[side].2.to_string(),
            if side == 0 {
                ratio(r, dr)
            } else {
                format!("{} {}", ratio(r, dr), mark(r / dr >= 3.0))
            },
        ]);
    }
    Ok(t)
}

/// One large message: `deliver` stores it, a fresh frontend serves it;
/// each process's peak memory.
fn large(plan: &Plan, world: &World, d: &Deployment) -> Result<Table, Error> {
    let bytes = plan.large_mib << 20;
    eprintln!("e2e: postgres: one message of {} MiB", plan.large_mib);
    let source = world.dirs.tmp().join("pg-large");
    let (file, wire_octets) = peers::deliver_large(&source, bytes)?;
    let log = world.dirs.tmp().join("pg-deliver-large.log");
    let mut c = Command::new(sys::examples_dir()?.join("deliver"));
    c.arg("--postgres").arg(&d.conninfo).arg("big");
    let (deliver_wall, deliver) =
        sys::run_measured_from(c, Stdio::from(File::open(&file)?), "deliver (large)", &log)?;
    std::fs::remove_dir_all(&source)?;
    // A fresh frontend: its peak is this message's alone.
    let server = frontend(world, &d.conninfo, 2)?;
    let t0 = Instant::now();
    crate::wire::retrieve_all(server.plain, None, "big", 1, wire_octets)
        .map_err(|e| format!("retrieving the large message: {e}"))?;
    let retr_wall = t0.elapsed().as_secs_f64();
    let (_, server_peak) = sys::rss_kib(server.pid);
    drop(server);
    // Leave the cluster as it was for the next scenario's runs.
    let store = PgStore::connect(&d.conninfo)?;
    {
        use pop3_proto::store::{BlockingMaildrop, BlockingStore};
        let drop = store.open("big").map_err(|e| format!("open big: {e}"))?;
        drop.commit(vec![0].into())
            .map_err(|e| format!("delete big: {e}"))?;
    }
    let gb = wire_octets as f64 / 1e9;
    let (dmib, smib) = (
        deliver.max_rss_kib as f64 / 1024.0,
        server_peak as f64 / 1024.0,
    );
    let mut t = Table::new(
        format!("PostgreSQL store: one {} MiB message", plan.large_mib),
        &["process", "wall s", "GB/s", "peak RSS, MiB", "CPU s"],
    );
    t.note = "`deliver` stores the message from its standard input, then a fresh tokio \
              `pop3d --postgres` serves it to a raw client (plain). Target: the frontend's \
              peak RSS < 32 MiB."
        .into();
    t.row(vec![
        "deliver".into(),
        format!("{deliver_wall:.2}"),
        format!("{:.2}", bytes as f64 / 1e9 / deliver_wall),
        format!("{dmib:.1}"),
        format!("{:.2}", deliver.cpu),
    ]);
    t.row(vec![
        "pop3d (tokio) RETR".into(),
        format!("{retr_wall:.2}"),
        format!("{:.2}", gb / retr_wall),
        format!("{smib:.1} {}", mark(smib < 32.0)),
        "—".into(),
    ]);
    Ok(t)
}

/// Delivering one small message per process: `deliver` into PostgreSQL
/// against `dovecot-lda` into a Maildir.
fn delivery(plan: &Plan, world: &World, d: &Deployment) -> Result<Table, Error> {
    let n = if plan.smoke { 5 } else { 200 };
    eprintln!("e2e: postgres: {n} deliveries each");
    let message = world.dirs.tmp().join("pg-deliver-message");
    std::fs::write(&message, peers::message(1, 4_000, 11))?;
    let log = world.dirs.tmp().join("pg-deliver.log");
    let deliver = sys::examples_dir()?.join("deliver");
    // (wall, CPU of the agents, CPU of the store's server) per side.
    let mut sums = [(0.0f64, 0.0f64, 0.0f64); 2];
    for i in 0..n {
        for (side, sum) in sums.iter_mut().enumerate() {
            let server_cpu = || {
                if side == 0 {
                    world.dovecot.cpu()
                } else {
                    d.cluster.pid().map_or(0.0, sys::tree_cpu)
                }
            };
            let mut c = if side == 0 {
                let mut c = Command::new(DOVECOT_LDA);
                c.arg("-c").arg(world.dovecot.conf()).args(["-d", "u0"]);
                c
            } else {
                let mut c = Command::new(&deliver);
                c.arg("--postgres").arg(&d.conninfo).arg("u0");
                c
            };
            c.env_remove("RUST_LOG");
            let cpu0 = server_cpu();
            let (w, usage) = sys::run_measured_from(
                c,
                Stdio::from(File::open(&message)?),
                if side == 0 { "dovecot-lda" } else { "deliver" },
                &log,
            )?;
            if i > 0 || n == 1 {
                sum.0 += w;
                sum.1 += usage.cpu;
                sum.2 += server_cpu() - cpu0;
            }
        }
    }
    let counted = (n - 1).max(1) as f64;
    let mut t = Table::new(
        "Delivery cost per message",
        &[
            "agent",
            "wall ms per message",
            "agent CPU ms",
            "store's server CPU ms",
            "total CPU ×dovecot-lda",
        ],
    );
    t.note = format!(
        "{n} deliveries of one 4 kB message, one process each, alternating (the first of each \
         not counted): `dovecot-lda -d u0` into the Maildir of the running Dovecot (its userdb \
         looked up through Dovecot's auth service, whose CPU is counted), and `deliver` into \
         PostgreSQL, committed before it exits (the backend's CPU counted). The kernel counts \
         CPU in 10 ms ticks: the per-message CPU figures are averages of coarse readings."
    );
    let total = |s: &(f64, f64, f64)| s.1 + s.2;
    for (side, name) in [(0, "dovecot-lda (Maildir)"), (1, "deliver (PostgreSQL)")] {
        let s = &sums[side];
        t.row(vec![
            name.into(),
            format!("{:.2}", s.0 / counted * 1000.0),
            format!("{:.2}", s.1 / counted * 1000.0),
            format!("{:.2}", s.2 / counted * 1000.0),
            ratio(total(s), total(&sums[0])),
        ]);
    }
    Ok(t)
}
