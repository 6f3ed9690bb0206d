//! History: reading at a version, diffs, forks, reverts — scripted cases, each run
//! under every order of the replica ids (ties between concurrent edits break by id).

use chorus_doc::{
    Diff, Doc, HistoryError, OpId, ReplicaId, Rule, TextDelta, TextUnit, UndoManager, Value,
    VersionVector,
};

fn sync(a: &mut Doc, b: &mut Doc) {
    let ab = a.encode_since(b.version());
    let ba = b.encode_since(a.version());
    b.apply_update(&ab).unwrap();
    a.apply_update(&ba).unwrap();
}

fn edit(d: &mut Doc, f: impl FnOnce(&mut chorus_doc::Transaction<'_>)) {
    let mut tx = d.transact();
    f(&mut tx);
    tx.commit();
}

/// Every order of three replica ids.
fn permutations() -> Vec<[ReplicaId; 3]> {
    let ids = [1u128, 2, 3].map(ReplicaId::from_u128);
    let mut out = Vec::new();
    for a in 0..3 {
        for b in 0..3 {
            for c in 0..3 {
                if a != b && b != c && a != c {
                    out.push([ids[a], ids[b], ids[c]]);
                }
            }
        }
    }
    out
}

/// Applies a text delta to `s`.
fn apply_text(s: &str, delta: &[TextDelta]) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut at = 0;
    for d in delta {
        match d {
            TextDelta::Retain(n) => {
                out.extend(&chars[at..at + n]);
                at += n;
            }
            TextDelta::Insert(t) => out.push_str(t),
            TextDelta::Delete(n) => at += n,
        }
    }
    out.extend(&chars[at..]);
    out
}

#[test]
fn read_every_type_at_earlier_versions() {
    for [ra, rb, _] in permutations() {
        let mut a = Doc::new(ra);
        let mut b = Doc::new(rb);
        edit(&mut a, |tx| {
            tx.text("t").insert(0, "hello world").unwrap();
            tx.counter("c").add(5).unwrap();
            tx.register("r", Rule::MultiValue).set("one", 10).unwrap();
            tx.map("m").set("k", 1).unwrap();
            tx.list("l").push("x").unwrap();
        });
        let v1 = a.version().clone();
        let json1 = a.to_json();
        sync(&mut a, &mut b);
        // Concurrent: both set the register (a conflict), both edit the text.
        edit(&mut a, |tx| {
            tx.text("t").delete(0, 6).unwrap();
            tx.register("r", Rule::MultiValue).set("two", 20).unwrap();
            tx.map("m").delete("k").unwrap();
        });
        edit(&mut b, |tx| {
            tx.text("t").insert(11, "!").unwrap();
            tx.register("r", Rule::MultiValue).set("three", 20).unwrap();
            tx.counter("c").add(-2).unwrap();
            tx.list("l").push("y").unwrap();
        });
        let vb = b.version().clone();
        let json_b = b.to_json();
        sync(&mut a, &mut b);
        let v2 = a.version().clone();
        let json2 = a.to_json();
        // Resolve the conflict, undo-free edits on top.
        edit(&mut b, |tx| {
            tx.register("r", Rule::MultiValue).set("final", 30).unwrap();
            tx.text("t").insert(0, ">").unwrap();
        });
        sync(&mut a, &mut b);
        for d in [&a, &b] {
            assert_eq!(d.at(&v1).unwrap().to_json(), json1);
            assert_eq!(d.at(&vb).unwrap().to_json(), json_b);
            let at2 = d.at(&v2).unwrap();
            assert_eq!(at2.to_json(), json2);
            assert_eq!(at2.text("t").to_string(), "world!");
            assert_eq!(at2.register("r", Rule::MultiValue).conflicts().len(), 2);
            assert_eq!(at2.counter("c").value(), 3);
            assert_eq!(at2.list("l").len(), 2);
            assert!(!at2.map("m").contains_key("k"));
            assert_eq!(
                d.at(&VersionVector::new()).unwrap().to_json(),
                serde_json::json!({})
            );
            assert_eq!(d.at(d.version()).unwrap().to_json(), d.to_json());
        }
    }
}

#[test]
fn unknown_and_impossible_versions_are_refused() {
    let (ra, rb) = (ReplicaId::from_u128(1), ReplicaId::from_u128(2));
    let mut a = Doc::new(ra);
    let mut b = Doc::new(rb);
    edit(&mut a, |tx| tx.text("t").insert(0, "abc").unwrap());
    sync(&mut a, &mut b);
    edit(&mut b, |tx| tx.text("t").insert(1, "XY").unwrap());
    // A version of a replica we have nothing of.
    let stranger: VersionVector = [(ReplicaId::from_u128(9), 1)].into_iter().collect();
    assert!(matches!(
        a.at(&stranger),
        Err(HistoryError::Unknown {
            want: 1,
            have: 0,
            ..
        })
    ));
    // Ahead of us: b's insert has not reached a.
    assert!(matches!(
        a.at(b.version()),
        Err(HistoryError::Unknown { .. })
    ));
    // b's insert without the text it was typed into: no replica held that.
    let torn: VersionVector = [(rb, 2)].into_iter().collect();
    assert_eq!(
        b.at(&torn).unwrap_err(),
        HistoryError::NotClosed {
            op: OpId::new(rb, 0)
        }
    );
    assert!(b.diff(&torn, b.version(), TextUnit::Char).is_err());
    assert!(b.fork_at(&torn, ReplicaId::from_u128(5)).is_err());
    let before = b.encode();
    assert!(b.revert_to(&torn, 0).is_err());
    assert_eq!(b.encode(), before, "a refused revert changes nothing");
}

#[test]
fn diff_gives_the_delta_between_two_versions() {
    let mut a = Doc::new(ReplicaId::from_u128(1));
    edit(&mut a, |tx| {
        tx.text("t").insert(0, "one two three").unwrap()
    });
    let v1 = a.version().clone();
    edit(&mut a, |tx| {
        tx.text("t").delete(4, 4).unwrap();
        tx.text("t").insert(0, "zero ").unwrap();
        tx.counter("c").add(7).unwrap();
    });
    let v2 = a.version().clone();
    let ev = a.diff(&v1, &v2, TextUnit::Char).unwrap();
    let text = ev
        .changes
        .iter()
        .find_map(|c| match &c.diff {
            Diff::Text(d) => Some(d.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        text,
        vec![
            TextDelta::Insert("zero ".into()),
            TextDelta::Retain(4),
            TextDelta::Delete(4)
        ]
    );
    assert_eq!(apply_text("one two three", &text), "zero one three");
    assert!(
        ev.changes
            .iter()
            .any(|c| c.diff == Diff::Counter { delta: 7, value: 7 })
    );
    // Backwards, the delta undoes it.
    let back = a.diff(&v2, &v1, TextUnit::Char).unwrap();
    let Diff::Text(d) = &back.changes[0].diff else {
        panic!("text first: {back:?}")
    };
    assert_eq!(apply_text("zero one three", d), "one two three");
    // No change: no entries.
    assert!(
        a.diff(&v2, &v2, TextUnit::Utf16)
            .unwrap()
            .changes
            .is_empty()
    );
}

#[test]
fn a_fork_edits_and_merges_back() {
    for [ra, rb, rf] in permutations() {
        let mut a = Doc::new(ra);
        let mut b = Doc::new(rb);
        edit(&mut a, |tx| tx.text("t").insert(0, "base text").unwrap());
        let v = a.version().clone();
        edit(&mut a, |tx| tx.text("t").insert(9, " later").unwrap());
        sync(&mut a, &mut b);
        let mut fork = b.fork_at(&v, rf).unwrap();
        fork.check().unwrap();
        assert_eq!(fork.version(), &v);
        assert_eq!(fork.text("t").to_string(), "base text");
        edit(&mut fork, |tx| tx.text("t").insert(0, "forked ").unwrap());
        a.apply_update(&fork.encode_since(&v)).unwrap();
        sync(&mut a, &mut b);
        fork.apply_update(&a.encode_since(fork.version())).unwrap();
        for d in [&a, &b, &fork] {
            d.check().unwrap();
            assert_eq!(d.text("t").to_string(), "forked base text later");
        }
    }
}

#[test]
fn revert_restores_an_old_version_and_keeps_concurrent_edits() {
    for [ra, rb, _] in permutations() {
        let mut a = Doc::new(ra);
        let mut b = Doc::new(rb);
        edit(&mut a, |tx| {
            tx.text("t").insert(0, "the good text").unwrap();
            tx.counter("c").add(1).unwrap();
            tx.register("title", Rule::Lww).set("Good", 1).unwrap();
            tx.map("m").set("k", "v").unwrap();
        });
        let good = a.version().clone();
        let good_json = a.to_json();
        edit(&mut a, |tx| {
            tx.text("t").delete(4, 5).unwrap();
            tx.text("t").insert(4, "bad ").unwrap();
            tx.counter("c").add(10).unwrap();
            tx.register("title", Rule::Lww).set("Bad", 2).unwrap();
            tx.map("m").delete("k").unwrap();
            tx.map("m").set("j", 1).unwrap();
        });
        sync(&mut a, &mut b);
        // a reverts while b, not knowing, appends.
        let change = a.revert_to(&good, 3).unwrap();
        assert!(change.is_some());
        a.check().unwrap();
        assert_eq!(a.to_json(), good_json);
        edit(&mut b, |tx| {
            let len = tx.text("t").len();
            tx.text("t").insert(len, " (b)").unwrap()
        });
        sync(&mut a, &mut b);
        for d in [&a, &b] {
            d.check().unwrap();
            assert_eq!(d.text("t").to_string(), "the good text (b)");
            assert_eq!(d.counter("c").value(), 1);
            assert_eq!(
                d.register("title", Rule::Lww).value(),
                Some(Value::from("Good"))
            );
            assert_eq!(d.map("m").len(), 1);
        }
        // Nothing left to revert.
        let now = a.version().clone();
        assert_eq!(a.revert_to(&now, 4).unwrap(), None);
    }
}

#[test]
fn a_revert_can_be_undone() {
    let mut a = Doc::new(ReplicaId::from_u128(1));
    let mut undo = UndoManager::new(0);
    edit(&mut a, |tx| tx.text("t").insert(0, "first").unwrap());
    let v = a.version().clone();
    edit(&mut a, |tx| {
        tx.text("t").delete(0, 5).unwrap();
        tx.text("t").insert(0, "second").unwrap()
    });
    let change = a.revert_to(&v, 10).unwrap();
    undo.record(&a, change.as_ref(), 10);
    assert_eq!(a.text("t").to_string(), "first");
    undo.undo(&mut a, 20).unwrap();
    assert_eq!(a.text("t").to_string(), "second");
    undo.redo(&mut a, 30).unwrap();
    assert_eq!(a.text("t").to_string(), "first");
    a.check().unwrap();
}

#[test]
fn a_conflict_comes_back_with_a_revert() {
    let (ra, rb) = (ReplicaId::from_u128(1), ReplicaId::from_u128(2));
    let mut a = Doc::new(ra);
    let mut b = Doc::new(rb);
    edit(&mut a, |tx| {
        tx.register("s", Rule::MultiValue).set("x", 5).unwrap()
    });
    edit(&mut b, |tx| {
        tx.register("s", Rule::MultiValue).set("y", 5).unwrap()
    });
    sync(&mut a, &mut b);
    let conflicted = a.version().clone();
    let json = a.to_json();
    edit(&mut a, |tx| {
        tx.register("s", Rule::MultiValue).set("z", 9).unwrap()
    });
    assert!(a.register("s", Rule::MultiValue).conflicts().is_empty());
    a.revert_to(&conflicted, 10).unwrap();
    assert_eq!(a.to_json(), json);
    assert_eq!(a.register("s", Rule::MultiValue).conflicts().len(), 2);
    sync(&mut a, &mut b);
    assert_eq!(b.to_json(), json);
}
