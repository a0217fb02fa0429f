//! Choosing a record layout from a dataset.
//!
//! Size alone is ambiguous: 504 bytes are 7 × 72 or 18 × 28 users, and 80 bytes are 2 × 40,
//! 5 × 16 or 10 × 8 attendance records. The device's own count (from `GET_FREE_SIZES`) settles it
//! when it is consistent, because `count × size` can match only one size. Some firmware reports
//! wrong counts, so the fallback is divisibility plus a caller hint plus a plausibility check of
//! the decoded records; if that still leaves more than one candidate the read fails rather than
//! guessing.

/// A family of fixed-size record layouts that can be detected from a dataset.
pub trait RecordLayout: Copy + PartialEq + std::fmt::Debug + 'static {
    /// Every layout of the family, most common first.
    const ALL: &'static [Self];
    /// Bytes per record.
    fn record_len(self) -> usize;
    /// Whether `records` (a whole number of records) decodes to believable values.
    fn looks_plausible(self, records: &[u8]) -> bool;
}

/// The layout chosen for a dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Detection<L> {
    /// The chosen layout.
    pub layout: L,
    /// True when the byte count equals the device's record count × record size; false when the
    /// count was inconsistent and the fallback rules decided. An inconsistent count means the read
    /// must not be treated as complete.
    pub count_consistent: bool,
}

/// No layout (or more than one) fits the dataset.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LayoutError {
    /// The byte count is not a multiple of any known record size.
    #[error("{len} record bytes fit no known record size for {count} records; the firmware uses an unsupported layout")]
    NoFit {
        /// Record bytes.
        len: usize,
        /// Count reported by the device.
        count: u32,
    },
    /// Several layouts fit equally well.
    #[error("{len} record bytes with an inconsistent count of {count} fit several layouts ({candidates}); set the record layout for this device explicitly")]
    Ambiguous {
        /// Record bytes.
        len: usize,
        /// Count reported by the device.
        count: u32,
        /// The candidate record sizes, for the message.
        candidates: String,
    },
}

/// Picks the layout of `records` given the device's count and an optional hint (configuration or
/// transport knowledge). `records` must be non-empty.
pub fn detect<L: RecordLayout>(
    records: &[u8],
    count: u32,
    hint: Option<L>,
) -> Result<Detection<L>, LayoutError> {
    let len = records.len();
    if let Some(&layout) = L::ALL
        .iter()
        .find(|l| l.record_len() as u64 * u64::from(count) == len as u64)
    {
        return Ok(Detection {
            layout,
            count_consistent: true,
        });
    }
    let divisible: Vec<L> = L::ALL
        .iter()
        .copied()
        .filter(|l| len % l.record_len() == 0)
        .collect();
    if divisible.is_empty() {
        return Err(LayoutError::NoFit { len, count });
    }
    let inconsistent = |layout| Detection {
        layout,
        count_consistent: false,
    };
    if let Some(hint) = hint.filter(|h| divisible.contains(h)) {
        return Ok(inconsistent(hint));
    }
    let plausible: Vec<L> = divisible
        .iter()
        .copied()
        .filter(|l| l.looks_plausible(records))
        .collect();
    match plausible.as_slice() {
        [only] => Ok(inconsistent(*only)),
        _ => Err(LayoutError::Ambiguous {
            len,
            count,
            candidates: divisible
                .iter()
                .map(|l| format!("{} bytes", l.record_len()))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}
