//! The emulated terminal's real-time clock, shared by both emulators.
//!
//! A terminal keeps its own zone-less wall clock: it starts at some time (here the host's UTC),
//! is set by the server (AiFace `cloudtime`, ZK `SET_TIME`) and keeps running from the last value
//! it was set to. The protocols differ only in how they carry the time (text or a packed
//! integer), so the clock speaks calendar fields ([`CalendarTime`]) and each emulator converts.

use std::fmt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A settable clock that keeps running from the last value it was set to.
///
/// It runs on the host's monotonic clock, so a host clock step does not move the device time,
/// as it would not move a terminal's RTC.
pub struct DeviceClock {
    /// Device time, as a duration since 1970-01-01 00:00:00, when it was last set.
    at_set: Duration,
    /// When it was last set.
    set_at: Instant,
}

impl DeviceClock {
    /// A clock starting at the host's UTC time (a device that never met a server).
    pub fn from_host() -> Self {
        DeviceClock {
            at_set: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
            set_at: Instant::now(),
        }
    }

    /// The current device time.
    pub fn now(&self) -> CalendarTime {
        let seconds = (self.at_set + self.set_at.elapsed()).as_secs();
        CalendarTime::from_unix(i64::try_from(seconds).unwrap_or(i64::MAX))
    }

    /// Sets the device time; it runs on from `time`.
    pub fn set(&mut self, time: CalendarTime) {
        // Times before 1970 do not occur on these terminals; clamp rather than wrap.
        self.at_set = Duration::from_secs(u64::try_from(time.to_unix()).unwrap_or(0));
        self.set_at = Instant::now();
    }

    /// Sets the clock from `YYYY-MM-DD HH:MM:SS` text; ignores text in any other format (and
    /// says so with `false`), as a terminal keeps its clock on a bad `cloudtime`.
    pub fn set_from_text(&mut self, text: &str) -> bool {
        match CalendarTime::parse(text) {
            Some(time) => {
                self.set(time);
                true
            }
            None => false,
        }
    }
}

/// A zone-less date and time of day in the proleptic Gregorian calendar: what a terminal's
/// clock shows, and what its records are stamped with.
///
/// Fields are not range-checked: a protocol may carry out-of-range values (a ZK time has 31-day
/// months), and [`CalendarTime::to_unix`] carries them over as a calendar would.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CalendarTime {
    /// Year, e.g. 2026.
    pub year: i64,
    /// Month, 1–12.
    pub month: u8,
    /// Day of the month, 1–31.
    pub day: u8,
    /// Hour, 0–23.
    pub hour: u8,
    /// Minute, 0–59.
    pub minute: u8,
    /// Second, 0–59.
    pub second: u8,
}

impl CalendarTime {
    /// The calendar time `seconds` after 1970-01-01 00:00:00 (negative: before).
    pub fn from_unix(seconds: i64) -> Self {
        let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
        let rest = seconds.rem_euclid(86_400);
        CalendarTime {
            year,
            month: month as u8,
            day: day as u8,
            hour: (rest / 3600) as u8,
            minute: (rest / 60 % 60) as u8,
            second: (rest % 60) as u8,
        }
    }

    /// Seconds since 1970-01-01 00:00:00; the inverse of [`CalendarTime::from_unix`].
    pub fn to_unix(self) -> i64 {
        days_from_civil(self.year, i64::from(self.month), i64::from(self.day)) * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
    }

    /// Reads `YYYY-MM-DD HH:MM:SS` (surrounding white space allowed), the AiFace form; `None`
    /// for any other form or a field out of range.
    pub fn parse(text: &str) -> Option<Self> {
        let (date, time) = text.trim().split_once(' ')?;
        let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
        let mut t = time.split(':').map(|p| p.parse::<u8>().ok());
        let (year, month, day) = (d.next()??, d.next()??, d.next()??);
        let (hour, minute, second) = (t.next()??, t.next()??, t.next()??);
        let valid = (1..=12).contains(&month)
            && (1..=31).contains(&day)
            && hour < 24
            && minute < 60
            && second < 60;
        valid.then_some(CalendarTime {
            year,
            month: month as u8,
            day: day as u8,
            hour,
            minute,
            second,
        })
    }
}

/// Writes `YYYY-MM-DD HH:MM:SS`, the form [`CalendarTime::parse`] reads.
impl fmt::Display for CalendarTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (days-from-civil).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date `days` after 1970-01-01; the inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_time_round_trips() {
        for text in [
            "1970-01-01 00:00:00",
            "2000-02-29 12:34:56",
            "2026-03-04 23:59:59",
            "2045-01-01 00:00:00",
        ] {
            let time = CalendarTime::parse(text).unwrap();
            assert_eq!(time.to_string(), text);
            assert_eq!(CalendarTime::from_unix(time.to_unix()), time);
        }
        assert_eq!(
            CalendarTime::parse("2026-03-04T08:00:00.000Z"),
            None,
            "ISO UTC is not the device format"
        );
        assert_eq!(CalendarTime::parse("2026-13-04 08:00:00"), None);
        assert_eq!(CalendarTime::parse("2026-03-04 24:00:00"), None);
    }

    #[test]
    fn calendar_conversion_round_trips_across_leap_days() {
        // 2024-02-29 12:34:56 UTC.
        let leap = 1_709_210_096;
        let parts = CalendarTime::from_unix(leap);
        assert_eq!((parts.year, parts.month, parts.day), (2024, 2, 29));
        assert_eq!((parts.hour, parts.minute, parts.second), (12, 34, 56));
        for secs in [0, leap, leap + 86_400, 4_102_444_799] {
            assert_eq!(CalendarTime::from_unix(secs).to_unix(), secs);
        }
    }

    #[test]
    fn out_of_range_fields_carry_over_like_a_calendar() {
        // A ZK time may say 31 February; it means 3 March (2025 is not a leap year).
        let carried = CalendarTime {
            year: 2025,
            month: 2,
            day: 31,
            hour: 0,
            minute: 0,
            second: 0,
        };
        assert_eq!(
            CalendarTime::from_unix(carried.to_unix()).to_string(),
            "2025-03-03 00:00:00"
        );
    }

    #[test]
    fn the_clock_takes_cloudtime() {
        let mut clock = DeviceClock::from_host();
        assert!(clock.set_from_text("2030-05-06 07:08:09"));
        assert!(clock.now().to_string().starts_with("2030-05-06 07:08"));
        assert!(!clock.set_from_text("garbage"));
        assert!(clock.now().to_string().starts_with("2030-05-06 07:08"));
    }

    #[test]
    fn a_fresh_clock_shows_the_host_time() {
        let host = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let shown = DeviceClock::from_host().now().to_unix();
        assert!((shown - host).abs() <= 1, "{shown} vs {host}");
    }
}
