//! The arbiter's messages and topics (MQTT 5 request/response; `docs/locks.md` is the
//! contract). Requests go to one topic the arbiter subscribes to, carry a Response Topic, a
//! Correlation Data and a Message Expiry; replies go back on the holder's own reply topic with
//! the same correlation data. JSON, so a technician can read them with `mosquitto_sub`.

use serde::{Deserialize, Serialize};

/// Root of the lock topics, beside the agents' `edge/…` tree so one ACL block covers them.
const ROOT: &str = "edge-lock";

/// The lock topics of one site.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockTopics {
    site: String,
}

impl LockTopics {
    /// The topics of `site` (a topic level; `agent.site` is checked to be one).
    pub fn new(site: &str) -> LockTopics {
        LockTopics {
            site: site.to_string(),
        }
    }

    /// Where every request goes (the arbiter is its only subscriber).
    pub fn request(&self) -> String {
        format!("{ROOT}/{}/request", self.site)
    }

    /// Where the replies to `holder` go; the arbiter answers only here, so a client that names
    /// another holder never sees the answer (the broker ACL confines `reply/<client id>`).
    pub fn reply(&self, holder: &str) -> String {
        format!("{ROOT}/{}/reply/{holder}", self.site)
    }
}

/// What a request asks.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Take the lock of `device` for `lease_ms`.
    Acquire,
    /// Extend the lease of the lock `holder` holds with `token`.
    Renew,
    /// Give back the lock `holder` holds with `token`.
    Release,
    /// Every lock the arbiter knows.
    List,
}

/// A request to the arbiter.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LockRequest {
    /// What is asked.
    pub op: Op,
    /// The holder (the agent's lock client id); replies go to its reply topic only.
    pub holder: String,
    /// The device (all but `list`), the token held (`renew`, `release`) and the lease asked
    /// for (`acquire`, `renew`).
    #[serde(flatten)]
    pub terms: LeaseTerms,
}

/// What a request and its reply both say about one lock: the device, the fencing token and
/// the lease. One type for both, so the two sides cannot drift apart in names or wire form
/// (on the wire its fields sit beside the message's own: `{"op":…,"device":…,"token":…}`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct LeaseTerms {
    /// The device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// The fencing token: held (request), granted or renewed, or the current holder's when
    /// busy (reply).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<u64>,
    /// The lease asked for, granted or renewed, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ms: Option<u64>,
}

impl LeaseTerms {
    /// Terms naming only `device`.
    pub fn of(device: Option<&str>) -> LeaseTerms {
        LeaseTerms {
            device: device.map(str::to_string),
            ..LeaseTerms::default()
        }
    }
}

/// How the arbiter answered.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The lock is yours with `token` for `lease_ms` from when you sent the request.
    Granted,
    /// The lease was extended by `lease_ms` from when you sent the request.
    Renewed,
    /// Released.
    Released,
    /// Someone holds it (or it is in its lock-delay); try again after `retry_after_ms`.
    Busy,
    /// You do not hold it with that token (expired, released, or never granted): stop.
    Stale,
    /// `locks` lists every lock.
    Listed,
    /// The request is malformed (`detail` says why).
    Refused,
}

/// The arbiter's answer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LockReply {
    /// How it went.
    pub outcome: Outcome,
    /// The device asked about, the token (granted, renewed, or the current holder's when
    /// busy) and the lease granted or renewed.
    #[serde(flatten)]
    pub terms: LeaseTerms,
    /// Who holds it (busy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
    /// When it may be free (busy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// Why (refused, stale).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Every lock (listed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locks: Vec<LockView>,
}

impl LockReply {
    /// A reply with `outcome` about `device` and nothing else set.
    pub fn new(outcome: Outcome, device: Option<&str>) -> LockReply {
        LockReply {
            outcome,
            terms: LeaseTerms::of(device),
            holder: None,
            retry_after_ms: None,
            detail: None,
            locks: Vec::new(),
        }
    }
}

/// One lock as the arbiter (or an agent) shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LockView {
    /// The device.
    pub device: String,
    /// Who holds it, if anyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
    /// The last token granted for it (the holder's while held).
    pub token: u64,
    /// What is left of the lease (held), in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining_ms: Option<u64>,
    /// How long until it may be granted again (lock-delay after an expiry), in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free_in_ms: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_plain_json() {
        let request = LockRequest {
            op: Op::Renew,
            holder: "gw1-lock".into(),
            terms: LeaseTerms {
                device: Some("door".into()),
                token: Some(7),
                lease_ms: Some(10_000),
            },
        };
        let text = serde_json::to_string(&request).unwrap();
        assert_eq!(
            text,
            r#"{"op":"renew","holder":"gw1-lock","device":"door","token":7,"lease_ms":10000}"#
        );
        assert_eq!(serde_json::from_str::<LockRequest>(&text).unwrap(), request);
        let mut reply = LockReply::new(Outcome::Busy, Some("door"));
        reply.terms.token = Some(3);
        reply.holder = Some("gw2-lock".into());
        let text = serde_json::to_string(&reply).unwrap();
        assert_eq!(
            text,
            r#"{"outcome":"busy","device":"door","token":3,"holder":"gw2-lock"}"#
        );
        assert_eq!(serde_json::from_str::<LockReply>(&text).unwrap(), reply);
        let topics = LockTopics::new("s1");
        assert_eq!(topics.reply("a"), "edge-lock/s1/reply/a");
    }
}
