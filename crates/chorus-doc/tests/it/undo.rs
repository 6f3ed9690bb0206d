//! The undo manager: own changes only, originals restored (never copies), and
//! convergence of undo and redo interleaved with remote edits.

use chorus_doc::{Doc, MapValue, ReplicaId, Rule, UndoManager, Value};

fn sync(a: &mut Doc, b: &mut Doc) {
    let ab = a.encode_since(b.version());
    let ba = b.encode_since(a.version());
    b.apply_update(&ab).unwrap();
    a.apply_update(&ba).unwrap();
}

fn text(d: &Doc) -> String {
    d.text("t").to_string()
}

/// Runs `f` in a transaction on `d` and records it with `u` at `now`.
fn edit(
    d: &mut Doc,
    u: &mut UndoManager,
    now: u64,
    f: impl FnOnce(&mut chorus_doc::Transaction<'_>),
) {
    let mut tx = d.transact();
    f(&mut tx);
    let c = tx.commit();
    u.record(d, c.as_ref(), now);
}

#[test]
fn undo_and_redo_text() {
    let mut a = Doc::new(ReplicaId::from_u128(1));
    let mut u = UndoManager::new(0);
    edit(&mut a, &mut u, 0, |tx| {
        tx.text("t").insert(0, "hello").unwrap()
    });
    edit(&mut a, &mut u, 1000, |tx| {
        tx.text("t").delete(1, 3).unwrap()
    });
    assert_eq!(text(&a), "ho");
    assert!(u.undo(&mut a, 2000).unwrap());
    assert_eq!(text(&a), "hello");
    assert!(u.undo(&mut a, 2000).unwrap());
    assert_eq!(text(&a), "");
    assert!(!u.undo(&mut a, 2000).unwrap());
    assert!(u.redo(&mut a, 3000).unwrap());
    assert_eq!(text(&a), "hello");
    assert!(u.redo(&mut a, 3000).unwrap());
    assert_eq!(text(&a), "ho");
    assert!(!u.redo(&mut a, 3000).unwrap());
    a.check().unwrap();
}

#[test]
fn capture_interval_groups_changes() {
    let mut a = Doc::new(ReplicaId::from_u128(1));
    let mut u = UndoManager::new(500);
    for (i, c) in "abc".chars().enumerate() {
        edit(&mut a, &mut u, 100 * i as u64, |tx| {
            tx.text("t").insert(i, &c.to_string()).unwrap()
        });
    }
    edit(&mut a, &mut u, 5_000, |tx| {
        tx.text("t").insert(3, "d").unwrap()
    });
    u.undo(&mut a, 6_000).unwrap();
    assert_eq!(text(&a), "abc");
    u.undo(&mut a, 6_000).unwrap();
    assert_eq!(text(&a), "");
}

#[test]
fn only_own_changes_are_undone() {
    let mut a = Doc::new(ReplicaId::from_u128(1));
    let mut b = Doc::new(ReplicaId::from_u128(2));
    let mut ua = UndoManager::new(0);
    edit(&mut a, &mut ua, 0, |tx| {
        tx.text("t").insert(0, "aaa").unwrap()
    });
    sync(&mut a, &mut b);
    let mut tx = b.transact();
    tx.text("t").insert(3, "bbb").unwrap();
    tx.commit();
    sync(&mut a, &mut b);
    ua.undo(&mut a, 10).unwrap();
    sync(&mut a, &mut b);
    assert_eq!(text(&a), "bbb");
    assert_eq!(text(&b), "bbb");
}

#[test]
fn concurrent_overlapping_deletes_both_undone_restore_each_char_once() {
    let mut a = Doc::new(ReplicaId::from_u128(1));
    let mut b = Doc::new(ReplicaId::from_u128(2));
    let (mut ua, mut ub) = (UndoManager::new(0), UndoManager::new(0));
    let mut tx = a.transact();
    tx.text("t").insert(0, "0123456789").unwrap();
    tx.commit();
    sync(&mut a, &mut b);
    edit(&mut a, &mut ua, 0, |tx| tx.text("t").delete(2, 5).unwrap()); // 23456
    edit(&mut b, &mut ub, 0, |tx| tx.text("t").delete(4, 5).unwrap()); // 45678
    sync(&mut a, &mut b);
    assert_eq!(text(&a), "019");
    // One undo alone: the overlap stays deleted by the other replica's delete.
    ua.undo(&mut a, 1).unwrap();
    sync(&mut a, &mut b);
    assert_eq!(text(&a), "01239");
    assert_eq!(text(&b), "01239");
    ub.undo(&mut b, 1).unwrap();
    sync(&mut a, &mut b);
    assert_eq!(text(&a), "0123456789");
    assert_eq!(text(&b), "0123456789");
    a.check().unwrap();
    b.check().unwrap();
    // The same, with both undos concurrent.
    edit(&mut a, &mut ua, 100, |tx| {
        tx.text("t").delete(2, 5).unwrap()
    });
    edit(&mut b, &mut ub, 100, |tx| {
        tx.text("t").delete(4, 5).unwrap()
    });
    sync(&mut a, &mut b);
    ua.undo(&mut a, 200).unwrap();
    ub.undo(&mut b, 200).unwrap();
    sync(&mut a, &mut b);
    assert_eq!(text(&a), "0123456789");
    assert_eq!(text(&b), "0123456789");
    let c = Doc::decode(&a.encode(), ReplicaId::from_u128(3)).unwrap();
    assert_eq!(text(&c), "0123456789");
    c.check().unwrap();
}

#[test]
fn undone_insertion_never_comes_back() {
    let mut a = Doc::new(ReplicaId::from_u128(1));
    let mut b = Doc::new(ReplicaId::from_u128(2));
    let (mut ua, mut ub) = (UndoManager::new(0), UndoManager::new(0));
    edit(&mut a, &mut ua, 0, |tx| {
        tx.text("t").insert(0, "xyz").unwrap()
    });
    sync(&mut a, &mut b);
    edit(&mut b, &mut ub, 0, |tx| tx.text("t").delete(1, 1).unwrap()); // y
    sync(&mut a, &mut b);
    ua.undo(&mut a, 1).unwrap(); // removes x, y (already gone) and z
    sync(&mut a, &mut b);
    assert_eq!(text(&a), "");
    ub.undo(&mut b, 1).unwrap(); // would bring back y
    sync(&mut a, &mut b);
    assert_eq!(text(&a), "");
    assert_eq!(text(&b), "");
    // Redo of the insertion brings all three back, once.
    ua.redo(&mut a, 2).unwrap();
    sync(&mut a, &mut b);
    assert_eq!(text(&a), "xyz");
    assert_eq!(text(&b), "xyz");
}

#[test]
fn undo_across_types() {
    let mut a = Doc::new(ReplicaId::from_u128(1));
    let mut b = Doc::new(ReplicaId::from_u128(2));
    let mut u = UndoManager::new(0);
    edit(&mut a, &mut u, 0, |tx| {
        tx.counter("c").add(5).unwrap();
        tx.register("r", Rule::Lww).set("first", 10).unwrap();
        tx.map("m").set("k", 1).unwrap();
        tx.list("l").push("x").unwrap();
    });
    edit(&mut a, &mut u, 1000, |tx| {
        tx.counter("c").add(2).unwrap();
        tx.register("r", Rule::Lww).set("second", 20).unwrap();
        tx.map("m").set("k", 2).unwrap();
        tx.map("m").delete("k").unwrap();
        tx.map("m").map("sub").unwrap().set("z", true).unwrap();
        tx.list("l").delete(0, 1).unwrap();
    });
    sync(&mut a, &mut b);
    assert!(u.undo(&mut a, 2000).unwrap());
    sync(&mut a, &mut b);
    for d in [&a, &b] {
        assert_eq!(d.counter("c").value(), 5);
        assert_eq!(
            d.register("r", Rule::Lww).value(),
            Some(Value::from("first"))
        );
        assert_eq!(d.map("m").get("k"), Some(MapValue::Value(Value::Int(1))));
        assert_eq!(d.map("m").get("sub"), None);
        assert_eq!(d.list("l").to_vec(), vec![Value::from("x")]);
    }
    assert!(u.undo(&mut a, 3000).unwrap());
    sync(&mut a, &mut b);
    for d in [&a, &b] {
        assert_eq!(d.counter("c").value(), 0);
        assert_eq!(d.register("r", Rule::Lww).value(), None);
        assert_eq!(d.map("m").get("k"), None);
        assert!(d.list("l").is_empty());
        d.check().unwrap();
    }
    assert!(u.redo(&mut a, 4000).unwrap());
    assert!(u.redo(&mut a, 4000).unwrap());
    sync(&mut a, &mut b);
    assert_eq!(a.to_json(), b.to_json());
    assert_eq!(b.counter("c").value(), 7);
    assert_eq!(
        b.register("r", Rule::Lww).value(),
        Some(Value::from("second"))
    );
    assert_eq!(b.map("m").get("k"), None);
    assert!(b.map("m").map("sub").len() == 1);
    let c = Doc::decode(&b.encode(), ReplicaId::from_u128(3)).unwrap();
    assert_eq!(c.to_json(), b.to_json());
}

#[test]
fn undo_of_an_overwritten_write_leaves_it_alone() {
    let mut a = Doc::new(ReplicaId::from_u128(1));
    let mut b = Doc::new(ReplicaId::from_u128(2));
    let mut u = UndoManager::new(0);
    edit(&mut a, &mut u, 0, |tx| {
        tx.register("r", Rule::Lww).set("mine", 10).unwrap()
    });
    sync(&mut a, &mut b);
    let mut tx = b.transact();
    tx.register("r", Rule::Lww).set("theirs", 20).unwrap();
    tx.commit();
    sync(&mut a, &mut b);
    assert!(!u.undo(&mut a, 30).unwrap());
    assert_eq!(
        a.register("r", Rule::Lww).value(),
        Some(Value::from("theirs"))
    );
}

/// A tiny deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x % n.max(1) as u64) as usize
    }
}

#[test]
fn random_undo_redo_with_remote_edits_converges() {
    let seeds: u64 = std::env::var("CHORUS_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(150);
    for seed in 0..seeds {
        let r = std::panic::catch_unwind(|| random_run(seed));
        if let Err(e) = r {
            panic!("undo seed {seed} failed: {e:?}");
        }
    }
}

fn random_run(seed: u64) {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let n = 3;
    let mut docs: Vec<Doc> = (0..n)
        .map(|i| Doc::new(ReplicaId::from_u128(100 + i as u128 + seed as u128 * 7)))
        .collect();
    let mut undos: Vec<UndoManager> = (0..n).map(|_| UndoManager::new(50)).collect();
    for step in 0..80u64 {
        let now = step * 40;
        let i = rng.below(n);
        match rng.below(10) {
            0..=3 => {
                let d = &mut docs[i];
                let mut tx = d.transact();
                let len = tx.text("t").len();
                if len > 0 && rng.below(3) == 0 {
                    let p = rng.below(len);
                    let k = 1 + rng.below((len - p).min(5));
                    tx.text("t").delete(p, k).unwrap();
                } else {
                    let s = ["ab", "xyz", "😀", "q"][rng.below(4)];
                    tx.text("t").insert(rng.below(len + 1), s).unwrap();
                }
                if rng.below(3) == 0 {
                    tx.counter("c").add(rng.below(5) as i64 - 2).unwrap();
                }
                if rng.below(3) == 0 {
                    tx.map("m")
                        .set(["a", "b"][rng.below(2)], rng.below(9) as i64)
                        .unwrap();
                }
                let c = tx.commit();
                undos[i].record(d, c.as_ref(), now);
            }
            4 | 5 => {
                undos[i].undo(&mut docs[i], now).unwrap();
            }
            6 => {
                undos[i].redo(&mut docs[i], now).unwrap();
            }
            _ => {
                let j = (i + 1 + rng.below(n - 1)) % n;
                let (a, b) = if i < j {
                    let (x, y) = docs.split_at_mut(j);
                    (&mut x[i], &mut y[0])
                } else {
                    let (x, y) = docs.split_at_mut(i);
                    (&mut y[0], &mut x[j])
                };
                sync(a, b);
            }
        }
        docs[i].check().unwrap();
    }
    for _ in 0..2 {
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    let u = docs[j].encode_since(docs[i].version());
                    docs[i].apply_update(&u).unwrap();
                }
            }
        }
    }
    for d in &docs {
        d.check().unwrap();
        assert_eq!(d.to_json(), docs[0].to_json());
        let back = Doc::decode(&d.encode(), ReplicaId::from_u128(9)).unwrap();
        back.check().unwrap();
        assert_eq!(back.to_json(), d.to_json());
        assert_eq!(back.encode(), d.encode());
    }
}
