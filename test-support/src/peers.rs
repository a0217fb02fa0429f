//! The conformance peers in `tests/peers/` (pyzk, node-zklib): independent ZK clients run as
//! separate processes against `device-sim zk`. One runner for every test that uses them (the
//! protocol crate's conformance tests, the agent's punch tests), so a missing client is
//! reported the same loud way everywhere.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

/// Exit status the peer scripts use for "client library not installed".
pub const PEER_MISSING: i32 = 3;

/// `tests/peers/` of the workspace.
pub fn peers_dir() -> PathBuf {
    [env!("CARGO_MANIFEST_DIR"), "..", "tests", "peers"]
        .iter()
        .collect()
}

/// The Python that has pyzk: `PEER_PYTHON` (the test script's virtualenv) or `python3`.
pub fn python() -> String {
    std::env::var("PEER_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// Runs a peer script and returns the JSON object it printed last; `None` (after a loud
/// `SKIPPED` banner, see [`crate::skip`]) when its client library is missing. Panics with the
/// script's output when it fails otherwise.
pub fn run_peer(program: &str, script: &str, args: &[String]) -> Option<Value> {
    let output = Command::new(program)
        .arg(peers_dir().join(script))
        .args(args)
        .current_dir(peers_dir())
        .output();
    let output = match output {
        Ok(output) => output,
        Err(err) => {
            skipped(script, &format!("cannot run {program}: {err}"));
            return None;
        }
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.code() == Some(PEER_MISSING) {
        skipped(script, stderr.trim());
        return None;
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{script} {args:?} failed ({}):\nstdout: {stdout}\nstderr: {stderr}",
        output.status
    );
    // node-zklib prints "ok tcp"/"ok udp" itself; the JSON is the last line.
    let json = stdout.lines().last().expect("peer printed nothing");
    let shown: String = json.chars().take(2000).collect();
    Some(serde_json::from_str(json).unwrap_or_else(|e| panic!("{script} printed {shown:?}…: {e}")))
}

fn skipped(script: &str, why: &str) {
    let check = if script.contains("pyzk") {
        "pyzk"
    } else {
        "node-zklib"
    };
    crate::skip::skipped(
        check,
        script,
        &format!("{why} (install the peer: pip install pyzk / (cd tests/peers && npm install))"),
    );
}

/// What pyzk reads from the emulated ZK `terminal` without writing anything
/// (`pyzk_check.py --read-only`, plus `extra` flags such as `--templates`); `None` (a loud
/// skip) when pyzk is not installed. One call for every test that checks a ZK terminal
/// through pyzk's eyes.
pub fn pyzk_read(terminal: &crate::Emulator, extra: &[&str]) -> Option<Value> {
    let port = terminal
        .tcp
        .expect("a ZK emulator listening on TCP")
        .port()
        .to_string();
    let mut args = vec!["--port".to_string(), port, "--read-only".to_string()];
    args.extend(extra.iter().map(|flag| flag.to_string()));
    run_peer(&python(), "pyzk_check.py", &args)
}
