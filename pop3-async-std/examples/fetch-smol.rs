//! `fetch-smol`: fetches new messages from a POP3 maildrop into a Maildir on
//! smol, deleting them from the server (with `--delete`) only once they are
//! durably stored.
//!
//! ```text
//! POP3_PASSWORD=secret cargo run -p pop3-async-std --example fetch-smol -- \
//!     pops://alice@pop.example.com --maildir ~/Maildir --delete
//! ```
//!
//! `--help` lists the options (shared by every runtime's `fetch`).

use std::process::ExitCode;

use clap::Parser;
use pop3_async_std::fetch;
use pop3_blocking::cli::{FetchArgs, FetchProgress};

fn main() -> ExitCode {
    let setup = match FetchArgs::parse().setup() {
        Ok(setup) => setup,
        Err(e) => {
            eprintln!("fetch-smol: {}", pop3_blocking::cli::chain(&*e));
            return ExitCode::from(2);
        }
    };
    let mut progress = FetchProgress::new();
    let (url, password, settings) = (&setup.url, &setup.password, &setup.settings);
    let (_sink, result) =
        smol::block_on(fetch::run(url, password, settings, setup.sink, &mut |p| {
            progress.update(p)
        }));
    match result {
        Ok(report) => progress.finish(&report),
        Err(e) => {
            eprintln!("fetch-smol: {}", pop3_blocking::cli::chain(&e));
            ExitCode::FAILURE
        }
    }
}
