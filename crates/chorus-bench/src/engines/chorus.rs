//! Chorus itself.

use anyhow::Context;
use chorus_doc::{Doc, ReplicaId};
use chorus_trace::FIELD;

use super::{ConcInput, Engine, SeqInput};

/// Chorus, through `chorus-trace`'s replay functions (the same ones `chorus replay` uses).
#[derive(Debug)]
pub struct Chorus;

impl Engine for Chorus {
    const NAME: &'static str = "chorus";
    type Doc = Doc;

    fn replay_sequential(input: &SeqInput<'_>) -> anyhow::Result<Doc> {
        let SeqInput { start, txns, .. } = *input;
        chorus_trace::replay_sequential(start, txns).context("chorus sequential replay")
    }

    fn replay_concurrent(input: &ConcInput<'_>) -> anyhow::Result<Doc> {
        let ConcInput {
            num_agents,
            txns,
            plan: _,
        } = *input;
        // `replay_concurrent` computes the same schedule itself; that costs a few
        // milliseconds at most and keeps the bench on the exact code path users run.
        chorus_trace::replay_concurrent(num_agents, txns)
    }

    fn text(doc: &mut Doc) -> anyhow::Result<String> {
        Ok(doc.text(FIELD).to_string())
    }

    fn encode(doc: &mut Doc) -> anyhow::Result<Vec<u8>> {
        Ok(doc.encode())
    }

    fn decode_text(bytes: &[u8]) -> anyhow::Result<String> {
        let doc = Doc::decode(bytes, ReplicaId::from_u128(u128::MAX)).context("chorus decode")?;
        Ok(doc.text(FIELD).to_string())
    }
}

/// Chorus' history API: `Doc::at` (a read-only checkout), `Doc::diff` and
/// `Doc::fork_at`, with the fork merged back by `encode_since` / `apply_update`.
mod history {
    use anyhow::{Context, bail};
    use chorus_doc::{Diff, Doc, Event, ReplicaId, TextDelta, TextUnit, VersionVector};
    use chorus_trace::{FIELD, Patch};

    use super::Chorus;
    use crate::engines::{DeltaStep, HistoryEngine, StepError, apply_delta};

    /// The fork's replica.
    const FORK_REPLICA: u128 = 7;

    /// Applies `patches` to the text field in one transaction.
    fn apply(doc: &mut Doc, patches: &[Patch]) -> anyhow::Result<()> {
        let mut tx = doc.transact();
        {
            let mut text = tx.text(FIELD);
            for patch in patches {
                if patch.del > 0 {
                    text.delete(patch.pos, patch.del)?;
                }
                if !patch.ins.is_empty() {
                    text.insert(patch.pos, &patch.ins)?;
                }
            }
        }
        tx.commit();
        Ok(())
    }

    impl HistoryEngine for Chorus {
        const NAME: &'static str = "chorus";
        type Doc = Doc;
        type Version = VersionVector;
        type Diff = Event;
        type Fork = Doc;

        fn history_doc(start: &str) -> anyhow::Result<Doc> {
            Ok(chorus_trace::replay_sequential(start, &[])?)
        }

        fn apply_txn(doc: &mut Doc, patches: &[Patch], _: &[(usize, usize)]) -> anyhow::Result<()> {
            apply(doc, patches)
        }

        fn version(doc: &mut Doc) -> VersionVector {
            doc.version().clone()
        }

        fn current_text(doc: &mut Doc) -> anyhow::Result<String> {
            Ok(doc.text(FIELD).to_string())
        }

        fn text_at(doc: &mut Doc, at: &VersionVector) -> Result<String, StepError> {
            let checkout = doc.at(at).context("chorus: Doc::at")?;
            Ok(checkout.text(FIELD).to_string())
        }

        fn diff(
            doc: &mut Doc,
            from: &VersionVector,
            to: &VersionVector,
        ) -> Result<Event, StepError> {
            Ok(doc
                .diff(from, to, TextUnit::Char)
                .context("chorus: Doc::diff")?)
        }

        fn apply_diff(diff: &Event, text: &str) -> anyhow::Result<String> {
            let mut out = text.to_owned();
            for change in &diff.changes {
                match &change.diff {
                    Diff::Text(deltas) if change.path == [FIELD] => {
                        out = apply_delta(
                            &out,
                            deltas.iter().map(|d| match d {
                                TextDelta::Retain(n) => DeltaStep::Retain(*n),
                                TextDelta::Insert(s) => DeltaStep::Insert(s),
                                TextDelta::Delete(n) => DeltaStep::Delete(*n),
                            }),
                        )
                        .context("chorus: applying the diff")?;
                    }
                    other => bail!("chorus: unexpected change of {:?}: {other:?}", change.path),
                }
            }
            Ok(out)
        }

        fn duplicate(doc: &mut Doc) -> anyhow::Result<Doc> {
            Ok(doc.clone())
        }

        fn fork_edit_merge(
            doc: &mut Doc,
            target: &mut Doc,
            at: &VersionVector,
            edits: &[Patch],
            _: &[(usize, usize)],
        ) -> Result<Doc, StepError> {
            let mut fork = doc
                .fork_at(at, ReplicaId::from_u128(FORK_REPLICA))
                .context("chorus: Doc::fork_at")?;
            for edit in edits {
                apply(&mut fork, std::slice::from_ref(edit))?;
            }
            target
                .apply_update(&fork.encode_since(at))
                .context("chorus: merging the fork")?;
            Ok(fork)
        }

        fn fork_text(fork: &mut Doc) -> anyhow::Result<String> {
            Ok(fork.text(FIELD).to_string())
        }

        fn converge(fork: &mut Doc, target: &mut Doc) -> anyhow::Result<String> {
            let update = target.encode_since(fork.version());
            fork.apply_update(&update)
                .context("chorus: merging into the fork")?;
            Ok(fork.text(FIELD).to_string())
        }
    }
}
