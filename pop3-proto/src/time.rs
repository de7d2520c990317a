//! The crate's own notion of time.
//!
//! The session machines never read a clock. The caller passes "now" as an
//! [`Instant`]: a number of milliseconds since an epoch of the caller's
//! choosing (process start, `std::time::Instant` at connection start, a
//! simulated clock in tests). Only differences between instants matter.

use core::ops::{Add, Sub};
use core::time::Duration;

/// A point in time, in milliseconds since an arbitrary, caller-chosen epoch.
///
/// ```
/// use core::time::Duration;
/// use pop3_proto::time::Instant;
///
/// let start = Instant::from_millis(1_000);
/// let later = start + Duration::from_secs(2);
/// assert_eq!(later - start, Duration::from_secs(2));
/// assert_eq!(later.as_millis(), 3_000);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(u64);

impl Instant {
    /// The epoch itself.
    pub const ZERO: Instant = Instant(0);

    /// An instant `millis` milliseconds after the epoch.
    pub const fn from_millis(millis: u64) -> Self {
        Instant(millis)
    }

    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// `self - earlier`, or zero when `earlier` is later than `self`.
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, rhs: Duration) -> Instant {
        let ms = u64::try_from(rhs.as_millis()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_add(ms))
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_since(rhs)
    }
}
