//! The PROXY protocol header parser: round trips of both versions, reads
//! that never pass the header's end, and refusals of malformed headers.

use std::net::{IpAddr, SocketAddr};

use pop3_proto::proxy::{
    Network, NetworkError, Parsed, ProxyError, Reader, V1_MAX, V2_MAX, parse, v1_header, v2_header,
};
use proptest::prelude::*;

fn pair() -> impl Strategy<Value = (SocketAddr, SocketAddr)> {
    prop_oneof![
        (
            any::<[u8; 4]>(),
            any::<u16>(),
            any::<[u8; 4]>(),
            any::<u16>()
        )
            .prop_map(|(s, sp, d, dp)| (
                SocketAddr::new(IpAddr::from(s), sp),
                SocketAddr::new(IpAddr::from(d), dp)
            )),
        (
            any::<[u8; 16]>(),
            any::<u16>(),
            any::<[u8; 16]>(),
            any::<u16>()
        )
            .prop_map(|(s, sp, d, dp)| (
                SocketAddr::new(IpAddr::from(s), sp),
                SocketAddr::new(IpAddr::from(d), dp)
            )),
    ]
}

/// Feeds `wire` through a [`Reader`], never reading past what it asks
/// for; returns the outcome and the octets left unread.
fn read_through(wire: &[u8]) -> (Result<Parsed, ProxyError>, &[u8]) {
    let mut reader = Reader::new();
    let mut rest = wire;
    loop {
        let space = reader.space();
        let n = space.len().min(rest.len());
        space[..n].copy_from_slice(&rest[..n]);
        rest = &rest[n..];
        match reader.filled(n) {
            Ok(Parsed::Incomplete { .. }) => continue,
            done => return (done, rest),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn v1_headers_round_trip_and_leave_the_session_unread((source, destination) in pair(), tail in proptest::collection::vec(any::<u8>(), 0..64)) {
        let header = v1_header(source, destination);
        prop_assert!(header.len() <= V1_MAX);
        let mut wire = header.as_bytes().to_vec();
        wire.extend_from_slice(&tail);
        let (parsed, rest) = read_through(&wire);
        prop_assert_eq!(parsed, Ok(Parsed::Proxied { source, destination, consumed: header.len() }));
        prop_assert_eq!(rest, &tail[..]);
    }

    #[test]
    fn v2_headers_round_trip_and_leave_the_session_unread((source, destination) in pair(), tail in proptest::collection::vec(any::<u8>(), 0..64)) {
        let header = v2_header(Some((source, destination)));
        let mut wire = header.clone();
        wire.extend_from_slice(&tail);
        let (parsed, rest) = read_through(&wire);
        prop_assert_eq!(parsed, Ok(Parsed::Proxied { source, destination, consumed: header.len() }));
        prop_assert_eq!(rest, &tail[..]);
    }

    #[test]
    fn any_input_parses_or_fails_within_bounds(input in proptest::collection::vec(any::<u8>(), 0..300)) {
        match parse(&input) {
            Ok(Parsed::Incomplete { needed }) => prop_assert!(needed > 0 && input.len() + needed <= V2_MAX),
            Ok(Parsed::Proxied { consumed, .. } | Parsed::Local { consumed }) => prop_assert!(consumed <= input.len()),
            Ok(other) => prop_assert!(false, "{other:?}"),
            Err(_) => {}
        }
    }

    #[test]
    fn networks_contain_exactly_their_prefix(ip in any::<[u8; 4]>(), other in any::<[u8; 4]>(), prefix in 0u8..=32) {
        let mask = u32::MAX.checked_shl(u32::from(32 - prefix)).unwrap_or(0);
        let base = IpAddr::from((u32::from_be_bytes(ip) & mask).to_be_bytes());
        let net = Network::new(base, prefix).unwrap();
        let candidate = u32::from_be_bytes(other);
        let inside = candidate & mask == u32::from_be_bytes(ip) & mask;
        prop_assert_eq!(net.contains(IpAddr::from(candidate.to_be_bytes())), inside);
        prop_assert_eq!(net.to_string().parse::<Network>(), Ok(net));
    }
}

#[test]
fn v2_local_and_unknown_v1_leave_the_connection_addresses() {
    assert_eq!(parse(&v2_header(None)), Ok(Parsed::Local { consumed: 16 }));
    let unknown = b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n";
    assert_eq!(
        parse(unknown),
        Ok(Parsed::Local {
            consumed: unknown.len()
        })
    );
    assert_eq!(
        parse(b"PROXY UNKNOWN\r\n"),
        Ok(Parsed::Local { consumed: 15 })
    );
}

#[test]
fn v2_extensions_are_skipped() {
    let mut header = v2_header(Some((
        "192.0.2.7:1".parse().unwrap(),
        "192.0.2.1:110".parse().unwrap(),
    )));
    header[15] += 7; // a TLV: type, length 4, value
    header.extend_from_slice(&[0x05, 0, 4, 1, 2, 3, 4]);
    header.extend_from_slice(b"USER");
    let (parsed, rest) = read_through(&header);
    assert!(matches!(parsed, Ok(Parsed::Proxied { consumed: 35, .. })));
    assert_eq!(rest, b"USER");
}

#[test]
fn malformed_headers_are_refused_with_their_reason() {
    let cases: &[(&[u8], ProxyError)] = &[
        (b"USER alice\r\n", ProxyError::NotProxy),
        (b"PROXX TCP4", ProxyError::NotProxy),
        (
            b"PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n",
            ProxyError::V1Malformed,
        ),
        (
            b"PROXY TCP4 1.2.3.4 1.2.3.4 01 2\r\n",
            ProxyError::V1Malformed,
        ),
        (
            b"PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n",
            ProxyError::V1Malformed,
        ),
        (b"PROXY TCP4 ::1 1.2.3.4 1 2\r\n", ProxyError::V1Malformed),
        (
            b"PROXY TCP4 1.2.3.4  1.2.3.4 1 2\r\n",
            ProxyError::V1Malformed,
        ),
        (
            b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2 3\r\n",
            ProxyError::V1Malformed,
        ),
        (
            b"PROXY TCP4 1.2.3.4\r1.2.3.4 1 2\r\n",
            ProxyError::V1Malformed,
        ),
        (
            b"PROXY TCP4 1.2.3.4\x001.2.3.4 1 2\r\n",
            ProxyError::V1Malformed,
        ),
        (b"\r\n\r\n\0\r\nQUIT\n\x31", ProxyError::V2Version(3)),
        (b"\r\n\r\n\0\r\nQUIT\n\x22", ProxyError::V2Command(2)),
        (b"\r\n\r\n\0\r\nQUIT\n\x21\x12", ProxyError::V2Family(0x12)),
        (
            b"\r\n\r\n\0\r\nQUIT\n\x21\x11\xff\xff",
            ProxyError::V2TooLong(16 + 0xffff),
        ),
        (
            b"\r\n\r\n\0\r\nQUIT\n\x21\x11\0\x04abcd",
            ProxyError::V2Short,
        ),
        (b"\r\n\r\nX", ProxyError::NotProxy),
    ];
    for (input, error) in cases {
        assert_eq!(
            parse(input),
            Err(*error),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
    let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 120]].concat();
    assert_eq!(read_through(&long).0, Err(ProxyError::V1TooLong));
    assert_eq!(
        read_through(b"PROXY TCP4 1.2").0,
        Err(ProxyError::Truncated)
    );
}

#[test]
fn network_text_is_checked() {
    assert_eq!("10.0.0.1/8".parse::<Network>(), Err(NetworkError::HostBits));
    assert_eq!("10.0.0.0/33".parse::<Network>(), Err(NetworkError::Prefix));
    assert_eq!("10.0.0.0/".parse::<Network>(), Err(NetworkError::Prefix));
    assert_eq!("10.0.0.0/+8".parse::<Network>(), Err(NetworkError::Prefix));
    assert_eq!("tenet/8".parse::<Network>(), Err(NetworkError::Address));
    let v6: Network = "2001:db8::/32".parse().unwrap();
    assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
    assert!(!v6.contains("10.0.0.1".parse().unwrap()));
    let all: Network = "0.0.0.0/0".parse().unwrap();
    assert!(all.contains("203.0.113.9".parse().unwrap()));
}
