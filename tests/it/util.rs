//! Small helpers shared by the test modules: a seeded PRNG, random text, doc shortcuts.

use std::collections::BTreeMap;

use chorus_doc::{Doc, ReplicaId, VersionVector};

/// The text field every test edits.
pub const FIELD: &str = "text";

/// A tiny deterministic PRNG (SplitMix64). Kept local so that a failing seed reproduces
/// the same run forever, whatever version of `rand` the workspace moves to.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        // Mix the seed once so that small consecutive seeds give unrelated streams.
        let mut r = Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B);
        r.next_u64();
        r
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        assert!(n > 0, "Rng::below(0)");
        ((self.next_u64() >> 11) % n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u32) -> bool {
        self.below(100) < percent as usize
    }

    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

/// Characters random text is drawn from: ASCII, Latin-1, CJK (BMP, 3 UTF-8 bytes) and
/// astral characters (4 UTF-8 bytes, surrogate pairs in UTF-16).
const POOL: &[char] = &[
    'a', 'b', 'c', 'x', 'y', 'z', ' ', '\n', 'é', 'ß', '中', '文', '字', '😀', '𝄞', '🦀', '👍',
];

/// A random string of `1..=max_len` chars from [`POOL`].
pub fn random_text(rng: &mut Rng, max_len: usize) -> String {
    let n = rng.range(1, max_len);
    (0..n).map(|_| POOL[rng.below(POOL.len())]).collect()
}

/// The chars writer `w` (< 6) types in [`writer_text`]: its own four capital letters,
/// two 2-byte, two 3-byte and two astral chars, none of them shared with another
/// writer, so whoever typed a char can be told from the char alone.
fn writer_pool(w: usize) -> [char; 10] {
    assert!(w < 6, "writer_text supports six writers");
    let at = |base: u32, k: usize| char::from_u32(base + (w * 2 + k) as u32).unwrap();
    let cap = |k: usize| char::from(b'A' + (w * 4 + k) as u8);
    [
        cap(0),
        cap(1),
        cap(2),
        cap(3),
        at(0xC0, 0),
        at(0xC0, 1),
        at(0x4E00, 0),
        at(0x4E00, 1),
        at(0x1F600, 0),
        at(0x1F600, 1),
    ]
}

/// A random string of `1..=max_len` chars that only writer `w` types.
pub fn writer_text(rng: &mut Rng, max_len: usize, w: usize) -> String {
    let pool = writer_pool(w);
    let n = rng.range(1, max_len);
    (0..n).map(|_| pool[rng.below(pool.len())]).collect()
}

/// The writer whose [`writer_text`] holds `c`.
pub fn writer_of(c: char) -> Option<usize> {
    (0..6).find(|&w| writer_pool(w).contains(&c))
}

pub fn rid(n: u128) -> ReplicaId {
    ReplicaId::from_u128(n)
}

pub fn text(doc: &Doc) -> String {
    doc.text(FIELD).to_string()
}

/// A version vector as a plain map, to compare with the reference model.
pub fn vv_map(v: &VersionVector) -> BTreeMap<u128, u64> {
    v.iter().map(|(r, n)| (r.as_u128(), n)).collect()
}

/// Everything observable about a doc that a failed operation must leave unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub text: String,
    pub version: VersionVector,
    pub encoded: Vec<u8>,
    pub pending: usize,
}

pub fn snapshot(doc: &Doc) -> Snapshot {
    Snapshot {
        text: text(doc),
        version: doc.version().clone(),
        encoded: doc.encode(),
        pending: doc.pending_len(),
    }
}

/// Inserts `s` at char `pos` in one committed transaction.
pub fn insert(doc: &mut Doc, pos: usize, s: &str) {
    let mut tx = doc.transact();
    tx.text(FIELD).insert(pos, s).expect("insert in range");
    tx.commit();
}

/// Deletes `n` chars at char `pos` in one committed transaction.
pub fn delete(doc: &mut Doc, pos: usize, n: usize) {
    let mut tx = doc.transact();
    tx.text(FIELD).delete(pos, n).expect("delete in range");
    tx.commit();
}

/// Makes `to` include everything `from` has (one delta).
pub fn sync_into(to: &mut Doc, from: &Doc) {
    let delta = from.encode_since(to.version());
    to.apply_update(&delta).expect("valid delta applies");
}

/// Number of seeds for randomized tests: `CHORUS_SEEDS` or `default`.
pub fn seeds(default: u64) -> u64 {
    match std::env::var("CHORUS_SEEDS") {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("CHORUS_SEEDS must be a number, got {s:?}")),
        Err(_) => default,
    }
}

/// First seed for randomized tests: `CHORUS_SEED_START` or 0 (to rerun one failing seed:
/// `CHORUS_SEED_START=1234 CHORUS_SEEDS=1`).
pub fn seed_start() -> u64 {
    std::env::var("CHORUS_SEED_START")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Runs `run(seed ^ salt)` for `count` seeds from [`seed_start`], catching panics, and
/// fails listing the failing seeds (up to 5) with how to rerun one.
pub fn run_seeds(name: &str, salt: u64, count: u64, run: impl Fn(u64)) {
    let start = seed_start();
    let mut failed = Vec::new();
    for seed in start..start + count {
        if let Err(e) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(seed ^ salt)))
        {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failed.push((seed, msg));
            if failed.len() >= 5 {
                break;
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{name}: {} failing seed(s) (rerun one with CHORUS_SEED_START=<seed> CHORUS_SEEDS=1 \
         cargo test -p chorus-tests --profile ci {name}): {failed:#?}",
        failed.len()
    );
}

/// A network between docs that delays, reorders, drops and duplicates updates.
#[derive(Debug, Default)]
pub struct FaultyNet {
    /// (receiver, update) in flight.
    in_flight: Vec<(usize, Vec<u8>)>,
    /// Percent of deliveries lost.
    pub drop: u32,
    /// Percent of deliveries that arrive again later.
    pub duplicate: u32,
}

impl FaultyNet {
    /// A network losing up to 40% and duplicating up to 30% of updates.
    pub fn new(rng: &mut Rng) -> Self {
        FaultyNet {
            in_flight: Vec::new(),
            drop: rng.range(0, 40) as u32,
            duplicate: rng.range(0, 30) as u32,
        }
    }

    /// `from` sends `to` what `to` lacks now (now and then, everything); it arrives
    /// later, maybe never, maybe twice.
    pub fn send(&mut self, rng: &mut Rng, docs: &[Doc], from: usize, to: usize) {
        let bytes = if rng.chance(10) {
            docs[from].encode()
        } else {
            docs[from].encode_since(docs[to].version())
        };
        self.in_flight.push((to, bytes));
    }

    /// Delivers (or loses) one update in flight, picked at random; the receiver
    /// must pass `check()` after it.
    pub fn deliver_one(&mut self, rng: &mut Rng, docs: &mut [Doc]) {
        if self.in_flight.is_empty() {
            return;
        }
        let k = rng.below(self.in_flight.len());
        let (to, bytes) = self.in_flight.swap_remove(k);
        if rng.chance(self.drop) {
            return;
        }
        docs[to]
            .apply_update(&bytes)
            .unwrap_or_else(|e| panic!("a genuine update failed to apply: {e}"));
        if let Err(e) = docs[to].check() {
            panic!("check() after an update: {e}");
        }
        if rng.chance(self.duplicate) {
            self.in_flight.push((to, bytes));
        }
    }

    /// One random network event: a send between two docs or a delivery.
    pub fn step(&mut self, rng: &mut Rng, docs: &mut [Doc]) {
        let n = docs.len();
        if n > 1 && rng.chance(45) {
            let from = rng.below(n);
            let to = (from + rng.range(1, n - 1)) % n;
            self.send(rng, docs, from, to);
        } else {
            self.deliver_one(rng, docs);
        }
    }

    /// Syncs every doc with every other directly (updates still in flight may arrive
    /// later); afterwards all have the same version and nothing pending.
    pub fn settle(&mut self, docs: &mut [Doc]) {
        let n = docs.len();
        for _round in 0..2 {
            for from in 0..n {
                for to in (0..n).filter(|&t| t != from) {
                    let bytes = docs[from].encode_since(docs[to].version());
                    docs[to]
                        .apply_update(&bytes)
                        .unwrap_or_else(|e| panic!("a genuine update failed to apply: {e}"));
                }
            }
        }
        for (i, d) in docs.iter().enumerate() {
            assert_eq!(
                d.version(),
                docs[0].version(),
                "doc {i}: version after sync"
            );
            assert_eq!(d.pending_len(), 0, "doc {i}: pending after sync");
        }
    }
}
