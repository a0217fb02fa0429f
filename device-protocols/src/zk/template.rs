//! Fingerprint templates, as the template bulk read (`CMD_DB_RRQ`, FCT_FINGERTMP) delivers
//! them: after the dataset's length prefix, variable-length entries back to back, each
//! `[u16 entry size][u16 uid][u8 finger 0–9][u8 valid flag][template bytes]`, where the entry
//! size counts its own 6-byte head. The valid flag is 1 for a normal finger and 3 for a duress
//! finger on firmware that has them; it is kept so a restore can write it back.
//!
//! Writing one template back (a restore) is the upload path: the template bytes go into the
//! session's upload buffer (`PREPARE_DATA` with the size, then `DATA` chunks of at most
//! [`UPLOAD_CHUNK`] bytes), then `CMD_TMP_WRITE` stores the buffer as one finger of one uid,
//! named by a 6-byte head `[u16 uid][u8 finger][u8 valid flag][u16 template size]`.
//! [`TemplateUpload`] is the only way to build those requests, so a chunk that does not belong
//! to a whole, checked template cannot be expressed.

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

/// Largest `DATA` chunk of an upload: firmware's UDP receive buffer is 1032 bytes, so 1024
/// data bytes fit every transport.
pub const UPLOAD_CHUNK: usize = 1024;

/// Bytes of the `CMD_TMP_WRITE` head.
pub const TEMPLATE_HEAD_LEN: usize = 6;

/// What `CMD_TMP_WRITE` names: which finger of which uid the uploaded buffer becomes. Only
/// [`TemplateUpload::head`] builds one for sending; the emulator decodes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TemplateHead {
    /// The user's internal index.
    pub uid: u16,
    /// Finger index 0–9.
    pub finger: u8,
    /// Valid flag (1 normal, 3 duress).
    pub valid: u8,
    /// Bytes of the template in the upload buffer.
    pub size: u16,
}

impl TemplateHead {
    /// The 6 bytes as sent.
    pub fn encode(&self) -> [u8; TEMPLATE_HEAD_LEN] {
        let mut out = [0u8; TEMPLATE_HEAD_LEN];
        out[0..2].copy_from_slice(&self.uid.to_le_bytes());
        out[2] = self.finger;
        out[3] = self.valid;
        out[4..6].copy_from_slice(&self.size.to_le_bytes());
        out
    }

    /// Parses a received head; `None` unless it is exactly 6 bytes naming a finger 0–9.
    pub fn decode(data: &[u8]) -> Option<TemplateHead> {
        if data.len() != TEMPLATE_HEAD_LEN || data[2] > 9 {
            return None;
        }
        Some(TemplateHead {
            uid: u16::from_le_bytes([data[0], data[1]]),
            finger: data[2],
            valid: data[3],
            size: u16::from_le_bytes([data[4], data[5]]),
        })
    }
}

/// One chunk of an upload, at most [`UPLOAD_CHUNK`] bytes; built only by
/// [`TemplateUpload::chunks`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadChunk(Vec<u8>);

impl UploadChunk {
    /// The chunk's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// One checked template, ready to upload: a finger 0–9 and a non-empty template whose size
/// fits the head's u16.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateUpload {
    head: TemplateHead,
    template: Vec<u8>,
}

impl TemplateUpload {
    /// Checks `template` for upload; refuses what no firmware could store.
    pub fn new(template: &FingerTemplate) -> Result<TemplateUpload, RecordError> {
        if template.finger > 9 {
            return Err(RecordError::NotRepresentable(format!(
                "finger index {} is not 0–9",
                template.finger
            )));
        }
        if template.template.is_empty() {
            return Err(RecordError::NotRepresentable(
                "an empty fingerprint template cannot be uploaded".into(),
            ));
        }
        let size = u16::try_from(template.template.len()).map_err(|_| {
            RecordError::NotRepresentable(format!(
                "a fingerprint template of {} bytes does not fit the upload head (at most {})",
                template.template.len(),
                u16::MAX
            ))
        })?;
        Ok(TemplateUpload {
            head: TemplateHead {
                uid: template.uid,
                finger: template.finger,
                valid: template.valid,
                size,
            },
            template: template.template.clone(),
        })
    }

    /// Bytes the upload buffer must be prepared for.
    pub fn len(&self) -> u32 {
        u32::from(self.head.size)
    }

    /// Never true: [`TemplateUpload::new`] refuses an empty template.
    pub fn is_empty(&self) -> bool {
        self.template.is_empty()
    }

    /// The template in chunks of at most [`UPLOAD_CHUNK`] bytes, in order.
    pub fn chunks(&self) -> impl Iterator<Item = UploadChunk> + '_ {
        self.template
            .chunks(UPLOAD_CHUNK)
            .map(|chunk| UploadChunk(chunk.to_vec()))
    }

    /// The head of the `CMD_TMP_WRITE` that stores the uploaded buffer.
    pub fn head(&self) -> TemplateHead {
        self.head
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

    #[test]
    fn an_upload_is_chunked_and_its_head_round_trips() {
        let template = FingerTemplate {
            uid: 7,
            finger: 3,
            valid: 1,
            template: vec![9; 2500],
        };
        let upload = TemplateUpload::new(&template).unwrap();
        let sizes: Vec<usize> = upload.chunks().map(|c| c.bytes().len()).collect();
        assert_eq!(sizes, [1024, 1024, 452]);
        let head = upload.head();
        assert_eq!(TemplateHead::decode(&head.encode()), Some(head));
        assert_eq!(head.size, 2500);
        let bad = FingerTemplate {
            finger: 10,
            ..template.clone()
        };
        assert!(TemplateUpload::new(&bad).is_err());
        let empty = FingerTemplate {
            template: vec![],
            ..template
        };
        assert!(TemplateUpload::new(&empty).is_err());
        assert_eq!(TemplateHead::decode(&[1, 0, 10, 1, 1, 0]), None);
    }
}
