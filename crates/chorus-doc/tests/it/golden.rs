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

const GOLDEN_FULL: &str = "434852530102000000000000000000000000000000010000000000000000000000000000000201017401001d03030c012402000103000000030200010303010101000200020002000400074869f09f988021";

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
