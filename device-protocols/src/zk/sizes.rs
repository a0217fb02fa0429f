//! Device counters and capacities (`CMD_GET_FREE_SIZES`).
//!
//! The counts here are the yardstick of a complete read: a user or attendance download is only
//! trusted when the number of decoded records equals these counts. Firmware answers with 20
//! little-endian i32 words (80 bytes) or, with face support, 23 (92 bytes).

/// Reply length of firmware without face support.
pub const SIZES_LEN_BASIC: usize = 80;
/// Reply length of firmware with face support.
pub const SIZES_LEN_FACE: usize = 92;

/// Face counters, present only in the 92-byte reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaceSizes {
    /// Enrolled faces.
    pub count: u32,
    /// Face capacity.
    pub capacity: u32,
}

/// The counters a reader needs, named after the firmware's `TFSizes` fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct DeviceSizes {
    /// Users enrolled (word 4, offset 16).
    pub users: u32,
    /// Fingerprint templates (offset 24).
    pub fingerprints: u32,
    /// Attendance records (offset 32).
    pub records: u32,
    /// Operation-log entries (offset 40).
    pub oplog: u32,
    /// Administrators (offset 48).
    pub admins: u32,
    /// Users with a password (offset 52).
    pub passwords: u32,
    /// Fingerprint capacity (offset 56).
    pub fingerprint_capacity: u32,
    /// User capacity (offset 60).
    pub user_capacity: u32,
    /// Attendance capacity (offset 64).
    pub record_capacity: u32,
    /// Face counters when the device reported them.
    pub faces: Option<FaceSizes>,
}

/// A sizes reply that cannot be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SizesError {
    /// Too short to hold the user and record counts.
    #[error("GET_FREE_SIZES reply has {0} bytes, expected 80 or 92; the device firmware is not supported or the reply was cut")]
    TooShort(usize),
}

impl DeviceSizes {
    /// Decodes an 80- or 92-byte reply (longer replies are accepted, their tail ignored).
    pub fn decode(data: &[u8]) -> Result<DeviceSizes, SizesError> {
        if data.len() < SIZES_LEN_BASIC {
            return Err(SizesError::TooShort(data.len()));
        }
        let word = |index: usize| {
            let at = index * 4;
            u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]])
        };
        Ok(DeviceSizes {
            users: word(4),
            fingerprints: word(6),
            records: word(8),
            oplog: word(10),
            admins: word(12),
            passwords: word(13),
            fingerprint_capacity: word(14),
            user_capacity: word(15),
            record_capacity: word(16),
            faces: (data.len() >= SIZES_LEN_FACE).then(|| FaceSizes {
                count: word(20),
                capacity: word(22),
            }),
        })
    }

    /// Encodes the reply a device would send: 92 bytes with faces, 80 without. The "remaining"
    /// words are derived from capacity minus count, as firmware reports them.
    pub fn encode(&self) -> Vec<u8> {
        let mut words = [0u32; 23];
        words[4] = self.users;
        words[5] = self.user_capacity.saturating_sub(self.users);
        words[6] = self.fingerprints;
        words[7] = self.fingerprint_capacity.saturating_sub(self.fingerprints);
        words[8] = self.records;
        words[9] = self.record_capacity.saturating_sub(self.records);
        words[10] = self.oplog;
        words[12] = self.admins;
        words[13] = self.passwords;
        words[14] = self.fingerprint_capacity;
        words[15] = self.user_capacity;
        words[16] = self.record_capacity;
        words[17] = words[7];
        words[18] = words[5];
        words[19] = words[9];
        let len = match self.faces {
            Some(faces) => {
                words[20] = faces.count;
                words[21] = faces.capacity.saturating_sub(faces.count);
                words[22] = faces.capacity;
                23
            }
            None => 20,
        };
        words[..len].iter().flat_map(|w| w.to_le_bytes()).collect()
    }
}
