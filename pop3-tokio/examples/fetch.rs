//! Fetches new messages from a POP3 maildrop into a Maildir, deleting them
//! from the server (with `--delete`) only once they are durably stored.
//!
//! ```text
//! POP3_PASSWORD=secret cargo run -p pop3-tokio --example fetch -- \
//!     pops://alice@pop.example.com --maildir ~/Maildir --delete
//! ```
//!
//! Options: `--maildir DIR` (required), `--delete`, `--starttls`,
//! `--ca-file PEM` (trust this CA instead of the bundled roots),
//! `--insecure` (accept any certificate), `--auth MECH` (USER, APOP, PLAIN,
//! LOGIN, CRAM-MD5, SCRAM-SHA-256, XOAUTH2, OAUTHBEARER or `*`),
//! `--no-pipelining`, `--crlf` (keep CRLF line ends). Progress goes to stderr
//! when it is a terminal; failures end with a one-line reason and exit
//! status 1 (2 for usage errors).
//!
//! What was fetched is remembered per `user@host[:port]` (as spelled in the URL) in
//! a journal at the top of the Maildir: spell the host the same way on every
//! run, or messages are fetched again.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Instant;

use pop3_tokio::client::TlsVerification;
use pop3_tokio::fetch::{self, AuthMethod, FetchSettings, LineEnds, MaildirSink, PopUrl};

struct Args {
    url: PopUrl,
    maildir: String,
    settings: FetchSettings,
    line_ends: LineEnds,
}

fn usage() -> &'static str {
    "usage: fetch URL --maildir DIR [--delete] [--starttls] [--ca-file PEM] [--insecure] \
     [--auth MECH] [--no-pipelining] [--crlf]   (password in POP3_PASSWORD)"
}

fn parse_args() -> Result<Args, String> {
    let mut url = None;
    let mut maildir = None;
    let mut settings = FetchSettings::default();
    let mut ca_file = None;
    let mut insecure = false;
    let mut line_ends = LineEnds::Lf;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--maildir" => maildir = Some(value("--maildir")?),
            "--delete" => settings.delete = true,
            "--starttls" => settings.starttls = true,
            "--ca-file" => ca_file = Some(value("--ca-file")?),
            "--insecure" => insecure = true,
            "--auth" => {
                let name = value("--auth")?;
                settings.auth = Some(AuthMethod::parse(&name).map_err(|e| e.to_string())?);
            }
            "--no-pipelining" => settings.pipelining = false,
            "--crlf" => line_ends = LineEnds::AsSent,
            "-h" | "--help" => return Err(usage().into()),
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s if url.is_none() => url = Some(PopUrl::parse(s).map_err(|e| e.to_string())?),
            s => return Err(format!("unexpected argument {s}")),
        }
    }
    if insecure && ca_file.is_some() {
        return Err("--insecure and --ca-file exclude each other".into());
    }
    if insecure {
        settings.verification = TlsVerification::DangerouslyAcceptAnyCertificate;
    } else if let Some(path) = ca_file {
        settings.verification =
            TlsVerification::ca_file(&path).map_err(|e| format!("{path}: {e}"))?;
    }
    Ok(Args {
        url: url.ok_or_else(|| usage().to_string())?,
        maildir: maildir.ok_or("--maildir is required")?,
        settings,
        line_ends,
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("fetch: {e}");
            return ExitCode::from(2);
        }
    };
    let Ok(password) = std::env::var("POP3_PASSWORD") else {
        eprintln!("fetch: set the password in the environment variable POP3_PASSWORD");
        return ExitCode::from(2);
    };
    let account = fetch::account_id(&args.url);
    let mut sink = match MaildirSink::open(&args.maildir, &account) {
        Ok(s) => s.with_line_ends(args.line_ends),
        Err(e) => {
            eprintln!("fetch: cannot open the Maildir {}: {e}", args.maildir);
            return ExitCode::FAILURE;
        }
    };
    let tty = std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut last_draw = started;
    let mut progress = |p: &fetch::Progress| {
        if !tty {
            return;
        }
        let now = Instant::now();
        if now.duration_since(last_draw).as_millis() < 100 && p.messages_done < p.messages_total {
            return;
        }
        last_draw = now;
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r{}/{} messages, {:.1}/{:.1} MB",
            p.messages_done,
            p.messages_total,
            p.bytes_done as f64 / 1e6,
            p.bytes_total as f64 / 1e6
        );
        let _ = err.flush();
    };
    let result = fetch::run(
        &args.url,
        &password,
        &args.settings,
        &mut sink,
        &mut progress,
    )
    .await;
    if tty {
        eprintln!();
    }
    match result {
        Ok(report) => {
            if tty {
                eprintln!(
                    "{} new ({:.1} MB in {:.1} s), {} already stored, {} deleted",
                    report.saved,
                    report.bytes as f64 / 1e6,
                    started.elapsed().as_secs_f64(),
                    report.already_stored,
                    report.deleted
                );
            }
            for (msg, e) in &report.refused {
                eprintln!("fetch: message {msg}: {e}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fetch: {e}");
            ExitCode::FAILURE
        }
    }
}
