//! The credential cache (`credentials` tree): each credential value as last fetched, so a
//! steady-state poll fetches nothing it already holds (the device lists `enrollid`/`backupnum`
//! cheaply; fetching a 40 KB photo is what costs).
//!
//! The cache holds values, not membership: which users exist is decided by the snapshot alone.
//! Values are written as they arrive during a read (streaming, so a 5,000-photo read never sits
//! in memory) and become durable with the next flush; a value cached by a read that later
//! fails is still a true value of that credential and changes no snapshot, buffer or event.
//! Backups refresh every value ([`crate::device::FetchMode::All`]).
//!
//! Large values (photos, templates: text longer than [`INLINE_LIMIT`] bytes) are not kept in
//! sled: they go to the store's content-addressed value files ([`crate::store::ValueFiles`]),
//! and the record keeps only their digest and size. During a read the [`StoreSink`] writes the
//! files without fsync and keeps their records back; every [`BATCH`] values (and when the read
//! ends, [`StoreSink::finish`]) it makes the batch durable in one round — each file fsynced,
//! the directory fsynced once — and only then inserts the records, so a record never names a
//! value file that is not durable.
//! Cards and PINs stay inline. This module writes both the records and the files they name,
//! and is the one that decides which files are still needed ([`sweep`]): only the records of
//! this tree name value files (snapshots and buffer records hold slot summaries, backups are
//! self-contained files), so a file no record names is needed by nothing. [`migrate_values`]
//! moves the inline values of a store written by an older build out at start-up.

use crate::device::{Credential, HeldCredential, ReadProgress, ReadSink};
use crate::store::{
    keys, PendingValues, Record, Store, StoreError, TreeName, ValueDigest, ValuesSwept,
};
use device_protocols::aiface::{BackupNum, CredentialKind, CredentialValue};
use serde::{Deserialize, Serialize};

/// A credential value as stored (postcard cannot hold `serde_json::Number`, so numbers keep
/// their exact decimal text and get their JSON type back on the way out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoredValue {
    /// Sent by the device as a JSON number (card, password): its decimal text.
    Number(String),
    /// Sent as a JSON string (templates, photos) and short enough to keep inline.
    Text(String),
    /// Sent as a JSON string longer than [`INLINE_LIMIT`]: its UTF-8 bytes are the value file
    /// `digest` (see the module docs).
    File {
        /// The value file's digest.
        digest: ValueDigest,
        /// Its length in bytes.
        bytes: u64,
    },
}

/// Text values longer than this many bytes live in value files, not in sled: a card number or
/// a PIN stays inline, a face photo or fingerprint template does not.
pub const INLINE_LIMIT: usize = 128;

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

    /// The value as the device sent it, when it is inline; `None` for a value file (read it
    /// with [`value`]). A number whose text no longer parses (it cannot happen with text
    /// written by [`StoredValue::of`]) comes back as text.
    pub fn to_value(&self) -> Option<CredentialValue> {
        match self {
            StoredValue::Number(text) => Some(
                text.parse::<serde_json::Number>()
                    .map(CredentialValue::Number)
                    .unwrap_or_else(|_| CredentialValue::Text(text.clone())),
            ),
            StoredValue::Text(text) => Some(CredentialValue::Text(text.clone())),
            StoredValue::File { .. } => None,
        }
    }

    /// Whether this value belongs in a value file but is still inline (written by an older
    /// build, or not yet through [`put`]).
    fn belongs_in_a_file(&self) -> bool {
        matches!(self, StoredValue::Text(text) if text.len() > INLINE_LIMIT)
    }
}

/// The value of a cached credential as the device sent it, reading its value file if it has
/// one.
pub fn value(store: &Store, stored: &StoredCredential) -> Result<CredentialValue, StoreError> {
    match &stored.value {
        StoredValue::File { digest, .. } => {
            let bytes = store.values().get(digest)?;
            let text = String::from_utf8(bytes).map_err(|_| StoreError::ValueDamaged {
                path: store.values().dir().join(digest.hex()),
            })?;
            Ok(CredentialValue::Text(text))
        }
        inline => Ok(inline.to_value().expect("inline values convert")),
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

/// Caches `stored` at `key` (from [`key`]); a long text value goes to a value file first
/// (durable before this returns) and the record names it. This module is the only writer of
/// the `credentials` tree and of the value files.
pub fn put(
    store: &Store,
    key: impl AsRef<[u8]>,
    stored: &StoredCredential,
) -> Result<(), StoreError> {
    forget_list_of(store, key.as_ref())?;
    let StoredValue::Text(text) = &stored.value else {
        return store.insert(TreeName::Credentials, key, stored);
    };
    if !stored.value.belongs_in_a_file() {
        return store.insert(TreeName::Credentials, key, stored);
    }
    // Pinned from the file to its record, so a concurrent sweep cannot remove the file.
    let _pin = store.values().pin();
    let digest = store.values().put(text.as_bytes())?;
    let record = StoredCredential {
        name: stored.name.clone(),
        privilege: stored.privilege,
        value: StoredValue::File {
            digest,
            bytes: text.len() as u64,
        },
    };
    store.insert(TreeName::Credentials, key, &record)
}

/// Ends the cheap polls of the device whose credential `key` names, before that credential is
/// written: its users must come out of a full read again (`super::listed`).
fn forget_list_of(store: &Store, key: &[u8]) -> Result<(), StoreError> {
    let device = key
        .split(|byte| *byte == keys::SEPARATOR)
        .next()
        .unwrap_or_default();
    let device = std::str::from_utf8(device).map_err(|_| StoreError::BadKey {
        tree: TreeName::Credentials,
        key: String::from_utf8_lossy(key).into_owned(),
        expected: "a UTF-8 device id, then \\0",
    })?;
    super::listed::forget(store, device)
}

/// Removes the value files no cached credential names any more (a photo retaken, a user
/// removed by retention, a crash between a file and its record). Safe while reads run: puts
/// wait for the sweep and the sweep for them.
pub fn sweep(store: &Store) -> Result<ValuesSwept, StoreError> {
    store.values().sweep(|| {
        let mut live = std::collections::HashSet::new();
        for entry in store.scan_prefix::<StoredCredential>(TreeName::Credentials, b"") {
            if let StoredValue::File { digest, .. } = entry?.1.value {
                live.insert(digest);
            }
        }
        Ok(live)
    })
}

/// How many records [`migrate_values`] rewrites between two durability calls.
const MIGRATION_CHUNK: usize = 500;

/// Moves every inline value that belongs in a value file out of sled (a store written by an
/// older build), then sweeps. Idempotent and safe to interrupt at any point: each record is
/// rewritten only after its file is durable, a record not yet rewritten is migrated by the
/// next run, and a file whose record never got rewritten is equal to the one the next run
/// writes (or swept). Returns how many values moved. Runs once per store: after it finishes
/// it leaves a note in `meta` and later calls return 0 at once.
pub fn migrate_values(store: &Store) -> Result<usize, StoreError> {
    if store.meta::<ValuesMoved>(VALUES_MOVED)?.is_some() {
        return Ok(0);
    }
    let moved = move_inline_values(store)?;
    store.set_meta(
        VALUES_MOVED,
        &ValuesMoved {
            at_unix_ms: chrono::Utc::now().timestamp_millis(),
        },
    )?;
    store.make_durable_blocking()?;
    Ok(moved)
}

/// The `meta` note that [`migrate_values`] has finished on this store: this build and later
/// ones write long values only to value files, so later starts skip the scan of every cached
/// credential (whose tree nodes sled would then keep in memory: 3.4 MB of the steady agent's
/// heap with 10,000 users, `docs/footprint.md`). Written only after the last value moved is
/// durable, so a kill mid-migration leaves no note and the next start resumes.
const VALUES_MOVED: &[u8] = b"credential_values_moved";

/// The note's value: when the migration finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ValuesMoved {
    /// When (UTC ms).
    at_unix_ms: i64,
}

impl Record for ValuesMoved {
    const KIND: &'static str = "credential_values_moved";
    const VERSION: u32 = 1;
}

/// The scan and moves of [`migrate_values`], without its note.
fn move_inline_values(store: &Store) -> Result<usize, StoreError> {
    let mut pending = Vec::new();
    for entry in store.scan_prefix::<StoredCredential>(TreeName::Credentials, b"") {
        let (key, stored) = entry?;
        if stored.value.belongs_in_a_file() {
            pending.push(key);
        }
    }
    if pending.is_empty() {
        return Ok(0);
    }
    tracing::info!(
        values = pending.len(),
        dir = %store.values().dir().display(),
        "moving cached credential values out of the database into value files (once, after an \
         upgrade; safe to interrupt)"
    );
    for chunk in pending.chunks(MIGRATION_CHUNK) {
        for key in chunk {
            if let Some(stored) = store.get::<StoredCredential>(TreeName::Credentials, key)? {
                put(store, key, &stored)?;
            }
        }
        store.make_durable_blocking()?;
    }
    let swept = sweep(store)?;
    tracing::info!(
        moved = pending.len(),
        files = swept.kept,
        "cached credential values moved into value files"
    );
    Ok(pending.len())
}

/// Removes every cached credential of one user (retention of a long-gone user).
pub fn remove_user(store: &Store, device_id: &str, user_id: &str) -> Result<usize, StoreError> {
    let mut prefix = keys::device_user(device_id, user_id)?;
    prefix.push(keys::SEPARATOR);
    let found: Vec<Vec<u8>> = store
        .scan_prefix::<StoredCredential>(TreeName::Credentials, &prefix)
        .map(|entry| entry.map(|(key, _)| key))
        .collect::<Result<_, _>>()?;
    if !found.is_empty() {
        super::listed::forget(store, device_id)?;
    }
    for key in &found {
        store.remove::<StoredCredential>(TreeName::Credentials, key)?;
    }
    Ok(found.len())
}

/// How many large values a [`StoreSink`] writes before making them durable in one round
/// (then inserting their records): 256 photos of 8 KB are 2 MB of page cache and 256 open
/// files, and cost 257 fsyncs instead of 512.
pub const BATCH: usize = 256;

/// The read sink of the sync engine: answers `held` from the cache and caches what arrives,
/// batching the durability of large values (see the module docs). Call [`StoreSink::finish`]
/// when the read ends; a sink dropped without it finishes then and logs a failure.
pub struct StoreSink {
    store: Store,
    device_id: String,
    /// The value files written since the last round.
    pending: PendingValues,
    /// The records naming them, inserted after the round.
    records: Vec<(Vec<u8>, StoredCredential)>,
    /// Values fetched but not cached (their file was swept before its record went in).
    uncached: usize,
    /// Whether the device's listed read was forgotten before this sink's first write.
    list_forgotten: bool,
}

impl StoreSink {
    /// A sink caching `device_id`'s credentials in `store`.
    pub fn new(store: Store, device_id: &str) -> Self {
        Self {
            store,
            device_id: device_id.to_string(),
            pending: PendingValues::default(),
            records: Vec::new(),
            uncached: 0,
            list_forgotten: false,
        }
    }

    /// Whether every value this sink was given is cached, as far as [`StoreSink::finish`] has
    /// gone: a poll lets the next one skip its credential lookups only then (`super::listed`).
    pub fn all_cached(&self) -> bool {
        self.uncached == 0 && self.records.is_empty()
    }

    /// Makes the values written so far durable in one round and inserts their records.
    pub fn finish(&mut self) -> Result<(), StoreError> {
        if self.records.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let records = std::mem::take(&mut self.records);
        // Pinned from the renames to the records, so a concurrent sweep cannot remove a file.
        let _pin = self.store.values().pin();
        self.store.values().make_durable(pending)?;
        for (key, record) in records {
            if let StoredValue::File { digest, bytes } = &record.value {
                if !self.store.values().holds(digest, *bytes) {
                    // A held file swept between the write and this round: not cached, so the
                    // next read fetches the value again.
                    self.uncached += 1;
                    continue;
                }
            }
            self.store.insert(TreeName::Credentials, key, &record)?;
        }
        Ok(())
    }

    fn cache(&mut self, key: Vec<u8>, stored: StoredCredential) -> Result<(), StoreError> {
        if !self.list_forgotten {
            super::listed::forget(&self.store, &self.device_id)?;
            self.list_forgotten = true;
        }
        let StoredValue::Text(text) = &stored.value else {
            return self.store.insert(TreeName::Credentials, key, &stored);
        };
        if !stored.value.belongs_in_a_file() {
            return self.store.insert(TreeName::Credentials, key, &stored);
        }
        let digest = self
            .store
            .values()
            .write(text.as_bytes(), &mut self.pending)?;
        let record = StoredCredential {
            value: StoredValue::File {
                digest,
                bytes: text.len() as u64,
            },
            ..stored
        };
        self.records.push((key, record));
        if self.records.len() >= BATCH {
            self.finish()?;
        }
        Ok(())
    }
}

impl Drop for StoreSink {
    fn drop(&mut self) {
        if let Err(err) = self.finish() {
            tracing::warn!(device = %self.device_id, %err, "caching the last credentials of a read failed; the next read fetches them again");
        }
    }
}

impl ReadSink for StoreSink {
    fn held(&self, user_id: &str, slot: u16) -> Option<HeldCredential> {
        match get(&self.store, &self.device_id, user_id, slot) {
            Ok(held) => held.map(|stored| HeldCredential {
                card: (BackupNum(slot).kind() == CredentialKind::Card)
                    .then(|| stored.value.to_value().map(|value| value.as_text()))
                    .flatten(),
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
            .and_then(|key| self.cache(key, stored))
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
        assert_eq!(stored.to_value(), Some(CredentialValue::Number(big)));
        let text = CredentialValue::Text("TSS21(128)abc".into());
        assert_eq!(StoredValue::of(&text).to_value(), Some(text));
    }

    fn photo(n: u8) -> StoredCredential {
        StoredCredential {
            name: "Ann".into(),
            privilege: 0,
            value: StoredValue::Text(format!("{n}").repeat(4000)),
        }
    }

    #[test]
    fn long_values_live_in_value_files_and_come_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            crate::store::Store::open(&crate::store::StoreOptions::at(dir.path().join("s")))
                .unwrap()
                .store;
        put(&store, key("d", "1", 50).unwrap(), &photo(7)).unwrap();
        let card = StoredCredential {
            value: StoredValue::Number("12345".into()),
            ..photo(0)
        };
        put(&store, key("d", "1", 11).unwrap(), &card).unwrap();
        let held = get(&store, "d", "1", 50).unwrap().unwrap();
        assert!(
            matches!(held.value, StoredValue::File { bytes: 4000, .. }),
            "{held:?}"
        );
        assert_eq!(
            value(&store, &held).unwrap(),
            photo(7).value.to_value().unwrap()
        );
        assert_eq!(get(&store, "d", "1", 11).unwrap().unwrap(), card);
        assert_eq!(std::fs::read_dir(store.values().dir()).unwrap().count(), 1);
    }

    #[test]
    fn migration_moves_inline_values_out_once_and_the_sweep_keeps_what_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            crate::store::Store::open(&crate::store::StoreOptions::at(dir.path().join("s")))
                .unwrap()
                .store;
        // As an older build wrote them: inline, straight into the tree.
        for user in ["1", "2", "3"] {
            store
                .insert(
                    TreeName::Credentials,
                    key("d", user, 50).unwrap(),
                    &photo(1),
                )
                .unwrap();
        }
        put(&store, key("d", "4", 50).unwrap(), &photo(2)).unwrap();
        // A file no record names (a crash between a file and its record).
        let orphan = store.values().put(b"orphan").unwrap();
        assert_eq!(migrate_values(&store).unwrap(), 3);
        assert_eq!(migrate_values(&store).unwrap(), 0, "idempotent");
        for user in ["1", "2", "3"] {
            let held = get(&store, "d", user, 50).unwrap().unwrap();
            assert_eq!(
                value(&store, &held).unwrap(),
                photo(1).value.to_value().unwrap()
            );
        }
        assert!(store.values().get(&orphan).is_err(), "the orphan was swept");
        // Deduplicated: users 1–3 share one file, user 4 has its own.
        assert_eq!(std::fs::read_dir(store.values().dir()).unwrap().count(), 2);
        remove_user(&store, "d", "4").unwrap();
        assert_eq!(sweep(&store).unwrap().removed, 1);
        let held = get(&store, "d", "1", 50).unwrap().unwrap();
        assert!(value(&store, &held).is_ok());
    }

    #[test]
    fn golden_bytes_of_the_values_moved_note_version_1() {
        let note = ValuesMoved { at_unix_ms: 3 };
        // tag 0 | kind | version 1 | zigzag varint 3
        let mut golden = vec![0, 23];
        golden.extend_from_slice(b"credential_values_moved");
        golden.extend_from_slice(&[1, 6]);
        assert_eq!(crate::store::envelope::encode(&note).unwrap(), golden);
        assert_eq!(
            crate::store::envelope::decode::<ValuesMoved>(&golden).unwrap(),
            note
        );
    }

    #[test]
    fn a_store_migrated_once_is_not_scanned_again() {
        let (_dir, store) = crate::store::test_support::temp_store();
        assert_eq!(migrate_values(&store).unwrap(), 0);
        assert!(store.meta::<ValuesMoved>(VALUES_MOVED).unwrap().is_some());
        // An inline value written after the note (only an older build could) stays inline:
        // the note is what spares every later start the scan.
        store
            .insert(TreeName::Credentials, key("d", "1", 50).unwrap(), &photo(1))
            .unwrap();
        assert_eq!(migrate_values(&store).unwrap(), 0);
        assert!(get(&store, "d", "1", 50)
            .unwrap()
            .unwrap()
            .value
            .belongs_in_a_file());
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
