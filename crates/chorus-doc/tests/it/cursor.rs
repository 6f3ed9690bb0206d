//! Stable cursors follow concurrent edits, including deletion of their anchor.

use chorus_doc::{Assoc, Cursor, Doc, ReplicaId};

fn doc(n: u128, text: &str) -> Doc {
    let mut d = Doc::new(ReplicaId::from_u128(n));
    let mut tx = d.transact();
    tx.text("t").insert(0, text).unwrap();
    tx.commit();
    d
}

fn edit(d: &mut Doc, f: impl FnOnce(&mut chorus_doc::TextMut<'_>)) {
    let mut tx = d.transact();
    f(&mut tx.text("t"));
    tx.commit();
}

fn sync(a: &mut Doc, b: &mut Doc) {
    let ab = a.encode_since(b.version());
    let ba = b.encode_since(a.version());
    b.apply_update(&ab).unwrap();
    a.apply_update(&ba).unwrap();
}

#[test]
fn cursor_follows_remote_inserts_before_it() {
    let mut a = doc(1, "hello world");
    let mut b = Doc::decode(&a.encode(), ReplicaId::from_u128(2)).unwrap();
    let c = a.text("t").cursor(6, Assoc::After).unwrap(); // before "world"
    edit(&mut b, |t| t.insert(0, ">> ").unwrap());
    sync(&mut a, &mut b);
    assert_eq!(a.text("t").to_string(), ">> hello world");
    assert_eq!(a.text("t").resolve(&c), Some(9));
    // The other replica resolves the same cursor to the same place.
    let c2 = Cursor::from_bytes(&c.to_bytes()).unwrap();
    assert_eq!(c2, c);
    assert_eq!(b.text("t").resolve(&c2), Some(9));
}

#[test]
fn cursor_anchored_on_deleted_text_stays_where_it_was() {
    let mut a = doc(1, "abcdef");
    let mut b = Doc::decode(&a.encode(), ReplicaId::from_u128(2)).unwrap();
    let after = a.text("t").cursor(3, Assoc::After).unwrap(); // on "d"
    let before = a.text("t").cursor(3, Assoc::Before).unwrap(); // on "c"
    // Concurrently: b deletes "cd", a inserts at the front.
    edit(&mut b, |t| t.delete(2, 2).unwrap());
    edit(&mut a, |t| t.insert(0, "XY").unwrap());
    sync(&mut a, &mut b);
    assert_eq!(a.text("t").to_string(), "XYabef");
    for d in [&a, &b] {
        assert_eq!(d.text("t").resolve(&after), Some(4));
        assert_eq!(d.text("t").resolve(&before), Some(4));
    }
    // Text typed there goes after the deleted characters (a local insert takes the
    // last tombstone before it as its left origin), so both cursors stay before it.
    edit(&mut a, |t| t.insert(4, "!").unwrap());
    assert_eq!(a.text("t").to_string(), "XYab!ef");
    assert_eq!(a.text("t").resolve(&before), Some(4));
    assert_eq!(a.text("t").resolve(&after), Some(4));
}

#[test]
fn typing_at_a_caret_moves_it_or_not_by_side() {
    let mut a = doc(1, "ab");
    let caret = a.text("t").cursor(1, Assoc::After).unwrap();
    let anchor = a.text("t").cursor(1, Assoc::Before).unwrap();
    edit(&mut a, |t| t.insert(1, "xyz").unwrap());
    assert_eq!(a.text("t").resolve(&caret), Some(4));
    assert_eq!(a.text("t").resolve(&anchor), Some(1));
}

#[test]
fn start_end_and_utf16() {
    let mut a = doc(1, "😀a");
    let start = a.text("t").cursor(0, Assoc::Before).unwrap();
    let end = a.text("t").cursor(2, Assoc::After).unwrap();
    assert_eq!(start.anchor(), None);
    assert_eq!(end.anchor(), None);
    let mid = a.text("t").cursor_utf16(2, Assoc::Before).unwrap(); // after the emoji
    edit(&mut a, |t| t.insert(2, "b").unwrap());
    assert_eq!(a.text("t").resolve(&start), Some(0));
    assert_eq!(a.text("t").resolve(&end), Some(3));
    assert_eq!(a.text("t").resolve_utf16(&end), Some(4));
    assert_eq!(a.text("t").resolve_utf16(&mid), Some(2));
    assert!(a.text("t").cursor_utf16(1, Assoc::After).is_err());
    assert!(a.text("t").cursor(4, Assoc::After).is_err());
}

#[test]
fn unknown_anchor_or_other_field_resolves_to_none() {
    let a = doc(1, "abc");
    let b = doc(2, "xyz");
    let c = a.text("t").cursor(1, Assoc::After).unwrap();
    assert_eq!(b.text("t").resolve(&c), None);
    assert_eq!(a.text("other").resolve(&c), None);
    for bad in [&[][..], &[9][..], &[1, 2, 3][..], &[0, 0][..]] {
        assert!(Cursor::from_bytes(bad).is_err());
    }
}

#[test]
fn resolving_works_with_and_without_the_index() {
    // A local-only document has no index; a document that applied updates has one.
    let a = doc(1, "hello");
    let c = a.text("t").cursor(2, Assoc::After).unwrap();
    let b = Doc::decode(&a.encode(), ReplicaId::from_u128(2)).unwrap();
    assert_eq!(a.text("t").resolve(&c), Some(2));
    assert_eq!(b.text("t").resolve(&c), Some(2));
}
