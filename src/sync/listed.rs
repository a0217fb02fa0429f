//! When a poll may name the last list to its driver (see [`crate::device::PolledUsers`]).
//!
//! A poll's users are built from the device's list and the credential cache. So the list of
//! the last complete read may be named — letting the driver answer "listed as before" instead
//! of looking up every cached credential — only while nothing those users were built from or
//! compared with has moved since:
//!
//! - the credential cache: no write to the `credentials` tree since that read (a backup or a
//!   restore re-fetches values, and a retaken photo or a new card number must reach the
//!   snapshot through a full read). The store's write counter for the tree is global, so a
//!   write for another device also costs the cheap path once; it never grants it wrongly;
//! - the snapshot: the sync state still carries the digest that read left (another complete
//!   read of the device in between, from a restore or a conflict resolution, changes it);
//! - the upstream: no catch-up is pending, since a catch-up sends every user of the read.
//!
//! The record is in memory only: after a restart the first poll reads in full and the next
//! one may be cheap. It is per process and per device, never written to the store.

use super::catch_up;
use super::snapshot::SnapshotDigest;
use super::state;
use super::SyncError;
use crate::device::ListDigest;
use crate::store::{Store, TreeName};
use std::collections::HashMap;
use std::sync::Mutex;

/// The list of a device's last complete read and what its users depended on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LastList {
    list: ListDigest,
    snapshot: SnapshotDigest,
    credential_writes: u64,
}

/// Per device, the last complete read's list, while it may still be named.
#[derive(Debug, Default)]
pub(super) struct LastLists {
    devices: Mutex<HashMap<String, LastList>>,
}

/// A list a poll named, with the snapshot its users are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct NamedList {
    /// The list the driver compares with.
    pub(super) list: ListDigest,
    /// The digest of the snapshot a "listed as before" answer stands for.
    pub(super) snapshot: SnapshotDigest,
}

impl LastLists {
    /// The list the next poll of `device_id` may name, if any (see the module docs). Call it
    /// under the device lock, before the read.
    pub(super) fn nameable(
        &self,
        store: &Store,
        device_id: &str,
    ) -> Result<Option<NamedList>, SyncError> {
        let Some(last) = self.devices().get(device_id).copied() else {
            return Ok(None);
        };
        let unchanged = store.writes(TreeName::Credentials) == last.credential_writes
            && state::load(store, device_id)?.snapshot_digest == Some(last.snapshot)
            && catch_up::load(store, device_id)?.is_none();
        if !unchanged {
            self.devices().remove(device_id);
            return Ok(None);
        }
        Ok(Some(NamedList {
            list: last.list,
            snapshot: last.snapshot,
        }))
    }

    /// Records the list of a complete read of `device_id` just applied, with the snapshot
    /// digest it left; call it under the device lock, after the read's credentials are cached
    /// and the read applied, so that the write counter includes the read's own writes.
    pub(super) fn remember(
        &self,
        store: &Store,
        device_id: &str,
        list: ListDigest,
        snapshot: SnapshotDigest,
    ) {
        let last = LastList {
            list,
            snapshot,
            credential_writes: store.writes(TreeName::Credentials),
        };
        self.devices().insert(device_id.to_string(), last);
    }

    /// Forgets `device_id`'s list: its next poll reads in full.
    pub(super) fn forget(&self, device_id: &str) {
        self.devices().remove(device_id);
    }

    fn devices(&self) -> std::sync::MutexGuard<'_, HashMap<String, LastList>> {
        self.devices
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
