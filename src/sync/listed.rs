//! When a poll may name the last list to its driver (see [`crate::device::PolledUsers`]).
//!
//! A poll's users are built from the device's list and the credential cache. So the list of
//! the last complete read may be named — letting the driver answer "listed as before" instead
//! of looking up every cached credential — only while nothing those users were built from or
//! compared with has moved since:
//!
//! - the credential cache: no write to the device's cached credentials since that read (a
//!   backup or a restore re-fetches values, a conflict resolution writes a name, retention
//!   removes a user, and a retaken photo or a new card number must reach the snapshot through a
//!   full read). `super::credentials`, the cache's only writer, calls [`forget`] before it
//!   writes a device's first credential;
//! - the snapshot: the sync state still carries the digest that read left (another complete
//!   read of the device in between, from a restore or a conflict resolution, changes it);
//! - the upstream: no catch-up is pending, since a catch-up sends every user of the read.
//!
//! The record is kept in the store (`listed_reads` tree, this module its only writer), so the
//! first poll after a restart is as cheap as the others. Crash safety rests on order: the
//! record is removed before the credential write that ends it, and sled recovers its log in
//! order, so a recovered credential write never comes back with the record that predates it.

use serde::{Deserialize, Serialize};

use super::catch_up;
use super::snapshot::SnapshotDigest;
use super::state;
use super::SyncError;
use crate::device::{ListDigest, UserRead};
use crate::store::{Record, Store, StoreError, TreeName};

/// The list of a device's last complete read, with the snapshot its users are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct NamedList {
    /// The list the driver compares with.
    pub(super) list: ListDigest,
    /// The digest of the snapshot a "listed as before" answer stands for.
    pub(super) snapshot: SnapshotDigest,
}

impl Record for NamedList {
    const KIND: &'static str = "listed_read";
    const VERSION: u32 = 1;
}

/// The list the next poll of `device_id` may name, if any (see the module docs). Call it under
/// the device lock, before the read.
pub(super) fn nameable(store: &Store, device_id: &str) -> Result<Option<NamedList>, SyncError> {
    let Some(last) = store.get::<NamedList>(TreeName::ListedReads, device_id.as_bytes())? else {
        return Ok(None);
    };
    let unchanged = state::load(store, device_id)?.snapshot_digest == Some(last.snapshot)
        && catch_up::load(store, device_id)?.is_none();
    if !unchanged {
        forget(store, device_id)?;
        return Ok(None);
    }
    Ok(Some(last))
}

/// After a complete read of `device_id` was applied (a poll's or a backup's): lets the next
/// poll name its list when the driver digested it and every credential the read fetched is
/// cached (`all_cached`, from the read's `super::credentials::StoreSink`), so the users a
/// "listed as before" stands for are the ones this read applied; forgets it otherwise. Call
/// it under the device lock, after the sink finished and the read was applied.
pub(super) fn after_complete_read(
    store: &Store,
    device_id: &str,
    read: &UserRead,
    all_cached: bool,
) -> Result<(), SyncError> {
    let snapshot = state::load(store, device_id)?.snapshot_digest;
    match (read.list_digest, snapshot, all_cached) {
        (Some(list), Some(snapshot), true) => {
            let named = NamedList { list, snapshot };
            store.insert(TreeName::ListedReads, device_id.as_bytes(), &named)?
        }
        _ => forget(store, device_id)?,
    }
    Ok(())
}

/// Forgets `device_id`'s list: its next poll reads in full.
pub(crate) fn forget(store: &Store, device_id: &str) -> Result<(), StoreError> {
    store.remove::<NamedList>(TreeName::ListedReads, device_id.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::envelope;

    #[test]
    fn golden_bytes_of_the_listed_read_version_1() {
        let named = NamedList {
            list: ListDigest([1; 32]),
            snapshot: SnapshotDigest([2; 32]),
        };
        // tag 0 | kind "listed_read" | version 1 | 32 list bytes | 32 snapshot bytes.
        let mut bytes = vec![0, 11];
        bytes.extend_from_slice(b"listed_read");
        bytes.push(1);
        bytes.extend_from_slice(&[1; 32]);
        bytes.extend_from_slice(&[2; 32]);
        assert_eq!(envelope::encode(&named).unwrap(), bytes);
        assert_eq!(envelope::decode::<NamedList>(&bytes).unwrap(), named);
    }
}
