//! The demo's upstream: a small receiver of the upstream contract on a loopback port, so that
//! `edge-agent demo` forwards through the real HTTP client and forwarder and reports what
//! arrived from the receiver's own count rather than from the agent's.
//!
//! It speaks just enough HTTP/1.1 for the agent's client (one request at a time per
//! connection, `Content-Length` bodies, keep-alive): `POST …/events` applies each event once
//! per key (a repeated key with the same payload is a `duplicate`; with another payload it is
//! rejected and counted), `GET …/mappings` answers an empty page, anything else 404. It
//! checks the bearer token. It is a demonstration aid, not an upstream.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Largest request head or body the receiver reads (the agent's batches are far smaller).
const MAX_REQUEST_BYTES: usize = 16 << 20;

/// What the receiver counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReceiverCounts {
    /// Events that arrived, counting every redelivery.
    pub deliveries: u64,
    /// Events applied (first arrival of a key).
    pub applied: u64,
    /// Arrivals of a key already applied, with the same payload (harmless redeliveries).
    pub duplicates: u64,
    /// Arrivals of a key already applied with a different payload (must stay 0).
    pub keys_with_two_payloads: u64,
    /// Applied events per `type`.
    pub applied_by_type: BTreeMap<String, u64>,
}

#[derive(Default)]
struct Ledger {
    counts: ReceiverCounts,
    applied: HashMap<String, Value>,
}

/// A running receiver; stops when dropped.
pub struct Receiver {
    address: SocketAddr,
    ledger: Arc<Mutex<Ledger>>,
    server: JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Receiver {
    /// Listens on a free loopback port, accepting `token` as the bearer token.
    pub async fn start(token: String) -> std::io::Result<Receiver> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let shared = Arc::clone(&ledger);
        let token = Arc::new(token);
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let ledger = Arc::clone(&shared);
                let token = Arc::clone(&token);
                tokio::spawn(async move {
                    if let Err(error) = serve(stream, &ledger, &token).await {
                        tracing::debug!(%error, "demo upstream connection ended");
                    }
                });
            }
        });
        Ok(Receiver {
            address,
            ledger,
            server,
        })
    }

    /// The base URL to configure as `upstream.url`.
    pub fn url(&self) -> String {
        format!("http://{}/edge/v1/", self.address)
    }

    /// What has been counted so far.
    pub fn counts(&self) -> ReceiverCounts {
        lock(&self.ledger).counts.clone()
    }
}

fn lock(ledger: &Mutex<Ledger>) -> std::sync::MutexGuard<'_, Ledger> {
    // Plain counters and a map; a panic cannot leave them half-updated.
    ledger
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One connection: requests one after another until the client closes it.
async fn serve(stream: TcpStream, ledger: &Mutex<Ledger>, token: &str) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).await? == 0 {
            return Ok(());
        }
        let mut content_length = 0usize;
        let mut authorized = false;
        let mut head_bytes = request_line.len();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            head_bytes += line.len();
            if head_bytes > MAX_REQUEST_BYTES {
                return Err(std::io::Error::other("request head too large"));
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                let value = value.trim();
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-length" => content_length = value.parse().unwrap_or(0),
                    "authorization" => authorized = value == format!("Bearer {token}"),
                    _ => {}
                }
            }
        }
        if content_length > MAX_REQUEST_BYTES {
            return Err(std::io::Error::other("request body too large"));
        }
        let mut body = vec![0; content_length];
        reader.read_exact(&mut body).await?;
        let mut words = request_line.split_whitespace();
        let method = words.next().unwrap_or_default();
        let path = words.next().unwrap_or_default();
        let path = path.split('?').next().unwrap_or_default();
        let (status, reply) = if !authorized {
            (401, json!({"error": "bad or missing bearer token"}))
        } else if method == "POST" && path.ends_with("/events") {
            match serde_json::from_slice::<Value>(&body) {
                Ok(batch) => (200, apply(ledger, &batch)),
                Err(error) => (400, json!({"error": format!("not JSON: {error}")})),
            }
        } else if method == "GET" && path.ends_with("/mappings") {
            (
                200,
                json!({"mappings": [], "next_cursor": "", "has_more": false}),
            )
        } else {
            (404, json!({"error": "not found"}))
        };
        let text = reply.to_string();
        let reason = match status {
            200 => "OK",
            400 => "Bad Request",
            401 => "Unauthorized",
            _ => "Not Found",
        };
        let response = format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: \
             {}\r\n\r\n{text}",
            text.len()
        );
        write.write_all(response.as_bytes()).await?;
    }
}

/// Applies a batch once per key and answers one result per event.
fn apply(ledger: &Mutex<Ledger>, batch: &Value) -> Value {
    let mut ledger = lock(ledger);
    let events = batch["events"].as_array().cloned().unwrap_or_default();
    let results: Vec<Value> = events
        .into_iter()
        .map(|event| {
            let key = event["key"].as_str().unwrap_or_default().to_string();
            ledger.counts.deliveries += 1;
            match ledger.applied.get(&key) {
                Some(earlier) if *earlier == event => {
                    ledger.counts.duplicates += 1;
                    json!({"key": key, "status": "duplicate"})
                }
                Some(_) => {
                    ledger.counts.keys_with_two_payloads += 1;
                    json!({"key": key, "status": "rejected",
                           "reason": "key already applied with another payload"})
                }
                None => {
                    let kind = event["type"].as_str().unwrap_or("?").to_string();
                    *ledger.counts.applied_by_type.entry(kind).or_default() += 1;
                    ledger.counts.applied += 1;
                    ledger.applied.insert(key.clone(), event);
                    json!({"key": key, "status": "accepted"})
                }
            }
        })
        .collect();
    json!({ "results": results })
}
