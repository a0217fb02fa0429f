//! Reading a whole tree (or every key under a prefix) one key at a time.
//!
//! sled 0.34's iterator keeps in memory every tree node it passed: its cache counts accesses
//! in 256 shards and considers evicting a shard only after 64 accesses to it, and an iterator
//! touches each node once. A full scan of 60,000 small records left +12.6 MB of heap that no
//! later scan gave back, while the same records read key by key (`get_gt` from the previous
//! key, which goes through the cache like a point read) left +3.8 MB and took about three
//! times as long (`cargo bench -p edge-agent --bench sled_retention`). The agent's full reads
//! are background work (retention, the value-file sweep, the outbox's tally at start-up, the
//! buffer counts, listings, backups), so they walk.

/// The entries of one tree whose keys start with a prefix, in key order, each found by a
/// lookup after the previous key. Like sled's iterator it is not a snapshot: an entry written
/// ahead of the walk while it runs is seen, one behind it is not. Stops at the first error.
pub(crate) struct Walk {
    tree: sled::Tree,
    prefix: Vec<u8>,
    after: Option<sled::IVec>,
    done: bool,
}

impl Walk {
    /// A walk over the keys of `tree` starting with `prefix` (empty: the whole tree).
    pub(crate) fn new(tree: &sled::Tree, prefix: &[u8]) -> Walk {
        Walk {
            tree: tree.clone(),
            prefix: prefix.to_vec(),
            after: None,
            done: false,
        }
    }
}

impl Iterator for Walk {
    type Item = sled::Result<(sled::IVec, sled::IVec)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let next = match &self.after {
            None => self.tree.range(self.prefix.as_slice()..).next().transpose(),
            Some(key) => self.tree.get_gt(key),
        };
        match next {
            Ok(Some((key, value))) if key.starts_with(&self.prefix) => {
                self.after = Some(key.clone());
                Some(Ok((key, value)))
            }
            Ok(_) => {
                self.done = true;
                None
            }
            Err(error) => {
                self.done = true;
                Some(Err(error))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_walk_visits_exactly_the_keys_under_its_prefix_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let tree = db.open_tree("t").unwrap();
        for key in ["a", "b\x00", "b\x001", "b\x002", "b\x01", "c"] {
            tree.insert(key, key.as_bytes()).unwrap();
        }
        let keys = |prefix: &[u8]| -> Vec<Vec<u8>> {
            Walk::new(&tree, prefix)
                .map(|entry| entry.unwrap().0.to_vec())
                .collect()
        };
        let all: Vec<Vec<u8>> = tree.iter().map(|e| e.unwrap().0.to_vec()).collect();
        assert_eq!(keys(b""), all);
        assert_eq!(
            keys(b"b\0"),
            vec![b"b\0".to_vec(), b"b\x001".to_vec(), b"b\x002".to_vec()]
        );
        assert!(keys(b"z").is_empty());
        assert!(keys(b"a\0").is_empty());
    }
}
