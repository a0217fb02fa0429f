//! The commands the agent sends to a terminal.
//!
//! This type is the agent's whole vocabulary towards a device, and it is deliberately unable to
//! say anything destructive: there is no variant for `deleteuser`, `cleanuser`, `cleanlog`,
//! `initsys`, `cleanadmin` or any other command [`CommandName::is_destructive`] names, and the
//! wire name is fixed by the variant, so no field value can smuggle one in. Adding a variant is a
//! product decision (invariant 1 and D5 in `docs/ARCHITECTURE.md`), not a convenience.

use serde::{Deserialize, Serialize};

use super::command_name::CommandName;
use super::credential::{BackupNum, CredentialValue};
use super::lenient;

/// A command from the agent (server) to the device, serialised exactly as sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Command {
    /// One page of the credential list; `stn:true` restarts from the first page.
    GetUserList {
        /// `true` for the first page, `false` for the next one.
        #[serde(deserialize_with = "lenient::de_bool")]
        stn: bool,
    },
    /// One credential of one user (name, admin flag and the template/photo/PIN/card).
    GetUserInfo {
        /// The user's ID on the device.
        #[serde(deserialize_with = "lenient::de_u64")]
        enrollid: u64,
        /// The credential slot.
        backupnum: BackupNum,
    },
    /// Writes (adds or replaces) one credential; how a lost user is restored.
    SetUserInfo(SetUserInfo),
    /// The name of one user.
    GetUserName {
        /// The user's ID on the device.
        #[serde(deserialize_with = "lenient::de_u64")]
        enrollid: u64,
    },
    /// Renames users (batch of at most 50): how a name decided upstream reaches the terminal
    /// without rewriting any credential.
    SetUserName {
        /// Number of records.
        #[serde(deserialize_with = "lenient::de_u64")]
        count: u64,
        /// `{enrollid, name}` per user.
        record: Vec<UserName>,
    },
    /// Enables (`enflag:1`) or disables (`enflag:0`) a user without deleting anything.
    EnableUser {
        /// The user's ID on the device.
        #[serde(deserialize_with = "lenient::de_u64")]
        enrollid: u64,
        /// 1 enable, 0 disable.
        #[serde(deserialize_with = "lenient::de_u64")]
        enflag: u64,
    },
    /// One page of the logs not yet delivered to the server.
    GetNewLog {
        /// `true` for the first page, `false` for the next one.
        #[serde(deserialize_with = "lenient::de_bool")]
        stn: bool,
    },
    /// One page of all stored logs, optionally limited to a date window.
    GetAllLog {
        /// `true` for the first page, `false` for the next one.
        #[serde(deserialize_with = "lenient::de_bool")]
        stn: bool,
        /// Start of the window, e.g. `2026-01-01` (format accepted by firmware is unverified).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<String>,
        /// End of the window.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<String>,
    },
    /// Reads the device clock (the reply may lack `result`).
    GetTime,
    /// Sets the device clock to the given local wall time, `YYYY-MM-DD HH:MM:SS`.
    SetTime {
        /// Local wall time, `YYYY-MM-DD HH:MM:SS`.
        cloudtime: String,
    },
    /// Reads the device settings (`language`, `volume`, …).
    GetDevInfo,
    /// Reads capacities and used counts; checks that a user read is complete.
    GetDevCap,
}

/// One record of `setusername`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserName {
    /// The user's ID on the device.
    #[serde(deserialize_with = "lenient::de_u64")]
    pub enrollid: u64,
    /// The new display name.
    #[serde(deserialize_with = "lenient::de_text")]
    pub name: String,
}

/// The fields of `setuserinfo` (the classic form, understood by every firmware).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetUserInfo {
    /// The user's ID on the device.
    #[serde(deserialize_with = "lenient::de_u64")]
    pub enrollid: u64,
    /// The user's display name.
    #[serde(deserialize_with = "lenient::de_text")]
    pub name: String,
    /// The credential slot being written.
    pub backupnum: BackupNum,
    /// 0 normal, 1 administrator, 2 "super user".
    #[serde(deserialize_with = "lenient::de_u64")]
    pub admin: u64,
    /// The value, with the JSON type it was read with (number for 10/11, string otherwise).
    pub record: CredentialValue,
}

impl Command {
    /// The command's wire name, for logs and for matching the reply's `ret`.
    pub fn name(&self) -> CommandName {
        match self {
            Command::GetUserList { .. } => CommandName::GetUserList,
            Command::GetUserInfo { .. } => CommandName::GetUserInfo,
            Command::SetUserInfo(_) => CommandName::SetUserInfo,
            Command::GetUserName { .. } => CommandName::GetUserName,
            Command::SetUserName { .. } => CommandName::SetUserName,
            Command::EnableUser { .. } => CommandName::EnableUser,
            Command::GetNewLog { .. } => CommandName::GetNewLog,
            Command::GetAllLog { .. } => CommandName::GetAllLog,
            Command::GetTime => CommandName::GetTime,
            Command::SetTime { .. } => CommandName::SetTime,
            Command::GetDevInfo => CommandName::GetDevInfo,
            Command::GetDevCap => CommandName::GetDevCap,
        }
    }

    /// The exact text frame to send.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("commands contain only JSON-safe values")
    }

    /// Whether the reply may carry a large base64 payload, so the driver should allow a longer
    /// timeout (a face photo can be well over a megabyte).
    pub fn expects_large_reply(&self) -> bool {
        matches!(self, Command::GetUserInfo { backupnum, .. } if backupnum.0 >= 20)
    }
}
