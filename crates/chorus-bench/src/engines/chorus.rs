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
