//! Observing: recording what a commit or an apply touches and turning it into the
//! [`Event`] observers receive (see `events.rs` for the event types).

use std::collections::BTreeMap;

use crate::branch::Body;
use crate::containers::{MapView, RegisterView};
use crate::doc::Doc;
use crate::events::{
    Before, Diff, Event, FieldChange, KeyChange, ListDelta, Origin, Recorder, SubscriptionId,
    TextDelta, TextUnit, push_list, push_text,
};
use crate::oplog::ROOT;
use crate::oplog::{Atom, Op};
use crate::tree::{Cur, Lv};
use crate::{Kind, ReplicaId};

impl Doc {
    /// Calls `f` after every commit and every applied update with what changed; text
    /// deltas count in `unit`. `f` also gets the document, as it is after the change.
    pub fn observe(
        &mut self,
        unit: TextUnit,
        f: impl FnMut(&Doc, &Event) + Send + 'static,
    ) -> SubscriptionId {
        let id = self.observers.next;
        self.observers.next += 1;
        self.observers.list.push((id, unit, Box::new(f)));
        SubscriptionId(id)
    }

    /// Removes an observer; `false` if it was not there.
    pub fn unobserve(&mut self, id: SubscriptionId) -> bool {
        let n = self.observers.list.len();
        self.observers.list.retain(|(i, _, _)| *i != id.0);
        self.observers.list.len() != n
    }

    /// Starts recording a batch if anybody observes.
    #[inline]
    pub(crate) fn start_recording(&mut self) {
        if !self.observers.is_empty() {
            self.start_recording_observed();
        }
    }

    fn start_recording_observed(&mut self) {
        // Deltas are computed from item positions, found through the index.
        self.ensure_index();
        self.recorder = Some(Box::new(Recorder {
            start_lv: self.log.next_lv(),
            touched: Vec::new(),
            before: BTreeMap::new(),
            replicas: Vec::new(),
        }));
    }

    /// Notes that the batch applies an op of `replica`.
    pub(crate) fn record_replica(&mut self, replica: ReplicaId) {
        if let Some(r) = &mut self.recorder {
            if !r.replicas.contains(&replica) {
                r.replicas.push(replica);
            }
        }
    }

    /// Notes that the visibility of items `lv..lv + len` of `field` may change now;
    /// they were `visible` until now.
    pub(crate) fn record_touched(&mut self, field: u32, lv: Lv, len: u32, visible: bool) {
        if let Some(r) = &mut self.recorder {
            // Items the batch inserted itself are new either way.
            let end = (lv + len).min(r.start_lv);
            if lv < end {
                r.touched.push((field, lv, end - lv, visible));
            }
        }
    }

    /// Notes the state `atom` is about to change, the first time it changes it.
    pub(crate) fn record_atom(&mut self, field: u32, atom: &Atom) {
        let Some(rec) = &self.recorder else {
            return;
        };
        let map_key = match atom {
            Atom::Set { key: Some(k), .. } => Some(k.clone()),
            _ => None,
        };
        let needed = match (rec.before.get(&field), &map_key) {
            (None, _) => true,
            (Some(Before::Map(keys)), Some(k)) => !keys.contains_key(k),
            _ => false,
        };
        if !needed {
            return;
        }
        let state = match &self.branch.bodies[field as usize] {
            Body::Counter(v) => Before::Counter(*v),
            Body::Register(_) | Body::Merged { .. } => {
                let r = RegisterView::at(self, field);
                Before::Register(r.value(), r.conflicts())
            }
            Body::Map(_) => {
                let m = MapView::at(self, field);
                let k = map_key.expect("map ops have keys");
                let was = (m.get(&k), !m.conflicts(&k).is_empty());
                let mut keys = match self.recorder.as_mut().and_then(|r| r.before.remove(&field)) {
                    Some(Before::Map(keys)) => keys,
                    _ => BTreeMap::new(),
                };
                keys.insert(k, was);
                Before::Map(keys)
            }
            Body::Seq(_) => return,
        };
        if let Some(r) = &mut self.recorder {
            r.before.insert(field, state);
        }
    }

    /// Ends the batch: tells every observer what it changed.
    #[inline]
    pub(crate) fn finish_recording(&mut self, origin_local: bool) {
        if self.recorder.is_some() {
            self.finish_recording_observed(origin_local);
        }
    }

    fn finish_recording_observed(&mut self, origin_local: bool) {
        let Some(rec) = self.recorder.take() else {
            return;
        };
        if self.observers.is_empty() {
            return;
        }
        let origin = if origin_local {
            Origin::Local
        } else {
            Origin::Remote(rec.replicas.clone())
        };
        let units: Vec<TextUnit> = {
            let mut u: Vec<TextUnit> = self.observers.list.iter().map(|o| o.1).collect();
            u.dedup();
            u
        };
        let mut events: Vec<(TextUnit, Event)> = Vec::new();
        for unit in units {
            if events.iter().any(|(u, _)| *u == unit) {
                continue;
            }
            let changes = self.changes(&rec, unit);
            if changes.is_empty() {
                return;
            }
            events.push((
                unit,
                Event {
                    origin: origin.clone(),
                    changes,
                },
            ));
        }
        let mut observers = std::mem::take(&mut self.observers);
        for (_, unit, f) in &mut observers.list {
            if let Some((_, e)) = events.iter().find(|(u, _)| u == unit) {
                f(self, e);
            }
        }
        // Observers added by an observer are kept too.
        let added = std::mem::take(&mut self.observers.list);
        observers.list.extend(added);
        observers.next = observers.next.max(self.observers.next);
        self.observers = observers;
    }

    /// The changes recorded in `rec`, text counted in `unit`.
    fn changes(&self, rec: &Recorder, unit: TextUnit) -> Vec<FieldChange> {
        // Per field: its marks (inserted or hidden stretches), or its before-state.
        let mut seq: BTreeMap<u32, Vec<Mark>> = BTreeMap::new();
        let start = rec.start_lv;
        let first = self.log.entry_index(start);
        for e in &self.log.entries[first.min(self.log.entries.len())..] {
            if let Op::Insert { .. } = e.op {
                let lo = e.lv.max(start);
                self.marks(
                    e.field,
                    lo,
                    e.end() - lo,
                    true,
                    seq.entry(e.field).or_default(),
                );
            }
        }
        for (f, lv, len, was_visible) in first_states(&rec.touched) {
            self.marks(f, lv, len, !was_visible, seq.entry(f).or_default());
        }
        let mut out: BTreeMap<u32, Diff> = BTreeMap::new();
        for (f, marks) in seq {
            if let Some(d) = self.seq_diff(f, marks, unit) {
                out.insert(f, d);
            }
        }
        for (&f, before) in &rec.before {
            if let Some(d) = self.atom_diff(f, before) {
                out.insert(f, d);
            }
        }
        out.into_iter()
            .map(|(f, diff)| FieldChange {
                path: self.path(f),
                kind: self.log.fields[f as usize].kind.clone(),
                diff,
            })
            .collect()
    }

    pub(crate) fn path(&self, mut f: u32) -> Vec<String> {
        let mut p = Vec::new();
        loop {
            let field = &self.log.fields[f as usize];
            p.push(field.name.to_string());
            if field.parent == ROOT {
                break;
            }
            f = field.parent;
        }
        p.reverse();
        p
    }

    /// Adds the marks for items `lv..lv + len` of `field`: the stretches now visible
    /// (`inserted`: inserted or revealed) or now hidden (`!inserted`).
    fn marks(&self, field: u32, lv: Lv, len: u32, inserted: bool, out: &mut Vec<Mark>) {
        let tree = self.branch.seq(field);
        let mut lv = lv;
        let end = lv + len;
        while lv < end {
            let cur = tree.locate(lv, self.branch.index.leaf(lv));
            let r = tree.run(cur.leaf, cur.idx);
            let n = (r.len - cur.off).min(end - lv);
            if r.deleted() != inserted {
                out.push(Mark {
                    raw: tree.raw_pos(cur),
                    cur,
                    lv,
                    len: n,
                    inserted,
                });
            }
            lv += n;
        }
    }

    fn seq_diff(&self, field: u32, mut marks: Vec<Mark>, unit: TextUnit) -> Option<Diff> {
        if marks.is_empty() {
            return None;
        }
        marks.sort_unstable_by_key(|m| m.raw);
        let f = &self.log.fields[field as usize];
        let tree = self.branch.seq(field);
        let is_list = f.kind == Kind::List;
        let count = |c: crate::tree::Counts| match unit {
            TextUnit::Utf16 if !is_list => c.utf16 as usize,
            _ => c.chars as usize,
        };
        // Where each mark was in the state before: its position now, less what the
        // batch inserted before it, plus what it hid before it.
        let mut inserted_before = 0usize;
        let mut hidden_before = 0usize;
        let mut consumed = 0usize;
        let mut text: Vec<TextDelta> = Vec::new();
        let mut list: Vec<ListDelta> = Vec::new();
        for m in marks {
            let now = count(tree.counts_before(m.cur, &self.log.content));
            let was = now - inserted_before + hidden_before;
            if was > consumed {
                push_text(&mut text, TextDelta::Retain(was - consumed));
                push_list(&mut list, ListDelta::Retain(was - consumed));
                consumed = was;
            }
            let r = tree.run(m.cur.leaf, m.cur.idx);
            if is_list {
                let s = (r.byte_start + m.cur.off) as usize;
                let vals = &self.log.elems[s..s + m.len as usize];
                if m.inserted {
                    inserted_before += vals.len();
                    push_list(&mut list, ListDelta::Insert(vals.to_vec()));
                } else {
                    hidden_before += vals.len();
                    consumed += vals.len();
                    push_list(&mut list, ListDelta::Delete(vals.len()));
                }
            } else {
                let t: String = r
                    .text(&self.log.content)
                    .chars()
                    .skip(m.cur.off as usize)
                    .take(m.len as usize)
                    .collect();
                let n = match unit {
                    TextUnit::Char => m.len as usize,
                    TextUnit::Utf16 => t.encode_utf16().count(),
                };
                if m.inserted {
                    inserted_before += n;
                    push_text(&mut text, TextDelta::Insert(t));
                } else {
                    hidden_before += n;
                    consumed += n;
                    push_text(&mut text, TextDelta::Delete(n));
                }
            }
        }
        Some(if is_list {
            Diff::List(list)
        } else {
            Diff::Text(text)
        })
    }

    fn atom_diff(&self, field: u32, before: &Before) -> Option<Diff> {
        match (before, &self.branch.bodies[field as usize]) {
            (Before::Counter(old), Body::Counter(now)) => (old != now).then(|| Diff::Counter {
                delta: now.wrapping_sub(*old),
                value: *now,
            }),
            (Before::Register(old_value, old_conflicts), _) => {
                let r = RegisterView::at(self, field);
                let (value, conflicts) = (r.value(), r.conflicts());
                let changed = value != *old_value || conflicts != *old_conflicts;
                changed.then_some(Diff::Register {
                    value,
                    conflicts,
                    was_conflict: !old_conflicts.is_empty(),
                })
            }
            (Before::Map(keys), _) => {
                let m = MapView::at(self, field);
                let changed: Vec<KeyChange> = keys
                    .iter()
                    .filter_map(|(k, (old, old_conflict))| {
                        let now = m.get(k);
                        let conflict = !m.conflicts(k).is_empty();
                        (now != *old || conflict != *old_conflict).then(|| KeyChange {
                            key: k.to_string(),
                            value: now,
                            conflict,
                        })
                    })
                    .collect();
                (!changed.is_empty()).then_some(Diff::Map(changed))
            }
            _ => None,
        }
    }
}

/// A stretch of items that the batch made visible or hid.
#[derive(Debug)]
struct Mark {
    raw: u32,
    cur: Cur,
    #[allow(dead_code)]
    lv: Lv,
    len: u32,
    inserted: bool,
}

/// Each touched item's visibility before the batch: the state its first touch saw.
/// Returns disjoint (field, lv, len, visible before) stretches.
fn first_states(touched: &[(u32, Lv, u32, bool)]) -> Vec<(u32, Lv, u32, bool)> {
    // Stretches by start: (end, field, visible before); only gaps are added later.
    let mut seen: BTreeMap<Lv, (Lv, u32, bool)> = BTreeMap::new();
    for &(f, lo, len, vis) in touched {
        let hi = lo + len;
        let mut at = lo;
        // Skip what earlier touches cover; add the gaps.
        let mut covering: Vec<(Lv, Lv)> = seen
            .range(..hi)
            .rev()
            .take_while(|(_, (end, _, _))| *end > lo)
            .map(|(&s, &(e, _, _))| (s, e))
            .collect();
        covering.reverse();
        let mut gaps = Vec::new();
        for (s, e) in covering {
            if s > at {
                gaps.push((at, s.min(hi)));
            }
            at = at.max(e);
        }
        if at < hi {
            gaps.push((at, hi));
        }
        for (s, e) in gaps {
            seen.insert(s, (e, f, vis));
        }
    }
    seen.into_iter()
        .map(|(s, (e, f, vis))| (f, s, e - s, vis))
        .collect()
}
