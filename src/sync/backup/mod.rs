//! Backups (B6): a full read of every credential, streamed into one file per backup (format
//! in [`mod@file`]), with retention and listing. A backup read is also a complete read, so it is
//! applied like a poll. Restore lives in [`crate::sync::restore`].

pub mod file;

pub use file::{BackupError, BackupInfo};

use super::credentials::StoreSink;
use super::state::{self, SyncState};
use super::{Engine, SyncError};
use crate::audit::{self, AuditEntry, Operation};
use crate::device::{Credential, DeviceSession, FetchMode, HeldCredential, ReadProgress, ReadSink};
use crate::store::{Alarm, AlarmKind, TreeName};
use file::BackupWriter;
use std::collections::BTreeMap;
use std::path::Path;

/// Streams every credential into the backup file and refreshes the credential cache.
struct BackupSink {
    writer: BackupWriter,
    cache: StoreSink,
    /// Where the read's progress is shown (`status` during a long backup).
    live: crate::live::Live,
    device_id: String,
}

impl ReadSink for BackupSink {
    fn held(&self, _user_id: &str, _slot: u16) -> Option<HeldCredential> {
        None
    }

    fn credential(&mut self, credential: Credential) -> Result<(), String> {
        self.writer
            .add(&credential)
            .map_err(|err| err.to_string())?;
        self.cache.credential(credential)
    }

    fn progress(&mut self, progress: ReadProgress) {
        self.live.read_progress(&self.device_id, &progress);
        self.cache.progress(progress);
    }
}

impl Engine {
    /// Backs the device behind `session` up into `dir`: under the lock, a complete read of
    /// every credential straight into a new file, which is only kept if the read was complete
    /// and the file holds every listed credential (and, when the device reports users, at
    /// least one). The read is then applied like a poll.
    pub async fn backup<S: DeviceSession>(
        &self,
        session: &S,
        dir: &Path,
    ) -> Result<BackupInfo, SyncError> {
        let device_id = session.device_id();
        let guard = self.lock().acquire(device_id).await?;
        let _reported = self.live().lock_reported(device_id, guard.fence());
        let writer = BackupWriter::create(dir, device_id, self.agent_id(), self.now_ms())?;
        let mut sink = BackupSink {
            writer,
            cache: StoreSink::new(self.store().clone(), device_id),
            live: self.live().clone(),
            device_id: device_id.to_string(),
        };
        let outcome = guard
            .run(session.read_users(FetchMode::All, &mut sink))
            .await?;
        sink.cache.finish()?;
        let read = match outcome {
            Ok(read) => read,
            Err(source) => {
                sink.writer.abandon();
                self.record_incomplete(device_id, &source).await?;
                let error = SyncError::Read {
                    device: device_id.to_string(),
                    source,
                };
                self.backup_failed(device_id, &error).await?;
                return Err(error);
            }
        };
        let mut user_lines = Ok(());
        for (user_id, user) in &read.users {
            user_lines = sink.writer.add_user(user, read.details.get(user_id));
            if user_lines.is_err() {
                break;
            }
        }
        let written = sink.writer.credentials();
        let read_users = read.users.len() as u64;
        let refusal = if let Err(error) = user_lines {
            Some(error)
        } else if read.users.is_empty() && read.device_user_count > 0 {
            Some(BackupError::Empty {
                device: device_id.to_string(),
                device_user_count: read.device_user_count,
            })
        } else if sink.writer.users() != read_users {
            Some(BackupError::MissingUsers {
                device: device_id.to_string(),
                read: read_users,
                written: sink.writer.users(),
            })
        } else if written != read.credentials_listed as u64 {
            Some(BackupError::Incomplete {
                device: device_id.to_string(),
                listed: read.credentials_listed,
                written,
            })
        } else {
            None
        };
        if let Some(refusal) = refusal {
            sink.writer.abandon();
            let error = SyncError::Backup(refusal);
            self.backup_failed(device_id, &error).await?;
            return Err(error);
        }
        let info = match sink.writer.finish(read.device_user_count) {
            Ok(info) if info.trailer.users != read_users => {
                // Never reached with the checks above; kept so a file whose trailer disagrees
                // with the read can never be reported as a success.
                let _ = std::fs::remove_file(&info.path);
                let error = SyncError::Backup(BackupError::MissingUsers {
                    device: device_id.to_string(),
                    read: read_users,
                    written: info.trailer.users,
                });
                self.backup_failed(device_id, &error).await?;
                return Err(error);
            }
            Ok(info) => info,
            Err(err) => {
                let error = SyncError::Backup(err);
                self.backup_failed(device_id, &error).await?;
                return Err(error);
            }
        };
        self.apply_read(device_id, &read, guard.fencing_token())
            .await?;
        // Every credential was fetched and cached: the next poll may name this list.
        super::listed::after_complete_read(
            self.store(),
            device_id,
            &read,
            sink.cache.all_cached(),
        )?;
        self.backup_done(device_id, &info).await?;
        drop(guard);
        Ok(info)
    }

    /// A backup that was not written: an error line, a durable alarm (the MQTT alert path
    /// picks alarms up) and an audit entry.
    async fn backup_failed(&self, device_id: &str, error: &SyncError) -> Result<(), SyncError> {
        tracing::error!(device = device_id, %error, "backup failed");
        self.store().raise_alarm(&Alarm {
            raised_at_unix_ms: self.now_ms(),
            kind: AlarmKind::BackupFailed {
                device_id: device_id.to_string(),
                reason: error.to_string(),
            },
            message: format!(
                "the backup of {device_id} was not written ({error}); the device has no fresh \
                 backup until one succeeds"
            ),
        })?;
        self.audit_now(
            device_id,
            None,
            Operation::Backup,
            "agent",
            format!("backup FAILED: {error}"),
        )
        .await
    }

    /// Records the new backup in the device's sync state and the audit log, durably.
    async fn backup_done(&self, device_id: &str, info: &BackupInfo) -> Result<(), SyncError> {
        let audit = self.audit().prepare(vec![AuditEntry {
            at_unix_ms: self.now_ms(),
            operation: Operation::Backup,
            device_id: Some(device_id.to_string()),
            device_user_id: None,
            actor: "agent".to_string(),
            detail: format!(
                "backup written: {} ({} users, {} credentials, {} bytes, sha256 {})",
                info.path.display(),
                info.trailer.users,
                info.trailer.credentials,
                info.size_bytes,
                info.trailer.sha256
            ),
        }])?;
        let created = info.header.created_at_ms;
        self.store()
            .transaction(&self.trees(&[TreeName::SyncState]), |tx| {
                let mut state: SyncState = tx
                    .get(TreeName::SyncState, device_id.as_bytes())?
                    .unwrap_or_default();
                state.last_backup_ms = Some(created);
                state::put_in(tx, device_id.as_bytes(), &state)?;
                audit::append_in(tx, &audit)
            })?;
        self.store().make_durable().await?;
        tracing::info!(
            device = device_id,
            path = %info.path.display(),
            users = info.trailer.users,
            credentials = info.trailer.credentials,
            bytes = info.size_bytes,
            "backup written"
        );
        Ok(())
    }

    /// Whether `device_id` is due for a backup every `interval_ms`.
    pub fn backup_due(&self, device_id: &str, interval_ms: i64) -> Result<bool, SyncError> {
        let state = state::load(self.store(), device_id)?;
        Ok(state
            .last_backup_ms
            .is_none_or(|last| self.now_ms() - last >= interval_ms))
    }
}

/// Every backup in `dir` (optionally of one device), oldest first per device. Files that are
/// not backups are skipped with a warning; unfinished temporary files are never listed.
pub fn list(dir: &Path, device_id: Option<&str>) -> Result<Vec<BackupInfo>, BackupError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(BackupError::Io {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut found = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|source| BackupError::Io {
                path: dir.to_path_buf(),
                source,
            })?
            .path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.starts_with('.') || !name.ends_with(file::EXTENSION) {
            continue;
        }
        match file::read_info(&path) {
            Ok(info) if device_id.is_none_or(|d| d == info.header.device_id) => found.push(info),
            Ok(_) => {}
            Err(err) => tracing::warn!(%err, "skipping a file that is not a usable backup"),
        }
    }
    found.sort_by(|a, b| {
        (&a.header.device_id, a.header.created_at_ms)
            .cmp(&(&b.header.device_id, b.header.created_at_ms))
    });
    Ok(found)
}

/// Temporary files of backups that a crash interrupted, once older than this.
const STALE_TEMP: std::time::Duration = std::time::Duration::from_secs(86_400);

/// Removes backups created before `cutoff_ms`, but never a device's newest backup (a device
/// offline for a month must not be left with none), and temporary files a crash left behind
/// more than a day ago. Returns the backups removed.
pub fn sweep(dir: &Path, cutoff_ms: i64) -> Result<Vec<BackupInfo>, BackupError> {
    remove_stale_temps(dir)?;
    let mut by_device: BTreeMap<String, Vec<BackupInfo>> = BTreeMap::new();
    for info in list(dir, None)? {
        by_device
            .entry(info.header.device_id.clone())
            .or_default()
            .push(info);
    }
    let mut removed = Vec::new();
    for (_, mut backups) in by_device {
        backups.pop(); // the newest stays whatever its age
        for info in backups {
            if info.header.created_at_ms < cutoff_ms {
                std::fs::remove_file(&info.path).map_err(|source| BackupError::Io {
                    path: info.path.clone(),
                    source,
                })?;
                removed.push(info);
            }
        }
    }
    Ok(removed)
}

fn remove_stale_temps(dir: &Path) -> Result<(), BackupError> {
    let io = |source| BackupError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(io(err)),
    };
    for entry in entries {
        let entry = entry.map_err(io)?;
        let name = entry.file_name().to_string_lossy().to_string();
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|modified| modified.elapsed().ok())
            .is_some_and(|age| age > STALE_TEMP);
        if name.starts_with('.') && name.ends_with(".tmp") && stale {
            tracing::info!(file = %entry.path().display(), "removing an interrupted backup's temporary file");
            std::fs::remove_file(entry.path()).map_err(io)?;
        }
    }
    Ok(())
}
