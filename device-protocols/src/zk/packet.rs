//! The 8-byte ZK header and the packet it introduces.
//!
//! The same packet travels on every transport: behind the TCP prefix, alone in a UDP datagram, or
//! behind the (experimental) serial header. Decoding reports whether the checksum matched instead
//! of deciding for the caller, because firmware drops bad packets silently while the agent's
//! policy is configurable per device (log and accept by default).

use super::checksum::checksum;
use super::code::Code;

/// Length of the ZK header.
pub const HEADER_LEN: usize = 8;

/// One ZK packet: header fields plus data. The checksum is not stored; it is computed on encode
/// and checked on decode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// Command or reply code.
    pub code: Code,
    /// Session id; reused as fragment index in bulk `DATA`, event code in realtime packets and
    /// error detail in some replies.
    pub session_id: u16,
    /// Client-chosen counter echoed by the device.
    pub reply_id: u16,
    /// Command-specific data.
    pub data: Vec<u8>,
}

/// A packet decoded from the wire together with the result of the checksum check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Incoming {
    /// The decoded packet.
    pub packet: Packet,
    /// Whether the stored checksum matched the computed one.
    pub checksum_valid: bool,
}

/// Why bytes could not be decoded as a ZK packet.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PacketError {
    /// Fewer bytes than a header.
    #[error("ZK packet of {0} bytes is shorter than the 8-byte header; the peer is not speaking the ZK protocol or the frame was cut")]
    TooShort(usize),
}

impl Packet {
    /// Builds a packet from raw fields: the emulator's replies and, with the `raw` feature, tests
    /// and fuzz targets. Agent code cannot call it; its packets come from
    /// [`super::ClientSession::packet`], which takes a [`super::Request`].
    #[cfg(feature = "raw")]
    pub fn new(code: Code, session_id: u16, reply_id: u16, data: Vec<u8>) -> Packet {
        Packet::build(code, session_id, reply_id, data)
    }

    /// Builds a packet from raw fields (crate-private without the `raw` feature).
    #[cfg(not(feature = "raw"))]
    pub(crate) fn new(code: Code, session_id: u16, reply_id: u16, data: Vec<u8>) -> Packet {
        Packet::build(code, session_id, reply_id, data)
    }

    fn build(code: Code, session_id: u16, reply_id: u16, data: Vec<u8>) -> Packet {
        Packet {
            code,
            session_id,
            reply_id,
            data,
        }
    }

    /// Encodes any packet (feature `raw`: tests and fuzz targets). Agent code encodes only a
    /// [`RequestPacket`].
    #[cfg(feature = "raw")]
    pub fn encode(&self) -> Vec<u8> {
        self.encode_bytes()
    }

    /// Encodes any packet (crate-private without the `raw` feature: the emulator's replies).
    #[cfg(not(feature = "raw"))]
    pub(crate) fn encode(&self) -> Vec<u8> {
        self.encode_bytes()
    }

    /// Encodes header and data with the exact checksum.
    fn encode_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(HEADER_LEN + self.data.len());
        bytes.extend_from_slice(&self.code.0.to_le_bytes());
        bytes.extend_from_slice(&[0, 0]);
        bytes.extend_from_slice(&self.session_id.to_le_bytes());
        bytes.extend_from_slice(&self.reply_id.to_le_bytes());
        bytes.extend_from_slice(&self.data);
        let sum = checksum(&bytes);
        bytes[2..4].copy_from_slice(&sum.to_le_bytes());
        bytes
    }

    /// Decodes a whole packet (header and data, no transport prefix).
    pub fn decode(bytes: &[u8]) -> Result<Incoming, PacketError> {
        if bytes.len() < HEADER_LEN {
            return Err(PacketError::TooShort(bytes.len()));
        }
        let word = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
        let stored = word(2);
        let mut zeroed = bytes.to_vec();
        zeroed[2] = 0;
        zeroed[3] = 0;
        Ok(Incoming {
            packet: Packet {
                code: Code(word(0)),
                session_id: word(4),
                reply_id: word(6),
                data: bytes[HEADER_LEN..].to_vec(),
            },
            checksum_valid: checksum(&zeroed) == stored,
        })
    }
}

/// A packet built from one of the agent's [`super::Request`]s by [`super::ClientSession::packet`]:
/// the only packet agent code can encode. `Request` has no delete or clear variant and this
/// type has no public constructor, so no agent code path can put a destructive ZK command on a
/// link (the compile-fail test in `test-support/tests/no_raw_send.rs` holds that).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestPacket(Packet);

impl RequestPacket {
    pub(crate) fn of(packet: Packet) -> RequestPacket {
        RequestPacket(packet)
    }

    /// Header and data with the exact checksum, ready for a transport's framing.
    pub fn encode(&self) -> RequestBytes {
        RequestBytes(self.0.encode_bytes())
    }
}

/// Reads the packet's fields (`code`, `session_id`, `reply_id`, `data`); read-only.
impl std::ops::Deref for RequestPacket {
    type Target = Packet;

    fn deref(&self) -> &Packet {
        &self.0
    }
}

/// The encoded bytes of a [`RequestPacket`]: what a driver's link accepts, so a link cannot be
/// handed bytes that did not come from a `Request`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestBytes(Vec<u8>);

impl RequestBytes {
    /// The bytes, for the transport's framing.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}
