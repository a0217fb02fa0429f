//! The shelf-label adapter through the real binary: `edge-agent run` with `esl.enabled`, the
//! upstream double serving desired articles and the AIMS double.
//!
//! - A person assigned, then unassigned upstream shows on the right article within one push
//!   (space article, then a persistent `POOL-` article; the space is blanked, not deleted).
//! - Drift (an owned key edited, an owned article deleted on the double) is repaired within
//!   one verification; a foreign article and a foreign key on an owned article stay as the
//!   other writer left them.
//! - kill -9 while AIMS holds a write it has not answered yet: after the restart the intent
//!   is finished by reading back, with no second write and one `esl_pushed` event.

use std::time::Duration;

use serde_json::json;
use test_support::agent::running::{local_json, RunningAgent};
use test_support::agent::sync::upstream_config_file;
use test_support::agent::upstream::{token_file, TOKEN};
use test_support::aims_double::{AimsDouble, Article, ID_KEY, NAME_KEY};
use test_support::upstream_double::UpstreamDouble;
use test_support::{free_port, tempdir, wait_for};

const WAIT: Duration = Duration::from_secs(60);

fn person(id: &str, name: &str, space: Option<&str>) -> serde_json::Value {
    json!({"kind": "person", "id": id, "name": name, "space_id": space,
           "fields": {"DEPARTMENT": "QA"}, "lists": [{"list_name": "Morning", "space_id": "L-1"}]})
}

fn shows(aims: &AimsDouble, article: &str, person: &str) -> bool {
    aims.article(article)
        .is_some_and(|a| a.data.get("__PERSON_UUID__").map(String::as_str) == Some(person))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shelf_labels_follow_the_upstream_repair_drift_and_leave_foreign_articles_alone() {
    let dir = tempdir().unwrap();
    let upstream = UpstreamDouble::start(TOKEN).await;
    let aims = AimsDouble::start("edge@example.invalid", "secret").await;
    let password = dir.path().join("aims.password");
    std::fs::write(&password, "secret\n").unwrap();
    let token = token_file(dir.path(), TOKEN);
    let esl = format!(
        "mapping_pull_interval = \"1s\"\n[esl]\nenabled = true\nurl = \"{}\"\ncompany = \"ACME\"\n\
         store = \"0001\"\nusername = \"edge@example.invalid\"\npassword_file = \"{}\"\n\
         verify_interval = \"2s\"\nrate_limit = 100\nconfirm_timeout = \"20s\"\n",
        aims.url(),
        password.display()
    );
    let (config, log) =
        upstream_config_file(dir.path(), free_port(), "", &upstream.url(), &token, &esl);

    // Someone else's article, and someone else's key on a space the agent will adopt.
    let foreign = Article {
        name: "Price tag".into(),
        data: [(ID_KEY, "F-1"), (NAME_KEY, "Price tag"), ("PRICE", "3.50")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        labels: vec!["L0001".into()],
    };
    aims.put_foreign("F-1", foreign.clone());
    aims.put_foreign(
        "S-1",
        Article {
            name: "Desk 1".into(),
            data: [(ID_KEY, "S-1"), ("FLOOR", "2")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            labels: vec![],
        },
    );
    upstream.add_esl_article(person("P1", "Ana", Some("S-1")));
    upstream.add_esl_article(person("P2", "Ben", None));
    let mut agent = RunningAgent::on(&config, &log);

    // 1. Assigned on its space, unassigned on its own POOL article.
    wait_for(WAIT, "P1 on S-1 and P2 on POOL-0001", || {
        shows(&aims, "S-1", "P1") && shows(&aims, "POOL-0001", "P2")
    })
    .await;
    assert_eq!(
        aims.article("S-1").unwrap().data["FLOOR"],
        "2",
        "foreign key kept"
    );

    // 2. P1 unassigned upstream: a POOL article of its own, the space released (restored).
    upstream.add_esl_article(person("P1", "Ana", None));
    wait_for(WAIT, "P1 moved to POOL-0002 and S-1 released", || {
        shows(&aims, "POOL-0002", "P1")
            && aims
                .article("S-1")
                .is_some_and(|a| a.data.get("__PERSON_UUID__").is_none_or(|v| v.is_empty()))
    })
    .await;
    let s1 = aims.article("S-1").unwrap();
    assert_eq!(s1.data["FLOOR"], "2");

    // 3. Drift: an owned key edited, an owned article deleted, a foreign key added.
    aims.edit("POOL-0001", NAME_KEY, "Somebody else");
    aims.edit("POOL-0001", "PRICE", "9.99");
    aims.delete("POOL-0002");
    wait_for(WAIT, "drift repaired by verification", || {
        aims.article("POOL-0001")
            .is_some_and(|a| a.data.get(NAME_KEY).map(String::as_str) == Some("Ben"))
            && shows(&aims, "POOL-0002", "P1")
    })
    .await;
    assert_eq!(
        aims.article("POOL-0001").unwrap().data["PRICE"],
        "9.99",
        "foreign key kept"
    );
    assert_eq!(
        aims.article("F-1"),
        Some(foreign),
        "foreign article untouched"
    );
    assert_eq!(aims.writes("F-1"), 0, "foreign article never written");

    // The local command reaches the running adapter: status, and a dry-run verification that
    // sees the foreign article and no drift left.
    let status = local_json(&config, &["esl", "status"]);
    assert_eq!(status["state"], "running", "{status}");
    assert_eq!(status["pool_used"], 2, "{status}");
    let report = local_json(&config, &["esl", "verify", "--dry-run"]);
    assert_eq!(report["dry_run"], true, "{report}");
    assert!(
        report["foreign_sample"]
            .as_array()
            .unwrap()
            .iter()
            .any(|id| id == "F-1"),
        "{report}"
    );
    assert!(report["requests"].as_u64().unwrap() >= 1, "{report}");

    // 4. kill -9 while AIMS holds an applied write unanswered.
    aims.pause_after_apply(Duration::from_secs(30));
    upstream.add_esl_article(person("P3", "Cy", Some("S-3")));
    wait_for(WAIT, "S-3 written", || aims.writes("S-3") == 1).await;
    agent.kill();
    aims.pause_after_apply(Duration::ZERO);
    let mut agent = RunningAgent::on(&config, &log);
    wait_for(WAIT, "esl_pushed for S-3 delivered", || {
        upstream
            .application_counts()
            .iter()
            .any(|(key, _)| key.starts_with("esl_pushed/gw-test/S-3"))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(aims.writes("S-3"), 1, "the applied write is not sent again");
    let pushed: u32 = upstream
        .application_counts()
        .iter()
        .filter(|(key, _)| key.starts_with("esl_pushed/gw-test/S-3"))
        .map(|(_, n)| *n)
        .sum();
    assert_eq!(pushed, 1, "one esl_pushed for S-3");
    assert!(shows(&aims, "S-3", "P3"));
    assert_eq!(aims.writes("F-1"), 0);

    // 5. kill -9 between the two steps of a re-key saga: P1 moves from POOL-0002 to S-4. The
    //    double holds the answer to the first step's write, the agent dies before releasing
    //    POOL-0002; the restarted agent confirms the first step by reading back (no second
    //    write) and then releases POOL-0002, once. Nothing is deleted.
    let pool_writes = aims.writes("POOL-0002");
    let pushed_for = |article: &str| -> u32 {
        let prefix = format!("esl_pushed/gw-test/{article}%2F");
        upstream
            .application_counts()
            .iter()
            .filter(|(key, _)| key.starts_with(&prefix))
            .map(|(_, n)| *n)
            .sum()
    };
    let pool_reports = pushed_for("POOL-0002");
    aims.pause_after_apply(Duration::from_secs(30));
    upstream.add_esl_article(person("P1", "Ana", Some("S-4")));
    wait_for(WAIT, "S-4 written", || aims.writes("S-4") == 1).await;
    agent.kill();
    assert_eq!(
        aims.writes("POOL-0002"),
        pool_writes,
        "the old article is released only after the new one is confirmed"
    );
    aims.pause_after_apply(Duration::ZERO);
    let mut agent = RunningAgent::on(&config, &log);
    wait_for(WAIT, "POOL-0002 released", || {
        aims.article("POOL-0002")
            .is_some_and(|a| a.data.get("__PERSON_UUID__").is_some_and(|v| v.is_empty()))
    })
    .await;
    wait_for(WAIT, "the release reported", || {
        pushed_for("POOL-0002") > pool_reports
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        aims.writes("S-4"),
        1,
        "the saga's first step is not written twice"
    );
    assert_eq!(aims.writes("POOL-0002"), pool_writes + 1, "released once");
    assert!(shows(&aims, "S-4", "P1"));
    assert_eq!(
        pushed_for("POOL-0002"),
        pool_reports + 1,
        "one report of the release"
    );
    assert_eq!(pushed_for("S-4"), 1, "one report of the move");
    assert_eq!(aims.deletes(), 0, "nothing is ever deleted");
    assert!(
        upstream.violations().is_empty(),
        "{:?}",
        upstream.violations()
    );
    agent.stop();
}
