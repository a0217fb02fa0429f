//! The one article builder and the one comparison: what an article the agent owns must hold,
//! how it is laid over what AIMS already has (keys the agent does not own are kept), and when
//! two articles count as equal (normalised values, `_LIST_MEMBERSHIPS_` as a set). The push
//! path and drift verification both use these, so they can never disagree about drift.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The data key holding list memberships (shared with other AIMS tools).
pub const LIST_MEMBERSHIPS: &str = "_LIST_MEMBERSHIPS_";
/// The data key holding the upstream person id of a person article.
pub const PERSON_UUID: &str = "__PERSON_UUID__";
/// The data key marking a `POOL-` article of an unassigned person.
pub const VIRTUAL_SPACE: &str = "__VIRTUAL_SPACE__";
/// Prefix of the agent's pool articles.
pub const POOL_PREFIX: &str = "POOL-";

/// An article's `data` columns by name (AIMS returns every value as a string).
pub type Data = BTreeMap<String, String>;

/// An article as AIMS holds it (read back through `config/article/info`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RemoteArticle {
    /// The article id.
    pub article_id: String,
    /// The article name.
    pub article_name: String,
    /// Every data column AIMS returned.
    pub data: Data,
    /// Labels linked to the article.
    pub assigned_labels: Vec<String>,
}

/// The company's article format: which data columns carry the article id and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArticleFormat {
    /// The column mapped to `articleId` (e.g. `ARTICLE_ID`).
    pub id_key: String,
    /// The column mapped to `articleName` (e.g. `ITEM_NAME`).
    pub name_key: String,
}

/// One list membership of a person.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Membership {
    /// The list's name.
    #[serde(rename = "listName")]
    pub list_name: String,
    /// The space the person holds in it.
    #[serde(rename = "spaceId")]
    pub space_id: String,
}

/// `_LIST_MEMBERSHIPS_` in canonical form: a JSON array sorted by (list, space), no
/// whitespace, `""` when empty, so equal sets always give equal strings.
pub fn canonical_memberships(memberships: &[Membership]) -> String {
    let set: BTreeSet<&Membership> = memberships.iter().collect();
    if set.is_empty() {
        return String::new();
    }
    serde_json::to_string(&set.into_iter().collect::<Vec<_>>()).unwrap_or_default()
}

/// Parses `_LIST_MEMBERSHIPS_` leniently (any order, extra fields ignored) into a set;
/// `None` when it is not a membership array at all.
pub fn parse_memberships(text: &str) -> Option<BTreeSet<Membership>> {
    let text = text.trim();
    if text.is_empty() {
        return Some(BTreeSet::new());
    }
    serde_json::from_str::<Vec<Membership>>(text)
        .ok()
        .map(|list| list.into_iter().collect())
}

/// What the agent wants one article to hold: the values of the keys it owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredArticle {
    /// The article id.
    pub article_id: String,
    /// The upstream entity shown (`person:<id>` …), empty for a released article.
    pub entity: String,
    /// The article name.
    pub name: String,
    /// The owned keys and their values.
    pub data: Data,
}

/// What a desired entity is, as the builder needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityContent<'a> {
    /// `person:<id>`, `space:<id>` or `room:<id>`.
    pub entity: &'a str,
    /// Display name.
    pub name: &'a str,
    /// Upstream data columns.
    pub fields: &'a BTreeMap<String, String>,
    /// For persons: memberships and person id; `None` for spaces and rooms.
    pub person: Option<(&'a str, &'a [Membership])>,
}

/// The one article builder: the owned keys of `article_id` showing `content` in `format`.
/// A pool article also carries its own id under [`VIRTUAL_SPACE`].
pub fn build(
    article_id: &str,
    content: &EntityContent<'_>,
    format: &ArticleFormat,
) -> DesiredArticle {
    let mut data = Data::new();
    for (key, value) in content.fields {
        data.insert(key.clone(), value.clone());
    }
    data.insert(format.id_key.clone(), article_id.to_string());
    data.insert(format.name_key.clone(), content.name.to_string());
    if let Some((person_id, memberships)) = content.person {
        data.insert(PERSON_UUID.into(), person_id.to_string());
        data.insert(LIST_MEMBERSHIPS.into(), canonical_memberships(memberships));
        let pool = if article_id.starts_with(POOL_PREFIX) {
            article_id
        } else {
            ""
        };
        data.insert(VIRTUAL_SPACE.into(), pool.to_string());
    }
    DesiredArticle {
        article_id: article_id.to_string(),
        entity: content.entity.to_string(),
        name: content.name.to_string(),
        data,
    }
}

/// A released article: every owned key blank except the id column, or the values it held
/// before the agent adopted it (`previous`).
pub fn released(
    article_id: &str,
    owned_keys: &BTreeSet<String>,
    previous: Option<&Data>,
    format: &ArticleFormat,
) -> DesiredArticle {
    let mut data = Data::new();
    for key in owned_keys {
        let value = previous
            .and_then(|before| before.get(key).cloned())
            .unwrap_or_default();
        data.insert(key.clone(), value);
    }
    data.insert(format.id_key.clone(), article_id.to_string());
    let name = previous
        .and_then(|before| before.get(&format.name_key).cloned())
        .unwrap_or_default();
    DesiredArticle {
        article_id: article_id.to_string(),
        entity: String::new(),
        name,
        data,
    }
}

/// The article to write: AIMS's current data with the owned keys of `desired` laid on top,
/// except `skip` (keys another writer owns). Keys the agent does not own are kept as they are.
pub fn merge(
    remote: Option<&RemoteArticle>,
    desired: &DesiredArticle,
    skip: &BTreeSet<String>,
) -> Data {
    let mut data = remote.map(|r| r.data.clone()).unwrap_or_default();
    for (key, value) in &desired.data {
        if !skip.contains(key) {
            data.insert(key.clone(), value.clone());
        }
    }
    data
}

/// Normalised value for comparison: trimmed; missing and empty are the same.
fn normal(value: Option<&String>) -> &str {
    value.map(|v| v.trim()).unwrap_or("")
}

/// Whether two values of `key` are equal after normalisation (memberships as sets).
pub fn same_value(key: &str, left: Option<&String>, right: Option<&String>) -> bool {
    let (a, b) = (normal(left), normal(right));
    if a == b {
        return true;
    }
    if key == LIST_MEMBERSHIPS {
        if let (Some(x), Some(y)) = (parse_memberships(a), parse_memberships(b)) {
            return x == y;
        }
    }
    false
}

/// The owned keys (minus `skip`) whose remote value differs from the desired one.
pub fn mismatched_keys(
    remote: &RemoteArticle,
    desired: &DesiredArticle,
    skip: &BTreeSet<String>,
) -> Vec<String> {
    desired
        .data
        .iter()
        .filter(|(key, _)| !skip.contains(*key))
        .filter(|(key, value)| !same_value(key, remote.data.get(*key), Some(value)))
        .map(|(key, _)| key.clone())
        .collect()
}

/// A stable hash of the desired article (hex SHA-256 of its sorted keys and values).
pub fn content_hash(desired: &DesiredArticle) -> String {
    let mut hasher = Sha256::new();
    hasher.update(desired.article_id.as_bytes());
    for (key, value) in &desired.data {
        hasher.update([0]);
        hasher.update(key.as_bytes());
        hasher.update([1]);
        hasher.update(value.as_bytes());
    }
    hasher
        .finalize()
        .iter()
        .take(12)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(list: &str, space: &str) -> Membership {
        Membership {
            list_name: list.into(),
            space_id: space.into(),
        }
    }

    #[test]
    fn memberships_are_canonical_and_compared_as_sets() {
        let a = canonical_memberships(&[member("Morning", "B-2"), member("Evening", "A-1")]);
        let b = canonical_memberships(&[member("Evening", "A-1"), member("Morning", "B-2")]);
        assert_eq!(a, b);
        assert_eq!(
            a,
            r#"[{"listName":"Evening","spaceId":"A-1"},{"listName":"Morning","spaceId":"B-2"}]"#
        );
        assert_eq!(canonical_memberships(&[]), "");
        let reordered = r#"[ {"spaceId":"B-2","listName":"Morning","x":1}, {"listName":"Evening","spaceId":"A-1"} ]"#;
        assert!(same_value(
            LIST_MEMBERSHIPS,
            Some(&a),
            Some(&reordered.to_string())
        ));
        assert!(!same_value(
            LIST_MEMBERSHIPS,
            Some(&a),
            Some(&String::new())
        ));
    }

    #[test]
    fn merge_keeps_foreign_keys_and_skips_contested_ones() {
        let remote = RemoteArticle {
            article_id: "A-1".into(),
            data: [("PRICE", "9"), ("NAME", "old"), ("DEPT", "x")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..RemoteArticle::default()
        };
        let desired = DesiredArticle {
            article_id: "A-1".into(),
            entity: "space:A-1".into(),
            name: "new".into(),
            data: [("NAME", "new"), ("DEPT", "QA")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        let skip: BTreeSet<String> = ["DEPT".to_string()].into();
        let merged = merge(Some(&remote), &desired, &skip);
        assert_eq!(merged["PRICE"], "9");
        assert_eq!(merged["NAME"], "new");
        assert_eq!(merged["DEPT"], "x");
        assert_eq!(
            mismatched_keys(&remote, &desired, &skip),
            vec!["NAME".to_string()]
        );
    }
}
