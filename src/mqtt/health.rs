//! The retained health message (M2): `up` with the figures a technician or a fleet dashboard
//! needs, refreshed periodically, on every (re)connection and whenever a service reports a
//! change; `down` from the broker (the will) when the agent vanishes, and from the agent itself
//! on a graceful stop (a clean DISCONNECT suppresses the will).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use rumqttc::v5::mqttbytes::QoS;
use serde::Serialize;
use tokio::sync::Notify;

use super::alerts::Alerts;
use super::publisher::{Message, Publisher};
use crate::clock_sync::{clock_sync, ClockSync};
use crate::events::{Event, EventBody};
use crate::lifecycle::StopSignal;
use crate::store::{Store, TreeName};

/// Facts that other services report for the health message. Setting one publishes a fresh
/// health message soon after, so the retained value tracks the agent within seconds.
#[derive(Default)]
pub struct HealthBoard {
    state: Mutex<BoardState>,
    changed: Notify,
}

#[derive(Default)]
struct BoardState {
    last_complete_read: BTreeMap<String, DateTime<Utc>>,
    lock: Option<String>,
}

impl HealthBoard {
    /// The sync engine reports a complete read of `device_id`.
    pub fn complete_read(&self, device_id: &str, at: DateTime<Utc>) {
        self.update(|state| {
            state.last_complete_read.insert(device_id.to_owned(), at);
        });
    }

    /// The lock service reports its state in a word or two (`held token 42`, `lost`).
    pub fn lock_state(&self, description: &str) {
        self.update(|state| state.lock = Some(description.to_owned()));
    }

    fn update(&self, change: impl FnOnce(&mut BoardState)) {
        change(
            &mut self
                .state
                .lock()
                .unwrap_or_else(|poison| poison.into_inner()),
        );
        self.changed.notify_one();
    }
}

/// Who the agent is, for every health message.
#[derive(Clone, Debug)]
pub struct Identity {
    /// `agent.id`.
    pub agent: String,
    /// `agent.site`.
    pub site: String,
    /// Configured device ids.
    pub devices: Vec<String>,
    /// When the agent started (wall time, for display).
    pub started_at: DateTime<Utc>,
    /// When the agent started (monotonic, for uptime).
    pub started: Instant,
}

/// The `up` message.
#[derive(Debug, Serialize)]
pub struct HealthReport {
    /// Always `up`.
    pub state: &'static str,
    /// `agent.id`.
    pub agent: String,
    /// `agent.site`.
    pub site: String,
    /// Package version.
    pub version: &'static str,
    /// When this message was built (RFC 3339, UTC).
    pub time: String,
    /// When the agent started.
    pub started_at: String,
    /// Seconds since start (monotonic).
    pub uptime_s: u64,
    /// Each configured device with its last complete read (`null`: none reported yet).
    pub devices: Vec<DeviceHealth>,
    /// Device users held in the durable buffer.
    pub buffer_users: usize,
    /// Events waiting to be forwarded upstream.
    pub outbox_depth: usize,
    /// Age in seconds of the oldest waiting event (`null`: the outbox is empty).
    pub outbox_oldest_age_s: Option<i64>,
    /// The lock service's state (`null`: not reported by this build).
    pub lock: Option<String>,
    /// The kernel's clock synchronisation state.
    pub clock: ClockSync,
    /// Alerts waiting for the broker.
    pub alerts_pending: usize,
}

/// One device in the health message.
#[derive(Debug, Serialize)]
pub struct DeviceHealth {
    /// `device.id`.
    pub id: String,
    /// RFC 3339 time of the last complete read, if one was reported.
    pub last_complete_read: Option<String>,
}

/// The `down` message (the will, and the explicit one on a graceful stop).
pub fn down_message(agent: &str, site: &str, reason: &str) -> Vec<u8> {
    serde_json::json!({ "state": "down", "agent": agent, "site": site, "reason": reason })
        .to_string()
        .into_bytes()
}

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Builds the `up` message from the store and the board. Reads the store (counts trees), so
/// call it off the async threads.
pub fn build_report(
    identity: &Identity,
    store: &Store,
    board: &HealthBoard,
    alerts: &Alerts,
    clock: ClockSync,
) -> HealthReport {
    let now = Utc::now();
    let (reads, lock) = {
        let state = board.state.lock().unwrap_or_else(|p| p.into_inner());
        (state.last_complete_read.clone(), state.lock.clone())
    };
    let oldest_event = store
        .scan_prefix::<Event>(TreeName::Outbox, [])
        .next()
        .and_then(Result::ok)
        .map(|(_, event)| event.occurred_at_ms);
    HealthReport {
        state: "up",
        agent: identity.agent.clone(),
        site: identity.site.clone(),
        version: env!("CARGO_PKG_VERSION"),
        time: rfc3339(now),
        started_at: rfc3339(identity.started_at),
        uptime_s: identity.started.elapsed().as_secs(),
        devices: identity
            .devices
            .iter()
            .map(|id| DeviceHealth {
                id: id.clone(),
                last_complete_read: reads.get(id).copied().map(rfc3339),
            })
            .collect(),
        buffer_users: store.tree(TreeName::Buffer).len(),
        outbox_depth: store.tree(TreeName::Outbox).len(),
        outbox_oldest_age_s: oldest_event.map(|at| (now.timestamp_millis() - at) / 1000),
        lock,
        clock,
        alerts_pending: alerts.pending_count(),
    }
}

/// The task that keeps the retained health message current.
pub(super) struct HealthPublisher {
    /// Who the agent is.
    pub identity: Identity,
    /// The store the figures come from.
    pub store: Store,
    /// Facts reported by other services.
    pub board: Arc<HealthBoard>,
    /// The alert queue (its depth is reported; clock alerts are raised here).
    pub alerts: Alerts,
    /// Where health goes.
    pub publisher: Publisher,
    /// The health topic.
    pub topic: String,
    /// Refresh period when nothing changes.
    pub period: Duration,
}

impl HealthPublisher {
    /// Runs until `stop` resolves.
    pub(super) async fn run(self, mut stop: StopSignal) {
        let this = Arc::new(self);
        let mut connections = this.publisher.link().watch_connections();
        let mut ticker = tokio::time::interval(this.period);
        let mut retry = tokio::time::interval(Duration::from_secs(1));
        let mut dirty = true;
        let mut last_clock = None;
        loop {
            tokio::select! {
                _ = stop.stopped() => return,
                _ = ticker.tick() => dirty = true,
                _ = this.board.changed.notified() => dirty = true,
                Ok(()) = connections.changed() => dirty = true,
                _ = retry.tick(), if dirty => {}
            }
            let clock = clock_sync();
            if last_clock != Some(clock) {
                this.clock_changed(clock).await;
                last_clock = Some(clock);
            }
            if dirty && this.publisher.link().is_connected() {
                dirty = !this.publish(clock).await;
            }
        }
    }

    async fn clock_changed(&self, clock: ClockSync) {
        if clock != ClockSync::Unsynchronized {
            return;
        }
        tracing::warn!(
            "the system clock is not synchronised (no NTP); record times may be wrong until it is"
        );
        let body = EventBody::Alert(super::alert_kinds::clock_unsynced());
        if let Err(err) = self.alerts.raise("", body).await {
            tracing::error!("{err}");
        }
    }

    /// Builds and publishes one report; `true` if the client took it.
    async fn publish(self: &Arc<Self>, clock: ClockSync) -> bool {
        let this = Arc::clone(self);
        let report = tokio::task::spawn_blocking(move || {
            build_report(
                &this.identity,
                &this.store,
                &this.board,
                &this.alerts,
                clock,
            )
        })
        .await;
        let payload = match report.map(|report| serde_json::to_vec(&report)) {
            Ok(Ok(payload)) => payload,
            Ok(Err(err)) => {
                tracing::error!("cannot encode the health message: {err}");
                return false;
            }
            Err(err) => {
                tracing::error!("building the health message failed: {err}");
                return false;
            }
        };
        let message = Message::json(self.topic.clone(), payload, QoS::AtLeastOnce, true);
        match self.publisher.publish(message) {
            Ok(()) => true,
            Err(err) => {
                tracing::debug!("health not published yet: {err}");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;

    #[test]
    fn the_report_shows_reported_reads_and_store_figures() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreOptions::at(dir.path().join("store")))
            .unwrap()
            .store;
        let identity = Identity {
            agent: "gw".into(),
            site: "s".into(),
            devices: vec!["ai06-1".into(), "zk-2".into()],
            started_at: Utc::now(),
            started: Instant::now(),
        };
        let board = HealthBoard::default();
        let read_at = DateTime::parse_from_rfc3339("2026-11-22T08:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        board.complete_read("zk-2", read_at);
        board.lock_state("held token 7");
        let alerts = Alerts::new(store.clone(), "gw");
        let report = build_report(&identity, &store, &board, &alerts, ClockSync::Synchronized);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["state"], "up");
        assert_eq!(
            json["devices"][0]["last_complete_read"],
            serde_json::Value::Null
        );
        assert_eq!(
            json["devices"][1]["last_complete_read"],
            "2026-11-22T08:00:00.000Z"
        );
        assert_eq!(json["lock"], "held token 7");
        assert_eq!(json["clock"], "synchronized");
        assert_eq!(json["outbox_depth"], 0);
        assert_eq!(json["outbox_oldest_age_s"], serde_json::Value::Null);
    }
}
