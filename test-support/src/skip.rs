//! Loud skips: a test that cannot run its real check (no `strace` or ptrace, no pyzk, no
//! node-zklib) says so where it cannot be missed.
//!
//! The test runner hides the output of passing tests, so a skip is recorded twice: a banner on
//! the process's stderr, and one line in `target/tmp/skipped-checks/`, which the test script
//! prints on stdout as `SKIPPED: <check>: <why>` in its summary after the suite. On CI
//! (`CI=true`) the script fails the run when a check it promises was skipped (see
//! `scripts/test.sh`).

use std::io::Write;

use crate::emulator::test_family;
use crate::paths::target_tmp;

/// The directory the test script reads skips from.
pub const SKIPPED_DIR: &str = "skipped-checks";

/// Records that `check` (a short stable name the test script knows, such as `pyzk`,
/// `node-zklib` or `strace`) could not run in `test`, and why.
pub fn skipped(check: &str, test: &str, why: &str) {
    let why = why.replace('\n', " ");
    let banner = format!(
        "\n************************************************************\n\
         *** SKIPPED: {check}: {test}: {why}\n\
         ************************************************************\n"
    );
    // Straight to the stderr handle: libtest captures `eprintln!` of passing tests.
    let _ = std::io::stderr().write_all(banner.as_bytes());
    let dir = target_tmp().join(SKIPPED_DIR);
    std::fs::create_dir_all(&dir).expect("create the skipped-checks directory");
    let path = dir.join(format!("{}-{}.txt", test_family(), std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .expect("open the skipped-checks file");
    writeln!(file, "{check}\t{test}\t{why}").expect("record a skipped check");
}
