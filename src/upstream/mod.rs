//! Upstream forwarding: the durable outbox, the HTTP forwarder, mapping pulls and sync status.
//!
//! The contract is ours and written down in `docs/upstream-api.yaml` (prose:
//! `docs/upstream.md`). In short: `POST /events` takes a batch and answers per event
//! (accepted / duplicate / rejected); `GET /mappings` is a cursor-paged change feed;
//! `GET /persons/{id}` confirms a person exists. Bearer token from a file, TLS through rustls
//! with the ring provider.
//!
//! | module        | job                                                               |
//! |---------------|-------------------------------------------------------------------|
//! | [`wire`]      | JSON shapes of the contract                                       |
//! | [`outbox`]    | durable queue in sled, byte cap, dead letters                     |
//! | [`client`]    | reqwest client, TLS, auth, timeouts, error classification         |
//! | [`pacing`]    | requests-per-second limit                                         |
//! | `forwarder`   | the delivery loop                                                 |
//! | [`mapping`]   | incremental mapping pulls                                         |
//! | [`persons`]   | `GET /persons/{id}` for pending `map` requests, with backoff      |
//! | [`status`]    | what `status` shows                                               |

pub mod client;
mod forwarder;
pub mod mapping;
pub mod outbox;
pub mod pacing;
pub mod persons;
pub mod status;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::config::Config;
use crate::lifecycle::Tasks;
use crate::store::Store;

pub use client::{ClientSettings, RequestError, UpstreamClient};
pub use mapping::{MappingSink, PulledMapping};
pub use outbox::{enqueue_in, DeadLetter, Outbox, OutboxError, OutboxStats};
pub use status::{ForwarderState, StatusBoard, SyncStatus};

/// First backoff ceiling; doubles per failure up to `upstream.max_backoff`.
pub const BASE_BACKOFF: Duration = Duration::from_secs(1);
/// How often an idle forwarder looks at the outbox even without a wake-up.
pub const IDLE_RECHECK: Duration = Duration::from_secs(5);

/// Everything the forwarder needs; [`ForwarderOptions::from_config`] fills it from
/// `[upstream]`, tests fill it directly (short backoff, fixed jitter seed).
#[derive(Debug, Clone)]
pub struct ForwarderOptions {
    /// This agent's id (scopes mapping pulls).
    pub agent_id: String,
    /// HTTP client settings.
    pub client: ClientSettings,
    /// Events per request at most.
    pub batch_size: usize,
    /// Requests per second at most.
    pub rate_limit: u32,
    /// First backoff ceiling.
    pub base_backoff: Duration,
    /// Largest backoff ceiling.
    pub max_backoff: Duration,
    /// Time between scheduled mapping pulls.
    pub mapping_pull_interval: Duration,
    /// Idle re-check of the outbox.
    pub idle_recheck: Duration,
    /// Seed for the jitter (tests); `None` seeds from the OS.
    pub jitter_seed: Option<u64>,
}

impl ForwarderOptions {
    /// The options `[upstream]` asks for, or `None` without `upstream.url`.
    pub fn from_config(config: &Config) -> Option<Self> {
        let upstream = &config.upstream;
        Some(Self {
            agent_id: config.agent.id.clone(),
            client: ClientSettings {
                url: upstream.url.clone()?,
                token_file: upstream.token_file.clone()?,
                ca_file: upstream.ca_file.clone(),
                connect_timeout: upstream.connect_timeout.get(),
                request_timeout: upstream.request_timeout.get(),
            },
            batch_size: upstream.batch_size as usize,
            rate_limit: upstream.rate_limit,
            base_backoff: BASE_BACKOFF,
            max_backoff: upstream.max_backoff.get(),
            mapping_pull_interval: upstream.mapping_pull_interval.get(),
            idle_recheck: IDLE_RECHECK,
            jitter_seed: None,
        })
    }
}

/// The upstream side of a running agent: the outbox producers enqueue into, and the status.
#[derive(Clone)]
pub struct Upstream {
    outbox: Outbox,
    board: StatusBoard,
}

impl Upstream {
    /// The outbox, for producers (the sync engine) and admin commands (dead letters).
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// What `status` shows.
    pub fn status(&self) -> Result<SyncStatus, OutboxError> {
        Ok(self.board.snapshot(self.outbox.stats()?))
    }
}

/// When `[upstream]` names a URL, starts the forwarder on `outbox` and the mapping puller,
/// which hands what it pulls to `mappings` (the sync engine, owner of the mappings). A
/// forwarder that cannot start (unreadable token or CA file) is logged and shown in status,
/// while events keep queueing: device data is never held back by upstream trouble.
pub fn start(
    tasks: &mut Tasks,
    config: &Config,
    outbox: Outbox,
    mappings: Arc<dyn MappingSink>,
) -> Upstream {
    let Some(options) = ForwarderOptions::from_config(config) else {
        tracing::info!("no upstream.url: events are kept in the outbox, nothing is forwarded");
        return Upstream {
            outbox,
            board: StatusBoard::new(ForwarderState::NotConfigured),
        };
    };
    match UpstreamClient::new(&options.client) {
        Ok(client) => spawn(tasks, outbox, client, mappings, &options),
        Err(error) => {
            tracing::error!("upstream forwarding not started, events stay queued: {error}");
            Upstream {
                outbox,
                board: StatusBoard::new(ForwarderState::Failed(error.to_string())),
            }
        }
    }
}

/// Opens the outbox `[upstream]` sizes in `store`: the one durable queue the sync engine, the
/// punch log and the forwarder share.
pub fn open_outbox(config: &Config, store: &Store) -> Result<Outbox, OutboxError> {
    Outbox::open(store, config.upstream.outbox_max_bytes.bytes())
}

/// Starts the forwarder on `outbox` with `client`, and the mapping puller into `mappings`.
pub fn spawn(
    tasks: &mut Tasks,
    outbox: Outbox,
    client: UpstreamClient,
    mappings: Arc<dyn MappingSink>,
    options: &ForwarderOptions,
) -> Upstream {
    let client = Arc::new(client);
    let board = StatusBoard::new(ForwarderState::Running);
    let reconnected = Arc::new(Notify::new());
    let forwarder = forwarder::Forwarder::new(
        outbox.clone(),
        Arc::clone(&client),
        board.clone(),
        options,
        Arc::clone(&reconnected),
    );
    tasks.spawn("upstream-forwarder", move |stop| forwarder.run(stop));
    let confirmer = (Arc::clone(&client), Arc::clone(&mappings));
    let (base, cap) = (options.base_backoff, options.max_backoff);
    tasks.spawn("upstream-persons", move |stop| {
        persons::run_confirmer(confirmer.0, confirmer.1, base, cap, stop)
    });
    let store = outbox.store().clone();
    let agent_id = options.agent_id.clone();
    let interval = options.mapping_pull_interval;
    tasks.spawn("upstream-mappings", move |stop| {
        mapping::run_puller(
            client,
            store,
            mappings,
            agent_id,
            interval,
            reconnected,
            stop,
        )
    });
    Upstream { outbox, board }
}
