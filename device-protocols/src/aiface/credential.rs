//! One credential of one user: the `(enrollid, backupnum)` pair and its `record` value.
//!
//! The device lists and transfers users one credential at a time, so this is the unit the agent
//! stores, compares and restores.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::lenient;

/// The credential slot number (`backupnum`), kept raw.
///
/// The sources disagree about some slots (10 and 11 are swapped in one vendor example), so the
/// number itself is what the agent stores; [`BackupNum::kind`] is only an interpretation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct BackupNum(pub u16);

impl<'de> Deserialize<'de> for BackupNum {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = lenient::de_u64(d)?;
        u16::try_from(n)
            .map(BackupNum)
            .map_err(|_| serde::de::Error::custom(format!("backupnum {n} is out of range")))
    }
}

impl BackupNum {
    /// Slot of the base64 face photo, which is the face enrolment on AiFace terminals.
    pub const PHOTO: BackupNum = BackupNum(50);
    /// Slot of the password/PIN (a JSON number on the wire).
    pub const PASSWORD: BackupNum = BackupNum(10);
    /// Slot of the RFID card number (a JSON number on the wire).
    pub const CARD: BackupNum = BackupNum(11);

    /// The most likely meaning of the slot according to the vendor's main table.
    pub fn kind(self) -> CredentialKind {
        match self.0 {
            n @ 0..=9 => CredentialKind::Fingerprint(n as u8),
            10 => CredentialKind::Password,
            11 => CredentialKind::Card,
            n @ 20..=27 => CredentialKind::StaticFace(n as u8 - 20),
            n @ 30..=41 => CredentialKind::PalmVein(n as u8),
            50 => CredentialKind::Photo,
            n => CredentialKind::Other(n),
        }
    }
}

impl fmt::Display for BackupNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Interpretation of a [`BackupNum`], for summaries and per-type counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CredentialKind {
    /// Fingerprint template in slot 0–9.
    Fingerprint(u8),
    /// Password / PIN (slot 10).
    Password,
    /// RFID card number (slot 11).
    Card,
    /// "Static face" template, slot 20–27 (index 0–7).
    StaticFace(u8),
    /// Palm vein template (40–41 in rev 3.0, 30–37 in rev 2.7; the raw slot is kept).
    PalmVein(u8),
    /// Base64 JPEG face photo (slot 50).
    Photo,
    /// A slot the documentation does not describe (e.g. 51, reported only by a third party).
    Other(u16),
}

/// The `record` of a credential with its original JSON type.
///
/// Passwords and cards travel as JSON numbers, templates and photos as strings; a restore must
/// send each back the way it came, so the type is part of the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CredentialValue {
    /// A JSON number (password, card number). Kept as `serde_json::Number`, so no rounding.
    Number(serde_json::Number),
    /// A JSON string (template, base64 photo, or a number the firmware quoted).
    Text(String),
}

impl CredentialValue {
    /// The value as text: card numbers as decimal digits, templates and photos unchanged.
    ///
    /// Card numbers can exceed what a float holds exactly, so storage keys and displays should
    /// use this rather than a numeric conversion.
    pub fn as_text(&self) -> String {
        match self {
            CredentialValue::Number(n) => n.to_string(),
            CredentialValue::Text(s) => s.clone(),
        }
    }

    /// Size of the value in bytes as it travels, for progress and limits (photos are large).
    pub fn wire_len(&self) -> usize {
        match self {
            CredentialValue::Number(n) => n.to_string().len(),
            CredentialValue::Text(s) => s.len(),
        }
    }
}

/// A user credential as it appears in a `getuserinfo` reply, a `senduser` push and a
/// `setuserinfo` command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserCredential {
    /// The user's ID on the device; the key for everything.
    #[serde(deserialize_with = "lenient::de_u64")]
    pub enrollid: u64,
    /// The user's display name (UTF-8). Absent in some firmware replies.
    #[serde(
        default,
        deserialize_with = "lenient::de_opt_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub name: Option<String>,
    /// Which slot this credential occupies.
    pub backupnum: BackupNum,
    /// 0 normal user, 1 administrator, 2 "super user"; kept raw.
    #[serde(
        default,
        deserialize_with = "lenient::de_opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub admin: Option<u64>,
    /// The template, photo, password or card number.
    pub record: CredentialValue,
    /// Fields this crate does not interpret, kept so nothing the device said is lost.
    #[serde(flatten)]
    pub extras: BTreeMap<String, Value>,
}

/// Identifies one credential on one device: what `getuserlist` lists and `getuserinfo` fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CredentialRef {
    /// The user's ID on the device.
    pub enrollid: u64,
    /// The credential slot.
    pub backupnum: BackupNum,
}

impl fmt::Display for CredentialRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "enrollid {} backupnum {}", self.enrollid, self.backupnum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_kinds_follow_the_main_table() {
        assert_eq!(BackupNum(3).kind(), CredentialKind::Fingerprint(3));
        assert_eq!(BackupNum(10).kind(), CredentialKind::Password);
        assert_eq!(BackupNum(11).kind(), CredentialKind::Card);
        assert_eq!(BackupNum(21).kind(), CredentialKind::StaticFace(1));
        assert_eq!(BackupNum(50).kind(), CredentialKind::Photo);
        assert_eq!(BackupNum(51).kind(), CredentialKind::Other(51));
    }

    #[test]
    fn big_card_numbers_keep_every_digit() {
        let v: CredentialValue = serde_json::from_str("18446744073709551615").unwrap();
        assert_eq!(v.as_text(), "18446744073709551615");
    }
}
