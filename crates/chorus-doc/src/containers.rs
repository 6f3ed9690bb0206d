//! Typed handles on counters, registers, maps and lists, for editing (inside a
//! [`Transaction`]) and for reading; and the document's JSON view.

use std::fmt;
use std::sync::Arc;

use crate::branch::{Body, Branch};
use crate::doc::Doc;
use crate::encoding::MAX_DEPTH;
use crate::local::{TextMut, Transaction};
use crate::oplog::Atom;
use crate::oplog::ROOT;
use crate::text::TextView;
use crate::tree::{Lv, Unit};
use crate::types::hlc;
use crate::{EditError, Kind, MapValue, MergeRule, OpId, Rule, Value, Write};

// ------------------------------------------------------------------ handles

/// Editing access to a counter inside a transaction.
pub struct CounterMut<'t> {
    pub(crate) doc: &'t mut Doc,
    pub(crate) field: u32,
}

/// Editing access to a register inside a transaction.
pub struct RegisterMut<'t> {
    pub(crate) doc: &'t mut Doc,
    pub(crate) field: u32,
}

/// Editing access to a map inside a transaction.
pub struct MapMut<'t> {
    pub(crate) doc: &'t mut Doc,
    pub(crate) field: u32,
}

/// Editing access to a list inside a transaction.
pub struct ListMut<'t> {
    pub(crate) doc: &'t mut Doc,
    pub(crate) field: u32,
}

/// Read-only access to a counter.
#[derive(Clone, Copy)]
pub struct CounterView<'d> {
    pub(crate) branch: &'d Branch,
    pub(crate) field: Option<u32>,
}

/// Read-only access to a register.
#[derive(Clone, Copy)]
pub struct RegisterView<'d> {
    pub(crate) doc: &'d Doc,
    pub(crate) branch: &'d Branch,
    pub(crate) field: Option<u32>,
}

/// Read-only access to a map.
#[derive(Clone, Copy)]
pub struct MapView<'d> {
    pub(crate) doc: &'d Doc,
    pub(crate) branch: &'d Branch,
    pub(crate) field: Option<u32>,
}

/// Read-only access to a list.
#[derive(Clone, Copy)]
pub struct ListView<'d> {
    pub(crate) doc: &'d Doc,
    pub(crate) branch: &'d Branch,
    pub(crate) field: Option<u32>,
}

/// A root name used with several kinds: every replica shows `kinds[0]` (the kind
/// whose first operation has the smallest Lamport timestamp, ties broken by replica
/// id) under that name; the others stay readable through their typed accessors.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FieldConflict {
    /// The field's name.
    pub name: String,
    /// Its kinds, the shown one first.
    pub kinds: Vec<Kind>,
}

impl<'d> Transaction<'d> {
    /// The counter `name`, created on first use.
    pub fn counter(&mut self, name: &str) -> CounterMut<'_> {
        let field = self.doc.field_id(ROOT, name, &Kind::Counter);
        CounterMut {
            doc: self.doc,
            field,
        }
    }

    /// The register `name` with conflict rule `rule`, created on first use. (The same
    /// name with another rule is another field.)
    pub fn register(&mut self, name: &str, rule: Rule) -> RegisterMut<'_> {
        let field = self.doc.field_id(ROOT, name, &Kind::Register(rule));
        RegisterMut {
            doc: self.doc,
            field,
        }
    }

    /// The map `name`, created on first use.
    pub fn map(&mut self, name: &str) -> MapMut<'_> {
        let field = self.doc.field_id(ROOT, name, &Kind::Map);
        MapMut {
            doc: self.doc,
            field,
        }
    }

    /// The list `name`, created on first use.
    pub fn list(&mut self, name: &str) -> ListMut<'_> {
        let field = self.doc.field_id(ROOT, name, &Kind::List);
        ListMut {
            doc: self.doc,
            field,
        }
    }
}

impl Doc {
    /// Reads the counter `name` (0 if it does not exist).
    pub fn counter(&self, name: &str) -> CounterView<'_> {
        CounterView {
            branch: &self.branch,
            field: self.find_field(ROOT, name, &Kind::Counter),
        }
    }

    /// Reads the register `name` with rule `rule` (empty if it does not exist).
    pub fn register(&self, name: &str, rule: Rule) -> RegisterView<'_> {
        RegisterView {
            doc: self,
            branch: &self.branch,
            field: self.find_field(ROOT, name, &Kind::Register(rule)),
        }
    }

    /// Reads the map `name` (empty if it does not exist).
    pub fn map(&self, name: &str) -> MapView<'_> {
        MapView {
            doc: self,
            branch: &self.branch,
            field: self.find_field(ROOT, name, &Kind::Map),
        }
    }

    /// Reads the list `name` (empty if it does not exist).
    pub fn list(&self, name: &str) -> ListView<'_> {
        ListView {
            doc: self,
            branch: &self.branch,
            field: self.find_field(ROOT, name, &Kind::List),
        }
    }

    /// The kind shown under root name `name`: of the kinds it has operations in, the
    /// one whose first operation has the smallest (Lamport timestamp, replica id).
    /// Every replica that has seen the same operations agrees.
    pub fn root_kind(&self, name: &str) -> Option<Kind> {
        root_kinds(self, &self.branch, name).into_iter().next()
    }

    /// Root names used with more than one kind (concurrently, or by mistake). Nothing
    /// is lost: each kind's field stays readable through its typed accessor.
    pub fn field_conflicts(&self) -> Vec<FieldConflict> {
        field_conflicts(self, &self.branch)
    }

    /// Adds a merge rule for registers of kind `Rule::Merge(rule.name())`. Writes that
    /// arrived before the rule was known are merged now.
    ///
    /// A name names one rule for good: a name already in use here (the built-ins
    /// `"max"`, `"min"`, `"union"`, or a rule added before) is refused, because values
    /// already merged by the old rule would disagree with the new one.
    pub fn add_merge_rule(&mut self, rule: Arc<dyn MergeRule>) -> Result<(), EditError> {
        let name: Arc<str> = rule.name().into();
        if self.rules.contains_key(&name) {
            return Err(EditError::RuleExists {
                name: name.to_string(),
            });
        }
        self.rules.insert(name.clone(), rule.clone());
        for (f, body) in self.log.fields.iter().zip(&mut self.branch.bodies) {
            if f.kind != Kind::Register(Rule::Merge(name.clone())) {
                continue;
            }
            if let Body::Merged { value, unmerged } = body {
                for lv in std::mem::take(unmerged) {
                    if let Some(v) = atom_value(self.log.atom_at(lv)) {
                        let v = rule.canonical(v.clone());
                        *value = Some(match value.take() {
                            None => v,
                            Some(old) => rule.merge(&old, &v),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// The whole document as JSON: root fields by name (the shown kind of each),
    /// texts as strings, lists as arrays, maps as objects, counters as numbers,
    /// registers as their value (`null` when unset). A multi-value register in
    /// conflict shows as `{"conflict": [value, …]}`.
    pub fn to_json(&self) -> serde_json::Value {
        json(self, &self.branch)
    }

    /// (Lamport timestamp, replica, seq) of op `lv`.
    pub(crate) fn stamp(&self, lv: Lv) -> (u64, crate::ReplicaId, u64) {
        let e = &self.log.entries[self.log.entry_index(lv)];
        let (agent, seq) = self.log.id_of(lv);
        (
            e.lamport + u64::from(lv - e.lv),
            self.log.agents[agent as usize].id,
            seq,
        )
    }

    /// The writes `lvs` (register writes or map key writes), described.
    fn writes(&self, lvs: &[Lv]) -> Vec<Write<MapValue>> {
        lvs.iter()
            .filter_map(|&lv| {
                let Atom::Set {
                    value: Some(value),
                    hlc: stamp,
                    ..
                } = self.log.atom_at(lv)
                else {
                    return None;
                };
                let (lamport, replica, seq) = self.stamp(lv);
                Some(Write {
                    value: value.clone(),
                    id: OpId::new(replica, seq),
                    replica,
                    time_ms: hlc::millis(*stamp),
                    lamport,
                })
            })
            .collect()
    }
}

fn atom_value(atom: &Atom) -> Option<&Value> {
    match atom {
        Atom::Set {
            value: Some(MapValue::Value(v)),
            ..
        } => Some(v),
        _ => None,
    }
}

fn plain(w: Write<MapValue>) -> Option<Write<Value>> {
    match w.value {
        MapValue::Value(v) => Some(Write {
            value: v,
            id: w.id,
            replica: w.replica,
            time_ms: w.time_ms,
            lamport: w.lamport,
        }),
        MapValue::Container(_) => None,
    }
}

// ------------------------------------------------------------------ counters

impl CounterMut<'_> {
    /// Adds `delta` (negative to decrement). The sum wraps around on overflow, like
    /// `i64::wrapping_add`: wrapping addition is commutative and associative, so every
    /// replica agrees whatever order the adds arrive in (saturating would not).
    pub fn add(&mut self, delta: i64) -> Result<(), EditError> {
        if delta == 0 {
            return Ok(());
        }
        self.doc.local_atom(self.field, Atom::Add(delta))
    }

    /// The current value.
    pub fn value(&self) -> i64 {
        self.view().value()
    }

    /// A read-only view.
    pub fn view(&self) -> CounterView<'_> {
        CounterView {
            branch: &self.doc.branch,
            field: Some(self.field),
        }
    }
}

impl CounterView<'_> {
    /// The sum of every add (wrapping on overflow).
    pub fn value(&self) -> i64 {
        match self.field.map(|f| &self.branch.bodies[f as usize]) {
            Some(Body::Counter(v)) => *v,
            _ => 0,
        }
    }
}

// ------------------------------------------------------------------ registers

impl RegisterMut<'_> {
    /// Writes `value` at physical time `now_ms` (milliseconds since the Unix epoch,
    /// read by the caller: the document reads no clock).
    ///
    /// The write supersedes every write this replica has seen: with last-writer-wins
    /// it wins over them whatever the clocks say; in a multi-value register it
    /// resolves their conflict. In a merge register it is merged with them.
    pub fn set(&mut self, value: impl Into<Value>, now_ms: u64) -> Result<(), EditError> {
        let doc = &mut *self.doc;
        let preds: Box<[Lv]> = match &doc.branch.bodies[self.field as usize] {
            Body::Register(writes) => writes.as_slice().into(),
            _ => Box::new([]),
        };
        let stamp = hlc::next(doc.log.hlc, now_ms);
        let old = doc.log.hlc;
        doc.log.hlc = stamp;
        let r = doc.local_atom(
            self.field,
            Atom::Set {
                key: None,
                value: Some(MapValue::Value(value.into())),
                hlc: stamp,
                preds,
            },
        );
        if r.is_err() {
            doc.log.hlc = old;
        }
        r
    }

    /// The current value (see [`RegisterView::value`]).
    pub fn value(&self) -> Option<Value> {
        self.view().value()
    }

    /// A read-only view.
    pub fn view(&self) -> RegisterView<'_> {
        RegisterView {
            doc: self.doc,
            branch: &self.doc.branch,
            field: Some(self.field),
        }
    }
}

impl<'d> RegisterView<'d> {
    pub(crate) fn at(doc: &'d Doc, field: u32) -> Self {
        RegisterView {
            doc,
            branch: &doc.branch,
            field: Some(field),
        }
    }

    /// The value: for last-writer-wins, the winning write; for multi-value, the
    /// write that sorts last by (clock, replica) among the conflicting ones (check
    /// [`conflicts`](Self::conflicts)); for merge registers, the merge of every write
    /// (`None` while the rule is unknown here). `None` if never written.
    pub fn value(&self) -> Option<Value> {
        match &self.branch.bodies[self.field? as usize] {
            Body::Register(_) => self.writes().pop().map(|w| w.value),
            Body::Merged { value, unmerged } => {
                if unmerged.is_empty() {
                    value.clone()
                } else {
                    None
                }
            }
            _ => None,
        }
    }

    /// The writes the register holds, ordered by (clock, replica): one unless
    /// concurrent writes conflict. (Merge registers hold no separate writes.)
    pub fn writes(&self) -> Vec<Write<Value>> {
        let Some(f) = self.field else {
            return Vec::new();
        };
        let Body::Register(lvs) = &self.branch.bodies[f as usize] else {
            return Vec::new();
        };
        // (full clock stamp, write) of the held writes that have a value; a held
        // write without one (a cleared register) shows nothing.
        let mut keyed: Vec<(u64, Write<Value>)> = lvs
            .iter()
            .filter_map(|&lv| {
                let Atom::Set { hlc, .. } = self.doc.log.atom_at(lv) else {
                    return None;
                };
                let w = self.doc.writes(&[lv]).pop().and_then(plain)?;
                Some((*hlc, w))
            })
            .collect();
        keyed.sort_by(|(a, x), (b, y)| (a, x.replica).cmp(&(b, y.replica)));
        keyed.into_iter().map(|(_, w)| w).collect()
    }

    /// The conflicting writes (with their replicas and times) when concurrent writes
    /// hold different values; empty otherwise. Writing the register resolves them.
    pub fn conflicts(&self) -> Vec<Write<Value>> {
        let ws = self.writes();
        if ws.iter().any(|w| w.value != ws[0].value) {
            ws
        } else {
            Vec::new()
        }
    }
}

// ------------------------------------------------------------------ maps

impl<'t> MapMut<'t> {
    fn writes_of(&self, key: &str) -> Box<[Lv]> {
        match &self.doc.branch.bodies[self.field as usize] {
            Body::Map(keys) => keys.get(key).map_or(Box::new([]), |w| w.as_slice().into()),
            _ => Box::new([]),
        }
    }

    fn write(&mut self, key: &str, value: Option<MapValue>) -> Result<(), EditError> {
        let preds = self.writes_of(key);
        if value.is_none() && preds.is_empty() {
            return Ok(());
        }
        self.doc.local_atom(
            self.field,
            Atom::Set {
                key: Some(key.into()),
                value,
                hlc: 0,
                preds,
            },
        )
    }

    /// Sets `key` to `value`, superseding what this replica has seen there.
    /// Concurrent writes to one key are all kept: the one with the highest (Lamport
    /// timestamp, replica id) shows, and [`MapView::conflicts`] lists them all.
    pub fn set(&mut self, key: &str, value: impl Into<Value>) -> Result<(), EditError> {
        self.write(key, Some(MapValue::Value(value.into())))
    }

    /// Deletes `key`. A concurrent write to the key survives the delete.
    pub fn delete(&mut self, key: &str) -> Result<(), EditError> {
        self.write(key, None)
    }

    /// The nested container of `kind` under `key`, created if needed. Containers
    /// created concurrently under one key with one kind are the same container, so
    /// both replicas' edits are kept.
    fn child(&mut self, key: &str, kind: Kind) -> Result<u32, EditError> {
        if self.doc.depth(self.field) + 1 > MAX_DEPTH {
            return Err(EditError::TooDeep);
        }
        let want = MapValue::Container(kind.clone());
        let shown = self.view().get(key);
        if shown.as_ref() != Some(&want) {
            self.write(key, Some(want))?;
        }
        Ok(self.doc.field_id(self.field, key, &kind))
    }

    /// The text under `key`, created if needed.
    pub fn text(&mut self, key: &str) -> Result<TextMut<'_>, EditError> {
        let field = self.child(key, Kind::Text)?;
        Ok(TextMut {
            doc: self.doc,
            field,
        })
    }

    /// The list under `key`, created if needed.
    pub fn list(&mut self, key: &str) -> Result<ListMut<'_>, EditError> {
        let field = self.child(key, Kind::List)?;
        Ok(ListMut {
            doc: self.doc,
            field,
        })
    }

    /// The map under `key`, created if needed.
    pub fn map(&mut self, key: &str) -> Result<MapMut<'_>, EditError> {
        let field = self.child(key, Kind::Map)?;
        Ok(MapMut {
            doc: self.doc,
            field,
        })
    }

    /// The counter under `key`, created if needed.
    pub fn counter(&mut self, key: &str) -> Result<CounterMut<'_>, EditError> {
        let field = self.child(key, Kind::Counter)?;
        Ok(CounterMut {
            doc: self.doc,
            field,
        })
    }

    /// The register with `rule` under `key`, created if needed.
    pub fn register(&mut self, key: &str, rule: Rule) -> Result<RegisterMut<'_>, EditError> {
        let field = self.child(key, Kind::Register(rule))?;
        Ok(RegisterMut {
            doc: self.doc,
            field,
        })
    }

    /// The value shown under `key`.
    pub fn get(&self, key: &str) -> Option<MapValue> {
        self.view().get(key)
    }

    /// A read-only view.
    pub fn view(&self) -> MapView<'_> {
        MapView {
            doc: self.doc,
            branch: &self.doc.branch,
            field: Some(self.field),
        }
    }
}

impl<'d> MapView<'d> {
    pub(crate) fn at(doc: &'d Doc, field: u32) -> Self {
        MapView {
            doc,
            branch: &doc.branch,
            field: Some(field),
        }
    }

    fn keys_body(&self) -> Option<&'d std::collections::BTreeMap<Arc<str>, Vec<Lv>>> {
        match &self.branch.bodies[self.field? as usize] {
            Body::Map(keys) => Some(keys),
            _ => None,
        }
    }

    /// The value shown under `key`: of the writes not superseded, the one with the
    /// highest (Lamport timestamp, replica id).
    pub fn get(&self, key: &str) -> Option<MapValue> {
        let lvs = self.keys_body()?.get(key)?;
        self.winner(lvs).map(|w| w.value)
    }

    fn winner(&self, lvs: &[Lv]) -> Option<Write<MapValue>> {
        self.doc
            .writes(lvs)
            .into_iter()
            .max_by_key(|w| (w.lamport, w.replica))
    }

    /// Whether `key` holds anything.
    pub fn contains_key(&self, key: &str) -> bool {
        self.keys_body().is_some_and(|k| k.contains_key(key))
    }

    /// The keys, in order.
    pub fn keys(&self) -> impl Iterator<Item = &'d str> + 'd {
        self.keys_body()
            .into_iter()
            .flat_map(|k| k.keys().map(|k| &**k))
    }

    /// (key, shown value) pairs, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&'d str, MapValue)> + 'd {
        let this = *self;
        self.keys_body().into_iter().flat_map(move |k| {
            k.iter()
                .filter_map(move |(key, lvs)| Some((&**key, this.winner(lvs)?.value)))
        })
    }

    /// How many keys hold something.
    pub fn len(&self) -> usize {
        self.keys_body().map_or(0, |k| k.len())
    }

    /// Whether no key holds anything.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every write `key` holds when concurrent writes put different things there
    /// (a value and a container, or two values), ordered by (Lamport timestamp,
    /// replica id), the shown one last; empty when there is no conflict.
    pub fn conflicts(&self, key: &str) -> Vec<Write<MapValue>> {
        let Some(lvs) = self.keys_body().and_then(|k| k.get(key)) else {
            return Vec::new();
        };
        let mut ws = self.doc.writes(lvs);
        ws.sort_by_key(|w| (w.lamport, w.replica));
        if ws.iter().any(|w| w.value != ws[0].value) {
            ws
        } else {
            Vec::new()
        }
    }

    fn child(&self, key: &str, kind: &Kind) -> Option<u32> {
        self.doc.find_field(self.field?, key, kind)
    }

    /// The text under `key` (readable even when another write shows there).
    pub fn text(&self, key: &str) -> TextView<'d> {
        TextView {
            doc: self.doc,
            branch: self.branch,
            field: self.child(key, &Kind::Text),
        }
    }

    /// The list under `key`.
    pub fn list(&self, key: &str) -> ListView<'d> {
        ListView {
            doc: self.doc,
            branch: self.branch,
            field: self.child(key, &Kind::List),
        }
    }

    /// The map under `key`.
    pub fn map(&self, key: &str) -> MapView<'d> {
        MapView {
            doc: self.doc,
            branch: self.branch,
            field: self.child(key, &Kind::Map),
        }
    }

    /// The counter under `key`.
    pub fn counter(&self, key: &str) -> CounterView<'d> {
        CounterView {
            branch: self.branch,
            field: self.child(key, &Kind::Counter),
        }
    }

    /// The register with `rule` under `key`.
    pub fn register(&self, key: &str, rule: Rule) -> RegisterView<'d> {
        RegisterView {
            doc: self.doc,
            branch: self.branch,
            field: self.child(key, &Kind::Register(rule)),
        }
    }
}

// ------------------------------------------------------------------ lists

impl ListMut<'_> {
    /// Inserts `value` at `pos` (0 ≤ `pos` ≤ `len()`).
    pub fn insert(&mut self, pos: usize, value: impl Into<Value>) -> Result<(), EditError> {
        self.doc
            .local_insert_values(self.field, pos, vec![value.into()])
    }

    /// Inserts `values` at `pos`, in order.
    pub fn insert_many(
        &mut self,
        pos: usize,
        values: impl IntoIterator<Item = Value>,
    ) -> Result<(), EditError> {
        self.doc
            .local_insert_values(self.field, pos, values.into_iter().collect())
    }

    /// Appends `value`.
    pub fn push(&mut self, value: impl Into<Value>) -> Result<(), EditError> {
        let len = self.len();
        self.insert(len, value)
    }

    /// Deletes `len` elements starting at `pos`.
    pub fn delete(&mut self, pos: usize, len: usize) -> Result<(), EditError> {
        self.doc.local_delete(self.field, pos, len)
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.view().len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A read-only view.
    pub fn view(&self) -> ListView<'_> {
        ListView {
            doc: self.doc,
            branch: &self.doc.branch,
            field: Some(self.field),
        }
    }
}

impl<'d> ListView<'d> {
    /// The number of elements.
    pub fn len(&self) -> usize {
        self.field
            .map_or(0, |f| self.branch.seq(f).total().chars as usize)
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element at `pos`.
    pub fn get(&self, pos: usize) -> Option<&'d Value> {
        let tree = self.branch.seq(self.field?);
        let (cur, _) = tree
            .find_visible(u32::try_from(pos).ok()?, Unit::Char, &self.doc.log.content)
            .ok()??;
        let r = tree.run(cur.leaf, cur.idx);
        self.doc.log.elems.get((r.byte_start + cur.off) as usize)
    }

    /// The elements, in order.
    pub fn iter(&self) -> impl Iterator<Item = &'d Value> + 'd {
        let (doc, branch) = (self.doc, self.branch);
        self.field.into_iter().flat_map(move |f| {
            branch
                .seq(f)
                .runs()
                .filter(|r| !r.deleted())
                .flat_map(move |r| {
                    let s = r.byte_start as usize;
                    doc.log.elems[s..s + r.len as usize].iter()
                })
        })
    }

    /// The elements, cloned.
    pub fn to_vec(&self) -> Vec<Value> {
        self.iter().cloned().collect()
    }
}

// ------------------------------------------------------------------ Debug

impl fmt::Debug for CounterMut<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CounterMut").field(&self.value()).finish()
    }
}

impl fmt::Debug for CounterView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CounterView").field(&self.value()).finish()
    }
}

impl fmt::Debug for RegisterMut<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RegisterMut")
            .field(&self.view().writes())
            .finish()
    }
}

impl fmt::Debug for RegisterView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RegisterView").field(&self.writes()).finish()
    }
}

impl fmt::Debug for MapMut<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.view(), f)
    }
}

impl fmt::Debug for MapView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl fmt::Debug for ListMut<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.view(), f)
    }
}

impl fmt::Debug for ListView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

// ------------------------------------------------------------------ whole documents

/// The kinds root name `name` has operations in, in `branch`, the shown one first.
pub(crate) fn root_kinds(doc: &Doc, branch: &Branch, name: &str) -> Vec<Kind> {
    let mut found: Vec<_> = doc
        .log
        .fields
        .iter()
        .zip(&branch.first)
        .filter(|(f, _)| f.parent == ROOT && *f.name == *name)
        .filter_map(|(f, first)| {
            let (l, r, _) = (*first)?;
            Some(((l, r), f.kind.clone()))
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, k)| k).collect()
}

/// The root names with operations in `branch`, sorted, once each.
fn root_names<'d>(doc: &'d Doc, branch: &Branch) -> Vec<&'d str> {
    let mut names: Vec<&str> = doc
        .log
        .fields
        .iter()
        .zip(&branch.first)
        .filter(|(f, first)| f.parent == ROOT && first.is_some())
        .map(|(f, _)| &*f.name)
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// Root names used with more than one kind in `branch`.
pub(crate) fn field_conflicts(doc: &Doc, branch: &Branch) -> Vec<FieldConflict> {
    root_names(doc, branch)
        .into_iter()
        .filter_map(|name| {
            let kinds = root_kinds(doc, branch, name);
            (kinds.len() > 1).then(|| FieldConflict {
                name: name.to_owned(),
                kinds,
            })
        })
        .collect()
}

/// `branch` as JSON: each root name under the kind it shows.
pub(crate) fn json(doc: &Doc, branch: &Branch) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for name in root_names(doc, branch) {
        if let Some(kind) = root_kinds(doc, branch, name).into_iter().next() {
            let f = doc.find_field(ROOT, name, &kind);
            out.insert(name.to_owned(), field_json(doc, branch, f, &kind));
        }
    }
    serde_json::Value::Object(out)
}

fn field_json(doc: &Doc, branch: &Branch, field: Option<u32>, kind: &Kind) -> serde_json::Value {
    use serde_json::Value as J;
    match kind {
        Kind::Text => J::String(TextView { doc, branch, field }.to_string()),
        Kind::List => J::Array(
            ListView { doc, branch, field }
                .iter()
                .map(Value::to_json)
                .collect(),
        ),
        Kind::Counter => J::from(CounterView { branch, field }.value()),
        Kind::Register(rule) => {
            let r = RegisterView { doc, branch, field };
            let conflicts = r.conflicts();
            if *rule == Rule::MultiValue && !conflicts.is_empty() {
                let vs = conflicts.iter().map(|w| w.value.to_json()).collect();
                let mut m = serde_json::Map::new();
                m.insert("conflict".into(), J::Array(vs));
                J::Object(m)
            } else {
                r.value().map_or(J::Null, |v| v.to_json())
            }
        }
        Kind::Map => {
            let map = MapView { doc, branch, field };
            let mut m = serde_json::Map::new();
            for (key, value) in map.iter() {
                let j = match value {
                    MapValue::Value(v) => v.to_json(),
                    MapValue::Container(k) => {
                        let child = field.and_then(|f| doc.find_field(f, key, &k));
                        field_json(doc, branch, child, &k)
                    }
                };
                m.insert(key.to_owned(), j);
            }
            J::Object(m)
        }
    }
}
