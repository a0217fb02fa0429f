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
    /// A device has not been completely read for longer than `monitor.unread_alert_after`
    /// (not connected, or every read failing): its users are not being watched.
    DeviceUnread {
        /// The device.
        device_id: String,
        /// The last complete read (UTC ms), if any since the agent started.
        last_complete_ms: Option<i64>,
        /// The threshold it passed, in seconds.
        threshold_s: u64,
        /// Why the last attempt failed, or that the device is not connected.
        reason: String,
    },
    /// Reads of a device ended incomplete `monitor.incomplete_alert_after` times in a row.
    ReadsIncomplete {
        /// The device.
        device_id: String,
        /// Incomplete reads in a row.
        in_a_row: u32,
        /// Why the last one failed.
        last_error: String,
    },
    /// Events were given up on and set aside as dead letters since the last look.
    DeadLetters {
        /// New dead letters.
        new: u64,
        /// Dead letters now kept.
        total: u64,
    },
    /// A supervised task (a device's poll loop) failed and is restarted after a pause.
    TaskRestarted {
        /// The task's name (`sync-device:<id>`).
        task: String,
        /// How it failed.
        reason: String,
        /// The pause before the restart, in milliseconds.
        restart_in_ms: u64,
    },
    /// The device lock was lost while held (another holder took over, the lease expired): what
    /// the agent was doing with the device stops. Raised by the lock service.
    LockLost {
        /// The device.
        device_id: String,
        /// What happened.
        detail: String,
    },
    /// A ZK terminal's attendance log no longer starts with the records stored before (cleared
    /// with vendor software, or rewritten by the firmware): the whole log was offered again and
    /// de-duplicated by punch key, so nothing was stored twice, but punches made at the
    /// terminal between the last read and the clearing may be gone from it.
    AttendanceLogRewritten {
        /// The device.
        device_id: String,
        /// Records of the log stored before.
        stored: u64,
        /// Records the log holds now.
        on_device: u64,
    },
    /// The shelf-label (ESL) adapter needs a person: another writer keeps overwriting a key
    /// the agent owns, a `POOL-` id it did not allocate exists, the `POOL-` range is nearly
    /// used up, or the gateway refuses the agent's credentials. Raised by `crate::esl`.
    EslAttention {
        /// Stable machine-readable problem (`esl_key_contested`, `esl_pool_nearly_full`,
        /// `esl_namespace_collision`, `esl_unauthorized`).
        problem: String,
        /// The article, key or figures concerned.
        detail: String,
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
        self.alarms_after(None)
    }

    /// The alarms recorded after sequence number `after` (all with `None`), oldest first: what
    /// a reader that has seen up to `after` has not seen yet (the MQTT alert forwarder).
    pub fn alarms_after(&self, after: Option<u64>) -> Result<Vec<(u64, Alarm)>, StoreError> {
        let start = after.map_or(0, |seen| seen.saturating_add(1));
        self.tree(TreeName::Alarms)
            .range(keys::sequence(start)..)
            .map(|entry| {
                let (key, value) = entry.map_err(StoreError::sled("read alarms"))?;
                let alarm = super::envelope::decode::<Alarm>(&value)
                    .map_err(|error| StoreError::value(TreeName::Alarms, &key, error))?;
                let sequence = keys::parse_sequence(&key).ok_or_else(|| StoreError::BadKey {
                    tree: TreeName::Alarms,
                    key: printable_key(&key),
                    expected: "an 8-byte big-endian sequence number",
                })?;
                Ok((sequence, alarm))
            })
            .collect()
    }

    /// Resolves when alarms may have been raised since the returned watch was taken; a reader
    /// takes the watch *before* reading, so nothing raised in between is missed.
    pub fn watch_alarms(&self) -> sled::Subscriber {
        self.tree(TreeName::Alarms).watch_prefix(Vec::new())
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
