//! The read monitor: watches how each device's reads go and whether the forwarder sets events
//! aside, and raises a local alarm (which the MQTT plane turns into an alert) when
//!
//! - a device has not been completely read for longer than `monitor.unread_alert_after` (it
//!   is not connected, or every read fails): its users are not being watched;
//! - `monitor.incomplete_alert_after` reads of a device in a row ended incomplete;
//! - new dead letters appeared.
//!
//! Each condition alarms once when it starts and again only after it cleared (a complete read,
//! a successful read), so a terminal that stays unplugged for a week is one alarm, not one a
//! second. It reads only the engine's in-memory health and the outbox figures: cheap enough to
//! look every second.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::Engine;
use crate::lifecycle::StopSignal;
use crate::store::{Alarm, AlarmKind};

/// How often the monitor looks.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// The thresholds, from `[monitor]`.
#[derive(Debug, Clone, Copy)]
pub(super) struct MonitorThresholds {
    /// A device not completely read for this long is alarmed.
    pub(super) unread_after: Duration,
    /// This many incomplete reads in a row are alarmed.
    pub(super) incomplete_after: u32,
}

/// What the monitor has already alarmed, so each condition alarms once per occurrence.
#[derive(Default)]
struct Alarmed {
    unread: HashSet<String>,
    incomplete: HashSet<String>,
    dead_letters: Option<u64>,
}

/// Watches `devices` of `engine` until `stop` resolves.
pub(super) async fn run_monitor(
    engine: Arc<Engine>,
    devices: Vec<String>,
    thresholds: MonitorThresholds,
    mut stop: StopSignal,
) {
    let started_ms = engine.now_ms();
    let mut alarmed = Alarmed::default();
    let mut ticker = tokio::time::interval(LOOK_EVERY);
    loop {
        tokio::select! {
            _ = stop.stopped() => return,
            _ = ticker.tick() => {}
        }
        let alarms = look(&engine, &devices, thresholds, started_ms, &mut alarmed);
        if alarms.is_empty() {
            continue;
        }
        for alarm in &alarms {
            tracing::warn!("{}", alarm.message);
            if let Err(err) = engine.store().raise_alarm(alarm) {
                tracing::error!("cannot record the alarm: {err}");
            }
        }
        if let Err(err) = engine.store().make_durable().await {
            tracing::error!("cannot make alarms durable: {err}");
        }
    }
}

/// One look: the alarms to raise now.
fn look(
    engine: &Engine,
    devices: &[String],
    thresholds: MonitorThresholds,
    started_ms: i64,
    alarmed: &mut Alarmed,
) -> Vec<Alarm> {
    let now = engine.now_ms();
    let health = engine.health();
    let mut alarms = Vec::new();
    let unread_ms = i64::try_from(thresholds.unread_after.as_millis()).unwrap_or(i64::MAX);
    let alarm = |kind, message| Alarm {
        raised_at_unix_ms: now,
        kind,
        message,
    };
    for device in devices {
        let state = health.get(device);
        let last_complete = state.and_then(|s| s.last_complete_ms);
        let since = last_complete.unwrap_or(started_ms);
        if now.saturating_sub(since) > unread_ms {
            if alarmed.unread.insert(device.clone()) {
                let reason = match state {
                    None => "not connected since the agent started".to_string(),
                    Some(s) => s
                        .last_error
                        .clone()
                        .unwrap_or_else(|| "no complete read".into()),
                };
                let threshold = humantime_secs(thresholds.unread_after);
                alarms.push(alarm(
                    AlarmKind::DeviceUnread {
                        device_id: device.clone(),
                        last_complete_ms: last_complete,
                        threshold_s: thresholds.unread_after.as_secs(),
                        reason: reason.clone(),
                    },
                    format!(
                        "{device} has not been completely read for more than {threshold} \
                         ({reason}); its users are not being watched: check that the terminal \
                         is powered and on the network"
                    ),
                ));
            }
        } else {
            alarmed.unread.remove(device);
        }
        let failures = state.map_or(0, |s| s.consecutive_failures);
        if thresholds.incomplete_after > 0 && failures >= thresholds.incomplete_after {
            if alarmed.incomplete.insert(device.clone()) {
                let last_error = state.and_then(|s| s.last_error.clone()).unwrap_or_default();
                alarms.push(alarm(
                    AlarmKind::ReadsIncomplete {
                        device_id: device.clone(),
                        in_a_row: failures,
                        last_error: last_error.clone(),
                    },
                    format!(
                        "{failures} reads of {device} in a row were incomplete (last: \
                         {last_error}); the user list is not being refreshed"
                    ),
                ));
            }
        } else if failures == 0 {
            alarmed.incomplete.remove(device);
        }
    }
    match engine.outbox().stats() {
        Ok(stats) => {
            let total = stats.dead_letters;
            match alarmed.dead_letters {
                Some(before) if total > before => alarms.push(alarm(
                    AlarmKind::DeadLetters {
                        new: total - before,
                        total,
                    },
                    format!(
                        "{} event(s) were given up on and set aside as dead letters ({total} \
                         kept); see `edge-agent status` and re-queue them once the cause is fixed",
                        total - before
                    ),
                )),
                _ => {}
            }
            alarmed.dead_letters = Some(total);
        }
        Err(err) => tracing::debug!("cannot read the outbox figures: {err}"),
    }
    alarms
}

/// `90s`, `2h`: a threshold as the operator wrote it, near enough.
fn humantime_secs(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        s if s >= 3600 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}
