//! The paged-read stop rule and its guards, against both readings of `count`, and the
//! per-credential fetch.

use device_protocols::aiface::{
    check_complete, check_user_count, page_cap, parse_device_message, BackupNum, Capacity, Command,
    CommandName, CompletenessError, CredentialFetch, CredentialRef, DeviceMessage, DeviceReply,
    FetchError, PagedRead, PagingError, ReplyBody, ReplyOutcome, Step, UserListEntry,
};
use proptest::prelude::*;
use serde_json::json;

/// How the simulated device fills `count`.
#[derive(Clone, Copy)]
enum CountMeans {
    /// `count` is the total; asking past the end gives an empty page.
    Total,
    /// `count` is the records in this page; the last real page is followed by an empty one.
    PerPage,
}

fn decode(frame: serde_json::Value) -> DeviceReply {
    match parse_device_message(&frame.to_string()).unwrap() {
        DeviceMessage::Reply(reply) => reply,
        other => panic!("not a reply: {other:?}"),
    }
}

fn user_page(total: usize, start: usize, page_size: usize, means: CountMeans) -> DeviceReply {
    let end = (start + page_size).min(total);
    let records: Vec<_> = (start..end)
        .map(|i| json!({"enrollid": i + 1, "admin": 0, "backupnum": 50}))
        .collect();
    let held = records.len();
    let count = match means {
        CountMeans::Total if held > 0 => total,
        _ => held,
    };
    let (from, to) = if held == 0 { (0, 0) } else { (start, end - 1) };
    decode(
        json!({"ret": "getuserlist", "result": true, "count": count, "from": from, "to": to, "record": records}),
    )
}

/// Drives a full read against a well-behaved device; returns the records and the number of
/// requests sent.
fn read_users(total: usize, page_size: usize, means: CountMeans) -> (Vec<UserListEntry>, usize) {
    let mut read = PagedRead::users(100);
    assert_eq!(read.first_request(), Command::GetUserList { stn: true });
    let (mut next, mut requests) = (0, 1);
    loop {
        match read
            .on_reply(user_page(total, next, page_size, means))
            .unwrap()
        {
            Step::Request(command) => {
                assert_eq!(command, Command::GetUserList { stn: false });
                next += page_size;
                requests += 1;
            }
            Step::Complete(records) => return (records, requests),
        }
    }
}

#[test]
fn both_count_readings_give_every_record_exactly_once() {
    for means in [CountMeans::Total, CountMeans::PerPage] {
        for total in [0, 1, 39, 40, 41, 79, 80, 81, 200] {
            let (records, _) = read_users(total, 40, means);
            let ids: Vec<u64> = records.iter().map(|r| r.enrollid).collect();
            assert_eq!(ids, (1..=total as u64).collect::<Vec<_>>(), "total {total}");
        }
    }
}

#[test]
fn requests_needed_at_the_page_boundary() {
    // 0 users: one request, the empty answer ends the read.
    assert_eq!(read_users(0, 40, CountMeans::Total).1, 1);
    assert_eq!(read_users(0, 40, CountMeans::PerPage).1, 1);
    // Exactly 40: `count` equals the page under both readings, so an empty page must confirm.
    assert_eq!(read_users(40, 40, CountMeans::Total).1, 2);
    assert_eq!(read_users(40, 40, CountMeans::PerPage).1, 2);
    // 41 with a total: the second page proves the end. Per page: a trailing empty page does.
    assert_eq!(read_users(41, 40, CountMeans::Total).1, 2);
    assert_eq!(read_users(41, 40, CountMeans::PerPage).1, 3);
}

#[test]
fn refused_page_is_a_failure_not_an_empty_list() {
    let mut read = PagedRead::users(10);
    let refused = decode(json!({"ret": "getuserlist", "result": false, "reason": 1}));
    let error = read.on_reply(refused).unwrap_err();
    assert!(
        matches!(error, PagingError::Refused { page: 1, .. }),
        "{error}"
    );
    // The read is over: a later reply cannot resurrect it.
    let late = user_page(3, 0, 40, CountMeans::Total);
    assert!(matches!(
        read.on_reply(late),
        Err(PagingError::Finished { .. })
    ));
}

#[test]
fn repeated_page_fails_the_read() {
    let mut read = PagedRead::users(10);
    assert!(matches!(
        read.on_reply(user_page(100, 0, 40, CountMeans::PerPage)),
        Ok(Step::Request(_))
    ));
    assert!(matches!(
        read.on_reply(user_page(100, 40, 40, CountMeans::PerPage)),
        Ok(Step::Request(_))
    ));
    let error = read
        .on_reply(user_page(100, 40, 40, CountMeans::PerPage))
        .unwrap_err();
    assert_eq!(
        error,
        PagingError::Repeated {
            command: CommandName::GetUserList,
            page: 3,
            from: 40,
            to: 79
        }
    );
}

#[test]
fn restart_at_zero_fails_the_read() {
    // A device that rebooted mid-read answers `stn:false` with the first page again.
    let mut read = PagedRead::users(10);
    read.on_reply(user_page(100, 0, 40, CountMeans::Total))
        .unwrap();
    read.on_reply(user_page(100, 40, 40, CountMeans::Total))
        .unwrap();
    let error = read
        .on_reply(user_page(100, 0, 40, CountMeans::Total))
        .unwrap_err();
    assert!(
        matches!(
            error,
            PagingError::Restarted {
                page: 3,
                expected: 80,
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn a_gap_between_pages_fails_the_read() {
    let mut read = PagedRead::users(10);
    read.on_reply(user_page(200, 0, 40, CountMeans::Total))
        .unwrap();
    let error = read
        .on_reply(user_page(200, 80, 40, CountMeans::Total))
        .unwrap_err();
    assert!(
        matches!(
            error,
            PagingError::Discontinuous {
                from: 80,
                expected: 40,
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn a_page_whose_range_disagrees_with_its_records_fails_the_read() {
    let mut read = PagedRead::users(10);
    let lying = decode(
        json!({"ret": "getuserlist", "result": true, "count": 5, "from": 0, "to": 4,
        "record": [{"enrollid": 1, "backupnum": 50}]}),
    );
    assert!(matches!(
        read.on_reply(lying),
        Err(PagingError::InconsistentPage { records: 1, .. })
    ));
}

#[test]
fn a_total_that_is_not_reached_fails_the_read() {
    // First page announces 41 in total, then the device sends an empty page.
    let mut read = PagedRead::users(10);
    read.on_reply(user_page(41, 0, 40, CountMeans::Total))
        .unwrap();
    assert_eq!(read.announced_total(), Some(41));
    let error = read
        .on_reply(user_page(41, 1000, 40, CountMeans::Total))
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "getuserlist announced 41 records in total but 40 arrived"
    );
}

#[test]
fn the_page_cap_stops_an_endless_device() {
    let mut read = PagedRead::users(3);
    for page in 0..3 {
        assert!(matches!(
            read.on_reply(user_page(1000, page * 40, 40, CountMeans::PerPage)),
            Ok(Step::Request(_))
        ));
    }
    let error = read
        .on_reply(user_page(1000, 120, 40, CountMeans::PerPage))
        .unwrap_err();
    assert!(
        matches!(error, PagingError::TooManyPages { cap: 3, .. }),
        "{error}"
    );
    assert_eq!(page_cap(5000, 2, 40), 255);
    assert_eq!(page_cap(0, 2, 40), 5);
}

#[test]
fn a_reply_to_another_command_is_not_taken_for_a_page() {
    let mut read = PagedRead::users(10);
    let stray = decode(json!({"ret": "getdevcap", "result": true, "useduser": 3}));
    assert!(matches!(
        read.on_reply(stray),
        Err(PagingError::UnexpectedReply { .. })
    ));
}

#[test]
fn log_reads_use_the_same_rule() {
    let mut read = PagedRead::new_logs(10);
    assert_eq!(read.first_request(), Command::GetNewLog { stn: true });
    let page = decode(
        json!({"ret": "getnewlog", "result": true, "count": 2, "from": 0, "to": 1, "record": [
        {"enrollid": 5, "time": "2026-03-04 08:00:00", "mode": 8, "inout": 0, "event": 0},
        {"enrollid": 6, "time": "2026-03-04 08:00:05", "mode": 8, "inout": 0, "event": 0}]}),
    );
    assert_eq!(
        read.on_reply(page).unwrap(),
        Step::Request(Command::GetNewLog { stn: false })
    );
    let empty = decode(
        json!({"ret": "getnewlog", "result": true, "count": 0, "from": 0, "to": 0, "record": []}),
    );
    let Step::Complete(logs) = read.on_reply(empty).unwrap() else {
        panic!("not complete")
    };
    assert_eq!(logs.len(), 2);
    let all = PagedRead::all_logs(10);
    assert_eq!(
        all.first_request(),
        Command::GetAllLog {
            stn: true,
            from: None,
            to: None
        }
    );
}

fn info(enrollid: u64, backupnum: u16, record: serde_json::Value) -> DeviceReply {
    decode(
        json!({"ret": "getuserinfo", "result": true, "enrollid": enrollid, "name": format!("user{enrollid}"),
        "backupnum": backupnum, "admin": 0, "record": record}),
    )
}

fn cref(enrollid: u64, backupnum: u16) -> CredentialRef {
    CredentialRef {
        enrollid,
        backupnum: BackupNum(backupnum),
    }
}

#[test]
fn credential_fetch_asks_each_pair_once_and_checks_replies_match() {
    let mut fetch = CredentialFetch::new([cref(1, 50), cref(1, 11), cref(1, 50), cref(2, 10)]);
    assert_eq!(fetch.remaining(), 3, "duplicates dropped");
    let Step::Request(first) = fetch.start() else {
        panic!()
    };
    assert_eq!(
        first,
        Command::GetUserInfo {
            enrollid: 1,
            backupnum: BackupNum(50)
        }
    );
    let Step::Request(second) = fetch.on_reply(info(1, 50, json!("cGhvdG8="))).unwrap() else {
        panic!()
    };
    assert_eq!(
        second,
        Command::GetUserInfo {
            enrollid: 1,
            backupnum: BackupNum(11)
        }
    );
    fetch.on_reply(info(1, 11, json!(99))).unwrap();
    let Step::Complete(all) = fetch.on_reply(info(2, 10, json!(1234))).unwrap() else {
        panic!()
    };
    assert_eq!(
        all.iter()
            .map(|c| (c.enrollid, c.backupnum.0))
            .collect::<Vec<_>>(),
        [(1, 50), (1, 11), (2, 10)]
    );
    assert_eq!(
        CredentialFetch::new([]).start(),
        Step::Complete(vec![]),
        "nothing to fetch"
    );
}

#[test]
fn credential_fetch_rejects_stale_and_refused_replies() {
    let mut fetch = CredentialFetch::new([cref(1, 50), cref(2, 50)]);
    fetch.start();
    fetch.on_reply(info(1, 50, json!("a"))).unwrap();
    let stale = fetch.on_reply(info(1, 50, json!("a"))).unwrap_err();
    assert_eq!(
        stale,
        FetchError::WrongCredential {
            asked: cref(2, 50),
            got: cref(1, 50)
        }
    );

    let mut fetch = CredentialFetch::new([cref(7, 11)]);
    fetch.start();
    let refused = decode(json!({"ret": "getuserinfo", "result": false, "reason": 1}));
    let error = fetch.on_reply(refused).unwrap_err();
    assert!(
        error.to_string().contains("enrollid 7 backupnum 11"),
        "{error}"
    );
}

#[test]
fn a_list_is_complete_only_when_it_matches_useduser() {
    let list: Vec<UserListEntry> = [(1, 50), (1, 11), (2, 50), (3, 0), (3, 1)]
        .iter()
        .map(|&(id, slot)| {
            serde_json::from_value(json!({"enrollid": id, "backupnum": slot})).unwrap()
        })
        .collect();
    let cap = |used: Option<u64>| Capacity {
        useduser: used,
        ..Capacity::default()
    };
    let summary = check_user_count(&list, &cap(Some(3))).unwrap();
    assert_eq!(
        (
            summary.users,
            summary.photos,
            summary.cards,
            summary.fingerprints
        ),
        (3, 2, 1, 2)
    );
    assert_eq!(
        check_user_count(&list, &cap(Some(4))),
        Err(CompletenessError::UserCountMismatch {
            listed: 3,
            reported: 4
        })
    );
    assert_eq!(
        check_user_count(&list, &cap(None)),
        Err(CompletenessError::NoUserCount)
    );
}

#[test]
fn a_total_that_changes_between_pages_fails_the_read() {
    // Users deleted on the keypad mid-read: the total drops from 100 to 60 between pages.
    let mut read = PagedRead::users(10);
    read.on_reply(user_page(100, 0, 40, CountMeans::Total))
        .unwrap();
    let error = read
        .on_reply(user_page(60, 40, 40, CountMeans::Total))
        .unwrap_err();
    assert!(
        matches!(
            error,
            PagingError::TotalChanged {
                before: 100,
                after: 60,
                page: 2,
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn counters_that_move_during_the_read_make_it_incomplete() {
    let list: Vec<UserListEntry> = (1..=3)
        .map(|id| serde_json::from_value(json!({"enrollid": id, "backupnum": 50})).unwrap())
        .collect();
    let cap = |users: u64, faces: u64| Capacity {
        useduser: Some(users),
        usedface: Some(faces),
        ..Capacity::default()
    };
    assert_eq!(
        check_complete(&list, &cap(3, 3), &cap(3, 3)).unwrap().users,
        3
    );
    // Same final count as the list, but a face was re-enrolled meanwhile: not complete.
    let error = check_complete(&list, &cap(3, 2), &cap(3, 3)).unwrap_err();
    assert!(
        matches!(
            error,
            CompletenessError::CountersChanged {
                counter: "usedface",
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn a_first_page_that_does_not_start_at_zero_fails_the_read() {
    let mut read = PagedRead::users(10);
    let error = read
        .on_reply(user_page(100, 40, 40, CountMeans::Total))
        .unwrap_err();
    assert!(
        matches!(
            error,
            PagingError::Discontinuous {
                page: 1,
                from: 40,
                expected: 0,
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn records_with_a_zero_or_too_small_count_are_not_an_end() {
    for count in [0, 1] {
        let mut read = PagedRead::users(10);
        let page = decode(
            json!({"ret": "getuserlist", "result": true, "count": count, "from": 0, "to": 1,
            "record": [{"enrollid": 1, "backupnum": 50}, {"enrollid": 2, "backupnum": 50}]}),
        );
        let error = read.on_reply(page).unwrap_err();
        assert!(
            matches!(error, PagingError::InconsistentPage { records: 2, .. }),
            "count {count}: {error}"
        );
    }
}

/// A way a device can misbehave on one page.
#[derive(Debug, Clone, Copy)]
enum Misstep {
    /// Serve the page after the one asked for.
    Skip,
    /// Serve the previous page again.
    Repeat,
    /// Serve the first page again.
    Restart,
    /// Answer with an empty page although records remain.
    EmptyTooEarly,
    /// Announce a total one higher than the truth.
    CountTooHigh,
    /// Announce a total one lower than the truth.
    CountTooLow,
}

fn misstep() -> impl Strategy<Value = Misstep> {
    prop_oneof![
        Just(Misstep::Skip),
        Just(Misstep::Repeat),
        Just(Misstep::Restart),
        Just(Misstep::EmptyTooEarly),
        Just(Misstep::CountTooHigh),
        Just(Misstep::CountTooLow),
    ]
}

fn page_reply(
    total: usize,
    start: usize,
    size: usize,
    means: CountMeans,
    announced: usize,
) -> DeviceReply {
    let reply = user_page(total, start, size, means);
    match (means, reply.outcome) {
        (CountMeans::Total, ReplyOutcome::Success(ReplyBody::UserList(mut page)))
            if !page.records.is_empty() =>
        {
            page.count = announced as u64;
            DeviceReply {
                outcome: ReplyOutcome::Success(ReplyBody::UserList(page)),
                ..reply
            }
        }
        (_, outcome) => DeviceReply { outcome, ..reply },
    }
}

proptest! {
    /// The safety property behind D6: whatever one page does wrong, a read that the paging
    /// machine completes *and* that matches `useduser` holds exactly the device's records.
    #[test]
    fn a_read_that_passes_every_check_is_exactly_the_device_list(
        total in 0usize..150,
        size in 1usize..45,
        per_page in any::<bool>(),
        fault in proptest::option::of((0usize..8, misstep())),
    ) {
        let means = if per_page { CountMeans::PerPage } else { CountMeans::Total };
        let mut read = PagedRead::users(page_cap(total as u64, 1, size as u64));
        let (mut next, mut previous, mut request) = (0usize, 0usize, 0usize);
        let outcome = loop {
            let mut start = next;
            let mut announced = total;
            let mut served_total = total;
            match fault {
                Some((at, step)) if at == request => match step {
                    Misstep::Skip => start = next + size,
                    Misstep::Repeat => start = previous,
                    Misstep::Restart => start = 0,
                    Misstep::EmptyTooEarly => served_total = start,
                    Misstep::CountTooHigh => announced = total + 1,
                    Misstep::CountTooLow => announced = total.saturating_sub(1),
                },
                _ => {}
            }
            let reply = page_reply(served_total, start, size, means, announced);
            previous = start;
            next = start + size;
            request += 1;
            match read.on_reply(reply) {
                Ok(Step::Request(_)) => continue,
                other => break other,
            }
        };
        if let Ok(Step::Complete(records)) = outcome {
            let cap = Capacity { useduser: Some(total as u64), ..Capacity::default() };
            if check_user_count(&records, &cap).is_ok() {
                let ids: Vec<u64> = records.iter().map(|r| r.enrollid).collect();
                prop_assert_eq!(ids, (1..=total as u64).collect::<Vec<_>>());
            }
        }
    }
}

/// A value a hostile or broken device may put in `from`, `to` or `count`: the edges of `u64`
/// and of its neighbours, and ordinary small numbers.
fn extreme() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(u64::MAX),
        Just(u64::MAX - 1),
        Just(u64::MAX / 2),
        Just(u64::from(u32::MAX)),
        Just(u64::from(u32::MAX) + 1),
        0u64..64,
        any::<u64>(),
    ]
}

/// A page with device-chosen numbers around `records` well-formed user entries.
fn hostile_page(from: u64, to: u64, count: u64, records: usize) -> DeviceReply {
    let records: Vec<_> = (0..records)
        .map(|i| json!({"enrollid": i + 1, "admin": 0, "backupnum": 50}))
        .collect();
    decode(
        json!({"ret": "getuserlist", "result": true, "count": count, "from": from, "to": to, "record": records}),
    )
}

proptest! {
    /// Invariant 5 (bounded, checked arithmetic on what a device sends): whatever numbers the
    /// pages carry, the guards answer with a step or an error; they never overflow (a panic in
    /// a debug build, a silent wrap in release), and a completed read never holds more records
    /// than the pages delivered.
    #[test]
    fn paging_guards_survive_extreme_numbers(
        pages in proptest::collection::vec((extreme(), extreme(), extreme(), 0usize..4), 1..6),
    ) {
        let mut read = PagedRead::users(16);
        let mut delivered = 0usize;
        for (from, to, count, records) in pages {
            delivered += records;
            match read.on_reply(hostile_page(from, to, count, records)) {
                Ok(Step::Request(_)) => continue,
                Ok(Step::Complete(users)) => {
                    prop_assert!(users.len() <= delivered);
                    break;
                }
                Err(_) => break,
            }
        }
    }
}

/// The overflow the property test guards, written out: `from = 0, to = u64::MAX` spans 2^64
/// records, which `to - from + 1` cannot hold.
#[test]
fn a_page_spanning_every_u64_is_inconsistent_not_an_overflow() {
    let mut read = PagedRead::users(4);
    let err = read
        .on_reply(hostile_page(0, u64::MAX, u64::MAX, 1))
        .unwrap_err();
    assert!(
        matches!(err, PagingError::InconsistentPage { to: u64::MAX, .. }),
        "{err}"
    );
}

/// A page that ends at `u64::MAX` leaves no index for a next page to start at.
#[test]
fn a_page_after_one_ending_at_u64_max_is_discontinuous() {
    let mut read = PagedRead::users(4);
    // `from` must be 0 on the first page, so only a per-page count can get this far: the
    // first page is one record at 0..=0, then a page claiming u64::MAX..=u64::MAX.
    assert!(matches!(
        read.on_reply(hostile_page(0, 0, 1, 1)),
        Ok(Step::Request(_))
    ));
    let err = read
        .on_reply(hostile_page(u64::MAX, u64::MAX, 1, 1))
        .unwrap_err();
    assert!(matches!(err, PagingError::Discontinuous { .. }), "{err}");
}

#[test]
fn an_announced_total_sizes_the_list_once() {
    // 2,000 entries in pages of 40: grown by doubling the list would end with room for 2,048.
    let (records, _) = read_users(2_000, 40, CountMeans::Total);
    assert_eq!(records.len(), 2_000);
    assert_eq!(records.capacity(), 2_000);
}

#[test]
fn an_absurd_announced_total_does_not_size_the_list() {
    // Reserving for a trillion entries would abort the process; the read must go on instead.
    let mut read = PagedRead::users(100);
    let first = decode(json!({
        "ret": "getuserlist", "result": true, "count": 1_000_000_000_000u64, "from": 0, "to": 0,
        "record": [{"enrollid": 1, "admin": 0, "backupnum": 50}]
    }));
    assert!(matches!(read.on_reply(first), Ok(Step::Request(_))));
    assert_eq!(read.records_so_far(), 1);
}
