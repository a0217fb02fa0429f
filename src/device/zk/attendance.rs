//! ZK attendance punches (D7 for ZK terminals): the attendance log is read through the bulk
//! reader in the same session as the user table, and every record is stored durably under its
//! punch key, with its upstream event queued in the same transaction (see
//! [`crate::device::punches`]).
//!
//! The protocol has no "records since" read, so each read downloads the whole log. A durable
//! per-device cursor (how many records of the log are stored, and the key of the last one) lets
//! a poll skip the download when the device's record count has not moved, and store only the
//! records past the cursor when it has. The count is only a change signal: a backup, and a
//! poll an hour after the last download, read the log anyway, so a log cleared and refilled
//! to exactly the stored count is still noticed. When the cursor no longer matches the log (someone
//! cleared the log with vendor software, the firmware rewrote it), the whole log is offered
//! again and de-duplicated by punch key, so nothing is stored twice and nothing is skipped.
//! Every poll is a fresh session, so the backfill after a reconnection is simply the next read.
//! The agent never clears the log: the request type cannot express it.

use crate::device::punches::PunchLog;
use crate::device::FetchMode;
use crate::events::{EventKey, Punch};
use crate::store::{Alarm, AlarmKind, Record, Store, StoreError};
use device_protocols::zk::{
    decode_attendance, AttendanceEvent, AttendanceLayout, AttendanceRecord, DeviceSizes, EventUser,
    TextCodec, UserId, UserTable,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Records stored per transaction: bounds one transaction's size on a 100,000-record first
/// read, and lets the cursor advance in steps so a crash mid-way loses no progress.
const BATCH: usize = 5_000;

/// Where punches of ZK terminals go: the agent's punch log. Attached to a ZK session by the
/// wiring of a running agent; without it (probe, demo) the driver does not read the log.
#[derive(Clone)]
pub struct ZkPunches {
    log: PunchLog,
    store: Store,
    /// uid → user id of the last user table read, to name the users of small-form live
    /// events (which carry only the uid), as the 8-byte log records are named.
    uids: Arc<Mutex<HashMap<u16, String>>>,
    /// When this agent last downloaded the log (starts at the agent's start): the log is read
    /// again at least every [`LOG_CHECK_EVERY`] even when its count stands still.
    log_read_at: Arc<Mutex<Instant>>,
}

/// How long a log whose record count stands still goes without a download. The count is the
/// change signal, and a log cleared and refilled to exactly the stored count keeps it; a
/// download now and then (and at every backup) compares the log with the cursor's last key.
pub(super) const LOG_CHECK_EVERY: Duration = Duration::from_secs(3600);

impl ZkPunches {
    /// Punches stored through `log`, cursors kept in `store` (the same store).
    pub fn new(log: PunchLog, store: Store) -> ZkPunches {
        ZkPunches {
            log,
            store,
            uids: Arc::default(),
            log_read_at: Arc::new(Mutex::new(Instant::now())),
        }
    }

    /// Notes a complete download of the log.
    pub(super) fn log_read(&self) {
        *self.log_read_at.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    /// Remembers the uids of a complete user table read.
    pub(super) fn remember_users(&self, table: &UserTable) {
        let uids = table
            .users
            .iter()
            .map(|user| (user.uid, user.user_id.display()))
            .collect();
        *self.uids.lock().unwrap_or_else(|p| p.into_inner()) = uids;
    }

    /// The user id of `uid` as of the last user table read.
    pub(super) fn user_of_uid(&self, uid: u32) -> Option<String> {
        let uid = u16::try_from(uid).ok()?;
        self.uids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&uid)
            .cloned()
    }

    /// Stores punches that arrived as live events: the same call, transaction (punch and its
    /// upstream event) and fsync as the poll's, so the poll's later copy of the same record
    /// finds the key and is counted as repeated, not stored or sent again.
    pub(super) async fn store_live(
        &self,
        device_id: &str,
        punches: Vec<Punch>,
    ) -> Result<crate::device::punches::PunchBatch, crate::upstream::OutboxError> {
        self.log.record_punches(device_id, punches).await
    }
}

/// How far one device's attendance log is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct AttendanceCursor {
    /// Records at the head of the log that are stored.
    count: u64,
    /// The punch key of record `count - 1` (empty when `count` is 0), to recognise the same log.
    last_key: String,
    /// Record size of the log (40, 16 or 8 bytes), the layout hint for the next decode.
    record_len: u8,
}

impl Record for AttendanceCursor {
    const KIND: &'static str = "zk_attendance_cursor";
    const VERSION: u32 = 1;
}

fn cursor_key(device_id: &str) -> Vec<u8> {
    format!("zk_attendance_cursor:{device_id}").into_bytes()
}

fn load_cursor(store: &Store, device_id: &str) -> Option<AttendanceCursor> {
    match store.meta::<AttendanceCursor>(&cursor_key(device_id)) {
        Ok(cursor) => cursor,
        Err(err) => {
            tracing::error!(device = device_id, %err, "cannot read the attendance cursor; the whole log is read and de-duplicated");
            None
        }
    }
}

/// Whether this session must download the log: always without a cursor, for a backup
/// ([`FetchMode::All`]) and when the last download is [`LOG_CHECK_EVERY`] old; otherwise only
/// when the device's record count differs from what is stored.
pub(super) fn needs_read(
    punches: &ZkPunches,
    device_id: &str,
    sizes: &DeviceSizes,
    mode: FetchMode,
) -> bool {
    let stale = punches
        .log_read_at
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .elapsed()
        >= LOG_CHECK_EVERY;
    if mode == FetchMode::All || stale {
        return true;
    }
    match load_cursor(&punches.store, device_id) {
        Some(cursor) if cursor.count == u64::from(sizes.records) => {
            tracing::debug!(
                device = device_id,
                records = sizes.records,
                "attendance log unchanged since the last read"
            );
            false
        }
        _ => true,
    }
}

/// A downloaded attendance dataset with what is needed to turn it into punches.
pub(super) struct AttendanceDownload {
    /// The raw dataset (length prefix + records).
    pub dataset: Vec<u8>,
    /// The device's serial number, the `sn` of every punch key.
    pub sn: String,
    /// The record count the device reported before the download.
    pub device_count: u32,
}

fn layout_of(record_len: u8) -> Option<AttendanceLayout> {
    match record_len {
        40 => Some(AttendanceLayout::Full40),
        16 => Some(AttendanceLayout::Extended16),
        8 => Some(AttendanceLayout::Compact8),
        _ => None,
    }
}

fn record_len(layout: AttendanceLayout) -> u8 {
    match layout {
        AttendanceLayout::Full40 => 40,
        AttendanceLayout::Extended16 => 16,
        AttendanceLayout::Compact8 => 8,
    }
}

/// Converts one record into a punch, keeping every raw value and the device time unshifted.
///
/// `mode` is the match method (ZK "verify": 0 password, 1 fingerprint, 2 card…) and `inout` the
/// punch state (0 check-in, 1 check-out…), by meaning as for the AI06; pyzk's `status`/`punch`
/// names swap between layouts, so they are not used. The 8-byte layout names the user only by
/// the device's internal uid, resolved through the user table read in the same session (the
/// raw uid is kept; an unknown uid stays the uid).
fn punch_of(
    sn: &str,
    layout: AttendanceLayout,
    record: &AttendanceRecord,
    uids: &HashMap<u16, String>,
) -> Punch {
    let mut raw = BTreeMap::new();
    raw.insert("layout".to_string(), record_len(layout).to_string());
    raw.insert("verify".to_string(), record.verify.to_string());
    raw.insert("state".to_string(), record.state.to_string());
    raw.insert("time_raw".to_string(), record.time.0.to_string());
    if let Some(uid) = record.uid {
        raw.insert("uid".to_string(), uid.to_string());
    }
    if let Some(workcode) = record.workcode {
        raw.insert("workcode".to_string(), workcode.to_string());
    }
    let from_record = record
        .user_id
        .as_ref()
        .map(UserId::display)
        .filter(|id| !id.is_empty());
    let user_id = match (from_record, record.uid) {
        (Some(id), _) => id,
        (None, Some(uid)) => {
            raw.insert("user_id_from_uid".to_string(), "true".to_string());
            uids.get(&uid).cloned().unwrap_or_else(|| uid.to_string())
        }
        (None, None) => String::new(),
    };
    Punch {
        sn: sn.to_string(),
        user_id,
        time: record.time.to_parts().to_string(),
        mode: record.verify.to_string(),
        inout: record.state.to_string(),
        raw,
    }
}

/// Converts a live attendance event into the punch the log's record of the same punch gives:
/// the same `sn`, user id, device time (unshifted), verify (`mode`) and state (`inout`), hence
/// the same punch key. A small-form event names the user by uid, resolved through `user_of_uid`
/// (the last user table); `None` when that uid is unknown or the event is a failed
/// verification: the poll, which stays authoritative, stores it then.
pub(super) fn punch_of_event(
    sn: &str,
    event: &AttendanceEvent,
    user_of_uid: impl Fn(u32) -> Option<String>,
) -> Option<Punch> {
    if !event.is_punch() {
        return None;
    }
    let mut raw = BTreeMap::new();
    raw.insert("source".to_string(), "live_event".to_string());
    raw.insert("event_len".to_string(), event.payload_len.to_string());
    raw.insert("verify".to_string(), event.verify.to_string());
    raw.insert("state".to_string(), event.state.to_string());
    if let Some(workcode) = event.workcode {
        raw.insert("workcode".to_string(), workcode.to_string());
    }
    let user_id = match &event.user {
        EventUser::UserId(id) => id.display(),
        EventUser::Uid(uid) => {
            raw.insert("uid".to_string(), uid.to_string());
            raw.insert("user_id_from_uid".to_string(), "true".to_string());
            user_of_uid(*uid)?
        }
    };
    if user_id.is_empty() {
        return None;
    }
    Some(Punch {
        sn: sn.to_string(),
        user_id,
        time: event.time.to_string(),
        mode: event.verify.to_string(),
        inout: event.state.to_string(),
        raw,
    })
}

/// Decodes a downloaded log and stores every record past the cursor (or, when the cursor does
/// not match the log, every record, de-duplicated by key), advancing the cursor after each
/// durable batch. Errors are logged: punches that could not be stored stay on the device and
/// are offered again at the next read.
pub(super) async fn store_download(
    punches: &ZkPunches,
    device_id: &str,
    download: AttendanceDownload,
    users: Option<&UserTable>,
    codec: &TextCodec,
) {
    let cursor = load_cursor(&punches.store, device_id);
    let hint = cursor.as_ref().and_then(|c| layout_of(c.record_len));
    let log = match decode_attendance(&download.dataset, download.device_count, hint, codec) {
        Ok(log) => log,
        Err(err) => {
            tracing::error!(device = device_id, %err, "the attendance log cannot be decoded; no punch was stored from this read");
            return;
        }
    };
    let Some(layout) = log.layout else {
        return;
    };
    if !log.count_consistent {
        tracing::info!(
            device = device_id,
            reported = download.device_count,
            read = log.records.len(),
            "the attendance log changed size during the read; storing every record read"
        );
    }
    let uids: HashMap<u16, String> = users
        .map(|table| {
            table
                .users
                .iter()
                .map(|user| (user.uid, user.user_id.display()))
                .collect()
        })
        .unwrap_or_default();
    let all: Vec<Punch> = log
        .records
        .iter()
        .map(|record| punch_of(&download.sn, layout, record, &uids))
        .collect();
    let start = match &cursor {
        Some(cursor) if cursor.count == 0 => 0,
        Some(cursor) => {
            let at = usize::try_from(cursor.count - 1).unwrap_or(usize::MAX);
            match all.get(at) {
                Some(last) if EventKey::punch(last) == cursor.last_key => at + 1,
                _ => {
                    tracing::warn!(
                        device = device_id,
                        stored = cursor.count,
                        on_device = all.len(),
                        "the attendance log no longer starts with the records stored before (cleared or rewritten on the device); offering the whole log again, de-duplicated by punch key"
                    );
                    rewritten_alarm(&punches.store, device_id, cursor.count, all.len());
                    0
                }
            }
        }
        None => 0,
    };
    let mut new = 0;
    let mut repeated = 0;
    let mut end = start;
    while end < all.len() {
        let next = (end + BATCH).min(all.len());
        match punches
            .log
            .record_punches(device_id, all[end..next].to_vec())
            .await
        {
            Ok(batch) => {
                new += batch.new;
                repeated += batch.duplicates;
            }
            Err(err) => {
                tracing::error!(device = device_id, %err, stored = new, "zk punches could not be stored; the rest stay on the device and are read again at the next poll");
                break;
            }
        }
        end = next;
        let advanced = AttendanceCursor {
            count: end as u64,
            last_key: EventKey::punch(&all[end - 1]),
            record_len: record_len(layout),
        };
        if let Err(err) = save_cursor(&punches.store, device_id, &advanced).await {
            tracing::error!(device = device_id, %err, "cannot advance the attendance cursor; the next read de-duplicates by key");
            break;
        }
    }
    if cursor.is_none() && all.is_empty() {
        let empty = AttendanceCursor {
            count: 0,
            last_key: String::new(),
            record_len: record_len(layout),
        };
        if let Err(err) = save_cursor(&punches.store, device_id, &empty).await {
            tracing::error!(device = device_id, %err, "cannot note the empty attendance log");
        }
    }
    tracing::info!(
        device = device_id,
        new,
        repeated,
        on_device = all.len(),
        "zk punches stored"
    );
}

/// Records the alarm of a log that no longer matches the cursor; it becomes durable with the
/// cursor that follows (or the next durable write), and an MQTT alert.
fn rewritten_alarm(store: &Store, device_id: &str, stored: u64, on_device: usize) {
    let alarm = Alarm {
        raised_at_unix_ms: chrono::Utc::now().timestamp_millis(),
        kind: AlarmKind::AttendanceLogRewritten {
            device_id: device_id.to_string(),
            stored,
            on_device: on_device as u64,
        },
        message: format!(
            "the attendance log of {device_id} no longer starts with the {stored} records stored \
             before (cleared or rewritten at the terminal); its {on_device} records were read \
             again and de-duplicated by punch key, so nothing was stored or sent twice, but \
             punches made at the terminal between the last read and the clearing may be gone \
             from it: check who cleared the log"
        ),
    };
    if let Err(err) = store.raise_alarm(&alarm) {
        tracing::error!(device = device_id, %err, "cannot record the rewritten-log alarm");
    }
}

async fn save_cursor(
    store: &Store,
    device_id: &str,
    cursor: &AttendanceCursor,
) -> Result<(), StoreError> {
    store.set_meta(&cursor_key(device_id), cursor)?;
    store.make_durable().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use device_protocols::zk::{DeviceText, ZkTime};

    fn record(uid: u16, user_id: Option<UserId>) -> AttendanceRecord {
        AttendanceRecord {
            uid: Some(uid),
            user_id,
            verify: 1,
            state: 0,
            time: ZkTime(0x2368_B36B),
            workcode: Some(0),
        }
    }

    #[test]
    fn a_punch_keeps_raw_values_and_the_device_time() {
        let punch = punch_of(
            "SN1",
            AttendanceLayout::Full40,
            &record(13, Some(UserId::Text(DeviceText::utf8("999111333")))),
            &HashMap::new(),
        );
        assert_eq!(punch.user_id, "999111333");
        assert_eq!(punch.time, "2018-06-25 17:50:35");
        assert_eq!((punch.mode.as_str(), punch.inout.as_str()), ("1", "0"));
        assert_eq!(punch.raw["uid"], "13");
        assert_eq!(punch.raw["time_raw"], 0x2368_B36Bu32.to_string());
        assert_eq!(punch.raw["layout"], "40");
    }

    #[test]
    fn a_live_event_gives_the_key_of_its_log_record() {
        use device_protocols::zk::{EventForm, TextCodec};
        let id = UserId::Text(DeviceText::utf8("999111333"));
        let logged = record(13, Some(id.clone()));
        let polled = punch_of("SN1", AttendanceLayout::Full40, &logged, &HashMap::new());
        let event = |user| AttendanceEvent {
            user,
            verify: logged.verify,
            state: logged.state,
            time: logged.time.to_parts(),
            workcode: None,
            payload_len: 0,
        };
        for (user, form) in [
            (EventUser::UserId(id), EventForm::UserId32),
            (EventUser::Uid(13), EventForm::Uid10),
        ] {
            let wire = event(user).encode(form).unwrap();
            let decoded = AttendanceEvent::decode(&wire, &TextCodec::default()).unwrap();
            let live = punch_of_event("SN1", &decoded, |uid| {
                (uid == 13).then(|| "999111333".to_string())
            })
            .unwrap();
            assert_eq!(EventKey::punch(&live), EventKey::punch(&polled), "{form:?}");
        }
        let unknown = event(EventUser::Uid(14));
        assert!(punch_of_event("SN1", &unknown, |_| None).is_none());
    }

    #[test]
    fn an_eight_byte_record_is_named_through_the_user_table() {
        let uids = HashMap::from([(7u16, "1007".to_string())]);
        let known = punch_of("SN1", AttendanceLayout::Compact8, &record(7, None), &uids);
        assert_eq!(known.user_id, "1007");
        assert_eq!(known.raw["user_id_from_uid"], "true");
        let unknown = punch_of("SN1", AttendanceLayout::Compact8, &record(9, None), &uids);
        assert_eq!(unknown.user_id, "9");
    }
}
