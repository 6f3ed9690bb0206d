//! Damaged updates: every single-bit flip of a real update either applies cleanly
//! (and leaves a consistent document) or is refused and changes nothing.

use chorus_doc::{Doc, ReplicaId, VersionVector};

fn sample() -> Doc {
    let mut d = Doc::new(ReplicaId::from_u128(1));
    let edits: &[(bool, usize, &str, usize)] = &[
        (true, 0, "\n ", 0),
        (true, 1, "\n中中 😀é", 0),
        (false, 3, "", 1),
        (true, 4, "中éaa中", 0),
        (false, 2, "", 4),
        (true, 0, "é\n", 0),
        (true, 5, "𝄞中aa", 0),
        (true, 9, "a", 0),
        (false, 6, "", 3),
        (true, 2, "😀", 0),
    ];
    for &(ins, pos, s, len) in edits {
        let n = d.text("t").len();
        let mut tx = d.transact();
        if ins {
            tx.text("t").insert(pos % (n + 1), s).unwrap();
        } else {
            let p = pos % n;
            tx.text("t").delete(p, len.min(n - p)).unwrap();
        }
        tx.commit();
    }
    d
}

fn state(d: &Doc) -> (String, VersionVector, Vec<u8>, usize) {
    (
        d.text("t").to_string(),
        d.version().clone(),
        d.encode(),
        d.pending_len(),
    )
}

#[test]
fn every_single_bit_flip_is_refused_or_consistent() {
    let d = sample();
    let bytes = d.encode_since(&VersionVector::new());
    let mut accepted = 0;
    for at in 0..bytes.len() {
        for bit in 0..8 {
            let mut b = bytes.clone();
            b[at] ^= 1 << bit;
            for target in [d.clone(), Doc::new(ReplicaId::from_u128(5))] {
                let mut target = target;
                let before = state(&target);
                match target.apply_update(&b) {
                    Ok(_) => {
                        accepted += 1;
                        target
                            .check()
                            .unwrap_or_else(|e| panic!("flip at {at} bit {bit}: {e}"));
                    }
                    Err(_) => assert_eq!(state(&target), before, "flip at {at} bit {bit}"),
                }
            }
        }
    }
    // Flips inside the text or in sequence numbers still decode; the test would
    // prove nothing if none did.
    assert!(accepted > 0);
}

/// A relay checks who authored an update before applying it: the extent names every
/// replica whose ops the update carries, up to the last one, and nothing else.
#[test]
fn update_extent_names_the_authors_of_an_update() {
    let mut a = Doc::new(ReplicaId::from_u128(1));
    let mut b = Doc::new(ReplicaId::from_u128(2));
    let mut tx = a.transact();
    tx.text("t").insert(0, "abc").unwrap();
    tx.counter("n").add(2).unwrap();
    tx.commit();
    b.apply_update(&a.encode()).unwrap();
    let base = b.version().clone();
    let mut tx = b.transact();
    tx.text("t").insert(1, "xy").unwrap();
    tx.commit();
    let since = b.encode_since(&base);
    let extent = Doc::update_extent(&since).unwrap();
    assert_eq!(
        extent.iter().collect::<Vec<_>>(),
        vec![(ReplicaId::from_u128(2), 2)]
    );
    assert_eq!(&Doc::update_extent(&b.encode()).unwrap(), b.version());
    assert!(Doc::update_extent(&since[..since.len() - 1]).is_err());
    assert!(Doc::update_extent(b"not an update").is_err());
}
