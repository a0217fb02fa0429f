//! The desired articles (`esl_desired`): what the upstream's `GET /esl/articles` feed says the
//! shelf labels must show, by entity, pulled with a cursor like mappings. Each applied page
//! queues one intent in the ESL outbox naming every article the page touches, the new article
//! of a moved person before the old one, in the same transaction as the change: a crash can
//! lose neither, and replaying the intent finishes the move.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::article::{build, ArticleFormat, DesiredArticle, EntityContent, Membership};
use super::outbox::{self, Intent};
use super::pool;
use crate::store::{Record, Store, StoreError, TreeName};
use crate::upstream::wire::WireDesiredArticle;
use crate::upstream::{RequestError, UpstreamClient};

/// Meta key of the feed cursor.
const CURSOR_KEY: &[u8] = b"esl_articles_cursor";
/// Changes asked for per page.
pub const PAGE_SIZE: u32 = 500;

/// What an entity is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// A person: shown on their assigned space's article, or on their own `POOL-` article.
    Person,
    /// A space (desk, slot): its own article.
    Space,
    /// A conference room: its own article.
    ConferenceRoom,
}

impl Kind {
    fn parse(text: &str) -> Option<Kind> {
        match text {
            "person" => Some(Kind::Person),
            "space" => Some(Kind::Space),
            "conference_room" => Some(Kind::ConferenceRoom),
            _ => None,
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            Kind::Person => "person",
            Kind::Space => "space",
            Kind::ConferenceRoom => "room",
        }
    }
}

/// One entity as the upstream wants it shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredEntity {
    /// Person, space or room.
    pub kind: Kind,
    /// The upstream's id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// A person's assigned space.
    pub space_id: Option<String>,
    /// Data columns.
    pub fields: BTreeMap<String, String>,
    /// List memberships.
    pub lists: Vec<Membership>,
}

impl Record for DesiredEntity {
    const KIND: &'static str = "esl_desired";
    const VERSION: u32 = 1;
}

impl DesiredEntity {
    /// `person:<id>`, `space:<id>`, `room:<id>`: its key and its name in events.
    pub fn entity(&self) -> String {
        format!("{}:{}", self.kind.prefix(), self.id)
    }
}

/// The feed cursor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct FeedCursor {
    cursor: String,
}

impl Record for FeedCursor {
    const KIND: &'static str = "esl_articles_cursor";
    const VERSION: u32 = 1;
}

/// Why a pull stopped (what was applied before stays applied).
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The upstream request failed.
    #[error("desired-article pull failed: {0}")]
    Request(#[from] RequestError),
    /// The store failed.
    #[error("cannot keep desired articles: {0}")]
    Store(#[from] StoreError),
}

/// The article an entity shows on, given the stored pool ids (`None`: a person without a
/// space whose pool id could not be allocated).
fn article_of(store: &Store, entity: &DesiredEntity) -> Result<Option<String>, StoreError> {
    Ok(match entity.kind {
        Kind::Space | Kind::ConferenceRoom => Some(entity.id.clone()),
        Kind::Person => match entity.space_id.as_deref().filter(|s| !s.trim().is_empty()) {
            Some(space) => Some(space.to_string()),
            None => pool::lookup(store, &entity.id)?,
        },
    })
}

/// Pulls every page after the stored cursor; returns how many changes were applied.
pub async fn pull(
    client: &UpstreamClient,
    store: &Store,
    agent_id: &str,
) -> Result<usize, PullError> {
    let mut cursor = store
        .meta::<FeedCursor>(CURSOR_KEY)?
        .map(|c| c.cursor)
        .unwrap_or_default();
    let mut applied = 0;
    loop {
        let page = client
            .pull_desired_articles(agent_id, &cursor, PAGE_SIZE)
            .await?;
        applied += page.articles.len();
        apply(store, page.articles).await?;
        store.set_meta(
            CURSOR_KEY,
            &FeedCursor {
                cursor: page.next_cursor.clone(),
            },
        )?;
        store.make_durable().await?;
        let advanced = page.next_cursor != cursor;
        cursor = page.next_cursor;
        if !page.has_more || !advanced {
            return Ok(applied);
        }
    }
}

/// Applies one page: stores each change and queues one intent for the articles touched.
pub async fn apply(store: &Store, changes: Vec<WireDesiredArticle>) -> Result<(), StoreError> {
    if changes.is_empty() {
        return Ok(());
    }
    let mut writes: Vec<(String, Option<DesiredEntity>)> = Vec::new();
    let mut new_articles = Vec::new();
    let mut old_articles = Vec::new();
    for change in changes {
        let Some(kind) = Kind::parse(&change.kind) else {
            tracing::warn!(kind = %change.kind, id = %change.id, "ignoring a desired article of unknown kind");
            continue;
        };
        let entity = DesiredEntity {
            kind,
            id: change.id,
            name: change.name,
            space_id: change.space_id,
            fields: change.fields,
            lists: change
                .lists
                .into_iter()
                .map(|l| Membership {
                    list_name: l.list_name,
                    space_id: l.space_id,
                })
                .collect(),
        };
        let key = entity.entity();
        if let Some(before) = store.get::<DesiredEntity>(TreeName::EslDesired, &key)? {
            old_articles.extend(article_of(store, &before)?);
        }
        if change.removed {
            writes.push((key, None));
            continue;
        }
        if entity.kind == Kind::Person
            && entity
                .space_id
                .as_deref()
                .is_none_or(|s| s.trim().is_empty())
            && pool::pool_id(store, &entity.id)?.is_none()
        {
            tracing::error!(
                person = %entity.id,
                "no POOL- id left for an unassigned person; their label is not written"
            );
        }
        new_articles.extend(article_of(store, &entity)?);
        writes.push((key, Some(entity)));
    }
    let mut articles = new_articles;
    articles.extend(old_articles);
    let intent = Intent::new(articles, "feed");
    let sequence = store.next_sequence()?;
    store.transaction(&[TreeName::EslDesired, TreeName::EslOutbox], |tx| {
        for (key, entity) in &writes {
            match entity {
                Some(entity) => tx.insert(TreeName::EslDesired, key, entity)?,
                None => {
                    tx.remove(TreeName::EslDesired, key)?;
                }
            }
        }
        if !intent.articles.is_empty() {
            outbox::enqueue_in(tx, sequence, &intent)?;
        }
        Ok(())
    })?;
    store.make_durable().await
}

/// Every desired article by id, built with the one builder. A person assigned to a space that
/// is also desired as a space shows over it (the person's keys win).
pub fn plan(
    store: &Store,
    format: &ArticleFormat,
) -> Result<HashMap<String, DesiredArticle>, StoreError> {
    let mut plan: HashMap<String, DesiredArticle> = HashMap::new();
    let mut persons = Vec::new();
    for item in store.scan_prefix::<DesiredEntity>(TreeName::EslDesired, b"") {
        let (_, entity) = item?;
        if entity.kind == Kind::Person {
            persons.push(entity);
            continue;
        }
        let article = build(
            &entity.id,
            &EntityContent {
                entity: &entity.entity(),
                name: &entity.name,
                fields: &entity.fields,
                person: None,
            },
            format,
        );
        plan.insert(article.article_id.clone(), article);
    }
    for entity in persons {
        let Some(article_id) = article_of(store, &entity)? else {
            continue;
        };
        let built = build(
            &article_id,
            &EntityContent {
                entity: &entity.entity(),
                name: &entity.name,
                fields: &entity.fields,
                person: Some((&entity.id, &entity.lists)),
            },
            format,
        );
        match plan.get_mut(&article_id) {
            Some(space) => {
                space.data.extend(built.data);
                space.entity = built.entity;
                space.name = built.name;
            }
            None => {
                plan.insert(article_id, built);
            }
        }
    }
    Ok(plan)
}

/// How many entities are desired.
pub fn count(store: &Store) -> usize {
    store.tree(TreeName::EslDesired).len()
}
