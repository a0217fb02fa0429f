//! User records: the 72-byte layout of TFT firmware and the 28-byte layout of older firmware.

use super::dataset::records_of;
use super::layout::{detect, RecordLayout};
use super::record::{is_printable_field, put_text, u16_at, u32_at, RecordError, UserId};
use super::text::{DeviceText, TextCodec};

/// The on-device user record layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UserLayout {
    /// 72-byte "ZK8" record (TFT/SSR firmware): string user id, 24-byte name.
    Extended72,
    /// 28-byte "ZK6" record (older black-and-white firmware): numeric user id, 8-byte name.
    Compact28,
}

/// Per-user time-zone settings, whose shape differs by layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimeZones {
    /// 72-byte layout: flag (0 = use the group's zones, 1 = own) and three zone numbers.
    Extended {
        /// 0 = group zones, 1 = own zones.
        own: u16,
        /// Zone numbers.
        zones: [u16; 3],
    },
    /// 28-byte layout: a bit set of zones.
    Compact {
        /// Zone bits.
        bits: u16,
    },
}

/// One user as the device stores it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UserRecord {
    /// Internal index (1…65535), recycled after deletes; not a stable identity.
    pub uid: u16,
    /// Bit 0 = disabled; bits 1–3 = level (0 user, 2 enroller, 6 admin, 14 super-admin).
    pub privilege: u8,
    /// Password digits.
    pub password: DeviceText,
    /// Display name in the device code page.
    pub name: DeviceText,
    /// Card number (32 bits on the 72-byte layout, 40 bits on the 28-byte one).
    pub card: u64,
    /// Group (1 = default).
    pub group: u8,
    /// The user id ("PIN2") operators know the user by.
    pub user_id: UserId,
    /// Time-zone settings.
    pub time_zones: TimeZones,
}

impl UserLayout {
    fn name(self) -> &'static str {
        match self {
            UserLayout::Extended72 => "72-byte user",
            UserLayout::Compact28 => "28-byte user",
        }
    }
}

impl RecordLayout for UserLayout {
    const ALL: &'static [UserLayout] = &[UserLayout::Extended72, UserLayout::Compact28];

    fn record_len(self) -> usize {
        match self {
            UserLayout::Extended72 => 72,
            UserLayout::Compact28 => 28,
        }
    }

    fn looks_plausible(self, records: &[u8]) -> bool {
        records.chunks_exact(self.record_len()).all(|r| {
            let privilege_ok = r[2] & 0xF0 == 0;
            let uid_ok = u16_at(r, 0) != 0;
            match self {
                UserLayout::Extended72 => {
                    uid_ok && privilege_ok && r[48] != 0 && is_printable_field(&r[48..72])
                }
                UserLayout::Compact28 => uid_ok && privilege_ok,
            }
        })
    }
}

impl UserRecord {
    /// Decodes one record of `layout`; `bytes` must be exactly one record long.
    pub fn decode(bytes: &[u8], layout: UserLayout, codec: &TextCodec) -> UserRecord {
        debug_assert_eq!(bytes.len(), layout.record_len());
        match layout {
            UserLayout::Extended72 => UserRecord {
                uid: u16_at(bytes, 0),
                privilege: bytes[2],
                password: codec.decode_field(&bytes[3..11]),
                name: codec.decode_field(&bytes[11..35]),
                card: u64::from(u32_at(bytes, 35)),
                group: bytes[39],
                time_zones: TimeZones::Extended {
                    own: u16_at(bytes, 40),
                    zones: [u16_at(bytes, 42), u16_at(bytes, 44), u16_at(bytes, 46)],
                },
                user_id: UserId::Text(codec.decode_field(&bytes[48..72])),
            },
            UserLayout::Compact28 => {
                let mut card = [0u8; 8];
                card[..5].copy_from_slice(&bytes[16..21]);
                UserRecord {
                    uid: u16_at(bytes, 0),
                    privilege: bytes[2],
                    password: codec.decode_field(&bytes[3..8]),
                    name: codec.decode_field(&bytes[8..16]),
                    card: u64::from_le_bytes(card),
                    group: bytes[21],
                    time_zones: TimeZones::Compact {
                        bits: u16_at(bytes, 22),
                    },
                    user_id: UserId::Number(u32_at(bytes, 24)),
                }
            }
        }
    }

    /// Encodes the record in `layout`, refusing (never truncating) values that do not fit.
    pub fn encode(&self, layout: UserLayout) -> Result<Vec<u8>, RecordError> {
        let name = layout.name();
        let mut out = vec![0u8; layout.record_len()];
        out[0..2].copy_from_slice(&self.uid.to_le_bytes());
        out[2] = self.privilege;
        match layout {
            UserLayout::Extended72 => {
                put_text(&mut out[3..11], &self.password, "password", name)?;
                put_text(&mut out[11..35], &self.name, "name", name)?;
                let card = u32::try_from(self.card).map_err(|_| {
                    RecordError::NotRepresentable(format!(
                        "card {} does not fit the 32-bit card field of the {name} record",
                        self.card
                    ))
                })?;
                out[35..39].copy_from_slice(&card.to_le_bytes());
                out[39] = self.group;
                let TimeZones::Extended { own, zones } = self.time_zones else {
                    return Err(RecordError::NotRepresentable(format!(
                        "compact time-zone bits cannot be written to a {name} record"
                    )));
                };
                out[40..42].copy_from_slice(&own.to_le_bytes());
                for (i, zone) in zones.iter().enumerate() {
                    out[42 + 2 * i..44 + 2 * i].copy_from_slice(&zone.to_le_bytes());
                }
                let user_id = match &self.user_id {
                    UserId::Text(text) => text.clone(),
                    UserId::Number(number) => DeviceText::utf8(&number.to_string()),
                };
                put_text(&mut out[48..72], &user_id, "user id", name)?;
            }
            UserLayout::Compact28 => {
                put_text(&mut out[3..8], &self.password, "password", name)?;
                put_text(&mut out[8..16], &self.name, "name", name)?;
                if self.card >= 1 << 40 {
                    return Err(RecordError::NotRepresentable(format!(
                        "card {} does not fit the 40-bit card field of the {name} record",
                        self.card
                    )));
                }
                out[16..21].copy_from_slice(&self.card.to_le_bytes()[..5]);
                out[21] = self.group;
                let TimeZones::Compact { bits } = self.time_zones else {
                    return Err(RecordError::NotRepresentable(format!(
                        "per-user time-zone numbers cannot be written to a {name} record"
                    )));
                };
                out[22..24].copy_from_slice(&bits.to_le_bytes());
                let number = self.user_id.as_number().ok_or_else(|| {
                    RecordError::NotRepresentable(format!(
                        "user id {:?} is not a number, which the {name} record requires",
                        self.user_id.display()
                    ))
                })?;
                out[24..28].copy_from_slice(&number.to_le_bytes());
            }
        }
        Ok(out)
    }
}

/// The users decoded from one bulk read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserTable {
    /// The layout the dataset was decoded with; for an empty table, the hint (an empty dataset
    /// reveals nothing about the layout).
    pub layout: Option<UserLayout>,
    /// Whether the record count matched the device's reported user count.
    pub count_consistent: bool,
    /// The users in device order.
    pub users: Vec<UserRecord>,
}

/// Decodes a user dataset (length prefix + records) read with `CMD_USERTEMP_RRQ`.
///
/// `device_count` is the user count from `GET_FREE_SIZES`; `hint` is the configured or previously
/// seen layout, used only when the count is inconsistent.
pub fn decode_users(
    dataset: &[u8],
    device_count: u32,
    hint: Option<UserLayout>,
    codec: &TextCodec,
) -> Result<UserTable, RecordError> {
    let records = records_of(dataset)?;
    if records.is_empty() {
        return Ok(UserTable {
            layout: hint,
            count_consistent: device_count == 0,
            users: Vec::new(),
        });
    }
    let detection = detect(records, device_count, hint)?;
    Ok(UserTable {
        layout: Some(detection.layout),
        count_consistent: detection.count_consistent,
        users: records
            .chunks_exact(detection.layout.record_len())
            .map(|r| UserRecord::decode(r, detection.layout, codec))
            .collect(),
    })
}
