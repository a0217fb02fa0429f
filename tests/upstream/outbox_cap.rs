//! The outbox byte cap: past it new events are refused with an error and one alarm, nothing
//! queued is dropped or damaged, and events are accepted again once the forwarder drained it.

use std::time::Duration;

use edge_agent::store::{AlarmKind, TreeName};
use edge_agent::upstream::{enqueue_in, OutboxError};
use test_support::agent::upstream::{options, punch, token_file, AgentSide, TOKEN};
use test_support::upstream_double::UpstreamDouble;

const CAP: u64 = 4_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_outbox_refuses_new_events_with_an_alarm_and_recovers_after_draining() {
    let double = UpstreamDouble::start(TOKEN).await;
    double.set_outage(true);
    let mut agent = AgentSide::new(CAP);
    agent.start(&options(
        &double.url(),
        &token_file(agent.dir.path(), TOKEN),
    ));

    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    for n in 0..200 {
        let event = punch("dev1", n, 1);
        match agent.outbox.enqueue(event.clone()).await {
            Ok(_) => accepted.push(event.key),
            Err(OutboxError::Full {
                queued_bytes,
                max_bytes,
                ..
            }) => {
                assert!(queued_bytes <= CAP && max_bytes == CAP);
                refused.push(event.key);
            }
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert!(!accepted.is_empty() && !refused.is_empty());
    assert_eq!(accepted.len() + refused.len(), 200);
    let error = agent
        .outbox
        .enqueue(punch("dev1", 999, 1))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("outbox is full"), "{error}");
    assert!(
        error.to_string().contains("upstream.outbox_max_bytes"),
        "{error}"
    );

    // A producer enqueuing inside its own transaction is refused before the transaction.
    assert!(matches!(
        agent.outbox.prepare(punch("dev1", 1000, 1)),
        Err(OutboxError::Full { .. })
    ));

    let stats = agent.outbox.stats().unwrap();
    assert!(stats.refusing);
    assert!(stats.bytes <= CAP);
    assert_eq!(stats.depth, accepted.len() as u64);
    let full_alarms = agent
        .store
        .alarms()
        .unwrap()
        .into_iter()
        .filter(|(_, alarm)| matches!(alarm.kind, AlarmKind::OutboxFull { max_bytes: CAP, .. }))
        .count();
    assert_eq!(
        full_alarms, 1,
        "one alarm per episode, not one per refused event"
    );
    let queued: Vec<String> = agent
        .outbox
        .peek(usize::MAX)
        .unwrap()
        .into_iter()
        .map(|queued| queued.event.key)
        .collect();
    assert_eq!(
        queued, accepted,
        "what was accepted must be intact and in order"
    );

    // The upstream comes back: everything accepted is delivered once, nothing refused is.
    double.set_outage(false);
    agent.drained(Duration::from_secs(20)).await;
    assert!(accepted.iter().all(|key| double.applications(key) == 1));
    assert!(refused.iter().all(|key| double.deliveries(key) == 0));
    assert!(!agent.outbox.stats().unwrap().refusing);

    // And new events are accepted again, also inside a caller's transaction.
    let prepared = agent.outbox.prepare(punch("dev1", 2000, 1)).unwrap();
    agent
        .store
        .transaction(&[TreeName::Outbox, TreeName::Buffer], |tx| {
            enqueue_in(tx, &prepared)
        })
        .unwrap();
    let key = punch("dev1", 2000, 1).key;
    agent.outbox.committed(prepared);
    agent.store.make_durable().await.unwrap();
    agent.drained(Duration::from_secs(20)).await;
    assert_eq!(double.applications(&key), 1);
    agent.stop().await;
}
