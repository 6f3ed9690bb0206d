//! History: the document at an earlier version, what changed between two versions,
//! forks and reverts.
//!
//! The op log keeps every operation, so any version this replica has passed through —
//! indeed any set of operations some replica could have held — can be looked at
//! again. A version is a [`VersionVector`]: it names a set of operations, and it is
//! a valid version here when this replica has all of them and the set is *closed*
//! (every origin, delete target, undone delete and superseded write of an operation
//! in it is in it too), which is exactly what any replica holds after applying
//! updates.
//!
//! Nothing here replays the log. A sequence CRDT never reorders existing items, so the
//! items of a text at version *v* are the items of the current run tree that *v*
//! inserted, in the same order, each hidden by the delete ops of *v* that *v* did not
//! undo. A [`Mask`] says, per LV, whether it is in *v* and how many of *v*'s deletes
//! hide it; building the branch at *v* filters the current trees through it, and a diff
//! walks the current trees once with the masks of both versions. Counters, registers
//! and maps are small: their ops of *v* are folded again.
//!
//! Costs: `at`, `diff` and `revert_to` take time linear in the number of operations;
//! nothing is paid until they are used, and the current branch is never touched.

use std::collections::HashMap;

use crate::branch::{Body, Branch, apply_atom_to};
use crate::containers::{
    CounterView, FieldConflict, ListView, MapView, RegisterView, field_conflicts, json, root_kinds,
};
use crate::doc::Doc;
use crate::events::{
    Diff, Event, FieldChange, KeyChange, ListDelta, Origin, TextDelta, TextUnit, push_list,
    push_text,
};
use crate::oplog::ROOT;
use crate::oplog::{Atom, Op};
use crate::text::TextView;
use crate::tree::{Lv, NONE, Run, Tree};
use crate::{
    Change, CommitOptions, EditError, HistoryError, Kind, MapValue, OpId, ReplicaId, Rule, Value,
    VersionVector,
};

/// The document as it was at one version: read-only views of every field.
///
/// Made by [`Doc::at`]. Every view reads exactly what a replica holding that version's
/// operations showed: text and lists, counters, registers with their conflicts, maps.
#[derive(Debug)]
pub struct Checkout<'d> {
    doc: &'d Doc,
    branch: Branch,
    version: VersionVector,
}

impl<'d> Checkout<'d> {
    /// The version this checkout shows.
    pub fn version(&self) -> &VersionVector {
        &self.version
    }

    /// The text field `name` at this version.
    pub fn text(&self, name: &str) -> TextView<'_> {
        TextView {
            doc: self.doc,
            branch: &self.branch,
            field: self.doc.find_field(ROOT, name, &Kind::Text),
        }
    }

    /// The list `name` at this version.
    pub fn list(&self, name: &str) -> ListView<'_> {
        ListView {
            doc: self.doc,
            branch: &self.branch,
            field: self.doc.find_field(ROOT, name, &Kind::List),
        }
    }

    /// The map `name` at this version.
    pub fn map(&self, name: &str) -> MapView<'_> {
        MapView {
            doc: self.doc,
            branch: &self.branch,
            field: self.doc.find_field(ROOT, name, &Kind::Map),
        }
    }

    /// The counter `name` at this version.
    pub fn counter(&self, name: &str) -> CounterView<'_> {
        CounterView {
            branch: &self.branch,
            field: self.doc.find_field(ROOT, name, &Kind::Counter),
        }
    }

    /// The register `name` with `rule` at this version.
    pub fn register(&self, name: &str, rule: Rule) -> RegisterView<'_> {
        RegisterView {
            doc: self.doc,
            branch: &self.branch,
            field: self.doc.find_field(ROOT, name, &Kind::Register(rule)),
        }
    }

    /// The kind shown under root name `name` at this version (see [`Doc::root_kind`]).
    pub fn root_kind(&self, name: &str) -> Option<Kind> {
        root_kinds(self.doc, &self.branch, name).into_iter().next()
    }

    /// Root names used with several kinds at this version (see [`Doc::field_conflicts`]).
    pub fn field_conflicts(&self) -> Vec<FieldConflict> {
        field_conflicts(self.doc, &self.branch)
    }

    /// This version as JSON, like [`Doc::to_json`].
    pub fn to_json(&self) -> serde_json::Value {
        json(self.doc, &self.branch)
    }
}

/// Which operations a version includes, and what its deletes do, by LV.
pub(crate) struct Mask {
    /// Bit `lv` is set when op `lv` is in the version.
    bits: Vec<u64>,
    /// The included LVs as sorted, disjoint ranges.
    ranges: Vec<(Lv, Lv)>,
    /// For every item: how many of the version's delete ops hide it and are not undone
    /// by the version's undeletes.
    dels: Vec<u32>,
    /// The version's undeletes: per delete op they undo, how many name it.
    undone: HashMap<Lv, u32>,
    /// Bit `lv` is set when item `lv` is visible at the version (included, not hidden).
    vis: Vec<u64>,
}

impl Mask {
    #[inline]
    fn has(&self, lv: Lv) -> bool {
        lv == NONE || self.bits[(lv / 64) as usize] & (1 << (lv % 64)) != 0
    }

    #[inline]
    fn visible(&self, lv: Lv) -> bool {
        self.vis[(lv / 64) as usize] & (1 << (lv % 64)) != 0
    }
}

impl Doc {
    /// The document as it was at `version`: read-only views of every field, as a
    /// replica holding exactly that version's operations showed them.
    ///
    /// `version` is usually one this replica had ([`Doc::version`] at some moment) or
    /// one a peer reported. A version naming operations this replica does not have is
    /// [`HistoryError::Unknown`]; one no replica could hold (an operation without what
    /// it depends on) is [`HistoryError::NotClosed`].
    ///
    /// ```
    /// use chorus_doc::{Doc, ReplicaId};
    /// let mut doc = Doc::new(ReplicaId::from_u128(1));
    /// let mut tx = doc.transact(); tx.text("t").insert(0, "draft").unwrap(); tx.commit();
    /// let draft = doc.version().clone();
    /// let mut tx = doc.transact(); tx.text("t").insert(5, " two").unwrap(); tx.commit();
    /// assert_eq!(doc.at(&draft).unwrap().text("t").to_string(), "draft");
    /// ```
    pub fn at(&self, version: &VersionVector) -> Result<Checkout<'_>, HistoryError> {
        let mask = self.mask(version)?;
        Ok(Checkout {
            doc: self,
            branch: self.branch_at(&mask, true),
            version: version.clone(),
        })
    }

    /// What changed from version `from` to version `to`, as the [`Event`] an observer
    /// would receive: text and list deltas on the text at `from` (in `unit`), counter
    /// moves, register and map changes, parents before their children. Applying it to
    /// the state at `from` gives the state at `to`. The versions need not be ordered:
    /// from a version to an earlier one the deltas undo what happened in between.
    ///
    /// The origin names the replicas whose operations are in `to` but not in `from`.
    pub fn diff(
        &self,
        from: &VersionVector,
        to: &VersionVector,
        unit: TextUnit,
    ) -> Result<Event, HistoryError> {
        // The current version needs no mask: its state is the current branch.
        let mask_of = |v: &VersionVector| -> Result<Option<Mask>, HistoryError> {
            if v == self.version() {
                Ok(None)
            } else {
                self.mask(v).map(Some)
            }
        };
        let (a, b) = (mask_of(from)?, mask_of(to)?);
        let (ba, bb) = (
            a.as_ref().map(|m| self.branch_at(m, false)),
            b.as_ref().map(|m| self.branch_at(m, false)),
        );
        let (ba, bb) = (
            ba.as_ref().unwrap_or(&self.branch),
            bb.as_ref().unwrap_or(&self.branch),
        );
        let mut changes = Vec::new();
        for (f, field) in self.log.fields.iter().enumerate() {
            let f = f as u32;
            let diff = match field.kind {
                Kind::Text | Kind::List => self.seq_delta(f, a.as_ref(), b.as_ref(), unit),
                Kind::Counter => {
                    let (x, y) = (counter_of(ba, f), counter_of(bb, f));
                    (x != y).then(|| Diff::Counter {
                        delta: y.wrapping_sub(x),
                        value: y,
                    })
                }
                Kind::Register(_) => {
                    let (ra, rb) = (self.register_in(ba, f), self.register_in(bb, f));
                    let (old_conflicts, conflicts) = (ra.conflicts(), rb.conflicts());
                    let value = rb.value();
                    (value != ra.value() || conflicts != old_conflicts).then_some(Diff::Register {
                        value,
                        conflicts,
                        was_conflict: !old_conflicts.is_empty(),
                    })
                }
                Kind::Map => {
                    let (ma, mb) = (self.map_in(ba, f), self.map_in(bb, f));
                    let mut keys: Vec<&str> = ma.keys().chain(mb.keys()).collect();
                    keys.sort_unstable();
                    keys.dedup();
                    let changed: Vec<KeyChange> = keys
                        .into_iter()
                        .filter_map(|k| {
                            let (old, now) = (ma.get(k), mb.get(k));
                            let was = !ma.conflicts(k).is_empty();
                            let conflict = !mb.conflicts(k).is_empty();
                            (old != now || was != conflict).then(|| KeyChange {
                                key: k.to_owned(),
                                value: now,
                                conflict,
                            })
                        })
                        .collect();
                    (!changed.is_empty()).then_some(Diff::Map(changed))
                }
            };
            if let Some(diff) = diff {
                changes.push(FieldChange {
                    path: self.path(f),
                    kind: field.kind.clone(),
                    diff,
                });
            }
        }
        let mut replicas: Vec<ReplicaId> =
            to.missing_from(from).into_iter().map(|(r, _)| r).collect();
        replicas.sort_unstable();
        Ok(Event {
            origin: Origin::Remote(replicas),
            changes,
        })
    }

    /// A new replica named `replica` holding exactly the operations of `version`: it
    /// shows what this document showed then, can be edited like any document, and
    /// its changes merge back into this one (`self.apply_update(&fork.encode_since(v))`)
    /// or into any other replica of the document.
    pub fn fork_at(
        &self,
        version: &VersionVector,
        replica: ReplicaId,
    ) -> Result<Doc, HistoryError> {
        self.mask(version)?;
        let runs = self.log.runs_between(&VersionVector::new(), version);
        let bytes = crate::encoding::encode_runs(&runs, &self.log.changes_for(&runs), false);
        let mut fork = Doc::new(replica);
        fork.rules = self.rules.clone();
        fork.set_pending_limit(self.pending_limit());
        fork.apply_update(&bytes)
            .map_err(|e| HistoryError::Internal(format!("a fork failed to load: {e}")))?;
        if fork.version() != version {
            return Err(HistoryError::Internal(
                "a fork does not hold the version it was cut at".into(),
            ));
        }
        Ok(fork)
    }

    /// Makes the document show what it showed at `version`, with new operations, as one
    /// [`Change`] (`None` if nothing differed) at physical time `now_ms` (for register
    /// writes). It is a change like any other: it syncs, the [`UndoManager`]
    /// (crate::UndoManager) can undo it, and edits other replicas make concurrently
    /// are kept: it deletes only what it sees, brings deleted text back by undoing the
    /// deletes (the original characters, not copies), moves counters by the
    /// difference and writes registers and map keys over what they hold.
    ///
    /// Merge registers cannot go back (their merge only grows) and are left as they
    /// are; a multi-value register that was in conflict at `version` is in conflict
    /// again, with the same values, rewritten by this replica.
    pub fn revert_to(
        &mut self,
        version: &VersionVector,
        now_ms: u64,
    ) -> Result<Option<Change>, HistoryError> {
        self.revert_to_with(version, now_ms, CommitOptions::default())
    }

    /// [`revert_to`](Self::revert_to), committed with a message and time like
    /// [`Transaction::commit_with`](crate::Transaction::commit_with).
    pub fn revert_to_with(
        &mut self,
        version: &VersionVector,
        now_ms: u64,
        options: CommitOptions,
    ) -> Result<Option<Change>, HistoryError> {
        let mask = self.mask(version)?;
        let old = self.branch_at(&mask, false);
        self.ensure_index();
        // Who hides each item now: the delete ops not undone, by target.
        let mut hiders: HashMap<Lv, Vec<Lv>> = HashMap::new();
        for e in &self.log.entries {
            if let Op::Delete { .. } = e.op {
                for d in e.lv..e.end() {
                    if !self.branch.undone.contains_key(&d) {
                        hiders.entry(Doc::delete_target(e, d)).or_default().push(d);
                    }
                }
            }
        }
        let tx = self.transact();
        let doc = &mut *tx.doc;
        for f in 0..doc.log.fields.len() as u32 {
            match doc.log.fields[f as usize].kind.clone() {
                Kind::Text | Kind::List => doc.revert_seq(f, &mask, &hiders)?,
                Kind::Counter => {
                    let d = counter_of(&old, f).wrapping_sub(counter_of(&doc.branch, f));
                    if d != 0 {
                        doc.local_atom(f, Atom::Add(d))?;
                    }
                }
                Kind::Register(Rule::Merge(_)) => {}
                Kind::Register(_) => doc.revert_register(f, &old, now_ms)?,
                Kind::Map => doc.revert_map(f, &old)?,
            }
        }
        Ok(tx.commit_with(options))
    }

    // ------------------------------------------------------------ internals

    /// The mask of `version`, checked: every op it names is here and the set is closed.
    pub(crate) fn mask(&self, version: &VersionVector) -> Result<Mask, HistoryError> {
        let n = self.log.next_lv();
        let mut ranges = Vec::new();
        for (replica, next) in version.iter() {
            let have = self
                .log
                .find(&replica)
                .map_or(0, |a| self.log.agents[a as usize].next_seq());
            if next > have {
                return Err(HistoryError::Unknown {
                    replica,
                    have,
                    want: next,
                });
            }
            let a = self
                .log
                .find(&replica)
                .expect("a replica with ops is known");
            for s in &self.log.agents[a as usize].spans {
                if s.seq >= next {
                    break;
                }
                let take = (next - s.seq).min(u64::from(s.len)) as u32;
                ranges.push((s.lv, s.lv + take));
            }
        }
        ranges.sort_unstable();
        let mut bits = vec![0u64; (n as usize).div_ceil(64)];
        for &(lo, hi) in &ranges {
            set_bits(&mut bits, lo, hi);
        }
        let mut mask = Mask {
            bits,
            ranges,
            dels: Vec::new(),
            undone: HashMap::new(),
            vis: Vec::new(),
        };
        // Closed: every reference of an included op is included (everything is, at
        // the current version).
        let everything = mask
            .ranges
            .iter()
            .map(|(lo, hi)| u64::from(hi - lo))
            .sum::<u64>()
            == u64::from(n);
        let mut deletes: Vec<(usize, Lv, Lv)> = Vec::new();
        for (i, lo, hi) in self.pieces(&mask.ranges) {
            let e = &self.log.entries[i];
            if everything {
                match e.op {
                    Op::Delete { .. } => deletes.push((i, lo, hi)),
                    Op::Undelete { target } => {
                        let t = target + (lo - e.lv);
                        for d in t..t + (hi - lo) {
                            *mask.undone.entry(d).or_default() += 1;
                        }
                    }
                    _ => {}
                }
                continue;
            }
            let ok = match e.op {
                Op::Insert {
                    origin_left,
                    origin_right,
                    ..
                } => (lo > e.lv || mask.has(origin_left)) && mask.has(origin_right),
                Op::Delete { .. } => {
                    deletes.push((i, lo, hi));
                    let (a, b) = (Doc::delete_target(e, lo), Doc::delete_target(e, hi - 1));
                    uniform(&mask.bits, a.min(b), a.max(b) + 1) == Some(true)
                }
                Op::Undelete { target } => {
                    let t = target + (lo - e.lv);
                    for d in t..t + (hi - lo) {
                        *mask.undone.entry(d).or_default() += 1;
                    }
                    uniform(&mask.bits, t, t + (hi - lo)) == Some(true)
                }
                Op::Atom { idx } => match &self.log.atoms[idx as usize] {
                    Atom::Set { preds, .. } => preds.iter().all(|&p| mask.has(p)),
                    Atom::Add(_) => true,
                },
            };
            if !ok {
                let (agent, seq) = self.log.id_of(lo);
                return Err(HistoryError::NotClosed {
                    op: OpId::new(self.log.agents[agent as usize].id, seq),
                });
            }
        }
        // Only items the version has can be hidden at it: the count ends there.
        let top = mask.ranges.iter().map(|r| r.1).max().unwrap_or(0);
        let mut dels = vec![0u32; top as usize];
        let mut vis = mask.bits.clone();
        for (i, lo, hi) in deletes {
            let e = &self.log.entries[i];
            for d in lo..hi {
                if mask.undone.is_empty() || !mask.undone.contains_key(&d) {
                    let t = Doc::delete_target(e, d);
                    dels[t as usize] += 1;
                    vis[(t / 64) as usize] &= !(1 << (t % 64));
                }
            }
        }
        mask.dels = dels;
        mask.vis = vis;
        Ok(mask)
    }

    /// The stretches `(entry, lo, hi)` of log entries that `ranges` covers, in LV order.
    fn pieces<'a>(&'a self, ranges: &'a [(Lv, Lv)]) -> impl Iterator<Item = (usize, Lv, Lv)> + 'a {
        ranges.iter().flat_map(move |&(lo, hi)| {
            let mut i = self.log.entry_index(lo);
            let mut lv = lo;
            std::iter::from_fn(move || {
                if lv >= hi {
                    return None;
                }
                let end = self.log.entries[i].end().min(hi);
                let piece = (i, lv, end);
                lv = end;
                i += 1;
                Some(piece)
            })
        })
    }

    /// The branch at `mask`'s version: atoms folded again, and (with `trees`) the run
    /// trees filtered from the current ones. The LV index stays off.
    fn branch_at(&self, mask: &Mask, trees: bool) -> Branch {
        let mut b = Branch {
            bodies: self.log.fields.iter().map(|f| Body::new(&f.kind)).collect(),
            first: vec![None; self.log.fields.len()],
            undone: mask.undone.clone(),
            ..Branch::default()
        };
        // Without trees (a diff, a revert) only counters, registers and maps matter.
        let atoms = self
            .log
            .fields
            .iter()
            .any(|f| !matches!(f.kind, Kind::Text | Kind::List));
        // A field's first op at the version is its first op now, when the version
        // has that; only other fields need a look at every op.
        let mut search_first = !trees && atoms;
        if trees {
            for (at, now) in b.first.iter_mut().zip(&self.branch.first) {
                match *now {
                    Some((_, _, lv)) if mask.has(lv) => *at = *now,
                    Some(_) => search_first = true,
                    None => {}
                }
            }
        }
        let pieces = if atoms || search_first {
            &mask.ranges[..]
        } else {
            &[]
        };
        for (i, lo, _) in self.pieces(pieces) {
            let e = &self.log.entries[i];
            if search_first {
                let lamport = e.lamport + u64::from(lo - e.lv);
                let replica = self.log.agents[e.agent as usize].id;
                let first = &mut b.first[e.field as usize];
                if first.is_none_or(|(l, r, _)| (lamport, replica) < (l, r)) {
                    *first = Some((lamport, replica, lo));
                }
            }
            if let Op::Atom { idx } = e.op {
                let f = e.field as usize;
                apply_atom_to(
                    &mut b.bodies[f],
                    &self.log.fields[f].kind,
                    &self.rules,
                    &self.log.atoms[idx as usize],
                    lo,
                );
            }
        }
        if trees {
            for f in 0..self.log.fields.len() as u32 {
                if let Body::Seq(now) = &self.branch.bodies[f as usize] {
                    let t = self.filter_tree(now, f, mask);
                    b.bodies[f as usize] = Body::Seq(t);
                }
            }
        }
        b
    }

    /// The items of `tree` (field `f`) that `mask` includes, with its delete counts.
    fn filter_tree(&self, tree: &Tree, f: u32, mask: &Mask) -> Tree {
        let is_list = self.log.fields[f as usize].kind == Kind::List;
        let mut out: Vec<Run> = Vec::new();
        for r in tree.runs() {
            // Whole runs first: most are wholly in or out, and most of those visible.
            match uniform(&mask.bits, r.lv, r.lv + r.len) {
                Some(false) => continue,
                Some(true) if uniform(&mask.vis, r.lv, r.lv + r.len) == Some(true) => {
                    out.push(Run { dels: 0, ..*r });
                    continue;
                }
                _ => {}
            }
            let mut k = 0;
            while k < r.len {
                let lv = r.lv + k;
                let inc = mask.has(lv);
                let dels = if inc { mask.dels[lv as usize] } else { 0 };
                let mut j = k + 1;
                while j < r.len
                    && mask.has(r.lv + j) == inc
                    && (!inc || mask.dels[(r.lv + j) as usize] == dels)
                {
                    j += 1;
                }
                if inc {
                    out.push(self.sub_run(r, k, j, is_list, dels));
                }
                k = j;
            }
        }
        Tree::from_runs(&out)
    }

    /// Items `k..j` of run `r` as a run of their own, hidden by `dels` deletes.
    fn sub_run(&self, r: &Run, k: u32, j: u32, is_list: bool, dels: u32) -> Run {
        let (byte_start, byte_len, utf16_len) = if is_list || r.byte_len == r.len {
            (r.byte_start + k, j - k, j - k)
        } else {
            let text = r.text(&self.log.content);
            let mut it = text.char_indices().skip(k as usize);
            let b0 = it.next().map_or(text.len(), |(b, _)| b);
            let sub: &str = {
                let rest = &text[b0..];
                let end = rest
                    .char_indices()
                    .nth((j - k) as usize)
                    .map_or(rest.len(), |(b, _)| b);
                &rest[..end]
            };
            (
                r.byte_start + b0 as u32,
                sub.len() as u32,
                sub.encode_utf16().count() as u32,
            )
        };
        Run {
            lv: r.lv + k,
            len: j - k,
            origin_left: if k == 0 { r.origin_left } else { r.lv + k - 1 },
            origin_right: r.origin_right,
            byte_start,
            byte_len,
            utf16_len,
            dels,
        }
    }

    /// The delta of text or list field `f` from version `a` to version `b` (`None`:
    /// the current version, where a run's visibility is its own).
    fn seq_delta(
        &self,
        f: u32,
        a: Option<&Mask>,
        b: Option<&Mask>,
        unit: TextUnit,
    ) -> Option<Diff> {
        let whole = |m: Option<&Mask>, r: &Run| match m {
            None => Some(!r.deleted()),
            Some(m) => uniform(&m.vis, r.lv, r.lv + r.len),
        };
        let shows = |m: Option<&Mask>, r: &Run, lv: Lv| match m {
            None => !r.deleted(),
            Some(m) => m.visible(lv),
        };
        let tree = self.branch.seq(f);
        let is_list = self.log.fields[f as usize].kind == Kind::List;
        let mut text: Vec<TextDelta> = Vec::new();
        let mut list: Vec<ListDelta> = Vec::new();
        let mut retain = 0usize;
        let mut changed = false;
        let units = |r: &Run| match unit {
            TextUnit::Utf16 if !is_list => r.utf16_len as usize,
            _ => r.len as usize,
        };
        for r in tree.runs() {
            let mut k = 0;
            // Whole runs first: most look the same at both versions.
            match (whole(a, r), whole(b, r)) {
                (Some(false), Some(false)) => continue,
                (Some(true), Some(true)) => {
                    retain += units(r);
                    continue;
                }
                _ => {}
            }
            while k < r.len {
                let lv = r.lv + k;
                let (va, vb) = (shows(a, r, lv), shows(b, r, lv));
                let mut j = k + 1;
                while j < r.len && shows(a, r, r.lv + j) == va && shows(b, r, r.lv + j) == vb {
                    j += 1;
                }
                if va || vb {
                    let piece = if j - k == r.len {
                        *r
                    } else {
                        self.sub_run(r, k, j, is_list, 0)
                    };
                    let n = units(&piece);
                    if va && vb {
                        retain += n;
                    } else {
                        changed = true;
                        if retain > 0 {
                            push_text(&mut text, TextDelta::Retain(retain));
                            push_list(&mut list, ListDelta::Retain(retain));
                            retain = 0;
                        }
                        if va {
                            push_text(&mut text, TextDelta::Delete(n));
                            push_list(&mut list, ListDelta::Delete(n));
                        } else if is_list {
                            let s = piece.byte_start as usize;
                            let vals = self.log.elems[s..s + piece.len as usize].to_vec();
                            push_list(&mut list, ListDelta::Insert(vals));
                        } else {
                            let t = piece.text(&self.log.content).to_owned();
                            push_text(&mut text, TextDelta::Insert(t));
                        }
                    }
                }
                k = j;
            }
        }
        changed.then_some({
            if is_list {
                Diff::List(list)
            } else {
                Diff::Text(text)
            }
        })
    }

    fn register_in<'a>(&'a self, branch: &'a Branch, f: u32) -> RegisterView<'a> {
        RegisterView {
            doc: self,
            branch,
            field: Some(f),
        }
    }

    fn map_in<'a>(&'a self, branch: &'a Branch, f: u32) -> MapView<'a> {
        MapView {
            doc: self,
            branch,
            field: Some(f),
        }
    }

    /// Makes text or list field `f` show the items `mask` shows.
    fn revert_seq(
        &mut self,
        f: u32,
        mask: &Mask,
        hiders: &HashMap<Lv, Vec<Lv>>,
    ) -> Result<(), EditError> {
        // Decide first (on the tree as it is), then make the ops.
        let mut hide: Vec<(Lv, u32)> = Vec::new();
        let mut restore: Vec<Lv> = Vec::new();
        for r in self.branch.seq(f).runs() {
            for lv in r.lv..r.lv + r.len {
                match (!r.deleted(), mask.visible(lv)) {
                    (true, false) => match hide.last_mut() {
                        Some((lo, n)) if *lo + *n == lv => *n += 1,
                        _ => hide.push((lv, 1)),
                    },
                    (false, true) => restore.extend(hiders.get(&lv).into_iter().flatten().copied()),
                    _ => {}
                }
            }
        }
        for (lo, n) in hide {
            self.local_delete_items(f, lo, n)?;
        }
        restore.sort_unstable();
        let mut i = 0;
        while i < restore.len() {
            let mut n = 1;
            while i + (n as usize) < restore.len() && restore[i + n as usize] == restore[i] + n {
                n += 1;
            }
            self.local_undelete(f, restore[i], n)?;
            i += n as usize;
        }
        Ok(())
    }

    /// Makes register `f` hold what it held in `old`.
    fn revert_register(&mut self, f: u32, old: &Branch, now_ms: u64) -> Result<(), EditError> {
        let (was, was_conflicts) = {
            let r = self.register_in(old, f);
            (r.writes(), r.conflicts())
        };
        let now = self.register_in(&self.branch, f);
        let (value, conflicts) = (now.value(), now.conflicts());
        let old_value = was.last().map(|w| w.value.clone());
        if value == old_value
            && conflicts
                .iter()
                .map(|w| &w.value)
                .eq(was_conflicts.iter().map(|w| &w.value))
        {
            return Ok(());
        }
        let held: Box<[Lv]> = match &self.branch.bodies[f as usize] {
            Body::Register(w) => w.as_slice().into(),
            _ => Box::new([]),
        };
        // One write per value held then (one, unless they conflicted), in their order;
        // the first supersedes what is held now, the others none, so they conflict
        // again exactly when they did.
        let values: Vec<Option<Value>> = if was_conflicts.is_empty() {
            vec![old_value]
        } else {
            was_conflicts.into_iter().map(|w| Some(w.value)).collect()
        };
        for (i, v) in values.into_iter().enumerate() {
            let stamp = crate::types::hlc::next(self.log.hlc, now_ms);
            self.log.hlc = stamp;
            self.local_atom(
                f,
                Atom::Set {
                    key: None,
                    value: v.map(MapValue::Value),
                    hlc: stamp,
                    preds: if i == 0 { held.clone() } else { Box::new([]) },
                },
            )?;
        }
        Ok(())
    }

    /// Makes every key of map `f` show what it showed in `old`.
    fn revert_map(&mut self, f: u32, old: &Branch) -> Result<(), EditError> {
        type KeyWrite = (std::sync::Arc<str>, Option<MapValue>, Box<[Lv]>);
        let mut writes: Vec<KeyWrite> = Vec::new();
        {
            let (was, now) = (self.map_in(old, f), self.map_in(&self.branch, f));
            let mut keys: Vec<&str> = was.keys().chain(now.keys()).collect();
            keys.sort_unstable();
            keys.dedup();
            let Body::Map(held) = &self.branch.bodies[f as usize] else {
                return Ok(());
            };
            for k in keys {
                let target = was.get(k);
                if target != now.get(k) {
                    let preds = held
                        .get(k)
                        .map_or(Box::new([]) as Box<[Lv]>, |w| w.as_slice().into());
                    writes.push((k.into(), target, preds));
                }
            }
        }
        for (key, value, preds) in writes {
            self.local_atom(
                f,
                Atom::Set {
                    key: Some(key),
                    value,
                    hlc: 0,
                    preds,
                },
            )?;
        }
        Ok(())
    }
}

fn counter_of(b: &Branch, f: u32) -> i64 {
    match b.bodies[f as usize] {
        Body::Counter(v) => v,
        _ => 0,
    }
}

/// The words of a bit set that bits `lo..hi` fall in, each with the mask of those bits.
fn words(lo: Lv, hi: Lv) -> impl Iterator<Item = (usize, u64)> {
    let mut lv = lo;
    std::iter::from_fn(move || {
        if lv >= hi {
            return None;
        }
        let (w, b) = ((lv / 64) as usize, lv % 64);
        let n = (64 - b).min(hi - lv);
        lv += n;
        Some((
            w,
            if n == 64 {
                u64::MAX
            } else {
                ((1u64 << n) - 1) << b
            },
        ))
    })
}

/// Whether bits `lo..hi` (not empty) are all set (`Some(true)`), all clear
/// (`Some(false)`), or mixed.
fn uniform(bits: &[u64], lo: Lv, hi: Lv) -> Option<bool> {
    let (mut any, mut all) = (false, true);
    for (w, m) in words(lo, hi) {
        let x = bits[w] & m;
        any |= x != 0;
        all &= x == m;
        if any && !all {
            return None;
        }
    }
    Some(all)
}

fn set_bits(bits: &mut [u64], lo: Lv, hi: Lv) {
    for (w, m) in words(lo, hi) {
        bits[w] |= m;
    }
}
