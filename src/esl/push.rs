//! The push pipeline: takes pending intents from the ESL outbox (up to 500 articles), reads
//! the articles from AIMS, lays the desired owned keys over what AIMS holds, records each in
//! the ledger and makes that durable, writes in batches, then confirms by reading back until
//! the read matches or `esl.confirm_timeout` passes. An article already matching is not
//! written again, so an intent replayed after a crash (the write applied, the answer lost)
//! finishes without a second write.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use super::article::{
    content_hash, merge, mismatched_keys, released, DesiredArticle, RemoteArticle, POOL_PREFIX,
};
use super::client::{AimsClient, AimsError, OwnedWrite, WRITE_BATCH};
use super::{desired, ledger, outbox, EslError, Reporter};
use crate::store::{AlarmKind, Store};

/// First pause before reading a write back; doubles up to [`CONFIRM_MAX_PAUSE`].
const CONFIRM_FIRST_PAUSE: Duration = Duration::from_millis(200);
/// Longest pause between read-backs.
const CONFIRM_MAX_PAUSE: Duration = Duration::from_secs(5);

/// How one article of a batch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// Read back matching this hash (or already matching).
    Confirmed(String),
    /// Nothing for the agent to do (not desired and never owned: foreign or unknown).
    Nothing,
    /// Refused for good or never confirmed.
    Failed {
        outcome: &'static str,
        reason: String,
    },
}

/// One drain step: works through up to one batch of pending intents. Returns how many
/// intents were finished (0: nothing pending).
pub(super) async fn drain_once(
    client: &AimsClient,
    store: &Store,
    reporter: &Reporter,
    confirm_timeout: Duration,
) -> Result<usize, EslError> {
    let intents = outbox::pending(store)?;
    if intents.is_empty() {
        return Ok(0);
    }
    let mut batch = Vec::new();
    let mut ids: Vec<String> = Vec::new();
    let mut seen = BTreeSet::new();
    for (sequence, intent) in intents {
        let open: Vec<String> = intent
            .articles
            .iter()
            .filter(|a| !intent.done.contains(*a))
            .cloned()
            .collect();
        if !batch.is_empty() && ids.len() + open.len() > WRITE_BATCH {
            break;
        }
        for id in &open {
            if seen.insert(id.clone()) {
                ids.push(id.clone());
            }
        }
        batch.push((sequence, intent));
    }
    let format = client.article_format().await?;
    let plan = desired::plan(store, &format)?;
    let mut targets: Vec<(String, DesiredArticle)> = Vec::new();
    let mut outcomes: HashMap<String, Outcome> = HashMap::new();
    for id in &ids {
        match plan.get(id) {
            Some(target) => targets.push((id.clone(), target.clone())),
            None => match ledger::owned(store, id)? {
                Some((_, entry)) => {
                    let previous = match &entry.origin {
                        ledger::Origin::Adopted { previous } => Some(previous),
                        ledger::Origin::Created => None,
                    };
                    targets.push((
                        id.clone(),
                        released(id, &entry.owned_keys, previous, &format),
                    ));
                }
                None => {
                    outcomes.insert(id.clone(), Outcome::Nothing);
                }
            },
        }
    }
    let target_ids: Vec<String> = targets.iter().map(|(id, _)| id.clone()).collect();
    let remote: HashMap<String, RemoteArticle> = client
        .get_articles(&target_ids)
        .await?
        .into_iter()
        .map(|a| (a.article_id.clone(), a))
        .collect();
    let mut writes = Vec::new();
    let mut awaiting: HashMap<String, (DesiredArticle, BTreeSet<String>, String)> = HashMap::new();
    for (id, target) in &targets {
        let entry = ledger::owned(store, id)?;
        let found = remote.get(id);
        if entry.is_none() && found.is_some() && id.starts_with(POOL_PREFIX) {
            reporter.alarm(
                "esl_namespace_collision",
                id,
                format!(
                    "AIMS holds {id}, a POOL- article the agent did not create; it is left \
                     untouched and the person it was meant for has no label until an \
                     administrator removes or renames it"
                ),
            )?;
            outcomes.insert(
                id.clone(),
                Outcome::Failed {
                    outcome: "refused",
                    reason: "a foreign article holds this POOL- id".into(),
                },
            );
            continue;
        }
        let skip = entry
            .as_ref()
            .map(|(_, e)| e.contested.clone())
            .unwrap_or_default();
        let hash = content_hash(target);
        if let (Some(_), Some(found)) = (&entry, found) {
            if mismatched_keys(found, target, &skip).is_empty() {
                outcomes.insert(id.clone(), Outcome::Confirmed(hash));
                continue;
            }
        }
        let owned = ledger::record_before_write(store, found, target, &hash)?;
        writes.push(OwnedWrite {
            id: owned,
            name: target.name.clone(),
            data: merge(found, target, &skip),
        });
        awaiting.insert(id.clone(), (target.clone(), skip, hash));
    }
    // The ledger holds every article about to be written before any byte is sent.
    store.make_durable().await?;
    // Two steps, as a re-key saga needs: the articles that show something are written and
    // confirmed first, only then are the articles left behind released, so a person moving
    // is never shown nowhere. A crash in between replays the intent: the first step reads
    // back matching and is not written again.
    let (shows, releases): (Vec<OwnedWrite>, Vec<OwnedWrite>) = writes
        .into_iter()
        .partition(|write| plan.contains_key(write.id.as_str()));
    for step in [shows, releases] {
        let mut step_awaiting: HashMap<_, _> = step
            .iter()
            .filter_map(|write| awaiting.remove_entry(write.id.as_str()))
            .collect();
        write_and_confirm(
            client,
            &step,
            &mut step_awaiting,
            &mut outcomes,
            confirm_timeout,
        )
        .await?;
    }
    for (id, outcome) in &outcomes {
        match outcome {
            Outcome::Confirmed(_) => ledger::settle(store, id, true)?,
            Outcome::Failed {
                outcome: "unconfirmed",
                ..
            } => ledger::settle(store, id, false)?,
            _ => {}
        }
    }
    let finished = batch.len();
    for (sequence, intent) in batch {
        let mut events = Vec::new();
        for id in intent.articles.iter().filter(|a| !intent.done.contains(*a)) {
            match outcomes.get(id) {
                Some(Outcome::Confirmed(hash)) => {
                    let entity = plan.get(id).map(|t| t.entity.clone()).unwrap_or_default();
                    events.push(reporter.event(
                        "esl_pushed",
                        id,
                        sequence,
                        crate::events::EventBody::EslPushed {
                            article_id: id.clone(),
                            entity,
                            content_hash: hash.clone(),
                        },
                    ));
                }
                Some(Outcome::Failed { outcome, reason }) => events.push(reporter.event(
                    "esl_failed",
                    id,
                    sequence,
                    crate::events::EventBody::EslFailed {
                        article_id: id.clone(),
                        outcome: (*outcome).to_string(),
                        reason: reason.clone(),
                    },
                )),
                _ => {}
            }
        }
        outbox::finish(store, reporter.upstream(), sequence, events).await?;
    }
    reporter.pushed(
        outcomes
            .values()
            .filter(|o| matches!(o, Outcome::Confirmed(_)))
            .count(),
        outcomes
            .values()
            .filter(|o| matches!(o, Outcome::Failed { .. }))
            .count(),
    );
    Ok(finished)
}

/// Writes `writes` in batches and confirms them by reading back.
async fn write_and_confirm(
    client: &AimsClient,
    writes: &[OwnedWrite],
    awaiting: &mut HashMap<String, (DesiredArticle, BTreeSet<String>, String)>,
    outcomes: &mut HashMap<String, Outcome>,
    confirm_timeout: Duration,
) -> Result<(), EslError> {
    for chunk in writes.chunks(WRITE_BATCH) {
        match client.upsert_articles(chunk).await {
            Ok(()) => {}
            Err(AimsError::Unknown { reason }) => {
                tracing::warn!("AIMS write outcome unknown ({reason}); confirming by reading back");
            }
            Err(AimsError::Refused { status, reason }) => {
                tracing::error!(
                    status,
                    "AIMS refused a write of {} articles: {reason}",
                    chunk.len()
                );
                for write in chunk {
                    let id = write.id.as_str().to_string();
                    awaiting.remove(&id);
                    outcomes.insert(
                        id,
                        Outcome::Failed {
                            outcome: "refused",
                            reason: format!("HTTP {status}: {reason}"),
                        },
                    );
                }
            }
            Err(other) => return Err(other.into()),
        }
    }
    confirm(client, awaiting, outcomes, confirm_timeout).await
}

/// Reads `awaiting` back until each matches (confirmed) or `timeout` passes (unconfirmed).
async fn confirm(
    client: &AimsClient,
    awaiting: &mut HashMap<String, (DesiredArticle, BTreeSet<String>, String)>,
    outcomes: &mut HashMap<String, Outcome>,
    timeout: Duration,
) -> Result<(), EslError> {
    let started = Instant::now();
    let mut pause = CONFIRM_FIRST_PAUSE;
    while !awaiting.is_empty() {
        tokio::time::sleep(pause).await;
        let ids: Vec<String> = awaiting.keys().cloned().collect();
        let read = match client.get_articles(&ids).await {
            Ok(read) => read,
            Err(AimsError::NotDelivered { reason } | AimsError::Unknown { reason })
                if started.elapsed() < timeout =>
            {
                tracing::info!("read-back failed ({reason}); trying again");
                pause = (pause * 2).min(CONFIRM_MAX_PAUSE);
                continue;
            }
            Err(other) => return Err(other.into()),
        };
        for article in read {
            let matches = awaiting
                .get(&article.article_id)
                .is_some_and(|(target, skip, _)| {
                    mismatched_keys(&article, target, skip).is_empty()
                });
            if matches {
                if let Some((_, _, hash)) = awaiting.remove(&article.article_id) {
                    outcomes.insert(article.article_id.clone(), Outcome::Confirmed(hash));
                }
            }
        }
        if started.elapsed() >= timeout {
            for (id, _) in awaiting.drain() {
                outcomes.insert(
                    id,
                    Outcome::Failed {
                        outcome: "unconfirmed",
                        reason: format!("not read back matching within {timeout:?}"),
                    },
                );
            }
        }
        pause = (pause * 2).min(CONFIRM_MAX_PAUSE);
    }
    Ok(())
}

/// Alarm kinds raised here, for the reporter.
pub(super) fn attention(problem: &str, detail: &str) -> AlarmKind {
    AlarmKind::EslAttention {
        problem: problem.into(),
        detail: detail.into(),
    }
}
