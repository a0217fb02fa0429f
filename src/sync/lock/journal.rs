//! What happens to a held lock, told once to everyone who must know: the audit log (acquired,
//! renewed, lost, released, held too long, with device and token), the log a technician reads,
//! and the `LockLost` alarm when the lock was lost while held.

use crate::audit::{Audit, AuditEntry, Operation};
use crate::store::{Alarm, AlarmKind, Store};
use std::time::Duration;

/// One thing that happened to a held lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockNote {
    /// Granted, valid for `lease` (flock: until released or `max_hold`).
    Acquired {
        /// The lease granted (`None`: flock, no lease).
        lease: Option<Duration>,
    },
    /// The arbiter renewed the lease.
    Renewed,
    /// The lock was lost while held: the session stopped touching the device.
    Lost(String),
    /// Released by its holder.
    Released {
        /// How long it was held.
        held: Duration,
    },
    /// Held longer than `lock.max_hold`: fenced, then released with a warning.
    HeldTooLong {
        /// The limit that was reached.
        max_hold: Duration,
    },
}

/// Where lock notes go: the agent's audit log and alarms (none for tools without a store).
#[derive(Clone)]
pub struct LockJournal {
    store: Option<Store>,
    holder: String,
}

impl LockJournal {
    /// Notes recorded in `store`'s audit log and alarms, naming `holder` as the actor.
    pub fn new(store: Option<Store>, holder: &str) -> LockJournal {
        LockJournal {
            store,
            holder: holder.to_string(),
        }
    }

    /// The holder name recorded (the agent id).
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Records `note` about the lock of `device` with `token`.
    pub fn note(&self, device: &str, token: u64, note: &LockNote) {
        let detail = match note {
            LockNote::Acquired { lease: Some(lease) } => {
                format!("lock acquired, token {token}, lease {}", secs(*lease))
            }
            LockNote::Acquired { lease: None } => format!("lock acquired, token {token} (flock)"),
            LockNote::Renewed => format!("lock renewed, token {token}"),
            LockNote::Lost(why) => format!("lock lost, token {token}: {why}"),
            LockNote::Released { held } => {
                format!("lock released, token {token}, held {}", secs(*held))
            }
            LockNote::HeldTooLong { max_hold } => format!(
                "lock held longer than lock.max_hold ({}), token {token}: the session was \
                 stopped and the lock released",
                secs(*max_hold)
            ),
        };
        match note {
            LockNote::Lost(_) => tracing::error!(device, token, "{detail}"),
            LockNote::HeldTooLong { .. } => tracing::warn!(device, token, "{detail}"),
            LockNote::Renewed => tracing::debug!(device, token, "{detail}"),
            _ => tracing::info!(device, token, "{detail}"),
        }
        let Some(store) = &self.store else { return };
        let entry = AuditEntry {
            at_unix_ms: chrono::Utc::now().timestamp_millis(),
            operation: Operation::Lock,
            device_id: Some(device.to_string()),
            device_user_id: None,
            actor: self.holder.clone(),
            detail: detail.clone(),
        };
        if let Err(err) = Audit::new(store.clone()).record(&entry) {
            tracing::error!(device, %err, "cannot record the lock in the audit log");
        }
        if let LockNote::Lost(why) = note {
            let alarm = Alarm {
                raised_at_unix_ms: entry.at_unix_ms,
                kind: AlarmKind::LockLost {
                    device_id: device.to_string(),
                    detail: why.clone(),
                },
                message: format!(
                    "{detail}. What the agent was doing with the device stopped; it retries at \
                     the next poll. Check the broker and the lock arbiter"
                ),
            };
            if let Err(err) = store.raise_alarm(&alarm) {
                tracing::error!(device, %err, "cannot raise the lock-lost alarm");
            }
        }
        if matches!(note, LockNote::Lost(_) | LockNote::HeldTooLong { .. }) {
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                let store = store.clone();
                handle.spawn(async move {
                    if let Err(err) = store.make_durable().await {
                        tracing::error!(%err, "cannot make the lock audit entry durable");
                    }
                });
            }
        }
    }
}

fn secs(duration: Duration) -> String {
    format!("{:.1}s", duration.as_secs_f64())
}
