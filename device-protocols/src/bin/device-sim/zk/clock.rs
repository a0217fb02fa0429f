//! The emulated terminal's clock: host UTC plus an offset that `SET_TIME` moves, as a real
//! device's RTC would. Kept apart so the calendar arithmetic is tested on its own.

use std::time::{SystemTime, UNIX_EPOCH};

use device_protocols::zk::{ZkDateTime, ZkTime};

/// A settable clock.
#[derive(Default)]
pub struct DeviceClock {
    offset_secs: i64,
}

impl DeviceClock {
    /// The device's current time.
    pub fn now(&self) -> ZkTime {
        ZkTime::from_parts(from_unix(host_unix() + self.offset_secs))
    }

    /// Sets the device time.
    pub fn set(&mut self, time: ZkTime) {
        self.offset_secs = to_unix(time.to_parts()) - host_unix();
    }
}

fn host_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Unix seconds to calendar fields (proleptic Gregorian, days-from-civil inverse).
pub fn from_unix(secs: i64) -> ZkDateTime {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    ZkDateTime {
        year: year as u16,
        month: month as u8,
        day: day as u8,
        hour: (rem / 3600) as u8,
        minute: (rem / 60 % 60) as u8,
        second: (rem % 60) as u8,
    }
}

/// Calendar fields to Unix seconds.
pub fn to_unix(t: ZkDateTime) -> i64 {
    let (month, day) = (i64::from(t.month), i64::from(t.day));
    let year = i64::from(t.year) - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + i64::from(t.hour) * 3600 + i64::from(t.minute) * 60 + i64::from(t.second)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_conversion_round_trips_across_leap_days() {
        // 2024-02-29 12:34:56 UTC.
        let leap = 1_709_210_096;
        let parts = from_unix(leap);
        assert_eq!((parts.year, parts.month, parts.day), (2024, 2, 29));
        assert_eq!((parts.hour, parts.minute, parts.second), (12, 34, 56));
        for secs in [0, leap, leap + 86_400, 4_102_444_799] {
            assert_eq!(to_unix(from_unix(secs)), secs);
        }
    }
}
