//! Drift verification: a full paged read of the store's articles, compared with the desired
//! articles and the ledger. Missing owned articles and owned keys changed by someone else are
//! queued to be pushed again (keys the agent does not own are never compared, never written);
//! a key found changed [`ledger::FIGHTS_BEFORE_CONTESTED`] times is left to the other writer
//! and alarmed; articles outside the ledger are foreign and only counted. A read that fails
//! half-way aborts the whole pass before anything is classified.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;

use super::article::{mismatched_keys, released, DesiredArticle, RemoteArticle, POOL_PREFIX};
use super::client::{AimsClient, PAGE_SIZE};
use super::outbox::{self, Intent};
use super::{desired, ledger, EslError, Reporter};
use crate::events::EventBody;
use crate::store::Store;

/// Foreign ids kept as a sample in the report.
const FOREIGN_SAMPLE: usize = 10;

/// What a verification pass found (and, unless a dry run, did).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Whether this was a dry run (nothing queued).
    pub dry_run: bool,
    /// Articles AIMS holds in the store.
    pub remote: usize,
    /// Articles in the ledger.
    pub owned: usize,
    /// Articles desired.
    pub desired: usize,
    /// Owned, desired articles missing from AIMS (pushed again).
    pub missing: Vec<String>,
    /// Articles whose owned keys differ (pushed again), with the keys.
    pub mismatched: Vec<(String, Vec<String>)>,
    /// Keys another writer keeps changing: no longer written by the agent.
    pub contested: Vec<(String, Vec<String>)>,
    /// Desired articles not yet in AIMS or the ledger (created by the push).
    pub to_create: usize,
    /// Articles neither owned nor desired: never touched.
    pub foreign: usize,
    /// Some foreign ids.
    pub foreign_sample: Vec<String>,
    /// `POOL-` ids in AIMS the agent did not allocate.
    pub collisions: Vec<String>,
    /// Articles queued to be pushed.
    pub queued: usize,
    /// Requests the pass sent to AIMS.
    pub requests: u64,
}

/// Reads every page; any failure aborts (never a partial snapshot).
async fn read_all(client: &AimsClient) -> Result<HashMap<String, RemoteArticle>, EslError> {
    let mut all = HashMap::new();
    let mut page = 0;
    loop {
        let articles = client.list_page(page).await?;
        let count = articles.len();
        for article in articles {
            all.insert(article.article_id.clone(), article);
        }
        if count < PAGE_SIZE {
            return Ok(all);
        }
        page += 1;
    }
}

/// The `esl_drift` event for one article of a pass: every class (missing, contested, mismatch)
/// carries the same key and body shape, so consumers can tell them apart by `class` alone.
fn drift_event(
    reporter: &Reporter,
    id: &str,
    pass: u64,
    class: &str,
    keys: Vec<String>,
) -> crate::events::Event {
    reporter.event(
        "esl_drift",
        id,
        pass,
        EventBody::EslDrift {
            article_id: id.to_owned(),
            class: class.into(),
            keys,
        },
    )
}

/// One pass; with `dry_run` it only reports.
pub(super) async fn verify(
    client: &AimsClient,
    store: &Store,
    reporter: &Reporter,
    dry_run: bool,
) -> Result<VerifyReport, EslError> {
    let requests_before = client.requests();
    let format = client.article_format().await?;
    let remote = read_all(client).await?;
    let plan = desired::plan(store, &format)?;
    let owned = ledger::all(store)?;
    let pass = store.next_sequence()?;
    let mut report = VerifyReport {
        dry_run,
        remote: remote.len(),
        owned: owned.len(),
        desired: plan.len(),
        ..VerifyReport::default()
    };
    let mut push = Vec::new();
    let mut events = Vec::new();
    let mut check =
        |id: &String, target: &DesiredArticle, report: &mut VerifyReport| -> Result<(), EslError> {
            let entry = owned.get(id);
            match (entry, remote.get(id)) {
                (Some(_), None) => {
                    report.missing.push(id.clone());
                    push.push(id.clone());
                    events.push(drift_event(reporter, id, pass, "missing", Vec::new()));
                }
                (Some(entry), Some(found)) => {
                    let keys = mismatched_keys(found, target, &entry.contested);
                    if keys.is_empty() {
                        return Ok(());
                    }
                    // Only a value the agent saw confirmed and then found changed is a fight with
                    // another writer; a write never confirmed (slow tenant, dropped keys) is
                    // simply pushed again.
                    let newly = if dry_run || entry.state != ledger::WriteState::Confirmed {
                        Vec::new()
                    } else {
                        ledger::record_fights(store, id, &keys)?
                    };
                    if !newly.is_empty() {
                        reporter.alarm(
                            "esl_key_contested",
                            &format!("{id}: {}", newly.join(", ")),
                            format!(
                                "another writer keeps changing {} of AIMS article {id}; the agent \
                             stopped writing {} and leaves {} to that writer (find it, then \
                             decide who owns the key)",
                                newly.join(", "),
                                if newly.len() == 1 { "it" } else { "them" },
                                if newly.len() == 1 { "it" } else { "them" },
                            ),
                        )?;
                        report.contested.push((id.clone(), newly.clone()));
                        events.push(drift_event(reporter, id, pass, "contested", newly.clone()));
                    }
                    let rest: Vec<String> =
                        keys.into_iter().filter(|k| !newly.contains(k)).collect();
                    if !rest.is_empty() {
                        report.mismatched.push((id.clone(), rest.clone()));
                        push.push(id.clone());
                        events.push(drift_event(reporter, id, pass, "mismatch", rest));
                    }
                }
                (None, found) => {
                    if found.is_some() && id.starts_with(POOL_PREFIX) {
                        report.collisions.push(id.clone());
                        return Ok(());
                    }
                    let in_line = found
                        .is_some_and(|f| mismatched_keys(f, target, &BTreeSet::new()).is_empty());
                    if !in_line {
                        report.to_create += 1;
                        push.push(id.clone());
                    }
                }
            }
            Ok(())
        };
    let mut ids: Vec<&String> = plan.keys().collect();
    ids.sort();
    for id in ids {
        check(id, &plan[id], &mut report)?;
    }
    for (id, entry) in &owned {
        if plan.contains_key(id) {
            continue;
        }
        let previous = match &entry.origin {
            ledger::Origin::Adopted { previous } => Some(previous),
            ledger::Origin::Created => None,
        };
        let target = released(id, &entry.owned_keys, previous, &format);
        if remote.contains_key(id) {
            check(id, &target, &mut report)?;
        }
    }
    for id in remote.keys() {
        if owned.contains_key(id) || plan.contains_key(id) {
            continue;
        }
        report.foreign += 1;
        if report.foreign_sample.len() < FOREIGN_SAMPLE {
            report.foreign_sample.push(id.clone());
        }
        if id.starts_with(POOL_PREFIX) {
            report.collisions.push(id.clone());
        }
    }
    report.foreign_sample.sort();
    report.collisions.sort();
    if !dry_run {
        for id in &report.collisions {
            reporter.alarm_once(
                "esl_namespace_collision",
                id,
                format!(
                    "AIMS holds {id}, a POOL- article the agent did not allocate; the agent \
                     never touches it (find out who created it)"
                ),
            )?;
        }
        report.queued = push.len();
        let intent = (!push.is_empty()).then(|| Intent::new(push, "verify"));
        outbox::queue(store, reporter.upstream(), intent, events).await?;
    }
    report.requests = client.requests() - requests_before;
    Ok(report)
}
