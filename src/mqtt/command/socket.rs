//! The local control socket: the running agent serves the on-box commands (`edge-agent status`,
//! `buffer list`, `audit query`, `history`, `conflicts list`, `backup …`, `sync-now`) over a
//! Unix stream socket in its runtime directory, through the **same command table** as MQTT
//! ([`Registry`]), so each command has one implementation whichever way it is asked.
//!
//! # Protocol
//!
//! Newline-delimited JSON, one request per line, one reply per line, as many as the client
//! wants on one connection (`socat - UNIX-CONNECT:/run/edge-agent/control.sock` is a client):
//!
//! ```text
//! → {"command": "buffer list", "args": {"device": "door", "limit": 100}}
//! ← {"ok": true, "result": {"users": [...], "stats": {...}, "next": "door/0100"}}
//! → {"describe": true}
//! ← {"ok": true, "result": {"agent": "gw-1", "store": "/var/lib/edge-agent/store",
//!     "commands": [{"name": "audit query", "changes_state": false, "available": true}, ...]}}
//! ```
//!
//! The reply is the MQTT reply ([`Reply`]), error codes included.
//!
//! # Who may do what
//!
//! The socket file is mode 0660, group `edge-agent` (the .deb creates the group; on a box
//! without it the process's group is kept and logged), in a runtime directory of mode 0750: only
//! root, the service user and members of the group can open it at all. Requests need **no
//! signature**: the kernel vouches for the peer (`SO_PEERCRED`), which a remote MQTT client
//! cannot have, and signing keys belong to remote administrators, not to technicians at the
//! box. Read-only commands are served to any peer that could open the socket. A state-changing
//! command additionally needs the peer to be root, the agent's own user, or a member of the
//! socket's group (checked again here, so a loosened file mode does not open it up), and it is
//! recorded durably in the audit log with the actor `unix:<user name>` before it runs, as a
//! signed MQTT command is with its key's name.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{UnixListener, UnixStream};

use super::args::Args;
use super::registry::{Caller, Registry};
use super::reply::{CommandError, ErrorCode, Reply};
use crate::audit::{Audit, AuditEntry, Operation};
use crate::lifecycle::{StopSignal, Tasks};
use crate::mqtt::signing::canonical_json;
use crate::store::Store;

/// The group the .deb creates for the service and the people who may manage it.
pub const SERVICE_GROUP: &str = "edge-agent";
/// Longest request line accepted (a request is a command and a few arguments).
const MAX_REQUEST: usize = 64 * 1024;

/// One request line.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LocalRequest {
    /// The command words, as over MQTT (`buffer list`).
    #[serde(default)]
    command: Option<String>,
    /// Its arguments, as over MQTT.
    #[serde(default)]
    args: Option<Value>,
    /// Ask for the command table instead of running a command.
    #[serde(default)]
    describe: bool,
}

/// Who may run state-changing commands besides root.
#[derive(Clone, Debug)]
struct Access {
    /// The socket's group id.
    gid: u32,
    /// Its name, for messages.
    group: String,
    /// User names listed as members of the group in `/etc/group`.
    members: Vec<String>,
    /// The agent's own user id.
    own_uid: u32,
}

/// The peer of a connection, as the kernel reports it.
#[derive(Clone, Debug)]
struct Peer {
    uid: u32,
    gid: u32,
    user: String,
}

impl Access {
    fn may_change_state(&self, peer: &Peer) -> bool {
        peer.uid == 0
            || peer.uid == self.own_uid
            || peer.gid == self.gid
            || self.members.contains(&peer.user)
    }
}

/// Which agent serves the socket: a client checks it is asking the agent of its own config
/// (two agents on one box could share a runtime directory).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Served {
    /// `agent.id`.
    pub agent: String,
    /// The store directory the agent holds.
    pub store: PathBuf,
}

/// The bound socket, ready to serve.
pub struct ControlSocket {
    listener: UnixListener,
    path: PathBuf,
    access: Access,
    registry: Arc<Registry>,
    store: Store,
    served: Served,
}

/// Binds the socket at `path` and spawns the task that serves `registry` on it. A socket left
/// by a crashed agent is replaced; one that answers belongs to another running agent and is
/// left alone (the agent then runs without a socket, and says so).
pub fn start(
    tasks: &mut Tasks,
    path: &Path,
    served: Served,
    registry: Arc<Registry>,
    store: &Store,
) {
    match ControlSocket::bind(path, served, registry, store.clone()) {
        Ok(socket) => tasks.spawn("control-socket", |stop| socket.serve(stop)),
        Err(err) => tracing::error!(
            "the local control socket is off: {err:#}; on-box commands cannot reach this agent \
             (fix agent.runtime_dir or its permissions and restart)"
        ),
    }
}

impl ControlSocket {
    /// Creates the socket file with mode 0660 and the service group.
    fn bind(
        path: &Path,
        served: Served,
        registry: Arc<Registry>,
        store: Store,
    ) -> anyhow::Result<ControlSocket> {
        use anyhow::Context as _;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        if path.exists() {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                anyhow::bail!(
                    "{} is served by another running agent (two agents share agent.runtime_dir)",
                    path.display()
                );
            }
            std::fs::remove_file(path)
                .with_context(|| format!("cannot remove the stale socket {}", path.display()))?;
        }
        let listener =
            UnixListener::bind(path).with_context(|| format!("cannot bind {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
            .with_context(|| format!("cannot set the mode of {}", path.display()))?;
        let access = match group_by_name(SERVICE_GROUP) {
            Some((gid, members)) => {
                // Under the packaged unit the agent's own group is already the service group
                // (and the unit's system-call filter refuses chown): change it only if needed.
                let has_group = std::os::unix::fs::MetadataExt::gid(&std::fs::metadata(path)?);
                if has_group != gid {
                    if let Err(err) = std::os::unix::fs::chown(path, None, Some(gid)) {
                        tracing::warn!(
                            "cannot give {} to group {SERVICE_GROUP}: {err}",
                            path.display()
                        );
                    }
                }
                Access {
                    gid,
                    group: SERVICE_GROUP.into(),
                    members,
                    own_uid: current_uid(),
                }
            }
            None => {
                // SAFETY: getegid cannot fail.
                let gid = unsafe { libc::getegid() };
                let (group, members) =
                    group_by_id(gid).unwrap_or_else(|| (format!("gid {gid}"), Vec::new()));
                tracing::info!(
                    "group {SERVICE_GROUP} does not exist on this box: the control socket keeps \
                     the agent's group {group}"
                );
                Access {
                    gid,
                    group,
                    members,
                    own_uid: current_uid(),
                }
            }
        };
        tracing::info!(
            socket = %path.display(),
            group = %access.group,
            "local control socket listening (mode 0660)"
        );
        Ok(ControlSocket {
            listener,
            path: path.to_path_buf(),
            access,
            registry,
            store,
            served,
        })
    }

    /// Accepts connections until `stop`, each served in a task of its own; removes the socket
    /// file at stop so that commands fall back to the store at once.
    async fn serve(self, mut stop: StopSignal) {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                _ = stop.stopped() => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let connection = Connection {
                            access: self.access.clone(),
                            registry: Arc::clone(&self.registry),
                            store: self.store.clone(),
                            served: self.served.clone(),
                        };
                        connections.spawn(connection.serve(stream));
                    }
                    Err(err) => {
                        tracing::warn!("control socket: accept failed: {err}");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        connections.abort_all();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One client connection.
struct Connection {
    access: Access,
    registry: Arc<Registry>,
    store: Store,
    served: Served,
}

impl Connection {
    async fn serve(self, stream: UnixStream) {
        let peer = match stream.peer_cred() {
            Ok(cred) => Peer {
                uid: cred.uid(),
                gid: cred.gid(),
                user: user_name(cred.uid()),
            },
            Err(err) => {
                tracing::warn!("control socket: no peer credentials ({err}); connection closed");
                return;
            }
        };
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read);
        let mut line = String::new();
        loop {
            line.clear();
            match (&mut lines)
                .take(MAX_REQUEST as u64)
                .read_line(&mut line)
                .await
            {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if !line.ends_with('\n') && line.len() >= MAX_REQUEST {
                let reply = Reply::from_outcome(Err(CommandError::new(
                    ErrorCode::MalformedRequest,
                    format!("a request line may hold at most {MAX_REQUEST} bytes"),
                )));
                let _ = write_reply(&mut write, &reply).await;
                return;
            }
            if line.trim().is_empty() {
                continue;
            }
            let reply = Reply::from_outcome(self.handle(&peer, line.trim()).await);
            if write_reply(&mut write, &reply).await.is_err() {
                return;
            }
        }
    }

    async fn handle(&self, peer: &Peer, line: &str) -> Result<Value, CommandError> {
        let request: LocalRequest = serde_json::from_str(line).map_err(|err| {
            CommandError::new(
                ErrorCode::MalformedRequest,
                format!(
                    "not a request ({err}); send one JSON object per line: \
                     {{\"command\": \"status\", \"args\": {{}}}}"
                ),
            )
        })?;
        if request.describe {
            return Ok(json!({
                "agent": self.served.agent,
                "store": self.served.store,
                "commands": self.registry.catalogue(),
            }));
        }
        let name = request.command.unwrap_or_default();
        let command = self.registry.lookup(&name)?;
        let args = Args::new(request.args, "args", "")?;
        let changes_state = command.changes_state(&args);
        if changes_state && !self.access.may_change_state(peer) {
            tracing::warn!(
                command = %name,
                uid = peer.uid,
                user = %peer.user,
                "control socket: state-changing command refused to a peer outside group {}",
                self.access.group
            );
            return Err(CommandError::new(
                ErrorCode::Unauthorised,
                format!(
                    "{name:?} changes state: only root or members of group {} may run it on \
                     this box (you are {}); nothing was done",
                    self.access.group, peer.user
                ),
            ));
        }
        let actor = format!("unix:{}", peer.user);
        let caller = Caller {
            admin: Some(actor.clone()),
            nonce: Some(local_nonce()),
        };
        let canonical_args = canonical_json(&args.to_value());
        let action = command.prepare(args, &caller)?;
        if changes_state {
            let entry = AuditEntry {
                at_unix_ms: chrono::Utc::now().timestamp_millis(),
                operation: Operation::AdminCommand,
                device_id: None,
                device_user_id: None,
                actor: actor.clone(),
                detail: format!("{name} {canonical_args} (local control socket)"),
            };
            let audit = Audit::new(self.store.clone());
            let recorded = tokio::task::spawn_blocking(move || audit.record(&entry))
                .await
                .map_err(|err| CommandError::failed(err.to_string()))?;
            let durable = match recorded {
                Ok(_) => self.store.make_durable().await,
                Err(err) => Err(err),
            };
            durable.map_err(|err| {
                CommandError::failed(format!(
                    "the command was not run because it could not be recorded: {err}"
                ))
            })?;
            tracing::info!(command = %name, actor = %actor, "local command accepted");
        }
        action.await
    }
}

async fn write_reply(
    write: &mut tokio::net::unix::OwnedWriteHalf,
    reply: &Reply,
) -> std::io::Result<()> {
    let mut bytes = reply.to_bytes();
    bytes.push(b'\n');
    write.write_all(&bytes).await?;
    write.flush().await
}

/// A fresh nonce for a local command: the events it causes are unique and stable like those
/// of a signed one.
fn local_nonce() -> String {
    let random: u64 = rand::random();
    format!(
        "local-{}-{random:016x}",
        chrono::Utc::now().timestamp_millis()
    )
}

fn current_uid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// The name of user `uid` from `/etc/passwd`, or `uid N`.
fn user_name(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                let fields: Vec<&str> = line.split(':').collect();
                (fields.len() > 2 && fields[2].parse::<u32>() == Ok(uid))
                    .then(|| fields[0].to_string())
            })
        })
        .unwrap_or_else(|| format!("uid {uid}"))
}

/// `/etc/group` lines as (name, gid, members).
fn groups() -> Vec<(String, u32, Vec<String>)> {
    std::fs::read_to_string("/etc/group")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            let gid = fields.get(2)?.parse::<u32>().ok()?;
            let members = fields
                .get(3)
                .map(|m| {
                    m.split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            Some((fields[0].to_string(), gid, members))
        })
        .collect()
}

fn group_by_name(name: &str) -> Option<(u32, Vec<String>)> {
    groups()
        .into_iter()
        .find(|(group, _, _)| group == name)
        .map(|(_, gid, members)| (gid, members))
}

fn group_by_id(gid: u32) -> Option<(String, Vec<String>)> {
    groups()
        .into_iter()
        .find(|(_, id, _)| *id == gid)
        .map(|(name, _, members)| (name, members))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_root_the_agent_and_the_group_may_change_state() {
        let access = Access {
            gid: 990,
            group: "edge-agent".into(),
            members: vec!["tech".into()],
            own_uid: 991,
        };
        let peer = |uid, gid, user: &str| Peer {
            uid,
            gid,
            user: user.into(),
        };
        assert!(access.may_change_state(&peer(0, 0, "root")));
        assert!(access.may_change_state(&peer(991, 991, "edge-agent")));
        assert!(access.may_change_state(&peer(1000, 990, "someone")));
        assert!(access.may_change_state(&peer(1001, 1001, "tech")));
        assert!(!access.may_change_state(&peer(65534, 65534, "nobody")));
    }
}
