//! The emulated terminal's state and its answers to commands. No I/O here: the session feeds
//! received commands in and sends back what this returns, so the behaviour can be reasoned
//! about (and tested) apart from the sockets.

use std::collections::{BTreeMap, HashMap};

use crate::aiface::{
    BackupNum, Capacity, Command, CommandName, DevCap, DevInfo, DeviceMessage, DeviceReply,
    DeviceReport, LogRecord, LogUpload, Page, ReceivedCommand, Registration, ReplyBody,
    ReplyOutcome, UserPush,
};
use serde_json::{json, Map, Value};

mod unlisted;

use super::pages::{in_window, Cursor};
use super::scenario::{FaultKind, FaultSpec, Scenario};
use super::users::{self, SimUser};
use crate::sim::clock::DeviceClock;

/// What the session should do in answer to a command.
#[derive(Debug, PartialEq)]
pub enum Answer {
    /// Send this text frame.
    Reply(String),
    /// Send nothing (`reboot` has no reply) and restart the link.
    Reboot,
    /// Close the link without answering (`drop` fault).
    Drop,
    /// Send a frame that is not JSON instead of the answer (`garbage` fault).
    Garbage,
    /// Neither read nor write on this link any more (`silence` fault).
    Silence,
}

/// A punch stored on the device.
struct StoredLog {
    record: LogRecord,
    delivered: bool,
    /// The `sendlog` batch it was pushed in, if it was pushed.
    logindex: Option<u64>,
}

/// A `getnewlog`/`getalllog` read in progress: the logs it covers, fixed at `stn:true`.
struct LogRead {
    command: CommandName,
    logs: Vec<usize>,
    cursor: Cursor,
}

/// The terminal.
pub struct Device {
    scenario: Scenario,
    /// Users enrolled now.
    pub users: BTreeMap<u64, SimUser>,
    logs: Vec<StoredLog>,
    user_cursor: Cursor,
    all_users_cursor: usize,
    log_read: Option<LogRead>,
    received_per_command: HashMap<String, u32>,
    /// Faults that have fired, in order.
    pub faults_fired: Vec<String>,
    /// The device clock.
    pub clock: DeviceClock,
    /// Credentials written by `setuserinfo`.
    pub credentials_written: u64,
    next_logindex: u64,
}

impl Device {
    /// A terminal in the scenario's starting state.
    pub fn new(scenario: Scenario) -> Self {
        let mut device = Device {
            users: users::initial_users(&scenario),
            logs: Vec::new(),
            user_cursor: Cursor::default(),
            all_users_cursor: 0,
            log_read: None,
            received_per_command: HashMap::new(),
            faults_fired: Vec::new(),
            clock: DeviceClock::from_host(),
            credentials_written: 0,
            next_logindex: 1,
            scenario,
        };
        for i in 0..device.scenario.stored_logs + device.scenario.new_logs {
            let delivered = i < device.scenario.stored_logs;
            let record = device.log_record(i);
            device.logs.push(StoredLog {
                record,
                delivered,
                logindex: None,
            });
        }
        device
    }

    fn log_record(&self, i: u64) -> LogRecord {
        let enrollid = self
            .users
            .keys()
            .nth(i as usize % self.users.len().max(1))
            .copied()
            .unwrap_or(1);
        LogRecord {
            enrollid,
            time: self.clock.now().to_string(),
            mode: Some(json!(8)),
            inout: Some(json!(i % 2)),
            event: Some(json!(0)),
            verifymode: None,
            name: self.users.get(&enrollid).map(|u| u.name.clone()),
            temp: None,
            image: None,
            extras: Default::default(),
        }
    }

    fn capacity(&self) -> Capacity {
        let count = |pick: fn(BackupNum) -> bool| {
            let n = self
                .users
                .values()
                .flat_map(|u| u.credentials.keys())
                .filter(|b| pick(**b))
                .count();
            Some(n as u64)
        };
        Capacity {
            usersize: Some(5000),
            facesize: Some(5000),
            fpsize: Some(10_000),
            cardsize: Some(5000),
            pwdsize: Some(5000),
            logsize: Some(500_000),
            useduser: Some(self.users.len() as u64),
            usedface: count(|b| b == BackupNum::PHOTO),
            usedfp: count(|b| b.0 < 10),
            usedcard: count(|b| b == BackupNum::CARD),
            usedpwd: count(|b| b == BackupNum::PASSWORD),
            usedlog: Some(self.logs.len() as u64),
            usednewlog: Some(self.logs.iter().filter(|l| !l.delivered).count() as u64),
            ..Capacity::default()
        }
    }

    /// The `reg` frame sent first on every connection.
    pub fn registration(&self) -> String {
        let devinfo = DevInfo {
            modelname: Some("AiFace".into()),
            fpalgo: Some("thbio3.0".into()),
            firmware: Some(self.scenario.firmware.clone()),
            time: Some(self.clock.now().to_string()),
            mac: Some("00-0A-1B-2C-3D-4E".into()),
            capacity: self.capacity(),
            extras: Default::default(),
        };
        let reg = Registration {
            sn: self.scenario.sn.clone(),
            cpusn: None,
            devinfo,
            extras: Default::default(),
        };
        DeviceMessage::Report(DeviceReport::Reg(Box::new(reg))).to_json()
    }

    fn reply(&self, ret: CommandName, body: ReplyBody) -> Answer {
        let reply = DeviceReply {
            ret,
            sn: Some(self.scenario.sn.clone()),
            outcome: ReplyOutcome::Success(body),
        };
        Answer::Reply(DeviceMessage::Reply(reply).to_json())
    }

    fn ack(&self, ret: CommandName, fields: Value) -> Answer {
        let Value::Object(map) = fields else {
            unreachable!("acks are built from json!({{..}})")
        };
        self.reply(ret, ReplyBody::Fields(map))
    }

    fn refuse(&self, ret: CommandName) -> Answer {
        let outcome = ReplyOutcome::Failure {
            reason: Some(json!(1)),
            extras: Map::new(),
        };
        let reply = DeviceReply {
            ret,
            sn: Some(self.scenario.sn.clone()),
            outcome,
        };
        Answer::Reply(DeviceMessage::Reply(reply).to_json())
    }

    /// Counts the command and returns the fault it triggers, if any (each fires once).
    fn due_fault(&mut self, name: &str) -> Option<FaultKind> {
        let seen = self
            .received_per_command
            .entry(name.to_owned())
            .or_default();
        *seen += 1;
        let spec = self
            .scenario
            .faults
            .iter()
            .find(|f| f.cmd == name && f.nth == *seen)
            .cloned()?;
        self.faults_fired.push(FaultSpec::to_string(&spec));
        Some(spec.kind)
    }

    /// The answer to one received command.
    pub fn answer(&mut self, received: &ReceivedCommand) -> Answer {
        let name = received.name.clone();
        match self.due_fault(name.as_str()) {
            Some(FaultKind::Refuse) => return self.refuse(name),
            Some(FaultKind::Drop) => return Answer::Drop,
            Some(FaultKind::Garbage) => return Answer::Garbage,
            Some(FaultKind::Silence) => return Answer::Silence,
            Some(FaultKind::Repeat) => self.paged_cursor(&name).map_or((), Cursor::repeat_last),
            Some(FaultKind::Restart) => self.paged_cursor(&name).map_or((), Cursor::restart),
            Some(FaultKind::Overflow) if name == CommandName::GetUserList => {
                let entries = users::list_entries(&self.users);
                let records = entries.into_iter().take(self.scenario.page_size).collect();
                let page = Page {
                    count: u64::MAX,
                    from: 0,
                    to: u64::MAX,
                    records,
                };
                return self.reply(name, ReplyBody::UserList(page));
            }
            Some(FaultKind::Overflow) | None => {}
        }
        match &received.command {
            Ok(command) => self.answer_command(command),
            Err(_) => self.answer_other(name, &received.frame),
        }
    }

    /// The listing position of a paged command, for the repeat/restart faults.
    fn paged_cursor(&mut self, name: &CommandName) -> Option<&mut Cursor> {
        match name {
            CommandName::GetUserList => Some(&mut self.user_cursor),
            _ => self
                .log_read
                .as_mut()
                .filter(|read| read.command == *name)
                .map(|read| &mut read.cursor),
        }
    }

    fn answer_command(&mut self, command: &Command) -> Answer {
        let name = command.name();
        match command {
            Command::GetUserList { stn } => {
                let entries = users::list_entries(&self.users);
                let (size, means) = (self.scenario.page_size, self.scenario.count_means);
                let page = self.user_cursor.serve(&entries, *stn, size, means);
                self.reply(name, ReplyBody::UserList(page))
            }
            Command::GetUserInfo {
                enrollid,
                backupnum,
            } => {
                match self
                    .users
                    .get(enrollid)
                    .and_then(|u| users::credential(*enrollid, u, *backupnum))
                {
                    Some(credential) => self.reply(name, ReplyBody::UserInfo(credential)),
                    None => self.refuse(name),
                }
            }
            Command::SetUserInfo(set) => {
                let user = self.users.entry(set.enrollid).or_insert_with(|| SimUser {
                    name: set.name.clone(),
                    admin: set.admin,
                    enabled: true,
                    credentials: BTreeMap::new(),
                });
                user.name = set.name.clone();
                user.admin = set.admin;
                user.credentials.insert(set.backupnum, set.record.clone());
                self.credentials_written += 1;
                self.ack(name, json!({ "enrollid": set.enrollid }))
            }
            Command::GetUserName { enrollid } => match self.users.get(enrollid) {
                Some(user) => self.ack(name, json!({ "enrollid": enrollid, "record": user.name })),
                None => self.refuse(name),
            },
            Command::SetUserName { record, .. } => {
                if record
                    .iter()
                    .any(|named| !self.users.contains_key(&named.enrollid))
                {
                    return self.refuse(name);
                }
                for named in record {
                    if let Some(user) = self.users.get_mut(&named.enrollid) {
                        user.name = named.name.clone();
                    }
                }
                self.ack(name, json!({}))
            }
            Command::EnableUser { enrollid, enflag } => match self.users.get_mut(enrollid) {
                Some(user) => {
                    user.enabled = *enflag == 1;
                    self.ack(name, json!({}))
                }
                None => self.refuse(name),
            },
            Command::GetNewLog { stn } | Command::GetAllLog { stn, .. } => {
                self.answer_logs(command, *stn)
            }
            Command::GetTime => self.reply(name, ReplyBody::Time(self.clock.now().to_string())),
            Command::SetTime { cloudtime } => {
                if self.clock.set_from_text(cloudtime) {
                    self.ack(name, json!({}))
                } else {
                    self.refuse(name)
                }
            }
            Command::GetDevInfo => self.ack(
                name,
                json!({"deviceid": 1, "language": 0, "volume": 6, "screensaver": 0, "verifymode": 0,
                       "sleep": 0, "userfpnum": 3, "loghint": 1000, "reverifytime": 0}),
            ),
            Command::GetDevCap => {
                let cap = DevCap {
                    capacity: self.capacity(),
                    extras: Default::default(),
                };
                self.reply(name, ReplyBody::DevCap(Box::new(cap)))
            }
        }
    }

    fn answer_logs(&mut self, command: &Command, stn: bool) -> Answer {
        let name = command.name();
        let restart = stn
            || self
                .log_read
                .as_ref()
                .is_none_or(|read| read.command != name);
        if restart {
            let logs = (0..self.logs.len())
                .filter(|&i| match command {
                    Command::GetNewLog { .. } => !self.logs[i].delivered,
                    Command::GetAllLog { from, to, .. } => {
                        in_window(&self.logs[i].record.time, from, to)
                    }
                    _ => unreachable!("only log commands come here"),
                })
                .collect();
            self.log_read = Some(LogRead {
                command: name.clone(),
                logs,
                cursor: Cursor::default(),
            });
        }
        let read = self.log_read.as_mut().expect("set above");
        let (size, means) = (self.scenario.log_page_size, self.scenario.count_means);
        let page = read.cursor.serve(&read.logs, false, size, means);
        let mut records = Vec::with_capacity(page.records.len());
        for &i in &page.records {
            if name == CommandName::GetNewLog {
                // Served means delivered, as far as this emulation is concerned.
                self.logs[i].delivered = true;
            }
            records.push(self.logs[i].record.clone());
        }
        let page = Page {
            count: page.count,
            from: page.from,
            to: page.to,
            records,
        };
        self.reply(name, ReplyBody::Logs(page))
    }

    /// Users switched off by `enableuser` with `enflag:0`.
    pub fn disabled_users(&self) -> Vec<u64> {
        self.users
            .iter()
            .filter(|(_, u)| !u.enabled)
            .map(|(&id, _)| id)
            .collect()
    }

    /// Deletes users as a keypad operator would; returns the ones that existed.
    pub fn delete_users(&mut self, enrollids: &[u64]) -> Vec<u64> {
        enrollids
            .iter()
            .copied()
            .filter(|id| self.users.remove(id).is_some())
            .collect()
    }

    /// Enrols a new user on the keypad; returns the `senduser` frames, one per credential.
    pub fn enrol(&mut self) -> Vec<String> {
        let enrollid = self
            .users
            .keys()
            .next_back()
            .map_or(self.scenario.first_enrollid, |id| id + 1);
        let user = users::generate(enrollid, format!("keypad{enrollid}"), &self.scenario);
        let frames = user
            .credentials
            .keys()
            .filter_map(|&b| users::credential(enrollid, &user, b))
            .map(|credential| {
                let push = UserPush {
                    sn: self.scenario.sn.clone(),
                    credential,
                };
                DeviceMessage::Report(DeviceReport::SendUser(push)).to_json()
            })
            .collect();
        self.users.insert(enrollid, user);
        frames
    }

    /// Records a verification now; returns its `logindex` and the `sendlog` frame.
    pub fn punch(&mut self) -> (u64, String) {
        let record = self.log_record(self.logs.len() as u64);
        let logindex = self.next_logindex;
        self.next_logindex += 1;
        let upload = LogUpload {
            sn: self.scenario.sn.clone(),
            count: Some(json!(1)),
            logindex: Some(json!(logindex)),
            records: vec![record.clone()],
            malformed: Vec::new(),
            extras: Default::default(),
        };
        self.logs.push(StoredLog {
            record,
            delivered: false,
            logindex: Some(logindex),
        });
        let mut frame = DeviceMessage::Report(DeviceReport::SendLog(upload)).to_json();
        if self.scenario.malformed_punches {
            // A record real firmware has been seen to send: no time, a non-numeric user id.
            let mut value: serde_json::Value =
                serde_json::from_str(&frame).expect("a frame this emulator wrote is JSON");
            if let Some(records) = value["record"].as_array_mut() {
                records.push(json!({"enrollid": "x7", "mode": 1, "inout": 0}));
            }
            value["count"] = json!(2);
            frame = value.to_string();
        }
        (logindex, frame)
    }

    /// Marks a punch delivered once the server acknowledged it.
    pub fn punch_delivered(&mut self, logindex: u64) {
        if let Some(log) = self.logs.iter_mut().find(|l| l.logindex == Some(logindex)) {
            log.delivered = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aiface::{parse_server_message, ServerMessage};

    fn device(knobs: &[&str]) -> Device {
        #[derive(clap::Parser)]
        struct Knobs {
            #[command(flatten)]
            scenario: Scenario,
        }
        let args = std::iter::once("device-sim").chain(knobs.iter().copied());
        Device::new(<Knobs as clap::Parser>::parse_from(args).scenario)
    }

    fn ask(device: &mut Device, frame: &str) -> Value {
        let ServerMessage::Command(received) = parse_server_message(frame).unwrap() else {
            panic!()
        };
        match device.answer(&received) {
            Answer::Reply(text) => serde_json::from_str(&text).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn getallusers_walks_one_credential_per_reply() {
        let mut device = device(&["--users", "2", "--photo-kb", "0"]);
        let first = ask(&mut device, r#"{"cmd":"getallusers","stn":true}"#);
        assert_eq!(
            (
                first["count"].clone(),
                first["index"].clone(),
                first["record"].clone()
            ),
            (json!(2), json!(0), json!(3_000_000_001u64))
        );
        let second = ask(&mut device, r#"{"cmd":"getallusers","stn":false}"#);
        assert_eq!(
            (second["index"].clone(), second["enrollid"].clone()),
            (json!(1), json!(2))
        );
    }

    #[test]
    fn destructive_commands_really_destroy() {
        let mut device = device(&["--users", "3"]);
        assert_eq!(
            ask(
                &mut device,
                r#"{"cmd":"deleteuser","enrollid":2,"backupnum":13}"#
            )["result"],
            true
        );
        assert_eq!(device.users.keys().copied().collect::<Vec<_>>(), [1, 3]);
        ask(&mut device, r#"{"cmd":"cleanuser"}"#);
        assert!(device.users.is_empty());
        assert_eq!(
            ask(&mut device, r#"{"cmd":"formatdisk"}"#)["result"],
            false,
            "unknown commands are refused"
        );
    }

    #[test]
    fn faults_fire_once_on_the_nth_receipt() {
        let mut device = device(&["--fault", "garbage:getdevcap:2"]);
        let ServerMessage::Command(received) =
            parse_server_message(r#"{"cmd":"getdevcap"}"#).unwrap()
        else {
            panic!()
        };
        assert!(matches!(device.answer(&received), Answer::Reply(_)));
        assert_eq!(device.answer(&received), Answer::Garbage);
        assert!(matches!(device.answer(&received), Answer::Reply(_)));
        assert_eq!(device.faults_fired, ["garbage:getdevcap:2"]);
    }
}
