//! Secrets live in their own files, never inline in the config, so the config can be shown,
//! copied into a ticket or printed by `check-config` without leaking anything.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Reads a secret file, trimming surrounding whitespace (editors add a trailing newline).
pub fn read_secret(path: &Path) -> io::Result<String> {
    let text = fs::read_to_string(path)?;
    let secret = text.trim().to_string();
    if secret.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the file is empty",
        ));
    }
    Ok(secret)
}

/// A warning when a secret file can be read by users other than its owner and group.
pub fn secret_warnings(key: &str, path: &Path) -> Option<String> {
    let mode = fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o004 != 0).then(|| {
        format!(
            "{key}: secret file {} is readable by every user on this machine (mode {:o}); \
             run `chmod o-rwx {}`",
            path.display(),
            mode & 0o777,
            path.display()
        )
    })
}
