//! Parsing rates of the command and response codec: a pipelined client's
//! command lines as the server parses them, and the replies a client parses
//! (status lines, a STAT reply, a 10,000-entry UIDL listing, a CAPA reply
//! as Gmail sends it).

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pop3_proto::command::Command;
use pop3_proto::line::{Limits, find_line};
use pop3_proto::response::{Expected, Parsed, Response};
use std::hint::black_box;

/// A session's worth of command lines, each with its CRLF.
fn commands() -> Vec<u8> {
    let mut s = String::from(
        "CAPA\r\nUSER alice@example.org\r\nPASS correct horse battery staple\r\nSTAT\r\nLIST\r\nUIDL\r\n",
    );
    for n in 1..=200 {
        s.push_str(&format!(
            "RETR {n}\r\nDELE {n}\r\nTOP {n} 10\r\nUIDL {n}\r\n"
        ));
    }
    s.push_str("NOOP\r\nRSET\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nQUIT\r\n");
    s.into_bytes()
}

/// A UIDL listing of `n` entries, with its status line and terminator.
fn uidl_listing(n: usize) -> Vec<u8> {
    let mut s = String::from("+OK\r\n");
    for i in 1..=n {
        s.push_str(&format!(
            "{i} 1700000000.M{i}P4242.mail.example.org,S=7017\r\n"
        ));
    }
    s.push_str(".\r\n");
    s.into_bytes()
}

fn bench_commands(c: &mut Criterion) {
    let input = commands();
    let lines = input.split_inclusive(|&b| b == b'\n').count();
    let mut g = c.benchmark_group("commands");
    g.throughput(Throughput::Elements(lines as u64));
    g.bench_function("frame and parse a pipelined session", |b| {
        b.iter(|| {
            let mut rest = black_box(&input[..]);
            let mut parsed = 0usize;
            while let Ok(Some((len, consumed))) = find_line(rest, 255) {
                if Command::parse(&rest[..len]).is_ok() {
                    parsed += 1;
                }
                rest = &rest[consumed..];
            }
            assert_eq!(parsed, lines);
        })
    });
    g.bench_function("encode the same commands", |b| {
        let parsed: Vec<Command> = input
            .split_inclusive(|&b| b == b'\n')
            .map(|l| Command::parse(&l[..l.len() - 2]).unwrap())
            .collect();
        let mut out = BytesMut::with_capacity(input.len());
        b.iter(|| {
            out.clear();
            for cmd in &parsed {
                cmd.encode(&mut out);
            }
            black_box(&out);
        })
    });
    g.finish();
}

fn parse_all(expected: Expected, input: &[u8], limits: &Limits) -> usize {
    match Response::parse(expected, input, limits) {
        Ok(Parsed::Complete { consumed, .. }) => consumed,
        other => panic!("{expected:?}: {other:?}"),
    }
}

fn bench_responses(c: &mut Criterion) {
    let limits = Limits::lenient();
    let mut g = c.benchmark_group("responses");
    let status = b"+OK 7017 octets follow\r\n";
    g.throughput(Throughput::Elements(1));
    g.bench_function("status line", |b| {
        b.iter(|| parse_all(Expected::Status, black_box(status), &limits))
    });
    let stat = b"+OK 10000 70170000\r\n";
    g.bench_function("STAT reply", |b| {
        b.iter(|| parse_all(Expected::Stat, black_box(stat), &limits))
    });
    let capa = b"+OK Capability list follows\r\nUSER\r\nRESP-CODES\r\nEXPIRE 0\r\nLOGIN-DELAY 300\r\nTOP\r\nUIDL\r\nX-GOOGLE-RICO\r\nSASL PLAIN XOAUTH2 OAUTHBEARER\r\n.\r\n";
    g.bench_function("CAPA reply (Gmail's)", |b| {
        b.iter(|| parse_all(Expected::Capabilities, black_box(capa), &limits))
    });
    let listing = uidl_listing(10_000);
    g.throughput(Throughput::Elements(10_000));
    g.bench_function("UIDL listing, 10,000 entries", |b| {
        b.iter(|| parse_all(Expected::UidListing, black_box(&listing), &limits))
    });
    g.finish();
}

criterion_group!(benches, bench_commands, bench_responses);
criterion_main!(benches);
