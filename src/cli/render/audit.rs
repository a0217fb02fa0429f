//! The output of `audit query` on the box: one line per entry, newest first, with a hint for
//! the next page, or the entries as JSON.

use serde_json::Value;

use crate::audit::{AuditEntry, AuditQuery};
use crate::sync::clock::format_ms;

/// The entries as a technician reads them; `query` and `offset` give the page for the paging
/// hint.
pub fn entries(entries: &[AuditEntry], query: &AuditQuery, offset: usize) -> String {
    let mut out = String::new();
    for entry in entries {
        out.push_str(&format!(
            "{}  {:<15} {:<12} {:<10} {:<12} {}\n",
            format_ms(entry.at_unix_ms),
            entry.operation.as_str(),
            entry.device_id.as_deref().unwrap_or("-"),
            entry.device_user_id.as_deref().unwrap_or("-"),
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
            offset + query.limit
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
        "at": format_ms(entry.at_unix_ms),
        "at_ms": entry.at_unix_ms,
        "operation": entry.operation.as_str(),
        "device_id": entry.device_id.as_deref().unwrap_or_default(),
        "user_id": entry.device_user_id,
        "actor": entry.actor,
        "detail": entry.detail,
    })
}
