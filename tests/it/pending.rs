//! The pending buffer: updates whose dependencies are missing wait, duplicates are
//! ignored, and a bounded buffer rejects (without changing anything) what would overflow.

use chorus_doc::{DecodeError, Doc, VersionVector};

use crate::util::{FIELD, delete, insert, rid, snapshot, text};

/// `doc` types each string as its own transaction; returns one update per transaction.
fn type_txns(doc: &mut Doc, parts: &[&str]) -> Vec<Vec<u8>> {
    parts
        .iter()
        .map(|s| {
            let before = doc.version().clone();
            let len = doc.text(FIELD).len();
            insert(doc, len, s);
            doc.encode_since(&before)
        })
        .collect()
}

#[test]
fn out_of_order_updates_wait_then_apply() {
    let mut a = Doc::new(rid(1));
    let parts = ["ab", "c😀", "de", "f", "中文"];
    let updates = type_txns(&mut a, &parts);
    let mut b = Doc::new(rid(2));

    // Everything but the first, newest first: nothing can be applied yet.
    let mut waiting = 0u64;
    for (k, u) in updates.iter().enumerate().skip(1).rev() {
        let report = b.apply_update(u).expect("a genuine update is accepted");
        assert_eq!(
            report.applied, 0,
            "update {k} depends on the missing first one"
        );
        waiting += parts[k].chars().count() as u64;
        assert_eq!(b.pending_len() as u64, waiting);
        assert_eq!(text(&b), "");
        assert!(b.version().is_empty(), "pending ops are not in the version");
    }
    // A duplicate of a pending update does not count twice.
    b.apply_update(&updates[3]).unwrap();
    assert_eq!(b.pending_len() as u64, waiting);
    b.check().unwrap();

    // The missing first update unblocks everything at once.
    let report = b.apply_update(&updates[0]).unwrap();
    let total: u64 = parts.iter().map(|p| p.chars().count() as u64).sum();
    assert_eq!(
        report.applied, total,
        "the call applies its own ops and the unblocked ones"
    );
    assert_eq!(b.pending_len(), 0);
    assert_eq!(text(&b), "abc😀def中文");
    assert_eq!(b.version(), a.version());
    b.check().unwrap();

    // Applying anything again is a no-op.
    let before = snapshot(&b);
    for u in &updates {
        let report = b.apply_update(u).unwrap();
        assert_eq!(report.applied, 0);
        assert!(
            report.duplicate > 0,
            "ops already known are reported as duplicates"
        );
    }
    let report = b.apply_update(&a.encode()).unwrap();
    assert_eq!(report.applied, 0);
    assert_eq!(report.duplicate, total);
    assert_eq!(snapshot(&b), before);
}

#[test]
fn deletes_wait_for_their_targets() {
    let mut a = Doc::new(rid(1));
    let ins = type_txns(&mut a, &["hello"]);
    let before = a.version().clone();
    delete(&mut a, 1, 3);
    let del = a.encode_since(&before);
    assert_eq!(text(&a), "ho");

    let mut c = Doc::new(rid(3));
    let report = c.apply_update(&del).unwrap();
    assert_eq!(report.applied, 0);
    assert_eq!(c.pending_len(), 3);
    assert_eq!(text(&c), "");
    let report = c.apply_update(&ins[0]).unwrap();
    assert_eq!(report.applied, 8);
    assert_eq!(text(&c), "ho");
    assert_eq!(c.pending_len(), 0);
    c.check().unwrap();
}

#[test]
fn unrelated_ops_do_not_wait_behind_pending_ones() {
    let mut a = Doc::new(rid(1));
    let ua = type_txns(&mut a, &["xy", "z"]);
    let mut c = Doc::new(rid(3));
    let uc = type_txns(&mut c, &["123"]);

    let mut b = Doc::new(rid(2));
    b.apply_update(&ua[1]).unwrap();
    assert_eq!(b.pending_len(), 1);
    let report = b.apply_update(&uc[0]).unwrap();
    assert_eq!(report.applied, 3, "C's ops depend on nothing B lacks");
    assert_eq!(text(&b), "123");
    assert_eq!(b.pending_len(), 1);
    b.apply_update(&ua[0]).unwrap();
    assert_eq!(b.pending_len(), 0);
    // Concurrent inserts into an empty doc: the lower replica id comes first.
    assert_eq!(text(&b), "xyz123");
    b.check().unwrap();
}

#[test]
fn pending_overflow_is_rejected_and_changes_nothing() {
    let mut a = Doc::new(rid(1));
    let updates = type_txns(&mut a, &["abc", "defgh", "ij"]);

    let mut b = Doc::new(rid(2));
    b.set_pending_limit(3);
    let before = snapshot(&b);
    match b.apply_update(&updates[1]) {
        Err(DecodeError::PendingOverflow { pending, limit }) => {
            assert_eq!(limit, 3);
            assert!(
                pending > 3,
                "reported pending {pending} must exceed the limit"
            );
        }
        other => panic!("5 waiting ops with a limit of 3 must overflow, got {other:?}"),
    }
    assert_eq!(snapshot(&b), before, "a rejected update changes nothing");

    // Within the limit, updates wait; one more that would exceed it is rejected alone.
    b.set_pending_limit(5);
    b.apply_update(&updates[1])
        .expect("5 waiting ops fit a limit of 5");
    assert_eq!(b.pending_len(), 5);
    let before = snapshot(&b);
    match b.apply_update(&updates[2]) {
        Err(DecodeError::PendingOverflow { limit: 5, .. }) => {}
        other => panic!("7 waiting ops with a limit of 5 must overflow, got {other:?}"),
    }
    assert_eq!(snapshot(&b), before, "a rejected update changes nothing");
    assert_eq!(text(&b), "");

    // The missing history unblocks what waits; the rejected update can then be resent.
    let report = b.apply_update(&updates[0]).unwrap();
    assert_eq!(report.applied, 8);
    assert_eq!(text(&b), "abcdefgh");
    b.apply_update(&updates[2]).unwrap();
    assert_eq!(text(&b), "abcdefghij");
    assert_eq!(b.version(), a.version());
    assert_eq!(b.pending_len(), 0);
    b.check().unwrap();
}

#[test]
fn pending_limit_zero_still_applies_in_order_updates() {
    let mut a = Doc::new(rid(1));
    let updates = type_txns(&mut a, &["a", "b"]);
    let mut b = Doc::new(rid(2));
    b.set_pending_limit(0);
    let before = snapshot(&b);
    assert!(matches!(
        b.apply_update(&updates[1]),
        Err(DecodeError::PendingOverflow { limit: 0, .. })
    ));
    assert_eq!(snapshot(&b), before);
    b.apply_update(&updates[0]).unwrap();
    b.apply_update(&updates[1]).unwrap();
    assert_eq!(text(&b), "ab");
    // A whole state in one update never needs to wait.
    let mut c = Doc::new(rid(3));
    c.set_pending_limit(0);
    c.apply_update(&a.encode()).unwrap();
    assert_eq!(text(&c), "ab");
}

/// Regression (found by the convergence proptest): a delete that must wait — the same
/// replica's earlier op is missing — was applied to a target that was already present,
/// so the text showed the deletion while the version did not include it.
#[test]
fn waiting_delete_does_not_touch_a_present_target() {
    let mut a = Doc::new(rid(1));
    insert(&mut a, 0, "x"); // a's op 0
    let first = a.encode(); // delivered late
    let mut c = Doc::new(rid(3));
    insert(&mut c, 0, "y");
    let cs = c.encode();
    a.apply_update(&cs).unwrap();
    assert_eq!(text(&a), "xy");
    let assumed: VersionVector = [(rid(1), 1)].into_iter().collect();
    delete(&mut a, 0, 2); // a's ops 1 and 2 delete "x" and "y"
    let second = a.encode_since(&assumed); // holds c's insert and both deletes

    let mut b = Doc::new(rid(2));
    b.apply_update(&second).unwrap();
    // c's insert applies; both deletes wait for a's op 0.
    assert_eq!(b.version(), c.version());
    assert_eq!(b.pending_len(), 2);
    assert_eq!(
        text(&b),
        "y",
        "the waiting delete of \"y\" must not show yet"
    );
    b.apply_update(&first).unwrap();
    assert_eq!(text(&b), "");
    assert_eq!(b.version(), a.version());
}
