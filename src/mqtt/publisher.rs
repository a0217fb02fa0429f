//! Publishing that never blocks the agent.
//!
//! rumqttc's `publish().await` waits when its request channel is full, and the channel is not
//! drained while the broker is unreachable (rumqtt#910), so a health tick or an alert could
//! freeze whatever task raised it. Every publish here is `try_publish`: it either enters the
//! bounded channel at once or fails with a reason, and each message class has its own answer
//! to failure (see [`PublishError`] and `docs/mqtt.md`):
//!
//! - health: latest wins; a failed publish marks it for the next tick or the next connection;
//! - alerts: kept in the store until the broker hands them back (see `alerts.rs`);
//! - replies: dropped; the requester retries with the same correlation data and is answered
//!   from the dedup cache.
//!
//! While the link is down nothing is queued at all: a reply or health message held in memory
//! would be stale by the time it went out, and the channel must stay free for the messages
//! that matter after reconnecting.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::PublishProperties;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::AsyncClient;
use thiserror::Error;
use tokio::sync::watch;

/// Our own ceiling when the broker announces no maximum packet size: big enough for any reply
/// the commands produce within their limits, small enough to keep a gateway's memory calm.
pub const DEFAULT_MAX_PACKET: u32 = 256 * 1024;

/// Fixed header, property lengths and packet id: a generous allowance on top of topic and
/// payload when checking a message against the broker's limit.
const PACKET_OVERHEAD: usize = 64;

/// What the connection task knows about the link, shared with every publisher.
#[derive(Debug)]
pub struct LinkState {
    connected: AtomicBool,
    /// `true` once stopping. Publishers hold it while checking and handing over a message, so
    /// nothing can slip in behind the final `down` (a retained `up` after it would be a lie).
    stopping: Mutex<bool>,
    max_packet: AtomicU32,
    connections: watch::Sender<u64>,
}

impl Default for LinkState {
    fn default() -> Self {
        LinkState {
            connected: AtomicBool::new(false),
            stopping: Mutex::new(false),
            max_packet: AtomicU32::new(DEFAULT_MAX_PACKET),
            connections: watch::Sender::new(0),
        }
    }
}

impl LinkState {
    /// Whether a CONNACK arrived and no error since.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// How many connections were established since start (1 after the first CONNACK).
    pub fn connections(&self) -> u64 {
        *self.connections.borrow()
    }

    /// A receiver that sees the connection count change at every CONNACK, for tasks that
    /// must act on a (re)connection (health, alerts).
    pub fn watch_connections(&self) -> watch::Receiver<u64> {
        self.connections.subscribe()
    }

    /// Records a CONNACK and the broker's maximum packet size, if it announced one.
    pub(super) fn connected(&self, broker_max_packet: Option<u32>) {
        self.max_packet.store(
            broker_max_packet.map_or(DEFAULT_MAX_PACKET, |max| max.min(DEFAULT_MAX_PACKET)),
            Ordering::Release,
        );
        self.connected.store(true, Ordering::Release);
        self.connections.send_modify(|count| *count += 1);
    }

    /// Records that the connection failed.
    pub(super) fn disconnected(&self) {
        self.connected.store(false, Ordering::Release);
    }

    fn gate(&self) -> MutexGuard<'_, bool> {
        self.stopping
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// From now on nothing is published any more.
    pub(super) fn stop(&self) {
        *self.gate() = true;
    }
}

/// Why a message was not handed to the MQTT client.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PublishError {
    /// The broker is not connected; nothing is queued while it is away.
    #[error("not connected to the broker")]
    NotConnected,
    /// The agent is stopping; only the final `down` is still published.
    #[error("the MQTT link is stopping")]
    Stopping,
    /// The client's request channel is full (the broker is slow or the link just dropped).
    #[error("the MQTT request queue is full")]
    QueueFull,
    /// The message exceeds the broker's maximum packet size and would break the connection.
    #[error("message of {size} bytes exceeds the broker's limit of {limit} bytes")]
    TooLarge {
        /// Estimated packet size.
        size: usize,
        /// The limit in force.
        limit: u32,
    },
}

/// One message to publish.
#[derive(Clone, Debug)]
pub struct Message {
    /// Full topic.
    pub topic: String,
    /// Payload bytes (JSON everywhere in this module).
    pub payload: Bytes,
    /// Delivery guarantee requested from the broker.
    pub qos: QoS,
    /// Whether the broker keeps it as the topic's last value.
    pub retain: bool,
    /// Correlation data echoed to a requester (replies only).
    pub correlation: Option<Bytes>,
}

impl Message {
    /// A JSON message without correlation data.
    pub fn json(topic: String, payload: Vec<u8>, qos: QoS, retain: bool) -> Message {
        Message {
            topic,
            payload: payload.into(),
            qos,
            retain,
            correlation: None,
        }
    }

    fn estimated_size(&self) -> usize {
        self.topic.len()
            + self.payload.len()
            + self.correlation.as_ref().map_or(0, Bytes::len)
            + PACKET_OVERHEAD
    }
}

/// A cheap, cloneable, never-blocking handle for publishing.
#[derive(Clone)]
pub struct Publisher {
    client: AsyncClient,
    link: Arc<LinkState>,
}

impl Publisher {
    /// Wraps the client whose event loop the connection task drives.
    pub(super) fn new(client: AsyncClient, link: Arc<LinkState>) -> Publisher {
        Publisher { client, link }
    }

    /// The shared link state.
    pub fn link(&self) -> &LinkState {
        &self.link
    }

    /// Checks a message against the broker's limit without sending it, so a reply that is
    /// too large can be replaced by an error the requester will actually receive.
    pub fn check_size(&self, message: &Message) -> Result<(), PublishError> {
        let size = message.estimated_size();
        let limit = self.link.max_packet.load(Ordering::Acquire);
        if size > limit as usize {
            return Err(PublishError::TooLarge { size, limit });
        }
        Ok(())
    }

    /// Hands `message` to the client without waiting.
    pub fn publish(&self, message: Message) -> Result<(), PublishError> {
        let stopping = self.link.gate();
        if *stopping {
            return Err(PublishError::Stopping);
        }
        if !self.link.is_connected() {
            return Err(PublishError::NotConnected);
        }
        self.send(message)
    }

    /// Publishes `message` as the very last one and closes the gate behind it (the final
    /// `down` of a graceful stop).
    pub(super) fn publish_last(&self, message: Message) -> Result<(), PublishError> {
        let mut stopping = self.link.gate();
        *stopping = true;
        self.send(message)
    }

    fn send(&self, message: Message) -> Result<(), PublishError> {
        self.check_size(&message)?;
        let properties = PublishProperties {
            content_type: Some("application/json".into()),
            correlation_data: message.correlation,
            ..PublishProperties::default()
        };
        self.client
            .try_publish_with_properties(
                message.topic,
                message.qos,
                message.retain,
                message.payload,
                properties,
            )
            .map_err(|_| PublishError::QueueFull)
    }

    /// Asks the client to subscribe without waiting; `false` if the request channel is full.
    pub(super) fn try_subscribe(&self, filters: &[String]) -> bool {
        let filters = filters
            .iter()
            .map(|topic| rumqttc::v5::mqttbytes::v5::Filter::new(topic.clone(), QoS::AtLeastOnce));
        self.client.try_subscribe_many(filters).is_ok()
    }

    /// Asks the client to disconnect cleanly without waiting.
    pub(super) fn try_disconnect(&self) -> bool {
        self.client.try_disconnect().is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::v5::MqttOptions;

    /// A publisher whose event loop is never polled, so nothing drains its channel of
    /// `capacity` requests.
    fn publisher(capacity: usize) -> (Publisher, rumqttc::v5::EventLoop) {
        let (client, eventloop) =
            AsyncClient::new(MqttOptions::new("test", "127.0.0.1", 1), capacity);
        (
            Publisher::new(client, Arc::new(LinkState::default())),
            eventloop,
        )
    }

    fn message(bytes: usize) -> Message {
        Message::json("t".into(), vec![b'x'; bytes], QoS::AtLeastOnce, false)
    }

    #[test]
    fn nothing_is_queued_while_disconnected_and_a_full_queue_fails_at_once() {
        let (publisher, _eventloop) = publisher(1);
        assert_eq!(
            publisher.publish(message(1)),
            Err(PublishError::NotConnected)
        );

        publisher.link().connected(None);
        assert_eq!(publisher.publish(message(1)), Ok(()));
        // The channel holds one request and nobody drains it: the next publish must fail
        // immediately instead of waiting.
        assert_eq!(publisher.publish(message(1)), Err(PublishError::QueueFull));
    }

    #[test]
    fn messages_over_the_brokers_limit_are_refused_before_sending() {
        let (publisher, _eventloop) = publisher(8);
        publisher.link().connected(Some(1000));
        assert_eq!(publisher.publish(message(900)), Ok(()));
        assert!(matches!(
            publisher.publish(message(1000)),
            Err(PublishError::TooLarge { limit: 1000, .. })
        ));
        // A broker without a limit still gets our own ceiling.
        publisher.link().connected(None);
        assert!(publisher
            .publish(message(DEFAULT_MAX_PACKET as usize))
            .is_err());
    }

    #[test]
    fn after_the_last_message_nothing_else_goes_out() {
        let (publisher, _eventloop) = publisher(8);
        publisher.link().connected(None);
        assert_eq!(publisher.publish_last(message(1)), Ok(()));
        assert_eq!(publisher.publish(message(1)), Err(PublishError::Stopping));
    }
}
