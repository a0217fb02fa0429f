//! Retention (B1, B5, B6): what may be forgotten, and when. Every rule takes "now" from the
//! engine's clock so it can be tested by moving an injected clock 91 days ahead.
//!
//! - Buffer: a record is removed only when its user is **not on the device** (status
//!   `missing`) and was last seen longer ago than `buffer.retention` (default 90 days); its
//!   cached credential values go with it. A user still on the device is never swept, however
//!   long the device has been unreachable.
//! - History: entries older than `buffer.audit_retention`.
//! - Audit: entries older than `buffer.audit_retention`, through the audit port.
//! - Backups: files older than `backup.retention` (default 30 days), never a device's newest.

use super::backup;
use super::buffer::{self, BufferRecord, MappingStatus};
use super::credentials;
use super::history::{self, HistoryEntry};
use super::{Engine, SyncError};
use crate::audit::Operation;
use crate::store::{TreeName, TxError};
use std::path::Path;
use std::time::Duration;

/// How long each kind of record is kept.
#[derive(Debug, Clone)]
pub struct RetentionPolicy {
    /// Buffer records of users gone from the device.
    pub buffer: Duration,
    /// Audit entries and history.
    pub audit: Duration,
    /// Backup files.
    pub backups: Duration,
}

/// What one sweep removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Swept {
    /// Buffer records, as (device, user).
    pub buffer: Vec<(String, String)>,
    /// History entries.
    pub history: usize,
    /// Audit entries.
    pub audit: usize,
    /// Backup files.
    pub backups: usize,
    /// Credential value files no cached credential names any more.
    pub value_files: usize,
}

/// `90 days`, for messages.
fn days(duration: Duration) -> String {
    let secs = duration.as_secs();
    if secs % 86_400 == 0 {
        format!("{} days", secs / 86_400)
    } else {
        format!("{secs} s")
    }
}

fn cutoff(now_ms: i64, keep: Duration) -> i64 {
    now_ms.saturating_sub(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX))
}

impl Engine {
    /// Applies `policy` to the buffer, history, audit log and the backups in `backup_dir`.
    pub async fn sweep(
        &self,
        policy: &RetentionPolicy,
        backup_dir: &Path,
    ) -> Result<Swept, SyncError> {
        let now = self.now_ms();
        let mut swept = Swept {
            buffer: self.sweep_buffer(cutoff(now, policy.buffer))?,
            history: self.sweep_history(cutoff(now, policy.audit))?,
            audit: self.audit().sweep_older_than(cutoff(now, policy.audit))?,
            backups: 0,
            value_files: 0,
        };
        swept.backups = backup::sweep(backup_dir, cutoff(now, policy.backups))?.len();
        if swept != Swept::default() {
            let detail = format!(
                "retention removed {} buffer record(s) of users gone for over {} ({}), {} history \
                 and {} audit entries, {} backup file(s)",
                swept.buffer.len(),
                days(policy.buffer),
                swept
                    .buffer
                    .iter()
                    .map(|(device, user)| format!("{device}/{user}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                swept.history,
                swept.audit,
                swept.backups
            );
            tracing::info!("{detail}");
            self.audit_now("", None, Operation::Retention, "agent", detail)
                .await?;
        }
        self.store().make_durable().await?;
        // After the records are durably gone: their value files go now.
        swept.value_files = credentials::sweep(self.store())?.removed;
        if swept.value_files > 0 {
            tracing::info!(
                files = swept.value_files,
                "retention removed credential value files no cached credential names"
            );
        }
        Ok(swept)
    }

    fn sweep_buffer(&self, cutoff_ms: i64) -> Result<Vec<(String, String)>, SyncError> {
        let mut candidates = Vec::new();
        for entry in self
            .store()
            .scan_prefix::<BufferRecord>(TreeName::Buffer, [])
        {
            let (key, record) = entry?;
            if record.status == MappingStatus::Missing && record.last_seen_at_ms < cutoff_ms {
                candidates.push(key);
            }
        }
        let mut removed = Vec::new();
        for key in candidates {
            // Checked again inside the transaction: a poll may have brought the user back.
            let gone =
                self.store()
                    .transaction(&[TreeName::Buffer, TreeName::Snapshots], |tx| {
                        let Some(record) = tx.get::<BufferRecord>(TreeName::Buffer, &key)? else {
                            return Ok(None);
                        };
                        let on_device =
                            tx.get::<super::snapshot::SnapshotUser>(TreeName::Snapshots, &key)?;
                        if record.status != MappingStatus::Missing
                            || record.last_seen_at_ms >= cutoff_ms
                            || on_device.is_some()
                        {
                            return Ok(None);
                        }
                        buffer::remove_in(tx, &key)?;
                        Ok::<_, TxError>(Some((record.device_id, record.user.user_id)))
                    })?;
            if let Some((device, user)) = gone {
                credentials::remove_user(self.store(), &device, &user)?;
                removed.push((device, user));
            }
        }
        Ok(removed)
    }

    fn sweep_history(&self, cutoff_ms: i64) -> Result<usize, SyncError> {
        let mut old = Vec::new();
        for entry in self
            .store()
            .scan_prefix::<HistoryEntry>(TreeName::History, [])
        {
            let (key, entry) = entry?;
            if entry.read_at_ms < cutoff_ms {
                old.push(key);
            }
        }
        for key in &old {
            history::remove(self.store(), key)?;
        }
        Ok(old.len())
    }
}
