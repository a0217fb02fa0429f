//! The one table renderer of every list a person reads, whether it came from the running agent
//! (local socket or MQTT via `ctl`) or from the store of a stopped agent: columns in the order
//! each list declares (most telling first, never alphabetical), times in the local zone with
//! their offset (`2026-11-30 09:14:02 +01:00`, or UTC with `--utc`), ages (`3 min ago`) and
//! sizes (`1.2 MiB`) instead of epoch milliseconds and byte counts.

use std::borrow::Cow;
use std::fmt::Write as _;

use chrono::TimeZone as _;
use serde_json::Value;

/// How a column's values are shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// As is.
    Text,
    /// A time (Unix ms or RFC 3339) as a local date and time with the offset.
    Time,
    /// A time as how long ago it was.
    Age,
    /// A byte count with a binary unit.
    Bytes,
    /// A list shown as how many it holds.
    Count,
    /// A file path shown as its file name.
    FileName,
}

/// One column of a list: its header, where its value is in a record (`a.b` for nested
/// fields), and how it is shown.
#[derive(Clone, Debug)]
pub struct Column {
    /// Header text.
    pub header: Cow<'static, str>,
    /// Dotted path of the value in a record.
    pub path: Cow<'static, str>,
    /// How the value is shown.
    pub kind: Kind,
}

const fn col(header: &'static str, path: &'static str, kind: Kind) -> Column {
    Column {
        header: Cow::Borrowed(header),
        path: Cow::Borrowed(path),
        kind,
    }
}

/// A list command's records: the reply field that holds them and the columns, in order.
#[derive(Clone, Copy, Debug)]
pub struct ListSpec {
    /// The command words (as over MQTT).
    pub command: &'static str,
    /// The reply field holding the records.
    pub field: &'static str,
    /// The columns, in the order printed.
    pub columns: &'static [Column],
}

/// Every list command and its columns.
pub const LISTS: &[ListSpec] = &[
    ListSpec {
        command: "buffer list",
        field: "users",
        columns: &[
            col("DEVICE", "device_id", Kind::Text),
            col("USER", "user_id", Kind::Text),
            col("NAME", "name", Kind::Text),
            col("STATUS", "status", Kind::Text),
            col("PERSON", "person_id", Kind::Text),
            col("CREDENTIALS", "credentials", Kind::Text),
            col("LAST SEEN", "last_seen_at_ms", Kind::Age),
            col("DISCOVERED", "discovered_at_ms", Kind::Time),
            col("MISSING SINCE", "missing_since_ms", Kind::Time),
        ],
    },
    ListSpec {
        command: "buffer credential",
        field: "credentials",
        columns: &[
            col("SLOT", "slot", Kind::Text),
            col("KIND", "kind", Kind::Text),
            col("NAME", "name", Kind::Text),
            col("PRIV", "privilege", Kind::Text),
            col("STORED", "stored", Kind::Text),
            col("SIZE", "bytes", Kind::Bytes),
            col("DIGEST", "digest", Kind::Text),
            col("VALUE", "value", Kind::Text),
            col("DAMAGED", "damaged", Kind::Text),
        ],
    },
    ListSpec {
        command: "audit query",
        field: "entries",
        columns: &[
            col("SEQ", "sequence", Kind::Text),
            col("TIME", "time", Kind::Time),
            col("OPERATION", "operation", Kind::Text),
            col("DEVICE", "device", Kind::Text),
            col("USER", "user", Kind::Text),
            col("ACTOR", "actor", Kind::Text),
            col("DETAIL", "detail", Kind::Text),
        ],
    },
    ListSpec {
        command: "history",
        field: "reads",
        columns: &[
            col("READ AT", "read_at_ms", Kind::Time),
            col("USERS", "users", Kind::Text),
            col("DEVICE COUNT", "device_user_count", Kind::Text),
            col("ADDED", "added", Kind::Count),
            col("MISSING", "missing", Kind::Count),
            col("GENERATION", "generation", Kind::Text),
        ],
    },
    ListSpec {
        command: "conflicts list",
        field: "conflicts",
        columns: &[
            col("DEVICE", "device_id", Kind::Text),
            col("USER", "device.user_id", Kind::Text),
            col("NAME ON DEVICE", "device.name", Kind::Text),
            col("PRIV", "device.privilege", Kind::Text),
            col("CARD", "device.card", Kind::Text),
            col("PASSWORD", "device.has_password", Kind::Text),
            col("PERSON", "upstream.person_id", Kind::Text),
            col("NAME UPSTREAM", "upstream.name", Kind::Text),
            col("PRIV UPSTREAM", "upstream.privilege", Kind::Text),
            col("CARD UPSTREAM", "upstream.card", Kind::Text),
            col("DETECTED", "detected_at_ms", Kind::Age),
        ],
    },
    ListSpec {
        command: "backups list",
        field: "backups",
        columns: &[
            col("CREATED", "header.created_at", Kind::Time),
            col("DEVICE", "header.device_id", Kind::Text),
            col("USERS", "trailer.users", Kind::Text),
            col("CREDENTIALS", "trailer.credentials", Kind::Text),
            col("SIZE", "size_bytes", Kind::Bytes),
            col("FILE", "path", Kind::FileName),
        ],
    },
    ListSpec {
        command: "dead-letters list",
        field: "dead_letters",
        columns: &[
            col("SEQ", "sequence", Kind::Text),
            col("DEAD SINCE", "dead_letter.dead_at_ms", Kind::Time),
            col("HTTP", "dead_letter.http_status", Kind::Text),
            col("REASON", "dead_letter.reason", Kind::Text),
        ],
    },
];

/// The list spec of `command`, if it is a list.
pub fn spec(command: &str) -> Option<&'static ListSpec> {
    LISTS.iter().find(|spec| spec.command == command)
}

/// The moment and zone times are shown against.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// Now, Unix ms (ages are counted from it).
    pub now_ms: i64,
    /// Show times in UTC instead of the local zone.
    pub utc: bool,
}

impl Clock {
    /// Now, in the local zone or UTC.
    pub fn now(utc: bool) -> Clock {
        Clock {
            now_ms: chrono::Utc::now().timestamp_millis(),
            utc,
        }
    }
}

/// Widest a cell is printed before it is cut with `…`.
const MAX_CELL: usize = 60;

/// A time value (Unix ms, or an RFC 3339 text) as Unix ms.
fn millis(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(text) => chrono::DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.timestamp_millis()),
        _ => None,
    }
}

/// `2026-11-30 09:14:02 +01:00` in the local zone (or `+00:00` with `utc`).
pub fn time(unix_ms: i64, clock: &Clock) -> String {
    const FORMAT: &str = "%Y-%m-%d %H:%M:%S %:z";
    if clock.utc {
        chrono::Utc
            .timestamp_millis_opt(unix_ms)
            .single()
            .map_or_else(|| unix_ms.to_string(), |t| t.format(FORMAT).to_string())
    } else {
        chrono::Local
            .timestamp_millis_opt(unix_ms)
            .single()
            .map_or_else(|| unix_ms.to_string(), |t| t.format(FORMAT).to_string())
    }
}

/// How long before `clock.now_ms` the time `unix_ms` was: `40 s ago`, `3 min ago`, `5 h ago`,
/// `2 d ago`.
pub fn age(unix_ms: i64, clock: &Clock) -> String {
    let seconds = (clock.now_ms - unix_ms) / 1000;
    if seconds < 0 {
        return format!("in {}", duration(-seconds));
    }
    format!("{} ago", duration(seconds))
}

/// A number of seconds in the largest unit that keeps it readable.
pub fn duration(seconds: i64) -> String {
    match seconds {
        s if s < 120 => format!("{s} s"),
        s if s < 2 * 3600 => format!("{} min", s / 60),
        s if s < 2 * 86_400 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86_400),
    }
}

/// A byte count with a binary unit: `512 B`, `1.2 MiB`.
pub fn bytes(count: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if count < 1024 {
        return format!("{count} B");
    }
    let mut value = count as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

fn lookup<'a>(record: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(record, |value, key| &value[key])
}

fn plain(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(text) => text.clone(),
        Value::Array(items) => items.iter().map(plain).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// One value as `kind` shows it.
pub fn cell(value: &Value, kind: Kind, clock: &Clock) -> String {
    let text = match (kind, value) {
        (_, Value::Null) => "-".into(),
        (Kind::Time, v) => millis(v).map_or_else(|| plain(v), |ms| time(ms, clock)),
        (Kind::Age, v) => millis(v).map_or_else(|| plain(v), |ms| age(ms, clock)),
        (Kind::Bytes, v) => v.as_u64().map_or_else(|| plain(v), bytes),
        (Kind::Count, Value::Array(items)) => items.len().to_string(),
        (Kind::FileName, Value::String(path)) => {
            path.rsplit('/').next().unwrap_or_default().to_string()
        }
        (_, v) => plain(v),
    };
    let text = text.replace('\n', " ");
    if text.chars().count() > MAX_CELL {
        let cut: String = text.chars().take(MAX_CELL - 1).collect();
        format!("{cut}…")
    } else {
        text
    }
}

/// `rows` as an aligned table with `columns` in their order, each line prefixed by `pad`.
pub fn table(rows: &[Value], columns: &[Column], clock: &Clock, pad: &str) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            columns
                .iter()
                .map(|c| cell(lookup(row, &c.path), c.kind, clock))
                .collect()
        })
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([c.header.len()])
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
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}",
        line(columns.iter().map(|c| c.header.as_ref()).collect())
    );
    for row in &cells {
        let _ = writeln!(out, "{}", line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// The result of list command `spec` as a person reads it: the table, what else the reply
/// says (counts per status for the buffer), and where the next page starts.
pub fn list(spec: &ListSpec, result: &Value, clock: &Clock) -> String {
    let rows = result[spec.field].as_array().cloned().unwrap_or_default();
    let mut out = if rows.is_empty() {
        "(none)\n".to_string()
    } else {
        table(&rows, spec.columns, clock, "")
    };
    if spec.command == "buffer list" {
        let stats = &result["stats"];
        let count = |name: &str| stats[name].as_u64().unwrap_or_default();
        let _ = writeln!(
            out,
            "{} users: {} unmapped, {} pending, {} mapped, {} conflict, {} missing",
            count("total"),
            count("unmapped"),
            count("pending"),
            count("mapped"),
            count("conflict"),
            count("missing")
        );
    }
    if let Some(next) = result["next"].as_str() {
        let _ = writeln!(out, "(more: --after {next})");
    }
    out
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
    fn units_read_as_people_say_them() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1_258_291), "1.2 MiB");
        assert_eq!(age(CLOCK.now_ms - 180_000, &CLOCK), "3 min ago");
        assert_eq!(age(CLOCK.now_ms - 40_000, &CLOCK), "40 s ago");
        assert_eq!(time(0, &CLOCK), "1970-01-01 00:00:00 +00:00");
    }

    #[test]
    fn columns_come_in_declared_order_and_times_are_not_milliseconds() {
        let spec = spec("buffer list").unwrap();
        let text = list(
            spec,
            &json!({
                "users": [{"device_id": "door", "user_id": "7", "name": "Ana",
                           "status": "unmapped", "person_id": null, "credentials": "card",
                           "discovered_at_ms": 0, "last_seen_at_ms": CLOCK.now_ms - 60_000,
                           "missing_since_ms": null}],
                "stats": {"total": 1, "unmapped": 1},
                "next": "door/7"
            }),
            &CLOCK,
        );
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("DEVICE  USER  NAME  STATUS"), "{text}");
        assert!(lines[1].contains("60 s ago"), "{text}");
        assert!(lines[1].contains("1970-01-01 00:00:00 +00:00"), "{text}");
        assert!(text.contains("(more: --after door/7)"), "{text}");
    }
}
