//! `edge-agent migrate` (B7): the initial population. Reads every configured device completely
//! and buffers every user not mapped yet. It is exactly a poll of each device, so running it
//! again finds nothing new and changes no buffer record: safe any number of times.

use super::buffer::{self, BufferStats};
use super::poll::PollOutcome;
use super::service::SessionSource;
use super::{Engine, SyncError};
use std::time::Duration;

/// What migrate did for one device.
#[derive(Debug)]
pub struct DeviceMigration {
    /// The device.
    pub device_id: String,
    /// Users the read found and users it newly buffered, or why the device was not read.
    pub outcome: Result<(usize, usize), SyncError>,
    /// The device's buffer afterwards.
    pub stats: Option<BufferStats>,
}

impl Engine {
    /// Reads each of `devices` (waiting up to `wait` for each to connect) and buffers its
    /// users. One device failing does not stop the others.
    pub async fn migrate<S: SessionSource>(
        &self,
        source: &S,
        devices: &[String],
        wait: Duration,
    ) -> Vec<DeviceMigration> {
        let mut report = Vec::new();
        for device_id in devices {
            let outcome = self.migrate_one(source, device_id, wait).await;
            let stats = buffer::stats(self.store(), Some(device_id)).ok();
            report.push(DeviceMigration {
                device_id: device_id.clone(),
                outcome,
                stats,
            });
        }
        report
    }

    async fn migrate_one<S: SessionSource>(
        &self,
        source: &S,
        device_id: &str,
        wait: Duration,
    ) -> Result<(usize, usize), SyncError> {
        let session =
            source
                .session(device_id, wait)
                .await
                .ok_or_else(|| SyncError::NotConnected {
                    device: device_id.to_string(),
                    waited_s: wait.as_secs(),
                })?;
        match self.poll(&session).await? {
            PollOutcome::Complete(applied) => Ok((applied.users, applied.discovered.len())),
            PollOutcome::Incomplete(source) => Err(SyncError::Read {
                device: device_id.to_string(),
                source,
            }),
        }
    }
}
