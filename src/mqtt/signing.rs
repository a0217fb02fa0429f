//! Ed25519 signatures on commands (M4): the canonical form, signing (for `ctl`), verification
//! (for the agent) and the admin key file (for `keygen`).
//!
//! # Canonical form
//!
//! The signature covers these UTF-8 lines, each ended by `\n`, in this order:
//!
//! ```text
//! edge-agent-command/v1
//! site=<agent.site>
//! agent=<agent.id>
//! command=<command name, words separated by one space>
//! args=<canonical JSON of the args object>
//! issued_at=<Unix seconds, decimal>
//! expires_at=<Unix seconds, decimal>
//! nonce=<nonce>
//! key=<admin key name>
//! ```
//!
//! Canonical JSON is the args value with every object's keys sorted by their UTF-8 bytes, no
//! whitespace, strings escaped as JSON requires (serde_json's escaping), numbers as serde_json
//! prints them. Naming the site and agent stops a command signed for one agent from being
//! replayed against another; the nonce and the validity window stop it being replayed against
//! the same one.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::AdminKey;

/// The signature block of a request (`"auth": {...}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    /// Name of the admin key (as configured in `mqtt.admin_keys`).
    pub key: String,
    /// When the command was signed, Unix seconds.
    pub issued_at: i64,
    /// When it stops being valid, Unix seconds.
    pub expires_at: i64,
    /// A fresh random value per command (replay protection).
    pub nonce: String,
    /// Ed25519 signature of the canonical form, base64.
    pub signature: String,
}

/// What a signature covers besides the `Auth` fields.
#[derive(Clone, Copy, Debug)]
pub struct Scope<'a> {
    /// `agent.site`.
    pub site: &'a str,
    /// `agent.id`.
    pub agent: &'a str,
    /// Command name (`logs tail`).
    pub command: &'a str,
    /// The args object.
    pub args: &'a Value,
}

/// The bytes that are signed.
pub fn canonical_form(scope: Scope<'_>, auth: &Auth) -> Vec<u8> {
    format!(
        "edge-agent-command/v1\nsite={}\nagent={}\ncommand={}\nargs={}\nissued_at={}\n\
         expires_at={}\nnonce={}\nkey={}\n",
        scope.site,
        scope.agent,
        scope.command,
        canonical_json(scope.args),
        auth.issued_at,
        auth.expires_at,
        auth.nonce,
        auth.key
    )
    .into_bytes()
}

/// `value` as canonical JSON (keys sorted, no whitespace). Written out here rather than relying
/// on serde_json's map order, which a feature flag elsewhere in the build could change.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let sorted: BTreeMap<&str, &Value> = map.iter().map(|(k, v)| (k.as_str(), v)).collect();
            out.push('{');
            for (index, (key, item)) in sorted.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.to_owned()).to_string());
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// A fresh nonce: 16 random bytes, hex.
pub fn new_nonce() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether a nonce has an acceptable shape (8–64 characters of `[0-9A-Za-z_-]`).
pub fn nonce_is_well_formed(nonce: &str) -> bool {
    (8..=64).contains(&nonce.len())
        && nonce
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The configured administrators' public keys.
#[derive(Clone, Debug, Default)]
pub struct AdminKeys {
    keys: BTreeMap<String, VerifyingKey>,
}

/// A configured admin public key is unusable.
#[derive(Debug, thiserror::Error)]
#[error(
    "mqtt.admin_keys: key {name:?} is not a base64 Ed25519 public key ({reason}); paste the \
     public_key line printed by `edge-agent keygen`"
)]
pub struct BadAdminKey {
    /// The key's configured name.
    pub name: String,
    /// What was wrong.
    pub reason: String,
}

/// Why a signature was not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    /// No admin key of that name is configured.
    #[error("no admin key named {0:?} is configured on this agent")]
    UnknownKey(String),
    /// The signature is not base64 of 64 bytes.
    #[error("the signature is not base64 of a 64-byte Ed25519 signature")]
    Malformed,
    /// The signature does not match the command under this key.
    #[error(
        "the signature does not verify with key {0:?}: the command or its arguments were \
         altered, or it was signed with another key"
    )]
    Forged(String),
}

impl AdminKeys {
    /// Decodes `mqtt.admin_keys`.
    pub fn from_config(keys: &[AdminKey]) -> Result<AdminKeys, BadAdminKey> {
        let mut decoded = BTreeMap::new();
        for key in keys {
            let bad = |reason: String| BadAdminKey {
                name: key.name.clone(),
                reason,
            };
            let bytes = BASE64
                .decode(key.public_key.trim())
                .map_err(|err| bad(err.to_string()))?;
            let bytes: [u8; 32] = bytes
                .try_into()
                .map_err(|b: Vec<u8>| bad(format!("{} bytes instead of 32", b.len())))?;
            let verifying = VerifyingKey::from_bytes(&bytes).map_err(|err| bad(err.to_string()))?;
            decoded.insert(key.name.clone(), verifying);
        }
        Ok(AdminKeys { keys: decoded })
    }

    /// Checks `auth.signature` over the canonical form of `scope` and `auth`.
    pub fn verify(&self, scope: Scope<'_>, auth: &Auth) -> Result<(), SignatureError> {
        let key = self
            .keys
            .get(&auth.key)
            .ok_or_else(|| SignatureError::UnknownKey(auth.key.clone()))?;
        let bytes = BASE64
            .decode(auth.signature.trim())
            .map_err(|_| SignatureError::Malformed)?;
        let signature = Signature::from_slice(&bytes).map_err(|_| SignatureError::Malformed)?;
        key.verify_strict(&canonical_form(scope, auth), &signature)
            .map_err(|_| SignatureError::Forged(auth.key.clone()))
    }
}

/// An administrator's private key with the name the agents know it by.
pub struct AdminKeyFile {
    /// The name configured in `mqtt.admin_keys` (recorded in the audit log).
    pub name: String,
    /// The Ed25519 private key.
    pub key: SigningKey,
}

/// The on-disk form of an admin key file (TOML, mode 0600).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFileText {
    name: String,
    private_key: String,
}

/// An admin key file could not be created or read.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file could not be read or written.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What the file system said.
        source: std::io::Error,
    },
    /// The file is not an edge-agent admin key.
    #[error("key file {path} is not an edge-agent admin key: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What was wrong.
        reason: String,
    },
    /// The operating system's random generator failed.
    #[error("cannot generate a key: the system random generator failed: {0}")]
    Random(getrandom::Error),
}

impl AdminKeyFile {
    /// A new random key called `name`.
    pub fn generate(name: &str) -> Result<AdminKeyFile, KeyFileError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(KeyFileError::Random)?;
        Ok(AdminKeyFile {
            name: name.to_owned(),
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// The public key as configured in `mqtt.admin_keys` (base64).
    pub fn public_key_base64(&self) -> String {
        BASE64.encode(self.key.verifying_key().as_bytes())
    }

    /// Writes the key to a new file readable by its owner only; refuses to overwrite.
    pub fn write_new(&self, path: &Path) -> Result<(), KeyFileError> {
        let text = KeyFileText {
            name: self.name.clone(),
            private_key: BASE64.encode(self.key.to_bytes()),
        };
        let body = toml::to_string(&text).map_err(|err| KeyFileError::Invalid {
            path: path.display().to_string(),
            reason: err.to_string(),
        })?;
        let io = |source| KeyFileError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        file.write_all(
            format!("# edge-agent admin key (Ed25519 private key). Keep it secret.\n{body}")
                .as_bytes(),
        )
        .map_err(io)?;
        file.sync_all().map_err(io)
    }

    /// Reads a key file written by [`AdminKeyFile::write_new`].
    pub fn read(path: &Path) -> Result<AdminKeyFile, KeyFileError> {
        let display = path.display().to_string();
        let text = fs::read_to_string(path).map_err(|source| KeyFileError::Io {
            path: display.clone(),
            source,
        })?;
        let invalid = |reason: String| KeyFileError::Invalid {
            path: display.clone(),
            reason,
        };
        let parsed: KeyFileText = toml::from_str(&text).map_err(|err| invalid(err.to_string()))?;
        let seed: [u8; 32] = BASE64
            .decode(parsed.private_key.trim())
            .map_err(|err| invalid(err.to_string()))?
            .try_into()
            .map_err(|_| invalid("private_key is not 32 bytes".into()))?;
        Ok(AdminKeyFile {
            name: parsed.name,
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// Signs a command for `scope`, valid from `issued_at` for `validity_s` seconds.
    pub fn sign(&self, scope: Scope<'_>, issued_at: i64, validity_s: i64, nonce: String) -> Auth {
        let mut auth = Auth {
            key: self.name.clone(),
            issued_at,
            expires_at: issued_at + validity_s,
            nonce,
            signature: String::new(),
        };
        let signature = self.key.sign(&canonical_form(scope, &auth));
        auth.signature = BASE64.encode(signature.to_bytes());
        auth
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scope(args: &Value) -> Scope<'_> {
        Scope {
            site: "s",
            agent: "gw",
            command: "log-level",
            args,
        }
    }

    fn keys_for(file: &AdminKeyFile) -> AdminKeys {
        AdminKeys::from_config(&[AdminKey {
            name: file.name.clone(),
            public_key: file.public_key_base64(),
        }])
        .unwrap()
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let value = json!({"b": 1, "a": {"z": [true, null], "y": "x\"\n"}});
        assert_eq!(
            canonical_json(&value),
            r#"{"a":{"y":"x\"\n","z":[true,null]},"b":1}"#
        );
    }

    #[test]
    fn the_canonical_form_is_stable() {
        let auth = Auth {
            key: "ops".into(),
            issued_at: 10,
            expires_at: 70,
            nonce: "abcdefgh".into(),
            signature: String::new(),
        };
        let text =
            String::from_utf8(canonical_form(scope(&json!({"level": "debug"})), &auth)).unwrap();
        assert_eq!(
            text,
            "edge-agent-command/v1\nsite=s\nagent=gw\ncommand=log-level\n\
             args={\"level\":\"debug\"}\nissued_at=10\nexpires_at=70\nnonce=abcdefgh\nkey=ops\n"
        );
    }

    #[test]
    fn a_signature_verifies_and_any_change_breaks_it() {
        let file = AdminKeyFile::generate("ops").unwrap();
        let keys = keys_for(&file);
        let args = json!({"level": "debug"});
        let auth = file.sign(scope(&args), 100, 60, "nonce-0001".into());
        assert_eq!(keys.verify(scope(&args), &auth), Ok(()));

        let other_args = json!({"level": "trace"});
        assert_eq!(
            keys.verify(scope(&other_args), &auth),
            Err(SignatureError::Forged("ops".into()))
        );
        let mut other_agent = scope(&args);
        other_agent.agent = "gw2";
        assert!(keys.verify(other_agent, &auth).is_err());
        let mut later = auth.clone();
        later.expires_at += 1;
        assert!(keys.verify(scope(&args), &later).is_err());

        let stranger = AdminKeyFile::generate("ops").unwrap();
        let forged = stranger.sign(scope(&args), 100, 60, "nonce-0001".into());
        assert_eq!(
            keys.verify(scope(&args), &forged),
            Err(SignatureError::Forged("ops".into()))
        );
        let mut unknown = auth.clone();
        unknown.key = "eve".into();
        assert_eq!(
            keys.verify(scope(&args), &unknown),
            Err(SignatureError::UnknownKey("eve".into()))
        );
    }

    #[test]
    fn key_files_are_private_and_round_trip() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ops.key");
        let file = AdminKeyFile::generate("ops").unwrap();
        file.write_new(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let read = AdminKeyFile::read(&path).unwrap();
        assert_eq!(read.name, "ops");
        assert_eq!(read.public_key_base64(), file.public_key_base64());
        assert!(file.write_new(&path).is_err(), "must not overwrite a key");
    }

    #[test]
    fn nonce_shape_is_checked() {
        assert!(nonce_is_well_formed(&new_nonce().unwrap()));
        assert!(!nonce_is_well_formed("short"));
        assert!(!nonce_is_well_formed("has space in it"));
    }
}
