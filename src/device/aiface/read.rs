//! A complete user read from an AI06 (D6): the device's counters, the whole paged user list,
//! the counters again (they must not have moved), the list checked against `useduser`, then the
//! credentials the sink does not hold. Any step that fails makes the whole read an error.

use super::session::{AifaceSession, ExchangeError};
use crate::device::read::card_of;
use crate::device::{
    Credential, FetchMode, ListDigest, ListedAsBefore, PolledUsers, ReadError, ReadProgress,
    ReadSink, UserRead,
};
use device_protocols::aiface::{
    check_complete, page_cap, Capacity, Command, CredentialFetch, CredentialValue, DeviceReply,
    FetchError, PagedRead, ReplyBody, ReplyOutcome, SetUserInfo, Step, UserListEntry, UserName,
};
use sha2::{Digest as _, Sha256};

/// Page size the AI06 firmware uses for `getuserlist` (the page cap allows for larger ones).
const ASSUMED_PAGE_SIZE: u64 = 40;
/// Credentials per user to allow for in the page cap (fingerprints, face, photo, card, PIN).
const CREDENTIALS_PER_USER: u64 = 14;
/// Users assumed when the device does not report its capacity.
const FALLBACK_CAPACITY: u64 = 100_000;
/// The largest capacity believed from `getdevcap` when sizing the page cap: the AI06 holds a
/// few tens of thousands of users, and a device claiming `usersize` near `u64::MAX` must not
/// lift the cap (and with it the bound on the records a read collects).
const MAX_BELIEVED_CAPACITY: u64 = 1_000_000;

impl From<ExchangeError> for ReadError {
    fn from(err: ExchangeError) -> Self {
        match err {
            ExchangeError::Closed => ReadError::Disconnected(err.to_string()),
            ExchangeError::TimedOut { .. } => ReadError::TimedOut(err.to_string()),
            ExchangeError::Fenced(_) => ReadError::Fenced(err.to_string()),
        }
    }
}

/// Performs a complete read; see the module docs.
pub(super) async fn read_users(
    session: &AifaceSession,
    mode: FetchMode,
    sink: &mut (dyn ReadSink + Send),
) -> Result<UserRead, ReadError> {
    let list = read_checked_list(session, sink).await?;
    read_credentials(session, list, mode, sink).await
}

/// A poll's read (see [`crate::device::DeviceSession::poll_users`]): the checked list, then
/// either the answer that it is `last_list` again or the rest of a [`FetchMode::Missing`] read.
pub(super) async fn poll_users(
    session: &AifaceSession,
    last_list: Option<ListDigest>,
    sink: &mut (dyn ReadSink + Send),
) -> Result<PolledUsers, ReadError> {
    let list = read_checked_list(session, sink).await?;
    if last_list == Some(list.digest) {
        let (round_trips, bytes_received) = list.traffic(session);
        return Ok(PolledUsers::ListedAsBefore(ListedAsBefore {
            device_user_count: list.users,
            credentials_listed: list.entries.len(),
            round_trips,
            bytes_received,
        }));
    }
    read_credentials(session, list, FetchMode::Missing, sink)
        .await
        .map(PolledUsers::Read)
}

/// The device's user list, complete and checked against its counters.
struct CheckedList {
    /// Every list line, in the device's order.
    entries: Vec<UserListEntry>,
    /// Distinct users, as checked against `useduser`.
    users: u64,
    /// The digest of `entries`.
    digest: ListDigest,
    /// The session's traffic counters when the read began.
    traffic_before: (u64, u64),
}

impl CheckedList {
    /// Round trips and bytes received since the read began.
    fn traffic(&self, session: &AifaceSession) -> (u64, u64) {
        let (trips, bytes) = session.traffic();
        (trips - self.traffic_before.0, bytes - self.traffic_before.1)
    }
}

/// The counters, the whole paged list, the counters again, and the check of one against the
/// other: the part of every read that fetches no credential.
async fn read_checked_list(
    session: &AifaceSession,
    sink: &mut (dyn ReadSink + Send),
) -> Result<CheckedList, ReadError> {
    let traffic_before = session.traffic();
    let before = device_capacity(session).await?;
    let entries = read_list(session, &before, sink).await?;
    let after = device_capacity(session).await?;
    let summary = check_complete(&entries, &before, &after)
        .map_err(|err| ReadError::Incomplete(err.to_string()))?;
    Ok(CheckedList {
        digest: list_digest(&entries),
        entries,
        users: summary.users,
        traffic_before,
    })
}

/// SHA-256 over every line of the list in the device's order: its ids, its privilege and the
/// fields this crate does not interpret (as JSON text, whose object keys serde_json keeps
/// sorted), each length-prefixed, so that any change the device shows in its list changes the
/// digest. A device that reorders its list only costs the cheap path, never a wrong answer.
fn list_digest(entries: &[UserListEntry]) -> ListDigest {
    let mut hasher = Sha256::new();
    hasher.update((entries.len() as u64).to_le_bytes());
    for entry in entries {
        hasher.update(entry.enrollid.to_le_bytes());
        hasher.update(entry.backupnum.0.to_le_bytes());
        match entry.admin {
            Some(admin) => {
                hasher.update([1]);
                hasher.update(admin.to_le_bytes());
            }
            None => hasher.update([0]),
        }
        let extras = serde_json::to_string(&entry.extras).unwrap_or_default();
        hasher.update((extras.len() as u64).to_le_bytes());
        hasher.update(extras.as_bytes());
    }
    ListDigest(hasher.finalize().into())
}

/// Builds the read's users from a checked list: each credential from the sink when it holds
/// it (in [`FetchMode::Missing`]), fetched from the device otherwise.
async fn read_credentials(
    session: &AifaceSession,
    list: CheckedList,
    mode: FetchMode,
    sink: &mut (dyn ReadSink + Send),
) -> Result<UserRead, ReadError> {
    let entries = &list.entries;
    let mut read = UserRead {
        device_user_count: list.users,
        credentials_listed: entries.len(),
        list_digest: Some(list.digest),
        ..UserRead::default()
    };
    let mut to_fetch = Vec::new();
    for entry in entries {
        let user_id = entry.enrollid.to_string();
        let held = match mode {
            FetchMode::Missing => sink.held(&user_id, entry.backupnum.0),
            FetchMode::All => None,
        };
        match held {
            Some(held) => {
                read.add(
                    &user_id,
                    entry.backupnum.0,
                    &held.name,
                    held.privilege,
                    held.card,
                );
                read.credentials_reused += 1;
            }
            None => to_fetch.push(entry),
        }
    }
    sink.progress(ReadProgress::ListComplete {
        users: list.users,
        credentials: entries.len(),
        to_fetch: to_fetch.len(),
    });
    let total = to_fetch.len();
    for (index, entry) in to_fetch.into_iter().enumerate() {
        let credential = fetch_credential(session, entry).await?;
        read.add(
            &credential.user_id,
            credential.slot,
            &credential.name,
            credential.privilege,
            card_of(credential.slot, &credential.value),
        );
        sink.credential(credential).map_err(ReadError::Sink)?;
        read.credentials_fetched += 1;
        let fetched = index + 1;
        if fetched % 10 == 0 || fetched == total {
            sink.progress(ReadProgress::Credentials { fetched, total });
        }
    }
    (read.round_trips, read.bytes_received) = list.traffic(session);
    Ok(read)
}

async fn device_capacity(session: &AifaceSession) -> Result<Capacity, ReadError> {
    let reply = session.exchange(Command::GetDevCap).await?;
    match reply.outcome {
        ReplyOutcome::Success(ReplyBody::DevCap(devcap)) => Ok(devcap.capacity),
        other => Err(refused("getdevcap", &other)),
    }
}

async fn read_list(
    session: &AifaceSession,
    capacity: &Capacity,
    sink: &mut (dyn ReadSink + Send),
) -> Result<Vec<UserListEntry>, ReadError> {
    let users = capacity
        .usersize
        .unwrap_or(FALLBACK_CAPACITY)
        .min(MAX_BELIEVED_CAPACITY);
    let mut read = PagedRead::users(page_cap(users, CREDENTIALS_PER_USER, ASSUMED_PAGE_SIZE));
    let mut command = read.first_request();
    loop {
        let reply: DeviceReply = session.exchange(command).await?;
        match read.on_reply(reply) {
            Ok(Step::Request(next)) => {
                sink.progress(ReadProgress::ListPage {
                    pages: read.pages(),
                    entries: read.records_so_far(),
                    announced: read.announced_total(),
                });
                command = next;
            }
            Ok(Step::Complete(entries)) => return Ok(entries),
            Err(err) => return Err(ReadError::Incomplete(err.to_string())),
        }
    }
}

/// Fetches one credential through the protocol's own fetch machine, so a reply for another
/// user or slot than the one asked for (stale or misrouted) fails the read instead of being
/// stored under the id it names.
async fn fetch_credential(
    session: &AifaceSession,
    entry: &UserListEntry,
) -> Result<Credential, ReadError> {
    let mut fetch = CredentialFetch::new([entry.credential_ref()]);
    let mut step = fetch.start();
    loop {
        match step {
            Step::Request(command) => {
                let reply = session.exchange(command).await?;
                step = fetch.on_reply(reply).map_err(|err| match err {
                    FetchError::Refused { .. } => ReadError::Refused(err.to_string()),
                    other => ReadError::Incomplete(other.to_string()),
                })?;
            }
            Step::Complete(mut fetched) => {
                let info = fetched.pop().ok_or_else(|| {
                    ReadError::Incomplete(format!(
                        "getuserinfo {}/{} returned nothing",
                        entry.enrollid, entry.backupnum
                    ))
                })?;
                return Ok(Credential {
                    user_id: info.enrollid.to_string(),
                    slot: info.backupnum.0,
                    name: info.name.unwrap_or_default(),
                    privilege: info.admin.or(entry.admin).unwrap_or(0),
                    value: info.record,
                });
            }
        }
    }
}

fn refused(what: &str, outcome: &ReplyOutcome) -> ReadError {
    match outcome {
        ReplyOutcome::Failure { reason, .. } => {
            ReadError::Refused(format!("{what} answered result:false (reason {reason:?})"))
        }
        ReplyOutcome::Success(_) => ReadError::Incomplete(format!("{what} got a malformed reply")),
    }
}

/// Writes one credential with `setuserinfo` (add or replace; never a delete).
pub(super) async fn write_credential(
    session: &AifaceSession,
    credential: &Credential,
) -> Result<(), ReadError> {
    let enrollid = credential.user_id.parse().map_err(|_| {
        ReadError::Refused(format!("user id {:?} is not numeric", credential.user_id))
    })?;
    let command = Command::SetUserInfo(SetUserInfo {
        enrollid,
        name: credential.name.clone(),
        backupnum: device_protocols::aiface::BackupNum(credential.slot),
        admin: credential.privilege,
        record: match &credential.value {
            CredentialValue::Number(n) => CredentialValue::Number(n.clone()),
            CredentialValue::Text(t) => CredentialValue::Text(t.clone()),
        },
    });
    let reply = session.exchange(command).await?;
    match reply.outcome {
        ReplyOutcome::Success(_) => Ok(()),
        other => Err(refused(
            &format!("setuserinfo {}/{}", credential.user_id, credential.slot),
            &other,
        )),
    }
}

/// Renames one user with `setusername` (no credential is sent, so none can be overwritten).
pub(super) async fn set_user_name(
    session: &AifaceSession,
    user_id: &str,
    name: &str,
) -> Result<(), ReadError> {
    let enrollid = user_id
        .parse()
        .map_err(|_| ReadError::Refused(format!("user id {user_id:?} is not numeric")))?;
    let command = Command::SetUserName {
        count: 1,
        record: vec![UserName {
            enrollid,
            name: name.to_string(),
        }],
    };
    let reply = session.exchange(command).await?;
    match reply.outcome {
        ReplyOutcome::Success(_) => Ok(()),
        other => Err(refused(&format!("setusername {user_id}"), &other)),
    }
}
