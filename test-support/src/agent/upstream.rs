//! For the forwarding tests: forwarder options with compressed time, token files, punch
//! events, and the agent side of a test (a store, its outbox and the forwarder) facing
//! [`crate::upstream_double::UpstreamDouble`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use edge_agent::audit::Audit;
use edge_agent::device::{ReadUser, UserRead};
use edge_agent::events::{DeviceUser, Event, EventBody, EventKey, Punch};
use edge_agent::lifecycle::Tasks;
use edge_agent::lock::FlockLock;
use edge_agent::store::Store;
use edge_agent::sync::Engine;
use edge_agent::upstream::{self, ClientSettings, ForwarderOptions, Outbox, UpstreamClient};

use super::open_store;
use crate::wait::wait_for;

/// The token the double accepts.
pub const TOKEN: &str = "test-token-0123456789";

/// Forwarder options for tests: fast backoff, no rate limit to speak of, fixed jitter.
pub fn options(url: &str, token_file: &Path) -> ForwarderOptions {
    ForwarderOptions {
        agent_id: "agent-1".into(),
        client: ClientSettings {
            url: url.into(),
            token_file: token_file.to_path_buf(),
            ca_file: None,
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(2),
        },
        batch_size: 100,
        rate_limit: 1000,
        base_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(300),
        mapping_pull_interval: Duration::from_secs(3600),
        idle_recheck: Duration::from_millis(200),
        jitter_seed: Some(7),
    }
}

/// Writes `token` to a file in `dir` and returns its path.
pub fn token_file(dir: &Path, token: &str) -> PathBuf {
    let path = dir.join("upstream.token");
    std::fs::write(&path, format!("{token}\n")).expect("write the token file");
    path
}

/// A punch event with a key derived from `n`, for device `device` with fencing token `token`.
pub fn punch(device: &str, n: u64, token: u64) -> Event {
    let punch = Punch {
        sn: device.into(),
        user_id: (n % 50).to_string(),
        time: format!("2026-11-22 08:{:02}:{:02}.{n}", (n / 60) % 60, n % 60),
        mode: "1".into(),
        inout: "0".into(),
        raw: Default::default(),
    };
    Event {
        key: EventKey::punch(&punch),
        agent_id: "agent-1".into(),
        device_id: device.into(),
        occurred_at_ms: 1_795_000_000_000 + n as i64,
        clock_synchronized: true,
        fencing_token: token,
        body: EventBody::Punch(punch),
    }
}

/// The sync engine over `store` and `outbox` (locks in `dir/locks`): the owner the mapping
/// puller hands its pages to.
pub fn engine(dir: &Path, store: &Store, outbox: &Outbox) -> Arc<Engine> {
    let lock = FlockLock::new(dir.join("locks"), 1, Duration::ZERO);
    Arc::new(Engine::new(
        store.clone(),
        "agent-1",
        Arc::new(lock),
        outbox.clone(),
        Audit::new(store.clone()),
    ))
}

/// The agent side of a test: a store, its outbox, the sync engine that owns the mappings and
/// (once started) the forwarder and mapping puller.
pub struct AgentSide {
    /// Holds the store; removed on drop.
    pub dir: tempfile::TempDir,
    /// The store.
    pub store: Store,
    /// The outbox over the store.
    pub outbox: Outbox,
    /// The sync engine, owner of the mappings the puller hands over.
    pub engine: Arc<Engine>,
    /// The forwarder's tasks, once started.
    pub tasks: Option<Tasks>,
    /// The forwarder's handle, once started.
    pub upstream: Option<upstream::Upstream>,
}

impl AgentSide {
    /// A fresh store with an outbox capped at `max_bytes`.
    pub fn new(max_bytes: u64) -> AgentSide {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = open_store(dir.path());
        let outbox = Outbox::open(&store, max_bytes).expect("open the outbox");
        AgentSide::over(dir, store, outbox)
    }

    /// The agent side over an open `store` and `outbox`, with locks in `dir`.
    pub fn over(dir: tempfile::TempDir, store: Store, outbox: Outbox) -> AgentSide {
        let engine = engine(dir.path(), &store, &outbox);
        AgentSide {
            dir,
            store,
            outbox,
            engine,
            tasks: None,
            upstream: None,
        }
    }

    /// Starts the forwarder and mapping puller against `options`.
    pub fn start(&mut self, options: &ForwarderOptions) {
        let client = UpstreamClient::new(&options.client).expect("build the client");
        let mut tasks = Tasks::new();
        self.upstream = Some(upstream::spawn(
            &mut tasks,
            self.outbox.clone(),
            client,
            self.engine.clone(),
            options,
        ));
        self.tasks = Some(tasks);
    }

    /// Buffers device users `ids` of `device` through a complete read, so that mappings pulled
    /// for them have a user to link.
    pub async fn buffer_users(&self, device: &str, ids: &[&str]) {
        let read = UserRead {
            users: ids
                .iter()
                .map(|id| {
                    let user = DeviceUser {
                        user_id: id.to_string(),
                        ..DeviceUser::default()
                    };
                    let read = ReadUser {
                        user,
                        slots: Vec::new(),
                    };
                    (id.to_string(), read)
                })
                .collect(),
            device_user_count: ids.len() as u64,
            ..UserRead::default()
        };
        self.engine
            .apply_read(device, &read, 0)
            .await
            .expect("buffer the users");
    }

    /// Stops the forwarder.
    pub async fn stop(&mut self) {
        if let Some(tasks) = self.tasks.take() {
            let trouble = tasks.stop(Duration::from_secs(5)).await;
            assert!(trouble.is_empty(), "{trouble:?}");
        }
    }

    /// Waits until the outbox is empty (or panics after `limit`).
    pub async fn drained(&self, limit: Duration) {
        let outbox = self.outbox.clone();
        wait_for(limit, "the outbox to drain", || {
            outbox.stats().expect("outbox stats").depth == 0
        })
        .await;
    }
}
