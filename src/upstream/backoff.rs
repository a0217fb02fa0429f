//! Exponential backoff with full jitter and a cap, for retrying the upstream.
//!
//! Attempt `n` (from 0) waits a uniformly random time in `[0, min(cap, base · 2ⁿ)]` ("full
//! jitter"): the ceiling doubles so a long outage costs few requests, and the randomness keeps
//! a fleet of agents that lost the upstream together from returning in lock-step. A server's
//! `Retry-After` is a floor on top of that. The random draw is a parameter so tests replay
//! exact sequences.

use std::time::Duration;

/// The longest `Retry-After` honoured; a larger (or absurd) value waits this long and retries.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Retry state of one client.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    failures: u32,
}

impl Backoff {
    /// Starts with no failures. `base` is the first ceiling, `cap` the largest.
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap: cap.max(base),
            failures: 0,
        }
    }

    /// The upper bound of the next wait: `min(cap, base · 2^failures)`.
    pub fn ceiling(&self) -> Duration {
        let factor = 2u32.saturating_pow(self.failures.min(31));
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// Records a failure and returns how long to wait before the next attempt. `unit` is a
    /// uniform draw from `[0, 1]`; `retry_after` is the server's request, if any.
    pub fn fail(&mut self, unit: f64, retry_after: Option<Duration>) -> Duration {
        let jittered = self.ceiling().mul_f64(unit.clamp(0.0, 1.0));
        self.failures = self.failures.saturating_add(1);
        match retry_after {
            Some(asked) => jittered.max(asked.min(MAX_RETRY_AFTER)),
            None => jittered,
        }
    }

    /// Records a success: the next failure starts from `base` again.
    pub fn succeed(&mut self) {
        self.failures = 0;
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_millis(100);
    const CAP: Duration = Duration::from_secs(5);

    #[test]
    fn the_ceiling_doubles_up_to_the_cap() {
        let mut backoff = Backoff::new(BASE, CAP);
        let waits: Vec<_> = (0..9).map(|_| backoff.fail(1.0, None)).collect();
        let ms: Vec<u128> = waits.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
    }

    #[test]
    fn the_wait_is_the_draw_times_the_ceiling() {
        let mut backoff = Backoff::new(BASE, CAP);
        backoff.fail(0.0, None);
        assert_eq!(backoff.fail(0.25, None), Duration::from_millis(50));
        assert_eq!(backoff.fail(0.0, None), Duration::ZERO);
    }

    #[test]
    fn retry_after_is_a_floor_and_is_bounded() {
        let mut backoff = Backoff::new(BASE, CAP);
        assert_eq!(
            backoff.fail(0.5, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(
            backoff.fail(0.5, Some(Duration::from_secs(86_400))),
            MAX_RETRY_AFTER
        );
    }

    #[test]
    fn success_resets_the_ceiling() {
        let mut backoff = Backoff::new(BASE, CAP);
        for _ in 0..6 {
            backoff.fail(1.0, None);
        }
        backoff.succeed();
        assert_eq!(backoff.failures(), 0);
        assert_eq!(backoff.fail(1.0, None), BASE);
    }

    #[tokio::test(start_paused = true)]
    async fn ten_minutes_of_outage_cost_a_bounded_number_of_attempts() {
        // The forwarder's retry loop in miniature, on tokio's paused clock: with the default
        // 1 s base and 5 min cap, a 10-minute outage costs about a dozen requests whatever
        // the draws, instead of the 6,000 a 10 req/s rate limit alone would allow.
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
        let start = tokio::time::Instant::now();
        let outage = Duration::from_secs(600);
        let draws = [0.9, 0.1, 0.5, 0.7, 0.3, 0.8, 0.6, 0.2, 0.95, 0.4];
        let mut attempts = 0;
        while start.elapsed() < outage {
            attempts += 1;
            let draw = draws[attempts % draws.len()];
            tokio::time::sleep(backoff.fail(draw, None)).await;
        }
        assert!(
            attempts <= 20,
            "{attempts} attempts during a 10-minute outage"
        );
        assert!(attempts >= 8, "{attempts}: the ceiling grew too fast");
    }
}
