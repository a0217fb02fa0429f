//! Text fields (names, passwords, user ids) in the device's code page.
//!
//! The protocol carries no encoding flag: a terminal stores names in its language's code page
//! (GBK, CP1251, …) or UTF-8 on newer firmware. Decoding therefore tries strict UTF-8 first and
//! falls back to a per-device configured encoding, and always keeps the raw bytes so nothing is
//! lost and a write-back reproduces exactly what the device had.

use encoding_rs::{Encoding, UTF_8};

/// A text field as stored on the device: the raw bytes up to the first NUL plus their decoding.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DeviceText {
    /// Bytes as the device stored them, without the terminating NUL and what follows it.
    pub raw: Vec<u8>,
    /// Best decoding of `raw`.
    pub text: String,
    /// False when `text` contains replacement characters because `raw` was not valid in any of
    /// the tried encodings; the agent should surface such names rather than trust them.
    pub lossless: bool,
}

impl DeviceText {
    /// Text stored as UTF-8, the form newer firmware uses and the one [`TextCodec::decode`] tries
    /// first; for ASCII it is also what every legacy code page would store.
    pub fn utf8(text: &str) -> DeviceText {
        DeviceText {
            raw: text.as_bytes().to_vec(),
            text: text.to_owned(),
            lossless: true,
        }
    }
}

/// An encoding name that encoding_rs does not know.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TextError {
    /// The configured label is not a WHATWG encoding label.
    #[error("unknown text encoding {0:?}; use a WHATWG label such as \"utf-8\", \"gbk\", \"windows-1251\" or \"big5\"")]
    UnknownEncoding(String),
    /// A name cannot be represented in the device's code page.
    #[error("{text:?} cannot be written in the device's {encoding} code page; change the name or the device encoding setting")]
    Unrepresentable {
        /// The text that failed to encode.
        text: String,
        /// The encoding's name.
        encoding: &'static str,
    },
}

/// How a device's text fields are decoded and encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TextCodec {
    fallback: &'static Encoding,
}

impl Default for TextCodec {
    fn default() -> TextCodec {
        TextCodec { fallback: UTF_8 }
    }
}

impl TextCodec {
    /// A codec whose fallback code page is given by a WHATWG label (`"gbk"`, `"cp1251"`, …).
    pub fn for_label(label: &str) -> Result<TextCodec, TextError> {
        Encoding::for_label(label.trim().as_bytes())
            .map(|fallback| TextCodec { fallback })
            .ok_or_else(|| TextError::UnknownEncoding(label.to_owned()))
    }

    /// The fallback encoding's canonical name.
    pub fn name(&self) -> &'static str {
        self.fallback.name()
    }

    /// Decodes a fixed-width field: the text ends at the first NUL, the rest is ignored (devices
    /// leave garbage after it).
    pub fn decode_field(&self, field: &[u8]) -> DeviceText {
        let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
        self.decode(&field[..end])
    }

    /// Decodes raw bytes: strict UTF-8 first, then the configured code page.
    pub fn decode(&self, raw: &[u8]) -> DeviceText {
        if let Ok(text) = std::str::from_utf8(raw) {
            return DeviceText {
                raw: raw.to_vec(),
                text: text.to_owned(),
                lossless: true,
            };
        }
        let (text, had_errors) = self.fallback.decode_without_bom_handling(raw);
        DeviceText {
            raw: raw.to_vec(),
            text: text.into_owned(),
            lossless: !had_errors,
        }
    }

    /// Encodes text for the device in the configured code page.
    pub fn encode(&self, text: &str) -> Result<DeviceText, TextError> {
        let (bytes, _, had_errors) = self.fallback.encode(text);
        if had_errors {
            return Err(TextError::Unrepresentable {
                text: text.to_owned(),
                encoding: self.fallback.name(),
            });
        }
        Ok(DeviceText {
            raw: bytes.into_owned(),
            text: text.to_owned(),
            lossless: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_gbk_and_cp1251_and_keeps_raw_bytes() {
        let gbk = TextCodec::for_label("gbk").unwrap();
        let field = [0xD5, 0xC5, 0xC8, 0xFD, 0, 0xAA, 0xBB];
        let name = gbk.decode_field(&field);
        assert_eq!(name.text, "张三");
        assert_eq!(name.raw, [0xD5, 0xC5, 0xC8, 0xFD]);
        assert!(name.lossless);

        let cyrillic = TextCodec::for_label("windows-1251").unwrap();
        assert_eq!(cyrillic.decode(&[0xC8, 0xE2, 0xE0, 0xED]).text, "Иван");
    }

    #[test]
    fn utf8_wins_when_valid_and_invalid_bytes_are_flagged_not_dropped() {
        let utf8 = TextCodec::default();
        assert_eq!(utf8.decode("José".as_bytes()).text, "José");
        let broken = utf8.decode(&[b'A', 0xFF, b'B']);
        assert!(!broken.lossless);
        assert_eq!(broken.raw, [b'A', 0xFF, b'B']);
        assert_eq!(broken.text, "A\u{FFFD}B");
    }

    #[test]
    fn refuses_text_the_code_page_cannot_hold() {
        let cyrillic = TextCodec::for_label("cp1251").unwrap();
        assert!(matches!(
            cyrillic.encode("张"),
            Err(TextError::Unrepresentable { .. })
        ));
        assert!(TextCodec::for_label("klingon").is_err());
    }
}
