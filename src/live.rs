//! The live picture of the running agent: what the services are doing *now*, in memory.
//!
//! One owner per fact: the sync engine reports reads (start, progress, outcome) and the device
//! lock it holds; the MQTT connection reports its link. Nobody polls another module's internals:
//! each service reports through the cloned [`Live`] handle it was given at wiring time
//! (`crate::agent`). The status report (`crate::ops::status`), the retained health message
//! (`crate::mqtt::health`) and the Prometheus exposition (`crate::ops::metrics`) are all derived
//! from one [`crate::ops::status::StatusReport`] built over this picture and the store, so the
//! three can never disagree.
//!
//! Changes are announced on two watch channels: [`Live::watch_facts`] for facts worth a new
//! health message (a read finished, a lock taken, the broker link), [`Live::watch_any`] also for
//! read progress (the status file follows a long read page by page).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use serde::Serialize;
use tokio::sync::watch;

use crate::device::ReadProgress;

/// Upper bounds (seconds) of the read-duration histogram buckets: a small terminal reads in
/// under a second, 10,000 users with photos take minutes.
pub const READ_SECONDS_BUCKETS: [f64; 8] = [0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0];

/// How many recent errors the picture keeps for `status`.
const LAST_ERRORS: usize = 10;

/// Shared handle to the live picture; cheap to clone, one per service.
#[derive(Clone)]
pub struct Live(Arc<Inner>);

struct Inner {
    state: Mutex<Picture>,
    facts: watch::Sender<u64>,
    any: watch::Sender<u64>,
    started: Instant,
}

impl Default for Live {
    fn default() -> Self {
        Live(Arc::new(Inner {
            state: Mutex::new(Picture::default()),
            facts: watch::channel(0).0,
            any: watch::channel(0).0,
            started: Instant::now(),
        }))
    }
}

/// Everything the picture holds, as a snapshot.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Picture {
    /// Per configured device that reported anything.
    pub devices: BTreeMap<String, DeviceLive>,
    /// The MQTT link; `None` while nothing reported it (MQTT off, or not connected yet once).
    pub mqtt_connected: Option<bool>,
    /// Broker connections made since start.
    pub mqtt_connections: u64,
    /// Alerts recorded and not yet confirmed by the broker, as the MQTT plane last counted.
    pub alerts_pending: usize,
    /// The last errors any service reported, oldest first.
    pub last_errors: VecDeque<ErrorLine>,
}

/// One recent error, for the technician.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorLine {
    /// When (UTC ms).
    pub at_ms: i64,
    /// The device it concerns.
    pub device_id: String,
    /// What went wrong.
    pub message: String,
}

/// What one device is doing and how its reads went.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeviceLive {
    /// The read under way, if one is.
    pub reading: Option<ReadingNow>,
    /// When the last read attempt ended (UTC ms).
    pub last_attempt_ms: Option<i64>,
    /// When the last complete read was applied (UTC ms), since this agent started.
    pub last_complete_read_ms: Option<i64>,
    /// Users the last complete read found.
    pub last_read_users: Option<u64>,
    /// Users the last complete read found gone.
    pub last_read_lost: u64,
    /// Why the last attempt failed, while it is the latest outcome.
    pub last_error: Option<String>,
    /// Attempts in a row that were not a complete read.
    pub consecutive_incomplete: u32,
    /// The fencing token of the device lock this agent holds now (during a read).
    pub lock_token: Option<u64>,
    /// The held lock's deadline (remaining lease), while held.
    #[serde(skip)]
    pub lock_fence: Option<crate::sync::lock::Fence>,
    /// Counters since start, for metrics.
    pub reads: ReadCounters,
}

/// Read counters since start (Prometheus counters and a histogram).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReadCounters {
    /// Complete reads.
    pub complete: u64,
    /// Reads that were not complete (device error, incomplete list, lock not acquired).
    pub incomplete: u64,
    /// Users found gone, summed over reads.
    pub missing_users: u64,
    /// Sum of read durations (seconds), complete or not.
    pub seconds_sum: f64,
    /// Reads per duration bucket (cumulative counts are made by the exposition), one per
    /// [`READ_SECONDS_BUCKETS`] bound plus the overflow.
    pub seconds_buckets: Vec<u64>,
}

/// Progress of the read under way: pages and credentials done of total, rate, ETA.
#[derive(Debug, Clone, Serialize)]
pub struct ReadingNow {
    /// When it started (UTC ms).
    pub started_at_ms: i64,
    /// `list` while paging the user list, `credentials` while fetching credentials.
    pub phase: &'static str,
    /// List pages received.
    pub pages: u32,
    /// List entries received.
    pub list_entries: usize,
    /// What the device says the list holds, when it says.
    pub list_announced: Option<u64>,
    /// Credentials fetched so far.
    pub credentials_done: usize,
    /// Credentials to fetch in all, once the list is complete.
    pub credentials_total: Option<usize>,
    /// Credentials per second so far.
    pub rate_per_s: Option<f64>,
    /// Seconds left at that rate.
    pub eta_s: Option<u64>,
    #[serde(skip)]
    credentials_since: Option<Instant>,
}

/// A device lock shown as held in the picture; dropping it shows it released.
pub struct LockReported {
    live: Live,
    device_id: String,
}

impl Drop for LockReported {
    fn drop(&mut self) {
        self.live.lock_held(&self.device_id, None);
    }
}

/// How a read attempt ended, as the engine reports it.
#[derive(Debug, Clone)]
pub enum ReadEnd {
    /// A complete read was applied: users found, users gone since the previous one.
    Complete {
        /// Users the read found.
        users: u64,
        /// Users gone since the previous complete read.
        lost: u64,
    },
    /// Anything short of that, with the reason.
    NotComplete(String),
}

/// What the `alerts` service reads for its threshold alerts (read accessor of the picture).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadFacts {
    /// When the last complete read was applied (UTC ms), since this agent started.
    pub last_complete_read_ms: Option<i64>,
    /// Attempts in a row that were not a complete read.
    pub consecutive_incomplete: u32,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Live {
    fn state(&self) -> MutexGuard<'_, Picture> {
        self.0
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn changed(&self, fact: bool) {
        if fact {
            self.0.facts.send_modify(|n| *n += 1);
        }
        self.0.any.send_modify(|n| *n += 1);
    }

    fn device<R>(&self, device_id: &str, fact: bool, f: impl FnOnce(&mut DeviceLive) -> R) -> R {
        let result = {
            let mut state = self.state();
            f(state.devices.entry(device_id.to_owned()).or_default())
        };
        self.changed(fact);
        result
    }

    /// The sync engine starts reading `device_id`.
    pub fn read_started(&self, device_id: &str) {
        self.device(device_id, false, |device| {
            device.reading = Some(ReadingNow {
                started_at_ms: now_ms(),
                phase: "list",
                pages: 0,
                list_entries: 0,
                list_announced: None,
                credentials_done: 0,
                credentials_total: None,
                rate_per_s: None,
                eta_s: None,
                credentials_since: None,
            });
        });
    }

    /// The driver reports progress of the read of `device_id`.
    pub fn read_progress(&self, device_id: &str, progress: &ReadProgress) {
        self.device(device_id, false, |device| {
            let Some(reading) = device.reading.as_mut() else {
                return;
            };
            match *progress {
                ReadProgress::ListPage {
                    pages,
                    entries,
                    announced,
                } => {
                    reading.pages = pages;
                    reading.list_entries = entries;
                    reading.list_announced = announced;
                }
                ReadProgress::ListComplete { to_fetch, .. } => {
                    reading.phase = "credentials";
                    reading.credentials_total = Some(to_fetch);
                    reading.credentials_since = Some(Instant::now());
                }
                ReadProgress::Credentials { fetched, total } => {
                    reading.phase = "credentials";
                    reading.credentials_done = fetched;
                    reading.credentials_total = Some(total);
                    let since = *reading.credentials_since.get_or_insert_with(Instant::now);
                    let elapsed = since.elapsed().as_secs_f64();
                    if elapsed > 0.0 && fetched > 0 {
                        let rate = fetched as f64 / elapsed;
                        reading.rate_per_s = Some((rate * 10.0).round() / 10.0);
                        reading.eta_s = Some((total.saturating_sub(fetched) as f64 / rate) as u64);
                    }
                }
            }
        });
    }

    /// The sync engine finished an attempt at `device_id`.
    pub fn read_finished(&self, device_id: &str, end: ReadEnd) {
        let now = now_ms();
        let error = self.device(device_id, true, |device| {
            let started = device.reading.take().map(|r| r.started_at_ms);
            device.last_attempt_ms = Some(now);
            let seconds = started.map_or(0.0, |at| (now - at).max(0) as f64 / 1000.0);
            let reads = &mut device.reads;
            reads.seconds_sum += seconds;
            if reads.seconds_buckets.len() != READ_SECONDS_BUCKETS.len() + 1 {
                reads.seconds_buckets = vec![0; READ_SECONDS_BUCKETS.len() + 1];
            }
            let bucket = READ_SECONDS_BUCKETS
                .iter()
                .position(|bound| seconds <= *bound)
                .unwrap_or(READ_SECONDS_BUCKETS.len());
            reads.seconds_buckets[bucket] += 1;
            match end {
                ReadEnd::Complete { users, lost } => {
                    reads.complete += 1;
                    reads.missing_users += lost;
                    device.last_complete_read_ms = Some(now);
                    device.last_read_users = Some(users);
                    device.last_read_lost = lost;
                    device.last_error = None;
                    device.consecutive_incomplete = 0;
                    None
                }
                ReadEnd::NotComplete(reason) => {
                    reads.incomplete += 1;
                    device.last_error = Some(reason.clone());
                    device.consecutive_incomplete += 1;
                    Some(reason)
                }
            }
        });
        if let Some(message) = error {
            let mut state = self.state();
            if state.last_errors.len() == LAST_ERRORS {
                state.last_errors.pop_front();
            }
            state.last_errors.push_back(ErrorLine {
                at_ms: now,
                device_id: device_id.to_owned(),
                message,
            });
        }
    }

    /// The sync engine holds the lock of `device_id` under `fence` (`None`: released).
    pub fn lock_held(&self, device_id: &str, fence: Option<&crate::sync::lock::Fence>) {
        self.device(device_id, true, |device| {
            device.lock_token = fence.map(crate::sync::lock::Fence::token);
            device.lock_fence = fence.cloned();
        });
    }

    /// Reports the lock of `device_id` held under `fence` until the returned value is dropped
    /// (every early return of a read releases it in the picture too).
    pub fn lock_reported(&self, device_id: &str, fence: &crate::sync::lock::Fence) -> LockReported {
        self.lock_held(device_id, Some(fence));
        LockReported {
            live: self.clone(),
            device_id: device_id.to_owned(),
        }
    }

    /// The MQTT connection reports its link.
    pub fn mqtt_link(&self, connected: bool) {
        {
            let mut state = self.state();
            state.mqtt_connected = Some(connected);
            if connected {
                state.mqtt_connections += 1;
            }
        }
        self.changed(true);
    }

    /// The MQTT plane reports how many alerts wait for the broker (a change is a fact).
    pub fn alerts_pending(&self, pending: usize) {
        let changed = {
            let mut state = self.state();
            std::mem::replace(&mut state.alerts_pending, pending) != pending
        };
        if changed {
            self.changed(true);
        }
    }

    /// A copy of the whole picture.
    pub fn snapshot(&self) -> Picture {
        self.state().clone()
    }

    /// The read facts of `device_id` (the `alerts` service's thresholds use them).
    pub fn read_facts(&self, device_id: &str) -> ReadFacts {
        let state = self.state();
        let device = state.devices.get(device_id);
        ReadFacts {
            last_complete_read_ms: device.and_then(|d| d.last_complete_read_ms),
            consecutive_incomplete: device.map_or(0, |d| d.consecutive_incomplete),
        }
    }

    /// Seconds since this picture (the agent) started, on the monotonic clock.
    pub fn uptime_s(&self) -> u64 {
        self.0.started.elapsed().as_secs()
    }

    /// Changes worth a new health message (reads finished, locks, the broker link).
    pub fn watch_facts(&self) -> watch::Receiver<u64> {
        self.0.facts.subscribe()
    }

    /// Every change, read progress included (the status file follows these).
    pub fn watch_any(&self) -> watch::Receiver<u64> {
        self.0.any.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_moves_from_progress_to_outcome() {
        let live = Live::default();
        let facts = live.watch_facts();
        live.read_started("door");
        live.read_progress(
            "door",
            &ReadProgress::ListComplete {
                users: 3,
                credentials: 6,
                to_fetch: 6,
            },
        );
        live.read_progress(
            "door",
            &ReadProgress::Credentials {
                fetched: 2,
                total: 6,
            },
        );
        let reading = live.snapshot().devices["door"].reading.clone().unwrap();
        assert_eq!(reading.phase, "credentials");
        assert_eq!(
            (reading.credentials_done, reading.credentials_total),
            (2, Some(6))
        );
        assert!(!facts.has_changed().unwrap(), "progress is not a fact");
        live.read_finished("door", ReadEnd::NotComplete("timed out".into()));
        live.read_finished("door", ReadEnd::NotComplete("timed out".into()));
        assert_eq!(live.read_facts("door").consecutive_incomplete, 2);
        live.read_finished("door", ReadEnd::Complete { users: 3, lost: 1 });
        assert!(facts.has_changed().unwrap());
        let door = &live.snapshot().devices["door"];
        assert!(door.reading.is_none());
        assert_eq!(door.consecutive_incomplete, 0);
        assert_eq!((door.reads.complete, door.reads.incomplete), (1, 2));
        assert_eq!(door.reads.missing_users, 1);
        assert_eq!(live.snapshot().last_errors.len(), 2);
    }
}
