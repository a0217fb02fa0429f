//! Sync status (U5): what the forwarder is doing, for `edge-agent status`, the MQTT `status`
//! command and the health message.
//!
//! The forwarder writes a [`StatusBoard`] as it goes; [`SyncStatus`] is the snapshot readers
//! get, combined with the outbox's own figures.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::outbox::OutboxStats;

/// How many recent requests the success rate covers.
const RATE_WINDOW: usize = 100;

/// Whether events are being forwarded at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "reason", rename_all = "snake_case")]
pub enum ForwarderState {
    /// No `upstream.url`: events are kept in the outbox until one is configured.
    NotConfigured,
    /// The forwarder could not start (bad token file, CA file…); events are kept.
    Failed(String),
    /// Forwarding.
    Running,
}

/// A snapshot of the upstream side.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SyncStatus {
    /// Whether the forwarder runs.
    pub forwarder: ForwarderState,
    /// Events waiting in the outbox (including those in flight).
    pub queued: u64,
    /// Events in the request being sent now.
    pub in_flight: u64,
    /// Events the upstream confirmed (accepted or duplicate) since start.
    pub delivered: u64,
    /// Events moved to the dead letters since start.
    pub dead_lettered: u64,
    /// Share of the last 100 requests the upstream answered for good (delivered, or refused
    /// permanently) rather than with something to retry (`None` before the first).
    pub success_rate: Option<f64>,
    /// When a request last succeeded (UTC ms).
    pub last_success_at_ms: Option<i64>,
    /// When the next attempt is due while backing off (UTC ms).
    pub next_attempt_at_ms: Option<i64>,
    /// The last failure, for the operator.
    pub last_error: Option<String>,
    /// Age of the oldest queued event.
    pub oldest_age_ms: Option<i64>,
    /// The outbox's figures (depth, bytes, cap, dead letters, refusing).
    pub outbox: OutboxStats,
    /// Latency of event requests since start, by outcome (`ok`: answered for good, `retry`:
    /// failed and to be retried), for the metrics endpoint.
    pub requests: BTreeMap<&'static str, LatencyHistogram>,
}

/// Upper bounds (seconds) of the request latency buckets.
const REQUEST_SECONDS_BUCKETS: [f64; 9] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// A latency histogram (per-bucket counts, not cumulative; the overflow is `count` minus their
/// sum).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencyHistogram {
    /// Bucket upper bounds in seconds.
    pub bounds: &'static [f64],
    /// Requests per bucket.
    pub counts: Vec<u64>,
    /// Sum of latencies in seconds.
    pub sum: f64,
    /// Requests.
    pub count: u64,
}

impl LatencyHistogram {
    fn new() -> Self {
        LatencyHistogram {
            bounds: &REQUEST_SECONDS_BUCKETS,
            counts: vec![0; REQUEST_SECONDS_BUCKETS.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, seconds: f64) {
        if let Some(bucket) = self.bounds.iter().position(|bound| seconds <= *bound) {
            self.counts[bucket] += 1;
        }
        self.sum += seconds;
        self.count += 1;
    }
}

/// Shared, cheaply cloned record of the forwarder's progress.
#[derive(Debug, Clone)]
pub struct StatusBoard(Arc<Mutex<Board>>);

#[derive(Debug)]
struct Board {
    state: ForwarderState,
    in_flight: u64,
    delivered: u64,
    dead_lettered: u64,
    recent: VecDeque<bool>,
    last_success_at_ms: Option<i64>,
    next_attempt_at_ms: Option<i64>,
    last_error: Option<String>,
    sending_since: Option<Instant>,
    requests: BTreeMap<&'static str, LatencyHistogram>,
}

impl Board {
    /// Records the latency of the request in flight under `outcome`.
    fn request_done(&mut self, outcome: &'static str) {
        if let Some(since) = self.sending_since.take() {
            self.requests
                .entry(outcome)
                .or_insert_with(LatencyHistogram::new)
                .observe(since.elapsed().as_secs_f64());
        }
    }
}

impl StatusBoard {
    /// A board in `state` with nothing recorded.
    pub fn new(state: ForwarderState) -> Self {
        Self(Arc::new(Mutex::new(Board {
            state,
            in_flight: 0,
            delivered: 0,
            dead_lettered: 0,
            recent: VecDeque::with_capacity(RATE_WINDOW),
            last_success_at_ms: None,
            next_attempt_at_ms: None,
            last_error: None,
            sending_since: None,
            requests: BTreeMap::new(),
        })))
    }

    /// Combines the board with the outbox's figures.
    pub fn snapshot(&self, outbox: OutboxStats) -> SyncStatus {
        let board = self.lock();
        let now = now_ms();
        let successes = board.recent.iter().filter(|ok| **ok).count();
        SyncStatus {
            forwarder: board.state.clone(),
            queued: outbox.depth,
            in_flight: board.in_flight,
            delivered: board.delivered,
            dead_lettered: board.dead_lettered,
            success_rate: (!board.recent.is_empty())
                .then(|| successes as f64 / board.recent.len() as f64),
            last_success_at_ms: board.last_success_at_ms,
            next_attempt_at_ms: board.next_attempt_at_ms,
            last_error: board.last_error.clone(),
            oldest_age_ms: outbox.oldest_occurred_at_ms.map(|at| (now - at).max(0)),
            outbox,
            requests: board.requests.clone(),
        }
    }

    pub(crate) fn sending(&self, events: usize) {
        let mut board = self.lock();
        board.in_flight = events as u64;
        board.next_attempt_at_ms = None;
        board.sending_since = Some(Instant::now());
    }

    pub(crate) fn succeeded(&self, delivered: u64, dead_lettered: u64) {
        let mut board = self.lock();
        board.in_flight = 0;
        board.request_done("ok");
        board.delivered += delivered;
        board.dead_lettered += dead_lettered;
        board.last_success_at_ms = Some(now_ms());
        push_result(&mut board.recent, true);
    }

    pub(crate) fn failed(&self, error: String, retry_in: Duration) {
        let mut board = self.lock();
        board.in_flight = 0;
        board.request_done("retry");
        board.last_error = Some(error);
        board.next_attempt_at_ms = Some(now_ms() + retry_in.as_millis() as i64);
        push_result(&mut board.recent, false);
    }

    fn lock(&self) -> MutexGuard<'_, Board> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn push_result(recent: &mut VecDeque<bool>, ok: bool) {
    if recent.len() == RATE_WINDOW {
        recent.pop_front();
    }
    recent.push_back(ok);
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbox() -> OutboxStats {
        OutboxStats {
            depth: 3,
            bytes: 300,
            max_bytes: 1000,
            oldest_occurred_at_ms: Some(now_ms() - 5_000),
            dead_letters: 1,
            refusing: false,
        }
    }

    #[test]
    fn the_success_rate_covers_the_recent_window() {
        let board = StatusBoard::new(ForwarderState::Running);
        assert_eq!(board.snapshot(outbox()).success_rate, None);
        board.failed("503".into(), Duration::from_secs(2));
        board.succeeded(10, 1);
        board.succeeded(5, 0);
        board.failed("timeout".into(), Duration::from_secs(4));
        let status = board.snapshot(outbox());
        assert_eq!(status.success_rate, Some(0.5));
        assert_eq!(status.delivered, 15);
        assert_eq!(status.dead_lettered, 1);
        assert_eq!(status.queued, 3);
        assert_eq!(status.last_error.as_deref(), Some("timeout"));
        assert!(status.next_attempt_at_ms.is_some());
        assert!(status.oldest_age_ms.unwrap() >= 5_000);
        for _ in 0..RATE_WINDOW {
            board.succeeded(1, 0);
        }
        assert_eq!(board.snapshot(outbox()).success_rate, Some(1.0));
    }
}
