//! The only text the agent puts on an AI06 connection.
//!
//! A driver's WebSocket sink accepts any text, so the driver's session takes an
//! [`OutgoingFrame`] instead, and the only ways to get one are a [`Command`] (which has no
//! destructive variant) or a [`ServerReply`] (the answers to `reg`, `sendlog`, `senduser`).
//! No constructor takes a string, so agent code cannot send a hand-written frame such as
//! `{"cmd":"deleteuser",…}` through a session (the compile-fail test in
//! `test-support/tests/no_raw_send.rs` holds that).

use super::command::Command;
use super::server_reply::ServerReply;

/// One text frame for the device, serialised from a safe type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingFrame(String);

impl OutgoingFrame {
    /// The exact text to send.
    pub fn as_text(&self) -> &str {
        &self.0
    }

    /// The text, moved out for the WebSocket message.
    pub fn into_text(self) -> String {
        self.0
    }
}

impl From<&Command> for OutgoingFrame {
    fn from(command: &Command) -> OutgoingFrame {
        OutgoingFrame(command.to_json())
    }
}

impl From<&ServerReply> for OutgoingFrame {
    fn from(reply: &ServerReply) -> OutgoingFrame {
        OutgoingFrame(reply.to_json())
    }
}
