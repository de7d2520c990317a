//! POP3 over `std::net`, and the std file-backed pieces every runtime shares:
//! the Maildir store and the passwd-file user database.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod maildir;
pub mod passwd;
