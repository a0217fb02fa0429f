//! The ZK-protocol driver: the agent dials the terminal over TCP, UDP or (experimentally) a
//! serial line, one short session per read, and reads the user table completely or not at all.
//!
//! Layers, one module each: `link` with `tcp`, `udp` and `serial` move bytes;
//! `client` matches replies, retries what is safe and runs bulk reads; `read` holds the
//! session order and its close-on-every-path; `users` maps records onto [`UserRead`];
//! `identity` is what `probe` shows about the device; `settings` resolves the config.
//!
//! With a punch log attached ([`ZkSession::with_punches`]), every read also downloads the
//! attendance log when the device's record count moved, and `attendance` stores the new punches.
//!
//! With `live_events` ([`ZkSession::with_live_events`]), `listen` keeps a session registered
//! for the terminal's attendance events between polls and stores each punch as it happens.
//!
//! Writes (`write`): a password, a card, a name or a bare user goes to the terminal as one
//! whole-record `USER_WRQ` built on the record read in the same session, a fingerprint
//! template through the upload path and `TMP_WRITE`; each is verified by reading back.

mod attendance;
mod client;
mod finger;
mod identity;
mod link;
mod listen;
mod read;
mod serial;
mod settings;
mod tcp;
mod udp;
mod users;
mod write;

pub use attendance::ZkPunches;
pub use client::DISABLE_TIMEOUT_SECS;
pub use identity::Identity;
pub use listen::{ListenReport, LEAVE_BEFORE_FENCE};
pub use settings::{Endpoint, SettingsError, ZkSettings};
pub use tcp::SESSION_OPENED;

use super::{Credential, DeviceSession, FetchMode, ReadError, ReadSink, UserRead};
use std::sync::atomic::AtomicBool;

/// A ZK terminal as the agent sees it between reads: its settings, a lock that keeps to one
/// session at a time (terminals allow one), and which transport last worked.
pub struct ZkSession {
    settings: ZkSettings,
    /// One session at a time; it also guards the last template read, which only a session
    /// reads or changes.
    turn: tokio::sync::Mutex<read::TemplateCache>,
    prefer_udp: AtomicBool,
    punches: Option<ZkPunches>,
    /// Keep a session registered for live attendance events between polls.
    live_events: bool,
}

impl ZkSession {
    /// A driver for the configured device; nothing is opened until a read.
    pub fn new(settings: ZkSettings) -> ZkSession {
        ZkSession {
            settings,
            turn: tokio::sync::Mutex::new(read::TemplateCache::default()),
            prefer_udp: AtomicBool::new(false),
            punches: None,
            live_events: false,
        }
    }

    /// The same driver, listening for live attendance events between polls when `on` (the
    /// device's `live_events`); they are stored through the punch log of
    /// [`ZkSession::with_punches`], so without one there is nothing to listen for.
    pub fn with_live_events(mut self, on: bool) -> ZkSession {
        self.live_events = on;
        self
    }

    /// The same driver, also reading the attendance log into `punches` at every read (the
    /// running agent's wiring; `probe` and the demo read users only).
    pub fn with_punches(mut self, punches: ZkPunches) -> ZkSession {
        self.punches = Some(punches);
        self
    }

    /// The resolved settings.
    pub fn settings(&self) -> &ZkSettings {
        &self.settings
    }

    /// Serial number, firmware and clock skew, in a session of its own.
    pub async fn identify(&self) -> Result<Identity, ReadError> {
        let _turn = self.turn.lock().await;
        identity::identify(&self.settings, &self.prefer_udp).await
    }
}

impl DeviceSession for ZkSession {
    fn device_id(&self) -> &str {
        &self.settings.device_id
    }

    async fn read_users<'a>(
        &'a self,
        mode: FetchMode,
        sink: &'a mut (dyn ReadSink + Send),
    ) -> Result<UserRead, ReadError> {
        let mut cache = self.turn.lock().await;
        read::read_users(
            &self.settings,
            &self.prefer_udp,
            self.punches.as_ref(),
            &mut cache,
            mode,
            sink,
        )
        .await
    }

    fn listens(&self) -> bool {
        self.live_events && self.punches.is_some()
    }

    async fn listen<'a>(
        &'a self,
        end: &'a tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), ReadError> {
        let Some(punches) = self.punches.as_ref().filter(|_| self.live_events) else {
            return Ok(());
        };
        let _turn = self.turn.lock().await;
        listen::listen(&self.settings, &self.prefer_udp, punches, end)
            .await
            .map(drop)
    }

    async fn write_credential<'a>(&'a self, credential: &'a Credential) -> Result<(), ReadError> {
        write::check_writable(&write::Change::Credential(credential), self.device_id())?;
        let mut cache = self.turn.lock().await;
        // Whatever the outcome, the next read takes the templates afresh.
        cache.forget();
        write::write(
            &self.settings,
            &self.prefer_udp,
            write::Change::Credential(credential),
        )
        .await
    }

    async fn set_user_name<'a>(&'a self, user_id: &'a str, name: &'a str) -> Result<(), ReadError> {
        let _turn = self.turn.lock().await;
        write::write(
            &self.settings,
            &self.prefer_udp,
            write::Change::Name { user_id, name },
        )
        .await
    }

    async fn add_user<'a>(
        &'a self,
        user_id: &'a str,
        name: &'a str,
        privilege: u32,
    ) -> Result<(), ReadError> {
        let _turn = self.turn.lock().await;
        write::write(
            &self.settings,
            &self.prefer_udp,
            write::Change::User {
                user_id,
                name,
                privilege,
            },
        )
        .await
    }
}
