//! The last complete read of each device (`snapshots` tree): the only thing a new read is
//! compared with. It changes only in the transaction that applies a complete read (invariant 2).

use crate::device::ReadUser;
use crate::events::DeviceUser;
use crate::store::{keys, EnvelopeError, Record, Store, StoreError, TreeName, Tx, TxError};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
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

/// A digest of a whole snapshot: SHA-256 over each user's stored form (user-id order,
/// length-prefixed). The sync state keeps the digest of the snapshot the last complete read
/// left, written in the same transaction, so a read whose digest is the same found exactly
/// that snapshot and is applied without loading it: a steady poll of 10,000 users then never
/// walks this tree, whose nodes sled would keep in memory afterwards (`docs/footprint.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotDigest(pub [u8; 32]);

impl SnapshotDigest {
    /// The digest of the snapshot `users` would leave (each in its stored, slots-sorted form).
    pub fn of_read(users: &BTreeMap<String, ReadUser>) -> Result<SnapshotDigest, StoreError> {
        let mut hasher = Sha256::new();
        let mut bytes = Vec::new();
        for (user_id, user) in users {
            bytes.clear();
            // The bytes of the user's `SnapshotUser` (postcard writes a struct as the tuple of
            // its fields), without cloning the user on every poll.
            let stored = (&user.user, super::diff::sorted_slots(&user.slots));
            bytes = postcard::to_extend(&stored, bytes).map_err(|source| {
                let encode = EnvelopeError::Encode {
                    kind: SnapshotUser::KIND,
                    source,
                };
                StoreError::value(TreeName::Snapshots, user_id.as_bytes(), encode)
            })?;
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(&bytes);
        }
        Ok(SnapshotDigest(hasher.finalize().into()))
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_is_over_each_users_stored_form() {
        let user = ReadUser {
            user: DeviceUser {
                user_id: "7".into(),
                name: "Ann".into(),
                ..DeviceUser::default()
            },
            slots: vec![50, 11, 50],
        };
        let users = BTreeMap::from([("7".to_string(), user.clone())]);
        let stored = postcard::to_stdvec(&super::super::diff::snapshot_of(&user)).unwrap();
        let mut hasher = Sha256::new();
        hasher.update((stored.len() as u64).to_le_bytes());
        hasher.update(&stored);
        assert_eq!(
            SnapshotDigest::of_read(&users).unwrap(),
            SnapshotDigest(hasher.finalize().into())
        );
    }
}
