//! The forwarder (U2, U3): moves events from the outbox to the upstream, at least once, with
//! idempotency keys making the effect exactly once.
//!
//! One loop, one request at a time, oldest events first:
//! 1. wait for the rate limit, read up to `batch limit` events from the head of the outbox;
//! 2. `POST /events`; on a reply, settle every event in one durable transaction
//!    (accepted/duplicate leave the queue, rejected go to the dead letters with the reason);
//!    an event the reply does not mention stays queued and is retried;
//! 3. on a retryable failure (429, 5xx, timeout, connection error) wait with exponential
//!    backoff and full jitter, at least the server's `Retry-After`; never a tight loop;
//! 4. on a permanent refusal of a whole batch, halve the batch (doubling again after each
//!    success) until the culprit is alone, then dead-letter it, so one bad event never blocks
//!    the others;
//! 5. on 401/403 keep everything queued, raise an alarm and retry with backoff (the token file
//!    is re-read), since a bad token is not the events' fault.
//!
//! A crash anywhere leaves the events in the outbox; they are sent again with the same keys
//! and the upstream answers `duplicate`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Notify;

use crate::events::Event;
use crate::lifecycle::StopSignal;
use crate::store::{Alarm, AlarmKind};

use super::client::{RequestError, UpstreamClient};
use super::outbox::{Outbox, Queued, Settlement};
use super::pacing::Pacer;
use super::status::StatusBoard;
use super::wire::{BatchReply, EventOutcome};
use super::ForwarderOptions;
use crate::backoff::Backoff;

/// What one step decided about the pause before the next.
enum Next {
    /// Sent something (or must retry smaller right away): go on, paced by the rate limit.
    Continue,
    /// Nothing queued: wait for new events.
    Idle,
    /// Failed: wait this long.
    Retry(Duration),
}

/// The forwarding loop's state.
pub(crate) struct Forwarder {
    outbox: Outbox,
    client: Arc<UpstreamClient>,
    board: StatusBoard,
    batch_size: usize,
    idle_recheck: Duration,
    pacer: Pacer,
    backoff: Backoff,
    rng: StdRng,
    /// Current batch limit: `batch_size`, or smaller while isolating a refused event.
    batch_limit: usize,
    /// Whether the 401/403 alarm was raised in the current episode.
    auth_alarmed: bool,
    /// Woken when the upstream answers again after failures (the mapping puller listens).
    reconnected: Arc<Notify>,
}

impl Forwarder {
    pub(crate) fn new(
        outbox: Outbox,
        client: Arc<UpstreamClient>,
        board: StatusBoard,
        options: &ForwarderOptions,
        reconnected: Arc<Notify>,
    ) -> Self {
        let rng = match options.jitter_seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        let batch_size = options.batch_size.max(1);
        Self {
            outbox,
            client,
            board,
            batch_size,
            idle_recheck: options.idle_recheck,
            pacer: Pacer::new(options.rate_limit),
            backoff: Backoff::new(options.base_backoff, options.max_backoff),
            rng,
            batch_limit: batch_size,
            auth_alarmed: false,
            reconnected,
        }
    }

    /// Runs until `stop` fires. A request in flight is abandoned at stop; its events stay
    /// queued and go again after the restart.
    pub(crate) async fn run(mut self, mut stop: StopSignal) {
        loop {
            let next = tokio::select! {
                next = self.step() => next,
                _ = stop.stopped() => return,
            };
            let pause = async {
                match next {
                    Next::Continue => {}
                    Next::Idle => {
                        // The recheck is a safety net for producers that forget to report a
                        // commit; normally the outbox wakes us.
                        let _ =
                            tokio::time::timeout(self.idle_recheck, self.outbox.wait_for_work())
                                .await;
                    }
                    Next::Retry(delay) => tokio::time::sleep(delay).await,
                }
            };
            tokio::select! {
                _ = pause => {}
                _ = stop.stopped() => return,
            }
        }
    }

    async fn step(&mut self) -> Next {
        self.pacer.ready().await;
        let batch = match self.outbox.peek(self.batch_limit) {
            Ok(batch) => batch,
            Err(error) => return self.retry(format!("cannot read the outbox: {error}"), None),
        };
        if batch.is_empty() {
            if self.outbox.awaits_durability() {
                // Committed events wait for an fsync their producer has asked for (or forgot
                // to); join it rather than idle.
                return match self.outbox.store().make_durable().await {
                    Ok(()) => Next::Continue,
                    Err(error) => {
                        self.retry(format!("cannot make the outbox durable: {error}"), None)
                    }
                };
            }
            return Next::Idle;
        }
        self.board.sending(batch.len());
        let events: Vec<&Event> = batch.iter().map(|queued| &queued.event).collect();
        match self.client.push_events(&events).await {
            Ok(reply) => self.settle_reply(batch, reply).await,
            Err(RequestError::Retryable {
                reason,
                retry_after,
            }) => self.retry(reason, retry_after),
            Err(RequestError::Refused { status, reason }) if batch.len() > 1 => {
                // Somebody in the batch is unacceptable; halve until they are alone.
                self.batch_limit = (batch.len() / 2).max(1);
                tracing::warn!(
                    status,
                    events = batch.len(),
                    "upstream refused a whole batch ({reason}); retrying in halves to find the \
                     event it objects to"
                );
                Next::Continue
            }
            Err(RequestError::Refused { status, reason }) => {
                let settled: Vec<_> = batch
                    .into_iter()
                    .map(|queued| {
                        let settlement = Settlement::DeadLetter {
                            reason: reason.clone(),
                            http_status: Some(status),
                        };
                        (queued, settlement)
                    })
                    .collect();
                self.settle(settled, true).await
            }
            Err(error @ RequestError::Unauthorized { .. }) => {
                self.alarm_unauthorized(&error);
                self.retry(error.to_string(), None)
            }
        }
    }

    /// Settles what the reply covers; events it does not mention stay queued and count as a
    /// failed attempt.
    async fn settle_reply(&mut self, batch: Vec<Queued>, reply: BatchReply) -> Next {
        let outcomes: HashMap<&str, &EventOutcome> = reply
            .results
            .iter()
            .map(|result| (result.key.as_str(), &result.outcome))
            .collect();
        let mut settled = Vec::with_capacity(batch.len());
        let mut unanswered = 0;
        for queued in batch {
            let settlement = match outcomes.get(queued.event.key.as_str()) {
                Some(EventOutcome::Accepted | EventOutcome::Duplicate) => Settlement::Delivered,
                Some(EventOutcome::Rejected { reason }) => Settlement::DeadLetter {
                    reason: reason.clone(),
                    http_status: None,
                },
                None => {
                    unanswered += 1;
                    continue;
                }
            };
            settled.push((queued, settlement));
        }
        let next = self.settle(settled, unanswered == 0).await;
        if unanswered > 0 {
            return self.retry(
                format!("the upstream's reply left out {unanswered} event(s); they stay queued"),
                None,
            );
        }
        next
    }

    async fn settle(&mut self, settled: Vec<(Queued, Settlement)>, whole: bool) -> Next {
        let dead = settled
            .iter()
            .filter(|(_, s)| matches!(s, Settlement::DeadLetter { .. }))
            .count() as u64;
        for (queued, settlement) in &settled {
            if let Settlement::DeadLetter { reason, .. } = settlement {
                tracing::warn!(
                    key = %queued.event.key,
                    device = %queued.event.device_id,
                    "upstream rejected the event for good; moved to the dead letters: {reason}"
                );
            }
        }
        if let Err(error) = self.outbox.settle(&settled).await {
            // The upstream has these events; if the store cannot record that, they are sent
            // again later and answered `duplicate`.
            return self.retry(format!("cannot record delivered events: {error}"), None);
        }
        self.board.succeeded(settled.len() as u64 - dead, dead);
        if self.backoff.failures() > 0 {
            tracing::info!(
                failed_attempts = self.backoff.failures(),
                "upstream reachable again; forwarding resumed"
            );
            self.reconnected.notify_one();
        }
        self.backoff.succeed();
        self.auth_alarmed = false;
        self.batch_limit = if dead > 0 && whole {
            // The refused event (if we were isolating one) is out of the way.
            self.batch_size
        } else {
            // Grow back gradually while an event refused with its batch may still be ahead.
            (self.batch_limit * 2).min(self.batch_size)
        };
        Next::Continue
    }

    fn retry(&mut self, reason: String, retry_after: Option<Duration>) -> Next {
        let delay = self.backoff.fail(self.rng.random(), retry_after);
        if self.backoff.failures() == 1 {
            tracing::warn!("forwarding paused, retrying with backoff: {reason}");
        } else {
            tracing::debug!(attempt = self.backoff.failures(), ?delay, "{reason}");
        }
        self.board.failed(reason, delay);
        Next::Retry(delay)
    }

    fn alarm_unauthorized(&mut self, error: &RequestError) {
        let RequestError::Unauthorized { status, .. } = error else {
            return;
        };
        if std::mem::replace(&mut self.auth_alarmed, true) {
            return;
        }
        tracing::error!("{error}");
        let alarm = Alarm {
            raised_at_unix_ms: chrono::Utc::now().timestamp_millis(),
            kind: AlarmKind::UpstreamUnauthorized { status: *status },
            message: error.to_string(),
        };
        if let Err(store_error) = self.outbox.store().raise_alarm(&alarm) {
            tracing::error!("cannot record the upstream credentials alarm: {store_error}");
        }
    }
}
