//! `fetch --daemon`: the one polling loop of every runtime's `fetch`. The
//! policy (when each account is due) is [`crate::daemon::Schedule`]'s;
//! this runs it: a thread per session (at most the concurrency), the
//! signals, the configuration reread on SIGHUP, one line per poll.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use pop3_proto::fetch::StopSignal;

use super::{FetchArgs, FetchOne, Outcome, chain};
use crate::config::{Account, ConfigError, DaemonOptions};
use crate::daemon::{DaemonSettings, Poll, Schedule, parse_duration};
use crate::fetch::ExitKind;

/// What the loop waits for.
enum Event {
    /// SIGTERM or SIGINT (the first).
    Stop,
    /// SIGHUP.
    Reload,
    /// A session ended.
    Done {
        name: String,
        outcome: Box<Outcome>,
        secs: f64,
    },
}

impl FetchArgs {
    /// The daemon's settings: the command line's over the file's.
    fn daemon_settings(&self, file: &DaemonOptions) -> Result<DaemonSettings, ConfigError> {
        let given = self.daemon.as_deref().filter(|s| !s.is_empty());
        let interval = match given {
            Some(text) => parse_duration(text).map_err(|e| ConfigError {
                file: None,
                line: None,
                key: Some("--daemon".into()),
                message: e.to_string(),
            })?,
            None => file.interval.ok_or_else(|| ConfigError {
                file: None,
                line: None,
                key: Some("--daemon".into()),
                message: "no INTERVAL, and no `[daemon] interval` in a configuration file".into(),
            })?,
        };
        let mut settings = DaemonSettings::new(interval);
        if let Some(n) = self.concurrency.map(usize::from).or(file.concurrency) {
            settings.concurrency = n;
        }
        if let Some(cap) = file.max_backoff {
            settings.max_backoff = cap;
        }
        Ok(settings)
    }

    /// Polls the accounts until SIGTERM or SIGINT; see [`crate::daemon`].
    pub(super) fn run_daemon(&self, program: &str, fetch: &FetchOne<'_>) -> ExitKind {
        let (accounts, file) = match self.load() {
            Ok(loaded) => loaded,
            Err(e) => {
                eprintln!("{program}: {}", chain(&e));
                return ExitKind::Config;
            }
        };
        let settings = match self.daemon_settings(&file) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{program}: {}", chain(&e));
                return ExitKind::Config;
            }
        };
        let _logs = match self.install_logs(program) {
            Ok(guard) => guard,
            Err(kind) => return kind,
        };
        let (events, inbox) = mpsc::channel();
        if let Err(e) = handle_signals(program, events.clone()) {
            eprintln!("{program}: cannot handle signals: {e}");
            return ExitKind::IoErr;
        }
        let mut schedule = Schedule::new(settings, seed());
        let mut accounts: BTreeMap<String, Account> =
            accounts.into_iter().map(|a| (a.name.clone(), a)).collect();
        schedule.set_accounts(accounts.keys().cloned(), Instant::now());
        eprintln!(
            "{program}: daemon: {} account{}, polled every {}, {} at once",
            accounts.len(),
            if accounts.len() == 1 { "" } else { "s" },
            secs(settings.interval),
            settings.concurrency
        );
        let stop = StopSignal::new();
        // The accounts whose fetch ran once: `--import-seen` is done until
        // then (a failed import fails the poll before the fetch).
        let mut imported = std::collections::HashSet::new();
        let dispatch = tracing::dispatcher::get_default(|d| d.clone());
        std::thread::scope(|scope| {
            let mut stopping = false;
            loop {
                let now = Instant::now();
                if !stopping {
                    for name in schedule.take_due(now) {
                        let Some(account) = accounts.get(&name) else {
                            continue;
                        };
                        let mut account = account.clone();
                        account.settings.policy.stop = Some(stop.clone());
                        let events = events.clone();
                        let dispatch = dispatch.clone();
                        let who = format!("{program}: {name}: ");
                        let import = !imported.contains(&name);
                        scope.spawn(move || {
                            let _logs = tracing::dispatcher::set_default(&dispatch);
                            let started = Instant::now();
                            let outcome = self.run_account(&who, &account, fetch, true, import);
                            let _ = events.send(Event::Done {
                                name,
                                outcome: Box::new(outcome),
                                secs: started.elapsed().as_secs_f64(),
                            });
                        });
                    }
                }
                if stopping && schedule.running() == 0 {
                    break;
                }
                let event = match schedule.next_due().filter(|_| !stopping) {
                    Some(due) => match inbox.recv_timeout(due.saturating_duration_since(now)) {
                        Ok(event) => event,
                        Err(mpsc::RecvTimeoutError::Timeout) => continue,
                        Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    },
                    None => match inbox.recv() {
                        Ok(event) => event,
                        Err(_) => break,
                    },
                };
                match event {
                    Event::Stop => {
                        if !stopping {
                            stopping = true;
                            stop.stop();
                            eprintln!(
                                "{program}: stopping: no new polls; {} running sessions store the message in flight and end",
                                schedule.running()
                            );
                        }
                    }
                    Event::Reload => self.reload(program, &mut schedule, &mut accounts, stopping),
                    Event::Done {
                        name,
                        outcome,
                        secs,
                    } => {
                        if outcome.report.is_some() {
                            imported.insert(name.clone());
                        }
                        let login_delay = outcome.report.as_ref().and_then(|r| r.login_delay);
                        let wait = schedule.finished(
                            &name,
                            Poll::of(outcome.kind, login_delay),
                            Instant::now(),
                        );
                        let who = format!("{program}: {name}: ");
                        let next = if stopping {
                            String::new()
                        } else if !schedule.contains(&name) {
                            "; removed from the configuration: no more polls".to_owned()
                        } else {
                            format!("; next poll in {}", secs_exact(wait))
                        };
                        eprintln!("{who}{}{next}", describe(&outcome, secs));
                        if self.json {
                            if let Some(account) = accounts.get(&name) {
                                println!("{}", outcome.json(account));
                            }
                        }
                    }
                }
            }
        });
        eprintln!("{program}: stopped");
        ExitKind::Ok
    }

    /// SIGHUP: the configuration file again; a bad one keeps the one in
    /// force.
    fn reload(
        &self,
        program: &str,
        schedule: &mut Schedule,
        accounts: &mut BTreeMap<String, Account>,
        stopping: bool,
    ) {
        if self.url.is_some() {
            eprintln!(
                "{program}: SIGHUP: no configuration file to reread (the account is the command line's)"
            );
            return;
        }
        let loaded = self
            .load()
            .and_then(|(new, file)| Ok((new, self.daemon_settings(&file)?)));
        match loaded {
            Err(e) => eprintln!(
                "{program}: reload failed, the configuration in force stays: {}",
                chain(&e)
            ),
            Ok((new, settings)) => {
                let before: Vec<String> = accounts.keys().cloned().collect();
                *accounts = new.into_iter().map(|a| (a.name.clone(), a)).collect();
                let added: Vec<&String> = accounts.keys().filter(|n| !before.contains(n)).collect();
                let removed: Vec<&String> = before
                    .iter()
                    .filter(|n| !accounts.contains_key(*n))
                    .collect();
                eprintln!(
                    "{program}: reloaded the configuration: {} accounts (added: {}; removed: {}), every {}, {} at once",
                    accounts.len(),
                    list(&added),
                    list(&removed),
                    secs(settings.interval),
                    settings.concurrency
                );
                schedule.set_settings(settings);
                if !stopping {
                    schedule.set_accounts(accounts.keys().cloned(), Instant::now());
                }
            }
        }
    }
}

fn list(names: &[&String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names
            .iter()
            .map(|n| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The poll's line, before its next time.
fn describe(outcome: &Outcome, secs: f64) -> String {
    match (&outcome.report, &outcome.error) {
        (Some(r), _) => {
            let mut line = format!(
                "{} ({}): {} new ({:.1} MB in {:.1} s), {} already stored, {} deleted",
                if r.interrupted { "stopped" } else { "ok" },
                outcome.kind.code(),
                r.saved,
                r.bytes as f64 / 1e6,
                secs,
                r.already_stored,
                r.deleted
            );
            if r.deferred > 0 {
                line.push_str(&format!(", {} left for a later poll", r.deferred));
            }
            if let Some(delay) = r.login_delay {
                line.push_str(&format!(", server LOGIN-DELAY {delay} s"));
            }
            line
        }
        (None, error) => {
            let what = match Poll::of(outcome.kind, None) {
                Poll::Temporary => "temporary failure, backing off",
                _ => {
                    "failed, needs attention (retried at the back-off's cap, or at once on SIGHUP)"
                }
            };
            format!(
                "{what} ({}): {}",
                outcome.kind.code(),
                error.as_deref().unwrap_or("")
            )
        }
    }
}

fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 && s.fract() == 0.0 {
        format!("{s} s")
    } else {
        format!("{s:.3} s")
    }
}

fn secs_exact(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

/// A seed for the jitter: the process's random hash keys.
fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish()
}

/// SIGTERM, SIGINT and SIGHUP become events on a thread of their own; a
/// second SIGTERM or SIGINT exits at once (status 1).
fn handle_signals(program: &str, events: mpsc::Sender<Event>) -> std::io::Result<()> {
    let program = program.to_owned();
    #[cfg(unix)]
    {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                let mut stopping = false;
                for signal in signals.forever() {
                    if signal == SIGHUP {
                        let _ = events.send(Event::Reload);
                    } else if stopping {
                        eprintln!("{program}: asked again to stop: exiting now");
                        std::process::exit(1);
                    } else {
                        stopping = true;
                        let _ = events.send(Event::Stop);
                    }
                }
            })?;
    }
    #[cfg(not(unix))]
    {
        let stopping = std::sync::atomic::AtomicBool::new(false);
        let events = std::sync::Mutex::new(events);
        ctrlc::set_handler(move || {
            if stopping.swap(true, std::sync::atomic::Ordering::SeqCst) {
                eprintln!("{program}: asked again to stop: exiting now");
                std::process::exit(1);
            }
            if let Ok(events) = events.lock() {
                let _ = events.send(Event::Stop);
            }
        })
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    }
    Ok(())
}
