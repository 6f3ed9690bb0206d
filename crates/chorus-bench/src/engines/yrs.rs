//! yrs, the Rust port of Yjs.

use anyhow::{Context, anyhow, bail};
use chorus_trace::{FIELD, Patch};
use yrs::types::text::{ChangeKind, Diff, YChange};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::{Encoder, EncoderV1};
use yrs::{
    Any, ClientID, Doc, GetString, OffsetKind, Options, Out, ReadTxn, Snapshot, StateVector, Text,
    TextRef, Transact, Update,
};

use super::{ConcInput, Engine, HistoryEngine, SeqInput, StepError, has_astral};

/// yrs with UTF-16 offsets (it has no char offsets; positions are converted).
#[derive(Debug)]
pub struct Yrs;

fn new_doc(client: u64) -> Doc {
    let mut options = Options::with_client_id(ClientID::new(client));
    options.offset_kind = OffsetKind::Utf16;
    Doc::with_options(options)
}

fn u32_of(n: usize) -> anyhow::Result<u32> {
    u32::try_from(n).map_err(|_| anyhow!("position {n} does not fit yrs' 32-bit offsets"))
}

/// The UTF-16 offset of char position `pos` in `s`.
fn char_to_utf16(s: &str, pos: usize) -> usize {
    s.chars().take(pos).map(char::len_utf16).sum()
}

fn apply_patch(
    text: &TextRef,
    txn: &mut yrs::TransactionMut<'_>,
    patch: &Patch,
    astral: bool,
) -> anyhow::Result<()> {
    let (pos, del) = if astral {
        // Slow path, only for concurrent traces with astral chars: convert through
        // the current text.
        let s = text.get_string(txn);
        let pos16 = char_to_utf16(&s, patch.pos);
        (pos16, char_to_utf16(&s, patch.pos + patch.del) - pos16)
    } else {
        (patch.pos, patch.del)
    };
    let len = text.len(txn) as usize;
    anyhow::ensure!(
        pos + del <= len,
        "patch at {pos}+{del} is out of range (text is {len} long)"
    );
    if del > 0 {
        text.remove_range(txn, u32_of(pos)?, u32_of(del)?);
    }
    if !patch.ins.is_empty() {
        text.insert(txn, u32_of(pos)?, &patch.ins);
    }
    Ok(())
}

fn apply_update(doc: &Doc, bytes: &[u8]) -> anyhow::Result<()> {
    let update = Update::decode_v1(bytes).context("yrs: decoding an update")?;
    doc.transact_mut()
        .apply_update(update)
        .context("yrs: applying an update")?;
    Ok(())
}

impl Engine for Yrs {
    const NAME: &'static str = "yrs";
    type Doc = Doc;

    fn replay_sequential(input: &SeqInput<'_>) -> anyhow::Result<Doc> {
        let doc = new_doc(1);
        let text = doc.get_or_insert_text(FIELD);
        if !input.start.is_empty() {
            text.insert(&mut doc.transact_mut(), 0, input.start);
        }
        // Trace positions were validated on load, so yrs (which panics on bad
        // positions) gets only in-range ones.
        let mut utf16 = input.utf16.iter();
        for txn in input.txns {
            let mut tx = doc.transact_mut();
            for (patch, &(pos, del)) in txn.patches.iter().zip(&mut utf16) {
                if del > 0 {
                    text.remove_range(&mut tx, u32_of(pos)?, u32_of(del)?);
                }
                if !patch.ins.is_empty() {
                    text.insert(&mut tx, u32_of(pos)?, &patch.ins);
                }
            }
        }
        Ok(doc)
    }

    fn replay_concurrent(input: &ConcInput<'_>) -> anyhow::Result<Doc> {
        let ConcInput {
            num_agents,
            txns,
            plan,
        } = *input;
        let astral = txns
            .iter()
            .any(|t| t.patches.iter().any(|p| has_astral(&p.ins)));
        let docs: Vec<Doc> = (0..num_agents as u64).map(|a| new_doc(a + 1)).collect();
        let texts: Vec<TextRef> = docs.iter().map(|d| d.get_or_insert_text(FIELD)).collect();
        let mut updates: Vec<Vec<u8>> = Vec::with_capacity(txns.len());
        for (t, (txn, before)) in txns.iter().zip(&plan.before).enumerate() {
            let doc = &docs[txn.agent];
            for &i in before {
                apply_update(doc, &updates[i])?;
            }
            let mut tx = doc.transact_mut();
            let sv = tx.state_vector();
            for patch in &txn.patches {
                apply_patch(&texts[txn.agent], &mut tx, patch, astral)
                    .with_context(|| format!("yrs: transaction {t}"))?;
            }
            drop(tx);
            updates.push(doc.transact().encode_diff_v1(&sv));
        }
        drop(updates);
        let mut docs = docs.into_iter();
        let merged = docs.next().unwrap_or_else(|| new_doc(1));
        for other in docs {
            let sv = merged.transact().state_vector();
            let update = other.transact().encode_diff_v1(&sv);
            apply_update(&merged, &update)?;
        }
        Ok(merged)
    }

    fn text(doc: &mut Doc) -> anyhow::Result<String> {
        let text = doc.get_or_insert_text(FIELD);
        Ok(text.get_string(&doc.transact()))
    }

    fn encode(doc: &mut Doc) -> anyhow::Result<Vec<u8>> {
        Ok(doc
            .transact()
            .encode_state_as_update_v1(&StateVector::default()))
    }

    fn decode_text(bytes: &[u8]) -> anyhow::Result<String> {
        let doc = Doc::new();
        apply_update(&doc, bytes)?;
        let text = doc.get_or_insert_text(FIELD);
        Ok(text.get_string(&doc.transact()))
    }
}

/// The fork's client.
const FORK_CLIENT: u64 = 7;

/// A document that keeps deleted content, which snapshots need.
fn history_doc(client: u64) -> Doc {
    let mut options = Options::with_client_id(ClientID::new(client));
    options.offset_kind = OffsetKind::Utf16;
    options.skip_gc = true;
    Doc::with_options(options)
}

/// Applies patches given in UTF-16 units (`utf16`) inside one transaction.
fn apply_utf16(doc: &Doc, patches: &[Patch], utf16: &[(usize, usize)]) -> anyhow::Result<()> {
    let text = doc.get_or_insert_text(FIELD);
    let mut tx = doc.transact_mut();
    for (patch, &(pos, del)) in patches.iter().zip(utf16) {
        if del > 0 {
            text.remove_range(&mut tx, u32_of(pos)?, u32_of(del)?);
        }
        if !patch.ins.is_empty() {
            text.insert(&mut tx, u32_of(pos)?, &patch.ins);
        }
    }
    Ok(())
}

/// The text of one chunk of a `diff_range` delta.
fn chunk_text(chunk: &Diff<YChange>) -> anyhow::Result<&str> {
    match &chunk.insert {
        Out::Any(Any::String(s)) => Ok(s),
        other => bail!("yrs: unexpected chunk in a text delta: {other:?}"),
    }
}

/// yrs keeps history only as snapshots (a state vector and a delete set) over a
/// document that does not collect garbage. It reads an old version with `diff_range`
/// (the text delta as of a snapshot, or between two), and has no fork: the way to get a
/// document at an old version is `encode_state_from_snapshot`, decoded into a new
/// document. On automerge-paper (yrs 0.28.1) the update it makes for the 50 % snapshot
/// of the full document fails to decode (`EndOfBuffer`), so the fork step reports
/// `n/a` with that error rather than working around it.
impl HistoryEngine for Yrs {
    const NAME: &'static str = "yrs";
    type Doc = Doc;
    type Version = Snapshot;
    type Diff = Vec<Diff<YChange>>;
    type Fork = Doc;

    fn history_doc(start: &str) -> anyhow::Result<Doc> {
        let doc = history_doc(1);
        let text = doc.get_or_insert_text(FIELD);
        if !start.is_empty() {
            text.insert(&mut doc.transact_mut(), 0, start);
        }
        Ok(doc)
    }

    fn apply_txn(doc: &mut Doc, patches: &[Patch], utf16: &[(usize, usize)]) -> anyhow::Result<()> {
        apply_utf16(doc, patches, utf16)
    }

    fn version(doc: &mut Doc) -> Snapshot {
        doc.transact().snapshot()
    }

    fn current_text(doc: &mut Doc) -> anyhow::Result<String> {
        Self::text(doc)
    }

    fn text_at(doc: &mut Doc, at: &Snapshot) -> Result<String, StepError> {
        let text = doc.get_or_insert_text(FIELD);
        let mut tx = doc.transact_mut();
        let mut out = String::new();
        for chunk in text.diff_range(&mut tx, Some(at), None, YChange::identity) {
            out.push_str(chunk_text(&chunk)?);
        }
        Ok(out)
    }

    fn diff(
        doc: &mut Doc,
        from: &Snapshot,
        to: &Snapshot,
    ) -> Result<Vec<Diff<YChange>>, StepError> {
        let text = doc.get_or_insert_text(FIELD);
        let mut tx = doc.transact_mut();
        Ok(text.diff_range(&mut tx, Some(to), Some(from), YChange::identity))
    }

    fn apply_diff(diff: &Vec<Diff<YChange>>, text: &str) -> anyhow::Result<String> {
        // The chunks cover both versions: unmarked ones are in both, `Added` ones only
        // in the later, `Removed` ones only in the earlier.
        let (mut before, mut after) = (String::new(), String::new());
        for chunk in diff {
            let s = chunk_text(chunk)?;
            match chunk.ychange.as_ref().map(|c| &c.kind) {
                None => {
                    before.push_str(s);
                    after.push_str(s);
                }
                Some(ChangeKind::Added) => after.push_str(s),
                Some(ChangeKind::Removed) => before.push_str(s),
            }
        }
        anyhow::ensure!(
            before == text,
            "yrs: the delta's earlier text differs from the text at the earlier version"
        );
        Ok(after)
    }

    fn duplicate(doc: &mut Doc) -> anyhow::Result<Doc> {
        let copy = history_doc(1);
        let update = doc
            .transact()
            .encode_state_as_update_v1(&StateVector::default());
        apply_update(&copy, &update)?;
        Ok(copy)
    }

    fn fork_edit_merge(
        doc: &mut Doc,
        target: &mut Doc,
        at: &Snapshot,
        edits: &[Patch],
        utf16: &[(usize, usize)],
    ) -> Result<Doc, StepError> {
        let mut encoder = EncoderV1::new();
        doc.transact()
            .encode_state_from_snapshot(at, &mut encoder)
            .map_err(|e| StepError::Unsupported(format!("encode_state_from_snapshot: {e}")))?;
        let update = Update::decode_v1(&encoder.to_vec()).map_err(|e| {
            StepError::Unsupported(format!(
                "the update encode_state_from_snapshot makes fails to decode: {e}"
            ))
        })?;
        let fork = history_doc(FORK_CLIENT);
        fork.transact_mut().apply_update(update).map_err(|e| {
            StepError::Unsupported(format!(
                "the update encode_state_from_snapshot makes fails to apply: {e}"
            ))
        })?;
        for (edit, pos) in edits.iter().zip(utf16) {
            apply_utf16(&fork, std::slice::from_ref(edit), std::slice::from_ref(pos))?;
        }
        let sv = target.transact().state_vector();
        let update = fork.transact().encode_diff_v1(&sv);
        apply_update(target, &update)?;
        Ok(fork)
    }

    fn fork_text(fork: &mut Doc) -> anyhow::Result<String> {
        Self::text(fork)
    }

    fn converge(fork: &mut Doc, target: &mut Doc) -> anyhow::Result<String> {
        let sv = fork.transact().state_vector();
        let update = target.transact().encode_diff_v1(&sv);
        apply_update(fork, &update)?;
        Self::text(fork)
    }
}
