//! Command and reply codes of the ZK protocol.
//!
//! Commands and replies share one 16-bit code space in the header, so a single newtype carries
//! both; the named constants document each code's role. The agent never builds packets from raw
//! codes: it goes through [`crate::zk::Request`], which has no destructive variants. The
//! emulator, which must accept anything a client sends, parses raw codes and uses
//! [`DestructiveCommand::recognise`] (an allow-list) to flag every code not known to be safe in
//! its command log.

use std::fmt;

/// A command or reply code as carried in the first header field.
///
/// Outside this crate a code can only be one of the named constants or one decoded from the
/// wire: the field is private, so agent code cannot write `Code(18)` (a user delete) or any
/// other raw code. The `raw` feature (this crate's own tests and the fuzz targets, never the
/// agent) opens it.
#[cfg(not(feature = "raw"))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Code(pub(crate) u16);

/// A command or reply code as carried in the first header field (field public: feature `raw`,
/// for tests and fuzz targets that must build arbitrary packets).
#[cfg(feature = "raw")]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Code(pub u16);

impl Code {
    /// The code's number, for logs and reports.
    pub const fn value(self) -> u16 {
        self.0
    }

    /// Opens a session (session id 0 in the request).
    pub const CONNECT: Code = Code(1000);
    /// Frees the session; the last freed session re-enables the device.
    pub const EXIT: Code = Code(1001);
    /// Resumes normal operation after [`Code::DISABLE_DEVICE`].
    pub const ENABLE_DEVICE: Code = Code(1002);
    /// Locks keypad and sensor; optional u32 data is an auto re-enable timeout in seconds.
    pub const DISABLE_DEVICE: Code = Code(1003);
    /// Applies data changes after a user write.
    pub const REFRESH_DATA: Code = Code(1013);
    /// Applies option changes after an option write.
    pub const REFRESH_OPTION: Code = Code(1014);
    /// Firmware version string.
    pub const GET_VERSION: Code = Code(1100);
    /// Comm-key answer to an `ACK_UNAUTH` connect reply.
    pub const AUTH: Code = Code(1102);
    /// Bulk transfer size announcement (`[u32 len][u32 fragment size]` from the device).
    pub const PREPARE_DATA: Code = Code(1500);
    /// Bulk data fragment or inline dataset.
    pub const DATA: Code = Code(1501);
    /// Releases the session's bulk buffer.
    pub const FREE_DATA: Code = Code(1502);
    /// Starts a buffered read (`CMD_DATA_WRRQ`, pyzk's "prepare buffer").
    pub const PREPARE_BUFFER: Code = Code(1503);
    /// Reads a slice of the prepared buffer (`CMD_DATA_RDY`, pyzk's "read buffer").
    pub const READ_BUFFER: Code = Code(1504);
    /// Reads a data block; inner command of a buffered template read.
    pub const DB_RRQ: Code = Code(7);
    /// Writes one user record.
    pub const USER_WRQ: Code = Code(8);
    /// Reads the user table; inner command of a buffered user read.
    pub const USERTEMP_RRQ: Code = Code(9);
    /// Stores the session's upload buffer as one fingerprint template (`CMD_TMP_WRITE`): data
    /// is the 6-byte head `[u16 uid][u8 finger][u8 valid][u16 size]`.
    pub const TMP_WRITE: Code = Code(87);
    /// Reads an option `"Name\0"`.
    pub const OPTIONS_RRQ: Code = Code(11);
    /// Writes an option `"Name=Value\0"`.
    pub const OPTIONS_WRQ: Code = Code(12);
    /// Reads the attendance log; inner command of a buffered attendance read.
    pub const ATTLOG_RRQ: Code = Code(13);
    /// Destructive: clears data tables.
    pub const CLEAR_DATA: Code = Code(14);
    /// Destructive: clears the attendance log.
    pub const CLEAR_ATTLOG: Code = Code(15);
    /// Destructive: deletes a user by uid.
    pub const DELETE_USER: Code = Code(18);
    /// Destructive: deletes one fingerprint template.
    pub const DELETE_USERTEMP: Code = Code(19);
    /// Destructive: clears the operation log.
    pub const CLEAR_OPLOG: Code = Code(33);
    /// Reads the operation log; inner command of a buffered oplog read.
    pub const OPLOG_RRQ: Code = Code(34);
    /// Counters and capacities (80- or 92-byte reply).
    pub const GET_FREE_SIZES: Code = Code(50);
    /// Width of the user-id string, in the first reply byte.
    pub const GET_PINWIDTH: Code = Code(69);
    /// Starts verification; pyzk's live capture needs `ACK_OK` here.
    pub const START_VERIFY: Code = Code(60);
    /// Cancels a capture; pyzk sends it before live capture.
    pub const CANCEL_CAPTURE: Code = Code(62);
    /// Destructive: deletes a template by user-id string (pyzk "undocumented" 134).
    pub const DELETE_TEMPLATE_BY_ID: Code = Code(134);
    /// Device clock as a u32 ZK time.
    pub const GET_TIME: Code = Code(201);
    /// Sets the device clock.
    pub const SET_TIME: Code = Code(202);
    /// Registers for (client) or carries (device) realtime events.
    pub const REG_EVENT: Code = Code(500);

    /// Success; data may follow.
    pub const ACK_OK: Code = Code(2000);
    /// Failure; firmware sometimes puts a reason in the session field.
    pub const ACK_ERROR: Code = Code(2001);
    /// "Return data"; seen rarely.
    pub const ACK_DATA: Code = Code(2002);
    /// The device asks for a re-send (serial FIFO overrun).
    pub const ACK_RETRY: Code = Code(2003);
    /// Repeat.
    pub const ACK_REPEAT: Code = Code(2004);
    /// Comm key required or wrong.
    pub const ACK_UNAUTH: Code = Code(2005);
    /// Unknown command (firmware's default case).
    pub const ACK_UNKNOWN: Code = Code(0xFFFF);

    /// A short human name for logs and errors; `None` for codes this crate does not name.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            Code::CONNECT => "CONNECT",
            Code::EXIT => "EXIT",
            Code::ENABLE_DEVICE => "ENABLE_DEVICE",
            Code::DISABLE_DEVICE => "DISABLE_DEVICE",
            Code::REFRESH_DATA => "REFRESH_DATA",
            Code::REFRESH_OPTION => "REFRESH_OPTION",
            Code::OPLOG_RRQ => "OPLOG_RRQ",
            Code::GET_PINWIDTH => "GET_PINWIDTH",
            Code::GET_VERSION => "GET_VERSION",
            Code::AUTH => "AUTH",
            Code::PREPARE_DATA => "PREPARE_DATA",
            Code::DATA => "DATA",
            Code::FREE_DATA => "FREE_DATA",
            Code::PREPARE_BUFFER => "PREPARE_BUFFER",
            Code::READ_BUFFER => "READ_BUFFER",
            Code::DB_RRQ => "DB_RRQ",
            Code::USER_WRQ => "USER_WRQ",
            Code::USERTEMP_RRQ => "USERTEMP_RRQ",
            Code::TMP_WRITE => "TMP_WRITE",
            Code::OPTIONS_RRQ => "OPTIONS_RRQ",
            Code::OPTIONS_WRQ => "OPTIONS_WRQ",
            Code::ATTLOG_RRQ => "ATTLOG_RRQ",
            Code::CLEAR_DATA => "CLEAR_DATA",
            Code::CLEAR_ATTLOG => "CLEAR_ATTLOG",
            Code::DELETE_USER => "DELETE_USER",
            Code::DELETE_USERTEMP => "DELETE_USERTEMP",
            Code::CLEAR_OPLOG => "CLEAR_OPLOG",
            Code::GET_FREE_SIZES => "GET_FREE_SIZES",
            Code::START_VERIFY => "START_VERIFY",
            Code::CANCEL_CAPTURE => "CANCEL_CAPTURE",
            Code::DELETE_TEMPLATE_BY_ID => "DELETE_TEMPLATE_BY_ID",
            Code::GET_TIME => "GET_TIME",
            Code::SET_TIME => "SET_TIME",
            Code::REG_EVENT => "REG_EVENT",
            Code::ACK_OK => "ACK_OK",
            Code::ACK_ERROR => "ACK_ERROR",
            Code::ACK_DATA => "ACK_DATA",
            Code::ACK_RETRY => "ACK_RETRY",
            Code::ACK_REPEAT => "ACK_REPEAT",
            Code::ACK_UNAUTH => "ACK_UNAUTH",
            Code::ACK_UNKNOWN => "ACK_UNKNOWN",
            _ => return None,
        })
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} ({})", self.0),
            None => write!(f, "code {}", self.0),
        }
    }
}

/// Codes a client may send that only read, or manage the session: the first half of the
/// emulator's allow-list.
pub const READ_ONLY: &[Code] = &[
    Code::CONNECT,
    Code::EXIT,
    Code::AUTH,
    Code::ENABLE_DEVICE,
    Code::DISABLE_DEVICE,
    Code::GET_VERSION,
    Code::GET_FREE_SIZES,
    Code::GET_PINWIDTH,
    Code::GET_TIME,
    Code::OPTIONS_RRQ,
    Code::PREPARE_BUFFER,
    Code::READ_BUFFER,
    Code::FREE_DATA,
    Code::DB_RRQ,
    Code::USERTEMP_RRQ,
    Code::ATTLOG_RRQ,
    Code::OPLOG_RRQ,
    Code::REG_EVENT,
    Code::START_VERIFY,
    Code::CANCEL_CAPTURE,
    Code::REFRESH_OPTION,
    // A client's acknowledgement of a realtime event.
    Code::ACK_OK,
];

/// Codes a client may send that add or update, never remove: the second half of the allow-list.
/// A user write replaces at most the record of its own uid; `REFRESH_DATA` applies it;
/// `SET_TIME` sets the clock. An upload (`PREPARE_DATA`, `DATA`) only fills the session's
/// buffer, and `TMP_WRITE` stores that buffer as one finger of one uid: it adds a template or
/// replaces the one of that very finger, and can remove nothing.
pub const ALLOWED_WRITES: &[Code] = &[
    Code::USER_WRQ,
    Code::REFRESH_DATA,
    Code::SET_TIME,
    Code::PREPARE_DATA,
    Code::DATA,
    Code::TMP_WRITE,
];

/// A command that may delete or clear device data, or one that is not known to be safe.
///
/// Parse-only: nothing in this crate encodes these. It exists so the emulator (and any audit
/// tool) can flag such a command if one ever arrives, which is how the test suite proves the
/// agent never sends one. The recogniser is an allow-list: a code that is neither in
/// [`READ_ONLY`] nor in [`ALLOWED_WRITES`] counts as destructive, so a code this crate does not
/// know (`CMD_CLEAR_ADMIN`, a vendor extension) fails the run instead of passing unnoticed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DestructiveCommand {
    /// `CMD_DELETE_USER`.
    DeleteUser,
    /// `CMD_DELETE_USERTEMP` or the template delete by user-id string.
    DeleteTemplate,
    /// `CMD_CLEAR_DATA`.
    ClearData,
    /// `CMD_CLEAR_ATTLOG`.
    ClearAttendance,
    /// `CMD_CLEAR_OPLOG`.
    ClearOperationLog,
    /// Any other code not on the allow-list (an option write, a data upload, a code this crate
    /// does not name): not known to be harmless, so treated as destructive.
    NotAllowed(Code),
}

impl DestructiveCommand {
    /// `None` only for a code on the allow-list ([`READ_ONLY`] or [`ALLOWED_WRITES`]); every
    /// other code is destructive, named when this crate knows what it deletes.
    pub fn recognise(code: Code) -> Option<DestructiveCommand> {
        if READ_ONLY.contains(&code) || ALLOWED_WRITES.contains(&code) {
            return None;
        }
        Some(match code {
            Code::DELETE_USER => DestructiveCommand::DeleteUser,
            Code::DELETE_USERTEMP | Code::DELETE_TEMPLATE_BY_ID => {
                DestructiveCommand::DeleteTemplate
            }
            Code::CLEAR_DATA => DestructiveCommand::ClearData,
            Code::CLEAR_ATTLOG => DestructiveCommand::ClearAttendance,
            Code::CLEAR_OPLOG => DestructiveCommand::ClearOperationLog,
            other => DestructiveCommand::NotAllowed(other),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_codes_are_destructive() {
        // CMD_CLEAR_ADMIN: not named by this crate, still flagged.
        assert_eq!(
            DestructiveCommand::recognise(Code(20)),
            Some(DestructiveCommand::NotAllowed(Code(20)))
        );
        for code in 0..=u16::MAX {
            let code = Code(code);
            let allowed = READ_ONLY.contains(&code) || ALLOWED_WRITES.contains(&code);
            assert_eq!(
                DestructiveCommand::recognise(code).is_none(),
                allowed,
                "{code}"
            );
        }
    }

    #[test]
    fn the_named_deletes_are_named() {
        assert_eq!(
            DestructiveCommand::recognise(Code::DELETE_USER),
            Some(DestructiveCommand::DeleteUser)
        );
        assert_eq!(
            DestructiveCommand::recognise(Code::OPTIONS_WRQ),
            Some(DestructiveCommand::NotAllowed(Code::OPTIONS_WRQ))
        );
    }
}
