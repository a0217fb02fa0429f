//! The text of `edge-agent status`: the agent's status report (the JSON file the running agent
//! rewrites) formatted for a technician, with ages relative to now and a loud "STALE" when the
//! agent has stopped writing it.

use serde_json::Value;

/// A status file older than this is reported as stale.
const STALE_AFTER_MS: i64 = 30_000;

fn age(now_ms: i64, at: &Value) -> String {
    match at.as_i64() {
        Some(at) => {
            let seconds = (now_ms - at).max(0) / 1000;
            match seconds {
                0..=119 => format!("{seconds} s ago"),
                120..=7199 => format!("{} min ago", seconds / 60),
                _ => format!("{} h ago", seconds / 3600),
            }
        }
        None => "never".to_string(),
    }
}

/// The text form of a report; `now_ms` makes ages testable.
pub fn format_report(report: &Value, now_ms: i64) -> String {
    let mut out = String::new();
    let updated = report["updated_at_ms"].as_i64().unwrap_or_default();
    out.push_str(&format!(
        "edge-agent {} — agent {} at site {} (pid {})\n",
        report["version"].as_str().unwrap_or("?"),
        report["agent_id"].as_str().unwrap_or("?"),
        report["site"].as_str().unwrap_or("?"),
        report["pid"]
    ));
    if now_ms - updated > STALE_AFTER_MS {
        out.push_str(&format!(
            "STALE: last status written {}; the agent may be stopped or hung \
             (systemctl status edge-agent; journalctl -u edge-agent)\n",
            age(now_ms, &report["updated_at_ms"])
        ));
    } else {
        out.push_str(&format!(
            "running since {}\n",
            age(now_ms, &report["started_at_ms"])
        ));
    }
    if report["clock"] == "unsynchronized" {
        out.push_str(
            "CLOCK NOT SYNCHRONISED: the system clock has not been set by NTP; times the agent \
             stamps now may be wrong and its events are marked clock_synchronized=false \
             (timedatectl; check NTP)\n",
        );
    } else if report["clock"] == "synchronized" {
        out.push_str("clock synchronised\n");
    }
    out.push_str("\nDevices:\n");
    for device in report["devices"].as_array().into_iter().flatten() {
        let connected = match device["connected"].as_bool() {
            Some(true) => "connected",
            Some(false) => "NOT connected",
            None => "polled",
        };
        out.push_str(&format!(
            "  {:<20} {:<7} {:<13} sn {:<14} users {:<6} skew {:>5} s  registered {}\n",
            device["id"].as_str().unwrap_or("?"),
            device["driver"].as_str().unwrap_or("?"),
            connected,
            device["sn"].as_str().unwrap_or("-"),
            device["users_reported"]
                .as_u64()
                .map_or("-".to_string(), |n| n.to_string()),
            device["clock_skew_s"]
                .as_i64()
                .map_or("-".to_string(), |n| n.to_string()),
            age(now_ms, &device["last_registered_at_ms"]),
        ));
        if let Some(generation) = device["upstream_behind_since_generation"].as_u64() {
            out.push_str(&format!(
                "  {:<20} upstream behind since read #{generation} (the outbox was full); a \
                 catch-up is queued when there is room\n",
                ""
            ));
        }
    }
    let upstream = &report["upstream"];
    if upstream.is_object() {
        let outbox = &upstream["outbox"];
        out.push_str(&format!(
            "\nUpstream: {}; queued {}, delivered {}, dead letters {}, last success {}\n",
            match upstream["forwarder"]["reason"].as_str() {
                Some(reason) => format!(
                    "{} ({reason})",
                    upstream["forwarder"]["state"].as_str().unwrap_or("?")
                ),
                None => upstream["forwarder"]["state"]
                    .as_str()
                    .unwrap_or("?")
                    .replace('_', " "),
            },
            upstream["queued"],
            upstream["delivered"],
            outbox["dead_letters"],
            age(now_ms, &upstream["last_success_at_ms"]),
        ));
        out.push_str(&format!(
            "Outbox: {} events, {} of {} bytes{}, oldest {}\n",
            outbox["depth"],
            outbox["bytes"],
            outbox["max_bytes"],
            if outbox["refusing"].as_bool() == Some(true) {
                " — FULL, refusing new events that do not fit (punches too: terminals keep them and resend)"
            } else {
                ""
            },
            age(now_ms, &outbox["oldest_occurred_at_ms"]),
        ));
        if let Some(error) = upstream["last_error"].as_str() {
            out.push_str(&format!("Last upstream error: {error}\n"));
        }
    }
    let alarms = report["alarms"].as_array().cloned().unwrap_or_default();
    if alarms.is_empty() {
        out.push_str("\nNo alarms.\n");
    } else {
        out.push_str(&format!("\nAlarms ({}):\n", alarms.len()));
        for alarm in alarms.iter().rev().take(10) {
            out.push_str(&format!(
                "  {}: {}\n",
                age(now_ms, &alarm["raised_at_ms"]),
                alarm["message"].as_str().unwrap_or("?")
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(updated_at_ms: i64) -> Value {
        serde_json::json!({
            "agent_id": "gw", "site": "s", "version": "0.1.0", "pid": 7,
            "started_at_ms": updated_at_ms - 3_600_000, "updated_at_ms": updated_at_ms,
            "devices": [{"id": "door", "driver": "aiface", "connected": false, "sn": "SN1",
                         "users_reported": 12, "clock_skew_s": -3,
                         "last_registered_at_ms": updated_at_ms - 600_000,
                         "upstream_behind_since_generation": 4}],
            "upstream": {"forwarder": {"state": "failed", "reason": "token file unreadable"},
                         "queued": 5, "delivered": 0,
                         "outbox": {"depth": 5, "bytes": 900, "max_bytes": 64000000,
                                    "dead_letters": 1, "refusing": true,
                                    "oldest_occurred_at_ms": updated_at_ms - 120_000}},
            "alarms": [{"raised_at_ms": updated_at_ms, "message": "outbox full"}],
        })
    }

    #[test]
    fn a_fresh_report_reads_plainly() {
        let now = 1_800_000_000_000;
        let text = format_report(&report(now - 1_000), now);
        assert!(text.contains("running since 60 min ago"), "{text}");
        assert!(
            text.contains("door") && text.contains("NOT connected"),
            "{text}"
        );
        assert!(text.contains("failed (token file unreadable)"), "{text}");
        assert!(text.contains("FULL, refusing new events"), "{text}");
        assert!(text.contains("punches too: terminals keep them"), "{text}");
        assert!(text.contains("upstream behind since read #4"), "{text}");
        assert!(text.contains("outbox full"), "{text}");
    }

    #[test]
    fn an_old_report_is_called_stale() {
        let now = 1_800_000_000_000;
        let text = format_report(&report(now - 300_000), now);
        assert!(
            text.contains("STALE: last status written 5 min ago"),
            "{text}"
        );
    }
}
