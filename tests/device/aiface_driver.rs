//! The AI06 driver against the emulated terminal over real loopback sockets: complete reads
//! under both paging semantics and at page boundaries, steady-state polls that fetch nothing,
//! large photos, the sn allow-list, session replacement, and every fault knob turning into an
//! incomplete read rather than a wrong one.

use edge_agent::config::{self, Config};
use edge_agent::device::aiface::{AifaceServer, AifaceSession};
use edge_agent::device::{DeviceSession, FetchMode, MemorySink, ReadError, UserRead};
use edge_agent::lifecycle::Tasks;
use std::sync::Arc;
use std::time::Duration;
use test_support::Emulator;

const SN: &str = "SIM00000001";

struct Agent {
    tasks: Option<Tasks>,
    hub: Arc<edge_agent::device::aiface::AifaceHub>,
    url: String,
}

impl Agent {
    async fn start(command_timeout: &str) -> Self {
        let config: Config = config::parse(&format!(
            "[agent]\nid = \"t\"\n[[device]]\nid = \"door\"\ndriver = \"aiface\"\n\
             listen = \"127.0.0.1:0\"\nallowed_sn = [\"{SN}\"]\ncommand_timeout = \"{command_timeout}\"\n"
        ))
        .unwrap();
        let server = AifaceServer::bind(&config.device, None, None)
            .await
            .unwrap();
        let url = format!("ws://{}/pub/chat", server.local_addrs()[0]);
        let hub = server.hub();
        let mut tasks = Tasks::new();
        tasks.spawn("listener", move |stop| server.run(stop));
        Self {
            tasks: Some(tasks),
            hub,
            url,
        }
    }

    async fn session(&self) -> AifaceSession {
        self.hub
            .session("door", Duration::from_secs(20))
            .await
            .expect("the emulator did not register")
    }

    async fn stop(mut self) {
        self.tasks
            .take()
            .unwrap()
            .stop(Duration::from_secs(2))
            .await;
    }
}

async fn read_once(knobs: &[&str]) -> (Result<UserRead, ReadError>, serde_json::Value) {
    let agent = Agent::start("2s").await;
    let emulator = Emulator::aiface("driver", &agent.url, knobs);
    let session = agent.session().await;
    let mut sink = MemorySink::default();
    let outcome = session.read_users(FetchMode::Missing, &mut sink).await;
    agent.stop().await;
    (outcome, emulator.stop())
}

fn assert_complete(outcome: &Result<UserRead, ReadError>, users: usize) -> &UserRead {
    let read = outcome
        .as_ref()
        .unwrap_or_else(|err| panic!("read failed: {err}"));
    assert_eq!(read.users.len(), users);
    assert_eq!(read.device_user_count, users as u64);
    read
}

#[tokio::test]
async fn complete_reads_under_both_paging_semantics_and_page_boundaries() {
    for count_means in ["total", "per-page"] {
        for users in [0usize, 1, 40, 41, 81] {
            let users_arg = users.to_string();
            let (outcome, _) = read_once(&[
                "--users",
                &users_arg,
                "--photo-kb",
                "0",
                "--cards",
                "true",
                "--count-means",
                count_means,
            ])
            .await;
            let read = assert_complete(&outcome, users);
            assert_eq!(read.credentials_listed, users, "{count_means} {users}");
            if users > 0 {
                let first = &read.users["1"].user;
                assert!(first.card.is_some(), "card summarised: {first:?}");
            }
        }
    }
}

#[tokio::test]
async fn a_steady_state_poll_fetches_no_credential_it_already_holds() {
    let agent = Agent::start("2s").await;
    let emulator = Emulator::aiface(
        "steady",
        &agent.url,
        &["--users", "90", "--photo-kb", "2", "--fingerprints", "1"],
    );
    let session = agent.session().await;
    let mut sink = MemorySink::default();
    let first = session
        .read_users(FetchMode::Missing, &mut sink)
        .await
        .unwrap();
    assert_eq!(first.credentials_fetched, 90 * 3);
    let second = session
        .read_users(FetchMode::Missing, &mut sink)
        .await
        .unwrap();
    assert_eq!(second.credentials_fetched, 0);
    assert_eq!(second.credentials_reused, 90 * 3);
    assert_eq!(second.users, first.users);
    // getdevcap, 270 entries in pages of 40 (7 pages, plus the end marker where the firmware
    // needs one), getdevcap: a handful of round trips, no credential fetch.
    assert!(
        second.round_trips <= 11,
        "round trips: {}",
        second.round_trips
    );
    let refreshed = session.read_users(FetchMode::All, &mut sink).await.unwrap();
    assert_eq!(refreshed.credentials_fetched, 90 * 3);
    agent.stop().await;
    emulator.stop();
}

#[tokio::test]
async fn a_one_and_a_half_megabyte_photo_frame_passes() {
    let (outcome, _) = read_once(&["--users", "2", "--photo-kb", "1536", "--cards", "false"]).await;
    let read = assert_complete(&outcome, 2);
    assert!(
        read.bytes_received > 2 * 1536 * 1024,
        "{}",
        read.bytes_received
    );
    assert_eq!(read.users["2"].user.faces, 1);
}

#[tokio::test]
async fn every_fault_knob_gives_an_incomplete_read_or_the_exact_truth() {
    let faults = [
        "drop:getuserlist:2",
        "garbage:getuserlist:2",
        "silence:getuserlist:2",
        "refuse:getuserlist:2",
        "repeat:getuserlist:2",
        "restart:getuserlist:3",
        "refuse:getdevcap:2",
        "drop:getuserinfo:5",
        "refuse:getuserinfo:5",
    ];
    for fault in faults {
        let (outcome, summary) = read_once(&[
            "--users",
            "100",
            "--photo-kb",
            "0",
            "--fault",
            fault,
            "--silence-ms",
            "9000",
            "--reconnect",
            "false",
        ])
        .await;
        match &outcome {
            Err(err) => eprintln!("{fault}: incomplete as expected: {err}"),
            // A retry may legitimately recover (the device did not advance); then the result
            // must be the whole truth, checked against the device's own count.
            Ok(read) => {
                assert_eq!(read.users.len(), 100, "{fault}: partial read accepted");
                assert_eq!(read.device_user_count, 100, "{fault}");
            }
        }
        assert_ne!(
            summary["faults_fired"],
            serde_json::json!(0),
            "{fault}: fault never fired: {summary}"
        );
    }
}

#[tokio::test]
async fn users_deleted_during_a_read_make_it_incomplete() {
    let (outcome, _) = read_once(&[
        "--users",
        "120",
        "--photo-kb",
        "0",
        "--delete-users",
        "7,8",
        "--delete-after-commands",
        "3",
    ])
    .await;
    match outcome {
        Err(ReadError::Incomplete(reason)) => assert!(reason.contains("changed"), "{reason}"),
        other => panic!("expected an incomplete read, got {other:?}"),
    }
}

#[tokio::test]
async fn an_unknown_serial_number_is_refused() {
    let agent = Agent::start("2s").await;
    let emulator = Emulator::aiface(
        "unknown-sn",
        &agent.url,
        &["--sn", "STRANGER", "--users", "1"],
    );
    assert!(agent
        .hub
        .session("door", Duration::from_secs(2))
        .await
        .is_none());
    agent.stop().await;
    assert_eq!(emulator.stop()["stats"]["commands"], serde_json::json!(0));
}

#[tokio::test]
async fn a_newer_connection_from_the_same_terminal_replaces_the_old_one() {
    let agent = Agent::start("2s").await;
    let first_emulator = Emulator::aiface(
        "replace-a",
        &agent.url,
        &["--users", "3", "--reconnect", "false"],
    );
    let first = agent.session().await;
    let second_emulator = Emulator::aiface("replace-b", &agent.url, &["--users", "5"]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !first.is_closed() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "old session never replaced"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut sink = MemorySink::default();
    let read = agent
        .session()
        .await
        .read_users(FetchMode::Missing, &mut sink)
        .await
        .unwrap();
    assert_eq!(read.users.len(), 5);
    agent.stop().await;
    first_emulator.stop();
    second_emulator.stop();
}
