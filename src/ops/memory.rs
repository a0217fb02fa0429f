//! Keeps glibc's allocator from bloating the agent's memory.
//!
//! glibc gives each thread that allocates its own malloc arena (up to 8 × cores). A complete
//! AI06 read passes tens of megabytes of photo frames through short-lived buffers on tokio's
//! worker threads, and the per-thread arenas keep that memory: peak RSS of a 5,000-user read
//! was 63 MB with the default and 9 MB with one arena, and the read was faster too (see the
//! README's performance section). A gateway box has little RAM to spare, so the agent caps the
//! arenas at start-up.

/// Arenas the agent allows; the agent's work is I/O-bound, so lock contention is negligible.
const MALLOC_ARENAS: libc::c_int = 1;

/// Caps glibc's malloc arenas; call first thing in `main`, before any thread starts. Does
/// nothing when the operator set `MALLOC_ARENA_MAX` (theirs wins) or on other C libraries.
pub fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
    }
}
