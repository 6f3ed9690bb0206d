//! Randomized convergence of every container type: 3–5 replicas edit texts, counters,
//! registers (last writer wins, multi-value, max, union and an application's own
//! merge rule), maps with nested containers and lists in random transactions (some
//! rolled back), and exchange deltas over a network that drops, duplicates and
//! reorders them. At the end every replica must agree, pass `check()`, and match a
//! reference model of what was committed:
//!
//! - counters: the wrapping sum of every committed add;
//! - max / union / "longest" registers: the merge of every committed write;
//! - last-writer-wins and multi-value registers: the writes that no other write has
//!   seen, ordered by the hybrid logical clock the model recomputes (so the model
//!   predicts the exact winner, and every replica's write ids and times);
//! - map keys: the writes no other write to the key has seen (deletes leave none),
//!   the one with the highest (Lamport, replica) shown;
//! - lists: exactly the inserted elements that no one deleted;
//! - a root name used as a text and as a counter: the kind whose first op has the
//!   smallest (Lamport, replica).
//!
//! `CHORUS_SEEDS=n` runs more seeds; `CHORUS_SEED_START=s CHORUS_SEEDS=1` reruns one.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use chorus_doc::{Doc, Kind, MapValue, MergeRule, OpId, ReplicaId, Rule, Value, VersionVector};

use crate::util::{Rng, random_text, rid, seed_start, seeds};

/// The largest physical time a hybrid clock stamp holds (48 bits of milliseconds).
const MAX_MS: u64 = (1 << 48) - 1;
/// Keys of the map `m`; any of them may hold a value or any kind of container.
const KEYS: &[&str] = &["a", "b", "x", "y"];
/// Keys of the maps nested in `m`.
const SUB_KEYS: &[&str] = &["p", "q"];

/// An application's merge rule: the longest string wins, ties to the greater one.
#[derive(Debug)]
struct Longest;

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

fn longest() -> Rule {
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

/// A committed register write.
#[derive(Clone, Debug)]
struct RegWrite {
    id: OpId,
    /// The hybrid logical clock stamp the model predicts for it.
    stamp: u64,
    value: Value,
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
    list_deleted: BTreeSet<i64>,
    /// The root name "dual", used as a text and as a counter: the smallest
    /// (Lamport, replica) of each kind's ops.
    dual: BTreeMap<Kind, (u64, ReplicaId)>,
    /// Model facts checked at the end (so that the check is never vacuous).
    writes: u64,
}

impl Model {
    /// The writes of `ws` that no other write has seen.
    fn held<W>(ws: &[W], id: impl Fn(&W) -> OpId, seen: impl Fn(&W) -> &VersionVector) -> Vec<&W> {
        ws.iter()
            .filter(|w| {
                !ws.iter()
                    .any(|o| id(o) != id(w) && sees(id(o), seen(o), id(w)))
            })
            .collect()
    }

    fn held_register(&self, path: &str) -> Vec<&RegWrite> {
        let ws = self.registers.get(path).map_or(&[][..], |v| v.as_slice());
        let mut held = Self::held(ws, |w| w.id, |w| &w.seen);
        held.sort_by_key(|w| (w.stamp, w.id.replica));
        held
    }

    fn held_key(&self, path: &str, key: &str) -> Vec<&KeyWrite> {
        let ws = self
            .keys
            .get(&(path.to_owned(), key.to_owned()))
            .map_or(&[][..], |v| v.as_slice());
        let mut held: Vec<_> = Self::held(ws, |w| w.id, |w| &w.seen)
            .into_iter()
            .filter(|w| w.value.is_some())
            .collect();
        held.sort_by_key(|w| (w.lamport, w.id.replica));
        held
    }
}

/// Op ids, Lamport timestamps and clock stamps of one transaction, as the model
/// predicts them.
struct TxCtx {
    me: ReplicaId,
    start_seq: u64,
    next_seq: u64,
    start_lamport: u64,
    seen: VersionVector,
}

impl TxCtx {
    /// Takes `n` op ids; returns the first and its Lamport timestamp.
    fn take(&mut self, n: u64) -> (OpId, u64) {
        let seq = self.next_seq;
        self.next_seq += n;
        (
            OpId::new(self.me, seq),
            self.start_lamport + (seq - self.start_seq),
        )
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
struct Coverage {
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

struct Replica {
    doc: Doc,
    /// Whether this replica has added the "longest" rule yet.
    knows_longest: bool,
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

struct Sim {
    seed: u64,
    rng: Rng,
    drop: u32,
    duplicate: u32,
    step: u64,
    replicas: Vec<Replica>,
    in_flight: Vec<Msg>,
    model: Model,
    /// The next unique list element.
    next_elem: i64,
    rolled_back: u64,
    committed: u64,
    coverage: Coverage,
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
                Replica {
                    doc,
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
        let before_version = self.replicas[i].doc.version().clone();
        let me = self.replicas[i].doc.replica_id();
        let start_seq = before_version.get(&me);
        let mut ctx = TxCtx {
            me,
            start_seq,
            next_seq: start_seq,
            start_lamport: self.replicas[i].doc.max_lamport() + 1,
            seen: before_version.clone(),
        };
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
                        let s = random_text(rng, 4);
                        t.insert(rng.range(0, len), &s).unwrap();
                        ctx.take(s.chars().count() as u64);
                    } else {
                        let pos = rng.below(len);
                        let n = rng.range(1, (len - pos).min(4));
                        t.delete(pos, n).unwrap();
                        ctx.take(n as u64);
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
                    ctx.take(1);
                    work.counter = work.counter.wrapping_add(delta);
                }
                // The root name "dual": a text on some replicas, a counter on others.
                18..22 => {
                    let (kind, n) = if rng.chance(50) {
                        let s = random_text(rng, 3);
                        let mut t = tx.text("dual");
                        let len = t.len();
                        t.insert(rng.range(0, len), &s).unwrap();
                        (Kind::Text, s.chars().count() as u64)
                    } else {
                        tx.counter("dual").add(1).unwrap();
                        (Kind::Counter, 1)
                    };
                    let (_, lamport) = ctx.take(n);
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
                    let stamp = ctx.stamp(&work, id, now);
                    check_own_write(seed, path, &r.view().writes(), id, lamport, stamp, &value);
                    record_register(&mut work, path, id, stamp, value, &ctx);
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
                    let (id, _) = ctx.take(1);
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
                        let (id, lamport) = ctx.take(1);
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
                            let (id, lamport) = ctx.take(1);
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
                            let (id, lamport) = ctx.take(1);
                            record_key(&mut work, "m", key, id, lamport, Some(marker), &ctx);
                        }
                        match kind {
                            Kind::Text => {
                                let mut t = m.text(key).unwrap();
                                let len = t.len();
                                if len == 0 || rng.chance(70) {
                                    let s = random_text(rng, 3);
                                    t.insert(rng.range(0, len), &s).unwrap();
                                    ctx.take(s.chars().count() as u64);
                                } else {
                                    let pos = rng.below(len);
                                    t.delete(pos, 1).unwrap();
                                    ctx.take(1);
                                }
                            }
                            Kind::Counter => {
                                let delta = rng.range(1, 9) as i64;
                                m.counter(key).unwrap().add(delta).unwrap();
                                ctx.take(1);
                                let c = work.nested_counters.entry(key.to_owned()).or_default();
                                *c = c.wrapping_add(delta);
                            }
                            Kind::Map => {
                                let path = format!("m/{key}");
                                let sub_key = SUB_KEYS[rng.below(SUB_KEYS.len())];
                                let mut sub = m.map(key).unwrap();
                                if rng.chance(70) {
                                    let value = small_value(rng);
                                    sub.set(sub_key, value.clone()).unwrap();
                                    let (id, lamport) = ctx.take(1);
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
                                        let (id, lamport) = ctx.take(1);
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
                                record_register(&mut work, &path, id, stamp, value, &ctx);
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
                        ctx.take(n as u64);
                        work.list_inserted.extend(values);
                    } else {
                        let pos = rng.below(len);
                        let n = rng.range(1, (len - pos).min(3));
                        for p in pos..pos + n {
                            let v = l.view().get(p).and_then(Value::as_i64);
                            work.list_deleted.insert(v.expect("list elements are ints"));
                        }
                        l.delete(pos, n).unwrap();
                        ctx.take(n as u64);
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
        let change = tx.commit();
        self.committed += 1;
        match change {
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
        self.model = work;
        self.next_elem = next_elem;
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
        match self.rng.below(100) {
            0..35 => {
                let i = self.rng.below(n);
                self.local_txn(i);
            }
            35..63 => {
                let from = self.rng.below(n);
                let to = (from + self.rng.range(1, n - 1)) % n;
                let since = self.replicas[from].assumed[to].clone();
                self.send(from, to, since);
            }
            63..93 => {
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
                // dependencies are not saved: peers send them again).
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
            let (view, rule) = match path.strip_prefix("m/") {
                Some(key) => (d.map("m").register(key, Rule::Lww), Rule::Lww),
                None if path == "lww" => (d.register(path, Rule::Lww), Rule::Lww),
                None => (d.register(path, Rule::MultiValue), Rule::MultiValue),
            };
            let want = m.held_register(path);
            coverage.register_conflicts += u64::from(want.len() > 1);
            let got: Vec<_> = view
                .writes()
                .into_iter()
                .map(|w| (w.id, w.time_ms, w.value))
                .collect();
            let expected: Vec<_> = want
                .iter()
                .map(|w| (w.id, w.stamp >> 16, w.value.clone()))
                .collect();
            assert_eq!(
                got,
                expected,
                "{}",
                ctx(&format!("writes held by register {path}"))
            );
            assert_eq!(
                view.value(),
                want.last().map(|w| w.value.clone()),
                "{}",
                ctx(&format!("value of register {path}"))
            );
            if rule == Rule::MultiValue {
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
            let view = match path.strip_prefix("m/") {
                Some(key) => d.map("m").map(key),
                None => d.map("m"),
            };
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

        // The list: exactly what was inserted and not deleted, each once.
        let elems: Vec<i64> = d
            .list("l")
            .iter()
            .map(|v| v.as_i64().expect("list elements are ints"))
            .collect();
        let unique: BTreeSet<i64> = elems.iter().copied().collect();
        assert_eq!(unique.len(), elems.len(), "{}", ctx("list has duplicates"));
        let want: BTreeSet<i64> = m
            .list_inserted
            .difference(&m.list_deleted)
            .copied()
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

fn record_register(work: &mut Model, path: &str, id: OpId, stamp: u64, value: Value, ctx: &TxCtx) {
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
fn run_many(name: &str, salt: u64, count: u64, check: impl Fn(&Sim)) -> (u64, Coverage) {
    let start = seed_start();
    let mut failed = Vec::new();
    let (mut writes, mut committed, mut rolled_back) = (0, 0, 0);
    let mut coverage = Coverage::default();
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
         {rolled_back} rolled back; in the final states: {coverage:?}"
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
    (writes, coverage)
}

#[test]
fn types_converge_over_a_faulty_network() {
    let count = seeds(200);
    let (writes, coverage) = run_many("types_converge_over_a_faulty_network", 0, count, |_| {});
    // The model checks must not be vacuous: they saw concurrent writes held side by
    // side, root-name conflicts and lists (with few seeds, maybe not all of them).
    assert!(writes >= count * 10, "too few ops: {writes}");
    if count >= 50 {
        assert!(
            coverage.register_conflicts > 0
                && coverage.key_conflicts > 0
                && coverage.dual_conflicts > 0
                && coverage.list_elems > 0,
            "{coverage:?}"
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
