//! `edge-agent demo`: the agent's main job on an embedded default, with nothing to set up.
//!
//! An emulated AI06 (the same emulator the tests use, in-process) dials the agent's real
//! WebSocket listener on a free loopback port; the real driver performs a complete, checked
//! read; the users land in a fresh real store; a punch is stored durably and only then
//! acknowledged. Everything is printed in plain words as it happens.

use crate::config::{self, Config};
use crate::device::aiface::AifaceSession;
use crate::device::punches::PunchLog;
use crate::lifecycle::Tasks;
use crate::store::{Store, StoreOptions};
use crate::sync::apply::Applied;
use crate::sync::buffer;
use crate::sync::poll::PollOutcome;
use crate::sync::Engine;
use crate::upstream::outbox::Outbox;
use device_protocols::sim::aiface::{emulate, CommandLog, Scenario};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The user an emulated keypad operator deletes during the demo.
const DELETED_USER: u64 = 7;
/// When the deletion happens, after the emulator starts (after the first two polls).
const DELETE_AFTER: Duration = Duration::from_millis(2500);

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
    config.lock.dir = data_dir.join("locks");
    let device = config.device[0].clone();
    let sn = device.allowed_sn[0].clone();

    step("Opening a fresh store", &data_dir.display().to_string());
    let store = Store::open(&StoreOptions::at(config.store_dir()))?.store;
    let outbox = Outbox::open(&store, config.upstream.outbox_max_bytes.bytes())?;
    let punches = PunchLog::new(outbox.clone(), &config.agent.id);
    let mut tasks = Tasks::new();
    let listener = crate::device::listen_aiface(
        &mut tasks,
        &config.device,
        Some(store.clone()),
        Some(punches.clone()),
    )
    .await?;
    let address = listener.addresses[0];
    let hub = listener.hub;
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
        delete_users: vec![DELETED_USER],
        delete_after_ms: Some(DELETE_AFTER.as_millis() as u64),
        ..Scenario::default()
    };
    let (stop_emulator, stop) = watch::channel(false);
    let log = CommandLog::open(Some(&command_log))?;
    let url = format!("ws://{address}/pub/chat");
    let emulator_started = tokio::time::Instant::now();
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

    let engine = Engine::from_config(&config, &store, outbox.clone());

    println!("\nPoll 1 — reading every user completely (list, counts checked, every credential):");
    let started = Instant::now();
    let first = poll(&engine, &session).await?;
    step(
        "Complete read applied in one durable transaction",
        &format!(
            "{} users in {:.2} s; the list matches the terminal's own count; {} discovered and \
             buffered as unmapped",
            first.users,
            started.elapsed().as_secs_f64(),
            first.discovered.len()
        ),
    );

    let (trips_before, _) = session.traffic();
    let second = poll(&engine, &session).await?;
    let (trips_after, _) = session.traffic();
    step(
        "Poll 2, nothing changed on the terminal",
        &format!(
            "{} round trips, no credential fetched again, {} changes",
            trips_after - trips_before,
            second.discovered.len() + second.changed.len() + second.missing.len()
        ),
    );

    println!("\nBuffered users (no upstream mapping yet, so all unmapped):");
    let buffered = buffer::list(&store, Some(&device.id), None)?;
    let mut listed: Vec<_> = buffered.iter().collect();
    listed.sort_by_key(|u| (u.user_id.len(), u.user_id.clone()));
    for user in listed.iter().take(5) {
        println!(
            "  user {:>4}  {:<10} {:<9} {}",
            user.user_id, user.name, user.status, user.credentials
        );
    }
    if listed.len() > 5 {
        println!("  … and {} more", listed.len() - 5);
    }

    println!(
        "\nSomeone deletes user {DELETED_USER} on the terminal's keypad (the failure this agent exists for)…"
    );
    let deleted_at = emulator_started + DELETE_AFTER;
    tokio::time::sleep_until(deleted_at + Duration::from_millis(300)).await;
    let third = poll(&engine, &session).await?;
    for user in &third.missing {
        step(
            "Poll 3 noticed the disappearance",
            &format!(
                "user {} ({}) is MISSING; last seen {}; kept in the buffer as `missing`, \
                 a `user_missing` event queued for upstream, the terminal was not touched",
                user.user_id,
                user.name,
                chrono::DateTime::from_timestamp_millis(user.last_seen_at_ms)
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                    .unwrap_or_default()
            ),
        );
    }
    anyhow::ensure!(
        third
            .missing
            .iter()
            .any(|u| u.user_id == DELETED_USER.to_string()),
        "poll 3 did not report user {DELETED_USER} missing"
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
        "Would be forwarded upstream",
        &format!(
            "{} events in the durable outbox ({} bytes): {} user_discovered, 1 user_missing, \
             1 punch; each with a stable idempotency key (no upstream is configured in the demo)",
            queued.depth,
            queued.bytes,
            first.discovered.len()
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
        "\nDemo finished: every user read completely and buffered, a steady-state poll fetched \
         nothing it already held, a deleted user was reported missing (never deleted by us), \
         and the punch was stored before it was acknowledged."
    );
    Ok(())
}

/// One poll; an incomplete read (the terminal changed mid-read) is explained and retried.
async fn poll(engine: &Engine, session: &AifaceSession) -> anyhow::Result<Applied> {
    for _ in 0..3 {
        match engine.poll(session).await? {
            PollOutcome::Complete(applied) => return Ok(applied),
            PollOutcome::Incomplete(error) => step(
                "Read incomplete, nothing concluded, reading again",
                &error.to_string(),
            ),
        }
    }
    anyhow::bail!("three reads in a row were incomplete")
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
