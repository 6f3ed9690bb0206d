//! Randomized convergence: several replicas edit concurrently and exchange deltas over
//! a network that drops, duplicates and reorders messages. Every replica is mirrored by
//! a reference replica that receives the same operations; whenever the two have seen the
//! same operations they must show the same text, and at the end everybody agrees.
//!
//! `CHORUS_SEEDS=n` runs more seeds; `CHORUS_SEED_START=s CHORUS_SEEDS=1` reruns one.

use std::panic::{AssertUnwindSafe, catch_unwind};

use chorus_doc::{Doc, VersionVector};

use crate::reference::{Op, RefDoc};
use crate::util::{FIELD, Rng, random_text, rid, seed_start, seeds, text, vv_map};

/// Network behaviour for one run.
#[derive(Debug, Clone, Copy)]
struct NetConfig {
    /// Chance (percent) that a delivered message is lost instead.
    drop: u32,
    /// Chance (percent) that a delivered message is also kept in flight for later.
    duplicate: u32,
}

struct Replica {
    doc: Doc,
    model: RefDoc,
    /// What this replica assumes each peer has: merged optimistically on every send,
    /// so a lost message leaves a gap that later deltas build on.
    assumed: Vec<VersionVector>,
    /// The latest version each peer reported about itself (carried by its messages).
    reported: Vec<VersionVector>,
    last_lamport: Option<u64>,
}

struct Msg {
    from: usize,
    to: usize,
    bytes: Vec<u8>,
    ops: Vec<Op>,
    sender_version: VersionVector,
}

struct Sim {
    seed: u64,
    rng: Rng,
    net: NetConfig,
    replicas: Vec<Replica>,
    in_flight: Vec<Msg>,
    /// How many times a chorus replica and its model had equal versions and were compared.
    comparisons: u64,
}

impl Sim {
    fn new(seed: u64, net: NetConfig) -> Self {
        let mut rng = Rng::new(seed);
        let n = rng.range(3, 5);
        // Replica ids in random order relative to their index, with a wide spread of
        // values so that id comparisons in tie-breaks are exercised in both directions.
        let mut ids: Vec<u128> = (0..n)
            .map(|k| ((k as u128 + 1) << 100) | rng.next_u64() as u128)
            .collect();
        rng.shuffle(&mut ids);
        let replicas = ids
            .iter()
            .map(|&id| Replica {
                doc: Doc::new(rid(id)),
                model: RefDoc::new(id),
                assumed: vec![VersionVector::new(); n],
                reported: vec![VersionVector::new(); n],
                last_lamport: None,
            })
            .collect();
        Sim {
            seed,
            rng,
            net,
            replicas,
            in_flight: Vec::new(),
            comparisons: 0,
        }
    }

    fn local_txn(&mut self, i: usize) {
        let seed = self.seed;
        let rng = &mut self.rng;
        let r = &mut self.replicas[i];
        let me = r.doc.replica_id();
        let before_version = r.doc.version().clone();
        let before_text = text(&r.doc);
        let rollback = rng.chance(10);
        // The model edits a copy, adopted only if the transaction commits.
        let mut work = r.model.clone();
        let mut ops = 0u64;
        let mut tx = r.doc.transact();
        for _ in 0..rng.range(1, 3) {
            let mut t = tx.text(FIELD);
            let len = t.view().len();
            assert_eq!(len, work.len(), "seed {seed}: length inside transaction");
            let utf16 = rng.chance(25);
            if len == 0 || rng.chance(60) {
                let pos = rng.range(0, len);
                let s = random_text(rng, 6);
                if utf16 {
                    let p16 = t.view().char_to_utf16(pos).expect("char pos in range");
                    t.insert_utf16(p16, &s)
                } else {
                    t.insert(pos, &s)
                }
                .unwrap_or_else(|e| panic!("seed {seed}: insert({pos}, {s:?}) on len {len}: {e}"));
                work.insert(pos, &s);
                ops += s.chars().count() as u64;
            } else {
                let pos = rng.below(len);
                let n = rng.range(1, (len - pos).min(6));
                if utf16 {
                    let v = t.view();
                    let a = v.char_to_utf16(pos).expect("char pos in range");
                    let b = v.char_to_utf16(pos + n).expect("char pos in range");
                    t.delete_utf16(a, b - a)
                } else {
                    t.delete(pos, n)
                }
                .unwrap_or_else(|e| panic!("seed {seed}: delete({pos}, {n}) on len {len}: {e}"));
                work.delete(pos, n);
                ops += n as u64;
            }
            assert_eq!(
                t.view().to_string(),
                work.text(),
                "seed {seed}: text inside a transaction differs from the model"
            );
        }
        if rollback {
            drop(tx);
            assert_eq!(text(&r.doc), before_text, "seed {seed}: rollback kept text");
            assert_eq!(
                r.doc.version(),
                &before_version,
                "seed {seed}: rollback kept ops"
            );
            return;
        }
        let change = tx
            .commit()
            .expect("a transaction with edits makes a change");
        let first = before_version.get(&me);
        assert_eq!(change.replica, me, "seed {seed}: change replica");
        assert_eq!(
            change.seqs,
            first..first + ops,
            "seed {seed}: one seq per inserted and deleted char, contiguous"
        );
        if let Some(prev) = r.last_lamport {
            assert!(
                change.lamport > prev,
                "seed {seed}: lamport {} not after previous {prev}",
                change.lamport
            );
        }
        r.last_lamport = Some(change.lamport + ops - 1);
        r.model = work;
        self.compare(i, "after a local transaction");
    }

    /// Replica `from` sends `to` what it believes `to` lacks.
    fn send(&mut self, from: usize, to: usize, since: VersionVector) {
        let r = &mut self.replicas[from];
        let full = self.rng.chance(5);
        let bytes = if full {
            r.doc.encode()
        } else {
            r.doc.encode_since(&since)
        };
        let ops = if full {
            r.model.ops_since(&Default::default())
        } else {
            r.model.ops_since(&vv_map(&since))
        };
        r.assumed[to].merge(r.doc.version());
        let sender_version = r.doc.version().clone();
        self.in_flight.push(Msg {
            from,
            to,
            bytes,
            ops,
            sender_version,
        });
    }

    fn deliver(&mut self, msg: &Msg) {
        let seed = self.seed;
        let r = &mut self.replicas[msg.to];
        let before = r.doc.version().total_ops();
        let report = r.doc.apply_update(&msg.bytes).unwrap_or_else(|e| {
            panic!(
                "seed {seed}: apply_update of a genuine delta from {} failed: {e}",
                msg.from
            )
        });
        let after = r.doc.version().total_ops();
        assert_eq!(
            after - before,
            report.applied,
            "seed {seed}: ApplyReport.applied must count the ops the version grew by"
        );
        r.model.apply(&msg.ops);
        r.reported[msg.from].merge(&msg.sender_version);
        if let Err(e) = r.doc.check() {
            panic!("seed {seed}: check() failed after apply: {e}");
        }
        self.compare(msg.to, "after a delivery");
    }

    fn compare(&mut self, i: usize, when: &str) {
        let r = &self.replicas[i];
        if vv_map(r.doc.version()) == *r.model.version() {
            self.comparisons += 1;
            assert_eq!(
                text(&r.doc),
                r.model.text(),
                "seed {}: replica {i} differs from the reference model {when}",
                self.seed
            );
        }
    }

    fn step(&mut self) {
        let n = self.replicas.len();
        let action = self.rng.below(100);
        match action {
            0..35 => {
                let i = self.rng.below(n);
                self.local_txn(i);
            }
            35..65 => {
                let from = self.rng.below(n);
                let to = (from + self.rng.range(1, n - 1)) % n;
                let since = self.replicas[from].assumed[to].clone();
                self.send(from, to, since);
            }
            65..95 => {
                if self.in_flight.is_empty() {
                    return;
                }
                let k = self.rng.below(self.in_flight.len());
                let msg = self.in_flight.swap_remove(k);
                if self.rng.chance(self.net.drop) {
                    return;
                }
                self.deliver(&msg);
                if self.rng.chance(self.net.duplicate) {
                    self.in_flight.push(msg);
                }
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

    /// Reliable all-to-all exchange until every replica has everything.
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
                        ops: r.model.ops_since(&vv_map(&since)),
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
    }

    fn check_converged(&self) {
        let seed = self.seed;
        let r0 = &self.replicas[0];
        let text0 = text(&r0.doc);
        for (i, r) in self.replicas.iter().enumerate() {
            assert_eq!(
                r.doc.version(),
                r0.doc.version(),
                "seed {seed}: replica {i} version after final sync"
            );
            assert_eq!(text(&r.doc), text0, "seed {seed}: replica {i} text");
            assert_eq!(r.doc.pending_len(), 0, "seed {seed}: replica {i} pending");
            assert_eq!(r.model.pending_len(), 0, "seed {seed}: model {i} pending");
            assert_eq!(
                vv_map(r.doc.version()),
                *r.model.version(),
                "seed {seed}: replica {i} version vs model"
            );
            assert_eq!(
                r.model.text(),
                text0,
                "seed {seed}: replica {i} text vs reference model"
            );
            if let Err(e) = r.doc.check() {
                panic!("seed {seed}: replica {i} check(): {e}");
            }
            assert_eq!(r.doc.text(FIELD).len(), text0.chars().count());
            assert_eq!(
                r.doc.text(FIELD).len_utf16(),
                text0.encode_utf16().count(),
                "seed {seed}: len_utf16"
            );
        }
        let copy = Doc::decode(&r0.doc.encode(), rid(u128::MAX)).expect("own encoding decodes");
        assert_eq!(text(&copy), text0, "seed {seed}: decode(encode())");
        assert_eq!(
            copy.version(),
            r0.doc.version(),
            "seed {seed}: decoded version"
        );
    }
}

fn run_seed(seed: u64, net: NetConfig) -> u64 {
    let mut sim = Sim::new(seed, net);
    let steps = sim.rng.range(40, 160);
    for _ in 0..steps {
        sim.step();
    }
    sim.final_sync();
    sim.check_converged();
    sim.comparisons
}

/// Runs seeds `start..start+count` with `salt` mixed in; collects failing seeds so one
/// run reports several, then fails listing them.
fn run_many(name: &str, salt: u64, count: u64, net: NetConfig) {
    let start = seed_start();
    let mut failed = Vec::new();
    let mut comparisons = 0;
    for seed in start..start + count {
        let s = seed ^ salt;
        match catch_unwind(AssertUnwindSafe(|| run_seed(s, net))) {
            Ok(c) => comparisons += c,
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
    eprintln!("{name}: {comparisons} model comparisons over {count} seeds");
    assert!(
        failed.is_empty(),
        "{name}: {} failing seed(s) (rerun one with CHORUS_SEED_START=<seed> CHORUS_SEEDS=1 \
         cargo test -p chorus-tests --test it {name}): {failed:#?}",
        failed.len()
    );
    assert!(
        comparisons >= count,
        "{name}: the model comparison must not be vacuous ({comparisons} comparisons)"
    );
}

#[test]
fn converge_faulty_network() {
    run_many(
        "converge_faulty_network",
        0,
        seeds(500),
        NetConfig {
            drop: 15,
            duplicate: 15,
        },
    );
}

#[test]
fn converge_very_lossy_network() {
    run_many(
        "converge_very_lossy_network",
        0xA5A5_0000_0000,
        seeds(500) / 5,
        NetConfig {
            drop: 50,
            duplicate: 30,
        },
    );
}

/// The same comparison with the reference model, as a proptest over short action
/// sequences: when it fails, proptest shrinks it to a minimal reproduction.
mod shrinking {
    use chorus_doc::{Doc, VersionVector};
    use proptest::prelude::*;

    use crate::reference::{Op, RefDoc};
    use crate::util::{FIELD, rid, text, vv_map};

    #[derive(Debug, Clone)]
    enum Action {
        Insert {
            who: usize,
            pos: usize,
            s: String,
        },
        Delete {
            who: usize,
            pos: usize,
            len: usize,
        },
        /// An insert in a transaction that is dropped uncommitted.
        RolledBack {
            who: usize,
            pos: usize,
        },
        Sync {
            from: usize,
            to: usize,
        },
        /// Puts `from`'s delta for `to` (since what `to` has now) in flight; `full` sends
        /// the whole state instead.
        Send {
            from: usize,
            to: usize,
            full: bool,
        },
        /// Delivers the in-flight message `k` (modulo their number); it stays in flight,
        /// so it may be delivered again, late and out of order.
        Deliver {
            k: usize,
        },
    }

    fn action() -> impl Strategy<Value = Action> {
        prop_oneof![
            4 => (0..3usize, any::<usize>(), "[ab😀中]{1,3}")
                .prop_map(|(who, pos, s)| Action::Insert { who, pos, s }),
            2 => (0..3usize, any::<usize>(), 1..4usize)
                .prop_map(|(who, pos, len)| Action::Delete { who, pos, len }),
            1 => (0..3usize, any::<usize>()).prop_map(|(who, pos)| Action::RolledBack { who, pos }),
            2 => (0..3usize, 0..3usize).prop_map(|(from, to)| Action::Sync { from, to }),
            2 => (0..3usize, 0..3usize, any::<bool>())
                .prop_map(|(from, to, full)| Action::Send { from, to, full }),
            2 => any::<usize>().prop_map(|k| Action::Deliver { k }),
        ]
    }

    fn sync(docs: &mut [Doc], models: &mut [RefDoc], from: usize, to: usize) {
        let delta = docs[from].encode_since(docs[to].version());
        let ops = models[from].ops_since(&vv_map(docs[to].version()));
        docs[to].apply_update(&delta).expect("delta applies");
        models[to].apply(&ops);
    }

    fn run(actions: &[Action]) -> Result<(), TestCaseError> {
        let mut docs: Vec<Doc> = (1..=3).map(|k| Doc::new(rid(k))).collect();
        let mut models: Vec<RefDoc> = (1..=3).map(RefDoc::new).collect();
        let mut in_flight: Vec<(usize, Vec<u8>, Vec<Op>)> = Vec::new();
        let mut assumed = vec![vec![VersionVector::new(); 3]; 3];
        for a in actions {
            let touched = match a {
                Action::Insert { who, pos, s } => {
                    let pos = pos % (models[*who].len() + 1);
                    let mut tx = docs[*who].transact();
                    tx.text(FIELD).insert(pos, s).unwrap();
                    tx.commit();
                    models[*who].insert(pos, s);
                    *who
                }
                Action::Delete { who, pos, len } => {
                    let n = models[*who].len();
                    if n == 0 {
                        continue;
                    }
                    let pos = pos % n;
                    let len = (*len).min(n - pos);
                    let mut tx = docs[*who].transact();
                    tx.text(FIELD).delete(pos, len).unwrap();
                    tx.commit();
                    models[*who].delete(pos, len);
                    *who
                }
                Action::RolledBack { who, pos } => {
                    let pos = pos % (models[*who].len() + 1);
                    let mut tx = docs[*who].transact();
                    tx.text(FIELD).insert(pos, "r").unwrap();
                    drop(tx);
                    *who
                }
                Action::Sync { from, to } if from != to => {
                    sync(&mut docs, &mut models, *from, *to);
                    *to
                }
                Action::Send { from, to, full } if from != to => {
                    // Like a real sender: what it sent before is assumed delivered, so
                    // a message lost or delivered late leaves a gap.
                    let since = if *full {
                        VersionVector::new()
                    } else {
                        let mut v = docs[*to].version().clone();
                        v.merge(&assumed[*from][*to]);
                        v
                    };
                    let bytes = if *full {
                        docs[*from].encode()
                    } else {
                        docs[*from].encode_since(&since)
                    };
                    assumed[*from][*to].merge(docs[*from].version());
                    in_flight.push((*to, bytes, models[*from].ops_since(&vv_map(&since))));
                    continue;
                }
                Action::Deliver { k } if !in_flight.is_empty() => {
                    let (to, bytes, ops) = &in_flight[k % in_flight.len()];
                    docs[*to]
                        .apply_update(bytes)
                        .expect("a genuine update applies");
                    models[*to].apply(ops);
                    *to
                }
                Action::Sync { .. } | Action::Send { .. } | Action::Deliver { .. } => continue,
            };
            // Texts must agree whenever both have applied the same ops.
            if vv_map(docs[touched].version()) == *models[touched].version() {
                prop_assert_eq!(
                    text(&docs[touched]),
                    models[touched].text(),
                    "replica {}",
                    touched
                );
            }
            prop_assert!(
                docs[touched].check().is_ok(),
                "check() on replica {}",
                touched
            );
        }
        for _ in 0..2 {
            for from in 0..3 {
                for to in 0..3 {
                    if from != to {
                        sync(&mut docs, &mut models, from, to);
                    }
                }
            }
        }
        for k in 0..3 {
            prop_assert_eq!(text(&docs[k]), models[k].text(), "replica {} at the end", k);
            prop_assert_eq!(text(&docs[k]), text(&docs[0]));
            prop_assert_eq!(docs[k].version(), docs[0].version());
            let bytes = docs[k].encode();
            let again = Doc::decode(&bytes, docs[k].replica_id()).expect("own state decodes");
            prop_assert!(
                again.encode() == bytes,
                "decode(encode(d)).encode() differs from d.encode() on replica {}",
                k
            );
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn small_histories_match_the_reference(actions in prop::collection::vec(action(), 1..40)) {
            run(&actions)?;
        }
    }
}
