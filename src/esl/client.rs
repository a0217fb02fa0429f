//! The AIMS HTTP client: token auth with refresh (rotating refresh tokens kept, a full login
//! when the refresh fails), one request at a time paced to `esl.rate_limit`, 429 and
//! `Retry-After` honoured, and every failure classified as the research's A.4 table says:
//! *not delivered* (safe to send again), *unknown* (may have been applied: confirm by reading
//! back), *refused* (a person must look) or *unauthorized*.
//!
//! Writes take [`OwnedWrite`]s only, which are built from ledger ids, so this client cannot
//! be asked to write an article the agent does not own; it has no delete at all.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::{StatusCode, Url};
use serde_json::{json, Value};
use thiserror::Error;
use tokio::sync::Mutex;

use super::article::{ArticleFormat, Data, RemoteArticle};
use super::ledger::OwnedArticleId;

/// Articles per write request at most (AIMS accepts 500).
pub const WRITE_BATCH: usize = 500;
/// Ids per `articleIdsList` read at most (AIMS accepts 50).
pub const READ_IDS: usize = 50;
/// Articles per page of a full read.
pub const PAGE_SIZE: usize = 500;
/// How long the article format is trusted before it is fetched again.
const FORMAT_TTL: Duration = Duration::from_secs(30 * 60);
/// Refresh the access token this long before it expires.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// 429 / 502-504 answers waited out per request before giving up as not delivered.
const THROTTLE_RETRIES: u32 = 5;
/// Longest `Retry-After` honoured in place; longer ones give the request back as not delivered.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// What the client needs; from `[esl]`.
#[derive(Debug, Clone)]
pub struct AimsSettings {
    /// Base URL, e.g. `https://eu.common.solumesl.com/common`.
    pub url: String,
    /// Company code.
    pub company: String,
    /// Store code.
    pub store: String,
    /// Login name.
    pub username: String,
    /// File holding the password (read at each login, never logged).
    pub password_file: PathBuf,
    /// Requests per second at most.
    pub rate_limit: u32,
    /// Whole-request timeout.
    pub request_timeout: Duration,
}

/// How a request to AIMS failed, as A.4 classifies it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AimsError {
    /// It never reached the application (connect failure, 502/503/504, throttled past
    /// patience): safe to send again.
    #[error("AIMS request not delivered: {reason}")]
    NotDelivered {
        /// What happened.
        reason: String,
    },
    /// It may or may not have been applied (500, timeout after sending, unreadable 200):
    /// confirm by reading back before anything else.
    #[error("AIMS outcome unknown: {reason}")]
    Unknown {
        /// What happened.
        reason: String,
    },
    /// Refused for good (405 "parameter is invalid", 403 licence, 402 …): a person must look.
    #[error("AIMS refused the request with HTTP {status}: {reason}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The response message.
        reason: String,
    },
    /// The credentials were refused (login failed, or 401 after a fresh token).
    #[error("AIMS refused the agent's credentials (HTTP {status}): {reason}; check esl.username and esl.password_file")]
    Unauthorized {
        /// The HTTP status.
        status: u16,
        /// The response message.
        reason: String,
    },
}

/// An article write, only constructible for an id from the ownership ledger.
#[derive(Debug, Clone)]
pub struct OwnedWrite {
    /// The ledger id.
    pub id: OwnedArticleId,
    /// The article name.
    pub name: String,
    /// The whole data (AIMS replaces the article: foreign keys are merged in already).
    pub data: Data,
}

#[derive(Debug, Clone)]
struct Tokens {
    access: String,
    refresh: Option<String>,
    expires: Instant,
}

/// The client. One per agent; requests are serialised and paced.
pub struct AimsClient {
    http: reqwest::Client,
    base: Url,
    settings: AimsSettings,
    tokens: Mutex<Option<Tokens>>,
    next_slot: Mutex<Instant>,
    format: std::sync::Mutex<Option<(Instant, ArticleFormat)>>,
    requests: AtomicU64,
}

/// A request as the caller describes it, rebuilt for each attempt.
struct Call<'a> {
    method: reqwest::Method,
    path: &'a str,
    query: Vec<(&'a str, String)>,
    body: Option<Value>,
}

impl AimsClient {
    /// Builds the client (no request is made yet).
    pub fn new(settings: AimsSettings) -> Result<AimsClient, String> {
        crate::upstream::client::install_crypto_provider();
        let base = Url::parse(&settings.url).map_err(|e| format!("esl.url: {e}"))?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("edge-agent/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(5))
            .timeout(settings.request_timeout)
            .build()
            .map_err(|e| format!("cannot build the AIMS client: {e}"))?;
        Ok(AimsClient {
            http,
            base,
            settings,
            tokens: Mutex::new(None),
            next_slot: Mutex::new(Instant::now()),
            format: std::sync::Mutex::new(None),
            requests: AtomicU64::new(0),
        })
    }

    /// Requests sent so far (status, and the verification measurement).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// The company's article format, fetched at most every 30 minutes.
    pub async fn article_format(&self) -> Result<ArticleFormat, AimsError> {
        if let Some((at, format)) = self
            .format
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            if at.elapsed() < FORMAT_TTL {
                return Ok(format);
            }
        }
        let reply = self
            .call(Call {
                method: reqwest::Method::GET,
                path: "api/v2/common/articles/upload/format",
                query: vec![("company", self.settings.company.clone())],
                body: None,
            })
            .await?;
        let body = unwrap_message(&reply);
        let info = body.get("mappingInfo").unwrap_or(&Value::Null);
        let key = |name: &str, default: &str| {
            info.get(name)
                .and_then(Value::as_str)
                .unwrap_or(default)
                .to_string()
        };
        let format = ArticleFormat {
            id_key: key("articleId", "ARTICLE_ID"),
            name_key: key("articleName", "ITEM_NAME"),
        };
        *self.format.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((Instant::now(), format.clone()));
        Ok(format)
    }

    /// One page (from 0) of the store's articles with their data, sorted by id; an empty
    /// page (or 204) ends the read.
    pub async fn list_page(&self, page: usize) -> Result<Vec<RemoteArticle>, AimsError> {
        let reply = self
            .call(Call {
                method: reqwest::Method::GET,
                path: "api/v2/common/config/article/info",
                query: self.scoped(vec![
                    ("page", page.to_string()),
                    ("size", PAGE_SIZE.to_string()),
                    ("sort", "articleId,asc".into()),
                ]),
                body: None,
            })
            .await?;
        parse_articles(&reply)
    }

    /// The articles among `ids` that exist, read in chunks of [`READ_IDS`].
    pub async fn get_articles(&self, ids: &[String]) -> Result<Vec<RemoteArticle>, AimsError> {
        let mut found = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(READ_IDS) {
            let reply = self
                .call(Call {
                    method: reqwest::Method::GET,
                    path: "api/v2/common/config/article/info",
                    query: self.scoped(vec![("articleIdsList", chunk.join(","))]),
                    body: None,
                })
                .await?;
            found.extend(parse_articles(&reply)?);
        }
        Ok(found)
    }

    /// Writes up to [`WRITE_BATCH`] articles (full replacement). A 200 means *accepted*
    /// only: the caller confirms by reading back.
    pub async fn upsert_articles(&self, batch: &[OwnedWrite]) -> Result<(), AimsError> {
        let articles: Vec<Value> = batch
            .iter()
            .map(|write| {
                json!({
                    "articleId": write.id.as_str(),
                    "articleName": write.name,
                    "nfcUrl": "",
                    "eans": [],
                    "data": write.data,
                })
            })
            .collect();
        self.call(Call {
            method: reqwest::Method::POST,
            path: "api/v2/common/articles",
            query: self.scoped(Vec::new()),
            body: Some(Value::Array(articles)),
        })
        .await
        .map(|_| ())
    }

    fn scoped<'a>(&self, mut query: Vec<(&'a str, String)>) -> Vec<(&'a str, String)> {
        query.insert(0, ("store", self.settings.store.clone()));
        query.insert(0, ("company", self.settings.company.clone()));
        query
    }

    /// Sends `call` with a valid token: paced, 429/502-504 waited out, one retry after a 401
    /// with a fresh token.
    async fn call(&self, call: Call<'_>) -> Result<Value, AimsError> {
        let mut throttled = 0;
        let mut reauthorized = false;
        loop {
            let token = self.token().await?;
            let mut url = self.base.clone();
            if let Ok(mut path) = url.path_segments_mut() {
                path.pop_if_empty().extend(call.path.split('/'));
            }
            url.query_pairs_mut()
                .extend_pairs(call.query.iter().map(|(k, v)| (*k, v.as_str())));
            let mut request = self
                .http
                .request(call.method.clone(), url)
                .bearer_auth(&token);
            if let Some(body) = &call.body {
                request = request.json(body);
            }
            self.pace().await;
            let outcome = request.send().await;
            let reply = match outcome {
                Ok(reply) => reply,
                Err(error) if error.is_connect() => {
                    return Err(AimsError::NotDelivered {
                        reason: format!("cannot connect: {error}"),
                    })
                }
                Err(error) => {
                    return Err(AimsError::Unknown {
                        reason: format!("no answer: {error}"),
                    })
                }
            };
            let status = reply.status();
            let retry_after = reply
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let bytes = reply.bytes().await.map_err(|error| AimsError::Unknown {
                reason: format!("reply cut short: {error}"),
            })?;
            let text = String::from_utf8_lossy(&bytes);
            match status.as_u16() {
                204 => return Ok(Value::Null),
                200..=299 => {
                    return serde_json::from_slice(&bytes).map_err(|error| AimsError::Unknown {
                        reason: format!("unreadable reply ({error})"),
                    })
                }
                401 if !reauthorized => {
                    reauthorized = true;
                    *self.tokens.lock().await = None;
                }
                401 => {
                    return Err(AimsError::Unauthorized {
                        status: 401,
                        reason: excerpt(&text),
                    })
                }
                429 | 502..=504 if throttled < THROTTLE_RETRIES => {
                    throttled += 1;
                    let wait = retry_after
                        .unwrap_or(Duration::from_secs(1 << throttled.min(5)))
                        .min(MAX_RETRY_AFTER);
                    tracing::info!(status = status.as_u16(), wait = ?wait, "AIMS asks to slow down; waiting");
                    tokio::time::sleep(wait).await;
                }
                code => return Err(classify(status, code, excerpt(&text))),
            }
        }
    }

    /// Waits for this request's slot: one request per `1 / rate_limit` seconds.
    async fn pace(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let gap = Duration::from_secs(1) / self.settings.rate_limit.max(1);
        let wait_until = {
            let mut next = self.next_slot.lock().await;
            let now = Instant::now();
            let slot = (*next).max(now);
            *next = slot + gap;
            slot
        };
        tokio::time::sleep_until(wait_until.into()).await;
    }

    /// A valid access token: the cached one, a refreshed one (keeping the rotated refresh
    /// token), or a fresh login when the refresh fails.
    async fn token(&self) -> Result<String, AimsError> {
        let mut tokens = self.tokens.lock().await;
        if let Some(current) = tokens.as_ref() {
            if current.expires > Instant::now() + REFRESH_MARGIN {
                return Ok(current.access.clone());
            }
            if let Some(refresh) = current.refresh.clone() {
                match self
                    .token_request("api/v2/token/refresh", json!({ "refreshToken": refresh }))
                    .await
                {
                    Ok(fresh) => {
                        let access = fresh.access.clone();
                        *tokens = Some(fresh);
                        return Ok(access);
                    }
                    Err(error) => {
                        tracing::info!("AIMS token refresh failed ({error}); logging in again")
                    }
                }
            }
        }
        let password =
            crate::config::read_secret(&self.settings.password_file).map_err(|error| {
                AimsError::Unauthorized {
                    status: 0,
                    reason: format!("cannot read esl.password_file: {error}"),
                }
            })?;
        let fresh = self
            .token_request(
                "api/v2/token",
                json!({ "username": self.settings.username, "password": password }),
            )
            .await?;
        let access = fresh.access.clone();
        *tokens = Some(fresh);
        Ok(access)
    }

    async fn token_request(&self, path: &str, body: Value) -> Result<Tokens, AimsError> {
        let mut url = self.base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().extend(path.split('/'));
        }
        self.pace().await;
        let reply = self
            .http
            .post(url)
            .json(&body)
            .send()
            .await
            .map_err(|error| AimsError::NotDelivered {
                reason: format!("token request: {error}"),
            })?;
        let status = reply.status();
        let bytes = reply.bytes().await.unwrap_or_default();
        if !status.is_success() {
            let text = excerpt(&String::from_utf8_lossy(&bytes));
            return Err(match status.as_u16() {
                401 | 402 | 403 | 406 => AimsError::Unauthorized {
                    status: status.as_u16(),
                    reason: text,
                },
                code => classify(status, code, text),
            });
        }
        let value: Value = serde_json::from_slice(&bytes).map_err(|error| AimsError::Unknown {
            reason: format!("unreadable token reply ({error})"),
        })?;
        let message = unwrap_message(&value);
        let access = message
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or_else(|| AimsError::Unknown {
                reason: "token reply without access_token".into(),
            })?
            .to_string();
        let expires_in = message
            .get("expires_in")
            .and_then(Value::as_u64)
            .unwrap_or(3600);
        Ok(Tokens {
            access,
            refresh: message
                .get("refresh_token")
                .and_then(Value::as_str)
                .map(str::to_string),
            expires: Instant::now() + Duration::from_secs(expires_in),
        })
    }
}

/// A.4's table for a final status.
fn classify(status: StatusCode, code: u16, reason: String) -> AimsError {
    match code {
        500 => AimsError::Unknown {
            reason: format!("HTTP 500 {reason}"),
        },
        429 | 502..=504 => AimsError::NotDelivered {
            reason: format!("HTTP {code} {reason}"),
        },
        403 => AimsError::Refused {
            status: code,
            reason,
        },
        400..=499 => AimsError::Refused {
            status: code,
            reason,
        },
        _ => AimsError::Unknown {
            reason: format!("HTTP {status} {reason}"),
        },
    }
}

/// `responseMessage` when it is an object, else the top level (as AIMS replies vary).
fn unwrap_message(value: &Value) -> &Value {
    match value.get("responseMessage") {
        Some(inner @ Value::Object(_)) => inner,
        _ => value,
    }
}

fn parse_articles(reply: &Value) -> Result<Vec<RemoteArticle>, AimsError> {
    if reply.is_null() {
        return Ok(Vec::new());
    }
    let list = unwrap_message(reply)
        .get("articleList")
        .and_then(Value::as_array)
        .ok_or_else(|| AimsError::Unknown {
            reason: "article reply without articleList".into(),
        })?;
    let text = |value: &Value| match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    Ok(list
        .iter()
        .filter_map(|item| {
            let article_id = item.get("articleId").map(text)?;
            let data = item
                .get("data")
                .and_then(Value::as_object)
                .map(|map| map.iter().map(|(k, v)| (k.clone(), text(v))).collect())
                .unwrap_or_default();
            let assigned_labels = item
                .get("assignedLabel")
                .and_then(Value::as_array)
                .map(|labels| labels.iter().map(text).collect())
                .unwrap_or_default();
            Some(RemoteArticle {
                article_id,
                article_name: item.get("articleName").map(text).unwrap_or_default(),
                data,
                assigned_labels,
            })
        })
        .collect())
}

fn excerpt(text: &str) -> String {
    text.trim().chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_classification() {
        let kind =
            |code: u16| match classify(StatusCode::from_u16(code).unwrap(), code, String::new()) {
                AimsError::NotDelivered { .. } => "not_delivered",
                AimsError::Unknown { .. } => "unknown",
                AimsError::Refused { .. } => "refused",
                AimsError::Unauthorized { .. } => "auth",
            };
        assert_eq!(kind(500), "unknown");
        assert_eq!(kind(502), "not_delivered");
        assert_eq!(kind(503), "not_delivered");
        assert_eq!(kind(405), "refused");
        assert_eq!(kind(403), "refused");
    }
}
