//! Properties of the client machine over arbitrary server input.

mod client_support;

use pop3_proto::client::ClientEvent;
use pop3_proto::types::{MessageNumber, Secret};
use proptest::prelude::*;

use client_support::*;

fn n(i: u32) -> MessageNumber {
    MessageNumber::new(i).unwrap()
}

/// Server-ish lines: mostly plausible, sometimes garbage.
fn server_line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"+OK\r\n".to_vec()),
        Just(b"+OK 2 320\r\n".to_vec()),
        Just(b"-ERR [IN-USE] busy\r\n".to_vec()),
        Just(b".\r\n".to_vec()),
        Just(b"1 120\r\n".to_vec()),
        Just(b"..stuffed\r\n".to_vec()),
        Just(b"+ \r\n".to_vec()),
        Just(b"PIPELINING\r\n".to_vec()),
        Just(b".\r".to_vec()),
        Just(b"\n".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..40),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_server_input_never_panics_and_close_is_last(
        lines in proptest::collection::vec(server_line(), 0..40),
        chunk in 1usize..64,
        eof in any::<bool>(),
    ) {
        let mut d = Driver::new(plain_link());
        d.chunk = chunk;
        let _ = d.client.capa();
        let _ = d.client.login("u", Secret::new("p"));
        let _ = d.client.stat();
        let _ = d.client.list(None);
        let _ = d.client.retr(n(1));
        let _ = d.client.uidl(Some(n(1)));
        let _ = d.client.quit();
        d.drain();
        let mut input = b"+OK hi <a@b>\r\n".to_vec();
        for l in &lines {
            input.extend_from_slice(l);
        }
        d.feed(&input);
        if eof {
            d.client.handle_eof(d.now);
            d.drain();
            prop_assert!(d.closed);
        }
        if d.closed {
            prop_assert_eq!(d.log.last().copied(), Some("close"));
            prop_assert_eq!(d.events.last(), Some(&ClientEvent::Closed));
            // Every command got exactly one way out, or is still pending.
            prop_assert_eq!(d.client.outstanding(), 0);
        }
        // Same result whatever the split.
        let mut whole = Driver::new(plain_link());
        let _ = whole.client.capa();
        let _ = whole.client.login("u", Secret::new("p"));
        let _ = whole.client.stat();
        let _ = whole.client.list(None);
        let _ = whole.client.retr(n(1));
        let _ = whole.client.uidl(Some(n(1)));
        let _ = whole.client.quit();
        whole.drain();
        whole.feed(&input);
        if eof {
            whole.client.handle_eof(whole.now);
            whole.drain();
        }
        prop_assert_eq!(coalesce(&d.events), coalesce(&whole.events));
        prop_assert_eq!(d.wire, whole.wire);
    }
}
