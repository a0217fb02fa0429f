//! ZK user records mapped onto the agent's read types.
//!
//! ZK delivers the whole user table in one bulk read, so there is nothing to fetch per
//! credential: the card (slot 11) and the password (slot 10) come with each record. They are
//! still offered to the sink as credentials, so a backup can restore them, and in
//! [`FetchMode::Missing`] only those the sink does not already hold unchanged are handed over.
//! Fingerprint templates come from a separate template bulk read in the same session; each is
//! the credential of its finger's slot (0–9), the template bytes as base64 text (as the AI06
//! carries its templates) with a valid flag other than 1 (a duress finger) kept in front
//! (`super::finger`), and they are counted against the device's own template count.

use super::finger::FingerValue;
use crate::device::{
    Credential, FetchMode, ReadError, ReadProgress, ReadSink, ReadUser, UserDetails, UserRead,
};
use crate::events::DeviceUser;
use device_protocols::aiface::CredentialValue;
use device_protocols::zk::{DeviceSizes, FingerTemplate, UserRecord, UserTable};
use std::collections::HashMap;

/// AiFace slot of the password.
const PASSWORD_SLOT: u16 = 10;
/// AiFace slot of the card.
const CARD_SLOT: u16 = 11;

/// Checks the decoded templates against the device's own template count; a read that holds
/// fewer (or more) templates than the device says it has is incomplete.
pub(super) fn check_templates(
    templates: &[FingerTemplate],
    sizes: &DeviceSizes,
) -> Result<(), ReadError> {
    if templates.len() != sizes.fingerprints as usize {
        return Err(ReadError::Incomplete(format!(
            "the device reports {} fingerprint templates but the template read holds {}; \
             nothing may be concluded from this read",
            sizes.fingerprints,
            templates.len()
        )));
    }
    Ok(())
}

/// Checks the decoded table against the device's own count; anything else is incomplete.
pub(super) fn check_complete(table: &UserTable, sizes: &DeviceSizes) -> Result<(), ReadError> {
    let records = table.users.len();
    if !table.count_consistent || records != sizes.users as usize {
        let layout = table
            .layout
            .map_or("undetermined".to_string(), |l| format!("{l:?}"));
        return Err(ReadError::Incomplete(format!(
            "the device reports {} users but the user table holds {records} records \
             (layout {layout}); nothing may be concluded from this read",
            sizes.users
        )));
    }
    Ok(())
}

/// The agent's privilege scale (0 user, 1 admin, 2 super user) from ZK's privilege byte, whose
/// bits 1–3 are the level (0 user, 1 enroller, 3 admin, 7 super-admin) and bit 0 "disabled".
pub(super) fn privilege(zk: u8) -> u32 {
    match (zk >> 1) & 0b111 {
        0 => 0,
        7 => 2,
        _ => 1,
    }
}

/// Builds the read from a checked table and its checked templates, handing credentials to the
/// sink.
pub(super) fn to_user_read(
    table: &UserTable,
    templates: &[FingerTemplate],
    sizes: &DeviceSizes,
    mode: FetchMode,
    sink: &mut (dyn ReadSink + Send),
) -> Result<UserRead, ReadError> {
    let mut read = UserRead {
        device_user_count: u64::from(sizes.users),
        ..UserRead::default()
    };
    let mut fingers: HashMap<u16, Vec<&FingerTemplate>> = HashMap::new();
    for template in templates {
        fingers.entry(template.uid).or_default().push(template);
    }
    let mut credentials = Vec::new();
    for record in &table.users {
        let mut user = summary(record)?;
        let own = fingers.remove(&record.uid).unwrap_or_default();
        user.fingerprints = own.len().min(usize::from(u8::MAX)) as u8;
        if !record.name.lossless {
            tracing::warn!(
                user_id = %user.user_id,
                raw = ?record.name.raw,
                "name is not valid in the configured name_encoding; check the device's language setting"
            );
        }
        let mut slots = Vec::new();
        let templates = own.into_iter().map(|t| {
            let value = FingerValue {
                valid: t.valid,
                template: t.template.clone(),
            };
            (u16::from(t.finger), CredentialValue::Text(value.to_text()))
        });
        for (slot, value) in templates.chain(record_credentials(record)) {
            slots.push(slot);
            credentials.push(Credential {
                user_id: user.user_id.clone(),
                slot,
                name: user.name.clone(),
                privilege: u64::from(user.privilege),
                value,
            });
        }
        let user_id = user.user_id.clone();
        read.details.insert(
            user_id.clone(),
            UserDetails {
                group: Some(record.group.to_string()),
                enabled: Some(record.privilege & 1 == 0),
            },
        );
        if read
            .users
            .insert(user_id.clone(), ReadUser { user, slots })
            .is_some()
        {
            return Err(ReadError::Incomplete(format!(
                "user id {user_id:?} appears twice in the device's user table"
            )));
        }
    }
    for (uid, orphans) in fingers {
        tracing::warn!(
            uid,
            templates = orphans.len(),
            "fingerprint templates of a device index no user has; they are not kept"
        );
    }
    read.credentials_listed = credentials.len();
    let to_fetch: Vec<Credential> = credentials
        .into_iter()
        .filter(|c| mode == FetchMode::All || !held_unchanged(&*sink, c))
        .collect();
    read.credentials_reused = read.credentials_listed - to_fetch.len();
    sink.progress(ReadProgress::ListComplete {
        users: read.users.len() as u64,
        credentials: read.credentials_listed,
        to_fetch: to_fetch.len(),
    });
    let total = to_fetch.len();
    for credential in to_fetch {
        sink.credential(credential).map_err(ReadError::Sink)?;
        read.credentials_fetched += 1;
    }
    sink.progress(ReadProgress::Credentials {
        fetched: total,
        total,
    });
    Ok(read)
}

fn summary(record: &UserRecord) -> Result<DeviceUser, ReadError> {
    let user_id = record.user_id.display();
    if user_id.is_empty() {
        return Err(ReadError::Incomplete(format!(
            "the user at device index {} has an empty user id",
            record.uid
        )));
    }
    Ok(DeviceUser {
        user_id,
        name: record.name.text.clone(),
        privilege: privilege(record.privilege),
        card: (record.card != 0).then(|| record.card.to_string()),
        has_password: !record.password.raw.is_empty(),
        ..DeviceUser::default()
    })
}

fn record_credentials(record: &UserRecord) -> Vec<(u16, CredentialValue)> {
    let mut out = Vec::new();
    if !record.password.raw.is_empty() {
        out.push((
            PASSWORD_SLOT,
            CredentialValue::Text(record.password.text.clone()),
        ));
    }
    if record.card != 0 {
        out.push((CARD_SLOT, CredentialValue::Number(record.card.into())));
    }
    out
}

fn held_unchanged(sink: &(dyn ReadSink + Send), credential: &Credential) -> bool {
    sink.held(&credential.user_id, credential.slot)
        .is_some_and(|held| {
            held.name == credential.name
                && held.privilege == credential.privilege
                && (credential.slot != CARD_SLOT
                    || held.card.as_deref() == Some(credential.value.as_text().as_str()))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::MemorySink;
    use device_protocols::zk::{DeviceText, TimeZones, UserId, UserLayout};

    fn user(uid: u16, id: &str, password: &str, card: u64) -> UserRecord {
        UserRecord {
            uid,
            privilege: if uid == 1 { 14 } else { 0 },
            password: DeviceText::utf8(password),
            name: DeviceText::utf8(&format!("User {uid}")),
            card,
            group: 1,
            user_id: UserId::Text(DeviceText::utf8(id)),
            time_zones: TimeZones::Extended {
                own: 0,
                zones: [0; 3],
            },
        }
    }

    fn table(users: Vec<UserRecord>) -> (UserTable, DeviceSizes) {
        let sizes = DeviceSizes {
            users: users.len() as u32,
            ..DeviceSizes::default()
        };
        let table = UserTable {
            layout: Some(UserLayout::Extended72),
            count_consistent: true,
            users,
        };
        (table, sizes)
    }

    #[test]
    fn maps_card_and_password_slots_and_users_without_credentials() {
        let (table, sizes) = table(vec![
            user(1, "7", "1234", 0),
            user(2, "8", "", 99),
            user(3, "9", "", 0),
        ]);
        let mut sink = MemorySink::default();
        let read = to_user_read(&table, &[], &sizes, FetchMode::All, &mut sink).unwrap();
        assert_eq!(
            read.users.len(),
            3,
            "a user without credentials is still a user"
        );
        assert_eq!(read.users["7"].slots, [PASSWORD_SLOT]);
        assert!(read.users["7"].user.has_password);
        assert_eq!(read.users["7"].user.privilege, 2);
        assert_eq!(read.users["8"].user.card.as_deref(), Some("99"));
        assert_eq!(read.users["8"].slots, [CARD_SLOT]);
        assert!(read.users["9"].slots.is_empty());
        assert_eq!(sink.credentials.len(), 2);
        assert_eq!(read.credentials_fetched, 2);
    }

    #[test]
    fn missing_mode_hands_over_only_changed_credentials() {
        let (table, sizes) = table(vec![user(2, "8", "", 99), user(4, "10", "", 5)]);
        let mut sink = MemorySink::default();
        to_user_read(&table, &[], &sizes, FetchMode::All, &mut sink).unwrap();
        // User "10" got a new card; user "8" is unchanged.
        let (changed, sizes) = self::table(vec![user(2, "8", "", 99), user(4, "10", "", 6)]);
        let read = to_user_read(&changed, &[], &sizes, FetchMode::Missing, &mut sink).unwrap();
        assert_eq!((read.credentials_reused, read.credentials_fetched), (1, 1));
    }

    #[test]
    fn a_count_mismatch_or_duplicate_id_is_incomplete() {
        let (table, mut sizes) = table(vec![user(1, "7", "", 0)]);
        sizes.users = 2;
        let err = check_complete(&table, &sizes).unwrap_err();
        assert!(matches!(err, ReadError::Incomplete(ref m) if m.contains("reports 2 users")));
        let (dup, sizes) = self::table(vec![user(1, "7", "", 0), user(2, "7", "", 0)]);
        let err = to_user_read(
            &dup,
            &[],
            &sizes,
            FetchMode::All,
            &mut MemorySink::default(),
        );
        assert!(matches!(err, Err(ReadError::Incomplete(m)) if m.contains("twice")));
    }

    #[test]
    fn privilege_levels() {
        assert_eq!(
            [0, 1, 2, 6, 14, 15].map(privilege),
            [0, 0, 1, 1, 2, 2],
            "bit 0 (disabled) does not change the level"
        );
    }
}
