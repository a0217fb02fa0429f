//! One WebSocket connection of the emulated terminal, and the state that outlives it.
//!
//! A single task owns the socket and multiplexes: frames from the server, the punch timer
//! (with resend when a `sendlog` reply does not come), keypad enrolments, operator deletions
//! and the stop signal. The device model in [`super::device`] decides every answer.

use std::collections::VecDeque;
use std::time::Duration;

use crate::aiface::{parse_server_message, ServerMessage, ServerReply};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{sleep, sleep_until, Instant};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::device::{Answer, Device};
use super::frame_log::{CommandLog, Frame};
use super::scenario::Scenario;
use crate::sim::command_log::LogLine;

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

/// One connection and what the terminal knows about it.
struct Link {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    session: u64,
    /// The server accepted `reg`; punches and pushes may flow.
    registered: bool,
    /// The server did not ask for `nosenduser:true`.
    push_users: bool,
    /// When to resend the `sendlog` in flight, if one is.
    resend_at: Option<Instant>,
}

impl Link {
    async fn send(&mut self, text: String) -> anyhow::Result<()> {
        self.ws.send(Message::text(text)).await?;
        Ok(())
    }
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
        let connect = tokio_tungstenite::connect_async_with_config(url, Some(config), true);
        let (ws, _) = tokio::select! {
            connected = connect => connected?,
            _ = stop.changed() => return Ok(SessionEnd::Stopped),
        };
        self.stats.sessions += 1;
        let mut link = Link {
            ws,
            session: self.stats.sessions,
            registered: false,
            push_users: true,
            resend_at: None,
        };
        link.send(self.device.registration()).await?;
        loop {
            let (punch_due, enrol_due, delete_due) = self.timers(&link);
            // Biased: a frame already received (say, the `sendlog` reply) is handled before a
            // timer that fell due meanwhile (say, that punch's resend).
            tokio::select! {
                biased;
                _ = stop.changed() => {
                    let _ = link.ws.close(None).await;
                    return Ok(SessionEnd::Stopped);
                }
                frame = link.ws.next() => {
                    let text = match frame {
                        None | Some(Ok(Message::Close(_))) => return Ok(SessionEnd::PeerClosed),
                        Some(Err(error)) => return Err(error.into()),
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Binary(bytes))) => {
                            let what = format!("<{} binary bytes>", bytes.len());
                            self.unparsed(link.session, Value::from(what));
                            continue;
                        }
                        Some(Ok(_)) => continue, // ping/pong: answered by tungstenite
                    };
                    if let Some(end) = self.on_frame(&mut link, text.as_str(), stop).await? {
                        return Ok(end);
                    }
                }
                _ = sleep_until(punch_due) => {
                    if let Some(frame) = self.next_punch_frame(&mut link.resend_at) {
                        link.send(frame).await?;
                    }
                }
                _ = sleep_until(enrol_due) => self.enrol(&mut link).await?,
                _ = sleep_until(delete_due) => self.delete_users(),
            }
        }
    }

    /// When the punch, enrolment and deletion timers fire next (far away when idle).
    fn timers(&self, link: &Link) -> (Instant, Instant, Instant) {
        let far = Instant::now() + Duration::from_secs(3600);
        let more_punches = self.stats.punches_made < self.scenario.punches;
        let punch = match (link.registered, link.resend_at, self.punches.front()) {
            (false, _, _) => far,
            (true, Some(at), _) => at,
            (true, None, Some(_)) => Instant::now(),
            (true, None, None) if more_punches => self.next_punch_at.unwrap_or_else(Instant::now),
            (true, None, None) => far,
        };
        let enrol = if link.registered && !self.enrolled && self.scenario.enrol > 0 {
            self.started + Duration::from_millis(self.scenario.enrol_after_ms)
        } else {
            far
        };
        let delete = match (self.deleted, self.scenario.delete_after_ms) {
            (false, Some(ms)) => self.started + Duration::from_millis(ms),
            _ => far,
        };
        (punch, enrol, delete)
    }

    /// Handles one text frame from the server; `Some` ends the session.
    async fn on_frame(
        &mut self,
        link: &mut Link,
        text: &str,
        stop: &mut watch::Receiver<bool>,
    ) -> anyhow::Result<Option<SessionEnd>> {
        match parse_server_message(text) {
            Err(error) => {
                self.unparsed(link.session, Value::from(format!("{error}: {text}")));
                Ok(None)
            }
            Ok(ServerMessage::Reply(reply)) => {
                let message = serde_json::from_str(text).unwrap_or_default();
                self.log.record(&Frame::reply(link.session, message));
                Ok(self.on_server_reply(link, reply))
            }
            Ok(ServerMessage::Command(received)) => {
                self.stats.commands += 1;
                let line = Frame::command(link.session, &received);
                if line.is_destructive() {
                    self.stats.destructive_commands += 1;
                    eprintln!("device-sim aiface: DESTRUCTIVE command received: {text}");
                }
                self.log.record(&line);
                if self.scenario.delete_after_commands == Some(self.stats.commands) {
                    self.delete_users();
                }
                let answer = self.device.answer(&received);
                if self.scenario.latency_ms > 0 {
                    sleep(Duration::from_millis(self.scenario.latency_ms)).await;
                }
                self.carry_out(link, answer, stop).await
            }
        }
    }

    /// Sends the answer, or misbehaves as the answer says; `Some` ends the session.
    async fn carry_out(
        &mut self,
        link: &mut Link,
        answer: Answer,
        stop: &mut watch::Receiver<bool>,
    ) -> anyhow::Result<Option<SessionEnd>> {
        match answer {
            Answer::Reply(reply) => link.send(reply).await?,
            Answer::Garbage => link.send(GARBAGE_FRAME.to_owned()).await?,
            Answer::Reboot => return Ok(Some(SessionEnd::Dropped("reboot"))),
            Answer::Drop => return Ok(Some(SessionEnd::Dropped("drop fault"))),
            Answer::Silence => {
                tokio::select! {
                    _ = sleep(Duration::from_millis(self.scenario.silence_ms)) => {}
                    _ = stop.changed() => return Ok(Some(SessionEnd::Stopped)),
                }
                return Ok(Some(SessionEnd::Dropped("end of silence")));
            }
        }
        Ok(None)
    }

    /// Takes the server's answer to one of the terminal's reports; `Some` ends the session.
    fn on_server_reply(&mut self, link: &mut Link, reply: ServerReply) -> Option<SessionEnd> {
        match reply {
            ServerReply::Reg(reg) if !reg.result => {
                return Some(SessionEnd::Rejected(reg.reason.unwrap_or_default()));
            }
            ServerReply::Reg(reg) => {
                link.registered = true;
                link.push_users = reg.nosenduser != Some(true);
                if let Some(cloudtime) = reg.cloudtime {
                    self.device.clock.set_from_text(&cloudtime);
                }
            }
            ServerReply::SendLog(ack) => {
                // The vendor's demo syncs the clock from this reply too.
                if let Some(cloudtime) = &ack.cloudtime {
                    self.device.clock.set_from_text(cloudtime);
                }
                self.on_sendlog_reply(ack.result, ack.logindex, &mut link.resend_at)
            }
            ServerReply::SendUser(_) => self.stats.senduser_acks += 1,
        }
        None
    }

    /// Enrols the configured users on the "keypad" and pushes them, unless the server said
    /// `nosenduser:true` (then the terminal keeps them to itself, as real firmware does).
    async fn enrol(&mut self, link: &mut Link) -> anyhow::Result<()> {
        self.enrolled = true;
        self.stats.enrolled += self.scenario.enrol;
        for _ in 0..self.scenario.enrol {
            for frame in self.device.enrol() {
                if link.push_users {
                    self.stats.senduser_frames += 1;
                    link.send(frame).await?;
                }
            }
        }
        Ok(())
    }

    fn unparsed(&mut self, session: u64, message: Value) {
        self.stats.unparsed_frames += 1;
        self.log.record(&Frame::unparsed(session, message));
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
        let echoed = logindex.as_ref().and_then(crate::aiface::lenient::as_u64);
        if result && echoed == Some(head.logindex) {
            self.device.punch_delivered(head.logindex);
            self.punches.pop_front();
            self.stats.punches_acked += 1;
            *resend_at = None;
        }
    }
}
