//! The commands served by the sync engine and the upstream outbox: `sync-now`, `buffer list`,
//! `map`, `conflicts list`, `history`, `backups list`, `backups create`, `dead-letters list`
//! and `dead-letters requeue`. Each parses its arguments in `prepare` (so a bad argument is
//! refused before anything runs) and does its work in the returned future.

use serde_json::{json, Value};

use super::blocking;
use crate::mqtt::command::args::Args;
use crate::mqtt::command::lists;
use crate::mqtt::command::paging::{self, numeric_key, Order, PageRequest};
use crate::mqtt::command::registry::{Action, Caller, Command};
use crate::mqtt::command::reply::CommandError;
use crate::sync::buffer::MappingStatus;
use crate::sync::{conflicts, SyncHandle};
use crate::upstream::Upstream;

fn failed(err: impl std::fmt::Display) -> CommandError {
    CommandError::failed(err.to_string())
}

/// The device named by the required `device` argument, checked against the configured ones.
fn device_arg(args: &mut Args, sync: &SyncHandle) -> Result<String, CommandError> {
    let device = args
        .opt_id("device")?
        .ok_or_else(|| CommandError::bad_argument("device", "required: the device id"))?;
    if !sync.knows(&device) {
        return Err(CommandError::bad_argument(
            "device",
            format!("no synced device `{device}` on this agent"),
        ));
    }
    Ok(device)
}

/// The live session of a device an operator's command must talk to now (AI06: it has to be
/// connected; commands on ZK devices over MQTT are not supported yet).
fn live_session(
    sync: &SyncHandle,
    device: &str,
) -> Result<crate::device::aiface::AifaceSession, CommandError> {
    sync.aiface().connected(device).ok_or_else(|| {
        CommandError::failed(format!(
            "device `{device}` is not a connected AI06 terminal right now; nothing was done"
        ))
    })
}

/// `sync-now device=ID`: polls the device at once (state-changing: it takes the lock).
pub(crate) struct SyncNow(pub SyncHandle);

impl Command for SyncNow {
    fn changes_state(&self, _args: &Args) -> bool {
        true
    }

    fn prepare(&self, mut args: Args, _caller: &Caller) -> Result<Action, CommandError> {
        let device = device_arg(&mut args, &self.0)?;
        args.finish()?;
        let sync = self.0.clone();
        Ok(Box::pin(async move {
            sync.sync_now(&device);
            Ok(json!({ "device": device, "poll": "requested" }))
        }))
    }
}

use crate::mqtt::command::lists::{DEFAULT_PAGE, MAX_PAGE};

/// `buffer list [device=ID] [status=unmapped|pending|mapped|conflict|missing] [limit=N]
/// [after=CURSOR]`: one page of buffered users, ordered by device and user id, with the counts
/// per status and the cursor of the next page.
pub(crate) struct BufferList(pub SyncHandle);

impl Command for BufferList {
    fn changes_state(&self, _args: &Args) -> bool {
        false
    }

    fn prepare(&self, mut args: Args, _caller: &Caller) -> Result<Action, CommandError> {
        let device = args.opt_id("device")?;
        let status = match args.opt_str("status")? {
            None => None,
            Some(text) => Some(
                text.parse::<MappingStatus>()
                    .map_err(|err| CommandError::bad_argument("status", err))?,
            ),
        };
        let request = PageRequest::from_args(&mut args, DEFAULT_PAGE, MAX_PAGE)?;
        args.finish()?;
        let store = self.0.engine().store().clone();
        Ok(Box::pin(blocking(move || {
            lists::buffer(&store, device.as_deref(), status, &request)
        })))
    }
}

/// `buffer credential device=ID user=ID [slot=N] [limit=N] [after=CURSOR]`: the credential
/// values the store last read from the device for one user (a technician checking which face
/// or finger the terminal held for a user who went missing), each checked against its digest.
pub(crate) struct BufferCredential(pub SyncHandle);

impl Command for BufferCredential {
    fn changes_state(&self, _args: &Args) -> bool {
        false
    }

    fn prepare(&self, mut args: Args, _caller: &Caller) -> Result<Action, CommandError> {
        let device = device_arg(&mut args, &self.0)?;
        let user = args
            .opt_id("user")?
            .ok_or_else(|| CommandError::bad_argument("user", "required: the device user id"))?;
        let slot = args
            .opt_int("slot", 0, i64::from(u16::MAX))?
            .map(|slot| slot as u16);
        let request = PageRequest::from_args(&mut args, DEFAULT_PAGE, MAX_PAGE)?;
        args.finish()?;
        let store = self.0.engine().store().clone();
        Ok(Box::pin(blocking(move || {
            lists::credential(&store, &device, &user, slot, &request)
        })))
    }
}

/// `map device=ID user=ID person=ID`: links a buffered user to an upstream person (pending
/// until the upstream confirms the person exists).
pub(crate) struct Map(pub SyncHandle);

impl Command for Map {
    fn changes_state(&self, _args: &Args) -> bool {
        true
    }

    fn prepare(&self, mut args: Args, caller: &Caller) -> Result<Action, CommandError> {
        let device = device_arg(&mut args, &self.0)?;
        let user = args
            .opt_id("user")?
            .ok_or_else(|| CommandError::bad_argument("user", "required: the device user id"))?;
        let person = args.opt_id("person")?.ok_or_else(|| {
            CommandError::bad_argument("person", "required: the upstream person id")
        })?;
        args.finish()?;
        let admin = caller
            .admin
            .clone()
            .unwrap_or_else(|| "unsigned".to_string());
        let nonce = caller.nonce.clone().unwrap_or_default();
        let engine = std::sync::Arc::clone(self.0.engine());
        Ok(Box::pin(async move {
            engine
                .request_mapping(&device, &user, &person, &admin, &nonce)
                .await
                .map_err(failed)?;
            Ok(json!({ "device": device, "user": user, "person": person, "status": "pending" }))
        }))
    }
}

/// `missing confirm device=ID`: an administrator confirms a mass disappearance; the held
/// `user_missing` events of the device are forwarded.
pub(crate) struct MissingConfirm(pub SyncHandle);

impl Command for MissingConfirm {
    fn changes_state(&self, _args: &Args) -> bool {
        true
    }

    fn prepare(&self, mut args: Args, caller: &Caller) -> Result<Action, CommandError> {
        let device = device_arg(&mut args, &self.0)?;
        args.finish()?;
        let admin = caller
            .admin
            .clone()
            .unwrap_or_else(|| "unsigned".to_string());
        let engine = std::sync::Arc::clone(self.0.engine());
        Ok(Box::pin(async move {
            let forwarded = engine
                .confirm_missing(&device, &admin)
                .await
                .map_err(failed)?;
            Ok(json!({ "device": device, "forwarded": forwarded }))
        }))
    }
}

/// `conflicts list [device=ID] [limit=N] [after=CURSOR]`: open device/upstream disagreements
/// with both versions, one page ordered by device and user id.
pub(crate) struct ConflictsList(pub SyncHandle);

impl Command for ConflictsList {
    fn changes_state(&self, _args: &Args) -> bool {
        false
    }

    fn prepare(&self, mut args: Args, _caller: &Caller) -> Result<Action, CommandError> {
        let device = args.opt_id("device")?;
        let request = PageRequest::from_args(&mut args, DEFAULT_PAGE, MAX_PAGE)?;
        args.finish()?;
        let store = self.0.engine().store().clone();
        Ok(Box::pin(blocking(move || {
            lists::conflicts(&store, device.as_deref(), &request)
        })))
    }
}

/// `history device=ID [limit=N] [after=CURSOR]`: user counts per complete read, newest first,
/// with the ids that came and went.
pub(crate) struct History(pub SyncHandle);

impl Command for History {
    fn changes_state(&self, _args: &Args) -> bool {
        false
    }

    fn prepare(&self, mut args: Args, _caller: &Caller) -> Result<Action, CommandError> {
        let device = device_arg(&mut args, &self.0)?;
        let request = PageRequest::from_args(&mut args, 20, MAX_PAGE)?;
        args.finish()?;
        let store = self.0.engine().store().clone();
        Ok(Box::pin(blocking(move || {
            lists::history(&store, &device, &request)
        })))
    }
}

/// `backups list [device=ID] [limit=N] [after=CURSOR]`: backup files with their counts, by
/// file name.
pub(crate) struct BackupsList {
    /// Where backups are written.
    pub dir: std::path::PathBuf,
}

impl Command for BackupsList {
    fn changes_state(&self, _args: &Args) -> bool {
        false
    }

    fn prepare(&self, mut args: Args, _caller: &Caller) -> Result<Action, CommandError> {
        let device = args.opt_id("device")?;
        let request = PageRequest::from_args(&mut args, DEFAULT_PAGE, MAX_PAGE)?;
        args.finish()?;
        let dir = self.dir.clone();
        Ok(Box::pin(blocking(move || {
            lists::backups(&dir, device.as_deref(), &request)
        })))
    }
}

/// `backups create device=ID`: a full backup of a connected device now, under its lock.
pub(crate) struct BackupsCreate {
    /// The sync service (engine and live sessions).
    pub sync: SyncHandle,
    /// Where backups are written.
    pub dir: std::path::PathBuf,
}

impl Command for BackupsCreate {
    fn changes_state(&self, _args: &Args) -> bool {
        true
    }

    fn prepare(&self, mut args: Args, _caller: &Caller) -> Result<Action, CommandError> {
        let device = device_arg(&mut args, &self.sync)?;
        args.finish()?;
        let engine = std::sync::Arc::clone(self.sync.engine());
        let dir = self.dir.clone();
        // A ZK terminal is dialled for the backup; an AI06 must be connected.
        match self.sync.zk_session(&device) {
            Some(session) => Ok(backup_action(engine, session, dir)),
            None => Ok(backup_action(
                engine,
                live_session(&self.sync, &device)?,
                dir,
            )),
        }
    }
}

/// The work of `backups create` on one device's session, whatever the protocol.
fn backup_action<S: crate::device::DeviceSession + Send + Sync + 'static>(
    engine: std::sync::Arc<crate::sync::Engine>,
    session: S,
    dir: std::path::PathBuf,
) -> Action {
    Box::pin(async move {
        let info = engine.backup(&session, &dir).await.map_err(failed)?;
        Ok(json!({ "backup": info }))
    })
}

/// `dead-letters list [limit=N] [after=CURSOR]`: events the upstream refused for good, with
/// the reason, by sequence.
pub(crate) struct DeadLettersList(pub Upstream);

impl Command for DeadLettersList {
    fn changes_state(&self, _args: &Args) -> bool {
        false
    }

    fn prepare(&self, mut args: Args, _caller: &Caller) -> Result<Action, CommandError> {
        let request = PageRequest::from_args(&mut args, DEFAULT_PAGE, MAX_PAGE)?;
        args.finish()?;
        let upstream = self.0.clone();
        Ok(Box::pin(blocking(move || {
            let mut letters = upstream.outbox().dead_letters().map_err(failed)?;
            letters.sort_by_key(|(sequence, _)| *sequence);
            let letters = letters
                .into_iter()
                .map(|(sequence, letter)| json!({ "sequence": sequence, "dead_letter": letter }));
            let key = |l: &Value| numeric_key(l["sequence"].as_u64().unwrap_or_default());
            let page = paging::page(letters, key, Order::Ascending, &request);
            Ok(json!({ "dead_letters": page.items, "next": page.next }))
        })))
    }
}

/// `dead-letters requeue sequence=N | all=true`: puts dead letters back in the outbox.
pub(crate) struct DeadLettersRequeue(pub Upstream);

impl Command for DeadLettersRequeue {
    fn changes_state(&self, _args: &Args) -> bool {
        true
    }

    fn prepare(&self, mut args: Args, _caller: &Caller) -> Result<Action, CommandError> {
        let sequence = args.opt_int("sequence", 0, i64::MAX)?;
        let all = args.opt_str("all")?.is_some_and(|all| all == "true");
        args.finish()?;
        if sequence.is_none() && !all {
            return Err(CommandError::bad_argument(
                "sequence",
                "give the dead letter's sequence, or all=true",
            ));
        }
        let upstream = self.0.clone();
        Ok(Box::pin(async move {
            let outbox = upstream.outbox();
            match sequence {
                Some(sequence) => {
                    let queued = outbox.requeue(sequence as u64).await.map_err(failed)?;
                    Ok(json!({ "requeued": 1, "queued_as": queued }))
                }
                None => {
                    let count = outbox.requeue_all().await.map_err(failed)?;
                    Ok(json!({ "requeued": count }))
                }
            }
        }))
    }
}

/// `conflicts resolve device=ID user=ID use=device|database|merge [person=ID name=… card=…
/// privilege=N]`: an administrator's decision, applied to both sides (the device side only
/// ever adds or updates) and audited with the admin key's name.
pub(crate) struct ConflictsResolve(pub SyncHandle);

impl Command for ConflictsResolve {
    fn changes_state(&self, _args: &Args) -> bool {
        true
    }

    fn prepare(&self, mut args: Args, caller: &Caller) -> Result<Action, CommandError> {
        use crate::events::{PersonAttributes, Resolution};
        let device = device_arg(&mut args, &self.0)?;
        let user = args
            .opt_id("user")?
            .ok_or_else(|| CommandError::bad_argument("user", "required: the device user id"))?;
        let resolution = match args.opt_str("use")?.as_deref() {
            Some("device") => Resolution::UseDevice,
            Some("database") => Resolution::UseDatabase,
            Some("merge") => Resolution::Merge,
            _ => {
                return Err(CommandError::bad_argument(
                    "use",
                    "required: device, database or merge",
                ))
            }
        };
        let person = args.opt_id("person")?;
        let name = args.opt_str("name")?;
        let card = args.opt_id("card")?;
        let privilege = args.opt_int("privilege", 0, 255)?;
        let lower_privilege = args.opt_bool("lower_privilege")?.unwrap_or(false);
        args.finish()?;
        let merged = match resolution {
            Resolution::Merge => Some(PersonAttributes {
                person_id: person.ok_or_else(|| {
                    CommandError::bad_argument("person", "required with use=merge")
                })?,
                name: name
                    .ok_or_else(|| CommandError::bad_argument("name", "required with use=merge"))?,
                privilege: privilege.unwrap_or(0) as u32,
                card,
            }),
            _ => None,
        };
        let decision = conflicts::ConflictDecision {
            device_id: device.clone(),
            user_id: user,
            resolution,
            merged,
            lower_privilege,
            admin: caller
                .admin
                .clone()
                .unwrap_or_else(|| "unsigned".to_string()),
            nonce: caller.nonce.clone().unwrap_or_default(),
        };
        let engine = std::sync::Arc::clone(self.0.engine());
        // A ZK terminal is dialled for the writes (under the device lock, which the engine
        // takes); an AI06 must be connected.
        match self.0.zk_session(&device) {
            Some(session) => Ok(resolve_action(engine, decision, Some(session))),
            None => Ok(resolve_action(
                engine,
                decision,
                self.0.aiface().connected(&device),
            )),
        }
    }
}

/// The work of `conflicts resolve` on one device's session, whatever the protocol (`None`: an
/// AI06 not connected, refused by the engine only if the resolution writes to the device).
fn resolve_action<S: crate::device::DeviceSession + Send + Sync + 'static>(
    engine: std::sync::Arc<crate::sync::Engine>,
    decision: conflicts::ConflictDecision,
    session: Option<S>,
) -> Action {
    Box::pin(async move {
        let result = engine
            .resolve_conflict(&decision, session.as_ref())
            .await
            .map_err(failed)?;
        Ok(json!({ "device": decision.device_id, "user": decision.user_id, "result": result }))
    })
}

/// `backups restore device=ID file=NAME [dry_run=true]`: re-adds only what the device lacks
/// from a backup file in the backup directory, then verifies with a fresh complete read.
pub(crate) struct BackupsRestore {
    /// The sync service (engine and live sessions).
    pub sync: SyncHandle,
    /// Where backups are written.
    pub dir: std::path::PathBuf,
}

impl Command for BackupsRestore {
    fn changes_state(&self, args: &Args) -> bool {
        // A dry run reads only, but the decision rests on an argument a forger could flip;
        // keep it signed like the real thing.
        let _ = args;
        true
    }

    fn prepare(&self, mut args: Args, caller: &Caller) -> Result<Action, CommandError> {
        let device = device_arg(&mut args, &self.sync)?;
        let file = args.opt_str("file")?.ok_or_else(|| {
            CommandError::bad_argument("file", "required: a name from `backups list`")
        })?;
        if file.contains('/') || file.starts_with('.') {
            return Err(CommandError::bad_argument(
                "file",
                "a file name from `backups list`, not a path",
            ));
        }
        let dry_run = args.opt_bool("dry_run")?.unwrap_or(false);
        args.finish()?;
        let engine = std::sync::Arc::clone(self.sync.engine());
        let path = self.dir.join(&file);
        let actor = caller
            .admin
            .clone()
            .unwrap_or_else(|| "unsigned".to_string());
        // A ZK terminal is dialled for the restore (under the device lock, which the engine
        // takes); an AI06 must be connected.
        match self.sync.zk_session(&device) {
            Some(session) => Ok(restore_action(engine, session, path, dry_run, actor)),
            None => Ok(restore_action(
                engine,
                live_session(&self.sync, &device)?,
                path,
                dry_run,
                actor,
            )),
        }
    }
}

/// The work of `backups restore` on one device's session, whatever the protocol.
fn restore_action<S: crate::device::DeviceSession + Send + Sync + 'static>(
    engine: std::sync::Arc<crate::sync::Engine>,
    session: S,
    path: std::path::PathBuf,
    dry_run: bool,
    actor: String,
) -> Action {
    Box::pin(async move {
        let report = engine
            .restore(&session, &path, dry_run, &actor)
            .await
            .map_err(failed)?;
        Ok(json!({ "restore": report, "text": report.to_text() }))
    })
}
