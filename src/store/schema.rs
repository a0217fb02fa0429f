//! The store's schema version: which key layouts and record versions the whole store follows.
//!
//! Record envelopes version single values; the schema version covers what envelopes cannot,
//! such as a tree's key layout. It is stored in the meta tree under `schema_version` as a
//! plain 4-byte big-endian integer (not an envelope), so that every build, however the
//! envelope evolves, can read it and refuse a store that is newer than itself.
//!
//! At open: absent → a new store, write the current version; equal → nothing to do; newer →
//! refuse (never salvage: the data is fine, this build is too old); older → run the migration
//! steps in order, recording the version after each so an interrupted migration resumes.

use super::error::StoreError;
use super::trees::TreeName;
use super::Store;

/// The schema version this build reads and writes.
pub const CURRENT_SCHEMA: u32 = 1;

/// The meta key holding the schema version.
pub const SCHEMA_KEY: &[u8] = b"schema_version";

/// One migration step: rewrites the store from version N to N + 1.
pub(crate) type MigrationStep = fn(&Store) -> Result<(), StoreError>;

/// `MIGRATIONS[i]` migrates schema `i + 1` to `i + 2`. Empty: there has only been version 1.
const MIGRATIONS: &[MigrationStep] = &[];

/// What the meta tree says about the schema.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum StoredSchema {
    /// No version recorded.
    Absent,
    /// A version was recorded.
    Version(u32),
    /// Something is stored under the key but it is not a version number.
    Unreadable(usize),
}

/// Reads the recorded schema version.
pub(crate) fn stored(store: &Store) -> Result<StoredSchema, StoreError> {
    let value = store
        .tree(TreeName::Meta)
        .get(SCHEMA_KEY)
        .map_err(StoreError::sled("read schema version"))?;
    Ok(match value {
        None => StoredSchema::Absent,
        Some(bytes) => match <[u8; 4]>::try_from(bytes.as_ref()) {
            Ok(raw) => StoredSchema::Version(u32::from_be_bytes(raw)),
            Err(_) => StoredSchema::Unreadable(bytes.len()),
        },
    })
}

/// Records `version` as the store's schema version and makes it durable.
pub(crate) fn record(store: &Store, version: u32) -> Result<(), StoreError> {
    store
        .tree(TreeName::Meta)
        .insert(SCHEMA_KEY, &version.to_be_bytes())
        .map_err(StoreError::sled("write schema version"))?;
    store.make_durable_blocking()
}

/// Brings a store at schema `found` up to [`CURRENT_SCHEMA`], or refuses a newer one.
pub(crate) fn upgrade(store: &Store, found: u32) -> Result<(), StoreError> {
    migrate(store, found, CURRENT_SCHEMA, MIGRATIONS)
}

fn migrate(
    store: &Store,
    found: u32,
    target: u32,
    steps: &[MigrationStep],
) -> Result<(), StoreError> {
    if found > target {
        return Err(StoreError::SchemaTooNew {
            path: store.path().to_path_buf(),
            found,
            supported: target,
        });
    }
    for version in found..target {
        let step = version
            .checked_sub(1)
            .and_then(|index| steps.get(index as usize))
            .ok_or_else(|| StoreError::NoMigration {
                path: store.path().to_path_buf(),
                found: version,
                current: target,
            })?;
        tracing::info!(
            from = version,
            to = version + 1,
            "migrating the store schema"
        );
        step(store)?;
        record(store, version + 1)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;

    fn mark(store: &Store, name: &'static [u8]) -> Result<(), StoreError> {
        let meta = store.tree(TreeName::Meta);
        // A step must see the previous step's result: order matters.
        let steps_done = meta.len();
        meta.insert(name, &(steps_done as u32).to_be_bytes())
            .map_err(StoreError::sled("test step"))?;
        Ok(())
    }

    fn step_one_to_two(store: &Store) -> Result<(), StoreError> {
        mark(store, b"step-1-2")
    }

    fn step_two_to_three(store: &Store) -> Result<(), StoreError> {
        mark(store, b"step-2-3")
    }

    #[test]
    fn migration_steps_run_in_order_and_record_each_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreOptions::at(dir.path().join("s")))
            .unwrap()
            .store;
        migrate(&store, 1, 3, &[step_one_to_two, step_two_to_three]).unwrap();
        assert_eq!(stored(&store).unwrap(), StoredSchema::Version(3));
        let meta = store.tree(TreeName::Meta);
        let first = meta.get(b"step-1-2").unwrap().unwrap();
        let second = meta.get(b"step-2-3").unwrap().unwrap();
        assert!(first.as_ref() < second.as_ref(), "steps ran out of order");
    }

    #[test]
    fn a_missing_step_is_an_error_not_a_silent_skip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreOptions::at(dir.path().join("s")))
            .unwrap()
            .store;
        let err = migrate(&store, 1, 3, &[step_one_to_two]).unwrap_err();
        assert!(matches!(err, StoreError::NoMigration { found: 2, .. }));
        assert_eq!(stored(&store).unwrap(), StoredSchema::Version(2));
    }
}
