//! Alarms: conditions an operator must see even if nobody was watching the log when they
//! happened (for example "the store was damaged and rebuilt"). They live in the `alarms` tree
//! under time-ordered sequence keys, so `status` can list them oldest first.

use serde::{Deserialize, Serialize};

use super::envelope::Record;
use super::error::{printable_key, StoreError};
use super::keys;
use super::trees::TreeName;
use super::Store;

/// One raised alarm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alarm {
    /// When it was raised, milliseconds since the Unix epoch (wall time, for display only).
    pub raised_at_unix_ms: i64,
    /// What happened, with the details that kind of alarm needs.
    pub kind: AlarmKind,
    /// A sentence for the operator: what happened and what to do.
    pub message: String,
}

/// The kinds of alarm. Append new variants at the end only: postcard stores the variant index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AlarmKind {
    /// The store could not be opened and was moved aside; the agent started with an empty
    /// store and rebuilds it from the devices.
    StoreSalvaged {
        /// Where the damaged directory now is (kept for diagnosis).
        moved_to: String,
        /// Why it was judged damaged.
        reason: String,
    },
    /// The outbox reached its byte cap: new events are refused (never dropped) until the
    /// forwarder drains it.
    OutboxFull {
        /// Bytes queued when the first event was refused.
        queued_bytes: u64,
        /// The configured cap (`upstream.outbox_max_bytes`).
        max_bytes: u64,
    },
    /// The upstream refused the agent's credentials (HTTP 401/403); forwarding waits for a
    /// valid token.
    UpstreamUnauthorized {
        /// The HTTP status the upstream answered.
        status: u16,
    },
    /// A backup was not written (the read failed, or the file would not hold every user the
    /// complete read found): the device has no fresh backup until one succeeds.
    BackupFailed {
        /// The device.
        device_id: String,
        /// Why.
        reason: String,
    },
    /// Critical: a complete read lost many users at once; their `user_missing` events are held
    /// until an administrator confirms or the users come back.
    MassDisappearance {
        /// The device.
        device_id: String,
        /// Users missing at once.
        missing: u64,
        /// Users in the previous complete read.
        previous: u64,
    },
}

impl Record for Alarm {
    const KIND: &'static str = "alarm";
    const VERSION: u32 = 1;
}

impl Store {
    /// Records `alarm` under a fresh sequence key and returns that sequence number. The caller
    /// makes it durable along with whatever else it is doing.
    pub fn raise_alarm(&self, alarm: &Alarm) -> Result<u64, StoreError> {
        let sequence = self.next_sequence()?;
        self.insert(TreeName::Alarms, keys::sequence(sequence), alarm)?;
        Ok(sequence)
    }

    /// Every recorded alarm with its sequence number, oldest first.
    pub fn alarms(&self) -> Result<Vec<(u64, Alarm)>, StoreError> {
        self.scan_prefix::<Alarm>(TreeName::Alarms, [])
            .map(|entry| {
                let (key, alarm) = entry?;
                let sequence = keys::parse_sequence(&key).ok_or_else(|| StoreError::BadKey {
                    tree: TreeName::Alarms,
                    key: printable_key(&key),
                    expected: "an 8-byte big-endian sequence number",
                })?;
                Ok((sequence, alarm))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::envelope;

    #[test]
    fn golden_bytes_of_alarm_version_1() {
        let alarm = Alarm {
            raised_at_unix_ms: 1,
            kind: AlarmKind::StoreSalvaged {
                moved_to: "m".into(),
                reason: "r".into(),
            },
            message: "x".into(),
        };
        // version 1 | zigzag varint 1 | variant 0 | "m" | "r" | "x"
        // version 1 | body: what stores written before the kind was stored hold.
        let untagged = [1, 2, 0, 1, b'm', 1, b'r', 1, b'x'];
        assert_eq!(envelope::decode::<Alarm>(&untagged).unwrap(), alarm);
        // tag 0 | kind "alarm" length-prefixed | the same version and body
        let mut golden = vec![0, 5];
        golden.extend_from_slice(b"alarm");
        golden.extend_from_slice(&untagged);
        assert_eq!(envelope::encode(&alarm).unwrap(), golden);
        assert_eq!(envelope::decode::<Alarm>(&golden).unwrap(), alarm);
    }
}
