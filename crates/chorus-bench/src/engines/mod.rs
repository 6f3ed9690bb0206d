//! The engines under comparison, behind one trait so every engine is measured by the
//! same code.

mod automerge;
mod chorus;
mod diamond;
mod loro;
mod yrs;

use chorus_trace::{ConcTxn, Patch, Schedule, SeqTxn};

pub use self::automerge::Automerge;
pub use self::chorus::Chorus;
pub use self::diamond::DiamondTypes;
pub use self::loro::Loro;
pub use self::yrs::Yrs;

/// One CRDT engine, driven through its ordinary public API.
///
/// Every engine replays traces the same way: a sequential trace as one transaction per
/// trace transaction on one replica; a concurrent trace with one replica per agent,
/// following the shared [`Schedule`] (an engine may say why it differs, see
/// [`Engine::CONCURRENT_NOTE`]).
pub trait Engine {
    /// The name shown in reports.
    const NAME: &'static str;
    /// How this engine's concurrent replay departs from the per-agent method, if it does.
    const CONCURRENT_NOTE: Option<&'static str> = None;
    /// A replayed document.
    type Doc;

    /// Replays a sequential trace.
    fn replay_sequential(input: &SeqInput<'_>) -> anyhow::Result<Self::Doc>;

    /// Replays a concurrent trace and returns the merge of all replicas.
    fn replay_concurrent(input: &ConcInput<'_>) -> anyhow::Result<Self::Doc>;

    /// The text of the replayed document.
    fn text(doc: &mut Self::Doc) -> anyhow::Result<String>;

    /// The engine's standard full-state encoding.
    fn encode(doc: &mut Self::Doc) -> anyhow::Result<Vec<u8>>;

    /// Loads a full-state encoding into a fresh document and reads its text.
    fn decode_text(bytes: &[u8]) -> anyhow::Result<String>;
}

/// A sequential trace, prepared (outside the timed region) for every engine.
#[derive(Debug)]
pub struct SeqInput<'a> {
    /// The document before the first transaction.
    pub start: &'a str,
    /// The transactions.
    pub txns: &'a [SeqTxn],
    /// `(pos, del)` of every patch, in order, in UTF-16 code units, for engines that
    /// cannot count chars.
    pub utf16: Vec<(usize, usize)>,
}

impl<'a> SeqInput<'a> {
    /// Prepares a sequential trace.
    pub fn new(start: &'a str, txns: &'a [SeqTxn]) -> Self {
        Self {
            start,
            txns,
            utf16: utf16_positions(start, txns),
        }
    }
}

/// A concurrent trace, with its per-agent replay plan.
#[derive(Debug)]
pub struct ConcInput<'a> {
    /// The number of agents (replicas).
    pub num_agents: usize,
    /// The transactions.
    pub txns: &'a [ConcTxn],
    /// Which updates each replica applies before each transaction.
    pub plan: &'a Schedule,
}

/// `(pos, del)` of every patch of a sequential trace in UTF-16 code units.
///
/// Only chars outside the BMP (two UTF-16 units each) make the two units differ, so
/// this tracks just their char positions in the evolving document.
pub fn utf16_positions(start: &str, txns: &[SeqTxn]) -> Vec<(usize, usize)> {
    let astral_at = |s: &str, offset: usize| -> Vec<usize> {
        s.chars()
            .enumerate()
            .filter(|(_, c)| c.len_utf16() == 2)
            .map(|(i, _)| offset + i)
            .collect()
    };
    // Char positions of astral chars in the current document, ascending.
    let mut astral = astral_at(start, 0);
    let mut out = Vec::new();
    for Patch { pos, del, ins } in txns.iter().flat_map(|t| &t.patches) {
        let (pos, del) = (*pos, *del);
        let lo = astral.partition_point(|&p| p < pos);
        let hi = astral.partition_point(|&p| p < pos + del);
        out.push((pos + lo, del + (hi - lo)));
        astral.drain(lo..hi);
        let ins_len = ins.chars().count();
        for p in &mut astral[lo..] {
            *p = *p - del + ins_len;
        }
        astral.splice(lo..lo, astral_at(ins, pos));
    }
    out
}

/// True if `s` holds a char outside the Basic Multilingual Plane, which takes two
/// UTF-16 code units (so char and UTF-16 positions differ past it).
pub fn has_astral(s: &str) -> bool {
    s.chars().any(|c| c.len_utf16() == 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf16_positions_track_astral_chars() {
        let patch = |pos, del, ins: &str| Patch {
            pos,
            del,
            ins: ins.into(),
        };
        let txns = vec![SeqTxn {
            patches: vec![
                patch(0, 0, "a😀b"),
                patch(3, 0, "c"),
                patch(1, 1, "🎉🎉"),
                patch(4, 1, ""),
            ],
        }];
        // After "a😀b", char 3 is UTF-16 unit 4; deleting 😀 deletes 2 units; then the
        // text is "a🎉🎉bc", and char 4 ('c') is at unit 6.
        assert_eq!(
            utf16_positions("", &txns),
            vec![(0, 0), (4, 0), (1, 2), (6, 1)]
        );
        assert_eq!(
            utf16_positions(
                "😀",
                &[SeqTxn {
                    patches: vec![patch(1, 0, "x")]
                }]
            ),
            vec![(2, 0)]
        );
    }
}
