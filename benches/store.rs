//! Store figures for the README: durable writes per second with one flush per write versus
//! group commit, and the on-disk size of 10,000 buffered-user-sized records.
//!
//! Run with `cargo bench -p edge-agent --bench store`. The store lives under cargo's target
//! temporary directory, i.e. on the same file system as the build; fsync cost depends
//! entirely on that disk, so quote figures together with the machine they came from.

use std::path::Path;
use std::time::{Duration, Instant};

use edge_agent::store::{envelope, keys, Record, Store, StoreOptions, TreeName};
use serde::{Deserialize, Serialize};

/// Roughly what the buffer keeps per device user: ids, name, a credential summary (no
/// templates, only what is enrolled plus a digest), timestamps and a status.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct BufferedUser {
    device_id: String,
    user_id: String,
    name: String,
    department: String,
    card_number: Option<String>,
    privilege: u8,
    credentials: CredentialSummary,
    first_seen_unix_ms: i64,
    last_seen_unix_ms: i64,
    last_changed_unix_ms: i64,
    status: UserStatus,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CredentialSummary {
    fingerprints: u8,
    face: bool,
    palm: bool,
    password_set: bool,
    fingerprint_digest: [u8; 32],
    face_digest: [u8; 32],
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum UserStatus {
    Active,
    Disabled { since_unix_ms: i64 },
}

impl Record for BufferedUser {
    const KIND: &'static str = "bench_buffered_user";
    const VERSION: u32 = 1;
}

fn user(n: u64) -> BufferedUser {
    BufferedUser {
        device_id: "ai06-entrance-1".into(),
        user_id: format!("{:08}", n),
        name: format!("Employee Number {n:06} Lastname"),
        department: "Warehouse Operations, Shift B".into(),
        card_number: Some(format!("{:010}", n * 7919)),
        privilege: 0,
        credentials: CredentialSummary {
            fingerprints: 2,
            face: true,
            palm: false,
            password_set: n % 3 == 0,
            fingerprint_digest: [n as u8; 32],
            face_digest: [!n as u8; 32],
        },
        first_seen_unix_ms: 1_763_800_000_000 + n as i64,
        last_seen_unix_ms: 1_763_900_000_000 + n as i64,
        last_changed_unix_ms: 1_763_850_000_000 + n as i64,
        status: if n % 10 == 0 {
            UserStatus::Disabled {
                since_unix_ms: 1_763_000_000_000,
            }
        } else {
            UserStatus::Active
        },
    }
}

fn open(dir: &Path, name: &str, group_commit_window: Duration) -> Store {
    let options = StoreOptions {
        group_commit_window,
        ..StoreOptions::at(dir.join(name))
    };
    Store::open(&options).expect("open bench store").store
}

fn write_one(store: &Store) {
    let sequence = store.next_sequence().expect("sequence");
    store
        .insert(TreeName::Outbox, keys::sequence(sequence), &user(sequence))
        .expect("insert");
}

fn report(label: &str, writes: u64, elapsed: Duration, flushes: u64) {
    println!(
        "{label:<58} {:>8.0} writes/s  ({writes} writes, {flushes} flush+fsync rounds, {:.2} ms/write)",
        writes as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1000.0 / writes as f64
    );
}

/// Each writer thread: write, then flush+fsync on its own thread (no grouping).
fn flush_per_write(dir: &Path, writers: u64, per_writer: u64) {
    let store = open(dir, &format!("per-write-{writers}"), Duration::ZERO);
    let before = store.durable_flushes();
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..writers {
            scope.spawn(|| {
                for _ in 0..per_writer {
                    write_one(&store);
                    store.make_durable_blocking().expect("durable");
                }
            });
        }
    });
    report(
        &format!("flush per write, {writers} writer thread(s)"),
        writers * per_writer,
        started.elapsed(),
        store.durable_flushes() - before,
    );
}

/// Each writer task: write, then await the shared group commit.
fn group_commit(dir: &Path, window: Duration, writers: u64, per_writer: u64) {
    let store = open(dir, &format!("group-{writers}-{window:?}"), window);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let before = store.durable_flushes();
    let started = Instant::now();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..writers)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    for _ in 0..per_writer {
                        write_one(&store);
                        store.make_durable().await.expect("durable");
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("writer");
        }
    });
    report(
        &format!("group commit ({window:?} window), {writers} writer task(s)"),
        writers * per_writer,
        started.elapsed(),
        store.durable_flushes() - before,
    );
}

fn directory_bytes(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .expect("list store")
        .map(|entry| {
            let entry = entry.expect("entry");
            let meta = entry.metadata().expect("metadata");
            if meta.is_dir() {
                directory_bytes(&entry.path())
            } else {
                meta.len()
            }
        })
        .sum()
}

fn size_of_ten_thousand(dir: &Path) {
    const RECORDS: u64 = 10_000;
    let path = dir.join("size");
    let store = open(dir, "size", StoreOptions::default().group_commit_window);
    let mut value_bytes = 0;
    for n in 0..RECORDS {
        let record = user(n);
        value_bytes += envelope::encode(&record).expect("encode").len() as u64;
        let key = keys::device_user(&record.device_id, &record.user_id).expect("key");
        store
            .insert(TreeName::Buffer, key, &record)
            .expect("insert");
    }
    store.make_durable_blocking().expect("durable");
    let sled_size = store.size_on_disk().expect("size");
    drop(store);
    let on_disk = directory_bytes(&path);
    println!(
        "{RECORDS} buffered users: {:.0} B/value (envelope + postcard), {:.2} MiB of values; \
         sled size_on_disk {:.2} MiB; directory after close {:.2} MiB",
        value_bytes as f64 / RECORDS as f64,
        value_bytes as f64 / 1_048_576.0,
        sled_size as f64 / 1_048_576.0,
        on_disk as f64 / 1_048_576.0,
    );
}

fn main() {
    // `cargo bench` passes `--bench`; there are no options to parse.
    let base = option_env!("CARGO_TARGET_TMPDIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(base).expect("bench directory");
    println!("store bench in {}", dir.path().display());
    flush_per_write(dir.path(), 1, 300);
    flush_per_write(dir.path(), 16, 40);
    for window in [
        Duration::ZERO,
        Duration::from_millis(1),
        Duration::from_millis(2),
    ] {
        group_commit(dir.path(), window, 1, 300);
        group_commit(dir.path(), window, 16, 40);
    }
    size_of_ten_thousand(dir.path());
}
