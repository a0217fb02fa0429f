//! `edge-agent status` for a technician on the box (O3).
//!
//! The running agent writes a small JSON report to `<data_dir>/status.json` every few seconds
//! and soon after any change of its live picture (atomically, by rename); the `status` command
//! reads it ([`read`]) and formats it. [`StatusSources::report`] is the one report builder: the
//! MQTT health message and the metrics endpoint are projections of the same report. A file rather than a
//! socket means status still answers — as "stale since …" — when the agent is hung or stopped,
//! which is exactly when a technician needs it, and it needs no extra listening port.

use crate::config::Config;
use crate::device::aiface::AifaceHub;
use crate::device::registry;
use crate::live::Live;
use crate::store::Store;
use crate::sync::buffer::{self, BufferStats};
use crate::sync::{catch_up, state};
use crate::upstream::Upstream;
use serde::Serialize;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How often the running agent rewrites its status file when nothing changes.
pub const WRITE_EVERY: Duration = Duration::from_secs(5);
/// How soon after a change of the live picture the status file is rewritten (changes within
/// it are written together).
pub const DEBOUNCE: Duration = Duration::from_millis(500);

/// What the agent reports about itself: the one live picture that `status`, the MQTT health
/// message and the Prometheus metrics are all derived from.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// `agent.id`.
    pub agent_id: String,
    /// `agent.site`.
    pub site: String,
    /// Build version.
    pub version: String,
    /// Process id of the agent.
    pub pid: u32,
    /// When the agent started (UTC ms).
    pub started_at_ms: i64,
    /// Seconds the agent has run (monotonic).
    pub uptime_s: u64,
    /// When this report was written (UTC ms).
    pub updated_at_ms: i64,
    /// The system clock's synchronisation as the kernel reports it: while `unsynchronized`,
    /// every time the agent stamps may be wrong and the events it stamps are marked so.
    pub clock: crate::clock_sync::ClockSync,
    /// One entry per configured device.
    pub devices: Vec<DeviceStatus>,
    /// Upstream forwarding and outbox health (`null` where the agent runs no upstream side).
    pub upstream: Option<Value>,
    /// The shelf-label adapter: `null` when `esl.enabled` is off.
    pub esl: Option<crate::esl::EslStatus>,
    /// The MQTT control plane: `null` when `[mqtt]` is off.
    pub mqtt: Option<MqttStatus>,
    /// Alerts recorded and not yet confirmed by the broker.
    pub alerts_pending: usize,
    /// Alarms recorded in the store, newest last.
    pub alarms: Vec<AlarmLine>,
    /// The last errors the services reported, oldest first.
    pub last_errors: Vec<crate::live::ErrorLine>,
    /// The local log file (`null` where the report has no logging to look at).
    pub log: Option<LogStatus>,
    /// Bytes the store occupies on disk.
    pub store_bytes: Option<u64>,
    /// Flush-and-fsync rounds of the store since it was opened: with group commit it grows
    /// slower than the writes, and a figure that stops growing while events queue means the
    /// disk stalls.
    pub store_durable_flushes: u64,
    /// What a technician (or a monitoring script, by the exit status) should make of it.
    pub assessment: Assessment,
}

/// The local log file: a technician reads it at 3 a.m., so `status` says when it is not being
/// written (disk full, directory removed) and how many lines were lost.
#[derive(Debug, Clone, Serialize)]
pub struct LogStatus {
    /// The log file (`null`: file logging is off).
    pub file: Option<PathBuf>,
    /// Why the file cannot be written now (`null`: it can).
    pub file_error: Option<String>,
    /// Log lines lost because the file could not be written, since start.
    pub dropped_lines: u64,
}

/// The MQTT link as the connection reported it.
#[derive(Debug, Clone, Serialize)]
pub struct MqttStatus {
    /// Connected to the broker now.
    pub connected: bool,
    /// Connections made since start.
    pub connections: u64,
}

/// One device as `status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceStatus {
    /// Configured id.
    pub id: String,
    /// `aiface` or `zk`.
    pub driver: String,
    /// Whether it is connected now (AI06) — unknown for polled drivers.
    pub connected: Option<bool>,
    /// Serial number at its last registration.
    pub sn: Option<String>,
    /// Firmware at its last registration.
    pub firmware: Option<String>,
    /// Users it reported at its last registration.
    pub users_reported: Option<u64>,
    /// Device clock minus agent clock at its last registration.
    pub clock_skew_s: Option<i64>,
    /// When it last registered (UTC ms).
    pub last_registered_at_ms: Option<i64>,
    /// The first read generation whose events the full outbox refused, while the upstream is
    /// behind this device's buffer (a catch-up follows when there is room).
    pub upstream_behind_since_generation: Option<u64>,
    /// When the last complete read was applied (UTC ms; from the store, so it survives restarts).
    pub last_complete_read_ms: Option<i64>,
    /// Seconds since then.
    pub last_complete_read_age_s: Option<i64>,
    /// Users in the last complete read.
    pub last_read_users: Option<u64>,
    /// Users the last complete read found gone (since this agent started).
    pub last_read_lost: u64,
    /// The buffered users of this device by status.
    pub users: BufferStats,
    /// Why the last read attempt failed, while it is the latest outcome.
    pub last_error: Option<String>,
    /// Read attempts in a row that were not complete.
    pub consecutive_incomplete: u32,
    /// The read under way: pages and credentials done of total, rate, ETA.
    pub reading: Option<crate::live::ReadingNow>,
    /// The fencing token of the device lock this agent holds now (`null`: not held).
    pub lock_token: Option<u64>,
    /// What is left of that lock before this agent stops using it (lease not yet renewed, or
    /// `lock.max_hold`), in milliseconds.
    pub lock_remaining_ms: Option<u64>,
    /// Read counters since start (metrics).
    pub reads: crate::live::ReadCounters,
}

/// An alarm, flattened for display.
#[derive(Debug, Clone, Serialize)]
pub struct AlarmLine {
    /// When it was raised (UTC ms).
    pub raised_at_ms: i64,
    /// What happened and what to do.
    pub message: String,
}

/// How serious the state is, for the exit status of `edge-agent status` (0/1/2, the usual
/// monitoring-plugin convention).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Nothing to do.
    Ok,
    /// Look soon: a device not connected, a read incomplete, users missing, the broker away.
    Warning,
    /// Act now: forwarding failed, the outbox refusing, reads failing again and again, the
    /// status not written any more.
    Critical,
}

/// The level and the reasons for it, each a sentence saying what to check.
#[derive(Debug, Clone, Serialize)]
pub struct Assessment {
    /// The worst level among the reasons.
    pub level: Level,
    /// Why, worst first.
    pub reasons: Vec<String>,
}

/// Incomplete reads in a row that make a device critical rather than a warning.
pub const CRITICAL_INCOMPLETE_READS: u32 = 3;

/// Judges a report; `stale` says the report is no longer being rewritten.
pub fn assess(report: &StatusReport) -> Assessment {
    let mut reasons: Vec<(Level, String)> = Vec::new();
    for device in &report.devices {
        let id = &device.id;
        if device.connected == Some(false) {
            reasons.push((
                Level::Warning,
                format!("device {id} is not connected (check its network and server address)"),
            ));
        }
        if device.consecutive_incomplete >= CRITICAL_INCOMPLETE_READS {
            reasons.push((
                Level::Critical,
                format!(
                    "device {id}: {} reads in a row were not complete (last error: {})",
                    device.consecutive_incomplete,
                    device.last_error.as_deref().unwrap_or("?")
                ),
            ));
        } else if device.consecutive_incomplete > 0 {
            reasons.push((
                Level::Warning,
                format!(
                    "device {id}: the last read was not complete ({})",
                    device.last_error.as_deref().unwrap_or("?")
                ),
            ));
        }
        if device.users.missing > 0 {
            reasons.push((
                Level::Warning,
                format!(
                    "device {id}: {} users missing (edge-agent buffer list --status missing)",
                    device.users.missing
                ),
            ));
        }
        if device.users.conflict > 0 {
            reasons.push((
                Level::Warning,
                format!("device {id}: {} users in conflict", device.users.conflict),
            ));
        }
    }
    if let Some(log) = &report.log {
        if let Some(error) = &log.file_error {
            reasons.push((
                Level::Warning,
                format!(
                    "the log file cannot be written ({error}); {} lines lost so far: check the \
                     disk (df -h) and the log directory",
                    log.dropped_lines
                ),
            ));
        }
    }
    if let Some(upstream) = &report.upstream {
        if upstream["forwarder"]["state"] == "failed" {
            reasons.push((
                Level::Critical,
                format!(
                    "upstream forwarding is not running: {}",
                    upstream["forwarder"]["reason"].as_str().unwrap_or("?")
                ),
            ));
        }
        if upstream["outbox"]["refusing"] == true {
            reasons.push((
                Level::Critical,
                "the outbox is full and refusing new events (is the upstream reachable?)".into(),
            ));
        }
        if upstream["outbox"]["dead_letters"].as_u64().unwrap_or(0) > 0 {
            reasons.push((
                Level::Warning,
                "events in the dead letters (edge-agent ctl dead-letters list)".into(),
            ));
        }
    }
    if let Some(esl) = &report.esl {
        if let Some(error) = esl.last_error.as_deref().filter(|_| esl.state == "failing") {
            reasons.push((
                Level::Warning,
                format!("shelf labels are not being updated: {error}"),
            ));
        }
    }
    if report.mqtt.as_ref().is_some_and(|mqtt| !mqtt.connected) {
        reasons.push((Level::Warning, "not connected to the MQTT broker".into()));
    }
    if report.clock == crate::clock_sync::ClockSync::Unsynchronized {
        reasons.push((
            Level::Warning,
            "the system clock is not synchronised".into(),
        ));
    }
    reasons.sort_by_key(|reason| std::cmp::Reverse(reason.0));
    Assessment {
        level: reasons.first().map_or(Level::Ok, |(level, _)| *level),
        reasons: reasons.into_iter().map(|(_, reason)| reason).collect(),
    }
}

/// The parts of a running agent the report is built from.
#[derive(Clone)]
pub struct StatusSources {
    /// The resolved config.
    pub config: Arc<Config>,
    /// The store.
    pub store: Store,
    /// The live picture the services report into.
    pub live: Live,
    /// Live AI06 sessions (`None`: no device service, as in a control plane alone).
    pub aiface: Option<Arc<AifaceHub>>,
    /// The upstream side (`None`: not run).
    pub upstream: Option<Upstream>,
    /// The shelf-label adapter (`None`: not run).
    pub esl: Option<crate::esl::Esl>,
    /// When the agent started (UTC ms).
    pub started_at_ms: i64,
    /// The agent's logging, whose file health the report shows (`None`: not this process's).
    pub logging: Option<Arc<crate::ops::logging::LoggingHandle>>,
    /// The buffer counts of the last reports, recounted only after the buffer changed.
    pub buffer_stats: Arc<buffer::StatsCache>,
}

impl StatusSources {
    /// Builds a report of the agent as it is now. Reads the store (sync state, registrations,
    /// buffer counts, alarms), so call it off the async threads.
    pub fn report(&self) -> StatusReport {
        let config = &self.config;
        let picture = self.live.snapshot();
        let now = chrono::Utc::now().timestamp_millis();
        let devices = config
            .device
            .iter()
            .map(|device| {
                let record = registry::recall(&self.store, &device.id).ok().flatten();
                let live = picture.devices.get(&device.id).cloned().unwrap_or_default();
                let state = state::load(&self.store, &device.id).unwrap_or_default();
                let last_complete = state.last_complete_read_ms.or(live.last_complete_read_ms);
                DeviceStatus {
                    id: device.id.clone(),
                    driver: format!("{:?}", device.driver).to_lowercase(),
                    connected: match (&self.aiface, device.driver) {
                        (Some(hub), crate::config::Driver::Aiface) => {
                            Some(hub.connected(&device.id).is_some())
                        }
                        _ => None,
                    },
                    sn: record.as_ref().map(|r| r.sn.clone()),
                    firmware: record.as_ref().and_then(|r| r.firmware.clone()),
                    users_reported: record.as_ref().and_then(|r| r.users),
                    clock_skew_s: record.as_ref().and_then(|r| r.clock_skew_s),
                    last_registered_at_ms: record.as_ref().map(|r| r.registered_at_ms),
                    upstream_behind_since_generation: catch_up::load(&self.store, &device.id)
                        .ok()
                        .flatten()
                        .map(|behind| behind.since_generation),
                    last_complete_read_ms: last_complete,
                    last_complete_read_age_s: last_complete.map(|at| (now - at).max(0) / 1000),
                    last_read_users: live
                        .last_read_users
                        .or((state.generation > 0).then_some(state.users)),
                    last_read_lost: live.last_read_lost,
                    users: self
                        .buffer_stats
                        .stats(&self.store, Some(&device.id))
                        .unwrap_or_default(),
                    last_error: live.last_error,
                    consecutive_incomplete: live.consecutive_incomplete,
                    reading: live.reading,
                    lock_token: live.lock_token,
                    lock_remaining_ms: live
                        .lock_fence
                        .as_ref()
                        .map(|fence| fence.remaining().as_millis() as u64),
                    reads: live.reads,
                }
            })
            .collect();
        let upstream = self
            .upstream
            .as_ref()
            .map(|upstream| match upstream.status() {
                Ok(status) => serde_json::to_value(status).unwrap_or(Value::Null),
                Err(err) => serde_json::json!({ "error": err.to_string() }),
            });
        let alarms = self
            .store
            .alarms()
            .map(|alarms| {
                alarms
                    .into_iter()
                    .map(|(_, alarm)| AlarmLine {
                        raised_at_ms: alarm.raised_at_unix_ms,
                        message: alarm.message,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut report = StatusReport {
            agent_id: config.agent.id.clone(),
            site: config.agent.site.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            started_at_ms: self.started_at_ms,
            uptime_s: self.live.uptime_s(),
            updated_at_ms: now,
            clock: crate::clock_sync::clock_sync(),
            devices,
            upstream,
            esl: self.esl.as_ref().map(crate::esl::Esl::status),
            mqtt: picture.mqtt_connected.map(|connected| MqttStatus {
                connected,
                connections: picture.mqtt_connections,
            }),
            alerts_pending: picture.alerts_pending,
            alarms,
            last_errors: picture.last_errors.into_iter().collect(),
            log: self.logging.as_ref().map(|logging| LogStatus {
                file: (!config.log.file.as_os_str().is_empty()).then(|| config.log.file.clone()),
                file_error: logging.file_error(),
                dropped_lines: logging.dropped_file_lines(),
            }),
            store_bytes: self.store.size_on_disk().ok(),
            store_durable_flushes: self.store.durable_flushes(),
            assessment: Assessment {
                level: Level::Ok,
                reasons: Vec::new(),
            },
        };
        report.assessment = assess(&report);
        report
    }

    /// Rewrites the status file every [`WRITE_EVERY`], and within [`DEBOUNCE`] of any change
    /// of the live picture (so a long read's progress shows), until stopped.
    pub async fn keep_written(self, mut stop: crate::lifecycle::StopSignal) {
        let path = status_path(&self.config);
        let mut ticker = tokio::time::interval(WRITE_EVERY);
        let mut changes = self.live.watch_any();
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                Ok(()) = changes.changed() => {
                    tokio::select! {
                        _ = tokio::time::sleep(DEBOUNCE) => {}
                        _ = stop.stopped() => return,
                    }
                    changes.borrow_and_update();
                }
                _ = stop.stopped() => return,
            }
            let sources = self.clone();
            let path = path.clone();
            let written =
                tokio::task::spawn_blocking(move || write_atomically(&path, &sources.report()))
                    .await;
            match written {
                Ok(Ok(())) => {}
                Ok(Err(err)) => {
                    tracing::warn!(path = %status_path(&self.config).display(), %err, "could not write the status file")
                }
                Err(err) => tracing::warn!(%err, "building the status report failed"),
            }
        }
    }
}

/// Where the running agent writes its status.
pub fn status_path(config: &Config) -> PathBuf {
    config.agent.data_dir.join("status.json")
}

fn write_atomically(path: &Path, report: &StatusReport) -> std::io::Result<()> {
    let temporary = path.with_extension("json.tmp");
    std::fs::write(&temporary, serde_json::to_vec_pretty(report)?)?;
    std::fs::rename(&temporary, path)
}

/// Reads the status file the running agent last wrote (`edge-agent status` formats it).
pub fn read(config: &Config) -> Result<Value, String> {
    let path = status_path(config);
    let text = std::fs::read_to_string(&path).map_err(|err| {
        format!(
            "no status at {} ({err}): is the agent running? (systemctl status edge-agent)",
            path.display()
        )
    })?;
    serde_json::from_str(&text)
        .map_err(|err| format!("{} is not a status report: {err}", path.display()))
}
