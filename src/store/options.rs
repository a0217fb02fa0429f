//! How the store is opened. The agent's config is converted into this by the caller, so the
//! store does not depend on the config module and tests can open stores directly.

use std::path::PathBuf;
use std::time::Duration;

/// Settings for [`crate::store::Store::open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// The store directory. sled keeps `db`, `conf`, `blobs/` and `snap.*` files inside it; a
    /// salvaged store is moved to a sibling `<path>.corrupt-<UTC time>`.
    pub path: PathBuf,
    /// sled's page cache in bytes. sled defaults to 1 GiB, far too much for a small gateway.
    /// 256 KiB, the default, was chosen by measurement (`benches/footprint.rs`, 10,000 users
    /// with photos in value files, compression on): the steady resident set was 16.7–17.3 MB
    /// against 19.9 MB at 1 MiB (one trial run); earlier, without compression, 8 MiB against
    /// 1 MiB had cost 38 against 29–30 MB while polling (`docs/footprint.md`).
    pub cache_capacity: u64,
    /// How often sled's background thread makes writes durable on its own (milliseconds).
    /// This only bounds loss for writes nobody waited for; acknowledged writes always go
    /// through the store's explicit durability call. Zero turns the background flusher off.
    /// 5 s, the default, was chosen by measurement (`benches/footprint.rs`, 10,000 users
    /// polled every 5 s, three runs each): the steady resident set was 18.3–18.7 MB at 5 s
    /// against 18.9–19.2 MB at sled's usual 500 ms (16.8–17.2 against 17.9–18.4 MB between
    /// polls), 19.6 MB at 100 ms and 18.4 MB with the flusher off; the store's size on disk
    /// did not move beyond the runs' spread (`docs/footprint.md`).
    pub flush_every_ms: u64,
    /// How long the group committer lingers after the first durability request before it
    /// flushes, so that requests arriving close together share one flush and fsync. Zero
    /// (the default) does not linger: requests that arrive while a flush runs still share the
    /// next one, which already groups bursts, and a lone writer pays no extra latency. On the
    /// development box a 1 ms window cut 16 writers' flushes from 81 to 40 per 640 writes but
    /// halved their throughput and tripled a lone writer's latency (see `benches/store.rs`);
    /// raise it only where fsync is much cheaper than the gap between arrivals.
    pub group_commit_window: Duration,
    /// Whether sled compresses what it writes (zstd at [`COMPRESSION_LEVEL`]). On by default:
    /// with 10,000 users the store after the first read took 7.0–7.8 MB on disk against
    /// 13.0–13.1 MB without, for about 1 MB more binary (`docs/footprint.md`). sled cannot
    /// open a store with the other setting, so a change is applied by rewriting the store at
    /// start-up (`store::recompress`).
    pub compression: bool,
}

/// sled's zstd level: the cheapest. Level 3 stored the 10,000-user store in the same 6.8 MB in
/// a trial (`docs/footprint.md`) and costs more CPU on every write of a small ARM box.
pub const COMPRESSION_LEVEL: i32 = 1;

impl StoreOptions {
    /// Default options for a store at `path`.
    pub fn at(path: impl Into<PathBuf>) -> Self {
        StoreOptions {
            path: path.into(),
            ..StoreOptions::default()
        }
    }

    /// sled's settings for this store: the one place they are spelled out, so that the
    /// store's open, its rewrite and the tools and benches that read a stopped store's sled
    /// directly all open it the way it was written (sled refuses another compression).
    pub fn sled_config(&self) -> sled::Config {
        sled::Config::new()
            .path(&self.path)
            .cache_capacity(self.cache_capacity)
            .use_compression(self.compression)
            .compression_factor(COMPRESSION_LEVEL)
            .flush_every_ms(Some(self.flush_every_ms).filter(|ms| *ms > 0))
    }
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            path: PathBuf::from("/var/lib/edge-agent/store"),
            cache_capacity: 256 * 1024,
            flush_every_ms: 5_000,
            group_commit_window: Duration::ZERO,
            compression: true,
        }
    }
}
