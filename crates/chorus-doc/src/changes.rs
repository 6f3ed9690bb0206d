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

// ---------------------------------------------------------------- blame and listing

/// One stretch of a single replica's ops that lies in one change (or in no recorded
/// change), as found walking the log.
struct Piece<'a> {
    replica: ReplicaId,
    seq: u64,
    len: u64,
    lamport: u64,
    meta: Option<&'a ChangeMeta>,
}

impl crate::Doc {
    /// Splits `lv..lv + len` (ops of one log entry) by change record and calls `each`.
    fn change_pieces<'a>(
        &'a self,
        entry: &crate::oplog::Entry,
        lv: crate::tree::Lv,
        len: u32,
        mut each: impl FnMut(Piece<'a>),
    ) {
        let log = &self.log;
        let replica = log.agents[entry.agent as usize].id;
        let (_, seq) = log.id_of(lv);
        let lamport = entry.lamport + u64::from(lv - entry.lv);
        let end = seq + u64::from(len);
        let mut at = seq;
        for m in log.changes.overlapping(&replica, seq..end) {
            if m.seq > at {
                each(Piece {
                    replica,
                    seq: at,
                    len: m.seq - at,
                    lamport: lamport + (at - seq),
                    meta: None,
                });
                at = m.seq;
            }
            let stop = m.end().min(end);
            each(Piece {
                replica,
                seq: at,
                len: stop - at,
                lamport: lamport + (at - seq),
                meta: Some(m),
            });
            at = stop;
        }
        if at < end {
            each(Piece {
                replica,
                seq: at,
                len: end - at,
                lamport: lamport + (at - seq),
                meta: None,
            });
        }
    }

    /// The change a piece belongs to: the recorded one, or just the piece's ops.
    fn change_info(&self, p: &Piece<'_>) -> ChangeInfo {
        match p.meta {
            Some(m) => {
                let lamport = self
                    .log
                    .find(&m.replica)
                    .and_then(|a| self.log.lv_of(a, m.seq))
                    .map(|lv| {
                        let e = &self.log.entries[self.log.entry_index(lv)];
                        e.lamport + u64::from(lv - e.lv)
                    })
                    .unwrap_or(p.lamport);
                ChangeInfo {
                    replica: m.replica,
                    seqs: m.seqs(),
                    lamport,
                    time: m.time,
                    message: m.message.clone(),
                }
            }
            None => ChangeInfo {
                replica: p.replica,
                seqs: p.seq..p.seq + p.len,
                lamport: p.lamport,
                time: None,
                message: None,
            },
        }
    }

    /// The changes this document holds, grouped for a history view: consecutive
    /// changes (in the order they were applied here) by one writer whose recorded
    /// times lie at most `gap_ms` apart form one group. Changes that carry no time
    /// group with neighbours by the same writer that carry none either.
    ///
    /// Each group's [`version`](HistoryGroup::version) is the document just after it,
    /// which [`Doc::at`](crate::Doc::at) opens. Takes time linear in the log's entries.
    pub fn history(&self, gap_ms: u64) -> Vec<HistoryGroup> {
        let mut groups: Vec<HistoryGroup> = Vec::new();
        let mut vv = crate::VersionVector::new();
        for e in &self.log.entries {
            let kind = match e.op {
                crate::oplog::Op::Insert { .. } => 0,
                crate::oplog::Op::Delete { .. } | crate::oplog::Op::Undelete { .. } => 1,
                crate::oplog::Op::Atom { .. } => 2,
            };
            self.change_pieces(e, e.lv, e.len, |p| {
                let same_change = |c: &ChangeInfo| match p.meta {
                    Some(m) => c.replica == m.replica && c.seqs.start == m.seq,
                    None => {
                        c.replica == p.replica
                            && c.time.is_none()
                            && c.message.is_none()
                            && c.seqs.end == p.seq
                    }
                };
                let time = p.meta.and_then(|m| m.time);
                let joins = groups.last().is_some_and(|g| {
                    let last = g.changes.last().expect("groups are never empty");
                    g.replica == p.replica
                        && (same_change(last)
                            || match (last.time, time) {
                                (Some(a), Some(b)) => a.abs_diff(b) <= gap_ms,
                                (None, None) => true,
                                _ => false,
                            })
                });
                if !joins {
                    if let Some(g) = groups.last_mut() {
                        g.version = vv.clone();
                    }
                    groups.push(HistoryGroup {
                        replica: p.replica,
                        changes: Vec::new(),
                        inserted: 0,
                        deleted: 0,
                        other: 0,
                        version: crate::VersionVector::new(),
                    });
                }
                let g = groups.last_mut().expect("just pushed");
                match g.changes.last_mut() {
                    Some(c) if same_change(c) => {
                        if p.meta.is_none() {
                            c.seqs.end = p.seq + p.len;
                        }
                    }
                    _ => g.changes.push(self.change_info(&p)),
                }
                match kind {
                    0 => g.inserted += p.len,
                    1 => g.deleted += p.len,
                    _ => g.other += p.len,
                }
                vv.observe(p.replica, p.seq + p.len);
            });
        }
        if let Some(g) = groups.last_mut() {
            g.version = vv;
        }
        groups
    }
}

impl crate::TextView<'_> {
    /// Who inserted the visible chars in `range` (char positions), and in which
    /// change: runs of consecutive chars from one change, in text order, covering
    /// `range` exactly.
    pub fn blame(&self, range: Range<usize>) -> Result<Vec<BlameRun>, crate::EditError> {
        use crate::tree::{Cur, Unit};
        let len = self.len();
        if range.start > range.end || range.end > len {
            return Err(crate::EditError::OutOfRange {
                pos: range.end.max(range.start),
                len,
            });
        }
        let mut out: Vec<BlameRun> = Vec::new();
        let Some(field) = self.field else {
            return Ok(out);
        };
        if range.is_empty() {
            return Ok(out);
        }
        let doc = self.doc;
        let tree = self.branch.seq(field);
        let (mut cur, _) = tree
            .find_visible(range.start as u32, Unit::Char, &doc.content)?
            .ok_or(crate::EditError::OutOfRange {
                pos: range.start,
                len,
            })?;
        let mut pos = range.start;
        while pos < range.end {
            let r = *tree.run(cur.leaf, cur.idx);
            if !r.deleted() {
                let take = (r.len - cur.off).min((range.end - pos) as u32);
                let mut lv = r.lv + cur.off;
                let stop = lv + take;
                while lv < stop {
                    let e = &doc.log.entries[doc.log.entry_index(lv)];
                    let n = (e.end().min(stop)) - lv;
                    doc.change_pieces(e, lv, n, |p| {
                        let chars = p.len as usize;
                        let joins = out.last().is_some_and(|b| {
                            let c = &b.change;
                            match p.meta {
                                Some(m) => c.replica == m.replica && c.seqs.start == m.seq,
                                None => {
                                    c.replica == p.replica
                                        && c.time.is_none()
                                        && c.message.is_none()
                                        && c.seqs.end == p.seq
                                }
                            }
                        });
                        match out.last_mut() {
                            Some(b) if joins => {
                                b.range.end += chars;
                                if p.meta.is_none() {
                                    b.change.seqs.end = p.seq + p.len;
                                }
                            }
                            _ => out.push(BlameRun {
                                range: pos..pos + chars,
                                change: doc.change_info(&p),
                            }),
                        }
                        pos += chars;
                    });
                    lv += n;
                }
            }
            cur = tree.normalize(Cur {
                leaf: cur.leaf,
                idx: cur.idx + 1,
                off: 0,
            });
        }
        Ok(out)
    }

    /// [`blame`](Self::blame) in UTF-16 code units, for both `range` and the runs.
    pub fn blame_utf16(&self, range: Range<usize>) -> Result<Vec<BlameRun>, crate::EditError> {
        let chars = self.utf16_to_char(range.start)?..self.utf16_to_char(range.end)?;
        let mut runs = self.blame(chars)?;
        for b in &mut runs {
            b.range = self.char_to_utf16(b.range.start)?..self.char_to_utf16(b.range.end)?;
        }
        Ok(runs)
    }
}
