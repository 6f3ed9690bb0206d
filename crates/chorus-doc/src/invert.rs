//! Undo inversion: the ops that undo a change of this replica.
//!
//! Inserts are undone by deleting their items (by id), deletes by undeleting those
//! very delete ops (so the original items come back, not copies), counter adds by
//! adding the negation, and register and map writes by writing back what was shown
//! before — unless someone else overwrote it since, which undo leaves alone.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use crate::branch::Body;
use crate::doc::Doc;
use crate::oplog::{Atom, Op};
use crate::tree::Lv;
use crate::{EditError, MapValue};

impl Doc {
    /// Makes local ops that undo this replica's ops `seqs` (in reverse order): inserted
    /// items are deleted, deletes are undone (restoring the original items), undeletes
    /// are deleted again, counter adds are subtracted, and register and map writes
    /// still in effect are replaced by what they superseded. Merge registers cannot
    /// go back (their merge only grows) and are left alone.
    pub(crate) fn invert(&mut self, seqs: &[Range<u64>], now_ms: u64) -> Result<(), EditError> {
        self.ensure_index();
        let me = self.me;
        let mut lvs: Vec<(Lv, u32)> = Vec::new();
        for r in seqs {
            let known = self.log.agents[me as usize].next_seq();
            let end = r.end.min(known);
            if r.start < end {
                lvs.extend(self.log.lv_ranges(me, r.start, end - r.start));
            }
        }
        lvs.sort_unstable();
        // Split along log entries, then undo the newest first.
        let mut pieces: Vec<(usize, Lv, u32)> = Vec::new();
        for (lo, len) in lvs {
            let mut lv = lo;
            let end = lo + len;
            while lv < end {
                let i = self.log.entry_index(lv);
                let e_end = self.log.entries[i].end().min(end);
                pieces.push((i, lv, e_end - lv));
                lv = e_end;
            }
        }
        // Writes to one register or map key: the last one is undone, back to what the
        // first one superseded.
        type WriteKey = (u32, Option<Arc<str>>);
        let mut writes: HashMap<WriteKey, (Lv, Lv)> = HashMap::new();
        for &(i, lo, _) in &pieces {
            let e = &self.log.entries[i];
            if let Op::Atom { idx } = e.op {
                if let Atom::Set { key, .. } = &self.log.atoms[idx as usize] {
                    writes
                        .entry((e.field, key.clone()))
                        .and_modify(|w| w.1 = lo)
                        .or_insert((lo, lo));
                }
            }
        }
        for (i, lo, len) in pieces.into_iter().rev() {
            let e = self.log.entries[i];
            match e.op {
                Op::Insert { .. } => self.local_delete_items(e.field, lo, len)?,
                Op::Delete { .. } => {
                    // Only delete ops not undone already.
                    let mut d = lo;
                    while d < lo + len {
                        if self.branch.undone.contains_key(&d) {
                            d += 1;
                            continue;
                        }
                        let mut n = 1;
                        while d + n < lo + len && !self.branch.undone.contains_key(&(d + n)) {
                            n += 1;
                        }
                        self.local_undelete(e.field, d, n)?;
                        d += n;
                    }
                }
                Op::Undelete { target } => {
                    let first = target + (lo - e.lv);
                    for d in first..first + len {
                        let de = self.log.entries[self.log.entry_index(d)];
                        let item = Self::delete_target(&de, d);
                        self.local_delete_items(e.field, item, 1)?;
                    }
                }
                Op::Atom { idx } => {
                    let first = match &self.log.atoms[idx as usize] {
                        Atom::Set { key, .. } => match writes.get(&(e.field, key.clone())) {
                            Some(&(first, last)) if last == lo => first,
                            _ => continue,
                        },
                        Atom::Add(_) => lo,
                    };
                    if let Some(mut atom) = self.inverse_atom(e.field, lo, first) {
                        if let Atom::Set { key: None, hlc, .. } = &mut atom {
                            // A register write: stamped like any other.
                            *hlc = crate::types::hlc::next(self.log.hlc, now_ms);
                            self.log.hlc = *hlc;
                        }
                        self.local_atom(e.field, atom)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The op that undoes atom op `lv` of `field`, if it is still in effect, restoring
    /// what op `first` (the same key's first write in the step) superseded.
    fn inverse_atom(&self, field: u32, lv: Lv, first: Lv) -> Option<Atom> {
        let preds = match self.log.atom_at(first) {
            Atom::Set { preds, .. } => &preds[..],
            Atom::Add(_) => &[],
        };
        match (self.log.atom_at(lv), &self.branch.bodies[field as usize]) {
            (Atom::Add(d), _) => Some(Atom::Add(d.wrapping_neg())),
            (Atom::Set { .. }, Body::Register(writes)) => {
                if !self.all_mine(writes) {
                    return None;
                }
                let value = self.shown_among(preds, true);
                Some(Atom::Set {
                    key: None,
                    value,
                    hlc: 0,
                    preds: writes.as_slice().into(),
                })
            }
            (Atom::Set { key: Some(key), .. }, Body::Map(keys)) => {
                let current = keys.get(key).map_or(&[][..], |w| w.as_slice());
                // Still ours: nobody else's write shows there since.
                if !self.all_mine(current) {
                    return None;
                }
                Some(Atom::Set {
                    key: Some(key.clone()),
                    value: self.shown_among(preds, false),
                    hlc: 0,
                    preds: current.into(),
                })
            }
            _ => None,
        }
    }

    /// Whether every op of `lvs` is this replica's (so an undo overwrites nobody).
    fn all_mine(&self, lvs: &[Lv]) -> bool {
        lvs.iter()
            .all(|&lv| self.log.entries[self.log.entry_index(lv)].agent == self.me)
    }

    /// What the writes `lvs` showed: the value of the one with the highest (clock,
    /// replica) for registers, (Lamport, replica) for maps; `None` for none.
    fn shown_among(&self, lvs: &[Lv], by_clock: bool) -> Option<MapValue> {
        lvs.iter()
            .filter_map(|&lv| match self.log.atom_at(lv) {
                Atom::Set {
                    value: Some(v),
                    hlc: stamp,
                    ..
                } => {
                    let (lamport, replica, _) = self.stamp(lv);
                    let order = if by_clock { *stamp } else { lamport };
                    Some(((order, replica), v))
                }
                _ => None,
            })
            .max_by(|a, b| a.0.cmp(&b.0))
            .map(|(_, v)| v.clone())
    }
}
