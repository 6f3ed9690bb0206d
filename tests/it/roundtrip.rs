//! Encodings: round trips are the identity, and no bytes — random or a damaged genuine
//! update — make decoding panic or leave a document half-changed.

use chorus_doc::{Doc, VersionVector};
use proptest::prelude::*;

use crate::util::{FIELD, Snapshot, rid, snapshot, text};

#[derive(Debug, Clone)]
enum Edit {
    Insert { who: usize, pos: usize, s: String },
    Delete { who: usize, pos: usize, len: usize },
    Sync { from: usize, to: usize },
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (0..3usize, any::<usize>(), "[ab é中😀𝄞\n]{1,6}")
            .prop_map(|(who, pos, s)| Edit::Insert { who, pos, s }),
        2 => (0..3usize, any::<usize>(), 1..8usize)
            .prop_map(|(who, pos, len)| Edit::Delete { who, pos, len }),
        1 => (0..3usize, 0..3usize).prop_map(|(from, to)| Edit::Sync { from, to }),
    ]
}

/// Three replicas (ids 1, 2, 3) after `edits`; they have seen different things.
fn build(edits: &[Edit]) -> Vec<Doc> {
    let mut docs: Vec<Doc> = (1..=3).map(|k| Doc::new(rid(k))).collect();
    for e in edits {
        match e {
            Edit::Insert { who, pos, s } => {
                let d = &mut docs[*who];
                let pos = pos % (d.text(FIELD).len() + 1);
                let mut tx = d.transact();
                tx.text(FIELD).insert(pos, s).unwrap();
                tx.commit();
            }
            Edit::Delete { who, pos, len } => {
                let d = &mut docs[*who];
                let n = d.text(FIELD).len();
                if n == 0 {
                    continue;
                }
                let pos = pos % n;
                let len = (*len).min(n - pos);
                let mut tx = d.transact();
                tx.text(FIELD).delete(pos, len).unwrap();
                tx.commit();
            }
            Edit::Sync { from, to } if from != to => {
                let delta = docs[*from].encode_since(docs[*to].version());
                docs[*to].apply_update(&delta).unwrap();
            }
            Edit::Sync { .. } => {}
        }
    }
    docs
}

#[derive(Debug, Clone)]
enum Mutation {
    FlipBit { at: usize, bit: u8 },
    Truncate { keep: usize },
    Insert { at: usize, bytes: Vec<u8> },
    Overwrite { at: usize, byte: u8 },
    Remove { at: usize, len: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), 0..8u8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        1 => any::<usize>().prop_map(|keep| Mutation::Truncate { keep }),
        2 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..6))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        2 => (any::<usize>(), prop_oneof![Just(0u8), Just(0x7f), Just(0x80), Just(0xff), any::<u8>()])
            .prop_map(|(at, byte)| Mutation::Overwrite { at, byte }),
        1 => (any::<usize>(), 1..5usize).prop_map(|(at, len)| Mutation::Remove { at, len }),
    ]
}

fn mutate(bytes: &mut Vec<u8>, m: &Mutation) {
    let n = bytes.len();
    match m {
        Mutation::FlipBit { at, bit } if n > 0 => bytes[at % n] ^= 1 << bit,
        Mutation::Truncate { keep } => bytes.truncate(keep % (n + 1)),
        Mutation::Insert { at, bytes: b } => {
            let at = at % (n + 1);
            bytes.splice(at..at, b.iter().copied());
        }
        Mutation::Overwrite { at, byte } if n > 0 => bytes[at % n] = *byte,
        Mutation::Remove { at, len } if n > 0 => {
            let at = at % n;
            bytes.drain(at..(at + len).min(n));
        }
        _ => {}
    }
}

/// Applies `bytes` to `doc`: it must not panic; on error nothing changed; on success the
/// invariants hold.
fn apply_checked(doc: &mut Doc, bytes: &[u8]) -> Result<(), TestCaseError> {
    let before: Snapshot = snapshot(doc);
    match doc.apply_update(bytes) {
        Err(e) => {
            let after = snapshot(doc);
            prop_assert_eq!(
                &after.text,
                &before.text,
                "text changed by failed apply ({})",
                e
            );
            prop_assert_eq!(
                &after.version,
                &before.version,
                "version changed by failed apply ({})",
                e
            );
            prop_assert_eq!(
                after.pending,
                before.pending,
                "pending changed by failed apply ({})",
                e
            );
            prop_assert!(
                after.encoded == before.encoded,
                "encode() changed by failed apply ({})",
                e
            );
        }
        Ok(_) => {
            if let Err(e) = doc.check() {
                return Err(TestCaseError::fail(format!(
                    "check() after accepted bytes: {e}"
                )));
            }
        }
    }
    Ok(())
}

fn decode_checked(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(d) = Doc::decode(bytes, rid(99)) {
        if let Err(e) = d.check() {
            return Err(TestCaseError::fail(format!("check() after decode: {e}")));
        }
        // Whatever was accepted must encode to something that decodes to the same text.
        let again = Doc::decode(&d.encode(), rid(98)).map_err(|e| {
            TestCaseError::fail(format!(
                "re-encoding of accepted bytes fails to decode: {e}"
            ))
        })?;
        prop_assert_eq!(text(&again), text(&d));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn encode_decode_is_identity(edits in prop::collection::vec(edit(), 0..40)) {
        let docs = build(&edits);
        for d in &docs {
            let bytes = d.encode();
            let same = Doc::decode(&bytes, d.replica_id()).expect("own encoding decodes");
            prop_assert_eq!(text(&same), text(d));
            prop_assert_eq!(same.version(), d.version());
            prop_assert!(same.encode() == bytes, "decode(encode(d)).encode() != d.encode()");
            prop_assert!(same.check().is_ok());

            let other = Doc::decode(&bytes, rid(77)).expect("own encoding decodes");
            prop_assert_eq!(text(&other), text(d));
            prop_assert_eq!(other.version(), d.version());
            prop_assert_eq!(other.text(FIELD).len_utf16(), text(d).encode_utf16().count());
        }
    }

    #[test]
    fn deltas_bring_peers_up_to_date(edits in prop::collection::vec(edit(), 0..40)) {
        let docs = build(&edits);
        let mut union = VersionVector::new();
        for d in &docs {
            union.merge(d.version());
        }
        // Each doc receives the others' deltas; all end with everything, equal.
        let mut synced: Vec<Doc> = docs.clone();
        for (to, target) in synced.iter_mut().enumerate() {
            for (from, source) in docs.iter().enumerate() {
                if from != to {
                    let delta = source.encode_since(target.version());
                    target.apply_update(&delta).expect("delta applies");
                }
            }
        }
        for d in &synced {
            prop_assert_eq!(d.version(), &union);
            prop_assert_eq!(text(d), text(&synced[0]));
            prop_assert_eq!(d.pending_len(), 0);
        }
        // A delta since one's own version is empty of news.
        let v = synced[0].version().clone();
        let nothing = synced[1].encode_since(&v);
        let before = snapshot(&synced[0]);
        let report = synced[0].apply_update(&nothing).expect("empty delta applies");
        prop_assert_eq!(report.applied, 0);
        prop_assert_eq!(snapshot(&synced[0]), before);
    }

    #[test]
    fn random_bytes_never_panic(
        edits in prop::collection::vec(edit(), 0..20),
        junk in prop::collection::vec(any::<u8>(), 0..200),
        keep in any::<usize>(),
    ) {
        let mut docs = build(&edits);
        decode_checked(&junk)?;
        apply_checked(&mut docs[0], &junk)?;
        // Random bytes after a genuine header get past the magic check.
        let genuine = docs[1].encode();
        let mut spliced = genuine[..keep % (genuine.len() + 1)].to_vec();
        spliced.extend_from_slice(&junk);
        decode_checked(&spliced)?;
        apply_checked(&mut docs[0], &spliced)?;
        apply_checked(&mut docs[2], &spliced)?;
    }

    #[test]
    fn damaged_updates_never_panic_nor_half_apply(
        edits in prop::collection::vec(edit(), 1..30),
        mutations in prop::collection::vec(mutation(), 1..4),
        full in any::<bool>(),
    ) {
        let mut docs = build(&edits);
        // An update docs[1] partly lacks (or a full state, partly duplicate).
        let mut bytes = if full {
            docs[0].encode()
        } else {
            docs[0].encode_since(docs[1].version())
        };
        let genuine = bytes.clone();
        for m in &mutations {
            mutate(&mut bytes, m);
        }
        decode_checked(&bytes)?;
        let pristine = docs[2].clone();
        let mut fresh = Doc::new(rid(50));
        apply_checked(&mut fresh, &bytes)?;
        apply_checked(&mut docs[1], &bytes)?;
        apply_checked(&mut docs[0], &bytes)?;
        apply_checked(&mut docs[2], &bytes)?;
        // A rejected update leaves no hidden trace either: applying the genuine update
        // afterwards gives exactly what applying it directly gives.
        let mut probe = pristine.clone();
        if probe.apply_update(&bytes).is_err() {
            let mut direct = pristine.clone();
            direct.apply_update(&genuine).expect("genuine update applies");
            probe.apply_update(&genuine).expect("genuine update applies after a rejected one");
            prop_assert!(probe.check().is_ok());
            prop_assert_eq!(snapshot(&probe), snapshot(&direct));
        }
    }
}

/// Regression (found by `damaged_updates_never_panic_nor_half_apply`): one flipped bit
/// in a delta, applied to the very doc that made it (so every op id is known, with
/// different content), panicked in the run tree (`Run::split`: `k > 0 && k < self.len`).
#[test]
fn bit_flipped_delta_applied_to_its_source_doc() {
    // (insert?, position seed, text, delete length), as generated by proptest.
    let edits: &[(bool, u64, &str, usize)] = &[
        (true, 0, "\n ", 0),
        (true, 17211521869742635678, "\n中中 😀é", 0),
        (false, 7615491552782086071, "", 1),
        (true, 8442758500115804645, "中éaa中", 0),
        (false, 7843409206183138949, "", 4),
        (false, 12777932664852919484, "", 4),
        (true, 4853026402079962364, "é\n", 0),
        (true, 5545410316312199656, "𝄞中aa", 0),
        (true, 10096548529009128122, "a", 0),
        (true, 7770119086847707605, "😀", 0),
    ];
    let mut d = Doc::new(rid(1));
    for &(ins, seed, s, len) in edits {
        let n = d.text(FIELD).len();
        let mut tx = d.transact();
        if ins {
            tx.text(FIELD).insert(seed as usize % (n + 1), s).unwrap();
        } else {
            let p = seed as usize % n;
            tx.text(FIELD).delete(p, len.min(n - p)).unwrap();
        }
        tx.commit();
    }
    assert_eq!(text(&d), "\n𝄞a中aa\n中中😀é\n");
    let mut bytes = d.encode_since(&VersionVector::new());
    let at = 6884211905102206637usize % bytes.len();
    bytes[at] ^= 1 << 2;
    let mut target = d.clone();
    apply_checked(&mut target, &bytes).unwrap();
    decode_checked(&bytes).unwrap();
}
