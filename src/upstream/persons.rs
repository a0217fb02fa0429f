//! Person confirmation (B2, upstream side): an administrator's `map` links a device user to an
//! upstream person, and stays `pending` until `GET /persons/{id}` says the person exists.
//!
//! The confirmer asks the upstream about every pending mapping the owner of the mappings (the
//! sync engine, through [`MappingSink`]) lists, right after a `map` and on a schedule:
//! - 200: the person exists; the owner confirms the mapping with the person's attributes
//!   (matching → `mapped`, different → a conflict keeping both versions);
//! - 404: there is no such person; the owner drops the request with the reason, audited;
//! - anything else (5xx, timeouts, a refused token): the mapping stays `pending` and that one
//!   person is asked again after an exponential backoff with full jitter, never in a tight loop.
//!
//! Like the puller, this module never names the engine (`sync` depends on `upstream`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::lifecycle::StopSignal;

use super::client::{RequestError, UpstreamClient};
use super::mapping::MappingSink;

/// A mapping an administrator asked for that the upstream has not confirmed yet.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PendingPerson {
    /// The device.
    pub device_id: String,
    /// The device's user id.
    pub user_id: String,
    /// The person the administrator named.
    pub person_id: String,
}

/// How often the pending mappings are looked at when nothing wakes the confirmer (a `map`
/// wakes it at once; backoff delays are kept per person in between).
pub const RECHECK: Duration = Duration::from_secs(5);

/// When to ask about each person again after failures.
struct Retries {
    base: Duration,
    cap: Duration,
    rng: StdRng,
    waiting: HashMap<PendingPerson, (Backoff, Instant)>,
}

impl Retries {
    fn due(&self, pending: &PendingPerson, now: Instant) -> Option<Instant> {
        self.waiting
            .get(pending)
            .map(|(_, at)| *at)
            .filter(|at| *at > now)
    }

    fn failed(&mut self, pending: PendingPerson, error: &RequestError, now: Instant) -> Duration {
        let retry_after = match error {
            RequestError::Retryable { retry_after, .. } => *retry_after,
            _ => None,
        };
        let unit: f64 = self.rng.random();
        let (base, cap) = (self.base, self.cap);
        let entry = self
            .waiting
            .entry(pending)
            .or_insert_with(|| (Backoff::new(base, cap), now));
        let delay = entry.0.fail(unit, retry_after);
        entry.1 = now + delay;
        delay
    }
}

/// Asks the upstream about pending mappings until `stop`: at start, whenever the owner signals
/// a new request, and every [`RECHECK`]. `base`/`cap` bound the per-person backoff.
pub(crate) async fn run_confirmer(
    client: Arc<UpstreamClient>,
    sink: Arc<dyn MappingSink>,
    base: Duration,
    cap: Duration,
    mut stop: StopSignal,
) {
    let wake = sink.person_requests();
    let mut retries = Retries {
        base,
        cap,
        rng: StdRng::from_os_rng(),
        waiting: HashMap::new(),
    };
    loop {
        let now = Instant::now();
        let mut next = now + RECHECK;
        match sink.pending_persons() {
            Ok(pending) => {
                retries.waiting.retain(|asked, _| pending.contains(asked));
                for asked in pending {
                    if let Some(at) = retries.due(&asked, now) {
                        next = next.min(at);
                        continue;
                    }
                    let answer = tokio::select! {
                        answer = client.person(&asked.person_id) => answer,
                        _ = stop.stopped() => return,
                    };
                    match answer {
                        Ok(found) => {
                            retries.waiting.remove(&asked);
                            if let Err(error) = sink.settle_person(asked.clone(), found).await {
                                tracing::warn!(
                                    device = %asked.device_id,
                                    user = %asked.user_id,
                                    "cannot record the upstream's answer about person {}: {error}",
                                    asked.person_id
                                );
                            }
                        }
                        Err(error) => {
                            let delay = retries.failed(asked.clone(), &error, Instant::now());
                            next = next.min(Instant::now() + delay);
                            tracing::warn!(
                                device = %asked.device_id,
                                user = %asked.user_id,
                                "person {} not confirmed yet, the mapping stays pending: {error}; \
                                 next try in {delay:?}",
                                asked.person_id
                            );
                        }
                    }
                }
            }
            Err(error) => tracing::warn!("cannot list the mappings pending confirmation: {error}"),
        }
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = wake.notified() => {}
            _ = stop.stopped() => return,
        }
    }
}
