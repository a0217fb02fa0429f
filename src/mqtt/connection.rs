//! The connection supervisor (M1): drives rumqttc's event loop in a task of its own and adds
//! what rumqttc leaves out (rumqtt#703, #250, #910):
//!
//! - exponential backoff with full jitter between failed attempts ([`crate::backoff`]);
//! - resubscription on every CONNACK (the agent connects with a clean start, so the broker
//!   never remembers its subscriptions, and rumqttc does not resubscribe);
//! - the link state other tasks consult before publishing (they never block on the client);
//! - routing of incoming publishes: command requests to the router's bounded queue (`busy`
//!   when full), copies of our own alerts to the alert sender;
//! - on a graceful stop, an explicit retained `down` before a clean DISCONNECT, because a
//!   clean DISCONNECT suppresses the will.
//!
//! Nothing here ever waits on anything but the event loop, so a slow consumer cannot stall
//! keep-alives, and losing the broker touches nothing outside this module.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::{
    ConnAck, DisconnectReasonCode, Packet, Publish, SubscribeReasonCode,
};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{ConnectionError, Event, EventLoop};
use rumqttc::Outgoing;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use super::command::router::{reply_message, IncomingRequest};
use super::command::{CommandError, ErrorCode, Reply};
use super::publisher::{LinkState, Message, Publisher};
use super::topics::Topics;
use crate::backoff::{random_fraction, ReconnectBackoff};
use crate::lifecycle::StopSignal;

/// How long a stop lets the event-loop step in progress finish before saying goodbye.
const IN_FLIGHT_GRACE: Duration = Duration::from_millis(200);

/// How long a graceful stop waits for the `down` message and the DISCONNECT to be written.
const FAREWELL_TIMEOUT: Duration = Duration::from_secs(2);
/// While the broker stays unreachable, a warning at most this often (details at debug).
const OUTAGE_WARNING_EVERY: Duration = Duration::from_secs(60);

/// The supervisor's state.
pub(super) struct Connection {
    /// rumqttc's event loop (owned; polled only here).
    pub eventloop: EventLoop,
    /// For resubscribing, busy replies and the final `down`.
    pub publisher: Publisher,
    /// Shared link state.
    pub link: Arc<LinkState>,
    /// This agent's topics.
    pub topics: Topics,
    /// Where command requests go.
    pub requests: mpsc::Sender<IncomingRequest>,
    /// Where copies of our own alerts go.
    pub echoes: mpsc::Sender<Bytes>,
    /// Reconnect delays.
    pub backoff: ReconnectBackoff,
    /// The retained `down` published on a graceful stop.
    pub farewell: Vec<u8>,
    /// The client id, for the log.
    pub client_id: String,
    /// The live picture the link state is reported into (status, metrics).
    pub live: crate::live::Live,
}

/// Where the supervisor is in the life of a connection.
enum Phase {
    /// Connected since.
    Up { since: Instant, subscribed: bool },
    /// Not connected; counting attempts since `since`.
    Down {
        since: Instant,
        attempts: u32,
        warned_at: Option<Instant>,
    },
}

impl Connection {
    /// Runs until `stop` resolves, then says goodbye.
    pub(super) async fn run(mut self, mut stop: StopSignal) {
        let mut phase = Phase::Down {
            since: Instant::now(),
            attempts: 0,
            warned_at: None,
        };
        loop {
            let event = {
                let poll = self.eventloop.poll();
                tokio::pin!(poll);
                tokio::select! {
                    event = &mut poll => event,
                    _ = stop.stopped() => {
                        // Let a packet that is being written finish: cutting a write short
                        // breaks the connection, and the broker would publish the will
                        // ("connection lost") instead of our own `down`.
                        let _ = tokio::time::timeout(IN_FLIGHT_GRACE, poll).await;
                        break;
                    }
                }
            };
            let delay = match event {
                Ok(event) => {
                    self.on_event(event, &mut phase);
                    None
                }
                Err(err) => Some(self.on_error(err, &mut phase)),
            };
            if let Some(delay) = delay {
                tokio::select! {
                    _ = stop.stopped() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
        self.farewell(matches!(phase, Phase::Up { .. })).await;
    }

    fn on_event(&mut self, event: Event, phase: &mut Phase) {
        match event {
            Event::Incoming(Packet::ConnAck(ack)) => self.on_connack(&ack, phase),
            Event::Incoming(Packet::Publish(publish)) => self.route(publish),
            Event::Incoming(Packet::SubAck(ack)) => {
                let refused = ack
                    .return_codes
                    .iter()
                    .filter(|code| !matches!(code, SubscribeReasonCode::Success(_)))
                    .count();
                if refused > 0 {
                    tracing::error!(
                        "the broker refused {refused} of this agent's subscriptions ({:?}); \
                         commands will not arrive. Check the broker's ACL for {}",
                        ack.return_codes,
                        self.topics.all()
                    );
                }
            }
            Event::Incoming(Packet::Disconnect(disconnect)) => {
                if disconnect.reason_code == DisconnectReasonCode::SessionTakenOver {
                    tracing::error!(
                        client_id = %self.client_id,
                        "another MQTT client connected with this agent's client id and took the \
                         session over; two agents with the same id (or a copied config) keep \
                         kicking each other off"
                    );
                } else {
                    tracing::warn!(reason = ?disconnect.reason_code, "the broker closed the connection");
                }
            }
            _ => {}
        }
        if let Phase::Up { subscribed, .. } = phase {
            if !*subscribed {
                *subscribed = self.subscribe();
            }
        }
    }

    fn on_connack(&mut self, ack: &ConnAck, phase: &mut Phase) {
        let broker_max = ack.properties.as_ref().and_then(|p| p.max_packet_size);
        self.link.connected(broker_max);
        self.live.mqtt_link(true);
        if let Phase::Down {
            since, attempts, ..
        } = phase
        {
            tracing::info!(
                client_id = %self.client_id,
                after_attempts = *attempts,
                outage_s = since.elapsed().as_secs_f32(),
                "connected to the MQTT broker"
            );
        }
        // A clean start never resumes a session, so subscriptions are always gone; the check
        // stays in case a broker resumes one anyway (then resubscribing is harmless).
        let subscribed = self.subscribe();
        *phase = Phase::Up {
            since: Instant::now(),
            subscribed,
        };
        if ack.session_present {
            tracing::debug!("the broker resumed a session; resubscribed anyway");
        }
    }

    fn subscribe(&self) -> bool {
        let filters = [self.topics.command_filter(), self.topics.alerts()];
        let sent = self.publisher.try_subscribe(&filters);
        if !sent {
            tracing::debug!("subscription request queue full; retrying on the next event");
        }
        sent
    }

    fn route(&self, publish: Publish) {
        let Ok(topic) = std::str::from_utf8(&publish.topic) else {
            return;
        };
        if topic == self.topics.alerts() {
            // A full queue only means this copy is not used; the alert is sent again later.
            let _ = self.echoes.try_send(publish.payload);
            return;
        }
        if self.topics.command_of(topic).is_none() {
            return;
        }
        let properties = publish.properties.unwrap_or_default();
        let request = IncomingRequest {
            topic: topic.to_owned(),
            payload: publish.payload,
            response_topic: properties.response_topic,
            correlation: properties.correlation_data,
        };
        match self.requests.try_send(request) {
            Ok(()) => {}
            Err(TrySendError::Full(request)) => self.answer_busy(&request),
            Err(TrySendError::Closed(_)) => {}
        }
    }

    fn answer_busy(&self, request: &IncomingRequest) {
        let reply = Reply::from_outcome(Err(CommandError::new(
            ErrorCode::Busy,
            "too many commands are waiting; nothing was done, try again in a few seconds",
        )));
        if let Some(message) = reply_message(&self.topics, request, reply.to_bytes().into()) {
            let _ = self.publisher.publish(message);
        }
    }

    fn on_error(&mut self, err: ConnectionError, phase: &mut Phase) -> Duration {
        if let Phase::Up { since, .. } = phase {
            let uptime = since.elapsed();
            self.link.disconnected();
            self.live.mqtt_link(false);
            self.backoff.connection_lasted(uptime);
            tracing::warn!(
                "lost the MQTT broker after {:.0} s: {err}; reconnecting with backoff (device \
                 polling and the outbox carry on)",
                uptime.as_secs_f32()
            );
            *phase = Phase::Down {
                since: Instant::now(),
                attempts: 0,
                warned_at: Some(Instant::now()),
            };
        }
        let delay = self.backoff.next_delay(random_fraction());
        if let Phase::Down {
            since,
            attempts,
            warned_at,
        } = phase
        {
            *attempts += 1;
            if warned_at.is_none_or(|at| at.elapsed() >= OUTAGE_WARNING_EVERY) {
                tracing::warn!(
                    attempts = *attempts,
                    unreachable_s = since.elapsed().as_secs(),
                    "cannot reach the MQTT broker: {err}; next attempt in {delay:.1?}"
                );
                *warned_at = Some(Instant::now());
            } else {
                tracing::debug!(
                    attempts = *attempts,
                    "MQTT connect failed: {err}; next in {delay:.1?}"
                );
            }
        }
        delay
    }

    /// Publishes the retained `down` and disconnects cleanly, within a bound.
    async fn farewell(mut self, connected: bool) {
        if !connected {
            self.link.stop();
            return;
        }
        let down = Message::json(
            self.topics.health(),
            std::mem::take(&mut self.farewell),
            QoS::AtLeastOnce,
            true,
        );
        if let Err(err) = self.publisher.publish_last(down) {
            tracing::warn!("could not queue the final health `down`: {err}");
        }
        self.publisher.try_disconnect();
        let flushed = tokio::time::timeout(FAREWELL_TIMEOUT, async {
            loop {
                match self.eventloop.poll().await {
                    Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        match flushed {
            Ok(()) => tracing::info!("disconnected from the MQTT broker; health is `down`"),
            Err(_) => tracing::warn!("the MQTT broker did not take the final `down` in time"),
        }
    }
}
