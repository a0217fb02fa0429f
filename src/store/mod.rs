//! The one module that owns sled.
//!
//! Everything the agent must not lose (device users, the outbox, audit…) lives here, behind a
//! small typed API: a fixed set of [trees](TreeName), documented key layouts, values as
//! postcard inside a [tagged, versioned envelope](envelope), multi-tree [transactions](Store::transaction),
//! an explicit [durability call](Store::make_durable) with group commit, a checked
//! [schema version](schema), and [salvage] of a damaged directory at open.
//!
//! # Key layout conventions
//!
//! - Integers in keys are **big-endian**, so byte order is numeric order and range/prefix
//!   scans come out sorted.
//! - Composite keys join their parts with a **`\0` separator** (`device_id \0 user_id`); ids
//!   may not be empty or contain NUL ([`keys`] enforces it). A device's prefix ends with the
//!   separator, so `dev1` never matches `dev10`.
//! - Time-ordered trees (alarms, audit, outbox, dead letters) key on a **monotonic sequence
//!   number** from [`Store::next_sequence`] (sled's `generate_id`, which never repeats or goes
//!   back across restarts), big-endian, so iteration order is insertion order. Wall time is
//!   kept inside the value, never relied on for order.
//! - Build keys with the [`keys`] helpers, never by hand.
//!
//! # Trees
//!
//! | tree           | key                                  | value                                         |
//! |----------------|--------------------------------------|-----------------------------------------------|
//! | `meta`         | ASCII name, e.g. `schema_version`    | `schema_version`: raw u32 BE (see [`schema`]); `store_epoch`: [`StoreEpoch`]; other names: envelopes |
//! | `alarms`       | sequence u64 BE                      | [`Alarm`]                                     |
//! | `devices`      | `device_id`                          | what the agent knows about the device         |
//! | `snapshots`    | `device_id \0 user_id`               | the user as of the device's last complete read |
//! | `buffer`       | `device_id \0 user_id`               | the durable copy of the device user (never deleted) |
//! | `mappings`     | `device_id \0 user_id`               | link to the upstream person                   |
//! | `conflicts`    | `device_id \0 user_id`               | open device/upstream disagreement             |
//! | `audit`        | sequence u64 BE                      | audit entry (what was done, by whom, why)     |
//! | `outbox`       | sequence u64 BE                      | event to forward upstream, with its idempotency key |
//! | `dead_letters` | sequence u64 BE (from the outbox)    | event given up on, with the last error        |
//! | `punches`      | `device_id \0` punch key (sn/user/time/mode/inout) | attendance punch as read from the device (idempotent key) |
//! | `nonces`       | nonce bytes                          | expiry of an accepted signed command          |
//! | `alerts`       | sequence u64 BE                      | must-deliver MQTT alert until the broker echoes it |
//! | `credentials`  | `device_id \0 user_id \0` slot u16 BE | credential value as last fetched (sync engine's cache); a long value is a [`ValueFiles`] digest |
//! | `history`      | `device_id \0` generation u64 BE     | one entry per complete read: counts, ids added/missing/changed |
//! | `sync_state`   | `device_id`                          | read generation and last complete read of the device |
//! | `catch_up`     | `device_id`                          | since which read the upstream is behind (outbox was full) |
//! | `quarantine`   | `device_id \0` sequence u64 BE       | a record a device sent that cannot be read, raw JSON kept |
//! | `held_events`  | `device_id \0 user_id`               | `user_missing` event of a mass disappearance, held for an admin |
//! | `esl_desired`  | `person:<id>` / `space:<id>` / `room:<id>` | shelf-label article the upstream wants (`crate::esl`) |
//! | `esl_owned`    | `article_id`                         | ownership ledger: articles the agent created or adopted |
//! | `esl_outbox`   | sequence (u64 BE)                    | pending shelf-label push intent (a re-key saga is one) |
//! | `esl_pool`     | person id                            | the person's persistent `POOL-` article id |
//! | `listed_reads` | `device_id`                          | digest of the last complete read's list, while a poll may name it (`crate::sync`) |
//!
//! Every value except `meta/schema_version` is an [`envelope`] around a type implementing
//! [`Record`]; the modules that own those types declare them next to their logic. Each tree
//! has one writer, named on its [`TreeName`] variant; other modules read, or ask the writer.
//!
//! # Durability
//!
//! Writes are not durable until [`Store::make_durable`] (async, group commit) or
//! [`Store::make_durable_blocking`] returns; nothing may be acknowledged before that. sled's
//! own flush is not enough: on Linux it uses `sync_file_range`, which survives a process
//! crash but not a power cut (sled issue #1452), so the store also fsyncs the `db` file and
//! the store directory.

mod alarm;
mod durability;
pub mod envelope;
mod epoch;
mod error;
mod group_commit;
pub mod keys;
mod open;
mod options;
mod prepared;
pub(crate) mod recompress;
mod retired;
pub mod salvage;
pub mod schema;
mod trees;
mod txn;
mod typed;
pub mod values;
mod walk;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use alarm::{Alarm, AlarmKind};
pub use envelope::{EnvelopeError, Record};
pub use epoch::{EpochCause, StoreEpoch};
pub use error::{DurabilityError, StoreError};
pub use keys::KeyError;
pub use open::Opened;
pub use options::{StoreOptions, COMPRESSION_LEVEL};
pub use prepared::Prepared;
pub use salvage::SalvageReport;
pub use trees::TreeName;
pub use txn::{Tx, TxError};
pub use values::{PendingValues, ValueDigest, ValueFiles, ValuesSwept};

use durability::Durability;
pub use durability::WriteMark;
use group_commit::GroupCommitter;

/// The directory inside the store directory that holds [`ValueFiles`].
pub const VALUES_DIR: &str = "values";

/// A handle to the open store. Cheap to clone; all clones share one sled database, one
/// committer thread and one set of fsync handles. The last clone to go stops the committer
/// and lets sled flush and close.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

/// Field order matters: the committer (which uses `durability`) stops before sled closes.
struct Inner {
    committer: GroupCommitter,
    durability: Arc<Durability>,
    trees: Vec<sled::Tree>,
    db: sled::Db,
    path: PathBuf,
    values: ValueFiles,
    /// Completed write calls per tree (by [`TreeName::index`]), see [`Store::writes`].
    writes: Vec<AtomicU64>,
}

impl Store {
    /// Wraps an open sled database: opens every tree and starts the committer thread.
    fn from_db(
        db: sled::Db,
        path: &Path,
        group_commit_window: Duration,
    ) -> Result<Store, StoreError> {
        let trees = TreeName::ALL
            .iter()
            .map(|name| db.open_tree(name.as_str()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(StoreError::sled("open trees"))?;
        let io_error = |source| StoreError::OpenIo {
            path: path.to_path_buf(),
            source,
        };
        let durability = Arc::new(Durability::new(db.clone(), path).map_err(io_error)?);
        let committer = GroupCommitter::start(Arc::clone(&durability), group_commit_window)
            .map_err(io_error)?;
        let values = ValueFiles::open(path.join(VALUES_DIR))?;
        Ok(Store {
            inner: Arc::new(Inner {
                committer,
                durability,
                trees,
                db,
                path: path.to_path_buf(),
                values,
                writes: TreeName::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            }),
        })
    }

    /// The store directory.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Bytes the store occupies on disk, as sled counts them (watch it: sled reclaims space
    /// poorly, see the research notes).
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.inner
            .db
            .size_on_disk()
            .map_err(StoreError::sled("size on disk"))
    }

    /// The large values kept beside sled (credential photos and templates): see [`values`].
    pub fn values(&self) -> &ValueFiles {
        &self.inner.values
    }

    /// How many write calls (inserts, removes, transactions declaring the tree) have finished
    /// on `tree` since the store was opened. Something derived from a whole tree (the buffer
    /// counts `status` shows every 5 s) is recomputed only when this moved: read it *before*
    /// deriving, and a write that lands meanwhile moves it again, so nothing stale is kept.
    pub fn writes(&self, tree: TreeName) -> u64 {
        self.inner.writes[tree.index()].load(Ordering::SeqCst)
    }

    /// Counts a finished write call on `tree` (after it returned, committed or not).
    fn wrote(&self, tree: TreeName) {
        self.inner.writes[tree.index()].fetch_add(1, Ordering::SeqCst);
    }

    /// The raw entries of `tree` under `prefix`, read key by key (see [`walk`]): how the
    /// store's owners read a whole tree without sled keeping it in memory.
    pub(crate) fn walk(&self, tree: TreeName, prefix: &[u8]) -> walk::Walk {
        walk::Walk::new(self.tree(tree), prefix)
    }

    /// The open handle of one tree.
    pub(crate) fn tree(&self, name: TreeName) -> &sled::Tree {
        &self.inner.trees[name.index()]
    }
}

/// Helpers shared by the store's unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use serde::{Deserialize, Serialize};

    use super::{Record, Store, StoreOptions};

    /// A small record for exercising the typed API.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub(crate) struct Item {
        pub(crate) name: String,
        pub(crate) count: u32,
    }

    impl Record for Item {
        const KIND: &'static str = "test_item";
        const VERSION: u32 = 1;
    }

    /// An item called `name`.
    pub(crate) fn item(name: &str, count: u32) -> Item {
        Item {
            name: name.into(),
            count,
        }
    }

    /// A fresh store in a temporary directory (kept alive by the returned guard).
    pub(crate) fn temp_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = Store::open(&StoreOptions::at(dir.path().join("store")))
            .expect("open a fresh store")
            .store;
        (dir, store)
    }

    /// Opens the store at `options` again after a handle was dropped. sled releases its file
    /// lock from a background thread shortly after the drop, so on a loaded machine the first
    /// attempts may find it still held; they are retried for up to 10 s.
    pub(crate) fn reopen(options: &StoreOptions) -> Store {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match Store::open(options) {
                Err(super::StoreError::AlreadyInUse { .. })
                    if std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => return other.expect("reopen the store").store,
            }
        }
    }
}
