//! yrs, the Rust port of Yjs.

use anyhow::{Context, anyhow};
use chorus_trace::{FIELD, Patch};
use yrs::updates::decoder::Decode;
use yrs::{
    ClientID, Doc, GetString, OffsetKind, Options, ReadTxn, StateVector, Text, TextRef, Transact,
    Update,
};

use super::{ConcInput, Engine, SeqInput, has_astral};

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
