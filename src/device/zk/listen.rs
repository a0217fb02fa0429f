//! Live attendance events from a ZK terminal (D7 latency; research `zk-protocol.md` §3.6).
//!
//! Between polls, the engine may hand a terminal configured with `live_events = true` to a
//! listener session: connect → auth → `~SerialNumber` → `REG_EVENT` `EF_ATTLOG` → wait for
//! events → `REG_EVENT` 0 → close (`EXIT`, on every path). Each attendance event becomes the
//! punch its log record gives ([`attendance::punch_of_event`]: same punch key), stored through
//! the same punch log call as a poll's records (punch and upstream event in one transaction,
//! fsynced), and only then acknowledged with `ACK_OK` carrying the event's reply id; an event
//! that could not be stored is not acknowledged, so the terminal sends it again, and the next
//! poll reads it from the log anyway. The poll stays authoritative: events give latency only,
//! and an event the listener cannot name (a small-form uid the last user read did not have) is
//! acknowledged and left to the poll.
//!
//! The listener never runs outside the device lock: the engine runs it inside its lock guard
//! (every packet checks the fence), it ends by itself when the lock has less than
//! [`LEAVE_BEFORE_FENCE`] left, and it ends at once when the engine asks (a poll is due, the
//! agent's backup, restore or conflict write wants the device, or the agent stops).

use super::attendance::{self, ZkPunches};
use super::client::Client;
use super::read::{open, serial_number};
use super::settings::ZkSettings;
use crate::device::ReadError;
use device_protocols::zk::{AttendanceEvent, ClientSession, Packet, Request, EF_ATTLOG};
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use tokio::sync::watch;

/// How long one wait for an event lasts before the listener checks whether it must end.
const TICK: Duration = Duration::from_millis(100);

/// A listener ends its session when its lock has less than this left (plus two command
/// timeouts, for the unregister and the `EXIT`).
pub const LEAVE_BEFORE_FENCE: Duration = Duration::from_secs(2);

/// What one listening session did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ListenReport {
    /// Attendance events received (re-sent ones included).
    pub events: u64,
    /// Punches stored for the first time.
    pub stored: u64,
    /// Punches already held (a re-sent event, or one the poll stored first).
    pub repeated: u64,
    /// Events acknowledged without a punch (failed verification, unknown uid, other codes).
    pub skipped: u64,
}

/// Runs one listening session until `end` turns true, the lock runs short, or the link fails.
pub(super) async fn listen(
    settings: &ZkSettings,
    prefer_udp: &AtomicBool,
    punches: &ZkPunches,
    end: &watch::Receiver<bool>,
) -> Result<ListenReport, ReadError> {
    let mut client = open(settings, prefer_udp).await?;
    let mut report = ListenReport::default();
    let outcome = run(&mut client, settings, punches, end, &mut report).await;
    if outcome.is_ok() {
        if let Err(err) = client.expect_ok(&Request::RegisterEvents { mask: 0 }).await {
            tracing::debug!(device = %settings.device_id, "unregistering events failed: {err}");
        }
    }
    client.close().await;
    tracing::info!(
        device = %settings.device_id,
        events = report.events,
        stored = report.stored,
        repeated = report.repeated,
        skipped = report.skipped,
        "live-event session ended"
    );
    outcome.map(|()| report)
}

async fn run(
    client: &mut Client,
    settings: &ZkSettings,
    punches: &ZkPunches,
    end: &watch::Receiver<bool>,
    report: &mut ListenReport,
) -> Result<(), ReadError> {
    client.authenticate(settings.comm_key).await?;
    let sn = serial_number(client, settings).await?;
    client
        .expect_ok(&Request::RegisterEvents { mask: EF_ATTLOG })
        .await?;
    tracing::info!(device = %settings.device_id, "listening for live attendance events");
    let margin = LEAVE_BEFORE_FENCE + settings.command_timeout * 2;
    loop {
        if *end.borrow() {
            return Ok(());
        }
        if crate::lock::fence::current_remaining().is_some_and(|left| left < margin) {
            tracing::info!(device = %settings.device_id, "the device lock is about to end; ending the live-event session");
            return Ok(());
        }
        let Some(event) = client.next_event(TICK).await? else {
            continue;
        };
        report.events += 1;
        if on_event(settings, punches, &sn, &event, report).await {
            client.ack_event(&event).await?;
        }
    }
}

/// Stores what `event` carries; whether to acknowledge it (not when storing failed).
async fn on_event(
    settings: &ZkSettings,
    punches: &ZkPunches,
    sn: &str,
    event: &Packet,
    report: &mut ListenReport,
) -> bool {
    let device = settings.device_id.as_str();
    if ClientSession::event_code(event) != Some(EF_ATTLOG as u16) {
        report.skipped += 1;
        return true;
    }
    let decoded = match AttendanceEvent::decode(&event.data, &settings.codec) {
        Ok(decoded) => decoded,
        Err(err) => {
            tracing::warn!(device, %err, "a live attendance event cannot be decoded; the poll reads it from the log");
            report.skipped += 1;
            return true;
        }
    };
    let Some(punch) = attendance::punch_of_event(sn, &decoded, |uid| punches.user_of_uid(uid))
    else {
        report.skipped += 1;
        return true;
    };
    match punches.store_live(device, vec![punch]).await {
        Ok(batch) => {
            report.stored += batch.new as u64;
            report.repeated += batch.duplicates as u64;
            if batch.new > 0 {
                tracing::info!(device, "live punch stored");
            }
            true
        }
        Err(err) => {
            tracing::error!(device, %err, "a live punch could not be stored; not acknowledged, so the terminal sends it again and the poll reads it from the log");
            false
        }
    }
}
