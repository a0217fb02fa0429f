//! Safe writes to a ZK terminal (restore, conflict `use_database`, a rename): one `USER_WRQ`
//! of one whole user record, built from the record the terminal holds *now* (read in the same
//! session, never a cached copy) with only the written field changed, then `REFRESH_DATA`, then
//! a read-back that must show the change. A user the terminal does not hold is added under a
//! free internal uid. `USER_WRQ` can only add or replace the record of its own uid; nothing here
//! can delete or clear, because the request type cannot express it.
//!
//! Fingerprint templates are not written yet (template upload is a separate command family):
//! such a write is refused before anything is sent.

use super::client::Client;
use super::read::{open, users_now};
use super::settings::ZkSettings;
use super::users::privilege;
use crate::device::{Credential, ReadError};
use device_protocols::aiface::CredentialValue;
use device_protocols::zk::{
    DeviceText, Request, TimeZones, UserId, UserLayout, UserRecord, UserTable, UserWrite,
};
use std::sync::atomic::AtomicBool;

/// AiFace slot of the password.
const PASSWORD_SLOT: u16 = 10;
/// AiFace slot of the card.
const CARD_SLOT: u16 = 11;

/// What one write changes in a user record.
pub(super) enum Change<'a> {
    /// Writes one credential (password or card), adding the user if absent.
    Credential(&'a Credential),
    /// Renames an existing user.
    Name { user_id: &'a str, name: &'a str },
}

impl Change<'_> {
    fn user_id(&self) -> &str {
        match self {
            Change::Credential(c) => &c.user_id,
            Change::Name { user_id, .. } => user_id,
        }
    }
}

/// Refuses, before any session is opened, what this driver cannot write.
pub(super) fn check_writable(change: &Change<'_>, device: &str) -> Result<(), ReadError> {
    if let Change::Credential(credential) = change {
        if credential.slot != PASSWORD_SLOT && credential.slot != CARD_SLOT {
            return Err(ReadError::Refused(format!(
                "writing credential slot {} (user {}) to zk devices is not supported by this \
                 agent version (only the password, slot 10, and the card, slot 11); nothing was \
                 sent to {device}",
                credential.slot, credential.user_id
            )));
        }
    }
    Ok(())
}

/// The device's privilege byte for the agent's scale (0 user, 1 admin, 2 super user).
fn zk_privilege(agent: u64) -> u8 {
    match agent {
        0 => 0,
        1 => 6,
        _ => 14,
    }
}

/// The record to write: the held record with the change applied, or a new record.
fn changed_record(
    table: &UserTable,
    layout: UserLayout,
    change: &Change<'_>,
    settings: &ZkSettings,
) -> Result<UserRecord, ReadError> {
    let refused = |why: String| ReadError::Refused(format!("{why}; nothing was written"));
    let encode = |text: &str, what: &str| {
        settings
            .codec
            .encode(text)
            .map_err(|err| refused(format!("the {what} {text:?} cannot be stored: {err}")))
    };
    let user_id = change.user_id();
    let held = table.users.iter().find(|u| u.user_id.display() == user_id);
    let mut record = match (held, change) {
        (Some(held), _) => held.clone(),
        (None, Change::Name { .. }) => {
            return Err(refused(format!(
                "user {user_id} is not on the device, so it cannot be renamed"
            )))
        }
        (None, Change::Credential(credential)) => {
            let uid = table.users.iter().map(|u| u.uid).max().unwrap_or(0);
            let uid = uid
                .checked_add(1)
                .ok_or_else(|| refused("the device has no free internal uid left".to_string()))?;
            let (user_id, time_zones) = match layout {
                UserLayout::Extended72 => (
                    UserId::Text(DeviceText::utf8(user_id)),
                    TimeZones::Extended {
                        own: 0,
                        zones: [0; 3],
                    },
                ),
                UserLayout::Compact28 => (
                    UserId::Number(user_id.parse().map_err(|_| {
                        refused(format!(
                            "user id {user_id:?} is not numeric, which 28-byte firmware requires"
                        ))
                    })?),
                    TimeZones::Compact { bits: 0 },
                ),
            };
            UserRecord {
                uid,
                privilege: zk_privilege(credential.privilege),
                password: DeviceText::utf8(""),
                name: encode(&credential.name, "name")?,
                card: 0,
                group: 1,
                user_id,
                time_zones,
            }
        }
    };
    if let Change::Credential(credential) = change {
        // The credential carries the privilege to write (as the AI06's `setuserinfo` does);
        // a level that already means the same on the agent's scale is left as the device has
        // it (an enroller stays an enroller), and the disabled bit is never touched.
        if u64::from(privilege(record.privilege)) != credential.privilege {
            record.privilege = (record.privilege & 1) | zk_privilege(credential.privilege);
        }
    }
    match change {
        Change::Name { name, .. } => record.name = encode(name, "name")?,
        Change::Credential(credential) => match credential.slot {
            PASSWORD_SLOT => record.password = encode(&credential.value.as_text(), "password")?,
            _ => {
                let card = match &credential.value {
                    CredentialValue::Number(n) => n.as_u64(),
                    CredentialValue::Text(t) => t.trim().parse().ok(),
                };
                record.card = card.ok_or_else(|| {
                    refused(format!(
                        "card {:?} of user {user_id} is not a number",
                        credential.value.as_text()
                    ))
                })?;
            }
        },
    }
    Ok(record)
}

/// Whether the read-back record carries what was written.
fn written(table: &UserTable, expected: &UserRecord) -> bool {
    table.users.iter().any(|u| {
        u.uid == expected.uid
            && u.user_id.display() == expected.user_id.display()
            && u.name.text == expected.name.text
            && u.password.text == expected.password.text
            && u.card == expected.card
            && u.privilege == expected.privilege
    })
}

async fn write_in_session(
    client: &mut Client,
    settings: &ZkSettings,
    change: &Change<'_>,
) -> Result<(), ReadError> {
    client.authenticate(settings.comm_key).await?;
    client.disable_device().await?;
    let (layout, table) = users_now(client, settings).await?;
    let record = changed_record(&table, layout, change, settings)?;
    let user_id = change.user_id();
    if table.users.contains(&record) {
        tracing::info!(device = %settings.device_id, user_id, "the device already holds this value; nothing written");
        client.enable_device().await?;
        return Ok(());
    }
    let write = UserWrite::new(&record, layout)
        .map_err(|err| ReadError::Refused(format!("user {user_id}: {err}; nothing was written")))?;
    client.expect_ok(&Request::SetUser(write)).await?;
    client.expect_ok(&Request::RefreshData).await?;
    let (_, after) = users_now(client, settings).await?;
    client.enable_device().await?;
    if !written(&after, &record) {
        return Err(ReadError::Incomplete(format!(
            "user {user_id} was written to {} but does not read back as written",
            settings.device_id
        )));
    }
    tracing::info!(device = %settings.device_id, user_id, uid = record.uid, "user record written and read back");
    Ok(())
}

/// Applies `change` in a session of its own, closed on every path.
pub(super) async fn write(
    settings: &ZkSettings,
    prefer_udp: &AtomicBool,
    change: Change<'_>,
) -> Result<(), ReadError> {
    check_writable(&change, &settings.device_id)?;
    let mut client = open(settings, prefer_udp).await?;
    let outcome = write_in_session(&mut client, settings, &change).await;
    client.close().await;
    outcome
}
