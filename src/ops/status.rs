//! `edge-agent status` for a technician on the box (O3).
//!
//! The running agent writes a small JSON report to `<data_dir>/status.json` every few seconds
//! (atomically, by rename); the `status` command reads it ([`read`]) and formats it. A file rather than a
//! socket means status still answers — as "stale since …" — when the agent is hung or stopped,
//! which is exactly when a technician needs it, and it needs no extra listening port.

use crate::config::Config;
use crate::device::aiface::AifaceHub;
use crate::device::registry;
use crate::store::Store;
use crate::sync::catch_up;
use crate::upstream::Upstream;
use serde::Serialize;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How often the running agent rewrites its status file.
pub const WRITE_EVERY: Duration = Duration::from_secs(5);

/// What the agent reports about itself.
#[derive(Debug, Serialize)]
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
    /// When this report was written (UTC ms).
    pub updated_at_ms: i64,
    /// The system clock's synchronisation as the kernel reports it: while `unsynchronized`,
    /// every time the agent stamps may be wrong and the events it stamps are marked so.
    pub clock: crate::clock_sync::ClockSync,
    /// One entry per configured device.
    pub devices: Vec<DeviceStatus>,
    /// Upstream forwarding and outbox health.
    pub upstream: Option<Value>,
    /// Alarms recorded in the store, newest last.
    pub alarms: Vec<AlarmLine>,
    /// Bytes the store occupies on disk.
    pub store_bytes: Option<u64>,
}

/// One device as `status` shows it.
#[derive(Debug, Serialize)]
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
}

/// An alarm, flattened for display.
#[derive(Debug, Serialize)]
pub struct AlarmLine {
    /// When it was raised (UTC ms).
    pub raised_at_ms: i64,
    /// What happened and what to do.
    pub message: String,
}

/// The parts of a running agent the report is built from.
#[derive(Clone)]
pub struct StatusSources {
    /// The resolved config.
    pub config: Arc<Config>,
    /// The store.
    pub store: Store,
    /// Live AI06 sessions.
    pub aiface: Arc<AifaceHub>,
    /// The upstream side.
    pub upstream: Upstream,
    /// When the agent started (UTC ms).
    pub started_at_ms: i64,
}

impl StatusSources {
    /// Builds a report of the agent as it is now.
    pub fn report(&self) -> StatusReport {
        let config = &self.config;
        let devices = config
            .device
            .iter()
            .map(|device| {
                let record = registry::recall(&self.store, &device.id).ok().flatten();
                DeviceStatus {
                    id: device.id.clone(),
                    driver: format!("{:?}", device.driver).to_lowercase(),
                    connected: (device.driver == crate::config::Driver::Aiface)
                        .then(|| self.aiface.connected(&device.id).is_some()),
                    sn: record.as_ref().map(|r| r.sn.clone()),
                    firmware: record.as_ref().and_then(|r| r.firmware.clone()),
                    users_reported: record.as_ref().and_then(|r| r.users),
                    clock_skew_s: record.as_ref().and_then(|r| r.clock_skew_s),
                    last_registered_at_ms: record.as_ref().map(|r| r.registered_at_ms),
                    upstream_behind_since_generation: catch_up::load(&self.store, &device.id)
                        .ok()
                        .flatten()
                        .map(|behind| behind.since_generation),
                }
            })
            .collect();
        let upstream = match self.upstream.status() {
            Ok(status) => serde_json::to_value(status).ok(),
            Err(err) => Some(serde_json::json!({ "error": err.to_string() })),
        };
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
        StatusReport {
            agent_id: config.agent.id.clone(),
            site: config.agent.site.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            started_at_ms: self.started_at_ms,
            updated_at_ms: chrono::Utc::now().timestamp_millis(),
            clock: crate::clock_sync::clock_sync(),
            devices,
            upstream,
            alarms,
            store_bytes: self.store.size_on_disk().ok(),
        }
    }

    /// Rewrites the status file every [`WRITE_EVERY`] until stopped.
    pub async fn keep_written(self, mut stop: crate::lifecycle::StopSignal) {
        let path = status_path(&self.config);
        let mut ticker = tokio::time::interval(WRITE_EVERY);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stop.stopped() => return,
            }
            let report = self.report();
            if let Err(err) = write_atomically(&path, &report) {
                tracing::warn!(path = %path.display(), %err, "could not write the status file");
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
