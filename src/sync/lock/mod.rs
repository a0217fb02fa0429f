//! The device lock the sync engine holds around every session with a device.
//!
//! [`DeviceLock`] is the one interface: `acquire(device)` returns a [`LockGuard`] with a
//! fencing token and a [`Fence`] (the deadline the drivers check before every device
//! operation); dropping the guard releases the lock. Implementations:
//! - [`FlockLock`] (`[lock] mode = "flock"`): a kernel `flock` per device file, for contenders
//!   on one box; token 0;
//! - [`ArbiterLock`] (`mode = "arbiter"`): leases from the site's lock arbiter over MQTT 5
//!   ([`arbiter`]), with fencing tokens that strictly increase; the agent takes the device's
//!   flock first ([`Layered`]), so local tools are excluded too.
//!
//! Acquired, renewed, lost, released and held-too-long go to the audit log ([`LockJournal`]).
//! `docs/locks.md` is the protocol.

pub mod arbiter;
mod client;
pub mod fence;
mod flock;
mod journal;
pub mod table;
pub mod wire;

pub use client::ArbiterLock;
pub use fence::{Fence, Fenced};
pub use flock::FlockLock;
pub use journal::{LockJournal, LockNote};

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;
use thiserror::Error;

/// Why a device lock could not be taken.
#[derive(Debug, Error)]
pub enum LockError {
    /// Another process on this box holds it (the vendor's PC software, a second agent,
    /// `probe` …).
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
    /// The arbiter did not grant it (held elsewhere, in its lock-delay, or unreachable).
    #[error(
        "the lock arbiter did not grant the lock of device {device} after {attempts} attempts: \
         {why}"
    )]
    NotGranted {
        /// The device.
        device: String,
        /// Attempts made.
        attempts: u32,
        /// The last answer, or why there was none.
        why: String,
    },
    /// The lock was lost while the session ran (see [`Fenced`]).
    #[error(transparent)]
    Fenced(#[from] Fenced),
}

/// Proof of holding a device lock; dropping it releases the lock.
pub struct LockGuard {
    fence: Fence,
    _held: Box<dyn Send + Sync>,
}

impl LockGuard {
    /// A guard over `fence` holding `held` (whatever keeps the lock).
    pub fn new(fence: Fence, held: Box<dyn Send + Sync>) -> Self {
        Self { fence, _held: held }
    }

    /// The fencing token to put into every event written under this lock (0: flock only).
    pub fn fencing_token(&self) -> u64 {
        self.fence.token()
    }

    /// The lock's deadline, for the session to check and to run inside.
    pub fn fence(&self) -> &Fence {
        &self.fence
    }

    /// Runs `work` (a device session) under this lock: every device operation in it checks
    /// the deadline first. Fails without running it when the lock is already lost.
    pub async fn run<F: Future>(&self, work: F) -> Result<F::Output, LockError> {
        self.fence.check()?;
        Ok(self.fence.scope(work).await)
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

/// Two locks taken in order, released in reverse: the box's flock, then the arbiter's lease.
/// The guard carries the second one's token and fence.
pub struct Layered {
    first: FlockLock,
    second: ArbiterLock,
}

impl DeviceLock for Layered {
    fn acquire<'a>(&'a self, device_id: &'a str) -> AcquireFuture<'a> {
        Box::pin(async move {
            let local = self.first.acquire(device_id).await?;
            let remote = self.second.acquire(device_id).await?;
            let fence = remote.fence.clone();
            // Fields drop in order: the lease is released before the flock.
            Ok(LockGuard::new(fence, Box::new((remote, local))))
        })
    }
}

/// The lock the config asks for, with its journal. Arbiter mode needs a tokio runtime (its
/// MQTT connection is a task) and `[mqtt] host`; `purpose` ends the client id of that
/// connection (`lock` for the agent, `probe-lock` for `probe`), so two programs of one box
/// never share a client id.
pub fn from_config(
    config: &crate::config::Config,
    journal: LockJournal,
    purpose: &str,
) -> Result<std::sync::Arc<dyn DeviceLock>, crate::mqtt::broker::BrokerError> {
    Ok(match config.lock.mode {
        crate::config::LockMode::Flock => {
            std::sync::Arc::new(FlockLock::from_config(&config.lock, Some(journal)))
        }
        crate::config::LockMode::Arbiter => std::sync::Arc::new(Layered {
            first: FlockLock::from_config(&config.lock, None),
            second: ArbiterLock::from_config(config, journal, purpose)?,
        }),
    })
}

/// The renewal period of a lease (a third of it), for config checks and docs.
pub fn renewal_period(lease: Duration) -> Duration {
    lease / 3
}
