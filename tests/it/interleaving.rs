//! Non-interleaving: runs typed concurrently at the same place stay contiguous after
//! merging (the point of FugueMax), for forwards and backwards typing, every assignment
//! of replica ids, and several merge orders.

use chorus_doc::Doc;

use crate::reference::RefDoc;
use crate::util::{FIELD, Rng, rid, text};

/// Distinct characters per typist, so that "contains the run" means "run is contiguous".
const RUNS: [&str; 4] = ["abcde", "fghij", "kl😀mn", "中文字𝄞z"];
const BASE_REPLICA: u128 = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// Shared doc "AB", typing between A and B.
    Between,
    /// Shared doc "AB", typing at the start.
    Start,
    /// Shared doc "AB", typing at the end.
    End,
    /// Empty doc.
    Empty,
}

impl Place {
    fn base(self) -> &'static str {
        if self == Place::Empty { "" } else { "AB" }
    }
    fn pos(self) -> usize {
        match self {
            Place::Between => 1,
            Place::Start | Place::Empty => 0,
            Place::End => 2,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    /// Appending char by char: run reads as typed.
    Forward,
    /// Every char inserted at the same position: run reads reversed.
    Backward,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Merge {
    /// Everybody's whole delta into replica 0 in index order; then 0's state to all.
    Star,
    /// Each replica receives every other's per-transaction updates, newest first
    /// (so most wait in the pending buffer), each one twice.
    ReverseDuplicated,
    /// Each replica receives all per-transaction updates in a random order.
    Shuffled,
}

fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![vec![]];
    }
    let mut out = Vec::new();
    for p in permutations(n - 1) {
        for k in 0..=p.len() {
            let mut q = p.clone();
            q.insert(k, n - 1);
            out.push(q);
        }
    }
    out
}

fn expected_run(run: &str, dir: Dir) -> String {
    match dir {
        Dir::Forward => run.to_string(),
        Dir::Backward => run.chars().rev().collect(),
    }
}

struct Typist {
    doc: Doc,
    model: RefDoc,
    /// One update per typed char (each its own transaction).
    updates: Vec<Vec<u8>>,
}

fn scenario(place: Place, dirs: &[Dir], ids: &[u128], merge: Merge, rng: &mut Rng) {
    let ctx = format!("place {place:?}, dirs {dirs:?}, ids {ids:?}, merge {merge:?}");
    let mut base = Doc::new(rid(BASE_REPLICA));
    let mut base_model = RefDoc::new(BASE_REPLICA);
    if !place.base().is_empty() {
        let mut tx = base.transact();
        tx.text(FIELD).insert(0, place.base()).unwrap();
        tx.commit();
        base_model.insert(0, place.base());
    }
    let base_bytes = base.encode();

    let mut typists: Vec<Typist> = ids
        .iter()
        .map(|&id| {
            let mut model = RefDoc::new(id);
            model.apply(&base_model.ops_since(&Default::default()));
            Typist {
                doc: Doc::decode(&base_bytes, rid(id)).expect("base decodes"),
                model,
                updates: Vec::new(),
            }
        })
        .collect();

    for (k, t) in typists.iter_mut().enumerate() {
        assert_eq!(text(&t.doc), place.base(), "{ctx}");
        for (j, ch) in RUNS[k].chars().enumerate() {
            let pos = match dirs[k] {
                Dir::Forward => place.pos() + j,
                Dir::Backward => place.pos(),
            };
            let before = t.doc.version().clone();
            let mut tx = t.doc.transact();
            tx.text(FIELD).insert(pos, &ch.to_string()).unwrap();
            tx.commit().expect("one op");
            t.updates.push(t.doc.encode_since(&before));
            t.model.insert(pos, &ch.to_string());
        }
        assert_eq!(text(&t.doc), t.model.text(), "{ctx}: local typing");
    }

    // The reference result: every model merged with every other.
    let all_ops: Vec<_> = typists
        .iter()
        .flat_map(|t| t.model.ops_since(&Default::default()))
        .collect();
    let mut oracle = RefDoc::new(u128::MAX);
    oracle.apply(&all_ops);
    let expected = oracle.text();

    let n = typists.len();
    match merge {
        Merge::Star => {
            for k in 1..n {
                let delta = typists[k].doc.encode_since(typists[0].doc.version());
                typists[0].doc.apply_update(&delta).expect("delta applies");
            }
            let state = typists[0].doc.encode();
            for t in typists.iter_mut().skip(1) {
                t.doc.apply_update(&state).expect("state applies");
            }
        }
        Merge::ReverseDuplicated | Merge::Shuffled => {
            let updates: Vec<Vec<Vec<u8>>> = typists.iter().map(|t| t.updates.clone()).collect();
            for (k, t) in typists.iter_mut().enumerate() {
                let mut inbox: Vec<&Vec<u8>> = updates
                    .iter()
                    .enumerate()
                    .filter(|&(j, _)| j != k)
                    .flat_map(|(_, u)| u.iter())
                    .collect();
                if merge == Merge::ReverseDuplicated {
                    inbox.reverse();
                    let again = inbox.clone();
                    inbox.extend(again);
                } else {
                    rng.shuffle(&mut inbox);
                }
                for u in inbox {
                    t.doc.apply_update(u).expect("update applies");
                }
                assert_eq!(t.doc.pending_len(), 0, "{ctx}: nothing left pending");
            }
        }
    }

    let result = text(&typists[0].doc);
    for (k, t) in typists.iter().enumerate() {
        assert_eq!(text(&t.doc), result, "{ctx}: replica {k} differs");
        assert_eq!(
            t.doc.version(),
            typists[0].doc.version(),
            "{ctx}: replica {k} version"
        );
        t.doc
            .check()
            .unwrap_or_else(|e| panic!("{ctx}: check: {e}"));
    }
    assert_eq!(result, expected, "{ctx}: differs from the reference model");
    let total =
        place.base().chars().count() + RUNS[..n].iter().map(|r| r.chars().count()).sum::<usize>();
    assert_eq!(result.chars().count(), total, "{ctx}: length");
    for k in 0..n {
        let run = expected_run(RUNS[k], dirs[k]);
        assert!(
            result.contains(&run),
            "{ctx}: run {run:?} of replica {k} is interleaved in {result:?}"
        );
    }
    let runs_len: usize = result.chars().count() - place.base().chars().count();
    let middle: String = match place {
        Place::Between => {
            assert!(
                result.starts_with('A') && result.ends_with('B'),
                "{ctx}: {result:?}"
            );
            result.chars().skip(1).take(runs_len).collect()
        }
        Place::Start => {
            assert!(result.ends_with("AB"), "{ctx}: {result:?}");
            result.chars().take(runs_len).collect()
        }
        Place::End => {
            assert!(result.starts_with("AB"), "{ctx}: {result:?}");
            result.chars().skip(2).collect()
        }
        Place::Empty => result.clone(),
    };
    // Runs typed forwards from the same origins are ordered by replica id.
    if dirs.iter().all(|&d| d == Dir::Forward) {
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&k| ids[k]);
        let by_id: String = order.iter().map(|&k| RUNS[k]).collect();
        assert_eq!(middle, by_id, "{ctx}: forward runs ordered by replica id");
    }
}

fn all_scenarios(n: usize, dir_sets: &[Vec<Dir>]) {
    let mut rng = Rng::new(n as u64);
    for perm in permutations(n) {
        let ids: Vec<u128> = perm.iter().map(|&p| p as u128 + 1).collect();
        for place in [Place::Between, Place::Start, Place::End, Place::Empty] {
            for dirs in dir_sets {
                for merge in [Merge::Star, Merge::ReverseDuplicated, Merge::Shuffled] {
                    scenario(place, dirs, &ids, merge, &mut rng);
                }
            }
        }
    }
}

fn dir_sets(n: usize) -> Vec<Vec<Dir>> {
    vec![
        vec![Dir::Forward; n],
        vec![Dir::Backward; n],
        (0..n)
            .map(|k| {
                if k % 2 == 0 {
                    Dir::Forward
                } else {
                    Dir::Backward
                }
            })
            .collect(),
    ]
}

#[test]
fn two_replicas_do_not_interleave() {
    all_scenarios(2, &dir_sets(2));
}

#[test]
fn three_replicas_do_not_interleave() {
    all_scenarios(3, &dir_sets(3));
}

#[test]
fn four_replicas_do_not_interleave() {
    all_scenarios(4, &dir_sets(4));
}

#[test]
fn reference_model_does_not_interleave_either() {
    // The oracle itself: two runs at the same place, both directions, both id orders.
    for (a, b) in [(1u128, 2u128), (2, 1)] {
        for back in [false, true] {
            let mut x = RefDoc::new(a);
            let mut y = RefDoc::new(b);
            for (j, (cx, cy)) in "abc".chars().zip("xyz".chars()).enumerate() {
                let pos = if back { 0 } else { j };
                x.insert(pos, &cx.to_string());
                y.insert(pos, &cy.to_string());
            }
            let ops_y = y.ops_since(&Default::default());
            let ops_x = x.ops_since(&Default::default());
            x.apply(&ops_y);
            y.apply(&ops_x);
            assert_eq!(x.text(), y.text());
            let (rx, ry) = if back { ("cba", "zyx") } else { ("abc", "xyz") };
            let expected = if a < b {
                format!("{rx}{ry}")
            } else {
                format!("{ry}{rx}")
            };
            assert_eq!(x.text(), expected, "ids {a},{b} backwards={back}");
        }
    }
}
