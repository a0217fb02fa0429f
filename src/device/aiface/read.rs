//! A complete user read from an AI06 (D6): the device's counters, the whole paged user list,
//! the counters again (they must not have moved), the list checked against `useduser`, then the
//! credentials the sink does not hold. Any step that fails makes the whole read an error.

use super::session::{AifaceSession, ExchangeError};
use crate::device::read::card_of;
use crate::device::{Credential, FetchMode, ReadError, ReadProgress, ReadSink, UserRead};
use device_protocols::aiface::{
    check_complete, page_cap, Capacity, Command, CredentialFetch, CredentialValue, DeviceReply,
    FetchError, PagedRead, ReplyBody, ReplyOutcome, SetUserInfo, Step, UserListEntry, UserName,
};

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
    let (trips_before, bytes_before) = session.traffic();
    let before = device_capacity(session).await?;
    let entries = read_list(session, &before, sink).await?;
    let after = device_capacity(session).await?;
    let summary = check_complete(&entries, &before, &after)
        .map_err(|err| ReadError::Incomplete(err.to_string()))?;

    let mut read = UserRead {
        device_user_count: summary.users,
        credentials_listed: entries.len(),
        ..UserRead::default()
    };
    let mut to_fetch = Vec::new();
    for entry in &entries {
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
        users: summary.users,
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
    let (trips_after, bytes_after) = session.traffic();
    read.round_trips = trips_after - trips_before;
    read.bytes_received = bytes_after - bytes_before;
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
