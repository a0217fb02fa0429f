//! Decoding a server→device frame: what a terminal (or the emulator) receives.
//!
//! The agent never needs this; it exists so the emulator shares the agent's exact types and
//! can classify *every* frame it gets, including commands the agent's [`Command`] type cannot
//! express (which is precisely what must be detected).

use serde_json::{Map, Value};

use super::command::Command;
use super::command_name::CommandName;
use super::device_message::parse_object;
use super::error::ParseError;
use super::lenient;
use super::server_reply::ServerReply;

/// A frame a device receives from the server.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMessage {
    /// A command (`cmd`).
    Command(ReceivedCommand),
    /// A reply to one of the device's reports (`ret`).
    Reply(ServerReply),
}

/// A received command: always its name and raw fields, and the typed [`Command`] when it is
/// one the agent is allowed to send and its fields decode.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedCommand {
    /// The `cmd` name, recognised even for commands the agent may not send.
    pub name: CommandName,
    /// The decoded command, or why it did not decode (unknown to [`Command`] or malformed).
    pub command: Result<Command, String>,
    /// The whole normalised frame, for logging.
    pub frame: Map<String, Value>,
}

impl ReceivedCommand {
    /// Whether this command deletes or demotes data on the device (or is unknown).
    pub fn is_destructive(&self) -> bool {
        self.name.is_destructive()
    }
}

/// Decodes one text frame from the server, leniently.
pub fn parse_server_message(text: &str) -> Result<ServerMessage, ParseError> {
    let frame = parse_object(text)?;
    if let Some(cmd) = frame.get("cmd") {
        let name = CommandName::from_wire(&lenient::as_text(cmd).unwrap_or_default());
        let command =
            serde_json::from_value(Value::Object(frame.clone())).map_err(|e| e.to_string());
        return Ok(ServerMessage::Command(ReceivedCommand {
            name,
            command,
            frame,
        }));
    }
    if let Some(ret) = frame.get("ret") {
        let kind = lenient::as_text(ret).unwrap_or_default();
        let reply = serde_json::from_value(Value::Object(frame))
            .map_err(|source| ParseError::Field { kind, source })?;
        return Ok(ServerMessage::Reply(reply));
    }
    Err(ParseError::untagged(&frame))
}
