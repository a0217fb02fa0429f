//! Reading a config file and turning every mistake in it into one clear line.
//!
//! serde stops at the first error, but a technician fixing a config over a console wants every
//! problem at once. So after each error we locate the offending key in the parsed document,
//! record the problem with its key path and line, blank that key out (keeping every other byte
//! offset, so line numbers stay true) and deserialise again. Semantic checks (duplicates, port
//! clashes, missing files) run on the typed result once it deserialises cleanly.

use super::validate;
use super::Config;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml_edit::{Document, Item, Table};

/// One problem in a config file, pinned to a key and (where the file shows it) a line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key path, e.g. `device[1].poll_interval`; empty for file-level problems.
    pub key: String,
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    /// What is wrong and, where it helps, what is allowed.
    pub message: String,
}

/// Every problem found in one file; displays as one line per problem.
#[derive(Clone, Debug)]
pub struct ConfigErrors {
    /// The file the problems are in.
    pub file: PathBuf,
    /// The problems, in file order where possible.
    pub errors: Vec<ConfigError>,
}

/// A config that passed every check, with the warnings found on the way.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The resolved configuration (defaults applied).
    pub config: Config,
    /// Non-fatal findings, e.g. a secret file readable by other users.
    pub warnings: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.errors.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{}:", self.file.display())?;
            if let Some(line) = error.line {
                write!(f, "{line}:")?;
            }
            write!(f, " ")?;
            if !error.key.is_empty() {
                write!(f, "{}: ", error.key)?;
            }
            f.write_str(&error.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads, parses and checks a config file, including the files it names (secrets).
pub fn load(path: &Path) -> Result<Loaded, ConfigErrors> {
    let fail = |errors| ConfigErrors {
        file: path.to_path_buf(),
        errors,
    };
    let text = std::fs::read_to_string(path).map_err(|err| {
        fail(vec![ConfigError {
            key: String::new(),
            line: None,
            message: format!("cannot read the config file: {err}"),
        }])
    })?;
    let config = parse(&text).map_err(fail)?;
    let index = KeyIndex::build(&text);
    let mut errors = Vec::new();
    let mut warnings = validate::check_files(&config, &index, &mut errors);
    warnings.extend(validate::trade_offs(&config));
    if errors.is_empty() {
        Ok(Loaded { config, warnings })
    } else {
        Err(fail(errors))
    }
}

/// Parses and checks config text without touching the file system.
pub fn parse(text: &str) -> Result<Config, Vec<ConfigError>> {
    const MAX_ROUNDS: usize = 64;
    let mut text = text.to_owned();
    let mut errors = Vec::new();
    // Keys blanked out after an error: later findings about them are consequences, not news.
    let mut blanked: Vec<String> = Vec::new();
    // Array elements blanked out: later rounds see the array shorter and must be renumbered.
    let mut removed: Vec<(String, usize)> = Vec::new();
    for _ in 0..MAX_ROUNDS {
        let document = match Document::parse(text.as_str()) {
            Ok(document) => document,
            Err(err) => {
                errors.push(ConfigError {
                    key: String::new(),
                    line: err.span().map(|span| line_of(&text, span.start)),
                    message: format!("TOML syntax error: {}", err.message().trim()),
                });
                break;
            }
        };
        let err = match toml::from_str::<Config>(&text) {
            Ok(config) => {
                let index = KeyIndex::from_document(&text, &document);
                let mut semantic = Vec::new();
                validate::check(&config, &index, &mut semantic);
                errors.extend(semantic.into_iter().filter_map(|mut error| {
                    error.key = original_path(&error.key, &removed);
                    (!is_consequence(&error.key, &blanked)).then_some(error)
                }));
                if errors.is_empty() {
                    return Ok(config);
                }
                break;
            }
            Err(err) => err,
        };
        let mut located = err
            .span()
            .and_then(|span| locate(&document, span.start))
            .unwrap_or_default();
        let element = array_element(&located.key);
        located.key = original_path(&located.key, &removed);
        let (message, recoverable) = explain(err.message(), &located.key);
        let missing = missing_field(err.message()).map(|field| join(&located.key, field));
        if !missing
            .as_deref()
            .is_some_and(|key| is_consequence(key, &blanked))
        {
            errors.push(ConfigError {
                key: located.key.clone(),
                line: err.span().map(|span| line_of(&text, span.start)),
                message,
            });
        }
        if !recoverable || located.blank.is_empty() {
            break;
        }
        for range in located.blank {
            blank_out(&mut text, range);
        }
        if let Some(element) = element {
            removed.push(element);
        }
        blanked.push(located.key);
    }
    errors.sort_by_key(|error| error.line.unwrap_or(usize::MAX));
    Err(errors)
}

/// `Some((array, index))` when `key` names a whole array-of-tables element, e.g. `device[2]`.
fn array_element(key: &str) -> Option<(String, usize)> {
    let inner = key.strip_suffix(']')?;
    let (array, index) = inner.rsplit_once('[')?;
    Some((array.to_string(), index.parse().ok()?))
}

/// Renumbers a path seen after array elements were blanked out back to the file's numbering.
fn original_path(key: &str, removed: &[(String, usize)]) -> String {
    let mut key = key.to_string();
    for (array, gone) in removed.iter().rev() {
        let Some(rest) = key
            .strip_prefix(array.as_str())
            .and_then(|r| r.strip_prefix('['))
        else {
            continue;
        };
        let Some((index, tail)) = rest.split_once(']') else {
            continue;
        };
        if let Ok(index) = index.parse::<usize>() {
            let original = if index >= *gone { index + 1 } else { index };
            key = format!("{array}[{original}]{tail}");
        }
    }
    key
}

/// True when `key` is (inside) a key that was already reported and blanked out.
fn is_consequence(key: &str, blanked: &[String]) -> bool {
    blanked.iter().any(|gone| {
        key == gone
            || key
                .strip_prefix(gone.as_str())
                .is_some_and(|rest| rest.starts_with(['.', '[']))
    })
}

/// The field named by serde's "missing field" message.
fn missing_field(message: &str) -> Option<&str> {
    message
        .trim()
        .strip_prefix("missing field `")?
        .split('`')
        .next()
}

/// Rewrites serde's message for an operator; says whether parsing can go on past it.
fn explain(message: &str, key: &str) -> (String, bool) {
    let message = message.trim();
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let unknown = rest.split('`').next().unwrap_or_default();
        let allowed = backticked_names(rest.split_once("expected").map_or("", |(_, tail)| tail));
        let hint = match did_you_mean(unknown, &allowed) {
            Some(best) => format!(" (did you mean `{best}`?)"),
            None if allowed.is_empty() => String::new(),
            None => format!("; allowed keys: {}", allowed.join(", ")),
        };
        return (format!("unknown key `{unknown}`{hint}"), true);
    }
    if let Some(missing) = missing_field(message) {
        let what = if key.is_empty() {
            format!("missing required section [{missing}]")
        } else {
            format!("missing required key `{missing}`")
        };
        return (what, !key.is_empty());
    }
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        let unknown = rest.split('`').next().unwrap_or_default();
        let allowed = backticked_names(rest.split_once("expected").map_or("", |(_, tail)| tail));
        let hint = did_you_mean(unknown, &allowed)
            .map(|best| format!(" (did you mean `{best}`?)"))
            .unwrap_or_default();
        return (
            format!(
                "`{unknown}` is not one of {}{hint}",
                allowed
                    .iter()
                    .map(|name| format!("`{name}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            true,
        );
    }
    (message.to_string(), true)
}

fn backticked_names(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// The closest allowed name, if any is close enough to be a likely typo.
pub(crate) fn did_you_mean<'a>(unknown: &str, allowed: &'a [String]) -> Option<&'a str> {
    allowed
        .iter()
        .map(|name| (strsim::jaro_winkler(unknown, name), name))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, name)| name.as_str())
}

/// The key an error points at and the byte ranges to blank so parsing can continue.
#[derive(Default)]
struct Located {
    key: String,
    blank: Vec<Range<usize>>,
}

/// Finds the innermost key whose text contains `offset`.
fn locate(document: &Document<&str>, offset: usize) -> Option<Located> {
    let mut best: Option<(usize, Located)> = None;
    visit(document.as_table(), "", &mut |path, key_span, item| {
        let whole = whole_span(key_span.clone(), item);
        if whole.contains(&offset) || key_span.contains(&offset) {
            let width = whole.end - whole.start;
            if best.as_ref().is_none_or(|(w, _)| width <= *w) {
                best = Some((
                    width,
                    Located {
                        key: path.to_string(),
                        blank: blank_ranges(key_span, item),
                    },
                ));
            }
        }
    });
    // An error inside a table header or an array-of-tables element (e.g. a missing field)
    // points at the table itself.
    if best.is_none() {
        visit_tables(document.as_table(), "", &mut |path, table| {
            if let Some(span) = table.span() {
                if span.contains(&offset) {
                    let mut blank = vec![span];
                    collect_item_ranges(table, &mut blank);
                    best = Some((
                        0,
                        Located {
                            key: path.to_string(),
                            blank,
                        },
                    ));
                }
            }
        });
    }
    best.map(|(_, located)| located)
}

/// Calls `f` for every key/value pair with its dotted path, key span and item.
fn visit(table: &Table, prefix: &str, f: &mut dyn FnMut(&str, Range<usize>, &Item)) {
    for (name, item) in table.iter() {
        let path = join(prefix, name);
        if let Some(key_span) = table.key(name).and_then(|key| key.span()) {
            f(&path, key_span, item);
        }
        match item {
            Item::Table(child) => visit(child, &path, f),
            Item::ArrayOfTables(array) => {
                for (index, child) in array.iter().enumerate() {
                    visit(child, &format!("{path}[{index}]"), f);
                }
            }
            _ => {}
        }
    }
}

/// Calls `f` for every (non-inline) table with its path.
fn visit_tables(table: &Table, prefix: &str, f: &mut dyn FnMut(&str, &Table)) {
    for (name, item) in table.iter() {
        let path = join(prefix, name);
        match item {
            Item::Table(child) => {
                f(&path, child);
                visit_tables(child, &path, f);
            }
            Item::ArrayOfTables(array) => {
                for (index, child) in array.iter().enumerate() {
                    let element = format!("{path}[{index}]");
                    f(&element, child);
                    visit_tables(child, &element, f);
                }
            }
            _ => {}
        }
    }
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// The span from a key to the end of its value (for a plain key/value pair).
fn whole_span(key_span: Range<usize>, item: &Item) -> Range<usize> {
    match item.span() {
        Some(value) if value.end > key_span.start => key_span.start..value.end,
        _ => key_span,
    }
}

/// Every byte range that makes up this key and its value, so it can be blanked out.
fn blank_ranges(key_span: Range<usize>, item: &Item) -> Vec<Range<usize>> {
    match item {
        Item::Table(table) => {
            let mut ranges: Vec<_> = table.span().into_iter().collect();
            collect_item_ranges(table, &mut ranges);
            ranges
        }
        Item::ArrayOfTables(array) => {
            let mut ranges = Vec::new();
            for table in array.iter() {
                ranges.extend(table.span());
                collect_item_ranges(table, &mut ranges);
            }
            ranges
        }
        _ => vec![whole_span(key_span, item)],
    }
}

fn collect_item_ranges(table: &Table, ranges: &mut Vec<Range<usize>>) {
    for (name, item) in table.iter() {
        if let Some(key_span) = table.key(name).and_then(|key| key.span()) {
            ranges.extend(blank_ranges(key_span, item));
        }
    }
}

/// Replaces a byte range with spaces, keeping newlines so every line number stays the same.
fn blank_out(text: &mut String, range: Range<usize>) {
    let end = range.end.min(text.len());
    if range.start >= end || !text.is_char_boundary(range.start) || !text.is_char_boundary(end) {
        return;
    }
    let replacement: String = text[range.start..end]
        .chars()
        .map(|c| if c == '\n' { '\n' } else { ' ' })
        .collect();
    text.replace_range(range.start..end, &replacement);
}

/// 1-based line number of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Maps key paths (as shown in errors) to the line they are written on, for semantic checks
/// that run on the typed config but must still point at the file.
#[derive(Default)]
pub(crate) struct KeyIndex {
    lines: Vec<(String, usize)>,
}

impl KeyIndex {
    fn build(text: &str) -> Self {
        Document::parse(text)
            .map(|document| Self::from_document(text, &document))
            .unwrap_or_default()
    }

    fn from_document(text: &str, document: &Document<&str>) -> Self {
        let mut lines = Vec::new();
        visit(document.as_table(), "", &mut |path, key_span, _| {
            lines.push((path.to_string(), line_of(text, key_span.start)));
        });
        visit_tables(document.as_table(), "", &mut |path, table| {
            if let Some(span) = table.span() {
                lines.push((path.to_string(), line_of(text, span.start)));
            }
        });
        Self { lines }
    }

    /// The line of `path`, or of the nearest enclosing key that is written in the file.
    pub(crate) fn line(&self, path: &str) -> Option<usize> {
        let mut candidate = path;
        loop {
            if let Some((_, line)) = self.lines.iter().find(|(key, _)| key == candidate) {
                return Some(*line);
            }
            let cut = candidate.rfind(['.', '['])?;
            candidate = &candidate[..cut];
        }
    }
}
