#![no_main]
//! The PROXY protocol header parser: any octets parse or fail with a
//! reason, within the header bounds; the reader, fed in the sizes it asks
//! for, agrees with parsing the same octets whole and never reads past the
//! header's end; a parsed header written again parses to the same.

use libfuzzer_sys::fuzz_target;
use pop3_proto::proxy::{Parsed, Reader, V2_MAX, parse, v1_header, v2_header};

fuzz_target!(|data: &[u8]| {
    let whole = parse(data);
    if let Ok(Parsed::Incomplete { needed }) = whole {
        assert!(needed > 0 && data.len() + needed <= V2_MAX);
    }
    let mut reader = Reader::new();
    let mut fed = 0;
    let outcome = loop {
        let space = reader.space();
        let n = space.len().min(data.len() - fed);
        space[..n].copy_from_slice(&data[fed..fed + n]);
        fed += n;
        match reader.filled(n) {
            Ok(Parsed::Incomplete { .. }) => continue,
            done => break done,
        }
    };
    match outcome {
        Ok(Parsed::Proxied {
            source,
            destination,
            consumed,
        }) => {
            assert_eq!(consumed, fed);
            assert_eq!(parse(&data[..consumed]), outcome);
            let again = v2_header(Some((source, destination)));
            assert!(
                matches!(parse(&again), Ok(Parsed::Proxied { source: s, destination: d, .. }) if s == source && d == destination)
            );
            let again = v1_header(source, destination);
            assert!(matches!(
                parse(again.as_bytes()),
                Ok(Parsed::Proxied { .. })
            ));
        }
        Ok(Parsed::Local { consumed }) => assert_eq!(consumed, fed),
        Ok(other) => panic!("{other:?}"),
        Err(_) => assert!(fed <= data.len()),
    }
});
