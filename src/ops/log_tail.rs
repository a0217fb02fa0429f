//! The last lines of the agent's log across the rotated files, for a `logs tail` command.
//!
//! A technician asking "what did ai06-1 say just now?" should not need to know which of
//! `edge-agent.log`, `.1`, `.2` … holds the answer: this reads the live file first and walks back
//! into older files only until enough matching lines are found.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::rotating_file::rotated_files;

/// Why the log could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read log file {}: {source}", path.display())]
pub struct TailError {
    /// The file (or directory, while listing rotations) that failed.
    pub path: PathBuf,
    /// The underlying I/O error.
    #[source]
    pub source: io::Error,
}

/// The last `n` lines containing `filter` (a plain substring such as a device id or `ERROR`;
/// `None` matches every line), oldest first and newest last, as `tail` prints them.
/// A missing log file yields no lines, not an error: nothing has been logged yet.
pub fn tail(live_file: &Path, n: usize, filter: Option<&str>) -> Result<Vec<String>, TailError> {
    let mut newest_first = Vec::with_capacity(n);
    if n == 0 {
        return Ok(newest_first);
    }
    let mut rotated = rotated_files(live_file).map_err(|source| TailError {
        path: live_file.parent().unwrap_or(Path::new(".")).to_owned(),
        source,
    })?;
    rotated.sort_unstable_by_key(|(index, _)| *index);
    let files = std::iter::once(live_file.to_owned()).chain(rotated.into_iter().map(|(_, p)| p));

    'files: for path in files {
        let content = match fs::read(&path) {
            Ok(content) => content,
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => return Err(TailError { path, source }),
        };
        let content = String::from_utf8_lossy(&content);
        let matching = content
            .lines()
            .rev()
            .filter(|line| filter.is_none_or(|wanted| line.contains(wanted)));
        for line in matching {
            newest_first.push(line.to_owned());
            if newest_first.len() == n {
                break 'files;
            }
        }
    }
    newest_first.reverse();
    Ok(newest_first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_set(dir: &Path) -> PathBuf {
        let live = dir.join("edge-agent.log");
        fs::write(dir.join("edge-agent.log.2"), "a1 ERROR\na2\n").unwrap();
        fs::write(dir.join("edge-agent.log.1"), "b1\nb2 ERROR\n").unwrap();
        fs::write(&live, "c1 ERROR\nc2\n").unwrap();
        live
    }

    #[test]
    fn reads_back_across_rotated_files_newest_last() {
        let dir = tempfile::tempdir().unwrap();
        let live = log_set(dir.path());

        assert_eq!(
            tail(&live, 3, None).unwrap(),
            ["b2 ERROR", "c1 ERROR", "c2"]
        );
        assert_eq!(
            tail(&live, 10, None).unwrap(),
            ["a1 ERROR", "a2", "b1", "b2 ERROR", "c1 ERROR", "c2"]
        );
    }

    #[test]
    fn the_filter_selects_lines_before_counting() {
        let dir = tempfile::tempdir().unwrap();
        let live = log_set(dir.path());

        assert_eq!(
            tail(&live, 2, Some("ERROR")).unwrap(),
            ["b2 ERROR", "c1 ERROR"]
        );
        assert!(tail(&live, 5, Some("nothing like this"))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_missing_log_is_empty_and_zero_lines_reads_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let never_written = dir.path().join("absent").join("edge-agent.log");
        assert!(tail(&never_written, 5, None).unwrap().is_empty());

        let live = log_set(dir.path());
        assert!(tail(&live, 0, None).unwrap().is_empty());
    }
}
