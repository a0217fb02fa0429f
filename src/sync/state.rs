//! Where the sync engine stands with each device (`sync_state` tree): the durable read
//! generation that makes event keys stable, and when the last complete read happened.

use super::snapshot::SnapshotDigest;
use crate::store::envelope::decode_body;
use crate::store::{EnvelopeError, Record, Store, StoreError, TreeName, Tx, TxError};
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
    /// The digest of the snapshot the last complete read left (see
    /// [`super::snapshot::SnapshotDigest`]); `None` before the first, while a first read is
    /// applied in steps, and in states written before version 2. A read with the same digest
    /// is compared without loading the snapshot.
    pub snapshot_digest: Option<SnapshotDigest>,
}

/// Version 1 of [`SyncState`], as stores written before the snapshot digest hold it.
#[derive(Deserialize)]
struct SyncStateV1 {
    generation: u64,
    last_complete_read_ms: Option<i64>,
    users: u64,
    last_backup_ms: Option<i64>,
}

impl Record for SyncState {
    const KIND: &'static str = "sync_state";
    const VERSION: u32 = 2;

    fn upgrade(found_version: u32, body: &[u8]) -> Result<Self, EnvelopeError> {
        if found_version != 1 {
            return Err(EnvelopeError::NoUpgradePath {
                kind: Self::KIND,
                found: found_version,
                current: Self::VERSION,
            });
        }
        let v1: SyncStateV1 = decode_body(Self::KIND, found_version, body)?;
        Ok(SyncState {
            generation: v1.generation,
            last_complete_read_ms: v1.last_complete_read_ms,
            users: v1.users,
            last_backup_ms: v1.last_backup_ms,
            snapshot_digest: None,
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::envelope;

    #[test]
    fn golden_bytes_of_sync_state_versions_1_and_2() {
        // tag 0 | kind "sync_state" | version | body
        let header = |version: u8| {
            let mut bytes = vec![0, 10];
            bytes.extend_from_slice(b"sync_state");
            bytes.push(version);
            bytes
        };
        // Version 1: generation 3 | Some(zigzag 5) | users 2 | None.
        let mut v1 = header(1);
        v1.extend_from_slice(&[3, 1, 10, 2, 0]);
        let state = SyncState {
            generation: 3,
            last_complete_read_ms: Some(5),
            users: 2,
            last_backup_ms: None,
            snapshot_digest: None,
        };
        assert_eq!(envelope::decode::<SyncState>(&v1).unwrap(), state);
        // Version 2: the same fields, then Some(32 digest bytes).
        let digested = SyncState {
            snapshot_digest: Some(SnapshotDigest([7; 32])),
            ..state
        };
        let mut v2 = header(2);
        v2.extend_from_slice(&[3, 1, 10, 2, 0, 1]);
        v2.extend_from_slice(&[7; 32]);
        assert_eq!(envelope::encode(&digested).unwrap(), v2);
        assert_eq!(envelope::decode::<SyncState>(&v2).unwrap(), digested);
    }
}
