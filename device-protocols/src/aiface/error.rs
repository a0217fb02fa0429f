//! Why a frame could not be decoded.

/// A frame that could not be decoded. The message names the frame kind and the field, so an
/// operator reading the agent's log can match it against a packet capture.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The text frame is not JSON at all (line noise, a truncated frame).
    #[error("frame is not valid JSON ({0}); the device or a proxy sent garbage, check the link")]
    NotJson(#[source] serde_json::Error),
    /// Valid JSON but not an object.
    #[error("frame is JSON but not an object: {0}")]
    NotAnObject(String),
    /// An object with neither `cmd` nor `ret`, so it is neither a report nor a reply.
    #[error("frame has neither \"cmd\" nor \"ret\" (keys: {keys}); cannot tell what it is")]
    Untagged {
        /// The keys that were present, to help recognise the frame.
        keys: String,
    },
    /// A known frame kind with a missing or malformed field.
    #[error("malformed \"{kind}\" frame: {source}")]
    Field {
        /// The `cmd` or `ret` of the frame.
        kind: String,
        /// What serde found wrong (names the field).
        #[source]
        source: serde_json::Error,
    },
}

pub(crate) fn field_error(kind: &str) -> impl FnOnce(serde_json::Error) -> ParseError + '_ {
    move |source| ParseError::Field {
        kind: kind.to_owned(),
        source,
    }
}

impl ParseError {
    pub(crate) fn untagged(frame: &serde_json::Map<String, serde_json::Value>) -> Self {
        ParseError::Untagged {
            keys: frame.keys().cloned().collect::<Vec<_>>().join(", "),
        }
    }
}
