//! The table of buffered users, shared by `buffer list` on the box and `ctl … buffer list`:
//! both produce the same `{"users": [...], "stats": {...}}` value, so one renderer serves both.

use serde_json::Value;

use crate::sync::clock::format_ms;

/// The listing as a table, one line per user, then the counts per status.
pub fn listing(listing: &Value) -> String {
    let mut out = format!(
        "{:<12} {:<10} {:<20} {:<9} {:<12} {:<28} {:<21} {}\n",
        "DEVICE", "USER", "NAME", "STATUS", "PERSON", "CREDENTIALS", "LAST SEEN", "DISCOVERED"
    );
    for user in listing["users"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{:<12} {:<10} {:<20} {:<9} {:<12} {:<28} {:<21} {}\n",
            text(&user["device_id"]),
            text(&user["user_id"]),
            text(&user["name"]),
            text(&user["status"]),
            user["person_id"].as_str().unwrap_or("-"),
            text(&user["credentials"]),
            format_ms(user["last_seen_at_ms"].as_i64().unwrap_or_default()),
            format_ms(user["discovered_at_ms"].as_i64().unwrap_or_default()),
        ));
    }
    let stats = &listing["stats"];
    let count = |name: &str| stats[name].as_u64().unwrap_or_default();
    out.push_str(&format!(
        "{} users: {} unmapped, {} pending, {} mapped, {} conflict, {} missing\n",
        count("total"),
        count("unmapped"),
        count("pending"),
        count("mapped"),
        count("conflict"),
        count("missing")
    ));
    out
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_listed_with_their_counts() {
        let text = listing(&serde_json::json!({
            "users": [{"device_id": "door", "user_id": "7", "name": "Ana", "status": "unmapped",
                       "person_id": null, "credentials": "card, photo",
                       "discovered_at_ms": 0, "last_seen_at_ms": 86_400_000}],
            "stats": {"total": 1, "unmapped": 1, "pending": 0, "mapped": 0, "conflict": 0,
                      "missing": 0}
        }));
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("DEVICE       USER"), "{text}");
        assert!(
            lines[1].starts_with("door         7          Ana"),
            "{text}"
        );
        assert!(
            lines[1].contains("1970-01-02 00:00:00Z  1970-01-01 00:00:00Z"),
            "{text}"
        );
        assert!(lines[1].contains(" -  "), "{text}");
        assert_eq!(
            lines[2],
            "1 users: 1 unmapped, 0 pending, 0 mapped, 0 conflict, 0 missing"
        );
    }
}
