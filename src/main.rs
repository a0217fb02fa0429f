//! The `edge-agent` binary: everything it does is in the library's `cli` module, so the tests
//! and `--help` see exactly what runs on the box.

use std::process::ExitCode;

fn main() -> ExitCode {
    edge_agent::ops::memory::limit_malloc_arenas();
    edge_agent::cli::main(std::env::args_os())
}
