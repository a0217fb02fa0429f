//! The list commands' work, one function each, shared by the handlers (MQTT and the local
//! control socket) and by the on-box commands when the agent is stopped and they open the store
//! themselves: one implementation of each listing, one shape of reply, one paging.

use serde_json::{json, Value};

use super::paging::{self, numeric_key, Order, PageRequest};
use super::reply::CommandError;
use crate::store::Store;
use crate::sync::buffer::{self, MappingStatus};
use crate::sync::{conflicts, held_values, history};

/// Most records a list command returns in one page (`limit`); a page also stops at
/// [`paging::PAGE_BYTES`], so an MQTT reply always fits the packet cap.
pub const MAX_PAGE: usize = 1000;
/// Records per page when the request does not say.
pub const DEFAULT_PAGE: usize = 500;

fn failed(err: impl std::fmt::Display) -> CommandError {
    CommandError::failed(err.to_string())
}

/// Unix milliseconds as RFC 3339 UTC, the time format of every reply.
pub fn rfc3339_ms(unix_ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(unix_ms).map_or_else(
        || unix_ms.to_string(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    )
}

/// `buffer list`: one page of buffered users ordered by device and user id (cursor
/// `device/user`), the counts per status, and `next`.
pub fn buffer(
    store: &Store,
    device: Option<&str>,
    status: Option<MappingStatus>,
    request: &PageRequest,
) -> Result<Value, CommandError> {
    let mut users = buffer::list(store, device, status).map_err(failed)?;
    let key = |user: &buffer::BufferView| format!("{}/{}", user.device_id, user.user_id);
    users.sort_by_key(key);
    let page = paging::page(users, key, Order::Ascending, request);
    let stats = buffer::stats(store, device).map_err(failed)?;
    Ok(json!({ "users": page.items, "stats": stats, "next": page.next }))
}

/// `buffer credential`: one page of the credential values the store last read from `device`
/// for `user` (only `slot`, when given), by slot (cursor: the slot). Each value is read back
/// and checked against its digest; a page stops at [`paging::PAGE_BYTES`], so a user with
/// several 40 KB photos and templates comes back over several pages, never `too_large`.
pub fn credential(
    store: &Store,
    device: &str,
    user: &str,
    slot: Option<u16>,
    request: &PageRequest,
) -> Result<Value, CommandError> {
    let values = held_values::held_values(store, device, user, slot).map_err(failed)?;
    let key = |value: &held_values::HeldValue| numeric_key(u64::from(value.slot));
    let page = paging::page(values, key, Order::Ascending, request);
    Ok(json!({
        "device": device,
        "user": user,
        "credentials": page.items,
        "next": page.next,
    }))
}

/// `conflicts list`: one page of open conflicts ordered by device and user id.
pub fn conflicts(
    store: &Store,
    device: Option<&str>,
    request: &PageRequest,
) -> Result<Value, CommandError> {
    let mut open = conflicts::list(store, device).map_err(failed)?;
    let key = |c: &conflicts::ConflictRecord| format!("{}/{}", c.device_id, c.device.user_id);
    open.sort_by_key(key);
    let page = paging::page(open, key, Order::Ascending, request);
    Ok(json!({ "conflicts": page.items, "next": page.next }))
}

/// `history`: one page of a device's complete reads, newest first (cursor: the read time).
pub fn history(store: &Store, device: &str, request: &PageRequest) -> Result<Value, CommandError> {
    let mut entries = history::list(store, device).map_err(failed)?;
    entries.sort_by_key(|entry| std::cmp::Reverse(entry.read_at_ms));
    let reads = entries.into_iter().map(|entry| {
        let mut value = serde_json::to_value(&entry).unwrap_or(Value::Null);
        value["read_at"] = json!(rfc3339_ms(entry.read_at_ms));
        value
    });
    let key = |read: &Value| numeric_key(read["read_at_ms"].as_u64().unwrap_or_default());
    let page = paging::page(reads, key, Order::Descending, request);
    Ok(json!({ "device": device, "reads": page.items, "next": page.next }))
}

/// `backups list`: one page of backup files ordered by file name.
pub fn backups(
    dir: &std::path::Path,
    device: Option<&str>,
    request: &PageRequest,
) -> Result<Value, CommandError> {
    let backups = crate::sync::backup::list(dir, device).map_err(failed)?;
    let mut backups: Vec<Value> = backups
        .into_iter()
        .map(|b| serde_json::to_value(b).unwrap_or(Value::Null))
        .collect();
    let key = |b: &Value| {
        let path = b["path"].as_str().unwrap_or_default();
        path.rsplit('/').next().unwrap_or_default().to_string()
    };
    backups.sort_by_key(key);
    let page = paging::page(backups, key, Order::Ascending, request);
    Ok(json!({ "backups": page.items, "next": page.next }))
}

/// `audit query`: one page of matching entries, newest first; `next` (and its older name
/// `next_before`) is the sequence to continue below. A page also stops at the byte budget.
pub fn audit(
    audit: &crate::audit::Audit,
    query: &crate::audit::AuditQuery,
) -> Result<Value, CommandError> {
    let page = audit.query(query).map_err(failed)?;
    let mut next = page.next_before;
    let mut bytes = 0usize;
    let mut kept = 0usize;
    for (_, entry) in &page.entries {
        bytes += entry.detail.len() + entry.actor.len() + 200;
        if kept > 0 && bytes > paging::PAGE_BYTES {
            next = Some(page.entries[kept - 1].0);
            break;
        }
        kept += 1;
    }
    let entries: Vec<Value> = page
        .entries
        .into_iter()
        .take(kept)
        .map(|(sequence, entry)| {
            json!({
                "sequence": sequence,
                "time": rfc3339_ms(entry.at_unix_ms),
                "operation": entry.operation.as_str(),
                "device": entry.device_id,
                "user": entry.device_user_id,
                "actor": entry.actor,
                "detail": entry.detail,
            })
        })
        .collect();
    Ok(json!({
        "entries": entries,
        "next": next.map(|sequence| sequence.to_string()),
        "next_before": next,
    }))
}
