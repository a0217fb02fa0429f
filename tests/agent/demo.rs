//! The README's first command: `edge-agent demo` works with no config, broker or upstream of
//! the user's own, and its JSON summary (counted from the store, the emulated terminal and the
//! in-process upstream receiver, not from the narration) shows every user read and buffered,
//! the deleted user missing, the punch stored, and every event delivered upstream once.

use std::process::Command;

use serde_json::Value;

#[test]
fn the_demo_buffers_every_user_reports_a_deleted_one_and_forwards_every_event_upstream() {
    let output = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(["demo", "--users", "45", "--photo-kb", "4", "--json"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "demo failed:\n{stdout}\n{stderr}");
    let summary: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|err| panic!("stdout is not the JSON summary ({err}):\n{stdout}"));
    let count = |field: &str| {
        summary[field]
            .as_u64()
            .unwrap_or_else(|| panic!("{field}: {summary:#}"))
    };
    assert_eq!(count("users_read"), 45, "{summary:#}");
    assert_eq!(count("users_buffered"), 45, "{summary:#}");
    assert_eq!(summary["missing"], serde_json::json!(["7"]), "{summary:#}");
    assert_eq!(count("punches_stored"), 1, "{summary:#}");
    assert_eq!(count("punches_acknowledged"), 1, "{summary:#}");
    assert_eq!(count("destructive_commands"), 0, "{summary:#}");
    assert_eq!(count("outbox_left"), 0, "{summary:#}");

    let upstream = &summary["upstream"];
    let applied = &upstream["applied_by_type"];
    assert_eq!(applied["user_discovered"], 45, "{summary:#}");
    assert_eq!(applied["user_missing"], 1, "{summary:#}");
    assert_eq!(applied["punch"], 1, "{summary:#}");
    assert_eq!(upstream["keys_with_two_payloads"], 0, "{summary:#}");
    let applied_total: u64 = applied
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(upstream["applied"], applied_total, "{summary:#}");
    assert_eq!(
        upstream["deliveries"].as_u64().unwrap(),
        applied_total + upstream["duplicates"].as_u64().unwrap(),
        "{summary:#}"
    );
}
