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

use crate::changes::ChangeTable;
use crate::tree::Lv;
use crate::{MapValue, ReplicaId, VersionVector};

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
    pub fn truncate(&mut self, lv: Lv, content: &str) {
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
