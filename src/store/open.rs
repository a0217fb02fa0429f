//! Opening the store: start sled, judge whether a failure means "damaged" (salvage) or "cannot
//! open right now" (plain error), and check the schema version.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use super::error::StoreError;
use super::options::StoreOptions;
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

impl From<StoreError> for OpenFailure {
    fn from(error: StoreError) -> Self {
        OpenFailure::Fatal(error)
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
        let reason = match open_and_check(options) {
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
        let store = open_and_check(options).map_err(|failure| match failure {
            OpenFailure::Fatal(error) => error,
            OpenFailure::Damaged(reason) => StoreError::FreshStoreFailed {
                path: options.path.clone(),
                reason,
            },
        })?;
        store.raise_alarm(&report.alarm())?;
        store.make_durable_blocking()?;
        Ok(Opened {
            store,
            salvage: Some(report),
        })
    }
}

/// One attempt to open the store and bring its schema up to date.
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
        StoredSchema::Absent => schema::record(&store, CURRENT_SCHEMA)?,
        StoredSchema::Unreadable(len) => {
            return Err(OpenFailure::Damaged(format!(
                "the stored schema version is {len} bytes long instead of 4"
            )))
        }
    }
    Ok(store)
}

/// Starts sled, turning its panics and corruption errors into [`OpenFailure::Damaged`].
fn open_sled(options: &StoreOptions) -> Result<sled::Db, OpenFailure> {
    let config = sled::Config::new()
        .path(&options.path)
        .cache_capacity(options.cache_capacity)
        .flush_every_ms(Some(options.flush_every_ms).filter(|ms| *ms > 0));
    match catch_unwind(AssertUnwindSafe(|| config.open())) {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(error)) => Err(classify(&options.path, error)),
        Err(panic) => Err(OpenFailure::Damaged(format!(
            "sled panicked while opening it: {}",
            panic_message(panic.as_ref())
        ))),
    }
}

/// Sorts a sled open error into damage (salvage) or a plain error.
fn classify(path: &Path, error: sled::Error) -> OpenFailure {
    match error {
        sled::Error::Corruption { .. } | sled::Error::ReportableBug(_) => {
            OpenFailure::Damaged(format!("sled could not open it: {error}"))
        }
        // sled reports its lock conflict as a generic I/O error; the text is the only marker.
        sled::Error::Io(source) if source.to_string().contains("could not acquire lock") => {
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

/// The text of a caught panic, when it has one.
fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&'static str>().copied())
        .unwrap_or("(no message)")
}
