//! A log file with a hard cap on disk use: `edge-agent.log`, `edge-agent.log.1`, …
//!
//! Why not `tracing-appender`: it rotates by time only, so a tight error loop during an outage
//! can fill the SD card before midnight (the field reports in the research notes describe
//! gigabytes in hours). Here every file is at most `max_file_size` bytes and there are at most
//! `max_files` of them, so the total never exceeds their product, whatever the agent logs.
//!
//! Shape of the writer:
//! - one `write(2)` per log record, appended whole, so `tail -F` never shows half a line;
//! - writes are synchronous under a mutex: no background queue that silently drops lines when
//!   full or loses the tail at exit (the `non_blocking` pitfall in the research notes);
//! - an I/O error (disk full, directory removed, permissions) never panics and never returns an
//!   error to the agent: the record is counted as dropped and the file is reopened later.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tracing_subscriber::fmt::MakeWriter;

/// Appended to a record that alone would exceed `max_file_size`, so a reader can see it was cut.
const TRUNCATION_MARKER: &[u8] = b" [truncated]\n";

/// The smallest `max_file_size` accepted: a file must hold at least one truncated record with
/// its marker, or the cap could not be kept.
pub const MIN_MAX_FILE_SIZE: u64 = 64;

/// How long to wait before trying again to open a log file that could not be opened; keeps a
/// full disk from costing an `open(2)` per log line.
const DEFAULT_REOPEN_INTERVAL: Duration = Duration::from_secs(5);

/// How often to check that the path still names the open file. A technician who deletes the log
/// directory (or a foreign logrotate that moves the file) must not leave the agent writing into an
/// unlinked file nobody can read.
const DEFAULT_REPLACED_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Where and how large: validated once, so the writer itself cannot be misconfigured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationPolicy {
    path: PathBuf,
    max_file_size: u64,
    max_files: u32,
}

/// Why a [`RotationPolicy`] was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    /// The per-file size cannot hold even one short record.
    #[error(
        "log max_file_size is {size} bytes; it must be at least {MIN_MAX_FILE_SIZE} bytes \
         (use something like \"5MB\")"
    )]
    FileSizeTooSmall {
        /// The rejected size in bytes.
        size: u64,
    },
    /// Zero files would mean logging nowhere while claiming to log to a file.
    #[error("log max_files is 0; it must be at least 1 (or leave out `file` to log no file)")]
    NoFiles,
    /// The path has no file name to rotate (`/var/log/` or `..`).
    #[error("log file path {0:?} does not end in a file name")]
    NoFileName(PathBuf),
}

impl RotationPolicy {
    /// Checks the limits; the cap promise depends on both being sane.
    pub fn new(path: PathBuf, max_file_size: u64, max_files: u32) -> Result<Self, PolicyError> {
        if max_file_size < MIN_MAX_FILE_SIZE {
            return Err(PolicyError::FileSizeTooSmall {
                size: max_file_size,
            });
        }
        if max_files == 0 {
            return Err(PolicyError::NoFiles);
        }
        if path.file_name().is_none() {
            return Err(PolicyError::NoFileName(path));
        }
        Ok(Self {
            path,
            max_file_size,
            max_files,
        })
    }

    /// The live file (`edge-agent.log`); rotated files carry `.1`, `.2`, … after it.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Path of the `index`-th file: 0 is the live file, higher is older.
    pub fn file_path(&self, index: u32) -> PathBuf {
        if index == 0 {
            return self.path.clone();
        }
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".{index}"));
        PathBuf::from(name)
    }

    /// Every file the policy may keep, newest first.
    pub fn all_paths(&self) -> impl Iterator<Item = PathBuf> + '_ {
        (0..self.max_files).map(|index| self.file_path(index))
    }
}

/// The open file and its bookkeeping; single-threaded, wrapped by [`RotatingFileWriter`].
#[derive(Debug)]
pub struct RotatingFile {
    policy: RotationPolicy,
    file: Option<OpenFile>,
    /// When the last open failed; no new attempt before `reopen_interval` has passed.
    last_open_failure: Option<Instant>,
    reopen_interval: Duration,
    replaced_check_interval: Duration,
    dropped_records: u64,
    /// The error of the last failed open or write, for a status page or a startup warning.
    last_error: Option<String>,
}

#[derive(Debug)]
struct OpenFile {
    file: File,
    size: u64,
    identity: (u64, u64),
    last_replaced_check: Instant,
}

impl RotatingFile {
    /// Prepares the file set and tries to open the live file right away. A failed open is not an
    /// error here: it is remembered in [`RotatingFile::last_error`] and retried on later writes,
    /// because the agent must run (and log to journald) even when the log disk is unusable.
    pub fn open(policy: RotationPolicy) -> Self {
        let mut this = Self {
            policy,
            file: None,
            last_open_failure: None,
            reopen_interval: DEFAULT_REOPEN_INTERVAL,
            replaced_check_interval: DEFAULT_REPLACED_CHECK_INTERVAL,
            dropped_records: 0,
            last_error: None,
        };
        this.enforce_cap_on_existing_files();
        this.try_open(Instant::now());
        this
    }

    /// Overrides the retry delays. A test hook: tests use zero so they need not sleep; the
    /// agent keeps the defaults.
    pub fn with_intervals(mut self, reopen: Duration, replaced_check: Duration) -> Self {
        self.reopen_interval = reopen;
        self.replaced_check_interval = replaced_check;
        self
    }

    /// Records lost to I/O errors since start; a gap in the file is then explained, not a mystery.
    pub fn dropped_records(&self) -> u64 {
        self.dropped_records
    }

    /// The most recent I/O problem, cleared once a write succeeds again.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// Appends one record (normally one formatted log line), rotating first if it would not fit.
    /// Never fails: an I/O error costs this record and is counted.
    pub fn write_record(&mut self, record: &[u8]) {
        if record.is_empty() {
            return;
        }
        let record = fit_record(record, self.policy.max_file_size);
        let now = Instant::now();
        self.reopen_if_replaced(now);
        if self.file.is_none() && !self.try_open(now) {
            self.dropped_records += 1;
            return;
        }
        let needs_rotation = self.file.as_ref().is_some_and(|open| {
            open.size > 0 && open.size + record.len() as u64 > self.policy.max_file_size
        });
        if needs_rotation {
            if let Err(error) = self.rotate() {
                self.fail(format!("cannot rotate log file: {error}"), now);
                self.dropped_records += 1;
                return;
            }
            if !self.try_open(now) {
                self.dropped_records += 1;
                return;
            }
        }
        let Some(open) = self.file.as_mut() else {
            return;
        };
        match open.file.write_all(&record) {
            Ok(()) => {
                open.size += record.len() as u64;
                self.last_error = None;
            }
            Err(error) => {
                // Cut off a partly written record so the next line starts on a line of its own.
                let _ = open.file.set_len(open.size);
                self.fail(format!("cannot write log file: {error}"), now);
                self.dropped_records += 1;
            }
        }
    }

    fn fail(&mut self, message: String, now: Instant) {
        self.file = None;
        self.last_open_failure = Some(now);
        self.last_error = Some(message);
    }

    /// Opens (creating the directory if needed) unless a recent attempt failed.
    fn try_open(&mut self, now: Instant) -> bool {
        if let Some(failed_at) = self.last_open_failure {
            if now.duration_since(failed_at) < self.reopen_interval {
                return false;
            }
        }
        match open_append(&self.policy.path) {
            Ok(file) => {
                self.file = Some(file);
                self.last_open_failure = None;
                true
            }
            Err(error) => {
                let message = format!(
                    "cannot open log file {}: {error}",
                    self.policy.path.display()
                );
                self.fail(message, now);
                false
            }
        }
    }

    /// Drops the handle when the path no longer names the open file (deleted or moved away).
    fn reopen_if_replaced(&mut self, now: Instant) {
        let Some(open) = self.file.as_mut() else {
            return;
        };
        if now.duration_since(open.last_replaced_check) < self.replaced_check_interval {
            return;
        }
        open.last_replaced_check = now;
        let still_ours = fs::metadata(&self.policy.path)
            .map(|meta| (meta.dev(), meta.ino()) == open.identity)
            .unwrap_or(false);
        if !still_ours {
            self.file = None;
        }
    }

    /// Shifts `.1` → `.2` … and the live file → `.1`; renaming onto the oldest slot drops it.
    /// With a single file the live file is simply removed.
    fn rotate(&mut self) -> io::Result<()> {
        self.file = None;
        if self.policy.max_files == 1 {
            return remove_if_present(&self.policy.path);
        }
        for index in (0..self.policy.max_files - 1).rev() {
            rename_if_present(
                &self.policy.file_path(index),
                &self.policy.file_path(index + 1),
            )?;
        }
        Ok(())
    }

    /// Makes files left by an earlier, larger configuration obey the current cap: rotated files
    /// beyond `max_files` are removed and oversized files keep only their newest lines.
    fn enforce_cap_on_existing_files(&mut self) {
        if let Err(error) = self.remove_surplus_rotations() {
            self.last_error = Some(format!("cannot prune old log files: {error}"));
        }
        for path in self.policy.all_paths() {
            if let Err(error) = keep_newest_bytes(&path, self.policy.max_file_size) {
                self.last_error = Some(format!("cannot shrink {}: {error}", path.display()));
            }
        }
    }

    fn remove_surplus_rotations(&self) -> io::Result<()> {
        for (index, path) in rotated_files(&self.policy.path)? {
            if index >= self.policy.max_files {
                remove_if_present(&path)?;
            }
        }
        Ok(())
    }
}

/// The rotated files that exist beside `live` (`live.1`, `live.2`, …) with their index, in no
/// particular order. Found by listing the directory rather than from a configured count, so
/// leftovers of an earlier configuration are seen too.
pub fn rotated_files(live: &Path) -> io::Result<Vec<(u32, PathBuf)>> {
    let (Some(dir), Some(base)) = (live.parent(), live.file_name()) else {
        return Ok(Vec::new());
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    let prefix = format!("{}.", base.to_string_lossy());
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry?;
        let index = entry
            .file_name()
            .to_str()
            .and_then(|name| name.strip_prefix(&prefix))
            .and_then(|suffix| suffix.parse::<u32>().ok());
        if let Some(index) = index.filter(|&index| index > 0) {
            found.push((index, entry.path()));
        }
    }
    Ok(found)
}

/// Truncates a record that alone exceeds the file size, keeping whole UTF-8 characters and
/// marking the cut, so one huge line can never break the cap.
fn fit_record(record: &[u8], max_file_size: u64) -> std::borrow::Cow<'_, [u8]> {
    let limit = usize::try_from(max_file_size).unwrap_or(usize::MAX);
    if record.len() <= limit {
        return record.into();
    }
    let mut keep = limit - TRUNCATION_MARKER.len();
    while keep > 0 && (record[keep] & 0xC0) == 0x80 {
        keep -= 1;
    }
    let mut cut = Vec::with_capacity(keep + TRUNCATION_MARKER.len());
    cut.extend_from_slice(&record[..keep]);
    cut.extend_from_slice(TRUNCATION_MARKER);
    cut.into()
}

fn open_append(path: &Path) -> io::Result<OpenFile> {
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        fs::create_dir_all(dir)?;
    }
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    let meta = file.metadata()?;
    Ok(OpenFile {
        file,
        size: meta.len(),
        identity: (meta.dev(), meta.ino()),
        last_replaced_check: Instant::now(),
    })
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

fn rename_if_present(from: &Path, to: &Path) -> io::Result<()> {
    match fs::rename(from, to) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

/// Cuts a file larger than `limit` down to its newest whole lines.
fn keep_newest_bytes(path: &Path, limit: u64) -> io::Result<()> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error),
    };
    let len = file.metadata()?.len();
    if len <= limit {
        return Ok(());
    }
    // Start one byte early: if that byte ends a line, the kept part begins with a whole line.
    file.seek(SeekFrom::Start(len - limit - 1))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    let first_whole_line = tail
        .iter()
        .position(|&byte| byte == b'\n')
        .map_or(tail.len(), |newline| newline + 1);
    let mut shrunk_name = path.as_os_str().to_owned();
    shrunk_name.push(".shrinking");
    let shrunk = PathBuf::from(shrunk_name);
    fs::write(&shrunk, &tail[first_whole_line..])?;
    fs::rename(&shrunk, path)
}

/// The thread-safe face of [`RotatingFile`], handed to `tracing_subscriber::fmt` as its writer.
/// Clones share one file.
#[derive(Debug, Clone)]
pub struct RotatingFileWriter {
    inner: Arc<Mutex<RotatingFile>>,
}

impl RotatingFileWriter {
    /// Opens the file set described by `policy` (see [`RotatingFile::open`]).
    pub fn open(policy: RotationPolicy) -> Self {
        Self::from_file(RotatingFile::open(policy))
    }

    /// Wraps an already configured file (tests set short retry intervals this way).
    pub fn from_file(file: RotatingFile) -> Self {
        Self {
            inner: Arc::new(Mutex::new(file)),
        }
    }

    /// Records lost to I/O errors since start.
    pub fn dropped_records(&self) -> u64 {
        self.lock().dropped_records()
    }

    /// The most recent I/O problem, if the file is currently unusable.
    pub fn last_error(&self) -> Option<String> {
        self.lock().last_error().map(str::to_owned)
    }

    /// A poisoned lock only means another thread panicked mid-write; the file state is still
    /// consistent enough to keep logging, and logging must never panic.
    fn lock(&self) -> MutexGuard<'_, RotatingFile> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Per-event handle given out by [`MakeWriter`]; each `write` call is one record.
#[derive(Debug)]
pub struct RecordWriter<'a> {
    owner: &'a RotatingFileWriter,
}

impl Write for RecordWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.owner.lock().write_record(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for RotatingFileWriter {
    type Writer = RecordWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        RecordWriter { owner: self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(dir: &Path, max_file_size: u64, max_files: u32) -> RotationPolicy {
        RotationPolicy::new(dir.join("edge-agent.log"), max_file_size, max_files).unwrap()
    }

    fn read(path: &Path) -> String {
        fs::read_to_string(path).unwrap_or_default()
    }

    fn line(tag: char, len: usize) -> Vec<u8> {
        let mut line = vec![tag as u8; len - 1];
        line.push(b'\n');
        line
    }

    #[test]
    fn a_record_that_exactly_fills_the_file_stays_and_the_next_one_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let policy = policy(dir.path(), 100, 3);
        let mut file = RotatingFile::open(policy.clone());

        file.write_record(&line('a', 60));
        file.write_record(&line('b', 40));
        assert_eq!(fs::metadata(policy.file_path(0)).unwrap().len(), 100);
        assert!(
            !policy.file_path(1).exists(),
            "rotated although it fit exactly"
        );

        file.write_record(&line('c', 1));
        assert_eq!(read(&policy.file_path(1)).len(), 100);
        assert_eq!(read(&policy.file_path(0)), "\n");
    }

    #[test]
    fn oldest_file_is_dropped_and_names_shift() {
        let dir = tempfile::tempdir().unwrap();
        let policy = policy(dir.path(), 64, 3);
        let mut file = RotatingFile::open(policy.clone());

        for tag in ['a', 'b', 'c', 'd'] {
            file.write_record(&line(tag, 64));
        }
        assert_eq!(
            read(&policy.file_path(0)),
            String::from_utf8(line('d', 64)).unwrap()
        );
        assert_eq!(
            read(&policy.file_path(1)),
            String::from_utf8(line('c', 64)).unwrap()
        );
        assert_eq!(
            read(&policy.file_path(2)),
            String::from_utf8(line('b', 64)).unwrap()
        );
        assert!(!policy.file_path(3).exists());
    }

    #[test]
    fn an_oversized_record_is_truncated_with_a_marker_and_never_exceeds_the_file_size() {
        let dir = tempfile::tempdir().unwrap();
        let policy = policy(dir.path(), 64, 2);
        let mut file = RotatingFile::open(policy.clone());

        // Multi-byte characters around the cut must not be split.
        let huge = "é".repeat(500) + "\n";
        file.write_record(huge.as_bytes());

        let written = read(&policy.file_path(0));
        assert!(written.len() <= 64, "wrote {} bytes", written.len());
        assert!(written.ends_with(" [truncated]\n"), "{written:?}");
        assert!(written.starts_with("éé"));
    }

    #[test]
    fn a_single_file_is_emptied_instead_of_rotated() {
        let dir = tempfile::tempdir().unwrap();
        let policy = policy(dir.path(), 64, 1);
        let mut file = RotatingFile::open(policy.clone());

        file.write_record(&line('a', 50));
        file.write_record(&line('b', 50));

        assert_eq!(
            read(&policy.file_path(0)),
            String::from_utf8(line('b', 50)).unwrap()
        );
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_removed_directory_is_recreated_and_lines_written_meanwhile_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let log_dir = dir.path().join("logs");
        let policy = policy(&log_dir, 1000, 2);
        let mut file =
            RotatingFile::open(policy.clone()).with_intervals(Duration::ZERO, Duration::ZERO);
        file.write_record(b"before\n");

        fs::remove_dir_all(&log_dir).unwrap();
        // A regular file where the directory should be makes the reopen fail.
        fs::write(&log_dir, b"in the way").unwrap();
        file.write_record(b"lost\n");
        assert_eq!(file.dropped_records(), 1);
        assert!(file.last_error().unwrap().contains("cannot open log file"));

        fs::remove_file(&log_dir).unwrap();
        file.write_record(b"after\n");
        assert_eq!(read(&policy.file_path(0)), "after\n");
        assert_eq!(file.last_error(), None);
    }

    #[test]
    fn a_deleted_live_file_is_recreated_on_the_next_write() {
        let dir = tempfile::tempdir().unwrap();
        let policy = policy(dir.path(), 1000, 2);
        let mut file =
            RotatingFile::open(policy.clone()).with_intervals(Duration::ZERO, Duration::ZERO);
        file.write_record(b"first\n");

        fs::remove_file(policy.path()).unwrap();
        file.write_record(b"second\n");

        assert_eq!(read(policy.path()), "second\n");
        assert_eq!(file.dropped_records(), 0);
    }

    #[test]
    fn a_full_disk_costs_the_line_but_neither_panics_nor_errors() {
        // /dev/full accepts the open and fails every write with ENOSPC, like a full SD card.
        // Its size stays 0, so the writer never tries to rotate (rename or remove) it.
        let policy = RotationPolicy::new(PathBuf::from("/dev/full"), 1000, 1).unwrap();
        let mut file = RotatingFile::open(policy);

        file.write_record(b"lost\n");

        assert_eq!(file.dropped_records(), 1);
        let error = file.last_error().unwrap();
        assert!(error.starts_with("cannot write log file"), "{error}");
    }

    #[test]
    fn failed_opens_are_not_retried_before_the_interval() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("not-a-dir");
        fs::write(&blocker, b"").unwrap();
        let mut file = RotatingFile::open(policy(&blocker, 1000, 2));

        fs::remove_file(&blocker).unwrap();
        file.write_record(b"still waiting\n");

        assert_eq!(file.dropped_records(), 1);
        assert!(!blocker.exists(), "reopened before the retry interval");
    }

    #[test]
    fn leftovers_from_a_larger_configuration_are_brought_under_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let policy = policy(dir.path(), 64, 2);
        let mut old_live = "x".repeat(100) + "\n";
        old_live.push_str("newest old line\n");
        fs::write(policy.file_path(0), &old_live).unwrap();
        fs::write(policy.file_path(2), "surplus\n").unwrap();
        fs::write(policy.file_path(7), "surplus\n").unwrap();
        // Exactly 64 bytes of whole lines at the end of an oversized rotated file.
        let old_rotated = "y".repeat(100) + "\n" + &"z".repeat(63) + "\n";
        fs::write(policy.file_path(1), &old_rotated).unwrap();

        let _file = RotatingFile::open(policy.clone());

        assert_eq!(read(&policy.file_path(0)), "newest old line\n");
        assert_eq!(read(&policy.file_path(1)), "z".repeat(63) + "\n");
        assert!(!policy.file_path(2).exists());
        assert!(!policy.file_path(7).exists());
    }

    #[test]
    fn the_writer_counts_records_dropped_by_any_clone() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        fs::write(&blocker, b"").unwrap();
        let writer = RotatingFileWriter::open(policy(&blocker, 1000, 2));
        let clone = writer.clone();

        clone.make_writer().write_all(b"lost\n").unwrap();

        assert_eq!(writer.dropped_records(), 1);
        assert!(writer.last_error().is_some());
    }

    #[test]
    fn policy_rejects_limits_that_cannot_keep_the_promise() {
        let path = PathBuf::from("/tmp/x.log");
        assert_eq!(
            RotationPolicy::new(path.clone(), 10, 3),
            Err(PolicyError::FileSizeTooSmall { size: 10 })
        );
        assert_eq!(
            RotationPolicy::new(path, 1000, 0),
            Err(PolicyError::NoFiles)
        );
        assert!(matches!(
            RotationPolicy::new(PathBuf::from("/"), 1000, 1),
            Err(PolicyError::NoFileName(_))
        ));
    }
}
