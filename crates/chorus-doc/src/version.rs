//! Version vectors: what a replica has seen.

use std::cmp::Ordering;
use std::ops::Range;

use crate::{OpId, ReplicaId};

/// The operations a replica has seen, as `replica → next sequence number`.
///
/// Because every replica numbers its operations without gaps, "has seen ops
/// `0..n` of replica r" is the whole story; a replica that is absent maps to 0.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct VersionVector {
    // Sorted by replica; entries are never 0: absent and 0 mean the same, and keeping
    // only non-zero entries makes equality structural. A sorted vector: versions name
    // few replicas, and are read far more often than they gain one.
    entries: Vec<(ReplicaId, u64)>,
}

/// How two version vectors relate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Causality {
    /// Both have seen exactly the same operations.
    Equal,
    /// `self` has seen a strict subset of what `other` has.
    Before,
    /// `self` has seen a strict superset of what `other` has.
    After,
    /// Each has seen something the other has not.
    Concurrent,
}

impl VersionVector {
    /// The empty version: nothing seen.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next sequence number expected from `replica` (the number of its ops seen).
    pub fn get(&self, replica: &ReplicaId) -> u64 {
        match self.entries.binary_search_by(|(r, _)| r.cmp(replica)) {
            Ok(i) => self.entries[i].1,
            Err(_) => 0,
        }
    }

    /// Records that ops `0..next` of `replica` have been seen (never lowers an entry).
    pub fn observe(&mut self, replica: ReplicaId, next: u64) {
        if next == 0 {
            return;
        }
        match self.entries.binary_search_by(|(r, _)| r.cmp(&replica)) {
            Ok(i) => {
                let e = &mut self.entries[i].1;
                if *e < next {
                    *e = next;
                }
            }
            Err(i) => self.entries.insert(i, (replica, next)),
        }
    }

    /// Like [`observe`](Self::observe), trying slot `*hint` first and leaving there
    /// the slot of `replica`: a caller that keeps updating one replica's entry does
    /// it without a search.
    pub(crate) fn observe_hinted(&mut self, replica: ReplicaId, next: u64, hint: &mut usize) {
        if let Some((r, n)) = self.entries.get_mut(*hint) {
            if *r == replica {
                if *n < next {
                    *n = next;
                }
                return;
            }
        }
        self.observe(replica, next);
        if let Ok(i) = self.entries.binary_search_by(|(r, _)| r.cmp(&replica)) {
            *hint = i;
        }
    }

    /// Whether the operation `id` has been seen.
    pub fn includes(&self, id: &OpId) -> bool {
        id.seq < self.get(&id.replica)
    }

    /// Whether everything `other` has seen, `self` has seen too.
    pub fn dominates(&self, other: &VersionVector) -> bool {
        other.entries.iter().all(|(r, n)| self.get(r) >= *n)
    }

    /// Compares two versions in the causal (partial) order.
    pub fn compare(&self, other: &VersionVector) -> Causality {
        match (self.dominates(other), other.dominates(self)) {
            (true, true) => Causality::Equal,
            (true, false) => Causality::After,
            (false, true) => Causality::Before,
            (false, false) => Causality::Concurrent,
        }
    }

    /// The causal order as a `PartialOrd`-style answer (`None` when concurrent).
    pub fn partial_cmp_causal(&self, other: &VersionVector) -> Option<Ordering> {
        match self.compare(other) {
            Causality::Equal => Some(Ordering::Equal),
            Causality::Before => Some(Ordering::Less),
            Causality::After => Some(Ordering::Greater),
            Causality::Concurrent => None,
        }
    }

    /// Merges `other` into `self`: afterwards `self` includes everything either had seen.
    pub fn merge(&mut self, other: &VersionVector) {
        for &(r, n) in &other.entries {
            self.observe(r, n);
        }
    }

    /// The ops `self` has that `other` lacks, as sequence ranges per replica
    /// (sorted by replica id).
    pub fn missing_from(&self, other: &VersionVector) -> Vec<(ReplicaId, Range<u64>)> {
        self.entries
            .iter()
            .filter_map(|&(r, n)| {
                let have = other.get(&r);
                (have < n).then_some((r, have..n))
            })
            .collect()
    }

    /// Iterates `(replica, next seq)` in replica order; replicas never seen are skipped.
    pub fn iter(&self) -> impl Iterator<Item = (ReplicaId, u64)> + '_ {
        self.entries.iter().copied()
    }

    /// The number of replicas with at least one op seen.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing has been seen.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The total number of operations seen.
    pub fn total_ops(&self) -> u64 {
        self.entries.iter().map(|(_, n)| n).sum()
    }
}

impl std::fmt::Debug for VersionVector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|(r, n)| (r, n)))
            .finish()
    }
}

impl FromIterator<(ReplicaId, u64)> for VersionVector {
    fn from_iter<T: IntoIterator<Item = (ReplicaId, u64)>>(iter: T) -> Self {
        let mut v = Self::new();
        for (r, n) in iter {
            v.observe(r, n);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(n: u128) -> ReplicaId {
        ReplicaId::from_u128(n)
    }

    #[test]
    fn compare_and_merge() {
        let a: VersionVector = [(r(1), 3), (r(2), 1)].into_iter().collect();
        let b: VersionVector = [(r(1), 2), (r(3), 4)].into_iter().collect();
        assert_eq!(a.compare(&b), Causality::Concurrent);
        let mut m = a.clone();
        m.merge(&b);
        assert_eq!(m.get(&r(1)), 3);
        assert_eq!(m.get(&r(3)), 4);
        assert_eq!(a.compare(&m), Causality::Before);
        assert_eq!(m.compare(&a), Causality::After);
        assert_eq!(m.compare(&m.clone()), Causality::Equal);
        assert!(m.includes(&OpId::new(r(3), 3)));
        assert!(!m.includes(&OpId::new(r(3), 4)));
        assert_eq!(
            m.missing_from(&a),
            vec![(r(3), 0..4)],
            "a lacks all of replica 3"
        );
        assert_eq!(a.missing_from(&m), vec![]);
    }

    #[test]
    fn zero_entries_are_absent() {
        let mut a = VersionVector::new();
        a.observe(r(1), 0);
        assert_eq!(a, VersionVector::new());
        assert!(a.is_empty());
    }
}
