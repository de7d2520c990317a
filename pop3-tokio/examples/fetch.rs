//! `fetch` on tokio: fetches new messages from a POP3 maildrop into a
//! Maildir, deleting them from the server (with `--delete`) only once they
//! are durably stored.
//!
//! ```text
//! POP3_PASSWORD=secret cargo run -p pop3-tokio --example fetch -- \
//!     pops://alice@pop.example.com --maildir ~/Maildir --delete
//! ```
//!
//! `--help` lists the options (shared by every runtime's `fetch`). Failures
//! end with a one-line reason and exit status 1 (2 for usage errors, 3
//! for a run that left messages it could not handle on the server).

use std::process::ExitCode;

use clap::Parser;
use pop3_blocking::cli::{FetchArgs, FetchProgress};
use pop3_tokio::fetch;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let setup = match FetchArgs::parse().setup() {
        Ok(setup) => setup,
        Err(e) => {
            eprintln!("fetch: {}", pop3_blocking::cli::chain(&*e));
            return ExitCode::from(2);
        }
    };
    let mut progress = FetchProgress::new();
    let (url, password, settings) = (&setup.url, &setup.password, &setup.settings);
    let (_sink, result) = fetch::run(url, password, settings, setup.sink, &mut |p| {
        progress.update(p)
    })
    .await;
    match result {
        Ok(report) => progress.finish(&report),
        Err(e) => {
            eprintln!("fetch: {}", pop3_blocking::cli::chain(&e));
            ExitCode::FAILURE
        }
    }
}
