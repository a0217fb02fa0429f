//! The credential cache (`credentials` tree): each credential value as last fetched, so a
//! steady-state poll fetches nothing it already holds (the device lists `enrollid`/`backupnum`
//! cheaply; fetching a 40 KB photo is what costs).
//!
//! The cache holds values, not membership: which users exist is decided by the snapshot alone.
//! Values are written as they arrive during a read (streaming, so a 5,000-photo read never sits
//! in memory) and become durable with the next flush; a value cached by a read that later
//! fails is still a true value of that credential and changes no snapshot, buffer or event.
//! Backups refresh every value ([`crate::device::FetchMode::All`]).

use crate::device::{Credential, HeldCredential, ReadProgress, ReadSink};
use crate::store::{keys, Record, Store, StoreError, TreeName};
use device_protocols::aiface::{BackupNum, CredentialKind, CredentialValue};
use serde::{Deserialize, Serialize};

/// A credential value as stored (postcard cannot hold `serde_json::Number`, so numbers keep
/// their exact decimal text and get their JSON type back on the way out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoredValue {
    /// Sent by the device as a JSON number (card, password): its decimal text.
    Number(String),
    /// Sent as a JSON string (templates, photos).
    Text(String),
}

/// One cached credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCredential {
    /// The user's name when fetched.
    pub name: String,
    /// The user's privilege when fetched.
    pub privilege: u64,
    /// The value.
    pub value: StoredValue,
}

impl Record for StoredCredential {
    const KIND: &'static str = "stored_credential";
    const VERSION: u32 = 1;
}

impl StoredValue {
    /// Keeps `value` with its JSON type.
    pub fn of(value: &CredentialValue) -> Self {
        match value {
            CredentialValue::Number(n) => StoredValue::Number(n.to_string()),
            CredentialValue::Text(t) => StoredValue::Text(t.clone()),
        }
    }

    /// The value as the device sent it. A number whose text no longer parses (it cannot
    /// happen with text written by [`StoredValue::of`]) comes back as text.
    pub fn to_value(&self) -> CredentialValue {
        match self {
            StoredValue::Number(text) => text
                .parse::<serde_json::Number>()
                .map(CredentialValue::Number)
                .unwrap_or_else(|_| CredentialValue::Text(text.clone())),
            StoredValue::Text(text) => CredentialValue::Text(text.clone()),
        }
    }
}

/// The key of one credential: `device \0 user \0 slot(u16 BE)`.
pub fn key(device_id: &str, user_id: &str, slot: u16) -> Result<Vec<u8>, StoreError> {
    let mut key = keys::device_user(device_id, user_id)?;
    key.push(keys::SEPARATOR);
    key.extend_from_slice(&slot.to_be_bytes());
    Ok(key)
}

/// One cached credential, if held.
pub fn get(
    store: &Store,
    device_id: &str,
    user_id: &str,
    slot: u16,
) -> Result<Option<StoredCredential>, StoreError> {
    store.get(TreeName::Credentials, key(device_id, user_id, slot)?)
}

/// Caches `stored` at `key` (from [`key`]); this module is the only writer of the
/// `credentials` tree.
pub fn put(
    store: &Store,
    key: impl AsRef<[u8]>,
    stored: &StoredCredential,
) -> Result<(), StoreError> {
    store.insert(TreeName::Credentials, key, stored)
}

/// Removes every cached credential of one user (retention of a long-gone user).
pub fn remove_user(store: &Store, device_id: &str, user_id: &str) -> Result<usize, StoreError> {
    let mut prefix = keys::device_user(device_id, user_id)?;
    prefix.push(keys::SEPARATOR);
    let found: Vec<Vec<u8>> = store
        .scan_prefix::<StoredCredential>(TreeName::Credentials, &prefix)
        .map(|entry| entry.map(|(key, _)| key))
        .collect::<Result<_, _>>()?;
    for key in &found {
        store.remove::<StoredCredential>(TreeName::Credentials, key)?;
    }
    Ok(found.len())
}

/// The read sink of the sync engine: answers `held` from the cache and caches what arrives.
pub struct StoreSink {
    store: Store,
    device_id: String,
}

impl StoreSink {
    /// A sink caching `device_id`'s credentials in `store`.
    pub fn new(store: Store, device_id: &str) -> Self {
        Self {
            store,
            device_id: device_id.to_string(),
        }
    }
}

impl ReadSink for StoreSink {
    fn held(&self, user_id: &str, slot: u16) -> Option<HeldCredential> {
        match get(&self.store, &self.device_id, user_id, slot) {
            Ok(held) => held.map(|stored| HeldCredential {
                card: (BackupNum(slot).kind() == CredentialKind::Card)
                    .then(|| stored.value.to_value().as_text()),
                name: stored.name,
                privilege: stored.privilege,
            }),
            Err(err) => {
                tracing::warn!(device = %self.device_id, user_id, slot, %err, "cached credential unreadable; fetching it again");
                None
            }
        }
    }

    fn credential(&mut self, credential: Credential) -> Result<(), String> {
        let stored = StoredCredential {
            name: credential.name,
            privilege: credential.privilege,
            value: StoredValue::of(&credential.value),
        };
        key(&self.device_id, &credential.user_id, credential.slot)
            .and_then(|key| put(&self.store, key, &stored))
            .map_err(|err| err.to_string())
    }

    fn progress(&mut self, progress: ReadProgress) {
        tracing::debug!(device = %self.device_id, ?progress, "read progress");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_their_json_type_and_exact_digits() {
        let big: serde_json::Number = "18446744073709551615".parse().unwrap();
        let stored = StoredValue::of(&CredentialValue::Number(big.clone()));
        assert_eq!(stored.to_value(), CredentialValue::Number(big));
        let text = CredentialValue::Text("TSS21(128)abc".into());
        assert_eq!(StoredValue::of(&text).to_value(), text);
    }

    #[test]
    fn keys_of_user_1_do_not_prefix_user_10() {
        let one = key("d", "1", 50).unwrap();
        let ten = key("d", "10", 50).unwrap();
        let mut prefix = keys::device_user("d", "1").unwrap();
        prefix.push(keys::SEPARATOR);
        assert!(one.starts_with(&prefix));
        assert!(!ten.starts_with(&prefix));
    }
}
