//! The text of `edge-agent status`: the agent's status report (the JSON file the running agent
//! rewrites) formatted for a technician, with ages relative to now and a loud "STALE" when the
//! agent has stopped writing it.

use serde_json::Value;

use crate::ops::status::Level;

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

/// The level of a report read from the file, as the agent judged it, made critical when the
/// report is stale (the agent stopped writing it); the JSON gets `stale` and the reason too.
pub fn judge(report: &mut Value, now_ms: i64) -> Level {
    let mut level = match report["assessment"]["level"].as_str() {
        Some("critical") => Level::Critical,
        Some("warning") => Level::Warning,
        _ => Level::Ok,
    };
    let updated = report["updated_at_ms"].as_i64().unwrap_or_default();
    let stale = now_ms - updated > STALE_AFTER_MS;
    report["stale"] = Value::Bool(stale);
    if stale {
        level = Level::Critical;
        let reason = format!(
            "the status was last written {}: the agent may be stopped or hung",
            age(now_ms, &report["updated_at_ms"])
        );
        report["assessment"]["level"] = Value::from("critical");
        match report["assessment"]["reasons"].as_array_mut() {
            Some(reasons) => reasons.insert(0, Value::from(reason)),
            None => report["assessment"]["reasons"] = Value::from(vec![reason]),
        }
    }
    level
}

fn count(value: &Value) -> String {
    value.as_u64().map_or("-".to_string(), |n| n.to_string())
}

/// One line of the read under way: phase, pages or credentials done of total, rate, ETA.
fn progress_line(reading: &Value, now_ms: i64) -> String {
    let started = age(now_ms, &reading["started_at_ms"]).replace(" ago", "");
    if reading["phase"] == "credentials" {
        let mut line = format!(
            "reading for {started}: credentials {} of {}",
            count(&reading["credentials_done"]),
            count(&reading["credentials_total"]),
        );
        if let Some(rate) = reading["rate_per_s"].as_f64() {
            line.push_str(&format!(", {rate:.1}/s"));
        }
        if let Some(eta) = reading["eta_s"].as_u64() {
            line.push_str(&format!(", about {eta} s left"));
        }
        line
    } else {
        format!(
            "reading for {started}: user list page {}, {} entries of {}",
            count(&reading["pages"]),
            count(&reading["list_entries"]),
            count(&reading["list_announced"]),
        )
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
        let users = &device["users"];
        out.push_str(&format!(
            "  {:<20} last complete read {} ({} users); buffered {}: {} mapped, {} pending, {} unmapped, {} missing, {} conflicts\n",
            "",
            age(now_ms, &device["last_complete_read_ms"]),
            count(&device["last_read_users"]),
            count(&users["total"]),
            count(&users["mapped"]),
            count(&users["pending"]),
            count(&users["unmapped"]),
            count(&users["missing"]),
            count(&users["conflict"]),
        ));
        if device["reading"].is_object() {
            out.push_str(&format!(
                "  {:<20} {}\n",
                "",
                progress_line(&device["reading"], now_ms)
            ));
        }
        if let Some(token) = device["lock_token"].as_u64() {
            let remaining = device["lock_remaining_ms"]
                .as_u64()
                .map(|ms| format!(", {:.1}s left", ms as f64 / 1000.0))
                .unwrap_or_default();
            out.push_str(&format!(
                "  {:<20} device lock held, token {token}{remaining}\n",
                ""
            ));
        }
        if let Some(error) = device["last_error"].as_str() {
            out.push_str(&format!(
                "  {:<20} last read not complete ({} in a row): {error}\n",
                "",
                count(&device["consecutive_incomplete"])
            ));
        }
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
    match report["mqtt"]["connected"].as_bool() {
        Some(true) => out.push_str(&format!(
            "MQTT: connected ({} connections since start); {} alerts pending\n",
            count(&report["mqtt"]["connections"]),
            count(&report["alerts_pending"])
        )),
        Some(false) => out.push_str(&format!(
            "MQTT: NOT connected to the broker; {} alerts pending\n",
            count(&report["alerts_pending"])
        )),
        None => out.push_str("MQTT: off\n"),
    }
    let log = &report["log"];
    match (log["file"].as_str(), log["file_error"].as_str()) {
        (Some(file), None) => out.push_str(&format!(
            "Log: {file} ({} lines lost)\n",
            count(&log["dropped_lines"])
        )),
        (file, Some(error)) => out.push_str(&format!(
            "Log: {} CANNOT BE WRITTEN: {error} ({} lines lost)\n",
            file.unwrap_or("file"),
            count(&log["dropped_lines"])
        )),
        (None, None) => {}
    }
    let errors = report["last_errors"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !errors.is_empty() {
        out.push_str(&format!("\nLast errors ({}):\n", errors.len()));
        for error in errors.iter().rev() {
            out.push_str(&format!(
                "  {} {}: {}\n",
                age(now_ms, &error["at_ms"]),
                error["device_id"].as_str().unwrap_or("?"),
                error["message"].as_str().unwrap_or("?")
            ));
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
    let level = report["assessment"]["level"].as_str().unwrap_or("ok");
    out.push_str(&format!("\nOverall: {}\n", level.to_uppercase()));
    for reason in report["assessment"]["reasons"]
        .as_array()
        .into_iter()
        .flatten()
    {
        out.push_str(&format!("  - {}\n", reason.as_str().unwrap_or("?")));
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
    fn a_stale_report_is_critical_whatever_the_agent_judged() {
        let now = 1_800_000_000_000;
        let mut fresh = report(now - 1_000);
        fresh["assessment"] = serde_json::json!({"level": "warning", "reasons": ["x"]});
        assert_eq!(judge(&mut fresh, now), Level::Warning);
        assert_eq!(fresh["stale"], false);
        let mut old = fresh.clone();
        old["updated_at_ms"] = Value::from(now - 300_000);
        assert_eq!(judge(&mut old, now), Level::Critical);
        assert_eq!(old["assessment"]["level"], "critical");
        assert!(old["assessment"]["reasons"][0]
            .as_str()
            .unwrap()
            .contains("5 min ago"));
    }

    #[test]
    fn a_read_under_way_shows_its_progress() {
        let now = 1_800_000_000_000;
        let mut fresh = report(now - 1_000);
        fresh["devices"][0]["reading"] = serde_json::json!({
            "started_at_ms": now - 40_000, "phase": "credentials", "pages": 3,
            "list_entries": 120, "credentials_done": 1200, "credentials_total": 8000,
            "rate_per_s": 30.0, "eta_s": 226});
        let text = format_report(&fresh, now);
        assert!(
            text.contains("reading for 40 s: credentials 1200 of 8000, 30.0/s, about 226 s left"),
            "{text}"
        );
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
