//! Realtime attendance events (`CMD_REG_EVENT`, research `zk-protocol.md` §3.6).
//!
//! A client registers a mask with [`crate::zk::Request::RegisterEvents`]; from then on the
//! terminal pushes packets with code 500 (`REG_EVENT`) whose **session field is the event code**
//! and whose reply id is the terminal's queue index. It re-sends the oldest unacknowledged
//! event until the client answers it with `ACK_OK` carrying the real session id and that
//! event's reply id ([`crate::zk::ClientSession::event_ack`]). Events give latency only: the
//! attendance log stays the record, so a client must still poll it.
//!
//! `EF_ATTLOG` payloads come in several sizes. The modern form is `user id string[24]`,
//! `verify u8`, `state u8` (high bit set: the verification failed, not a punch), a 6-byte time
//! `YY-2000 MM DD hh mm ss`, then optional trailing bytes (a u32 work code in the 36-byte
//! form; 37 and ≥ 52 bytes on other firmware). The small forms carry the internal uid instead
//! of the user id: u16 (10 bytes), u32 (12 bytes), or u16 and 4 unknown bytes (14 bytes,
//! ZEM300). Any other size is refused rather than guessed.

use super::record::{RecordError, UserId};
use super::text::{DeviceText, TextCodec};
use super::time::ZkDateTime;

/// Mask bit and event code of an attendance record (`EF_ATTLOG`).
pub const EF_ATTLOG: u32 = 1;

/// Bytes of the user-id field of the modern form.
const USER_ID_LEN: usize = 24;

/// The payload form a terminal sends (the emulator's choice; a decoder accepts all of them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventForm {
    /// `user id[24] verify state time[6]`: 32 bytes.
    UserId32,
    /// The 32-byte form followed by a u32 work code: 36 bytes.
    UserId36,
    /// `uid u16, verify, state, time[6]`: 10 bytes (ZEM560).
    Uid10,
    /// `uid u32, verify, state, time[6]`: 12 bytes.
    Uid12,
}

/// Who punched: the user id string of the modern form, or the internal uid of a small form
/// (which the client must name through the user table).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventUser {
    /// The user id ("PIN2") as stored.
    UserId(UserId),
    /// The device's internal index.
    Uid(u32),
}

/// One decoded `EF_ATTLOG` event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttendanceEvent {
    /// Who punched.
    pub user: EventUser,
    /// Match method, as the log's verify byte.
    pub verify: u8,
    /// Punch state, as the log's state byte (high bit: failed verification).
    pub state: u8,
    /// Device local time, unshifted.
    pub time: ZkDateTime,
    /// The work code of the 36-byte form.
    pub workcode: Option<u32>,
    /// The payload's size, which tells the form.
    pub payload_len: usize,
}

impl AttendanceEvent {
    /// Whether this is a punch: firmware sets the state's high bit for a failed verification,
    /// which the log never records.
    pub fn is_punch(&self) -> bool {
        self.state & 0x80 == 0
    }

    /// Decodes an `EF_ATTLOG` payload; refuses sizes no documented firmware sends and times that
    /// are not a calendar time.
    pub fn decode(payload: &[u8], codec: &TextCodec) -> Result<AttendanceEvent, RecordError> {
        let len = payload.len();
        let (user, rest) = match len {
            10 | 14 => (
                EventUser::Uid(u32::from(u16::from_le_bytes([payload[0], payload[1]]))),
                &payload[2..],
            ),
            12 => (
                EventUser::Uid(u32::from_le_bytes([
                    payload[0], payload[1], payload[2], payload[3],
                ])),
                &payload[4..],
            ),
            32 | 36 | 37 => (
                EventUser::UserId(UserId::Text(codec.decode_field(&payload[..USER_ID_LEN]))),
                &payload[USER_ID_LEN..],
            ),
            n if n >= 52 => (
                EventUser::UserId(UserId::Text(codec.decode_field(&payload[..USER_ID_LEN]))),
                &payload[USER_ID_LEN..],
            ),
            _ => {
                return Err(RecordError::NotRepresentable(format!(
                    "an attendance event of {len} bytes is none of the known forms \
                     (10, 12, 14, 32, 36, 37 or at least 52 bytes)"
                )))
            }
        };
        let time = event_time(&rest[2..8]).ok_or_else(|| {
            RecordError::NotRepresentable(format!(
                "the attendance event's time bytes {:?} are not a calendar time",
                &rest[2..8]
            ))
        })?;
        let workcode = (len == 36)
            .then(|| u32::from_le_bytes([payload[32], payload[33], payload[34], payload[35]]));
        Ok(AttendanceEvent {
            user,
            verify: rest[0],
            state: rest[1],
            time,
            workcode,
            payload_len: len,
        })
    }

    /// Encodes the event in `form` (the emulator's job). Fails when the user does not fit the
    /// form: a user id in a small form, a uid in the modern one, a user id over 24 bytes.
    pub fn encode(&self, form: EventForm) -> Result<Vec<u8>, RecordError> {
        let mut out = Vec::with_capacity(36);
        match (form, &self.user) {
            (EventForm::UserId32 | EventForm::UserId36, EventUser::UserId(id)) => {
                let raw = match id {
                    UserId::Text(text) => text.raw.clone(),
                    UserId::Number(n) => DeviceText::utf8(&n.to_string()).raw,
                };
                if raw.len() > USER_ID_LEN {
                    return Err(RecordError::FieldTooLong {
                        field: "user id",
                        len: raw.len(),
                        max: USER_ID_LEN,
                        layout: "attendance event",
                    });
                }
                let mut field = [0u8; USER_ID_LEN];
                field[..raw.len()].copy_from_slice(&raw);
                out.extend_from_slice(&field);
            }
            (EventForm::Uid10, EventUser::Uid(uid)) => {
                let uid = u16::try_from(*uid).map_err(|_| {
                    RecordError::NotRepresentable(format!("uid {uid} does not fit 16 bits"))
                })?;
                out.extend_from_slice(&uid.to_le_bytes());
            }
            (EventForm::Uid12, EventUser::Uid(uid)) => out.extend_from_slice(&uid.to_le_bytes()),
            (form, user) => {
                return Err(RecordError::NotRepresentable(format!(
                    "the {form:?} event form cannot carry {user:?}"
                )))
            }
        }
        out.push(self.verify);
        out.push(self.state);
        let t = self.time;
        let year = t.year.checked_sub(2000).and_then(|y| u8::try_from(y).ok());
        let Some(year) = year.filter(|y| *y < 100) else {
            return Err(RecordError::NotRepresentable(format!(
                "year {} does not fit an event's two-digit year",
                t.year
            )));
        };
        out.extend_from_slice(&[year, t.month, t.day, t.hour, t.minute, t.second]);
        if form == EventForm::UserId36 {
            out.extend_from_slice(&self.workcode.unwrap_or(0).to_le_bytes());
        }
        Ok(out)
    }
}

fn event_time(bytes: &[u8]) -> Option<ZkDateTime> {
    let [yy, month, day, hour, minute, second] = <[u8; 6]>::try_from(bytes).ok()?;
    let plausible = yy < 100
        && (1..=12).contains(&month)
        && (1..=31).contains(&day)
        && hour < 24
        && minute < 60
        && second < 60;
    plausible.then_some(ZkDateTime {
        year: 2000 + u16::from(yy),
        month,
        day,
        hour,
        minute,
        second,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(user: EventUser) -> AttendanceEvent {
        AttendanceEvent {
            user,
            verify: 1,
            state: 0,
            time: ZkDateTime {
                year: 2026,
                month: 11,
                day: 30,
                hour: 10,
                minute: 31,
                second: 59,
            },
            workcode: None,
            payload_len: 0,
        }
    }

    #[test]
    fn every_form_round_trips_and_odd_sizes_are_refused() {
        let codec = TextCodec::default();
        let modern = event(EventUser::UserId(UserId::Text(DeviceText::utf8(
            "999111333",
        ))));
        for (form, len) in [(EventForm::UserId32, 32), (EventForm::UserId36, 36)] {
            let bytes = modern.encode(form).unwrap();
            assert_eq!(bytes.len(), len);
            let back = AttendanceEvent::decode(&bytes, &codec).unwrap();
            assert_eq!(
                (back.user.clone(), back.time),
                (modern.user.clone(), modern.time)
            );
            assert_eq!(back.workcode, (len == 36).then_some(0));
        }
        let small = event(EventUser::Uid(7));
        for (form, len) in [(EventForm::Uid10, 10), (EventForm::Uid12, 12)] {
            let bytes = small.encode(form).unwrap();
            assert_eq!(bytes.len(), len);
            let back = AttendanceEvent::decode(&bytes, &codec).unwrap();
            assert_eq!(back.user, EventUser::Uid(7));
            assert!(back.is_punch());
        }
        let mut fourteen = small.encode(EventForm::Uid10).unwrap();
        fourteen.extend_from_slice(&[0; 4]);
        assert_eq!(
            AttendanceEvent::decode(&fourteen, &codec).unwrap().user,
            EventUser::Uid(7)
        );
        let mut long = modern.encode(EventForm::UserId32).unwrap();
        long.resize(60, 0);
        assert!(AttendanceEvent::decode(&long, &codec).is_ok());
        for bad in [0usize, 8, 11, 20, 33, 40, 51] {
            assert!(
                AttendanceEvent::decode(&vec![0; bad], &codec).is_err(),
                "{bad}"
            );
        }
        assert!(modern.encode(EventForm::Uid10).is_err());
    }

    #[test]
    fn a_failed_verification_is_not_a_punch_and_a_bad_time_is_refused() {
        let codec = TextCodec::default();
        let mut bytes = event(EventUser::Uid(3)).encode(EventForm::Uid10).unwrap();
        bytes[3] = 0x80;
        assert!(!AttendanceEvent::decode(&bytes, &codec).unwrap().is_punch());
        bytes[5] = 13; // month 13
        assert!(AttendanceEvent::decode(&bytes, &codec).is_err());
    }
}
