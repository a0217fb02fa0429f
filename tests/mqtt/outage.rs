//! Broker outages: the agent reconnects with backoff after a broker crash, resubscribes and
//! publishes `up` again; alerts raised during a (time-compressed) ten-minute outage, across an
//! agent restart, all arrive.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use edge_agent::events::EventBody;
use edge_agent::lifecycle::Tasks;
use edge_agent::mqtt;
use edge_agent::store::{Store, StoreOptions};
use serde_json::Value;
use support_mqtt::{
    agent_config, compressed_time, ctl, health_state, in_process_config, keygen, texts,
    wait_connected, Agent, Logging, Observer, CONNECTED,
};
use test_support::agent::mqtt as support_mqtt;
use test_support::mosquitto::Broker;

fn blocking<T>(work: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(work)
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
        .wait_for("retained up", |m| health_state(&m.payload).0 == "up")
        .await;

    // Commands arrive again: the agent resubscribed on the session-less CONNACK.
    let out = blocking(|| ctl(&broker, Some(&admin.file), &["status"]));
    assert!(out.status.success(), "{:?}", texts(&out));
}

fn alarm(text: String) -> EventBody {
    EventBody::Alarm {
        kind: "test_alarm".into(),
        message: text,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_alert_is_lost_in_a_ten_minute_outage_with_an_agent_restart() {
    let dir = tempfile::tempdir().unwrap();
    // Persistence lets the *observer's* session and queue survive the broker stop; the agent
    // keeps no broker session and relies on its store alone.
    let mut broker = Broker::start(true);
    let topic = "edge/s1/gw1/events/alert";
    let mut observer = Observer::start(broker.port, topic, Some("alert-observer")).await;
    let config = in_process_config(broker.port);
    let logging = Logging::new();
    let logging = &logging.handle;
    let store_options = StoreOptions::at(dir.path().join("store"));

    let mut store = Store::open(&store_options).unwrap().store;
    let mut tasks = Tasks::new();
    let mut plane = mqtt::start_with(
        &mut tasks,
        &config,
        &store,
        logging,
        None,
        None,
        compressed_time(),
    )
    .unwrap();
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
            plane = mqtt::start_with(
                &mut tasks,
                &config,
                &store,
                logging,
                None,
                None,
                compressed_time(),
            )
            .unwrap();
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
