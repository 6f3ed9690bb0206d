//! Loro.

use anyhow::{Context, bail};
use chorus_trace::{FIELD, Patch};
use loro::event::{Diff, DiffBatch};
use loro::{ContainerID, ContainerType, ExportMode, Frontiers, LoroDoc, LoroText, TextDelta};

use super::{ConcInput, DeltaStep, Engine, HistoryEngine, SeqInput, StepError, apply_delta};

/// Loro, with its default (Unicode scalar value) text positions.
#[derive(Debug)]
pub struct Loro;

fn new_doc(peer: u64) -> anyhow::Result<LoroDoc> {
    let doc = LoroDoc::new();
    doc.set_peer_id(peer).context("loro: set_peer_id")?;
    Ok(doc)
}

fn apply(text: &LoroText, patches: &[Patch]) -> anyhow::Result<()> {
    for patch in patches {
        if patch.del > 0 {
            text.delete(patch.pos, patch.del).context("loro: delete")?;
        }
        if !patch.ins.is_empty() {
            text.insert(patch.pos, &patch.ins).context("loro: insert")?;
        }
    }
    Ok(())
}

impl Engine for Loro {
    const NAME: &'static str = "loro";
    type Doc = LoroDoc;

    fn replay_sequential(input: &SeqInput<'_>) -> anyhow::Result<LoroDoc> {
        let SeqInput { start, txns, .. } = *input;
        let doc = new_doc(1)?;
        let text = doc.get_text(FIELD);
        if !start.is_empty() {
            text.insert(0, start)?;
            doc.commit();
        }
        for txn in txns {
            apply(&text, &txn.patches)?;
            doc.commit();
        }
        Ok(doc)
    }

    fn replay_concurrent(input: &ConcInput<'_>) -> anyhow::Result<LoroDoc> {
        let ConcInput {
            num_agents,
            txns,
            plan,
        } = *input;
        let docs = (0..num_agents as u64)
            .map(|a| new_doc(a + 1))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let texts: Vec<LoroText> = docs.iter().map(|d| d.get_text(FIELD)).collect();
        let mut updates: Vec<Vec<u8>> = Vec::with_capacity(txns.len());
        for (t, (txn, before)) in txns.iter().zip(&plan.before).enumerate() {
            let doc = &docs[txn.agent];
            for &i in before {
                doc.import(&updates[i])
                    .with_context(|| format!("loro: importing update {i}"))?;
            }
            let version = doc.oplog_vv();
            apply(&texts[txn.agent], &txn.patches)
                .with_context(|| format!("loro: transaction {t}"))?;
            doc.commit();
            updates.push(
                doc.export(ExportMode::updates(&version))
                    .context("loro: export updates")?,
            );
        }
        drop(updates);
        let mut docs = docs.into_iter();
        let merged = match docs.next() {
            Some(doc) => doc,
            None => new_doc(1)?,
        };
        for other in docs {
            let update = other
                .export(ExportMode::updates(&merged.oplog_vv()))
                .context("loro: export updates")?;
            merged.import(&update).context("loro: merging replicas")?;
        }
        Ok(merged)
    }

    fn text(doc: &mut LoroDoc) -> anyhow::Result<String> {
        Ok(doc.get_text(FIELD).to_string())
    }

    fn encode(doc: &mut LoroDoc) -> anyhow::Result<Vec<u8>> {
        doc.export(ExportMode::Snapshot)
            .context("loro: export snapshot")
    }

    fn decode_text(bytes: &[u8]) -> anyhow::Result<String> {
        let doc = LoroDoc::from_snapshot(bytes).context("loro: import snapshot")?;
        Ok(doc.get_text(FIELD).to_string())
    }
}

/// The fork's peer.
const FORK_PEER: u64 = 7;

impl HistoryEngine for Loro {
    const NAME: &'static str = "loro";
    type Doc = LoroDoc;
    type Version = Frontiers;
    type Diff = DiffBatch;
    type Fork = LoroDoc;

    fn history_doc(start: &str) -> anyhow::Result<LoroDoc> {
        let doc = new_doc(1)?;
        if !start.is_empty() {
            doc.get_text(FIELD).insert(0, start)?;
            doc.commit();
        }
        Ok(doc)
    }

    fn apply_txn(doc: &mut LoroDoc, patches: &[Patch], _: &[(usize, usize)]) -> anyhow::Result<()> {
        apply(&doc.get_text(FIELD), patches)?;
        doc.commit();
        Ok(())
    }

    fn version(doc: &mut LoroDoc) -> Frontiers {
        doc.oplog_frontiers()
    }

    fn current_text(doc: &mut LoroDoc) -> anyhow::Result<String> {
        Ok(doc.get_text(FIELD).to_string())
    }

    fn text_at(doc: &mut LoroDoc, at: &Frontiers) -> Result<String, StepError> {
        doc.checkout(at).context("loro: checkout")?;
        Ok(doc.get_text(FIELD).to_string())
    }

    fn after_read(doc: &mut LoroDoc) {
        doc.checkout_to_latest();
    }

    fn diff(doc: &mut LoroDoc, from: &Frontiers, to: &Frontiers) -> Result<DiffBatch, StepError> {
        Ok(doc.diff(from, to).context("loro: diff")?)
    }

    fn apply_diff(diff: &DiffBatch, text: &str) -> anyhow::Result<String> {
        let field = ContainerID::new_root(FIELD, ContainerType::Text);
        let mut out = text.to_owned();
        for (id, change) in diff.iter() {
            match change {
                Diff::Text(deltas) if *id == field => {
                    out = apply_delta(
                        &out,
                        deltas.iter().map(|d| match d {
                            TextDelta::Retain { retain, .. } => DeltaStep::Retain(*retain),
                            TextDelta::Insert { insert, .. } => DeltaStep::Insert(insert),
                            TextDelta::Delete { delete } => DeltaStep::Delete(*delete),
                        }),
                    )
                    .context("loro: applying the diff")?;
                }
                other => bail!("loro: unexpected change of {id}: {other:?}"),
            }
        }
        Ok(out)
    }

    fn duplicate(doc: &mut LoroDoc) -> anyhow::Result<LoroDoc> {
        let copy = doc.fork();
        copy.set_peer_id(1).context("loro: set_peer_id")?;
        Ok(copy)
    }

    fn fork_edit_merge(
        doc: &mut LoroDoc,
        target: &mut LoroDoc,
        at: &Frontiers,
        edits: &[Patch],
        _: &[(usize, usize)],
    ) -> Result<LoroDoc, StepError> {
        let fork = doc.fork_at(at).context("loro: fork_at")?;
        fork.set_peer_id(FORK_PEER).context("loro: set_peer_id")?;
        let text = fork.get_text(FIELD);
        for edit in edits {
            apply(&text, std::slice::from_ref(edit))?;
            fork.commit();
        }
        let update = fork
            .export(ExportMode::updates(&target.oplog_vv()))
            .context("loro: export updates")?;
        target.import(&update).context("loro: import")?;
        Ok(fork)
    }

    fn fork_text(fork: &mut LoroDoc) -> anyhow::Result<String> {
        Ok(fork.get_text(FIELD).to_string())
    }

    fn converge(fork: &mut LoroDoc, target: &mut LoroDoc) -> anyhow::Result<String> {
        let update = target
            .export(ExportMode::updates(&fork.oplog_vv()))
            .context("loro: export updates")?;
        fork.import(&update).context("loro: import")?;
        Ok(fork.get_text(FIELD).to_string())
    }
}
