//! The operation log: every operation applied here, in the order it was applied.
//!
//! Operations are numbered by local version (LV) in application order, which is a
//! causal order: an operation is only applied after everything it depends on. The
//! log is run-length encoded: one [`Entry`] covers a stretch of consecutive operations
//! by one replica that continue each other (typing, backspacing).
//!
//! The log is the source of truth; the run trees of the fields are derived from it
//! (and can be rebuilt from it, which is how an uncommitted transaction rolls back).

use std::collections::HashMap;

use std::sync::Arc;

use crate::changes::{ChangeMeta, ChangeTable};
use crate::encoding::{Content, WireOp, WireRun};
use crate::tree::Lv;
use crate::tree::NONE;
use crate::types::FieldKey;
use crate::{Kind, MapValue, OpId, ReplicaId, Value, VersionVector};
use std::collections::HashSet;

/// What a stretch of operations does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// Inserts `len` chars; char `k > 0` has char `k - 1` as its left origin.
    Insert {
        origin_left: Lv,
        origin_right: Lv,
        byte_start: u32,
        byte_len: u32,
    },
    /// Deletes `len` items: `target, target + 1, …` or, backward, `target, target - 1, …`.
    Delete { target: Lv, backward: bool },
    /// One counter, register or map operation: `OpLog::atoms[idx]` (its length is 1).
    Atom { idx: u32 },
    /// Undoes `len` delete ops: `target, target + 1, …` (an undo of a delete).
    Undelete { target: Lv },
}

/// A counter, register or map operation.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Atom {
    /// Adds to a counter (wrapping on overflow, so the sum is order-independent).
    Add(i64),
    /// Writes a register (no key) or a map key; `value: None` deletes a map key.
    /// `preds` are the writes it supersedes (those its writer saw).
    Set {
        key: Option<Arc<str>>,
        value: Option<MapValue>,
        hlc: u64,
        preds: Box<[Lv]>,
    },
}

/// A run of consecutive operations by one replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub lv: Lv,
    pub len: u32,
    pub agent: u32,
    pub lamport: u64,
    pub field: u32,
    pub op: Op,
}

impl Entry {
    pub fn end(&self) -> Lv {
        self.lv + self.len
    }

    /// The lowest and highest LV targeted by a delete entry.
    pub fn delete_targets(&self) -> Option<(Lv, Lv)> {
        match self.op {
            Op::Delete { target, backward } => Some(if backward {
                (target + 1 - self.len, target)
            } else {
                (target, target + self.len - 1)
            }),
            Op::Insert { .. } | Op::Atom { .. } | Op::Undelete { .. } => None,
        }
    }
}

/// One stretch of a replica's sequence numbers and the LVs they got here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SeqSpan {
    pub seq: u64,
    pub lv: Lv,
    pub len: u32,
}

#[derive(Clone, Debug)]
pub(crate) struct Agent {
    pub id: ReplicaId,
    /// Sorted by seq; together they cover `0..next_seq` without gaps.
    pub spans: Vec<SeqSpan>,
}

impl Agent {
    pub fn next_seq(&self) -> u64 {
        self.spans.last().map_or(0, |s| s.seq + u64::from(s.len))
    }
}

/// "No parent": a field of the document root.
pub(crate) const ROOT: u32 = u32::MAX;

#[derive(Clone, Debug)]
pub(crate) struct Field {
    /// The map this field belongs to, or [`ROOT`].
    pub parent: u32,
    pub name: Arc<str>,
    pub kind: Kind,
    /// The field's identity in updates.
    pub key: Arc<FieldKey>,
}

impl Field {
    pub fn is(&self, parent: u32, name: &str, kind: &Kind) -> bool {
        self.parent == parent && *self.name == *name && self.kind == *kind
    }
}

/// The agent index of the document's own replica (interned first).
pub(crate) const LOCAL: u32 = 0;

#[derive(Clone, Debug, Default)]
pub(crate) struct OpLog {
    pub agents: Vec<Agent>,
    pub agent_index: HashMap<ReplicaId, u32>,
    pub entries: Vec<Entry>,
    pub version: VersionVector,
    /// The counter, register and map operations, in LV order.
    pub atoms: Vec<Atom>,
    /// The highest Lamport timestamp seen (0 before any op; ops start at 1).
    pub max_lamport: u64,
    /// Where in `version` the last refreshed replica's entry was.
    version_hint: usize,
    /// The metadata (time, message) of the changes that carried any.
    pub changes: ChangeTable,
    /// The text of every text insert, in LV order. Deleted text stays: the log needs it.
    pub content: String,
    /// The values of every list insert, in LV order (deleted ones too).
    pub elems: Vec<Value>,
    /// The highest hybrid logical clock stamp seen (register writes).
    pub hlc: u64,
    /// Every container, in the order they were first used here.
    pub fields: Vec<Field>,
    /// Field indexes by name (any parent, any kind).
    pub field_index: HashMap<(u32, u64), Vec<u32>>,
}

impl OpLog {
    pub fn next_lv(&self) -> Lv {
        self.entries.last().map_or(0, Entry::end)
    }

    /// Brings the version vector's entry for `agent` up to date.
    pub fn refresh_version(&mut self, agent: u32) {
        let a = &self.agents[agent as usize];
        let (id, next) = (a.id, a.next_seq());
        if next > 0 {
            self.version
                .observe_hinted(id, next, &mut self.version_hint);
        }
    }

    /// The index of replica `id`, if it is known here.
    pub fn find(&self, id: &ReplicaId) -> Option<u32> {
        // Most documents have a handful of replicas: comparing ids beats hashing.
        if self.agents.len() <= 8 {
            self.agents
                .iter()
                .position(|a| a.id == *id)
                .map(|a| a as u32)
        } else {
            self.agent_index.get(id).copied()
        }
    }

    pub fn intern(&mut self, id: ReplicaId) -> u32 {
        if let Some(a) = self.find(&id) {
            return a;
        }
        let a = self.agents.len() as u32;
        self.agents.push(Agent {
            id,
            spans: Vec::new(),
        });
        self.agent_index.insert(id, a);
        a
    }

    /// Appends `len` operations; the caller has checked that `seq` is the agent's next.
    pub fn push(&mut self, agent: u32, seq: u64, lamport: u64, field: u32, op: Op, len: u32) {
        let lv = self.next_lv();
        debug_assert_eq!(seq, self.agents[agent as usize].next_seq());
        let ag = &mut self.agents[agent as usize];
        // The op continues the replica's previous one here exactly when its span
        // grows; only then may it join the last entry.
        let continues = match ag.spans.last_mut() {
            Some(s) if s.lv + s.len == lv && s.seq + u64::from(s.len) == seq => {
                s.len += len;
                true
            }
            _ => {
                ag.spans.push(SeqSpan { seq, lv, len });
                false
            }
        };
        // The local replica's entry is refreshed once per transaction instead.
        if agent != LOCAL {
            let id = ag.id;
            self.version.observe(id, seq + u64::from(len));
        }
        self.max_lamport = self.max_lamport.max(lamport + u64::from(len) - 1);
        if let Some(last) = self.entries.last_mut() {
            if last.agent == agent
                && continues
                && last.lamport + u64::from(last.len) == lamport
                && last.field == field
            {
                let merged = match (&mut last.op, op) {
                    (
                        Op::Insert {
                            origin_right: r0,
                            byte_start: b0,
                            byte_len: l0,
                            ..
                        },
                        Op::Insert {
                            origin_left,
                            origin_right,
                            byte_start,
                            byte_len,
                        },
                    ) if origin_left == last.lv + last.len - 1
                        && origin_right == *r0
                        && byte_start == *b0 + *l0 =>
                    {
                        *l0 += byte_len;
                        true
                    }
                    (
                        Op::Delete {
                            target: t0,
                            backward: b0,
                        },
                        Op::Delete { target, backward },
                    ) => {
                        let n0 = last.len;
                        if !*b0 && !backward && target == *t0 + n0 {
                            true
                        } else if (*b0 || n0 == 1)
                            && len == 1
                            && !backward
                            && target.wrapping_add(n0) == *t0
                        {
                            *b0 = true;
                            true
                        } else {
                            false
                        }
                    }
                    (Op::Undelete { target: t0 }, Op::Undelete { target }) => {
                        target == *t0 + last.len
                    }
                    _ => false,
                };
                if merged {
                    last.len += len;
                    return;
                }
            }
        }
        crate::grow::reserve_one(&mut self.entries);
        self.entries.push(Entry {
            lv,
            len,
            agent,
            lamport,
            field,
            op,
        });
    }

    /// The counter, register or map op `lv` (which must be one).
    pub fn atom_at(&self, lv: Lv) -> &Atom {
        match self.entries[self.entry_index(lv)].op {
            Op::Atom { idx } => &self.atoms[idx as usize],
            _ => unreachable!("lv {lv} is not a counter, register or map op"),
        }
    }

    /// The index of the entry holding `lv`.
    pub fn entry_index(&self, lv: Lv) -> usize {
        self.entries.partition_point(|e| e.end() <= lv)
    }

    /// The replica and seq of operation `lv`.
    pub fn id_of(&self, lv: Lv) -> (u32, u64) {
        let e = &self.entries[self.entry_index(lv)];
        let spans = &self.agents[e.agent as usize].spans;
        let s = spans[spans.partition_point(|s| s.lv + s.len <= lv)];
        (e.agent, s.seq + u64::from(lv - s.lv))
    }

    /// The LV of operation `seq` of `agent`, if applied here.
    pub fn lv_of(&self, agent: u32, seq: u64) -> Option<Lv> {
        let spans = &self.agents.get(agent as usize)?.spans;
        let i = spans.partition_point(|s| s.seq + u64::from(s.len) <= seq);
        let s = spans.get(i)?;
        (seq >= s.seq).then(|| s.lv + (seq - s.seq) as u32)
    }

    /// The LVs of ops `seq..seq + len` of `agent`, as LV ranges (all must be applied).
    pub fn lv_ranges(&self, agent: u32, seq: u64, len: u64) -> smallvec_lite::Ranges {
        let mut out = smallvec_lite::Ranges::default();
        let spans = &self.agents[agent as usize].spans;
        let mut i = spans.partition_point(|s| s.seq + u64::from(s.len) <= seq);
        let mut seq = seq;
        let end = seq + len;
        while seq < end {
            let s = spans[i];
            let off = (seq - s.seq) as u32;
            let take = (u64::from(s.len - off)).min(end - seq) as u32;
            out.push((s.lv + off, take));
            seq += u64::from(take);
            i += 1;
        }
        out
    }

    /// Drops every operation from `lv` on (an uncommitted local transaction).
    /// `content` is the content arena, still holding the dropped inserts' text.
    pub fn truncate(&mut self, lv: Lv) {
        let content = &self.content;
        let i = self.entry_index(lv);
        self.entries.truncate(i + 1);
        if let Some(e) = self.entries.last_mut() {
            if e.lv >= lv {
                self.entries.pop();
            } else if e.end() > lv {
                let keep = lv - e.lv;
                if let Op::Insert {
                    byte_start,
                    byte_len,
                    ..
                } = &mut e.op
                {
                    // Runs of one byte per item (ASCII text, list elements) split
                    // without looking at the content.
                    *byte_len = if *byte_len == e.len {
                        keep
                    } else {
                        let text = &content[*byte_start as usize..];
                        text.char_indices()
                            .nth(keep as usize)
                            .map_or(text.len(), |(b, _)| b) as u32
                    };
                }
                e.len = keep;
            }
        }
        for ag in &mut self.agents {
            while let Some(s) = ag.spans.last_mut() {
                if s.lv >= lv {
                    ag.spans.pop();
                } else {
                    if s.lv + s.len > lv {
                        s.len = lv - s.lv;
                    }
                    break;
                }
            }
        }
        self.version = self.agents.iter().map(|a| (a.id, a.next_seq())).collect();
        self.max_lamport = self
            .entries
            .iter()
            .map(|e| e.lamport + u64::from(e.len) - 1)
            .max()
            .unwrap_or(0);
    }
}

// ---------------------------------------------------------------- the log as wire runs

impl OpLog {
    /// The ops a replica at `since` lacks, as wire runs in LV (causal) order.
    pub(crate) fn runs_since(&self, since: &VersionVector) -> Vec<WireRun> {
        self.runs_in(since, None)
    }

    /// The ops of version `to` that `from` lacks, as wire runs in LV (causal) order.
    pub(crate) fn runs_between(&self, from: &VersionVector, to: &VersionVector) -> Vec<WireRun> {
        self.runs_in(from, Some(to))
    }

    /// The ops `since` lacks (of those `until` includes, or all), in LV order.
    fn runs_in(&self, since: &VersionVector, until: Option<&VersionVector>) -> Vec<WireRun> {
        let mut ranges: Vec<(Lv, Lv)> = Vec::new();
        for a in &self.agents {
            let from = since.get(&a.id);
            let to = until.map_or(a.next_seq(), |u| u.get(&a.id).min(a.next_seq()));
            if from >= to {
                continue;
            }
            let i = a
                .spans
                .partition_point(|s| s.seq + u64::from(s.len) <= from);
            for s in &a.spans[i..] {
                if s.seq >= to {
                    break;
                }
                let skip = from.saturating_sub(s.seq) as u32;
                let end = (to - s.seq).min(u64::from(s.len)) as u32;
                ranges.push((s.lv + skip, s.lv + end));
            }
        }
        ranges.sort_unstable();
        let mut out = Vec::new();
        for (lo, hi) in ranges {
            let mut i = self.entry_index(lo);
            let mut lv = lo;
            while lv < hi {
                let e = &self.entries[i];
                let end = e.end().min(hi);
                self.wire_runs(e, lv, end, &mut out);
                lv = end;
                i += 1;
            }
        }
        out
    }

    fn op_id(&self, lv: Lv) -> Option<OpId> {
        (lv != NONE).then(|| {
            let (a, seq) = self.id_of(lv);
            OpId::new(self.agents[a as usize].id, seq)
        })
    }

    /// Appends the wire runs for ops `lo..hi` of entry `e`.
    fn wire_runs(&self, e: &Entry, lo: Lv, hi: Lv, out: &mut Vec<WireRun>) {
        let k = lo - e.lv;
        let replica = self.agents[e.agent as usize].id;
        let f = &self.fields[e.field as usize];
        let field = f.key.clone();
        let seq = self.id_of(lo).1;
        let lamport = e.lamport + u64::from(k);
        match e.op {
            Op::Insert {
                origin_left,
                origin_right,
                byte_start,
                byte_len,
            } => {
                // Deleted text is sent too: a peer may undo a delete later, and a
                // peer whose version was guessed wrong may not get the delete yet.
                let content = if f.kind == Kind::List {
                    let start = (byte_start + k) as usize;
                    Content::Values(self.elems[start..start + (hi - lo) as usize].to_vec())
                } else {
                    let text = &self.content[byte_start as usize..(byte_start + byte_len) as usize];
                    Content::Text(if text.len() == e.len as usize {
                        text[k as usize..(hi - e.lv) as usize].to_owned()
                    } else {
                        text.chars()
                            .skip(k as usize)
                            .take((hi - lo) as usize)
                            .collect()
                    })
                };
                push_coalesced(
                    out,
                    WireRun {
                        replica,
                        seq,
                        lamport,
                        len: hi - lo,
                        field,
                        op: WireOp::Insert {
                            left: self.op_id(if k == 0 { origin_left } else { lo - 1 }),
                            right: self.op_id(origin_right),
                            content,
                        },
                    },
                );
            }
            Op::Delete { .. } | Op::Undelete { .. } => {
                let (target, backward, undelete) = match e.op {
                    Op::Delete { target, backward } => (target, backward, false),
                    Op::Undelete { target } => (target, false, true),
                    _ => unreachable!(),
                };
                // The targets (items, or the delete ops an undelete undoes) may belong
                // to several replicas: one wire run per stretch of consecutive ids.
                let mut done = 0u32;
                let total = hi - lo;
                while done < total {
                    let t = if backward {
                        target - k - done
                    } else {
                        target + k + done
                    };
                    let ti = self.entry_index(t);
                    let te = &self.entries[ti];
                    let avail = if backward {
                        t - te.lv + 1
                    } else {
                        te.end() - t
                    };
                    let take = avail.min(total - done);
                    let (ta, tseq) = self.id_of(t);
                    push_coalesced(
                        out,
                        WireRun {
                            replica,
                            seq: seq + u64::from(done),
                            lamport: lamport + u64::from(done),
                            len: take,
                            field: field.clone(),
                            op: {
                                let target = OpId::new(self.agents[ta as usize].id, tseq);
                                if undelete {
                                    WireOp::Undelete { target }
                                } else {
                                    WireOp::Delete {
                                        target,
                                        backward: backward && take > 1,
                                    }
                                }
                            },
                        },
                    );
                    done += take;
                }
            }
            Op::Atom { idx } => {
                let op = match &self.atoms[idx as usize] {
                    Atom::Add(delta) => WireOp::Add { delta: *delta },
                    Atom::Set {
                        key,
                        value,
                        hlc,
                        preds,
                    } => WireOp::Set {
                        key: key.clone(),
                        value: value.clone(),
                        hlc: *hlc,
                        preds: preds
                            .iter()
                            .map(|&p| self.op_id(p).expect("a pred is an op"))
                            .collect(),
                    },
                };
                out.push(WireRun {
                    replica,
                    seq,
                    lamport,
                    len: 1,
                    field,
                    op,
                });
            }
        }
    }

    /// The change records that describe any of `runs`' operations.
    pub(crate) fn changes_for(&self, runs: &[WireRun]) -> Vec<ChangeMeta> {
        if self.changes.is_empty() {
            return Vec::new();
        }
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for run in runs {
            for c in self
                .changes
                .overlapping(&run.replica, run.seq..run.end_seq())
            {
                if seen.insert((c.replica, c.seq)) {
                    out.push(c.clone());
                }
            }
        }
        out
    }
}

/// Appends `run` to `out`, merged into the last run when it continues it: a run's
/// pieces that only the log or the tree kept apart go out as one, so an update
/// decodes into a state that encodes to the same bytes.
fn push_coalesced(out: &mut Vec<WireRun>, run: WireRun) {
    if let Some(last) = out.last_mut() {
        if last.replica == run.replica
            && last.end_seq() == run.seq
            && last.lamport + u64::from(last.len) == run.lamport
            && last.field == run.field
            && u64::from(last.len) + u64::from(run.len) <= u64::from(u32::MAX)
        {
            match (&mut last.op, &run.op) {
                (
                    WireOp::Insert {
                        right: r0,
                        content: c0,
                        ..
                    },
                    WireOp::Insert {
                        left,
                        right,
                        content,
                    },
                ) if *left == Some(OpId::new(run.replica, run.seq - 1)) && right == r0 => {
                    match (c0, content) {
                        (Content::Text(a), Content::Text(b)) => a.push_str(b),
                        (Content::Values(a), Content::Values(b)) => a.extend_from_slice(b),
                        _ => unreachable!("one field holds one kind of content"),
                    }
                    last.len += run.len;
                    return;
                }
                (
                    WireOp::Delete {
                        target: t0,
                        backward: b0,
                    },
                    WireOp::Delete { target, backward },
                ) if t0.replica == target.replica => {
                    let n0 = u64::from(last.len);
                    if !*b0 && !*backward && t0.seq + n0 == target.seq {
                        last.len += run.len;
                        return;
                    }
                    if (*b0 || n0 == 1)
                        && (*backward || run.len == 1)
                        && t0.seq.checked_sub(n0) == Some(target.seq)
                    {
                        *b0 = true;
                        last.len += run.len;
                        return;
                    }
                }
                (WireOp::Undelete { target: t0 }, WireOp::Undelete { target })
                    if t0.replica == target.replica
                        && t0.seq + u64::from(last.len) == target.seq =>
                {
                    last.len += run.len;
                    return;
                }
                _ => {}
            }
        }
    }
    out.push(run);
}

pub(crate) mod smallvec_lite {
    //! A list of LV ranges that holds the common single range without allocating.
    use crate::tree::Lv;

    #[derive(Debug, Default)]
    pub struct Ranges {
        first: Option<(Lv, u32)>,
        rest: Vec<(Lv, u32)>,
    }

    impl Ranges {
        pub fn push(&mut self, r: (Lv, u32)) {
            if self.first.is_none() && self.rest.is_empty() {
                self.first = Some(r);
            } else {
                if let Some(f) = self.first.take() {
                    self.rest.push(f);
                }
                self.rest.push(r);
            }
        }

        pub fn reverse(&mut self) {
            self.rest.reverse();
        }
    }

    impl IntoIterator for Ranges {
        type Item = (Lv, u32);
        type IntoIter =
            std::iter::Chain<std::option::IntoIter<(Lv, u32)>, std::vec::IntoIter<(Lv, u32)>>;

        fn into_iter(self) -> Self::IntoIter {
            self.first.into_iter().chain(self.rest)
        }
    }
}
