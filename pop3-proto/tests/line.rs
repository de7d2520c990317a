//! The line framer: known answers, limits, resynchronisation, split invariance.

use bytes::BytesMut;
use pop3_proto::line::{Limits, LineError, LineFramer, find_line};
use proptest::prelude::*;

type Item = Result<Vec<u8>, LineError>;

/// Feeds `input` in pieces cut at `cuts`, collecting every line and error.
fn frame(max_len: usize, input: &[u8], cuts: &[usize]) -> (Vec<Item>, BytesMut) {
    let mut framer = LineFramer::new(max_len);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut start = 0;
    let mut ends: Vec<usize> = cuts.iter().map(|&c| c.min(input.len())).collect();
    ends.sort_unstable();
    ends.push(input.len());
    for end in ends {
        buf.extend_from_slice(&input[start..end.max(start)]);
        start = end.max(start);
        loop {
            match framer.next_line(&mut buf) {
                Ok(Some(line)) => out.push(Ok(line.to_vec())),
                Ok(None) => break,
                Err(e) => out.push(Err(e)),
            }
        }
    }
    (out, buf)
}

/// The obvious specification: split at LF, strip one CR before it, report
/// lines of more than `max_len` octets (line end included) as too long.
fn reference(max_len: usize, input: &[u8]) -> (Vec<Item>, usize) {
    let mut out = Vec::new();
    let mut rest = input;
    while let Some(lf) = rest.iter().position(|&b| b == b'\n') {
        let line = &rest[..lf];
        if lf + 1 > max_len {
            out.push(Err(LineError::TooLong { limit: max_len }));
        } else {
            out.push(Ok(line.strip_suffix(b"\r").unwrap_or(line).to_vec()));
        }
        rest = &rest[lf + 1..];
    }
    if !rest.is_empty() && rest.len() >= max_len {
        out.push(Err(LineError::TooLong { limit: max_len }));
    }
    (out, rest.len())
}

fn ok(s: &[u8]) -> Item {
    Ok(s.to_vec())
}

#[test]
fn known_answers() {
    let (lines, rest) = frame(
        512,
        b"+OK POP3 ready\r\nUSER bob\nPASS x\ry\r\n\r\nQUIT",
        &[],
    );
    assert_eq!(
        lines,
        vec![
            ok(b"+OK POP3 ready"),
            ok(b"USER bob"),
            ok(b"PASS x\ry"),
            ok(b""),
        ]
    );
    assert_eq!(&rest[..], b"QUIT");
}

#[test]
fn lone_cr_is_not_a_line_end() {
    let (lines, rest) = frame(512, b"a\rb\r\r\n\r", &[]);
    assert_eq!(lines, vec![ok(b"a\rb\r")]);
    assert_eq!(&rest[..], b"\r");
}

#[test]
fn limit_counts_the_line_end() {
    // 5 octets with CRLF: fits in 5, not in 4.
    assert_eq!(frame(5, b"abc\r\n", &[]).0, vec![ok(b"abc")]);
    assert_eq!(
        frame(4, b"abc\r\n", &[]).0,
        vec![Err(LineError::TooLong { limit: 4 })]
    );
    assert_eq!(frame(4, b"abc\n", &[]).0, vec![ok(b"abc")]);
}

#[test]
fn too_long_is_reported_once_and_early() {
    let mut framer = LineFramer::new(8);
    let mut buf = BytesMut::from(&b"0123456"[..]);
    assert_eq!(framer.next_line(&mut buf), Ok(None));
    buf.extend_from_slice(b"7");
    assert_eq!(
        framer.next_line(&mut buf),
        Err(LineError::TooLong { limit: 8 })
    );
    assert!(buf.is_empty(), "the buffered part is dropped");
    assert!(framer.is_discarding());
    for _ in 0..1000 {
        buf.extend_from_slice(b"xxxxxxxxxx");
        assert_eq!(framer.next_line(&mut buf), Ok(None));
        assert!(buf.is_empty(), "memory stays bounded");
    }
    buf.extend_from_slice(b"yy\r\nnext\r\n");
    assert_eq!(framer.next_line(&mut buf).unwrap().unwrap(), &b"next"[..]);
    assert!(!framer.is_discarding());
    assert_eq!(framer.next_line(&mut buf), Ok(None));
}

#[test]
fn resynchronises_after_an_over_long_line_already_complete() {
    let (lines, rest) = frame(4, b"toolongline\r\nok\r\nx", &[]);
    assert_eq!(lines, vec![Err(LineError::TooLong { limit: 4 }), ok(b"ok")]);
    assert_eq!(&rest[..], b"x");
}

#[test]
fn zero_limit_rejects_every_line_but_keeps_framing() {
    let (lines, _) = frame(0, b"a\n\nb\n", &[]);
    assert_eq!(lines, vec![Err(LineError::TooLong { limit: 0 }); 3]);
}

#[test]
fn empty_buffer_is_not_an_error() {
    let mut framer = LineFramer::new(0);
    assert_eq!(framer.next_line(&mut BytesMut::new()), Ok(None));
}

#[test]
fn lines_are_zero_copy() {
    let mut framer = LineFramer::new(100);
    let mut buf = BytesMut::from(&b"hello\r\nworld\r\n"[..]);
    let base = buf.as_ptr();
    let line = framer.next_line(&mut buf).unwrap().unwrap();
    assert_eq!(line.as_ptr(), base);
}

#[test]
fn limit_can_change_between_lines() {
    let mut framer = LineFramer::new(Limits::strict().command_line);
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&[b'A'; 300]);
    buf.extend_from_slice(b"\r\n");
    framer.set_max_len(Limits::strict().sasl_line);
    assert_eq!(framer.max_len(), 64 * 1024);
    assert_eq!(framer.next_line(&mut buf).unwrap().unwrap().len(), 300);
}

#[test]
fn agrees_with_find_line() {
    for input in [&b"+OK\r\n"[..], b"abc", b"abcdefgh\n", b"\n", b"ab\r\r\n"] {
        for max in 0..12 {
            let mut framer = LineFramer::new(max);
            let mut buf = BytesMut::from(input);
            let got = framer.next_line(&mut buf).map(|o| o.map(|l| l.len()));
            let want = find_line(input, max).map(|o| o.map(|(len, _)| len));
            assert_eq!(got, want, "{input:?} max {max}");
        }
    }
}

#[test]
fn every_split_gives_the_same_result() {
    let input = b"+OK a\r\nlong line here\r\n\r\nb\nc\rd\r\nxx";
    for max in [0, 1, 3, 6, 8, 64] {
        let whole = frame(max, input, &[]);
        for i in 0..=input.len() {
            for j in i..=input.len() {
                assert_eq!(frame(max, input, &[i, j]), whole, "max {max} cuts {i} {j}");
            }
        }
    }
}

#[test]
fn byte_at_a_time_is_linear() {
    // 1 MiB line fed one octet at a time: quadratic scanning would take minutes.
    let mut framer = LineFramer::new(2 * 1024 * 1024);
    let mut buf = BytesMut::new();
    for _ in 0..(1024 * 1024) {
        buf.extend_from_slice(b"a");
        assert_eq!(framer.next_line(&mut buf), Ok(None));
    }
    buf.extend_from_slice(b"\n");
    assert_eq!(
        framer.next_line(&mut buf).unwrap().unwrap().len(),
        1024 * 1024
    );
}

fn input_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            4 => Just(b'a'),
            2 => Just(b'\n'),
            2 => Just(b'\r'),
            1 => any::<u8>(),
        ],
        0..200,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn matches_the_reference(input in input_strategy(), max in 0usize..40,
                             cuts in prop::collection::vec(0usize..200, 0..8)) {
        let (lines, rest) = frame(max, &input, &cuts);
        let (want, want_rest) = reference(max, &input);
        prop_assert_eq!(&lines, &want);
        // A partial line that is too long has been dropped already.
        let dropped = want_rest > 0 && want_rest >= max;
        prop_assert_eq!(rest.len(), if dropped { 0 } else { want_rest });
    }

    #[test]
    fn split_invariant(input in input_strategy(), max in 0usize..40,
                       cuts in prop::collection::vec(0usize..200, 0..8)) {
        prop_assert_eq!(frame(max, &input, &cuts), frame(max, &input, &[]));
    }
}
