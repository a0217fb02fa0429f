//! The agent's side of the arbiter: [`ArbiterLock`] takes device locks by asking the arbiter
//! over MQTT 5 and keeps each one renewed while it is held.
//!
//! The holder's deadline is counted from when it *sent* the request that granted or renewed
//! the lease, minus a safety margin, on its own monotonic clock; the arbiter counts the same
//! lease from when it *received* the request, so the holder always stops first. A renewal that
//! gets no answer before the deadline (arbiter or broker unreachable) ends the lock: the fence
//! closes and the session stops touching the device. A grant that arrives after its request was
//! given up on is released at once.
//!
//! The lock client has an MQTT connection of its own (client id `<mqtt client id>-lock`, the
//! holder name the arbiter knows), so
//! lock traffic never queues behind the agent's health, alerts and commands.

use super::requests::{Delivery, Requests};
use super::wire::{LeaseTerms, LockReply, LockRequest, LockTopics, LockView, Op, Outcome};
use crate::backoff::{random_fraction, Backoff};
use crate::config::Config;
use crate::lock::{AcquireFuture, DeviceLock, Fence, LockError, LockGuard, LockJournal, LockNote};
use crate::mqtt::broker::{BrokerError, BrokerSettings};
use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// How long one request waits for its answer (also its MQTT message expiry: a request queued
/// during a partition is dropped by the broker instead of granted late).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// The longest wait before asking again for a busy lock (jittered below it).
const BUSY_RECHECK: Duration = Duration::from_secs(1);

/// The MQTT requester shared by every lock of this agent.
struct Requester {
    client: AsyncClient,
    topics: LockTopics,
    holder: String,
    /// Requests waiting and given up on: which reply wakes whom, which late grant is released
    /// (see [`Requests`]).
    requests: Mutex<Requests>,
    connected: AtomicBool,
    next_id: AtomicU64,
    poller: Mutex<Option<JoinHandle<()>>>,
}

impl Requester {
    fn start(settings: &BrokerSettings, topics: LockTopics) -> Result<Arc<Requester>, BrokerError> {
        let holder = settings.client_id.clone();
        let (client, mut eventloop) = AsyncClient::new(settings.mqtt_options()?, 64);
        let requester = Arc::new(Requester {
            client,
            topics,
            holder,
            requests: Mutex::new(Requests::default()),
            connected: AtomicBool::new(false),
            next_id: AtomicU64::new(random_seed()),
            poller: Mutex::new(None),
        });
        let weak = Arc::downgrade(&requester);
        let poller = tokio::spawn(async move {
            let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
            loop {
                let event = eventloop.poll().await;
                let Some(this) = weak.upgrade() else { return };
                match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        backoff.succeed();
                        let reply_topic = this.topics.reply(&this.holder);
                        let _ = this.client.subscribe(reply_topic, QoS::AtLeastOnce).await;
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        this.connected.store(true, Ordering::SeqCst);
                        tracing::info!(holder = %this.holder, "lock client connected to the broker");
                    }
                    Ok(Event::Incoming(Packet::Publish(publish))) => this.delivered(publish).await,
                    Ok(_) => {}
                    Err(err) => {
                        if this.connected.swap(false, Ordering::SeqCst) {
                            tracing::warn!(%err, "lock client lost the broker: no new locks until it is back");
                        }
                        drop(this);
                        tokio::time::sleep(backoff.fail(random_fraction(), None)).await;
                    }
                }
            }
        });
        *requester.poller.lock().unwrap_or_else(|p| p.into_inner()) = Some(poller);
        Ok(requester)
    }

    async fn delivered(&self, publish: rumqttc::v5::mqttbytes::v5::Publish) {
        let Some(correlation) = publish.properties.and_then(|p| p.correlation_data) else {
            return;
        };
        let Ok(reply) = serde_json::from_slice::<LockReply>(&publish.payload) else {
            tracing::warn!("unreadable reply from the lock arbiter: ignored");
            return;
        };
        let delivery = self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .deliver(&correlation, reply);
        if let Delivery::Release { device, token } = delivery {
            tracing::info!(%device, token, "late lock grant: released at once");
            self.release(&device, token);
        }
    }

    /// Sends `request` and waits for its answer; returns it with the instant it was sent.
    async fn call(&self, request: &LockRequest) -> Result<(LockReply, Instant), String> {
        if !self.connected.load(Ordering::SeqCst) {
            return Err("not connected to the broker".into());
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let correlation = Bytes::copy_from_slice(&id.to_be_bytes());
        let rx = self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .wait(correlation.clone());
        let sent = Instant::now();
        let result = self.publish(request, correlation.clone()).await;
        let answer = match result {
            Ok(()) => tokio::time::timeout(REQUEST_TIMEOUT, rx)
                .await
                .map_err(|_| format!("no answer from the lock arbiter within {REQUEST_TIMEOUT:?}"))
                .and_then(|reply| reply.map_err(|_| "the lock client stopped".to_string())),
            Err(err) => Err(err),
        };
        // Remembered past the request's expiry in the broker; after that no answer comes.
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .finished(
                correlation,
                answer.is_ok(),
                Instant::now(),
                REQUEST_TIMEOUT * 10,
            );
        answer.map(|reply| (reply, sent))
    }

    async fn publish(&self, request: &LockRequest, correlation: Bytes) -> Result<(), String> {
        let properties = PublishProperties {
            response_topic: Some(self.topics.reply(&self.holder)),
            correlation_data: Some(correlation),
            message_expiry_interval: Some(REQUEST_TIMEOUT.as_secs() as u32),
            content_type: Some("application/json".into()),
            ..PublishProperties::default()
        };
        let payload = serde_json::to_vec(request).map_err(|e| e.to_string())?;
        self.client
            .publish_with_properties(
                self.topics.request(),
                QoS::AtLeastOnce,
                false,
                payload,
                properties,
            )
            .await
            .map_err(|err| format!("cannot send to the broker: {err}"))
    }

    fn request(
        &self,
        op: Op,
        device: Option<&str>,
        token: Option<u64>,
        lease: Option<Duration>,
    ) -> LockRequest {
        LockRequest {
            op,
            holder: self.holder.clone(),
            terms: LeaseTerms {
                device: device.map(str::to_string),
                token,
                lease_ms: lease.map(|l| l.as_millis() as u64),
            },
        }
    }

    /// Gives back `device`'s lock held with `token`, without waiting (a lost release only
    /// means the lease runs out).
    fn release(&self, device: &str, token: u64) {
        let request = self.request(Op::Release, Some(device), Some(token), None);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let client = self.client.clone();
        let properties = PublishProperties {
            response_topic: Some(self.topics.reply(&self.holder)),
            correlation_data: Some(Bytes::copy_from_slice(&id.to_be_bytes())),
            message_expiry_interval: Some(REQUEST_TIMEOUT.as_secs() as u32),
            ..PublishProperties::default()
        };
        let topic = self.topics.request();
        let Ok(payload) = serde_json::to_vec(&request) else {
            return;
        };
        let _ =
            client.try_publish_with_properties(topic, QoS::AtLeastOnce, false, payload, properties);
    }
}

impl Drop for Requester {
    fn drop(&mut self) {
        if let Some(poller) = self.poller.lock().unwrap_or_else(|p| p.into_inner()).take() {
            poller.abort();
        }
    }
}

fn random_seed() -> u64 {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    u64::from_be_bytes(bytes) >> 1
}

/// Device locks granted by the site's arbiter (`[lock] mode = "arbiter"`).
pub struct ArbiterLock {
    requester: Arc<Requester>,
    lease: Duration,
    max_hold: Duration,
    attempts: u32,
    journal: LockJournal,
}

impl ArbiterLock {
    /// The arbiter lock `config` describes, connecting with its `[mqtt]` settings. Must run
    /// inside the agent's runtime (the connection is a task).
    pub fn from_config(
        config: &Config,
        journal: LockJournal,
        purpose: &str,
    ) -> Result<ArbiterLock, BrokerError> {
        let mut settings =
            BrokerSettings::from_config(&config.mqtt, &config.agent.site, &config.agent.id)?;
        settings.client_id = format!("{}-{purpose}", settings.client_id);
        let requester = Requester::start(&settings, LockTopics::new(&config.agent.site))?;
        Ok(ArbiterLock {
            requester,
            lease: config.lock.lease.get(),
            max_hold: config.lock.max_hold.get(),
            attempts: config.lock.acquire_retries.max(1),
            journal,
        })
    }

    /// Every lock the arbiter knows (`edge-agent locks` at a site).
    pub async fn list(&self) -> Result<Vec<LockView>, String> {
        let request = self.requester.request(Op::List, None, None, None);
        let (reply, _) = self.requester.call(&request).await?;
        Ok(reply.locks)
    }

    async fn acquire_once(&self, device: &str) -> Result<Result<LockGuard, LockReply>, String> {
        let request = self
            .requester
            .request(Op::Acquire, Some(device), None, Some(self.lease));
        let (reply, sent) = self.requester.call(&request).await?;
        if reply.outcome != Outcome::Granted {
            return Ok(Err(reply));
        }
        let token = reply.terms.token.unwrap_or_default();
        let lease = reply
            .terms
            .lease_ms
            .map_or(self.lease, Duration::from_millis);
        let fence = Fence::new(device, token, sent, sent + usable(lease), self.max_hold);
        self.journal
            .note(device, token, &LockNote::Acquired { lease: Some(lease) });
        let renewer = tokio::spawn(keep_renewed(
            self.requester.clone(),
            fence.clone(),
            lease,
            self.journal.clone(),
        ));
        let held = Held {
            requester: self.requester.clone(),
            fence: fence.clone(),
            renewer,
            journal: self.journal.clone(),
        };
        Ok(Ok(LockGuard::new(fence, Box::new(held))))
    }
}

/// The part of a lease the holder uses: a safety margin (a fifth, at most two seconds) is
/// left for the pause between a deadline check and the device operation after it.
pub(super) fn usable(lease: Duration) -> Duration {
    lease - (lease / 5).min(Duration::from_secs(2))
}

impl DeviceLock for ArbiterLock {
    fn acquire<'a>(&'a self, device_id: &'a str) -> AcquireFuture<'a> {
        Box::pin(async move {
            let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(5));
            let mut last = String::new();
            for attempt in 1..=self.attempts {
                let wait = match self.acquire_once(device_id).await {
                    Ok(Ok(guard)) => return Ok(guard),
                    Ok(Err(reply)) => {
                        last = match (&reply.holder, reply.outcome) {
                            (Some(holder), _) => format!("held by {holder}"),
                            (None, Outcome::Busy) => {
                                "free again only after its lock-delay".to_string()
                            }
                            (None, outcome) => {
                                format!("{outcome:?}: {}", reply.detail.unwrap_or_default())
                            }
                        };
                        // A holder may release any moment (a poll is short): look again soon,
                        // jittered, rather than waiting out the lease the arbiter names.
                        let asked = reply
                            .retry_after_ms
                            .map_or(BUSY_RECHECK, Duration::from_millis)
                            .min(BUSY_RECHECK);
                        Duration::from_millis(50) + asked.mul_f64(random_fraction())
                    }
                    Err(unreachable) => {
                        last = unreachable;
                        backoff.fail(random_fraction(), None)
                    }
                };
                if attempt < self.attempts {
                    tokio::time::sleep(wait).await;
                }
            }
            Err(LockError::NotGranted {
                device: device_id.to_string(),
                attempts: self.attempts,
                why: last,
            })
        })
    }
}

/// Renews the lease at a third of its length until the guard is dropped; when a renewal is
/// refused, or none succeeds before the deadline, the lock is lost and the fence closes.
async fn keep_renewed(
    requester: Arc<Requester>,
    fence: Fence,
    lease: Duration,
    journal: LockJournal,
) {
    let device = fence.device().to_string();
    let token = fence.token();
    let period = lease / 3;
    let mut next = Instant::now() + period;
    loop {
        let deadline = fence.deadline();
        if deadline >= fence.cap() {
            // max_hold reached: no more renewals; the fence closes at the cap.
            tokio::time::sleep_until(deadline.into()).await;
            fence.lose("held longer than lock.max_hold");
            journal.note(
                &device,
                token,
                &LockNote::HeldTooLong {
                    max_hold: fence.cap() - fence.acquired(),
                },
            );
            return;
        }
        tokio::select! {
            () = tokio::time::sleep_until(deadline.into()) => {
                fence.lose("no renewal before its deadline (lock arbiter or broker unreachable)");
                journal.note(&device, token, &LockNote::Lost(
                    "no renewal before its deadline: the lock arbiter or the broker is unreachable".into(),
                ));
                return;
            }
            () = tokio::time::sleep_until(next.into()) => {}
        }
        let request = requester.request(Op::Renew, Some(&device), Some(token), Some(lease));
        let outcome = tokio::select! {
            outcome = requester.call(&request) => outcome,
            () = tokio::time::sleep_until(fence.deadline().into()) => Err("deadline".into()),
        };
        match outcome {
            Ok((reply, sent)) if reply.outcome == Outcome::Renewed => {
                let lease = reply.terms.lease_ms.map_or(lease, Duration::from_millis);
                fence.extend(sent + usable(lease));
                journal.note(&device, token, &LockNote::Renewed);
                next = Instant::now() + period;
            }
            Ok((reply, _)) => {
                let why = format!(
                    "the lock arbiter answered {:?} to a renewal: {}",
                    reply.outcome,
                    reply.detail.unwrap_or_default()
                );
                fence.lose(&why);
                journal.note(&device, token, &LockNote::Lost(why));
                return;
            }
            Err(err) => {
                tracing::warn!(%device, token, "lock renewal failed, retrying until the deadline: {err}");
                next = Instant::now() + Duration::from_millis(500);
            }
        }
    }
}

/// What an arbiter guard holds: dropping it stops the renewals and releases the lock.
struct Held {
    requester: Arc<Requester>,
    fence: Fence,
    renewer: JoinHandle<()>,
    journal: LockJournal,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.renewer.abort();
        let (device, token) = (self.fence.device(), self.fence.token());
        // Sent even after a loss (max_hold): a stale release is ignored by the arbiter.
        self.requester.release(device, token);
        if !self.fence.is_lost() {
            self.fence.lose("released");
            self.journal.note(
                device,
                token,
                &LockNote::Released {
                    held: self.fence.acquired().elapsed(),
                },
            );
        }
    }
}
