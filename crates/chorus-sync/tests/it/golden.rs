//! Golden frames: they pin the frame bytes of PROTOCOL.md. A change here is a protocol
//! change and needs a new framing version.

use chorus_doc::{Doc, ReplicaId, VersionVector};
use chorus_sync::{AwarenessEntry, Hello, Message, PROTOCOL_VERSION};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn vv() -> VersionVector {
    let mut v = VersionVector::new();
    v.observe(ReplicaId::from_u128(1), 3);
    v
}

fn samples() -> Vec<(&'static str, Message, &'static str)> {
    let mut doc = Doc::new(ReplicaId::from_u128(1));
    let mut tx = doc.transact();
    tx.text("t").insert(0, "Hi!").unwrap();
    tx.commit();
    vec![
        (
            "hello",
            Message::Hello(Hello {
                protocol: PROTOCOL_VERSION,
                doc: "doc-1".into(),
                replica: ReplicaId::from_u128(2),
                version: vv(),
            }),
            GOLDEN_HELLO,
        ),
        (
            "delta",
            Message::Delta {
                version: vv(),
                update: doc.encode(),
            },
            GOLDEN_DELTA,
        ),
        ("ack", Message::Ack(vv()), GOLDEN_ACK),
        (
            "awareness",
            Message::Awareness(vec![
                AwarenessEntry {
                    replica: ReplicaId::from_u128(1),
                    clock: 7,
                    state: Some(serde_json::json!({"user": "Ann", "color": "#e33"})),
                },
                AwarenessEntry {
                    replica: ReplicaId::from_u128(2),
                    clock: 2,
                    state: None,
                },
            ]),
            GOLDEN_AWARENESS,
        ),
        (
            "error",
            Message::Error {
                code: 9,
                message: "bad update".into(),
            },
            GOLDEN_ERROR,
        ),
    ]
}

const GOLDEN_HELLO: &str =
    "01010105646f632d3100000000000000000000000000000002010000000000000000000000000000000103";
const GOLDEN_DELTA: &str = "0102010000000000000000000000000000000103434852530201000000000000000000000000000000010100017401001101010c010001000102010301000000000000034869210000";
const GOLDEN_ACK: &str = "0103010000000000000000000000000000000103";
const GOLDEN_AWARENESS: &str = "01040200000000000000000000000000000001071d7b22636f6c6f72223a2223653333222c2275736572223a22416e6e227d000000000000000000000000000000020200";
const GOLDEN_ERROR: &str = "010500090a62616420757064617465";

#[test]
fn frames_are_pinned() {
    for (name, m, golden) in samples() {
        let bytes = m.encode();
        assert_eq!(hex(&bytes), golden, "the {name} frame changed");
        assert_eq!(Message::decode(&bytes).unwrap(), m, "{name} round trip");
    }
}

#[test]
fn every_truncation_and_bit_flip_is_a_typed_error_or_a_frame() {
    for (_, m, _) in samples() {
        let bytes = m.encode();
        for cut in 0..bytes.len() {
            // A cut Delta may still be a (shorter) Delta frame; nothing may panic.
            let _ = Message::decode(&bytes[..cut]);
        }
        for i in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[i / 8] ^= 1 << (i % 8);
            if let Ok(m2) = Message::decode(&b) {
                // Whatever decodes re-encodes to a frame that decodes the same.
                assert_eq!(Message::decode(&m2.encode()).unwrap(), m2);
            }
        }
    }
}
