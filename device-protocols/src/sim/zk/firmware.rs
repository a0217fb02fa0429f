//! The emulated firmware: takes one ZK packet, returns the packets a real terminal would send.
//!
//! Transport-free on purpose (the TCP, UDP and serial front ends share it), and faithful to the
//! firmware behaviour seen on real terminals: silent drops on a bad checksum, an unknown
//! session or a stale reply id; the cached last reply for a repeated reply id; `ACK_UNKNOWN` for
//! unknown commands; no reply to a client `ACK_OK`; the comm-key gate; inline-vs-chunked bulk
//! replies; `USER_WRQ` conflict rules. Fault knobs degrade it in the ways field devices do.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::sim::clock::DeviceClock;
use crate::zk::device::{prepare_buffer_reply, read_buffer_replies};
use crate::zk::{
    AttendanceEvent, AttendanceRecord, Code, CommKey, EventForm, EventUser, FingerTemplate, Packet,
    TemplateHead, ZkTime, UPLOAD_CHUNK,
};

use super::enable_state::EnableState;
use super::events::Events;
use super::packet_log::{CommandLog, Disposition, Entry};
use super::store::{Store, WriteRefusal};
use super::time::{from_zk, to_zk};

/// Which front end a packet came through; it decides the bulk fragment size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// A TCP connection (packets framed with the TCP header).
    Tcp,
    /// UDP datagrams.
    Udp,
    /// A serial line (experimental framing).
    Serial,
}

impl Transport {
    /// Name for the command log.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
            Transport::Serial => "serial",
        }
    }
}

/// Ways to make the device misbehave, each seen on real terminals.
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    /// Stop half-way through every multi-packet bulk reply (and close a TCP connection).
    pub drop_mid_transfer: bool,
    /// Send the last fragment of every multi-packet bulk reply one byte short.
    pub short_chunk: bool,
    /// Answer `CONNECT`, then nothing at all.
    pub silence: bool,
    /// Report one user and one record more than the device holds.
    pub wrong_counts: bool,
}

/// Firmware settings.
pub struct Config {
    /// Comm key clients must prove; `None` = open device.
    pub comm_key: Option<CommKey>,
    /// Datasets up to this size are sent inline.
    pub inline_threshold: usize,
    /// Bulk fragment size on TCP.
    pub tcp_fragment: usize,
    /// Bulk fragment size on UDP and serial.
    pub datagram_fragment: usize,
    /// RS485 address ("DeviceID").
    pub device_id: u8,
    /// Misbehaviour to inject.
    pub faults: Faults,
    /// Session id given to the first CONNECT; later ones count up.
    pub first_session_id: u16,
    /// Payload form of the attendance events pushed to registered sessions.
    pub event_form: EventForm,
    /// How long an unacknowledged event waits before it is sent again.
    pub event_resend: Duration,
}

/// What to send back for one packet.
#[derive(Default)]
pub struct Reply {
    /// Packets in order; the front end paces them, including the closing `ACK_OK` of a bulk
    /// slice. (Sending that `ACK_OK` together with the last fragment suits node-zklib, which
    /// stops listening once the data is complete, but deadlocks pyzk whenever it has fallen one
    /// fragment behind: it then waits in `recv` for bytes it already holds. Firmware pauses after
    /// every packet, so the emulator does too.)
    pub packets: Vec<Packet>,
    /// Close the connection after sending (TCP only).
    pub close: bool,
}

struct Session {
    authenticated: bool,
    last_reply_id: u16,
    last_sent: Option<Packet>,
    buffer: Option<Vec<u8>>,
    /// The upload under way: the size `PREPARE_DATA` announced and the `DATA` received so far.
    upload: Option<(u32, Vec<u8>)>,
}

/// One emulated terminal.
pub struct Firmware {
    config: Config,
    store: Store,
    clock: DeviceClock,
    log: CommandLog,
    sessions: HashMap<u16, Session>,
    next_session_id: u16,
    options: HashMap<String, String>,
    enable_state: EnableState,
    events: Events,
}

impl Firmware {
    /// A terminal holding `store`, recording commands to `log`.
    pub fn new(config: Config, store: Store, log: CommandLog) -> Firmware {
        let options = [
            ("~SerialNumber", "DSIM000001"),
            ("~DeviceName", "device-sim"),
            ("~Platform", "ZMM220_TFT"),
            ("~OEMVendor", "device-sim"),
            ("~ProductTime", "2024-01-01 00:00:00"),
            ("~OS", "1"),
            ("~ZKFPVersion", "10"),
            ("ZKFaceVersion", "0"),
            ("FaceFunOn", "0"),
            ("~ExtendFmt", "0"),
            ("~UserExtFmt", "1"),
            ("CompatOldFirmware", "0"),
            ("~PIN2Width", "9"),
            ("~IsABCPinEnable", "0"),
            ("WorkCode", "0"),
            ("~SSR", "1"),
            ("MAC", "00:17:61:53:49:4d"),
            ("IPAddress", "127.0.0.1"),
            ("NetMask", "255.0.0.0"),
            ("GATEIPAddress", "0.0.0.0"),
            ("RS232BaudRate", "115200"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .chain([("DeviceID".to_owned(), config.device_id.to_string())])
        .collect();
        let events = Events::new(config.event_form, config.event_resend);
        Firmware {
            events,
            next_session_id: config.first_session_id.max(1),
            config,
            store,
            clock: DeviceClock::from_host(),
            log,
            sessions: HashMap::new(),
            enable_state: EnableState::new(),
            options,
        }
    }

    /// The device's RS485 address ("DeviceID").
    pub fn device_id(&self) -> u8 {
        self.config.device_id
    }

    /// Records a packet the serial front end dropped before it reached the firmware.
    pub fn log_dropped_frame(&mut self, packet: &[u8], disposition: Disposition) {
        if let Ok(incoming) = Packet::decode(packet) {
            let enabled = self.enable_state.is_enabled(Instant::now());
            self.log.record(&Entry::new(
                Transport::Serial.name(),
                &incoming.packet,
                disposition,
                enabled,
            ));
        }
    }

    /// A punch made at the terminal now: appended to the attendance log and queued as an
    /// attendance event for every session that registered for them. `None` without users.
    pub fn punch(&mut self) -> Option<AttendanceRecord> {
        let now = to_zk(self.clock.now());
        let (record, owner) = self.store.punch(now)?;
        let user = match self.config.event_form {
            EventForm::UserId32 | EventForm::UserId36 => EventUser::UserId(owner.user_id),
            EventForm::Uid10 | EventForm::Uid12 => EventUser::Uid(u32::from(owner.uid)),
        };
        let event = AttendanceEvent {
            user,
            verify: record.verify,
            state: record.state,
            time: now.to_parts(),
            workcode: record.workcode,
            payload_len: 0,
        };
        self.events.attendance(&event);
        Some(record)
    }

    /// The realtime event due to `session` now (the oldest unacknowledged one, when it was
    /// never sent or its resend interval is over), for the front end to send between replies.
    pub fn due_event(&mut self, session: u16) -> Option<Packet> {
        self.events.due(session, Instant::now())
    }

    /// Whether `session` registered for realtime events (the front end then watches for them).
    pub fn listening(&self, session: u16) -> bool {
        self.events.registered(session)
    }

    /// Handles one received ZK packet.
    pub fn handle(&mut self, bytes: &[u8], transport: Transport) -> Reply {
        let Ok(incoming) = Packet::decode(bytes) else {
            return Reply::default();
        };
        let request = incoming.packet;
        let (reply, disposition) = if !incoming.checksum_valid {
            (Reply::default(), Disposition::DroppedBadChecksum)
        } else {
            self.dispatch(&request, transport)
        };
        let enabled = self.enable_state.is_enabled(Instant::now());
        self.log.record(&Entry::new(
            transport.name(),
            &request,
            disposition,
            enabled,
        ));
        reply
    }

    fn dispatch(&mut self, request: &Packet, transport: Transport) -> (Reply, Disposition) {
        if request.code == Code::CONNECT {
            return (self.connect(request), Disposition::Answered);
        }
        if !self.sessions.contains_key(&request.session_id) {
            return (Reply::default(), Disposition::DroppedUnknownSession);
        }
        if request.code == Code::ACK_OK {
            // A client acknowledging a realtime event: firmware never answers it.
            self.events.ack(request.session_id, request.reply_id);
            return (Reply::default(), Disposition::NoReply);
        }
        let session = self.sessions.get_mut(&request.session_id).expect("checked");
        if request.reply_id == session.last_reply_id {
            let cached = session.last_sent.clone().into_iter().collect();
            return (
                Reply {
                    packets: cached,
                    close: false,
                },
                Disposition::ResentCached,
            );
        }
        if request.reply_id < session.last_reply_id && session.last_reply_id != u16::MAX {
            return (Reply::default(), Disposition::DroppedStaleReplyId);
        }
        session.last_reply_id = request.reply_id;
        self.enable_state.touch(Instant::now());
        if self.config.faults.silence {
            return (Reply::default(), Disposition::Silenced);
        }
        let reply = if !session.authenticated && request.code != Code::AUTH {
            single(ack(Code::ACK_UNAUTH, request))
        } else {
            self.execute(request, transport)
        };
        if let Some(session) = self.sessions.get_mut(&request.session_id) {
            session.last_sent = reply.packets.last().cloned();
        }
        (reply, Disposition::Answered)
    }

    fn connect(&mut self, request: &Packet) -> Reply {
        let session_id = self.next_session_id;
        self.next_session_id = self.next_session_id.wrapping_add(1).max(1);
        let authenticated = self.config.comm_key.is_none();
        let code = if authenticated {
            Code::ACK_OK
        } else {
            Code::ACK_UNAUTH
        };
        let reply = Packet::new(code, session_id, request.reply_id, Vec::new());
        self.sessions.insert(
            session_id,
            Session {
                authenticated,
                last_reply_id: request.reply_id,
                last_sent: Some(reply.clone()),
                buffer: None,
                upload: None,
            },
        );
        single(reply)
    }

    fn execute(&mut self, request: &Packet, transport: Transport) -> Reply {
        let ok = || single(ack(Code::ACK_OK, request));
        let error = || single(ack(Code::ACK_ERROR, request));
        match request.code {
            Code::AUTH => {
                let accepted = self
                    .config
                    .comm_key
                    .is_none_or(|key| key.accepts(request.session_id, &request.data));
                let session = self.session(request);
                session.authenticated = accepted;
                single(ack(
                    if accepted {
                        Code::ACK_OK
                    } else {
                        Code::ACK_UNAUTH
                    },
                    request,
                ))
            }
            Code::EXIT => {
                self.sessions.remove(&request.session_id);
                self.events.end(request.session_id);
                if self.sessions.is_empty() {
                    self.enable_state.enable();
                }
                ok()
            }
            Code::ENABLE_DEVICE => {
                self.enable_state.enable();
                ok()
            }
            Code::DISABLE_DEVICE => {
                self.enable_state.disable(word(&request.data, 0));
                ok()
            }
            Code::GET_FREE_SIZES => {
                let skew = u32::from(self.config.faults.wrong_counts);
                single(with_data(request, self.store.sizes(skew).encode()))
            }
            Code::GET_TIME => single(with_data(
                request,
                to_zk(self.clock.now()).0.to_le_bytes().to_vec(),
            )),
            Code::SET_TIME => match request.data.get(..4) {
                Some(b) => {
                    let time = ZkTime(u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                    self.clock.set(from_zk(time));
                    ok()
                }
                None => error(),
            },
            Code::GET_VERSION => single(with_data(request, b"Ver 6.60 Apr 28 2015\0".to_vec())),
            Code::OPTIONS_RRQ => self.read_option(request),
            Code::OPTIONS_WRQ => {
                let text = String::from_utf8_lossy(&request.data);
                match text.trim_end_matches('\0').split_once('=') {
                    Some((key, value)) if !key.is_empty() => {
                        self.options.insert(key.to_owned(), value.to_owned());
                        ok()
                    }
                    _ => error(),
                }
            }
            Code::PREPARE_BUFFER => self.prepare_buffer(request),
            Code::READ_BUFFER => self.read_buffer(request, transport),
            Code::FREE_DATA => {
                let session = self.session(request);
                session.buffer = None;
                session.upload = None;
                ok()
            }
            // A client upload: the size, then chunks no larger than the receive buffer.
            Code::PREPARE_DATA => match word(&request.data, 0) {
                Some(len) if request.data.len() == 4 => {
                    self.session(request).upload = Some((len, Vec::new()));
                    ok()
                }
                _ => error(),
            },
            Code::DATA => {
                let session = self.session(request);
                match session.upload.as_mut() {
                    Some((len, bytes))
                        if request.data.len() <= UPLOAD_CHUNK
                            && bytes.len() + request.data.len() <= *len as usize =>
                    {
                        bytes.extend_from_slice(&request.data);
                        ok()
                    }
                    _ => error(),
                }
            }
            Code::TMP_WRITE => self.write_template(request),
            Code::USER_WRQ => match self.store.write_user(&request.data) {
                Ok(()) => ok(),
                Err(refusal) => {
                    let detail = u16::from(refusal == WriteRefusal::UserIdConflict);
                    single(Packet::new(
                        Code::ACK_ERROR,
                        detail,
                        request.reply_id,
                        Vec::new(),
                    ))
                }
            },
            Code::DELETE_USER => match request.data.get(..2) {
                Some(b) if self.store.delete_user(u16::from_le_bytes([b[0], b[1]])) => ok(),
                _ => error(),
            },
            Code::CLEAR_ATTLOG => {
                self.store.logs.clear();
                ok()
            }
            Code::CLEAR_DATA => {
                match request.data.first() {
                    Some(1) => self.store.logs.clear(),
                    Some(5) => self.store.users.clear(),
                    Some(_) => {}
                    None => {
                        self.store.logs.clear();
                        self.store.users.clear();
                    }
                }
                ok()
            }
            // Housekeeping commands that need no state here.
            Code::REFRESH_DATA
            | Code::REFRESH_OPTION
            | Code::START_VERIFY
            | Code::CANCEL_CAPTURE => ok(),
            Code::REG_EVENT => {
                self.events
                    .register(request.session_id, word(&request.data, 0).unwrap_or(0));
                ok()
            }
            Code::GET_PINWIDTH => single(with_data(request, vec![9])),
            _ => single(ack(Code::ACK_UNKNOWN, request)),
        }
    }

    /// `TMP_WRITE`: the whole uploaded buffer becomes the named finger of an existing uid.
    fn write_template(&mut self, request: &Packet) -> Reply {
        let head = TemplateHead::decode(&request.data);
        let upload = self.session(request).upload.take();
        let stored = match (head, upload) {
            (Some(head), Some((len, bytes)))
                if bytes.len() == len as usize && bytes.len() == usize::from(head.size) =>
            {
                self.store.write_template(FingerTemplate {
                    uid: head.uid,
                    finger: head.finger,
                    valid: head.valid,
                    template: bytes,
                })
            }
            _ => false,
        };
        let code = if stored {
            Code::ACK_OK
        } else {
            Code::ACK_ERROR
        };
        single(ack(code, request))
    }

    fn read_option(&mut self, request: &Packet) -> Reply {
        let key = request.data.split(|&b| b == 0).next().unwrap_or_default();
        let key = String::from_utf8_lossy(key);
        match self.options.get(key.as_ref()) {
            Some(value) if !key.is_empty() => {
                single(with_data(request, format!("{key}={value}\0").into_bytes()))
            }
            _ => single(ack(Code::ACK_ERROR, request)),
        }
    }

    fn prepare_buffer(&mut self, request: &Packet) -> Reply {
        let inner = request
            .data
            .get(1..3)
            .map(|b| Code(u16::from_le_bytes([b[0], b[1]])));
        let dataset = match inner {
            Some(Code::USERTEMP_RRQ) => self.store.user_dataset(),
            Some(Code::ATTLOG_RRQ) => {
                self.store.grow_log();
                self.store.log_dataset()
            }
            // FCT_FINGERTMP (2): the fingerprint templates.
            Some(Code::DB_RRQ) if word(&request.data, 3) == Some(2) => {
                self.store.template_dataset()
            }
            // Other tables, operation log: this device holds none.
            Some(Code::DB_RRQ) | Some(Code::OPLOG_RRQ) => crate::zk::dataset::dataset_of(&[]),
            _ => return single(ack(Code::ACK_ERROR, request)),
        };
        let reply = prepare_buffer_reply(
            &dataset,
            self.config.inline_threshold,
            request.session_id,
            request.reply_id,
        );
        self.session(request).buffer = Some(dataset);
        single(reply)
    }

    fn read_buffer(&mut self, request: &Packet, transport: Transport) -> Reply {
        let fragment = match transport {
            Transport::Tcp => self.config.tcp_fragment,
            Transport::Udp | Transport::Serial => self.config.datagram_fragment,
        };
        let (Some(offset), Some(len)) = (word(&request.data, 0), word(&request.data, 4)) else {
            return single(ack(Code::ACK_ERROR, request));
        };
        let faults = self.config.faults;
        let Some(buffer) = self.session(request).buffer.as_ref() else {
            return single(ack(Code::ACK_ERROR, request));
        };
        let mut packets = read_buffer_replies(
            buffer,
            offset,
            len,
            fragment,
            request.session_id,
            request.reply_id,
        );
        let multi = packets.len() > 1;
        if multi && faults.short_chunk {
            let last_data = packets.len() - 2;
            packets[last_data].data.pop();
        }
        let close = multi && faults.drop_mid_transfer;
        if close {
            packets.truncate(packets.len() / 2);
        }
        Reply { packets, close }
    }

    fn session(&mut self, request: &Packet) -> &mut Session {
        self.sessions
            .get_mut(&request.session_id)
            .expect("dispatch checked the session")
    }
}

fn word(data: &[u8], at: usize) -> Option<u32> {
    data.get(at..at + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn ack(code: Code, request: &Packet) -> Packet {
    Packet::new(code, request.session_id, request.reply_id, Vec::new())
}

fn with_data(request: &Packet, data: Vec<u8>) -> Packet {
    Packet::new(Code::ACK_OK, request.session_id, request.reply_id, data)
}

fn single(packet: Packet) -> Reply {
    Reply {
        packets: vec![packet],
        close: false,
    }
}
