//! A live-event listening session of one device, under its lock, between two polls.
//!
//! Why here and not in the driver: the lock is the engine's. The session takes the device lock
//! through [`crate::lock::YieldingLock::acquire_to_listen`] (only when nothing else in this
//! agent wants the device), runs inside the lock guard like a poll (so every packet checks the
//! fence and every punch carries the fencing token), and is asked to end when the next poll is
//! due, the loop is woken (`sync-now`, a connection), the agent stops, or the agent's own
//! backup, restore or conflict write wants the device. The driver ends it by itself when the
//! lock runs short. Asking it to end is cooperative: the driver unregisters and sends `EXIT`
//! while the lock is still held, so no part of the session runs outside it.

use super::Engine;
use crate::device::DeviceSession;
use crate::lifecycle::StopSignal;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

/// Why a listening session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenEnd {
    /// The next poll is due.
    PollDue,
    /// The device loop was woken (`sync-now`, a connection): poll now.
    Woken,
    /// The agent is stopping.
    Stopping,
    /// Something else in this agent wants the device; listen again once it is done.
    Yielded,
    /// The session ended by itself (its lock was about to end); listen again.
    Ended,
    /// The lock could not be taken or the session failed; the reason.
    Failed(String),
}

impl Engine {
    /// One listening session of `session`'s device until `until` (the next poll), `wake`, stop,
    /// or a yield; see the module docs.
    pub async fn listen<S: DeviceSession>(
        &self,
        session: &S,
        until: Instant,
        wake: &Notify,
        stop: &mut StopSignal,
    ) -> ListenEnd {
        let device = session.device_id();
        let turn = tokio::select! {
            turn = self.listen_lock().acquire_to_listen(device) => turn,
            _ = tokio::time::sleep_until(until) => return ListenEnd::PollDue,
            _ = wake.notified() => return ListenEnd::Woken,
            _ = stop.stopped() => return ListenEnd::Stopping,
        };
        let turn = match turn {
            Ok(turn) => turn,
            Err(err) => return ListenEnd::Failed(format!("listening skipped: {err}")),
        };
        let reported = self.live().lock_reported(device, turn.guard().fence());
        let (end, ending) = watch::channel(false);
        let yield_requested = turn.yield_requested();
        let mut asked: Option<ListenEnd> = None;
        let outcome = {
            let work = turn.guard().run(session.listen(&ending));
            tokio::pin!(work, yield_requested);
            loop {
                let why = tokio::select! {
                    outcome = &mut work => break outcome,
                    _ = &mut yield_requested, if asked.is_none() => ListenEnd::Yielded,
                    _ = tokio::time::sleep_until(until), if asked.is_none() => ListenEnd::PollDue,
                    _ = wake.notified(), if asked.is_none() => ListenEnd::Woken,
                    _ = stop.stopped(), if asked.is_none() => ListenEnd::Stopping,
                };
                tracing::debug!(device, ?why, "ending the live-event session");
                asked = Some(why);
                let _ = end.send(true);
            }
        };
        drop(reported);
        drop(turn);
        match outcome {
            Ok(Ok(())) => asked.unwrap_or(ListenEnd::Ended),
            Ok(Err(err)) => ListenEnd::Failed(err.to_string()),
            Err(lost) => ListenEnd::Failed(lost.to_string()),
        }
    }

    /// Waits until nothing else in this agent wants `device_id`: a listener that yielded lets
    /// the one it yielded to go first.
    pub async fn until_device_unwanted(&self, device_id: &str) {
        self.listen_lock().until_unwanted(device_id).await;
    }
}
