//! The paging guards fed device-chosen numbers: `from`, `to` and `count` anywhere in `u64`
//! (where the bytes-only targets rarely reach the edges), for users and for logs. The machine
//! must answer with a request, completion or an error; never overflow or panic, and never
//! complete with more records than were delivered.
#![no_main]

use device_protocols::aiface::{parse_device_message, DeviceMessage, PagedRead, Step};
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use serde_json::json;

#[derive(Arbitrary, Debug)]
struct PageSpec {
    from: u64,
    to: u64,
    count: u64,
    records: u8,
    refuse: bool,
}

#[derive(Arbitrary, Debug)]
struct Input {
    logs: bool,
    cap: u8,
    pages: Vec<PageSpec>,
}

fn frame(ret: &str, page: &PageSpec) -> String {
    let records: Vec<_> = (0..page.records % 8)
        .map(|i| json!({"enrollid": i, "backupnum": 50, "admin": 0, "time": "2024-01-01 00:00:00", "mode": 1, "inout": 0, "event": 0}))
        .collect();
    json!({"ret": ret, "result": !page.refuse, "count": page.count, "from": page.from, "to": page.to, "record": records}).to_string()
}

fn run<T: device_protocols::aiface::PagedRecord>(
    mut read: PagedRead<T>,
    ret: &str,
    pages: &[PageSpec],
) {
    let mut delivered = 0usize;
    for page in pages {
        delivered += usize::from(page.records % 8);
        let Ok(DeviceMessage::Reply(reply)) = parse_device_message(&frame(ret, page)) else {
            continue;
        };
        match read.on_reply(reply) {
            Ok(Step::Request(_)) => {}
            Ok(Step::Complete(records)) => {
                assert!(records.len() <= delivered);
                return;
            }
            Err(_) => return,
        }
    }
}

fuzz_target!(|input: Input| {
    let cap = u32::from(input.cap);
    if input.logs {
        run(PagedRead::new_logs(cap), "getnewlog", &input.pages);
    } else {
        run(PagedRead::users(cap), "getuserlist", &input.pages);
    }
});
