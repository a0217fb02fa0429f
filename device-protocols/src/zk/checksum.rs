//! The ZK packet checksum.
//!
//! It is the RFC 1071 one's-complement sum over little-endian 16-bit words, exactly as the
//! firmware's `in_chksum` computes it. pyzk and its ports compute `0xFFFE - sum` over the
//! *previous* reply id and the two errors cancel; porting that trick produces packets that strict
//! firmware silently drops, so this module computes the checksum over the exact bytes on the wire.

/// Returns the one's-complement checksum of `bytes`.
///
/// The caller passes the 8-byte header with its checksum field zeroed followed by the data, or
/// (for the experimental serial frame) the serial header with its checksum field zeroed followed
/// by the ZK packet. An odd trailing byte counts as a word with a zero high byte.
pub fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut words = bytes.chunks_exact(2);
    for word in &mut words {
        sum += u32::from(u16::from_le_bytes([word[0], word[1]]));
        // Folding as we go keeps the accumulator bounded for inputs of any length.
        if sum > 0xFFFF {
            sum = (sum & 0xFFFF) + (sum >> 16);
        }
    }
    if let [last] = words.remainder() {
        sum += u32::from(*last);
    }
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::checksum;

    fn zeroed(hex: &str, field: usize) -> Vec<u8> {
        let mut bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        bytes[field] = 0;
        bytes[field + 1] = 0;
        bytes
    }

    /// Vectors from the research notes (§2.3), each a packet with its stored checksum.
    #[test]
    fn matches_published_packets() {
        let cases = [
            ("0b005a17f38d03005a4b4661636556657273696f6e00", 0x175A),
            ("d007296af38d0a0009", 0x6A29),
            ("e80317fc00000000", 0xFC17),
            ("d007fffc2ffb0000", 0xFCFF),
            ("f401a7fc0001000064", 0xFCA7),
        ];
        for (hex, stored) in cases {
            assert_eq!(checksum(&zeroed(hex, 2)), stored, "packet {hex}");
        }
    }

    #[test]
    fn odd_length_equals_zero_padding() {
        assert_eq!(checksum(&[1, 2, 3]), checksum(&[1, 2, 3, 0]));
    }
}
