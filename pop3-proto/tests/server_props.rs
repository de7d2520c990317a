//! Property tests: whatever the client sends and however it is cut, the
//! machine never panics, keeps its buffers bounded, and answers the same.

mod server_support;

use pop3_proto::server::CloseReason;
use proptest::prelude::*;
use server_support::*;

const WORDS: &[&str] = &[
    "USER alice\r\n",
    "USER mrose\r\n",
    "PASS secret\r\n",
    "PASS tanstaaf\r\n",
    "PASS wrong\r\n",
    "STAT\r\n",
    "LIST\r\n",
    "LIST 2\r\n",
    "UIDL\r\n",
    "UIDL 9\r\n",
    "RETR 1\r\n",
    "RETR 2\r\n",
    "TOP 2 1\r\n",
    "TOP 1 0\r\n",
    "DELE 1\r\n",
    "DELE 2\r\n",
    "RSET\r\n",
    "NOOP\r\n",
    "CAPA\r\n",
    "AUTH\r\n",
    "AUTH PLAIN\r\n",
    "AGFsaWNlAHNlY3JldA==\r\n",
    "AUTH LOGIN\r\n",
    "*\r\n",
    "LANG\r\n",
    "UTF8\r\n",
    "QUIT\r\n",
    "\r\n",
    "\n",
];

fn session() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        8 => proptest::sample::select(WORDS).prop_map(|w| w.as_bytes().to_vec()),
        1 => proptest::collection::vec(any::<u8>(), 0..40),
    ];
    proptest::collection::vec(piece, 0..30).prop_map(|v| v.concat())
}

fn run(input: &[u8], cuts: &[usize]) -> (Vec<u8>, usize, bool) {
    // No STLS here: bytes after it mean something else depending on whether
    // they arrived before or after the handshake.
    let mut h = Harness::new(test_config(), plain(), standard_store());
    let before = h.store.message_count("alice") + h.store.message_count("mrose");
    let mut start = 0;
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    points.sort_unstable();
    for p in points {
        h.send(&input[start..p.max(start)]);
        start = p.max(start);
    }
    h.send(&input[start..]);
    assert!(h.max_buffered <= 64 * 1024);
    assert!(h.max_queued <= 2, "queued {}", h.max_queued);
    h.eof();
    assert!(h.closed);
    assert_eq!(h.closes, 1);
    assert!(!h.store.is_locked("alice") && !h.store.is_locked("mrose"));
    // Nothing is removed unless a QUIT was processed in TRANSACTION, and
    // then exactly what the session marked deleted.
    let after = h.store.message_count("alice") + h.store.message_count("mrose");
    let summary = h.server.summary();
    if summary.close_reason != Some(CloseReason::Quit) {
        assert_eq!(after, before, "removed without QUIT: {summary:?}");
    }
    assert_eq!(before - after, summary.deleted as usize, "{summary:?}");
    (h.take_raw(), h.store.message_count("alice"), h.closed)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn cuts_never_change_the_answers(input in session(), cuts in proptest::collection::vec(any::<usize>(), 0..8)) {
        let whole = run(&input, &[]);
        let cut = run(&input, &cuts);
        prop_assert_eq!(whole, cut);
    }
}
