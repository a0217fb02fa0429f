//! The durable ESL outbox (`esl_outbox`): one *intent* per change the upstream's feed or a
//! verification asked for, listing the articles to bring in line, in order. A re-key (a person
//! assigned or unassigned) is one intent naming the new article first and the old one second,
//! so the two-step saga is finished after a crash by replaying the intent. An intent leaves
//! the outbox in the same transaction that queues its outcome events upstream (through the
//! upstream outbox, the one owner of upstream delivery), so each is reported once.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::events::Event;
use crate::store::{keys, Record, Store, StoreError, TreeName, Tx, TxError};
use crate::upstream::{enqueue_in as enqueue_events_in, Outbox};

/// Work to do on the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    /// Articles to bring in line with the desired state, in order.
    pub articles: Vec<String>,
    /// Those already confirmed (a restart skips them).
    pub done: BTreeSet<String>,
    /// Why (`feed`, `verify`).
    pub reason: String,
    /// When queued (UTC ms).
    pub queued_at_ms: i64,
}

impl Record for Intent {
    const KIND: &'static str = "esl_intent";
    const VERSION: u32 = 1;
}

impl Intent {
    /// A new intent for `articles` (duplicates dropped, order kept).
    pub fn new(articles: Vec<String>, reason: &str) -> Intent {
        let mut seen = BTreeSet::new();
        Intent {
            articles: articles
                .into_iter()
                .filter(|a| seen.insert(a.clone()))
                .collect(),
            done: BTreeSet::new(),
            reason: reason.into(),
            queued_at_ms: chrono::Utc::now().timestamp_millis(),
        }
    }
}

/// Writes `intent` under `sequence` inside the caller's transaction (which declares
/// [`TreeName::EslOutbox`]).
pub fn enqueue_in(tx: &Tx<'_>, sequence: u64, intent: &Intent) -> Result<(), TxError> {
    tx.insert(TreeName::EslOutbox, keys::sequence(sequence), intent)
}

/// Every pending intent, oldest first.
pub fn pending(store: &Store) -> Result<Vec<(u64, Intent)>, StoreError> {
    store
        .scan_prefix::<Intent>(TreeName::EslOutbox, b"")
        .map(|item| item.map(|(key, intent)| (keys::parse_sequence(&key).unwrap_or(0), intent)))
        .collect()
}

/// Records that `articles` of intent `sequence` are confirmed.
pub fn mark_done(store: &Store, sequence: u64, articles: &[String]) -> Result<(), StoreError> {
    let key = keys::sequence(sequence);
    if let Some(mut intent) = store.get::<Intent>(TreeName::EslOutbox, key)? {
        intent.done.extend(articles.iter().cloned());
        store.insert(TreeName::EslOutbox, key, &intent)?;
    }
    Ok(())
}

/// Queues `intent` (if it names any article) together with `events` for the upstream, in one
/// transaction, then makes both durable.
pub async fn queue(
    store: &Store,
    upstream: &Outbox,
    intent: Option<Intent>,
    events: Vec<Event>,
) -> Result<(), StoreError> {
    let sequence = store.next_sequence()?;
    let prepared = prepare(upstream, events);
    store.transaction(&[TreeName::EslOutbox, TreeName::Outbox], |tx| {
        if let Some(intent) = intent.as_ref().filter(|i| !i.articles.is_empty()) {
            enqueue_in(tx, sequence, intent)?;
        }
        enqueue_events_in(tx, &prepared)
    })?;
    upstream.committed(prepared);
    store.make_durable().await
}

/// Removes intent `sequence` and queues its outcome `events`, in one transaction.
pub async fn finish(
    store: &Store,
    upstream: &Outbox,
    sequence: u64,
    events: Vec<Event>,
) -> Result<(), StoreError> {
    let prepared = prepare(upstream, events);
    store.transaction(&[TreeName::EslOutbox, TreeName::Outbox], |tx| {
        tx.remove(TreeName::EslOutbox, keys::sequence(sequence))?;
        enqueue_events_in(tx, &prepared)
    })?;
    upstream.committed(prepared);
    store.make_durable().await
}

/// Slots for `events`; a full upstream outbox drops these outcome reports (logged) rather than
/// holding the shelf labels back: the gateway's state is verified again anyway.
fn prepare(upstream: &Outbox, events: Vec<Event>) -> crate::store::Prepared<Event> {
    if events.is_empty() {
        return crate::store::Prepared::empty();
    }
    match upstream.prepare_all(events) {
        Ok(prepared) => prepared,
        Err(error) => {
            tracing::warn!("shelf-label outcome events not queued: {error}");
            crate::store::Prepared::empty()
        }
    }
}

/// Pending intents and the articles they still name.
pub fn depth(store: &Store) -> Result<(u64, u64), StoreError> {
    let mut intents = 0;
    let mut articles = 0;
    for (_, intent) in pending(store)? {
        intents += 1;
        articles += (intent.articles.len() - intent.done.len().min(intent.articles.len())) as u64;
    }
    Ok((intents, articles))
}
