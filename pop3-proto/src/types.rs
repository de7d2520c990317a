//! Small validated value types shared by commands and responses.
//!
//! Each type makes its invalid values unrepresentable: a [`MessageNumber`] is
//! never zero, a [`Uid`] is always 1–70 octets in `0x21..=0x7E`, and so on.
//! Secrets ([`Secret`]) never show in `Debug` output.

use alloc::string::String;
use bytes::Bytes;
use core::fmt;
use core::num::NonZeroU32;

/// A message number: 1..=n within a maildrop (RFC 1939 §4). Never zero.
///
/// ```
/// use pop3_proto::types::MessageNumber;
/// assert!(MessageNumber::new(0).is_none());
/// assert_eq!(MessageNumber::new(7).unwrap().get(), 7);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageNumber(NonZeroU32);

impl MessageNumber {
    /// The number `n`, or `None` for zero.
    pub const fn new(n: u32) -> Option<Self> {
        match NonZeroU32::new(n) {
            Some(n) => Some(MessageNumber(n)),
            None => None,
        }
    }

    /// The number as an integer (at least 1).
    pub const fn get(self) -> u32 {
        self.0.get()
    }

    /// The zero-based index of this message in a listing.
    pub const fn index(self) -> usize {
        (self.0.get() - 1) as usize
    }

    /// The message number of the zero-based `index`, if it fits.
    pub fn from_index(index: usize) -> Option<Self> {
        u32::try_from(index.checked_add(1)?)
            .ok()
            .and_then(Self::new)
    }
}

impl fmt::Debug for MessageNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

impl fmt::Display for MessageNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Why a value was rejected by one of the validating constructors here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidValue {
    /// The value is empty.
    Empty,
    /// The value is longer than the type allows.
    TooLong {
        /// The largest length allowed, in octets.
        max: usize,
    },
    /// The octet at `at` is not allowed in this type.
    BadOctet {
        /// Offset of the first offending octet.
        at: usize,
    },
    /// The value does not have the required shape (e.g. `<local@domain>`).
    Malformed,
}

impl fmt::Display for InvalidValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidValue::Empty => f.write_str("empty value"),
            InvalidValue::TooLong { max } => write!(f, "longer than {max} octets"),
            InvalidValue::BadOctet { at } => write!(f, "octet not allowed at offset {at}"),
            InvalidValue::Malformed => f.write_str("malformed value"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for InvalidValue {}

fn check_octets(value: &[u8], max: usize, ok: impl Fn(u8) -> bool) -> Result<(), InvalidValue> {
    if value.is_empty() {
        return Err(InvalidValue::Empty);
    }
    if value.len() > max {
        return Err(InvalidValue::TooLong { max });
    }
    match value.iter().position(|&b| !ok(b)) {
        Some(at) => Err(InvalidValue::BadOctet { at }),
        None => Ok(()),
    }
}

/// A unique-id as UIDL reports it: 1 to 70 octets in `0x21..=0x7E` (RFC 1939 §7).
///
/// ```
/// use pop3_proto::types::Uid;
/// let uid = Uid::new("QhdPYR:00WBw1Ph7x7").unwrap();
/// assert_eq!(uid.as_str(), "QhdPYR:00WBw1Ph7x7");
/// assert!(Uid::new("has space").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Uid(Bytes);

impl Uid {
    /// The longest unique-id allowed, in octets.
    pub const MAX_LEN: usize = 70;

    /// Validates `value` as a unique-id.
    pub fn new(value: impl Into<Bytes>) -> Result<Self, InvalidValue> {
        let value = value.into();
        check_octets(&value, Self::MAX_LEN, |b| (0x21..=0x7e).contains(&b))?;
        Ok(Uid(value))
    }

    /// The unique-id's octets.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The unique-id as text (always printable ASCII).
    pub fn as_str(&self) -> &str {
        // Validated as printable ASCII in `new`.
        core::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Debug for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Uid({:?})", self.as_str())
    }
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Octets that must not appear in logs: passwords, SASL data, APOP digests.
///
/// `Debug` prints only the length. Use [`Secret::expose`] where the value is
/// really needed.
///
/// ```
/// use pop3_proto::types::Secret;
/// let s = Secret::new("tanstaaf");
/// assert_eq!(format!("{s:?}"), "Secret(<8 octets redacted>)");
/// assert_eq!(s.expose(), b"tanstaaf");
/// ```
#[derive(Clone, Eq, Default)]
pub struct Secret(Bytes);

impl PartialEq for Secret {
    /// Compares in time that depends only on the lengths, never on where
    /// the contents differ.
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.expose(), other.expose());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<Bytes>) -> Self {
        Secret(value.into())
    }

    /// The secret octets.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The secret octets, as a cheap clone of the underlying buffer.
    pub fn expose_bytes(&self) -> Bytes {
        self.0.clone()
    }

    /// The number of octets.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<{} octets redacted>)", self.0.len())
    }
}

/// The APOP timestamp of a greeting: a msg-id `<local@domain>` (RFC 1939 §7,
/// RFC 2449 §3), validated so that no digest is ever computed over a malformed
/// one (the CVE-2007-1558 class).
///
/// ```
/// use pop3_proto::types::ApopTimestamp;
/// let ts = ApopTimestamp::new("<1896.697170952@dbc.mtview.ca.us>").unwrap();
/// assert_eq!(ts.digest_hex(b"tanstaaf"), "c4c9334bac560ecc979e58001b3e22fb");
/// assert!(ApopTimestamp::new("<no-at-sign>").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ApopTimestamp(String);

impl ApopTimestamp {
    /// The longest timestamp accepted, in octets.
    pub const MAX_LEN: usize = 256;

    /// Validates `value`: `<`, one or more printable ASCII octets other than
    /// `<`, `>` and space with exactly one `@` that is neither first nor last,
    /// then `>`.
    pub fn new(value: &str) -> Result<Self, InvalidValue> {
        let b = value.as_bytes();
        if b.is_empty() {
            return Err(InvalidValue::Empty);
        }
        if b.len() > Self::MAX_LEN {
            return Err(InvalidValue::TooLong { max: Self::MAX_LEN });
        }
        if b.len() < 5 || b[0] != b'<' || b[b.len() - 1] != b'>' {
            return Err(InvalidValue::Malformed);
        }
        let inner = &b[1..b.len() - 1];
        if let Some(at) = inner
            .iter()
            .position(|&c| !(0x21..=0x7e).contains(&c) || c == b'<' || c == b'>')
        {
            return Err(InvalidValue::BadOctet { at: at + 1 });
        }
        let ats: alloc::vec::Vec<usize> = memchr::memchr_iter(b'@', inner).collect();
        match ats.as_slice() {
            [at] if *at > 0 && *at + 1 < inner.len() => Ok(ApopTimestamp(String::from(value))),
            _ => Err(InvalidValue::Malformed),
        }
    }

    /// The timestamp including its angle brackets.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The APOP digest: lower-case hex of MD5(timestamp ‖ secret) (RFC 1939 §7).
    pub fn digest_hex(&self, secret: &[u8]) -> String {
        use md5::{Digest, Md5};
        let mut h = Md5::new();
        h.update(self.0.as_bytes());
        h.update(secret);
        hex_lower(&h.finalize())
    }
}

impl fmt::Debug for ApopTimestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApopTimestamp({:?})", self.0)
    }
}

impl fmt::Display for ApopTimestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Lower-case hexadecimal of `bytes`.
pub(crate) fn hex_lower(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 15)] as char);
    }
    s
}

/// A SASL mechanism name (RFC 4422 §3.1): 1–20 octets of upper-case letters,
/// digits, `-` and `_`. Input in any case is stored upper-cased.
///
/// ```
/// use pop3_proto::types::Mechanism;
/// assert_eq!(Mechanism::new("cram-md5").unwrap().as_str(), "CRAM-MD5");
/// assert!(Mechanism::new("BAD MECH").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mechanism(String);

impl Mechanism {
    /// The longest mechanism name, in octets.
    pub const MAX_LEN: usize = 20;

    /// Validates and upper-cases `name`.
    pub fn new(name: &str) -> Result<Self, InvalidValue> {
        check_octets(name.as_bytes(), Self::MAX_LEN, |b| {
            b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
        })?;
        Ok(Mechanism(name.to_ascii_uppercase()))
    }

    /// The name, upper case.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mechanism({})", self.0)
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A language tag as used by LANG (RFC 6856 §3; RFC 5646 syntax, checked
/// loosely): 1–64 octets of ASCII letters, digits and `-`.
///
/// ```
/// use pop3_proto::types::LanguageTag;
/// assert_eq!(LanguageTag::new("en-boont").unwrap().as_str(), "en-boont");
/// assert!(LanguageTag::new("*").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LanguageTag(String);

impl LanguageTag {
    /// The longest tag accepted, in octets.
    pub const MAX_LEN: usize = 64;

    /// Validates `tag`.
    pub fn new(tag: &str) -> Result<Self, InvalidValue> {
        check_octets(tag.as_bytes(), Self::MAX_LEN, |b| {
            b.is_ascii_alphanumeric() || b == b'-'
        })?;
        Ok(LanguageTag(String::from(tag)))
    }

    /// The tag as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for LanguageTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LanguageTag({})", self.0)
    }
}

impl fmt::Display for LanguageTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
