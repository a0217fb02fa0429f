//! ZK time: the device clock and attendance timestamps as one u32.
//!
//! The encoding treats every month as 31 days and only covers 2000–2099, so a decoded value can be
//! "February 31". The raw value is therefore kept beside the interpreted parts: the agent stores
//! both and never "fixes" one from the other.

/// A device timestamp in the ZK encoding (naive local time, no zone).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ZkTime(pub u32);

/// The calendar fields a [`ZkTime`] encodes. `day` may exceed the month's real length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZkDateTime {
    /// 2000..=2099 for values the encoding can represent directly.
    pub year: u16,
    /// 1..=12.
    pub month: u8,
    /// 1..=31.
    pub day: u8,
    /// 0..=23.
    pub hour: u8,
    /// 0..=59.
    pub minute: u8,
    /// 0..=59.
    pub second: u8,
}

/// The device's own clock text, `YYYY-MM-DD HH:MM:SS`: naive local time exactly as the
/// terminal keeps it (no zone, no shifting), the form punches are stored and keyed with. A
/// broken clock's "February 31" is kept as such rather than corrected.
impl std::fmt::Display for ZkDateTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

impl ZkTime {
    /// Encodes calendar fields; the year is taken modulo 100 as the device does.
    pub fn from_parts(t: ZkDateTime) -> ZkTime {
        let days = (u32::from(t.year) % 100) * 12 * 31
            + (u32::from(t.month).saturating_sub(1)) * 31
            + u32::from(t.day).saturating_sub(1);
        ZkTime(
            days * 86_400
                + (u32::from(t.hour) * 60 + u32::from(t.minute)) * 60
                + u32::from(t.second),
        )
    }

    /// Decodes into calendar fields.
    pub fn to_parts(self) -> ZkDateTime {
        let mut t = self.0;
        let second = (t % 60) as u8;
        t /= 60;
        let minute = (t % 60) as u8;
        t /= 60;
        let hour = (t % 24) as u8;
        t /= 24;
        let day = (t % 31) as u8 + 1;
        t /= 31;
        let month = (t % 12) as u8 + 1;
        let year = (t / 12) as u16 + 2000;
        ZkDateTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
        }
    }

    /// Whether the value looks like a real timestamp (year 2000–2099); used to tell record
    /// layouts apart when the byte count alone is ambiguous.
    pub fn is_plausible(self) -> bool {
        self.to_parts().year <= 2099
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_published_vector() {
        let parts = ZkTime(0x2368_B36B).to_parts();
        assert_eq!(
            parts,
            ZkDateTime {
                year: 2018,
                month: 6,
                day: 25,
                hour: 17,
                minute: 50,
                second: 35
            }
        );
        assert_eq!(ZkTime::from_parts(parts), ZkTime(0x2368_B36B));
        assert_eq!(parts.to_string(), "2018-06-25 17:50:35");
    }
}
