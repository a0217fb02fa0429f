//! The shelf-label gateway adapter (E1–E3): the agent is the on-site executor of what the
//! upstream wants the site's electronic shelf labels (SoluM AIMS) to show.
//!
//! | module      | job                                                                  |
//! |-------------|----------------------------------------------------------------------|
//! | [`article`] | the one article builder, merge over AIMS's data, normalised compare  |
//! | [`client`]  | AIMS HTTP: tokens, pacing, 429, A.4 error classes, owned writes only |
//! | [`desired`] | the upstream's desired-article feed (`esl_desired`)                  |
//! | [`ledger`]  | ownership ledger (`esl_owned`), durable before every write           |
//! | [`pool`]    | persistent `POOL-nnnn` ids (`esl_pool`), never reused                |
//! | [`outbox`]  | durable intents (`esl_outbox`), outcome events queued upstream       |
//! | `push`      | batch, write, confirm by reading back                                |
//! | [`verify`]  | drift verification                                                   |
//!
//! One task runs it all in turn: pull the feed, push pending intents, verify at start-up and
//! every `esl.verify_interval` (or when a `esl verify` command asks). `docs/esl.md` says what
//! the agent owns and never touches.

pub mod article;
pub mod client;
pub mod desired;
pub mod ledger;
pub mod outbox;
pub mod pool;
mod push;
pub mod verify;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::config::Config;
use crate::events::{Event, EventBody, EventKey};
use crate::lifecycle::{StopSignal, Tasks};
use crate::store::{Alarm, Store, StoreError};
use crate::upstream::{ClientSettings, Outbox, UpstreamClient};

pub use client::{AimsClient, AimsError, AimsSettings};
pub use verify::VerifyReport;

/// Why a step of the adapter failed (it is retried on the next round).
#[derive(Debug, thiserror::Error)]
pub enum EslError {
    /// AIMS failed or refused.
    #[error(transparent)]
    Aims(#[from] AimsError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The upstream feed failed.
    #[error(transparent)]
    Feed(#[from] desired::PullError),
}

/// Pause after a failed round, doubled up to the verify interval.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// What `status` shows about the adapter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EslStatus {
    /// `running`, `failing` or `not_started`.
    pub state: String,
    /// Entities the upstream wants shown.
    pub desired: u64,
    /// Articles in the ownership ledger.
    pub owned: u64,
    /// Pending intents in the ESL outbox.
    pub pending_intents: u64,
    /// Articles those intents still name.
    pub pending_articles: u64,
    /// `POOL-` ids handed out.
    pub pool_used: u32,
    /// Articles confirmed by reading back since start.
    pub confirmed: u64,
    /// Articles refused or never confirmed since start.
    pub failed: u64,
    /// Requests sent to AIMS since start.
    pub requests: u64,
    /// When the last verification ended (UTC ms).
    pub last_verify_at_ms: Option<i64>,
    /// Its report.
    pub last_verify: Option<VerifyReport>,
    /// The last error, until a round succeeds.
    pub last_error: Option<String>,
}

/// What the adapter's task shares with status and commands.
#[derive(Default)]
struct Board {
    status: EslStatus,
    alarmed: HashSet<String>,
}

/// Builds events and alarms for the adapter, and keeps the status board.
pub(crate) struct Reporter {
    agent_id: String,
    store: Store,
    upstream: Outbox,
    board: Arc<Mutex<Board>>,
}

impl Reporter {
    fn board(&self) -> std::sync::MutexGuard<'_, Board> {
        self.board.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The upstream outbox the outcome events go to.
    pub(crate) fn upstream(&self) -> &Outbox {
        &self.upstream
    }

    /// An outcome event whose key names the kind, the article and the intent or pass.
    pub(crate) fn event(&self, kind: &str, article: &str, sequence: u64, body: EventBody) -> Event {
        Event {
            key: EventKey::command(kind, &self.agent_id, &format!("{article}/{sequence}")),
            agent_id: self.agent_id.clone(),
            device_id: String::new(),
            occurred_at_ms: chrono::Utc::now().timestamp_millis(),
            clock_synchronized: crate::clock_sync::clock_sync().is_synchronized(),
            fencing_token: 0,
            body,
        }
    }

    /// Raises an ESL alarm (every alarm becomes an MQTT alert).
    pub(crate) fn alarm(
        &self,
        problem: &str,
        detail: &str,
        message: String,
    ) -> Result<(), StoreError> {
        tracing::warn!(problem, detail, "{message}");
        self.store.raise_alarm(&Alarm {
            raised_at_unix_ms: chrono::Utc::now().timestamp_millis(),
            kind: push::attention(problem, detail),
            message,
        })?;
        Ok(())
    }

    /// [`Reporter::alarm`] once per problem and detail while the agent runs.
    pub(crate) fn alarm_once(
        &self,
        problem: &str,
        detail: &str,
        message: String,
    ) -> Result<(), StoreError> {
        if self.board().alarmed.insert(format!("{problem}/{detail}")) {
            self.alarm(problem, detail, message)?;
        }
        Ok(())
    }

    fn pushed(&self, confirmed: usize, failed: usize) {
        let mut board = self.board();
        board.status.confirmed += confirmed as u64;
        board.status.failed += failed as u64;
    }
}

/// A request from a command to the adapter's task.
enum Request {
    Verify {
        dry_run: bool,
        reply: oneshot::Sender<Result<VerifyReport, String>>,
    },
}

/// The running adapter: status and commands.
#[derive(Clone)]
pub struct Esl {
    board: Arc<Mutex<Board>>,
    store: Store,
    requests: mpsc::Sender<Request>,
    client: Arc<AimsClient>,
}

impl Esl {
    /// What `status` shows.
    pub fn status(&self) -> EslStatus {
        let mut status = self
            .board
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .status
            .clone();
        status.desired = desired::count(&self.store) as u64;
        status.owned = ledger::count(&self.store) as u64;
        if let Ok((intents, articles)) = outbox::depth(&self.store) {
            status.pending_intents = intents;
            status.pending_articles = articles;
        }
        status.pool_used = pool::used(&self.store).unwrap_or(0);
        status.requests = self.client.requests();
        status
    }

    /// Runs a verification pass now (after the task's current step) and returns its report.
    pub async fn verify(&self, dry_run: bool) -> Result<VerifyReport, String> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::Verify { dry_run, reply })
            .await
            .map_err(|_| "the shelf-label adapter is not running".to_string())?;
        answer
            .await
            .map_err(|_| "the shelf-label adapter stopped".to_string())?
    }
}

/// The AIMS settings `[esl]` names (`None` when disabled or incomplete; check-config refuses
/// the latter).
pub fn settings(config: &Config) -> Option<AimsSettings> {
    let esl = &config.esl;
    if !esl.enabled {
        return None;
    }
    Some(AimsSettings {
        url: esl.url.clone()?,
        company: esl.company.clone()?,
        store: esl.store.clone()?,
        username: esl.username.clone()?,
        password_file: esl.password_file.clone()?,
        rate_limit: esl.rate_limit,
        request_timeout: config.upstream.request_timeout.get(),
    })
}

/// The adapter's work, step by step: what the task runs in turn, and what a test drives
/// directly (in-process, without timing).
pub struct Adapter {
    client: Arc<AimsClient>,
    store: Store,
    reporter: Reporter,
    confirm_timeout: Duration,
}

impl Adapter {
    /// An adapter writing to AIMS with `settings`, keeping its state in `store` and reporting
    /// outcomes through `upstream` as `agent_id`.
    pub fn new(
        settings: AimsSettings,
        store: &Store,
        upstream: &Outbox,
        agent_id: &str,
        confirm_timeout: Duration,
    ) -> Result<Adapter, String> {
        let board = Arc::new(Mutex::new(Board::default()));
        board.lock().unwrap_or_else(|p| p.into_inner()).status.state = "running".into();
        Ok(Adapter {
            client: Arc::new(AimsClient::new(settings)?),
            store: store.clone(),
            reporter: Reporter {
                agent_id: agent_id.to_string(),
                store: store.clone(),
                upstream: upstream.clone(),
                board,
            },
            confirm_timeout,
        })
    }

    /// Works through pending intents until none is left or a step fails; returns how many
    /// intents were finished.
    pub async fn push_pending(&self) -> Result<usize, EslError> {
        let mut finished = 0;
        loop {
            let done = push::drain_once(
                &self.client,
                &self.store,
                &self.reporter,
                self.confirm_timeout,
            )
            .await?;
            if done == 0 {
                return Ok(finished);
            }
            finished += done;
        }
    }

    /// One verification pass (see [`verify`]); with `dry_run` nothing is queued.
    pub async fn verify(&self, dry_run: bool) -> Result<VerifyReport, EslError> {
        let report = verify::verify(&self.client, &self.store, &self.reporter, dry_run).await?;
        tracing::info!(
            remote = report.remote,
            owned = report.owned,
            missing = report.missing.len(),
            mismatched = report.mismatched.len(),
            foreign = report.foreign,
            requests = report.requests,
            dry_run = report.dry_run,
            "shelf-label verification done"
        );
        let mut board = self.reporter.board();
        board.status.last_verify_at_ms = Some(chrono::Utc::now().timestamp_millis());
        board.status.last_verify = Some(report.clone());
        Ok(report)
    }

    /// A handle for status and commands.
    fn handle(&self, requests: mpsc::Sender<Request>) -> Esl {
        Esl {
            board: Arc::clone(&self.reporter.board),
            store: self.store.clone(),
            requests,
            client: Arc::clone(&self.client),
        }
    }
}

/// Starts the adapter when `esl.enabled`: one task pulling the feed, pushing, verifying.
pub fn start(tasks: &mut Tasks, config: &Config, store: &Store, upstream: &Outbox) -> Option<Esl> {
    let settings = settings(config)?;
    let feed = crate::upstream::ForwarderOptions::from_config(config)
        .map(|options| options.client)
        .and_then(
            |client: ClientSettings| match UpstreamClient::new(&client) {
                Ok(client) => Some(client),
                Err(error) => {
                    tracing::error!("shelf-label feed not pulled: {error}");
                    None
                }
            },
        );
    let adapter = match Adapter::new(
        settings,
        store,
        upstream,
        &config.agent.id,
        config.esl.confirm_timeout.get(),
    ) {
        Ok(adapter) => adapter,
        Err(error) => {
            tracing::error!("shelf-label adapter not started: {error}");
            return None;
        }
    };
    let (requests, inbox) = mpsc::channel(8);
    let handle = adapter.handle(requests);
    let worker = Worker {
        adapter,
        feed,
        agent_id: config.agent.id.clone(),
        pull_interval: config.upstream.mapping_pull_interval.get(),
        verify_interval: config.esl.verify_interval.get(),
    };
    tasks.spawn("esl", move |stop| worker.run(inbox, stop));
    tracing::info!("shelf-label adapter started");
    Some(handle)
}

struct Worker {
    adapter: Adapter,
    feed: Option<UpstreamClient>,
    agent_id: String,
    pull_interval: Duration,
    verify_interval: Duration,
}

impl Worker {
    async fn run(self, mut inbox: mpsc::Receiver<Request>, mut stop: StopSignal) {
        let mut next_verify = tokio::time::Instant::now();
        let mut backoff = FIRST_BACKOFF;
        let reporter = &self.adapter.reporter;
        loop {
            let round = tokio::select! {
                round = self.round(&mut next_verify) => round,
                _ = stop.stopped() => return,
            };
            let pause = match round {
                Ok(()) => {
                    backoff = FIRST_BACKOFF;
                    let mut board = reporter.board();
                    board.status.last_error = None;
                    board.status.state = "running".into();
                    self.pull_interval
                }
                Err(error) => {
                    tracing::warn!("shelf-label round failed: {error}; next try in {backoff:?}");
                    {
                        let mut board = reporter.board();
                        board.status.last_error = Some(error.to_string());
                        board.status.state = "failing".into();
                    }
                    if let EslError::Aims(AimsError::Unauthorized { status, .. }) = &error {
                        let _ = reporter.alarm_once(
                            "esl_unauthorized",
                            &status.to_string(),
                            format!("AIMS refused the agent's credentials: {error}"),
                        );
                    }
                    let pause = backoff;
                    backoff = (backoff * 2).min(self.verify_interval);
                    pause
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                request = inbox.recv() => {
                    if let Some(Request::Verify { dry_run, reply }) = request {
                        let report = self.adapter.verify(dry_run).await;
                        let _ = reply.send(report.map_err(|e| e.to_string()));
                    }
                }
                _ = stop.stopped() => return,
            }
        }
    }

    /// Pull, push everything pending, and verify when due (then push what it queued).
    async fn round(&self, next_verify: &mut tokio::time::Instant) -> Result<(), EslError> {
        // An unreachable upstream must not stop the labels from being kept right: the pull's
        // error is reported after the push and the verification have had their turn.
        let mut pull_failed = None;
        if let Some(feed) = &self.feed {
            match desired::pull(feed, &self.adapter.store, &self.agent_id).await {
                Ok(0) => {}
                Ok(pulled) => tracing::info!(
                    count = pulled,
                    "pulled desired shelf-label articles from the upstream"
                ),
                Err(error) => pull_failed = Some(error),
            }
        }
        self.push().await?;
        if tokio::time::Instant::now() >= *next_verify {
            let report = self.adapter.verify(false).await?;
            *next_verify = tokio::time::Instant::now() + self.verify_interval;
            if report.queued > 0 {
                self.push().await?;
            }
        }
        match pull_failed {
            Some(error) => Err(error.into()),
            None => Ok(()),
        }
    }

    async fn push(&self) -> Result<(), EslError> {
        let finished = self.adapter.push_pending().await?;
        if finished > 0 {
            tracing::info!(
                intents = finished,
                "shelf-label articles pushed and confirmed by reading back"
            );
        }
        Ok(())
    }
}
