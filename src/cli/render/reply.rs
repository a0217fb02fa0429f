//! Human-readable output of an MQTT reply for `ctl`: `key: value` lines, lists of records as
//! aligned tables. (`--json` prints the reply as it came.) Replies that have a dedicated
//! renderer shared with a local command (a list of buffered users) use it, so an operator reads
//! the same table whether it came from the store on the box or from a running agent.

use std::fmt::Write as _;

use serde_json::{Map, Value};

use crate::mqtt::command::Reply;

/// Columns shown first when present, in this order (JSON objects arrive with sorted keys, which
/// would put `actor` before `sequence`); the rest follow alphabetically.
const LEADING_COLUMNS: [&str; 5] = ["sequence", "time", "id", "operation", "actor"];

/// Widest a table cell is printed before it is cut with `…`.
const MAX_CELL: usize = 60;

/// Prints the reply to `command`: the result on stdout, an error on stderr.
pub fn print(command: &str, reply: &Reply) {
    match (&reply.result, &reply.error) {
        (_, Some(error)) => {
            let code = serde_json::to_value(error.code)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            eprintln!("refused ({code}): {}", error.message);
        }
        (Some(result), None) if command == "buffer list" => {
            print!("{}", super::buffer::listing(result));
        }
        (Some(result), None) => print!("{}", render(result)),
        (None, None) => println!("ok"),
    }
}

/// The text for a result value.
pub fn render(value: &Value) -> String {
    let mut out = String::new();
    render_into(value, 0, &mut out);
    out
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn render_into(value: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                match item {
                    Value::Object(_) => {
                        let _ = writeln!(out, "{pad}{key}:");
                        render_into(item, indent + 2, out);
                    }
                    Value::Array(items) if items.is_empty() => {
                        let _ = writeln!(out, "{pad}{key}: (none)");
                    }
                    Value::Array(_) => {
                        let _ = writeln!(out, "{pad}{key}:");
                        render_into(item, indent + 2, out);
                    }
                    _ => {
                        let _ = writeln!(out, "{pad}{key}: {}", scalar(item));
                    }
                }
            }
        }
        Value::Array(items) if items.iter().all(Value::is_object) => {
            let rows: Vec<&Map<String, Value>> =
                items.iter().filter_map(Value::as_object).collect();
            table(&rows, &pad, out);
        }
        Value::Array(items) => {
            for item in items {
                let _ = writeln!(out, "{pad}{}", scalar(item));
            }
        }
        other => {
            let _ = writeln!(out, "{pad}{}", scalar(other));
        }
    }
}

fn cell(value: Option<&Value>) -> String {
    let text = value.map_or_else(String::new, |v| match v {
        Value::Object(_) | Value::Array(_) => v.to_string(),
        other => scalar(other),
    });
    let text = text.replace('\n', " ");
    if text.chars().count() > MAX_CELL {
        let cut: String = text.chars().take(MAX_CELL - 1).collect();
        format!("{cut}…")
    } else {
        text
    }
}

fn table(rows: &[&Map<String, Value>], pad: &str, out: &mut String) {
    let mut columns: Vec<&str> = Vec::new();
    for row in rows {
        for key in row.keys() {
            if !columns.contains(&key.as_str()) {
                columns.push(key);
            }
        }
    }
    columns.sort_by_key(|c| {
        LEADING_COLUMNS
            .iter()
            .position(|leading| leading == c)
            .unwrap_or(LEADING_COLUMNS.len())
    });
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| columns.iter().map(|c| cell(row.get(*c))).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |values: Vec<&str>| {
        let joined: Vec<String> = values
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        format!("{pad}{}", joined.join("  ").trim_end())
    };
    let header: Vec<String> = columns.iter().map(|c| c.to_uppercase()).collect();
    let _ = writeln!(out, "{}", line(header.iter().map(String::as_str).collect()));
    for row in &cells {
        let _ = writeln!(out, "{}", line(row.iter().map(String::as_str).collect()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_print_as_lines_and_record_lists_as_tables() {
        let text = render(&json!({
            "agent": "gw",
            "alarms": [],
            "entries": [
                {"sequence": 3, "actor": "ops"},
                {"sequence": 12, "actor": "agent", "detail": null}
            ]
        }));
        assert_eq!(
            text,
            "agent: gw\nalarms: (none)\nentries:\n  SEQUENCE  ACTOR  DETAIL\n  \
             3         ops\n  12        agent  -\n"
        );
    }

    #[test]
    fn long_cells_are_cut() {
        let long = "x".repeat(100);
        let text = render(&json!([{ "a": long }]));
        assert!(text.contains('…'));
        assert!(text.lines().all(|l| l.chars().count() <= MAX_CELL + 1));
    }
}
