//! How an on-box command reaches the agent's data: through the running agent's local control
//! socket when it answers (the same command table as MQTT), or by opening the store itself when
//! the agent is stopped. Which one is decided by the socket: absent or refused means no agent
//! serves it, and then opening the store either works (the agent is stopped) or finds the store
//! locked, which `crate::sync::tools::open_store` explains (an agent runs without a socket).

use serde_json::{json, Map, Value};

use crate::config::Config;
use crate::ctl::{LocalClient, LocalError};
use crate::mqtt::command::paging::PageRequest;
use crate::mqtt::command::ErrorCode;

/// The running agent refused a command (arguments, permissions, unknown command): the on-box
/// commands then exit with [`super::ExitStatus::Refused`], as `ctl` does.
#[derive(Debug, thiserror::Error)]
#[error("the agent refused: {0}")]
pub(super) struct Refused(pub(super) String);

/// Where a command is answered.
pub(super) enum Agent {
    /// The running agent, over its socket.
    Running(LocalClient),
    /// Nobody serves the socket: open the store directly.
    Stopped,
}

/// Connects to the running agent's socket, or says it is not served.
pub(super) fn reach(config: &Config) -> anyhow::Result<Agent> {
    match LocalClient::connect_to_store(&config.control_socket(), &config.store_dir()) {
        Ok(client) => Ok(Agent::Running(client)),
        Err(LocalError::NotListening { .. } | LocalError::OtherAgent { .. }) => Ok(Agent::Stopped),
        Err(err) => Err(err.into()),
    }
}

/// Runs `command` on the running agent and returns its result; a refusal is [`Refused`], a
/// failure an error with the agent's message.
pub(super) fn call(client: &mut LocalClient, command: &str, args: Value) -> anyhow::Result<Value> {
    let args = match args {
        Value::Object(map) => {
            Value::Object(map.into_iter().filter(|(_, v)| !v.is_null()).collect())
        }
        other => other,
    };
    let reply = client.call(command, &args)?;
    match (reply.ok, reply.result, reply.error) {
        (true, result, _) => Ok(result.unwrap_or(Value::Null)),
        (false, _, Some(error)) if error.code != ErrorCode::Failed => {
            Err(Refused(error.message).into())
        }
        (false, _, Some(error)) => Err(anyhow::anyhow!("{}", error.message)),
        (false, _, None) => Err(anyhow::anyhow!(
            "the agent answered neither a result nor an error"
        )),
    }
}

/// Pages of a list: one page when `limit` is given (from `after`), else every page, following
/// `next` until the last, merged into one result of the same shape (`field` holds the records,
/// `next` is the cursor after the last one printed).
pub(super) fn pages(
    field: &str,
    limit: Option<usize>,
    after: Option<String>,
    mut fetch: impl FnMut(&PageRequest) -> anyhow::Result<Value>,
) -> anyhow::Result<Value> {
    let mut request = PageRequest {
        limit: limit.unwrap_or(crate::mqtt::command::lists::MAX_PAGE),
        after,
    };
    let mut records = Vec::new();
    loop {
        let mut page = fetch(&request)?;
        records.extend(page[field].as_array().cloned().unwrap_or_default());
        let next = page["next"].as_str().map(str::to_owned);
        if limit.is_some() || next.is_none() {
            if let Value::Object(map) = &mut page {
                map.insert(field.to_owned(), Value::Array(records));
            }
            return Ok(page);
        }
        request.after = next;
    }
}

/// A request's arguments from the command line's options (`None` ones are left out).
pub(super) fn args(pairs: &[(&str, Value)]) -> Value {
    let map: Map<String, Value> = pairs
        .iter()
        .filter(|(_, value)| !value.is_null())
        .map(|(name, value)| ((*name).to_owned(), value.clone()))
        .collect();
    Value::Object(map)
}

/// The page arguments of a request.
pub(super) fn page_args(request: &PageRequest) -> [(&'static str, Value); 2] {
    [
        ("limit", json!(request.limit)),
        ("after", json!(request.after)),
    ]
}
