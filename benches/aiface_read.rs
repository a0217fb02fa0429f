//! AI06 read figures for the README: a complete first read of 5,000 users (10 KB face photo +
//! card each) from the emulator over loopback — wall time, the agent's own CPU time and peak
//! RSS — and a steady-state poll with no changes: round trips and bytes.
//!
//! The emulator runs as a separate process (`target/release/device-sim`), so the CPU and memory
//! figures are the agent's alone. Run:
//!
//! ```text
//! cargo build --release -p device-protocols && cargo bench -p edge-agent --bench aiface_read
//! ```
//! Knobs: `AIFACE_BENCH_USERS` (default 5000), `AIFACE_BENCH_PHOTO_KB` (default 10).

use edge_agent::config;
use edge_agent::device::aiface::AifaceServer;
use edge_agent::device::{DeviceSession, FetchMode, SummarySink};
use edge_agent::lifecycle::Tasks;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn usage() -> (f64, u64) {
    // SAFETY: getrusage fills the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let cpu = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (
        cpu(usage.ru_utime) + cpu(usage.ru_stime),
        usage.ru_maxrss as u64,
    )
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // The same allocator setting as the agent binary.
    edge_agent::ops::memory::limit_malloc_arenas();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(measure());
}

async fn measure() {
    let users = env_or("AIFACE_BENCH_USERS", 5000);
    let photo_kb = env_or("AIFACE_BENCH_PHOTO_KB", 10);
    let sim = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("device-sim");
    if !sim.exists() {
        eprintln!(
            "{} is missing: run `cargo build --release -p device-protocols` first",
            sim.display()
        );
        std::process::exit(2);
    }
    let config = config::parse(
        "[agent]\nid = \"bench\"\n[[device]]\nid = \"ai06\"\ndriver = \"aiface\"\n\
         listen = \"127.0.0.1:0\"\nallowed_sn = [\"SIM00000001\"]\ncommand_timeout = \"30s\"\n",
    )
    .unwrap();
    let server = AifaceServer::bind(&config.device, None, None)
        .await
        .unwrap();
    let url = format!("ws://{}/pub/chat", server.local_addrs()[0]);
    let hub = server.hub();
    let mut tasks = Tasks::new();
    tasks.spawn("listener", move |stop| server.run(stop));
    let mut emulator = Command::new(&sim)
        .args(["aiface", "--url", &url, "--users", &users.to_string()])
        .args(["--photo-kb", &photo_kb.to_string(), "--cards", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let session = hub
        .session("ai06", Duration::from_secs(30))
        .await
        .expect("emulator registered");

    let mut sink = SummarySink::default();
    let (cpu_before, _) = usage();
    let started = Instant::now();
    let first = session
        .read_users(FetchMode::Missing, &mut sink)
        .await
        .unwrap();
    let wall = started.elapsed().as_secs_f64();
    let (cpu_after, peak_rss_kb) = usage();
    let cpu = cpu_after - cpu_before;
    println!(
        "first complete read: {} users, {} credentials, {:.1} MB received, {} round trips",
        first.users.len(),
        first.credentials_fetched,
        first.bytes_received as f64 / 1e6,
        first.round_trips
    );
    println!(
        "  wall {wall:.2} s, agent CPU {cpu:.2} s ({:.0}% of wall), agent peak RSS {:.1} MB",
        100.0 * cpu / wall,
        peak_rss_kb as f64 / 1024.0
    );

    let started = Instant::now();
    let steady = session
        .read_users(FetchMode::Missing, &mut sink)
        .await
        .unwrap();
    println!(
        "steady-state poll, no changes: {} round trips, {} credentials fetched, {:.1} KB received, {:.3} s",
        steady.round_trips,
        steady.credentials_fetched,
        steady.bytes_received as f64 / 1e3,
        started.elapsed().as_secs_f64()
    );
    let _ = emulator.kill();
    let _ = emulator.wait();
    tasks.stop(Duration::from_secs(2)).await;
}
