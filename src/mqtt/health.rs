//! The retained health message (M2): `up` with the figures a technician or a fleet dashboard
//! needs, refreshed periodically, on every (re)connection and whenever a service reports a
//! change; `down` from the broker (the will) when the agent vanishes, and from the agent itself
//! on a graceful stop (a clean DISCONNECT suppresses the will).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use rumqttc::v5::mqttbytes::QoS;
use serde::Serialize;

use super::alerts::Alerts;
use super::publisher::{Message, Publisher};
use crate::clock_sync::{clock_sync, ClockSync};
use crate::events::EventBody;
use crate::lifecycle::StopSignal;
use crate::ops::status::{Level, StatusReport, StatusSources};
use crate::sync::buffer::BufferStats;

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

/// The `up` message: a projection of the agent's status report (`crate::ops::status`), so
/// health, `status` and the metrics never disagree.
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
    /// Each configured device with its last complete read (`null`: none yet) and its users.
    pub devices: Vec<DeviceHealth>,
    /// Device users held in the durable buffer (all devices, every status).
    pub buffer_users: usize,
    /// Events waiting to be forwarded upstream (`null`: no upstream side in this process).
    pub outbox_depth: Option<u64>,
    /// Bytes they occupy.
    pub outbox_bytes: Option<u64>,
    /// Age in seconds of the oldest waiting event (`null`: the outbox is empty).
    pub outbox_oldest_age_s: Option<i64>,
    /// Events in the dead letters.
    pub dead_letters: Option<u64>,
    /// The device locks this agent holds now, in words (`null`: none held).
    pub lock: Option<String>,
    /// The same, per device: holder and fencing token.
    pub locks: Vec<LockHealth>,
    /// The kernel's clock synchronisation state.
    pub clock: ClockSync,
    /// Alerts waiting for the broker.
    pub alerts_pending: usize,
    /// `ok`, `warning` or `critical`, with the reasons (as `edge-agent status` judges).
    pub level: Level,
    /// Why, worst first.
    pub reasons: Vec<String>,
}

/// One device in the health message.
#[derive(Debug, Serialize)]
pub struct DeviceHealth {
    /// `device.id`.
    pub id: String,
    /// Connected now (AI06; `null` for polled drivers).
    pub connected: Option<bool>,
    /// RFC 3339 time of the last complete read, if there was one.
    pub last_complete_read: Option<String>,
    /// Its age in seconds.
    pub last_complete_read_age_s: Option<i64>,
    /// Buffered users of the device by status (total, unmapped, pending, mapped, conflict,
    /// missing).
    pub users: BufferStats,
    /// Users the last complete read found gone.
    pub last_read_lost: u64,
    /// Why the last read attempt failed, while it is the latest outcome.
    pub last_error: Option<String>,
    /// Read attempts in a row that were not complete.
    pub consecutive_incomplete: u32,
}

/// A device lock this agent holds.
#[derive(Debug, Serialize)]
pub struct LockHealth {
    /// The device.
    pub device: String,
    /// Who holds it (this agent's id).
    pub holder: String,
    /// The fencing token.
    pub token: u64,
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

fn rfc3339_ms(ms: i64) -> Option<String> {
    DateTime::<Utc>::from_timestamp_millis(ms).map(rfc3339)
}

impl HealthReport {
    /// The `up` message for `report`.
    pub fn from_status(report: &StatusReport) -> HealthReport {
        let upstream = report.upstream.as_ref();
        let outbox = |field: &str| upstream.and_then(|u| u["outbox"][field].as_u64());
        let locks: Vec<LockHealth> = report
            .devices
            .iter()
            .filter_map(|device| {
                device.lock_token.map(|token| LockHealth {
                    device: device.id.clone(),
                    holder: report.agent_id.clone(),
                    token,
                })
            })
            .collect();
        let lock = (!locks.is_empty()).then(|| {
            locks
                .iter()
                .map(|l| format!("{} held by {} token {}", l.device, l.holder, l.token))
                .collect::<Vec<_>>()
                .join("; ")
        });
        HealthReport {
            state: "up",
            agent: report.agent_id.clone(),
            site: report.site.clone(),
            version: env!("CARGO_PKG_VERSION"),
            time: rfc3339_ms(report.updated_at_ms).unwrap_or_default(),
            started_at: rfc3339_ms(report.started_at_ms).unwrap_or_default(),
            uptime_s: report.uptime_s,
            devices: report
                .devices
                .iter()
                .map(|device| DeviceHealth {
                    id: device.id.clone(),
                    connected: device.connected,
                    last_complete_read: device.last_complete_read_ms.and_then(rfc3339_ms),
                    last_complete_read_age_s: device.last_complete_read_age_s,
                    users: device.users.clone(),
                    last_read_lost: device.last_read_lost,
                    last_error: device.last_error.clone(),
                    consecutive_incomplete: device.consecutive_incomplete,
                })
                .collect(),
            buffer_users: report.devices.iter().map(|d| d.users.total).sum(),
            outbox_depth: outbox("depth"),
            outbox_bytes: outbox("bytes"),
            outbox_oldest_age_s: upstream
                .and_then(|u| u["oldest_age_ms"].as_i64())
                .map(|ms| ms / 1000),
            dead_letters: outbox("dead_letters"),
            lock,
            locks,
            clock: report.clock,
            alerts_pending: report.alerts_pending,
            level: report.assessment.level,
            reasons: report.assessment.reasons.clone(),
        }
    }
}

/// Builds the `up` message now. Reads the store, so call it off the async threads.
pub fn build_report(sources: &StatusSources) -> HealthReport {
    HealthReport::from_status(&sources.report())
}

/// The task that keeps the retained health message current.
pub(super) struct HealthPublisher {
    /// What the report is built from.
    pub sources: StatusSources,
    /// The alert queue (its depth is reported; clock alerts are raised here).
    pub alerts: Alerts,
    /// Where health goes.
    pub publisher: Publisher,
    /// The health topic.
    pub topic: String,
    /// Refresh period when nothing changes.
    pub period: Duration,
}

/// Changes closer together than this make one health message.
const DEBOUNCE: Duration = Duration::from_secs(1);
/// How often the alert queue's depth is counted into the live picture.
const COUNT_ALERTS_EVERY: Duration = Duration::from_secs(2);

impl HealthPublisher {
    /// Runs until `stop` resolves.
    pub(super) async fn run(self, mut stop: StopSignal) {
        let this = Arc::new(self);
        let live = this.sources.live.clone();
        let mut facts = live.watch_facts();
        let mut connections = this.publisher.link().watch_connections();
        let mut ticker = tokio::time::interval(this.period);
        let mut retry = tokio::time::interval(Duration::from_secs(1));
        let mut count_alerts = tokio::time::interval(COUNT_ALERTS_EVERY);
        let mut dirty = true;
        let mut last_clock = None;
        loop {
            tokio::select! {
                _ = stop.stopped() => return,
                _ = ticker.tick() => dirty = true,
                Ok(()) = facts.changed() => {
                    // Debounce: a read's outcome, its lock release and the alert it raised
                    // arrive within moments of each other.
                    tokio::select! {
                        _ = tokio::time::sleep(DEBOUNCE) => {}
                        _ = stop.stopped() => return,
                    }
                    facts.borrow_and_update();
                    dirty = true;
                }
                Ok(()) = connections.changed() => dirty = true,
                _ = count_alerts.tick() => {
                    live.alerts_pending(this.alerts.pending_count());
                    continue;
                }
                _ = retry.tick(), if dirty => {}
            }
            let clock = clock_sync();
            if last_clock != Some(clock) {
                this.clock_changed(clock).await;
                last_clock = Some(clock);
            }
            if dirty && this.publisher.link().is_connected() {
                dirty = !this.publish().await;
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
    async fn publish(self: &Arc<Self>) -> bool {
        let sources = self.sources.clone();
        let report = tokio::task::spawn_blocking(move || build_report(&sources)).await;
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
