//! Sync engine figures for the README (printed, never asserted):
//!
//! 1. diff + store update of a 10,000-user device with 1% churn (34 users gone, 33 new, 33
//!    changed): wall time of `Engine::apply_read` (diff, the one transaction, the durable
//!    flush) and the peak resident memory while it runs;
//!    Before that, the first read of those 10,000 users on fresh stores: in steps of 100, 250
//!    and the default `first_read_chunk` users (what the agent does, see
//!    `edge_agent::sync::apply`), then in one transaction (`first_read_chunk` 0), each with
//!    its peak. After it,
//!    what that first read wrote, per tree (records, key + value bytes), and the peak a
//!    single sled transaction of each tree's records alone costs — to show which trees
//!    dominate a one-transaction first read's peak;
//! 2. a backup file of 5,000 users each with a card and a 10 KiB face photo: size, write time
//!    (streamed, fsynced, renamed) and the time to verify it again.
//!
//! Run with `cargo bench -p edge-agent --bench sync`. Peak memory is the process's VmHWM,
//! reset just before the measured step (Linux `clear_refs`), so it covers the step only.

use device_protocols::aiface::CredentialValue;
use edge_agent::device::{Credential, ReadUser, UserRead};
use edge_agent::events::DeviceUser;
use edge_agent::lock::FlockLock;
use edge_agent::store::{Store, StoreOptions};
use edge_agent::sync::backup::file::{self, BackupWriter};
use edge_agent::sync::Engine;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn user(id: u64, name_suffix: &str) -> (String, ReadUser) {
    let user = DeviceUser {
        user_id: id.to_string(),
        name: format!("Employee {id}{name_suffix}"),
        card: Some((3_000_000_000 + id).to_string()),
        faces: 1,
        fingerprints: 2,
        ..DeviceUser::default()
    };
    (
        id.to_string(),
        ReadUser {
            user,
            slots: vec![0, 1, 11, 50],
        },
    )
}

fn read_of(users: impl Iterator<Item = (String, ReadUser)>) -> UserRead {
    let users: std::collections::BTreeMap<_, _> = users.collect();
    UserRead {
        device_user_count: users.len() as u64,
        users,
        ..UserRead::default()
    }
}

/// Peak and current resident memory of this process, in KiB.
fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn reset_peak_memory() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Hands freed heap back to the kernel, so RSS shows what is in use rather than what glibc
/// keeps cached from an earlier step.
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap pages; no pointers are involved.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn open_engine(dir: &std::path::Path) -> Engine {
    let store = Store::open(&StoreOptions::at(dir.join("store")))
        .unwrap()
        .store;
    let lock = FlockLock::new(dir.join("locks"), 1, Duration::ZERO);
    let outbox = edge_agent::upstream::Outbox::open(&store, u64::MAX).unwrap();
    let audit = edge_agent::audit::Audit::new(store.clone());
    Engine::new(store, "bench", Arc::new(lock), outbox, audit)
}

/// Applies the first read of 10,000 users to a fresh store in `dir`, committing its new users
/// in steps of `chunk` (0: one transaction), and prints its time and peak.
fn first_read_figures(runtime: &tokio::runtime::Runtime, dir: &std::path::Path, chunk: usize) {
    let engine = open_engine(dir).with_first_read_chunk(chunk);
    let first = read_of((1..=10_000).map(|id| user(id, "")));
    trim_heap();
    let (_, rss_before) = memory_kib();
    let reset = reset_peak_memory();
    let started = Instant::now();
    runtime
        .block_on(engine.apply_read("door", &first, 0))
        .unwrap();
    let (peak, _) = memory_kib();
    let how = match chunk {
        0 => "40,000 records in one transaction".to_string(),
        n => format!("new users committed in steps of {n}, then the final commit"),
    };
    println!(
        "first read of 10,000 users (all discovered, {how}): applied in {:.0} ms; RSS \
         {rss_before} KiB before, peak {peak} KiB{}",
        started.elapsed().as_secs_f64() * 1e3,
        if reset { "" } else { " (process-wide peak)" }
    );
}

fn churn_figures(runtime: &tokio::runtime::Runtime) {
    // Smallest steps first, the one-transaction read last: a bigger apply leaves a heap glibc
    // does not hand back, which would hide a smaller one's peak under it.
    for chunk in [100, 250] {
        let scratch = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        first_read_figures(runtime, scratch.path(), chunk);
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    first_read_figures(
        runtime,
        dir.path(),
        edge_agent::config::DEFAULT_FIRST_READ_CHUNK as usize,
    );
    {
        let one = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        first_read_figures(runtime, one.path(), 0);
    }

    first_read_census(&dir.path().join("store"));

    // A fresh store handle, as an agent that has run for a while has: 10,000 users stored.
    trim_heap();
    let engine = open_engine(dir.path());
    trim_heap();
    println!(
        "store holding 10,000 users (snapshot, buffer, events, audit) reopened: RSS {} KiB \
         (sled's own footprint after recovery)",
        memory_kib().1
    );
    // 1% churn: 34 gone, 33 new, 33 renamed.
    let churned = read_of(
        (35..=10_000)
            .map(|id| {
                if id % 300 == 0 {
                    user(id, " (renamed)")
                } else {
                    user(id, "")
                }
            })
            .chain((20_001..=20_033).map(|id| user(id, ""))),
    );
    trim_heap();
    let (_, rss_before) = memory_kib();
    let reset = reset_peak_memory();
    let started = Instant::now();
    let applied = runtime
        .block_on(engine.apply_read("door", &churned, 0))
        .unwrap();
    let elapsed = started.elapsed();
    let (peak, _) = memory_kib();
    println!(
        "10,000 users, 1% churn ({} gone, {} new, {} changed): diff + one transaction + durable \
         flush in {:.1} ms; RSS {} KiB before (the read itself in memory), peak {} KiB during \
         the step{}",
        applied.missing.len(),
        applied.discovered.len(),
        applied.changed.len(),
        elapsed.as_secs_f64() * 1e3,
        rss_before,
        peak,
        if reset { "" } else { " (process-wide peak)" }
    );
    let started = Instant::now();
    runtime
        .block_on(engine.apply_read("door", &churned, 0))
        .unwrap();
    println!(
        "10,000 users, no change (steady-state poll): applied in {:.1} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
}

/// Records and bytes per tree of a store holding exactly one applied first read, then the
/// peak resident memory of one sled transaction writing as many records of the same sizes
/// into a scratch tree, tree by tree (sled keeps a transaction's write set and every node
/// version it replaced until the commit ends; this shows which trees that cost comes from).
fn first_read_census(store_dir: &std::path::Path) {
    let db = match edge_agent::store::StoreOptions::at(store_dir)
        .sled_config()
        .open()
    {
        Ok(db) => db,
        Err(err) => {
            println!("first-read census skipped: {err}");
            return;
        }
    };
    let mut census = Vec::new();
    for name in db.tree_names() {
        let tree = db.open_tree(&name).unwrap();
        let (mut records, mut bytes) = (0u64, 0u64);
        for entry in tree.iter() {
            let (key, value) = entry.unwrap();
            records += 1;
            bytes += (key.len() + value.len()) as u64;
        }
        if records > 0 {
            census.push((String::from_utf8_lossy(&name).into_owned(), records, bytes));
        }
    }
    drop(db);
    census.sort_by_key(|(_, records, _)| std::cmp::Reverse(*records));
    let scratch = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let db = sled::Config::new()
        .path(scratch.path())
        .cache_capacity(1 << 20)
        .open()
        .unwrap();
    for (name, records, bytes) in &census {
        let tree = db.open_tree(name).unwrap();
        let size = (*bytes / *records) as usize;
        trim_heap();
        let (_, rss_before) = memory_kib();
        reset_peak_memory();
        tree.transaction(|tx| {
            for i in 0..*records {
                let mut value = vec![0u8; size.saturating_sub(8)];
                value.extend_from_slice(&i.to_be_bytes());
                tx.insert(&i.to_be_bytes(), value)?;
            }
            Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
        })
        .unwrap();
        let (peak, _) = memory_kib();
        println!(
            "first read wrote {records:>6} records ({:>7.1} KiB, {size} B each) into {name:<14}; \
             one transaction of them alone: peak +{} KiB",
            *bytes as f64 / 1024.0,
            peak.saturating_sub(rss_before)
        );
    }
}

fn backup_figures() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let photo: String = {
        use base64::Engine as _;
        let bytes: Vec<u8> = (0..10 * 1024 / 4 * 3)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        base64::engine::general_purpose::STANDARD.encode(bytes)
    };
    let started = Instant::now();
    let mut writer = BackupWriter::create(dir.path(), "door", "bench", 1_795_000_000_000).unwrap();
    for id in 1..=5_000u64 {
        for (slot, value) in [
            (11, CredentialValue::Number((3_000_000_000 + id).into())),
            (50, CredentialValue::Text(photo.clone())),
        ] {
            writer
                .add(&Credential {
                    user_id: id.to_string(),
                    slot,
                    name: format!("Employee {id}"),
                    privilege: 0,
                    value,
                })
                .unwrap();
        }
    }
    let info = writer.finish(5_000).unwrap();
    let written = started.elapsed();
    let started = Instant::now();
    file::verify(&info.path).unwrap();
    let verified = started.elapsed();
    println!(
        "backup of 5,000 users (card + 10 KiB photo each): {:.1} MB, written (streamed, fsync, \
         rename) in {:.0} ms, verified (sha256 + counts) in {:.0} ms",
        info.size_bytes as f64 / 1e6,
        written.as_secs_f64() * 1e3,
        verified.as_secs_f64() * 1e3
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for the list of benchmarks
    }
    // The same allocator setting as the agent binary, so memory figures match the box.
    edge_agent::ops::memory::limit_malloc_arenas();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    churn_figures(&runtime);
    backup_figures();
}
