//! What the agent knows about each device between reads: identity, firmware, counts and clock
//! skew as of its last registration, kept in the `devices` tree so `status` and `probe` can
//! show them and a technician can see when a terminal last dialled in.

use crate::store::{Record, Store, StoreError, TreeName};
use chrono::{Local, NaiveDateTime};
use serde::{Deserialize, Serialize};

/// The device as of its last registration (`reg` for AI06).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    /// Serial number the device registered with.
    pub sn: String,
    /// Model name, if reported.
    pub model: Option<String>,
    /// Firmware version, if reported.
    pub firmware: Option<String>,
    /// Users on the device at registration.
    pub users: Option<u64>,
    /// Face templates on the device.
    pub faces: Option<u64>,
    /// Fingerprint templates on the device.
    pub fingerprints: Option<u64>,
    /// Attendance records on the device.
    pub logs: Option<u64>,
    /// The device clock exactly as reported.
    pub device_time: Option<String>,
    /// Device clock minus agent clock, in seconds (both local wall time), when measurable.
    pub clock_skew_s: Option<i64>,
    /// Where the device connected from.
    pub peer: String,
    /// When it registered (UTC ms).
    pub registered_at_ms: i64,
}

impl Record for DeviceRecord {
    const KIND: &'static str = "device_record";
    const VERSION: u32 = 1;
}

/// Device clock minus the agent's local clock, in seconds; `None` when the text is not a
/// `YYYY-MM-DD HH:MM:SS` time. Skew is measured and reported, never "corrected" by shifting.
pub fn clock_skew_seconds(device_time: &str, agent_now: NaiveDateTime) -> Option<i64> {
    let device = NaiveDateTime::parse_from_str(device_time.trim(), "%Y-%m-%d %H:%M:%S").ok()?;
    Some((device - agent_now).num_seconds())
}

/// The agent's local wall time in the AI06's format, for `cloudtime`.
pub fn local_cloudtime() -> String {
    Local::now().format("%Y-%m-%d %H:%M:%S").to_string()
}

/// Stores the device's registration (not durable by itself: it is informational and rebuilt
/// at the next registration, so it rides on the next durable flush).
pub fn remember(store: &Store, device_id: &str, record: &DeviceRecord) -> Result<(), StoreError> {
    store.insert(TreeName::Devices, device_id.as_bytes(), record)
}

/// The device's last registration, if any.
pub fn recall(store: &Store, device_id: &str) -> Result<Option<DeviceRecord>, StoreError> {
    store.get(TreeName::Devices, device_id.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skew_is_device_minus_agent_and_bad_text_is_none() {
        let agent =
            NaiveDateTime::parse_from_str("2026-11-22 10:00:00", "%Y-%m-%d %H:%M:%S").unwrap();
        assert_eq!(clock_skew_seconds("2026-11-22 10:01:30", agent), Some(90));
        assert_eq!(clock_skew_seconds("2026-11-22 09:59:00", agent), Some(-60));
        assert_eq!(clock_skew_seconds("yesterday", agent), None);
    }
}
