//! A server's counters in the Prometheus text exposition format (version
//! 0.0.4), and a small HTTP responder that serves them.
//!
//! One [`Metrics`] is shared (`Arc`) by a server on any runtime (each
//! adapter's `Pop3Server::with_metrics`) and the responder of [`serve`],
//! which runs on a thread of its own and so works under every runtime.
//! Only atomics are touched on the sessions' paths.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `pop3_sessions_open` | gauge | |
//! | `pop3_sessions_total` | counter | `outcome`: `quit`, `peer_closed`, `shutdown`, `timeout`, `limit`, `store_error`, `error` |
//! | `pop3_logins_total` | counter | `mechanism` (`USER`, `APOP`, the SASL name, `other`), `result`: `ok`, `failed` |
//! | `pop3_octets_sent_total` | counter | |
//! | `pop3_store_call_duration_seconds` | histogram | |
//! | `pop3_refusals_total` | counter | `reason`: `full`, `address_full`, `proxy_untrusted`, `proxy_header` |
//! | `pop3_tls_handshakes_total` | counter | `result`: `ok`, `failed` |
//!
//! A session's logins and octets are counted as they happen (a
//! [`SessionMeter`] reads them from the [`SessionSummary`] its log line is
//! made of after each step of the session), so a scrape during a long
//! session sees them.
//!
//! ```
//! use std::sync::Arc;
//! use pop3_blocking::metrics::Metrics;
//!
//! let metrics = Arc::new(Metrics::new());
//! metrics.tls_handshake(true);
//! assert!(metrics.render().contains("pop3_tls_handshakes_total{result=\"ok\"} 1\n"));
//! ```

use std::fmt::Write as _;
use std::io::{self, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::thread;
use std::time::{Duration, Instant};

use pop3_proto::server::{CloseReason, Connection, Refusal, SessionSummary};

use pop3_proto::__tracing as tracing;

/// How a session ended, the `outcome` label.
const OUTCOMES: [&str; 7] = [
    "quit",
    "peer_closed",
    "shutdown",
    "timeout",
    "limit",
    "store_error",
    "error",
];

/// The mechanisms counted under their own name; others count as `other`.
const MECHANISMS: [&str; 12] = [
    "USER",
    "APOP",
    "PLAIN",
    "LOGIN",
    "CRAM-MD5",
    "SCRAM-SHA-1",
    "SCRAM-SHA-256",
    "SCRAM-SHA-256-PLUS",
    "OAUTHBEARER",
    "XOAUTH2",
    "EXTERNAL",
    "other",
];

/// Why a connection was closed before its session began, the `reason`
/// label.
const REASONS: [&str; 4] = ["full", "address_full", "proxy_untrusted", "proxy_header"];

/// The upper bounds of the store call histogram's buckets, in
/// microseconds (0.5 ms to 10 s); `+Inf` follows.
const BUCKETS_US: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];

/// A server's counters (see the [module](self) for the list). Every
/// method takes `&self`: share it in an `Arc`.
#[derive(Debug, Default)]
pub struct Metrics {
    sessions_open: AtomicI64,
    sessions: [AtomicU64; OUTCOMES.len()],
    logins_ok: [AtomicU64; MECHANISMS.len()],
    logins_failed: [AtomicU64; MECHANISMS.len()],
    octets_sent: AtomicU64,
    /// Per bucket (not cumulative), the last one `+Inf`.
    store_buckets: [AtomicU64; BUCKETS_US.len() + 1],
    store_sum_us: AtomicU64,
    refusals: [AtomicU64; REASONS.len()],
    tls_ok: AtomicU64,
    tls_failed: AtomicU64,
}

impl Metrics {
    /// Every counter at zero.
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// A session began (its connection admitted, any implicit TLS
    /// handshake done): `pop3_sessions_open` goes up until
    /// [`Metrics::session_ended`].
    pub fn session_started(&self) {
        self.sessions_open.fetch_add(1, Relaxed);
    }

    /// The session of `conn` (begun with [`Metrics::session_started`]) is
    /// over: counts how it ended, its logins and the octets sent.
    pub fn session_ended(&self, conn: &Connection) {
        self.session_summary(conn.machine().summary(), conn.is_shutting_down());
    }

    /// The counting of [`Metrics::session_ended`], from a session's
    /// summary; `shutting_down`: the server was stopping, so a session cut
    /// counts as ended by the shutdown.
    ///
    /// ```
    /// use pop3_blocking::metrics::Metrics;
    /// let metrics = Metrics::new();
    /// metrics.session_started();
    /// metrics.session_summary(&Default::default(), false);
    /// assert!(metrics.render().contains("pop3_sessions_open 0\n"));
    /// ```
    pub fn session_summary(&self, summary: &SessionSummary, shutting_down: bool) {
        self.session_over(&mut Tally::default(), summary, shutting_down);
    }

    /// Counts what `summary` holds past what `tally` says was counted:
    /// logins and octets, as they happen.
    fn session_progress(&self, tally: &mut Tally, summary: &SessionSummary) {
        if let (Some(mech), false) = (summary.login_mechanism, tally.logged_in) {
            bump(&self.logins_ok, &MECHANISMS, mech);
            tally.logged_in = true;
        }
        if summary.failed_logins.len() != tally.failed.len()
            || summary
                .failed_logins
                .iter()
                .zip(&tally.failed)
                .any(|(now, then)| now.1 != *then)
        {
            for (i, &(mech, n)) in summary.failed_logins.iter().enumerate() {
                let then = tally.failed.get(i).copied().unwrap_or(0);
                let new = u64::from(n.saturating_sub(then));
                self.logins_failed[index(&MECHANISMS, mech)].fetch_add(new, Relaxed);
            }
            tally.failed = summary.failed_logins.iter().map(|&(_, n)| n).collect();
        }
        let octets = summary.bytes_out.saturating_sub(tally.octets);
        if octets > 0 {
            self.octets_sent.fetch_add(octets, Relaxed);
            tally.octets = summary.bytes_out;
        }
    }

    fn session_over(&self, tally: &mut Tally, summary: &SessionSummary, shutting_down: bool) {
        self.session_progress(tally, summary);
        self.sessions_open.fetch_sub(1, Relaxed);
        let outcome = match summary.close_reason {
            Some(CloseReason::Quit) => "quit",
            Some(CloseReason::PeerClosed) if shutting_down => "shutdown",
            Some(CloseReason::PeerClosed) => "peer_closed",
            Some(CloseReason::Autologout | CloseReason::LoginTimeout) => "timeout",
            Some(CloseReason::TooManyBadCommands | CloseReason::TooManyLoginAttempts) => "limit",
            Some(CloseReason::StoreFailure | CloseReason::StoreTimeout) => "store_error",
            _ => "error",
        };
        bump(&self.sessions, &OUTCOMES, outcome);
    }

    /// A store call took `elapsed`.
    pub fn store_call(&self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let bucket = BUCKETS_US
            .iter()
            .position(|&le| us <= le)
            .unwrap_or(BUCKETS_US.len());
        self.store_buckets[bucket].fetch_add(1, Relaxed);
        self.store_sum_us.fetch_add(us, Relaxed);
    }

    /// A connection was refused over a cap of the admission gate.
    pub fn refused(&self, refusal: Refusal) {
        let reason = match refusal {
            Refusal::AddressFull => "address_full",
            _ => "full",
        };
        bump(&self.refusals, &REASONS, reason);
    }

    /// A connection was closed for its PROXY protocol: from an untrusted
    /// source (`untrusted`), or with a missing, malformed or late header.
    pub fn proxy_refused(&self, untrusted: bool) {
        let reason = if untrusted {
            "proxy_untrusted"
        } else {
            "proxy_header"
        };
        bump(&self.refusals, &REASONS, reason);
    }

    /// A TLS handshake (implicit TLS or STLS) succeeded or failed.
    pub fn tls_handshake(&self, ok: bool) {
        if ok { &self.tls_ok } else { &self.tls_failed }.fetch_add(1, Relaxed);
    }

    /// Every metric in the text exposition format, with its `HELP` and
    /// `TYPE` lines.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let o = &mut out;
        head(o, "pop3_sessions_open", "gauge", "Sessions open now.");
        let _ = writeln!(o, "pop3_sessions_open {}", self.sessions_open.load(Relaxed));

        head(
            o,
            "pop3_sessions_total",
            "counter",
            "Sessions ended, by how they ended.",
        );
        for (name, n) in OUTCOMES.iter().zip(&self.sessions) {
            let _ = writeln!(
                o,
                "pop3_sessions_total{{outcome=\"{name}\"}} {}",
                n.load(Relaxed)
            );
        }

        head(
            o,
            "pop3_logins_total",
            "counter",
            "Logins, by mechanism and result.",
        );
        for (result, counts) in [("ok", &self.logins_ok), ("failed", &self.logins_failed)] {
            for (mech, n) in MECHANISMS.iter().zip(counts) {
                let _ = writeln!(
                    o,
                    "pop3_logins_total{{mechanism=\"{mech}\",result=\"{result}\"}} {}",
                    n.load(Relaxed)
                );
            }
        }

        head(
            o,
            "pop3_octets_sent_total",
            "counter",
            "Octets sent to clients.",
        );
        let _ = writeln!(
            o,
            "pop3_octets_sent_total {}",
            self.octets_sent.load(Relaxed)
        );

        let name = "pop3_store_call_duration_seconds";
        head(
            o,
            name,
            "histogram",
            "Time the store took to answer a call.",
        );
        let mut cumulative = 0u64;
        for (i, n) in self.store_buckets.iter().enumerate() {
            cumulative += n.load(Relaxed);
            match BUCKETS_US.get(i) {
                Some(&le) => {
                    let le = le as f64 / 1e6;
                    let _ = writeln!(o, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
                }
                None => {
                    let _ = writeln!(o, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
                }
            }
        }
        let sum = self.store_sum_us.load(Relaxed);
        let _ = writeln!(o, "{name}_sum {}.{:06}", sum / 1_000_000, sum % 1_000_000);
        let _ = writeln!(o, "{name}_count {cumulative}");

        head(
            o,
            "pop3_refusals_total",
            "counter",
            "Connections closed before a session, by reason.",
        );
        for (reason, n) in REASONS.iter().zip(&self.refusals) {
            let _ = writeln!(
                o,
                "pop3_refusals_total{{reason=\"{reason}\"}} {}",
                n.load(Relaxed)
            );
        }

        head(
            o,
            "pop3_tls_handshakes_total",
            "counter",
            "TLS handshakes (implicit TLS and STLS), by result.",
        );
        for (result, n) in [("ok", &self.tls_ok), ("failed", &self.tls_failed)] {
            let _ = writeln!(
                o,
                "pop3_tls_handshakes_total{{result=\"{result}\"}} {}",
                n.load(Relaxed)
            );
        }
        out
    }
}

/// What a session has put in the counters so far.
#[derive(Debug, Default)]
struct Tally {
    logged_in: bool,
    /// The counts of the summary's `failed_logins`, in its order.
    failed: Vec<u32>,
    octets: u64,
}

/// One session's counting, as it goes: begun with
/// [`SessionMeter::start`] (the session is open), told of the session's
/// progress with [`SessionMeter::update`] (its logins, by mechanism and
/// result, and the octets sent so far are counted then, so a scrape during
/// a long session sees them), ended with [`SessionMeter::end`]. Every
/// adapter's session loop calls `update` after each step: it only compares
/// a few numbers of the core's [`SessionSummary`] when nothing changed.
///
/// ```
/// use std::sync::Arc;
/// use pop3_blocking::metrics::{Metrics, SessionMeter};
/// use pop3_proto::server::SessionSummary;
///
/// let metrics = Arc::new(Metrics::new());
/// let mut meter = SessionMeter::start(metrics.clone());
/// let mut summary = SessionSummary::default();
/// summary.login_mechanism = Some("USER");
/// summary.bytes_out = 100;
/// meter.update_from(&summary);
/// let text = metrics.render();
/// assert!(text.contains("pop3_logins_total{mechanism=\"USER\",result=\"ok\"} 1\n"));
/// assert!(text.contains("pop3_octets_sent_total 100\n"));
/// assert!(text.contains("pop3_sessions_open 1\n"));
/// summary.bytes_out = 150;
/// meter.end_from(&summary, false);
/// let text = metrics.render();
/// assert!(text.contains("pop3_logins_total{mechanism=\"USER\",result=\"ok\"} 1\n"));
/// assert!(text.contains("pop3_octets_sent_total 150\n"));
/// assert!(text.contains("pop3_sessions_open 0\n"));
/// ```
#[derive(Debug)]
pub struct SessionMeter {
    metrics: Arc<Metrics>,
    tally: Tally,
}

impl SessionMeter {
    /// A session began (its connection admitted, any implicit TLS
    /// handshake done): `pop3_sessions_open` goes up until
    /// [`SessionMeter::end`].
    pub fn start(metrics: Arc<Metrics>) -> SessionMeter {
        metrics.session_started();
        SessionMeter {
            metrics,
            tally: Tally::default(),
        }
    }

    /// Counts what the session of `conn` did since the last update.
    pub fn update(&mut self, conn: &Connection) {
        self.update_from(conn.machine().summary());
    }

    /// [`SessionMeter::update`] from a session's summary.
    pub fn update_from(&mut self, summary: &SessionSummary) {
        self.metrics.session_progress(&mut self.tally, summary);
    }

    /// The session of `conn` is over: counts what is left, and how it
    /// ended.
    pub fn end(self, conn: &Connection) {
        self.end_from(conn.machine().summary(), conn.is_shutting_down());
    }

    /// [`SessionMeter::end`] from a session's summary; `shutting_down`:
    /// the server was stopping, so a session cut counts as ended by the
    /// shutdown.
    pub fn end_from(mut self, summary: &SessionSummary, shutting_down: bool) {
        self.metrics
            .session_over(&mut self.tally, summary, shutting_down);
    }
}

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn index(names: &[&str], name: &str) -> usize {
    names
        .iter()
        .position(|n| *n == name)
        .unwrap_or(names.len() - 1)
}

fn bump(counters: &[AtomicU64], names: &[&str], name: &str) {
    counters[index(names, name)].fetch_add(1, Relaxed);
}

/// The most a request's line and headers may take.
const MAX_REQUEST: usize = 8 * 1024;

/// How long a scraper has to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `metrics` over HTTP on `listener`, on a thread of its own
/// (returned): `GET /metrics` is answered `200` with
/// [`Metrics::render`] as `text/plain; version=0.0.4`, anything else
/// `404` (or `400` for a request that is not HTTP). One request per
/// connection (HTTP/1.0), read within a few seconds and 8 KiB, served one
/// connection at a time: bind it to loopback or a network of the scraper.
///
/// ```
/// use std::io::{Read, Write};
/// use std::sync::Arc;
/// use pop3_blocking::metrics::{Metrics, serve};
///
/// # fn main() -> std::io::Result<()> {
/// let metrics = Arc::new(Metrics::new());
/// let listener = std::net::TcpListener::bind("127.0.0.1:0")?; // "127.0.0.1:9110"
/// # let addr = listener.local_addr()?;
/// serve(listener, metrics.clone())?;
/// # let mut scrape = std::net::TcpStream::connect(addr)?;
/// # scrape.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")?;
/// # let mut answer = String::new();
/// # scrape.read_to_string(&mut answer)?;
/// # assert!(answer.starts_with("HTTP/1.0 200 OK\r\n"));
/// # assert!(answer.contains("pop3_sessions_open 0\n"));
/// # Ok(()) }
/// ```
pub fn serve(listener: TcpListener, metrics: Arc<Metrics>) -> io::Result<thread::JoinHandle<()>> {
    thread::Builder::new()
        .name("pop3-metrics".into())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(stream) => {
                        if let Err(e) = answer(stream, &metrics) {
                            tracing::debug!(error = %e, "metrics request failed");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "metrics accept failed");
                        thread::sleep(crate::common::ACCEPT_BACKOFF);
                    }
                }
            }
        })
}

/// Reads one request and answers it.
fn answer(mut stream: TcpStream, metrics: &Metrics) -> io::Result<()> {
    let until = Instant::now() + REQUEST_TIMEOUT;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    let mut request = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    // The request line and headers, up to the empty line.
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && !request.windows(2).any(|w| w == b"\n\n")
    {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || request.len() >= MAX_REQUEST {
            return respond(
                &mut stream,
                "400 Bad Request",
                "text/plain",
                "bad request\n",
            );
        }
        stream.set_read_timeout(Some(left))?;
        let n = match stream.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    let line = request.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut words = line.trim_ascii().split(|&b| b == b' ');
    let (method, target) = (words.next(), words.next());
    match (method, target.map(|t| t.split(|&b| b == b'?').next())) {
        (Some(b"GET"), Some(Some(b"/metrics"))) => respond(
            &mut stream,
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            &metrics.render(),
        ),
        (Some(_), Some(_)) => respond(&mut stream, "404 Not Found", "text/plain", "not found\n"),
        _ => respond(
            &mut stream,
            "400 Bad Request",
            "text/plain",
            "bad request\n",
        ),
    }
}

fn respond(stream: &mut TcpStream, status: &str, kind: &str, body: &str) -> io::Result<()> {
    let head = format!(
        "HTTP/1.0 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(text: &str, series: &str) -> u64 {
        let line = text
            .lines()
            .find(|l| l.strip_prefix(series).is_some_and(|r| r.starts_with(' ')))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"));
        line[series.len() + 1..].parse().unwrap()
    }

    #[test]
    fn render_has_help_type_labels_and_cumulative_histogram() {
        let metrics = Metrics::new();
        metrics.session_started();
        metrics.session_started();
        let mut summary = SessionSummary::default();
        summary.close_reason = Some(CloseReason::Quit);
        summary.login_mechanism = Some("USER");
        summary.failed_logins = vec![("USER", 2), ("SCRAM-SHA-256", 1), ("X-NEW", 1)];
        summary.bytes_out = 1234;
        metrics.session_summary(&summary, false);
        summary.close_reason = Some(CloseReason::PeerClosed);
        summary.failed_logins.clear();
        metrics.session_started();
        metrics.session_summary(&summary, true);
        metrics.store_call(Duration::from_micros(300)); // first bucket
        metrics.store_call(Duration::from_millis(3)); // 0.005
        metrics.store_call(Duration::from_secs(60)); // +Inf only
        metrics.refused(Refusal::AddressFull);
        metrics.proxy_refused(true);
        metrics.tls_handshake(false);

        let text = metrics.render();
        for (name, kind) in [
            ("pop3_sessions_open", "gauge"),
            ("pop3_sessions_total", "counter"),
            ("pop3_logins_total", "counter"),
            ("pop3_octets_sent_total", "counter"),
            ("pop3_store_call_duration_seconds", "histogram"),
            ("pop3_refusals_total", "counter"),
            ("pop3_tls_handshakes_total", "counter"),
        ] {
            assert!(text.contains(&format!("# HELP {name} ")), "{name}");
            assert!(text.contains(&format!("# TYPE {name} {kind}\n")), "{name}");
        }
        assert_eq!(sample(&text, "pop3_sessions_open"), 1);
        assert_eq!(sample(&text, "pop3_sessions_total{outcome=\"quit\"}"), 1);
        assert_eq!(
            sample(&text, "pop3_sessions_total{outcome=\"shutdown\"}"),
            1
        );
        assert_eq!(
            sample(&text, "pop3_sessions_total{outcome=\"peer_closed\"}"),
            0
        );
        let login = |mech: &str, result: &str| {
            sample(
                &text,
                &format!("pop3_logins_total{{mechanism=\"{mech}\",result=\"{result}\"}}"),
            )
        };
        assert_eq!(login("USER", "ok"), 2);
        assert_eq!(login("USER", "failed"), 2);
        assert_eq!(login("SCRAM-SHA-256", "failed"), 1);
        assert_eq!(login("other", "failed"), 1);
        assert_eq!(sample(&text, "pop3_octets_sent_total"), 2468);
        let h = "pop3_store_call_duration_seconds";
        assert_eq!(sample(&text, &format!("{h}_bucket{{le=\"0.0005\"}}")), 1);
        assert_eq!(sample(&text, &format!("{h}_bucket{{le=\"0.0025\"}}")), 1);
        assert_eq!(sample(&text, &format!("{h}_bucket{{le=\"0.005\"}}")), 2);
        assert_eq!(sample(&text, &format!("{h}_bucket{{le=\"10\"}}")), 2);
        assert_eq!(sample(&text, &format!("{h}_bucket{{le=\"+Inf\"}}")), 3);
        assert_eq!(sample(&text, &format!("{h}_count")), 3);
        assert!(text.contains(&format!("{h}_sum 60.003300\n")), "{text}");
        assert_eq!(
            sample(&text, "pop3_refusals_total{reason=\"address_full\"}"),
            1
        );
        assert_eq!(
            sample(&text, "pop3_refusals_total{reason=\"proxy_untrusted\"}"),
            1
        );
        assert_eq!(sample(&text, "pop3_refusals_total{reason=\"full\"}"), 0);
        assert_eq!(
            sample(&text, "pop3_tls_handshakes_total{result=\"failed\"}"),
            1
        );
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn serve_answers_metrics_and_404_otherwise() {
        let metrics = Arc::new(Metrics::new());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let _thread = serve(listener, metrics).unwrap();
        let get = |request: &[u8]| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(request).unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        };
        let ok = get(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.0 200 OK\r\n"), "{ok}");
        assert!(
            ok.contains("Content-Type: text/plain; version=0.0.4"),
            "{ok}"
        );
        assert!(ok.contains("\r\n\r\n# HELP pop3_sessions_open "), "{ok}");
        assert!(get(b"GET / HTTP/1.0\r\n\r\n").starts_with("HTTP/1.0 404 "));
        assert!(get(b"POST /metrics HTTP/1.0\r\n\r\n").starts_with("HTTP/1.0 404 "));
        assert!(get(b"\r\n\r\n").starts_with("HTTP/1.0 400 "));
        let long = vec![b'a'; MAX_REQUEST];
        assert!(get(&long).starts_with("HTTP/1.0 400 "));
    }
}
