//! User-count history (B4): one entry per complete read of a device, with the ids that came and
//! went. The full id set of any read is the current snapshot walked back through these deltas;
//! storing deltas instead of full sets keeps a 10,000-user device polled every 5 minutes from
//! writing megabytes a day of unchanged ids.

use crate::store::{keys, Record, Store, StoreError, TreeName, Tx, TxError};
use serde::{Deserialize, Serialize};

/// One complete read of one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The read generation this entry belongs to.
    pub generation: u64,
    /// When the read was applied (UTC ms).
    pub read_at_ms: i64,
    /// Users the read found.
    pub users: u64,
    /// The device's own user count the read was checked against.
    pub device_user_count: u64,
    /// Ids new since the previous complete read (first seen, or back after missing).
    pub added: Vec<String>,
    /// Ids present in the previous complete read and absent from this one.
    pub missing: Vec<String>,
    /// Ids whose attributes or credentials changed.
    pub changed: Vec<String>,
}

impl Record for HistoryEntry {
    const KIND: &'static str = "history_entry";
    const VERSION: u32 = 1;
}

/// The key of a device's entry for `generation`.
pub fn key(device_id: &str, generation: u64) -> Result<Vec<u8>, StoreError> {
    Ok(keys::device_sequence(device_id, generation)?)
}

/// A device's history, oldest first.
pub fn list(store: &Store, device_id: &str) -> Result<Vec<HistoryEntry>, StoreError> {
    let prefix = keys::device_prefix(device_id)?;
    store
        .scan_prefix::<HistoryEntry>(TreeName::History, prefix)
        .map(|entry| entry.map(|(_, entry)| entry))
        .collect()
}

/// Writes `value` at `key` of the `history` tree inside the caller's transaction: this
/// module is the tree's only writer (see `crate::store::TreeName`).
pub(crate) fn put_in(
    tx: &Tx<'_>,
    key: impl AsRef<[u8]>,
    value: &HistoryEntry,
) -> Result<(), TxError> {
    tx.insert(TreeName::History, key, value)
}

/// Removes the entry at `key` (retention).
pub(crate) fn remove(store: &Store, key: impl AsRef<[u8]>) -> Result<(), StoreError> {
    store.remove::<HistoryEntry>(TreeName::History, key)?;
    Ok(())
}
