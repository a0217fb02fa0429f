//! Writes the man page and the shell completions of `edge-agent` from its clap definitions, so
//! the packages ship help that cannot drift from the binary. `scripts/package.sh` runs it on the
//! build host (the files do not depend on the target):
//!
//! ```text
//! cargo run --example package_assets -- target/package-assets
//! ```

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

fn main() -> std::io::Result<()> {
    let out: PathBuf = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/package-assets"));
    fs::create_dir_all(&out)?;
    write_man_pages(&out)?;
    for (shell, name) in [
        (Shell::Bash, "edge-agent.bash"),
        (Shell::Zsh, "_edge-agent"),
        (Shell::Fish, "edge-agent.fish"),
    ] {
        let mut command = edge_agent::cli::Cli::command();
        let mut file = fs::File::create(out.join(name))?;
        clap_complete::generate(shell, &mut command, "edge-agent", &mut file);
    }
    println!("man page and completions written to {}", out.display());
    Ok(())
}

/// `edge-agent.1` and one `edge-agent-<command>.1` per subcommand (as git does), gzipped as
/// Debian wants man pages, without a timestamp so the files are reproducible.
fn write_man_pages(out: &Path) -> std::io::Result<()> {
    let man = out.join("man");
    fs::create_dir_all(&man)?;
    let command = edge_agent::cli::Cli::command();
    let mut pages = vec![("edge-agent".to_string(), command.clone())];
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        // clap names are `&'static str` without its `string` feature; this process is short.
        let name: &'static str = format!("edge-agent-{}", sub.get_name()).leak();
        let bin = format!("edge-agent {}", sub.get_name());
        pages.push((name.to_string(), sub.clone().name(name).bin_name(bin)));
    }
    for (name, page) in pages {
        let path = man.join(format!("{name}.1"));
        let mut roff = Vec::new();
        clap_mangen::Man::new(page).render(&mut roff)?;
        fs::write(&path, roff)?;
        let gz = std::process::Command::new("gzip")
            .args(["-9", "-n", "-f"])
            .arg(&path)
            .status()?;
        if !gz.success() {
            return Err(std::io::Error::other(format!(
                "gzip failed on {}",
                path.display()
            )));
        }
    }
    std::io::stdout().flush()
}
