//! Integration: one op into the branch, for local and remote ops alike.
//!
//! Inserts are placed by FugueMax (Weidner & Kleppmann, "The Art of the Fugue"):
//! among the items between an insert's left and right origins, concurrent inserts
//! are ordered so that runs typed concurrently at one place never interleave.
//! Deletes raise the delete count of their targets, undeletes (an undo of a delete)
//! lower it again, and counter, register and map ops fold into their field's state.

use crate::ReplicaId;
use crate::branch::apply_atom_to;
use crate::doc::Doc;
use crate::oplog::{Entry, Op};
use crate::tree::{Cur, Lv, NONE, Run, Tree};

impl Doc {
    /// Integrates a remote insert run (LVs already assigned) with FugueMax ordering.
    ///
    /// This is the "YjsMod" integration, equivalent to FugueMax: scan from the left
    /// origin towards the right origin and place the run before the first item whose
    /// left origin lies further left, or that ties with it and sorts after it.
    pub(crate) fn integrate_insert(&mut self, field: u32, run: Run, replica: ReplicaId) {
        let tree = self.branch.seq(field);
        let (ol, or) = (run.origin_left, run.origin_right);
        let start = if ol == NONE {
            tree.normalize(Cur {
                leaf: tree.first_leaf(),
                idx: 0,
                off: 0,
            })
        } else {
            tree.normalize(tree.after(ol, self.branch.index.leaf(ol)))
        };
        // Nothing concurrent between the origins: the common case.
        let dest = if tree.item_at(start) == or {
            start
        } else {
            self.scan_fugue(field, &run, replica, start)
        };
        self.branch.insert(field, dest, run, &self.log.content);
    }

    fn raw_pos_of(&self, tree: &Tree, lv: Lv) -> i64 {
        i64::from(tree.raw_pos(tree.locate(lv, self.branch.index.leaf(lv))))
    }

    fn scan_fugue(&self, field: u32, run: &Run, replica: ReplicaId, start: Cur) -> Cur {
        let tree = self.branch.seq(field);
        let total = i64::from(tree.total().raw);
        let left = if run.origin_left == NONE {
            -1
        } else {
            self.raw_pos_of(tree, run.origin_left)
        };
        let right = if run.origin_right == NONE {
            total
        } else {
            self.raw_pos_of(tree, run.origin_right)
        };
        // A right origin at or before the left origin cannot come from an honest
        // replica. Every replica orders existing items alike, so ignoring it (the
        // document end instead) is deterministic and keeps replicas converging.
        let right = if right <= left { total } else { right };
        let mut i = left + 1;
        let mut cur = start;
        let mut dest = start;
        let mut scanning = false;
        loop {
            if !scanning {
                dest = cur;
            }
            if i >= total || i == right {
                break;
            }
            let o = *tree.run(cur.leaf, cur.idx);
            let oleft = if cur.off > 0 {
                i - 1
            } else if o.origin_left == NONE {
                -1
            } else {
                self.raw_pos_of(tree, o.origin_left)
            };
            if oleft < left {
                break;
            }
            if oleft == left {
                let oright = if o.origin_right == NONE {
                    total
                } else {
                    self.raw_pos_of(tree, o.origin_right)
                };
                if oright < right {
                    scanning = true;
                } else if oright == right {
                    let (agent, _) = self.log.id_of(o.lv + cur.off);
                    if replica < self.log.agents[agent as usize].id {
                        break;
                    }
                    scanning = false;
                } else {
                    scanning = false;
                }
                i += 1;
                cur = tree.step(cur);
            } else {
                // Items whose left origin lies inside the scanned region are skipped,
                // and so are the rest of their run (each has its predecessor as left
                // origin), up to the right origin.
                let rest = i64::from(o.len - cur.off);
                let skip = rest.min(right - i);
                i += skip;
                if skip == rest {
                    cur = tree.normalize(Cur {
                        leaf: cur.leaf,
                        idx: cur.idx + 1,
                        off: 0,
                    });
                } else {
                    cur.off += skip as u32;
                }
            }
        }
        dest
    }

    /// Updates field `field`'s state with atom `idx`, applied as op `lv`.
    pub(crate) fn apply_atom(&mut self, field: u32, lv: Lv, idx: u32) {
        if self.recorder.is_some() {
            let atom = self.log.atoms[idx as usize].clone();
            self.record_atom(field, &atom);
        }
        apply_atom_to(
            &mut self.branch.bodies[field as usize],
            &self.log.fields[field as usize].kind,
            &self.rules,
            &self.log.atoms[idx as usize],
            lv,
        );
    }

    /// Adds one delete to the items `lo..=hi` of `field`.
    pub(crate) fn delete_range(&mut self, field: u32, lo: Lv, hi: Lv) {
        self.change_dels(field, lo, hi, true);
    }

    /// Adds one delete to (`up`), or removes one from, the items `lo..=hi` of `field`.
    pub(crate) fn change_dels(&mut self, field: u32, lo: Lv, hi: Lv, up: bool) {
        let mut lv = lo;
        while lv <= hi {
            if self.recorder.is_some() {
                let tree = self.branch.seq(field);
                let cur = tree.locate(lv, self.branch.index.leaf(lv));
                let r = tree.run(cur.leaf, cur.idx);
                let n = (r.len - cur.off).min(hi - lv + 1);
                let visible = !r.deleted();
                self.record_touched(field, lv, n, visible);
            }
            let (tree, index) = self.branch.seq_and_index(field);
            let done = tree.add_dels(lv, hi - lv + 1, up, &self.log.content, index);
            lv += done;
        }
    }

    /// The item that delete op `lv` (of entry `e`) targets.
    pub(crate) fn delete_target(e: &Entry, lv: Lv) -> Lv {
        match e.op {
            Op::Delete { target, backward } if backward => target - (lv - e.lv),
            Op::Delete { target, .. } => target + (lv - e.lv),
            _ => unreachable!("not a delete"),
        }
    }

    /// Applies an undelete of delete ops `target..target + len` (all of `field`): each
    /// delete op is undone once, however many undeletes name it.
    pub(crate) fn undelete(&mut self, field: u32, target: Lv, len: u32) {
        for d in target..target + len {
            let n = self.branch.undone.entry(d).or_insert(0);
            *n += 1;
            if *n == 1 {
                let e = self.log.entries[self.log.entry_index(d)];
                let item = Self::delete_target(&e, d);
                self.change_dels(field, item, item, false);
            }
        }
    }
}
