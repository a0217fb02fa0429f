//! The credential values the store last read from a device for one user, as a technician asks
//! for them (`buffer credential`): which face, finger, card or PIN the terminal held for a user
//! who has since gone missing or been changed. Without it the cache's values (and the value
//! files behind the large ones) were written on every read but read by nothing in production.
//!
//! Read-only over the `credentials` tree, whose one writer is [`super::credentials`]. A value
//! kept in a value file is read back and checked against its digest ([`super::credentials::value`]);
//! a damaged or lost file is reported on its own row (`damaged`), so the other values of the
//! user still come back.

use device_protocols::aiface::CredentialValue;
use serde::Serialize;
use serde_json::Value;

use super::credentials::{self, StoredCredential, StoredValue};
use crate::device::slot_kind_name;
use crate::store::{keys, Store, StoreError, TreeName};

/// One credential value as the store last read it from the device.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeldValue {
    /// The device's slot (`backupnum`): 0–9 fingers, 10 PIN, 11 card, 50 photo, ….
    pub slot: u16,
    /// What the slot holds, in words (`fingerprint`, `password`, `card`, `face`, `photo`, …).
    pub kind: &'static str,
    /// The user's name on the device when the value was read.
    pub name: String,
    /// The user's privilege on the device when the value was read.
    pub privilege: u64,
    /// Where the store keeps it: `inline` (in sled) or `file` (a value file).
    pub stored: &'static str,
    /// The value's length: bytes of its text (a number's decimal digits).
    pub bytes: u64,
    /// The SHA-256 (hex) a value file is named by and was checked against; `None` inline.
    pub digest: Option<String>,
    /// The value as the device sent it (a JSON number or string); `None` when damaged.
    pub value: Option<Value>,
    /// Why the value could not be read back (its file missing, or not matching its digest).
    pub damaged: Option<String>,
}

/// Every value the store holds for `user` on `device` (only `slot`, when given), by slot.
pub fn held_values(
    store: &Store,
    device: &str,
    user: &str,
    slot: Option<u16>,
) -> Result<Vec<HeldValue>, StoreError> {
    let found: Vec<(u16, StoredCredential)> = match slot {
        Some(slot) => credentials::get(store, device, user, slot)?
            .map(|stored| (slot, stored))
            .into_iter()
            .collect(),
        None => {
            let mut prefix = keys::device_user(device, user)?;
            prefix.push(keys::SEPARATOR);
            store
                .scan_prefix::<StoredCredential>(TreeName::Credentials, &prefix)
                .map(|entry| entry.map(|(key, stored)| (slot_of(&key), stored)))
                .collect::<Result<_, _>>()?
        }
    };
    Ok(found
        .into_iter()
        .map(|(slot, stored)| held_value(store, slot, stored))
        .collect())
}

/// The slot of a `credentials` key (its last two bytes, big-endian; see [`credentials::key`]).
fn slot_of(key: &[u8]) -> u16 {
    match key {
        [.., high, low] => u16::from_be_bytes([*high, *low]),
        _ => 0,
    }
}

fn held_value(store: &Store, slot: u16, stored: StoredCredential) -> HeldValue {
    let (kept, bytes, digest) = match &stored.value {
        StoredValue::File { digest, bytes } => ("file", *bytes, Some(digest.hex())),
        StoredValue::Number(text) | StoredValue::Text(text) => ("inline", text.len() as u64, None),
    };
    let (value, damaged) = match credentials::value(store, &stored) {
        Ok(CredentialValue::Number(number)) => (Some(Value::Number(number)), None),
        Ok(CredentialValue::Text(text)) => (Some(Value::String(text)), None),
        Err(err) => (None, Some(err.to_string())),
    };
    HeldValue {
        slot,
        kind: slot_kind_name(slot),
        name: stored.name,
        privilege: stored.privilege,
        stored: kept,
        bytes,
        digest,
        value,
        damaged,
    }
}
