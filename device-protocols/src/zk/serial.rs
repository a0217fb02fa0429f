//! **Experimental** serial (RS232/RS485) frame.
//!
//! Only one leaked firmware tree describes it and nobody has verified it against hardware or the
//! vendor SDK (research notes §2.6), so treat it as a hypothesis: the ZK packet travels behind an
//! 8-byte header `[addr][addr][0x81][0x7E][u16 len][u16 checksum]`, where the checksum covers the
//! header (checksum zeroed) plus the ZK packet, and the ZK packet keeps its own checksum. On RS485
//! a device ignores frames whose two address bytes are not both its DeviceID.

use super::checksum::checksum;

/// Length of the serial header.
pub const SERIAL_HEADER_LEN: usize = 8;

/// `CMD_RS` and its check byte, bytes 2..4 of the serial header.
pub const SERIAL_MAGIC: [u8; 2] = [0x81, 0x7E];

/// One serial frame pulled from the byte stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SerialFrame {
    /// The address byte (both copies agreed).
    pub address: u8,
    /// The inner ZK packet, still encoded.
    pub packet: Vec<u8>,
    /// Whether the outer checksum matched.
    pub checksum_valid: bool,
}

/// Wraps an encoded ZK packet for the serial line.
pub fn frame_serial(address: u8, packet: &[u8]) -> Vec<u8> {
    let mut framed = Vec::with_capacity(SERIAL_HEADER_LEN + packet.len());
    framed.extend_from_slice(&[address, address, SERIAL_MAGIC[0], SERIAL_MAGIC[1]]);
    framed.extend_from_slice(&(packet.len() as u16).to_le_bytes());
    framed.extend_from_slice(&[0, 0]);
    framed.extend_from_slice(packet);
    let sum = checksum(&framed);
    framed[6..8].copy_from_slice(&sum.to_le_bytes());
    framed
}

/// Buffers serial bytes and yields frames, skipping line noise.
///
/// A serial line has no connection to reset, so unlike the TCP reassembler this one resynchronises
/// by dropping bytes until a plausible header appears, and counts what it dropped.
#[derive(Debug, Default)]
pub struct SerialReassembler {
    buffer: Vec<u8>,
    discarded: usize,
}

impl SerialReassembler {
    /// An empty reassembler.
    pub fn new() -> SerialReassembler {
        SerialReassembler::default()
    }

    /// Appends bytes as read from the line.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// Bytes dropped so far while looking for a frame header (noise or a cut frame).
    pub fn discarded(&self) -> usize {
        self.discarded
    }

    /// Drops a stalled partial frame, as the firmware does after a gap of silence on the line.
    pub fn reset(&mut self) {
        self.discarded += self.buffer.len();
        self.buffer.clear();
    }

    /// Takes the next frame, `None` when more bytes are needed.
    pub fn next_frame(&mut self) -> Option<SerialFrame> {
        loop {
            let start = self
                .buffer
                .windows(4)
                .position(|w| w[0] == w[1] && w[2..4] == SERIAL_MAGIC);
            match start {
                Some(offset) => {
                    self.discarded += offset;
                    self.buffer.drain(..offset);
                }
                None => {
                    // Keep a possible header start (up to 3 bytes) for the next push.
                    let keep = self.buffer.len().min(3);
                    let drop = self.buffer.len() - keep;
                    self.discarded += drop;
                    self.buffer.drain(..drop);
                    return None;
                }
            }
            if self.buffer.len() < SERIAL_HEADER_LEN {
                return None;
            }
            let len = usize::from(u16::from_le_bytes([self.buffer[4], self.buffer[5]]));
            if len < super::packet::HEADER_LEN {
                // Not a real header: skip one byte and search again.
                self.discarded += 1;
                self.buffer.remove(0);
                continue;
            }
            if self.buffer.len() < SERIAL_HEADER_LEN + len {
                return None;
            }
            let frame: Vec<u8> = self.buffer.drain(..SERIAL_HEADER_LEN + len).collect();
            let stored = u16::from_le_bytes([frame[6], frame[7]]);
            let mut zeroed = frame.clone();
            zeroed[6] = 0;
            zeroed[7] = 0;
            return Some(SerialFrame {
                address: frame[0],
                packet: frame[SERIAL_HEADER_LEN..].to_vec(),
                checksum_valid: checksum(&zeroed) == stored,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_noise() {
        let packet = [0xE8, 0x03, 0x17, 0xFC, 0, 0, 0, 0];
        let mut reassembler = SerialReassembler::new();
        reassembler.push(&[0x00, 0xFF, 0x81]);
        reassembler.push(&frame_serial(7, &packet));
        let frame = reassembler.next_frame().expect("frame");
        assert_eq!(frame.address, 7);
        assert_eq!(frame.packet, packet);
        assert!(frame.checksum_valid);
        assert_eq!(reassembler.discarded(), 3);
    }

    #[test]
    fn flags_a_corrupted_frame() {
        let mut framed = frame_serial(1, &[0xE8, 0x03, 0x17, 0xFC, 0, 0, 0, 0]);
        framed[9] ^= 0x40;
        let mut reassembler = SerialReassembler::new();
        reassembler.push(&framed);
        assert!(!reassembler.next_frame().expect("frame").checksum_valid);
    }
}
