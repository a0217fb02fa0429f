//! Attendance punches (D7): every punch a device reports is written durably and idempotently
//! *before* the device hears that it may forget it.
//!
//! The key is the device's own identity of a punch — sn + user + device time + mode + inout —
//! so a punch the device re-sends (because our reply was lost, or we crashed before replying)
//! lands on the same key and is stored once. Times are kept exactly as the device sent them: no
//! zone conversion, no shifting. Each new punch is queued for upstream in the same transaction
//! (same key as its idempotency key); when the outbox is full the batch is refused, so the
//! device keeps the punches instead of the agent dropping them.

use crate::events::{Event, EventBody, EventKey, Punch};
use crate::store::{keys, Record, Store, StoreError, TreeName};
use crate::upstream::outbox::{self, Outbox, OutboxError};
use device_protocols::aiface::LogRecord;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// A punch as stored in the `punches` tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPunch {
    /// The punch with its raw fields.
    pub punch: Punch,
    /// When the agent first stored it (UTC ms).
    pub received_at_ms: i64,
}

impl Record for StoredPunch {
    const KIND: &'static str = "punch";
    const VERSION: u32 = 1;
}

/// What one batch of reported punches did to the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PunchBatch {
    /// Punches stored for the first time.
    pub new: usize,
    /// Punches already stored (re-sent by the device).
    pub duplicates: usize,
}

/// The durable punch log of every device.
#[derive(Clone)]
pub struct PunchLog {
    store: Store,
    outbox: Outbox,
    agent_id: String,
}

impl PunchLog {
    /// A punch log over the agent's store, queueing new punches in `outbox`.
    pub fn new(outbox: Outbox, agent_id: &str) -> Self {
        Self {
            store: outbox.store().clone(),
            outbox,
            agent_id: agent_id.to_string(),
        }
    }

    /// Stores a batch of punches and makes it durable; only after this returns `Ok` may the
    /// device be told it can forget them.
    pub async fn record(
        &self,
        device_id: &str,
        sn: &str,
        records: &[LogRecord],
    ) -> Result<PunchBatch, OutboxError> {
        let punches: Vec<Punch> = records.iter().map(|record| punch_of(sn, record)).collect();
        self.record_punches(device_id, punches).await
    }

    /// Stores punches already converted by a driver (ZK attendance records) the same way as
    /// [`PunchLog::record`]: one transaction with their upstream events, then fsync.
    pub async fn record_punches(
        &self,
        device_id: &str,
        batch: Vec<Punch>,
    ) -> Result<PunchBatch, OutboxError> {
        let now = chrono::Utc::now().timestamp_millis();
        let clock_synchronized = crate::clock_sync::clock_sync().is_synchronized();
        // Punches read in a locked session (a ZK poll, the AI06 backfill) carry its token;
        // punches a terminal pushes on its own carry 0 (no session of ours observed them).
        let fencing_token = crate::sync::lock::fence::current_token().unwrap_or(0);
        let mut punches = Vec::with_capacity(batch.len());
        for punch in batch {
            let event_key = EventKey::punch(&punch);
            let mut key = keys::device_prefix(device_id).map_err(StoreError::from)?;
            key.extend_from_slice(event_key.as_bytes());
            let event = self.outbox.prepare(Event {
                key: event_key,
                agent_id: self.agent_id.clone(),
                device_id: device_id.to_string(),
                occurred_at_ms: now,
                clock_synchronized,
                fencing_token,
                body: EventBody::Punch(punch.clone()),
            })?;
            punches.push((key, punch, event));
        }
        let queued = self
            .store
            .transaction(&[TreeName::Punches, TreeName::Outbox], |tx| {
                let mut queued = Vec::new();
                for (index, (key, punch, event)) in punches.iter().enumerate() {
                    if tx.get::<StoredPunch>(TreeName::Punches, key)?.is_none() {
                        let stored = StoredPunch {
                            punch: punch.clone(),
                            received_at_ms: now,
                        };
                        tx.insert(TreeName::Punches, key, &stored)?;
                        outbox::enqueue_in(tx, event)?;
                        queued.push(index);
                    }
                }
                Ok(queued)
            })?;
        let new = queued.len();
        let total = punches.len();
        let mut events: Vec<_> = punches
            .into_iter()
            .map(|(_, _, event)| Some(event))
            .collect();
        for index in queued {
            if let Some(event) = events[index].take() {
                self.outbox.committed(event);
            }
        }
        self.store.make_durable().await?;
        Ok(PunchBatch {
            new,
            duplicates: total - new,
        })
    }

    /// Every stored punch of one device, in key order.
    pub fn of_device(&self, device_id: &str) -> Result<Vec<StoredPunch>, StoreError> {
        of_device(&self.store, device_id)
    }
}

/// Every stored punch of one device, in key order.
pub fn of_device(store: &Store, device_id: &str) -> Result<Vec<StoredPunch>, StoreError> {
    let prefix = keys::device_prefix(device_id)?;
    store
        .scan_prefix::<StoredPunch>(TreeName::Punches, prefix)
        .map(|entry| entry.map(|(_, punch)| punch))
        .collect()
}

/// Converts a reported record into a punch, keeping every raw field as text.
pub fn punch_of(sn: &str, record: &LogRecord) -> Punch {
    let key = record.key(sn);
    let mut raw = BTreeMap::new();
    let mut keep = |name: &str, value: Option<&Value>| {
        if let Some(value) = value {
            let text = match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            raw.insert(name.to_string(), text);
        }
    };
    keep("event", record.event.as_ref());
    keep("verifymode", record.verifymode.as_ref());
    keep("temp", record.temp.as_ref());
    for (name, value) in &record.extras {
        keep(name, Some(value));
    }
    if let Some(name) = &record.name {
        raw.insert("name".into(), name.clone());
    }
    if let Some(image) = &record.image {
        raw.insert("image_bytes".into(), image.len().to_string());
    }
    Punch {
        sn: sn.to_string(),
        user_id: record.enrollid.to_string(),
        time: record.time.clone(),
        mode: key.mode,
        inout: key.inout,
        raw,
    }
}
