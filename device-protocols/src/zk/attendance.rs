//! Attendance records: 40-byte (TFT), 16-byte (extended BW) and 8-byte (old BW) layouts.
//!
//! Field order differs between layouts (verify and state swap places in the 16-byte one), so the
//! record type names fields by meaning and each layout maps them by offset.

use super::dataset::records_of;
use super::layout::{detect, RecordLayout};
use super::record::{is_printable_field, put_text, u16_at, u32_at, RecordError, UserId};
use super::text::TextCodec;
use super::time::ZkTime;

/// The on-device attendance record layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttendanceLayout {
    /// 40 bytes: uid, user-id string, verify, time, state, workcode.
    Full40,
    /// 16 bytes: numeric user id, time, state, verify, workcode.
    Extended16,
    /// 8 bytes: uid, verify, time, state.
    Compact8,
}

/// One attendance event ("punch").
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AttendanceRecord {
    /// Internal user index (40- and 8-byte layouts). Recycled after deletes, so resolving it
    /// through the user table can name the wrong person for old records.
    pub uid: Option<u16>,
    /// User id (string in 40-byte records, number in 16-byte ones; absent in 8-byte ones).
    pub user_id: Option<UserId>,
    /// Match method: 0 password, 1 fingerprint, 2 card, others model-specific.
    pub verify: u8,
    /// Punch state: 0 check-in, 1 check-out, 2 break-out, 3 break-in, 4 OT-in, 5 OT-out.
    pub state: u8,
    /// When it happened, device local time.
    pub time: ZkTime,
    /// Work code (40- and 16-byte layouts).
    pub workcode: Option<u32>,
}

impl AttendanceLayout {
    fn name(self) -> &'static str {
        match self {
            AttendanceLayout::Full40 => "40-byte attendance",
            AttendanceLayout::Extended16 => "16-byte attendance",
            AttendanceLayout::Compact8 => "8-byte attendance",
        }
    }

    fn time_offset(self) -> usize {
        match self {
            AttendanceLayout::Full40 => 27,
            AttendanceLayout::Extended16 => 4,
            AttendanceLayout::Compact8 => 3,
        }
    }
}

impl RecordLayout for AttendanceLayout {
    const ALL: &'static [AttendanceLayout] = &[
        AttendanceLayout::Full40,
        AttendanceLayout::Extended16,
        AttendanceLayout::Compact8,
    ];

    fn record_len(self) -> usize {
        match self {
            AttendanceLayout::Full40 => 40,
            AttendanceLayout::Extended16 => 16,
            AttendanceLayout::Compact8 => 8,
        }
    }

    fn looks_plausible(self, records: &[u8]) -> bool {
        records.chunks_exact(self.record_len()).all(|r| {
            let time = ZkTime(u32_at(r, self.time_offset()));
            let time_ok = time.0 != 0 && time.is_plausible();
            match self {
                AttendanceLayout::Full40 => time_ok && r[2] != 0 && is_printable_field(&r[2..26]),
                // Firmware leaves the two reserved bytes zero.
                AttendanceLayout::Extended16 => time_ok && r[8] <= 15 && r[10..12] == [0, 0],
                AttendanceLayout::Compact8 => time_ok && u16_at(r, 0) != 0 && r[7] <= 15,
            }
        })
    }
}

impl AttendanceRecord {
    /// Decodes one record of `layout`; `bytes` must be exactly one record long.
    pub fn decode(bytes: &[u8], layout: AttendanceLayout, codec: &TextCodec) -> AttendanceRecord {
        debug_assert_eq!(bytes.len(), layout.record_len());
        match layout {
            AttendanceLayout::Full40 => AttendanceRecord {
                uid: Some(u16_at(bytes, 0)),
                user_id: Some(UserId::Text(codec.decode_field(&bytes[2..26]))),
                verify: bytes[26],
                time: ZkTime(u32_at(bytes, 27)),
                state: bytes[31],
                workcode: Some(u32_at(bytes, 32)),
            },
            AttendanceLayout::Extended16 => AttendanceRecord {
                uid: None,
                user_id: Some(UserId::Number(u32_at(bytes, 0))),
                time: ZkTime(u32_at(bytes, 4)),
                state: bytes[8],
                verify: bytes[9],
                workcode: Some(u32_at(bytes, 12)),
            },
            AttendanceLayout::Compact8 => AttendanceRecord {
                uid: Some(u16_at(bytes, 0)),
                user_id: None,
                verify: bytes[2],
                time: ZkTime(u32_at(bytes, 3)),
                state: bytes[7],
                workcode: None,
            },
        }
    }

    /// Encodes the record in `layout` (the emulator's job); fields the layout needs must be set.
    pub fn encode(&self, layout: AttendanceLayout) -> Result<Vec<u8>, RecordError> {
        let name = layout.name();
        let missing =
            |field: &str| RecordError::NotRepresentable(format!("a {name} record needs a {field}"));
        let mut out = vec![0u8; layout.record_len()];
        out[layout.time_offset()..layout.time_offset() + 4]
            .copy_from_slice(&self.time.0.to_le_bytes());
        match layout {
            AttendanceLayout::Full40 => {
                let uid = self.uid.ok_or_else(|| missing("uid"))?;
                out[0..2].copy_from_slice(&uid.to_le_bytes());
                match &self.user_id {
                    Some(UserId::Text(text)) => put_text(&mut out[2..26], text, "user id", name)?,
                    Some(UserId::Number(n)) => put_text(
                        &mut out[2..26],
                        &super::text::DeviceText::utf8(&n.to_string()),
                        "user id",
                        name,
                    )?,
                    None => return Err(missing("user id")),
                }
                out[26] = self.verify;
                out[31] = self.state;
                out[32..36].copy_from_slice(&self.workcode.unwrap_or(0).to_le_bytes());
            }
            AttendanceLayout::Extended16 => {
                let number = self
                    .user_id
                    .as_ref()
                    .and_then(UserId::as_number)
                    .ok_or_else(|| missing("numeric user id"))?;
                out[0..4].copy_from_slice(&number.to_le_bytes());
                out[8] = self.state;
                out[9] = self.verify;
                out[12..16].copy_from_slice(&self.workcode.unwrap_or(0).to_le_bytes());
            }
            AttendanceLayout::Compact8 => {
                let uid = self.uid.ok_or_else(|| missing("uid"))?;
                out[0..2].copy_from_slice(&uid.to_le_bytes());
                out[2] = self.verify;
                out[7] = self.state;
            }
        }
        Ok(out)
    }
}

/// The attendance records decoded from one bulk read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttendanceLog {
    /// The layout used; for an empty log, the hint.
    pub layout: Option<AttendanceLayout>,
    /// Whether the record count matched the device's reported record count.
    pub count_consistent: bool,
    /// Records in device order (oldest first on real firmware).
    pub records: Vec<AttendanceRecord>,
}

/// Decodes an attendance dataset read with `CMD_ATTLOG_RRQ`; see [`super::user::decode_users`]
/// for the meaning of `device_count` and `hint`.
pub fn decode_attendance(
    dataset: &[u8],
    device_count: u32,
    hint: Option<AttendanceLayout>,
    codec: &TextCodec,
) -> Result<AttendanceLog, RecordError> {
    let records = records_of(dataset)?;
    if records.is_empty() {
        return Ok(AttendanceLog {
            layout: hint,
            count_consistent: device_count == 0,
            records: Vec::new(),
        });
    }
    let detection = detect(records, device_count, hint)?;
    Ok(AttendanceLog {
        layout: Some(detection.layout),
        count_consistent: detection.count_consistent,
        records: records
            .chunks_exact(detection.layout.record_len())
            .map(|r| AttendanceRecord::decode(r, detection.layout, codec))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zk::dataset::dataset_of;
    use crate::zk::layout::LayoutError;

    /// 80 bytes are 2 × 40, 5 × 16 and 10 × 8: only the count, or a hint, can decide.
    #[test]
    fn ambiguous_sizes_need_the_count_or_a_hint() {
        let dataset = dataset_of(&[0u8; 80]);
        let codec = TextCodec::default();
        for (count, layout) in [
            (2, AttendanceLayout::Full40),
            (5, AttendanceLayout::Extended16),
            (10, AttendanceLayout::Compact8),
        ] {
            let log = decode_attendance(&dataset, count, None, &codec).unwrap();
            assert_eq!((log.layout, log.count_consistent), (Some(layout), true));
        }
        assert!(matches!(
            decode_attendance(&dataset, 3, None, &codec),
            Err(RecordError::Layout(LayoutError::Ambiguous { .. }))
        ));
        let hinted =
            decode_attendance(&dataset, 3, Some(AttendanceLayout::Compact8), &codec).unwrap();
        assert_eq!(hinted.layout, Some(AttendanceLayout::Compact8));
        assert!(!hinted.count_consistent);
        assert!(matches!(
            decode_attendance(&dataset_of(&[0u8; 81]), 3, None, &codec),
            Err(RecordError::Layout(LayoutError::NoFit { .. }))
        ));
    }

    /// With a wrong count, 80 bytes of real records must still decode in their own layout only.
    #[test]
    fn plausibility_recognises_real_records_despite_a_wrong_count() {
        for layout in [AttendanceLayout::Compact8, AttendanceLayout::Extended16] {
            let n = 80 / layout.record_len() as u16;
            let records: Vec<u8> = (1..=n)
                .flat_map(|uid| {
                    AttendanceRecord {
                        uid: Some(uid),
                        user_id: Some(UserId::Number(1000 + u32::from(uid))),
                        verify: 1,
                        state: 0,
                        time: ZkTime(0x2368_B36B + u32::from(uid) * 60),
                        workcode: Some(0),
                    }
                    .encode(layout)
                    .unwrap()
                })
                .collect();
            let log =
                decode_attendance(&dataset_of(&records), 0, None, &TextCodec::default()).unwrap();
            assert_eq!(log.layout, Some(layout));
            assert!(!log.count_consistent);
        }
    }
}
