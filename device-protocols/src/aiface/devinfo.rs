//! Device identity and capacity counters: `reg.devinfo` and the `getdevcap` reply.
//!
//! The `used*` counters are the cheap, authoritative figures the agent compares a user read
//! against; a read whose totals disagree with them is not complete.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::lenient;

/// Capacities and used counts. Every field is optional because firmware versions report
/// different subsets (face fields only on face models, `usedrtlog` only on newer ones).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacity {
    /// Maximum number of users.
    #[serde(
        default,
        deserialize_with = "lenient::de_opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub usersize: Option<u64>,
    /// Maximum number of faces.
    #[serde(
        default,
        deserialize_with = "lenient::de_opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub facesize: Option<u64>,
    /// Maximum number of fingerprints.
    #[serde(
        default,
        deserialize_with = "lenient::de_opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub fpsize: Option<u64>,
    /// Maximum number of palm templates.
    #[serde(
        default,
        deserialize_with = "lenient::de_opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub palmsize: Option<u64>,
    /// Maximum number of cards.
    #[serde(
        default,
        deserialize_with = "lenient::de_opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub cardsize: Option<u64>,
    /// Maximum number of passwords.
    #[serde(
        default,
        deserialize_with = "lenient::de_opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub pwdsize: Option<u64>,
    /// Maximum number of attendance logs.
    #[serde(
        default,
        deserialize_with = "lenient::de_opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub logsize: Option<u64>,
    /// Users enrolled now: the figure a complete `getuserlist` must match.
    #[serde(
        default,
        deserialize_with = "lenient::de_opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub useduser: Option<u64>,
    /// Faces enrolled now.
    #[serde(
        default,
        deserialize_with = "lenient::de_opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub usedface: Option<u64>,
    /// Fingerprints enrolled now.
    #[serde(
        default,
        deserialize_with = "lenient::de_opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub usedfp: Option<u64>,
    /// Palm templates enrolled now.
    #[serde(
        default,
        deserialize_with = "lenient::de_opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub usedpalm: Option<u64>,
    /// Cards enrolled now.
    #[serde(
        default,
        deserialize_with = "lenient::de_opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub usedcard: Option<u64>,
    /// Passwords enrolled now.
    #[serde(
        default,
        deserialize_with = "lenient::de_opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub usedpwd: Option<u64>,
    /// Logs stored on the device.
    #[serde(
        default,
        deserialize_with = "lenient::de_opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub usedlog: Option<u64>,
    /// Logs not yet uploaded to the server (what `getnewlog` would return).
    #[serde(
        default,
        deserialize_with = "lenient::de_opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub usednewlog: Option<u64>,
    /// Real-time logs pending (newer firmware only).
    #[serde(
        default,
        deserialize_with = "lenient::de_opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub usedrtlog: Option<u64>,
}

/// The `devinfo` object of a `reg` message: model, firmware, clock and the [`Capacity`]
/// counters. The agent persists it at every registration to keep a history.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DevInfo {
    /// Model name, e.g. `"AiFace"`.
    #[serde(
        default,
        deserialize_with = "lenient::de_opt_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub modelname: Option<String>,
    /// Fingerprint algorithm (`thbio1.0` / `thbio3.0`).
    #[serde(
        default,
        deserialize_with = "lenient::de_opt_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub fpalgo: Option<String>,
    /// Firmware version, e.g. `"ai806_f06v_v5.17"`; decides how `mode` values are mapped.
    #[serde(
        default,
        deserialize_with = "lenient::de_opt_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub firmware: Option<String>,
    /// The device clock as `YYYY-MM-DD HH:MM:SS` (no zone), raw, for measuring skew.
    #[serde(
        default,
        deserialize_with = "lenient::de_opt_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub time: Option<String>,
    /// The device's MAC address.
    #[serde(
        default,
        deserialize_with = "lenient::de_opt_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub mac: Option<String>,
    /// Capacities and used counts.
    #[serde(flatten)]
    pub capacity: Capacity,
    /// Fields this crate does not interpret.
    #[serde(flatten)]
    pub extras: BTreeMap<String, Value>,
}

/// The `getdevcap` reply body: the [`Capacity`] counters plus anything else the firmware adds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DevCap {
    /// Capacities and used counts.
    #[serde(flatten)]
    pub capacity: Capacity,
    /// Fields this crate does not interpret.
    #[serde(flatten)]
    pub extras: BTreeMap<String, Value>,
}
