//! What the agent may ask a ZK device, and nothing more.
//!
//! Invariant 1 (`docs/ARCHITECTURE.md`): no destructive command can be expressed by the agent.
//! This enum is the only way this crate encodes client requests, and it has no variant for
//! deleting users or templates or clearing data or logs; adding one would be a visible design
//! change, not an accident. [`crate::zk::DestructiveCommand`] recognises those codes for the
//! emulator's audit log but cannot build them.

use super::auth::{CommKey, DEFAULT_TICKS};
use super::code::Code;
use super::record::RecordError;
use super::template::{TemplateHead, UploadChunk};
use super::user::{UserLayout, UserRecord};

/// A dataset that can be downloaded with a buffered read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BulkDataset {
    /// The user table (`CMD_USERTEMP_RRQ`, FCT_USER).
    Users,
    /// The attendance log (`CMD_ATTLOG_RRQ`, from the start).
    Attendance,
    /// Every fingerprint template (`CMD_DB_RRQ`, FCT_FINGERTMP).
    FingerTemplates,
}

impl BulkDataset {
    /// The 11-byte `PREPARE_BUFFER` data: flag 1, inner command, FCT/start, extension.
    pub fn prepare_buffer_data(self) -> [u8; 11] {
        let (inner, fct): (Code, u32) = match self {
            BulkDataset::Users => (Code::USERTEMP_RRQ, 5),
            BulkDataset::Attendance => (Code::ATTLOG_RRQ, 0),
            BulkDataset::FingerTemplates => (Code::DB_RRQ, 2),
        };
        let mut data = [0u8; 11];
        data[0] = 1;
        data[1..3].copy_from_slice(&inner.0.to_le_bytes());
        data[3..7].copy_from_slice(&fct.to_le_bytes());
        data
    }
}

/// One validated user write, encoded once so the request itself cannot fail later.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserWrite {
    record: Vec<u8>,
}

impl UserWrite {
    /// Encodes `user` in the device's layout; fails if a field does not fit.
    pub fn new(user: &UserRecord, layout: UserLayout) -> Result<UserWrite, RecordError> {
        Ok(UserWrite {
            record: user.encode(layout)?,
        })
    }

    /// The encoded record.
    pub fn bytes(&self) -> &[u8] {
        &self.record
    }
}

/// A request the agent sends to a ZK device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Opens a session.
    Connect,
    /// Answers `ACK_UNAUTH` with the comm key (the token depends on the session id, which the
    /// [`crate::zk::ClientSession`] supplies when encoding).
    Auth(CommKey),
    /// Frees the session; always send it, on every path, or the device stays "Working…".
    Exit,
    /// Re-enables keypad and sensor.
    EnableDevice,
    /// Disables keypad and sensor so counts cannot change mid-read. The timeout makes the
    /// firmware re-enable itself if the agent dies before `EnableDevice`.
    DisableDevice {
        /// Seconds of silence after which the device re-enables itself.
        auto_enable_after_secs: u32,
    },
    /// Counters and capacities.
    GetFreeSizes,
    /// Device clock.
    GetTime,
    /// Firmware version string.
    GetVersion,
    /// Reads one option such as `~SerialNumber` or `~Platform`.
    ReadOption(String),
    /// Starts a buffered read of a dataset.
    PrepareBuffer(BulkDataset),
    /// Requests a slice of the prepared buffer.
    ReadBuffer {
        /// Byte offset into the dataset.
        offset: u32,
        /// Bytes wanted.
        len: u32,
    },
    /// Releases the device's bulk buffer after a read.
    FreeData,
    /// Adds or updates one user (never changes an existing uid's user id; firmware refuses).
    SetUser(UserWrite),
    /// Applies data changes after `SetUser`.
    RefreshData,
    /// Opens the session's upload buffer for this many bytes (`PREPARE_DATA`); the length
    /// comes from a checked [`crate::zk::TemplateUpload`].
    PrepareUpload {
        /// Bytes that will follow in [`Request::UploadChunk`]s.
        len: u32,
    },
    /// One chunk of the upload (`DATA`), built only by [`crate::zk::TemplateUpload::chunks`].
    UploadChunk(UploadChunk),
    /// Stores the uploaded buffer as one finger of one uid (`TMP_WRITE`): adds it, or replaces
    /// that same finger; never removes anything.
    WriteTemplate(TemplateHead),
    /// Asks the terminal to push the events in `mask` over this session (`REG_EVENT`; 0 stops
    /// them). Only a live-event listener sends it; see [`crate::zk::event`].
    RegisterEvents {
        /// Event mask, e.g. [`crate::zk::EF_ATTLOG`].
        mask: u32,
    },
}

impl Request {
    /// The header code for this request.
    pub fn code(&self) -> Code {
        match self {
            Request::Connect => Code::CONNECT,
            Request::Auth(_) => Code::AUTH,
            Request::Exit => Code::EXIT,
            Request::EnableDevice => Code::ENABLE_DEVICE,
            Request::DisableDevice { .. } => Code::DISABLE_DEVICE,
            Request::GetFreeSizes => Code::GET_FREE_SIZES,
            Request::GetTime => Code::GET_TIME,
            Request::GetVersion => Code::GET_VERSION,
            Request::ReadOption(_) => Code::OPTIONS_RRQ,
            Request::PrepareBuffer(_) => Code::PREPARE_BUFFER,
            Request::ReadBuffer { .. } => Code::READ_BUFFER,
            Request::FreeData => Code::FREE_DATA,
            Request::SetUser(_) => Code::USER_WRQ,
            Request::RefreshData => Code::REFRESH_DATA,
            Request::PrepareUpload { .. } => Code::PREPARE_DATA,
            Request::UploadChunk(_) => Code::DATA,
            Request::WriteTemplate(_) => Code::TMP_WRITE,
            Request::RegisterEvents { .. } => Code::REG_EVENT,
        }
    }

    /// The data bytes; `session_id` is needed only by `Auth`.
    pub fn data(&self, session_id: u16) -> Vec<u8> {
        match self {
            Request::Auth(key) => key.token(session_id, DEFAULT_TICKS).to_vec(),
            Request::DisableDevice {
                auto_enable_after_secs,
            } => auto_enable_after_secs.to_le_bytes().to_vec(),
            Request::ReadOption(name) => {
                let mut data = name.as_bytes().to_vec();
                data.push(0);
                data
            }
            Request::PrepareBuffer(dataset) => dataset.prepare_buffer_data().to_vec(),
            Request::ReadBuffer { offset, len } => {
                let mut data = offset.to_le_bytes().to_vec();
                data.extend_from_slice(&len.to_le_bytes());
                data
            }
            Request::SetUser(write) => write.bytes().to_vec(),
            Request::PrepareUpload { len } => len.to_le_bytes().to_vec(),
            Request::UploadChunk(chunk) => chunk.bytes().to_vec(),
            Request::WriteTemplate(head) => head.encode().to_vec(),
            Request::RegisterEvents { mask } => mask.to_le_bytes().to_vec(),
            Request::Connect
            | Request::Exit
            | Request::EnableDevice
            | Request::GetFreeSizes
            | Request::GetTime
            | Request::GetVersion
            | Request::FreeData
            | Request::RefreshData => Vec::new(),
        }
    }
}
