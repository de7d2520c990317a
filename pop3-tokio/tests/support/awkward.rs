//! A maildrop of awkward messages, as stored on disk (mostly LF line ends,
//! as a Unix Maildir keeps them). Every byte is deterministic.
//!
//! The names are usable as parts of Maildir file names (no `/`, `:` or `.`).

use std::sync::OnceLock;

/// Size of the decoded attachment in [`big_attachment`]: its base64 text is
/// 20 MiB.
pub const BIG_ATTACHMENT_DECODED: usize = 15 * 1024 * 1024;

/// Length of the long line in the `long-line` and `long-last-line` messages.
pub const LONG_LINE: usize = 100 * 1024;

fn headers(subject: &str, n: u32) -> Vec<u8> {
    format!(
        "From: Sender <sender@example.org>\n\
         To: Receiver <receiver@example.org>\n\
         Subject: {subject}\n\
         Date: Mon, 01 Jan 2024 00:00:{n:02} +0000\n\
         Message-ID: <awkward-{n}@example.org>\n\
         \n"
    )
    .into_bytes()
}

fn message(subject: &str, n: u32, body: &[u8]) -> Vec<u8> {
    let mut m = headers(subject, n);
    m.extend_from_slice(body);
    m
}

/// The awkward maildrop, in order. Includes the 20 MiB [`big_attachment`];
/// see [`small`] for the same without it.
pub fn maildrop() -> Vec<(String, Vec<u8>)> {
    let mut all = small();
    all.insert(8, ("big-attachment".to_string(), big_attachment().to_vec()));
    all
}

/// The awkward maildrop without the big attachment (fast to move around).
pub fn small() -> Vec<(String, Vec<u8>)> {
    let mut crlf = headers("stored with CRLF", 5);
    crlf.extend_from_slice(b"every line of this file\n.ends with CRLF\n.\nlast\n");
    let crlf = crlf
        .split(|&b| b == b'\n')
        .collect::<Vec<_>>()
        .join(&b"\r\n"[..]);

    let mut eight_bit = headers("8-bit and NUL bytes", 7);
    eight_bit.extend_from_slice("UTF-8: Gr\u{fc}\u{df}e \u{20ac} \u{1f4ec}\n".as_bytes());
    eight_bit.extend_from_slice(b"Latin-1: caf\xe9 na\xefve \xff\xfe\n");
    eight_bit.extend_from_slice(b"NUL: a\0b\0\0c\n");
    eight_bit.extend_from_slice(b"\0\n");
    eight_bit.extend_from_slice(b"controls: \x01\x02\x1b[0m\x7f tab\there\n");
    eight_bit.extend_from_slice(b"all high bytes: ");
    eight_bit.extend((0x80..=0xffu8).collect::<Vec<_>>());
    eight_bit.extend_from_slice(b"\nend\n");

    let mut long = headers("one 100 KiB line", 10);
    long.extend((0..LONG_LINE).map(|i| b"abcdefghijklmnopqrstuvwxyz0123456789"[i % 36]));
    long.extend_from_slice(b"\nafter the long line\n");

    let mut long_last = headers("ends with a 100 KiB line, no newline", 12);
    long_last.extend((0..LONG_LINE).map(|i| b"0123456789.ABCDEF"[i % 17]));

    vec![
        (
            "plain".to_string(),
            message("plain", 1, b"Hello.\nThis one is simple.\n"),
        ),
        (
            "dot-lines".to_string(),
            message(
                "lines starting with dots",
                2,
                b".leading dot\n..two dots\n...three dots\n. dot space\n.\n..\nend .\n.\r.\nlast\n",
            ),
        ),
        (
            "lone-dot-last".to_string(),
            message("a lone dot is the last line", 3, b"above the dot\n.\n"),
        ),
        (
            "dot-no-final-newline".to_string(),
            message(
                "ends with a dot, no newline",
                4,
                b"the next line is a dot\n.",
            ),
        ),
        ("crlf-stored".to_string(), crlf),
        (
            "mixed-line-ends".to_string(),
            message(
                "mixed line ends",
                6,
                b"crlf\r\nlf\n\ncrlf again\r\n\r\n.dot crlf\r\n.dot lf\nlast lf\n",
            ),
        ),
        ("eight-bit-nul".to_string(), eight_bit),
        (
            "no-final-newline".to_string(),
            message("no final newline", 8, b"first line\nno newline at the end"),
        ),
        // index 8: big-attachment (in `maildrop` only)
        (
            "headers-only".to_string(),
            headers("headers and the empty line, no body", 9),
        ),
        (
            "headers-no-separator".to_string(),
            b"From: Sender <sender@example.org>\nSubject: no empty line, no body\n".to_vec(),
        ),
        ("long-line".to_string(), long),
        ("empty-file".to_string(), Vec::new()),
        ("long-last-line".to_string(), long_last),
    ]
}

/// A MIME message with a 20 MiB base64 attachment (76-character lines) of
/// pseudo-random bytes from a fixed seed. Built once per test process.
pub fn big_attachment() -> &'static [u8] {
    static BIG: OnceLock<Vec<u8>> = OnceLock::new();
    BIG.get_or_init(|| {
        let mut m = headers("a 20 MiB attachment", 11);
        // Insert MIME headers before the empty line ending the header block.
        m.truncate(m.len() - 1);
        m.extend_from_slice(
            b"MIME-Version: 1.0\n\
              Content-Type: multipart/mixed; boundary=\"=-boundary-=\"\n\
              \n\
              --=-boundary-=\n\
              Content-Type: text/plain; charset=us-ascii\n\
              \n\
              The attachment follows.\n\
              \n\
              --=-boundary-=\n\
              Content-Type: application/octet-stream\n\
              Content-Transfer-Encoding: base64\n\
              Content-Disposition: attachment; filename=\"random.bin\"\n\
              \n",
        );
        let data = pseudo_random(BIG_ATTACHMENT_DECODED, 0x5eed_1234_abcd_0042);
        for chunk in data.chunks(57) {
            base64_line(chunk, &mut m);
            m.push(b'\n');
        }
        m.extend_from_slice(b"--=-boundary-=--\n");
        m
    })
}

/// `len` bytes from a xorshift64* generator seeded with `seed`.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Appends the standard base64 encoding of `input` (with padding).
fn base64_line(input: &[u8], out: &mut Vec<u8>) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for group in input.chunks(3) {
        let b = [
            group[0],
            group.get(1).copied().unwrap_or(0),
            group.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(ALPHABET[(n >> 18) as usize & 63]);
        out.push(ALPHABET[(n >> 12) as usize & 63]);
        out.push(if group.len() > 1 {
            ALPHABET[(n >> 6) as usize & 63]
        } else {
            b'='
        });
        out.push(if group.len() > 2 {
            ALPHABET[n as usize & 63]
        } else {
            b'='
        });
    }
}
