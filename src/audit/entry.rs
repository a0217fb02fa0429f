//! One audit entry and the closed list of operation types.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

use crate::store::Record;

/// One thing the agent did, as kept in the `audit` tree.
///
/// The sequence number is the entry's key, not a field, so it can never disagree with the
/// order of the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When it was done: wall-clock UTC, milliseconds since the Unix epoch (display and range
    /// filters only; order comes from the sequence key).
    pub at_unix_ms: i64,
    /// What kind of operation it was.
    pub operation: Operation,
    /// The device concerned, if any.
    pub device_id: Option<String>,
    /// The device user concerned, if any (the key of "what happened to user 42?").
    pub device_user_id: Option<String>,
    /// Who did it: the name of the admin key that signed a command, or `agent` for the
    /// agent's own work.
    pub actor: String,
    /// What exactly, for a human: arguments, outcome, reason.
    pub detail: String,
}

impl Record for AuditEntry {
    const KIND: &'static str = "audit_entry";
    const VERSION: u32 = 1;
}

/// The kinds of audited operation. Append new variants at the end only: the store keeps the
/// variant's index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// A device user seen for the first time.
    Discovery,
    /// A device user copied into the durable buffer.
    Buffering,
    /// A device user linked to an upstream person.
    Mapping,
    /// A disagreement between device and upstream detected.
    Conflict,
    /// A conflict resolved by an administrator.
    Resolution,
    /// Users re-added to a device from a backup.
    Restore,
    /// A backup taken.
    Backup,
    /// A device lock acquired, released or lost.
    Lock,
    /// A signed administrator command accepted.
    AdminCommand,
    /// A device user no longer present on the device.
    Missing,
    /// A known device user's attributes or credentials changed on the device.
    Changed,
    /// A device user reported missing is back on the device.
    Reappeared,
    /// A read was incomplete: nothing was concluded about users.
    ReadIncomplete,
    /// The device reported fewer users without a complete read (a warning, never an alert).
    CountDropped,
    /// Records removed by retention.
    Retention,
    /// The upstream fell behind a device's buffer (the outbox refused a read's events), or a
    /// catch-up was queued to bring it level again.
    UpstreamCatchUp,
    /// A record a device sent that cannot be read, kept aside with its raw JSON.
    Quarantine,
}

impl Operation {
    /// Every operation, in declaration order (for help texts and error messages).
    pub const ALL: [Operation; 17] = [
        Operation::Discovery,
        Operation::Buffering,
        Operation::Mapping,
        Operation::Conflict,
        Operation::Resolution,
        Operation::Restore,
        Operation::Backup,
        Operation::Lock,
        Operation::AdminCommand,
        Operation::Missing,
        Operation::Changed,
        Operation::Reappeared,
        Operation::ReadIncomplete,
        Operation::CountDropped,
        Operation::Retention,
        Operation::UpstreamCatchUp,
        Operation::Quarantine,
    ];

    /// The name used in queries and JSON, e.g. `admin_command`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Operation::Discovery => "discovery",
            Operation::Buffering => "buffering",
            Operation::Mapping => "mapping",
            Operation::Conflict => "conflict",
            Operation::Resolution => "resolution",
            Operation::Restore => "restore",
            Operation::Backup => "backup",
            Operation::Lock => "lock",
            Operation::AdminCommand => "admin_command",
            Operation::Missing => "missing",
            Operation::Changed => "changed",
            Operation::Reappeared => "reappeared",
            Operation::ReadIncomplete => "read_incomplete",
            Operation::CountDropped => "count_dropped",
            Operation::Retention => "retention",
            Operation::UpstreamCatchUp => "upstream_catch_up",
            Operation::Quarantine => "quarantine",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A query named an operation type that does not exist.
#[derive(Debug, thiserror::Error)]
#[error("unknown audit operation {given:?}; expected one of: {}", Operation::ALL.map(Operation::as_str).join(", "))]
pub struct UnknownOperation {
    /// What was given.
    pub given: String,
}

impl FromStr for Operation {
    type Err = UnknownOperation;

    /// Accepts the names of [`Operation::as_str`], and `discovered` for
    /// [`Operation::Discovery`] (the name the technician's `audit query` used to take).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "discovered" {
            return Ok(Operation::Discovery);
        }
        Operation::ALL
            .into_iter()
            .find(|operation| operation.as_str() == text)
            .ok_or_else(|| UnknownOperation {
                given: text.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::envelope;

    #[test]
    fn golden_bytes_of_audit_entry_version_1() {
        let entry = AuditEntry {
            at_unix_ms: 1,
            operation: Operation::AdminCommand,
            device_id: None,
            device_user_id: Some("7".into()),
            actor: "a".into(),
            detail: "d".into(),
        };
        // version 1 | zigzag 1 | variant 8 | None | Some "7" | "a" | "d": what stores
        // written before the kind was stored hold, and still read.
        let untagged = [1, 2, 8, 0, 1, 1, b'7', 1, b'a', 1, b'd'];
        assert_eq!(envelope::decode::<AuditEntry>(&untagged).unwrap(), entry);
        // tag 0 | kind "audit_entry" length-prefixed | the same version and body
        let mut golden = vec![0, 11];
        golden.extend_from_slice(b"audit_entry");
        golden.extend_from_slice(&untagged);
        assert_eq!(envelope::encode(&entry).unwrap(), golden);
        assert_eq!(envelope::decode::<AuditEntry>(&golden).unwrap(), entry);
    }

    #[test]
    fn operation_names_round_trip_and_unknown_names_list_the_choices() {
        for operation in Operation::ALL {
            assert_eq!(operation.as_str().parse::<Operation>().unwrap(), operation);
        }
        assert_eq!(
            "discovered".parse::<Operation>().unwrap(),
            Operation::Discovery
        );
        let err = "deletion".parse::<Operation>().unwrap_err().to_string();
        assert!(err.contains("\"deletion\""), "{err}");
        assert!(err.contains("admin_command"), "{err}");
    }
}
