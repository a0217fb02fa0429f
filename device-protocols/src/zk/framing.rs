//! TCP prefix framing and the stream reassembler.
//!
//! On TCP every ZK packet travels behind an 8-byte prefix `50 50 82 7D <u32 length>`. A socket
//! read can hold half a prefix, several frames, or a frame split anywhere (the public pyzk
//! captures split fragments at 232/256/24-byte boundaries), so the reassembler buffers bytes and
//! yields whole packets only; it never assumes one read is one frame.

/// Length of the TCP prefix.
pub const TCP_PREFIX_LEN: usize = 8;

/// Bytes 0..4 of the prefix: the `PP` tag, `CMD_TCP` 0x82 and its check byte 0x7D.
pub const TCP_MAGIC: [u8; 4] = [0x50, 0x50, 0x82, 0x7D];

/// Upper bound on a framed packet's length. Firmware fragments are at most 64 KiB − 8 of data;
/// anything far above that is a desynchronised stream, not a packet, and must not make the
/// reassembler allocate without bound.
pub const MAX_TCP_PACKET_LEN: usize = 1 << 20;

/// Why a TCP byte stream cannot be framed. Both are fatal for the connection: the stream has lost
/// sync and the only recovery is to reconnect.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FramingError {
    /// The prefix did not start with the ZK magic.
    #[error("TCP frame prefix {found:02x?} is not the ZK magic 50 50 82 7d; the peer is not a ZK terminal or the stream lost sync: reconnect")]
    BadMagic {
        /// The four bytes found where the magic belongs.
        found: [u8; 4],
    },
    /// The announced length cannot be a ZK packet.
    #[error("TCP frame announces a {0}-byte packet (a ZK packet is 8 bytes to 1 MiB); the stream lost sync: reconnect")]
    BadLength(usize),
}

/// Puts the TCP prefix in front of an encoded ZK packet, ready for a single write.
pub fn frame_tcp(packet: &[u8]) -> Vec<u8> {
    let mut framed = Vec::with_capacity(TCP_PREFIX_LEN + packet.len());
    framed.extend_from_slice(&TCP_MAGIC);
    framed.extend_from_slice(&(packet.len() as u32).to_le_bytes());
    framed.extend_from_slice(packet);
    framed
}

/// Buffers a TCP byte stream and yields complete ZK packets (without their prefix).
#[derive(Debug, Default)]
pub struct TcpReassembler {
    buffer: Vec<u8>,
}

impl TcpReassembler {
    /// An empty reassembler for a fresh connection.
    pub fn new() -> TcpReassembler {
        TcpReassembler::default()
    }

    /// Appends bytes exactly as one socket read returned them.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// Number of buffered bytes not yet returned as a packet; non-zero at end of stream means a
    /// frame was cut.
    pub fn pending(&self) -> usize {
        self.buffer.len()
    }

    /// Takes the next complete packet, `Ok(None)` when more bytes are needed.
    pub fn next_packet(&mut self) -> Result<Option<Vec<u8>>, FramingError> {
        if self.buffer.len() < TCP_PREFIX_LEN {
            return Ok(None);
        }
        // Firmware checks only the 0x82/0x7D pair, but a client has no reason to accept a peer
        // that gets the tag wrong: checking all four bytes catches desync earlier.
        let found = [
            self.buffer[0],
            self.buffer[1],
            self.buffer[2],
            self.buffer[3],
        ];
        if found != TCP_MAGIC {
            return Err(FramingError::BadMagic { found });
        }
        let len = u32::from_le_bytes([
            self.buffer[4],
            self.buffer[5],
            self.buffer[6],
            self.buffer[7],
        ]) as usize;
        if !(super::packet::HEADER_LEN..=MAX_TCP_PACKET_LEN).contains(&len) {
            return Err(FramingError::BadLength(len));
        }
        if self.buffer.len() < TCP_PREFIX_LEN + len {
            return Ok(None);
        }
        let packet = self.buffer[TCP_PREFIX_LEN..TCP_PREFIX_LEN + len].to_vec();
        self.buffer.drain(..TCP_PREFIX_LEN + len);
        Ok(Some(packet))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yields_nothing_until_a_frame_is_complete_then_each_frame_once() {
        let first = frame_tcp(&[1, 2, 3, 4, 5, 6, 7, 8, 9]);
        let second = frame_tcp(&[8, 7, 6, 5, 4, 3, 2, 1]);
        let stream: Vec<u8> = first.iter().chain(second.iter()).copied().collect();
        let mut reassembler = TcpReassembler::new();
        reassembler.push(&stream[..3]);
        assert_eq!(reassembler.next_packet(), Ok(None));
        reassembler.push(&stream[3..first.len() + 2]);
        assert_eq!(reassembler.next_packet().unwrap().unwrap(), first[8..]);
        assert_eq!(reassembler.next_packet(), Ok(None));
        reassembler.push(&stream[first.len() + 2..]);
        assert_eq!(reassembler.next_packet().unwrap().unwrap(), second[8..]);
        assert_eq!(reassembler.pending(), 0);
    }

    #[test]
    fn rejects_a_stream_without_the_magic() {
        let mut reassembler = TcpReassembler::new();
        reassembler.push(b"HTTP/1.1 200 OK\r\n");
        assert!(matches!(
            reassembler.next_packet(),
            Err(FramingError::BadMagic { .. })
        ));
    }

    #[test]
    fn rejects_an_absurd_length_before_buffering_it() {
        let mut reassembler = TcpReassembler::new();
        reassembler.push(&[0x50, 0x50, 0x82, 0x7D, 0xFF, 0xFF, 0xFF, 0x7F]);
        assert_eq!(
            reassembler.next_packet(),
            Err(FramingError::BadLength(0x7FFF_FFFF))
        );
    }
}
