//! The emulated terminal's configuration: its users, paging behaviour, timing and faults.
//!
//! Every knob is a command-line flag and also a key of an optional JSON scenario file
//! (`--scenario FILE`, same names with underscores); values in the file win over flags. Tests
//! use flags for one-off knobs and files for anything bigger.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// How the emulated firmware fills `count` in paged replies (unverified on real hardware, so
/// the agent must cope with both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum CountMeans {
    /// `count` is the total number of records; no empty page is needed to end the read (one is
    /// still given when the server asks past the end).
    Total,
    /// `count` is the number of records in this page; the end is an empty page.
    PerPage,
}

/// What a fault does instead of the normal answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultKind {
    /// Close the TCP connection without answering (then reconnect, if enabled).
    Drop,
    /// Send a frame that is not JSON instead of the answer.
    Garbage,
    /// Stop reading and writing on this connection (a hung terminal) until `silence_ms`.
    Silence,
    /// Answer `result:false, reason:1`.
    Refuse,
    /// Answer a paged command with the previous page again (firmware that did not advance).
    Repeat,
    /// Answer a paged command from the first page again (firmware that restarted the listing,
    /// as after a reboot).
    Restart,
    /// Answer a paged command with its first page claiming records `0..=u64::MAX` of a total
    /// of `u64::MAX` (hostile or corrupt numbers: the agent's arithmetic must not overflow).
    Overflow,
}

/// A fault that fires once, on the `nth` (1-based, counted over the whole run) receipt of
/// command `cmd`. Written `KIND:CMD:N`, e.g. `drop:getuserlist:2`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FaultSpec {
    /// What happens.
    pub kind: FaultKind,
    /// Which command triggers it.
    pub cmd: String,
    /// On which receipt of that command.
    pub nth: u32,
}

impl FromStr for FaultSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let usage = || format!("fault {text:?} should be KIND:CMD:N, e.g. drop:getuserlist:2");
        let mut parts = text.split(':');
        let (Some(kind), Some(cmd), Some(nth), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(usage());
        };
        let kind = match kind {
            "drop" => FaultKind::Drop,
            "garbage" => FaultKind::Garbage,
            "silence" => FaultKind::Silence,
            "refuse" => FaultKind::Refuse,
            "repeat" => FaultKind::Repeat,
            "restart" => FaultKind::Restart,
            "overflow" => FaultKind::Overflow,
            other => {
                let kinds = "drop, garbage, silence, refuse, repeat, restart or overflow";
                return Err(format!("unknown fault kind {other:?}; use {kinds}"));
            }
        };
        let nth = nth.parse().ok().filter(|n| *n > 0).ok_or_else(usage)?;
        Ok(FaultSpec {
            kind,
            cmd: cmd.to_owned(),
            nth,
        })
    }
}

impl TryFrom<String> for FaultSpec {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl fmt::Display for FaultSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = serde_json::to_value(self.kind)
            .expect("enum")
            .as_str()
            .unwrap_or_default()
            .to_owned();
        write!(f, "{kind}:{}:{}", self.cmd, self.nth)
    }
}

impl From<FaultSpec> for String {
    fn from(spec: FaultSpec) -> String {
        spec.to_string()
    }
}

/// All knobs of the emulated terminal.
#[derive(Debug, Clone, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    /// Serial number sent in `reg` and every reply.
    #[arg(long, default_value = "SIM00000001")]
    pub sn: String,
    /// Firmware string reported in `reg.devinfo`.
    #[arg(long, default_value = "ai806_f06v_v5.17")]
    pub firmware: String,
    /// Number of users enrolled at start.
    #[arg(long, default_value_t = 5)]
    pub users: u64,
    /// enrollid of the first user; the others follow.
    #[arg(long, default_value_t = 1)]
    pub first_enrollid: u64,
    /// Size of each user's face photo (backupnum 50) in KB of base64 text; 0 = no photo.
    #[arg(long, default_value_t = 4)]
    pub photo_kb: usize,
    /// Give every user a card (backupnum 11).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub cards: bool,
    /// The first N users are device administrators (admin 1).
    #[arg(long, default_value_t = 0)]
    pub admins: u64,
    /// Give every user a password (backupnum 10).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    pub passwords: bool,
    /// Fingerprint templates per user (backupnum 0..N).
    #[arg(long, default_value_t = 0)]
    pub fingerprints: u8,
    /// Names of the users, in enrollid order (comma-separated); the rest are `user<ID>`.
    #[arg(long, value_delimiter = ',')]
    pub names: Vec<String>,
    /// Records per `getuserlist` page.
    #[arg(long, default_value_t = 40)]
    pub page_size: usize,
    /// Records per `getnewlog`/`getalllog` page.
    #[arg(long, default_value_t = 50)]
    pub log_page_size: usize,
    /// What `count` means in paged replies.
    #[arg(long, value_enum, default_value_t = CountMeans::Total)]
    pub count_means: CountMeans,
    /// Delay before every reply, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Logs stored at start and already delivered (for `getalllog`).
    #[arg(long, default_value_t = 0)]
    pub stored_logs: u64,
    /// Logs stored at start and not yet delivered (for `getnewlog`).
    #[arg(long, default_value_t = 0)]
    pub new_logs: u64,
    /// Faults, `KIND:CMD:N` (repeatable): drop, garbage, silence, refuse, repeat or restart on
    /// the Nth `CMD` (repeat/restart apply to the paged commands).
    #[arg(long = "fault")]
    pub faults: Vec<FaultSpec>,
    /// How long a `silence` fault lasts before the terminal drops the link, in ms.
    #[arg(long, default_value_t = 30_000)]
    pub silence_ms: u64,
    /// Users (enrollids, comma-separated) deleted on the device by a keypad operator.
    #[arg(long, value_delimiter = ',')]
    pub delete_users: Vec<u64>,
    /// Delete them after this many commands have been received.
    #[arg(long)]
    pub delete_after_commands: Option<u64>,
    /// Delete them this many ms after start.
    #[arg(long)]
    pub delete_after_ms: Option<u64>,
    /// Users enrolled on the keypad and pushed as `senduser` (unless the server said
    /// `nosenduser:true`).
    #[arg(long, default_value_t = 0)]
    pub enrol: u64,
    /// When to enrol them, in ms after the first registration.
    #[arg(long, default_value_t = 200)]
    pub enrol_after_ms: u64,
    /// Punches to send as `sendlog`, one record each.
    #[arg(long, default_value_t = 0)]
    pub punches: u64,
    /// Each `sendlog` frame also carries one malformed record (no `time`, a non-numeric
    /// `enrollid`).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    pub malformed_punches: bool,
    /// Punches per second.
    #[arg(long, default_value_t = 2.0)]
    pub punch_rate: f64,
    /// Resend a `sendlog` if its reply has not come within this many ms.
    #[arg(long, default_value_t = 2_000)]
    pub punch_resend_ms: u64,
    /// Reconnect after the link drops.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub reconnect: bool,
    /// Wait before reconnecting, in ms.
    #[arg(long, default_value_t = 500)]
    pub reconnect_delay_ms: u64,
}

impl Default for Scenario {
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            scenario: Scenario,
        }
        <Defaults as clap::Parser>::parse_from(["device-sim"]).scenario
    }
}

impl Scenario {
    /// Overlays the keys of a JSON scenario file on these values.
    pub fn overlay_file(&self, path: &Path) -> anyhow::Result<Scenario> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading scenario file {}", path.display()))?;
        let overlay: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("scenario file {} is not JSON", path.display()))?;
        let mut merged = serde_json::to_value(self)?;
        let (Some(base), Some(overlay)) = (merged.as_object_mut(), overlay.as_object()) else {
            anyhow::bail!(
                "scenario file {} must hold a JSON object of knobs",
                path.display()
            );
        };
        base.extend(overlay.iter().map(|(k, v)| (k.clone(), v.clone())));
        serde_json::from_value(merged)
            .with_context(|| format!("scenario file {} has a bad knob", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_specs_parse_and_print() {
        let spec: FaultSpec = "drop:getuserlist:2".parse().unwrap();
        assert_eq!(
            spec,
            FaultSpec {
                kind: FaultKind::Drop,
                cmd: "getuserlist".into(),
                nth: 2
            }
        );
        assert_eq!(spec.to_string(), "drop:getuserlist:2");
        assert!("explode:getuserlist:2".parse::<FaultSpec>().is_err());
        assert!("drop:getuserlist:0".parse::<FaultSpec>().is_err());
        assert!("drop:getuserlist".parse::<FaultSpec>().is_err());
    }

    #[test]
    fn file_values_win_over_flags() {
        let dir = std::env::temp_dir().join(format!("aiface-scenario-{}", std::process::id()));
        std::fs::write(&dir, r#"{"users": 7, "faults": ["refuse:getdevcap:1"]}"#).unwrap();
        let merged = Scenario::default().overlay_file(&dir).unwrap();
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(merged.users, 7);
        assert_eq!(
            merged.page_size, 40,
            "untouched knobs keep their flag values"
        );
        assert_eq!(merged.faults[0].kind, FaultKind::Refuse);
    }
}
