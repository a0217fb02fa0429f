//! Retry delays: exponential with full jitter and a cap, for everything that reconnects or
//! retries (the upstream forwarder, the MQTT connection).
//!
//! Attempt `n` (from 0) waits a uniformly random time in `[0, min(cap, base · 2ⁿ)]` ("full
//! jitter"): the ceiling doubles so a long outage costs few attempts, and the randomness keeps
//! a fleet of agents that lost a server together from returning in lock-step. The random draw
//! is a parameter so tests replay exact sequences.
//!
//! Two rules sit on top of the bare [`Backoff`]:
//! - a server's `Retry-After` is a floor on the wait ([`Backoff::fail`]);
//! - a connection is reset to the first ceiling only after it stayed up for a while
//!   ([`ReconnectBackoff`]). rumqttc retries a failed connection as soon as `poll()` is called
//!   again (rumqtt#703, #918), so a broker that accepts and then immediately drops us would
//!   otherwise cause a tight loop.
//!
//! This module imports nothing from the crate, so any layer may use it.

use std::time::Duration;

/// The longest `Retry-After` honoured; a larger (or absurd) value waits this long and retries.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Retry state of one client: how many attempts failed in a row.
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

/// The delay policy of a long-lived connection (the MQTT broker link).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// Ceiling of the first delay.
    pub initial: Duration,
    /// Largest ceiling.
    pub max: Duration,
    /// A connection that lasted at least this long resets the delays to `initial`.
    pub stable_after: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(60),
            stable_after: Duration::from_secs(30),
        }
    }
}

/// A [`Backoff`] for a connection that is reset only after a stable connection, not after
/// every successful connect (see the module documentation).
#[derive(Debug, Clone)]
pub struct ReconnectBackoff {
    stable_after: Duration,
    backoff: Backoff,
}

impl ReconnectBackoff {
    /// A fresh backoff: the next delay is drawn below `policy.initial`.
    pub fn new(policy: BackoffPolicy) -> ReconnectBackoff {
        ReconnectBackoff {
            stable_after: policy.stable_after,
            backoff: Backoff::new(policy.initial, policy.max),
        }
    }

    /// The ceiling of the next delay: `initial · 2^attempt`, capped at `max`.
    pub fn ceiling(&self) -> Duration {
        self.backoff.ceiling()
    }

    /// The delay before the next attempt, given a uniform random `fraction` in `[0, 1)`;
    /// advances the exponent.
    pub fn next_delay(&mut self, fraction: f64) -> Duration {
        self.backoff.fail(fraction, None)
    }

    /// Records that a connection was lost after lasting `uptime`: a long enough connection
    /// starts the next outage from the initial delay again.
    pub fn connection_lasted(&mut self, uptime: Duration) {
        if uptime >= self.stable_after {
            self.backoff.succeed();
        }
    }
}

/// A uniform random fraction in `[0, 1)` from the operating system (jitter needs no
/// cryptographic quality, but a shared fleet image must not share a seed either).
pub fn random_fraction() -> f64 {
    let mut bytes = [0u8; 8];
    // If the OS generator fails there is no jitter, which is safe, only less spread out.
    let _ = getrandom::fill(&mut bytes);
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_millis(100);
    const CAP: Duration = Duration::from_secs(5);

    fn policy() -> BackoffPolicy {
        BackoffPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            stable_after: Duration::from_secs(10),
        }
    }

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

    #[test]
    fn reconnect_ceilings_double_up_to_the_cap() {
        let mut backoff = ReconnectBackoff::new(policy());
        let ceilings: Vec<u64> = (0..6)
            .map(|_| {
                let ceiling = backoff.ceiling().as_millis() as u64;
                backoff.next_delay(0.5);
                ceiling
            })
            .collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
        for _ in 0..100 {
            backoff.next_delay(0.9);
        }
        assert_eq!(backoff.ceiling(), Duration::from_secs(1));
    }

    #[test]
    fn reconnect_delays_are_a_jittered_fraction_of_the_ceiling() {
        let mut backoff = ReconnectBackoff::new(policy());
        assert_eq!(backoff.next_delay(0.0), Duration::ZERO);
        assert_eq!(backoff.next_delay(0.5), Duration::from_millis(100));
        for _ in 0..1000 {
            let fraction = random_fraction();
            assert!((0.0..1.0).contains(&fraction), "{fraction}");
        }
    }

    #[test]
    fn only_a_stable_connection_resets_the_exponent() {
        let mut backoff = ReconnectBackoff::new(policy());
        for _ in 0..4 {
            backoff.next_delay(0.5);
        }
        backoff.connection_lasted(Duration::from_secs(1));
        assert_eq!(backoff.ceiling(), Duration::from_millis(1000));
        backoff.connection_lasted(Duration::from_secs(10));
        assert_eq!(backoff.ceiling(), Duration::from_millis(100));
    }
}
