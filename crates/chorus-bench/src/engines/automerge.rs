//! Automerge.

use anyhow::{Context, bail};
use automerge::transaction::Transactable;
use automerge::{
    ActorId, AutoCommit, Change, ChangeHash, LoadOptions, ObjId, ObjType, PatchAction, ROOT,
    ReadDoc, TextEncoding, Value,
};
use chorus_trace::{FIELD, Patch};

use super::{ConcInput, Engine, HistoryEngine, SeqInput, StepError};

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

/// The fork's actor.
const FORK_ACTOR: u64 = 7;

impl HistoryEngine for Automerge {
    const NAME: &'static str = "automerge";
    type Doc = AmDoc;
    type Version = Vec<ChangeHash>;
    type Diff = Vec<automerge::Patch>;
    type Fork = AmDoc;

    fn history_doc(start: &str) -> anyhow::Result<AmDoc> {
        Self::replay_sequential(&SeqInput {
            start,
            txns: &[],
            utf16: Vec::new(),
        })
    }

    fn apply_txn(am: &mut AmDoc, patches: &[Patch], _: &[(usize, usize)]) -> anyhow::Result<()> {
        splice(am, patches)?;
        am.doc.commit();
        Ok(())
    }

    fn version(am: &mut AmDoc) -> Vec<ChangeHash> {
        am.doc.get_heads()
    }

    fn current_text(am: &mut AmDoc) -> anyhow::Result<String> {
        Self::text(am)
    }

    fn text_at(am: &mut AmDoc, at: &Vec<ChangeHash>) -> Result<String, StepError> {
        Ok(am.doc.text_at(&am.text, at).context("automerge: text_at")?)
    }

    fn before_diff(am: &mut AmDoc) {
        // `AutoCommit` keeps the last diff and returns a clone of it when asked for the
        // same range again; an empty diff replaces it.
        am.doc.diff(&[], &[]);
    }

    fn diff(
        am: &mut AmDoc,
        from: &Vec<ChangeHash>,
        to: &Vec<ChangeHash>,
    ) -> Result<Vec<automerge::Patch>, StepError> {
        Ok(am.doc.diff(from, to))
    }

    fn apply_diff(diff: &Vec<automerge::Patch>, text: &str) -> anyhow::Result<String> {
        // Patches are positional, each on the result of the previous one, in code points.
        let mut chars: Vec<char> = text.chars().collect();
        for patch in diff {
            match &patch.action {
                PatchAction::SpliceText { index, value, .. } => {
                    anyhow::ensure!(*index <= chars.len(), "automerge: splice past the end");
                    chars.splice(*index..*index, value.make_string().chars());
                }
                PatchAction::DeleteSeq { index, length } => {
                    anyhow::ensure!(
                        index + length <= chars.len(),
                        "automerge: delete past the end"
                    );
                    chars.drain(*index..index + length);
                }
                other => bail!("automerge: unexpected patch {other:?}"),
            }
        }
        Ok(chars.into_iter().collect())
    }

    fn duplicate(am: &mut AmDoc) -> anyhow::Result<AmDoc> {
        Ok(AmDoc {
            doc: am.doc.fork().with_actor(actor(1)),
            text: am.text.clone(),
        })
    }

    fn fork_edit_merge(
        am: &mut AmDoc,
        target: &mut AmDoc,
        at: &Vec<ChangeHash>,
        edits: &[Patch],
        _: &[(usize, usize)],
    ) -> Result<AmDoc, StepError> {
        let doc = am
            .doc
            .fork_at(at)
            .context("automerge: fork_at")?
            .with_actor(actor(FORK_ACTOR));
        let mut fork = AmDoc {
            doc,
            text: am.text.clone(),
        };
        for edit in edits {
            splice(&mut fork, std::slice::from_ref(edit))?;
            fork.doc.commit();
        }
        target
            .doc
            .merge(&mut fork.doc)
            .context("automerge: merge")?;
        Ok(fork)
    }

    fn fork_text(fork: &mut AmDoc) -> anyhow::Result<String> {
        Self::text(fork)
    }

    fn converge(fork: &mut AmDoc, target: &mut AmDoc) -> anyhow::Result<String> {
        fork.doc
            .merge(&mut target.doc)
            .context("automerge: merge")?;
        Self::text(fork)
    }
}
