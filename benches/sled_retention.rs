//! How much of a tree sled 0.34 keeps in memory after it was read, with the agent's settings
//! (1 MiB `cache_capacity`): the measurement behind the "what still holds memory" part of
//! `docs/footprint.md`. sled's cache counts accesses in 256 shards and only considers
//! evicting a shard after 64 accesses to it, keeping at least one page per shard; a scan
//! touches each page once, so the pages it read stay until enough later traffic lands in
//! their shards. Point reads (many accesses per page) do get evicted.
//!
//! For each phase it prints the process's resident set and its anonymous part (the heap)
//! after filling a fresh store with `RETENTION_RECORDS` (default 60,000) records of
//! `RETENTION_VALUE_BYTES` (default 100) in batches of 500, then after reopening it, five
//! full scans, and five rounds of point reads of every key. Run:
//!
//! ```text
//! cargo bench -p edge-agent --bench sled_retention
//! ```

use std::path::Path;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `VmRSS` and `RssAnon` of this process, in MB.
fn resident() -> (f64, f64) {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("RssAnon:"))
}

fn report(phase: &str) {
    let (rss, anon) = resident();
    println!("{phase:<44} RSS {rss:6.1} MB   heap (RssAnon) {anon:6.1} MB");
}

fn open(path: &Path) -> sled::Db {
    sled::Config::new()
        .path(path)
        .cache_capacity(1024 * 1024)
        .flush_every_ms(Some(5_000))
        .open()
        .expect("open sled")
}

fn key(i: usize) -> Vec<u8> {
    format!("door\0user{i:06}").into_bytes()
}

/// One phase in its own process (so nothing an earlier phase left in the heap counts).
fn phase(name: &str, path: &Path, records: usize, value_bytes: usize) {
    let db = open(path);
    let tree = db.open_tree("t").unwrap();
    match name {
        "fill" => {
            report("opened empty");
            for start in (0..records).step_by(500) {
                let mut batch = sled::Batch::default();
                for i in start..(start + 500).min(records) {
                    batch.insert(key(i), vec![7u8; value_bytes]);
                }
                tree.apply_batch(batch).unwrap();
            }
            db.flush().unwrap();
            report("filled");
        }
        "scan" => {
            report("reopened");
            for round in 1..=5 {
                let started = std::time::Instant::now();
                assert_eq!(tree.iter().count(), records);
                let ms = started.elapsed().as_secs_f64() * 1e3;
                report(&format!("after full scan {round} ({ms:.0} ms)"));
            }
        }
        "walk" => {
            report("reopened");
            for round in 1..=5 {
                let started = std::time::Instant::now();
                let mut seen = 0;
                let mut after: Option<sled::IVec> = None;
                loop {
                    let next = match &after {
                        None => tree.first().unwrap(),
                        Some(key) => tree.get_gt(key).unwrap(),
                    };
                    let Some((key, _)) = next else { break };
                    seen += 1;
                    after = Some(key);
                }
                assert_eq!(seen, records);
                let ms = started.elapsed().as_secs_f64() * 1e3;
                report(&format!("after a key-by-key walk {round} ({ms:.0} ms)"));
            }
        }
        _ => {
            report("reopened");
            for round in 1..=5 {
                for i in 0..records {
                    assert!(tree.get(key(i)).unwrap().is_some());
                }
                report(&format!("after point reads of every key, round {round}"));
            }
        }
    }
}

fn main() {
    let records = env_or("RETENTION_RECORDS", 60_000);
    let value_bytes = env_or("RETENTION_VALUE_BYTES", 100);
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, name, path] = args.as_slice() {
        if flag == "--phase" {
            return phase(name, Path::new(path), records, value_bytes);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    println!("sled 0.34 with a 1 MiB cache: {records} records of {value_bytes} bytes");
    let me = std::env::current_exe().unwrap();
    for name in ["fill", "scan", "walk", "get"] {
        let status = std::process::Command::new(&me)
            .arg("--phase")
            .arg(name)
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success(), "phase {name}: {status}");
    }
}
