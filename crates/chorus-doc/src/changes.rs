//! Change metadata: the optional message and wall-clock time of a committed change.
//!
//! A change is one committed transaction: a range of one replica's sequence numbers.
//! Its metadata is kept beside the op log, keyed by that range, and travels in
//! updates with the operations it describes (see `PROTOCOL.md`, format version 3).
//! The core never reads a clock: the time is whatever the committer passed.
//!
//! Records never overlap within one replica. A record that overlaps one already held
//! is ignored (the first one wins), so applying the same update twice, or records
//! arriving along several paths, changes nothing.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use crate::ReplicaId;

/// The metadata of one change, as kept and as carried in updates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ChangeMeta {
    pub replica: ReplicaId,
    /// The change's sequence numbers: `seq..seq + len`, `len ≥ 1`.
    pub seq: u64,
    pub len: u64,
    /// Milliseconds since the Unix epoch, as the committer said.
    pub time: Option<u64>,
    pub message: Option<Arc<str>>,
}

impl ChangeMeta {
    pub fn end(&self) -> u64 {
        self.seq + self.len
    }

    pub fn seqs(&self) -> Range<u64> {
        self.seq..self.end()
    }
}

/// Every change record this replica holds, by replica, sorted by sequence number.
#[derive(Clone, Debug, Default)]
pub(crate) struct ChangeTable {
    by_replica: HashMap<ReplicaId, Vec<ChangeMeta>>,
    count: usize,
}

impl ChangeTable {
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Adds `meta` unless it overlaps a record of its replica; whether it was added.
    pub fn insert(&mut self, meta: ChangeMeta) -> bool {
        if meta.len == 0 || meta.seq.checked_add(meta.len).is_none() {
            return false;
        }
        let list = self.by_replica.entry(meta.replica).or_default();
        let i = list.partition_point(|m| m.end() <= meta.seq);
        if list.get(i).is_some_and(|m| m.seq < meta.end()) {
            return false;
        }
        list.insert(i, meta);
        self.count += 1;
        true
    }

    /// The records of `replica` that overlap `seqs`, in order.
    pub fn overlapping(
        &self,
        replica: &ReplicaId,
        seqs: Range<u64>,
    ) -> impl Iterator<Item = &ChangeMeta> + '_ {
        let list = self.by_replica.get(replica).map_or(&[][..], Vec::as_slice);
        let i = list.partition_point(|m| m.end() <= seqs.start);
        list[i..].iter().take_while(move |m| m.seq < seqs.end)
    }

    /// Whether the table keeps its invariants: per replica sorted, non-empty,
    /// non-overlapping ranges, and the count right.
    pub fn check(&self) -> Result<(), String> {
        let mut n = 0;
        for (r, list) in &self.by_replica {
            for (i, m) in list.iter().enumerate() {
                if m.replica != *r || m.len == 0 {
                    return Err(format!("change record {i} of {r} is malformed"));
                }
                if i > 0 && list[i - 1].end() > m.seq {
                    return Err(format!("change records of {r} overlap at seq {}", m.seq));
                }
            }
            n += list.len();
        }
        if n != self.count {
            return Err(format!(
                "change table counts {} records, holds {n}",
                self.count
            ));
        }
        Ok(())
    }
}

/// What a commit records besides its operations: an optional message and an
/// optional wall-clock time (milliseconds since the Unix epoch; the document reads no
/// clock).
///
/// ```
/// use chorus_doc::{CommitOptions, Doc, ReplicaId};
///
/// let mut doc = Doc::new(ReplicaId::from_u128(1));
/// let mut tx = doc.transact();
/// tx.text("body").insert(0, "Hello").unwrap();
/// tx.commit_with(CommitOptions::new().message("Greeting").time(1_700_000_000_000));
/// let blame = doc.text("body").blame(0..5).unwrap();
/// assert_eq!(blame[0].change.message.as_deref(), Some("Greeting"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommitOptions {
    /// A description of the change, for history listings.
    pub message: Option<String>,
    /// When the change was made, in milliseconds since the Unix epoch.
    pub time: Option<u64>,
}

impl CommitOptions {
    /// No message and no time.
    pub fn new() -> Self {
        Self::default()
    }

    /// With this message.
    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// With this time (milliseconds since the Unix epoch).
    pub fn time(mut self, ms: u64) -> Self {
        self.time = Some(ms);
        self
    }

    /// Whether there is anything to record.
    pub(crate) fn is_empty(&self) -> bool {
        self.message.is_none() && self.time.is_none()
    }
}

/// One change as history shows it: who made it, its operations, and its metadata.
///
/// For operations that arrived without metadata (from a replica that recorded none)
/// the change boundaries are unknown; such a `ChangeInfo` covers the consecutive
/// operations at hand and has neither time nor message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeInfo {
    /// The replica that made it.
    pub replica: ReplicaId,
    /// Its sequence numbers.
    pub seqs: Range<u64>,
    /// The Lamport timestamp of its first operation.
    pub lamport: u64,
    /// When it was made, in milliseconds since the Unix epoch, if recorded.
    pub time: Option<u64>,
    /// Its message, if recorded.
    pub message: Option<Arc<str>>,
}

/// A stretch of visible text inserted by one change; see
/// [`TextView::blame`](crate::TextView::blame).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlameRun {
    /// The chars of the stretch (char positions, or UTF-16 code units from
    /// [`blame_utf16`](crate::TextView::blame_utf16)).
    pub range: Range<usize>,
    /// The change that inserted them.
    pub change: ChangeInfo,
}

/// Consecutive changes by one writer close together in time; see [`Doc::history`](crate::Doc::history).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryGroup {
    /// The writer.
    pub replica: ReplicaId,
    /// Its changes, in the order this replica applied them.
    pub changes: Vec<ChangeInfo>,
    /// Text chars and list items inserted.
    pub inserted: u64,
    /// Text chars and list items deleted (or brought back, by undo).
    pub deleted: u64,
    /// Counter, register and map operations.
    pub other: u64,
    /// The document's version just after this group, in the order this replica
    /// applied operations: open it with [`Doc::at`](crate::Doc::at).
    pub version: crate::VersionVector,
}

impl HistoryGroup {
    /// The earliest recorded time of its changes.
    pub fn first_time(&self) -> Option<u64> {
        self.changes.iter().filter_map(|c| c.time).min()
    }

    /// The latest recorded time of its changes.
    pub fn last_time(&self) -> Option<u64> {
        self.changes.iter().filter_map(|c| c.time).max()
    }
}
