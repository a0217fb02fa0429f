//! The user buffer (B1): the agent's durable copy of every device user, with where its mapping
//! to an upstream person stands. Records are never removed while their user is on the device;
//! retention only sweeps users that left the device long ago ([`crate::sync::retention`]).
//!
//! `last_seen_at` of a user still on the device is the device's last complete read (kept once
//! in its [`SyncState`]), not a field rewritten on every poll: a 10,000-user device polled every
//! five minutes would otherwise rewrite 10,000 records per poll, wearing the gateway's flash
//! for no information. The stored `last_seen_at_ms` is frozen when the user goes missing.

use super::state::{self, SyncState};
use crate::events::DeviceUser;
use crate::store::{keys, Record, Store, StoreError, TreeName, Tx, TxError};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Where a buffered user's mapping stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MappingStatus {
    /// No person upstream is linked to this user.
    Unmapped,
    /// A mapping was requested; the person is not confirmed to exist yet.
    Pending,
    /// Linked to a confirmed upstream person.
    Mapped,
    /// Device and upstream disagree; an administrator must decide.
    Conflict,
    /// On the device at an earlier complete read, absent from the last one.
    Missing,
}

impl MappingStatus {
    /// The name shown in listings and accepted by filters.
    pub fn as_str(self) -> &'static str {
        match self {
            MappingStatus::Unmapped => "unmapped",
            MappingStatus::Pending => "pending",
            MappingStatus::Mapped => "mapped",
            MappingStatus::Conflict => "conflict",
            MappingStatus::Missing => "missing",
        }
    }
}

impl MappingStatus {
    /// The status of a user present on the device, from its open conflict and its mapping
    /// (`Some(true)` confirmed, `Some(false)` pending, `None` none).
    pub fn of_present(has_open_conflict: bool, confirmed: Option<bool>) -> MappingStatus {
        match (has_open_conflict, confirmed) {
            (true, _) => MappingStatus::Conflict,
            (false, Some(true)) => MappingStatus::Mapped,
            (false, Some(false)) => MappingStatus::Pending,
            (false, None) => MappingStatus::Unmapped,
        }
    }
}

impl std::str::FromStr for MappingStatus {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        [
            MappingStatus::Unmapped,
            MappingStatus::Pending,
            MappingStatus::Mapped,
            MappingStatus::Conflict,
            MappingStatus::Missing,
        ]
        .into_iter()
        .find(|status| status.as_str() == text)
        .ok_or_else(|| {
            format!("unknown status {text:?}; use unmapped, pending, mapped, conflict or missing")
        })
    }
}

/// One buffered device user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BufferRecord {
    /// The device it is (or was) enrolled on.
    pub device_id: String,
    /// The user as last read: id, name, privilege, card, credential counts.
    pub user: DeviceUser,
    /// Credential slots listed at the last read (the credential summary).
    pub slots: Vec<u16>,
    /// First complete read that found the user (UTC ms).
    pub discovered_at_ms: i64,
    /// Last complete read that found the user, as of the last change of this record; see the
    /// module docs and [`BufferRecord::last_seen_at_ms`].
    pub last_seen_at_ms: i64,
    /// Where its mapping stands.
    pub status: MappingStatus,
    /// The linked (or requested) upstream person.
    pub person_id: Option<String>,
    /// When the mapping was confirmed (UTC ms).
    pub mapped_at_ms: Option<i64>,
    /// When a complete read first found the user gone (UTC ms), while missing.
    pub missing_since_ms: Option<i64>,
}

impl Record for BufferRecord {
    const KIND: &'static str = "buffer_record";
    const VERSION: u32 = 1;
}

impl BufferRecord {
    /// A user just discovered by the read at `now_ms`.
    pub fn discovered(device_id: &str, user: DeviceUser, slots: Vec<u16>, now_ms: i64) -> Self {
        Self {
            device_id: device_id.to_string(),
            user,
            slots,
            discovered_at_ms: now_ms,
            last_seen_at_ms: now_ms,
            status: MappingStatus::Unmapped,
            person_id: None,
            mapped_at_ms: None,
            missing_since_ms: None,
        }
    }

    /// When the user was last seen on the device: the device's last complete read while the
    /// user is there, the frozen time once it is missing.
    pub fn last_seen_at_ms(&self, device: &SyncState) -> i64 {
        match (self.status, device.last_complete_read_ms) {
            (MappingStatus::Missing, _) | (_, None) => self.last_seen_at_ms,
            (_, Some(read)) => read.max(self.last_seen_at_ms),
        }
    }
}

/// Counts per status, for `status`, health and the buffer listing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BufferStats {
    /// Every record.
    pub total: usize,
    /// Not linked to a person.
    pub unmapped: usize,
    /// Mapping requested, not confirmed.
    pub pending: usize,
    /// Linked to a confirmed person.
    pub mapped: usize,
    /// Waiting for an administrator's decision.
    pub conflict: usize,
    /// Gone from the device.
    pub missing: usize,
}

impl BufferStats {
    fn count(&mut self, status: MappingStatus) {
        self.total += 1;
        match status {
            MappingStatus::Unmapped => self.unmapped += 1,
            MappingStatus::Pending => self.pending += 1,
            MappingStatus::Mapped => self.mapped += 1,
            MappingStatus::Conflict => self.conflict += 1,
            MappingStatus::Missing => self.missing += 1,
        }
    }
}

/// A buffered user as listings show it (text and JSON), with its effective last-seen time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BufferView {
    /// Device id.
    pub device_id: String,
    /// Device user id.
    pub user_id: String,
    /// Name on the device.
    pub name: String,
    /// Status name.
    pub status: &'static str,
    /// Linked (or requested) person.
    pub person_id: Option<String>,
    /// Credential summary (`card, photo, 2 fingerprints`).
    pub credentials: String,
    /// First seen (UTC ms).
    pub discovered_at_ms: i64,
    /// Last seen on the device (UTC ms).
    pub last_seen_at_ms: i64,
    /// Missing since (UTC ms).
    pub missing_since_ms: Option<i64>,
}

/// A device's buffered users (or every device's with `None`), optionally one status only.
pub fn list(
    store: &Store,
    device_id: Option<&str>,
    status: Option<MappingStatus>,
) -> Result<Vec<BufferView>, StoreError> {
    let prefix = device_id
        .map(keys::device_prefix)
        .transpose()?
        .unwrap_or_default();
    let mut views = Vec::new();
    let mut states = std::collections::HashMap::new();
    for entry in store.scan_prefix::<BufferRecord>(TreeName::Buffer, prefix) {
        let (_, record) = entry?;
        if status.is_some_and(|s| s != record.status) {
            continue;
        }
        if !states.contains_key(&record.device_id) {
            states.insert(
                record.device_id.clone(),
                state::load(store, &record.device_id)?,
            );
        }
        let last_seen = record.last_seen_at_ms(&states[&record.device_id]);
        views.push(BufferView {
            device_id: record.device_id.clone(),
            user_id: record.user.user_id.clone(),
            name: record.user.name.clone(),
            status: record.status.as_str(),
            person_id: record.person_id.clone(),
            credentials: credential_summary(&record.user),
            discovered_at_ms: record.discovered_at_ms,
            last_seen_at_ms: last_seen,
            missing_since_ms: record.missing_since_ms,
        });
    }
    Ok(views)
}

/// Counts per status over a device's records (or all with `None`).
pub fn stats(store: &Store, device_id: Option<&str>) -> Result<BufferStats, StoreError> {
    let prefix = device_id
        .map(keys::device_prefix)
        .transpose()?
        .unwrap_or_default();
    let mut stats = BufferStats::default();
    for entry in store.scan_prefix::<BufferRecord>(TreeName::Buffer, prefix) {
        stats.count(entry?.1.status);
    }
    Ok(stats)
}

/// [`stats`] remembered until the buffer tree is written again: the running agent's status
/// report is rebuilt every 5 s and after every read, and a scan of 10,000 buffer records each
/// time cost CPU and left sled holding the tree's nodes (about 1.7 MB; `docs/footprint.md`).
/// A steady poll writes no buffer record, so the counts are computed once per change.
#[derive(Debug, Default)]
pub struct StatsCache {
    /// By device (`None`: every device), with [`Store::writes`] of the buffer tree when
    /// counted.
    counted: std::sync::Mutex<HashMap<Option<String>, (u64, BufferStats)>>,
}

impl StatsCache {
    /// The counts of [`stats`], scanning only when the buffer tree was written since they
    /// were last counted.
    pub fn stats(&self, store: &Store, device_id: Option<&str>) -> Result<BufferStats, StoreError> {
        // Read before counting: a write landing during the scan moves it past this value.
        let writes = store.writes(TreeName::Buffer);
        let key = device_id.map(str::to_string);
        let mut counted = self.counted.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((seen, stats)) = counted.get(&key) {
            if *seen == writes {
                return Ok(stats.clone());
            }
        }
        let fresh = stats(store, device_id)?;
        counted.insert(key, (writes, fresh.clone()));
        Ok(fresh)
    }
}

/// `card, password, photo, 2 fingerprints` — what a technician wants to know at a glance.
pub fn credential_summary(user: &DeviceUser) -> String {
    let mut parts = Vec::new();
    if user.card.is_some() {
        parts.push("card".to_string());
    }
    if user.has_password {
        parts.push("password".to_string());
    }
    let mut count = |n: u8, what: &str| match n {
        0 => {}
        1 => parts.push(what.to_string()),
        n => parts.push(format!("{n} {what}s")),
    };
    count(user.faces, "face");
    count(user.fingerprints, "fingerprint");
    count(user.palms, "palm");
    if parts.is_empty() {
        "none".to_string()
    } else {
        parts.join(", ")
    }
}

/// Writes `value` at `key` of the `buffer` tree inside the caller's transaction: this
/// module is the tree's only writer (see `crate::store::TreeName`).
pub(crate) fn put_in(
    tx: &Tx<'_>,
    key: impl AsRef<[u8]>,
    value: &BufferRecord,
) -> Result<(), TxError> {
    tx.insert(TreeName::Buffer, key, value)
}

/// Removes the value at `key` of the `buffer` tree inside the caller's transaction;
/// `true` if there was one.
pub(crate) fn remove_in(tx: &Tx<'_>, key: impl AsRef<[u8]>) -> Result<bool, TxError> {
    tx.remove(TreeName::Buffer, key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::temp_store;

    fn buffer_user(store: &Store, user_id: &str, status: MappingStatus) {
        let user = DeviceUser {
            user_id: user_id.into(),
            ..DeviceUser::default()
        };
        let mut record = BufferRecord::discovered("door", user, Vec::new(), 1);
        record.status = status;
        let key = keys::device_user("door", user_id).unwrap();
        store
            .transaction(&[TreeName::Buffer], |tx| put_in(tx, &key, &record))
            .unwrap();
    }

    #[test]
    fn cached_counts_follow_every_write_to_the_buffer() {
        let (_dir, store) = temp_store();
        let cache = StatsCache::default();
        buffer_user(&store, "1", MappingStatus::Unmapped);
        let first = cache.stats(&store, Some("door")).unwrap();
        assert_eq!((first.total, first.unmapped), (1, 1));
        assert_eq!(cache.stats(&store, Some("door")).unwrap(), first);
        buffer_user(&store, "1", MappingStatus::Missing);
        buffer_user(&store, "2", MappingStatus::Unmapped);
        let after = cache.stats(&store, Some("door")).unwrap();
        assert_eq!(after, stats(&store, Some("door")).unwrap());
        assert_eq!((after.total, after.missing, after.unmapped), (2, 1, 1));
        assert_eq!(cache.stats(&store, None).unwrap(), after);
    }
}
