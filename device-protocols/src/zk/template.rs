//! Fingerprint templates, as the template bulk read (`CMD_DB_RRQ`, FCT_FINGERTMP) delivers
//! them: after the dataset's length prefix, variable-length entries back to back, each
//! `[u16 entry size][u16 uid][u8 finger 0–9][u8 valid flag][template bytes]`, where the entry
//! size counts its own 6-byte head. The valid flag is 1 for a normal finger and 3 for a duress
//! finger on firmware that has them; it is kept so a restore can write it back.

use super::dataset::records_of;
use super::record::RecordError;

/// Bytes of an entry's head (size, uid, finger, valid).
const HEAD: usize = 6;

/// One enrolled finger of one user.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FingerTemplate {
    /// The user's internal index (the `uid` of the user record).
    pub uid: u16,
    /// Finger index 0–9.
    pub finger: u8,
    /// The valid flag as stored (1 normal, 3 duress on firmware that has duress fingers).
    pub valid: u8,
    /// The template itself, opaque.
    pub template: Vec<u8>,
}

impl FingerTemplate {
    /// Encodes the entry as the bulk read carries it (the emulator's job, and a restore's).
    pub fn encode(&self) -> Result<Vec<u8>, RecordError> {
        let size = u16::try_from(HEAD + self.template.len()).map_err(|_| {
            RecordError::NotRepresentable(format!(
                "a fingerprint template of {} bytes does not fit an entry (at most {})",
                self.template.len(),
                usize::from(u16::MAX) - HEAD
            ))
        })?;
        let mut out = Vec::with_capacity(usize::from(size));
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&self.uid.to_le_bytes());
        out.push(self.finger);
        out.push(self.valid);
        out.extend_from_slice(&self.template);
        Ok(out)
    }
}

/// Decodes a template dataset. Every entry must be whole and name a finger 0–9; anything else
/// means the transfer or the firmware's format is not what this reader knows, and the whole
/// read is refused rather than half-trusted.
pub fn decode_templates(dataset: &[u8]) -> Result<Vec<FingerTemplate>, RecordError> {
    let mut rest = records_of(dataset)?;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let bad = |why: String| {
            RecordError::NotRepresentable(format!(
                "fingerprint template entry {} at byte {}: {why}",
                out.len() + 1,
                dataset.len() - rest.len()
            ))
        };
        if rest.len() < HEAD {
            return Err(bad(format!(
                "only {} bytes left for a 6-byte head",
                rest.len()
            )));
        }
        let size = usize::from(u16::from_le_bytes([rest[0], rest[1]]));
        if size < HEAD || size > rest.len() {
            return Err(bad(format!(
                "entry size {size} does not fit the {} bytes left",
                rest.len()
            )));
        }
        let finger = rest[4];
        if finger > 9 {
            return Err(bad(format!("finger index {finger} is not 0–9")));
        }
        out.push(FingerTemplate {
            uid: u16::from_le_bytes([rest[2], rest[3]]),
            finger,
            valid: rest[5],
            template: rest[HEAD..size].to_vec(),
        });
        rest = &rest[size..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zk::dataset::dataset_of;

    #[test]
    fn entries_round_trip_and_a_cut_entry_is_refused() {
        let templates = vec![
            FingerTemplate {
                uid: 1,
                finger: 0,
                valid: 1,
                template: vec![0xAB; 500],
            },
            FingerTemplate {
                uid: 300,
                finger: 9,
                valid: 3,
                template: vec![1, 2, 3],
            },
        ];
        let records: Vec<u8> = templates.iter().flat_map(|t| t.encode().unwrap()).collect();
        assert_eq!(decode_templates(&dataset_of(&records)).unwrap(), templates);
        assert!(decode_templates(&dataset_of(&records[..records.len() - 1])).is_err());
        assert_eq!(decode_templates(&dataset_of(&[])).unwrap(), vec![]);
    }
}
