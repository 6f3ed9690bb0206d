//! The engines under comparison, behind one trait so every engine is measured by the
//! same code.

mod automerge;
mod chorus;
mod diamond;
mod loro;
mod yrs;

use std::fmt;

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

/// Why an engine could not do one history step.
#[derive(Debug)]
pub enum StepError {
    /// The engine's API cannot do this step (shown as `n/a` with the reason).
    Unsupported(String),
    /// The engine tried and failed: the run fails.
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for StepError {
    fn from(err: anyhow::Error) -> Self {
        StepError::Failed(err)
    }
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StepError::Unsupported(reason) => write!(f, "n/a: {reason}"),
            StepError::Failed(err) => write!(f, "{err:#}"),
        }
    }
}

/// An engine's history API: reading an old version, diffing two versions, forking at
/// an old version and merging the fork back. Measured by `crate::history`.
///
/// The replay goes transaction by transaction (one engine transaction per trace
/// transaction, as in [`Engine::replay_sequential`]) so versions can be taken between
/// them, outside the timed regions. The timed methods are [`HistoryEngine::text_at`],
/// [`HistoryEngine::diff`] and [`HistoryEngine::fork_edit_merge`]; the others set up or
/// check.
pub trait HistoryEngine {
    /// The name shown in reports (the same as the engine's [`Engine::NAME`]).
    const NAME: &'static str;
    /// A document that keeps its history.
    type Doc;
    /// A version of the document, taken during the replay.
    type Version;
    /// What [`HistoryEngine::diff`] returns, in the engine's own form.
    type Diff;
    /// A fork: a document (or, for diamond-types, a branch) at an old version.
    type Fork;

    /// A new document holding `start` (committed, if not empty), set to keep history.
    fn history_doc(start: &str) -> anyhow::Result<Self::Doc>;

    /// Applies one trace transaction as one engine transaction. `utf16` holds the
    /// patches' `(pos, del)` in UTF-16 code units.
    fn apply_txn(
        doc: &mut Self::Doc,
        patches: &[Patch],
        utf16: &[(usize, usize)],
    ) -> anyhow::Result<()>;

    /// The document's current version.
    fn version(doc: &mut Self::Doc) -> Self::Version;

    /// The document's current text.
    fn current_text(doc: &mut Self::Doc) -> anyhow::Result<String>;

    /// The text as it was at `at` (timed).
    fn text_at(doc: &mut Self::Doc, at: &Self::Version) -> Result<String, StepError>;

    /// Called (untimed) after each [`HistoryEngine::text_at`] to bring the document
    /// back to its latest version, for engines whose read moves it (Loro's `checkout`
    /// detaches the document; `checkout_to_latest` costs about half as much again).
    fn after_read(_doc: &mut Self::Doc) {}

    /// Called (untimed) before each [`HistoryEngine::diff`]: clears what would let a
    /// repeated diff skip the work (Automerge caches the last diff).
    fn before_diff(_doc: &mut Self::Doc) {}

    /// The change from `from` to `to` (timed).
    fn diff(
        doc: &mut Self::Doc,
        from: &Self::Version,
        to: &Self::Version,
    ) -> Result<Self::Diff, StepError>;

    /// Applies `diff` to `text` (the text at `from`), to check it gives the text at `to`.
    fn apply_diff(diff: &Self::Diff, text: &str) -> anyhow::Result<String>;

    /// An independent copy of `doc`, history included, to merge a fork into.
    fn duplicate(doc: &mut Self::Doc) -> anyhow::Result<Self::Doc>;

    /// Forks `doc` at `at` (as another replica), applies `edits` to the fork (one
    /// transaction each; `utf16` as in [`HistoryEngine::apply_txn`]), and merges the
    /// fork's changes into `target`, a [`HistoryEngine::duplicate`] of `doc` (timed).
    fn fork_edit_merge(
        doc: &mut Self::Doc,
        target: &mut Self::Doc,
        at: &Self::Version,
        edits: &[Patch],
        utf16: &[(usize, usize)],
    ) -> Result<Self::Fork, StepError>;

    /// The fork's text.
    fn fork_text(fork: &mut Self::Fork) -> anyhow::Result<String>;

    /// Merges `target`'s changes into the fork and returns the fork's text, which must
    /// then equal `target`'s.
    fn converge(fork: &mut Self::Fork, target: &mut Self::Doc) -> anyhow::Result<String>;
}

/// One step of a text delta, in chars: the common form of Chorus' and Loro's diffs.
#[derive(Debug, Clone, Copy)]
pub enum DeltaStep<'a> {
    /// Keep this many chars.
    Retain(usize),
    /// Insert this text.
    Insert(&'a str),
    /// Remove this many chars.
    Delete(usize),
}

/// Applies a text delta to `text` (what the delta does not cover is kept).
pub fn apply_delta<'a>(
    text: &str,
    delta: impl IntoIterator<Item = DeltaStep<'a>>,
) -> anyhow::Result<String> {
    let mut chars = text.chars();
    let mut out = String::with_capacity(text.len());
    for step in delta {
        match step {
            DeltaStep::Retain(n) => {
                let before = out.len();
                out.extend(chars.by_ref().take(n));
                anyhow::ensure!(
                    out[before..].chars().count() == n,
                    "the delta retains past the end of the text"
                );
            }
            DeltaStep::Insert(s) => out.push_str(s),
            DeltaStep::Delete(n) => anyhow::ensure!(
                chars.by_ref().take(n).count() == n,
                "the delta deletes past the end of the text"
            ),
        }
    }
    out.extend(chars);
    Ok(out)
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
