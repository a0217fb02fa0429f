//! Answers to the commands outside the agent's `Command` vocabulary: the destructive ones
//! (carried out, as real firmware would, so damage is visible), the vendor demo's
//! `getallusers`, and the access-control/questionnaire reads of a terminal that does not use
//! those features.

use crate::aiface::{lenient, BackupNum, CommandName};
use serde_json::{json, Map, Value};

use super::super::users;
use super::{Answer, Device};

impl Device {
    /// Commands the agent's `Command` type cannot express: carried out as the firmware would
    /// (a destructive one really destroys, so a test would see the damage too).
    pub(super) fn answer_other(&mut self, name: CommandName, frame: &Map<String, Value>) -> Answer {
        let field = |key: &str| frame.get(key).and_then(lenient::as_u64);
        match name {
            CommandName::DeleteUser => {
                let (Some(enrollid), Some(slot)) = (field("enrollid"), field("backupnum")) else {
                    return self.refuse(name);
                };
                match (self.users.get_mut(&enrollid), slot) {
                    (None, _) => return self.refuse(name),
                    (Some(_), 13) => {
                        self.users.remove(&enrollid);
                    }
                    (Some(user), 12) => user.credentials.retain(|b, _| b.0 >= 10),
                    (Some(user), slot) => {
                        user.credentials.remove(&BackupNum(slot as u16));
                    }
                }
                self.ack(name, json!({}))
            }
            CommandName::CleanUser => {
                self.users.clear();
                self.ack(name, json!({}))
            }
            CommandName::CleanLog => {
                self.logs.clear();
                self.ack(name, json!({}))
            }
            CommandName::InitSys => {
                self.users.clear();
                self.logs.clear();
                self.ack(name, json!({}))
            }
            CommandName::CleanAdmin => {
                self.users.values_mut().for_each(|u| u.admin = 0);
                self.ack(name, json!({}))
            }
            CommandName::Reboot => Answer::Reboot,
            CommandName::GetAllUsers => {
                self.answer_all_users(frame.get("stn").and_then(lenient::as_bool).unwrap_or(false))
            }
            CommandName::GetUserLock | CommandName::GetUserProfile => match field("enrollid") {
                Some(id) if self.users.contains_key(&id) || id == 0 => {
                    let fields = if name == CommandName::GetUserLock {
                        json!({"enrollid": id, "weekzone": 1, "group": 0,
                               "starttime": "2000-01-01", "endtime": "2099-12-31"})
                    } else {
                        json!({"enrollid": id, "record": ""})
                    };
                    self.ack(name, fields)
                }
                _ => self.refuse(name),
            },
            // Access-control and questionnaire reads: a terminal with those features unused.
            CommandName::GetDevLock => self.ack(
                name,
                json!({"opendelay": 5, "doorsensor": 0, "alarmdelay": 0, "threat": 0,
                       "InputAlarm": 0, "antpass": 0, "interlock": 0, "mutiopen": 0,
                       "tryalarm": 0, "tamper": 0, "wgformat": 0, "wgoutput": 0,
                       "cardoutput": 0, "access_times": 0, "punchtimes": 0}),
            ),
            CommandName::GetQuestionnaire => self.ack(
                name,
                json!({"title": "", "voice": false, "errmsg": "", "radio": true, "optionflag": 0,
                       "usequestion": false, "useschedule": false, "card": false,
                       "items": [], "schedules": []}),
            ),
            CommandName::GetHoliday => self.ack(name, json!({"holidays": []})),
            CommandName::Other(_) => self.refuse(name),
            // Known settings and door commands: accepted without effect on the emulated data.
            known => self.ack(known, json!({})),
        }
    }

    /// The vendor demo's `getallusers`: one credential per reply, `index` of `count`; the
    /// server continues with `stn:false` while `index < count - 1`.
    fn answer_all_users(&mut self, stn: bool) -> Answer {
        let entries = users::list_entries(&self.users);
        if stn {
            self.all_users_cursor = 0;
        }
        let index = self.all_users_cursor;
        let Some(entry) = entries.get(index) else {
            return self.ack(
                CommandName::GetAllUsers,
                json!({"count": entries.len(), "index": index}),
            );
        };
        self.all_users_cursor += 1;
        let user = &self.users[&entry.enrollid];
        let credential =
            users::credential(entry.enrollid, user, entry.backupnum).expect("listed, so present");
        let mut fields = serde_json::to_value(credential).expect("JSON-safe");
        fields["count"] = json!(entries.len());
        fields["index"] = json!(index);
        self.ack(CommandName::GetAllUsers, fields)
    }
}
