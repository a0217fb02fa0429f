//! Holds the source to the module map of `docs/ARCHITECTURE.md`: a module imports only modules
//! on its own level or below, nothing but the `run` command imports `agent`, and the top-level
//! modules import each other without a cycle. A newcomer who adds an upward import learns it
//! here, not from a tangle found months later.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module with its level, as `docs/ARCHITECTURE.md` lists them.
const LEVELS: &[(&str, u8)] = &[
    ("lifecycle", 0),
    ("backoff", 0),
    ("exit_status", 0),
    ("clock_sync", 0),
    ("store", 0),
    ("config", 0),
    ("events", 1),
    ("device", 2),
    ("upstream", 2),
    ("audit", 2),
    ("lock", 2),
    ("sync", 3),
    ("esl", 3),
    ("live", 3),
    ("mqtt", 4),
    ("arbiter", 4),
    ("ops", 4),
    ("ctl", 4),
    ("probe", 4),
    ("demo", 4),
    ("cli", 4),
    ("agent", 4),
];

/// Modules that import nothing from the crate at all.
const LEAVES: &[&str] = &["lifecycle", "backoff", "exit_status", "clock_sync"];

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
}

/// Top-level module → the other top-level modules its production code names as `crate::x`.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(&src).expect("under src");
        let first = relative.components().next().expect("a component");
        let module = first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if ["lib", "main", "layering"].contains(&module.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read a source file");
        let production = text.split("#[cfg(test)]").next().unwrap_or_default();
        let imported = graph.entry(module.clone()).or_default();
        for line in production.lines() {
            let code = line.split("//").next().unwrap_or_default();
            for (at, _) in code.match_indices("crate::") {
                let name: String = code[at + "crate::".len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if name != module && LEVELS.iter().any(|(known, _)| *known == name) {
                    imported.insert(name);
                }
            }
        }
    }
    graph
}

fn level(module: &str) -> u8 {
    LEVELS
        .iter()
        .find(|(name, _)| *name == module)
        .map(|(_, level)| *level)
        .unwrap_or_else(|| panic!("module `{module}` is not in the module map; add it to docs/ARCHITECTURE.md and LEVELS"))
}

#[test]
fn modules_import_only_their_level_or_below() {
    let mut upward = Vec::new();
    for (module, imported) in imports() {
        for target in imported {
            if level(&target) > level(&module) {
                upward.push(format!(
                    "{module} (level {}) imports {target} (level {})",
                    level(&module),
                    level(&target)
                ));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports against the module map:\n{}",
        upward.join("\n")
    );
}

#[test]
fn only_the_command_line_imports_the_agent_and_leaves_import_nothing() {
    for (module, imported) in imports() {
        if module != "cli" {
            assert!(!imported.contains("agent"), "{module} imports crate::agent");
        }
        if LEAVES.contains(&module.as_str()) {
            assert!(
                imported.is_empty(),
                "leaf module {module} imports {imported:?}"
            );
        }
    }
}

#[test]
fn top_level_modules_import_each_other_without_a_cycle() {
    let graph = imports();
    // Depth-first search; `path` is the chain being explored.
    fn visit<'a>(
        module: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) {
        if done.contains(module) {
            return;
        }
        if let Some(start) = path.iter().position(|m| *m == module) {
            panic!("import cycle: {} -> {module}", path[start..].join(" -> "));
        }
        path.push(module);
        for next in graph.get(module).into_iter().flatten() {
            visit(next, graph, path, done);
        }
        path.pop();
        done.insert(module);
    }
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        visit(module, &graph, &mut Vec::new(), &mut done);
    }
}
