//! Identity: who made an operation, and which one it was.

use std::fmt;

/// A replica: one running copy of a document, named by a random 128-bit id (uuid v4).
///
/// Two replicas must never share an id while both are writing: every operation a
/// replica makes is named `(replica, seq)`, and a reused id would make two different
/// operations look like one.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ReplicaId([u8; 16]);

// Ordering and hashing go through the id as one number: the same order as the bytes,
// without a byte-wise comparison.
impl Ord for ReplicaId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_u128().cmp(&other.as_u128())
    }
}

impl PartialOrd for ReplicaId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl std::hash::Hash for ReplicaId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u128(self.as_u128());
    }
}

impl ReplicaId {
    /// A fresh random id (uuid v4). Call it once per replica and keep it for as long
    /// as that replica's state is kept.
    pub fn random() -> Self {
        Self(*uuid::Uuid::new_v4().as_bytes())
    }

    /// The id made of these 16 bytes (as sent on the wire).
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The id as a number; handy for deterministic tests.
    pub const fn from_u128(value: u128) -> Self {
        Self(value.to_be_bytes())
    }

    /// The 16 bytes of this id, as sent on the wire.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The id as a number (big-endian bytes); ordering by it equals ordering by bytes.
    pub const fn as_u128(&self) -> u128 {
        u128::from_be_bytes(self.0)
    }
}

impl fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&uuid::Uuid::from_bytes(self.0).hyphenated(), f)
    }
}

impl fmt::Debug for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReplicaId({self})")
    }
}

impl std::str::FromStr for ReplicaId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(*uuid::Uuid::parse_str(s)?.as_bytes()))
    }
}

/// The id of one operation: the replica that made it and its sequence number there.
///
/// A replica numbers its operations 0, 1, 2, … without gaps, so the set of
/// operations seen from one replica is always a prefix, and a [`VersionVector`]
/// describes exactly what a replica has seen.
///
/// [`VersionVector`]: crate::VersionVector
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId {
    /// The replica that made the operation.
    pub replica: ReplicaId,
    /// Its position in that replica's sequence of operations.
    pub seq: u64,
}

impl OpId {
    /// The operation `seq` of `replica`.
    pub const fn new(replica: ReplicaId, seq: u64) -> Self {
        Self { replica, seq }
    }
}

impl fmt::Debug for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.seq, self.replica)
    }
}

impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A map from replica ids to dense indexes, for the few replicas an update or a
/// plan names: a scan while small, a hash map once large (so that many replicas
/// cannot make lookups quadratic).
#[derive(Clone, Debug, Default)]
pub(crate) struct ReplicaIndex {
    ids: Vec<ReplicaId>,
    map: std::collections::HashMap<ReplicaId, usize>,
}

impl ReplicaIndex {
    const SCAN: usize = 16;

    pub fn get(&self, id: &ReplicaId) -> Option<usize> {
        if self.ids.len() <= Self::SCAN {
            self.ids.iter().position(|x| x == id)
        } else {
            self.map.get(id).copied()
        }
    }

    /// The index of `id`, added at the end if new; and whether it was new.
    pub fn insert(&mut self, id: ReplicaId) -> (usize, bool) {
        if let Some(i) = self.get(&id) {
            return (i, false);
        }
        self.ids.push(id);
        let i = self.ids.len() - 1;
        if self.ids.len() > Self::SCAN {
            if self.map.is_empty() {
                self.map
                    .extend(self.ids.iter().enumerate().map(|(k, r)| (*r, k)));
            } else {
                self.map.insert(id, i);
            }
        }
        (i, true)
    }

    pub fn ids(&self) -> &[ReplicaId] {
        &self.ids
    }
}
