//! Fingerprint templates of ZK terminals, through the running agent: `edge-agent run` reads
//! the templates of an emulated ZK terminal with the template bulk read, counts them against
//! the device's own template count, and its backup holds every one of them as the credential of
//! its finger's slot, byte for byte what pyzk's `get_templates` reads from the same terminal.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use serde_json::Value;
use test_support::agent::config_file::one_zk_terminal;
use test_support::agent::running::RunningAgent;
use test_support::peers::pyzk_read;
use test_support::{tempdir, Emulator};

fn config(dir: &Path, address: &str) -> std::path::PathBuf {
    config_polling(dir, address, "1h")
}

fn config_polling(dir: &Path, address: &str, poll_interval: &str) -> std::path::PathBuf {
    one_zk_terminal(dir, "gw-zk-templates", address, poll_interval)
}

fn backup_lines(dir: &Path) -> Vec<Value> {
    let files: Vec<_> = std::fs::read_dir(dir.join("data").join("backups"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".backup.jsonl"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    std::fs::read_to_string(&files[0])
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[test]
fn zk_fingerprint_templates_are_read_counted_and_backed_up_as_pyzk_reads_them() {
    // Users 1, 3, 5, 7 and 9 have fingers 0 and 1 enrolled: 10 templates of 400–700 bytes
    // (about 6 kB: a multi-packet transfer).
    let terminal = Emulator::zk(&["--tcp", "127.0.0.1:0", "--users", "9", "--fingers", "2"]);
    let address = terminal.tcp.unwrap().to_string();
    let dir = tempdir().unwrap();
    let config = config(dir.path(), &address);
    let mut agent = RunningAgent::on(&config, &dir.path().join("agent.log"));
    agent.wait_for_log("backup written", 1);
    agent.stop();

    let lines = backup_lines(dir.path());
    // (user id, finger) → base64 template, from the backup's credential lines.
    let backed_up: BTreeMap<(String, u64), String> = lines
        .iter()
        .filter(|l| l.get("slot").is_some_and(|s| s.as_u64().unwrap() <= 9))
        .map(|l| {
            (
                (
                    l["user_id"].as_str().unwrap().to_string(),
                    l["slot"].as_u64().unwrap(),
                ),
                l["value"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(backed_up.len(), 10, "{backed_up:?}");
    let with_fingers: Vec<&Value> = lines
        .iter()
        .filter_map(|l| l.get("user"))
        .filter(|u| {
            let slots = u["credentials"].as_array().unwrap();
            slots.contains(&Value::from(0)) && slots.contains(&Value::from(1))
        })
        .collect();
    assert_eq!(with_fingers.len(), 5, "{lines:?}");
    let trailer = &lines.last().unwrap()["trailer"];
    assert_eq!(trailer["users"], 9, "{trailer}");

    // pyzk reads the same templates, byte for byte.
    let Some(out) = pyzk_read(&terminal, &["--templates"]) else {
        return; // recorded as a loud skip
    };
    let uid_to_id: BTreeMap<u64, String> = out["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["uid"].as_u64().unwrap(),
                u["user_id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let theirs: BTreeMap<(String, u64), String> = out["templates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let uid = t["uid"].as_u64().unwrap();
            (
                (uid_to_id[&uid].clone(), t["fid"].as_u64().unwrap()),
                t["template"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(theirs, backed_up);
    let one = base64::engine::general_purpose::STANDARD
        .decode(backed_up.values().next().unwrap())
        .unwrap();
    assert!((400..700).contains(&one.len()), "{}", one.len());
    terminal.assert_nothing_destructive();
}

/// How many template bulk reads (`PREPARE_BUFFER` of `DB_RRQ`) the terminal served.
fn template_reads(terminal: &Emulator) -> usize {
    terminal
        .commands()
        .iter()
        .filter(|c| c["name"] == "PREPARE_BUFFER" && c["inner"] == "DB_RRQ")
        .count()
}

#[test]
fn polls_re_read_zk_templates_only_when_the_devices_counts_move() {
    let terminal = Emulator::zk(&["--tcp", "127.0.0.1:0", "--users", "9", "--fingers", "2"]);
    let address = terminal.tcp.unwrap().to_string();
    let dir = tempdir().unwrap();
    let config = config_polling(dir.path(), &address, "1s");
    let mut agent = RunningAgent::on(&config, &dir.path().join("agent.log"));
    // The first poll reads the templates (and the backup after it reads them afresh); the
    // polls after it see the same counts and uids and do not.
    agent.wait_for_log("complete read applied", 4);
    let after_four = template_reads(&terminal);
    agent.wait_for_log("complete read applied", 6);
    agent.stop();
    assert_eq!(
        template_reads(&terminal),
        after_four,
        "two polls with unchanged counts downloaded the templates again"
    );
    assert!(
        after_four <= 2,
        "the first poll and the backup at most: {after_four}"
    );
    // The backup holds every template all the same.
    let lines = backup_lines(dir.path());
    let templates = lines
        .iter()
        .filter(|l| l.get("slot").is_some_and(|s| s.as_u64().unwrap() <= 9))
        .count();
    assert_eq!(templates, 10);
    terminal.assert_nothing_destructive();
}
