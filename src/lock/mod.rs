//! The device lock the sync engine holds around every session with a device.
//!
//! [`DeviceLock`] is the one interface: `acquire(device)` returns a [`LockGuard`] with a
//! fencing token and a [`Fence`] (the deadline the drivers check before every device
//! operation); dropping the guard releases the lock. Implementations:
//! - [`FlockLock`] (`[lock] mode = "flock"`): a kernel `flock` per device file, for contenders
//!   on one box; token 0;
//! - `arbiter::ArbiterLock` (`mode = "arbiter"`): leases from the site's lock arbiter over
//!   MQTT 5, with fencing tokens that strictly increase; the agent takes the device's flock
//!   first (`arbiter::Layered`), so local tools are excluded too.
//!
//! This module is the interface and the same-box lock, low enough for the drivers to check
//! the fence; the arbiter and its client live in `crate::arbiter`, beside the MQTT plane.
//!
//! Acquired, renewed, lost, released and held-too-long go to the audit log ([`LockJournal`]).
//! `docs/locks.md` is the protocol.

pub mod fence;
mod flock;
mod journal;
mod yielding;

pub use fence::{Fence, Fenced};
pub use flock::FlockLock;
pub use journal::{LockJournal, LockNote};
pub use yielding::{ListenTurn, YieldingLock};

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
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
    ///
    /// Every line logged during the session runs in a `lock{device=… fencing_token=…}` span,
    /// so a session a terminal recorded can be matched with the lock the agent held for it
    /// (the Jepsen-style suite joins them by the session's local address).
    pub async fn run<F: Future>(&self, work: F) -> Result<F::Output, LockError> {
        use tracing::Instrument;
        self.fence.check()?;
        let span = tracing::info_span!(
            "lock",
            device = self.fence.device(),
            fencing_token = self.fence.token()
        );
        Ok(self.fence.scope(work).instrument(span).await)
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
