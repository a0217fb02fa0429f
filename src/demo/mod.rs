//! `edge-agent demo`: the agent's main job on an embedded default, with nothing to set up.
//!
//! An emulated AI06 (the same emulator the tests use, in-process) dials the agent's real
//! WebSocket listener on a free loopback port; the real driver performs a complete, checked
//! read; the users land in a fresh real store; a punch is stored durably and only then
//! acknowledged; the real forwarder and HTTP client deliver every event to an in-process
//! upstream receiver on loopback ([`receiver`]), whose own count the demo reports.
//! Everything is printed in plain words as it happens; with `--json` the words go to stderr
//! and a [`DemoSummary`] of what happened is printed on stdout.

pub mod receiver;

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
use crate::upstream::{self, ForwarderOptions, UpstreamClient};
use device_protocols::sim::aiface::{emulate, CommandLog, Scenario};
use receiver::{Receiver, ReceiverCounts};
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The user an emulated keypad operator deletes during the demo.
const DELETED_USER: u64 = 7;
/// When the deletion happens, after the emulator starts (after the first two polls).
const DELETE_AFTER: Duration = Duration::from_millis(2500);

/// The embedded configuration (`config/demo.toml`).
const DEMO_CONFIG: &str = include_str!("../../config/demo.toml");

/// Options of the demo.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Users enrolled on the emulated terminal.
    pub users: u64,
    /// Size of each user's face photo, KB of base64.
    pub photo_kb: usize,
    /// Keep the data directory afterwards (it is printed).
    pub keep: bool,
    /// Print a [`DemoSummary`] as JSON on stdout (the narration goes to stderr).
    pub json: bool,
}

/// What the demo did, counted from the store, the terminal and the upstream receiver (not
/// from the narration): `edge-agent demo --json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct DemoSummary {
    /// Users on the terminal at the first complete read.
    pub users_read: usize,
    /// Users in the buffer at the end.
    pub users_buffered: usize,
    /// Users the demo's deletion made missing (ids).
    pub missing: Vec<String>,
    /// Punches the agent stored.
    pub punches_stored: usize,
    /// Punches the terminal saw acknowledged.
    pub punches_acknowledged: u64,
    /// Commands the terminal received.
    pub terminal_commands: u64,
    /// Destructive commands the terminal received (must be 0).
    pub destructive_commands: u64,
    /// Events still in the outbox at the end (0 once everything was delivered).
    pub outbox_left: u64,
    /// The upstream receiver's own count.
    pub upstream: ReceiverCounts,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            users: 25,
            photo_kb: 8,
            keep: false,
            json: false,
        }
    }
}

/// Runs the demo, printing as it goes; an error means the demo failed to show what it claims.
pub async fn run(options: &DemoOptions) -> anyhow::Result<DemoSummary> {
    let data_dir = std::env::temp_dir().join(format!("edge-agent-demo-{}", std::process::id()));
    let say = Narrator { json: options.json };
    let outcome = run_in(options, &data_dir, &say).await;
    if options.keep {
        say.line(&format!(
            "\nThe demo's store and the terminal's command log are kept in {}",
            data_dir.display()
        ));
    } else {
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    outcome
}

/// Where the narration goes: stdout, or stderr when stdout carries the JSON summary.
struct Narrator {
    json: bool,
}

impl Narrator {
    fn line(&self, text: &str) {
        if self.json {
            eprintln!("{text}");
        } else {
            println!("{text}");
        }
    }

    fn step(&self, what: &str, detail: &str) {
        self.line(&format!("✔ {what}: {detail}"));
    }
}

async fn run_in(
    options: &DemoOptions,
    data_dir: &Path,
    say: &Narrator,
) -> anyhow::Result<DemoSummary> {
    let mut config: Config = config::parse(DEMO_CONFIG)
        .map_err(|errors| anyhow::anyhow!("the embedded demo config is invalid: {errors:?}"))?;
    config.agent.data_dir = data_dir.to_path_buf();
    config.lock.dir = data_dir.join("locks");
    let device = config.device[0].clone();
    let sn = device.allowed_sn[0].clone();

    say.step("Opening a fresh store", &data_dir.display().to_string());
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
    say.step(
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
    say.step(
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
    say.step(
        "Terminal registered",
        &format!(
            "firmware {}, reports {} users, clock skew {} s",
            registration.firmware.as_deref().unwrap_or("?"),
            registration.users.unwrap_or_default(),
            registration.clock_skew_s.unwrap_or_default()
        ),
    );

    let engine = Arc::new(Engine::from_config(&config, &store, outbox.clone())?);

    let token = receiver_token()?;
    let receiver = Receiver::start(token.clone()).await?;
    let token_file = data_dir.join("upstream.token");
    std::fs::write(&token_file, &token)?;
    config.upstream.url = Some(receiver.url());
    config.upstream.token_file = Some(token_file);
    let forwarding = ForwarderOptions::from_config(&config)
        .ok_or_else(|| anyhow::anyhow!("the demo's upstream settings are incomplete"))?;
    let client = UpstreamClient::new(&forwarding.client)?;
    let _upstream = upstream::spawn(
        &mut tasks,
        outbox.clone(),
        client,
        engine.clone(),
        &forwarding,
    );
    say.step(
        "Upstream receiver listening (in-process, loopback)",
        &format!(
            "{}; the real forwarder and HTTP client deliver to it",
            receiver.url()
        ),
    );

    say.line("\nPoll 1 — reading every user completely (list, counts checked, every credential):");
    let started = Instant::now();
    let first = poll(&engine, &session, say).await?;
    say.step(
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
    let second = poll(&engine, &session, say).await?;
    let (trips_after, _) = session.traffic();
    say.step(
        "Poll 2, nothing changed on the terminal",
        &format!(
            "{} round trips, no credential fetched again, {} changes",
            trips_after - trips_before,
            second.discovered.len() + second.changed.len() + second.missing.len()
        ),
    );

    say.line("\nBuffered users (no upstream mapping yet, so all unmapped):");
    let buffered = buffer::list(&store, Some(&device.id), None)?;
    let mut listed: Vec<_> = buffered.iter().collect();
    listed.sort_by_key(|u| (u.user_id.len(), u.user_id.clone()));
    for user in listed.iter().take(5) {
        say.line(&format!(
            "  user {:>4}  {:<10} {:<9} {}",
            user.user_id, user.name, user.status, user.credentials
        ));
    }
    if listed.len() > 5 {
        say.line(&format!("  … and {} more", listed.len() - 5));
    }

    say.line(&format!(
        "\nSomeone deletes user {DELETED_USER} on the terminal's keypad (the failure this agent \
         exists for)…"
    ));
    let deleted_at = emulator_started + DELETE_AFTER;
    tokio::time::sleep_until(deleted_at + Duration::from_millis(300)).await;
    let third = poll(&engine, &session, say).await?;
    for user in &third.missing {
        say.step(
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
    say.step(
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
    let outbox_left = drained(&outbox).await?;
    let counts = receiver.counts();
    say.step(
        "Forwarded upstream",
        &format!(
            "the receiver counted {} deliveries: {} events applied ({}), {} duplicate(s) \
             (redeliveries it recognised by key), {} key(s) with two payloads; {} event(s) \
             left in the outbox",
            counts.deliveries,
            counts.applied,
            counts
                .applied_by_type
                .iter()
                .map(|(kind, n)| format!("{n} {kind}"))
                .collect::<Vec<_>>()
                .join(", "),
            counts.duplicates,
            counts.keys_with_two_payloads,
            outbox_left
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
    say.step(
        "Terminal's view",
        &format!(
            "{} commands received, none destructive; {} punch(es) acknowledged",
            stats.commands, stats.punches_acked
        ),
    );
    say.line(
        "\nDemo finished: every user read completely and buffered, a steady-state poll fetched \
         nothing it already held, a deleted user was reported missing (never deleted by us), \
         the punch was stored before it was acknowledged, and every event reached the upstream \
         receiver.",
    );
    Ok(DemoSummary {
        users_read: first.users,
        users_buffered: buffer::list(&store, Some(&device.id), None)?.len(),
        missing: third.missing.iter().map(|u| u.user_id.clone()).collect(),
        punches_stored: punches.of_device(&device.id)?.len(),
        punches_acknowledged: stats.punches_acked,
        terminal_commands: stats.commands,
        destructive_commands: stats.destructive_commands,
        outbox_left,
        upstream: counts,
    })
}

/// A random bearer token for the receiver (the demo's own, written to a file in its data
/// directory like a real one).
fn receiver_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|error| anyhow::anyhow!("no random token: {error}"))?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

/// Waits (up to 20 s) until the forwarder has emptied the outbox; returns what is left.
async fn drained(outbox: &Outbox) -> anyhow::Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let depth = outbox.stats()?.depth;
        if depth == 0 || Instant::now() > deadline {
            return Ok(depth);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One poll; an incomplete read (the terminal changed mid-read) is explained and retried.
async fn poll(engine: &Engine, session: &AifaceSession, say: &Narrator) -> anyhow::Result<Applied> {
    for _ in 0..3 {
        match engine.poll(session).await? {
            PollOutcome::Complete(applied) => return Ok(applied),
            PollOutcome::Incomplete(error) => say.step(
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
