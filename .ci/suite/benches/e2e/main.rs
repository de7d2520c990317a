//! End-to-end benchmarks on loopback: this project's servers and clients
//! (every runtime's `pop3d` and `fetch` example, built in release mode)
//! side by side with Dovecot, mpop, fetchmail, getmail6, curl and Python's
//! poplib, and with the sendfile limit of the machine; the clients also over
//! a shaped link (delay, rate, a cut).
//!
//! ```text
//! cargo bench -p pop3-suite --bench e2e                  # every scenario
//! cargo bench -p pop3-suite --bench e2e -- --smoke       # tiny sizes, one run
//! cargo bench -p pop3-suite --bench e2e -- --runs 7 --scenario server --scenario client
//! ```
//!
//! Contenders run in alternation (`run 1` of each, then `run 2` of each, ...)
//! so that a slow phase of the machine hits them all; the tables give the
//! median and the spread (min–max) of wall and CPU time. CPU time is the
//! user + system time of the measured side's processes (a server's whole
//! process group, children included; a client's process from `wait4`).
//! `BENCHMARKS.md` at the top of the repository holds results and how to
//! read them.

mod peers;
mod pg;
#[path = "../../tests/support/pg_cluster.rs"]
mod pg_cluster;
mod report;
mod scenarios;
mod shaper;
mod slowlink;
mod sys;
mod wire;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// The command line.
#[derive(Debug, Parser)]
#[command(
    about = "End-to-end POP3 benchmarks against Dovecot, mpop, fetchmail, getmail6, curl and poplib"
)]
pub struct Args {
    /// Tiny sizes and one run of everything: checks that the harness and
    /// every contender work, measures nothing worth reading.
    #[arg(long)]
    pub smoke: bool,
    /// Runs of each contender (alternating); default 5 (1 with --smoke).
    #[arg(long)]
    pub runs: Option<usize>,
    /// Only these scenarios (repeatable): server, sessions, idle, large,
    /// client, mixed, slowlink, postgres.
    #[arg(long = "scenario", value_name = "NAME")]
    pub scenarios: Vec<String>,
    /// The maildrop's size in MB for the server and client scenarios
    /// (default 105; 1 with --smoke).
    #[arg(long, value_name = "MB")]
    pub mb: Option<u64>,
    /// The large message's size in MiB (default 2048; 8 with --smoke).
    #[arg(long, value_name = "MIB")]
    pub large_mib: Option<u64>,
    /// Idle connections held in the idle scenario (default 10,000; 200
    /// with --smoke).
    #[arg(long, value_name = "N")]
    pub idle: Option<usize>,
    /// Seconds each session-rate run lasts (default 5; 0.3 with --smoke).
    #[arg(long, value_name = "S")]
    pub session_seconds: Option<f64>,
    /// Messages of the log-normal maildrop of the mixed scenario (default
    /// 1000; 30 with --smoke, without the MB-sized ones).
    #[arg(long, value_name = "N")]
    pub mixed: Option<usize>,
    /// Messages of the log-normal maildrop of the slow-link scenario
    /// (default 50; 8 with --smoke, without the MB-sized ones).
    #[arg(long, value_name = "N")]
    pub slow: Option<usize>,
    /// Round-trip times of the slow link, in ms (repeatable; default 100
    /// and 300; 20 with --smoke).
    #[arg(long = "rtt-ms", value_name = "MS")]
    pub rtt_ms: Vec<u64>,
    /// The slow link's rate in Mbit/s (default 10).
    #[arg(long, value_name = "MBIT")]
    pub mbit: Option<f64>,
    /// Also write the tables (Markdown) to this file.
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    pub bench: bool,
}

/// Sizes and counts, from the command line.
#[derive(Debug, Clone)]
pub struct Plan {
    pub smoke: bool,
    pub runs: usize,
    pub mb: u64,
    pub large_mib: u64,
    pub idle: usize,
    pub session_seconds: f64,
    pub scenarios: Vec<String>,
    pub mixed: usize,
    pub slow: usize,
    pub rtt_ms: Vec<u64>,
    pub mbit: f64,
}

impl Plan {
    fn from(args: &Args) -> Plan {
        let smoke = args.smoke;
        Plan {
            smoke,
            runs: args.runs.unwrap_or(if smoke { 1 } else { 5 }).max(1),
            mb: args.mb.unwrap_or(if smoke { 1 } else { 105 }),
            large_mib: args.large_mib.unwrap_or(if smoke { 8 } else { 2048 }),
            idle: args.idle.unwrap_or(if smoke { 200 } else { 10_000 }),
            session_seconds: args
                .session_seconds
                .unwrap_or(if smoke { 0.3 } else { 5.0 }),
            scenarios: args.scenarios.clone(),
            mixed: args.mixed.unwrap_or(if smoke { 30 } else { 1000 }),
            slow: args.slow.unwrap_or(if smoke { 8 } else { 50 }),
            rtt_ms: if !args.rtt_ms.is_empty() {
                args.rtt_ms.clone()
            } else if smoke {
                vec![20]
            } else {
                vec![100, 300]
            },
            mbit: args.mbit.unwrap_or(10.0),
        }
    }

    pub fn wants(&self, scenario: &str) -> bool {
        self.scenarios.is_empty() || self.scenarios.iter().any(|s| s == scenario)
    }
}

/// A failure of the harness or of a contender, with what to do about it.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> ExitCode {
    let args = Args::parse();
    let plan = Plan::from(&args);
    for s in &plan.scenarios {
        if !scenarios::NAMES.contains(&s.as_str()) {
            eprintln!(
                "e2e: no scenario {s:?}; the scenarios are {}",
                scenarios::NAMES.join(", ")
            );
            return ExitCode::from(2);
        }
    }
    match scenarios::run_all(&plan) {
        Ok(report) => {
            let text = report.markdown();
            println!("\n{text}");
            if let Some(path) = &args.markdown {
                if let Err(e) = std::fs::write(path, &text) {
                    eprintln!("e2e: writing {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("e2e: {e}");
            ExitCode::FAILURE
        }
    }
}
