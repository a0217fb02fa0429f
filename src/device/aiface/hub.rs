//! Which AI06 devices are connected right now. AI06 terminals dial in, so a read cannot open a
//! session on demand: it asks the hub for the device's current connection, waiting a while for
//! the device to (re)connect.
//!
//! A newer connection from the same device replaces the old one (the terminal reconnected, and
//! the old TCP connection is half-dead); the old session is closed so nothing waits on it.

use super::session::AifaceSession;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;

/// The live sessions, by configured device id.
pub struct AifaceHub {
    sessions: Mutex<HashMap<String, AifaceSession>>,
    changed: watch::Sender<u64>,
}

impl Default for AifaceHub {
    fn default() -> Self {
        Self {
            sessions: Mutex::new(HashMap::new()),
            changed: watch::channel(0).0,
        }
    }
}

impl AifaceHub {
    /// Installs a new session for its device, closing the one it replaces.
    pub(super) fn install(&self, session: AifaceSession) {
        let replaced = self
            .lock()
            .insert(session.device_id().to_string(), session.clone());
        if let Some(old) = replaced {
            tracing::info!(
                device = %session.device_id(),
                "device reconnected; the previous connection is closed"
            );
            old.close();
        }
        self.changed.send_modify(|n| *n += 1);
    }

    /// Removes a session when its connection ends, unless a newer one already replaced it.
    pub(super) fn remove(&self, session: &AifaceSession) {
        let mut sessions = self.lock();
        if sessions
            .get(session.device_id())
            .is_some_and(|current| current.same_as(session))
        {
            sessions.remove(session.device_id());
        }
        drop(sessions);
        self.changed.send_modify(|n| *n += 1);
    }

    /// The device's live session, waiting up to `wait` for it to connect.
    pub async fn session(&self, device_id: &str, wait: Duration) -> Option<AifaceSession> {
        let mut changes = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(session) = self.connected(device_id) {
                return Some(session);
            }
            if tokio::time::timeout_at(deadline, changes.changed())
                .await
                .is_err()
            {
                return None;
            }
        }
    }

    /// The device's live session, if it is connected now.
    pub fn connected(&self, device_id: &str) -> Option<AifaceSession> {
        self.lock()
            .get(device_id)
            .filter(|session| !session.is_closed())
            .cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, AifaceSession>> {
        self.sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
