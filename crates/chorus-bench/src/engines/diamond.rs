//! diamond-types.

use diamond_types::LocalVersion;
use diamond_types::list::encoding::ENCODE_FULL;
use diamond_types::list::{ListCRDT, OpLog};

use super::{ConcInput, Engine, SeqInput};

/// diamond-types' list CRDT (char positions).
#[derive(Debug)]
pub struct DiamondTypes;

impl Engine for DiamondTypes {
    const NAME: &'static str = "diamond-types";
    const CONCURRENT_NOTE: Option<&'static str> = Some(
        "diamond-types replays concurrent traces the way it is built to: every op goes into one \
         op log with its parents named explicitly, then the final state is checked out once",
    );
    type Doc = ListCRDT;

    fn replay_sequential(input: &SeqInput<'_>) -> anyhow::Result<ListCRDT> {
        let SeqInput { start, txns, .. } = *input;
        let mut doc = ListCRDT::new();
        let agent = doc.get_or_create_agent_id("agent0");
        if !start.is_empty() {
            doc.insert(agent, 0, start);
        }
        for txn in txns {
            for patch in &txn.patches {
                if patch.del > 0 {
                    doc.delete_without_content(agent, patch.pos..patch.pos + patch.del);
                }
                if !patch.ins.is_empty() {
                    doc.insert(agent, patch.pos, &patch.ins);
                }
            }
        }
        Ok(doc)
    }

    fn replay_concurrent(input: &ConcInput<'_>) -> anyhow::Result<ListCRDT> {
        let ConcInput {
            num_agents,
            txns,
            plan: _,
        } = *input;
        let mut oplog = OpLog::new();
        let agents: Vec<_> = (0..num_agents)
            .map(|a| oplog.get_or_create_agent_id(&format!("agent{a}")))
            .collect();
        // The version after each transaction.
        let mut after: Vec<LocalVersion> = Vec::with_capacity(txns.len());
        for txn in txns {
            let agent = agents[txn.agent];
            // The trace's parents name a frontier (no parent is an ancestor of
            // another), so their versions' union is their concatenation. (This is also
            // much faster than `OpLog::version_union`, which in diamond-types 1.0.0 is
            // slow here and returns redundant entries.)
            let mut version: LocalVersion = txn
                .parents
                .iter()
                .flat_map(|&p| after[p].iter().copied())
                .collect();
            version.sort_unstable();
            version.dedup();
            for patch in &txn.patches {
                if patch.del > 0 {
                    let time =
                        oplog.add_delete_at(agent, &version, patch.pos..patch.pos + patch.del);
                    version = std::iter::once(time).collect();
                }
                if !patch.ins.is_empty() {
                    let time = oplog.add_insert_at(agent, &version, patch.pos, &patch.ins);
                    version = std::iter::once(time).collect();
                }
            }
            after.push(version);
        }
        let branch = oplog.checkout_tip();
        Ok(ListCRDT { branch, oplog })
    }

    fn text(doc: &mut ListCRDT) -> anyhow::Result<String> {
        Ok(doc.branch.content().to_string())
    }

    fn encode(doc: &mut ListCRDT) -> anyhow::Result<Vec<u8>> {
        Ok(doc.oplog.encode(ENCODE_FULL))
    }

    fn decode_text(bytes: &[u8]) -> anyhow::Result<String> {
        let doc = ListCRDT::load_from(bytes)
            .map_err(|e| anyhow::anyhow!("diamond-types: load: {e:?}"))?;
        Ok(doc.branch.content().to_string())
    }
}
