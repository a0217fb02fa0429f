//! The lock arbiter of a site and the agents' client of it (`docs/locks.md`): the server
//! (`edge-agent arbiter`), its pure lock table, the MQTT 5 messages, and [`ArbiterLock`], the
//! [`DeviceLock`] that asks it. It sits beside the MQTT plane (it reuses its broker settings);
//! the lock interface and the same-box flock are `crate::lock`.

mod client;
mod requests;
pub mod server;
pub mod table;
pub mod wire;

pub use client::ArbiterLock;

use crate::lock::{AcquireFuture, DeviceLock, FlockLock, LockGuard, LockJournal};

/// Two locks taken in order, released in reverse: the box's flock, then the arbiter's lease.
/// The guard carries the second one's token and fence.
pub struct Layered {
    first: FlockLock,
    second: ArbiterLock,
}

impl DeviceLock for Layered {
    fn acquire<'a>(&'a self, device_id: &'a str) -> AcquireFuture<'a> {
        Box::pin(async move {
            let local = self.first.acquire(device_id).await?;
            let remote = self.second.acquire(device_id).await?;
            let fence = remote.fence().clone();
            // Fields drop in order: the lease is released before the flock.
            Ok(LockGuard::new(fence, Box::new((remote, local))))
        })
    }
}

/// The running agent's device lock as `[lock]` asks for it, journalled in `store`'s audit log
/// under the agent id: what the agent, the demo and the store tools sync under.
pub fn agent_lock(
    config: &crate::config::Config,
    store: &crate::store::Store,
) -> Result<std::sync::Arc<dyn DeviceLock>, crate::mqtt::broker::BrokerError> {
    from_config(
        config,
        LockJournal::new(Some(store.clone()), &config.agent.id),
        "lock",
    )
}

/// The lock the config asks for, with its journal. Arbiter mode needs a tokio runtime (its
/// MQTT connection is a task) and `[mqtt] host`; `purpose` ends the client id of that
/// connection (`lock` for the agent, `probe-lock` for `probe`), so two programs of one box
/// never share a client id.
pub fn from_config(
    config: &crate::config::Config,
    journal: LockJournal,
    purpose: &str,
) -> Result<std::sync::Arc<dyn DeviceLock>, crate::mqtt::broker::BrokerError> {
    Ok(match config.lock.mode {
        crate::config::LockMode::Flock => {
            std::sync::Arc::new(FlockLock::from_config(&config.lock, Some(journal)))
        }
        crate::config::LockMode::Arbiter => std::sync::Arc::new(Layered {
            first: FlockLock::from_config(&config.lock, None),
            second: ArbiterLock::from_config(config, journal, purpose)?,
        }),
    })
}
