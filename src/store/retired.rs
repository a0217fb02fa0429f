//! Freeing what sled has retired.
//!
//! sled never frees a replaced tree node or a written-out log buffer at once: it hands it to
//! crossbeam's epoch collector, which keeps it in a bag *of the thread that replaced it* until
//! that bag holds 64 items, and only then moves it where any thread can free it. A thread that
//! commits a few big transactions and then idles (the store's committer, a blocking-pool
//! thread that applied a read) therefore keeps megabytes of dead nodes and 512 KiB log
//! buffers alive indefinitely: 9 MB of the first read's 49 MB peak for 10,000 users
//! (`benches/footprint.rs`, `docs/footprint.md`).
//!
//! [`release_retired`] moves the calling thread's bag to the collector and frees whatever no
//! thread can still see; the store calls it on the thread that just committed or flushed.

/// Hands the calling thread's retired sled memory to the epoch collector and frees what is
/// no longer visible to any thread. Costs one pin of the epoch (well under a microsecond when
/// the bag is empty), so it is called after each transaction and durability round, not per
/// read.
pub(crate) fn release_retired() {
    crossbeam_epoch::pin().flush();
}
