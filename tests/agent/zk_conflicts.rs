//! A conflict on a ZK terminal resolved through the running agent: `edge-agent run` reads an
//! emulated ZK terminal whose user 1003 the upstream maps to a person with another name; the
//! conflict is resolved with `use=database` over MQTT (`edge-agent ctl`, signed), the agent
//! dials the terminal and writes the user as one whole `USER_WRQ` record (the ZK driver's
//! writes, as restore uses them), and pyzk then reads the database's name back from the
//! terminal. Nothing was deleted: the emulator's command log holds no destructive command.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use test_support::agent::config_file::AgentToml;
use test_support::agent::mqtt::{ctl, keygen, texts};
use test_support::agent::running::{local_json, RunningAgent};
use test_support::agent::upstream::{token_file, TOKEN};
use test_support::mosquitto::Broker;
use test_support::peers::pyzk_read;
use test_support::upstream_double::UpstreamDouble;
use test_support::{tempdir, wait_until, Emulator};

const DEVICE: &str = "zk-door";
const USER: &str = "1003";
const NAME: &str = "Database Name";

/// What pyzk reads of `user` on the terminal.
fn pyzk_user(terminal: &Emulator, user: &str) -> Option<Value> {
    let out = pyzk_read(terminal, &[])?;
    out["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["user_id"] == user)
        .cloned()
}

fn open_conflicts(config: &Path) -> Vec<Value> {
    local_json(config, &["conflicts", "list", "--device", DEVICE])["conflicts"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zk_conflict_resolved_with_use_database_writes_the_databases_values_to_the_terminal() {
    let dir = tempdir().unwrap();
    let broker = tokio::task::block_in_place(|| Broker::start(false));
    let admin = tokio::task::block_in_place(|| keygen(dir.path(), "ops"));
    let double = UpstreamDouble::start(TOKEN).await;
    let token = token_file(dir.path(), TOKEN);
    // User 1003 (uid 3: no card, a PIN, privilege 0) is another name upstream.
    double.add_mapping(
        DEVICE,
        USER,
        json!({"person_id": "P3", "name": NAME, "privilege": 0, "card": null}),
        false,
    );
    let terminal = Emulator::zk(&["--tcp", "127.0.0.1:0", "--users", "4"]);
    let address = terminal.tcp.unwrap().to_string();
    let rest = format!(
        "[[device]]\nid = \"{DEVICE}\"\ndriver = \"zk\"\naddress = \"{address}\"\n\
         poll_interval = \"1h\"\ncommand_timeout = \"3s\"\n\
         [upstream]\nurl = \"{url}\"\ntoken_file = \"{token}\"\nmapping_pull_interval = \"1s\"\n\
         [mqtt]\nhost = \"127.0.0.1\"\nport = {port}\ntls = false\nkeep_alive = \"5s\"\n{keys}\n",
        url = double.url(),
        token = token.display(),
        port = broker.port,
        keys = admin.config_lines,
    );
    let config = AgentToml {
        agent: "site = \"s1\"\nshutdown_timeout = \"5s\"",
        log: "level = \"info\"",
        rest: &rest,
        ..AgentToml::default()
    }
    .write(dir.path(), "gw1");
    let mut agent = RunningAgent::on(&config, &AgentToml::log_file(dir.path()));
    agent.wait_for_log("complete read applied", 1);
    let before = pyzk_user(&terminal, USER);
    let conflicts = tokio::task::block_in_place(|| {
        wait_until(Duration::from_secs(30), "the conflict of user 1003", || {
            !open_conflicts(&config).is_empty()
        });
        open_conflicts(&config)
    });
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0]["device"]["user_id"], USER);
    assert_ne!(conflicts[0]["device"]["name"], NAME);
    let writes_before = terminal
        .command_names()
        .iter()
        .filter(|n| *n == "USER_WRQ")
        .count();

    let out = tokio::task::block_in_place(|| {
        ctl(
            &broker,
            Some(&admin.file),
            &[
                "conflicts",
                "resolve",
                &format!("device={DEVICE}"),
                &format!("user={USER}"),
                "use=database",
            ],
        )
    });
    assert!(out.status.success(), "{:?}", texts(&out));
    let writes = terminal
        .command_names()
        .iter()
        .filter(|n| *n == "USER_WRQ")
        .count();
    assert_eq!(writes - writes_before, 1, "one whole user record written");
    assert!(
        tokio::task::block_in_place(|| open_conflicts(&config)).is_empty(),
        "the conflict is closed"
    );

    // The terminal holds the database's name, and the rest of the user as it was.
    if let (Some(before), Some(after)) = (before, pyzk_user(&terminal, USER)) {
        assert_eq!(after["name"], NAME, "{after}");
        for field in ["privilege", "card", "password", "uid"] {
            assert_eq!(after[field], before[field], "{field}: {before} → {after}");
        }
        eprintln!("pyzk reads user {USER} back as {after}");
    }
    agent.stop();
    terminal.assert_nothing_destructive();
}
