//! Polling accounts again and again (`fetch --daemon`, feature `config`):
//! when each account is due, and what a poll's outcome changes.
//!
//! [`Schedule`] is the whole policy, without threads or clocks of its own:
//! the caller tells it the time, starts the sessions it hands out and
//! reports how each ended. The `fetch` programs of every runtime run it
//! (one loop, in this crate's `cli` module); tests drive it with made-up
//! instants.
//!
//! - Each account has its own next time; at most
//!   [`concurrency`](DaemonSettings::concurrency) sessions run at once,
//!   the account due longest first.
//! - After a poll that worked (also one that left messages on the server
//!   for a reason a rerun does not change), the next is an
//!   [`interval`](DaemonSettings::interval) later, but never sooner than
//!   the `LOGIN-DELAY` the server announced.
//! - After a temporary failure (exit status 75: the network, `[SYS/TEMP]`,
//!   `[IN-USE]`, `[LOGIN-DELAY]`, a lock; also 74, local I/O, such as a
//!   full disk), the account is retried sooner than the interval, then
//!   less and less often: a quarter of the interval, doubling after each
//!   failure in a row, up to [`max_backoff`](DaemonSettings::max_backoff);
//!   never sooner than the `LOGIN-DELAY` last seen.
//! - After a failure a retry does not cure by itself (authentication 77,
//!   configuration 78, an unusable server 69, a protocol violation 76),
//!   the account is kept but retried only every
//!   [`max_backoff`](DaemonSettings::max_backoff): a password changed on
//!   the server, or a server fixed, heals without a restart, and the
//!   server is not hammered with failing logins meanwhile. Rereading the
//!   configuration ([`Schedule::set_accounts`], on SIGHUP) makes such an
//!   account due at once, so a fixed file is tried straight away.
//! - Every delay is spread by up to a tenth either way (jitter, from a
//!   seeded generator), so that accounts started together drift apart.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use pop3_blocking::daemon::{DaemonSettings, Poll, Schedule};
//! use pop3_blocking::fetch::ExitKind;
//!
//! let settings = DaemonSettings::new(Duration::from_secs(300));
//! let mut schedule = Schedule::new(settings, 7);
//! let t0 = Instant::now();
//! schedule.set_accounts(["work".to_string(), "home".to_string()], t0);
//! let due = schedule.take_due(t0);
//! assert_eq!(due.len(), 2);
//! let next = schedule.finished("work", Poll::of(ExitKind::Ok, Some(600)), t0);
//! assert!(next >= Duration::from_secs(600)); // the server's LOGIN-DELAY
//! let next = schedule.finished("home", Poll::of(ExitKind::TempFail, None), t0);
//! assert!(next < Duration::from_secs(300)); // retried sooner
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use crate::fetch::ExitKind;

/// How a daemon polls (`[daemon]` in the configuration file, or
/// `--daemon INTERVAL` and `--concurrency N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DaemonSettings {
    /// The time from the end of one poll of an account to the start of its
    /// next.
    pub interval: Duration,
    /// Sessions at once, over all accounts (at least 1).
    pub concurrency: usize,
    /// The longest wait after failures (default: an hour, or the interval
    /// when that is longer).
    pub max_backoff: Duration,
}

impl DaemonSettings {
    /// Polls every `interval`, four sessions at once, backing off up to an
    /// hour (or the interval when that is longer).
    pub fn new(interval: Duration) -> DaemonSettings {
        DaemonSettings {
            interval,
            concurrency: 4,
            max_backoff: interval.max(Duration::from_secs(3600)),
        }
    }
}

/// How a poll of an account ended, as the schedule sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Poll {
    /// The session ran (even if messages were left on the server for a
    /// reason a rerun does not change); the server's `LOGIN-DELAY` in
    /// seconds, if it announced one.
    Done {
        /// `LOGIN-DELAY`, seconds.
        login_delay: Option<u32>,
    },
    /// A failure that may pass by itself: retried with back-off.
    Temporary,
    /// A failure that needs someone to act (authentication, the
    /// configuration, an unusable server): retried at the back-off's cap.
    Persistent,
}

impl Poll {
    /// A poll's outcome from its exit status and the `LOGIN-DELAY` its
    /// report gave.
    pub fn of(kind: ExitKind, login_delay: Option<u32>) -> Poll {
        match kind {
            ExitKind::Ok | ExitKind::DataErr => Poll::Done { login_delay },
            ExitKind::TempFail | ExitKind::IoErr => Poll::Temporary,
            _ => Poll::Persistent,
        }
    }
}

/// One account's place in the schedule.
#[derive(Debug, Clone)]
struct Slot {
    /// When it is due next (while idle).
    next: Instant,
    /// Failures in a row.
    failures: u32,
    /// A session is running.
    running: bool,
    /// Gone from the configuration: dropped when its session ends.
    removed: bool,
    /// The last poll failed for a reason that needs someone to act.
    stuck: bool,
    /// The `LOGIN-DELAY` last announced.
    login_delay: Option<Duration>,
}

/// When each account is polled next; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Schedule {
    settings: DaemonSettings,
    slots: BTreeMap<String, Slot>,
    rng: u64,
}

impl Schedule {
    /// An empty schedule; `seed` drives the jitter (fixed in tests).
    pub fn new(settings: DaemonSettings, seed: u64) -> Schedule {
        Schedule {
            settings,
            slots: BTreeMap::new(),
            rng: seed,
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> DaemonSettings {
        self.settings
    }

    /// New settings (a reread configuration): they apply from each
    /// account's next poll.
    pub fn set_settings(&mut self, settings: DaemonSettings) {
        self.settings = settings;
    }

    /// The accounts to poll from now on: new ones are due at `now`, those
    /// no longer named stop after their running session (if any), those
    /// stuck on a failure that needs someone to act are due at `now`
    /// (the configuration may be fixed), the others keep their times.
    pub fn set_accounts(&mut self, names: impl IntoIterator<Item = String>, now: Instant) {
        let names: Vec<String> = names.into_iter().collect();
        for (name, slot) in &mut self.slots {
            slot.removed = !names.contains(name);
        }
        self.slots.retain(|_, slot| slot.running || !slot.removed);
        for name in names {
            let slot = self.slots.entry(name).or_insert(Slot {
                next: now,
                failures: 0,
                running: false,
                removed: false,
                stuck: false,
                login_delay: None,
            });
            if slot.stuck {
                slot.stuck = false;
                slot.next = slot.next.min(now);
            }
        }
    }

    /// Whether the account is in the schedule (not removed).
    pub fn contains(&self, name: &str) -> bool {
        self.slots.get(name).is_some_and(|s| !s.removed)
    }

    /// Sessions running.
    pub fn running(&self) -> usize {
        self.slots.values().filter(|s| s.running).count()
    }

    /// The earliest time an idle account is due (`None`: none is idle).
    pub fn next_due(&self) -> Option<Instant> {
        self.slots
            .values()
            .filter(|s| !s.running && !s.removed)
            .map(|s| s.next)
            .min()
    }

    /// The accounts to start now, due longest first, as many as the
    /// concurrency leaves room for; each is marked running until
    /// [`finished`](Schedule::finished).
    pub fn take_due(&mut self, now: Instant) -> Vec<String> {
        let room = self
            .settings
            .concurrency
            .max(1)
            .saturating_sub(self.running());
        let mut due: Vec<(Instant, String)> = self
            .slots
            .iter()
            .filter(|(_, s)| !s.running && !s.removed && s.next <= now)
            .map(|(n, s)| (s.next, n.clone()))
            .collect();
        due.sort();
        due.truncate(room);
        for (_, name) in &due {
            if let Some(slot) = self.slots.get_mut(name) {
                slot.running = true;
            }
        }
        due.into_iter().map(|(_, n)| n).collect()
    }

    /// The account's session ended at `now` with `poll`: answers the wait
    /// until its next poll (an account removed meanwhile is dropped).
    pub fn finished(&mut self, name: &str, poll: Poll, now: Instant) -> Duration {
        let settings = self.settings;
        let jitter = self.jitter();
        let Some(slot) = self.slots.get_mut(name) else {
            return Duration::ZERO;
        };
        slot.running = false;
        let wait = match poll {
            Poll::Done { login_delay } => {
                slot.failures = 0;
                slot.stuck = false;
                slot.login_delay = login_delay.map(|s| Duration::from_secs(u64::from(s)));
                spread(settings.interval, jitter)
            }
            Poll::Temporary => {
                slot.failures = slot.failures.saturating_add(1);
                slot.stuck = false;
                let doublings = slot.failures.saturating_sub(1).min(30);
                let wait = (settings.interval / 4).saturating_mul(1 << doublings);
                spread(wait, jitter).min(settings.max_backoff)
            }
            Poll::Persistent => {
                slot.failures = slot.failures.saturating_add(1);
                slot.stuck = true;
                settings.max_backoff
            }
        };
        let wait = wait.max(slot.login_delay.unwrap_or(Duration::ZERO));
        slot.next = now + wait;
        if slot.removed {
            self.slots.remove(name);
        }
        wait
    }

    /// A factor in [0.9, 1.1], from a splitmix64 generator.
    fn jitter(&mut self) -> f64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let unit = (z >> 11) as f64 / (1u64 << 53) as f64;
        0.9 + 0.2 * unit
    }
}

fn spread(wait: Duration, jitter: f64) -> Duration {
    wait.mul_f64(jitter)
}

/// A duration as written in the configuration and on the command line:
/// a number and a unit, `ms`, `s`, `m`, `h` or `d`, several added up
/// (`1h30m`); a bare number is seconds.
///
/// ```
/// use std::time::Duration;
/// use pop3_blocking::daemon::parse_duration;
/// assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
/// assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
/// assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
/// assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
/// assert!(parse_duration("5 minutes").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let bad = || DurationError(text.to_owned());
    let s = text.trim();
    if s.is_empty() {
        return Err(bad());
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().map(Duration::from_secs).map_err(|_| bad());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86_400)),
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total = total.saturating_add(unit);
    }
    Ok(total)
}

/// A duration that does not parse ([`parse_duration`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationError(String);

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not a duration (a number and a unit: 30s, 5m, 1h, 1h30m, 500ms)",
            self.0
        )
    }
}

impl std::error::Error for DurationError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(concurrency: usize) -> (Schedule, Instant) {
        let mut settings = DaemonSettings::new(Duration::from_secs(400));
        settings.concurrency = concurrency;
        settings.max_backoff = Duration::from_secs(3600);
        (Schedule::new(settings, 42), Instant::now())
    }

    #[test]
    fn at_most_concurrency_sessions_run_and_the_longest_due_goes_first() {
        let (mut s, t0) = schedule(2);
        s.set_accounts(["a", "b", "c"].map(String::from), t0);
        assert_eq!(s.take_due(t0), ["a", "b"]);
        assert!(s.take_due(t0).is_empty());
        s.finished("a", Poll::of(ExitKind::Ok, None), t0);
        assert_eq!(s.take_due(t0), ["c"]);
    }

    #[test]
    fn a_poll_that_worked_waits_the_interval_but_at_least_the_login_delay() {
        let (mut s, t0) = schedule(4);
        s.set_accounts(["a".to_string()], t0);
        s.take_due(t0);
        let wait = s.finished("a", Poll::of(ExitKind::Ok, None), t0);
        assert!(wait >= Duration::from_secs(360) && wait <= Duration::from_secs(440));
        assert!(s.take_due(t0 + Duration::from_secs(300)).is_empty());
        s.take_due(t0 + wait);
        let wait = s.finished("a", Poll::of(ExitKind::Ok, Some(900)), t0);
        assert_eq!(wait, Duration::from_secs(900));
        // A temporary failure backs off, but not below the delay last seen.
        s.take_due(t0 + wait);
        let wait = s.finished("a", Poll::of(ExitKind::TempFail, None), t0);
        assert_eq!(wait, Duration::from_secs(900));
    }

    #[test]
    fn temporary_failures_back_off_exponentially_up_to_the_cap() {
        let (mut s, t0) = schedule(4);
        s.set_accounts(["a".to_string()], t0);
        let mut waits = Vec::new();
        let mut now = t0;
        for _ in 0..8 {
            assert_eq!(s.take_due(now), ["a"]);
            let wait = s.finished("a", Poll::of(ExitKind::TempFail, None), now);
            waits.push(wait);
            now += wait;
        }
        assert!(waits[0] < Duration::from_secs(400), "{waits:?}");
        assert!(waits.windows(2).take(4).all(|w| w[0] < w[1]), "{waits:?}");
        assert!(
            waits.iter().all(|w| *w <= Duration::from_secs(3600)),
            "{waits:?}"
        );
        assert_eq!(waits[7], Duration::from_secs(3600));
        // A success resets the back-off.
        s.take_due(now);
        let wait = s.finished("a", Poll::of(ExitKind::Ok, None), now);
        now += wait;
        s.take_due(now);
        assert!(s.finished("a", Poll::of(ExitKind::TempFail, None), now) < waits[1]);
    }

    #[test]
    fn an_authentication_failure_waits_the_cap_until_the_configuration_is_reread() {
        let (mut s, t0) = schedule(4);
        s.set_accounts(["a".to_string()], t0);
        s.take_due(t0);
        let wait = s.finished("a", Poll::of(ExitKind::NoPerm, None), t0);
        assert_eq!(wait, Duration::from_secs(3600));
        assert_eq!(s.next_due(), Some(t0 + wait));
        let later = t0 + Duration::from_secs(10);
        s.set_accounts(["a".to_string()], later);
        assert_eq!(s.take_due(later), ["a"]);
    }

    #[test]
    fn a_removed_account_stops_after_its_session_and_an_added_one_is_due_at_once() {
        let (mut s, t0) = schedule(4);
        s.set_accounts(["a".to_string()], t0);
        assert_eq!(s.take_due(t0), ["a"]);
        s.set_accounts(["b".to_string()], t0);
        assert!(!s.contains("a"));
        assert_eq!(s.take_due(t0), ["b"]);
        assert_eq!(s.running(), 2);
        s.finished("a", Poll::of(ExitKind::Ok, None), t0);
        assert_eq!(s.running(), 1);
        assert!(s.take_due(t0 + Duration::from_secs(10_000)).is_empty());
    }

    #[test]
    fn the_same_seed_gives_the_same_jitter() {
        let run = || {
            let (mut s, t0) = schedule(4);
            s.set_accounts(["a".to_string()], t0);
            s.take_due(t0);
            s.finished("a", Poll::of(ExitKind::Ok, None), t0)
        };
        assert_eq!(run(), run());
    }
}
