//! A store of your own: mail kept as `.eml` files, one directory per user,
//! with users and passwords in a map and a lock that lets one session at a
//! time open a maildrop, served on tokio and read back by the tokio client.
//!
//! ```text
//! cargo run -p pop3-tokio --example custom-store
//! ```
//!
//! It writes three messages for alice into a temporary directory, serves
//! them on a free loopback port, lists and retrieves them, deletes the first
//! one (its file is removed when the session QUITs), and shows a second
//! session turned away with `[IN-USE]` while the first holds the lock.
//!
//! The store implements `BlockingStore` (plain `std::fs` calls), and
//! `SpawnBlocking` runs every call on tokio's blocking pool, so no disk call
//! stalls the reactor. The same store serves `pop3-async-std`
//! (`pop3_async_std::Unblock`) and `pop3-blocking` unchanged.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use pop3_proto::server::ServerConfig;
use pop3_proto::store::{
    BlockingMaildrop, BlockingMessageReader, BlockingStore, Cause, CredentialForms, IoKind,
    MessageInfo, StoreError, Update,
};
use pop3_proto::types::{Secret, Uid};
use pop3_tokio::SpawnBlocking;
use pop3_tokio::client::{ConnectOptions, Error, Pop3Client, Security, msg};
use pop3_tokio::server::{Pop3Server, Security as ServerSecurity};
use tokio::io::AsyncReadExt;

/// Users and their passwords, and a directory of `.eml` files per user.
struct EmlStore {
    root: PathBuf,
    passwords: HashMap<String, String>,
    /// The users whose maildrop a session holds open: RFC 1939 gives a
    /// maildrop to one session at a time.
    locked: Arc<Mutex<HashSet<String>>>,
}

/// An opened maildrop: its messages as they were at login, and the lock,
/// released when it is dropped (committed or not).
struct EmlMaildrop {
    user: String,
    files: Vec<PathBuf>,
    messages: Vec<MessageInfo>,
    locked: Arc<Mutex<HashSet<String>>>,
}

/// A message being read, a chunk at a time (bodies are never held whole).
struct EmlReader(File);

fn io_error(context: &'static str, e: std::io::Error) -> StoreError {
    let kind = IoKind::from(e.kind());
    StoreError::Temporary(Cause::Io { context, kind })
}

impl BlockingStore for EmlStore {
    type Maildrop = EmlMaildrop;

    fn credential_forms(&self) -> CredentialForms {
        // Passwords are kept in clear here, so APOP and CRAM-MD5 can be
        // offered as well as USER/PASS and PLAIN.
        let mut forms = CredentialForms::default();
        forms.password = true;
        forms.shared_secret = true;
        forms
    }

    fn verify_password(&self, user: &str, password: &Secret) -> Result<bool, StoreError> {
        Ok(self
            .passwords
            .get(user)
            .is_some_and(|p| p.as_bytes() == password.expose()))
    }

    fn shared_secret(&self, user: &str) -> Result<Option<Secret>, StoreError> {
        Ok(self.passwords.get(user).map(|p| Secret::new(p.clone())))
    }

    fn open(&self, user: &str) -> Result<EmlMaildrop, StoreError> {
        if !self.passwords.contains_key(user) {
            return Err(StoreError::Permanent(Cause::NoSuchUser));
        }
        if !self.locked.lock().unwrap().insert(user.to_string()) {
            return Err(StoreError::InUse);
        }
        // From here on the lock is released by the maildrop's drop, also
        // when reading the directory fails.
        let mut drop = EmlMaildrop {
            user: user.to_string(),
            files: Vec::new(),
            messages: Vec::new(),
            locked: self.locked.clone(),
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.root.join(user))
            .map_err(|e| io_error("listing maildrop", e))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|e| e == "eml"))
            .collect();
        files.sort(); // a stable message order within the session
        for path in &files {
            let content = std::fs::read(path).map_err(|e| io_error("sizing message", e))?;
            drop.messages.push(MessageInfo {
                size: rfc1939_size(&content),
                // The file name is stable and never reused: a fine UID.
                uid: Uid::new(file_stem(path).to_string())
                    .map_err(|_| StoreError::Permanent(Cause::Corrupt))?,
            });
        }
        drop.files = files;
        Ok(drop)
    }
}

impl BlockingMaildrop for EmlMaildrop {
    type Reader = EmlReader;

    fn messages(&self) -> &[MessageInfo] {
        &self.messages
    }

    fn read(&mut self, index: usize) -> Result<EmlReader, StoreError> {
        let path = self.files.get(index).ok_or(StoreError::MessageGone)?;
        match File::open(path) {
            Ok(file) => Ok(EmlReader(file)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StoreError::MessageGone),
            Err(e) => Err(io_error("opening message", e)),
        }
    }

    fn commit(self, update: Update) -> Result<(), StoreError> {
        // Each removal is atomic; a failure leaves the rest marked for the
        // next session's client to delete again. This store keeps no
        // retention policy, so `update.retrieved` is not needed.
        for index in update.deleted {
            match std::fs::remove_file(&self.files[index]) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error("removing message", e)),
            }
        }
        Ok(())
    }
}

impl Drop for EmlMaildrop {
    fn drop(&mut self) {
        self.locked.lock().unwrap().remove(&self.user);
    }
}

impl BlockingMessageReader for EmlReader {
    fn next_chunk(&mut self) -> Result<Option<Bytes>, StoreError> {
        // The raw file: the server machine turns line ends into CRLF and
        // dot-stuffs on the way out.
        let mut chunk = vec![0; 64 * 1024];
        let n = self
            .0
            .read(&mut chunk)
            .map_err(|e| io_error("reading message", e))?;
        if n == 0 {
            return Ok(None);
        }
        chunk.truncate(n);
        Ok(Some(Bytes::from(chunk)))
    }
}

/// The size LIST reports (RFC 1939 §11): every line end counted as CRLF.
fn rfc1939_size(content: &[u8]) -> u64 {
    let bare_lf = content
        .iter()
        .enumerate()
        .filter(|&(i, &b)| b == b'\n' && (i == 0 || content[i - 1] != b'\r'))
        .count();
    (content.len() + bare_lf) as u64
}

fn file_stem(path: &Path) -> &str {
    path.file_stem().and_then(|s| s.to_str()).unwrap_or("")
}

async fn client(port: u16) -> Result<Pop3Client, Error> {
    // No TLS on loopback: CRAM-MD5 is chosen (the store can check it), so
    // the password never crosses the wire.
    let mut client =
        Pop3Client::connect("127.0.0.1", port, ConnectOptions::new(Security::Plain)).await?;
    client.login("alice", "wonderland").await?;
    Ok(client)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let alice = dir.path().join("alice");
    std::fs::create_dir(&alice)?;
    for (name, subject) in [
        ("001-welcome", "Welcome"),
        ("002-minutes", "Minutes"),
        ("003-lunch", "Lunch?"),
    ] {
        let body = format!("From: bob@example.org\nSubject: {subject}\n\nSee you.\n.dot line\n");
        std::fs::write(alice.join(format!("{name}.eml")), body)?;
    }

    let store = EmlStore {
        root: dir.path().to_path_buf(),
        passwords: HashMap::from([("alice".to_string(), "wonderland".to_string())]),
        locked: Arc::default(),
    };
    let server = Pop3Server::new(SpawnBlocking::new(store), ServerConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let serving = tokio::spawn({
        let server = server.clone();
        async move { server.serve(listener, ServerSecurity::Plain).await }
    });

    let mut first = client(port).await?;
    for entry in first.list().await? {
        let mut text = String::new();
        first
            .retr(entry.msg)
            .await?
            .read_to_string(&mut text)
            .await?;
        let subject = text
            .lines()
            .find(|l| l.starts_with("Subject:"))
            .unwrap_or("");
        println!("message {} ({} octets): {subject}", entry.msg, entry.size);
    }
    let uids = first.uidl().await?;
    println!(
        "unique-ids: {:?}",
        uids.iter().map(|u| u.uid.as_str()).collect::<Vec<_>>()
    );

    // While this session holds alice's maildrop, another is turned away.
    match client(port).await {
        Err(e) => println!("a second session meanwhile: {e}"),
        Ok(_) => return Err("a second session opened a locked maildrop".into()),
    }

    first.dele(msg(1).unwrap()).await?;
    first.quit().await?; // the commit: 001-welcome.eml is removed
    let mut left: Vec<_> = std::fs::read_dir(&alice)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    left.sort();
    println!("left in alice's directory after QUIT: {left:?}");
    assert_eq!(left.len(), 2);

    let mut again = client(port).await?;
    println!("a new session sees {} messages", again.stat().await?.count);
    again.quit().await?;

    server.shutdown();
    serving.await??;
    Ok(())
}
