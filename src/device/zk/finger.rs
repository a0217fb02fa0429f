//! How a ZK fingerprint is kept as a credential value: the template bytes as base64 text (as
//! the AI06 carries its templates) and, when the template's valid flag is not the normal 1,
//! the flag in front: `flag=3;<base64>` for a duress finger (research `zk-protocol.md`; pyzk
//! names 3 "duress"). Why in the value: the value is what the store, the backup files and a
//! restore carry for a credential, so the flag survives all three with no new field, and a
//! restored duress finger is written back as a duress finger. A plain base64 value (every
//! value stored before the flag was kept) is a normal finger. Base64 has no `;`, so the two
//! forms cannot be confused.

/// The valid flag of a normal finger.
pub(super) const NORMAL: u8 = 1;

const PREFIX: &str = "flag=";

/// One finger's template and valid flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FingerValue {
    /// The valid flag as the terminal stores it (1 normal, 3 duress).
    pub(super) valid: u8,
    /// The template bytes, opaque.
    pub(super) template: Vec<u8>,
}

impl FingerValue {
    /// The credential text.
    pub(super) fn to_text(&self) -> String {
        use base64::Engine as _;
        let template = base64::engine::general_purpose::STANDARD.encode(&self.template);
        if self.valid == NORMAL {
            template
        } else {
            format!("{PREFIX}{};{template}", self.valid)
        }
    }

    /// Parses a credential text; why not, when it is neither form.
    pub(super) fn parse(text: &str) -> Result<FingerValue, String> {
        use base64::Engine as _;
        let text = text.trim();
        let (valid, template) = match text.strip_prefix(PREFIX) {
            Some(rest) => {
                let (flag, template) = rest
                    .split_once(';')
                    .ok_or("has a valid flag but no template after it")?;
                let valid = flag
                    .parse::<u8>()
                    .map_err(|_| format!("has a valid flag {flag:?} that is not 0–255"))?;
                (valid, template)
            }
            None => (NORMAL, text),
        };
        let template = base64::engine::general_purpose::STANDARD
            .decode(template)
            .map_err(|_| "is not valid base64".to_string())?;
        Ok(FingerValue { valid, template })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_normal_finger_is_plain_base64_and_a_duress_finger_keeps_its_flag() {
        let normal = FingerValue {
            valid: 1,
            template: vec![1, 2, 3],
        };
        assert_eq!(normal.to_text(), "AQID");
        assert_eq!(FingerValue::parse("AQID").unwrap(), normal);
        let duress = FingerValue {
            valid: 3,
            template: vec![1, 2, 3],
        };
        assert_eq!(duress.to_text(), "flag=3;AQID");
        assert_eq!(FingerValue::parse(&duress.to_text()).unwrap(), duress);
        assert!(FingerValue::parse("flag=x;AQID").is_err());
        assert!(FingerValue::parse("flag=3").is_err());
        assert!(FingerValue::parse("not base64!").is_err());
    }
}
