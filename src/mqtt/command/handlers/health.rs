//! `health`: the health report on demand (the retained message may be up to one refresh period
//! old). Read-only; also a cheap end-to-end ping of the command path.

use std::sync::Arc;

use super::blocking;
use crate::clock_sync::clock_sync;
use crate::mqtt::alerts::Alerts;
use crate::mqtt::command::args::Args;
use crate::mqtt::command::registry::{Action, Caller, Command};
use crate::mqtt::command::reply::CommandError;
use crate::mqtt::health::{build_report, HealthBoard, Identity};
use crate::mqtt::Services;
use crate::store::Store;

/// The `health` command.
pub(crate) struct HealthCheck {
    identity: Identity,
    store: Store,
    board: Arc<HealthBoard>,
    alerts: Alerts,
}

impl HealthCheck {
    /// Built from the shared services.
    pub(crate) fn new(services: &Services) -> HealthCheck {
        HealthCheck {
            identity: services.identity.clone(),
            store: services.store.clone(),
            board: Arc::clone(&services.board),
            alerts: services.alerts.clone(),
        }
    }
}

impl Command for HealthCheck {
    fn changes_state(&self, _args: &Args) -> bool {
        false
    }

    fn prepare(&self, args: Args, _caller: &Caller) -> Result<Action, CommandError> {
        args.finish()?;
        let (identity, store, board, alerts) = (
            self.identity.clone(),
            self.store.clone(),
            Arc::clone(&self.board),
            self.alerts.clone(),
        );
        Ok(Box::pin(async move {
            blocking(move || {
                let report = build_report(&identity, &store, &board, &alerts, clock_sync());
                serde_json::to_value(report).map_err(|err| CommandError::failed(err.to_string()))
            })
            .await
        }))
    }
}
