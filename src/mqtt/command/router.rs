//! The request pipeline, in the order the checks run:
//!
//! 1. the response topic must lie below this agent's reply prefix (otherwise no reply is
//!    possible, and the request is logged and dropped);
//! 2. a redelivered request is answered from the [dedup cache](super::dedup);
//! 3. the command must exist, the payload must be a JSON object `{"args":…, "auth":…}`;
//! 4. the signature must verify with a configured admin key, inside its validity window (with
//!    the configured clock-skew tolerance); unsigned is accepted only for read-only
//!    invocations and only with `mqtt.allow_unsigned_reads`;
//! 5. the arguments must validate;
//! 6. a signed command's nonce and audit entry are stored durably (a used nonce is refused);
//! 7. the command runs, and its reply (or an error if it is too large for the broker) goes to
//!    the response topic with the request's correlation data.
//!
//! Requests are handled one at a time, in arrival order, in a task of their own, so a slow
//! command never stalls the MQTT event loop; when too many wait, the connection answers
//! `busy` at once.

use std::time::Duration;

use bytes::Bytes;
use rumqttc::v5::mqttbytes::QoS;
use serde_json::Value;
use tokio::sync::mpsc;

use super::args::Args;
use super::dedup::{DedupCache, RequestId, Seen};
use super::nonces::{self, ClaimError, NonceRecord};
use super::registry::{Caller, Registry};
use super::reply::{CommandError, ErrorCode, Reply};
use crate::audit::{AuditEntry, Operation};
use crate::lifecycle::StopSignal;
use crate::log_repeated;
use crate::mqtt::publisher::{Message, Publisher};
use crate::mqtt::signing::{canonical_json, nonce_is_well_formed, AdminKeys, Auth, Scope};
use crate::mqtt::topics::Topics;
use crate::ops::rate_limit::RepeatLimiter;
use crate::store::Store;

/// Longest validity window a signed command may ask for. It bounds how long nonces are kept.
pub const MAX_VALIDITY_S: i64 = 3600;
/// Replies remembered for duplicates at most.
const DEDUP_CAPACITY: usize = 1024;
/// How long a reply is remembered for duplicates.
const DEDUP_TTL: Duration = Duration::from_secs(600);
/// How often expired nonces are swept.
const NONCE_SWEEP_EVERY: Duration = Duration::from_secs(300);

/// A request as received from the broker.
#[derive(Clone, Debug)]
pub struct IncomingRequest {
    /// The request topic (names the command).
    pub topic: String,
    /// The JSON payload.
    pub payload: Bytes,
    /// MQTT 5 response topic.
    pub response_topic: Option<String>,
    /// MQTT 5 correlation data.
    pub correlation: Option<Bytes>,
}

/// Signature policy from `[mqtt]`.
#[derive(Clone, Debug)]
pub struct AuthPolicy {
    /// The admins' public keys.
    pub keys: AdminKeys,
    /// Whether read-only invocations may be unsigned.
    pub allow_unsigned_reads: bool,
    /// Tolerated clock difference on issued-at and expiry.
    pub clock_skew: Duration,
}

/// The reply message for `request`, if it named a usable response topic.
pub fn reply_message(
    topics: &Topics,
    request: &IncomingRequest,
    payload: Bytes,
) -> Option<Message> {
    let topic = request
        .response_topic
        .as_ref()
        .filter(|topic| topics.is_reply_topic(topic))?;
    Some(Message {
        topic: topic.clone(),
        payload,
        qos: QoS::AtLeastOnce,
        retain: false,
        correlation: request.correlation.clone(),
    })
}

/// Handles command requests one at a time.
pub struct Router {
    /// The command table (shared with the local control socket).
    pub registry: std::sync::Arc<Registry>,
    /// This agent's topics.
    pub topics: Topics,
    /// `agent.site`, covered by signatures.
    pub site: String,
    /// `agent.id`, covered by signatures.
    pub agent: String,
    /// Who may sign.
    pub policy: AuthPolicy,
    /// Where nonces and audit entries go.
    pub store: Store,
    /// Where replies go.
    pub publisher: Publisher,
}

impl Router {
    /// Serves requests until `stop` resolves.
    pub async fn run(self, mut requests: mpsc::Receiver<IncomingRequest>, mut stop: StopSignal) {
        let mut dedup = DedupCache::new(DEDUP_CAPACITY, DEDUP_TTL);
        // A flood of bad requests must not flood the log: each kind of refusal per topic is
        // logged once per window, then summarised.
        let mut refusals = RepeatLimiter::<String>::default();
        let mut sweep = tokio::time::interval(NONCE_SWEEP_EVERY);
        let mut drain = tokio::time::interval(crate::ops::rate_limit::DRAIN_EVERY);
        loop {
            tokio::select! {
                _ = stop.stopped() => return,
                Some(request) = requests.recv() => {
                    self.handle(&mut dedup, &mut refusals, request).await;
                }
                _ = sweep.tick() => self.sweep_nonces(),
                _ = drain.tick() => {
                    crate::ops::rate_limit::log_ended_windows(
                        &mut refusals,
                        std::time::Instant::now(),
                    );
                }
            }
        }
    }

    fn sweep_nonces(&self) {
        match nonces::sweep(&self.store, chrono::Utc::now().timestamp()) {
            Ok(0) => {}
            Ok(swept) => tracing::debug!(swept, "expired command nonces removed"),
            Err(err) => tracing::warn!("cannot sweep expired command nonces: {err}"),
        }
    }

    async fn handle(
        &self,
        dedup: &mut DedupCache,
        refusals: &mut RepeatLimiter<String>,
        request: IncomingRequest,
    ) {
        let answerable = request
            .response_topic
            .as_deref()
            .is_some_and(|topic| self.topics.is_reply_topic(topic));
        if !answerable {
            let key = format!("{} unanswerable", request.topic);
            log_repeated!(
                refusals,
                &key,
                tracing::Level::WARN,
                topic = %request.topic,
                response_topic = ?request.response_topic,
                "command request ignored: its response topic is missing or outside {}",
                self.topics.reply_prefix()
            );
            return;
        }
        let id = request.correlation.clone().map(|correlation| RequestId {
            response_topic: request.response_topic.clone().unwrap_or_default(),
            correlation,
        });
        if let Some(id) = &id {
            match dedup.check(id, &request.topic, &request.payload) {
                Seen::Answered(reply) => {
                    tracing::debug!(topic = %request.topic, "duplicate request answered from cache");
                    self.send(&request, reply);
                    return;
                }
                Seen::DifferentRequest => {
                    let reply = Reply::from_outcome(Err(CommandError::new(
                        ErrorCode::CorrelationReused,
                        "this correlation data was already used for a different request; use \
                         fresh correlation data for every request",
                    )));
                    self.send(&request, reply.to_bytes().into());
                    return;
                }
                Seen::New => {}
            }
        }
        let outcome = self.execute(&request).await;
        if let Err(error) = &outcome {
            let key = format!("{} {:?}", request.topic, error.code);
            log_repeated!(
                refusals,
                &key,
                tracing::Level::INFO,
                topic = %request.topic,
                code = ?error.code,
                "command refused: {error}"
            );
        }
        let reply = self.fit(&request, Reply::from_outcome(outcome));
        if let Some(id) = id {
            dedup.remember(id, &request.topic, &request.payload, reply.clone());
        }
        self.send(&request, reply);
    }

    /// The reply bytes, or a `too_large` error if they would not fit the broker's limit.
    fn fit(&self, request: &IncomingRequest, reply: Reply) -> Bytes {
        let bytes: Bytes = reply.to_bytes().into();
        let Some(message) = reply_message(&self.topics, request, bytes.clone()) else {
            return bytes;
        };
        match self.publisher.check_size(&message) {
            Ok(()) => bytes,
            Err(err) => Reply::from_outcome(Err(CommandError::new(
                ErrorCode::TooLarge,
                format!(
                    "the reply is too large to publish ({err}); ask for fewer lines or entries"
                ),
            )))
            .to_bytes()
            .into(),
        }
    }

    fn send(&self, request: &IncomingRequest, payload: Bytes) {
        if let Some(message) = reply_message(&self.topics, request, payload) {
            if let Err(err) = self.publisher.publish(message) {
                tracing::warn!(topic = %request.topic, "reply not sent ({err}); the requester may retry");
            }
        }
    }

    async fn execute(&self, request: &IncomingRequest) -> Result<Value, CommandError> {
        let name = self.topics.command_of(&request.topic).unwrap_or_default();
        let command = self.registry.lookup(&name)?;
        let (args, auth) = parse_body(&request.payload)?;
        let args = Args::new(args, "args", "")?;
        let signed = match auth {
            Some(auth) => Some(self.verify(&name, &args, auth)?),
            None if self.policy.allow_unsigned_reads && !command.changes_state(&args) => None,
            None => {
                return Err(CommandError::new(
                    ErrorCode::Unauthorised,
                    format!(
                        "{name:?} must be signed by an administrator key (edge-agent ctl --key \
                         …); nothing was done"
                    ),
                ))
            }
        };
        let caller = Caller {
            admin: signed.as_ref().map(|auth| auth.key.clone()),
            nonce: signed.as_ref().map(|auth| auth.nonce.clone()),
        };
        let canonical_args = canonical_json(&args.to_value());
        let action = command.prepare(args, &caller)?;
        if let Some(auth) = &signed {
            self.claim(&name, &canonical_args, auth).await?;
            tracing::info!(command = %name, admin = %auth.key, "signed command accepted");
        }
        action.await
    }

    fn verify(&self, name: &str, args: &Args, auth: Value) -> Result<Auth, CommandError> {
        let mut fields = Args::new(Some(auth), "auth", "auth.")?;
        let auth = Auth {
            key: fields.req_str("key")?,
            issued_at: fields.req_int("issued_at", 0, i64::MAX)?,
            expires_at: fields.req_int("expires_at", 0, i64::MAX)?,
            nonce: fields.req_str("nonce")?,
            signature: fields.req_str("signature")?,
        };
        fields.finish()?;
        if !nonce_is_well_formed(&auth.nonce) {
            return Err(CommandError::bad_argument(
                "auth.nonce",
                "must be 8 to 64 characters of letters, digits, '-' or '_'",
            ));
        }
        let args = args.to_value();
        let scope = Scope {
            site: &self.site,
            agent: &self.agent,
            command: name,
            args: &args,
        };
        self.policy.keys.verify(scope, &auth).map_err(|err| {
            CommandError::new(ErrorCode::Unauthorised, format!("{err}; nothing was done"))
        })?;
        let now = chrono::Utc::now().timestamp();
        let skew = self.policy.clock_skew.as_secs() as i64;
        if auth.expires_at <= auth.issued_at || auth.expires_at - auth.issued_at > MAX_VALIDITY_S {
            return Err(CommandError::new(
                ErrorCode::Unauthorised,
                format!(
                    "the signed validity window must be between 1 s and {MAX_VALIDITY_S} s; \
                     nothing was done"
                ),
            ));
        }
        // Checked: `expires_at` is the sender's number, anything up to i64::MAX.
        if now > auth.expires_at.saturating_add(skew) {
            return Err(CommandError::new(
                ErrorCode::Expired,
                format!(
                    "the command expired {} s ago (clock skew tolerance {skew} s); sign it again; \
                     nothing was done",
                    now - auth.expires_at
                ),
            ));
        }
        if auth.issued_at > now + skew {
            return Err(CommandError::new(
                ErrorCode::NotYetValid,
                format!(
                    "the command was signed {} s in the future (tolerance {skew} s); check the \
                     clocks of the signer and the agent; nothing was done",
                    auth.issued_at - now
                ),
            ));
        }
        Ok(auth)
    }

    async fn claim(
        &self,
        name: &str,
        canonical_args: &str,
        auth: &Auth,
    ) -> Result<(), CommandError> {
        let record = NonceRecord {
            keep_until_unix_s: auth
                .expires_at
                .saturating_add(self.policy.clock_skew.as_secs() as i64),
            key: auth.key.clone(),
        };
        let entry = AuditEntry {
            at_unix_ms: chrono::Utc::now().timestamp_millis(),
            operation: Operation::AdminCommand,
            device_id: None,
            device_user_id: None,
            actor: auth.key.clone(),
            detail: format!("{name} {canonical_args}"),
        };
        nonces::claim(&self.store, &auth.nonce, auth.issued_at, &record, &entry)
            .await
            .map_err(|err| match err {
                ClaimError::Replayed => CommandError::new(
                    ErrorCode::Replayed,
                    "this signed command was already received (its nonce was used); sign a new \
                     one; nothing was done",
                ),
                ClaimError::SignedBeforeSalvage { salvaged_at_ms } => CommandError::new(
                    ErrorCode::Replayed,
                    format!(
                        "this command was signed before the store was salvaged (at {}), which \
                         lost the record of the commands already run, so it may have run \
                         before; sign a new one; nothing was done",
                        chrono::DateTime::from_timestamp_millis(salvaged_at_ms)
                            .map(|at| at.to_rfc3339())
                            .unwrap_or_else(|| salvaged_at_ms.to_string())
                    ),
                ),
                ClaimError::Store(err) => CommandError::failed(format!(
                    "the command was not run because it could not be recorded: {err}"
                )),
            })
    }
}

/// Splits a request payload into its `args` and `auth` values. Public so the `mqtt_command` fuzz
/// target feeds it what a broker could deliver.
pub fn parse_body(payload: &[u8]) -> Result<(Option<Value>, Option<Value>), CommandError> {
    let malformed = |what: String| {
        CommandError::new(
            ErrorCode::MalformedRequest,
            format!("{what}; a request is a JSON object {{\"args\": {{…}}, \"auth\": {{…}}}}"),
        )
    };
    let body: Value = serde_json::from_slice(payload)
        .map_err(|err| malformed(format!("the request is not valid JSON ({err})")))?;
    let Value::Object(mut body) = body else {
        return Err(malformed("the request is not a JSON object".into()));
    };
    let args = body.remove("args");
    let auth = body.remove("auth");
    if let Some(unknown) = body.keys().next() {
        return Err(malformed(format!("unknown request field {unknown:?}")));
    }
    Ok((args, auth.filter(|auth| !auth.is_null())))
}
