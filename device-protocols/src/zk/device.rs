//! Device-side replies to a buffered read, as firmware builds them.
//!
//! The emulator uses these to answer `PREPARE_BUFFER` and `READ_BUFFER`, and the property tests
//! use them to check that [`crate::zk::BulkRead`] reassembles whatever slicing and fragmenting the
//! device chooses. Keeping one implementation means the test and the emulator cannot drift apart.

use super::code::Code;
use super::packet::Packet;

/// Firmware sends datasets up to this size inline in one `DATA` packet.
pub const INLINE_THRESHOLD: usize = 1024;

/// Slices up to this size are answered by one `DATA` packet without `PREPARE_DATA`.
pub const SINGLE_PACKET_SLICE: usize = 1024;

/// The reply to `PREPARE_BUFFER` for `dataset`: inline `DATA` when it fits `inline_threshold`,
/// otherwise `ACK_OK` announcing its size (`[0][u32 size][u32 size][u32 hash]`).
pub fn prepare_buffer_reply(
    dataset: &[u8],
    inline_threshold: usize,
    session_id: u16,
    reply_id: u16,
) -> Packet {
    if dataset.len() <= inline_threshold {
        return Packet::new(Code::DATA, session_id, reply_id, dataset.to_vec());
    }
    let size = (dataset.len() as u32).to_le_bytes();
    let mut data = vec![0u8];
    data.extend_from_slice(&size);
    data.extend_from_slice(&size);
    data.extend_from_slice(&simple_hash(dataset).to_le_bytes());
    Packet::new(Code::ACK_OK, session_id, reply_id, data)
}

/// The packets answering `READ_BUFFER(offset, len)`: one `DATA` for a short slice, otherwise
/// `PREPARE_DATA`, `DATA` fragments of `fragment_size` (session field = fragment index) and a
/// closing `ACK_OK`. A request past the end is clamped to the dataset, as firmware does.
pub fn read_buffer_replies(
    dataset: &[u8],
    offset: u32,
    len: u32,
    fragment_size: usize,
    session_id: u16,
    reply_id: u16,
) -> Vec<Packet> {
    let start = (offset as usize).min(dataset.len());
    let end = start.saturating_add(len as usize).min(dataset.len());
    let slice = &dataset[start..end];
    if slice.len() <= SINGLE_PACKET_SLICE {
        return vec![Packet::new(
            Code::DATA,
            session_id,
            reply_id,
            slice.to_vec(),
        )];
    }
    let fragment_size = fragment_size.max(1);
    let mut data = (slice.len() as u32).to_le_bytes().to_vec();
    data.extend_from_slice(&(fragment_size as u32).to_le_bytes());
    let mut packets = vec![Packet::new(Code::PREPARE_DATA, session_id, reply_id, data)];
    let mut last_index = 0;
    for (index, fragment) in slice.chunks(fragment_size).enumerate() {
        last_index = index as u16;
        packets.push(Packet::new(
            Code::DATA,
            last_index,
            reply_id,
            fragment.to_vec(),
        ));
    }
    // Captures show the closing ACK's session field holding the last index on some firmware;
    // clients must ignore it, and the emulator reproduces that to keep them honest.
    packets.push(Packet::new(Code::ACK_OK, last_index, reply_id, Vec::new()));
    packets
}

/// A cheap checksum for the buffer announcement; clients do not verify it, firmware fills it.
fn simple_hash(bytes: &[u8]) -> u32 {
    bytes
        .iter()
        .fold(0u32, |acc, &b| acc.rotate_left(5) ^ u32::from(b))
}
