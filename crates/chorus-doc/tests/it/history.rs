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

fn commit_at(
    d: &mut Doc,
    message: &str,
    time: u64,
    f: impl FnOnce(&mut chorus_doc::Transaction<'_>),
) {
    let mut tx = d.transact();
    f(&mut tx);
    tx.commit_with(chorus_doc::CommitOptions::new().message(message).time(time))
        .unwrap();
}

/// (text, replica, message) of every blame run.
fn blame_of(t: chorus_doc::TextView<'_>) -> Vec<(String, ReplicaId, Option<String>)> {
    t.blame(0..t.len())
        .unwrap()
        .into_iter()
        .map(|b| {
            (
                t.slice(b.range.clone()).unwrap(),
                b.change.replica,
                b.change.message.as_deref().map(str::to_string),
            )
        })
        .collect()
}

#[test]
fn blame_names_who_typed_each_char_after_concurrent_edits() {
    for [ra, rb, rc] in permutations() {
        let mut a = Doc::new(ra);
        let mut b = Doc::new(rb);
        commit_at(&mut a, "greeting", 1_000, |tx| {
            tx.text("t").insert(0, "Hello world").unwrap()
        });
        sync(&mut a, &mut b);
        // Concurrently: a appends, b inserts in the middle and deletes "world".
        commit_at(&mut a, "bang", 2_000, |tx| {
            tx.text("t").insert(11, "!").unwrap()
        });
        commit_at(&mut b, "dear", 2_500, |tx| {
            let mut t = tx.text("t");
            t.insert(6, "dear ").unwrap();
            t.delete(11, 5).unwrap();
        });
        sync(&mut a, &mut b);
        let want = vec![
            ("Hello ".to_string(), ra, Some("greeting".to_string())),
            ("dear ".to_string(), rb, Some("dear".to_string())),
            ("!".to_string(), ra, Some("bang".to_string())),
        ];
        assert_eq!(a.text("t").to_string(), "Hello dear !");
        assert_eq!(blame_of(a.text("t")), want);
        assert_eq!(blame_of(b.text("t")), want);
        // A third replica that gets everything in one update sees the same.
        let mut c = Doc::new(rc);
        c.apply_update(&a.encode()).unwrap();
        c.check().unwrap();
        assert_eq!(blame_of(c.text("t")), want);
        let runs = c.text("t").blame(0..12).unwrap();
        assert_eq!(runs[1].change.time, Some(2_500));
        assert_eq!(
            runs[1].change.seqs,
            0..10,
            "b's change: 5 inserts, 5 deletes"
        );
        assert_eq!(runs[0].change.lamport, 1);
        // Part of the text, and in UTF-16.
        let part = c.text("t").blame(3..8).unwrap();
        assert_eq!(
            part.iter().map(|b| b.range.clone()).collect::<Vec<_>>(),
            [3..6, 6..8]
        );
        // Blame at a version before b's edit: all of it a's.
        let v = {
            let mut v = VersionVector::new();
            v.observe(ra, 11);
            v
        };
        let at = c.at(&v).unwrap();
        assert_eq!(
            blame_of(at.text("t")),
            [("Hello world".to_string(), ra, Some("greeting".to_string()))]
        );
    }
}

#[test]
fn blame_after_undo_and_revert_names_the_original_typist() {
    for [ra, rb, _] in permutations() {
        let mut a = Doc::new(ra);
        let mut b = Doc::new(rb);
        commit_at(&mut a, "a1", 10, |tx| {
            tx.text("t").insert(0, "abc").unwrap()
        });
        sync(&mut a, &mut b);
        let before = b.version().clone();
        // b deletes "b" and undoes it: the original char comes back, still a's.
        let mut undo = UndoManager::new(0);
        let mut tx = b.transact();
        tx.text("t").delete(1, 1).unwrap();
        let change = tx.commit();
        undo.record(&b, change.as_ref(), 20);
        undo.undo(&mut b, 30).unwrap();
        assert_eq!(b.text("t").to_string(), "abc");
        assert_eq!(
            blame_of(b.text("t")),
            [("abc".to_string(), ra, Some("a1".to_string()))]
        );
        // b types, a deletes everything concurrently, then b restores the version
        // before: a's text is back (undeleted, a's chars), b's concurrent text stays.
        commit_at(&mut b, "b1", 40, |tx| tx.text("t").insert(3, "XY").unwrap());
        edit(&mut a, |tx| tx.text("t").delete(0, 3).unwrap());
        sync(&mut a, &mut b);
        assert_eq!(b.text("t").to_string(), "XY");
        let at_revert = b.version().clone();
        b.revert_to_with(
            &before,
            50,
            chorus_doc::CommitOptions::new().message("restore"),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            b.text("t").to_string(),
            "abc",
            "the revert removes b's XY too"
        );
        sync(&mut a, &mut b);
        assert_eq!(
            blame_of(a.text("t")),
            [("abc".to_string(), ra, Some("a1".to_string()))]
        );
        // Restoring the version with "XY" brings b's own chars back, blamed on b.
        a.revert_to(&at_revert, 60).unwrap();
        assert_eq!(a.text("t").to_string(), "XY");
        assert_eq!(
            blame_of(a.text("t")),
            [("XY".to_string(), rb, Some("b1".to_string()))]
        );
        a.check().unwrap();
    }
}

#[test]
fn history_groups_changes_by_writer_and_time() {
    let (ra, rb) = (ReplicaId::from_u128(1), ReplicaId::from_u128(2));
    let mut a = Doc::new(ra);
    let mut b = Doc::new(rb);
    // a types three times within a minute, b once, then a again an hour later.
    commit_at(&mut a, "one", 0, |tx| {
        tx.text("t").insert(0, "one").unwrap()
    });
    commit_at(&mut a, "two", 20_000, |tx| {
        tx.text("t").insert(3, " two").unwrap()
    });
    commit_at(&mut a, "three", 50_000, |tx| {
        tx.counter("c").add(1).unwrap()
    });
    sync(&mut a, &mut b);
    commit_at(&mut b, "b", 60_000, |tx| tx.text("t").delete(0, 4).unwrap());
    sync(&mut a, &mut b);
    commit_at(&mut a, "later", 3_660_000, |tx| {
        tx.text("t").insert(0, "x").unwrap()
    });
    let groups = a.history(60_000);
    let summary: Vec<_> = groups
        .iter()
        .map(|g| {
            (
                g.replica,
                g.changes
                    .iter()
                    .map(|c| c.message.as_deref().unwrap().to_string())
                    .collect::<Vec<_>>(),
                (g.inserted, g.deleted, g.other),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                ra,
                vec!["one".into(), "two".into(), "three".into()],
                (7, 0, 1)
            ),
            (rb, vec!["b".into()], (0, 4, 0)),
            (ra, vec!["later".into()], (1, 0, 0)),
        ]
    );
    assert_eq!(groups[0].first_time(), Some(0));
    assert_eq!(groups[0].last_time(), Some(50_000));
    // Each group's version opens to the document just after it.
    let texts: Vec<String> = groups
        .iter()
        .map(|g| a.at(&g.version).unwrap().text("t").to_string())
        .collect();
    assert_eq!(texts, ["one two", "two", "xtwo"]);
    assert_eq!(&groups[2].version, a.version());
    // With no gap allowed, every change is its own group.
    assert_eq!(a.history(0).len(), 5);
    // The same listing on b, which got a's changes by sync.
    b.apply_update(&a.encode_since(b.version())).unwrap();
    assert_eq!(
        b.history(60_000)
            .iter()
            .map(|g| g.changes.len())
            .collect::<Vec<_>>(),
        [3, 1, 1]
    );
    // Changes without metadata group by writer alone.
    let mut c = Doc::new(ReplicaId::from_u128(3));
    edit(&mut c, |tx| tx.text("t").insert(0, "ab").unwrap());
    edit(&mut c, |tx| tx.text("t").insert(2, "c").unwrap());
    let g = c.history(0);
    assert_eq!(g.len(), 1);
    assert_eq!(g[0].changes.len(), 1);
    assert_eq!(g[0].changes[0].seqs, 0..3);
    assert_eq!(g[0].changes[0].time, None);
}

#[test]
fn undo_and_redo_can_carry_metadata() {
    use chorus_doc::CommitOptions;
    let mut a = Doc::new(ReplicaId::from_u128(1));
    let mut undo = UndoManager::new(0);
    let mut tx = a.transact();
    tx.text("t").insert(0, "abc").unwrap();
    let c = tx.commit_with(CommitOptions::new().message("type").time(10));
    undo.record(&a, c.as_ref(), 10);
    let mut tx = a.transact();
    tx.text("t").delete(0, 3).unwrap();
    let c = tx.commit();
    undo.record(&a, c.as_ref(), 20);
    assert!(
        undo.undo_with(&mut a, 30, CommitOptions::new().message("undo").time(30))
            .unwrap()
    );
    assert_eq!(a.text("t").to_string(), "abc");
    assert!(
        undo.redo_with(&mut a, 40, CommitOptions::new().time(40))
            .unwrap()
    );
    let last: Vec<_> = a
        .history(0)
        .iter()
        .flat_map(|g| g.changes.clone())
        .map(|c| (c.message.as_deref().map(str::to_string), c.time))
        .collect();
    assert_eq!(
        last,
        [
            (Some("type".to_string()), Some(10)),
            (None, None),
            (Some("undo".to_string()), Some(30)),
            (None, Some(40)),
        ]
    );
}
