//! The users enrolled on the emulated terminal and their generated credentials.
//!
//! Values are deterministic functions of the enrollid, so a test can compute what the agent
//! should have read without sharing state with the emulator.

use std::collections::BTreeMap;

use crate::aiface::{BackupNum, CredentialValue, UserCredential, UserListEntry};
use base64::Engine;
use rand::{RngCore, SeedableRng};

use super::scenario::Scenario;

/// One user on the device.
#[derive(Debug, Clone)]
pub struct SimUser {
    /// Display name.
    pub name: String,
    /// 0 normal, 1 administrator.
    pub admin: u64,
    /// 1 enabled, 0 disabled (`enableuser`).
    pub enabled: bool,
    /// The user's credentials by slot.
    pub credentials: BTreeMap<BackupNum, CredentialValue>,
}

/// Card number of a generated user (a JSON number, as the firmware sends it).
pub(super) fn card_number(enrollid: u64) -> u64 {
    3_000_000_000 + enrollid
}

/// Password of a generated user.
pub(super) fn password(enrollid: u64) -> u64 {
    100_000 + enrollid % 900_000
}

/// A base64 "JPEG" of exactly `kb` KiB of text, starting with the JPEG magic like a real photo.
pub(super) fn photo(enrollid: u64, kb: usize) -> String {
    let mut bytes = vec![0u8; kb * 1024 / 4 * 3];
    rand::rngs::StdRng::seed_from_u64(enrollid).fill_bytes(&mut bytes);
    let magic = [0xFF, 0xD8, 0xFF];
    let keep = magic.len().min(bytes.len());
    bytes[..keep].copy_from_slice(&magic[..keep]);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A fingerprint template in the vendor's text form, with a `(N)` zero-run like real ones.
pub(super) fn fingerprint(enrollid: u64, slot: u16) -> String {
    let mut bytes = vec![0u8; 600];
    rand::rngs::StdRng::seed_from_u64(enrollid << 8 | u64::from(slot)).fill_bytes(&mut bytes);
    format!(
        "TSS21(128){}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// The users a scenario starts with.
pub(super) fn initial_users(scenario: &Scenario) -> BTreeMap<u64, SimUser> {
    (0..scenario.users)
        .map(|i| {
            let enrollid = scenario.first_enrollid + i;
            let name = scenario
                .names
                .get(i as usize)
                .cloned()
                .unwrap_or_else(|| format!("user{enrollid}"));
            (enrollid, generate(enrollid, name, scenario))
        })
        .collect()
}

/// A user with the credentials the scenario asks for.
pub(super) fn generate(enrollid: u64, name: String, scenario: &Scenario) -> SimUser {
    let mut credentials = BTreeMap::new();
    for slot in 0..u16::from(scenario.fingerprints.min(10)) {
        credentials.insert(
            BackupNum(slot),
            CredentialValue::Text(fingerprint(enrollid, slot)),
        );
    }
    if scenario.passwords {
        credentials.insert(
            BackupNum::PASSWORD,
            CredentialValue::Number(password(enrollid).into()),
        );
    }
    if scenario.cards {
        credentials.insert(
            BackupNum::CARD,
            CredentialValue::Number(card_number(enrollid).into()),
        );
    }
    if scenario.photo_kb > 0 {
        credentials.insert(
            BackupNum::PHOTO,
            CredentialValue::Text(photo(enrollid, scenario.photo_kb)),
        );
    }
    SimUser {
        name,
        admin: u64::from(enrollid < scenario.first_enrollid.saturating_add(scenario.admins)),
        enabled: true,
        credentials,
    }
}

/// The `getuserlist` lines of a set of users: one per credential, in enrollid/slot order.
pub(super) fn list_entries(users: &BTreeMap<u64, SimUser>) -> Vec<UserListEntry> {
    users
        .iter()
        .flat_map(|(&enrollid, user)| {
            user.credentials
                .keys()
                .map(move |&backupnum| UserListEntry {
                    enrollid,
                    admin: Some(user.admin),
                    backupnum,
                    extras: Default::default(),
                })
        })
        .collect()
}

/// One credential as `getuserinfo` and `senduser` carry it.
pub(super) fn credential(
    enrollid: u64,
    user: &SimUser,
    backupnum: BackupNum,
) -> Option<UserCredential> {
    Some(UserCredential {
        enrollid,
        name: Some(user.name.clone()),
        backupnum,
        admin: Some(user.admin),
        record: user.credentials.get(&backupnum)?.clone(),
        extras: Default::default(),
    })
}
