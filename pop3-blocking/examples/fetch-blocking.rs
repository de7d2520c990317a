//! `fetch-blocking`: fetches new messages from a POP3 maildrop into a
//! Maildir over blocking sockets, deleting them from the server (with
//! `--delete`) only once they are durably stored.
//!
//! ```text
//! POP3_PASSWORD=secret cargo run -p pop3-blocking --features cli --example fetch-blocking -- \
//!     pops://alice@pop.example.com --maildir ~/Maildir --delete
//! ```
//!
//! `--help` lists the options (shared by every runtime's `fetch`).

use std::process::ExitCode;

use clap::Parser;
use pop3_blocking::cli::{FetchArgs, FetchProgress};
use pop3_blocking::fetch;

fn main() -> ExitCode {
    let mut setup = match FetchArgs::parse().setup() {
        Ok(setup) => setup,
        Err(e) => {
            eprintln!("fetch-blocking: {}", pop3_blocking::cli::chain(&*e));
            return ExitCode::from(2);
        }
    };
    let mut progress = FetchProgress::new();
    let (url, password, settings) = (&setup.url, &setup.password, &setup.settings);
    match fetch::run(url, password, settings, &mut setup.sink, &mut |p| {
        progress.update(p)
    }) {
        Ok(report) => progress.finish(&report),
        Err(e) => {
            eprintln!("fetch-blocking: {}", pop3_blocking::cli::chain(&e));
            ExitCode::FAILURE
        }
    }
}
