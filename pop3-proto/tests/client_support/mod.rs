//! Test support for the client machine: a driver that performs its actions
//! in memory, and a replay server for the recorded profiles.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use bytes::Bytes;
use pop3_proto::client::{Client, ClientConfig, ClientEvent, RequestId};
use pop3_proto::session::{Action, Transmit};
use pop3_proto::time::Instant;

/// A client and everything it asked for.
pub struct Driver {
    pub client: Client,
    pub now: Instant,
    /// Everything written, in order.
    pub wire: Vec<u8>,
    pub transmits: Vec<Transmit>,
    pub events: Vec<ClientEvent>,
    /// `StartTls` actions not yet acted on.
    pub tls_requested: usize,
    pub closed: bool,
    /// Octets offered per `handle_input` call.
    pub chunk: usize,
    /// When set, one `handle_input` call ends exactly at this offset of the
    /// whole input stream (to test every split position).
    pub split_at: Option<usize>,
    /// Input octets taken so far.
    pub fed: usize,
    /// Actions in the order they came (for ordering checks).
    pub log: Vec<&'static str>,
    /// Whether SASL work ([`ClientEvent::SaslWork`]) is run as soon as it
    /// is handed out (default), or left for the test.
    pub run_sasl_work: bool,
}

impl Driver {
    pub fn new(config: ClientConfig) -> Driver {
        let now = Instant::from_millis(1_000);
        let mut d = Driver {
            client: Client::new(config, now),
            now,
            wire: Vec::new(),
            transmits: Vec::new(),
            events: Vec::new(),
            tls_requested: 0,
            closed: false,
            chunk: usize::MAX,
            split_at: None,
            fed: 0,
            log: Vec::new(),
            run_sasl_work: true,
        };
        d.drain();
        d
    }

    pub fn drain(&mut self) {
        while let Some(action) = self.client.poll_action() {
            match action {
                Action::Send(t) => {
                    assert!(!self.closed, "Send after Close");
                    self.wire.extend_from_slice(&t.bytes);
                    self.transmits.push(t);
                    self.log.push("send");
                }
                Action::StartTls => {
                    self.tls_requested += 1;
                    self.log.push("starttls");
                }
                Action::Event(e) => {
                    if let (ClientEvent::SaslWork { work, .. }, true) = (&e, self.run_sasl_work) {
                        let done = work.clone().run();
                        assert!(self.client.sasl_work_done(self.now, done));
                    }
                    self.events.push(e);
                    self.log.push("event");
                }
                Action::Close => {
                    assert!(!self.closed, "Close twice");
                    self.closed = true;
                    self.log.push("close");
                }
                _ => self.log.push("other"),
            }
        }
    }

    /// Offers `bytes` in `self.chunk`-sized pieces, draining after each call.
    pub fn feed(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        let mut stuck = 0;
        while !rest.is_empty() {
            let mut n = self.chunk.min(rest.len());
            if let Some(p) = self.split_at.filter(|&p| self.fed < p && self.fed + n > p) {
                n = p - self.fed;
            }
            let used = self.client.handle_input(self.now, &rest[..n]);
            self.drain();
            if used == 0 {
                stuck += 1;
                assert!(stuck < 3, "handle_input makes no progress");
            } else {
                stuck = 0;
            }
            self.fed += used;
            rest = &rest[used..];
        }
    }

    pub fn take_events(&mut self) -> Vec<ClientEvent> {
        std::mem::take(&mut self.events)
    }

    /// The lines written so far, without line ends.
    pub fn sent_lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.wire)
            .split("\r\n")
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    }

    pub fn advance(&mut self, millis: u64) {
        self.now = Instant::from_millis(self.now.as_millis() + millis);
    }
}

/// Merges consecutive body chunks of one command, so that runs with
/// different input splits compare equal.
pub fn coalesce(events: &[ClientEvent]) -> Vec<ClientEvent> {
    let mut out: Vec<ClientEvent> = Vec::new();
    // The body run being merged: its id and octets.
    let mut run: Option<(RequestId, Vec<u8>)> = None;
    let flush = |run: &mut Option<(RequestId, Vec<u8>)>, out: &mut Vec<ClientEvent>| {
        if let Some((id, data)) = run.take() {
            out.push(ClientEvent::BodyChunk {
                id,
                data: Bytes::from(data),
            });
        }
    };
    for e in events {
        if let ClientEvent::BodyChunk { id, data } = e {
            match &mut run {
                Some((rid, acc)) if rid == id => acc.extend_from_slice(data),
                _ => {
                    flush(&mut run, &mut out);
                    run = Some((*id, data.to_vec()));
                }
            }
            continue;
        }
        flush(&mut run, &mut out);
        out.push(e.clone());
    }
    flush(&mut run, &mut out);
    out
}

/// The request a (non-fatal) event is about.
pub fn event_id(e: &ClientEvent) -> Option<RequestId> {
    e.request_id()
}

/// The body octets delivered for `id`.
pub fn body_of(events: &[ClientEvent], id: RequestId) -> Vec<u8> {
    let mut out = Vec::new();
    for e in events {
        match e {
            ClientEvent::BodyChunk { id: i, data } if *i == id => out.extend_from_slice(data),
            _ => {}
        }
    }
    out
}

/// What a multi-line response carries once unstuffed: every line after the
/// first, up to the terminating `.` line, with a stuffing dot removed.
pub fn reference_body(response: &[u8]) -> Vec<u8> {
    let first = response.iter().position(|&b| b == b'\n').unwrap() + 1;
    let mut out = Vec::new();
    let mut rest = &response[first..];
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |p| p + 1);
        let line = &rest[..end];
        rest = &rest[end..];
        if line == b".\r\n" || line == b".\n" {
            break;
        }
        if line.first() == Some(&b'.') {
            out.extend_from_slice(&line[1..]);
        } else {
            out.extend_from_slice(line);
        }
    }
    out
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pop3-servers")
}

/// One line of a session file.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The command line as the client sends it (or SASL data).
    pub command: String,
    /// Whether it is SASL data answering the challenge above it.
    pub sasl_data: bool,
    /// The response file's bytes.
    pub response: Vec<u8>,
    pub response_file: String,
}

#[derive(Debug, Clone)]
pub struct Session {
    pub profile: String,
    pub file: String,
    pub greeting: Vec<u8>,
    pub entries: Vec<Entry>,
}

const KEYWORDS: &[&str] = &[
    "USER", "PASS", "APOP", "AUTH", "STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "QUIT", "TOP",
    "UIDL", "CAPA", "STLS", "UTF8", "LANG",
];

pub fn load_session(profile: &str, file: &str) -> Session {
    let dir = fixtures().join(profile);
    let text = std::fs::read_to_string(dir.join(file)).unwrap();
    let mut greeting = "greeting.txt".to_string();
    let mut entries: Vec<Entry> = Vec::new();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split('\t');
        let command = fields.next().unwrap().to_string();
        let target = fields.next().unwrap_or("").to_string();
        if command == "@greeting" {
            greeting = target;
            continue;
        }
        if command.starts_with('@') {
            continue;
        }
        let keyword = command.split(' ').next().unwrap().to_ascii_uppercase();
        let after_auth = entries
            .last()
            .is_some_and(|e| e.sasl_data || e.command.to_ascii_uppercase().starts_with("AUTH "));
        let sasl_data = after_auth && !KEYWORDS.contains(&keyword.as_str());
        let response =
            std::fs::read(dir.join(&target)).unwrap_or_else(|e| panic!("{profile}/{target}: {e}"));
        entries.push(Entry {
            command,
            sasl_data,
            response,
            response_file: target,
        });
    }
    let greeting = std::fs::read(dir.join(&greeting)).unwrap();
    Session {
        profile: profile.to_string(),
        file: file.to_string(),
        greeting,
        entries,
    }
}

/// Every `session*.txt` of every profile.
pub fn all_sessions() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut profiles: Vec<_> = std::fs::read_dir(fixtures())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    profiles.sort();
    for p in profiles {
        let mut files: Vec<_> = std::fs::read_dir(fixtures().join(&p))
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|f| f.starts_with("session") && f.ends_with(".txt"))
            .collect();
        files.sort();
        for f in files {
            out.push((p.clone(), f));
        }
    }
    out
}

/// Answers the client's lines from a session, strictly in order.
pub struct ReplayServer {
    pub entries: Vec<Entry>,
    /// Entries the client will never send (refused before the wire).
    pub skipped: Vec<bool>,
    pub pos: usize,
    inbuf: Vec<u8>,
    pub out: Vec<u8>,
}

impl ReplayServer {
    pub fn new(entries: Vec<Entry>) -> Self {
        ReplayServer {
            skipped: vec![false; entries.len()],
            entries,
            pos: 0,
            inbuf: Vec::new(),
            out: Vec::new(),
        }
    }

    /// Takes client octets; queues the answers to each complete line.
    pub fn receive(&mut self, bytes: &[u8]) {
        self.inbuf.extend_from_slice(bytes);
        while let Some(p) = self.inbuf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.inbuf.drain(..=p).collect();
            let line = String::from_utf8(line).unwrap();
            let line = line.trim_end_matches(['\r', '\n']);
            while self.skipped.get(self.pos) == Some(&true) {
                self.pos += 1;
            }
            let entry = self
                .entries
                .get(self.pos)
                .unwrap_or_else(|| panic!("unexpected client line {line:?} after the script"));
            assert!(
                line_matches(&entry.command, line),
                "client sent {line:?}, script expects {:?} (entry {})",
                entry.command,
                self.pos
            );
            self.out.extend_from_slice(&entry.response);
            self.pos += 1;
        }
    }

    pub fn done(&self) -> bool {
        self.skipped[self.pos.min(self.entries.len())..]
            .iter()
            .all(|&s| s)
    }
}

pub fn line_matches(pattern: &str, line: &str) -> bool {
    pattern == "*" || pattern == line
}

/// The settings for a scripted peer on an in-memory link: the defaults,
/// with clear-text logins allowed (without TLS they are refused by
/// default).
pub fn plain_link() -> ClientConfig {
    let mut config = ClientConfig::default();
    config.insecure_cleartext_login = true;
    config
}
