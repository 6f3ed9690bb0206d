//! `Doc::check`: every invariant of the log, the field table and the branch, verified
//! from scratch (tests and fuzzing run it after every step).

use std::collections::HashMap;

use crate::apply::pending_key;
use crate::branch::{Body, apply_atom_to};
use crate::doc::Doc;
use crate::oplog::{Op, ROOT};
use crate::tree::Lv;
use crate::{CheckError, Kind};

impl Doc {
    /// Verifies internal invariants: tree counts and links, the LV index, the op log
    /// and the version vector. Meant for tests; an error is a bug in Chorus.
    pub fn check(&self) -> Result<(), CheckError> {
        let err = |s: String| Err(CheckError(s));
        self.log.changes.check().map_err(CheckError)?;
        let mut lv = 0;
        for e in &self.log.entries {
            if e.lv != lv || e.len == 0 {
                return err(format!("log entry at lv {} is not contiguous", e.lv));
            }
            lv = e.end();
        }
        for (i, a) in self.log.agents.iter().enumerate() {
            let mut next = 0;
            for s in &a.spans {
                if s.seq != next {
                    return err(format!("replica {} has a gap at seq {next}", a.id));
                }
                next += u64::from(s.len);
                for k in 0..s.len {
                    let (agent, seq) = self.log.id_of(s.lv + k);
                    if agent as usize != i || seq != s.seq + u64::from(k) {
                        return err(format!("seq map of {} disagrees with the log", a.id));
                    }
                }
            }
            if self.log.version.get(&a.id) != next {
                return err(format!("version of {} is wrong", a.id));
            }
        }
        let mut items = 0u64;
        let mut inserted = 0u64;
        for e in &self.log.entries {
            if let Op::Insert { .. } = e.op {
                inserted += u64::from(e.len);
            }
        }
        for (fi, f) in self.log.fields.iter().enumerate() {
            if f.parent != ROOT
                && (f.parent as usize >= fi || self.log.fields[f.parent as usize].kind != Kind::Map)
            {
                return err(format!("field {} has a bad parent", f.name));
            }
            let Body::Seq(tree) = &self.branch.bodies[fi] else {
                continue;
            };
            tree.check(&self.branch.index).map_err(CheckError)?;
            let mut chars = 0u32;
            for r in tree.runs() {
                chars += if r.deleted() { 0 } else { r.len };
                let e = &self.log.entries[self.log.entry_index(r.lv)];
                if e.field as usize != fi {
                    return err(format!("lv {} is in the wrong field", r.lv));
                }
                let ok = if f.kind == Kind::List {
                    r.byte_len == r.len
                        && r.utf16_len == r.len
                        && (r.byte_start + r.len) as usize <= self.log.elems.len()
                } else {
                    r.text(&self.log.content).chars().count() == r.len as usize
                };
                if !ok {
                    return err(format!("run at lv {} has the wrong content", r.lv));
                }
                items += u64::from(r.len);
            }
            if chars != tree.total().chars {
                return err(format!("field {} visible count is wrong", f.name));
            }
        }
        // Every item is hidden by exactly the delete ops that target it and are not
        // undone.
        let mut undone: HashMap<Lv, u32> = HashMap::new();
        for e in &self.log.entries {
            if let Op::Undelete { target } = e.op {
                for d in target..target + e.len {
                    *undone.entry(d).or_default() += 1;
                }
            }
        }
        if undone != self.branch.undone {
            return err("the undone-deletes table disagrees with the log".into());
        }
        let mut dels: HashMap<Lv, u32> = HashMap::new();
        for e in &self.log.entries {
            if let Op::Delete { .. } = e.op {
                for d in e.lv..e.end() {
                    if !undone.contains_key(&d) {
                        *dels.entry(Self::delete_target(e, d)).or_default() += 1;
                    }
                }
            }
        }
        for body in &self.branch.bodies {
            if let Body::Seq(tree) = body {
                for r in tree.runs() {
                    for lv in r.lv..r.lv + r.len {
                        if dels.get(&lv).copied().unwrap_or(0) != r.dels {
                            return err(format!("item {lv} has the wrong delete count"));
                        }
                    }
                }
            }
        }
        // Counter, register and map states equal a replay of their ops.
        let mut replay: Vec<Body> = self
            .log
            .fields
            .iter()
            .map(|f| match f.kind {
                Kind::Text | Kind::List => Body::Counter(0),
                _ => Body::new(&f.kind),
            })
            .collect();
        for e in &self.log.entries {
            if let Op::Atom { idx } = e.op {
                let f = &self.log.fields[e.field as usize];
                if e.len != 1 || idx as usize >= self.log.atoms.len() || f.kind == Kind::Text {
                    return err(format!("atom at lv {} is malformed", e.lv));
                }
                let atom = &self.log.atoms[idx as usize];
                apply_atom_to(
                    &mut replay[e.field as usize],
                    &f.kind,
                    &self.rules,
                    atom,
                    e.lv,
                );
            }
        }
        for ((a, body), b) in self.log.fields.iter().zip(&self.branch.bodies).zip(&replay) {
            let same = match (body, b) {
                (Body::Seq(_), _) => true,
                (Body::Counter(x), Body::Counter(y)) => x == y,
                (Body::Register(x), Body::Register(y)) => x == y,
                (
                    Body::Merged {
                        value: x,
                        unmerged: u,
                    },
                    Body::Merged {
                        value: y,
                        unmerged: v,
                    },
                ) => x == y && u == v,
                (Body::Map(x), Body::Map(y)) => x == y,
                _ => false,
            };
            if !same {
                return err(format!("state of field {} differs from its ops", a.name));
            }
        }
        if items != inserted {
            return err(format!(
                "trees hold {items} items, log has {inserted} inserts"
            ));
        }
        if self.pending.len() != self.pending_keys.len()
            || self
                .pending
                .iter()
                .any(|r| !self.pending_keys.contains(&pending_key(r)))
        {
            return err("pending keys are wrong".into());
        }
        let pending: usize = self.pending.iter().map(|r| r.len as usize).sum();
        if pending != self.pending_ops {
            return err("pending count is wrong".into());
        }
        Ok(())
    }
}
