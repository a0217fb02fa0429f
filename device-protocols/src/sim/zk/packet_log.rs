//! The ZK line of the command log: one per packet the emulated terminal receives.
//!
//! Tests read the log to prove that no destructive command ever reached the device, and to see
//! exactly what an independent client sent (including what firmware would silently drop). ZK's
//! rule for "destructive" is the codec's allow-list ([`DestructiveCommand::recognise`]): any
//! code not known to be read-only or an allowed add/update.

use serde::Serialize;

use crate::sim::command_log::{self, LogLine, Reopen};
use crate::zk::{Code, DestructiveCommand, Packet};

/// The ZK emulator's command log.
pub type CommandLog = command_log::CommandLog<Entry>;

/// What the emulated firmware did with a packet.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Disposition {
    /// Executed and answered.
    Answered,
    /// Executed; firmware sends no reply (a client `ACK_OK`).
    NoReply,
    /// Same reply id as the previous request: the cached reply was resent, nothing executed.
    ResentCached,
    /// Dropped: bad checksum.
    DroppedBadChecksum,
    /// Dropped: not `CONNECT` and the session id is unknown.
    DroppedUnknownSession,
    /// Dropped: reply id lower than the last one.
    DroppedStaleReplyId,
    /// Dropped: serial frame for another RS485 address.
    DroppedOtherAddress,
    /// Swallowed by the silence fault.
    Silenced,
}

/// One line of the log; the shared log adds the `destructive` flag the checks read.
#[derive(Debug, Serialize)]
pub struct Entry {
    /// Front end the packet came through (`tcp`, `udp`, `serial`).
    pub transport: &'static str,
    /// Command code as received.
    pub code: u16,
    /// The code's name, when the crate knows it.
    pub name: Option<&'static str>,
    /// Session id field as received.
    pub session_id: u16,
    /// Reply id field as received.
    pub reply_id: u16,
    /// Bytes of command data.
    pub data_len: usize,
    /// For `PREPARE_BUFFER`, the inner read it prepares (`ATTLOG_RRQ`, `USERTEMP_RRQ`,
    /// `DB_RRQ`…), so a log shows which tables a client downloaded.
    pub inner: Option<&'static str>,
    /// Which destructive command it was, if the code is not on the allow-list.
    pub destructive_kind: Option<String>,
    /// What the firmware did with it.
    pub disposition: Disposition,
    /// Whether the device was enabled after handling it (never left "Working…").
    pub device_enabled: bool,
}

impl Entry {
    /// Describes `packet` as received and what became of it.
    pub fn new(
        transport: &'static str,
        packet: &Packet,
        disposition: Disposition,
        device_enabled: bool,
    ) -> Entry {
        let destructive = DestructiveCommand::recognise(packet.code);
        Entry {
            transport,
            code: packet.code.0,
            name: packet.code.name(),
            session_id: packet.session_id,
            reply_id: packet.reply_id,
            data_len: packet.data.len(),
            inner: (packet.code == Code::PREPARE_BUFFER)
                .then(|| packet.data.get(1..3))
                .flatten()
                .and_then(|b| Code(u16::from_le_bytes([b[0], b[1]])).name()),
            destructive_kind: destructive.map(|d| format!("{d:?}")),
            disposition,
            device_enabled,
        }
    }
}

impl LogLine for Entry {
    const EMULATOR: &'static str = "device-sim zk";
    /// Lines an earlier run left at the same path are kept; new ones follow them.
    const REOPEN: Reopen = Reopen::Append;

    fn is_destructive(&self) -> bool {
        self.destructive_kind.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zk::Code;

    fn entry(code: Code) -> Entry {
        let packet = Packet::new(code, 7, 3, vec![1, 2]);
        Entry::new("tcp", &packet, Disposition::Answered, true)
    }

    #[test]
    fn codes_off_the_allow_list_are_destructive() {
        assert!(entry(Code::CLEAR_DATA).is_destructive());
        assert!(entry(Code::DELETE_USER).is_destructive());
        assert!(entry(Code(20)).is_destructive(), "CMD_CLEAR_ADMIN, unnamed");
        assert!(entry(Code::OPTIONS_WRQ).is_destructive());
        assert!(!entry(Code::GET_FREE_SIZES).is_destructive());
    }

    #[test]
    fn a_line_keeps_the_fields_the_tests_read() {
        let json = serde_json::to_value(entry(Code::CLEAR_ATTLOG)).unwrap();
        assert_eq!(json["transport"], "tcp");
        assert_eq!(json["session_id"], 7);
        assert_eq!(json["reply_id"], 3);
        assert_eq!(json["data_len"], 2);
        assert_eq!(json["disposition"], "answered");
        assert_eq!(json["device_enabled"], true);
        assert!(json["destructive_kind"].is_string());
    }
}
