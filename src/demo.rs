//! `edge-agent demo`: the agent's main job on an embedded default, with nothing to set up.
//!
//! An emulated AI06 (the same emulator the tests use, in-process) dials the agent's real
//! WebSocket listener on a free loopback port; the real driver performs a complete, checked
//! read; the users land in a fresh real store; a punch is stored durably and only then
//! acknowledged. Everything is printed in plain words as it happens.

use crate::agent::Tasks;
use crate::config::{self, Config};
use crate::device::aiface::AifaceServer;
use crate::device::punches::PunchLog;
use crate::device::{
    Credential, DeviceSession, FetchMode, HeldCredential, ReadProgress, ReadSink, SummarySink,
};
use crate::probe::progress_line;
use crate::store::{Store, StoreOptions};
use crate::upstream::outbox::Outbox;
use device_protocols::sim::aiface::{emulate, CommandLog, Scenario};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The embedded configuration (`config/demo.toml`).
const DEMO_CONFIG: &str = include_str!("../config/demo.toml");

/// Options of the demo.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Users enrolled on the emulated terminal.
    pub users: u64,
    /// Size of each user's face photo, KB of base64.
    pub photo_kb: usize,
    /// Keep the data directory afterwards (it is printed).
    pub keep: bool,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            users: 25,
            photo_kb: 8,
            keep: false,
        }
    }
}

/// Runs the demo, printing as it goes; an error means the demo failed to show what it claims.
pub async fn run(options: &DemoOptions) -> anyhow::Result<()> {
    let data_dir = std::env::temp_dir().join(format!("edge-agent-demo-{}", std::process::id()));
    let outcome = run_in(options, &data_dir).await;
    if options.keep {
        println!(
            "\nThe demo's store and the terminal's command log are kept in {}",
            data_dir.display()
        );
    } else {
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    outcome
}

async fn run_in(options: &DemoOptions, data_dir: &Path) -> anyhow::Result<()> {
    let mut config: Config = config::parse(DEMO_CONFIG)
        .map_err(|errors| anyhow::anyhow!("the embedded demo config is invalid: {errors:?}"))?;
    config.agent.data_dir = data_dir.to_path_buf();
    let device = config.device[0].clone();
    let sn = device.allowed_sn[0].clone();

    step("Opening a fresh store", &data_dir.display().to_string());
    let store = Store::open(&StoreOptions::at(config.store_dir()))?.store;
    let outbox = Outbox::open(&store, config.upstream.outbox_max_bytes.bytes())?;
    let punches = PunchLog::new(outbox.clone(), &config.agent.id);
    let server =
        AifaceServer::bind(&config.device, Some(store.clone()), Some(punches.clone())).await?;
    let address = server.local_addrs()[0];
    let hub = server.hub();
    let mut tasks = Tasks::new();
    tasks.spawn("aiface-listener", move |stop| server.run(stop));
    step(
        "Agent listening for AI06 terminals",
        &format!("ws://{address}"),
    );

    let command_log = data_dir.join("emulator-commands.jsonl");
    let scenario = Scenario {
        sn: sn.clone(),
        users: options.users,
        photo_kb: options.photo_kb,
        cards: true,
        fingerprints: 1,
        punches: 1,
        punch_rate: 1.0,
        ..Scenario::default()
    };
    let (stop_emulator, stop) = watch::channel(false);
    let log = CommandLog::open(Some(&command_log))?;
    let url = format!("ws://{address}/pub/chat");
    let emulator = tokio::spawn(async move { emulate(&url, scenario, log, stop).await });
    step(
        "Emulated AI06 dialling in",
        &format!(
            "sn {sn}, {} users, each with a {} KB face photo, a card and a fingerprint",
            options.users, options.photo_kb
        ),
    );

    let session = hub
        .session(&device.id, Duration::from_secs(20))
        .await
        .ok_or_else(|| anyhow::anyhow!("the emulated terminal did not register within 20 s"))?;
    let registration = session.registration();
    step(
        "Terminal registered",
        &format!(
            "firmware {}, reports {} users, clock skew {} s",
            registration.firmware.as_deref().unwrap_or("?"),
            registration.users.unwrap_or_default(),
            registration.clock_skew_s.unwrap_or_default()
        ),
    );

    println!("\nReading every user completely (list, counts checked, every credential):");
    let started = Instant::now();
    let mut sink = DemoSink::default();
    let read = session.read_users(FetchMode::Missing, &mut sink).await?;
    step(
        "Complete read",
        &format!(
            "{} users, {} credentials ({:.1} MB) in {:.2} s; the list matches the terminal's own count ({})",
            read.users.len(),
            read.credentials_fetched,
            read.bytes_received as f64 / 1e6,
            started.elapsed().as_secs_f64(),
            read.device_user_count
        ),
    );

    let again = session.read_users(FetchMode::Missing, &mut sink).await?;
    step(
        "Second poll, nothing changed",
        &format!(
            "{} round trips, {} credentials fetched (everything already held)",
            again.round_trips, again.credentials_fetched
        ),
    );

    println!("\nUnmapped users (no upstream is configured, so every user is unmapped):");
    let mut listed: Vec<_> = read.users.values().collect();
    listed.sort_by_key(|u| (u.user.user_id.len(), u.user.user_id.clone()));
    for read_user in listed.into_iter().take(5) {
        let user = &read_user.user;
        println!(
            "  user {:>4}  {:<12} card {:<12} fingerprints {} faces {}",
            user.user_id,
            user.name,
            user.card.as_deref().unwrap_or("-"),
            user.fingerprints,
            user.faces
        );
    }
    if read.users.len() > 5 {
        println!("  … and {} more", read.users.len() - 5);
    }
    println!(
        "Would be forwarded upstream: {} `user_discovered` events (idempotency key per user and read).",
        read.users.len()
    );

    let punch = wait_for_punch(&punches, &device.id).await?;
    step(
        "Punch stored durably, then acknowledged",
        &format!(
            "user {} at {} (device time, unshifted), mode {} inout {}; queued upstream as `{}`",
            punch.user_id,
            punch.time,
            punch.mode,
            punch.inout,
            crate::events::EventKey::punch(&punch)
        ),
    );
    let queued = outbox.stats()?;
    step(
        "Outbox",
        &format!(
            "{} event(s), {} bytes, waiting for an upstream (none is configured in the demo)",
            queued.depth, queued.bytes
        ),
    );

    let _ = stop_emulator.send(true);
    let simulator = emulator.await?;
    tasks.stop(Duration::from_secs(2)).await;
    store.make_durable().await?;
    let stats = &simulator.stats;
    anyhow::ensure!(
        stats.destructive_commands == 0,
        "the terminal received a destructive command"
    );
    step(
        "Terminal's view",
        &format!(
            "{} commands received, none destructive; {} punch(es) acknowledged",
            stats.commands, stats.punches_acked
        ),
    );
    println!(
        "\nDemo finished: every user read completely and checked against the terminal's count, \
         a steady-state poll fetched nothing it already held, and the punch was stored before \
         it was acknowledged."
    );
    Ok(())
}

async fn wait_for_punch(
    punches: &PunchLog,
    device_id: &str,
) -> anyhow::Result<crate::events::Punch> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(stored) = punches.of_device(device_id)?.into_iter().next() {
            return Ok(stored.punch);
        }
        anyhow::ensure!(Instant::now() < deadline, "no punch arrived within 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn step(what: &str, detail: &str) {
    println!("✔ {what}: {detail}");
}

/// Remembers what the second poll needs and prints progress.
#[derive(Default)]
struct DemoSink {
    summaries: SummarySink,
    last_progress: Option<Instant>,
}

impl ReadSink for DemoSink {
    fn held(&self, user_id: &str, slot: u16) -> Option<HeldCredential> {
        self.summaries.held(user_id, slot)
    }

    fn credential(&mut self, credential: Credential) -> Result<(), String> {
        self.summaries.credential(credential)
    }

    fn progress(&mut self, progress: ReadProgress) {
        let due = self
            .last_progress
            .is_none_or(|last| last.elapsed() > Duration::from_millis(250));
        if due || matches!(progress, ReadProgress::ListComplete { .. }) {
            println!("  … {}", progress_line(&progress));
            self.last_progress = Some(Instant::now());
        }
    }
}
