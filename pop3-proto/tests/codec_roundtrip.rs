//! Property tests: for every command and response type, `parse(encode(x)) == x`
//! (with the right [`Expected`] kind), every strict prefix of an encoded
//! response is `Incomplete`, and arbitrary octets never panic a parser.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use pop3_proto::command::{
    ApopDigest, Command, LangRequest, Password, SaslResponse, UnknownCommand, Username,
};
use pop3_proto::line::Limits;
use pop3_proto::response::{
    Capability, Continuation, Expected, Expire, Greeting, LangLine, Listing, Parsed, Response,
    ResponseCode, ScanLine, StatReply, Status, StatusLine, Text, UidLine,
};
use pop3_proto::types::{ApopTimestamp, LanguageTag, Mechanism, MessageNumber, Secret, Uid};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------- strategies

fn msg() -> impl Strategy<Value = MessageNumber> {
    prop_oneof![1u32..20, 1..=u32::MAX].prop_map(|n| MessageNumber::new(n).unwrap())
}

/// Octets that may appear in a line: anything but CR, LF and NUL.
fn line_octets(range: std::ops::Range<usize>) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        any::<u8>().prop_filter("no line breaks", |b| !matches!(b, 0 | b'\r' | b'\n')),
        range,
    )
}

fn username() -> impl Strategy<Value = Username> {
    "[^\\x00-\\x20\\x7f]{1,40}".prop_map(|s| Username::new(&s).unwrap())
}

fn password() -> impl Strategy<Value = Password> {
    line_octets(1..80).prop_map(|v| Password::new(v).unwrap())
}

fn mechanism() -> impl Strategy<Value = Mechanism> {
    "[A-Za-z0-9_-]{1,20}".prop_map(|s| Mechanism::new(&s).unwrap())
}

fn secret() -> impl Strategy<Value = Secret> {
    prop::collection::vec(any::<u8>(), 0..120).prop_map(Secret::new)
}

fn language_tag() -> impl Strategy<Value = LanguageTag> {
    "[A-Za-z0-9-]{1,16}".prop_map(|s| LanguageTag::new(&s).unwrap())
}

fn unknown_command() -> impl Strategy<Value = UnknownCommand> {
    ("X[\\x21-\\x7e]{0,15}", line_octets(0..60))
        .prop_map(|(kw, args)| UnknownCommand::new(&kw, args).unwrap())
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        username().prop_map(Command::User),
        password().prop_map(Command::Pass),
        (username(), any::<[u8; 16]>()).prop_map(|(name, d)| Command::Apop {
            name,
            digest: ApopDigest::from_bytes(d)
        }),
        (mechanism(), prop::option::of(secret())).prop_map(|(mechanism, initial_response)| {
            Command::Auth {
                mechanism,
                initial_response,
            }
        }),
        Just(Command::AuthList),
        Just(Command::Stat),
        prop::option::of(msg()).prop_map(Command::List),
        msg().prop_map(Command::Retr),
        msg().prop_map(Command::Dele),
        Just(Command::Noop),
        Just(Command::Rset),
        Just(Command::Quit),
        (msg(), prop_oneof![0u64..100, any::<u64>()])
            .prop_map(|(msg, lines)| Command::Top { msg, lines }),
        prop::option::of(msg()).prop_map(Command::Uidl),
        Just(Command::Capa),
        Just(Command::Stls),
        Just(Command::Utf8),
        prop_oneof![
            Just(LangRequest::List),
            Just(LangRequest::Default),
            language_tag().prop_map(LangRequest::Tag),
        ]
        .prop_map(Command::Lang),
        unknown_command().prop_map(Command::Unknown),
    ]
}

fn sasl_response() -> impl Strategy<Value = SaslResponse> {
    prop_oneof![
        Just(SaslResponse::Cancel),
        secret().prop_map(SaslResponse::Data)
    ]
}

fn response_code() -> impl Strategy<Value = ResponseCode> {
    prop::collection::vec("[\\x21-\\x2e\\x30-\\x5a\\x5c\\x5e-\\x7e]{1,10}", 1..4)
        .prop_map(|levels| ResponseCode::new(levels).unwrap())
}

fn status_line_with(status: impl Strategy<Value = Status>) -> impl Strategy<Value = StatusLine> {
    (
        status,
        prop::option::of(response_code()),
        line_octets(0..80),
    )
        .prop_map(|(status, code, mut text)| {
            // Without a code, a text starting with `[` could be read as one.
            if code.is_none() {
                while text.first() == Some(&b'[') {
                    text.remove(0);
                }
            }
            StatusLine {
                status,
                code,
                text: Text::new(text).unwrap(),
            }
        })
}

fn status_line() -> impl Strategy<Value = StatusLine> {
    status_line_with(prop_oneof![Just(Status::Ok), Just(Status::Err)])
}

fn ok_line() -> impl Strategy<Value = StatusLine> {
    status_line_with(Just(Status::Ok))
}

fn timestamp() -> impl Strategy<Value = ApopTimestamp> {
    (
        "[\\x21-\\x3b\\x3d\\x3f\\x41-\\x7e]{1,40}",
        "[\\x21-\\x3b\\x3d\\x3f\\x41-\\x7e]{1,40}",
    )
        .prop_map(|(l, d)| ApopTimestamp::new(&format!("<{l}@{d}>")).unwrap())
}

fn greeting() -> impl Strategy<Value = Greeting> {
    (ok_line(), prop::option::of(timestamp())).prop_map(|(mut line, ts)| {
        if let Some(ts) = ts {
            let mut text: Vec<u8> = line
                .text
                .iter()
                .map(|&b| if b == b'<' { b'(' } else { b })
                .collect();
            text.push(b' ');
            text.extend_from_slice(ts.as_str().as_bytes());
            line.text = Text::new(text).unwrap();
        }
        Greeting::new(line)
    })
}

fn uid() -> impl Strategy<Value = Uid> {
    "[\\x21-\\x7e]{1,70}".prop_map(|s| Uid::new(s).unwrap())
}

fn scan_line() -> impl Strategy<Value = ScanLine> {
    (msg(), any::<u64>()).prop_map(|(msg, size)| ScanLine { msg, size })
}

fn uid_line() -> impl Strategy<Value = UidLine> {
    (msg(), uid()).prop_map(|(msg, uid)| UidLine { msg, uid })
}

/// UTF-8 text without CR, LF or NUL, not starting with a space.
fn line_text() -> impl Strategy<Value = String> {
    "([^\\x00\\r\\n ][^\\x00\\r\\n]{0,30})?"
}

fn lang_line() -> impl Strategy<Value = LangLine> {
    (language_tag(), line_text()).prop_map(|(tag, description)| LangLine { tag, description })
}

fn capability() -> impl Strategy<Value = Capability> {
    prop_oneof![
        Just(Capability::Top),
        Just(Capability::User),
        prop::collection::vec(mechanism(), 0..5).prop_map(Capability::Sasl),
        Just(Capability::RespCodes),
        (any::<u32>(), any::<bool>())
            .prop_map(|(seconds, per_user)| Capability::LoginDelay { seconds, per_user }),
        Just(Capability::Pipelining),
        (
            prop_oneof![Just(Expire::Never), any::<u32>().prop_map(Expire::Days)],
            any::<bool>()
        )
            .prop_map(|(policy, per_user)| Capability::Expire { policy, per_user }),
        Just(Capability::Uidl),
        line_text().prop_map(Capability::Implementation),
        Just(Capability::Stls),
        any::<bool>().prop_map(|user| Capability::Utf8 { user }),
        Just(Capability::Lang),
        Just(Capability::AuthRespCode),
        (
            "X-[\\x21-\\x7e]{0,12}",
            prop::collection::vec("[\\x21-\\x7e]{1,12}", 0..4)
        )
            .prop_map(|(tag, params)| Capability::Other {
                tag: tag.to_ascii_uppercase(),
                params
            }),
    ]
}

fn listing<T: std::fmt::Debug>(
    item: impl Strategy<Value = T>,
) -> impl Strategy<Value = Listing<T>> {
    (ok_line(), prop::collection::vec(item, 0..8))
        .prop_map(|(status, items)| Listing { status, items })
}

fn continuation() -> impl Strategy<Value = Continuation> {
    prop::collection::vec(any::<u8>(), 0..200).prop_map(|d| Continuation { data: d.into() })
}

/// A response and the kind of reply it is read as.
fn response() -> impl Strategy<Value = (Response, Expected)> {
    prop_oneof![
        greeting().prop_map(|g| (Response::Greeting(g), Expected::Greeting)),
        (
            status_line_with(Just(Status::Err)),
            prop::sample::select(Expected::ALL.to_vec())
        )
            .prop_map(|(s, e)| (Response::Status(s), e)),
        (
            ok_line(),
            prop::sample::select(vec![
                Expected::Status,
                Expected::Message,
                Expected::Continuation
            ])
        )
            .prop_map(|(s, e)| (Response::Status(s), e)),
        (any::<u32>(), any::<u64>())
            .prop_map(|(count, size)| (Response::Stat(StatReply { count, size }), Expected::Stat)),
        scan_line().prop_map(|s| (Response::Scan(s), Expected::Scan)),
        uid_line().prop_map(|u| (Response::Uid(u), Expected::Uid)),
        listing(scan_line()).prop_map(|l| (Response::ScanListing(l), Expected::ScanListing)),
        listing(uid_line()).prop_map(|l| (Response::UidListing(l), Expected::UidListing)),
        listing(capability()).prop_map(|l| (Response::Capabilities(l), Expected::Capabilities)),
        listing(lang_line()).prop_map(|l| (Response::Languages(l), Expected::Languages)),
        listing(mechanism()).prop_map(|l| (Response::Mechanisms(l), Expected::Mechanisms)),
        continuation().prop_map(|c| (Response::Continuation(c), Expected::Continuation)),
    ]
}

/// `input` with every CRLF turned into a bare LF.
fn lf_only(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    for (i, &b) in input.iter().enumerate() {
        if !(b == b'\r' && input.get(i + 1) == Some(&b'\n')) {
            out.push(b);
        }
    }
    out
}

fn encoded(f: impl FnOnce(&mut BytesMut)) -> BytesMut {
    let mut out = BytesMut::new();
    f(&mut out);
    out
}

/// The line without its CRLF, which must be there and be the only line end.
fn body(out: &[u8]) -> &[u8] {
    assert!(out.ends_with(b"\r\n"), "{out:?}");
    let body = &out[..out.len() - 2];
    assert!(!body.contains(&b'\n') && !body.contains(&b'\r'), "{out:?}");
    body
}

// ---------------------------------------------------------------- properties

proptest! {
    #![proptest_config(config())]

    #[test]
    fn command_round_trip(cmd in command()) {
        let out = encoded(|o| cmd.encode(o));
        prop_assert!(body(&out).starts_with(cmd.keyword().as_bytes()));
        prop_assert_eq!(Command::parse(body(&out)), Ok(cmd));
    }

    #[test]
    fn command_keywords_any_case(cmd in command(), mask in any::<u16>()) {
        let out = encoded(|o| cmd.encode(o));
        let mut line = body(&out).to_vec();
        let kw_len = cmd.keyword().len();
        for (i, b) in line[..kw_len].iter_mut().enumerate() {
            if mask & (1 << (i % 16)) != 0 {
                *b = b.to_ascii_lowercase();
            }
        }
        prop_assert_eq!(Command::parse(&line), Ok(cmd));
    }

    #[test]
    fn sasl_response_round_trip(r in sasl_response()) {
        let out = encoded(|o| r.encode(o));
        prop_assert_eq!(SaslResponse::parse(body(&out)), Ok(r));
    }

    #[test]
    fn response_round_trip((r, expected) in response()) {
        let out = encoded(|o| r.encode(o));
        for limits in [Limits::strict(), Limits::lenient()] {
            prop_assert_eq!(
                Response::parse(expected, &out, &limits),
                Ok(Parsed::Complete { value: r.clone(), consumed: out.len() })
            );
            for cut in 0..out.len() {
                prop_assert_eq!(
                    Response::parse(expected, &out[..cut], &limits),
                    Ok(Parsed::Incomplete),
                    "cut at {}", cut
                );
            }
        }
        // Followed by the next response: only this one is consumed.
        let mut more = out.clone();
        more.extend_from_slice(b"-ERR next\r\n");
        prop_assert_eq!(
            Response::parse(expected, &more, &Limits::lenient()),
            Ok(Parsed::Complete { value: r, consumed: out.len() })
        );
    }

    #[test]
    fn response_bare_lf((r, expected) in response()) {
        let out = encoded(|o| r.encode(o));
        let lf = lf_only(&out);
        prop_assert_eq!(
            Response::parse(expected, &lf, &Limits::lenient()),
            Ok(Parsed::Complete { value: r, consumed: lf.len() })
        );
    }

    #[test]
    fn status_line_round_trip(s in status_line()) {
        let out = encoded(|o| s.encode(o));
        prop_assert_eq!(StatusLine::parse(body(&out)), Ok(s));
    }

    #[test]
    fn greeting_round_trip(g in greeting()) {
        let out = encoded(|o| g.encode(o));
        prop_assert_eq!(Greeting::parse(body(&out)), Ok(g));
    }

    #[test]
    fn greeting_finds_timestamp(line in ok_line(), ts in timestamp()) {
        let mut text: Vec<u8> = line.text.iter().map(|&b| if b == b'<' { b' ' } else { b }).collect();
        text.extend_from_slice(ts.as_str().as_bytes());
        let line = StatusLine { text: Text::new(text).unwrap(), ..line };
        let out = encoded(|o| line.encode(o));
        prop_assert_eq!(Greeting::parse(body(&out)).unwrap().timestamp, Some(ts));
    }

    #[test]
    fn continuation_round_trip(c in continuation()) {
        let out = encoded(|o| c.encode(o));
        prop_assert_eq!(Continuation::parse(body(&out)), Ok(c));
    }

    #[test]
    fn stat_round_trip(count in any::<u32>(), size in any::<u64>()) {
        let r = StatReply { count, size };
        let out = encoded(|o| r.encode(o));
        prop_assert_eq!(StatReply::parse_text(&body(&out)[4..]), Ok(r));
    }

    #[test]
    fn scan_line_round_trip(l in scan_line()) {
        let out = encoded(|o| l.encode(o));
        prop_assert_eq!(ScanLine::parse(body(&out)), Ok(l));
    }

    #[test]
    fn uid_line_round_trip(l in uid_line()) {
        let out = encoded(|o| l.encode(o));
        prop_assert_eq!(UidLine::parse(body(&out)), Ok(l));
    }

    #[test]
    fn lang_line_round_trip(l in lang_line()) {
        let out = encoded(|o| l.encode(o));
        prop_assert_eq!(LangLine::parse(body(&out)), Ok(l));
    }

    #[test]
    fn capability_round_trip(c in capability()) {
        let out = encoded(|o| c.encode(o));
        let line = body(&out);
        prop_assert!(!line.starts_with(b"."));
        prop_assert_eq!(Capability::parse(line), Ok(c));
    }

    #[test]
    fn command_parse_is_total(line in prop::collection::vec(any::<u8>(), 0..64)) {
        if let Ok(cmd) = Command::parse(&line) {
            let out = encoded(|o| cmd.encode(o));
            prop_assert_eq!(Command::parse(body(&out)), Ok(cmd));
        }
        let _ = SaslResponse::parse(&line);
    }

    #[test]
    fn command_like_lines_are_total(
        kw in prop::sample::select(vec![
            "USER", "PASS", "APOP", "AUTH", "STAT", "LIST", "RETR", "DELE", "NOOP", "RSET",
            "QUIT", "TOP", "UIDL", "CAPA", "STLS", "UTF8", "LANG",
        ]),
        args in "( [-+0-9a-zA-Z=*]{0,22}){0,3} ?",
    ) {
        let line = format!("{kw}{args}");
        if let Ok(cmd) = Command::parse(line.as_bytes()) {
            let out = encoded(|o| cmd.encode(o));
            prop_assert_eq!(Command::parse(body(&out)), Ok(cmd));
        }
    }

    #[test]
    fn response_parse_is_total(
        expected in prop::sample::select(Expected::ALL.to_vec()),
        input in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..200),
            "(\\+OK|-ERR|\\+|\\.|[0-9 ]{1,6}|[A-Z ]{1,8}|\\[|\\]|/|<|@|>|\r|\n|\r\n){0,40}"
                .prop_map(String::into_bytes),
        ],
    ) {
        let limits = Limits::strict();
        match Response::parse(expected, &input, &limits) {
            Ok(Parsed::Complete { value, consumed }) => {
                prop_assert!(consumed <= input.len());
                for cut in 0..consumed {
                    prop_assert_eq!(
                        Response::parse(expected, &input[..cut], &limits),
                        Ok(Parsed::Incomplete)
                    );
                }
                let out = encoded(|o| value.encode(o));
                prop_assert_eq!(
                    Response::parse(expected, &out, &Limits::lenient()),
                    Ok(Parsed::Complete { value, consumed: out.len() })
                );
            }
            Ok(_) => {}
            Err(e) => {
                for cut in 0..input.len() {
                    let r = Response::parse(expected, &input[..cut], &limits);
                    prop_assert!(r == Ok(Parsed::Incomplete) || r == Err(e.clone()));
                }
            }
        }
    }
}

#[test]
fn secrets_stay_out_of_debug() {
    let cmd = Command::Pass(Password::new(Bytes::from_static(b"hunter2")).unwrap());
    assert!(!format!("{cmd:?}").contains("hunter2"));
    let cmd = Command::Auth {
        mechanism: Mechanism::new("PLAIN").unwrap(),
        initial_response: Some(Secret::new(&b"\0u\0hunter2"[..])),
    };
    assert!(!format!("{cmd:?}").contains("hunter2"));
}
