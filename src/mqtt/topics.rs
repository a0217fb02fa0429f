//! The topic layout: every topic of one agent lives under `edge/<site>/<agent id>/`, so one
//! broker ACL line per agent (`pattern readwrite edge/<site>/<agent>/#`) confines it to its own
//! topics. `docs/mqtt.md` documents the layout for operators; this module is its only
//! implementation.

use thiserror::Error;

/// Root of every edge-agent topic.
const ROOT: &str = "edge";

/// The topics of one agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
}

/// A site or agent id that cannot be a topic level.
#[derive(Debug, Error, PartialEq, Eq)]
#[error(
    "{what} {value:?} cannot be used in MQTT topics: it must be non-empty and must not contain \
     '/', '+', '#' or control characters; change it in the config"
)]
pub struct BadTopicLevel {
    /// `agent.id` or `agent.site`.
    pub what: &'static str,
    /// The offending value.
    pub value: String,
}

fn checked_level(what: &'static str, value: &str) -> Result<(), BadTopicLevel> {
    let bad = value.is_empty()
        || value
            .chars()
            .any(|c| matches!(c, '/' | '+' | '#') || c.is_control());
    if bad {
        Err(BadTopicLevel {
            what,
            value: value.to_owned(),
        })
    } else {
        Ok(())
    }
}

impl Topics {
    /// The topics of agent `agent_id` at `site`.
    pub fn new(site: &str, agent_id: &str) -> Result<Topics, BadTopicLevel> {
        checked_level("agent.site", site)?;
        checked_level("agent.id", agent_id)?;
        Ok(Topics {
            prefix: format!("{ROOT}/{site}/{agent_id}/"),
        })
    }

    /// Every topic of this agent (`edge/<site>/<agent>/#`), the one ACL pattern it needs.
    pub fn all(&self) -> String {
        format!("{}#", self.prefix)
    }

    /// Retained health: `up` with key figures, or `down` (will or graceful stop).
    pub fn health(&self) -> String {
        format!("{}health", self.prefix)
    }

    /// Alerts (must-deliver events such as missing users or an unsynchronised clock).
    pub fn alerts(&self) -> String {
        format!("{}events/alert", self.prefix)
    }

    /// The subscription that receives every command request.
    pub fn command_filter(&self) -> String {
        format!("{}cmd/#", self.prefix)
    }

    /// The request topic of `command`: words become levels, `logs tail` → `…/cmd/logs/tail`.
    pub fn command(&self, command: &str) -> String {
        format!("{}cmd/{}", self.prefix, command.replace(' ', "/"))
    }

    /// The command named by a request topic, `…/cmd/logs/tail` → `logs tail`; `None` for a
    /// topic outside this agent's command space.
    pub fn command_of(&self, topic: &str) -> Option<String> {
        let name = topic.strip_prefix(&self.prefix)?.strip_prefix("cmd/")?;
        (!name.is_empty()).then(|| name.replace('/', " "))
    }

    /// Where replies go: `…/reply/<requester>`. The agent answers only below this prefix, so a
    /// forged response topic cannot make it publish anywhere else.
    pub fn reply_prefix(&self) -> String {
        format!("{}reply/", self.prefix)
    }

    /// The reply topic for `requester` (a per-invocation id chosen by the requester).
    pub fn reply(&self, requester: &str) -> String {
        format!("{}{requester}", self.reply_prefix())
    }

    /// Whether a requester's response topic is one this agent may publish to.
    pub fn is_reply_topic(&self, topic: &str) -> bool {
        topic
            .strip_prefix(&self.reply_prefix())
            .is_some_and(|rest| {
                !rest.is_empty()
                    && !rest.contains(['+', '#'])
                    && !rest.chars().any(char::is_control)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_topic_is_under_the_agent_prefix() {
        let topics = Topics::new("store-12", "gw-1").unwrap();
        assert_eq!(topics.all(), "edge/store-12/gw-1/#");
        assert_eq!(topics.health(), "edge/store-12/gw-1/health");
        assert_eq!(topics.alerts(), "edge/store-12/gw-1/events/alert");
        assert_eq!(topics.command_filter(), "edge/store-12/gw-1/cmd/#");
        assert_eq!(
            topics.command("logs tail"),
            "edge/store-12/gw-1/cmd/logs/tail"
        );
        assert_eq!(topics.reply("ctl-1"), "edge/store-12/gw-1/reply/ctl-1");
    }

    #[test]
    fn command_names_round_trip_through_topics() {
        let topics = Topics::new("s", "a").unwrap();
        for name in ["status", "logs tail", "conflicts resolve"] {
            assert_eq!(topics.command_of(&topics.command(name)).unwrap(), name);
        }
        assert_eq!(topics.command_of("edge/s/other/cmd/status"), None);
        assert_eq!(topics.command_of("edge/s/a/cmd/"), None);
    }

    #[test]
    fn replies_only_go_below_the_agents_reply_prefix() {
        let topics = Topics::new("s", "a").unwrap();
        assert!(topics.is_reply_topic("edge/s/a/reply/ctl-1"));
        assert!(!topics.is_reply_topic("edge/s/a/reply/"));
        assert!(!topics.is_reply_topic("edge/s/b/reply/ctl-1"));
        assert!(!topics.is_reply_topic("edge/s/a/health"));
        assert!(!topics.is_reply_topic("edge/s/a/reply/#"));
    }

    #[test]
    fn ids_that_would_break_topic_scoping_are_refused() {
        assert!(Topics::new("s", "a/b").is_err());
        assert!(Topics::new("s", "+").is_err());
        assert!(Topics::new("", "a").is_err());
        let err = Topics::new("s#", "a").unwrap_err().to_string();
        assert!(err.contains("agent.site"), "{err}");
    }
}
