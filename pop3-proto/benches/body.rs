//! Throughput of the body decoder and encoder against a plain copy of the
//! same octets in the same 64 KiB chunks.
//!
//! Time is the thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`) where the
//! system has it, so that a busy machine (time spent waiting for a core) does
//! not skew the ratios between the copy and the codecs; wall-clock time
//! elsewhere.

use bytes::{Bytes, BytesMut};
use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use pop3_proto::dot::{BodyDecoder, BodyEncoder, BodyEvent, OctetCounter};
use std::hint::black_box;
use std::time::Instant;

/// Nanoseconds this thread has spent on a CPU, if the system tells.
fn thread_cpu_ns() -> Option<u64> {
    let time = cpu_time::ThreadTime::try_now().ok()?.as_duration();
    u64::try_from(time.as_nanos()).ok()
}

/// CPU time of the benchmarking thread, in nanoseconds; wall-clock time
/// where the CPU time is not available.
struct CpuTime;

static WALL: WallTime = WallTime;

impl Measurement for CpuTime {
    type Intermediate = (Option<u64>, Instant);
    type Value = u64;

    fn start(&self) -> Self::Intermediate {
        (thread_cpu_ns(), Instant::now())
    }

    fn end(&self, (cpu, wall): Self::Intermediate) -> u64 {
        match (cpu, thread_cpu_ns()) {
            (Some(start), Some(end)) if end >= start => end - start,
            _ => u64::try_from(wall.elapsed().as_nanos()).unwrap_or(u64::MAX),
        }
    }

    fn add(&self, a: &u64, b: &u64) -> u64 {
        a.saturating_add(*b)
    }

    fn zero(&self) -> u64 {
        0
    }

    fn to_f64(&self, value: &u64) -> f64 {
        *value as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        // Nanoseconds, like wall-clock time.
        WALL.formatter()
    }
}

const CHUNK: usize = 64 * 1024;

/// A deterministic pseudo-random generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// About `size` octets of mail with `eol` line ends: a header, quoted text
/// with many lines starting with '.', and a base64 attachment in 76-octet
/// lines.
fn mail(size: usize, eol: &[u8]) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "the", "message", "server", "mailbox", "octets", "retrieve", "a", "of", "and", "to",
        "POP3", "client", "line", "dot", "stuffing", "is", "in", "for", "with", "session",
    ];
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out = Vec::with_capacity(size + 4096);
    let line = |out: &mut Vec<u8>, text: &[u8]| {
        out.extend_from_slice(text);
        out.extend_from_slice(eol);
    };
    for h in [
        &b"Return-Path: <alice@example.org>"[..],
        b"Received: from mx.example.org (mx.example.org [192.0.2.1]) by pop.example.net",
        b"\tfor <bob@example.net>; Thu, 26 Nov 2026 06:00:00 +0000",
        b"From: Alice <alice@example.org>",
        b"To: Bob <bob@example.net>",
        b"Subject: The quarterly report",
        b"MIME-Version: 1.0",
        b"Content-Type: multipart/mixed; boundary=\"b1\"",
    ] {
        line(&mut out, h);
    }
    line(&mut out, b"");
    while out.len() < size {
        line(&mut out, b"--b1");
        line(&mut out, b"Content-Type: text/plain; charset=utf-8");
        line(&mut out, b"");
        for _ in 0..40 {
            let mut text = Vec::new();
            if rng.below(4) == 0 {
                text.push(b'.');
            }
            while text.len() < 60 + rng.below(12) as usize {
                text.extend_from_slice(WORDS[rng.below(WORDS.len() as u64) as usize].as_bytes());
                text.push(if rng.below(9) == 0 { b'.' } else { b' ' });
            }
            line(&mut out, &text);
        }
        line(&mut out, b"--b1");
        line(&mut out, b"Content-Type: application/pdf");
        line(&mut out, b"Content-Transfer-Encoding: base64");
        line(&mut out, b"");
        for _ in 0..200 {
            let text: Vec<u8> = (0..76).map(|_| B64[rng.below(64) as usize]).collect();
            line(&mut out, &text);
        }
    }
    line(&mut out, b"--b1--");
    out
}

fn encode_all(input: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    let mut enc = BodyEncoder::new();
    enc.encode(input, &mut out);
    enc.finish(&mut out);
    out.to_vec()
}

fn copy(input: &[u8], buf: &mut BytesMut) {
    for chunk in input.chunks(CHUNK) {
        buf.extend_from_slice(chunk);
        black_box(&buf[..]);
        buf.clear();
    }
}

fn bench(c: &mut Criterion<CpuTime>) {
    let crlf = mail(4 << 20, b"\r\n");
    let lf = mail(4 << 20, b"\n");
    let wire = encode_all(&crlf);

    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Bytes(wire.len() as u64));
    g.bench_function("copy", |b| {
        let mut buf = BytesMut::with_capacity(CHUNK);
        b.iter(|| copy(&wire, &mut buf))
    });
    g.bench_function("body_decoder", |b| {
        let mut buf = BytesMut::with_capacity(CHUNK);
        b.iter(|| {
            let mut dec = BodyDecoder::new();
            for chunk in wire.chunks(CHUNK) {
                buf.extend_from_slice(chunk);
                while let Some(event) = dec.decode(&mut buf) {
                    if let BodyEvent::Data(data) = event {
                        black_box(&data[..]);
                    }
                }
            }
            assert!(dec.is_done());
        })
    });
    // The decoder's own work: the octets are already in the read buffer
    // (where the socket put them), arriving 64 KiB at a time. Joining each
    // chunk to what the decoder left is free here (`unsplit` of adjacent
    // parts of one allocation), so only the scan and the splits are timed.
    g.bench_function("body_decoder_in_buffer", |b| {
        b.iter_batched(
            || BytesMut::from(&wire[..]),
            |mut rest| {
                let mut dec = BodyDecoder::new();
                let mut buf = BytesMut::new();
                while !rest.is_empty() {
                    let n = rest.len().min(CHUNK);
                    buf.unsplit(rest.split_to(n));
                    while let Some(event) = dec.decode(&mut buf) {
                        if let BodyEvent::Data(data) = event {
                            black_box(&data[..]);
                        }
                    }
                }
                assert!(dec.is_done());
                // Freeing the input is not the decoder's work: criterion
                // drops what the routine returns outside the timing.
                buf
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();

    for (name, input) in [("encode_crlf", &crlf), ("encode_lf", &lf)] {
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Bytes(input.len() as u64));
        g.bench_function("copy", |b| {
            let mut buf = BytesMut::with_capacity(CHUNK);
            b.iter(|| copy(input, &mut buf))
        });
        g.bench_function("body_encoder", |b| {
            let mut out = BytesMut::with_capacity(2 * CHUNK);
            b.iter(|| {
                let mut enc = BodyEncoder::new();
                for chunk in input.chunks(CHUNK) {
                    enc.encode(chunk, &mut out);
                    black_box(&out[..]);
                    out.clear();
                }
                enc.finish(&mut out);
                out.clear();
            })
        });
        // The store hands out the message as `Bytes`; long clean runs go
        // out as slices of it.
        let shared = Bytes::copy_from_slice(input);
        g.bench_function("body_encoder_pieces", |b| {
            let mut pieces = Vec::new();
            b.iter(|| {
                let mut enc = BodyEncoder::new();
                for start in (0..shared.len()).step_by(CHUNK) {
                    let chunk = shared.slice(start..shared.len().min(start + CHUNK));
                    enc.encode_pieces(&chunk, &mut pieces);
                    for piece in &pieces {
                        black_box(&piece[..]);
                    }
                    pieces.clear();
                }
                let mut end = BytesMut::new();
                enc.finish(&mut end);
                black_box(end);
            })
        });
        g.bench_function("octet_counter", |b| {
            b.iter(|| {
                let mut counter = OctetCounter::new();
                for chunk in input.chunks(CHUNK) {
                    counter.feed(chunk);
                }
                black_box(counter.finish())
            })
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .with_measurement(CpuTime)
        .sample_size(20)
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
