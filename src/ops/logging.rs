//! Logging setup (feature O2): where log lines go, in what shape, and the run-time level hook.
//!
//! - Under systemd (`JOURNAL_STREAM` set) events go to journald with their fields as structured
//!   journal fields: `device_id = "ai06-1"` becomes `F_DEVICE_ID=ai06-1`, the target `TARGET=…`
//!   (`journalctl -u edge-agent F_DEVICE_ID=ai06-1`, or `-o json` for everything). The `F_`
//!   prefix keeps event fields from overwriting journald's own (`PRIORITY`, `MESSAGE`).
//! - When a log file is configured, events also go to a size-capped rotating file
//!   ([`rotating_file`](super::rotating_file)) in one plain line per event that a technician
//!   reads with `less` or `tail -F`, no colours:
//!   `2026-11-22T10:15:03.123Z INFO edge_agent::device::aiface: device{id=ai06-1}: poll failed error="timeout"`
//!   i.e. `time LEVEL target: [span{fields}: ]message key=value`. Line breaks inside a message
//!   are written as `\n` so one event is always one line.
//! - The level is an `EnvFilter` directive from the config, overridden by `RUST_LOG`, and
//!   changeable at run time through [`LoggingHandle::set_level`] (MQTT `log-level` command,
//!   SIGHUP reload).
//! - Records from crates that use the `log` facade (sled, MQTT client) are forwarded into the
//!   same pipeline.

use std::fmt::{self, Write as _};
use std::io;
use std::path::PathBuf;

use tracing::level_filters::LevelFilter;
use tracing::{Dispatch, Event, Subscriber};
use tracing_log::AsLog;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{reload, EnvFilter, Registry};

use super::rotating_file::{PolicyError, RotatingFileWriter, RotationPolicy};
use crate::config::log_level::{self, InvalidLevel};

/// `strftime` pattern of the time at the start of every file line: UTC, milliseconds, `Z`, so
/// lines from boxes in different time zones sort and compare without guessing.
pub const LINE_TIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.3fZ";

/// The level names accepted on their own in a directive; anything else needs `target=level`.
/// When to send events to journald.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JournaldMode {
    /// Use journald when started by systemd (the `JOURNAL_STREAM` variable is set); the same
    /// binary then behaves well both as a service and in a technician's shell.
    #[default]
    Auto,
    /// Always use journald; fail at start if it cannot be reached.
    Always,
    /// Never use journald.
    Never,
}

impl JournaldMode {
    /// Whether journald is wanted, given whether the process runs under systemd.
    fn wanted(self, under_systemd: bool) -> bool {
        match self {
            Self::Auto => under_systemd,
            Self::Always => true,
            Self::Never => false,
        }
    }
}

/// Everything logging needs, already converted from the `[log]` section of the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogOptions {
    /// `EnvFilter` directive such as `info` or `info,edge_agent::device=debug`.
    pub level: String,
    /// The live log file (e.g. `/var/lib/edge-agent/log/edge-agent.log`); `None` writes no file.
    pub file: Option<PathBuf>,
    /// Largest size of one log file in bytes.
    pub max_file_size: u64,
    /// Number of files kept, the live one included; disk use never exceeds
    /// `max_file_size * max_files`.
    pub max_files: u32,
    /// When to log to journald.
    pub journald: JournaldMode,
    /// Also print to stderr (CLI commands run by a person).
    pub stderr: bool,
}

impl Default for LogOptions {
    /// `info`, no file, 5 files of 5 MB (25 MB at most: small next to an SD card, yet days of
    /// history at INFO), journald under systemd, no stderr.
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            file: None,
            max_file_size: 5 * 1024 * 1024,
            max_files: 5,
            journald: JournaldMode::Auto,
            stderr: false,
        }
    }
}

/// Why logging could not be set up or changed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The level directive does not parse, or is a bare word that is not a level.
    #[error(transparent)]
    InvalidLevel(#[from] InvalidLevel),
    /// The file size or count cannot keep the disk cap.
    #[error(transparent)]
    File(#[from] PolicyError),
    /// `journald = "always"` but the journal socket is unusable.
    #[error(
        "journald logging was required but the journal cannot be reached: {0}; \
         check that systemd-journald runs, or set journald to \"auto\""
    )]
    JournaldUnavailable(io::Error),
    /// `init` was called twice, or another library installed a global subscriber first.
    #[error("a global logger is already installed in this process; call logging::init once")]
    AlreadyInstalled,
    /// The subscriber this handle controlled has been dropped (only possible for subscribers
    /// built with [`build`] and not installed globally).
    #[error("the logging subscriber this handle controls no longer exists")]
    SubscriberGone,
}

/// Parses a level directive strictly (see [`crate::config::log_level::parse_level`]), as the
/// logging set-up reports it.
pub fn parse_level(directive: &str) -> Result<EnvFilter, LogError> {
    Ok(log_level::parse_level(directive)?)
}

/// Picks the directive to start with: `RUST_LOG` wins when it is set and valid (a developer or
/// technician debugging by hand); an invalid `RUST_LOG` falls back to the config with a warning
/// rather than stopping the agent. The config level itself must be valid.
fn resolve_level(
    config_level: &str,
    rust_log: Option<&str>,
) -> Result<(EnvFilter, Option<String>), LogError> {
    let from_config = parse_level(config_level)?;
    let Some(rust_log) = rust_log.filter(|value| !value.trim().is_empty()) else {
        return Ok((from_config, None));
    };
    match parse_level(rust_log) {
        Ok(filter) => Ok((filter, None)),
        Err(error) => Ok((
            from_config,
            Some(format!(
                "RUST_LOG ignored, using the configured level {config_level:?}: {error}"
            )),
        )),
    }
}

/// Keeps the run-time controls of the installed logging alive: the level hook and the log file.
///
/// The file writer has no buffer (one `write` per line), so nothing is lost when the handle is
/// dropped; it is held until exit so the level can be changed and file health reported.
#[derive(Debug)]
pub struct LoggingHandle {
    filter: reload::Handle<EnvFilter, Registry>,
    file: Option<RotatingFileWriter>,
    journald: bool,
    startup_warnings: Vec<String>,
    /// Whether the `log` facade is bridged, whose own max level must follow level changes.
    bridges_log_facade: bool,
}

impl LoggingHandle {
    /// Replaces the level directive at run time (the MQTT `log-level` command, SIGHUP reload).
    /// The directive is applied as given; `RUST_LOG` only matters at start. An invalid
    /// directive is refused and the current level stays.
    pub fn set_level(&self, directive: &str) -> Result<(), LogError> {
        let filter = parse_level(directive)?;
        let max_level = filter.max_level_hint().unwrap_or(LevelFilter::TRACE);
        self.filter
            .reload(filter)
            .map_err(|_| LogError::SubscriberGone)?;
        if self.bridges_log_facade {
            tracing_log::log::set_max_level(max_level.as_log());
        }
        Ok(())
    }

    /// The directive in force, e.g. `info,edge_agent::device=debug` (for status and replies).
    pub fn current_level(&self) -> Result<String, LogError> {
        self.filter
            .with_current(ToString::to_string)
            .map_err(|_| LogError::SubscriberGone)
    }

    /// Whether events go to journald.
    pub fn uses_journald(&self) -> bool {
        self.journald
    }

    /// Log lines lost because the file could not be written (disk full, directory removed).
    pub fn dropped_file_lines(&self) -> u64 {
        self.file
            .as_ref()
            .map_or(0, RotatingFileWriter::dropped_records)
    }

    /// The current problem with the log file, if any.
    pub fn file_error(&self) -> Option<String> {
        self.file.as_ref().and_then(RotatingFileWriter::last_error)
    }

    /// Problems met while setting up that did not stop logging (journald missing under `auto`,
    /// bad `RUST_LOG`, log file not writable yet). [`init`] logs them once installed.
    pub fn startup_warnings(&self) -> &[String] {
        &self.startup_warnings
    }
}

/// Builds the subscriber without installing it, so tests (and tools) can run code under
/// `tracing::dispatcher::with_default`. Reads `RUST_LOG` and `JOURNAL_STREAM`.
pub fn build(options: &LogOptions) -> Result<(Dispatch, LoggingHandle), LogError> {
    let rust_log = std::env::var("RUST_LOG").ok();
    let under_systemd = std::env::var_os("JOURNAL_STREAM").is_some();
    let (filter, level_warning) = resolve_level(&options.level, rust_log.as_deref())?;
    let mut startup_warnings: Vec<String> = level_warning.into_iter().collect();

    let journald = if options.journald.wanted(under_systemd) {
        match tracing_journald::layer() {
            Ok(layer) => Some(layer),
            Err(error) if options.journald == JournaldMode::Always => {
                return Err(LogError::JournaldUnavailable(error));
            }
            Err(error) => {
                startup_warnings.push(format!("journald unavailable, not using it: {error}"));
                None
            }
        }
    } else {
        None
    };

    let file = match &options.file {
        Some(path) => {
            let policy =
                RotationPolicy::new(path.clone(), options.max_file_size, options.max_files)?;
            let writer = RotatingFileWriter::open(policy);
            if let Some(error) = writer.last_error() {
                startup_warnings.push(format!("{error}; will keep retrying"));
            }
            Some(writer)
        }
        None => None,
    };

    // Logging nowhere would leave a technician with nothing; stderr at least reaches a shell
    // or, under a service manager, its log.
    let stderr = options.stderr || (journald.is_none() && file.is_none());
    let uses_journald = journald.is_some();

    let (filter, filter_handle) = reload::Layer::new(filter);
    let subscriber = Registry::default()
        .with(filter)
        .with(journald)
        .with(file.clone().map(|writer| plain_lines().with_writer(writer)))
        .with(stderr.then(|| plain_lines().with_writer(io::stderr)));

    let handle = LoggingHandle {
        filter: filter_handle,
        journald: uses_journald,
        file,
        startup_warnings,
        bridges_log_facade: false,
    };
    Ok((Dispatch::new(subscriber), handle))
}

/// Installs logging for the whole process; call once, early in `main`.
pub fn init(options: &LogOptions) -> Result<LoggingHandle, LogError> {
    let (dispatch, mut handle) = build(options)?;
    tracing::dispatcher::set_global_default(dispatch).map_err(|_| LogError::AlreadyInstalled)?;
    let max_level = handle
        .filter
        .with_current(|filter| filter.max_level_hint())
        .ok()
        .flatten()
        .unwrap_or(LevelFilter::TRACE);
    match tracing_log::LogTracer::builder()
        .with_max_level(max_level.as_log())
        .init()
    {
        Ok(()) => handle.bridges_log_facade = true,
        Err(error) => handle.startup_warnings.push(format!(
            "records of the `log` facade are not forwarded: {error}"
        )),
    }
    for warning in &handle.startup_warnings {
        tracing::warn!("{warning}");
    }
    Ok(handle)
}

/// A fmt layer producing the technician's line format, without ANSI colours.
fn plain_lines<S>() -> tracing_subscriber::fmt::Layer<
    S,
    tracing_subscriber::fmt::format::DefaultFields,
    TechnicianFormat,
>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .event_format(TechnicianFormat)
}

/// `time LEVEL target: span{fields}: message key=value`, one line per event.
#[derive(Debug, Clone, Copy)]
pub struct TechnicianFormat;

impl<S, N> FormatEvent<S, N> for TechnicianFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let metadata = event.metadata();
        let mut line = String::with_capacity(160);
        write!(
            line,
            "{} {} {}: ",
            chrono::Utc::now().format(LINE_TIME_FORMAT),
            metadata.level(),
            metadata.target()
        )?;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                line.push_str(span.name());
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<N>>() {
                    if !fields.is_empty() {
                        write!(line, "{{{fields}}}")?;
                    }
                }
                line.push_str(": ");
            }
        }
        ctx.format_fields(Writer::new(&mut line), event)?;
        write_one_line(&mut writer, &line)?;
        writer.write_char('\n')
    }
}

/// Writes `text` with line breaks escaped, so every event stays exactly one line.
fn write_one_line(writer: &mut Writer<'_>, text: &str) -> fmt::Result {
    for part in text.split_inclusive(['\n', '\r']) {
        let (body, escape) = match part.strip_suffix('\n') {
            Some(body) => (body, "\\n"),
            None => match part.strip_suffix('\r') {
                Some(body) => (body, "\\r"),
                None => (part, ""),
            },
        };
        writer.write_str(body)?;
        writer.write_str(escape)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn options_with_file(path: PathBuf) -> LogOptions {
        LogOptions {
            file: Some(path),
            journald: JournaldMode::Never,
            ..LogOptions::default()
        }
    }

    #[test]
    fn set_level_applies_a_valid_directive_and_keeps_the_old_one_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("edge-agent.log");
        let (dispatch, handle) = build(&options_with_file(path.clone())).unwrap();
        handle.set_level("info").unwrap(); // whatever RUST_LOG says

        tracing::dispatcher::with_default(&dispatch, || {
            tracing::debug!("hidden at info");
            handle.set_level("info,edge_agent=debug").unwrap();
            tracing::debug!("shown at debug");

            let error = handle.set_level("verbose").unwrap_err();
            assert_eq!(
                error.to_string(),
                format!(
                    "invalid log level \"verbose\": `verbose` is not a level; {}",
                    log_level::LEVEL_HELP
                )
            );
            assert!(handle.set_level("edge_agent=loud").is_err());
            tracing::debug!("still shown");
        });

        assert_eq!(handle.current_level().unwrap(), "edge_agent=debug,info");
        let written = std::fs::read_to_string(path).unwrap();
        assert!(!written.contains("hidden at info"));
        assert!(written.contains("shown at debug"));
        assert!(written.contains("still shown"));
    }

    #[test]
    fn file_lines_have_the_documented_shape_with_spans_and_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("edge-agent.log");
        let (dispatch, handle) = build(&options_with_file(path.clone())).unwrap();
        handle.set_level("info").unwrap(); // whatever RUST_LOG says

        tracing::dispatcher::with_default(&dispatch, || {
            let span = tracing::info_span!("device", id = "ai06-1");
            let _entered = span.enter();
            tracing::warn!(attempts = 3, "poll failed\nsecond line");
        });

        let written = std::fs::read_to_string(path).unwrap();
        let (time, rest) = written.split_once(' ').unwrap();
        chrono::NaiveDateTime::parse_from_str(time, LINE_TIME_FORMAT).unwrap();
        assert!(time.ends_with('Z') && time.len() == 24, "{time}");
        assert_eq!(
            rest,
            "WARN edge_agent::ops::logging::tests: device{id=\"ai06-1\"}: \
             poll failed\\nsecond line attempts=3\n"
        );
    }

    #[test]
    fn rust_log_overrides_the_config_unless_it_is_invalid() {
        let (filter, warning) = resolve_level("info", Some("debug")).unwrap();
        assert_eq!((filter.to_string(), warning), ("debug".to_owned(), None));

        let (filter, warning) = resolve_level("warn", Some("chatty")).unwrap();
        assert_eq!(filter.to_string(), "warn");
        assert!(warning.unwrap().starts_with("RUST_LOG ignored"));

        let (filter, _) = resolve_level("warn", Some("  ")).unwrap();
        assert_eq!(filter.to_string(), "warn");

        assert!(resolve_level("loud", None).is_err());
    }

    #[test]
    fn journald_mode_follows_systemd_only_in_auto() {
        assert!(JournaldMode::Auto.wanted(true));
        assert!(!JournaldMode::Auto.wanted(false));
        assert!(JournaldMode::Always.wanted(false));
        assert!(!JournaldMode::Never.wanted(true));
    }

    #[test]
    fn required_journald_fails_loudly_when_the_journal_is_absent() {
        if Path::new("/run/systemd/journal/socket").exists() {
            return; // journald runs here, so "always" rightly succeeds.
        }
        let options = LogOptions {
            journald: JournaldMode::Always,
            ..LogOptions::default()
        };
        let error = build(&options).unwrap_err();
        assert!(matches!(error, LogError::JournaldUnavailable(_)), "{error}");
    }

    #[test]
    fn impossible_file_limits_are_refused() {
        let options = LogOptions {
            max_files: 0,
            ..options_with_file(PathBuf::from("/tmp/never-created/edge-agent.log"))
        };
        assert!(matches!(
            build(&options),
            Err(LogError::File(PolicyError::NoFiles))
        ));
    }
}
