//! The `fetch` command's logs: `-v` on stderr, and `--trace FILE`, the
//! client's wire log (target `pop3_proto::client` at TRACE: `C:` lines as
//! sent, `S:` lines as understood) with every secret line's payload
//! written as `***`.

use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::path::Path;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// The target of the client's wire log.
const WIRE: &str = "pop3_proto::client";

/// Writes each wire-log event as one line of the transcript.
struct Transcript(Mutex<File>);

/// The event's message.
struct Message(String);

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0 = value.to_owned();
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

/// A transcript line: a secret's placeholder becomes `***`.
fn redact(line: &str) -> String {
    match line.strip_suffix("<redacted>") {
        Some(head) => format!("{head}***"),
        None => line.to_owned(),
    }
}

impl<S: Subscriber> Layer<S> for Transcript {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut message = Message(String::new());
        event.record(&mut message);
        let line = redact(&message.0);
        if let Ok(mut file) = self.0.lock() {
            let _ = writeln!(file, "{line}");
        }
    }
}

/// Installs the logs for the calling thread (where a fetch runs): `-v`
/// (`verbose` 1: info, 2 and more: the wire too) on stderr, `RUST_LOG`
/// overriding, and the transcript into `trace`. Dropping the guard ends
/// them.
pub(crate) fn install(
    verbose: u8,
    trace: Option<&Path>,
) -> io::Result<Option<tracing::subscriber::DefaultGuard>> {
    if verbose == 0 && trace.is_none() {
        return Ok(None);
    }
    let stderr = (verbose > 0).then(|| {
        let level = if verbose > 1 { "trace" } else { "info" };
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
        tracing_subscriber::fmt::layer()
            .with_target(false)
            // Colours for a terminal only: a log file or a pipe gets
            // plain text.
            .with_ansi(io::stderr().is_terminal())
            .with_writer(io::stderr)
            .with_filter(filter)
    });
    let transcript = match trace {
        Some(path) => {
            let file = crate::journal::private_file()
                .write(true)
                .create(true)
                .truncate(true)
                .open(path)?;
            Some(
                Transcript(Mutex::new(file))
                    .with_filter(Targets::new().with_target(WIRE, LevelFilter::TRACE))
                    .with_filter(LevelFilter::from_level(Level::TRACE)),
            )
        }
        None => None,
    };
    Ok(Some(
        tracing_subscriber::registry()
            .with(stderr)
            .with(transcript)
            .set_default(),
    ))
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn secret_lines_end_in_stars() {
        assert_eq!(redact("C: PASS <redacted>"), "C: PASS ***");
        assert_eq!(redact("C: USER alice"), "C: USER alice");
    }
}
