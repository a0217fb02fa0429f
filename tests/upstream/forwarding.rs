//! The forwarder against the upstream double over real HTTP on loopback: batching and order,
//! `Retry-After`, per-event and whole-batch rejections, slow replies and dropped connections,
//! fencing, credentials, mapping pulls and person confirmation.

use std::time::Duration;

use edge_agent::store::AlarmKind;
use edge_agent::sync::mapping::{self as owner, MappingState};
use edge_agent::upstream::{mapping, UpstreamClient};
use serde_json::json;
use test_support::agent::upstream::{options, punch, token_file, AgentSide, TOKEN};
use test_support::upstream_double::UpstreamDouble;
use test_support::wait_for;

const CAP: u64 = 64_000_000;
const LIMIT: Duration = Duration::from_secs(20);

async fn enqueue_punches(
    agent: &AgentSide,
    device: &str,
    range: std::ops::Range<u64>,
) -> Vec<String> {
    let mut keys = Vec::new();
    for n in range {
        let event = punch(device, n, 1);
        keys.push(event.key.clone());
        agent.outbox.enqueue(event).await.expect("enqueue");
    }
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_go_in_batches_in_order_and_are_applied_once() {
    let double = UpstreamDouble::start(TOKEN).await;
    let mut agent = AgentSide::new(CAP);
    let keys = enqueue_punches(&agent, "dev1", 0..250).await;
    agent.start(&options(
        &double.url(),
        &token_file(agent.dir.path(), TOKEN),
    ));
    agent.drained(LIMIT).await;

    assert_eq!(double.applied_order(), keys, "applied out of order");
    assert!(keys.iter().all(|key| double.applications(key) == 1));
    let batches: Vec<usize> = double.event_requests().iter().map(|r| r.events).collect();
    assert!(batches.iter().all(|n| *n <= 100), "{batches:?}");
    assert!(
        batches.len() <= 4,
        "250 events took {} requests",
        batches.len()
    );
    assert!(double.violations().is_empty(), "{:?}", double.violations());
    let upstream = agent.upstream.clone().unwrap();
    wait_for(LIMIT, "the status to count 250 deliveries", || {
        upstream.status().unwrap().delivered == 250
    })
    .await;
    let status = upstream.status().unwrap();
    assert_eq!(status.queued, 0);
    assert_eq!(status.success_rate, Some(1.0));
    assert!(status.last_success_at_ms.is_some());
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    let double = UpstreamDouble::start(TOKEN).await;
    double.throttle_next(1, 1);
    let mut agent = AgentSide::new(CAP);
    let keys = enqueue_punches(&agent, "dev1", 0..5).await;
    agent.start(&options(
        &double.url(),
        &token_file(agent.dir.path(), TOKEN),
    ));
    agent.drained(LIMIT).await;

    let requests = double.event_requests();
    assert_eq!(requests[0].status, 429);
    assert_eq!(requests[1].status, 200);
    let waited = requests[1].at - requests[0].at;
    // The backoff alone would have waited at most 20 ms here.
    assert!(waited >= Duration::from_secs(1), "retried after {waited:?}");
    assert!(keys.iter().all(|key| double.applications(key) == 1));
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_event_goes_to_the_dead_letters_while_the_rest_flow_and_can_be_requeued() {
    let double = UpstreamDouble::start(TOKEN).await;
    let mut agent = AgentSide::new(CAP);
    let keys = enqueue_punches(&agent, "dev1", 0..10).await;
    double.reject_key(&keys[4], "unknown user");
    agent.start(&options(
        &double.url(),
        &token_file(agent.dir.path(), TOKEN),
    ));
    agent.drained(LIMIT).await;

    for (n, key) in keys.iter().enumerate() {
        assert_eq!(double.applications(key), u32::from(n != 4), "event {n}");
    }
    let letters = agent.outbox.dead_letters().unwrap();
    assert_eq!(letters.len(), 1);
    let (number, letter) = &letters[0];
    assert_eq!(letter.event.key, keys[4]);
    assert_eq!(letter.reason, "unknown user");
    assert_eq!(letter.http_status, None);
    let upstream = agent.upstream.clone().unwrap();
    wait_for(LIMIT, "the status to count 10 settled events", || {
        let status = upstream.status().unwrap();
        status.delivered + status.dead_lettered == 10
    })
    .await;
    let status = upstream.status().unwrap();
    assert_eq!((status.delivered, status.dead_lettered), (9, 1));
    assert_eq!(status.outbox.dead_letters, 1);

    // The operator fixes the cause upstream and re-queues the letter.
    double.accept_key(&keys[4]);
    agent.outbox.requeue(*number).await.unwrap();
    agent.drained(LIMIT).await;
    assert_eq!(double.applications(&keys[4]), 1);
    assert!(agent.outbox.dead_letters().unwrap().is_empty());
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_refused_as_a_whole_is_split_until_the_bad_event_is_alone() {
    let double = UpstreamDouble::start(TOKEN).await;
    let mut agent = AgentSide::new(CAP);
    let keys = enqueue_punches(&agent, "dev1", 0..100).await;
    double.refuse_batches_with(&keys[37]);
    agent.start(&options(
        &double.url(),
        &token_file(agent.dir.path(), TOKEN),
    ));
    agent.drained(LIMIT).await;

    for (n, key) in keys.iter().enumerate() {
        assert_eq!(double.applications(key), u32::from(n != 37), "event {n}");
    }
    let letters = agent.outbox.dead_letters().unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].1.event.key, keys[37]);
    assert_eq!(letters[0].1.http_status, Some(422));
    let requests = double.event_requests().len();
    assert!(
        requests <= 20,
        "isolating one event took {requests} requests"
    );

    double.accept_batches_with(&keys[37]);
    assert_eq!(agent.outbox.requeue_all().await.unwrap(), 1);
    agent.drained(LIMIT).await;
    assert_eq!(double.applications(&keys[37]), 1);
    assert!(agent.outbox.dead_letters().unwrap().is_empty());
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_and_dropped_connections_are_retried_without_a_second_application() {
    let double = UpstreamDouble::start(TOKEN).await;
    let mut agent = AgentSide::new(CAP);
    let token = token_file(agent.dir.path(), TOKEN);
    let mut options = options(&double.url(), &token);
    options.batch_size = 10;
    options.client.request_timeout = Duration::from_millis(500);
    double.slow_next(1, Duration::from_secs(2));
    double.drop_next(2);
    let keys = enqueue_punches(&agent, "dev1", 0..30).await;
    agent.start(&options);
    agent.drained(LIMIT).await;

    assert!(keys.iter().all(|key| double.applications(key) == 1));
    let redelivered = keys.iter().filter(|key| double.deliveries(key) > 1).count();
    // The slow batch and the two cut ones were applied upstream but never confirmed.
    assert!(
        redelivered >= 10,
        "only {redelivered} events were sent twice"
    );
    assert!(double.violations().is_empty(), "{:?}", double.violations());
    let status = agent.upstream.as_ref().unwrap().status().unwrap();
    assert!(status.success_rate.unwrap() < 1.0);
    assert!(status.last_error.is_some());
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lower_fencing_token_than_already_seen_is_rejected() {
    let double = UpstreamDouble::start(TOKEN).await;
    let mut agent = AgentSide::new(CAP);
    let current = punch("dev1", 1, 5);
    let stale = punch("dev1", 2, 3);
    let other_device = punch("dev2", 3, 1);
    // Token 0: observed outside a lock session (a pushed punch): never stale.
    let unfenced = punch("dev1", 4, 0);
    for event in [&current, &stale, &other_device, &unfenced] {
        agent.outbox.enqueue(event.clone()).await.unwrap();
    }
    agent.start(&options(
        &double.url(),
        &token_file(agent.dir.path(), TOKEN),
    ));
    agent.drained(LIMIT).await;

    assert_eq!(double.applications(&current.key), 1);
    assert_eq!(double.applications(&stale.key), 0);
    assert_eq!(double.applications(&other_device.key), 1);
    assert_eq!(double.applications(&unfenced.key), 1);
    let letters = agent.outbox.dead_letters().unwrap();
    assert_eq!(letters.len(), 1);
    assert!(
        letters[0].1.reason.contains("stale fencing token"),
        "{:?}",
        letters[0].1
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_keep_events_queued_raise_an_alarm_and_recover_with_a_new_token() {
    let double = UpstreamDouble::start(TOKEN).await;
    let mut agent = AgentSide::new(CAP);
    let token = token_file(agent.dir.path(), "expired-token");
    let keys = enqueue_punches(&agent, "dev1", 0..5).await;
    agent.start(&options(&double.url(), &token));
    wait_for(LIMIT, "three refused attempts", || {
        double.event_requests().len() >= 3
    })
    .await;

    assert!(double.event_requests().iter().all(|r| r.status == 401));
    assert_eq!(
        agent.outbox.stats().unwrap().depth,
        5,
        "events must stay queued"
    );
    assert!(agent.outbox.dead_letters().unwrap().is_empty());
    let alarms = agent.store.alarms().unwrap();
    let auth_alarms = alarms
        .iter()
        .filter(|(_, alarm)| matches!(alarm.kind, AlarmKind::UpstreamUnauthorized { status: 401 }))
        .count();
    assert_eq!(auth_alarms, 1, "one alarm per episode: {alarms:?}");

    std::fs::write(&token, TOKEN).unwrap();
    agent.drained(LIMIT).await;
    assert!(keys.iter().all(|key| double.applications(key) == 1));
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mappings_are_pulled_incrementally_from_the_stored_cursor() {
    let double = UpstreamDouble::start(TOKEN).await;
    let agent = AgentSide::new(CAP);
    let options = options(&double.url(), &token_file(agent.dir.path(), TOKEN));
    let client = UpstreamClient::new(&options.client).unwrap();
    let person =
        |id: &str, name: &str| json!({"person_id": id, "name": name, "privilege": 0, "card": null});
    double.add_mapping("dev1", "7", person("p7", "Ana"), false);
    double.add_mapping("dev1", "8", person("p8", "Bo"), false);
    double.add_mapping("dev2", "7", person("p9", "Cy"), false);
    // The sync engine owns the mappings: it links only users it has read from a device.
    agent.buffer_users("dev1", &["7", "8", "9"]).await;
    agent.buffer_users("dev2", &["7"]).await;
    let sink = agent.engine.as_ref();

    assert_eq!(
        mapping::pull(&client, &agent.store, sink, "agent-1")
            .await
            .unwrap(),
        3
    );
    assert_eq!(mapping::stored_cursor(&agent.store).unwrap(), "3");
    let stored = owner::get(&agent.store, "dev1", "8").unwrap().unwrap();
    assert_eq!(stored.person.unwrap().name, "Bo");
    assert_eq!(
        (stored.person_id.as_str(), stored.state),
        ("p8", MappingState::Confirmed)
    );
    assert_eq!(
        owner::get(&agent.store, "dev2", "7")
            .unwrap()
            .unwrap()
            .person_id,
        "p9"
    );

    double.add_mapping("dev1", "8", person("p8", "Bo"), true);
    double.add_mapping("dev1", "9", person("p10", "Di"), false);
    assert_eq!(
        mapping::pull(&client, &agent.store, sink, "agent-1")
            .await
            .unwrap(),
        2
    );
    assert!(owner::get(&agent.store, "dev1", "8").unwrap().is_none());
    assert!(owner::get(&agent.store, "dev1", "9").unwrap().is_some());
    assert!(owner::get(&agent.store, "dev1", "7").unwrap().is_some());
    assert_eq!(
        mapping::pull(&client, &agent.store, sink, "agent-1")
            .await
            .unwrap(),
        0
    );
    assert_eq!(mapping::stored_cursor(&agent.store).unwrap(), "5");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_is_confirmed_only_if_the_upstream_has_it() {
    let double = UpstreamDouble::start(TOKEN).await;
    let agent = AgentSide::new(CAP);
    let options = options(&double.url(), &token_file(agent.dir.path(), TOKEN));
    let client = UpstreamClient::new(&options.client).unwrap();
    double.add_person(json!({"person_id": "p/1", "name": "Ana", "privilege": 0, "card": "123"}));

    let found = client.person("p/1").await.unwrap().unwrap();
    assert_eq!(
        (found.name.as_str(), found.card.as_deref()),
        ("Ana", Some("123"))
    );
    assert_eq!(client.person("nobody").await.unwrap(), None);
}

/// `upstream::start` as the agent calls it: from the config file's `[upstream]` section.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_follows_the_config_and_never_blocks_queueing() {
    use edge_agent::lifecycle::Tasks;
    use edge_agent::upstream::{self, ForwarderState};

    let double = UpstreamDouble::start(TOKEN).await;
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path(), TOKEN);
    let config = |upstream: &str| {
        edge_agent::config::parse(&format!(
            "[agent]\nid = \"agent-1\"\ndata_dir = \"{}\"\n[upstream]\n{upstream}",
            dir.path().display()
        ))
        .unwrap()
    };
    let store = test_support::agent::open_store(dir.path());
    let outbox = upstream::Outbox::open(&store, CAP).unwrap();
    let engine = test_support::agent::upstream::engine(dir.path(), &store, &outbox);

    // Without a URL events are kept; with an unreadable token the forwarder is not started
    // but events are still kept; both say why in status.
    let mut tasks = Tasks::new();
    let idle = upstream::start(&mut tasks, &config(""), outbox.clone(), engine.clone());
    assert_eq!(
        idle.status().unwrap().forwarder,
        ForwarderState::NotConfigured
    );
    idle.outbox().enqueue(punch("dev1", 1, 1)).await.unwrap();
    let broken = upstream::start(
        &mut tasks,
        &config(&format!(
            "url = \"{}\"\ntoken_file = \"/nonexistent/token\"",
            double.url()
        )),
        outbox.clone(),
        engine.clone(),
    );
    let ForwarderState::Failed(reason) = broken.status().unwrap().forwarder else {
        panic!("a missing token file must show as a failed forwarder");
    };
    assert!(reason.contains("/nonexistent/token"), "{reason}");
    assert_eq!(broken.status().unwrap().queued, 1);

    // Configured: the queued event goes out.
    let running = upstream::start(
        &mut tasks,
        &config(&format!(
            "url = \"{}\"\ntoken_file = \"{}\"",
            double.url(),
            token.display()
        )),
        outbox,
        engine,
    );
    assert_eq!(running.status().unwrap().forwarder, ForwarderState::Running);
    wait_for(LIMIT, "the queued event to be applied", || {
        double.applications(&punch("dev1", 1, 1).key) == 1
    })
    .await;
    assert!(tasks.stop(Duration::from_secs(5)).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mappings_are_pulled_again_when_the_upstream_comes_back() {
    let double = UpstreamDouble::start(TOKEN).await;
    double.set_outage(true);
    let mut agent = AgentSide::new(CAP);
    enqueue_punches(&agent, "dev1", 0..1).await;
    agent.buffer_users("dev1", &["7"]).await;
    // The schedule alone would pull again only in an hour.
    agent.start(&options(
        &double.url(),
        &token_file(agent.dir.path(), TOKEN),
    ));
    wait_for(LIMIT, "a failed delivery", || {
        !double.event_requests().is_empty()
    })
    .await;
    wait_for(LIMIT, "the first mapping pull", || {
        double.requests().iter().any(|r| r.endpoint == "mappings")
    })
    .await;
    double.add_mapping(
        "dev1",
        "7",
        json!({"person_id": "p7", "name": "Ana", "privilege": 0, "card": null}),
        false,
    );

    double.set_outage(false);
    let store = agent.store.clone();
    wait_for(LIMIT, "the mapping pulled after reconnecting", || {
        owner::get(&store, "dev1", "7").unwrap().is_some()
    })
    .await;
    agent.stop().await;
}

/// Invariant 5 (bounded input): a reply body larger than `MAX_REPLY_BODY` is not read to the
/// end. The double applies the batch and pads its valid JSON result past the bound; the agent
/// abandons the reply (retryable), sends the batch again, and the double's per-key ledger shows
/// the events delivered twice but applied once. Without the bound the padded body parses and
/// each event is delivered only once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_body_over_the_bound_is_abandoned_and_retried_not_buffered() {
    use edge_agent::upstream::client::MAX_REPLY_BODY;
    let double = UpstreamDouble::start(TOKEN).await;
    let mut agent = AgentSide::new(CAP);
    let keys = enqueue_punches(&agent, "dev1", 0..5).await;
    double.pad_next(1, MAX_REPLY_BODY + 1);
    agent.start(&options(
        &double.url(),
        &token_file(agent.dir.path(), TOKEN),
    ));
    agent.drained(LIMIT).await;

    assert!(keys.iter().all(|key| double.applications(key) == 1));
    assert!(
        keys.iter().all(|key| double.deliveries(key) == 2),
        "the oversized reply was accepted: {:?}",
        keys.iter()
            .map(|key| double.deliveries(key))
            .collect::<Vec<_>>()
    );
    let status = agent.upstream.as_ref().unwrap().status().unwrap();
    let error = status.last_error.unwrap_or_default();
    assert!(error.contains("larger than"), "{error}");
    assert!(double.violations().is_empty(), "{:?}", double.violations());
    agent.stop().await;
}
