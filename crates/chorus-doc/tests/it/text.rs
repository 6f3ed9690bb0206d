//! Scenario tests of text editing and merging.

use chorus_doc::{Doc, ReplicaId};

fn doc(n: u128) -> Doc {
    Doc::new(ReplicaId::from_u128(n))
}

fn edit(d: &mut Doc, f: impl FnOnce(&mut chorus_doc::TextMut<'_>)) {
    let mut tx = d.transact();
    f(&mut tx.text("t"));
    tx.commit();
}

fn sync(a: &mut Doc, b: &mut Doc) {
    let to_b = a.encode_since(b.version());
    let to_a = b.encode_since(a.version());
    b.apply_update(&to_b).unwrap();
    a.apply_update(&to_a).unwrap();
}

#[test]
fn deleted_text_merges_after_decode() {
    let mut a = doc(1);
    edit(&mut a, |t| t.insert(0, "hello world").unwrap());
    edit(&mut a, |t| t.delete(0, 6).unwrap());
    let full = a.encode();
    let mut b = Doc::decode(&full, ReplicaId::from_u128(2)).unwrap();
    b.check().unwrap();
    assert_eq!(b.text("t").to_string(), "world");
    // Both keep editing around the deleted region and converge.
    edit(&mut a, |t| t.insert(0, "A").unwrap());
    edit(&mut b, |t| t.insert(0, "B").unwrap());
    sync(&mut a, &mut b);
    assert_eq!(a.text("t").to_string(), b.text("t").to_string());
    assert_eq!(a.version(), b.version());
    a.check().unwrap();
    b.check().unwrap();
}

#[test]
fn rollback_restores_state_after_deletes_and_inserts() {
    let mut a = doc(1);
    edit(&mut a, |t| t.insert(0, "abcdef").unwrap());
    let before = a.encode();
    let version = a.version().clone();
    {
        let mut tx = a.transact();
        let mut t = tx.text("t");
        t.delete(1, 3).unwrap();
        t.insert(1, "XYZ").unwrap();
        t.insert(0, "😀").unwrap();
        assert_eq!(t.view().to_string(), "😀aXYZef");
        // Dropped without commit.
    }
    a.check().unwrap();
    assert_eq!(a.text("t").to_string(), "abcdef");
    assert_eq!(a.version(), &version);
    assert_eq!(a.encode(), before);
    // And editing goes on with the same sequence numbers.
    edit(&mut a, |t| t.insert(6, "g").unwrap());
    assert_eq!(a.text("t").to_string(), "abcdefg");
    a.check().unwrap();
}

#[test]
fn utf16_positions_around_astral_chars() {
    let mut a = doc(1);
    edit(&mut a, |t| t.insert(0, "a😀b").unwrap());
    let v = a.text("t");
    assert_eq!((v.len(), v.len_utf16(), v.len_utf8()), (3, 4, 6));
    assert_eq!(v.utf16_to_char(3).unwrap(), 2);
    assert!(v.utf16_to_char(2).is_err(), "inside the surrogate pair");
    assert_eq!(v.char_to_utf16(2).unwrap(), 3);
    assert_eq!(v.char_to_utf8(2).unwrap(), 5);
    edit(&mut a, |t| {
        t.insert_utf16(3, "x").unwrap();
        assert!(t.insert_utf16(2, "y").is_err());
        t.delete_utf16(1, 2).unwrap();
    });
    assert_eq!(a.text("t").to_string(), "axb");
    assert_eq!(a.text("t").slice(1..3).unwrap(), "xb");
}

#[test]
fn rollback_after_decode_keeps_deleted_text_deleted() {
    let mut a = doc(1);
    edit(&mut a, |t| t.insert(0, "keep gone").unwrap());
    edit(&mut a, |t| t.delete(4, 5).unwrap());
    let mut b = Doc::decode(&a.encode(), ReplicaId::from_u128(2)).unwrap();
    {
        let mut tx = b.transact();
        tx.text("t").insert(4, "!").unwrap();
        // Dropped: the rebuild must keep the decoded deletes.
    }
    b.check().unwrap();
    assert_eq!(b.text("t").to_string(), "keep");
    assert_eq!(b.encode(), a.encode());
}
