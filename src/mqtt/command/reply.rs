//! The reply every request gets: a result, or an error with a machine-readable code, the
//! argument at fault when there is one, and a sentence for the operator.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Why a request was not carried out. The codes are part of the wire contract (docs/mqtt.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The payload is not a JSON object of the request shape.
    MalformedRequest,
    /// No such command.
    UnknownCommand,
    /// An argument (or a field of `auth`) is missing, unknown or of the wrong type.
    BadArguments,
    /// No valid signature from a configured admin key.
    Unauthorised,
    /// The signed validity window is over.
    Expired,
    /// The command was signed for a time in the future (clock skew beyond tolerance).
    NotYetValid,
    /// The nonce was used before.
    Replayed,
    /// Too many requests are waiting; try again shortly.
    Busy,
    /// The command exists but its service is not part of this build.
    NotAvailable,
    /// The command ran and failed.
    Failed,
    /// The reply would exceed the broker's packet limit.
    TooLarge,
    /// The correlation data was already used for a different request.
    CorrelationReused,
}

/// An error reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct CommandError {
    /// What kind of error.
    pub code: ErrorCode,
    /// The argument at fault (`lines`, `auth.nonce`), when one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What was wrong and what to do, for the operator.
    pub message: String,
}

impl CommandError {
    /// An error of `code` with `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> CommandError {
        CommandError {
            code,
            field: None,
            message: message.into(),
        }
    }

    /// A bad argument, naming it.
    pub fn bad_argument(field: impl Into<String>, message: impl Into<String>) -> CommandError {
        let field = field.into();
        CommandError {
            code: ErrorCode::BadArguments,
            message: format!("argument `{field}`: {}", message.into()),
            field: Some(field),
        }
    }

    /// The command ran and failed.
    pub fn failed(message: impl Into<String>) -> CommandError {
        CommandError::new(ErrorCode::Failed, message)
    }
}

/// The reply payload: `{"ok": true, "result": ...}` or `{"ok": false, "error": {...}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// Whether the command succeeded.
    pub ok: bool,
    /// The command's result (success only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// What went wrong (failure only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<CommandError>,
}

impl Reply {
    /// The reply for a command outcome.
    pub fn from_outcome(outcome: Result<Value, CommandError>) -> Reply {
        match outcome {
            Ok(result) => Reply {
                ok: true,
                result: Some(result),
                error: None,
            },
            Err(error) => Reply {
                ok: false,
                result: None,
                error: Some(error),
            },
        }
    }

    /// The JSON bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        // A Reply holds only JSON values and strings, which always serialise.
        serde_json::to_vec(self).unwrap_or_default()
    }
}
