//! The JSON wire form of the upstream contract (`docs/upstream-api.yaml`).
//!
//! The stored [`Event`] is postcard with externally tagged enums; the contract wants a flat
//! object with a `type` discriminator and the variant's fields under `data`, with snake-case
//! type names that never change. Rather than a second copy of every event type, an event is
//! serialised with serde_json as usual and reshaped: the one key of the externally tagged body
//! becomes `type` (through the explicit, documented name table in [`type_name`]) and its value
//! becomes `data`.

use crate::events::{Event, EventBody, PersonAttributes};
use chrono::{SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Serialize};

/// One event as `POST /events` carries it.
#[derive(Debug, Serialize)]
pub struct WireEvent<'a> {
    /// Stable idempotency key; the upstream applies each key at most once.
    pub key: &'a str,
    /// The agent that observed the change.
    pub agent_id: &'a str,
    /// The device concerned; empty for agent-wide events.
    pub device_id: &'a str,
    /// When the agent observed it, RFC 3339 UTC with milliseconds.
    pub occurred_at: String,
    /// `false` when the agent's clock was not synchronised (no NTP yet) when it stamped
    /// `occurred_at`: that time may be wrong, typically too early after a boot.
    pub clock_synchronized: bool,
    /// Fencing token of the device lock (0: no lock held).
    pub fencing_token: u64,
    /// The event type, one of [`TYPE_NAMES`].
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The variant's fields.
    pub data: serde_json::Value,
}

/// Body of `POST /events`.
#[derive(Debug, Serialize)]
pub struct EventBatch<'a> {
    /// Events in outbox order; the upstream processes them in array order.
    pub events: Vec<WireEvent<'a>>,
}

/// Reply to `POST /events`: one result per event, matched by key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchReply {
    /// Results, normally in request order.
    pub results: Vec<EventResult>,
}

/// What the upstream did with one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventResult {
    /// The event's idempotency key.
    pub key: String,
    /// The outcome.
    #[serde(flatten)]
    pub outcome: EventOutcome,
}

/// Per-event outcome. Both `accepted` and `duplicate` mean "the upstream has it"; `rejected`
/// is permanent and sends the event to the dead letters with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum EventOutcome {
    /// Applied now.
    Accepted,
    /// Applied earlier under the same key; nothing was done again.
    Duplicate,
    /// Will never be applied (invalid, stale fencing token, unknown device…).
    Rejected {
        /// Why, for the operator reading the dead letters.
        reason: String,
    },
}

/// Reply to `GET /mappings`: one page of changes after the cursor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappingPage {
    /// Mapping changes in the upstream's order.
    pub mappings: Vec<WireMapping>,
    /// Cursor to send next time; opaque to the agent.
    pub next_cursor: String,
    /// Whether another page follows right away.
    pub has_more: bool,
}

/// One mapping change: a device user linked to (or unlinked from) an upstream person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireMapping {
    /// The device.
    pub device_id: String,
    /// The device's user id.
    pub user_id: String,
    /// The person and the attributes compared with the device user.
    pub person: PersonAttributes,
    /// True when the link was removed upstream.
    #[serde(default)]
    pub removed: bool,
}

/// Reply to `GET /esl/articles`: one page of desired shelf-label article changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredArticlePage {
    /// Changes in the upstream's order.
    pub articles: Vec<WireDesiredArticle>,
    /// Cursor to send next time; opaque to the agent.
    pub next_cursor: String,
    /// Whether another page follows right away.
    pub has_more: bool,
}

/// One desired article change: what a person's, space's or room's shelf label must show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireDesiredArticle {
    /// `person`, `space` or `conference_room`.
    pub kind: String,
    /// The upstream's stable id of the entity.
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// For a person: the assigned space (article id), or none (a `POOL-` article).
    #[serde(default)]
    pub space_id: Option<String>,
    /// Data columns by the company format's column names.
    #[serde(default)]
    pub fields: std::collections::BTreeMap<String, String>,
    /// List memberships.
    #[serde(default)]
    pub lists: Vec<WireListMembership>,
    /// The upstream withdrew the entity.
    #[serde(default)]
    pub removed: bool,
}

/// One list membership as the contract spells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireListMembership {
    /// The list's name.
    pub list_name: String,
    /// The space the person occupies in that list.
    pub space_id: String,
}

/// Every event type name of the contract, in [`EventBody`] variant order.
pub const TYPE_NAMES: [&str; 14] = [
    "user_discovered",
    "user_changed",
    "user_missing",
    "user_reappeared",
    "conflict_detected",
    "conflict_resolved",
    "mapping_requested",
    "punch",
    "device_status",
    "alarm",
    "alert",
    "esl_pushed",
    "esl_drift",
    "esl_failed",
];

/// The contract's name for an event body. Part of the contract: never rename.
pub fn type_name(body: &EventBody) -> &'static str {
    let index = match body {
        EventBody::UserDiscovered(_) => 0,
        EventBody::UserChanged { .. } => 1,
        EventBody::UserMissing { .. } => 2,
        EventBody::UserReappeared { .. } => 3,
        EventBody::ConflictDetected { .. } => 4,
        EventBody::ConflictResolved { .. } => 5,
        EventBody::MappingRequested { .. } => 6,
        EventBody::Punch(_) => 7,
        EventBody::DeviceStatus { .. } => 8,
        EventBody::Alarm { .. } => 9,
        EventBody::Alert(_) => 10,
        EventBody::EslPushed { .. } => 11,
        EventBody::EslDrift { .. } => 12,
        EventBody::EslFailed { .. } => 13,
    };
    TYPE_NAMES[index]
}

/// Builds the wire form of `event`.
pub fn wire_event(event: &Event) -> WireEvent<'_> {
    WireEvent {
        key: &event.key,
        agent_id: &event.agent_id,
        device_id: &event.device_id,
        occurred_at: rfc3339_ms(event.occurred_at_ms),
        clock_synchronized: event.clock_synchronized,
        fencing_token: event.fencing_token,
        kind: type_name(&event.body),
        data: body_data(&event.body),
    }
}

/// The variant's own fields: the value under the single key of serde's externally tagged form.
fn body_data(body: &EventBody) -> serde_json::Value {
    // Serialising these plain data types to a JSON value cannot fail (string keys only).
    match serde_json::to_value(body).expect("event bodies serialise to JSON") {
        serde_json::Value::Object(tagged) => tagged
            .into_iter()
            .next()
            .map(|(_, data)| data)
            .unwrap_or_default(),
        other => other,
    }
}

/// Milliseconds since the epoch as RFC 3339 UTC (`2026-11-22T08:01:02.345Z`).
pub fn rfc3339_ms(unix_ms: i64) -> String {
    Utc.timestamp_millis_opt(unix_ms)
        .single()
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{DeviceUser, Resolution};
    use serde_json::json;

    fn event(body: EventBody) -> Event {
        Event {
            key: "k1".into(),
            agent_id: "a".into(),
            device_id: "d".into(),
            occurred_at_ms: 1_795_000_000_123,
            clock_synchronized: true,
            fencing_token: 4,
            body,
        }
    }

    #[test]
    fn a_newtype_variant_puts_its_value_under_data() {
        let user = DeviceUser {
            user_id: "7".into(),
            name: "Ana".into(),
            fingerprints: 2,
            ..DeviceUser::default()
        };
        let wire =
            serde_json::to_value(wire_event(&event(EventBody::UserDiscovered(user)))).unwrap();
        assert_eq!(
            wire,
            json!({
                "key": "k1", "agent_id": "a", "device_id": "d",
                "occurred_at": "2026-11-18T11:06:40.123Z", "clock_synchronized": true,
                "fencing_token": 4,
                "type": "user_discovered",
                "data": {"user_id": "7", "name": "Ana", "privilege": 0, "card": null,
                         "has_password": false, "fingerprints": 2, "faces": 0, "palms": 0}
            })
        );
    }

    #[test]
    fn a_struct_variant_puts_its_fields_under_data_in_snake_case() {
        let body = EventBody::ConflictResolved {
            user_id: "7".into(),
            resolution: Resolution::UseDatabase,
            result: PersonAttributes::default(),
            admin: "ops".into(),
        };
        let wire = serde_json::to_value(wire_event(&event(body))).unwrap();
        assert_eq!(wire["type"], "conflict_resolved");
        assert_eq!(wire["data"]["resolution"], "use_database");
        assert_eq!(wire["data"]["admin"], "ops");
    }

    #[test]
    fn the_contract_document_names_every_type_and_outcome() {
        let contract = include_str!("../../docs/upstream-api.yaml");
        let type_enum = contract
            .lines()
            .skip_while(|line| !line.trim_start().starts_with("type:"))
            .find(|line| line.contains("enum: [user_discovered"))
            .expect("the event type enum in docs/upstream-api.yaml");
        let continued = contract
            .lines()
            .skip_while(|line| *line != type_enum)
            .take(2)
            .collect::<String>();
        for name in TYPE_NAMES {
            assert!(
                continued.contains(name),
                "{name} is missing from the contract's type enum"
            );
        }
        assert!(contract.contains("enum: [accepted, duplicate, rejected]"));
    }

    #[test]
    fn outcomes_parse_from_the_documented_shape() {
        let reply: BatchReply = serde_json::from_value(json!({"results": [
            {"key": "a", "status": "accepted"},
            {"key": "b", "status": "duplicate"},
            {"key": "c", "status": "rejected", "reason": "stale fencing token"}
        ]}))
        .unwrap();
        assert_eq!(reply.results[1].outcome, EventOutcome::Duplicate);
        assert_eq!(
            reply.results[2].outcome,
            EventOutcome::Rejected {
                reason: "stale fencing token".into()
            }
        );
    }
}
