//! The device's replies to the agent's commands (frames with `ret`).
//!
//! There are no request IDs: a reply is matched to the one command in flight by its `ret`.

use serde_json::{Map, Value};

use super::command::Command;
use super::command_name::CommandName;
use super::credential::UserCredential;
use super::devinfo::DevCap;
use super::error::{field_error, ParseError};
use super::lenient;
use super::records::{LogRecord, Page, UserListEntry};

/// A reply to a command.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceReply {
    /// The command this answers.
    pub ret: CommandName,
    /// Device serial number, when sent (firmware ≥ 1.8 sends it).
    pub sn: Option<String>,
    /// Success with its body, or failure with its reason.
    pub outcome: ReplyOutcome,
}

/// `result:true` with the body, or `result:false` with the reason.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyOutcome {
    /// The command succeeded.
    Success(ReplyBody),
    /// The device refused or failed the command. Never to be read as "no data".
    Failure {
        /// Usually a number (1 = generic, 2 = ID exists for `adduser`); kept raw.
        reason: Option<Value>,
        /// Anything else in the frame.
        extras: Map<String, Value>,
    },
}

/// The typed body of a successful reply, chosen by `ret`.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyBody {
    /// `getuserlist`: one page of credentials.
    UserList(Page<UserListEntry>),
    /// `getuserinfo`: one credential with its value.
    UserInfo(UserCredential),
    /// `getnewlog` / `getalllog`: one page of punches.
    Logs(Page<LogRecord>),
    /// `getdevcap`: capacities and used counts (boxed: it is by far the largest body).
    DevCap(Box<DevCap>),
    /// `gettime`: the device clock, raw.
    Time(String),
    /// Any other command: the fields as sent (`setuserinfo` echoes `enrollid`, `getdevinfo`
    /// returns settings, …).
    Fields(Map<String, Value>),
}

impl DeviceReply {
    /// Whether this reply answers `command`: same `ret`, and for a successful `getuserinfo` the
    /// same `(enrollid, backupnum)`. Replies carry no request ID, so a driver uses this to tell
    /// the reply it waits for from a stale one (to be logged and ignored).
    pub fn answers(&self, command: &Command) -> bool {
        if self.ret != command.name() {
            return false;
        }
        match (command, &self.outcome) {
            (
                Command::GetUserInfo {
                    enrollid,
                    backupnum,
                },
                ReplyOutcome::Success(ReplyBody::UserInfo(got)),
            ) => got.enrollid == *enrollid && got.backupnum == *backupnum,
            _ => true,
        }
    }

    /// Decodes a reply from a normalised object (see [`super::parse_device_message`]).
    pub(crate) fn from_object(
        ret: String,
        mut fields: Map<String, Value>,
    ) -> Result<Self, ParseError> {
        let name = CommandName::from_wire(&ret);
        let sn = fields.remove("sn").as_ref().and_then(lenient::as_text);
        // The vendor's `gettime` example has no `result`; a missing flag therefore means success.
        let result = match fields.remove("result") {
            None => true,
            Some(v) => lenient::as_bool(&v).ok_or_else(|| ParseError::Field {
                kind: ret.clone(),
                source: serde::de::Error::custom(format!(
                    "\"result\" should be true/false, got {v}"
                )),
            })?,
        };
        let outcome = if result {
            ReplyOutcome::Success(ReplyBody::decode(&name, fields).map_err(field_error(&ret))?)
        } else {
            let reason = fields.remove("reason");
            ReplyOutcome::Failure {
                reason,
                extras: fields,
            }
        };
        Ok(DeviceReply {
            ret: name,
            sn,
            outcome,
        })
    }

    /// The frame as a JSON object (used by the emulator to answer).
    pub fn to_value(&self) -> Value {
        let mut out = match &self.outcome {
            ReplyOutcome::Success(body) => body.to_object(),
            ReplyOutcome::Failure { reason, extras } => {
                let mut out = extras.clone();
                if let Some(reason) = reason {
                    out.insert("reason".into(), reason.clone());
                }
                out
            }
        };
        out.insert("ret".into(), Value::from(self.ret.as_str()));
        if let Some(sn) = &self.sn {
            out.insert("sn".into(), Value::from(sn.as_str()));
        }
        out.insert(
            "result".into(),
            Value::from(matches!(self.outcome, ReplyOutcome::Success(_))),
        );
        Value::Object(out)
    }
}

impl ReplyBody {
    fn decode(name: &CommandName, fields: Map<String, Value>) -> Result<Self, serde_json::Error> {
        Ok(match name {
            CommandName::GetUserList => {
                ReplyBody::UserList(serde_json::from_value(Value::Object(fields))?)
            }
            CommandName::GetUserInfo => {
                ReplyBody::UserInfo(serde_json::from_value(Value::Object(fields))?)
            }
            CommandName::GetNewLog | CommandName::GetAllLog => {
                ReplyBody::Logs(serde_json::from_value(Value::Object(fields))?)
            }
            CommandName::GetDevCap => {
                ReplyBody::DevCap(serde_json::from_value(Value::Object(fields))?)
            }
            CommandName::GetTime => {
                let time = fields.get("time").and_then(lenient::as_text);
                ReplyBody::Time(time.ok_or_else(|| serde::de::Error::missing_field("time"))?)
            }
            _ => ReplyBody::Fields(fields),
        })
    }

    fn to_object(&self) -> Map<String, Value> {
        let value = match self {
            ReplyBody::UserList(page) => serde_json::to_value(page),
            ReplyBody::UserInfo(credential) => serde_json::to_value(credential),
            ReplyBody::Logs(page) => serde_json::to_value(page),
            ReplyBody::DevCap(cap) => serde_json::to_value(cap),
            ReplyBody::Time(time) => Ok(serde_json::json!({ "time": time })),
            ReplyBody::Fields(map) => return map.clone(),
        };
        match value.expect("reply bodies contain only JSON-safe values") {
            Value::Object(map) => map,
            _ => unreachable!("every reply body serialises as an object"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aiface::{parse_device_message, BackupNum, DeviceMessage};

    fn reply(text: &str) -> DeviceReply {
        match parse_device_message(text).unwrap() {
            DeviceMessage::Reply(reply) => reply,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_reply_answers_only_its_own_command() {
        let info = reply(
            r#"{"ret":"getuserinfo","result":true,"enrollid":5,"backupnum":50,"record":"x"}"#,
        );
        assert!(info.answers(&Command::GetUserInfo {
            enrollid: 5,
            backupnum: BackupNum(50)
        }));
        assert!(
            !info.answers(&Command::GetUserInfo {
                enrollid: 5,
                backupnum: BackupNum(11)
            }),
            "stale"
        );
        assert!(!info.answers(&Command::GetDevCap));
        let refused = reply(r#"{"ret":"getuserinfo","result":false,"reason":1}"#);
        assert!(refused.answers(&Command::GetUserInfo {
            enrollid: 9,
            backupnum: BackupNum(0)
        }));
    }

    #[test]
    fn photo_and_template_fetches_get_the_long_timeout() {
        assert!(Command::GetUserInfo {
            enrollid: 1,
            backupnum: BackupNum::PHOTO
        }
        .expects_large_reply());
        assert!(!Command::GetUserInfo {
            enrollid: 1,
            backupnum: BackupNum::CARD
        }
        .expects_large_reply());
        assert!(!Command::GetUserList { stn: true }.expects_large_reply());
    }
}
