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

/// Format version 3: the changes block with a message and a time, next to ops of two
/// replicas (one of them without metadata).
fn sample_meta() -> Doc {
    use chorus_doc::CommitOptions;
    let mut a = Doc::new(ReplicaId::from_u128(1));
    let mut b = Doc::new(ReplicaId::from_u128(2));
    let mut tx = a.transact();
    tx.text("t").insert(0, "Hi").unwrap();
    tx.commit_with(
        CommitOptions::new()
            .message("Greet")
            .time(1_700_000_000_000),
    );
    let mut tx = a.transact();
    tx.text("t").insert(2, "!").unwrap();
    tx.commit_with(CommitOptions::new().time(1_700_000_000_500));
    b.apply_update(&a.encode()).unwrap();
    let mut tx = b.transact();
    tx.text("t").insert(0, "¡").unwrap();
    tx.commit();
    a.apply_update(&b.encode_since(a.version())).unwrap();
    a
}

const GOLDEN_META: &str = "43485253030200000000000000000000000000000001000000000000000000000000000000020100017401001802020c8402000102000002020002030101000002000000000005486921c2a100000017020000020380a0abfef96205477265657400000101e807";

#[test]
fn change_metadata_is_pinned() {
    let doc = sample_meta();
    let bytes = doc.encode();
    assert_eq!(bytes[4], 3, "an update with change metadata is version 3");
    assert_eq!(hex(&bytes), GOLDEN_META, "the update format changed");
    let back = Doc::decode(&unhex(GOLDEN_META), ReplicaId::from_u128(3)).unwrap();
    back.check().unwrap();
    assert_eq!(back.text("t").to_string(), "¡Hi!");
    let blame = back.text("t").blame(0..4).unwrap();
    let got: Vec<_> = blame
        .iter()
        .map(|b| (b.range.clone(), b.change.message.as_deref(), b.change.time))
        .collect();
    assert_eq!(
        got,
        [
            (0..1, None, None),
            (1..3, Some("Greet"), Some(1_700_000_000_000)),
            (3..4, None, Some(1_700_000_000_500)),
        ]
    );
    assert_eq!(back.encode(), bytes);
    // Without metadata an update stays version 2, as before.
    let mut plain = Doc::new(ReplicaId::from_u128(4));
    let mut tx = plain.transact();
    tx.text("t").insert(0, "x").unwrap();
    tx.commit();
    assert_eq!(plain.encode()[4], 2);
}

#[test]
fn malformed_change_blocks_are_refused() {
    let good = sample_meta().encode();
    // Cut anywhere: a typed error, never a panic.
    for n in 0..good.len() {
        assert!(
            Doc::decode(&good[..n], ReplicaId::from_u128(9)).is_err(),
            "cut at {n}"
        );
    }
    // Every byte flipped: an error or a document that passes its checks.
    for i in 5..good.len() {
        for bit in [1u8, 0x80] {
            let mut bad = good.clone();
            bad[i] ^= bit;
            if let Ok(d) = Doc::decode(&bad, ReplicaId::from_u128(9)) {
                d.check().unwrap();
            }
        }
    }
}

#[test]
fn change_records_attach_only_to_ops_their_update_brings() {
    use chorus_doc::CommitOptions;
    let (r1, r2) = (ReplicaId::from_u128(1), ReplicaId::from_u128(2));
    let mut a = Doc::new(r1);
    let mut tx = a.transact();
    tx.text("t").insert(0, "a").unwrap();
    tx.commit();
    let mut b = Doc::new(r2);
    b.apply_update(&a.encode()).unwrap();
    // A third party re-sends a's op with a record of its own making: b already has
    // the op, so the record is not kept.
    let mut forger = Doc::new(ReplicaId::from_u128(1));
    let mut tx = forger.transact();
    tx.text("t").insert(0, "a").unwrap();
    tx.commit_with(CommitOptions::new().message("forged"));
    b.apply_update(&forger.encode()).unwrap();
    assert_eq!(b.text("t").blame(0..1).unwrap()[0].change.message, None);
    // A record that names ops the update does not carry is malformed.
    let mut bytes = forger.encode();
    let n = bytes.len();
    // The record (seq 0, len 1, a message of 6 bytes) moved to seq 2, past the run.
    assert_eq!(&bytes[n - 10..n - 6], &[0, 1, 2, 6]);
    bytes[n - 10] = 4; // zigzag(2)
    assert!(matches!(
        Doc::decode(&bytes, r2),
        Err(chorus_doc::DecodeError::Malformed(m)) if m.contains("names no operation")
    ));
}
