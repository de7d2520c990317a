//! The scenarios: server throughput, session rate, idle scale, one large
//! message, and the clients.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::peers::{self, Client, Dovecot, Fetching, Link, Pop3d, Runtime};
use crate::report::{Report, Samples, Table, mark, ratio};
use crate::wire::{self, SendfileServer};
use crate::{Error, Plan, sys};

/// The scenarios, in the order they run.
pub const NAMES: [&str; 8] = [
    "server", "sessions", "idle", "large", "client", "mixed", "slowlink", "postgres",
];

/// Concurrent clients of the session-rate scenario.
pub const SESSION_CLIENTS: usize = 64;

/// Where everything lives during a run: a tmpfs directory (the servers'
/// maildrops and the clients' output "on tmpfs") and a directory on disk.
pub struct Dirs {
    tmpfs: tempfile::TempDir,
    pub disk: tempfile::TempDir,
}

impl Dirs {
    fn new() -> Result<Dirs, Error> {
        let shm = Path::new("/dev/shm");
        let tmpfs = if shm.is_dir() {
            tempfile::Builder::new()
                .prefix("pop3-e2e-")
                .tempdir_in(shm)?
        } else {
            return Err(
                "no /dev/shm: the benchmarks need a tmpfs to keep the disk out of the comparison"
                    .into(),
            );
        };
        // On disk: beside the build, which is on a real file system.
        let target = sys::examples_dir()?.join("../e2e-disk");
        std::fs::create_dir_all(&target)?;
        let disk = tempfile::Builder::new().prefix("run-").tempdir_in(target)?;
        Ok(Dirs { tmpfs, disk })
    }

    pub fn tmp(&self) -> &Path {
        self.tmpfs.path()
    }
}

/// The servers' world: the same maildrops under our Maildir root and
/// under Dovecot's (separate copies: Dovecot keeps its own indexes in
/// them), the users, and Dovecot itself.
pub struct World {
    pub dirs: Dirs,
    pub maildrop: peers::Maildrop,
    ours_root: PathBuf,
    users: PathBuf,
    pub dovecot: Dovecot,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The log-normal maildrop of user `mixed` (fast link), in Dovecot.
    pub mixed: Option<peers::Maildrop>,
    /// The log-normal maildrop of user `slow` (slow link), in Dovecot.
    pub slow: Option<peers::Maildrop>,
}

pub fn session_users() -> Vec<String> {
    (0..SESSION_CLIENTS).map(|i| format!("u{i}")).collect()
}

impl World {
    fn new(plan: &Plan) -> Result<World, Error> {
        let dirs = Dirs::new()?;
        let sizes = peers::maildrop_sizes(plan.mb);
        eprintln!(
            "e2e: writing the maildrop ({} messages, {} MB) twice",
            sizes.len(),
            plan.mb
        );
        let ours_root = dirs.tmp().join("ours/mail");
        let dovecot_dir = dirs.tmp().join("dovecot");
        let maildrop = peers::write_maildrop(&ours_root.join("alice"), &sizes)?;
        peers::write_maildrop(&dovecot_dir.join("mail/alice"), &sizes)?;
        let mut users = vec!["alice".to_owned(), "big".to_owned()];
        for u in session_users() {
            for root in [&ours_root, &dovecot_dir.join("mail")] {
                peers::deliver(&root.join(&u), 0, &peers::message(0, 2_000, 7))?;
            }
            users.push(u);
        }
        let mut shaped = |user: &str, count: usize, large: bool| -> Result<_, Error> {
            let sizes = peers::lognormal_sizes(count, large);
            let m = peers::write_maildrop(&dovecot_dir.join("mail").join(user), &sizes)?;
            eprintln!(
                "e2e: the log-normal maildrop of {user}: {} messages, {:.1} MB",
                m.files.len(),
                m.wire_octets as f64 / 1e6
            );
            users.push(user.to_owned());
            Ok(m)
        };
        let mixed = if plan.wants("mixed") {
            Some(shaped("mixed", plan.mixed, !plan.smoke)?)
        } else {
            None
        };
        let slow = if plan.wants("slowlink") {
            Some(shaped("slow", plan.slow, !plan.smoke)?)
        } else {
            None
        };
        std::fs::create_dir_all(ours_root.join("big"))?;
        let passwd = dirs.tmp().join("ours/users");
        peers::passwd_file(&passwd, &users)?;
        let dovecot_users: String = users
            .iter()
            .filter(|u| *u != "big")
            .map(|u| format!("{u}:{}\n", peers::PASSWORD))
            .collect();
        std::fs::write(dovecot_dir.join("passwords"), dovecot_users)?;
        eprintln!("e2e: starting Dovecot");
        let dovecot = Dovecot::start(&dovecot_dir)?;
        let tls = dovecot_dir.join("tls");
        Ok(World {
            maildrop,
            ours_root,
            users: passwd,
            dovecot,
            cert: tls.join("server.pem"),
            key: tls.join("server.key"),
            dirs,
            mixed,
            slow,
        })
    }

    fn pop3d(&self, runtime: Runtime, extra: &[&str]) -> Result<Pop3d, Error> {
        let log = self
            .dirs
            .tmp()
            .join(format!("pop3d-{}.log", runtime.name()));
        // No caps in the way of the load, unless the scenario sets them.
        let mut args = vec!["--max-connections", "20000"];
        if !extra.contains(&"--max-connections-per-address") {
            args.extend_from_slice(&["--max-connections-per-address", "20000"]);
        }
        args.extend_from_slice(extra);
        Pop3d::start(
            runtime,
            &self.ours_root,
            &self.users,
            (&self.cert, &self.key),
            &log,
            &args,
        )
    }

    fn tls_client(&self) -> Result<Arc<rustls::ClientConfig>, Error> {
        wire::tls_client(&self.dovecot.ca)
    }
}

/// Runs the scenarios the plan asks for.
pub fn run_all(plan: &Plan) -> Result<Report, Error> {
    for peer in ["dovecot", "mpop", "curl", "python3"] {
        if !sys::have(peer) && !Path::new("/usr/sbin").join(peer).exists() {
            return Err(format!(
                "{peer} is missing: apt-get install -y dovecot-core dovecot-pop3d mpop curl python3"
            )
            .into());
        }
    }
    sys::build_examples()?;
    let world = World::new(plan)?;
    let mut report = Report {
        preamble: preamble(plan, &world),
        tables: Vec::new(),
    };
    if plan.wants("server") {
        report.tables.extend(server_throughput(plan, &world)?);
    }
    if plan.wants("sessions") {
        report.tables.push(session_rate(plan, &world)?);
    }
    if plan.wants("idle") {
        report.tables.push(idle_scale(plan, &world)?);
    }
    if plan.wants("large") {
        report.tables.push(large_message(plan, &world)?);
    }
    if plan.wants("client") {
        report.tables.extend(clients(plan, &world)?);
    }
    // These tables are also printed as soon as they are done: their runs
    // are long, and a peer failing later would lose them.
    if plan.wants("mixed") {
        let t = crate::slowlink::mixed(plan, &world)?;
        eprintln!("\n{}", t.markdown());
        report.tables.push(t);
    }
    if plan.wants("slowlink") {
        report.tables.extend(crate::slowlink::run(plan, &world)?);
    }
    if plan.wants("postgres") {
        report.tables.extend(crate::pg::run(plan, &world)?);
    }
    Ok(report)
}

fn preamble(plan: &Plan, world: &World) -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    let dovecot = std::process::Command::new("dovecot")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!(
        "## e2e: {} runs each, alternating{}\n\n\
         Machine: {cores} cores, {mem_gib:.1} GiB. Dovecot {dovecot}. Maildrop: {} messages, \
         {:.1} MB on the wire.\n",
        plan.runs,
        if plan.smoke {
            " (smoke: sizes too small to mean anything)"
        } else {
            ""
        },
        world.maildrop.files.len(),
        world.maildrop.wire_octets as f64 / 1e6,
    )
}

/// A server under measurement.
enum Server<'a> {
    Sendfile(SendfileServer),
    /// The same octets written from memory.
    Memory(SendfileServer),
    Dovecot(&'a Dovecot),
    Ours(Runtime, Pop3d),
}

impl Server<'_> {
    fn name(&self) -> String {
        match self {
            Server::Sendfile(_) => "sendfile".into(),
            Server::Memory(_) => "writes from memory".into(),
            Server::Dovecot(_) => "Dovecot".into(),
            Server::Ours(r, _) => format!("pop3d ({})", r.name()),
        }
    }

    fn cpu(&self) -> f64 {
        match self {
            Server::Sendfile(_) | Server::Memory(_) => f64::NAN,
            Server::Dovecot(d) => d.cpu(),
            Server::Ours(_, p) => p.cpu(),
        }
    }

    fn addr(&self, link: Link) -> Option<SocketAddr> {
        match (self, link) {
            (Server::Sendfile(s) | Server::Memory(s), Link::Plain) => Some(s.addr),
            (Server::Sendfile(_) | Server::Memory(_), _) => None,
            (Server::Dovecot(d), Link::Plain) => Some(d.plain),
            (Server::Dovecot(d), _) => Some(d.tls),
            (Server::Ours(_, p), Link::Plain) => Some(p.plain),
            (Server::Ours(_, p), _) => Some(p.tls),
        }
    }
}

/// Scenario 1: USER, PASS, RETR 1..N, QUIT in one write, read to the end;
/// plain and over implicit TLS.
fn server_throughput(plan: &Plan, world: &World) -> Result<Vec<Table>, Error> {
    eprintln!("e2e: server throughput");
    let mut servers = vec![
        Server::Sendfile(SendfileServer::new(world.maildrop.files.clone())?),
        Server::Memory(SendfileServer::from_memory(world.maildrop.files.clone())?),
        Server::Dovecot(&world.dovecot),
    ];
    for r in Runtime::ALL {
        servers.push(Server::Ours(r, world.pop3d(r, &[])?));
    }
    let tls = world.tls_client()?;
    let count = world.maildrop.files.len();
    let octets = world.maildrop.wire_octets;
    let gb = octets as f64 / 1e9;
    let mut tables = Vec::new();
    for link in [Link::Plain, Link::Stls] {
        let config = (link == Link::Stls).then_some(&tls);
        let mut wall = vec![Samples::default(); servers.len()];
        let mut cpu = vec![Samples::default(); servers.len()];
        // One unmeasured pass warms the page cache and Dovecot's indexes.
        for round in 0..=plan.runs {
            for (i, s) in servers.iter().enumerate() {
                let Some(addr) = s.addr(link) else { continue };
                let serving = match s {
                    Server::Sendfile(sf) | Server::Memory(sf) => Some(sf.serve_one()?),
                    _ => None,
                };
                let min = match s {
                    Server::Sendfile(_) | Server::Memory(_) => world.maildrop.stored_octets,
                    _ => octets,
                };
                let cpu0 = s.cpu();
                let t0 = Instant::now();
                wire::retrieve_all(addr, config, "alice", count, min)
                    .map_err(|e| format!("{}: {e}", s.name()))?;
                let t = t0.elapsed().as_secs_f64();
                if let Some(serving) = serving {
                    serving
                        .join()
                        .map_err(|_| "the sendfile server panicked")?
                        .map_err(|e| format!("sendfile server: {e}"))?;
                }
                // Let the server's last accounting land (a Dovecot child
                // reaped after its QUIT).
                std::thread::sleep(Duration::from_millis(50));
                if round > 0 {
                    wall[i].push(t);
                    cpu[i].push(s.cpu() - cpu0);
                }
            }
        }
        let title = match link {
            Link::Plain => "Server throughput, plain POP3",
            _ => "Server throughput, POP3S (TLS 1.3)",
        };
        let mut t = Table::new(
            title,
            &[
                "server",
                "wall s, median (min–max)",
                "GB/s",
                "server CPU s/GB (all runs)",
                "throughput ×Dovecot",
                "CPU/GB ×Dovecot",
                "wall ×sendfile",
            ],
        );
        t.note = format!(
            "A raw client sends USER, PASS, RETR 1..{count} and QUIT in one write and reads \
             {:.1} MB to the end. Two servers only move the stored octets (no parsing, no CRLF, \
             no stuffing): sendfile of the files (the limit the targets use), and plain writes \
             of the same octets from memory (the loopback's own ceiling, no file read at all). \
             Targets: ≥ 1.5× Dovecot's throughput, ≤ 0.5× its CPU per GB, plain within 1.5× of \
             sendfile.",
            octets as f64 / 1e6
        );
        // CPU per GB over all runs together: the kernel counts CPU time in
        // ticks of 10 ms, too coarse for one run.
        let per_gb = |c: &Samples| c.0.iter().sum::<f64>() / (gb * c.0.len() as f64);
        let dovecot = 2;
        let (dw, dc) = (wall[dovecot].median(), per_gb(&cpu[dovecot]));
        let sendfile_wall = wall[0].median();
        for (i, s) in servers.iter().enumerate() {
            if s.addr(link).is_none() {
                continue;
            }
            let (w, c) = (wall[i].median(), per_gb(&cpu[i]));
            let ours = matches!(s, Server::Ours(..));
            let with_target = |cell: String, met: bool| {
                if ours && cell != "—" {
                    format!("{cell} {}", mark(met))
                } else {
                    cell
                }
            };
            t.row(vec![
                s.name(),
                wall[i].spread(3),
                format!("{:.2}", gb / w),
                if c.is_nan() {
                    "—".into()
                } else {
                    format!("{c:.2}")
                },
                with_target(ratio(dw, w), dw / w >= 1.5),
                with_target(ratio(c, dc), c / dc <= 0.5),
                if link == Link::Plain {
                    with_target(ratio(w, sendfile_wall), w / sendfile_wall <= 1.5)
                } else {
                    "—".into()
                },
            ]);
        }
        tables.push(t);
    }
    Ok(tables)
}

/// Scenario 2: 64 clients, each with its own maildrop, looping connect,
/// USER, PASS, STAT, QUIT (a reply read after each) for a fixed time.
fn session_rate(plan: &Plan, world: &World) -> Result<Table, Error> {
    eprintln!("e2e: session rate");
    let mut servers = vec![Server::Dovecot(&world.dovecot)];
    for r in Runtime::ALL {
        servers.push(Server::Ours(r, world.pop3d(r, &[])?));
    }
    let mut rate = vec![Samples::default(); servers.len()];
    // Totals over the measured runs: CPU seconds and sessions.
    let mut cpu_total = vec![(0.0f64, 0u64); servers.len()];
    let mut errors = vec![0u64; servers.len()];
    for round in 0..=plan.runs {
        for (i, s) in servers.iter().enumerate() {
            let addr = s.addr(Link::Plain).expect("plain");
            let seconds = if round == 0 {
                plan.session_seconds.min(0.5)
            } else {
                plan.session_seconds
            };
            let cpu0 = s.cpu();
            let (done, failed, elapsed) = session_loop(&[addr], seconds);
            std::thread::sleep(Duration::from_millis(50));
            let cpu = s.cpu() - cpu0;
            if round > 0 {
                rate[i].push(done as f64 / elapsed);
                cpu_total[i].0 += cpu;
                cpu_total[i].1 += done;
                errors[i] += failed;
            }
        }
    }
    let mut t = Table::new(
        "Session rate",
        &[
            "server",
            "sessions/s, median (min–max)",
            "server CPU s per 1000 sessions",
            "failed sessions",
            "×Dovecot",
        ],
    );
    t.note = format!(
        "{SESSION_CLIENTS} concurrent clients, each with its own maildrop, loop connect, \
         greeting, USER, PASS, STAT, QUIT (each reply awaited) for {} s per run. Dovecot runs in \
         its high-performance login mode (`service_count = 0`, `process_min_avail = 2`). \
         Target: ≥ 3× Dovecot's sessions per second.",
        plan.session_seconds
    );
    let d = rate[0].median();
    for (i, s) in servers.iter().enumerate() {
        let r = rate[i].median();
        let vs = if i == 0 {
            ratio(r, d)
        } else {
            format!("{} {}", ratio(r, d), mark(r / d >= 3.0))
        };
        t.row(vec![
            s.name(),
            rate[i].spread(0),
            format!(
                "{:.3}",
                cpu_total[i].0 / cpu_total[i].1.max(1) as f64 * 1000.0
            ),
            errors[i].to_string(),
            vs,
        ]);
    }
    Ok(t)
}

/// Runs the session loop of every client for `seconds`, client `i` on
/// `addrs[i % addrs.len()]`: (sessions done, sessions failed, seconds
/// elapsed).
pub fn session_loop(addrs: &[SocketAddr], seconds: f64) -> (u64, u64, f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let threads: Vec<_> = session_users()
        .into_iter()
        .enumerate()
        .map(|(i, user)| {
            let addr = addrs[i % addrs.len()];
            let (stop, done, failed) = (stop.clone(), done.clone(), failed.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match wire::session(addr, &user) {
                        Ok(()) => done.fetch_add(1, Ordering::Relaxed),
                        Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let elapsed = start.elapsed().as_secs_f64();
    (
        done.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        elapsed,
    )
}

/// Scenario 3: many idle connections (from many loopback addresses, 30
/// each) on one fresh server; its memory per connection, and a fresh
/// session from 127.0.0.1 meanwhile.
fn idle_scale(plan: &Plan, world: &World) -> Result<Table, Error> {
    eprintln!("e2e: idle scale ({} connections)", plan.idle);
    let mut t = Table::new(
        "Idle scale",
        &[
            "server",
            "idle connections",
            "RSS before, KiB",
            "RSS held, KiB",
            "per connection, KiB",
            "fresh session meanwhile, ms",
        ],
    );
    t.note = format!(
        "{} connections, 30 from each of {} addresses in 127.1.0.0/16, each reads its greeting \
         and stays silent. Targets: ≤ 16 KiB per connection, a fresh session in < 1 s.",
        plan.idle,
        plan.idle.div_ceil(30)
    );
    for r in Runtime::ALL {
        let server = world.pop3d(r, &["--max-connections-per-address", "32"])?;
        let (before, _) = sys::rss_kib(server.pid);
        let mut held = Vec::with_capacity(plan.idle);
        for k in 0..plan.idle {
            let n = (k / 30) as u32 + 256;
            let source = Ipv4Addr::new(127, 1, (n >> 8) as u8, n as u8);
            held.push(
                wire::idle_connection(source, server.plain)
                    .map_err(|e| format!("pop3d ({}), idle connection {k}: {e}", r.name()))?,
            );
        }
        let (after, _) = sys::rss_kib(server.pid);
        let t0 = Instant::now();
        wire::session(server.plain, "u0").map_err(|e| format!("fresh session: {e}"))?;
        let fresh_ms = t0.elapsed().as_secs_f64() * 1000.0;
        let per = after.saturating_sub(before) as f64 / plan.idle as f64;
        t.row(vec![
            format!("pop3d ({})", r.name()),
            plan.idle.to_string(),
            before.to_string(),
            after.to_string(),
            format!("{per:.1} {}", mark(per <= 16.0)),
            format!("{fresh_ms:.1} {}", mark(fresh_ms < 1000.0)),
        ]);
        drop(held);
    }
    Ok(t)
}

/// Scenario 4: one large message through each runtime's server and
/// client; both processes' peak memory and the throughput.
fn large_message(plan: &Plan, world: &World) -> Result<Table, Error> {
    let bytes = plan.large_mib << 20;
    eprintln!("e2e: one message of {} MiB", plan.large_mib);
    let big = world.ours_root.join("big");
    let (file, wire_octets) = peers::deliver_large(&big, bytes)?;
    let gb = wire_octets as f64 / 1e9;
    let runs = plan.runs.min(3);
    let sendfile = SendfileServer::new(vec![file.clone()])?;
    let mut limit = Samples::default();
    for _ in 0..runs {
        let serving = sendfile.serve_one()?;
        let t0 = Instant::now();
        wire::retrieve_all(sendfile.addr, None, "big", 1, bytes)
            .map_err(|e| format!("sendfile: {e}"))?;
        limit.push(t0.elapsed().as_secs_f64());
        serving.join().map_err(|_| "sendfile server panicked")??;
    }
    let mut t = Table::new(
        format!("One {} MiB message", plan.large_mib),
        &[
            "server → client",
            "wall s, median (min–max)",
            "GB/s",
            "×sendfile wall",
            "server peak RSS, MiB",
            "client peak RSS, MiB",
            "client CPU s",
        ],
    );
    t.note = format!(
        "Each runtime's `fetch` retrieves the message from the same runtime's `pop3d` (plain, \
         into a Maildir on tmpfs). The sendfile limit for the same file: {} s. Target: each \
         process's peak RSS < 16 MiB.",
        limit.spread(2)
    );
    for r in Runtime::ALL {
        let (mut wall, mut cpu) = (Samples::default(), Samples::default());
        let (mut server_peak, mut client_peak) = (0u64, 0u64);
        for run in 0..runs {
            // A fresh server each run: its peak is this message's alone.
            let server = world.pop3d(r, &[])?;
            let out = world
                .dirs
                .tmp()
                .join(format!("large-out-{}-{run}", r.name()));
            let mut c = std::process::Command::new(r.fetch()?);
            c.arg(format!("pop://big@127.0.0.1:{}", server.plain.port()))
                .arg("--maildir")
                .arg(&out)
                .args(["--auth", "USER", "--insecure-cleartext-login"])
                .env("POP3_PASSWORD", peers::PASSWORD);
            let log = world.dirs.tmp().join("large-fetch.log");
            let (w, usage) = sys::run_measured(c, &format!("fetch ({})", r.name()), &log)?;
            let (_, hwm) = sys::rss_kib(server.pid);
            wall.push(w);
            cpu.push(usage.cpu);
            server_peak = server_peak.max(hwm);
            client_peak = client_peak.max(usage.max_rss_kib);
            let stored: u64 = std::fs::read_dir(out.join("new"))?
                .flatten()
                .map(|e| e.metadata().map_or(0, |m| m.len()))
                .sum();
            if stored != bytes {
                return Err(
                    format!("fetch ({}) stored {stored} of {bytes} octets", r.name()).into(),
                );
            }
            std::fs::remove_dir_all(&out)?;
        }
        let w = wall.median();
        let (smib, cmib) = (server_peak as f64 / 1024.0, client_peak as f64 / 1024.0);
        t.row(vec![
            format!("{0} → {0}", r.name()),
            wall.spread(2),
            format!("{:.2}", gb / w),
            ratio(w, limit.median()),
            format!("{smib:.1} {}", mark(smib < 16.0)),
            format!("{cmib:.1} {}", mark(cmib < 16.0)),
            cpu.spread(2),
        ]);
    }
    std::fs::remove_file(&file)?;
    Ok(t)
}

/// Scenario 5: the whole maildrop from Dovecot by every client, plain and
/// STLS, into tmpfs and onto disk.
fn clients(plan: &Plan, world: &World) -> Result<Vec<Table>, Error> {
    eprintln!("e2e: clients");
    let contenders: Vec<Client> = Runtime::ALL
        .into_iter()
        .map(Client::Fetch)
        .chain([Client::Mpop, Client::Curl, Client::Poplib])
        .filter(|c| c.available())
        .collect();
    let count = world.maildrop.files.len();
    let mut tables = Vec::new();
    for (place, root) in [
        ("tmpfs", world.dirs.tmp()),
        ("disk", world.dirs.disk.path()),
    ] {
        for link in [Link::Plain, Link::Stls] {
            // STLS upgrades the plain port.
            let server = world.dovecot.plain;
            let mut wall = vec![Samples::default(); contenders.len()];
            let mut cpu = vec![Samples::default(); contenders.len()];
            // On disk every message costs a real sync: fewer runs there.
            let runs = if place == "disk" {
                plan.runs.min(3)
            } else {
                plan.runs
            };
            for round in 0..=runs {
                for (i, &c) in contenders.iter().enumerate() {
                    let out = root.join(format!("client-out-{i}"));
                    let _ = std::fs::remove_dir_all(&out);
                    let scratch = world.dirs.tmp().join("scratch");
                    std::fs::create_dir_all(&scratch)?;
                    let f = Fetching {
                        server,
                        tls_server: world.dovecot.tls,
                        link,
                        ca: &world.dovecot.ca,
                        user: "alice",
                        count,
                        out: &out,
                        log: &scratch.join("client.log"),
                        scratch: &scratch,
                        fresh: true,
                    };
                    let (w, u) = peers::fetch_once(c, &f)?;
                    if round > 0 {
                        wall[i].push(w);
                        cpu[i].push(u);
                    }
                    std::fs::remove_dir_all(&out)?;
                }
            }
            let mut t = Table::new(
                format!("Clients from Dovecot, {}, output on {place}", link.name()),
                &[
                    "client",
                    "wall s, median (min–max)",
                    "CPU s, median (min–max)",
                    "MB/s",
                    "wall ×mpop",
                    "CPU ×mpop",
                ],
            );
            t.note = format!(
                "One process and one connection fetch all {count} messages ({:.1} MB) into a \
                 fresh directory, each message synced before the next (curl's files are synced \
                 after it, the time counted). Targets for `fetch`: CPU ≤ 0.5× mpop's, wall ≤ mpop's.",
                world.maildrop.wire_octets as f64 / 1e6
            );
            let m = contenders.iter().position(|c| *c == Client::Mpop);
            let (mw, mc) = m.map_or((f64::NAN, f64::NAN), |m| {
                (wall[m].median(), cpu[m].median())
            });
            for (i, c) in contenders.iter().enumerate() {
                let (w, u) = (wall[i].median(), cpu[i].median());
                let ours = matches!(c, Client::Fetch(_));
                let target = |cell: String, met: bool| {
                    if ours {
                        format!("{cell} {}", mark(met))
                    } else {
                        cell
                    }
                };
                t.row(vec![
                    c.name(),
                    wall[i].spread(3),
                    cpu[i].spread(3),
                    format!("{:.1}", world.maildrop.wire_octets as f64 / 1e6 / w),
                    target(ratio(w, mw), w <= mw),
                    target(ratio(u, mc), u <= 0.5 * mc),
                ]);
            }
            tables.push(t);
        }
    }
    Ok(tables)
}
