//! The AIMS test double: a real HTTP server on loopback speaking the parts of the SoluM AIMS
//! API the shelf-label adapter uses (token and refresh with rotating refresh tokens, article
//! format, article write, paged and by-id article info, link/unlink), with switches for the
//! behaviours a real tenant may show: merge instead of full replacement, unknown `data` keys
//! dropped, 429 with `Retry-After`, a 500 after the write was applied, slow application
//! (accepted now, visible later), and a pause after applying a write (so a test can kill the
//! agent between the write and its answer). It counts writes per article, so a test can
//! tell a write sent twice.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;

/// The format's id and name columns.
pub const ID_KEY: &str = "ARTICLE_ID";
/// The format's name column.
pub const NAME_KEY: &str = "ITEM_NAME";

/// One stored article.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Article {
    /// Name.
    pub name: String,
    /// Data columns.
    pub data: BTreeMap<String, String>,
    /// Linked labels.
    pub labels: Vec<String>,
}

#[derive(Default)]
struct Switches {
    merge: bool,
    known_keys: Option<Vec<String>>,
    throttles: VecDeque<u64>,
    fail_after_apply: u32,
    apply_delay: Duration,
    pause_after_apply: Duration,
    fail_reads: u32,
    token_ttl: u64,
}

#[derive(Default)]
struct World {
    articles: BTreeMap<String, Article>,
    /// Writes not yet visible: (visible at, id, article).
    pending: Vec<(Instant, String, Article)>,
    writes: HashMap<String, u32>,
    write_requests: u32,
    deletes: u32,
    requests: u32,
    access: Vec<String>,
    refresh: Option<String>,
    logins: u32,
    refreshes: u32,
    token_serial: u32,
}

struct Shared {
    user: String,
    password: String,
    switches: Mutex<Switches>,
    world: Mutex<World>,
}

/// A running double; dropping it stops the server.
pub struct AimsDouble {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for AimsDouble {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl AimsDouble {
    /// Starts on a free loopback port accepting `user` / `password`.
    pub async fn start(user: &str, password: &str) -> AimsDouble {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared {
            user: user.into(),
            password: password.into(),
            switches: Mutex::new(Switches {
                token_ttl: 3600,
                ..Switches::default()
            }),
            world: Mutex::default(),
        });
        let app = Router::new()
            .route("/common/api/v2/token", post(token))
            .route("/common/api/v2/token/refresh", post(refresh))
            .route("/common/api/v2/common/articles/upload/format", get(format))
            .route(
                "/common/api/v2/common/articles",
                post(write_articles)
                    .put(write_articles)
                    .get(list_articles)
                    .delete(delete_articles),
            )
            .route(
                "/common/api/v2/common/config/article/info",
                get(article_info),
            )
            .route("/common/api/v2/common/labels/link", post(link))
            .route("/common/api/v2/common/labels/unlink", post(unlink))
            .with_state(Arc::clone(&shared));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        AimsDouble {
            addr,
            shared,
            server,
        }
    }

    /// The base URL (`esl.url`).
    pub fn url(&self) -> String {
        format!("http://{}/common", self.addr)
    }

    fn world(&self) -> MutexGuard<'_, World> {
        self.shared.world.lock().unwrap()
    }
    fn switches(&self) -> MutexGuard<'_, Switches> {
        self.shared.switches.lock().unwrap()
    }

    /// Writes merge into the stored data instead of replacing it.
    pub fn set_merge(&self, on: bool) {
        self.switches().merge = on;
    }
    /// Only these `data` keys are kept on write (`None`: all).
    pub fn keep_only_keys(&self, keys: Option<Vec<String>>) {
        self.switches().known_keys = keys;
    }
    /// The next `count` requests are answered 429 with `Retry-After: seconds`.
    pub fn throttle_next(&self, count: usize, seconds: u64) {
        self.switches()
            .throttles
            .extend(std::iter::repeat_n(seconds, count));
    }
    /// The next `count` writes are applied, then answered 500.
    pub fn fail_after_apply(&self, count: u32) {
        self.switches().fail_after_apply = count;
    }
    /// Writes become visible `delay` after they are accepted.
    pub fn apply_later(&self, delay: Duration) {
        self.switches().apply_delay = delay;
    }
    /// After applying a write, wait `pause` before answering.
    pub fn pause_after_apply(&self, pause: Duration) {
        self.switches().pause_after_apply = pause;
    }
    /// The next `count` article reads fail with 500.
    pub fn fail_reads(&self, count: u32) {
        self.switches().fail_reads = count;
    }
    /// Access tokens expire after `seconds`.
    pub fn token_ttl(&self, seconds: u64) {
        self.switches().token_ttl = seconds;
    }

    /// Someone else creates or replaces an article.
    pub fn put_foreign(&self, id: &str, article: Article) {
        self.world().articles.insert(id.into(), article);
    }
    /// Someone else changes one data key of an article.
    pub fn edit(&self, id: &str, key: &str, value: &str) {
        if let Some(article) = self.world().articles.get_mut(id) {
            article.data.insert(key.into(), value.into());
        }
    }
    /// Someone else deletes an article.
    pub fn delete(&self, id: &str) {
        self.world().articles.remove(id);
    }
    /// The article as now visible.
    pub fn article(&self, id: &str) -> Option<Article> {
        self.settle();
        self.world().articles.get(id).cloned()
    }
    /// Every visible article.
    pub fn articles(&self) -> BTreeMap<String, Article> {
        self.settle();
        self.world().articles.clone()
    }
    /// Writes received per article id.
    pub fn writes(&self, id: &str) -> u32 {
        self.world().writes.get(id).copied().unwrap_or(0)
    }
    /// Articles deleted through `DELETE /articles` (the agent must never send one).
    pub fn deletes(&self) -> u32 {
        self.world().deletes
    }
    /// Write requests received.
    pub fn write_requests(&self) -> u32 {
        self.world().write_requests
    }
    /// Requests received (all endpoints).
    pub fn requests(&self) -> u32 {
        self.world().requests
    }
    /// Logins and refreshes.
    pub fn logins(&self) -> (u32, u32) {
        let world = self.world();
        (world.logins, world.refreshes)
    }

    fn settle(&self) {
        settle(&mut self.world());
    }
}

fn settle(world: &mut World) {
    let now = Instant::now();
    let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut world.pending)
        .into_iter()
        .partition(|(at, _, _)| *at <= now);
    world.pending = later;
    for (_, id, article) in due {
        world.articles.insert(id, article);
    }
}

fn issue(shared: &Shared) -> Value {
    let ttl = shared.switches.lock().unwrap().token_ttl;
    let mut world = shared.world.lock().unwrap();
    world.token_serial += 1;
    let access = format!("access-{}", world.token_serial);
    let refresh = format!("refresh-{}", world.token_serial);
    world.access.push(access.clone());
    world.refresh = Some(refresh.clone());
    json!({"responseCode": "200", "responseMessage": {
        "access_token": access, "token_type": "Bearer", "expires_in": ttl, "refresh_token": refresh}})
}

async fn token(State(shared): State<Arc<Shared>>, Json(body): Json<Value>) -> Response {
    shared.world.lock().unwrap().requests += 1;
    if body["username"] != shared.user.as_str() || body["password"] != shared.password.as_str() {
        return (
            StatusCode::NOT_ACCEPTABLE,
            Json(json!({"responseCode": "406", "responseMessage": "Authentication failed"})),
        )
            .into_response();
    }
    shared.world.lock().unwrap().logins += 1;
    Json(issue(&shared)).into_response()
}

async fn refresh(State(shared): State<Arc<Shared>>, Json(body): Json<Value>) -> Response {
    {
        let mut world = shared.world.lock().unwrap();
        world.requests += 1;
        // Rotating: only the latest refresh token is valid.
        if world.refresh.as_deref() != body["refreshToken"].as_str() {
            return (
                StatusCode::UNAUTHORIZED,
                Json(json!({"responseCode": "401", "responseMessage": "Unauthorized"})),
            )
                .into_response();
        }
        world.refreshes += 1;
    }
    Json(issue(&shared)).into_response()
}

/// `Some(response)` when the request must be refused (auth, throttle).
fn gate(shared: &Shared, headers: &HeaderMap) -> Option<Response> {
    let mut world = shared.world.lock().unwrap();
    world.requests += 1;
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !world.access.iter().any(|t| t == given) {
        return Some(
            (
                StatusCode::UNAUTHORIZED,
                Json(json!({"responseCode": "401", "responseMessage": "Unauthorized"})),
            )
                .into_response(),
        );
    }
    drop(world);
    if let Some(seconds) = shared.switches.lock().unwrap().throttles.pop_front() {
        return Some(
            (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", seconds.to_string())],
                "slow down",
            )
                .into_response(),
        );
    }
    None
}

/// The shared state of a request that passed [`gate`]. Every endpoint but the token ones takes
/// it, so authorization and throttling are checked in one place, before anything else.
struct Authorized(Arc<Shared>);

impl FromRequestParts<Arc<Shared>> for Authorized {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        shared: &Arc<Shared>,
    ) -> Result<Self, Self::Rejection> {
        match gate(shared, &parts.headers) {
            Some(refusal) => Err(refusal),
            None => Ok(Authorized(Arc::clone(shared))),
        }
    }
}

/// AIMS's answer to a write it accepted.
fn success() -> Response {
    Json(json!({"responseCode": "200", "responseMessage": "SUCCESS"})).into_response()
}

/// The `page` and `size` of a paged read, with AIMS's defaults and bounds.
fn page_of(query: &HashMap<String, String>) -> (usize, usize) {
    let page = query.get("page").and_then(|p| p.parse().ok()).unwrap_or(0);
    let size = query
        .get("size")
        .and_then(|p| p.parse().ok())
        .unwrap_or(10)
        .clamp(1, 500);
    (page, size)
}

async fn format(_: Authorized) -> Response {
    Json(json!({"responseCode": "200", "responseMessage": {
        "mappingInfo": {"articleId": ID_KEY, "articleName": NAME_KEY, "nfcUrl": "NFC_URL", "store": "STORE_ID"},
        "articleData": [ID_KEY, NAME_KEY], "delimeter": ",", "fileExtension": "csv"}}))
    .into_response()
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

async fn write_articles(Authorized(shared): Authorized, Json(body): Json<Value>) -> Response {
    let Some(list) = body.as_array() else {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            Json(json!({"responseCode": "405", "responseMessage": "Parameter is invalid"})),
        )
            .into_response();
    };
    if list.len() > 500 {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            Json(json!({"responseCode": "405", "responseMessage": "too many articles"})),
        )
            .into_response();
    }
    let (merge, known, delay, fail, pause) = {
        let mut switches = shared.switches.lock().unwrap();
        let fail = switches.fail_after_apply > 0;
        if fail {
            switches.fail_after_apply -= 1;
        }
        (
            switches.merge,
            switches.known_keys.clone(),
            switches.apply_delay,
            fail,
            switches.pause_after_apply,
        )
    };
    {
        let mut world = shared.world.lock().unwrap();
        settle(&mut world);
        world.write_requests += 1;
        for item in list {
            let id = text(&item["articleId"]);
            *world.writes.entry(id.clone()).or_default() += 1;
            let mut data: BTreeMap<String, String> = item["data"]
                .as_object()
                .map(|m: &Map<String, Value>| m.iter().map(|(k, v)| (k.clone(), text(v))).collect())
                .unwrap_or_default();
            if let Some(known) = &known {
                data.retain(|key, _| known.contains(key));
            }
            let before = world.articles.get(&id).cloned().unwrap_or_default();
            if merge {
                let mut merged = before.data.clone();
                merged.extend(data);
                data = merged;
            }
            let article = Article {
                name: text(&item["articleName"]),
                data,
                labels: before.labels,
            };
            if delay.is_zero() {
                world.articles.insert(id, article);
            } else {
                world.pending.push((Instant::now() + delay, id, article));
            }
        }
    }
    if !pause.is_zero() {
        tokio::time::sleep(pause).await;
    }
    if fail {
        return (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"responseCode": "500", "responseMessage": "Failed to process request operation"}))).into_response();
    }
    success()
}

async fn list_articles(
    Authorized(shared): Authorized,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (page, size) = page_of(&query);
    let mut world = shared.world.lock().unwrap();
    settle(&mut world);
    let list: Vec<Value> = world
        .articles
        .iter()
        .skip(page * size)
        .take(size)
        .map(|(id, a)| json!({"articleId": id, "articleName": a.name, "nfcUrl": "", "labelCount": a.labels.len()}))
        .collect();
    if list.is_empty() {
        return StatusCode::NO_CONTENT.into_response();
    }
    Json(json!({"totalArticleCnt": world.articles.len(), "articleList": list})).into_response()
}

async fn delete_articles(Authorized(shared): Authorized, Json(body): Json<Value>) -> Response {
    let mut world = shared.world.lock().unwrap();
    for id in body["articleDeleteList"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        // Deleting an article unlinks its labels in AIMS; the double just forgets it.
        if world.articles.remove(&text(&id)).is_some() {
            world.deletes += 1;
        }
    }
    success()
}

fn render(id: &str, article: &Article) -> Value {
    json!({"articleId": id, "articleName": article.name, "nfcUrl": "", "data": article.data, "assignedLabel": article.labels})
}

async fn article_info(
    Authorized(shared): Authorized,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    {
        let mut switches = shared.switches.lock().unwrap();
        if switches.fail_reads > 0 {
            switches.fail_reads -= 1;
            return (StatusCode::INTERNAL_SERVER_ERROR, "read failed").into_response();
        }
    }
    if !query.contains_key("company") || !query.contains_key("store") {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            Json(
                json!({"responseCode": "405", "responseMessage": "company and store are required"}),
            ),
        )
            .into_response();
    }
    let mut world = shared.world.lock().unwrap();
    settle(&mut world);
    let list: Vec<Value> = if let Some(ids) = query.get("articleIdsList") {
        let ids: Vec<&str> = ids.split(',').filter(|s| !s.is_empty()).collect();
        if ids.len() > 50 {
            return (
                StatusCode::METHOD_NOT_ALLOWED,
                Json(json!({"responseCode": "405", "responseMessage": "at most 50 ids"})),
            )
                .into_response();
        }
        ids.iter()
            .filter_map(|id| world.articles.get(*id).map(|a| render(id, a)))
            .collect()
    } else {
        let (page, size) = page_of(&query);
        world
            .articles
            .iter()
            .skip(page * size)
            .take(size)
            .map(|(id, a)| render(id, a))
            .collect()
    };
    if list.is_empty() {
        return StatusCode::NO_CONTENT.into_response();
    }
    Json(json!({"responseCode": "200", "responseMessage": "SUCCESS", "articleList": list}))
        .into_response()
}

async fn link(Authorized(shared): Authorized, Json(body): Json<Value>) -> Response {
    let mut world = shared.world.lock().unwrap();
    for item in body["assignList"].as_array().cloned().unwrap_or_default() {
        let label = text(&item["labelCode"]);
        for id in item["articleIdList"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            if let Some(article) = world.articles.get_mut(&text(&id)) {
                article.labels.push(label.clone());
            }
        }
    }
    success()
}

async fn unlink(Authorized(shared): Authorized, Json(body): Json<Value>) -> Response {
    let labels: Vec<String> = body["unAssignList"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(text)
        .collect();
    let mut world = shared.world.lock().unwrap();
    for article in world.articles.values_mut() {
        article.labels.retain(|l| !labels.contains(l));
    }
    success()
}
