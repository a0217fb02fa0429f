//! The alert kinds: how each fact the agent reports becomes the body of an MQTT alert. One
//! place builds every body, so `docs/mqtt.md` (the kinds and their fields) can be read against
//! one file, and a subscriber meets one shape for every kind.

use std::collections::BTreeMap;

use crate::events::{AlertBody, AlertUser};
use crate::store::{Alarm, AlarmKind};
use crate::sync::apply::MissingUser;

/// Look at it today.
pub const WARNING: &str = "warning";
/// Act now: data is not flowing or is at risk.
pub const CRITICAL: &str = "critical";

/// An alert body with no users.
fn body(kind: &str, severity: &str, message: String, details: &[(&str, String)]) -> AlertBody {
    AlertBody {
        kind: kind.to_owned(),
        severity: severity.to_owned(),
        message,
        users: Vec::new(),
        details: details
            .iter()
            .map(|(key, value)| ((*key).to_owned(), value.clone()))
            .collect::<BTreeMap<_, _>>(),
    }
}

/// The alert for a local alarm, with the device it concerns (empty for agent-wide ones).
/// Every alarm becomes an alert, so the services that raise alarms need no MQTT knowledge.
pub fn from_alarm(alarm: &Alarm) -> (String, AlertBody) {
    let message = alarm.message.clone();
    match &alarm.kind {
        AlarmKind::StoreSalvaged { moved_to, reason } => (
            String::new(),
            body(
                "store_salvaged",
                CRITICAL,
                message,
                &[("moved_to", moved_to.clone()), ("reason", reason.clone())],
            ),
        ),
        AlarmKind::OutboxFull {
            queued_bytes,
            max_bytes,
        } => (
            String::new(),
            body(
                "outbox_refusing",
                CRITICAL,
                message,
                &[
                    ("queued_bytes", queued_bytes.to_string()),
                    ("max_bytes", max_bytes.to_string()),
                ],
            ),
        ),
        AlarmKind::UpstreamUnauthorized { status } => (
            String::new(),
            body(
                "upstream_unauthorized",
                CRITICAL,
                message,
                &[("status", status.to_string())],
            ),
        ),
        AlarmKind::BackupFailed { device_id, reason } => (
            device_id.clone(),
            body(
                "backup_failed",
                WARNING,
                message,
                &[("reason", reason.clone())],
            ),
        ),
        AlarmKind::MassDisappearance {
            device_id,
            missing,
            previous,
        } => (
            device_id.clone(),
            body(
                "mass_disappearance_held",
                CRITICAL,
                message,
                &[
                    ("missing", missing.to_string()),
                    ("previous", previous.to_string()),
                ],
            ),
        ),
        AlarmKind::DeviceUnread {
            device_id,
            last_complete_ms,
            threshold_s,
            reason,
        } => (
            device_id.clone(),
            body(
                "device_unread",
                WARNING,
                message,
                &[
                    (
                        "last_complete_read_ms",
                        last_complete_ms.map_or_else(String::new, |ms| ms.to_string()),
                    ),
                    ("threshold_s", threshold_s.to_string()),
                    ("reason", reason.clone()),
                ],
            ),
        ),
        AlarmKind::ReadsIncomplete {
            device_id,
            in_a_row,
            last_error,
        } => (
            device_id.clone(),
            body(
                "reads_incomplete",
                WARNING,
                message,
                &[
                    ("in_a_row", in_a_row.to_string()),
                    ("last_error", last_error.clone()),
                ],
            ),
        ),
        AlarmKind::DeadLetters { new, total } => (
            String::new(),
            body(
                "dead_letters",
                WARNING,
                message,
                &[("new", new.to_string()), ("total", total.to_string())],
            ),
        ),
        AlarmKind::TaskRestarted {
            task,
            reason,
            restart_in_ms,
        } => (
            task.strip_prefix("sync-device:")
                .unwrap_or_default()
                .to_owned(),
            body(
                "task_restarted",
                WARNING,
                message,
                &[
                    ("task", task.clone()),
                    ("reason", reason.clone()),
                    ("restart_in_ms", restart_in_ms.to_string()),
                ],
            ),
        ),
        AlarmKind::LockLost { device_id, detail } => (
            device_id.clone(),
            body(
                "lock_lost",
                CRITICAL,
                message,
                &[("detail", detail.clone())],
            ),
        ),
        AlarmKind::AttendanceLogRewritten {
            device_id,
            stored,
            on_device,
        } => (
            device_id.clone(),
            body(
                "attendance_log_rewritten",
                WARNING,
                message,
                &[
                    ("stored", stored.to_string()),
                    ("on_device", on_device.to_string()),
                ],
            ),
        ),
        AlarmKind::EslAttention { problem, detail } => (
            String::new(),
            body(problem, WARNING, message, &[("detail", detail.clone())]),
        ),
    }
}

/// One alert for the users a complete read of `device_id` lost, naming each with the time it
/// was last seen.
pub fn users_missing(device_id: &str, missing: &[MissingUser]) -> AlertBody {
    let ids: Vec<&str> = missing.iter().map(|u| u.user_id.as_str()).collect();
    let mut alert = body(
        "users_missing",
        WARNING,
        format!(
            "{} user(s) vanished from {device_id} since the previous complete read: {}; they \
             are kept in the buffer as missing (check whether they were deleted on purpose)",
            missing.len(),
            ids.join(", ")
        ),
        &[("count", missing.len().to_string())],
    );
    alert.users = missing
        .iter()
        .map(|user| AlertUser {
            user_id: user.user_id.clone(),
            name: user.name.clone(),
            last_seen_at_ms: Some(user.last_seen_at_ms),
            missing_since_ms: None,
        })
        .collect();
    alert
}

/// One alert for the users a complete read of `device_id` found again after they were missing.
pub fn users_reappeared(device_id: &str, user_ids: &[String]) -> AlertBody {
    let mut alert = body(
        "users_reappeared",
        WARNING,
        format!(
            "{} user(s) reported missing are back on {device_id}: {}",
            user_ids.len(),
            user_ids.join(", ")
        ),
        &[("count", user_ids.len().to_string())],
    );
    alert.users = user_ids
        .iter()
        .map(|id| AlertUser {
            user_id: id.clone(),
            ..AlertUser::default()
        })
        .collect();
    alert
}

/// The clock is not synchronised: record times may be wrong.
pub fn clock_unsynced() -> AlertBody {
    body(
        "clock_unsynced",
        WARNING,
        "the system clock is not synchronised; check NTP (timedatectl) on the box".into(),
        &[],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_lock_alarm_becomes_a_critical_lock_lost_alert_for_its_device() {
        let alarm = Alarm {
            raised_at_unix_ms: 1,
            kind: AlarmKind::LockLost {
                device_id: "door".into(),
                detail: "lease expired".into(),
            },
            message: "lost".into(),
        };
        let (device, alert) = from_alarm(&alarm);
        assert_eq!(device, "door");
        assert_eq!(alert.kind, "lock_lost");
        assert_eq!(alert.severity, CRITICAL);
        assert_eq!(alert.details["detail"], "lease expired");
    }
}
