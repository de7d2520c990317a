#![no_main]
//! The client machine after a realistic queue of commands, fed arbitrary
//! server octets at arbitrary split points with arbitrary clock steps
//! (see `script.rs` for the input format). Oracles:
//!
//! - the same input cut two ways gives the same events and the same
//!   octets written (body chunks compared joined: their boundaries follow
//!   the cuts). After `+OK` to STLS the outcome rightly depends on whether
//!   more octets came in the same read (they are an injection attempt), so
//!   runs with STLS queued are compared up to its reply;
//! - every BodyEnd, ListingEnd and Capabilities needs its own `.` line
//!   (after a line end or at the start, before CRLF, LF, or CR at the end
//!   of the input) among the octets offered so far; when the reply timer
//!   ends a body, the `.` CR of a `.` CRLF whose LF was not offered yet is
//!   enough (the client gives up waiting for the LF); chunks come only
//!   between BodyStart and BodyEnd, and carry no more octets than came in;
//! - every command gets at most one final answer, and exactly one once the
//!   session is closed; the session closes once the input ends (or the
//!   reply timer fires), with `Closed` last;
//! - the number of events is bounded by the input lines and the commands,
//!   and no body chunk is larger than the client's read buffer.

mod script;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use pop3_proto::client::{Client, ClientConfig, ClientEvent, ClientState, RequestId};
use pop3_proto::command::{Command, LangRequest, UnknownCommand};
use pop3_proto::line::Limits;
use pop3_proto::session::Action;
use pop3_proto::time::Instant;
use pop3_proto::types::{MessageNumber, Secret};

use script::{Script, Step};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// One status line: Ok or Err.
    Single,
    /// STAT: Stat, Malformed or Err.
    Stat,
    /// LIST n / UIDL n: the entry, Malformed or Err.
    Entry,
    /// A listing: ListingEnd or Err.
    Listing,
    /// CAPA: Capabilities or Err.
    Capa,
    /// RETR / TOP: BodyEnd or Err.
    Body,
    Stls,
}

fn n(i: u32) -> MessageNumber {
    MessageNumber::new(i).unwrap()
}

/// Queues one of the preset command sequences.
fn queue(client: &mut Client, which: u8, capa_first: bool) -> Vec<(RequestId, Kind)> {
    let mut ids = Vec::new();
    let mut add = |r: Result<RequestId, _>, k: Kind| {
        if let Ok(id) = r {
            ids.push((id, k));
        }
    };
    if capa_first {
        add(client.capa(), Kind::Capa);
    }
    let pw = || Secret::new("secret");
    match which % 8 {
        0 => {
            if let Ok((u, p)) = client.login("alice", pw()) {
                add(Ok(u), Kind::Single);
                add(Ok(p), Kind::Single);
            }
            add(client.stat(), Kind::Stat);
            add(client.list(None), Kind::Listing);
            add(client.uidl(None), Kind::Listing);
            add(client.retr(n(1)), Kind::Body);
            add(client.top(n(1), 0), Kind::Body);
            add(client.dele(n(1)), Kind::Single);
            add(client.quit(), Kind::Single);
        }
        1 => {
            add(client.user("alice"), Kind::Single);
            add(client.pass(pw()), Kind::Single);
            add(client.list(Some(n(1))), Kind::Entry);
            add(client.uidl(Some(n(2))), Kind::Entry);
            add(client.retr(n(2)), Kind::Body);
            add(client.rset(), Kind::Single);
            add(client.noop(), Kind::Single);
            add(client.quit(), Kind::Single);
        }
        2 => {
            add(client.user("mrose"), Kind::Single);
            add(client.pass(Secret::new("tanstaaf")), Kind::Single);
            add(client.stat(), Kind::Stat);
            for i in 1..=3 {
                add(client.retr(n(i)), Kind::Body);
            }
            add(client.dele(n(2)), Kind::Single);
            add(client.quit(), Kind::Single);
        }
        3 => {
            add(client.send(Command::AuthList), Kind::Listing);
            add(client.lang(LangRequest::List), Kind::Listing);
            add(client.utf8(), Kind::Single);
            add(client.capa(), Kind::Capa);
            add(client.user("alice"), Kind::Single);
            add(client.pass(pw()), Kind::Single);
            add(client.stat(), Kind::Stat);
            add(client.list(None), Kind::Listing);
            add(client.quit(), Kind::Single);
        }
        4 => {
            add(client.stls(), Kind::Stls);
            add(client.capa(), Kind::Capa);
            add(client.user("alice"), Kind::Single);
            add(client.pass(pw()), Kind::Single);
            add(client.stat(), Kind::Stat);
            add(client.quit(), Kind::Single);
        }
        5 => {
            add(client.user("alice"), Kind::Single);
            add(client.pass(pw()), Kind::Single);
            add(client.top(n(1), 5), Kind::Body);
            add(client.top(n(2), 0), Kind::Body);
            add(client.retr(n(1)), Kind::Body);
            add(client.list(None), Kind::Listing);
            add(client.uidl(None), Kind::Listing);
            add(client.dele(n(1)), Kind::Single);
            add(client.dele(n(2)), Kind::Single);
            add(client.quit(), Kind::Single);
        }
        6 => {
            add(client.user("alice"), Kind::Single);
            add(client.pass(pw()), Kind::Single);
            add(client.quit(), Kind::Single);
        }
        _ => {
            let x = UnknownCommand::new("XTND", Bytes::from_static(b"XMIT")).unwrap();
            add(client.send(Command::Unknown(x)), Kind::Single);
            add(client.user("alice"), Kind::Single);
            add(client.pass(pw()), Kind::Single);
            add(client.stat(), Kind::Stat);
            add(client.retr(n(1)), Kind::Body);
            add(client.quit(), Kind::Single);
        }
    }
    ids
}

fn config(s: &Script) -> ClientConfig {
    let mut c = ClientConfig::default();
    // An in-memory link: clear-text logins are part of the scripts.
    c.insecure_cleartext_login = true;
    let f = s.more;
    c.pipelining = f & 0x02 == 0;
    if f & 0x04 != 0 {
        c.max_queued_actions = 4;
    }
    if f & 0x08 != 0 {
        c.limits = Limits::strict();
    }
    if f & 0x10 != 0 {
        let mut l = Limits::strict();
        l.response_line = 40;
        l.listing_line = 24;
        l.sasl_line = 40;
        c.limits = l;
        c.read_buffer = 64;
    }
    if f & 0x20 != 0 {
        c.max_in_flight = 2;
        c.max_in_flight_bytes = 20;
    }
    c
}

/// What happened, in order; body chunks of one reply joined.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Rec {
    Event(ClientEvent),
    Sent(Vec<u8>),
    StartTls,
    Close,
}

struct Run<'a> {
    data: &'a [u8],
    client: Client,
    now: Instant,
    pending: Vec<u8>,
    offered: usize,
    recs: Vec<Rec>,
    /// For each multi-line end event: the octets offered when it came,
    /// and whether a timeout delivered it.
    ends: Vec<(usize, bool)>,
    /// Whether the actions being drained follow `handle_timeout`.
    timed_out: bool,
    closed: bool,
}

impl Run<'_> {
    fn drain(&mut self) {
        while let Some(action) = self.client.poll_action() {
            assert!(!self.closed, "an action after Close: {action:?}");
            match action {
                Action::Send(t) => match self.recs.last_mut() {
                    Some(Rec::Sent(b)) => b.extend_from_slice(&t.bytes),
                    _ => self.recs.push(Rec::Sent(t.bytes.to_vec())),
                },
                Action::StartTls => {
                    self.recs.push(Rec::StartTls);
                    self.client.handle_tls_established(self.now);
                }
                Action::Event(ClientEvent::SaslWork { work, .. }) => {
                    // Slow SASL work runs inline, as in a blocking client.
                    assert!(self.client.sasl_work_done(self.now, work.run()));
                }
                Action::Event(e) => {
                    // Memory: a chunk is a slice of the read buffer.
                    if let ClientEvent::BodyChunk { data, .. } = &e {
                        let max = self.client.config().read_buffer;
                        assert!(data.len() <= max, "a chunk of {} octets", data.len());
                    }
                    if matches!(
                        e,
                        ClientEvent::BodyEnd { .. }
                            | ClientEvent::ListingEnd { .. }
                            | ClientEvent::Capabilities { .. }
                    ) {
                        self.ends.push((self.offered, self.timed_out));
                    }
                    match (&e, self.recs.last_mut()) {
                        (
                            ClientEvent::BodyChunk { id, data },
                            Some(Rec::Event(ClientEvent::BodyChunk { id: last, data: d })),
                        ) if id == last => {
                            let mut joined = d.to_vec();
                            joined.extend_from_slice(data);
                            *d = Bytes::from(joined);
                        }
                        _ => self.recs.push(Rec::Event(e)),
                    }
                }
                Action::Close => {
                    self.closed = true;
                    self.recs.push(Rec::Close);
                }
                _ => {}
            }
        }
    }

    fn pump(&mut self) {
        while !self.pending.is_empty() {
            let n = self.client.handle_input(self.now, &self.pending);
            assert!(n <= self.pending.len());
            self.pending.drain(..n);
            self.drain();
            if n == 0 {
                break;
            }
        }
        // The adapter tells the machine the time once it has drained (the
        // reply timer restarts after input parsed while draining).
        let _ = self.client.handle_input(self.now, &[]);
        self.drain();
    }
}

fn run(s: &Script, cuts: &[u16]) -> (Vec<Rec>, Vec<(usize, bool)>, Vec<(RequestId, Kind)>) {
    let now = Instant::from_millis(1_000_000);
    let mut client = Client::new(config(s), now);
    let ids = queue(&mut client, s.flags, s.flags & 0x08 != 0);
    let mut r = Run {
        data: s.data,
        client,
        now,
        pending: Vec::new(),
        offered: 0,
        recs: Vec::new(),
        ends: Vec::new(),
        timed_out: false,
        closed: false,
    };
    r.drain();
    for step in s.steps(cuts) {
        match step {
            Step::Feed(a, b) => {
                r.pending.extend_from_slice(&r.data[a..b]);
                r.offered = b;
                r.pump();
            }
            Step::Clock(ms) => {
                r.now = r.now + Duration::from_millis(ms);
                if let Some(t) = r.client.poll_timeout()
                    && r.now >= t
                {
                    r.client.handle_timeout(r.now);
                    r.timed_out = true;
                    r.drain();
                    r.timed_out = false;
                }
                r.pump();
            }
        }
    }
    if s.more & 1 == 0 {
        r.client.handle_eof(r.now);
        r.drain();
    }
    for _ in 0..8 {
        let Some(t) = r.client.poll_timeout() else {
            break;
        };
        r.now = r.now.max(t);
        r.client.handle_timeout(r.now);
        r.timed_out = true;
        r.drain();
        r.timed_out = false;
    }
    if !r.closed {
        r.client.handle_eof(r.now);
        r.drain();
    }
    assert!(r.closed, "the session did not close");
    assert_eq!(r.client.state(), ClientState::Closed);
    (r.recs, r.ends, ids)
}

/// Where each `.` line of the server's octets ends: the octets a reader
/// needs to see it whole, and the fewer a timeout needs (a `.` CR whose LF
/// has not come yet).
fn dot_lines(data: &[u8]) -> Vec<(usize, usize)> {
    let mut ends = Vec::new();
    for i in 0..data.len() {
        if data[i] != b'.' || (i > 0 && data[i - 1] != b'\n') {
            continue;
        }
        match &data[i + 1..] {
            [b'\n', ..] => ends.push((i + 2, i + 2)),
            [b'\r', b'\n', ..] => ends.push((i + 3, i + 2)),
            // A dot and CR with no LF after it ends a body at the end of
            // the input or when the reply timer fires.
            [b'\r', ..] => ends.push((i + 2, i + 2)),
            _ => {}
        }
    }
    ends
}

fn check(s: &Script, recs: &[Rec], ends: &[(usize, bool)], ids: &[(RequestId, Kind)]) {
    // Each end of a multi-line reply used up its own dot line.
    let dots = dot_lines(s.data);
    for (next, &(offered, timed_out)) in ends.iter().enumerate() {
        let needed = dots
            .get(next)
            .map(|&(whole, early)| if timed_out { early } else { whole });
        assert!(
            needed.is_some_and(|needed| needed <= offered),
            "a multi-line reply ended without a dot line of its own"
        );
    }

    let kinds: BTreeMap<RequestId, Kind> = ids.iter().copied().collect();
    let mut finals: BTreeMap<RequestId, u32> = BTreeMap::new();
    let mut in_body: Option<RequestId> = None;
    let mut chunk_octets = 0;
    let mut events = 0;
    let mut closed = 0;
    for rec in recs {
        let Rec::Event(e) = rec else { continue };
        events += 1;
        assert_eq!(closed, 0, "an event after Closed: {e:?}");
        match e {
            ClientEvent::BodyStart { id, .. } => {
                assert_eq!(in_body, None, "a body inside a body");
                assert_eq!(kinds.get(id), Some(&Kind::Body));
                in_body = Some(*id);
            }
            ClientEvent::BodyChunk { id, data } => {
                assert_eq!(in_body, Some(*id), "a chunk outside its body");
                chunk_octets += data.len();
            }
            ClientEvent::BodyEnd { id } => {
                assert_eq!(in_body, Some(*id), "an end outside its body");
                in_body = None;
            }
            ClientEvent::Cancelled { id, .. } if in_body == Some(*id) => in_body = None,
            ClientEvent::Closed => closed += 1,
            _ => {}
        }
        if let Some(id) = e.request_id() {
            let kind = *kinds.get(&id).expect("an event for a command never queued");
            let is_final = match e {
                ClientEvent::Ok { .. }
                | ClientEvent::Err { .. }
                | ClientEvent::Cancelled { .. } => true,
                ClientEvent::Stat { .. } => kind == Kind::Stat,
                ClientEvent::Malformed { .. } => matches!(kind, Kind::Stat | Kind::Entry),
                ClientEvent::Scan { .. } | ClientEvent::Uid { .. } => kind == Kind::Entry,
                ClientEvent::ListingEnd { .. } => kind == Kind::Listing,
                ClientEvent::Capabilities { .. } => kind == Kind::Capa,
                ClientEvent::BodyEnd { .. } => kind == Kind::Body,
                _ => false,
            };
            if is_final {
                let c = finals.entry(id).or_default();
                *c += 1;
                assert_eq!(*c, 1, "two final answers for {id}: {e:?}");
            }
        }
    }
    assert_eq!(closed, 1, "not exactly one Closed");
    assert!(matches!(recs.last(), Some(Rec::Close)), "Close is not last");
    for (id, _) in ids {
        assert_eq!(finals.get(id), Some(&1), "no final answer for {id}");
    }
    assert!(chunk_octets <= s.data.len(), "more body octets than input");
    let lines = s.data.iter().filter(|&&b| b == b'\n' || b == b'\r').count() + 1;
    assert!(
        events <= lines + 2 * ids.len() + 8,
        "{events} events for {lines} lines and {} commands",
        ids.len()
    );
}

/// The records up to the reply to STLS, when one was queued.
fn comparable<'a>(recs: &'a [Rec], ids: &[(RequestId, Kind)]) -> &'a [Rec] {
    let Some(&(stls, _)) = ids.iter().find(|(_, k)| *k == Kind::Stls) else {
        return recs;
    };
    let cut = recs
        .iter()
        .position(|r| match r {
            Rec::Event(ClientEvent::Error(_)) => true,
            Rec::Event(e) => e.request_id() == Some(stls),
            _ => false,
        })
        .unwrap_or(recs.len());
    &recs[..cut]
}

fuzz_target!(|input: &[u8]| {
    let s = Script::parse(input);
    if s.data.len() > 16 * 1024 {
        return;
    }
    let (whole, whole_ends, ids) = run(&s, &[]);
    if std::env::var_os("POP3_FUZZ_SHOW").is_some() {
        for r in &whole {
            eprintln!("{r:?}");
        }
    }
    check(&s, &whole, &whole_ends, &ids);
    let (cut, cut_ends, _) = run(&s, &s.cuts);
    check(&s, &cut, &cut_ends, &ids);
    let (a, b) = (comparable(&whole, &ids), comparable(&cut, &ids));
    assert_eq!(a, b, "the cuts changed the session");
});
