//! Self-fencing: a held lock's deadline, checked by the device drivers right before every
//! packet or command they send.
//!
//! A terminal cannot check a fencing token, so safety comes from the holder stopping on time:
//! the guard of a device lock carries a [`Fence`] (its deadline, moved forward by each
//! successful renewal, never past `lock.max_hold`), and the engine runs each device session
//! inside [`Fence::scope`]. The drivers call [`check_current`] before each device operation;
//! past the deadline (or once the lock is known lost) that fails with [`Fenced`] and the
//! session stops touching the device. A task-local carries the fence so that every driver
//! checks it without every driver signature naming it.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use thiserror::Error;

/// Why a session must stop touching its device.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error(
    "device {device}: the lock (token {token}) is no longer held: {why}; the session stops \
     touching the device"
)]
pub struct Fenced {
    /// The device.
    pub device: String,
    /// The token of the lock that was held.
    pub token: u64,
    /// What ended it (deadline passed, lost, held too long).
    pub why: String,
}

/// The deadline of one held lock; cheap to clone (shared).
#[derive(Clone, Debug)]
pub struct Fence(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    device: String,
    token: u64,
    acquired: Instant,
    /// Never extended past this (`acquired + lock.max_hold`).
    cap: Instant,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    deadline: Instant,
    lost: Option<String>,
}

impl Fence {
    /// A fence for the lock of `device` with `token`, valid until `deadline` and never past
    /// `acquired + max_hold`.
    pub fn new(
        device: &str,
        token: u64,
        acquired: Instant,
        deadline: Instant,
        max_hold: Duration,
    ) -> Fence {
        let cap = acquired + max_hold;
        Fence(Arc::new(Inner {
            device: device.to_string(),
            token,
            acquired,
            cap,
            state: Mutex::new(State {
                deadline: deadline.min(cap),
                lost: None,
            }),
        }))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The device this fence guards.
    pub fn device(&self) -> &str {
        &self.0.device
    }

    /// The fencing token of the lock.
    pub fn token(&self) -> u64 {
        self.0.token
    }

    /// When the lock was acquired (monotonic).
    pub fn acquired(&self) -> Instant {
        self.0.acquired
    }

    /// The latest the deadline can ever be (`acquired + max_hold`).
    pub fn cap(&self) -> Instant {
        self.0.cap
    }

    /// The current deadline.
    pub fn deadline(&self) -> Instant {
        self.state().deadline
    }

    /// How long the lock is still good for (zero once past the deadline or lost).
    pub fn remaining(&self) -> Duration {
        let state = self.state();
        if state.lost.is_some() {
            return Duration::ZERO;
        }
        state.deadline.saturating_duration_since(Instant::now())
    }

    /// `Ok` while the lock may be used: not lost and before the deadline.
    pub fn check(&self) -> Result<(), Fenced> {
        let state = self.state();
        let why = match &state.lost {
            Some(why) => why.clone(),
            None if Instant::now() >= state.deadline => {
                if state.deadline >= self.0.cap {
                    "held longer than lock.max_hold".to_string()
                } else {
                    "its deadline passed without a renewal".to_string()
                }
            }
            None => return Ok(()),
        };
        Err(Fenced {
            device: self.0.device.clone(),
            token: self.0.token,
            why,
        })
    }

    /// Moves the deadline forward to `deadline` (a successful renewal), never past the cap and
    /// never backwards; nothing once lost. Returns whether the cap limited it.
    pub(crate) fn extend(&self, deadline: Instant) -> bool {
        let mut state = self.state();
        if state.lost.is_none() && deadline > state.deadline {
            state.deadline = deadline.min(self.0.cap);
        }
        deadline >= self.0.cap
    }

    /// Marks the lock lost: every later check fails. The first reason wins.
    pub(crate) fn lose(&self, why: &str) {
        let mut state = self.state();
        if state.lost.is_none() {
            state.lost = Some(why.to_string());
        }
    }

    /// Whether the lock was marked lost.
    pub fn is_lost(&self) -> bool {
        self.state().lost.is_some()
    }

    /// Runs `work` (a device session) with this fence as the one [`check_current`] checks.
    pub async fn scope<F: Future>(&self, work: F) -> F::Output {
        CURRENT.scope(self.clone(), work).await
    }
}

tokio::task_local! {
    static CURRENT: Fence;
}

/// Checks the fence of the session running in this task, if any: what every driver calls right
/// before it sends something to a device. Outside a [`Fence::scope`] there is nothing to check
/// (drivers' own tests); the engine always opens one around a device session.
pub fn check_current() -> Result<(), Fenced> {
    CURRENT.try_with(Fence::check).unwrap_or(Ok(()))
}

/// How long the lock of the session running in this task is still good for, if there is one:
/// a session that would otherwise run on (a live-event listener) ends itself before it.
pub fn current_remaining() -> Option<Duration> {
    CURRENT.try_with(Fence::remaining).ok()
}

/// The fencing token of the lock the running task's device session holds, if any: what an
/// event about a fact observed in that session carries (punches read by a poll or backfill).
pub fn current_token() -> Option<u64> {
    CURRENT.try_with(Fence::token).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_session_past_its_deadline_is_fenced() {
        let now = Instant::now();
        let fence = Fence::new(
            "door",
            7,
            now,
            now + Duration::from_millis(30),
            Duration::from_secs(60),
        );
        fence
            .scope(async {
                assert!(check_current().is_ok());
                tokio::time::sleep(Duration::from_millis(40)).await;
                let err = check_current().unwrap_err();
                assert_eq!(err.token, 7);
                assert!(err.why.contains("deadline"), "{err}");
            })
            .await;
        assert!(
            check_current().is_ok(),
            "outside a scope nothing is checked"
        );
    }

    #[test]
    fn renewals_never_pass_max_hold_and_a_loss_is_final() {
        let now = Instant::now();
        let fence = Fence::new(
            "door",
            1,
            now,
            now + Duration::from_secs(1),
            Duration::from_secs(5),
        );
        assert!(!fence.extend(now + Duration::from_secs(3)));
        assert!(fence.extend(now + Duration::from_secs(30)));
        assert_eq!(fence.deadline(), now + Duration::from_secs(5));
        fence.lose("arbiter says stale");
        fence.extend(now + Duration::from_secs(4));
        assert!(fence.check().unwrap_err().why.contains("stale"));
        assert_eq!(fence.remaining(), Duration::ZERO);
    }
}
