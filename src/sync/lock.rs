//! The device lock the sync engine holds around every session with a device (L1–L3).
//!
//! [`DeviceLock`] is the interface; [`FlockLock`] is the same-box implementation (a kernel
//! `flock` on `<lock.dir>/<device id>.lock`). The MQTT arbiter of the lock issue implements the
//! same trait later and hands out real fencing tokens; the flock lock's token is always 0
//! ("no arbiter"), which events carry as their `fencing_token`.

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;
use thiserror::Error;

/// Why a device lock could not be taken.
#[derive(Debug, Error)]
pub enum LockError {
    /// Another process holds it (the vendor's PC software, a second agent, `probe` …).
    #[error(
        "the lock of device {device} is held by another process ({path}); tried {attempts} \
         times. Only one program may talk to a terminal at a time: stop the other one"
    )]
    Busy {
        /// The device.
        device: String,
        /// The lock file.
        path: PathBuf,
        /// Attempts made.
        attempts: u32,
    },
    /// The lock file could not be opened.
    #[error(
        "cannot open the lock file {path}: {source}. Check that [lock] dir exists and is writable"
    )]
    Io {
        /// The lock file.
        path: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
}

/// Proof of holding a device lock; dropping it releases the lock.
pub struct LockGuard {
    fencing_token: u64,
    _held: Box<dyn Send + Sync>,
}

impl LockGuard {
    /// A guard holding `held` (whatever keeps the lock) with its fencing token.
    pub fn new(fencing_token: u64, held: Box<dyn Send + Sync>) -> Self {
        Self {
            fencing_token,
            _held: held,
        }
    }

    /// The fencing token to put into every event written under this lock (0: no arbiter).
    pub fn fencing_token(&self) -> u64 {
        self.fencing_token
    }
}

/// The future returned by [`DeviceLock::acquire`].
pub type AcquireFuture<'a> =
    Pin<Box<dyn Future<Output = Result<LockGuard, LockError>> + Send + 'a>>;

/// A per-device mutual-exclusion lock. Object-safe so the engine can hold whichever
/// implementation the config picks.
pub trait DeviceLock: Send + Sync {
    /// Takes the lock of `device_id`, retrying as configured.
    fn acquire<'a>(&'a self, device_id: &'a str) -> AcquireFuture<'a>;
}

/// Same-box lock: `flock(LOCK_EX | LOCK_NB)` on a file per device, retried with a pause.
pub struct FlockLock {
    dir: PathBuf,
    attempts: u32,
    pause: Duration,
}

impl FlockLock {
    /// Lock files in `dir`; `attempts` tries (at least one) `pause` apart.
    pub fn new(dir: PathBuf, attempts: u32, pause: Duration) -> Self {
        Self {
            dir,
            attempts: attempts.max(1),
            pause,
        }
    }

    /// The lock `[lock]` configures (flock mode): its directory and attempts, a second apart.
    pub fn from_config(config: &crate::config::LockConfig) -> Self {
        Self::new(
            config.dir.clone(),
            config.acquire_retries,
            Duration::from_secs(1),
        )
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
            .join(format!("{}.lock", super::file_safe(device_id)))
    }
}

impl DeviceLock for FlockLock {
    fn acquire<'a>(&'a self, device_id: &'a str) -> AcquireFuture<'a> {
        Box::pin(async move {
            for attempt in 1..=self.attempts {
                if let Some(file) = self.try_once(device_id)? {
                    return Ok(LockGuard::new(0, Box::new(file)));
                }
                if attempt < self.attempts {
                    tokio::time::sleep(self.pause).await;
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
