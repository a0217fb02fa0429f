//! SIGHUP: re-read the config; apply what can change at run time, keep the old config if the
//! new one is broken, and say clearly which changes need a restart.

use crate::config::{self, Config};
use crate::ops::logging::LoggingHandle;
use crate::ops::systemd;
use std::path::Path;
use std::sync::Arc;

/// Re-reads the config file and, when it is valid, applies what can change at run time (the
/// log level) and makes it the config in force (`current`); keys that need a restart are named.
pub(super) fn reload(path: &Path, current: &mut Arc<Config>, logging: &LoggingHandle) {
    systemd::notify("RELOADING=1");
    match config::load(path) {
        Err(errors) => {
            for error in &errors.errors {
                tracing::error!(problem = %error, "config reload rejected");
            }
            tracing::error!(
                problems = errors.errors.len(),
                file = %path.display(),
                "config reload failed; keeping the previous config"
            );
        }
        Ok(loaded) => {
            for warning in &loaded.warnings {
                tracing::warn!("{warning}");
            }
            let new = Arc::new(loaded.config);
            let old = Arc::clone(current);
            for key in restart_required(&old, &new) {
                tracing::warn!(key, "changed in the config; takes effect after a restart");
            }
            if new.log.level != old.log.level {
                match logging.set_level(&new.log.level) {
                    Ok(()) => tracing::info!(level = %new.log.level, "log level changed"),
                    Err(err) => tracing::error!(%err, "log level not changed"),
                }
            }
            *current = new;
            tracing::info!(file = %path.display(), "config reloaded");
        }
    }
    systemd::notify("READY=1");
}

/// Keys whose new value only takes effect after a restart (the store and log file are open).
fn restart_required(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut keys = Vec::new();
    if old.agent.data_dir != new.agent.data_dir {
        keys.push("agent.data_dir");
    }
    if old.agent.id != new.agent.id {
        keys.push("agent.id");
    }
    if old.store != new.store {
        keys.push("store");
    }
    if old.device != new.device {
        keys.push("device (devices and their listeners)");
    }
    if old.upstream != new.upstream {
        keys.push("upstream");
    }
    if old.log.file != new.log.file
        || old.log.max_file_size != new.log.max_file_size
        || old.log.max_files != new.log.max_files
        || old.log.journald != new.log.journald
    {
        keys.push("log (file, rotation, journald)");
    }
    keys
}
