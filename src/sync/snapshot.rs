//! The last complete read of each device (`snapshots` tree): the only thing a new read is
//! compared with. It changes only in the transaction that applies a complete read (invariant 2).

use crate::events::DeviceUser;
use crate::store::{keys, Record, Store, StoreError, TreeName, Tx, TxError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A user as the last complete read found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotUser {
    /// The summary compared between reads.
    pub user: DeviceUser,
    /// The credential slots the device listed, sorted.
    pub slots: Vec<u16>,
}

impl Record for SnapshotUser {
    const KIND: &'static str = "snapshot_user";
    const VERSION: u32 = 1;
}

/// A device's last complete snapshot, by user id (empty before the first complete read).
pub fn load(store: &Store, device_id: &str) -> Result<BTreeMap<String, SnapshotUser>, StoreError> {
    let prefix = keys::device_prefix(device_id)?;
    store
        .scan_prefix::<SnapshotUser>(TreeName::Snapshots, &prefix)
        .map(|entry| entry.map(|(_, user)| (user.user.user_id.clone(), user)))
        .collect()
}

/// Writes `value` at `key` of the `snapshots` tree inside the caller's transaction: this
/// module is the tree's only writer (see `crate::store::TreeName`).
pub(crate) fn put_in(
    tx: &Tx<'_>,
    key: impl AsRef<[u8]>,
    value: &SnapshotUser,
) -> Result<(), TxError> {
    tx.insert(TreeName::Snapshots, key, value)
}

/// Removes the value at `key` of the `snapshots` tree inside the caller's transaction;
/// `true` if there was one.
pub(crate) fn remove_in(tx: &Tx<'_>, key: impl AsRef<[u8]>) -> Result<bool, TxError> {
    tx.remove(TreeName::Snapshots, key)
}
