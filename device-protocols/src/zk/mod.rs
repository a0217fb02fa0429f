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
//!
//! # Example: a buffered user read without I/O
//!
//! A driver owns the socket; this crate owns every protocol decision. (The device side of this
//! example builds raw reply packets, which needs the `raw` feature; agent code has only
//! [`RequestPacket`].) Here the "device" is the
//! crate's own firmware reply builder ([`device`]), so the loop runs as written; a driver replaces
//! the marked lines with one write and as many reads as it takes.
//!
//! ```
//! use device_protocols::zk::{
//!     dataset::dataset_of, decode_users, device, frame_tcp, BulkDataset, BulkRead, BulkStep,
//!     ClientSession, Code, DeviceText, Packet, Request, TcpReassembler, TextCodec, TimeZones,
//!     UserId, UserLayout, UserRecord, MAX_CHUNK_TCP,
//! };
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // What the terminal holds: 30 users in the 72-byte layout.
//! let mut records = Vec::new();
//! for uid in 1..=30u16 {
//!     let user = UserRecord {
//!         uid,
//!         privilege: 0,
//!         password: DeviceText::utf8(""),
//!         name: DeviceText::utf8(&format!("User {uid}")),
//!         card: 0,
//!         group: 1,
//!         user_id: UserId::Text(DeviceText::utf8(&uid.to_string())),
//!         time_zones: TimeZones::Extended { own: 0, zones: [0; 3] },
//!     };
//!     records.extend(user.encode(UserLayout::Extended72)?);
//! }
//! let on_device = dataset_of(&records);
//!
//! let mut session = ClientSession::new();
//! let connect = session.packet(&Request::Connect);
//! // The device answers CONNECT with the session id it assigns.
//! session.on_connect_reply(&Packet::new(Code::ACK_OK, 0x45CF, connect.reply_id, vec![]))?;
//!
//! let (mut read, mut request) = BulkRead::start(BulkDataset::Users, MAX_CHUNK_TCP);
//! let mut stream = TcpReassembler::new();
//! let dataset = 'read: loop {
//!     let packet = session.packet(&request);
//!     let _wire: Vec<u8> = frame_tcp(packet.encode().as_bytes()); // driver: write this in one send
//!     // --- device side (driver: read from the socket instead) ---
//!     let (sid, rid) = (packet.session_id, packet.reply_id);
//!     let replies = match request {
//!         Request::PrepareBuffer(_) => vec![device::prepare_buffer_reply(&on_device, 1024, sid, rid)],
//!         Request::ReadBuffer { offset, len } => {
//!             device::read_buffer_replies(&on_device, offset, len, 1008, sid, rid)
//!         }
//!         _ => unreachable!("a bulk read only sends these"),
//!     };
//!     for reply in &replies {
//!         stream.push(&frame_tcp(&reply.encode()));
//!     }
//!     // --- end of device side ---
//!     loop {
//!         let Some(bytes) = stream.next_packet()? else {
//!             unreachable!("driver: read more bytes, with a per-chunk timeout");
//!         };
//!         let incoming = Packet::decode(&bytes)?;
//!         if !session.is_reply_to_last(&incoming.packet) {
//!             continue; // a stale duplicate or a realtime event
//!         }
//!         match read.on_packet(&incoming.packet)? {
//!             BulkStep::AwaitMore => {}
//!             BulkStep::Send(next) => {
//!                 request = next;
//!                 break;
//!             }
//!             BulkStep::Complete(dataset) => break 'read dataset,
//!         }
//!     }
//! };
//! // Next on the wire: Request::FreeData. Then decode against the device's count.
//! let table = decode_users(&dataset, 30, None, &TextCodec::default())?;
//! assert!(table.count_consistent);
//! assert_eq!(table.users[29].name.text, "User 30");
//! # Ok(())
//! # }
//! ```

pub mod attendance;
pub mod auth;
pub mod bulk;
pub mod checksum;
pub mod code;
pub mod dataset;
pub mod device;
pub mod event;
pub mod framing;
pub mod layout;
pub mod packet;
mod record;
pub mod request;
pub mod serial;
pub mod session;
pub mod sizes;
pub mod template;
pub mod text;
pub mod time;
pub mod user;

pub use attendance::{decode_attendance, AttendanceLayout, AttendanceLog, AttendanceRecord};
pub use auth::CommKey;
pub use bulk::{BulkError, BulkRead, BulkStep, MAX_CHUNK_TCP, MAX_CHUNK_UDP, MAX_DATASET_LEN};
pub use code::{Code, DestructiveCommand};
pub use event::{AttendanceEvent, EventForm, EventUser, EF_ATTLOG};
pub use framing::{frame_tcp, FramingError, TcpReassembler};
pub use packet::{Incoming, Packet, PacketError, RequestBytes, RequestPacket};
pub use record::{RecordError, UserId};
pub use request::{BulkDataset, Request, UserWrite};
pub use serial::{frame_serial, SerialFrame, SerialReassembler};
pub use session::{ClientSession, ReplyError, SessionState};
pub use sizes::{DeviceSizes, FaceSizes};
pub use template::{
    decode_templates, FingerTemplate, TemplateHead, TemplateUpload, UploadChunk, UPLOAD_CHUNK,
};
pub use text::{DeviceText, TextCodec, TextError};
pub use time::{ZkDateTime, ZkTime};
pub use user::{decode_users, TimeZones, UserLayout, UserRecord, UserTable};
