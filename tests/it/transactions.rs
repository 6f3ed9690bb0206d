//! Transactions: commit makes one `Change`, drop rolls back completely; positions in
//! chars and UTF-16 around astral characters; typed errors for bad positions.

use chorus_doc::{Doc, EditError, OpId};

use crate::util::{FIELD, insert, rid, snapshot, sync_into, text};

fn doc_with(s: &str) -> Doc {
    let mut d = Doc::new(rid(1));
    insert(&mut d, 0, s);
    d
}

#[test]
fn commit_makes_one_change_with_contiguous_seqs() {
    let mut d = Doc::new(rid(7));
    let mut tx = d.transact();
    tx.text(FIELD).insert(0, "héllo😀").unwrap();
    tx.text(FIELD).delete(1, 2).unwrap();
    tx.text(FIELD).insert(1, "中").unwrap();
    let change = tx.commit().expect("edits make a change");
    assert_eq!(change.replica, rid(7));
    assert_eq!(
        change.seqs,
        0..6 + 2 + 1,
        "one op per inserted and per deleted char"
    );
    assert_eq!(text(&d), "h中lo😀");
    assert_eq!(d.version().get(&rid(7)), 9);
    assert!(d.version().includes(&OpId::new(rid(7), 8)));
    assert!(!d.version().includes(&OpId::new(rid(7), 9)));

    let mut tx = d.transact();
    tx.text(FIELD).insert(0, "x").unwrap();
    let next = tx.commit().unwrap();
    assert_eq!(next.seqs, 9..10);
    assert!(
        next.lamport > change.lamport + 8,
        "lamport grows with every op"
    );

    // A transaction without edits makes no change.
    let tx = d.transact();
    assert_eq!(tx.commit(), None);
    let mut tx = d.transact();
    tx.text(FIELD);
    assert_eq!(tx.commit(), None);
    assert_eq!(d.version().get(&rid(7)), 10);
}

#[test]
fn dropped_transaction_rolls_back_everything() {
    let mut d = doc_with("a😀b中c");
    let mut peer = Doc::new(rid(2));
    insert(&mut peer, 0, "peer ");
    sync_into(&mut d, &peer);
    let before = snapshot(&d);

    {
        let mut tx = d.transact();
        let mut t = tx.text(FIELD);
        t.insert(0, "zzz𝄞").unwrap();
        t.delete(2, 5).unwrap();
        t.insert_utf16(1, "y").unwrap();
        assert_ne!(
            t.view().to_string(),
            before.text,
            "edits are visible inside"
        );
        // And a second field, created inside the transaction.
        tx.text("other").insert(0, "gone").unwrap();
        // dropped here without commit
    }
    assert_eq!(snapshot(&d), before, "text, version, encode() unchanged");
    assert_eq!(d.text("other").to_string(), "");
    d.check().unwrap();

    // Seqs continue with no gap, and peers see only the committed change.
    let mut tx = d.transact();
    tx.text(FIELD).insert(0, "!").unwrap();
    let change = tx.commit().unwrap();
    assert_eq!(
        change.seqs,
        5..6,
        "rolled-back ops leave no hole in the seqs"
    );
    sync_into(&mut peer, &d);
    assert_eq!(text(&peer), text(&d));
    assert_eq!(peer.version(), d.version());
    peer.check().unwrap();
}

#[test]
fn rollback_after_remote_ops_keeps_them() {
    let mut a = doc_with("base");
    let mut b = Doc::decode(&a.encode(), rid(2)).unwrap();
    insert(&mut b, 4, "+b");
    sync_into(&mut a, &b);
    let before = snapshot(&a);
    let mut tx = a.transact();
    tx.text(FIELD).delete(0, 6).unwrap();
    assert_eq!(tx.text(FIELD).view().len(), 0);
    drop(tx);
    assert_eq!(snapshot(&a), before);
    assert_eq!(text(&a), "base+b");
}

#[test]
fn utf16_positions_around_astral_chars() {
    let mut d = doc_with("a😀b𝄞");
    let v = d.text(FIELD);
    assert_eq!(v.len(), 4);
    assert_eq!(v.len_utf16(), 6);
    assert_eq!(v.len_utf8(), 1 + 4 + 1 + 4);
    assert_eq!(v.char_to_utf16(0), Ok(0));
    assert_eq!(v.char_to_utf16(2), Ok(3));
    assert_eq!(v.char_to_utf16(4), Ok(6));
    assert_eq!(v.utf16_to_char(3), Ok(2));
    assert_eq!(v.utf16_to_char(6), Ok(4));
    assert_eq!(v.char_to_utf8(3), Ok(6));
    assert!(matches!(
        v.utf16_to_char(2),
        Err(EditError::NotCharBoundary { pos: 2 })
    ));
    assert!(matches!(
        v.utf16_to_char(5),
        Err(EditError::NotCharBoundary { pos: 5 })
    ));
    assert!(matches!(
        v.utf16_to_char(7),
        Err(EditError::OutOfRange { pos: 7, len: 6 })
    ));
    assert!(matches!(
        v.char_to_utf16(5),
        Err(EditError::OutOfRange { pos: 5, len: 4 })
    ));
    assert_eq!(v.slice(1..2).unwrap(), "😀");
    assert_eq!(v.slice(1..4).unwrap(), "😀b𝄞");
    assert_eq!(v.slice(4..4).unwrap(), "");
    assert!(matches!(v.slice(2..5), Err(EditError::OutOfRange { .. })));

    let mut tx = d.transact();
    let mut t = tx.text(FIELD);
    t.insert_utf16(3, "x").unwrap(); // after the emoji
    assert_eq!(t.view().to_string(), "a😀xb𝄞");
    t.insert_utf16(7, "𝄞").unwrap(); // at the end
    assert_eq!(t.view().to_string(), "a😀xb𝄞𝄞");
    t.delete_utf16(1, 2).unwrap(); // exactly the emoji
    assert_eq!(t.view().to_string(), "axb𝄞𝄞");
    t.delete_utf16(3, 4).unwrap(); // both clefs
    assert_eq!(t.view().to_string(), "axb");
    tx.commit().unwrap();
    assert_eq!(text(&d), "axb");
    assert_eq!(d.text(FIELD).len_utf16(), 3);
    d.check().unwrap();
}

#[test]
fn surrogate_splitting_utf16_edits_are_rejected_and_change_nothing() {
    let mut d = doc_with("a😀b");
    let before = snapshot(&d);
    let mut tx = d.transact();
    let mut t = tx.text(FIELD);
    assert!(matches!(
        t.insert_utf16(2, "x"),
        Err(EditError::NotCharBoundary { pos: 2 })
    ));
    // A delete starting or ending inside the pair.
    assert!(matches!(
        t.delete_utf16(2, 1),
        Err(EditError::NotCharBoundary { .. })
    ));
    assert!(matches!(
        t.delete_utf16(1, 1),
        Err(EditError::NotCharBoundary { .. })
    ));
    assert!(matches!(
        t.delete_utf16(0, 2),
        Err(EditError::NotCharBoundary { .. })
    ));
    assert_eq!(t.view().to_string(), "a😀b", "failed edits change nothing");
    assert_eq!(
        tx.commit(),
        None,
        "failed edits make no ops, so there is nothing to commit"
    );
    assert_eq!(snapshot(&d), before);
}

#[test]
fn out_of_range_edits_are_rejected_and_change_nothing() {
    let mut d = doc_with("héllo");
    let before = snapshot(&d);
    let mut tx = d.transact();
    let mut t = tx.text(FIELD);
    assert!(matches!(
        t.insert(6, "x"),
        Err(EditError::OutOfRange { pos: 6, len: 5 })
    ));
    assert!(matches!(
        t.insert(usize::MAX, "x"),
        Err(EditError::OutOfRange { .. })
    ));
    assert!(matches!(t.delete(3, 3), Err(EditError::OutOfRange { .. })));
    assert!(matches!(t.delete(6, 0), Err(EditError::OutOfRange { .. })));
    assert!(matches!(
        t.delete(1, usize::MAX),
        Err(EditError::OutOfRange { .. })
    ));
    assert!(matches!(
        t.insert_utf16(6, "x"),
        Err(EditError::OutOfRange { pos: 6, len: 5 })
    ));
    assert!(matches!(
        t.delete_utf16(4, 2),
        Err(EditError::OutOfRange { .. })
    ));
    assert_eq!(t.view().to_string(), "héllo");
    // A valid edit after failed ones still works, and only it is committed.
    t.insert(5, "!").unwrap();
    t.delete(0, 0).unwrap();
    t.insert(5, "").unwrap();
    let change = tx.commit().expect("one valid insert");
    assert_eq!(change.seqs, 5..6);
    assert_eq!(text(&d), "héllo!");
    assert_ne!(snapshot(&d), before);
    d.check().unwrap();
}

#[test]
fn fields_are_independent_and_missing_fields_read_empty() {
    let mut d = Doc::new(rid(1));
    assert_eq!(d.text("nothing").to_string(), "");
    assert!(d.text("nothing").is_empty());
    let mut tx = d.transact();
    tx.text("a").insert(0, "alpha").unwrap();
    tx.text("b").insert(0, "beta").unwrap();
    tx.text("a").delete(0, 1).unwrap();
    let change = tx.commit().unwrap();
    assert_eq!(change.seqs, 0..10);
    assert_eq!(d.text("a").to_string(), "lpha");
    assert_eq!(d.text("b").to_string(), "beta");
    let copy = Doc::decode(&d.encode(), rid(2)).unwrap();
    assert_eq!(copy.text("a").to_string(), "lpha");
    assert_eq!(copy.text("b").to_string(), "beta");
}

/// Regression: rolling back a transaction on a doc whose history holds concurrent
/// inserts at the same place (here: both replicas typed into an empty doc) panicked
/// while rebuilding (index out of bounds in `OpLog::id_of`).
#[test]
fn rollback_with_concurrent_history() {
    let mut d = doc_with("a");
    let mut p = Doc::new(rid(2));
    insert(&mut p, 0, "P");
    sync_into(&mut d, &p);
    assert_eq!(text(&d), "aP");
    let before = snapshot(&d);
    let mut tx = d.transact();
    tx.text(FIELD).insert(0, "z").unwrap();
    drop(tx);
    assert_eq!(snapshot(&d), before);
    d.check().unwrap();
}
