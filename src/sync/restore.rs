//! Restore (B6): put back what a backup holds and the device lost — **only adds**. Under the
//! device lock: check the file, read the device completely, work out which users/credentials
//! of the backup are absent, print them (dry run) or write exactly those with
//! `write_credential`, then verify with a fresh complete read. A user of the backup with no
//! credential at all is re-added with `add_user` where the driver can (ZK); a driver that
//! cannot (the AI06) refuses before sending anything, and the user stays listed. A second
//! restore finds nothing missing and writes nothing.

use super::backup::file::{self, BackupError, BackupInfo, BackupUser, CredentialLine};
use super::credentials::StoreSink;
use super::{Engine, SyncError};
use crate::audit::{self, AuditEntry, Operation};
use crate::device::{slot_kind_name, Credential, DeviceSession, FetchMode, UserRead};
use crate::store::TreeName;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// One credential the device lacks.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MissingCredential {
    /// Device user id.
    pub user_id: String,
    /// Credential slot.
    pub slot: u16,
    /// The user's name in the backup.
    pub name: String,
    /// True when the whole user is absent from the device (not just this credential).
    pub user_absent: bool,
}

/// What a restore found and did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RestoreReport {
    /// The backup used.
    pub backup: BackupInfo,
    /// Only planned, nothing written.
    pub dry_run: bool,
    /// Credentials in the backup that the device lacked.
    pub missing: Vec<MissingCredential>,
    /// Users of the backup absent from the device that have no credential at all (a ZK user
    /// with no card, PIN or template): re-added as bare users where the driver can; listed
    /// so nobody is silently left out.
    pub users_without_credentials: Vec<BackupUser>,
    /// Of those, the users the driver refused to add (its protocol adds users only with a
    /// credential): the restore is not verified while they are absent.
    pub users_not_addable: Vec<String>,
    /// Credentials written.
    pub written: usize,
    /// Bare users added.
    pub users_added: usize,
    /// After writing, a fresh complete read found every credential of the backup.
    pub verified: bool,
}

impl RestoreReport {
    /// Users the plan re-adds completely.
    pub fn absent_users(&self) -> BTreeSet<&str> {
        self.missing
            .iter()
            .filter(|m| m.user_absent)
            .map(|m| m.user_id.as_str())
            .collect()
    }

    /// The report as a technician reads it: exactly what would be (or was) re-added.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "backup {} of {} ({} users, {} credentials)\n",
            self.backup.path.display(),
            self.backup.header.device_id,
            self.backup.trailer.users,
            self.backup.trailer.credentials
        );
        for user in &self.users_without_credentials {
            let what = if self.users_not_addable.contains(&user.user_id) {
                "cannot be re-added: this device adds a user only with a credential"
            } else if self.dry_run {
                "would be re-added as a user without credentials"
            } else {
                "re-added as a user without credentials"
            };
            out.push_str(&format!(
                "user {} {:?} (no credentials) was absent from the device; {what}\n",
                user.user_id, user.name
            ));
        }
        if self.missing.is_empty() && self.users_without_credentials.is_empty() {
            out.push_str("nothing is missing on the device; nothing to restore\n");
            return out;
        }
        let verb = if self.dry_run {
            "would re-add"
        } else {
            "re-added"
        };
        let mut by_user: BTreeMap<&str, Vec<&MissingCredential>> = BTreeMap::new();
        for missing in &self.missing {
            by_user.entry(&missing.user_id).or_default().push(missing);
        }
        for (user, credentials) in by_user {
            let slots: Vec<String> = credentials
                .iter()
                .map(|c| format!("{} (slot {})", slot_kind_name(c.slot), c.slot))
                .collect();
            let whole = if credentials[0].user_absent {
                "user"
            } else {
                "credentials of user"
            };
            out.push_str(&format!(
                "{verb} {whole} {user} {:?}: {}\n",
                credentials[0].name,
                slots.join(", ")
            ));
        }
        let addable = self.users_without_credentials.len() - self.users_not_addable.len();
        if self.dry_run {
            out.push_str(&format!(
                "dry run: {} credential(s) and {addable} user(s) without credentials would be \
                 written, nothing was\n",
                self.missing.len()
            ));
        } else {
            out.push_str(&format!(
                "{} credential(s) and {} user(s) without credentials written; verification by \
                 a fresh complete read: {}\n",
                self.written,
                self.users_added,
                if self.verified { "PASSED" } else { "FAILED" }
            ));
        }
        out
    }
}

impl Engine {
    /// Restores from `backup` onto the device behind `session`; see the module docs.
    pub async fn restore<S: DeviceSession>(
        &self,
        session: &S,
        backup: &Path,
        dry_run: bool,
        actor: &str,
    ) -> Result<RestoreReport, SyncError> {
        let device_id = session.device_id();
        let info = file::verify(backup)?;
        if info.header.device_id != device_id {
            return Err(BackupError::WrongDevice {
                path: backup.to_path_buf(),
                in_file: info.header.device_id.clone(),
                asked: device_id.to_string(),
            }
            .into());
        }
        let guard = self.lock().acquire(device_id).await?;
        let before = guard
            .run(self.complete_read(session, guard.fencing_token()))
            .await??;
        let missing = plan(backup, &before)?;
        let users_without_credentials = absent_bare_users(backup, &before)?;
        let mut report = RestoreReport {
            backup: info,
            dry_run,
            missing,
            users_without_credentials,
            users_not_addable: Vec::new(),
            written: 0,
            users_added: 0,
            verified: false,
        };
        if dry_run || (report.missing.is_empty() && report.users_without_credentials.is_empty()) {
            report.verified =
                report.missing.is_empty() && report.users_without_credentials.is_empty();
            self.audit_restore(device_id, actor, &report).await?;
            return Ok(report);
        }
        self.add_bare_users(session, &mut report).await?;
        let wanted: BTreeSet<(String, u16)> = report
            .missing
            .iter()
            .map(|m| (m.user_id.clone(), m.slot))
            .collect();
        report.written = guard
            .run(self.write_missing(session, backup, wanted, &before))
            .await??;
        let after = guard
            .run(self.complete_read(session, guard.fencing_token()))
            .await??;
        report.verified =
            plan(backup, &after)?.is_empty() && absent_bare_users(backup, &after)?.is_empty();
        self.audit_restore(device_id, actor, &report).await?;
        drop(guard);
        if !report.verified {
            tracing::error!(
                device = device_id,
                "restore verification FAILED: the device still lacks credentials of the backup"
            );
        }
        Ok(report)
    }

    /// Adds the backup's absent users that have no credential; a driver's refusal (it sends
    /// nothing) leaves the user listed as not addable, any other failure stops the restore.
    async fn add_bare_users<S: DeviceSession>(
        &self,
        session: &S,
        report: &mut RestoreReport,
    ) -> Result<(), SyncError> {
        let device_id = session.device_id();
        for user in &report.users_without_credentials {
            match session
                .add_user(&user.user_id, &user.name, user.privilege)
                .await
            {
                Ok(()) => report.users_added += 1,
                Err(crate::device::ReadError::Refused(reason)) => {
                    tracing::warn!(device = device_id, user_id = %user.user_id, "{reason}");
                    report.users_not_addable.push(user.user_id.clone());
                }
                Err(source) => {
                    return Err(SyncError::AddUser {
                        device: device_id.to_string(),
                        user_id: user.user_id.clone(),
                        source,
                    })
                }
            }
        }
        Ok(())
    }

    /// Writes the `wanted` credentials of the backup to the device. The file is read on a
    /// blocking thread and handed over a few lines at a time, so restoring 5,000 photos never
    /// holds more than a handful in memory. Users still on the device keep the name and
    /// privilege they have there now.
    async fn write_missing<S: DeviceSession>(
        &self,
        session: &S,
        backup: &Path,
        wanted: BTreeSet<(String, u16)>,
        before: &UserRead,
    ) -> Result<usize, SyncError> {
        let device_id = session.device_id();
        let (lines_tx, mut lines) = tokio::sync::mpsc::channel::<CredentialLine>(8);
        let path = backup.to_path_buf();
        let reader = tokio::task::spawn_blocking(move || {
            file::for_each_credential(&path, |line| {
                if !wanted.contains(&(line.user_id.clone(), line.slot)) {
                    return Ok(());
                }
                lines_tx.blocking_send(line).map_err(|_| BackupError::Io {
                    path: path.clone(),
                    source: std::io::Error::other("the restore stopped writing"),
                })
            })
        });
        let mut cache = StoreSink::new(self.store().clone(), device_id);
        let mut written = 0;
        while let Some(line) = lines.recv().await {
            let mut credential = Credential::from(line);
            if let Some(present) = before.users.get(&credential.user_id) {
                credential.name = present.user.name.clone();
                credential.privilege = u64::from(present.user.privilege);
            }
            session
                .write_credential(&credential)
                .await
                .map_err(|source| SyncError::Write {
                    device: device_id.to_string(),
                    user_id: credential.user_id.clone(),
                    slot: credential.slot,
                    source,
                })?;
            written += 1;
            crate::device::ReadSink::credential(&mut cache, credential).map_err(|reason| {
                SyncError::Refused(format!("caching a restored credential: {reason}"))
            })?;
        }
        cache.finish()?;
        reader
            .await
            .map_err(|err| SyncError::Refused(format!("the backup reader failed: {err}")))??;
        Ok(written)
    }

    /// A complete read applied like a poll; an incomplete one is recorded and is an error.
    async fn complete_read<S: DeviceSession>(
        &self,
        session: &S,
        fencing_token: u64,
    ) -> Result<UserRead, SyncError> {
        let device_id = session.device_id();
        let mut sink = StoreSink::new(self.store().clone(), device_id);
        let read = session.read_users(FetchMode::Missing, &mut sink).await;
        sink.finish()?;
        match read {
            Ok(read) => {
                self.apply_read(device_id, &read, fencing_token).await?;
                Ok(read)
            }
            Err(source) => {
                self.record_incomplete(device_id, &source).await?;
                Err(SyncError::Read {
                    device: device_id.to_string(),
                    source,
                })
            }
        }
    }

    /// One audit entry per user re-added (so `audit query --user` finds it) and a summary.
    async fn audit_restore(
        &self,
        device_id: &str,
        actor: &str,
        report: &RestoreReport,
    ) -> Result<(), SyncError> {
        let now = self.now_ms();
        let name = report.backup.path.display().to_string();
        let mode = if report.dry_run { "dry run" } else { "restore" };
        let mut entries = Vec::new();
        let mut by_user: BTreeMap<&str, Vec<u16>> = BTreeMap::new();
        for missing in &report.missing {
            by_user
                .entry(&missing.user_id)
                .or_default()
                .push(missing.slot);
        }
        for user in &report.users_without_credentials {
            entries.push(AuditEntry {
                at_unix_ms: now,
                operation: Operation::Restore,
                device_id: Some(device_id.to_string()),
                device_user_id: Some(user.user_id.clone()),
                actor: actor.to_string(),
                detail: if report.users_not_addable.contains(&user.user_id) {
                    format!(
                        "{mode} from {name}: user without credentials is absent and this \
                         device cannot add a user without a credential"
                    )
                } else {
                    let verb = if report.dry_run {
                        "would re-add"
                    } else {
                        "re-added"
                    };
                    format!("{mode} from {name}: {verb} the user without credentials")
                },
            });
        }
        for (user, slots) in &by_user {
            let verb = if report.dry_run {
                "would re-add"
            } else {
                "re-added"
            };
            entries.push(AuditEntry {
                at_unix_ms: now,
                operation: Operation::Restore,
                device_id: Some(device_id.to_string()),
                device_user_id: Some(user.to_string()),
                actor: actor.to_string(),
                detail: format!("{mode} from {name}: {verb} slots {slots:?}"),
            });
        }
        entries.push(AuditEntry {
            at_unix_ms: now,
            operation: Operation::Restore,
            device_id: Some(device_id.to_string()),
            device_user_id: None,
            actor: actor.to_string(),
            detail: format!(
                "{mode} from {name}: {} credential(s) of {} user(s) missing, {} written, verified: {}",
                report.missing.len(),
                by_user.len(),
                report.written,
                report.verified
            ),
        });
        let entries = self.audit().prepare(entries)?;
        self.store()
            .transaction(&[TreeName::Audit], |tx| audit::append_in(tx, &entries))?;
        self.store().make_durable().await?;
        Ok(())
    }
}

/// The backup's users without any credential that `read` lacks.
fn absent_bare_users(backup: &Path, read: &UserRead) -> Result<Vec<BackupUser>, SyncError> {
    Ok(file::users(backup)?
        .into_iter()
        .filter(|user| user.credentials.is_empty() && !read.users.contains_key(&user.user_id))
        .collect())
}

/// The backup's credentials that `read` lacks, in backup order.
fn plan(backup: &Path, read: &UserRead) -> Result<Vec<MissingCredential>, SyncError> {
    let mut missing = Vec::new();
    file::for_each_credential(backup, |line| {
        let present = read.users.get(&line.user_id);
        if present.is_none_or(|user| !user.slots.contains(&line.slot)) {
            missing.push(MissingCredential {
                user_absent: present.is_none(),
                user_id: line.user_id,
                slot: line.slot,
                name: line.name,
            });
        }
        Ok(())
    })?;
    Ok(missing)
}
