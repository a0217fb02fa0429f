//! Decoding and encoding a whole device→server text frame.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use super::error::{field_error, ParseError};
use super::lenient;
use super::reply::DeviceReply;
use super::report::DeviceReport;

/// Any frame a device sends: a report it starts (`cmd`) or a reply to a command (`ret`).
#[derive(Debug, Clone, PartialEq)]
pub enum DeviceMessage {
    /// `reg`, `sendlog`, `senduser`, … (the device expects a [`super::ServerReply`]).
    Report(DeviceReport),
    /// An answer to the command in flight.
    Reply(DeviceReply),
}

/// Decodes one text frame from a device, leniently (see [`super::lenient`]).
pub fn parse_device_message(text: &str) -> Result<DeviceMessage, ParseError> {
    let mut fields = parse_object(text)?;
    if let Some(cmd) = fields.remove("cmd") {
        let cmd = lenient::as_text(&cmd).unwrap_or_default();
        return decode_report(cmd, fields).map(DeviceMessage::Report);
    }
    if let Some(ret) = fields.remove("ret") {
        let ret = lenient::as_text(&ret).unwrap_or_default();
        return DeviceReply::from_object(ret, fields).map(DeviceMessage::Reply);
    }
    Err(ParseError::untagged(&fields))
}

/// Parses a frame into a normalised JSON object (keys and discriminators trimmed).
pub(crate) fn parse_object(text: &str) -> Result<Map<String, Value>, ParseError> {
    match lenient::normalize(serde_json::from_str(text).map_err(ParseError::NotJson)?) {
        Value::Object(map) => Ok(map),
        other => Err(ParseError::NotAnObject(truncate(&other.to_string()))),
    }
}

fn truncate(text: &str) -> String {
    const LIMIT: usize = 80;
    match text.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

fn decode_report(cmd: String, fields: Map<String, Value>) -> Result<DeviceReport, ParseError> {
    fn typed<T: DeserializeOwned>(cmd: &str, fields: Map<String, Value>) -> Result<T, ParseError> {
        serde_json::from_value(Value::Object(fields)).map_err(field_error(cmd))
    }
    Ok(match cmd.as_str() {
        "reg" => DeviceReport::Reg(typed(&cmd, fields)?),
        "sendlog" => DeviceReport::SendLog(typed(&cmd, fields)?),
        "senduser" => DeviceReport::SendUser(typed(&cmd, fields)?),
        "sendqrcode" => DeviceReport::SendQrCode(typed(&cmd, fields)?),
        "sendpin" => DeviceReport::SendPin(typed(&cmd, fields)?),
        _ => DeviceReport::Other { cmd, fields },
    })
}

impl DeviceMessage {
    /// The frame as text, as a device would send it (used by the emulator and in tests).
    pub fn to_json(&self) -> String {
        self.to_value().to_string()
    }

    /// The frame as a JSON object.
    pub fn to_value(&self) -> Value {
        match self {
            DeviceMessage::Reply(reply) => reply.to_value(),
            DeviceMessage::Report(report) => {
                let mut object = match report {
                    DeviceReport::Reg(r) => to_object(r),
                    DeviceReport::SendLog(r) => to_object(r),
                    DeviceReport::SendUser(r) => to_object(r),
                    DeviceReport::SendQrCode(r) => to_object(r),
                    DeviceReport::SendPin(r) => to_object(r),
                    DeviceReport::Other { fields, .. } => fields.clone(),
                };
                object.insert("cmd".into(), Value::from(report.cmd()));
                Value::Object(object)
            }
        }
    }
}

fn to_object(value: &impl Serialize) -> Map<String, Value> {
    match serde_json::to_value(value).expect("device reports contain only JSON-safe values") {
        Value::Object(map) => map,
        _ => unreachable!("every device report serialises as an object"),
    }
}
