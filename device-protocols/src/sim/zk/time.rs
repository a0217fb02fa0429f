//! Between the shared [`CalendarTime`] (the emulator's clock, generated records) and the ZK
//! wire's [`ZkTime`].

use crate::sim::clock::CalendarTime;
use crate::zk::{ZkDateTime, ZkTime};

/// The ZK encoding of a calendar time (years outside 2000–2099 wrap, as on the wire).
pub(crate) fn to_zk(time: CalendarTime) -> ZkTime {
    ZkTime::from_parts(ZkDateTime {
        year: time.year as u16,
        month: time.month,
        day: time.day,
        hour: time.hour,
        minute: time.minute,
        second: time.second,
    })
}

/// The calendar fields a ZK time encodes (its day may exceed the month's length).
pub(crate) fn from_zk(time: ZkTime) -> CalendarTime {
    let parts = time.to_parts();
    CalendarTime {
        year: i64::from(parts.year),
        month: parts.month,
        day: parts.day,
        hour: parts.hour,
        minute: parts.minute,
        second: parts.second,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_calendar_time_survives_the_wire() {
        let time = CalendarTime::parse("2024-02-29 12:34:56").unwrap();
        assert_eq!(from_zk(to_zk(time)), time);
    }
}
