//! The output of `backup list|create` and `migrate`: one line per backup file or per device.

use crate::sync::backup::BackupInfo;
use crate::sync::tools::MigrateOutcome;

/// One backup file with its counts.
fn line(info: &BackupInfo) -> String {
    format!(
        "{}  {:<12} {:>6} users {:>7} credentials {:>10} bytes  {}\n",
        info.header.created_at,
        info.header.device_id,
        info.trailer.users,
        info.trailer.credentials,
        info.size_bytes,
        info.path.display()
    )
}

/// The backup `backup create` just wrote.
pub fn written(info: &BackupInfo) -> String {
    format!("backup written:\n{}", line(info))
}

/// What `migrate` did on each device.
pub fn migrated(outcome: &MigrateOutcome) -> String {
    let mut out = String::new();
    for device in &outcome.devices {
        match &device.outcome {
            Ok((users, new)) => out.push_str(&format!(
                "{}: complete read of {users} users, {new} newly buffered",
                device.device_id
            )),
            Err(err) => out.push_str(&format!("{}: NOT read: {err}", device.device_id)),
        }
        if let Some(stats) = &device.stats {
            out.push_str(&format!(
                "; buffer: {} users, {} unmapped, {} mapped, {} missing",
                stats.total, stats.unmapped, stats.mapped, stats.missing
            ));
        }
        out.push('\n');
    }
    for skipped in &outcome.unsupported {
        out.push_str(&format!(
            "{skipped}: NOT read: zk devices are not supported by this build yet\n"
        ));
    }
    out
}
