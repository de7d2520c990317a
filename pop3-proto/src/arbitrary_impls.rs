//! `arbitrary::Arbitrary` for the command and response types (feature
//! `arbitrary`). Every impl builds only valid values, through the types'
//! own validating constructors, so that a fuzz target can encode a value and
//! expect to parse the same value back.

use alloc::string::String;
use alloc::vec::Vec;
use arbitrary::{Arbitrary, Result, Unstructured};
use bytes::Bytes;

use crate::command::{
    ApopDigest, Command, LangRequest, Password, SaslResponse, UnknownCommand, Username,
};
use crate::response::{
    Capability, CodeKind, Continuation, Expire, Greeting, LangLine, Listing, Response,
    ResponseCode, ScanLine, StatReply, Status, StatusLine, Text, UidLine,
};
use crate::types::{ApopTimestamp, LanguageTag, Mechanism, MessageNumber, Secret, Uid};

/// `min..=max` octets, each mapped by `f`.
fn octets(
    u: &mut Unstructured<'_>,
    min: usize,
    max: usize,
    f: impl Fn(u8) -> u8,
) -> Result<Vec<u8>> {
    let len = u.int_in_range(min..=max)?;
    let mut v = Vec::with_capacity(len);
    for _ in 0..len {
        v.push(f(u8::arbitrary(u)?));
    }
    Ok(v)
}

/// Maps an octet into `set`.
fn pick(set: &'static [u8]) -> impl Fn(u8) -> u8 {
    move |b| set[usize::from(b) % set.len()]
}

/// Maps an octet into `lo..=hi`.
fn range(lo: u8, hi: u8) -> impl Fn(u8) -> u8 {
    move |b| lo + b % (hi - lo + 1)
}

/// A printable ASCII octet other than those in `except`.
fn vchar_except(except: &'static [u8]) -> impl Fn(u8) -> u8 {
    move |b| {
        let c = 0x21 + b % 94;
        if except.contains(&c) { b'x' } else { c }
    }
}

/// Any octet but CR, LF and NUL.
fn line_octet(b: u8) -> u8 {
    match b {
        0 | b'\r' | b'\n' => b'_',
        b => b,
    }
}

/// A UTF-8 string of up to `max_chars` characters without CR, LF or NUL,
/// not starting with a space.
fn line_string(u: &mut Unstructured<'_>, max_chars: usize) -> Result<String> {
    let n = u.int_in_range(0..=max_chars)?;
    let mut s = String::new();
    for _ in 0..n {
        let c = char::arbitrary(u)?;
        let c = match c {
            '\0' | '\r' | '\n' => '.',
            c => c,
        };
        s.push(c);
    }
    if s.starts_with(' ') {
        s.replace_range(..1, "-");
    }
    Ok(s)
}

const MECH: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";
const TAG: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-";

impl<'a> Arbitrary<'a> for MessageNumber {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let n = u.int_in_range(1..=u32::MAX)?;
        Ok(MessageNumber::new(n).unwrap_or(MessageNumber::new(1).expect("1 is not 0")))
    }
}

impl<'a> Arbitrary<'a> for Uid {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let v = octets(u, 1, Uid::MAX_LEN, range(0x21, 0x7e))?;
        Uid::new(v).map_err(|_| arbitrary::Error::IncorrectFormat)
    }
}

impl<'a> Arbitrary<'a> for Secret {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let v = octets(u, 0, 300, |b| b)?;
        Ok(Secret::new(v))
    }
}

impl<'a> Arbitrary<'a> for Mechanism {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let v = octets(u, 1, Mechanism::MAX_LEN, pick(MECH))?;
        let s = String::from_utf8(v).map_err(|_| arbitrary::Error::IncorrectFormat)?;
        Mechanism::new(&s).map_err(|_| arbitrary::Error::IncorrectFormat)
    }
}

impl<'a> Arbitrary<'a> for LanguageTag {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let v = octets(u, 1, 12, pick(TAG))?;
        let s = String::from_utf8(v).map_err(|_| arbitrary::Error::IncorrectFormat)?;
        LanguageTag::new(&s).map_err(|_| arbitrary::Error::IncorrectFormat)
    }
}

impl<'a> Arbitrary<'a> for ApopTimestamp {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let part = vchar_except(b"<>@");
        let local = octets(u, 1, 60, &part)?;
        let domain = octets(u, 1, 60, &part)?;
        let mut s = Vec::new();
        s.push(b'<');
        s.extend_from_slice(&local);
        s.push(b'@');
        s.extend_from_slice(&domain);
        s.push(b'>');
        let s = String::from_utf8(s).map_err(|_| arbitrary::Error::IncorrectFormat)?;
        ApopTimestamp::new(&s).map_err(|_| arbitrary::Error::IncorrectFormat)
    }
}

impl<'a> Arbitrary<'a> for Username {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let n = u.int_in_range(1..=40)?;
        let mut s = String::new();
        for _ in 0..n {
            let c = char::arbitrary(u)?;
            let c = if (c as u32) <= 0x20 || c == '\u{7f}' {
                'u'
            } else {
                c
            };
            if s.len() + c.len_utf8() > Username::MAX_LEN {
                break;
            }
            s.push(c);
        }
        Username::new(&s).map_err(|_| arbitrary::Error::IncorrectFormat)
    }
}

impl<'a> Arbitrary<'a> for Password {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let v = octets(u, 1, 200, line_octet)?;
        Password::new(v).map_err(|_| arbitrary::Error::IncorrectFormat)
    }
}

impl<'a> Arbitrary<'a> for ApopDigest {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(ApopDigest::from_bytes(<[u8; 16]>::arbitrary(u)?))
    }
}

impl<'a> Arbitrary<'a> for UnknownCommand {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        // Known keywords never start with X: prefixing one keeps it unknown.
        let mut kw = Vec::from(&b"X"[..]);
        kw.extend(octets(
            u,
            0,
            UnknownCommand::MAX_KEYWORD_LEN - 1,
            range(0x21, 0x7e),
        )?);
        let kw = String::from_utf8(kw).map_err(|_| arbitrary::Error::IncorrectFormat)?;
        let args = octets(u, 0, 100, line_octet)?;
        UnknownCommand::new(&kw, args).map_err(|_| arbitrary::Error::IncorrectFormat)
    }
}

impl<'a> Arbitrary<'a> for LangRequest {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match u.int_in_range(0..=2)? {
            0 => LangRequest::List,
            1 => LangRequest::Default,
            _ => LangRequest::Tag(LanguageTag::arbitrary(u)?),
        })
    }
}

impl<'a> Arbitrary<'a> for Command {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match u.int_in_range(0..=18)? {
            0 => Command::User(Username::arbitrary(u)?),
            1 => Command::Pass(Password::arbitrary(u)?),
            2 => Command::Apop {
                name: Username::arbitrary(u)?,
                digest: ApopDigest::arbitrary(u)?,
            },
            3 => Command::Auth {
                mechanism: Mechanism::arbitrary(u)?,
                initial_response: Option::<Secret>::arbitrary(u)?,
            },
            4 => Command::AuthList,
            5 => Command::Stat,
            6 => Command::List(Option::<MessageNumber>::arbitrary(u)?),
            7 => Command::Retr(MessageNumber::arbitrary(u)?),
            8 => Command::Dele(MessageNumber::arbitrary(u)?),
            9 => Command::Noop,
            10 => Command::Rset,
            11 => Command::Quit,
            12 => Command::Top {
                msg: MessageNumber::arbitrary(u)?,
                lines: u64::arbitrary(u)?,
            },
            13 => Command::Uidl(Option::<MessageNumber>::arbitrary(u)?),
            14 => Command::Capa,
            15 => Command::Stls,
            16 => Command::Utf8,
            17 => Command::Lang(LangRequest::arbitrary(u)?),
            _ => Command::Unknown(UnknownCommand::arbitrary(u)?),
        })
    }
}

impl<'a> Arbitrary<'a> for SaslResponse {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(if u.ratio(1, 8)? {
            SaslResponse::Cancel
        } else {
            SaslResponse::Data(Secret::arbitrary(u)?)
        })
    }
}

impl<'a> Arbitrary<'a> for Status {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(if bool::arbitrary(u)? {
            Status::Ok
        } else {
            Status::Err
        })
    }
}

impl<'a> Arbitrary<'a> for ResponseCode {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        const KINDS: [CodeKind; 6] = [
            CodeKind::InUse,
            CodeKind::LoginDelay,
            CodeKind::SysTemp,
            CodeKind::SysPerm,
            CodeKind::Auth,
            CodeKind::Utf8,
        ];
        if u.ratio(1, 2)? {
            let kind = *u.choose(&KINDS)?;
            return ResponseCode::known(kind).ok_or(arbitrary::Error::IncorrectFormat);
        }
        let n = u.int_in_range(1..=3)?;
        let mut levels = Vec::new();
        for _ in 0..n {
            let v = octets(u, 1, 12, vchar_except(b"/[]"))?;
            levels.push(String::from_utf8(v).map_err(|_| arbitrary::Error::IncorrectFormat)?);
        }
        ResponseCode::new(levels).map_err(|_| arbitrary::Error::IncorrectFormat)
    }
}

impl<'a> Arbitrary<'a> for Text {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let v = octets(u, 0, 120, line_octet)?;
        Text::new(v).map_err(|_| arbitrary::Error::IncorrectFormat)
    }
}

impl<'a> Arbitrary<'a> for StatusLine {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let status = Status::arbitrary(u)?;
        let code = Option::<ResponseCode>::arbitrary(u)?;
        let mut text = Text::arbitrary(u)?;
        if code.is_none() && text.first() == Some(&b'[') {
            // Would be read back as a response code.
            text = Text::new(Bytes::copy_from_slice(&text[1..]))
                .map_err(|_| arbitrary::Error::IncorrectFormat)?;
        }
        if code.is_none() && text.first() == Some(&b'[') {
            text = Text::empty();
        }
        Ok(StatusLine { status, code, text })
    }
}

fn ok_line(u: &mut Unstructured<'_>) -> Result<StatusLine> {
    let mut line = StatusLine::arbitrary(u)?;
    line.status = Status::Ok;
    Ok(line)
}

impl<'a> Arbitrary<'a> for Greeting {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let mut line = ok_line(u)?;
        if bool::arbitrary(u)? {
            let ts = ApopTimestamp::arbitrary(u)?;
            let mut text: Vec<u8> = line
                .text
                .iter()
                .map(|&b| if b == b'<' { b'(' } else { b })
                .collect();
            if !text.is_empty() {
                text.push(b' ');
            }
            text.extend_from_slice(ts.as_str().as_bytes());
            line.text = Text::new(text).map_err(|_| arbitrary::Error::IncorrectFormat)?;
        }
        Ok(Greeting::new(line))
    }
}

impl<'a> Arbitrary<'a> for Continuation {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(Continuation {
            data: Bytes::from(octets(u, 0, 300, |b| b)?),
        })
    }
}

impl<'a> Arbitrary<'a> for StatReply {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(StatReply {
            count: u32::arbitrary(u)?,
            size: u64::arbitrary(u)?,
        })
    }
}

impl<'a> Arbitrary<'a> for ScanLine {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(ScanLine {
            msg: MessageNumber::arbitrary(u)?,
            size: u64::arbitrary(u)?,
        })
    }
}

impl<'a> Arbitrary<'a> for UidLine {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(UidLine {
            msg: MessageNumber::arbitrary(u)?,
            uid: Uid::arbitrary(u)?,
        })
    }
}

impl<'a> Arbitrary<'a> for LangLine {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(LangLine {
            tag: LanguageTag::arbitrary(u)?,
            description: line_string(u, 40)?,
        })
    }
}

impl<'a> Arbitrary<'a> for Expire {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(if u.ratio(1, 4)? {
            Expire::Never
        } else {
            Expire::Days(u32::arbitrary(u)?)
        })
    }
}

impl<'a> Arbitrary<'a> for Capability {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match u.int_in_range(0..=13)? {
            0 => Capability::Top,
            1 => Capability::User,
            2 => Capability::Sasl(Vec::<Mechanism>::arbitrary(u)?),
            3 => Capability::RespCodes,
            4 => Capability::LoginDelay {
                seconds: u32::arbitrary(u)?,
                per_user: bool::arbitrary(u)?,
            },
            5 => Capability::Pipelining,
            6 => Capability::Expire {
                policy: Expire::arbitrary(u)?,
                per_user: bool::arbitrary(u)?,
            },
            7 => Capability::Uidl,
            8 => Capability::Implementation(line_string(u, 40)?),
            9 => Capability::Stls,
            10 => Capability::Utf8 {
                user: bool::arbitrary(u)?,
            },
            11 => Capability::Lang,
            12 => Capability::AuthRespCode,
            _ => {
                // Known tags never start with X-: the prefix keeps it unknown.
                let mut tag = Vec::from(&b"X-"[..]);
                tag.extend(octets(u, 0, 20, range(0x21, 0x7e))?);
                let tag = String::from_utf8(tag)
                    .map_err(|_| arbitrary::Error::IncorrectFormat)?
                    .to_ascii_uppercase();
                let n = u.int_in_range(0..=4)?;
                let mut params = Vec::new();
                for _ in 0..n {
                    let p = octets(u, 1, 20, range(0x21, 0x7e))?;
                    params
                        .push(String::from_utf8(p).map_err(|_| arbitrary::Error::IncorrectFormat)?);
                }
                Capability::Other { tag, params }
            }
        })
    }
}

fn listing<'a, T: Arbitrary<'a>>(u: &mut Unstructured<'a>) -> Result<Listing<T>> {
    Ok(Listing {
        status: ok_line(u)?,
        items: Vec::<T>::arbitrary(u)?,
    })
}

impl<'a> Arbitrary<'a> for Response {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match u.int_in_range(0..=10)? {
            0 => Response::Greeting(Greeting::arbitrary(u)?),
            1 => Response::Status(StatusLine::arbitrary(u)?),
            2 => Response::Stat(StatReply::arbitrary(u)?),
            3 => Response::Scan(ScanLine::arbitrary(u)?),
            4 => Response::Uid(UidLine::arbitrary(u)?),
            5 => Response::ScanListing(listing(u)?),
            6 => Response::UidListing(listing(u)?),
            7 => Response::Capabilities(listing(u)?),
            8 => Response::Languages(listing(u)?),
            9 => Response::Mechanisms(listing(u)?),
            _ => Response::Continuation(Continuation::arbitrary(u)?),
        })
    }
}
