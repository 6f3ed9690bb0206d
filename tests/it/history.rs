//! History over the randomized every-type runs of `types_convergence`: each run takes
//! snapshots (a replica's version and JSON) at random moments; after the final sync,
//! on every replica:
//!
//! - `at(version)` shows exactly the JSON recorded then;
//! - for random pairs of snapshots, the `diff` between them, applied to a shadow of
//!   every container at the first (in chars, and in UTF-16 units), gives the state at
//!   the second;
//! - `fork_at` a snapshot shows it, edits, and merges back: all converge;
//! - `revert_to` a snapshot shows its JSON (but for merge registers, which cannot go
//!   back), and converges with a concurrent edit made elsewhere, which survives.

use std::collections::BTreeMap;

use chorus_doc::{
    Checkout, Diff, Doc, Event, Kind, ListDelta, ListView, MapValue, MapView, RegisterView, Rule,
    TextDelta, TextUnit, TextView, Value,
};

use crate::types_convergence::{KEYS, Longest, Sim, Snapshot, change_message, longest, run_many};
use crate::util::{Rng, rid, seeds, writer_of};

/// Where the views of a document or of a checkout come from.
trait Source {
    fn text(&self, name: &str) -> TextView<'_>;
    fn list(&self, name: &str) -> ListView<'_>;
    fn map(&self, name: &str) -> MapView<'_>;
    fn counter_value(&self, name: &str) -> i64;
    fn register(&self, name: &str, rule: Rule) -> RegisterView<'_>;
}

impl Source for Doc {
    fn text(&self, name: &str) -> TextView<'_> {
        Doc::text(self, name)
    }
    fn list(&self, name: &str) -> ListView<'_> {
        Doc::list(self, name)
    }
    fn map(&self, name: &str) -> MapView<'_> {
        Doc::map(self, name)
    }
    fn counter_value(&self, name: &str) -> i64 {
        Doc::counter(self, name).value()
    }
    fn register(&self, name: &str, rule: Rule) -> RegisterView<'_> {
        Doc::register(self, name, rule)
    }
}

impl Source for Checkout<'_> {
    fn text(&self, name: &str) -> TextView<'_> {
        Checkout::text(self, name)
    }
    fn list(&self, name: &str) -> ListView<'_> {
        Checkout::list(self, name)
    }
    fn map(&self, name: &str) -> MapView<'_> {
        Checkout::map(self, name)
    }
    fn counter_value(&self, name: &str) -> i64 {
        Checkout::counter(self, name).value()
    }
    fn register(&self, name: &str, rule: Rule) -> RegisterView<'_> {
        Checkout::register(self, name, rule)
    }
}

/// One container's state, as an observer following events would hold it.
#[derive(Clone, Debug, PartialEq)]
enum State {
    Text(String),
    List(Vec<Value>),
    Counter(i64),
    Register(Option<Value>, Vec<Value>),
    /// Per key: the shown value and whether the key is in conflict.
    Map(BTreeMap<String, (MapValue, bool)>),
}

impl State {
    fn empty(kind: &Kind) -> State {
        match kind {
            Kind::Text => State::Text(String::new()),
            Kind::List => State::List(Vec::new()),
            Kind::Counter => State::Counter(0),
            Kind::Register(_) => State::Register(None, Vec::new()),
            Kind::Map => State::Map(BTreeMap::new()),
        }
    }
}

type Shadow = BTreeMap<(Vec<String>, String), State>;

fn key(path: &[&str], kind: &Kind) -> (Vec<String>, String) {
    (
        path.iter().map(|s| s.to_string()).collect(),
        format!("{kind:?}"),
    )
}

fn register_state(r: RegisterView<'_>) -> State {
    State::Register(
        r.value(),
        r.conflicts().into_iter().map(|w| w.value).collect(),
    )
}

fn map_state(m: MapView<'_>) -> State {
    State::Map(
        m.keys()
            .filter_map(|k| Some((k.to_owned(), (m.get(k)?, !m.conflicts(k).is_empty()))))
            .collect(),
    )
}

/// Every container the runs use, read from `s`.
fn read(s: &impl Source) -> Shadow {
    let mut out = Shadow::new();
    for name in ["t", "dual"] {
        out.insert(
            key(&[name], &Kind::Text),
            State::Text(s.text(name).to_string()),
        );
    }
    for name in ["c", "dual"] {
        out.insert(
            key(&[name], &Kind::Counter),
            State::Counter(s.counter_value(name)),
        );
    }
    out.insert(key(&["l"], &Kind::List), State::List(s.list("l").to_vec()));
    for (name, rule) in [
        ("lww", Rule::Lww),
        ("mv", Rule::MultiValue),
        ("max", Rule::merge("max")),
        ("union", Rule::merge("union")),
        ("longest", longest()),
    ] {
        let kind = Kind::Register(rule.clone());
        out.insert(key(&[name], &kind), register_state(s.register(name, rule)));
    }
    let m = s.map("m");
    out.insert(key(&["m"], &Kind::Map), map_state(m));
    for k in KEYS {
        let path = ["m", k];
        out.insert(key(&path, &Kind::Text), State::Text(m.text(k).to_string()));
        out.insert(
            key(&path, &Kind::Counter),
            State::Counter(m.counter(k).value()),
        );
        out.insert(key(&path, &Kind::Map), map_state(m.map(k)));
        let lww = Kind::Register(Rule::Lww);
        out.insert(key(&path, &lww), register_state(m.register(k, Rule::Lww)));
    }
    out
}

/// Applies `event` to `shadow` as an observer would.
fn apply(shadow: &mut Shadow, event: &Event, unit: TextUnit, ctx: &str) {
    for c in &event.changes {
        let path: Vec<&str> = c.path.iter().map(String::as_str).collect();
        let state = shadow
            .entry(key(&path, &c.kind))
            .or_insert_with(|| State::empty(&c.kind));
        match (state, &c.diff) {
            (State::Text(s), Diff::Text(delta)) => *s = apply_text(s, delta, unit, ctx),
            (State::List(l), Diff::List(delta)) => {
                let mut out = Vec::new();
                let mut at = 0;
                for d in delta {
                    match d {
                        ListDelta::Retain(n) => {
                            out.extend_from_slice(&l[at..at + n]);
                            at += n;
                        }
                        ListDelta::Insert(v) => out.extend(v.iter().cloned()),
                        ListDelta::Delete(n) => at += n,
                    }
                }
                out.extend_from_slice(&l[at..]);
                *l = out;
            }
            (State::Counter(v), Diff::Counter { delta, value }) => {
                assert_eq!(v.wrapping_add(*delta), *value, "{ctx}: counter delta");
                *v = *value;
            }
            (
                State::Register(v, conflicts),
                Diff::Register {
                    value,
                    conflicts: now,
                    was_conflict,
                },
            ) => {
                assert_eq!(*was_conflict, !conflicts.is_empty(), "{ctx}: was_conflict");
                *v = value.clone();
                *conflicts = now.iter().map(|w| w.value.clone()).collect();
            }
            (State::Map(keys), Diff::Map(changes)) => {
                for k in changes {
                    match &k.value {
                        None => {
                            keys.remove(&k.key);
                        }
                        Some(v) => {
                            keys.insert(k.key.clone(), (v.clone(), k.conflict));
                        }
                    }
                }
            }
            (state, diff) => panic!("{ctx}: {diff:?} does not fit {state:?}"),
        }
    }
}

fn apply_text(s: &str, delta: &[TextDelta], unit: TextUnit, ctx: &str) -> String {
    match unit {
        TextUnit::Char => {
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
            assert!(at <= chars.len(), "{ctx}: delta past the end");
            out.extend(&chars[at..]);
            out
        }
        _ => {
            let units: Vec<u16> = s.encode_utf16().collect();
            let mut out: Vec<u16> = Vec::new();
            let mut at = 0;
            for d in delta {
                match d {
                    TextDelta::Retain(n) => {
                        out.extend_from_slice(&units[at..at + n]);
                        at += n;
                    }
                    TextDelta::Insert(t) => out.extend(t.encode_utf16()),
                    TextDelta::Delete(n) => at += n,
                }
            }
            out.extend_from_slice(&units[at..]);
            String::from_utf16(&out).unwrap_or_else(|_| panic!("{ctx}: delta splits a pair"))
        }
    }
}

/// The snapshot's JSON and `json` as they compare: without the merge register of the
/// application's rule when the snapshot's replica did not know the rule yet.
fn comparable(snap: &Snapshot, json: &serde_json::Value) -> (serde_json::Value, serde_json::Value) {
    let mut a = snap.json.clone();
    let mut b = json.clone();
    if !snap.knew_longest {
        for j in [&mut a, &mut b] {
            j.as_object_mut().map(|o| o.remove("longest"));
        }
    }
    (a, b)
}

/// Root fields that hold nothing read as absent: a field first used after a version
/// exists, empty, after a revert to it.
fn without_empty_roots(mut j: serde_json::Value) -> serde_json::Value {
    if let Some(o) = j.as_object_mut() {
        o.retain(|_, v| {
            !(v.is_null()
                || v == &serde_json::json!("")
                || v == &serde_json::json!(0)
                || v.as_array().is_some_and(|a| a.is_empty())
                || v.as_object().is_some_and(|m| m.is_empty()))
        });
    }
    j
}

fn sync_all(docs: &mut [Doc]) {
    for _ in 0..2 {
        for i in 0..docs.len() {
            for j in 0..docs.len() {
                if i != j {
                    let u = docs[i].encode_since(docs[j].version());
                    docs[j].apply_update(&u).unwrap();
                }
            }
        }
    }
}

/// Every text of `src` (the root texts and the texts in map "m").
fn texts<'s, S: Source>(src: &'s S) -> Vec<(String, TextView<'s>)> {
    let mut out = vec![
        ("t".to_string(), src.text("t")),
        ("dual".to_string(), src.text("dual")),
    ];
    let m = src.map("m");
    for k in m.keys() {
        if m.get(k) == Some(MapValue::Container(Kind::Text)) {
            out.push((format!("m.{k}"), m.text(k)));
        }
    }
    out
}

/// Blame of every text of `src`: the runs cover the text; every char's author, told
/// by the char itself (each writer types its own chars, `writer_of`; `extra` are other
/// typists' strings), is the run's replica; a recorded message names the change's
/// replica and first op, as the runs wrote it.
fn check_blame<S: Source>(
    src: &S,
    writers: &[chorus_doc::ReplicaId],
    extra: &[(&str, chorus_doc::ReplicaId)],
    ctx: &str,
) {
    for (name, t) in texts(src) {
        let text: Vec<char> = t.to_string().chars().collect();
        let runs = t.blame(0..text.len()).unwrap();
        let mut at = 0;
        for b in &runs {
            assert_eq!(
                b.range.start, at,
                "{ctx}: {name}: blame runs are contiguous"
            );
            assert!(b.range.end > at, "{ctx}: {name}: an empty blame run");
            at = b.range.end;
            for (k, &c) in text[b.range.clone()].iter().enumerate() {
                let who = writer_of(c)
                    .map(|w| writers[w])
                    .or_else(|| extra.iter().find(|(s, _)| s.contains(c)).map(|&(_, r)| r));
                assert_eq!(
                    who,
                    Some(b.change.replica),
                    "{ctx}: {name}: char {} ({c:?}) blamed on the wrong replica",
                    b.range.start + k
                );
            }
            let c = &b.change;
            assert!(!c.seqs.is_empty(), "{ctx}: {name}: a change without ops");
            if let Some(m) = &c.message {
                assert_eq!(
                    **m,
                    change_message(c.replica, c.seqs.start),
                    "{ctx}: {name}: the message of another change"
                );
                assert!(c.time.is_some(), "{ctx}: {name}: message without time");
            }
        }
        assert_eq!(at, text.len(), "{ctx}: {name}: blame covers the text");
        let utf16 = t.blame_utf16(0..t.len_utf16()).unwrap();
        assert_eq!(utf16.len(), runs.len(), "{ctx}: {name}: UTF-16 blame runs");
        assert_eq!(
            utf16.last().map_or(0, |b| b.range.end),
            t.len_utf16(),
            "{ctx}: {name}: UTF-16 blame covers the text"
        );
    }
}

/// The history listing accounts for every op once, in groups of one writer each,
/// with versions that grow to the document's and open.
fn check_listing(doc: &Doc, rng: &mut Rng, ctx: &str) {
    for gap in [0, 60_000, u64::MAX] {
        let groups = doc.history(gap);
        let ops: u64 = groups
            .iter()
            .map(|g| g.inserted + g.deleted + g.other)
            .sum();
        assert_eq!(
            ops,
            doc.version().total_ops(),
            "{ctx}: gap {gap}: ops listed"
        );
        let mut prev = chorus_doc::VersionVector::new();
        for g in &groups {
            assert!(!g.changes.is_empty(), "{ctx}: an empty group");
            for c in &g.changes {
                assert_eq!(c.replica, g.replica, "{ctx}: a change in another's group");
                if let Some(m) = &c.message {
                    assert_eq!(**m, change_message(c.replica, c.seqs.start), "{ctx}");
                }
            }
            for (r, n) in prev.iter() {
                assert!(g.version.get(&r) >= n, "{ctx}: group versions shrink");
            }
            assert!(
                g.version.total_ops() > prev.total_ops(),
                "{ctx}: a group adds nothing"
            );
            prev = g.version.clone();
        }
        assert_eq!(
            &prev,
            doc.version(),
            "{ctx}: gap {gap}: last group's version"
        );
        if !groups.is_empty() {
            let g = &groups[rng.below(groups.len())];
            doc.at(&g.version)
                .unwrap_or_else(|e| panic!("{ctx}: a group's version does not open: {e}"));
        }
    }
}

fn check_history(sim: &Sim) {
    let seed = sim.seed;
    let mut rng = Rng::new(seed ^ 0x4157_0e1c);
    let writers: Vec<_> = sim.replicas.iter().map(|r| r.doc.replica_id()).collect();
    for (i, r) in sim.replicas.iter().enumerate() {
        let ctx = format!("seed {seed}: replica {i}");
        check_blame(&r.doc, &writers, &[], &ctx);
        check_listing(&r.doc, &mut rng, &ctx);
    }
    // Every snapshot, read at its version on every replica.
    for (i, r) in sim.replicas.iter().enumerate() {
        for (k, snap) in sim.snapshots.iter().enumerate() {
            let at = r
                .doc
                .at(&snap.version)
                .unwrap_or_else(|e| panic!("seed {seed}: replica {i}: at(snapshot {k}): {e}"));
            let (want, got) = comparable(snap, &at.to_json());
            assert_eq!(
                got, want,
                "seed {seed}: replica {i}: at(snapshot {k}, taken on replica {})",
                snap.replica
            );
            if k % 4 == 0 {
                check_blame(
                    &at,
                    &writers,
                    &[],
                    &format!("seed {seed}: at(snapshot {k})"),
                );
            }
        }
    }
    if sim.snapshots.is_empty() {
        return;
    }
    let pick = |rng: &mut Rng| &sim.snapshots[rng.below(sim.snapshots.len())];
    // Diffs between random pairs, applied to a shadow.
    let doc = &sim.replicas[rng.below(sim.replicas.len())].doc;
    for round in 0..6 {
        let (a, b) = (pick(&mut rng), pick(&mut rng));
        let unit = if round % 2 == 0 {
            TextUnit::Char
        } else {
            TextUnit::Utf16
        };
        let ctx = format!("seed {seed}: diff round {round} ({unit:?})");
        let ev = doc.diff(&a.version, &b.version, unit).unwrap();
        let mut shadow = read(&doc.at(&a.version).unwrap());
        apply(&mut shadow, &ev, unit, &ctx);
        assert_eq!(shadow, read(&doc.at(&b.version).unwrap()), "{ctx}");
    }
    // To and from the current version (which needs no mask).
    let now = doc.version().clone();
    for (round, unit) in [TextUnit::Char, TextUnit::Utf16].into_iter().enumerate() {
        let a = pick(&mut rng);
        let ctx = format!("seed {seed}: diff to and from now, round {round} ({unit:?})");
        let ev = doc.diff(&a.version, &now, unit).unwrap();
        let mut shadow = read(&doc.at(&a.version).unwrap());
        apply(&mut shadow, &ev, unit, &ctx);
        assert_eq!(shadow, read(doc), "{ctx}");
        let ev = doc.diff(&now, &a.version, unit).unwrap();
        let mut shadow = read(doc);
        apply(&mut shadow, &ev, unit, &ctx);
        assert_eq!(shadow, read(&doc.at(&a.version).unwrap()), "{ctx}: back");
    }
    // A fork at a snapshot edits and merges back.
    let snap = pick(&mut rng);
    let mut docs: Vec<Doc> = sim.replicas.iter().map(|r| r.doc.clone()).collect();
    let from = rng.below(docs.len());
    let mut fork = docs[from].fork_at(&snap.version, rid(0xF0F0)).unwrap();
    fork.check().unwrap();
    let (want, got) = comparable(snap, &fork.to_json());
    assert_eq!(got, want, "seed {seed}: fork JSON");
    let mut tx = fork.transact();
    tx.text("t").insert(0, "<fork>").unwrap();
    tx.counter("c").add(3).unwrap();
    tx.map("m").set("a", "from the fork").unwrap();
    tx.commit();
    let back = fork.encode_since(&snap.version);
    docs[from].apply_update(&back).unwrap();
    docs.push(fork);
    sync_all(&mut docs);
    for (i, d) in docs.iter().enumerate() {
        d.check()
            .unwrap_or_else(|e| panic!("seed {seed}: fork merge, doc {i}: {e}"));
        assert_eq!(
            d.to_json(),
            docs[0].to_json(),
            "seed {seed}: fork merge, doc {i}"
        );
        assert!(d.text("t").to_string().contains("<fork>"));
    }
    // A revert to a snapshot, with a concurrent edit elsewhere.
    let snap = pick(&mut rng);
    let mut docs: Vec<Doc> = sim.replicas.iter().map(|r| r.doc.clone()).collect();
    let (a, b) = (rng.below(docs.len()), rng.below(docs.len() - 1));
    let b = if b >= a { b + 1 } else { b };
    let want = docs[a].at(&snap.version).unwrap().to_json();
    let dual = {
        let at = docs[a].at(&snap.version).unwrap();
        (at.text("dual").to_string(), at.counter("dual").value())
    };
    docs[a].revert_to(&snap.version, 2_000_000_000_000).unwrap();
    docs[a]
        .check()
        .unwrap_or_else(|e| panic!("seed {seed}: after revert: {e}"));
    let strip = |j: serde_json::Value| {
        let mut j = without_empty_roots(j);
        for k in ["max", "union", "longest", "dual"] {
            j.as_object_mut().map(|o| o.remove(k));
        }
        j
    };
    assert_eq!(
        strip(docs[a].to_json()),
        strip(want),
        "seed {seed}: revert JSON"
    );
    assert_eq!(
        (
            docs[a].text("dual").to_string(),
            docs[a].counter("dual").value()
        ),
        dual,
        "seed {seed}: revert of the two kinds of \"dual\""
    );
    let mut tx = docs[b].transact();
    let len = tx.text("t").len();
    tx.text("t").insert(len, "<concurrent>").unwrap();
    tx.commit();
    sync_all(&mut docs);
    for (i, d) in docs.iter().enumerate() {
        d.check()
            .unwrap_or_else(|e| panic!("seed {seed}: revert sync, doc {i}: {e}"));
        assert_eq!(
            d.to_json(),
            docs[0].to_json(),
            "seed {seed}: revert sync, doc {i}"
        );
        assert!(
            d.text("t").to_string().contains("<concurrent>"),
            "seed {seed}: the concurrent edit survives the revert"
        );
        let extra = [("<concurrent>", docs[b].replica_id())];
        check_blame(
            d,
            &writers,
            &extra,
            &format!("seed {seed}: after revert, doc {i}"),
        );
    }
    // A replica that applies the revert later shows it too (the revert made new ops).
    let mut late = Doc::new(rid(0x1A7E));
    late.add_merge_rule(std::sync::Arc::new(Longest)).unwrap();
    late.apply_update(&docs[0].encode()).unwrap();
    assert_eq!(late.to_json(), docs[0].to_json());
}

#[test]
fn history_of_every_type_over_a_faulty_network() {
    run_many(
        "history_of_every_type_over_a_faulty_network",
        0x4157_0000_0000,
        seeds(200),
        check_history,
    );
}
