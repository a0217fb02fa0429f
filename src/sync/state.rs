//! Where the sync engine stands with each device (`sync_state` tree): the durable read
//! generation that makes event keys stable, and when the last complete read happened.

use crate::store::{Record, Store, StoreError, TreeName, Tx, TxError};
use serde::{Deserialize, Serialize};

/// Per-device sync state, written in the same transaction as the snapshot it describes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncState {
    /// Number of complete reads applied so far. Only increases; event idempotency keys carry
    /// it, so a change re-observed after a crash gets the key it would have had.
    pub generation: u64,
    /// When the last complete read was applied (UTC ms).
    pub last_complete_read_ms: Option<i64>,
    /// Users in the last complete read; while a big first read is applied in steps (generation
    /// still 0, see `super::apply`), the users its committed steps put in the snapshot.
    pub users: u64,
    /// When the last backup file was written (UTC ms).
    pub last_backup_ms: Option<i64>,
}

impl Record for SyncState {
    const KIND: &'static str = "sync_state";
    const VERSION: u32 = 1;
}

/// The device's sync state (default before its first complete read).
pub fn load(store: &Store, device_id: &str) -> Result<SyncState, StoreError> {
    Ok(store
        .get(TreeName::SyncState, device_id.as_bytes())?
        .unwrap_or_default())
}

/// Writes `value` at `key` of the `sync_state` tree inside the caller's transaction: this
/// module is the tree's only writer (see `crate::store::TreeName`).
pub(crate) fn put_in(tx: &Tx<'_>, key: impl AsRef<[u8]>, value: &SyncState) -> Result<(), TxError> {
    tx.insert(TreeName::SyncState, key, value)
}
