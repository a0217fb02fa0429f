//! Builders for the key conventions described in the [`crate::store`] module documentation.
//!
//! Keys are built here, not by hand at call sites, so that byte order always equals the
//! order the code expects (numbers big-endian, composite parts `\0`-separated) and a prefix
//! scan for `dev1` can never return `dev10`'s entries.

use thiserror::Error;

/// Separates the parts of a composite key. It sorts before every printable byte, so all keys
/// of one device sort together and before those of any device whose id extends it.
pub const SEPARATOR: u8 = 0;

/// A key part that cannot be used, because it would make keys ambiguous.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum KeyError {
    /// An empty id would make `device \0 user` indistinguishable from a device prefix.
    #[error("{what} is empty; every id used in a store key must have at least one character")]
    Empty {
        /// Which part of the key was empty (e.g. "device id").
        what: &'static str,
    },
    /// A NUL byte inside an id would be read as the separator.
    #[error("{what} {id:?} contains a NUL byte, which the store uses as its key separator")]
    ContainsSeparator {
        /// Which part of the key was bad.
        what: &'static str,
        /// The offending id, for the operator.
        id: String,
    },
}

/// Checks that `id` can be one part of a composite key.
fn checked<'a>(what: &'static str, id: &'a str) -> Result<&'a [u8], KeyError> {
    if id.is_empty() {
        return Err(KeyError::Empty { what });
    }
    if id.as_bytes().contains(&SEPARATOR) {
        return Err(KeyError::ContainsSeparator {
            what,
            id: id.to_owned(),
        });
    }
    Ok(id.as_bytes())
}

/// The prefix under which every key of one device lives (`device_id \0`). Use it with
/// [`crate::store::Store::scan_prefix`] to visit one device's entries only.
pub fn device_prefix(device_id: &str) -> Result<Vec<u8>, KeyError> {
    let mut key = checked("device id", device_id)?.to_vec();
    key.push(SEPARATOR);
    Ok(key)
}

/// The key of one user on one device (`device_id \0 user_id`), used by the snapshots, buffer,
/// mappings and conflicts trees.
pub fn device_user(device_id: &str, user_id: &str) -> Result<Vec<u8>, KeyError> {
    let mut key = device_prefix(device_id)?;
    key.extend_from_slice(checked("user id", user_id)?);
    Ok(key)
}

/// The key of the `sequence`-th entry of one device (`device_id \0 u64-BE`), used for
/// per-device logs such as punches so that a prefix scan yields them in order.
pub fn device_sequence(device_id: &str, sequence: u64) -> Result<Vec<u8>, KeyError> {
    let mut key = device_prefix(device_id)?;
    key.extend_from_slice(&sequence.to_be_bytes());
    Ok(key)
}

/// A key for time-ordered trees (audit, outbox, dead letters, alarms): the sequence number
/// big-endian, so iteration order is the order the numbers were handed out. Take the number
/// from [`crate::store::Store::next_sequence`].
pub fn sequence(sequence: u64) -> [u8; 8] {
    sequence.to_be_bytes()
}

/// Reads back a key made by [`sequence`]; `None` if the key is not exactly eight bytes.
pub fn parse_sequence(key: &[u8]) -> Option<u64> {
    key.try_into().ok().map(u64::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_user_key_is_device_nul_user() {
        assert_eq!(device_user("dev1", "42").unwrap(), b"dev1\x0042".to_vec());
    }

    #[test]
    fn device_prefix_does_not_match_a_longer_device_id() {
        let prefix = device_prefix("dev1").unwrap();
        assert!(device_user("dev1", "7").unwrap().starts_with(&prefix));
        assert!(!device_user("dev10", "7").unwrap().starts_with(&prefix));
    }

    #[test]
    fn sequence_keys_sort_numerically() {
        let mut numbers = [300u64, 2, 1 << 40, 255, 256, 0];
        let mut keys: Vec<_> = numbers.iter().map(|n| sequence(*n)).collect();
        keys.sort();
        numbers.sort();
        let decoded: Vec<_> = keys.iter().map(|k| parse_sequence(k).unwrap()).collect();
        assert_eq!(decoded, numbers);
    }

    #[test]
    fn device_sequence_keys_sort_numerically_within_a_device() {
        let a = device_sequence("d", 255).unwrap();
        let b = device_sequence("d", 256).unwrap();
        assert!(a < b);
    }

    #[test]
    fn ids_that_would_make_keys_ambiguous_are_rejected() {
        assert_eq!(
            device_user("", "1"),
            Err(KeyError::Empty { what: "device id" })
        );
        assert_eq!(
            device_user("d", ""),
            Err(KeyError::Empty { what: "user id" })
        );
        assert!(matches!(
            device_user("d", "a\0b"),
            Err(KeyError::ContainsSeparator {
                what: "user id",
                ..
            })
        ));
    }

    #[test]
    fn parse_sequence_rejects_other_lengths() {
        assert_eq!(parse_sequence(b"short"), None);
    }
}
