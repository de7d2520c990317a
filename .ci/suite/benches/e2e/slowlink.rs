//! The clients on a shaped link (delay, rate, a cut mid-transfer) and on a
//! fast link with a maildrop shaped like real mail.

use std::path::Path;
use std::time::Duration;

use crate::peers::{self, Client, Fetching, Link, Runtime};
use crate::report::{Samples, Table, mark, ratio};
use crate::scenarios::World;
use crate::shaper::{Counts, Proxy, Shape};
use crate::{Error, Plan};

/// Round trips before the first octet of the first message, for a client
/// that asks the least over STLS: the TCP handshake and the greeting
/// (2: the server accepts, and greets, on the client's ACK), CAPA (1),
/// STLS (1), the TLS 1.3 handshake (1), USER and PASS pipelined (1), UIDL
/// (1), then every RETR pipelined (1).
pub const FLOOR_ROUND_TRIPS: u32 = 8;

/// Every client of the slow link, in the order they run.
fn contenders() -> Result<Vec<Client>, Error> {
    let all: Vec<Client> = Runtime::ALL
        .into_iter()
        .map(Client::Fetch)
        .chain([
            Client::Mpop,
            Client::Fetchmail,
            Client::Getmail,
            Client::Poplib,
        ])
        .collect();
    for c in &all {
        if !c.available() {
            return Err(format!(
                "{} is missing: apt-get install -y mpop fetchmail getmail6 python3",
                c.name()
            )
            .into());
        }
    }
    Ok(all)
}

/// Runs `client` through the proxy (to Dovecot's STLS port, or its
/// implicit-TLS port for getmail6) into `out`, fetching the slow-link
/// maildrop.
fn through(
    world: &World,
    proxy: &mut Option<Proxy>,
    shape: Shape,
    client: Client,
    out: &Path,
    fresh: bool,
    check: bool,
) -> Result<(peers::Run, Counts), Error> {
    let count = world
        .slow
        .as_ref()
        .ok_or("no slow-link maildrop")?
        .files
        .len();
    let upstream = if client == Client::Getmail {
        world.dovecot.tls
    } else {
        world.dovecot.plain
    };
    // One proxy, one address, for every run: a client keys what it stored
    // by the server's address.
    let p = match proxy.take() {
        Some(p) => {
            p.set_route(upstream, shape);
            p
        }
        None => Proxy::start(upstream, shape)?,
    };
    p.take_counts();
    let scratch = world.dirs.tmp().join("slow-scratch");
    std::fs::create_dir_all(&scratch)?;
    let f = Fetching {
        server: p.addr,
        tls_server: p.addr,
        link: Link::Stls,
        ca: &world.dovecot.ca,
        user: "slow",
        count,
        out,
        log: &scratch.join("client.log"),
        scratch: &scratch,
        fresh,
    };
    let run = peers::fetch_run(client, &f, check)?;
    // The proxy's threads see the last close a moment after the client.
    std::thread::sleep(Duration::from_millis(20) + shape.rtt);
    let counts = p.take_counts();
    *proxy = Some(p);
    Ok((run, counts))
}

/// The slow-link tables: each RTT, then the cut and the rerun.
pub fn run(plan: &Plan, world: &World) -> Result<Vec<Table>, Error> {
    let drop = world.slow.as_ref().ok_or("no slow-link maildrop")?;
    let contenders = contenders()?;
    let count = drop.files.len();
    let octets = drop.wire_octets;
    let bits = plan.mbit * 1e6;
    let mut tables = Vec::new();
    let mut proxy = None;
    let runs = plan.runs.min(3);
    for &rtt_ms in &plan.rtt_ms {
        let shape = Shape {
            rtt: Duration::from_millis(rtt_ms),
            bits_per_second: bits,
            cut_after: None,
        };
        let floor = shape.rtt.as_secs_f64() * f64::from(FLOOR_ROUND_TRIPS)
            + shape.transfer(octets).as_secs_f64();
        eprintln!(
            "e2e: slow link, {rtt_ms} ms RTT, {} Mbit/s: floor {floor:.2} s",
            plan.mbit
        );
        let mut wall = vec![Samples::default(); contenders.len()];
        let mut cpu = vec![Samples::default(); contenders.len()];
        let mut counts = vec![Counts::default(); contenders.len()];
        for _round in 0..runs {
            for (i, &c) in contenders.iter().enumerate() {
                let out = world.dirs.tmp().join(format!("slow-out-{i}"));
                let _ = std::fs::remove_dir_all(&out);
                // A peer that fails on a busy machine (getmail6's delivery
                // child has a timeout of its own) gets a second try.
                let (r, n) = match through(world, &mut proxy, shape, c, &out, true, true) {
                    Err(e) if !matches!(c, Client::Fetch(_)) => {
                        eprintln!("e2e:   {}: {e}; once more", c.name());
                        let _ = std::fs::remove_dir_all(&out);
                        through(world, &mut proxy, shape, c, &out, true, true)?
                    }
                    other => other?,
                };
                eprintln!(
                    "e2e:   {}: {:.2} s ({:.2}× the floor), {} turns",
                    c.name(),
                    r.wall,
                    r.wall / floor,
                    n.turns
                );
                wall[i].push(r.wall);
                cpu[i].push(r.cpu);
                counts[i] = n;
                std::fs::remove_dir_all(&out)?;
            }
        }
        let mut t = Table::new(
            format!(
                "Slow link: {rtt_ms} ms round trip, {} Mbit/s, STLS, from Dovecot",
                plan.mbit
            ),
            &[
                "client",
                "wall s, median (min–max)",
                "×floor",
                "client turns",
                "octets down",
                "CPU s, median",
            ],
        );
        t.note = format!(
            "{count} messages, {:.2} MB on the wire (the log-normal maildrop). The floor, \
             {floor:.2} s, is {FLOOR_ROUND_TRIPS} round trips (TCP handshake and greeting 2, \
             CAPA, STLS, the TLS 1.3 handshake, USER+PASS pipelined, UIDL, the pipelined RETRs \
             1 each) plus the messages' octets at the rate ({:.2} s). Client turns: the \
             client's writes that followed something it was sent (round trips it waited \
             for, the handshake and greeting not counted). getmail6 has no STLS: it takes \
             implicit TLS, two round trips fewer. Targets for `fetch`: within 1.2× the floor \
             and below every peer.",
            octets as f64 / 1e6,
            shape.transfer(octets).as_secs_f64()
        );
        let best_peer = contenders
            .iter()
            .enumerate()
            .filter(|(_, c)| !matches!(c, Client::Fetch(_)))
            .map(|(i, _)| wall[i].median())
            .fold(f64::INFINITY, f64::min);
        for (i, c) in contenders.iter().enumerate() {
            let w = wall[i].median();
            let ours = matches!(c, Client::Fetch(_));
            t.row(vec![
                if ours {
                    format!("{} {}", c.name(), mark(w < best_peer))
                } else {
                    c.name()
                },
                wall[i].spread(2),
                if ours {
                    format!("{} {}", ratio(w, floor), mark(w / floor <= 1.2))
                } else {
                    ratio(w, floor)
                },
                counts[i].turns.to_string(),
                counts[i].down.to_string(),
                format!("{:.3}", cpu[i].median()),
            ]);
        }
        eprintln!("\n{}", t.markdown());
        tables.push(t);
    }
    // The cut: the link closes halfway through the octets; then a rerun on
    // a whole link.
    let rtt_ms = plan.rtt_ms[0];
    let cut_at = octets / 2;
    let shape = Shape {
        rtt: Duration::from_millis(rtt_ms),
        bits_per_second: bits,
        cut_after: Some(cut_at),
    };
    let whole = Shape {
        cut_after: None,
        ..shape
    };
    eprintln!("e2e: slow link cut after {cut_at} octets, then a rerun");
    let mut t = Table::new(
        format!(
            "Slow link cut mid-transfer, then a rerun: {rtt_ms} ms, {} Mbit/s, STLS",
            plan.mbit
        ),
        &[
            "client",
            "stored when cut",
            "rerun stored",
            "missing",
            "total after",
            "rerun octets down",
            "rerun s",
            "only the missing ones",
        ],
    );
    t.note = format!(
        "The proxy closes both sides once {cut_at} octets (half the maildrop's) went down; \
         the same client then reruns into the same place with its state kept. The rerun \
         should store exactly the messages missing, none twice. Clients that keep no \
         state between runs in this harness (poplib, fetchmail's BSMTP file) are left out."
    );
    let cut_clients: Vec<Client> = Runtime::ALL
        .into_iter()
        .map(Client::Fetch)
        .chain([Client::Mpop, Client::Getmail])
        .collect();
    for (i, &c) in cut_clients.iter().enumerate() {
        let out = world.dirs.tmp().join(format!("cut-out-{i}"));
        let _ = std::fs::remove_dir_all(&out);
        let (first, n1) = through(world, &mut proxy, shape, c, &out, true, false)?;
        if n1.cuts == 0 {
            return Err(format!("{}: the link was never cut", c.name()).into());
        }
        let before = first.stored;
        let (second, n2) = through(world, &mut proxy, whole, c, &out, false, false)?;
        let after = second.stored;
        let fetched = after.saturating_sub(before);
        let missing = count - before;
        let good = second.ok && after == count && fetched == missing;
        eprintln!(
            "e2e:   {}: {before} stored when cut, the rerun stored {fetched} of {missing} \
             missing ({} octets down), {after} in all",
            c.name(),
            n2.down
        );
        t.row(vec![
            c.name(),
            before.to_string(),
            fetched.to_string(),
            missing.to_string(),
            after.to_string(),
            n2.down.to_string(),
            format!("{:.2}", second.wall),
            mark(good).to_owned(),
        ]);
        std::fs::remove_dir_all(&out)?;
    }
    tables.push(t);
    Ok(tables)
}

/// The fast link with the log-normal maildrop over STLS: every runtime's
/// `fetch` against mpop, wall and CPU.
pub fn mixed(plan: &Plan, world: &World) -> Result<Table, Error> {
    let drop = world.mixed.as_ref().ok_or("no log-normal maildrop")?;
    eprintln!("e2e: clients on the log-normal maildrop");
    let contenders: Vec<Client> = Runtime::ALL
        .into_iter()
        .map(Client::Fetch)
        .chain([Client::Mpop])
        .collect();
    let count = drop.files.len();
    let mut wall = vec![Samples::default(); contenders.len()];
    let mut cpu = vec![Samples::default(); contenders.len()];
    let scratch = world.dirs.tmp().join("mixed-scratch");
    std::fs::create_dir_all(&scratch)?;
    for round in 0..=plan.runs {
        for (i, &c) in contenders.iter().enumerate() {
            let out = world.dirs.tmp().join(format!("mixed-out-{i}"));
            let _ = std::fs::remove_dir_all(&out);
            let f = Fetching {
                server: world.dovecot.plain,
                tls_server: world.dovecot.tls,
                link: Link::Stls,
                ca: &world.dovecot.ca,
                user: "mixed",
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
        "Clients from Dovecot, log-normal maildrop, STLS, output on tmpfs",
        &[
            "client",
            "wall s, median (min–max)",
            "CPU s, median (min–max)",
            "ms per message",
            "wall ×mpop",
            "CPU ×mpop",
        ],
    );
    t.note = format!(
        "{count} messages, {:.1} MB on the wire: sizes log-normal (median {} kB, σ = {} of the \
         natural logarithm, fixed seed), one of 1–5 MB every {}th. One process and one \
         connection fetch them all into a fresh Maildir, each message synced before the \
         next. Targets for `fetch`: wall ≤ mpop's, CPU ≤ 0.5× mpop's.",
        drop.wire_octets as f64 / 1e6,
        peers::LOGNORMAL_MEDIAN / 1000.0,
        peers::LOGNORMAL_SIGMA,
        peers::LOGNORMAL_LARGE_EVERY,
    );
    let m = contenders.len() - 1;
    let (mw, mc) = (wall[m].median(), cpu[m].median());
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
            format!("{:.3}", w * 1000.0 / count as f64),
            target(ratio(w, mw), w <= mw),
            target(ratio(u, mc), u <= 0.5 * mc),
        ]);
    }
    Ok(t)
}
