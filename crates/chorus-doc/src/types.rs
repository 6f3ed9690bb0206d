//! Container types and the conflict rules an application picks per field.

use std::fmt;
use std::sync::Arc;

use crate::{OpId, ReplicaId, Value};

/// The type of a container: what it holds and how concurrent edits merge.
///
/// A container is named by its parent (the document root or a map), its name there
/// and its kind, so the same name created concurrently with the same kind on two
/// replicas is one container that merges both replicas' edits.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Replicated text (FugueMax sequence of characters).
    Text,
    /// A list of [`Value`]s, ordered like text.
    List,
    /// String keys to values or nested containers.
    Map,
    /// A PN-counter: the sum of every replica's increments and decrements.
    Counter,
    /// One value, with the conflict rule chosen when the field is created.
    Register(Rule),
}

/// How a register resolves concurrent writes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    /// Last writer wins, by (hybrid logical clock, replica id). A write that has seen
    /// another always wins over it, whatever the wall clocks said.
    Lww,
    /// Concurrent writes are all kept and exposed as a conflict; a write that has
    /// seen them (a resolution) supersedes them all.
    MultiValue,
    /// The register holds the merge of every value written, by the named
    /// [`MergeRule`](crate::MergeRule): `"max"`, `"min"` and `"union"` are built in,
    /// others are registered with [`Doc::add_merge_rule`](crate::Doc::add_merge_rule).
    Merge(Arc<str>),
}

impl Rule {
    /// The merge rule named `name` (built-in: `"max"`, `"min"`, `"union"`).
    pub fn merge(name: &str) -> Rule {
        Rule::Merge(name.into())
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Text => f.write_str("text"),
            Kind::List => f.write_str("list"),
            Kind::Map => f.write_str("map"),
            Kind::Counter => f.write_str("counter"),
            Kind::Register(Rule::Lww) => f.write_str("register (last writer wins)"),
            Kind::Register(Rule::MultiValue) => f.write_str("register (multi-value)"),
            Kind::Register(Rule::Merge(n)) => write!(f, "register (merge by {n})"),
        }
    }
}

/// What a map key holds: a plain value or a nested container.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MapValue {
    /// A plain value.
    Value(Value),
    /// The nested container of this kind under this key (read it through the map's
    /// typed accessors, such as [`MapView::text`](crate::MapView::text)).
    Container(Kind),
}

/// One write that a register or map key currently holds, with who made it and when.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Write<V> {
    /// The written value.
    pub value: V,
    /// The write's operation id.
    pub id: OpId,
    /// The replica that wrote it.
    pub replica: ReplicaId,
    /// For registers, the physical time (milliseconds) of the writer's hybrid logical
    /// clock; for map keys, 0 (map writes are ordered by Lamport timestamp).
    pub time_ms: u64,
    /// The Lamport timestamp of the write.
    pub lamport: u64,
}

/// A container's identity as carried in updates: its parent, name and kind.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct FieldKey {
    pub parent: Option<Arc<FieldKey>>,
    pub name: Arc<str>,
    pub kind: Kind,
}

/// Hybrid logical clock stamps, packed in a `u64`: milliseconds since the Unix epoch in
/// the high 48 bits, a logical counter in the low 16.
pub(crate) mod hlc {
    const LOGICAL_BITS: u32 = 16;
    const MAX_MS: u64 = (1 << 48) - 1;

    /// The next stamp after `last` at physical time `now_ms`.
    pub fn next(last: u64, now_ms: u64) -> u64 {
        let wall = now_ms.min(MAX_MS) << LOGICAL_BITS;
        wall.max(last.saturating_add(1))
    }

    /// The physical time of a stamp, in milliseconds.
    pub fn millis(stamp: u64) -> u64 {
        stamp >> LOGICAL_BITS
    }
}
