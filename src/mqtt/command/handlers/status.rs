//! `status`: who the agent is, how long it has run, what it is configured for, how big its
//! store is and which alarms are raised. Read-only.

use std::sync::Arc;

use serde_json::json;

use super::{blocking, rfc3339_ms};
use crate::mqtt::command::args::Args;
use crate::mqtt::command::registry::{Action, Caller, Command};
use crate::mqtt::command::reply::CommandError;
use crate::mqtt::health::Identity;
use crate::mqtt::publisher::LinkState;
use crate::mqtt::Services;
use crate::store::Store;

/// The `status` command.
pub(crate) struct Status {
    identity: Identity,
    store: Store,
    link: Arc<LinkState>,
    report: Option<crate::ops::status::StatusSources>,
}

impl Status {
    /// Built from the shared services.
    pub(crate) fn new(services: &Services) -> Status {
        Status {
            identity: services.identity.clone(),
            store: services.store.clone(),
            link: Arc::clone(&services.link),
            report: Some(services.status.clone()),
        }
    }
}

impl Command for Status {
    fn changes_state(&self, _args: &Args) -> bool {
        false
    }

    fn prepare(&self, args: Args, _caller: &Caller) -> Result<Action, CommandError> {
        args.finish()?;
        let identity = self.identity.clone();
        let store = self.store.clone();
        let connected = self.link.is_connected();
        let sources = self.report.clone();
        Ok(Box::pin(async move {
            let report = match sources {
                Some(sources) => blocking(move || Ok(sources.report())).await.ok(),
                None => None,
            };
            let (store_bytes, alarms) = blocking(move || {
                let failed = |err: crate::store::StoreError| CommandError::failed(err.to_string());
                let size = store.size_on_disk().map_err(failed)?;
                let alarms = store.alarms().map_err(failed)?;
                Ok((size, alarms))
            })
            .await?;
            let alarms: Vec<_> = alarms
                .into_iter()
                .map(|(sequence, alarm)| {
                    json!({
                        "sequence": sequence,
                        "raised_at": rfc3339_ms(alarm.raised_at_unix_ms),
                        "message": alarm.message,
                    })
                })
                .collect();
            Ok(json!({
                "agent": identity.agent,
                "site": identity.site,
                "version": env!("CARGO_PKG_VERSION"),
                "uptime_s": identity.started.elapsed().as_secs(),
                "devices_configured": identity.devices.len(),
                "devices": identity.devices,
                "store_bytes": store_bytes,
                "alarms": alarms,
                "mqtt_connected": connected,
                // Device connections and upstream/outbox health (U5), when the agent runs them.
                "device_status": report.as_ref().map(|r| &r.devices),
                "upstream": report.as_ref().and_then(|r| r.upstream.clone()),
                // The whole status report, as the status file holds it: `edge-agent status`
                // asks the running agent over the local socket and renders this.
                "report": report,
            }))
        }))
    }
}
