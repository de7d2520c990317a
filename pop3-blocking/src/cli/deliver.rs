//! The `deliver` example's command line (features `cli` and `postgres`):
//! deliver a message from standard input to a PostgreSQL store, add an
//! account, or import Maildirs and their passwd-file. Exit codes follow
//! sysexits(3), as mail transfer agents expect of a delivery agent.

use std::io::Read;
use std::path::PathBuf;

use clap::Parser;

use crate::passwd::PasswdFile;
use crate::postgres::{PgError, PgStore};

/// Delivered, added or imported (`EX_OK`).
pub const EX_OK: u8 = 0;
/// A command line that cannot be run (`EX_USAGE`).
pub const EX_USAGE: u8 = 64;
/// Input that cannot be used: a bad credential, user name or passwd-file
/// (`EX_DATAERR`).
pub const EX_DATAERR: u8 = 65;
/// The user has no account (`EX_NOUSER`).
pub const EX_NOUSER: u8 = 67;
/// Something failed that trying again will not fix (`EX_SOFTWARE`).
pub const EX_SOFTWARE: u8 = 70;
/// The database is unreachable or failed; nothing was delivered: try
/// again later (`EX_TEMPFAIL`).
pub const EX_TEMPFAIL: u8 = 75;

/// `deliver`: stores the message on standard input in USER's maildrop in
/// PostgreSQL, durably before it exits 0; or adds an account; or imports
/// Maildirs.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct DeliverArgs {
    /// The database's connection string (`host=... user=... dbname=...`,
    /// several hosts with `target_session_attrs=read-write`, or a
    /// `postgresql://` URL).
    #[arg(long, value_name = "CONNINFO")]
    pub postgres: String,
    /// Add USER (or replace their credential) instead of delivering.
    #[arg(long, requires = "credential", conflicts_with = "import_maildir")]
    pub add_user: bool,
    /// The credential of `--add-user`, in the passwd-file's forms
    /// (`{PLAIN}secret`, `{SHA512-CRYPT}$6$...`, `{SCRAM-SHA-256}...`).
    #[arg(long, value_name = "CREDENTIAL")]
    pub credential: Option<String>,
    /// Import the Maildirs under DIR (`DIR/<user>/{cur,new}`), keeping
    /// their unique-ids, with the accounts of `--users`.
    #[arg(long, value_name = "DIR", requires = "users")]
    pub import_maildir: Option<PathBuf>,
    /// The passwd-file of `--import-maildir`.
    #[arg(long, value_name = "FILE", requires = "import_maildir")]
    pub users: Option<PathBuf>,
    /// The recipient (or the user to add).
    #[arg(value_name = "USER", required_unless_present = "import_maildir")]
    pub user: Option<String>,
}

/// The exit code of a failure.
fn code(e: &PgError) -> u8 {
    match e {
        PgError::NoSuchUser => EX_NOUSER,
        PgError::BadUserName | PgError::BadCredential(_) | PgError::Passwd(_) => EX_DATAERR,
        PgError::Config(_) => EX_USAGE,
        e if e.is_temporary() => EX_TEMPFAIL,
        _ => EX_SOFTWARE,
    }
}

impl DeliverArgs {
    /// Parses the command line of `program` (named in `--help` and
    /// usage errors). A usage error is printed and the process exits
    /// [`EX_USAGE`] (not clap's 2); `--help` and `--version` print and exit
    /// 0.
    ///
    /// ```no_run
    /// use pop3_blocking::cli::DeliverArgs;
    /// let code = DeliverArgs::parse_for("deliver").run(&mut std::io::stdin().lock());
    /// std::process::exit(code.into());
    /// ```
    pub fn parse_for(program: &'static str) -> DeliverArgs {
        use clap::CommandFactory;
        super::parse_command_line(DeliverArgs::command().name(program).bin_name(program))
    }

    /// Does what the arguments say, reading a message from `input`, and
    /// returns the exit code; what happened is printed on standard error.
    ///
    /// ```no_run
    /// use clap::Parser;
    /// use pop3_blocking::cli::{DeliverArgs, EX_OK};
    /// let args = DeliverArgs::parse_from(["deliver", "--postgres", "host=127.0.0.1 user=mail", "alice"]);
    /// assert_eq!(args.run(&mut &b"Subject: hi\r\n\r\nHello\r\n"[..]), EX_OK);
    /// ```
    pub fn run(self, input: &mut dyn Read) -> u8 {
        match self.try_run(input) {
            Ok(done) => {
                eprintln!("deliver: {done}");
                EX_OK
            }
            Err(e) => {
                eprintln!("deliver: {e}");
                code(&e)
            }
        }
    }

    fn try_run(self, input: &mut dyn Read) -> Result<String, PgError> {
        let store = PgStore::connect(&self.postgres)?;
        if let (Some(root), Some(users)) = (&self.import_maildir, &self.users) {
            let users = PasswdFile::load(users).map_err(PgError::Passwd)?;
            let done = store.import_maildir(root, &users)?;
            return Ok(format!(
                "imported {} users, {} messages ({} already there)",
                done.users, done.messages, done.skipped
            ));
        }
        let user = self.user.as_deref().unwrap_or_default();
        if self.add_user {
            store.add_user(user, self.credential.as_deref().unwrap_or_default())?;
            return Ok(format!("account {user} stored"));
        }
        let done = store.deliver(user, input)?;
        Ok(format!(
            "delivered to {user}: {} octets, unique-id {}",
            done.size,
            done.uid.as_str()
        ))
    }
}
