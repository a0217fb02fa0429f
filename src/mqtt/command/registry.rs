//! The command table: the one place where a service plugs its command handler in.
//!
//! Every command of M3 is listed in [`Registry::standard`]. A command whose service is not part
//! of this build is registered as [`Unavailable`], which still goes through signature checks
//! and answers `not_available`, never a fake success. When the sync or upstream service lands,
//! its handler replaces the `Unavailable` line there, and nothing else changes.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::Value;

use super::args::Args;
use super::handlers;
use super::reply::{CommandError, ErrorCode};
use crate::mqtt::Services;

/// A validated command, ready to run. Building it must not change anything: the router only
/// runs it after the signature's nonce has been recorded durably.
pub type Action = BoxFuture<'static, Result<Value, CommandError>>;

/// Who is invoking a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The admin key name, or `None` for an unsigned read.
    pub admin: Option<String>,
    /// The signed nonce, which makes events caused by the command unique and stable.
    pub nonce: Option<String>,
}

/// One command.
pub trait Command: Send + Sync {
    /// Whether this invocation changes anything; read-only ones may run unsigned when
    /// `mqtt.allow_unsigned_reads` is on. Decided from the raw arguments, before validation.
    fn changes_state(&self, args: &Args) -> bool;

    /// Validates the arguments and returns the work to do, without doing it.
    fn prepare(&self, args: Args, caller: &Caller) -> Result<Action, CommandError>;
}

/// A command whose service is not in this build.
pub struct Unavailable {
    /// Whether the command would change state (so signature rules are the real ones).
    pub changes_state: bool,
    /// What is missing, for the message.
    pub service: &'static str,
}

impl Command for Unavailable {
    fn changes_state(&self, _args: &Args) -> bool {
        self.changes_state
    }

    fn prepare(&self, _args: Args, _caller: &Caller) -> Result<Action, CommandError> {
        Err(CommandError::new(
            ErrorCode::NotAvailable,
            format!(
                "not available in this build: the {} is not part of it yet; nothing was done",
                self.service
            ),
        ))
    }
}

/// One line of [`Registry::catalogue`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CommandInfo {
    /// The command words.
    pub name: String,
    /// Whether it changes state (signed over MQTT; root or the service group on the socket).
    pub changes_state: bool,
    /// Whether this build serves it (otherwise it answers `not_available`).
    pub available: bool,
}

/// What answers `not_available` for the `esl` commands when `esl.enabled` is off.
const ESL: &str = "shelf-label adapter (turned off here: esl.enabled = false)";

/// Name → handler.
pub struct Registry {
    commands: BTreeMap<&'static str, Arc<dyn Command>>,
}

impl Registry {
    /// Every command of the control plane, wired to the services that exist.
    pub fn standard(services: &Services) -> Registry {
        let unavailable = |service: &'static str, changes_state: bool| -> Arc<dyn Command> {
            Arc::new(Unavailable {
                changes_state,
                service,
            })
        };
        let sync = "sync engine";
        let upstream = "upstream forwarder";
        let upstream_commands = services.status.upstream.clone();
        let sync_command = |make: fn(crate::sync::SyncHandle) -> Arc<dyn Command>,
                            changes_state: bool| {
            match &services.sync {
                Some(handle) => make(handle.clone()),
                None => unavailable(sync, changes_state),
            }
        };
        let commands: [(&'static str, Arc<dyn Command>); 21] = [
            ("status", Arc::new(handlers::Status::new(services))),
            ("locks", Arc::new(handlers::Locks::new(services))),
            ("log-level", Arc::new(handlers::LogLevel::new(services))),
            ("logs tail", Arc::new(handlers::LogsTail::new(services))),
            ("audit query", Arc::new(handlers::AuditQuery::new(services))),
            (
                "sync-now",
                sync_command(|h| Arc::new(handlers::SyncNow(h)), true),
            ),
            (
                "buffer list",
                sync_command(|h| Arc::new(handlers::BufferList(h)), false),
            ),
            (
                "buffer credential",
                sync_command(|h| Arc::new(handlers::BufferCredential(h)), false),
            ),
            ("map", sync_command(|h| Arc::new(handlers::Map(h)), true)),
            (
                "missing confirm",
                sync_command(|h| Arc::new(handlers::MissingConfirm(h)), true),
            ),
            (
                "conflicts list",
                sync_command(|h| Arc::new(handlers::ConflictsList(h)), false),
            ),
            (
                "conflicts resolve",
                sync_command(|h| Arc::new(handlers::ConflictsResolve(h)), true),
            ),
            (
                "backups list",
                Arc::new(handlers::BackupsList {
                    dir: services.backup_dir.clone(),
                }),
            ),
            (
                "backups create",
                match &services.sync {
                    Some(handle) => Arc::new(handlers::BackupsCreate {
                        sync: handle.clone(),
                        dir: services.backup_dir.clone(),
                    }),
                    None => unavailable(sync, true),
                },
            ),
            (
                "backups restore",
                match &services.sync {
                    Some(handle) => Arc::new(handlers::BackupsRestore {
                        sync: handle.clone(),
                        dir: services.backup_dir.clone(),
                    }),
                    None => unavailable(sync, true),
                },
            ),
            (
                "dead-letters list",
                match &upstream_commands {
                    Some(up) => Arc::new(handlers::DeadLettersList(up.clone())),
                    None => unavailable(upstream, false),
                },
            ),
            (
                "dead-letters requeue",
                match &upstream_commands {
                    Some(up) => Arc::new(handlers::DeadLettersRequeue(up.clone())),
                    None => unavailable(upstream, true),
                },
            ),
            (
                "history",
                sync_command(|h| Arc::new(handlers::History(h)), false),
            ),
            ("health", Arc::new(handlers::HealthCheck::new(services))),
            (
                "esl status",
                match &services.status.esl {
                    Some(esl) => Arc::new(handlers::EslStatus(esl.clone())),
                    None => unavailable(ESL, false),
                },
            ),
            (
                "esl verify",
                match &services.status.esl {
                    Some(esl) => Arc::new(handlers::EslVerify(esl.clone())),
                    None => unavailable(ESL, true),
                },
            ),
        ];
        Registry {
            commands: commands.into_iter().collect(),
        }
    }

    /// The handler of `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Command>> {
        self.commands.get(name)
    }

    /// The command `name`, or the `unknown_command` error naming every known one: what MQTT
    /// and the local socket answer alike.
    pub fn lookup(&self, name: &str) -> Result<&Arc<dyn Command>, CommandError> {
        self.get(name).ok_or_else(|| {
            CommandError::new(
                ErrorCode::UnknownCommand,
                format!(
                    "unknown command {name:?}; known commands: {}",
                    self.names().collect::<Vec<_>>().join(", ")
                ),
            )
        })
    }

    /// Every command with whether it changes state and whether this build serves it: what
    /// `docs/mqtt.md` documents (a test compares the two) and what the local control socket
    /// answers to `{"describe": true}`. Availability is found by preparing each command with
    /// no arguments, which never changes anything (see [`Action`]).
    pub fn catalogue(&self) -> Vec<CommandInfo> {
        let caller = Caller {
            admin: None,
            nonce: None,
        };
        self.commands
            .iter()
            .map(|(name, command)| {
                let empty = || Args::new(Some(Value::Object(Default::default())), "args", "");
                let changes_state = empty().is_ok_and(|args| command.changes_state(&args));
                let available = match empty().map(|args| command.prepare(args, &caller)) {
                    Ok(Err(err)) => err.code != ErrorCode::NotAvailable,
                    _ => true,
                };
                CommandInfo {
                    name: (*name).to_string(),
                    changes_state,
                    available,
                }
            })
            .collect()
    }

    /// Every command name, sorted (for error messages and `ctl --help`).
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.commands.keys().copied()
    }
}
