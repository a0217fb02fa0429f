//! Figures for the README, printed, never asserted (run on purpose, not in CI):
//!
//! ```text
//! cargo test -p edge-agent --test mqtt measure:: -- --ignored --nocapture
//! # against a release build:
//! EDGE_AGENT_BIN=target/release/edge-agent cargo test -p edge-agent --test mqtt measure:: -- --ignored --nocapture
//! ```
//!
//! - command round trip on loopback, p50/p99: signed (nonce + audit fsync before running) and
//!   unsigned reads;
//! - reconnect time after a broker restart (from the broker listening again to the agent's
//!   CONNACK, backoff jitter included; the link is stable for 30 s before each restart);
//! - idle CPU and resident memory of the agent while connected.

use std::time::{Duration, Instant};

use edge_agent::ctl::{fresh_client_id, Client};
use edge_agent::mqtt::broker::BrokerSettings;
use edge_agent::mqtt::signing::AdminKeyFile;
use serde_json::json;
use support_mqtt::{agent_config, keygen, Agent, CONNECTED};
use test_support::agent::mqtt as support_mqtt;
use test_support::mosquitto::Broker;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

async fn round_trips(client: &mut Client, key: Option<&AdminKeyFile>, n: usize) -> Vec<Duration> {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let reply = client
            .call("log-level", &json!({}), key, Duration::from_secs(60))
            .await
            .unwrap();
        times.push(started.elapsed());
        assert!(reply.ok, "{reply:?}");
    }
    times.sort();
    times
}

/// utime + stime of `pid` in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run with --ignored --nocapture"]
async fn measure_latency_reconnect_and_idle_cost() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(false);
    let admin = keygen(dir.path(), "ops");
    let config = agent_config(
        dir.path(),
        broker.port,
        "allow_unsigned_reads = true",
        &admin,
    );
    let mut agent = tokio::task::block_in_place(|| Agent::start(dir.path(), &config));
    let key = AdminKeyFile::read(&admin.file).unwrap();
    let settings = BrokerSettings {
        host: "127.0.0.1".into(),
        port: broker.port,
        tls: None,
        credentials: None,
        client_id: fresh_client_id().unwrap(),
        keep_alive: Duration::from_secs(30),
    };
    let mut client = Client::connect(&settings, "s1", "gw1", Duration::from_secs(10))
        .await
        .unwrap();

    let n = 300;
    round_trips(&mut client, None, 20).await; // warm-up
    let unsigned = round_trips(&mut client, None, n).await;
    let signed = round_trips(&mut client, Some(&key), n).await;
    println!(
        "round trip, unsigned read (n={n}): p50 {:.2?}  p99 {:.2?}",
        percentile(&unsigned, 0.5),
        percentile(&unsigned, 0.99)
    );
    println!(
        "round trip, signed (verify + durable nonce/audit, n={n}): p50 {:.2?}  p99 {:.2?}",
        percentile(&signed, 0.5),
        percentile(&signed, 0.99)
    );
    client.disconnect().await;

    let pid = agent.child.id();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ticks_per_s = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let (before, started) = (cpu_ticks(pid), Instant::now());
    tokio::time::sleep(Duration::from_secs(30)).await;
    let cpu = (cpu_ticks(pid) - before) as f64 / ticks_per_s / started.elapsed().as_secs_f64();
    println!(
        "idle while connected (30 s): CPU {:.3} %, RSS {} KiB",
        cpu * 100.0,
        rss_kib(pid)
    );

    // Each round starts after the link has been up longer than the backoff's stable period
    // (30 s), as in the field; quicker rounds would measure a flapping broker's escalation.
    let mut reconnects = Vec::new();
    for round in 0..3 {
        if round > 0 {
            tokio::time::sleep(Duration::from_secs(31)).await;
        }
        broker.kill();
        tokio::task::block_in_place(|| agent.wait_for_log("lost the MQTT broker", round + 1));
        tokio::time::sleep(Duration::from_secs(2)).await;
        broker.restart();
        let listening = Instant::now();
        tokio::task::block_in_place(|| agent.wait_for_log(CONNECTED, round + 2));
        reconnects.push(listening.elapsed());
    }
    reconnects.sort();
    println!(
        "reconnect after a broker restart (down 2 s, 3 rounds): min {:.2?}  median {:.2?}  max {:.2?}",
        reconnects[0], reconnects[1], reconnects[2]
    );
}
