//! The tagged, versioned envelope every stored value is wrapped in.
//!
//! postcard is compact and its 1.x wire format is frozen, but it is not self-describing: the
//! bytes carry no field names and no type, so a struct that gains a field cannot read its old
//! bytes, and a value read as the wrong type may decode into garbage. The envelope therefore
//! puts the record's kind and version in front of the body:
//!
//! ```text
//! 0x00  varint(kind length)  kind (UTF-8)  varint(u32 version)  postcard(body)
//! ```
//!
//! (postcard's varint is LEB128: lengths and versions below 128 take one byte.) Stores written
//! before the kind was part of the envelope hold `varint(version) postcard(body)`; versions
//! start at 1, so a leading 0 never starts such an old envelope, and old envelopes are still
//! read (without the kind check). Reading first compares the kind with the type's
//! [`Record::KIND`] (a mismatch is [`EnvelopeError::WrongKind`]), then the version with
//! [`Record::VERSION`]:
//! - equal: decode the body, and insist that every byte was used, so a layout that changed
//!   without a version bump is caught instead of silently misread;
//! - older: hand the body to [`Record::upgrade`], the type's explicit upgrade path;
//! - newer: refuse with [`EnvelopeError::FutureVersion`], naming the kind and both versions.
//!
//! Rules for record types (postcard cannot represent anything else safely): no
//! `skip_serializing_if`, `flatten`, untagged or internally tagged enums, `#[serde(skip)]` on
//! variants or `serde_json::Value`; enum variants are only ever appended; a changed struct is
//! a new version (keep the old struct for `upgrade`), and each version has a golden-bytes test.
//! A record's [`Record::KIND`] is stored, so it never changes once released.

use serde::{de::DeserializeOwned, Serialize};
use thiserror::Error;

/// A type that can be stored: it names itself and declares the version it writes.
pub trait Record: Serialize + DeserializeOwned {
    /// Short stable name, stored in every envelope and used in error messages, e.g.
    /// `"buffered_user"`. Never change it once released: stored values carry it.
    const KIND: &'static str;

    /// The version this build writes. Start at 1; bump it whenever the serialized layout
    /// changes, and teach [`Record::upgrade`] to read the previous versions.
    const VERSION: u32;

    /// Builds the current type from a body written at an older `found_version`.
    ///
    /// The default knows no older versions, which is right for a type that has only ever had
    /// one. A type that changed decodes its old layout with [`decode_body`] and converts.
    fn upgrade(found_version: u32, body: &[u8]) -> Result<Self, EnvelopeError> {
        let _ = body;
        Err(EnvelopeError::NoUpgradePath {
            kind: Self::KIND,
            found: found_version,
            current: Self::VERSION,
        })
    }
}

/// Why a value could not be wrapped or unwrapped.
#[derive(Debug, Error)]
pub enum EnvelopeError {
    /// The value was written by a newer build of the agent.
    #[error(
        "stored {kind} record has version {found}, but this build of edge-agent only \
         understands versions up to {supported}; it was written by a newer edge-agent. \
         Run that newer version again (do not delete the store)"
    )]
    FutureVersion {
        /// The record kind ([`Record::KIND`]).
        kind: &'static str,
        /// The version found in the envelope.
        found: u32,
        /// The newest version this build understands ([`Record::VERSION`]).
        supported: u32,
    },
    /// An older version for which the type provides no upgrade.
    #[error(
        "stored {kind} record has old version {found} and this build has no upgrade from it \
         to version {current}; this is a bug in edge-agent, please report it"
    )]
    NoUpgradePath {
        /// The record kind.
        kind: &'static str,
        /// The version found in the envelope.
        found: u32,
        /// The version this build writes.
        current: u32,
    },
    /// The value is a record of another kind (read from the wrong tree or key, or written by
    /// another module under the same key).
    #[error("stored value is a {found} record, not the {expected} record that was expected")]
    WrongKind {
        /// The kind the reader asked for ([`Record::KIND`]).
        expected: &'static str,
        /// The kind the envelope names.
        found: String,
    },
    /// The envelope's kind header is damaged (bad length or not UTF-8).
    #[error("stored {kind} record has a damaged kind header")]
    MissingKind {
        /// The kind the reader asked for.
        kind: &'static str,
    },
    /// The bytes do not start with a valid version number.
    #[error("stored {kind} record has no readable version header (the value is damaged)")]
    MissingVersion {
        /// The record kind.
        kind: &'static str,
    },
    /// The body does not match the layout of the declared version.
    #[error(
        "stored {kind} record (version {version}) is damaged or has an unexpected layout: {source}"
    )]
    Malformed {
        /// The record kind.
        kind: &'static str,
        /// The version found in the envelope.
        version: u32,
        /// What postcard could not read.
        source: postcard::Error,
    },
    /// The body decoded but left bytes over: the layout changed without a version bump.
    #[error(
        "stored {kind} record (version {version}) has {extra} unread trailing bytes; its layout \
         changed without a version bump, which is a bug in edge-agent"
    )]
    TrailingBytes {
        /// The record kind.
        kind: &'static str,
        /// The version found in the envelope.
        version: u32,
        /// How many bytes were left.
        extra: usize,
    },
    /// The value could not be serialized (a type postcard cannot represent).
    #[error("could not encode {kind} record: {source}")]
    Encode {
        /// The record kind.
        kind: &'static str,
        /// What postcard could not write.
        source: postcard::Error,
    },
}

/// The first byte of a tagged envelope; never the first byte of an untagged (old) one, whose
/// version is at least 1.
const TAGGED: u8 = 0x00;

/// Wraps `value` in an envelope carrying `R::KIND` and `R::VERSION`.
pub fn encode<R: Record>(value: &R) -> Result<Vec<u8>, EnvelopeError> {
    let encode_error = |source| EnvelopeError::Encode {
        kind: R::KIND,
        source,
    };
    let mut header = vec![TAGGED];
    header = postcard::to_extend(&(R::KIND.len() as u32), header).map_err(encode_error)?;
    header.extend_from_slice(R::KIND.as_bytes());
    header = postcard::to_extend(&R::VERSION, header).map_err(encode_error)?;
    postcard::to_extend(value, header).map_err(encode_error)
}

/// Unwraps an envelope into the current `R`: refuses another kind, upgrades older versions
/// and refuses newer ones. Untagged envelopes (written before the kind was stored) are read
/// without the kind check.
pub fn decode<R: Record>(bytes: &[u8]) -> Result<R, EnvelopeError> {
    let rest = match bytes.split_first() {
        Some((&TAGGED, tagged)) => check_kind::<R>(tagged)?,
        _ => bytes,
    };
    let (version, body) = postcard::take_from_bytes::<u32>(rest)
        .map_err(|_| EnvelopeError::MissingVersion { kind: R::KIND })?;
    if version == R::VERSION {
        decode_body(R::KIND, version, body)
    } else if version > R::VERSION {
        Err(EnvelopeError::FutureVersion {
            kind: R::KIND,
            found: version,
            supported: R::VERSION,
        })
    } else {
        R::upgrade(version, body)
    }
}

/// Reads the kind header after the tag byte, insists it is `R::KIND`, returns what follows.
fn check_kind<R: Record>(tagged: &[u8]) -> Result<&[u8], EnvelopeError> {
    let damaged = || EnvelopeError::MissingKind { kind: R::KIND };
    let (length, rest) = postcard::take_from_bytes::<u32>(tagged).map_err(|_| damaged())?;
    let length = usize::try_from(length).map_err(|_| damaged())?;
    if rest.len() < length {
        return Err(damaged());
    }
    let (kind, rest) = rest.split_at(length);
    let kind = std::str::from_utf8(kind).map_err(|_| damaged())?;
    if kind == R::KIND {
        Ok(rest)
    } else {
        Err(EnvelopeError::WrongKind {
            expected: R::KIND,
            found: kind.to_owned(),
        })
    }
}

/// Decodes an envelope body as `T`, requiring that it uses every byte. Exposed for
/// [`Record::upgrade`] implementations that read an old layout.
pub fn decode_body<T: DeserializeOwned>(
    kind: &'static str,
    version: u32,
    body: &[u8],
) -> Result<T, EnvelopeError> {
    let (value, rest) =
        postcard::take_from_bytes::<T>(body).map_err(|source| EnvelopeError::Malformed {
            kind,
            version,
            source,
        })?;
    if rest.is_empty() {
        Ok(value)
    } else {
        Err(EnvelopeError::TrailingBytes {
            kind,
            version,
            extra: rest.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    /// Version 1 of a test record, kept to prove that upgrades read old bytes.
    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct NoteV1 {
        id: u32,
        text: String,
    }

    /// The current (version 2) layout: a field was added, so the version was bumped.
    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Note {
        id: u32,
        text: String,
        pinned: bool,
    }

    impl Record for NoteV1 {
        const KIND: &'static str = "note";
        const VERSION: u32 = 1;
    }

    impl Record for Note {
        const KIND: &'static str = "note";
        const VERSION: u32 = 2;

        fn upgrade(found_version: u32, body: &[u8]) -> Result<Self, EnvelopeError> {
            match found_version {
                1 => {
                    let old: NoteV1 = decode_body(Self::KIND, found_version, body)?;
                    Ok(Note {
                        id: old.id,
                        text: old.text,
                        pinned: false,
                    })
                }
                _ => Err(EnvelopeError::NoUpgradePath {
                    kind: Self::KIND,
                    found: found_version,
                    current: Self::VERSION,
                }),
            }
        }
    }

    #[test]
    fn golden_bytes_of_the_envelope_format() {
        let note = Note {
            id: 300,
            text: "hi".into(),
            pinned: true,
        };
        // tag 0 | kind "note" length-prefixed | version 2 | id 300 as LEB128 varint |
        // "hi" length-prefixed | true
        let golden = [
            0x00, 0x04, b'n', b'o', b't', b'e', 0x02, 0xAC, 0x02, 0x02, b'h', b'i', 0x01,
        ];
        assert_eq!(encode(&note).unwrap(), golden);
        assert_eq!(decode::<Note>(&golden).unwrap(), note);
    }

    #[test]
    fn golden_bytes_of_the_untagged_format_are_still_read() {
        let note = Note {
            id: 300,
            text: "hi".into(),
            pinned: true,
        };
        // What stores written before the kind was stored hold: version 2 | body.
        let old = [0x02, 0xAC, 0x02, 0x02, b'h', b'i', 0x01];
        assert_eq!(decode::<Note>(&old).unwrap(), note);
        // An old version-1 value still goes through the upgrade.
        let old_v1 = [0x01, 0x09, 0x03, b'o', b'l', b'd'];
        assert_eq!(
            decode::<Note>(&old_v1).unwrap(),
            Note {
                id: 9,
                text: "old".into(),
                pinned: false
            }
        );
    }

    #[test]
    fn reading_a_record_of_another_kind_is_a_named_error() {
        #[derive(Debug, Serialize, Deserialize, PartialEq)]
        struct Tag {
            id: u32,
            text: String,
            pinned: bool,
        }
        impl Record for Tag {
            const KIND: &'static str = "tag";
            const VERSION: u32 = 2;
        }
        // Same layout, same version: only the kind tells them apart.
        let bytes = encode(&Note {
            id: 1,
            text: "x".into(),
            pinned: true,
        })
        .unwrap();
        let err = decode::<Tag>(&bytes).unwrap_err();
        assert!(
            matches!(&err, EnvelopeError::WrongKind { expected: "tag", found } if found == "note"),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(message.contains("note record"), "{message}");
        assert!(message.contains("tag record"), "{message}");
    }

    #[test]
    fn a_damaged_kind_header_is_reported() {
        for damaged in [
            &[0x00][..],
            &[0x00, 0x09, b'n'],
            &[0x00, 0x02, 0xFF, 0xFE, 0x02],
        ] {
            assert!(
                matches!(
                    decode::<Note>(damaged),
                    Err(EnvelopeError::MissingKind { kind: "note" })
                ),
                "{damaged:?}"
            );
        }
    }

    #[test]
    fn versions_of_128_and_above_take_two_header_bytes() {
        #[derive(Debug, Serialize, Deserialize, PartialEq)]
        struct Late(u8);
        impl Record for Late {
            const KIND: &'static str = "late";
            const VERSION: u32 = 130;
        }
        assert_eq!(
            encode(&Late(5)).unwrap(),
            [0x00, 0x04, b'l', b'a', b't', b'e', 0x82, 0x01, 0x05]
        );
        assert_eq!(decode::<Late>(&[0x82, 0x01, 0x05]).unwrap(), Late(5));
    }

    #[test]
    fn an_unknown_future_version_is_refused_naming_kind_and_versions() {
        let from_the_future = encode(&Note {
            id: 1,
            text: "x".into(),
            pinned: false,
        })
        .unwrap();
        let err = decode::<NoteV1>(&from_the_future).unwrap_err();
        assert!(matches!(
            err,
            EnvelopeError::FutureVersion {
                kind: "note",
                found: 2,
                supported: 1
            }
        ));
        let message = err.to_string();
        assert!(message.contains("note record has version 2"), "{message}");
        assert!(message.contains("up to 1"), "{message}");
    }

    #[test]
    fn an_older_version_goes_through_the_upgrade_hook() {
        let old = encode(&NoteV1 {
            id: 9,
            text: "old".into(),
        })
        .unwrap();
        let upgraded: Note = decode(&old).unwrap();
        assert_eq!(
            upgraded,
            Note {
                id: 9,
                text: "old".into(),
                pinned: false
            }
        );
    }

    #[test]
    fn an_older_version_without_upgrade_is_a_clear_error() {
        #[derive(Debug, Serialize, Deserialize)]
        struct Plain(u8);
        impl Record for Plain {
            const KIND: &'static str = "plain";
            const VERSION: u32 = 3;
        }
        let err =
            decode::<Plain>(&[0x00, 0x05, b'p', b'l', b'a', b'i', b'n', 0x01, 0x05]).unwrap_err();
        assert!(matches!(
            err,
            EnvelopeError::NoUpgradePath {
                kind: "plain",
                found: 1,
                current: 3
            }
        ));
    }

    #[test]
    fn a_layout_change_without_version_bump_is_caught() {
        // Version-2 bytes of Note misread as a version-2 type with fewer fields.
        #[derive(Debug, Serialize, Deserialize)]
        struct Shrunk {
            id: u32,
            text: String,
        }
        impl Record for Shrunk {
            const KIND: &'static str = "note";
            const VERSION: u32 = 2;
        }
        let bytes = encode(&Note {
            id: 1,
            text: "x".into(),
            pinned: true,
        })
        .unwrap();
        assert!(matches!(
            decode::<Shrunk>(&bytes),
            Err(EnvelopeError::TrailingBytes { extra: 1, .. })
        ));
    }

    #[test]
    fn damaged_values_are_reported_not_misread() {
        assert!(matches!(
            decode::<Note>(&[]),
            Err(EnvelopeError::MissingVersion { kind: "note" })
        ));
        assert!(matches!(
            decode::<Note>(&[0x00, 0x04, b'n', b'o', b't', b'e']),
            Err(EnvelopeError::MissingVersion { kind: "note" })
        ));
        assert!(matches!(
            decode::<Note>(&[0x02, 0x01]),
            Err(EnvelopeError::Malformed {
                kind: "note",
                version: 2,
                ..
            })
        ));
    }
}
