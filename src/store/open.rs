//! Opening the store: start sled, judge whether a failure means "damaged" (salvage) or "cannot
//! open right now" (plain error), and check the schema version.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use super::epoch::{self, EpochCause};
use super::error::StoreError;
use super::options::StoreOptions;
use super::recompress;
use super::salvage::{self, SalvageReport};
use super::schema::{self, StoredSchema, CURRENT_SCHEMA};
use super::Store;

/// A freshly opened store, and what salvage did to get there, if anything.
#[derive(Clone)]
pub struct Opened {
    /// The store, ready for use.
    pub store: Store,
    /// `Some` when the directory was damaged and has been moved aside; the store is then
    /// empty and an alarm has been recorded in the alarms tree.
    pub salvage: Option<SalvageReport>,
}

/// Why an open attempt failed, sorted by what to do about it.
enum OpenFailure {
    /// The directory's contents are unusable: move it aside and start empty.
    Damaged(String),
    /// Anything else (lock held, permissions, newer schema…): report and leave it alone.
    Fatal(StoreError),
}

/// Errors after sled itself opened (opening trees, reading the schema) are damage only when
/// sled says so.
impl From<StoreError> for OpenFailure {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Sled {
                operation,
                source: source @ (sled::Error::Corruption { .. } | sled::Error::ReportableBug(_)),
            } => OpenFailure::Damaged(format!("sled failed during '{operation}': {source}")),
            other => OpenFailure::Fatal(other),
        }
    }
}

impl Store {
    /// Opens (or creates) the store at `options.path`.
    ///
    /// If the directory is damaged (see [`crate::store::salvage`] for what counts) it is moved
    /// aside, an empty store is created in its place, the salvage is logged as an error and
    /// recorded as an alarm, and the report is returned in [`Opened::salvage`]. A store held by
    /// another process, file-system errors, and a schema newer than this build are returned as
    /// errors and leave the directory untouched.
    pub fn open(options: &StoreOptions) -> Result<Opened, StoreError> {
        let reason = match attempt(options) {
            Ok(store) => {
                return Ok(Opened {
                    store,
                    salvage: None,
                })
            }
            Err(OpenFailure::Fatal(error)) => return Err(error),
            Err(OpenFailure::Damaged(reason)) => reason,
        };
        let report = salvage::move_aside(&options.path, reason)?;
        tracing::error!(
            store = %report.original.display(),
            moved_to = %report.moved_to.display(),
            reason = %report.reason,
            "the store was damaged: moved it aside and started with an empty store, which will \
             be rebuilt from the devices"
        );
        let store = attempt(options).map_err(|failure| match failure {
            OpenFailure::Fatal(error) => error,
            OpenFailure::Damaged(reason) => StoreError::FreshStoreFailed {
                path: options.path.clone(),
                reason,
            },
        })?;
        store.raise_alarm(&report.alarm())?;
        epoch::mint(&store, EpochCause::Salvaged)?;
        store.make_durable_blocking()?;
        Ok(Opened {
            store,
            salvage: Some(report),
        })
    }
}

/// One attempt to open the store (rewriting it first when its compression setting changed,
/// see [`recompress`]) and bring its schema up to date. sled 0.34 panics on some damage
/// instead of returning an error (while writing its start-up snapshot, or "cannot find pid"
/// on reads, sled issue #1443), so a panic anywhere in the attempt counts as damage; the
/// store's own code on this path does not panic.
fn attempt(options: &StoreOptions) -> Result<Store, OpenFailure> {
    let rewrite_and_open = || {
        recompress::ensure(options).map_err(OpenFailure::Fatal)?;
        open_and_check(options)
    };
    match catch_unwind(AssertUnwindSafe(rewrite_and_open)) {
        Ok(outcome) => outcome,
        Err(panic) => Err(OpenFailure::Damaged(format!(
            "sled panicked while opening it: {}",
            panic_message(panic.as_ref())
        ))),
    }
}

/// Opens sled on the directory, wraps it and checks the schema version.
fn open_and_check(options: &StoreOptions) -> Result<Store, OpenFailure> {
    // Checked before sled creates the file: a directory that already had data but comes up
    // without a schema version has silently lost its contents.
    let had_data_file = options.path.join("db").exists();
    let db = open_sled(options)?;
    let store = Store::from_db(db, &options.path, options.group_commit_window)?;
    match schema::stored(&store)? {
        StoredSchema::Version(CURRENT_SCHEMA) => {}
        StoredSchema::Version(found) => schema::upgrade(&store, found)?,
        StoredSchema::Absent if had_data_file => {
            return Err(OpenFailure::Damaged(
                "sled opened the existing data file but recovered no schema version from it, \
                 so its contents were lost (damaged or truncated `db` file)"
                    .into(),
            ))
        }
        StoredSchema::Absent => {
            epoch::mint(&store, EpochCause::Created)?;
            schema::record(&store, CURRENT_SCHEMA)?
        }
        StoredSchema::Unreadable(len) => {
            return Err(OpenFailure::Damaged(format!(
                "the stored schema version is {len} bytes long instead of 4"
            )))
        }
    }
    epoch::ensure(&store)?;
    store.make_durable_blocking()?;
    Ok(store)
}

/// Starts sled with the store's settings, sorting its errors.
fn open_sled(options: &StoreOptions) -> Result<sled::Db, OpenFailure> {
    options
        .sled_config()
        .open()
        .map_err(|error| classify(&options.path, error))
}

/// Sorts a sled open error into damage (salvage) or a plain error.
fn classify(path: &Path, error: sled::Error) -> OpenFailure {
    match error {
        sled::Error::Corruption { .. } | sled::Error::ReportableBug(_) => {
            OpenFailure::Damaged(format!("sled could not open it: {error}"))
        }
        sled::Error::Io(_) if is_lock_conflict(&error) => {
            OpenFailure::Fatal(StoreError::AlreadyInUse {
                path: path.to_path_buf(),
            })
        }
        sled::Error::Io(source) => OpenFailure::Fatal(StoreError::OpenIo {
            path: path.to_path_buf(),
            source,
        }),
        sled::Error::Unsupported(reason) => OpenFailure::Fatal(StoreError::Refused {
            path: path.to_path_buf(),
            reason,
        }),
        other => OpenFailure::Fatal(StoreError::Sled {
            operation: "open",
            source: other,
        }),
    }
}

/// Whether sled failed because another handle holds the store's lock. sled reports its lock
/// conflict as a generic I/O error; the text is the only marker.
pub(super) fn is_lock_conflict(error: &sled::Error) -> bool {
    matches!(error, sled::Error::Io(source) if source.to_string().contains("could not acquire lock"))
}

/// The text of a caught panic, when it has one.
fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&'static str>().copied())
        .unwrap_or("(no message)")
}
