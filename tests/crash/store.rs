//! Durability of acknowledged writes across real process crashes.
//!
//! The test binary re-executes itself: run with `EDGE_AGENT_STORE_WRITER=<store dir>`, the
//! `writer_child` test becomes a writer process that commits records (one transaction over
//! the buffer and outbox trees), waits for [`Store::make_durable`] and only then prints
//! `ACK <key>` on stdout. The parent kills it with SIGKILL at random moments, reopens the
//! store and checks that every acknowledged record is there and decodes, with the credential
//! value file each record also caches. Without the variable `writer_child` returns at once.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use edge_agent::store::{keys, Record, Store, StoreOptions, TreeName};
use edge_agent::sync::credentials::{self, StoredCredential, StoredValue};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Names the store directory the child writes to; its presence makes `writer_child` a writer.
const WRITER_ENV: &str = "EDGE_AGENT_STORE_WRITER";
/// How many concurrent writer tasks the child runs (group commit needs more than one).
const WRITERS_ENV: &str = "EDGE_AGENT_STORE_WRITERS";
/// If set, the child stops after this many records per writer instead of running until killed.
const LIMIT_ENV: &str = "EDGE_AGENT_STORE_WRITE_LIMIT";
/// The full name of the child entry point below, for `--exact`.
const CHILD_TEST: &str = "store::writer_child";
/// If set, each record also caches a credential value of its own (a value file beside sled).
const CREDENTIALS_ENV: &str = "EDGE_AGENT_STORE_CREDENTIALS";
/// If set, each record also caches this many credential values of its own through the sync
/// engine's read sink, which makes them durable in one round (batched value files).
const BATCH_ENV: &str = "EDGE_AGENT_STORE_VALUE_BATCH";
/// Printed before the key of each acknowledged record.
const ACK: &str = "ACK ";

/// A record about the size of a buffered device user.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Written {
    sequence: u64,
    writer: u32,
    payload: String,
}

impl Record for Written {
    const KIND: &'static str = "crash_test_record";
    const VERSION: u32 = 1;
}

fn written(sequence: u64, writer: u32) -> Written {
    Written {
        sequence,
        writer,
        payload: format!("{sequence:0>180}"),
    }
}

/// The child: write, make durable, acknowledge, forever (or up to the limit).
#[test]
fn writer_child() {
    let Some(path) = std::env::var_os(WRITER_ENV) else {
        return;
    };
    let writers: u32 = env_number(WRITERS_ENV).unwrap_or(4);
    let limit = env_number(LIMIT_ENV);
    let store = Store::open(&StoreOptions::at(PathBuf::from(path)))
        .expect("child opens the store")
        .store;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let tasks: Vec<_> = (0..writers)
            .map(|writer| tokio::spawn(write_and_acknowledge(store.clone(), writer, limit)))
            .collect();
        for task in tasks {
            task.await.expect("writer task");
        }
    });
}

async fn write_and_acknowledge(store: Store, writer: u32, limit: Option<u32>) {
    let mut done = 0;
    while limit.is_none_or(|limit| done < limit) {
        let sequence = store.next_sequence().expect("sequence number");
        let key = keys::sequence(sequence);
        let record = written(sequence, writer);
        store
            .transaction(&[TreeName::Buffer, TreeName::Outbox], |tx| {
                tx.insert(TreeName::Buffer, key, &record)?;
                tx.insert(TreeName::Outbox, key, &record)?;
                Ok(())
            })
            .expect("transaction");
        if std::env::var_os(CREDENTIALS_ENV).is_some() {
            let photo = StoredCredential {
                name: format!("user {sequence}"),
                privilege: 0,
                value: StoredValue::Text(format!("{sequence:0>8192}")),
            };
            let key = credentials::key("door", &sequence.to_string(), 50).expect("key");
            credentials::put(&store, key, &photo).expect("cache the credential");
        }
        if let Some(batch) = env_number(BATCH_ENV) {
            cache_a_batch(&store, sequence, batch);
        }
        store.make_durable().await.expect("durable flush");
        let mut out = std::io::stdout().lock();
        writeln!(out, "{ACK}{sequence}").expect("stdout");
        out.flush().expect("stdout");
        done += 1;
    }
}

/// Caches `batch` photos of record `sequence` as a read does: through the engine's read sink,
/// written without fsync and made durable in one round when the read ends.
fn cache_a_batch(store: &Store, sequence: u64, batch: u32) {
    use edge_agent::device::{Credential, ReadSink};
    let mut sink = credentials::StoreSink::new(store.clone(), "door");
    for user in 0..batch {
        let photo = Credential {
            user_id: format!("{sequence}-{user}"),
            slot: 50,
            name: format!("user {sequence}-{user}"),
            privilege: 0,
            value: device_protocols::aiface::CredentialValue::Text(format!(
                "{sequence:0>4096}{user:0>4096}"
            )),
        };
        sink.credential(photo).expect("cache the credential");
    }
    sink.finish().expect("the batch made durable");
}

fn env_number(name: &str) -> Option<u32> {
    std::env::var(name).ok().map(|value| {
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number"))
    })
}

/// Starts the child (optionally under another program such as strace) writing to `store`,
/// with extra environment variables `env`.
fn spawn_writer(
    wrapper: &[&str],
    store: &Path,
    writers: u32,
    limit: Option<u32>,
    env: &[(&str, &str)],
) -> Child {
    let test_binary = std::env::current_exe().expect("test binary path");
    let mut command = match wrapper.split_first() {
        None => Command::new(&test_binary),
        Some((program, args)) => {
            let mut command = Command::new(program);
            command.args(args).arg(&test_binary);
            command
        }
    };
    command
        .args([CHILD_TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(WRITER_ENV, store)
        .env(WRITERS_ENV, writers.to_string())
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    match limit {
        Some(limit) => command.env(LIMIT_ENV, limit.to_string()),
        None => command.env_remove(LIMIT_ENV),
    };
    command.spawn().expect("spawn the writer child")
}

/// Reads the child's stdout on a thread, sending each complete `ACK` line's key. A line cut
/// off by the kill (no newline) is not an acknowledgement and is dropped. The first `ACK`
/// shares its line with the test harness's `test writer_child ... ` banner.
fn acknowledgements(child: &mut Child) -> mpsc::Receiver<u64> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 0 {
            let acknowledged = line.strip_suffix('\n').and_then(|l| l.split_once(ACK));
            if let Some((_, key)) = acknowledged {
                let key = key.parse().expect("acknowledged key is a number");
                if sender.send(key).is_err() {
                    return;
                }
            }
            line.clear();
        }
    });
    receiver
}

#[test]
fn every_acknowledged_record_survives_sigkill() {
    const ROUNDS: usize = 24;
    let dir = tempfile::tempdir().expect("temporary directory");
    let store_path = dir.path().join("store");
    let mut rng = rand::rng();
    let mut acknowledged: Vec<u64> = Vec::new();
    let started = Instant::now();

    for round in 0..ROUNDS {
        let mut child = spawn_writer(&[], &store_path, 4, None, &[(CREDENTIALS_ENV, "1")]);
        let acks = acknowledgements(&mut child);
        // Odd rounds: kill at any moment, also during start-up and recovery. Even rounds:
        // kill while records are flowing.
        if round % 2 == 0 {
            let first = acks
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("round {round}: the child acknowledged nothing"));
            acknowledged.push(first);
            std::thread::sleep(Duration::from_millis(rng.random_range(0..150)));
        } else {
            std::thread::sleep(Duration::from_millis(rng.random_range(0..300)));
        }
        child.kill().expect("SIGKILL the child");
        child.wait().expect("reap the child");
        acknowledged.extend(acks.iter());

        let opened = Store::open(&StoreOptions::at(&store_path)).expect("reopen after the kill");
        assert!(
            opened.salvage.is_none(),
            "round {round}: the store had to be salvaged after SIGKILL: {:?}",
            opened.salvage
        );
        for sequence in &acknowledged {
            for tree in [TreeName::Buffer, TreeName::Outbox] {
                let found: Option<Written> = opened
                    .store
                    .get(tree, keys::sequence(*sequence))
                    .unwrap_or_else(|e| panic!("round {round}: record {sequence} in {tree}: {e}"));
                assert!(
                    found.as_ref().is_some_and(|w| w.sequence == *sequence
                        && w.payload == written(*sequence, w.writer).payload),
                    "round {round}: acknowledged record {sequence} is missing or wrong in {tree}: {found:?}"
                );
            }
            let cached = credentials::get(&opened.store, "door", &sequence.to_string(), 50)
                .unwrap_or_else(|e| panic!("round {round}: credential of {sequence}: {e}"))
                .unwrap_or_else(|| panic!("round {round}: credential of {sequence} is missing"));
            let value = credentials::value(&opened.store, &cached)
                .unwrap_or_else(|e| panic!("round {round}: value file of {sequence}: {e}"));
            assert_eq!(
                value.as_text(),
                format!("{sequence:0>8192}"),
                "round {round}: the value of {sequence} came back wrong"
            );
        }
    }
    println!(
        "{} acknowledged records survived {ROUNDS} SIGKILLs in {:.1?}",
        acknowledged.len(),
        started.elapsed()
    );
    assert!(
        acknowledged.len() >= ROUNDS,
        "too few acknowledgements ({}) to prove anything",
        acknowledged.len()
    );
}

/// One system call of interest, in the order strace logged it.
#[derive(Debug, PartialEq)]
enum Traced {
    /// A write into the store's `db` file started.
    DataWrite,
    /// An fsync/fdatasync of the `db` file started.
    SyncStart,
    /// An fsync/fdatasync of the `db` file returned successfully.
    SyncDone,
    /// The child started printing `ACK <key>`.
    Ack(u64),
}

/// Turns `strace -f -y` output into [`Traced`] events. strace splits a call that another
/// thread interrupts into `<unfinished ...>` and `<... name resumed>` lines; the resumed line
/// has no path, so pending syncs are remembered per thread id.
fn traced_events(trace: &str) -> Vec<Traced> {
    let mut pending_sync = std::collections::HashSet::new();
    let mut events = Vec::new();
    for line in trace.lines() {
        let Some((pid, call)) = line.split_once(' ') else {
            continue;
        };
        let call = call.trim_start();
        let is_sync = call.starts_with("fsync(") || call.starts_with("fdatasync(");
        let on_db_file = call.contains("/store/db>");
        if call.starts_with("<... fsync resumed>") || call.starts_with("<... fdatasync resumed>") {
            if pending_sync.remove(pid) && call.ends_with("= 0") {
                events.push(Traced::SyncDone);
            }
        } else if is_sync && on_db_file {
            events.push(Traced::SyncStart);
            if call.ends_with("<unfinished ...>") {
                pending_sync.insert(pid.to_owned());
            } else if call.ends_with("= 0") {
                events.push(Traced::SyncDone);
            }
        } else if on_db_file && (call.starts_with("pwrite") || call.starts_with("write(")) {
            events.push(Traced::DataWrite);
        } else if let Some(rest) = call.split_once(&format!("\"{ACK}")).map(|(_, r)| r) {
            if call.starts_with("write(1") {
                let key = rest.split('\\').next().unwrap_or_default();
                events.push(Traced::Ack(key.parse().expect("ACK key in trace")));
            }
        }
    }
    events
}

/// Whether `strace` can trace a child here (installed, and ptrace allowed).
fn strace_works() -> bool {
    Command::new("strace")
        .args(["-f", "-o", "/dev/null", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Runs one writer child under `strace -f -y`, tracing the system calls `calls` (a comma
/// list), until it has acknowledged `records` records, and returns the trace. `None` (the
/// skip reported under `test`) where strace is missing or may not trace here. The strace
/// tests share it so that every trace is taken the same way.
fn traced_writer(test: &str, calls: &str, records: u32, env: &[(&str, &str)]) -> Option<String> {
    if !strace_works() {
        test_support::skip::skipped(
            "strace",
            test,
            "strace is not installed or may not trace here (apt-get install strace)",
        );
        return None;
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let trace_file = dir.path().join("strace.log");
    let trace_arg = trace_file.to_str().expect("utf-8 temp path");
    let filter = format!("trace={calls}");
    let wrapper = ["strace", "-f", "-y", "-qq", "-e", &filter, "-o", trace_arg];
    let mut child = spawn_writer(&wrapper, &dir.path().join("store"), 1, Some(records), env);
    let acks: Vec<u64> = acknowledgements(&mut child).iter().collect();
    assert!(
        child.wait().expect("wait for strace").success(),
        "traced writer failed"
    );
    assert_eq!(acks.len(), records as usize, "the writer did not finish");
    Some(std::fs::read_to_string(&trace_file).expect("read the strace log"))
}

#[test]
fn an_fsync_of_the_data_file_lies_between_each_write_and_its_acknowledgement() {
    const RECORDS: u32 = 20;
    let Some(trace) = traced_writer(
        "an_fsync_of_the_data_file_lies_between_each_write_and_its_acknowledgement",
        "write,pwrite64,pwritev,pwritev2,fsync,fdatasync,sync_file_range",
        RECORDS,
        &[],
    ) else {
        return;
    };
    let events = traced_events(&trace);
    let windows = windows_before_acks(&events, |event| match event {
        Traced::Ack(key) => Some(*key),
        _ => None,
    });
    for (key, since_last_ack) in &windows {
        let last_write = since_last_ack
            .iter()
            .rposition(|e| *e == Traced::DataWrite)
            .unwrap_or_else(|| panic!("ACK {key}: no write to the db file since the previous ACK"));
        let after_write = &since_last_ack[last_write..];
        let sync_started = after_write
            .iter()
            .position(|e| *e == Traced::SyncStart)
            .unwrap_or_else(|| panic!("ACK {key}: no fsync of the db file after its last write"));
        assert!(
            after_write[sync_started..].contains(&Traced::SyncDone),
            "ACK {key}: the fsync of the db file had not returned before the acknowledgement"
        );
    }
    let checked = windows.len() as u32;
    assert_eq!(
        checked, RECORDS,
        "not every acknowledgement was found in the trace"
    );
    println!("strace: an fsync of the db file preceded each of {checked} acknowledgements");
}

/// One step of writing a credential value file, or an acknowledgement, as strace logged it.
#[derive(Debug, PartialEq)]
enum ValueTraced {
    /// An fsync of a temporary value file returned successfully.
    TemporarySynced,
    /// A temporary value file was renamed to its digest.
    Renamed,
    /// An fsync of the `values` directory returned successfully.
    DirectorySynced,
    /// An fsync of the store's `db` file (the commit of the records) returned successfully.
    DbSynced,
    /// The child started printing `ACK <key>`.
    Ack(u64),
}

/// Turns `strace -f -y` output into [`ValueTraced`] events (see [`traced_events`] for the
/// split `<unfinished ...>` lines).
fn value_events(trace: &str) -> Vec<ValueTraced> {
    let mut pending: std::collections::HashMap<String, ValueTraced> = Default::default();
    let mut events = Vec::new();
    for line in trace.lines() {
        let Some((pid, call)) = line.split_once(' ') else {
            continue;
        };
        let call = call.trim_start();
        let is_sync = call.starts_with("fsync(") || call.starts_with("fdatasync(");
        let step = if is_sync && call.contains(".tmp>") && call.contains("/store/values/") {
            Some(ValueTraced::TemporarySynced)
        } else if is_sync && call.contains("/store/values>") {
            Some(ValueTraced::DirectorySynced)
        } else if is_sync && call.contains("/store/db>") {
            Some(ValueTraced::DbSynced)
        } else if call.starts_with("rename") && call.contains(".tmp\"") {
            Some(ValueTraced::Renamed)
        } else {
            None
        };
        // Another thread's call can split one call into `<unfinished ...>` and
        // `<... NAME resumed>` lines (the batch's files are fsynced from several threads).
        if call.starts_with("<... ") && call.contains(" resumed>") {
            if let Some(event) = pending.remove(pid) {
                if call.ends_with("= 0") {
                    events.push(event);
                }
            }
        } else if let Some(event) = step {
            if call.ends_with("<unfinished ...>") {
                pending.insert(pid.to_owned(), event);
            } else if call.ends_with("= 0") {
                events.push(event);
            }
        } else if let Some(rest) = call.split_once(&format!("\"{ACK}")).map(|(_, r)| r) {
            if call.starts_with("write(1") {
                let key = rest.split('\\').next().unwrap_or_default();
                events.push(ValueTraced::Ack(key.parse().expect("ACK key in trace")));
            }
        }
    }
    events
}

/// The traced events between each acknowledgement and the one before it, with the
/// acknowledged key: what the store did before it could say a record was durable.
fn windows_before_acks<T>(events: &[T], ack: impl Fn(&T) -> Option<u64>) -> Vec<(u64, &[T])> {
    let mut windows = Vec::new();
    let mut last_ack = 0;
    for (position, event) in events.iter().enumerate() {
        if let Some(key) = ack(event) {
            windows.push((key, &events[last_ack..position]));
            last_ack = position;
        }
    }
    windows
}

/// The acknowledged key of a value-file trace event.
fn value_ack(event: &ValueTraced) -> Option<u64> {
    match event {
        ValueTraced::Ack(key) => Some(*key),
        _ => None,
    }
}

#[test]
fn a_credential_value_file_is_fsynced_renamed_and_its_directory_fsynced_before_acknowledgement() {
    const RECORDS: u32 = 10;
    let Some(trace) = traced_writer(
        "a_credential_value_file_is_fsynced_renamed_and_its_directory_fsynced_before_acknowledgement",
        "write,fsync,fdatasync,rename,renameat,renameat2",
        RECORDS,
        &[(CREDENTIALS_ENV, "1")],
    ) else {
        return;
    };
    let events = value_events(&trace);
    let windows = windows_before_acks(&events, value_ack);
    for (key, window) in &windows {
        let synced = window
            .iter()
            .position(|e| *e == ValueTraced::TemporarySynced)
            .unwrap_or_else(|| panic!("ACK {key}: no fsync of a temporary value file before it"));
        let renamed = window[synced..]
            .iter()
            .position(|e| *e == ValueTraced::Renamed)
            .map(|at| synced + at)
            .unwrap_or_else(|| panic!("ACK {key}: the value file was not renamed after its fsync"));
        assert!(
            window[renamed..].contains(&ValueTraced::DirectorySynced),
            "ACK {key}: the values directory was not fsynced after the rename"
        );
    }
    let checked = windows.len() as u32;
    assert_eq!(
        checked, RECORDS,
        "not every acknowledgement was found in the trace"
    );
    println!(
        "strace: fsync, rename and directory fsync of a value file preceded each of {checked} \
         acknowledgements"
    );
}

#[test]
fn a_batch_of_value_files_is_fsynced_then_its_directory_once_before_the_commit_fsync() {
    const RECORDS: u32 = 4;
    const BATCH: u32 = 40;
    let Some(trace) = traced_writer(
        "a_batch_of_value_files_is_fsynced_then_its_directory_once_before_the_commit_fsync",
        "write,fsync,fdatasync,rename,renameat,renameat2",
        RECORDS,
        &[(BATCH_ENV, &BATCH.to_string())],
    ) else {
        return;
    };
    let events = value_events(&trace);
    let windows = windows_before_acks(&events, value_ack);
    for (key, window) in &windows {
        let count = |wanted: ValueTraced| window.iter().filter(|e| **e == wanted).count();
        assert_eq!(
            count(ValueTraced::TemporarySynced),
            BATCH as usize,
            "ACK {key}: one fsync per value file of the batch"
        );
        assert_eq!(
            count(ValueTraced::Renamed),
            BATCH as usize,
            "ACK {key}: one rename per value file of the batch"
        );
        assert_eq!(
            count(ValueTraced::DirectorySynced),
            1,
            "ACK {key}: the values directory is fsynced once per batch"
        );
        let last_file = window
            .iter()
            .rposition(|e| matches!(e, ValueTraced::TemporarySynced | ValueTraced::Renamed))
            .expect("file events");
        let directory = window
            .iter()
            .position(|e| *e == ValueTraced::DirectorySynced)
            .expect("directory fsync");
        assert!(
            directory > last_file,
            "ACK {key}: the directory was fsynced before the last file of the batch"
        );
        assert!(
            window[directory..].contains(&ValueTraced::DbSynced),
            "ACK {key}: no fsync of the db file (the commit naming the values) after the \
             values directory's"
        );
    }
    let checked = windows.len() as u32;
    assert_eq!(
        checked, RECORDS,
        "not every acknowledgement was found in the trace"
    );
    println!(
        "strace: {BATCH} value-file fsyncs and renames, then one directory fsync, then the db \
         fsync preceded each of {checked} acknowledgements"
    );
}
