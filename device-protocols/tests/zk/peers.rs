//! Conformance with clients nobody on this team wrote: pyzk (PyPI, GPL, run only as a separate
//! process) and node-zklib 1.3.0 (npm) read `device-sim zk` over TCP and UDP, and every value
//! they return must equal what the emulator holds (read back with our own client and, for the
//! generated data, known by construction).
//!
//! When a peer is not installed the test records a loud skip (`test_support::skip`) instead of
//! failing: the test script prints it in its summary, and fails on CI, which promises both
//! checks (the script installs pyzk and node-zklib).

use crate::client::{FullRead, TestClient};
use crate::support::{naive_seconds, zk_iso};
use device_protocols::zk::{UserId, MAX_CHUNK_TCP};
use serde_json::Value;
use test_support::peers::{python, run_peer};
use test_support::Emulator;

/// What the emulator holds, read with our own client, plus its clock.
fn reference(sim: &Emulator, tcp: bool) -> (FullRead, i64) {
    let mut client = if tcp {
        TestClient::tcp(sim.tcp.unwrap())
    } else {
        TestClient::udp(sim.udp.unwrap())
    };
    client.connect(None).unwrap();
    let reply = client
        .call(&device_protocols::zk::Request::GetTime)
        .unwrap();
    let now = naive_seconds(&zk_iso(client.session.time_reply(&reply).unwrap()));
    (client.full_read(MAX_CHUNK_TCP), now)
}

fn assert_clock_close(peer_time: &Value, reference_secs: i64) {
    let peer = naive_seconds(peer_time.as_str().expect("time string"));
    assert!(
        (peer - reference_secs).abs() <= 30,
        "peer read device time {peer_time}, emulator clock was {reference_secs}"
    );
}

fn number(id: &UserId) -> u32 {
    id.as_number().expect("numeric user id")
}

const SET_UID: u16 = 900;
const SET_USER_ID: &str = "9900";
const SET_NAME: &str = "Newbie";

fn set_user_args(port: u16, udp: bool) -> Vec<String> {
    let mut args = vec![
        "--port".to_owned(),
        port.to_string(),
        "--set-uid".to_owned(),
        SET_UID.to_string(),
        "--set-user-id".to_owned(),
        SET_USER_ID.to_owned(),
        "--set-name".to_owned(),
        SET_NAME.to_owned(),
    ];
    if udp {
        args.push("--udp".to_owned());
    }
    args
}

/// After the peer wrote a user, the emulator holds it (read with our own client).
fn assert_user_was_written(sim: &Emulator, tcp: bool, before: &FullRead) {
    let (after, _) = reference(sim, tcp);
    assert_eq!(after.users.users.len(), before.users.users.len() + 1);
    let added = after
        .users
        .users
        .iter()
        .find(|u| u.uid == SET_UID)
        .expect("written user is on the device");
    assert_eq!(added.user_id.display(), SET_USER_ID);
    assert_eq!(added.name.text, SET_NAME);
    sim.assert_nothing_destructive();
}

fn pyzk_against(sim_args: &[&str], tcp: bool) {
    let sim = Emulator::zk(sim_args);
    let (expected, clock) = reference(&sim, tcp);
    let port = if tcp { sim.tcp } else { sim.udp }.unwrap().port();
    let Some(out) = run_peer(&python(), "pyzk_check.py", &set_user_args(port, !tcp)) else {
        return;
    };
    eprintln!("pyzk {} over {}", out["version"], out["transport"]);
    assert_eq!(out["sizes"]["users"], expected.sizes.users);
    assert_eq!(out["sizes"]["records"], expected.sizes.records);
    assert_eq!(out["sizes"]["users_cap"], expected.sizes.user_capacity);
    assert_eq!(out["sizes"]["rec_cap"], expected.sizes.record_capacity);

    let users = out["users"].as_array().unwrap();
    assert_eq!(users.len(), expected.users.users.len());
    for (got, want) in users.iter().zip(&expected.users.users) {
        assert_eq!(got["uid"], want.uid);
        assert_eq!(got["user_id"], want.user_id.display());
        assert_eq!(got["name"], want.name.text);
        assert_eq!(got["privilege"], want.privilege);
        assert_eq!(got["password"], want.password.text);
        assert_eq!(got["card"], want.card);
    }

    let logs = out["attendance"].as_array().unwrap();
    assert_eq!(logs.len(), expected.logs.records.len());
    let layout = expected.logs.layout.unwrap();
    for (got, want) in logs.iter().zip(&expected.logs.records) {
        assert_eq!(got["timestamp"], zk_iso(want.time));
        // 8-byte records carry only the uid; pyzk resolves it through the user table.
        let user_id = match &want.user_id {
            Some(id) => id.display(),
            None => {
                let uid = want.uid.unwrap();
                let owner = expected.users.users.iter().find(|u| u.uid == uid).unwrap();
                owner.user_id.display()
            }
        };
        assert_eq!(got["user_id"], user_id);
        // pyzk's naming trap: "status" is verify in 40/8-byte records but state in 16-byte ones.
        let (status, punch) = match layout {
            device_protocols::zk::AttendanceLayout::Extended16 => (want.state, want.verify),
            _ => (want.verify, want.state),
        };
        assert_eq!(
            (got["status"].clone(), got["punch"].clone()),
            (status.into(), punch.into())
        );
    }
    assert_clock_close(&out["time"], clock);

    let after = out["users_after_set"].as_array().unwrap();
    assert!(after
        .iter()
        .any(|u| u["uid"] == SET_UID && u["user_id"] == SET_USER_ID && u["name"] == SET_NAME));
    assert_user_was_written(&sim, tcp, &expected);
}

#[test]
fn pyzk_reads_and_writes_over_tcp() {
    pyzk_against(
        &["--tcp", "127.0.0.1:0", "--users", "150", "--logs", "600"],
        true,
    );
}

#[test]
fn pyzk_reads_and_writes_over_udp_in_compact_formats() {
    pyzk_against(
        &[
            "--udp",
            "127.0.0.1:0",
            "--users",
            "150",
            "--logs",
            "600",
            "--user-format",
            "28",
            "--log-format",
            "16",
        ],
        false,
    );
}

#[test]
fn pyzk_reads_8_byte_attendance_over_udp() {
    pyzk_against(
        &[
            "--udp",
            "127.0.0.1:0",
            "--users",
            "40",
            "--logs",
            "300",
            "--log-format",
            "8",
        ],
        false,
    );
}

#[test]
fn node_zklib_reads_and_writes_over_tcp() {
    let sim = Emulator::zk(&["--tcp", "127.0.0.1:0", "--users", "150", "--logs", "600"]);
    let (expected, clock) = reference(&sim, true);
    let port = sim.tcp.unwrap().port();
    let Some(out) = run_peer("node", "zklib_check.js", &set_user_args(port, false)) else {
        return;
    };
    assert_eq!(out["transport"], "tcp");
    assert_eq!(out["info"]["userCounts"], expected.sizes.users);
    assert_eq!(out["info"]["logCounts"], expected.sizes.records);
    assert_eq!(out["info"]["logCapacity"], expected.sizes.record_capacity);

    let users = out["users"].as_array().unwrap();
    assert_eq!(users.len(), expected.users.users.len());
    for (got, want) in users.iter().zip(&expected.users.users) {
        assert_eq!(got["uid"], want.uid);
        assert_eq!(got["role"], want.privilege);
        assert_eq!(got["password"], want.password.text);
        assert_eq!(got["name"], want.name.text);
        assert_eq!(got["cardno"], want.card);
        // node-zklib keeps only the first 9 characters of the user id.
        let id = want.user_id.display();
        assert_eq!(got["userId"], id[..id.len().min(9)]);
    }
    let logs = out["attendance"].as_array().unwrap();
    assert_eq!(logs.len(), expected.logs.records.len());
    for (got, want) in logs.iter().zip(&expected.logs.records) {
        assert_eq!(got["userSn"], want.uid.unwrap());
        assert_eq!(
            got["deviceUserId"],
            want.user_id.as_ref().unwrap().display()
        );
        assert_eq!(got["recordTime"], zk_iso(want.time));
    }
    assert_clock_close(&out["time"], clock);
    assert_eq!(out["set_user_reply"], 2000);
    assert!(out["users_after_set"]
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u["uid"] == SET_UID && u["userId"] == SET_USER_ID && u["name"] == SET_NAME));
    assert_user_was_written(&sim, true, &expected);
}

#[test]
fn node_zklib_reads_and_writes_over_udp() {
    // node-zklib assumes 28-byte users and 16-byte records on UDP, like the black-and-white
    // terminals that only speak UDP; 600 records keep the log above the inline threshold.
    let sim = Emulator::zk(&[
        "--udp",
        "127.0.0.1:0",
        "--users",
        "150",
        "--logs",
        "600",
        "--user-format",
        "28",
        "--log-format",
        "16",
    ]);
    let (expected, clock) = reference(&sim, false);
    let port = sim.udp.unwrap().port();
    let Some(out) = run_peer("node", "zklib_check.js", &set_user_args(port, true)) else {
        return;
    };
    assert_eq!(out["transport"], "udp");
    assert_eq!(out["info"]["userCounts"], expected.sizes.users);
    assert_eq!(out["info"]["logCounts"], expected.sizes.records);

    let users = out["users"].as_array().unwrap();
    assert_eq!(users.len(), expected.users.users.len());
    for (got, want) in users.iter().zip(&expected.users.users) {
        assert_eq!(got["uid"], want.uid);
        assert_eq!(got["role"], want.privilege);
        assert_eq!(got["name"], want.name.text);
        assert_eq!(got["userId"], number(&want.user_id));
    }
    let logs = out["attendance"].as_array().unwrap();
    assert_eq!(logs.len(), expected.logs.records.len());
    for (got, want) in logs.iter().zip(&expected.logs.records) {
        // node-zklib reads only the low 16 bits of the 32-bit user id.
        let id = number(want.user_id.as_ref().unwrap()) & 0xFFFF;
        assert_eq!(got["deviceUserId"], id);
        assert_eq!(got["recordTime"], zk_iso(want.time));
    }
    assert_clock_close(&out["time"], clock);
    assert_eq!(out["set_user_reply"], 2000);
    assert!(out["users_after_set"]
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u["uid"] == SET_UID && u["name"] == SET_NAME));
    assert_user_was_written(&sim, false, &expected);
}
