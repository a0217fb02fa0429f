//! What the device sends on its own initiative (frames with `cmd`): registration, punches,
//! keypad enrolments, QR scans and server-keypad PINs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::credential::UserCredential;
use super::devinfo::DevInfo;
use super::lenient;
use super::records::LogRecord;

/// `reg`: the first frame after every (re)connect. It binds the session to `sn`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    /// Device serial number: the device's only identity (the protocol has no authentication).
    #[serde(deserialize_with = "lenient::de_text")]
    pub sn: String,
    /// CPU serial, when sent.
    #[serde(
        default,
        deserialize_with = "lenient::de_opt_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub cpusn: Option<String>,
    /// Model, firmware, clock and counters. Absent on some firmware, hence the default.
    #[serde(default)]
    pub devinfo: DevInfo,
    /// Fields this crate does not interpret.
    #[serde(flatten)]
    pub extras: BTreeMap<String, Value>,
}

/// `sendlog`: a batch of punches (real-time or backlog) awaiting exactly one reply.
///
/// Records are read one by one: a record that cannot be read (no `time`, a non-numeric
/// `enrollid`) lands in [`LogUpload::malformed`] with its raw JSON instead of failing the whole
/// frame, so the good records can be stored and the frame answered (a frame left unanswered
/// is resent by the terminal forever).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "RawLogUpload")]
pub struct LogUpload {
    /// Device serial number.
    #[serde(deserialize_with = "lenient::de_text")]
    pub sn: String,
    /// Number of records, kept raw because the reply must echo it as it came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<Value>,
    /// Batch index (firmware ≥ 1.9), kept raw for the same reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logindex: Option<Value>,
    /// The punches.
    #[serde(rename = "record", default)]
    pub records: Vec<LogRecord>,
    /// The records of the frame that could not be read, as sent.
    #[serde(skip)]
    pub malformed: Vec<MalformedRecord>,
    /// Fields this crate does not interpret.
    #[serde(flatten)]
    pub extras: BTreeMap<String, Value>,
}

/// A record of a `sendlog` frame that is not a readable punch.
#[derive(Debug, Clone, PartialEq)]
pub struct MalformedRecord {
    /// The record exactly as the terminal sent it.
    pub raw: Value,
    /// Why it cannot be read.
    pub reason: String,
}

/// The wire form of [`LogUpload`], records still raw.
#[derive(Deserialize)]
struct RawLogUpload {
    #[serde(deserialize_with = "lenient::de_text")]
    sn: String,
    #[serde(default)]
    count: Option<Value>,
    #[serde(default)]
    logindex: Option<Value>,
    #[serde(rename = "record", default)]
    records: Vec<Value>,
    #[serde(flatten)]
    extras: BTreeMap<String, Value>,
}

impl From<RawLogUpload> for LogUpload {
    fn from(raw: RawLogUpload) -> Self {
        let mut records = Vec::with_capacity(raw.records.len());
        let mut malformed = Vec::new();
        for record in raw.records {
            match serde_json::from_value::<LogRecord>(record.clone()) {
                Ok(read) => records.push(read),
                Err(error) => malformed.push(MalformedRecord {
                    raw: record,
                    reason: error.to_string(),
                }),
            }
        }
        LogUpload {
            sn: raw.sn,
            count: raw.count,
            logindex: raw.logindex,
            records,
            malformed,
            extras: raw.extras,
        }
    }
}

/// `senduser`: a user enrolled on the device keypad (pushed unless `nosenduser:true`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserPush {
    /// Device serial number.
    #[serde(deserialize_with = "lenient::de_text")]
    pub sn: String,
    /// The new credential.
    #[serde(flatten)]
    pub credential: UserCredential,
}

/// `sendqrcode`: a scanned QR code (answered only in server-approval setups).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QrScan {
    /// Device serial number.
    #[serde(
        default,
        deserialize_with = "lenient::de_opt_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub sn: Option<String>,
    /// The QR payload.
    #[serde(deserialize_with = "lenient::de_text")]
    pub record: String,
    /// Fields this crate does not interpret.
    #[serde(flatten)]
    pub extras: BTreeMap<String, Value>,
}

/// `sendpin` (vendor demo only): a PIN typed in "server keypad" mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PinEntry {
    /// Device serial number, when sent.
    #[serde(
        default,
        deserialize_with = "lenient::de_opt_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub sn: Option<String>,
    /// The typed PIN, as text.
    #[serde(deserialize_with = "lenient::de_text")]
    pub pin: String,
    /// Device time of the entry.
    #[serde(
        default,
        deserialize_with = "lenient::de_opt_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub time: Option<String>,
    /// Fields this crate does not interpret.
    #[serde(flatten)]
    pub extras: BTreeMap<String, Value>,
}

/// A device-initiated frame.
#[derive(Debug, Clone, PartialEq)]
pub enum DeviceReport {
    /// `reg` (boxed: it is much larger than the other reports).
    Reg(Box<Registration>),
    /// `sendlog`.
    SendLog(LogUpload),
    /// `senduser`.
    SendUser(UserPush),
    /// `sendqrcode`.
    SendQrCode(QrScan),
    /// `sendpin`.
    SendPin(PinEntry),
    /// A `cmd` this crate does not know (third parties list `sendgps`, `otacheck`, …). Kept
    /// whole so the driver can log it instead of dropping it silently.
    Other {
        /// The `cmd` value.
        cmd: String,
        /// Every other field.
        fields: serde_json::Map<String, Value>,
    },
}

impl DeviceReport {
    /// The `cmd` this report travels under.
    pub fn cmd(&self) -> &str {
        match self {
            DeviceReport::Reg(_) => "reg",
            DeviceReport::SendLog(_) => "sendlog",
            DeviceReport::SendUser(_) => "senduser",
            DeviceReport::SendQrCode(_) => "sendqrcode",
            DeviceReport::SendPin(_) => "sendpin",
            DeviceReport::Other { cmd, .. } => cmd,
        }
    }
}
