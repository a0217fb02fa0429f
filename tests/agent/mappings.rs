//! Mappings and conflicts end to end, through the real binaries: `edge-agent run` with the
//! upstream double, an emulated AI06 terminal, a private mosquitto and `edge-agent ctl`, and
//! `edge-agent migrate`.
//!
//! - The upstream maps users the agent has not read yet: the mappings are kept (not dropped
//!   while the cursor moves on) and `migrate`, the first complete read, shows the matching one
//!   `mapped` and the different one `conflict`.
//! - An admin `map` asks `GET /persons/{id}`: a 503 leaves it `pending` and it is asked again
//!   (backoff) until the 200 maps it; a 404 refuses it with the reason, audited.
//! - A mapping the upstream removes puts the user back to `unmapped`; nothing destructive
//!   reaches the terminal (the emulator checks every command it received when dropped).

use std::process::Command;

use serde_json::json;
use test_support::agent::mqtt::{ctl, texts, Agent};
use test_support::agent::running::local_json;
use test_support::agent::sync::{emulator, DEVICE};

use super::common::{pairs, received, statuses, Site, PULLED};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mappings_map_conflict_refuse_retry_and_unmap_through_the_running_agent() {
    let site = Site::start().await;

    // 1. The upstream maps users 3 (same attributes) and 4 (another name) before the agent
    //    has read the terminal: nothing is buffered, yet the mappings must not be lost.
    site.double.add_mapping(
        DEVICE,
        "3",
        json!({"person_id": "P3", "name": "user3", "privilege": 0, "card": null}),
        false,
    );
    site.double.add_mapping(
        DEVICE,
        "4",
        json!({"person_id": "P4", "name": "Someone Else", "privilege": 0, "card": null}),
        false,
    );
    let mut agent = Agent::start(site.dir.path(), &site.text);
    agent.wait_for_log(PULLED, 1);
    agent.stop();

    // 2. Migration, the first complete read, links the kept mappings.
    let terminal = emulator(
        site.port,
        &site.dir.path().join("terminal.jsonl"),
        &["--users", "4", "--photo-kb", "1", "--cards", "false"],
    );
    let migrated = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(["migrate", "--wait", "30s", "--config"])
        .arg(&site.config)
        .output()
        .unwrap();
    assert!(migrated.status.success(), "{migrated:?}");
    assert_eq!(
        statuses(&site.config),
        pairs(&[
            ("1", "unmapped"),
            ("2", "unmapped"),
            ("3", "mapped"),
            ("4", "conflict")
        ])
    );

    // 3. Admin maps through signed commands: P2 exists (after one 503), NOPE does not.
    let reads_before = agent.count("complete read applied");
    let mut agent = Agent::start(site.dir.path(), &site.text);
    agent.wait_for_log("complete read applied", reads_before + 1);
    let key = Some(site.admin.file.as_path());
    let out = ctl(&site.broker, key, &["conflicts", "list"]);
    let (listed, _) = texts(&out);
    assert!(
        out.status.success() && listed.contains("Someone Else") && listed.contains("user4"),
        "the conflict keeps both versions: {:?}",
        texts(&out)
    );
    site.double
        .add_person(json!({"person_id": "P2", "name": "user2", "privilege": 0, "card": null}));
    site.double.persons_unavailable_next(1);
    let out = ctl(
        &site.broker,
        key,
        &["map", &format!("device={DEVICE}"), "user=2", "person=P2"],
    );
    assert!(out.status.success(), "{:?}", texts(&out));
    agent.wait_for_log("the mapping stays pending", 1);
    agent.wait_for_log("the upstream answered a pending map request", 1);
    let out = ctl(
        &site.broker,
        key,
        &["map", &format!("device={DEVICE}"), "user=1", "person=NOPE"],
    );
    assert!(out.status.success(), "{:?}", texts(&out));
    agent.wait_for_log("map refused: the upstream has no person NOPE", 1);

    // 4. The upstream removes the link of user 3.
    site.double.add_mapping(
        DEVICE,
        "3",
        json!({"person_id": "P3", "name": "user3", "privilege": 0, "card": null}),
        true,
    );
    agent.wait_for_log(PULLED, 2);
    agent.stop();
    drop(terminal);

    assert_eq!(
        statuses(&site.config),
        pairs(&[
            ("1", "unmapped"),
            ("2", "mapped"),
            ("3", "unmapped"),
            ("4", "conflict")
        ])
    );
    let persons = site
        .double
        .requests()
        .iter()
        .filter(|seen| seen.endpoint == "persons")
        .map(|seen| seen.status)
        .collect::<Vec<_>>();
    assert_eq!(persons, vec![503, 200, 404], "GET /persons/{{id}} answers");
    let audit = local_json(&site.config, &["audit", "query", "--user", "1"]).to_string();
    assert!(
        audit.contains("upstream has no person NOPE"),
        "the refusal is audited with its reason: {audit}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_resolve_by_rename_and_never_lower_an_admin_unless_told() {
    let site = Site::start().await;
    // User 1 is a device administrator; upstream holds it as a normal user. User 2 has
    // another name upstream.
    site.double.add_mapping(
        DEVICE,
        "1",
        json!({"person_id": "P1", "name": "user1", "privilege": 0, "card": null}),
        false,
    );
    site.double.add_mapping(
        DEVICE,
        "2",
        json!({"person_id": "P2", "name": "Renamed Two", "privilege": 0, "card": null}),
        false,
    );
    let mut agent = Agent::start(site.dir.path(), &site.text);
    agent.wait_for_log(PULLED, 1);
    let terminal = emulator(
        site.port,
        &site.dir.path().join("terminal.jsonl"),
        &[
            "--users",
            "2",
            "--admins",
            "1",
            "--photo-kb",
            "1",
            "--cards",
            "false",
        ],
    );
    agent.wait_for_log("complete read applied", 1);
    let key = Some(site.admin.file.as_path());
    let resolve = |user: &str, extra: &[&str]| {
        let device = format!("device={DEVICE}");
        let user = format!("user={user}");
        let mut words = vec![
            "conflicts",
            "resolve",
            device.as_str(),
            user.as_str(),
            "use=database",
        ];
        words.extend_from_slice(extra);
        ctl(&site.broker, key, &words)
    };

    // A name change is a rename: `setusername`, and no credential is written.
    let out = resolve("2", &[]);
    assert!(out.status.success(), "{:?}", texts(&out));
    assert_eq!(received(&terminal, "setusername"), 1);
    assert_eq!(received(&terminal, "setuserinfo"), 0);

    // Lowering the administrator is refused without an explicit word, and nothing is sent.
    let out = resolve("1", &[]);
    let (stdout, stderr) = texts(&out);
    assert!(
        !out.status.success() && format!("{stdout}{stderr}").contains("lower_privilege"),
        "{stdout}{stderr}"
    );
    assert_eq!(received(&terminal, "setuserinfo"), 0);

    // Told explicitly, the privilege goes down with a credential read from the device in the
    // same locked session (a `getuserinfo` for user 1 right before the one `setuserinfo`).
    let reads_before = received(&terminal, "getuserinfo");
    let out = resolve("1", &["lower_privilege=true"]);
    assert!(out.status.success(), "{:?}", texts(&out));
    assert!(received(&terminal, "getuserinfo") > reads_before);
    assert_eq!(received(&terminal, "setuserinfo"), 1);
    let written = terminal
        .commands()
        .into_iter()
        .find(|command| command.to_string().contains("\"setuserinfo\""))
        .unwrap()
        .to_string();
    assert!(
        written.contains("\"admin\":0") && written.contains("\"enrollid\":1"),
        "{written}"
    );

    agent.stop();
    drop(terminal);
    assert_eq!(
        statuses(&site.config),
        pairs(&[("1", "mapped"), ("2", "mapped")])
    );
}
