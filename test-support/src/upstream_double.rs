//! The upstream test double: a real HTTP server on loopback that enforces the contract in
//! `docs/upstream-api.yaml` and fails on request.
//!
//! It checks the bearer token, the request schema (strictly: unknown fields are contract
//! violations), idempotency (counting, per key, how often an event was *delivered* and how
//! often it was *applied*; a key re-used for a different event is a violation) and fencing
//! (a token lower than one already applied for the device is rejected). It also counts
//! *facts*, independently of keys: a user change is the fact (device, user, type, store
//! epoch, read generation), so the same fact applied under two keys counts twice, and every
//! key seen with two different payloads is listed. Faults are injected
//! per request: outage (503), chosen statuses, 429 with `Retry-After`, slow replies after
//! applying, connections dropped after applying, permanent rejection of chosen keys, and
//! whole-batch refusal of batches holding a chosen key.
//!
//! It is written independently of the agent's wire types, so a mistake in those is caught
//! here rather than mirrored.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// The event types the contract defines.
const TYPES: [&str; 13] = [
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
    "esl_pushed",
    "esl_drift",
    "esl_failed",
];

/// One event as the contract defines it; anything else is a violation.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct InEvent {
    key: String,
    agent_id: String,
    device_id: String,
    occurred_at: String,
    clock_synchronized: bool,
    fencing_token: u64,
    #[serde(rename = "type")]
    kind: String,
    data: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InBatch {
    events: Vec<InEvent>,
}

/// One request as the double saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// When it arrived.
    pub at: Instant,
    /// `events`, `mappings`, `persons` or `esl_articles`.
    pub endpoint: &'static str,
    /// Events in the batch (0 for other endpoints or unreadable bodies).
    pub events: usize,
    /// The status answered (or 0 for a dropped connection).
    pub status: u16,
}

/// What the double has been told to do wrong.
#[derive(Debug, Default)]
struct Faults {
    outage: bool,
    statuses: VecDeque<u16>,
    throttles: VecDeque<u64>,
    slow: VecDeque<Duration>,
    pads: VecDeque<usize>,
    drops: u32,
    reject_keys: HashMap<String, String>,
    refuse_batches_with: HashSet<String>,
    persons_unavailable: u32,
}

/// What the double has recorded.
#[derive(Debug, Default)]
struct Ledger {
    deliveries: HashMap<String, u32>,
    facts: HashMap<Fact, u32>,
    two_payloads: Vec<String>,
    applications: HashMap<String, u32>,
    applied: HashMap<String, InEventKey>,
    applied_order: Vec<String>,
    /// Per key, the `clock_synchronized` flag of its latest delivery, with its type.
    clock_flags: HashMap<String, (String, bool)>,
    fences: HashMap<String, u64>,
    requests: Vec<Seen>,
    violations: Vec<String>,
    mappings: Vec<Value>,
    persons: HashMap<String, Value>,
    esl_articles: Vec<Value>,
}

/// One user change as a fact: what happened to whom, observed by which read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fact {
    /// `device_id` of the event.
    pub device: String,
    /// The device user's id, from the event's data.
    pub user: String,
    /// The event type (`user_discovered`, `user_missing`, …).
    pub kind: String,
    /// The store epoch (second-to-last key component).
    pub epoch: String,
    /// The read generation (last key component).
    pub generation: u64,
}

impl Fact {
    /// The fact an event states, for the user-change types; `None` for the others.
    fn of(event: &InEvent) -> Option<Fact> {
        const USER_CHANGES: [&str; 5] = [
            "user_discovered",
            "user_changed",
            "user_missing",
            "user_reappeared",
            "conflict_detected",
        ];
        if !USER_CHANGES.contains(&event.kind.as_str()) {
            return None;
        }
        let data = &event.data;
        let user = ["user", "after", "device"]
            .iter()
            .find_map(|nested| data.get(*nested).and_then(|inner| inner.get("user_id")))
            .or_else(|| data.get("user_id"))?
            .as_str()?
            .to_string();
        let mut parts = event.key.rsplit('/');
        let generation = parts.next()?.parse().ok()?;
        let epoch = parts.next()?.to_string();
        Some(Fact {
            device: event.device_id.clone(),
            user,
            kind: event.kind.clone(),
            epoch,
            generation,
        })
    }
}

/// The parts of an applied event a retry must repeat exactly.
type InEventKey = (String, String, String, u64, String, Map<String, Value>);

struct Shared {
    token: String,
    faults: Mutex<Faults>,
    ledger: Mutex<Ledger>,
}

/// A running double. Dropping it stops the server.
pub struct UpstreamDouble {
    addr: SocketAddr,
    shared: Arc<Shared>,
    scheme: &'static str,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for UpstreamDouble {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl UpstreamDouble {
    /// Starts on a free loopback port over plain HTTP, accepting `token`. Needs a running
    /// tokio runtime.
    pub async fn start(token: &str) -> UpstreamDouble {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local address");
        let shared = Shared::new(token);
        let app = router(&shared);
        let server = tokio::spawn(async move {
            let listener = KillableListener(listener);
            let _ = axum::serve(listener, app.into_make_service_with_connect_info::<Conn>()).await;
        });
        UpstreamDouble {
            addr,
            shared,
            scheme: "http",
            server,
        }
    }

    /// Starts on a free loopback port over HTTPS with `tls` (dropped-connection faults are
    /// not available there). The URL names `localhost`, so certificates are checked by name.
    pub async fn start_tls(token: &str, tls: rustls::ServerConfig) -> UpstreamDouble {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local address");
        let shared = Shared::new(token);
        let app = router(&shared);
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let server = tokio::spawn(async move {
            let listener = TlsListener { listener, acceptor };
            let _ = axum::serve(listener, app.into_make_service_with_connect_info::<Conn>()).await;
        });
        UpstreamDouble {
            addr,
            shared,
            scheme: "https",
            server,
        }
    }

    /// The base URL the agent is configured with.
    pub fn url(&self) -> String {
        match self.scheme {
            "https" => format!("https://localhost:{}/v1", self.addr.port()),
            _ => format!("http://{}/v1", self.addr),
        }
    }

    // ---- fault injection ----

    /// While on, every `POST /events` answers 503.
    pub fn set_outage(&self, on: bool) {
        self.faults().outage = on;
    }
    /// The next `POST /events` requests answer these statuses, one each, without applying.
    pub fn answer_next(&self, statuses: &[u16]) {
        self.faults().statuses.extend(statuses);
    }
    /// The next `count` batches are applied, then answered with their (valid) JSON result
    /// padded with whitespace to `bytes`: an upstream, or something in front of it, sending a
    /// body larger than the agent reads.
    pub fn pad_next(&self, count: usize, bytes: usize) {
        self.faults().pads.extend(std::iter::repeat_n(bytes, count));
    }
    /// The next `count` requests answer 429 with `Retry-After: seconds`.
    pub fn throttle_next(&self, count: usize, seconds: u64) {
        self.faults()
            .throttles
            .extend(std::iter::repeat_n(seconds, count));
    }
    /// The next `count` batches are applied, then answered only after `delay`.
    pub fn slow_next(&self, count: usize, delay: Duration) {
        self.faults().slow.extend(std::iter::repeat_n(delay, count));
    }
    /// The next `count` batches are applied, then the connection is dropped unanswered.
    pub fn drop_next(&self, count: u32) {
        self.faults().drops += count;
    }
    /// The event with `key` is always rejected with `reason` (never applied).
    pub fn reject_key(&self, key: &str, reason: &str) {
        self.faults()
            .reject_keys
            .insert(key.to_string(), reason.to_string());
    }
    /// Stops rejecting `key` (the operator fixed the cause upstream).
    pub fn accept_key(&self, key: &str) {
        self.faults().reject_keys.remove(key);
    }
    /// Any batch holding `key` is refused as a whole with 422 (one bad apple).
    pub fn refuse_batches_with(&self, key: &str) {
        self.faults().refuse_batches_with.insert(key.to_string());
    }

    /// Stops refusing batches that hold `key`.
    pub fn accept_batches_with(&self, key: &str) {
        self.faults().refuse_batches_with.remove(key);
    }

    // ---- upstream data ----

    /// Adds a mapping change to the feed.
    pub fn add_mapping(&self, device_id: &str, user_id: &str, person: Value, removed: bool) {
        self.ledger().mappings.push(json!({
            "device_id": device_id, "user_id": user_id, "person": person, "removed": removed
        }));
    }
    /// Appends a desired shelf-label article change to the `GET /esl/articles` feed.
    pub fn add_esl_article(&self, article: Value) {
        self.ledger().esl_articles.push(article);
    }
    /// The next `count` `GET /persons/{id}` requests answer 503.
    pub fn persons_unavailable_next(&self, count: u32) {
        self.faults().persons_unavailable += count;
    }
    /// Adds a person `GET /persons/{id}` finds.
    pub fn add_person(&self, person: Value) {
        let id = person["person_id"].as_str().expect("person_id").to_string();
        self.ledger().persons.insert(id, person);
    }

    // ---- what happened ----

    /// Times the event with `key` arrived.
    pub fn deliveries(&self, key: &str) -> u32 {
        self.ledger().deliveries.get(key).copied().unwrap_or(0)
    }
    /// Times the event with `key` was applied (the contract allows at most one).
    pub fn applications(&self, key: &str) -> u32 {
        self.ledger().applications.get(key).copied().unwrap_or(0)
    }
    /// Every delivered key with its event type and whether the agent's clock was synchronised
    /// when it stamped the event (`clock_synchronized`, latest delivery).
    pub fn clock_flags(&self) -> HashMap<String, (String, bool)> {
        self.ledger().clock_flags.clone()
    }
    /// Every applied key with its application count.
    pub fn application_counts(&self) -> HashMap<String, u32> {
        self.ledger().applications.clone()
    }
    /// Total deliveries of all keys.
    pub fn total_deliveries(&self) -> u64 {
        self.ledger()
            .deliveries
            .values()
            .map(|n| u64::from(*n))
            .sum()
    }
    /// Keys in the order they were applied.
    pub fn applied_order(&self) -> Vec<String> {
        self.ledger().applied_order.clone()
    }
    /// What the upstream now believes about each device user, folded from the applied user
    /// events in the order they were applied: `Some(name)` present, `None` missing. Keyed by
    /// (device id, user id). A site test compares it with the agent's buffer and the
    /// terminals' own truth.
    pub fn user_states(&self) -> BTreeMap<(String, String), Option<String>> {
        let ledger = self.ledger();
        let mut states = BTreeMap::new();
        for key in &ledger.applied_order {
            let Some((_, device, _, _, kind, data)) = ledger.applied.get(key) else {
                continue;
            };
            let (user, present) = match kind.as_str() {
                "user_discovered" => (Some(data), true),
                "user_changed" => (data.get("after").and_then(Value::as_object), true),
                "user_reappeared" => (data.get("user").and_then(Value::as_object), true),
                "user_missing" => (data.get("user").and_then(Value::as_object), false),
                _ => continue,
            };
            let Some(user) = user else { continue };
            let Some(id) = user.get("user_id").and_then(Value::as_str) else {
                continue;
            };
            let name = user.get("name").and_then(Value::as_str).map(str::to_string);
            states.insert(
                (device.clone(), id.to_string()),
                if present { name } else { None },
            );
        }
        states
    }
    /// How many events of type `kind` were applied.
    pub fn applied_of_kind(&self, kind: &str) -> usize {
        self.ledger()
            .applied
            .values()
            .filter(|(_, _, _, _, applied, _)| applied == kind)
            .count()
    }
    /// Every request seen.
    pub fn requests(&self) -> Vec<Seen> {
        self.ledger().requests.clone()
    }
    /// Every `POST /events` request seen.
    pub fn event_requests(&self) -> Vec<Seen> {
        let ledger = self.ledger();
        ledger
            .requests
            .iter()
            .filter(|seen| seen.endpoint == "events")
            .cloned()
            .collect()
    }
    /// Every applied user-change fact with how often it was applied (the contract's promise
    /// is once).
    pub fn fact_counts(&self) -> HashMap<Fact, u32> {
        self.ledger().facts.clone()
    }
    /// Keys that arrived with a payload other than the one applied under them, once per
    /// such arrival (should stay empty: a key names one event forever).
    pub fn keys_with_two_payloads(&self) -> Vec<String> {
        self.ledger().two_payloads.clone()
    }
    /// Contract violations by the client (should stay empty).
    pub fn violations(&self) -> Vec<String> {
        self.ledger().violations.clone()
    }

    fn faults(&self) -> MutexGuard<'_, Faults> {
        self.shared.faults.lock().unwrap()
    }
    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.shared.ledger.lock().unwrap()
    }
}

/// The per-request fault decided before touching the ledger.
enum Before {
    Answer(StatusCode, HeaderMap, String),
    Proceed,
}

async fn post_events(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at = Instant::now();
    if let Some(refusal) = authorized(&shared, &headers, at, "events") {
        return refusal;
    }
    if let Before::Answer(status, headers, text) = shared.before_events() {
        shared.record(at, "events", 0, status.as_u16());
        return (status, headers, text).into_response();
    }
    let batch: InBatch = match serde_json::from_slice(&body) {
        Ok(batch) => batch,
        Err(error) => {
            let reason = format!("body does not match the contract: {error}");
            shared
                .ledger
                .lock()
                .unwrap()
                .violations
                .push(reason.clone());
            shared.record(at, "events", 0, 400);
            return (StatusCode::BAD_REQUEST, reason).into_response();
        }
    };
    let events = batch.events.len();
    {
        let faults = shared.faults.lock().unwrap();
        if batch
            .events
            .iter()
            .any(|event| faults.refuse_batches_with.contains(&event.key))
        {
            drop(faults);
            shared.record(at, "events", events, 422);
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                "batch holds an unacceptable event",
            )
                .into_response();
        }
    }
    let results = shared.apply(batch.events);
    let (slow, drop_it, pad) = {
        let mut faults = shared.faults.lock().unwrap();
        let slow = faults.slow.pop_front();
        let pad = faults.pads.pop_front();
        let drop_it = faults.drops > 0;
        if drop_it {
            faults.drops -= 1;
        }
        (slow, drop_it, pad)
    };
    if let Some(delay) = slow {
        tokio::time::sleep(delay).await;
    }
    if drop_it {
        conn.kill();
        shared.record(at, "events", events, 0);
    } else {
        shared.record(at, "events", events, 200);
    }
    if let Some(bytes) = pad {
        let mut body = json!({ "results": results }).to_string();
        body.extend(std::iter::repeat_n(' ', bytes.saturating_sub(body.len())));
        return ([(CONTENT_TYPE, "application/json")], body).into_response();
    }
    Json(json!({ "results": results })).into_response()
}

#[derive(Deserialize)]
struct MappingQuery {
    agent_id: String,
    cursor: String,
    limit: usize,
}

/// A cursor-paged list the double serves: its name (in the request log), the reply field
/// holding its items, and where the ledger keeps them.
struct PagedList {
    endpoint: &'static str,
    field: &'static str,
    items: fn(&Ledger) -> &Vec<Value>,
}

/// `GET /v1/mappings`.
const MAPPINGS: PagedList = PagedList {
    endpoint: "mappings",
    field: "mappings",
    items: |ledger| &ledger.mappings,
};

/// `GET /v1/esl/articles`.
const ESL_ARTICLES: PagedList = PagedList {
    endpoint: "esl_articles",
    field: "articles",
    items: |ledger| &ledger.esl_articles,
};

/// The route of one paged list.
fn paged_route(list: &'static PagedList) -> MethodRouter<Arc<Shared>> {
    get(
        move |State(shared): State<Arc<Shared>>,
              headers: HeaderMap,
              Query(query): Query<MappingQuery>| async move {
            paged(&shared, &headers, &query, list)
        },
    )
}

/// One page of a cursor-paged list: every list is checked, paged and answered the same way,
/// and recorded under its endpoint name.
fn paged(shared: &Shared, headers: &HeaderMap, query: &MappingQuery, list: &PagedList) -> Response {
    let endpoint = list.endpoint;
    let at = Instant::now();
    if let Some(refusal) = authorized(shared, headers, at, endpoint) {
        return refusal;
    }
    if query.agent_id.is_empty() || query.limit == 0 {
        shared.record(at, endpoint, 0, 400);
        return (StatusCode::BAD_REQUEST, "agent_id and limit are required").into_response();
    }
    let start: usize = if query.cursor.is_empty() {
        0
    } else {
        match query.cursor.parse() {
            Ok(position) => position,
            Err(_) => {
                shared.record(at, endpoint, 0, 400);
                return (StatusCode::BAD_REQUEST, "unknown cursor").into_response();
            }
        }
    };
    let page = {
        let ledger = shared.ledger.lock().unwrap();
        let items = (list.items)(&ledger);
        let end = (start + query.limit).min(items.len()).max(start);
        json!({
            (list.field): items.get(start..end).unwrap_or_default(),
            "next_cursor": end.to_string(),
            "has_more": end < items.len(),
        })
    };
    shared.record(at, endpoint, 0, 200);
    Json(page).into_response()
}

async fn get_person(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let at = Instant::now();
    if let Some(refusal) = authorized(&shared, &headers, at, "persons") {
        return refusal;
    }
    {
        let mut faults = shared.faults.lock().unwrap();
        if faults.persons_unavailable > 0 {
            faults.persons_unavailable -= 1;
            drop(faults);
            shared.record(at, "persons", 0, 503);
            return (StatusCode::SERVICE_UNAVAILABLE, "persons unavailable").into_response();
        }
    }
    let person = shared.ledger.lock().unwrap().persons.get(&id).cloned();
    match person {
        Some(person) => {
            shared.record(at, "persons", 0, 200);
            Json(person).into_response()
        }
        None => {
            shared.record(at, "persons", 0, 404);
            (StatusCode::NOT_FOUND, "no such person").into_response()
        }
    }
}

/// `Some(401)` (recorded under `endpoint`) unless the request carries the double's bearer
/// token: the one preamble of every endpoint.
fn authorized(
    shared: &Shared,
    headers: &HeaderMap,
    at: Instant,
    endpoint: &'static str,
) -> Option<Response> {
    let expected = format!("Bearer {}", shared.token);
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    if given == Some(expected.as_str()) {
        return None;
    }
    shared.record(at, endpoint, 0, 401);
    Some((StatusCode::UNAUTHORIZED, "missing or wrong bearer token").into_response())
}

fn router(shared: &Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/events", post(post_events))
        .route("/v1/mappings", paged_route(&MAPPINGS))
        .route("/v1/persons/{id}", get(get_person))
        .route("/v1/esl/articles", paged_route(&ESL_ARTICLES))
        .with_state(Arc::clone(shared))
}

impl Shared {
    fn new(token: &str) -> Arc<Shared> {
        Arc::new(Shared {
            token: token.to_string(),
            faults: Mutex::default(),
            ledger: Mutex::default(),
        })
    }

    fn record(&self, at: Instant, endpoint: &'static str, events: usize, status: u16) {
        self.ledger.lock().unwrap().requests.push(Seen {
            at,
            endpoint,
            events,
            status,
        });
    }

    fn before_events(&self) -> Before {
        let mut faults = self.faults.lock().unwrap();
        if faults.outage {
            return Before::Answer(
                StatusCode::SERVICE_UNAVAILABLE,
                HeaderMap::new(),
                "outage".into(),
            );
        }
        if let Some(status) = faults.statuses.pop_front() {
            let status = StatusCode::from_u16(status).expect("valid status");
            return Before::Answer(status, HeaderMap::new(), "injected".into());
        }
        if let Some(seconds) = faults.throttles.pop_front() {
            let mut headers = HeaderMap::new();
            headers.insert("retry-after", seconds.to_string().parse().unwrap());
            return Before::Answer(StatusCode::TOO_MANY_REQUESTS, headers, "slow down".into());
        }
        Before::Proceed
    }

    /// Applies a batch in order, returning one result per event.
    fn apply(&self, events: Vec<InEvent>) -> Vec<Value> {
        let reject_keys = self.faults.lock().unwrap().reject_keys.clone();
        let mut ledger = self.ledger.lock().unwrap();
        events
            .into_iter()
            .map(|event| {
                let key = event.key.clone();
                *ledger.deliveries.entry(key.clone()).or_default() += 1;
                ledger
                    .clock_flags
                    .insert(key.clone(), (event.kind.clone(), event.clock_synchronized));
                let outcome = match ledger.judge(&event, &reject_keys) {
                    Ok(true) => {
                        let fence = ledger.fences.entry(event.device_id.clone()).or_default();
                        *fence = (*fence).max(event.fencing_token);
                        *ledger.applications.entry(key.clone()).or_default() += 1;
                        if let Some(fact) = Fact::of(&event) {
                            *ledger.facts.entry(fact).or_default() += 1;
                        }
                        ledger.applied_order.push(key.clone());
                        ledger.applied.insert(key.clone(), identity(event));
                        json!({"status": "accepted"})
                    }
                    Ok(false) => json!({"status": "duplicate"}),
                    Err(reason) => json!({"status": "rejected", "reason": reason}),
                };
                let mut result = outcome;
                result["key"] = Value::String(key);
                result
            })
            .collect()
    }
}

impl Ledger {
    /// `Ok(true)`: apply; `Ok(false)`: duplicate; `Err`: reject with the reason.
    fn judge(
        &mut self,
        event: &InEvent,
        reject_keys: &HashMap<String, String>,
    ) -> Result<bool, String> {
        if event.key.is_empty() || event.agent_id.is_empty() {
            self.violations
                .push(format!("event without key or agent: {event:?}"));
            return Err("key and agent_id are required".into());
        }
        if !TYPES.contains(&event.kind.as_str()) {
            self.violations
                .push(format!("unknown type {:?}", event.kind));
            return Err(format!("unknown type {:?}", event.kind));
        }
        if chrono::DateTime::parse_from_rfc3339(&event.occurred_at).is_err() {
            self.violations.push(format!(
                "occurred_at {:?} is not RFC 3339",
                event.occurred_at
            ));
            return Err("occurred_at must be RFC 3339".into());
        }
        if let Some(reason) = reject_keys.get(&event.key) {
            return Err(reason.clone());
        }
        if let Some(applied) = self.applied.get(&event.key) {
            if *applied != identity_ref(event) {
                self.violations
                    .push(format!("key {} re-used for a different event", event.key));
                self.two_payloads.push(event.key.clone());
                return Err("idempotency key re-used for a different event".into());
            }
            return Ok(false);
        }
        // Token 0: observed outside a lock session (a pushed punch, no arbiter): never stale.
        let fence = self.fences.get(&event.device_id).copied().unwrap_or(0);
        if event.fencing_token != 0 && event.fencing_token < fence {
            return Err(format!(
                "stale fencing token {} for device {} (already saw {fence})",
                event.fencing_token, event.device_id
            ));
        }
        Ok(true)
    }
}

fn identity(event: InEvent) -> InEventKey {
    (
        event.agent_id,
        event.device_id,
        event.occurred_at,
        event.fencing_token,
        event.kind,
        event.data,
    )
}

fn identity_ref(event: &InEvent) -> InEventKey {
    (
        event.agent_id.clone(),
        event.device_id.clone(),
        event.occurred_at.clone(),
        event.fencing_token,
        event.kind.clone(),
        event.data.clone(),
    )
}

// ---- connections the double can cut ----

/// Handle to one accepted connection; [`Conn::kill`] makes its socket fail so the reply is
/// never written and the client sees the connection drop.
#[derive(Clone, Debug)]
struct Conn {
    killed: Arc<AtomicBool>,
}

impl Conn {
    fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
    }
}

struct KillableListener(TcpListener);

impl axum::serve::Listener for KillableListener {
    type Io = KillableIo;
    type Addr = Conn;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            if let Ok((stream, _)) = self.0.accept().await {
                let killed = Arc::new(AtomicBool::new(false));
                let io = KillableIo {
                    stream,
                    killed: Arc::clone(&killed),
                };
                return (io, Conn { killed });
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(Conn {
            killed: Arc::default(),
        })
    }
}

impl Connected<axum::serve::IncomingStream<'_, KillableListener>> for Conn {
    fn connect_info(stream: axum::serve::IncomingStream<'_, KillableListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// Accepts TLS connections; a failed handshake (the client distrusts the certificate) is
/// skipped.
struct TlsListener {
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = Conn;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, _)) = self.listener.accept().await else {
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(stream).await {
                let conn = Conn {
                    killed: Arc::default(),
                };
                return (tls, conn);
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(Conn {
            killed: Arc::default(),
        })
    }
}

impl Connected<axum::serve::IncomingStream<'_, TlsListener>> for Conn {
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Self {
        stream.remote_addr().clone()
    }
}

struct KillableIo {
    stream: TcpStream,
    killed: Arc<AtomicBool>,
}

impl KillableIo {
    fn cut(&self) -> Option<io::Error> {
        self.killed
            .load(Ordering::SeqCst)
            .then(|| io::Error::new(io::ErrorKind::BrokenPipe, "connection cut by the double"))
    }
}

impl AsyncRead for KillableIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(error) = self.cut() {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(error) = self.cut() {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
