//! Typed reads and writes: callers hand over and get back [`Record`] values; the envelope and
//! sled's byte API stay inside the store.

use super::envelope::{self, Record};
use super::error::StoreError;
use super::trees::TreeName;
use super::Store;

impl Store {
    /// Reads the value at `key`, upgrading an older record version if needed.
    pub fn get<R: Record>(
        &self,
        tree: TreeName,
        key: impl AsRef<[u8]>,
    ) -> Result<Option<R>, StoreError> {
        let key = key.as_ref();
        let value = self.tree(tree).get(key).map_err(StoreError::sled("get"))?;
        value.map(|bytes| decode(tree, key, &bytes)).transpose()
    }

    /// Writes `value` at `key`, replacing what was there. Not yet durable: call
    /// [`Store::make_durable`] before acknowledging anything that depends on it.
    pub fn insert<R: Record>(
        &self,
        tree: TreeName,
        key: impl AsRef<[u8]>,
        value: &R,
    ) -> Result<(), StoreError> {
        let key = key.as_ref();
        let bytes = encode(tree, key, value)?;
        let inserted = self.tree(tree).insert(key, bytes);
        self.wrote(tree);
        inserted.map_err(StoreError::sled("insert"))?;
        Ok(())
    }

    /// Removes the value at `key` and returns it. (The buffer of device users is never
    /// removed from; this is for queues such as the outbox and for expiring nonces.)
    pub fn remove<R: Record>(
        &self,
        tree: TreeName,
        key: impl AsRef<[u8]>,
    ) -> Result<Option<R>, StoreError> {
        let key = key.as_ref();
        let removed = self.tree(tree).remove(key);
        self.wrote(tree);
        let old = removed.map_err(StoreError::sled("remove"))?;
        old.map(|bytes| decode(tree, key, &bytes)).transpose()
    }

    /// Every entry whose key starts with `prefix`, in key order (an empty prefix visits the
    /// whole tree). Each item fails on its own, so one damaged value does not hide the rest.
    /// Read key by key (see [`super::walk`]), so a full scan does not leave the tree in memory.
    pub fn scan_prefix<R: Record>(
        &self,
        tree: TreeName,
        prefix: impl AsRef<[u8]>,
    ) -> impl Iterator<Item = Result<(Vec<u8>, R), StoreError>> {
        self.walk(tree, prefix.as_ref()).map(move |entry| {
            let (key, bytes) = entry.map_err(StoreError::sled("scan"))?;
            let value = decode(tree, &key, &bytes)?;
            Ok((key.to_vec(), value))
        })
    }

    /// Reads the single value called `name` in the `meta` tree (for example the upstream
    /// mapping cursor).
    pub fn meta<R: Record>(&self, name: &[u8]) -> Result<Option<R>, StoreError> {
        self.get(TreeName::Meta, name)
    }

    /// Writes the single value called `name` in the `meta` tree. The store is the tree's only
    /// writer: other modules keep their single values through this, and the schema version's
    /// name is refused, so nothing can overwrite it by accident. Not yet durable, like
    /// [`Store::insert`].
    pub fn set_meta<R: Record>(&self, name: &[u8], value: &R) -> Result<(), StoreError> {
        if name == super::schema::SCHEMA_KEY {
            return Err(StoreError::BadKey {
                tree: TreeName::Meta,
                key: String::from_utf8_lossy(name).into_owned(),
                expected:
                    "a name other than the schema version, which only the schema check writes",
            });
        }
        self.insert(TreeName::Meta, name, value)
    }

    /// Removes the single value called `name` from the `meta` tree (a note that is no longer
    /// true, such as an owed punch backfill); the schema version cannot be removed.
    pub fn remove_meta<R: Record>(&self, name: &[u8]) -> Result<Option<R>, StoreError> {
        if name == super::schema::SCHEMA_KEY {
            return Err(StoreError::BadKey {
                tree: TreeName::Meta,
                key: String::from_utf8_lossy(name).into_owned(),
                expected: "a name other than the schema version, which only the schema check owns",
            });
        }
        self.remove(TreeName::Meta, name)
    }

    /// A number larger than every number this store handed out before, also across restarts
    /// and crashes (sled persists the counter ahead of use). Use it with
    /// [`crate::store::keys::sequence`] for time-ordered keys. Never call it inside a
    /// transaction closure: sled may block there (sled issue #1139); take it before.
    pub fn next_sequence(&self) -> Result<u64, StoreError> {
        self.inner
            .db
            .generate_id()
            .map_err(StoreError::sled("generate sequence number"))
    }
}

/// Wraps `value` in its envelope, naming the tree and key if that fails.
pub(crate) fn encode<R: Record>(
    tree: TreeName,
    key: &[u8],
    value: &R,
) -> Result<Vec<u8>, StoreError> {
    envelope::encode(value).map_err(|error| StoreError::value(tree, key, error))
}

/// Unwraps a stored value, naming the tree and key if that fails.
pub(crate) fn decode<R: Record>(tree: TreeName, key: &[u8], bytes: &[u8]) -> Result<R, StoreError> {
    envelope::decode(bytes).map_err(|error| StoreError::value(tree, key, error))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::keys;
    use crate::store::test_support::{item, temp_store, Item};
    use crate::store::{EnvelopeError, StoreOptions};

    #[test]
    fn insert_get_remove_round_trip() {
        let (_dir, store) = temp_store();
        let key = keys::device_user("dev1", "7").unwrap();
        assert_eq!(store.get::<Item>(TreeName::Buffer, &key).unwrap(), None);
        store
            .insert(TreeName::Buffer, &key, &item("ann", 1))
            .unwrap();
        assert_eq!(
            store.get::<Item>(TreeName::Buffer, &key).unwrap(),
            Some(item("ann", 1))
        );
        assert_eq!(
            store.remove::<Item>(TreeName::Buffer, &key).unwrap(),
            Some(item("ann", 1))
        );
        assert_eq!(store.get::<Item>(TreeName::Buffer, &key).unwrap(), None);
    }

    #[test]
    fn trees_are_separate_namespaces() {
        let (_dir, store) = temp_store();
        store.insert(TreeName::Buffer, b"k", &item("a", 1)).unwrap();
        assert_eq!(store.get::<Item>(TreeName::Snapshots, b"k").unwrap(), None);
    }

    #[test]
    fn scan_prefix_visits_one_device_in_key_order() {
        let (_dir, store) = temp_store();
        for (device, user) in [("dev1", "b"), ("dev10", "a"), ("dev1", "a"), ("dev2", "a")] {
            let key = keys::device_user(device, user).unwrap();
            store
                .insert(TreeName::Buffer, key, &item(&format!("{device}/{user}"), 0))
                .unwrap();
        }
        let prefix = keys::device_prefix("dev1").unwrap();
        let names: Vec<String> = store
            .scan_prefix::<Item>(TreeName::Buffer, prefix)
            .map(|entry| entry.unwrap().1.name)
            .collect();
        assert_eq!(names, ["dev1/a", "dev1/b"]);
    }

    #[test]
    fn a_damaged_value_names_tree_key_and_kind() {
        let (_dir, store) = temp_store();
        store
            .tree(TreeName::Devices)
            .insert(b"d\x001", &[9u8][..])
            .unwrap();
        let err = store.get::<Item>(TreeName::Devices, b"d\x001").unwrap_err();
        let message = err.to_string();
        assert!(
            matches!(
                err,
                StoreError::Value {
                    tree: TreeName::Devices,
                    source: EnvelopeError::FutureVersion { found: 9, .. },
                    ..
                }
            ),
            "{message}"
        );
        assert!(message.contains("'devices'"), "{message}");
        assert!(message.contains("d\\x001"), "{message}");
        assert!(
            message.contains("test_item record has version 9"),
            "{message}"
        );
    }

    #[test]
    fn meta_values_round_trip_and_the_schema_version_is_protected() {
        let (_dir, store) = temp_store();
        assert_eq!(store.meta::<Item>(b"cursor").unwrap(), None);
        store.set_meta(b"cursor", &item("c", 1)).unwrap();
        assert_eq!(store.meta::<Item>(b"cursor").unwrap(), Some(item("c", 1)));
        assert!(store
            .set_meta(crate::store::schema::SCHEMA_KEY, &item("x", 0))
            .is_err());
    }

    #[test]
    fn sequence_numbers_increase_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions::at(dir.path().join("store"));
        let before = {
            let store = Store::open(&options).unwrap().store;
            let first = store.next_sequence().unwrap();
            let second = store.next_sequence().unwrap();
            assert!(second > first);
            second
        };
        let store = crate::store::test_support::reopen(&options);
        assert!(store.next_sequence().unwrap() > before);
    }

    #[test]
    fn values_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions::at(dir.path().join("store"));
        {
            let store = Store::open(&options).unwrap().store;
            store
                .insert(TreeName::Outbox, keys::sequence(1), &item("e", 3))
                .unwrap();
            store.make_durable_blocking().unwrap();
        }
        let store = crate::store::test_support::reopen(&options);
        assert_eq!(
            store
                .get::<Item>(TreeName::Outbox, keys::sequence(1))
                .unwrap(),
            Some(item("e", 3))
        );
    }
}
