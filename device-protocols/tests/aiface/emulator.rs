//! The `device-sim aiface` binary against a tiny agent built from the sans-IO types: complete
//! reads in both paging semantics, a 1.5 MB photo, punch resends, every fault knob, and the
//! command log (every command the agent sent is there, and none is destructive).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::agent::{start_emulator, Agent, LinkError, ReadError, STEP};
use device_protocols::aiface::{
    BackupNum, Command, CompletenessError, CredentialRef, CredentialValue, DeviceMessage,
    DeviceReport, FetchError, PagedRead, PagingError, ParseError, RegReply, ReplyBody,
    ReplyOutcome, SetUserInfo, Step,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use test_support::emulator::{negative_command_log, Protocol};
use test_support::Emulator;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

fn text(value: &CredentialValue) -> String {
    value.as_text()
}

// ---------------------------------------------------------------------------------------------
// The tests.

#[tokio::test]
async fn complete_read_returns_the_configured_users_in_both_paging_semantics() {
    for means in ["total", "per-page"] {
        let (mut agent, url) = Agent::bind().await;
        let emulator = start_emulator(
            &url,
            &format!("complete-read-{means}"),
            &[
                "--users",
                "45",
                "--photo-kb",
                "2",
                "--passwords",
                "true",
                "--fingerprints",
                "1",
                "--names",
                "amina,yonas",
                "--count-means",
                means,
                "--sn",
                "AYTE00000042",
            ],
        );
        let reg = agent.accept_device().await;
        assert_eq!(reg.sn, "AYTE00000042");
        assert_eq!(reg.devinfo.capacity.useduser, Some(45));
        assert_eq!(reg.devinfo.firmware.as_deref(), Some("ai806_f06v_v5.17"));

        let (summary, credentials) = agent.complete_read().await.unwrap();
        assert_eq!((summary.users, summary.photos, summary.cards), (45, 45, 45));
        assert_eq!((summary.passwords, summary.fingerprints), (45, 45));
        assert_eq!(
            credentials.len(),
            180,
            "four credentials per user, each fetched once"
        );
        for credential in &credentials {
            let id = credential.enrollid;
            assert!((1..=45).contains(&id));
            let expected_name = match id {
                1 => "amina".to_owned(),
                2 => "yonas".to_owned(),
                _ => format!("user{id}"),
            };
            assert_eq!(credential.name.as_deref(), Some(expected_name.as_str()));
            match credential.backupnum {
                BackupNum::CARD => assert_eq!(
                    credential.record,
                    CredentialValue::Number((3_000_000_000 + id).into())
                ),
                BackupNum::PASSWORD => assert_eq!(
                    credential.record,
                    CredentialValue::Number((100_000 + id).into())
                ),
                BackupNum::PHOTO => {
                    let photo = text(&credential.record);
                    assert_eq!(photo.len(), 2048, "2 KB of base64");
                    assert!(photo.starts_with("/9j/"), "a JPEG");
                }
                BackupNum(0) => assert!(text(&credential.record).starts_with("TSS21(128)")),
                other => panic!("unexpected slot {other}"),
            }
        }
        agent.finish(emulator);
    }
}

#[tokio::test]
async fn zero_users_read_completes_empty() {
    let (mut agent, url) = Agent::bind().await;
    let emulator = start_emulator(&url, "zero-users", &["--users", "0"]);
    agent.accept_device().await;
    let (summary, credentials) = agent.complete_read().await.unwrap();
    assert_eq!((summary.users, credentials.len()), (0, 0));
    agent.finish(emulator);
}

#[tokio::test]
async fn a_photo_frame_of_one_and_a_half_megabytes_passes() {
    let (mut agent, url) = Agent::bind().await;
    let emulator = start_emulator(
        &url,
        "big-photo",
        &["--users", "1", "--photo-kb", "1536", "--cards", "false"],
    );
    agent.accept_device().await;
    let reply = agent
        .request(&Command::GetUserInfo {
            enrollid: 1,
            backupnum: BackupNum::PHOTO,
        })
        .await
        .unwrap();
    let ReplyOutcome::Success(ReplyBody::UserInfo(photo)) = reply.outcome else {
        panic!("{reply:?}")
    };
    assert_eq!(text(&photo.record).len(), 1536 * 1024);
    // And the other way: restoring that photo to another user is one 1.5 MB frame too.
    let restore = SetUserInfo {
        enrollid: 2,
        name: "copy".into(),
        backupnum: BackupNum::PHOTO,
        admin: 0,
        record: photo.record.clone(),
    };
    let reply = agent.request(&Command::SetUserInfo(restore)).await.unwrap();
    assert!(
        matches!(reply.outcome, ReplyOutcome::Success(_)),
        "{reply:?}"
    );
    let reply = agent
        .request(&Command::GetUserInfo {
            enrollid: 2,
            backupnum: BackupNum::PHOTO,
        })
        .await
        .unwrap();
    let ReplyOutcome::Success(ReplyBody::UserInfo(copy)) = reply.outcome else {
        panic!("{reply:?}")
    };
    assert_eq!(copy.record, photo.record);
    agent.finish(emulator);
}

#[tokio::test]
async fn a_scenario_file_sets_the_knobs() {
    let (mut agent, url) = Agent::bind().await;
    let file =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/aiface/scenario-small.json");
    let path = file.to_str().unwrap();
    let emulator = start_emulator(
        &url,
        "scenario-file",
        &["--users", "99", "--scenario", path],
    );
    let reg = agent.accept_device().await;
    assert_eq!(reg.sn, "AYTE00000777");
    let (summary, credentials) = agent.complete_read().await.unwrap();
    assert_eq!(
        (summary.users, summary.passwords, summary.photos),
        (3, 3, 0),
        "the file wins over --users 99"
    );
    let names: Vec<_> = credentials.iter().filter_map(|c| c.name.clone()).collect();
    assert!(
        names.contains(&"selam".to_owned()) && names.contains(&"user12".to_owned()),
        "{names:?}"
    );
    agent.finish(emulator);
}

#[tokio::test]
async fn a_punch_is_resent_until_acknowledged() {
    let (mut agent, url) = Agent::bind().await;
    let emulator = start_emulator(
        &url,
        "punch-resend",
        &["--punches", "1", "--punch-resend-ms", "1000"],
    );
    agent.accept_device().await;
    agent.ack_punches = false;
    let DeviceReport::SendLog(first) = agent.next_report().await else {
        panic!("not a sendlog")
    };
    let DeviceReport::SendLog(again) = agent.next_report().await else {
        panic!("not a sendlog")
    };
    assert_eq!(again, first, "the same batch, same logindex, is resent");
    agent.ack_punches = true;
    let DeviceReport::SendLog(last) = agent.next_report().await else {
        panic!("not a sendlog")
    };
    assert_eq!(last, first);
    assert_eq!(first.records.len(), 1);
    assert_eq!(first.logindex, Some(Value::from(1)));
    // Acknowledged: nothing more is sent, even after another resend interval.
    assert!(matches!(
        agent.recv(Duration::from_millis(1500)).await,
        Err(LinkError::TimedOut)
    ));
    let summary = agent.finish(emulator);
    assert_eq!(summary["stats"]["punches_acked"], 1);
    assert_eq!(summary["stats"]["sendlog_resends"], 2);
}

#[tokio::test]
async fn fault_drop_mid_page_fails_the_read_and_the_terminal_reconnects() {
    let (mut agent, url) = Agent::bind().await;
    let emulator = start_emulator(
        &url,
        "fault-drop",
        &["--users", "45", "--fault", "drop:getuserlist:2"],
    );
    agent.accept_device().await;
    assert!(matches!(
        agent.complete_read().await,
        Err(ReadError::Link(LinkError::Closed))
    ));
    agent.accept_device().await;
    let (summary, _) = agent.complete_read().await.unwrap();
    assert_eq!(summary.users, 45);
    let summary = agent.finish(emulator);
    assert_eq!(summary["stats"]["sessions"], 2);
    assert_eq!(
        summary["faults_fired"],
        serde_json::json!(["drop:getuserlist:2"])
    );
}

#[tokio::test]
async fn fault_garbage_frame_is_reported_as_not_json() {
    let (mut agent, url) = Agent::bind().await;
    let emulator = start_emulator(
        &url,
        "fault-garbage",
        &["--users", "45", "--fault", "garbage:getuserlist:2"],
    );
    agent.accept_device().await;
    let error = agent.complete_read().await.unwrap_err();
    assert!(
        matches!(
            error,
            ReadError::Link(LinkError::Garbage(ParseError::NotJson(_)))
        ),
        "{error:?}"
    );
    // The fault fires once: a fresh read on the same link succeeds.
    assert_eq!(agent.complete_read().await.unwrap().0.users, 45);
    agent.finish(emulator);
}

#[tokio::test]
async fn fault_silence_times_out_then_the_terminal_drops_and_returns() {
    let (mut agent, url) = Agent::bind().await;
    let emulator = start_emulator(
        &url,
        "fault-silence",
        &[
            "--users",
            "3",
            "--fault",
            "silence:getuserlist:1",
            "--silence-ms",
            "800",
        ],
    );
    agent.accept_device().await;
    let capacity = agent.devcap().await.unwrap();
    // Only the listing waits briefly: the terminal has gone quiet on its first page.
    agent.reply_timeout = Duration::from_millis(300);
    assert!(matches!(
        agent.read_users(&capacity).await,
        Err(ReadError::Link(LinkError::TimedOut))
    ));
    agent.reply_timeout = Duration::from_secs(10);
    agent.accept_device().await;
    assert_eq!(agent.complete_read().await.unwrap().0.users, 3);
    agent.finish(emulator);
}

#[tokio::test]
async fn fault_refuse_is_a_failure_not_an_empty_answer() {
    let (mut agent, url) = Agent::bind().await;
    let emulator = start_emulator(
        &url,
        "fault-refuse",
        &[
            "--users",
            "45",
            "--fault",
            "refuse:getuserlist:2",
            "--fault",
            "refuse:getuserinfo:3",
        ],
    );
    agent.accept_device().await;
    let error = agent.complete_read().await.unwrap_err();
    assert!(
        matches!(
            error,
            ReadError::Paging(PagingError::Refused { page: 2, .. })
        ),
        "{error:?}"
    );
    let error = agent.complete_read().await.unwrap_err();
    assert!(
        matches!(error, ReadError::Fetch(FetchError::Refused { .. })),
        "{error:?}"
    );
    agent.finish(emulator);
}

#[tokio::test]
async fn fault_repeated_or_restarted_pages_fail_the_read() {
    let (mut agent, url) = Agent::bind().await;
    let emulator = start_emulator(
        &url,
        "fault-repeat-restart",
        &[
            "--users",
            "100",
            "--photo-kb",
            "0",
            "--fault",
            "repeat:getuserlist:2",
            "--fault",
            "restart:getuserlist:5",
        ],
    );
    agent.accept_device().await;
    let error = agent.complete_read().await.unwrap_err();
    assert!(
        matches!(
            error,
            ReadError::Paging(PagingError::Repeated {
                page: 2,
                from: 0,
                to: 39,
                ..
            })
        ),
        "{error:?}"
    );
    // Second read: requests 3 and 4 are its pages 1-2; the 5th request restarts at 0.
    let error = agent.complete_read().await.unwrap_err();
    assert!(
        matches!(
            error,
            ReadError::Paging(PagingError::Restarted {
                page: 3,
                expected: 80,
                ..
            })
        ),
        "{error:?}"
    );
    assert_eq!(agent.complete_read().await.unwrap().0.users, 100);
    agent.finish(emulator);
}

#[tokio::test]
async fn operator_deletion_during_a_read_makes_it_incomplete() {
    // Deleted before the second page is answered (command 3: devcap, page 1, page 2).
    for (means, expect_total_changed) in [("total", true), ("per-page", false)] {
        let (mut agent, url) = Agent::bind().await;
        let emulator = start_emulator(
            &url,
            &format!("delete-mid-read-{means}"),
            &[
                "--users",
                "6",
                "--photo-kb",
                "0",
                "--page-size",
                "2",
                "--count-means",
                means,
                "--delete-users",
                "2,3",
                "--delete-after-commands",
                "3",
            ],
        );
        agent.accept_device().await;
        let error = agent.complete_read().await.unwrap_err();
        match error {
            ReadError::Paging(PagingError::TotalChanged {
                before: 6,
                after: 4,
                ..
            }) if expect_total_changed => {}
            ReadError::Incomplete(CompletenessError::CountersChanged {
                counter: "useduser",
                ..
            }) if !expect_total_changed => {}
            other => panic!("{means}: {other:?}"),
        }
        // The next read sees the deletion as a complete, consistent fact.
        let (summary, credentials) = agent.complete_read().await.unwrap();
        assert_eq!(summary.users, 4);
        let mut ids: Vec<u64> = credentials.iter().map(|c| c.enrollid).collect();
        ids.dedup();
        assert_eq!(ids, [1, 4, 5, 6]);
        let summary = agent.finish(emulator);
        assert_eq!(summary["stats"]["deleted_users"], serde_json::json!([2, 3]));
    }
}

#[tokio::test]
async fn operator_deletion_at_a_time_shows_in_the_next_complete_read() {
    let (mut agent, url) = Agent::bind().await;
    let emulator = start_emulator(
        &url,
        "delete-at-time",
        &[
            "--users",
            "3",
            "--delete-users",
            "2",
            "--delete-after-ms",
            "3000",
        ],
    );
    agent.accept_device().await;
    assert_eq!(agent.complete_read().await.unwrap().0.users, 3);
    // Poll as an agent would; the deletion shows up as a complete read with one user fewer. A
    // read the deletion lands in the middle of fails, which is the safe answer: the counters
    // moved, or the deleted user's credential is refused after it was listed. The next read
    // sees the deletion whole.
    let deadline = Instant::now() + STEP;
    loop {
        let summary = match agent.complete_read().await {
            Ok((summary, _)) => summary,
            Err(ReadError::Incomplete(CompletenessError::CountersChanged {
                counter: "useduser",
                ..
            }))
            | Err(ReadError::Fetch(FetchError::Refused {
                credential: CredentialRef { enrollid: 2, .. },
                ..
            })) => {
                assert!(
                    Instant::now() < deadline,
                    "no complete read after the deletion"
                );
                continue;
            }
            Err(other) => panic!("{other:?}"),
        };
        if summary.users == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the scheduled deletion never showed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let summary = agent.finish(emulator);
    assert_eq!(summary["stats"]["deleted_users"], serde_json::json!([2]));
}

#[tokio::test]
async fn keypad_enrolments_are_pushed_unless_the_server_declines() {
    let (mut agent, url) = Agent::bind().await;
    agent.nosenduser = false;
    let emulator = start_emulator(
        &url,
        "enrol-pushed",
        &[
            "--users",
            "2",
            "--photo-kb",
            "1",
            "--enrol",
            "1",
            "--enrol-after-ms",
            "100",
        ],
    );
    agent.accept_device().await;
    let DeviceReport::SendUser(card) = agent.next_report().await else {
        panic!("not senduser")
    };
    let DeviceReport::SendUser(photo) = agent.next_report().await else {
        panic!("not senduser")
    };
    assert_eq!(
        (card.credential.enrollid, card.credential.backupnum),
        (3, BackupNum::CARD)
    );
    assert_eq!(
        (photo.credential.enrollid, photo.credential.backupnum),
        (3, BackupNum::PHOTO)
    );
    assert_eq!(photo.credential.name.as_deref(), Some("keypad3"));
    assert_eq!(agent.complete_read().await.unwrap().0.users, 3);
    let summary = agent.finish(emulator);
    assert_eq!(summary["stats"]["senduser_acks"], 2);

    let (mut agent, url) = Agent::bind().await;
    let emulator = start_emulator(
        &url,
        "enrol-declined",
        &["--users", "2", "--enrol", "1", "--enrol-after-ms", "100"],
    );
    agent.accept_device().await;
    assert!(matches!(
        agent.recv(Duration::from_millis(600)).await,
        Err(LinkError::TimedOut)
    ));
    let summary = agent.finish(emulator);
    assert_eq!(
        (
            summary["stats"]["enrolled"].clone(),
            summary["stats"]["senduser_frames"].clone()
        ),
        (1.into(), 0.into())
    );
}

#[tokio::test]
async fn latency_delays_every_reply() {
    let (mut agent, url) = Agent::bind().await;
    let emulator = start_emulator(&url, "latency", &["--latency-ms", "300"]);
    agent.accept_device().await;
    let started = Instant::now();
    agent.request(&Command::GetTime).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "the reply came before the configured latency"
    );
    agent.finish(emulator);
}

#[tokio::test]
async fn writes_and_other_reads_are_answered_and_recorded() {
    let (mut agent, url) = Agent::bind().await;
    let emulator = start_emulator(
        &url,
        "writes",
        &["--users", "1", "--new-logs", "3", "--stored-logs", "2"],
    );
    agent.accept_device().await;
    let card = CredentialValue::Number(4_000_000_077u64.into());
    let set = SetUserInfo {
        enrollid: 77,
        name: "restored".into(),
        backupnum: BackupNum::CARD,
        admin: 0,
        record: card.clone(),
    };
    let reply = agent.request(&Command::SetUserInfo(set)).await.unwrap();
    assert!(matches!(reply.outcome, ReplyOutcome::Success(_)));
    let reply = agent
        .request(&Command::GetUserInfo {
            enrollid: 77,
            backupnum: BackupNum::CARD,
        })
        .await
        .unwrap();
    let ReplyOutcome::Success(ReplyBody::UserInfo(back)) = reply.outcome else {
        panic!()
    };
    assert_eq!(
        (back.record, back.name.as_deref()),
        (card, Some("restored"))
    );
    let reply = agent
        .request(&Command::SetTime {
            cloudtime: "2031-01-02 03:04:05".into(),
        })
        .await
        .unwrap();
    assert!(matches!(reply.outcome, ReplyOutcome::Success(_)));
    let reply = agent.request(&Command::GetTime).await.unwrap();
    let ReplyOutcome::Success(ReplyBody::Time(time)) = reply.outcome else {
        panic!()
    };
    assert!(time.starts_with("2031-01-02 03:0"), "{time}");
    let reply = agent
        .request(&Command::EnableUser {
            enrollid: 77,
            enflag: 0,
        })
        .await
        .unwrap();
    assert!(matches!(reply.outcome, ReplyOutcome::Success(_)));
    let reply = agent.request(&Command::GetDevInfo).await.unwrap();
    let ReplyOutcome::Success(ReplyBody::Fields(settings)) = reply.outcome else {
        panic!()
    };
    assert!(settings.contains_key("volume"));
    let reply = agent
        .request(&Command::GetUserName { enrollid: 77 })
        .await
        .unwrap();
    let ReplyOutcome::Success(ReplyBody::Fields(fields)) = reply.outcome else {
        panic!()
    };
    assert_eq!(fields["record"], "restored");

    let mut read = PagedRead::new_logs(10);
    let mut command = read.first_request();
    let logs = loop {
        match read
            .on_reply(agent.request(&command).await.unwrap())
            .unwrap()
        {
            Step::Request(next) => command = next,
            Step::Complete(logs) => break logs,
        }
    };
    assert_eq!(logs.len(), 3, "only the undelivered logs");
    let mut read = PagedRead::all_logs(10);
    let mut command = read.first_request();
    let logs = loop {
        match read
            .on_reply(agent.request(&command).await.unwrap())
            .unwrap()
        {
            Step::Request(next) => command = next,
            Step::Complete(logs) => break logs,
        }
    };
    assert_eq!(logs.len(), 5);
    let summary = agent.finish(emulator);
    assert_eq!(summary["credentials_written"], 1);
    assert_eq!(summary["users_on_device"], 2);
    assert_eq!(summary["disabled_users"], serde_json::json!([77]));
}

/// What the agent's "killed between store and reply" test relies on: an unacknowledged punch
/// is resent on the next connection, after the new `reg`.
#[tokio::test]
async fn an_unacknowledged_punch_is_resent_after_reconnecting() {
    let (mut agent, url) = Agent::bind().await;
    let emulator = start_emulator(
        &url,
        "punch-across-reconnect",
        &["--punches", "1", "--punch-resend-ms", "60000"],
    );
    agent.accept_device().await;
    agent.ack_punches = false;
    let DeviceReport::SendLog(first) = agent.next_report().await else {
        panic!("not a sendlog")
    };
    agent.ws = None; // the agent dies: the TCP connection closes without a reply
    agent.ack_punches = true;
    agent.accept_device().await;
    let DeviceReport::SendLog(again) = agent.next_report().await else {
        panic!("not a sendlog")
    };
    assert_eq!(again, first);
    let summary = agent.finish(emulator);
    assert_eq!(summary["stats"]["punches_acked"], 1);
    assert_eq!(summary["stats"]["sessions"], 2);
}

#[tokio::test]
async fn punches_flow_at_the_configured_rate_with_rising_logindex() {
    let (mut agent, url) = Agent::bind().await;
    let emulator = start_emulator(
        &url,
        "punch-rate",
        &["--users", "2", "--punches", "3", "--punch-rate", "20"],
    );
    agent.accept_device().await;
    let mut indexes = Vec::new();
    for _ in 0..3 {
        let DeviceReport::SendLog(upload) = agent.next_report().await else {
            panic!("not a sendlog")
        };
        let record = &upload.records[0];
        assert_eq!(
            record.mode,
            Some(Value::from(8)),
            "face, as real AiFace firmware reports it"
        );
        assert!(record.name.is_some());
        indexes.push(upload.logindex.clone().unwrap());
    }
    assert_eq!(indexes, [1, 2, 3].map(Value::from));
    let summary = agent.finish(emulator);
    assert_eq!(
        (
            summary["stats"]["punches_acked"].clone(),
            summary["stats"]["sendlog_resends"].clone()
        ),
        (3.into(), 0.into())
    );
}

#[tokio::test]
async fn websocket_pings_are_answered() {
    let (mut agent, url) = Agent::bind().await;
    let emulator = start_emulator(&url, "ping", &[]);
    agent.accept_device().await;
    let ws = agent.ws.as_mut().unwrap();
    ws.send(Message::Ping(b"liveness".to_vec().into()))
        .await
        .unwrap();
    let pong = timeout(STEP, ws.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(pong, Message::Pong(b"liveness".to_vec().into()));
    agent.finish(emulator);
}

/// The safety net itself must work: a destructive command (which the agent's `Command` type
/// cannot express, so it is sent as raw text here) is flagged in the log and fails the run.
/// Its log goes to a separate directory so suite-wide "no destructive command" checks stay
/// meaningful.
#[tokio::test]
async fn a_destructive_command_is_flagged_and_fails_the_run() {
    let (mut agent, url) = Agent::bind().await;
    let mut emulator = Emulator::start(
        Protocol::Aiface,
        negative_command_log(Protocol::Aiface, "destructive"),
        &[
            "--url",
            &url,
            "--run-for",
            "120",
            "--reconnect-delay-ms",
            "100",
            "--users",
            "2",
        ],
    );
    emulator.expect_destructive();
    agent.accept_device().await;
    agent
        .send_text(r#"{"cmd":"deleteuser","enrollid":1,"backupnum":13}"#.into())
        .await;
    let DeviceMessage::Reply(reply) = agent.recv(STEP).await.unwrap() else {
        panic!("no reply")
    };
    assert!(
        matches!(reply.outcome, ReplyOutcome::Success(_)),
        "the emulated firmware obeys, as a real one would"
    );
    let log = std::fs::read_to_string(emulator.command_log()).unwrap();
    let flagged: Value = log
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|l| l["kind"] == "command")
        .unwrap();
    assert_eq!(
        (flagged["cmd"].as_str(), flagged["destructive"].as_bool()),
        (Some("deleteuser"), Some(true))
    );
    let status = emulator.terminate();
    assert_eq!(
        status.code(),
        Some(3),
        "exit code 3 marks a run that received a destructive command"
    );
}

#[tokio::test]
async fn a_refused_registration_is_retried() {
    let (mut agent, url) = Agent::bind().await;
    let emulator = start_emulator(&url, "reg-refused", &["--sn", "UNKNOWN01"]);
    let first = agent
        .accept_device_with(RegReply::rejected("sn not allowed"))
        .await;
    assert_eq!(first.sn, "UNKNOWN01");
    let again = agent.accept_device().await;
    assert_eq!(again.sn, "UNKNOWN01");
    assert!(agent.request(&Command::GetDevCap).await.is_ok());
    let summary = agent.finish(emulator);
    assert_eq!(summary["stats"]["sessions"], 2);
}

/// Figures, not assertions: how long the emulator takes to serve a complete read of 5,000
/// users with a 10 KB photo and a card each to this minimal agent. Run with
/// `cargo test -p device-protocols --test aiface_emulator -- --ignored --nocapture`.
#[tokio::test]
#[ignore = "measurement; prints figures"]
async fn measure_complete_read_of_5000_users() {
    let (mut agent, url) = Agent::bind().await;
    let emulator = start_emulator(
        &url,
        "measure-5000",
        &["--users", "5000", "--photo-kb", "10"],
    );
    agent.accept_device().await;
    let started = Instant::now();
    let (summary, credentials) = agent.complete_read().await.unwrap();
    let elapsed = started.elapsed();
    let bytes: usize = credentials.iter().map(|c| c.record.wire_len()).sum();
    println!(
        "complete read: {} users, {} credentials, {} record bytes, {} round trips, {:.2} s",
        summary.users,
        credentials.len(),
        bytes,
        agent.sent.len(),
        elapsed.as_secs_f64()
    );
    agent.finish(emulator);
}
