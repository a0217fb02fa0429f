//! Device drivers: they drive the sans-IO protocol code in `device-protocols` over real I/O and
//! produce *complete reads* or errors — never a partial list that could be mistaken for users
//! having left (invariant 2).
//!
//! Drivers can only add or update users on a device. The command types they use
//! (`device_protocols::aiface::Command`, the ZK command type) have no destructive variant, so
//! no code path here can delete a user, clear data or clear logs (invariant 1).
//!
//! Credentials are numbered the AiFace way across all drivers (the `slot`): 0–9 fingerprints,
//! 10 password, 11 card, 20–27 face templates, 30–41 palm, 50 face photo. It is the richest
//! numbering of the two protocols, and ZK's credentials map onto it.

pub mod aiface;
pub mod punches;
pub mod quarantine;
mod read;
pub mod registry;
mod start;
pub mod zk;

pub use read::{
    card_of, slot_kind_name, Credential, FetchMode, HeldCredential, ListDigest, ListedAsBefore,
    MemorySink, PolledUsers, ReadError, ReadProgress, ReadSink, ReadUser, SummarySink, UserDetails,
    UserRead,
};
pub use start::{listen_aiface, start, AifaceListener, Devices};

use std::future::Future;

/// An open session with one device, whatever its protocol.
///
/// The session is used under the device lock; a driver never runs two sessions with one device
/// at a time (terminals allow one).
pub trait DeviceSession: Send + Sync {
    /// The configured id of the device this session talks to.
    fn device_id(&self) -> &str;

    /// Reads every user completely: the list, the device's own count to check it against, and
    /// each credential the sink does not already hold (or all of them with [`FetchMode::All`]).
    /// Anything short of a checked, complete list is an error.
    fn read_users<'a>(
        &'a self,
        mode: FetchMode,
        sink: &'a mut (dyn ReadSink + Send),
    ) -> impl Future<Output = Result<UserRead, ReadError>> + Send + 'a;

    /// A poll's read: [`FetchMode::Missing`], except that when `last_list` is the digest of
    /// the list the device lists now, the driver stops after the checked list and answers
    /// [`PolledUsers::ListedAsBefore`] without asking the sink about any credential. The
    /// default (a driver that cannot digest its list) always reads.
    fn poll_users<'a>(
        &'a self,
        last_list: Option<ListDigest>,
        sink: &'a mut (dyn ReadSink + Send),
    ) -> impl Future<Output = Result<PolledUsers, ReadError>> + Send + 'a {
        let _ = last_list;
        async move {
            self.read_users(FetchMode::Missing, sink)
                .await
                .map(PolledUsers::Read)
        }
    }

    /// Writes one credential of one user (adds it, or replaces that credential). This is how a
    /// backup restores a lost user; there is no operation that removes anything.
    fn write_credential<'a>(
        &'a self,
        credential: &'a Credential,
    ) -> impl Future<Output = Result<(), ReadError>> + Send + 'a;

    /// Renames one user on the device without touching any credential (AI06 `setusername`).
    /// A driver that cannot rename refuses and sends nothing.
    fn set_user_name<'a>(
        &'a self,
        user_id: &'a str,
        name: &'a str,
    ) -> impl Future<Output = Result<(), ReadError>> + Send + 'a;

    /// Adds a user that has no credential at all (a restore's bare user), leaving a user the
    /// device already holds as it is. A driver whose protocol adds users only together with a
    /// credential (the AI06) keeps this default: it refuses and sends nothing.
    fn add_user<'a>(
        &'a self,
        user_id: &'a str,
        name: &'a str,
        privilege: u32,
    ) -> impl Future<Output = Result<(), ReadError>> + Send + 'a {
        let _ = (name, privilege);
        let device = self.device_id().to_string();
        async move {
            Err(ReadError::Refused(format!(
                "{device} adds a user only together with a credential, so user {user_id} \
                 (which has none) cannot be re-added; nothing was sent"
            )))
        }
    }

    /// Whether the sync loop should keep a listening session open between polls (a ZK terminal
    /// configured with `live_events`), so punches arrive in about a second instead of at the
    /// next poll. The default: no.
    fn listens(&self) -> bool {
        false
    }

    /// One listening session: stores the punches the terminal pushes until `end` turns true,
    /// the device lock runs short or the link fails, then closes the session. The engine runs
    /// it under the device lock, like a read. A driver without live events returns at once.
    fn listen<'a>(
        &'a self,
        end: &'a tokio::sync::watch::Receiver<bool>,
    ) -> impl Future<Output = Result<(), ReadError>> + Send + 'a {
        let _ = end;
        async { Ok(()) }
    }
}

/// A shared session is a session: the sync loop and an operator's command (backup, restore)
/// can hold the same one, and the driver serialises what they do.
impl<T: DeviceSession> DeviceSession for std::sync::Arc<T> {
    fn device_id(&self) -> &str {
        T::device_id(self)
    }

    fn read_users<'a>(
        &'a self,
        mode: FetchMode,
        sink: &'a mut (dyn ReadSink + Send),
    ) -> impl Future<Output = Result<UserRead, ReadError>> + Send + 'a {
        T::read_users(self, mode, sink)
    }

    fn poll_users<'a>(
        &'a self,
        last_list: Option<ListDigest>,
        sink: &'a mut (dyn ReadSink + Send),
    ) -> impl Future<Output = Result<PolledUsers, ReadError>> + Send + 'a {
        T::poll_users(self, last_list, sink)
    }

    fn write_credential<'a>(
        &'a self,
        credential: &'a Credential,
    ) -> impl Future<Output = Result<(), ReadError>> + Send + 'a {
        T::write_credential(self, credential)
    }

    fn set_user_name<'a>(
        &'a self,
        user_id: &'a str,
        name: &'a str,
    ) -> impl Future<Output = Result<(), ReadError>> + Send + 'a {
        T::set_user_name(self, user_id, name)
    }

    fn add_user<'a>(
        &'a self,
        user_id: &'a str,
        name: &'a str,
        privilege: u32,
    ) -> impl Future<Output = Result<(), ReadError>> + Send + 'a {
        T::add_user(self, user_id, name, privilege)
    }

    fn listens(&self) -> bool {
        T::listens(self)
    }

    fn listen<'a>(
        &'a self,
        end: &'a tokio::sync::watch::Receiver<bool>,
    ) -> impl Future<Output = Result<(), ReadError>> + Send + 'a {
        T::listen(self, end)
    }
}
