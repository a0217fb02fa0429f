//! Restore of a ZK terminal, through the real binary: a backup made by `edge-agent run`, a
//! terminal that lost two users, and `edge-agent backup restore` re-adds the one with
//! credentials (card and PIN) as one whole user record each write, verified by reading back;
//! pyzk reads the restored user exactly as the backup holds it; a second restore writes
//! nothing. The user without any credential cannot be re-added by a credential write and is
//! named in the report.

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use test_support::agent::running::RunningAgent;
use test_support::peers::{python, run_peer};
use test_support::{tempdir, Emulator};

fn config(dir: &Path, address: &str) -> std::path::PathBuf {
    let text = format!(
        "[agent]\nid = \"gw-zk-restore\"\ndata_dir = \"{data}\"\nshutdown_timeout = \"5s\"\n\
         [log]\nfile = \"{log}\"\njournald = \"never\"\n\
         [lock]\ndir = \"{locks}\"\n\
         [[device]]\nid = \"zk-door\"\ndriver = \"zk\"\naddress = \"{address}\"\n\
         poll_interval = \"1h\"\ncommand_timeout = \"3s\"\n",
        data = dir.join("data").display(),
        log = dir.join("agent.log").display(),
        locks = dir.join("locks").display(),
    );
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn restore(config: &Path, backup: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(["backup", "restore", "--wait", "20s", "--device", "zk-door"])
        .arg(backup)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn writes(terminal: &Emulator) -> usize {
    terminal
        .command_names()
        .iter()
        .filter(|n| *n == "USER_WRQ")
        .count()
}

#[test]
fn a_restore_re_adds_a_zk_user_with_its_card_and_pin_and_a_second_restore_writes_nothing() {
    let dir = tempdir().unwrap();
    let terminal = Emulator::zk(&["--tcp", "127.0.0.1:0", "--users", "7", "--pacing-ms", "0"]);
    let address = terminal.tcp.unwrap().to_string();
    let config = config(dir.path(), &address);
    let mut agent = RunningAgent::on(&config, &dir.path().join("agent.log"));
    agent.wait_for_log("backup written", 1);
    agent.stop();
    drop(terminal);
    let backup = std::fs::read_dir(dir.path().join("data").join("backups"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".backup.jsonl"))
        .unwrap();
    let backed_up: Value = std::fs::read_to_string(&backup)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter_map(|l| l.get("user").cloned())
        .find(|u| u["user_id"] == "1006")
        .unwrap();

    // The terminal now holds users 1001–1005: 1006 (card and PIN) and 1007 (nothing) are gone.
    let shrunk = Emulator::zk(&["--tcp", "127.0.0.1:0", "--users", "5"]);
    let address = shrunk.tcp.unwrap().to_string();
    let config = self::config(dir.path(), &address);
    let text = restore(&config, &backup);
    assert!(text.contains("1007"), "the bare user is named: {text}");
    assert_eq!(
        writes(&shrunk),
        2,
        "card and PIN, one record write each: {text}"
    );

    // pyzk reads user 1006 back as the backup holds it.
    let port = shrunk.tcp.unwrap().port().to_string();
    if let Some(out) = run_peer(
        &python(),
        "pyzk_check.py",
        &["--port".into(), port, "--read-only".into()],
    ) {
        let user = out["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["user_id"] == "1006")
            .unwrap_or_else(|| panic!("user 1006 not restored: {out}"))
            .clone();
        assert_eq!(user["name"], backed_up["name"], "{user} vs {backed_up}");
        assert_eq!(
            user["password"], backed_up["password"],
            "{user} vs {backed_up}"
        );
        assert_eq!(
            user["card"].to_string(),
            backed_up["card"].as_str().unwrap(),
            "{user} vs {backed_up}"
        );
        assert_eq!(out["users"].as_array().unwrap().len(), 6);
    }

    // A second restore finds the card and PIN present and writes nothing.
    let text = restore(&config, &backup);
    assert_eq!(writes(&shrunk), 2, "the second restore wrote: {text}");
    shrunk.assert_nothing_destructive();
}
