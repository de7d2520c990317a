//! `fetch-blocking`: fetches new messages from POP3 maildrops over blocking
//! sockets into a Maildir, an mbox, an MDA or an LMTP server, deleting them
//! from the server (with `--delete`) only once they are durably stored.
//!
//! ```text
//! POP3_PASSWORD=secret cargo run -p pop3-blocking --features cli --example fetch-blocking -- \
//!     pops://alice@pop.example.com --maildir ~/Maildir --delete
//! cargo run -p pop3-blocking --features cli --example fetch-blocking -- --config accounts.toml
//! ```
//!
//! `--help` lists the options (shared by every runtime's `fetch`); the exit
//! status follows sysexits (see `pop3_blocking::fetch::ExitKind`).

use std::process::ExitCode;

use pop3_blocking::cli::{FetchArgs, fetch_blocking};

fn main() -> ExitCode {
    let kind = FetchArgs::parse_for("fetch-blocking").run("fetch-blocking", &mut fetch_blocking);
    ExitCode::from(kind.code())
}
