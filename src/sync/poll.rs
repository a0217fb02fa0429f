//! One poll of one device: lock → complete read → apply (or record the incomplete read).

use super::apply::Applied;
use super::credentials::StoreSink;
use super::{listed, state};
use super::{Engine, SyncError};
use crate::audit::Operation;
use crate::device::registry;
use crate::device::{
    Credential, DeviceSession, HeldCredential, PolledUsers, ReadError, ReadProgress, ReadSink,
};
use crate::live::{Live, ReadEnd};

/// The store sink of a poll, with its progress also reported to the live picture (what
/// `status` shows during a long read).
struct Reporting<'a> {
    inner: StoreSink,
    live: &'a Live,
    device_id: &'a str,
}

impl ReadSink for Reporting<'_> {
    fn held(&self, user_id: &str, slot: u16) -> Option<HeldCredential> {
        self.inner.held(user_id, slot)
    }

    fn credential(&mut self, credential: Credential) -> Result<(), String> {
        self.inner.credential(credential)
    }

    fn progress(&mut self, progress: ReadProgress) {
        self.live.read_progress(self.device_id, &progress);
        self.inner.progress(progress);
    }
}

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
        self.live().read_started(session.device_id());
        let outcome = self.poll_locked(session).await;
        let end = match &outcome {
            Ok(PollOutcome::Complete(applied)) => ReadEnd::Complete {
                users: applied.users as u64,
                lost: applied.missing.len() as u64,
            },
            Ok(PollOutcome::Incomplete(error)) => ReadEnd::NotComplete(error.to_string()),
            Err(error) => ReadEnd::NotComplete(error.to_string()),
        };
        let failed = matches!(end, ReadEnd::NotComplete(_));
        self.live().read_finished(session.device_id(), end);
        let facts = self.live().read_facts(session.device_id());
        if failed && facts.consecutive_incomplete > 1 {
            tracing::warn!(
                device = session.device_id(),
                in_a_row = facts.consecutive_incomplete,
                "{} reads in a row were not complete; the users are as of the last complete read",
                facts.consecutive_incomplete
            );
        }
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
        let reported = self.live().lock_reported(device_id, guard.fence());
        let outcome = match guard
            .run(self.read_and_apply(session, guard.fencing_token()))
            .await
        {
            Ok(outcome) => outcome,
            Err(lost) => Err(lost.into()),
        };
        drop(guard);
        drop(reported);
        outcome
    }

    async fn read_and_apply<S: DeviceSession>(
        &self,
        session: &S,
        fencing_token: u64,
    ) -> Result<PollOutcome, SyncError> {
        let device_id = session.device_id();
        self.check_registered_count(device_id).await?;
        let mut sink = Reporting {
            inner: StoreSink::new(self.store().clone(), device_id),
            live: self.live(),
            device_id,
        };
        let named = listed::nameable(self.store(), device_id)?;
        let read = session
            .poll_users(named.map(|named| named.list), &mut sink)
            .await;
        // The read's last value files made durable and their records inserted.
        sink.inner.finish()?;
        let outcome = match read {
            Ok(PolledUsers::Read(read)) => {
                let applied = self.apply_read(device_id, &read, fencing_token).await?;
                listed::after_complete_read(
                    self.store(),
                    device_id,
                    &read,
                    sink.inner.all_cached(),
                )?;
                PollOutcome::Complete(applied)
            }
            Ok(PolledUsers::ListedAsBefore(listed)) => {
                let Some(named) = named else {
                    // A driver answers this only to a named list; never apply it otherwise.
                    return Err(SyncError::Refused(format!(
                        "{device_id}: the driver answered \"listed as before\" to a poll that \
                         named no list"
                    )));
                };
                PollOutcome::Complete(
                    self.apply_listed_as_before(device_id, named, &listed, fencing_token)
                        .await?,
                )
            }
            Err(error) => {
                self.record_incomplete(device_id, &error).await?;
                PollOutcome::Incomplete(error)
            }
        };
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
