//! The record of every command an emulated terminal receives, one JSON object per line, shared
//! by both emulators.
//!
//! Tests and `scripts/check-command-logs.py` read it to prove what a client sent — above all
//! that the agent never sent a destructive command — so each line is written and flushed before
//! the command is acted on, and every line carries a boolean `destructive`. What else a line
//! holds, and which commands count as destructive, is the protocol's to say ([`LogLine`]); this
//! module owns how lines reach the file.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::marker::PhantomData;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

/// What opening a command log does to a file an earlier run left at the same path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reopen {
    /// Start the file afresh.
    Truncate,
    /// Keep its lines and add after them.
    Append,
}

/// One protocol's line in the command log.
///
/// The protocol decides which of its commands are destructive (AiFace: anything not known to be
/// harmless; ZK: any code off its allow-list); the log writes that verdict as `destructive` next
/// to the protocol's own fields, so every line can be checked the same way.
pub trait LogLine: Serialize {
    /// Prefix of the emulator's messages on stderr, e.g. `device-sim zk`.
    const EMULATOR: &'static str;
    /// How the emulator treats a log file left by an earlier run.
    const REOPEN: Reopen;

    /// Whether this line records a command the protocol counts as destructive.
    fn is_destructive(&self) -> bool;
}

/// One written line: the protocol's fields plus the verdict every reader checks.
#[derive(Serialize)]
struct Written<'a, L> {
    #[serde(flatten)]
    line: &'a L,
    destructive: bool,
}

/// An open command log; when no file was asked for, nothing is written.
pub struct CommandLog<L> {
    out: Option<BufWriter<File>>,
    line: PhantomData<fn(&L)>,
}

impl<L: LogLine> CommandLog<L> {
    /// Opens the log file at `path` as the protocol's [`LogLine::REOPEN`] says, if one was
    /// asked for.
    pub fn open(path: Option<&Path>) -> anyhow::Result<Self> {
        let out = match path {
            Some(path) => {
                let mut options = File::options();
                match L::REOPEN {
                    Reopen::Truncate => options.write(true).create(true).truncate(true),
                    Reopen::Append => options.create(true).append(true),
                };
                let file = options
                    .open(path)
                    .with_context(|| format!("cannot open command log {}", path.display()))?;
                Some(BufWriter::new(file))
            }
            None => None,
        };
        Ok(CommandLog {
            out,
            line: PhantomData,
        })
    }

    /// Appends one line and flushes it; a write failure is reported on stderr but never stops
    /// the device.
    pub fn record(&mut self, line: &L) {
        let Some(out) = self.out.as_mut() else {
            return;
        };
        let written = Written {
            line,
            destructive: line.is_destructive(),
        };
        let text = serde_json::to_string(&written).expect("a command-log line serialises");
        if let Err(error) = writeln!(out, "{text}").and_then(|()| out.flush()) {
            eprintln!("{}: cannot write the command log: {error}", L::EMULATOR);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// A protocol whose only destructive command is `wipe`; `APPEND` picks its [`Reopen`].
    #[derive(Serialize)]
    struct Probe<const APPEND: bool> {
        cmd: &'static str,
    }

    impl<const APPEND: bool> LogLine for Probe<APPEND> {
        const EMULATOR: &'static str = "probe";
        const REOPEN: Reopen = if APPEND {
            Reopen::Append
        } else {
            Reopen::Truncate
        };
        fn is_destructive(&self) -> bool {
            self.cmd == "wipe"
        }
    }

    type Appending = Probe<true>;
    type Fresh = Probe<false>;

    fn lines(path: &Path) -> Vec<Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    fn temp_log(name: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!(
            "device-protocols-command-log-{}-{name}.jsonl",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&path);
        path
    }

    #[test]
    fn every_line_carries_the_protocol_verdict() {
        let path = temp_log("verdict");
        let mut log = CommandLog::<Appending>::open(Some(&path)).unwrap();
        log.record(&Probe { cmd: "read" });
        log.record(&Probe { cmd: "wipe" });
        let written = lines(&path);
        assert_eq!(written[0]["cmd"], "read");
        assert_eq!(written[0]["destructive"], false);
        assert_eq!(written[1]["destructive"], true);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn the_protocol_chooses_whether_an_old_log_is_kept() {
        let path = temp_log("reopen");
        CommandLog::<Appending>::open(Some(&path))
            .unwrap()
            .record(&Probe { cmd: "a" });
        CommandLog::<Appending>::open(Some(&path))
            .unwrap()
            .record(&Probe { cmd: "b" });
        assert_eq!(lines(&path).len(), 2, "appended");
        CommandLog::<Fresh>::open(Some(&path))
            .unwrap()
            .record(&Fresh { cmd: "c" });
        assert_eq!(lines(&path).len(), 1, "truncated");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn without_a_file_nothing_is_written() {
        CommandLog::<Appending>::open(None)
            .unwrap()
            .record(&Probe { cmd: "wipe" });
    }
}
