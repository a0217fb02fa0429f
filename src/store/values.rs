//! Large values kept beside sled instead of inside it: one file per value, named by the
//! SHA-256 of its bytes, in the store's `values/` directory.
//!
//! Why: sled keeps every value it has touched in its page cache whatever `cache_capacity`
//! says, and values above its blob threshold become files it never fsyncs. Credential photos
//! and templates (8–40 KB each, tens of thousands of them) made the store 150 MB on disk and
//! the agent 80–240 MB resident. Here a value costs one file and no memory once written; sled
//! keeps a small record naming the file.
//!
//! Durability comes in two steps so that a read of 10,000 photos does not pay two fsyncs per
//! photo: [`ValueFiles::write`] only writes a temporary file (no fsync) and adds it to a
//! [`PendingValues`] batch; [`ValueFiles::make_durable`] then makes the whole batch durable in
//! one round — writeback started for every file, each file fsynced, renamed to its digest, and
//! the directory fsynced **once** — and only after that may the records naming the values be
//! inserted. A file carries its digest name only once its bytes are durable, and the records
//! that name it are inserted after the directory fsync, so a record made durable by the
//! store's ordinary durability call ([`crate::store::Store::make_durable`]) never names a file
//! a power cut lost. [`ValueFiles::put`] is the one-value round. Equal values share one file
//! (deduplication).
//!
//! Collection is mark and sweep ([`ValueFiles::sweep`]): the owner of the records passes every
//! digest still named, and files named by none are removed, except this process's temporary
//! files (a batch still being written). The round holds a shared pin ([`ValueFiles::pin`])
//! from its renames until its records are inserted, and the sweep holds the pin exclusively
//! from its mark to its last removal, so a sweep never removes a value whose record is being
//! written.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::error::StoreError;

/// The SHA-256 of a value's bytes: its file name (lower-case hex) and its identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ValueDigest(pub [u8; 32]);

impl ValueDigest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> ValueDigest {
        ValueDigest(Sha256::digest(bytes).into())
    }

    /// The file name: 64 lower-case hex digits.
    pub fn hex(&self) -> String {
        self.0.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    fn parse(name: &str) -> Option<ValueDigest> {
        if name.len() != 64 {
            return None;
        }
        let mut digest = [0u8; 32];
        for (i, byte) in digest.iter_mut().enumerate() {
            *byte = u8::from_str_radix(name.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(ValueDigest(digest))
    }
}

/// The `values/` directory of one store.
pub struct ValueFiles {
    dir: PathBuf,
    /// Shared by puts (file written → record inserted), exclusive for a sweep.
    pin: RwLock<()>,
    /// Makes temporary names unique within the process.
    sequence: AtomicU64,
}

/// What a sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ValuesSwept {
    /// Value files kept (named by a record).
    pub kept: usize,
    /// Value files removed (named by no record), and leftover temporary files.
    pub removed: usize,
}

impl ValueFiles {
    /// Opens (creating) `dir`, removing temporary files a crash left behind.
    pub(crate) fn open(dir: PathBuf) -> Result<ValueFiles, StoreError> {
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let path = entry.map_err(io(&dir))?.path();
            if path.extension().is_some_and(|ext| ext == "tmp") {
                std::fs::remove_file(&path).map_err(io(&path))?;
            }
        }
        Ok(ValueFiles {
            dir,
            pin: RwLock::new(()),
            sequence: AtomicU64::new(0),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Held by a writer from [`ValueFiles::put`] until the record naming the value is
    /// inserted, so that a concurrent sweep cannot remove the value in between.
    pub fn pin(&self) -> RwLockReadGuard<'_, ()> {
        self.pin
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Stores `bytes` durably (see the module docs) and returns their digest; a value already
    /// held is not written again. Call it under [`ValueFiles::pin`].
    pub fn put(&self, bytes: &[u8]) -> Result<ValueDigest, StoreError> {
        let mut pending = PendingValues::default();
        let digest = self.write(bytes, &mut pending)?;
        self.make_durable(pending)?;
        Ok(digest)
    }

    /// Writes `bytes` to a temporary file **without** an fsync and adds it to `pending`; a
    /// value already held is not written again. The value may be named by a record only after
    /// [`ValueFiles::make_durable`] has returned for `pending`.
    pub fn write(
        &self,
        bytes: &[u8],
        pending: &mut PendingValues,
    ) -> Result<ValueDigest, StoreError> {
        let digest = ValueDigest::of(bytes);
        pending.values += 1;
        if self.holds(&digest, bytes.len() as u64) {
            return Ok(digest);
        }
        let temporary = self.dir.join(format!(
            "{}.{}.{}.tmp",
            digest.hex(),
            std::process::id(),
            self.sequence.fetch_add(1, Ordering::Relaxed)
        ));
        let written = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temporary)?;
            file.write_all(bytes)?;
            Ok(file)
        })();
        match written {
            Ok(file) => {
                pending.files.push(PendingFile {
                    file,
                    temporary,
                    path: self.path(&digest),
                });
                Ok(digest)
            }
            Err(source) => {
                let _ = std::fs::remove_file(&temporary);
                Err(io(&temporary)(source))
            }
        }
    }

    /// Makes every value of `pending` durable in one round: writeback started for every file,
    /// each file fsynced and renamed to its digest, then the directory fsynced once (also for
    /// a batch of values already held, whose rename an earlier process may not have made
    /// durable). Call it under [`ValueFiles::pin`] and insert the records naming the values
    /// after it returns, still pinned.
    pub fn make_durable(&self, pending: PendingValues) -> Result<(), StoreError> {
        if pending.values == 0 {
            return Ok(());
        }
        for file in &pending.files {
            start_writeback(&file.file);
        }
        let synced = sync_concurrently(&pending.files);
        let mut failed = None;
        for (file, synced) in pending.files.iter().zip(synced) {
            let renamed = synced.and_then(|()| std::fs::rename(&file.temporary, &file.path));
            if let Err(source) = renamed {
                let _ = std::fs::remove_file(&file.temporary);
                failed.get_or_insert_with(|| io(&file.path)(source));
            }
        }
        if let Some(error) = failed {
            return Err(error);
        }
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(io(&self.dir))
    }

    /// Whether the value file `digest` exists with `len` bytes (written by an earlier round).
    pub fn holds(&self, digest: &ValueDigest, len: u64) -> bool {
        std::fs::metadata(self.path(digest)).is_ok_and(|meta| meta.len() == len)
    }

    /// The bytes of the value `digest`, checked against it.
    pub fn get(&self, digest: &ValueDigest) -> Result<Vec<u8>, StoreError> {
        let path = self.path(digest);
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        if ValueDigest::of(&bytes) != *digest {
            return Err(StoreError::ValueDamaged { path });
        }
        Ok(bytes)
    }

    /// Removes every value file whose digest `mark` does not return (and stray temporary
    /// files). `mark` runs with puts held off, so what it reads is complete.
    pub fn sweep(
        &self,
        mark: impl FnOnce() -> Result<HashSet<ValueDigest>, StoreError>,
    ) -> Result<ValuesSwept, StoreError> {
        let _exclusive = self
            .pin
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let live = mark()?;
        // `<digest>.<pid>.<n>.tmp`: a batch of this process not yet made durable.
        let own_pid = std::process::id().to_string();
        let own_temporary =
            |name: &str| name.ends_with(".tmp") && name.split('.').nth(1) == Some(&own_pid);
        let mut swept = ValuesSwept::default();
        for entry in std::fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let path = entry.map_err(io(&self.dir))?.path();
            let name = path
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default();
            match ValueDigest::parse(&name) {
                Some(digest) if live.contains(&digest) => swept.kept += 1,
                None if own_temporary(&name) => {}
                _ => {
                    std::fs::remove_file(&path).map_err(io(&path))?;
                    swept.removed += 1;
                }
            }
        }
        if swept.removed > 0 {
            File::open(&self.dir)
                .and_then(|dir| dir.sync_all())
                .map_err(io(&self.dir))?;
        }
        Ok(swept)
    }

    fn path(&self, digest: &ValueDigest) -> PathBuf {
        self.dir.join(digest.hex())
    }
}

/// Values written by [`ValueFiles::write`] and not yet made durable: their temporary files,
/// kept open so the round can start their writeback together. Dropped without
/// [`ValueFiles::make_durable`], its temporary files stay until the next sweep or start-up.
#[derive(Default)]
pub struct PendingValues {
    files: Vec<PendingFile>,
    /// Values added, written or already held.
    values: usize,
}

impl PendingValues {
    /// How many values were added since the last round.
    pub fn len(&self) -> usize {
        self.values
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.values == 0
    }
}

struct PendingFile {
    file: File,
    temporary: PathBuf,
    path: PathBuf,
}

/// How many threads fsync a batch's files at once (see [`sync_concurrently`]).
const SYNC_THREADS: usize = 16;

/// Fsyncs every file of a batch, [`SYNC_THREADS`] at a time, and returns each file's result in
/// order. Why concurrently: each fsync ends with a disk cache flush, and one after another they
/// cost a flush each (0.2–4 ms on a busy virtual disk, which made a read of 10,000 photos take
/// 15–40 s); fsyncs in flight together share their journal commit and the block layer merges
/// their flushes. Every file is still fsynced before any rename, as before.
fn sync_concurrently(files: &[PendingFile]) -> Vec<std::io::Result<()>> {
    if files.len() <= 1 {
        return files.iter().map(|file| file.file.sync_all()).collect();
    }
    let per_thread = files.len().div_ceil(SYNC_THREADS);
    std::thread::scope(|scope| {
        let workers: Vec<_> = files
            .chunks(per_thread)
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|file| file.file.sync_all())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| {
                worker
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

/// Starts writing `file`'s dirty pages back without waiting, so that the fsyncs of a round
/// that follow mostly find their data already on its way (and share journal commits).
fn start_writeback(file: &File) {
    // SAFETY: a plain system call on an open descriptor; the result is only a hint.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::ValueIo {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_values_share_one_file_and_come_back_checked() {
        let dir = tempfile::tempdir().unwrap();
        let values = ValueFiles::open(dir.path().join("values")).unwrap();
        let a = values.put(b"photo bytes").unwrap();
        let b = values.put(b"photo bytes").unwrap();
        assert_eq!(a, b);
        assert_eq!(std::fs::read_dir(values.dir()).unwrap().count(), 1);
        assert_eq!(values.get(&a).unwrap(), b"photo bytes");
        std::fs::write(values.path(&a), b"other bytes").unwrap();
        assert!(matches!(
            values.get(&a),
            Err(StoreError::ValueDamaged { .. })
        ));
    }

    #[test]
    fn a_sweep_removes_only_what_no_record_names() {
        let dir = tempfile::tempdir().unwrap();
        let values = ValueFiles::open(dir.path().join("values")).unwrap();
        let kept = values.put(b"kept").unwrap();
        let gone = values.put(b"gone").unwrap();
        std::fs::write(values.dir().join("x.1.2.tmp"), b"half").unwrap();
        let swept = values.sweep(|| Ok(HashSet::from([kept]))).unwrap();
        assert_eq!(
            swept,
            ValuesSwept {
                kept: 1,
                removed: 2
            }
        );
        assert!(values.get(&kept).is_ok());
        assert!(values.get(&gone).is_err());
    }

    #[test]
    fn digests_round_trip_through_their_file_names() {
        let digest = ValueDigest::of(b"x");
        assert_eq!(ValueDigest::parse(&digest.hex()), Some(digest));
        assert_eq!(ValueDigest::parse("zz"), None);
    }
}
