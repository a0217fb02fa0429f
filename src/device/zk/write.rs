//! Safe writes to a ZK terminal (restore, conflict `use_database`, a rename): one `USER_WRQ`
//! of one whole user record, built from the record the terminal holds *now* (read in the same
//! session, never a cached copy) with only the written field changed, then `REFRESH_DATA`, then
//! a read-back that must show the change. A user the terminal does not hold is added under a
//! free internal uid. `USER_WRQ` can only add or replace the record of its own uid; nothing here
//! can delete or clear, because the request type cannot express it.
//!
//! A fingerprint template (slots 0–9) goes up through the upload path (`PREPARE_DATA`, `DATA`
//! chunks, `TMP_WRITE` naming uid and finger, `REFRESH_DATA`): after the user record exists
//! (added first, as for a card, when the user is absent) and only when the terminal does not
//! already hold those exact bytes for that finger; then the template table is read back and
//! must hold them. A user without any credential is added as a bare record ([`Change::User`]).
//! Each template write reads the template table twice (the check and the read-back): on a
//! paced terminal with thousands of fingers that is the cost of a verified restore.

use super::client::Client;
use super::finger::FingerValue;
use super::read::{open, templates_now, users_now};
use super::settings::ZkSettings;
use super::users::privilege;
use crate::device::{Credential, ReadError};
use device_protocols::aiface::CredentialValue;
use device_protocols::zk::{
    DeviceText, FingerTemplate, Request, TemplateUpload, TimeZones, UserId, UserLayout, UserRecord,
    UserTable, UserWrite,
};
use std::sync::atomic::AtomicBool;

/// AiFace slot of the password.
const PASSWORD_SLOT: u16 = 10;
/// AiFace slot of the card.
const CARD_SLOT: u16 = 11;

/// Highest fingerprint slot (fingers are slots 0–9).
const LAST_FINGER_SLOT: u16 = 9;

/// What one write changes on the terminal.
pub(super) enum Change<'a> {
    /// Writes one credential (a fingerprint template, the password or the card), adding the
    /// user if absent.
    Credential(&'a Credential),
    /// Renames an existing user.
    Name { user_id: &'a str, name: &'a str },
    /// Adds a user without any credential (a restore's bare user); one already there is left
    /// as it is.
    User {
        user_id: &'a str,
        name: &'a str,
        privilege: u32,
    },
}

impl Change<'_> {
    fn user_id(&self) -> &str {
        match self {
            Change::Credential(c) => &c.user_id,
            Change::Name { user_id, .. } | Change::User { user_id, .. } => user_id,
        }
    }

    /// The name and agent-scale privilege a new user record gets.
    fn new_user(&self) -> Option<(&str, u64)> {
        match self {
            Change::Credential(c) => Some((&c.name, c.privilege)),
            Change::User {
                name, privilege, ..
            } => Some((name, u64::from(*privilege))),
            Change::Name { .. } => None,
        }
    }
}

/// Refuses, before any session is opened, what this driver cannot write.
pub(super) fn check_writable(change: &Change<'_>, device: &str) -> Result<(), ReadError> {
    if let Change::Credential(credential) = change {
        if credential.slot > LAST_FINGER_SLOT
            && credential.slot != PASSWORD_SLOT
            && credential.slot != CARD_SLOT
        {
            return Err(ReadError::Refused(format!(
                "writing credential slot {} (user {}) to zk devices is not supported by this \
                 agent version (only fingerprints, slots 0–9, the password, slot 10, and the \
                 card, slot 11); nothing was sent to {device}",
                credential.slot, credential.user_id
            )));
        }
        if credential.slot <= LAST_FINGER_SLOT {
            finger_value(credential)?;
        }
    }
    Ok(())
}

/// The template and valid flag of a fingerprint credential (base64 text as it was read, with
/// a duress flag in front when it had one; see `super::finger`).
fn finger_value(credential: &Credential) -> Result<FingerValue, ReadError> {
    let refused = |why: &str| {
        ReadError::Refused(format!(
            "fingerprint {} of user {} {why}; nothing was written",
            credential.slot, credential.user_id
        ))
    };
    let CredentialValue::Text(text) = &credential.value else {
        return Err(refused("is not a base64 template"));
    };
    let value = FingerValue::parse(text).map_err(|why| refused(&why))?;
    if value.template.is_empty() {
        return Err(refused("is empty"));
    }
    Ok(value)
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
        (None, Change::Credential(_) | Change::User { .. }) => {
            let (name, agent_privilege) = change.new_user().expect("a user-adding change");
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
                privilege: zk_privilege(agent_privilege),
                password: DeviceText::utf8(""),
                name: encode(name, "name")?,
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
        // A bare user or a template changes nothing in a record the terminal holds.
        Change::User { .. } => {}
        Change::Credential(credential) => match credential.slot {
            PASSWORD_SLOT => record.password = encode(&credential.value.as_text(), "password")?,
            slot if slot <= LAST_FINGER_SLOT => {}
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
        tracing::info!(device = %settings.device_id, user_id, "the device already holds this user record; not written");
    } else {
        let write = UserWrite::new(&record, layout).map_err(|err| {
            ReadError::Refused(format!("user {user_id}: {err}; nothing was written"))
        })?;
        client.expect_ok(&Request::SetUser(write)).await?;
        client.expect_ok(&Request::RefreshData).await?;
        let (_, after) = users_now(client, settings).await?;
        if !written(&after, &record) {
            return Err(ReadError::Incomplete(format!(
                "user {user_id} was written to {} but does not read back as written",
                settings.device_id
            )));
        }
        tracing::info!(device = %settings.device_id, user_id, uid = record.uid, "user record written and read back");
    }
    if let Change::Credential(credential) = change {
        if credential.slot <= LAST_FINGER_SLOT {
            write_template(client, settings, credential, record.uid).await?;
        }
    }
    client.enable_device().await?;
    Ok(())
}

/// Uploads one fingerprint template to the user at `uid` unless the terminal already holds
/// exactly it, then reads the template table back.
async fn write_template(
    client: &mut Client,
    settings: &ZkSettings,
    credential: &Credential,
    uid: u16,
) -> Result<(), ReadError> {
    let user_id = &credential.user_id;
    let value = finger_value(credential)?;
    let template = FingerTemplate {
        uid,
        finger: credential.slot as u8,
        // Kept with the credential, so a restored duress finger stays a duress finger.
        valid: value.valid,
        template: value.template,
    };
    let held = |templates: &[FingerTemplate]| {
        templates.iter().any(|t| {
            t.uid == template.uid
                && t.finger == template.finger
                && t.valid == template.valid
                && t.template == template.template
        })
    };
    if held(&templates_now(client).await?) {
        tracing::info!(device = %settings.device_id, user_id, finger = template.finger, "the device already holds this fingerprint template; not written");
        return Ok(());
    }
    let upload = TemplateUpload::new(&template).map_err(|err| {
        ReadError::Refused(format!(
            "fingerprint {} of user {user_id}: {err}; nothing was written",
            template.finger
        ))
    })?;
    client.expect_ok(&Request::FreeData).await?;
    client
        .expect_ok(&Request::PrepareUpload { len: upload.len() })
        .await?;
    for chunk in upload.chunks() {
        client.expect_ok(&Request::UploadChunk(chunk)).await?;
    }
    client
        .expect_ok(&Request::WriteTemplate(upload.head()))
        .await?;
    client.expect_ok(&Request::RefreshData).await?;
    client.expect_ok(&Request::FreeData).await?;
    if !held(&templates_now(client).await?) {
        return Err(ReadError::Incomplete(format!(
            "fingerprint {} of user {user_id} was written to {} but does not read back as written",
            template.finger, settings.device_id
        )));
    }
    tracing::info!(device = %settings.device_id, user_id, uid, finger = template.finger, bytes = template.template.len(), "fingerprint template written and read back");
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
