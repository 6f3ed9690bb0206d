//! A naive reference implementation of Chorus text ordering: the oracle.
//!
//! Items live in one `Vec` in document order, tombstones included; every lookup is a
//! linear scan. Remote integration follows the "YjsMod" rules (equivalent to FugueMax),
//! written straight from their description, with no attempt at speed.

use std::collections::BTreeMap;

/// Replica → next sequence number (absent = 0).
pub type Version = BTreeMap<u128, u64>;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Id {
    pub replica: u128,
    pub seq: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Insert {
        id: Id,
        ch: char,
        left: Option<Id>,
        right: Option<Id>,
    },
    Delete {
        id: Id,
        target: Id,
    },
}

impl Op {
    pub fn id(&self) -> Id {
        match self {
            Op::Insert { id, .. } | Op::Delete { id, .. } => *id,
        }
    }
}

#[derive(Clone, Debug)]
struct Item {
    id: Id,
    ch: char,
    left: Option<Id>,
    right: Option<Id>,
    deleted: bool,
}

/// One replica of the reference model.
#[derive(Clone, Debug)]
pub struct RefDoc {
    replica: u128,
    items: Vec<Item>,
    version: Version,
    /// Every applied op, in the order applied (a causal order).
    log: Vec<Op>,
    /// Ops received whose dependencies have not been applied yet.
    pending: Vec<Op>,
}

fn has(version: &Version, id: Id) -> bool {
    id.seq < version.get(&id.replica).copied().unwrap_or(0)
}

impl RefDoc {
    pub fn new(replica: u128) -> Self {
        RefDoc {
            replica,
            items: Vec::new(),
            version: Version::new(),
            log: Vec::new(),
            pending: Vec::new(),
        }
    }

    pub fn text(&self) -> String {
        self.items
            .iter()
            .filter(|i| !i.deleted)
            .map(|i| i.ch)
            .collect()
    }

    pub fn len(&self) -> usize {
        self.items.iter().filter(|i| !i.deleted).count()
    }

    pub fn version(&self) -> &Version {
        &self.version
    }

    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// The ops this replica has applied that a replica at `since` lacks, in causal order.
    pub fn ops_since(&self, since: &Version) -> Vec<Op> {
        self.log
            .iter()
            .filter(|op| !has(since, op.id()))
            .cloned()
            .collect()
    }

    fn index_of(&self, id: Id) -> Option<usize> {
        self.items.iter().position(|i| i.id == id)
    }

    /// Raw index of the `pos`-th visible item.
    fn visible_index(&self, pos: usize) -> Option<usize> {
        self.items
            .iter()
            .enumerate()
            .filter(|(_, i)| !i.deleted)
            .nth(pos)
            .map(|(k, _)| k)
    }

    fn next_id(&self) -> Id {
        Id {
            replica: self.replica,
            seq: self.version.get(&self.replica).copied().unwrap_or(0),
        }
    }

    /// Local insert of `s` at visible char position `pos`; returns the new ops.
    pub fn insert(&mut self, pos: usize, s: &str) -> Vec<Op> {
        let len = self.len();
        assert!(pos <= len, "reference insert at {pos} past length {len}");
        let (mut left, right) = match self.visible_index(pos) {
            Some(k) => (
                (k > 0).then(|| self.items[k - 1].id),
                Some(self.items[k].id),
            ),
            None => (self.items.last().map(|i| i.id), None),
        };
        let mut ops = Vec::new();
        for ch in s.chars() {
            let id = self.next_id();
            let op = Op::Insert {
                id,
                ch,
                left,
                right,
            };
            self.apply_one(op.clone());
            ops.push(op);
            left = Some(id);
        }
        ops
    }

    /// Local delete of `n` visible chars from `pos`; returns the new ops.
    pub fn delete(&mut self, pos: usize, n: usize) -> Vec<Op> {
        let len = self.len();
        assert!(
            pos + n <= len,
            "reference delete {pos}+{n} past length {len}"
        );
        let targets: Vec<Id> = (pos..pos + n)
            .map(|p| self.items[self.visible_index(p).unwrap()].id)
            .collect();
        let mut ops = Vec::new();
        for target in targets {
            let op = Op::Delete {
                id: self.next_id(),
                target,
            };
            self.apply_one(op.clone());
            ops.push(op);
        }
        ops
    }

    /// Receives remote ops (any order, duplicates allowed); applies those whose
    /// dependencies are present, buffers the rest.
    pub fn apply(&mut self, ops: &[Op]) {
        for op in ops {
            if has(&self.version, op.id()) || self.pending.contains(op) {
                continue;
            }
            self.pending.push(op.clone());
        }
        loop {
            let ready = self.pending.iter().position(|op| self.is_ready(op));
            match ready {
                Some(k) => {
                    let op = self.pending.remove(k);
                    self.apply_one(op);
                }
                None => break,
            }
        }
    }

    fn is_ready(&self, op: &Op) -> bool {
        let id = op.id();
        let in_order = self.version.get(&id.replica).copied().unwrap_or(0) == id.seq;
        let known = |o: &Option<Id>| o.is_none_or(|o| has(&self.version, o));
        in_order
            && match op {
                Op::Insert { left, right, .. } => known(left) && known(right),
                Op::Delete { target, .. } => has(&self.version, *target),
            }
    }

    fn apply_one(&mut self, op: Op) {
        let id = op.id();
        assert_eq!(self.next_id_of(id.replica), id.seq, "ops applied in order");
        match op.clone() {
            Op::Insert {
                id,
                ch,
                left,
                right,
            } => self.integrate(Item {
                id,
                ch,
                left,
                right,
                deleted: false,
            }),
            Op::Delete { target, .. } => {
                let k = self.index_of(target).expect("delete target present");
                self.items[k].deleted = true;
            }
        }
        self.version.insert(id.replica, id.seq + 1);
        self.log.push(op);
    }

    fn next_id_of(&self, replica: u128) -> u64 {
        self.version.get(&replica).copied().unwrap_or(0)
    }

    /// YjsMod integration.
    fn integrate(&mut self, new: Item) {
        let len = self.items.len() as isize;
        let raw = |o: Option<Id>, none: isize| -> isize {
            match o {
                Some(id) => self.index_of(id).expect("origin present") as isize,
                None => none,
            }
        };
        let left = raw(new.left, -1);
        let right = raw(new.right, len);
        let mut dest = left + 1;
        let mut scanning = false;
        let mut i = left + 1;
        loop {
            if !scanning {
                dest = i;
            }
            if i == len || i == right {
                break;
            }
            let o = &self.items[i as usize];
            let oleft = raw(o.left, -1);
            let oright = raw(o.right, len);
            if oleft < left {
                break;
            } else if oleft == left {
                if oright < right {
                    scanning = true;
                } else if oright == right {
                    if new.id.replica < o.id.replica {
                        break;
                    }
                    scanning = false;
                } else {
                    scanning = false;
                }
            }
            i += 1;
        }
        self.items.insert(dest as usize, new);
    }
}
