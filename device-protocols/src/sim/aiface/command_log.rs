//! The record of every frame the emulated terminal receives, one JSON object per line.
//!
//! Tests read it to prove what the agent sent — above all that it never sent a destructive
//! command — so each line is written and flushed before the frame is acted on.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde_json::{json, Value};

/// How a received frame was classified.
#[derive(Clone, Copy)]
pub enum FrameKind {
    /// A command (`cmd`).
    Command,
    /// A reply to one of the terminal's reports (`ret`).
    Reply,
    /// Not a frame the protocol allows (not JSON, binary, no `cmd`/`ret`).
    Unparsed,
}

/// An open command log; without `--command-log` nothing is written.
pub struct CommandLog {
    out: Option<BufWriter<File>>,
}

impl CommandLog {
    /// Creates (truncates) the log file, if one was asked for.
    pub fn open(path: Option<&Path>) -> anyhow::Result<Self> {
        let out = match path {
            Some(path) => {
                Some(BufWriter::new(File::create(path).with_context(|| {
                    format!("creating command log {}", path.display())
                })?))
            }
            None => None,
        };
        Ok(CommandLog { out })
    }

    /// Appends one line: time, session, kind, command name, destructive flag, whole frame.
    pub fn record(
        &mut self,
        session: u64,
        kind: FrameKind,
        cmd: Option<&str>,
        destructive: bool,
        message: Value,
    ) {
        let Some(out) = self.out.as_mut() else { return };
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let kind = match kind {
            FrameKind::Command => "command",
            FrameKind::Reply => "reply",
            FrameKind::Unparsed => "unparsed",
        };
        let line = json!({"at_ms": at_ms as u64, "session": session, "kind": kind, "cmd": cmd,
                          "destructive": destructive, "message": message});
        let written = writeln!(out, "{line}").and_then(|()| out.flush());
        if let Err(error) = written {
            eprintln!("device-sim aiface: cannot write the command log: {error}");
        }
    }
}
