//! Human-readable output of a reply for `ctl` and the on-box commands: the result of a list
//! command is the shared table of [`super::table`] (declared columns, local times, units), so
//! an operator reads the same table whether it came from the store on the box, the local socket
//! or MQTT; any other result is `key: value` lines with record lists as tables, times
//! (`…_ms`, `…_at`) shown as local times and sizes (`…_bytes`) with units. (`--json` prints the
//! reply as it came.)

use std::fmt::Write as _;

use serde_json::{Map, Value};

use super::table::{self, Clock, Kind};
use crate::mqtt::command::Reply;

/// Columns shown first when present, in this order (JSON objects arrive with sorted keys, which
/// would put `actor` before `sequence`); the rest follow alphabetically.
const LEADING_COLUMNS: [&str; 5] = ["sequence", "time", "id", "operation", "actor"];

/// Prints the reply to `command`: the result on stdout, an error on stderr.
pub fn print(command: &str, reply: &Reply, clock: &Clock) {
    match (&reply.result, &reply.error) {
        (_, Some(error)) => {
            let code = serde_json::to_value(error.code)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            eprintln!("refused ({code}): {}", error.message);
        }
        (Some(result), None) => print!("{}", result_text(command, result, clock)),
        (None, None) => println!("ok"),
    }
}

/// The text for the result of `command`: its list table, or the generic rendering.
pub fn result_text(command: &str, result: &Value, clock: &Clock) -> String {
    match table::spec(command) {
        Some(spec) => table::list(spec, result, clock),
        None => render(result, clock),
    }
}

/// The text for a result value.
pub fn render(value: &Value, clock: &Clock) -> String {
    let mut out = String::new();
    render_into(value, 0, clock, &mut out);
    out
}

/// How a field is shown, judged by its name: times and sizes get units.
fn kind_of(key: &str) -> Kind {
    if key.ends_with("_ms") || key.ends_with("_at") || key == "time" {
        Kind::Time
    } else if key.ends_with("_bytes") || key == "bytes" {
        Kind::Bytes
    } else {
        Kind::Text
    }
}

fn scalar(key: &str, value: &Value, clock: &Clock) -> String {
    match (kind_of(key), value) {
        // Durations in milliseconds are not times.
        (Kind::Time, Value::Number(n)) if n.as_i64().is_some_and(|ms| ms < 1_000_000_000_000) => {
            value.to_string()
        }
        (Kind::Time | Kind::Bytes, _) => table::cell(value, kind_of(key), clock),
        (_, Value::String(text)) => text.clone(),
        (_, Value::Null) => "-".into(),
        (_, other) => other.to_string(),
    }
}

fn render_into(value: &Value, indent: usize, clock: &Clock, out: &mut String) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                match item {
                    Value::Object(_) => {
                        let _ = writeln!(out, "{pad}{key}:");
                        render_into(item, indent + 2, clock, out);
                    }
                    Value::Array(items) if items.is_empty() => {
                        let _ = writeln!(out, "{pad}{key}: (none)");
                    }
                    Value::Array(_) => {
                        let _ = writeln!(out, "{pad}{key}:");
                        render_into(item, indent + 2, clock, out);
                    }
                    _ => {
                        let _ = writeln!(out, "{pad}{key}: {}", scalar(key, item, clock));
                    }
                }
            }
        }
        Value::Array(items) if items.iter().all(Value::is_object) => {
            let rows: Vec<&Map<String, Value>> =
                items.iter().filter_map(Value::as_object).collect();
            generic_table(&rows, &pad, clock, out);
        }
        Value::Array(items) => {
            for item in items {
                let _ = writeln!(out, "{pad}{}", scalar("", item, clock));
            }
        }
        other => {
            let _ = writeln!(out, "{pad}{}", scalar("", other, clock));
        }
    }
}

/// Records with no declared columns: the leading columns first, then the rest as they come,
/// each shown by its name's kind.
fn generic_table(rows: &[&Map<String, Value>], pad: &str, clock: &Clock, out: &mut String) {
    let mut names: Vec<&str> = Vec::new();
    for row in rows {
        for key in row.keys() {
            if !names.contains(&key.as_str()) {
                names.push(key);
            }
        }
    }
    names.sort_by_key(|c| {
        LEADING_COLUMNS
            .iter()
            .position(|leading| leading == c)
            .unwrap_or(LEADING_COLUMNS.len())
    });
    let columns: Vec<table::Column> = names
        .iter()
        .map(|name| table::Column {
            header: name.to_uppercase().into(),
            path: name.to_string().into(),
            kind: kind_of(name),
        })
        .collect();
    let rows: Vec<Value> = rows
        .iter()
        .map(|row| Value::Object((*row).clone()))
        .collect();
    out.push_str(&table::table(&rows, &columns, clock, pad));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CLOCK: Clock = Clock {
        now_ms: 1_800_000_000_000,
        utc: true,
    };

    #[test]
    fn objects_print_as_lines_and_record_lists_as_tables() {
        let text = render(
            &json!({
                "agent": "gw",
                "alarms": [],
                "entries": [
                    {"sequence": 3, "actor": "ops"},
                    {"sequence": 12, "actor": "agent", "detail": null}
                ]
            }),
            &CLOCK,
        );
        assert_eq!(
            text,
            "agent: gw\nalarms: (none)\nentries:\n  SEQUENCE  ACTOR  DETAIL\n  \
             3         ops    -\n  12        agent  -\n"
        );
    }

    #[test]
    fn long_cells_are_cut() {
        let long = "x".repeat(100);
        let text = render(&json!([{ "a": long }]), &CLOCK);
        assert!(text.contains('…'));
        assert!(text.lines().all(|l| l.chars().count() <= 61));
    }

    #[test]
    fn epoch_milliseconds_become_local_times() {
        let text = render(
            &json!({"last_registered_at_ms": 1_795_985_868_398_i64, "store_bytes": 2048}),
            &CLOCK,
        );
        assert!(!text.contains("1795985868398"), "{text}");
        assert!(text.contains("2026-"), "{text}");
        assert!(text.contains("2.0 KiB"), "{text}");
    }
}
