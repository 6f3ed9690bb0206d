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
