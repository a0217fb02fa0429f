//! Cursor paging for every list command (`buffer list`, `conflicts list`, `history`,
//! `backups list`, `dead-letters list`, `audit query`): the request names a page size `limit`
//! and an opaque cursor `after` (the key of the last record already seen); the reply carries
//! `next`, the cursor of the following page, or `null` on the last page.
//!
//! Why a cursor and not an offset: records come and go between two requests (a read buffers a
//! new user), and a cursor on the record's own key never skips or repeats a record that did not
//! change. Why a byte budget as well as `limit`: an MQTT reply must fit the broker's packet
//! limit (256 KiB at most, see `publisher::DEFAULT_MAX_PACKET`); a page stops at whichever of
//! `limit` or [`PAGE_BYTES`] comes first, so no list is ever `too_large`, by construction.

use serde::Serialize;
use serde_json::Value;

use super::args::Args;
use super::reply::CommandError;

/// Most bytes of records in one page: room under the 256 KiB packet cap for the envelope, the
/// topic, counts and the MQTT header.
pub const PAGE_BYTES: usize = 192 * 1024;

/// The page a request asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageRequest {
    /// Most records to return.
    pub limit: usize,
    /// Return records after this cursor (a `next` from a previous reply).
    pub after: Option<String>,
}

impl PageRequest {
    /// `limit` (1..=`max`, default `default`) and `after` from a command's arguments.
    pub fn from_args(args: &mut Args, default: usize, max: usize) -> Result<Self, CommandError> {
        let limit = args
            .opt_int("limit", 1, max as i64)?
            .map_or(default, |limit| limit as usize);
        let after = args.opt_cursor("after")?;
        Ok(PageRequest { limit, after })
    }
}

/// One page of records, as JSON, and the cursor of the next one.
#[derive(Clone, Debug, PartialEq)]
pub struct Page {
    /// The records of this page, in list order.
    pub items: Vec<Value>,
    /// The cursor of the next page; `None` on the last page.
    pub next: Option<String>,
}

/// Which way a list runs, so that a cursor whose record has gone still finds its place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Keys increase down the list (buffer, conflicts, backups, dead letters).
    Ascending,
    /// Keys decrease down the list (history and audit: newest first).
    Descending,
}

/// A numeric key as a cursor (cursors that are both numbers compare as numbers).
pub fn numeric_key(value: u64) -> String {
    value.to_string()
}

/// How cursor `key` compares with cursor `after`: as numbers when both are, else as text.
fn compare(key: &str, after: &str) -> std::cmp::Ordering {
    match (key.parse::<u64>(), after.parse::<u64>()) {
        (Ok(key), Ok(after)) => key.cmp(&after),
        _ => key.cmp(after),
    }
}

/// The page of `records` (already in `order` by `key`) that `request` asks for. A page holds at
/// least one record when any remain, at most `limit`, and stops before [`PAGE_BYTES`].
pub fn page<T: Serialize>(
    records: impl IntoIterator<Item = T>,
    key: impl Fn(&T) -> String,
    order: Order,
    request: &PageRequest,
) -> Page {
    let mut items = Vec::new();
    let mut bytes = 0usize;
    let mut last_key = None;
    let mut next = None;
    for record in records {
        let record_key = key(&record);
        if let Some(after) = &request.after {
            let seen = match order {
                Order::Ascending => compare(&record_key, after).is_le(),
                Order::Descending => compare(&record_key, after).is_ge(),
            };
            if seen {
                continue;
            }
        }
        let value = serde_json::to_value(&record).unwrap_or(Value::Null);
        let size = serde_json::to_vec(&value).map_or(0, |v| v.len()) + 1;
        if items.len() >= request.limit || (!items.is_empty() && bytes + size > PAGE_BYTES) {
            next = last_key;
            break;
        }
        bytes += size;
        items.push(value);
        last_key = Some(record_key);
    }
    Page { items, next }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(limit: usize, after: Option<&str>) -> PageRequest {
        PageRequest {
            limit,
            after: after.map(str::to_owned),
        }
    }

    #[test]
    fn cursors_walk_the_whole_list_once() {
        let records: Vec<u64> = (1..=7).collect();
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = page(
                records.iter().copied(),
                |n| numeric_key(*n),
                Order::Ascending,
                &request(3, after.as_deref()),
            );
            seen.extend(page.items.iter().map(|v| v.as_u64().unwrap()));
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, records);
    }

    #[test]
    fn a_descending_cursor_whose_record_vanished_still_finds_its_place() {
        let records = [9u64, 7, 5, 3];
        let page = page(
            records,
            |n| numeric_key(*n),
            Order::Descending,
            &request(10, Some(&numeric_key(6))),
        );
        assert_eq!(page.items, vec![Value::from(5), Value::from(3)]);
        assert_eq!(page.next, None);
    }

    #[test]
    fn a_page_stops_at_the_byte_budget() {
        let big = "x".repeat(PAGE_BYTES / 3);
        let records = vec![big.clone(), big.clone(), big.clone(), big];
        let page = page(
            records.into_iter().enumerate(),
            |(i, _)| numeric_key(*i as u64),
            Order::Ascending,
            &request(100, None),
        );
        assert_eq!(page.items.len(), 2);
        assert_eq!(page.next, Some(numeric_key(1)));
    }
}
