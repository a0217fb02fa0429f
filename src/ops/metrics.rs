//! Prometheus metrics (O3, opt-in): `GET /metrics` on `[metrics] listen`, in the text
//! exposition format (version 0.0.4).
//!
//! The figures are a projection of the same [`StatusReport`] that `edge-agent status` and the
//! MQTT health message show, built at each scrape, so nothing here keeps a second copy of a
//! fact. The server is a few lines over a TCP listener rather than an HTTP framework: it answers
//! one read-only path, closes every connection after its reply, and bounds what it reads from a
//! client (8 KiB of request head within 5 s). There is no authentication, which is why the
//! config refuses a non-loopback address unless `metrics.allow_non_loopback` is set.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::status::{Level, StatusReport, StatusSources};
use crate::clock_sync::ClockSync;
use crate::lifecycle::StopSignal;
use crate::live::READ_SECONDS_BUCKETS;

/// The most a request head may take; anything longer is answered 431 and closed.
const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// How long a client may take to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// The exposition format's content type.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The bound metrics listener; [`MetricsServer::run`] serves it.
pub struct MetricsServer {
    listener: TcpListener,
    sources: StatusSources,
}

impl MetricsServer {
    /// Binds `listen` (at start, so a taken port stops the agent with a clear error).
    pub async fn bind(listen: SocketAddr, sources: StatusSources) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        tracing::info!(%listen, "serving Prometheus metrics at http://{listen}/metrics");
        Ok(MetricsServer { listener, sources })
    }

    /// Serves scrapes until `stop` resolves.
    pub async fn run(self, mut stop: StopSignal) {
        loop {
            let (stream, peer) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        tracing::warn!(%err, "metrics: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                _ = stop.stopped() => return,
            };
            let sources = self.sources.clone();
            tokio::spawn(async move {
                if let Err(err) = serve(stream, sources).await {
                    tracing::debug!(%peer, %err, "metrics: request not served");
                }
            });
        }
    }
}

async fn serve(mut stream: TcpStream, sources: StatusSources) -> std::io::Result<()> {
    let head = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(Some(head))) => head,
        Ok(Ok(None)) => {
            return respond(&mut stream, "431 Request Header Fields Too Large", "").await
        }
        Ok(Err(err)) => return Err(err),
        Err(_) => return respond(&mut stream, "408 Request Timeout", "").await,
    };
    let mut words = head.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    if method != "GET" {
        return respond(&mut stream, "405 Method Not Allowed", "only GET /metrics\n").await;
    }
    if path != "/metrics" && !path.starts_with("/metrics?") {
        return respond(&mut stream, "404 Not Found", "metrics are at /metrics\n").await;
    }
    let text = tokio::task::spawn_blocking(move || exposition(&sources.report()))
        .await
        .map_err(std::io::Error::other)?;
    respond(&mut stream, "200 OK", &text).await
}

/// The request head up to the blank line; `None` if it is longer than allowed.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut head = Vec::with_capacity(512);
    let mut buffer = [0u8; 1024];
    loop {
        let read = stream.read(&mut buffer).await?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&buffer[..read]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            break;
        }
        if head.len() > MAX_REQUEST_HEAD {
            return Ok(None);
        }
    }
    Ok(Some(String::from_utf8_lossy(&head).into_owned()))
}

async fn respond(stream: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// Escapes a label value as the exposition format requires.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Writes one metric family: its help, type and samples.
struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (index, (key, value)) in labels.iter().enumerate() {
                if index > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{key}=\"{}\"", label(value));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

fn flag(on: bool) -> f64 {
    if on {
        1.0
    } else {
        0.0
    }
}

/// The exposition text of `report`.
pub fn exposition(report: &StatusReport) -> String {
    let mut out = String::with_capacity(4096);
    let mut f = Family { out: &mut out };

    f.header(
        "edge_agent_device_reads_total",
        "counter",
        "Read attempts per device since start, by outcome (complete or incomplete).",
    );
    for device in &report.devices {
        for (outcome, count) in [
            ("complete", device.reads.complete),
            ("incomplete", device.reads.incomplete),
        ] {
            f.sample(
                "edge_agent_device_reads_total",
                &[("device", &device.id), ("outcome", outcome)],
                count as f64,
            );
        }
    }
    f.header(
        "edge_agent_device_read_duration_seconds",
        "histogram",
        "How long read attempts took, per device.",
    );
    for device in &report.devices {
        let buckets = &device.reads.seconds_buckets;
        let mut cumulative = 0u64;
        for (index, bound) in READ_SECONDS_BUCKETS.iter().enumerate() {
            cumulative += buckets.get(index).copied().unwrap_or(0);
            f.sample(
                "edge_agent_device_read_duration_seconds_bucket",
                &[("device", &device.id), ("le", &bound.to_string())],
                cumulative as f64,
            );
        }
        let count = device.reads.complete + device.reads.incomplete;
        f.sample(
            "edge_agent_device_read_duration_seconds_bucket",
            &[("device", &device.id), ("le", "+Inf")],
            count as f64,
        );
        f.sample(
            "edge_agent_device_read_duration_seconds_sum",
            &[("device", &device.id)],
            device.reads.seconds_sum,
        );
        f.sample(
            "edge_agent_device_read_duration_seconds_count",
            &[("device", &device.id)],
            count as f64,
        );
    }
    f.header(
        "edge_agent_device_users",
        "gauge",
        "Buffered users per device by status (unmapped, pending, mapped, conflict, missing).",
    );
    for device in &report.devices {
        let users = &device.users;
        for (status, count) in [
            ("unmapped", users.unmapped),
            ("pending", users.pending),
            ("mapped", users.mapped),
            ("conflict", users.conflict),
            ("missing", users.missing),
        ] {
            f.sample(
                "edge_agent_device_users",
                &[("device", &device.id), ("status", status)],
                count as f64,
            );
        }
    }
    f.header(
        "edge_agent_device_missing_users_total",
        "counter",
        "Users complete reads found gone, per device, since start.",
    );
    for device in &report.devices {
        f.sample(
            "edge_agent_device_missing_users_total",
            &[("device", &device.id)],
            device.reads.missing_users as f64,
        );
    }
    f.header(
        "edge_agent_device_last_complete_read_timestamp_seconds",
        "gauge",
        "When the last complete read of the device was applied (Unix time; absent: never).",
    );
    for device in &report.devices {
        if let Some(at) = device.last_complete_read_ms {
            f.sample(
                "edge_agent_device_last_complete_read_timestamp_seconds",
                &[("device", &device.id)],
                at as f64 / 1000.0,
            );
        }
    }
    f.header(
        "edge_agent_device_consecutive_incomplete_reads",
        "gauge",
        "Read attempts in a row that were not complete.",
    );
    for device in &report.devices {
        f.sample(
            "edge_agent_device_consecutive_incomplete_reads",
            &[("device", &device.id)],
            f64::from(device.consecutive_incomplete),
        );
    }
    f.header(
        "edge_agent_device_connected",
        "gauge",
        "1 while the terminal is connected (AI06 terminals dial in; polled drivers absent).",
    );
    for device in &report.devices {
        if let Some(connected) = device.connected {
            f.sample(
                "edge_agent_device_connected",
                &[("device", &device.id)],
                flag(connected),
            );
        }
    }
    f.header(
        "edge_agent_device_lock_held",
        "gauge",
        "1 while this agent holds the device lock (during a read).",
    );
    for device in &report.devices {
        f.sample(
            "edge_agent_device_lock_held",
            &[("device", &device.id)],
            flag(device.lock_token.is_some()),
        );
    }
    f.header(
        "edge_agent_device_lock_remaining_seconds",
        "gauge",
        "What is left of the held device lock before this agent stops using it (0: not held).",
    );
    for device in &report.devices {
        f.sample(
            "edge_agent_device_lock_remaining_seconds",
            &[("device", &device.id)],
            device.lock_remaining_ms.unwrap_or(0) as f64 / 1000.0,
        );
    }

    if let Some(upstream) = &report.upstream {
        let outbox = &upstream["outbox"];
        let number = |value: &serde_json::Value| value.as_f64().unwrap_or(0.0);
        for (name, help, value) in [
            (
                "edge_agent_outbox_depth",
                "Events waiting to be forwarded upstream.",
                number(&outbox["depth"]),
            ),
            (
                "edge_agent_outbox_bytes",
                "Bytes the waiting events occupy.",
                number(&outbox["bytes"]),
            ),
            (
                "edge_agent_outbox_max_bytes",
                "The outbox cap in bytes.",
                number(&outbox["max_bytes"]),
            ),
            (
                "edge_agent_outbox_oldest_age_seconds",
                "Age of the oldest waiting event (0 when empty).",
                number(&upstream["oldest_age_ms"]) / 1000.0,
            ),
            (
                "edge_agent_outbox_refusing",
                "1 while the full outbox refuses new events.",
                flag(outbox["refusing"] == true),
            ),
            (
                "edge_agent_dead_letters",
                "Events in the dead letters.",
                number(&outbox["dead_letters"]),
            ),
        ] {
            f.header(name, "gauge", help);
            f.sample(name, &[], value);
        }
        f.header(
            "edge_agent_forward_events_total",
            "counter",
            "Events the upstream answered since start, by result (delivered, dead_lettered).",
        );
        for (result, field) in [
            ("delivered", "delivered"),
            ("dead_lettered", "dead_lettered"),
        ] {
            f.sample(
                "edge_agent_forward_events_total",
                &[("result", result)],
                number(&upstream[field]),
            );
        }
        f.header(
            "edge_agent_forward_up",
            "gauge",
            "1 while the forwarder runs (0: not configured or failed to start).",
        );
        f.sample(
            "edge_agent_forward_up",
            &[],
            flag(upstream["forwarder"]["state"] == "running"),
        );
        let requests = &upstream["requests"];
        if requests.is_object() {
            f.header(
                "edge_agent_upstream_request_duration_seconds",
                "histogram",
                "Latency of upstream event requests, by outcome (ok: answered for good, retry).",
            );
            for (outcome, histogram) in requests.as_object().into_iter().flatten() {
                let bounds = histogram["bounds"].as_array().cloned().unwrap_or_default();
                let counts = histogram["counts"].as_array().cloned().unwrap_or_default();
                let mut cumulative = 0.0;
                for (bound, count) in bounds.iter().zip(&counts) {
                    cumulative += number(count);
                    f.sample(
                        "edge_agent_upstream_request_duration_seconds_bucket",
                        &[("outcome", outcome), ("le", &number(bound).to_string())],
                        cumulative,
                    );
                }
                f.sample(
                    "edge_agent_upstream_request_duration_seconds_bucket",
                    &[("outcome", outcome), ("le", "+Inf")],
                    number(&histogram["count"]),
                );
                f.sample(
                    "edge_agent_upstream_request_duration_seconds_sum",
                    &[("outcome", outcome)],
                    number(&histogram["sum"]),
                );
                f.sample(
                    "edge_agent_upstream_request_duration_seconds_count",
                    &[("outcome", outcome)],
                    number(&histogram["count"]),
                );
            }
        }
    }

    if let Some(mqtt) = &report.mqtt {
        f.header(
            "edge_agent_mqtt_connected",
            "gauge",
            "1 while connected to the MQTT broker.",
        );
        f.sample("edge_agent_mqtt_connected", &[], flag(mqtt.connected));
        f.header(
            "edge_agent_mqtt_connections_total",
            "counter",
            "Connections made to the broker since start (reconnects are this minus one).",
        );
        f.sample(
            "edge_agent_mqtt_connections_total",
            &[],
            mqtt.connections as f64,
        );
    }
    f.header(
        "edge_agent_alerts_pending",
        "gauge",
        "Alerts recorded and not yet confirmed by the broker.",
    );
    f.sample(
        "edge_agent_alerts_pending",
        &[],
        report.alerts_pending as f64,
    );
    f.header(
        "edge_agent_clock_synchronized",
        "gauge",
        "1 while the kernel reports the system clock synchronised (NTP).",
    );
    f.sample(
        "edge_agent_clock_synchronized",
        &[],
        flag(report.clock == ClockSync::Synchronized),
    );
    if let Some(bytes) = report.store_bytes {
        f.header(
            "edge_agent_store_bytes",
            "gauge",
            "Bytes the store occupies on disk.",
        );
        f.sample("edge_agent_store_bytes", &[], bytes as f64);
    }
    f.header(
        "edge_agent_store_durable_flushes_total",
        "counter",
        "Flush-and-fsync rounds of the store since it was opened.",
    );
    f.sample(
        "edge_agent_store_durable_flushes_total",
        &[],
        report.store_durable_flushes as f64,
    );
    if let Some(log) = &report.log {
        f.header(
            "edge_agent_log_dropped_lines_total",
            "counter",
            "Log lines lost because the log file could not be written.",
        );
        f.sample(
            "edge_agent_log_dropped_lines_total",
            &[],
            log.dropped_lines as f64,
        );
    }
    f.header(
        "edge_agent_status_level",
        "gauge",
        "What `edge-agent status` concludes: 0 ok, 1 warning, 2 critical.",
    );
    f.sample(
        "edge_agent_status_level",
        &[],
        match report.assessment.level {
            Level::Ok => 0.0,
            Level::Warning => 1.0,
            Level::Critical => 2.0,
        },
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
