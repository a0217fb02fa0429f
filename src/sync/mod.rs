//! The sync engine — the heart of the agent. Per device, under the device lock: a complete
//! read, compared with the last complete snapshot, applied to snapshot, buffer, conflicts,
//! history, outbox and audit in **one** store transaction, made durable before anything is
//! published or logged as done. An incomplete read changes nothing but the audit log (and
//! logs/health): a failed read is never "users deleted" (D6, invariant 2). The agent never
//! deletes a device user (D5): the only device write here is `write_credential` (add/replace),
//! used by restore and conflict resolution.
//!
//! Modules, one job each:
//! - [`Engine`]: the shared context (it writes through the upstream outbox and the audit log,
//!   in the same transaction as the change they describe); [`lock`]: the device lock
//!   interface and its flock implementation; [`clock`]: injectable wall time.
//! - [`diff`] (pure) and [`apply`] (the one transaction); [`poll`]: lock → read → apply;
//!   [`service`]: the poll loops and their wake-ups; [`migrate`]: B7.
//! - Records: [`snapshot`], [`buffer`] (B1), [`mapping`] (B2), [`conflicts`] (B3), [`history`]
//!   and the missing-user warnings in [`apply`] (B4), [`state`], [`credentials`] (value cache).
//! - [`backup`] and [`restore`] (B6); [`retention`]; [`tools`]: the technician's CLI commands.

pub mod apply;
pub mod backup;
pub mod buffer;
pub mod catch_up;
pub mod clock;
pub mod conflicts;
pub mod credentials;
pub mod diff;
mod engine;
mod error;
pub mod guard;
pub mod history;
pub mod lock;
pub mod mapping;
pub mod migrate;
mod monitor;
pub mod poll;
pub mod restore;
pub mod retention;
pub mod service;
pub mod snapshot;
pub mod state;
pub mod tools;

pub use engine::{DeviceChange, DeviceHealth, Engine};
pub use error::SyncError;
pub use service::{start, SyncHandle};

/// The span every device session runs in: its lines then name the device and the fencing token
/// of the lock held (`lock{device=… fencing_token=…}`), so a session a terminal recorded can be
/// matched with the lock the agent held for it (the lock tests do exactly that).
pub(crate) fn lock_span(device_id: &str, fencing_token: u64) -> tracing::Span {
    tracing::info_span!("lock", device = device_id, fencing_token)
}

/// A device id as a file name part (lock files, backup files): letters, digits, `-`, `_` and
/// `.` (not leading) stay, every other byte becomes `%XX`, so two device ids never share a
/// file and no id can climb out of its directory.
pub(crate) fn file_safe(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for (index, byte) in id.bytes().enumerate() {
        let keep = byte.is_ascii_alphanumeric()
            || byte == b'-'
            || byte == b'_'
            || (byte == b'.' && index > 0);
        if keep {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn file_safe_names_are_distinct_and_stay_in_their_directory() {
        assert_eq!(super::file_safe("door-1_a.b"), "door-1_a.b");
        assert_eq!(super::file_safe("door/1"), "door%2F1");
        assert_ne!(super::file_safe("door/1"), super::file_safe("door_1"));
        assert_eq!(super::file_safe("../x"), "%2E.%2Fx");
        assert_eq!(super::file_safe("50%"), "50%25");
    }
}
