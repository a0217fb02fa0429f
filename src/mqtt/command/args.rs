//! Typed access to a JSON arguments object, with errors that name the argument.
//!
//! serde's derive reports a wrong type as "invalid type: string, expected u32" without saying
//! which field; an operator typing `lines=abc` should read "argument `lines`: expected a
//! whole number …". Unknown arguments are refused too (a typo must not be silently ignored).

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::reply::CommandError;

/// The arguments of one request (or the `auth` block, with prefix `auth.`).
#[derive(Clone, Debug)]
pub struct Args {
    map: Map<String, Value>,
    prefix: &'static str,
    taken: BTreeSet<String>,
}

fn describe(value: &Value) -> String {
    let kind = match value {
        Value::Null => return "null".into(),
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    };
    // Cut by characters: the value is the sender's, and a byte cut can land inside one
    // (`String::truncate` would panic there).
    let text = value.to_string();
    let mut shown: String = text.chars().take(SHOWN_CHARS).collect();
    if shown.len() < text.len() {
        shown.push('…');
    }
    format!("{shown} ({kind})")
}

/// How much of a wrongly typed value an error message quotes.
const SHOWN_CHARS: usize = 40;

impl Args {
    /// Wraps `value`, which must be an object (absent means no arguments). `name` is how the
    /// object is called in errors (`args`, `auth`); fields are reported as `<prefix><field>`.
    pub fn new(
        value: Option<Value>,
        name: &str,
        prefix: &'static str,
    ) -> Result<Args, CommandError> {
        let map = match value {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(map)) => map,
            Some(other) => {
                return Err(CommandError::bad_argument(
                    name,
                    format!("must be a JSON object, got {}", describe(&other)),
                ))
            }
        };
        Ok(Args {
            map,
            prefix,
            taken: BTreeSet::new(),
        })
    }

    /// The arguments as received, for the signature.
    pub fn to_value(&self) -> Value {
        Value::Object(self.map.clone())
    }

    /// Whether `name` was given (and is not null).
    pub fn has(&self, name: &str) -> bool {
        self.map.get(name).is_some_and(|v| !v.is_null())
    }

    fn bad(&self, name: &str, message: String) -> CommandError {
        CommandError::bad_argument(format!("{}{name}", self.prefix), message)
    }

    fn take(&mut self, name: &str) -> Option<Value> {
        self.taken.insert(name.to_owned());
        self.map.get(name).filter(|v| !v.is_null()).cloned()
    }

    /// An optional string.
    pub fn opt_str(&mut self, name: &str) -> Result<Option<String>, CommandError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(other) => {
                Err(self.bad(name, format!("expected a string, got {}", describe(&other))))
            }
        }
    }

    /// An optional cursor: text, or a whole number (`ctl after=120` sends a number).
    pub fn opt_cursor(&mut self, name: &str) -> Result<Option<String>, CommandError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(Value::Number(number)) if number.is_u64() => Ok(Some(number.to_string())),
            Some(other) => Err(self.bad(
                name,
                format!(
                    "expected a cursor (`next` of a previous reply), got {}",
                    describe(&other)
                ),
            )),
        }
    }

    /// An optional yes/no: a JSON boolean, or the text `true`/`false` (`ctl` sends
    /// `dry_run=true` as a boolean; hand-written JSON may quote it).
    pub fn opt_bool(&mut self, name: &str) -> Result<Option<bool>, CommandError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Bool(flag)) => Ok(Some(flag)),
            Some(Value::String(text)) if text == "true" || text == "false" => {
                Ok(Some(text == "true"))
            }
            Some(other) => Err(self.bad(
                name,
                format!("expected true or false, got {}", describe(&other)),
            )),
        }
    }

    /// An optional identifier: a string, or a whole number taken as its decimal text (device
    /// user ids are usually numeric, and `ctl` sends `user=42` as a number).
    pub fn opt_id(&mut self, name: &str) -> Result<Option<String>, CommandError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(Value::Number(number)) if number.is_u64() || number.is_i64() => {
                Ok(Some(number.to_string()))
            }
            Some(other) => Err(self.bad(
                name,
                format!(
                    "expected an id (text or whole number), got {}",
                    describe(&other)
                ),
            )),
        }
    }

    /// A required string.
    pub fn req_str(&mut self, name: &str) -> Result<String, CommandError> {
        self.opt_str(name)?
            .ok_or_else(|| self.bad(name, "is required".into()))
    }

    /// An optional whole number within `min..=max`.
    pub fn opt_int(&mut self, name: &str, min: i64, max: i64) -> Result<Option<i64>, CommandError> {
        let Some(value) = self.take(name) else {
            return Ok(None);
        };
        match value.as_i64() {
            Some(number) if (min..=max).contains(&number) => Ok(Some(number)),
            _ => Err(self.bad(
                name,
                format!(
                    "expected a whole number from {min} to {max}, got {}",
                    describe(&value)
                ),
            )),
        }
    }

    /// A required whole number within `min..=max`.
    pub fn req_int(&mut self, name: &str, min: i64, max: i64) -> Result<i64, CommandError> {
        self.opt_int(name, min, max)?
            .ok_or_else(|| self.bad(name, "is required".into()))
    }

    /// Refuses arguments that no getter asked for.
    pub fn finish(self) -> Result<(), CommandError> {
        match self.map.keys().find(|key| !self.taken.contains(*key)) {
            None => Ok(()),
            Some(unknown) => {
                let mut known: Vec<&str> = self.taken.iter().map(String::as_str).collect();
                known.sort_unstable();
                let expected = if known.is_empty() {
                    "this command takes no arguments".to_owned()
                } else {
                    format!("expected one of: {}", known.join(", "))
                };
                Err(self.bad(unknown, format!("unknown argument; {expected}")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::command::reply::ErrorCode;
    use serde_json::json;

    /// A wrongly typed value longer than the quote, with a multi-byte character across the
    /// cut: the error quotes it by characters instead of panicking the command router.
    #[test]
    fn a_long_value_with_multibyte_characters_is_quoted_not_a_panic() {
        // `["a` then two-byte characters: byte 40 falls inside one.
        let value = json!([format!("a{}", "é".repeat(40))]);
        let mut args = Args::new(Some(json!({ "device": value })), "args", "").unwrap();
        let err = args.opt_str("device").unwrap_err();
        assert!(err.message.contains('…'), "{}", err.message);
        assert!(err.message.contains("a list"), "{}", err.message);
    }

    #[test]
    fn a_wrong_type_names_the_argument_and_what_was_expected() {
        let mut args = Args::new(Some(json!({"lines": "abc"})), "args", "").unwrap();
        let err = args.opt_int("lines", 1, 1000).unwrap_err();
        assert_eq!(err.code, ErrorCode::BadArguments);
        assert_eq!(err.field.as_deref(), Some("lines"));
        assert!(
            err.message.contains("whole number from 1 to 1000"),
            "{}",
            err.message
        );
        assert!(
            err.message.contains("\"abc\" (a string)"),
            "{}",
            err.message
        );
    }

    #[test]
    fn unknown_and_missing_arguments_are_refused_by_name() {
        let mut args = Args::new(Some(json!({"lvl": "debug"})), "args", "").unwrap();
        assert_eq!(args.opt_str("level").unwrap(), None);
        let err = args.finish().unwrap_err();
        assert_eq!(err.field.as_deref(), Some("lvl"));
        assert!(
            err.message.contains("expected one of: level"),
            "{}",
            err.message
        );

        let mut auth = Args::new(Some(json!({})), "auth", "auth.").unwrap();
        let err = auth.req_str("nonce").unwrap_err();
        assert_eq!(err.field.as_deref(), Some("auth.nonce"));
    }

    #[test]
    fn arguments_must_be_an_object() {
        let err = Args::new(Some(json!([1])), "args", "").unwrap_err();
        assert_eq!(err.field.as_deref(), Some("args"));
    }

    #[test]
    fn ranges_are_enforced() {
        let mut args = Args::new(Some(json!({"limit": 0})), "args", "").unwrap();
        assert!(args.opt_int("limit", 1, 10).is_err());
    }
}
