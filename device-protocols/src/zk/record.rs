//! Pieces shared by the user and attendance record codecs.

use super::dataset::DatasetError;
use super::layout::LayoutError;
use super::text::DeviceText;

/// A record or dataset that cannot be decoded or encoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    /// The dataset envelope is broken.
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    /// The layout cannot be determined.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// A value does not fit its fixed-width field.
    #[error("{field} is {len} bytes but the {layout} record holds at most {max}; shorten it")]
    FieldTooLong {
        /// Field name.
        field: &'static str,
        /// Its encoded length.
        len: usize,
        /// The field's capacity.
        max: usize,
        /// The record layout's name.
        layout: &'static str,
    },
    /// The record carries something the target layout cannot express.
    #[error("{0}")]
    NotRepresentable(String),
}

/// A user id ("PIN2"): a string on 72-byte/40-byte layouts, a number on the older compact ones.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum UserId {
    /// String form as stored (72-byte users, 40-byte attendance).
    Text(DeviceText),
    /// Numeric form (28-byte users, 16-byte attendance).
    Number(u32),
}

impl UserId {
    /// The id as the string an operator sees; numbers in decimal.
    pub fn display(&self) -> String {
        match self {
            UserId::Text(text) => text.text.clone(),
            UserId::Number(number) => number.to_string(),
        }
    }

    /// The numeric form, when the id is a number or a decimal string that fits u32.
    pub fn as_number(&self) -> Option<u32> {
        match self {
            UserId::Text(text) => text.text.parse().ok(),
            UserId::Number(number) => Some(*number),
        }
    }
}

/// Reads a little-endian u16 at `at`.
pub(crate) fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

/// Reads a little-endian u32 at `at` (the layouts have unaligned u32 fields).
pub(crate) fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Writes text into a fixed-width NUL-padded field, refusing to truncate.
pub(crate) fn put_text(
    out: &mut [u8],
    text: &DeviceText,
    field: &'static str,
    layout: &'static str,
) -> Result<(), RecordError> {
    if text.raw.len() > out.len() {
        return Err(RecordError::FieldTooLong {
            field,
            len: text.raw.len(),
            max: out.len(),
            layout,
        });
    }
    out[..text.raw.len()].copy_from_slice(&text.raw);
    Ok(())
}

/// Whether a NUL-terminated field holds printable ASCII only (used as a plausibility signal).
pub(crate) fn is_printable_field(field: &[u8]) -> bool {
    field
        .iter()
        .take_while(|&&b| b != 0)
        .all(|b| b.is_ascii_graphic() || *b == b' ')
}
