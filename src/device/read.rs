//! What a complete user read produces, and the sink it streams credentials into.
//!
//! Credential values (face photos are tens of kilobytes each) are handed to the sink one by one
//! as they arrive instead of being collected, so a 5,000-user read does not hold every photo in
//! memory; the [`UserRead`] itself carries only per-user summaries.

use crate::events::DeviceUser;
use device_protocols::aiface::{BackupNum, CredentialKind, CredentialValue};
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// Which credentials a read fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchMode {
    /// Steady state: only credentials the sink does not already hold, so a poll with no changes
    /// fetches no credential at all.
    Missing,
    /// Every credential again: backups, and an operator's explicit refresh.
    All,
}

/// One credential of one user, as fetched from a device.
#[derive(Debug, Clone, PartialEq)]
pub struct Credential {
    /// The device's user id, as text.
    pub user_id: String,
    /// Credential slot (AiFace numbering, see the module docs of [`crate::device`]).
    pub slot: u16,
    /// The user's name as the device stores it.
    pub name: String,
    /// Device privilege (0 normal, 1 admin, 2 super user).
    pub privilege: u64,
    /// The value, with the JSON type it was read with so a restore writes it back unchanged.
    pub value: CredentialValue,
}

/// What the sink remembers of a credential it already holds: enough to summarise the user
/// without fetching the value again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldCredential {
    /// The user's name when the credential was fetched.
    pub name: String,
    /// The user's privilege when the credential was fetched.
    pub privilege: u64,
    /// The card number, for slot 11.
    pub card: Option<String>,
}

/// Progress of a long read, for logs and the technician watching `probe` or `demo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadProgress {
    /// A page of the user list arrived.
    ListPage {
        /// Pages so far.
        pages: u32,
        /// List entries so far.
        entries: usize,
        /// What the device says the list holds, when it says.
        announced: Option<u64>,
    },
    /// The list is complete and checked against the device's own count.
    ListComplete {
        /// Distinct users.
        users: u64,
        /// Credentials listed.
        credentials: usize,
        /// Credentials that will be fetched.
        to_fetch: usize,
    },
    /// Credentials fetched so far.
    Credentials {
        /// Fetched so far.
        fetched: usize,
        /// To fetch in all.
        total: usize,
    },
}

/// Where a read puts what it fetches.
pub trait ReadSink {
    /// The credential as already held, if it is; a held credential is not fetched again in
    /// [`FetchMode::Missing`].
    fn held(&self, user_id: &str, slot: u16) -> Option<HeldCredential>;
    /// Takes one freshly fetched credential. An error aborts the read (incomplete).
    fn credential(&mut self, credential: Credential) -> Result<(), String>;
    /// Reports progress; the default ignores it.
    fn progress(&mut self, _progress: ReadProgress) {}
}

/// A user as a complete read found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadUser {
    /// The summary forwarded upstream and kept in the buffer.
    pub user: DeviceUser,
    /// The credential slots the device lists for this user.
    pub slots: Vec<u16>,
}

/// A complete, checked read of a device's users.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserRead {
    /// Every user, by user id.
    pub users: BTreeMap<String, ReadUser>,
    /// The device's own user count, which the list was checked against.
    pub device_user_count: u64,
    /// Credentials the device listed.
    pub credentials_listed: usize,
    /// Credentials fetched in this read.
    pub credentials_fetched: usize,
    /// Credentials already held and not fetched again.
    pub credentials_reused: usize,
    /// Commands sent and answered during the read.
    pub round_trips: u64,
    /// Bytes of reply frames received during the read.
    pub bytes_received: u64,
    /// What the device's user list says about each user beyond the summary (ZK: group and
    /// the enabled flag), by user id; kept in backups so a restore can put them back. Empty
    /// for drivers whose list carries none (the AI06).
    pub details: BTreeMap<String, UserDetails>,
    /// The digest of the device's user list this read was built from, for drivers that can
    /// tell an unchanged list cheaply (see [`PolledUsers`]); `None` for the others.
    pub list_digest: Option<ListDigest>,
}

/// A digest of a device's whole user list as it came off the wire (AI06: every
/// `(enrollid, backupnum, admin, other fields)` line, in the device's order). Two equal
/// digests mean the device listed exactly the same credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ListDigest(pub [u8; 32]);

/// What a poll's read found: either a complete read, or — when the poll named the list behind
/// the last complete read and the device listed exactly that again — only the fact that it did.
///
/// Why the second exists: a read's users are built from the list and the credential cache
/// (the list carries no names or card numbers; those come from the cached credentials). With
/// the same list and a credential cache nobody wrote since, the read would come out exactly as
/// the last one, so the poll can skip looking up every cached credential and building the
/// users (about 5 MB of a 10,000-user poll's peak, `docs/footprint.md`). The sync engine
/// decides when a list may be named (see `crate::sync`); a driver only compares digests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolledUsers {
    /// A complete, checked read.
    Read(UserRead),
    /// The device listed exactly the named list again; the read is complete and checked, and
    /// its users are those of the last complete read.
    ListedAsBefore(ListedAsBefore),
}

/// The facts of a complete read whose list equalled the one the poll named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedAsBefore {
    /// The device's own user count, which the list was checked against.
    pub device_user_count: u64,
    /// Credentials the device listed.
    pub credentials_listed: usize,
    /// Commands sent and answered during the read.
    pub round_trips: u64,
    /// Bytes of reply frames received during the read.
    pub bytes_received: u64,
}

/// Per-user attributes of the device's own user record that are not forwarded upstream but
/// belong in a backup.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UserDetails {
    /// The user's group (ZK: 1 is the default group), as text.
    pub group: Option<String>,
    /// Whether the user may punch (ZK: privilege bit 0 clear).
    pub enabled: Option<bool>,
}

/// Why a read is not complete. Every variant means "we do not know": never conclude that users
/// are gone from a failed read (invariant 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// The device is not connected (AI06: it has not dialled in).
    NotConnected(String),
    /// The connection dropped during the read.
    Disconnected(String),
    /// A command got no answer within its timeout, after retries.
    TimedOut(String),
    /// The device refused a command (`result:false`).
    Refused(String),
    /// The list or its check against the device's count failed.
    Incomplete(String),
    /// The sink could not keep a credential (store error).
    Sink(String),
    /// The device lock's deadline passed (or the lock was lost): the session stopped before
    /// sending anything more to the device.
    Fenced(String),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, detail) = match self {
            ReadError::NotConnected(d) => ("device not connected", d),
            ReadError::Disconnected(d) => ("connection lost during the read", d),
            ReadError::TimedOut(d) => ("device did not answer", d),
            ReadError::Refused(d) => ("device refused a command", d),
            ReadError::Incomplete(d) => ("read incomplete", d),
            ReadError::Sink(d) => ("could not store what was read", d),
            ReadError::Fenced(d) => ("stopped: the device lock is no longer held", d),
        };
        write!(f, "{what}: {detail}")
    }
}

impl std::error::Error for ReadError {}

impl UserRead {
    /// Adds one listed credential to the user it belongs to, summarising as it goes.
    pub(crate) fn add(
        &mut self,
        user_id: &str,
        slot: u16,
        name: &str,
        privilege: u64,
        card: Option<String>,
    ) {
        let entry = self
            .users
            .entry(user_id.to_string())
            .or_insert_with(|| ReadUser {
                user: DeviceUser {
                    user_id: user_id.to_string(),
                    ..DeviceUser::default()
                },
                slots: Vec::new(),
            });
        let user = &mut entry.user;
        if user.name.is_empty() {
            user.name = name.to_string();
        }
        user.privilege = user.privilege.max(privilege as u32);
        match BackupNum(slot).kind() {
            CredentialKind::Fingerprint(_) => user.fingerprints += 1,
            CredentialKind::Password => user.has_password = true,
            CredentialKind::Card => user.card = card.or(user.card.take()),
            CredentialKind::StaticFace(_) | CredentialKind::Photo => user.faces += 1,
            CredentialKind::PalmVein(_) => user.palms += 1,
            CredentialKind::Other(_) => {}
        }
        entry.slots.push(slot);
    }
}

/// The card number carried by a credential, if it is the card slot.
pub fn card_of(slot: u16, value: &CredentialValue) -> Option<String> {
    (BackupNum(slot).kind() == CredentialKind::Card).then(|| value.as_text())
}

/// A sink that keeps everything in memory: for `probe` and tests, where nothing is stored.
#[derive(Debug, Default)]
pub struct MemorySink {
    /// Every credential fetched, by (user id, slot).
    pub credentials: HashMap<(String, u16), Credential>,
    /// Progress reports in order.
    pub progress: Vec<ReadProgress>,
}

impl ReadSink for MemorySink {
    fn held(&self, user_id: &str, slot: u16) -> Option<HeldCredential> {
        self.credentials
            .get(&(user_id.to_string(), slot))
            .map(|c| HeldCredential {
                name: c.name.clone(),
                privilege: c.privilege,
                card: card_of(slot, &c.value),
            })
    }

    fn credential(&mut self, credential: Credential) -> Result<(), String> {
        self.credentials
            .insert((credential.user_id.clone(), credential.slot), credential);
        Ok(())
    }

    fn progress(&mut self, progress: ReadProgress) {
        self.progress.push(progress);
    }
}

/// A short name for a credential slot, for summaries.
pub fn slot_kind_name(slot: u16) -> &'static str {
    match BackupNum(slot).kind() {
        CredentialKind::Fingerprint(_) => "fingerprint",
        CredentialKind::Password => "password",
        CredentialKind::Card => "card",
        CredentialKind::StaticFace(_) => "face",
        CredentialKind::PalmVein(_) => "palm",
        CredentialKind::Photo => "photo",
        CredentialKind::Other(_) => "other",
    }
}

/// A sink that remembers only what a steady-state poll needs (name, privilege, card) and drops
/// credential values: for the demo and for measuring the driver without a store.
#[derive(Debug, Default)]
pub struct SummarySink {
    held: HashMap<(String, u16), HeldCredential>,
}

impl ReadSink for SummarySink {
    fn held(&self, user_id: &str, slot: u16) -> Option<HeldCredential> {
        self.held.get(&(user_id.to_string(), slot)).cloned()
    }

    fn credential(&mut self, credential: Credential) -> Result<(), String> {
        let card = card_of(credential.slot, &credential.value);
        self.held.insert(
            (credential.user_id, credential.slot),
            HeldCredential {
                name: credential.name,
                privilege: credential.privilege,
                card,
            },
        );
        Ok(())
    }
}
