//! The emulator's record of every command it receives, one JSON object per line.
//!
//! Tests read this file to prove that no destructive command ever reached the device, and to see
//! exactly what an independent client sent (including what firmware would silently drop).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::Context;
use device_protocols::zk::{DestructiveCommand, Packet};
use serde::Serialize;

/// What the emulated firmware did with a packet.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Disposition {
    /// Executed and answered.
    Answered,
    /// Executed; firmware sends no reply (a client `ACK_OK`).
    NoReply,
    /// Same reply id as the previous request: the cached reply was resent, nothing executed.
    ResentCached,
    /// Dropped: bad checksum.
    DroppedBadChecksum,
    /// Dropped: not `CONNECT` and the session id is unknown.
    DroppedUnknownSession,
    /// Dropped: reply id lower than the last one.
    DroppedStaleReplyId,
    /// Dropped: serial frame for another RS485 address.
    DroppedOtherAddress,
    /// Swallowed by the silence fault.
    Silenced,
}

/// One line of the log.
#[derive(Serialize)]
pub struct Entry<'a> {
    /// Front end the packet came through (`tcp`, `udp`, `serial`).
    pub transport: &'a str,
    /// Command code as received.
    pub code: u16,
    /// The code's name, when the crate knows it.
    pub name: Option<&'static str>,
    /// Session id field as received.
    pub session_id: u16,
    /// Reply id field as received.
    pub reply_id: u16,
    /// Bytes of command data.
    pub data_len: usize,
    /// Whether the code deletes or clears device data: the field tests check.
    pub destructive: bool,
    /// Which destructive command it was.
    pub destructive_kind: Option<String>,
    /// What the firmware did with it.
    pub disposition: Disposition,
    /// Whether the device was enabled after handling it (never left "Working…").
    pub device_enabled: bool,
}

impl Entry<'_> {
    /// Describes `packet` as received and what became of it.
    pub fn new<'a>(
        transport: &'a str,
        packet: &Packet,
        disposition: Disposition,
        device_enabled: bool,
    ) -> Entry<'a> {
        let destructive = DestructiveCommand::recognise(packet.code);
        Entry {
            transport,
            code: packet.code.0,
            name: packet.code.name(),
            session_id: packet.session_id,
            reply_id: packet.reply_id,
            data_len: packet.data.len(),
            destructive: destructive.is_some(),
            destructive_kind: destructive.map(|d| format!("{d:?}")),
            disposition,
            device_enabled,
        }
    }
}

/// Appends entries to a file (or nowhere when no file was given), flushing each line so a test
/// can read it while the emulator runs.
pub struct CommandLog {
    out: Option<BufWriter<File>>,
}

impl CommandLog {
    /// Opens (creating or appending to) `path`.
    pub fn open(path: Option<&Path>) -> anyhow::Result<CommandLog> {
        let out = match path {
            Some(path) => Some(BufWriter::new(
                File::options()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("cannot open command log {}", path.display()))?,
            )),
            None => None,
        };
        Ok(CommandLog { out })
    }

    /// Records one entry; a write failure is reported on stderr but never stops the device.
    pub fn record(&mut self, entry: &Entry<'_>) {
        let Some(out) = self.out.as_mut() else {
            return;
        };
        let line = serde_json::to_string(entry).expect("entry serialises");
        if let Err(err) = writeln!(out, "{line}").and_then(|()| out.flush()) {
            eprintln!("device-sim zk: cannot write command log: {err}");
        }
    }
}
