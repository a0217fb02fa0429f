//! Opening damaged and unusable store directories: damage is salvaged (moved aside, fresh
//! store, alarm), everything else is a plain error that leaves the directory alone.
//!
//! The damages used here were chosen by experiment with sled 0.34.7, which reports them
//! reliably: a garbage snapshot file (`Error::Corruption`), garbage at the start of a
//! multi-MiB data file (a panic inside sled), and a truncated data file (sled opens it empty;
//! the store notices the missing schema version).

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use edge_agent::store::schema::{CURRENT_SCHEMA, SCHEMA_KEY};
use edge_agent::store::{
    keys, AlarmKind, Record, SalvageReport, Store, StoreError, StoreOptions, TreeName,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Note(String);

impl Record for Note {
    const KIND: &'static str = "salvage_test_note";
    const VERSION: u32 = 1;
}

/// A store with `records` notes of about 200 bytes, closed again.
fn populated_store(parent: &Path, records: u64) -> StoreOptions {
    populate(StoreOptions::at(parent.join("store")), records)
}

/// Writes `records` notes of about 200 bytes into the store at `options`, closed again.
fn populate(options: StoreOptions, records: u64) -> StoreOptions {
    let store = Store::open(&options).expect("open a fresh store").store;
    for n in 0..records {
        store
            .insert(TreeName::Buffer, keys::sequence(n), &Note("x".repeat(200)))
            .expect("insert");
    }
    store.make_durable_blocking().expect("durable");
    drop(store);
    wait_until_released(&options.path.join("db"));
    options
}

/// Waits until no sled instance of this process holds the store's lock any more: sled's
/// background threads release it a moment after the handle is dropped, and a test that damages
/// the file and reopens it must not mistake that moment for damage (`AlreadyInUse`). sled
/// takes an exclusive `flock` on the data file; so does this probe, without blocking.
fn wait_until_released(db: &Path) {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(db).expect("open the data file");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        // SAFETY: flock(2) on a descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            // SAFETY: as above; the probe's own lock is released at once.
            unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) };
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the store's lock was never released"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Sibling directories named `<store>.corrupt-*`.
fn moved_aside(parent: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(parent)
        .expect("list parent")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.to_string_lossy().contains("store.corrupt-"))
        .collect()
}

/// Opens a damaged store and checks everything salvage promises.
fn assert_salvaged(options: &StoreOptions, reason_contains: &str) -> SalvageReport {
    let parent = options.path.parent().expect("parent").to_path_buf();
    let opened = Store::open(options).expect("a damaged store still opens");
    let report = opened.salvage.expect("salvage report");
    assert!(
        report.reason.contains(reason_contains),
        "unexpected reason: {}",
        report.reason
    );
    assert_eq!(moved_aside(&parent), vec![report.moved_to.clone()]);
    let moved_name = report.moved_to.file_name().unwrap().to_string_lossy();
    assert!(
        moved_name.len() == "store.corrupt-20261122T100509Z".len() && moved_name.ends_with('Z'),
        "moved-aside name {moved_name} is not <name>.corrupt-<yyyymmddThhmmssZ>"
    );
    assert!(
        report.moved_to.join("db").exists(),
        "the damaged data was not kept"
    );

    let store = opened.store;
    assert_eq!(
        store
            .get::<Note>(TreeName::Buffer, keys::sequence(0))
            .unwrap(),
        None,
        "the salvaged store is not empty"
    );
    assert_salvage_alarm(&store, &report);
    drop(store);

    // The alarm is durable and the next start is an ordinary one. sled's background threads
    // may hold the lock for a moment after the handle is dropped (a real restart is a new
    // process), so an in-process reopen retries briefly.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let again = loop {
        match Store::open(options) {
            Err(edge_agent::store::StoreError::AlreadyInUse { .. })
                if std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => break other.expect("reopen the salvaged store"),
        }
    };
    assert!(again.salvage.is_none());
    assert_salvage_alarm(&again.store, &report);
    report
}

fn assert_salvage_alarm(store: &Store, report: &SalvageReport) {
    let alarms = store.alarms().expect("read alarms");
    assert_eq!(alarms.len(), 1, "{alarms:?}");
    let alarm = &alarms[0].1;
    assert_eq!(
        alarm.kind,
        AlarmKind::StoreSalvaged {
            moved_to: report.moved_to.display().to_string(),
            reason: report.reason.clone(),
        }
    );
    assert!(alarm
        .message
        .contains(&report.moved_to.display().to_string()));
}

fn overwrite(path: &Path, offset: u64, bytes: &[u8]) {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open for damage");
    file.seek(SeekFrom::Start(offset)).expect("seek");
    file.write_all(bytes).expect("write damage");
}

#[test]
fn a_garbage_snapshot_file_is_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    let options = populated_store(dir.path(), 10);
    std::fs::write(options.path.join("snap.00000000FFFFFFFF"), [0x5a; 300]).unwrap();
    let report = assert_salvaged(&options, "sled could not open it");
    assert!(report.moved_to.join("snap.00000000FFFFFFFF").exists());
}

#[test]
fn a_panic_inside_sled_at_open_is_caught_and_salvaged() {
    let dir = tempfile::tempdir().unwrap();
    // With an 8 MiB page cache and no compression sled lays these records out the same way
    // every time, and garbage over the first 4 KiB makes it panic at open. With the smaller
    // default cache the layout varies between runs, and compressed the records fill so little
    // of the file that the same damage reads as a lost file instead (the case below).
    let mut options = StoreOptions::at(dir.path().join("store"));
    options.cache_capacity = 8 * 1024 * 1024;
    options.compression = false;
    let options = populate(options, 3000);
    overwrite(&options.path.join("db"), 0, &[0xA7; 4096]);
    assert_salvaged(&options, "sled panicked");
}

#[test]
fn a_data_file_that_lost_its_contents_is_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    let options = populated_store(dir.path(), 10);
    let db = std::fs::OpenOptions::new()
        .write(true)
        .open(options.path.join("db"))
        .unwrap();
    db.set_len(0).unwrap();
    drop(db);
    assert_salvaged(&options, "recovered no schema version");
}

#[test]
fn a_store_held_by_another_instance_is_an_error_not_damage() {
    let dir = tempfile::tempdir().unwrap();
    let options = populated_store(dir.path(), 1);
    let first = Store::open(&options).expect("first instance").store;
    let second = Store::open(&options)
        .err()
        .expect("second instance must fail");
    assert!(
        matches!(second, StoreError::AlreadyInUse { .. }),
        "{second}"
    );
    assert!(second
        .to_string()
        .contains("already open in another process"));
    assert!(moved_aside(dir.path()).is_empty());
    assert_eq!(
        first
            .get::<Note>(TreeName::Buffer, keys::sequence(0))
            .unwrap(),
        Some(Note("x".repeat(200)))
    );
}

#[test]
fn a_file_system_error_is_an_error_not_damage() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_directory = dir.path().join("file");
    std::fs::write(&not_a_directory, b"").unwrap();
    let err = Store::open(&StoreOptions::at(not_a_directory.join("store")))
        .err()
        .expect("cannot create a store under a file");
    assert!(matches!(err, StoreError::OpenIo { .. }), "{err}");
    assert!(not_a_directory.is_file());
}

#[test]
fn a_garbled_settings_file_is_refused_not_salvaged() {
    let dir = tempfile::tempdir().unwrap();
    let options = populated_store(dir.path(), 1);
    overwrite(&options.path.join("conf"), 0, &[0xFF; 40]);
    let err = Store::open(&options).err().expect("sled refuses the conf");
    assert!(matches!(err, StoreError::Refused { .. }), "{err}");
    assert!(err.to_string().contains("move"), "{err}");
    assert!(moved_aside(dir.path()).is_empty());
}

#[test]
fn a_schema_newer_than_this_build_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let options = populated_store(dir.path(), 1);
    {
        let raw = options.sled_config().open().unwrap();
        raw.open_tree(TreeName::Meta.as_str())
            .unwrap()
            .insert(SCHEMA_KEY, &(CURRENT_SCHEMA + 1).to_be_bytes())
            .unwrap();
        raw.flush().unwrap();
    }
    wait_until_released(&options.path.join("db"));
    let err = Store::open(&options).err().expect("newer schema refused");
    match &err {
        StoreError::SchemaTooNew {
            found, supported, ..
        } => {
            assert_eq!((*found, *supported), (CURRENT_SCHEMA + 1, CURRENT_SCHEMA));
        }
        other => panic!("expected SchemaTooNew, got {other}"),
    }
    assert!(err.to_string().contains("newer edge-agent"), "{err}");
    assert!(moved_aside(dir.path()).is_empty());
    let raw = options.sled_config().open().unwrap();
    assert_eq!(
        raw.open_tree("buffer").unwrap().len(),
        1,
        "data was touched"
    );
}
