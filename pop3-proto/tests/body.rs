//! Multi-line bodies: the decoder, the encoder, TOP and the octet count.

use bytes::{Bytes, BytesMut};
use pop3_proto::dot::{
    BodyDecoder, BodyEncoder, BodyError, BodyEvent, LineEnds, OctetCounter, SHARE_MIN, octet_count,
};
use proptest::prelude::*;

const MODES: [LineEnds; 3] = [LineEnds::Strict, LineEnds::Lenient, LineEnds::Detect];

/// Sorted, clamped cut points followed by the input length.
fn pieces(input: &[u8], cuts: &[usize]) -> Vec<(usize, usize)> {
    let mut ends: Vec<usize> = cuts.iter().map(|&c| c.min(input.len())).collect();
    ends.sort_unstable();
    ends.push(input.len());
    let mut start = 0;
    ends.into_iter()
        .map(|end| {
            let piece = (start, end);
            start = end;
            piece
        })
        .collect()
}

#[derive(Debug, PartialEq, Eq)]
struct Decoded {
    body: Vec<u8>,
    ended: bool,
    rest: Vec<u8>,
}

/// Decodes `input` fed in pieces cut at `cuts`, as a client would.
fn decode(mode: LineEnds, input: &[u8], cuts: &[usize]) -> Decoded {
    let mut dec = BodyDecoder::with_line_ends(mode);
    let mut buf = BytesMut::new();
    let mut body = Vec::new();
    let mut ended = false;
    for (start, end) in pieces(input, cuts) {
        buf.extend_from_slice(&input[start..end]);
        while let Some(event) = dec.decode(&mut buf) {
            match event {
                BodyEvent::Data(data) => {
                    assert!(!ended, "data after the end");
                    assert!(!data.is_empty(), "empty data event");
                    body.extend_from_slice(&data);
                }
                BodyEvent::End => {
                    assert!(!ended, "two ends");
                    ended = true;
                }
            }
        }
        if !ended {
            assert!(buf.is_empty(), "the decoder holds input back in its buffer");
        }
    }
    assert_eq!(dec.is_done(), ended);
    assert_eq!(dec.data_octets(), body.len() as u64);
    Decoded {
        body,
        ended,
        rest: buf.to_vec(),
    }
}

/// The decoder specified on a whole input: line by line.
fn reference_decode(mode: LineEnds, input: &[u8]) -> Decoded {
    let lenient = match mode {
        LineEnds::Strict => false,
        LineEnds::Lenient => true,
        _ => match input.iter().position(|&b| b == b'\n') {
            Some(lf) => lf == 0 || input[lf - 1] != b'\r',
            None => false,
        },
    };
    // The end of the line starting at `from`, line end included.
    let line_end = |from: usize| -> Option<usize> {
        if lenient {
            input[from..]
                .iter()
                .position(|&b| b == b'\n')
                .map(|i| from + i + 1)
        } else {
            input[from..]
                .windows(2)
                .position(|w| w == b"\r\n")
                .map(|i| from + i + 2)
        }
    };
    let mut body = Vec::new();
    let mut pos = 0;
    while pos < input.len() {
        let mut from = pos;
        if input[pos] == b'.' {
            let after = &input[pos + 1..];
            if after.starts_with(b"\r\n") || (lenient && after.starts_with(b"\n")) {
                let term = if after[0] == b'\r' { 3 } else { 2 };
                return Decoded {
                    body,
                    ended: true,
                    rest: input[pos + term..].to_vec(),
                };
            }
            if after.is_empty() || after == b"\r" {
                break; // held back: maybe the terminator
            }
            from = pos + 1;
        }
        match line_end(from) {
            Some(end) => {
                body.extend_from_slice(&input[from..end]);
                pos = end;
            }
            None => {
                body.extend_from_slice(&input[from..]);
                break;
            }
        }
    }
    Decoded {
        body,
        ended: false,
        rest: Vec::new(),
    }
}

/// Encodes `body` fed in pieces cut at `cuts`.
fn encode_with(mut enc: BodyEncoder, body: &[u8], cuts: &[usize]) -> (Vec<u8>, BodyEncoder) {
    let mut out = BytesMut::new();
    for (start, end) in pieces(body, cuts) {
        enc.encode(&body[start..end], &mut out);
    }
    enc.finish(&mut out);
    (out.to_vec(), enc)
}

fn encode(body: &[u8], cuts: &[usize]) -> Vec<u8> {
    encode_with(BodyEncoder::new(), body, cuts).0
}

/// Bare LF → CRLF, a final CRLF added to a last line without one.
fn normalise(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, &b) in body.iter().enumerate() {
        if b == b'\n' && (i == 0 || body[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The encoder specified on a whole body: normalise, stuff, terminate.
fn reference_encode(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let norm = normalise(body);
    let mut line_start = true;
    for &b in &norm {
        if line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        line_start = b == b'\n';
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// The TOP specification: the header lines, the empty line, `n` body lines.
fn reference_top(message: &[u8], n: usize) -> Vec<u8> {
    let mut lines: Vec<&[u8]> = message.split_inclusive(|&b| b == b'\n').collect();
    if let Some(blank) = lines.iter().position(|l| *l == b"\n" || *l == b"\r\n") {
        lines.truncate((blank + 1 + n).min(lines.len()));
    }
    reference_encode(&lines.concat())
}

fn decode_all(input: &[u8]) -> Decoded {
    decode(LineEnds::Detect, input, &[])
}

// ---------------------------------------------------------------- known answers

#[test]
fn rfc1939_retr_example() {
    // RFC 1939 §7: S: +OK 120 octets / <the POP3 server sends the entire message here> / S: .
    let wire =
        b"From: a@example.org\r\nSubject: hi\r\n\r\nHello.\r\n..\r\n...dots\r\n.\r\n+OK next";
    let d = decode_all(wire);
    assert_eq!(
        d.body,
        b"From: a@example.org\r\nSubject: hi\r\n\r\nHello.\r\n.\r\n..dots\r\n"
    );
    assert!(d.ended);
    assert_eq!(d.rest, b"+OK next");
}

#[test]
fn rfc1939_listing_example() {
    // RFC 1939 §5, LIST: +OK 2 messages (320 octets) / 1 120 / 2 200 / .
    let d = decode_all(b"1 120\r\n2 200\r\n.\r\n");
    assert_eq!(d.body, b"1 120\r\n2 200\r\n");
    assert!(d.ended);
}

#[test]
fn empty_body() {
    let d = decode_all(b".\r\n");
    assert_eq!((d.body.as_slice(), d.ended), (&b""[..], true));
    assert_eq!(encode(b"", &[]), b".\r\n");
    assert_eq!(octet_count(b""), 0);
}

#[test]
fn dot_lines() {
    let d = decode_all(b"..\r\n..\r\n.x\r\n. \r\n.\r\n");
    assert_eq!(d.body, b".\r\n.\r\nx\r\n \r\n");
    assert_eq!(encode(b".\r\n..\r\n.x", &[]), b"..\r\n...\r\n..x\r\n.\r\n");
}

#[test]
fn dot_not_at_line_start_is_data() {
    let d = decode_all(b"a.b\r\n a.\r\n.\r\n");
    assert_eq!(d.body, b"a.b\r\n a.\r\n");
}

#[test]
fn terminator_needs_a_line_start() {
    let d = decode_all(b"x.\r\n.\r\n");
    assert_eq!(d.body, b"x.\r\n");
    assert!(d.ended);
}

#[test]
fn bare_lf_server_is_detected() {
    // An LF server: the first line end is a bare LF.
    let d = decode_all(b"Subject: x\n\n..dot\n.\n+OK");
    assert_eq!(d.body, b"Subject: x\n\n.dot\n");
    assert!(d.ended);
    assert_eq!(d.rest, b"+OK");
    let mut dec = BodyDecoder::new();
    assert_eq!(dec.line_ends(), LineEnds::Detect);
    let _ = dec.decode(&mut BytesMut::from(&b"a\nb"[..]));
    assert_eq!(dec.line_ends(), LineEnds::Lenient);
}

#[test]
fn bare_lf_in_a_crlf_body_cannot_end_it() {
    // A CRLF server that passed a stored bare LF through: the message's own
    // LF "." CRLF is data, not the end.
    let wire = b"Subject: x\r\n\r\nevil\n.\r\n+OK fake\r\n.\r\n";
    let d = decode_all(wire);
    assert_eq!(d.body, b"Subject: x\r\n\r\nevil\n.\r\n+OK fake\r\n");
    assert!(d.ended);
    assert!(d.rest.is_empty());
    // The same with the lenient decoder ends early.
    let d = decode(LineEnds::Lenient, wire, &[]);
    assert_eq!(d.body, b"Subject: x\r\n\r\nevil\n");
}

#[test]
fn dot_lf_only_in_lenient_mode() {
    let d = decode(LineEnds::Strict, b"a\r\n.\n.\r\n", &[]);
    assert_eq!(d.body, b"a\r\n\n.\r\n");
    assert!(!d.ended);
    let d = decode(LineEnds::Strict, b"a\r\n.\n\r\n.\r\n", &[]);
    assert_eq!(d.body, b"a\r\n\n\r\n");
    assert!(d.ended);
    let d = decode(LineEnds::Lenient, b"a\r\n.\nb", &[]);
    assert!(d.ended);
    assert_eq!(d.rest, b"b");
}

#[test]
fn lone_cr_and_dot_cr() {
    // `.` CR not followed by LF: the dot is stuffing, the CR is data.
    let d = decode_all(b"a\rb\r\n.\rx\r\n.\r\n");
    assert_eq!(d.body, b"a\rb\r\n\rx\r\n");
    assert!(d.ended);
    assert_eq!(encode(b"a\rb\r\n\rx", &[]), b"a\rb\r\n\rx\r\n.\r\n");
    assert_eq!(encode(b"abc\r", &[]), b"abc\r\r\n.\r\n");
}

#[test]
fn dot_cr_then_eof_is_accepted() {
    let mut dec = BodyDecoder::new();
    let mut buf = BytesMut::from(&b"body\r\n.\r"[..]);
    assert_eq!(
        dec.decode(&mut buf),
        Some(BodyEvent::Data(bytes::Bytes::from_static(b"body\r\n")))
    );
    assert_eq!(dec.decode(&mut buf), None);
    assert!(dec.is_terminator_pending());
    assert_eq!(dec.decode_eof(), Ok(()));
    assert!(dec.is_done());
}

#[test]
fn eof_elsewhere_is_truncation() {
    for input in [&b""[..], b"abc", b"abc\r\n", b"abc\r\n.", b"abc\r\n..x"] {
        let mut dec = BodyDecoder::new();
        let mut buf = BytesMut::from(input);
        while dec.decode(&mut buf).is_some() {}
        assert_eq!(dec.decode_eof(), Err(BodyError::Truncated), "{input:?}");
    }
    let mut dec = BodyDecoder::new();
    let _ = dec.decode(&mut BytesMut::from(&b".\r\n"[..]));
    assert_eq!(dec.decode_eof(), Ok(()));
}

#[test]
fn nul_and_8bit_pass_unchanged() {
    let body = b"\0\xff\xfe.\x80\r\n.\0\r\n\xc3\xa9t\xc3\xa9\r\n";
    let wire = encode(body, &[]);
    assert_eq!(
        wire,
        b"\0\xff\xfe.\x80\r\n..\0\r\n\xc3\xa9t\xc3\xa9\r\n.\r\n"
    );
    assert_eq!(decode_all(&wire).body, body);
}

#[test]
fn bare_lf_becomes_crlf_and_final_crlf_is_added() {
    assert_eq!(encode(b"a\nb\r\nc", &[]), b"a\r\nb\r\nc\r\n.\r\n");
    assert_eq!(encode(b"\n\n", &[]), b"\r\n\r\n.\r\n");
    assert_eq!(encode(b"x\r", &[1]), b"x\r\r\n.\r\n");
}

#[test]
fn crlf_split_across_chunks_stays_one_line_end() {
    assert_eq!(encode(b"a\r\n.b", &[2]), b"a\r\n..b\r\n.\r\n");
    assert_eq!(encode(b"a\r\n.b", &[3]), b"a\r\n..b\r\n.\r\n");
    assert_eq!(encode(b"a\n.b", &[2]), b"a\r\n..b\r\n.\r\n");
}

#[test]
fn terminator_split_at_every_position() {
    let wire = b"line one\r\n..two\r\nthree\r\n.\r\nafter";
    let whole = decode_all(wire);
    assert!(whole.ended);
    for mode in MODES {
        for i in 0..=wire.len() {
            for j in i..=wire.len() {
                assert_eq!(decode(mode, wire, &[i, j]), whole, "{mode:?} cuts {i} {j}");
            }
        }
    }
}

#[test]
fn byte_at_a_time() {
    let wire = b"a\r\n.\r\r\n..\r\n.\r\nz";
    let cuts: Vec<usize> = (0..wire.len()).collect();
    for mode in MODES {
        assert_eq!(decode(mode, wire, &cuts), decode(mode, wire, &[]));
    }
}

#[test]
fn data_is_zero_copy() {
    let mut buf = BytesMut::from(&b"abc\r\n..def\r\n.\r\n"[..]);
    let base = buf.as_ptr() as usize;
    let mut dec = BodyDecoder::new();
    let Some(BodyEvent::Data(first)) = dec.decode(&mut buf) else {
        panic!("data expected")
    };
    assert_eq!(first.as_ptr() as usize, base);
    let Some(BodyEvent::Data(second)) = dec.decode(&mut buf) else {
        panic!("data expected")
    };
    assert_eq!(&second[..], b".def\r\n");
    assert_eq!(second.as_ptr() as usize, base + 6);
}

#[test]
fn no_line_length_limit_and_bounded_holdback() {
    let mut dec = BodyDecoder::new();
    let mut buf = BytesMut::new();
    let mut total = 0;
    for _ in 0..256 {
        buf.extend_from_slice(&[b'x'; 4096]);
        while let Some(BodyEvent::Data(d)) = dec.decode(&mut buf) {
            total += d.len();
        }
        assert!(buf.is_empty());
    }
    assert_eq!(total, 1 << 20);
}

#[test]
fn decode_after_end_leaves_input_alone() {
    let mut dec = BodyDecoder::new();
    let mut buf = BytesMut::from(&b".\r\n+OK\r\n"[..]);
    assert_eq!(dec.decode(&mut buf), Some(BodyEvent::End));
    assert_eq!(dec.decode(&mut buf), None);
    assert_eq!(&buf[..], b"+OK\r\n");
}

#[test]
fn top_known_answers() {
    let msg = b"From: a\r\nSubject: b\r\n\r\none\r\n.two\r\nthree\r\n";
    let top = |n: u64, cuts: &[usize]| {
        let (out, enc) = encode_with(BodyEncoder::top(n), msg, cuts);
        (out, enc.is_complete())
    };
    assert_eq!(top(0, &[]).0, b"From: a\r\nSubject: b\r\n\r\n.\r\n");
    assert_eq!(
        top(2, &[]).0,
        b"From: a\r\nSubject: b\r\n\r\none\r\n..two\r\n.\r\n"
    );
    assert_eq!(top(3, &[]).0, reference_encode(msg));
    assert_eq!(top(99, &[]).0, reference_encode(msg));
    // Bare LF header and body.
    let (out, _) = encode_with(BodyEncoder::top(1), b"H: x\n\nl1\nl2\n", &[]);
    assert_eq!(out, b"H: x\r\n\r\nl1\r\n.\r\n");
    // No empty line: the whole message.
    let (out, _) = encode_with(BodyEncoder::top(0), b"H: x\r\nH: y", &[]);
    assert_eq!(out, b"H: x\r\nH: y\r\n.\r\n");
    // The blank line split across chunks.
    for cut in 0..msg.len() {
        assert_eq!(top(1, &[cut]).0, reference_top(msg, 1), "cut {cut}");
    }
}

#[test]
fn top_reports_completion_early() {
    let mut enc = BodyEncoder::top(1);
    let mut out = BytesMut::new();
    enc.encode(b"H: x\r\n\r\n", &mut out);
    assert!(!enc.is_complete());
    enc.encode(b"first line\r\nsecond", &mut out);
    assert!(enc.is_complete());
    enc.encode(b"ignored\r\n", &mut out);
    enc.finish(&mut out);
    assert_eq!(&out[..], b"H: x\r\n\r\nfirst line\r\n.\r\n");
}

#[test]
fn octet_counts() {
    assert_eq!(octet_count(b"a\r\n"), 3);
    assert_eq!(octet_count(b"a\n"), 3);
    assert_eq!(octet_count(b"a"), 3);
    assert_eq!(octet_count(b"a\r"), 4);
    assert_eq!(octet_count(b".\r\n"), 3);
    let mut c = OctetCounter::new();
    c.feed(b"a\r");
    c.feed(b"\nb\n");
    assert_eq!(c.finish(), 6);
}

#[test]
fn finish_twice_is_harmless() {
    let mut enc = BodyEncoder::new();
    let mut out = BytesMut::new();
    enc.encode(b"x", &mut out);
    enc.finish(&mut out);
    enc.finish(&mut out);
    enc.encode(b"y", &mut out);
    assert_eq!(&out[..], b"x\r\n.\r\n");
    assert!(enc.is_complete());
}

// ---------------------------------------------------------------- properties

/// `wire` decodes in every mode, fed in pieces cut at `cuts`, to `body`
/// CRLF-normalised, and the terminator ends it.
fn check_decodes_to(wire: &[u8], cuts: &[usize], body: &[u8]) -> Result<(), TestCaseError> {
    for mode in MODES {
        let d = decode(mode, wire, cuts);
        prop_assert!(d.ended);
        prop_assert!(d.rest.is_empty());
        prop_assert_eq!(&d.body, &normalise(body));
    }
    Ok(())
}

/// The octet count of `body`, whole, fed in pieces cut at `cuts`, and as
/// the encoder that sent `wire` counted it, is what `wire` holds without
/// the stuffing dots and the terminator.
fn check_octet_count(
    body: &[u8],
    wire: &[u8],
    enc: &BodyEncoder,
    cuts: &[usize],
) -> Result<(), TestCaseError> {
    let stuffing = normalise(body)
        .split_inclusive(|&b| b == b'\n')
        .filter(|l| l.starts_with(b"."))
        .count();
    let count = octet_count(body);
    prop_assert_eq!(count, (wire.len() - stuffing - 3) as u64);
    prop_assert_eq!(count, enc.octets());
    let mut counter = OctetCounter::new();
    for (start, end) in pieces(body, cuts) {
        counter.feed(&body[start..end]);
    }
    prop_assert_eq!(counter.finish(), count);
    Ok(())
}

fn body_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            4 => Just(b'a'),
            3 => Just(b'.'),
            3 => Just(b'\n'),
            3 => Just(b'\r'),
            1 => Just(0u8),
            1 => any::<u8>(),
        ],
        0..160,
    )
}

fn cuts_strategy() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0usize..200, 0..10)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn roundtrip(body in body_strategy(), enc_cuts in cuts_strategy(), dec_cuts in cuts_strategy()) {
        check_decodes_to(&encode(&body, &enc_cuts), &dec_cuts, &body)?;
    }

    #[test]
    fn encoder_matches_reference(body in body_strategy(), cuts in cuts_strategy()) {
        prop_assert_eq!(encode(&body, &cuts), reference_encode(&body));
    }

    #[test]
    fn decoder_matches_reference(wire in body_strategy(), cuts in cuts_strategy()) {
        for mode in MODES {
            prop_assert_eq!(decode(mode, &wire, &cuts), reference_decode(mode, &wire));
        }
    }

    #[test]
    fn decoder_split_invariant(wire in body_strategy(), cuts in cuts_strategy()) {
        for mode in MODES {
            prop_assert_eq!(decode(mode, &wire, &cuts), decode(mode, &wire, &[]));
        }
    }

    #[test]
    fn octet_count_is_what_retr_sends(body in body_strategy(), cuts in cuts_strategy()) {
        let (wire, enc) = encode_with(BodyEncoder::new(), &body, &cuts);
        check_octet_count(&body, &wire, &enc, &cuts)?;
        prop_assert_eq!(decode_all(&wire).body.len() as u64, octet_count(&body));
    }

    #[test]
    fn top_is_header_and_n_lines(body in body_strategy(), n in 0u64..6, cuts in cuts_strategy()) {
        let (wire, enc) = encode_with(BodyEncoder::top(n), &body, &cuts);
        prop_assert_eq!(&wire, &reference_top(&body, n as usize));
        prop_assert!(enc.is_complete());
    }
}

/// Long bodies of mostly clean text, so that the block scans' fast paths
/// run, with the octets that need work (bare LFs, lines starting with `.`,
/// lone CRs) at arbitrary places, block edges included.
fn long_body_strategy() -> impl Strategy<Value = Vec<u8>> {
    let line = |eol: &'static [u8]| {
        (0usize..300).prop_map(move |n| {
            let mut line = vec![b'x'; n];
            line.extend_from_slice(eol);
            line
        })
    };
    prop::collection::vec(
        prop_oneof![
            6 => line(b"\r\n"),
            2 => line(b"\n"),
            1 => Just(b".".to_vec()),
            1 => Just(b"\r".to_vec()),
            1 => Just(b"\n".to_vec()),
            1 => Just(b"\r\n.".to_vec()),
            1 => Just(b"\n.\r\n".to_vec()),
        ],
        0..60,
    )
    .prop_map(|parts| parts.concat())
}

fn long_cuts_strategy() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0usize..10_000, 0..8)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn long_bodies_roundtrip(body in long_body_strategy(), enc_cuts in long_cuts_strategy(), dec_cuts in long_cuts_strategy()) {
        let (wire, enc) = encode_with(BodyEncoder::new(), &body, &enc_cuts);
        prop_assert_eq!(&wire, &reference_encode(&body));
        check_octet_count(&body, &wire, &enc, &enc_cuts)?;
        check_decodes_to(&wire, &dec_cuts, &body)?;
    }

    #[test]
    fn long_wire_decodes_as_reference(wire in long_body_strategy(), cuts in long_cuts_strategy()) {
        for mode in MODES {
            prop_assert_eq!(decode(mode, &wire, &cuts), reference_decode(mode, &wire));
        }
    }
}

/// Encodes `body` fed in pieces cut at `cuts` with
/// [`BodyEncoder::encode_pieces`]: the wire octets, and how many of them
/// were shared with the input instead of copied.
fn encode_pieces_with(mut enc: BodyEncoder, body: &[u8], cuts: &[usize]) -> (Vec<u8>, usize) {
    let body = Bytes::copy_from_slice(body);
    let input = body.as_ptr_range();
    let mut wire = Vec::new();
    let mut shared = 0;
    let mut out = Vec::new();
    for (start, end) in pieces(&body, cuts) {
        enc.encode_pieces(&body.slice(start..end), &mut out);
        for piece in out.drain(..) {
            assert!(!piece.is_empty(), "an empty piece");
            if input.contains(&piece.as_ptr()) {
                assert!(piece.len() >= SHARE_MIN, "a short run shared");
                shared += piece.len();
            }
            wire.extend_from_slice(&piece);
        }
    }
    let mut end = BytesMut::new();
    enc.finish(&mut end);
    wire.extend_from_slice(&end);
    (wire, shared)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn pieces_are_the_encoding(body in long_body_strategy(), cuts in long_cuts_strategy()) {
        let (wire, _) = encode_pieces_with(BodyEncoder::new(), &body, &cuts);
        prop_assert_eq!(&wire, &reference_encode(&body));
    }

    #[test]
    fn pieces_of_top_are_the_encoding(body in long_body_strategy(), n in 0u64..40, cuts in long_cuts_strategy()) {
        let (wire, _) = encode_pieces_with(BodyEncoder::top(n), &body, &cuts);
        prop_assert_eq!(&wire, &reference_top(&body, n as usize));
    }

    #[test]
    fn short_pieces_are_the_encoding(body in body_strategy(), cuts in cuts_strategy()) {
        let (wire, _) = encode_pieces_with(BodyEncoder::new(), &body, &cuts);
        prop_assert_eq!(&wire, &reference_encode(&body));
    }
}

#[test]
fn pieces_share_long_clean_runs() {
    // A base64 attachment: long lines, none starting with `.`.
    let mut body = b"Subject: report\r\n\r\n.hidden\r\n".to_vec();
    for _ in 0..200 {
        body.extend_from_slice(&[b'Q'; 76]);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b".end\n");
    let (wire, shared) = encode_pieces_with(BodyEncoder::new(), &body, &[]);
    assert_eq!(wire, reference_encode(&body));
    // Everything but the header, the two stuffed lines and the last LF.
    assert!(shared >= 200 * 78 - 2 * 78, "only {shared} octets shared");
}
