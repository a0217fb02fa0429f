//! The poll loop end to end against `device-sim` over real sockets: keypad enrolments reach
//! the buffer, on-device deletions become missing-user warnings (and nothing destructive is
//! ever sent), and an interrupted read changes nothing.

use edge_agent::audit::{Audit, AuditEntry, AuditQuery, Operation};
use edge_agent::events::EventBody;
use edge_agent::lifecycle::Tasks;
use edge_agent::store::{Store, StoreOptions};
use edge_agent::sync::buffer;
use edge_agent::sync::clock::format_ms;
use edge_agent::sync::poll::PollOutcome;
use edge_agent::sync::{snapshot, state};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use sync_support::{queued_events, Agent, DEVICE, PATIENCE};
use test_support::agent::sync as sync_support;

/// Log lines written while a test runs (the tests use a current-thread runtime, so a
/// thread-local subscriber sees every task's events).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let writer = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .map(str::to_string)
            .collect()
    }
}

fn status_of(store: &Store) -> BTreeMap<String, String> {
    buffer::list(store, Some(DEVICE), None)
        .unwrap()
        .into_iter()
        .map(|u| (u.user_id, u.status.to_string()))
        .collect()
}

#[tokio::test]
async fn a_keypad_enrolment_is_buffered_as_unmapped_by_the_poll_it_triggers() {
    let dir = tempfile::tempdir().unwrap();
    let port = test_support::free_port();
    // Polls every hour: only the connection and the enrolment push can wake the loop in time.
    let config = sync_support::config(dir.path(), port, "poll_interval = \"1h\"\n");
    let store = Store::open(&StoreOptions::at(config.store_dir()))
        .unwrap()
        .store;
    let mut tasks = Tasks::new();
    let sync = edge_agent::agent::start_core(&mut tasks, &config, &store)
        .await
        .unwrap()
        .sync;
    let emulator = sync_support::emulator(
        port,
        &dir.path().join("enrol.jsonl"),
        &[
            "--users",
            "3",
            "--photo-kb",
            "1",
            "--enrol",
            "1",
            "--enrol-after-ms",
            "1500",
        ],
    );
    let deadline = Instant::now() + PATIENCE;
    loop {
        let status = status_of(&store);
        if status.get("4").map(String::as_str) == Some("unmapped") {
            assert_eq!(status.len(), 4, "{status:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "user 4 never buffered: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let events = queued_events(&store);
    assert!(events
        .iter()
        .any(|e| matches!(&e.body, EventBody::UserDiscovered(u) if u.user_id == "4")));
    let audit = audit_entries(
        &store,
        AuditQuery {
            device_user_id: Some("4".into()),
            ..AuditQuery::default()
        },
    );
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0].operation, Operation::Discovery);

    // `sync-now` wakes the loop for one more complete read.
    assert!(!sync.sync_now("no-such-device"));
    let generation = state::load(&store, DEVICE).unwrap().generation;
    assert!(sync.sync_now(DEVICE));
    while state::load(&store, DEVICE).unwrap().generation == generation {
        assert!(Instant::now() < deadline, "sync-now did not lead to a read");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tasks.stop(Duration::from_secs(5)).await;
    let summary = emulator.stop();
    assert_eq!(summary["stats"]["enrolled"], 1);
    sync_support::assert_consistent(&store, DEVICE);
}

#[tokio::test]
async fn users_deleted_on_the_device_are_reported_missing_by_name_and_last_seen_time() {
    let captured = Captured::default();
    let _log = captured.install();
    let agent = Agent::start().await;
    let first = sync_support::emulator(
        agent.port,
        &agent.log("before"),
        &["--users", "5", "--photo-kb", "1"],
    );
    let session = agent.session().await;
    let PollOutcome::Complete(applied) = agent.engine.poll(&session).await.unwrap() else {
        panic!("first read incomplete")
    };
    assert_eq!(applied.discovered.len(), 5);
    let seen_at = state::load(&agent.store, DEVICE)
        .unwrap()
        .last_complete_read_ms
        .unwrap();
    let commands_before = first.commands();
    first.stop();

    // The terminal comes back after a keypad operator deleted users 2 and 4.
    let second = sync_support::emulator(
        agent.port,
        &agent.log("after"),
        &[
            "--users",
            "5",
            "--photo-kb",
            "1",
            "--delete-users",
            "2,4",
            "--delete-after-ms",
            "0",
        ],
    );
    let session = agent.new_session(&session).await;
    let mut changes = agent.engine.subscribe();
    let PollOutcome::Complete(applied) = agent.engine.poll(&session).await.unwrap() else {
        panic!("second read incomplete")
    };
    let announced = changes.try_recv().expect("the durable change is announced");
    assert_eq!(
        announced.applied, applied,
        "publishers see exactly what was stored"
    );
    let missing: Vec<_> = applied
        .missing
        .iter()
        .map(|m| (m.user_id.as_str(), m.last_seen_at_ms))
        .collect();
    assert_eq!(missing, [("2", seen_at), ("4", seen_at)]);

    let warnings: Vec<String> = captured
        .lines()
        .into_iter()
        .filter(|l| l.contains("WARN") && l.contains("users vanished"))
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let seen = format_ms(seen_at);
    for id in ["2", "4"] {
        assert!(
            warnings[0].contains(&format!("{id} (last seen {seen})")),
            "{}",
            warnings[0]
        );
    }
    for id in ["1", "3", "5"] {
        assert!(
            !warnings[0].contains(&format!(" {id} (last seen")),
            "{}",
            warnings[0]
        );
    }

    let status = status_of(&agent.store);
    let expected: BTreeMap<String, String> = [
        ("1", "unmapped"),
        ("2", "missing"),
        ("3", "unmapped"),
        ("4", "missing"),
        ("5", "unmapped"),
    ]
    .into_iter()
    .map(|(id, s)| (id.to_string(), s.to_string()))
    .collect();
    assert_eq!(status, expected);
    let alerts: Vec<_> = queued_events(&agent.store)
        .into_iter()
        .filter_map(|e| match e.body {
            EventBody::UserMissing {
                user,
                last_seen_at_ms,
            } => Some((user.user_id, last_seen_at_ms)),
            _ => None,
        })
        .collect();
    assert_eq!(
        alerts,
        [("2".to_string(), seen_at), ("4".to_string(), seen_at)]
    );

    // D5: nothing the agent sent could delete anything; the emulator exits 0 only then.
    let commands_after = second.commands();
    let summary = second.stop();
    assert_eq!(summary["stats"]["deleted_users"], serde_json::json!([2, 4]));
    for command in commands_before.iter().chain(&commands_after) {
        let name = command["cmd"].as_str().unwrap();
        assert!(
            ["getdevcap", "getuserlist", "getuserinfo", "getnewlog"].contains(&name),
            "unexpected command {command}"
        );
    }
    sync_support::assert_consistent(&agent.store, DEVICE);
    agent.stop().await;
}

#[tokio::test]
async fn a_read_interrupted_mid_page_changes_nothing_and_raises_no_missing_alert() {
    let agent = Agent::start().await;
    let knobs = ["--users", "60", "--page-size", "10", "--photo-kb", "0"];
    let first = sync_support::emulator(agent.port, &agent.log("full"), &knobs);
    let session = agent.session().await;
    assert!(matches!(
        agent.engine.poll(&session).await.unwrap(),
        PollOutcome::Complete(_)
    ));
    first.stop();
    let snapshot_before = snapshot::load(&agent.store, DEVICE).unwrap();
    let state_before = state::load(&agent.store, DEVICE).unwrap();
    let buffer_before = buffer::list(&agent.store, Some(DEVICE), None).unwrap();
    let events_before = queued_events(&agent.store);

    // Users 1–3 are gone AND the terminal drops the link on the third page of the list.
    let mut faulty = knobs.to_vec();
    faulty.extend(["--delete-users", "1,2,3", "--delete-after-ms", "0"]);
    faulty.extend(["--fault", "drop:getuserlist:3"]);
    let second = sync_support::emulator(agent.port, &agent.log("interrupted"), &faulty);
    let session = agent.new_session(&session).await;
    let mut changes = agent.engine.subscribe();
    let outcome = agent.engine.poll(&session).await.unwrap();
    assert!(matches!(outcome, PollOutcome::Incomplete(_)), "{outcome:?}");
    assert!(
        changes.try_recv().is_err(),
        "nothing announced to publishers"
    );

    assert_eq!(
        snapshot::load(&agent.store, DEVICE).unwrap(),
        snapshot_before
    );
    assert_eq!(state::load(&agent.store, DEVICE).unwrap(), state_before);
    assert_eq!(
        buffer::list(&agent.store, Some(DEVICE), None).unwrap(),
        buffer_before
    );
    assert_eq!(
        queued_events(&agent.store),
        events_before,
        "no event at all, so no missing-user alert"
    );
    let incomplete = audit_entries(
        &agent.store,
        AuditQuery {
            operation: Some(Operation::ReadIncomplete),
            ..AuditQuery::default()
        },
    );
    assert_eq!(incomplete.len(), 1, "the failed read is audited");
    let health = &agent.engine.health()[DEVICE];
    assert_eq!(health.consecutive_failures, 1, "{health:?}");
    assert!(
        health
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("connection"),
        "{health:?}"
    );

    // The terminal reconnects (announcing 57 users): a warning only, then the next complete
    // read is what reports the three users missing.
    let session = agent.new_session(&session).await;
    let PollOutcome::Complete(applied) = agent.engine.poll(&session).await.unwrap() else {
        panic!("read after reconnect incomplete")
    };
    let missing: Vec<_> = applied.missing.iter().map(|m| m.user_id.as_str()).collect();
    assert_eq!(missing, ["1", "2", "3"]);
    let dropped = audit_entries(
        &agent.store,
        AuditQuery {
            operation: Some(Operation::CountDropped),
            ..AuditQuery::default()
        },
    );
    assert_eq!(dropped.len(), 1, "{dropped:?}");
    assert!(
        dropped[0].detail.contains("announced 57 users"),
        "{}",
        dropped[0].detail
    );
    second.commands();
    second.stop();
    sync_support::assert_consistent(&agent.store, DEVICE);
    agent.stop().await;
}

/// The audit entries of `store` matching `query`, newest first.
fn audit_entries(store: &Store, query: AuditQuery) -> Vec<AuditEntry> {
    Audit::new(store.clone())
        .query(&query)
        .unwrap()
        .entries
        .into_iter()
        .map(|(_, entry)| entry)
        .collect()
}
