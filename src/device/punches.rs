//! Attendance punches (D7): every punch a device reports is written durably and idempotently
//! *before* the device hears that it may forget it.
//!
//! The key is the device's own identity of a punch — sn + user + device time + mode + inout —
//! so a punch the device re-sends (because our reply was lost, or we crashed before replying)
//! lands on the same key and is stored once. Times are kept exactly as the device sent them: no
//! zone conversion, no shifting.

use crate::events::Punch;
use crate::store::{keys, Record, Store, StoreError, TreeName};
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
}

impl PunchLog {
    /// A punch log over the agent's store.
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// Stores a batch of punches and makes it durable; only after this returns `Ok` may the
    /// device be told it can forget them.
    pub async fn record(
        &self,
        device_id: &str,
        sn: &str,
        records: &[LogRecord],
    ) -> Result<PunchBatch, StoreError> {
        let now = chrono::Utc::now().timestamp_millis();
        let mut punches = Vec::with_capacity(records.len());
        for record in records {
            let punch = punch_of(sn, record);
            let mut key = keys::device_prefix(device_id)?;
            key.extend_from_slice(crate::events::EventKey::punch(&punch).as_bytes());
            punches.push((key, punch));
        }
        let new = self.store.transaction(&[TreeName::Punches], |tx| {
            let mut new = 0;
            for (key, punch) in &punches {
                if tx.get::<StoredPunch>(TreeName::Punches, key)?.is_none() {
                    let stored = StoredPunch {
                        punch: punch.clone(),
                        received_at_ms: now,
                    };
                    tx.insert(TreeName::Punches, key, &stored)?;
                    new += 1;
                }
            }
            Ok(new)
        })?;
        self.store.make_durable().await?;
        Ok(PunchBatch {
            new,
            duplicates: punches.len() - new,
        })
    }

    /// Every stored punch of one device, in key order.
    pub fn of_device(&self, device_id: &str) -> Result<Vec<StoredPunch>, StoreError> {
        let prefix = keys::device_prefix(device_id)?;
        self.store
            .scan_prefix::<StoredPunch>(TreeName::Punches, prefix)
            .map(|entry| entry.map(|(_, punch)| punch))
            .collect()
    }
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
