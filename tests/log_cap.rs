//! The log file cap through the real, globally installed subscriber: however much the agent
//! logs, the files on disk stay within `max_file_size * max_files`, the newest lines survive,
//! and every line is a whole line in the documented format.
//!
//! One integration test binary is one process, so installing the global subscriber once here
//! is safe; this file therefore holds a single test.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Instant;

use edge_agent::ops::logging::{self, JournaldMode, LogOptions, LINE_TIME_FORMAT};

const MAX_FILE_SIZE: u64 = 4096;
const MAX_FILES: u32 = 3;
const WRITER_THREADS: usize = 4;
/// Every this-many lines one is far larger than a whole file, to exercise truncation.
const OVERSIZED_EVERY: u64 = 97;
/// Short lines written last; together they fit easily in the live file.
const TAIL_LINES: u64 = 30;

#[test]
fn writing_fifty_times_the_cap_leaves_at_most_the_cap_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("log");
    let handle = logging::init(&LogOptions {
        level: "info".to_owned(),
        file: Some(log_dir.join("edge-agent.log")),
        max_file_size: MAX_FILE_SIZE,
        max_files: MAX_FILES,
        journald: JournaldMode::Never,
        stderr: false,
    })
    .unwrap();
    // RUST_LOG in the caller's environment must not change what this test writes.
    handle.set_level("info").unwrap();

    let cap = MAX_FILE_SIZE * u64::from(MAX_FILES);
    let target_bytes = 50 * cap;
    let per_thread_bytes = target_bytes / WRITER_THREADS as u64;
    let started = Instant::now();
    let last_seqs: Vec<u64> = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..WRITER_THREADS)
            .map(|thread| scope.spawn(move || write_lines(thread, per_thread_bytes)))
            .collect();
        writers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let elapsed = started.elapsed();
    let total_lines: u64 = last_seqs.iter().map(|last| last + 1).sum();
    // After the concurrent flood, a final run of short lines from one writer: these are the
    // newest lines and must all be on disk, last in the live file.
    let tail_writer = WRITER_THREADS;
    for seq in 0..TAIL_LINES {
        tracing::info!(thread = tail_writer, seq, payload = %"x", "filler");
    }
    println!(
        "wrote {total_lines} lines (~{target_bytes} bytes) through the subscriber in {elapsed:?} \
         ({:.0} lines/s, debug build)",
        total_lines as f64 / elapsed.as_secs_f64()
    );

    let files = files_in(&log_dir);
    let total_size: u64 = files.values().map(|content| content.len() as u64).sum();
    assert!(
        files.len() <= MAX_FILES as usize,
        "too many files: {:?}",
        files.keys()
    );
    assert!(total_size <= cap, "{total_size} bytes on disk, cap {cap}");
    for (name, content) in &files {
        assert!(content.len() as u64 <= MAX_FILE_SIZE, "{name} is too big");
    }

    // Oldest file first, so lines appear in the order they were written.
    let mut lines = Vec::new();
    for index in (0..MAX_FILES).rev() {
        let name = match index {
            0 => "edge-agent.log".to_owned(),
            n => format!("edge-agent.log.{n}"),
        };
        if let Some(content) = files.get(&name) {
            assert!(content.ends_with('\n'), "{name} ends mid-line");
            lines.extend(content.lines().map(parse_line));
        }
    }

    let mut seen: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    for &(thread, seq) in &lines {
        seen.entry(thread).or_default().push(seq);
    }
    let expected_tail: Vec<u64> = (0..TAIL_LINES).collect();
    assert_eq!(
        seen.get(&tail_writer),
        Some(&expected_tail),
        "newest lines missing"
    );
    assert_eq!(lines.last(), Some(&(tail_writer, TAIL_LINES - 1)));
    for (thread, seqs) in &seen {
        assert!(
            seqs.windows(2).all(|pair| pair[1] == pair[0] + 1),
            "thread {thread}: lines missing or out of order inside the kept window"
        );
    }
    assert_eq!(handle.dropped_file_lines(), 0);
}

/// Logs lines of varying length until about `bytes` were written; returns the last sequence.
fn write_lines(thread: usize, bytes: u64) -> u64 {
    let mut written = 0;
    let mut seq = 0;
    loop {
        let padding = if seq % OVERSIZED_EVERY == 0 {
            3 * MAX_FILE_SIZE as usize
        } else {
            (seq as usize * 7) % 150
        };
        let payload = "x".repeat(padding);
        tracing::info!(thread, seq, %payload, "filler");
        written += 80 + padding as u64;
        if written >= bytes {
            return seq;
        }
        seq += 1;
    }
}

/// Every file in the log directory by name; anything but the rotated set would be a leak.
fn files_in(dir: &Path) -> BTreeMap<String, String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            (name, fs::read_to_string(entry.path()).unwrap())
        })
        .collect()
}

/// Checks `time LEVEL target: message fields` and returns the line's (thread, seq).
fn parse_line(line: &str) -> (usize, u64) {
    let (time, rest) = line.split_once(' ').expect(line);
    chrono::NaiveDateTime::parse_from_str(time, LINE_TIME_FORMAT)
        .unwrap_or_else(|error| panic!("bad time in {line:?}: {error}"));
    let fields = rest
        .strip_prefix("INFO log_cap: filler ")
        .unwrap_or_else(|| panic!("unexpected line shape: {line:?}"));
    let words: Vec<&str> = fields.split(' ').collect();
    let (thread, seq, payload, after) = match words.as_slice() {
        [thread, seq, payload, after @ ..] => (
            thread.strip_prefix("thread=").expect(line),
            seq.strip_prefix("seq=").expect(line),
            payload.strip_prefix("payload=").expect(line),
            after,
        ),
        _ => panic!("fields missing in {line:?}"),
    };
    let whole_payload = payload.bytes().all(|b| b == b'x');
    let complete_or_marked = after.is_empty() || after == ["[truncated]"];
    assert!(whole_payload && complete_or_marked, "damaged line {line:?}");
    (thread.parse().unwrap(), seq.parse().unwrap())
}
