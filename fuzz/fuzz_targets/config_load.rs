//! Config loading fed arbitrary text: the TOML parser, the typed config, human durations and
//! sizes, and every validation (which reports line numbers) must answer with a config or a list
//! of problems, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match edge_agent::config::parse(&text) {
        Ok(config) => {
            let _ = format!("{config:?}");
        }
        Err(problems) => {
            for problem in problems {
                let _ = problem.to_string();
            }
        }
    }
});
