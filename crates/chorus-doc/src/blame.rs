//! Blame and the history listing: who made what, read from the log and the change
//! records (see `changes.rs`).

use std::ops::Range;

use crate::ReplicaId;
use crate::changes::{BlameRun, ChangeInfo, ChangeMeta, HistoryGroup};

/// One stretch of a single replica's ops that lies in one change (or in no recorded
/// change), as found walking the log.
struct Piece<'a> {
    replica: ReplicaId,
    seq: u64,
    len: u64,
    lamport: u64,
    meta: Option<&'a ChangeMeta>,
}

impl Piece<'_> {
    /// Whether this piece belongs to change `c`: the same record, or (without one)
    /// the ops right after `c`'s, by the same replica, neither with metadata.
    fn continues(&self, c: &ChangeInfo) -> bool {
        match self.meta {
            Some(m) => c.replica == m.replica && c.seqs.start == m.seq,
            None => {
                c.replica == self.replica
                    && c.time.is_none()
                    && c.message.is_none()
                    && c.seqs.end == self.seq
            }
        }
    }
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
                let same_change = |c: &ChangeInfo| p.continues(c);
                let time = p.meta.and_then(|m| m.time);
                let joins = groups
                    .last()
                    .and_then(|g| Some((g, g.changes.last()?)))
                    .is_some_and(|(g, last)| {
                        g.replica == p.replica
                            && (same_change(last)
                                || match (last.time, time) {
                                    (Some(a), Some(b)) => a.abs_diff(b) <= gap_ms,
                                    (None, None) => true,
                                    _ => false,
                                })
                    });
                let g = match groups.last_mut() {
                    Some(g) if joins => g,
                    last => {
                        if let Some(g) = last {
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
                        let n = groups.len();
                        &mut groups[n - 1]
                    }
                };
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
            .find_visible(range.start as u32, Unit::Char, &doc.log.content)?
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
                        let joins = out.last().is_some_and(|b| p.continues(&b.change));
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
