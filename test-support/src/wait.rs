//! Polling with a deadline: tests wait for effects in other tasks and processes, and a wait
//! that never ends must fail with the name of what never happened, not hang the suite.

use std::time::{Duration, Instant};

/// Polls `condition` every 10 ms on the tokio runtime until it holds; panics naming `what`
/// after `limit`.
pub async fn wait_for(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// [`wait_for`] for tests without a runtime: polls `condition` every 10 ms on this thread.
pub fn wait_until(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
