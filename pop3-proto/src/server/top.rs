//! TOP's cut: where, in a message streamed in chunks, the header and the
//! first `n` body lines end (RFC 1939 §7).

/// What has been seen of the current header line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineSoFar {
    /// Nothing: at the start of a line.
    Empty,
    /// Only a CR.
    Cr,
    /// Some other octet.
    Text,
}

/// Finds the end of the header, the blank line and `n` body lines. A line
/// ends with LF (a CR before it belongs to the line end), as the body
/// encoder sees it.
#[derive(Debug, Clone)]
pub(crate) struct TopCut {
    in_body: bool,
    remaining: u64,
    line: LineSoFar,
}

impl TopCut {
    /// A cut after `lines` body lines.
    pub(crate) fn new(lines: u64) -> Self {
        TopCut {
            in_body: false,
            remaining: lines,
            line: LineSoFar::Empty,
        }
    }

    /// Feeds the next chunk. `Some(end)`: send `chunk[..end]` and stop;
    /// `None`: send the whole chunk and go on.
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> Option<usize> {
        if self.in_body && self.remaining == 0 {
            return Some(0);
        }
        let mut pos = 0;
        while pos < chunk.len() {
            let rest = &chunk[pos..];
            let lf = memchr::memchr(b'\n', rest);
            if self.in_body {
                let i = lf?;
                pos += i + 1;
                self.remaining -= 1;
                if self.remaining == 0 {
                    return Some(pos);
                }
                continue;
            }
            match lf {
                Some(i) => {
                    let line = &rest[..i];
                    let blank = match self.line {
                        LineSoFar::Empty => line.is_empty() || line == b"\r",
                        LineSoFar::Cr => line.is_empty(),
                        LineSoFar::Text => false,
                    };
                    pos += i + 1;
                    self.line = LineSoFar::Empty;
                    if blank {
                        self.in_body = true;
                        if self.remaining == 0 {
                            return Some(pos);
                        }
                    }
                }
                None => {
                    self.line = match (self.line, rest) {
                        (LineSoFar::Empty, b"\r") => LineSoFar::Cr,
                        _ => LineSoFar::Text,
                    };
                    return None;
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::TopCut;

    fn cut_all(msg: &[u8], n: u64, split: usize) -> usize {
        let mut t = TopCut::new(n);
        let mut sent = 0;
        for chunk in msg.chunks(split.max(1)) {
            match t.feed(chunk) {
                Some(end) => return sent + end,
                None => sent += chunk.len(),
            }
        }
        sent
    }

    #[test]
    fn cuts_after_header_and_lines_whatever_the_chunking() {
        let msg = b"A: 1\r\nB: 2\r\n\r\nl1\r\nl2\nl3\r\n";
        for split in 1..=msg.len() {
            assert_eq!(cut_all(msg, 0, split), 14, "split {split}");
            assert_eq!(cut_all(msg, 1, split), 18, "split {split}");
            assert_eq!(cut_all(msg, 2, split), 21, "split {split}");
            assert_eq!(cut_all(msg, 3, split), msg.len(), "split {split}");
            assert_eq!(cut_all(msg, 99, split), msg.len(), "split {split}");
        }
    }

    #[test]
    fn bare_lf_blank_line_and_no_blank_line() {
        assert_eq!(cut_all(b"A: 1\n\nbody\n", 0, 3), 6);
        assert_eq!(cut_all(b"A: 1\r\nB: 2\r\n", 0, 2), 12);
        assert_eq!(cut_all(b"\r\nbody\r\n", 0, 1), 2);
    }
}
