//! Events: a randomized test applies every emitted event to a shadow model of each
//! replica and checks, after every step, that the model equals the document.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use chorus_doc::{
    Diff, Doc, Event, Kind, ListDelta, MapValue, Origin, ReplicaId, Rule, TextDelta, TextUnit,
    UndoManager, Value,
};

/// A tiny deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// What a replica's observers saw, applied: texts in chars and in UTF-16 units.
#[derive(Default, Debug)]
struct Shadow {
    chars: HashMap<Vec<String>, Vec<char>>,
    utf16: HashMap<Vec<String>, Vec<u16>>,
    lists: HashMap<Vec<String>, Vec<Value>>,
    counters: HashMap<Vec<String>, i64>,
    registers: HashMap<Vec<String>, (Option<Value>, usize)>,
    maps: HashMap<Vec<String>, BTreeMap<String, MapValue>>,
}

fn apply_text<T: Clone>(s: &mut Vec<T>, delta: &[TextDelta], units: impl Fn(&str) -> Vec<T>) {
    let mut pos = 0;
    for d in delta {
        match d {
            TextDelta::Retain(n) => pos += n,
            TextDelta::Insert(t) => {
                let u = units(t);
                let n = u.len();
                s.splice(pos..pos, u);
                pos += n;
            }
            TextDelta::Delete(n) => {
                s.drain(pos..pos + n);
            }
        }
        assert!(pos <= s.len(), "delta runs past the end");
    }
}

impl Shadow {
    fn apply(&mut self, e: &Event, unit: TextUnit) {
        for c in &e.changes {
            let p = c.path.clone();
            match &c.diff {
                Diff::Text(d) => match unit {
                    TextUnit::Char => {
                        apply_text(self.chars.entry(p).or_default(), d, |t| t.chars().collect())
                    }
                    TextUnit::Utf16 => apply_text(self.utf16.entry(p).or_default(), d, |t| {
                        t.encode_utf16().collect()
                    }),
                },
                // Lists and the rest are checked once, from the char observer.
                _ if unit == TextUnit::Utf16 => {}
                Diff::List(d) => {
                    let l = self.lists.entry(p).or_default();
                    let mut pos = 0;
                    for op in d {
                        match op {
                            ListDelta::Retain(n) => pos += n,
                            ListDelta::Insert(v) => {
                                l.splice(pos..pos, v.iter().cloned());
                                pos += v.len();
                            }
                            ListDelta::Delete(n) => {
                                l.drain(pos..pos + n);
                            }
                        }
                    }
                }
                Diff::Counter { delta, value } => {
                    let v = self.counters.entry(p).or_default();
                    *v = v.wrapping_add(*delta);
                    assert_eq!(v, value, "counter delta and value disagree");
                }
                Diff::Register {
                    value, conflicts, ..
                } => {
                    self.registers.insert(p, (value.clone(), conflicts.len()));
                }
                Diff::Map(keys) => {
                    let m = self.maps.entry(p).or_default();
                    for k in keys {
                        match &k.value {
                            Some(v) => m.insert(k.key.clone(), v.clone()),
                            None => m.remove(&k.key),
                        };
                    }
                }
                _ => unreachable!("unknown diff"),
            }
        }
    }

    fn check(&self, doc: &Doc) {
        let p = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let t = doc.text("t").to_string();
        let chars: String = self
            .chars
            .get(&p(&["t"]))
            .map(|c| c.iter().collect())
            .unwrap_or_default();
        assert_eq!(chars, t, "char-delta shadow of text t");
        let u16s = self.utf16.get(&p(&["t"])).cloned().unwrap_or_default();
        assert_eq!(String::from_utf16(&u16s).unwrap(), t, "utf16 shadow of t");
        let sub = doc.map("m").map("sub");
        let tx: String = self
            .chars
            .get(&p(&["m", "sub", "tx"]))
            .map(|c| c.iter().collect())
            .unwrap_or_default();
        assert_eq!(tx, sub.text("tx").to_string(), "nested text");
        assert_eq!(
            self.lists.get(&p(&["l"])).cloned().unwrap_or_default(),
            doc.list("l").to_vec(),
            "list"
        );
        assert_eq!(
            self.counters.get(&p(&["c"])).copied().unwrap_or(0),
            doc.counter("c").value(),
            "counter"
        );
        assert_eq!(
            self.counters
                .get(&p(&["m", "sub", "n"]))
                .copied()
                .unwrap_or(0),
            sub.counter("n").value(),
            "nested counter"
        );
        for (name, rule) in [("r", Rule::Lww), ("mv", Rule::MultiValue)] {
            let r = doc.register(name, rule);
            let want = (r.value(), r.conflicts().len());
            let got = self
                .registers
                .get(&p(&[name]))
                .cloned()
                .unwrap_or((None, 0));
            assert_eq!(got, want, "register {name}");
        }
        for (path, view) in [(p(&["m"]), doc.map("m")), (p(&["m", "sub"]), sub)] {
            let want: BTreeMap<String, MapValue> =
                view.iter().map(|(k, v)| (k.to_string(), v)).collect();
            let got = self.maps.get(&path).cloned().unwrap_or_default();
            assert_eq!(got, want, "map {path:?}");
        }
    }
}

struct Replica {
    doc: Doc,
    undo: UndoManager,
    seen: Arc<Mutex<Vec<(TextUnit, Event)>>>,
    shadow: Shadow,
}

fn replica(n: u128) -> Replica {
    let mut doc = Doc::new(ReplicaId::from_u128(n));
    let seen = Arc::new(Mutex::new(Vec::new()));
    for unit in [TextUnit::Char, TextUnit::Utf16] {
        let s = seen.clone();
        doc.observe(unit, move |_, e| s.lock().unwrap().push((unit, e.clone())));
    }
    Replica {
        doc,
        undo: UndoManager::new(0),
        seen,
        shadow: Shadow::default(),
    }
}

const WORDS: [&str; 5] = ["a", "bc", "😀", "é😀x", "hello"];

fn local_op(rng: &mut Rng, r: &mut Replica, now: u64) {
    match rng.below(8) {
        0 => {
            r.undo.undo(&mut r.doc, now).unwrap();
            return;
        }
        1 => {
            r.undo.redo(&mut r.doc, now).unwrap();
            return;
        }
        _ => {}
    }
    let doc = &mut r.doc;
    let mut tx = doc.transact();
    for _ in 0..1 + rng.below(3) {
        match rng.below(10) {
            0 | 1 => {
                let mut t = tx.text("t");
                let len = t.len();
                if len > 0 && rng.below(3) == 0 {
                    let pos = rng.below(len);
                    let n = 1 + rng.below((len - pos).min(4));
                    t.delete(pos, n).unwrap();
                } else {
                    t.insert(rng.below(len + 1), WORDS[rng.below(WORDS.len())])
                        .unwrap();
                }
            }
            2 => {
                let mut l = tx.list("l");
                let len = l.len();
                if len > 0 && rng.below(3) == 0 {
                    l.delete(rng.below(len), 1).unwrap();
                } else {
                    l.insert(rng.below(len + 1), rng.below(100) as i64).unwrap();
                }
            }
            3 => tx.counter("c").add(rng.below(7) as i64 - 3).unwrap(),
            4 => tx
                .register("r", Rule::Lww)
                .set(rng.below(5) as i64, now)
                .unwrap(),
            5 => tx
                .register("mv", Rule::MultiValue)
                .set(WORDS[rng.below(WORDS.len())], now)
                .unwrap(),
            6 => {
                let key = format!("k{}", rng.below(3));
                let mut m = tx.map("m");
                if rng.below(3) == 0 {
                    m.delete(&key).unwrap();
                } else {
                    m.set(&key, rng.below(4) as i64).unwrap();
                }
            }
            7 => {
                let mut m = tx.map("m");
                let mut sub = m.map("sub").unwrap();
                sub.counter("n").unwrap().add(1).unwrap();
            }
            8 => {
                let mut m = tx.map("m");
                let mut sub = m.map("sub").unwrap();
                let mut t = sub.text("tx").unwrap();
                let len = t.len();
                t.insert(rng.below(len + 1), WORDS[rng.below(WORDS.len())])
                    .unwrap();
            }
            _ => {
                // Sometimes the nested map is replaced by a value (a conflict when
                // concurrent), and later brought back.
                let mut m = tx.map("m");
                if rng.below(2) == 0 {
                    m.set("sub", "gone").unwrap();
                } else {
                    m.map("sub").unwrap();
                }
            }
        }
    }
    if rng.below(8) == 0 {
        tx.rollback();
    } else {
        let c = tx.commit();
        r.undo.record(doc, c.as_ref(), now);
    }
}

fn drain(r: &mut Replica, expect_local: Option<bool>) {
    let events: Vec<_> = std::mem::take(&mut *r.seen.lock().unwrap());
    for (unit, e) in &events {
        if let Some(local) = expect_local {
            assert_eq!(matches!(e.origin, Origin::Local), local, "origin");
        }
        r.shadow.apply(e, *unit);
    }
    r.shadow.check(&r.doc);
}

#[test]
fn events_rebuild_every_replica() {
    let seeds: u64 = std::env::var("CHORUS_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    for seed in 0..seeds {
        let result = std::panic::catch_unwind(|| run(seed));
        if let Err(e) = result {
            panic!("events seed {seed} failed: {e:?}");
        }
    }
}

fn run(seed: u64) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (seed + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let mut rs: Vec<Replica> = (1..=3).map(|n| replica(n * 1000 + seed as u128)).collect();
    for step in 0..120u64 {
        let i = rng.below(rs.len());
        if rng.below(3) == 0 {
            let j = (i + 1 + rng.below(rs.len() - 1)) % rs.len();
            let update = rs[j].doc.encode_since(rs[i].doc.version());
            rs[i].doc.apply_update(&update).unwrap();
            drain(&mut rs[i], Some(false));
        } else {
            local_op(&mut rng, &mut rs[i], 1_000 + step * 10);
            drain(&mut rs[i], Some(true));
        }
    }
    // Everyone syncs with everyone: the shadows still match, and all agree.
    for _ in 0..2 {
        for i in 0..rs.len() {
            for j in 0..rs.len() {
                if i != j {
                    let update = rs[j].doc.encode_since(rs[i].doc.version());
                    rs[i].doc.apply_update(&update).unwrap();
                    drain(&mut rs[i], None);
                }
            }
        }
    }
    for r in &rs {
        r.doc.check().unwrap();
        assert_eq!(r.doc.to_json(), rs[0].doc.to_json());
    }
    // A fresh replica loading the whole state hears all of it in one event.
    let mut fresh = replica(7);
    fresh.doc.apply_update(&rs[0].doc.encode()).unwrap();
    drain(&mut fresh, Some(false));
    let _ = Kind::Text;
}

#[test]
fn text_delta_units() {
    let mut a = replica(1);
    let mut tx = a.doc.transact();
    tx.text("t").insert(0, "😀b").unwrap();
    tx.commit();
    drain(&mut a, Some(true));
    let mut b = replica(2);
    b.doc.apply_update(&a.doc.encode()).unwrap();
    drain(&mut b, Some(false));
    let mut tx = b.doc.transact();
    tx.text("t").insert(1, "x").unwrap();
    tx.commit();
    let events = b.seen.lock().unwrap().clone();
    let text_of = |unit| {
        events
            .iter()
            .find(|(u, _)| *u == unit)
            .map(|(_, e)| e.changes[0].diff.clone())
            .unwrap()
    };
    assert_eq!(
        text_of(TextUnit::Char),
        Diff::Text(vec![TextDelta::Retain(1), TextDelta::Insert("x".into())])
    );
    assert_eq!(
        text_of(TextUnit::Utf16),
        Diff::Text(vec![TextDelta::Retain(2), TextDelta::Insert("x".into())])
    );
    drain(&mut b, Some(true));
}
