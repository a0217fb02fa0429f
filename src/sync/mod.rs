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
//!   `listed`: when a poll may name the last list so an unchanged device costs only its list;
//!   [`service`]: the poll loops and their wake-ups; [`migrate`]: B7.
//! - Records: [`snapshot`], [`buffer`] (B1), [`mapping`] (B2), [`conflicts`] (B3), [`history`]
//!   and the missing-user warnings in [`apply`] (B4), [`state`], [`credentials`] (value cache)
//!   and [`held_values`] (its read side for `buffer credential`).
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
pub mod held_values;
pub mod history;
mod listed;
pub mod listen;
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

pub(crate) use crate::config::file_safe;

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
