//! Encodes an arbitrary valid response, parses it back with what it answers:
//! the same value, all of the octets consumed, every prefix `Incomplete`.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use bytes::BytesMut;
use pop3_proto::line::Limits;
use pop3_proto::response::{Expected, Parsed, Response, Status};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(response) = Response::arbitrary(&mut u) else {
        return;
    };
    let pick = u8::arbitrary(&mut u).unwrap_or(0);
    let expected = match &response {
        Response::Greeting(_) => Expected::Greeting,
        Response::Status(s) if s.status == Status::Err => {
            Expected::ALL[usize::from(pick) % Expected::ALL.len()]
        }
        Response::Status(_) => {
            [Expected::Status, Expected::Message, Expected::Continuation][usize::from(pick) % 3]
        }
        Response::Stat(_) => Expected::Stat,
        Response::Scan(_) => Expected::Scan,
        Response::Uid(_) => Expected::Uid,
        Response::ScanListing(_) => Expected::ScanListing,
        Response::UidListing(_) => Expected::UidListing,
        Response::Capabilities(_) => Expected::Capabilities,
        Response::Languages(_) => Expected::Languages,
        Response::Mechanisms(_) => Expected::Mechanisms,
        Response::Continuation(_) => Expected::Continuation,
        _ => return,
    };
    let mut out = BytesMut::new();
    response.encode(&mut out);
    let limits = Limits::lenient();
    assert_eq!(
        Response::parse(expected, &out, &limits),
        Ok(Parsed::Complete {
            value: response.clone(),
            consumed: out.len()
        })
    );
    // Followed by more input, the same response and length.
    let mut more = out.clone();
    more.extend_from_slice(b"+OK\r\n");
    assert_eq!(
        Response::parse(expected, &more, &limits),
        Ok(Parsed::Complete {
            value: response,
            consumed: out.len()
        })
    );
    // Every prefix of a short response; a spread of them for a long one.
    let step = if out.len() <= 1024 { 1 } else { out.len() / 64 };
    for n in (0..out.len())
        .step_by(step)
        .chain(out.len().saturating_sub(8)..out.len())
    {
        assert_eq!(
            Response::parse(expected, &out[..n], &limits),
            Ok(Parsed::Incomplete),
            "prefix of {n} octets"
        );
    }
});
