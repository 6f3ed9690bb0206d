//! Golden byte vectors: they pin the update format of PROTOCOL.md. A change here is a
//! format change and needs a new format version.

use chorus_doc::{Doc, ReplicaId};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Two replicas: 1 types "Hi😀", 2 appends "!" while 1 deletes "i".
fn sample() -> Doc {
    let mut a = Doc::new(ReplicaId::from_u128(1));
    let mut b = Doc::new(ReplicaId::from_u128(2));
    let mut tx = a.transact();
    tx.text("t").insert(0, "Hi😀").unwrap();
    tx.commit();
    b.apply_update(&a.encode()).unwrap();
    let mut tx = b.transact();
    tx.text("t").insert(3, "!").unwrap();
    tx.commit();
    let mut tx = a.transact();
    tx.text("t").delete(1, 1).unwrap();
    tx.commit();
    a.apply_update(&b.encode_since(a.version())).unwrap();
    a
}

const GOLDEN_FULL: &str = "43485253020200000000000000000000000000000001000000000000000000000000000000020100017401001e03030c01240200010300000003020001030301010100020002000200040000074869f09f9880210000";

#[test]
fn full_state_bytes_are_pinned() {
    let doc = sample();
    assert_eq!(doc.text("t").to_string(), "H😀!");
    let bytes = doc.encode();
    assert_eq!(hex(&bytes), GOLDEN_FULL, "the update format changed");
    let back = Doc::decode(&unhex(GOLDEN_FULL), ReplicaId::from_u128(3)).unwrap();
    assert_eq!(back.text("t").to_string(), "H😀!");
    assert_eq!(back.version(), doc.version());
}

/// Every type: a counter, registers of each rule, a map with a nested map and a
/// deleted key, a list, and an undone delete.
fn sample_all() -> Doc {
    use chorus_doc::{Rule, UndoManager};
    let mut a = Doc::new(ReplicaId::from_u128(1));
    let mut u = UndoManager::new(0);
    let mut tx = a.transact();
    tx.counter("c").add(-3).unwrap();
    tx.register("r", Rule::Lww).set("t", 1_000).unwrap();
    tx.register("s", Rule::MultiValue).set(2.5, 1_000).unwrap();
    tx.register("x", Rule::merge("max")).set(7, 1_000).unwrap();
    let mut m = tx.map("m");
    m.set("k", true).unwrap();
    m.set("gone", vec![1u8, 2]).unwrap();
    m.delete("gone").unwrap();
    m.map("sub")
        .unwrap()
        .set("n", chorus_doc::Value::Null)
        .unwrap();
    tx.list("l").insert_many(0, ["a".into(), 1.into()]).unwrap();
    tx.text("t").insert(0, "ab").unwrap();
    tx.commit();
    let mut tx = a.transact();
    tx.text("t").delete(0, 1).unwrap();
    let c = tx.commit();
    u.record(&a, c.as_ref(), 0);
    u.undo(&mut a, 1).unwrap();
    a
}

const GOLDEN_ALL: &str = "434852530201000000000000000000000000000000010800016304000172050001730600017807036d617800016d0305037375620300016c020001740100630d0d0f0b0b0b0b0313230b0808010301000d000000000000000000000000000d020000000000000000000000000d0101010101010101010202010108000102030405060700000600050004000d15058080a01f008180a01f008280a01f00000001000000026162002c050174040000000000000440030e016b0204676f6e650602010204676f6e650373756203016e000501610302";

#[test]
fn every_type_is_pinned() {
    let doc = sample_all();
    let bytes = doc.encode();
    assert_eq!(hex(&bytes), GOLDEN_ALL, "the update format changed");
    let back = Doc::decode(&unhex(GOLDEN_ALL), ReplicaId::from_u128(3)).unwrap();
    back.check().unwrap();
    assert_eq!(back.to_json(), doc.to_json());
    assert_eq!(back.text("t").to_string(), "ab");
    assert_eq!(back.encode(), bytes);
}
