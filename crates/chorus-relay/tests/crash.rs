//! Acknowledged appends survive SIGKILL: this test binary runs itself as a child that
//! appends to a real SQLite store and prints an acknowledgement after each append
//! returns; the parent kills it at random moments with SIGKILL, reopens the store and
//! checks that every acknowledged edit is there exactly once.
//!
//! A test binary of its own (`harness = false`) because it must be its own child
//! process. `CHORUS_CRASH_ROUNDS` and `CHORUS_CRASH_SEED` change the rounds and seed.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chorus_doc::{Doc, ReplicaId};
use chorus_relay::storage::{SqliteStore, Store, Stored, load_doc};

const ROOM: ReplicaId = ReplicaId::from_u128(0xAAAA);

fn main() {
    match (std::env::var(CHILD_DIR), std::env::var(CHILD_ROUND)) {
        (Ok(dir), Ok(round)) => crash_child(&dir, &round),
        _ => {
            acknowledged_appends_survive_sigkill();
            println!("test acknowledged_appends_survive_sigkill ... ok");
        }
    }
}

/// Types `text` at the end of `doc`'s body and returns the update carrying it.
fn edit(doc: &mut Doc, text: &str) -> Vec<u8> {
    let before = doc.version().clone();
    let end = doc.text("body").len();
    let mut tx = doc.transact();
    tx.text("body").insert(end, text).unwrap();
    tx.counter("edits").add(1).unwrap();
    tx.commit();
    doc.encode_since(&before)
}

// ---- Crash test: a child process appends and is killed with SIGKILL. ----

const CHILD_DIR: &str = "CHORUS_STORAGE_CRASH_DIR";
const CHILD_ROUND: &str = "CHORUS_STORAGE_CRASH_ROUND";
const CRASH_DOC: &str = "crash";

/// A deterministic generator (splitmix64): the test does not depend on a clock or on
/// an RNG crate, and a failing seed can be replayed.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Prints one acknowledgement in a single write, on a line of its own, so a kill
/// cannot leave half of it.
fn ack(out: &mut impl Write, seq: u64, marker: &str) {
    out.write_all(format!("\nACK {seq} {marker}\n").as_bytes())
        .unwrap();
    out.flush().unwrap();
}

/// The child's side of [`acknowledged_appends_survive_sigkill`]: appends edits to the
/// crash document, printing `ACK <seq> <marker>` after each append returns, compacting
/// now and then, until it is killed.
fn crash_child(dir: &str, round: &str) {
    let round: u64 = round.parse().unwrap();
    let mut store = SqliteStore::open(Path::new(dir)).unwrap();
    // A new replica each round, so its op ids never clash with a killed round's.
    let replica = ReplicaId::from_u128(0xC000 + u128::from(round));
    let mut doc = match load_doc(&mut store, CRASH_DOC, replica).unwrap() {
        Some(doc) => doc,
        None => Doc::new(replica),
    };
    let mut last = store.log_len(CRASH_DOC).unwrap().last_seq;
    let mut rng = SplitMix(round);
    let mut out = std::io::stdout().lock();
    for i in 0..100_000u64 {
        if rng.below(4) == 0 {
            // A batch of three in one transaction.
            let markers: Vec<String> = (0..3).map(|j| format!("<{round}.{i}.{j}>")).collect();
            let updates: Vec<Vec<u8>> = markers.iter().map(|m| edit(&mut doc, m)).collect();
            let refs: Vec<&[u8]> = updates.iter().map(Vec::as_slice).collect();
            let seqs = store.append_batch(CRASH_DOC, &refs).unwrap();
            for (seq, marker) in seqs.zip(&markers) {
                ack(&mut out, seq, marker);
                last = seq;
            }
        } else {
            let marker = format!("<{round}.{i}>");
            last = store.append(CRASH_DOC, &edit(&mut doc, &marker)).unwrap();
            ack(&mut out, last, &marker);
        }
        if rng.below(10) == 0 {
            store.compact(CRASH_DOC, &doc.encode(), last).unwrap();
        }
    }
}

fn acknowledged_appends_survive_sigkill() {
    let rounds: u64 = std::env::var("CHORUS_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    let seed: u64 = std::env::var("CHORUS_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED);
    let mut rng = SplitMix(seed);
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    // Every acknowledged marker, by seq, over all rounds.
    let mut acked: BTreeMap<u64, String> = BTreeMap::new();
    let started = Instant::now();
    for round in 0..rounds {
        let mut child = Command::new(&exe)
            .env(CHILD_DIR, dir.path())
            .env(CHILD_ROUND, round.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut record = |line: &str| {
            let Some(rest) = line.strip_prefix("ACK ").filter(|r| r.ends_with('>')) else {
                return false;
            };
            let (seq, marker) = rest.split_once(' ').unwrap();
            let seq: u64 = seq.parse().unwrap();
            let previous = acked.insert(seq, marker.to_owned());
            assert!(previous.is_none(), "seq {seq} acknowledged twice");
            true
        };
        // Kill after a random number of acks, or after a random delay once the child
        // has started appending.
        let acks_before_kill = 1 + rng.below(40);
        let delay = (rng.below(2) == 0).then(|| Duration::from_micros(rng.below(30_000)));
        let mut seen = 0;
        for line in lines.by_ref() {
            if record(&line.unwrap()) {
                seen += 1;
                if delay.is_some() || seen == acks_before_kill {
                    break;
                }
            }
        }
        if let Some(delay) = delay {
            std::thread::sleep(delay);
        }
        child.kill().unwrap(); // SIGKILL on Unix.
        // Everything printed before the kill was acknowledged too.
        for line in lines {
            record(&line.unwrap());
        }
        let status = child.wait().unwrap();
        assert!(
            !status.success(),
            "round {round}: the child ended on its own"
        );

        let mut store = SqliteStore::open(dir.path()).unwrap();
        let stored: Stored = store.load(CRASH_DOC).unwrap().expect("stored");
        let logged: HashSet<u64> = stored.updates.iter().map(|(s, _)| *s).collect();
        for &seq in acked.keys() {
            assert!(
                seq <= stored.snapshot_up_to || logged.contains(&seq),
                "seed {seed} round {round}: acknowledged seq {seq} is gone \
                 (snapshot up to {}, log {:?})",
                stored.snapshot_up_to,
                stored.updates.first().map(|u| u.0)..=stored.updates.last().map(|u| u.0),
            );
        }
        let doc = load_doc(&mut store, CRASH_DOC, ROOM).unwrap().unwrap();
        doc.check().unwrap();
        let text = doc.text("body").to_string();
        for (seq, marker) in &acked {
            assert_eq!(
                text.matches(marker.as_str()).count(),
                1,
                "seed {seed} round {round}: acknowledged edit {marker} (seq {seq}) lost or duplicated"
            );
        }
    }
    assert!(
        acked.len() as u64 >= rounds,
        "every round acknowledges at least one edit"
    );
    eprintln!(
        "{rounds} SIGKILLs, {} acknowledged appends checked in {:?}",
        acked.len(),
        started.elapsed()
    );
}
