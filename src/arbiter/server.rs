//! The lock arbiter (`edge-agent arbiter --config FILE`): the one writer of truth about which
//! agent of a site may talk to which device.
//!
//! It serialises every request through one [`Table`] on its own monotonic clock, makes each
//! new token durable (a flushed sled database of its own, `<agent.data_dir>/arbiter`) before it
//! sends the grant, deduplicates requests by (holder, correlation data), answers only on the
//! holder's own reply topic, and logs one audit line per acquire, renew, release and expiry.
//! MQTT is only the transport: nothing is inferred from retained messages or wills.

use super::table::{Decision, Happened, Persisted, Table};
use super::wire::{LockReply, LockRequest, LockTopics, Op, Outcome};
use crate::config::Config;
use crate::mqtt::broker::BrokerSettings;
use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use thiserror::Error;

/// How long a (holder, correlation) pair is remembered: longer than any request's expiry.
const DEDUP_FOR: Duration = Duration::from_secs(60);
/// How often expiries are looked for when no request comes.
const TICK: Duration = Duration::from_millis(250);
/// Key of the last token granted, in the arbiter's database.
const LAST_TOKEN: &[u8] = b"last_token";

/// Why the arbiter stopped.
#[derive(Debug, Error)]
pub enum ArbiterError {
    /// Its store cannot be opened or written: no grant can be made durable, so none is made.
    #[error("lock arbiter store {path}: {reason}")]
    Store {
        /// The store directory.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The broker settings cannot be used.
    #[error(transparent)]
    Broker(#[from] crate::mqtt::broker::BrokerError),
}

/// The arbiter's durable part: the last token and each device's last grant.
pub struct ArbiterStore {
    path: PathBuf,
    db: sled::Db,
    locks: sled::Tree,
}

impl ArbiterStore {
    /// Opens (creating) the store in `dir`.
    pub fn open(dir: &Path) -> Result<ArbiterStore, ArbiterError> {
        let bad = |err: sled::Error| ArbiterError::Store {
            path: dir.to_path_buf(),
            reason: err.to_string(),
        };
        let db = sled::open(dir).map_err(bad)?;
        let locks = db.open_tree("locks").map_err(bad)?;
        Ok(ArbiterStore {
            path: dir.to_path_buf(),
            db,
            locks,
        })
    }

    fn fail(&self, reason: impl ToString) -> ArbiterError {
        ArbiterError::Store {
            path: self.path.clone(),
            reason: reason.to_string(),
        }
    }

    /// The table as persisted, restored at `now` (see [`Table::restore`]).
    pub fn load(&self, lock_delay_ms: u64, now: u64) -> Result<Table, ArbiterError> {
        let last = match self.db.get(LAST_TOKEN).map_err(|e| self.fail(e))? {
            Some(bytes) => u64::from_be_bytes(
                bytes
                    .as_ref()
                    .try_into()
                    .map_err(|_| self.fail("last_token is not 8 bytes"))?,
            ),
            None => 0,
        };
        let mut persisted = Vec::new();
        for entry in self.locks.iter() {
            let (key, value) = entry.map_err(|e| self.fail(e))?;
            let device = String::from_utf8_lossy(&key).into_owned();
            let record: Persisted = serde_json::from_slice(&value)
                .map_err(|e| self.fail(format!("lock record of {device}: {e}")))?;
            persisted.push((device, record));
        }
        Ok(Table::restore(lock_delay_ms, last, persisted, now))
    }

    /// Writes `record` and the last token, and flushes: after this returns the token can never
    /// be granted again, whatever happens to the process or the machine.
    pub fn persist(
        &self,
        device: &str,
        record: &Persisted,
        last_token: u64,
    ) -> Result<(), ArbiterError> {
        let value = serde_json::to_vec(record).map_err(|e| self.fail(e))?;
        self.locks
            .insert(device.as_bytes(), value)
            .map_err(|e| self.fail(e))?;
        self.db
            .insert(LAST_TOKEN, &last_token.to_be_bytes())
            .map_err(|e| self.fail(e))?;
        self.db.flush().map_err(|e| self.fail(e))?;
        Ok(())
    }
}

/// The arbiter: its table, store, clock and duplicate cache.
pub struct Arbiter {
    table: Table,
    store: ArbiterStore,
    started: Instant,
    seen: HashMap<(String, Bytes), (Instant, LockReply)>,
}

impl Arbiter {
    /// The arbiter over `store`, with `lock_delay` after every expiry.
    pub fn new(store: ArbiterStore, lock_delay: Duration) -> Result<Arbiter, ArbiterError> {
        let started = Instant::now();
        let table = store.load(lock_delay.as_millis() as u64, 0)?;
        for view in table.views(0) {
            if let Some(holder) = &view.holder {
                tracing::info!(
                    device = %view.device,
                    holder = %holder,
                    token = view.token,
                    "lock held before the restart: honoured for its full lease and the lock-delay"
                );
            }
        }
        Ok(Arbiter {
            table,
            store,
            started,
            seen: HashMap::new(),
        })
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Answers one request (`correlation` identifies it for deduplication), persisting before
    /// any grant. An error means nothing was granted and the arbiter must stop.
    pub fn handle(
        &mut self,
        request: &LockRequest,
        correlation: &Bytes,
    ) -> Result<LockReply, ArbiterError> {
        let key = (request.holder.clone(), correlation.clone());
        if let Some((_, reply)) = self.seen.get(&key) {
            tracing::debug!(holder = %request.holder, "duplicate request: the same answer again");
            return Ok(reply.clone());
        }
        let now = self.now_ms();
        let Decision {
            reply,
            persist,
            happened,
        } = self.table.decide(request, now);
        if let Some((device, record)) = &persist {
            self.store
                .persist(device, record, self.table.last_token())?;
        }
        happened.iter().for_each(audit);
        if request.op != Op::List {
            self.seen.insert(key, (Instant::now(), reply.clone()));
        }
        Ok(reply)
    }

    /// Ends the leases that ran out and forgets old duplicates; called between requests.
    pub fn tick(&mut self) {
        let now = self.now_ms();
        self.table.expire(now).iter().for_each(audit);
        self.seen.retain(|_, (at, _)| at.elapsed() < DEDUP_FOR);
    }
}

/// One audit line per thing that happened to a lock, with device, holder and token.
fn audit(happened: &Happened) {
    match happened {
        Happened::Acquired {
            device,
            holder,
            token,
        } => tracing::info!(%device, %holder, token, "lock acquired"),
        Happened::Renewed {
            device,
            holder,
            token,
        } => tracing::debug!(%device, %holder, token, "lock renewed"),
        Happened::Released {
            device,
            holder,
            token,
        } => tracing::info!(%device, %holder, token, "lock released"),
        Happened::Lost {
            device,
            holder,
            token,
        } => tracing::warn!(
            %device, %holder, token,
            "lock lost: its lease ran out without a renewal; free again after the lock-delay"
        ),
    }
}

/// Runs the arbiter of `config`'s site until `stop` resolves.
pub async fn serve(
    config: &Config,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), ArbiterError> {
    let dir = config.agent.data_dir.join("arbiter");
    std::fs::create_dir_all(&dir).map_err(|err| ArbiterError::Store {
        path: dir.clone(),
        reason: err.to_string(),
    })?;
    let mut arbiter = Arbiter::new(ArbiterStore::open(&dir)?, config.lock.lock_delay.get())?;
    let topics = LockTopics::new(&config.agent.site);
    let mut settings =
        BrokerSettings::from_config(&config.mqtt, &config.agent.site, &config.agent.id)?;
    settings.client_id = format!("{}-arbiter", settings.client_id);
    let (client, mut eventloop) = AsyncClient::new(settings.mqtt_options()?, 64);
    tracing::info!(
        store = %dir.display(),
        last_token = arbiter.table.last_token(),
        request_topic = %topics.request(),
        "lock arbiter started"
    );
    let mut tick = tokio::time::interval(TICK);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            _ = tick.tick() => arbiter.tick(),
            event = eventloop.poll() => match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    tracing::info!("lock arbiter connected to the broker");
                    let _ = client.subscribe(topics.request(), QoS::AtLeastOnce).await;
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    if let Some((topic, reply, correlation)) =
                        answer(&mut arbiter, &topics, &publish)?
                    {
                        let properties = PublishProperties {
                            correlation_data: Some(correlation),
                            content_type: Some("application/json".into()),
                            ..PublishProperties::default()
                        };
                        let payload = serde_json::to_vec(&reply).unwrap_or_default();
                        if let Err(err) = client
                            .publish_with_properties(topic, QoS::AtLeastOnce, false, payload, properties)
                            .await
                        {
                            tracing::warn!(%err, "cannot queue a lock reply");
                        }
                    }
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(%err, "lock arbiter: broker unreachable; no lock is granted until it is back");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
    let _ = client.disconnect().await;
    Ok(())
}

/// The reply to one incoming publish, with where it goes; `None` for what is not a valid
/// request (logged).
fn answer(
    arbiter: &mut Arbiter,
    topics: &LockTopics,
    publish: &rumqttc::v5::mqttbytes::v5::Publish,
) -> Result<Option<(String, LockReply, Bytes)>, ArbiterError> {
    let properties = publish.properties.clone().unwrap_or_default();
    let (Some(response), Some(correlation)) =
        (properties.response_topic, properties.correlation_data)
    else {
        tracing::warn!("lock request without a response topic or correlation data: ignored");
        return Ok(None);
    };
    let request: LockRequest = match serde_json::from_slice(&publish.payload) {
        Ok(request) => request,
        Err(err) => {
            tracing::warn!(%err, "unreadable lock request: refused");
            let mut reply = LockReply::new(Outcome::Refused, None);
            reply.detail = Some(format!("unreadable request: {err}"));
            return Ok(Some((response, reply, correlation)));
        }
    };
    if response != topics.reply(&request.holder) {
        tracing::warn!(
            holder = %request.holder,
            %response,
            "lock request whose response topic is not its holder's reply topic: ignored"
        );
        return Ok(None);
    }
    let reply = arbiter.handle(&request, &correlation)?;
    Ok(Some((response, reply, correlation)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arbiter::wire::LeaseTerms;

    fn acquire(holder: &str) -> LockRequest {
        LockRequest {
            op: Op::Acquire,
            holder: holder.into(),
            terms: LeaseTerms {
                device: Some("door".into()),
                token: None,
                lease_ms: Some(10_000),
            },
        }
    }

    #[test]
    fn tokens_survive_a_restart_and_duplicates_get_the_same_answer() {
        let dir = tempfile::tempdir().unwrap();
        let mut arbiter =
            Arbiter::new(ArbiterStore::open(dir.path()).unwrap(), Duration::ZERO).unwrap();
        let first = arbiter
            .handle(&acquire("a"), &Bytes::from_static(b"1"))
            .unwrap();
        assert_eq!(first.terms.token, Some(1));
        let again = arbiter
            .handle(&acquire("a"), &Bytes::from_static(b"1"))
            .unwrap();
        assert_eq!(again, first);
        drop(arbiter);
        let mut arbiter =
            Arbiter::new(ArbiterStore::open(dir.path()).unwrap(), Duration::ZERO).unwrap();
        let busy = arbiter
            .handle(&acquire("b"), &Bytes::from_static(b"2"))
            .unwrap();
        assert_eq!(
            busy.outcome,
            Outcome::Busy,
            "the persisted lease is honoured"
        );
        let mut other = acquire("b");
        other.terms.device = Some("gate".into());
        let next = arbiter.handle(&other, &Bytes::from_static(b"3")).unwrap();
        assert_eq!(
            next.terms.token,
            Some(2),
            "tokens keep increasing after a restart"
        );
    }
}
