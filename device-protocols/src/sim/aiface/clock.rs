//! The terminal's wall clock: zone-less `YYYY-MM-DD HH:MM:SS`, set from the server's
//! `cloudtime` (at `reg`, in `sendlog` replies, by `settime`), like the real firmware.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// A settable clock that keeps running from the last value it was set to.
pub struct DeviceClock {
    seconds_at_set: i64,
    set_at: Instant,
}

impl DeviceClock {
    /// A clock starting at the host's UTC time (a device that never met a server).
    pub fn from_host() -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        DeviceClock {
            seconds_at_set: now,
            set_at: Instant::now(),
        }
    }

    /// Sets the clock from a `YYYY-MM-DD HH:MM:SS` string; ignores text in any other format,
    /// as a terminal would keep its clock on a bad `cloudtime`.
    pub fn set(&mut self, text: &str) -> bool {
        match parse_civil(text) {
            Some(seconds) => {
                self.seconds_at_set = seconds;
                self.set_at = Instant::now();
                true
            }
            None => false,
        }
    }

    /// The current device time as `YYYY-MM-DD HH:MM:SS`.
    pub fn now(&self) -> String {
        format_civil(self.seconds_at_set + self.set_at.elapsed().as_secs() as i64)
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

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

fn parse_civil(text: &str) -> Option<i64> {
    let (date, time) = text.trim().split_once(' ')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let mut t = time.split(':').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (d.next()??, d.next()??, d.next()??);
    let (hour, minute, second) = (t.next()??, t.next()??, t.next()??);
    let valid = (1..=12).contains(&month)
        && (1..=31).contains(&day)
        && (0..24).contains(&hour)
        && (0..60).contains(&minute)
        && (0..60).contains(&second);
    valid.then(|| days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

fn format_civil(seconds: i64) -> String {
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    let rest = seconds.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
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
            assert_eq!(format_civil(parse_civil(text).unwrap()), text);
        }
        assert_eq!(
            parse_civil("2026-03-04T08:00:00.000Z"),
            None,
            "ISO UTC is not the device format"
        );
    }

    #[test]
    fn the_clock_takes_cloudtime() {
        let mut clock = DeviceClock::from_host();
        assert!(clock.set("2030-05-06 07:08:09"));
        assert!(clock.now().starts_with("2030-05-06 07:08"));
        assert!(!clock.set("garbage"));
    }
}
