//! Version vectors: what a replica has seen.

use std::cmp::Ordering;
use std::ops::Range;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::wire::{ReadError, Reader, put_replica, put_varint};
use crate::{DecodeError, OpId, ReplicaId};

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

/// Bytes and text.
///
/// ```text
/// version = varint n · n × (replica (16 bytes) · varint next seq), by replica, no zeros
/// ```
///
/// The same layout as the version vectors in `chorus-sync`'s frames. The text form is
/// those bytes in URL-safe base64 without padding, so a URL can name a version
/// (`?version=…`); the empty version is `AA`.
impl VersionVector {
    /// Appends this version's bytes to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        put_varint(out, self.entries.len() as u64);
        for &(r, next) in &self.entries {
            put_replica(out, r);
            put_varint(out, next);
        }
    }

    /// This version's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + 18 * self.entries.len());
        self.write_to(&mut out);
        out
    }

    /// Reads a version from `r`: entries sorted by replica, none of them 0.
    pub fn read_from(r: &mut Reader<'_>) -> Result<Self, ReadError> {
        // Each entry takes at least 17 bytes.
        let n = r.count(17)?;
        let mut entries = Vec::with_capacity(n);
        let mut prev: Option<ReplicaId> = None;
        for _ in 0..n {
            let replica = r.replica()?;
            let next = r.varint()?;
            if prev.is_some_and(|p| p >= replica) {
                return Err(ReadError::Malformed("version vector not sorted by replica"));
            }
            if next == 0 {
                return Err(ReadError::Malformed("version vector entry of 0"));
            }
            prev = Some(replica);
            entries.push((replica, next));
        }
        Ok(VersionVector { entries })
    }

    /// A version from its bytes ([`to_bytes`](Self::to_bytes)); nothing may follow.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let v = Self::read_from(&mut r)?;
        r.finish()?;
        Ok(v)
    }

    /// This version as URL-safe text.
    pub fn to_text(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.to_bytes())
    }

    /// A version from its text ([`to_text`](Self::to_text)).
    pub fn from_text(text: &str) -> Result<Self, DecodeError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(text.trim())
            .map_err(|_| DecodeError::Malformed("a version's text is not URL-safe base64"))?;
        Self::from_bytes(&bytes)
    }
}

impl std::str::FromStr for VersionVector {
    type Err = DecodeError;

    fn from_str(s: &str) -> Result<Self, DecodeError> {
        Self::from_text(s)
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
    fn bytes_and_text_round_trip() {
        for v in [
            VersionVector::new(),
            [(r(1), 3)].into_iter().collect(),
            [(r(7), u64::MAX), (r(2), 1), (r(u128::MAX), 300)]
                .into_iter()
                .collect(),
        ] {
            assert_eq!(VersionVector::from_bytes(&v.to_bytes()), Ok(v.clone()));
            let text = v.to_text();
            assert!(
                text.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            );
            assert_eq!(text.parse::<VersionVector>(), Ok(v.clone()));
        }
        assert_eq!(VersionVector::new().to_text(), "AA");
    }

    #[test]
    fn malformed_versions_are_refused() {
        let good: VersionVector = [(r(1), 3), (r(2), 1)].into_iter().collect();
        let bytes = good.to_bytes();
        for cut in 0..bytes.len() {
            assert!(
                VersionVector::from_bytes(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(VersionVector::from_bytes(&extra).is_err());
        // Out of order, and a zero entry.
        let mut swapped = vec![2];
        swapped.extend_from_slice(r(2).as_bytes());
        swapped.push(1);
        swapped.extend_from_slice(r(1).as_bytes());
        swapped.push(1);
        assert!(VersionVector::from_bytes(&swapped).is_err());
        let mut zero = vec![1];
        zero.extend_from_slice(r(1).as_bytes());
        zero.push(0);
        assert!(VersionVector::from_bytes(&zero).is_err());
        for text in ["", "!!", "AAA=", "not a version"] {
            assert!(VersionVector::from_text(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn zero_entries_are_absent() {
        let mut a = VersionVector::new();
        a.observe(r(1), 0);
        assert_eq!(a, VersionVector::new());
        assert!(a.is_empty());
    }
}
