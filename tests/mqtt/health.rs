//! Health (M2): `up` is refreshed when a service reports a change, not only on the timer; the
//! broker publishes the retained `down` will when the agent dies, and the agent publishes
//! `down` itself on a graceful stop (a clean DISCONNECT suppresses the will).

use std::time::Duration;

use edge_agent::lifecycle::Tasks;
use edge_agent::live::ReadEnd;
use edge_agent::mqtt::{self, Tuning};
use edge_agent::store::{Store, StoreOptions};
use serde_json::Value;
use support_mqtt::{
    agent_config, compressed_time, health_state, in_process_config, keygen, wait_connected, Agent,
    Logging, Observer,
};
use test_support::agent::mqtt as support_mqtt;
use test_support::mosquitto::Broker;

fn blocking<T>(work: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(work)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_republished_when_a_service_reports_a_change() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(false);
    let logging = Logging::new();
    let store = Store::open(&StoreOptions::at(dir.path().join("store")))
        .unwrap()
        .store;
    // A refresh period far beyond the test: any new message comes from the change itself.
    let tuning = Tuning {
        health_period: Duration::from_secs(3600),
        ..compressed_time()
    };
    let mut tasks = Tasks::new();
    let config = in_process_config(broker.port);
    let plane = mqtt::start_with(
        &mut tasks,
        &config,
        &store,
        &logging.handle,
        None,
        None,
        tuning,
    )
    .unwrap();
    wait_connected(&plane, true).await;
    let mut health = Observer::start(broker.port, "edge/s1/gw1/health", None).await;
    let first = health
        .wait_for("up", |m| health_state(&m.payload).0 == "up")
        .await;
    let first: Value = serde_json::from_str(&first.payload).unwrap();
    assert_eq!(first["devices"][0]["id"], "zk-1");
    assert_eq!(first["devices"][0]["last_complete_read"], Value::Null);

    // The sync engine reports a read and the lock it holds into the live picture.
    plane.live.read_started("zk-1");
    let now = std::time::Instant::now();
    let fence = edge_agent::sync::lock::Fence::new(
        "zk-1",
        3,
        now,
        now + std::time::Duration::from_secs(10),
        std::time::Duration::from_secs(60),
    );
    plane.live.lock_held("zk-1", Some(&fence));
    plane
        .live
        .read_finished("zk-1", ReadEnd::Complete { users: 0, lost: 0 });
    let changed = health
        .wait_for("changed health", |m| {
            m.payload.contains("zk-1 held by gw1 token 3")
        })
        .await;
    let changed: Value = serde_json::from_str(&changed.payload).unwrap();
    assert!(
        changed["devices"][0]["last_complete_read"].is_string(),
        "{changed:#}"
    );
    assert_eq!(changed["locks"][0]["token"], 3, "{changed:#}");
    let trouble = tasks.stop(Duration::from_secs(5)).await;
    assert!(trouble.is_empty(), "{trouble:?}");
    let down = health
        .wait_for("down", |m| health_state(&m.payload).0 == "down")
        .await;
    assert_eq!(health_state(&down.payload).1, "stopped", "{down:?}");
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
        .wait_for("up", |m| health_state(&m.payload).0 == "up")
        .await;
    agent.signal(libc::SIGTERM);
    let stopped = health
        .wait_for("down", |m| health_state(&m.payload).0 == "down")
        .await;
    assert_eq!(health_state(&stopped.payload).1, "stopped");
    let status = blocking(|| agent.child.wait()).unwrap();
    assert!(status.success());
    drop(agent);

    let agent = blocking(|| Agent::start(dir.path(), &config));
    health
        .wait_for("up", |m| health_state(&m.payload).0 == "up")
        .await;
    agent.signal(libc::SIGKILL);
    let will = health
        .wait_for("will", |m| health_state(&m.payload).0 == "down")
        .await;
    assert_eq!(health_state(&will.payload).1, "connection lost");

    // A dashboard connecting later still sees it: the will is retained.
    let mut late = Observer::start(broker.port, "edge/s1/gw1/health", None).await;
    let retained = late.wait_for("retained will", |_| true).await;
    assert!(retained.retain);
    assert_eq!(
        health_state(&retained.payload),
        ("down".into(), "connection lost".into())
    );
}
