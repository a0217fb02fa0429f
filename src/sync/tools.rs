//! The technician's commands on the box: `buffer list`, `audit query`, `backup list|create|
//! restore [--dry-run]`, `migrate`.
//!
//! They work **directly on the store, with the agent stopped** (`systemctl stop edge-agent`),
//! rather than through a local socket of the running agent:
//! - sled lets one process open a store; a second opener fails at once with "already open in
//!   another process (is a second edge-agent running?)", so a command can never read a store
//!   that is being written or corrupt it;
//! - the device-facing commands need the terminal's connection (AI06 terminals dial the
//!   agent's port) and its lock, which a running agent holds anyway;
//! - a running agent is queried remotely through the MQTT commands of the same names (M3),
//!   which call the same library functions.

use super::backup::{self, BackupInfo};
use super::buffer::{self, MappingStatus};
use super::clock::format_ms;
use super::lock::FlockLock;
use super::restore::RestoreReport;
use super::{Engine, SyncError};
use crate::agent::Tasks;
use crate::audit::{Audit, AuditEntry, AuditQuery};
use crate::config::{Config, DeviceConfig, Driver};
use crate::device::aiface::{AifaceHub, AifaceServer};
use crate::device::punches::PunchLog;
use crate::store::{Store, StoreError};
use crate::upstream::outbox::Outbox;
use anyhow::Context as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Opens the agent's store for a command, explaining what to do when the agent holds it.
pub fn open_store(config: &Config) -> anyhow::Result<Store> {
    let options = crate::agent::store_options(config);
    match Store::open(&options) {
        Ok(opened) => Ok(opened.store),
        Err(err @ StoreError::AlreadyInUse { .. }) => Err(anyhow::anyhow!(
            "{err}\nThese commands work on the store directly: stop the agent first \
             (systemctl stop edge-agent), or ask the running agent over MQTT"
        )),
        Err(err) => Err(err).context("cannot open the store"),
    }
}

/// The engine the commands use: the configured flock lock, the system clock.
pub fn engine(config: &Config, store: &Store) -> anyhow::Result<Engine> {
    let lock = FlockLock::from_config(&config.lock);
    let outbox = Outbox::open(store, config.upstream.outbox_max_bytes.bytes())?;
    let audit = Audit::new(store.clone());
    Ok(Engine::new(
        store.clone(),
        &config.agent.id,
        Arc::new(lock),
        outbox,
        audit,
    ))
}

/// `buffer list`: one line per buffered user, then the counts.
pub fn buffer_list(
    store: &Store,
    device: Option<&str>,
    status: Option<MappingStatus>,
    json: bool,
) -> anyhow::Result<String> {
    let views = buffer::list(store, device, status)?;
    let stats = buffer::stats(store, device)?;
    if json {
        let value = serde_json::json!({ "users": views, "stats": stats });
        return Ok(serde_json::to_string_pretty(&value)? + "\n");
    }
    let mut out = format!(
        "{:<12} {:<10} {:<20} {:<9} {:<12} {:<28} {:<21} {}\n",
        "DEVICE", "USER", "NAME", "STATUS", "PERSON", "CREDENTIALS", "LAST SEEN", "DISCOVERED"
    );
    for view in &views {
        out.push_str(&format!(
            "{:<12} {:<10} {:<20} {:<9} {:<12} {:<28} {:<21} {}\n",
            view.device_id,
            view.user_id,
            view.name,
            view.status,
            view.person_id.as_deref().unwrap_or("-"),
            view.credentials,
            format_ms(view.last_seen_at_ms),
            format_ms(view.discovered_at_ms),
        ));
    }
    out.push_str(&format!(
        "{} users: {} unmapped, {} pending, {} mapped, {} conflict, {} missing\n",
        stats.total, stats.unmapped, stats.pending, stats.mapped, stats.conflict, stats.missing
    ));
    Ok(out)
}

/// `audit query`: matching entries, newest first, skipping the newest `offset` matches.
pub fn audit_query(
    store: &Store,
    query: &AuditQuery,
    offset: usize,
    json: bool,
) -> anyhow::Result<String> {
    let entries: Vec<AuditEntry> = Audit::new(store.clone())
        .query_from(query, offset)?
        .into_iter()
        .map(|(_, entry)| entry)
        .collect();
    if json {
        let rows: Vec<_> = entries.iter().map(audit_json).collect();
        return Ok(serde_json::to_string_pretty(&rows)? + "\n");
    }
    let mut out = String::new();
    for entry in &entries {
        out.push_str(&format!(
            "{}  {:<15} {:<12} {:<10} {:<12} {}\n",
            format_ms(entry.at_unix_ms),
            entry.operation.as_str(),
            entry.device_id.as_deref().unwrap_or("-"),
            entry.device_user_id.as_deref().unwrap_or("-"),
            entry.actor,
            entry.detail
        ));
    }
    if entries.is_empty() {
        out.push_str("no matching audit entries\n");
    } else if entries.len() == query.limit {
        out.push_str(&format!(
            "(page of {}; more with --offset {})\n",
            query.limit,
            offset + query.limit
        ));
    }
    Ok(out)
}

fn audit_json(entry: &AuditEntry) -> serde_json::Value {
    serde_json::json!({
        "at": format_ms(entry.at_unix_ms),
        "at_ms": entry.at_unix_ms,
        "operation": entry.operation.as_str(),
        "device_id": entry.device_id.as_deref().unwrap_or_default(),
        "user_id": entry.device_user_id,
        "actor": entry.actor,
        "detail": entry.detail,
    })
}

/// `backup list`: every backup with its counts.
pub fn backup_list(config: &Config, device: Option<&str>, json: bool) -> anyhow::Result<String> {
    let backups = backup::list(&config.backup_dir(), device)?;
    if json {
        return Ok(serde_json::to_string_pretty(&backups)? + "\n");
    }
    let mut out = String::new();
    for info in &backups {
        out.push_str(&backup_line(info));
    }
    if backups.is_empty() {
        out.push_str(&format!(
            "no backups in {}\n",
            config.backup_dir().display()
        ));
    }
    Ok(out)
}

fn backup_line(info: &BackupInfo) -> String {
    format!(
        "{}  {:<12} {:>6} users {:>7} credentials {:>10} bytes  {}\n",
        info.header.created_at,
        info.header.device_id,
        info.trailer.users,
        info.trailer.credentials,
        info.size_bytes,
        info.path.display()
    )
}

/// The AI06 devices of the config, by id (all of them with `None`).
fn aiface_devices(config: &Config, only: Option<&str>) -> anyhow::Result<Vec<DeviceConfig>> {
    let devices: Vec<_> = config
        .device
        .iter()
        .filter(|d| d.driver == Driver::Aiface && only.is_none_or(|id| id == d.id))
        .cloned()
        .collect();
    match only {
        Some(id) if devices.is_empty() => Err(SyncError::UnknownDevice(id.to_string()).into()),
        _ => Ok(devices),
    }
}

/// Listens for the devices as the agent would (storing their punches), for a command's duration.
async fn listen(
    config: &Config,
    store: &Store,
    devices: &[DeviceConfig],
) -> anyhow::Result<(Tasks, Arc<AifaceHub>)> {
    let outbox = Outbox::open(store, config.upstream.outbox_max_bytes.bytes())?;
    let punches = PunchLog::new(outbox, &config.agent.id);
    let server = AifaceServer::bind(devices, Some(store.clone()), Some(punches)).await?;
    let hub = server.hub();
    let mut tasks = Tasks::new();
    tasks.spawn("aiface-listener", move |stop| server.run(stop));
    Ok((tasks, hub))
}

async fn connected(
    hub: &AifaceHub,
    device: &str,
    wait: Duration,
) -> Result<crate::device::aiface::AifaceSession, SyncError> {
    eprintln!("waiting up to {wait:?} for {device} to connect");
    hub.session(device, wait)
        .await
        .ok_or_else(|| SyncError::NotConnected {
            device: device.to_string(),
            waited_s: wait.as_secs(),
        })
}

/// `backup create`: a backup of one device now.
pub async fn backup_create(
    config: &Config,
    store: &Store,
    device: &str,
    wait: Duration,
) -> anyhow::Result<String> {
    let devices = aiface_devices(config, Some(device))?;
    let (tasks, hub) = listen(config, store, &devices).await?;
    let engine = engine(config, store)?;
    let outcome = async {
        let session = connected(&hub, device, wait).await?;
        engine.backup(&session, &config.backup_dir()).await
    }
    .await;
    tasks.stop(Duration::from_secs(1)).await;
    Ok(format!("backup written:\n{}", backup_line(&outcome?)))
}

/// The backup file a technician named: a path, or a file name in the backup directory.
pub fn resolve_backup(config: &Config, name: &Path) -> PathBuf {
    if name.exists() {
        name.to_path_buf()
    } else {
        config.backup_dir().join(name)
    }
}

/// `backup restore [--dry-run]`.
pub async fn backup_restore(
    config: &Config,
    store: &Store,
    device: &str,
    file: &Path,
    dry_run: bool,
    wait: Duration,
) -> anyhow::Result<RestoreReport> {
    let devices = aiface_devices(config, Some(device))?;
    let path = resolve_backup(config, file);
    let (tasks, hub) = listen(config, store, &devices).await?;
    let engine = engine(config, store)?;
    let outcome = async {
        let session = connected(&hub, device, wait).await?;
        engine.restore(&session, &path, dry_run, "technician").await
    }
    .await;
    tasks.stop(Duration::from_secs(1)).await;
    Ok(outcome?)
}

/// `migrate`: reads every configured AI06 and buffers its users; returns the report and
/// whether every device was read.
pub async fn migrate(
    config: &Config,
    store: &Store,
    wait: Duration,
) -> anyhow::Result<(String, bool)> {
    let devices = aiface_devices(config, None)?;
    let ids: Vec<String> = devices.iter().map(|d| d.id.clone()).collect();
    let (tasks, hub) = listen(config, store, &devices).await?;
    let engine = engine(config, store)?;
    let report = engine.migrate(hub.as_ref(), &ids, wait).await;
    tasks.stop(Duration::from_secs(1)).await;
    let mut out = String::new();
    let mut all_read = true;
    for device in &report {
        match &device.outcome {
            Ok((users, new)) => out.push_str(&format!(
                "{}: complete read of {users} users, {new} newly buffered",
                device.device_id
            )),
            Err(err) => {
                all_read = false;
                out.push_str(&format!("{}: NOT read: {err}", device.device_id));
            }
        }
        if let Some(stats) = &device.stats {
            out.push_str(&format!(
                "; buffer: {} users, {} unmapped, {} mapped, {} missing",
                stats.total, stats.unmapped, stats.mapped, stats.missing
            ));
        }
        out.push('\n');
    }
    for skipped in config.device.iter().filter(|d| d.driver != Driver::Aiface) {
        all_read = false;
        out.push_str(&format!(
            "{}: NOT read: zk devices are not supported by this build yet\n",
            skipped.id
        ));
    }
    Ok((out, all_read))
}

/// A time given on the command line: RFC 3339 (`2026-11-22T08:00:00Z`), a UTC date
/// (`2026-11-22`), or a duration meaning "that long ago" (`2h`, `7d`).
pub fn parse_time(text: &str, now_ms: i64) -> Result<i64, String> {
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(time.timestamp_millis());
    }
    if let Ok(date) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(date
            .and_time(chrono::NaiveTime::MIN)
            .and_utc()
            .timestamp_millis());
    }
    if let Ok(ago) = text.parse::<crate::config::HumanDuration>() {
        return Ok(now_ms - i64::try_from(ago.get().as_millis()).unwrap_or(i64::MAX));
    }
    Err(format!(
        "{text:?} is not a time: use 2026-11-22T08:00:00Z, 2026-11-22, or a duration ago like 2h or 7d"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_rfc3339_dates_or_durations_ago() {
        let now = 1_800_000_000_000;
        assert_eq!(parse_time("1970-01-02", now), Ok(86_400_000));
        assert_eq!(parse_time("1970-01-01T00:00:01Z", now), Ok(1_000));
        assert_eq!(parse_time("2h", now), Ok(now - 7_200_000));
        assert!(parse_time("yesterday-ish", now).is_err());
    }
}
