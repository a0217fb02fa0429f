//! Comparing a complete read with the last complete snapshot: pure, so it can be tested and
//! measured without a device or a store. Both sides are sorted maps, so one merge walk finds
//! every difference in linear time.

use super::snapshot::SnapshotUser;
use crate::device::ReadUser;
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// What changed between two complete reads of one device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    /// In the new read, not in the previous snapshot.
    pub appeared: Vec<SnapshotUser>,
    /// In both, with different attributes or credential slots: (before, after).
    pub changed: Vec<(SnapshotUser, SnapshotUser)>,
    /// In the previous snapshot, not in the new read.
    pub missing: Vec<SnapshotUser>,
    /// In both, identical.
    pub unchanged: usize,
}

impl Diff {
    /// True when the read found exactly the previous snapshot.
    pub fn is_empty(&self) -> bool {
        self.appeared.is_empty() && self.changed.is_empty() && self.missing.is_empty()
    }
}

/// The snapshot form of a read user (slots sorted, so their order on the wire never counts as
/// a change).
pub fn snapshot_of(read: &ReadUser) -> SnapshotUser {
    SnapshotUser {
        user: read.user.clone(),
        slots: sorted_slots(&read.slots),
    }
}

/// A read user's slots as the snapshot keeps them: sorted, each once.
pub fn sorted_slots(slots: &[u16]) -> Vec<u16> {
    let mut slots = slots.to_vec();
    slots.sort_unstable();
    slots.dedup();
    slots
}

/// Compares `previous` (the last complete snapshot) with `current` (a new complete read).
pub fn diff(
    previous: &BTreeMap<String, SnapshotUser>,
    current: &BTreeMap<String, ReadUser>,
) -> Diff {
    let mut out = Diff::default();
    let mut old = previous.iter().peekable();
    let mut new = current.iter().peekable();
    loop {
        let order = match (old.peek(), new.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((a, _)), Some((b, _))) => a.cmp(b),
        };
        match order {
            Ordering::Less => {
                let (_, gone) = old.next().expect("peeked");
                out.missing.push(gone.clone());
            }
            Ordering::Greater => {
                let (_, read) = new.next().expect("peeked");
                out.appeared.push(snapshot_of(read));
            }
            Ordering::Equal => {
                let (_, before) = old.next().expect("peeked");
                let (_, read) = new.next().expect("peeked");
                let after = snapshot_of(read);
                if *before == after {
                    out.unchanged += 1;
                } else {
                    out.changed.push((before.clone(), after));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::DeviceUser;

    fn read_user(id: &str, name: &str, slots: &[u16]) -> ReadUser {
        ReadUser {
            user: DeviceUser {
                user_id: id.into(),
                name: name.into(),
                ..DeviceUser::default()
            },
            slots: slots.to_vec(),
        }
    }

    fn read(users: &[ReadUser]) -> BTreeMap<String, ReadUser> {
        users
            .iter()
            .map(|u| (u.user.user_id.clone(), u.clone()))
            .collect()
    }

    fn snapshot(users: &[ReadUser]) -> BTreeMap<String, SnapshotUser> {
        users
            .iter()
            .map(|u| (u.user.user_id.clone(), snapshot_of(u)))
            .collect()
    }

    #[test]
    fn finds_appeared_changed_missing_and_unchanged() {
        let before = snapshot(&[
            read_user("1", "ann", &[11]),
            read_user("2", "bob", &[11, 50]),
            read_user("3", "cy", &[50]),
        ]);
        let now = read(&[
            read_user("1", "ann", &[11]),
            read_user("2", "bob", &[11]),
            read_user("4", "dee", &[50]),
        ]);
        let diff = diff(&before, &now);
        let ids = |users: &[SnapshotUser]| -> Vec<String> {
            users.iter().map(|u| u.user.user_id.clone()).collect()
        };
        assert_eq!(ids(&diff.appeared), ["4"]);
        assert_eq!(ids(&diff.missing), ["3"]);
        assert_eq!(diff.changed.len(), 1);
        assert_eq!(diff.changed[0].0.slots, [11, 50]);
        assert_eq!(diff.changed[0].1.slots, [11]);
        assert_eq!(diff.unchanged, 1);
    }

    #[test]
    fn slot_order_on_the_wire_is_not_a_change() {
        let before = snapshot(&[read_user("1", "ann", &[50, 11])]);
        let now = read(&[read_user("1", "ann", &[11, 50, 11])]);
        assert!(diff(&before, &now).is_empty());
    }

    #[test]
    fn the_first_read_makes_everyone_appear() {
        let now = read(&[read_user("2", "b", &[]), read_user("10", "a", &[])]);
        let diff = diff(&BTreeMap::new(), &now);
        assert_eq!(diff.appeared.len(), 2);
        assert!(diff.missing.is_empty());
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;
        use std::collections::BTreeSet;

        /// Up to 40 users with ids from a small range (so the two sides overlap), each with a
        /// name from a tiny alphabet (so some users change and some do not).
        fn users() -> impl Strategy<Value = BTreeMap<String, ReadUser>> {
            prop::collection::btree_map(0u16..60, (0u8..3, any::<bool>()), 0..40).prop_map(
                |users| {
                    users
                        .into_iter()
                        .map(|(id, (name, photo))| {
                            let slots: &[u16] = if photo { &[11, 50] } else { &[11] };
                            let user = read_user(&id.to_string(), &format!("n{name}"), slots);
                            (id.to_string(), user)
                        })
                        .collect()
                },
            )
        }

        proptest! {
            #[test]
            fn the_diff_partitions_both_sides_and_replays_to_the_new_read(
                before in users(),
                now in users(),
            ) {
                let previous: BTreeMap<_, _> = before
                    .iter()
                    .map(|(id, u)| (id.clone(), snapshot_of(u)))
                    .collect();
                let diff = diff(&previous, &now);
                let ids = |users: &[SnapshotUser]| -> BTreeSet<String> {
                    users.iter().map(|u| u.user.user_id.clone()).collect()
                };
                let old: BTreeSet<_> = before.keys().cloned().collect();
                let new: BTreeSet<_> = now.keys().cloned().collect();
                prop_assert_eq!(ids(&diff.appeared), &new - &old);
                prop_assert_eq!(ids(&diff.missing), &old - &new);
                prop_assert_eq!(
                    diff.changed.len() + diff.unchanged,
                    old.intersection(&new).count()
                );
                // Applying the diff to the previous snapshot gives exactly the new read.
                let mut replayed = previous.clone();
                for gone in &diff.missing {
                    replayed.remove(&gone.user.user_id);
                }
                for user in diff.appeared.iter().chain(diff.changed.iter().map(|(_, a)| a)) {
                    replayed.insert(user.user.user_id.clone(), user.clone());
                }
                let expected: BTreeMap<_, _> =
                    now.iter().map(|(id, u)| (id.clone(), snapshot_of(u))).collect();
                prop_assert_eq!(replayed, expected);
            }
        }
    }
}
