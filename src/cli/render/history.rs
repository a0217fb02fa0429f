//! The text of `edge-agent history`: user counts per complete read as a sparkline, with a
//! marker under each read that lost users and the list of those reads.

use crate::sync::history::HistoryEntry;

/// Eight heights, lowest first.
const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
/// Marks a read that lost users, under its bar.
pub const LOST_MARK: char = '^';

fn time(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |at| {
            at.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        },
    )
}

/// The drawing of `entries` (oldest first) of `device`.
pub fn sparkline(device: &str, entries: &[HistoryEntry]) -> String {
    let Some(last) = entries.last() else {
        return format!("{device}: no complete read yet\n");
    };
    let low = entries.iter().map(|e| e.users).min().unwrap_or(0);
    let high = entries.iter().map(|e| e.users).max().unwrap_or(0);
    let bar = |users: u64| {
        if high == low {
            BARS[BARS.len() - 1]
        } else {
            let step = (users - low) * (BARS.len() as u64 - 1) / (high - low);
            BARS[step as usize]
        }
    };
    let line: String = entries.iter().map(|e| bar(e.users)).collect();
    let marks: String = entries
        .iter()
        .map(|e| if e.missing.is_empty() { ' ' } else { LOST_MARK })
        .collect();
    let mut out = format!(
        "{device}: users over the last {} complete reads ({} to {}; min {low}, max {high}, now {})\n",
        entries.len(),
        time(entries[0].read_at_ms),
        time(last.read_at_ms),
        last.users
    );
    out.push_str(&format!("  {line}\n"));
    let lost: Vec<&HistoryEntry> = entries.iter().filter(|e| !e.missing.is_empty()).collect();
    if lost.is_empty() {
        out.push_str("  no read lost users\n");
        return out;
    }
    out.push_str(&format!(
        "  {}\n  {LOST_MARK} read that lost users:\n",
        marks.trim_end()
    ));
    for entry in lost {
        let mut ids = entry
            .missing
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if entry.missing.len() > 10 {
            ids.push_str(&format!(" and {} more", entry.missing.len() - 10));
        }
        out.push_str(&format!(
            "    read #{} at {}: {} users, {} gone ({ids})\n",
            entry.generation,
            time(entry.read_at_ms),
            entry.users,
            entry.missing.len()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(generation: u64, users: u64, missing: &[&str]) -> HistoryEntry {
        HistoryEntry {
            generation,
            read_at_ms: 1_800_000_000_000 + generation as i64 * 60_000,
            users,
            device_user_count: users,
            added: Vec::new(),
            missing: missing.iter().map(|s| s.to_string()).collect(),
            changed: Vec::new(),
        }
    }

    #[test]
    fn the_read_that_lost_users_is_marked_under_its_bar() {
        let text = sparkline(
            "door",
            &[
                entry(1, 10, &[]),
                entry(2, 10, &[]),
                entry(3, 8, &["4", "5"]),
            ],
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1], "  ██▁", "{text}");
        assert_eq!(lines[2], "    ^", "{text}");
        assert!(
            text.contains("read #3") && text.contains("2 gone (4, 5)"),
            "{text}"
        );
    }
}
