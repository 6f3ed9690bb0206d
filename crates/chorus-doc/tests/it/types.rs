//! Scenarios for the container types: counters, registers (last writer wins,
//! multi-value, merge), maps, lists, root names used with several kinds; the JSON
//! view; encoding round trips, refused updates and rolled-back transactions over
//! documents that hold every type.

use std::sync::Arc;

use chorus_doc::{Doc, Kind, MapValue, MergeRule, OpId, ReplicaId, Rule, Transaction, Value};
use serde_json::json;

// ------------------------------------------------------------------ helpers

fn doc(n: u128) -> Doc {
    Doc::new(ReplicaId::from_u128(n))
}

fn rid(n: u128) -> ReplicaId {
    ReplicaId::from_u128(n)
}

/// Runs `f` in one transaction and commits it.
fn edit(d: &mut Doc, f: impl FnOnce(&mut Transaction<'_>)) {
    let mut tx = d.transact();
    f(&mut tx);
    tx.commit().expect("the transaction made operations");
}

/// What `to` lacks from `from`, as one update.
fn delta(from: &Doc, to: &Doc) -> Vec<u8> {
    from.encode_since(to.version())
}

/// Makes `to` include everything `from` has.
fn pull(to: &mut Doc, from: &Doc) {
    let d = delta(from, to);
    to.apply_update(&d).expect("a genuine update applies");
    to.check().expect("invariants hold after apply");
}

/// Brings every doc up to date with every other, then checks they agree.
fn sync_all(docs: &mut [&mut Doc]) {
    for _ in 0..2 {
        for i in 0..docs.len() {
            for j in 0..docs.len() {
                if i != j {
                    let d = delta(docs[j], docs[i]);
                    docs[i].apply_update(&d).expect("a genuine update applies");
                }
            }
        }
    }
    assert_converged(docs);
}

fn assert_converged(docs: &[&mut Doc]) {
    for (i, d) in docs.iter().enumerate() {
        d.check()
            .unwrap_or_else(|e| panic!("replica {i} check(): {e}"));
        assert_eq!(d.pending_len(), 0, "replica {i} has pending ops");
        assert_eq!(d.version(), docs[0].version(), "replica {i} version");
        assert_eq!(d.to_json(), docs[0].to_json(), "replica {i} JSON");
    }
}

/// Everything observable that a refused update or a rolled-back transaction must
/// leave as it was.
#[derive(Debug, PartialEq)]
struct State {
    encoded: Vec<u8>,
    json: serde_json::Value,
    version: chorus_doc::VersionVector,
    pending: usize,
    max_lamport: u64,
}

fn state(d: &Doc) -> State {
    State {
        encoded: d.encode(),
        json: d.to_json(),
        version: d.version().clone(),
        pending: d.pending_len(),
        max_lamport: d.max_lamport(),
    }
}

/// All orderings of `0..n`.
fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![Vec::new()];
    }
    let mut out = Vec::new();
    for p in permutations(n - 1) {
        for at in 0..=p.len() {
            let mut q = p.clone();
            q.insert(at, n - 1);
            out.push(q);
        }
    }
    out
}

/// A merge rule written by an application: the longest string wins, ties broken by
/// the greater string (so that merging is commutative, associative and idempotent).
#[derive(Debug)]
struct Longest;

impl MergeRule for Longest {
    fn name(&self) -> &str {
        "longest"
    }

    fn canonical(&self, v: Value) -> Value {
        match v {
            Value::Str(_) => v,
            // Only strings are in the domain; anything else counts as "".
            _ => Value::Str(String::new()),
        }
    }

    fn merge(&self, a: &Value, b: &Value) -> Value {
        let key = |v: &Value| {
            let s = v.as_str().unwrap_or("").to_owned();
            (s.chars().count(), s)
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

/// A document whose history holds every type, written by two replicas (ids 1 and 2),
/// with concurrent edits, deletes and conflicts; synced.
fn every_type() -> (Doc, Doc) {
    let mut a = doc(1);
    let mut b = doc(2);
    a.add_merge_rule(Arc::new(Longest)).unwrap();
    b.add_merge_rule(Arc::new(Longest)).unwrap();
    edit(&mut a, |tx| {
        tx.text("text").insert(0, "Hello, wörld 😀").unwrap();
        tx.counter("count").add(40).unwrap();
        tx.register("title", Rule::Lww).set("draft", 1_000).unwrap();
        tx.register("status", Rule::MultiValue)
            .set("open", 1_000)
            .unwrap();
        tx.register("high", Rule::merge("max"))
            .set(7, 1_000)
            .unwrap();
        tx.register("low", Rule::merge("min"))
            .set(7, 1_000)
            .unwrap();
        tx.register("tags", Rule::merge("union"))
            .set("a", 1_000)
            .unwrap();
        tx.register("name", longest()).set("ann", 1_000).unwrap();
        let mut m = tx.map("meta");
        m.set("author", "ann").unwrap();
        m.set("bytes", vec![1u8, 2, 3]).unwrap();
        m.set("pi", 3.25).unwrap();
        m.set("flag", true).unwrap();
        m.set("nothing", Value::Null).unwrap();
        m.set("nested", vec![Value::from(1), Value::from("x")])
            .unwrap();
        m.map("inner")
            .unwrap()
            .text("note")
            .unwrap()
            .insert(0, "inner note")
            .unwrap();
        m.counter("views").unwrap().add(3).unwrap();
        m.register("owner", Rule::Lww)
            .unwrap()
            .set("ann", 1_000)
            .unwrap();
        m.list("items").unwrap().push(1).unwrap();
        tx.list("list")
            .insert_many(0, [Value::from(1), Value::from("two"), Value::Null])
            .unwrap();
    });
    pull(&mut b, &a);
    edit(&mut a, |tx| {
        tx.text("text").delete(5, 7).unwrap();
        tx.counter("count").add(-8).unwrap();
        tx.register("status", Rule::MultiValue)
            .set("closed", 2_000)
            .unwrap();
        tx.map("meta").delete("flag").unwrap();
        tx.list("list").delete(1, 1).unwrap();
    });
    edit(&mut b, |tx| {
        tx.text("text").insert(0, ">> ").unwrap();
        tx.counter("count").add(10).unwrap();
        tx.register("title", Rule::Lww).set("final", 2_000).unwrap();
        tx.register("status", Rule::MultiValue)
            .set("review", 2_000)
            .unwrap();
        tx.register("high", Rule::merge("max"))
            .set(9, 2_000)
            .unwrap();
        tx.register("low", Rule::merge("min"))
            .set(-1, 2_000)
            .unwrap();
        tx.register("tags", Rule::merge("union"))
            .set(vec![Value::from("b"), Value::from("a")], 2_000)
            .unwrap();
        tx.register("name", longest()).set("bobby", 2_000).unwrap();
        let mut m = tx.map("meta");
        m.set("author", "bob").unwrap();
        m.map("inner").unwrap().set("k", 1).unwrap();
        m.counter("views").unwrap().add(2).unwrap();
        tx.list("list").push(4).unwrap();
    });
    sync_all(&mut [&mut a, &mut b]);
    (a, b)
}

// ------------------------------------------------------------------ counters

#[test]
fn counter_sum_is_the_same_whatever_the_delivery_order() {
    // Four updates from three replicas, the second of replica 1 depending on its first.
    let mut r1 = doc(1);
    let mut r2 = doc(2);
    let mut r3 = doc(3);
    let mut updates = Vec::new();
    for (who, delta) in [(1, 5i64), (1, -12), (2, 100), (3, -1)] {
        let d = match who {
            1 => &mut r1,
            2 => &mut r2,
            _ => &mut r3,
        };
        let before = d.version().clone();
        edit(d, |tx| tx.counter("n").add(delta).unwrap());
        updates.push(d.encode_since(&before));
    }
    let orders = permutations(updates.len());
    assert_eq!(orders.len(), 24);
    let mut first_state = None;
    for order in orders {
        let mut d = doc(9);
        for &i in &order {
            d.apply_update(&updates[i]).unwrap();
            d.check().unwrap();
        }
        assert_eq!(d.pending_len(), 0, "order {order:?}");
        assert_eq!(d.counter("n").value(), 92, "order {order:?}");
        assert_eq!(d.to_json(), json!({ "n": 92 }), "order {order:?}");
        // Same ops, so the same state whatever the order.
        let s = (d.version().clone(), d.to_json());
        match &first_state {
            None => first_state = Some(s),
            Some(f) => assert_eq!(&s, f, "order {order:?}"),
        }
    }
}

#[test]
fn counter_counts_a_duplicate_delivery_once() {
    let mut a = doc(1);
    let mut b = doc(2);
    edit(&mut a, |tx| tx.counter("n").add(7).unwrap());
    let first = a.encode();
    edit(&mut a, |tx| {
        tx.counter("n").add(3).unwrap();
        tx.counter("n").add(1).unwrap();
    });
    let second = a.encode_since(b.version()); // all three adds

    let r = b.apply_update(&first).unwrap();
    assert_eq!((r.applied, r.duplicate), (1, 0));
    let r = b.apply_update(&first).unwrap();
    assert_eq!((r.applied, r.duplicate), (0, 1));
    assert_eq!(b.counter("n").value(), 7);
    // Overlapping update: the first add again, then the two new ones.
    let r = b.apply_update(&second).unwrap();
    assert_eq!((r.applied, r.duplicate), (2, 1));
    let r = b.apply_update(&second).unwrap();
    assert_eq!((r.applied, r.duplicate), (0, 3));
    assert_eq!(b.counter("n").value(), 11);
    b.check().unwrap();

    // A relay that forwards what it got: the same ops by another path.
    let mut c = doc(3);
    pull(&mut c, &b);
    c.apply_update(&first).unwrap();
    c.apply_update(&second).unwrap();
    assert_eq!(c.counter("n").value(), 11);
    assert_eq!(c.to_json(), a.to_json());
}

#[test]
fn counter_overflow_wraps_alike_in_every_delivery_order() {
    let mut base = doc(1);
    edit(&mut base, |tx| tx.counter("n").add(i64::MAX).unwrap());
    let mut up = doc(2);
    let mut down = doc(3);
    pull(&mut up, &base);
    pull(&mut down, &base);
    edit(&mut up, |tx| tx.counter("n").add(1).unwrap());
    edit(&mut down, |tx| tx.counter("n").add(-5).unwrap());
    assert_eq!(up.counter("n").value(), i64::MIN, "MAX + 1 wraps");
    assert_eq!(down.counter("n").value(), i64::MAX - 5);

    let plus_one = up.encode_since(base.version());
    let minus_five = down.encode_since(base.version());
    let mut x = base.clone();
    x.apply_update(&plus_one).unwrap();
    assert_eq!(x.counter("n").value(), i64::MIN);
    x.apply_update(&minus_five).unwrap();
    let mut y = base.clone();
    y.apply_update(&minus_five).unwrap();
    y.apply_update(&plus_one).unwrap();
    // Only the full state, all at once, on a fresh replica.
    let mut z = doc(4);
    pull(&mut z, &x);

    for d in [&x, &y, &z] {
        d.check().unwrap();
        assert_eq!(d.counter("n").value(), i64::MAX - 4);
        assert_eq!(d.to_json(), json!({ "n": i64::MAX - 4 }));
    }
    sync_all(&mut [&mut up, &mut down, &mut base]);
    assert_eq!(up.counter("n").value(), i64::MAX - 4);

    // Wrapping below MIN, too, and back.
    edit(&mut up, |tx| {
        tx.counter("n").add(i64::MIN).unwrap();
        tx.counter("n").add(i64::MIN).unwrap();
    });
    assert_eq!(up.counter("n").value(), i64::MAX - 4);
}

// ------------------------------------------------------------------ registers

#[test]
fn lww_equal_physical_times_resolve_by_replica_id() {
    for (lo_first, label) in [(true, "lower id applied first"), (false, "higher first")] {
        let mut lo = doc(10);
        let mut hi = doc(20);
        edit(&mut lo, |tx| {
            tx.register("r", Rule::Lww).set("lo", 5_000).unwrap()
        });
        edit(&mut hi, |tx| {
            tx.register("r", Rule::Lww).set("hi", 5_000).unwrap()
        });
        let mut obs = doc(30);
        if lo_first {
            pull(&mut obs, &lo);
            pull(&mut obs, &hi);
        } else {
            pull(&mut obs, &hi);
            pull(&mut obs, &lo);
        }
        sync_all(&mut [&mut lo, &mut hi, &mut obs]);
        for d in [&lo, &hi, &obs] {
            let r = d.register("r", Rule::Lww);
            assert_eq!(r.value(), Some(Value::from("hi")), "{label}");
            let ws = r.writes();
            assert_eq!(ws.len(), 2, "{label}: concurrent writes are both held");
            assert_eq!(ws[0].replica, rid(10));
            assert_eq!(ws[1].replica, rid(20), "{label}: the higher id sorts last");
            assert!(ws.iter().all(|w| w.time_ms == 5_000));
            assert_eq!(d.to_json(), json!({ "r": "hi" }));
        }
        // A write that has seen both resolves them, whatever its replica id.
        edit(&mut lo, |tx| {
            tx.register("r", Rule::Lww).set("lo2", 5_000).unwrap()
        });
        sync_all(&mut [&mut lo, &mut hi, &mut obs]);
        let ws = hi.register("r", Rule::Lww).writes();
        assert_eq!(ws.len(), 1);
        assert_eq!(ws[0].value, Value::from("lo2"));
    }
}

#[test]
fn lww_write_that_has_seen_a_fast_clock_wins() {
    const NOW: u64 = 1_700_000_000_000;
    const TEN_MINUTES: u64 = 10 * 60 * 1000;
    let mut fast = doc(5);
    let mut slow = doc(1); // the lower id: a tie would go to `fast`
    let mut bystander = doc(3);
    edit(&mut fast, |tx| {
        tx.register("r", Rule::Lww)
            .set("from the future", NOW + TEN_MINUTES)
            .unwrap()
    });
    // Concurrent with the fast write and later in real time: loses to it.
    edit(&mut bystander, |tx| {
        tx.register("r", Rule::Lww)
            .set("concurrent", NOW + 2_000)
            .unwrap()
    });
    pull(&mut slow, &fast);
    assert_eq!(
        slow.register("r", Rule::Lww).value(),
        Some(Value::from("from the future"))
    );
    // Written a second later in real time, by a clock that is behind the fast one.
    edit(&mut slow, |tx| {
        tx.register("r", Rule::Lww)
            .set("later", NOW + 1_000)
            .unwrap()
    });
    let w = slow.register("r", Rule::Lww).writes();
    assert_eq!(w.len(), 1, "the later write supersedes what it saw");
    assert!(
        w[0].time_ms >= NOW + TEN_MINUTES,
        "the hybrid clock never goes back: {}",
        w[0].time_ms
    );
    sync_all(&mut [&mut fast, &mut slow, &mut bystander]);
    for d in [&fast, &slow, &bystander] {
        let r = d.register("r", Rule::Lww);
        assert_eq!(r.value(), Some(Value::from("later")));
        let ws = r.writes();
        assert_eq!(
            ws.iter().map(|w| w.value.clone()).collect::<Vec<_>>(),
            [Value::from("concurrent"), Value::from("later")],
            "the concurrent write is still held (and loses)"
        );
    }
    // The fast replica writes again with its own (fast) clock after seeing `later`:
    // it wins, being after everything it saw.
    edit(&mut fast, |tx| {
        tx.register("r", Rule::Lww)
            .set("fast again", NOW + 1)
            .unwrap()
    });
    sync_all(&mut [&mut fast, &mut slow, &mut bystander]);
    assert_eq!(
        bystander.register("r", Rule::Lww).value(),
        Some(Value::from("fast again"))
    );
    assert_eq!(bystander.register("r", Rule::Lww).writes().len(), 1);
}

#[test]
fn multi_value_conflict_is_shown_resolved_and_reopened() {
    let mut a = doc(1);
    let mut b = doc(2);
    let mut c = doc(3);
    let mv = || Rule::MultiValue;
    edit(&mut a, |tx| {
        tx.register("s", mv()).set("draft", 1_000).unwrap()
    });
    edit(&mut b, |tx| {
        tx.register("s", mv()).set("final", 2_000).unwrap()
    });
    sync_all(&mut [&mut a, &mut b, &mut c]);
    for d in [&a, &b, &c] {
        let r = d.register("s", mv());
        let cs = r.conflicts();
        assert_eq!(cs.len(), 2);
        assert_eq!(
            cs.iter()
                .map(|w| (w.value.clone(), w.replica, w.time_ms))
                .collect::<Vec<_>>(),
            [
                (Value::from("draft"), rid(1), 1_000),
                (Value::from("final"), rid(2), 2_000)
            ]
        );
        assert_eq!(cs[0].id, OpId::new(rid(1), 0));
        assert_eq!(cs[1].id, OpId::new(rid(2), 0));
        assert_eq!(r.value(), Some(Value::from("final")), "the last by clock");
        assert_eq!(
            d.to_json(),
            json!({ "s": { "conflict": ["draft", "final"] } })
        );
    }

    // Two concurrent writes of the same value are not a conflict.
    let mut p = doc(7);
    let mut q = doc(8);
    edit(&mut p, |tx| tx.register("s", mv()).set("same", 1).unwrap());
    edit(&mut q, |tx| tx.register("s", mv()).set("same", 2).unwrap());
    sync_all(&mut [&mut p, &mut q]);
    assert_eq!(p.register("s", mv()).writes().len(), 2);
    assert!(p.register("s", mv()).conflicts().is_empty());
    assert_eq!(p.to_json(), json!({ "s": "same" }));

    // `a` resolves the conflict; everybody sees the resolution only.
    edit(&mut a, |tx| {
        tx.register("s", mv()).set("merged", 500).unwrap()
    });
    sync_all(&mut [&mut a, &mut b, &mut c]);
    for d in [&a, &b, &c] {
        let r = d.register("s", mv());
        assert!(r.conflicts().is_empty());
        assert_eq!(r.writes().len(), 1);
        assert_eq!(r.value(), Some(Value::from("merged")));
        assert_eq!(d.to_json(), json!({ "s": "merged" }));
    }

    // A new conflict: `b` resolves it again while `c`, who had seen the conflict but
    // not the resolution, writes concurrently.
    edit(&mut a, |tx| tx.register("s", mv()).set("x", 3_000).unwrap());
    edit(&mut b, |tx| tx.register("s", mv()).set("y", 3_000).unwrap());
    sync_all(&mut [&mut a, &mut b, &mut c]);
    assert_eq!(c.register("s", mv()).conflicts().len(), 2);
    edit(&mut b, |tx| {
        tx.register("s", mv()).set("resolved", 4_000).unwrap()
    });
    edit(&mut c, |tx| {
        tx.register("s", mv()).set("other", 4_000).unwrap()
    });
    sync_all(&mut [&mut a, &mut b, &mut c]);
    for d in [&a, &b, &c] {
        let cs = d.register("s", mv()).conflicts();
        assert_eq!(
            cs.iter()
                .map(|w| (w.value.clone(), w.replica))
                .collect::<Vec<_>>(),
            [
                (Value::from("resolved"), rid(2)),
                (Value::from("other"), rid(3))
            ],
            "the resolution and the write concurrent with it, nothing older"
        );
        assert_eq!(
            d.to_json(),
            json!({ "s": { "conflict": ["resolved", "other"] } })
        );
    }
}

#[test]
fn merge_registers_max_min_union() {
    let mut a = doc(1);
    let mut b = doc(2);
    let mut c = doc(3);
    for (d, vals) in [(&mut a, [5, 3]), (&mut b, [7, -2]), (&mut c, [1, 5])] {
        for v in vals {
            edit(d, |tx| {
                tx.register("max", Rule::merge("max")).set(v, 0).unwrap();
                tx.register("min", Rule::merge("min")).set(v, 0).unwrap();
                tx.register("set", Rule::merge("union")).set(v, 0).unwrap();
            });
        }
    }
    // Locally, each sees only its own writes.
    assert_eq!(
        b.register("max", Rule::merge("max")).value(),
        Some(7.into())
    );
    assert_eq!(
        a.register("min", Rule::merge("min")).value(),
        Some(3.into())
    );
    // Union adds every element of a written array.
    edit(&mut c, |tx| {
        tx.register("set", Rule::merge("union"))
            .set(vec![Value::from("z"), Value::from(5), Value::from("z")], 0)
            .unwrap()
    });
    sync_all(&mut [&mut a, &mut b, &mut c]);
    for d in [&a, &b, &c] {
        assert_eq!(
            d.register("max", Rule::merge("max")).value(),
            Some(7.into())
        );
        assert_eq!(
            d.register("min", Rule::merge("min")).value(),
            Some((-2).into())
        );
        assert_eq!(
            d.register("set", Rule::merge("union")).value(),
            Some(Value::Array(
                [-2, 1, 3, 5, 7]
                    .into_iter()
                    .map(Value::from)
                    .chain([Value::from("z")])
                    .collect()
            ))
        );
        // Merge registers hold no separate writes, so never a conflict.
        assert!(d.register("max", Rule::merge("max")).writes().is_empty());
        assert!(d.register("max", Rule::merge("max")).conflicts().is_empty());
        assert_eq!(
            d.to_json(),
            json!({ "max": 7, "min": -2, "set": [-2, 1, 3, 5, 7, "z"] })
        );
    }
    // A smaller write later changes nothing; the registers only grow (or shrink).
    edit(&mut a, |tx| {
        tx.register("max", Rule::merge("max")).set(6, 0).unwrap();
        tx.register("min", Rule::merge("min")).set(0, 0).unwrap();
        tx.register("set", Rule::merge("union")).set(1, 0).unwrap();
    });
    sync_all(&mut [&mut a, &mut b, &mut c]);
    assert_eq!(
        c.to_json(),
        json!({ "max": 7, "min": -2, "set": [-2, 1, 3, 5, 7, "z"] })
    );
    // Same name, another rule: another field, empty here.
    assert_eq!(c.register("max", Rule::merge("min")).value(), None);
    assert_eq!(c.register("max", Rule::Lww).value(), None);
}

#[test]
fn custom_merge_rule_including_updates_that_arrive_before_it() {
    let mut a = doc(1);
    let mut b = doc(2);
    let mut late = doc(3);
    a.add_merge_rule(Arc::new(Longest)).unwrap();
    b.add_merge_rule(Arc::new(Longest)).unwrap();
    edit(&mut a, |tx| {
        tx.register("name", longest()).set("ann", 1).unwrap()
    });
    edit(&mut b, |tx| {
        tx.register("name", longest()).set("bob", 1).unwrap();
        tx.register("name", longest()).set("al", 1).unwrap();
    });
    assert_eq!(b.register("name", longest()).value(), Some("bob".into()));

    // `late` does not know the rule yet: it keeps the writes, shows no value, and
    // even writes itself.
    pull(&mut late, &a);
    pull(&mut late, &b);
    edit(&mut late, |tx| {
        tx.register("name", longest()).set("cy", 1).unwrap()
    });
    late.check().unwrap();
    assert_eq!(late.register("name", longest()).value(), None);
    assert_eq!(late.to_json(), json!({ "name": null }));
    // Another replica relays from `late`; it does not know the rule either.
    let mut relay = Doc::decode(&late.encode(), rid(4)).unwrap();
    assert_eq!(relay.register("name", longest()).value(), None);

    late.add_merge_rule(Arc::new(Longest)).unwrap();
    late.check().unwrap();
    assert_eq!(late.register("name", longest()).value(), Some("bob".into()));

    edit(&mut a, |tx| {
        tx.register("name", longest()).set("annabel", 1).unwrap()
    });
    pull(&mut late, &a);
    assert_eq!(
        late.register("name", longest()).value(),
        Some("annabel".into())
    );
    pull(&mut relay, &a);
    relay.add_merge_rule(Arc::new(Longest)).unwrap();
    sync_all(&mut [&mut a, &mut b, &mut late, &mut relay]);
    for d in [&a, &b, &late, &relay] {
        assert_eq!(
            d.register("name", longest()).value(),
            Some("annabel".into())
        );
        assert_eq!(d.to_json(), json!({ "name": "annabel" }));
    }
    // Adding the rule twice is refused and changes nothing.
    assert!(late.add_merge_rule(Arc::new(Longest)).is_err());
    late.check().unwrap();
    assert_eq!(late.to_json(), a.to_json());
}

// ------------------------------------------------------------------ maps

#[test]
fn same_key_created_as_a_map_on_two_replicas_is_one_map() {
    let mut a = doc(1);
    let mut b = doc(2);
    edit(&mut a, |tx| {
        let mut m = tx.map("m");
        let mut child = m.map("child").unwrap();
        child.set("from_a", 1).unwrap();
        child.set("both", "a").unwrap();
    });
    edit(&mut b, |tx| {
        let mut m = tx.map("m");
        let mut child = m.map("child").unwrap();
        child.set("from_b", 2).unwrap();
        child.set("both", "b").unwrap();
    });
    sync_all(&mut [&mut a, &mut b]);
    for d in [&a, &b] {
        let m = d.map("m");
        assert_eq!(m.get("child"), Some(MapValue::Container(Kind::Map)));
        assert!(m.conflicts("child").is_empty(), "both wrote the same map");
        let child = m.map("child");
        assert_eq!(
            child.keys().collect::<Vec<_>>(),
            ["both", "from_a", "from_b"]
        );
        assert_eq!(child.get("from_a"), Some(MapValue::Value(1.into())));
        assert_eq!(child.get("from_b"), Some(MapValue::Value(2.into())));
        // Concurrent writes to one key: both kept, the higher replica shown.
        assert_eq!(child.get("both"), Some(MapValue::Value("b".into())));
        assert_eq!(child.conflicts("both").len(), 2);
        assert_eq!(
            d.to_json(),
            json!({ "m": { "child": { "both": "b", "from_a": 1, "from_b": 2 } } })
        );
    }
    // Editing the child from either side keeps going to the one map.
    edit(&mut a, |tx| {
        tx.map("m")
            .map("child")
            .unwrap()
            .set("later", true)
            .unwrap()
    });
    sync_all(&mut [&mut a, &mut b]);
    assert_eq!(b.map("m").map("child").len(), 4);
}

#[test]
fn containers_nest_three_levels_deep() {
    let mut a = doc(1);
    let mut b = doc(2);
    edit(&mut a, |tx| {
        let mut root = tx.map("doc");
        let mut section = root.map("section").unwrap();
        let mut para = section.map("para").unwrap();
        para.text("body").unwrap().insert(0, "world").unwrap();
        para.counter("likes").unwrap().add(1).unwrap();
        para.list("tags").unwrap().push("x").unwrap();
        para.register("by", Rule::Lww)
            .unwrap()
            .set("ann", 10)
            .unwrap();
        section.set("title", "Intro").unwrap();
    });
    pull(&mut b, &a);
    edit(&mut b, |tx| {
        let mut root = tx.map("doc");
        let mut section = root.map("section").unwrap();
        let mut para = section.map("para").unwrap();
        para.text("body").unwrap().insert(0, "hello ").unwrap();
        para.counter("likes").unwrap().add(2).unwrap();
        para.list("tags").unwrap().push("y").unwrap();
        para.register("by", Rule::Lww)
            .unwrap()
            .set("bob", 5)
            .unwrap();
    });
    edit(&mut a, |tx| {
        let mut root = tx.map("doc");
        let mut section = root.map("section").unwrap();
        let mut para = section.map("para").unwrap();
        para.counter("likes").unwrap().add(10).unwrap();
        para.text("body").unwrap().insert(5, "!").unwrap();
    });
    sync_all(&mut [&mut a, &mut b]);
    for d in [&a, &b] {
        let para = d.map("doc").map("section").map("para");
        assert_eq!(para.text("body").to_string(), "hello world!");
        assert_eq!(para.counter("likes").value(), 13);
        assert_eq!(para.list("tags").to_vec(), [Value::from("x"), "y".into()]);
        assert_eq!(
            para.register("by", Rule::Lww).value(),
            Some("bob".into()),
            "b's write had seen a's: it wins despite its smaller clock"
        );
        assert_eq!(para.get("body"), Some(MapValue::Container(Kind::Text)));
        assert_eq!(
            para.get("by"),
            Some(MapValue::Container(Kind::Register(Rule::Lww)))
        );
        assert_eq!(
            d.to_json(),
            json!({ "doc": { "section": {
                "title": "Intro",
                "para": { "body": "hello world!", "likes": 13, "tags": ["x", "y"], "by": "bob" }
            } } })
        );
        // Views of what does not exist are empty, not errors.
        assert_eq!(d.map("doc").map("nope").map("deeper").len(), 0);
        assert_eq!(para.counter("nope").value(), 0);
        assert!(para.text("nope").is_empty());
    }
}

#[test]
fn maps_nest_at_most_64_deep() {
    fn nest(m: &mut chorus_doc::MapMut<'_>, depth: usize) -> (usize, chorus_doc::EditError) {
        match m.map("k") {
            Ok(mut child) => nest(&mut child, depth + 1),
            Err(e) => {
                // The deepest map still holds values, just no more containers.
                assert!(m.text("t").is_err());
                m.set("leaf", depth as i64).unwrap();
                (depth, e)
            }
        }
    }
    let mut d = doc(1);
    let mut tx = d.transact();
    let (depth, err) = nest(&mut tx.map("m"), 0);
    assert_eq!(err, chorus_doc::EditError::TooDeep);
    assert_eq!(depth, 64, "the root map and 64 levels below it");
    tx.commit();
    d.check().unwrap();
    let again = Doc::decode(&d.encode(), rid(2)).expect("the deepest allowed nesting decodes");
    assert_eq!(again.to_json(), d.to_json());
    assert_eq!(again.encode(), d.encode());
    let mut leaf = d.map("m");
    for _ in 0..64 {
        leaf = leaf.map("k");
    }
    assert_eq!(leaf.get("leaf"), Some(MapValue::Value(64.into())));
}

#[test]
fn map_set_survives_a_concurrent_delete() {
    let mut a = doc(1);
    let mut b = doc(2);
    edit(&mut a, |tx| {
        let mut m = tx.map("m");
        m.set("k", 1).unwrap();
        m.set("gone", 1).unwrap();
    });
    pull(&mut b, &a);
    // a deletes both keys; b concurrently sets k: the set survives, whatever the
    // replica ids (a delete leaves no write to compare with).
    edit(&mut a, |tx| {
        let mut m = tx.map("m");
        m.delete("k").unwrap();
        m.delete("gone").unwrap();
        // Deleting what is not there makes no operation.
        m.delete("never").unwrap();
    });
    edit(&mut b, |tx| tx.map("m").set("k", 2).unwrap());
    sync_all(&mut [&mut a, &mut b]);
    for d in [&a, &b] {
        let m = d.map("m");
        assert_eq!(m.get("k"), Some(MapValue::Value(2.into())));
        assert!(m.conflicts("k").is_empty());
        assert!(!m.contains_key("gone"));
        assert_eq!(m.len(), 1);
        assert_eq!(d.to_json(), json!({ "m": { "k": 2 } }));
    }
    // A delete that has seen the set removes it.
    edit(&mut a, |tx| tx.map("m").delete("k").unwrap());
    sync_all(&mut [&mut a, &mut b]);
    assert!(b.map("m").is_empty());
    assert_eq!(b.to_json(), json!({ "m": {} }));
    // Two concurrent deletes of one key.
    edit(&mut a, |tx| tx.map("m").set("d", 1).unwrap());
    sync_all(&mut [&mut a, &mut b]);
    edit(&mut a, |tx| tx.map("m").delete("d").unwrap());
    edit(&mut b, |tx| tx.map("m").delete("d").unwrap());
    sync_all(&mut [&mut a, &mut b]);
    assert!(a.map("m").is_empty());
}

#[test]
fn map_key_holding_a_value_and_a_container_is_a_conflict() {
    let mut a = doc(1);
    let mut b = doc(2);
    edit(&mut a, |tx| tx.map("m").set("k", 5).unwrap());
    edit(&mut b, |tx| {
        tx.map("m").text("k").unwrap().insert(0, "text").unwrap()
    });
    sync_all(&mut [&mut a, &mut b]);
    for d in [&a, &b] {
        let m = d.map("m");
        let cs = m.conflicts("k");
        assert_eq!(cs.len(), 2);
        let kinds: Vec<_> = cs.iter().map(|w| (w.replica, w.value.clone())).collect();
        assert!(kinds.contains(&(rid(1), MapValue::Value(5.into()))));
        assert!(kinds.contains(&(rid(2), MapValue::Container(Kind::Text))));
        // Ordered by (Lamport, replica), the shown one last.
        assert!((cs[0].lamport, cs[0].replica) < (cs[1].lamport, cs[1].replica));
        assert_eq!(m.get("k"), Some(cs[1].value.clone()));
        // Equal Lamport timestamps: the higher replica (b, the text) shows.
        assert_eq!(m.get("k"), Some(MapValue::Container(Kind::Text)));
        assert_eq!(d.to_json(), json!({ "m": { "k": "text" } }));
        // The text stays readable whatever shows.
        assert_eq!(m.text("k").to_string(), "text");
    }
    // Setting the key resolves the conflict on every replica.
    edit(&mut a, |tx| tx.map("m").set("k", 6).unwrap());
    sync_all(&mut [&mut a, &mut b]);
    assert!(b.map("m").conflicts("k").is_empty());
    assert_eq!(b.to_json(), json!({ "m": { "k": 6 } }));
    assert_eq!(b.map("m").text("k").to_string(), "text");
}

// ------------------------------------------------------------------ root kinds

#[test]
fn root_name_used_as_text_and_as_counter() {
    // (text replica, counter replica, whether the text replica made another op
    // first). Equal Lamport timestamps: the lower replica id decides; otherwise the
    // smaller Lamport timestamp does, whatever the ids.
    for (text_id, counter_id, warmup) in [(1, 2, false), (2, 1, false), (1, 2, true)] {
        let mut t = doc(text_id);
        let mut c = doc(counter_id);
        if warmup {
            edit(&mut t, |tx| tx.counter("warmup").add(1).unwrap());
        }
        edit(&mut t, |tx| tx.text("x").insert(0, "hello").unwrap());
        edit(&mut c, |tx| tx.counter("x").add(3).unwrap());
        sync_all(&mut [&mut t, &mut c]);
        let shown = if warmup || counter_id < text_id {
            Kind::Counter
        } else {
            Kind::Text
        };
        for d in [&t, &c] {
            assert_eq!(d.root_kind("x"), Some(shown.clone()));
            let conflicts = d.field_conflicts();
            assert_eq!(conflicts.len(), 1);
            assert_eq!(conflicts[0].name, "x");
            assert_eq!(conflicts[0].kinds.len(), 2);
            assert_eq!(conflicts[0].kinds[0], shown);
            assert!(conflicts[0].kinds.contains(&Kind::Text));
            assert!(conflicts[0].kinds.contains(&Kind::Counter));
            assert_eq!(d.text("x").to_string(), "hello");
            assert_eq!(d.counter("x").value(), 3);
            let json = d.to_json();
            match shown {
                Kind::Text => assert_eq!(json["x"], json!("hello")),
                _ => assert_eq!(json["x"], json!(3)),
            }
        }
        // Later edits to the hidden kind still merge.
        edit(&mut t, |tx| tx.counter("x").add(1).unwrap());
        sync_all(&mut [&mut t, &mut c]);
        assert_eq!(c.counter("x").value(), 4);
        assert_eq!(c.root_kind("x"), Some(shown));
        assert_eq!(t.root_kind("warmup").is_some(), warmup);
    }
}

// ------------------------------------------------------------------ lists

#[test]
fn concurrent_list_inserts_at_one_position_do_not_interleave() {
    let ints = |v: &[i64]| v.iter().map(|&i| Value::from(i)).collect::<Vec<_>>();
    // Inserted all at once, forwards one by one, and backwards one by one.
    for style in ["many", "forwards", "backwards"] {
        let mut a = doc(1);
        let mut b = doc(2);
        edit(&mut a, |tx| {
            tx.list("l").insert_many(0, ints(&[0, 9])).unwrap()
        });
        pull(&mut b, &a);
        for (d, run) in [(&mut a, [1, 2, 3]), (&mut b, [4, 5, 6])] {
            match style {
                "many" => edit(d, |tx| tx.list("l").insert_many(1, ints(&run)).unwrap()),
                "forwards" => {
                    for (k, v) in run.into_iter().enumerate() {
                        edit(d, |tx| tx.list("l").insert(1 + k, v).unwrap());
                    }
                }
                _ => {
                    for v in run.into_iter().rev() {
                        edit(d, |tx| tx.list("l").insert(1, v).unwrap());
                    }
                }
            }
        }
        sync_all(&mut [&mut a, &mut b]);
        let got = a.list("l").to_vec();
        let one = ints(&[0, 1, 2, 3, 4, 5, 6, 9]);
        let other = ints(&[0, 4, 5, 6, 1, 2, 3, 9]);
        assert!(
            got == one || got == other,
            "{style}: runs interleaved: {got:?}"
        );
        assert_eq!(b.list("l").to_vec(), got);
        assert_eq!(a.list("l").len(), 8);
        assert_eq!(a.list("l").get(0), Some(&Value::from(0)));
        assert_eq!(a.list("l").get(8), None);
    }
}

#[test]
fn list_deletes_merge() {
    let mut a = doc(1);
    let mut b = doc(2);
    edit(&mut a, |tx| {
        tx.list("l")
            .insert_many(0, (0..8).map(Value::from))
            .unwrap()
    });
    pull(&mut b, &a);
    // Overlapping deletes, and an insert inside a range deleted concurrently.
    edit(&mut a, |tx| tx.list("l").delete(1, 3).unwrap()); // 1 2 3
    edit(&mut b, |tx| {
        let mut l = tx.list("l");
        l.delete(2, 3).unwrap(); // 2 3 4
        l.insert(2, "new").unwrap(); // after 1
    });
    sync_all(&mut [&mut a, &mut b]);
    let want: Vec<Value> = vec![0.into(), "new".into(), 5.into(), 6.into(), 7.into()];
    for d in [&a, &b] {
        assert_eq!(d.list("l").to_vec(), want);
        assert_eq!(d.list("l").iter().count(), 5);
        assert_eq!(d.to_json(), json!({ "l": [0, "new", 5, 6, 7] }));
    }
    // Deleting everything, and out-of-range edits are refused.
    edit(&mut a, |tx| {
        let mut l = tx.list("l");
        assert!(l.delete(3, 3).is_err());
        assert!(l.insert(6, 1).is_err());
        l.delete(0, 5).unwrap();
    });
    sync_all(&mut [&mut a, &mut b]);
    assert!(b.list("l").is_empty());
    assert_eq!(b.to_json(), json!({ "l": [] }));
}

// ------------------------------------------------------------------ whole documents

#[test]
fn json_view_is_equal_everywhere_and_has_the_expected_shape() {
    let (a, b) = every_type();
    let want = json!({
        "count": 42,
        "high": 9,
        "list": [1, null, 4],
        "low": -1,
        "meta": {
            "author": "bob",
            "bytes": [1, 2, 3],
            "inner": { "k": 1, "note": "inner note" },
            "items": [1],
            "nested": [1, "x"],
            "nothing": null,
            "owner": "ann",
            "pi": 3.25,
            "views": 5
        },
        "name": "bobby",
        "status": { "conflict": ["closed", "review"] },
        "tags": ["a", "b"],
        "text": ">> Hello 😀",
        "title": "final"
    });
    assert_eq!(a.to_json(), want);
    assert_eq!(b.to_json(), want);
    // A third replica that only ever saw the full state.
    let mut c = Doc::decode(&a.encode(), rid(3)).unwrap();
    assert_eq!(
        c.to_json()["name"],
        json!(null),
        "the rule is not known there"
    );
    c.add_merge_rule(Arc::new(Longest)).unwrap();
    assert_eq!(c.to_json(), want);
}

#[test]
fn encode_decode_encode_is_byte_identical_with_every_type() {
    let (a, b) = every_type();
    for d in [&a, &b] {
        let bytes = d.encode();
        let mut copy = Doc::decode(&bytes, rid(99)).unwrap();
        copy.check().unwrap();
        assert_eq!(
            copy.encode(),
            bytes,
            "decode(encode(d)).encode() == d.encode()"
        );
        assert_eq!(copy.version(), d.version());
        copy.add_merge_rule(Arc::new(Longest)).unwrap();
        assert_eq!(copy.to_json(), d.to_json());
        // And through the general (not load-in-order) path, onto a non-empty doc.
        let mut other = doc(98);
        edit(&mut other, |tx| tx.counter("count").add(1).unwrap());
        other.add_merge_rule(Arc::new(Longest)).unwrap();
        other.apply_update(&bytes).unwrap();
        other.check().unwrap();
        assert_eq!(other.counter("count").value(), 43);
    }
    // A partial delta re-encodes to itself as well.
    let mut c = doc(3);
    edit(&mut c, |tx| {
        tx.map("meta").set("author", "cy").unwrap();
        tx.register("title", Rule::Lww).set("c", 1).unwrap();
    });
    let mut a = a;
    let before = a.version().clone();
    pull(&mut a, &c);
    let d = a.encode_since(&before);
    let mut e = b.clone();
    e.apply_update(&d).unwrap();
    assert_eq!(e.encode_since(b.version()), d);
}

#[test]
fn a_refused_update_changes_nothing() {
    let (a, b) = every_type();
    let mut c = doc(3);
    c.add_merge_rule(Arc::new(Longest)).unwrap();
    edit(&mut c, |tx| {
        tx.counter("count").add(1).unwrap();
        tx.map("meta").set("author", "cy").unwrap();
        tx.list("list").push("c").unwrap();
        tx.text("text").insert(0, "c").unwrap();
        tx.register("status", Rule::MultiValue).set("c", 9).unwrap();
    });
    let good = c.encode();
    let mut pending_target = b.clone();
    // A later op of c's alone: it waits for the earlier ones.
    let before = c.version().clone();
    edit(&mut c, |tx| tx.counter("count").add(1).unwrap());
    pending_target
        .apply_update(&c.encode_since(&before))
        .unwrap();
    assert_eq!(pending_target.pending_len(), 1);

    let mut damaged: Vec<(String, Vec<u8>)> = Vec::new();
    for keep in 0..good.len() {
        damaged.push((format!("truncated to {keep}"), good[..keep].to_vec()));
    }
    let mut extra = good.clone();
    extra.push(0);
    damaged.push(("a trailing byte".into(), extra));
    let mut magic = good.clone();
    magic[0] ^= 0x20;
    damaged.push(("bad magic".into(), magic));
    let mut version = good.clone();
    version[4] = 99;
    damaged.push(("unknown version".into(), version));
    for at in (5..good.len()).step_by(3) {
        let mut x = good.clone();
        x[at] = 0xff;
        damaged.push((format!("0xff at {at}"), x));
    }

    let mut refused = 0;
    for (what, bytes) in &damaged {
        for target in [a.clone(), pending_target.clone(), doc(9)] {
            let mut target = target;
            let before = state(&target);
            match target.apply_update(bytes) {
                Err(_) => {
                    refused += 1;
                    assert_eq!(
                        state(&target),
                        before,
                        "{what}: a refused update changed the doc"
                    );
                    target.check().unwrap();
                }
                Ok(_) => {
                    assert!(!what.starts_with("truncated"), "{what} was accepted");
                    target
                        .check()
                        .unwrap_or_else(|e| panic!("{what}: accepted, then {e}"));
                }
            }
        }
    }
    assert!(refused >= good.len() * 3, "truncations must all be refused");
    // The document still takes the genuine update afterwards.
    let mut a = a;
    a.apply_update(&good).unwrap();
    a.check().unwrap();
    assert_eq!(a.counter("count").value(), 43);
}

#[test]
fn rolling_back_a_transaction_that_touched_every_type_restores_the_state() {
    let (a, b) = every_type();
    // Also with ops waiting for missing dependencies.
    let mut waiting = a.clone();
    let mut c = doc(3);
    edit(&mut c, |tx| tx.counter("count").add(1).unwrap());
    let before = c.version().clone();
    edit(&mut c, |tx| {
        tx.register("title", Rule::Lww).set("c", 1).unwrap()
    });
    waiting.apply_update(&c.encode_since(&before)).unwrap();
    assert_eq!(waiting.pending_len(), 1);

    for (label, original) in [("a", a), ("b", b), ("waiting", waiting)] {
        let mut d = original.clone();
        let s = state(&d);
        for explicit in [false, true] {
            let mut tx = d.transact();
            tx.text("text").insert(2, "XYZ").unwrap();
            tx.text("text").delete(0, 4).unwrap();
            tx.text("brand new").insert(0, "new").unwrap();
            tx.counter("count").add(1_000).unwrap();
            tx.counter("text").add(1).unwrap(); // a second kind for a root name
            // A clock far ahead: the rollback must take the clock back too.
            let far = 9_000_000_000_000;
            tx.register("title", Rule::Lww)
                .set("rolled back", far)
                .unwrap();
            tx.register("status", Rule::MultiValue)
                .set("rb", far)
                .unwrap();
            tx.register("high", Rule::merge("max"))
                .set(1_000, far)
                .unwrap();
            tx.register("low", Rule::merge("min"))
                .set(-1_000, far)
                .unwrap();
            tx.register("tags", Rule::merge("union"))
                .set("rb", far)
                .unwrap();
            tx.register("name", longest())
                .set("a very long name", far)
                .unwrap();
            tx.register("unknown", Rule::merge("nope"))
                .set(1, far)
                .unwrap();
            let mut m = tx.map("meta");
            m.set("author", "rb").unwrap();
            m.delete("pi").unwrap();
            m.map("inner").unwrap().set("k", 2).unwrap();
            m.map("inner")
                .unwrap()
                .text("note")
                .unwrap()
                .delete(0, 5)
                .unwrap();
            m.counter("views").unwrap().add(1).unwrap();
            m.text("author2").unwrap().insert(0, "t").unwrap();
            m.map("brand new")
                .unwrap()
                .map("deeper")
                .unwrap()
                .set("x", 1)
                .unwrap();
            m.set("inner", "a value over a container").unwrap();
            tx.list("list").insert(0, "rb").unwrap();
            tx.list("list").delete(1, 2).unwrap();
            tx.list("brand new list").push(1).unwrap();
            assert_eq!(
                tx.counter("count").value(),
                1_042,
                "edits show inside the transaction"
            );
            if explicit {
                tx.rollback();
            } else {
                drop(tx);
            }
            d.check()
                .unwrap_or_else(|e| panic!("{label}: after rollback: {e}"));
            assert_eq!(state(&d), s, "{label}: rollback (explicit: {explicit})");
            assert_eq!(d.field_conflicts(), original.field_conflicts(), "{label}");
            assert_eq!(
                d.fields().count(),
                original.fields().count(),
                "{label}: fields named only by the transaction are forgotten"
            );
        }
        // The same later edit on the rolled-back doc and on the original gives the
        // same bytes: nothing hidden (clock, Lamport, seq) survived the rollback.
        let mut o = original.clone();
        for x in [&mut d, &mut o] {
            edit(x, |tx| {
                tx.register("title", Rule::Lww).set("after", 5).unwrap();
                tx.register("status", Rule::MultiValue)
                    .set("after", 5)
                    .unwrap();
                tx.text("text").insert(0, "!").unwrap();
                tx.map("meta").set("z", 1).unwrap();
            });
        }
        assert_eq!(d.encode(), o.encode(), "{label}");
        assert_eq!(
            d.register("title", Rule::Lww).writes(),
            o.register("title", Rule::Lww).writes(),
            "{label}: the register clock was restored"
        );
        assert_eq!(d.to_json(), o.to_json(), "{label}");
    }
}

#[test]
fn values_of_every_variant_survive_sync_and_encoding() {
    /// `n` arrays nested in each other (depth `n`).
    fn deep(n: usize) -> Value {
        (0..n).fold(Value::Null, |v, _| Value::Array(vec![v]))
    }
    let values: Vec<Value> = vec![
        Value::Null,
        true.into(),
        false.into(),
        i64::MIN.into(),
        i64::MAX.into(),
        0.into(),
        Value::Float(-0.0),
        Value::Float(0.0),
        Value::Float(f64::NAN),
        Value::Float(f64::NEG_INFINITY),
        Value::Float(1e-300),
        "".into(),
        "é😀\0\n".into(),
        Value::Bytes(Vec::new()),
        Value::Bytes(vec![0, 255]),
        Value::Array(Vec::new()),
        deep(32),
    ];
    let mut a = doc(1);
    let mut b = doc(2);
    edit(&mut a, |tx| {
        tx.list("l").insert_many(0, values.clone()).unwrap();
        let mut m = tx.map("m");
        for (i, v) in values.iter().enumerate() {
            m.set(&i.to_string(), v.clone()).unwrap();
        }
        m.set("", "the empty key").unwrap();
        tx.counter("").add(1).unwrap();
        for v in &values {
            tx.register("max", Rule::merge("max"))
                .set(v.clone(), 0)
                .unwrap();
            tx.register("min", Rule::merge("min"))
                .set(v.clone(), 0)
                .unwrap();
        }
        // Union adds each element of an array written (one level down, so the
        // deepest value goes in on its own).
        let (deepest, rest) = values.split_last().unwrap();
        let mut set = tx.register("set", Rule::merge("union"));
        set.set(Value::Array(rest.to_vec()), 0).unwrap();
        set.set(deepest.clone(), 0).unwrap();
        // Too deep for a value: refused, and nothing else in the transaction is lost.
        assert_eq!(
            tx.list("l").push(deep(33)),
            Err(chorus_doc::EditError::TooDeep)
        );
        assert_eq!(
            tx.map("m").set("deep", deep(33)),
            Err(chorus_doc::EditError::TooDeep)
        );
        assert_eq!(
            tx.register("r", Rule::Lww).set(deep(33), 0),
            Err(chorus_doc::EditError::TooDeep)
        );
    });
    pull(&mut b, &a);
    let c = Doc::decode(&a.encode(), rid(3)).unwrap();
    assert_eq!(c.encode(), a.encode());
    let mut sorted = values.clone();
    sorted.sort();
    sorted.dedup();
    let mut union = values[..values.len() - 1].to_vec();
    union.push(deep(31));
    union.sort();
    for d in [&a, &b, &c] {
        d.check().unwrap();
        assert_eq!(
            d.list("l").to_vec(),
            values,
            "bit-exact floats, NaN included"
        );
        let m = d.map("m");
        for (i, v) in values.iter().enumerate() {
            assert_eq!(m.get(&i.to_string()), Some(MapValue::Value(v.clone())));
        }
        assert_eq!(m.get(""), Some(MapValue::Value("the empty key".into())));
        assert!(!m.contains_key("deep"));
        assert!(d.register("r", Rule::Lww).value().is_none());
        assert_eq!(d.counter("").value(), 1);
        assert_eq!(
            d.register("max", Rule::merge("max")).value().as_ref(),
            sorted.last()
        );
        assert_eq!(
            d.register("min", Rule::merge("min")).value(),
            Some(Value::Null)
        );
        assert_eq!(
            d.register("set", Rule::merge("union")).value(),
            Some(Value::Array(union.clone()))
        );
        let json = d.to_json();
        assert_eq!(json["l"][8], json!(null), "NaN has no JSON form");
        assert_eq!(json["l"][9], json!(null), "neither has infinity");
        assert_eq!(json["l"][14], json!([0, 255]), "bytes show as numbers");
        assert_eq!(json["m"][""], json!("the empty key"));
        assert_eq!(json[""], json!(1));
        assert_eq!(json, a.to_json());
    }
    assert_ne!(Value::Float(0.0), Value::Float(-0.0));
}

#[test]
fn a_write_that_arrives_before_the_writes_it_supersedes_waits_for_them() {
    let mut a = doc(1);
    let mut b = doc(2);
    let mut c = doc(3);
    edit(&mut a, |tx| {
        tx.register("lww", Rule::Lww).set("first", 1_000).unwrap();
        tx.register("mv", Rule::MultiValue)
            .set("first", 1_000)
            .unwrap();
        tx.map("m").set("k", 1).unwrap();
    });
    pull(&mut b, &a);
    edit(&mut b, |tx| {
        // An earlier physical time: only the clock it has seen makes it win.
        tx.register("lww", Rule::Lww).set("second", 1).unwrap();
        tx.register("mv", Rule::MultiValue)
            .set("second", 1)
            .unwrap();
        tx.map("m").delete("k").unwrap();
    });
    // c gets b's writes first: they wait for the writes they supersede.
    let r = c.apply_update(&b.encode_since(a.version())).unwrap();
    assert_eq!((r.applied, r.pending), (0, 3));
    c.check().unwrap();
    assert_eq!(c.pending_len(), 3);
    assert_eq!(c.register("lww", Rule::Lww).value(), None);
    assert_eq!(c.to_json(), json!({}));
    let r = c.apply_update(&a.encode()).unwrap();
    assert_eq!((r.applied, r.pending), (6, 0));
    c.check().unwrap();
    for d in [&b, &c] {
        assert_eq!(d.register("lww", Rule::Lww).value(), Some("second".into()));
        assert_eq!(d.register("lww", Rule::Lww).writes().len(), 1);
        assert!(d.register("mv", Rule::MultiValue).conflicts().is_empty());
        assert!(d.map("m").is_empty());
        assert_eq!(
            d.to_json(),
            json!({ "lww": "second", "mv": "second", "m": {} })
        );
    }
    assert_eq!(c.encode_since(a.version()), b.encode_since(a.version()));
}

/// An application replaces a merge rule (a built-in, or its own) after writes were
/// merged with the old one. Whatever the document does — recompute, or keep the
/// old rule — its state must stay consistent with its ops, and a replica that had
/// the replacement before the writes arrived must agree with it.
#[test]
fn a_merge_rule_name_cannot_be_taken_twice() {
    /// Claims the name of another rule but keeps the least value.
    #[derive(Debug)]
    struct Impostor(&'static str);
    impl MergeRule for Impostor {
        fn name(&self) -> &str {
            self.0
        }
        fn merge(&self, a: &Value, b: &Value) -> Value {
            a.min(b).clone()
        }
    }
    for name in ["max", "longest"] {
        let mut d = doc(1);
        d.add_merge_rule(Arc::new(Longest)).unwrap();
        edit(&mut d, |tx| {
            let mut r = tx.register("r", Rule::merge(name));
            r.set("a", 0).unwrap();
            r.set("bbb", 0).unwrap();
        });
        let before = d.to_json();
        let err = d.add_merge_rule(Arc::new(Impostor(name))).unwrap_err();
        assert_eq!(
            err,
            chorus_doc::EditError::RuleExists {
                name: name.to_string()
            }
        );
        d.check().unwrap();
        assert_eq!(
            d.to_json(),
            before,
            "{name}: a refused rule changes nothing"
        );
        assert_eq!(
            d.register("r", Rule::merge(name)).value(),
            Some("bbb".into())
        );
    }
}

/// A small update holding every type (its blocks stay under the compression
/// threshold, so flipped bits land in the raw structure).
fn small_every_type() -> (Doc, Vec<u8>) {
    let mut base = doc(1);
    edit(&mut base, |tx| {
        tx.text("t").insert(0, "ab").unwrap();
        tx.list("l")
            .insert_many(0, [Value::from(1), "x".into()])
            .unwrap();
        tx.map("m").set("k", 1).unwrap();
        tx.register("r", Rule::MultiValue).set("v", 1).unwrap();
    });
    let mut d = base.clone();
    edit(&mut d, |tx| {
        tx.text("t").insert(1, "é").unwrap();
        tx.text("t").delete(0, 1).unwrap();
        tx.counter("c").add(-3).unwrap();
        tx.register("r", Rule::MultiValue).set("w", 2).unwrap();
        tx.register("lww", Rule::Lww).set(2.5, 2).unwrap();
        tx.register("u", Rule::merge("union")).set("s", 2).unwrap();
        let mut m = tx.map("m");
        m.set("k", true).unwrap();
        m.map("sub").unwrap().set("z", Value::Null).unwrap();
        m.delete("k").unwrap();
        tx.list("l").delete(0, 1).unwrap();
        tx.list("l").push(vec![1u8]).unwrap();
    });
    let update = d.encode_since(base.version());
    (base, update)
}

#[test]
fn every_single_bit_flip_of_a_multi_type_update_is_refused_or_consistent() {
    let (base, update) = small_every_type();
    let full = {
        let mut d = base.clone();
        d.apply_update(&update).unwrap();
        d.encode()
    };
    assert!(
        update.len() < 400,
        "keep the update small: {} bytes",
        update.len()
    );
    let mut accepted = 0;
    let mut failures = Vec::new();
    for (name, bytes) in [("delta", &update), ("full state", &full)] {
        for at in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[at] ^= 1 << bit;
                for target in [base.clone(), doc(5)] {
                    let mut target = target;
                    let before = state(&target);
                    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        match target.apply_update(&b) {
                            Ok(_) => {
                                target.check().map_err(|e| e.to_string())?;
                                // Reading every view must not panic either.
                                let _ = target.to_json();
                                let _ = target.field_conflicts();
                                let _ = Doc::decode(&target.encode(), rid(6))
                                    .map_err(|e| format!("re-decoding: {e}"))?;
                                Ok(true)
                            }
                            Err(_) if state(&target) == before => Ok(false),
                            Err(e) => Err(format!("refused ({e}) but changed the doc")),
                        }
                    }));
                    match outcome {
                        Ok(Ok(true)) => accepted += 1,
                        Ok(Ok(false)) => {}
                        Ok(Err(e)) => failures.push(format!("{name}: byte {at} bit {bit}: {e}")),
                        Err(p) => {
                            let msg = p
                                .downcast_ref::<String>()
                                .cloned()
                                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                                .unwrap_or_default();
                            failures.push(format!("{name}: byte {at} bit {bit}: PANIC {msg}"));
                        }
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of the flips misbehaved, first ones: {:#?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    assert!(
        accepted > 0,
        "no flip decoded: the test would prove nothing"
    );
}
