//! The events the agent forwards upstream: one vocabulary shared by the sync engine (which
//! writes them into the outbox in the same transaction as the change that caused them), the
//! forwarder (which delivers them) and the MQTT plane (which publishes alerts).
//!
//! Every event carries a stable idempotency key built from *what happened*, never from when it
//! was sent, so a retry after a crash produces the same key and the upstream can apply it once.
//! The stored form is postcard (externally tagged enums only, see [`crate::store::envelope`]);
//! the JSON wire form is defined by the upstream contract and built from these types.

use crate::store::Record;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A change to forward upstream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Stable idempotency key (see [`EventKey`]); the upstream dedupes on it.
    pub key: String,
    /// The agent that observed the change (`agent.id`).
    pub agent_id: String,
    /// The device the change concerns (`device.id`); empty for agent-wide events.
    pub device_id: String,
    /// When the agent observed it: wall-clock UTC, milliseconds since the Unix epoch.
    pub occurred_at_ms: i64,
    /// Whether the system clock was synchronised when `occurred_at_ms` was taken
    /// ([`crate::clock_sync`]). A gateway without a battery-backed clock boots in the past until
    /// NTP catches up; events stamped meanwhile say so, in the store and on the wire, instead
    /// of passing a wrong time off as right. Events stored before this flag existed read as
    /// `true` (their stamping was never checked).
    pub clock_synchronized: bool,
    /// Fencing token of the device lock held while the change was observed (0: no lock).
    /// The upstream rejects a token lower than one it already saw for the device.
    pub fencing_token: u64,
    /// What happened.
    pub body: EventBody,
}

/// What happened. Variants are only ever appended (postcard stores the variant index).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventBody {
    /// A user seen on the device for the first time.
    UserDiscovered(DeviceUser),
    /// A known user's attributes or credentials changed on the device.
    UserChanged {
        /// As of the previous complete read.
        before: DeviceUser,
        /// As of this complete read.
        after: DeviceUser,
    },
    /// A user present in the previous complete read is absent from this one.
    UserMissing {
        /// The user as last seen.
        user: DeviceUser,
        /// When the user was last seen on the device (UTC ms).
        last_seen_at_ms: i64,
    },
    /// A user reported missing is back on the device.
    UserReappeared {
        /// The user as now read.
        user: DeviceUser,
        /// When the user was reported missing (UTC ms).
        missing_since_ms: i64,
    },
    /// The device and the upstream disagree about a mapped user.
    ConflictDetected {
        /// The device's version.
        device: DeviceUser,
        /// The upstream's version of the person's attributes.
        upstream: PersonAttributes,
    },
    /// An administrator resolved a conflict.
    ConflictResolved {
        /// Device user id.
        user_id: String,
        /// `use_device`, `use_database` or `merge`.
        resolution: Resolution,
        /// The attributes both sides hold after the resolution.
        result: PersonAttributes,
        /// Name of the admin key that signed the command.
        admin: String,
    },
    /// An administrator asked to map a device user to a person.
    MappingRequested {
        /// Device user id.
        user_id: String,
        /// Upstream person id.
        person_id: String,
        /// Name of the admin key that signed the command.
        admin: String,
    },
    /// An attendance punch, as the device reported it.
    Punch(Punch),
    /// A device's reachability or read health changed.
    DeviceStatus {
        /// `online`, `offline`, `read_failed`, ...
        state: String,
        /// Human-readable detail.
        detail: String,
    },
    /// An alarm (store salvaged, outbox full, clock unsynced, lock lost, ...).
    Alarm {
        /// Stable machine-readable kind.
        kind: String,
        /// Human-readable detail.
        message: String,
    },
    /// A must-deliver MQTT alert (`…/events/alert`): what an operator or a fleet dashboard has
    /// to act on, with the facts each kind needs (the users concerned, the figures). Only the
    /// MQTT alert queue carries these; the upstream learns the same facts from its own events.
    Alert(AlertBody),
    /// A shelf-label article was written to the ESL gateway and read back matching
    /// (`crate::esl`): the labels show what the upstream asked for.
    EslPushed {
        /// The AIMS article id.
        article_id: String,
        /// The upstream entity it shows (`person:<id>`, `space:<id>`, `room:<id>`), empty for
        /// an article released (blanked) because nothing is assigned to it any more.
        entity: String,
        /// Hash of the canonical article as confirmed.
        content_hash: String,
    },
    /// Drift verification found an article the agent owns not as it left it.
    EslDrift {
        /// The AIMS article id.
        article_id: String,
        /// `missing` (gone from AIMS), `mismatch` (a key we own was changed) or `contested`
        /// (another writer keeps changing a key: the agent stopped writing it).
        class: String,
        /// The keys concerned (empty for `missing`).
        keys: Vec<String>,
    },
    /// A shelf-label write could not be completed.
    EslFailed {
        /// The AIMS article id.
        article_id: String,
        /// `refused` (the gateway refused it for good) or `unconfirmed` (written, but the
        /// read-back never matched).
        outcome: String,
        /// What happened.
        reason: String,
    },
}

/// The body of an MQTT alert. One shape for every kind, so a subscriber parses one structure
/// and switches on `kind`; `docs/mqtt.md` lists the kinds and which fields each fills.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertBody {
    /// Stable machine-readable kind (`users_missing`, `store_salvaged`, ...).
    pub kind: String,
    /// `warning` (look at it today) or `critical` (act now).
    pub severity: String,
    /// A sentence for the operator: what happened and what to do.
    pub message: String,
    /// The users concerned (`users_missing`, `users_reappeared`), empty for other kinds.
    pub users: Vec<AlertUser>,
    /// The kind's figures as text (`missing`, `previous`, `status`, `task`, ...).
    pub details: BTreeMap<String, String>,
}

/// A user named by an alert.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertUser {
    /// The device's user id.
    pub user_id: String,
    /// Name as last read.
    pub name: String,
    /// When the user was last seen by a complete read (UTC ms), for missing users.
    pub last_seen_at_ms: Option<i64>,
    /// When the user was reported missing (UTC ms), for users who came back.
    pub missing_since_ms: Option<i64>,
}

/// A device user as the agent summarises it: identity, the attributes compared with upstream,
/// and which credentials exist (templates themselves go to backups, not upstream).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceUser {
    /// The device's user id (AiFace `enrollid`, ZK `user_id`), as text.
    pub user_id: String,
    /// Name as stored on the device (decoded; may be empty).
    pub name: String,
    /// Device privilege level (0 = normal user; device-specific above).
    pub privilege: u32,
    /// Card number, if enrolled.
    pub card: Option<String>,
    /// Whether a password/PIN is set (never the PIN itself).
    pub has_password: bool,
    /// Number of fingerprint templates.
    pub fingerprints: u8,
    /// Number of face templates or photos.
    pub faces: u8,
    /// Number of palm templates.
    pub palms: u8,
}

/// The attributes of an upstream person that are compared with the device user.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonAttributes {
    /// Upstream person id.
    pub person_id: String,
    /// Name.
    pub name: String,
    /// Privilege level to hold on the device.
    pub privilege: u32,
    /// Card number.
    pub card: Option<String>,
}

/// How an administrator resolved a conflict. Stored by variant index (postcard); the snake-case
/// names are the upstream contract's JSON spelling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// Forward the device's version upstream.
    UseDevice,
    /// Write the upstream version to the device (an update, never a delete).
    UseDatabase,
    /// Write admin-supplied attributes to both sides.
    Merge,
}

/// An attendance punch with the device's raw values kept (no timestamp shifting, ever).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Punch {
    /// Device serial number.
    pub sn: String,
    /// Device user id.
    pub user_id: String,
    /// The device's own time text, exactly as sent (device local time, no zone).
    pub time: String,
    /// Verify mode / punch type as sent (AiFace `mode`, ZK `punch`).
    pub mode: String,
    /// In/out state as sent (AiFace `inout`, ZK `status`).
    pub inout: String,
    /// Every other raw field the device sent (`event`, `verifymode`, `name`, ...).
    pub raw: BTreeMap<String, String>,
}

impl Record for Event {
    const KIND: &'static str = "event";
    /// 2: `clock_synchronized` added; version 1 records are upgraded by [`EventV1`].
    const VERSION: u32 = 2;

    fn upgrade(found_version: u32, body: &[u8]) -> Result<Self, crate::store::EnvelopeError> {
        if found_version != 1 {
            return Err(crate::store::EnvelopeError::NoUpgradePath {
                kind: Self::KIND,
                found: found_version,
                current: Self::VERSION,
            });
        }
        let v1: EventV1 = crate::store::envelope::decode_body(Self::KIND, found_version, body)?;
        Ok(Event {
            key: v1.key,
            agent_id: v1.agent_id,
            device_id: v1.device_id,
            occurred_at_ms: v1.occurred_at_ms,
            clock_synchronized: true,
            fencing_token: v1.fencing_token,
            body: v1.body,
        })
    }
}

/// An [`Event`] as version 1 stored it (before `clock_synchronized`): read once from an outbox
/// written by an older build, never written.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct EventV1 {
    key: String,
    agent_id: String,
    device_id: String,
    occurred_at_ms: i64,
    fencing_token: u64,
    body: EventBody,
}

/// Builders for idempotency keys: the same change always yields the same key.
///
/// Keys are `/`-separated and start with the event kind; components are percent-escaped so a
/// `/` inside a device user id cannot make two different changes collide.
pub struct EventKey;

impl EventKey {
    /// Key of a punch: sn + user + device time + mode + inout (the device's own identity of a
    /// punch; a re-sent punch gets the same key).
    pub fn punch(punch: &Punch) -> String {
        Self::join(&[
            "punch",
            &punch.sn,
            &punch.user_id,
            &punch.time,
            &punch.mode,
            &punch.inout,
        ])
    }

    /// Key of a user-level change observed by complete read number `read_generation` of the
    /// device in the store epoch `store_epoch` (generations are stored durably and only
    /// increase within an epoch; a salvaged store starts a new epoch, so a key is never
    /// reused for another change).
    pub fn user_change(
        kind: &str,
        agent_id: &str,
        device_id: &str,
        user_id: &str,
        store_epoch: &str,
        read_generation: u64,
    ) -> String {
        Self::join(&[
            kind,
            agent_id,
            device_id,
            user_id,
            store_epoch,
            &read_generation.to_string(),
        ])
    }

    /// Key of an event caused by an admin command (its nonce makes it unique and stable).
    pub fn command(kind: &str, agent_id: &str, command_nonce: &str) -> String {
        Self::join(&[kind, agent_id, command_nonce])
    }

    fn join(parts: &[&str]) -> String {
        parts
            .iter()
            .map(|part| escape(part))
            .collect::<Vec<_>>()
            .join("/")
    }
}

fn escape(part: &str) -> String {
    let mut out = String::with_capacity(part.len());
    for byte in part.bytes() {
        match byte {
            b'/' | b'%' | 0..=0x20 | 0x7f..=0xff => out.push_str(&format!("%{byte:02X}")),
            _ => out.push(byte as char),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::envelope;

    #[test]
    fn keys_are_stable_and_do_not_collide_through_separators() {
        let punch = Punch {
            sn: "SN1".into(),
            user_id: "7".into(),
            time: "2026-11-22 08:01:02".into(),
            mode: "1".into(),
            inout: "0".into(),
            raw: BTreeMap::new(),
        };
        assert_eq!(
            EventKey::punch(&punch),
            "punch/SN1/7/2026-11-22%2008:01:02/1/0"
        );
        assert_ne!(
            EventKey::user_change("user_missing", "a", "d", "x/1", "e", 3),
            EventKey::user_change("user_missing", "a", "d/x", "1", "e", 3)
        );
    }

    #[test]
    fn events_round_trip_through_the_store_envelope() {
        let event = Event {
            key: "k".into(),
            agent_id: "a".into(),
            device_id: "d".into(),
            occurred_at_ms: 1_700_000_000_000,
            clock_synchronized: false,
            fencing_token: 9,
            body: EventBody::UserMissing {
                user: DeviceUser {
                    user_id: "42".into(),
                    name: "Ana".into(),
                    fingerprints: 2,
                    ..DeviceUser::default()
                },
                last_seen_at_ms: 1_699_000_000_000,
            },
        };
        let bytes = envelope::encode(&event).unwrap();
        assert_eq!(envelope::decode::<Event>(&bytes).unwrap(), event);
    }

    /// Version 1 as the previous build wrote it, for the upgrade test only.
    impl Record for EventV1 {
        const KIND: &'static str = "event";
        const VERSION: u32 = 1;
    }

    #[test]
    fn a_version_1_event_from_an_older_outbox_reads_as_clock_synchronized() {
        let v1 = EventV1 {
            key: "k".into(),
            agent_id: "a".into(),
            device_id: "d".into(),
            occurred_at_ms: 1_700_000_000_000,
            fencing_token: 3,
            body: EventBody::Alarm {
                kind: "x".into(),
                message: "m".into(),
            },
        };
        let bytes = envelope::encode(&v1).unwrap();
        // The envelope of version 1: kind "event", version 1, then the old body.
        assert_eq!(&bytes[..8], &[0, 5, b'e', b'v', b'e', b'n', b't', 1]);
        let event = envelope::decode::<Event>(&bytes).unwrap();
        assert!(event.clock_synchronized);
        assert_eq!(event.key, "k");
        assert_eq!(event.fencing_token, 3);
    }
}
