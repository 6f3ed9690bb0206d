//! Loro.

use anyhow::Context;
use chorus_trace::{FIELD, Patch};
use loro::{ExportMode, LoroDoc, LoroText};

use super::{ConcInput, Engine, SeqInput};

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
