//! The AiFace line of the command log: one per frame the emulated terminal receives.
//!
//! AiFace's rule for "destructive" is the codec's ([`ReceivedCommand::is_destructive`]):
//! any command not known to be harmless counts, unknown names included, and so does a frame
//! that is not a command or reply at all.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;

use crate::aiface::ReceivedCommand;
use crate::sim::command_log::{self, LogLine, Reopen};

/// The AI06 emulator's command log.
pub type CommandLog = command_log::CommandLog<Frame>;

/// How a received frame was classified.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FrameKind {
    /// A command (`cmd`).
    Command,
    /// A reply to one of the terminal's reports (`ret`).
    Reply,
    /// Not a frame the protocol allows (not JSON, binary, no `cmd`/`ret`).
    Unparsed,
}

/// One received frame as the log keeps it: when, on which connection, what it was, and the
/// whole frame.
#[derive(Debug, Serialize)]
pub struct Frame {
    at_ms: u64,
    session: u64,
    kind: FrameKind,
    cmd: Option<String>,
    #[serde(skip)]
    destructive: bool,
    message: Value,
}

impl Frame {
    /// A command received on connection `session`, judged by the AiFace rule.
    pub fn command(session: u64, received: &ReceivedCommand) -> Self {
        let mut frame = Frame::new(
            session,
            FrameKind::Command,
            Value::Object(received.frame.clone()),
        );
        frame.cmd = Some(received.name.as_str().to_owned());
        frame.destructive = received.is_destructive();
        frame
    }

    /// A reply to one of the terminal's reports (`message` is the whole frame).
    pub fn reply(session: u64, message: Value) -> Self {
        Frame::new(session, FrameKind::Reply, message)
    }

    /// A frame the protocol does not allow (`message` says what it was). It counts as
    /// destructive: the allow-list passes only what is known to be harmless, and a frame the
    /// terminal cannot classify (no `cmd` or `ret`, not JSON, binary) is not known to be, since
    /// firmware may parse more loosely than this emulator.
    pub fn unparsed(session: u64, message: Value) -> Self {
        let mut frame = Frame::new(session, FrameKind::Unparsed, message);
        frame.destructive = true;
        frame
    }

    fn new(session: u64, kind: FrameKind, message: Value) -> Self {
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Frame {
            at_ms,
            session,
            kind,
            cmd: None,
            destructive: false,
            message,
        }
    }
}

impl LogLine for Frame {
    const EMULATOR: &'static str = "device-sim aiface";
    /// Each run starts a fresh log: a test reads the whole file as one terminal's history.
    const REOPEN: Reopen = Reopen::Truncate;

    fn is_destructive(&self) -> bool {
        self.destructive
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aiface::{parse_server_message, ServerMessage};

    fn received(text: &str) -> ReceivedCommand {
        match parse_server_message(text).unwrap() {
            ServerMessage::Command(command) => command,
            other => panic!("not a command: {other:?}"),
        }
    }

    #[test]
    fn a_line_keeps_the_format_the_checks_read() {
        let line = Frame::command(3, &received(r#"{"cmd":"getuserlist","stn":true}"#));
        let json = serde_json::to_value(&line).unwrap();
        assert_eq!(json["session"], 3);
        assert_eq!(json["kind"], "command");
        assert_eq!(json["cmd"], "getuserlist");
        assert_eq!(json["message"]["stn"], true);
        assert!(json["at_ms"].as_u64().unwrap() > 0);
        assert!(!line.is_destructive());
        let reply = serde_json::to_value(Frame::reply(3, Value::Null)).unwrap();
        assert_eq!(reply["kind"], "reply");
        assert_eq!(reply["cmd"], Value::Null);
    }

    #[test]
    fn unknown_wiping_and_unparsed_frames_are_destructive() {
        assert!(Frame::command(1, &received(r#"{"cmd":"cleanuser"}"#)).is_destructive());
        assert!(Frame::command(1, &received(r#"{"cmd":"nosuchcommand"}"#)).is_destructive());
        // Not a command or reply at all: not known to be harmless.
        assert!(Frame::unparsed(1, Value::from("x")).is_destructive());
    }
}
