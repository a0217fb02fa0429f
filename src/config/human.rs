//! Human-friendly durations (`"5m"`, `"6h"`, `"90d"`) and sizes (`"5MB"`, `"64MiB"`).
//!
//! Operators edit the config by hand on a gateway box, often over a slow console; `"6h"` is
//! harder to get wrong than `21600`. Both types serialise back to the same text form so that
//! `check-config` prints what the operator would write.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::time::Duration;

/// A duration written as a number and a unit, e.g. `"500ms"`, `"30s"`, `"5m"`, `"6h"`, `"90d"`;
/// several parts may be combined (`"1h30m"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

/// A size in bytes written as a number and a unit: `B`, `KB`/`MB`/`GB` (powers of 1000) or
/// `KiB`/`MiB`/`GiB` (powers of 1024); a bare integer means bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

const DURATION_UNITS: &[(&str, u64)] = &[
    ("ms", 1),
    ("s", 1_000),
    ("m", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
];

const SIZE_UNITS: &[(&str, u64)] = &[
    ("B", 1),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
];

impl HumanDuration {
    /// Parses the text form; the error says what is accepted, for the operator's benefit.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "invalid duration {text:?}: expected a number followed by ms, s, m, h or d \
                 (e.g. \"30s\", \"5m\", \"6h\", \"90d\")"
            )
        };
        let mut rest = text.trim();
        if rest.is_empty() {
            return Err(bad());
        }
        let mut total_ms: u64 = 0;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(bad());
            }
            let number: u64 = rest[..digits].parse().map_err(|_| bad())?;
            rest = &rest[digits..];
            let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            let unit = &rest[..unit_len];
            let (_, factor) = DURATION_UNITS
                .iter()
                .find(|(name, _)| *name == unit)
                .ok_or_else(bad)?;
            total_ms = number
                .checked_mul(*factor)
                .and_then(|ms| total_ms.checked_add(ms))
                .ok_or_else(|| format!("duration {text:?} is too large"))?;
            rest = rest[unit_len..].trim_start();
        }
        Ok(Self(Duration::from_millis(total_ms)))
    }

    /// The wrapped duration.
    pub fn get(self) -> Duration {
        self.0
    }

    /// Shorthand used by the defaults.
    pub const fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis() as u64;
        if ms == 0 {
            return f.write_str("0s");
        }
        let mut rest = ms;
        for (unit, factor) in DURATION_UNITS.iter().rev() {
            if rest >= *factor {
                write!(f, "{}{unit}", rest / factor)?;
                rest %= factor;
            }
        }
        Ok(())
    }
}

impl ByteSize {
    /// Parses the text form; the error says what is accepted.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "invalid size {text:?}: expected a number followed by B, KB, MB, GB, KiB, MiB or \
                 GiB (e.g. \"5MB\", \"64MiB\")"
            )
        };
        let trimmed = text.trim();
        let digits = trimmed.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let number: u64 = trimmed[..digits].parse().map_err(|_| bad())?;
        let unit = trimmed[digits..].trim();
        let factor = if unit.is_empty() {
            1
        } else {
            SIZE_UNITS
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(unit) && name.len() == unit.len())
                .map(|(_, factor)| *factor)
                .ok_or_else(bad)?
        };
        number
            .checked_mul(factor)
            .map(Self)
            .ok_or_else(|| format!("size {text:?} is too large"))
    }

    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let best = SIZE_UNITS
            .iter()
            .rev()
            .filter(|(_, factor)| self.0 >= *factor && self.0 % factor == 0)
            .max_by_key(|(_, factor)| *factor);
        match best {
            Some((unit, factor)) if self.0 > 0 => write!(f, "{}{unit}", self.0 / factor),
            _ => write!(f, "{}B", self.0),
        }
    }
}

impl std::str::FromStr for HumanDuration {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer).map_err(|_| {
            serde::de::Error::custom(
                "a duration must be a quoted string such as \"30s\", \"5m\", \"6h\" or \"90d\"",
            )
        })?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// Accepts either a bare integer (bytes) or a string with a unit.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bytes(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer).map_err(|_| {
            serde::de::Error::custom("a size must be a string such as \"5MB\" or a number of bytes")
        })? {
            Raw::Bytes(bytes) => Ok(Self(bytes)),
            Raw::Text(text) => Self::parse(&text).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print_back() {
        for (text, ms) in [
            ("500ms", 500),
            ("30s", 30_000),
            ("5m", 300_000),
            ("6h", 21_600_000),
            ("90d", 7_776_000_000),
            ("1h30m", 5_400_000),
        ] {
            let parsed = HumanDuration::parse(text).unwrap();
            assert_eq!(parsed.0.as_millis() as u64, ms, "{text}");
            assert_eq!(parsed.to_string(), text);
        }
    }

    #[test]
    fn bad_durations_explain_the_format() {
        for text in [
            "",
            "5",
            "m5",
            "5 minutes",
            "5x",
            "-5s",
            "99999999999999999999d",
        ] {
            let err = HumanDuration::parse(text).unwrap_err();
            assert!(err.contains("duration"), "{text}: {err}");
        }
    }

    #[test]
    fn sizes_parse_and_print_back() {
        for (text, bytes, shown) in [
            ("5MB", 5_000_000, "5MB"),
            ("64MiB", 64 << 20, "64MiB"),
            ("512 KiB", 512 << 10, "512KiB"),
            ("7", 7, "7B"),
            ("5mb", 5_000_000, "5MB"),
        ] {
            let parsed = ByteSize::parse(text).unwrap();
            assert_eq!(parsed.0, bytes, "{text}");
            assert_eq!(parsed.to_string(), shown);
        }
        assert!(ByteSize::parse("5 bananas").is_err());
        assert!(ByteSize::parse("MB").is_err());
    }
}
