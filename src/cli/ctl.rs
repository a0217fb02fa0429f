//! `edge-agent ctl` and `edge-agent keygen`, the operator's tools: `keygen` creates an admin key
//! pair; `ctl` signs a command, sends it to an agent over MQTT (through [`crate::ctl::Client`]),
//! waits for the reply and prints it.
//!
//! ```text
//! edge-agent keygen --name ops --out ops.key
//! edge-agent ctl --broker mqtts://broker:8883 --site store-12 --agent gw-1 --key ops.key \
//!     logs tail lines=20 filter=ERROR
//! ```
//!
//! Arguments after the command words are `name=value` (a whole number or `true`/`false`
//! becomes a number or boolean, anything else text) or `name:=json` for a raw JSON value.
//! Exit status: [`ExitStatus::Success`] when the agent did it, [`ExitStatus::Failed`] when it
//! ran it and failed, [`ExitStatus::Refused`] when it refused to run it,
//! [`ExitStatus::NoReply`] when no reply came, [`ExitStatus::Usage`] when the command line
//! cannot become a request.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value};

use super::render;
use super::ExitStatus;
use crate::config::HumanDuration;
use crate::ctl::{fresh_client_id, Client, CtlError};
use crate::mqtt::broker::{BrokerSettings, TlsFiles};
use crate::mqtt::command::{ErrorCode, Reply};
use crate::mqtt::signing::AdminKeyFile;

/// `edge-agent ctl` options.
#[derive(Debug, clap::Args)]
pub struct CtlArgs {
    /// The broker: mqtts://HOST:PORT (TLS; the port defaults to 8883) or mqtt://HOST:PORT
    /// (plain; 1883; loopback or a trusted LAN only).
    #[arg(long)]
    pub broker: String,
    /// CA certificate (PEM) to verify the broker with, instead of the system trust store.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS; needs --cert-key.
    #[arg(long, requires = "cert_key")]
    pub cert: Option<PathBuf>,
    /// Private key (PEM) of --cert.
    #[arg(long, requires = "cert")]
    pub cert_key: Option<PathBuf>,
    /// MQTT user name.
    #[arg(long)]
    pub username: Option<String>,
    /// File holding the MQTT password.
    #[arg(long, requires = "username")]
    pub password_file: Option<PathBuf>,
    /// The agent's site (`agent.site`).
    #[arg(long, default_value = "default")]
    pub site: String,
    /// The agent's id (`agent.id`).
    #[arg(long)]
    pub agent: String,
    /// Admin key file from `edge-agent keygen`; without it the command is sent unsigned
    /// (accepted only for read-only commands on agents with allow_unsigned_reads).
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// How long to wait for the connection and the reply.
    #[arg(long, default_value = "10s", value_parser = HumanDuration::parse)]
    pub timeout: HumanDuration,
    /// How long the signed command stays valid (at most 1h).
    #[arg(long, default_value = "60s", value_parser = HumanDuration::parse)]
    pub validity: HumanDuration,
    /// Print the reply as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Show times in UTC instead of the local time zone.
    #[arg(long)]
    pub utc: bool,
    /// The command and its arguments, e.g. `logs tail lines=20 filter=ERROR`.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub words: Vec<String>,
}

/// A command line that cannot become a request.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UsageError {
    /// No command words before the arguments.
    #[error("no command given; e.g. `status` or `logs tail lines=20`")]
    NoCommand,
    /// A command word after an argument.
    #[error("{0:?}: command words must come before the name=value arguments")]
    WordAfterArgument(String),
    /// `name:=json` with invalid JSON.
    #[error("argument {name}: {reason}")]
    BadJson {
        /// The argument.
        name: String,
        /// The JSON error.
        reason: String,
    },
    /// The broker URL is not mqtt:// or mqtts://.
    #[error("--broker {0:?}: expected mqtts://host[:port] or mqtt://host[:port]")]
    BadBroker(String),
}

/// Splits `logs tail lines=20 filter=x` into the command name and its JSON arguments.
pub fn parse_words(words: &[String]) -> Result<(String, Value), UsageError> {
    let mut command = Vec::new();
    let mut args = Map::new();
    for word in words {
        if let Some((name, json)) = word.split_once(":=") {
            let value = serde_json::from_str(json).map_err(|err| UsageError::BadJson {
                name: name.to_owned(),
                reason: err.to_string(),
            })?;
            args.insert(name.to_owned(), value);
        } else if let Some((name, text)) = word.split_once('=') {
            let value = match text {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => text
                    .parse::<i64>()
                    .map_or_else(|_| Value::String(text.to_owned()), Value::from),
            };
            args.insert(name.to_owned(), value);
        } else if args.is_empty() {
            command.push(word.as_str());
        } else {
            return Err(UsageError::WordAfterArgument(word.clone()));
        }
    }
    if command.is_empty() {
        return Err(UsageError::NoCommand);
    }
    Ok((command.join(" "), Value::Object(args)))
}

/// Host, port and whether TLS is on, from `mqtt://` / `mqtts://` URLs.
pub fn parse_broker(url: &str) -> Result<(String, u16, bool), UsageError> {
    let bad = || UsageError::BadBroker(url.to_owned());
    let (tls, rest) = if let Some(rest) = url.strip_prefix("mqtts://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("mqtt://") {
        (false, rest)
    } else {
        return Err(bad());
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => (host, port.parse::<u16>().map_err(|_| bad())?),
        None => (rest, if tls { 8883 } else { 1883 }),
    };
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.to_owned(), port, tls))
}

impl CtlArgs {
    fn settings(&self) -> anyhow::Result<BrokerSettings> {
        let (host, port, tls) = parse_broker(&self.broker)?;
        let credentials = match (&self.username, &self.password_file) {
            (Some(user), Some(file)) => Some((user.clone(), crate::config::read_secret(file)?)),
            (Some(user), None) => Some((user.clone(), String::new())),
            _ => None,
        };
        Ok(BrokerSettings {
            host,
            port,
            tls: tls.then(|| TlsFiles {
                ca_file: self.ca_file.clone(),
                client_cert: self.cert.clone().zip(self.cert_key.clone()),
            }),
            credentials,
            client_id: fresh_client_id()?,
            keep_alive: Duration::from_secs(30),
        })
    }
}

/// Runs `edge-agent ctl`: prints the reply and says how it ended.
pub fn run(args: &CtlArgs) -> ExitStatus {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitStatus::Failed;
        }
    };
    match runtime.block_on(call(args)) {
        Ok((command, reply)) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&reply).unwrap_or_default()
                );
            } else {
                render::reply::print(&command, &reply, &render::table::Clock::now(args.utc));
            }
            reply_status(&reply)
        }
        Err(err) => {
            eprintln!("error: {err:#}");
            exit_status(&err)
        }
    }
}

/// How the agent answered: done, ran and failed, or refused without running it.
fn reply_status(reply: &Reply) -> ExitStatus {
    match &reply.error {
        _ if reply.ok => ExitStatus::Success,
        Some(error) if error.code != ErrorCode::Failed => ExitStatus::Refused,
        _ => ExitStatus::Failed,
    }
}

/// What a failed invocation means: a command line that cannot become a request, no reply, or
/// another failure (an unreadable key or password file).
fn exit_status(err: &anyhow::Error) -> ExitStatus {
    if err.downcast_ref::<UsageError>().is_some() {
        return ExitStatus::Usage;
    }
    match err.downcast_ref::<CtlError>() {
        Some(CtlError::Topic(_)) => ExitStatus::Usage,
        Some(CtlError::Connection(_) | CtlError::Timeout(_) | CtlError::BadReply(_)) => {
            ExitStatus::NoReply
        }
        _ => ExitStatus::Failed,
    }
}

/// Sends the command the words name and returns that name with the reply.
async fn call(args: &CtlArgs) -> anyhow::Result<(String, Reply)> {
    let (command, command_args) = parse_words(&args.words)?;
    let key = args.key.as_deref().map(AdminKeyFile::read).transpose()?;
    let settings = args.settings()?;
    let mut client =
        Client::connect(&settings, &args.site, &args.agent, args.timeout.get()).await?;
    let reply = client
        .call(&command, &command_args, key.as_ref(), args.validity.get())
        .await?;
    client.disconnect().await;
    Ok((command, reply))
}

/// `edge-agent keygen` options.
#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// The key's name, as agents record it in their audit log.
    #[arg(long)]
    pub name: String,
    /// Where to write the private key (never overwritten).
    #[arg(long, short)]
    pub out: PathBuf,
}

/// Runs `edge-agent keygen`: writes the private key file (mode 0600) and prints the config
/// lines that authorise it on an agent.
pub fn keygen(args: &KeygenArgs) -> ExitStatus {
    let (name, out) = (&args.name, &args.out);
    let generated = AdminKeyFile::generate(name).and_then(|key| {
        key.write_new(out)?;
        Ok(key)
    });
    match generated {
        Ok(key) => {
            println!(
                "# Wrote the private key to {} (mode 0600); keep it secret.\n\
                 # Add this to the [mqtt] section of every agent this key may manage:\n\
                 [[mqtt.admin_keys]]\nname = {:?}\npublic_key = {:?}",
                out.display(),
                key.name,
                key.public_key_base64()
            );
            ExitStatus::Success
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitStatus::Failed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn words_become_a_command_and_typed_arguments() {
        let (command, args) = parse_words(&words(
            "logs tail lines=20 filter=ERROR verbose=true ids:=[1,2]",
        ))
        .unwrap();
        assert_eq!(command, "logs tail");
        assert_eq!(
            args,
            json!({"lines": 20, "filter": "ERROR", "verbose": true, "ids": [1, 2]})
        );
        assert_eq!(
            parse_words(&words("status x=1 more")),
            Err(UsageError::WordAfterArgument("more".into()))
        );
        assert_eq!(parse_words(&words("a=1")), Err(UsageError::NoCommand));
    }

    #[test]
    fn broker_urls_pick_tls_and_default_ports() {
        assert_eq!(
            parse_broker("mqtts://b.example").unwrap(),
            ("b.example".into(), 8883, true)
        );
        assert_eq!(
            parse_broker("mqtt://127.0.0.1:1999").unwrap(),
            ("127.0.0.1".into(), 1999, false)
        );
        assert!(parse_broker("tcp://x").is_err());
        assert!(parse_broker("mqtt://:1").is_err());
    }

    #[test]
    fn a_refusal_and_a_failure_exit_differently() {
        let reply = |code: Option<ErrorCode>| Reply {
            ok: code.is_none(),
            result: None,
            error: code.map(|code| crate::mqtt::command::CommandError {
                code,
                field: None,
                message: "x".into(),
            }),
        };
        assert_eq!(reply_status(&reply(None)), ExitStatus::Success);
        assert_eq!(
            reply_status(&reply(Some(ErrorCode::Failed))),
            ExitStatus::Failed
        );
        for refusal in [
            ErrorCode::Unauthorised,
            ErrorCode::BadArguments,
            ErrorCode::Busy,
        ] {
            assert_eq!(reply_status(&reply(Some(refusal))), ExitStatus::Refused);
        }
    }
}
