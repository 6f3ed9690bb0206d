//! Real editing traces (`../shared/traces`) reproduce their `endContent`: replayed
//! locally, after an encode → decode round trip, and on a second replica that only
//! ever sees deltas cut at random points of the history.

use std::path::PathBuf;

use chorus_doc::Doc;
use chorus_trace::{ConcTxn, FIELD, Patch, SeqTxn, Trace, describe_mismatch, load, schedule};

use crate::util::{Rng, rid};

const TRACES: [&str; 3] = [
    "automerge-paper.json.gz",
    "seph-blog1.json.gz",
    "friendsforever.json.gz",
];

fn trace_path(name: &str) -> PathBuf {
    let path = chorus_trace::traces_dir().join(name);
    assert!(
        path.is_file(),
        "trace {} is missing (set CHORUS_TRACES_DIR to the shared traces directory)",
        path.display()
    );
    path
}

fn assert_text(doc: &Doc, expected: &str, what: &str) {
    let actual = doc.text(FIELD).to_string();
    if let Some(m) = describe_mismatch(expected, &actual) {
        panic!("{what}: {m}");
    }
}

/// Average number of transactions between two deltas sent to the follower.
fn mean_gap(txns: usize) -> usize {
    // About 300 deltas per trace; fewer in debug builds, where replay is slower.
    let cuts = if cfg!(debug_assertions) { 60 } else { 300 };
    (txns / cuts).max(1)
}

/// The full state encodes, decodes (as the same and as another replica) and encodes
/// again to the same bytes, keeping the text.
fn check_encode_decode(doc: &Doc, expected: &str, name: &str) {
    let bytes = doc.encode();
    let same = Doc::decode(&bytes, doc.replica_id()).expect("own full state decodes");
    assert_text(&same, expected, &format!("{name}: decode(encode())"));
    assert_eq!(same.version(), doc.version(), "{name}: decoded version");
    assert!(
        same.encode() == bytes,
        "{name}: decode(encode(d)).encode() differs from d.encode()"
    );
    same.check()
        .unwrap_or_else(|e| panic!("{name}: check() after decode: {e}"));
    let other = Doc::decode(&bytes, rid(1_000)).expect("full state decodes as another replica");
    assert_text(
        &other,
        expected,
        &format!("{name}: decode as another replica"),
    );
}

/// Replica A replays a sequential trace; replica B, starting empty, applies
/// `A.encode_since(B.version())` at random cut points and finally once more.
fn sequential(name: &str) {
    let trace = load(&trace_path(name)).unwrap_or_else(|e| panic!("{name}: {e:#}"));
    let Trace::Sequential { start, end, txns } = &trace else {
        panic!("{name}: expected a sequential trace");
    };
    // chorus-trace's own replay.
    let replayed = chorus_trace::replay_sequential(start, txns)
        .unwrap_or_else(|e| panic!("{name}: replay_sequential: {e}"));
    assert_text(&replayed, end, &format!("{name}: replay_sequential"));
    drop(replayed);

    let mut a = Doc::new(rid(1));
    let mut b = Doc::new(rid(2));
    let mut rng = Rng::new(txns.len() as u64);
    let gap = mean_gap(txns.len());
    let mut deltas = 0;
    if !start.is_empty() {
        let mut tx = a.transact();
        tx.text(FIELD).insert(0, start).unwrap();
        tx.commit();
    }
    for (t, txn) in txns.iter().enumerate() {
        apply_seq_txn(&mut a, txn, name, t);
        if rng.below(gap) == 0 {
            let delta = a.encode_since(b.version());
            b.apply_update(&delta)
                .unwrap_or_else(|e| panic!("{name}: delta after transaction {t}: {e}"));
            assert_eq!(b.version(), a.version(), "{name}: B caught up after {t}");
            deltas += 1;
            if deltas % 50 == 0 {
                assert_eq!(
                    b.text(FIELD).to_string(),
                    a.text(FIELD).to_string(),
                    "{name}: B differs from A after transaction {t}"
                );
            }
        }
    }
    let delta = a.encode_since(b.version());
    b.apply_update(&delta).expect("final delta applies");
    assert!(deltas > 10, "{name}: only {deltas} cut points");

    assert_text(&a, end, &format!("{name}: local replay"));
    assert_text(
        &b,
        end,
        &format!("{name}: replica synced by {deltas} deltas"),
    );
    assert_eq!(b.version(), a.version());
    assert_eq!(b.pending_len(), 0);
    a.check()
        .unwrap_or_else(|e| panic!("{name}: check() on A: {e}"));
    b.check()
        .unwrap_or_else(|e| panic!("{name}: check() on B: {e}"));
    assert_eq!(
        a.text(FIELD).len_utf16(),
        end.encode_utf16().count(),
        "{name}: len_utf16"
    );
    check_encode_decode(&a, end, name);
    check_encode_decode(&b, end, &format!("{name} (B)"));
}

fn apply_seq_txn(doc: &mut Doc, txn: &SeqTxn, name: &str, t: usize) {
    apply_patches(doc, &txn.patches, name, t);
}

/// Applies one transaction's patches in one Chorus transaction.
fn apply_patches(doc: &mut Doc, patches: &[Patch], name: &str, t: usize) {
    let mut tx = doc.transact();
    let mut text = tx.text(FIELD);
    for p in patches {
        if p.del > 0 {
            text.delete(p.pos, p.del)
                .unwrap_or_else(|e| panic!("{name}: transaction {t}: delete: {e}"));
        }
        if !p.ins.is_empty() {
            text.insert(p.pos, &p.ins)
                .unwrap_or_else(|e| panic!("{name}: transaction {t}: insert: {e}"));
        }
    }
    tx.commit();
}

#[test]
fn trace_automerge_paper() {
    sequential("automerge-paper.json.gz");
}

#[test]
fn trace_seph_blog1() {
    sequential("seph-blog1.json.gz");
}

#[test]
fn trace_friendsforever() {
    let name = "friendsforever.json.gz";
    let trace = load(&trace_path(name)).unwrap_or_else(|e| panic!("{name}: {e:#}"));
    let Trace::Concurrent {
        end,
        num_agents,
        txns,
    } = &trace
    else {
        panic!("{name}: expected a concurrent trace");
    };
    assert!(
        *num_agents >= 2,
        "{name}: a concurrent trace with {num_agents} agent(s)"
    );

    // chorus-trace's replay.
    let merged = chorus_trace::replay_concurrent(*num_agents, txns)
        .unwrap_or_else(|e| panic!("{name}: replay_concurrent: {e:#}"));
    assert_text(&merged, end, &format!("{name}: replay_concurrent"));
    merged
        .check()
        .unwrap_or_else(|e| panic!("{name}: check(): {e}"));
    check_encode_decode(&merged, end, name);

    // Followers that only see deltas, cut at random points or delivered in reverse.
    let (follower, reversed) = concurrent_with_followers(name, *num_agents, txns);
    assert_text(
        &follower,
        end,
        &format!("{name}: follower synced by deltas"),
    );
    assert_eq!(
        follower.version(),
        merged.version(),
        "{name}: follower version"
    );
    follower
        .check()
        .unwrap_or_else(|e| panic!("{name}: follower check(): {e}"));
    assert_text(
        &reversed,
        end,
        &format!("{name}: updates delivered newest first"),
    );
    assert_eq!(
        reversed.version(),
        merged.version(),
        "{name}: reversed version"
    );
    reversed
        .check()
        .unwrap_or_else(|e| panic!("{name}: reversed check(): {e}"));
}

/// Replays with one replica per agent (ids `1..=num_agents`, as chorus-trace does) and
/// returns two followers: one that pulled deltas from a random agent at random points,
/// and one that received the transactions' updates newest first, so that all but the
/// oldest wait in its pending buffer.
fn concurrent_with_followers(name: &str, num_agents: usize, txns: &[ConcTxn]) -> (Doc, Doc) {
    let plan = schedule(num_agents, txns).unwrap_or_else(|e| panic!("{name}: schedule: {e:#}"));
    let mut agents: Vec<Doc> = (0..num_agents)
        .map(|a| Doc::new(rid(a as u128 + 1)))
        .collect();
    let mut follower = Doc::new(rid(100));
    let mut updates: Vec<Vec<u8>> = Vec::with_capacity(txns.len());
    let mut rng = Rng::new(7);
    let gap = mean_gap(txns.len());
    let mut deltas = 0;
    for (t, (txn, before)) in txns.iter().zip(&plan.before).enumerate() {
        let doc = &mut agents[txn.agent];
        for &i in before {
            doc.apply_update(&updates[i])
                .unwrap_or_else(|e| panic!("{name}: transaction {t}: update {i}: {e}"));
        }
        let version = doc.version().clone();
        apply_patches(doc, &txn.patches, name, t);
        updates.push(doc.encode_since(&version));

        if rng.below(gap) == 0 {
            let from = rng.below(num_agents);
            let delta = agents[from].encode_since(follower.version());
            follower
                .apply_update(&delta)
                .unwrap_or_else(|e| panic!("{name}: follower delta after {t}: {e}"));
            assert_eq!(
                follower.pending_len(),
                0,
                "{name}: deltas from one agent never wait"
            );
            deltas += 1;
        }
    }
    for (a, doc) in agents.iter().enumerate() {
        let delta = doc.encode_since(follower.version());
        follower
            .apply_update(&delta)
            .unwrap_or_else(|e| panic!("{name}: final delta from agent {a}: {e}"));
    }
    assert!(deltas > 10, "{name}: only {deltas} cut points");

    // The whole history newest first: every update but the last waits in the pending
    // buffer, and the oldest one unblocks them all.
    let mut reversed = Doc::new(rid(101));
    for t in (0..updates.len()).rev() {
        reversed
            .apply_update(&updates[t])
            .unwrap_or_else(|e| panic!("{name}: update {t} delivered newest first: {e}"));
        if t > 0 {
            assert_eq!(
                reversed.version().total_ops(),
                0,
                "{name}: nothing applies early"
            );
        }
    }
    assert_eq!(reversed.pending_len(), 0, "{name}: all unblocked");
    (follower, reversed)
}

#[test]
fn all_shared_traces_are_found() {
    let found: Vec<String> = chorus_trace::default_traces()
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    for name in TRACES {
        assert!(
            found.iter().any(|f| f == name),
            "{name} not among default_traces(): {found:?}"
        );
    }
}
