//! Wall time for records, injectable so retention and idempotency can be tested without waiting
//! 90 days. Only record timestamps come from here; intervals and timeouts use tokio's monotonic
//! clock.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// A source of wall-clock time (UTC milliseconds since the Unix epoch).
pub trait Clock: Send + Sync {
    /// Now, in UTC milliseconds.
    fn now_ms(&self) -> i64;

    /// Whether [`Clock::now_ms`] can be trusted now: events stamped while it cannot are marked
    /// (`Event::clock_synchronized`).
    fn synchronized(&self) -> bool;
}

/// The system clock: what the agent uses in production.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }

    /// The kernel's view ([`crate::clock_sync`]): synchronised once NTP disciplines the clock.
    fn synchronized(&self) -> bool {
        crate::clock_sync::clock_sync().is_synchronized()
    }
}

/// A clock that only moves when told to; shared between clones. For tests (retention after
/// 91 days) and for proving that re-running a read at the same instant changes nothing.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock standing at `now_ms`.
    pub fn at(now_ms: i64) -> Self {
        Self(Arc::new(AtomicI64::new(now_ms)))
    }

    /// Moves the clock forward by `ms`. A test hook, like the manual clock itself: retention and
    /// backup schedules are proved without waiting.
    pub fn advance_ms(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }

    /// A manual clock is set by its test, so it is as good as synchronised.
    fn synchronized(&self) -> bool {
        true
    }
}

/// A UTC millisecond time as `2026-11-22 10:24:55Z`, for log lines and listings.
pub fn format_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%SZ").to_string())
        .unwrap_or_else(|| format!("{ms} ms"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told_and_clones_share_it() {
        let clock = ManualClock::at(1_000);
        let other = clock.clone();
        clock.advance_ms(500);
        assert_eq!(other.now_ms(), 1_500);
        assert_eq!(format_ms(0), "1970-01-01 00:00:00Z");
    }
}
