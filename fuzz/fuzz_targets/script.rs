#![allow(dead_code)]
//! The input format shared by the session targets, chosen so that a seed
//! file is a small header followed by the peer's bytes as they would be on
//! the wire:
//!
//! ```text
//! flags: u8, more: u8, chunk: u8,
//! cut count: u8, cut count × u16 (little endian),
//! clock count: u8, clock count × (offset: u16 LE, step: u8),
//! the peer's bytes (the rest)
//! ```
//!
//! A missing header byte reads as 0, so five zero octets and a transcript
//! make a seed.

/// Clock steps, in milliseconds: around the timers the machines use (the
/// server's one-second auth failure delay, three-minute login timeout and
/// ten-minute autologout; the client's two-minute reply timeout).
const STEPS: [u64; 16] = [
    0, 1, 999, 1_000, 1_001, 30_000, 119_999, 120_000, 120_001, 179_999, 180_000, 180_001, 599_999,
    600_000, 600_001, 3_600_000,
];

/// A decoded input.
#[derive(Debug, Clone)]
pub struct Script<'a> {
    pub flags: u8,
    pub more: u8,
    pub chunk: u8,
    pub cuts: Vec<u16>,
    /// (offset, milliseconds): time passes once the octets before `offset`
    /// were offered, whatever the cuts.
    pub clock: Vec<(usize, u64)>,
    pub data: &'a [u8],
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
}

impl<'a> Script<'a> {
    pub fn parse(input: &'a [u8]) -> Script<'a> {
        let mut r = Reader(input);
        let flags = r.u8();
        let more = r.u8();
        let chunk = r.u8();
        let n = usize::from(r.u8() % 33);
        let cuts = (0..n).map(|_| r.u16()).collect();
        let n = usize::from(r.u8() % 17);
        let clock = (0..n)
            .map(|_| {
                let at = usize::from(r.u16());
                let step = STEPS[usize::from(r.u8() % 16)];
                (at, step)
            })
            .collect();
        Script {
            flags,
            more,
            chunk,
            cuts,
            clock,
            data: r.0,
        }
    }

    /// What to do, in order: feed these octets, let this much time pass.
    /// The clock events sit at the same offsets whatever `cuts` is; the
    /// cuts only add feeding boundaries.
    pub fn steps(&self, cuts: &[u16]) -> Vec<Step> {
        let len = self.data.len();
        let mut clock: Vec<(usize, usize, u64)> = self
            .clock
            .iter()
            .enumerate()
            .map(|(i, &(at, ms))| (at.min(len), i, ms))
            .collect();
        clock.sort_unstable();
        let mut bounds: Vec<usize> = cuts.iter().map(|&c| usize::from(c).min(len)).collect();
        bounds.extend(clock.iter().map(|c| c.0));
        bounds.push(len);
        bounds.sort_unstable();
        bounds.dedup();
        let mut steps = Vec::new();
        let mut pos = 0;
        let mut next_clock = clock.into_iter().peekable();
        for b in bounds {
            if b > pos {
                steps.push(Step::Feed(pos, b));
                pos = b;
            }
            while let Some(&(at, _, ms)) = next_clock.peek() {
                if at != pos {
                    break;
                }
                steps.push(Step::Clock(ms));
                next_clock.next();
            }
        }
        steps
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Feed(usize, usize),
    Clock(u64),
}
