//! The log-level directive of `[log] level` (and of the MQTT `log-level` command), parsed
//! strictly. It lives with the config that holds it, so validating a config does not depend on
//! how logging is set up (`crate::ops::logging` builds on it, never the other way round).

use tracing::level_filters::LevelFilter;
use tracing_subscriber::EnvFilter;

/// What a technician is told alongside a bad directive.
pub const LEVEL_HELP: &str =
    "use one of trace, debug, info, warn, error, off, or target=level such as edge_agent::device=debug";

/// A level directive that does not parse, or a bare word that is not a level (which
/// `EnvFilter` would silently read as a target name and so hide almost everything).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid log level {directive:?}: {reason}; {LEVEL_HELP}")]
pub struct InvalidLevel {
    /// The directive as given.
    pub directive: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Parses a level directive strictly: every comma-separated part must be a level name or
/// contain `=`. Used by config validation, the logging set-up and the MQTT command, so all
/// three reject the same input up front.
pub fn parse_level(directive: &str) -> Result<EnvFilter, InvalidLevel> {
    let invalid = |reason: String| InvalidLevel {
        directive: directive.to_owned(),
        reason,
    };
    let parts: Vec<&str> = directive
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .collect();
    if parts.is_empty() {
        return Err(invalid("it is empty".to_owned()));
    }
    if let Some(bare) = parts
        .iter()
        .find(|part| !part.contains('=') && part.parse::<LevelFilter>().is_err())
    {
        return Err(invalid(format!("`{bare}` is not a level")));
    }
    // EnvFilter does not trim; a technician typing "info, sled=warn" means the obvious thing.
    EnvFilter::builder()
        .parse(parts.join(","))
        .map_err(|error| invalid(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_level_accepts_levels_and_target_directives_only() {
        for good in [
            "info",
            "WARN",
            "off",
            "info, edge_agent::store=trace",
            "sled=warn",
        ] {
            assert!(parse_level(good).is_ok(), "{good}");
        }
        for bad in ["", " , ", "verbose", "edge_agent", "info,edge_agent=loud"] {
            assert!(parse_level(bad).is_err(), "{bad}");
        }
    }
}
