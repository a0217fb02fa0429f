//! A 10-minute upstream outage, compressed 100× (6 s; base backoff 10 ms for 1 s, cap 3 s for
//! 5 min), with events arriving throughout: nothing is lost, the backlog drains in order once
//! the upstream is back, and the requests made during the outage stay within what the backoff
//! allows, far below what the rate limit alone would allow.

use std::time::{Duration, Instant};

use test_support::agent::upstream::{options, punch, token_file, AgentSide, TOKEN};
use test_support::upstream_double::UpstreamDouble;
use test_support::wait_for;

/// Compression factor: one test second stands for 100 real seconds.
const SCALE: u32 = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_outage_loses_nothing_and_costs_few_requests() {
    let outage = Duration::from_secs(600) / SCALE;
    let base = Duration::from_secs(1) / SCALE;
    let cap = Duration::from_secs(300) / SCALE;
    let double = UpstreamDouble::start(TOKEN).await;
    let mut agent = AgentSide::new(64_000_000);
    let mut options = options(&double.url(), &token_file(agent.dir.path(), TOKEN));
    options.base_backoff = base;
    options.max_backoff = cap;
    options.rate_limit = 10;

    double.set_outage(true);
    agent.start(&options);
    let started = Instant::now();
    let mut keys = Vec::new();
    let mut n = 0;
    while started.elapsed() < outage {
        let event = punch("dev1", n, 1);
        keys.push(event.key.clone());
        agent
            .outbox
            .enqueue(event)
            .await
            .expect("enqueue during the outage");
        n += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let during = double.event_requests();
    double.set_outage(false);

    assert!(during.iter().all(|r| r.status == 503));
    // Attempts while the ceiling is below the cap: at most log2(cap/base) + 1 = 10. After
    // that each wait is uniform in [0, cap], so 6 s hold about 4 more; 12 more would need
    // 12 draws averaging under 1/6 of the cap. The rate limit alone would allow 60.
    let growing = (cap.as_secs_f64() / base.as_secs_f64()).log2().ceil() as usize + 1;
    let bound = growing + 12;
    assert!(
        during.len() <= bound,
        "{} requests during a {outage:?} outage (bound {bound})",
        during.len()
    );
    assert!(
        during.len() >= 3,
        "the forwarder stopped retrying: {}",
        during.len()
    );
    let status = agent.upstream.as_ref().unwrap().status().unwrap();
    assert_eq!(status.queued, keys.len() as u64);
    assert!(status.next_attempt_at_ms.is_some());
    assert!(status.oldest_age_ms.is_some());

    // The upstream is back: the backlog drains (within one capped wait plus sending).
    agent.drained(cap * 2 + Duration::from_secs(10)).await;
    assert_eq!(double.applied_order(), keys, "order or completeness broken");
    assert!(keys.iter().all(|key| double.applications(key) == 1));
    let upstream = agent.upstream.clone().unwrap();
    wait_for(Duration::from_secs(5), "delivered count", || {
        upstream.status().unwrap().delivered == keys.len() as u64
    })
    .await;
    println!(
        "{} events queued during a {outage:?} outage, {} requests during it, drained after",
        keys.len(),
        during.len()
    );
    agent.stop().await;
}
