//! Quarantine: records a terminal sent that the agent cannot read (a `sendlog` record without a
//! `time`, or with a non-numeric `enrollid`). One such record must not wedge the terminal: the
//! frame's good records are stored and the frame answered, while the unreadable ones are kept
//! here, raw JSON as sent, with an audit entry, durably before the terminal hears the answer. An
//! operator can read them back (`list`) and fix the terminal; nothing is thrown away.
//!
//! This module is the only writer of the `quarantine` tree (keys `device_id \0 sequence`).

use crate::audit::{self, Audit, AuditEntry, Operation};
use crate::store::{keys, Record, Store, StoreError, TreeName};
use device_protocols::aiface::MalformedRecord;
use serde::{Deserialize, Serialize};

/// One record kept aside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantinedRecord {
    /// The device that sent it.
    pub device_id: String,
    /// The terminal's serial number.
    pub sn: String,
    /// The report it came in (`sendlog`).
    pub report: String,
    /// The record exactly as sent (JSON text).
    pub raw_json: String,
    /// Why it cannot be read.
    pub reason: String,
    /// When it arrived (UTC ms).
    pub received_at_ms: i64,
}

impl Record for QuarantinedRecord {
    const KIND: &'static str = "quarantined_record";
    const VERSION: u32 = 1;
}

/// Keeps `malformed` records of one `report` from `device_id`, each with an audit entry, and
/// makes them durable; only after `Ok` may the terminal be told the frame was taken.
pub async fn keep(
    store: &Store,
    device_id: &str,
    sn: &str,
    report: &str,
    malformed: &[MalformedRecord],
) -> Result<(), StoreError> {
    let now = chrono::Utc::now().timestamp_millis();
    let mut kept = Vec::with_capacity(malformed.len());
    let mut entries = Vec::with_capacity(malformed.len());
    for record in malformed {
        let key = keys::device_sequence(device_id, store.next_sequence()?)?;
        let raw_json = record.raw.to_string();
        entries.push(AuditEntry {
            at_unix_ms: now,
            operation: Operation::Quarantine,
            device_id: Some(device_id.to_string()),
            device_user_id: None,
            actor: "device".to_string(),
            detail: format!(
                "unreadable {report} record quarantined ({}): {raw_json}",
                record.reason
            ),
        });
        kept.push((
            key,
            QuarantinedRecord {
                device_id: device_id.to_string(),
                sn: sn.to_string(),
                report: report.to_string(),
                raw_json,
                reason: record.reason.clone(),
                received_at_ms: now,
            },
        ));
    }
    let audit = Audit::new(store.clone()).prepare(entries)?;
    store.transaction(&[TreeName::Quarantine, TreeName::Audit], |tx| {
        for (key, record) in &kept {
            tx.insert(TreeName::Quarantine, key, record)?;
        }
        audit::append_in(tx, &audit)
    })?;
    store.make_durable().await?;
    for (_, record) in &kept {
        tracing::error!(
            device = device_id,
            reason = %record.reason,
            raw = %record.raw_json,
            "an unreadable {report} record was quarantined; the frame's other records are stored"
        );
    }
    Ok(())
}

/// Every quarantined record (of one device, or all), oldest first per device.
pub fn list(store: &Store, device_id: Option<&str>) -> Result<Vec<QuarantinedRecord>, StoreError> {
    let prefix = device_id
        .map(keys::device_prefix)
        .transpose()?
        .unwrap_or_default();
    store
        .scan_prefix::<QuarantinedRecord>(TreeName::Quarantine, prefix)
        .map(|entry| entry.map(|(_, record)| record))
        .collect()
}
