//! `POOL-nnnn` articles (`esl_pool`): an unassigned person shows on a pool article of their
//! own, allocated once from a durable counter and bound to that person for good. Ids are
//! never reused (the counter only grows) and pool articles are never deleted (released by
//! blanking). An alarm is raised when 80 % of the range is used.

use serde::{Deserialize, Serialize};

use super::article::POOL_PREFIX;
use crate::store::{Alarm, AlarmKind, Record, Store, StoreError, TreeName};

/// Highest pool number (`POOL-9999`).
pub const POOL_MAX: u32 = 9999;
/// Pool numbers in use past which the alarm is raised (80 %).
pub const POOL_ALARM_AT: u32 = POOL_MAX * 4 / 5;
/// Meta key of the counter.
const COUNTER_KEY: &[u8] = b"esl_pool_counter";

/// The last pool number handed out (stored in `meta`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct PoolCounter {
    last: u32,
}

impl Record for PoolCounter {
    const KIND: &'static str = "esl_pool_counter";
    const VERSION: u32 = 1;
}

/// A person's pool article id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct PoolEntry {
    article_id: String,
}

impl Record for PoolEntry {
    const KIND: &'static str = "esl_pool";
    const VERSION: u32 = 1;
}

/// The person's pool article id, if one was allocated.
pub fn lookup(store: &Store, person_id: &str) -> Result<Option<String>, StoreError> {
    Ok(store
        .get::<PoolEntry>(TreeName::EslPool, person_id)?
        .map(|entry| entry.article_id))
}

/// How many pool numbers were handed out.
pub fn used(store: &Store) -> Result<u32, StoreError> {
    Ok(store
        .meta::<PoolCounter>(COUNTER_KEY)?
        .map_or(0, |c| c.last))
}

/// The person's pool article id, allocating the next number the first time. Not durable yet:
/// the caller makes the store durable before using it. `None` when the range is used up.
pub fn pool_id(store: &Store, person_id: &str) -> Result<Option<String>, StoreError> {
    if let Some(existing) = lookup(store, person_id)? {
        return Ok(Some(existing));
    }
    let last = used(store)?;
    if last >= POOL_MAX {
        return Ok(None);
    }
    let next = last + 1;
    let article_id = format!("{POOL_PREFIX}{next:04}");
    store.set_meta(COUNTER_KEY, &PoolCounter { last: next })?;
    store.insert(
        TreeName::EslPool,
        person_id,
        &PoolEntry {
            article_id: article_id.clone(),
        },
    )?;
    if next == POOL_ALARM_AT {
        store.raise_alarm(&Alarm {
            raised_at_unix_ms: chrono::Utc::now().timestamp_millis(),
            kind: AlarmKind::EslAttention {
                problem: "esl_pool_nearly_full".into(),
                detail: format!("{next} of {POOL_MAX} POOL- ids used"),
            },
            message: format!(
                "{next} of the {POOL_MAX} POOL- article ids are used (they are never reused); \
                 plan a new id range with the AIMS administrator"
            ),
        })?;
    }
    Ok(Some(article_id))
}
