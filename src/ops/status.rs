//! `edge-agent status` for a technician on the box (O3).
//!
//! The running agent writes a small JSON report to `<data_dir>/status.json` every few seconds
//! (atomically, by rename); the `status` command reads and formats it. A file rather than a
//! socket means status still answers — as "stale since …" — when the agent is hung or stopped,
//! which is exactly when a technician needs it, and it needs no extra listening port.

use crate::config::Config;
use crate::device::aiface::AifaceHub;
use crate::device::registry;
use crate::store::Store;
use crate::upstream::Upstream;
use serde::Serialize;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How often the running agent rewrites its status file.
pub const WRITE_EVERY: Duration = Duration::from_secs(5);
/// A status file older than this is reported as stale.
const STALE_AFTER_MS: i64 = 30_000;

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

/// Reads the status file and formats it for a person (or returns it as JSON).
pub fn show(config: &Config, json: bool) -> Result<String, String> {
    let path = status_path(config);
    let text = std::fs::read_to_string(&path).map_err(|err| {
        format!(
            "no status at {} ({err}): is the agent running? (systemctl status edge-agent)",
            path.display()
        )
    })?;
    let report: Value = serde_json::from_str(&text)
        .map_err(|err| format!("{} is not a status report: {err}", path.display()))?;
    if json {
        return Ok(serde_json::to_string_pretty(&report).unwrap_or(text));
    }
    Ok(format_report(
        &report,
        chrono::Utc::now().timestamp_millis(),
    ))
}

fn age(now_ms: i64, at: &Value) -> String {
    match at.as_i64() {
        Some(at) => {
            let seconds = (now_ms - at).max(0) / 1000;
            match seconds {
                0..=119 => format!("{seconds} s ago"),
                120..=7199 => format!("{} min ago", seconds / 60),
                _ => format!("{} h ago", seconds / 3600),
            }
        }
        None => "never".to_string(),
    }
}

/// The text form of a report; `now_ms` makes ages testable.
pub fn format_report(report: &Value, now_ms: i64) -> String {
    let mut out = String::new();
    let updated = report["updated_at_ms"].as_i64().unwrap_or_default();
    out.push_str(&format!(
        "edge-agent {} — agent {} at site {} (pid {})\n",
        report["version"].as_str().unwrap_or("?"),
        report["agent_id"].as_str().unwrap_or("?"),
        report["site"].as_str().unwrap_or("?"),
        report["pid"]
    ));
    if now_ms - updated > STALE_AFTER_MS {
        out.push_str(&format!(
            "STALE: last status written {}; the agent may be stopped or hung \
             (systemctl status edge-agent; journalctl -u edge-agent)\n",
            age(now_ms, &report["updated_at_ms"])
        ));
    } else {
        out.push_str(&format!(
            "running since {}\n",
            age(now_ms, &report["started_at_ms"])
        ));
    }
    out.push_str("\nDevices:\n");
    for device in report["devices"].as_array().into_iter().flatten() {
        let connected = match device["connected"].as_bool() {
            Some(true) => "connected",
            Some(false) => "NOT connected",
            None => "polled",
        };
        out.push_str(&format!(
            "  {:<20} {:<7} {:<13} sn {:<14} users {:<6} skew {:>5} s  registered {}\n",
            device["id"].as_str().unwrap_or("?"),
            device["driver"].as_str().unwrap_or("?"),
            connected,
            device["sn"].as_str().unwrap_or("-"),
            device["users_reported"]
                .as_u64()
                .map_or("-".to_string(), |n| n.to_string()),
            device["clock_skew_s"]
                .as_i64()
                .map_or("-".to_string(), |n| n.to_string()),
            age(now_ms, &device["last_registered_at_ms"]),
        ));
    }
    let upstream = &report["upstream"];
    if upstream.is_object() {
        let outbox = &upstream["outbox"];
        out.push_str(&format!(
            "\nUpstream: {}; queued {}, delivered {}, dead letters {}, last success {}\n",
            match upstream["forwarder"]["reason"].as_str() {
                Some(reason) => format!(
                    "{} ({reason})",
                    upstream["forwarder"]["state"].as_str().unwrap_or("?")
                ),
                None => upstream["forwarder"]["state"]
                    .as_str()
                    .unwrap_or("?")
                    .replace('_', " "),
            },
            upstream["queued"],
            upstream["delivered"],
            outbox["dead_letters"],
            age(now_ms, &upstream["last_success_at_ms"]),
        ));
        out.push_str(&format!(
            "Outbox: {} events, {} of {} bytes{}, oldest {}\n",
            outbox["depth"],
            outbox["bytes"],
            outbox["max_bytes"],
            if outbox["refusing"].as_bool() == Some(true) {
                " — FULL, refusing new events"
            } else {
                ""
            },
            age(now_ms, &outbox["oldest_occurred_at_ms"]),
        ));
        if let Some(error) = upstream["last_error"].as_str() {
            out.push_str(&format!("Last upstream error: {error}\n"));
        }
    }
    let alarms = report["alarms"].as_array().cloned().unwrap_or_default();
    if alarms.is_empty() {
        out.push_str("\nNo alarms.\n");
    } else {
        out.push_str(&format!("\nAlarms ({}):\n", alarms.len()));
        for alarm in alarms.iter().rev().take(10) {
            out.push_str(&format!(
                "  {}: {}\n",
                age(now_ms, &alarm["raised_at_ms"]),
                alarm["message"].as_str().unwrap_or("?")
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(updated_at_ms: i64) -> Value {
        serde_json::json!({
            "agent_id": "gw", "site": "s", "version": "0.1.0", "pid": 7,
            "started_at_ms": updated_at_ms - 3_600_000, "updated_at_ms": updated_at_ms,
            "devices": [{"id": "door", "driver": "aiface", "connected": false, "sn": "SN1",
                         "users_reported": 12, "clock_skew_s": -3,
                         "last_registered_at_ms": updated_at_ms - 600_000}],
            "upstream": {"forwarder": {"state": "failed", "reason": "token file unreadable"},
                         "queued": 5, "delivered": 0,
                         "outbox": {"depth": 5, "bytes": 900, "max_bytes": 64000000,
                                    "dead_letters": 1, "refusing": true,
                                    "oldest_occurred_at_ms": updated_at_ms - 120_000}},
            "alarms": [{"raised_at_ms": updated_at_ms, "message": "outbox full"}],
        })
    }

    #[test]
    fn a_fresh_report_reads_plainly() {
        let now = 1_800_000_000_000;
        let text = format_report(&report(now - 1_000), now);
        assert!(text.contains("running since 60 min ago"), "{text}");
        assert!(
            text.contains("door") && text.contains("NOT connected"),
            "{text}"
        );
        assert!(text.contains("failed (token file unreadable)"), "{text}");
        assert!(text.contains("FULL, refusing new events"), "{text}");
        assert!(text.contains("outbox full"), "{text}");
    }

    #[test]
    fn an_old_report_is_called_stale() {
        let now = 1_800_000_000_000;
        let text = format_report(&report(now - 300_000), now);
        assert!(
            text.contains("STALE: last status written 5 min ago"),
            "{text}"
        );
    }
}
