//! Punch backfill after a (re)connection: the punches the terminal holds as "new" (they may
//! have piled up while it was offline) are read with `getnewlog` and stored durably.
//!
//! The terminal counts punches served by `getnewlog` as delivered, so a failed store (the
//! outbox is full, the disk refuses) must not lose them: the agent notes durably that a
//! backfill is owed since its last stored punch of that device, and retries with a backoff from
//! `getalllog` (the whole log store; the punches before the window are dropped here, and any
//! already stored are recognised by their key). The note is cleared once a retry is stored,
//! and a note left by a lost connection or a restart is honoured at the next registration.

use std::time::Duration;

use device_protocols::aiface::{page_cap, LogRecord, PagedRead, Step};
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::session::AifaceSession;
use crate::backoff::Backoff;
use crate::device::punches::{self, PunchLog};
use crate::store::{Record, Store, StoreError};

/// First and longest wait between retries of a failed backfill store.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);

/// A backfill that could not be stored: retry from `getalllog`, keeping punches from `since`
/// (device time, `YYYY-MM-DD HH:MM:SS`; empty: all of them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct BackfillOwed {
    since: String,
}

impl Record for BackfillOwed {
    const KIND: &'static str = "punch_backfill_owed";
    const VERSION: u32 = 1;
}

fn owed_key(device_id: &str) -> Vec<u8> {
    format!("punch_backfill_owed:{device_id}").into_bytes()
}

/// Reads every page of `read` from the terminal.
async fn read_logs(
    session: &AifaceSession,
    mut read: PagedRead<LogRecord>,
) -> Result<Vec<LogRecord>, String> {
    let mut command = read.first_request();
    loop {
        let reply = session
            .exchange(command)
            .await
            .map_err(|err| err.to_string())?;
        match read.on_reply(reply) {
            Ok(Step::Request(next)) => command = next,
            Ok(Step::Complete(records)) => return Ok(records),
            Err(err) => return Err(err.to_string()),
        }
    }
}

/// The device time of the newest punch stored for `device_id` (empty: none).
fn last_stored(store: &Store, device_id: &str) -> Result<String, StoreError> {
    Ok(punches::of_device(store, device_id)?
        .into_iter()
        .map(|stored| stored.punch.time)
        .max()
        .unwrap_or_default())
}

/// Backfills `session`'s device; see the module docs.
pub(super) async fn run(session: AifaceSession, punches: PunchLog, store: Store) {
    let device = session.device_id().to_string();
    let cap = page_cap(1_000_000, 1, 40);
    let owed = match store.meta::<BackfillOwed>(&owed_key(&device)) {
        Ok(owed) => owed,
        Err(err) => {
            tracing::error!(%device, %err, "cannot read the punch backfill note");
            None
        }
    };
    if owed.is_none() {
        let records = match read_logs(&session, PagedRead::new_logs(cap)).await {
            Ok(records) => records,
            Err(err) => {
                tracing::warn!(%device, %err, "punch backfill interrupted; it runs again at the next connection");
                return;
            }
        };
        if records.is_empty() {
            return;
        }
        match punches.record(&device, session.sn(), &records).await {
            Ok(batch) => {
                tracing::info!(%device, new = batch.new, repeated = batch.duplicates, "punch backfill stored");
                return;
            }
            Err(err) => {
                tracing::error!(%device, %err, "punch backfill could not be stored; retrying from getalllog");
                let since = match last_stored(&store, &device) {
                    Ok(since) => since,
                    Err(err) => {
                        tracing::error!(%device, %err, "cannot find the last stored punch; retrying over the whole log");
                        String::new()
                    }
                };
                let noted = store.set_meta(&owed_key(&device), &BackfillOwed { since });
                if let Err(err) = noted {
                    tracing::error!(%device, %err, "cannot note the owed punch backfill");
                } else if let Err(err) = store.make_durable().await {
                    tracing::error!(%device, %err, "cannot note the owed punch backfill");
                }
            }
        }
    }
    retry_from_all_logs(&session, &punches, &store, &device, cap).await;
}

/// Retries an owed backfill from `getalllog` until it is stored or the connection is gone.
async fn retry_from_all_logs(
    session: &AifaceSession,
    punches: &PunchLog,
    store: &Store,
    device: &str,
    cap: u32,
) {
    let mut backoff = Backoff::new(RETRY_FIRST, RETRY_MAX);
    loop {
        let since = match store.meta::<BackfillOwed>(&owed_key(device)) {
            Ok(Some(owed)) => owed.since,
            Ok(None) => return,
            Err(err) => {
                tracing::error!(%device, %err, "cannot read the punch backfill note");
                return;
            }
        };
        let records = match read_logs(session, PagedRead::all_logs(cap)).await {
            Ok(records) => records,
            Err(err) => {
                tracing::warn!(%device, %err, "owed punch backfill interrupted; it runs again at the next connection");
                return;
            }
        };
        let window: Vec<LogRecord> = records
            .into_iter()
            .filter(|record| record.time >= since)
            .collect();
        match punches.record(device, session.sn(), &window).await {
            Ok(batch) => {
                tracing::info!(%device, new = batch.new, repeated = batch.duplicates, since = %since, "owed punch backfill stored from getalllog");
                let cleared = store.remove_meta::<BackfillOwed>(&owed_key(device));
                if let Err(err) = cleared {
                    tracing::error!(%device, %err, "cannot clear the punch backfill note");
                } else if let Err(err) = store.make_durable().await {
                    tracing::error!(%device, %err, "cannot clear the punch backfill note");
                }
                return;
            }
            Err(err) => {
                let delay = backoff.fail(rand::rng().random(), None);
                tracing::warn!(%device, %err, "owed punch backfill still not stored; next try in {delay:?}");
                tokio::time::sleep(delay).await;
            }
        }
    }
}
