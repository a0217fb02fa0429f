//! One WebSocket connection of the emulated terminal, and the state that outlives it.
//!
//! A single task owns the socket and multiplexes: frames from the server, the punch timer
//! (with resend when a `sendlog` reply does not come), keypad enrolments, operator deletions
//! and the stop signal. The device model in [`super::device`] decides every answer.

use std::collections::VecDeque;
use std::time::Duration;

use device_protocols::aiface::{parse_server_message, ServerMessage, ServerReply};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::{sleep, sleep_until, Instant};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use super::command_log::{CommandLog, FrameKind};
use super::device::{Answer, Device};
use super::scenario::Scenario;

/// Largest frame and message accepted: the vendor demo allows ~2 MB; photos can be large.
const MAX_FRAME_BYTES: usize = 8 << 20;

/// A frame that is not JSON, sent by the `garbage` fault.
const GARBAGE_FRAME: &str = "\u{1}\u{2}garbage{not json";

/// Why a connection ended.
#[derive(Debug)]
pub enum SessionEnd {
    /// The server closed the link.
    PeerClosed,
    /// The terminal dropped the link (fault, reboot, end of silence).
    Dropped(&'static str),
    /// The server refused the registration.
    Rejected(String),
    /// The emulator was told to stop.
    Stopped,
}

impl std::fmt::Display for SessionEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionEnd::PeerClosed => f.write_str("the server closed the link"),
            SessionEnd::Dropped(why) => write!(f, "the terminal dropped the link ({why})"),
            SessionEnd::Rejected(reason) => {
                write!(f, "the server refused the registration: {reason}")
            }
            SessionEnd::Stopped => f.write_str("stopped"),
        }
    }
}

/// Counters reported in the summary.
#[derive(Debug, Default, serde::Serialize)]
pub struct Stats {
    /// Connections made.
    pub sessions: u64,
    /// Commands received.
    pub commands: u64,
    /// Destructive (or unknown) commands received.
    pub destructive_commands: u64,
    /// Frames that were not valid protocol frames.
    pub unparsed_frames: u64,
    /// Punches recorded.
    pub punches_made: u64,
    /// `sendlog` frames sent, first sends and resends.
    pub sendlog_frames: u64,
    /// `sendlog` resends (reply missing or link lost).
    pub sendlog_resends: u64,
    /// Punches acknowledged.
    pub punches_acked: u64,
    /// Users enrolled on the keypad.
    pub enrolled: u64,
    /// `senduser` frames pushed.
    pub senduser_frames: u64,
    /// `senduser` replies received.
    pub senduser_acks: u64,
    /// Users deleted by the emulated operator.
    pub deleted_users: Vec<u64>,
}

/// A punch waiting for its reply.
struct PendingPunch {
    logindex: u64,
    frame: String,
    sent: bool,
}

/// Everything that survives a reconnect.
pub struct Simulator {
    /// The device model.
    pub device: Device,
    /// Counters.
    pub stats: Stats,
    scenario: Scenario,
    log: CommandLog,
    started: Instant,
    punches: VecDeque<PendingPunch>,
    next_punch_at: Option<Instant>,
    enrolled: bool,
    deleted: bool,
}

impl Simulator {
    /// A terminal about to connect for the first time.
    pub fn new(scenario: Scenario, log: CommandLog) -> Self {
        Simulator {
            device: Device::new(scenario.clone()),
            stats: Stats::default(),
            scenario,
            log,
            started: Instant::now(),
            punches: VecDeque::new(),
            next_punch_at: None,
            enrolled: false,
            deleted: false,
        }
    }

    /// Connects to `url` and runs one session until it ends.
    pub async fn run_session(
        &mut self,
        url: &str,
        stop: &mut watch::Receiver<bool>,
    ) -> anyhow::Result<SessionEnd> {
        let config = WebSocketConfig::default()
            .max_frame_size(Some(MAX_FRAME_BYTES))
            .max_message_size(Some(MAX_FRAME_BYTES));
        let (mut ws, _) = tokio::select! {
            connected = tokio_tungstenite::connect_async_with_config(url, Some(config), true) => connected?,
            _ = stop.changed() => return Ok(SessionEnd::Stopped),
        };
        self.stats.sessions += 1;
        let session = self.stats.sessions;
        ws.send(Message::text(self.device.registration())).await?;
        let mut registered = false;
        let mut push_users = true;
        let mut resend_at: Option<Instant> = None;
        let far = || Instant::now() + Duration::from_secs(3600);
        loop {
            let punch_due = match (registered, resend_at, self.punches.front()) {
                (false, _, _) => far(),
                (true, Some(at), _) => at,
                (true, None, Some(_)) => Instant::now(),
                (true, None, None) if self.stats.punches_made < self.scenario.punches => {
                    self.next_punch_at.unwrap_or_else(Instant::now)
                }
                (true, None, None) => far(),
            };
            let enrol_due = if registered && !self.enrolled && self.scenario.enrol > 0 {
                self.started + Duration::from_millis(self.scenario.enrol_after_ms)
            } else {
                far()
            };
            let delete_due = match (self.deleted, self.scenario.delete_after_ms) {
                (false, Some(ms)) => self.started + Duration::from_millis(ms),
                _ => far(),
            };
            tokio::select! {
                _ = stop.changed() => {
                    let _ = ws.close(None).await;
                    return Ok(SessionEnd::Stopped);
                }
                _ = sleep_until(punch_due) => {
                    if let Some(frame) = self.next_punch_frame(&mut resend_at) {
                        ws.send(Message::text(frame)).await?;
                    }
                }
                _ = sleep_until(enrol_due) => {
                    self.enrolled = true;
                    self.stats.enrolled += self.scenario.enrol;
                    for _ in 0..self.scenario.enrol {
                        for frame in self.device.enrol() {
                            // A terminal told `nosenduser:true` keeps keypad enrolments to itself.
                            if push_users {
                                self.stats.senduser_frames += 1;
                                ws.send(Message::text(frame)).await?;
                            }
                        }
                    }
                }
                _ = sleep_until(delete_due) => self.delete_users(),
                frame = ws.next() => {
                    let text = match frame {
                        None | Some(Ok(Message::Close(_))) => return Ok(SessionEnd::PeerClosed),
                        Some(Err(error)) => return Err(error.into()),
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Binary(bytes))) => {
                            self.unparsed(session, Value::from(format!("<{} binary bytes>", bytes.len())));
                            continue;
                        }
                        Some(Ok(_)) => continue, // ping/pong: answered by tungstenite
                    };
                    match parse_server_message(&text) {
                        Err(error) => self.unparsed(session, Value::from(format!("{error}: {}", text.as_str()))),
                        Ok(ServerMessage::Reply(reply)) => {
                            let message = serde_json::from_str(&text).unwrap_or_default();
                            self.log.record(session, FrameKind::Reply, None, false, message);
                            match reply {
                                ServerReply::Reg(reg) if !reg.result => {
                                    return Ok(SessionEnd::Rejected(reg.reason.unwrap_or_default()));
                                }
                                ServerReply::Reg(reg) => {
                                    registered = true;
                                    push_users = reg.nosenduser != Some(true);
                                    if let Some(cloudtime) = reg.cloudtime {
                                        self.device.clock.set(&cloudtime);
                                    }
                                }
                                ServerReply::SendLog(ack) => self.on_sendlog_reply(ack.result, ack.logindex, &mut resend_at),
                                ServerReply::SendUser(_) => self.stats.senduser_acks += 1,
                            }
                        }
                        Ok(ServerMessage::Command(received)) => {
                            self.stats.commands += 1;
                            if received.is_destructive() {
                                self.stats.destructive_commands += 1;
                                eprintln!("device-sim aiface: DESTRUCTIVE command received: {}", text.as_str());
                            }
                            let message = Value::Object(received.frame.clone());
                            self.log.record(session, FrameKind::Command, Some(received.name.as_str()), received.is_destructive(), message);
                            if self.scenario.delete_after_commands == Some(self.stats.commands) {
                                self.delete_users();
                            }
                            let answer = self.device.answer(&received);
                            if self.scenario.latency_ms > 0 {
                                sleep(Duration::from_millis(self.scenario.latency_ms)).await;
                            }
                            match answer {
                                Answer::Reply(reply) => ws.send(Message::text(reply)).await?,
                                Answer::Reboot => return Ok(SessionEnd::Dropped("reboot")),
                                Answer::Drop => return Ok(SessionEnd::Dropped("drop fault")),
                                Answer::Garbage => ws.send(Message::text(GARBAGE_FRAME)).await?,
                                Answer::Silence => {
                                    tokio::select! {
                                        _ = sleep(Duration::from_millis(self.scenario.silence_ms)) => {}
                                        _ = stop.changed() => return Ok(SessionEnd::Stopped),
                                    }
                                    return Ok(SessionEnd::Dropped("end of silence"));
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    fn unparsed(&mut self, session: u64, message: Value) {
        self.stats.unparsed_frames += 1;
        self.log
            .record(session, FrameKind::Unparsed, None, false, message);
    }

    fn delete_users(&mut self) {
        if !self.deleted {
            self.deleted = true;
            let deleted = self.device.delete_users(&self.scenario.delete_users);
            eprintln!("device-sim aiface: operator deleted users {deleted:?} on the device");
            self.stats.deleted_users.extend(deleted);
        }
    }

    /// The `sendlog` frame to send now, if any: a resend of the unanswered one, or the next
    /// queued punch, making a new punch when the rate says one is due.
    fn next_punch_frame(&mut self, resend_at: &mut Option<Instant>) -> Option<String> {
        if self.punches.is_empty() && self.stats.punches_made < self.scenario.punches {
            let (logindex, frame) = self.device.punch();
            self.punches.push_back(PendingPunch {
                logindex,
                frame,
                sent: false,
            });
            self.stats.punches_made += 1;
            let interval = Duration::from_secs_f64(1.0 / self.scenario.punch_rate.max(0.001));
            self.next_punch_at = Some(Instant::now() + interval);
        }
        let punch = self.punches.front_mut()?;
        if punch.sent {
            self.stats.sendlog_resends += 1;
        }
        punch.sent = true;
        self.stats.sendlog_frames += 1;
        *resend_at = Some(Instant::now() + Duration::from_millis(self.scenario.punch_resend_ms));
        Some(punch.frame.clone())
    }

    fn on_sendlog_reply(
        &mut self,
        result: bool,
        logindex: Option<Value>,
        resend_at: &mut Option<Instant>,
    ) {
        let Some(head) = self.punches.front() else {
            return;
        };
        let echoed = logindex
            .as_ref()
            .and_then(device_protocols::aiface::lenient::as_u64);
        if result && echoed == Some(head.logindex) {
            self.device.punch_delivered(head.logindex);
            self.punches.pop_front();
            self.stats.punches_acked += 1;
            *resend_at = None;
        }
    }
}
