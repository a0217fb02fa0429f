//! Broker and agent failures: the agent reconnects with backoff after a broker crash,
//! resubscribes and publishes `up` again; the broker publishes the retained `down` will when
//! the agent dies, and the agent publishes `down` itself on a graceful stop; alerts raised
//! during a (time-compressed) ten-minute outage, across an agent restart, all arrive.

mod support_mqtt;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_agent::agent::Tasks;
use edge_agent::events::EventBody;
use edge_agent::mqtt::backoff::BackoffPolicy;
use edge_agent::mqtt::{self, Tuning};
use edge_agent::ops::logging::{self, JournaldMode, LogOptions};
use edge_agent::store::{Store, StoreOptions};
use serde_json::Value;
use support_mqtt::{agent_config, ctl, keygen, texts, Agent, Broker, Observer, CONNECTED};

fn blocking<T>(work: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(work)
}

fn state_of(payload: &str) -> (String, String) {
    let json: Value = serde_json::from_str(payload).unwrap_or_default();
    let field = |name: &str| json[name].as_str().unwrap_or_default().to_owned();
    (field("state"), field("reason"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_reconnects_with_backoff_and_resubscribes_after_a_broker_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(false);
    let admin = keygen(dir.path(), "ops");
    let config = agent_config(dir.path(), broker.port, "", &admin);
    let mut agent = blocking(|| Agent::start(dir.path(), &config));

    broker.kill();
    blocking(|| agent.wait_for_log("lost the MQTT broker", 1));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let restarted = Instant::now();
    broker.restart();
    blocking(|| agent.wait_for_log(CONNECTED, 2));
    println!(
        "reconnect after broker restart: {:.2} s (broker down ~3 s)",
        restarted.elapsed().as_secs_f64()
    );

    // Backoff: a handful of attempts in ~3 s, not rumqttc's tight loop of thousands.
    let log = agent.log_text();
    let attempts: u32 = log
        .lines()
        .rfind(|l| l.contains(CONNECTED))
        .and_then(|l| l.split("after_attempts=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("the reconnect line names the attempts");
    assert!((2..50).contains(&attempts), "{attempts} attempts:\n{log}");
    assert!(log.contains("reconnecting with backoff"), "{log}");

    // Health is `up` again (the crashed broker kept no retained messages, so this is new).
    let mut health = Observer::start(broker.port, "edge/s1/gw1/health", None).await;
    health
        .wait_for("retained up", |m| state_of(&m.payload).0 == "up")
        .await;

    // Commands arrive again: the agent resubscribed on the session-less CONNACK.
    let out = blocking(|| ctl(&broker, Some(&admin.file), &["status"]));
    assert!(out.status.success(), "{:?}", texts(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_down_by_the_will_when_the_agent_dies_and_by_the_agent_on_a_stop() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(false);
    let admin = keygen(dir.path(), "ops");
    let config = agent_config(dir.path(), broker.port, "", &admin);
    let mut health = Observer::start(broker.port, "edge/s1/gw1/health", None).await;

    let mut agent = blocking(|| Agent::start(dir.path(), &config));
    health
        .wait_for("up", |m| state_of(&m.payload).0 == "up")
        .await;
    agent.signal(libc::SIGTERM);
    let stopped = health
        .wait_for("down", |m| state_of(&m.payload).0 == "down")
        .await;
    assert_eq!(state_of(&stopped.payload).1, "stopped");
    let status = blocking(|| agent.child.wait()).unwrap();
    assert!(status.success());
    drop(agent);

    let agent = blocking(|| Agent::start(dir.path(), &config));
    health
        .wait_for("up", |m| state_of(&m.payload).0 == "up")
        .await;
    agent.signal(libc::SIGKILL);
    let will = health
        .wait_for("will", |m| state_of(&m.payload).0 == "down")
        .await;
    assert_eq!(state_of(&will.payload).1, "connection lost");

    // A dashboard connecting later still sees it: the will is retained.
    let mut late = Observer::start(broker.port, "edge/s1/gw1/health", None).await;
    let retained = late.wait_for("retained will", |_| true).await;
    assert!(retained.retain);
    assert_eq!(
        state_of(&retained.payload),
        ("down".into(), "connection lost".into())
    );
}

fn tuning() -> Tuning {
    Tuning {
        backoff: BackoffPolicy {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(500),
            stable_after: Duration::from_secs(1),
        },
        health_period: Duration::from_secs(1),
        alert_resend: Duration::from_millis(300),
    }
}

fn alarm(text: String) -> EventBody {
    EventBody::Alarm {
        kind: "test_alarm".into(),
        message: text,
    }
}

async fn wait_connected(plane: &mqtt::ControlPlane, connected: bool) {
    tokio::time::timeout(Duration::from_secs(20), async {
        while plane.link.is_connected() != connected {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("link never became connected={connected}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_alert_is_lost_in_a_ten_minute_outage_with_an_agent_restart() {
    let dir = tempfile::tempdir().unwrap();
    // Persistence lets the *observer's* session and queue survive the broker stop; the agent
    // keeps no broker session and relies on its store alone.
    let mut broker = Broker::start(true);
    let topic = "edge/s1/gw1/events/alert";
    let mut observer = Observer::start(broker.port, topic, Some("alert-observer")).await;
    let config = edge_agent::config::parse(&format!(
        "[agent]\nid = \"gw1\"\nsite = \"s1\"\n[log]\nfile = \"\"\n\
         [mqtt]\nhost = \"127.0.0.1\"\nport = {}\ntls = false\n",
        broker.port
    ))
    .unwrap();
    let (_dispatch, logging) = logging::build(&LogOptions {
        journald: JournaldMode::Never,
        file: None,
        ..LogOptions::default()
    })
    .unwrap();
    let logging = Arc::new(logging);
    let store_options = StoreOptions::at(dir.path().join("store"));

    let mut store = Store::open(&store_options).unwrap().store;
    let mut tasks = Tasks::new();
    let mut plane = mqtt::start_with(&mut tasks, &config, &store, &logging, tuning()).unwrap();
    wait_connected(&plane, true).await;

    let mut raised = BTreeSet::new();
    raised.insert(
        plane
            .alerts
            .raise("zk-1", alarm("before".into()))
            .await
            .unwrap(),
    );

    broker.stop();
    wait_connected(&plane, false).await;
    // Ten minutes in 60 ticks of "10 s", each compressed to 25 ms; an alert every minute; the
    // agent restarts (store closed and reopened) half way through.
    let mut slowest_raise = Duration::ZERO;
    for tick in 0..60u32 {
        if tick % 6 == 0 {
            let started = Instant::now();
            let key = plane
                .alerts
                .raise("zk-1", alarm(format!("outage minute {}", tick / 6)))
                .await
                .unwrap();
            slowest_raise = slowest_raise.max(started.elapsed());
            raised.insert(key);
        }
        if tick == 30 {
            let trouble = tasks.stop(Duration::from_secs(5)).await;
            assert!(trouble.is_empty(), "{trouble:?}");
            drop(plane);
            drop(store);
            store = Store::open(&store_options).unwrap().store;
            tasks = Tasks::new();
            plane = mqtt::start_with(&mut tasks, &config, &store, &logging, tuning()).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    println!("slowest alert raise while the broker was down: {slowest_raise:?}");
    // Every outage alert waits in the store (plus a clock alert on an unsynchronised box).
    assert!(plane.alerts.pending_count() >= raised.len() - 1);

    broker.restart();
    let mut received = BTreeSet::new();
    while !raised.is_subset(&received) {
        let seen = observer.wait_for("every alert", |m| m.topic == topic).await;
        let json: Value = serde_json::from_str(&seen.payload).unwrap();
        received.insert(json["key"].as_str().unwrap().to_owned());
    }
    tokio::time::timeout(Duration::from_secs(20), async {
        while plane.alerts.pending_count() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("every alert confirmed and removed from the store");
    let trouble = tasks.stop(Duration::from_secs(5)).await;
    assert!(trouble.is_empty(), "{trouble:?}");
}
