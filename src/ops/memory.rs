//! Keeps glibc's allocator from bloating the agent's memory.
//!
//! glibc gives each thread that allocates its own malloc arena (up to 8 × cores). A complete
//! AI06 read passes tens of megabytes of photo frames through short-lived buffers on tokio's
//! worker threads, and the per-thread arenas keep that memory: peak RSS of a 5,000-user read
//! was 63 MB with the default and 9 MB with one arena, and the read was faster too (see the
//! README's performance section). A gateway box has little RAM to spare, so the agent caps the
//! arenas at start-up.
//!
//! With one arena, what a read or the store's start-up freed stays in the heap wherever a live
//! allocation sits above it: glibc only gives back the top of the heap on its own. The
//! [`trim_after_reads`] task hands the free pages back (`malloc_trim`) once a read has ended,
//! which is when the heap has just shrunk (figures in README "Performance", footprint row).

use crate::lifecycle::StopSignal;
use crate::live::Live;
use std::time::Duration;

/// Arenas the agent allows; the agent's work is I/O-bound, so lock contention is negligible.
const MALLOC_ARENAS: libc::c_int = 1;

/// Allocations of at least this size get their own mapping, returned to the system when freed.
/// Setting it also fixes it: by default glibc raises the threshold (up to 32 MiB) each time
/// such a block is freed, after which big short-lived buffers (photo frames, sled's segment
/// buffers) come from the heap and keep it grown. With the threshold fixed at glibc's initial
/// 128 KiB, steady polling of 10,000 users measured 30.0 MB instead of 33.5 MB (footprint
/// bench workload, README "Performance").
const MMAP_THRESHOLD: libc::c_int = 128 * 1024;

/// Free memory at the top of the heap beyond this is returned to the system at once.
const TRIM_THRESHOLD: libc::c_int = 128 * 1024;

/// How long after a reported fact (a read finished, a lock taken) the trim waits, so that the
/// work that follows it (the apply's flush, the status file) has freed its buffers first and a
/// burst of facts costs one trim.
const TRIM_DELAY: Duration = Duration::from_secs(2);

/// Caps glibc's malloc arenas and fixes its mmap and trim thresholds; call first thing in
/// `main`, before any thread starts. A setting the operator made through the environment wins
/// (`MALLOC_ARENA_MAX`, `MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`, or the same
/// `glibc.malloc.*` tunable in `GLIBC_TUNABLES`); does nothing on other C libraries.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    for (option, value, variable, tunable) in [
        (
            libc::M_ARENA_MAX,
            MALLOC_ARENAS,
            "MALLOC_ARENA_MAX",
            "arena_max",
        ),
        (
            libc::M_MMAP_THRESHOLD,
            MMAP_THRESHOLD,
            "MALLOC_MMAP_THRESHOLD_",
            "mmap_threshold",
        ),
        (
            libc::M_TRIM_THRESHOLD,
            TRIM_THRESHOLD,
            "MALLOC_TRIM_THRESHOLD_",
            "trim_threshold",
        ),
    ] {
        if !set_by_operator(variable, tunable) {
            // SAFETY: mallopt only changes allocator tuning; called before other threads exist.
            unsafe {
                libc::mallopt(option, value);
            }
        }
    }
}

/// Whether the environment sets this allocator option itself.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_by_operator(variable: &str, tunable: &str) -> bool {
    std::env::var_os(variable).is_some()
        || std::env::var("GLIBC_TUNABLES")
            .is_ok_and(|tunables| tunables.contains(&format!("glibc.malloc.{tunable}=")))
}

/// Gives the heap's free pages back to the system; returns the resident set before and after
/// in KiB (zero where unknown). Costs a pass over the free lists under the allocator's lock:
/// about a millisecond for the agent's heap, so call it after bursts of work, not per request.
pub fn release_free_heap() -> (u64, u64) {
    let before = resident_kib();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns whole free pages of the heap to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
    (before, resident_kib())
}

/// The process's resident set in KiB from `/proc/self/statm` (zero where unavailable).
fn resident_kib() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let page_bytes = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let page_kib = u64::try_from(page_bytes).unwrap_or(4096) / 1024;
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|text| text.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * page_kib)
}

/// Runs until `stop`: trims the heap once now (after the store's opening and migration) and
/// again [`TRIM_DELAY`] after each fact the live picture reports (every finished read is one).
/// Logs each trim at debug level with the resident set before and after.
pub async fn trim_after_reads(live: Live, mut stop: StopSignal) {
    let mut facts = live.watch_facts();
    loop {
        let (before_kib, after_kib) = match tokio::task::spawn_blocking(release_free_heap).await {
            Ok(sizes) => sizes,
            Err(_) => return,
        };
        tracing::debug!(before_kib, after_kib, "free heap returned to the system");
        tokio::select! {
            changed = facts.changed() => if changed.is_err() { return },
            _ = stop.stopped() => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(TRIM_DELAY) => {}
            _ = stop.stopped() => return,
        }
        // The facts reported while waiting are covered by this trim.
        facts.mark_unchanged();
    }
}
