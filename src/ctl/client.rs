//! A minimal MQTT 5 requester: connect, subscribe to a private reply topic, publish signed
//! requests with a response topic and correlation data, and wait for the matching reply.
//!
//! It is what `edge-agent ctl` uses, and what the integration tests and the latency benchmark
//! use, so they all exercise the same wire format an operator does.

use std::time::Duration;

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::mqtt::broker::{BrokerError, BrokerSettings};
use crate::mqtt::command::Reply;
use crate::mqtt::signing::{new_nonce, AdminKeyFile, Scope};
use crate::mqtt::topics::{BadTopicLevel, Topics};

/// Largest reply this client accepts: the agent's own publishing ceiling plus headers.
const REPLY_MAX_PACKET: u32 = crate::mqtt::publisher::DEFAULT_MAX_PACKET + 16 * 1024;

/// Why a request got no reply.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// The broker settings are unusable.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// The site or agent id cannot be a topic level.
    #[error(transparent)]
    Topic(#[from] BadTopicLevel),
    /// The broker could not be reached or dropped the connection.
    #[error("MQTT connection failed: {0}")]
    Connection(String),
    /// No reply within the timeout.
    #[error(
        "no reply within {0:?}: is the agent running and connected to this broker, and are \
         --site and --agent right?"
    )]
    Timeout(Duration),
    /// The reply was not a reply.
    #[error("the agent sent a reply this ctl cannot read: {0}")]
    BadReply(String),
    /// The system random generator failed (nonce, correlation data).
    #[error("the system random generator failed: {0}")]
    Random(getrandom::Error),
}

/// What the event-loop task reports.
enum Incoming {
    Connected,
    Subscribed,
    Reply {
        correlation: Option<Bytes>,
        payload: Bytes,
    },
    Failed(String),
}

/// A connected requester for one agent.
pub struct Client {
    client: AsyncClient,
    incoming: mpsc::UnboundedReceiver<Incoming>,
    poller: JoinHandle<()>,
    topics: Topics,
    reply_topic: String,
    site: String,
    agent: String,
    timeout: Duration,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

fn random_bytes<const N: usize>() -> Result<[u8; N], CtlError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(CtlError::Random)?;
    Ok(bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Client {
    /// Connects to the broker and subscribes to a fresh reply topic of `agent` at `site`;
    /// `timeout` bounds the connection and every request.
    pub async fn connect(
        settings: &BrokerSettings,
        site: &str,
        agent: &str,
        timeout: Duration,
    ) -> Result<Client, CtlError> {
        let topics = Topics::new(site, agent)?;
        let reply_topic = topics.reply(&settings.client_id);
        let mut options = settings.mqtt_options()?;
        // Replies may be as large as the agent publishes (a page of a list reaches ~192 KiB),
        // unlike the requests the agent accepts: without this, a large page never arrives.
        options.set_max_packet_size(Some(REPLY_MAX_PACKET));
        let (client, mut eventloop) = AsyncClient::new(options, 16);
        let (tx, incoming) = mpsc::unbounded_channel();
        let poller = tokio::spawn(async move {
            loop {
                let message = match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => Incoming::Connected,
                    Ok(Event::Incoming(Packet::SubAck(_))) => Incoming::Subscribed,
                    Ok(Event::Incoming(Packet::Publish(publish))) => Incoming::Reply {
                        correlation: publish.properties.and_then(|p| p.correlation_data),
                        payload: publish.payload,
                    },
                    Ok(_) => continue,
                    Err(err) => {
                        let _ = tx.send(Incoming::Failed(err.to_string()));
                        return;
                    }
                };
                if tx.send(message).is_err() {
                    return;
                }
            }
        });
        let mut this = Client {
            client,
            incoming,
            poller,
            topics,
            reply_topic,
            site: site.to_owned(),
            agent: agent.to_owned(),
            timeout,
        };
        this.wait_for(|m| matches!(m, Incoming::Connected).then_some(()))
            .await?;
        this.client
            .subscribe(this.reply_topic.clone(), QoS::AtLeastOnce)
            .await
            .map_err(|err| CtlError::Connection(err.to_string()))?;
        this.wait_for(|m| matches!(m, Incoming::Subscribed).then_some(()))
            .await?;
        Ok(this)
    }

    /// Waits until `wanted` picks a message (skipping the others), a failure or the timeout.
    async fn wait_for<T>(&mut self, wanted: impl Fn(Incoming) -> Option<T>) -> Result<T, CtlError> {
        let timeout = self.timeout;
        tokio::time::timeout(timeout, async {
            loop {
                match self.incoming.recv().await {
                    Some(Incoming::Failed(err)) => return Err(CtlError::Connection(err)),
                    Some(message) => {
                        if let Some(found) = wanted(message) {
                            return Ok(found);
                        }
                    }
                    None => return Err(CtlError::Connection("the client stopped".into())),
                }
            }
        })
        .await
        .map_err(|_| CtlError::Timeout(timeout))?
    }

    /// The request payload for `command` with `args`, signed with `key` (valid `validity`
    /// from now) or unsigned without one.
    pub fn request_payload(
        &self,
        command: &str,
        args: &Value,
        key: Option<&AdminKeyFile>,
        validity: Duration,
    ) -> Result<Vec<u8>, CtlError> {
        let mut body = json!({ "args": args });
        if let Some(key) = key {
            let scope = Scope {
                site: &self.site,
                agent: &self.agent,
                command,
                args,
            };
            let nonce = new_nonce().map_err(CtlError::Random)?;
            let now = chrono::Utc::now().timestamp();
            let auth = key.sign(scope, now, validity.as_secs().max(1) as i64, nonce);
            body["auth"] = json!(auth);
        }
        Ok(body.to_string().into_bytes())
    }

    /// Signs (if `key` is given), sends `command` and waits for its reply.
    pub async fn call(
        &mut self,
        command: &str,
        args: &Value,
        key: Option<&AdminKeyFile>,
        validity: Duration,
    ) -> Result<Reply, CtlError> {
        let payload = self.request_payload(command, args, key, validity)?;
        let correlation = Bytes::copy_from_slice(&random_bytes::<16>()?);
        self.send_raw(command, payload, correlation).await
    }

    /// Sends an arbitrary payload to `command` with the given correlation data and waits for
    /// the reply carrying it (tests use it for malformed requests and duplicates).
    pub async fn send_raw(
        &mut self,
        command: &str,
        payload: Vec<u8>,
        correlation: Bytes,
    ) -> Result<Reply, CtlError> {
        let properties = PublishProperties {
            response_topic: Some(self.reply_topic.clone()),
            correlation_data: Some(correlation.clone()),
            content_type: Some("application/json".into()),
            ..PublishProperties::default()
        };
        self.client
            .publish_with_properties(
                self.topics.command(command),
                QoS::AtLeastOnce,
                false,
                payload,
                properties,
            )
            .await
            .map_err(|err| CtlError::Connection(err.to_string()))?;
        let payload = self
            .wait_for(|m| match m {
                Incoming::Reply {
                    correlation: Some(c),
                    payload,
                } if c == correlation => Some(payload),
                _ => None,
            })
            .await?;
        serde_json::from_slice(&payload).map_err(|err| CtlError::BadReply(err.to_string()))
    }

    /// Disconnects cleanly.
    pub async fn disconnect(self) {
        let _ = self.client.disconnect().await;
        // Give the event loop a moment to write the DISCONNECT before the task is aborted.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A client id for one ctl invocation: unique, so concurrent operators never collide.
pub fn fresh_client_id() -> Result<String, CtlError> {
    Ok(format!("ctl-{}", hex(&random_bytes::<6>()?)))
}
