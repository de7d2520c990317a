//! Parses arbitrary octets as a response. The first octet picks what is
//! expected (and the limits profile). Oracles:
//! - a complete response re-encodes to octets that parse to the same value;
//! - every strict prefix of the consumed input is `Incomplete`;
//! - for an error, every prefix is `Incomplete` or the same error.
#![no_main]

use bytes::BytesMut;
use pop3_proto::line::Limits;
use pop3_proto::response::{Expected, Parsed, Response};

/// The prefix lengths to check: all of them for short inputs, a spread otherwise.
fn prefixes(n: usize) -> impl Iterator<Item = usize> {
    let step = if n <= 1024 { 1 } else { n / 64 };
    (0..n).step_by(step).chain(n.saturating_sub(8)..n)
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&first, input)) = data.split_first() else {
        return;
    };
    let expected = Expected::ALL[usize::from(first) % Expected::ALL.len()];
    let limits = if first & 0x80 != 0 {
        Limits::strict()
    } else {
        Limits::lenient()
    };
    let result = Response::parse(expected, input, &limits);
    match &result {
        Ok(Parsed::Complete { value, consumed }) => {
            assert!(*consumed > 0 && *consumed <= input.len());
            for n in prefixes(*consumed) {
                assert_eq!(
                    Response::parse(expected, &input[..n], &limits),
                    Ok(Parsed::Incomplete),
                    "prefix of {n} octets"
                );
            }
            let mut out = BytesMut::new();
            value.encode(&mut out);
            // Encoding may lengthen a line (upper-case status, a space after
            // the code), so read it back under the lenient limits.
            let again = Response::parse(expected, &out, &Limits::lenient());
            assert_eq!(
                again,
                Ok(Parsed::Complete {
                    value: value.clone(),
                    consumed: out.len()
                })
            );
        }
        Ok(Parsed::Incomplete) => {}
        Ok(_) => unreachable!("Parsed has two variants"),
        Err(e) => {
            for n in prefixes(input.len()) {
                let r = Response::parse(expected, &input[..n], &limits);
                assert!(
                    r == Ok(Parsed::Incomplete) || r.as_ref() == Err(e),
                    "prefix of {n} octets gave {r:?}, the whole input {e:?}"
                );
            }
        }
    }
});
