//! Same-box lock: a kernel `flock(LOCK_EX | LOCK_NB)` on `<lock.dir>/<device id>.lock`. The
//! kernel releases it the instant the holder dies, even on `kill -9`. Other local tools that
//! talk to a terminal take the same lock with `flock(1)`:
//! `flock -w 30 /run/edge-agent/locks/<device id>.lock <command>` (see `docs/locks.md`; the
//! device id is the file name with `/` and other unsafe bytes percent-encoded).

use super::fence::Fence;
use super::journal::{LockJournal, LockNote};
use super::{AcquireFuture, DeviceLock, LockError, LockGuard};
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Same-box lock: `flock(LOCK_EX | LOCK_NB)` on a file per device, retried with a pause.
pub struct FlockLock {
    dir: PathBuf,
    attempts: u32,
    pause: Duration,
    max_hold: Duration,
    journal: Option<LockJournal>,
}

impl FlockLock {
    /// Lock files in `dir`; `attempts` tries (at least one) `pause` apart.
    pub fn new(dir: PathBuf, attempts: u32, pause: Duration) -> Self {
        Self {
            dir,
            attempts: attempts.max(1),
            pause,
            max_hold: Duration::from_secs(600),
            journal: None,
        }
    }

    /// The lock `[lock]` configures: its directory, attempts a second apart, `max_hold`, and
    /// the journal its acquisitions and releases are told to (`None` when it only guards
    /// another lock: that one journals).
    pub fn from_config(config: &crate::config::LockConfig, journal: Option<LockJournal>) -> Self {
        Self {
            max_hold: config.max_hold.get(),
            journal,
            ..Self::new(
                config.dir.clone(),
                config.acquire_retries,
                Duration::from_secs(1),
            )
        }
    }

    fn try_once(&self, device_id: &str) -> Result<Option<File>, LockError> {
        let path = self.path(device_id);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        // SAFETY: flock on a descriptor we own; no memory is passed.
        let result = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if result == 0 {
            return Ok(Some(file));
        }
        let error = std::io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
            Ok(None)
        } else {
            Err(io(error))
        }
    }

    fn path(&self, device_id: &str) -> PathBuf {
        self.dir
            .join(format!("{}.lock", crate::config::file_safe(device_id)))
    }
}

/// A held flock: the open file, plus the watchdog that closes the fence at `max_hold`.
struct Held {
    _file: File,
    fence: Fence,
    watchdog: Option<tokio::task::JoinHandle<()>>,
    journal: Option<LockJournal>,
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(watchdog) = self.watchdog.take() {
            watchdog.abort();
        }
        if let Some(journal) = &self.journal {
            if !self.fence.is_lost() {
                journal.note(
                    self.fence.device(),
                    0,
                    &LockNote::Released {
                        held: self.fence.acquired().elapsed(),
                    },
                );
            }
        }
        self.fence.lose("released");
    }
}

impl DeviceLock for FlockLock {
    fn acquire<'a>(&'a self, device_id: &'a str) -> AcquireFuture<'a> {
        Box::pin(async move {
            for attempt in 1..=self.attempts {
                if let Some(file) = self.try_once(device_id)? {
                    let now = Instant::now();
                    let fence = Fence::new(device_id, 0, now, now + self.max_hold, self.max_hold);
                    if let Some(journal) = &self.journal {
                        journal.note(device_id, 0, &LockNote::Acquired { lease: None });
                    }
                    let watchdog = self.journal.clone().and_then(|journal| {
                        let fence = fence.clone();
                        let handle = tokio::runtime::Handle::try_current().ok()?;
                        Some(handle.spawn(async move {
                            tokio::time::sleep_until(fence.cap().into()).await;
                            fence.lose("held longer than lock.max_hold");
                            journal.note(
                                fence.device(),
                                0,
                                &LockNote::HeldTooLong {
                                    max_hold: fence.cap() - fence.acquired(),
                                },
                            );
                        }))
                    });
                    let held = Held {
                        _file: file,
                        fence: fence.clone(),
                        watchdog,
                        journal: self.journal.clone(),
                    };
                    return Ok(LockGuard::new(fence, Box::new(held)));
                }
                if attempt < self.attempts {
                    // Half to one and a half pauses: a fixed pause falls in step with a holder
                    // that polls back to back, and one agent then starves the others (seen in
                    // the Jepsen-style suite's flock runs).
                    let spread = 0.5 + crate::backoff::random_fraction();
                    tokio::time::sleep(self.pause.mul_f64(spread)).await;
                }
            }
            Err(LockError::Busy {
                device: device_id.to_string(),
                path: self.path(device_id),
                attempts: self.attempts,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_holder_is_refused_until_the_first_releases() {
        let dir = tempfile::tempdir().unwrap();
        let lock = FlockLock::new(dir.path().to_path_buf(), 2, Duration::from_millis(10));
        let held = lock.acquire("door/1").await.unwrap();
        assert_eq!(held.fencing_token(), 0);
        let refused = lock.acquire("door/1").await.err().expect("busy");
        assert!(
            matches!(refused, LockError::Busy { attempts: 2, .. }),
            "{refused}"
        );
        assert!(
            lock.acquire("door-2").await.is_ok(),
            "other devices are independent"
        );
        drop(held);
        assert!(lock.acquire("door/1").await.is_ok());
    }
}
