//! The long-running agent: loads the config, sets up logging and the store, builds and wires
//! every service, and then does nothing but answer signals and watch its tasks — SIGHUP
//! re-reads the config, SIGTERM/SIGINT stop everything within a bound and leave the store
//! flushed, a task that fails is reported by name.
//!
//! Order matters at start-up: signals are registered before any other thread exists (as
//! signal-hook advises, so no earlier thread races the handlers), logging comes before the
//! store so a salvaged store is reported, services are built in dependency order (store →
//! outbox → audit → engine → devices → sync loops → upstream → status → MQTT), and systemd
//! hears `READY=1` only once everything is serving.
//!
//! This module sits at the top of the crate: it imports the services, none of them imports it.
//! What they share for their lifetime (the stop signal, the task set) is in
//! [`crate::lifecycle`].

mod reload;
mod services;
mod signals;

pub use services::{start_core, Core};
pub use signals::{Request, SignalRequests};

use crate::config::{self, Config};
use crate::lifecycle::{StopSignal, TaskFailure, Tasks};
use crate::mqtt::ControlPlane;
use crate::ops::logging;
use crate::ops::status::StatusSources;
use crate::ops::systemd;
use crate::store::Store;
use anyhow::Context as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// Exit code when the config cannot be used at start (systemd shows it; `check-config` explains).
const EXIT_BAD_CONFIG: u8 = crate::exit_status::ExitStatus::BadConfig.code();
/// Exit code when a second stop signal cut a slow shutdown short.
const EXIT_FORCED: u8 = crate::exit_status::ExitStatus::Forced.code();

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

    let mut tasks = Tasks::new();
    let started_at_ms = chrono::Utc::now().timestamp_millis();
    let Core {
        upstream,
        sync,
        live,
    } = start_core(&mut tasks, &config, &store).await?;
    // The shelf-label adapter, when `esl.enabled`: its outcome events go through the one
    // upstream outbox.
    let esl = crate::esl::start(&mut tasks, &config, &store, upstream.outbox());
    // Hands the heap's free pages back after the store's start-up and after each read.
    let trimmed = live.clone();
    tasks.spawn("memory-trim", move |stop| {
        crate::ops::memory::trim_after_reads(trimmed, stop)
    });
    let status = StatusSources {
        config: Arc::clone(&config),
        store: store.clone(),
        live,
        aiface: Some(Arc::clone(sync.aiface())),
        upstream: Some(upstream.clone()),
        esl,
        started_at_ms,
        logging: Some(Arc::clone(&logging)),
        buffer_stats: Default::default(),
    };
    if let Some(listen) = config.metrics.listen {
        let metrics = crate::ops::metrics::MetricsServer::bind(listen, status.clone())
            .await
            .with_context(|| format!("cannot serve metrics on {listen} (metrics.listen)"))?;
        tasks.spawn("metrics", move |stop| metrics.run(stop));
    }
    let status_for_mqtt = status.clone();
    tasks.spawn("status-file", move |stop| status.keep_written(stop));
    // False once a critical task died: the watchdog stops pinging and systemd restarts us.
    let (alive, alive_rx) = tokio::sync::watch::channel(true);
    let watchdog_on = systemd::watchdog_interval();
    if let Some(interval) = watchdog_on {
        tasks.spawn("systemd-watchdog", move |stop| {
            watchdog(interval, alive_rx, stop)
        });
    }
    let status_for_socket = status_for_mqtt.clone();
    let control_plane = crate::mqtt::start(
        &mut tasks,
        &config,
        &store,
        &logging,
        Some(status_for_mqtt),
        Some(sync.clone()),
    )?;
    // The local control socket serves the same command table as MQTT (or, with MQTT off, the
    // same handlers over the same services).
    let commands = match &control_plane {
        Some(plane) => Arc::clone(&plane.registry),
        None => crate::mqtt::local_registry(
            &config,
            &store,
            &logging,
            Some(status_for_socket),
            Some(sync.clone()),
        ),
    };
    let served = crate::mqtt::command::socket::Served {
        agent: config.agent.id.clone(),
        store: config.store_dir(),
    };
    let socket = config.control_socket();
    crate::mqtt::command::socket::start(&mut tasks, &socket, served, commands, &store);
    systemd::notify("READY=1");
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        agent = %config.agent.id,
        site = %config.agent.site,
        devices = config.device.len(),
        config = %config_path.display(),
        "agent started"
    );

    // The config in force: SIGHUP replaces it when the file is valid (what can change at run
    // time is applied by `reload`; the shutdown bound is read from it at stop).
    let mut current = Arc::clone(&config);
    let mut stop_reason = "signal stream closed";
    loop {
        tokio::select! {
            request = signals.next() => match request {
                Some(Request::Reload) => reload::reload(config_path, &mut current, &logging),
                Some(Request::Stop { signal }) => {
                    stop_reason = signal;
                    break;
                }
                None => break,
            },
            failure = tasks.failed() => task_failed(&failure, &alive, watchdog_on.is_some()),
        }
    }
    shutdown(
        stop_reason,
        tasks,
        &store,
        &current,
        control_plane.as_ref(),
        &mut signals,
    )
    .await
}

/// Tasks whose loss leaves the agent doing its job (a stale status file, a retention sweep
/// that waits for the next start, free heap no longer handed back). Every other task is critical: nothing restarts it inside
/// the agent (device loops restart themselves and never get here), so the service it runs —
/// the forwarder, the device listener, the MQTT link, the alerts — is gone until the agent
/// restarts.
const NOT_CRITICAL: &[&str] = &["status-file", "sync-retention", "memory-trim"];

/// Whether losing `task` must restart the agent.
fn is_critical(task: &str) -> bool {
    !NOT_CRITICAL.contains(&task)
}

/// What the agent does when one of its tasks panics or returns before stop. The task set has
/// already logged the failure with the task's name. A critical task's death clears `alive`,
/// which stops the systemd watchdog pings, so systemd restarts the unit (`WatchdogSec=`);
/// without a watchdog the agent keeps serving with the rest and says so.
fn task_failed(failure: &TaskFailure, alive: &tokio::sync::watch::Sender<bool>, watchdog: bool) {
    if !is_critical(&failure.task) {
        tracing::error!(
            task = %failure.task,
            "the agent keeps running without task `{}`; restart the agent to bring it back",
            failure.task
        );
        return;
    }
    alive.send_replace(false);
    if watchdog {
        tracing::error!(
            task = %failure.task,
            "critical task `{}` is dead: systemd watchdog pings stopped, so systemd restarts              the agent",
            failure.task
        );
    } else {
        tracing::error!(
            task = %failure.task,
            "critical task `{}` is dead and no systemd watchdog is configured: restart the              agent to bring it back",
            failure.task
        );
    }
}

async fn open_store(config: &Config) -> anyhow::Result<Store> {
    let options = config.store_options();
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
    let store = opened.store;
    let migrating = store.clone();
    tokio::task::spawn_blocking(move || crate::sync::credentials::migrate_values(&migrating))
        .await
        .context("the credential value migration task failed")?
        .context("cannot move cached credential values into value files")?;
    Ok(store)
}

async fn shutdown(
    reason: &str,
    tasks: Tasks,
    store: &Store,
    config: &Config,
    control_plane: Option<&ControlPlane>,
    signals: &mut SignalRequests,
) -> anyhow::Result<ExitCode> {
    systemd::notify("STOPPING=1");
    let bound = config.agent.shutdown_timeout.get();
    tracing::info!(signal = reason, bound = ?bound, "stopping");
    let stopping = async {
        for trouble in tasks.stop(bound).await {
            tracing::warn!("{trouble}");
        }
        if let Some(plane) = control_plane {
            let pending = plane.alerts.pending_count();
            if pending > 0 {
                tracing::info!(
                    pending,
                    "alerts not yet confirmed by the broker are kept and sent after the next start"
                );
            }
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

/// Tells systemd we are alive at half its watchdog period, as long as every critical task is
/// (`alive`); once one died it goes quiet, and systemd kills and restarts the agent.
async fn watchdog(
    interval: std::time::Duration,
    alive: tokio::sync::watch::Receiver<bool>,
    mut stop: StopSignal,
) {
    let mut ticker = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                if *alive.borrow() {
                    systemd::notify("WATCHDOG=1");
                }
            }
            _ = stop.stopped() => return,
        }
    }
}
