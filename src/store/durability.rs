//! The store's durability call: the point after which a write survives a crash *and* a power
//! cut.
//!
//! **Rule: nothing that depends on a write (a device reply, an MQTT reply, an upstream
//! acknowledgement, a log line claiming success, deleting the source of the data) may happen
//! before [`Store::make_durable`] or [`Store::make_durable_blocking`] has returned `Ok` for a
//! call that started after the write.**
//!
//! sled's own `flush()` is not enough on Linux: sled 0.34 writes its log with
//! `sync_file_range`, which survives a process crash but neither flushes the disk's write
//! cache nor persists the file size (sled issue #1452). So after sled's flush the store
//! `fsync`s the `db` file itself (any descriptor of the file will do; fsync acts on the inode)
//! and the store directory (so files sled created, such as snapshots, keep their names).
//!
//! A failed fsync poisons the store's durability for the rest of the process: after such a
//! failure Linux may already have dropped the dirty pages, so a retried fsync could report
//! success for data that is gone. Restarting lets sled recover from what is really on disk.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::error::{DurabilityError, StoreError};
use super::Store;

/// What the store flushes and fsyncs, and whether that has ever failed.
pub(crate) struct Durability {
    db: sled::Db,
    data_file: SyncedPath,
    directory: SyncedPath,
    first_failure: Mutex<Option<DurabilityError>>,
    /// Held for a whole flush-and-fsync round, so rounds run one after another and complete in
    /// the order they started (what [`WriteMark`] relies on).
    round: Mutex<()>,
    started: AtomicU64,
    completed: AtomicU64,
}

/// A point in the store's write history, taken right after some writes: those writes are
/// durable once a flush-and-fsync round that *started after* the mark has completed.
///
/// It exists so that an owner can tell, without calling [`Store::make_durable`] itself,
/// whether writes it was told about are durable yet: the outbox keeps events committed by
/// other modules hidden from the forwarder until then (durable, then forwarded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct WriteMark(u64);

/// An open handle kept only to fsync it, with its path for error messages.
struct SyncedPath {
    file: File,
    path: PathBuf,
}

impl SyncedPath {
    fn open(path: PathBuf) -> std::io::Result<SyncedPath> {
        Ok(SyncedPath {
            file: File::open(&path)?,
            path,
        })
    }

    fn fsync(&self) -> Result<(), DurabilityError> {
        self.file
            .sync_all()
            .map_err(|error| DurabilityError::Fsync {
                path: self.path.clone(),
                message: error.to_string(),
            })
    }
}

impl Durability {
    /// Opens the handles used for fsync. `store_dir` is the directory sled was opened on.
    pub(crate) fn new(db: sled::Db, store_dir: &Path) -> std::io::Result<Durability> {
        Ok(Durability {
            db,
            data_file: SyncedPath::open(store_dir.join("db"))?,
            directory: SyncedPath::open(store_dir.to_path_buf())?,
            first_failure: Mutex::new(None),
            round: Mutex::new(()),
            started: AtomicU64::new(0),
            completed: AtomicU64::new(0),
        })
    }

    /// Makes every write that completed before this call durable: sled flush, then fsync of
    /// the data file and of the directory. Refuses once any earlier attempt has failed.
    pub(crate) fn make_durable(&self) -> Result<(), DurabilityError> {
        let _round = self.round.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(earlier) = self.earlier_failure() {
            return Err(DurabilityError::Poisoned(Box::new(earlier)));
        }
        // Counted before sled's flush starts: a write that completed before a mark equal to
        // this count is covered by this round.
        self.started.fetch_add(1, Ordering::SeqCst);
        let outcome = self.flush_and_fsync();
        match &outcome {
            Ok(()) => {
                self.completed.fetch_add(1, Ordering::SeqCst);
            }
            Err(error) => {
                let mut first = self.first_failure.lock().unwrap_or_else(|e| e.into_inner());
                first.get_or_insert_with(|| error.clone());
            }
        }
        outcome
    }

    /// How many flush-and-fsync rounds have succeeded. Rounds run one at a time and a failed
    /// round poisons every later one, so this is also the number of the last round completed.
    pub(crate) fn completed(&self) -> u64 {
        self.completed.load(Ordering::SeqCst)
    }

    /// How many rounds have started (a round in progress included).
    fn started(&self) -> u64 {
        self.started.load(Ordering::SeqCst)
    }

    fn earlier_failure(&self) -> Option<DurabilityError> {
        self.first_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn flush_and_fsync(&self) -> Result<(), DurabilityError> {
        self.db
            .flush()
            .map_err(|error| DurabilityError::Flush(error.to_string()))?;
        super::retired::release_retired();
        self.data_file.fsync()?;
        self.directory.fsync()
    }
}

impl Store {
    /// Waits until every write made before this call is durable (flushed and fsynced), sharing
    /// one flush and fsync with the other callers that asked at about the same time.
    ///
    /// This is the call tokio tasks use before acknowledging anything: nothing that depends on
    /// the writes may be acknowledged before it returns `Ok`. The fsync runs on the store's
    /// committer thread, so the runtime is never blocked.
    pub async fn make_durable(&self) -> Result<(), StoreError> {
        let answer = self.inner.committer.request();
        answer
            .await
            .map_err(|_| DurabilityError::CommitterStopped)?
            .map_err(StoreError::from)
    }

    /// Makes every write made before this call durable on the calling thread, without group
    /// commit. For CLI tools and shutdown paths that have no runtime; async code must use
    /// [`Store::make_durable`] instead, which does not block a runtime thread.
    pub fn make_durable_blocking(&self) -> Result<(), StoreError> {
        self.inner
            .durability
            .make_durable()
            .map_err(StoreError::from)
    }

    /// How many flush-and-fsync rounds have succeeded since open. With group commit this is
    /// smaller than the number of durability requests; `status` and the metrics show it.
    pub fn durable_flushes(&self) -> u64 {
        self.inner.durability.completed()
    }

    /// Marks the present point of the write history; take it *after* the writes it stands for
    /// have completed (their transaction returned).
    pub fn mark_writes(&self) -> WriteMark {
        WriteMark(self.inner.durability.started())
    }

    /// Whether every write completed before `mark` was taken is durable: a round that started
    /// after the mark has completed.
    pub fn is_durable(&self, mark: WriteMark) -> bool {
        self.inner.durability.completed() > mark.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_fsync_poisons_every_later_attempt() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        // fsync of /dev/null fails with EINVAL, standing in for a failing disk.
        let durability = Durability {
            db,
            data_file: SyncedPath::open(PathBuf::from("/dev/null")).unwrap(),
            directory: SyncedPath::open(std::env::temp_dir()).unwrap(),
            first_failure: Mutex::new(None),
            round: Mutex::new(()),
            started: AtomicU64::new(0),
            completed: AtomicU64::new(0),
        };
        let first = durability.make_durable().unwrap_err();
        assert!(
            matches!(&first, DurabilityError::Fsync { path, .. } if path == Path::new("/dev/null")),
            "{first}"
        );
        let later = durability.make_durable().unwrap_err();
        assert!(
            matches!(&later, DurabilityError::Poisoned(cause) if matches!(**cause, DurabilityError::Fsync { .. })),
            "{later}"
        );
        assert_eq!(durability.completed(), 0);
    }
}
