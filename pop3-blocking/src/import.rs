//! Importing what another POP3 retriever has seen, so that switching to
//! this one downloads nothing twice: mpop's `uidls_file`, getmail's
//! `oldmail-*` files and fetchmail's `.fetchids`.
//!
//! Each tool keys its list by the account in its own way, and only the
//! entries of the account being fetched are taken:
//!
//! - **mpop** (`~/.mpop_uidls`, or the account's `uidls_file`): comment
//!   lines starting with `#`; a line starting with a space,
//!   ` <count> <host> <user>`, opens one account's list, whose UIDs follow
//!   one a line. The host is matched without regard to case, the user
//!   exactly.
//! - **getmail** (`oldmail-<server>-<port>-<user>` in its directory, one file
//!   per account): `<uid> NUL <unix time>` a line. The file name, when it
//!   has this form, must name the account's host and user.
//! - **fetchmail** (`~/.fetchids`, or `--idfile`): `<user>@<host> <uid>` a
//!   line; only the account's lines are taken (host without regard to
//!   case).
//!
//! Ports are not compared: neither mpop nor fetchmail records one.
//!
//! ```
//! use pop3_blocking::import::{SeenFormat, read_seen};
//! let text = b"# mpop\n 2 pop.example.com alice\nu1\nu2\n 1 pop.example.com bob\nu3\n";
//! let uids = read_seen(SeenFormat::Mpop, None, text, "POP.example.com", "alice")?;
//! assert_eq!(uids.len(), 2);
//! # Ok::<(), pop3_blocking::import::ImportError>(())
//! ```

use std::fmt;
use std::io;
use std::path::PathBuf;

use bytes::Bytes;
use pop3_proto::fetch::MessageSink;
use pop3_proto::types::Uid;

/// Whose list a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SeenFormat {
    /// mpop's `uidls_file`.
    Mpop,
    /// getmail's `oldmail-*` file.
    Getmail,
    /// fetchmail's `.fetchids`.
    Fetchmail,
}

/// A list to import: `mpop:FILE`, `getmail:FILE` or `fetchmail:FILE`.
///
/// ```
/// use pop3_blocking::import::{SeenFormat, SeenList};
/// let list: SeenList = "fetchmail:/home/a/.fetchids".parse()?;
/// assert_eq!(list.format, SeenFormat::Fetchmail);
/// assert!("thunderbird:x".parse::<SeenList>().is_err());
/// # Ok::<(), pop3_blocking::import::ImportError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SeenList {
    /// The tool.
    pub format: SeenFormat,
    /// The file.
    pub path: PathBuf,
}

impl std::str::FromStr for SeenList {
    type Err = ImportError;

    fn from_str(s: &str) -> Result<SeenList, ImportError> {
        let bad = || ImportError::Spec(s.to_owned());
        let (tool, path) = s.split_once(':').ok_or_else(bad)?;
        let format = match tool {
            "mpop" => SeenFormat::Mpop,
            "getmail" => SeenFormat::Getmail,
            "fetchmail" => SeenFormat::Fetchmail,
            _ => return Err(bad()),
        };
        if path.is_empty() {
            return Err(bad());
        }
        Ok(SeenList {
            format,
            path: crate::config::expand_tilde(path),
        })
    }
}

/// Why a list cannot be imported.
#[derive(Debug)]
#[non_exhaustive]
pub enum ImportError {
    /// Not `mpop:FILE`, `getmail:FILE` or `fetchmail:FILE`.
    Spec(String),
    /// The file cannot be read (the cause in `source`).
    Read(PathBuf, io::Error),
    /// A line of the file does not have the tool's form.
    Format {
        /// The line (from 1).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The file is about other accounts (those it names).
    OtherAccounts(Vec<String>),
    /// The destination's journal refused the UIDs (the cause in `source`).
    Store(io::Error),
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImportError::Spec(s) => {
                write!(f, "`{s}`: say mpop:FILE, getmail:FILE or fetchmail:FILE")
            }
            ImportError::Read(path, _) => write!(f, "cannot read {}", path.display()),
            ImportError::Format { line, message } => write!(f, "line {line}: {message}"),
            ImportError::OtherAccounts(found) if found.is_empty() => {
                f.write_str("the file lists no account")
            }
            ImportError::OtherAccounts(found) => write!(
                f,
                "the file has nothing for this account (it lists {})",
                found.join(", ")
            ),
            ImportError::Store(_) => f.write_str("cannot journal the imported UIDs"),
        }
    }
}

impl std::error::Error for ImportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ImportError::Read(_, e) | ImportError::Store(e) => Some(e),
            _ => None,
        }
    }
}

fn uid_of(bytes: &[u8], line: usize) -> Result<Uid, ImportError> {
    Uid::new(Bytes::copy_from_slice(bytes)).map_err(|_| ImportError::Format {
        line,
        message: format!("`{}` is not a UID", String::from_utf8_lossy(bytes)),
    })
}

/// The UIDs `text` (a file of `format`, named `file_name` if known) lists
/// for `user` on `host`; [`ImportError::OtherAccounts`] when it lists
/// only others.
pub fn read_seen(
    format: SeenFormat,
    file_name: Option<&str>,
    text: &[u8],
    host: &str,
    user: &str,
) -> Result<Vec<Uid>, ImportError> {
    let lines = text
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .enumerate()
        .map(|(i, l)| (i + 1, l));
    let mut uids = Vec::new();
    let mut found: Vec<String> = Vec::new();
    let mut note = |who: String| {
        if !found.contains(&who) {
            found.push(who);
        }
    };
    match format {
        SeenFormat::Mpop => {
            // Whether the lines now belong to the account's list.
            let mut ours: Option<bool> = None;
            for (n, line) in lines {
                if line.is_empty() || line.starts_with(b"#") {
                    continue;
                }
                if let Some(head) = line.strip_prefix(b" ") {
                    let head = String::from_utf8_lossy(head);
                    let words: Vec<&str> = head.split_whitespace().collect();
                    let [_count, h, u] = words[..] else {
                        return Err(ImportError::Format {
                            line: n,
                            message: "an account line is ` <count> <host> <user>`".into(),
                        });
                    };
                    note(format!("{u}@{h}"));
                    ours = Some(h.eq_ignore_ascii_case(host) && u == user);
                    continue;
                }
                match ours {
                    Some(true) => uids.push(uid_of(line, n)?),
                    Some(false) => {}
                    None => {
                        return Err(ImportError::Format {
                            line: n,
                            message: "a UID before any account line".into(),
                        });
                    }
                }
            }
        }
        SeenFormat::Getmail => {
            if let Some(rest) = file_name.and_then(|f| f.strip_prefix("oldmail-")) {
                // `<server>-<port>-<user>`: the server may hold dashes, the
                // user too; the port is the number between.
                let named = rest
                    .to_ascii_lowercase()
                    .starts_with(&format!("{}-", host.to_ascii_lowercase()))
                    && rest.ends_with(&format!("-{user}"));
                if !named {
                    return Err(ImportError::OtherAccounts(vec![rest.to_owned()]));
                }
            }
            for (n, line) in lines {
                if line.is_empty() {
                    continue;
                }
                let uid = line.split(|&b| b == 0).next().unwrap_or(line);
                uids.push(uid_of(uid, n)?);
            }
            return Ok(uids);
        }
        SeenFormat::Fetchmail => {
            for (n, line) in lines {
                if line.is_empty() {
                    continue;
                }
                let text = String::from_utf8_lossy(line);
                let mut words = text.split_whitespace();
                let (Some(who), Some(uid)) = (words.next(), words.next()) else {
                    return Err(ImportError::Format {
                        line: n,
                        message: "a line is `<user>@<host> <uid>`".into(),
                    });
                };
                let Some((u, h)) = who.rsplit_once('@') else {
                    return Err(ImportError::Format {
                        line: n,
                        message: "a line is `<user>@<host> <uid>`".into(),
                    });
                };
                note(who.to_owned());
                if u == user && h.eq_ignore_ascii_case(host) {
                    uids.push(uid_of(uid.as_bytes(), n)?);
                }
            }
        }
    }
    if uids.is_empty() && !found.iter().any(|w| is_account(w, host, user)) {
        return Err(ImportError::OtherAccounts(found));
    }
    Ok(uids)
}

fn is_account(who: &str, host: &str, user: &str) -> bool {
    who.rsplit_once('@')
        .is_some_and(|(u, h)| u == user && h.eq_ignore_ascii_case(host))
}

/// Reads `list` and marks every UID it has for `user` on `host` seen in
/// `sink` ([`MessageSink::mark_seen`]), durably: the number of UIDs.
pub fn import_seen<S: MessageSink + ?Sized>(
    sink: &mut S,
    list: &SeenList,
    host: &str,
    user: &str,
) -> Result<usize, ImportError> {
    let text = std::fs::read(&list.path).map_err(|e| ImportError::Read(list.path.clone(), e))?;
    let name = list
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    let uids = read_seen(list.format, name.as_deref(), &text, host, user)?;
    for uid in &uids {
        sink.mark_seen(uid).map_err(ImportError::Store)?;
    }
    sink.sync().map_err(ImportError::Store)?;
    Ok(uids.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mpop_lists_are_taken_only_for_the_account() {
        let text = b"# c\n#\n 2 Pop.Example.com alice\nu1\nu2\n 1 pop.example.com bob\nu3\n";
        let uids = read_seen(SeenFormat::Mpop, None, text, "pop.example.com", "bob").unwrap();
        assert_eq!(uids, [Uid::new(Bytes::from_static(b"u3")).unwrap()]);
        let e = read_seen(SeenFormat::Mpop, None, text, "other", "bob").unwrap_err();
        assert!(e.to_string().contains("alice@Pop.Example.com"), "{e}");
    }

    #[test]
    fn getmail_files_of_another_account_are_refused() {
        let text = b"u1\x001700000000\nu2\x001700000001\n";
        let ok = read_seen(
            SeenFormat::Getmail,
            Some("oldmail-pop.example.com-110-alice"),
            text,
            "pop.example.com",
            "alice",
        )
        .unwrap();
        assert_eq!(ok.len(), 2);
        let e = read_seen(
            SeenFormat::Getmail,
            Some("oldmail-pop.example.com-110-bob"),
            text,
            "pop.example.com",
            "alice",
        );
        assert!(matches!(e, Err(ImportError::OtherAccounts(_))));
    }

    #[test]
    fn fetchmail_lines_are_matched_by_user_and_host() {
        let text = b"alice@pop.example.com u1\nbob@pop.example.com u2\nalice@POP.example.com u3\n";
        let uids = read_seen(
            SeenFormat::Fetchmail,
            None,
            text,
            "pop.example.com",
            "alice",
        )
        .unwrap();
        assert_eq!(uids.len(), 2);
        let bad = read_seen(SeenFormat::Fetchmail, None, b"nonsense\n", "h", "u");
        assert!(matches!(bad, Err(ImportError::Format { line: 1, .. })));
    }
}
