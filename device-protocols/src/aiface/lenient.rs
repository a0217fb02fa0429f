//! Lenient reading of device JSON.
//!
//! Real AiFace firmware and the vendor's own examples are loose about types: numbers arrive as
//! numeric strings (`"enrollid":"7"`), keys sometimes carry stray whitespace, and booleans are
//! written as `0`/`1`. Rejecting such a frame would make the agent drop a punch or abort a user
//! read over a formatting quirk, so every decoder in this module goes through these helpers.
//! What we *send* is always written strictly (see the command and server-reply types).

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

/// Trims every object key (recursively) and the values of the `cmd`/`ret` discriminators.
///
/// Done once on the whole frame before typed decoding, so the typed layer never has to think
/// about whitespace. When two keys collide after trimming, the later one wins, as it would for a
/// duplicated key in ordinary JSON parsing.
pub fn normalize(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut out = Map::with_capacity(map.len());
            for (key, inner) in map {
                let key = key.trim().to_owned();
                let inner = match (key.as_str(), inner) {
                    ("cmd" | "ret", Value::String(s)) => Value::String(s.trim().to_owned()),
                    (_, other) => normalize(other),
                };
                out.insert(key, inner);
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(normalize).collect()),
        other => other,
    }
}

/// Reads a non-negative whole number from a JSON number or a numeric string (`" 42 "`).
pub fn as_u64(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Reads a signed whole number from a JSON number or a numeric string.
pub fn as_i64(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Reads a flag written as `true`/`false`, `1`/`0`, or those as strings.
pub fn as_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_u64() {
            Some(0) => Some(false),
            Some(1) => Some(true),
            _ => None,
        },
        Value::String(s) => match s.trim() {
            "0" | "false" => Some(false),
            "1" | "true" => Some(true),
            _ => None,
        },
        _ => None,
    }
}

/// Reads text that some firmware writes as a number (a name made of digits, a PIN).
pub fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn required<'de, D, T>(d: D, read: fn(&Value) -> Option<T>, what: &str) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    let value = Value::deserialize(d)?;
    read(&value).ok_or_else(|| D::Error::custom(format!("expected {what}, got {value}")))
}

fn optional<'de, D, T>(
    d: D,
    read: fn(&Value) -> Option<T>,
    what: &str,
) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
{
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        value => read(&value)
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("expected {what}, got {value}"))),
    }
}

/// `deserialize_with` for a required `u64` that may be a numeric string.
pub fn de_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    required(d, as_u64, "a whole number")
}

/// `deserialize_with` for an optional `u64` that may be a numeric string (`null` = absent).
pub fn de_opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    optional(d, as_u64, "a whole number")
}

/// `deserialize_with` for a required flag written as bool, 0/1 or a string.
pub fn de_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    required(d, as_bool, "true/false or 0/1")
}

/// `deserialize_with` for an optional flag written as bool, 0/1 or a string.
pub fn de_opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    optional(d, as_bool, "true/false or 0/1")
}

/// `deserialize_with` for optional text that may arrive as a number.
pub fn de_opt_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    optional(d, as_text, "text")
}

/// `deserialize_with` for required text that may arrive as a number.
pub fn de_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    required(d, as_text, "text")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_trimmed_recursively_and_discriminators_trimmed() {
        let raw = json!({" cmd ": " sendlog ", "record": [{" enrollid": 1}], "name": " kept "});
        let clean = normalize(raw);
        assert_eq!(
            clean,
            json!({"cmd": "sendlog", "record": [{"enrollid": 1}], "name": " kept "})
        );
    }

    #[test]
    fn numbers_and_flags_are_read_from_strings() {
        assert_eq!(as_u64(&json!(" 42 ")), Some(42));
        assert_eq!(as_u64(&json!("-1")), None);
        assert_eq!(as_i64(&json!("-1")), Some(-1));
        assert_eq!(as_bool(&json!(1)), Some(true));
        assert_eq!(as_bool(&json!("0")), Some(false));
        assert_eq!(as_bool(&json!("true")), Some(true));
        assert_eq!(as_bool(&json!(2)), None);
        assert_eq!(as_text(&json!(1234)), Some("1234".into()));
    }
}
