//! The agent's replies to what the device reports on its own (`reg`, `sendlog`, `senduser`).
//!
//! These frames change device behaviour: `cloudtime` sets the device clock, `nosenduser`
//! switches keypad-enrolment pushes on or off, and a `sendlog` reply tells the device it may
//! forget the punches. So they are written exactly, field order fixed, nothing implicit.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::credential::BackupNum;
use super::lenient;
use super::report::{LogUpload, UserPush};

/// A reply from the agent to a device report, serialised exactly as sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "ret", rename_all = "lowercase")]
pub enum ServerReply {
    /// Answer to `reg`.
    Reg(RegReply),
    /// Answer to `sendlog`; sent only after the punches are durable.
    SendLog(SendLogReply),
    /// Answer to `senduser`.
    SendUser(SendUserReply),
}

impl ServerReply {
    /// The exact text frame to send.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("replies contain only JSON-safe values")
    }
}

/// Answer to `reg`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegReply {
    /// Whether the device is accepted.
    #[serde(deserialize_with = "lenient::de_bool")]
    pub result: bool,
    /// Local wall time `YYYY-MM-DD HH:MM:SS`; the device sets its clock from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloudtime: Option<String>,
    /// `true` asks the device not to push keypad enrolments as `senduser`.
    #[serde(
        default,
        deserialize_with = "lenient::de_opt_bool",
        skip_serializing_if = "Option::is_none"
    )]
    pub nosenduser: Option<bool>,
    /// On refusal, the text the device shows on its screen.
    #[serde(
        default,
        deserialize_with = "lenient::de_opt_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub reason: Option<String>,
}

impl RegReply {
    /// Accepts the device. `cloudtime` must be local wall time, `YYYY-MM-DD HH:MM:SS` (an ISO
    /// UTC string made a real device's clock run hours off).
    pub fn accepted(cloudtime: impl Into<String>, nosenduser: bool) -> Self {
        RegReply {
            result: true,
            cloudtime: Some(cloudtime.into()),
            nosenduser: Some(nosenduser),
            reason: None,
        }
    }

    /// Refuses the device (e.g. its `sn` is not on the allow-list); the device shows `reason`.
    pub fn rejected(reason: impl Into<String>) -> Self {
        RegReply {
            result: false,
            cloudtime: None,
            nosenduser: None,
            reason: Some(reason.into()),
        }
    }
}

/// Answer to `sendlog`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendLogReply {
    /// `true` tells the device the batch is delivered and may be dropped from its backlog.
    #[serde(deserialize_with = "lenient::de_bool")]
    pub result: bool,
    /// Echo of the upload's `count`, as it came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<Value>,
    /// Echo of the upload's `logindex`, as it came (added by the vendor to fix lost logs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logindex: Option<Value>,
    /// Local wall time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloudtime: Option<String>,
    /// On refusal, the reason code (1 = generic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Value>,
}

impl SendLogReply {
    /// Acknowledges an upload, echoing its `count` and `logindex` verbatim. Call only once every
    /// record of `upload` is durably stored.
    pub fn ack(upload: &LogUpload, cloudtime: impl Into<String>) -> Self {
        SendLogReply {
            result: true,
            count: upload.count.clone(),
            logindex: upload.logindex.clone(),
            cloudtime: Some(cloudtime.into()),
            reason: None,
        }
    }

    /// Refuses an upload (`reason:1`), so the device keeps the punches and resends them.
    pub fn refuse() -> Self {
        SendLogReply {
            result: false,
            count: None,
            logindex: None,
            cloudtime: None,
            reason: Some(Value::from(1)),
        }
    }
}

/// Answer to `senduser`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendUserReply {
    /// Whether the push was taken.
    #[serde(deserialize_with = "lenient::de_bool")]
    pub result: bool,
    /// Echo of the pushed user's ID (the vendor demo does this).
    #[serde(
        default,
        deserialize_with = "lenient::de_opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub enrollid: Option<u64>,
    /// Echo of the pushed credential slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backupnum: Option<BackupNum>,
    /// Local wall time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloudtime: Option<String>,
}

impl SendUserReply {
    /// Acknowledges a keypad-enrolment push once it is stored.
    pub fn ack(push: &UserPush, cloudtime: impl Into<String>) -> Self {
        SendUserReply {
            result: true,
            enrollid: Some(push.credential.enrollid),
            backupnum: Some(push.credential.backupnum),
            cloudtime: Some(cloudtime.into()),
        }
    }
}
