//! `deliver`: a delivery agent for the PostgreSQL store. It stores the
//! message on standard input in USER's maildrop, and exits 0 once it is
//! durable, 67 for an unknown user, 75 when the database cannot be reached
//! (the mail transfer agent then tries again later):
//!
//! ```text
//! deliver --postgres 'host=db1,db2 target_session_attrs=read-write user=mail' alice < message
//! deliver --postgres CONNINFO --add-user alice --credential '{PLAIN}wonderland'
//! deliver --postgres CONNINFO --import-maildir /var/mail --users /etc/pop3.passwd
//! ```

use std::process::ExitCode;

use pop3_blocking::cli::DeliverArgs;

fn main() -> ExitCode {
    pop3_blocking::cli::init_logging();
    ExitCode::from(DeliverArgs::parse_for("deliver").run(&mut std::io::stdin().lock()))
}
