//! The text of a `probe` report, as a technician standing at the terminal reads it.

use crate::probe::ProbeReport;

/// The report: who the device is, then the complete read's figures or why it was incomplete.
pub fn report(report: &ProbeReport) -> String {
    let mut out = String::new();
    let skew = report
        .clock_skew_s
        .map_or("unknown".to_string(), |s| format!("{s:+} s"));
    out.push_str(&format!(
        "device {} (sn {}, firmware {}), clock skew {skew}\n",
        report.device,
        report.sn,
        report.firmware.as_deref().unwrap_or("unknown")
    ));
    match &report.error {
        None => {
            out.push_str(&format!(
                "COMPLETE read: {} users (device reports {}), {} round trips, {} KiB in {:.1} s\n",
                report.users,
                report.device_user_count.unwrap_or_default(),
                report.round_trips,
                report.bytes_received / 1024,
                report.seconds
            ));
            for (kind, count) in &report.credentials {
                out.push_str(&format!("  {kind:<12} {count}\n"));
            }
        }
        Some(reason) => out.push_str(&format!(
            "INCOMPLETE read after {:.1} s: {reason}\nNothing may be concluded about users \
             missing from this read.\n",
            report.seconds
        )),
    }
    out
}
