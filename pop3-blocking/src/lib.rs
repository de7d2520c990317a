//! The std file-backed pieces every POP3 runtime adapter shares: the Maildir
//! store and the passwd-file user database. (The client and server faces over
//! blocking `std::net` are to come.)
//!
//! [`maildir::MaildirStore`] is a [`BlockingStore`](pop3_proto::store::BlockingStore)
//! over one Maildir per user (`<root>/<user>/{cur,new,tmp}`): an exclusive
//! lock per maildrop, unique-ids that survive sessions, moves and flag
//! changes, RFC 1939 sizes taken from `,W=` or counted once and cached, and
//! deletions only at commit. Its users come from a [`passwd::PasswdFile`], a
//! Dovecot-compatible passwd-file with `{PLAIN}`, `{SHA512-CRYPT}`,
//! `{SHA256-CRYPT}`, `{CRYPT}` and `{ARGON2ID}` passwords. Both are plain
//! blocking file I/O; the async adapters run them where blocking is allowed.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod maildir;
pub mod passwd;
