//! The ZK binary protocol (ZKTeco standalone terminals, TCP/UDP 4370 and serial), sans-IO.
//!
//! Layers, bottom up, one module each:
//!
//! * [`checksum`], [`packet`]: the 8-byte header and the exact one's-complement checksum.
//! * [`framing`]: the TCP prefix and a stream reassembler; UDP carries one bare packet per
//!   datagram; [`serial`] is the *experimental* RS232/RS485 frame.
//! * [`code`]: command and reply codes, and the parse-only recogniser of destructive commands.
//! * [`request`]: the agent's requests, which cannot express a delete or a clear.
//! * [`session`]: session id, reply ids and reply checks; [`auth`]: the comm key.
//! * [`bulk`]: the buffered read state machine; [`dataset`], [`user`], [`attendance`],
//!   [`layout`]: what the bytes mean; [`sizes`]: the counts that define a complete read;
//!   [`text`]: code pages; [`time`]: ZK timestamps.
//!
//! A driver's read, in order: `Connect` (→ `Auth` if asked) → `DisableDevice` with a timeout →
//! `GetFreeSizes` → [`BulkRead`] users → `FreeData` → [`BulkRead`] attendance → `FreeData` →
//! `EnableDevice` → `Exit` (on every path). The read is complete only when [`UserTable`] and
//! [`AttendanceLog`] report `count_consistent` and their lengths equal [`DeviceSizes`].

pub mod attendance;
pub mod auth;
pub mod bulk;
pub mod checksum;
pub mod code;
pub mod dataset;
pub mod device;
pub mod framing;
pub mod layout;
pub mod packet;
mod record;
pub mod request;
pub mod serial;
pub mod session;
pub mod sizes;
pub mod text;
pub mod time;
pub mod user;

pub use attendance::{decode_attendance, AttendanceLayout, AttendanceLog, AttendanceRecord};
pub use auth::CommKey;
pub use bulk::{BulkError, BulkRead, BulkStep, MAX_CHUNK_TCP, MAX_CHUNK_UDP, MAX_DATASET_LEN};
pub use code::{Code, DestructiveCommand};
pub use framing::{frame_tcp, FramingError, TcpReassembler};
pub use packet::{Incoming, Packet, PacketError};
pub use record::{RecordError, UserId};
pub use request::{BulkDataset, Request, UserWrite};
pub use serial::{frame_serial, SerialFrame, SerialReassembler};
pub use session::{ClientSession, ReplyError, SessionState};
pub use sizes::{DeviceSizes, FaceSizes};
pub use text::{DeviceText, TextCodec, TextError};
pub use time::{ZkDateTime, ZkTime};
pub use user::{decode_users, TimeZones, UserLayout, UserRecord, UserTable};
