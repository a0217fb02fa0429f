//! The long-running agent: loads the config, sets up logging and the store, starts the tasks,
//! and then does nothing but answer signals — SIGHUP re-reads the config, SIGTERM/SIGINT stop
//! everything within a bound and leave the store flushed.
//!
//! Order matters at start-up: signals are registered before any other thread exists (research
//! B.7), logging comes before the store so a salvaged store is reported, and systemd hears
//! `READY=1` only once everything is serving.

mod reload;
mod signals;
mod tasks;

pub use signals::{Request, SignalRequests};
pub use tasks::{StopSignal, Tasks};

use crate::config::{self, Config};
use crate::ops::logging::{self, LoggingHandle};
use crate::ops::status::StatusSources;
use crate::ops::systemd;
use crate::store::{Store, StoreOptions};
use crate::upstream;
use anyhow::Context as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use tokio::sync::watch;

/// Exit code when the config cannot be used at start (systemd shows it; `check-config` explains).
const EXIT_BAD_CONFIG: u8 = 2;
/// Exit code when a second stop signal cut a slow shutdown short.
const EXIT_FORCED: u8 = 130;

/// Runs the agent until it is told to stop; the entry point of `edge-agent run`.
pub fn run_blocking(config_path: PathBuf) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("edge-agent: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        match run(&config_path).await {
            Ok(code) => code,
            Err(err) => {
                tracing::error!("edge-agent stopped on an error: {err:#}");
                eprintln!("edge-agent: {err:#}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Converts the `[log]` section into logging options.
pub fn log_options(config: &Config, stderr: bool) -> logging::LogOptions {
    let file = &config.log.file;
    logging::LogOptions {
        level: config.log.level.clone(),
        file: (!file.as_os_str().is_empty()).then(|| file.clone()),
        max_file_size: config.log.max_file_size.bytes(),
        max_files: config.log.max_files,
        journald: match config.log.journald {
            config::JournaldChoice::Auto => logging::JournaldMode::Auto,
            config::JournaldChoice::Always => logging::JournaldMode::Always,
            config::JournaldChoice::Never => logging::JournaldMode::Never,
        },
        stderr,
    }
}

/// Converts the config into store options.
pub fn store_options(config: &Config) -> StoreOptions {
    StoreOptions {
        cache_capacity: config.store.cache_size.bytes(),
        ..StoreOptions::at(config.store_dir())
    }
}

async fn run(config_path: &Path) -> anyhow::Result<ExitCode> {
    let mut signals = SignalRequests::register().context("cannot register signal handlers")?;
    let loaded = match config::load(config_path) {
        Ok(loaded) => loaded,
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("edge-agent: not started: fix the config (edge-agent check-config helps)");
            return Ok(ExitCode::from(EXIT_BAD_CONFIG));
        }
    };
    let under_terminal = std::env::var_os("JOURNAL_STREAM").is_none();
    let logging = Arc::new(
        logging::init(&log_options(&loaded.config, under_terminal))
            .context("cannot set up logging")?,
    );
    for warning in loaded.warnings.iter().chain(logging.startup_warnings()) {
        tracing::warn!("{warning}");
    }
    let config = Arc::new(loaded.config);
    let store = open_store(&config).await?;

    let (config_tx, _config_rx) = watch::channel(Arc::clone(&config));
    let mut tasks = Tasks::new();
    let started_at_ms = chrono::Utc::now().timestamp_millis();
    let outbox = upstream::Outbox::open(&store, config.upstream.outbox_max_bytes.bytes())
        .context("cannot open the upstream outbox")?;
    let engine = Arc::new(crate::sync::engine(&config, &store, outbox.clone()));
    let upstream = upstream::start(&mut tasks, &config, outbox, engine.clone());
    let sync = crate::sync::start(&mut tasks, &config, &store, engine).await?;
    let status = StatusSources {
        config: Arc::clone(&config),
        store: store.clone(),
        aiface: Arc::clone(sync.aiface()),
        upstream: upstream.clone(),
        started_at_ms,
    };
    let status_for_mqtt = status.clone();
    tasks.spawn("status-file", move |stop| status.keep_written(stop));
    if let Some(interval) = systemd::watchdog_interval() {
        tasks.spawn("systemd-watchdog", move |stop| watchdog(interval, stop));
    }
    let _control_plane = crate::mqtt::start(
        &mut tasks,
        &config,
        &store,
        &logging,
        Some(status_for_mqtt),
        Some(sync.clone()),
    )?;
    systemd::notify("READY=1");
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        agent = %config.agent.id,
        site = %config.agent.site,
        devices = config.device.len(),
        config = %config_path.display(),
        "agent started"
    );

    let mut stop_reason = "signal stream closed";
    while let Some(request) = signals.next().await {
        match request {
            Request::Reload => reload::reload(config_path, &config_tx, &logging),
            Request::Stop { signal } => {
                stop_reason = signal;
                break;
            }
        }
    }
    shutdown(
        stop_reason,
        tasks,
        &store,
        &config_tx,
        &mut signals,
        &logging,
    )
    .await
}

async fn open_store(config: &Config) -> anyhow::Result<Store> {
    let options = store_options(config);
    let path = options.path.clone();
    let opened = tokio::task::spawn_blocking(move || Store::open(&options))
        .await
        .context("the store opening task failed")?
        .with_context(|| format!("cannot open the store at {}", path.display()))?;
    if let Some(report) = &opened.salvage {
        tracing::error!(
            "the store was damaged and has been moved aside to {}; starting empty and \
             rebuilding from the devices",
            report.moved_to.display()
        );
    }
    Ok(opened.store)
}

async fn shutdown(
    reason: &str,
    tasks: Tasks,
    store: &Store,
    config_tx: &watch::Sender<Arc<Config>>,
    signals: &mut SignalRequests,
    _logging: &LoggingHandle,
) -> anyhow::Result<ExitCode> {
    systemd::notify("STOPPING=1");
    let bound = config_tx.borrow().agent.shutdown_timeout.get();
    tracing::info!(signal = reason, bound = ?bound, "stopping");
    let stopping = async {
        for trouble in tasks.stop(bound).await {
            tracing::warn!("{trouble}");
        }
        store.make_durable().await
    };
    tokio::select! {
        flushed = stopping => {
            flushed.context("the final store flush failed")?;
            tracing::info!("stopped cleanly; the store is flushed");
            Ok(ExitCode::SUCCESS)
        }
        Some(Request::Stop { signal }) = signals.next() => {
            tracing::warn!(signal, "second stop signal: exiting now without waiting");
            Ok(ExitCode::from(EXIT_FORCED))
        }
    }
}

/// Tells systemd we are alive at half its watchdog period.
async fn watchdog(interval: std::time::Duration, mut stop: StopSignal) {
    let mut ticker = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = ticker.tick() => systemd::notify("WATCHDOG=1"),
            _ = stop.stopped() => return,
        }
    }
}
