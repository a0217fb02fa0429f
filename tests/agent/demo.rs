//! The README's first command: `edge-agent demo` works with no config, broker or upstream, and
//! says what happened.

use std::process::Command;

#[test]
fn the_demo_buffers_every_user_reports_a_deleted_one_and_acknowledges_a_stored_punch() {
    let output = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(["demo", "--users", "45", "--photo-kb", "4"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for expected in [
        "45 users in",
        "the list matches the terminal's own count; 45 discovered and buffered as unmapped",
        "no credential fetched again, 0 changes",
        "user 7 (user7) is MISSING",
        "Punch stored durably, then acknowledged",
        "45 user_discovered, 1 user_missing, 1 punch",
        "none destructive",
        "Demo finished",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
}
