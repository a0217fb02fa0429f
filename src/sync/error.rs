//! Errors of the sync engine, worded for the technician reading the journal or the CLI.

use super::backup::BackupError;
use crate::device::ReadError;
use crate::lock::LockError;
use crate::store::StoreError;
use thiserror::Error;

/// Everything a sync operation can fail with.
#[derive(Debug, Error)]
pub enum SyncError {
    /// The store failed; nothing of the operation was kept.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The outbox refused the events the change would produce (full): nothing was applied,
    /// the next poll tries again.
    #[error("outbox: {0}; nothing was applied, the next poll tries again")]
    Outbox(#[from] crate::upstream::outbox::OutboxError),
    /// The device lock could not be taken; the device was not touched.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// The device is not connected.
    #[error(
        "device {device} is not connected (waited {waited_s} s): check that it is powered, on \
         the network, and points at this agent"
    )]
    NotConnected {
        /// The device.
        device: String,
        /// How long we waited.
        waited_s: u64,
    },
    /// A read was incomplete: nothing was concluded about the device's users.
    #[error("device {device}: {source}; nothing was changed and no user is considered gone")]
    Read {
        /// The device.
        device: String,
        /// Why the read was incomplete.
        source: ReadError,
    },
    /// A write to the device failed.
    #[error("device {device}: writing user {user_id} slot {slot} failed: {source}")]
    Write {
        /// The device.
        device: String,
        /// The user being written.
        user_id: String,
        /// The credential slot.
        slot: u16,
        /// What went wrong.
        source: ReadError,
    },
    /// Adding a user without credentials (restore) failed.
    #[error("device {device}: adding user {user_id} (no credentials) failed: {source}")]
    AddUser {
        /// The device.
        device: String,
        /// The user being added.
        user_id: String,
        /// What went wrong.
        source: ReadError,
    },
    /// A backup file problem.
    #[error(transparent)]
    Backup(#[from] BackupError),
    /// No such device in the config.
    #[error("no device {0:?} in the config")]
    UnknownDevice(String),
    /// An administrative request that cannot be carried out as asked.
    #[error("{0}")]
    Refused(String),
}
