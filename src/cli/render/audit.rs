//! The output of `audit query` on the box: one line per entry, newest first, with a hint for
//! the next page, or the entries as JSON.

use serde_json::Value;

use crate::sync::clock::format_ms;
use crate::sync::ports::{AuditEntry, AuditQuery};

/// The entries as a technician reads them; `query` gives the page for the paging hint.
pub fn entries(entries: &[AuditEntry], query: &AuditQuery) -> String {
    let mut out = String::new();
    for entry in entries {
        out.push_str(&format!(
            "{}  {:<15} {:<12} {:<10} {:<12} {}\n",
            format_ms(entry.at_ms),
            entry.operation.as_str(),
            if entry.device_id.is_empty() {
                "-"
            } else {
                &entry.device_id
            },
            entry.user_id.as_deref().unwrap_or("-"),
            entry.actor,
            entry.detail
        ));
    }
    if entries.is_empty() {
        out.push_str("no matching audit entries\n");
    } else if entries.len() == query.limit {
        out.push_str(&format!(
            "(page of {}; more with --offset {})\n",
            query.limit,
            query.offset + query.limit
        ));
    }
    out
}

/// The entries as JSON rows, times both readable and in milliseconds.
pub fn entries_json(entries: &[AuditEntry]) -> Value {
    entries.iter().map(entry_json).collect()
}

fn entry_json(entry: &AuditEntry) -> Value {
    serde_json::json!({
        "at": format_ms(entry.at_ms),
        "at_ms": entry.at_ms,
        "operation": entry.operation.as_str(),
        "device_id": entry.device_id,
        "user_id": entry.user_id,
        "actor": entry.actor,
        "detail": entry.detail,
    })
}
