//! Automerge.

use anyhow::{Context, bail};
use automerge::transaction::Transactable;
use automerge::{
    ActorId, AutoCommit, Change, LoadOptions, ObjId, ObjType, ROOT, ReadDoc, TextEncoding, Value,
};
use chorus_trace::{FIELD, Patch};

use super::{ConcInput, Engine, SeqInput};

/// Automerge's `AutoCommit` document with code-point text positions.
#[derive(Debug)]
pub struct Automerge;

/// A document and its text object.
#[derive(Debug)]
pub struct AmDoc {
    doc: AutoCommit,
    text: ObjId,
}

fn actor(n: u64) -> ActorId {
    ActorId::from(n.to_be_bytes())
}

fn text_obj(doc: &AutoCommit) -> anyhow::Result<ObjId> {
    match doc
        .get(ROOT, FIELD)
        .context("automerge: reading the text field")?
    {
        Some((Value::Object(ObjType::Text), id)) => Ok(id),
        other => bail!("automerge: field {FIELD:?} is not a text object: {other:?}"),
    }
}

fn splice(am: &mut AmDoc, patches: &[Patch]) -> anyhow::Result<()> {
    for patch in patches {
        let del = isize::try_from(patch.del).context("delete too long")?;
        am.doc
            .splice_text(&am.text, patch.pos, del, &patch.ins)
            .context("automerge: splice_text")?;
    }
    Ok(())
}

impl Engine for Automerge {
    const NAME: &'static str = "automerge";
    type Doc = AmDoc;

    fn replay_sequential(input: &SeqInput<'_>) -> anyhow::Result<AmDoc> {
        let SeqInput { start, txns, .. } = *input;
        let mut doc =
            AutoCommit::new_with_encoding(TextEncoding::UnicodeCodePoint).with_actor(actor(1));
        let text = doc.put_object(ROOT, FIELD, ObjType::Text)?;
        if !start.is_empty() {
            doc.splice_text(&text, 0, 0, start)?;
        }
        doc.commit();
        let mut am = AmDoc { doc, text };
        for txn in txns {
            splice(&mut am, &txn.patches)?;
            am.doc.commit();
        }
        Ok(am)
    }

    fn replay_concurrent(input: &ConcInput<'_>) -> anyhow::Result<AmDoc> {
        let ConcInput {
            num_agents,
            txns,
            plan,
        } = *input;
        // Every replica must edit the same text object, so one genesis change creates
        // it and every replica starts from that.
        let mut genesis =
            AutoCommit::new_with_encoding(TextEncoding::UnicodeCodePoint).with_actor(actor(0));
        genesis.put_object(ROOT, FIELD, ObjType::Text)?;
        let genesis = genesis.save();
        let mut docs = (0..num_agents as u64)
            .map(|a| {
                let options = LoadOptions::new().text_encoding(TextEncoding::UnicodeCodePoint);
                let doc =
                    AutoCommit::load_with_options(&genesis, options)?.with_actor(actor(a + 1));
                let text = text_obj(&doc)?;
                Ok(AmDoc { doc, text })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut changes: Vec<Option<Change>> = Vec::with_capacity(txns.len());
        for (t, (txn, before)) in txns.iter().zip(&plan.before).enumerate() {
            let am = &mut docs[txn.agent];
            let missing: Vec<Change> = before.iter().filter_map(|&i| changes[i].clone()).collect();
            if !missing.is_empty() {
                am.doc
                    .apply_changes(missing)
                    .with_context(|| format!("automerge: merging before transaction {t}"))?;
            }
            splice(am, &txn.patches).with_context(|| format!("automerge: transaction {t}"))?;
            let change = am.doc.commit().and_then(|_| am.doc.get_last_local_change());
            changes.push(change);
        }
        drop(changes);
        let mut docs = docs.into_iter();
        let Some(mut merged) = docs.next() else {
            return Self::replay_sequential(&SeqInput::new("", &[]));
        };
        for mut other in docs {
            merged
                .doc
                .merge(&mut other.doc)
                .context("automerge: merging replicas")?;
        }
        Ok(merged)
    }

    fn text(am: &mut AmDoc) -> anyhow::Result<String> {
        Ok(am.doc.text(&am.text)?)
    }

    fn encode(am: &mut AmDoc) -> anyhow::Result<Vec<u8>> {
        Ok(am.doc.save())
    }

    fn decode_text(bytes: &[u8]) -> anyhow::Result<String> {
        let doc = AutoCommit::load(bytes).context("automerge: load")?;
        let text = text_obj(&doc)?;
        Ok(doc.text(&text)?)
    }
}
