//! `fetch-smol`: fetches new messages from POP3 maildrops on smol into a
//! Maildir, an mbox, an MDA or an LMTP server, deleting them from the
//! server (with `--delete`) only once they are durably stored.
//!
//! ```text
//! POP3_PASSWORD=secret cargo run -p pop3-async-std --example fetch-smol -- \
//!     pops://alice@pop.example.com --maildir ~/Maildir --delete
//! ```
//!
//! `--help` lists the options (shared by every runtime's `fetch`); the exit
//! status follows sysexits (see `pop3_blocking::fetch::ExitKind`).

use std::process::ExitCode;

use pop3_async_std::fetch;
use pop3_blocking::cli::FetchArgs;

fn main() -> ExitCode {
    let kind = FetchArgs::parse_for("fetch-smol").run(
        "fetch-smol",
        &mut |url, password, settings, sink, progress| {
            smol::block_on(fetch::run(url, password, settings, sink, progress))
        },
    );
    ExitCode::from(kind.code())
}
