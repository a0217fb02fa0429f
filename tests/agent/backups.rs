//! Backups hold every user, through the running agent: `edge-agent run` dials an emulated ZK
//! terminal whose users mostly have no card, password or template, makes its first scheduled
//! backup, and the file holds one line for every user of the complete read (a credential-less
//! user is still a user), with a trailer that counts them all. A backup that cannot be made
//! leaves no file, an error, an audit entry and a durable alarm.

use std::path::Path;
use std::process::Command;

use edge_agent::store::AlarmKind;
use serde_json::Value;
use test_support::agent::config_file::one_zk_terminal;
use test_support::agent::open_store;
use test_support::agent::running::{local_json, RunningAgent};
use test_support::{tempdir, Emulator};

/// A config for one ZK terminal at `address`, everything under `dir`.
fn config(dir: &Path, address: &str) -> std::path::PathBuf {
    one_zk_terminal(dir, "gw-backup", address, "1h")
}

fn backup_files(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir.join("data").join("backups"))
        .map(|entries| {
            entries
                .map(|e| e.unwrap().path())
                .filter(|p| p.to_string_lossy().ends_with(".backup.jsonl"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_zk_backup_holds_every_user_with_or_without_credentials() {
    // Users 1, 5 and 7 have no card and no password; the others have one or both.
    let terminal = Emulator::zk(&["--tcp", "127.0.0.1:0", "--users", "7", "--pacing-ms", "0"]);
    let address = terminal.tcp.expect("emulator tcp address").to_string();
    let dir = tempdir().unwrap();
    let config = config(dir.path(), &address);
    let mut agent = RunningAgent::on(&config, &dir.path().join("agent.log"));
    agent.wait_for_log("backup written", 1);
    agent.stop();

    let files = backup_files(dir.path());
    assert_eq!(files.len(), 1, "{files:?}");
    let text = std::fs::read_to_string(&files[0]).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let mut users: Vec<String> = lines
        .iter()
        .filter_map(|line| line.get("user"))
        .map(|user| user["user_id"].as_str().unwrap().to_string())
        .collect();
    users.sort();
    assert_eq!(
        users,
        ["1001", "1002", "1003", "1004", "1005", "1006", "1007"],
        "{text}"
    );
    let bare = lines
        .iter()
        .filter_map(|line| line.get("user"))
        .find(|user| user["user_id"] == "1001")
        .unwrap();
    assert_eq!(bare["credentials"], serde_json::json!([]), "{bare}");
    assert_eq!(bare["group"], "1", "{bare}");
    assert_eq!(bare["enabled"], true, "{bare}");
    assert!(bare["name"].as_str().unwrap().ends_with(" 1"), "{bare}");
    let with_pin = lines
        .iter()
        .filter_map(|line| line.get("user"))
        .find(|user| user["user_id"] == "1003")
        .unwrap();
    assert_eq!(with_pin["password"], "1234", "{with_pin}");
    let trailer = &lines.last().unwrap()["trailer"];
    assert_eq!(trailer["users"], 7, "{trailer}");
    assert_eq!(trailer["device_user_count"], 7, "{trailer}");

    // The listing a technician uses agrees.
    let listed = local_json(&config, &["backup", "list"]);
    assert!(listed.to_string().contains("\"users\":7"), "{listed}");
    terminal.assert_nothing_destructive();
}

#[test]
fn a_backup_that_cannot_be_made_leaves_no_file_and_a_durable_alarm() {
    // The terminal reports one user more than its table holds: the read is not complete.
    let terminal = Emulator::zk(&[
        "--tcp",
        "127.0.0.1:0",
        "--users",
        "7",
        "--pacing-ms",
        "0",
        "--fault",
        "wrong-counts",
    ]);
    let address = terminal.tcp.expect("emulator tcp address").to_string();
    let dir = tempdir().unwrap();
    let config = config(dir.path(), &address);
    let mut agent = RunningAgent::on(&config, &dir.path().join("agent.log"));
    agent.wait_for_log("backup failed", 1);
    agent.stop();

    assert!(backup_files(dir.path()).is_empty());
    let store = open_store(&dir.path().join("data"));
    let alarms = store.alarms().unwrap();
    assert!(
        alarms.iter().any(|(_, alarm)| matches!(
            &alarm.kind,
            AlarmKind::BackupFailed { device_id, .. } if device_id == "zk-door"
        )),
        "{alarms:?}"
    );
    drop(store);
    let audit = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args([
            "audit",
            "query",
            "--operation",
            "backup",
            "--json",
            "--config",
        ])
        .arg(&config)
        .output()
        .unwrap();
    assert!(audit.status.success(), "{audit:?}");
    assert!(
        String::from_utf8_lossy(&audit.stdout).contains("backup FAILED"),
        "{audit:?}"
    );
    terminal.assert_nothing_destructive();
}

#[test]
fn a_restore_dry_run_names_an_absent_user_without_credentials() {
    let dir = tempdir().unwrap();
    let terminal = Emulator::zk(&["--tcp", "127.0.0.1:0", "--users", "7", "--pacing-ms", "0"]);
    let address = terminal.tcp.expect("emulator tcp address").to_string();
    let config = config(dir.path(), &address);
    let mut agent = RunningAgent::on(&config, &dir.path().join("agent.log"));
    agent.wait_for_log("backup written", 1);
    agent.stop();
    drop(terminal);
    let backup = backup_files(dir.path()).remove(0);

    // The terminal now holds only users 1001–1005: 1006 (card and PIN) and 1007 (nothing)
    // are gone.
    let shrunk = Emulator::zk(&["--tcp", "127.0.0.1:0", "--users", "5", "--pacing-ms", "0"]);
    let address = shrunk.tcp.expect("emulator tcp address").to_string();
    let config = self::config(dir.path(), &address);
    let out = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args([
            "backup",
            "restore",
            "--dry-run",
            "--wait",
            "20s",
            "--device",
            "zk-door",
        ])
        .arg(&backup)
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("would re-add user 1006"),
        "the user with credentials is planned: {text}"
    );
    assert!(
        text.contains("user 1007")
            && text.contains("(no credentials) was absent")
            && text.contains("would be re-added as a user without credentials"),
        "the user without credentials is named, not left out: {text}"
    );
    shrunk.assert_nothing_destructive();
}
