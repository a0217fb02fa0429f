//! The README's first command: `edge-agent demo` works with no config, broker or upstream, and
//! says what happened.

use std::process::Command;

#[test]
fn the_demo_reads_every_user_and_acknowledges_a_stored_punch() {
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
        "Complete read: 45 users, 135 credentials",
        "matches the terminal's own count (45)",
        "0 credentials fetched (everything already held)",
        "Punch stored durably, then acknowledged",
        "none destructive",
        "Demo finished",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
}
