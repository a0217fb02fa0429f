//! `edge-agent demo`: the agent's main job on an embedded default (`crate::demo` narrates it as
//! it happens; this runs it and turns the outcome into an exit status).

use super::ExitStatus;
use crate::demo::DemoOptions;

/// `edge-agent demo` options.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Users enrolled on the emulated terminal.
    #[arg(long, default_value_t = 25)]
    pub users: u64,
    /// Size of each user's face photo in KB.
    #[arg(long, default_value_t = 8)]
    pub photo_kb: usize,
    /// Keep the demo's data directory afterwards.
    #[arg(long)]
    pub keep: bool,
    /// Print a JSON summary of what happened on stdout (the narration goes to stderr).
    #[arg(long)]
    pub json: bool,
}

/// Runs the demo: [`ExitStatus::Success`] when all of it worked.
pub fn run(args: DemoArgs) -> ExitStatus {
    let options = DemoOptions {
        users: args.users,
        photo_kb: args.photo_kb,
        keep: args.keep,
        json: args.json,
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("edge-agent demo: cannot start the async runtime: {err}");
            return ExitStatus::Failed;
        }
    };
    match runtime.block_on(crate::demo::run(&options)) {
        Ok(summary) => {
            if options.json {
                match serde_json::to_string_pretty(&summary) {
                    Ok(text) => println!("{text}"),
                    Err(err) => {
                        eprintln!("edge-agent demo: cannot print the summary: {err}");
                        return ExitStatus::Failed;
                    }
                }
            }
            ExitStatus::Success
        }
        Err(err) => {
            eprintln!("edge-agent demo FAILED: {err:#}");
            ExitStatus::Failed
        }
    }
}
