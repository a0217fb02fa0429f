//! `edge-agent check-config`: validates a config file before the agent is (re)started.

use std::path::{Path, PathBuf};

use super::ExitStatus;

/// `edge-agent check-config` options.
#[derive(Debug, clap::Args)]
pub struct CheckConfigArgs {
    /// The config file to check.
    pub file: PathBuf,
}

/// Prints the resolved config (defaults filled in, secrets never shown), or one line per
/// problem and [`ExitStatus::BadConfig`].
pub fn check(args: &CheckConfigArgs) -> ExitStatus {
    check_file(&args.file)
}

fn check_file(file: &Path) -> ExitStatus {
    match crate::config::load(file) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                eprintln!("warning: {warning}");
            }
            match toml::to_string_pretty(&loaded.config) {
                Ok(text) => {
                    println!(
                        "# {} is valid. Resolved configuration (defaults filled in; secrets \
                         are read from the files named here and never printed):\n",
                        file.display()
                    );
                    print!("{text}");
                    ExitStatus::Success
                }
                Err(err) => {
                    eprintln!("error: cannot print the resolved config: {err}");
                    ExitStatus::Failed
                }
            }
        }
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!(
                "{} problem(s) found; the annotated reference is config/edge-agent.toml",
                errors.errors.len()
            );
            ExitStatus::BadConfig
        }
    }
}
