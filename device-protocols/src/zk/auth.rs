//! Comm-key ("communication password") authentication.
//!
//! When a key is set the device answers `CONNECT` with `ACK_UNAUTH` and refuses everything until
//! the client sends `CMD_AUTH` with a 4-byte token derived from the key and the session id. The
//! derivation (firmware `MakeKey`) is reproduced here; the check mirrors the firmware, which reads
//! the "ticks" byte from the token itself and therefore never compares byte 2.

/// The ticks byte every public client sends; firmware accepts any value.
pub const DEFAULT_TICKS: u8 = 50;

/// The numeric comm key configured on the device (0 = none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommKey(pub u32);

impl CommKey {
    /// The 4-byte `CMD_AUTH` data for this key and session.
    pub fn token(self, session_id: u16, ticks: u8) -> [u8; 4] {
        let mixed = self.0.reverse_bits().wrapping_add(u32::from(session_id));
        let b = mixed.to_le_bytes();
        let x = [b[0] ^ b'Z', b[1] ^ b'K', b[2] ^ b'S', b[3] ^ b'O'];
        let swapped = [x[2], x[3], x[0], x[1]];
        [
            swapped[0] ^ ticks,
            swapped[1] ^ ticks,
            ticks,
            swapped[3] ^ ticks,
        ]
    }

    /// Whether `token` proves knowledge of this key for `session_id`, checking bytes 0, 1 and 3
    /// exactly as firmware does.
    pub fn accepts(self, session_id: u16, token: &[u8]) -> bool {
        let [t0, t1, ticks, t3] = match token {
            [a, b, c, d] => [*a, *b, *c, *d],
            _ => return false,
        };
        let expected = self.token(session_id, ticks);
        expected[0] == t0 && expected[1] == t1 && expected[3] == t3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Device captures in the pyzk test suite (research notes §3.2).
    #[test]
    fn matches_captured_tokens() {
        assert_eq!(
            CommKey(12).token(0x45CF, DEFAULT_TICKS),
            [0x61, 0x4D, 0x32, 0x3C]
        );
        assert_eq!(
            CommKey(45).token(0x45CF, DEFAULT_TICKS),
            [0x61, 0xC9, 0x32, 0x3C]
        );
    }

    #[test]
    fn accepts_any_ticks_but_not_a_wrong_key() {
        let token = CommKey(123_456).token(0x1234, 7);
        assert!(CommKey(123_456).accepts(0x1234, &token));
        assert!(!CommKey(123_457).accepts(0x1234, &token));
        assert!(!CommKey(123_456).accepts(0x1234, &token[..3]));
    }

    #[test]
    fn does_not_overflow_on_large_keys() {
        let token = CommKey(u32::MAX).token(u16::MAX, DEFAULT_TICKS);
        assert!(CommKey(u32::MAX).accepts(u16::MAX, &token));
    }
}
