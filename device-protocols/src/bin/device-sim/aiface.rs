//! `device-sim aiface`: the AI06 emulator ([`device_protocols::sim::aiface`]) as a process.
//!
//! On SIGTERM/SIGINT or after `--run-for` it prints a JSON summary; the exit code is 3 if any
//! destructive command was received, 0 otherwise.

use std::path::PathBuf;
use std::time::Duration;

use device_protocols::sim::aiface::{emulate, CommandLog, Scenario};
use serde_json::json;
use tokio::sync::watch;

/// Exit code when the terminal received a destructive command.
const EXIT_DESTRUCTIVE: i32 = 3;

/// Options of the aiface emulator.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// The agent's WebSocket URL, e.g. ws://127.0.0.1:7788/pub/chat.
    #[arg(long)]
    url: String,
    /// JSON file of scenario knobs (same names as the flags, with underscores); wins over flags.
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// Record every received frame in this file (created afresh) as JSON lines.
    #[arg(long)]
    command_log: Option<PathBuf>,
    /// Stop after this many seconds (otherwise run until SIGTERM/SIGINT).
    #[arg(long)]
    run_for: Option<f64>,
    /// Boxed: the knobs are many, and the dispatching enum in `main.rs` should stay small.
    #[command(flatten)]
    knobs: Box<Scenario>,
}

/// Runs the aiface emulator until it is told to stop.
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let scenario = match &args.scenario {
        Some(path) => args.knobs.overlay_file(path)?,
        None => (*args.knobs).clone(),
    };
    let log = CommandLog::open(args.command_log.as_deref())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let simulator = runtime.block_on(async {
        let (stop_tx, stop) = watch::channel(false);
        let run_for = args.run_for;
        tokio::spawn(async move {
            wait_for_stop(run_for).await;
            let _ = stop_tx.send(true);
        });
        emulate(&args.url, scenario, log, stop).await
    });
    let stats = &simulator.stats;
    let summary = json!({
        "stats": stats,
        "users_on_device": simulator.device.users.len(),
        "users": simulator
            .device
            .users
            .iter()
            .map(|(enrollid, user)| (enrollid.to_string(), json!(user.name)))
            .collect::<serde_json::Map<_, _>>(),
        "credentials_written": simulator.device.credentials_written,
        "disabled_users": simulator.device.disabled_users(),
        "faults_fired": simulator.device.faults_fired,
    });
    println!("{summary}");
    if stats.destructive_commands > 0 {
        eprintln!(
            "device-sim aiface: {} destructive command(s) received",
            stats.destructive_commands
        );
        std::process::exit(EXIT_DESTRUCTIVE);
    }
    Ok(())
}

async fn wait_for_stop(run_for: Option<f64>) {
    let deadline = async {
        match run_for {
            Some(seconds) => tokio::time::sleep(Duration::from_secs_f64(seconds)).await,
            None => std::future::pending().await,
        }
    };
    let signals = async {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    };
    tokio::select! {
        _ = deadline => {}
        _ = signals => {}
    }
}
