//! Restore of a ZK terminal, through the running agent: `edge-agent run` backs up a full
//! terminal; the terminal is replaced by one that lost two users; the agent, started again on
//! it, is asked `edge-agent backup restore` (through its control socket) and re-adds exactly
//! what is missing under the device lock: card and PIN as whole user records, fingerprint
//! templates through the upload path, a user without any credential as a bare record, each
//! verified by reading back. pyzk then reads the restored terminal back identical to the full
//! one (users and templates; the internal index of a re-added user is the terminal's choice),
//! and a second restore writes nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use test_support::agent::config_file::one_zk_terminal;
use test_support::agent::running::RunningAgent;
use test_support::peers::pyzk_read;
use test_support::{tempdir, Emulator};

fn config(dir: &Path, address: &str) -> PathBuf {
    one_zk_terminal(dir, "gw-zk-restore", address, "1h")
}

/// `backup restore` of `backup`, answered by the running agent; its text and exit status.
fn restore(config: &Path, backup: &Path) -> (String, i32) {
    let out = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(["backup", "restore", "--device", "zk-door"])
        .arg(backup)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (text, out.status.code().unwrap_or(-1))
}

fn count(terminal: &Emulator, command: &str) -> usize {
    terminal
        .command_names()
        .iter()
        .filter(|n| *n == command)
        .count()
}

/// What pyzk reads, keyed by user id: users (without the internal index) and templates.
type Picture = (BTreeMap<String, Value>, BTreeMap<(String, u64), Value>);

fn pyzk_picture(terminal: &Emulator) -> Option<Picture> {
    let out = pyzk_read(terminal, &["--templates"])?;
    let mut uid_to_id = BTreeMap::new();
    let mut users = BTreeMap::new();
    for user in out["users"].as_array().unwrap() {
        let id = user["user_id"].as_str().unwrap().to_string();
        uid_to_id.insert(user["uid"].as_u64().unwrap(), id.clone());
        let mut user = user.clone();
        user.as_object_mut().unwrap().remove("uid");
        users.insert(id, user);
    }
    let templates = out["templates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let id = uid_to_id[&t["uid"].as_u64().unwrap()].clone();
            let mut t = t.clone();
            t.as_object_mut().unwrap().remove("uid");
            ((id, t["fid"].as_u64().unwrap()), t)
        })
        .collect();
    Some((users, templates))
}

/// Backs up a terminal of 7 users (with `knobs`), restores onto one holding only the first
/// 5, and checks the outcome; returns the restore's text for scenario-specific checks.
fn backup_lose_two_and_restore(knobs: &[&str], user_writes: usize, template_writes: usize) {
    let dir = tempdir().unwrap();
    let full_args = [&["--tcp", "127.0.0.1:0", "--users", "7"], knobs].concat();
    let full = Emulator::zk(&full_args);
    let config = config(dir.path(), &full.tcp.unwrap().to_string());
    let mut agent = RunningAgent::on(&config, &dir.path().join("agent.log"));
    agent.wait_for_log("backup written", 1);
    agent.stop();
    let backup = std::fs::read_dir(dir.path().join("data").join("backups"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".backup.jsonl"))
        .unwrap();
    let before = pyzk_picture(&full);
    drop(full);

    // The terminal now holds users 1001–1005: 1006 and 1007 are gone.
    let shrunk_args = [&["--tcp", "127.0.0.1:0", "--users", "5"], knobs].concat();
    let shrunk = Emulator::zk(&shrunk_args);
    let config = self::config(dir.path(), &shrunk.tcp.unwrap().to_string());
    let mut agent = RunningAgent::on(&config, &dir.path().join("agent.log"));
    agent.wait_for_log("complete read applied", 2);
    let (text, status) = restore(&config, &backup);
    assert_eq!(status, 0, "the restore is verified: {text}");
    assert!(text.contains("1006") && text.contains("1007"), "{text}");
    assert_eq!(count(&shrunk, "USER_WRQ"), user_writes, "{text}");
    assert_eq!(count(&shrunk, "TMP_WRITE"), template_writes, "{text}");

    // pyzk reads the restored terminal back as the full one was.
    if let (Some(before), Some(after)) = (before, pyzk_picture(&shrunk)) {
        assert_eq!(after.0, before.0, "users differ");
        assert_eq!(after.1, before.1, "templates differ");
        assert_eq!(after.0.len(), 7);
        eprintln!(
            "pyzk read {} users and {} templates back as backed up",
            after.0.len(),
            after.1.len()
        );
    }

    // A second restore finds nothing missing and writes nothing.
    let (text, status) = restore(&config, &backup);
    assert_eq!(status, 0, "{text}");
    assert!(text.contains("nothing is missing"), "{text}");
    assert_eq!(count(&shrunk, "USER_WRQ"), user_writes, "{text}");
    assert_eq!(count(&shrunk, "TMP_WRITE"), template_writes, "{text}");
    agent.stop();
    shrunk.assert_nothing_destructive();
}

#[test]
fn a_zk_restore_re_adds_card_pin_and_a_user_without_credentials_and_pyzk_reads_it_back() {
    // 1006 has a card and a PIN (two record writes); 1007 has nothing (one bare record).
    backup_lose_two_and_restore(&[], 3, 0);
}

#[test]
fn a_zk_restore_writes_a_duress_finger_back_as_a_duress_finger() {
    // Finger 1 of every user with fingers is a duress finger (valid flag 3): 1007's comes back
    // with flag 3, which pyzk's read-back (templates with their `valid`) compares.
    let dir = tempdir().unwrap();
    let knobs = ["--fingers", "2", "--duress-finger", "1"];
    let full = Emulator::zk(&[&["--tcp", "127.0.0.1:0", "--users", "7"], &knobs[..]].concat());
    let config = config(dir.path(), &full.tcp.unwrap().to_string());
    let mut agent = RunningAgent::on(&config, &dir.path().join("agent.log"));
    agent.wait_for_log("backup written", 1);
    agent.stop();
    drop(full);
    let backup = std::fs::read_dir(dir.path().join("data").join("backups"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".backup.jsonl"))
        .unwrap();
    let text = std::fs::read_to_string(&backup).unwrap();
    let duress = text.lines().filter(|l| l.contains("\"flag=3;")).count();
    assert_eq!(
        duress, 4,
        "users 1001, 1003, 1005 and 1007 have a duress finger 1 in the backup"
    );
    backup_lose_two_and_restore(&knobs, 3, 2);
}

#[test]
fn a_zk_restore_uploads_fingerprint_templates_and_pyzk_reads_them_back() {
    // 1006: card and PIN (two record writes); 1007: fingers 0 and 1 only (its record, then two
    // template uploads).
    backup_lose_two_and_restore(&["--fingers", "2"], 3, 2);
}
