//! Upstream figures: durable enqueue rate with group commit, forward throughput to the
//! loopback double with batching versus one event per request, and recovery time of an
//! outbox holding 100,000 events.
//!
//! Run with `cargo bench -p edge-agent --bench upstream`. The store lives under a temporary
//! directory on the build's file system, so fsync cost depends on that disk; quote figures
//! with the machine they came from. The forwarder runs with a high rate limit here to show
//! its capacity; with the default `rate_limit = 10` and `batch_size = 100` the configured
//! ceiling is 1,000 events/s.

use std::time::{Duration, Instant};

use edge_agent::store::{Store, StoreOptions, TreeName};
use edge_agent::upstream::{enqueue_in, Outbox};
use test_support::agent::upstream::{options, punch, token_file, AgentSide, TOKEN};
use test_support::upstream_double::UpstreamDouble;

const CAP: u64 = 1 << 40;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        for producers in [1, 16, 64] {
            enqueue_rate(producers, Duration::from_secs(2)).await;
        }
        forward_throughput(100, 20_000).await;
        forward_throughput(1, 2_000).await;
    });
    recovery(100_000);
}

/// Producers each enqueue one event at a time and wait for it to be durable.
async fn enqueue_rate(producers: u64, run_for: Duration) {
    let agent = AgentSide::new(CAP);
    let flushes_before = agent.store.durable_flushes();
    let started = Instant::now();
    let tasks: Vec<_> = (0..producers)
        .map(|producer| {
            let outbox = agent.outbox.clone();
            tokio::spawn(async move {
                let mut done = 0u64;
                while started.elapsed() < run_for {
                    let event = punch("dev1", producer * 10_000_000 + done, 1);
                    outbox.enqueue(event).await.expect("enqueue");
                    done += 1;
                }
                done
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.expect("producer");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let flushes = agent.store.durable_flushes() - flushes_before;
    println!(
        "durable enqueue, {producers:>2} producer(s): {:>8.0} events/s ({total} events, {flushes} \
         fsync rounds, {:.1} events per fsync)",
        total as f64 / elapsed,
        total as f64 / flushes.max(1) as f64
    );
}

/// Fills the outbox, then times the forwarder draining it into the double.
async fn forward_throughput(batch_size: usize, events: u64) {
    let double = UpstreamDouble::start(TOKEN).await;
    let mut agent = AgentSide::new(CAP);
    fill(&agent.store, &agent.outbox, events);
    let mut options = options(&double.url(), &token_file(agent.dir.path(), TOKEN));
    options.batch_size = batch_size;
    options.rate_limit = 1_000_000;
    let started = Instant::now();
    agent.start(&options);
    agent.drained(Duration::from_secs(600)).await;
    let elapsed = started.elapsed().as_secs_f64();
    let requests = double.event_requests().len();
    println!(
        "forward, batch {batch_size:>3}: {:>8.0} events/s ({events} events in {requests} \
         requests, {elapsed:.2} s)",
        events as f64 / elapsed
    );
    agent.stop().await;
}

/// Writes `events` events in large transactions (set-up, not measured).
fn fill(store: &Store, outbox: &Outbox, events: u64) {
    for chunk in (0..events).collect::<Vec<_>>().chunks(1000) {
        let prepared: Vec<_> = chunk
            .iter()
            .map(|n| outbox.prepare(punch("dev1", *n, 1)).expect("room"))
            .collect();
        store
            .transaction(&[TreeName::Outbox], |tx| {
                prepared.iter().try_for_each(|p| enqueue_in(tx, p))
            })
            .expect("fill transaction");
        for p in prepared {
            outbox.committed(p);
        }
    }
    store.make_durable_blocking().expect("durable fill");
}

/// Time from opening a store whose outbox holds `events` events to the first batch ready.
fn recovery(events: u64) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let options = StoreOptions::at(dir.path().join("store"));
    {
        let store = Store::open(&options).expect("open").store;
        let outbox = Outbox::open(&store, CAP).expect("outbox");
        fill(&store, &outbox, events);
    }
    let started = Instant::now();
    let store = Store::open(&options).expect("reopen").store;
    let opened = started.elapsed();
    let outbox = Outbox::open(&store, CAP).expect("outbox");
    let counted = started.elapsed();
    let batch = outbox.peek(100).expect("first batch");
    let ready = started.elapsed();
    let stats = outbox.stats().expect("stats");
    assert_eq!(batch.len(), 100);
    assert_eq!(stats.depth, events);
    println!(
        "recovery of {events} queued events ({:.1} MB): store open {opened:.2?}, outbox counted \
         {counted:.2?}, first batch ready {ready:.2?}",
        stats.bytes as f64 / 1e6
    );
}
