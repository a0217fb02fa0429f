//! Helpers shared by the ZK tests: hex fixtures and timestamps in the peers' format.

use std::path::PathBuf;

/// Parses hex, ignoring case.
pub(crate) fn hex(text: &str) -> Vec<u8> {
    assert!(text.len() % 2 == 0, "odd-length hex {text:?}");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex digit"))
        .collect()
}

/// Loads a fixture: one hex segment per non-comment line, exactly as the capture delivered it.
pub(crate) fn fixture_segments(name: &str) -> Vec<Vec<u8>> {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "fixtures", "zk", name]
        .iter()
        .collect();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()));
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(hex)
        .collect()
}

/// Seconds since the Unix epoch of a naive "YYYY-MM-DDTHH:MM:SS" (for comparing device clocks).
pub(crate) fn naive_seconds(text: &str) -> i64 {
    let n = |range: std::ops::Range<usize>| text[range].parse::<i64>().expect("timestamp digits");
    let (year, month, day) = (n(0..4), n(5..7), n(8..10));
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19)
}

/// Formats a ZK time the way the peer scripts print timestamps.
pub(crate) fn zk_iso(time: device_protocols::zk::ZkTime) -> String {
    let t = time.to_parts();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}
