//! Randomized convergence of every container type: 3–5 replicas edit texts, counters,
//! registers (last writer wins, multi-value, max, union and an application's own
//! merge rule), maps with nested containers and lists in random transactions (some
//! rolled back), undo and redo their own steps with an [`UndoManager`] each, and
//! exchange deltas over a network that drops, duplicates and reorders them. At the
//! end every replica must agree, pass `check()`, and match a reference model of what
//! was committed, undo's and redo's ops included:
//!
//! - counters: the wrapping sum of every committed add, undo's compensating adds
//!   included;
//! - max / union / "longest" registers: the merge of every committed write (undo
//!   leaves merge registers alone, so its steps add nothing here);
//! - last-writer-wins and multi-value registers: the writes that no other write has
//!   seen, ordered by the hybrid logical clock the model recomputes (so the model
//!   predicts the exact winner, and every replica's write ids and times); undo's
//!   writes among them;
//! - map keys: the writes no other write to the key has seen (deletes leave none),
//!   the one with the highest (Lamport, replica) shown; undo's writes among them;
//! - lists: exactly the inserted elements every delete of which was undone (undoing
//!   an insert deletes the element, undoing a delete undoes that delete op);
//! - a root name used as a text and as a counter: the kind whose first op has the
//!   smallest (Lamport, replica) (undo only adds later ops to a kind already there).
//!
//! The model mirrors each replica's undo manager: its steps (joined within the
//! capture interval), and for each undo or redo which step is undone, which of its
//! ops are still in effect, the ops the inverse makes (their number, ids, Lamport
//! timestamps and clocks) and what each restores. Each undo and redo is checked on
//! the spot (`Ok(true)` or `Ok(false)`, ops made, `can_undo`/`can_redo`, the values
//! of the registers and keys it wrote); texts are checked by convergence here and
//! against exact expectations in the text scenarios below.
//!
//! `CHORUS_SEEDS=n` runs more seeds; `CHORUS_SEED_START=s CHORUS_SEEDS=1` reruns one.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use chorus_doc::{
    CommitOptions, Doc, Kind, MapValue, MapView, MergeRule, OpId, RegisterView, ReplicaId, Rule,
    UndoManager, Value, VersionVector,
};

use crate::util::{FaultyNet, Rng, random_text, rid, run_seeds, seed_start, seeds, writer_text};

/// The largest physical time a hybrid clock stamp holds (48 bits of milliseconds).
const MAX_MS: u64 = (1 << 48) - 1;
/// Keys of the map `m`; any of them may hold a value or any kind of container.
pub(crate) const KEYS: &[&str] = &["a", "b", "x", "y"];
/// Keys of the maps nested in `m`.
pub(crate) const SUB_KEYS: &[&str] = &["p", "q"];

/// An application's merge rule: the longest string wins, ties to the greater one.
#[derive(Debug)]
pub(crate) struct Longest;

impl MergeRule for Longest {
    fn name(&self) -> &str {
        "longest"
    }

    fn canonical(&self, v: Value) -> Value {
        match v {
            Value::Str(_) => v,
            _ => Value::Str(String::new()),
        }
    }

    fn merge(&self, a: &Value, b: &Value) -> Value {
        let key = |v: &Value| {
            let s = v.as_str().unwrap_or("");
            (s.chars().count(), s.to_owned())
        };
        if key(a) >= key(b) {
            a.clone()
        } else {
            b.clone()
        }
    }
}

/// The message the runs give a change of `replica` starting at `seq`.
pub(crate) fn change_message(replica: ReplicaId, seq: u64) -> String {
    format!("{:x}:{seq}", replica.as_u128())
}

pub(crate) fn longest() -> Rule {
    Rule::merge("longest")
}

// ------------------------------------------------------------------ reference model

/// Whether the op `later`, made by a replica that had applied `seen` when its
/// transaction started, had seen op `earlier`.
fn sees(later: OpId, seen: &VersionVector, earlier: OpId) -> bool {
    if later.replica == earlier.replica {
        earlier.seq < later.seq
    } else {
        seen.includes(&earlier)
    }
}

/// A committed register write (`value: None`: an undo back to "never written").
#[derive(Clone, Debug)]
struct RegWrite {
    id: OpId,
    /// The hybrid logical clock stamp the model predicts for it.
    stamp: u64,
    value: Option<Value>,
    /// The writer's version when its transaction started.
    seen: VersionVector,
}

/// A committed map-key write (`None`: a delete).
#[derive(Clone, Debug)]
struct KeyWrite {
    id: OpId,
    lamport: u64,
    value: Option<MapValue>,
    seen: VersionVector,
}

/// What every replica must show once it has seen every committed op.
#[derive(Clone, Debug, Default)]
struct Model {
    counter: i64,
    /// Counters nested in `m`, by key (readable whatever the key shows).
    nested_counters: BTreeMap<String, i64>,
    max: Option<Value>,
    /// `None` until written (an empty array written makes it `Some` and empty).
    union: Option<BTreeSet<Value>>,
    longest: Option<Value>,
    /// Last-writer-wins and multi-value registers by path ("lww", "mv", "m/<key>").
    registers: BTreeMap<String, Vec<RegWrite>>,
    /// (id, stamp) of every register write of any kind: what the hybrid clock of a
    /// replica that has seen them is at least.
    stamps: Vec<(OpId, u64)>,
    /// Map key writes by (map path, key).
    keys: BTreeMap<(String, String), Vec<KeyWrite>>,
    list_inserted: BTreeSet<i64>,
    /// The delete ops that target each list element, as tokens of the model's own
    /// (an element is shown iff every delete op targeting it was undone).
    list_dels: BTreeMap<i64, Vec<u64>>,
    /// Delete ops (tokens) that an undo undid.
    list_undone: BTreeSet<u64>,
    next_token: u64,
    /// The root name "dual", used as a text and as a counter: the smallest
    /// (Lamport, replica) of each kind's ops.
    dual: BTreeMap<Kind, (u64, ReplicaId)>,
    /// Model facts checked at the end (so that the check is never vacuous).
    writes: u64,
}

impl Model {
    /// The writes of `ws` for which `known` holds that no other such write has seen.
    fn held<W>(
        ws: &[W],
        known: impl Fn(&W) -> bool,
        id: impl Fn(&W) -> OpId,
        seen: impl Fn(&W) -> &VersionVector,
    ) -> Vec<&W> {
        let known: Vec<&W> = ws.iter().filter(|w| known(w)).collect();
        known
            .iter()
            .filter(|w| {
                !known
                    .iter()
                    .any(|o| id(o) != id(w) && sees(id(o), seen(o), id(w)))
            })
            .copied()
            .collect()
    }

    /// The writes register `path` holds, on a replica that has seen `version`
    /// (everything, for `None`), undo's writes of "nothing" included.
    fn register_writes(&self, path: &str, version: Option<&VersionVector>) -> Vec<&RegWrite> {
        let ws = self.registers.get(path).map_or(&[][..], |v| v.as_slice());
        let known = |w: &RegWrite| version.is_none_or(|v| v.includes(&w.id));
        Self::held(ws, known, |w| w.id, |w| &w.seen)
    }

    /// The writes with a value register `path` shows, in clock order.
    fn held_register(&self, path: &str) -> Vec<&RegWrite> {
        let mut held: Vec<_> = self
            .register_writes(path, None)
            .into_iter()
            .filter(|w| w.value.is_some())
            .collect();
        held.sort_by_key(|w| (w.stamp, w.id.replica));
        held
    }

    /// The writes (not deletes) key `key` of map `path` holds, on a replica that has
    /// seen `version` (everything, for `None`), in (Lamport, replica) order.
    fn key_writes(&self, path: &str, key: &str, version: Option<&VersionVector>) -> Vec<&KeyWrite> {
        let ws = self
            .keys
            .get(&(path.to_owned(), key.to_owned()))
            .map_or(&[][..], |v| v.as_slice());
        let known = |w: &KeyWrite| version.is_none_or(|v| v.includes(&w.id));
        let mut held: Vec<_> = Self::held(ws, known, |w| w.id, |w| &w.seen)
            .into_iter()
            .filter(|w| w.value.is_some())
            .collect();
        held.sort_by_key(|w| (w.lamport, w.id.replica));
        held
    }

    fn held_key(&self, path: &str, key: &str) -> Vec<&KeyWrite> {
        self.key_writes(path, key, None)
    }

    /// Whether list element `e` shows: inserted, and every delete of it undone.
    fn list_shows(&self, e: i64) -> bool {
        self.list_inserted.contains(&e)
            && self
                .list_dels
                .get(&e)
                .is_none_or(|ds| ds.iter().all(|d| self.list_undone.contains(d)))
    }

    /// A delete op of list element `elem`; its token.
    fn delete_elem(&mut self, elem: i64) -> u64 {
        let token = self.next_token;
        self.next_token += 1;
        self.list_dels.entry(elem).or_default().push(token);
        token
    }

    fn add_to_counter(&mut self, key: Option<&str>, delta: i64) {
        let c = match key {
            None => &mut self.counter,
            Some(k) => self.nested_counters.entry(k.to_owned()).or_default(),
        };
        *c = c.wrapping_add(delta);
    }

    /// Makes, on the replica of `ctx`, the ops that undo `step` (in `ctx.ops`), as
    /// `UndoManager` does: its ops newest first; inserted list elements deleted
    /// (again), deletes not undone yet undone, counter adds subtracted, and of each
    /// register and map key written, the step's last write reverted to what its
    /// first write superseded, unless a write this replica did not make is held
    /// there now. Text ops (and adds to "dual") are undone by as many ops whatever
    /// the state: an insert's items are deleted by id, and a delete of a step still
    /// on the stack was never undone (only undoing its step undoes it).
    fn invert(&mut self, step: &[StepOp], ctx: &mut TxCtx, now_ms: u64) {
        // The first and last write of the step to each register and map key.
        let mut regs: BTreeMap<&str, (OpId, OpId)> = BTreeMap::new();
        let mut keys: BTreeMap<(&str, &str), (OpId, OpId)> = BTreeMap::new();
        for op in step {
            match op {
                StepOp::Reg { path, id } => {
                    regs.entry(path).or_insert((*id, *id)).1 = *id;
                }
                StepOp::Key { path, key, id } => {
                    keys.entry((path, key)).or_insert((*id, *id)).1 = *id;
                }
                _ => {}
            }
        }
        for op in step.iter().rev() {
            match op {
                StepOp::Opaque(n) => ctx.opaque(*n),
                StepOp::Merge => {}
                StepOp::Add { key, delta } => {
                    let delta = delta.wrapping_neg();
                    self.add_to_counter(key.as_deref(), delta);
                    ctx.push(StepOp::Add {
                        key: key.clone(),
                        delta,
                    });
                }
                StepOp::ListInsert(elem) | StepOp::ListUndelete { elem } => {
                    let token = self.delete_elem(*elem);
                    ctx.push(StepOp::ListDelete { elem: *elem, token });
                }
                StepOp::ListDelete { elem, token } => {
                    if self.list_undone.insert(*token) {
                        ctx.push(StepOp::ListUndelete { elem: *elem });
                    }
                }
                StepOp::Reg { path, id } => {
                    let (first, last) = regs[path.as_str()];
                    if last != *id {
                        continue;
                    }
                    let current = self.register_writes(path, Some(&ctx.seen));
                    if current.iter().any(|w| w.id.replica != ctx.me) {
                        continue;
                    }
                    let ws = &self.registers[path];
                    let f = ws.iter().find(|w| w.id == first).expect("a recorded write");
                    let before = |w: &RegWrite| w.id != first && sees(first, &f.seen, w.id);
                    let value = Self::held(ws, before, |w| w.id, |w| &w.seen)
                        .into_iter()
                        .filter(|w| w.value.is_some())
                        .max_by_key(|w| (w.stamp, w.id.replica))
                        .and_then(|w| w.value.clone());
                    let (id, _) = ctx.take(1);
                    let stamp = ctx.stamp(self, id, now_ms);
                    record_register(self, path, id, stamp, value, ctx);
                    ctx.ops.push(StepOp::Reg {
                        path: path.clone(),
                        id,
                    });
                }
                StepOp::Key { path, key, id } => {
                    let (first, last) = keys[&(path.as_str(), key.as_str())];
                    if last != *id {
                        continue;
                    }
                    // A map holds no deletes, so a key someone else deleted since holds
                    // nothing foreign and the undo writes the old value back over their
                    // delete (unlike a register, which keeps their write and is left
                    // alone). The model follows the engine here.
                    let current = self.key_writes(path, key, Some(&ctx.seen));
                    if current.iter().any(|w| w.id.replica != ctx.me) {
                        continue;
                    }
                    let ws = &self.keys[&(path.clone(), key.clone())];
                    let f = ws.iter().find(|w| w.id == first).expect("a recorded write");
                    let before = |w: &KeyWrite| w.id != first && sees(first, &f.seen, w.id);
                    let value = Self::held(ws, before, |w| w.id, |w| &w.seen)
                        .into_iter()
                        .filter(|w| w.value.is_some())
                        .max_by_key(|w| (w.lamport, w.id.replica))
                        .and_then(|w| w.value.clone());
                    let (id, lamport) = ctx.take(1);
                    record_key(self, path, key, id, lamport, value, ctx);
                    ctx.ops.push(StepOp::Key {
                        path: path.clone(),
                        key: key.clone(),
                        id,
                    });
                }
            }
        }
    }
}

/// One op of an undo step, as the model needs it to predict the step's undo.
#[derive(Clone, Debug)]
enum StepOp {
    /// `n` text ops, or an add to the counter "dual" (`n` = 1): undone by `n` ops.
    Opaque(u64),
    /// An add to the counter "c" (`key: None`) or `m/<key>`.
    Add {
        key: Option<String>,
        delta: i64,
    },
    /// A write of a last-writer-wins or multi-value register ("lww", "mv", "m/<key>").
    Reg {
        path: String,
        id: OpId,
    },
    /// A write (or delete) of key `key` of map `path` ("m", "m/<key>").
    Key {
        path: String,
        key: String,
        id: OpId,
    },
    /// A write of a merge register: undo leaves it alone.
    Merge,
    ListInsert(i64),
    /// Delete op `token` of element `elem`.
    ListDelete {
        elem: i64,
        token: u64,
    },
    /// An undo of a delete op of element `elem`.
    ListUndelete {
        elem: i64,
    },
}

impl StepOp {
    /// How many op ids it took.
    fn len(&self) -> u64 {
        match self {
            StepOp::Opaque(n) => *n,
            _ => 1,
        }
    }
}

/// The model of one replica's [`UndoManager`]: its steps, each the ops of one or
/// more transactions (or of one undo or redo) in the order they were made.
#[derive(Clone, Debug)]
struct UndoModel {
    capture_ms: u64,
    undo: Vec<Vec<StepOp>>,
    redo: Vec<Vec<StepOp>>,
    last_ms: Option<u64>,
}

impl UndoModel {
    fn new(capture_ms: u64) -> Self {
        UndoModel {
            capture_ms,
            undo: Vec::new(),
            redo: Vec::new(),
            last_ms: None,
        }
    }

    /// A committed transaction's ops, made at `now_ms`: a new step, or joined to the
    /// last one within the capture interval. A transaction without ops changes nothing.
    fn record(&mut self, ops: Vec<StepOp>, now_ms: u64) {
        if ops.is_empty() {
            return;
        }
        self.redo.clear();
        let joins = self
            .last_ms
            .is_some_and(|t| now_ms.saturating_sub(t) < self.capture_ms);
        match self.undo.last_mut() {
            Some(step) if joins => step.extend(ops),
            _ => self.undo.push(ops),
        }
        self.last_ms = Some(now_ms);
    }
}

/// Op ids, Lamport timestamps and clock stamps of one transaction, as the model
/// predicts them, and the ops it made (for the undo model).
struct TxCtx {
    me: ReplicaId,
    start_seq: u64,
    next_seq: u64,
    start_lamport: u64,
    seen: VersionVector,
    ops: Vec<StepOp>,
}

impl TxCtx {
    /// The context of a transaction about to start on `doc`.
    fn new(doc: &Doc) -> Self {
        let me = doc.replica_id();
        let seen = doc.version().clone();
        let start_seq = seen.get(&me);
        TxCtx {
            me,
            start_seq,
            next_seq: start_seq,
            start_lamport: doc.max_lamport() + 1,
            seen,
            ops: Vec::new(),
        }
    }

    /// Takes `n` op ids; returns the first and its Lamport timestamp.
    fn take(&mut self, n: u64) -> (OpId, u64) {
        let seq = self.next_seq;
        self.next_seq += n;
        (
            OpId::new(self.me, seq),
            self.start_lamport + (seq - self.start_seq),
        )
    }

    /// The Lamport timestamp of this transaction's op `id`.
    fn lamport(&self, id: OpId) -> u64 {
        self.start_lamport + (id.seq - self.start_seq)
    }

    /// Takes the ids of `op`; returns the first and its Lamport timestamp.
    fn push(&mut self, op: StepOp) -> (OpId, u64) {
        let r = self.take(op.len());
        self.ops.push(op);
        r
    }

    /// A write of key `key` of map `path`.
    fn key(&mut self, path: &str, key: &str) -> (OpId, u64) {
        let (id, lamport) = self.take(1);
        self.ops.push(StepOp::Key {
            path: path.into(),
            key: key.into(),
            id,
        });
        (id, lamport)
    }

    /// `n` text ops.
    fn opaque(&mut self, n: u64) {
        self.push(StepOp::Opaque(n));
    }

    /// The stamp of a register write `id` at physical time `now_ms`: above every
    /// stamp the writer has seen.
    fn stamp(&self, model: &Model, id: OpId, now_ms: u64) -> u64 {
        let last = model
            .stamps
            .iter()
            .filter(|(w, _)| sees(id, &self.seen, *w))
            .map(|&(_, s)| s)
            .max()
            .unwrap_or(0);
        (now_ms.min(MAX_MS) << 16).max(last.saturating_add(1))
    }
}

// ------------------------------------------------------------------ simulation

/// How many interesting situations the final states held, summed over seeds, so that
/// a run can tell whether its checks saw anything worth checking.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Coverage {
    /// Registers holding several concurrent writes.
    register_conflicts: u64,
    /// Map keys holding several concurrent writes.
    key_conflicts: u64,
    /// Runs where "dual" ended up with both kinds.
    dual_conflicts: u64,
    /// Final list elements.
    list_elems: u64,
}

impl Coverage {
    fn add(&mut self, o: Coverage) {
        self.register_conflicts += o.register_conflicts;
        self.key_conflicts += o.key_conflicts;
        self.dual_conflicts += o.dual_conflicts;
        self.list_elems += o.list_elems;
    }
}

/// What the undo managers did, summed over seeds, so that a run can tell whether the
/// undo model saw anything worth checking.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct UndoStats {
    /// Undo calls that undid a step.
    undone: u64,
    /// Redo calls that redid a step.
    redone: u64,
    /// Undo and redo calls with nothing (left in effect) to do.
    nothing: u64,
    /// Steps passed over because nothing of them was in effect any more.
    skipped: u64,
    /// Register and map-key writes that undo and redo made.
    writes: u64,
    /// List deletes that undo and redo undid.
    undeletes: u64,
}

impl UndoStats {
    fn add(&mut self, o: UndoStats) {
        self.undone += o.undone;
        self.redone += o.redone;
        self.nothing += o.nothing;
        self.skipped += o.skipped;
        self.writes += o.writes;
        self.undeletes += o.undeletes;
    }
}

/// A replica's state at one moment.
pub(crate) struct Snapshot {
    pub(crate) replica: usize,
    pub(crate) version: VersionVector,
    pub(crate) json: serde_json::Value,
    pub(crate) knew_longest: bool,
}

pub(crate) struct Replica {
    pub(crate) doc: Doc,
    /// Undo and redo stacks (not saved: a restart starts with empty ones).
    undo: UndoManager,
    /// The model of `undo`.
    steps: UndoModel,
    /// Whether this replica has added the "longest" rule yet.
    pub(crate) knows_longest: bool,
    /// Physical clock offset: some replicas run ten minutes fast or slow.
    clock_offset: i64,
    assumed: Vec<VersionVector>,
    reported: Vec<VersionVector>,
}

struct Msg {
    from: usize,
    to: usize,
    bytes: Vec<u8>,
    sender_version: VersionVector,
}

pub(crate) struct Sim {
    pub(crate) seed: u64,
    rng: Rng,
    /// Decides when to take snapshots, apart from `rng` so the runs stay as they are.
    snap_rng: Rng,
    /// (replica, its version, its JSON, whether it knew the "longest" rule then),
    /// taken at random moments for the history checks.
    pub(crate) snapshots: Vec<Snapshot>,
    drop: u32,
    duplicate: u32,
    step: u64,
    pub(crate) replicas: Vec<Replica>,
    in_flight: Vec<Msg>,
    model: Model,
    /// The next unique list element.
    next_elem: i64,
    rolled_back: u64,
    committed: u64,
    coverage: Coverage,
    undo_stats: UndoStats,
}

impl Sim {
    fn new(seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let n = rng.range(3, 5);
        let mut ids: Vec<u128> = (0..n)
            .map(|k| ((k as u128 + 1) << 100) | rng.next_u64() as u128)
            .collect();
        rng.shuffle(&mut ids);
        let replicas = ids
            .iter()
            .map(|&id| {
                let clock_offset = match rng.below(6) {
                    0 => 600_000,
                    1 => -600_000,
                    _ => 0,
                };
                let mut doc = Doc::new(rid(id));
                let knows_longest = rng.chance(50);
                if knows_longest {
                    doc.add_merge_rule(Arc::new(Longest)).unwrap();
                }
                // No joining, joining commits at the same (coarse) time, or joining
                // a few steps' commits.
                let capture_ms = [0, 50, 5_000][rng.below(3)];
                Replica {
                    doc,
                    undo: UndoManager::new(capture_ms),
                    steps: UndoModel::new(capture_ms),
                    knows_longest,
                    clock_offset,
                    assumed: vec![VersionVector::new(); n],
                    reported: vec![VersionVector::new(); n],
                }
            })
            .collect();
        let drop = rng.range(0, 40) as u32;
        let duplicate = rng.range(0, 30) as u32;
        Sim {
            seed,
            rng,
            snap_rng: Rng::new(seed ^ 0x5A_4105),
            snapshots: Vec::new(),
            drop,
            duplicate,
            step: 0,
            replicas,
            in_flight: Vec::new(),
            model: Model::default(),
            next_elem: 0,
            rolled_back: 0,
            committed: 0,
            coverage: Coverage::default(),
            undo_stats: UndoStats::default(),
        }
    }

    /// A physical time for replica `i`: a coarse shared clock (so that equal times
    /// are common), the replica's offset, and now and then a broken clock.
    fn now_ms(&mut self, i: usize) -> u64 {
        match self.rng.below(200) {
            0 => u64::MAX,
            1..=8 => self.rng.below(2_000_000) as u64,
            _ => {
                let base = 1_000_000_000 + (self.step / 4) * 1_000;
                base.saturating_add_signed(self.replicas[i].clock_offset)
            }
        }
    }

    fn local_txn(&mut self, i: usize) {
        let seed = self.seed;
        let mut ctx = TxCtx::new(&self.replicas[i].doc);
        let before_version = ctx.seen.clone();
        let (me, start_seq) = (ctx.me, ctx.start_seq);
        let rollback = self.rng.chance(12);
        let before = rollback.then(|| {
            let d = &self.replicas[i].doc;
            (d.encode(), d.to_json())
        });
        let n_ops = self.rng.range(1, 4);
        // Clock readings and random choices are drawn before the transaction borrows
        // the document.
        let nows: Vec<u64> = (0..n_ops).map(|_| self.now_ms(i)).collect();
        let mut work = self.model.clone();
        let mut next_elem = self.next_elem;
        let rng = &mut self.rng;
        let mut tx = self.replicas[i].doc.transact();
        for &now in &nows {
            let what = rng.below(100);
            match what {
                // Root text.
                0..10 => {
                    let mut t = tx.text("t");
                    let len = t.len();
                    if len == 0 || rng.chance(60) {
                        let s = writer_text(rng, 4, i);
                        t.insert(rng.range(0, len), &s).unwrap();
                        ctx.opaque(s.chars().count() as u64);
                    } else {
                        let pos = rng.below(len);
                        let n = rng.range(1, (len - pos).min(4));
                        t.delete(pos, n).unwrap();
                        ctx.opaque(n as u64);
                    }
                }
                // Root counter, with deltas that overflow.
                10..18 => {
                    let delta = match rng.below(10) {
                        0 => i64::MAX,
                        1 => i64::MIN,
                        2 => i64::MAX - rng.below(1000) as i64,
                        _ => rng.range(1, 200) as i64 - 100,
                    };
                    let delta = if delta == 0 { 1 } else { delta };
                    tx.counter("c").add(delta).unwrap();
                    ctx.push(StepOp::Add { key: None, delta });
                    work.add_to_counter(None, delta);
                }
                // The root name "dual": a text on some replicas, a counter on others.
                18..22 => {
                    let (kind, n) = if rng.chance(50) {
                        let s = writer_text(rng, 3, i);
                        let mut t = tx.text("dual");
                        let len = t.len();
                        t.insert(rng.range(0, len), &s).unwrap();
                        (Kind::Text, s.chars().count() as u64)
                    } else {
                        tx.counter("dual").add(1).unwrap();
                        (Kind::Counter, 1)
                    };
                    let (_, lamport) = ctx.push(StepOp::Opaque(n));
                    let first = work.dual.entry(kind).or_insert((lamport, me));
                    *first = (*first).min((lamport, me));
                }
                // Last-writer-wins and multi-value registers.
                22..36 => {
                    let (path, rule) = if what < 29 {
                        ("lww", Rule::Lww)
                    } else {
                        ("mv", Rule::MultiValue)
                    };
                    let value = small_value(rng);
                    let mut r = tx.register(path, rule);
                    r.set(value.clone(), now).unwrap();
                    let (id, lamport) = ctx.take(1);
                    ctx.ops.push(StepOp::Reg {
                        path: path.into(),
                        id,
                    });
                    let stamp = ctx.stamp(&work, id, now);
                    check_own_write(seed, path, &r.view().writes(), id, lamport, stamp, &value);
                    record_register(&mut work, path, id, stamp, Some(value), &ctx);
                }
                // Merge registers.
                36..48 => {
                    let (name, rule, value) = match rng.below(3) {
                        0 => (
                            "max",
                            Rule::merge("max"),
                            Value::from(rng.below(2001) as i64 - 1000),
                        ),
                        1 => {
                            let v = if rng.chance(30) {
                                let n = rng.range(0, 3);
                                Value::Array((0..n).map(|_| small_value(rng)).collect())
                            } else {
                                small_value(rng)
                            };
                            ("union", Rule::merge("union"), v)
                        }
                        _ => ("longest", longest(), Value::from(random_text(rng, 6))),
                    };
                    tx.register(name, rule).set(value.clone(), now).unwrap();
                    let (id, _) = ctx.push(StepOp::Merge);
                    let stamp = ctx.stamp(&work, id, now);
                    work.stamps.push((id, stamp));
                    match name {
                        "max" => work.max = work.max.take().max(Some(value)),
                        "union" => {
                            let set = work.union.get_or_insert_default();
                            match value {
                                Value::Array(items) => set.extend(items),
                                v => {
                                    set.insert(v);
                                }
                            }
                        }
                        _ => {
                            work.longest = Some(match work.longest.take() {
                                None => value,
                                Some(old) => Longest.merge(&old, &value),
                            })
                        }
                    }
                }
                // The map `m` and what it nests.
                48..78 => {
                    let key = KEYS[rng.below(KEYS.len())];
                    let mut m = tx.map("m");
                    let action = rng.below(7);
                    if action < 2 {
                        let value = small_value(rng);
                        m.set(key, value.clone()).unwrap();
                        let (id, lamport) = ctx.key("m", key);
                        record_key(
                            &mut work,
                            "m",
                            key,
                            id,
                            lamport,
                            Some(MapValue::Value(value)),
                            &ctx,
                        );
                    } else if action == 2 {
                        let had = m.view().contains_key(key);
                        m.delete(key).unwrap();
                        if had {
                            let (id, lamport) = ctx.key("m", key);
                            record_key(&mut work, "m", key, id, lamport, None, &ctx);
                        }
                        assert!(
                            !m.view().contains_key(key),
                            "seed {seed}: delete kept {key}"
                        );
                    } else {
                        let kind = match action {
                            3 => Kind::Text,
                            4 => Kind::Counter,
                            5 => Kind::Map,
                            _ => Kind::Register(Rule::Lww),
                        };
                        let marker = MapValue::Container(kind.clone());
                        if m.get(key) != Some(marker.clone()) {
                            let (id, lamport) = ctx.key("m", key);
                            record_key(&mut work, "m", key, id, lamport, Some(marker), &ctx);
                        }
                        match kind {
                            Kind::Text => {
                                let mut t = m.text(key).unwrap();
                                let len = t.len();
                                if len == 0 || rng.chance(70) {
                                    let s = writer_text(rng, 3, i);
                                    t.insert(rng.range(0, len), &s).unwrap();
                                    ctx.opaque(s.chars().count() as u64);
                                } else {
                                    let pos = rng.below(len);
                                    t.delete(pos, 1).unwrap();
                                    ctx.opaque(1);
                                }
                            }
                            Kind::Counter => {
                                let delta = rng.range(1, 9) as i64;
                                m.counter(key).unwrap().add(delta).unwrap();
                                ctx.push(StepOp::Add {
                                    key: Some(key.into()),
                                    delta,
                                });
                                work.add_to_counter(Some(key), delta);
                            }
                            Kind::Map => {
                                let path = format!("m/{key}");
                                let sub_key = SUB_KEYS[rng.below(SUB_KEYS.len())];
                                let mut sub = m.map(key).unwrap();
                                if rng.chance(70) {
                                    let value = small_value(rng);
                                    sub.set(sub_key, value.clone()).unwrap();
                                    let (id, lamport) = ctx.key(&path, sub_key);
                                    record_key(
                                        &mut work,
                                        &path,
                                        sub_key,
                                        id,
                                        lamport,
                                        Some(MapValue::Value(value)),
                                        &ctx,
                                    );
                                } else {
                                    let had = sub.view().contains_key(sub_key);
                                    sub.delete(sub_key).unwrap();
                                    if had {
                                        let (id, lamport) = ctx.key(&path, sub_key);
                                        record_key(
                                            &mut work, &path, sub_key, id, lamport, None, &ctx,
                                        );
                                    }
                                }
                            }
                            _ => {
                                let path = format!("m/{key}");
                                let value = small_value(rng);
                                let mut r = m.register(key, Rule::Lww).unwrap();
                                r.set(value.clone(), now).unwrap();
                                let (id, lamport) = ctx.take(1);
                                ctx.ops.push(StepOp::Reg {
                                    path: path.clone(),
                                    id,
                                });
                                let stamp = ctx.stamp(&work, id, now);
                                check_own_write(
                                    seed,
                                    &path,
                                    &r.view().writes(),
                                    id,
                                    lamport,
                                    stamp,
                                    &value,
                                );
                                record_register(&mut work, &path, id, stamp, Some(value), &ctx);
                            }
                        }
                    }
                }
                // The list `l`, of unique elements.
                _ => {
                    let mut l = tx.list("l");
                    let len = l.len();
                    if len == 0 || rng.chance(60) {
                        let n = rng.range(1, 3);
                        let values: Vec<i64> = (next_elem..next_elem + n as i64).collect();
                        next_elem += n as i64;
                        l.insert_many(rng.range(0, len), values.iter().map(|&v| Value::from(v)))
                            .unwrap();
                        for &v in &values {
                            ctx.push(StepOp::ListInsert(v));
                        }
                        work.list_inserted.extend(values);
                    } else {
                        let pos = rng.below(len);
                        let n = rng.range(1, (len - pos).min(3));
                        for p in pos..pos + n {
                            let v = l.view().get(p).and_then(Value::as_i64);
                            let elem = v.expect("list elements are ints");
                            let token = work.delete_elem(elem);
                            ctx.push(StepOp::ListDelete { elem, token });
                        }
                        l.delete(pos, n).unwrap();
                    }
                }
            }
            work.writes += 1;
        }
        if let Some((encoded, json)) = before {
            drop(tx);
            self.rolled_back += 1;
            let d = &self.replicas[i].doc;
            assert_eq!(
                d.version(),
                &before_version,
                "seed {seed}: rollback kept ops"
            );
            assert_eq!(
                d.encode(),
                encoded,
                "seed {seed}: rollback changed the encoding"
            );
            assert_eq!(d.to_json(), json, "seed {seed}: rollback changed the JSON");
            return;
        }
        // Two commits in three carry metadata naming their own ops, which blame and
        // the history listing must give back with exactly those ops.
        let change = if start_seq % 3 == 0 {
            tx.commit()
        } else {
            tx.commit_with(
                CommitOptions::new()
                    .message(change_message(me, start_seq))
                    .time(nows.last().copied().unwrap_or(0)),
            )
        };
        self.committed += 1;
        match &change {
            None => assert_eq!(
                ctx.next_seq, start_seq,
                "seed {seed}: ops made but no change"
            ),
            Some(c) => {
                assert_eq!(
                    c.seqs,
                    start_seq..ctx.next_seq,
                    "seed {seed}: the model counts the transaction's ops differently"
                );
                assert_eq!(c.lamport, ctx.start_lamport, "seed {seed}: change lamport");
            }
        }
        assert_eq!(
            ctx.ops.iter().map(StepOp::len).sum::<u64>(),
            ctx.next_seq - start_seq,
            "seed {seed}: the undo model's ops do not cover the transaction"
        );
        self.model = work;
        self.next_elem = next_elem;
        // Every committed transaction is recorded; now and then the application ends
        // the undo step on purpose.
        let now = self.now_ms(i);
        let stop = self.rng.chance(10);
        let r = &mut self.replicas[i];
        if stop {
            r.undo.stop_capturing();
            r.steps.last_ms = None;
        }
        r.undo.record(&r.doc, change.as_ref(), now);
        r.steps.record(ctx.ops, now);
        assert_eq!(
            r.undo.can_redo(),
            !r.steps.redo.is_empty(),
            "seed {seed}: replica {i}: can_redo after a commit"
        );
    }

    /// Replica `i` undoes (or redoes) a step, as the model predicts.
    fn undo_or_redo(&mut self, i: usize, redo: bool) {
        let seed = self.seed;
        let what = if redo { "redo" } else { "undo" };
        let now = self.now_ms(i);
        let r = &mut self.replicas[i];
        let mut ctx = TxCtx::new(&r.doc);
        let mut work = self.model.clone();
        let mut steps = r.steps.clone();
        steps.last_ms = None;
        // Steps of which nothing is in effect any more are passed over.
        let mut done = false;
        loop {
            let step = if redo {
                steps.redo.pop()
            } else {
                steps.undo.pop()
            };
            let Some(step) = step else { break };
            work.invert(&step, &mut ctx, now);
            if ctx.ops.is_empty() {
                self.undo_stats.skipped += 1;
                continue;
            }
            let inverse = ctx.ops.clone();
            if redo {
                steps.undo.push(inverse);
            } else {
                steps.redo.push(inverse);
            }
            done = true;
            break;
        }
        let got = if redo {
            r.undo.redo(&mut r.doc, now)
        } else {
            r.undo.undo(&mut r.doc, now)
        };
        let got = got.unwrap_or_else(|e| panic!("seed {seed}: replica {i}: {what}: {e}"));
        let ctx_what = |s: &str| format!("seed {seed}: replica {i}: {what}: {s}");
        assert_eq!(got, done, "{}", ctx_what("whether a step was undone"));
        let d = &r.doc;
        assert_eq!(
            d.version().get(&ctx.me) - ctx.start_seq,
            ctx.next_seq - ctx.start_seq,
            "{}",
            ctx_what("ops made")
        );
        assert_eq!(
            (r.undo.can_undo(), r.undo.can_redo()),
            (!steps.undo.is_empty(), !steps.redo.is_empty()),
            "{}",
            ctx_what("(can_undo, can_redo)")
        );
        if let Err(e) = d.check() {
            panic!("{}", ctx_what(&format!("check(): {e}")));
        }
        // What undo wrote shows here at once, alone.
        for op in &ctx.ops {
            match op {
                StepOp::Reg { path, id } => {
                    let w = work.registers[path].iter().find(|w| w.id == *id).unwrap();
                    let writes = register_view(d, path).writes();
                    match &w.value {
                        Some(v) => {
                            check_own_write(seed, path, &writes, *id, ctx.lamport(*id), w.stamp, v)
                        }
                        None => assert_eq!(writes, vec![], "{}", ctx_what(path)),
                    }
                    self.undo_stats.writes += 1;
                }
                StepOp::Key { path, key, id } => {
                    let w = &work.keys[&(path.clone(), key.clone())];
                    let w = w.iter().find(|w| w.id == *id).unwrap();
                    let view = map_view(d, path);
                    let shown = (view.get(key), view.conflicts(key).len());
                    assert_eq!(shown, (w.value.clone(), 0), "{}", ctx_what(path));
                    self.undo_stats.writes += 1;
                }
                StepOp::ListUndelete { .. } => self.undo_stats.undeletes += 1,
                _ => {}
            }
        }
        match (done, redo) {
            (false, _) => self.undo_stats.nothing += 1,
            (true, false) => self.undo_stats.undone += 1,
            (true, true) => self.undo_stats.redone += 1,
        }
        r.steps = steps;
        self.model = work;
    }

    fn send(&mut self, from: usize, to: usize, since: VersionVector) {
        let r = &mut self.replicas[from];
        let bytes = if self.rng.chance(5) {
            r.doc.encode()
        } else {
            r.doc.encode_since(&since)
        };
        r.assumed[to].merge(r.doc.version());
        let sender_version = r.doc.version().clone();
        self.in_flight.push(Msg {
            from,
            to,
            bytes,
            sender_version,
        });
    }

    fn deliver(&mut self, msg: &Msg) {
        let seed = self.seed;
        let r = &mut self.replicas[msg.to];
        let before = r.doc.version().total_ops();
        let report = r.doc.apply_update(&msg.bytes).unwrap_or_else(|e| {
            panic!(
                "seed {seed}: apply_update of a genuine update from {} failed: {e}",
                msg.from
            )
        });
        assert_eq!(
            r.doc.version().total_ops() - before,
            report.applied,
            "seed {seed}: ApplyReport.applied"
        );
        r.reported[msg.from].merge(&msg.sender_version);
        if let Err(e) = r.doc.check() {
            panic!("seed {seed}: check() failed after apply: {e}");
        }
    }

    fn step(&mut self) {
        self.step += 1;
        let n = self.replicas.len();
        if self.snap_rng.chance(10) {
            let i = self.snap_rng.below(n);
            let r = &self.replicas[i];
            self.snapshots.push(Snapshot {
                replica: i,
                version: r.doc.version().clone(),
                json: r.doc.to_json(),
                knew_longest: r.knows_longest,
            });
        }
        match self.rng.below(100) {
            0..30 => {
                let i = self.rng.below(n);
                self.local_txn(i);
            }
            30..45 => {
                let i = self.rng.below(n);
                let redo = self.rng.chance(40);
                self.undo_or_redo(i, redo);
            }
            45..68 => {
                let from = self.rng.below(n);
                let to = (from + self.rng.range(1, n - 1)) % n;
                let since = self.replicas[from].assumed[to].clone();
                self.send(from, to, since);
            }
            68..93 => {
                if self.in_flight.is_empty() {
                    return;
                }
                let k = self.rng.below(self.in_flight.len());
                let msg = self.in_flight.swap_remove(k);
                if self.rng.chance(self.drop) {
                    return;
                }
                self.deliver(&msg);
                if self.rng.chance(self.duplicate) {
                    self.in_flight.push(msg);
                }
            }
            93 => {
                // A replica learns the application's merge rule late.
                let i = self.rng.below(n);
                let r = &mut self.replicas[i];
                if !r.knows_longest {
                    r.doc.add_merge_rule(Arc::new(Longest)).unwrap();
                    r.knows_longest = true;
                    if let Err(e) = r.doc.check() {
                        panic!("seed {}: check() after add_merge_rule: {e}", self.seed);
                    }
                }
            }
            94 => {
                // A replica restarts from its saved state (ops waiting for missing
                // dependencies are not saved: peers send them again) with empty undo
                // and redo stacks.
                let seed = self.seed;
                let i = self.rng.below(n);
                let r = &mut self.replicas[i];
                let mut doc = Doc::decode(&r.doc.encode(), r.doc.replica_id())
                    .unwrap_or_else(|e| panic!("seed {seed}: reloading replica {i}: {e}"));
                if r.knows_longest {
                    doc.add_merge_rule(Arc::new(Longest)).unwrap();
                }
                assert_eq!(
                    doc.version(),
                    r.doc.version(),
                    "seed {seed}: reloaded version"
                );
                assert_eq!(doc.to_json(), r.doc.to_json(), "seed {seed}: reloaded JSON");
                assert_eq!(
                    doc.max_lamport(),
                    r.doc.max_lamport(),
                    "seed {seed}: reloaded Lamport clock"
                );
                r.doc = doc;
                let capture_ms = r.steps.capture_ms;
                r.undo = UndoManager::new(capture_ms);
                r.steps = UndoModel::new(capture_ms);
            }
            _ => {
                // Periodic resync: forget optimistic assumptions, trust what peers said.
                let from = self.rng.below(n);
                for to in (0..n).filter(|&t| t != from) {
                    let r = &mut self.replicas[from];
                    r.assumed[to] = r.reported[to].clone();
                    let since = r.assumed[to].clone();
                    self.send(from, to, since);
                }
            }
        }
    }

    fn final_sync(&mut self) {
        let n = self.replicas.len();
        for _round in 0..=n {
            for from in 0..n {
                for to in (0..n).filter(|&t| t != from) {
                    let since = self.replicas[to].doc.version().clone();
                    let r = &self.replicas[from];
                    let msg = Msg {
                        from,
                        to,
                        bytes: r.doc.encode_since(&since),
                        sender_version: r.doc.version().clone(),
                    };
                    self.deliver(&msg);
                }
            }
            let v0 = self.replicas[0].doc.version();
            if self.replicas.iter().all(|r| r.doc.version() == v0) {
                break;
            }
        }
        // Replicas that never learnt the "longest" rule hold its writes unmerged.
        let seed = self.seed;
        let any_longest = self.model.longest.is_some();
        for r in &mut self.replicas {
            if !r.knows_longest {
                assert_eq!(
                    r.doc.register("longest", longest()).value(),
                    None,
                    "seed {seed}: a merge register shows a value without its rule"
                );
                r.doc.add_merge_rule(Arc::new(Longest)).unwrap();
                r.knows_longest = true;
                if any_longest {
                    assert!(r.doc.register("longest", longest()).value().is_some());
                }
            }
        }
    }

    fn check_converged(&self) -> Coverage {
        let seed = self.seed;
        let r0 = &self.replicas[0];
        let json0 = r0.doc.to_json();
        let mut coverage = Coverage::default();
        for (i, r) in self.replicas.iter().enumerate() {
            let d = &r.doc;
            if let Err(e) = d.check() {
                panic!("seed {seed}: replica {i} check(): {e}");
            }
            assert_eq!(
                d.version(),
                r0.doc.version(),
                "seed {seed}: replica {i} version"
            );
            assert_eq!(d.pending_len(), 0, "seed {seed}: replica {i} pending");
            assert_eq!(d.to_json(), json0, "seed {seed}: replica {i} JSON");
            assert_eq!(
                d.field_conflicts(),
                r0.doc.field_conflicts(),
                "seed {seed}: replica {i} field conflicts"
            );
            let c = self.check_model(i);
            if i == 0 {
                coverage = c;
            }
        }
        coverage
    }

    /// Replica `i` against the reference model.
    fn check_model(&self, i: usize) -> Coverage {
        let seed = self.seed;
        let d = &self.replicas[i].doc;
        let m = &self.model;
        let ctx = |what: &str| format!("seed {seed}: replica {i}: {what}");
        let mut coverage = Coverage::default();

        assert_eq!(d.counter("c").value(), m.counter, "{}", ctx("counter"));
        for (key, sum) in &m.nested_counters {
            assert_eq!(
                d.map("m").counter(key).value(),
                *sum,
                "{}",
                ctx(&format!("counter m/{key}"))
            );
        }
        assert_eq!(
            d.register("max", Rule::merge("max")).value(),
            m.max,
            "{}",
            ctx("max register")
        );
        let union = m
            .union
            .as_ref()
            .map(|set| Value::Array(set.iter().cloned().collect()));
        assert_eq!(
            d.register("union", Rule::merge("union")).value(),
            union,
            "{}",
            ctx("union register")
        );
        assert_eq!(
            d.register("longest", longest()).value(),
            m.longest,
            "{}",
            ctx("custom merge register")
        );

        // Registers: the held writes, in clock order, and the winner.
        let mut paths: Vec<String> = vec!["lww".into(), "mv".into()];
        paths.extend(KEYS.iter().map(|k| format!("m/{k}")));
        for path in &paths {
            let view = register_view(d, path);
            let want = m.held_register(path);
            coverage.register_conflicts += u64::from(want.len() > 1);
            let got: Vec<_> = view
                .writes()
                .into_iter()
                .map(|w| (w.id, w.time_ms, w.value))
                .collect();
            let expected: Vec<_> = want
                .iter()
                .map(|w| (w.id, w.stamp >> 16, w.value.clone().expect("held values")))
                .collect();
            assert_eq!(
                got,
                expected,
                "{}",
                ctx(&format!("writes held by register {path}"))
            );
            assert_eq!(
                view.value(),
                want.last().and_then(|w| w.value.clone()),
                "{}",
                ctx(&format!("value of register {path}"))
            );
            if path == "mv" {
                let differ = want.iter().any(|w| w.value != want[0].value);
                assert_eq!(
                    view.conflicts().len(),
                    if differ { want.len() } else { 0 },
                    "{}",
                    ctx(&format!("conflicts of register {path}"))
                );
                // The JSON view shows a conflict as {"conflict": [value, …]}.
                let json = d.to_json();
                let shown = json[path.as_str()]["conflict"].as_array().map(Vec::len);
                assert_eq!(
                    shown,
                    differ.then_some(want.len()),
                    "{}",
                    ctx(&format!("JSON of register {path}"))
                );
            }
        }

        // Maps: keys, shown values and conflicts.
        let mut map_paths: BTreeSet<String> = BTreeSet::from(["m".to_owned()]);
        map_paths.extend(m.keys.keys().map(|(p, _)| p.clone()));
        for path in &map_paths {
            let view = map_view(d, path);
            let candidates: &[&str] = if path == "m" { KEYS } else { SUB_KEYS };
            let mut want_keys = Vec::new();
            for &key in candidates {
                let held = m.held_key(path, key);
                let what = |s: &str| ctx(&format!("{s} of {path}[{key}]"));
                if held.is_empty() {
                    assert!(!view.contains_key(key), "{}", what("presence"));
                    assert_eq!(view.get(key), None, "{}", what("value"));
                    continue;
                }
                want_keys.push(key);
                coverage.key_conflicts += u64::from(held.len() > 1);
                assert_eq!(
                    view.get(key),
                    held.last().and_then(|w| w.value.clone()),
                    "{}",
                    what("shown value")
                );
                let differ = held.iter().any(|w| w.value != held[0].value);
                let got: Vec<_> = view
                    .conflicts(key)
                    .into_iter()
                    .map(|w| (w.id, w.lamport, Some(w.value)))
                    .collect();
                let expected: Vec<_> = if differ {
                    held.iter()
                        .map(|w| (w.id, w.lamport, w.value.clone()))
                        .collect()
                } else {
                    Vec::new()
                };
                assert_eq!(got, expected, "{}", what("conflicts"));
            }
            assert_eq!(
                view.keys().collect::<Vec<_>>(),
                want_keys,
                "{}",
                ctx(&format!("keys of {path}"))
            );
            assert_eq!(
                view.len(),
                want_keys.len(),
                "{}",
                ctx(&format!("len of {path}"))
            );
        }

        // The list: exactly what was inserted and shows (not deleted, or every delete
        // of it undone), each once.
        let elems: Vec<i64> = d
            .list("l")
            .iter()
            .map(|v| v.as_i64().expect("list elements are ints"))
            .collect();
        let unique: BTreeSet<i64> = elems.iter().copied().collect();
        assert_eq!(unique.len(), elems.len(), "{}", ctx("list has duplicates"));
        let want: BTreeSet<i64> = m
            .list_inserted
            .iter()
            .copied()
            .filter(|&e| m.list_shows(e))
            .collect();
        assert_eq!(unique, want, "{}", ctx("list elements"));
        coverage.list_elems += elems.len() as u64;

        // The root name used with two kinds.
        let mut kinds: Vec<_> = m
            .dual
            .iter()
            .map(|(k, first)| (*first, k.clone()))
            .collect();
        kinds.sort();
        let kinds: Vec<Kind> = kinds.into_iter().map(|(_, k)| k).collect();
        assert_eq!(
            d.root_kind("dual"),
            kinds.first().cloned(),
            "{}",
            ctx("root_kind")
        );
        let conflict = d.field_conflicts().into_iter().find(|c| c.name == "dual");
        if kinds.len() > 1 {
            let c = conflict.unwrap_or_else(|| panic!("{}", ctx("no field conflict for dual")));
            assert_eq!(c.kinds, kinds, "{}", ctx("field conflict kinds"));
            coverage.dual_conflicts += 1;
        } else {
            assert!(
                conflict.is_none(),
                "{}",
                ctx("a field conflict for one kind")
            );
        }
        coverage
    }
}

/// Register `path` ("lww", "mv" or "m/<key>").
fn register_view<'d>(d: &'d Doc, path: &str) -> RegisterView<'d> {
    match path.strip_prefix("m/") {
        Some(key) => d.map("m").register(key, Rule::Lww),
        None if path == "lww" => d.register(path, Rule::Lww),
        None => d.register(path, Rule::MultiValue),
    }
}

/// Map `path` ("m" or "m/<key>").
fn map_view<'d>(d: &'d Doc, path: &str) -> MapView<'d> {
    match path.strip_prefix("m/") {
        Some(key) => d.map("m").map(key),
        None => d.map("m"),
    }
}

/// A small random plain value.
fn small_value(rng: &mut Rng) -> Value {
    match rng.below(6) {
        0 => Value::Null,
        1 => Value::Bool(rng.chance(50)),
        2 | 3 => Value::Int(rng.below(10) as i64),
        4 => Value::Float(rng.below(4) as f64 / 2.0),
        _ => Value::Str(random_text(rng, 3)),
    }
}

/// Right after a last-writer-wins or multi-value write, the register holds just it,
/// with the predicted id, Lamport timestamp and clock.
fn check_own_write(
    seed: u64,
    path: &str,
    writes: &[chorus_doc::Write<Value>],
    id: OpId,
    lamport: u64,
    stamp: u64,
    value: &Value,
) {
    assert_eq!(
        writes.len(),
        1,
        "seed {seed}: {path}: a write supersedes all it saw"
    );
    let w = &writes[0];
    assert_eq!(
        (w.id, w.lamport, w.time_ms, &w.value),
        (id, lamport, stamp >> 16, value),
        "seed {seed}: {path}: the write as the model predicts it"
    );
}

fn record_register(
    work: &mut Model,
    path: &str,
    id: OpId,
    stamp: u64,
    value: Option<Value>,
    ctx: &TxCtx,
) {
    work.stamps.push((id, stamp));
    work.registers
        .entry(path.to_owned())
        .or_default()
        .push(RegWrite {
            id,
            stamp,
            value,
            seen: ctx.seen.clone(),
        });
}

fn record_key(
    work: &mut Model,
    path: &str,
    key: &str,
    id: OpId,
    lamport: u64,
    value: Option<MapValue>,
    ctx: &TxCtx,
) {
    work.keys
        .entry((path.to_owned(), key.to_owned()))
        .or_default()
        .push(KeyWrite {
            id,
            lamport,
            value,
            seen: ctx.seen.clone(),
        });
}

/// Runs one seed to the end and checks convergence and the model.
fn run_seed(seed: u64) -> Sim {
    let mut sim = Sim::new(seed);
    let steps = sim.rng.range(60, 240);
    for _ in 0..steps {
        sim.step();
    }
    sim.final_sync();
    sim.coverage = sim.check_converged();
    sim
}

/// Runs `count` seeds from `CHORUS_SEED_START`, `check` on each finished run;
/// collects failing seeds (up to 5) and fails listing them.
pub(crate) fn run_many(
    name: &str,
    salt: u64,
    count: u64,
    check: impl Fn(&Sim),
) -> (u64, Coverage, UndoStats) {
    let start = seed_start();
    let mut failed = Vec::new();
    let (mut writes, mut committed, mut rolled_back) = (0, 0, 0);
    let mut coverage = Coverage::default();
    let mut undo = UndoStats::default();
    for seed in start..start + count {
        match catch_unwind(AssertUnwindSafe(|| {
            let sim = run_seed(seed ^ salt);
            check(&sim);
            sim
        })) {
            Ok(sim) => {
                writes += sim.model.writes;
                committed += sim.committed;
                rolled_back += sim.rolled_back;
                coverage.add(sim.coverage);
                undo.add(sim.undo_stats);
            }
            Err(e) => {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failed.push((seed, msg));
                if failed.len() >= 5 {
                    break;
                }
            }
        }
    }
    eprintln!(
        "{name}: {count} seeds, {committed} committed transactions with {writes} ops, \
         {rolled_back} rolled back; {undo:?}; in the final states: {coverage:?}"
    );
    assert!(
        failed.is_empty(),
        "{name}: {} failing seed(s) (rerun one with CHORUS_SEED_START=<seed> CHORUS_SEEDS=1 \
         cargo test -p chorus-tests --profile ci {name}): {failed:#?}",
        failed.len()
    );
    assert!(
        rolled_back > 0 || count < 10,
        "{name}: no transaction was rolled back"
    );
    (writes, coverage, undo)
}

#[test]
fn types_converge_over_a_faulty_network() {
    let count = seeds(200);
    let (writes, coverage, undo) =
        run_many("types_converge_over_a_faulty_network", 0, count, |_| {});
    // The model checks must not be vacuous: they saw concurrent writes held side by
    // side, root-name conflicts and lists, and undo and redo that undid steps, passed
    // over steps no longer in effect, wrote registers and keys back and brought list
    // elements back (with few seeds, maybe not all of them).
    assert!(writes >= count * 10, "too few ops: {writes}");
    if count >= 50 {
        assert!(
            coverage.register_conflicts > 0
                && coverage.key_conflicts > 0
                && coverage.dual_conflicts > 0
                && coverage.list_elems > 0,
            "{coverage:?}"
        );
        assert!(
            undo.undone > count
                && undo.redone > 0
                && undo.nothing > 0
                && undo.skipped > 0
                && undo.writes > 0
                && undo.undeletes > 0,
            "{undo:?}"
        );
    }
}

#[test]
fn types_final_docs_round_trip_through_encode_and_decode() {
    run_many(
        "types_final_docs_round_trip_through_encode_and_decode",
        0x7E57_0000_0000,
        seeds(200) / 2,
        |sim| {
            for (i, r) in sim.replicas.iter().enumerate() {
                let seed = sim.seed;
                let bytes = r.doc.encode();
                let mut copy = Doc::decode(&bytes, rid(u128::MAX))
                    .unwrap_or_else(|e| panic!("seed {seed}: replica {i}: decode: {e}"));
                copy.check()
                    .unwrap_or_else(|e| panic!("seed {seed}: replica {i}: check(): {e}"));
                assert_eq!(
                    copy.encode(),
                    bytes,
                    "seed {seed}: replica {i}: decode(encode(d)).encode() != d.encode()"
                );
                copy.add_merge_rule(Arc::new(Longest)).unwrap();
                assert_eq!(
                    copy.to_json(),
                    r.doc.to_json(),
                    "seed {seed}: replica {i}: JSON after decode"
                );
                assert_eq!(copy.version(), r.doc.version());
            }
        },
    );
}

// ------------------------------------------------------------------ text undo scenarios

/// What the replicas of a text scenario do to the common base text.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Edits {
    /// Only deletes, overlapping concurrently.
    Deletes,
    /// Only inserts.
    Inserts,
    /// Inserts and deletes, of the base and of each other's inserts.
    Mixed,
}

/// One replica of a text scenario.
struct Typist {
    undo: UndoManager,
    capture_ms: u64,
    /// Its clock: a few milliseconds pass between its actions.
    now: u64,
    /// When its last recorded change was made (as `UndoManager` joins steps).
    last: Option<u64>,
    /// How many undo steps its edits make.
    steps: u64,
}

/// The text every doc shows, once all agree.
fn agreed_text(docs: &[Doc], seed: u64, what: &str) -> String {
    let t0 = docs[0].text("t").to_string();
    for (i, d) in docs.iter().enumerate() {
        if let Err(e) = d.check() {
            panic!("seed {seed}: {what}: replica {i}: check(): {e}");
        }
        assert_eq!(
            d.text("t").to_string(),
            t0,
            "seed {seed}: {what}: replica {i}"
        );
        assert_eq!(d.to_json(), docs[0].to_json(), "seed {seed}: {what}: JSON");
        // The state survives saving and loading, byte for byte.
        let bytes = d.encode();
        let copy = Doc::decode(&bytes, d.replica_id())
            .unwrap_or_else(|e| panic!("seed {seed}: {what}: replica {i}: decode: {e}"));
        assert_eq!(copy.encode(), bytes, "seed {seed}: {what}: re-encoding");
        assert_eq!(
            copy.to_json(),
            d.to_json(),
            "seed {seed}: {what}: decoded JSON"
        );
    }
    t0
}

/// Every replica undoes (or redoes) all its steps, until `undo` (`redo`) returns
/// `Ok(false)`, in a random order with the network running; then all sync. Each
/// step is undone by exactly one call: text steps are always in effect.
fn undo_all(
    rng: &mut Rng,
    net: &mut FaultyNet,
    docs: &mut [Doc],
    typists: &mut [Typist],
    redo: bool,
) {
    let what = if redo { "redo" } else { "undo" };
    let mut done = vec![0; docs.len()];
    let mut active: Vec<usize> = (0..docs.len()).collect();
    while !active.is_empty() {
        if rng.chance(50) {
            net.step(rng, docs);
            continue;
        }
        let a = rng.below(active.len());
        let k = active[a];
        let t = &mut typists[k];
        t.now += rng.below(30) as u64;
        let did = if redo {
            t.undo.redo(&mut docs[k], t.now)
        } else {
            t.undo.undo(&mut docs[k], t.now)
        };
        if did.unwrap_or_else(|e| panic!("replica {k}: {what}: {e}")) {
            done[k] += 1;
        } else {
            assert_eq!(
                done[k], t.steps,
                "replica {k}: {what} calls that did a step"
            );
            let left = if redo {
                t.undo.can_redo()
            } else {
                t.undo.can_undo()
            };
            assert!(!left, "replica {k}: steps left after {what} said none were");
            active.swap_remove(a);
        }
        if let Err(e) = docs[k].check() {
            panic!("replica {k}: check() after {what}: {e}");
        }
    }
    net.settle(docs);
}

/// 2–3 replicas start from a common text B (typed by several of them and synced),
/// then edit it (`edits`) in several steps each while the network drops, duplicates
/// and reorders their updates, so that they delete overlapping ranges concurrently.
/// The text all the edits make together is X. Then every replica undoes all its
/// steps, in a random order with partial syncs: once all sync, the text is exactly B,
/// every character once (the deletes are undone, not re-typed; the inserts are
/// deleted by id, even where someone else deleted them too). In half the runs they
/// then redo everything (the text is X again) and undo everything again (B again).
///
/// Returns how many characters were deleted by more than one replica (each counted
/// once per delete beyond the first), so that the tests can tell that concurrent
/// deletes overlapped.
fn text_undo_scenario(seed: u64, edits: Edits) -> u64 {
    let mut rng = Rng::new(seed);
    let n = rng.range(2, 3);
    let mut docs: Vec<Doc> = (0..n)
        .map(|k| Doc::new(rid(((k as u128 + 1) << 64) | rng.next_u64() as u128)))
        .collect();
    let mut net = FaultyNet::new(&mut rng);
    for _ in 0..rng.range(3, 6) {
        let k = rng.below(n);
        let len = docs[k].text("t").len();
        let s = random_text(&mut rng, 8);
        let mut tx = docs[k].transact();
        tx.text("t").insert(rng.range(0, len), &s).unwrap();
        tx.commit();
        net.step(&mut rng, &mut docs);
    }
    net.settle(&mut docs);
    let base = agreed_text(&docs, seed, "base");

    let mut typists: Vec<Typist> = (0..n)
        .map(|_| {
            let capture_ms = [0, 50][rng.below(2)];
            Typist {
                undo: UndoManager::new(capture_ms),
                capture_ms,
                now: 1_000,
                last: None,
                steps: 0,
            }
        })
        .collect();
    let mut edits_left: Vec<usize> = (0..n).map(|_| rng.range(1, 6)).collect();
    let mut log = Vec::new();
    // Characters inserted, and deleted as each replica saw them.
    let (mut inserted, mut deleted) = (0, 0);
    while edits_left.iter().any(|&e| e > 0) {
        let k = rng.below(n);
        if edits_left[k] == 0 || rng.chance(40) {
            net.step(&mut rng, &mut docs);
            continue;
        }
        edits_left[k] -= 1;
        let t = &mut typists[k];
        t.now += rng.below(100) as u64;
        let mut tx = docs[k].transact();
        let mut text = tx.text("t");
        for _ in 0..rng.range(1, 2) {
            let len = text.len();
            let delete = match edits {
                Edits::Deletes => true,
                Edits::Inserts => false,
                Edits::Mixed => rng.chance(50),
            };
            if delete && len > 0 {
                let pos = rng.below(len);
                let cnt = rng.range(1, (len - pos).min(6));
                text.delete(pos, cnt).unwrap();
                deleted += cnt;
                log.push(format!("{k} deletes {cnt} at {pos} (t={})", t.now));
            } else if !delete {
                let pos = rng.range(0, len);
                let s = random_text(&mut rng, 4);
                text.insert(pos, &s).unwrap();
                inserted += s.chars().count();
                log.push(format!("{k} inserts {s:?} at {pos} (t={})", t.now));
            }
        }
        let change = tx.commit();
        if change.is_some() {
            // As UndoManager::record joins changes within the capture interval.
            let joins = t.last.is_some_and(|l| t.now - l < t.capture_ms);
            t.steps += u64::from(!joins || t.steps == 0);
            t.last = Some(t.now);
        }
        t.undo.record(&docs[k], change.as_ref(), t.now);
    }
    // What all the edits make together, from a doc that has them all.
    let mut all = Doc::new(rid(u128::MAX));
    for d in &docs {
        all.apply_update(&d.encode()).unwrap();
    }
    let edited = all.text("t").to_string();
    let gone = base.chars().count() + inserted - edited.chars().count();
    let overlap = (deleted - gone) as u64;
    let ctx = |phase: &str| format!("{phase} ({edits:?}; base {base:?}; edits {log:?})");

    for (phase, redo, want) in [
        ("undo all", false, &base),
        ("redo all", true, &edited),
        ("undo all again", false, &base),
    ] {
        if redo && rng.chance(50) {
            break;
        }
        undo_all(&mut rng, &mut net, &mut docs, &mut typists, redo);
        let got = agreed_text(&docs, seed, phase);
        assert_eq!(&got, want, "seed {seed}: {}", ctx(phase));
    }
    overlap
}

/// Runs the text scenario with `edits` on many seeds; checks that deletes overlapped.
fn text_scenarios(name: &str, salt: u64, edits: Edits) {
    let count = seeds(200);
    let overlap = std::sync::atomic::AtomicU64::new(0);
    run_seeds(name, salt, count, |seed| {
        let o = text_undo_scenario(seed, edits);
        overlap.fetch_add(o, std::sync::atomic::Ordering::Relaxed);
    });
    let overlap = overlap.into_inner();
    eprintln!("{name}: {count} seeds, {overlap} characters deleted concurrently twice or more");
    if edits != Edits::Inserts && count >= 50 {
        assert!(overlap > 0, "{name}: no concurrent deletes overlapped");
    }
}

#[test]
fn text_deletes_all_undone_restore_the_base_text() {
    text_scenarios("text_deletes_all_undone", 0xDE1E_7E00, Edits::Deletes);
}

#[test]
fn text_inserts_all_undone_restore_the_base_text() {
    text_scenarios("text_inserts_all_undone", 0x1A5E_7700, Edits::Inserts);
}

#[test]
fn text_edits_all_undone_restore_the_base_text() {
    text_scenarios("text_edits_all_undone", 0xED17_5000, Edits::Mixed);
}

// ------------------------------------------------------------------ undo regressions

/// Seeds 14, 16 and 28 of `types_converge_over_a_faulty_network` (found when undo
/// joined the suite): a register that holds undo's write of "nothing" next to two
/// concurrent writes shows a different winner depending on the order the writes
/// arrived in.
#[test]
fn register_holding_an_undone_write_shows_the_same_winner_everywhere() {
    let mut a = Doc::new(rid(1));
    let mut b = Doc::new(rid(2));
    let mut c = Doc::new(rid(3));
    let mut undo = UndoManager::new(0);
    let mut tx = a.transact();
    tx.register("r", Rule::Lww).set("a", 1_000).unwrap();
    let change = tx.commit();
    undo.record(&a, change.as_ref(), 1_000);
    assert!(undo.undo(&mut a, 1_000).unwrap()); // a's write of "nothing"
    for (d, v, t) in [(&mut b, "b", 3_000), (&mut c, "c", 2_000)] {
        let mut tx = d.transact();
        tx.register("r", Rule::Lww).set(v, t).unwrap();
        tx.commit();
    }
    // x learns a's writes first, y last.
    let mut x = Doc::new(rid(4));
    let mut y = Doc::new(rid(5));
    for d in [&a, &b, &c] {
        x.apply_update(&d.encode()).unwrap();
    }
    for d in [&b, &c, &a] {
        y.apply_update(&d.encode()).unwrap();
    }
    let shown = |d: &Doc| {
        let r = d.register("r", Rule::Lww);
        let writes: Vec<_> = r
            .writes()
            .into_iter()
            .map(|w| (w.value, w.time_ms))
            .collect();
        (r.value(), writes)
    };
    // b's write has the latest clock: it wins, and writes() lists it last.
    let want = (
        Some(Value::from("b")),
        vec![(Value::from("c"), 2_000), (Value::from("b"), 3_000)],
    );
    assert_eq!(shown(&y), want, "y (a's writes last)");
    assert_eq!(shown(&x), want, "x (a's writes first)");
}
