//! Records carried in pages and pushes: user-list entries and attendance logs (punches).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::credential::{BackupNum, CredentialRef};
use super::lenient;

/// One line of a `getuserlist` page: one credential of one user (no name, no value).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserListEntry {
    /// The user's ID on the device.
    #[serde(deserialize_with = "lenient::de_u64")]
    pub enrollid: u64,
    /// 0 normal, 1 administrator, 2 "super user"; kept raw.
    #[serde(
        default,
        deserialize_with = "lenient::de_opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub admin: Option<u64>,
    /// Which credential this line stands for.
    pub backupnum: BackupNum,
    /// Fields this crate does not interpret.
    #[serde(flatten)]
    pub extras: BTreeMap<String, Value>,
}

impl UserListEntry {
    /// The `(enrollid, backupnum)` pair to fetch with `getuserinfo`.
    pub fn credential_ref(&self) -> CredentialRef {
        CredentialRef {
            enrollid: self.enrollid,
            backupnum: self.backupnum,
        }
    }
}

/// One attendance record, from `sendlog`, `getnewlog` or `getalllog`.
///
/// The coded fields (`mode`, `inout`, `event`, `verifymode`) are kept as the raw JSON values:
/// the sources disagree on what `mode` numbers mean, and an unexpected value must never make the
/// agent reject (and so never acknowledge) a punch. Interpretation belongs to per-firmware
/// mapping, later. `time` is the device's wall clock, unshifted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    /// User ID; `0` means a door or system event described by `event`.
    #[serde(deserialize_with = "lenient::de_u64")]
    pub enrollid: u64,
    /// `YYYY-MM-DD HH:MM:SS` on the device clock, no zone, exactly as sent.
    #[serde(deserialize_with = "lenient::de_text")]
    pub time: String,
    /// How the user verified (raw; meaning depends on firmware).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Value>,
    /// 0 in / 1 out (master vs slave reader); raw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inout: Option<Value>,
    /// Function key / questionnaire choice, or a door event when `enrollid` is 0; raw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<Value>,
    /// Verification mode on AI models (13 = QR per rev 2.7); raw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verifymode: Option<Value>,
    /// The user's name; not in the vendor spec but sent by real AiFace firmware.
    #[serde(
        default,
        deserialize_with = "lenient::de_opt_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub name: Option<String>,
    /// Body temperature (temperature models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temp: Option<Value>,
    /// Base64 punch photo (AI models); large, the agent stores it apart from the record.
    #[serde(
        default,
        deserialize_with = "lenient::de_opt_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub image: Option<String>,
    /// Fields this crate does not interpret (e.g. `note.location`).
    #[serde(flatten)]
    pub extras: BTreeMap<String, Value>,
}

impl LogRecord {
    /// The idempotency key of this punch as reported by device `sn`.
    pub fn key(&self, sn: &str) -> PunchKey {
        PunchKey {
            sn: sn.to_owned(),
            enrollid: self.enrollid,
            time: self.time.clone(),
            mode: canonical_code(self.mode.as_ref()),
            inout: canonical_code(self.inout.as_ref()),
        }
    }
}

/// Writes a coded field so that `8`, `"8"` and `" 8 "` give the same key, while anything
/// non-numeric is kept verbatim and an absent field is empty.
fn canonical_code(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(v) => match lenient::as_i64(v) {
            Some(n) => n.to_string(),
            None => match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            },
        },
    }
}

/// The idempotency key of a punch: sn + enrollid + time + mode + inout.
///
/// The device resends a batch when it misses our reply, so the same punch can arrive several
/// times; storing under this key makes the second write a no-op. `mode`/`inout` are in canonical
/// text form (see [`LogRecord::key`]) so a resend that quotes a number differently still matches.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PunchKey {
    /// Device serial number.
    pub sn: String,
    /// User ID.
    pub enrollid: u64,
    /// Device time, raw.
    pub time: String,
    /// Canonical verification mode.
    pub mode: String,
    /// Canonical in/out.
    pub inout: String,
}

impl fmt::Display for PunchKey {
    /// `sn/enrollid/time/mode/inout`; stable, so it can be a storage key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}/{}",
            self.sn, self.enrollid, self.time, self.mode, self.inout
        )
    }
}

/// One page of a paged read (`getuserlist`, `getnewlog`, `getalllog`).
///
/// `count` is documented both as "records in this page" and as "total"; the paging state
/// machine copes with either and never trusts it alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    /// Per-page or total count, depending on firmware.
    #[serde(deserialize_with = "lenient::de_u64")]
    pub count: u64,
    /// Index of the first record of this page.
    #[serde(default, deserialize_with = "lenient::de_u64")]
    pub from: u64,
    /// Index of the last record of this page (inclusive).
    #[serde(default, deserialize_with = "lenient::de_u64")]
    pub to: u64,
    /// The records; an absent list reads as empty, like `count:0`.
    #[serde(rename = "record", default = "Vec::new")]
    pub records: Vec<T>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn punch_key_ignores_how_numbers_were_quoted() {
        let a: LogRecord = serde_json::from_value(
            json!({"enrollid": 7, "time": "2026-01-02 08:00:00", "mode": 8, "inout": 0}),
        )
        .unwrap();
        let b: LogRecord = serde_json::from_value(
            json!({"enrollid": "7", "time": "2026-01-02 08:00:00", "mode": "8", "inout": "0"}),
        )
        .unwrap();
        assert_eq!(a.key("SN1"), b.key("SN1"));
        assert_eq!(a.key("SN1").to_string(), "SN1/7/2026-01-02 08:00:00/8/0");
        assert_ne!(a.key("SN1"), a.key("SN2"));
    }
}
