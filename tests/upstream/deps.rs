//! The TLS policy in the dependency tree: rustls with ring only, no OpenSSL and no aws-lc,
//! so cross-compiling needs nothing but a C cross-compiler for ring. Checked over normal,
//! build and dev dependencies alike (scripts/test.sh checks the shipped tree too).

use std::process::Command;

fn cargo_tree_inverted(package: &str) -> std::process::Output {
    Command::new(env!("CARGO"))
        .args(["tree", "--offline", "--manifest-path"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .args(["--workspace", "--edges", "normal,build,dev", "-i", package])
        .output()
        .expect("run cargo tree")
}

#[test]
fn the_dependency_tree_has_ring_but_no_openssl_and_no_aws_lc() {
    // Positive control: the query finds a crate that is there, so an empty answer below
    // means "absent", not "cargo tree did not work".
    let ring = cargo_tree_inverted("ring");
    assert!(
        ring.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&ring.stderr)
    );
    assert!(String::from_utf8_lossy(&ring.stdout).contains("rustls"));

    for banned in ["openssl-sys", "openssl", "aws-lc-sys", "aws-lc-rs"] {
        let output = cargo_tree_inverted(banned);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success() && stderr.contains("did not match any packages"),
            "{banned} is in the dependency tree:\n{}",
            String::from_utf8_lossy(&output.stdout)
        );
    }
}
