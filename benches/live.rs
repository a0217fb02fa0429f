//! Live-picture figures for the README (printed, never asserted): with 10,000 users buffered
//! for one device (and 34 of them missing),
//!
//! 1. the status report builder (`StatusSources::report`, what `status`, the health message and
//!    every scrape start from): p50/p99 over 50 builds;
//! 2. the health message and the Prometheus exposition derived from one report;
//! 3. a scrape of the real metrics endpoint over loopback TCP (accept, build, render, reply):
//!    p50/p99 over 50 scrapes.
//!
//! Run with `cargo bench -p edge-agent --bench live` (release), or `--profile dev` for a quick
//! look with the debug build (slower figures).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_agent::device::{ReadUser, UserRead};
use edge_agent::events::DeviceUser;
use edge_agent::lifecycle::Tasks;
use edge_agent::live::Live;
use edge_agent::lock::FlockLock;
use edge_agent::mqtt::health::HealthReport;
use edge_agent::ops::metrics::{exposition, MetricsServer};
use edge_agent::ops::status::StatusSources;
use edge_agent::store::{Store, StoreOptions};
use edge_agent::sync::Engine;

fn read_of(ids: impl Iterator<Item = u64>) -> UserRead {
    let users: BTreeMap<String, ReadUser> = ids
        .map(|id| {
            let user = DeviceUser {
                user_id: id.to_string(),
                name: format!("Employee {id}"),
                card: Some((3_000_000_000 + id).to_string()),
                faces: 1,
                ..DeviceUser::default()
            };
            (
                id.to_string(),
                ReadUser {
                    user,
                    slots: vec![11, 50],
                },
            )
        })
        .collect();
    UserRead {
        device_user_count: users.len() as u64,
        users,
        ..UserRead::default()
    }
}

fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let at = |q: f64| {
        let index = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[index].as_secs_f64() * 1e3
    };
    (at(0.5), at(0.99))
}

fn main() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let text = format!(
        "[agent]\nid = \"bench\"\ndata_dir = \"{}\"\n[log]\nfile = \"\"\n\
         [[device]]\nid = \"door\"\ndriver = \"aiface\"\nlisten = \"127.0.0.1:7788\"\nallowed_sn = [\"SN1\"]\n",
        dir.path().display()
    );
    let config = Arc::new(edge_agent::config::parse(&text).unwrap());
    let store = Store::open(&StoreOptions::at(dir.path().join("store")))
        .unwrap()
        .store;
    let outbox = edge_agent::upstream::Outbox::open(&store, u64::MAX).unwrap();
    let audit = edge_agent::audit::Audit::new(store.clone());
    let lock = FlockLock::new(dir.path().join("locks"), 1, Duration::ZERO);
    let live = Live::default();
    let engine = Arc::new(
        Engine::new(
            store.clone(),
            "bench",
            Arc::new(lock),
            outbox.clone(),
            audit,
        )
        .with_live(live.clone()),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime
        .block_on(engine.apply_read("door", &read_of(1..=10_000), 0))
        .unwrap();
    runtime
        .block_on(engine.apply_read("door", &read_of(35..=10_000), 0))
        .unwrap();
    let mut tasks = Tasks::new();
    let upstream = edge_agent::upstream::start(&mut tasks, &config, outbox, engine.clone());
    let sources = StatusSources {
        config,
        store,
        live,
        aiface: None,
        upstream: Some(upstream),
        esl: None,
        started_at_ms: 0,
        logging: None,
        buffer_stats: Default::default(),
    };
    let report = sources.report();
    assert_eq!(report.devices[0].users.total, 10_000);
    assert_eq!(report.devices[0].users.missing, 34);

    let builds: Vec<Duration> = (0..50)
        .map(|_| {
            let started = Instant::now();
            std::hint::black_box(sources.report());
            started.elapsed()
        })
        .collect();
    let (p50, p99) = percentiles(builds);
    println!(
        "status report with 10,000 buffered users (34 missing), {} outbox events: \
         p50 {p50:.1} ms, p99 {p99:.1} ms (50 builds)",
        report.upstream.as_ref().unwrap()["outbox"]["depth"]
    );
    let started = Instant::now();
    let health = serde_json::to_vec(&HealthReport::from_status(&report)).unwrap();
    let text = exposition(&report);
    println!(
        "health message ({} bytes) and exposition ({} bytes) from one report: {:.3} ms",
        health.len(),
        text.len(),
        started.elapsed().as_secs_f64() * 1e3
    );

    let address = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let server = runtime
        .block_on(MetricsServer::bind(address, sources))
        .unwrap();
    {
        let _inside = runtime.enter();
        tasks.spawn("metrics", move |stop| server.run(stop));
    }
    let scrapes: Vec<Duration> = (0..50)
        .map(|_| {
            let started = Instant::now();
            let mut stream = std::net::TcpStream::connect(address).unwrap();
            write!(stream, "GET /metrics HTTP/1.1\r\nHost: bench\r\n\r\n").unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).unwrap();
            assert!(response.starts_with("HTTP/1.1 200"), "{response}");
            started.elapsed()
        })
        .collect();
    let (p50, p99) = percentiles(scrapes);
    println!("scrape of /metrics over loopback: p50 {p50:.1} ms, p99 {p99:.1} ms (50 scrapes)");
    runtime.block_on(tasks.stop(Duration::from_secs(2)));
}
