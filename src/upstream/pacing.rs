//! The request rate limit: at most `rate` requests per second, evenly spaced.
//!
//! Even spacing (no burst allowance) is the simplest limit that is obviously correct, and the
//! upstream sees the same shape whether the agent has a backlog or not.

use std::time::Duration;
use tokio::time::Instant;

/// Spaces requests at least `1/rate` apart.
#[derive(Debug)]
pub struct Pacer {
    spacing: Duration,
    next: Option<Instant>,
}

impl Pacer {
    /// A pacer for `rate` requests per second (at least 1).
    pub fn new(rate: u32) -> Self {
        Self {
            spacing: Duration::from_secs(1) / rate.max(1),
            next: None,
        }
    }

    /// Waits until the next request may start and books that slot.
    pub async fn ready(&mut self) {
        if let Some(next) = self.next {
            tokio::time::sleep_until(next).await;
        }
        self.next = Some(Instant::now() + self.spacing);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn requests_are_spaced_by_one_over_the_rate() {
        let mut pacer = Pacer::new(10);
        let start = Instant::now();
        for _ in 0..21 {
            pacer.ready().await;
        }
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }
}
