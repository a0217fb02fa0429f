//! The dataset envelope shared by every bulk read.
//!
//! Whether it arrives inline in one `DATA` packet or reassembled from chunks, a dataset is a
//! u32 little-endian byte count followed by that many bytes of packed records.

/// A dataset whose envelope does not match its content.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DatasetError {
    /// Not even the 4-byte length prefix arrived.
    #[error("dataset of {0} bytes has no 4-byte length prefix; the transfer was cut: read again")]
    NoPrefix(usize),
    /// The prefix and the received bytes disagree.
    #[error("dataset announces {declared} record bytes but carries {actual}; the transfer was incomplete or corrupted: read again")]
    LengthMismatch {
        /// Length from the prefix.
        declared: usize,
        /// Bytes that followed it.
        actual: usize,
    },
}

/// Returns the packed record bytes of a dataset after checking its length prefix.
pub fn records_of(dataset: &[u8]) -> Result<&[u8], DatasetError> {
    let Some((prefix, records)) = dataset.split_first_chunk::<4>() else {
        return Err(DatasetError::NoPrefix(dataset.len()));
    };
    let declared = u32::from_le_bytes(*prefix) as usize;
    if declared != records.len() {
        return Err(DatasetError::LengthMismatch {
            declared,
            actual: records.len(),
        });
    }
    Ok(records)
}

/// Wraps packed records in the dataset envelope (used by the emulator and tests).
pub fn dataset_of(records: &[u8]) -> Vec<u8> {
    let mut dataset = Vec::with_capacity(4 + records.len());
    dataset.extend_from_slice(&(records.len() as u32).to_le_bytes());
    dataset.extend_from_slice(records);
    dataset
}
