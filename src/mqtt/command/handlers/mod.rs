//! The commands implemented by this build, one file each, mini-redis style: each parses its
//! arguments in `prepare` and does its work in the returned future.

mod audit_query;
mod esl;
mod health;
mod locks;
mod log_level;
mod logs_tail;
mod status;
mod sync;

pub(super) use audit_query::AuditQuery;
pub(super) use esl::{EslStatus, EslVerify};
pub(super) use health::HealthCheck;
pub(super) use locks::Locks;
pub(super) use log_level::LogLevel;
pub(super) use logs_tail::LogsTail;
pub(super) use status::Status;
pub(super) use sync::{
    BackupsCreate, BackupsList, BackupsRestore, BufferCredential, BufferList, ConflictsList,
    ConflictsResolve, DeadLettersList, DeadLettersRequeue, History, Map, MissingConfirm, SyncNow,
};

use super::lists::rfc3339_ms;

/// Runs blocking work (store scans, file reads) off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, super::reply::CommandError> + Send + 'static,
) -> Result<T, super::reply::CommandError> {
    tokio::task::spawn_blocking(work).await.map_err(|err| {
        super::reply::CommandError::failed(format!("the command's task failed: {err}"))
    })?
}
