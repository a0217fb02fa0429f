//! Reconnect delays: exponential with full jitter, capped, reset only after a stable connection.
//!
//! rumqttc retries a failed connection as soon as `poll()` is called again (rumqtt#703, #918),
//! which saturates the CPU and, with a fleet, hammers a restarting broker all at the same
//! moment. Full jitter (a uniform delay between zero and the exponential ceiling) spreads a
//! fleet's reconnects out; resetting only after the link stayed up for a while stops a broker
//! that accepts and then immediately drops us from causing a tight loop.

use std::time::Duration;

/// The delay policy.
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

/// The state of one connection's backoff.
#[derive(Debug)]
pub struct Backoff {
    policy: BackoffPolicy,
    attempt: u32,
}

impl Backoff {
    /// A fresh backoff: the next delay is drawn below `policy.initial`.
    pub fn new(policy: BackoffPolicy) -> Backoff {
        Backoff { policy, attempt: 0 }
    }

    /// The ceiling of the next delay: `initial · 2^attempt`, capped at `max`.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.policy
            .initial
            .checked_mul(factor)
            .map_or(self.policy.max, |d| d.min(self.policy.max))
    }

    /// The delay before the next attempt, given a uniform random `fraction` in `[0, 1)`;
    /// advances the exponent.
    pub fn next_delay(&mut self, fraction: f64) -> Duration {
        let delay = self.ceiling().mul_f64(fraction.clamp(0.0, 1.0));
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    /// Records that a connection was lost after lasting `uptime`: a long enough connection
    /// starts the next outage from the initial delay again.
    pub fn connection_lasted(&mut self, uptime: Duration) {
        if uptime >= self.policy.stable_after {
            self.attempt = 0;
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

    fn policy() -> BackoffPolicy {
        BackoffPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            stable_after: Duration::from_secs(10),
        }
    }

    #[test]
    fn ceilings_double_up_to_the_cap() {
        let mut backoff = Backoff::new(policy());
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
    fn delays_are_a_jittered_fraction_of_the_ceiling() {
        let mut backoff = Backoff::new(policy());
        assert_eq!(backoff.next_delay(0.0), Duration::ZERO);
        assert_eq!(backoff.next_delay(0.5), Duration::from_millis(100));
        for _ in 0..1000 {
            let fraction = random_fraction();
            assert!((0.0..1.0).contains(&fraction), "{fraction}");
        }
    }

    #[test]
    fn only_a_stable_connection_resets_the_exponent() {
        let mut backoff = Backoff::new(policy());
        for _ in 0..4 {
            backoff.next_delay(0.5);
        }
        backoff.connection_lasted(Duration::from_secs(1));
        assert_eq!(backoff.ceiling(), Duration::from_millis(1000));
        backoff.connection_lasted(Duration::from_secs(10));
        assert_eq!(backoff.ceiling(), Duration::from_millis(100));
    }
}
