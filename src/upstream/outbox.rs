//! The durable outbox (U1): events wait here, in sled, until the upstream has them.
//!
//! - **Same transaction as the cause.** A producer takes a [`Prepared`] slot with
//!   [`Outbox::prepare`] (or [`Outbox::prepare_all`]) *before* its transaction (sequence
//!   numbers may not be taken inside one), writes it with [`enqueue_in`] inside its own
//!   [`Store::transaction`], and reports the commit with [`Outbox::committed`]; then it calls
//!   [`Store::make_durable`] before acknowledging anything. [`Outbox::enqueue`] does all of
//!   that for a lone event.
//! - **Durable, then forwarded.** An event is invisible to [`Outbox::peek`] (so to the
//!   forwarder, and so to the upstream) from the moment its slot is prepared until a
//!   flush-and-fsync that started after [`Outbox::committed`] has completed. The outbox checks
//!   this itself with a [`WriteMark`], so no producer can get the order wrong: whether it calls
//!   `committed` before or after `make_durable`, a crash between its commit and the fsync
//!   can never leave the upstream holding an event the store lost (whose read generation,
//!   and so key, would then be reused for another payload). A forwarder that finds only
//!   not-yet-durable events asks for the fsync itself ([`Outbox::awaits_durability`]).
//! - **Order.** Keys are store sequence numbers, so the outbox is FIFO overall and therefore
//!   per device, provided each device's events are enqueued one after another (the per-device
//!   sync loop does).
//! - **Byte cap, reject-new policy.** Past `max_bytes` new events are refused with
//!   [`OutboxError::Full`] and an [`AlarmKind::OutboxFull`] alarm; nothing queued is ever
//!   dropped. Concurrent producers may overshoot the cap by at most their own events.
//! - **Dead letters.** Permanent rejections move to the `dead_letters` tree with the reason,
//!   out of the queue's way; an operator lists them and re-queues them.
//!
//! Depth and bytes are counted in memory (one scan at open, then kept up to date by the
//! methods that add and remove), so status and the cap check cost nothing per event.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::Notify;

use crate::events::Event;
use crate::store::{
    envelope, keys, Alarm, AlarmKind, Prepared, Record, Store, StoreError, TreeName, Tx, TxError,
    WriteMark,
};

/// Bytes a key of the outbox occupies (a big-endian sequence number).
const KEY_BYTES: u64 = 8;

/// Handle to the outbox. Cheap to clone; clones share the counters and the wake-up signal.
#[derive(Clone)]
pub struct Outbox {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    max_bytes: u64,
    tally: Mutex<Tally>,
    /// Slots prepared in this process whose events are not yet known durable, by sequence
    /// number. Empty at open: whatever sled recovered is on disk.
    hidden: Mutex<BTreeMap<u64, Stage>>,
    work: Notify,
}

/// Where a prepared slot is on its way to the forwarder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Prepared; its transaction may or may not have committed yet.
    Prepared,
    /// Committed; durable once the store has made `mark` durable.
    Committed(WriteMark),
}

/// What is queued, as counted in memory.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    depth: u64,
    bytes: u64,
    /// Set when an event was refused; cleared when a drain makes room again. Keeps the alarm
    /// and the log line to one per episode.
    full: bool,
}

/// An event waiting in the outbox.
#[derive(Debug, Clone)]
pub struct Queued {
    /// Its outbox sequence number (the key).
    pub sequence: u64,
    /// The event.
    pub event: Event,
    size: u64,
}

/// How a delivery attempt ended for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// The upstream has it (accepted now or earlier): remove it.
    Delivered,
    /// Permanently refused: keep it aside with the reason.
    DeadLetter {
        /// The upstream's reason, or the agent's.
        reason: String,
        /// The HTTP status, when the whole request was refused.
        http_status: Option<u16>,
    },
}

/// An event the upstream refused for good, kept for an operator (list, fix, re-queue).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The event as it was queued.
    pub event: Event,
    /// Why it was refused.
    pub reason: String,
    /// The HTTP status when the whole request was refused (per-event rejections have none).
    pub http_status: Option<u16>,
    /// When it was set aside (UTC ms).
    pub dead_at_ms: i64,
}

impl Record for DeadLetter {
    const KIND: &'static str = "dead_letter";
    const VERSION: u32 = 1;
}

/// The outbox's health, for status, metrics and the health message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutboxStats {
    /// Events queued.
    pub depth: u64,
    /// Bytes queued (keys and encoded values).
    pub bytes: u64,
    /// The cap.
    pub max_bytes: u64,
    /// When the oldest queued event was observed (UTC ms).
    pub oldest_occurred_at_ms: Option<i64>,
    /// Events in the dead letters.
    pub dead_letters: u64,
    /// Whether new events are currently being refused.
    pub refusing: bool,
}

/// Why an outbox operation failed.
#[derive(Debug, Error)]
pub enum OutboxError {
    /// The cap is reached; the event was not queued (and nothing queued was dropped).
    #[error(
        "the outbox is full ({queued_bytes} of {max_bytes} bytes queued) so a {event_bytes}-byte \
         event was refused; check that the upstream is reachable (edge-agent status) or raise \
         upstream.outbox_max_bytes"
    )]
    Full {
        /// Bytes queued.
        queued_bytes: u64,
        /// The cap.
        max_bytes: u64,
        /// Size of the refused event.
        event_bytes: u64,
    },
    /// No dead letter has that sequence number (listed numbers only).
    #[error("there is no dead letter number {sequence}; list them to see the numbers")]
    NoSuchDeadLetter {
        /// The number asked for.
        sequence: u64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Bytes `events` will occupy in the outbox (keys and encoded values).
fn encoded_size(events: &[Event]) -> Result<u64, OutboxError> {
    let mut size = 0;
    for event in events {
        size += KEY_BYTES
            + envelope::encode(event)
                .map_err(|error| StoreError::value(TreeName::Outbox, b"(new event)", error))?
                .len() as u64;
    }
    Ok(size)
}

/// Writes prepared events into the outbox inside the caller's transaction, which must
/// declare [`TreeName::Outbox`]. Safe to run again when sled retries the closure.
pub fn enqueue_in(tx: &Tx<'_>, prepared: &Prepared<Event>) -> Result<(), TxError> {
    for (sequence, event) in &prepared.items {
        tx.insert(TreeName::Outbox, keys::sequence(*sequence), event)?;
    }
    Ok(())
}

impl Outbox {
    /// Opens the outbox in `store`, counting what is queued (one scan of keys and value
    /// sizes; this is the outbox's share of start-up time).
    pub fn open(store: &Store, max_bytes: u64) -> Result<Outbox, OutboxError> {
        let mut tally = Tally::default();
        for entry in store.walk(TreeName::Outbox, b"") {
            let (_, value) = entry.map_err(StoreError::sled("count the outbox"))?;
            tally.depth += 1;
            tally.bytes += KEY_BYTES + value.len() as u64;
        }
        Ok(Outbox {
            inner: Arc::new(Inner {
                store: store.clone(),
                max_bytes,
                tally: Mutex::new(tally),
                hidden: Mutex::new(BTreeMap::new()),
                work: Notify::new(),
            }),
        })
    }

    /// The store the outbox lives in.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Reserves a slot for `event` after checking there is room; refuses with
    /// [`OutboxError::Full`] (and raises the alarm once per episode) when there is not.
    pub fn prepare(&self, event: Event) -> Result<Prepared<Event>, OutboxError> {
        self.prepare_all(vec![event])
    }

    /// Reserves slots for `events`, in order, after checking there is room for all of them;
    /// refuses the whole batch with [`OutboxError::Full`] when there is not, so a change is
    /// never half-reported.
    pub fn prepare_all(&self, events: Vec<Event>) -> Result<Prepared<Event>, OutboxError> {
        if events.is_empty() {
            return Ok(Prepared::empty());
        }
        let size = encoded_size(&events)?;
        self.check_room(size)?;
        self.reserve(events, size)
    }

    /// Reserves slots for a catch-up (see `crate::sync::catch_up`): accepted once the queue
    /// is below half its cap, whatever the catch-up's own size, because a catch-up carries a
    /// whole device and may be larger than the cap itself; refused with [`OutboxError::Full`]
    /// otherwise. So the outbox may exceed its cap by at most one device's catch-up.
    pub fn prepare_catch_up(&self, events: Vec<Event>) -> Result<Prepared<Event>, OutboxError> {
        let queued_bytes = self.lock_tally().bytes;
        let max_bytes = self.inner.max_bytes;
        if queued_bytes >= max_bytes / 2 {
            return Err(OutboxError::Full {
                queued_bytes,
                max_bytes,
                event_bytes: 0,
            });
        }
        let size = encoded_size(&events)?;
        self.reserve(events, size)
    }

    /// Numbers `events` and hides their slots until they are durable.
    fn reserve(&self, events: Vec<Event>, size: u64) -> Result<Prepared<Event>, OutboxError> {
        let mut prepared = Prepared::number(&self.inner.store, events)?;
        prepared.bytes = size;
        let mut hidden = self.lock_hidden();
        for (sequence, _) in &prepared.items {
            hidden.insert(*sequence, Stage::Prepared);
        }
        // A slot whose transaction aborted stays listed (a few bytes each); it never reaches
        // the tree, so it hides nothing.
        Ok(prepared)
    }

    /// Reports that the transaction holding `prepared` committed: counts its events and wakes
    /// the forwarder. The events stay hidden from [`Outbox::peek`] until the store has made
    /// this commit durable (see the module docs), whichever order the caller uses.
    pub fn committed(&self, prepared: Prepared<Event>) {
        if prepared.is_empty() {
            return;
        }
        let mark = self.inner.store.mark_writes();
        {
            let mut hidden = self.lock_hidden();
            for (sequence, _) in &prepared.items {
                hidden.insert(*sequence, Stage::Committed(mark));
            }
        }
        {
            let mut tally = self.lock_tally();
            tally.depth += prepared.len() as u64;
            tally.bytes += prepared.bytes;
        }
        self.inner.work.notify_one();
    }

    /// Whether committed events are waiting only for the store's next fsync to become
    /// visible. The forwarder then calls [`Store::make_durable`] itself instead of idling.
    pub fn awaits_durability(&self) -> bool {
        let store = &self.inner.store;
        self.lock_hidden()
            .values()
            .any(|stage| matches!(stage, Stage::Committed(mark) if !store.is_durable(*mark)))
    }

    /// Queues one event on its own and waits until it is durable; returns its sequence number.
    pub async fn enqueue(&self, event: Event) -> Result<u64, OutboxError> {
        let prepared = self.prepare(event)?;
        let sequence = prepared.items[0].0;
        self.inner
            .store
            .transaction(&[TreeName::Outbox], |tx| enqueue_in(tx, &prepared))?;
        self.committed(prepared);
        self.inner.store.make_durable().await?;
        Ok(sequence)
    }

    /// Up to `limit` durable events from the head of the queue, oldest first. Stops at the
    /// first event not yet known durable, so order is kept.
    pub fn peek(&self, limit: usize) -> Result<Vec<Queued>, OutboxError> {
        let mut batch = Vec::with_capacity(limit.min(1024));
        let mut hidden = self.lock_hidden();
        let store = &self.inner.store;
        for entry in store.tree(TreeName::Outbox).iter() {
            if batch.len() >= limit {
                break;
            }
            let (key, value) = entry.map_err(StoreError::sled("read the outbox"))?;
            if let Some(sequence) = keys::parse_sequence(&key) {
                match hidden.get(&sequence) {
                    None => {}
                    Some(Stage::Committed(mark)) if store.is_durable(*mark) => {
                        hidden.remove(&sequence);
                    }
                    Some(_) => break,
                }
            }
            let event = envelope::decode::<Event>(&value)
                .map_err(|error| StoreError::value(TreeName::Outbox, &key, error))?;
            let sequence = keys::parse_sequence(&key).ok_or_else(|| StoreError::BadKey {
                tree: TreeName::Outbox,
                key: format!("{key:?}"),
                expected: "an 8-byte big-endian sequence number",
            })?;
            batch.push(Queued {
                sequence,
                event,
                size: KEY_BYTES + value.len() as u64,
            });
        }
        Ok(batch)
    }

    /// Applies the outcome of a delivery attempt in one transaction (delivered events leave
    /// the queue, refused ones move to the dead letters) and waits until that is durable.
    pub async fn settle(&self, settled: &[(Queued, Settlement)]) -> Result<(), OutboxError> {
        if settled.is_empty() {
            return Ok(());
        }
        let dead_at_ms = chrono::Utc::now().timestamp_millis();
        let freed =
            self.inner
                .store
                .transaction(&[TreeName::Outbox, TreeName::DeadLetters], |tx| {
                    let mut freed = (0u64, 0u64);
                    for (queued, settlement) in settled {
                        let key = keys::sequence(queued.sequence);
                        if !tx.remove(TreeName::Outbox, key)? {
                            continue;
                        }
                        freed.0 += 1;
                        freed.1 += queued.size;
                        if let Settlement::DeadLetter {
                            reason,
                            http_status,
                        } = settlement
                        {
                            let letter = DeadLetter {
                                event: queued.event.clone(),
                                reason: reason.clone(),
                                http_status: *http_status,
                                dead_at_ms,
                            };
                            tx.insert(TreeName::DeadLetters, key, &letter)?;
                        }
                    }
                    Ok(freed)
                })?;
        self.release(freed.0, freed.1);
        self.inner.store.make_durable().await?;
        Ok(())
    }

    /// Resolves when events may have been queued since the last call (or right away if some
    /// were queued while nobody waited). The forwarder's idle wait.
    pub async fn wait_for_work(&self) {
        self.inner.work.notified().await;
    }

    /// Every dead letter with its sequence number, oldest first.
    pub fn dead_letters(&self) -> Result<Vec<(u64, DeadLetter)>, OutboxError> {
        self.inner
            .store
            .scan_prefix::<DeadLetter>(TreeName::DeadLetters, [])
            .map(|entry| {
                let (key, letter) = entry?;
                Ok((keys::parse_sequence(&key).unwrap_or_default(), letter))
            })
            .collect()
    }

    /// Puts a dead letter back at the end of the queue (after the operator fixed the cause);
    /// returns its new outbox sequence number. Subject to the byte cap like any new event.
    pub async fn requeue(&self, dead_letter: u64) -> Result<u64, OutboxError> {
        let store = &self.inner.store;
        let letter: DeadLetter = store
            .get(TreeName::DeadLetters, keys::sequence(dead_letter))?
            .ok_or(OutboxError::NoSuchDeadLetter {
                sequence: dead_letter,
            })?;
        let prepared = self.prepare(letter.event)?;
        let moved = store.transaction(&[TreeName::Outbox, TreeName::DeadLetters], |tx| {
            if !tx.remove(TreeName::DeadLetters, keys::sequence(dead_letter))? {
                return Ok(false);
            }
            enqueue_in(tx, &prepared)?;
            Ok(true)
        })?;
        if !moved {
            return Err(OutboxError::NoSuchDeadLetter {
                sequence: dead_letter,
            });
        }
        let sequence = prepared.items[0].0;
        self.committed(prepared);
        store.make_durable().await?;
        Ok(sequence)
    }

    /// Re-queues every dead letter, oldest first (after a fix that cleared them all, e.g. a
    /// corrected upstream URL); returns how many were re-queued. Stops at the first failure,
    /// such as the byte cap, leaving the rest as dead letters.
    pub async fn requeue_all(&self) -> Result<usize, OutboxError> {
        let letters = self.dead_letters()?;
        for (sequence, _) in &letters {
            self.requeue(*sequence).await?;
        }
        Ok(letters.len())
    }

    /// Depth, bytes, oldest event, dead letters and whether new events are refused.
    pub fn stats(&self) -> Result<OutboxStats, OutboxError> {
        let tally = *self.lock_tally();
        let store = &self.inner.store;
        let oldest = store
            .tree(TreeName::Outbox)
            .first()
            .map_err(StoreError::sled("read the outbox head"))?
            .map(|(key, value)| {
                envelope::decode::<Event>(&value)
                    .map_err(|error| StoreError::value(TreeName::Outbox, &key, error))
            })
            .transpose()?;
        Ok(OutboxStats {
            depth: tally.depth,
            bytes: tally.bytes,
            max_bytes: self.inner.max_bytes,
            oldest_occurred_at_ms: oldest.map(|event| event.occurred_at_ms),
            dead_letters: store.tree(TreeName::DeadLetters).len() as u64,
            refusing: tally.full,
        })
    }

    fn check_room(&self, size: u64) -> Result<(), OutboxError> {
        let max_bytes = self.inner.max_bytes;
        let (queued_bytes, first_refusal) = {
            let mut tally = self.lock_tally();
            if tally.bytes + size <= max_bytes {
                return Ok(());
            }
            let first = !tally.full;
            tally.full = true;
            (tally.bytes, first)
        };
        let error = OutboxError::Full {
            queued_bytes,
            max_bytes,
            event_bytes: size,
        };
        if first_refusal {
            tracing::error!("{error} (logged once until the outbox has room again)");
            let alarm = Alarm {
                raised_at_unix_ms: chrono::Utc::now().timestamp_millis(),
                kind: AlarmKind::OutboxFull {
                    queued_bytes,
                    max_bytes,
                },
                message: error.to_string(),
            };
            if let Err(store_error) = self.inner.store.raise_alarm(&alarm) {
                tracing::error!("cannot record the outbox-full alarm: {store_error}");
            }
        }
        Err(error)
    }

    fn release(&self, depth: u64, bytes: u64) {
        let mut tally = self.lock_tally();
        tally.depth = tally.depth.saturating_sub(depth);
        tally.bytes = tally.bytes.saturating_sub(bytes);
        if tally.full && tally.bytes < self.inner.max_bytes {
            tally.full = false;
            tracing::info!(
                queued_bytes = tally.bytes,
                "the outbox has room again; new events are accepted"
            );
        }
    }

    fn lock_hidden(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Stage>> {
        // A map of stages; every update is a single insert or remove.
        self.inner
            .hidden
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn lock_tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        // The tally is plain counters: a panic elsewhere cannot leave it half-updated.
        self.inner
            .tally
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{EventBody, EventKey};
    use crate::store::StoreOptions;

    fn alarm_event(n: u32) -> Event {
        Event {
            key: EventKey::command("alarm", "a", &n.to_string()),
            agent_id: "a".into(),
            device_id: String::new(),
            occurred_at_ms: 1_000 + i64::from(n),
            clock_synchronized: true,
            fencing_token: 0,
            body: EventBody::Alarm {
                kind: "test".into(),
                message: format!("alarm {n}"),
            },
        }
    }

    #[tokio::test]
    async fn counts_survive_reopening_and_settling_twice_frees_once() {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions::at(dir.path().join("store"));
        let before = {
            let store = Store::open(&options).unwrap().store;
            let outbox = Outbox::open(&store, u64::MAX).unwrap();
            for n in 0..3 {
                outbox.enqueue(alarm_event(n)).await.unwrap();
            }
            outbox.stats().unwrap()
        };
        let store = crate::store::test_support::reopen(&options);
        let outbox = Outbox::open(&store, u64::MAX).unwrap();
        let after = outbox.stats().unwrap();
        assert_eq!((after.depth, after.bytes), (before.depth, before.bytes));
        assert_eq!(after.oldest_occurred_at_ms, Some(1_000));

        let head: Vec<_> = outbox
            .peek(1)
            .unwrap()
            .into_iter()
            .map(|queued| (queued, Settlement::Delivered))
            .collect();
        outbox.settle(&head).await.unwrap();
        outbox.settle(&head).await.unwrap();
        let settled = outbox.stats().unwrap();
        assert_eq!(settled.depth, 2);
        assert_eq!(settled.bytes, before.bytes - head[0].0.size);
        assert_eq!(settled.oldest_occurred_at_ms, Some(1_001));
    }

    /// Durable, then forwarded: a committed event stays out of `peek` (the forwarder's only
    /// view) until an fsync that started after the commit, whichever order the producer uses.
    #[tokio::test]
    async fn an_event_is_invisible_to_the_forwarder_until_an_fsync_after_its_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreOptions::at(dir.path().join("s")))
            .unwrap()
            .store;
        let outbox = Outbox::open(&store, u64::MAX).unwrap();
        let flushes = store.durable_flushes();
        let prepared = outbox.prepare(alarm_event(1)).unwrap();
        store
            .transaction(&[TreeName::Outbox], |tx| enqueue_in(tx, &prepared))
            .unwrap();
        assert!(
            outbox.peek(10).unwrap().is_empty(),
            "committed to sled but not yet reported"
        );
        // The wrong order: the commit reported (and the forwarder woken) before the fsync.
        outbox.committed(prepared);
        assert_eq!(store.durable_flushes(), flushes, "no fsync happened yet");
        assert!(
            outbox.peek(10).unwrap().is_empty(),
            "an event was visible to the forwarder before the fsync that makes it durable"
        );
        assert!(outbox.awaits_durability());
        assert_eq!(outbox.stats().unwrap().depth, 1);

        store.make_durable().await.unwrap();
        assert!(!outbox.awaits_durability());
        let visible = outbox.peek(10).unwrap();
        assert_eq!(visible.len(), 1);
        assert_eq!(visible[0].event, alarm_event(1));
    }

    /// A slot prepared while another producer's transaction is still open keeps the queue's
    /// order: nothing behind it is handed out until it is durable too.
    #[tokio::test]
    async fn a_hidden_event_holds_back_the_ones_behind_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreOptions::at(dir.path().join("s")))
            .unwrap()
            .store;
        let outbox = Outbox::open(&store, u64::MAX).unwrap();
        let first = outbox.prepare(alarm_event(1)).unwrap();
        store
            .transaction(&[TreeName::Outbox], |tx| enqueue_in(tx, &first))
            .unwrap();
        outbox.enqueue(alarm_event(2)).await.unwrap();
        assert!(outbox.peek(10).unwrap().is_empty(), "order kept");
        outbox.committed(first);
        store.make_durable().await.unwrap();
        let keys: Vec<_> = outbox
            .peek(10)
            .unwrap()
            .into_iter()
            .map(|queued| queued.event)
            .collect();
        assert_eq!(keys, [alarm_event(1), alarm_event(2)]);
    }

    #[tokio::test]
    async fn requeueing_an_unknown_dead_letter_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreOptions::at(dir.path().join("s")))
            .unwrap()
            .store;
        let outbox = Outbox::open(&store, u64::MAX).unwrap();
        let error = outbox.requeue(42).await.unwrap_err();
        assert!(matches!(
            error,
            OutboxError::NoSuchDeadLetter { sequence: 42 }
        ));
    }
}
