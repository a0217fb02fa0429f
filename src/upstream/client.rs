//! The HTTP side of the contract: one reqwest client with verified TLS (rustls, ring
//! provider), bearer-token auth, connect and request timeouts, and a classification of every
//! failure into *retry later*, *refused for good* or *credentials refused*.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use thiserror::Error;

use crate::config::read_secret;
use crate::events::{Event, PersonAttributes};

use super::wire::{wire_event, BatchReply, DesiredArticlePage, EventBatch, MappingPage};

/// Longest error-body excerpt kept in a reason (dead letters, logs).
const MAX_REASON_CHARS: usize = 300;

/// Largest 2xx reply body read from the upstream (a batch result or a mapping page). A batch
/// is at most 100 events and a mapping page is cursor-paged, so a well-behaved upstream stays
/// far below this; a body that grows past it is abandoned (retried later) instead of being
/// buffered without end in the gateway's memory.
pub const MAX_REPLY_BODY: usize = 8 * 1024 * 1024;

/// Largest error reply body read (only an excerpt of [`MAX_REASON_CHARS`] is kept).
pub const MAX_ERROR_BODY: usize = 64 * 1024;

/// What the client needs to know; built from `[upstream]` (see [`super::ForwarderOptions`]).
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Base URL, e.g. `https://backend.example.com/edge/v1`; endpoint paths are appended.
    pub url: String,
    /// File holding the bearer token; re-read after the upstream refuses it.
    pub token_file: PathBuf,
    /// Extra CA certificates (PEM) trusted besides the system roots.
    pub ca_file: Option<PathBuf>,
    /// TCP + TLS connect timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout (connect, send, wait, read).
    pub request_timeout: Duration,
}

/// Why the client could not be built; each names the file or setting to fix.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The upstream URL does not parse.
    #[error("upstream.url {url:?} is not a valid URL: {reason}")]
    Url {
        /// The configured URL.
        url: String,
        /// The parser's complaint.
        reason: String,
    },
    /// The token file cannot be read.
    #[error("cannot read the upstream token from {path} (upstream.token_file): {source}")]
    Token {
        /// The token file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The CA file cannot be read or holds no PEM certificate.
    #[error("cannot use upstream.ca_file {path}: {reason}")]
    CaFile {
        /// The CA file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// reqwest refused the settings (TLS set-up).
    #[error("cannot set up the upstream HTTP client: {0}")]
    Build(#[source] reqwest::Error),
}

/// How a request failed, as the forwarder must react to it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RequestError {
    /// Try again later: 408, 429, 5xx, timeouts, connection errors, unreadable replies.
    #[error("upstream temporarily unavailable: {reason}")]
    Retryable {
        /// What happened.
        reason: String,
        /// The server's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },
    /// Refused for good (400, 404, 409, 422 and other 4xx): retrying the same request cannot
    /// help.
    #[error("upstream refused the request with HTTP {status}: {reason}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The reply body (shortened).
        reason: String,
    },
    /// 401/403: the token is wrong, expired or lacks rights. Not the events' fault, so they
    /// stay queued; the token file is re-read before the next attempt.
    #[error(
        "upstream refused the agent's credentials with HTTP {status}: {reason}; put a valid \
         token in upstream.token_file (it is re-read automatically)"
    )]
    Unauthorized {
        /// 401 or 403.
        status: u16,
        /// The reply body (shortened).
        reason: String,
    },
}

/// Client for the upstream API. Cheap to share by reference; holds one connection pool.
pub struct UpstreamClient {
    http: reqwest::Client,
    base: Url,
    token_file: PathBuf,
    token: Mutex<Option<String>>,
}

/// Installs rustls' ring provider as the process default (once; later calls are no-ops).
/// reqwest is built without a provider of its own so aws-lc never enters the build.
pub fn install_crypto_provider() {
    // Err means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl UpstreamClient {
    /// Builds the client: reads the token, loads the extra CA, sets the timeouts.
    pub fn new(settings: &ClientSettings) -> Result<Self, ClientError> {
        install_crypto_provider();
        let base = Url::parse(&settings.url).map_err(|error| ClientError::Url {
            url: settings.url.clone(),
            reason: error.to_string(),
        })?;
        let token = read_token(&settings.token_file)?;
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("edge-agent/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout);
        if let Some(path) = &settings.ca_file {
            builder = builder.tls_certs_merge(load_ca(path)?);
        }
        Ok(Self {
            http: builder.build().map_err(ClientError::Build)?,
            base,
            token_file: settings.token_file.clone(),
            token: Mutex::new(Some(token)),
        })
    }

    /// `POST /events`: delivers a batch and returns the per-event results.
    pub async fn push_events(&self, events: &[&Event]) -> Result<BatchReply, RequestError> {
        let batch = EventBatch {
            events: events.iter().map(|event| wire_event(event)).collect(),
        };
        let request = self.http.post(self.endpoint(&["events"])).json(&batch);
        let reply = self.send(request).await?;
        decode_json(reply).await
    }

    /// `GET /mappings`: the next page of mapping changes for this agent after `cursor`.
    pub async fn pull_mappings(
        &self,
        agent_id: &str,
        cursor: &str,
        limit: u32,
    ) -> Result<MappingPage, RequestError> {
        let mut url = self.endpoint(&["mappings"]);
        url.query_pairs_mut()
            .append_pair("agent_id", agent_id)
            .append_pair("cursor", cursor)
            .append_pair("limit", &limit.to_string());
        let reply = self.send(self.http.get(url)).await?;
        decode_json(reply).await
    }

    /// `GET /esl/articles`: the next page of desired shelf-label article changes after
    /// `cursor` (the ESL adapter's feed, pulled like mappings).
    pub async fn pull_desired_articles(
        &self,
        agent_id: &str,
        cursor: &str,
        limit: u32,
    ) -> Result<DesiredArticlePage, RequestError> {
        let mut url = self.endpoint(&["esl", "articles"]);
        url.query_pairs_mut()
            .append_pair("agent_id", agent_id)
            .append_pair("cursor", cursor)
            .append_pair("limit", &limit.to_string());
        let reply = self.send(self.http.get(url)).await?;
        decode_json(reply).await
    }

    /// `GET /persons/{id}`: the person's attributes, or `None` if the upstream has no such
    /// person (a mapping is only confirmed once this returns `Some`).
    pub async fn person(&self, person_id: &str) -> Result<Option<PersonAttributes>, RequestError> {
        let request = self.http.get(self.endpoint(&["persons", person_id]));
        match self.send(request).await {
            Ok(reply) => decode_json(reply).await.map(Some),
            Err(RequestError::Refused { status: 404, .. }) => Ok(None),
            Err(other) => Err(other),
        }
    }

    fn endpoint(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// Sends with the bearer token and turns every non-2xx outcome into a [`RequestError`].
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, RequestError> {
        let token = self.current_token()?;
        let reply = request
            .bearer_auth(token)
            .send()
            .await
            .map_err(transport_error)?;
        let status = reply.status();
        if status.is_success() {
            return Ok(reply);
        }
        let retry_after = retry_after(reply.headers());
        let body = read_body(reply, MAX_ERROR_BODY).await.unwrap_or_default();
        let reason = shorten(&String::from_utf8_lossy(&body));
        let error = classify(status, reason, retry_after);
        if matches!(error, RequestError::Unauthorized { .. }) {
            // Forget the token so the next attempt picks up a corrected file.
            *self.token.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        Err(error)
    }

    fn current_token(&self) -> Result<String, RequestError> {
        let mut cached = self.token.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(token) = cached.as_ref() {
            return Ok(token.clone());
        }
        let token = read_token(&self.token_file).map_err(|error| RequestError::Unauthorized {
            status: 0,
            reason: error.to_string(),
        })?;
        *cached = Some(token.clone());
        Ok(token)
    }
}

/// Maps an HTTP error status to the forwarder's three reactions.
pub fn classify(status: StatusCode, reason: String, retry_after: Option<Duration>) -> RequestError {
    let code = status.as_u16();
    match code {
        401 | 403 => RequestError::Unauthorized {
            status: code,
            reason,
        },
        408 | 429 => RequestError::Retryable {
            reason: format!("HTTP {code} {reason}"),
            retry_after,
        },
        400..=499 => RequestError::Refused {
            status: code,
            reason,
        },
        _ => RequestError::Retryable {
            reason: format!("HTTP {code} {reason}"),
            retry_after,
        },
    }
}

/// `Retry-After` as delay-seconds or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

fn transport_error(error: reqwest::Error) -> RequestError {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else {
        "transport error"
    };
    RequestError::Retryable {
        reason: format!("{kind}: {}", error_chain(&error)),
        retry_after: None,
    }
}

/// A 2xx body that is not the documented JSON: the upstream may or may not have applied the
/// request, so it is retried (idempotency keys make that safe).
async fn decode_json<T: serde::de::DeserializeOwned>(
    reply: reqwest::Response,
) -> Result<T, RequestError> {
    let bytes = read_body(reply, MAX_REPLY_BODY).await?;
    parse_reply(&bytes)
}

/// Reads a reply body chunk by chunk, giving up (retryable) once it exceeds `limit` bytes: the
/// upstream's length header is not trusted, the bytes received are counted.
async fn read_body(mut reply: reqwest::Response, limit: usize) -> Result<Vec<u8>, RequestError> {
    let mut body = Vec::new();
    while let Some(chunk) = reply.chunk().await.map_err(transport_error)? {
        if body.len().saturating_add(chunk.len()) > limit {
            return Err(RequestError::Retryable {
                reason: format!("reply body larger than {limit} bytes; not read further"),
                retry_after: None,
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Parses a 2xx body as the documented JSON. Public so the fuzz target `upstream_reply` feeds
/// it the same bytes an upstream could send.
pub fn parse_reply<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, RequestError> {
    serde_json::from_slice(bytes).map_err(|error| RequestError::Retryable {
        reason: format!(
            "unreadable reply ({error}): {}",
            shorten(&String::from_utf8_lossy(bytes))
        ),
        retry_after: None,
    })
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn shorten(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(MAX_REASON_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

fn read_token(path: &Path) -> Result<String, ClientError> {
    read_secret(path).map_err(|source| ClientError::Token {
        path: path.to_path_buf(),
        source,
    })
}

fn load_ca(path: &Path) -> Result<Vec<reqwest::Certificate>, ClientError> {
    let ca_error = |reason: String| ClientError::CaFile {
        path: path.to_path_buf(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|error| ca_error(error.to_string()))?;
    let certificates = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|error| ca_error(error_chain(&error)))?;
    if certificates.is_empty() {
        return Err(ca_error("no PEM certificate in the file".into()));
    }
    Ok(certificates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_the_documented_reactions() {
        let kind = |code: u16| match classify(StatusCode::from_u16(code).unwrap(), "x".into(), None)
        {
            RequestError::Retryable { .. } => "retry",
            RequestError::Refused { .. } => "refused",
            RequestError::Unauthorized { .. } => "auth",
        };
        for code in [400, 404, 409, 422] {
            assert_eq!(kind(code), "refused", "{code}");
        }
        for code in [401, 403] {
            assert_eq!(kind(code), "auth", "{code}");
        }
        for code in [408, 429, 500, 502, 503, 504] {
            assert_eq!(kind(code), "retry", "{code}");
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(
            RETRY_AFTER,
            "Sun, 06 Nov 1994 08:49:37 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
        headers.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn endpoints_append_to_the_base_path_and_escape_ids() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "t\n").unwrap();
        let client = UpstreamClient::new(&ClientSettings {
            url: "https://backend.example.com/edge/v1/".into(),
            token_file: token,
            ca_file: None,
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
        })
        .unwrap();
        assert_eq!(
            client.endpoint(&["persons", "a/b c"]).as_str(),
            "https://backend.example.com/edge/v1/persons/a%2Fb%20c"
        );
    }
}
