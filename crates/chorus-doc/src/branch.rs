//! A branch: the state of every field at one version, derived from the op log.
//!
//! The [`OpLog`](crate::oplog::OpLog) holds every operation; a branch holds what
//! they add up to: a run tree per text and list field, a sum per counter, the writes
//! in effect per register and map key, and the LV index that finds an item's leaf.
//! A document's current branch follows every op it applies; [`Doc::at`](crate::Doc::at)
//! builds another one at an earlier version, which the same views read.
//!
//! Invariants (checked by `Doc::check`): `bodies[f]` is field `f`'s state and has
//! the body of its kind; every item of a tree is an insert op of that field included
//! in the branch's version, hidden by exactly the delete ops of that version that no
//! undelete of it undid (`undone` counts the undeletes naming each delete op); when
//! the index is on, `index[lv]` names the leaf holding item `lv`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::merge::MergeRule;
use crate::oplog::Atom;
use crate::tree::{Cur, Lv, LvIndex, Run, Tree};
use crate::{Kind, MapValue, ReplicaId, Rule, Value};

/// The state of every field at one version.
#[derive(Clone, Debug, Default)]
pub(crate) struct Branch {
    /// Each field's state, by field index.
    pub bodies: Vec<Body>,
    /// For every LV that is an insert: the leaf of its field's tree holding it (built
    /// on first need; off in branches built for reading).
    pub index: LvIndex,
    /// Delete ops that undeletes undid (by LV), with how many undeletes name each.
    pub undone: HashMap<Lv, u32>,
    /// Per field, the smallest (Lamport timestamp, replica) of its ops in this
    /// branch: which of several root fields of one name was created first.
    /// (Lamport, replica, LV) of that op.
    pub first: Vec<Option<(u64, ReplicaId, Lv)>>,
}

impl Branch {
    /// The run tree of text or list field `f`.
    pub fn seq(&self, f: u32) -> &Tree {
        match &self.bodies[f as usize] {
            Body::Seq(t) => t,
            _ => unreachable!("only text and list fields have a run tree"),
        }
    }

    /// The run tree of text or list field `f`, to change.
    pub fn seq_mut(&mut self, f: u32) -> &mut Tree {
        match &mut self.bodies[f as usize] {
            Body::Seq(t) => t,
            _ => unreachable!("only text and list fields have a run tree"),
        }
    }

    /// The run tree of field `f` and the LV index, to change both.
    pub fn seq_and_index(&mut self, f: u32) -> (&mut Tree, &mut LvIndex) {
        match &mut self.bodies[f as usize] {
            Body::Seq(t) => (t, &mut self.index),
            _ => unreachable!("only text and list fields have a run tree"),
        }
    }

    /// Inserts `run` at `cur` of field `f`'s tree.
    pub fn insert(&mut self, f: u32, cur: Cur, run: Run, content: &str) {
        let (tree, index) = self.seq_and_index(f);
        tree.insert(cur, run, content, index);
    }
}

/// A field's state, derived from the log.
#[derive(Clone, Debug)]
pub(crate) enum Body {
    /// Text and lists: the run tree.
    Seq(Tree),
    /// The wrapping sum of every add.
    Counter(i64),
    /// Last-writer-wins and multi-value registers: the writes not superseded.
    Register(Vec<Lv>),
    /// Merge registers: the merge of every write so far, and writes not merged yet
    /// because the rule is not known here.
    Merged {
        value: Option<Value>,
        unmerged: Vec<Lv>,
    },
    /// Maps: per key, the writes not superseded (deletes leave none).
    Map(BTreeMap<Arc<str>, Vec<Lv>>),
}

impl Body {
    pub fn new(kind: &Kind) -> Body {
        match kind {
            Kind::Text | Kind::List => Body::Seq(Tree::new()),
            Kind::Counter => Body::Counter(0),
            Kind::Register(Rule::Merge(_)) => Body::Merged {
                value: None,
                unmerged: Vec::new(),
            },
            Kind::Register(_) => Body::Register(Vec::new()),
            Kind::Map => Body::Map(BTreeMap::new()),
        }
    }
}

/// Updates a counter, register or map state with `atom`, applied as op `lv`.
pub(crate) fn apply_atom_to(
    body: &mut Body,
    kind: &Kind,
    rules: &HashMap<Arc<str>, Arc<dyn MergeRule>>,
    atom: &Atom,
    lv: Lv,
) {
    match (body, atom) {
        (Body::Counter(v), Atom::Add(d)) => *v = v.wrapping_add(*d),
        (Body::Register(writes), Atom::Set { preds, .. }) => {
            writes.retain(|w| !preds.contains(w));
            writes.push(lv);
        }
        (
            Body::Merged { value, unmerged },
            Atom::Set {
                value: Some(MapValue::Value(v)),
                ..
            },
        ) => {
            let rule = match kind {
                Kind::Register(Rule::Merge(name)) => rules.get(name),
                _ => None,
            };
            match rule {
                Some(rule) => {
                    let v = rule.canonical(v.clone());
                    *value = Some(match value.take() {
                        None => v,
                        Some(old) => rule.merge(&old, &v),
                    });
                }
                None => unmerged.push(lv),
            }
        }
        (
            Body::Map(keys),
            Atom::Set {
                key: Some(key),
                value,
                preds,
                ..
            },
        ) => {
            let writes = keys.entry(key.clone()).or_default();
            writes.retain(|w| !preds.contains(w));
            if value.is_some() {
                writes.push(lv);
            }
            if writes.is_empty() {
                keys.remove(key);
            }
        }
        _ => unreachable!("decoding and the API only make ops that fit their field"),
    }
}
