//! `fetch` on tokio: fetches new messages from POP3 maildrops into a
//! Maildir, an mbox, an MDA or an LMTP server, deleting them from the
//! server (with `--delete`) only once they are durably stored.
//!
//! ```text
//! POP3_PASSWORD=secret cargo run -p pop3-tokio --example fetch -- \
//!     pops://alice@pop.example.com --maildir ~/Maildir --delete
//! cargo run -p pop3-tokio --example fetch -- --config accounts.toml --account work
//! ```
//!
//! `--help` lists the options (shared by every runtime's `fetch`). Failures
//! end with a one-line reason and a sysexits status (see
//! `pop3_blocking::fetch::ExitKind`: 75 try later, 77 authentication, 78
//! configuration, ...).

use std::process::ExitCode;

use pop3_blocking::cli::FetchArgs;
use pop3_tokio::fetch;

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fetch: cannot start the runtime: {e}");
            return ExitCode::from(71);
        }
    };
    let kind = FetchArgs::parse_for("fetch").run(
        "fetch",
        &mut |url, password, settings, sink, progress| {
            runtime.block_on(fetch::run(url, password, settings, sink, progress))
        },
    );
    ExitCode::from(kind.code())
}
