//! Cutting a list into the pages a terminal sends for `getuserlist`, `getnewlog` and
//! `getalllog`, with either meaning of `count`.

use crate::aiface::Page;

use super::scenario::CountMeans;

/// Where a paged listing stands: the next record to send and where the last page began.
#[derive(Debug, Default)]
pub(super) struct Cursor {
    next: usize,
    page_start: usize,
}

impl Cursor {
    /// The next page of `items` (from the first one when `stn` is true).
    pub(super) fn serve<T: Clone>(
        &mut self,
        items: &[T],
        stn: bool,
        size: usize,
        means: CountMeans,
    ) -> Page<T> {
        if stn {
            self.next = 0;
        }
        self.page_start = self.next;
        let (page, next) = page_of(items, self.next, size, means);
        self.next = next;
        page
    }

    /// Makes the next page a copy of the last one (the `repeat` fault).
    pub(super) fn repeat_last(&mut self) {
        self.next = self.page_start;
    }

    /// Makes the next page the first one (the `restart` fault).
    pub(super) fn restart(&mut self) {
        self.next = 0;
    }
}

/// One page starting at `start`, and where the next page starts.
fn page_of<T: Clone>(
    items: &[T],
    start: usize,
    size: usize,
    means: CountMeans,
) -> (Page<T>, usize) {
    let end = (start + size.max(1)).min(items.len());
    if start >= end {
        return (
            Page {
                count: 0,
                from: 0,
                to: 0,
                records: Vec::new(),
            },
            start,
        );
    }
    let records = items[start..end].to_vec();
    let count = match means {
        CountMeans::Total => items.len(),
        CountMeans::PerPage => records.len(),
    } as u64;
    (
        Page {
            count,
            from: start as u64,
            to: end as u64 - 1,
            records,
        },
        end,
    )
}

/// Whether a device time falls in a `getalllog` date window; dates may be unpadded
/// (`2018-11-1`), as in the vendor's example.
pub(super) fn in_window(time: &str, from: &Option<String>, to: &Option<String>) -> bool {
    let date = |text: &str| -> Option<(u32, u32, u32)> {
        let mut parts = text
            .split_whitespace()
            .next()?
            .split('-')
            .map(|p| p.parse().ok());
        Some((parts.next()??, parts.next()??, parts.next()??))
    };
    let Some(at) = date(time) else { return true };
    let after_start = from
        .as_deref()
        .and_then(date)
        .is_none_or(|start| at >= start);
    let before_end = to.as_deref().and_then(date).is_none_or(|end| at <= end);
    after_start && before_end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_follow_the_configured_count_meaning() {
        let items: Vec<u32> = (0..41).collect();
        let (first, next) = page_of(&items, 0, 40, CountMeans::Total);
        assert_eq!((first.count, first.from, first.to, next), (41, 0, 39, 40));
        let (last, next) = page_of(&items, next, 40, CountMeans::PerPage);
        assert_eq!((last.count, last.from, last.to, next), (1, 40, 40, 41));
        let (empty, _) = page_of(&items, next, 40, CountMeans::PerPage);
        assert_eq!((empty.count, empty.records.len()), (0, 0));
    }

    #[test]
    fn date_windows_accept_unpadded_dates() {
        let (from, to) = (Some("2018-11-1".to_owned()), Some("2018-11-30".to_owned()));
        assert!(in_window("2018-11-05 08:00:00", &from, &to));
        assert!(!in_window("2018-12-01 08:00:00", &from, &to));
        assert!(in_window("2018-12-01 08:00:00", &None, &None));
    }
}
