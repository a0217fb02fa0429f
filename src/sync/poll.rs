//! One poll of one device: lock → complete read → apply (or record the incomplete read).

use super::apply::Applied;
use super::credentials::StoreSink;
use super::state;
use super::{Engine, SyncError};
use crate::audit::Operation;
use crate::device::registry;
use crate::device::{DeviceSession, FetchMode, ReadError};

/// How a poll ended, when it could talk to the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollOutcome {
    /// A complete read, applied and durable.
    Complete(Applied),
    /// The read was incomplete; only the audit log changed.
    Incomplete(ReadError),
}

impl Engine {
    /// Polls the device behind `session` once, under its lock (see the module docs), and
    /// records how it went in the device's [`super::DeviceHealth`].
    pub async fn poll<S: DeviceSession>(&self, session: &S) -> Result<PollOutcome, SyncError> {
        let outcome = self.poll_locked(session).await;
        let health = match &outcome {
            Ok(PollOutcome::Complete(_)) => Ok(()),
            Ok(PollOutcome::Incomplete(error)) => Err(error.to_string()),
            Err(error) => Err(error.to_string()),
        };
        self.record_attempt(session.device_id(), health);
        outcome
    }

    async fn poll_locked<S: DeviceSession>(&self, session: &S) -> Result<PollOutcome, SyncError> {
        let device_id = session.device_id();
        let guard = match self.lock().acquire(device_id).await {
            Ok(guard) => guard,
            Err(err) => {
                let detail = format!("poll skipped: {err}");
                self.audit_now(device_id, None, Operation::Lock, "agent", detail)
                    .await?;
                return Err(err.into());
            }
        };
        self.check_registered_count(device_id).await?;
        let mut sink = StoreSink::new(self.store().clone(), device_id);
        let outcome = match session.read_users(FetchMode::Missing, &mut sink).await {
            Ok(read) => PollOutcome::Complete(
                self.apply_read(device_id, &read, guard.fencing_token())
                    .await?,
            ),
            Err(error) => {
                self.record_incomplete(device_id, &error).await?;
                PollOutcome::Incomplete(error)
            }
        };
        drop(guard);
        Ok(outcome)
    }

    /// B4's cheap signal: the device announced fewer users at registration than the last
    /// complete read found. Without a complete read that is a warning only, never a
    /// missing-user alert; the read that follows decides.
    async fn check_registered_count(&self, device_id: &str) -> Result<(), SyncError> {
        let Some(registration) = registry::recall(self.store(), device_id)? else {
            return Ok(());
        };
        let (Some(announced), state) = (registration.users, state::load(self.store(), device_id)?)
        else {
            return Ok(());
        };
        let newer = state
            .last_complete_read_ms
            .is_some_and(|read| registration.registered_at_ms > read);
        let already = {
            let mut checked = self
                .count_checked
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            checked.insert(device_id.to_string(), registration.registered_at_ms)
                == Some(registration.registered_at_ms)
        };
        if !newer || already || announced >= state.users {
            return Ok(());
        }
        let detail = format!(
            "device announced {announced} users at registration, the last complete read found \
             {}; not a missing-user alert until a complete read confirms it",
            state.users
        );
        tracing::warn!(
            device = device_id,
            announced,
            last_read = state.users,
            "{detail}"
        );
        self.audit_now(device_id, None, Operation::CountDropped, "agent", detail)
            .await
    }
}
