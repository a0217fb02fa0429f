//! The device lock as the engine holds it, with a way for a long, optional session (a ZK
//! live-event listener) to give the device up whenever the agent's own work wants it.
//!
//! Why: a listener keeps a session open between polls, so it holds the device lock for minutes.
//! Without this, the agent's own backup, restore or conflict write would find its own lock
//! busy. [`YieldingLock`] wraps the configured lock: every ordinary [`DeviceLock::acquire`]
//! through it first announces that it wants the device, waits until no listener holds it, then
//! takes the lock as before. A listener takes the lock with [`YieldingLock::acquire_to_listen`],
//! which waits while anyone wants the device, and watches [`ListenTurn::yield_requested`] to
//! end its session (and drop its guard) as soon as someone does. The listener never bypasses
//! the lock: it holds an ordinary guard with its fence, so another process or agent contends
//! for the device exactly as with a poll.

use super::{AcquireFuture, DeviceLock, LockError, LockGuard};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Who wants or holds one device, as far as this agent is concerned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Claims {
    /// Ordinary acquisitions waiting or under way.
    wanted: usize,
    /// A listener holds (or is taking) the device.
    listening: bool,
}

/// The configured lock, with listeners that yield to everything else.
pub struct YieldingLock {
    inner: Arc<dyn DeviceLock>,
    devices: Mutex<HashMap<String, watch::Sender<Claims>>>,
}

impl YieldingLock {
    /// Wraps `inner`, the lock `[lock]` configures.
    pub fn new(inner: Arc<dyn DeviceLock>) -> YieldingLock {
        YieldingLock {
            inner,
            devices: Mutex::new(HashMap::new()),
        }
    }

    fn claims(&self, device_id: &str) -> watch::Sender<Claims> {
        let mut devices = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        devices
            .entry(device_id.to_string())
            .or_insert_with(|| watch::channel(Claims::default()).0)
            .clone()
    }

    /// Takes the lock of `device_id` for a listener: waits until nobody in this agent wants the
    /// device, then takes the configured lock. The turn ends, and must be given up, once
    /// [`ListenTurn::yield_requested`] fires.
    pub async fn acquire_to_listen(&self, device_id: &str) -> Result<ListenTurn, LockError> {
        let claims = self.claims(device_id);
        let mut seen = claims.subscribe();
        loop {
            let _ = seen.wait_for(|c| c.wanted == 0 && !c.listening).await;
            let mut taken = false;
            claims.send_if_modified(|c| {
                taken = c.wanted == 0 && !c.listening;
                c.listening |= taken;
                taken
            });
            if taken {
                break;
            }
        }
        let marker = Listening(claims.clone());
        let guard = self.inner.acquire(device_id).await?;
        Ok(ListenTurn {
            guard,
            claims: claims.subscribe(),
            _listening: marker,
        })
    }

    /// Waits until nobody in this agent wants `device_id` (a listener that yielded waits here
    /// before it listens again, so the one it yielded to gets the device first).
    pub async fn until_unwanted(&self, device_id: &str) {
        let mut seen = self.claims(device_id).subscribe();
        let _ = seen.wait_for(|c| c.wanted == 0).await;
    }
}

/// Clears the listening claim however the listener's turn ends.
struct Listening(watch::Sender<Claims>);

impl Drop for Listening {
    fn drop(&mut self) {
        self.0.send_modify(|c| c.listening = false);
    }
}

/// Counts one ordinary acquisition while it waits and runs.
struct Wanting(watch::Sender<Claims>);

impl Drop for Wanting {
    fn drop(&mut self) {
        self.0.send_modify(|c| c.wanted -= 1);
    }
}

/// A listener's hold on a device: its guard (drop the turn to release the lock) and the signal
/// to give it up.
pub struct ListenTurn {
    guard: LockGuard,
    claims: watch::Receiver<Claims>,
    // Declared last: the lock is released before the claim is cleared, so whoever waits for
    // the listener to leave finds the lock free.
    _listening: Listening,
}

impl ListenTurn {
    /// The lock held for the listener's session.
    pub fn guard(&self) -> &LockGuard {
        &self.guard
    }

    /// Completes when something else in this agent wants the device (a future of its own, so
    /// the guard can be used while it is awaited).
    pub fn yield_requested(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut claims = self.claims.clone();
        async move {
            let _ = claims.wait_for(|c| c.wanted > 0).await;
        }
    }
}

impl DeviceLock for YieldingLock {
    fn acquire<'a>(&'a self, device_id: &'a str) -> AcquireFuture<'a> {
        Box::pin(async move {
            let claims = self.claims(device_id);
            claims.send_modify(|c| c.wanted += 1);
            let wanting = Wanting(claims.clone());
            let mut seen = claims.subscribe();
            let _ = seen.wait_for(|c| !c.listening).await;
            let guard = self.inner.acquire(device_id).await?;
            // The claim lasts as long as the guard (released first, then the claim), so a
            // listener does not take the device back while this session runs.
            let fence = guard.fence().clone();
            Ok(LockGuard::new(fence, Box::new((guard, wanting))))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lock::FlockLock;
    use std::time::Duration;

    #[tokio::test]
    async fn a_listener_yields_to_an_ordinary_acquire_and_waits_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let flock: Arc<dyn DeviceLock> = Arc::new(FlockLock::new(
            dir.path().to_path_buf(),
            1,
            Duration::from_millis(10),
        ));
        let lock = Arc::new(YieldingLock::new(flock));
        let turn = lock.acquire_to_listen("d").await.unwrap();
        let other = Arc::clone(&lock);
        let backup = tokio::spawn(async move {
            let guard = other.acquire("d").await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(guard);
        });
        tokio::time::timeout(Duration::from_secs(5), turn.yield_requested())
            .await
            .expect("the listener is asked to yield");
        drop(turn);
        // The listener comes back only after the backup is done.
        let again = tokio::time::timeout(Duration::from_secs(5), async {
            lock.until_unwanted("d").await;
            lock.acquire_to_listen("d").await
        })
        .await
        .unwrap()
        .unwrap();
        assert!(backup.is_finished());
        backup.await.unwrap();
        drop(again);
    }
}
