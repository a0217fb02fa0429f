//! Agent code cannot write a destructive command: see the crate documentation.

#[test]
fn agent_code_cannot_write_a_raw_or_destructive_command() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/no_raw_send/pass_safe_requests.rs");
    cases.compile_fail("tests/no_raw_send/fail_*.rs");
}

/// The proof holds only while this crate sees the protocol crate as the agent does: the agent's
/// `device-protocols` line in the root `Cargo.toml` must never enable `raw`, and this crate's
/// line must enable the same features.
#[test]
fn agent_dependency_line_matches() {
    let line_in = |manifest: &str| -> String {
        let text = std::fs::read_to_string(manifest).expect("read a manifest");
        text.lines()
            .find(|line| line.starts_with("device-protocols ="))
            .expect("a device-protocols dependency")
            .to_owned()
    };
    let features = |line: &str| -> String {
        let start = line.find("features").expect("a features list");
        line[start..].to_owned()
    };
    let agent = line_in(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml"));
    let ours = line_in(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"));
    assert!(!agent.contains("raw"), "the agent enables `raw`: {agent}");
    assert!(agent.contains("default-features = false"), "{agent}");
    assert_eq!(features(&agent), features(&ours));
}
