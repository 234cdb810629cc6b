//! Time as a parameter: the [`Clock`] port, the one real clock and a manual clock for tests.
//!
//! Nothing else in the crate reads the system time (clippy's `disallowed-methods` enforces it), so
//! every expiry, rotation and validity rule can be tested by moving a [`ManualClock`] instead of
//! sleeping.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use time::OffsetDateTime;

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> OffsetDateTime;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one place that reads the system time
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that only moves when told to; used by tests to cross expiry and rotation boundaries.
#[derive(Debug)]
pub struct ManualClock {
    unix_nanos: AtomicI64,
    // Serialises `advance` so concurrent advances add up instead of racing.
    step: Mutex<()>,
}

impl ManualClock {
    pub fn new(start: OffsetDateTime) -> Self {
        Self { unix_nanos: AtomicI64::new(to_nanos(start)), step: Mutex::new(()) }
    }

    /// Sets the clock to `instant`.
    pub fn set(&self, instant: OffsetDateTime) {
        self.unix_nanos.store(to_nanos(instant), Ordering::SeqCst);
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: std::time::Duration) {
        let _guard = self.step.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = self.now() + by;
        self.set(now);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.unix_nanos.load(Ordering::SeqCst)))
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}

fn to_nanos(instant: OffsetDateTime) -> i64 {
    i64::try_from(instant.unix_timestamp_nanos()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let clock = ManualClock::new(datetime!(2026-01-01 00:00 UTC));
        assert_eq!(clock.now(), datetime!(2026-01-01 00:00 UTC));
        clock.advance(std::time::Duration::from_secs(90));
        assert_eq!(clock.now(), datetime!(2026-01-01 00:01:30 UTC));
    }
}
