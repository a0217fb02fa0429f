//! The backup file format: one file per backup, JSON lines, written atomically.
//!
//! ```text
//! {"format":"edge-agent-backup","version":1,"device_id":"door-1","agent_id":"gw-7","created_at":"2026-11-22T10:24:55Z","created_at_ms":…}
//! {"user_id":"1","slot":11,"name":"Ann","privilege":0,"value":3000000001}
//! {"user_id":"1","slot":50,"name":"Ann","privilege":0,"value":"/9j/4AAQ…"}
//! {"user":{"user_id":"1","name":"Ann","privilege":0,"card":"3000000001","password":null,"group":null,"enabled":null,"credentials":[11,50]}}
//! {"user":{"user_id":"2","name":"Bob","privilege":0,"card":null,"password":null,"group":"1","enabled":true,"credentials":[]}}
//! {"trailer":{"users":2,"credentials":2,"device_user_count":2,"sha256":"9f86d08…"}}
//! ```
//!
//! - Every user of the complete read has one `user` line (version 2), with or without
//!   credentials: a ZK user with no card, password or template is still a user. The trailer's
//!   `users` counts those lines and must equal the complete read's user count, or no file is
//!   written. Credentials are streamed first (as the read delivers them), the user lines follow
//!   once the read is complete. Version 1 files (credential lines only; `users` counted the
//!   distinct users of those lines) are still read.
//!
//! - The name is `<device>_<YYYYMMDDTHHMMSSZ>.backup.jsonl` (UTC; the device id made
//!   file-safe), so `ls` sorts a device's backups by time and a technician can tell them apart
//!   without opening them.
//! - Values keep their JSON type (cards are numbers, photos strings) so a restore writes back
//!   exactly what was read.
//! - `sha256` covers every byte before the trailer line: `head -n -1 FILE | sha256sum` checks
//!   it by hand. A file without a valid trailer (a crash mid-write cannot leave one, see below)
//!   is not a backup.
//! - Written to `.<name>.tmp`, fsynced, renamed into place, and the directory fsynced: a backup
//!   either exists completely or not at all. Credentials are streamed to the file as they
//!   arrive, so a 5,000-photo backup never sits in memory.

use crate::device::{Credential, ReadUser, UserDetails};

/// The AiFace slot of a password/PIN (the ZK driver maps its password there too).
const PASSWORD_SLOT: u16 = 10;
use device_protocols::aiface::CredentialValue;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// The `format` value of every backup header.
pub const FORMAT: &str = "edge-agent-backup";
/// The format version this build writes (it also reads [`VERSION_CREDENTIALS_ONLY`]).
pub const VERSION: u32 = 2;
/// The first format version: credential lines only, no user lines.
pub const VERSION_CREDENTIALS_ONLY: u32 = 1;
/// The file name ending of backups.
pub const EXTENSION: &str = ".backup.jsonl";

/// What can be wrong with a backup file.
#[derive(Debug, Error)]
pub enum BackupError {
    /// The file system failed.
    #[error("backup file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
    /// The file is not a complete, intact backup.
    #[error("{path} is not a usable backup: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A backup with no users while the device reports users (the field failure this product
    /// exists to prevent: 127 "successful" backups with zero records).
    #[error(
        "backup of {device} read 0 users but the device reports {device_user_count}; no backup \
         was written. This is a failure, not an empty backup"
    )]
    Empty {
        /// The device.
        device: String,
        /// What the device reports.
        device_user_count: u64,
    },
    /// The file would not hold every user the complete read found.
    #[error(
        "backup of {device} holds {written} users but the complete read found {read}; no backup \
         was written"
    )]
    MissingUsers {
        /// The device.
        device: String,
        /// Users the complete read found.
        read: u64,
        /// User lines written.
        written: u64,
    },
    /// Fewer credentials reached the file than the device listed.
    #[error("backup of {device} holds {written} credentials but the device listed {listed}; no backup was written")]
    Incomplete {
        /// The device.
        device: String,
        /// Listed by the device.
        listed: usize,
        /// Written to the file.
        written: u64,
    },
    /// The backup belongs to another device.
    #[error("{path} is a backup of device {in_file}, not of {asked}")]
    WrongDevice {
        /// The file.
        path: PathBuf,
        /// The device named in the file.
        in_file: String,
        /// The device asked for.
        asked: String,
    },
}

/// The first line of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Always [`FORMAT`].
    pub format: String,
    /// Format version.
    pub version: u32,
    /// The device backed up.
    pub device_id: String,
    /// The agent that wrote it.
    pub agent_id: String,
    /// Creation time, RFC 3339 UTC (for people).
    pub created_at: String,
    /// Creation time, UTC ms (for programs).
    pub created_at_ms: i64,
}

/// One credential line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CredentialLine {
    /// Device user id.
    pub user_id: String,
    /// Credential slot (AiFace numbering).
    pub slot: u16,
    /// The user's name.
    pub name: String,
    /// The user's privilege.
    pub privilege: u64,
    /// The value with its JSON type.
    pub value: CredentialValue,
}

impl From<CredentialLine> for Credential {
    fn from(line: CredentialLine) -> Self {
        Credential {
            user_id: line.user_id,
            slot: line.slot,
            name: line.name,
            privilege: line.privilege,
            value: line.value,
        }
    }
}

/// One user line (version 2): the user as the device holds it, credentials or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupUser {
    /// Device user id.
    pub user_id: String,
    /// Name.
    pub name: String,
    /// Device privilege level.
    pub privilege: u32,
    /// Card number, if enrolled.
    pub card: Option<String>,
    /// The password/PIN as read from the device, if set (its credential line holds it too).
    pub password: Option<String>,
    /// Group or department, when the device's list carries one (ZK).
    pub group: Option<String>,
    /// Whether the user may punch, when the device's list says (ZK).
    pub enabled: Option<bool>,
    /// The credential slots the device listed for the user (their lines are in this file).
    pub credentials: Vec<u16>,
}

#[derive(Serialize, Deserialize)]
struct UserLine {
    user: BackupUser,
}

/// The counts and checksum closing a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trailer {
    /// User lines (version 1: distinct users of the credential lines).
    pub users: u64,
    /// Credential lines.
    pub credentials: u64,
    /// The device's own user count at the read.
    pub device_user_count: u64,
    /// SHA-256 (hex) of every byte before the trailer line.
    pub sha256: String,
}

#[derive(Serialize, Deserialize)]
struct TrailerLine {
    trailer: Trailer,
}

/// A backup as listings show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupInfo {
    /// The file.
    pub path: PathBuf,
    /// Its header.
    pub header: Header,
    /// Its counts and checksum.
    pub trailer: Trailer,
    /// File size in bytes.
    pub size_bytes: u64,
}

/// A backup being written.
pub struct BackupWriter {
    temp_path: PathBuf,
    final_path: PathBuf,
    out: BufWriter<File>,
    hasher: Sha256,
    users: u64,
    passwords: BTreeMap<String, String>,
    credentials: u64,
    header: Header,
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The file name of `device_id`'s backup made at `created_at_ms`.
pub fn file_name(device_id: &str, created_at_ms: i64) -> String {
    let safe = crate::sync::file_safe(device_id);
    let time = chrono::DateTime::from_timestamp_millis(created_at_ms)
        .unwrap_or_default()
        .format("%Y%m%dT%H%M%SZ");
    format!("{safe}_{time}{EXTENSION}")
}

impl BackupWriter {
    /// Starts a backup of `device_id` in `dir` (created if needed) and writes its header.
    pub fn create(
        dir: &Path,
        device_id: &str,
        agent_id: &str,
        created_at_ms: i64,
    ) -> Result<Self, BackupError> {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        let name = file_name(device_id, created_at_ms);
        let final_path = dir.join(&name);
        if final_path.exists() {
            return Err(BackupError::Io {
                path: final_path,
                source: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "a backup of this device was already made this second; try again",
                ),
            });
        }
        let temp_path = dir.join(format!(".{name}.tmp"));
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temp_path)
            .map_err(io_error(&temp_path))?;
        let header = Header {
            format: FORMAT.to_string(),
            version: VERSION,
            device_id: device_id.to_string(),
            agent_id: agent_id.to_string(),
            created_at: chrono::DateTime::from_timestamp_millis(created_at_ms)
                .unwrap_or_default()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            created_at_ms,
        };
        let mut writer = Self {
            temp_path,
            final_path,
            out: BufWriter::with_capacity(256 * 1024, file),
            hasher: Sha256::new(),
            users: 0,
            passwords: BTreeMap::new(),
            credentials: 0,
            header: header.clone(),
        };
        writer.line(&header)?;
        Ok(writer)
    }

    fn line<T: Serialize>(&mut self, value: &T) -> Result<(), BackupError> {
        let mut bytes = serde_json::to_vec(value).map_err(|err| BackupError::Corrupt {
            path: self.temp_path.clone(),
            reason: format!("cannot encode a line: {err}"),
        })?;
        bytes.push(b'\n');
        self.hasher.update(&bytes);
        self.out
            .write_all(&bytes)
            .map_err(io_error(&self.temp_path))
    }

    /// Appends one credential.
    pub fn add(&mut self, credential: &Credential) -> Result<(), BackupError> {
        let line = CredentialLine {
            user_id: credential.user_id.clone(),
            slot: credential.slot,
            name: credential.name.clone(),
            privilege: credential.privilege,
            value: credential.value.clone(),
        };
        self.line(&line)?;
        if credential.slot == PASSWORD_SLOT {
            self.passwords
                .insert(credential.user_id.clone(), credential.value.as_text());
        }
        self.credentials += 1;
        Ok(())
    }

    /// Appends the line of one user of the complete read, after its credentials.
    pub fn add_user(
        &mut self,
        user: &ReadUser,
        details: Option<&UserDetails>,
    ) -> Result<(), BackupError> {
        let details = details.cloned().unwrap_or_default();
        let line = UserLine {
            user: BackupUser {
                user_id: user.user.user_id.clone(),
                name: user.user.name.clone(),
                privilege: user.user.privilege,
                card: user.user.card.clone(),
                password: self.passwords.remove(&user.user.user_id),
                group: details.group,
                enabled: details.enabled,
                credentials: user.slots.clone(),
            },
        };
        self.line(&line)?;
        self.users += 1;
        Ok(())
    }

    /// User lines written so far.
    pub fn users(&self) -> u64 {
        self.users
    }

    /// Credentials written so far.
    pub fn credentials(&self) -> u64 {
        self.credentials
    }

    /// Writes the trailer, makes the file durable and moves it into place.
    pub fn finish(mut self, device_user_count: u64) -> Result<BackupInfo, BackupError> {
        let trailer = Trailer {
            users: self.users,
            credentials: self.credentials,
            device_user_count,
            sha256: hex(&self.hasher.clone().finalize()),
        };
        let mut bytes = serde_json::to_vec(&TrailerLine {
            trailer: trailer.clone(),
        })
        .expect("a trailer always encodes");
        bytes.push(b'\n');
        let temp = self.temp_path.clone();
        self.out.write_all(&bytes).map_err(io_error(&temp))?;
        let file = self
            .out
            .into_inner()
            .map_err(|err| io_error(&temp)(err.into_error()))?;
        file.sync_all().map_err(io_error(&temp))?;
        let size_bytes = file.metadata().map_err(io_error(&temp))?.len();
        drop(file);
        std::fs::rename(&temp, &self.final_path).map_err(io_error(&self.final_path))?;
        if let Some(dir) = self.final_path.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io_error(dir))?;
        }
        Ok(BackupInfo {
            path: self.final_path,
            header: self.header,
            trailer,
            size_bytes,
        })
    }

    /// Gives up: removes the partial file.
    pub fn abandon(self) {
        let temp = self.temp_path.clone();
        drop(self.out);
        if let Err(err) = std::fs::remove_file(&temp) {
            tracing::warn!(path = %temp.display(), %err, "could not remove a partial backup file");
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn corrupt(path: &Path, reason: impl Into<String>) -> BackupError {
    BackupError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Header, trailer and size of a backup, without checking its checksum (for listings; a
/// restore calls [`verify`]).
pub fn read_info(path: &Path) -> Result<BackupInfo, BackupError> {
    let mut file = File::open(path).map_err(io_error(path))?;
    let size_bytes = file.metadata().map_err(io_error(path))?.len();
    let mut first = String::new();
    BufReader::new(&mut file)
        .read_line(&mut first)
        .map_err(io_error(path))?;
    let header = parse_header(path, &first)?;
    let tail_len = size_bytes.min(4096);
    file.seek(SeekFrom::End(-(tail_len as i64)))
        .map_err(io_error(path))?;
    let mut tail = String::new();
    file.read_to_string(&mut tail).map_err(io_error(path))?;
    let last = tail.trim_end().rsplit('\n').next().unwrap_or_default();
    let trailer = parse_trailer(path, last)?;
    Ok(BackupInfo {
        path: path.to_path_buf(),
        header,
        trailer,
        size_bytes,
    })
}

fn parse_header(path: &Path, line: &str) -> Result<Header, BackupError> {
    let header: Header = serde_json::from_str(line.trim_end()).map_err(|err| {
        corrupt(
            path,
            format!("the first line is not a backup header: {err}"),
        )
    })?;
    if header.format != FORMAT
        || (header.version != VERSION && header.version != VERSION_CREDENTIALS_ONLY)
    {
        return Err(corrupt(
            path,
            format!(
                "format {} version {} is not {FORMAT} version {VERSION}",
                header.format, header.version
            ),
        ));
    }
    Ok(header)
}

fn parse_trailer(path: &Path, line: &str) -> Result<Trailer, BackupError> {
    serde_json::from_str::<TrailerLine>(line)
        .map(|line| line.trailer)
        .map_err(|_| {
            corrupt(
                path,
                "no trailer: the file is truncated or was not finished",
            )
        })
}

/// Reads a whole backup and checks its header, checksum and counts.
pub fn verify(path: &Path) -> Result<BackupInfo, BackupError> {
    stream(path, |_| Ok(()))
}

/// Checks the backup (as [`verify`]) and then streams its credentials to `each`; nothing is
/// handed over from a file that fails the check, because the check runs first.
pub fn for_each_credential(
    path: &Path,
    mut each: impl FnMut(CredentialLine) -> Result<(), BackupError>,
) -> Result<BackupInfo, BackupError> {
    verify(path)?;
    stream(path, &mut each)
}

/// Checks the backup (as [`verify`]) and returns its user lines (none in a version 1 file).
pub fn users(path: &Path) -> Result<Vec<BackupUser>, BackupError> {
    verify(path)?;
    let mut users = Vec::new();
    stream_lines(path, &mut |_| Ok(()), &mut |user| {
        users.push(user);
        Ok(())
    })?;
    Ok(users)
}

fn stream(
    path: &Path,
    each: impl FnMut(CredentialLine) -> Result<(), BackupError>,
) -> Result<BackupInfo, BackupError> {
    let mut each = each;
    stream_lines(path, &mut each, &mut |_| Ok(()))
}

fn stream_lines(
    path: &Path,
    each: &mut dyn FnMut(CredentialLine) -> Result<(), BackupError>,
    each_user: &mut dyn FnMut(BackupUser) -> Result<(), BackupError>,
) -> Result<BackupInfo, BackupError> {
    let file = File::open(path).map_err(io_error(path))?;
    let size_bytes = file.metadata().map_err(io_error(path))?.len();
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let mut hasher = Sha256::new();
    let mut line = String::new();
    let mut header = None;
    let mut users = BTreeSet::new();
    let mut user_lines = 0u64;
    let mut credentials = 0u64;
    let mut number = 0usize;
    loop {
        line.clear();
        let read = reader.read_line(&mut line).map_err(io_error(path))?;
        if read == 0 {
            return Err(corrupt(path, "no trailer: the file is truncated"));
        }
        number += 1;
        if header.is_none() {
            header = Some(parse_header(path, &line)?);
            hasher.update(line.as_bytes());
            continue;
        }
        if line.starts_with("{\"trailer\"") {
            let trailer = parse_trailer(path, line.trim_end())?;
            let actual = hex(&hasher.finalize());
            if actual != trailer.sha256 {
                return Err(corrupt(
                    path,
                    format!(
                        "checksum mismatch (file {actual}, trailer {})",
                        trailer.sha256
                    ),
                ));
            }
            let header = header.expect("set on the first line");
            let users_held = if header.version == VERSION_CREDENTIALS_ONLY {
                users.len() as u64
            } else {
                user_lines
            };
            if trailer.credentials != credentials || trailer.users != users_held {
                return Err(corrupt(
                    path,
                    format!(
                        "counts mismatch: trailer says {} users / {} credentials, file holds \
                         {users_held} / {credentials}",
                        trailer.users, trailer.credentials
                    ),
                ));
            }
            return Ok(BackupInfo {
                path: path.to_path_buf(),
                header,
                trailer,
                size_bytes,
            });
        }
        hasher.update(line.as_bytes());
        if line.starts_with("{\"user\"") {
            let user: UserLine = serde_json::from_str(line.trim_end())
                .map_err(|err| corrupt(path, format!("line {number} is not a user: {err}")))?;
            user_lines += 1;
            each_user(user.user)?;
            continue;
        }
        let credential: CredentialLine = serde_json::from_str(line.trim_end())
            .map_err(|err| corrupt(path, format!("line {number} is not a credential: {err}")))?;
        users.insert(credential.user_id.clone());
        credentials += 1;
        each(credential)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credential(user: &str, slot: u16, value: CredentialValue) -> Credential {
        Credential {
            user_id: user.into(),
            slot,
            name: format!("user{user}"),
            privilege: 0,
            value,
        }
    }

    fn write_sample(dir: &Path) -> BackupInfo {
        let mut writer = BackupWriter::create(dir, "door/1", "gw", 1_795_000_000_000).unwrap();
        writer
            .add(&credential(
                "1",
                11,
                CredentialValue::Number(3_000_000_001u64.into()),
            ))
            .unwrap();
        writer
            .add(&credential(
                "1",
                50,
                CredentialValue::Text("/9j/photo".into()),
            ))
            .unwrap();
        writer
            .add(&credential(
                "2",
                11,
                CredentialValue::Number(3_000_000_002u64.into()),
            ))
            .unwrap();
        for (id, slots) in [("1", vec![11, 50]), ("2", vec![11]), ("3", vec![])] {
            let user = ReadUser {
                user: crate::events::DeviceUser {
                    user_id: id.to_string(),
                    name: format!("user{id}"),
                    ..Default::default()
                },
                slots,
            };
            writer.add_user(&user, None).unwrap();
        }
        writer.finish(3).unwrap()
    }

    #[test]
    fn a_written_backup_verifies_and_streams_back_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let info = write_sample(dir.path());
        assert_eq!(
            info.path.file_name().unwrap().to_str().unwrap(),
            "door%2F1_20261118T110640Z.backup.jsonl",
            "device id made file-safe, UTC time in the name"
        );
        assert_eq!((info.trailer.users, info.trailer.credentials), (3, 3));
        assert_eq!(read_info(&info.path).unwrap(), info);
        let users = users(&info.path).unwrap();
        let ids: Vec<&str> = users.iter().map(|u| u.user_id.as_str()).collect();
        assert_eq!(
            ids,
            ["1", "2", "3"],
            "a user without credentials is still a line"
        );
        assert!(users[2].credentials.is_empty());
        let mut seen = Vec::new();
        for_each_credential(&info.path, |line| {
            seen.push((line.user_id, line.slot, line.value));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[0].2, CredentialValue::Number(3_000_000_001u64.into()));
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
    }

    #[test]
    fn tampering_and_truncation_are_detected_before_anything_is_handed_out() {
        let dir = tempfile::tempdir().unwrap();
        let info = write_sample(dir.path());
        let text = std::fs::read_to_string(&info.path).unwrap();
        std::fs::write(&info.path, text.replace("user2", "userX")).unwrap();
        let mut handed = 0;
        let err = for_each_credential(&info.path, |_| {
            handed += 1;
            Ok(())
        })
        .unwrap_err();
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
        assert_eq!(handed, 0);
        let truncated: String = text.lines().take(3).map(|l| format!("{l}\n")).collect();
        std::fs::write(&info.path, truncated).unwrap();
        let err = verify(&info.path).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
    }

    #[test]
    fn an_abandoned_backup_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = BackupWriter::create(dir.path(), "d", "gw", 0).unwrap();
        writer
            .add(&credential("1", 11, CredentialValue::Number(1u64.into())))
            .unwrap();
        writer.abandon();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
