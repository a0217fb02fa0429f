//! The shelf-label adapter in-process against the AIMS double (no timing, every step driven):
//!
//! - the behaviours a real tenant may show (A.13's open questions): merge instead of full
//!   replacement, unknown `data` keys dropped, 429 with `Retry-After`, a 500 after the write
//!   was applied (outcome unknown → confirmed by reading back, not written twice), slow
//!   application, rotating refresh tokens;
//! - a failed read aborts verification before anything is classified;
//! - the property: over random interleavings of the agent's own changes and foreign edits,
//!   neither the push nor verification ever writes an article outside the ledger or changes
//!   a key the agent does not own;
//! - `#[ignore]`d measurements: push + confirm of 5,000 articles, a verification pass over
//!   20,000 articles.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use edge_agent::esl::{desired, ledger, Adapter, AimsSettings};
use edge_agent::store::Store;
use edge_agent::upstream::wire::{WireDesiredArticle, WireListMembership};
use edge_agent::upstream::Outbox;
use proptest::prelude::*;
use test_support::agent::open_store;
use test_support::aims_double::{AimsDouble, Article, ID_KEY, NAME_KEY};
use test_support::tempdir;

const USER: &str = "edge@example.invalid";

struct Side {
    _dir: test_support::TempDir,
    store: Store,
    outbox: Outbox,
    aims: AimsDouble,
    adapter: Adapter,
}

async fn start_side(confirm: Duration) -> Side {
    let dir = tempdir().unwrap();
    let store = open_store(dir.path());
    let outbox = Outbox::open(&store, 256 << 20).unwrap();
    let aims = AimsDouble::start(USER, "pw").await;
    let password = dir.path().join("pw");
    std::fs::write(&password, "pw\n").unwrap();
    let adapter = Adapter::new(
        AimsSettings {
            url: aims.url(),
            company: "ACME".into(),
            store: "0001".into(),
            username: USER.into(),
            password_file: password,
            rate_limit: 10_000,
            request_timeout: Duration::from_secs(10),
        },
        &store,
        &outbox,
        "gw-test",
        confirm,
    )
    .unwrap();
    Side {
        _dir: dir,
        store,
        outbox,
        aims,
        adapter,
    }
}

fn person(id: &str, space: Option<&str>) -> WireDesiredArticle {
    WireDesiredArticle {
        kind: "person".into(),
        id: id.into(),
        name: format!("Name {id}"),
        space_id: space.map(str::to_string),
        fields: [("DEPARTMENT".to_string(), "QA".to_string())].into(),
        lists: vec![
            WireListMembership {
                list_name: "Morning".into(),
                space_id: "L-2".into(),
            },
            WireListMembership {
                list_name: "Evening".into(),
                space_id: "L-1".into(),
            },
        ],
        removed: false,
    }
}

fn space(id: &str) -> WireDesiredArticle {
    WireDesiredArticle {
        kind: "space".into(),
        id: id.into(),
        name: format!("Desk {id}"),
        space_id: None,
        fields: BTreeMap::new(),
        lists: Vec::new(),
        removed: false,
    }
}

fn foreign(id: &str, extra: &[(&str, &str)]) -> Article {
    let mut data: BTreeMap<String, String> = [(ID_KEY, id), (NAME_KEY, "foreign")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    data.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Article {
        name: "foreign".into(),
        data,
        labels: Vec::new(),
    }
}

fn events_of(outbox: &Outbox, kind: &str) -> usize {
    outbox
        .peek(100_000)
        .unwrap()
        .iter()
        .filter(|q| q.event.key.starts_with(kind))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_after_the_write_is_confirmed_by_reading_back_not_written_twice() {
    let side = start_side(Duration::from_secs(10)).await;
    desired::apply(&side.store, vec![person("P1", Some("S-1"))])
        .await
        .unwrap();
    side.aims.fail_after_apply(1);
    side.aims.throttle_next(1, 1);
    assert_eq!(side.adapter.push_pending().await.unwrap(), 1);
    assert_eq!(
        side.aims.writes("S-1"),
        1,
        "unknown outcome confirmed, not re-sent"
    );
    let article = side.aims.article("S-1").unwrap();
    assert_eq!(article.data["__PERSON_UUID__"], "P1");
    assert_eq!(
        article.data["_LIST_MEMBERSHIPS_"],
        r#"[{"listName":"Evening","spaceId":"L-1"},{"listName":"Morning","spaceId":"L-2"}]"#
    );
    let (_, entry) = ledger::owned(&side.store, "S-1").unwrap().unwrap();
    assert_eq!(entry.state, ledger::WriteState::Confirmed);
    assert_eq!(events_of(&side.outbox, "esl_pushed/"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_application_merge_mode_and_dropped_keys_are_told_apart() {
    // Accepted now, visible 1.5 s later: confirmed once visible.
    let side = start_side(Duration::from_secs(10)).await;
    side.aims.apply_later(Duration::from_millis(1500));
    desired::apply(&side.store, vec![space("S-9")])
        .await
        .unwrap();
    let started = Instant::now();
    side.adapter.push_pending().await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(1400));
    assert_eq!(side.aims.writes("S-9"), 1);
    assert_eq!(events_of(&side.outbox, "esl_pushed/"), 1);

    // A tenant that drops unknown data keys: never confirmed, reported unconfirmed.
    let side = side_with_short_confirm().await;
    side.aims
        .keep_only_keys(Some(vec![ID_KEY.into(), NAME_KEY.into()]));
    desired::apply(&side.store, vec![person("P2", None)])
        .await
        .unwrap();
    side.adapter.push_pending().await.unwrap();
    assert_eq!(
        events_of(&side.outbox, "esl_failed/"),
        1,
        "unconfirmed reported"
    );
    let (_, entry) = ledger::owned(&side.store, "POOL-0001").unwrap().unwrap();
    assert_eq!(entry.state, ledger::WriteState::Unconfirmed);

    // A tenant that merges instead of replacing: the agent's merged write is the same.
    let side = start_side(Duration::from_secs(10)).await;
    side.aims.set_merge(true);
    side.aims
        .put_foreign("S-1", foreign("S-1", &[("PRICE", "2")]));
    desired::apply(&side.store, vec![person("P1", Some("S-1"))])
        .await
        .unwrap();
    side.adapter.push_pending().await.unwrap();
    let s1 = side.aims.article("S-1").unwrap();
    assert_eq!(s1.data["PRICE"], "2");
    assert_eq!(s1.data["__PERSON_UUID__"], "P1");
}

async fn side_with_short_confirm() -> Side {
    start_side(Duration::from_secs(2)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_read_aborts_verification_and_tokens_rotate() {
    let side = start_side(Duration::from_secs(10)).await;
    side.aims.token_ttl(1); // every token is within the refresh margin: refreshed each time
    for i in 0..3 {
        side.aims
            .put_foreign(&format!("F-{i}"), foreign(&format!("F-{i}"), &[]));
    }
    desired::apply(&side.store, vec![person("P1", Some("S-1"))])
        .await
        .unwrap();
    side.adapter.push_pending().await.unwrap();
    side.aims.delete("S-1");
    side.aims.fail_reads(1);
    assert!(
        side.adapter.verify(false).await.is_err(),
        "partial read must abort"
    );
    assert_eq!(
        events_of(&side.outbox, "esl_drift/"),
        0,
        "nothing classified"
    );
    let report = side.adapter.verify(false).await.unwrap();
    assert_eq!(report.missing, vec!["S-1".to_string()]);
    assert_eq!(report.foreign, 3);
    side.adapter.push_pending().await.unwrap();
    assert!(side.aims.article("S-1").is_some(), "repaired");
    let (logins, refreshes) = side.aims.logins();
    assert_eq!(logins, 1, "one login, then rotating refreshes");
    assert!(refreshes >= 3, "{refreshes}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_another_writer_keeps_changing_is_given_up_with_an_alarm() {
    let side = start_side(Duration::from_secs(10)).await;
    desired::apply(&side.store, vec![space("S-1")])
        .await
        .unwrap();
    side.adapter.push_pending().await.unwrap();
    for round in 0..3 {
        side.aims.edit("S-1", NAME_KEY, &format!("theirs {round}"));
        let report = side.adapter.verify(false).await.unwrap();
        side.adapter.push_pending().await.unwrap();
        let name = side.aims.article("S-1").unwrap().data[NAME_KEY].clone();
        if round < 2 {
            assert_eq!(
                report.mismatched,
                vec![("S-1".to_string(), vec![NAME_KEY.to_string()])]
            );
            assert_eq!(name, "Desk S-1", "round {round}: pushed again");
        } else {
            assert_eq!(
                report.contested,
                vec![("S-1".to_string(), vec![NAME_KEY.to_string()])]
            );
            assert!(report.mismatched.is_empty());
            assert_eq!(
                name, "theirs 2",
                "the contested key is left to the other writer"
            );
        }
    }
    // Left alone from now on.
    let report = side.adapter.verify(false).await.unwrap();
    assert!(
        report.mismatched.is_empty() && report.contested.is_empty(),
        "{report:?}"
    );
    let alarms = side.store.alarms().unwrap();
    assert!(alarms.iter().any(|(_, alarm)| matches!(
        &alarm.kind,
        edge_agent::store::AlarmKind::EslAttention { problem, .. } if problem == "esl_key_contested"
    )));
    assert_eq!(events_of(&side.outbox, "esl_drift/"), 3);
}

/// One step of the property test.
#[derive(Debug, Clone)]
enum Step {
    /// The upstream assigns person `p` to space `s` (or none: a POOL article).
    Assign(usize, Option<usize>),
    /// The upstream withdraws person `p`.
    Remove(usize),
    /// A foreign writer creates or replaces article `id` (a foreign id or a space id).
    ForeignPut(usize, bool),
    /// A foreign writer sets its own key `X` on any article, or an owned key (drift).
    ForeignEdit(usize, bool, bool, u8),
    /// A foreign writer deletes a foreign article, or one of the agent's (drift).
    ForeignDelete(usize, bool),
    Push,
    Verify,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..2usize, proptest::option::of(0..2usize)).prop_map(|(p, s)| Step::Assign(p, s)),
        (0..2usize).prop_map(Step::Remove),
        (0..2usize, any::<bool>()).prop_map(|(i, s)| Step::ForeignPut(i, s)),
        (0..2usize, any::<bool>(), any::<bool>(), any::<u8>())
            .prop_map(|(i, s, owned, v)| Step::ForeignEdit(i, s, owned, v)),
        (0..2usize, any::<bool>()).prop_map(|(i, s)| Step::ForeignDelete(i, s)),
        Just(Step::Push),
        Just(Step::Verify),
    ]
}

fn article_id(index: usize, space: bool) -> String {
    if space {
        format!("S-{index}")
    } else {
        format!("F-{index}")
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    #[test]
    fn verification_never_touches_foreign_articles_or_keys(steps in proptest::collection::vec(step(), 1..16)) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async {
            let side = start_side(Duration::from_secs(3)).await;
            // What the foreign writer last left: whole foreign articles, and its own keys.
            let mut foreign_key: BTreeMap<String, String> = BTreeMap::new();
            for step in steps {
                match step {
                    Step::Assign(p, s) => {
                        let space = s.map(|s| format!("S-{s}"));
                        desired::apply(&side.store, vec![person(&format!("P{p}"), space.as_deref())]).await.unwrap();
                    }
                    Step::Remove(p) => {
                        let mut gone = person(&format!("P{p}"), None);
                        gone.removed = true;
                        desired::apply(&side.store, vec![gone]).await.unwrap();
                    }
                    Step::ForeignPut(i, s) => {
                        let id = article_id(i, s);
                        if s && ledger::owned(&side.store, &id).unwrap().is_some() {
                            continue; // replacing the agent's article is a drift step below
                        }
                        side.aims.put_foreign(&id, foreign(&id, &[("X", "f0")]));
                        foreign_key.insert(id, "f0".into());
                    }
                    Step::ForeignEdit(i, s, owned, v) => {
                        let id = article_id(i, s);
                        if side.aims.article(&id).is_none() {
                            continue;
                        }
                        if owned {
                            side.aims.edit(&id, NAME_KEY, &format!("edited {v}"));
                        } else {
                            side.aims.edit(&id, "X", &format!("f{v}"));
                            foreign_key.insert(id, format!("f{v}"));
                        }
                    }
                    Step::ForeignDelete(i, s) => {
                        let id = article_id(i, s);
                        side.aims.delete(&id);
                        foreign_key.remove(&id);
                    }
                    Step::Push => { side.adapter.push_pending().await.unwrap(); }
                    Step::Verify => {
                        side.adapter.verify(false).await.unwrap();
                        side.adapter.push_pending().await.unwrap();
                    }
                }
                let owned = ledger::all(&side.store).unwrap();
                for (id, article) in side.aims.articles() {
                    if !owned.contains_key(&id) {
                        prop_assert_eq!(side.aims.writes(&id), 0, "foreign {} written", id);
                    }
                    prop_assert_eq!(article.data.get("X"), foreign_key.get(&id), "foreign key of {}", id);
                }
                for (id, value) in &foreign_key {
                    prop_assert!(side.aims.article(id).is_some(), "{} (value {}) was deleted", id, value);
                }
            }
            Ok(())
        })?;
    }
}

/// Push + confirm of 5,000 articles, then a verification pass over 20,000 (15,000 foreign):
/// wall and CPU time, peak memory, requests. Run with
/// `cargo nextest run -p edge-agent --test upstream -E 'test(measure_esl)' --run-ignored only
/// --no-capture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn measure_esl_push_5000_and_verify_20000() {
    let side = start_side(Duration::from_secs(60)).await;
    let spaces: Vec<WireDesiredArticle> = (0..5000)
        .map(|i| person(&format!("P{i}"), Some(&format!("S-{i:05}"))))
        .collect();
    desired::apply(&side.store, spaces).await.unwrap();
    let (wall, cpu) = (Instant::now(), cpu_time());
    let requests = side.aims.requests();
    side.adapter.push_pending().await.unwrap();
    println!(
        "push+confirm 5000 articles: wall {:.2}s, cpu {:.2}s, requests {}, write requests {}",
        wall.elapsed().as_secs_f64(),
        cpu_time() - cpu,
        side.aims.requests() - requests,
        side.aims.write_requests()
    );
    assert_eq!(ledger::all(&side.store).unwrap().len(), 5000);
    for i in 0..15_000 {
        let id = format!("F-{i:05}");
        side.aims.put_foreign(&id, foreign(&id, &[("PRICE", "1")]));
    }
    let (wall, cpu) = (Instant::now(), cpu_time());
    let report = side.adapter.verify(true).await.unwrap();
    println!(
        "verification over {} articles ({} owned, {} foreign): wall {:.2}s, cpu {:.2}s, requests {}, peak RSS {} KiB",
        report.remote,
        report.owned,
        report.foreign,
        wall.elapsed().as_secs_f64(),
        cpu_time() - cpu,
        report.requests,
        peak_rss_kib()
    );
}

/// Process CPU time (user + system) in seconds.
fn cpu_time() -> f64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we own.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// Peak resident set size of the test process (agent side and both doubles).
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse()
                    .unwrap_or(0)
            })
        })
        .unwrap_or(0)
}
