//! Rewriting a store whose sled compression setting differs from the one asked for.
//!
//! Why: sled records `use_compression` in the store's `conf` file and refuses to open the
//! store with the other setting. Stores written before compression was switched on (and any
//! store whose `[store] compression` was changed) must be rewritten once, at start-up, before
//! sled opens them — without losing anything to a `kill -9` or a power cut at any point.
//!
//! How, in steps that each leave the disk in a state the next start recognises and finishes:
//! 1. **copy**: every tree is copied, record by record, into a new sled store in the sibling
//!    `<store>.recompressing` with the wanted setting; the copy's files and directories are
//!    fsynced. A start that finds this directory without the mark below removes it and copies
//!    again, so a kill here costs only the time spent.
//! 2. **mark**: the file `recompression-complete` is written and fsynced inside the copy:
//!    from here on the copy is the store, and a start finishes the switch instead of copying.
//! 3. **values**: the value files directory (`values/`) is moved into the copy by one rename.
//! 4. **retire**: the old store is renamed to `<store>.before-recompression`.
//! 5. **promote**: the copy is renamed to `<store>`.
//! 6. **clean up**: the mark and the retired store are removed.
//!
//! Every rename is followed by an fsync of the directories it touched. sled's own
//! `export`/`import` is not used because its import panics on errors and keeps no progress.

use std::fs::{self, File};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::error::StoreError;
use super::open::is_lock_conflict;
use super::options::StoreOptions;
use super::retired::release_retired;
use super::walk::Walk;
use super::VALUES_DIR;

/// The file that says the copy is complete and is now the store (step 2).
const COMPLETE_MARK: &str = "recompression-complete";

/// Records per sled batch while copying: large enough that a 10,000-user store copies in a
/// few hundred batches, small enough that a batch stays a few hundred KiB.
const BATCH_RECORDS: usize = 500;

/// The compression sled recorded for the store at `path`, from its `conf` file; `None` when
/// there is no store yet (or sled has not written its settings), so nothing needs rewriting.
pub(crate) fn recorded_compression(path: &Path) -> Option<bool> {
    let conf = fs::read(path.join("conf")).ok()?;
    let text = String::from_utf8_lossy(&conf);
    text.lines()
        .find_map(|line| line.strip_prefix("use_compression: "))
        .and_then(|value| value.trim().parse().ok())
}

/// The three directories the rewrite uses, all siblings of the store.
struct Places {
    store: PathBuf,
    copy: PathBuf,
    retired: PathBuf,
}

impl Places {
    fn of(store: &Path) -> Places {
        let sibling = |suffix: &str| PathBuf::from(format!("{}.{suffix}", store.display()));
        Places {
            store: store.to_path_buf(),
            copy: sibling("recompressing"),
            retired: sibling("before-recompression"),
        }
    }
}

/// Before sled opens the store: finishes a rewrite a crash interrupted, then rewrites the
/// store if its recorded compression differs from `options.compression`.
pub(crate) fn ensure(options: &StoreOptions) -> Result<(), StoreError> {
    let places = Places::of(&options.path);
    resume(&places)?;
    match recorded_compression(&places.store) {
        Some(recorded) if recorded != options.compression => rewrite(&places, options),
        _ => Ok(()),
    }
}

/// Brings an interrupted rewrite to its end (or back to its start, when the copy was not
/// complete).
fn resume(places: &Places) -> Result<(), StoreError> {
    let copy_complete = places.copy.join(COMPLETE_MARK).exists();
    if places.copy.exists() && !copy_complete {
        if places.retired.exists() && !places.store.exists() {
            return Err(failed(
                places,
                format!(
                    "found {} and an incomplete {} but no store; move {} back to {} by hand",
                    places.retired.display(),
                    places.copy.display(),
                    places.retired.display(),
                    places.store.display()
                ),
            ));
        }
        tracing::warn!(
            copy = %places.copy.display(),
            "a store rewrite was interrupted during its copy: discarding the partial copy; the \
             store itself was never touched"
        );
        return remove_dir(places, &places.copy);
    }
    if copy_complete {
        tracing::warn!(
            copy = %places.copy.display(),
            "a store rewrite was interrupted after its copy was complete: finishing the switch"
        );
    }
    if copy_complete || places.retired.exists() || places.store.join(COMPLETE_MARK).exists() {
        switch(places)?;
    }
    Ok(())
}

/// Steps 1 to 6 for a store that exists and has the other compression setting.
fn rewrite(places: &Places, options: &StoreOptions) -> Result<(), StoreError> {
    let started = Instant::now();
    let before = dir_size(&places.store);
    tracing::info!(
        store = %places.store.display(),
        compression = options.compression,
        "the store was written with the other compression setting: rewriting it (a copy is \
         made beside it first, so an interruption loses nothing)"
    );
    let database = before.saturating_sub(dir_size(&places.store.join(VALUES_DIR)));
    ensure_room(places, database)?;
    let records = copy(places, options)?;
    mark_complete(places)?;
    switch(places)?;
    tracing::info!(
        store = %places.store.display(),
        records,
        bytes_before = before,
        bytes_after = dir_size(&places.store),
        seconds = started.elapsed().as_secs_f64(),
        "store rewritten with compression {}",
        if options.compression { "on" } else { "off" }
    );
    Ok(())
}

/// Refuses to start a copy the disk cannot hold: a full disk halfway through would only cost
/// time, but sled may panic on a failed write, and the error names what to free.
fn ensure_room(places: &Places, database: u64) -> Result<(), StoreError> {
    let parent = parent_of(&places.store);
    let available = available_bytes(&parent)
        .map_err(|error| io_failed(places, "reading the free space", error))?;
    match room_for_copy(database, available) {
        Ok(()) => Ok(()),
        Err(needed) => Err(failed(
            places,
            format!(
                "the copy needs about {} MB free in {} and {} MB are available",
                needed / 1_000_000 + 1,
                parent.display(),
                available / 1_000_000
            ),
        )),
    }
}

/// The copy of a sled database of `database` bytes needs at most twice that (an uncompressed
/// copy of a compressed store grows; sled's file holds up to twice its live pages), plus
/// 16 MiB of slack for sled's segments. `Err` carries the bytes needed.
fn room_for_copy(database: u64, available: u64) -> Result<(), u64> {
    let needed = database.saturating_mul(2).saturating_add(16 << 20);
    if available >= needed {
        Ok(())
    } else {
        Err(needed)
    }
}

/// Bytes an unprivileged writer may still use on the file system holding `dir`.
fn available_bytes(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidInput, error))?;
    // SAFETY: statvfs(3) fills the zeroed struct it is given; the path is NUL-terminated.
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut stats) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    #[allow(clippy::useless_conversion)] // the field widths differ between targets
    Ok(u64::from(stats.f_bavail).saturating_mul(u64::from(stats.f_frsize)))
}

/// Runs one write to the copy. A panic inside sled there (it panics on some failed writes)
/// is a failed rewrite, not a damaged store: the store itself was only read.
fn writing<T>(
    places: &Places,
    what: &str,
    write: impl FnOnce() -> sled::Result<T>,
) -> Result<T, StoreError> {
    match catch_unwind(AssertUnwindSafe(write)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(failed(places, format!("{what}: {error}"))),
        Err(_) => Err(failed(places, format!("{what}: sled panicked"))),
    }
}

/// Step 1: copies every tree into a new sled store at `places.copy` and makes it durable.
/// Returns the number of records copied. Reading the store may panic on damage (sled does):
/// that reaches the open, which moves a damaged store aside.
fn copy(places: &Places, options: &StoreOptions) -> Result<u64, StoreError> {
    let sled_error = |what: &str, error: sled::Error| failed(places, format!("{what}: {error}"));
    let open = |path: &Path, compression: bool| {
        StoreOptions {
            path: path.to_path_buf(),
            compression,
            flush_every_ms: 0,
            ..options.clone()
        }
        .sled_config()
        .open()
    };
    let source = open(&places.store, !options.compression).map_err(|error| {
        if is_lock_conflict(&error) {
            StoreError::AlreadyInUse {
                path: places.store.clone(),
            }
        } else {
            sled_error("opening the store to copy it", error)
        }
    })?;
    let target = writing(places, "creating the copy", || {
        open(&places.copy, options.compression)
    })?;
    let mut records = 0u64;
    for name in source.tree_names() {
        let from = source
            .open_tree(&name)
            .map_err(|error| sled_error("opening a tree", error))?;
        let to = writing(places, "creating a tree in the copy", || {
            target.open_tree(&name)
        })?;
        let mut batch = sled::Batch::default();
        let mut in_batch = 0;
        // Key by key: sled's iterator would keep every node it passed (`store::walk`).
        for entry in Walk::new(&from, b"") {
            let (key, value) = entry.map_err(|error| sled_error("reading the store", error))?;
            batch.insert(key, value);
            in_batch += 1;
            records += 1;
            if in_batch == BATCH_RECORDS {
                let full = std::mem::take(&mut batch);
                writing(places, "writing the copy", || to.apply_batch(full))?;
                release_retired();
                in_batch = 0;
            }
        }
        writing(places, "writing the copy", || to.apply_batch(batch))?;
    }
    writing(places, "flushing the copy", || target.flush())?;
    drop(target);
    drop(source);
    // sled does not fsync its `conf` file, nor every file it leaves: fsync the whole copy.
    fsync_tree(&places.copy).map_err(|error| io_failed(places, "fsyncing the copy", error))?;
    Ok(records)
}

/// Step 2: the copy is complete and, from now on, is the store.
fn mark_complete(places: &Places) -> Result<(), StoreError> {
    let mark = places.copy.join(COMPLETE_MARK);
    File::create(&mark)
        .and_then(|file| file.sync_all())
        .and_then(|()| fsync_dir(&places.copy))
        .map_err(|error| io_failed(places, "marking the copy complete", error))
}

/// Steps 3 to 6, each skipped when an earlier start already did it.
fn switch(places: &Places) -> Result<(), StoreError> {
    let parent = parent_of(&places.store);
    let io = |what: &'static str| move |error| io_failed(places, what, error);
    // 3. values
    let old_values = places.store.join(VALUES_DIR);
    let new_values = places.copy.join(VALUES_DIR);
    if places.copy.exists() && old_values.exists() && !new_values.exists() {
        fs::rename(&old_values, &new_values).map_err(io("moving the value files"))?;
        fsync_dir(&places.copy)
            .and_then(|()| fsync_dir(&places.store))
            .map_err(io("fsyncing after moving the value files"))?;
    }
    // 4. retire
    if places.copy.exists() && places.store.exists() {
        fs::rename(&places.store, &places.retired).map_err(io("retiring the old store"))?;
        fsync_dir(&parent).map_err(io("fsyncing after retiring the old store"))?;
    }
    // 5. promote
    if places.copy.exists() && !places.store.exists() {
        fs::rename(&places.copy, &places.store).map_err(io("putting the copy in place"))?;
        fsync_dir(&parent).map_err(io("fsyncing after putting the copy in place"))?;
    }
    // 6. clean up
    let mark = places.store.join(COMPLETE_MARK);
    if mark.exists() {
        fs::remove_file(&mark).map_err(io("removing the completion mark"))?;
    }
    if places.retired.exists() {
        remove_dir(places, &places.retired)?;
    }
    Ok(())
}

/// Removes a directory of the rewrite and makes the removal durable.
fn remove_dir(places: &Places, dir: &Path) -> Result<(), StoreError> {
    fs::remove_dir_all(dir)
        .and_then(|()| fsync_dir(&parent_of(dir)))
        .map_err(|error| io_failed(places, "removing a leftover directory", error))
}

/// fsyncs every file and directory under `dir`, and `dir` itself.
fn fsync_tree(dir: &Path) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            fsync_tree(&entry.path())?;
        } else {
            File::open(entry.path())?.sync_all()?;
        }
    }
    fsync_dir(dir)
}

fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Bytes of the regular files under `dir` (for the log line only).
fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => dir_size(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

fn failed(places: &Places, reason: String) -> StoreError {
    StoreError::RewriteFailed {
        path: places.store.clone(),
        reason,
    }
}

fn io_failed(places: &Places, what: &str, error: std::io::Error) -> StoreError {
    failed(places, format!("{what}: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::{item, reopen, Item};
    use crate::store::{Store, TreeName, ValueDigest};

    const ITEMS: u32 = 2_000;

    fn options(dir: &Path, compression: bool) -> StoreOptions {
        StoreOptions {
            compression,
            ..StoreOptions::at(dir.join("store"))
        }
    }

    /// A store written without compression: `ITEMS` records in two trees and one value file.
    fn uncompressed_store(dir: &Path) -> (StoreOptions, ValueDigest) {
        let options = options(dir, false);
        let store = Store::open(&options).unwrap().store;
        for n in 0..ITEMS {
            let key = n.to_be_bytes().to_vec();
            store
                .insert(TreeName::Buffer, key.clone(), &item("user", n))
                .unwrap();
            store
                .insert(TreeName::Outbox, key, &item("event", n))
                .unwrap();
        }
        let digest = store.values().put(b"an 8 KB photo, in short").unwrap();
        store.make_durable_blocking().unwrap();
        drop(store);
        wait_until_released(&options.path);
        assert_eq!(recorded_compression(&options.path), Some(false));
        (options, digest)
    }

    /// Waits until sled's background threads have released the store's lock after the last
    /// handle was dropped (a moment later), so that the steps below, which open sled
    /// directly, do not find it held: sled takes an exclusive `flock` on `db`; so does this
    /// probe, without blocking.
    fn wait_until_released(store: &Path) {
        use std::os::fd::AsRawFd;
        let db = File::open(store.join("db")).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        // SAFETY: flock(2) on a descriptor this function owns; the lock is released at once.
        while unsafe { libc::flock(db.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the lock was never released"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        unsafe { libc::flock(db.as_raw_fd(), libc::LOCK_UN) };
    }

    /// The store opened with compression holds everything the uncompressed one held, and no
    /// directory of the rewrite is left beside it.
    fn assert_intact(options: &StoreOptions, digest: &ValueDigest) {
        let compressed = StoreOptions {
            compression: true,
            ..options.clone()
        };
        let store = reopen(&compressed);
        assert_eq!(recorded_compression(&options.path), Some(true));
        for n in 0..ITEMS {
            let key = n.to_be_bytes();
            let user: Option<Item> = store.get(TreeName::Buffer, key).unwrap();
            assert_eq!(user, Some(item("user", n)), "user {n}");
            let event: Option<Item> = store.get(TreeName::Outbox, key).unwrap();
            assert_eq!(event, Some(item("event", n)), "event {n}");
        }
        assert_eq!(
            store.values().get(digest).unwrap(),
            b"an 8 KB photo, in short"
        );
        let places = Places::of(&options.path);
        assert!(!places.copy.exists(), "copy left behind");
        assert!(!places.retired.exists(), "old store left behind");
        assert!(
            !places.store.join(COMPLETE_MARK).exists(),
            "mark left behind"
        );
    }

    #[test]
    fn a_store_without_compression_is_rewritten_with_it_and_keeps_every_record_and_value() {
        let dir = tempfile::tempdir().unwrap();
        let (options, digest) = uncompressed_store(dir.path());
        assert_intact(&options, &digest);
        // And back: the setting can be turned off again.
        let store = reopen(&options);
        drop(store);
        assert_eq!(recorded_compression(&options.path), Some(false));
        assert_intact(&options, &digest);
    }

    /// Every state a kill can leave between the steps: the next open finishes (or restarts)
    /// the rewrite and nothing is lost. `steps` is how many steps completed before the kill.
    #[test]
    fn a_rewrite_interrupted_after_any_step_is_finished_by_the_next_open() {
        for steps in 0..=5 {
            let dir = tempfile::tempdir().unwrap();
            let (options, digest) = uncompressed_store(dir.path());
            let wanted = StoreOptions {
                compression: true,
                ..options.clone()
            };
            let places = Places::of(&options.path);
            if steps == 0 {
                // Killed mid-copy: a partial copy without the mark.
                let partial = StoreOptions::at(&places.copy).sled_config().open().unwrap();
                partial.insert(b"half", b"done").unwrap();
                partial.flush().unwrap();
            }
            if steps >= 1 {
                copy(&places, &wanted).unwrap();
            }
            if steps >= 2 {
                mark_complete(&places).unwrap();
            }
            if steps >= 3 {
                fs::rename(places.store.join(VALUES_DIR), places.copy.join(VALUES_DIR)).unwrap();
            }
            if steps >= 4 {
                fs::rename(&places.store, &places.retired).unwrap();
            }
            if steps >= 5 {
                fs::rename(&places.copy, &places.store).unwrap();
            }
            assert_intact(&options, &digest);
        }
    }

    #[test]
    fn a_copy_needs_twice_the_database_and_some_slack() {
        let database = 15_000_000;
        let needed = 2 * database + (16 << 20);
        assert_eq!(room_for_copy(database, needed), Ok(()));
        assert_eq!(room_for_copy(database, needed - 1), Err(needed));
        assert!(available_bytes(Path::new("/")).unwrap() > 0);
    }

    #[test]
    fn a_store_left_without_its_copy_and_with_only_the_old_one_retired_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (options, _) = uncompressed_store(dir.path());
        let places = Places::of(&options.path);
        fs::create_dir(&places.copy).unwrap();
        fs::rename(&places.store, &places.retired).unwrap();
        let refused = Store::open(&StoreOptions {
            compression: true,
            ..options.clone()
        });
        assert!(
            matches!(refused, Err(StoreError::RewriteFailed { .. })),
            "{:?}",
            refused.err()
        );
        assert!(
            places.retired.join("db").exists(),
            "the old store was touched"
        );
    }
}
